/* bin/pgtandem migrate: the commands and their flags (getopt's table and
 * every --help), argument parsing, the dispatch, output and exit statuses,
 * the small commands (plan, status, convert, verify, pause, unpause,
 * rollback) and --evidence around a step. The larger commands have their
 * own files: migrate_start.c (start, resume, and --proxy), migrate_complete.c,
 * migrate_lint.c; what they share is in migrate_cli_internal.h. The work
 * itself is in engine*.c / migration*.c; FILE.sql is converted by
 * sql_load.c / sql_convert.c. */
#include "cli.h"
#include "migrate_cli_internal.h"
#include "migrate_tool.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "shape_record.h"
#include "evidence.h"
#include "migrate_remote.h"
#include "migration.h"
#include "migration_estimate.h"
#include "migration_plan.h"
#include "progress_line.h"
#include "sql_convert.h"
#include "sql_load.h"

/* The commands and their flags: getopt's table, `migrate --help` and each
 * `migrate COMMAND --help` are built from these two lists. */
struct migrate_command {
    const char *name;
    const char *args;       /* its operand, "" for none */
    const char *help;
};

static const struct migrate_command COMMANDS[] = {
    {"start", "FILE|DIR", "validate, expand and backfill; both releases work until complete"},
    {"resume", "[NAME]", "continue a backfill stopped by --no-backfill, --stop-after-batches or a failure"},
    {"status", "[NAME|DIR]", "the migration in flight (or NAME), its phase and backfill, and the proxies of the fleet"
                             " (DIR: each of its files as its tool's history table and pgtandem see it)"},
    {"complete", "[NAME|DIR]", "the cutover: checks while traffic flows, then the contract in one short "
                               "transaction (DIR: each of its migrations in flight, oldest first)"},
    {"rollback", "[NAME]", "back to the original shape (any time before complete)"},
    {"finalize", "", "drop the old shape `complete --revert-window-s` kept (with --proxy)"},
    {"revert", "", "every session back to the old shape `complete --revert-window-s` kept, then roll back "
                   "(with --proxy)"},
    {"plan", "FILE|DIR", "the SQL of every phase (exact with --db; DIR: its pending migrations as one); changes "
                         "nothing"},
    {"lint", "FILE.sql|FILE.json|DIR", "what would block or break the running application, the chain rules and, "
                                       "with --db, what the live catalog refuses"},
    {"verify", "[NAME]", "row by row: the new columns equal up(old)"},
    {"convert", "FILE.sql", "print the migration (JSON) a .sql file converts to"},
    {"pause", "[NAME]", "pause the backfill (the throttle's switch)"},
    {"unpause", "[NAME]", "let a paused backfill go on"},
    {NULL, NULL, NULL},
};

#define ALL_DIRECT "start resume status complete rollback plan lint verify convert pause unpause"
#define REMOTE "start status complete rollback finalize revert"
#define NAMED_COMMANDS "resume status complete rollback verify pause unpause"

/* How long a command waits for the engine lock another `pgtandem migrate`
 * holds (--engine-wait): a start's expand or a complete holds it for
 * seconds, the validations that end a backfill of a large table longer. */
#define CLI_ENGINE_WAIT_MS 60000L

struct migrate_flag {
    const char *name;       /* without the leading "--" */
    const char *value;      /* what it takes; NULL: a switch */
    int code;               /* getopt_long's answer for it */
    const char *commands;   /* the commands it belongs to, space-separated */
    const char *help;
};

static const struct migrate_flag FLAGS[] = {
    {"db", "URI", 'd', ALL_DIRECT, "the database, with credentials (default $PGTANDEM_DB, then $DATABASE_URL)"},
    {"proxy", "URL", 'p', REMOTE, "run it in the proxy whose admin API is at http://HOST:PORT (its --admin address) "
                                  "instead of with --db; the bearer token is read from $PGTANDEM_ADMIN_TOKEN"},
    {"json", NULL, 'j', "status plan lint complete rollback finalize revert", "print JSON instead of text"},
    {"format", "text|json|github|sarif", 'F', "lint", "the findings as text (default), one JSON document, GitHub "
     "workflow commands (annotations on the pull request's lines) or a SARIF 2.1.0 log (code scanning)"},
    {"lock-timeout", "MS", 'l', "start resume complete rollback", "lock_timeout of each DDL step, 1 to 600000 ms "
                                                                   "(default 200)"},
    {"engine-wait", "S", 'w', "start resume complete rollback", "with --db: wait up to S seconds (0 to 3600, default "
                                                                 "60) for the engine lock while another `pgtandem "
                                                                 "migrate` holds it (its expand, a complete, the "
                                                                 "validations that end a backfill); a proxy's is "
                                                                 "said at once"},
    {"retries", "N", 'r', "start complete", "attempts of a step that waits for a lock, 1 to 1000 (default 10)"},
    {"no-backfill", NULL, 'n', "start", "expand only; `resume` backfills later"},
    {"each", NULL, 'e', "start", "DIR with --db: each pending file its own migration, or refused before any DDL "
                                 "when two share a table otherwise than the chain's rules allow (the default runs "
                                 "those as one)"},
    {"merge", NULL, 'M', "start", "DIR: the pending files as one migration, named by the last (the default with "
                                  "--db: each its own, in order, when they change separate tables, a table earlier "
                                  "ones only add to, or other columns than earlier ones change or read)"},
    {"stop-after-batches", "N", 's', "start resume", "a rehearsal: N backfill batches, then stop; `resume` "
                                                      "continues"},
    {"backfill-workers", "N", 'W', "start resume", "with --db: batches the backfill runs at once, each on its own "
                                                    "connection, 1 to 16 (default: the file's backfill.workers, "
                                                    "else 2)"},
    {"quiet", NULL, 'q', "start resume lint", "no progress line or summary"},
    {"validate-only", NULL, 'v', "complete", "only the checks that precede the contract, against every row; "
                                            "nothing changes"},
    {"force", NULL, 'f', "complete", "complete despite sessions that bypass the proxies"},
    {"revert-window-s", "S", 'R', "complete", "keep the old shape S seconds (at most 604800) so `revert` can go back "
                                             "(with --proxy)"},
    {"evidence", "DIR", 'E', "start complete rollback", "keep schema snapshots, their diff, the migration, a run log, "
                                                       "row counts and SHA256SUMS in DIR (with --proxy, --db too)"},
    {"name", "N", 'N', "start plan lint convert", "FILE.sql: the converted migration's name (default: Alembic's "
                                                  "revision, else the file's name)"},
    {"parent", "P", 'P', "start plan lint convert", "FILE.sql: the converted migration's parent"},
    {"estimate", NULL, 'X', "plan", "measure the backfill (rows/s, duration, WAL) on a sample; needs --db"},
    {"estimate-rows", "N", 'x', "plan", "rows in the --estimate sample, 1 to 100000000"},
    {"help", NULL, 'h', NULL, "this help"},
    {NULL, NULL, 0, NULL, NULL},
};

#define NFLAGS (sizeof FLAGS / sizeof FLAGS[0])

static const struct migrate_command *command_by_name(const char *name)
{
    for (const struct migrate_command *m = COMMANDS; m->name; m++)
        if (!strcmp(m->name, name))
            return m;
    return NULL;
}

/* Whether the word `name` is in the space-separated list; NULL: every command. */
static int in_list(const char *list, const char *name)
{
    if (!list)
        return 1;
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return 1;
    return 0;
}

static void print_flag(FILE *out, const struct migrate_flag *f)
{
    char head[64];
    snprintf(head, sizeof head, "--%s%s%s", f->name, f->value ? " " : "", f->value ? f->value : "");
    fprintf(out, "  %-28s %s\n", head, f->help);
}

void migrate_usage(FILE *out)
{
    fprintf(out, "usage: pgtandem migrate COMMAND [FILE|DIR] [OPTIONS]   (`pgtandem migrate COMMAND --help`: its "
                 "options)\ncommands:\n");
    for (const struct migrate_command *m = COMMANDS; m->name; m++) {
        char head[64];
        snprintf(head, sizeof head, "%s %s", m->name, m->args);
        fprintf(out, "  %-28s %s\n", head, m->help);
    }
    fprintf(out, "options (the commands each belongs to: `pgtandem migrate COMMAND --help`):\n");
    for (const struct migrate_flag *f = FLAGS; f->name; f++)
        print_flag(out, f);
    fprintf(out,
        "DIR: a chain (*.json with parents, or SQL migrations in drizzle-kit's, Prisma's, Flyway's,\n"
        "golang-migrate's layout or numbered files, in that tool's order, each named whole by its file\n"
        "or directory); its pending migrations run as one.\n"
        "FILE may be a .sql file (Alembic --sql output, drizzle-kit, hand-written): it is converted\n"
        "first (--name/--parent as for convert; the old column types of derived downs come from --db,\n"
        "or with --proxy from the proxy's engine database).\n"
        "--proxy commands (" REMOTE ") send $PGTANDEM_ADMIN_TOKEN as the bearer token.\n"
        "exit status: 0 success, 1 operational failure, 2 bad input\n");
}

static void command_usage(FILE *out, const struct migrate_command *m)
{
    fprintf(out, "usage: pgtandem migrate %s%s%s [OPTIONS]\n%s\noptions:\n", m->name, m->args[0] ? " " : "", m->args,
            m->help);
    int remote = 0;
    for (const struct migrate_flag *f = FLAGS; f->name; f++) {
        if (!in_list(f->commands, m->name))
            continue;
        print_flag(out, f);
        remote |= f->code == 'p';
    }
    if (remote)
        fprintf(out, "with --proxy URL the bearer token comes from $PGTANDEM_ADMIN_TOKEN (the proxy's "
                     "--admin-token)\n");
    if (!in_list(FLAGS[0].commands, m->name))
        fprintf(out, "needs --proxy URL: without a proxy no session is routed\n");
    fprintf(out, "exit status: 0 success, 1 operational failure, 2 bad input\n");
}

/* getopt_long's table, from FLAGS. */
static void getopt_table(struct option *opts)
{
    size_t i = 0;
    for (const struct migrate_flag *f = FLAGS; f->name; f++, i++)
        opts[i] = (struct option){f->name, f->value ? required_argument : no_argument, NULL, f->code};
    opts[i] = (struct option){NULL, 0, NULL, 0};
}

/* `migrate COMMAND ... --help|-h`: anywhere after the command. */
static int wants_help(int argc, char **argv)
{
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
    return 0;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* The database from the environment, as the proxy's configuration reads
 * it: PGTANDEM_DB, else DATABASE_URL; an empty value is unset. */
static const char *env_db(void)
{
    const char *db = getenv("PGTANDEM_DB");
    if (!db || !*db)
        db = getenv("DATABASE_URL");
    return db && *db ? db : NULL;
}

static int parse_args(int argc, char **argv, struct cli *c)
{
    struct option opts[NFLAGS];
    getopt_table(opts);
    memset(c, 0, sizeof *c);
    engine_default_options(&c->opt);
    c->opt.lock_wait_ms = CLI_ENGINE_WAIT_MS;
    c->opt.lock_wait_migrate_only = 1;
    if (argc < 2)
        return -1;
    c->command = argv[1];
    optind = 2;
    opterr = 0;
    int ch;
    long v;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': c->db = optarg; break;
        case 'p': c->proxy = optarg; break;
        case 'j': c->json = 1; break;
        case 'q': c->quiet = 1; break;
        case 'f': c->force = 1; break;
        case 'R':
            if (parse_long(optarg, 0, 604800, &v) != 0) return -1;
            c->revert_window_s = (int)v;
            break;
        case 'N': c->name = optarg; break;
        case 'E': c->evidence = optarg; break;
        case 'F':
            if (strcmp(optarg, "json") && strcmp(optarg, "text") && strcmp(optarg, "github") && strcmp(optarg, "sarif"))
                return -1;
            c->json = !strcmp(optarg, "json");
            c->lint_github = !strcmp(optarg, "github");
            c->lint_sarif = !strcmp(optarg, "sarif");
            break;
        case 'P': c->parent = optarg; break;
        case 'X': c->estimate = 1; break;
        case 'x':
            if (parse_long(optarg, 1, 100000000, &v) != 0) return -1;
            c->estimate_rows = v;
            break;
        case 'n': c->opt.skip_backfill = 1; break;
        case 'e': c->each = 1; break;
        case 'M': c->merge = 1; break;
        case 'v': c->opt.validate_only = 1; break;
        case 'l':
            if (parse_long(optarg, 1, 600000, &v) != 0) return -1;
            c->opt.lock_timeout_ms = v;
            break;
        case 'r':
            if (parse_long(optarg, 1, 1000, &v) != 0) return -1;
            c->opt.contract_attempts = (int)v;
            break;
        case 's':
            if (parse_long(optarg, 1, 1000000000, &v) != 0) return -1;
            c->opt.stop_after_batches = v;
            break;
        case 'w':
            if (parse_long(optarg, 0, 3600, &v) != 0) return -1;
            c->opt.lock_wait_ms = v * 1000;
            break;
        case 'W':
            if (parse_long(optarg, 1, 16, &v) != 0) return -1;
            c->opt.backfill_workers = v;
            break;
        default:
            fprintf(stderr, "pgtandem migrate: unknown or malformed option %s\n", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc)
        c->file = argv[optind++];
    /* a command on a migration in flight may name it (several can be) */
    if (c->file && in_list(NAMED_COMMANDS, c->command))
        c->opt.target = c->file;
    if (optind < argc) {
        fprintf(stderr, "pgtandem migrate: unexpected argument %s\n", argv[optind]);
        return -1;
    }
    /* the environment is a default for direct mode and for --evidence (its
     * snapshots need the database), never a conflict with --proxy alone */
    if (c->db && !*c->db)
        c->db = NULL;
    if (!c->db && (!c->proxy || c->evidence))
        c->db = env_db();
    return 0;
}

int migrate_cli_report(int rc, const char *err)
{
    if (rc != 0)
        fprintf(stderr, "pgtandem migrate: error: %s\n", err);
    return rc;
}

int migrate_cli_need_db(const struct cli *c)
{
    if (c->db)
        return 0;
    fprintf(stderr, "pgtandem migrate %s: no database: pass --db URI or set PGTANDEM_DB / DATABASE_URL\n",
            c->command);
    return -1;
}

int migrate_cli_need_file(const struct cli *c)
{
    if (c->file)
        return 0;
    fprintf(stderr, "pgtandem migrate %s: a migration FILE is required\n", c->command);
    return -1;
}

/* A migration file: JSON as it is, FILE.sql converted first. */
int migrate_cli_load_migration(const struct cli *c, const char *path, struct migration *m, char *err, size_t errlen)
{
    if (!sqlc_is_sql_file(path))
        return mig_load_file(path, m, err, errlen);
    struct sql_load_options o = {.db = c->db, .name = c->name, .parent = c->parent};
    return sql_load_migration(path, &o, m, err, errlen);
}

int migrate_cli_open_engine(const struct cli *c, struct engine *e, int exclusive, char *err, size_t errlen)
{
    int rc = engine_open(e, c->db, &c->opt, exclusive ? ENGINE_LOCK_TAKE : ENGINE_LOCK_NONE, err, errlen);
    if (rc != ENGINE_OK)
        engine_close(e);
    return rc;
}

/* The estimate, after the plan it measures (or alone, as JSON). */
static int plan_estimate(const struct cli *c, struct engine *e, const struct migration *m,
                         const struct mig_plan *plan, char *err, size_t errlen)
{
    struct estimate_report rep;
    long sample_rows = c->estimate_rows ? c->estimate_rows : ESTIMATE_DEFAULT_ROWS;
    int rc = estimate_run(e->conn, m, plan, sample_rows, &rep, err, errlen) == 0 ? ENGINE_OK : ENGINE_FAILED;
    if (rc == ENGINE_OK && c->json) {
        json_t *doc = estimate_to_json(&rep);
        char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        printf("%s\n", text ? text : "{}");
        free(text);
        json_decref(doc);
    } else if (rc == ENGINE_OK) {
        mig_plan_print(m, plan, stdout);
        estimate_print(&rep, stdout);
    }
    estimate_free(&rep);
    return rc;
}

static int cmd_plan(const struct cli *c)
{
    char err[2048];
    struct migration m;
    memset(&m, 0, sizeof m);
    if (c->estimate && !c->db) {
        fprintf(stderr, "pgtandem migrate plan --estimate: the estimate samples the live tables: pass --db URI "
                "or set PGTANDEM_DB / DATABASE_URL\n");
        return EXIT_INVALID;
    }
    int loaded = migrate_cli_need_file(c) ? -1
                 : migrate_cli_is_directory(c->file) ? migrate_cli_load_pending(c, &m, err, sizeof err)
                                                     : migrate_cli_load_migration(c, c->file, &m, err, sizeof err);
    if (loaded != 0) {
        if (c->file)
            fprintf(stderr, "pgtandem migrate: error: %s\n", err);
        mig_free(&m);
        return EXIT_INVALID;
    }
    struct mig_plan plan;
    int rc, estimated = 0;
    if (c->db) {
        struct engine e;
        rc = migrate_cli_open_engine(c, &e, 0, err, sizeof err);
        if (rc == ENGINE_OK)
            rc = engine_prepare(&e, &m, &plan, err, sizeof err);
        if (rc == ENGINE_OK && c->estimate) {
            rc = plan_estimate(c, &e, &m, &plan, err, sizeof err);
            mig_plan_free(&plan);
            estimated = 1;
        }
        engine_close(&e);
    } else {
        rc = mig_plan_build(&m, NULL, &plan, err, sizeof err) == 0 ? ENGINE_OK : ENGINE_INVALID;
        if (rc == ENGINE_OK)
            printf("-- offline plan (no --db): column types, keys and copied indexes come from the live\n"
                   "-- catalog and appear as placeholders; pass --db for the exact SQL\n");
    }
    if (rc == ENGINE_OK && !estimated) {
        mig_plan_print(&m, &plan, stdout);
        mig_plan_free(&plan);
    }
    mig_free(&m);
    return migrate_cli_report(rc, err);
}

static int cmd_simple(const struct cli *c, int exclusive, int (*fn)(struct engine *, char *, size_t))
{
    char err[2048];
    if (migrate_cli_need_db(c))
        return EXIT_INVALID;
    struct engine e;
    int rc = migrate_cli_open_engine(c, &e, exclusive, err, sizeof err);
    if (rc == ENGINE_OK) {
        rc = fn(&e, err, sizeof err);
        engine_close(&e);
    }
    return migrate_cli_report(rc, err);
}

static int do_rollback(struct engine *e, char *err, size_t errlen)
{
    int rc = engine_rollback(e, NULL, err, errlen);
    if (rc != ENGINE_OK)
        return rc;
    printf("migration %s%srolled back", e->opt.target ? e->opt.target : "", e->opt.target ? " " : "");
    if (e->rollback_check == SHAPE_RESTORED)
        printf("; the shape it found is restored (checked against the record its start took)\n");
    else if (e->rollback_check == SHAPE_OTHERS_MEANWHILE)
        printf("; not compared with the record its start took: %s changed the schema since\n", e->rollback_diff);
    else
        printf(" (no record of its start to check the shape against)\n");
    return rc;
}

static int do_verify(struct engine *e, char *err, size_t errlen)
{
    return engine_verify(e, stdout, err, errlen);
}

static int do_pause(struct engine *e, char *err, size_t errlen)
{
    return engine_set_paused(e, 1, err, errlen);
}

static int do_unpause(struct engine *e, char *err, size_t errlen)
{
    return engine_set_paused(e, 0, err, errlen);
}

static void print_status_text(json_t *st)
{
    const char *name = json_string_value(json_object_get(st, "migration"));
    printf("migration: %s\nstatus:    %s\n", name ? name : "(none)",
           json_string_value(json_object_get(st, "status")));
    const char *error = json_string_value(json_object_get(st, "error"));
    if (error)
        printf("error:     %s\n", error);
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(st, "backfill"), i, t) {
        char rows[128], ranges[64] = "";
        int done = json_is_true(json_object_get(t, "done"));
        json_t *rl = json_object_get(t, "ranges"), *one;
        size_t k, finished = 0;
        json_array_foreach(rl, k, one)
            finished += json_is_true(json_object_get(one, "done"));
        if (json_array_size(rl) > 1 && !done)
            snprintf(ranges, sizeof ranges, ", %zu key ranges (%zu done)", json_array_size(rl), finished);
        printf("backfill:  %s.%s %s%s%s%s\n", json_string_value(json_object_get(t, "schema")),
               json_string_value(json_object_get(t, "table")),
               progress_rows(rows, sizeof rows, (double)json_integer_value(json_object_get(t, "rows_done")),
                             json_number_value(json_object_get(t, "estimated_rows")), done),
               ranges, done ? ", done" : "", !done && json_is_true(json_object_get(t, "paused")) ? ", paused" : "");
    }
    json_t *flight = json_object_get(st, "in_flight");
    if (json_array_size(flight) > 1) {
        printf("in flight: ");
        json_t *one;
        json_array_foreach(flight, i, one) {
            printf("%s%s (%s)", i ? ", " : "", json_string_value(json_object_get(one, "migration")),
                   json_string_value(json_object_get(one, "status")));
        }
        printf("\n");
    }
    migrate_print_proxies(json_object_get(st, "fleet"), NULL);
}

static int cmd_status(const struct cli *c)
{
    char err[2048];
    if (migrate_cli_need_db(c))
        return EXIT_INVALID;
    if (migrate_cli_is_directory(c->file))   /* status DIR: each file, as its tool and pgtandem see it */
        return migrate_tool_status(c);
    struct engine e;
    int rc = migrate_cli_open_engine(c, &e, 0, err, sizeof err);
    json_t *st = NULL;
    if (rc == ENGINE_OK) {
        rc = engine_status(&e, &st, err, sizeof err);
        engine_close(&e);
    }
    if (rc == ENGINE_OK)
        json_object_set_new(st, "fleet", migrate_cli_live_proxies(c->db));
    if (rc == ENGINE_OK && c->json) {
        char *text = json_dumps(st, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", text ? text : "{}");
        free(text);
    } else if (rc == ENGINE_OK) {
        print_status_text(st);
    }
    json_decref(st);
    return migrate_cli_report(rc, err);
}

static int cmd_convert(const struct cli *c)
{
    char err[2048];
    if (migrate_cli_need_file(c))
        return EXIT_INVALID;
    struct sql_load_options o = {.db = c->db, .name = c->name, .parent = c->parent};
    json_t *m = NULL;
    if (sql_load_json(c->file, &o, &m, err, sizeof err) != 0) {
        fprintf(stderr, "pgtandem migrate: error: %s\n", err);
        return EXIT_INVALID;
    }
    char *text = json_dumps(m, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(m);
    /* the printed migration must be one the engine takes as it is */
    struct migration check;
    int ok = text && mig_parse(text, strlen(text), c->file, &check, err, sizeof err) == 0;
    mig_free(&check);
    if (ok)
        printf("%s\n", text);
    else
        fprintf(stderr, "pgtandem migrate: error: %s\n", text ? err : "out of memory");
    free(text);
    return ok ? 0 : EXIT_INVALID;
}

static int run_step(const struct cli *c)
{
    if (c->proxy)
        return migrate_cli_remote(c);
    if (!strcmp(c->command, "start"))
        return migrate_cli_start(c, 0);
    if (!strcmp(c->command, "complete"))
        return migrate_cli_complete(c);
    return cmd_simple(c, 1, do_rollback);
}

/* The state after the step as `migrate status` reports it (batches,
 * throttle, the proxy's cutover report), for the run log only. */
static int status_into_log(void *arg)
{
    const struct cli *c = arg;
    if (c->proxy)
        return migrate_remote_main("status", c->proxy, NULL, 0, 0, 0);
    struct cli json = *c;
    json.json = 1;
    return cmd_status(&json);
}

static int evidence_usage(const struct cli *c)
{
    if (strcmp(c->command, "start") && strcmp(c->command, "complete") && strcmp(c->command, "rollback")) {
        fprintf(stderr, "pgtandem migrate %s: --evidence is for start, complete and rollback\n", c->command);
        return -1;
    }
    if (!c->db) {
        fprintf(stderr, "pgtandem migrate %s: --evidence needs the database for its schema snapshots and row "
                "counts: pass --db URI (with --proxy as well: the proxy's upstream is not known here) or set "
                "PGTANDEM_DB / DATABASE_URL\n", c->command);
        return -1;
    }
    return 0;
}

/* --evidence DIR: the step runs as it would without it, between the
 * bundle's "before" and "after"; a step that fails still gets its entry.
 * Evidence that could not be taken makes the exit status 1, never the
 * migration worse. */
static int run_with_evidence(struct cli *c)
{
    if (evidence_usage(c) != 0)
        return EXIT_INVALID;
    int start = !strcmp(c->command, "start");
    char err[2048];
    struct migration m;
    memset(&m, 0, sizeof m);
    if (start && (migrate_cli_need_file(c) || migrate_cli_load_migration(c, c->file, &m, err, sizeof err) != 0)) {
        if (c->file)
            fprintf(stderr, "pgtandem migrate: error: %s\n", err);
        mig_free(&m);
        return EXIT_INVALID;
    }
    struct evidence ev;
    int rc = evidence_open(&ev, c->evidence, c->command, c->db, err, sizeof err);
    if (rc != EVIDENCE_OK) {
        fprintf(stderr, "pgtandem migrate %s: error: %s\n", c->command, err);
        mig_free(&m);
        return rc;
    }
    if (start)
        evidence_migration(&ev, &m, c->file);
    else
        evidence_current_migration(&ev);
    mig_free(&m);
    evidence_before(&ev, !start);
    c->ev = &ev;
    rc = run_step(c);
    c->ev = NULL;
    evidence_into_log(&ev, "status after the step", status_into_log, c);
    int erc = evidence_finish(&ev, rc, start);
    return rc == 0 && erc != EVIDENCE_OK ? 1 : rc;
}

/* `migrate --help`, `migrate help [COMMAND]`, `migrate COMMAND --help|-h`;
 * -1 when no help was asked for. */
static int help(int argc, char **argv)
{
    const char *first = argc > 1 ? argv[1] : "";
    if (!strcmp(first, "help") && argc > 2 && command_by_name(argv[2])) {
        command_usage(stdout, command_by_name(argv[2]));
        return 0;
    }
    if (!strcmp(first, "help") || !strcmp(first, "--help") || !strcmp(first, "-h")) {
        migrate_usage(stdout);
        return 0;
    }
    if (!wants_help(argc, argv))
        return -1;
    if (command_by_name(first))
        command_usage(stdout, command_by_name(first));
    else
        migrate_usage(stdout);
    return 0;
}

static void usage_for(FILE *out, const char *cmd)
{
    if (cmd && command_by_name(cmd))
        command_usage(out, command_by_name(cmd));
    else
        migrate_usage(out);
}

int migrate_main(int argc, char **argv)
{
    int rc = help(argc, argv);
    if (rc >= 0)
        return rc;
    struct cli c;
    if (parse_args(argc, argv, &c) != 0) {
        usage_for(stderr, argc > 1 ? argv[1] : NULL);
        return EXIT_INVALID;
    }
    const char *cmd = c.command;
    if ((c.estimate || c.estimate_rows != 0) && strcmp(cmd, "plan") != 0) {
        fprintf(stderr, "pgtandem migrate %s: --estimate and --estimate-rows belong to `migrate plan`\n", cmd);
        return EXIT_INVALID;
    }
    if (c.each && c.merge) {
        fprintf(stderr, "pgtandem migrate start: give either --each or --merge\n");
        return EXIT_INVALID;
    }
    if (c.proxy && c.each) {
        fprintf(stderr, "pgtandem migrate start: --each is for --db; through a proxy, start the files one by one"
                " (each after the first starts beside the ones in flight)\n");
        return EXIT_INVALID;
    }
    if (c.proxy && c.file && !strcmp(cmd, "complete") && migrate_cli_is_directory(c.file)) {
        fprintf(stderr, "pgtandem migrate complete: DIR is for --db (each of its migrations through the fleet);"
                " through a proxy, complete them by name, oldest first\n");
        return EXIT_INVALID;
    }
    if (c.proxy && c.opt.target && strcmp(cmd, "complete") && strcmp(cmd, "rollback")) {
        fprintf(stderr, "pgtandem migrate %s: a proxy's engine runs one migration, the one its admin API "
                "answers for; NAME is for --db (and for complete and rollback, which the proxy refuses for "
                "another)\n", cmd);
        return EXIT_INVALID;
    }
    if (c.evidence)
        return run_with_evidence(&c);
    if (c.proxy && c.db) {
        fprintf(stderr, "pgtandem migrate: give either --db or --proxy, not both (through a proxy its engine "
                "reads the catalog, a .sql file's old column types too; --db goes with --proxy only for "
                "--evidence)\n");
        return EXIT_INVALID;
    }
    if (c.proxy)
        return migrate_cli_remote(&c);
    if (!strcmp(cmd, "convert")) return cmd_convert(&c);
    if (!strcmp(cmd, "plan")) return cmd_plan(&c);
    if (!strcmp(cmd, "lint")) return migrate_cli_lint(&c);
    if (!strcmp(cmd, "start")) return migrate_cli_start(&c, 0);
    if (!strcmp(cmd, "resume")) return migrate_cli_start(&c, 1);
    if (!strcmp(cmd, "complete")) return migrate_cli_complete(&c);
    if (!strcmp(cmd, "rollback")) return cmd_simple(&c, 1, do_rollback);
    if (!strcmp(cmd, "finalize") || !strcmp(cmd, "revert")) {
        /* without a proxy no session is routed: `complete --db` drops a kept
         * old shape, `rollback --db` goes back to it */
        fprintf(stderr, "pgtandem migrate %s: needs --proxy URL (without a proxy, `migrate %s --db` does the same"
                " to the database)\n", cmd, strcmp(cmd, "finalize") ? "rollback" : "complete");
        return EXIT_INVALID;
    }
    if (!strcmp(cmd, "verify")) return cmd_simple(&c, 0, do_verify);
    if (!strcmp(cmd, "status")) return cmd_status(&c);
    if (!strcmp(cmd, "pause")) return cmd_simple(&c, 0, do_pause);
    if (!strcmp(cmd, "unpause")) return cmd_simple(&c, 0, do_unpause);
    const char *hint = NULL;
    size_t best = 3;
    for (const struct migrate_command *m = COMMANDS; m->name; m++) {
        size_t d = mig_edit_distance(cmd, m->name);
        if (d < best) {
            best = d;
            hint = m->name;
        }
    }
    fprintf(stderr, "pgtandem migrate: unknown command \"%s\"%s%s%s\n", cmd, hint ? " (did you mean \"" : "",
            hint ? hint : "", hint ? "\"?)" : "");
    migrate_usage(stderr);
    return EXIT_INVALID;
}

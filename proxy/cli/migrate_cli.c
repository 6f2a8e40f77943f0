/* bin/pgtandem migrate: argument parsing, output and exit statuses for the
 * migration engine (start, resume, status, complete, rollback, plan, lint,
 * verify, pause, unpause, convert). The work itself is in engine*.c /
 * migration*.c; FILE.sql is converted by sql_load.c / sql_convert.c. */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alembic_chain.h"
#include "engine.h"
#include "evidence.h"
#include "migrate_remote.h"
#include "migration_state.h"
#include "log.h"
#include "migration.h"
#include "migration_estimate.h"
#include "migration_lifecycle.h"
#include "migration_plan.h"
#include "progress_line.h"
#include "sql_convert.h"
#include "sql_lint.h"
#include "sql_load.h"

#define EXIT_INVALID 2

struct cli {
    const char *command;
    const char *file;
    const char *db;
    const char *proxy;      /* drive a running proxy's engine instead of --db */
    int json;
    int quiet;
    int force;              /* complete despite sessions that bypass the proxies */
    int revert_window_s;    /* complete: keep the old shape for a revert this long (proxy only) */
    int estimate;           /* plan: measure the backfill on a sample of each table */
    long estimate_rows;     /* --estimate-rows; 0: not given, ESTIMATE_DEFAULT_ROWS */
    const char *name, *parent;  /* FILE.sql: the converted migration's name and parent */
    const char *evidence;       /* start/complete/rollback: the evidence bundle's directory */
    struct evidence *ev;        /* while a step runs with --evidence */
    struct engine_options opt;
};

struct progress {
    struct progress_line line;
    const struct mig_bf_table *table;   /* the table the rate is measured on */
    double started_ms;
    long long start_rows;
    struct evidence *ev;                /* every batch goes to its log */
};

/* The commands and their flags: getopt's table, `migrate --help` and each
 * `migrate COMMAND --help` are built from these two lists. */
struct migrate_command {
    const char *name;
    const char *args;       /* its operand, "" for none */
    const char *help;
};

static const struct migrate_command COMMANDS[] = {
    {"start", "FILE|DIR", "validate, expand and backfill; both releases work until complete"},
    {"resume", "", "continue a backfill stopped by --no-backfill, --stop-after-batches or a failure"},
    {"status", "", "the current migration, its phase and backfill, and the proxies of the fleet"},
    {"complete", "", "the cutover: checks while traffic flows, then the contract in one short transaction"},
    {"rollback", "", "back to the original shape (any time before complete)"},
    {"finalize", "", "drop the old shape `complete --revert-window-s` kept (with --proxy)"},
    {"revert", "", "every session back to the old shape `complete --revert-window-s` kept, then roll back "
                   "(with --proxy)"},
    {"plan", "FILE", "the SQL of every phase (exact with --db); changes nothing"},
    {"lint", "FILE.sql|FILE.json|DIR", "what would block or break the running application, the chain rules and, "
                                       "with --db, what the live catalog refuses"},
    {"verify", "", "row by row: the new columns equal up(old)"},
    {"convert", "FILE.sql", "print the migration (JSON) a .sql file converts to"},
    {"pause", "", "pause the backfill (the throttle's switch)"},
    {"unpause", "", "let a paused backfill go on"},
    {NULL, NULL, NULL},
};

#define ALL_DIRECT "start resume status complete rollback plan lint verify convert pause unpause"
#define REMOTE "start status complete rollback finalize revert"

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
    {"format", "text|json", 'F', "lint", "the findings as text (default) or one JSON document"},
    {"lock-timeout", "MS", 'l', "start resume complete rollback", "lock_timeout of each DDL step, 1 to 600000 ms "
                                                                   "(default 200)"},
    {"retries", "N", 'r', "start complete", "attempts of a step that waits for a lock, 1 to 1000 (default 10)"},
    {"no-backfill", NULL, 'n', "start", "expand only; `resume` backfills later"},
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
        "DIR: a chain (*.json with parents, or numbered *.sql files); its pending migrations run as one.\n"
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

/* Feeds the engine's backfill callbacks to the shared status line. The rate
 * is measured per table from the start of the first batch this process ran
 * on it (the callback comes after that batch), so a resumed backfill shows
 * its own speed and each table its own. */
static void on_progress(const struct backfill *b, int finished, void *arg)
{
    struct progress *p = arg;
    double now = progress_mono_ms();
    if (p->ev)
        evidence_batch(p->ev, b, finished);
    if (p->table != b->table) {
        p->table = b->table;
        p->started_ms = now - b->last_ms;
        p->start_rows = b->rows_done - b->last_rows;
    }
    if (!progress_line_due(&p->line, finished))
        return;
    double secs = (now - p->started_ms) / 1000.0;
    double rate = secs > 0 ? (double)(b->rows_done - p->start_rows) / secs : -1;
    double total = b->est_total > (double)b->rows_done ? b->est_total : (double)b->rows_done;
    struct progress_sample s = {
        .table = b->table->qname, .rows_done = (double)b->rows_done, .est_total = total, .rows_per_s = rate,
        .eta_s = rate > 0 ? (total - (double)b->rows_done) / rate : -1, .batch_rows = (double)b->batch_rows,
        .last_batch_ms = b->last_ms, .max_batch_ms = b->max_ms, .throttle = b->throttle};
    progress_line_show(&p->line, &s, finished);
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
            if (strcmp(optarg, "json") != 0 && strcmp(optarg, "text") != 0) return -1;
            c->json = !strcmp(optarg, "json");
            break;
        case 'P': c->parent = optarg; break;
        case 'X': c->estimate = 1; break;
        case 'x':
            if (parse_long(optarg, 1, 100000000, &v) != 0) return -1;
            c->estimate_rows = v;
            break;
        case 'n': c->opt.skip_backfill = 1; break;
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

static int report(int rc, const char *err)
{
    if (rc != 0)
        fprintf(stderr, "pgtandem migrate: error: %s\n", err);
    return rc;
}

static int need_db(const struct cli *c)
{
    if (c->db)
        return 0;
    fprintf(stderr, "pgtandem migrate %s: no database: pass --db URI or set PGTANDEM_DB / DATABASE_URL\n",
            c->command);
    return -1;
}

static int need_file(const struct cli *c)
{
    if (c->file)
        return 0;
    fprintf(stderr, "pgtandem migrate %s: a migration FILE is required\n", c->command);
    return -1;
}

/* A migration file: JSON as it is, FILE.sql converted first. */
static int load_migration(const struct cli *c, const char *path, struct migration *m, char *err, size_t errlen)
{
    if (!sqlc_is_sql_file(path))
        return mig_load_file(path, m, err, errlen);
    struct sql_load_options o = {.db = c->db, .name = c->name, .parent = c->parent};
    return sql_load_migration(path, &o, m, err, errlen);
}

static int open_engine(const struct cli *c, struct engine *e, int exclusive, char *err, size_t errlen)
{
    int rc = engine_open(e, c->db, &c->opt, exclusive, err, errlen);
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
    if (c->estimate && !c->db) {
        fprintf(stderr, "pgtandem migrate plan --estimate: the estimate samples the live tables: pass --db URI "
                "or set PGTANDEM_DB / DATABASE_URL\n");
        return EXIT_INVALID;
    }
    if (need_file(c) || load_migration(c, c->file, &m, err, sizeof err) != 0) {
        if (c->file)
            fprintf(stderr, "pgtandem migrate: error: %s\n", err);
        mig_free(&m);
        return EXIT_INVALID;
    }
    struct mig_plan plan;
    int rc, estimated = 0;
    if (c->db) {
        struct engine e;
        rc = open_engine(c, &e, 0, err, sizeof err);
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
    return report(rc, err);
}

#define CATALOG_RULE "catalog-refuses"
#define CATALOG_FIX "change the migration as the message says; `pgtandem migrate plan FILE --db` shows the same " \
                    "refusal, and start refuses it before its first DDL"

/* Where operation `index` is written in a JSON migration: the occurrence of
 * its operation key that belongs to it. 0 when unknown (a migration
 * converted from SQL has no such text). */
static void locate_op(const struct migration *m, int index, int *line, int *col)
{
    *line = 0;
    *col = 0;
    if (index < 0 || (size_t)index >= m->nops || !m->json || sqlc_is_sql_file(m->file))
        return;
    char key[40];
    snprintf(key, sizeof key, "\"%s\"", mig_op_name(m->ops[index].kind));
    int nth = 0;
    for (int i = 0; i < index; i++)
        nth += m->ops[i].kind == m->ops[index].kind;
    const char *hit = strstr(m->json, "\"operations\"");
    for (hit = hit ? strstr(hit, key) : NULL; hit && nth > 0; nth--)
        hit = strstr(hit + 1, key);
    if (hit)
        mig_text_pos(m->json, hit, line, col);
}

/* A refusal of the live catalog ("FILE: operations[i].op: object, why, what
 * to do") as a lint finding at the operation it names. */
static void add_refusal(const struct migration *m, const char *msg, struct lint_report *lr)
{
    int index = -1, line, col;
    const char *at = strstr(msg, "operations[");
    if (!at || sscanf(at, "operations[%d]", &index) != 1)
        index = -1;
    locate_op(m, index, &line, &col);
    const struct mig_op *op = index >= 0 && (size_t)index < m->nops ? &m->ops[index] : NULL;
    const char *object = op ? (op->table ? op->table : op->from) : NULL;
    char what[300];
    if (op)
        snprintf(what, sizeof what, "operations[%d].%s%s%s%s%s", index, mig_op_name(op->kind),
                 object ? " on " : "", object ? op->schema : "", object ? "." : "", object ? object : "");
    else
        snprintf(what, sizeof what, "migration \"%s\"", m->name);
    lint_report_add(lr, CATALOG_RULE, m->file, line, col, at ? at : msg, CATALOG_FIX, what);
}

/* Recorded on the database (other than rolled back): the catalog already
 * has its changes, or some of them. */
static int is_applied(json_t *applied, const struct migration *m)
{
    const char *status = json_string_value(json_object_get(json_object_get(applied, m->name), "status"));
    return status && mig_status_of_word(status) != MIG_ST_ROLLED_BACK;
}

/* What start would refuse before its first DDL (the plan against the live
 * catalog, the dependents of every column it changes, the live checks), for
 * the first migration not applied yet: the later ones build on it, so the
 * catalog cannot judge them before it is applied. Changes nothing. */
static int lint_catalog(const struct cli *c, struct engine *e, json_t *applied, struct migration *list, size_t n,
                        struct lint_report *lr, char *err, size_t errlen)
{
    size_t i = 0;
    while (i < n && is_applied(applied, &list[i]))
        i++;
    if (i == n)
        return ENGINE_OK;
    struct mig_plan plan;
    char why[2048];
    int rc = engine_prepare(e, &list[i], &plan, why, sizeof why);
    if (rc == ENGINE_OK)
        mig_plan_free(&plan);
    else if (rc == ENGINE_INVALID)
        add_refusal(&list[i], why, lr);
    else
        return snprintf(err, errlen, "%s", why), rc;
    if (rc == ENGINE_OK && !c->quiet && !c->json)
        printf("lint: \"%s\" passes the live catalog's validation (what start checks before its first DDL)\n",
               list[i].name);
    if (i + 1 < n && !c->quiet && !c->json)
        printf("lint: %zu later migration(s) are checked against the catalog once \"%s\" is applied\n",
               n - i - 1, list[i].name);
    return ENGINE_OK;
}

static int lint_against_db(const struct cli *c, struct migration *list, size_t n, struct lint_report *lr,
                           char *err, size_t errlen)
{
    struct engine e;
    int rc = open_engine(c, &e, 0, err, errlen);
    if (rc != ENGINE_OK)
        return rc;
    json_t *applied = NULL;
    rc = engine_applied(&e, &applied, err, errlen);
    for (size_t i = 0; rc == ENGINE_OK && i < n; i++) {
        json_t *a = json_object_get(applied, list[i].name);
        const char *sum = json_string_value(json_object_get(a, "checksum"));
        const char *status = json_string_value(json_object_get(a, "status"));
        if (sum && strcmp(sum, list[i].checksum) != 0 && status && mig_status_of_word(status) != MIG_ST_ROLLED_BACK) {
            snprintf(err, errlen, "%s: migration \"%s\" was applied (%s) with checksum %.12s but the file now "
                     "has %.12s; applied migrations are history: restore the file and put the change in a "
                     "new migration", list[i].file, list[i].name, status, sum, list[i].checksum);
            rc = ENGINE_INVALID;
        }
    }
    if (rc == ENGINE_OK)
        rc = lint_catalog(c, &e, applied, list, n, lr, err, errlen);
    json_decref(applied);
    engine_close(&e);
    return rc;
}

/* lint FILE.sql --db: the file converted as start would convert it, then
 * checked against the catalog like a JSON migration. */
static int lint_sql_against_db(const struct cli *c, struct lint_report *lr, char *err, size_t errlen)
{
    struct migration m;
    int rc = load_migration(c, c->file, &m, err, errlen) == 0 ? ENGINE_OK : ENGINE_INVALID;
    if (rc == ENGINE_OK)
        rc = lint_against_db(c, &m, 1, lr, err, errlen);
    mig_free(&m);
    return rc;
}

/* JSON migrations, one file or a directory's chain: structure, plans, the
 * applied checksums, and the SQL inside their `sql` operations. */
static int lint_json(const struct cli *c, int is_dir, struct lint_report *lr, char *err, size_t errlen)
{
    struct migration *list = NULL;
    size_t n = 0;
    int rc;
    if (is_dir) {
        rc = mig_load_dir(c->file, &list, &n, err, errlen) == 0 ? ENGINE_OK : ENGINE_INVALID;
    } else {
        list = calloc(1, sizeof *list);
        rc = list && load_migration(c, c->file, list, err, errlen) == 0 ? ENGINE_OK : ENGINE_INVALID;
        n = 1;
    }
    for (size_t i = 0; rc == ENGINE_OK && i < n; i++) {
        struct mig_plan plan;
        rc = mig_plan_build(&list[i], NULL, &plan, err, errlen) == 0 ? ENGINE_OK : ENGINE_INVALID;
        if (rc == ENGINE_OK)
            mig_plan_free(&plan);
        if (rc == ENGINE_OK && sql_lint_migration(&list[i], lr, err, errlen) != 0)
            rc = ENGINE_INVALID;
    }
    if (rc == ENGINE_OK && c->db)
        rc = lint_against_db(c, list, n, lr, err, errlen);
    if (rc == ENGINE_OK && !c->quiet && !c->json && lr->blocking == 0)
        printf("lint: %zu migration(s) OK%s%s\n", n, n ? ", head " : "", n ? list[n - 1].name : "");
    mig_free_list(list, n);
    return rc;
}

/* Applied Alembic revisions are history: every revision alembic_version
 * names has its file, and one pgtandem applied still has the down_revision
 * it was applied with (the policy's "never change down_revision"). */
static int alembic_against_db(const struct cli *c, const struct alembic_chain *ch, char *err, size_t errlen)
{
    struct engine e;
    int rc = open_engine(c, &e, 0, err, errlen);
    if (rc != ENGINE_OK)
        return rc;
    json_t *versions = NULL, *applied = NULL;
    rc = engine_alembic_versions(&e, &versions, err, errlen);
    if (rc == ENGINE_OK)
        rc = engine_applied(&e, &applied, err, errlen);
    size_t i;
    json_t *v;
    json_array_foreach(versions, i, v) {
        if (rc == ENGINE_OK && !alembic_find(ch, json_string_value(v))) {
            snprintf(err, errlen, "%s: the database is at revision \"%s\" (alembic_version) but no file defines "
                     "it; applied migrations are never deleted: restore its file", c->file, json_string_value(v));
            rc = ENGINE_INVALID;
        }
    }
    for (i = 0; rc == ENGINE_OK && i < ch->n; i++) {
        const struct alembic_rev *r = &ch->revs[i];
        json_t *a = json_object_get(applied, r->revision);
        const char *status = json_string_value(json_object_get(a, "status"));
        const char *parent = json_string_value(json_object_get(a, "parent"));
        int applied_here = status && mig_status_of_word(status) != MIG_ST_ROLLED_BACK && parent && r->nparents == 1;
        if (applied_here && strcmp(parent, r->parents[0]) != 0) {
            snprintf(err, errlen, "%s:%d: revision \"%s\" was applied (%s) after \"%s\" but its down_revision "
                     "is now \"%s\"; applied migrations are history: restore down_revision and put the change "
                     "in a new revision", r->file, r->down_line, r->revision, status, parent, r->parents[0]);
            rc = ENGINE_INVALID;
        }
    }
    json_decref(versions);
    json_decref(applied);
    engine_close(&e);
    return rc;
}

/* An Alembic versions/ directory: the chain rules, then with --db the
 * applied history. */
static int lint_alembic(const struct cli *c, char *err, size_t errlen)
{
    struct alembic_chain ch;
    if (alembic_load_dir(c->file, &ch, err, errlen) != 0)
        return ENGINE_INVALID;
    int rc = c->db ? alembic_against_db(c, &ch, err, errlen) : ENGINE_OK;
    if (rc == ENGINE_OK && !c->quiet && !c->json)
        printf("lint: %zu Alembic revision(s) OK, head %s\n", ch.n, ch.revs[ch.head].revision);
    alembic_chain_free(&ch);
    return rc;
}

static int dir_has_json(const char *dir)
{
    DIR *d = opendir(dir);
    const struct dirent *e;
    int found = 0;
    while (d && !found && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        found = n > 5 && !strcmp(e->d_name + n - 5, ".json");
    }
    if (d)
        closedir(d);
    return found;
}

/* lint FILE.sql|FILE.json|DIR: SQL is checked statement by statement for
 * what would block or break the running application; JSON migrations as
 * before; with --db, what the live catalog refuses as well. Anything
 * blocking or refused makes the exit status 2. */
static int cmd_lint(const struct cli *c)
{
    char err[2048];
    if (need_file(c))
        return EXIT_INVALID;
    struct stat st;
    int is_dir = stat(c->file, &st) == 0 && S_ISDIR(st.st_mode);
    int is_sql = !is_dir && sqlc_is_sql_file(c->file);
    struct lint_report lr = {0};
    size_t nsql = 0;
    int rc = ENGINE_OK;
    if (is_dir)
        rc = sql_lint_dir(c->file, &lr, &nsql, err, sizeof err) == 0 ? ENGINE_OK : ENGINE_INVALID;
    else if (is_sql)
        rc = sql_lint_file(c->file, &lr, err, sizeof err) == 0 ? ENGINE_OK : ENGINE_INVALID;
    int is_alembic = is_dir && alembic_dir_has_revisions(c->file);
    if (rc == ENGINE_OK && is_alembic)
        rc = lint_alembic(c, err, sizeof err);
    if (rc == ENGINE_OK && !is_sql && (!is_dir || (nsql == 0 && !is_alembic) || dir_has_json(c->file)))
        rc = lint_json(c, is_dir, &lr, err, sizeof err);
    if (rc == ENGINE_OK && is_sql && c->db)
        rc = lint_sql_against_db(c, &lr, err, sizeof err);
    if (c->json) {
        char *doc = lint_report_json(&lr);
        printf("%s\n", doc ? doc : "{}");
        free(doc);
    } else {
        lint_report_print(&lr, stdout);
    }
    if (rc == ENGINE_OK && lr.blocking) {
        size_t refused = 0;
        for (size_t i = 0; i < lr.n; i++)
            refused += !strcmp(lr.v[i].rule, CATALOG_RULE);
        int off = 0;
        if (lr.blocking > refused)
            off = snprintf(err, sizeof err, "%zu statement(s) would block or break the running application; each "
                           "finding names the online alternative (pgtandem migrate start FILE.sql runs the "
                           "convertible ones that way)%s", lr.blocking - refused, refused ? "; " : "");
        if (refused && off >= 0 && (size_t)off < sizeof err)
            snprintf(err + off, sizeof err - (size_t)off, "%zu operation(s) refused by the live catalog, as start "
                     "would refuse them before its first DDL; nothing was changed", refused);
        rc = ENGINE_INVALID;
    } else if (rc == ENGINE_OK && nsql && !c->quiet && !c->json) {
        printf("lint: %zu SQL file(s), nothing that blocks the running application\n", nsql);
    }
    lint_report_free(&lr);
    return report(rc, err);
}

static int is_directory(const char *path)
{
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A directory of *.sql files (drizzle-kit's, or numbered hand-written
 * ones) as a chain: each converted, named by its file (without .sql), its
 * parent the file before it (--parent for the first). */
/* A chain's .sql file is named by its file, without ".sql". */
static void sql_chain_name(const char *path, char *name, size_t cap)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(name, cap, "%.*s", (int)strlen(base) - 4, base);
}

static int load_sql_chain(const struct cli *c, struct migration **out, size_t *n, char *err, size_t errlen)
{
    char **paths = NULL;
    size_t count = 0;
    if (mig_list_files(c->file, ".sql", &paths, &count, err, errlen) != 0)
        return -1;
    struct migration *list = calloc(count ? count : 1, sizeof *list);
    int rc = list && count ? 0 : (snprintf(err, errlen, "%s: no *.json or *.sql migrations found", c->file), -1);
    size_t loaded = 0;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        char name[128];
        sql_chain_name(paths[i], name, sizeof name);
        struct sql_load_options o = {.db = c->db, .name = name, .parent = i ? list[i - 1].name : c->parent};
        rc = sql_load_migration(paths[i], &o, &list[i], err, errlen);
        loaded = i + 1;
    }
    mig_free_names(paths, count);
    if (rc != 0) {
        mig_free_list(list, loaded);
        return -1;
    }
    *out = list;
    *n = count;
    return 0;
}

/* start DIR: *.json (a chain with parents) or *.sql (in file order). */
static int load_chain(const struct cli *c, struct migration **out, size_t *n, char *err, size_t errlen)
{
    char **json = NULL;
    size_t njson = 0;
    if (mig_list_files(c->file, ".json", &json, &njson, err, errlen) != 0)
        return -1;
    mig_free_names(json, njson);
    return njson ? mig_load_dir(c->file, out, n, err, errlen) : load_sql_chain(c, out, n, err, errlen);
}

/* What start runs: one migration (FILE), or a chain (DIR) whose pending
 * migrations run as one (engine_start_chain). */
static int load_start_input(const struct cli *c, int chain, struct migration **list, size_t *n, char *err,
                            size_t errlen)
{
    if (chain)
        return load_chain(c, list, n, err, errlen);
    if (need_file(c))
        return -1;
    *list = calloc(1, sizeof **list);
    *n = *list ? 1 : 0;
    if (!*list)
        return snprintf(err, errlen, "out of memory"), -1;
    return load_migration(c, c->file, *list, err, errlen);
}

static int cmd_start(const struct cli *c, int resume)
{
    char err[2048];
    struct migration *list = NULL;
    size_t n = 0;
    int chain = !resume && is_directory(c->file);
    if (!resume && load_start_input(c, chain, &list, &n, err, sizeof err) != 0) {
        if (c->file)
            fprintf(stderr, "pgtandem migrate: error: %s\n", err);
        mig_free_list(list, n);
        return EXIT_INVALID;
    }
    if (need_db(c)) {
        mig_free_list(list, n);
        return EXIT_INVALID;
    }
    struct progress prog = {.line.tty = isatty(STDERR_FILENO) && !c->quiet, .ev = c->ev};
    struct cli local = *c;
    local.opt.on_progress = on_progress;
    local.opt.progress_arg = &prog;
    struct engine e;
    int rc = open_engine(&local, &e, 1, err, sizeof err);
    if (rc == ENGINE_OK) {
        rc = resume ? engine_resume(&e, err, sizeof err)
             : chain ? engine_start_chain(&e, list, n, err, sizeof err)
                     : engine_start(&e, &list[0], err, sizeof err);
        progress_line_end(&prog.line);
        engine_close(&e);
    }
    mig_free_list(list, n);
    return report(rc, err);
}

/* The proxies registered on the database (a JSON array; empty when none
 * or when the database cannot say). */
static json_t *live_proxies(const char *db)
{
    PGconn *conn = PQconnectdb(db);
    PGresult *r = PQstatus(conn) == CONNECTION_OK ? PQexec(conn, MIG_STATE_FLEET_SQL) : NULL;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (state && !strcmp(state, "42P01")) {
        PQclear(r);
        r = PQexec(conn, MIG_STATE_FLEET_BEFORE_LEASES_SQL);
    }
    json_t *list = r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                       ? json_loads(PQgetvalue(r, 0, 0), 0, NULL)
                       : NULL;
    PQclear(r);
    PQfinish(conn);
    return json_is_array(list) ? list : (json_decref(list), json_array());
}

/* Whether something accepts connections at host:port within a second. */
static int admin_reachable(const char *hostport)
{
    char host[160];
    const char *colon = strrchr(hostport, ':');
    if (!colon || (size_t)(colon - hostport) >= sizeof host)
        return 0;
    snprintf(host, sizeof host, "%.*s", (int)(colon - hostport), hostport);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
        return 0;
    int ok = 0;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd >= 0 && (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS)) {
        struct pollfd pfd = {fd, POLLOUT, 0};
        int err = 0;
        socklen_t len = sizeof err;
        ok = poll(&pfd, 1, 1000) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
    }
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return ok;
}

#define FLEET_WAIT_TRIES 40 /* x 500 ms: longer than any lease a proxy runs with by default */

/* With proxies in front of the database, the contract must run while all
 * of them hold their traffic: one of them coordinates it. A registered
 * proxy that cannot be reached is likely gone: its lease is waited out.
 * Returns -1 when no proxy is (or remains) registered. */
static int complete_through_fleet(const struct cli *c)
{
    for (int tries = 0; tries < FLEET_WAIT_TRIES; tries++) {
        json_t *proxies = live_proxies(c->db);
        size_t n = json_array_size(proxies), i;
        json_t *p;
        json_array_foreach(proxies, i, p) {
            const char *admin = json_string_value(json_object_get(p, "admin"));
            if (!admin || !admin[0] || !admin_reachable(admin))
                continue;
            char url[200];
            snprintf(url, sizeof url, "http://%s", admin);
            fprintf(stderr, "%zu proxies are registered on this database; completing through the one at %s, "
                    "which holds all of them during the contract\n", n, url);
            json_decref(proxies);
            return migrate_remote_main("complete", url, NULL, c->json, c->force, c->revert_window_s);
        }
        json_decref(proxies);
        if (n == 0)
            return -1;
        if (tries == 0)
            fprintf(stderr, "%zu proxies are registered on this database but none answers at its admin address; "
                    "waiting for their leases to run out\n", n);
        struct timespec ts = {0, 500 * 1000000L};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "pgtandem migrate: error: proxies registered on this database keep renewing their leases but "
            "none answers at its admin address; complete through one of them (the contract must run while they "
            "hold their traffic)\n");
    return 1;
}

static int cmd_complete(const struct cli *c)
{
    char err[2048];
    if (need_db(c))
        return EXIT_INVALID;
    /* The contract must run while every proxy holds its traffic, which only
     * a proxy can do: with proxies registered, one of them runs it. This is
     * the one call from the CLI to a proxy, and a proxy never calls the CLI.
     * Checks alone hold nobody: they run here. */
    if (!c->opt.validate_only) {
        int rc = complete_through_fleet(c);
        if (rc >= 0)
            return rc;
    }
    if (c->revert_window_s > 0) {
        fprintf(stderr, "pgtandem migrate complete: --revert-window-s needs a proxy: it keeps the old shape for"
                " the sessions it routes, and no proxy is registered on this database\n");
        return EXIT_INVALID;
    }
    struct engine e;
    struct engine_contract_report rep = {0};
    int rc = open_engine(c, &e, 1, err, sizeof err);
    if (rc == ENGINE_OK) {
        rc = engine_complete(&e, &rep, err, sizeof err);
        engine_close(&e);
    }
    if (rep.attempts > 0)
        fprintf(stderr, "contract: %s after %d attempt(s), lock wait %.0fms, total %.0fms\n",
                rc == ENGINE_OK ? "committed" : "abandoned", rep.attempts, rep.lock_wait_ms, rep.total_ms);
    if (rc == ENGINE_OK && c->opt.validate_only)
        printf("every row passes the migration's checks; it is ready for the cutover\n");
    else if (rc == ENGINE_OK)
        printf("migration complete\n");
    return report(rc, err);
}

static int cmd_simple(const struct cli *c, int exclusive, int (*fn)(struct engine *, char *, size_t))
{
    char err[2048];
    if (need_db(c))
        return EXIT_INVALID;
    struct engine e;
    int rc = open_engine(c, &e, exclusive, err, sizeof err);
    if (rc == ENGINE_OK) {
        rc = fn(&e, err, sizeof err);
        engine_close(&e);
    }
    return report(rc, err);
}

static int do_rollback(struct engine *e, char *err, size_t errlen)
{
    int rc = engine_rollback(e, NULL, err, errlen);
    if (rc == ENGINE_OK)
        printf("migration rolled back; the original shape is restored\n");
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
    migrate_print_proxies(json_object_get(st, "fleet"), NULL);
}

static int cmd_status(const struct cli *c)
{
    char err[2048];
    if (need_db(c))
        return EXIT_INVALID;
    struct engine e;
    int rc = open_engine(c, &e, 0, err, sizeof err);
    json_t *st = NULL;
    if (rc == ENGINE_OK) {
        rc = engine_status(&e, &st, err, sizeof err);
        engine_close(&e);
    }
    if (rc == ENGINE_OK)
        json_object_set_new(st, "fleet", live_proxies(c->db));
    if (rc == ENGINE_OK && c->json) {
        char *text = json_dumps(st, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", text ? text : "{}");
        free(text);
    } else if (rc == ENGINE_OK) {
        print_status_text(st);
    }
    json_decref(st);
    return report(rc, err);
}

static int cmd_convert(const struct cli *c)
{
    char err[2048];
    if (need_file(c))
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

/* start FILE.sql --proxy: the file goes as it is; the proxy's engine
 * converts it, reading the old types of its type changes (for the derived
 * downs) from the catalog it reaches. */
static int remote_with_sql(const struct cli *c)
{
    char err[2048];
    struct sql_load_options o = {.name = c->name, .parent = c->parent};
    char *body = sql_load_body(c->file, &o, err, sizeof err);
    if (!body) {
        fprintf(stderr, "pgtandem migrate: error: %s\n", err);
        return EXIT_INVALID;
    }
    int rc = migrate_remote_start(c->proxy, body, strlen(body));
    free(body);
    return rc;
}

/* start DIR --proxy of *.sql files: they go as they are, in file order,
 * for the proxy's engine to convert with its catalog (as FILE.sql). */
static char *sql_chain_body(const struct cli *c, char *err, size_t errlen)
{
    char **paths = NULL, **names = NULL;
    size_t n = 0;
    if (mig_list_files(c->file, ".sql", &paths, &n, err, errlen) != 0)
        return NULL;
    char *body = NULL;
    names = n ? calloc(n, sizeof *names) : NULL;
    if (!names)
        snprintf(err, errlen, n ? "out of memory" : "%s: no *.json or *.sql migrations found", c->file);
    for (size_t i = 0; names && i < n; i++) {
        char name[128];
        sql_chain_name(paths[i], name, sizeof name);
        names[i] = strdup(name);
    }
    if (names)
        body = sql_load_chain_body(paths, names, n, c->parent, err, errlen);
    mig_free_names(names, names ? n : 0);
    mig_free_names(paths, n);
    return body;
}

/* start DIR --proxy: the whole chain goes; the proxy's engine picks the
 * pending ones (it can read what is applied). */
static int remote_with_chain(const struct cli *c)
{
    char err[2048];
    struct migration *list;
    size_t n;
    char **json = NULL;
    size_t njson = 0;
    int listed = mig_list_files(c->file, ".json", &json, &njson, err, sizeof err) == 0;
    mig_free_names(json, njson);
    if (listed && njson == 0) {
        char *body = sql_chain_body(c, err, sizeof err);
        int rc = body ? migrate_remote_start(c->proxy, body, strlen(body)) : EXIT_INVALID;
        if (!body)
            fprintf(stderr, "pgtandem migrate: error: %s\n", err);
        free(body);
        return rc;
    }
    if (load_chain(c, &list, &n, err, sizeof err) != 0) {
        fprintf(stderr, "pgtandem migrate: error: %s\n", err);
        return EXIT_INVALID;
    }
    char *body = mig_chain_body(list, n);
    mig_free_list(list, n);
    int rc = body ? migrate_remote_start(c->proxy, body, strlen(body)) : 1;
    free(body);
    return rc;
}

static int run_remote(const struct cli *c)
{
    int start = c->file && !strcmp(c->command, "start");
    if (start && is_directory(c->file))
        return remote_with_chain(c);
    if (start && sqlc_is_sql_file(c->file))
        return remote_with_sql(c);
    return migrate_remote_main(c->command, c->proxy, c->file, c->json, c->force, c->revert_window_s);
}

static int run_step(const struct cli *c)
{
    if (c->proxy)
        return run_remote(c);
    if (!strcmp(c->command, "start"))
        return cmd_start(c, 0);
    if (!strcmp(c->command, "complete"))
        return cmd_complete(c);
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
    if (start && (need_file(c) || load_migration(c, c->file, &m, err, sizeof err) != 0)) {
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
    if (c.evidence)
        return run_with_evidence(&c);
    if (c.proxy && c.db) {
        fprintf(stderr, "pgtandem migrate: give either --db or --proxy, not both (through a proxy its engine "
                "reads the catalog, a .sql file's old column types too; --db goes with --proxy only for "
                "--evidence)\n");
        return EXIT_INVALID;
    }
    if (c.proxy)
        return run_remote(&c);
    if (!strcmp(cmd, "convert")) return cmd_convert(&c);
    if (!strcmp(cmd, "plan")) return cmd_plan(&c);
    if (!strcmp(cmd, "lint")) return cmd_lint(&c);
    if (!strcmp(cmd, "start")) return cmd_start(&c, 0);
    if (!strcmp(cmd, "resume")) return cmd_start(&c, 1);
    if (!strcmp(cmd, "complete")) return cmd_complete(&c);
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

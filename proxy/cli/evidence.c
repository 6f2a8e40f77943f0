/* Evidence bundles for `migrate start|complete|rollback --evidence DIR`: the
 * schema before and after (pg_dump --schema-only) and their diff, the
 * migration and its plan, a run log, row counts of the touched tables, the
 * verify report, and SHA256SUMS. Earlier steps' checksums are never
 * recomputed, so a file changed after the fact fails `sha256sum -c`.
 * Evidence that cannot be taken is noted in the log and makes the command
 * fail at the end; it never stops or undoes the migration step itself. */
#include "evidence.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "migration_sql.h"
#include "sql_convert.h"

#define SUMS "SHA256SUMS"
#define LINE_MAX_LOG 4096
/* Sessions named pgtandem* are the tool's own: the fleet's check for
 * sessions that bypass the proxies leaves them out. */
#define APP_NAME "pgtandem evidence"

static void utc_stamp(char *buf, size_t n, const char *fmt, int millis)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    size_t len = strftime(buf, n, fmt, &tm);
    if (millis && len + 6 < n)
        snprintf(buf + len, n - len, ".%03dZ", (int)(tv.tv_usec / 1000));
}

static char *path_join(const char *a, const char *b)
{
    char *p = NULL;
    return asprintf(&p, "%s/%s", a, b) < 0 ? NULL : p;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

void evidence_note(struct evidence *ev, const char *fmt, ...)
{
    char stamp[40], line[LINE_MAX_LOG];
    utc_stamp(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", 1);
    int n = snprintf(line, sizeof line, "%s ", stamp);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = strlen(line);
    line[len++] = '\n';
    if (ev->log_fd >= 0 && write_all(ev->log_fd, line, len) != 0)
        ev->failed = 1;
}

/* Writes a step file; a failure is noted and fails the command at the end. */
static FILE *open_step_file(struct evidence *ev, const char *name, const char *mode)
{
    char *p = path_join(ev->path, name);
    FILE *f = p ? fopen(p, mode) : NULL;
    if (!f) {
        evidence_note(ev, "evidence: cannot write %s: %s", name, strerror(errno));
        ev->failed = 1;
    }
    free(p);
    return f;
}

static void close_step_file(struct evidence *ev, FILE *f, const char *name)
{
    if (f && (ferror(f) | fclose(f)) != 0) {
        evidence_note(ev, "evidence: writing %s failed", name);
        ev->failed = 1;
    }
}

static void write_text(struct evidence *ev, const char *name, const char *text)
{
    FILE *f = open_step_file(ev, name, "w");
    if (f)
        fputs(text, f);
    close_step_file(ev, f, name);
}

/* ---- child processes: pg_dump, pg_config, diff ---- */

/* Every keyword of the URI as the environment variable libpq reads, so the
 * password never appears on a command line. Runs in the child. */
static void conninfo_to_env(const char *db)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(db, &msg), *defs = PQconndefaults();
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        for (PQconninfoOption *d = defs; o->val && o->val[0] && d && d->keyword; d++)
            if (d->envvar && !strcmp(d->keyword, o->keyword))
                setenv(d->envvar, o->val, 1);
    }
    PQconninfoFree(opts);
    PQconninfoFree(defs);
    PQfreemem(msg);
    setenv("PGAPPNAME", APP_NAME, 1);
}

/* Runs argv with stdout to out_fd and stderr to err_fd (-1: inherited), in
 * cwd when given; returns the exit status, -1 when it could not run. */
static int run_child(char *const argv[], int out_fd, int err_fd, const char *cwd, const char *db)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (out_fd >= 0)
            dup2(out_fd, STDOUT_FILENO);
        if (err_fd >= 0)
            dup2(err_fd, STDERR_FILENO);
        if (db)
            conninfo_to_env(db);
        if (cwd && chdir(cwd) != 0)
            _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) != 127 ? WEXITSTATUS(st) : -1;
}

/* What argv prints on stdout, NUL-terminated, up to n - 1 bytes (its exit
 * status must be 0); -1 when it printed nothing or failed. */
static int capture(char *const argv[], char *buf, size_t n)
{
    char tmpl[] = "/tmp/pgtandem-evidence-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0)
        return -1;
    unlink(tmpl);
    int devnull = open("/dev/null", O_WRONLY);
    int rc = run_child(argv, fd, devnull, NULL, NULL);
    if (devnull >= 0)
        close(devnull);
    ssize_t got = rc == 0 ? pread(fd, buf, n - 1, 0) : -1;
    close(fd);
    if (got <= 0)
        return -1;
    buf[got] = '\0';
    return 0;
}

static char *executable(const char *dir, const char *name)
{
    char *p = path_join(dir, name);
    if (p && access(p, X_OK) == 0)
        return p;
    free(p);
    return NULL;
}

static char *find_in_path(const char *name)
{
    const char *path = getenv("PATH");
    char *copy = strdup(path ? path : ""), *save = NULL, *found = NULL;
    for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d && !found; d = strtok_r(NULL, ":", &save))
        found = executable(d, name);
    free(copy);
    return found;
}

static int version_of(const char *bin_dir)
{
    const char *p = strstr(bin_dir, "/postgresql/");
    return p ? atoi(p + strlen("/postgresql/")) : 0;
}

/* pg_dump from PATH, else `pg_config --bindir`, else the newest under
 * /usr/lib/postgresql (a newer pg_dump reads older servers, not the other
 * way round). */
static char *find_pg_dump(void)
{
    char *found = find_in_path("pg_dump");
    char *pg_config = found ? NULL : find_in_path("pg_config"), bindir[1024];
    char *argv[] = {pg_config, "--bindir", NULL};
    if (pg_config && capture(argv, bindir, sizeof bindir) == 0) {
        bindir[strcspn(bindir, "\n")] = '\0';
        found = executable(bindir, "pg_dump");
    }
    free(pg_config);
    glob_t g;
    if (!found && glob("/usr/lib/postgresql/*/bin", 0, NULL, &g) == 0) {
        size_t best = 0;
        for (size_t i = 1; i < g.gl_pathc; i++)
            if (version_of(g.gl_pathv[i]) > version_of(g.gl_pathv[best]))
                best = i;
        found = executable(g.gl_pathv[best], "pg_dump");
        globfree(&g);
    }
    return found;
}

static int pg_dump_has_restrict_key(const char *pg_dump)
{
    char buf[16384], *argv[] = {(char *)pg_dump, "--help", NULL};
    return capture(argv, buf, sizeof buf) == 0 && strstr(buf, "--restrict-key") != NULL;
}

/* pg_dump >= 13.22/14.19/15.14 writes a random \restrict key into every
 * dump; one key per step keeps it out of the diff without making it
 * guessable. */
static void set_restrict_key(struct evidence *ev)
{
    unsigned char key[16];
    ev->restrict_arg[0] = '\0';
    if (!pg_dump_has_restrict_key(ev->pg_dump) || RAND_bytes(key, sizeof key) != 1)
        return;
    int n = snprintf(ev->restrict_arg, sizeof ev->restrict_arg, "--restrict-key=");
    for (size_t i = 0; i < sizeof key; i++)
        n += snprintf(ev->restrict_arg + n, sizeof ev->restrict_arg - (size_t)n, "%02x", key[i]);
}

/* ---- the bundle and this step's folder ---- */

static int next_step_number(const char *dir)
{
    DIR *d = opendir(dir);
    const struct dirent *e;
    int max = 0;
    while (d && (e = readdir(d)) != NULL)
        if (isdigit((unsigned char)e->d_name[0]) && isdigit((unsigned char)e->d_name[1]) && strchr(e->d_name, '-'))
            max = atoi(e->d_name) > max ? atoi(e->d_name) : max;
    if (d)
        closedir(d);
    return max + 1;
}

static int check_dir(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) != 0 && (errno != ENOENT || mkdir(dir, 0755) != 0)) {
        snprintf(err, errlen, "--evidence %s: cannot create the directory: %s; pass a directory this user "
                 "can write", dir, strerror(errno));
        return -1;
    }
    if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "--evidence %s: exists and is not a directory; pass a directory (it is created "
                 "when missing)", dir);
        return -1;
    }
    char *sums = path_join(dir, SUMS);
    int fd = sums ? open(sums, O_WRONLY | O_APPEND | O_CREAT, 0644) : -1;
    if (fd < 0)
        snprintf(err, errlen, "--evidence %s: cannot write %s there: %s; pass a directory this user can write",
                 dir, SUMS, strerror(errno));
    else
        close(fd);
    free(sums);
    return fd < 0 ? -1 : 0;
}

static int make_step(struct evidence *ev, const char *command, char *err, size_t errlen)
{
    char stamp[32];
    utc_stamp(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", 0);
    if (asprintf(&ev->step, "%02d-%s-%s", next_step_number(ev->dir), command, stamp) < 0)
        ev->step = NULL;
    ev->path = ev->step ? path_join(ev->dir, ev->step) : NULL;
    if (!ev->path || mkdir(ev->path, 0755) != 0) {
        snprintf(err, errlen, "--evidence %s: cannot create %s: %s", ev->dir, ev->step ? ev->step : "a step folder",
                 ev->path ? strerror(errno) : "out of memory");
        return -1;
    }
    char *log = path_join(ev->path, "run.log");
    ev->log_fd = log ? open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
    free(log);
    if (ev->log_fd < 0) {
        snprintf(err, errlen, "--evidence %s: cannot write %s/run.log", ev->dir, ev->step);
        rmdir(ev->path);
        return -1;
    }
    return 0;
}

static void free_evidence(struct evidence *ev)
{
    for (size_t i = 0; i < ev->ntables; i++) {
        free(ev->tables[i].schema);
        free(ev->tables[i].table);
    }
    free(ev->tables);
    free(ev->dir);
    free(ev->step);
    free(ev->path);
    free(ev->pg_dump);
    if (ev->log_fd >= 0)
        close(ev->log_fd);
    ev->log_fd = -1;
}

int evidence_open(struct evidence *ev, const char *dir, const char *command, const char *db, char *err,
                  size_t errlen)
{
    memset(ev, 0, sizeof *ev);
    ev->log_fd = ev->saved_fd[0] = ev->saved_fd[1] = -1;
    ev->db = db;
    ev->dir = strdup(dir);
    if (!ev->dir || check_dir(dir, err, errlen) != 0) {
        free_evidence(ev);
        return EVIDENCE_INVALID;
    }
    ev->pg_dump = find_pg_dump();
    if (!ev->pg_dump) {
        snprintf(err, errlen, "--evidence: pg_dump not found (PATH, pg_config --bindir, /usr/lib/postgresql/*/bin); "
                 "install the PostgreSQL client tools (Debian: postgresql-client)");
        free_evidence(ev);
        return EVIDENCE_FAILED;
    }
    if (make_step(ev, command, err, errlen) != 0) {
        free_evidence(ev);
        return EVIDENCE_INVALID;
    }
    set_restrict_key(ev);
    evidence_note(ev, "step %s: pgtandem migrate %s, schema snapshots by %s", ev->step, command, ev->pg_dump);
    return EVIDENCE_OK;
}

/* ---- the migration and the tables it touches ---- */

static void add_table(struct evidence *ev, const char *schema, const char *table)
{
    if (!table)
        return;
    schema = schema ? schema : "public";
    for (size_t i = 0; i < ev->ntables; i++)
        if (!strcmp(ev->tables[i].schema, schema) && !strcmp(ev->tables[i].table, table))
            return;
    struct evidence_table *t = realloc(ev->tables, (ev->ntables + 1) * sizeof *t);
    if (!t)
        return;
    ev->tables = t;
    t[ev->ntables].schema = strdup(schema);
    t[ev->ntables].table = strdup(table);
    if (t[ev->ntables].schema && t[ev->ntables].table)
        ev->ntables++;
    else {
        free(t[ev->ntables].schema);
        free(t[ev->ntables].table);
    }
}

/* rename_table names its table by from/to, not table: both names are
 * counted, the old one before and the new one after. */
static void collect_tables(struct evidence *ev, const struct migration *m)
{
    for (size_t i = 0; i < m->nops; i++) {
        const struct mig_op *op = &m->ops[i];
        add_table(ev, op->schema, op->kind == MIG_RENAME_TABLE ? op->from : op->table);
        if (op->kind == MIG_RENAME_TABLE)
            add_table(ev, op->schema, op->to);
    }
}

static void copy_source(struct evidence *ev, const char *source)
{
    size_t len = 0;
    char err[512];
    char *text = mig_read_file(source, &len, err, sizeof err);
    const char *base = strrchr(source, '/') ? strrchr(source, '/') + 1 : source;
    if (!text) {
        evidence_note(ev, "evidence: %s", err);
        ev->failed = 1;
        return;
    }
    FILE *f = open_step_file(ev, base, "w");
    if (f)
        fwrite(text, 1, len, f);
    close_step_file(ev, f, base);
    free(text);
}

/* The evidence's own session, named APP_NAME; e->conn is NULL when it
 * could not connect. */
static int open_db(struct evidence *ev, struct engine *e, char *err, size_t errlen)
{
    struct engine_options o;
    engine_default_options(&o);
    int rc = engine_open(e, ev->db, &o, ENGINE_LOCK_NONE, err, errlen);
    if (rc == ENGINE_OK)
        PQclear(PQexec(e->conn, "SET application_name = '" APP_NAME "'"));
    else
        engine_close(e);
    return rc;
}

static void write_plan(struct evidence *ev, const struct migration *m)
{
    char err[2048];
    struct engine e;
    struct mig_plan plan;
    FILE *f = open_step_file(ev, "plan.txt", "w");
    int rc = open_db(ev, &e, err, sizeof err);
    if (rc == ENGINE_OK)
        rc = engine_prepare(&e, m, &plan, err, sizeof err);
    engine_close(&e);
    if (f && rc == ENGINE_OK)
        mig_plan_print(m, &plan, f);
    else if (f)
        fprintf(f, "-- no plan: %s\n", err);
    if (rc == ENGINE_OK)
        mig_plan_free(&plan);
    close_step_file(ev, f, "plan.txt");
}

void evidence_migration(struct evidence *ev, const struct migration *m, const char *source)
{
    if (sqlc_is_sql_file(source))
        copy_source(ev, source);
    write_text(ev, "migration.json", m->json);   /* a parsed migration always has its JSON */
    collect_tables(ev, m);
    write_plan(ev, m);
    evidence_note(ev, "migration %s: %zu operation(s), %zu table(s) touched", m->name, m->nops, ev->ntables);
}

static PGconn *connect_db(struct evidence *ev, struct engine *e)
{
    char err[2048];
    if (open_db(ev, e, err, sizeof err) == ENGINE_OK)
        return e->conn;
    evidence_note(ev, "evidence: %s", err);
    ev->failed = 1;
    return NULL;
}

void evidence_current_migration(struct evidence *ev)
{
    struct engine e;
    PGconn *c = connect_db(ev, &e);
    PGresult *r = c ? PQexec(c, "SELECT name, status, migration, coalesce(plan, '') FROM pgtandem.migrations "
                                "ORDER BY started_at DESC LIMIT 1")
                    : NULL;
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        evidence_note(ev, "migration %s is %s", PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
        write_text(ev, "migration.json", PQgetvalue(r, 0, 2));
        write_text(ev, "plan.json", PQgetvalue(r, 0, 3));
        struct migration m;
        char err[1024];
        if (mig_parse(PQgetvalue(r, 0, 2), (size_t)PQgetlength(r, 0, 2), "pgtandem.migrations", &m, err,
                      sizeof err) == 0)
            collect_tables(ev, &m);
        mig_free(&m);
    } else if (c) {
        evidence_note(ev, "no migration recorded in this database");
    }
    PQclear(r);
    engine_close(&e);
}

/* ---- snapshots, counts, verify ---- */

/* argv with stdout to the step file name and stderr to the run log; the
 * exit status, -1 when it could not run. */
static int run_to_file(struct evidence *ev, const char *name, char *const argv[], const char *cwd, const char *db)
{
    char *out = path_join(ev->path, name);
    int fd = out ? open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
    free(out);
    int rc = fd >= 0 ? run_child(argv, fd, ev->log_fd, cwd, db) : -1;
    if (fd >= 0)
        close(fd);
    return rc;
}

static void snapshot(struct evidence *ev, const char *name)
{
    char *argv[] = {ev->pg_dump, "--schema-only", "--no-password", ev->restrict_arg[0] ? ev->restrict_arg : NULL,
                    NULL};
    int rc = run_to_file(ev, name, argv, NULL, ev->db);
    evidence_note(ev, "schema snapshot %s: %s", name, rc == 0 ? "written" : "FAILED (pg_dump's message above)");
    if (rc != 0)
        ev->failed = 1;
}

static void schema_diff(struct evidence *ev)
{
    char *diff = find_in_path("diff");
    char *argv[] = {diff, "-u", "schema-before.sql", "schema-after.sql", NULL};
    int rc = diff ? run_to_file(ev, "schema.diff", argv, ev->path, NULL) : -1;
    free(diff);
    evidence_note(ev, "schema diff: %s", rc == 0 ? "no change" : rc == 1 ? "written" : "FAILED");
    if (rc != 0 && rc != 1)
        ev->failed = 1;
}

static void count_rows(struct evidence *ev, const char *when)
{
    struct engine e = {0};
    PGconn *c = ev->ntables ? connect_db(ev, &e) : NULL;
    FILE *f = c ? open_step_file(ev, "row-counts.txt", strcmp(when, "before") ? "a" : "w") : NULL;
    if (f && !strcmp(when, "before"))
        fprintf(f, "# when\ttable\trows (count(*))\n");
    for (size_t i = 0; f && i < ev->ntables; i++) {
        char *q = mig_quote_qname(ev->tables[i].schema, ev->tables[i].table), *sql = NULL;
        const char *params[1] = {q};
        PGresult *exists = q ? PQexecParams(c, "SELECT to_regclass($1) IS NOT NULL", 1, NULL, params, NULL, NULL, 0)
                             : NULL;
        int present = PQresultStatus(exists) == PGRES_TUPLES_OK && !strcmp(PQgetvalue(exists, 0, 0), "t");
        PGresult *r = present && asprintf(&sql, "SELECT count(*) FROM %s", q) >= 0 ? PQexec(c, sql) : NULL;
        if (r && PQresultStatus(r) == PGRES_TUPLES_OK)
            fprintf(f, "%s\t%s.%s\t%s\n", when, ev->tables[i].schema, ev->tables[i].table, PQgetvalue(r, 0, 0));
        else
            fprintf(f, "%s\t%s.%s\t%s\n", when, ev->tables[i].schema, ev->tables[i].table,
                    present ? PQerrorMessage(c) : "absent");
        PQclear(r);
        PQclear(exists);
        free(sql);
        free(q);
    }
    close_step_file(ev, f, "row-counts.txt");
    engine_close(&e);
}

static void verify(struct evidence *ev, const char *name)
{
    char err[2048];
    struct engine e;
    FILE *f = open_step_file(ev, name, "w");
    int rc = open_db(ev, &e, err, sizeof err);
    if (rc == ENGINE_OK && f)
        rc = engine_verify(&e, f, err, sizeof err);
    engine_close(&e);
    if (rc != ENGINE_OK && f)
        fprintf(f, "verify: %s\n", err);
    close_step_file(ev, f, name);
    evidence_note(ev, "verify %s: %s", name, rc == ENGINE_OK ? "both shapes agree" : "see the file");
}

/* ---- the run log: stdout and stderr teed into it, line by line ---- */

/* One write per line: the parent and the other stream append to the same
 * log (O_APPEND), and whole lines do not interleave. */
static void tee_loop(int in, int out, int log_fd, const char *stream)
{
    char buf[8192], line[LINE_MAX_LOG];
    size_t used = 0, head = 0;
    ssize_t n;
    signal(SIGPIPE, SIG_IGN);
    while ((n = read(in, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        (void)write_all(out, buf, (size_t)n);
        for (ssize_t i = 0; i < n; i++) {
            int end = buf[i] == '\n' || buf[i] == '\r';
            if (used == 0 && !end) {
                char stamp[40];
                utc_stamp(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", 1);
                used = head = (size_t)snprintf(line, sizeof line, "%s %s| ", stamp, stream);
            }
            if (!end)
                line[used++] = buf[i];
            if ((end && used > head) || used >= sizeof line - 1) {
                line[used++] = '\n';
                (void)write_all(log_fd, line, used);
                used = 0;
            }
        }
    }
    if (used > head) {
        line[used++] = '\n';
        (void)write_all(log_fd, line, used);
    }
}

static void tee_start(struct evidence *ev, int which)
{
    int fd = which == 0 ? STDOUT_FILENO : STDERR_FILENO, p[2];
    if (pipe(p) != 0)
        return;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[1]);
        tee_loop(p[0], fd, ev->log_fd, which == 0 ? "stdout" : "stderr");
        _exit(0);
    }
    close(p[0]);
    if (pid > 0) {
        ev->saved_fd[which] = dup(fd);
        dup2(p[1], fd);
        ev->tee_pid[which] = pid;
    }
    close(p[1]);
}

static void tee_stop(struct evidence *ev, int which)
{
    int fd = which == 0 ? STDOUT_FILENO : STDERR_FILENO;
    if (ev->tee_pid[which] <= 0)
        return;
    fflush(which == 0 ? stdout : stderr);
    dup2(ev->saved_fd[which], fd);
    close(ev->saved_fd[which]);
    ev->saved_fd[which] = -1;
    while (waitpid(ev->tee_pid[which], NULL, 0) < 0 && errno == EINTR) {
    }
    ev->tee_pid[which] = 0;
}

void evidence_before(struct evidence *ev, int verify_it)
{
    snapshot(ev, "schema-before.sql");
    count_rows(ev, "before");
    if (verify_it)
        verify(ev, "verify-before.txt");
    evidence_note(ev, "phase: step begins");
    tee_start(ev, 1);   /* stderr first: the stdout tee inherits it, and is stopped first */
    tee_start(ev, 0);
}

int evidence_into_log(struct evidence *ev, const char *title, int (*fn)(void *), void *arg)
{
    tee_stop(ev, 0);    /* what the step printed comes first */
    tee_stop(ev, 1);
    evidence_note(ev, "%s:", title);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    if (saved < 0 || dup2(ev->log_fd, STDOUT_FILENO) < 0) {
        if (saved >= 0)
            close(saved);
        return -1;
    }
    int rc = fn(arg);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    return rc;
}

/* Each batch once; the end of a table's backfill as its own line. */
void evidence_batch(struct evidence *ev, const struct backfill *b, int finished)
{
    const char *table = b->table ? b->table->qname : "?";
    if (finished)
        evidence_note(ev, "backfill of %s done: %lld rows in %lld batches, longest batch %.1f ms", table,
                      b->rows_done, b->batches, b->max_ms);
    else
        evidence_note(ev, "batch %lld on %s: %ld rows walked in %.1f ms, %lld rows done of ~%.0f, next batch "
                      "%ld rows, throttle %s", b->batches, table, b->last_rows, b->last_ms, b->rows_done,
                      b->est_total, b->batch_rows, b->throttle ? b->throttle : "none");
}

/* ---- checksums ---- */

static int sha256_file(const char *path, char hex[65])
{
    FILE *f = fopen(path, "rb");
    EVP_MD_CTX *ctx = f ? EVP_MD_CTX_new() : NULL;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    unsigned char buf[65536], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0)
        ok = EVP_DigestUpdate(ctx, buf, n) == 1;
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32;
    for (unsigned int i = 0; ok && i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    EVP_MD_CTX_free(ctx);
    if (f)
        fclose(f);
    return ok ? 0 : -1;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int regular_file(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

/* Appends "<sha256>  <step>/<file>" for every file of this step. */
static int append_sums(struct evidence *ev)
{
    struct dirent **names = NULL;
    int n = scandir(ev->path, &names, regular_file, by_name);
    char *sums = path_join(ev->dir, SUMS);
    FILE *out = sums && n >= 0 ? fopen(sums, "a") : NULL;
    int rc = out ? 0 : -1;
    for (int i = 0; i < n; i++) {
        char *p = path_join(ev->path, names[i]->d_name), hex[65];
        if (out && p && sha256_file(p, hex) == 0)
            fprintf(out, "%s  %s/%s\n", hex, ev->step, names[i]->d_name);
        else
            rc = -1;
        free(p);
        free(names[i]);
    }
    free(names);
    if (out && (ferror(out) | fclose(out)) != 0)
        rc = -1;
    if (rc != 0)
        fprintf(stderr, "pgtandem migrate: error: --evidence %s: cannot write its %s: %s\n", ev->dir, SUMS,
                strerror(errno));
    free(sums);
    return rc;
}

int evidence_finish(struct evidence *ev, int step_rc, int verify_it)
{
    tee_stop(ev, 0);
    tee_stop(ev, 1);
    evidence_note(ev, "phase: step ended (exit status %d); evidence after it", step_rc);
    snapshot(ev, "schema-after.sql");
    schema_diff(ev);
    count_rows(ev, "after");
    if (verify_it)
        verify(ev, "verify-after.txt");
    evidence_note(ev, "evidence %s%s", ev->failed ? "INCOMPLETE: see the lines above" : "complete",
                  "; checksums appended to " SUMS);
    int failed = ev->failed;
    if (failed)
        fprintf(stderr, "pgtandem migrate: error: --evidence %s: some evidence could not be taken; see %s/run.log\n",
                ev->dir, ev->step);
    close(ev->log_fd);
    ev->log_fd = -1;
    if (append_sums(ev) != 0)
        failed = 1;
    else
        fprintf(stderr, "evidence written to %s/%s (check: cd %s && sha256sum -c %s)\n", ev->dir, ev->step,
                ev->dir, SUMS);
    free_evidence(ev);
    return failed ? EVIDENCE_FAILED : EVIDENCE_OK;
}

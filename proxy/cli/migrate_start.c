/* bin/pgtandem migrate start|resume: what start runs (FILE, FILE.sql
 * converted, or DIR: a chain of *.json with parents or of numbered *.sql
 * files), run here with the progress line, or sent to a proxy with --proxy
 * (a .sql file or chain goes as it is, for the proxy's engine to convert);
 * and every other --proxy command handed to migrate_remote.c. */
#include "migrate_cli_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "evidence.h"
#include "migrate_remote.h"
#include "migration.h"
#include "progress_line.h"
#include "sql_convert.h"
#include "sql_load.h"

struct progress {
    struct progress_line line;
    const struct mig_bf_table *table;   /* the table the rate is measured on */
    double started_ms;
    long long start_rows;
    struct evidence *ev;                /* every batch goes to its log */
};

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
    if (migrate_cli_need_file(c))
        return -1;
    *list = calloc(1, sizeof **list);
    *n = *list ? 1 : 0;
    if (!*list)
        return snprintf(err, errlen, "out of memory"), -1;
    return migrate_cli_load_migration(c, c->file, *list, err, errlen);
}

int migrate_cli_start(const struct cli *c, int resume)
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
    if (migrate_cli_need_db(c)) {
        mig_free_list(list, n);
        return EXIT_INVALID;
    }
    struct progress prog = {.line.tty = isatty(STDERR_FILENO) && !c->quiet, .ev = c->ev};
    struct cli local = *c;
    local.opt.on_progress = on_progress;
    local.opt.progress_arg = &prog;
    struct engine e;
    int rc = migrate_cli_open_engine(&local, &e, 1, err, sizeof err);
    if (rc == ENGINE_OK) {
        rc = resume ? engine_resume(&e, err, sizeof err)
             : chain ? engine_start_chain(&e, list, n, err, sizeof err)
                     : engine_start(&e, &list[0], err, sizeof err);
        progress_line_end(&prog.line);
        engine_close(&e);
    }
    mig_free_list(list, n);
    return migrate_cli_report(rc, err);
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

int migrate_cli_remote(const struct cli *c)
{
    int start = c->file && !strcmp(c->command, "start");
    if (start && is_directory(c->file))
        return remote_with_chain(c);
    if (start && sqlc_is_sql_file(c->file))
        return remote_with_sql(c);
    return migrate_remote_main(c->command, c->proxy, c->file, c->json, c->force, c->revert_window_s);
}

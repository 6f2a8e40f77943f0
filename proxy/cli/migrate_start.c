/* bin/pgtandem migrate start|resume: what start runs (FILE, FILE.sql
 * converted, or DIR: a chain, read by migrate_dir.c), run here with the
 * progress line, or sent to a proxy with --proxy (a .sql file or chain
 * goes as it is, for the proxy's engine to convert);
 * and every other --proxy command handed to migrate_remote.c. */
#include "migrate_cli_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "log.h"
#include "tool_history.h"
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

/* What start runs: one migration (FILE), or a chain (DIR) whose pending
 * migrations start each its own (engine_start_each) or as one
 * (engine_start_chain). */
static int load_start_input(const struct cli *c, int chain, struct migration **list, size_t *n, char *err,
                            size_t errlen)
{
    if (chain)
        return migrate_cli_load_chain(c, list, n, err, errlen);
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
    int chain = !resume && migrate_cli_is_directory(c->file);
    if ((c->each || c->merge) && !chain) {
        fprintf(stderr, "pgtandem migrate: error: --%s is for a directory of migrations (start DIR --%s)\n",
                c->each ? "each" : "merge", c->each ? "each" : "merge");
        return EXIT_INVALID;
    }
    /* the directory's tool and its files, kept for each start to write
     * the tool's row (migrate_tool.c, engine/tool_history.c) */
    struct tool_history tool = {0};
    struct cli with_tool = *c;
    with_tool.opt.tool = &tool;
    if (!resume && load_start_input(&with_tool, chain, &list, &n, err, sizeof err) != 0) {
        if (c->file)
            fprintf(stderr, "pgtandem migrate: error: %s\n", err);
        mig_free_list(list, n);
        tool_history_free(&tool);
        return EXIT_INVALID;
    }
    if (migrate_cli_need_db(c)) {
        mig_free_list(list, n);
        tool_history_free(&tool);
        return EXIT_INVALID;
    }
    if (chain && n == 0) {
        log_info("every migration of %s is applied (its tool's history says so); nothing to do", c->file);
        free(list);
        tool_history_free(&tool);
        return 0;
    }
    struct progress prog = {.line.tty = isatty(STDERR_FILENO) && !c->quiet, .ev = c->ev};
    struct cli local = with_tool;
    local.opt.on_progress = on_progress;
    local.opt.progress_arg = &prog;
    struct engine e;
    int rc = migrate_cli_open_engine(&local, &e, 1, err, sizeof err);
    if (rc == ENGINE_OK) {
        rc = resume ? engine_resume(&e, err, sizeof err)
             : chain && c->merge ? engine_start_chain(&e, list, n, err, sizeof err)
             : chain ? engine_start_each(&e, list, n, c->each ? ENGINE_EACH_ONLY : ENGINE_EACH_OR_MERGED, err,
                                         sizeof err)
                     : engine_start(&e, &list[0], err, sizeof err);
        progress_line_end(&prog.line);
        engine_close(&e);
    }
    mig_free_list(list, n);
    tool_history_free(&tool);
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

/* start DIR --proxy: the whole chain goes; the proxy's engine picks the
 * pending ones (it can read what is applied). */
static int remote_with_chain(const struct cli *c)
{
    char err[2048];
    char *body = migrate_cli_chain_body(c, err, sizeof err);
    if (!body) {
        fprintf(stderr, "pgtandem migrate: error: %s\n", err);
        return EXIT_INVALID;
    }
    int rc = migrate_remote_start(c->proxy, body, strlen(body));
    free(body);
    return rc;
}

int migrate_cli_remote(const struct cli *c)
{
    int start = c->file && !strcmp(c->command, "start");
    if (start && migrate_cli_is_directory(c->file))
        return remote_with_chain(c);
    if (start && sqlc_is_sql_file(c->file))
        return remote_with_sql(c);
    return migrate_remote_main(c->command, c->proxy, c->file, c->json, c->force, c->revert_window_s);
}

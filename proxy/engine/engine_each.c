/* start DIR: each pending file of a chain started as its own migration,
 * in the chain's order, so each release can name the one it was built
 * with. A migration is in flight beside others on separate tables, on a
 * table an earlier one only adds to, or on one whose other columns an
 * earlier one changes (migration_flight.h, engine_flight.c,
 * plan_on_shape.c), so every pending file is checked against the ones in
 * flight and the ones before it before the first one starts. Files that
 * share a table otherwise run as one migration (start DIR), or refuse the
 * whole directory (--each); either way nothing has changed when that is
 * decided. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "engine_flight.h"
#include "log.h"
#include "tool_history.h"

struct each {
    int *pending;           /* list[i] is to start */
    char ***tables;         /* list[i]'s tables, owned */
    size_t *ntables;
    struct mig_flight *seen;/* in flight, then each pending one as it is admitted */
    int *seen_file;         /* seen[k]'s index in the list, -1 for one in flight */
    size_t nseen;
    int first;              /* the list's first pending file, -1 before one is found */
    int flying;             /* files of the list in flight already */
    char why[700];          /* set when two files share a table the rules keep apart */
};

static void each_free(struct each *x, size_t n)
{
    for (size_t i = 0; x->tables && i < n; i++)
        mig_flight_tables_free(x->tables[i], x->ntables[i]);
    free(x->pending);
    free(x->tables);
    free(x->ntables);
    free(x->seen);
    free(x->seen_file);
}

/* A table list[i] shares with seen[k], which does more than add to it:
 * 0 when list[i] changes other columns of it. Against a file before it,
 * the rule plan_on_shape.c keeps is read from the two files; against a
 * migration in flight, it is kept by the start itself, which is safe
 * only for the first file: nothing of the directory has started then. */
static int columns_apart(const struct each *x, const struct migration *list, size_t i, size_t k, char *why,
                         size_t cap)
{
    int file = x->seen_file[k];
    if (file < 0) {
        if ((int)i == x->first)
            return 0;
        return snprintf(why, cap, "%s changes %s, which %s in flight changes too, and is not the first pending"
                        " file: start the files before it first", list[i].name, x->seen[k].tables[0],
                        x->seen[k].name), 1;
    }
    for (size_t t = 0; t < x->ntables[i]; t++) {
        const char *table = x->tables[i][t];
        int shared = 0;
        for (size_t u = 0; u < x->seen[k].ntables; u++)
            shared |= !strcmp(x->seen[k].tables[u], table);
        if (shared && mig_flight_columns_apart(&list[i], &list[file], table, why, cap))
            return 1;
    }
    return 0;
}

/* 1 when list[i] is completed already, 2 when in flight (unchanged), 0
 * when pending, -1 (err) when its file changed since. */
static int already(const struct migration *m, json_t *applied, char *err, size_t errlen)
{
    json_t *a = engine_applied_entry(applied, m->name);
    int st = a ? mig_status_of_word(json_string_value(json_object_get(a, "status"))) : -1;
    int done = st == MIG_ST_COMPLETED, flying = st >= 0 && mig_status_in_progress((enum mig_status)st);
    if (!done && !flying)
        return 0;
    const char *sum = json_string_value(json_object_get(a, "checksum"));
    if (!sum || strcmp(sum, m->checksum) != 0) {
        snprintf(err, errlen, "%s: migration \"%s\" was changed after it was %s (checksum differs); restore the "
                 "file", m->file, m->name, done ? "applied" : "started");
        return -1;
    }
    return done ? 1 : 2;
}

/* A file in flight whose start stopped between its expand and the
 * tool's row (tool_history.c): the row is written now, once the expand is
 * done (an expand interrupted is redone by resume, and its row then). */
static int tool_row_missed(struct engine *e, const struct migration *m, json_t *applied, char *err, size_t errlen)
{
    json_t *a = engine_applied_entry(applied, m->name);
    int st = mig_status_of_word(json_string_value(json_object_get(a, "status")));
    if (st == MIG_ST_EXPANDING)
        return 0;
    return tool_history_started(e->conn, e->opt.tool, m->name, err, errlen);
}

/* ENGINE_INVALID with x->why set when two files share a table the rules
 * keep apart; ENGINE_INVALID with err set when a file changed since. */
static int admit_all(struct engine *e, struct each *x, const struct migration *list, size_t n, json_t *applied,
                     char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        int a = already(&list[i], applied, err, errlen);
        if (a < 0)
            return ENGINE_INVALID;
        if (a) {
            x->flying += a == 2;
            if (a == 2 && tool_row_missed(e, &list[i], applied, err, errlen) != 0)
                return ENGINE_FAILED;
            continue;
        }
        struct mig_flight me = {.name = list[i].name, .parent = list[i].parent, .phase = MIG_PH_IDLE};
        if (mig_flight_tables(&list[i], NULL, &x->tables[i], &x->ntables[i]) != 0)
            return snprintf(err, errlen, "out of memory"), ENGINE_FAILED;
        me.tables = me.named = (const char *const *)x->tables[i];
        me.ntables = me.nnamed = x->ntables[i];
        me.adds_only = mig_adds_only(&list[i]);
        if (x->first < 0)
            x->first = (int)i;
        for (size_t k = 0; k < x->nseen; k++) {
            int any;
            char why[600];
            /* on a shape only when the columns are apart, as the files
             * say: they are checked before the first starts */
            const char *t = mig_flight_unbuildable_table(&me, &x->seen[k], 1, &any);
            if (!t && !mig_flight_unbuildable_table(&me, &x->seen[k], 0, &any))
                continue;
            if (!t && !columns_apart(x, list, i, k, why, sizeof why))
                continue;
            if (t)
                snprintf(why, sizeof why, "%s changes %s, which %s changes too", list[i].name, any ? "any table" : t,
                         x->seen[k].name);
            snprintf(x->why, sizeof x->why, "%s: %s", list[i].file, why);
            return ENGINE_INVALID;
        }
        x->seen_file[x->nseen] = (int)i;
        x->seen[x->nseen++] = me;
        x->pending[i] = 1;
    }
    return ENGINE_OK;
}

/* What each mode does with files that share a table the rules keep apart. */
static int apart_refused(struct engine *e, const struct each *x, const struct migration *list, size_t n,
                         enum engine_each_mode mode, char *err, size_t errlen)
{
    static const char rule[] = "a migration of a table an earlier one changes is its own only when that one adds"
                               " to it and nothing more, or the later one changes its columns by columns the"
                               " earlier one does not rename, retype or drop (add_column, create_index,"
                               " rename_column, alter_column, drop_column)";
    if (mode == ENGINE_EACH_ONLY || x->flying) {
        snprintf(err, errlen, "%s; %s: %s", x->why, rule, x->flying
                 ? "start the files of the directory not in flight yet once the ones in flight complete"
                 : "start the directory without --each to run the pending ones as one");
        return ENGINE_INVALID;
    }
    log_warn("%s; %s, so the %zu pending files (%s .. %s) start as one migration, named %s: a release built"
             " with a file before it has no shape of its own (--each refuses instead)", x->why, rule,
             n - (size_t)x->first, list[x->first].name, list[n - 1].name, list[n - 1].name);
    return engine_start_chain(e, list, n, err, errlen);
}

int engine_start_each(struct engine *e, const struct migration *list, size_t n, enum engine_each_mode mode,
                      char *err, size_t errlen)
{
    struct engine_flight fl;
    json_t *applied = NULL;
    int rc = engine_applied(e, &applied, err, errlen);
    if (rc != ENGINE_OK)
        return rc;
    if (engine_flight_load(e->conn, &fl, err, errlen) != 0) {
        json_decref(applied);
        return ENGINE_FAILED;
    }
    struct each x = {calloc(n, sizeof *x.pending), calloc(n, sizeof *x.tables), calloc(n, sizeof *x.ntables),
                     calloc(fl.n + n, sizeof *x.seen), calloc(fl.n + n, sizeof *x.seen_file), 0, -1, 0, ""};
    if (!x.pending || !x.tables || !x.ntables || !x.seen || !x.seen_file)
        rc = (snprintf(err, errlen, "out of memory"), ENGINE_FAILED);
    for (size_t i = 0; rc == ENGINE_OK && i < fl.n; i++) {
        x.seen_file[x.nseen] = -1;
        x.seen[x.nseen++] = fl.m[i];
    }
    if (rc == ENGINE_OK)
        rc = admit_all(e, &x, list, n, applied, err, errlen);
    json_decref(applied);
    if (rc == ENGINE_INVALID && x.why[0]) {
        rc = apart_refused(e, &x, list, n, mode, err, errlen);
        each_free(&x, n);
        engine_flight_free(&fl);
        return rc;
    }
    char started[512] = "";
    size_t len = 0, count = 0;
    for (size_t i = 0; rc == ENGINE_OK && i < n; i++) {
        if (!x.pending[i])
            continue;
        rc = engine_start(e, &list[i], err, errlen);
        if (rc != ENGINE_OK && count > 0) {
            char msg[2400];
            snprintf(msg, sizeof msg, "%s: %.900s; started before it, %s stay%s in flight", list[i].name, err,
                     started, count == 1 ? "s" : "");
            snprintf(err, errlen, "%s", msg);
        }
        if (rc == ENGINE_OK) {
            int w = snprintf(started + len, sizeof started - len, "%s%s", count ? ", " : "", list[i].name);
            len += w > 0 && (size_t)w < sizeof started - len ? (size_t)w : 0;
            count++;
        }
    }
    if (rc == ENGINE_OK && count == 0)
        log_info("no migration of the chain is pending (head %s); nothing to do", list[n - 1].name);
    else if (rc == ENGINE_OK)
        log_info("%zu migration%s started, each its own: %s", count, count == 1 ? "" : "s", started);
    each_free(&x, n);
    engine_flight_free(&fl);
    return rc;
}

/* start DIR --each: each pending file of a chain started as its own
 * migration, in the chain's order, so each release can name the one it
 * was built with. A migration is in flight beside others on separate
 * tables, or on a table an earlier one only adds to (migration_flight.h,
 * engine_flight.c), so every pending file is checked against the ones in
 * flight and the ones before it before the first one starts: one that
 * shares a table otherwise refuses the whole directory, and nothing
 * changes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "engine_flight.h"
#include "log.h"

struct each {
    int *pending;           /* list[i] is to start */
    char ***tables;         /* list[i]'s tables, owned */
    size_t *ntables;
    struct mig_flight *seen;/* in flight, then each pending one as it is admitted */
    size_t nseen;
};

static void each_free(struct each *x, size_t n)
{
    for (size_t i = 0; x->tables && i < n; i++)
        mig_flight_tables_free(x->tables[i], x->ntables[i]);
    free(x->pending);
    free(x->tables);
    free(x->ntables);
    free(x->seen);
}

/* 1 when list[i] is completed or in flight already (unchanged), 0 when
 * pending, -1 (err) when its file changed since. */
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
    return 1;
}

static int admit_all(struct each *x, const struct migration *list, size_t n, json_t *applied, char *err,
                     size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        int a = already(&list[i], applied, err, errlen);
        if (a < 0)
            return ENGINE_INVALID;
        if (a)
            continue;
        struct mig_flight me = {.name = list[i].name, .parent = list[i].parent, .phase = MIG_PH_IDLE};
        if (mig_flight_tables(&list[i], NULL, &x->tables[i], &x->ntables[i]) != 0)
            return snprintf(err, errlen, "out of memory"), ENGINE_FAILED;
        me.tables = (const char *const *)x->tables[i];
        me.ntables = x->ntables[i];
        me.adds_only = mig_adds_only(&list[i]);
        for (size_t k = 0; k < x->nseen; k++) {
            int any;
            /* not on a shape: the files are checked before the first
             * starts, and a shape is read from the one below's views */
            const char *t = mig_flight_unbuildable_table(&me, &x->seen[k], 0, &any);
            if (!t)
                continue;
            snprintf(err, errlen, "%s: %s changes %s, which %s changes too; --each starts a migration of a table"
                     " an earlier one changes only when that one adds to it and nothing more (add_column,"
                     " create_index, create_table): start the directory without --each to run the pending ones as"
                     " one", list[i].file, list[i].name, any ? "any table" : t, x->seen[k].name);
            return ENGINE_INVALID;
        }
        x->seen[x->nseen++] = me;
        x->pending[i] = 1;
    }
    return ENGINE_OK;
}

int engine_start_each(struct engine *e, const struct migration *list, size_t n, char *err, size_t errlen)
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
                     calloc(fl.n + n, sizeof *x.seen), 0};
    if (!x.pending || !x.tables || !x.ntables || !x.seen)
        rc = (snprintf(err, errlen, "out of memory"), ENGINE_FAILED);
    for (size_t i = 0; rc == ENGINE_OK && i < fl.n; i++)
        x.seen[x.nseen++] = fl.m[i];
    if (rc == ENGINE_OK)
        rc = admit_all(&x, list, n, applied, err, errlen);
    json_decref(applied);
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

/* Several key ranges at once: the choices both drivers make (see
 * backfill_pool.h). */
#include "backfill_pool.h"

#include <string.h>

size_t backfill_current(const struct backfill *v, size_t n)
{
    size_t i = 0;
    while (i < n && v[i].done)
        i++;
    return i;
}

size_t backfill_pick(const struct backfill *v, size_t n, size_t prev)
{
    size_t first = backfill_current(v, n);
    if (first == n)
        return n;
    const struct mig_bf_table *t = v[first].table;
    if (prev < n && v[prev].table == t && !v[prev].done && !v[prev].busy)
        return prev;
    for (size_t i = first; i < n && v[i].table == t; i++)
        if (!v[i].done && !v[i].busy)
            return i;
    return n;
}

void backfill_carry_pace(struct backfill *to, const struct backfill *from)
{
    if (to->rate > 0.0 || from->rate <= 0.0 || to == from)
        return;
    to->rate = from->rate;
    to->batch_rows = from->batch_rows;
}

int backfill_gate_update(struct backfill_gate *g, int wanted, int throttled, double now_ms)
{
    if (wanted < 1)
        wanted = 1;
    if (throttled) {
        /* the climb counts from the last throttled look, not the drop */
        g->changed_ms = now_ms;
        g->allowed = 1;
    } else if (g->allowed == 0 || g->allowed > wanted) {
        g->allowed = wanted;
        g->changed_ms = now_ms;
    } else if (g->allowed < wanted && now_ms - g->changed_ms >= BACKFILL_CLIMB_MS) {
        g->allowed++;
        g->changed_ms = now_ms;
    }
    return g->allowed;
}

int backfill_settings_throttle(const struct mig_backfill_settings *cfg)
{
    return cfg->max_rows_per_sec > 0 || cfg->sleep_ratio > 0.0;
}

void backfill_summary(const struct backfill *v, size_t n, const struct mig_bf_table *t, const struct backfill *last,
                      struct backfill *out)
{
    memset(out, 0, sizeof *out);
    out->table = t;
    out->throttle = "none";
    out->done = 1;
    int seen = 0;
    for (size_t i = 0; i < n; i++) {
        const struct backfill *b = &v[i];
        if (b->table != t)
            continue;
        if (!seen++) {
            out->migration = b->migration;
            out->progress_table = b->progress_table;
            out->cfg = b->cfg;
            out->batch_rows = b->batch_rows;
        }
        out->rows_done += b->rows_done;
        out->rows_updated += b->rows_updated;
        out->batches += b->batches;
        /* a range done has its real count; the others their estimate */
        out->est_total += b->done || (double)b->rows_done > b->est_total ? (double)b->rows_done : b->est_total;
        out->est_planned += b->est_planned;
        out->total_ms += b->total_ms;
        out->lock_timeouts += b->lock_timeouts;
        out->max_ms = b->max_ms > out->max_ms ? b->max_ms : out->max_ms;
        out->done = out->done && b->done;
        out->paused = out->paused || b->paused;
    }
    out->done = out->done && seen;
    if (last) {
        out->batch_rows = last->batch_rows;
        out->last_rows = last->last_rows;
        out->last_ms = last->last_ms;
        out->rate = last->rate;
        out->throttle = last->throttle;
    }
}

int backfill_any_paused(const struct backfill *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].paused && !v[i].done)
            return 1;
    return 0;
}

int backfill_all_done(const struct backfill *v, size_t n)
{
    return backfill_current(v, n) == n;
}

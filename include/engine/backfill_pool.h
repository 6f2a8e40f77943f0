/* What the two backfill drivers share when they run several key ranges at
 * once (the CLI's blocking driver, backfill_drive; the proxy's on its event
 * loop): which range a worker runs next, how many workers may run while
 * the backfill is throttled or not, and a table's ranges summed into one
 * for the progress line. No I/O. */
#ifndef PGTANDEM_BACKFILL_POOL_H
#define PGTANDEM_BACKFILL_POOL_H

#include <stddef.h>

#include "backfill.h"

/* backfill_workers' upper bound (settings_table.c); a driver's lanes. */
#define BACKFILL_MAX_WORKERS 16
/* After a throttle releases, one more worker at most this often. */
#define BACKFILL_CLIMB_MS 1000.0
/* A batch that hit lock_timeout holds the backfill to one worker this long. */
#define BACKFILL_LOCK_HOLD_MS 2000.0

/* The range a worker runs next: the one it ran last (prev; n: none) while
 * that is neither done nor taken, else the first free range of the first
 * table not done. Tables go one at a time, so the progress line follows
 * one. Returns n when no range is free. */
size_t backfill_pick(const struct backfill *v, size_t n, size_t prev);

/* A range this process has not run yet starts at the pace its worker's
 * previous range reached rather than at the first batch size. */
void backfill_carry_pace(struct backfill *to, const struct backfill *from);

/* How many workers may run. */
struct backfill_gate {
    int allowed;        /* 0 before the first call */
    double changed_ms;
};

/* `wanted` from the start while nothing throttles; one as soon as
 * something does (the application's latency, replica lag, a lock wait, a
 * rate cap or sleep ratio); once it releases, one more every
 * BACKFILL_CLIMB_MS back up to `wanted`. Returns the new count. */
int backfill_gate_update(struct backfill_gate *g, int wanted, int throttled, double now_ms);

/* Settings that slow the backfill on purpose hold it to one worker: a cap
 * on rows per second (shared by nobody else) or a sleep after each batch. */
int backfill_settings_throttle(const struct mig_backfill_settings *cfg);

/* The ranges of t summed as the progress line shows a table (rows, batches
 * and estimates summed, the longest batch, done when every range is);
 * last, the range a batch just ended on (NULL: none), gives the batch's
 * rows, time, next size and throttle. out borrows; nothing to free. */
void backfill_summary(const struct backfill *v, size_t n, const struct mig_bf_table *t, const struct backfill *last,
                      struct backfill *out);

int backfill_all_done(const struct backfill *v, size_t n);
/* Whether a range not done is paused (the checkpoint rows' switch, one
 * for the whole migration). */
int backfill_any_paused(const struct backfill *v, size_t n);
/* The first range not done (n: none), whose table is the one being filled. */
size_t backfill_current(const struct backfill *v, size_t n);

#endif

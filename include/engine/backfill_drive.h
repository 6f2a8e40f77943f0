/* The backfill over blocking libpq, as `migrate start|resume --db` runs it:
 * every table's key ranges (backfill_ranges), up to cfg->workers batches
 * at once, each on its own connection (the engine's own is the first),
 * waited for together with poll(). One worker while something throttles
 * the backfill (backfill_pool). A resume continues each range from its own
 * checkpoint. */
#ifndef PGTANDEM_BACKFILL_DRIVE_H
#define PGTANDEM_BACKFILL_DRIVE_H

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stddef.h>

#include "backfill.h"
#include "migration_plan.h"

/* The pace another thread keeps for drives it does not run: a proxy's
 * latency budget over backfills that run on an engine of their own in a
 * thread (starts beside the migration in flight). The proxy's loop reads
 * the batches in flight and the sizing, decides on the app's latency as
 * for its own backfill, and sets the rest; a drive reads it before each
 * batch. Zeroed: no hold, no cap. Every field is atomic: the two threads
 * share nothing else. */
struct backfill_pace {
    atomic_llong hold_until_ms;     /* no batch starts before this (clock_now_ms; a baseline measured) */
    atomic_int workers;             /* at most this many batches at once (0: no cap) */
    atomic_long batch_cap;          /* rows per batch at most (0: no cap) */
    atomic_int pause_ms;            /* after each batch */
    atomic_int running;             /* drives running under it */
    atomic_int in_flight;           /* their batches in flight */
    atomic_long batch_rows, min_rows, max_rows; /* the last batch's size, min_rows, backfill_uncapped_rows */
    atomic_llong rows_done;         /* written by the batches under it since the proxy started */
};

struct backfill_drive {
    PGconn *conn;                   /* the engine's connection (the first worker's) */
    const char *uri;                /* where the other workers connect */
    const atomic_int *stop;         /* set: give up between batches (NULL: never) */
    long budget;                    /* batches to run at most (-1: every one) */
    struct backfill_pace *pace;     /* NULL: none (the CLI's: no app traffic to measure) */
    /* After every batch, with the batch's table summed over its ranges;
     * finished once the table is done. */
    void (*on_progress)(const struct backfill *table, int finished, void *arg);
    void *progress_arg;
};

enum backfill_drive_result { BACKFILL_DONE, BACKFILL_BUDGET_SPENT, BACKFILL_FAILED };

/* Runs the backfill of every table of plan to its end, or until the budget
 * is spent, or a batch fails (err then names the row, see
 * backfill_describe_failure), or stop is set. */
enum backfill_drive_result backfill_drive_run(struct backfill_drive *d, const char *migration,
                                              const struct mig_plan *plan, const struct mig_backfill_settings *cfg,
                                              char *err, size_t errlen);

/* One batch of one range (a failed batch run again to name its row, off
 * the proxy's loop): range_no of schema.table, on conn. Returns 0 (it went
 * through), or -1 with err. */
int backfill_drive_one(PGconn *conn, const char *migration, const struct mig_plan *plan,
                       const struct mig_backfill_settings *cfg, const char *schema, const char *table, int range_no,
                       char *err, size_t errlen);

#endif

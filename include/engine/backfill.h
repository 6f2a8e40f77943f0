/* The backfill as a sequence of discrete batches. All state lives in struct
 * backfill; backfill_batch_sql()/backfill_batch_params() produce the one
 * statement of the next batch (keyset range + UPDATE + checkpoint, in one
 * statement and so one transaction), backfill_apply_result() folds its result
 * back in and adapts the batch size, backfill_sleep_ms() says how long to
 * wait before the next one. A blocking driver (backfill_step) is provided;
 * an event loop can instead PQsendQueryParams the same statement. */
#ifndef PGTANDEM_BACKFILL_H
#define PGTANDEM_BACKFILL_H

#include <libpq-fe.h>
#include <stddef.h>

#include "migration.h"
#include "migration_plan.h"

#define BACKFILL_MAX_KEY 8

struct backfill {
    const struct mig_bf_table *table;   /* borrowed from the plan */
    const char *migration;              /* borrowed */
    const char *progress_table;         /* quoted checkpoint table the batch advances */
    struct mig_backfill_settings cfg;
    char *last_key[BACKFILL_MAX_KEY];   /* text form of the last key done */
    int have_last;
    long long rows_done, rows_updated, batches;
    long last_rows;                     /* rows the last batch walked */
    double est_total;                   /* the rows to do: the plan's estimate, raised by the rows done */
    double est_planned;                 /* the plan's estimate alone (kept: the plan can be freed first) */
    long batch_rows;                    /* size of the next batch */
    double rate;                        /* weighted rows per ms */
    double last_ms, max_ms, total_ms;
    long lock_timeouts;                 /* batches that met a held row or lock_timeout */
    int lock_retries;                   /* of them since the last batch that ran: the pause grows */
    int done, paused;
    const char *throttle;               /* "none", "max-rows", "sleep-ratio", "lock-wait", "paused" */
    /* One key range of the table (backfill_ranges.c): its checkpoint row,
     * and the bounds of the leading key column, (range_lo, range_hi] in
     * text form (NULL: unbounded). Range 0 without bounds is the whole table. */
    int range_no;
    char *range_lo, *range_hi;
    int busy;                           /* a driver has a batch of it in flight */
};

void backfill_init(struct backfill *b, const struct mig_bf_table *t, const char *migration,
                   const struct mig_backfill_settings *cfg);
void backfill_free(struct backfill *b);
/* Loads the checkpoint row of a table backfilled as one range (creating it
 * at zero): the estimate's. */
int backfill_load(PGconn *conn, struct backfill *b, char *err, size_t errlen);
/* Folds in a checkpoint row: last_key, rows_done, rows_updated, batches,
 * done, paused, est_rows from column `first` on. */
int backfill_apply_checkpoint_row(struct backfill *b, const PGresult *r, int row, int first, char *err,
                                  size_t errlen);

/* The parameters a batch statement takes at most: migration, schema,
 * table, rows, range_no, the checkpoint's key (or the range's lower bound),
 * the range's upper bound. */
#define BACKFILL_MAX_PARAMS (6 + BACKFILL_MAX_KEY)
char *backfill_batch_sql(const struct backfill *b);
/* Fills values (at most BACKFILL_MAX_PARAMS); returns the count. The
 * strings point into b or into numbuf, which must outlive the call. */
int backfill_batch_params(const struct backfill *b, const char **values, char *numbuf, size_t numlen);
int backfill_apply_result(struct backfill *b, const PGresult *r, double elapsed_ms, char *err,
                          size_t errlen);
/* A batch that failed on lock_timeout: shrink and back off instead of failing. */
void backfill_lock_timeout(struct backfill *b);
/* The batch the sizing would run at the pace seen so far with no cap (its
 * target_ms of rows), within min_rows and max_rows; max_rows before any
 * batch. A latency budget's cap that climbs there holds nothing back. */
long backfill_uncapped_rows(const struct backfill *b);
long backfill_sleep_ms(struct backfill *b);

/* A batch failed with pg_error (not a lock timeout): names the row and the
 * `up` expression that failed on it, found with a few read-only queries over
 * the batch's key range (blocking; b as it was for the failed batch). Falls
 * back to the batch's key range when no expression fails there. */
void backfill_describe_failure(PGconn *conn, const struct backfill *b, const char *pg_error, char *out,
                               size_t outlen);

/* Runs one batch synchronously. Returns 0 (check b->done), or -1 with err. */
int backfill_step(PGconn *conn, struct backfill *b, char *err, size_t errlen);

/* The SQL a session runs before its first batch: triggers stand aside and a
 * batch never waits long behind the application. */
char *backfill_session_sql(const struct backfill *b);
/* The same, run on conn (blocking), then replica mode where permitted and
 * asked for (*replica says whether it was). Returns 0, or -1 with err when
 * the settings failed (then nothing more was tried). */
int backfill_session_begin(PGconn *conn, const struct mig_backfill_settings *cfg, int want_replica, int *replica,
                           char *err, size_t errlen);
/* Whether the backfill of plan may run in replica mode: not when it runs a
 * data statement of the file (an UPDATE or DELETE in batches), whose rows'
 * triggers and foreign keys' actions (ON DELETE SET NULL, CASCADE) replica
 * mode would skip, where offline they run. */
int backfill_replica_allowed(const struct mig_plan *plan);
/* Undoes backfill_session_begin (replica as it set it). */
void backfill_session_end(PGconn *conn, int replica);

#endif

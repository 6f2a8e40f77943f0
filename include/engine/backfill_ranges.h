/* A table's backfill in key ranges, so that several batches can run at
 * once, each range on its own connection and with its own checkpoint row
 * in pgtandem.backfill_progress. The ranges split the leading key column
 * at quantiles: from the statistics' histogram while it is fresh, else
 * from a sample of the table's pages. They are planned once, when the
 * table's first checkpoint row is made, and kept: a resume continues every
 * range from its own checkpoint. A table that is small, or whose leading
 * key column has too few values to split on, stays one range.
 *
 * The statements take parameters, so an event loop can send them as they
 * are; backfill_ranges_load() runs them blocking. */
#ifndef PGTANDEM_BACKFILL_RANGES_H
#define PGTANDEM_BACKFILL_RANGES_H

#include <libpq-fe.h>
#include <stddef.h>

#include "backfill.h"

#define BACKFILL_MAX_RANGES 32
#define BACKFILL_MIN_RANGE_ROWS 10000

/* $1 migration, $2 schema, $3 table -> range_no, range_lo, range_hi, then
 * the checkpoint's columns (backfill_apply_checkpoint_row from column 3),
 * in range order. No rows: the table's ranges are not planned yet. */
extern const char BACKFILL_RANGES_LOAD_SQL[];

/* The candidate bounds of t's ranges: $1 the table (text of a regclass), $2
 * schema, $3 table, $4 leading key column (its name as in pg_stats) ->
 * bounds text[] (real keys, sorted and distinct), their count, the method
 * ("histogram" or "sample"), the rows it estimates and the largest key
 * now (text; NULL for an empty table). Caller frees. */
char *backfill_ranges_plan_sql(const struct mig_bf_table *t);
/* Its 4 values; the key column's name is written into namebuf. */
int backfill_ranges_plan_params(const struct mig_bf_table *t, const char **values, char *namebuf, size_t namelen);

/* The ranges to make from the plan's result (NULL with error when it
 * failed: one range): *nranges and the rows they hold, and why, for the
 * log ("32 ranges, from the statistics' histogram"). */
void backfill_ranges_choose(const struct mig_bf_table *t, const PGresult *r, const char *error, int *nranges,
                            double *est_rows, char *why, size_t whylen);

/* Makes the ranges' rows and returns them as BACKFILL_RANGES_LOAD_SQL
 * does: $1 migration, $2 schema, $3 table, $4 rows estimated, $5 the plan's
 * bounds (its text[] output as it came), $6 the number of ranges, $7 the
 * largest key when planned: the last range's upper bound. A key written
 * after it was made was written through the dual-write triggers (they
 * exist from the expand on, and it waited for every writer before), so
 * the backfill has nothing to do past it; without the bound, a backfill
 * throttled below the rate the application inserts at chased new keys
 * and never ended. */
#define BACKFILL_RANGES_CREATE_NPARAMS 7
extern const char BACKFILL_RANGES_CREATE_SQL[];
/* Its values, from the plan's result (NULL when the plan failed: one
 * unbounded range); numbuf must outlive the send. */
int backfill_ranges_create_params(const struct mig_bf_table *t, const char *migration, const PGresult *plan,
                                  int nranges, double est_rows, const char **values, char *numbuf, size_t numlen);

/* Appends one range per row of r (LOAD's or CREATE's) to *v, initialised
 * from t, migration and cfg. Returns 0, or -1 with err. */
int backfill_ranges_apply(const PGresult *r, const struct mig_bf_table *t, const char *migration,
                          const struct mig_backfill_settings *cfg, struct backfill **v, size_t *n, char *err,
                          size_t errlen);

/* The same steps, blocking: t's ranges appended to *v, planned first when
 * it has none. Returns 0, or -1 with err. */
int backfill_ranges_load(PGconn *conn, const struct mig_bf_table *t, const char *migration,
                         const struct mig_backfill_settings *cfg, struct backfill **v, size_t *n, char *err,
                         size_t errlen);

void backfill_ranges_free(struct backfill *v, size_t n);

#endif

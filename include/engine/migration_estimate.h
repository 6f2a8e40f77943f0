/* `migrate plan --estimate`: measures the backfill of a migration on a
 * sample of each live table before anyone runs it. The sample is copied
 * into a scratch schema (pgtandem_estimate_<pid>), given the columns expand
 * would add, and walked by the backfill's own keyset batches at the
 * migration's settings; the figures (rows/s, WAL bytes per row, rows that
 * need the update) are extrapolated to the table's size. The live table is
 * only read (a bounded scan in key order); the scratch schema is dropped on
 * success, on error and on SIGINT/SIGTERM. */
#ifndef PGTANDEM_MIGRATION_ESTIMATE_H
#define PGTANDEM_MIGRATION_ESTIMATE_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdio.h>

#include "migration.h"
#include "migration_plan.h"

/* 10,000 rows end before the adaptive batch size has grown to its steady
 * state, so their rate came out about 40 % low on 1M rows; 100,000 came
 * within 10 % (bench/estimate.sh) for a second or two more. */
#define ESTIMATE_DEFAULT_ROWS 100000

struct estimate_table {
    char *qname;                /* the live table, quoted */
    char *schema, *name;        /* the same, raw */
    json_t *operations;         /* ["operations[0].rename_column", ...] */
    double table_rows;          /* what the figures are extrapolated to */
    const char *rows_source;    /* "reltuples", "count(*)" or "size / sample row width" */
    double table_bytes;         /* pg_relation_size of the live table */
    long long sample_rows, sample_updated, batches;
    long last_batch_rows;       /* the adaptive batch size the sample ended at */
    double sample_ms;           /* wall clock of the sample's batches */
    long first_rows;            /* the first batch, kept apart as warm-up */
    double first_ms, first_sleep_ms;
    double sleep_ms;            /* throttle sleeps the backfill would add (not slept here) */
    double wal_bytes;           /* WAL the sample's batches wrote */
};

struct estimate_report {
    char *migration;
    char scratch[64];           /* raw name of the scratch schema */
    long sample_limit;
    struct mig_backfill_settings cfg;
    struct estimate_table *tables;
    size_t ntables;
};

/* Runs the sample backfills (blocking, on conn, which must be idle and in
 * autocommit). Returns 0, or -1 with err (the scratch schema is gone either
 * way unless the connection itself was lost, which err then says). */
int estimate_run(PGconn *conn, const struct migration *m, const struct mig_plan *p, long sample_rows,
                 struct estimate_report *out, char *err, size_t errlen);
void estimate_print(const struct estimate_report *r, FILE *out);
json_t *estimate_to_json(const struct estimate_report *r);
void estimate_free(struct estimate_report *r);

#endif

/* The checks of a migration against the live database that engine_prepare
 * runs before its first DDL (engine_checks.c). Internal to the engine. */
#ifndef PGTANDEM_ENGINE_CHECKS_H
#define PGTANDEM_ENGINE_CHECKS_H

#include <libpq-fe.h>
#include <stddef.h>

#include "migration.h"
#include "migration_catalog.h"

/* Asks Postgres, on one-row temporary tables, which added columns' defaults
 * rewrite the table and which changes of type it makes in the catalog
 * alone; fills cat->default_rewrites and cat->retype_in_place. -1 with a
 * message for a default that cannot be the column's. */
int engine_probe(PGconn *conn, const struct migration *m, struct mig_catalog *cat, char *err, size_t errlen);

/* Types, expressions, defaults and index keys of every operation, tried on
 * empty stand-ins; -1 with a message naming operations[i]. */
int engine_check_live(PGconn *conn, const struct migration *m, const struct mig_catalog *cat, char *err,
                      size_t errlen);

/* Runs sql (possibly several statements, no parameters): 0, or -1 with
 * the error (and its SQLSTATE when sqlstate is given). Shared with
 * engine.c, whose steps run the same way. */
int engine_exec_simple(PGconn *conn, const char *sql, char *sqlstate, char *err, size_t errlen);
/* One statement with text parameters: its result, or NULL with the error. */
PGresult *engine_exec_params(PGconn *conn, const char *sql, int n, const char *const *values, char *err,
                             size_t errlen);

#endif

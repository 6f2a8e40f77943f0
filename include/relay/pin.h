/* Which statements leave state on a server connection that a transaction
 * pool cannot carry to another one (a SET of an untracked parameter, SQL
 * PREPARE, LISTEN, a WITH HOLD cursor, a session advisory lock, a temporary
 * object, LOAD): a client that runs one is pinned to its server connection.
 * Pure: SQL text in, a reason out; the statement is parsed with libpg_query,
 * and only when a cheap scan of the text says it may be one of those. */
#ifndef PGTANDEM_PIN_H
#define PGTANDEM_PIN_H

#include <stddef.h>

/* The parameters a pool carries across server connections itself: Postgres
 * reports them (ParameterStatus), so their values are always known. */
extern const char *const PIN_TRACKED_PARAMS[];
#define PIN_NTRACKED 6

/* Index of a tracked parameter (case-insensitive), or -1. */
int pin_tracked_index(const char *name);

/* 1 when running `sql` (len bytes, need not be NUL-terminated) pins the
 * client, with why as a short phrase in `why` ("SET search_path",
 * "LISTEN", ...); 0 when it does not. Text that does not parse pins
 * nothing: Postgres refuses it too. -1 when out of memory (the caller pins:
 * less pooled, never wrong). */
int pin_reason_for_sql(const char *sql, size_t len, char *why, size_t cap);

/* A session-level SET the pool can carry itself, as PgBouncer cannot: the
 * only statement of its text, SET (or RESET) of a parameter that is not
 * tracked, not a role. The pool runs the same text again on the next
 * server the client borrows (and RESET on servers the client leaves), so
 * drivers that SET at connect (pgjdbc's extra_float_digits) stay pooled.
 * search_path is carried by its value: while a version route applies, the
 * route's schema goes first and the client's path after it
 * (search_path.h). */
#define PIN_SEARCH_PATH_MAX 1024
struct pin_carry {
    char name[64];      /* the parameter, lower case as Postgres folds it ("" for RESET ALL) */
    int reset;          /* RESET name, SET name TO DEFAULT: back to the default */
    int all;            /* RESET ALL: every parameter back to its default */
    char value[PIN_SEARCH_PATH_MAX]; /* search_path: its schemas as quoted identifiers, ", "-separated; "" else */
};
/* 1 when `sql` is such a SET, or RESET ALL (filled in *out), 0 when not
 * (a search_path whose value is not a list of names, or too long, is not). */
int pin_carried_set(const char *sql, size_t len, struct pin_carry *out);

/* 1 when `sql` is one statement, DEALLOCATE [PREPARE] name (not ALL), with
 * the name in `name`; 0 when not (or the name does not fit). Transaction
 * pooling answers it for the client's protocol-level statements, which
 * live on the servers under names of the pool's. */
int pin_deallocate_name(const char *sql, size_t len, char *name, size_t cap);

#endif

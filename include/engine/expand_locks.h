/* The table locks an expand's transactions will take, taken first, in one
 * statement and in one order (expand_locks.c). */
#ifndef PGTANDEM_EXPAND_LOCKS_H
#define PGTANDEM_EXPAND_LOCKS_H

#include "migration.h"

/* A statement (a DO block) that locks every existing table m's expand
 * alters or adds a foreign key to or from, children before the tables
 * they reference; NULL when there is none (or out of memory: the expand
 * then runs as before, taking its locks as its statements come). The
 * caller frees it. */
char *expand_lock_sql(const struct migration *m);

#endif

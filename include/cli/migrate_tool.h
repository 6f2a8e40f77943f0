/* The directory's migration tool in charge of its history (migrate_tool.c). */
#ifndef PGTANDEM_MIGRATE_TOOL_H
#define PGTANDEM_MIGRATE_TOOL_H

#include <stddef.h>

#include "sql_dir.h"

struct cli;

/* With --db: leaves out of d the files the tool's table counts as applied
 * and pgtandem did not run; *parents (owned by the caller, d->n entries,
 * each freed) is each kept file's parent. With c->opt.tool set, the
 * tool's files are kept there for the start to write their rows. 0, or -1
 * with err (a history the tool itself would refuse to go on from, too). */
int migrate_tool_filter(const struct cli *c, struct sql_dir *d, char ***parents, char *err, size_t errlen);
/* status DIR --db: each file as the tool and pgtandem see it. */
int migrate_tool_status(const struct cli *c);

#endif

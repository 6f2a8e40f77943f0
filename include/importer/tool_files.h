/* A directory's migrations as its tool keys them in its history table
 * (engine/tool_history.h): drizzle-kit's hash and journal `when`,
 * Prisma's name and checksum, Flyway's version, description, script and
 * checksum, golang-migrate's version, node-pg-migrate's name. Only files
 * are read here; the tables are the engine's. */
#ifndef PGTANDEM_TOOL_FILES_H
#define PGTANDEM_TOOL_FILES_H

#include <stddef.h>

#include "sql_dir.h"
#include "tool_history.h"

/* The tool a directory's layout belongs to (TOOL_NONE for numbered files:
 * node-pg-migrate's are told by its table, which the caller asks). */
enum tool_kind tool_files_kind(enum sql_dir_layout layout);
/* 0 with th filled (kind, and each file of d with its keys), or -1 with
 * err. */
int tool_files_read(const char *dir, const struct sql_dir *d, enum tool_kind kind, struct tool_history *th,
                    char *err, size_t errlen);
/* Flyway's checksum of a file's text: CRC-32 over its lines as UTF-8, line
 * terminators dropped, a leading BOM removed, as a signed 32-bit int. */
long tool_flyway_checksum(const char *text, size_t len);

#endif

/* The history table of the migration tool that wrote a directory
 * (drizzle-kit, Prisma, Flyway, golang-migrate, node-pg-migrate): read to
 * know what that tool counts as applied, and written as the tool writes it
 * while pgtandem runs a file, so the tool's own migrate/deploy/status agrees
 * at every phase. doc/migrations.md says what is written when, per tool.
 *
 * The files and their keys (hashes, versions, names) come from the front
 * end (importer/tool_files); this file knows only the tables. */
#ifndef PGTANDEM_TOOL_HISTORY_H
#define PGTANDEM_TOOL_HISTORY_H

#include <libpq-fe.h>
#include <stddef.h>

enum tool_kind {
    TOOL_NONE,
    TOOL_DRIZZLE,
    TOOL_PRISMA,
    TOOL_FLYWAY,
    TOOL_GOLANG_MIGRATE,
    TOOL_NODE_PG_MIGRATE,
};

enum tool_file_state {
    TOOL_PENDING,   /* the tool would run it */
    TOOL_APPLIED,   /* the tool's table has it and pgtandem wrote no row of it: the tool ran it */
    TOOL_PGTANDEM,  /* pgtandem wrote its row (in flight, or completed through pgtandem) */
};

struct tool_file {
    char *name;     /* pgtandem's name of the migration (the file's or folder's) */
    char *key;      /* drizzle: hash; Prisma: migration_name; Flyway: version; golang-migrate:
                     * version; node-pg-migrate: name */
    char *checksum; /* Prisma: hex SHA-256; Flyway: CRC32 as a signed int; else NULL */
    char *order;    /* drizzle: the journal's `when`; Flyway: description; else NULL */
    char *script;   /* Flyway: the script's file name; else NULL */
    enum tool_file_state state;
    int written;    /* its row was written by this process (start) */
    char said[200]; /* what the tool's table says of it, for status */
};

struct tool_history {
    enum tool_kind kind;
    struct tool_file *f;
    size_t n;
    int table;      /* the tool's table exists */
};

const char *tool_kind_word(enum tool_kind kind);
/* The tool's table as a person would look for it ("drizzle.__drizzle_migrations"). */
const char *tool_kind_table(enum tool_kind kind);
void tool_history_free(struct tool_history *th);

/* Fills each file's state and said from the tool's table (nothing when it
 * does not exist). 0; 1 when the tool itself would refuse to migrate (a
 * failed Prisma migration, a dirty golang-migrate version, a Flyway file
 * changed since it ran or a failed one), err saying why and what to do;
 * -1 when it could not be read. */
int tool_history_read(PGconn *conn, struct tool_history *th, char *err, size_t errlen);

/* After migration's expand: the tool's row of every pending file up to and
 * including the one named migration (several when a chain starts as one),
 * written as the tool writes it, its table created first as the tool
 * creates it, under the tool's advisory lock; and pgtandem's note of each
 * row (pgtandem.tool_rows) for complete and rollback, which run without
 * the directory. 0, or -1 with err. */
int tool_history_started(PGconn *conn, struct tool_history *th, const char *migration, char *err, size_t errlen);
/* The same for the file named migration alone (one pgtandem completed
 * before it wrote the tool's rows). */
int tool_history_started_one(PGconn *conn, struct tool_history *th, const char *migration, char *err,
                             size_t errlen);
/* After migration's contract: its rows marked finished where the tool has
 * such a mark (Prisma). 0, or -1 with err. */
int tool_history_completed(PGconn *conn, const char *migration, char *err, size_t errlen);
/* After migration's rollback: its rows taken away again, so the tool sees
 * those files pending, as before the start. 0, or -1 with err. */
int tool_history_rolled_back(PGconn *conn, const char *migration, char *err, size_t errlen);

/* What a complete or rollback elsewhere left undone (a proxy's cutover
 * commits without the tool's table): Prisma's rows of completed
 * migrations marked finished, and the rows of rolled back ones taken
 * away. Run by start DIR before it reads the tool's table. 0, or -1. */
int tool_history_catch_up(PGconn *conn, char *err, size_t errlen);

/* golang-migrate's advisory lock id of names (its postgres driver passes
 * database, migrations schema and migrations table), as the decimal it
 * passes to pg_advisory_lock (database/util.go, GenerateAdvisoryLockId). */
void tool_golang_lock_id(const char *const *names, size_t n, char out[16]);
/* Flyway's advisory lock key for its table in schema (PostgreSQL), as a
 * decimal. */
void tool_flyway_lock_id(const char *schema, const char *table, char out[24]);
/* CRC-32 (IEEE 802.3, zlib's), continued from crc (0 to start). */
unsigned long tool_crc32(unsigned long crc, const unsigned char *p, size_t n);

#endif

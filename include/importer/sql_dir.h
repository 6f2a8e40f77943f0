/* A directory of SQL migrations as the tool that wrote it lays it out and
 * orders it, for `migrate start|plan|lint DIR`: which files are migrations,
 * in which order they run, and each one's name (whole: the directory's or
 * the file's own). Nothing is converted or run here; the files are only
 * listed (and drizzle-kit's journal read).
 *
 *   drizzle-kit     the journal (_journal.json in its meta folder) lists
 *                   the migrations in order;
 *                   <tag>.sql, named <tag>
 *   Prisma          <timestamp>_<name>/migration.sql, in directory name
 *                   order, named by the directory; migration_lock.toml
 *                   is not a migration
 *   Flyway          V<version>__<desc>.sql, by version numerically (1.2 <
 *                   1.10, 2 < 10), named V<version>__<desc>; U (undo) files
 *                   are left out (the rollback is derived), R__ (repeatable)
 *                   files are refused (they run again whenever they change,
 *                   which a history run once each cannot do)
 *   golang-migrate  <version>_<name>.up.sql by version numerically, named
 *                   <version>_<name>; the .down.sql files are left out
 *   plain           *.sql, by their leading number numerically, then by
 *                   name (001_x.sql, 2_y.sql, 10_z.sql), named by the file
 *
 * A file that does not fit the layout the directory is read as is refused,
 * saying why, rather than run out of its tool's order or left out unseen. */
#ifndef PGTANDEM_SQL_DIR_H
#define PGTANDEM_SQL_DIR_H

#include <stddef.h>

enum sql_dir_layout {
    SQL_DIR_NONE,           /* no SQL migrations (JSON ones, Alembic's *.py, or nothing) */
    SQL_DIR_PLAIN,
    SQL_DIR_DRIZZLE,
    SQL_DIR_PRISMA,
    SQL_DIR_FLYWAY,
    SQL_DIR_GOLANG_MIGRATE,
};

struct sql_dir_file {
    char *path;             /* DIR/... */
    char *name;             /* the migration's name */
};

struct sql_dir {
    enum sql_dir_layout layout;
    struct sql_dir_file *files;   /* in the order they run */
    size_t n;
    size_t left_out;        /* Flyway undo and golang-migrate down files */
};

/* 0 with the migrations of dir in *out (n 0 and layout SQL_DIR_NONE when it
 * has no SQL migrations), or -1 with why in err. */
int sql_dir_read(const char *dir, struct sql_dir *out, char *err, size_t errlen);
/* "drizzle-kit", "Prisma", ...: for messages. */
const char *sql_dir_layout_word(enum sql_dir_layout layout);
void sql_dir_free(struct sql_dir *d);

#endif

/* bin/pgtandem migrate start|plan DIR: a directory as a chain, either JSON
 * migrations linked by their parents, or SQL migrations in their tool's
 * layout and order (sql_dir.h: drizzle-kit, Prisma, Flyway, golang-migrate,
 * numbered files), each converted and named whole by its file or
 * directory, its parent the one before it (--parent for the first). */
#include "migrate_cli_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alembic_chain.h"
#include "migration.h"
#include "migrate_tool.h"
#include "sql_dir.h"
#include "sql_load.h"

int migrate_cli_is_directory(const char *path)
{
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The directory's SQL migrations; none is an error saying what was looked
 * for (and, for Alembic's versions/, how its SQL is had). */
static int read_sql_dir(const char *dir, struct sql_dir *d, char *err, size_t errlen)
{
    if (sql_dir_read(dir, d, err, errlen) != 0)
        return -1;
    if (d->n > 0)
        return 0;
    if (alembic_dir_has_revisions(dir))
        snprintf(err, errlen, "%s: an Alembic versions/ directory: its revisions are Python, which pgtandem does not "
                 "run; start the SQL Alembic writes for them (alembic upgrade FROM:head --sql > FILE.sql, then "
                 "pgtandem migrate start FILE.sql); `pgtandem migrate lint %s` checks its chain", dir, dir);
    else
        snprintf(err, errlen, "%s: no migrations found (*.json with parents, or SQL files in drizzle-kit's, "
                 "Prisma's, Flyway's, golang-migrate's layout or numbered)", dir);
    return -1;
}

static int dir_has_json(const char *dir, int *found, char *err, size_t errlen)
{
    char **json = NULL;
    size_t njson = 0;
    if (mig_list_files(dir, ".json", &json, &njson, err, errlen) != 0)
        return -1;
    mig_free_names(json, njson);
    *found = njson > 0;
    return 0;
}

static int load_sql_chain(const struct cli *c, struct migration **out, size_t *n, char *err, size_t errlen)
{
    struct sql_dir d;
    char **parents = NULL;
    if (read_sql_dir(c->file, &d, err, errlen) != 0)
        return -1;
    /* the files the directory's tool ran are its own (migrate_tool.c) */
    if (migrate_tool_filter(c, &d, &parents, err, errlen) != 0) {
        sql_dir_free(&d);
        return -1;
    }
    struct migration *list = calloc(d.n + 1, sizeof *list);
    int rc = list ? 0 : (snprintf(err, errlen, "out of memory"), -1);
    size_t loaded = 0;
    for (size_t i = 0; rc == 0 && i < d.n; i++) {
        struct sql_load_options o = {.db = c->db, .name = d.files[i].name,
                                     .parent = parents ? parents[i] : i ? d.files[i - 1].name : c->parent};
        rc = sql_load_migration(d.files[i].path, &o, &list[i], err, errlen);
        loaded = i + 1;
    }
    size_t count = d.n;
    for (size_t i = 0; parents && i < d.n; i++)
        free(parents[i]);
    free(parents);
    sql_dir_free(&d);

    if (rc != 0) {
        mig_free_list(list, loaded);
        return -1;
    }
    *out = list;
    *n = count;
    return 0;
}

int migrate_cli_load_chain(const struct cli *c, struct migration **out, size_t *n, char *err, size_t errlen)
{
    int json = 0;
    *out = NULL;
    *n = 0;
    if (dir_has_json(c->file, &json, err, errlen) != 0)
        return -1;
    return json ? mig_load_dir(c->file, out, n, err, errlen) : load_sql_chain(c, out, n, err, errlen);
}

/* SQL migrations go to a proxy as they are, in their order, for its engine
 * to convert with its catalog (as FILE.sql). */
static char *sql_chain_body(const struct cli *c, char *err, size_t errlen)
{
    struct sql_dir d;
    if (read_sql_dir(c->file, &d, err, errlen) != 0)
        return NULL;
    char **paths = calloc(d.n, sizeof *paths), **names = calloc(d.n, sizeof *names);
    char *body = NULL;
    if (!paths || !names) {
        snprintf(err, errlen, "out of memory");
    } else {
        for (size_t i = 0; i < d.n; i++) {
            paths[i] = d.files[i].path;
            names[i] = d.files[i].name;
        }
        body = sql_load_chain_body(paths, names, d.n, c->parent, err, errlen);
    }
    free(paths);
    free(names);
    sql_dir_free(&d);
    return body;
}

char *migrate_cli_chain_body(const struct cli *c, char *err, size_t errlen)
{
    int json = 0;
    if (dir_has_json(c->file, &json, err, errlen) != 0)
        return NULL;
    if (!json)
        return sql_chain_body(c, err, errlen);
    struct migration *list;
    size_t n;
    if (mig_load_dir(c->file, &list, &n, err, errlen) != 0)
        return NULL;
    char *body = mig_chain_body(list, n);
    mig_free_list(list, n);
    if (!body)
        snprintf(err, errlen, "out of memory");
    return body;
}

int migrate_cli_load_pending(const struct cli *c, struct migration *m, char *err, size_t errlen)
{
    struct migration *list = NULL;
    size_t n = 0, first = 0;
    memset(m, 0, sizeof *m);
    if (migrate_cli_load_chain(c, &list, &n, err, errlen) != 0)
        return -1;
    int rc = 0;
    if (c->db) {
        struct engine e;
        rc = migrate_cli_open_engine(c, &e, 0, err, errlen) == ENGINE_OK ? 0 : -1;
        if (rc == 0) {
            rc = engine_chain_pending(&e, list, n, &first, err, errlen) == ENGINE_OK ? 0 : -1;
            engine_close(&e);
        }
    }
    if (rc == 0 && n == 0)
        rc = (snprintf(err, errlen, "%s: every migration is applied (its tool's history says so); nothing to plan",
                       c->file), -1);
    else if (rc == 0 && first == n)
        rc = (snprintf(err, errlen, "%s: every migration is applied (head %s); nothing to plan", c->file,
                       list[n - 1].name), -1);
    if (rc == 0 && first + 1 == n) {
        *m = list[first];
        memset(&list[first], 0, sizeof list[first]);
    } else if (rc == 0) {
        rc = mig_merge(list + first, n - first, m, err, errlen);
    }
    mig_free_list(list, n);
    return rc;
}

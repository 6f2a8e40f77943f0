/* Unit tests for the directory layouts (sql_dir.c) and migration name
 * tags (migration_names.c): each tool's order (Flyway's dotted versions,
 * golang-migrate's and numbered files' numbers by value, however long),
 * the files left out or refused, and tags that keep short names as they
 * were and fit long ones in an identifier. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migration_names.h"
#include "sql_dir.h"
#include "unit.h"

static char err[1024];
static char root[] = "/tmp/pgtandem-sql-dir-XXXXXX";

static void touch(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s", root, dir, name);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("SELECT 1;\n", f);
        fclose(f);
    }
}

static const char *make_dir(const char *dir)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", root, dir);
    mkdir(path, 0700);
    return path;
}

/* The names of dir's migrations joined by spaces, or "ERR: why". */
static const char *order(const char *dir, enum sql_dir_layout *layout)
{
    static char out[2048];
    struct sql_dir d;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, dir);
    if (sql_dir_read(path, &d, err, sizeof err) != 0) {
        snprintf(out, sizeof out, "ERR: %s", err);
        return out;
    }
    out[0] = '\0';
    for (size_t i = 0; i < d.n; i++)
        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", i ? " " : "", d.files[i].name);
    if (layout)
        *layout = d.layout;
    sql_dir_free(&d);
    return out;
}

static void flyway(void)
{
    make_dir("fw");
    const char *files[] = {"V1__a.sql", "V1.10__c.sql", "V1.2__b.sql", "V2__d.sql", "V10__e.sql", "U2__d.sql",
                           "V20240101120000__f.sql", "README.md"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        touch("fw", files[i]);
    enum sql_dir_layout l = SQL_DIR_NONE;
    const char *got = order("fw", &l);
    CHECK("flyway: versions by value, undo left out",
          !strcmp(got, "V1__a V1.2__b V1.10__c V2__d V10__e V20240101120000__f") && l == SQL_DIR_FLYWAY);
    touch("fw", "V1.0__again.sql");
    CHECK("flyway: 1 and 1.0 are one version", !strncmp(order("fw", NULL), "ERR: ", 5)
          && strstr(err, "the same version"));
}

static void golang_and_plain(void)
{
    make_dir("gm");
    const char *files[] = {"10_c.up.sql", "10_c.down.sql", "2_b.up.sql", "2_b.down.sql", "000001_a.up.sql"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        touch("gm", files[i]);
    enum sql_dir_layout l = SQL_DIR_NONE;
    CHECK("golang-migrate: up files by version", !strcmp(order("gm", &l), "000001_a 2_b 10_c")
          && l == SQL_DIR_GOLANG_MIGRATE);
    touch("gm", "notes.sql");
    CHECK("golang-migrate: another .sql refused", !strncmp(order("gm", NULL), "ERR: ", 5)
          && strstr(err, "notes.sql: not a golang-migrate migration name"));
    make_dir("pl");
    const char *plain[] = {"10_z.sql", "2_y.sql", "001_x.sql", "99999999999999999999_big.sql", "seed.sql"};
    for (size_t i = 0; i < sizeof plain / sizeof *plain; i++)
        touch("pl", plain[i]);
    CHECK("plain: leading numbers by value", !strcmp(order("pl", &l), "001_x 2_y 10_z 99999999999999999999_big seed")
          && l == SQL_DIR_PLAIN);
    make_dir("empty");
    touch("empty", "a.json");
    CHECK("no SQL: none", !strcmp(order("empty", &l), "") && l == SQL_DIR_NONE);
}

static void prisma_and_drizzle(void)
{
    make_dir("pr");
    touch("pr", "migration_lock.toml");
    make_dir("pr/20240516030441_b");
    make_dir("pr/20240101000000_a");
    touch("pr/20240516030441_b", "migration.sql");
    touch("pr/20240101000000_a", "migration.sql");
    enum sql_dir_layout l = SQL_DIR_NONE;
    CHECK("prisma: directories by name", !strcmp(order("pr", &l), "20240101000000_a 20240516030441_b")
          && l == SQL_DIR_PRISMA);
    make_dir("pr/20240601000000_c");
    CHECK("prisma: a directory without migration.sql refused", !strncmp(order("pr", NULL), "ERR: ", 5)
          && strstr(err, "no migration.sql"));
    make_dir("dz");
    make_dir("dz/meta");
    char path[512];
    snprintf(path, sizeof path, "%s/dz/meta/_journal.json", root);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("{\"version\":\"7\",\"dialect\":\"postgresql\",\"entries\":[{\"idx\":0,\"tag\":\"0001_b\"},"
              "{\"idx\":1,\"tag\":\"0000_a\"}]}", f);
        fclose(f);
    }
    touch("dz", "0000_a.sql");
    touch("dz", "0001_b.sql");
    CHECK("drizzle: the journal's order", !strcmp(order("dz", &l), "0001_b 0000_a") && l == SQL_DIR_DRIZZLE);
}

static void tags(void)
{
    char tag[MIG_NAME_TAG_MAX + 1], other[MIG_NAME_TAG_MAX + 1];
    mig_name_tag("0001_add_users", tag);
    CHECK("tag: a short plain name is its own tag", !strcmp(tag, "0001_add_users"));
    mig_name_tag("aaaaaaaaaabbbbbbbbbbccccccccccdddddddddd", tag);
    CHECK("tag: 40 characters are their own tag", !strcmp(tag, "aaaaaaaaaabbbbbbbbbbccccccccccdddddddddd"));
    mig_name_tag("20240516030441_add_more_timestamp_columns_for_background_jobs", tag);
    mig_name_tag("20240516030441_add_more_timestamp_columns_for_other_jobs", other);
    CHECK("tag: a long name fits", strlen(tag) == MIG_NAME_TAG_MAX && !strncmp(tag, "20240516030441_add_more_", 24));
    CHECK("tag: names sharing a start differ", strcmp(tag, other) != 0);
    mig_name_tag("V1.1__x", tag);
    CHECK("tag: a dot is not in an identifier", !strchr(tag, '.') && !strncmp(tag, "V1_1__x_", 8));
    char schema[80];
    mig_old_schema("20240516030441_add_more_timestamp_columns_for_background_jobs", schema, sizeof schema);
    CHECK("tag: the old shape's schema fits 63 bytes", strlen(schema) <= 63);
}

int main(void)
{
    if (!mkdtemp(root))
        return 1;
    flyway();
    golang_and_plain();
    prisma_and_drizzle();
    tags();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        printf("FAIL cleanup\n");
    return UNIT_RESULT();
}

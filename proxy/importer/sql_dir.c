/* Reads a directory of SQL migrations in its tool's layout and order
 * (sql_dir.h says which). Kept apart from the converter and the loader:
 * it only lists files, so any front end can take its order. */
#include "sql_dir.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "file_read.h"

#define JOURNAL "meta/_journal.json"
#define PRISMA_FILE "migration.sql"

/* The directory's own entries (not the hidden ones), sorted by name. */
struct listing {
    char **names;
    unsigned char *is_dir;
    size_t n;
};

static int fail(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
    snprintf(err, errlen, fmt, a, b);
    return -1;
}

static char *join(const char *dir, const char *a, const char *b)
{
    size_t len = strlen(dir) + strlen(a) + (b ? strlen(b) : 0) + 3;
    char *p = malloc(len);
    const char *slash = dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/";
    if (p)
        snprintf(p, len, "%s%s%s%s%s", dir, slash, a, b ? "/" : "", b ? b : "");
    return p;
}

static int exists(const char *path, int want_dir)
{
    struct stat st;
    return stat(path, &st) == 0 && (want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
}

static int is_sql(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcasecmp(name + n - 4, ".sql") == 0;
}

static int has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), k = strlen(suffix);
    return n > k && strcmp(name + n - k, suffix) == 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void listing_free(struct listing *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
    free(l->is_dir);
}

static int list_dir(const char *dir, struct listing *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d)
        return fail(err, errlen, "%s: cannot open directory: %s", dir, strerror(errno));
    const struct dirent *e;
    int oom = 0;
    while (!oom && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char **grown = realloc(out->names, (out->n + 1) * sizeof *grown);
        if (grown)
            out->names = grown;
        oom = !grown || !(out->names[out->n] = strdup(e->d_name));
        out->n += !oom;
    }
    closedir(d);
    if (!oom && out->n > 1)
        qsort(out->names, out->n, sizeof *out->names, by_name);
    out->is_dir = oom ? NULL : calloc(out->n + 1, 1);
    for (size_t i = 0; out->is_dir && i < out->n && !oom; i++) {
        char *p = join(dir, out->names[i], NULL);
        oom = !p;
        out->is_dir[i] = p && exists(p, 1);
        free(p);
    }
    if (oom || !out->is_dir) {
        listing_free(out);
        return fail(err, errlen, "%s: out of memory%s", dir, "");
    }
    return 0;
}

/* Takes path and name (both allocated here). */
static int add(struct sql_dir *d, char *path, const char *name, size_t name_len, char *err, size_t errlen)
{
    struct sql_dir_file *grown = realloc(d->files, (d->n + 1) * sizeof *grown);
    char *copy = strndup(name, name_len);
    if (!grown || !path || !copy) {
        if (grown)
            d->files = grown;
        free(path);
        free(copy);
        return fail(err, errlen, "out of memory%s%s", "", "");
    }
    d->files = grown;
    d->files[d->n].path = path;
    d->files[d->n].name = copy;
    d->n++;
    return 0;
}

/* ---- numbers as the tools compare them: by value, any length ---- */

static size_t digits(const char *s)
{
    size_t n = 0;
    while (s[n] >= '0' && s[n] <= '9')
        n++;
    return n;
}

/* Two runs of digits by value, without overflowing on a 14-digit
 * timestamp or a longer one. */
static int cmp_number(const char *a, size_t alen, const char *b, size_t blen)
{
    while (alen > 1 && *a == '0')
        a++, alen--;
    while (blen > 1 && *b == '0')
        b++, blen--;
    if (alen != blen)
        return alen < blen ? -1 : 1;
    return strncmp(a, b, alen);
}

/* Flyway's version: numbers separated by '.' or '_' (its "1_1" is 1.1),
 * compared part by part, a missing part being 0 (1 and 1.0 are one
 * version). s ends at "__". */
static int cmp_flyway_version(const char *a, const char *b)
{
    for (;;) {
        size_t na = digits(a), nb = digits(b);
        int c = cmp_number(na ? a : "0", na ? na : 1, nb ? b : "0", nb ? nb : 1);
        if (c)
            return c;
        a += na;
        b += nb;
        /* a separator before another part; "__" ends the version */
        int more_a = (*a == '.' || *a == '_') && digits(a + 1) > 0;
        int more_b = (*b == '.' || *b == '_') && digits(b + 1) > 0;
        if (!more_a && !more_b)
            return 0;
        a += more_a;
        b += more_b;
    }
}

/* ---- drizzle-kit: the journal gives the order ---- */

/* drizzle-kit writes an entry of a few hundred bytes per migration */
#define MAX_JOURNAL (16u * 1024 * 1024)

static int read_drizzle(const char *dir, const struct listing *l, struct sql_dir *out, char *err, size_t errlen)
{
    char *journal = join(dir, JOURNAL, NULL);
    json_error_t je = {.text = "out of memory"};
    size_t n = 0;
    char *text = journal ? file_read_all(journal, "drizzle-kit journal", MAX_JOURNAL, 0, &n, je.text,
                                         sizeof je.text)
                         : NULL;
    json_t *root = text ? json_loadb(text, n, 0, &je) : NULL;
    free(text);
    json_t *entries = json_object_get(root, "entries");
    int rc = 0;
    if (!json_is_array(entries))
        rc = fail(err, errlen, "%s: not drizzle-kit's journal (an object with an \"entries\" array): %s", journal,
                  root ? "no entries" : je.text);
    out->layout = SQL_DIR_DRIZZLE;
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e) {
        const char *tag = json_string_value(json_object_get(e, "tag"));
        if (rc != 0)
            break;
        if (!tag || !*tag || strchr(tag, '/')) {
            snprintf(err, errlen, "%s: entries[%zu] has no \"tag\" (its migration's file name)", journal, i);
            rc = -1;
            break;
        }
        char *path = join(dir, tag, NULL), *file = path ? malloc(strlen(path) + 5) : NULL;
        if (file)
            snprintf(file, strlen(path) + 5, "%s.sql", path);
        free(path);
        if (file && !exists(file, 0)) {
            rc = fail(err, errlen, "%s: the journal lists \"%s\" but its .sql file is missing; migration files are "
                      "never deleted: restore it", file, tag);
            free(file);
            break;
        }
        rc = add(out, file, tag, strlen(tag), err, errlen);
    }
    /* drizzle-kit's migrator runs the journal's entries only */
    for (size_t k = 0; rc == 0 && k < l->n; k++) {
        int listed = 0;
        for (size_t j = 0; j < out->n && !listed; j++)
            listed = strlen(l->names[k]) == strlen(out->files[j].name) + 4 &&
                     !strncmp(l->names[k], out->files[j].name, strlen(out->files[j].name));
        if (!l->is_dir[k] && is_sql(l->names[k]) && !listed)
            rc = fail(err, errlen, "%s: not in meta/_journal.json, so drizzle-kit would not run it; add it with "
                      "drizzle-kit (generate --custom) or move it out of %s", l->names[k], dir);
    }
    json_decref(root);
    free(journal);
    return rc;
}

/* ---- Prisma: a directory per migration ---- */

static int read_prisma(const char *dir, const struct listing *l, struct sql_dir *out, char *err, size_t errlen)
{
    out->layout = SQL_DIR_PRISMA;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < l->n; i++) {
        const char *name = l->names[i];
        if (!l->is_dir[i]) {
            if (is_sql(name))
                rc = fail(err, errlen, "%s/%s: a Prisma migration is a directory holding migration.sql; Prisma "
                          "would not run a file beside them: move it into one", dir, name);
            continue;   /* migration_lock.toml and the like */
        }
        char *path = join(dir, name, PRISMA_FILE);
        if (path && !exists(path, 0)) {
            rc = fail(err, errlen, "%s: no migration.sql in this Prisma migration directory (%s)", path, name);
            free(path);
        } else {
            rc = add(out, path, name, strlen(name), err, errlen);
        }
    }
    return rc;
}

/* ---- the flat layouts: Flyway, golang-migrate, plain numbered files ---- */

/* golang-migrate: <digits>_<name>.up.sql or .down.sql. */
static int golang_kind(const char *name)
{
    size_t n = digits(name);
    if (n == 0 || name[n] != '_')
        return 0;
    return has_suffix(name, ".up.sql") ? 'u' : has_suffix(name, ".down.sql") ? 'd' : 0;
}

/* Flyway: V<version>__<desc>.sql, U<version>__<desc>.sql or R__<desc>.sql;
 * its kind letter, 0 for any other name. */
static int flyway_kind(const char *name)
{
    if (!has_suffix(name, ".sql"))
        return 0;
    if (name[0] == 'R' && name[1] == '_' && name[2] == '_')
        return 'R';
    if ((name[0] != 'V' && name[0] != 'U') || !digits(name + 1))
        return 0;
    const char *sep = strstr(name + 1, "__");
    for (const char *p = name + 1; sep && p < sep; p++)
        if (!(digits(p) || *p == '.' || *p == '_'))
            return 0;
    return sep ? name[0] : 0;
}

static int cmp_golang(const void *a, const void *b)
{
    const struct sql_dir_file *x = a, *y = b;
    const char *p = strrchr(x->path, '/') + 1, *q = strrchr(y->path, '/') + 1;
    return cmp_number(p, digits(p), q, digits(q));
}

static int cmp_flyway(const void *a, const void *b)
{
    const struct sql_dir_file *x = a, *y = b;
    return cmp_flyway_version(strrchr(x->path, '/') + 2, strrchr(y->path, '/') + 2);
}

static int cmp_plain(const void *a, const void *b)
{
    const struct sql_dir_file *x = a, *y = b;
    const char *p = strrchr(x->path, '/') + 1, *q = strrchr(y->path, '/') + 1;
    size_t np = digits(p), nq = digits(q);
    int c = np && nq ? cmp_number(p, np, q, nq) : 0;
    return c ? c : strcmp(p, q);
}

/* The next one with the same version as the one before it (the directory
 * sorted), which both tools refuse. */
static int check_versions(const struct sql_dir *d, int (*cmp)(const void *, const void *), char *err, size_t errlen)
{
    for (size_t i = 1; i < d->n; i++)
        if (cmp(&d->files[i - 1], &d->files[i]) == 0)
            return fail(err, errlen, "%s and %s have the same version; the tool that wrote them refuses that too: "
                        "give one a new version", d->files[i - 1].path, d->files[i].path);
    return 0;
}

static int refuse_flat(const char *dir, const char *name, enum sql_dir_layout layout, int kind, char *err,
                       size_t errlen)
{
    char what[300];
    if (layout == SQL_DIR_FLYWAY && kind == 'R')
        snprintf(what, sizeof what, "a Flyway repeatable migration (run again whenever it changes, after the "
                 "versioned ones); pgtandem runs each migration once: make it a V<version>__ file or move it out");
    else
        snprintf(what, sizeof what, "not a %s migration name (%s), so that tool would not run it; rename it or "
                 "move it out", sql_dir_layout_word(layout),
                 layout == SQL_DIR_FLYWAY ? "V<version>__<desc>.sql" : "<version>_<name>.up.sql");
    snprintf(err, errlen, "%s/%s: %s", dir, name, what);
    return -1;
}

static int read_flat(const char *dir, const struct listing *l, struct sql_dir *out, char *err, size_t errlen)
{
    size_t golang = 0, flyway = 0;
    for (size_t i = 0; i < l->n; i++) {
        golang += !l->is_dir[i] && golang_kind(l->names[i]) != 0;
        flyway += !l->is_dir[i] && flyway_kind(l->names[i]) != 0;
    }
    if (golang && flyway)
        return fail(err, errlen, "%s: both Flyway (V<version>__<desc>.sql) and golang-migrate "
                    "(<version>_<name>.up.sql) files; keep one tool's migrations in a directory%s", dir, "");
    out->layout = golang ? SQL_DIR_GOLANG_MIGRATE : flyway ? SQL_DIR_FLYWAY : SQL_DIR_PLAIN;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < l->n; i++) {
        const char *name = l->names[i];
        if (l->is_dir[i] || !is_sql(name))
            continue;
        int kind = golang ? golang_kind(name) : flyway ? flyway_kind(name) : 's';
        if (kind == 0 || kind == 'R')
            return refuse_flat(dir, name, out->layout, kind, err, errlen);
        if (kind == 'd' || kind == 'U') {
            out->left_out++;    /* a down or undo: the rollback is pgtandem's own */
            continue;
        }
        size_t cut = strlen(name) - (golang ? strlen(".up.sql") : strlen(".sql"));
        rc = add(out, join(dir, name, NULL), name, cut, err, errlen);
    }
    int (*cmp)(const void *, const void *) = golang ? cmp_golang : flyway ? cmp_flyway : cmp_plain;
    if (rc == 0 && out->n > 1)
        qsort(out->files, out->n, sizeof *out->files, cmp);
    if (rc == 0 && out->layout != SQL_DIR_PLAIN)
        rc = check_versions(out, cmp, err, errlen);
    if (rc == 0 && out->n == 0)
        out->layout = SQL_DIR_NONE;
    return rc;
}

/* ---- the directory ---- */

static int has_prisma_dirs(const char *dir, const struct listing *l)
{
    int found = 0;
    for (size_t i = 0; i < l->n && !found; i++) {
        char *p = l->is_dir[i] ? join(dir, l->names[i], PRISMA_FILE) : NULL;
        found = p && exists(p, 0);
        free(p);
    }
    return found;
}

int sql_dir_read(const char *dir, struct sql_dir *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct listing l;
    if (list_dir(dir, &l, err, errlen) != 0)
        return -1;
    char *journal = join(dir, JOURNAL, NULL);
    int rc;
    if (journal && exists(journal, 0))
        rc = read_drizzle(dir, &l, out, err, errlen);
    else if (has_prisma_dirs(dir, &l))
        rc = read_prisma(dir, &l, out, err, errlen);
    else
        rc = read_flat(dir, &l, out, err, errlen);
    free(journal);
    listing_free(&l);
    if (rc != 0)
        sql_dir_free(out);
    return rc;
}

const char *sql_dir_layout_word(enum sql_dir_layout layout)
{
    switch (layout) {
    case SQL_DIR_PLAIN: return "numbered SQL files";
    case SQL_DIR_DRIZZLE: return "drizzle-kit";
    case SQL_DIR_PRISMA: return "Prisma";
    case SQL_DIR_FLYWAY: return "Flyway";
    case SQL_DIR_GOLANG_MIGRATE: return "golang-migrate";
    case SQL_DIR_NONE: break;
    }
    return "no SQL migrations";
}

void sql_dir_free(struct sql_dir *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->files[i].path);
        free(d->files[i].name);
    }
    free(d->files);
    memset(d, 0, sizeof *d);
}

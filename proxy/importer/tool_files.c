/* Each migration of a directory keyed as its tool keys it in its history
 * table (tool_files.h); each fact names the tool's source. */
#include "tool_files.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file_read.h"
#include "migration.h"

#define MAX_FILE (64u * 1024 * 1024)
#define MAX_JOURNAL (16u * 1024 * 1024)

enum tool_kind tool_files_kind(enum sql_dir_layout layout)
{
    switch (layout) {
    case SQL_DIR_DRIZZLE: return TOOL_DRIZZLE;
    case SQL_DIR_PRISMA: return TOOL_PRISMA;
    case SQL_DIR_FLYWAY: return TOOL_FLYWAY;
    case SQL_DIR_GOLANG_MIGRATE: return TOOL_GOLANG_MIGRATE;
    default: return TOOL_NONE;
    }
}

/* Flyway flyway-core ChecksumCalculator.calculateChecksumForResource: a
 * BufferedReader's readLine() (which drops "\n", "\r\n" and "\r"), the
 * first line's BOM filtered (BomFilter), each line's UTF-8 bytes into one
 * CRC32, the value cast to int. A file's own bytes are its UTF-8 (Flyway's
 * default encoding). */
long tool_flyway_checksum(const char *text, size_t len)
{
    const unsigned char *p = (const unsigned char *)text, *end = p + len;
    if (len >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf)
        p += 3;
    unsigned long crc = 0;
    while (p < end) {
        const unsigned char *line = p;
        while (p < end && *p != '\n' && *p != '\r')
            p++;
        crc = tool_crc32(crc, line, (size_t)(p - line));
        if (p < end && *p == '\r' && p + 1 < end && p[1] == '\n')
            p += 2;
        else if (p < end)
            p++;
    }
    return crc >= 0x80000000UL ? (long)crc - 0x100000000L : (long)crc;
}

static char *printed(const char *fmt, long long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, fmt, v);
    return strdup(buf);
}

/* drizzle-orm migrator.ts readMigrationFiles: each journal entry's
 * folderMillis is its `when`. */
static int drizzle_when(const char *dir, struct tool_history *th, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/meta/_journal.json", dir);
    size_t n = 0;
    char *text = file_read_all(path, "drizzle-kit journal", MAX_JOURNAL, 0, &n, err, errlen);
    if (!text)
        return -1;
    json_error_t je;
    json_t *root = json_loadb(text, n, 0, &je);
    free(text);
    json_t *entries = json_object_get(root, "entries"), *e;
    size_t i;
    json_array_foreach(entries, i, e) {
        const char *tag = json_string_value(json_object_get(e, "tag"));
        json_t *when = json_object_get(e, "when");
        for (size_t k = 0; tag && json_is_integer(when) && k < th->n; k++)
            if (th->f[k].name && !strcmp(th->f[k].name, tag) && !th->f[k].order)
                th->f[k].order = printed("%lld", (long long)json_integer_value(when));
    }
    json_decref(root);
    for (size_t k = 0; k < th->n; k++)
        if (!th->f[k].order)
            return snprintf(err, errlen, "%s: the entry of %s has no \"when\" (drizzle's migrator orders by it)",
                            path, th->f[k].name), -1;
    return 0;
}

/* Flyway's version and description from V<version>__<description>.sql
 * (its MigrationInfo: '_' in a version is '.', in a description ' '). */
static int flyway_names(struct tool_file *f, const char *base)
{
    const char *sep = strstr(base + 1, "__");
    size_t vlen = sep ? (size_t)(sep - base - 1) : 0;
    f->key = strndup(base + 1, vlen);
    const char *desc = sep ? sep + 2 : "";
    size_t dlen = strlen(desc) > 4 ? strlen(desc) - 4 : 0;
    f->order = strndup(desc, dlen);
    f->script = strdup(base);
    for (char *c = f->key; c && *c; c++)
        *c = *c == '_' ? '.' : *c;
    for (char *c = f->order; c && *c; c++)
        *c = *c == '_' ? ' ' : *c;
    return f->key && f->order && f->script ? 0 : -1;
}

static int key_file(const struct sql_dir_file *src, enum tool_kind kind, struct tool_file *f, char *err,
                    size_t errlen)
{
    f->name = strdup(src->name);
    const char *base = strrchr(src->path, '/') ? strrchr(src->path, '/') + 1 : src->path;
    size_t n = 0;
    char *text = file_read_all(src->path, "migration", MAX_FILE, 0, &n, err, errlen);
    if (!text || !f->name) {
        free(text);
        return text ? (snprintf(err, errlen, "out of memory"), -1) : -1;
    }
    char sum[65];
    mig_checksum(text, n, sum);
    int oom = 0;
    switch (kind) {
    case TOOL_DRIZZLE:
        /* migrator.ts: hash = sha256 of the file's text, hex */
        oom = !(f->key = strdup(sum));
        break;
    case TOOL_PRISMA:
        /* schema-engine migrations_directory.rs: the checksum is the hex
         * SHA-256 of migration.sql; the name is the directory's */
        oom = !(f->key = strdup(src->name)) || !(f->checksum = strdup(sum));
        break;
    case TOOL_FLYWAY:
        oom = flyway_names(f, base) != 0 || !(f->checksum = printed("%lld", tool_flyway_checksum(text, n)));
        break;
    case TOOL_GOLANG_MIGRATE:
        /* source/parse.go: the leading number is the version (uint) */
        oom = !(f->key = printed("%lld", atoll(base)));
        break;
    case TOOL_NODE_PG_MIGRATE:
        /* src/migration.ts: the name is the file's, without its extension */
        oom = !(f->key = strdup(src->name));
        break;
    case TOOL_NONE: break;
    }
    free(text);
    return oom ? (snprintf(err, errlen, "out of memory"), -1) : 0;
}

int tool_files_read(const char *dir, const struct sql_dir *d, enum tool_kind kind, struct tool_history *th,
                    char *err, size_t errlen)
{
    memset(th, 0, sizeof *th);
    th->kind = kind;
    if (kind == TOOL_NONE)
        return 0;
    th->f = calloc(d->n + 1, sizeof *th->f);
    if (!th->f)
        return snprintf(err, errlen, "out of memory"), -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < d->n; i++) {
        rc = key_file(&d->files[i], kind, &th->f[i], err, errlen);
        th->n = i + 1;
    }
    if (rc == 0 && kind == TOOL_DRIZZLE)
        rc = drizzle_when(dir, th, err, errlen);
    if (rc != 0)
        tool_history_free(th);
    return rc;
}

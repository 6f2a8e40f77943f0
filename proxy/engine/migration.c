/* Migration file parser and structural validator. Every key, type and name in
 * an (untrusted) migration file is checked; anything unexpected is an error
 * naming the file, line, column, operation index and key, with a "did you
 * mean" for near misses. Nothing here talks to a database. This file reads
 * the top level (name, parent, backfill, merges), loads, checksums, merges
 * and frees; each operation is read by migration_op_parse.c, and the checks
 * and error positions they share are in migration_check.c. */
#include "migration.h"
#include "migration_names.h"
#include "file_read.h"
#include "migration_parse.h"
#include "settings.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OPS 1000
#define MAX_FILE (16 * 1024 * 1024)

static const struct key_spec top_keys[] = {
    {"name", K_STR, 1}, {"parent", K_STR_OR_NULL, 0}, {"operations", K_OBJ, 1},
    {"backfill", K_OBJ, 0}, {"merges", K_OBJ, 0}, {NULL, 0, 0}};
static const struct key_spec backfill_keys[] = {
    {"batch_rows", K_INT, 0}, {"min_rows", K_INT, 0}, {"max_rows", K_INT, 0},
    {"target_ms", K_INT, 0}, {"max_rows_per_sec", K_INT, 0}, {"sleep_ratio", K_NUM, 0},
    {"lock_timeout_ms", K_INT, 0}, {"workers", K_INT, 0}, {"app_p99_budget", K_NUM, 0}, {NULL, 0, 0}};

int mig_merge(const struct migration *list, size_t n, struct migration *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_t *ops = json_array(), *merges = json_array(), *backfill = NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *root = json_loads(list[i].json, 0, NULL);
        json_array_extend(ops, json_object_get(root, "operations"));
        if (i + 1 == n && json_object_get(root, "backfill"))
            backfill = json_incref(json_object_get(root, "backfill"));
        json_array_append_new(merges, json_pack("{s:s,s:s?,s:s,s:s}", "name", list[i].name, "parent",
                                                list[i].parent, "checksum", list[i].checksum, "json", list[i].json));
        json_decref(root);
    }
    json_t *m = json_pack("{s:s,s:s?,s:o,s:o}", "name", list[n - 1].name, "parent", list[0].parent, "operations",
                          ops, "merges", merges);
    if (m && backfill)
        json_object_set_new(m, "backfill", backfill);
    char *text = m ? json_dumps(m, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(m);
    char file[2 * MIG_NAME_MAX + 16];
    snprintf(file, sizeof file, "%s..%s (merged)", list[0].name, list[n - 1].name);
    int rc = text ? mig_parse(text, strlen(text), file, out, err, errlen) : (snprintf(err, errlen, "out of memory"), -1);
    free(text);
    return rc;
}

const struct mig_op *mig_add_column_freed_by(const struct migration *m, const struct mig_op *add)
{
    for (int i = 0; add->kind == MIG_ADD_COLUMN && i < add->index && (size_t)i < m->nops; i++) {
        const struct mig_op *o = &m->ops[i];
        if (o->kind == MIG_RENAME_COLUMN && !strcmp(o->schema, add->schema) && !strcmp(o->table, add->table) &&
            !strcmp(o->from, add->col.name) && !o->copy)
            return o;
    }
    return NULL;
}

int mig_revert_blocker(const struct migration *m, char *why, size_t n)
{
    for (size_t i = 0; i < m->nops; i++) {
        const struct mig_op *op = &m->ops[i];
        if (op->kind == MIG_DROP_COLUMN && !op->down) {
            snprintf(why, n, "operations[%zu].drop_column: rows the new release writes get no \"%s\" (it has no "
                     "\"down\"), so a revert could not give them back to the old shape", (size_t)op->index, op->column ? op->column : "?");
            return (int)i;
        }
    }
    return -1;
}

static int parse_backfill(struct parse_ctx *c, json_t *obj, struct mig_backfill_settings *bf)
{
    bf->batch_rows = 1000;
    bf->min_rows = 100;
    bf->max_rows = 100000;
    bf->target_ms = 50;
    bf->max_rows_per_sec = 0;
    bf->sleep_ratio = 0.0;
    bf->lock_timeout_ms = 1000;
    const struct setting *workers = setting_by_name(SETTING_THROTTLE, "backfill_workers");
    bf->workers = (long)workers->def;
    const struct setting *budget = setting_by_name(SETTING_THROTTLE, "app_p99_budget");
    bf->app_p99_budget = budget->def;
    if (!obj)
        return 0;
    snprintf(c->path, sizeof c->path, "backfill");
    if (!json_is_object(obj))
        return mparse_fail_at(c, "backfill", "\"backfill\" must be an object");
    if (mparse_check_keys(c, obj, backfill_keys) != 0)
        return -1;
    struct { const char *key; long *dst; long lo, hi; } ints[] = {
        {"batch_rows", &bf->batch_rows, 1, 10000000}, {"min_rows", &bf->min_rows, 1, 10000000},
        {"max_rows", &bf->max_rows, 1, 10000000}, {"target_ms", &bf->target_ms, 1, 60000},
        {"max_rows_per_sec", &bf->max_rows_per_sec, 0, 1000000000},
        {"lock_timeout_ms", &bf->lock_timeout_ms, 1, 600000},
        {"workers", &bf->workers, (long)workers->min, (long)workers->max}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        json_t *v = json_object_get(obj, ints[i].key);
        if (!v)
            continue;
        json_int_t x = json_integer_value(v);
        if (x < ints[i].lo || x > ints[i].hi)
            return mparse_fail_at(c, ints[i].key, "\"%s\" must be between %ld and %ld", ints[i].key,
                                  ints[i].lo, ints[i].hi);
        *ints[i].dst = (long)x;
    }
    json_t *sr = json_object_get(obj, "sleep_ratio");
    if (sr) {
        bf->sleep_ratio = json_number_value(sr);
        if (!(bf->sleep_ratio >= 0.0 && bf->sleep_ratio <= 100.0))
            return mparse_fail_at(c, "sleep_ratio", "\"sleep_ratio\" must be between 0 and 100");
    }
    json_t *ab = json_object_get(obj, "app_p99_budget");
    if (ab) {
        bf->app_p99_budget = json_number_value(ab);
        if (!(bf->app_p99_budget >= budget->min && bf->app_p99_budget <= budget->max))
            return mparse_fail_at(c, "app_p99_budget", "\"app_p99_budget\" must be between %g and %g", budget->min,
                                  budget->max);
    }
    if (bf->min_rows > bf->max_rows)
        return mparse_fail_at(c, "min_rows", "\"min_rows\" is larger than \"max_rows\"");
    return 0;
}

static int check_mig_name(struct parse_ctx *c, const char *key, const char *s)
{
    size_t n = strlen(s);
    /* Longer names are whole too: the identifiers made from a name use its
     * tag (migration_names.h), which always fits. */
    if (n == 0 || n > MIG_NAME_MAX)
        return mparse_fail_at(c, key, "\"%s\" must be 1 to %d characters (it is what releases declare as "
                              "pgtandem.version)", key, MIG_NAME_MAX);
    for (const char *p = s; *p; p++)
        if (!mig_name_char_ok(*p))
            return mparse_fail_at(c, key, "\"%s\" may only contain letters, digits, '_', '-' and '.' (got '%c')",
                                  key, *p);
    return 0;
}

void mig_checksum(const char *text, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(text, len, md, &mdlen, EVP_sha256(), NULL);
    for (unsigned int i = 0; i < mdlen && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    out[64] = '\0';
}

/* "merges": what mig_merge wrote; each entry is checked, not trusted. */
static int parse_merges(struct parse_ctx *c, json_t *merges, struct migration *m)
{
    if (!merges)
        return 0;
    if (!json_is_array(merges) || json_array_size(merges) < 2)
        return mparse_fail_at(c, "merges", "\"merges\" must be an array of at least two migrations");
    size_t i;
    json_t *e;
    json_array_foreach(merges, i, e) {
        json_t *parent = json_object_get(e, "parent");
        const char *name = json_string_value(json_object_get(e, "name"));
        if (!json_is_object(e) || !name || !json_is_string(json_object_get(e, "checksum")) ||
            !json_is_string(json_object_get(e, "json")) || !(json_is_null(parent) || json_is_string(parent)) ||
            check_mig_name(c, "merges", name))
            return mparse_fail_at(c, "merges", "merges[%zu] must be {name, parent, checksum, json}", i);
    }
    m->merges = json_dumps(merges, JSON_COMPACT);
    return m->merges ? 0 : mparse_fail_at(c, NULL, "out of memory");
}

static int parse_top(struct parse_ctx *c, json_t *root, struct migration *m)
{
    c->path[0] = '\0';
    if (!json_is_object(root))
        return mparse_fail_at(c, NULL, "a migration must be a JSON object");
    if (mparse_check_keys(c, root, top_keys) != 0)
        return -1;
    m->name = mparse_dup_str(root, "name");
    m->parent = mparse_dup_str(root, "parent");
    if (check_mig_name(c, "name", m->name) || (m->parent && check_mig_name(c, "parent", m->parent)))
        return -1;
    if (m->parent && strcmp(m->parent, m->name) == 0)
        return mparse_fail_at(c, "parent", "a migration cannot be its own parent");
    json_t *ops = json_object_get(root, "operations");
    if (!json_is_array(ops) || json_array_size(ops) == 0 || json_array_size(ops) > MAX_OPS)
        return mparse_fail_at(c, "operations", "\"operations\" must be an array of 1 to %d operations", MAX_OPS);
    m->nops = json_array_size(ops);
    m->ops = calloc(m->nops, sizeof *m->ops);
    if (!m->ops)
        return mparse_fail_at(c, NULL, "out of memory");
    for (size_t i = 0; i < m->nops; i++)
        if (mparse_op(c, json_array_get(ops, i), i, &m->ops[i]) != 0)
            return -1;
    if (parse_merges(c, json_object_get(root, "merges"), m) != 0)
        return -1;
    if (mig_table_renames_first(m, c->err, c->errlen) != 0)
        return -1;
    mig_column_renames_joined(m);
    return parse_backfill(c, json_object_get(root, "backfill"), &m->backfill);
}

static int parse_text(const char *text, size_t len, const char *file, struct migration *out,
                      char *err, size_t errlen)
{
    out->file = strdup(file ? file : "<input>");
    struct parse_ctx c = {.file = out->file, .text = NULL, .err = err, .errlen = errlen};
    if (memchr(text, '\0', len)) {
        mparse_fail_at(&c, NULL, "the file contains a NUL byte");
        return -1;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err, errlen, "%s:%d:%d: invalid JSON: %s", out->file, jerr.line, jerr.column, jerr.text);
        return -1;
    }
    out->json = strndup(text, len);
    c.text = out->json;
    mig_checksum(text, len, out->checksum);
    int rc = parse_top(&c, root, out);
    json_decref(root);
    return rc;
}

/* On failure nothing stays allocated: callers need not free a migration
 * that did not parse (freeing it anyway is harmless). */
int mig_parse(const char *text, size_t len, const char *file, struct migration *out,
              char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (parse_text(text, len, file, out, err, errlen) == 0)
        return 0;
    mig_free(out);
    memset(out, 0, sizeof *out);
    return -1;
}

char *mig_read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    return file_read_all(path, "migration file", MAX_FILE, 0, len, err, errlen);
}

int mig_load_file(const char *path, struct migration *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    size_t n;
    char *buf = mig_read_file(path, &n, err, errlen);
    if (!buf)
        return -1;
    int rc = mig_parse(buf, n, path, out, err, errlen);
    free(buf);
    return rc;
}

static void free_column(struct mig_column *c)
{
    free(c->name);
    free(c->type);
    free(c->default_expr);
    free(c->check);
    free(c->references);
    free(c->comment);
    free(c->identity);
    free(c->generated);
}

static void free_strs(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void mig_ops_renumber(struct migration *m, size_t from, size_t to)
{
    for (size_t k = from; k <= to && k < m->nops; k++)
        m->ops[k].index = (int)k;
}

void mig_op_free(struct mig_op *op)
{
    free(op->schema); free(op->table); free(op->from); free(op->to); free(op->column);
    free(op->type); free(op->up); free(op->down); free(op->default_expr); free(op->check);
    free(op->name); free(op->method); free(op->where); free(op->constraint_type);
    free(op->ref_table); free(op->on_delete); free(op->on_update); free(op->storage_parameters);
    free(op->value); free(op->before); free(op->after); free(op->identity);
    free_strs(op->keys, op->nkeys);
    free_strs(op->include, op->ninclude);
    free_strs(op->columns, op->ncolumns);
    free_strs(op->ref_columns, op->nref_columns);
    free_column(&op->col);
    for (size_t i = 0; i < op->ncols; i++)
        free_column(&op->cols[i]);
    free(op->cols);
    for (size_t i = 0; i < op->ncons; i++) {
        struct mig_constraint *k = &op->cons[i];
        free(k->type); free(k->name); free(k->check); free(k->ref_table); free(k->on_delete); free(k->on_update);
        free_strs(k->columns, k->ncolumns);
        free_strs(k->ref_columns, k->nref_columns);
    }
    free(op->cons);
}

void mig_free(struct migration *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nops; i++)
        mig_op_free(&m->ops[i]);
    free(m->ops);
    free(m->file);
    free(m->name);
    free(m->parent);
    free(m->json);
    free(m->merges);
    memset(m, 0, sizeof *m);
}

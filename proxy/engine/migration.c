/* Migration file parser and structural validator. Every key, type and name in
 * an (untrusted) migration file is checked here; anything unexpected is an
 * error naming the file, line, column, operation index and key, with a "did
 * you mean" for near misses. Nothing here talks to a database. */
#include "migration.h"
#include "migration_sql.h"
#include "settings.h"
#include "sql_fragment.h"
#include "sql_script.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NAME 63     /* NAMEDATALEN - 1: longer identifiers get truncated silently */
#define MAX_MIG_NAME 40 /* leaves room for the "pgtandem_" version schema prefix */
#define MAX_OPS 1000
#define MAX_FILE (16 * 1024 * 1024)

enum key_type { K_STR, K_BOOL, K_STRS, K_OBJ, K_COLS, K_STR_OR_NULL, K_INT, K_NUM, K_STR_OR_OBJ };

struct key_spec {
    const char *key;
    enum key_type type;
    int required;
};

struct op_spec {
    const char *name;
    enum mig_op_kind kind;
    const struct key_spec *keys;
};

struct parse_ctx {
    const char *file;
    const char *text;
    char *err;
    size_t errlen;
    char path[160];     /* e.g. operations[2].rename_column */
};

static const struct key_spec rename_column_keys[] = {
    {"schema", K_STR, 0}, {"table", K_STR, 1}, {"from", K_STR, 1}, {"to", K_STR, 1},
    {"type", K_STR, 0}, {"up", K_STR, 0}, {"down", K_STR, 0}, {"default", K_STR_OR_NULL, 0},
    {"copy", K_BOOL, 0}, {NULL, 0, 0}};
static const struct key_spec add_column_keys[] = {
    {"schema", K_STR, 0}, {"table", K_STR, 1}, {"column", K_OBJ, 1}, {"up", K_STR, 0}, {NULL, 0, 0}};
static const struct key_spec alter_column_keys[] = {
    {"schema", K_STR, 0}, {"table", K_STR, 1}, {"column", K_STR, 1}, {"type", K_STR, 0},
    {"nullable", K_BOOL, 0}, {"default", K_STR_OR_NULL, 0}, {"check", K_STR, 0},
    {"unique", K_BOOL, 0}, {"up", K_STR, 0}, {"down", K_STR, 0}, {NULL, 0, 0}};
static const struct key_spec drop_column_keys[] = {
    {"schema", K_STR, 0}, {"table", K_STR, 1}, {"column", K_STR, 1}, {"down", K_STR, 0}, {NULL, 0, 0}};
static const struct key_spec create_table_keys[] = {
    {"schema", K_STR, 0}, {"table", K_STR, 1}, {"columns", K_COLS, 1}, {"constraints", K_COLS, 0}, {NULL, 0, 0}};
static const struct key_spec drop_table_keys[] = {
    {"schema", K_STR, 0}, {"table", K_STR, 1}, {NULL, 0, 0}};
static const struct key_spec rename_table_keys[] = {
    {"schema", K_STR, 0}, {"from", K_STR, 1}, {"to", K_STR, 1}, {NULL, 0, 0}};
static const struct key_spec create_index_keys[] = {
    {"schema", K_STR, 0}, {"table", K_STR, 1}, {"name", K_STR, 1}, {"columns", K_STRS, 0},
    {"keys", K_STRS, 0}, {"include", K_STRS, 0}, {"storage_parameters", K_STR, 0},
    {"unique", K_BOOL, 0}, {"method", K_STR, 0}, {"where", K_STR, 0}, {NULL, 0, 0}};
static const struct key_spec drop_index_keys[] = {
    {"schema", K_STR, 0}, {"name", K_STR, 1}, {"if_exists", K_BOOL, 0}, {NULL, 0, 0}};
static const struct key_spec create_constraint_keys[] = {
    {"schema", K_STR, 0}, {"table", K_STR, 1}, {"name", K_STR, 0}, {"type", K_STR, 1},
    {"columns", K_STRS, 0}, {"check", K_STR, 0}, {"references", K_OBJ, 0}, {NULL, 0, 0}};
static const struct key_spec table_constraint_keys[] = {
    {"type", K_STR, 1}, {"name", K_STR, 0}, {"columns", K_STRS, 0}, {"check", K_STR, 0},
    {"references", K_OBJ, 0}, {NULL, 0, 0}};
static const struct key_spec sql_keys[] = {
    {"up", K_STR, 1}, {"down", K_STR, 0}, {"on", K_STR, 0}, {NULL, 0, 0}};
static const struct key_spec drop_constraint_keys[] = {
    {"schema", K_STR, 0}, {"table", K_STR, 1}, {"name", K_STR, 1}, {"if_exists", K_BOOL, 0}, {NULL, 0, 0}};
static const struct key_spec rename_constraint_keys[] = {
    {"schema", K_STR, 0}, {"table", K_STR, 1}, {"from", K_STR, 1}, {"to", K_STR, 1}, {NULL, 0, 0}};
static const struct key_spec set_replica_identity_keys[] = {
    {"schema", K_STR, 0}, {"table", K_STR, 1}, {"identity", K_STR_OR_OBJ, 1}, {NULL, 0, 0}};
static const struct key_spec replica_index_keys[] = {{"index", K_STR, 1}, {NULL, 0, 0}};
static const struct key_spec add_enum_value_keys[] = {
    {"schema", K_STR, 0}, {"type", K_STR, 1}, {"value", K_STR, 1}, {"before", K_STR, 0}, {"after", K_STR, 0},
    {"if_not_exists", K_BOOL, 0}, {NULL, 0, 0}};
static const struct key_spec rename_enum_value_keys[] = {
    {"schema", K_STR, 0}, {"type", K_STR, 1}, {"from", K_STR, 1}, {"to", K_STR, 1}, {NULL, 0, 0}};
static const struct key_spec column_keys[] = {
    {"name", K_STR, 1}, {"type", K_STR, 1}, {"nullable", K_BOOL, 0}, {"default", K_STR, 0},
    {"check", K_STR, 0}, {"unique", K_BOOL, 0}, {"primary_key", K_BOOL, 0},
    {"references", K_STR, 0}, {"comment", K_STR, 0}, {"identity", K_STR, 0}, {"generated", K_STR, 0},
    {NULL, 0, 0}};
static const struct key_spec references_keys[] = {
    {"table", K_STR, 1}, {"columns", K_STRS, 1}, {"on_delete", K_STR, 0}, {"on_update", K_STR, 0},
    {NULL, 0, 0}};
static const struct key_spec top_keys[] = {
    {"name", K_STR, 1}, {"parent", K_STR_OR_NULL, 0}, {"operations", K_OBJ, 1},
    {"backfill", K_OBJ, 0}, {"merges", K_OBJ, 0}, {NULL, 0, 0}};
static const struct key_spec backfill_keys[] = {
    {"batch_rows", K_INT, 0}, {"min_rows", K_INT, 0}, {"max_rows", K_INT, 0},
    {"target_ms", K_INT, 0}, {"max_rows_per_sec", K_INT, 0}, {"sleep_ratio", K_NUM, 0},
    {"lock_timeout_ms", K_INT, 0}, {"workers", K_INT, 0}, {"app_p99_budget", K_NUM, 0}, {NULL, 0, 0}};

static const struct op_spec op_specs[] = {
    {"rename_column", MIG_RENAME_COLUMN, rename_column_keys},
    {"add_column", MIG_ADD_COLUMN, add_column_keys},
    {"alter_column", MIG_ALTER_COLUMN, alter_column_keys},
    {"drop_column", MIG_DROP_COLUMN, drop_column_keys},
    {"create_table", MIG_CREATE_TABLE, create_table_keys},
    {"drop_table", MIG_DROP_TABLE, drop_table_keys},
    {"rename_table", MIG_RENAME_TABLE, rename_table_keys},
    {"create_index", MIG_CREATE_INDEX, create_index_keys},
    {"drop_index", MIG_DROP_INDEX, drop_index_keys},
    {"create_constraint", MIG_CREATE_CONSTRAINT, create_constraint_keys},
    {"sql", MIG_SQL, sql_keys},
    {"drop_constraint", MIG_DROP_CONSTRAINT, drop_constraint_keys},
    {"rename_constraint", MIG_RENAME_CONSTRAINT, rename_constraint_keys},
    {"set_replica_identity", MIG_SET_REPLICA_IDENTITY, set_replica_identity_keys},
    {"add_enum_value", MIG_ADD_ENUM_VALUE, add_enum_value_keys},
    {"rename_enum_value", MIG_RENAME_ENUM_VALUE, rename_enum_value_keys},
};
#define N_OP_SPECS (sizeof(op_specs) / sizeof(op_specs[0]))

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
    char file[160];
    snprintf(file, sizeof file, "%s..%s (merged)", list[0].name, list[n - 1].name);
    int rc = text ? mig_parse(text, strlen(text), file, out, err, errlen) : (snprintf(err, errlen, "out of memory"), -1);
    free(text);
    return rc;
}

int mig_revert_blocker(const struct migration *m, char *why, size_t n)
{
    for (size_t i = 0; i < m->nops; i++) {
        const struct mig_op *op = &m->ops[i];
        if (op->kind == MIG_DROP_COLUMN && !op->down) {
            snprintf(why, n, "operations[%zu].drop_column: rows the new release writes get no \"%s\" (it has no "
                     "\"down\"), so a revert could not give them back to the old shape", i, op->column ? op->column : "?");
            return (int)i;
        }
    }
    return -1;
}

const char *mig_op_name(enum mig_op_kind kind)
{
    for (size_t i = 0; i < N_OP_SPECS; i++)
        if (op_specs[i].kind == kind)
            return op_specs[i].name;
    return "?";
}

size_t mig_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return (size_t)-1;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = diag + cost;
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Finds where a quoted token first appears so errors can point at a line even
 * though jansson does not keep positions for decoded values. */
static void locate(const struct parse_ctx *c, const char *token, int *line, int *col)
{
    *line = 0;
    *col = 0;
    if (!c->text || !token)
        return;
    char quoted[80];
    if (snprintf(quoted, sizeof quoted, "\"%s\"", token) >= (int)sizeof quoted)
        return;
    const char *hit = strstr(c->text, quoted);
    if (hit)
        mig_text_pos(c->text, hit, line, col);
}

void mig_text_pos(const char *text, const char *at, int *line, int *col)
{
    const char *line_start = text;
    *line = 1;
    for (const char *p = text; p < at; p++)
        if (*p == '\n') {
            (*line)++;
            line_start = p + 1;
        }
    *col = (int)(at - line_start) + 1;
}

__attribute__((format(printf, 3, 4)))
static int fail_at(struct parse_ctx *c, const char *token, const char *fmt, ...)
{
    int line, col;
    locate(c, token, &line, &col);
    size_t off = 0;
    if (line > 0)
        off = (size_t)snprintf(c->err, c->errlen, "%s:%d:%d: ", c->file, line, col);
    else
        off = (size_t)snprintf(c->err, c->errlen, "%s: ", c->file);
    if (off < c->errlen && c->path[0])
        off += (size_t)snprintf(c->err + off, c->errlen - off, "%s: ", c->path);
    if (off < c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err + off, c->errlen - off, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static const char *closest(const char *word, const char *const *cands, size_t n)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        size_t d = mig_edit_distance(word, cands[i]);
        if (d < best_d) {
            best_d = d;
            best = cands[i];
        }
    }
    size_t limit = strlen(word) / 3 + 1;
    return best_d <= (limit < 3 ? limit : 3) ? best : NULL;
}

static int unknown_key(struct parse_ctx *c, const char *key, const struct key_spec *spec)
{
    const char *names[32] = {0};
    size_t n = 0;
    for (; n < 32 && spec[n].key; n++)
        names[n] = spec[n].key;
    const char *hint = closest(key, names, n);
    if (hint)
        return fail_at(c, key, "unknown key \"%s\" (did you mean \"%s\"?)", key, hint);
    char list[256] = "";
    for (size_t i = 0; i < n; i++) {
        strncat(list, names[i], sizeof list - strlen(list) - 1);
        if (i + 1 < n)
            strncat(list, ", ", sizeof list - strlen(list) - 1);
    }
    return fail_at(c, key, "unknown key \"%s\" (allowed: %s)", key, list);
}

static const char *type_label(enum key_type t)
{
    switch (t) {
    case K_STR: return "a string";
    case K_BOOL: return "true or false";
    case K_STRS: return "an array of strings";
    case K_OBJ: return "an object";
    case K_COLS: return "an array of column objects";
    case K_STR_OR_NULL: return "a string or null";
    case K_INT: return "an integer";
    case K_NUM: return "a number";
    case K_STR_OR_OBJ: return "a string or an object";
    }
    return "?";
}

static int type_ok(json_t *v, enum key_type t)
{
    switch (t) {
    case K_STR: return json_is_string(v);
    case K_BOOL: return json_is_boolean(v);
    case K_STRS: case K_COLS: return json_is_array(v);
    case K_OBJ: return json_is_object(v) || json_is_array(v);
    case K_STR_OR_NULL: return json_is_string(v) || json_is_null(v);
    case K_INT: return json_is_integer(v);
    case K_NUM: return json_is_number(v);
    case K_STR_OR_OBJ: return json_is_string(v) || json_is_object(v);
    }
    return 0;
}

/* Checks that obj has only known keys, each of the right JSON type, and all
 * required keys. */
static int check_keys(struct parse_ctx *c, json_t *obj, const struct key_spec *spec)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        const struct key_spec *k = spec;
        while (k->key && strcmp(k->key, key) != 0)
            k++;
        if (!k->key)
            return unknown_key(c, key, spec);
        if (!type_ok(val, k->type))
            return fail_at(c, key, "\"%s\" must be %s", key, type_label(k->type));
        if (json_is_string(val) && json_string_length(val) == 0)
            return fail_at(c, key, "\"%s\" must not be empty", key);
    }
    for (const struct key_spec *k = spec; k->key; k++)
        if (k->required && !json_object_get(obj, k->key))
            return fail_at(c, NULL, "missing required key \"%s\"", k->key);
    return 0;
}

static char *dup_str(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

static int get_tristate(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : -1;
}

/* Identifiers are quoted wherever they reach SQL; this only refuses what
 * Postgres would silently mangle (truncation) or what can never be right. */
static int check_ident(struct parse_ctx *c, const char *key, const char *s)
{
    if (!s)
        return 0;
    size_t n = strlen(s);
    if (n == 0 || n > MAX_NAME)
        return fail_at(c, key, "\"%s\" must be 1 to %d bytes long (got %zu)", key, MAX_NAME, n);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return fail_at(c, key, "\"%s\" contains a control character", key);
    return 0;
}

/* What an error about a fragment points at: the fragment itself when it
 * appears in the file as written (no escapes), else its key. */
static const char *fragment_token(const struct parse_ctx *c, const char *key, const char *s)
{
    char quoted[80];
    if (!c->text || strpbrk(s, "\"\\") || snprintf(quoted, sizeof quoted, "\"%s\"", s) >= (int)sizeof quoted)
        return key;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20)
            return key;
    return strstr(c->text, quoted) ? s : key;
}

/* Type names cannot be quoted as one identifier ("numeric(10,2)", "timestamp
 * with time zone", "text[]"), so they are restricted to the characters a type
 * name can contain and must parse as exactly one type name; the live catalog
 * check resolves them afterwards. */
static int check_type(struct parse_ctx *c, const char *key, const char *s)
{
    if (!s)
        return 0;
    int depth = 0;
    if (strlen(s) > 128)
        return fail_at(c, key, "\"%s\": type \"%.40s...\" is too long", key, s);
    for (const char *p = s; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '(') depth++;
        else if (ch == ')') { if (--depth < 0) break; }
        else if (!(isalnum(ch) || ch == '_' || ch == ' ' || ch == ',' || ch == '.' ||
                   ch == '[' || ch == ']' || ch == '"'))
            return fail_at(c, key, "\"%s\": type \"%s\" contains '%c'; use a plain type name such as "
                           "\"jsonb\" or \"numeric(10,2)\"", key, s, ch);
    }
    if (depth != 0)
        return fail_at(c, key, "\"%s\": type \"%s\" has unbalanced parentheses", key, s);
    enum sql_fragment_result r = sql_fragment_type(s);
    if (r == SQL_FRAGMENT_OOM)
        return fail_at(c, key, "out of memory");
    if (r != SQL_FRAGMENT_OK)
        return fail_at(c, fragment_token(c, key, s), "\"%s\": \"%s\" is not one type name (such as \"jsonb\", \"numeric(10,2)\" "
                       "or \"timestamp with time zone\")", key, s);
    return 0;
}

/* An SQL expression (a default, up, down, check, where) is pasted into DDL
 * and trigger bodies as code: it must be exactly one expression, so it can
 * add no statement, clause or unbalanced parenthesis to what surrounds it. */
static int check_expr(struct parse_ctx *c, const char *key, const char *s)
{
    if (!s)
        return 0;
    enum sql_fragment_result r = sql_fragment_expr(s);
    if (r == SQL_FRAGMENT_OOM)
        return fail_at(c, key, "out of memory");
    if (r != SQL_FRAGMENT_OK)
        return fail_at(c, fragment_token(c, key, s), "\"%s\" must be exactly one SQL expression, with balanced parentheses and no "
                       "trailing \"--\" comment (got \"%.80s%s\")", key, s, strlen(s) > 80 ? "..." : "");
    return 0;
}

/* A column's "references": "table" or "table(column)", each part an
 * identifier (both are quoted when the DDL is written). */
static int check_reference(struct parse_ctx *c, const char *s)
{
    if (!s)
        return 0;
    const char *open = strchr(s, '(');
    size_t tlen = open ? (size_t)(open - s) : strlen(s);
    size_t clen = open ? strlen(open + 1) : 0;
    int ok = tlen > 0 && tlen <= MAX_NAME && !strchr(s, '"') && !isspace((unsigned char)s[0]) &&
             !isspace((unsigned char)s[tlen - 1]);
    if (ok && open)
        ok = clen >= 2 && clen - 1 <= MAX_NAME && open[clen] == ')' && !memchr(open + 1, '(', clen) &&
             !memchr(open + 1, ')', clen - 1) && !isspace((unsigned char)open[1]) &&
             !isspace((unsigned char)open[clen - 1]);
    else if (ok)
        ok = !strchr(s, ')');
    for (const unsigned char *p = (const unsigned char *)s; ok && *p; p++)
        ok = *p >= 0x20 && *p != 0x7f;
    if (!ok)
        return fail_at(c, "references", "\"references\" must be \"table\" or \"table(column)\" "
                       "(got \"%.80s\")", s);
    return 0;
}

/* A list of 1 to 32 strings; identifiers unless they are SQL (index keys). */
static int dup_list(struct parse_ctx *c, json_t *arr, const char *key, char ***out, size_t *n, int idents)
{
    size_t len = json_array_size(arr);
    if (len == 0 || len > 32)
        return fail_at(c, key, "\"%s\" must list 1 to 32 names", key);
    *out = calloc(len, sizeof(char *));
    if (!*out)
        return fail_at(c, key, "out of memory");
    *n = len;
    for (size_t i = 0; i < len; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_string(v))
            return fail_at(c, key, "\"%s\"[%zu] must be a string", key, i);
        (*out)[i] = strdup(json_string_value(v));
        if (!(*out)[i] || (idents && check_ident(c, key, (*out)[i]) != 0))
            return (*out)[i] ? -1 : fail_at(c, key, "out of memory");
    }
    return 0;
}

static int dup_strs(struct parse_ctx *c, json_t *arr, const char *key, char ***out, size_t *n)
{
    return dup_list(c, arr, key, out, n, 1);
}

static int parse_column(struct parse_ctx *c, json_t *obj, struct mig_column *col)
{
    if (!json_is_object(obj))
        return fail_at(c, NULL, "a column must be an object");
    if (check_keys(c, obj, column_keys) != 0)
        return -1;
    col->name = dup_str(obj, "name");
    col->type = dup_str(obj, "type");
    col->default_expr = dup_str(obj, "default");
    col->check = dup_str(obj, "check");
    col->references = dup_str(obj, "references");
    col->comment = dup_str(obj, "comment");
    col->nullable = get_tristate(obj, "nullable");
    col->unique = get_tristate(obj, "unique");
    col->primary_key = get_tristate(obj, "primary_key");
    col->identity = dup_str(obj, "identity");
    col->generated = dup_str(obj, "generated");
    if (check_ident(c, "name", col->name) || check_type(c, "type", col->type))
        return -1;
    if (col->identity && strcmp(col->identity, "always") != 0 && strcmp(col->identity, "by_default") != 0)
        return fail_at(c, "identity", "\"identity\" must be \"always\" or \"by_default\" (got \"%s\")", col->identity);
    if ((col->identity || col->generated) && col->default_expr)
        return fail_at(c, col->identity ? "identity" : "generated", "an %s column cannot have a \"default\"",
                       col->identity ? "identity" : "generated");
    if (col->identity && col->generated)
        return fail_at(c, "generated", "a column is either \"identity\" or \"generated\", not both");
    return check_reference(c, col->references) || check_expr(c, "default", col->default_expr) ||
           check_expr(c, "check", col->check) || check_expr(c, "generated", col->generated);
}

static int parse_columns(struct parse_ctx *c, json_t *arr, struct mig_op *op)
{
    size_t n = json_array_size(arr);
    if (n == 0 || n > 1600)
        return fail_at(c, "columns", "\"columns\" must list 1 to 1600 columns");
    op->cols = calloc(n, sizeof *op->cols);
    if (!op->cols)
        return fail_at(c, NULL, "out of memory");
    op->ncols = n;
    size_t base = strlen(c->path);
    for (size_t i = 0; i < n; i++) {
        snprintf(c->path + base, sizeof c->path - base, ".columns[%zu]", i);
        if (parse_column(c, json_array_get(arr, i), &op->cols[i]) != 0)
            return -1;
        for (size_t j = 0; j < i; j++)
            if (op->cols[j].name && op->cols[i].name && strcmp(op->cols[j].name, op->cols[i].name) == 0)
                return fail_at(c, op->cols[i].name, "column \"%s\" is listed twice", op->cols[i].name);
    }
    c->path[base] = '\0';
    return 0;
}

/* ON DELETE / ON UPDATE, written as Postgres spells them; upper-cased in
 * place so the plan can write it as it is. */
static int check_fk_action(struct parse_ctx *c, const char *key, char *action)
{
    if (!action)
        return 0;
    for (char *p = action; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    for (const char *letter = "arcnd"; *letter; letter++)
        if (strcmp(action, mig_fk_action(*letter)) == 0)
            return 0;
    return fail_at(c, key, "\"%s\" must be one of NO ACTION, RESTRICT, CASCADE, SET NULL, SET DEFAULT (not \"%s\")",
                   key, action);
}

/* A foreign key's "references" object, into the fields of a
 * create_constraint or of a create_table's constraint. */
struct ref_out {
    char **table, ***columns, **on_delete, **on_update;
    size_t *ncolumns;
};

static int parse_references(struct parse_ctx *c, json_t *obj, const struct ref_out *o)
{
    if (!obj)
        return 0;
    if (!json_is_object(obj))
        return fail_at(c, "references", "\"references\" must be an object {table, columns}");
    if (check_keys(c, obj, references_keys) != 0)
        return -1;
    *o->table = dup_str(obj, "table");
    *o->on_delete = dup_str(obj, "on_delete");
    *o->on_update = dup_str(obj, "on_update");
    if (check_ident(c, "table", *o->table) || check_fk_action(c, "on_delete", *o->on_delete) ||
        check_fk_action(c, "on_update", *o->on_update))
        return -1;
    return dup_strs(c, json_object_get(obj, "columns"), "columns", o->columns, o->ncolumns);
}

static const char *const constraint_kinds[] = {"check", "unique", "foreign_key", "primary_key"};

/* The kind of a constraint's "type" (its index in constraint_kinds), or -1
 * after failing with a hint. */
static int constraint_kind(struct parse_ctx *c, const char *type)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(type, constraint_kinds[i]) == 0)
            return i;
    const char *hint = closest(type, constraint_kinds, 4);
    fail_at(c, "type", "unknown constraint type \"%s\" (%s%s%s)", type,
            hint ? "did you mean \"" : "use check, unique, foreign_key or primary_key", hint ? hint : "",
            hint ? "\"?" : "");
    return -1;
}

/* What each kind of constraint needs besides its type. */
static int constraint_needs(struct parse_ctx *c, json_t *body, int k, const char *check, char **columns)
{
    if (k == 0 && !check)
        return fail_at(c, "check", "a check constraint needs \"check\"");
    if (k > 0 && k < 4 && !columns)
        return fail_at(c, "columns", "a %s constraint needs \"columns\"", constraint_kinds[k]);
    if (k == 2 && !json_object_get(body, "references"))
        return fail_at(c, "references", "a foreign_key constraint needs \"references\"");
    if (k != 2 && json_object_get(body, "references"))
        return fail_at(c, "references", "only a foreign_key constraint has \"references\"");
    return 0;
}

static int parse_table_constraint(struct parse_ctx *c, json_t *obj, struct mig_constraint *k)
{
    if (!json_is_object(obj))
        return fail_at(c, NULL, "a constraint must be an object");
    if (check_keys(c, obj, table_constraint_keys) != 0)
        return -1;
    k->type = dup_str(obj, "type");
    k->name = dup_str(obj, "name");
    k->check = dup_str(obj, "check");
    if (check_ident(c, "name", k->name) || check_expr(c, "check", k->check))
        return -1;
    int kind = constraint_kind(c, k->type);
    if (kind < 0)
        return -1;
    json_t *cols = json_object_get(obj, "columns");
    if (cols && dup_strs(c, cols, "columns", &k->columns, &k->ncolumns))
        return -1;
    if (constraint_needs(c, obj, kind, k->check, k->columns) != 0)
        return -1;
    struct ref_out o = {&k->ref_table, &k->ref_columns, &k->on_delete, &k->on_update, &k->nref_columns};
    return parse_references(c, json_object_get(obj, "references"), &o);
}

/* create_table's "constraints": each a table constraint, as CREATE TABLE
 * writes them after the columns. */
static int parse_table_constraints(struct parse_ctx *c, json_t *arr, struct mig_op *op)
{
    if (!arr)
        return 0;
    size_t n = json_array_size(arr);
    if (n == 0 || n > 64)
        return fail_at(c, "constraints", "\"constraints\" must list 1 to 64 constraints");
    op->cons = calloc(n, sizeof *op->cons);
    if (!op->cons)
        return fail_at(c, NULL, "out of memory");
    op->ncons = n;
    size_t base = strlen(c->path);
    for (size_t i = 0; i < n; i++) {
        snprintf(c->path + base, sizeof c->path - base, ".constraints[%zu]", i);
        if (parse_table_constraint(c, json_array_get(arr, i), &op->cons[i]) != 0)
            return -1;
    }
    c->path[base] = '\0';
    int pk = 0;
    for (size_t i = 0; i < op->ncols; i++)
        pk += op->cols[i].primary_key == 1;
    for (size_t i = 0; i < n; i++)
        pk += op->cons[i].type && strcmp(op->cons[i].type, "primary_key") == 0;
    if (pk > 1)
        return fail_at(c, "primary_key", "a table has one primary key (%d given)", pk);
    return 0;
}

static int parse_op_fields(struct parse_ctx *c, json_t *body, struct mig_op *op)
{
    op->schema = dup_str(body, "schema");
    if (!op->schema)
        op->schema = strdup("public");
    op->table = dup_str(body, "table");
    op->from = dup_str(body, "from");
    op->to = dup_str(body, "to");
    op->type = dup_str(body, "type");
    op->up = dup_str(body, "up");
    op->down = dup_str(body, "down");
    op->check = dup_str(body, "check");
    op->name = dup_str(body, "name");
    op->method = dup_str(body, "method");
    op->where = dup_str(body, "where");
    op->nullable = get_tristate(body, "nullable");
    op->unique = get_tristate(body, "unique");
    op->copy = get_tristate(body, "copy") == 1;
    op->if_exists = get_tristate(body, "if_exists") == 1;
    json_t *def = json_object_get(body, "default");
    op->has_default = def != NULL;
    op->default_expr = json_is_string(def) ? strdup(json_string_value(def)) : NULL;
    json_t *column = json_object_get(body, "column");
    if (json_is_string(column))
        op->column = strdup(json_string_value(column));
    if (check_ident(c, "schema", op->schema) || check_ident(c, "table", op->table) ||
        check_ident(c, "from", op->from) || check_ident(c, "to", op->to) ||
        check_ident(c, "column", op->column) || check_ident(c, "name", op->name) ||
        check_ident(c, "method", op->method))
        return -1;
    return 0;
}

static int check_method(struct parse_ctx *c, const char *method)
{
    static const char *const methods[] = {"btree", "hash", "gin", "gist", "spgist", "brin"};
    if (!method)
        return 0;
    for (size_t i = 0; i < 6; i++)
        if (strcmp(method, methods[i]) == 0)
            return 0;
    const char *hint = closest(method, methods, 6);
    return fail_at(c, "method", "unknown index method \"%s\"%s%s%s", method,
                   hint ? " (did you mean \"" : "", hint ? hint : "", hint ? "\"?)" : "");
}

/* The number of index keys of prefix + text + suffix, a CREATE INDEX, when
 * it parses as one with only the allowed fields; else -1, -2 out of memory. */
static int index_stmt_keys(const char *prefix, const char *text, const char *suffix, const char *const *allowed)
{
    size_t n = text ? strlen(prefix) + strlen(text) + strlen(suffix) + 1 : 0;
    char *sql = n ? malloc(n) : NULL;
    if (!sql)
        return -2;
    snprintf(sql, n, "%s%s%s", prefix, text, suffix);
    int keys = sql_index_stmt_params(sql, allowed);
    free(sql);
    return keys;
}

/* One index key as SQL ("lower(claim)", "claim text_pattern_ops", "created_at
 * DESC"): it must parse, inside CREATE INDEX, as exactly one key and nothing
 * else, so it cannot carry a WHERE, an INCLUDE or another statement. */
static int check_index_key(struct parse_ctx *c, const char *key)
{
    static const char *const allowed[] = {"idxname", "relation", "accessMethod", "indexParams", NULL};
    /* a trailing comment would swallow ", x)" */
    int keys = index_stmt_keys("CREATE INDEX i ON t (", key, ", x)", allowed);
    if (keys == -2)
        return fail_at(c, "keys", "out of memory");
    if (keys != 2)
        return fail_at(c, "keys", "\"%s\" is not one index key (a column or an expression in parentheses, "
                       "optionally with COLLATE, an operator class, ASC/DESC, NULLS FIRST/LAST)", key);
    return 0;
}

static int check_storage_parameters(struct parse_ctx *c, const char *params)
{
    static const char *const allowed[] = {"idxname", "relation", "accessMethod", "indexParams", "options", NULL};
    int keys = index_stmt_keys("CREATE INDEX i ON t (c) WITH (", params, ")", allowed);
    if (keys == -2)
        return fail_at(c, "storage_parameters", "out of memory");
    if (keys != 1)
        return fail_at(c, "storage_parameters", "\"%s\" is not a list of storage parameters "
                       "(\"fillfactor=70, deduplicate_items=off\")", params);
    return 0;
}

/* create_index keys its index by "columns" (names) or "keys" (SQL), one of
 * the two; "include" lists covering columns. */
static int parse_index_parts(struct parse_ctx *c, json_t *body, struct mig_op *op)
{
    json_t *cols = json_object_get(body, "columns"), *keys = json_object_get(body, "keys");
    json_t *include = json_object_get(body, "include");
    op->storage_parameters = dup_str(body, "storage_parameters");
    if (!cols == !keys)
        return fail_at(c, keys ? "keys" : "columns", "create_index needs \"columns\" (column names) or \"keys\" "
                       "(index keys as SQL), not both");
    if (cols && dup_strs(c, cols, "columns", &op->columns, &op->ncolumns))
        return -1;
    if (keys && dup_list(c, keys, "keys", &op->keys, &op->nkeys, 0))
        return -1;
    for (size_t i = 0; op->keys && i < op->nkeys; i++)
        if (check_index_key(c, op->keys[i]) != 0)
            return -1;
    if (include && dup_strs(c, include, "include", &op->include, &op->ninclude))
        return -1;
    return op->storage_parameters ? check_storage_parameters(c, op->storage_parameters) : 0;
}

/* add_enum_value, rename_enum_value: "type" names the enum type (an
 * identifier, kept in name), not a column's type. */
static int take_enum_type(struct parse_ctx *c, struct mig_op *op)
{
    op->name = op->type;
    op->type = NULL;
    return check_ident(c, "type", op->name);
}

static int parse_enum_value(struct parse_ctx *c, json_t *body, struct mig_op *op)
{
    op->value = dup_str(body, "value");
    op->before = dup_str(body, "before");
    op->after = dup_str(body, "after");
    op->if_not_exists = get_tristate(body, "if_not_exists") == 1;
    if (take_enum_type(c, op) || check_ident(c, "value", op->value) || check_ident(c, "before", op->before) ||
        check_ident(c, "after", op->after))
        return -1;
    if (op->before && op->after)
        return fail_at(c, "after", "give \"before\" or \"after\", not both");
    const char *next = op->before ? op->before : op->after;
    if (next && strcmp(next, op->value) == 0)
        return fail_at(c, op->before ? "before" : "after", "\"%s\" is the value being added", next);
    return 0;
}

/* set_replica_identity's "identity": "default", "full", "nothing", or
 * {"index": name}. */
static int parse_identity(struct parse_ctx *c, json_t *v, struct mig_op *op)
{
    static const char *const kinds[] = {"default", "full", "nothing"};
    if (json_is_object(v)) {
        if (check_keys(c, v, replica_index_keys) != 0)
            return -1;
        op->identity = strdup("index");
        op->name = dup_str(v, "index");
        return check_ident(c, "index", op->name);
    }
    const char *s = json_string_value(v);
    for (size_t i = 0; i < 3; i++)
        if (strcmp(s, kinds[i]) == 0) {
            op->identity = strdup(s);
            return 0;
        }
    const char *hint = closest(s, kinds, 3);
    return fail_at(c, "identity", "\"identity\" must be \"default\", \"full\", \"nothing\" or {\"index\": name} "
                   "(got \"%s\"%s%s%s)", s, hint ? "; did you mean \"" : "", hint ? hint : "", hint ? "\"?" : "");
}

/* Rules that depend on the operation kind beyond key presence/types. */
static int check_op_semantics(struct parse_ctx *c, json_t *body, struct mig_op *op)
{
    switch (op->kind) {
    case MIG_RENAME_COLUMN:
        if (strcmp(op->from, op->to) == 0)
            return fail_at(c, "to", "\"from\" and \"to\" are both \"%s\"", op->to);
        if ((op->up || op->down) && !(op->up && op->down))
            return fail_at(c, op->up ? "up" : "down", "\"up\" and \"down\" must be given together "
                           "so writes through either name reach the other");
        return check_type(c, "type", op->type);
    case MIG_ADD_COLUMN:
        if (parse_column(c, json_object_get(body, "column"), &op->col) != 0)
            return -1;
        if (op->col.primary_key == 1)
            return fail_at(c, "primary_key", "add_column cannot add a primary key; use create_constraint");
        if (op->col.identity || op->col.generated)
            return fail_at(c, op->col.identity ? "identity" : "generated", "add_column cannot add an %s column: "
                           "Postgres writes it into every row under ACCESS EXCLUSIVE; add a plain column with an "
                           "\"up\" (the backfill fills it) or create the table with it",
                           op->col.identity ? "identity" : "generated");
        return 0;
    case MIG_ALTER_COLUMN:
        if (!op->type && op->nullable < 0 && !op->has_default && !op->check && op->unique < 0)
            return fail_at(c, "alter_column", "nothing to change: give type, nullable, default, check or unique");
        /* A type without up/down is a change Postgres makes in the catalog
         * alone (a longer varchar ...), or refused by the plan saying so. */
        if ((op->up || op->down) && !(op->up && op->down))
            return fail_at(c, op->up ? "up" : "down", "\"up\" and \"down\" must be given together");
        return check_type(c, "type", op->type);
    case MIG_RENAME_TABLE:
        if (strcmp(op->from, op->to) == 0)
            return fail_at(c, "to", "\"from\" and \"to\" are both \"%s\"", op->to);
        return 0;
    case MIG_CREATE_TABLE:
        return parse_columns(c, json_object_get(body, "columns"), op) ||
               parse_table_constraints(c, json_object_get(body, "constraints"), op);
    case MIG_CREATE_INDEX:
        return parse_index_parts(c, body, op) || check_method(c, op->method);
    case MIG_CREATE_CONSTRAINT: {
        op->constraint_type = strdup(op->type);
        free(op->type);
        op->type = NULL;
        if (!op->constraint_type)
            return fail_at(c, NULL, "out of memory");
        int k = constraint_kind(c, op->constraint_type);
        if (k < 0)
            return -1;
        json_t *cols = json_object_get(body, "columns");
        if (cols && dup_strs(c, cols, "columns", &op->columns, &op->ncolumns))
            return -1;
        if (constraint_needs(c, body, k, op->check, op->columns) != 0)
            return -1;
        struct ref_out o = {&op->ref_table, &op->ref_columns, &op->on_delete, &op->on_update, &op->nref_columns};
        return parse_references(c, json_object_get(body, "references"), &o);
    }
    case MIG_DROP_CONSTRAINT:
        return 0;   /* if_exists: read with the common keys */
    case MIG_RENAME_CONSTRAINT:
    case MIG_RENAME_ENUM_VALUE:
        if (strcmp(op->from, op->to) == 0)
            return fail_at(c, "to", "\"from\" and \"to\" are both \"%s\"", op->to);
        return op->kind == MIG_RENAME_ENUM_VALUE ? take_enum_type(c, op) : 0;
    case MIG_SET_REPLICA_IDENTITY:
        return parse_identity(c, json_object_get(body, "identity"), op);
    case MIG_ADD_ENUM_VALUE:
        return parse_enum_value(c, body, op);
    case MIG_SQL: {
        json_t *on = json_object_get(body, "on");
        const char *v = on ? json_string_value(on) : "start";
        if (strcmp(v, "start") == 0)
            op->on = MIG_ON_START;
        else if (strcmp(v, "complete") == 0)
            op->on = MIG_ON_COMPLETE;
        else
            return fail_at(c, "on", "\"on\" must be \"start\" or \"complete\" (got \"%s\")", v);
        return 0;
    }
    default:
        return 0;
    }
}

/* The operation's own expressions (a column's are checked with the
 * column); an "sql" operation's up and down are whole statements by design. */
static int check_op_expressions(struct parse_ctx *c, const struct mig_op *op)
{
    if (op->kind == MIG_SQL)
        return 0;
    return check_expr(c, "up", op->up) || check_expr(c, "down", op->down) ||
           check_expr(c, "default", op->default_expr) || check_expr(c, "check", op->check) ||
           check_expr(c, "where", op->where);
}

static int parse_op(struct parse_ctx *c, json_t *entry, size_t idx, struct mig_op *op)
{
    snprintf(c->path, sizeof c->path, "operations[%zu]", idx);
    op->index = (int)idx;
    op->nullable = op->unique = -1;
    if (!json_is_object(entry) || json_object_size(entry) != 1)
        return fail_at(c, NULL, "each operation must be an object with exactly one key, "
                       "e.g. {\"rename_column\": {...}}");
    const char *opname = json_object_iter_key(json_object_iter(entry));
    json_t *body = json_object_get(entry, opname);
    const struct op_spec *spec = NULL;
    const char *names[N_OP_SPECS];
    for (size_t i = 0; i < N_OP_SPECS; i++) {
        names[i] = op_specs[i].name;
        if (strcmp(op_specs[i].name, opname) == 0)
            spec = &op_specs[i];
    }
    if (!spec) {
        const char *hint = closest(opname, names, N_OP_SPECS);
        if (hint)
            return fail_at(c, opname, "unknown operation \"%s\" (did you mean \"%s\"?)", opname, hint);
        return fail_at(c, opname, "unknown operation \"%s\"", opname);
    }
    snprintf(c->path, sizeof c->path, "operations[%zu].%s", idx, spec->name);
    op->kind = spec->kind;
    if (!json_is_object(body))
        return fail_at(c, opname, "the body of \"%s\" must be an object", opname);
    if (check_keys(c, body, spec->keys) != 0 || parse_op_fields(c, body, op) != 0)
        return -1;
    return check_op_semantics(c, body, op) || check_op_expressions(c, op);
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
        return fail_at(c, "backfill", "\"backfill\" must be an object");
    if (check_keys(c, obj, backfill_keys) != 0)
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
            return fail_at(c, ints[i].key, "\"%s\" must be between %ld and %ld", ints[i].key,
                           ints[i].lo, ints[i].hi);
        *ints[i].dst = (long)x;
    }
    json_t *sr = json_object_get(obj, "sleep_ratio");
    if (sr) {
        bf->sleep_ratio = json_number_value(sr);
        if (!(bf->sleep_ratio >= 0.0 && bf->sleep_ratio <= 100.0))
            return fail_at(c, "sleep_ratio", "\"sleep_ratio\" must be between 0 and 100");
    }
    json_t *ab = json_object_get(obj, "app_p99_budget");
    if (ab) {
        bf->app_p99_budget = json_number_value(ab);
        if (!(bf->app_p99_budget >= budget->min && bf->app_p99_budget <= budget->max))
            return fail_at(c, "app_p99_budget", "\"app_p99_budget\" must be between %g and %g", budget->min,
                           budget->max);
    }
    if (bf->min_rows > bf->max_rows)
        return fail_at(c, "min_rows", "\"min_rows\" is larger than \"max_rows\"");
    return 0;
}

static int check_mig_name(struct parse_ctx *c, const char *key, const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_MIG_NAME)
        return fail_at(c, key, "\"%s\" must be 1 to %d characters", key, MAX_MIG_NAME);
    for (const char *p = s; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '-'))
            return fail_at(c, key, "\"%s\" may only contain letters, digits, '_' and '-' (got '%c')",
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
        return fail_at(c, "merges", "\"merges\" must be an array of at least two migrations");
    size_t i;
    json_t *e;
    json_array_foreach(merges, i, e) {
        json_t *parent = json_object_get(e, "parent");
        const char *name = json_string_value(json_object_get(e, "name"));
        if (!json_is_object(e) || !name || !json_is_string(json_object_get(e, "checksum")) ||
            !json_is_string(json_object_get(e, "json")) || !(json_is_null(parent) || json_is_string(parent)) ||
            check_mig_name(c, "merges", name))
            return fail_at(c, "merges", "merges[%zu] must be {name, parent, checksum, json}", i);
    }
    m->merges = json_dumps(merges, JSON_COMPACT);
    return m->merges ? 0 : fail_at(c, NULL, "out of memory");
}

static int parse_top(struct parse_ctx *c, json_t *root, struct migration *m)
{
    c->path[0] = '\0';
    if (!json_is_object(root))
        return fail_at(c, NULL, "a migration must be a JSON object");
    if (check_keys(c, root, top_keys) != 0)
        return -1;
    m->name = dup_str(root, "name");
    m->parent = dup_str(root, "parent");
    if (check_mig_name(c, "name", m->name) || (m->parent && check_mig_name(c, "parent", m->parent)))
        return -1;
    if (m->parent && strcmp(m->parent, m->name) == 0)
        return fail_at(c, "parent", "a migration cannot be its own parent");
    json_t *ops = json_object_get(root, "operations");
    if (!json_is_array(ops) || json_array_size(ops) == 0 || json_array_size(ops) > MAX_OPS)
        return fail_at(c, "operations", "\"operations\" must be an array of 1 to %d operations", MAX_OPS);
    m->nops = json_array_size(ops);
    m->ops = calloc(m->nops, sizeof *m->ops);
    if (!m->ops)
        return fail_at(c, NULL, "out of memory");
    for (size_t i = 0; i < m->nops; i++)
        if (parse_op(c, json_array_get(ops, i), i, &m->ops[i]) != 0)
            return -1;
    if (parse_merges(c, json_object_get(root, "merges"), m) != 0)
        return -1;
    return parse_backfill(c, json_object_get(root, "backfill"), &m->backfill);
}

static int parse_text(const char *text, size_t len, const char *file, struct migration *out,
                      char *err, size_t errlen)
{
    out->file = strdup(file ? file : "<input>");
    struct parse_ctx c = {.file = out->file, .text = NULL, .err = err, .errlen = errlen};
    if (memchr(text, '\0', len)) {
        fail_at(&c, NULL, "the file contains a NUL byte");
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
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(MAX_FILE + 1);
    size_t n = buf ? fread(buf, 1, MAX_FILE + 1, f) : 0;
    fclose(f);
    if (!buf || n > MAX_FILE) {
        free(buf);
        snprintf(err, errlen, "%s: file is larger than %d bytes", path, MAX_FILE);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
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

static void free_op(struct mig_op *op)
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
        free_op(&m->ops[i]);
    free(m->ops);
    free(m->file);
    free(m->name);
    free(m->parent);
    free(m->json);
    free(m->merges);
    memset(m, 0, sizeof *m);
}

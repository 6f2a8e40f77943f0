/* The migration file's operations, one at a time: each kind's keys, its
 * fields, and the rules that depend on its kind (a column, a foreign key's
 * references, a table's constraints, an index's keys, an enum value, a
 * replica identity). The top level (name, parent, backfill, merges) is
 * read by migration.c; the checks both use are in migration_check.c. */
#include "migration.h"
#include "migration_parse.h"
#include "migration_sql.h"
#include "sql_script.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct op_spec {
    const char *name;
    enum mig_op_kind kind;
    const struct key_spec *keys;
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
    {"unique", K_BOOL, 0}, {"up", K_STR, 0}, {"down", K_STR, 0}, {"recreate", K_BOOL, 0}, {NULL, 0, 0}};
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
    {"columns", K_STRS, 0}, {"check", K_STR, 0}, {"references", K_OBJ, 0}, {"deferrable", K_BOOL, 0},
    {"initially_deferred", K_BOOL, 0}, {NULL, 0, 0}};
static const struct key_spec table_constraint_keys[] = {
    {"type", K_STR, 1}, {"name", K_STR, 0}, {"columns", K_STRS, 0}, {"check", K_STR, 0},
    {"references", K_OBJ, 0}, {NULL, 0, 0}};
static const struct key_spec sql_keys[] = {
    {"up", K_STR, 1}, {"down", K_STR, 0}, {"on", K_STR, 0}, {"new_shape", K_BOOL, 0}, {NULL, 0, 0}};
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
static const struct key_spec update_rows_keys[] = {
    {"schema", K_STR, 0}, {"table", K_STR, 1}, {"column", K_STR, 1}, {"up", K_STR, 1}, {"where", K_STR, 0},
    {NULL, 0, 0}};
static const struct key_spec delete_rows_keys[] = {
    {"schema", K_STR, 0}, {"table", K_STR, 1}, {"where", K_STR, 0}, {NULL, 0, 0}};
static const struct key_spec column_keys[] = {
    {"name", K_STR, 1}, {"type", K_STR, 1}, {"nullable", K_BOOL, 0}, {"default", K_STR, 0},
    {"check", K_STR, 0}, {"unique", K_BOOL, 0}, {"primary_key", K_BOOL, 0},
    {"references", K_STR, 0}, {"comment", K_STR, 0}, {"identity", K_STR, 0}, {"generated", K_STR, 0},
    {NULL, 0, 0}};
static const struct key_spec references_keys[] = {
    {"table", K_STR, 1}, {"columns", K_STRS, 1}, {"on_delete", K_STR, 0}, {"on_update", K_STR, 0},
    {NULL, 0, 0}};

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
    {"update_rows", MIG_UPDATE_ROWS, update_rows_keys},
    {"delete_rows", MIG_DELETE_ROWS, delete_rows_keys},
};
#define N_OP_SPECS (sizeof(op_specs) / sizeof(op_specs[0]))

const char *mig_op_name(enum mig_op_kind kind)
{
    for (size_t i = 0; i < N_OP_SPECS; i++)
        if (op_specs[i].kind == kind)
            return op_specs[i].name;
    return "?";
}

static int get_tristate(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : -1;
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
        return mparse_fail_at(c, "references", "\"references\" must be \"table\" or \"table(column)\" "
                              "(got \"%.80s\")", s);
    return 0;
}

/* A list of 1 to 32 strings; identifiers unless they are SQL (index keys). */
static int dup_list(struct parse_ctx *c, json_t *arr, const char *key, char ***out, size_t *n, int idents)
{
    size_t len = json_array_size(arr);
    if (len == 0 || len > 32)
        return mparse_fail_at(c, key, "\"%s\" must list 1 to 32 names", key);
    *out = calloc(len, sizeof(char *));
    if (!*out)
        return mparse_fail_at(c, key, "out of memory");
    *n = len;
    for (size_t i = 0; i < len; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_string(v))
            return mparse_fail_at(c, key, "\"%s\"[%zu] must be a string", key, i);
        (*out)[i] = strdup(json_string_value(v));
        if (!(*out)[i] || (idents && mparse_check_ident(c, key, (*out)[i]) != 0))
            return (*out)[i] ? -1 : mparse_fail_at(c, key, "out of memory");
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
        return mparse_fail_at(c, NULL, "a column must be an object");
    if (mparse_check_keys(c, obj, column_keys) != 0)
        return -1;
    col->name = mparse_dup_str(obj, "name");
    col->type = mparse_dup_str(obj, "type");
    col->default_expr = mparse_dup_str(obj, "default");
    col->check = mparse_dup_str(obj, "check");
    col->references = mparse_dup_str(obj, "references");
    col->comment = mparse_dup_str(obj, "comment");
    col->nullable = get_tristate(obj, "nullable");
    col->unique = get_tristate(obj, "unique");
    col->primary_key = get_tristate(obj, "primary_key");
    col->identity = mparse_dup_str(obj, "identity");
    col->generated = mparse_dup_str(obj, "generated");
    if (mparse_check_ident(c, "name", col->name) || mparse_check_type(c, "type", col->type))
        return -1;
    if (col->identity && strcmp(col->identity, "always") != 0 && strcmp(col->identity, "by_default") != 0)
        return mparse_fail_at(c, "identity", "\"identity\" must be \"always\" or \"by_default\" (got \"%s\")",
                              col->identity);
    if ((col->identity || col->generated) && col->default_expr)
        return mparse_fail_at(c, col->identity ? "identity" : "generated", "an %s column cannot have a \"default\"",
                              col->identity ? "identity" : "generated");
    if (col->identity && col->generated)
        return mparse_fail_at(c, "generated", "a column is either \"identity\" or \"generated\", not both");
    return check_reference(c, col->references) || mparse_check_expr(c, "default", col->default_expr) ||
           mparse_check_expr(c, "check", col->check) || mparse_check_expr(c, "generated", col->generated);
}

static int parse_columns(struct parse_ctx *c, json_t *arr, struct mig_op *op)
{
    size_t n = json_array_size(arr);
    if (n == 0 || n > 1600)
        return mparse_fail_at(c, "columns", "\"columns\" must list 1 to 1600 columns");
    op->cols = calloc(n, sizeof *op->cols);
    if (!op->cols)
        return mparse_fail_at(c, NULL, "out of memory");
    op->ncols = n;
    size_t base = strlen(c->path);
    for (size_t i = 0; i < n; i++) {
        snprintf(c->path + base, sizeof c->path - base, ".columns[%zu]", i);
        if (parse_column(c, json_array_get(arr, i), &op->cols[i]) != 0)
            return -1;
        for (size_t j = 0; j < i; j++)
            if (op->cols[j].name && op->cols[i].name && strcmp(op->cols[j].name, op->cols[i].name) == 0)
                return mparse_fail_at(c, op->cols[i].name, "column \"%s\" is listed twice", op->cols[i].name);
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
    return mparse_fail_at(c, key, "\"%s\" must be one of NO ACTION, RESTRICT, CASCADE, SET NULL, SET DEFAULT "
                          "(not \"%s\")", key, action);
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
        return mparse_fail_at(c, "references", "\"references\" must be an object {table, columns}");
    if (mparse_check_keys(c, obj, references_keys) != 0)
        return -1;
    *o->table = mparse_dup_str(obj, "table");
    *o->on_delete = mparse_dup_str(obj, "on_delete");
    *o->on_update = mparse_dup_str(obj, "on_update");
    if (mparse_check_ident(c, "table", *o->table) || check_fk_action(c, "on_delete", *o->on_delete) ||
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
    const char *hint = mparse_closest(type, constraint_kinds, 4);
    mparse_fail_at(c, "type", "unknown constraint type \"%s\" (%s%s%s)", type,
                   hint ? "did you mean \"" : "use check, unique, foreign_key or primary_key", hint ? hint : "",
                   hint ? "\"?" : "");
    return -1;
}

/* What each kind of constraint needs besides its type. */
static int constraint_needs(struct parse_ctx *c, json_t *body, int k, const char *check, char **columns)
{
    if (k == 0 && !check)
        return mparse_fail_at(c, "check", "a check constraint needs \"check\"");
    if (k > 0 && k < 4 && !columns)
        return mparse_fail_at(c, "columns", "a %s constraint needs \"columns\"", constraint_kinds[k]);
    if (k == 2 && !json_object_get(body, "references"))
        return mparse_fail_at(c, "references", "a foreign_key constraint needs \"references\"");
    if (k != 2 && json_object_get(body, "references"))
        return mparse_fail_at(c, "references", "only a foreign_key constraint has \"references\"");
    return 0;
}

static int parse_table_constraint(struct parse_ctx *c, json_t *obj, struct mig_constraint *k)
{
    if (!json_is_object(obj))
        return mparse_fail_at(c, NULL, "a constraint must be an object");
    if (mparse_check_keys(c, obj, table_constraint_keys) != 0)
        return -1;
    k->type = mparse_dup_str(obj, "type");
    k->name = mparse_dup_str(obj, "name");
    k->check = mparse_dup_str(obj, "check");
    if (mparse_check_ident(c, "name", k->name) || mparse_check_expr(c, "check", k->check))
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
        return mparse_fail_at(c, "constraints", "\"constraints\" must list 1 to 64 constraints");
    op->cons = calloc(n, sizeof *op->cons);
    if (!op->cons)
        return mparse_fail_at(c, NULL, "out of memory");
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
        return mparse_fail_at(c, "primary_key", "a table has one primary key (%d given)", pk);
    return 0;
}

static int parse_op_fields(struct parse_ctx *c, json_t *body, struct mig_op *op)
{
    op->schema = mparse_dup_str(body, "schema");
    if (!op->schema)
        op->schema = strdup("public");
    op->table = mparse_dup_str(body, "table");
    op->from = mparse_dup_str(body, "from");
    op->to = mparse_dup_str(body, "to");
    op->type = mparse_dup_str(body, "type");
    op->up = mparse_dup_str(body, "up");
    op->down = mparse_dup_str(body, "down");
    op->check = mparse_dup_str(body, "check");
    op->name = mparse_dup_str(body, "name");
    op->method = mparse_dup_str(body, "method");
    op->where = mparse_dup_str(body, "where");
    op->nullable = get_tristate(body, "nullable");
    op->unique = get_tristate(body, "unique");
    op->copy = get_tristate(body, "copy") == 1;
    op->if_exists = get_tristate(body, "if_exists") == 1;
    op->recreate = get_tristate(body, "recreate") == 1;
    json_t *def = json_object_get(body, "default");
    op->has_default = def != NULL;
    op->default_expr = json_is_string(def) ? strdup(json_string_value(def)) : NULL;
    json_t *column = json_object_get(body, "column");
    if (json_is_string(column))
        op->column = strdup(json_string_value(column));
    if (mparse_check_ident(c, "schema", op->schema) || mparse_check_ident(c, "table", op->table) ||
        mparse_check_ident(c, "from", op->from) || mparse_check_ident(c, "to", op->to) ||
        mparse_check_ident(c, "column", op->column) || mparse_check_ident(c, "name", op->name) ||
        mparse_check_ident(c, "method", op->method))
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
    const char *hint = mparse_closest(method, methods, 6);
    return mparse_fail_at(c, "method", "unknown index method \"%s\"%s%s%s", method,
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
        return mparse_fail_at(c, "keys", "out of memory");
    if (keys != 2)
        return mparse_fail_at(c, "keys", "\"%s\" is not one index key (a column or an expression in parentheses, "
                              "optionally with COLLATE, an operator class, ASC/DESC, NULLS FIRST/LAST)", key);
    return 0;
}

static int check_storage_parameters(struct parse_ctx *c, const char *params)
{
    static const char *const allowed[] = {"idxname", "relation", "accessMethod", "indexParams", "options", NULL};
    int keys = index_stmt_keys("CREATE INDEX i ON t (c) WITH (", params, ")", allowed);
    if (keys == -2)
        return mparse_fail_at(c, "storage_parameters", "out of memory");
    if (keys != 1)
        return mparse_fail_at(c, "storage_parameters", "\"%s\" is not a list of storage parameters "
                              "(\"fillfactor=70, deduplicate_items=off\")", params);
    return 0;
}

/* create_index keys its index by "columns" (names) or "keys" (SQL), one of
 * the two; "include" lists covering columns. */
static int parse_index_parts(struct parse_ctx *c, json_t *body, struct mig_op *op)
{
    json_t *cols = json_object_get(body, "columns"), *keys = json_object_get(body, "keys");
    json_t *include = json_object_get(body, "include");
    op->storage_parameters = mparse_dup_str(body, "storage_parameters");
    if (!cols == !keys)
        return mparse_fail_at(c, keys ? "keys" : "columns", "create_index needs \"columns\" (column names) or \"keys\" "
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
    return mparse_check_ident(c, "type", op->name);
}

static int parse_enum_value(struct parse_ctx *c, json_t *body, struct mig_op *op)
{
    op->value = mparse_dup_str(body, "value");
    op->before = mparse_dup_str(body, "before");
    op->after = mparse_dup_str(body, "after");
    op->if_not_exists = get_tristate(body, "if_not_exists") == 1;
    if (take_enum_type(c, op) || mparse_check_ident(c, "value", op->value) ||
        mparse_check_ident(c, "before", op->before) || mparse_check_ident(c, "after", op->after))
        return -1;
    if (op->before && op->after)
        return mparse_fail_at(c, "after", "give \"before\" or \"after\", not both");
    const char *next = op->before ? op->before : op->after;
    if (next && strcmp(next, op->value) == 0)
        return mparse_fail_at(c, op->before ? "before" : "after", "\"%s\" is the value being added", next);
    return 0;
}

/* set_replica_identity's "identity": "default", "full", "nothing", or
 * {"index": name}. */
static int parse_identity(struct parse_ctx *c, json_t *v, struct mig_op *op)
{
    static const char *const kinds[] = {"default", "full", "nothing"};
    if (json_is_object(v)) {
        if (mparse_check_keys(c, v, replica_index_keys) != 0)
            return -1;
        op->identity = strdup("index");
        op->name = mparse_dup_str(v, "index");
        return mparse_check_ident(c, "index", op->name);
    }
    const char *s = json_string_value(v);
    for (size_t i = 0; i < 3; i++)
        if (strcmp(s, kinds[i]) == 0) {
            op->identity = strdup(s);
            return 0;
        }
    const char *hint = mparse_closest(s, kinds, 3);
    return mparse_fail_at(c, "identity", "\"identity\" must be \"default\", \"full\", \"nothing\" or {\"index\": name} "
                          "(got \"%s\"%s%s%s)", s, hint ? "; did you mean \"" : "", hint ? hint : "",
                          hint ? "\"?" : "");
}

/* Rules that depend on the operation kind beyond key presence/types. */
static int check_op_semantics(struct parse_ctx *c, json_t *body, struct mig_op *op)
{
    switch (op->kind) {
    case MIG_RENAME_COLUMN:
        if (strcmp(op->from, op->to) == 0)
            return mparse_fail_at(c, "to", "\"from\" and \"to\" are both \"%s\"", op->to);
        if ((op->up || op->down) && !(op->up && op->down))
            return mparse_fail_at(c, op->up ? "up" : "down", "\"up\" and \"down\" must be given together "
                                  "so writes through either name reach the other");
        return mparse_check_type(c, "type", op->type);
    case MIG_ADD_COLUMN:
        if (parse_column(c, json_object_get(body, "column"), &op->col) != 0)
            return -1;
        if (op->col.primary_key == 1)
            return mparse_fail_at(c, "primary_key", "add_column cannot add a primary key; use create_constraint");
        if (op->col.identity || op->col.generated)
            return mparse_fail_at(c, op->col.identity ? "identity" : "generated", "add_column cannot add an %s "
                                  "column: Postgres writes it into every row under ACCESS EXCLUSIVE; add a plain "
                                  "column with an \"up\" (the backfill fills it) or create the table with it",
                                  op->col.identity ? "identity" : "generated");
        return 0;
    case MIG_ALTER_COLUMN:
        if (!op->type && op->nullable < 0 && !op->has_default && !op->check && op->unique < 0)
            return mparse_fail_at(c, "alter_column", "nothing to change: give type, nullable, default, check or "
                                  "unique");
        /* A type without up/down is a change Postgres makes in the catalog
         * alone (a longer varchar ...), or refused by the plan saying so. */
        if ((op->up || op->down) && !(op->up && op->down))
            return mparse_fail_at(c, op->up ? "up" : "down", "\"up\" and \"down\" must be given together");
        if (op->recreate && !(op->type && op->up))
            return mparse_fail_at(c, "recreate", "a column dropped and added again needs its new \"type\", "
                                  "\"up\" (its value for the rows there, as ADD COLUMN gives them) and \"down\"");
        return mparse_check_type(c, "type", op->type);
    case MIG_RENAME_TABLE:
        if (strcmp(op->from, op->to) == 0)
            return mparse_fail_at(c, "to", "\"from\" and \"to\" are both \"%s\"", op->to);
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
            return mparse_fail_at(c, NULL, "out of memory");
        int k = constraint_kind(c, op->constraint_type);
        if (k < 0)
            return -1;
        json_t *cols = json_object_get(body, "columns");
        if (cols && dup_strs(c, cols, "columns", &op->columns, &op->ncolumns))
            return -1;
        if (constraint_needs(c, body, k, op->check, op->columns) != 0)
            return -1;
        op->deferrable = get_tristate(body, "deferrable") == 1;
        op->initially_deferred = get_tristate(body, "initially_deferred") == 1;
        int keyed = !strcmp(op->constraint_type, "unique") || !strcmp(op->constraint_type, "primary_key");
        if ((op->deferrable || op->initially_deferred) && !keyed)
            return mparse_fail_at(c, "deferrable", "\"deferrable\" is for a unique or primary_key constraint (its "
                                  "index is attached with the words at the contract); write a deferrable %s as "
                                  "ADD CONSTRAINT ... NOT VALID in an \"sql\" operation", op->constraint_type);
        if (op->initially_deferred && !op->deferrable)
            return mparse_fail_at(c, "initially_deferred", "\"initially_deferred\" needs \"deferrable\": true, as "
                                  "in Postgres");
        struct ref_out o = {&op->ref_table, &op->ref_columns, &op->on_delete, &op->on_update, &op->nref_columns};
        return parse_references(c, json_object_get(body, "references"), &o);
    }
    case MIG_DROP_CONSTRAINT:
        return 0;   /* if_exists: read with the common keys */
    case MIG_RENAME_CONSTRAINT:
    case MIG_RENAME_ENUM_VALUE:
        if (strcmp(op->from, op->to) == 0)
            return mparse_fail_at(c, "to", "\"from\" and \"to\" are both \"%s\"", op->to);
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
            return mparse_fail_at(c, "on", "\"on\" must be \"start\" or \"complete\" (got \"%s\")", v);
        op->new_shape = get_tristate(body, "new_shape") == 1;
        if (op->new_shape && op->on != MIG_ON_COMPLETE)
            return mparse_fail_at(c, "new_shape", "\"new_shape\" is for a statement that runs \"on\": \"complete\" "
                                  "(it runs at start too, in the new version's schema); a statement that runs at start "
                                  "is seen by both releases already");
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
    return mparse_check_expr(c, "up", op->up) || mparse_check_expr(c, "down", op->down) ||
           mparse_check_expr(c, "default", op->default_expr) || mparse_check_expr(c, "check", op->check) ||
           mparse_check_expr(c, "where", op->where);
}

int mparse_op(struct parse_ctx *c, json_t *entry, size_t idx, struct mig_op *op)
{
    snprintf(c->path, sizeof c->path, "operations[%zu]", idx);
    op->index = (int)idx;
    op->nullable = op->unique = -1;
    if (!json_is_object(entry) || json_object_size(entry) != 1)
        return mparse_fail_at(c, NULL, "each operation must be an object with exactly one key, "
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
        const char *hint = mparse_closest(opname, names, N_OP_SPECS);
        if (hint)
            return mparse_fail_at(c, opname, "unknown operation \"%s\" (did you mean \"%s\"?)", opname, hint);
        return mparse_fail_at(c, opname, "unknown operation \"%s\"", opname);
    }
    snprintf(c->path, sizeof c->path, "operations[%zu].%s", idx, spec->name);
    op->kind = spec->kind;
    if (!json_is_object(body))
        return mparse_fail_at(c, opname, "the body of \"%s\" must be an object", opname);
    if (mparse_check_keys(c, body, spec->keys) != 0 || parse_op_fields(c, body, op) != 0)
        return -1;
    return check_op_semantics(c, body, op) || check_op_expressions(c, op);
}

/* SQL -> migration JSON. Walks the statements of a script (sql_script.c) in
 * order and emits one operation per change, merging consecutive changes of
 * one column (Alembic's "ALTER COLUMN c TYPE T USING e" followed by "RENAME c
 * TO d" is one rename_column). Statements with no online operation are
 * passed through as `sql` only when running them as written cannot block or
 * break the running application; the others stop the conversion with the
 * statement's position and the reason, so nothing is dropped silently.
 * What each kind of statement becomes is in sql_convert_table.c,
 * sql_convert_alter.c and sql_convert_objects.c (sql_convert_conv.h). */
#include "sql_convert.h"
#include "sql_convert_conv.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "migration_sql.h"

/* A file name's limit: a name is kept whole, never cut to fit; the migration
 * parser refuses one longer than a migration's name may be, saying why. */
#define MAX_MIG_NAME 255

/* ---- names ---- */

void sqlc_add_dotted(struct mig_str *s, json_t *names)
{
    size_t i;
    json_t *n;
    json_array_foreach(names, i, n) {
        char *part = sql_ident(sql_node_str(n) ? sql_node_str(n) : "");
        mig_str_add(s, i ? "." : "");
        mig_str_add(s, part ? part : "");
        free(part);
    }
}

const char *sqlc_op_kind(json_t *op, json_t **body)
{
    void *it = json_object_iter(op);
    *body = it ? json_object_iter_value(it) : NULL;
    return it ? json_object_iter_key(it) : "";
}

int sqlc_op_on(json_t *op, json_t *rel, const char **kind, json_t **body)
{
    *kind = sqlc_op_kind(op, body);
    const char *table = sqlc_str_or(*body, strcmp(*kind, "rename_table") ? "table" : "from", "");
    return *body && !strcmp(sqlc_str_or(*body, "schema", "public"), sqlc_rel_schema(rel)) &&
           !strcmp(table, sqlc_str_or(rel, "relname", ""));
}

int sqlc_op_on_now(struct conv *c, size_t i, json_t *op, json_t *rel, const char **kind, json_t **body)
{
    *kind = sqlc_op_kind(op, body);
    const char *schema = sqlc_str_or(*body, "schema", "public");
    char now[SQLC_NAME_LEN];
    /* a rename_table is on the table by the name it takes away, as in
     * sqlc_op_on: a statement naming the table by its new name is after it */
    sqlc_table_name_now(c, i, schema, sqlc_str_or(*body, strcmp(*kind, "rename_table") ? "table" : "from", ""), now);
    return *body && !strcmp(schema, sqlc_rel_schema(rel)) && !strcmp(now, sqlc_str_or(rel, "relname", ""));
}

/* ---- messages ---- */

__attribute__((format(printf, 3, 4)))
int sqlc_fail(struct conv *c, const struct sql_stmt *st, const char *fmt, ...)
{
    char msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char excerpt[64];
    size_t n = strcspn(c->s.text + st->start, "\n");
    if (n > st->end - st->start)
        n = st->end - st->start;
    int cut = n > 48;
    snprintf(excerpt, sizeof excerpt, "%.*s%s", (int)(cut ? 48 : n), c->s.text + st->start, cut ? "..." : "");
    snprintf(c->err, c->errlen, "%s:%d:%d: %s (in \"%s\")", c->s.file, st->line, st->col, msg, excerpt);
    return -1;
}

int sqlc_oom(struct conv *c, const struct sql_stmt *st)
{
    return sqlc_fail(c, st, "out of memory");
}

/* ---- small helpers ---- */

const char *sqlc_str_or(json_t *obj, const char *key, const char *dflt)
{
    const char *v = json_string_value(json_object_get(obj, key));
    return v ? v : dflt;
}

int sqlc_is_true(json_t *obj, const char *key)
{
    return json_is_true(json_object_get(obj, key));
}

void sqlc_copy_name(char *dst, const char *src)
{
    snprintf(dst, 64, "%s", src ? src : "");
}

/* table (and schema when it is not public) of a RangeVar into an op body */
void sqlc_set_relation(json_t *body, json_t *rel, const char *key)
{
    const char *schema = json_string_value(json_object_get(rel, "schemaname"));
    if (schema && strcmp(schema, "public") != 0)
        json_object_set_new(body, "schema", json_string(schema));
    json_object_set_new(body, key, json_string(sqlc_str_or(rel, "relname", "")));
}

const char *sqlc_rel_schema(json_t *rel)
{
    return sqlc_str_or(rel, "schemaname", "public");
}

int sqlc_tree_any(json_t *tree, json_t *parent, const char *key, sqlc_visit_fn visit, void *arg)
{
    int seen = visit(parent, key, tree, arg);
    if (seen != 0)
        return seen > 0;
    const char *k;
    size_t i;
    json_t *v;
    if (json_is_object(tree)) {
        json_object_foreach(tree, k, v)
            if (sqlc_tree_any(v, tree, k, visit, arg))
                return 1;
    } else if (json_is_array(tree)) {
        json_array_foreach(tree, i, v)
            if (sqlc_tree_any(v, tree, NULL, visit, arg))
                return 1;
    }
    return 0;
}

struct name_sought {
    const char *name;
    int any_case, but_columns;
};

/* Keys whose strings are column names: a column is no type, table or
 * constraint. */
static int column_key(json_t *parent, const char *key)
{
    static const char *const keys[] = {"colname", "ColumnRef", "IndexElem", "keys", "fk_attrs", "pk_attrs",
                                       "including", "ResTarget", NULL};
    static const char *const column_cmds[] = {"AT_AlterColumnType", "AT_ColumnDefault", "AT_SetNotNull",
                                              "AT_DropNotNull", "AT_DropColumn", NULL};
    if (!key)
        return 0;
    for (const char *const *k = keys; *k; k++)
        if (!strcmp(*k, key))
            return 1;
    if ((!strcmp(key, "subname") || !strcmp(key, "newname")) &&
        !strcmp(sqlc_str_or(parent, "renameType", ""), "OBJECT_COLUMN"))
        return 1;
    if (!strcmp(key, "name"))
        for (const char *const *k = column_cmds; *k; k++)
            if (!strcmp(*k, sqlc_str_or(parent, "subtype", "")))
                return 1;
    return 0;
}

static int is_name(json_t *parent, const char *key, json_t *node, void *arg)
{
    const struct name_sought *n = arg;
    if (n->but_columns && column_key(parent, key))
        return -1;
    return json_is_string(node) && !(n->any_case ? strcasecmp : strcmp)(json_string_value(node), n->name);
}

int sqlc_tree_names(json_t *tree, const char *name, int any_case)
{
    struct name_sought n = {name, any_case, 0};
    return sqlc_tree_any(tree, NULL, NULL, is_name, &n);
}

int sqlc_tree_names_but_columns(json_t *tree, const char *name)
{
    struct name_sought n = {name, 0, 1};
    return sqlc_tree_any(tree, NULL, NULL, is_name, &n);
}

const struct sql_stmt *sqlc_stmt_naming(const struct sql_stmt *from, const struct sql_stmt *end, const char *a,
                                        const char *b)
{
    for (const struct sql_stmt *o = from; o < end; o++)
        if (sqlc_tree_names(o->body, a, 0) || sqlc_tree_names(o->body, b, 0))
            return o;
    return NULL;
}

int sqlc_same_relation(json_t *a, json_t *b)
{
    return !strcmp(sqlc_str_or(a, "relname", ""), sqlc_str_or(b, "relname", "")) &&
           !strcmp(sqlc_rel_schema(a), sqlc_rel_schema(b));
}

int sqlc_add_op(struct conv *c, const char *kind, json_t *body)
{
    json_t *op = json_object();
    if (!op || !body || json_object_set_new(op, kind, body) != 0 || json_array_append_new(c->ops, op) != 0)
        return -1;
    return 0;
}

int sqlc_remember_column(struct conv *c, const char *schema, const char *table, const char *column,
                           const char *type)
{
    if (c->nknown == c->capknown) {
        size_t cap = c->capknown ? 2 * c->capknown : 16;
        struct known_col *grown = realloc(c->known, cap * sizeof *grown);
        if (!grown)
            return -1;
        c->known = grown;
        c->capknown = cap;
    }
    struct known_col *k = &c->known[c->nknown];
    k->schema = strdup(schema);
    k->table = strdup(table);
    k->column = strdup(column);
    k->type = strdup(type);
    if (!k->schema || !k->table || !k->column || !k->type) {
        free(k->schema); free(k->table); free(k->column); free(k->type);
        return -1;
    }
    c->nknown++;
    return 0;
}

void sqlc_names_before_file(const struct conv *c, const char *schema, char *table, char *column)
{
    for (size_t i = json_array_size(c->ops); i-- > 0;) {
        json_t *op = json_array_get(c->ops, i);
        json_t *t = json_object_get(op, "rename_table"), *col = json_object_get(op, "rename_column");
        json_t *body = t ? t : col;
        if (!body || strcmp(sqlc_str_or(body, "schema", "public"), schema) != 0)
            continue;
        if (t && !strcmp(sqlc_str_or(t, "to", ""), table))
            sqlc_copy_name(table, sqlc_str_or(t, "from", ""));
        else if (col && !strcmp(sqlc_str_or(col, "table", ""), table) && !strcmp(sqlc_str_or(col, "to", ""), column))
            sqlc_copy_name(column, sqlc_str_or(col, "from", ""));
    }
}

/* The column's type before this statement: one this script gave it, else
 * the live catalog's when a lookup was provided, under the names the
 * table and column had before the file's renames. */
int sqlc_old_type(struct conv *c, const char *schema, const char *table, const char *column, char *out)
{
    for (size_t i = c->nknown; i-- > 0;) {
        struct known_col *k = &c->known[i];
        if (!strcmp(k->schema, schema) && !strcmp(k->table, table) && !strcmp(k->column, column)) {
            snprintf(out, SQLC_TYPE_LEN, "%s", k->type);
            return 0;
        }
    }
    if (!c->opt || !c->opt->column_type)
        return -1;
    if (c->opt->column_type(c->opt->column_type_arg, schema, table, column, out, SQLC_TYPE_LEN) == 0)
        return 0;
    char was_table[SQLC_NAME_LEN], was_column[SQLC_NAME_LEN];
    sqlc_copy_name(was_table, table);
    sqlc_copy_name(was_column, column);
    sqlc_names_before_file(c, schema, was_table, was_column);
    if (!strcmp(was_table, table) && !strcmp(was_column, column))
        return -1;
    return c->opt->column_type(c->opt->column_type_arg, schema, was_table, was_column, out, SQLC_TYPE_LEN);
}

/* An explicit `down` written above the statement as "-- pgtandem:down EXPR". */
char *sqlc_annotated_down(struct conv *c, const struct sql_stmt *st)
{
    const char *p = c->s.text + st->gap, *end = c->s.text + st->start;
    static const char tag[] = "pgtandem:down";
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        const char *q = p;
        while (q < eol && (*q == ' ' || *q == '\t'))
            q++;
        if (eol - q > 2 && q[0] == '-' && q[1] == '-') {
            q += 2;
            while (q < eol && (*q == ' ' || *q == '\t'))
                q++;
            if ((size_t)(eol - q) > sizeof tag - 1 && !strncmp(q, tag, sizeof tag - 1)) {
                q += sizeof tag - 1;
                const char *e = eol;
                while (q < e && isspace((unsigned char)*q))
                    q++;
                while (e > q && isspace((unsigned char)e[-1]))
                    e--;
                if (e > q)
                    return strndup(q, (size_t)(e - q));
            }
        }
        p = eol + 1;
    }
    return NULL;
}

/* ---- the open operation ---- */

/* Writes the derived `down` (a cast of the new value back to the old type)
 * now that the column's final name is known, and closes the operation. */
int sqlc_close_last(struct conv *c)
{
    struct last_op *l = &c->last;
    if (l->kind != LAST_NONE && l->type_stmt && !json_object_get(l->body, "down")) {
        char *id = sql_ident(l->column);
        const char *via = l->via_text ? "text::" : "";
        size_t n = id ? strlen(id) + strlen(via) + strlen(l->cast_back) + 3 : 0;
        char *down = id ? malloc(n) : NULL;
        if (!down) {
            free(id);
            return sqlc_oom(c, l->type_stmt);
        }
        snprintf(down, n, "%s::%s%s", id, via, l->cast_back);
        json_object_set_new(l->body, "down", json_string(down));
        free(id);
        free(down);
    }
    memset(l, 0, sizeof *l);
    return 0;
}

int sqlc_same_column(const struct last_op *l, enum last_kind kind, json_t *rel, const char *column)
{
    return l->kind == kind && !strcmp(l->schema, sqlc_rel_schema(rel)) && !strcmp(l->table, sqlc_str_or(rel, "relname", "")) &&
           !strcmp(l->column, column);
}

/* The alter_column body for column, joined to the previous statement's when
 * it changed the same column and does not already set key, or when key is
 * one whose last value is all that stays (nullable, default: DROP NOT NULL
 * then SET NOT NULL ends NOT NULL, as Postgres applies them in order). */
json_t *sqlc_alter_body(struct conv *c, json_t *rel, const char *column, const char *key)
{
    int last_wins = !strcmp(key, "nullable") || !strcmp(key, "default");
    if (sqlc_same_column(&c->last, LAST_ALTER, rel, column) && (last_wins || !json_object_get(c->last.body, key)))
        return c->last.body;
    if (sqlc_close_last(c) != 0)
        return NULL;
    json_t *body = json_object();
    if (!body)
        return NULL;
    sqlc_set_relation(body, rel, "table");
    json_object_set_new(body, "column", json_string(column));
    if (sqlc_add_op(c, "alter_column", body) != 0)
        return NULL;
    struct last_op *l = &c->last;
    l->kind = LAST_ALTER;
    l->body = body;
    sqlc_copy_name(l->schema, sqlc_rel_schema(rel));
    sqlc_copy_name(l->table, sqlc_str_or(rel, "relname", ""));
    sqlc_copy_name(l->column, column);
    return body;
}

/* ---- statements ---- */

int sqlc_emit_sql(struct conv *c, const struct sql_stmt *st, const char *on, const char *down)
{
    return sqlc_emit_sql_text(c, st, NULL, on, down);
}

int sqlc_emit_sql_text(struct conv *c, const struct sql_stmt *st, const char *given, const char *on, const char *down)
{
    if (sqlc_close_last(c) != 0)
        return -1;
    char *text = given ? strdup(given) : sql_stmt_text(&c->s, st);
    json_t *body = json_object();
    if (!text || !body) {
        free(text);
        json_decref(body);
        return sqlc_oom(c, st);
    }
    json_object_set_new(body, "up", json_string(text));
    if (down)
        json_object_set_new(body, "down", json_string(down));
    if (on)
        json_object_set_new(body, "on", json_string(on));
    free(text);
    return sqlc_add_op(c, "sql", body) == 0 ? 0 : sqlc_oom(c, st);
}

const char SQLC_ENUM_VALUE_REMOVAL[] =
    "Postgres cannot remove a value from an enum: editing pg_enum corrupts indexes and rows that hold it, and "
    "replacing the type (the column to text, DROP TYPE, CREATE TYPE, the column back) rewrites every table using "
    "it under an ACCESS EXCLUSIVE lock while the running release still writes the value. Write it as Prisma does, "
    "which runs online: CREATE TYPE \"T_new\" AS ENUM (the values kept); ALTER TABLE ... ALTER COLUMN c TYPE "
    "\"T_new\" USING (c::text::\"T_new\"); ALTER TYPE \"T\" RENAME TO \"T_old\"; ALTER TYPE \"T_new\" RENAME "
    "TO \"T\"; DROP TYPE \"T_old\". Or stop writing the value, move the rows off it with alter_column (\"up\" "
    "mapping it to another), and leave it in the type";

static int conv_drop(struct conv *c, const struct sql_stmt *st)
{
    const char *type = sqlc_str_or(st->body, "removeType", "");
    int table = !strcmp(type, "OBJECT_TABLE"), index = !strcmp(type, "OBJECT_INDEX");
    if (sqlc_drop_deferred(type))
        return sqlc_drop_object(c, st);
    if (!table && !index)
        return sqlc_fail(c, st, "DROP %s: the converter cannot tell whether the old release still uses it; drop it "
                    "in a later migration, or as {\"sql\": {\"up\": ..., \"on\": \"complete\"}}",
                    type + (strncmp(type, "OBJECT_", 7) ? 0 : 7));
    if (!strcmp(sqlc_str_or(st->body, "behavior", "DROP_RESTRICT"), "DROP_CASCADE"))
        return sqlc_fail(c, st, "CASCADE would drop whatever depends on it without naming it; drop those first");
    if (sqlc_close_last(c) != 0)
        return -1;
    size_t i;
    json_t *obj;
    json_array_foreach(json_object_get(st->body, "objects"), i, obj) {
        json_t *items = sql_get(obj, "List.items");
        size_t n = json_array_size(items);
        const char *name = n ? sql_node_str(json_array_get(items, n - 1)) : NULL;
        const char *schema = n > 1 ? sql_node_str(json_array_get(items, n - 2)) : NULL;
        if (!name || n > 2)
            return sqlc_fail(c, st, "cannot read the name of object %zu", i + 1);
        char was[SQLC_NAME_LEN];
        sqlc_copy_name(was, name);
        if (index && sqlc_drop_renamed_index(c, st, schema ? schema : "public", was) != 0)
            return sqlc_oom(c, st);
        json_t *body = json_object();
        if (schema && strcmp(schema, "public") != 0)
            json_object_set_new(body, "schema", json_string(schema));
        json_object_set_new(body, table ? "table" : "name", json_string(was));
        if (index && json_is_true(json_object_get(st->body, "missing_ok")))
            json_object_set_new(body, "if_exists", json_true());
        if (sqlc_add_op(c, table ? "drop_table" : "drop_index", body) != 0)
            return sqlc_oom(c, st);
    }
    return 0;
}

/* alembic_version's statements carry the revision chain: the first
 * revision replaced is the parent, the last one set is the name. */
static void note_alembic(struct conv *c, const struct sql_stmt *st)
{
    const char *to = NULL, *from = NULL;
    if (!strcmp(st->kind, "UpdateStmt")) {
        to = json_string_value(sql_get(json_array_get(json_object_get(st->body, "targetList"), 0),
                                       "ResTarget.val.A_Const.sval.sval"));
        from = json_string_value(sql_get(st->body, "whereClause.A_Expr.rexpr.A_Const.sval.sval"));
    } else if (!strcmp(st->kind, "InsertStmt")) {
        json_t *row = json_array_get(sql_get(st->body, "selectStmt.SelectStmt.valuesLists"), 0);
        to = json_string_value(sql_get(json_array_get(sql_get(row, "List.items"), 0), "A_Const.sval.sval"));
    }
    if (from && !c->alembic_from[0] && !c->alembic_to[0])
        sqlc_copy_name(c->alembic_from, from);
    if (to)
        sqlc_copy_name(c->alembic_to, to);
}

static int conv_dml(struct conv *c, const struct sql_stmt *st)
{
    json_t *rel = json_object_get(st->body, "relation");
    if (!strcmp(sqlc_str_or(rel, "relname", ""), "pg_enum") && strcmp(st->kind, "InsertStmt") != 0)
        return sqlc_fail(c, st, "%s", SQLC_ENUM_VALUE_REMOVAL);
    if (!strcmp(sqlc_str_or(rel, "relname", ""), "alembic_version")) {
        note_alembic(c, st);
        return sqlc_emit_sql(c, st, "complete", NULL);   /* the version moves with the cutover */
    }
    if (sqlc_made_table(c, rel))
        return sqlc_emit_sql(c, st, NULL, NULL);    /* only this migration's rows are there */
    /* A fill of a column this script adds writes only that column: nothing
     * in it relies on another column's NOT NULL, dropped or not (drizzle-kit
     * writes one beside a DROP NOT NULL of the column it copies). */
    int folded = sqlc_fold_fill(c, st);
    if (folded != 0)
        return folded < 0 ? -1 : 0;
    /* a change above that the table takes only at the contract */
    int waits = sqlc_dml_waits(c, st, rel);
    if (waits != 0)
        return waits < 0 ? -1 : 0;
    folded = sqlc_update_rows(c, st);
    if (folded == 0)
        folded = sqlc_delete_rows(c, st);
    if (folded != 0)
        return folded < 0 ? -1 : 0;

    int whole = !strcmp(st->kind, "InsertStmt") ? 0 : !json_object_get(st->body, "whereClause");
    if (whole && !sqlc_fits_one_batch(c, rel))
        return sqlc_fail(c, st, "%s of every row of \"%s\" (more rows than one batch, or not counted) runs as one "
                    "long transaction that locks each row and races with the running application; %s",
                    !strcmp(st->kind, "UpdateStmt") ? "UPDATE" : "DELETE", sqlc_str_or(rel, "relname", "?"),
                    !strcmp(st->kind, "UpdateStmt")
                        ? "express it as the \"up\" of add_column / alter_column so the backfill writes it in batches"
                        : "put it in a migration of its own, where it runs in batches (delete_rows)");
    int refused;
    char *renamed = sqlc_renamed_back(c, st, &refused);
    if (refused)
        return -1;
    int rc = sqlc_emit_sql_text(c, st, renamed, NULL, NULL);
    free(renamed);
    return rc;
}

/* Whether a statement of the file before st creates the enum schema.name. */
static int enum_made_above(const struct conv *c, const struct sql_stmt *st, const char *schema, const char *name)
{
    for (const struct sql_stmt *e = c->s.stmts; e < st; e++) {
        if (strcmp(e->kind, "CreateEnumStmt") != 0)
            continue;
        json_t *names = json_object_get(e->body, "typeName");
        size_t n = json_array_size(names);
        const char *t = n ? sql_node_str(json_array_get(names, n - 1)) : NULL;
        const char *s = n > 1 ? sql_node_str(json_array_get(names, n - 2)) : "public";
        if (t && s && !strcmp(t, name) && !strcmp(s, schema ? schema : "public"))
            return 1;
    }
    return 0;
}

/* ADD VALUE to an enum the file creates: run in order at expand, after its
 * CREATE TYPE (the add_enum_value of a type already there runs before
 * everything, where this one does not exist yet), on the name the type
 * has then; the CREATE TYPE's down takes the value with the type. */
static int add_value_to_made_enum(struct conv *c, const struct sql_stmt *st, const char *schema, const char *type)
{
    struct mig_str s = {0};
    char *qs = schema ? sql_ident(schema) : NULL, *qt = sql_ident(type);
    mig_str_addf(&s, "ALTER TYPE %s%s%s ADD VALUE %s", qs ? qs : "", qs ? "." : "", qt ? qt : "",
                 sqlc_is_true(st->body, "skipIfNewValExists") ? "IF NOT EXISTS " : "");
    mig_str_literal(&s, sqlc_str_or(st->body, "newVal", ""));
    const char *next = json_string_value(json_object_get(st->body, "newValNeighbor"));
    if (next) {
        mig_str_add(&s, sqlc_is_true(st->body, "newValIsAfter") ? " AFTER " : " BEFORE ");
        mig_str_literal(&s, next);
    }
    free(qs);
    free(qt);
    char *text = mig_str_take(&s);
    int rc = text ? sqlc_emit_sql_text(c, st, text, NULL, NULL) : sqlc_oom(c, st);
    free(text);
    return rc;
}

/* ALTER TYPE ... ADD VALUE: add_enum_value (run at expand before the rest,
 * outside a transaction, so the migration may use the value); RENAME VALUE:
 * rename_enum_value, which the plan refuses with what to do instead. */
static int conv_alter_enum(struct conv *c, const struct sql_stmt *st)
{
    json_t *names = json_object_get(st->body, "typeName");
    size_t n = json_array_size(names);
    const char *type = n ? sql_node_str(json_array_get(names, n - 1)) : NULL;
    const char *schema = n > 1 ? sql_node_str(json_array_get(names, n - 2)) : NULL;
    if (!type || n > 2)
        return sqlc_fail(c, st, "cannot read the name of the enum type");
    if (sqlc_close_last(c) != 0)
        return -1;
    json_t *body = json_object();
    if (schema && strcmp(schema, "public") != 0)
        json_object_set_new(body, "schema", json_string(schema));
    /* Prisma's recreation renames "X_new" to "X" at complete: a value added
     * to "X" after it goes to the type that becomes "X" */
    const char *at_expand = sqlc_type_at_expand(c, schema, type);
    const char *old_val = json_string_value(json_object_get(st->body, "oldVal"));
    if (!old_val && enum_made_above(c, st, schema, at_expand)) {
        json_decref(body);
        return add_value_to_made_enum(c, st, schema, at_expand);
    }
    json_object_set_new(body, "type", json_string(at_expand));
    const char *value = sqlc_str_or(st->body, "newVal", "");
    if (old_val) {
        json_object_set_new(body, "from", json_string(old_val));
        json_object_set_new(body, "to", json_string(value));
        return sqlc_add_op(c, "rename_enum_value", body) == 0 ? 0 : sqlc_oom(c, st);
    }
    json_object_set_new(body, "value", json_string(value));
    const char *next = json_string_value(json_object_get(st->body, "newValNeighbor"));
    if (next)
        json_object_set_new(body, sqlc_is_true(st->body, "newValIsAfter") ? "after" : "before", json_string(next));
    if (sqlc_is_true(st->body, "skipIfNewValExists"))
        json_object_set_new(body, "if_not_exists", json_true());
    return sqlc_add_op(c, "add_enum_value", body) == 0 ? 0 : sqlc_oom(c, st);
}

/* Statements that change no table an application reads in a way that
 * blocks it: passed through as they are. */
static int safe_as_is(const char *kind)
{
    static const char *const kinds[] = {"CreateFunctionStmt", "CreateExtensionStmt", "CreateSchemaStmt",
        "CreateEnumStmt", "CompositeTypeStmt", "CreateDomainStmt", "CreateSeqStmt",
        "AlterSeqStmt", "CommentStmt", "GrantStmt", "ViewStmt", "CreateTrigStmt", "AlterDefaultPrivilegesStmt",
        "CreatePolicyStmt", NULL};
    for (const char *const *k = kinds; *k; k++)
        if (!strcmp(*k, kind))
            return 1;
    return 0;
}

/* Why a statement cannot run while the application does, or NULL. */
static const char *blocking_reason(const struct sql_stmt *st)
{
    const char *k = st->kind;
    if (!strcmp(k, "VacuumStmt")) {
        size_t i;
        json_t *o;
        json_array_foreach(json_object_get(st->body, "options"), i, o) {
            if (!strcmp(sqlc_str_or(json_object_get(o, "DefElem"), "defname", ""), "full"))
                return "VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock: every read and write "
                       "waits for the whole rewrite (use pg_repack, or leave it out)";
        }
        return "VACUUM cannot run inside the migration's transactions; leave it to autovacuum or run it apart";
    }
    if (!strcmp(k, "ClusterStmt"))
        return "CLUSTER rewrites the table under an ACCESS EXCLUSIVE lock: every read and write waits";
    if (!strcmp(k, "LockStmt"))
        return "LOCK TABLE blocks the application until the migration's transaction ends; pgtandem takes "
               "only short locks, with a lock_timeout";
    if (!strcmp(k, "ReindexStmt"))
        return "REINDEX blocks writes (and reads that use the index); REINDEX CONCURRENTLY cannot run in a "
               "transaction: run it apart";
    if (!strcmp(k, "TruncateStmt"))
        return "TRUNCATE takes an ACCESS EXCLUSIVE lock and empties the table under the running application";
    if (!strcmp(k, "VariableSetStmt"))
        return "SET changes the session of the migration's phases; pgtandem sets its own timeouts";
    if (!strcmp(k, "RefreshMatViewStmt") && !sqlc_is_true(st->body, "concurrent"))
        return "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks every read of the view";
    if (!strcmp(k, "TransactionStmt"))
        return "only BEGIN and COMMIT are understood: pgtandem runs each phase in its own transactions";
    return NULL;
}

static int conv_statement(struct conv *c, const struct sql_stmt *st)
{
    const char *k = st->kind;
    if (!strcmp(k, "TransactionStmt")) {
        const char *kind = sqlc_str_or(st->body, "kind", "");
        if (!strcmp(kind, "TRANS_STMT_BEGIN") || !strcmp(kind, "TRANS_STMT_START") ||
            !strcmp(kind, "TRANS_STMT_COMMIT"))
            return 0;   /* pgtandem brings its own transactions */
    }
    if (sqlc_refuse_type_renamed_at_complete(c, st) != 0)
        return -1;
    if (!strcmp(k, "AlterTableStmt"))
        return sqlc_alter_table(c, st);
    if (!strcmp(k, "RenameStmt"))
        return sqlc_rename(c, st);
    if (!strcmp(k, "CreateStmt"))
        return sqlc_create_table(c, st);
    if (!strcmp(k, "IndexStmt"))
        return sqlc_create_index(c, st);
    if (!strcmp(k, "DropStmt"))
        return conv_drop(c, st);
    if (!strcmp(k, "AlterEnumStmt"))
        return conv_alter_enum(c, st);
    if (!strcmp(k, "UpdateStmt") || !strcmp(k, "InsertStmt") || !strcmp(k, "DeleteStmt"))
        return conv_dml(c, st);
    if (safe_as_is(k))
        return sqlc_emit_created(c, st);
    if ((!strcmp(k, "VacuumStmt") && !sqlc_is_true(st->body, "is_vacuumcmd")))
        return sqlc_emit_sql(c, st, NULL, NULL);
    const char *why = blocking_reason(st);
    if (why)
        return sqlc_fail(c, st, "cannot run online: %s", why);
    return sqlc_fail(c, st, "%s is not supported by the converter; write it as a {\"sql\": ...} operation if it is "
                "safe to run while the application does", k);
}

/* ---- the migration ---- */

static void sanitize_name(const char *src, char *dst)
{
    size_t n = 0;
    for (const char *p = src; *p && n < MAX_MIG_NAME; p++)
        dst[n++] = isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.' ? *p : '_';
    dst[n] = '\0';
}

static void file_stem(const char *file, char *out)
{
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", base);
    char *dot = strrchr(tmp, '.');
    if (dot && dot != tmp)
        *dot = '\0';
    sanitize_name(tmp, out);
}

static json_t *build_migration(struct conv *c, const char *file)
{
    char name[MAX_MIG_NAME + 1], parent[MAX_MIG_NAME + 1];
    if (c->opt && c->opt->name)
        snprintf(name, sizeof name, "%s", c->opt->name);
    else if (c->alembic_to[0])
        sanitize_name(c->alembic_to, name);
    else
        file_stem(file, name);
    parent[0] = '\0';
    if (c->opt && c->opt->parent)
        snprintf(parent, sizeof parent, "%s", c->opt->parent);
    else if (c->alembic_from[0])
        sanitize_name(c->alembic_from, parent);
    json_t *m = json_object();
    if (!m)
        return NULL;
    json_object_set_new(m, "name", json_string(name[0] ? name : "migration"));
    if (parent[0])
        json_object_set_new(m, "parent", json_string(parent));
    json_object_set(m, "operations", c->ops);
    return m;
}

int sqlc_is_sql_file(const char *path)
{
    size_t n = path ? strlen(path) : 0;
    return n > 4 && strcasecmp(path + n - 4, ".sql") == 0;
}

int sqlc_convert(const char *file, const char *text, size_t len, const struct sqlc_options *opt,
                 json_t **out, char *err, size_t errlen)
{
    struct conv c = {.opt = opt, .err = err, .errlen = errlen};
    *out = NULL;
    file = file ? file : "<input>";
    char *unrolled = NULL;
    int parsed = sql_script_parse(&c.s, file, text, len, err, errlen);
    if (parsed == 0)
        parsed = sqlc_unroll_do(&c, &unrolled);
    /* the DO blocks replaced by what they run, at the same lines */
    if (parsed == 0 && unrolled) {
        sql_script_free(&c.s);
        parsed = sql_script_parse(&c.s, file, unrolled, strlen(unrolled), err, errlen);
    }
    int had_do = unrolled != NULL;
    free(unrolled);
    if (parsed != 0) {
        sql_script_free(&c.s);
        return -1;
    }
    c.ops = json_array();
    int rc = c.ops ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < c.s.nstmts; i++)
        rc = conv_statement(&c, &c.s.stmts[i]);
    if (rc == 0)
        rc = sqlc_close_last(&c);
    if (rc == 0 && (sqlc_build_after_retypes(&c) != 0 || sqlc_renames_last(&c) != 0)) {
        snprintf(err, errlen, "%s:1:1: out of memory", file);
        rc = -1;
    }
    if (rc == 0 && json_array_size(c.ops) == 0) {
        if (had_do)
            snprintf(err, errlen, "%s:1:1: nothing to run on this database: its DO blocks skip every statement of "
                     "the file here (what they guard is already there), and a migration must change something; "
                     "leave the file out of what is started here", file);
        else
            snprintf(err, errlen, "%s:1:1: no statement to convert (only comments, BEGIN and COMMIT)", file);
        rc = -1;
    }
    if (rc == 0 && !(*out = build_migration(&c, file)))
        rc = -1;
    sqlc_forget_index_renames(&c);
    json_decref(c.last_ops);
    json_decref(c.rangevars);
    json_decref(c.unfolded);
    json_decref(c.ops);
    for (size_t i = 0; i < c.nknown; i++) {
        free(c.known[i].schema); free(c.known[i].table); free(c.known[i].column); free(c.known[i].type);
    }
    free(c.known);
    sql_script_free(&c.s);
    return rc;
}

/* The SQL converter's CREATE TABLE and CREATE INDEX: a table as
 * create_table when its column objects and table constraints can say all of
 * it (else as written, an `sql` operation a rollback undoes), its columns,
 * and an index as create_index with its keys, method, INCLUDE, WITH and
 * WHERE read from the parse tree. */
#include "sql_convert.h"
#include "sql_convert_conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration_sql.h"

/* ---- columns ---- */

static int fk_actions_default(json_t *con)
{
    return !strcmp(sqlc_str_or(con, "fk_upd_action", "a"), "a") && !strcmp(sqlc_str_or(con, "fk_del_action", "a"), "a") &&
           !strcmp(sqlc_str_or(con, "fk_matchtype", "s"), "s");
}

/* ON DELETE / ON UPDATE from the parse tree's action letter; NO ACTION, the
 * default, is left out. */
void sqlc_add_fk_action(json_t *ref, const char *key, const char *code)
{
    const char *action = mig_fk_action(code[0]);
    if (code[0] && !code[1] && strcmp(action, "NO ACTION") != 0)
        json_object_set_new(ref, key, json_string(action));
}

/* "table(column)" for a column REFERENCES in the same schema, else NULL
 * with why in *why. */
static char *references_text(json_t *con, const char *schema, const char **why)
{
    json_t *pk = json_object_get(con, "pktable");
    json_t *attrs = json_object_get(con, "pk_attrs");
    if (strcmp(sqlc_rel_schema(pk), schema) != 0) {
        *why = "it references a table in another schema";
        return NULL;
    }
    if (!fk_actions_default(con)) {
        *why = "its foreign key has ON DELETE/ON UPDATE actions or a MATCH type";
        return NULL;
    }
    if (json_array_size(attrs) > 1) {
        *why = "its foreign key spans several columns";
        return NULL;
    }
    const char *t = sqlc_str_or(pk, "relname", "");
    const char *col = json_array_size(attrs) ? sql_node_str(json_array_get(attrs, 0)) : NULL;
    size_t n = strlen(t) + (col ? strlen(col) : 0) + 3;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, col ? "%s(%s)" : "%s", t, col);
    return out;
}

/* A Constraint with only the given fields (plus harmless ones). */
int sqlc_plain_constraint(json_t *con)
{
    static const char *const harmless[] = {"contype", "location", "raw_expr", "keys", "fk_attrs", "pk_attrs",
                                           "pktable", "fk_matchtype", "fk_upd_action", "fk_del_action",
                                           "initially_valid", "generated_when", NULL};
    const char *k;
    json_t *v;
    json_object_foreach(con, k, v) {
        const char *const *h = harmless;
        while (*h && strcmp(*h, k) != 0)
            h++;
        if (!*h)
            return 0;
    }
    return 1;
}

/* ColumnDef -> migration column object. Returns 0, 1 when the column has
 * something the column object cannot say (*why set), -1 on failure. */
int sqlc_column_json(struct conv *c, const struct sql_stmt *st, json_t *def, const char *schema,
                       json_t **out, const char **why)
{
    static const char *const col_keys[] = {"colname", "typeName", "constraints", "is_local", "location", NULL};
    *out = NULL;
    const char *k;
    json_t *v;
    json_object_foreach(def, k, v) {
        const char *const *a = col_keys;
        while (*a && strcmp(*a, k) != 0)
            a++;
        if (!*a) {
            *why = !strcmp(k, "collClause") ? "it has a COLLATE clause"
                 : !strcmp(k, "identity") || !strcmp(k, "generated") ? "it is an identity or generated column"
                 : "it has clauses a column object cannot hold";
            return 1;
        }
    }
    char *type = sqlc_column_type_text(c, st, json_object_get(def, "typeName"));
    if (!type)
        return sqlc_fail(c, st, "cannot read the type of column \"%s\"", sqlc_str_or(def, "colname", "?"));
    json_t *col = json_object();
    json_object_set_new(col, "name", json_string(sqlc_str_or(def, "colname", "")));
    json_object_set_new(col, "type", json_string(type));
    free(type);
    size_t i;
    json_t *node;
    int rc = 0;
    json_array_foreach(json_object_get(def, "constraints"), i, node) {
        json_t *con = json_object_get(node, "Constraint");
        const char *ct = sqlc_str_or(con, "contype", "");
        if (json_object_get(con, "conname") || !sqlc_plain_constraint(con)) {
            *why = "it has a named or deferrable constraint";
            rc = 1;
        } else if (!strcmp(ct, "CONSTR_NOTNULL") || !strcmp(ct, "CONSTR_NULL")) {
            json_object_set_new(col, "nullable", json_boolean(!strcmp(ct, "CONSTR_NULL")));
        } else if (!strcmp(ct, "CONSTR_DEFAULT") || !strcmp(ct, "CONSTR_CHECK")) {
            const char *key = !strcmp(ct, "CONSTR_DEFAULT") ? "default" : "check";
            char *expr = sql_expr_text(&c->s, st, json_object_get(con, "raw_expr"));
            if (!expr) {
                json_decref(col);
                return sqlc_fail(c, st, "cannot read the %s of column \"%s\"", key, sqlc_str_or(def, "colname", "?"));
            }
            json_object_set_new(col, key, json_string(expr));
            free(expr);
        } else if (!strcmp(ct, "CONSTR_IDENTITY")) {
            const char *when = sqlc_str_or(con, "generated_when", "a");
            json_object_set_new(col, "identity", json_string(!strcmp(when, "a") ? "always" : "by_default"));
        } else if (!strcmp(ct, "CONSTR_GENERATED")) {
            char *expr = sql_expr_text(&c->s, st, json_object_get(con, "raw_expr"));
            if (!expr) {
                json_decref(col);
                return sqlc_fail(c, st, "cannot read the generation expression of column \"%s\"",
                            sqlc_str_or(def, "colname", "?"));
            }
            json_object_set_new(col, "generated", json_string(expr));
            free(expr);
        } else if (!strcmp(ct, "CONSTR_UNIQUE")) {
            json_object_set_new(col, "unique", json_true());
        } else if (!strcmp(ct, "CONSTR_PRIMARY")) {
            json_object_set_new(col, "primary_key", json_true());
        } else if (!strcmp(ct, "CONSTR_FOREIGN")) {
            char *ref = references_text(con, schema, why);
            if (ref)
                json_object_set_new(col, "references", json_string(ref));
            else
                rc = 1;
            free(ref);
        } else {
            *why = "it has a constraint a column object cannot hold";
            rc = 1;
        }
        if (rc)
            break;
    }
    if (rc) {
        json_decref(col);
        return rc;
    }
    *out = col;
    return 0;
}

static json_t *column_by_name(json_t *cols, const char *name)
{
    size_t i;
    json_t *col;
    json_array_foreach(cols, i, col) {
        if (!strcmp(sqlc_str_or(col, "name", ""), name))
            return col;
    }
    return NULL;
}

/* The column names of a constraint's keys as a JSON array. */
static json_t *name_array(json_t *names)
{
    json_t *arr = json_array();
    size_t i;
    json_t *n;
    json_array_foreach(names, i, n) {
        json_array_append_new(arr, json_string(sql_node_str(n) ? sql_node_str(n) : ""));
    }
    return arr;
}

/* A foreign key's "references" object {table, columns, on_delete,
 * on_update}, or NULL with why when the operation cannot say it. */
static json_t *references_json(json_t *con, const char *schema, const char **why)
{
    json_t *pk = json_object_get(con, "pktable");
    if (strcmp(sqlc_rel_schema(pk), schema) != 0) {
        *why = "its foreign key references a table in another schema";
        return NULL;
    }
    if (strcmp(sqlc_str_or(con, "fk_matchtype", "s"), "s") != 0) {
        *why = "its foreign key has a MATCH type";
        return NULL;
    }
    if (json_array_size(json_object_get(con, "pk_attrs")) == 0) {
        *why = "its foreign key does not name the referenced columns";
        return NULL;
    }
    json_t *ref = json_object();
    json_object_set_new(ref, "table", json_string(sqlc_str_or(pk, "relname", "")));
    json_object_set_new(ref, "columns", name_array(json_object_get(con, "pk_attrs")));
    sqlc_add_fk_action(ref, "on_delete", sqlc_str_or(con, "fk_del_action", "a"));
    sqlc_add_fk_action(ref, "on_update", sqlc_str_or(con, "fk_upd_action", "a"));
    return ref;
}

/* A table constraint of CREATE TABLE as an entry of create_table's
 * "constraints"; 0 done, 1 cannot (why set), -1 failed. */
static int table_constraint_json(struct conv *c, const struct sql_stmt *st, json_t *con, const char *schema,
                                 json_t *out, const char **why)
{
    const char *ct = sqlc_str_or(con, "contype", "");
    const char *name = json_string_value(json_object_get(con, "conname"));
    json_t *probe = json_deep_copy(con);
    json_object_del(probe, "conname");
    int plain = sqlc_plain_constraint(probe);
    json_decref(probe);
    const char *type = !strcmp(ct, "CONSTR_PRIMARY") ? "primary_key" : !strcmp(ct, "CONSTR_UNIQUE") ? "unique"
                     : !strcmp(ct, "CONSTR_FOREIGN") ? "foreign_key" : !strcmp(ct, "CONSTR_CHECK") ? "check" : NULL;
    if (!plain || !type) {
        *why = "it has a table constraint with options (DEFERRABLE, INCLUDE, NO INHERIT, EXCLUDE ...)";
        return 1;
    }
    json_t *k = json_object();
    json_object_set_new(k, "type", json_string(type));
    if (name)
        json_object_set_new(k, "name", json_string(name));
    if (!strcmp(type, "check")) {
        char *expr = sql_expr_text(&c->s, st, json_object_get(con, "raw_expr"));
        if (!expr) {
            json_decref(k);
            return sqlc_fail(c, st, "cannot read a CHECK expression");
        }
        json_object_set_new(k, "check", json_string(expr));
        free(expr);
    } else {
        int fk = !strcmp(type, "foreign_key");
        json_object_set_new(k, "columns", name_array(json_object_get(con, fk ? "fk_attrs" : "keys")));
        json_t *ref = fk ? references_json(con, schema, why) : NULL;
        if (fk && !ref) {
            json_decref(k);
            return 1;
        }
        if (ref)
            json_object_set_new(k, "references", ref);
    }
    json_array_append_new(out, k);
    return 0;
}

/* A table constraint folded into its single column; 0 done, 1 cannot. */
static int fold_table_constraint(struct conv *c, const struct sql_stmt *st, json_t *con, json_t *cols,
                                 const char *schema, const char **why)
{
    const char *ct = sqlc_str_or(con, "contype", "");
    json_t *keys = json_object_get(con, !strcmp(ct, "CONSTR_FOREIGN") ? "fk_attrs" : "keys");
    json_t *col = json_array_size(keys) == 1 ? column_by_name(cols, sql_node_str(json_array_get(keys, 0))) : NULL;
    if (!strcmp(ct, "CONSTR_CHECK"))
        col = json_array_get(cols, 0);  /* Postgres treats column and table checks alike */
    if (json_object_get(con, "conname") || !sqlc_plain_constraint(con) || !col) {
        *why = "it has a named or multi-column table constraint";
        return 1;
    }
    const char *key = !strcmp(ct, "CONSTR_PRIMARY") ? "primary_key" : !strcmp(ct, "CONSTR_UNIQUE") ? "unique"
                    : !strcmp(ct, "CONSTR_FOREIGN") ? "references" : !strcmp(ct, "CONSTR_CHECK") ? "check" : NULL;
    if (!key || json_object_get(col, key)) {
        *why = "it has a table constraint a column object cannot hold";
        return 1;
    }
    if (!strcmp(key, "primary_key") || !strcmp(key, "unique")) {
        json_object_set_new(col, key, json_true());
        return 0;
    }
    char *text = !strcmp(key, "check") ? sql_expr_text(&c->s, st, json_object_get(con, "raw_expr"))
                                       : references_text(con, schema, why);
    if (!text)
        return !strcmp(key, "check") ? sqlc_fail(c, st, "cannot read a CHECK expression") : 1;
    json_object_set_new(col, key, json_string(text));
    free(text);
    return 0;
}

struct made_table *sqlc_made_table(struct conv *c, json_t *rel)
{
    const char *schema = sqlc_rel_schema(rel), *name = sqlc_str_or(rel, "relname", "");
    for (size_t i = 0; i < c->nmade; i++)
        if (!strcmp(c->made[i].schema, schema) && !strcmp(c->made[i].name, name))
            return &c->made[i];
    return NULL;
}

/* Later statements on the table run as written: the running release
 * cannot know a table this migration creates. */
static void remember_made(struct conv *c, json_t *rel, int planned)
{
    if (c->nmade >= sizeof c->made / sizeof c->made[0])
        return;
    struct made_table *t = &c->made[c->nmade++];
    sqlc_copy_name(t->schema, sqlc_rel_schema(rel));
    sqlc_copy_name(t->name, sqlc_str_or(rel, "relname", ""));
    t->planned = planned;
}

/* CREATE TABLE as create_table when the column objects can say all of it;
 * otherwise as `sql` (a new table blocks nobody), dropped on rollback. */
int sqlc_create_table(struct conv *c, const struct sql_stmt *st)
{
    static const char *const plain_keys[] = {"relation", "tableElts", "oncommit", "if_not_exists", NULL};
    json_t *rel = json_object_get(st->body, "relation");
    const char *schema = sqlc_rel_schema(rel), *table = sqlc_str_or(rel, "relname", "");
    const char *why = NULL;
    if (sqlc_refuse_freed_table(c, st, rel))
        return -1;
    json_t *cols = json_array();
    if (!cols)
        return sqlc_oom(c, st);
    if (!sql_only_keys(st->body, plain_keys) || strcmp(sqlc_str_or(rel, "relpersistence", "p"), "p") != 0)
        why = "it has table options (inheritance, partitioning, storage, persistence)";
    size_t i;
    json_t *elt;
    json_array_foreach(json_object_get(st->body, "tableElts"), i, elt) {
        if (why)
            break;
        json_t *def = json_object_get(elt, "ColumnDef"), *con = json_object_get(elt, "Constraint");
        json_t *col = NULL;
        int rc = def ? sqlc_column_json(c, st, def, schema, &col, &why) : con ? 0 : 1;
        if (rc < 0) {
            json_decref(cols);
            return -1;
        }
        if (!def && !con)
            why = "it has LIKE clauses";
        if (col)
            json_array_append_new(cols, col);
    }
    json_t *cons = json_array();
    json_array_foreach(json_object_get(st->body, "tableElts"), i, elt) {
        json_t *con = json_object_get(elt, "Constraint");
        if (why || !con)
            continue;
        const char *unfolded = NULL;
        int rc = fold_table_constraint(c, st, con, cols, schema, &unfolded);
        if (rc > 0)
            rc = table_constraint_json(c, st, con, schema, cons, &why);
        if (rc < 0) {
            json_decref(cols);
            json_decref(cons);
            return -1;
        }
    }
    size_t n = json_array_size(cols);
    for (i = 0; !why && i < n; i++) {
        json_t *col = json_array_get(cols, i);
        if (sqlc_remember_column(c, schema, table, sqlc_str_or(col, "name", ""), sqlc_str_or(col, "type", "")) != 0) {
            json_decref(cols);
            return sqlc_oom(c, st);
        }
    }
    if (why || n == 0) {
        json_decref(cols);
        json_decref(cons);
        char *q = sql_ident(table), *qs = sql_ident(schema);
        char down[300];
        snprintf(down, sizeof down, "DROP TABLE IF EXISTS %s.%s", qs ? qs : "", q ? q : "");
        free(q);
        free(qs);
        remember_made(c, rel, 0);
        return sqlc_emit_sql(c, st, NULL, down);
    }
    if (sqlc_close_last(c) != 0) {
        json_decref(cols);
        json_decref(cons);
        return -1;
    }
    json_t *body = json_object();
    sqlc_set_relation(body, rel, "table");
    json_object_set_new(body, "columns", cols);
    if (json_array_size(cons))
        json_object_set_new(body, "constraints", cons);
    else
        json_decref(cons);
    remember_made(c, rel, 1);
    return sqlc_add_op(c, "create_table", body) == 0 ? 0 : sqlc_oom(c, st);
}

/* One IndexElem as create_index key text: the column or the expression (in
 * parentheses, as the author wrote it), then COLLATE, the operator class and
 * the order, all read from the parse tree. *plain: a bare column name. */
static char *index_key_text(struct conv *c, const struct sql_stmt *st, json_t *e, int *plain)
{
    static const char *const elem_keys[] = {"name", "expr", "collation", "opclass", "ordering", "nulls_ordering",
                                            NULL};
    const char *col = json_string_value(json_object_get(e, "name"));
    const char *ord = sqlc_str_or(e, "ordering", "SORTBY_DEFAULT");
    const char *nulls = sqlc_str_or(e, "nulls_ordering", "SORTBY_NULLS_DEFAULT");
    if (!sql_only_keys(e, elem_keys))
        return NULL;    /* operator class options: not carried */
    *plain = col && !json_object_get(e, "collation") && !json_object_get(e, "opclass") &&
             !strcmp(ord, "SORTBY_DEFAULT") && !strcmp(nulls, "SORTBY_NULLS_DEFAULT");
    struct mig_str s = {0};
    char *base = col ? sql_ident(col) : sql_expr_text(&c->s, st, json_object_get(e, "expr"));
    if (!base)
        return NULL;
    mig_str_addf(&s, col ? "%s" : "(%s)", base);
    free(base);
    if (json_object_get(e, "collation")) {
        mig_str_add(&s, " COLLATE ");
        sqlc_add_dotted(&s, json_object_get(e, "collation"));
    }
    if (json_object_get(e, "opclass")) {
        mig_str_add(&s, " ");
        sqlc_add_dotted(&s, json_object_get(e, "opclass"));
    }
    mig_str_add(&s, !strcmp(ord, "SORTBY_ASC") ? " ASC" : !strcmp(ord, "SORTBY_DESC") ? " DESC" : "");
    mig_str_add(&s, !strcmp(nulls, "SORTBY_NULLS_FIRST") ? " NULLS FIRST"
                    : !strcmp(nulls, "SORTBY_NULLS_LAST") ? " NULLS LAST" : "");
    return mig_str_take(&s);
}

/* WITH (fillfactor = 70, deduplicate_items = off) as storage_parameters. */
static char *storage_parameters_text(json_t *options)
{
    struct mig_str s = {0};
    size_t i;
    json_t *o;
    json_array_foreach(options, i, o) {
        json_t *d = json_object_get(o, "DefElem"), *arg = json_object_get(d, "arg");
        const char *name = json_string_value(json_object_get(d, "defname"));
        json_t *integer = json_object_get(arg, "Integer"), *fval = sql_get(arg, "Float.fval");
        const char *sval = json_string_value(sql_get(arg, "String.sval"));
        json_t *word = sql_get(arg, "TypeName.names");     /* a bare word: off, on */
        if (!sval && json_array_size(word) == 1)
            sval = sql_node_str(json_array_get(word, 0));
        if (!name || json_object_get(d, "defnamespace") || !(integer || json_is_string(fval) || sval)) {
            mig_str_free(&s);
            return NULL;
        }
        char *ident = sql_ident(name);
        mig_str_addf(&s, "%s%s = ", i ? ", " : "", ident ? ident : "");
        free(ident);
        if (integer)    /* the parse tree leaves out an ival of 0 */
            mig_str_addf(&s, "%lld", (long long)json_integer_value(json_object_get(integer, "ival")));
        else if (fval)
            mig_str_add(&s, json_string_value(fval));
        else
            mig_str_literal(&s, sval);
    }
    return mig_str_take(&s);
}

int sqlc_create_index(struct conv *c, const struct sql_stmt *st)
{
    static const char *const known_keys[] = {"idxname", "relation", "accessMethod", "indexParams", "unique",
                                             "concurrent", "whereClause", "if_not_exists", "indexIncludingParams",
                                             "options", NULL};
    static const char *const methods[] = {"btree", "hash", "gin", "gist", "spgist", "brin", NULL};
    const char *name = json_string_value(json_object_get(st->body, "idxname"));
    struct made_table *made = sqlc_made_table(c, json_object_get(st->body, "relation"));
    if (made && !made->planned) {
        /* the plan does not know this table by this name: the index is built as written, on a table no
         * release uses yet, inside the expand's transaction, where CONCURRENTLY cannot run and would
         * spare no one a lock (58841-178) */
        if (!sqlc_is_true(st->body, "concurrent"))
            return sqlc_emit_on_made(c, st, NULL, made);  /* the index may use what the file made after the table */
        char *text = sql_stmt_text(&c->s, st), *plain = text ? sql_index_not_concurrently(text) : NULL;
        free(text);
        if (!plain)
            return sqlc_fail(c, st, "the table is created by this migration and no release uses it yet: write "
                             "CREATE INDEX without CONCURRENTLY (it runs inside the expand's transaction)");
        int rc = sqlc_emit_on_made(c, st, plain, made);
        free(plain);
        return rc;
    }
    if (!sql_only_keys(st->body, known_keys))
        return sqlc_fail(c, st, "an index with TABLESPACE or NULLS NOT DISTINCT cannot be converted to create_index");
    if (!name)
        return sqlc_fail(c, st, "name the index: create_index needs a name");
    const char *method = sqlc_str_or(st->body, "accessMethod", "btree");
    const char *const *m = methods;
    while (*m && strcmp(*m, method) != 0)
        m++;
    if (!*m)
        return sqlc_fail(c, st, "index method \"%s\" is not supported by create_index", method);
    json_t *cols = json_array(), *keys = json_array(), *include = json_array();
    int all_plain = 1;
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(st->body, "indexParams"), i, p) {
        int plain = 0;
        char *key = index_key_text(c, st, json_object_get(p, "IndexElem"), &plain);
        if (!key) {
            json_decref(cols); json_decref(keys); json_decref(include);
            return sqlc_fail(c, st, "index \"%s\": key %zu cannot be read (operator class options are not carried)",
                        name, i + 1);
        }
        all_plain &= plain;
        json_array_append_new(keys, json_string(key));
        free(key);
        const char *column = json_string_value(sql_get(p, "IndexElem.name"));
        json_array_append_new(cols, json_string(column ? column : ""));
    }
    json_array_foreach(json_object_get(st->body, "indexIncludingParams"), i, p) {
        json_array_append_new(include, json_string(sqlc_str_or(json_object_get(p, "IndexElem"), "name", "")));
    }
    char *where = NULL, *params = NULL;
    json_t *wc = json_object_get(st->body, "whereClause"), *opts = json_object_get(st->body, "options");
    int bad_where = wc && !(where = sql_expr_text(&c->s, st, wc));
    int bad_opts = opts && !(params = storage_parameters_text(opts));
    if (bad_where || bad_opts || sqlc_close_last(c) != 0) {
        json_decref(cols); json_decref(keys); json_decref(include);
        free(where);
        free(params);
        return bad_where ? sqlc_fail(c, st, "cannot read the WHERE clause of index \"%s\"", name)
               : bad_opts ? sqlc_fail(c, st, "cannot read the storage parameters WITH (...) of index \"%s\"", name)
               : -1;
    }
    json_t *body = json_object();
    sqlc_set_relation(body, json_object_get(st->body, "relation"), "table");
    json_object_set_new(body, "name", json_string(name));
    json_object_set_new(body, all_plain ? "columns" : "keys", all_plain ? cols : keys);
    json_decref(all_plain ? keys : cols);
    if (json_array_size(include))
        json_object_set(body, "include", include);
    json_decref(include);
    if (sqlc_is_true(st->body, "unique"))
        json_object_set_new(body, "unique", json_true());
    if (strcmp(method, "btree") != 0)
        json_object_set_new(body, "method", json_string(method));
    if (params)
        json_object_set_new(body, "storage_parameters", json_string(params));
    if (where)
        json_object_set_new(body, "where", json_string(where));
    free(params);
    free(where);
    return sqlc_add_op(c, "create_index", body) == 0 ? 0 : sqlc_oom(c, st);
}

/* What an enum value's removal meets: Postgres has no statement for it;
 * editing pg_enum, or replacing the type (drizzle-kit: the column to text,
 * DROP TYPE, CREATE TYPE without the value, the column back), breaks the
 * running release. */
/* A data statement (INSERT, UPDATE, DELETE) after a change of its table
 * that the table itself takes only at the contract: until then the table
 * keeps what the old release relies on, and only the new shape (its view,
 * its second column) has the change. A change of a column's type (the old
 * release writes the old type, the new values go to a second column), a
 * column dropped (its NOT NULL and default still hold for what is
 * written), NOT NULL dropped, a default set or dropped (the table keeps the
 * old release's default), a constraint or unique index dropped (it checks
 * what is written until then; a foreign key of another table referencing
 * this one still acts on its DELETEs and key UPDATEs): run at expand, the
 * statement would meet the table as the file found it, not as the
 * statements above it left it, and end elsewhere than offline (the old
 * default in the rows an INSERT writes, a NULL refused, 'text' into a
 * bigint after DDL had run, a duplicate refused, a referencing row set to
 * NULL).
 *
 * One rule for all of them: the statement runs at complete, in the
 * contract after the changes above it were made to the table, where it
 * sees the file's state as Postgres would (and every row the old release
 * wrote in between, as offline it would see them before). Only what the
 * statement's outcome depends on counts: beside a NOT NULL dropped, a
 * statement that cannot write NULL into that column (an UPDATE of other
 * columns, a DELETE) sees the same rows at expand as offline, and keeps
 * its place before what the file builds on those rows; so does an UPDATE
 * of columns a dropped constraint does not check (asked of the live
 * catalog; without one, it waits), and an UPDATE or DELETE that neither
 * reads nor writes a column retyped above. Once one data
 * statement of a table waits, the ones after it on that table wait too,
 * so they still run in the file's order. A later
 * statement of the file that checks the table's rows before the contract
 * (a constraint, NOT NULL, a unique index) would then meet them before the
 * statement wrote them: the file is refused before anything runs, naming
 * the statement, the change it waits for and what to write instead. */
#include "migration_sql.h"
#include "sql_convert.h"
#include "sql_convert_conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A DEFAULT anywhere in the statement's tree (SET c = DEFAULT, VALUES
 * (DEFAULT, ...)). */
static int has_set_to_default(json_t *node)
{
    if (json_is_object(node)) {
        const char *key;
        json_t *v;
        json_object_foreach(node, key, v) {
            if (!strcmp(key, "SetToDefault") || has_set_to_default(v))
                return 1;
        }
    } else if (json_is_array(node)) {
        size_t i;
        json_t *v;
        json_array_foreach(node, i, v) {
            if (has_set_to_default(v))
                return 1;
        }
    }
    return 0;
}

/* Whether a list of ResTargets names column: an UPDATE's SET list
 * ("targetList", a (a, b) = (...) assignment too) or an INSERT's column
 * list ("cols"). */
static int names_column(const struct sql_stmt *st, const char *list, const char *column)
{
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(st->body, list), i, t) {
        if (!strcmp(sqlc_str_or(json_object_get(t, "ResTarget"), "name", ""), column))
            return 1;
    }
    return 0;
}

struct touch {
    const char *column;
    json_t *rel;    /* the statement's table */
};

static int touches(json_t *parent, const char *key, json_t *node, void *arg)
{
    const struct touch *t = arg;
    (void)parent;
    if (json_is_string(node))
        return !strcmp(json_string_value(node), t->column);
    if (key && !strcmp(key, "A_Star"))
        return 1;
    json_t *fields = key && !strcmp(key, "ColumnRef") ? json_object_get(node, "fields") : NULL;
    const char *one = json_array_size(fields) == 1 ? sql_node_str(json_array_get(fields, 0)) : NULL;
    return one && (!strcmp(one, sqlc_str_or(t->rel, "relname", "")) ||
                   !strcmp(one, sqlc_str_or(json_object_get(t->rel, "alias"), "aliasname", "")));
}

/* Whether st may read or write column: names it anywhere (a string of
 * that text counts too), or reads whole rows (a star, a row by the name or
 * alias of its table: to_jsonb(t), t IS NULL). */
static int may_touch(const struct sql_stmt *st, const char *column)
{
    struct touch t = {column, json_object_get(st->body, "relation")};
    return sqlc_tree_any(st->body, NULL, NULL, touches, &t);
}

/* Whether the rows the statement writes depend on column's default: an
 * INSERT that leaves the column out (or has no column list: DEFAULT
 * VALUES, a DEFAULT among its values), or any DEFAULT it writes. */
static int writes_default(const struct sql_stmt *st, const char *column)
{
    if (has_set_to_default(st->body))
        return 1;
    return !strcmp(st->kind, "InsertStmt") && !names_column(st, "cols", column);
}

/* ---- what a dropped constraint checks, asked of the live catalog ---- */

/* The statement's table, and the columns it writes, by their names before
 * the file (the catalog's): an UPDATE's SET list, an INSERT's column list
 * (none: every column). */
struct written {
    const char *schema;
    char table[SQLC_NAME_LEN];
    char *columns;      /* "ARRAY['a', ...]::name[]", or NULL for every column */
};

static void written_of(const struct conv *c, const struct sql_stmt *st, json_t *rel, struct written *w)
{
    w->schema = sqlc_rel_schema(rel);
    sqlc_copy_name(w->table, sqlc_str_or(rel, "relname", ""));
    char none[SQLC_NAME_LEN] = "";
    sqlc_names_before_file(c, w->schema, w->table, none);
    json_t *list = json_object_get(st->body, strcmp(st->kind, "UpdateStmt") ? "cols" : "targetList");
    w->columns = NULL;
    if (!json_array_size(list))
        return;
    struct mig_str s = {0};
    mig_str_add(&s, "ARRAY[");
    size_t i;
    json_t *t;
    json_array_foreach(list, i, t) {
        char table[SQLC_NAME_LEN], column[SQLC_NAME_LEN];
        sqlc_copy_name(table, sqlc_str_or(rel, "relname", ""));
        sqlc_copy_name(column, sqlc_str_or(json_object_get(t, "ResTarget"), "name", ""));
        sqlc_names_before_file(c, w->schema, table, column);
        mig_str_add(&s, i ? ", " : "");
        mig_str_literal(&s, column);
    }
    mig_str_add(&s, "]::name[]");
    w->columns = mig_str_take(&s);
}

/* Asks the catalog; unknown (no catalog, or it failed) gives dflt. */
static int catalog_says(const struct conv *c, struct mig_str *sql, int dflt)
{
    const struct sqlc_options *o = c->opt;
    char *text = mig_str_take(sql);
    int on = dflt;
    char why[256];
    if (!text || !o || !o->catalog_bool || o->types_stand_in ||
        o->catalog_bool(o->column_type_arg, text, &on, why, sizeof why) != 0)
        on = dflt;
    free(text);
    return on;
}

static void add_relation(struct mig_str *s, const char *alias, const char *schema, const char *table)
{
    mig_str_addf(s, " AND %s.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = ", alias);
    mig_str_literal(s, schema);
    mig_str_addf(s, ") AND %s.relname = ", alias);
    mig_str_literal(s, table);
}

/* Whether constraint name of the statement's table checks a column the
 * statement writes. One the catalog does not know (the file made it)
 * counts, as does every constraint when the catalog cannot be asked. */
static int constraint_checks(const struct conv *c, const struct written *w, const char *name)
{
    struct mig_str s = {0};
    mig_str_add(&s, "SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class t ON "
                    "t.oid = k.conrelid WHERE k.conname = ");
    mig_str_literal(&s, name);
    add_relation(&s, "t", w->schema, w->table);
    mig_str_add(&s, ") OR EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class t ON t.oid = "
                    "k.conrelid JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY (k.conkey) "
                    "WHERE k.conname = ");
    mig_str_literal(&s, name);
    add_relation(&s, "t", w->schema, w->table);
    if (w->columns)
        mig_str_addf(&s, " AND a.attname = ANY (%s)", w->columns);
    mig_str_add(&s, ")");
    return catalog_says(c, &s, 1);
}

/* Whether the dropped index name is a unique index of the statement's
 * table on a column it writes (an expression's columns unknown: any). */
static int unique_index_checks(const struct conv *c, const struct written *w, const char *schema, const char *name)
{
    struct mig_str s = {0};
    mig_str_add(&s, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = "
                    "i.indexrelid JOIN pg_catalog.pg_class t ON t.oid = i.indrelid WHERE i.indisunique");
    add_relation(&s, "ic", schema, name);
    add_relation(&s, "t", w->schema, w->table);
    if (w->columns)
        mig_str_addf(&s, " AND (0 = ANY (i.indkey::int2[]) OR i.indpred IS NOT NULL OR EXISTS (SELECT 1 FROM "
                     "pg_catalog.pg_attribute a WHERE a.attrelid = t.oid AND a.attnum = ANY (i.indkey::int2[]) AND "
                     "a.attname = ANY (%s)))", w->columns);
    mig_str_add(&s, ")");
    return catalog_says(c, &s, 1);
}

/* Whether a foreign key of table schema.from (the one named name, or the
 * one on column, or any) references the statement's table, on a key column
 * it writes (an UPDATE; a DELETE reaches every key, and every table its
 * cascades delete from). Unknown: no. */
static int key_references(const struct conv *c, const struct written *w, int del, const char *schema,
                          const char *from, const char *name, const char *column)
{
    struct mig_str s = {0};
    /* a DELETE reaches every table its ON DELETE CASCADE keys delete from,
     * at any depth, and meets their keys too */
    mig_str_add(&s, "WITH RECURSIVE reach(oid) AS (SELECT c.oid FROM pg_catalog.pg_class c WHERE true");
    add_relation(&s, "c", w->schema, w->table);
    mig_str_addf(&s, "%s) SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class t ON "
                 "t.oid = k.conrelid JOIN pg_catalog.pg_class r ON r.oid = k.confrelid WHERE k.contype = 'f' AND "
                 "r.oid IN (SELECT oid FROM reach)",
                 del ? " UNION SELECT k.conrelid FROM pg_catalog.pg_constraint k JOIN reach ON k.confrelid = reach.oid "
                       "WHERE k.contype = 'f' AND k.confdeltype = 'c'" : "");
    add_relation(&s, "t", schema, from);
    if (name) {
        mig_str_add(&s, " AND k.conname = ");
        mig_str_literal(&s, name);
    }
    if (column) {
        mig_str_add(&s, " AND (SELECT attnum FROM pg_catalog.pg_attribute WHERE attrelid = t.oid AND attname = ");
        mig_str_literal(&s, column);
        mig_str_add(&s, ") = ANY (k.conkey)");
    }
    if (!del && w->columns)
        mig_str_addf(&s, " AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = r.oid AND "
                     "a.attnum = ANY (k.confkey) AND a.attname = ANY (%s))", w->columns);
    mig_str_add(&s, ")");
    return catalog_says(c, &s, 0);
}

/* A drop above, of a constraint or unique index that still checks what
 * the statement writes until the contract, or of a foreign key (with its
 * table or column) still acting on the rows it deletes or whose keys it
 * changes. op is on the table the statement writes when own. */
static int drop_checks(const struct conv *c, const struct sql_stmt *st, const struct written *w, json_t *op,
                       int own, char *what, size_t n)
{
    int del = !strcmp(st->kind, "DeleteStmt");
    json_t *body;
    if ((body = json_object_get(op, "drop_constraint"))) {
        const char *name = sqlc_str_or(body, "name", "");
        if (own && !del && constraint_checks(c, w, name)) {
            snprintf(what, n, "constraint \"%s\" is dropped above (it checks the rows written until then) and this "
                     "statement writes what it checks", name);
            return 1;
        }
        char from[SQLC_NAME_LEN], none[SQLC_NAME_LEN] = "";
        const char *schema = sqlc_str_or(body, "schema", "public");
        sqlc_copy_name(from, sqlc_str_or(body, "table", ""));
        sqlc_names_before_file(c, schema, from, none);
        if (!strcmp(st->kind, "InsertStmt") || !key_references(c, w, del, schema, from, name, NULL))
            return 0;
        snprintf(what, n, "foreign key \"%s\" of \"%s\" referencing it (or a table its cascades delete from) is "
                 "dropped above (its ON DELETE or ON UPDATE action or its check holds until then) and this statement %s",
                 name,
                 sqlc_str_or(body, "table", ""), del ? "deletes rows it references" : "changes keys it references");
        return 1;
    }
    if ((body = json_object_get(op, "drop_index"))) {
        const char *name = sqlc_str_or(body, "name", "");
        if (del || !unique_index_checks(c, w, sqlc_str_or(body, "schema", "public"), name))
            return 0;
        snprintf(what, n, "unique index \"%s\" is dropped above (it checks the rows written until then) and this "
                 "statement writes what it checks", name);
        return 1;
    }
    int table = json_object_get(op, "drop_table") != NULL;
    if (!table && !(body = json_object_get(op, "drop_column")))
        return 0;
    if (table)
        body = json_object_get(op, "drop_table");
    if (!strcmp(st->kind, "InsertStmt") || (own && !table))
        return 0;
    char from[SQLC_NAME_LEN], column[SQLC_NAME_LEN];
    const char *schema = sqlc_str_or(body, "schema", "public");
    sqlc_copy_name(from, sqlc_str_or(body, "table", ""));
    sqlc_copy_name(column, table ? "" : sqlc_str_or(body, "column", ""));
    sqlc_names_before_file(c, schema, from, column);
    if (!key_references(c, w, del, schema, from, NULL, table ? NULL : column))
        return 0;
    snprintf(what, n, "a foreign key of \"%s\" referencing it goes with the %s dropped above (it acts until then) "
             "and this statement %s", sqlc_str_or(body, "table", ""), table ? "table" : "column",
             del ? "deletes rows it references" : "changes keys it references");
    return 1;
}

/* A change of the statement's own table (kind, body: an operation on it)
 * that the table takes only at the contract and that the statement's
 * outcome depends on, described into what. */
static int own_change(const struct sql_stmt *st, const char *kind, json_t *body, char *what, size_t n)
{
    int insert = !strcmp(st->kind, "InsertStmt");
    int alter = !strcmp(kind, "alter_column");
    const char *col = sqlc_str_or(body, alter || !strcmp(kind, "drop_column") ? "column" : "to", "?");
    /* an UPDATE or DELETE that neither reads nor writes the retyped column
     * meets the same rows at expand as offline (90011-8); an INSERT writes
     * the column anyway, its default if nothing else */
    if ((alter || !strcmp(kind, "rename_column")) && json_object_get(body, "type") &&
        (insert || may_touch(st, col))) {
        snprintf(what, n, "the type of \"%s\" changes above (the column keeps its old type for the old "
                 "release until then)", col);
        return 1;
    }
    if (!alter && !(insert && !strcmp(kind, "drop_column")))
        return 0;
    if (!alter) {
        snprintf(what, n, "\"%s\" is dropped above (its NOT NULL and default hold for the rows written "
                 "until then)", col);
        return 1;
    }
    if (json_is_true(json_object_get(body, "nullable")) &&
        (insert || (!strcmp(st->kind, "UpdateStmt") && names_column(st, "targetList", col)))) {
        snprintf(what, n, "NOT NULL of \"%s\" is dropped above (the old release may rely on it until "
                 "then) and this statement may write NULL into it", col);
        return 1;
    }
    if (json_object_get(body, "default") && writes_default(st, col)) {
        snprintf(what, n, "the default of \"%s\" changes above (the table keeps the old release's until "
                 "then) and this statement writes it", col);
        return 1;
    }
    return 0;
}

/* The last change an operation above makes that the statement's table
 * (rel, followed back through the file's renames of it) takes only at the
 * contract and that the statement's outcome depends on, described into
 * what; 0 when there is none. */
static int change_before(struct conv *c, const struct sql_stmt *st, json_t *rel, char *what, size_t n)
{
    struct written w;
    written_of(c, st, rel, &w);
    /* rel under the name the table had at each operation, walking back */
    json_t *then = json_pack("{s:s, s:s}", "schemaname", sqlc_rel_schema(rel), "relname",
                             sqlc_str_or(rel, "relname", ""));
    int found = 0;
    for (size_t i = json_array_size(c->ops); then && !found && i-- > 0;) {
        json_t *op = json_array_get(c->ops, i), *body;
        json_t *renamed = json_object_get(op, "rename_table");
        const char *kind;
        if (renamed && !strcmp(sqlc_str_or(renamed, "schema", "public"), sqlc_rel_schema(then)) &&
            !strcmp(sqlc_str_or(renamed, "to", ""), sqlc_str_or(then, "relname", ""))) {
            json_object_set_new(then, "relname", json_string(sqlc_str_or(renamed, "from", "")));
            continue;
        }
        int own = sqlc_op_on(op, then, &kind, &body);
        found = drop_checks(c, st, &w, op, own, what, n) || (own && own_change(st, kind, body, what, n));
    }
    json_decref(then);
    free(w.columns);
    return found;
}

/* A later statement of the file on the table that checks the rows there
 * before the contract (a constraint validated, NOT NULL, a unique index, a
 * type's backfill): it would meet them before this statement, run at
 * complete, wrote them. A plain index is kept up by the writes whenever
 * they come; another data statement waits the same way. */
static int builds_on_rows(const struct sql_stmt *o)
{
    if (!strcmp(o->kind, "UpdateStmt") || !strcmp(o->kind, "DeleteStmt") || !strcmp(o->kind, "InsertStmt"))
        return 0;
    return strcmp(o->kind, "IndexStmt") || sqlc_is_true(o->body, "unique");
}

/* Whether a data statement of rel above runs at complete. */
static int waits_on(const struct conv *c, json_t *rel)
{
    for (size_t i = 0; i < c->ndeferred_data; i++)
        if (!strcmp(c->deferred_data[i].schema, sqlc_rel_schema(rel)) &&
            !strcmp(c->deferred_data[i].table, sqlc_str_or(rel, "relname", "")))
            return 1;
    return 0;
}

static int remember_waits(struct conv *c, const struct sql_stmt *st, json_t *rel)
{
    if (waits_on(c, rel))
        return 0;
    if (c->ndeferred_data == sizeof c->deferred_data / sizeof c->deferred_data[0])
        return sqlc_fail(c, st, "data statements of too many tables run at complete in one file; split the file");
    sqlc_copy_name(c->deferred_data[c->ndeferred_data].schema, sqlc_rel_schema(rel));
    sqlc_copy_name(c->deferred_data[c->ndeferred_data].table, sqlc_str_or(rel, "relname", ""));
    c->ndeferred_data++;
    return 0;
}

int sqlc_dml_waits(struct conv *c, const struct sql_stmt *st, json_t *rel)
{
    char what[400];
    if (!change_before(c, st, rel, what, sizeof what)) {
        if (!waits_on(c, rel))
            return 0;
        snprintf(what, sizeof what, "a data statement above on it runs at complete, and this one keeps its place "
                 "after it");
    }
    for (const struct sql_stmt *o = st + 1; o < c->s.stmts + c->s.nstmts; o++) {
        json_t *orel = json_object_get(o->body, "relation");
        if (!orel || !sqlc_same_relation(orel, rel) || !builds_on_rows(o))
            continue;
        return sqlc_fail(c, st, "on \"%s\", %s: this statement runs at complete, in the contract, where it "
                         "sees the change as offline, which is after what a later statement of the file (line %d) "
                         "builds on the table; put the statement after those, or in a migration of its own "
                         "after this one", sqlc_str_or(rel, "relname", "?"), what, o->line);
    }
    if (remember_waits(c, st, rel) != 0)
        return -1;
    return sqlc_emit_sql(c, st, "complete", NULL) == 0 ? 1 : -1;
}

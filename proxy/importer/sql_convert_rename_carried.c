/* ALTER INDEX x RENAME TO y where x is an index on a column the file
 * retypes (ALTER COLUMN ... TYPE) or renames (which the plan may carry to
 * a second column too), above or below it. Offline the retype rebuilds x in
 * place, and the rename names the rebuilt index. Online the retype writes
 * a second column with its own copy of x, which takes the name x at the
 * contract when the old column goes with its index; run at expand, the
 * rename would reach the old column's index, dropped at the contract, and
 * the copy would keep the name x (the copy of a retype below is made from
 * the catalog, under the name x too). So the rename runs at complete, last,
 * after the contract gave the copy its name: where Postgres leaves it. Whether
 * x is on such a column is read on the live catalog (its key columns, or
 * the columns its expressions and predicate depend on); without a catalog
 * the rename stays as written. A later statement of the file that names
 * either name would meet it before the rename ran: the file is refused
 * before anything runs, saying what to write instead. */
#include <stdlib.h>
#include <string.h>

#include "migration_sql.h"
#include "sql_convert.h"
#include "sql_convert_conv.h"

/* One (table, column) pair of a retype above as SQL: "(tn.nspname = ...
 * AND t.relname = ... AND a.attname = ...)"; 0 when op is no retype. */
static int add_retyped(const struct conv *c, struct mig_str *s, json_t *op, int first)
{
    json_t *body = json_object_get(op, "alter_column");
    const char *column = sqlc_str_or(body, "column", NULL);
    if (!body) {
        body = json_object_get(op, "rename_column");
        column = sqlc_str_or(body, "from", NULL);
    }
    /* a rename of a column counts with or without a type: the plan may
     * carry it to a second column for a dependent only it sees (a CHECK
     * made on its new name, 90003-413); at complete, after an in-place
     * rename, the index's rename ends the same */
    if (!body || !column || (!json_object_get(body, "type") && !json_object_get(op, "rename_column")) ||
        json_is_true(json_object_get(body, "recreate")))
        return 0;
    /* the catalog knows them by their names before the file (a rename of
     * the table moves in front of the change, which then names it so) */
    char table[SQLC_NAME_LEN], col[SQLC_NAME_LEN];
    sqlc_copy_name(table, sqlc_str_or(body, "table", ""));
    sqlc_copy_name(col, column);
    sqlc_names_before_file(c, sqlc_str_or(body, "schema", "public"), table, col);
    mig_str_add(s, first ? "(" : " OR (");
    mig_str_add(s, "tn.nspname = ");
    mig_str_literal(s, sqlc_str_or(body, "schema", "public"));
    mig_str_add(s, " AND t.relname = ");
    mig_str_literal(s, table);
    mig_str_add(s, " AND a.attname = ");
    mig_str_literal(s, col);
    mig_str_add(s, ")");
    return 1;
}

/* "tn.nspname = ... AND t.relname = ... AND a.attname = ...)" of rel's column. */
static void add_pair(struct mig_str *s, json_t *rel, const char *column)
{
    mig_str_add(s, "tn.nspname = ");
    mig_str_literal(s, sqlc_rel_schema(rel));
    mig_str_add(s, " AND t.relname = ");
    mig_str_literal(s, sqlc_str_or(rel, "relname", ""));
    mig_str_add(s, " AND a.attname = ");
    mig_str_literal(s, column);
    mig_str_add(s, ")");
}

/* The (table, column) pairs of the ALTER COLUMN ... TYPE and RENAME
 * COLUMN of statements after st, as SQL like add_retyped's: below the rename, the retype's copy
 * of the index is made from the catalog under the index's name before the
 * file, which it takes at the contract, so the rename must come after
 * that too. Names as the statements write them (a table renamed between
 * is not followed). */
static int add_retyped_below(const struct conv *c, const struct sql_stmt *st, struct mig_str *s, int any)
{
    for (const struct sql_stmt *o = st + 1; o < c->s.stmts + c->s.nstmts; o++) {
        json_t *rel = json_object_get(o->body, "relation");
        if (rel && !strcmp(o->kind, "RenameStmt") && !strcmp(sqlc_str_or(o->body, "renameType", ""), "OBJECT_COLUMN")) {
            mig_str_add(s, any ? " OR (" : "(");
            add_pair(s, rel, sqlc_str_or(o->body, "subname", ""));
            any = 1;
            continue;
        }
        if (strcmp(o->kind, "AlterTableStmt") != 0 || !rel)
            continue;
        size_t i;
        json_t *cmd;
        json_array_foreach(json_object_get(o->body, "cmds"), i, cmd) {
            json_t *at = json_object_get(cmd, "AlterTableCmd");
            if (strcmp(sqlc_str_or(at, "subtype", ""), "AT_AlterColumnType") != 0)
                continue;
            mig_str_add(s, any ? " OR (" : "(");
            add_pair(s, rel, sqlc_str_or(at, "name", ""));
            any = 1;
        }
    }
    return any;
}

/* The SELECT that says whether index schema.name is on a column retyped
 * above or below st; NULL when no statement of the file retypes a column. */
static char *on_retyped_sql(const struct conv *c, const struct sql_stmt *st, const char *schema, const char *name)
{
    struct mig_str s = {0};
    mig_str_add(&s, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = "
                    "i.indexrelid JOIN pg_catalog.pg_namespace n ON n.oid = ic.relnamespace JOIN pg_catalog.pg_class "
                    "t ON t.oid = i.indrelid JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace JOIN "
                    "pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 WHERE n.nspname = ");
    mig_str_literal(&s, schema);
    mig_str_add(&s, " AND ic.relname = ");
    mig_str_literal(&s, name);
    mig_str_add(&s, " AND (a.attnum = ANY (i.indkey::int2[]) OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d "
                    "WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = ic.oid AND d.refobjid = t.oid "
                    "AND d.refobjsubid = a.attnum)) AND (");
    int any = 0;
    size_t i;
    json_t *op;
    json_array_foreach(c->ops, i, op)
        any |= add_retyped(c, &s, op, !any);
    any = add_retyped_below(c, st, &s, any);
    mig_str_add(&s, "))");
    char *sql = mig_str_take(&s);
    if (!any) {
        free(sql);
        return NULL;
    }
    return sql;
}

int sqlc_rename_index_after_retype(struct conv *c, const struct sql_stmt *st, json_t *rel)
{
    const struct sqlc_options *o = c->opt;
    const char *from = sqlc_str_or(rel, "relname", ""), *to = sqlc_str_or(st->body, "newname", "");
    if (!o || !o->catalog_bool || o->types_stand_in)
        return 0;
    char *sql = on_retyped_sql(c, st, sqlc_rel_schema(rel), from);
    if (!sql)
        return 0;
    int on = 0;
    char why[256] = "";
    int rc = o->catalog_bool(o->column_type_arg, sql, &on, why, sizeof why);
    free(sql);
    if (rc != 0 || !on)
        return 0;   /* unknown or not such an index: as written, as before */
    const struct sql_stmt *later = sqlc_stmt_naming(st + 1, c->s.stmts + c->s.nstmts, from, to);
    if (later)
        return sqlc_fail(c, st, "index \"%s\" is on a column whose type the file changes: online its copy on the new "
                         "column takes the name \"%s\" at the contract, so this rename runs at complete, after the "
                         "statement at line %d, which names the index; put the rename and that statement in a "
                         "migration after this one", from, from, later->line);
    if (sqlc_emit_sql(c, st, "complete", NULL) != 0)
        return -1;
    /* at complete, after the contract of every operation (the retype's
     * below it included) */
    if (!c->last_ops)
        c->last_ops = json_array();
    if (!c->last_ops || json_array_append(c->last_ops, json_array_get(c->ops, json_array_size(c->ops) - 1)) != 0)
        return sqlc_oom(c, st);
    return 1;
}

int sqlc_renames_last(struct conv *c)
{
    size_t k;
    json_t *op;
    json_array_foreach(c->last_ops, k, op) {
        for (size_t i = 0; i < json_array_size(c->ops); i++) {
            if (json_array_get(c->ops, i) != op)
                continue;
            json_incref(op);
            if (json_array_remove(c->ops, i) != 0 || json_array_append_new(c->ops, op) != 0)
                return -1;
            break;
        }
    }
    json_decref(c->last_ops);
    c->last_ops = NULL;
    return 0;
}

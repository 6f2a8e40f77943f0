/* The SQL converter's ALTER TABLE and RENAME: each subcommand as its online
 * operation (add_column, drop_column, alter_column, create_constraint ...)
 * and renames of columns, tables and constraints; a change of type is
 * sql_convert_retype.c's. */
#include "sql_convert.h"
#include "sql_convert_conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration_sql.h"
#include "sql_fragment.h"


/* RENAME COLUMN b TO a after a plain RENAME COLUMN a TO b of the file (a
 * name tried and taken back): offline nothing changes, so the earlier
 * rename is removed and this one emits nothing. 1 when so, 0 when not, -1
 * on failure. */
static int renamed_back(struct conv *c, const struct sql_stmt *st, json_t *rel, const char *from, const char *to)
{
    static const char *const plain[] = {"schema", "table", "from", "to", NULL};
    size_t i, at = 0;
    json_t *op, *found = NULL;
    json_array_foreach(c->ops, i, op) {
        json_t *body;
        const char *kind;
        if (!sqlc_op_on_now(c, i, op, rel, &kind, &body) || strcmp(kind, "rename_column") != 0)
            continue;
        /* the last rename of the table's column `from` decides */
        if (!strcmp(sqlc_str_or(body, "to", ""), from)) {
            found = !strcmp(sqlc_str_or(body, "from", ""), to) && sql_only_keys(body, plain) ? body : NULL;
            at = i;
        }
    }
    if (!found)
        return 0;
    if (sqlc_close_last(c) != 0)
        return -1;
    return json_array_remove(c->ops, at) == 0 ? 1 : sqlc_oom(c, st);
}

/* ALTER TABLE t ALTER COLUMN c TYPE T followed by RENAME c TO d: one
 * rename_column, so the column is copied once. */
static int alter_joins_rename(const struct last_op *l, json_t *rel, const char *column)
{
    static const char *const keys[] = {"schema", "table", "column", "type", "up", "down", NULL};
    return sqlc_same_column(l, LAST_ALTER, rel, column) && json_object_get(l->body, "type") &&
           sql_only_keys(l->body, keys);
}

static int conv_rename_column(struct conv *c, const struct sql_stmt *st, json_t *rel)
{
    const char *from = sqlc_str_or(st->body, "subname", ""), *to = sqlc_str_or(st->body, "newname", "");
    int back = renamed_back(c, st, rel, from, to);
    if (back != 0)
        return back < 0 ? -1 : 0;
    if (sqlc_refuse_freed_column(c, st, rel, to, 0))
        return -1;
    struct last_op *l = &c->last;
    json_t *body = json_object();
    if (!body)
        return sqlc_oom(c, st);
    sqlc_set_relation(body, rel, "table");
    json_object_set_new(body, "from", json_string(from));
    json_object_set_new(body, "to", json_string(to));
    if (alter_joins_rename(l, rel, from)) {
        static const char *const carried[] = {"type", "up", "down"};
        for (size_t i = 0; i < 3; i++)
            if (json_object_get(l->body, carried[i]))
                json_object_set(body, carried[i], json_object_get(l->body, carried[i]));
        json_t *op = json_object();
        if (!op || json_object_set_new(op, "rename_column", body) != 0 ||
            json_array_set_new(c->ops, json_array_size(c->ops) - 1, op) != 0)
            return sqlc_oom(c, st);
    } else {
        if (sqlc_close_last(c) != 0 || sqlc_add_op(c, "rename_column", body) != 0)
            return sqlc_oom(c, st);
        memset(l, 0, sizeof *l);
        sqlc_copy_name(l->schema, sqlc_rel_schema(rel));
        sqlc_copy_name(l->table, sqlc_str_or(rel, "relname", ""));
    }
    l->kind = LAST_RENAME;
    l->body = body;
    sqlc_copy_name(l->from, from);
    sqlc_copy_name(l->column, to);
    return 0;
}

/* ALTER INDEX ... RENAME TO: a catalog rename, instant, no data touched,
 * run at expand as written; its down renames it back (in the index's
 * schema, where RENAME TO left it), so a rollback gives the index the name
 * it had. */
static int rename_index(struct conv *c, const struct sql_stmt *st, json_t *rel)
{
    int folded = sqlc_fold_rename_into_create(c, st, rel, 1, sqlc_str_or(rel, "relname", ""),
                                              sqlc_str_or(st->body, "newname", ""));
    if (folded != 0)
        return folded < 0 ? -1 : 0;
    int waits = sqlc_rename_index_after_retype(c, st, rel);
    if (waits != 0)
        return waits < 0 ? -1 : 0;
    const char *schema = rel ? sqlc_str_or(rel, "schemaname", NULL) : NULL; /* as written: else the path's */
    char *qs = schema ? sql_ident(schema) : NULL;
    char *qto = sql_ident(sqlc_str_or(st->body, "newname", ""));
    char *qfrom = sql_ident(sqlc_str_or(rel, "relname", ""));
    struct mig_str down = {0};
    if (qto && qfrom)
        mig_str_addf(&down, "ALTER INDEX IF EXISTS %s%s%s RENAME TO %s", qs ? qs : "", qs ? "." : "", qto, qfrom);
    free(qs);
    free(qto);
    free(qfrom);
    char *text = mig_str_take(&down);
    int rc = text ? sqlc_emit_sql(c, st, NULL, text) : sqlc_oom(c, st);
    free(text);
    if (rc == 0)
        sqlc_remember_index_rename(c, st, rel);
    return rc;
}

/* Operations that name their table in "table" and may act on it after
 * the expand (views, triggers, backfill, validation, contract). */
static int follows_table(const char *kind)
{
    static const char *const kinds[] = {"add_column", "alter_column", "drop_column", "rename_column",
        "create_constraint", "drop_constraint", "rename_constraint", "create_index", "set_replica_identity",
        "update_rows", "delete_rows", NULL};
    for (const char *const *k = kinds; *k; k++)
        if (!strcmp(*k, kind))
            return 1;
    return 0;
}

/* A reference of op's body to the table `from` (a foreign key's
 * "references", a column's "references" written "table(column)"), given
 * the table's new name. */
static int rename_references(json_t *body, const char *from, const char *to)
{
    json_t *ref = json_object_get(body, "references");
    if (ref && !strcmp(sqlc_str_or(ref, "table", ""), from))
        return json_object_set_new(ref, "table", json_string(to));
    json_t *col = json_object_get(body, "column");
    const char *text = sqlc_str_or(col, "references", NULL);
    size_t len = strlen(from);
    if (!text || strncmp(text, from, len) != 0 || (text[len] && text[len] != '('))
        return 0;
    struct mig_str s = {0};
    mig_str_addf(&s, "%s%s", to, text + len);
    char *renamed = mig_str_take(&s);
    int rc = renamed ? json_object_set_new(col, "references", json_string(renamed)) : -1;
    free(renamed);
    return rc;
}

/* RENAME TABLE after other statements on the table: the table takes its
 * new name at expand (the old release reads a view of the old name), and
 * what those operations do after the expand (the new shape's view, the
 * backfill, validation, the contract) would act on that view. The
 * rename_table moves up before the first of them, which then name the
 * table by its new name (and so do references to it in between), as if
 * the file had renamed the table first: a rename of a table commutes with
 * the changes of its columns, constraints and rows. Not above an `sql`
 * operation (its text may name the table): those before the last one
 * stay as they are. */
static int table_rename_first(struct conv *c, json_t *rel, const char *to)
{
    size_t n = json_array_size(c->ops), barrier = 0, first = 0;
    int found = 0;
    for (size_t i = 0; n && i < n - 1; i++)
        if (json_object_get(json_array_get(c->ops, i), "sql"))
            barrier = i + 1;
    for (size_t i = barrier; n && i < n - 1 && !found; i++) {
        const char *kind;
        json_t *body;
        if (sqlc_op_on(json_array_get(c->ops, i), rel, &kind, &body) && follows_table(kind)) {
            found = 1;
            first = i;
        }
    }
    if (!found)
        return 0;
    const char *from = sqlc_str_or(rel, "relname", "");
    for (size_t i = first; i < n - 1; i++) {
        const char *kind;
        json_t *body;
        int on = sqlc_op_on(json_array_get(c->ops, i), rel, &kind, &body) && follows_table(kind);
        if (on && json_object_set_new(body, "table", json_string(to)) != 0)
            return -1;
        if (rename_references(body, from, to) != 0)
            return -1;
    }
    json_t *rename = json_incref(json_array_get(c->ops, n - 1));
    if (json_array_remove(c->ops, n - 1) != 0 || json_array_insert_new(c->ops, first, rename) != 0)
        return -1;
    return 0;
}

void sqlc_table_name_now(struct conv *c, size_t k, const char *schema, const char *table, char *out)
{
    sqlc_copy_name(out, table);
    size_t i;
    json_t *op;
    json_array_foreach(c->ops, i, op) {
        json_t *body = json_object_get(op, "rename_table");
        if (i > k && body && !strcmp(sqlc_str_or(body, "schema", "public"), schema) &&
            !strcmp(sqlc_str_or(body, "from", ""), out))
            sqlc_copy_name(out, sqlc_str_or(body, "to", ""));
    }
}

/* The rename_constraint of this file that gave a constraint of rel (by
 * the name the table has now) the name `name`, with its index, or NULL. */
static json_t *constraint_renamed_to(struct conv *c, json_t *rel, const char *name, size_t *at)
{
    size_t i;
    json_t *op, *found = NULL;
    json_array_foreach(c->ops, i, op) {
        json_t *body;
        const char *kind;
        if (sqlc_op_on_now(c, i, op, rel, &kind, &body) && !strcmp(kind, "rename_constraint") &&
            !strcmp(sqlc_str_or(body, "to", ""), name)) {
            found = body;
            *at = i;
        }
    }
    return found;
}

/* RENAME CONSTRAINT of a name an earlier RENAME CONSTRAINT of the file
 * gave: both renames run at the contract, and the plan checks each
 * against the catalog as it is before the file, where the middle name
 * does not exist. One rename from the first name to the last (none when
 * the last is the first again) is what the two do offline. Returns 1
 * when folded, 0 when there is no such rename, -1 on failure. */
static int chain_constraint_rename(struct conv *c, const struct sql_stmt *st, json_t *rel)
{
    size_t at = 0;
    json_t *body = constraint_renamed_to(c, rel, sqlc_str_or(st->body, "subname", ""), &at);
    if (!body)
        return 0;
    if (sqlc_close_last(c) != 0)
        return -1;
    const char *to = sqlc_str_or(st->body, "newname", "");
    if (!strcmp(sqlc_str_or(body, "from", ""), to))
        return json_array_remove(c->ops, at) == 0 ? 1 : sqlc_oom(c, st);
    return json_object_set_new(body, "to", json_string(to)) == 0 ? 1 : sqlc_oom(c, st);
}

int sqlc_rename(struct conv *c, const struct sql_stmt *st)
{
    const char *kind = sqlc_str_or(st->body, "renameType", "");
    json_t *rel = json_object_get(st->body, "relation");
    struct made_table *made = rel ? sqlc_made_table(c, rel) : NULL;
    if (made && !strcmp(kind, "OBJECT_TABLE")) {
        /* under its new name, the plan no longer knows it: what follows runs as written too; the rollback
         * renames it back before the table's own down drops it */
        struct mig_str down = {0};
        char *to = sql_ident(sqlc_str_or(st->body, "newname", "")), *from = sql_ident(made->name);
        char *schema = sql_ident(made->schema);
        /* IF EXISTS: a later statement's undo may have dropped the table already (sql_convert_made.c) */
        mig_str_addf(&down, "ALTER TABLE IF EXISTS %s.%s RENAME TO %s", schema ? schema : "", to ? to : "",
                     from ? from : "");
        free(to); free(from); free(schema);
        sqlc_copy_name(made->name, sqlc_str_or(st->body, "newname", ""));
        made->planned = 0;
        char *text = mig_str_take(&down);
        int rc = text ? sqlc_emit_sql(c, st, NULL, text) : sqlc_oom(c, st);
        free(text);
        return rc;
    }
    if (made) {
        made->planned = 0;
        return sqlc_emit_sql(c, st, NULL, NULL);   /* a new name uses nothing: the table's drop takes it */
    }
    if (!strcmp(kind, "OBJECT_COLUMN") && !strcmp(sqlc_str_or(st->body, "relationType", ""), "OBJECT_TABLE"))
        return conv_rename_column(c, st, rel);
    if (!strcmp(kind, "OBJECT_TABLE")) {
        if (sqlc_close_last(c) != 0)
            return -1;
        json_t *body = json_object();
        sqlc_set_relation(body, rel, "from");
        json_object_set_new(body, "to", json_string(sqlc_str_or(st->body, "newname", "")));
        if (sqlc_add_op(c, "rename_table", body) != 0 ||
            table_rename_first(c, rel, sqlc_str_or(st->body, "newname", "")) != 0)
            return sqlc_oom(c, st);
        return 0;
    }
    if (!strcmp(kind, "OBJECT_TABCONSTRAINT")) {
        /* the old release keeps the name it knows until the contract */
        int chained = chain_constraint_rename(c, st, rel);
        if (chained != 0)
            return chained < 0 ? -1 : 0;
        int folded = sqlc_fold_rename_into_create(c, st, rel, 0, sqlc_str_or(st->body, "subname", ""),
                                                  sqlc_str_or(st->body, "newname", ""));
        if (folded != 0)
            return folded < 0 ? -1 : 0;
        if (sqlc_close_last(c) != 0)
            return -1;
        json_t *body = json_object();
        sqlc_set_relation(body, rel, "table");
        json_object_set_new(body, "from", json_string(sqlc_str_or(st->body, "subname", "")));
        json_object_set_new(body, "to", json_string(sqlc_str_or(st->body, "newname", "")));
        return sqlc_add_op(c, "rename_constraint", body) == 0 ? 0 : sqlc_oom(c, st);
    }
    if (!strcmp(kind, "OBJECT_INDEX"))
        return rename_index(c, st, rel);
    if (!strcmp(kind, "OBJECT_TYPE"))
        return sqlc_rename_type(c, st);
    return sqlc_fail(c, st, "renaming a %s is not supported by the converter", kind + (strncmp(kind, "OBJECT_", 7) ? 0 : 7));
}

static int constraint_columns(json_t *body, const char *key, json_t *names)
{
    json_t *arr = json_array();
    size_t i;
    json_t *n;
    json_array_foreach(names, i, n) {
        json_array_append_new(arr, json_string(sql_node_str(n) ? sql_node_str(n) : ""));
    }
    return json_object_set_new(body, key, arr);
}

/* The location of a subcommand's own node (a column's or a constraint's). */
static long cmd_location(json_t *cmd)
{
    json_t *def = json_object_get(json_object_get(cmd, "AlterTableCmd"), "def");
    json_t *node = json_object_get(def, "ColumnDef");
    node = node ? node : json_object_get(def, "Constraint");
    json_t *loc = json_object_get(node, "location");
    return json_is_integer(loc) ? (long)json_integer_value(loc) : -1;
}

/* The columns a constraint names: its keys, its foreign key's columns,
 * every column its CHECK reads (sql_tree_columns). */
static void named_columns(json_t *con, json_t *out)
{
    static const char *const lists[] = {"keys", "fk_attrs", "including", NULL};
    for (int l = 0; lists[l]; l++) {
        size_t i;
        json_t *n;
        json_array_foreach(json_object_get(con, lists[l]), i, n) {
            if (sql_node_str(n))
                json_array_append_new(out, json_string(sql_node_str(n)));
        }
    }
    char **names = NULL;
    size_t n = 0;
    int star = 0;
    if (sql_tree_columns(json_object_get(con, "raw_expr"), &names, &n, &star) == SQL_FRAGMENT_OK) {
        for (size_t i = 0; i < n; i++)
            json_array_append_new(out, json_string(names[i]));
        sql_fragment_free_names(names, n);
    }
}

/* A constraint run as written at expand attaches to the columns as they
 * are then: one whose type (or values) an earlier operation of the file
 * changes is a second column from then on, and the contract drops the
 * old one with the constraint on it; a renamed one is not there under
 * its new name. Refused before any DDL, naming the column. */
static int names_changed_column(struct conv *c, const struct sql_stmt *st, json_t *rel, json_t *con)
{
    if (sqlc_close_last(c) != 0) /* the operation still open is one of those above */
        return -1;
    json_t *cols = json_array();
    named_columns(con, cols);
    size_t i, k;
    json_t *col, *op, *body;
    const char *kind, *hit = NULL;
    json_array_foreach(cols, i, col) {
        const char *name = json_string_value(col);
        json_array_foreach(c->ops, k, op) {
            if (!hit && sqlc_op_on(op, rel, &kind, &body) &&
                ((!strcmp(kind, "alter_column") && json_object_get(body, "type") &&
                  !strcmp(sqlc_str_or(body, "column", ""), name)) ||
                 (!strcmp(kind, "rename_column") &&
                  (!strcmp(sqlc_str_or(body, "from", ""), name) || !strcmp(sqlc_str_or(body, "to", ""), name)))))
                hit = name;
        }
    }
    int rc = hit ? sqlc_fail(c, st, "the constraint names \"%s\", whose type or name this file changes above: run "
                             "as written at expand it would hold the column as it is before the change (and the "
                             "contract drops that column with it). Add the constraint in a migration after this one",
                             hit) : 0;
    json_decref(cols);
    return rc;
}

/* ADD CONSTRAINT ... NOT VALID (or USING INDEX) among other subcommands
 * (atlas writes ADD COLUMN, ADD COLUMN, ADD CONSTRAINT ... NOT VALID in
 * one ALTER TABLE) becomes an ALTER TABLE of its own, run as written after
 * the columns (the converter's last pass). Only when it is the last
 * subcommand in the text: its text then runs from its location to the
 * statement's end. */
static char *constraint_text_alone(struct conv *c, const struct sql_stmt *st, json_t *con, const char *qtable)
{
    json_t *loc = json_object_get(con, "location");
    long at = json_is_integer(loc) ? (long)json_integer_value(loc) : -1;
    size_t i;
    json_t *cmd;
    int last = at >= 0 && (size_t)at >= st->start && (size_t)at < st->end;
    json_array_foreach(json_object_get(st->body, "cmds"), i, cmd) {
        last &= cmd_location(cmd) <= at;
    }
    if (!last) {
        sqlc_fail(c, st, "put each ADD CONSTRAINT ... NOT VALID / USING INDEX in its own ALTER TABLE, or last in "
                  "this one");
        return NULL;
    }
    struct mig_str s = {0};
    mig_str_addf(&s, "ALTER TABLE %s ADD %.*s", qtable, (int)(st->end - (size_t)at), c->s.text + at);
    char *text = mig_str_take(&s);
    if (!text)
        sqlc_oom(c, st);
    return text;
}

/* rel as SQL: "schema"."table" or "table". */
static char *quoted_table(json_t *rel)
{
    const char *schema = json_string_value(json_object_get(rel, "schemaname"));
    char *qs = schema ? sql_ident(schema) : NULL, *qt = sql_ident(sqlc_str_or(rel, "relname", ""));
    struct mig_str t = {0};
    mig_str_addf(&t, "%s%s%s", qs ? qs : "", qs ? "." : "", qt ? qt : "");
    free(qs);
    free(qt);
    return mig_str_take(&t);
}

/* The online forms of constraints (NOT VALID, USING INDEX), run as written
 * at expand: the whole statement when it holds nothing else (`whole`), else
 * the one constraint's own ALTER TABLE (constraint_text_alone). A rollback
 * drops each named one (a column this migration adds takes it with it
 * anyway); one naming a column the file changes above is refused. */
static int constraints_as_written(struct conv *c, const struct sql_stmt *st, json_t *rel, json_t *cons, int whole)
{
    size_t i, named = 0;
    json_t *con;
    json_array_foreach(cons, i, con) {
        if (names_changed_column(c, st, rel, con))
            return -1;
    }
    char *qtable = quoted_table(rel);
    if (!qtable)
        return sqlc_oom(c, st);
    struct mig_str d = {0};
    mig_str_addf(&d, "ALTER TABLE %s", qtable);
    json_array_foreach(cons, i, con) {
        const char *name = sqlc_str_or(con, "conname", NULL);
        char *qn = name ? sql_ident(name) : NULL;
        if (qn)
            mig_str_addf(&d, "%s DROP CONSTRAINT IF EXISTS %s", named++ ? "," : "", qn);
        free(qn);
    }
    char *down = mig_str_take(&d);
    char *text = whole ? NULL : constraint_text_alone(c, st, json_array_get(cons, 0), qtable);
    int rc = whole || text ? sqlc_emit_sql_text(c, st, text, NULL, named ? down : NULL) : -1;
    free(text);
    free(down);
    free(qtable);
    return rc;
}

/* One of them, from conv_add_constraint. */
static int constraint_as_written(struct conv *c, const struct sql_stmt *st, json_t *rel, json_t *con, size_t ncmds)
{
    json_t *cons = json_pack("[O]", con);
    int rc = cons ? constraints_as_written(c, st, rel, cons, ncmds == 1) : sqlc_oom(c, st);
    json_decref(cons);
    return rc;
}

static int conv_add_constraint(struct conv *c, const struct sql_stmt *st, json_t *rel, json_t *con, size_t ncmds)
{
    const char *ct = sqlc_str_or(con, "contype", "");
    const char *name = json_string_value(json_object_get(con, "conname"));
    if (sqlc_is_true(con, "skip_validation") || json_object_get(con, "indexname")) {
        /* NOT VALID and USING INDEX are already the online forms */
        return constraint_as_written(c, st, rel, con, ncmds);
    }
    int known = !strcmp(ct, "CONSTR_CHECK") || !strcmp(ct, "CONSTR_UNIQUE") || !strcmp(ct, "CONSTR_FOREIGN") ||
                !strcmp(ct, "CONSTR_PRIMARY");
    if (!known)
        return sqlc_fail(c, st, "this kind of constraint (%s) is not supported by the converter", ct);
    if (!name)
        name = "(unnamed)";     /* for messages: the operation gets the name Postgres would choose */
    json_t *probe = json_deep_copy(con);
    json_object_del(probe, "conname");
    int keyed = !strcmp(ct, "CONSTR_UNIQUE") || !strcmp(ct, "CONSTR_PRIMARY");
    if (keyed) { /* create_constraint holds these two for a unique or primary key */
        json_object_del(probe, "deferrable");
        json_object_del(probe, "initdeferred");
    }
    int plain = sqlc_plain_constraint(probe);
    json_decref(probe);
    if (!plain)
        return sqlc_fail(c, st, "constraint \"%s\" has options (DEFERRABLE, INCLUDE, NO INHERIT, ...) that "
                    "create_constraint cannot hold", name);
    if (!strcmp(ct, "CONSTR_FOREIGN") && (strcmp(sqlc_str_or(con, "fk_matchtype", "s"), "s") ||
                                          strcmp(sqlc_rel_schema(json_object_get(con, "pktable")), sqlc_rel_schema(rel)))) {
        return sqlc_fail(c, st, "foreign key \"%s\" has a MATCH type or a table in another schema; write it as ADD "
                    "CONSTRAINT ... NOT VALID followed by VALIDATE CONSTRAINT (both run online as they are)", name);
    }
    if (!strcmp(ct, "CONSTR_FOREIGN") && json_array_size(json_object_get(con, "pk_attrs")) == 0)
        return sqlc_fail(c, st, "foreign key \"%s\": name the referenced columns (REFERENCES t (col))", name);
    if (sqlc_close_last(c) != 0)
        return -1;
    json_t *body = json_object();
    sqlc_set_relation(body, rel, "table");
    if (json_object_get(con, "conname"))
        json_object_set_new(body, "name", json_string(name));
    if (!strcmp(ct, "CONSTR_CHECK")) {
        char *expr = sql_expr_text(&c->s, st, json_object_get(con, "raw_expr"));
        if (!expr) {
            json_decref(body);
            return sqlc_fail(c, st, "cannot read the CHECK expression of \"%s\"", name);
        }
        json_object_set_new(body, "type", json_string("check"));
        json_object_set_new(body, "check", json_string(expr));
        free(expr);
    } else if (!strcmp(ct, "CONSTR_UNIQUE") || !strcmp(ct, "CONSTR_PRIMARY")) {
        json_object_set_new(body, "type", json_string(!strcmp(ct, "CONSTR_UNIQUE") ? "unique" : "primary_key"));
        constraint_columns(body, "columns", json_object_get(con, "keys"));
        if (sqlc_is_true(con, "deferrable"))
            json_object_set_new(body, "deferrable", json_true());
        if (sqlc_is_true(con, "initdeferred"))
            json_object_set_new(body, "initially_deferred", json_true());
    } else {
        json_object_set_new(body, "type", json_string("foreign_key"));
        constraint_columns(body, "columns", json_object_get(con, "fk_attrs"));
        json_t *ref = json_object();
        json_object_set_new(ref, "table", json_string(sqlc_str_or(json_object_get(con, "pktable"), "relname", "")));
        constraint_columns(ref, "columns", json_object_get(con, "pk_attrs"));
        sqlc_add_fk_action(ref, "on_delete", sqlc_str_or(con, "fk_del_action", "a"));
        sqlc_add_fk_action(ref, "on_update", sqlc_str_or(con, "fk_upd_action", "a"));
        json_object_set_new(body, "references", ref);
    }
    return sqlc_add_op(c, "create_constraint", body) == 0 ? 0 : sqlc_oom(c, st);
}

static int conv_add_column(struct conv *c, const struct sql_stmt *st, json_t *rel, json_t *def)
{
    const char *why = NULL;
    json_t *col = NULL;
    int rc = sqlc_column_json(c, st, def, sqlc_rel_schema(rel), &col, &why);
    if (rc < 0)
        return -1;
    if (rc > 0)
        return sqlc_fail(c, st, "ADD COLUMN \"%s\" cannot be converted: %s; add the column plainly and its "
                    "constraints with their own ADD CONSTRAINT", sqlc_str_or(def, "colname", "?"), why);
    if (json_object_get(col, "identity") || json_object_get(col, "generated")) {
        json_decref(col);
        return sqlc_fail(c, st, "ADD COLUMN \"%s\" as an identity or generated column writes every row under ACCESS "
                    "EXCLUSIVE; add a plain column and fill it with an \"up\"", sqlc_str_or(def, "colname", "?"));
    }
    if (sqlc_refuse_freed_column(c, st, rel, sqlc_str_or(col, "name", ""), 1)) {
        json_decref(col);
        return -1;
    }
    int again = sqlc_add_recreated(c, st, rel, col);
    if (again <= 0)
        return again;
    if (sqlc_close_last(c) != 0 || sqlc_remember_column(c, sqlc_rel_schema(rel), sqlc_str_or(rel, "relname", ""),
                                              sqlc_str_or(col, "name", ""), sqlc_str_or(col, "type", "")) != 0) {
        json_decref(col);
        return sqlc_oom(c, st);
    }
    json_t *body = json_object();
    sqlc_set_relation(body, rel, "table");
    json_object_set_new(body, "column", col);
    return sqlc_add_op(c, "add_column", body) == 0 ? 0 : sqlc_oom(c, st);
}

/* The old release may rely on the constraint until the contract drops it. */
static int conv_drop_constraint(struct conv *c, const struct sql_stmt *st, json_t *rel, json_t *cmd,
                                const char *name)
{
    if (sqlc_close_last(c) != 0)
        return -1;
    json_t *body = json_object();
    sqlc_set_relation(body, rel, "table");
    json_object_set_new(body, "name", json_string(name));
    if (sqlc_is_true(cmd, "missing_ok"))
        json_object_set_new(body, "if_exists", json_true());
    return sqlc_add_op(c, "drop_constraint", body) == 0 ? 0 : sqlc_oom(c, st);
}

static int conv_replica_identity(struct conv *c, const struct sql_stmt *st, json_t *rel, json_t *ri)
{
    const char *kind = sqlc_str_or(ri, "identity_type", "");
    json_t *identity = NULL;
    if (!strcmp(kind, "i"))
        identity = json_pack("{s:s}", "index", sqlc_str_or(ri, "name", ""));
    else
        identity = json_string(!strcmp(kind, "f") ? "full" : !strcmp(kind, "n") ? "nothing" : "default");
    if (sqlc_close_last(c) != 0)
        return -1;
    json_t *body = json_object();
    sqlc_set_relation(body, rel, "table");
    json_object_set_new(body, "identity", identity);
    return sqlc_add_op(c, "set_replica_identity", body) == 0 ? 0 : sqlc_oom(c, st);
}

static int conv_alter_cmd(struct conv *c, const struct sql_stmt *st, json_t *rel, json_t *cmd, size_t ncmds)
{
    const char *sub = sqlc_str_or(cmd, "subtype", "");
    const char *column = sqlc_str_or(cmd, "name", "");
    json_t *def = json_object_get(cmd, "def");
    if (!strcmp(sqlc_str_or(cmd, "behavior", "DROP_RESTRICT"), "DROP_CASCADE"))
        return sqlc_fail(c, st, "CASCADE would drop whatever depends on it without naming it; drop those first");
    if (!strcmp(sub, "AT_AddColumn"))
        return conv_add_column(c, st, rel, json_object_get(def, "ColumnDef"));
    if (!strcmp(sub, "AT_DropColumn")) {
        if (sqlc_drop_recreated(c, st, rel, column))
            return 0;   /* the ADD below says what the column becomes */
        if (sqlc_close_last(c) != 0)
            return -1;
        json_t *body = json_object();
        sqlc_set_relation(body, rel, "table");
        json_object_set_new(body, "column", json_string(column));
        /* the old release's value on the new release's writes, until the
         * contract drops it (a NOT NULL column without a default needs one) */
        char *down = sqlc_annotated_down(c, st);
        if (down)
            json_object_set_new(body, "down", json_string(down));
        free(down);
        return sqlc_add_op(c, "drop_column", body) == 0 ? 0 : sqlc_oom(c, st);
    }
    if (!strcmp(sub, "AT_AlterColumnType"))
        return sqlc_alter_type(c, st, rel, column, json_object_get(def, "ColumnDef"));
    if (!strcmp(sub, "AT_SetNotNull")) {
        int folded = sqlc_fold_not_null(c, st, rel, column);
        if (folded != 0)
            return folded < 0 ? -1 : 0;
    }
    if (!strcmp(sub, "AT_SetNotNull") || !strcmp(sub, "AT_DropNotNull")) {
        json_t *body = sqlc_alter_body(c, rel, column, "nullable");
        return body ? json_object_set_new(body, "nullable", json_boolean(!strcmp(sub, "AT_DropNotNull"))) : sqlc_oom(c, st);
    }
    if (!strcmp(sub, "AT_ColumnDefault")) {
        char *expr = def ? sql_expr_text(&c->s, st, def) : NULL;
        if (def && !expr)
            return sqlc_fail(c, st, "cannot read the default of \"%s\"", column);
        json_t *body = sqlc_alter_body(c, rel, column, "default");
        if (body)
            json_object_set_new(body, "default", expr ? json_string(expr) : json_null());
        free(expr);
        return body ? 0 : sqlc_oom(c, st);
    }
    if (!strcmp(sub, "AT_AddConstraint"))
        return conv_add_constraint(c, st, rel, json_object_get(def, "Constraint"), ncmds);
    if (!strcmp(sub, "AT_DropConstraint"))
        return conv_drop_constraint(c, st, rel, cmd, column);
    if (!strcmp(sub, "AT_ReplicaIdentity"))
        return conv_replica_identity(c, st, rel, json_object_get(def, "ReplicaIdentityStmt"));
    if (!strcmp(sub, "AT_ValidateConstraint")) {
        if (ncmds > 1)
            return sqlc_fail(c, st, "put VALIDATE CONSTRAINT in its own ALTER TABLE");
        return sqlc_emit_sql(c, st, NULL, NULL);     /* a scan that blocks no writes */
    }
    return sqlc_fail(c, st, "ALTER TABLE ... %s is not supported by the converter", sub + (strncmp(sub, "AT_", 3) ? 0 : 3));
}

/* The order Postgres runs one ALTER TABLE's subcommands in (its passes),
 * whatever the order they are written in: drops, then changes of type,
 * then new columns, then the rest, constraints and indexes last, so
 * `ADD CONSTRAINT ... CHECK (c > 0), ADD COLUMN c int` checks a column
 * that is there. */
static int alter_pass(json_t *cmd)
{
    const char *sub = sqlc_str_or(cmd, "subtype", "");
    if (!strcmp(sub, "AT_DropColumn") || !strcmp(sub, "AT_DropConstraint"))
        return 0;
    if (!strcmp(sub, "AT_AlterColumnType"))
        return 1;
    if (!strcmp(sub, "AT_AddColumn"))
        return 2;
    if (!strcmp(sub, "AT_AddConstraint") || !strcmp(sub, "AT_AddIndex") || !strcmp(sub, "AT_AddIndexConstraint"))
        return 4;
    return 3;
}

/* Every subcommand adds a constraint NOT VALID (or USING INDEX), as atlas
 * writes a table's foreign keys in one ALTER TABLE: the statement is online
 * as written. Their Constraint nodes (a new array), or NULL when not. */
static json_t *online_constraints(json_t *cmds)
{
    if (json_array_size(cmds) < 2)
        return NULL;
    json_t *cons = json_array();
    size_t i;
    json_t *cmd;
    json_array_foreach(cmds, i, cmd) {
        json_t *at = json_object_get(cmd, "AlterTableCmd");
        json_t *con = json_object_get(json_object_get(at, "def"), "Constraint");
        if (strcmp(sqlc_str_or(at, "subtype", ""), "AT_AddConstraint") != 0 || !con ||
            !(sqlc_is_true(con, "skip_validation") || json_object_get(con, "indexname"))) {
            json_decref(cons);
            return NULL;
        }
        json_array_append(cons, con);
    }
    return cons;
}

int sqlc_alter_table(struct conv *c, const struct sql_stmt *st)
{
    if (strcmp(sqlc_str_or(st->body, "objtype", ""), "OBJECT_TABLE") != 0)
        return sqlc_fail(c, st, "this ALTER statement is not supported by the converter");
    json_t *rel = json_object_get(st->body, "relation");
    json_t *cmds = json_object_get(st->body, "cmds");
    struct made_table *made = sqlc_made_table(c, rel);
    if (made) {
        made->planned = 0;  /* the plan's view of its columns is create_table's, no longer true */
        return sqlc_emit_on_made(c, st, NULL, made);
    }
    json_t *cons = online_constraints(cmds);
    if (cons) {
        int rc = constraints_as_written(c, st, rel, cons, 1);
        json_decref(cons);
        return rc;
    }
    for (int pass = 0; pass <= 4; pass++) {
        size_t i;
        json_t *cmd;
        json_array_foreach(cmds, i, cmd) {
            json_t *at = json_object_get(cmd, "AlterTableCmd");
            if (alter_pass(at) == pass && conv_alter_cmd(c, st, rel, at, json_array_size(cmds)) != 0)
                return -1;
        }
    }
    return 0;
}

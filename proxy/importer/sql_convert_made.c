/* What undoes, on rollback, a statement of the file on a table the file
 * itself makes (an ALTER TABLE, a CREATE INDEX run as written).
 *
 * The rollback undoes the operations last-first. Such a statement used to
 * have nothing to undo (the table's own drop, further back, takes what it
 * changed), but the objects the file makes between the table and the
 * statement are dropped before the table: a type, a domain, a function, a
 * sequence or another table that the statement made the table use (a
 * column of an enum made after the table, a default calling a function, a
 * foreign key to a table made after it) is then dropped while the table
 * still uses it, and Postgres refuses ("cannot drop type ... because
 * other objects depend on it"). So the statement gets its own undo, run
 * at its own place in the reverse order: its exact inverse where the
 * statement says it (a column added, a named constraint, a named index),
 * or else the table's own drop brought forward to it (what the statement
 * changed goes with the table, as the file's author meant). A statement
 * that makes the table use nothing else needs no undo. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration_sql.h"
#include "sql_convert_conv.h"

/* schema.name as SQL (caller frees), or NULL. */
static char *qualified(const char *schema, const char *name)
{
    char *s = sql_ident(schema), *t = sql_ident(name);
    struct mig_str out = {0};
    if (s && t)
        mig_str_addf(&out, "%s.%s", s, t);
    free(s);
    free(t);
    return s && t ? mig_str_take(&out) : NULL;
}

/* ALTER TABLE subcommands that make the table use no object it did not use
 * before (or only ones that go with the table: an identity's sequence):
 * nothing to undo before the table's drop. */
static int uses_nothing_new(const char *subtype)
{
    static const char *const none[] = {
        "AT_SetNotNull", "AT_DropNotNull", "AT_DropColumn", "AT_DropConstraint", "AT_ValidateConstraint",
        "AT_SetStatistics", "AT_SetStorage", "AT_SetCompression", "AT_ClusterOn", "AT_DropCluster",
        "AT_SetRelOptions", "AT_ResetRelOptions", "AT_SetOptions", "AT_ResetOptions", "AT_ReplicaIdentity",
        "AT_EnableRowSecurity", "AT_DisableRowSecurity", "AT_ForceRowSecurity", "AT_NoForceRowSecurity",
        "AT_AddIdentity", "AT_SetIdentity", "AT_DropIdentity", "AT_DropExpression", "AT_EnableTrig",
        "AT_DisableTrig", "AT_EnableAlwaysTrig", "AT_EnableReplicaTrig", "AT_EnableTrigAll",
        "AT_DisableTrigAll", "AT_EnableTrigUser", "AT_DisableTrigUser", NULL};
    for (const char *const *k = none; *k; k++)
        if (!strcmp(*k, subtype))
            return 1;
    return 0;
}

/* Whether a statement of the file after st drops or renames column of
 * st's table: its name is then gone when the rollback reaches st, and
 * ALTER COLUMN has no IF EXISTS. */
static int column_goes_later(const struct conv *c, const struct sql_stmt *st, const char *column)
{
    json_t *rel = json_object_get(st->body, "relation");
    for (const struct sql_stmt *o = st + 1; o < c->s.stmts + c->s.nstmts; o++) {
        json_t *orel = json_object_get(o->body, "relation");
        if (!orel || !sqlc_same_relation(orel, rel))
            continue;
        if (!strcmp(o->kind, "RenameStmt") && !strcmp(sqlc_str_or(o->body, "renameType", ""), "OBJECT_COLUMN") &&
            !strcmp(sqlc_str_or(o->body, "subname", ""), column))
            return 1;
        if (sqlc_column_cmd(o, rel, "AT_DropColumn", column))
            return 1;
    }
    return 0;
}

/* SET DEFAULT: a constant uses nothing; any other expression may call a
 * function or name a sequence or type the file made, and DROP DEFAULT
 * undoes it while the column is still there under its name. */
static int default_inverse(const struct conv *c, const struct sql_stmt *st, json_t *at, struct mig_str *out)
{
    json_t *def = json_object_get(at, "def");
    if (!def || json_object_get(def, "A_Const"))
        return 0;
    const char *column = sqlc_str_or(at, "name", "");
    char *q = sql_ident(column);
    if (!q || column_goes_later(c, st, column)) {
        free(q);
        return -1;
    }
    mig_str_addf(out, "%sALTER COLUMN %s DROP DEFAULT", out->len ? ", " : "", q);
    free(q);
    return 1;
}

/* A change of a column's type: back to the type the file's CREATE TABLE
 * gave it (through text, which every type reads and writes), which uses
 * nothing made after the table. Restoring that type, not the one just
 * before, is enough: the table's drop follows. */
static int type_inverse(struct conv *c, const struct sql_stmt *st, const struct made_table *made, json_t *at,
                        struct mig_str *out)
{
    const char *column = sqlc_str_or(at, "name", "");
    char old[SQLC_TYPE_LEN];
    if (sqlc_old_type(c, made->schema, made->name, column, old) != 0 || column_goes_later(c, st, column))
        return -1;
    char *q = sql_ident(column);
    if (!q)
        return -1;
    mig_str_addf(out, "%sALTER COLUMN %s TYPE %s USING %s::text::%s", out->len ? ", " : "", q, old, q, old);
    free(q);
    return 1;
}

/* The inverse of one subcommand as an ALTER TABLE subcommand ("DROP
 * COLUMN IF EXISTS x") into out: 1 written, 0 none needed, -1 when the
 * statement does not say enough for one (the table's drop stands in: an
 * unnamed foreign key or CHECK, INHERIT, ATTACH PARTITION, OF ...). */
static int cmd_inverse(struct conv *c, const struct sql_stmt *st, const struct made_table *made, json_t *at,
                       struct mig_str *out)
{
    const char *subtype = sqlc_str_or(at, "subtype", "");
    const char *name = NULL, *what = NULL;
    if (!strcmp(subtype, "AT_ColumnDefault"))
        return default_inverse(c, st, at, out);
    if (!strcmp(subtype, "AT_AlterColumnType"))
        return type_inverse(c, st, made, at, out);
    if (!strcmp(subtype, "AT_AddColumn")) {
        name = json_string_value(sql_get(at, "def.ColumnDef.colname"));
        what = "COLUMN";
    } else if (!strcmp(subtype, "AT_AddConstraint")) {
        name = json_string_value(sql_get(at, "def.Constraint.conname"));
        what = "CONSTRAINT";
        const char *contype = json_string_value(sql_get(at, "def.Constraint.contype"));
        if (!name && contype && (!strcmp(contype, "CONSTR_PRIMARY") || !strcmp(contype, "CONSTR_UNIQUE")))
            return 0;   /* a key on the table's own columns */
    } else {
        return uses_nothing_new(subtype) ? 0 : -1;
    }
    char *q = name ? sql_ident(name) : NULL;
    if (!q)
        return -1;
    mig_str_addf(out, "%sDROP %s IF EXISTS %s", out->len ? ", " : "", what, q);
    free(q);
    return 1;
}

/* The `down` of st: its inverse, or the table's drop; NULL when it needs
 * none, or with *failed -1 (the error set). Caller frees. */
static char *made_undo(struct conv *c, const struct sql_stmt *st, const struct made_table *made, int *failed)
{
    *failed = 0;
    char *table = qualified(made->schema, made->name);
    if (!table) {
        *failed = sqlc_oom(c, st);
        return NULL;
    }
    struct mig_str inv = {0}, out = {0};
    int whole = 0;
    if (!strcmp(st->kind, "AlterTableStmt")) {
        /* last-first, as the rollback undoes the statements */
        json_t *cmds = json_object_get(st->body, "cmds");
        for (size_t i = json_array_size(cmds); i-- > 0 && !whole;)
            whole = cmd_inverse(c, st, made, json_object_get(json_array_get(cmds, i), "AlterTableCmd"), &inv) < 0;
        if (!whole && inv.len)
            mig_str_addf(&out, "ALTER TABLE IF EXISTS %s %s", table, inv.buf);
    } else if (!strcmp(st->kind, "IndexStmt") && json_string_value(json_object_get(st->body, "idxname"))) {
        char *ix = qualified(made->schema, json_string_value(json_object_get(st->body, "idxname")));
        if (ix)
            mig_str_addf(&out, "DROP INDEX IF EXISTS %s", ix);
        else
            out.oom = 1;
        free(ix);
    } else {
        whole = 1;
    }
    if (whole)
        mig_str_addf(&out, "DROP TABLE IF EXISTS %s", table);
    free(table);
    out.oom |= inv.oom;
    free(inv.buf);
    if (out.oom) {
        free(out.buf);
        *failed = sqlc_oom(c, st);
        return NULL;
    }
    if (!out.len) {
        free(out.buf);
        return NULL;    /* it makes the table use nothing new */
    }
    return mig_str_take(&out);
}

int sqlc_emit_on_made(struct conv *c, const struct sql_stmt *st, const char *text, const struct made_table *made)
{
    int failed;
    char *down = made_undo(c, st, made, &failed);
    if (failed)
        return -1;
    int rc = sqlc_emit_sql_text(c, st, text, NULL, down);
    free(down);
    return rc;
}

/* ALTER COLUMN ... TYPE in a migration file: one alter_column with the new
 * type, its `up` (the USING expression, or a cast) and the `down` that
 * gives the old release its value back (a cast to the old type, the known
 * inverse of a USING, or the file's "-- pgtandem:down EXPR"), joined to the
 * rename just above it, keeping what earlier statements of the file left
 * on the column (NOT NULL, a default: a literal one in the type it was set
 * on). */
#include "sql_convert.h"
#include "sql_convert_conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "migration_sql.h"
#include "sql_fragment.h"

static int is_cast_of(json_t *expr, const char *column)
{
    json_t *fields = sql_get(expr, "TypeCast.arg.ColumnRef.fields");
    const char *name = json_array_size(fields) == 1 ? sql_node_str(json_array_get(fields, 0)) : NULL;
    return name && !strcmp(name, column);
}

/* `column::text::T` (Prisma's move of an enum column to a new enum, as it
 * removes a value): through text each way, so the value cast back through
 * text gives the old one for every value both types hold. */
static int is_text_cast_of(json_t *expr, const char *column)
{
    json_t *inner = sql_get(expr, "TypeCast.arg");
    json_t *names = sql_get(inner, "TypeCast.typeName.names");
    size_t n = json_array_size(names);
    const char *first = sql_node_str(json_array_get(names, 0)), *last = sql_node_str(json_array_get(names, n - 1));
    int text = last && !strcmp(last, "text") && (n == 1 || (n == 2 && first && !strcmp(first, "pg_catalog")));
    return text && !sql_get(inner, "TypeCast.typeName.arrayBounds") && is_cast_of(inner, column);
}

/* `column AT TIME ZONE 'zone'` (a constant zone): timestamp and
 * timestamptz each way, its own inverse, so the same expression on the
 * new column gives the old value back (Prisma's move to TIMESTAMPTZ). */
static int is_at_time_zone_of(json_t *expr, const char *column)
{
    json_t *fn = json_object_get(expr, "FuncCall");
    json_t *names = json_object_get(fn, "funcname"), *args = json_object_get(fn, "args");
    const char *last = sql_node_str(json_array_get(names, json_array_size(names) - 1));
    json_t *fields = sql_get(json_array_get(args, 1), "ColumnRef.fields");
    const char *col = json_array_size(fields) == 1 ? sql_node_str(json_array_get(fields, 0)) : NULL;
    return last && !strcmp(last, "timezone") && json_array_size(args) == 2 &&
           sql_get(json_array_get(args, 0), "A_Const.sval") && col && !strcmp(col, column);
}

/* The column reference expr is: exactly `column`. */
static int is_column(json_t *expr, const char *column)
{
    json_t *fields = sql_get(expr, "ColumnRef.fields");
    const char *name = json_array_size(fields) == 1 ? sql_node_str(json_array_get(fields, 0)) : NULL;
    return name && !strcmp(name, column);
}

/* A function call `name(column[, constant])` with nargs arguments. */
static json_t *call_of(json_t *expr, const char *name, size_t nargs, const char *column)
{
    json_t *fn = json_object_get(expr, "FuncCall");
    json_t *names = json_object_get(fn, "funcname"), *args = json_object_get(fn, "args");
    const char *last = sql_node_str(json_array_get(names, json_array_size(names) - 1));
    if (!last || strcmp(last, name) || json_array_size(args) != nargs || !is_column(json_array_get(args, 0), column))
        return NULL;
    return nargs < 2 || sql_get(json_array_get(args, 1), "A_Const") ? args : NULL;
}

/* The `down` of USING expressions whose inverse is known, reading the
 * column by its name, cast to the old type; NULL for any other. On the
 * values `up` gives each is the way back: array_to_string(c, s) and
 * string_to_array(c, s) (elements holding s, and NULL elements, which
 * array_to_string leaves out, are the exception), to_jsonb(c) and
 * c #>> '{}' (a scalar old type), CASE WHEN c THEN a ELSE b END and c = a
 * (a boolean, two different constants). */
static char *derived_down(struct conv *c, const struct sql_stmt *st, json_t *using, const char *column,
                          const char *old_type)
{
    /* a stand-in old type (no catalog yet) matches every pattern: the
     * conversion that reads the real type decides */
    int any = c->opt && c->opt->types_stand_in;
    char *id = sql_ident(column);
    struct mig_str s = {0};
    json_t *args = call_of(using, "array_to_string", 2, column);
    json_t *kase = json_object_get(using, "CaseExpr");
    json_t *when = sql_get(json_array_get(json_object_get(kase, "args"), 0), "CaseWhen");
    if (!id) {
        /* out of memory: no down */
    } else if (args && (any || strstr(old_type, "[]"))) {
        char *sep = sql_expr_text(&c->s, st, json_array_get(args, 1));
        if (sep)
            mig_str_addf(&s, "string_to_array(%s, %s)::%s", id, sep, old_type);
        free(sep);
    } else if ((call_of(using, "to_jsonb", 1, column) || call_of(using, "to_json", 1, column)) &&
               (any || !strstr(old_type, "[]"))) {
        mig_str_addf(&s, "(%s #>> '{}')::%s", id, old_type);
    } else if (kase && !json_object_get(kase, "arg") && json_array_size(json_object_get(kase, "args")) == 1 &&
               (any || !strcasecmp(old_type, "boolean")) && is_column(json_object_get(when, "expr"), column) &&
               sql_get(json_object_get(when, "result"), "A_Const") && sql_get(kase, "defresult.A_Const")) {
        char *a = sql_expr_text(&c->s, st, json_object_get(when, "result"));
        char *b = sql_expr_text(&c->s, st, json_object_get(kase, "defresult"));
        if (a && b && strcmp(a, b) != 0)
            mig_str_addf(&s, "(%s = %s)", id, a);
        free(a);
        free(b);
    }
    free(id);
    char *down = mig_str_take(&s);
    if (down && !*down) {
        free(down);
        down = NULL;
    }
    return down;
}

static int is_timestamp(const char *type)
{
    return type && !strncasecmp(type, "timestamp", 9);
}

static char *cast_text(const char *column, const char *type)
{
    char *id = sql_ident(column);
    size_t n = id ? strlen(id) + strlen(type) + 3 : 0;
    char *out = id ? malloc(n) : NULL;
    if (out)
        snprintf(out, n, "%s::%s", id, type);
    free(id);
    return out;
}

/* The `up` of a type change. With the rename already done, USING names the
 * column by its new name while rename_column's up reads the old one: only a
 * plain cast can be rewritten for it. */
static char *type_change_up(struct conv *c, const struct sql_stmt *st, json_t *using, const char *db_name,
                            const char *type, int renamed, int via_text)
{
    if (!using)
        return cast_text(db_name, type);
    if (!renamed)
        return sql_expr_text(&c->s, st, using);
    char *cast_type = sql_type_text(&c->s, st, sql_get(using, "TypeCast.typeName"));
    struct mig_str through = {0};
    if (cast_type)
        mig_str_addf(&through, "%s%s", via_text ? "text::" : "", cast_type);
    char *chain = mig_str_take(&through);
    char *up = chain ? cast_text(db_name, chain) : NULL;
    free(chain);
    free(cast_type);
    return up;
}

/* What earlier operations of the file left on column into body, a type
 * change that does not set it itself: an ADD COLUMN's NOT NULL, an ALTER
 * COLUMN's NOT NULL or default (the last of each wins, a recreate starts
 * over). The plan gives a retyped column's second column what the catalog
 * says, where the column or those changes are not yet: offline the
 * rebuilt column keeps them. */
static void keep_earlier_changes(struct conv *c, json_t *rel, const char *column, json_t *body)
{
    json_t *nullable = NULL, *def = NULL, *op, *b;
    const char *kind;
    size_t i;
    json_array_foreach(c->ops, i, op) {
        if (!sqlc_op_on(op, rel, &kind, &b) || b == body)
            continue;
        json_t *added = !strcmp(kind, "add_column") ? json_object_get(b, "column") : NULL;
        if (added && !strcmp(sqlc_str_or(added, "name", ""), column) &&
            json_is_false(json_object_get(added, "nullable")))
            nullable = json_object_get(added, "nullable");
        if (strcmp(kind, "alter_column") || strcmp(sqlc_str_or(b, "column", ""), column))
            continue;
        if (json_is_true(json_object_get(b, "recreate")))
            nullable = def = NULL;
        nullable = json_object_get(b, "nullable") ? json_object_get(b, "nullable") : nullable;
        def = json_object_get(b, "default") ? json_object_get(b, "default") : def;
    }
    if (nullable && !json_object_get(body, "nullable"))
        json_object_set(body, "nullable", nullable);
    if (def && !json_object_get(body, "default"))
        json_object_set(body, "default", def);
}

/* A string literal the file set as column's default before this retype
 * keeps the type it was set on (90002-383): offline Postgres typed it so at
 * SET DEFAULT and the retype converts that value, where the second column,
 * made of the new type, would read the literal anew as the new type
 * ('{"b": 1, "a": 2}' as jsonb is reordered, as json it is not). 0, or -1
 * out of memory. */
static int default_as_set(struct conv *c, json_t *rel, const char *column, json_t *body)
{
    const char *dflt = json_string_value(json_object_get(body, "default"));
    char old_type[SQLC_TYPE_LEN];
    if (!dflt || sql_fragment_string_literal(dflt) != SQL_FRAGMENT_OK ||
        sqlc_old_type(c, sqlc_rel_schema(rel), sqlc_str_or(rel, "relname", ""), column, old_type) != 0)
        return 0;
    /* Without its modifiers: a cast to numeric(10,2) would show as one in
     * the column's default, where Postgres's own coercion to them is
     * implicit and shows nothing (the value is not rounded to them: a
     * literal with more digits than its column allows keeps them) */
    struct mig_str s = {0};
    mig_str_addf(&s, "%s::", dflt);
    int quoted = 0, depth = 0;
    for (const char *p = old_type; *p; p++) {
        quoted ^= *p == '"';
        depth += !quoted && *p == '(';
        if (!depth)
            mig_str_addf(&s, "%c", *p);
        depth -= !quoted && *p == ')' && depth > 0;
    }
    char *cast = mig_str_take(&s);
    int rc = cast && json_object_set_new(body, "default", json_string(cast)) == 0 ? 0 : -1;
    free(cast);
    return rc;
}

/* The statement above st that adds column to rel (ALTER TABLE ... ADD
 * COLUMN), when no statement between names the table or the column and no
 * other command of it names the column; NULL otherwise. */
static const struct sql_stmt *added_plainly_above(struct conv *c, const struct sql_stmt *st, json_t *rel,
                                                  const char *column)
{
    for (const struct sql_stmt *o = st; o-- > c->s.stmts;) {
        json_t *add = sqlc_column_cmd(o, rel, "AT_AddColumn", column), *cmd;
        if (!add)
            continue;
        size_t i;
        json_array_foreach(json_object_get(o->body, "cmds"), i, cmd)
            if (cmd != add && sqlc_tree_names(cmd, column, 0))
                return NULL;
        return sqlc_stmt_naming(o + 1, st, sqlc_str_or(rel, "relname", ""), column) ? NULL : o;
    }
    return NULL;
}

/* The operation that makes rel's column in this file: its add_column,
 * or the alter_column "recreate" of a DROP and an ADD of it
 * (sql_convert_recreate.c); NULL when none or when a later operation names
 * the column. *recreate says which. */
static json_t *made_by_file(struct conv *c, json_t *rel, const char *column, int *recreate)
{
    json_t *made = NULL, *op, *body;
    const char *kind;
    size_t i;
    json_array_foreach(c->ops, i, op) {
        int on = sqlc_op_on(op, rel, &kind, &body);
        if (on && !strcmp(kind, "add_column") && !strcmp(sqlc_str_or(json_object_get(body, "column"), "name", ""), column)) {
            made = body;
            *recreate = 0;
        } else if (on && !strcmp(kind, "alter_column") && json_is_true(json_object_get(body, "recreate")) &&
                   !strcmp(sqlc_str_or(body, "column", ""), column)) {
            made = body;
            *recreate = 1;
        } else if (made && sqlc_tree_names(op, column, 0)) {
            made = NULL;    /* the column is changed or dropped after */
        }
    }
    return made;
}

/* ALTER COLUMN ... TYPE of a column the file adds above (or drops and adds
 * again), with nothing between naming its table or the column (61207-1,
 * 90003-21: ADD COLUMN c text, other tables' changes, then c to
 * varchar(200)): until something writes it the column is NULL in every
 * row, and a cast of NULL is NULL, so the column is made with the new
 * type, where Postgres leaves it. Online a retype of it would need a second
 * column of a column the old release never had (refused). Only a plain
 * column (a type, NOT NULL; no default) and a USING that casts the column,
 * or none. 1 folded, 0 not, -1 error. */
static int fold_into_added(struct conv *c, const struct sql_stmt *st, json_t *rel, const char *column, json_t *def)
{
    static const char *const add_keys[] = {"schema", "table", "column", NULL};
    static const char *const col_keys[] = {"name", "type", "nullable", NULL};
    static const char *const recreate_keys[] = {"schema", "table", "column", "type", "up", "down", "nullable",
                                                "default", "recreate", NULL};
    json_t *using = json_object_get(def, "raw_default");
    int recreate = 0;
    json_t *made = made_by_file(c, rel, column, &recreate);
    int plain = made && (recreate ? sql_only_keys(made, recreate_keys) && json_is_null(json_object_get(made, "default"))
                                  : sql_only_keys(made, add_keys) &&
                                        sql_only_keys(json_object_get(made, "column"), col_keys));
    if (!plain || (using && !is_cast_of(using, column) && !is_text_cast_of(using, column)) ||
        !added_plainly_above(c, st, rel, column))
        return 0;
    char *type = sqlc_column_type_text(c, st, json_object_get(def, "typeName"));
    if (!type)
        return 0;
    int ok = json_object_set_new(recreate ? made : json_object_get(made, "column"), "type", json_string(type)) == 0 &&
             sqlc_remember_column(c, sqlc_rel_schema(rel), sqlc_str_or(rel, "relname", ""), column, type) == 0;
    if (ok && recreate) {   /* the recreation's up: every row NULL, of the new type */
        struct mig_str up = {0};
        mig_str_addf(&up, "(NULL)::%s", type);
        char *null_up = mig_str_take(&up);
        ok = null_up && json_object_set_new(made, "up", json_string(null_up)) == 0;
        free(null_up);
    }
    free(type);
    return ok ? 1 : sqlc_oom(c, st);
}

/* The `down` of st's change of column from old_type, its USING using (or
 * NULL) giving up, other than a cast back: the annotated one, the same
 * zone the other way for AT TIME ZONE between timestamps, or the inverse
 * of a known USING; NULL when none (caller frees). */
static char *known_down(struct conv *c, const struct sql_stmt *st, json_t *using, const char *column,
                        const char *type, const char *up, const char *old_type)
{
    char *down = sqlc_annotated_down(c, st);
    int any = c->opt && c->opt->types_stand_in;
    if (!down && using && is_at_time_zone_of(using, column) && is_timestamp(type) && (is_timestamp(old_type) || any))
        down = strdup(up);
    else if (!down && using && !is_cast_of(using, column) && !is_text_cast_of(using, column))
        down = derived_down(c, st, using, column, old_type);
    return down;
}

char *sqlc_retype_down(struct conv *c, const struct sql_stmt *st, json_t *using, const char *column, const char *type,
                       const char *up, const char *old_type)
{
    char *down = known_down(c, st, using, column, type, up, old_type);
    int via_text = using && is_text_cast_of(using, column);
    if (!down && (!using || is_cast_of(using, column) || via_text)) {
        struct mig_str back = {0};  /* a cast back, through text when the up goes through it */
        mig_str_addf(&back, "%s%s", via_text ? "text::" : "", old_type);
        char *chain = mig_str_take(&back);
        down = chain ? cast_text(column, chain) : NULL;
        free(chain);
    }
    return down;
}

int sqlc_alter_type(struct conv *c, const struct sql_stmt *st, json_t *rel, const char *column, json_t *def)
{
    json_t *using = json_object_get(def, "raw_default");
    if (json_object_get(def, "collClause"))
        return sqlc_fail(c, st, "a type change with COLLATE cannot be converted");
    int folded = fold_into_added(c, st, rel, column, def);
    if (folded)
        return folded < 0 ? -1 : 0;
    int renamed = sqlc_same_column(&c->last, LAST_RENAME, rel, column) && !json_object_get(c->last.body, "type");
    /* after a rename the USING reads the new name; the up and down read the old one */
    int via_text = using && is_text_cast_of(using, column);
    int plain = !using || is_cast_of(using, column) || via_text;
    if (renamed && !plain)
        return sqlc_fail(c, st, "the type of \"%s\" changes after its rename with a USING expression that reads the "
                    "new name; put ALTER COLUMN ... TYPE before the RENAME (as Alembic does)", column);
    if (!renamed) {
        /* renamed further above: the up would read the column by a name it
         * has only after the contract */
        char was_table[SQLC_NAME_LEN], was[SQLC_NAME_LEN];
        sqlc_copy_name(was_table, sqlc_str_or(rel, "relname", ""));
        sqlc_copy_name(was, column);
        sqlc_names_before_file(c, sqlc_rel_schema(rel), was_table, was);
        if (strcmp(was, column) != 0)
            return sqlc_fail(c, st, "the type of \"%s\" changes after a RENAME COLUMN above gave it that name (it was "
                             "\"%s\"), with other statements between; write the ALTER COLUMN ... TYPE right after "
                             "the rename, or before it, or in a migration after this one", column, was);
    }
    const char *db_name = renamed ? c->last.from : column;
    char *type = sqlc_column_type_text(c, st, json_object_get(def, "typeName"));
    char *up = type ? type_change_up(c, st, using, db_name, type, renamed, via_text) : NULL;
    int composed = up && !renamed ? sqlc_compose_retype(c, st, rel, column, using, type, up) : 0;
    if (composed) {
        free(type);
        free(up);
        return composed < 0 ? -1 : 0;
    }
    /* the old type known (not after a rename, whose up and down read the
     * old name): a down derived from it, else only an annotated one */
    char old_type[SQLC_TYPE_LEN];
    int old_known = !renamed && sqlc_old_type(c, sqlc_rel_schema(rel), sqlc_str_or(rel, "relname", ""), db_name,
                                              old_type) == 0;
    char *down = old_known && up ? known_down(c, st, using, column, type, up, old_type) : sqlc_annotated_down(c, st);
    json_t *body = up ? (renamed ? c->last.body : sqlc_alter_body(c, rel, column, "type")) : NULL;
    int rc = 0;
    if (!body) {
        rc = sqlc_fail(c, st, "cannot read the new type or the USING expression of \"%s\"", column);
    } else {
        json_object_set_new(body, "type", json_string(type));
        json_object_set_new(body, "up", json_string(up));
        keep_earlier_changes(c, rel, db_name, body);
        if (default_as_set(c, rel, db_name, body) != 0)
            rc = sqlc_oom(c, st);
        if (down) {
            json_object_set_new(body, "down", json_string(down));
        } else if (!plain) {
            rc = sqlc_fail(c, st, "cannot derive \"down\" (new -> old value) from the USING expression %s: write it "
                      "above the statement as \"-- pgtandem:down EXPR\" (EXPR reads the column by its new name)", up);
        } else if (sqlc_old_type(c, sqlc_rel_schema(rel), sqlc_str_or(rel, "relname", ""), db_name, c->last.cast_back) != 0) {
            rc = sqlc_fail(c, st, "cannot derive \"down\" for the type change of \"%s\": its old type is unknown (no "
                      "catalog was read, or it has no such column); pass --db URI or --proxy URL so it is read from "
                      "the catalog, or write \"-- pgtandem:down EXPR\" above the statement", column);
        } else {
            c->last.type_stmt = st;
            c->last.via_text = via_text;
        }
    }
    free(type);
    free(up);
    free(down);
    return rc;
}

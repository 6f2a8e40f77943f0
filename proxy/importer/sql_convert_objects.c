/* The SQL converter's objects that are not tables: types, domains,
 * extensions, functions, sequences, schemas, views and triggers.
 *
 * A statement creating one runs as written at expand (the running release
 * cannot be using what does not exist yet) with the statement that undoes
 * it as its `down`, so a rollback gives back the schema it started from;
 * nothing undoes an IF NOT EXISTS or OR REPLACE of an object the live
 * catalog already has (or when there is no catalog to ask), since it may
 * have been there before.
 *
 * A DROP of one runs at complete, inside the contract: the old release may
 * call the function, cast to the type or read the view until then, which
 * the converter cannot see. Postgres refuses the DROP at complete if
 * something still depends on it (RESTRICT), and complete then changes
 * nothing. ALTER TYPE ... RENAME TO also runs at complete: the old release
 * names the type by its old name until then. */
#include "sql_convert.h"
#include "sql_convert_conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migration_sql.h"

/* ---- names ---- */

static void add_rangevar(struct mig_str *s, json_t *rel)
{
    const char *schema = json_string_value(json_object_get(rel, "schemaname"));
    char *q = sql_ident(sqlc_str_or(rel, "relname", ""));
    if (schema) {
        char *qs = sql_ident(schema);
        mig_str_addf(s, "%s.", qs ? qs : "");
        free(qs);
    }
    mig_str_add(s, q ? q : "");
    free(q);
}

/* A function's signature as DROP FUNCTION takes it: its name and the types
 * of its input arguments, as written. */
static char *function_signature(struct conv *c, const struct sql_stmt *st)
{
    struct mig_str s = {0};
    sqlc_add_dotted(&s, json_object_get(st->body, "funcname"));
    mig_str_add(&s, "(");
    size_t i;
    json_t *p;
    int n = 0;
    json_array_foreach(json_object_get(st->body, "parameters"), i, p) {
        json_t *fp = json_object_get(p, "FunctionParameter");
        const char *mode = sqlc_str_or(fp, "mode", "FUNC_PARAM_DEFAULT");
        if (!strcmp(mode, "FUNC_PARAM_OUT") || !strcmp(mode, "FUNC_PARAM_TABLE"))
            continue;
        char *type = sql_type_text(&c->s, st, json_object_get(fp, "argType"));
        if (!type) {
            mig_str_free(&s);
            return NULL;
        }
        mig_str_addf(&s, "%s%s%s", n++ ? ", " : "", !strcmp(mode, "FUNC_PARAM_VARIADIC") ? "VARIADIC " : "", type);
        free(type);
    }
    mig_str_add(&s, ")");
    return mig_str_take(&s);
}

static int dropped_before(const struct conv *c, const char *name)
{
    for (size_t i = 0; i < c->ndropped; i++)
        if (!strcmp(c->dropped[i], name))
            return 1;
    return 0;
}

/* 1 when the live catalog has the object, 0 when it has not, -1 when
 * there is no catalog to ask. */
static int exists_now(struct conv *c, const char *kind, const char *name)
{
    if (!c->opt || !c->opt->exists)
        return -1;
    return c->opt->exists(c->opt->column_type_arg, kind, name);
}

/* ---- creating ---- */

/* "DROP <what> IF EXISTS <name>" from a name built in s. */
static char *drop_of(const char *what, struct mig_str *s)
{
    char *name = mig_str_take(s);
    if (!name)
        return NULL;
    mig_str_addf(s, "DROP %s IF EXISTS %s", what, name);
    free(name);
    return mig_str_take(s);
}

/* The statement that undoes st for the rollback, or NULL (none, or the
 * object may have been there before). *failed on out of memory or an
 * unreadable name. */
static char *created_down(struct conv *c, const struct sql_stmt *st, int *failed)
{
    const char *k = st->kind;
    json_t *b = st->body;
    struct mig_str s = {0};
    char *out = NULL;
    *failed = 0;
    if (!strcmp(k, "CreateEnumStmt") || !strcmp(k, "CreateRangeStmt")) {
        sqlc_add_dotted(&s, json_object_get(b, "typeName"));
        out = drop_of("TYPE", &s);
    } else if (!strcmp(k, "CompositeTypeStmt")) {
        add_rangevar(&s, json_object_get(b, "typevar"));
        out = drop_of("TYPE", &s);
    } else if (!strcmp(k, "CreateDomainStmt")) {
        sqlc_add_dotted(&s, json_object_get(b, "domainname"));
        out = drop_of("DOMAIN", &s);
    } else if (!strcmp(k, "CreateExtensionStmt") || !strcmp(k, "CreateSchemaStmt")) {
        int ext = !strcmp(k, "CreateExtensionStmt");
        const char *name = sqlc_str_or(b, ext ? "extname" : "schemaname", "");
        if (sqlc_is_true(b, "if_not_exists") && exists_now(c, ext ? "extension" : "schema", name) != 0)
            return NULL;
        char *q = sql_ident(name);
        mig_str_add(&s, q ? q : "");
        free(q);
        out = drop_of(ext ? "EXTENSION" : "SCHEMA", &s);
    } else if (!strcmp(k, "CreateSeqStmt") || !strcmp(k, "ViewStmt")) {
        int seq = !strcmp(k, "CreateSeqStmt");
        json_t *rel = json_object_get(b, seq ? "sequence" : "view");
        add_rangevar(&s, rel);
        char *name = mig_str_take(&s);
        int maybe_there = sqlc_is_true(b, seq ? "if_not_exists" : "replace");
        if (name && maybe_there && exists_now(c, "relation", name) != 0) {
            free(name);
            return NULL;
        }
        mig_str_add(&s, name ? name : "");
        free(name);
        out = drop_of(seq ? "SEQUENCE" : "VIEW", &s);
    } else if (!strcmp(k, "CreateFunctionStmt")) {
        char *sig = function_signature(c, st);
        if (!sig) {
            *failed = 1;
            return NULL;
        }
        if (sqlc_is_true(b, "replace") && exists_now(c, "function", sig) != 0) {
            free(sig);
            return NULL;
        }
        mig_str_add(&s, sig);
        free(sig);
        out = drop_of(sqlc_is_true(b, "is_procedure") ? "PROCEDURE" : "FUNCTION", &s);
    } else if (!strcmp(k, "CreateTrigStmt") || !strcmp(k, "CreatePolicyStmt")) {
        int trig = !strcmp(k, "CreateTrigStmt");
        if (sqlc_is_true(b, "replace"))
            return NULL;
        char *q = sql_ident(sqlc_str_or(b, trig ? "trigname" : "policy_name", ""));
        mig_str_addf(&s, "%s ON ", q ? q : "");
        free(q);
        add_rangevar(&s, json_object_get(b, trig ? "relation" : "table"));
        out = drop_of(trig ? "TRIGGER" : "POLICY", &s);
    } else {
        return NULL;    /* grants, comments, ALTER SEQUENCE ...: no object of their own */
    }
    *failed = out == NULL;
    return out;
}

/* CREATE TYPE or DOMAIN of a name this script drops earlier: the drop
 * waits for complete, so the name is still taken at expand. */
static int recreates_dropped(struct conv *c, const struct sql_stmt *st)
{
    const char *key = !strcmp(st->kind, "CreateEnumStmt") || !strcmp(st->kind, "CreateRangeStmt") ? "typeName"
                    : !strcmp(st->kind, "CreateDomainStmt") ? "domainname" : NULL;
    struct mig_str s = {0};
    if (key)
        sqlc_add_dotted(&s, json_object_get(st->body, key));
    else if (!strcmp(st->kind, "CompositeTypeStmt"))
        add_rangevar(&s, json_object_get(st->body, "typevar"));
    char *name = mig_str_take(&s);
    int again = name && dropped_before(c, name);
    if (again)
        sqlc_fail(c, st, "%s is dropped above at complete (the old release may use it until then), so it still "
                  "exists when this statement runs at expand. If this replaces an enum to remove a value: %s", name,
                  SQLC_ENUM_VALUE_REMOVAL);
    free(name);
    return again;
}

/* CREATE VIEW of a name this script drops above: the drop waits for
 * complete (the old release reads the view until then), so the new one is
 * made there too, after it, and at start in the new version's schema for
 * the new release ("new_shape", engine/ops/op_sql.c). By an unqualified name
 * only: a qualified one would land beside the old one at start. Returns
 * 1 when it emitted the view, 0 when the statement is not such a view,
 * -1 on a refusal. */
static int view_made_again(struct conv *c, const struct sql_stmt *st)
{
    if (strcmp(st->kind, "ViewStmt") != 0)
        return 0;
    json_t *rel = json_object_get(st->body, "view");
    struct mig_str s = {0};
    add_rangevar(&s, rel);
    char *name = mig_str_take(&s);
    int again = 0;
    for (size_t i = 0; name && i < c->ndropped_views; i++)
        again |= !strcmp(c->dropped_views[i], name);
    if (!again) {
        free(name);
        return 0;
    }
    int qualified = json_object_get(rel, "schemaname") != NULL;
    int rc = qualified ? sqlc_fail(c, st, "view %s is dropped above at complete (the old release may read it until "
                                   "then) and made again here; by its schema-qualified name the new definition cannot "
                                   "be given to the new release alone before complete. Name the view without its "
                                   "schema (the search_path finds it), or use CREATE OR REPLACE VIEW when the new "
                                   "definition only adds columns at the end", name)
                       : sqlc_emit_sql(c, st, "complete", NULL);
    free(name);
    if (rc != 0)
        return -1;
    json_t *last = json_array_get(c->ops, json_array_size(c->ops) - 1);
    json_object_set_new(json_object_get(last, "sql"), "new_shape", json_true());
    return 1;
}

int sqlc_emit_created(struct conv *c, const struct sql_stmt *st)
{
    if (recreates_dropped(c, st))
        return -1;
    int again = view_made_again(c, st);
    if (again)
        return again < 0 ? -1 : 0;
    int failed = 0;
    char *down = created_down(c, st, &failed);
    if (failed)
        return sqlc_fail(c, st, "cannot read the name of the object this statement creates");
    int rc = sqlc_emit_sql(c, st, NULL, down);
    free(down);
    return rc;
}

/* ---- dropping, renaming ---- */

static const struct {
    const char *object, *what;
} DEFERRED_DROPS[] = {
    {"OBJECT_TYPE", "type"}, {"OBJECT_DOMAIN", "domain"}, {"OBJECT_FUNCTION", "function"},
    {"OBJECT_PROCEDURE", "procedure"}, {"OBJECT_SEQUENCE", "sequence"}, {"OBJECT_VIEW", "view"},
    {"OBJECT_TRIGGER", "trigger"},
};

int sqlc_drop_deferred(const char *remove_type)
{
    for (size_t i = 0; i < sizeof DEFERRED_DROPS / sizeof DEFERRED_DROPS[0]; i++)
        if (!strcmp(DEFERRED_DROPS[i].object, remove_type))
            return 1;
    return 0;
}

/* Adds the name each object of the DROP has at `path` ("TypeName.names"
 * for a type, "List.items" for a view) to `list` (`*n` used, `cap` in all). */
static void remember_names(const struct sql_stmt *st, const char *path, char (*list)[2 * SQLC_NAME_LEN + 8],
                           size_t *n, size_t cap)
{
    size_t i;
    json_t *obj;
    json_array_foreach(json_object_get(st->body, "objects"), i, obj) {
        struct mig_str s = {0};
        sqlc_add_dotted(&s, sql_get(obj, path));
        char *name = mig_str_take(&s);
        if (name && *n < cap)
            snprintf(list[(*n)++], sizeof list[0], "%s", name);
        free(name);
    }
}

/* What a DROP at complete leaves taken until then, remembered: a type or
 * domain created again in the same script (drizzle-kit's replacement of an
 * enum) is refused here rather than by Postgres at expand, where it still
 * exists; a view made again gets the new release its definition from the
 * start (sqlc_emit_created). */
static void remember_dropped(struct conv *c, const struct sql_stmt *st)
{
    const char *what = sqlc_str_or(st->body, "removeType", "");
    if (!strcmp(what, "OBJECT_VIEW"))
        remember_names(st, "List.items", c->dropped_views, &c->ndropped_views,
                       sizeof c->dropped_views / sizeof c->dropped_views[0]);
    else if (!strcmp(what, "OBJECT_TYPE") || !strcmp(what, "OBJECT_DOMAIN"))
        remember_names(st, "TypeName.names", c->dropped, &c->ndropped, sizeof c->dropped / sizeof c->dropped[0]);
}

/* The last part of a dotted name list (a function's name without its schema). */
static const char *last_name(json_t *names)
{
    size_t n = json_array_size(names);
    return n ? sql_node_str(json_array_get(names, n - 1)) : NULL;
}

/* A DROP FUNCTION or PROCEDURE of a name the script creates again after it
 * (`DROP FUNCTION IF EXISTS f(...); CREATE OR REPLACE FUNCTION f(...)`, how
 * generated SQL makes a function): run at complete, the drop would take
 * away the function the CREATE made at start. */
static int function_made_again(const struct conv *c, const struct sql_stmt *st)
{
    const char *what = sqlc_str_or(st->body, "removeType", "");
    if (strcmp(what, "OBJECT_FUNCTION") != 0 && strcmp(what, "OBJECT_PROCEDURE") != 0)
        return 0;
    size_t i;
    json_t *obj;
    json_array_foreach(json_object_get(st->body, "objects"), i, obj) {
        const char *name = last_name(sql_get(obj, "ObjectWithArgs.objname"));
        for (const struct sql_stmt *o = st + 1; name && o < c->s.stmts + c->s.nstmts; o++) {
            const char *made = !strcmp(o->kind, "CreateFunctionStmt") ? last_name(json_object_get(o->body, "funcname"))
                                                                        : NULL;
            if (made && !strcmp(made, name))
                return 1;
        }
    }
    return 0;
}

int sqlc_drop_object(struct conv *c, const struct sql_stmt *st)
{
    if (!strcmp(sqlc_str_or(st->body, "behavior", "DROP_RESTRICT"), "DROP_CASCADE"))
        return sqlc_fail(c, st, "CASCADE would drop whatever depends on it without naming it; drop those first");
    remember_dropped(c, st);
    /* made again by the script: the drop runs where it stands, at start,
     * and the function of that name is there throughout, as offline */
    return sqlc_emit_sql(c, st, function_made_again(c, st) ? NULL : "complete", NULL);
}

int sqlc_rename_type(struct conv *c, const struct sql_stmt *st)
{
    json_t *names = sql_get(st->body, "object.List.items");
    size_t n = json_array_size(names);
    const char *from = n ? sql_node_str(json_array_get(names, n - 1)) : NULL;
    const char *schema = n > 1 ? sql_node_str(json_array_get(names, n - 2)) : "public";
    const char *to = sqlc_str_or(st->body, "newname", NULL);
    if (from && to && schema && c->ntype_renamed < sizeof c->type_renamed / sizeof c->type_renamed[0]) {
        sqlc_copy_name(c->type_renamed[c->ntype_renamed].schema, schema);
        sqlc_copy_name(c->type_renamed[c->ntype_renamed].from, from);
        sqlc_copy_name(c->type_renamed[c->ntype_renamed].to, to);
        c->ntype_renamed++;
    }
    return sqlc_emit_sql(c, st, "complete", NULL);
}

const char *sqlc_type_at_expand(const struct conv *c, const char *schema, const char *name)
{
    /* newest first: X_old <- X, X <- X_new read back to X_new */
    for (size_t i = c->ntype_renamed; i-- > 0;)
        if (!strcmp(c->type_renamed[i].schema, schema ? schema : "public") && !strcmp(c->type_renamed[i].to, name))
            name = c->type_renamed[i].from;
    return name;
}

/* The name a TypeName node gives, and its name at expand (the same
 * pointer when no rename above moves it to complete). */
static const char *type_name_at_expand(const struct conv *c, json_t *type_name, const char **name,
                                       const char **schema)
{
    json_t *names = json_object_get(type_name, "names");
    size_t n = json_array_size(names);
    *name = n && n <= 2 ? sql_node_str(json_array_get(names, n - 1)) : NULL;
    *schema = n > 1 ? sql_node_str(json_array_get(names, n - 2)) : NULL;
    return *name ? sqlc_type_at_expand(c, *schema, *name) : NULL;
}

char *sqlc_column_type_text(struct conv *c, const struct sql_stmt *st, json_t *type_name)
{
    const char *name, *schema;
    const char *at_expand = type_name_at_expand(c, type_name, &name, &schema);
    if (!name || at_expand == name || json_object_get(type_name, "typmods"))
        return sql_type_text(&c->s, st, type_name);
    char *qs = schema ? sql_ident(schema) : NULL, *qt = sql_ident(at_expand);
    struct mig_str s = {0};
    if (qt && (!schema || qs))
        mig_str_addf(&s, "%s%s%s", qs ? qs : "", qs ? "." : "", qt);
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(type_name, "arrayBounds"), i, v) {
        mig_str_add(&s, "[]");
    }
    free(qs);
    free(qt);
    return mig_str_take(&s);
}

struct renamed_type_sought {
    const struct conv *c;
    const char *name;   /* found: the name as written */
};

/* A TypeName, but a column's own type (a ColumnDef's, which
 * sqlc_column_type_text writes), naming a type renamed at complete. */
static int names_renamed_type(json_t *parent, const char *key, json_t *node, void *arg)
{
    struct renamed_type_sought *r = arg;
    const char *name, *schema;
    (void)parent;
    if (!key || !json_is_object(node))
        return 0;
    if (!strcmp(key, "ColumnDef")) {
        const char *k;
        json_t *v;
        json_object_foreach(node, k, v)
            if (strcmp(k, "typeName") != 0 && sqlc_tree_any(v, node, k, names_renamed_type, arg))
                return 1;
        return -1;
    }
    if ((strcmp(key, "TypeName") && strcmp(key, "typeName")) || type_name_at_expand(r->c, node, &name, &schema) == name)
        return 0;
    r->name = name;
    return 1;
}

int sqlc_refuse_type_renamed_at_complete(struct conv *c, const struct sql_stmt *st)
{
    static const char *const naming_types[] = {"RenameStmt", "DropStmt", "AlterEnumStmt", "CommentStmt",
                                               "CreateEnumStmt", NULL};
    if (!c->ntype_renamed)
        return 0;
    for (int k = 0; naming_types[k]; k++)
        if (!strcmp(st->kind, naming_types[k]))
            return 0;
    struct renamed_type_sought r = {c, NULL};
    if (!sqlc_tree_any(st->body, NULL, NULL, names_renamed_type, &r))
        return 0;
    const char *name = r.name;
    return sqlc_fail(c, st, "names the type \"%s\" (a cast, a default, an argument) after the ALTER TYPE ... RENAME "
                     "that gives it that name, which runs at complete: until then \"%s\" is the type before the "
                     "rename, which this statement would reach. Put the rename after this statement, name the type "
                     "by its name before the rename, or put this statement in a migration after this one",
                     name, name);
}

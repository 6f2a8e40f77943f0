/* SQL -> migration JSON. Walks the statements of a script (sql_script.c) in
 * order and emits one operation per change, merging consecutive changes of
 * one column (Alembic's "ALTER COLUMN c TYPE T USING e" followed by "RENAME c
 * TO d" is one rename_column). Statements with no online operation are
 * passed through as `sql` only when running them as written cannot block or
 * break the running application; the others stop the conversion with the
 * statement's position and the reason, so nothing is dropped silently. */
#include "sql_convert.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "migration_sql.h"
#include "sql_script.h"

/* A file name's limit: a name is kept whole, never cut to fit; the migration
 * parser refuses one longer than a migration's name may be, saying why. */
#define MAX_MIG_NAME 255
#define TYPE_LEN 256

/* The last operation emitted, kept open so the next statement on the same
 * column can join it. */
enum last_kind { LAST_NONE, LAST_ALTER, LAST_RENAME };

struct last_op {
    enum last_kind kind;
    json_t *body;               /* borrowed from the operations array */
    char schema[64], table[64];
    char column[64];            /* the column's name after the operation */
    char from[64];              /* rename: its name before */
    const struct sql_stmt *type_stmt;  /* where the type changed; down still to write */
    char cast_back[TYPE_LEN];   /* the old type: down is a cast of the new value back to it */
};

struct known_col {
    char *schema, *table, *column, *type;
};

struct conv {
    struct sql_script s;
    const struct sqlc_options *opt;
    json_t *ops;
    struct last_op last;
    struct known_col *known;    /* columns this script created, with their types */
    size_t nknown, capknown;
    char alembic_from[64], alembic_to[64];
    char *err;
    size_t errlen;
};

/* ---- messages ---- */

__attribute__((format(printf, 3, 4)))
static int fail(struct conv *c, const struct sql_stmt *st, const char *fmt, ...)
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

static int oom(struct conv *c, const struct sql_stmt *st)
{
    return fail(c, st, "out of memory");
}

/* ---- small helpers ---- */

static const char *str_or(json_t *obj, const char *key, const char *dflt)
{
    const char *v = json_string_value(json_object_get(obj, key));
    return v ? v : dflt;
}

static int is_true(json_t *obj, const char *key)
{
    return json_is_true(json_object_get(obj, key));
}

static void copy_name(char *dst, const char *src)
{
    snprintf(dst, 64, "%s", src ? src : "");
}

/* table (and schema when it is not public) of a RangeVar into an op body */
static void set_relation(json_t *body, json_t *rel, const char *key)
{
    const char *schema = json_string_value(json_object_get(rel, "schemaname"));
    if (schema && strcmp(schema, "public") != 0)
        json_object_set_new(body, "schema", json_string(schema));
    json_object_set_new(body, key, json_string(str_or(rel, "relname", "")));
}

static const char *rel_schema(json_t *rel)
{
    return str_or(rel, "schemaname", "public");
}

static int add_op(struct conv *c, const char *kind, json_t *body)
{
    json_t *op = json_object();
    if (!op || !body || json_object_set_new(op, kind, body) != 0 || json_array_append_new(c->ops, op) != 0)
        return -1;
    return 0;
}

static int remember_column(struct conv *c, const char *schema, const char *table, const char *column,
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

/* The column's type before this statement: one this script gave it, else
 * the live catalog's when a lookup was provided. */
static int old_type(struct conv *c, const char *schema, const char *table, const char *column, char *out)
{
    for (size_t i = c->nknown; i-- > 0;) {
        struct known_col *k = &c->known[i];
        if (!strcmp(k->schema, schema) && !strcmp(k->table, table) && !strcmp(k->column, column)) {
            snprintf(out, TYPE_LEN, "%s", k->type);
            return 0;
        }
    }
    if (c->opt && c->opt->column_type)
        return c->opt->column_type(c->opt->column_type_arg, schema, table, column, out, TYPE_LEN);
    return -1;
}

/* An explicit `down` written above the statement as "-- pgtandem:down EXPR". */
static char *annotated_down(struct conv *c, const struct sql_stmt *st)
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
static int close_last(struct conv *c)
{
    struct last_op *l = &c->last;
    if (l->kind != LAST_NONE && l->type_stmt && !json_object_get(l->body, "down")) {
        char *id = sql_ident(l->column);
        size_t n = id ? strlen(id) + strlen(l->cast_back) + 3 : 0;
        char *down = id ? malloc(n) : NULL;
        if (!down) {
            free(id);
            return oom(c, l->type_stmt);
        }
        snprintf(down, n, "%s::%s", id, l->cast_back);
        json_object_set_new(l->body, "down", json_string(down));
        free(id);
        free(down);
    }
    memset(l, 0, sizeof *l);
    return 0;
}

static int same_column(const struct last_op *l, enum last_kind kind, json_t *rel, const char *column)
{
    return l->kind == kind && !strcmp(l->schema, rel_schema(rel)) && !strcmp(l->table, str_or(rel, "relname", "")) &&
           !strcmp(l->column, column);
}

/* The alter_column body for column, joined to the previous statement's when
 * it changed the same column and does not already set key. */
static json_t *alter_body(struct conv *c, json_t *rel, const char *column, const char *key)
{
    if (same_column(&c->last, LAST_ALTER, rel, column) && !json_object_get(c->last.body, key))
        return c->last.body;
    if (close_last(c) != 0)
        return NULL;
    json_t *body = json_object();
    if (!body)
        return NULL;
    set_relation(body, rel, "table");
    json_object_set_new(body, "column", json_string(column));
    if (add_op(c, "alter_column", body) != 0)
        return NULL;
    struct last_op *l = &c->last;
    l->kind = LAST_ALTER;
    l->body = body;
    copy_name(l->schema, rel_schema(rel));
    copy_name(l->table, str_or(rel, "relname", ""));
    copy_name(l->column, column);
    return body;
}

/* ---- columns ---- */

static int fk_actions_default(json_t *con)
{
    return !strcmp(str_or(con, "fk_upd_action", "a"), "a") && !strcmp(str_or(con, "fk_del_action", "a"), "a") &&
           !strcmp(str_or(con, "fk_matchtype", "s"), "s");
}

/* ON DELETE / ON UPDATE from the parse tree's action letter; NO ACTION, the
 * default, is left out. */
static void add_fk_action(json_t *ref, const char *key, const char *code)
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
    if (strcmp(rel_schema(pk), schema) != 0) {
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
    const char *t = str_or(pk, "relname", "");
    const char *col = json_array_size(attrs) ? sql_node_str(json_array_get(attrs, 0)) : NULL;
    size_t n = strlen(t) + (col ? strlen(col) : 0) + 3;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, col ? "%s(%s)" : "%s", t, col);
    return out;
}

/* A Constraint with only the given fields (plus harmless ones). */
static int plain_constraint(json_t *con)
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
static int column_json(struct conv *c, const struct sql_stmt *st, json_t *def, const char *schema,
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
    char *type = sql_type_text(&c->s, st, json_object_get(def, "typeName"));
    if (!type)
        return fail(c, st, "cannot read the type of column \"%s\"", str_or(def, "colname", "?"));
    json_t *col = json_object();
    json_object_set_new(col, "name", json_string(str_or(def, "colname", "")));
    json_object_set_new(col, "type", json_string(type));
    free(type);
    size_t i;
    json_t *node;
    int rc = 0;
    json_array_foreach(json_object_get(def, "constraints"), i, node) {
        json_t *con = json_object_get(node, "Constraint");
        const char *ct = str_or(con, "contype", "");
        if (json_object_get(con, "conname") || !plain_constraint(con)) {
            *why = "it has a named or deferrable constraint";
            rc = 1;
        } else if (!strcmp(ct, "CONSTR_NOTNULL") || !strcmp(ct, "CONSTR_NULL")) {
            json_object_set_new(col, "nullable", json_boolean(!strcmp(ct, "CONSTR_NULL")));
        } else if (!strcmp(ct, "CONSTR_DEFAULT") || !strcmp(ct, "CONSTR_CHECK")) {
            const char *key = !strcmp(ct, "CONSTR_DEFAULT") ? "default" : "check";
            char *expr = sql_expr_text(&c->s, st, json_object_get(con, "raw_expr"));
            if (!expr) {
                json_decref(col);
                return fail(c, st, "cannot read the %s of column \"%s\"", key, str_or(def, "colname", "?"));
            }
            json_object_set_new(col, key, json_string(expr));
            free(expr);
        } else if (!strcmp(ct, "CONSTR_IDENTITY")) {
            const char *when = str_or(con, "generated_when", "a");
            json_object_set_new(col, "identity", json_string(!strcmp(when, "a") ? "always" : "by_default"));
        } else if (!strcmp(ct, "CONSTR_GENERATED")) {
            char *expr = sql_expr_text(&c->s, st, json_object_get(con, "raw_expr"));
            if (!expr) {
                json_decref(col);
                return fail(c, st, "cannot read the generation expression of column \"%s\"",
                            str_or(def, "colname", "?"));
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

/* ---- statements ---- */

static int emit_sql(struct conv *c, const struct sql_stmt *st, const char *on, const char *down)
{
    if (close_last(c) != 0)
        return -1;
    char *text = sql_stmt_text(&c->s, st);
    json_t *body = json_object();
    if (!text || !body) {
        free(text);
        json_decref(body);
        return oom(c, st);
    }
    json_object_set_new(body, "up", json_string(text));
    if (down)
        json_object_set_new(body, "down", json_string(down));
    if (on)
        json_object_set_new(body, "on", json_string(on));
    free(text);
    return add_op(c, "sql", body) == 0 ? 0 : oom(c, st);
}

static json_t *column_by_name(json_t *cols, const char *name)
{
    size_t i;
    json_t *col;
    json_array_foreach(cols, i, col) {
        if (!strcmp(str_or(col, "name", ""), name))
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
    if (strcmp(rel_schema(pk), schema) != 0) {
        *why = "its foreign key references a table in another schema";
        return NULL;
    }
    if (strcmp(str_or(con, "fk_matchtype", "s"), "s") != 0) {
        *why = "its foreign key has a MATCH type";
        return NULL;
    }
    if (json_array_size(json_object_get(con, "pk_attrs")) == 0) {
        *why = "its foreign key does not name the referenced columns";
        return NULL;
    }
    json_t *ref = json_object();
    json_object_set_new(ref, "table", json_string(str_or(pk, "relname", "")));
    json_object_set_new(ref, "columns", name_array(json_object_get(con, "pk_attrs")));
    add_fk_action(ref, "on_delete", str_or(con, "fk_del_action", "a"));
    add_fk_action(ref, "on_update", str_or(con, "fk_upd_action", "a"));
    return ref;
}

/* A table constraint of CREATE TABLE as an entry of create_table's
 * "constraints"; 0 done, 1 cannot (why set), -1 failed. */
static int table_constraint_json(struct conv *c, const struct sql_stmt *st, json_t *con, const char *schema,
                                 json_t *out, const char **why)
{
    const char *ct = str_or(con, "contype", "");
    const char *name = json_string_value(json_object_get(con, "conname"));
    json_t *probe = json_deep_copy(con);
    json_object_del(probe, "conname");
    int plain = plain_constraint(probe);
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
            return fail(c, st, "cannot read a CHECK expression");
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
    const char *ct = str_or(con, "contype", "");
    json_t *keys = json_object_get(con, !strcmp(ct, "CONSTR_FOREIGN") ? "fk_attrs" : "keys");
    json_t *col = json_array_size(keys) == 1 ? column_by_name(cols, sql_node_str(json_array_get(keys, 0))) : NULL;
    if (!strcmp(ct, "CONSTR_CHECK"))
        col = json_array_get(cols, 0);  /* Postgres treats column and table checks alike */
    if (json_object_get(con, "conname") || !plain_constraint(con) || !col) {
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
        return !strcmp(key, "check") ? fail(c, st, "cannot read a CHECK expression") : 1;
    json_object_set_new(col, key, json_string(text));
    free(text);
    return 0;
}

/* CREATE TABLE as create_table when the column objects can say all of it;
 * otherwise as `sql` (a new table blocks nobody), dropped on rollback. */
static int conv_create_table(struct conv *c, const struct sql_stmt *st)
{
    static const char *const plain_keys[] = {"relation", "tableElts", "oncommit", "if_not_exists", NULL};
    json_t *rel = json_object_get(st->body, "relation");
    const char *schema = rel_schema(rel), *table = str_or(rel, "relname", "");
    const char *why = NULL;
    json_t *cols = json_array();
    if (!cols)
        return oom(c, st);
    if (!sql_only_keys(st->body, plain_keys) || strcmp(str_or(rel, "relpersistence", "p"), "p") != 0)
        why = "it has table options (inheritance, partitioning, storage, persistence)";
    size_t i;
    json_t *elt;
    json_array_foreach(json_object_get(st->body, "tableElts"), i, elt) {
        if (why)
            break;
        json_t *def = json_object_get(elt, "ColumnDef"), *con = json_object_get(elt, "Constraint");
        json_t *col = NULL;
        int rc = def ? column_json(c, st, def, schema, &col, &why) : con ? 0 : 1;
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
        if (remember_column(c, schema, table, str_or(col, "name", ""), str_or(col, "type", "")) != 0) {
            json_decref(cols);
            return oom(c, st);
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
        return emit_sql(c, st, NULL, down);
    }
    if (close_last(c) != 0) {
        json_decref(cols);
        json_decref(cons);
        return -1;
    }
    json_t *body = json_object();
    set_relation(body, rel, "table");
    json_object_set_new(body, "columns", cols);
    if (json_array_size(cons))
        json_object_set_new(body, "constraints", cons);
    else
        json_decref(cons);
    return add_op(c, "create_table", body) == 0 ? 0 : oom(c, st);
}

static int is_cast_of(json_t *expr, const char *column)
{
    json_t *fields = sql_get(expr, "TypeCast.arg.ColumnRef.fields");
    const char *name = json_array_size(fields) == 1 ? sql_node_str(json_array_get(fields, 0)) : NULL;
    return name && !strcmp(name, column);
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
                            const char *type, int renamed)
{
    if (!using)
        return cast_text(db_name, type);
    if (!renamed)
        return sql_expr_text(&c->s, st, using);
    char *cast_type = sql_type_text(&c->s, st, sql_get(using, "TypeCast.typeName"));
    char *up = cast_type ? cast_text(db_name, cast_type) : NULL;
    free(cast_type);
    return up;
}

static int conv_alter_type(struct conv *c, const struct sql_stmt *st, json_t *rel, const char *column, json_t *def)
{
    json_t *using = json_object_get(def, "raw_default");
    if (json_object_get(def, "collClause"))
        return fail(c, st, "a type change with COLLATE cannot be converted");
    int plain = !using || is_cast_of(using, column);
    int renamed = same_column(&c->last, LAST_RENAME, rel, column) && !json_object_get(c->last.body, "type");
    if (renamed && !plain)
        return fail(c, st, "the type of \"%s\" changes after its rename with a USING expression that reads the "
                    "new name; put ALTER COLUMN ... TYPE before the RENAME (as Alembic does)", column);
    const char *db_name = renamed ? c->last.from : column;
    char *type = sql_type_text(&c->s, st, json_object_get(def, "typeName"));
    char *up = type ? type_change_up(c, st, using, db_name, type, renamed) : NULL;
    char *down = annotated_down(c, st);
    json_t *body = up ? (renamed ? c->last.body : alter_body(c, rel, column, "type")) : NULL;
    int rc = 0;
    if (!body) {
        rc = fail(c, st, "cannot read the new type or the USING expression of \"%s\"", column);
    } else {
        json_object_set_new(body, "type", json_string(type));
        json_object_set_new(body, "up", json_string(up));
        if (down) {
            json_object_set_new(body, "down", json_string(down));
        } else if (!plain) {
            rc = fail(c, st, "cannot derive \"down\" (new -> old value) from the USING expression %s: write it "
                      "above the statement as \"-- pgtandem:down EXPR\" (EXPR reads the column by its new name)", up);
        } else if (old_type(c, rel_schema(rel), str_or(rel, "relname", ""), db_name, c->last.cast_back) != 0) {
            rc = fail(c, st, "cannot derive \"down\" for the type change of \"%s\": its old type is unknown (no "
                      "catalog was read, or it has no such column); pass --db URI or --proxy URL so it is read from "
                      "the catalog, or write \"-- pgtandem:down EXPR\" above the statement", column);
        } else {
            c->last.type_stmt = st;
        }
    }
    free(type);
    free(up);
    free(down);
    return rc;
}

/* ALTER TABLE t ALTER COLUMN c TYPE T followed by RENAME c TO d: one
 * rename_column, so the column is copied once. */
static int alter_joins_rename(const struct last_op *l, json_t *rel, const char *column)
{
    static const char *const keys[] = {"schema", "table", "column", "type", "up", "down", NULL};
    return same_column(l, LAST_ALTER, rel, column) && json_object_get(l->body, "type") &&
           sql_only_keys(l->body, keys);
}

static int conv_rename_column(struct conv *c, const struct sql_stmt *st, json_t *rel)
{
    const char *from = str_or(st->body, "subname", ""), *to = str_or(st->body, "newname", "");
    struct last_op *l = &c->last;
    json_t *body = json_object();
    if (!body)
        return oom(c, st);
    set_relation(body, rel, "table");
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
            return oom(c, st);
    } else {
        if (close_last(c) != 0 || add_op(c, "rename_column", body) != 0)
            return oom(c, st);
        memset(l, 0, sizeof *l);
        copy_name(l->schema, rel_schema(rel));
        copy_name(l->table, str_or(rel, "relname", ""));
    }
    l->kind = LAST_RENAME;
    l->body = body;
    copy_name(l->from, from);
    copy_name(l->column, to);
    return 0;
}

static int conv_rename(struct conv *c, const struct sql_stmt *st)
{
    const char *kind = str_or(st->body, "renameType", "");
    json_t *rel = json_object_get(st->body, "relation");
    if (!strcmp(kind, "OBJECT_COLUMN") && !strcmp(str_or(st->body, "relationType", ""), "OBJECT_TABLE"))
        return conv_rename_column(c, st, rel);
    if (!strcmp(kind, "OBJECT_TABLE")) {
        if (close_last(c) != 0)
            return -1;
        json_t *body = json_object();
        set_relation(body, rel, "from");
        json_object_set_new(body, "to", json_string(str_or(st->body, "newname", "")));
        return add_op(c, "rename_table", body) == 0 ? 0 : oom(c, st);
    }
    if (!strcmp(kind, "OBJECT_TABCONSTRAINT")) {
        /* the old release keeps the name it knows until the contract */
        if (close_last(c) != 0)
            return -1;
        json_t *body = json_object();
        set_relation(body, rel, "table");
        json_object_set_new(body, "from", json_string(str_or(st->body, "subname", "")));
        json_object_set_new(body, "to", json_string(str_or(st->body, "newname", "")));
        return add_op(c, "rename_constraint", body) == 0 ? 0 : oom(c, st);
    }
    if (!strcmp(kind, "OBJECT_INDEX"))
        return emit_sql(c, st, NULL, NULL);     /* a catalog rename: instant, no data touched */
    return fail(c, st, "renaming a %s is not supported by the converter", kind + (strncmp(kind, "OBJECT_", 7) ? 0 : 7));
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

static int conv_add_constraint(struct conv *c, const struct sql_stmt *st, json_t *rel, json_t *con, size_t ncmds)
{
    const char *ct = str_or(con, "contype", "");
    const char *name = json_string_value(json_object_get(con, "conname"));
    if (is_true(con, "skip_validation") || json_object_get(con, "indexname")) {
        /* NOT VALID and USING INDEX are already the online forms */
        if (ncmds > 1)
            return fail(c, st, "put each ADD CONSTRAINT ... NOT VALID / USING INDEX in its own ALTER TABLE");
        return emit_sql(c, st, NULL, NULL);
    }
    int known = !strcmp(ct, "CONSTR_CHECK") || !strcmp(ct, "CONSTR_UNIQUE") || !strcmp(ct, "CONSTR_FOREIGN") ||
                !strcmp(ct, "CONSTR_PRIMARY");
    if (!known)
        return fail(c, st, "this kind of constraint (%s) is not supported by the converter", ct);
    if (!name)
        name = "(unnamed)";     /* for messages: the operation gets the name Postgres would choose */
    json_t *probe = json_deep_copy(con);
    json_object_del(probe, "conname");
    int plain = plain_constraint(probe);
    json_decref(probe);
    if (!plain)
        return fail(c, st, "constraint \"%s\" has options (DEFERRABLE, INCLUDE, NO INHERIT, ...) that "
                    "create_constraint cannot hold", name);
    if (!strcmp(ct, "CONSTR_FOREIGN") && (strcmp(str_or(con, "fk_matchtype", "s"), "s") ||
                                          strcmp(rel_schema(json_object_get(con, "pktable")), rel_schema(rel)))) {
        return fail(c, st, "foreign key \"%s\" has a MATCH type or a table in another schema; write it as ADD "
                    "CONSTRAINT ... NOT VALID followed by VALIDATE CONSTRAINT (both run online as they are)", name);
    }
    if (!strcmp(ct, "CONSTR_FOREIGN") && json_array_size(json_object_get(con, "pk_attrs")) == 0)
        return fail(c, st, "foreign key \"%s\": name the referenced columns (REFERENCES t (col))", name);
    if (close_last(c) != 0)
        return -1;
    json_t *body = json_object();
    set_relation(body, rel, "table");
    if (json_object_get(con, "conname"))
        json_object_set_new(body, "name", json_string(name));
    if (!strcmp(ct, "CONSTR_CHECK")) {
        char *expr = sql_expr_text(&c->s, st, json_object_get(con, "raw_expr"));
        if (!expr) {
            json_decref(body);
            return fail(c, st, "cannot read the CHECK expression of \"%s\"", name);
        }
        json_object_set_new(body, "type", json_string("check"));
        json_object_set_new(body, "check", json_string(expr));
        free(expr);
    } else if (!strcmp(ct, "CONSTR_UNIQUE") || !strcmp(ct, "CONSTR_PRIMARY")) {
        json_object_set_new(body, "type", json_string(!strcmp(ct, "CONSTR_UNIQUE") ? "unique" : "primary_key"));
        constraint_columns(body, "columns", json_object_get(con, "keys"));
    } else {
        json_object_set_new(body, "type", json_string("foreign_key"));
        constraint_columns(body, "columns", json_object_get(con, "fk_attrs"));
        json_t *ref = json_object();
        json_object_set_new(ref, "table", json_string(str_or(json_object_get(con, "pktable"), "relname", "")));
        constraint_columns(ref, "columns", json_object_get(con, "pk_attrs"));
        add_fk_action(ref, "on_delete", str_or(con, "fk_del_action", "a"));
        add_fk_action(ref, "on_update", str_or(con, "fk_upd_action", "a"));
        json_object_set_new(body, "references", ref);
    }
    return add_op(c, "create_constraint", body) == 0 ? 0 : oom(c, st);
}

static int conv_add_column(struct conv *c, const struct sql_stmt *st, json_t *rel, json_t *def)
{
    const char *why = NULL;
    json_t *col = NULL;
    int rc = column_json(c, st, def, rel_schema(rel), &col, &why);
    if (rc < 0)
        return -1;
    if (rc > 0)
        return fail(c, st, "ADD COLUMN \"%s\" cannot be converted: %s; add the column plainly and its "
                    "constraints with their own ADD CONSTRAINT", str_or(def, "colname", "?"), why);
    if (json_object_get(col, "identity") || json_object_get(col, "generated")) {
        json_decref(col);
        return fail(c, st, "ADD COLUMN \"%s\" as an identity or generated column writes every row under ACCESS "
                    "EXCLUSIVE; add a plain column and fill it with an \"up\"", str_or(def, "colname", "?"));
    }
    if (close_last(c) != 0 || remember_column(c, rel_schema(rel), str_or(rel, "relname", ""),
                                              str_or(col, "name", ""), str_or(col, "type", "")) != 0) {
        json_decref(col);
        return oom(c, st);
    }
    json_t *body = json_object();
    set_relation(body, rel, "table");
    json_object_set_new(body, "column", col);
    return add_op(c, "add_column", body) == 0 ? 0 : oom(c, st);
}

/* The old release may rely on the constraint until the contract drops it. */
static int conv_drop_constraint(struct conv *c, const struct sql_stmt *st, json_t *rel, json_t *cmd,
                                const char *name)
{
    if (close_last(c) != 0)
        return -1;
    json_t *body = json_object();
    set_relation(body, rel, "table");
    json_object_set_new(body, "name", json_string(name));
    if (is_true(cmd, "missing_ok"))
        json_object_set_new(body, "if_exists", json_true());
    return add_op(c, "drop_constraint", body) == 0 ? 0 : oom(c, st);
}

static int conv_replica_identity(struct conv *c, const struct sql_stmt *st, json_t *rel, json_t *ri)
{
    const char *kind = str_or(ri, "identity_type", "");
    json_t *identity = NULL;
    if (!strcmp(kind, "i"))
        identity = json_pack("{s:s}", "index", str_or(ri, "name", ""));
    else
        identity = json_string(!strcmp(kind, "f") ? "full" : !strcmp(kind, "n") ? "nothing" : "default");
    if (close_last(c) != 0)
        return -1;
    json_t *body = json_object();
    set_relation(body, rel, "table");
    json_object_set_new(body, "identity", identity);
    return add_op(c, "set_replica_identity", body) == 0 ? 0 : oom(c, st);
}

static int conv_alter_cmd(struct conv *c, const struct sql_stmt *st, json_t *rel, json_t *cmd, size_t ncmds)
{
    const char *sub = str_or(cmd, "subtype", "");
    const char *column = str_or(cmd, "name", "");
    json_t *def = json_object_get(cmd, "def");
    if (!strcmp(str_or(cmd, "behavior", "DROP_RESTRICT"), "DROP_CASCADE"))
        return fail(c, st, "CASCADE would drop whatever depends on it without naming it; drop those first");
    if (!strcmp(sub, "AT_AddColumn"))
        return conv_add_column(c, st, rel, json_object_get(def, "ColumnDef"));
    if (!strcmp(sub, "AT_DropColumn")) {
        if (close_last(c) != 0)
            return -1;
        json_t *body = json_object();
        set_relation(body, rel, "table");
        json_object_set_new(body, "column", json_string(column));
        return add_op(c, "drop_column", body) == 0 ? 0 : oom(c, st);
    }
    if (!strcmp(sub, "AT_AlterColumnType"))
        return conv_alter_type(c, st, rel, column, json_object_get(def, "ColumnDef"));
    if (!strcmp(sub, "AT_SetNotNull") || !strcmp(sub, "AT_DropNotNull")) {
        json_t *body = alter_body(c, rel, column, "nullable");
        return body ? json_object_set_new(body, "nullable", json_boolean(!strcmp(sub, "AT_DropNotNull"))) : oom(c, st);
    }
    if (!strcmp(sub, "AT_ColumnDefault")) {
        char *expr = def ? sql_expr_text(&c->s, st, def) : NULL;
        if (def && !expr)
            return fail(c, st, "cannot read the default of \"%s\"", column);
        json_t *body = alter_body(c, rel, column, "default");
        if (body)
            json_object_set_new(body, "default", expr ? json_string(expr) : json_null());
        free(expr);
        return body ? 0 : oom(c, st);
    }
    if (!strcmp(sub, "AT_AddConstraint"))
        return conv_add_constraint(c, st, rel, json_object_get(def, "Constraint"), ncmds);
    if (!strcmp(sub, "AT_DropConstraint"))
        return conv_drop_constraint(c, st, rel, cmd, column);
    if (!strcmp(sub, "AT_ReplicaIdentity"))
        return conv_replica_identity(c, st, rel, json_object_get(def, "ReplicaIdentityStmt"));
    if (!strcmp(sub, "AT_ValidateConstraint")) {
        if (ncmds > 1)
            return fail(c, st, "put VALIDATE CONSTRAINT in its own ALTER TABLE");
        return emit_sql(c, st, NULL, NULL);     /* a scan that blocks no writes */
    }
    return fail(c, st, "ALTER TABLE ... %s is not supported by the converter", sub + (strncmp(sub, "AT_", 3) ? 0 : 3));
}

static int conv_alter_table(struct conv *c, const struct sql_stmt *st)
{
    if (strcmp(str_or(st->body, "objtype", ""), "OBJECT_TABLE") != 0)
        return fail(c, st, "this ALTER statement is not supported by the converter");
    json_t *rel = json_object_get(st->body, "relation");
    json_t *cmds = json_object_get(st->body, "cmds");
    size_t i;
    json_t *cmd;
    json_array_foreach(cmds, i, cmd) {
        if (conv_alter_cmd(c, st, rel, json_object_get(cmd, "AlterTableCmd"), json_array_size(cmds)) != 0)
            return -1;
    }
    return 0;
}

/* A dotted name (an operator class or a collation), each part as SQL. */
static void add_dotted(struct mig_str *s, json_t *names)
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

/* One IndexElem as create_index key text: the column or the expression (in
 * parentheses, as the author wrote it), then COLLATE, the operator class and
 * the order, all read from the parse tree. *plain: a bare column name. */
static char *index_key_text(struct conv *c, const struct sql_stmt *st, json_t *e, int *plain)
{
    static const char *const elem_keys[] = {"name", "expr", "collation", "opclass", "ordering", "nulls_ordering",
                                            NULL};
    const char *col = json_string_value(json_object_get(e, "name"));
    const char *ord = str_or(e, "ordering", "SORTBY_DEFAULT");
    const char *nulls = str_or(e, "nulls_ordering", "SORTBY_NULLS_DEFAULT");
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
        add_dotted(&s, json_object_get(e, "collation"));
    }
    if (json_object_get(e, "opclass")) {
        mig_str_add(&s, " ");
        add_dotted(&s, json_object_get(e, "opclass"));
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

static int conv_create_index(struct conv *c, const struct sql_stmt *st)
{
    static const char *const known_keys[] = {"idxname", "relation", "accessMethod", "indexParams", "unique",
                                             "concurrent", "whereClause", "if_not_exists", "indexIncludingParams",
                                             "options", NULL};
    static const char *const methods[] = {"btree", "hash", "gin", "gist", "spgist", "brin", NULL};
    const char *name = json_string_value(json_object_get(st->body, "idxname"));
    if (!sql_only_keys(st->body, known_keys))
        return fail(c, st, "an index with TABLESPACE or NULLS NOT DISTINCT cannot be converted to create_index");
    if (!name)
        return fail(c, st, "name the index: create_index needs a name");
    const char *method = str_or(st->body, "accessMethod", "btree");
    const char *const *m = methods;
    while (*m && strcmp(*m, method) != 0)
        m++;
    if (!*m)
        return fail(c, st, "index method \"%s\" is not supported by create_index", method);
    json_t *cols = json_array(), *keys = json_array(), *include = json_array();
    int all_plain = 1;
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(st->body, "indexParams"), i, p) {
        int plain = 0;
        char *key = index_key_text(c, st, json_object_get(p, "IndexElem"), &plain);
        if (!key) {
            json_decref(cols); json_decref(keys); json_decref(include);
            return fail(c, st, "index \"%s\": key %zu cannot be read (operator class options are not carried)",
                        name, i + 1);
        }
        all_plain &= plain;
        json_array_append_new(keys, json_string(key));
        free(key);
        const char *column = json_string_value(sql_get(p, "IndexElem.name"));
        json_array_append_new(cols, json_string(column ? column : ""));
    }
    json_array_foreach(json_object_get(st->body, "indexIncludingParams"), i, p) {
        json_array_append_new(include, json_string(str_or(json_object_get(p, "IndexElem"), "name", "")));
    }
    char *where = NULL, *params = NULL;
    json_t *wc = json_object_get(st->body, "whereClause"), *opts = json_object_get(st->body, "options");
    int bad_where = wc && !(where = sql_expr_text(&c->s, st, wc));
    int bad_opts = opts && !(params = storage_parameters_text(opts));
    if (bad_where || bad_opts || close_last(c) != 0) {
        json_decref(cols); json_decref(keys); json_decref(include);
        free(where);
        free(params);
        return bad_where ? fail(c, st, "cannot read the WHERE clause of index \"%s\"", name)
               : bad_opts ? fail(c, st, "cannot read the storage parameters WITH (...) of index \"%s\"", name)
               : -1;
    }
    json_t *body = json_object();
    set_relation(body, json_object_get(st->body, "relation"), "table");
    json_object_set_new(body, "name", json_string(name));
    json_object_set_new(body, all_plain ? "columns" : "keys", all_plain ? cols : keys);
    json_decref(all_plain ? keys : cols);
    if (json_array_size(include))
        json_object_set(body, "include", include);
    json_decref(include);
    if (is_true(st->body, "unique"))
        json_object_set_new(body, "unique", json_true());
    if (strcmp(method, "btree") != 0)
        json_object_set_new(body, "method", json_string(method));
    if (params)
        json_object_set_new(body, "storage_parameters", json_string(params));
    if (where)
        json_object_set_new(body, "where", json_string(where));
    free(params);
    free(where);
    return add_op(c, "create_index", body) == 0 ? 0 : oom(c, st);
}

/* What an enum value's removal meets: Postgres has no statement for it;
 * editing pg_enum, or replacing the type (drizzle-kit: the column to text,
 * DROP TYPE, CREATE TYPE without the value, the column back), breaks the
 * running release. */
static const char ENUM_VALUE_REMOVAL[] =
    "Postgres cannot remove a value from an enum: editing pg_enum corrupts indexes and rows that hold it, and "
    "replacing the type (the column to text, DROP TYPE, CREATE TYPE, the column back) rewrites every table using "
    "it under an ACCESS EXCLUSIVE lock while the running release still writes the value. Stop writing the value, "
    "move the rows off it with alter_column (\"up\" mapping it to another), and leave it in the type";

static int conv_drop(struct conv *c, const struct sql_stmt *st)
{
    const char *type = str_or(st->body, "removeType", "");
    int table = !strcmp(type, "OBJECT_TABLE"), index = !strcmp(type, "OBJECT_INDEX");
    if (!strcmp(type, "OBJECT_TYPE"))
        return fail(c, st, "DROP TYPE: the converter cannot tell whether the old release still uses it; drop it in "
                    "a later migration, or as {\"sql\": {\"up\": ..., \"on\": \"complete\"}}. If it is part of "
                    "removing a value from an enum: %s", ENUM_VALUE_REMOVAL);
    if (!table && !index)
        return fail(c, st, "DROP %s: the converter cannot tell whether the old release still uses it; drop it "
                    "in a later migration, or as {\"sql\": {\"up\": ..., \"on\": \"complete\"}}",
                    type + (strncmp(type, "OBJECT_", 7) ? 0 : 7));
    if (!strcmp(str_or(st->body, "behavior", "DROP_RESTRICT"), "DROP_CASCADE"))
        return fail(c, st, "CASCADE would drop whatever depends on it without naming it; drop those first");
    if (close_last(c) != 0)
        return -1;
    size_t i;
    json_t *obj;
    json_array_foreach(json_object_get(st->body, "objects"), i, obj) {
        json_t *items = sql_get(obj, "List.items");
        size_t n = json_array_size(items);
        const char *name = n ? sql_node_str(json_array_get(items, n - 1)) : NULL;
        const char *schema = n > 1 ? sql_node_str(json_array_get(items, n - 2)) : NULL;
        if (!name || n > 2)
            return fail(c, st, "cannot read the name of object %zu", i + 1);
        json_t *body = json_object();
        if (schema && strcmp(schema, "public") != 0)
            json_object_set_new(body, "schema", json_string(schema));
        json_object_set_new(body, table ? "table" : "name", json_string(name));
        if (index && json_is_true(json_object_get(st->body, "missing_ok")))
            json_object_set_new(body, "if_exists", json_true());
        if (add_op(c, table ? "drop_table" : "drop_index", body) != 0)
            return oom(c, st);
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
        copy_name(c->alembic_from, from);
    if (to)
        copy_name(c->alembic_to, to);
}

static int conv_dml(struct conv *c, const struct sql_stmt *st)
{
    json_t *rel = json_object_get(st->body, "relation");
    if (!strcmp(str_or(rel, "relname", ""), "pg_enum") && strcmp(st->kind, "InsertStmt") != 0)
        return fail(c, st, "%s", ENUM_VALUE_REMOVAL);
    if (!strcmp(str_or(rel, "relname", ""), "alembic_version")) {
        note_alembic(c, st);
        return emit_sql(c, st, "complete", NULL);   /* the version moves with the cutover */
    }
    int whole = !strcmp(st->kind, "InsertStmt") ? 0 : !json_object_get(st->body, "whereClause");
    if (whole)
        return fail(c, st, "%s of every row of \"%s\" runs as one long transaction that locks each row and races "
                    "with the running application; express it as the \"up\" of add_column / alter_column so the "
                    "backfill writes it in batches", !strcmp(st->kind, "UpdateStmt") ? "UPDATE" : "DELETE",
                    str_or(rel, "relname", "?"));
    return emit_sql(c, st, NULL, NULL);
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
        return fail(c, st, "cannot read the name of the enum type");
    if (close_last(c) != 0)
        return -1;
    json_t *body = json_object();
    if (schema && strcmp(schema, "public") != 0)
        json_object_set_new(body, "schema", json_string(schema));
    json_object_set_new(body, "type", json_string(type));
    const char *old_val = json_string_value(json_object_get(st->body, "oldVal"));
    const char *value = str_or(st->body, "newVal", "");
    if (old_val) {
        json_object_set_new(body, "from", json_string(old_val));
        json_object_set_new(body, "to", json_string(value));
        return add_op(c, "rename_enum_value", body) == 0 ? 0 : oom(c, st);
    }
    json_object_set_new(body, "value", json_string(value));
    const char *next = json_string_value(json_object_get(st->body, "newValNeighbor"));
    if (next)
        json_object_set_new(body, is_true(st->body, "newValIsAfter") ? "after" : "before", json_string(next));
    if (is_true(st->body, "skipIfNewValExists"))
        json_object_set_new(body, "if_not_exists", json_true());
    return add_op(c, "add_enum_value", body) == 0 ? 0 : oom(c, st);
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
            if (!strcmp(str_or(json_object_get(o, "DefElem"), "defname", ""), "full"))
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
    if (!strcmp(k, "DoStmt"))
        return "a DO block runs code the converter cannot see into; write its statements out, or put them "
               "in a {\"sql\": ...} operation yourself";
    if (!strcmp(k, "VariableSetStmt"))
        return "SET changes the session of the migration's phases; pgtandem sets its own timeouts";
    if (!strcmp(k, "RefreshMatViewStmt") && !is_true(st->body, "concurrent"))
        return "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks every read of the view";
    if (!strcmp(k, "TransactionStmt"))
        return "only BEGIN and COMMIT are understood: pgtandem runs each phase in its own transactions";
    return NULL;
}

static int conv_statement(struct conv *c, const struct sql_stmt *st)
{
    const char *k = st->kind;
    if (!strcmp(k, "TransactionStmt")) {
        const char *kind = str_or(st->body, "kind", "");
        if (!strcmp(kind, "TRANS_STMT_BEGIN") || !strcmp(kind, "TRANS_STMT_START") ||
            !strcmp(kind, "TRANS_STMT_COMMIT"))
            return 0;   /* pgtandem brings its own transactions */
    }
    if (!strcmp(k, "AlterTableStmt"))
        return conv_alter_table(c, st);
    if (!strcmp(k, "RenameStmt"))
        return conv_rename(c, st);
    if (!strcmp(k, "CreateStmt"))
        return conv_create_table(c, st);
    if (!strcmp(k, "IndexStmt"))
        return conv_create_index(c, st);
    if (!strcmp(k, "DropStmt"))
        return conv_drop(c, st);
    if (!strcmp(k, "AlterEnumStmt"))
        return conv_alter_enum(c, st);
    if (!strcmp(k, "UpdateStmt") || !strcmp(k, "InsertStmt") || !strcmp(k, "DeleteStmt"))
        return conv_dml(c, st);
    if (safe_as_is(k) || (!strcmp(k, "VacuumStmt") && !is_true(st->body, "is_vacuumcmd")))
        return emit_sql(c, st, NULL, NULL);
    const char *why = blocking_reason(st);
    if (why)
        return fail(c, st, "cannot run online: %s", why);
    return fail(c, st, "%s is not supported by the converter; write it as a {\"sql\": ...} operation if it is "
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
    if (sql_script_parse(&c.s, file, text, len, err, errlen) != 0) {
        sql_script_free(&c.s);
        return -1;
    }
    c.ops = json_array();
    int rc = c.ops ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < c.s.nstmts; i++)
        rc = conv_statement(&c, &c.s.stmts[i]);
    if (rc == 0)
        rc = close_last(&c);
    if (rc == 0 && json_array_size(c.ops) == 0) {
        snprintf(err, errlen, "%s:1:1: no statement to convert (only comments, BEGIN and COMMIT)", file);
        rc = -1;
    }
    if (rc == 0 && !(*out = build_migration(&c, file)))
        rc = -1;
    json_decref(c.ops);
    for (size_t i = 0; i < c.nknown; i++) {
        free(c.known[i].schema); free(c.known[i].table); free(c.known[i].column); free(c.known[i].type);
    }
    free(c.known);
    sql_script_free(&c.s);
    return rc;
}

/* SQL fragments from untrusted files checked with Postgres's own parser.
 * A fragment is embedded as code in generated DDL and trigger bodies, so
 * "it parses somewhere" is not enough: it has to be exactly one expression
 * (or type), judged on the parse tree, never on the characters. */
#include "migration_sql.h"
#include "sql_fragment.h"
#include "sql_script.h"

#include <jansson.h>
#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The parse tree of prefix + text + suffix; NULL on a syntax error, *oom set
 * when memory ran out. */
static json_t *parse_wrapped(const char *prefix, const char *text, const char *suffix, int *oom)
{
    size_t n = strlen(prefix) + strlen(text) + strlen(suffix) + 1;
    char *sql = malloc(n);
    if (!sql) {
        *oom = 1;
        return NULL;
    }
    snprintf(sql, n, "%s%s%s", prefix, text, suffix);
    PgQueryParseResult r = pg_query_parse(sql);
    free(sql);
    json_t *root = r.error || !r.parse_tree ? NULL : json_loads(r.parse_tree, 0, NULL);
    if (!r.error && r.parse_tree && !root)
        *oom = 1;
    pg_query_free_parse_result(r);
    return root;
}

/* The one target expression of a tree that is exactly one plain SELECT with
 * one unnamed target: no FROM, WHERE, set operation, ORDER BY, LIMIT, alias
 * or second statement. Borrowed from root. */
static json_t *sole_target(json_t *root)
{
    static const char *const select_keys[] = {"targetList", "limitOption", "op", NULL};
    static const char *const target_keys[] = {"val", "location", NULL};
    json_t *stmts = json_object_get(root, "stmts");
    json_t *sel = json_array_size(stmts) == 1 ? sql_get(json_array_get(stmts, 0), "stmt.SelectStmt") : NULL;
    if (!sql_only_keys(sel, select_keys))
        return NULL;
    const char *op = json_string_value(json_object_get(sel, "op"));
    const char *limit = json_string_value(json_object_get(sel, "limitOption"));
    if ((op && strcmp(op, "SETOP_NONE") != 0) || (limit && strcmp(limit, "LIMIT_OPTION_DEFAULT") != 0))
        return NULL;
    json_t *targets = json_object_get(sel, "targetList");
    json_t *res = json_array_size(targets) == 1 ? json_object_get(json_array_get(targets, 0), "ResTarget") : NULL;
    return sql_only_keys(res, target_keys) ? json_object_get(res, "val") : NULL;
}

/* Trees equal but for "location" fields, which differ by the wrapping. */
static int same_tree(json_t *a, json_t *b)
{
    if (json_is_object(a) && json_is_object(b)) {
        const char *k;
        json_t *v;
        size_t na = 0, nb = 0;
        json_object_foreach(a, k, v) {
            if (strcmp(k, "location") == 0)
                continue;
            na++;
            if (!same_tree(v, json_object_get(b, k)))
                return 0;
        }
        json_object_foreach(b, k, v)
            nb += strcmp(k, "location") != 0;
        return na == nb;
    }
    if (json_is_array(a) && json_is_array(b)) {
        if (json_array_size(a) != json_array_size(b))
            return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!same_tree(json_array_get(a, i), json_array_get(b, i)))
                return 0;
        return 1;
    }
    return a && b && json_equal(a, b);
}

enum sql_fragment_result sql_fragment_expr(const char *text)
{
    if (!text || !*text)
        return SQL_FRAGMENT_BAD;
    int oom = 0;
    /* No newline after the text: a trailing "--" comment swallows the ')'
     * and is refused, as it would swallow whatever the DDL puts after it. */
    json_t *wrapped = parse_wrapped("SELECT (", text, ")", &oom);
    json_t *bare = wrapped ? parse_wrapped("SELECT ", text, "", &oom) : NULL;
    json_t *w = sole_target(wrapped), *b = sole_target(bare);
    /* "1) OR (2" parses wrapped but not bare; "1 x" bare (an alias) but not
     * wrapped: only a fragment whose parentheses balance on their own gives
     * the same expression both ways. */
    int ok = w && b && same_tree(w, b);
    json_decref(wrapped);
    json_decref(bare);
    return oom ? SQL_FRAGMENT_OOM : ok ? SQL_FRAGMENT_OK : SQL_FRAGMENT_BAD;
}

enum sql_fragment_result sql_fragment_string_literal(const char *text)
{
    if (!text || !*text || sql_fragment_expr(text) != SQL_FRAGMENT_OK)
        return SQL_FRAGMENT_BAD;
    int oom = 0;
    json_t *root = parse_wrapped("SELECT ", text, "", &oom);
    int is = json_is_string(sql_get(sole_target(root), "A_Const.sval.sval"));
    json_decref(root);
    return oom ? SQL_FRAGMENT_OOM : is ? SQL_FRAGMENT_OK : SQL_FRAGMENT_BAD;
}

/* Type modifiers must be constants (Postgres says so too, later). */
static int constant_typmods(json_t *type_name)
{
    json_t *mods = json_object_get(type_name, "typmods");
    for (size_t i = 0; i < json_array_size(mods); i++) {
        static const char *const const_keys[] = {"A_Const", NULL};
        if (!sql_only_keys(json_array_get(mods, i), const_keys))
            return 0;
    }
    return 1;
}

enum sql_fragment_result sql_fragment_type(const char *text)
{
    static const char *const cast_keys[] = {"arg", "typeName", "location", NULL};
    static const char *const null_keys[] = {"isnull", "location", NULL};
    static const char *const type_keys[] = {"names", "typmods", "typemod", "arrayBounds", "location", NULL};
    if (!text || !*text)
        return SQL_FRAGMENT_BAD;
    int oom = 0;
    json_t *root = parse_wrapped("SELECT CAST(NULL AS ", text, ")", &oom);
    json_t *cast = json_object_get(sole_target(root), "TypeCast");
    json_t *arg = sql_get(cast, "arg.A_Const");
    json_t *type_name = json_object_get(cast, "typeName");
    int ok = sql_only_keys(cast, cast_keys) && sql_only_keys(arg, null_keys) &&
             json_is_true(json_object_get(arg, "isnull")) && sql_only_keys(type_name, type_keys) &&
             constant_typmods(type_name);
    json_decref(root);
    return oom ? SQL_FRAGMENT_OOM : ok ? SQL_FRAGMENT_OK : SQL_FRAGMENT_BAD;
}

int sql_fragment_volatile(const char *text)
{
    int oom = 0;
    json_t *root = parse_wrapped("SELECT (", text, ")", &oom);
    if (!root)
        return oom ? SQL_FRAGMENT_OOM : SQL_FRAGMENT_BAD;
    int v = sql_calls_volatile(root);
    json_decref(root);
    return v;
}

/* Collects the last name of every ColumnRef under j into *names (each once). */
static int collect_columns(json_t *j, char ***names, size_t *n, int *star)
{
    if (json_is_array(j)) {
        size_t i;
        json_t *x;
        json_array_foreach(j, i, x) {
            if (collect_columns(x, names, n, star) != 0)
                return -1;
        }
        return 0;
    }
    if (!json_is_object(j))
        return 0;
    json_t *fields = sql_get(j, "ColumnRef.fields");
    if (fields) {
        json_t *last = json_array_get(fields, json_array_size(fields) - 1);
        const char *name = sql_node_str(last);
        if (!name) {
            *star = 1; /* t.* or * */
            return 0;
        }
        for (size_t i = 0; i < *n; i++)
            if (strcmp((*names)[i], name) == 0)
                return 0;
        char **grown = realloc(*names, (*n + 1) * sizeof *grown);
        if (!grown)
            return -1;
        *names = grown;
        if (!(grown[*n] = strdup(name)))
            return -1;
        (*n)++;
        return 0;
    }
    const char *k;
    json_t *x;
    json_object_foreach(j, k, x) {
        if (collect_columns(x, names, n, star) != 0)
            return -1;
    }
    return 0;
}

enum sql_fragment_result sql_tree_columns(json_t *tree, char ***names, size_t *n, int *star)
{
    *names = NULL;
    *n = 0;
    *star = 0;
    if (collect_columns(tree, names, n, star) != 0) {
        sql_fragment_free_names(*names, *n);
        *names = NULL;
        *n = 0;
        return SQL_FRAGMENT_OOM;
    }
    return SQL_FRAGMENT_OK;
}

enum sql_fragment_result sql_fragment_columns(const char *text, char ***names, size_t *n, int *star)
{
    *names = NULL;
    *n = 0;
    *star = 0;
    int oom = 0;
    json_t *root = parse_wrapped("SELECT (", text, ")", &oom);
    if (!root)
        return oom ? SQL_FRAGMENT_OOM : SQL_FRAGMENT_BAD;
    enum sql_fragment_result rc = sql_tree_columns(sole_target(root), names, n, star);
    json_decref(root);
    return rc;
}

void sql_fragment_free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The last String of a list of nodes (a name's parts, a column
 * reference's fields), or NULL. */
static const char *last_string(json_t *list)
{
    const char *last = NULL;
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *str = json_object_get(json_array_get(list, i), "String");
        const char *v = json_string_value(json_object_get(str, "sval"));
        if (!v)
            v = json_string_value(json_object_get(str, "str"));
        if (v)
            last = v;
    }
    return last;
}

/* FigureColnameInternal (Postgres's parser) for what an
 * index key can be: the name an expression gives its column (2: sure, 1: a
 * guess such as a cast's type), 0 when none. */
static int figure_colname(json_t *node, const char **name)
{
    json_t *x;
    if ((x = json_object_get(node, "ColumnRef")) || (x = json_object_get(node, "FuncCall"))) {
        const char *v = last_string(json_object_get(x, json_object_get(node, "ColumnRef") ? "fields" : "funcname"));
        if (v)
            *name = v;
        return v ? 2 : 0;
    }
    if ((x = json_object_get(node, "A_Indirection"))) {
        const char *v = last_string(json_object_get(x, "indirection"));
        if (v)
            *name = v;
        return v ? 2 : figure_colname(json_object_get(x, "arg"), name);
    }
    if ((x = json_object_get(node, "CollateClause")))
        return figure_colname(json_object_get(x, "arg"), name);
    if ((x = json_object_get(node, "TypeCast"))) {
        int strength = figure_colname(json_object_get(x, "arg"), name);
        const char *type = last_string(sql_get(x, "typeName.names"));
        if (strength <= 1 && type) {
            *name = type;
            return 1;
        }
        return strength;
    }
    if ((x = json_object_get(node, "CaseExpr"))) {
        int strength = figure_colname(json_object_get(x, "defresult"), name);
        if (strength <= 1) {
            *name = "case";
            return 1;
        }
        return strength;
    }
    static const struct { const char *node, *name; } fixed[] = {
        {"A_ArrayExpr", "array"}, {"RowExpr", "row"}, {"CoalesceExpr", "coalesce"}, {"GroupingFunc", "grouping"}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (json_object_get(node, fixed[i].node)) {
            *name = fixed[i].name;
            return 2;
        }
    if ((x = json_object_get(node, "MinMaxExpr"))) {
        const char *op = json_string_value(json_object_get(x, "op"));
        *name = op && strcmp(op, "IS_LEAST") == 0 ? "least" : "greatest";
        return 2;
    }
    const char *kind = json_string_value(sql_get(node, "A_Expr.kind"));
    if (kind && strcmp(kind, "AEXPR_NULLIF") == 0) {
        *name = "nullif";
        return 2;
    }
    return 0;
}

enum sql_fragment_result sql_fragment_index_key_column(const char *key, char **column)
{
    *column = NULL;
    int oom = 0;
    json_t *root = parse_wrapped("CREATE INDEX i ON t (", key, ")", &oom);
    if (!root)
        return oom ? SQL_FRAGMENT_OOM : SQL_FRAGMENT_BAD;
    json_t *stmts = json_object_get(root, "stmts");
    json_t *params = json_array_size(stmts) == 1 ?
                     sql_get(json_array_get(stmts, 0), "stmt.IndexStmt.indexParams") : NULL;
    enum sql_fragment_result rc = json_array_size(params) == 1 ? SQL_FRAGMENT_OK : SQL_FRAGMENT_BAD;
    json_t *elem = json_object_get(json_array_get(params, 0), "IndexElem");
    const char *name = json_string_value(json_object_get(elem, "name"));
    if (!name)
        figure_colname(json_object_get(elem, "expr"), &name);
    if (rc == SQL_FRAGMENT_OK && name && !(*column = strdup(name)))
        rc = SQL_FRAGMENT_OOM;
    json_decref(root);
    return rc;
}

/* ---- column references renamed ------------------------------------------ */

struct ref_at {
    size_t at;          /* byte offset in the text */
    const char *to;
    size_t nfields;     /* its names (2 when qualified), all replaced */
};

/* Each one-field ColumnRef of tree whose name is one of from[]: its offset
 * (location less the wrapping's prefix) and the new name, into refs; the
 * tree's String gets the new name too (the tree the new text must parse
 * to). -1 for a reference the splice cannot take (a qualified one naming
 * a renamed column, a location outside the text), or out of memory. */
static int collect_refs(json_t *tree, size_t prefix, size_t len, const char *const *from, const char *const *to,
                        size_t n, struct ref_at **refs, size_t *nrefs, const char *qualifier)
{
    if (json_is_array(tree)) {
        for (size_t i = 0; i < json_array_size(tree); i++)
            if (collect_refs(json_array_get(tree, i), prefix, len, from, to, n, refs, nrefs, qualifier) != 0)
                return -1;
        return 0;
    }
    if (!json_is_object(tree))
        return 0;
    json_t *ref = json_object_get(tree, "ColumnRef");
    if (ref) {
        json_t *fields = json_object_get(ref, "fields");
        json_t *str = json_object_get(json_array_get(fields, json_array_size(fields) - 1), "String");
        const char *name = json_string_value(json_object_get(str, "sval"));
        for (size_t k = 0; name && k < n; k++) {
            if (strcmp(name, from[k]) != 0)
                continue;
            json_int_t loc = json_integer_value(json_object_get(ref, "location"));
            size_t nfields = json_array_size(fields);
            const char *first = json_string_value(sql_get(json_array_get(fields, 0), "String.sval"));
            if (qualifier && nfields > 1 && (nfields != 2 || !first || strcmp(first, qualifier) != 0))
                break;      /* another table's column */
            if ((nfields != 1 && !qualifier) || loc < (json_int_t)prefix || (size_t)loc - prefix >= len)
                return -1;
            struct ref_at *grown = realloc(*refs, (*nrefs + 1) * sizeof *grown);
            if (!grown)
                return -1;
            *refs = grown;
            grown[(*nrefs)++] = (struct ref_at){(size_t)loc - prefix, to[k], nfields};
            json_object_set_new(str, "sval", json_string(to[k]));
            /* the whole reference becomes the one name (a qualified one's
             * qualifier goes with it) */
            while (json_array_size(fields) > 1)
                json_array_remove(fields, 0);
            break;
        }
        return 0;
    }
    const char *key;
    json_t *v;
    json_object_foreach(tree, key, v) {
        if (collect_refs(v, prefix, len, from, to, n, refs, nrefs, qualifier) != 0)
            return -1;
    }
    return 0;
}

/* The end of the identifier at text + at: a quoted one ("" inside) or a
 * plain one. The parse of the result checks what this took. */
static size_t identifier_end(const char *text, size_t at)
{
    size_t i = at;
    if (text[i] == '"') {
        for (i++; text[i]; i++) {
            if (text[i] == '"' && text[i + 1] == '"')
                i++;
            else if (text[i] == '"')
                return i + 1;
        }
        return i;
    }
    while (text[i] && (text[i] == '_' || text[i] == '$' || (text[i] >= '0' && text[i] <= '9') ||
                       ((text[i] | 0x20) >= 'a' && (text[i] | 0x20) <= 'z') || (unsigned char)text[i] >= 0x80))
        i++;
    return i;
}

static int by_offset(const void *a, const void *b)
{
    const struct ref_at *x = a, *y = b;
    return x->at < y->at ? -1 : x->at > y->at;
}

/* The references refs (sorted) of text spliced: each as the identifier
 * to (exprs NULL) or as "(exprs[k])" for the k its name is from[k]. */
static char *splice(const char *text, const struct ref_at *refs, size_t nrefs, const char *const *to,
                    const char *const *exprs, size_t n)
{
    struct mig_str s = {0};
    size_t done = 0;
    for (size_t i = 0; i < nrefs; i++) {
        if (refs[i].at < done) {
            free(mig_str_take(&s));
            return NULL;
        }
        mig_str_addf(&s, "%.*s", (int)(refs[i].at - done), text + done);
        size_t k = 0;
        while (exprs && k < n && strcmp(to[k], refs[i].to) != 0)
            k++;
        if (exprs && k < n)
            mig_str_addf(&s, "(%s)", exprs[k]);
        else
            mig_str_ident(&s, refs[i].to);
        done = identifier_end(text, refs[i].at);
        for (size_t f = 1; f < refs[i].nfields; f++) {    /* ". name" after a qualifier */
            size_t dot = done;
            while (text[dot] == ' ' || text[dot] == '\t' || text[dot] == '\n')
                dot++;
            if (text[dot] != '.')
                break;
            dot++;
            while (text[dot] == ' ' || text[dot] == '\t' || text[dot] == '\n')
                dot++;
            done = identifier_end(text, dot);
        }
    }
    mig_str_add(&s, text + done);
    return mig_str_take(&s);
}

/* The places of text's references to from[] (qualified by qualifier too,
 * when given), sorted into *refs, and text with each written as the
 * identifier to[k] into *renamed, which the parser must read as the
 * author's tree with the new names: the check that the places are the
 * references, whole. -1 when they cannot be taken (or out of memory). */
static int checked_places(const char *text, const char *const *from, const char *const *to, size_t n,
                          const char *qualifier, struct ref_at **refs, size_t *nrefs, char **renamed)
{
    static const char prefix[] = "SELECT (";
    *refs = NULL;
    *nrefs = 0;
    *renamed = NULL;
    if (!text || sql_fragment_expr(text) != SQL_FRAGMENT_OK)
        return -1;
    int oom = 0;
    json_t *root = parse_wrapped(prefix, text, ")", &oom);
    json_t *want = sole_target(root);
    int rc = -1;
    if (want && collect_refs(want, sizeof prefix - 1, strlen(text), from, to, n, refs, nrefs, qualifier) == 0) {
        if (*nrefs)
            qsort(*refs, *nrefs, sizeof **refs, by_offset);
        *renamed = splice(text, *refs, *nrefs, to, NULL, n);
        json_t *again = *renamed && *nrefs ? parse_wrapped(prefix, *renamed, ")", &oom) : NULL;
        if (*renamed && (!*nrefs || (again && same_tree(sole_target(again), want))))
            rc = 0;
        json_decref(again);
    }
    json_decref(root);
    if (rc != 0) {
        free(*refs);
        free(*renamed);
        *refs = NULL;
        *renamed = NULL;
    }
    return rc;
}

char *sql_fragment_substitute_columns(const char *text, const char *table, const char *const *from,
                                      const char *const *exprs, size_t n)
{
    /* the places are those a rename to names no expression has would
     * take, checked as a rename's are; each is then spliced as its
     * expression */
    char **marks = calloc(n ? n : 1, sizeof *marks);
    for (size_t k = 0; marks && k < n; k++) {
        char m[48];
        snprintf(m, sizeof m, "pgtandem substituted %zu", k);
        if (!(marks[k] = strdup(m)))
            n = k;
    }
    struct ref_at *refs = NULL;
    size_t nrefs = 0;
    char *renamed = NULL, *out = NULL;
    if (marks && checked_places(text, from, (const char *const *)marks, n, table, &refs, &nrefs, &renamed) == 0) {
        out = nrefs ? splice(text, refs, nrefs, (const char *const *)marks, exprs, n) : strdup(text);
        if (out && nrefs && sql_fragment_expr(out) != SQL_FRAGMENT_OK) {
            free(out);
            out = NULL;
        }
    }
    free(refs);
    free(renamed);
    for (size_t k = 0; marks && k < n; k++)
        free(marks[k]);
    free(marks);
    return out;
}

char *sql_fragment_rename_columns(const char *text, const char *const *from, const char *const *to, size_t n)
{
    struct ref_at *refs = NULL;
    size_t nrefs = 0;
    char *renamed = NULL;
    checked_places(text, from, to, n, NULL, &refs, &nrefs, &renamed);
    free(refs);
    return renamed;
}

/* SQL scripts read with libpg_query: statements with their parse trees and
 * locations, and the exact source text of expressions and types inside them.
 * libpg_query gives node locations but no lengths and has no deparser outside
 * protobuf, so the text of a node is found by asking the same parser: the
 * shortest span starting at the node that parses back into the same tree
 * (locations aside) is, by construction, an exact rendering of it. */
#include "sql_script.h"
#include "migration_sql.h"

#include <ctype.h>
#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_PROBES 4000     /* re-parses allowed per node before giving up */
#define MAX_PARENS 4        /* '(' before a node tried as part of it */

const char *sql_node_str(json_t *node)
{
    return json_string_value(json_object_get(json_object_get(node, "String"), "sval"));
}

json_t *sql_node_fields(json_t *node, const char *kind)
{
    return json_object_get(node, kind);
}

json_t *sql_get(json_t *obj, const char *path)
{
    char key[64];
    while (obj && *path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof key)
            return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        obj = json_object_get(obj, key);
        path += n + (path[n] == '.');
    }
    return obj;
}

/* Offsets within the text: whitespace and comments are all that may stand
 * between statements and tokens, so skipping them needs no SQL lexer. */
static size_t skip_blank(const char *t, size_t i, size_t end)
{
    while (i < end) {
        if (isspace((unsigned char)t[i])) {
            i++;
        } else if (t[i] == '-' && i + 1 < end && t[i + 1] == '-') {
            while (i < end && t[i] != '\n')
                i++;
        } else if (t[i] == '/' && i + 1 < end && t[i + 1] == '*') {
            int depth = 1;  /* Postgres block comments nest */
            i += 2;
            while (i < end && depth > 0) {
                if (t[i] == '/' && i + 1 < end && t[i + 1] == '*') {
                    depth++;
                    i += 2;
                } else if (t[i] == '*' && i + 1 < end && t[i + 1] == '/') {
                    depth--;
                    i += 2;
                } else {
                    i++;
                }
            }
        } else {
            break;
        }
    }
    return i;
}

void sql_script_where(const struct sql_script *s, size_t offset, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < offset && i < s->len; i++) {
        unsigned char ch = (unsigned char)s->text[i];
        if (ch == '\n') {
            (*line)++;
            *col = 1;
        } else if ((ch & 0xC0) != 0x80) {
            (*col)++;
        }
    }
}

/* Postgres reports error positions in characters, 1-based. */
static size_t char_pos_to_offset(const char *t, size_t len, int cursorpos)
{
    size_t i = 0;
    for (int chars = 1; i < len && chars < cursorpos; chars++) {
        i++;
        while (i < len && ((unsigned char)t[i] & 0xC0) == 0x80)
            i++;
    }
    return i;
}

static int fail_at(const struct sql_script *s, size_t offset, char *err, size_t errlen, const char *msg)
{
    int line, col;
    sql_script_where(s, offset, &line, &col);
    snprintf(err, errlen, "%s:%d:%d: %s", s->file, line, col, msg);
    return -1;
}

static int fill_statements(struct sql_script *s, char *err, size_t errlen)
{
    json_t *list = json_object_get(s->root, "stmts");
    size_t n = json_array_size(list);
    s->stmts = calloc(n ? n : 1, sizeof *s->stmts);
    if (!s->stmts)
        return fail_at(s, 0, err, errlen, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *raw = json_array_get(list, i);
        json_t *node = json_object_get(raw, "stmt");
        void *it = json_object_iter(node);
        if (!it)
            continue;   /* an empty statement (";;") */
        struct sql_stmt *st = &s->stmts[s->nstmts++];
        st->kind = json_object_iter_key(it);
        st->body = json_object_iter_value(it);
        json_int_t loc = json_integer_value(json_object_get(raw, "stmt_location"));
        json_int_t len = json_integer_value(json_object_get(raw, "stmt_len"));
        st->gap = loc >= 0 && (size_t)loc <= s->len ? (size_t)loc : 0;
        st->end = len > 0 && st->gap + (size_t)len <= s->len ? st->gap + (size_t)len : s->len;
        st->start = skip_blank(s->text, st->gap, st->end);
        while (st->end > st->start && isspace((unsigned char)s->text[st->end - 1]))
            st->end--;
        sql_script_where(s, st->start, &st->line, &st->col);
    }
    return 0;
}

int sql_script_parse(struct sql_script *s, const char *file, const char *text, size_t len,
                     char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->file = strdup(file ? file : "<input>");
    s->text = malloc(len + 1);
    if (!s->file || !s->text) {
        snprintf(err, errlen, "%s: out of memory", file ? file : "<input>");
        return -1;
    }
    memcpy(s->text, text, len);
    s->text[len] = '\0';
    s->len = len;
    const char *nul = memchr(text, '\0', len);
    if (nul)
        return fail_at(s, (size_t)(nul - text), err, errlen, "the file contains a NUL byte");
    PgQueryParseResult r = pg_query_parse(s->text);
    int rc = 0;
    if (r.error) {
        size_t at = char_pos_to_offset(s->text, len, r.error->cursorpos);
        rc = fail_at(s, at, err, errlen, r.error->message ? r.error->message : "syntax error");
    } else {
        json_error_t jerr;
        s->root = json_loads(r.parse_tree, 0, &jerr);
        rc = s->root ? fill_statements(s, err, errlen)
                     : fail_at(s, 0, err, errlen, "cannot read the parser's output");
    }
    pg_query_free_parse_result(r);
    return rc;
}

int sql_script_psql_line(const char *text, size_t len)
{
    char *copy = strndup(text, len);
    if (!copy)
        return 0;
    PgQueryParseResult r = pg_query_parse(copy);
    int line = 0;
    if (r.error) {
        size_t at = char_pos_to_offset(copy, len, r.error->cursorpos), start = at;
        while (start > 0 && (copy[start - 1] == ' ' || copy[start - 1] == '\t'))
            start--;
        if (at < len && copy[at] == '\\' && (start == 0 || copy[start - 1] == '\n')) {
            line = 1;
            for (size_t i = 0; i < at; i++)
                line += copy[i] == '\n';
        }
    }
    pg_query_free_parse_result(r);
    free(copy);
    return line;
}

void sql_script_free(struct sql_script *s)
{
    if (!s)
        return;
    free(s->file);
    free(s->text);
    json_decref(s->root);
    free(s->stmts);
    memset(s, 0, sizeof *s);
}

char *sql_stmt_text(const struct sql_script *s, const struct sql_stmt *st)
{
    size_t n = st->end - st->start;
    const char *p = s->text + st->start;
    const char *last_line = p;
    for (size_t i = 0; i < n; i++)
        if (p[i] == '\n')
            last_line = p + i + 1;
    /* a "--" on the last line may be a comment that would swallow what follows */
    int newline = memmem(last_line, (size_t)(p + n - last_line), "--", 2) != NULL;
    char *out = malloc(n + 2);
    if (!out)
        return NULL;
    memcpy(out, p, n);
    if (newline)
        out[n++] = '\n';
    out[n] = '\0';
    return out;
}

/* ---- node text by re-parsing ---- */

static void strip_locations(json_t *j)
{
    if (json_is_object(j)) {
        json_object_del(j, "location");
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) {
            strip_locations(v);
        }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            strip_locations(v);
        }
    }
}

static void location_range(json_t *j, long *lo, long *hi)
{
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) {
            if (strcmp(k, "location") == 0 && json_is_integer(v)) {
                long l = (long)json_integer_value(v);
                if (l >= 0 && (*lo < 0 || l < *lo))
                    *lo = l;
                if (l > *hi)
                    *hi = l;
            } else {
                location_range(v, lo, hi);
            }
        }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            location_range(v, lo, hi);
        }
    }
}

/* true when obj has no keys other than the allowed ones */
int sql_only_keys(json_t *obj, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        const char *const *a = allowed;
        while (*a && strcmp(*a, k) != 0)
            a++;
        if (!*a)
            return 0;
    }
    return json_is_object(obj);
}

/* The node of sql when it parses to exactly one statement of that kind
 * ("SelectStmt", "IndexStmt", "RenameStmt" ...), borrowed from *root,
 * which the caller frees (set even when the node is NULL). */
static json_t *sole_statement(const char *sql, const char *kind, json_t **root)
{
    PgQueryParseResult r = pg_query_parse(sql);
    *root = r.error ? NULL : json_loads(r.parse_tree, 0, NULL);
    pg_query_free_parse_result(r);
    json_t *stmts = json_object_get(*root, "stmts");
    json_t *stmt = json_object_get(json_array_get(stmts, 0), "stmt");
    return json_array_size(stmts) == 1 ? json_object_get(stmt, kind) : NULL;
}

/* Parses "SELECT <prefix><text>" and returns the single target's
 * expression (or, for types, the TypeName of "NULL::<text>"), stripped of
 * locations; NULL when the text is anything else. */
static json_t *probe(const char *text, size_t n, int want_type)
{
    static const char *const select_keys[] = {"targetList", "limitOption", "op", NULL};
    static const char *const target_keys[] = {"val", "location", NULL};
    static const char *const cast_keys[] = {"arg", "typeName", "location", NULL};
    const char *prefix = want_type ? "SELECT NULL::" : "SELECT ";
    size_t plen = strlen(prefix);
    char *q = malloc(plen + n + 2);
    if (!q)
        return NULL;
    memcpy(q, prefix, plen);
    memcpy(q + plen, text, n);
    q[plen + n] = '\n';     /* ends a trailing line comment inside the span */
    q[plen + n + 1] = '\0';
    json_t *root;
    json_t *sel = sole_statement(q, "SelectStmt", &root);
    free(q);
    json_t *targets = sql_only_keys(sel, select_keys) ? json_object_get(sel, "targetList") : NULL;
    json_t *res = json_array_size(targets) == 1 ? json_object_get(json_array_get(targets, 0), "ResTarget") : NULL;
    json_t *val = sql_only_keys(res, target_keys) ? json_object_get(res, "val") : NULL;
    if (want_type) {
        json_t *cast = json_object_get(val, "TypeCast");
        int null_arg = json_is_true(sql_get(cast, "arg.A_Const.isnull"));
        val = sql_only_keys(cast, cast_keys) && null_arg ? json_object_get(cast, "typeName") : NULL;
    }
    json_t *out = val ? json_deep_copy(val) : NULL;
    json_decref(root);
    strip_locations(out);
    return out;
}

static int ident_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

/* Start positions to try: the node's first location, then that position
 * extended over each '(' before it (a parenthesised expression loses its
 * parentheses in the tree but not in the text). */
static size_t candidate_starts(const struct sql_script *s, const struct sql_stmt *st, size_t first,
                               size_t *starts)
{
    size_t n = 0;
    starts[n++] = first;
    size_t i = first;
    while (n <= MAX_PARENS) {
        while (i > st->start && isspace((unsigned char)s->text[i - 1]))
            i--;
        if (i <= st->start || s->text[i - 1] != '(')
            break;
        starts[n++] = --i;
    }
    return n;
}

static char *node_text(const struct sql_script *s, const struct sql_stmt *st, json_t *node, int want_type)
{
    long lo = -1, hi = -1;
    location_range(node, &lo, &hi);
    if (lo < 0 || (size_t)lo < st->start || (size_t)hi >= st->end)
        return NULL;
    json_t *want = json_deep_copy(node);
    if (!want)
        return NULL;
    strip_locations(want);
    size_t starts[MAX_PARENS + 1];
    size_t nstarts = want_type ? 1 : candidate_starts(s, st, (size_t)lo, starts);
    if (want_type)
        starts[0] = (size_t)lo;
    char *out = NULL;
    int probes = 0;
    for (size_t e = (size_t)hi + 1; !out && e <= st->end && probes < MAX_PROBES; e++) {
        if (e < st->end && ident_char((unsigned char)s->text[e - 1]) && ident_char((unsigned char)s->text[e]))
            continue;   /* never end inside a word */
        for (size_t k = 0; k < nstarts && !out && probes < MAX_PROBES; k++, probes++) {
            json_t *got = probe(s->text + starts[k], e - starts[k], want_type);
            if (got && json_equal(got, want))
                out = strndup(s->text + starts[k], e - starts[k]);
            json_decref(got);
        }
    }
    json_decref(want);
    return out;
}

char *sql_expr_text(const struct sql_script *s, const struct sql_stmt *st, json_t *expr)
{
    return node_text(s, st, expr, 0);
}

/* The end of the identifier token at text[at], quoted or not. */
static size_t ident_token_end(const char *text, size_t len, size_t at)
{
    if (at < len && text[at] == '"') {
        for (size_t i = at + 1; i < len; i++) {
            if (text[i] != '"')
                continue;
            if (i + 1 < len && text[i + 1] == '"')
                i++;
            else
                return i + 1;
        }
        return len;
    }
    size_t i = at;
    while (i < len && ident_char((unsigned char)text[i]))
        i++;
    return i;
}

#define MAX_REQUALIFY 64

struct requalify {
    const char *from, *to;
    long at[MAX_REQUALIFY];     /* locations of the qualifiers to change */
    size_t n;
    int refused;                /* `from` names a FROM item inside, or too many places */
};

/* Collects the column references qualified by r->from (and, with to set,
 * renames their qualifier in a tree without locations). */
static void requalify_walk(json_t *node, struct requalify *r, int rename)
{
    if (json_is_array(node)) {
        size_t i;
        json_t *v;
        json_array_foreach(node, i, v) {
            requalify_walk(v, r, rename);
        }
        return;
    }
    if (!json_is_object(node))
        return;
    json_t *fields = sql_get(node, "ColumnRef.fields");
    json_t *first = json_array_get(fields, 0);
    if (json_array_size(fields) >= 2 && sql_node_str(first) && !strcmp(sql_node_str(first), r->from)) {
        if (rename) {
            json_object_set_new(json_object_get(first, "String"), "sval", json_string(r->to));
        } else {
            json_t *loc = sql_get(node, "ColumnRef.location");
            if (r->n < MAX_REQUALIFY && json_is_integer(loc))
                r->at[r->n++] = (long)json_integer_value(loc);
            else
                r->refused = 1;
        }
    }
    json_t *rv = json_object_get(node, "RangeVar");
    if (rv) {
        const char *alias = json_string_value(sql_get(rv, "alias.aliasname"));
        const char *rel = json_string_value(json_object_get(rv, "relname"));
        if ((alias && !strcmp(alias, r->from)) || (!alias && rel && !strcmp(rel, r->from)))
            r->refused = 1;
    }
    json_t *sub_alias = json_object_get(node, "alias");
    const char *named = json_string_value(sql_get(sub_alias, "Alias.aliasname"));
    if (!named)
        named = json_string_value(json_object_get(sub_alias, "aliasname"));
    if (named && !strcmp(named, r->from))
        r->refused = 1;
    const char *key;
    json_t *v;
    json_object_foreach(node, key, v) {
        requalify_walk(v, r, rename);
    }
}

static int by_location(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

char *sql_expr_requalify(const char *expr, const char *from, const char *to)
{
    static const char prefix[] = "SELECT ";
    size_t plen = sizeof prefix - 1, n = strlen(expr);
    char *q = malloc(plen + n + 2);
    if (!q)
        return NULL;
    memcpy(q, prefix, plen);
    memcpy(q + plen, expr, n);
    q[plen + n] = '\n';
    q[plen + n + 1] = '\0';
    PgQueryParseResult pr = pg_query_parse(q);
    free(q);
    json_t *root = pr.error ? NULL : json_loads(pr.parse_tree, 0, NULL);
    pg_query_free_parse_result(pr);
    struct requalify r = {.from = from, .to = to};
    requalify_walk(root, &r, 0);
    json_decref(root);
    qsort(r.at, r.n, sizeof r.at[0], by_location);
    char *qto = sql_ident(to);
    struct mig_str out = {0};
    size_t done = 0;
    for (size_t i = 0; !r.refused && qto && i < r.n; i++) {
        size_t at = (size_t)r.at[i] - plen;
        if ((size_t)r.at[i] < plen || at < done || at >= n) {
            r.refused = 1;
            break;
        }
        mig_str_addf(&out, "%.*s%s", (int)(at - done), expr + done, qto);
        done = ident_token_end(expr, n, at);
    }
    mig_str_addf(&out, "%s", expr + done);
    free(qto);
    char *text = mig_str_take(&out);
    if (!root || r.refused || !text) {
        free(text);
        return NULL;
    }
    /* what it means: the author's tree with the qualifier renamed, or nothing */
    json_t *want = probe(expr, n, 0), *got = probe(text, strlen(text), 0);
    requalify_walk(want, &r, 1);
    int same = want && got && json_equal(want, got);
    json_decref(want);
    json_decref(got);
    if (!same) {
        free(text);
        return NULL;
    }
    return text;
}

char *sql_type_text(const struct sql_script *s, const struct sql_stmt *st, json_t *type_name)
{
    return node_text(s, st, type_name, 1);
}

/* The one statement text parses to, locations and "concurrent" left out;
 * NULL when it is not one statement. */
static json_t *index_tree(const char *text, int *concurrent)
{
    json_t *root;
    json_t *ix = sole_statement(text, "IndexStmt", &root);
    json_t *out = ix ? json_deep_copy(ix) : NULL;
    json_decref(root);
    if (out) {
        *concurrent = json_is_true(json_object_get(out, "concurrent"));
        json_object_del(out, "concurrent");
        strip_locations(out);
    }
    return out;
}

char *sql_index_not_concurrently(const char *stmt)
{
    static const char word[] = "concurrently";
    const size_t wn = sizeof word - 1, n = strlen(stmt);
    int concurrent = 0;
    json_t *want = index_tree(stmt, &concurrent);
    char *out = NULL;
    /* each place the word stands as a whole token is tried; the parser
     * says which one is the keyword (not a name or a string) */
    for (size_t at = 0; want && !out && at + wn <= n; at++) {
        if (strncasecmp(stmt + at, word, wn) != 0 || (at && ident_char((unsigned char)stmt[at - 1])) ||
            ident_char((unsigned char)stmt[at + wn]))
            continue;
        char *q = malloc(n + 1);
        if (!q)
            break;
        size_t cut = wn + (at && isspace((unsigned char)stmt[at - 1]) && isspace((unsigned char)stmt[at + wn]));
        memcpy(q, stmt, at);
        memcpy(q + at, stmt + at + cut, n - at - cut + 1);
        json_t *got = index_tree(q, &concurrent);
        if (got && !concurrent && json_equal(got, want))
            out = q;
        else
            free(q);
        json_decref(got);
    }
    json_decref(want);
    return out;
}

static int plain_word(const char *name)
{
    if (!*name || !(islower((unsigned char)*name) || *name == '_'))
        return 0;
    for (const char *p = name; *p; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_' || *p == '$'))
            return 0;
    return 1;
}

char *sql_ident(const char *name)
{
    if (plain_word(name) && strlen(name) < 64) {
        /* a keyword ("user", "order") does not read back as a column */
        json_t *got = probe(name, strlen(name), 0);
        json_t *fields = sql_get(got, "ColumnRef.fields");
        const char *back = json_array_size(fields) == 1 ? sql_node_str(json_array_get(fields, 0)) : NULL;
        int same = back && strcmp(back, name) == 0;
        json_decref(got);
        if (same)
            return strdup(name);
    }
    size_t n = strlen(name);
    char *out = malloc(2 * n + 3);
    if (!out)
        return NULL;
    char *o = out;
    *o++ = '"';
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            *o++ = '"';
        *o++ = *p;
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

int sql_index_stmt_params(const char *sql, const char *const *allowed)
{
    json_t *root;
    json_t *ix = sole_statement(sql, "IndexStmt", &root);
    int n = ix && sql_only_keys(ix, allowed) ? (int)json_array_size(json_object_get(ix, "indexParams")) : -1;
    json_decref(root);
    return n;
}

int sql_renames_index(const char *sql, const char *schema, const char *name)
{
    return sql_index_renamed_to(sql, schema, name, NULL, 0);
}

int sql_index_renamed_to(const char *sql, const char *schema, const char *name, char *to, size_t n)
{
    json_t *root;
    json_t *rn = sole_statement(sql, "RenameStmt", &root);
    json_t *rel = json_object_get(rn, "relation");
    const char *in = json_string_value(json_object_get(rel, "schemaname"));
    const char *kind = json_string_value(json_object_get(rn, "renameType"));
    const char *relname = json_string_value(json_object_get(rel, "relname"));
    const char *newname = json_string_value(json_object_get(rn, "newname"));
    int yes = kind && relname && newname && !strcmp(kind, "OBJECT_INDEX") && !strcmp(relname, name) &&
              (in ? !strcmp(in, schema) : !strcmp(schema, "public"));
    if (yes && to)
        snprintf(to, n, "%s", newname);
    json_decref(root);
    return yes;
}

/* Functions whose value differs per row: a default calling one makes ADD
 * COLUMN fill every existing row, i.e. rewrite the table. */
int sql_calls_volatile(json_t *j)
{
    static const char *const volatile_fns[] = {"random", "gen_random_uuid", "uuid_generate_v1",
        "uuid_generate_v4", "clock_timestamp", "timeofday", "nextval", "txid_current", NULL};
    if (json_is_object(j)) {
        json_t *fn = json_object_get(j, "FuncCall");
        json_t *names = json_object_get(fn, "funcname");
        const char *name = sql_node_str(json_array_get(names, json_array_size(names) - 1));
        for (const char *const *v = volatile_fns; name && *v; v++)
            if (!strcmp(*v, name))
                return 1;
        const char *k;
        json_t *x;
        json_object_foreach(j, k, x) {
            if (sql_calls_volatile(x))
                return 1;
        }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *x;
        json_array_foreach(j, i, x) {
            if (sql_calls_volatile(x))
                return 1;
        }
    }
    return 0;
}

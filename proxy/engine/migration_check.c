/* The checks every part of a migration file goes through, for the parser
 * (migration.c, migration_op_parse.c): where an error is in the file
 * (line and column of the token it names), "did you mean" for near misses,
 * each object's keys and their JSON types, and the identifiers, type names
 * and SQL expressions a file may give. The context they write errors
 * through is in migration_parse.h. */
#include "migration.h"
#include "migration_parse.h"
#include "sql_fragment.h"

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t mig_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return (size_t)-1;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = diag + cost;
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Finds where a quoted token first appears so errors can point at a line even
 * though jansson does not keep positions for decoded values. */
static void locate(const struct parse_ctx *c, const char *token, int *line, int *col)
{
    *line = 0;
    *col = 0;
    if (!c->text || !token)
        return;
    char quoted[80];
    if (snprintf(quoted, sizeof quoted, "\"%s\"", token) >= (int)sizeof quoted)
        return;
    const char *hit = strstr(c->text, quoted);
    if (hit)
        mig_text_pos(c->text, hit, line, col);
}

void mig_text_pos(const char *text, const char *at, int *line, int *col)
{
    const char *line_start = text;
    *line = 1;
    for (const char *p = text; p < at; p++)
        if (*p == '\n') {
            (*line)++;
            line_start = p + 1;
        }
    *col = (int)(at - line_start) + 1;
}

int mparse_fail_at(struct parse_ctx *c, const char *token, const char *fmt, ...)
{
    int line, col;
    locate(c, token, &line, &col);
    size_t off = 0;
    if (line > 0)
        off = (size_t)snprintf(c->err, c->errlen, "%s:%d:%d: ", c->file, line, col);
    else
        off = (size_t)snprintf(c->err, c->errlen, "%s: ", c->file);
    if (off < c->errlen && c->path[0])
        off += (size_t)snprintf(c->err + off, c->errlen - off, "%s: ", c->path);
    if (off < c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err + off, c->errlen - off, fmt, ap);
        va_end(ap);
    }
    return -1;
}

const char *mparse_closest(const char *word, const char *const *cands, size_t n)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        size_t d = mig_edit_distance(word, cands[i]);
        if (d < best_d) {
            best_d = d;
            best = cands[i];
        }
    }
    size_t limit = strlen(word) / 3 + 1;
    return best_d <= (limit < 3 ? limit : 3) ? best : NULL;
}

static int unknown_key(struct parse_ctx *c, const char *key, const struct key_spec *spec)
{
    const char *names[32] = {0};
    size_t n = 0;
    for (; n < 32 && spec[n].key; n++)
        names[n] = spec[n].key;
    const char *hint = mparse_closest(key, names, n);
    if (hint)
        return mparse_fail_at(c, key, "unknown key \"%s\" (did you mean \"%s\"?)", key, hint);
    char list[256] = "";
    for (size_t i = 0; i < n; i++) {
        strncat(list, names[i], sizeof list - strlen(list) - 1);
        if (i + 1 < n)
            strncat(list, ", ", sizeof list - strlen(list) - 1);
    }
    return mparse_fail_at(c, key, "unknown key \"%s\" (allowed: %s)", key, list);
}

static const char *type_label(enum key_type t)
{
    switch (t) {
    case K_STR: return "a string";
    case K_BOOL: return "true or false";
    case K_STRS: return "an array of strings";
    case K_OBJ: return "an object";
    case K_COLS: return "an array of column objects";
    case K_STR_OR_NULL: return "a string or null";
    case K_INT: return "an integer";
    case K_NUM: return "a number";
    case K_STR_OR_OBJ: return "a string or an object";
    }
    return "?";
}

static int type_ok(json_t *v, enum key_type t)
{
    switch (t) {
    case K_STR: return json_is_string(v);
    case K_BOOL: return json_is_boolean(v);
    case K_STRS: case K_COLS: return json_is_array(v);
    case K_OBJ: return json_is_object(v) || json_is_array(v);
    case K_STR_OR_NULL: return json_is_string(v) || json_is_null(v);
    case K_INT: return json_is_integer(v);
    case K_NUM: return json_is_number(v);
    case K_STR_OR_OBJ: return json_is_string(v) || json_is_object(v);
    }
    return 0;
}

/* Checks that obj has only known keys, each of the right JSON type, and all
 * required keys. */
int mparse_check_keys(struct parse_ctx *c, json_t *obj, const struct key_spec *spec)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        const struct key_spec *k = spec;
        while (k->key && strcmp(k->key, key) != 0)
            k++;
        if (!k->key)
            return unknown_key(c, key, spec);
        if (!type_ok(val, k->type))
            return mparse_fail_at(c, key, "\"%s\" must be %s", key, type_label(k->type));
        if (json_is_string(val) && json_string_length(val) == 0)
            return mparse_fail_at(c, key, "\"%s\" must not be empty", key);
    }
    for (const struct key_spec *k = spec; k->key; k++)
        if (k->required && !json_object_get(obj, k->key))
            return mparse_fail_at(c, NULL, "missing required key \"%s\"", k->key);
    return 0;
}

char *mparse_dup_str(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

/* Identifiers are quoted wherever they reach SQL; this only refuses what
 * Postgres would silently mangle (truncation) or what can never be right. */
int mparse_check_ident(struct parse_ctx *c, const char *key, const char *s)
{
    if (!s)
        return 0;
    size_t n = strlen(s);
    if (n == 0 || n > MAX_NAME)
        return mparse_fail_at(c, key, "\"%s\" must be 1 to %d bytes long (got %zu)", key, MAX_NAME, n);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return mparse_fail_at(c, key, "\"%s\" contains a control character", key);
    return 0;
}

/* What an error about a fragment points at: the fragment itself when it
 * appears in the file as written (no escapes), else its key. */
static const char *fragment_token(const struct parse_ctx *c, const char *key, const char *s)
{
    char quoted[80];
    if (!c->text || strpbrk(s, "\"\\") || snprintf(quoted, sizeof quoted, "\"%s\"", s) >= (int)sizeof quoted)
        return key;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20)
            return key;
    return strstr(c->text, quoted) ? s : key;
}

/* Type names cannot be quoted as one identifier ("numeric(10,2)", "timestamp
 * with time zone", "text[]"), so they are restricted to the characters a type
 * name can contain and must parse as exactly one type name; the live catalog
 * check resolves them afterwards. */
int mparse_check_type(struct parse_ctx *c, const char *key, const char *s)
{
    if (!s)
        return 0;
    int depth = 0;
    if (strlen(s) > 128)
        return mparse_fail_at(c, key, "\"%s\": type \"%.40s...\" is too long", key, s);
    for (const char *p = s; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '(') depth++;
        else if (ch == ')') { if (--depth < 0) break; }
        else if (!(isalnum(ch) || ch == '_' || ch == ' ' || ch == ',' || ch == '.' ||
                   ch == '[' || ch == ']' || ch == '"'))
            return mparse_fail_at(c, key, "\"%s\": type \"%s\" contains '%c'; use a plain type name such as "
                                  "\"jsonb\" or \"numeric(10,2)\"", key, s, ch);
    }
    if (depth != 0)
        return mparse_fail_at(c, key, "\"%s\": type \"%s\" has unbalanced parentheses", key, s);
    enum sql_fragment_result r = sql_fragment_type(s);
    if (r == SQL_FRAGMENT_OOM)
        return mparse_fail_at(c, key, "out of memory");
    if (r != SQL_FRAGMENT_OK)
        return mparse_fail_at(c, fragment_token(c, key, s), "\"%s\": \"%s\" is not one type name (such as "
                              "\"jsonb\", \"numeric(10,2)\" or \"timestamp with time zone\")", key, s);
    return 0;
}

/* An SQL expression (a default, up, down, check, where) is pasted into DDL
 * and trigger bodies as code: it must be exactly one expression, so it can
 * add no statement, clause or unbalanced parenthesis to what surrounds it. */
int mparse_check_expr(struct parse_ctx *c, const char *key, const char *s)
{
    if (!s)
        return 0;
    enum sql_fragment_result r = sql_fragment_expr(s);
    if (r == SQL_FRAGMENT_OOM)
        return mparse_fail_at(c, key, "out of memory");
    if (r != SQL_FRAGMENT_OK)
        return mparse_fail_at(c, fragment_token(c, key, s), "\"%s\" must be exactly one SQL expression, with "
                              "balanced parentheses and no trailing \"--\" comment (got \"%.80s%s\")", key, s,
                              strlen(s) > 80 ? "..." : "");
    return 0;
}

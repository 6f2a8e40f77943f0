/* Statements that pin a client to its server connection (see pin.h). The
 * scan in may_pin only decides whether the parser is worth running: it errs
 * towards parsing (a ';' inside a literal starts a "statement" for it), and
 * the parse tree decides. Most transactions (SELECT, INSERT, UPDATE ...)
 * never reach the parser. */
#include "pin.h"

#include <jansson.h>
#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CURSOR_OPT_HOLD 0x0020 /* src/include/nodes/parsenodes.h */

const char *const PIN_TRACKED_PARAMS[PIN_NTRACKED] = {"application_name", "client_encoding", "DateStyle",
                                                      "IntervalStyle", "TimeZone", "standard_conforming_strings"};

int pin_tracked_index(const char *name)
{
    for (int i = 0; i < PIN_NTRACKED; i++)
        if (strcasecmp(name, PIN_TRACKED_PARAMS[i]) == 0)
            return i;
    return -1;
}

static int is_ident_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$';
}

/* The n bytes at p are the lowercase ASCII word w, in any case. Every
 * client statement in transaction mode is scanned for a few words, so
 * this is byte arithmetic rather than strncasecmp (locale-aware, a call
 * per word). */
static int ascii_case_equal(const char *p, const char *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + ('a' - 'A'));
        if (c != w[i])
            return 0;
    }
    return 1;
}

/* The word at p (case-insensitive, whole word); w is lowercase. */
static int word_is(const char *p, const char *end, const char *w)
{
    size_t n = strlen(w);
    return (size_t)(end - p) >= n && ascii_case_equal(p, w, n) && (p + n == end || !is_ident_char(p[n]));
}

static const char *skip_blanks_and_comments(const char *p, const char *end)
{
    for (;;) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '(' || *p == '\f'))
            p++;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') {
            while (p < end && *p != '\n')
                p++;
        } else if (end - p >= 2 && p[0] == '/' && p[1] == '*') {
            const char *close = p + 2;
            while (close + 1 < end && !(close[0] == '*' && close[1] == '/'))
                close++;
            p = close + 1 < end ? close + 2 : end;
        } else {
            return p;
        }
    }
}

/* Words that pin wherever they are (a function call), found in one pass. */
static int calls_session_function(const char *p, const char *end)
{
    /* each first letter found by memchr, in either case */
    static const struct { char c; const char *word; size_t n; } starts[] = {
        {'a', "advisory", 8}, {'A', "advisory", 8}, {'s', "set_config", 10}, {'S', "set_config", 10}};
    for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++)
        for (const char *q = p; (q = memchr(q, starts[i].c, (size_t)(end - q))) != NULL; q++)
            if ((size_t)(end - q) >= starts[i].n && ascii_case_equal(q, starts[i].word, starts[i].n))
                return 1;
    return 0;
}

/* The statement at p starts with one of the words that may pin. */
static int first_word_may_pin(const char *p, const char *end)
{
    size_t n = 0;
    while (p + n < end && is_ident_char(p[n]))
        n++;
    switch (n) { /* the word's length picks the one candidate (or two) */
    case 3: return ascii_case_equal(p, "set", 3);
    case 4: return ascii_case_equal(p, "load", 4);
    case 6: return ascii_case_equal(p, "listen", 6) || ascii_case_equal(p, "create", 6);
    case 7: return ascii_case_equal(p, "prepare", 7) || ascii_case_equal(p, "declare", 7);
    default: return 0;
    }
}

/* A statement may pin when one starts with these words, or when the text
 * calls a session-level advisory lock or set_config(). */
static int may_pin(const char *sql, size_t len)
{
    const char *end = sql + len;
    if (calls_session_function(sql, end))
        return 1;
    for (const char *p = sql; p < end;) {
        p = skip_blanks_and_comments(p, end);
        if (first_word_may_pin(p, end))
            return 1;
        const char *semi = memchr(p, ';', (size_t)(end - p));
        p = semi ? semi + 1 : end;
    }
    return 0;
}

static int pins_set(json_t *node, char *why, size_t cap)
{
    const char *kind = json_string_value(json_object_get(node, "kind"));
    const char *name = json_string_value(json_object_get(node, "name"));
    if (!kind || !name || json_is_true(json_object_get(node, "is_local")))
        return 0; /* RESET ALL, SET TRANSACTION, SET LOCAL: nothing outlives the transaction the pool cannot see */
    if (strcmp(kind, "VAR_SET_VALUE") && strcmp(kind, "VAR_SET_DEFAULT") && strcmp(kind, "VAR_SET_CURRENT") &&
        strcmp(kind, "VAR_RESET"))
        return 0;
    if (!strcmp(kind, "VAR_RESET") || pin_tracked_index(name) >= 0)
        return 0; /* back to the default, or reported by Postgres and carried by the pool */
    snprintf(why, cap, "SET %s", name);
    return 1;
}

static int temporary(const char *tree)
{
    return strstr(tree, "\"relpersistence\":\"t\"") != NULL;
}

/* One top-level statement of the parse tree. */
static int pins_statement(json_t *stmt, const char *tree, char *why, size_t cap)
{
    const char *type = NULL;
    json_t *node = NULL;
    void *it = json_object_iter(stmt);
    if (it) {
        type = json_object_iter_key(it);
        node = json_object_iter_value(it);
    }
    if (!type)
        return 0;
    if (!strcmp(type, "VariableSetStmt"))
        return pins_set(node, why, cap);
    const char *reason = NULL;
    if (!strcmp(type, "PrepareStmt"))
        reason = "PREPARE";
    else if (!strcmp(type, "ListenStmt"))
        reason = "LISTEN";
    else if (!strcmp(type, "LoadStmt"))
        reason = "LOAD";
    else if (!strcmp(type, "DeclareCursorStmt") &&
             (json_integer_value(json_object_get(node, "options")) & CURSOR_OPT_HOLD))
        reason = "DECLARE ... WITH HOLD";
    else if ((!strcmp(type, "CreateStmt") || !strcmp(type, "CreateTableAsStmt") || !strcmp(type, "ViewStmt") ||
              !strcmp(type, "CreateSeqStmt")) &&
             temporary(tree))
        reason = "temporary object";
    if (!reason)
        return 0;
    snprintf(why, cap, "%s", reason);
    return 1;
}

/* Function calls whose effect outlives the transaction, anywhere in the tree. */
static int pins_call(const char *tree, char *why, size_t cap)
{
    static const char *const calls[] = {"\"pg_advisory_lock\"", "\"pg_advisory_lock_shared\"",
                                        "\"pg_try_advisory_lock\"", "\"pg_try_advisory_lock_shared\"",
                                        "\"set_config\"", NULL};
    for (int i = 0; calls[i]; i++) {
        if (strstr(tree, calls[i])) {
            snprintf(why, cap, "%.*s()", (int)strlen(calls[i]) - 2, calls[i] + 1);
            return 1;
        }
    }
    return 0;
}

/* Parameters whose SET always pins: a role changes who the server
 * connection is. */
static int never_carried(const char *name)
{
    static const char *const names[] = {"role", "session_authorization", NULL};
    for (int i = 0; names[i]; i++)
        if (strcasecmp(name, names[i]) == 0)
            return 1;
    return 0;
}

/* Postgres's parse of `len` bytes of text (no NUL needed); -1 when out of
 * memory. The caller frees *r. */
static int parse_sql(const char *sql, size_t len, PgQueryParseResult *r)
{
    char *text = malloc(len + 1);
    if (!text)
        return -1;
    memcpy(text, sql, len);
    text[len] = '\0';
    *r = pg_query_parse(text);
    free(text);
    return 0;
}

static json_t *parse_tree(const char *sql, size_t len)
{
    PgQueryParseResult r;
    if (parse_sql(sql, len, &r) != 0)
        return NULL;
    json_t *root = !r.error && r.parse_tree ? json_loads(r.parse_tree, 0, NULL) : NULL;
    pg_query_free_parse_result(r);
    return root;
}

/* SET search_path's arguments, each a name (an identifier or a string:
 * Postgres reads both as the schema's name), as quoted identifiers into
 * out. -1 for anything else or when it does not fit. */
static int search_path_names(json_t *args, char *out, size_t cap)
{
    size_t used = 0, i;
    json_t *arg;
    out[0] = '\0';
    json_array_foreach(args, i, arg) {
        const char *name = json_string_value(json_object_get(json_object_get(json_object_get(arg, "A_Const"),
                                                                             "sval"), "sval"));
        if (!name)
            return -1;
        if (used + 2 + 2 * strlen(name) + 2 >= cap)
            return -1;
        if (used) {
            memcpy(out + used, ", ", 2);
            used += 2;
        }
        out[used++] = '"';
        for (const char *c = name; *c; c++) {
            if (*c == '"')
                out[used++] = '"';
            out[used++] = *c;
        }
        out[used++] = '"';
        out[used] = '\0';
    }
    return used ? 0 : -1;
}

/* The only statement of a parse, as its node kind and node; NULL when the
 * text holds none or several. */
static json_t *only_statement(json_t *root, const char *kind)
{
    json_t *stmts = json_object_get(root, "stmts");
    if (json_array_size(stmts) != 1)
        return NULL;
    return json_object_get(json_object_get(json_array_get(stmts, 0), "stmt"), kind);
}

int pin_carried_set(const char *sql, size_t len, struct pin_carry *out)
{
    const char *end = sql + len;
    const char *p = skip_blanks_and_comments(sql, end);
    if (!word_is(p, end, "set") && !word_is(p, end, "reset"))
        return 0;
    json_t *root = parse_tree(sql, len);
    json_t *node = only_statement(root, "VariableSetStmt");
    const char *kind = json_string_value(json_object_get(node, "kind"));
    const char *name = json_string_value(json_object_get(node, "name"));
    int carried = 0;
    if (kind && !strcmp(kind, "VAR_RESET_ALL")) {
        out->name[0] = out->value[0] = '\0';
        out->reset = out->all = 1;
        carried = 1;
    } else if (kind && name && !json_is_true(json_object_get(node, "is_local")) &&
               (!strcmp(kind, "VAR_SET_VALUE") || !strcmp(kind, "VAR_SET_DEFAULT") || !strcmp(kind, "VAR_RESET")) &&
               pin_tracked_index(name) < 0 && !never_carried(name) && strlen(name) < sizeof out->name) {
        snprintf(out->name, sizeof out->name, "%s", name);
        out->reset = !strcmp(kind, "VAR_RESET") || !strcmp(kind, "VAR_SET_DEFAULT");
        out->all = 0;
        out->value[0] = '\0';
        carried = out->reset || strcasecmp(name, "search_path") ||
                  search_path_names(json_object_get(node, "args"), out->value, sizeof out->value) == 0;
    }
    json_decref(root);
    return carried;
}

int pin_deallocate_name(const char *sql, size_t len, char *name, size_t cap)
{
    const char *end = sql + len;
    if (!word_is(skip_blanks_and_comments(sql, end), end, "deallocate"))
        return 0;
    json_t *root = parse_tree(sql, len);
    const char *n = json_string_value(json_object_get(only_statement(root, "DeallocateStmt"), "name"));
    int found = n && strlen(n) < cap;
    if (found)
        snprintf(name, cap, "%s", n);
    json_decref(root);
    return found;
}

int pin_reason_for_sql(const char *sql, size_t len, char *why, size_t cap)
{
    if (!may_pin(sql, len))
        return 0;
    PgQueryParseResult r;
    if (parse_sql(sql, len, &r) != 0) {
        snprintf(why, cap, "out of memory");
        return -1;
    }
    int pinned = 0;
    if (!r.error && r.parse_tree) {
        json_t *root = json_loads(r.parse_tree, 0, NULL);
        json_t *stmts = json_object_get(root, "stmts");
        size_t i;
        json_t *entry;
        json_array_foreach(stmts, i, entry) {
            if ((pinned = pins_statement(json_object_get(entry, "stmt"), r.parse_tree, why, cap)))
                break;
        }
        if (!pinned)
            pinned = pins_call(r.parse_tree, why, cap);
        if (!root) {
            snprintf(why, cap, "out of memory");
            pinned = -1;
        }
        json_decref(root);
    }
    pg_query_free_parse_result(r);
    return pinned;
}

/* SQL text building blocks for the migration engine: a growable string with
 * offline identifier and literal quoting, and lists of SQL steps. Keeping
 * quoting in one place is what makes "every identifier is quoted" checkable. */
#include "migration_sql.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(struct mig_str *s, size_t extra)
{
    if (s->oom)
        return -1;
    if (s->len + extra + 1 <= s->cap)
        return 0;
    size_t cap = s->cap ? s->cap : 128;
    while (cap < s->len + extra + 1)
        cap *= 2;
    char *grown = realloc(s->buf, cap);
    if (!grown) {
        s->oom = 1;
        return -1;
    }
    s->buf = grown;
    s->cap = cap;
    return 0;
}

static void add_char(struct mig_str *s, char c)
{
    if (reserve(s, 1) == 0) {
        s->buf[s->len++] = c;
        s->buf[s->len] = '\0';
    }
}

void mig_str_add(struct mig_str *s, const char *text)
{
    size_t n = strlen(text);
    if (reserve(s, n) == 0) {
        memcpy(s->buf + s->len, text, n + 1);
        s->len += n;
    }
}

void mig_str_addf(struct mig_str *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || reserve(s, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(s->buf + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
}

void mig_str_ident(struct mig_str *s, const char *ident)
{
    add_char(s, '"');
    for (const char *p = ident; *p; p++) {
        if (*p == '"')
            add_char(s, '"');
        add_char(s, *p);
    }
    add_char(s, '"');
}

void mig_str_qname(struct mig_str *s, const char *schema, const char *name)
{
    mig_str_ident(s, schema);
    add_char(s, '.');
    mig_str_ident(s, name);
}

void mig_str_literal(struct mig_str *s, const char *text)
{
    if (strchr(text, '\\'))
        add_char(s, 'E');
    add_char(s, '\'');
    for (const char *p = text; *p; p++) {
        if (*p == '\'' || *p == '\\')
            add_char(s, *p);
        add_char(s, *p);
    }
    add_char(s, '\'');
}

char *mig_str_take(struct mig_str *s)
{
    char *out = s->oom ? NULL : s->buf;
    if (!out && !s->oom)
        out = strdup("");
    if (s->oom)
        free(s->buf);
    memset(s, 0, sizeof *s);
    return out;
}

void mig_str_free(struct mig_str *s)
{
    free(s->buf);
    memset(s, 0, sizeof *s);
}

char *mig_quote_ident(const char *ident)
{
    struct mig_str s = {0};
    mig_str_ident(&s, ident);
    return mig_str_take(&s);
}

char *mig_quote_qname(const char *schema, const char *name)
{
    struct mig_str s = {0};
    mig_str_qname(&s, schema, name);
    return mig_str_take(&s);
}

void mig_steps_add(struct mig_steps *l, int op_index, enum mig_step_mode mode, char *sql_owned)
{
    if (!sql_owned) {
        l->oom = 1;
        return;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        struct mig_step *grown = realloc(l->v, cap * sizeof *grown);
        if (!grown) {
            free(sql_owned);
            l->oom = 1;
            return;
        }
        l->v = grown;
        l->cap = cap;
    }
    l->v[l->n++] = (struct mig_step){.sql = sql_owned, .mode = mode, .op_index = op_index};
}

void mig_steps_set_cleanup(struct mig_steps *l, char *sql_owned)
{
    if (l->n == 0 || !sql_owned) {
        free(sql_owned);
        l->oom = 1;
        return;
    }
    free(l->v[l->n - 1].cleanup);
    l->v[l->n - 1].cleanup = sql_owned;
}

void mig_steps_free(struct mig_steps *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].sql);
        free(l->v[i].cleanup);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* The route's search_path value: the schemas of `schemas` (comma-separated,
 * unquoted: a migration's schema names have no comma), each quoted, then
 * `then` (public when NULL). */
static char *search_path_value(const char *schemas, const char *then)
{
    struct mig_str q = {0};
    for (const char *p = schemas; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char *one = strndup(p, len);
        if (!one) {
            mig_str_free(&q);
            return NULL;
        }
        mig_str_ident(&q, one);
        mig_str_add(&q, ",");
        free(one);
        p += len + (comma ? 1 : 0);
    }
    mig_str_add(&q, then ? then : "public");
    return mig_str_take(&q);
}

int mig_search_path_option(char *out, size_t n, const char *schema, const char *then)
{
    struct mig_str o = {0};
    char *path = search_path_value(schema, then);
    if (!path)
        return -1;
    /* the server splits "options" at spaces; a backslash keeps the next
     * character (a space or a backslash) in the word */
    mig_str_add(&o, " -c search_path=");
    for (const char *p = path; *p; p++) {
        char c[3] = {'\\', *p, '\0'};
        mig_str_add(&o, *p == ' ' || *p == '\t' || *p == '\\' ? c : c + 1);
    }
    free(path);
    char *opt = mig_str_take(&o);
    int fits = opt && strlen(opt) < n;
    if (fits)
        memcpy(out, opt, strlen(opt) + 1);
    free(opt);
    return fits ? 0 : -1;
}

char *mig_search_path_set_config(const char *schema, const char *then)
{
    char *path = search_path_value(schema, then);
    if (!path)
        return NULL;
    struct mig_str q = {0};
    mig_str_add(&q, "SELECT pg_catalog.set_config('search_path', ");
    mig_str_literal(&q, path);
    mig_str_add(&q, ", false)");
    free(path);
    return mig_str_take(&q);
}

char *mig_search_path_sql(const char *schema)
{
    char *path = search_path_value(schema, NULL);
    struct mig_str q = {0};
    mig_str_add(&q, "SET search_path TO ");
    mig_str_add(&q, path ? path : "");
    free(path);
    return path ? mig_str_take(&q) : (mig_str_free(&q), NULL);
}

const char *mig_fk_action(char letter)
{
    switch (letter) {
    case 'r': return "RESTRICT";
    case 'c': return "CASCADE";
    case 'n': return "SET NULL";
    case 'd': return "SET DEFAULT";
    default: return "NO ACTION";
    }
}

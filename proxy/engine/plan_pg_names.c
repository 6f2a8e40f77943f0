/* The names Postgres gives the constraints and indexes a DDL statement
 * does not name, so that a migration run online ends with the names the
 * same statement run offline would have chosen: `t_c_check`, `t_c_key`,
 * `t_c_fkey`, `t_pkey`. The rules are Postgres's own (its index commands
 * and constraint catalog code): makeObjectName truncates the longer of the two name
 * parts until "name1_name2_label" fits in 63 bytes, cutting at a character
 * boundary; ChooseConstraintName appends 1, 2, ... to the label while a
 * constraint of the schema has the name; ChooseRelationName (an index, and
 * the UNIQUE or PRIMARY KEY constraint it backs) also skips the names of
 * relations. Taken means taken in the catalog read at start or by an
 * earlier name of this migration. */
#include "migration_plan.h"
#include "plan_ctx.h"
#include "sql_fragment.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAMEDATALEN 64

/* The most bytes of s, at most n, that end on a UTF-8 character boundary
 * (pg_mbcliplen). */
static size_t clip_utf8(const char *s, size_t n)
{
    size_t len = strlen(s);
    if (n >= len)
        return len;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

/* makeObjectName: name1[_name2][_label], at most NAMEDATALEN - 1 bytes. */
static void object_name_pg(char *out, size_t outlen, const char *name1, const char *name2, const char *label)
{
    size_t overhead = (name2 ? 1 : 0) + (label ? strlen(label) + 1 : 0);
    size_t avail = NAMEDATALEN - 1 - overhead;
    size_t n1 = strlen(name1), n2 = name2 ? strlen(name2) : 0;
    while (n1 + n2 > avail) {
        if (n1 > n2)
            n1--;
        else
            n2--;
    }
    n1 = clip_utf8(name1, n1);
    if (name2)
        n2 = clip_utf8(name2, n2);
    snprintf(out, outlen, "%.*s%s%.*s%s%s", (int)n1, name1, name2 ? "_" : "", (int)n2, name2 ? name2 : "",
             label ? "_" : "", label ? label : "");
}

/* ChooseIndexNameAddition / ChooseForeignKeyConstraintNameAddition: the
 * column names joined by "_", stopping once NAMEDATALEN bytes are reached. */
static void name_addition(char *out, size_t outlen, char *const *cols, size_t n)
{
    char buf[NAMEDATALEN * 2] = "";
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (len > 0)
            buf[len++] = '_';
        snprintf(buf + len, NAMEDATALEN, "%s", cols[i]);
        len += strlen(buf + len);
        if (len >= NAMEDATALEN)
            break;
    }
    snprintf(out, outlen, "%s", buf);
}

static int taken_here(const struct plan_ctx *c, const char *schema, const char *name, int relations)
{
    for (size_t i = 0; i < c->ntaken; i++)
        if (!strcmp(c->taken[i].schema, schema) && !strcmp(c->taken[i].name, name) &&
            (relations || !c->taken[i].relation))
            return 1;
    return 0;
}

void take_name(struct plan_ctx *c, const char *schema, const char *name, int relation)
{
    if (c->ntaken >= sizeof c->taken / sizeof c->taken[0])
        return;
    c->taken[c->ntaken].schema = schema;
    c->taken[c->ntaken].relation = relation;
    snprintf(c->taken[c->ntaken].name, sizeof c->taken[c->ntaken].name, "%s", name);
    c->ntaken++;
}

/* ChooseConstraintName (relations 0) or ChooseRelationName (relations 1);
 * the name is taken for later operations. */
static void choose(struct plan_ctx *c, const char *schema, const char *name1, const char *name2,
                   const char *label, int relations, char *out, size_t outlen)
{
    char modlabel[NAMEDATALEN];
    snprintf(modlabel, sizeof modlabel, "%s", label);
    for (int pass = 0;; ) {
        object_name_pg(out, outlen, name1, name2, modlabel);
        if (!taken_here(c, schema, out, relations) && !mig_catalog_name_taken(c->cat, schema, out, relations))
            break;
        snprintf(modlabel, sizeof modlabel, "%s%d", label, ++pass);
    }
    take_name(c, schema, out, relations);
}

void choose_key_name(struct plan_ctx *c, const char *schema, const char *table, char *const *cols, size_t n,
                     int primary, char *out, size_t outlen)
{
    if (primary) {
        choose(c, schema, table, NULL, "pkey", 1, out, outlen);
        return;
    }
    char add[NAMEDATALEN * 2];
    name_addition(add, sizeof add, cols, n);
    choose(c, schema, table, add, "key", 1, out, outlen);
}

void choose_fkey_name(struct plan_ctx *c, const char *schema, const char *table, char *const *cols, size_t n,
                      char *out, size_t outlen)
{
    char add[NAMEDATALEN * 2];
    name_addition(add, sizeof add, cols, n);
    choose(c, schema, table, add, "fkey", 0, out, outlen);
}

/* AddRelationNewConstraints: "check" after the one column the expression
 * reads, or after the table alone when it reads none or several. */
void choose_check_name(struct plan_ctx *c, const char *schema, const char *table, const char *expr, char *out,
                       size_t outlen)
{
    char **names = NULL;
    size_t n = 0;
    int star = 0;
    enum sql_fragment_result r = sql_fragment_columns(expr, &names, &n, &star);
    const char *col = r == SQL_FRAGMENT_OK && n == 1 && !star ? names[0] : NULL;
    choose(c, schema, table, col, "check", 0, out, outlen);
    if (r == SQL_FRAGMENT_OK)
        sql_fragment_free_names(names, n);
}

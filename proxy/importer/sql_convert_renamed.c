/* A data statement (UPDATE, DELETE, INSERT) that runs as written at expand
 * and names columns a RENAME COLUMN above gives its table. The file was
 * written for the renamed table, but at expand the columns still have
 * their old names: a rename that keeps the values renames the column in
 * the contract (engine/ops/op_rename_column.c). The statement is written back to
 * the names the table has when it runs, token by token at the places the
 * parser gives, so it runs on the same columns it names. It used to fail
 * there ("column ... does not exist") after DDL had run.
 *
 * Refused before any DDL instead: a statement with a subquery or a FROM
 * (a name there may be another table's column), or naming a column whose
 * rename changes its type or values (the new column is a second one the
 * backfill fills after expand). */
#include "sql_convert.h"
#include "sql_convert_conv.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "migration_names.h"
#include "migration_sql.h"

#define MAX_RENAMED 64
#define MAX_PLACES 256

struct renamed {
    const char *to, *from; /* the name the file gives, the name the column has at expand */
    int keeps_values;
    char shadow[80];       /* from, for a column added under a name a rename frees */
};

struct place {
    size_t at, end;
    const char *old;
};

/* The renames of rel above this statement, chains followed (a -> b -> c
 * maps c to a). */
static size_t renames_of(struct conv *c, json_t *rel, struct renamed *out)
{
    size_t n = 0, i;
    json_t *op, *body;
    const char *kind;
    json_array_foreach(c->ops, i, op) {
        if (!sqlc_op_on_now(c, i, op, rel, &kind, &body) || strcmp(kind, "rename_column") != 0)
            continue;
        const char *from = sqlc_str_or(body, "from", ""), *to = sqlc_str_or(body, "to", "");
        int keeps = !json_object_get(body, "type") && !json_object_get(body, "up");
        size_t k;
        for (k = 0; k < n && strcmp(out[k].to, from) != 0; k++) {
        }
        if (k < n) {
            out[k].to = to;
            out[k].keeps_values &= keeps;
        } else if (n < MAX_RENAMED) {
            out[n++] = (struct renamed){.to = to, .from = from, .keeps_values = keeps};
        }
    }
    /* A column added under the name a rename above frees is its second
     * column until the contract gives it the name, which until then is the
     * renamed column's (engine/ops/op_add_column.c): a statement naming it
     * runs on the second column (90003-351, which updated the renamed one). */
    json_array_foreach(c->ops, i, op) {
        if (!sqlc_op_on_now(c, i, op, rel, &kind, &body) || strcmp(kind, "add_column") != 0 || n >= MAX_RENAMED)
            continue;
        const char *name = sqlc_str_or(json_object_get(body, "column"), "name", "");
        size_t k;
        for (k = 0; k < n && strcmp(out[k].from, name) != 0; k++) {
        }
        if (k == n)
            continue;
        out[n] = (struct renamed){.to = name, .keeps_values = 1};
        mig_shadow_name(out[n].shadow, sizeof out[n].shadow, name);
        out[n].from = out[n].shadow;
        n++;
    }
    return n;
}

static const struct renamed *renamed_to(const struct renamed *r, size_t n, const char *name)
{
    for (size_t i = 0; name && i < n; i++)
        if (!strcmp(r[i].to, name))
            return &r[i];
    return NULL;
}

/* The end of the identifier token at text[at] (quoted or not). */
static size_t ident_end(const char *text, size_t len, size_t at)
{
    if (at < len && text[at] == '"') {
        for (size_t i = at + 1; i < len; i++)
            if (text[i] == '"' && !(i + 1 < len && text[i + 1] == '"'))
                return i + 1;
            else if (text[i] == '"')
                i++;
        return len;
    }
    size_t i = at;
    while (i < len && (isalnum((unsigned char)text[i]) || text[i] == '_' || text[i] == '$' || (unsigned char)text[i] >= 0x80))
        i++;
    return i;
}

struct walk {
    const char *text;
    size_t len;
    const struct renamed *r;
    size_t nr;
    struct place places[MAX_PLACES];
    size_t n;
    const char *nested;     /* a subquery or a join: names there are not the table's alone */
    const char *retyped;    /* a column named whose rename changes its values */
};

static void add_place(struct walk *w, size_t at, const char *name)
{
    const struct renamed *r = renamed_to(w->r, w->nr, name);
    if (!r)
        return;
    if (!r->keeps_values) {
        w->retyped = r->to;
        return;
    }
    if (w->n < MAX_PLACES && at < w->len)
        w->places[w->n++] = (struct place){at, ident_end(w->text, w->len, at), r->from};
}

/* A column reference: its last field names the column; a qualified one's
 * column token follows the qualifier and a dot. */
static void column_ref(struct walk *w, json_t *ref)
{
    json_t *fields = json_object_get(ref, "fields");
    size_t nf = json_array_size(fields);
    json_t *loc = json_object_get(ref, "location");
    const char *col = sql_node_str(json_array_get(fields, nf - 1));
    if (!col || !json_is_integer(loc) || nf > 2)
        return;
    size_t at = (size_t)json_integer_value(loc);
    if (nf == 2) {
        at = ident_end(w->text, w->len, at);
        while (at < w->len && (isspace((unsigned char)w->text[at]) || w->text[at] == '.'))
            at++;
    }
    add_place(w, at, col);
}

static void walk(struct walk *w, json_t *j)
{
    if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            walk(w, v);
        }
        return;
    }
    if (!json_is_object(j))
        return;
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        if (!strcmp(key, "SubLink") || !strcmp(key, "RangeSubselect") || !strcmp(key, "fromClause") ||
            !strcmp(key, "usingClause") || !strcmp(key, "withClause") || !strcmp(key, "selectStmt"))
            w->nested = key;
        else if (!strcmp(key, "ColumnRef"))
            column_ref(w, v);
        else if (!strcmp(key, "ResTarget") && json_is_integer(json_object_get(v, "location")) &&
                 json_object_get(v, "name"))
            add_place(w, (size_t)json_integer_value(json_object_get(v, "location")),
                      sqlc_str_or(v, "name", NULL));
        walk(w, v);
    }
}

static int by_place(const void *a, const void *b)
{
    const struct place *x = a, *y = b;
    return x->at < y->at ? -1 : x->at > y->at;
}

char *sqlc_renamed_back(struct conv *c, const struct sql_stmt *st, int *refused)
{
    *refused = 0;
    json_t *rel = json_object_get(st->body, "relation");
    struct renamed r[MAX_RENAMED];
    size_t nr = rel ? renames_of(c, rel, r) : 0;
    if (!nr)
        return NULL;
    struct walk *w = calloc(1, sizeof *w);
    if (!w) {
        *refused = sqlc_oom(c, st);
        return NULL;
    }
    *w = (struct walk){.text = c->s.text, .len = c->s.len, .r = r, .nr = nr};
    walk(w, st->body);
    char *out = NULL;
    if (w->n && w->nested) {
        *refused = sqlc_fail(c, st, "names \"%s\", a column a RENAME COLUMN above renames, in a statement with a "
                             "subquery, FROM or WITH, where a name may be another table's column; at expand, where it "
                             "runs, the column still has its old name. Put this statement in a migration of its own "
                             "after this one", r[0].to);
    } else if (w->retyped) {
        *refused = sqlc_fail(c, st, "names \"%s\", which a RENAME COLUMN above gives new values (a second column, "
                             "filled by the backfill after expand, where this statement runs); put this statement in "
                             "a migration of its own after this one", w->retyped);
    } else if (w->n) {
        qsort(w->places, w->n, sizeof w->places[0], by_place);
        struct mig_str s = {0};
        size_t from = st->start;
        for (size_t i = 0; i < w->n; i++) {
            if (w->places[i].at < from || w->places[i].end > st->end)
                continue; /* outside the statement, or the same place twice */
            char *q = sql_ident(w->places[i].old);
            mig_str_addf(&s, "%.*s%s", (int)(w->places[i].at - from), c->s.text + from, q ? q : "");
            free(q);
            from = w->places[i].end;
        }
        mig_str_addf(&s, "%.*s", (int)(st->end - from), c->s.text + from);
        out = mig_str_take(&s);
        if (!out)
            *refused = sqlc_oom(c, st);
    }
    free(w);
    return out;
}

/* Several migrations in flight (see migration_flight.h). */
#include "migration_flight.h"

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql_fragment.h"
#include "sql_script.h"

static const struct mig_flight *find(const struct mig_flight *flight, size_t n, const char *name)
{
    for (size_t i = 0; name && i < n; i++)
        if (flight[i].name && !strcmp(flight[i].name, name))
            return &flight[i];
    return NULL;
}

static const struct mig_flight *parent_of(const struct mig_flight *flight, size_t n, const struct mig_flight *m)
{
    return find(flight, n, m->parent);
}

/* A loop of parents (a table edited by hand) ends the walk after n steps. */
int mig_flight_below(const struct mig_flight *flight, size_t n, const struct mig_flight *a,
                     const struct mig_flight *b)
{
    const struct mig_flight *p = parent_of(flight, n, b);
    for (size_t steps = 0; p && steps <= n; steps++, p = parent_of(flight, n, p))
        if (!strcmp(p->name, a->name))
            return 1;
    return 0;
}

static int every_table(const char *t)
{
    return !strcmp(t, MIG_FLIGHT_EVERY_TABLE);
}

const char *mig_flight_shared_table(const struct mig_flight *a, const struct mig_flight *b)
{
    for (size_t i = 0; i < a->ntables; i++)
        for (size_t j = 0; j < b->ntables; j++)
            if (!strcmp(a->tables[i], b->tables[j]) || every_table(a->tables[i]) || every_table(b->tables[j]))
                return every_table(a->tables[i]) ? b->tables[j] : a->tables[i];
    return NULL;
}

int mig_flight_first_shared(const struct mig_flight *set, size_t n, const struct mig_flight *m, const char **table)
{
    for (size_t i = 0; i < n; i++)
        if ((*table = mig_flight_shared_table(m, &set[i])) != NULL)
            return (int)i;
    return -1;
}

/* The in-flight migrations built on m (its parent, or an ancestor's), as
 * a list for a message: newest first, the order they must go in. */
static size_t above(const struct mig_flight *flight, size_t n, const struct mig_flight *m, char *out, size_t cap)
{
    size_t count = 0, len = 0;
    out[0] = '\0';
    for (size_t i = n; i-- > 0;) {
        if (!mig_flight_below(flight, n, m, &flight[i]))
            continue;
        int w = snprintf(out + len, cap - len, "%s%s", count ? ", " : "", flight[i].name);
        if (w > 0 && (size_t)w < cap - len)
            len += (size_t)w;
        count++;
    }
    return count;
}

static int admit_start(const struct mig_flight *flight, size_t n, const struct mig_flight *m, char *why, size_t cap)
{
    if (find(flight, n, m->name))
        return mig_refuse(409, why, cap, "migration %s is in flight already", m->name);
    if (n >= MIG_FLIGHT_MAX)
        return mig_refuse(409, why, cap, "%zu migrations are in flight, the most there may be; complete the oldest (%s)"
                      " first", n, flight[0].name);
    const struct mig_flight *parent = parent_of(flight, n, m);
    if (parent) {
        switch (parent->phase) {
        case MIG_PH_FAILED:
            return mig_refuse(409, why, cap, "migration %s, the parent of %s, failed; roll it back (or start it again)"
                          " before building on it", parent->name, m->name);
        case MIG_PH_COMPLETING:
            return mig_refuse(409, why, cap, "migration %s, the parent of %s, is completing (a cutover runs); start %s"
                          " again when it has ended", parent->name, m->name, m->name);
        case MIG_PH_ROLLING_BACK:
            return mig_refuse(409, why, cap, "migration %s, the parent of %s, is rolling back", parent->name, m->name);
        default: break;
        }
        for (size_t i = 0; i < n; i++)
            if (flight[i].parent && !strcmp(flight[i].parent, parent->name))
                return mig_refuse(409, why, cap, "migration %s is built on %s already: %s must name %s (the newest of"
                              " that line) as its parent", flight[i].name, parent->name, m->name, flight[i].name);
    }
    /* a table changed in flight is changed again only on top of that change */
    for (size_t i = 0; i < n; i++) {
        const char *t = mig_flight_shared_table(m, &flight[i]);
        if (!t || (parent && (parent == &flight[i] || mig_flight_below(flight, n, &flight[i], parent))))
            continue;
        const struct mig_flight *newest = &flight[i];
        for (size_t j = 0; j < n; j++)
            if (mig_flight_below(flight, n, newest, &flight[j]))
                newest = &flight[j];
        return mig_refuse(409, why, cap, "%s changes %s, which migration %s in flight changes too: give %s the parent"
                      " %s (the newest in flight on that line) to build on its shape, or complete %s first", m->name,
                      t, flight[i].name, m->name, newest->name, flight[i].name);
    }
    return 0;
}

/* Complete and finalize: after every migration below m that changes one
 * of its tables (m's shape of that table was built on theirs). */
static int admit_in_order(const struct mig_flight *flight, size_t n, enum mig_request q, const struct mig_flight *m,
                          char *why, size_t cap)
{
    for (size_t i = 0; i < n; i++) {
        const char *t = mig_flight_shared_table(m, &flight[i]);
        if (t && mig_flight_below(flight, n, &flight[i], m))
            return mig_refuse(409, why, cap, "migration %s is built on %s, in flight below it on %s: %s %s first"
                          " (migrations of one table go oldest first)", m->name, flight[i].name, t,
                          q == MIG_REQ_FINALIZE ? "finalize or complete" : "complete", flight[i].name);
    }
    return 0;
}

int mig_flight_admit(const struct mig_flight *flight, size_t n, enum mig_request q, const struct mig_flight *m,
                     int cascade, char *why, size_t cap)
{
    if (why && cap)
        why[0] = '\0';
    if (!m || !m->name)
        return mig_refuse(404, why, cap, "no migration named");
    if (q == MIG_REQ_START)
        return admit_start(flight, n, m, why, cap);
    if (q == MIG_REQ_STATUS)
        return 0;
    if (!find(flight, n, m->name))
        return mig_refuse(404, why, cap, "migration %s is not in flight", m->name);
    char names[512];
    switch (q) {
    case MIG_REQ_COMPLETE:
    case MIG_REQ_FINALIZE: return admit_in_order(flight, n, q, m, why, cap);
    case MIG_REQ_ROLLBACK:
        if (above(flight, n, m, names, sizeof names) && !cascade)
            return mig_refuse(409, why, cap, "migrations built on %s are in flight (%s): roll them back first, newest"
                          " first, or roll %s back with them", m->name, names, m->name);
        return 0;
    case MIG_REQ_REVERT:
        /* the revert drops m's new shape, which theirs are built on */
        if (above(flight, n, m, names, sizeof names))
            return mig_refuse(409, why, cap, "migrations built on %s are in flight (%s): roll them back first, newest"
                          " first", m->name, names);
        return 0;
    default: return mig_refuse(400, why, cap, "unknown request");
    }
}

unsigned mig_flight_seen(const struct mig_flight *flight, size_t n, const char *declared)
{
    const struct mig_flight *d = find(flight, n, declared);
    unsigned seen = 0;
    for (size_t i = 0; d && i < n && i < sizeof seen * 8; i++)
        if (&flight[i] == d || mig_flight_below(flight, n, &flight[i], d))
            seen |= 1u << i;
    return seen;
}

/* ---- the tables a migration touches ---- */

struct table_set {
    char **v;
    size_t n, cap;
    int failed;
};

static void add_table(struct table_set *s, const char *schema, const char *table)
{
    if (s->failed || !table || (schema && !strncmp(schema, "pgtandem", 8)))
        return; /* pgtandem's own: the state, a migration's views */
    char buf[300];
    int len = every_table(table) ? snprintf(buf, sizeof buf, "%s", table)
                                 : snprintf(buf, sizeof buf, "%s.%s", schema ? schema : "public", table);
    if (len < 0 || (size_t)len >= sizeof buf) {
        s->failed = 1;
        return;
    }
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], buf))
            return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 4;
        char **v = realloc(s->v, cap * sizeof *v);
        if (!v) {
            s->failed = 1;
            return;
        }
        s->v = v;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(buf)))
        s->failed = 1;
    else
        s->n++;
}

/* "table(column)", "schema.table(col)" or "table": the table's part, in
 * the referencing table's schema when it names none. */
static void add_reference(struct table_set *s, const char *schema, const char *ref)
{
    if (!ref)
        return;
    char t[256];
    size_t len = strcspn(ref, "(");
    while (len > 0 && ref[len - 1] == ' ')
        len--;
    if (len == 0 || len >= sizeof t)
        return;
    memcpy(t, ref, len);
    t[len] = '\0';
    char *dot = strchr(t, '.');
    if (dot) {
        *dot = '\0';
        add_table(s, t, dot + 1);
    } else {
        add_table(s, schema, t);
    }
}

/* Every relation the tree names (its RangeVars' schema and name). */
static void add_range_vars(struct table_set *s, json_t *node)
{
    if (json_is_array(node)) {
        size_t i;
        json_t *e;
        json_array_foreach(node, i, e) {
            add_range_vars(s, e);
        }
        return;
    }
    if (!json_is_object(node))
        return;
    /* a RangeVar's fields, wrapped in {"RangeVar": ...} in a list of
     * nodes and bare in a field typed RangeVar (an UPDATE's relation) */
    json_t *rel = json_object_get(node, "relname");
    if (json_is_string(rel)) {
        add_table(s, json_string_value(json_object_get(node, "schemaname")), json_string_value(rel));
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach(node, key, v) {
        add_range_vars(s, v);
    }
}

/* An `sql` step's statements, read by Postgres's parser: the tables of
 * the plain reads, writes and table DDL it runs (a function they call is
 * taken to touch what it is given); any other statement (DO, CREATE
 * FUNCTION, a view, a type ...) may reach any table. */
static void add_statements(struct table_set *s, const char *text)
{
    static const char *const plain[] = {"SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "CreateStmt",
                                        "AlterTableStmt", "IndexStmt", "TruncateStmt", "VacuumStmt", NULL};
    if (!text)
        return;
    struct sql_script sc;
    char err[256];
    if (sql_script_parse(&sc, "sql", text, strlen(text), err, sizeof err) != 0) {
        add_table(s, NULL, MIG_FLIGHT_EVERY_TABLE);
        return;
    }
    for (size_t i = 0; i < sc.nstmts; i++) {
        const struct sql_stmt *st = &sc.stmts[i];
        int known = 0;
        for (const char *const *k = plain; *k && !known; k++)
            known = !strcmp(*k, st->kind);
        if (!known)
            add_table(s, NULL, MIG_FLIGHT_EVERY_TABLE);
        else
            add_range_vars(s, st->body);
    }
    sql_script_free(&sc);
}

/* The tables a plan's statements name, whatever their kind: the views it
 * makes read the table, a carried foreign key is an ALTER TABLE of its
 * table. A function body is a string to the parser, and adds nothing. */
static void add_plan_steps(struct table_set *s, const struct mig_steps *l)
{
    for (size_t i = 0; i < l->n && !s->failed; i++) {
        struct sql_script sc;
        char err[256];
        const char *text = l->v[i].sql;
        if (!text || sql_script_parse(&sc, "plan", text, strlen(text), err, sizeof err) != 0)
            continue; /* the statement runs as it is; the operations' own tables stand */
        for (size_t k = 0; k < sc.nstmts; k++)
            add_range_vars(s, sc.stmts[k].body);
        sql_script_free(&sc);
    }
}

int mig_adds_only(const struct migration *m)
{
    for (size_t i = 0; i < m->nops; i++) {
        enum mig_op_kind k = m->ops[i].kind;
        if (k != MIG_ADD_COLUMN && k != MIG_CREATE_INDEX && k != MIG_CREATE_TABLE)
            return 0;
    }
    return m->nops > 0;
}

static int names_table(const char *const *tables, size_t n, const char *t)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(tables[i], t))
            return 1;
    return 0;
}

const char *mig_flight_unbuildable_table(const struct mig_flight *m, const struct mig_flight *o, int on_shape,
                                         int *any)
{
    const char *t = mig_flight_shared_table(m, o);
    *any = 0;
    for (size_t i = 0; t && i < m->ntables; i++)
        *any |= every_table(m->tables[i]);
    *any |= t && every_table(t);
    if (!t || *any)
        return t;
    if (o->adds_only)
        return NULL;
    /* every table they share, each named by both */
    for (size_t i = 0; i < m->ntables; i++) {
        if (!names_table(o->tables, o->ntables, m->tables[i]))
            continue;
        if (!on_shape || !names_table(m->named, m->nnamed, m->tables[i]) ||
            !names_table(o->named, o->nnamed, m->tables[i]))
            return m->tables[i];
    }
    return NULL;
}

static void expr_columns(const struct mig_op *op, const char *expr,
                         void (*each)(const char *name, int changes, void *arg), void *arg)
{
    if (!expr)
        return;
    char **names = NULL;
    size_t n = 0;
    int star = 0;
    if (sql_fragment_columns(expr, &names, &n, &star) != SQL_FRAGMENT_OK || star)
        each("*", 0, arg);
    for (size_t i = 0; i < n; i++)
        each(op->table && !strcmp(names[i], op->table) ? "*" : names[i], 0, arg);
    sql_fragment_free_names(names, n);
}

static void names_columns(char *const *names, size_t n, void (*each)(const char *name, int changes, void *arg),
                          void *arg)
{
    for (size_t i = 0; i < n; i++)
        each(names[i], 0, arg);
}

void mig_op_columns(const struct mig_op *op, void (*each)(const char *name, int changes, void *arg), void *arg)
{
    switch (op->kind) {
    case MIG_ADD_COLUMN:
        if (op->col.name)
            each(op->col.name, 0, arg);
        expr_columns(op, op->up, each, arg);
        expr_columns(op, op->col.default_expr, each, arg);
        expr_columns(op, op->col.check, each, arg);
        return;
    case MIG_CREATE_INDEX:
        names_columns(op->columns, op->ncolumns, each, arg);
        names_columns(op->include, op->ninclude, each, arg);
        for (size_t i = 0; i < op->nkeys; i++)
            expr_columns(op, op->keys[i], each, arg);
        expr_columns(op, op->where, each, arg);
        return;
    case MIG_RENAME_COLUMN:
    case MIG_ALTER_COLUMN:
    case MIG_DROP_COLUMN: {
        const char *col = mig_op_column(op);
        if (col)
            each(col, 1, arg);
        if (op->kind == MIG_RENAME_COLUMN && op->to)
            each(op->to, 0, arg);
        expr_columns(op, op->up, each, arg);
        expr_columns(op, op->down, each, arg);
        expr_columns(op, op->check, each, arg);
        expr_columns(op, op->default_expr, each, arg);
        return;
    }
    default: each("*", 0, arg); return;
    }
}

int mig_flight_tables(const struct migration *m, const struct mig_plan *plan, char ***out, size_t *n)
{
    struct table_set s = {0};
    if (plan) {
        add_plan_steps(&s, &plan->expand);
        add_plan_steps(&s, &plan->validate);
        add_plan_steps(&s, &plan->contract);
        add_plan_steps(&s, &plan->post);
        add_plan_steps(&s, &plan->rollback);
    }
    for (size_t i = 0; i < m->nops; i++) {
        const struct mig_op *op = &m->ops[i];
        if (op->kind == MIG_RENAME_TABLE) {
            add_table(&s, op->schema, op->from);
            add_table(&s, op->schema, op->to);
            continue;
        }
        if (op->kind == MIG_SQL) {
            add_statements(&s, op->up);
            add_statements(&s, op->down);
            continue;
        }
        if (!op->table) {
            add_table(&s, NULL, MIG_FLIGHT_EVERY_TABLE);
            continue;
        }
        add_table(&s, op->schema, op->table);
        add_reference(&s, op->schema, op->ref_table);
        add_reference(&s, op->schema, op->col.references);
        for (size_t c = 0; c < op->ncols; c++)
            add_reference(&s, op->schema, op->cols[c].references);
        for (size_t c = 0; c < op->ncons; c++)
            add_reference(&s, op->schema, op->cons[c].ref_table);
    }
    if (s.failed) {
        mig_flight_tables_free(s.v, s.n);
        *out = NULL;
        *n = 0;
        return -1;
    }
    *out = s.v;
    *n = s.n;
    return 0;
}

void mig_flight_tables_free(char **tables, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(tables[i]);
    free(tables);
}

/* ---- two files of one table, read before either starts ---- */

struct names {
    char v[64][80];
    size_t n;
    int all;    /* "*": any column */
};

static void names_add(struct names *s, const char *name)
{
    if (!strcmp(name, "*")) {
        s->all = 1;
        return;
    }
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], name))
            return;
    if (s->n < sizeof s->v / sizeof s->v[0])
        snprintf(s->v[s->n++], sizeof s->v[0], "%s", name);
    else
        s->all = 1; /* more than we keep: taken for every column */
}

static int names_has(const struct names *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], name))
            return 1;
    return s->all;
}

/* The columns the migration below changes. */
static void note_below(const char *name, int changes, void *arg)
{
    if (changes)
        names_add(arg, name);
}

static void note_named(const char *name, int changes, void *arg)
{
    (void)changes;
    names_add(arg, name);
}

static int on_table(const struct mig_op *op, const char *table)
{
    char t[200];
    snprintf(t, sizeof t, "%s.%s", op->schema ? op->schema : "public", op->table ? op->table : "");
    return op->table && !strcmp(t, table);
}

const char *mig_op_column(const struct mig_op *op)
{
    switch (op->kind) {
    case MIG_RENAME_COLUMN: return op->from;
    case MIG_ALTER_COLUMN:
    case MIG_DROP_COLUMN: return op->column;
    default: return NULL;
    }
}

int mig_op_kind_on_columns(enum mig_op_kind k)
{
    return k == MIG_ADD_COLUMN || k == MIG_CREATE_INDEX || k == MIG_RENAME_COLUMN || k == MIG_ALTER_COLUMN ||
           k == MIG_DROP_COLUMN;
}

enum mig_clash mig_column_clash(const char *name, int changed_below, int below_changes)
{
    if (!strcmp(name, "*"))
        return below_changes ? MIG_CLASH_READS_ROW : MIG_CLASH_NONE;
    return changed_below ? MIG_CLASH_NAMES_CHANGED : MIG_CLASH_NONE;
}

struct above {
    const struct names *changed;    /* by the migration below */
    char hit[80];
    enum mig_clash why;
};

static void judge_above(const char *name, int changes, void *arg)
{
    (void)changes;
    struct above *a = arg;
    const struct names *b = a->changed;
    if (a->why == MIG_CLASH_NONE &&
        (a->why = mig_column_clash(name, names_has(b, name), b->n || b->all)) !=
            MIG_CLASH_NONE)
        snprintf(a->hit, sizeof a->hit, "%s", name);
}

int mig_op_retypes_in_place(const struct mig_op *op)
{
    return (op->kind == MIG_ALTER_COLUMN || op->kind == MIG_RENAME_COLUMN) && op->type && !op->up && !op->down;
}

int mig_op_renames_plainly(const struct mig_op *op)
{
    return op->kind == MIG_RENAME_COLUMN && op->from && op->to && !op->type && !op->up && !op->down && !op->copy &&
           !op->has_default;
}

/* Whether o retypes col of table into a second column (with up or down),
 * which its shape shows under the column's name. */
static int retypes_into_second(const struct migration *o, const char *table, const char *col)
{
    for (size_t i = 0; i < o->nops; i++) {
        const struct mig_op *op = &o->ops[i];
        if (on_table(op, table) && op->kind == MIG_ALTER_COLUMN && !strcmp(op->column, col) && (op->up || op->down))
            return 1;
    }
    return 0;
}

/* m's op renames plainly a column o retypes into a second column, and no
 * other operation of m names it: it acts in m's contract alone, after o's
 * (plan_on_shape.c, renames_in_contract_only). */
static int renames_retyped(const struct migration *m, const struct mig_op *op, const struct migration *o,
                           const char *table, const char *hit)
{
    return mig_op_renames_plainly(op) && !strcmp(op->from, hit) && retypes_into_second(o, table, hit) &&
           !mig_rename_named_elsewhere(m, op);
}

struct rename_names {
    const char *from, *to;
    int found;
};

static void note_rename_names(const char *name, int changes, void *arg)
{
    (void)changes;
    struct rename_names *n = arg;
    n->found |= !strcmp(name, n->from) || !strcmp(name, n->to);
}

int mig_rename_named_elsewhere(const struct migration *m, const struct mig_op *op)
{
    struct rename_names n = {op->from, op->to, 0};
    for (size_t i = 0; i < m->nops && !n.found; i++) {
        const struct mig_op *o = &m->ops[i];
        if (o != op && o->table && !strcmp(o->table, op->table) && !strcmp(o->schema, op->schema))
            mig_op_columns(o, note_rename_names, &n);
    }
    return n.found;
}

int mig_flight_columns_apart(const struct migration *m, const struct migration *o, const char *table, char *why,
                             size_t cap)
{
    for (size_t i = 0; i < o->nops; i++)
        if (on_table(&o->ops[i], table) && mig_op_retypes_in_place(&o->ops[i]))
            return snprintf(why, cap, "%s retypes column \"%s\" of %s without up or down, which its complete may do"
                            " in place, and Postgres retypes no column a view reads: %s may not be built on its"
                            " shape of %s", o->name, mig_op_column(&o->ops[i]), table, m->name, table), 1;
    struct names *b = calloc(1, sizeof *b);
    if (!b)
        return snprintf(why, cap, "out of memory"), 1;
    /* what o's other operations name: their triggers bind those */
    struct names *named = calloc(1, sizeof *named);
    if (!named) {
        free(b);
        return snprintf(why, cap, "out of memory"), 1;
    }
    for (size_t i = 0; i < o->nops; i++)
        if (on_table(&o->ops[i], table) && !mig_op_renames_plainly(&o->ops[i]))
            mig_op_columns(&o->ops[i], note_named, named);
    for (size_t i = 0; i < o->nops; i++) {
        const struct mig_op *op = &o->ops[i];
        if (!on_table(op, table))
            continue;
        if (!mig_op_kind_on_columns(op->kind))
            b->all = 1;
        mig_op_columns(op, note_below, b);
        /* the name o's shape shows: named above, a plain rename is
         * brought forward to that one's expand when no other operation of
         * o names the column; anything else is refused */
        if (op->kind == MIG_RENAME_COLUMN && op->to && (!mig_op_renames_plainly(op) || names_has(named, op->from)))
            names_add(b, op->to);
    }
    int refused = 0;
    for (size_t i = 0; i < m->nops && !refused; i++) {
        const struct mig_op *op = &m->ops[i];
        if (!on_table(op, table))
            continue;
        struct above a = {.changed = b};
        if (mig_op_kind_on_columns(op->kind))
            mig_op_columns(op, judge_above, &a);
        refused = 1;
        if (!mig_op_kind_on_columns(op->kind))
            snprintf(why, cap, "operations[%d].%s of %s changes %s otherwise than by its columns, which %s changes"
                     " too", op->index, mig_op_name(op->kind), m->name, table, o->name);
        else if (a.why == MIG_CLASH_NAMES_CHANGED && renames_retyped(m, op, o, table, a.hit))
            refused = 0;
        else if (a.why == MIG_CLASH_NAMES_CHANGED)
            snprintf(why, cap, "operations[%d].%s of %s names column \"%s\" of %s, which %s renames, retypes or"
                     " drops", op->index, mig_op_name(op->kind), m->name, a.hit, table, o->name);
        else if (a.why == MIG_CLASH_READS_ROW)
            snprintf(why, cap, "operations[%d].%s of %s reads a whole row of %s, whose shape %s changes",
                     op->index, mig_op_name(op->kind), m->name, table, o->name);
        else
            refused = 0;
    }
    free(b);
    free(named);
    return refused;
}

/* The tandem rule's triggers (migration_plan.h; doc/migrations.md "The tandem rule"):
 * BEFORE INSERT OR UPDATE, FOR EACH ROW, assigning only NEW, so they never
 * recurse. Each asks which shape wrote the row (writer_shape) and fills
 * the other shape's column from the operation's `up` or `down` when
 * direction_runs says so. The backfill's own statements are skipped by the
 * WHEN clause; the writes they cause through a foreign key's action or a
 * trigger are not. */
#include "migration_flight.h"
#include "migration_plan.h"
#include "plan_ctx.h"
#include "sql_fragment.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The columns the expressions read: names (1) when each parses and reads
 * no whole row; 0 when one does not (then every column counts as read). */
struct reads {
    char **names;
    size_t n;
    int known;
};

static void reads_of(const char *const *exprs, size_t nexprs, struct reads *r)
{
    *r = (struct reads){.known = 1};
    for (size_t e = 0; e < nexprs && r->known; e++) {
        char **names = NULL;
        size_t n = 0;
        int star = 0;
        if (!exprs[e])
            continue;
        if (sql_fragment_columns(exprs[e], &names, &n, &star) != SQL_FRAGMENT_OK || star) {
            r->known = 0;
        } else {
            char **grown = realloc(r->names, (r->n + n + 1) * sizeof *grown);
            if (grown) {
                r->names = grown;
                for (size_t i = 0; i < n; i++) {
                    r->names[r->n++] = names[i];
                    names[i] = NULL;
                }
            } else {
                r->known = 0;
            }
        }
        sql_fragment_free_names(names, n);
    }
}

static int reads_name(const struct reads *r, const char *name)
{
    for (size_t i = 0; r->known && i < r->n; i++)
        if (!strcmp(r->names[i], name))
            return 1;
    return !r->known;
}

/* Only the columns the trigger's expressions read are bound as locals:
 * the function then names no other column, so a column no expression
 * reads may be renamed under it (a rename brought forward by a migration
 * built on this one, plan_on_shape.c). */
void declare_columns(struct plan_ctx *c, struct mig_str *s, const struct mig_op *op,
                            const char *table, const char *extra, const char *extra_type,
                            const char *const *exprs, size_t nexprs)
{
    const struct mig_cat_table *t = table_of(c, op->schema, table);
    struct reads r;
    reads_of(exprs, nexprs, &r);
    for (size_t i = 0; t && i < t->ncols; i++) {
        /* not one a migration in flight below renames or drops: its
         * contract changes the name this body would read it by, and
         * nothing built on it reads it (plan_on_shape.c) */
        if (shape_changes(t, t->cols[i].name) || !reads_name(&r, t->cols[i].name))
            continue;
        mig_str_add(s, "  ");
        mig_str_ident(s, t->cols[i].name);
        mig_str_addf(s, " %s := NEW.", t->cols[i].type);
        mig_str_ident(s, t->cols[i].name);
        mig_str_add(s, ";\n");
    }
    for (size_t i = 0; i < c->nadded; i++) {
        const struct vcol *v = &c->added[i];
        if (strcmp(v->schema, op->schema) || strcmp(v->table, table) || (extra && !strcmp(v->name, extra)) ||
            !reads_name(&r, v->name))
            continue;
        mig_str_add(s, "  ");
        mig_str_ident(s, v->name);
        mig_str_addf(s, " %s := NEW.", v->type);
        mig_str_ident(s, v->name);
        mig_str_add(s, ";\n");
    }
    sql_fragment_free_names(r.names, r.n);
    if (!t && !c->cat && op->from && op->kind == MIG_RENAME_COLUMN) {
        mig_str_add(s, "  ");
        mig_str_ident(s, op->from);
        mig_str_add(s, " <type of old column> := NEW.");
        mig_str_ident(s, op->from);
        mig_str_add(s, ";\n");
    }
    if (extra) {
        mig_str_add(s, "  ");
        mig_str_ident(s, extra);
        mig_str_addf(s, " %s := NEW.", extra_type);
        mig_str_ident(s, extra);
        mig_str_add(s, ";\n");
    }
    /* The table's name for the row, as in an UPDATE: an up that names a
     * column by its table ("t"."col", a correlated subquery's) reads the row
     * written; the backfill's batches give the table the same name
     * (backfill.c). Not when a column, a local or NEW and OLD have it. */
    int taken = !strcasecmp(table, "new") || !strcasecmp(table, "old") || !strncmp(table, "pgt_", 4) ||
                (extra && !strcmp(extra, table));
    for (size_t i = 0; t && i < t->ncols && !taken; i++)
        taken = !strcmp(t->cols[i].name, table);
    for (size_t i = 0; i < c->nadded && !taken; i++)
        taken = !strcmp(c->added[i].schema, op->schema) && !strcmp(c->added[i].table, table) &&
                !strcmp(c->added[i].name, table);
    if (!taken) {
        mig_str_add(s, "  ");
        mig_str_ident(s, table);
        mig_str_add(s, " ALIAS FOR NEW;\n");
    }
}

/* CREATE FUNCTION pgtandem.fname() for a trigger, its body dollar-quoted
 * with a tag that occurs nowhere in it: the body holds the author's
 * expressions and every column name of the table, any of which may contain
 * "$pgtandem$". Takes ownership of body.
 *
 * The body declares each column of the row as a local, so an expression
 * reads them by their bare names, as it does in the offline UPDATE. In a
 * subquery of the expression a bare name its own table has too (SELECT
 * "id" FROM "spaces" WHERE ...) is that table's column in SQL, and
 * PL/pgSQL's default refuses it as ambiguous at every write
 * (rallly's migrate_events_to_spaces); use_column reads it as SQL does. */
char *trigger_function(const char *fname, char *body)
{
    if (!body)
        return NULL;
    char tag[32];
    for (int i = 0;; i++) {
        snprintf(tag, sizeof tag, i ? "$pgtandem%d$" : "$pgtandem$", i);
        if (!strstr(body, tag))
            break;
    }
    struct mig_str s = {0};
    mig_str_add(&s, "CREATE OR REPLACE FUNCTION ");
    mig_str_qname(&s, "pgtandem", fname);
    mig_str_addf(&s, "() RETURNS trigger LANGUAGE plpgsql AS %s\n#variable_conflict use_column\n%s%s", tag, body, tag);
    free(body);
    return mig_str_take(&s);
}

/* The locals every trigger of this file declares for writer_shape. */
void declare_shape(struct mig_str *s)
{
    mig_str_add(s, "  pgt_path name[];\n  pgt_schema name;\n  pgt_new_shape boolean;\n  pgt_run boolean;\n");
}

/* The tandem rule's one question: which shape wrote this row? The proxy
 * puts the writer's shape first on its search_path (the version schema for
 * the new release, the old shape's schema for everyone else, both for the
 * whole migration, switched and reverted sessions included), so the first
 * of the migration's two schemas on the search_path answers it (first of
 * the two, not first of all: with several migrations in flight on other
 * tables a session's path carries one schema of each). A session routed to neither writes
 * the base table itself (it bypasses the proxy and the views): with
 * pgtandem.version equal to the migration's name it is a new-shape writer;
 * without, what it wrote decides (bypass_insert, bypass_update: SQL
 * conditions, true when the write gave the new shape's columns and not the
 * old one's), and anything else is an old-shape write. Sets the declared
 * pgt_new_shape. */
/* Whether op's trigger on table runs twice, once for each direction: when
 * it changes a column a migration in flight below names, whose triggers
 * (fired before, by rank) may read it. A write of this migration's release
 * must reach their `down`s after this one's `down` filled the column, and
 * a write of an older release must reach this one's `up` after their
 * `up`s filled what it reads: the `down`s run newest migration first, the
 * `up`s oldest first. Each of the two triggers passes its direction
 * (TG_ARGV[0]) and the function returns at once on a writer of the other.
 * Otherwise one trigger does both, after those below. */
static int runs_twice(const struct plan_ctx *c, const struct mig_op *op, const char *table)
{
    const struct mig_cat_table *t = table_of(c, op->schema, table);
    return t && t->trigger_rank > 0 && mig_catalog_reads_column(t, mig_op_column(op));
}

void writer_shape(struct plan_ctx *c, struct mig_str *s, const struct mig_op *op, const char *table,
                  int new_view_writes_new, const char *bypass_insert, const char *bypass_update)
{
    char vname[80], oname[80];
    mig_version_schema(c->m->name, vname, sizeof vname);
    mig_old_schema(c->m->name, oname, sizeof oname);
    /* the first of this migration's two schemas on the path (with several
     * migrations in flight each one's schema is on a session's path), in
     * plain expressions: every write runs it, and a query would cost each
     * row an executor's start (about twice the insert's time) */
    mig_str_add(s, "  pgt_path := current_schemas(false);\n  pgt_schema := CASE WHEN array_position(pgt_path, ");
    mig_str_literal(s, vname);
    mig_str_add(s, "::name) < coalesce(array_position(pgt_path, ");
    mig_str_literal(s, oname);
    mig_str_add(s, "::name), 2147483647) THEN ");
    mig_str_literal(s, vname);
    mig_str_add(s, "::name WHEN ");
    mig_str_literal(s, oname);
    mig_str_add(s, "::name = ANY (pgt_path) THEN ");
    mig_str_literal(s, oname);
    mig_str_add(s, "::name END;\n  IF pgt_schema = ");
    mig_str_literal(s, vname);
    mig_str_add(s, new_view_writes_new ? " THEN\n    pgt_new_shape := true;\n  ELSIF pgt_schema = "
                                       : " THEN\n    pgt_new_shape := false;\n  ELSIF pgt_schema = ");
    mig_str_literal(s, oname);
    mig_str_add(s, " THEN\n    pgt_new_shape := false;\n  ELSIF coalesce(current_setting('" MIG_VERSION_GUC
                "', true), '') = ");
    mig_str_literal(s, c->m->name);
    mig_str_addf(s, " THEN\n    pgt_new_shape := true;\n  ELSIF TG_OP = 'INSERT' THEN\n"
                 "    pgt_new_shape := coalesce(%s, false);\n  ELSE\n    pgt_new_shape := coalesce(%s, false);\n"
                 "  END IF;\n", bypass_insert, bypass_update);
    if (runs_twice(c, op, table))
        mig_str_add(s, "  IF (TG_ARGV[0] = 'down') IS DISTINCT FROM pgt_new_shape THEN\n    RETURN NEW;\n  END IF;\n");
}

/* "NEW.col IS NOT NULL" and the like, quoted. */
char *new_is(const char *col, const char *test)
{
    struct mig_str s = {0};
    mig_str_add(&s, "NEW.");
    mig_str_ident(&s, col);
    mig_str_add(&s, test);
    return mig_str_take(&s);
}

/* A type Postgres has no equality operator for (json, xml, point, polygon,
 * the snapshots), or an array of one: IS DISTINCT FROM between two of its
 * values is an error (operator does not exist: json = json), so a change
 * is told by the values' text instead, which every type has. */
static int no_equality(const char *type)
{
    static const char *const types[] = {"json", "xml", "point", "polygon", "txid_snapshot", "pg_snapshot", NULL};
    if (!type)
        return 0;
    size_t n = strcspn(type, "[");
    for (const char *const *t = types; *t; t++)
        if (strlen(*t) == n && !strncasecmp(type, *t, n))
            return 1;
    return 0;
}

/* NEW.col and OLD.col compared ("IS DISTINCT FROM" or its negation in
 * test), as text where the type has no equality operator. */
static void add_compare(struct mig_str *s, const char *col, const char *type, const char *test)
{
    const char *cast = no_equality(type) ? "::text" : "";
    mig_str_add(s, "NEW.");
    mig_str_ident(s, col);
    mig_str_addf(s, "%s%sOLD.", cast, test);
    mig_str_ident(s, col);
    mig_str_add(s, cast);
}

/* "NEW.col IS DISTINCT FROM OLD.col" (changed) or its negation. */
static char *changed(const char *col, const char *type, int yes)
{
    struct mig_str s = {0};
    add_compare(&s, col, type, yes ? " IS DISTINCT FROM " : " IS NOT DISTINCT FROM ");
    return mig_str_take(&s);
}

static char *both(char *a, char *b)
{
    struct mig_str s = {0};
    mig_str_addf(&s, "(%s AND %s)", a ? a : "false", b ? b : "false");
    free(a);
    free(b);
    return mig_str_take(&s);
}

/* Is name a column of the table as the triggers see it (today's columns
 * and those earlier operations add)? Without a catalog every name is
 * taken for one (the offline plan only shows the SQL). */
static int is_column(const struct plan_ctx *c, const struct mig_op *op, const char *table, const char *name)
{
    return !c->cat || column_type(c, op->schema, table, name) != NULL;
}

/* Sets the declared pgt_run: does a direction whose expression is `expr`,
 * filling `target`, run on this write? On every INSERT of its shape; on an
 * UPDATE when a column the expression reads changed, or when `target` is
 * still NULL (a row the backfill has not reached). An UPDATE that changes
 * nothing the expression reads keeps what the row holds, so a round trip
 * that does not give back the same text (jsonb normalises spacing, a cast
 * rounds) does not rewrite the other release's value on every unrelated
 * write. A name of the expression equal to `renamed` reads the column `as`
 * (alter_column's `down` reads the new value by the column's name). */
void direction_runs(struct plan_ctx *c, struct mig_str *s, const struct mig_op *op, const char *table,
                           const char *indent, const char *expr, const char *target, const char *renamed,
                           const char *as)
{
    char **names = NULL;
    size_t n = 0;
    int star = 0;
    int known = sql_fragment_columns(expr, &names, &n, &star) == SQL_FRAGMENT_OK && !star;
    mig_str_addf(s, "%sIF TG_OP = 'INSERT' THEN\n%s  pgt_run := true;\n%sELSE\n%s  pgt_run := ", indent, indent,
                 indent, indent);
    if (!known) {
        mig_str_add(s, "true");
    } else {
        mig_str_add(s, "NEW.");
        mig_str_ident(s, target);
        mig_str_add(s, " IS NULL");
        for (size_t i = 0; i < n; i++) {
            const char *col = renamed && !strcmp(names[i], renamed) ? as : names[i];
            if (!is_column(c, op, table, col))
                continue;
            mig_str_add(s, "\n");
            mig_str_addf(s, "%s    OR ", indent);
            add_compare(s, col, column_type(c, op->schema, table, col), " IS DISTINCT FROM ");
        }
    }
    mig_str_addf(s, ";\n%sEND IF;\n", indent);
    sql_fragment_free_names(names, n);
}

/* The tandem rule for a column with a second column: a write from the old
 * shape sets the new column to up(row), a write from the new shape sets the
 * old column to down(row) (when direction_runs says); a direction never runs on its own
 * target's write, so nothing loops and nothing undoes the other release's
 * write. A NULL source is no exception (a fill value fills). The backfill
 * session sets pgtandem.backfill=on and the trigger's WHEN clause skips its
 * statements, not the rows their foreign keys' actions write (trigger_sql);
 * triggers only assign NEW, so they never recurse. */
char *dual_write_function(struct plan_ctx *c, const struct mig_op *op, const char *fname,
                                 const struct dual_write *d)
{
    struct mig_str s = {0};
    mig_str_add(&s, "DECLARE\n");
    const char *exprs[2] = {d->up, d->down};
    declare_columns(c, &s, op, d->table, d->new_col, d->new_type, exprs, 2);
    declare_shape(&s);
    mig_str_add(&s, "BEGIN\n");
    char *ins = both(new_is(d->new_col, " IS NOT NULL"), new_is(d->old_col, " IS NULL"));
    char *upd = both(changed(d->new_col, d->new_type, 1),
                     changed(d->old_col, column_type(c, op->schema, d->table, d->old_col), 0));
    writer_shape(c, &s, op, d->table, !d->copy_only, ins ? ins : "false", upd ? upd : "false");
    free(ins);
    free(upd);
    mig_str_add(&s, "  IF pgt_new_shape THEN\n");
    if (d->drawn) {
        mig_str_add(&s, "    IF TG_OP = 'INSERT' AND NEW.");
        mig_str_ident(&s, d->new_col);
        mig_str_add(&s, " IS NULL THEN\n      NEW.");
        mig_str_ident(&s, d->new_col);
        mig_str_addf(&s, " := (%s);\n      RETURN NEW;\n    END IF;\n", d->up);
    }
    direction_runs(c, &s, op, d->table, "    ", d->down, d->old_col, d->down_name, d->new_col);
    mig_str_add(&s, "    IF pgt_run THEN\n");
    if (d->down_name) {
        /* An inner block rebinds the column's name to the new value. */
        mig_str_add(&s, "      DECLARE ");
        mig_str_ident(&s, d->down_name);
        mig_str_addf(&s, " %s := NEW.", d->new_type);
        mig_str_ident(&s, d->new_col);
        mig_str_add(&s, "; BEGIN\n  ");
    }
    mig_str_add(&s, "      NEW.");
    mig_str_ident(&s, d->old_col);
    mig_str_addf(&s, " := (%s);\n", d->down);
    if (d->down_name)
        mig_str_add(&s, "      END;\n");
    mig_str_add(&s, "    END IF;\n  ELSE\n");
    direction_runs(c, &s, op, d->table, "    ", d->up, d->new_col, NULL, NULL);
    mig_str_add(&s, "    IF pgt_run THEN\n      NEW.");
    mig_str_ident(&s, d->new_col);
    mig_str_addf(&s, " := (%s);\n    END IF;\n  END IF;\n  RETURN NEW;\nEND\n", d->up);
    return trigger_function(fname, mig_str_take(&s));
}

static char *trigger_sql(const struct mig_op *op, const char *table, const char *tname,
                         const char *fname, const char *direction)
{
    struct mig_str s = {0};
    mig_str_add(&s, "CREATE TRIGGER ");
    mig_str_ident(&s, tname);
    mig_str_add(&s, " BEFORE INSERT OR UPDATE ON ");
    mig_str_qname(&s, op->schema, table);
    /* the backfill's own statements (depth 0) are skipped; what they set
     * off further down (a foreign key's ON DELETE SET NULL, a user's
     * trigger) writes rows like any write and gets the tandem rule */
    mig_str_add(&s, " FOR EACH ROW WHEN (current_setting('" MIG_BACKFILL_GUC
                "', true) IS DISTINCT FROM 'on' OR pg_trigger_depth() > 0) EXECUTE FUNCTION ");
    mig_str_qname(&s, "pgtandem", fname);
    if (direction)
        mig_str_addf(&s, "('%s')", direction);
    else
        mig_str_add(&s, "()");
    return mig_str_take(&s);
}

static void drop_trigger_step(struct mig_steps *l, const struct mig_op *op, const char *table, const char *tname)
{
    struct mig_str s = {0};
    mig_str_add(&s, "DROP TRIGGER IF EXISTS ");
    mig_str_ident(&s, tname);
    mig_str_add(&s, " ON ");
    mig_str_qname(&s, op->schema, table);
    mig_steps_add(l, op->index, MIG_STEP_TXN, mig_str_take(&s));
}

static void drop_trigger_steps(struct mig_steps *l, const struct mig_op *op, const char *table,
                               const char *tname, const char *down_tname, const char *fname)
{
    drop_trigger_step(l, op, table, tname);
    if (down_tname)
        drop_trigger_step(l, op, table, down_tname);
    struct mig_str f = {0};
    mig_str_add(&f, "DROP FUNCTION IF EXISTS ");
    mig_str_qname(&f, "pgtandem", fname);
    mig_str_add(&f, "()");
    mig_steps_add(l, op->index, MIG_STEP_TXN, mig_str_take(&f));
}

void trigger_names(const struct plan_ctx *c, const struct mig_op *op, char *fname, size_t n)
{
    char tag[MIG_NAME_TAG_MAX + 1];
    mig_name_tag(c->m->name, tag);
    snprintf(fname, n, "%s_%d", tag, op->index);
}

/* Installs the trigger at expand and removes it at contract and rollback. A
 * rollback of a rename_table runs before the table gets its old name back, so
 * the trigger is addressed by the name the table has during the migration. */
void install_trigger(struct plan_ctx *c, const struct mig_op *op, const char *table,
                            char *function_sql)
{
    char fname[80], tname[80], down_tname[80];
    trigger_names(c, op, fname, sizeof fname);
    /* A migration built on one in flight that has triggers on this table
     * names its own after theirs ("tga...", "tgb..." follow "tg000..."):
     * an old-shape write then runs the older migration's `up` first, and
     * this one's reads what it filled. A trigger run twice (runs_twice)
     * names its `down` before all of theirs, the newest first ("tfz..."
     * for rank 1, "tfy..." for rank 2, all before "tg..."). */
    const struct mig_cat_table *t = table_of(c, op->schema, table);
    int rank = t && t->trigger_rank > 0 && t->trigger_rank <= 26 ? t->trigger_rank : 0;
    char kind[4] = {'t', 'g', rank > 0 ? (char)('a' + rank - 1) : '\0', '\0'};
    object_name(tname, sizeof tname, kind, op, -1, c->m->name);
    int twice = rank > 0 && runs_twice(c, op, table);
    if (twice) {
        char down_kind[4] = {'t', 'f', (char)('z' - rank + 1), '\0'};
        object_name(down_tname, sizeof down_tname, down_kind, op, -1, c->m->name);
    }
    mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN, function_sql);
    if (twice)
        mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN, trigger_sql(op, table, down_tname, fname, "down"));
    mig_steps_add(&c->p->expand, op->index, MIG_STEP_TXN,
                  trigger_sql(op, table, tname, fname, twice ? "up" : NULL));
    drop_trigger_steps(&c->p->contract, op, table, tname, twice ? down_tname : NULL, fname);
    drop_trigger_steps(&c->p->rollback, op, table, tname, twice ? down_tname : NULL, fname);
}

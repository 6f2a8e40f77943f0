/* Rehearses, against the live database and always rolled back, how the
 * dependents of a column whose type changes are carried to the second column
 * (see migration_dependents.h): Postgres type-checks them on the new
 * type and prints them back over the new column. Names reach SQL as
 * parameters or through quoting; definitions come from Postgres itself. */
#include "migration_dependents.h"
#include "migration_names.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "migration_sql.h"

#define PROBE_TABLE "pg_temp.pgtandem_probe"
#define PROBE_COLUMN "pgtandem_probe"
#define LOCK_NOT_AVAILABLE "55P03"
/* as short as the contract's default lock_timeout; tried again with backoff */
#define REHEARSAL_LOCK_TIMEOUT "200ms"
#define REHEARSAL_LOCK_TRIES 8

struct rehearsal {
    PGconn *conn;
    const struct mig_op *op;
    struct mig_cat_table *t;
    const char *col, *type, *shadow;
    char *qtable;        /* quoted schema.table */
    char *err;
    size_t errlen;
};

/* Is this dependent one the rehearsal decides on (a CHECK of the table, an
 * index that is not simple and backs no constraint, a view)? Only these get
 * a carry or a refusal. */
static int dependent_rehearsed(const struct mig_cat_table *t, const struct mig_cat_dep *d)
{
    if (d->kind == MIG_DEP_VIEW)
        return 1;
    if (d->kind == MIG_DEP_CONSTRAINT)
        return d->contype == 'c' && !d->foreign;
    if (d->kind == MIG_DEP_INDEX) {
        const struct mig_cat_index *ix = mig_catalog_index(t, d->name);
        return ix && !ix->simple && !ix->constraint && !ix->primary;
    }
    return 0;
}

/* ---- talking to Postgres --------------------------------------------------- */

/* Postgres's message and its detail (which names, e.g., the other views
 * depending on a view) on one line, for a refusal. */
static void primary_message(const PGresult *r, PGconn *conn, char *out, size_t n)
{
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) : NULL;
    snprintf(out, n, "%s%s%s", msg ? msg : PQerrorMessage(conn), detail ? ": " : "", detail ? detail : "");
    for (char *p = out; *p; p++)
        if (*p == '\n')
            *p = ' ';
    size_t len = strlen(out);
    while (len > 0 && out[len - 1] == ' ')
        out[--len] = '\0';
}

/* Runs sql (no parameters, or one); returns the result, or NULL with
 * Postgres's message in why and its SQLSTATE in state. */
static PGresult *run(PGconn *conn, const char *sql, const char *oid_param, char *why, size_t n, char *state)
{
    const char *params[1] = {oid_param};
    PGresult *r = oid_param ? PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0) : PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return r;
    primary_message(r, conn, why, n);
    const char *code = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (state)
        snprintf(state, 6, "%s", code ? code : "");
    PQclear(r);
    return NULL;
}

static int run_ok(PGconn *conn, const char *sql, char *why, size_t n, char *state)
{
    PGresult *r = run(conn, sql, NULL, why, n, state);
    PQclear(r);
    return r ? 0 : -1;
}

/* The one value of a one-row query with no parameter or one (NULL on
 * error or when absent). */
static char *query_text(PGconn *conn, const char *sql, const char *param, char *why, size_t n)
{
    PGresult *r = run(conn, sql, param, why, n, NULL);
    char *out = r && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) ? strdup(PQgetvalue(r, 0, 0)) : NULL;
    PQclear(r);
    return out;
}

static void refuse(struct mig_cat_dep *d, const struct rehearsal *h, const char *pg_says, const char *advice)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "on the new type %s Postgres refuses it (%s); %s", h->type, pg_says, advice);
    free(d->refusal);
    d->refusal = strdup(buf);
}

/* ---- CHECK constraints and indexes: an empty copy of the table ------------ */

/* An index's definition from USING on: what follows "CREATE [UNIQUE] INDEX
 * name ON table " in pg_get_indexdef, which always prints that prefix with
 * quote_identifier, as format's %I does (and a temporary table's schema as
 * pg_temp). */
static const char *INDEX_TAIL_SQL =
    "SELECT substr(d, length(p) + 1) FROM pg_index i"
    "  JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid"
    "  JOIN pg_namespace n ON n.oid = c.relnamespace,"
    "  LATERAL (SELECT pg_get_indexdef(i.indexrelid) AS d,"
    "                  format('CREATE %sINDEX %I ON %s.%I ', CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END,"
    "                         ic.relname, CASE WHEN n.oid = pg_my_temp_schema() THEN 'pg_temp'"
    "                                          ELSE quote_ident(n.nspname) END, c.relname) AS p) x"
    " WHERE i.indexrelid = $1::regclass AND left(d, length(p)) = p";

static const char *PROBE_CHECK_SQL =
    "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
    " WHERE conrelid = '" PROBE_TABLE "'::regclass AND conname = 'pgtandem_probe_ck'";

static int copy_of_table(struct rehearsal *h, char *why, size_t n)
{
    struct mig_str s = {0};
    mig_str_addf(&s, "CREATE TEMPORARY TABLE pgtandem_probe (LIKE %s); ALTER TABLE " PROBE_TABLE
                 " ALTER COLUMN ", h->qtable);
    mig_str_ident(&s, h->col);
    mig_str_addf(&s, " TYPE %s USING NULL", h->type);
    char *sql = mig_str_take(&s);
    int rc = run_ok(h->conn, sql ? sql : "", why, n, NULL);
    free(sql);
    return rc;
}

static int rename_probe_column(struct rehearsal *h, char *why, size_t n)
{
    struct mig_str s = {0};
    mig_str_add(&s, "ALTER TABLE " PROBE_TABLE " RENAME COLUMN ");
    mig_str_ident(&s, h->col);
    mig_str_add(&s, " TO ");
    mig_str_ident(&s, h->shadow);
    char *sql = mig_str_take(&s);
    int rc = run_ok(h->conn, sql ? sql : "", why, n, NULL);
    free(sql);
    return rc;
}

/* Adds the constraint or index to the copy (the type check), renames the
 * column to the second column's name and reads the definition back. */
static char *carry_on_copy(struct rehearsal *h, const struct mig_cat_dep *d, char *why, size_t n)
{
    const struct mig_cat_index *ix = d->kind == MIG_DEP_INDEX ? mig_catalog_index(h->t, d->name) : NULL;
    char oid[16];
    snprintf(oid, sizeof oid, "%u", d->oid);
    char *def = query_text(h->conn, d->kind == MIG_DEP_INDEX ? INDEX_TAIL_SQL : "SELECT pg_get_constraintdef($1::oid)",
                           oid, why, n);
    if (!def) {
        if (!why[0])
            snprintf(why, n, "its definition could not be read");
        return NULL;
    }
    struct mig_str s = {0};
    if (ix)
        mig_str_addf(&s, "CREATE %sINDEX pgtandem_probe_ix ON " PROBE_TABLE " %s", ix->unique ? "UNIQUE " : "", def);
    else
        mig_str_addf(&s, "ALTER TABLE " PROBE_TABLE " ADD CONSTRAINT pgtandem_probe_ck %s", def);
    free(def);
    char *sql = mig_str_take(&s);
    char *out = NULL;
    if (run_ok(h->conn, sql ? sql : "", why, n, NULL) == 0 && rename_probe_column(h, why, n) == 0)
        out = ix ? query_text(h->conn, INDEX_TAIL_SQL, "pg_temp.pgtandem_probe_ix", why, n)
                 : query_text(h->conn, PROBE_CHECK_SQL, NULL, why, n);
    free(sql);
    return out;
}

static const char *advice_for(const struct mig_cat_dep *d)
{
    if (d->kind == MIG_DEP_INDEX)
        return "drop it (drop_index) in an earlier migration and re-create it with create_index after this "
               "one completes, or keep the column's type";
    return "drop it in an earlier migration and add it again with create_constraint after this one completes, "
           "or change its expression so that it holds for both types";
}

static int rehearse_on_copy(struct rehearsal *h)
{
    char why[512] = "", ignore[256];
    if (run_ok(h->conn, "BEGIN", why, sizeof why, NULL) != 0)
        return snprintf(h->err, h->errlen, "rehearsing operations[%d]: %s", h->op->index, why), -1;
    int have_copy = copy_of_table(h, why, sizeof why) == 0;
    for (size_t i = 0; i < h->t->ndeps; i++) {
        struct mig_cat_dep *d = &h->t->deps[i];
        if (strcmp(d->column, h->col) != 0 || d->kind == MIG_DEP_VIEW || !dependent_rehearsed(h->t, d))
            continue;
        if (!have_copy) {
            refuse(d, h, why, advice_for(d));
            continue;
        }
        char dwhy[512] = "";
        run_ok(h->conn, "SAVEPOINT pgtandem_dep", ignore, sizeof ignore, NULL);
        char *carry = carry_on_copy(h, d, dwhy, sizeof dwhy);
        run_ok(h->conn, "ROLLBACK TO SAVEPOINT pgtandem_dep", ignore, sizeof ignore, NULL);
        if (carry) {
            free(d->carry);     /* rehearsed again for a later operation on the column */
            d->carry = carry;
        } else {
            refuse(d, h, dwhy, advice_for(d));
        }
    }
    run_ok(h->conn, "ROLLBACK", ignore, sizeof ignore, NULL);
    return 0;
}

/* ---- views: their definitions, and the contract played on the real table -- */

/* The definition is printed for this session's search_path, which is the
 * one the engine's contract runs with. */
static const char *VIEW_SQL =
    "SELECT format('DROP %sVIEW %I.%I', k, n.nspname, c.relname),"
    "       format('CREATE %sVIEW %I.%I%s AS %s', k, n.nspname, c.relname,"
    "              CASE WHEN c.reloptions IS NULL THEN '' ELSE ' WITH (' || array_to_string(c.reloptions, ', ') || ')' END,"
    "              rtrim(pg_get_viewdef(c.oid), ';')),"
    "       c.relkind = 'm', c.relispopulated,"
    "       concat_ws(';' || chr(10),"
    "         format('ALTER %sVIEW %I.%I OWNER TO %I', k, n.nspname, c.relname, pg_get_userbyid(c.relowner)),"
    "         (SELECT format('COMMENT ON %sVIEW %I.%I IS %L', k, n.nspname, c.relname, ds.description)"
    "            FROM pg_description ds WHERE ds.objoid = c.oid AND ds.classoid = 'pg_class'::regclass"
    "             AND ds.objsubid = 0),"
    "         (SELECT string_agg(format('COMMENT ON COLUMN %I.%I.%I IS %L', n.nspname, c.relname, a.attname,"
    "                                   ds.description), ';' || chr(10) ORDER BY a.attnum)"
    "            FROM pg_description ds JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ds.objsubid"
    "           WHERE ds.objoid = c.oid AND ds.classoid = 'pg_class'::regclass AND ds.objsubid > 0),"
    "         (SELECT string_agg(format('GRANT %s ON %I.%I TO %s%s', x.privilege_type, n.nspname, c.relname,"
    "                                   CASE WHEN x.grantee = 0 THEN 'PUBLIC'"
    "                                        ELSE quote_ident(pg_get_userbyid(x.grantee)) END,"
    "                                   CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END),"
    "                            ';' || chr(10) ORDER BY x.o)"
    "            FROM aclexplode(c.relacl) WITH ORDINALITY x(grantor, grantee, privilege_type, is_grantable, o)"
    "           WHERE x.grantee <> c.relowner),"
    "         (SELECT string_agg(pg_get_indexdef(i.indexrelid), ';' || chr(10) ORDER BY i.indexrelid)"
    "            FROM pg_index i WHERE i.indrelid = c.oid))"
    "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,"
    "       LATERAL (SELECT CASE WHEN c.relkind = 'm' THEN 'MATERIALIZED ' ELSE '' END AS k) kk"
    " WHERE c.oid = $1::oid";

struct view_script {
    struct mig_cat_dep *d;
    char *drop, *create, *rest;
    int materialized, populated;
};

static int load_view(struct rehearsal *h, struct view_script *v, char *why, size_t n)
{
    char param[16];
    snprintf(param, sizeof param, "%u", v->d->oid);
    PGresult *r = run(h->conn, VIEW_SQL, param, why, n, NULL);
    if (!r || PQntuples(r) != 1) {
        if (r)
            snprintf(why, n, "its definition could not be read");
        PQclear(r);
        return -1;
    }
    v->drop = strdup(PQgetvalue(r, 0, 0));
    v->create = strdup(PQgetvalue(r, 0, 1));
    v->materialized = PQgetvalue(r, 0, 2)[0] == 't';
    v->populated = PQgetvalue(r, 0, 3)[0] == 't';
    v->rest = strdup(PQgetvalue(r, 0, 4));
    PQclear(r);
    return v->drop && v->create && v->rest ? 0 : -1;
}

/* The create statement followed by the rest; `data` false makes a
 * materialized view WITH NO DATA (the rehearsal needs no rows). */
static char *view_script_text(const struct view_script *v, int data)
{
    struct mig_str s = {0};
    mig_str_add(&s, v->create);
    if (v->materialized)
        mig_str_add(&s, data && v->populated ? " WITH DATA" : " WITH NO DATA");
    if (v->rest[0])
        mig_str_addf(&s, ";\n%s", v->rest);
    return mig_str_take(&s);
}

static int cmp_view(const void *a, const void *b)
{
    unsigned int x = ((const struct view_script *)a)->d->oid, y = ((const struct view_script *)b)->d->oid;
    return x < y ? -1 : x > y;
}

static char *table_statement(const struct rehearsal *h, const char *action, const char *a, const char *b,
                             const char *tail)
{
    struct mig_str s = {0};
    mig_str_addf(&s, "ALTER TABLE %s %s ", h->qtable, action);
    mig_str_ident(&s, a);
    if (b) {
        mig_str_add(&s, " TO ");
        mig_str_ident(&s, b);
    }
    mig_str_add(&s, tail);
    return mig_str_take(&s);
}

/* Plays the contract's part for the views: a column of the new type takes
 * the column's place and the views are created again over it. Returns the
 * view that failed (its refusal set), NULL when all went through; *lock is
 * set when the table's lock was not granted in time. */
static struct view_script *play_views(struct rehearsal *h, struct view_script *v, size_t nv, int *lock)
{
    char why[512] = "", state[6] = "";
    char tail[160];
    snprintf(tail, sizeof tail, " %s", h->type);
    char *add = table_statement(h, "ADD COLUMN", PROBE_COLUMN, NULL, tail);
    char *drop = table_statement(h, "DROP COLUMN", h->col, NULL, "");
    char *ren = table_statement(h, "RENAME COLUMN", PROBE_COLUMN, h->col, "");
    struct view_script *failed = NULL;
    if (run_ok(h->conn, add ? add : "", why, sizeof why, state) != 0)
        failed = &v[0];
    for (size_t i = nv; !failed && i-- > 0;)
        if (run_ok(h->conn, v[i].drop, why, sizeof why, state) != 0)
            failed = &v[i];
    if (!failed && (run_ok(h->conn, drop ? drop : "", why, sizeof why, state) != 0 ||
                    run_ok(h->conn, ren ? ren : "", why, sizeof why, state) != 0))
        failed = &v[0];
    for (size_t i = 0; !failed && i < nv; i++) {
        char *script = view_script_text(&v[i], 0);
        if (run_ok(h->conn, script ? script : "", why, sizeof why, state) != 0)
            failed = &v[i];
        free(script);
    }
    free(add);
    free(drop);
    free(ren);
    *lock = strcmp(state, LOCK_NOT_AVAILABLE) == 0;
    if (failed && *lock)
        snprintf(h->err, h->errlen, "operations[%d]: the lock of %s was not granted in time to try its views on "
                 "the new type (%s); try again when the table is less busy", h->op->index, h->qtable, why);
    else if (failed)
        refuse(failed->d, h, why, "drop it in an earlier migration and create it again after this one "
               "completes, or keep the column's type");
    return failed;
}

static void free_views(struct view_script *v, size_t nv)
{
    for (size_t i = 0; i < nv; i++) {
        free(v[i].drop);
        free(v[i].create);
        free(v[i].rest);
    }
    free(v);
}

/* Views reading those views, at any depth: dropping a view needs them gone
 * first, as an offline DROP VIEW without CASCADE does. */
static const char *VIEWS_OF_VIEWS_SQL =
    "WITH RECURSIVE v(oid) AS (SELECT unnest($1::oid[])"
    "  UNION SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN v ON d.refobjid = v.oid"
    "   WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND r.ev_class <> v.oid)"
    "SELECT c.oid, c.oid::regclass::text,"
    "       CASE c.relkind WHEN 'm' THEN 'materialized view ' ELSE 'view ' END || c.oid::regclass::text"
    "  FROM v JOIN pg_class c ON c.oid = v.oid WHERE NOT c.oid = ANY($1::oid[]) ORDER BY c.oid";

static int add_view_dep(struct mig_cat_table *t, const char *col, const PGresult *r, int row)
{
    struct mig_cat_dep *grown = realloc(t->deps, (t->ndeps + 1) * sizeof *grown);
    if (!grown)
        return -1;
    t->deps = grown;
    struct mig_cat_dep *d = &t->deps[t->ndeps++];
    memset(d, 0, sizeof *d);
    d->column = strdup(col);
    d->kind = MIG_DEP_VIEW;
    d->oid = (unsigned int)strtoul(PQgetvalue(r, row, 0), NULL, 10);
    d->name = strdup(PQgetvalue(r, row, 1));
    d->describe = strdup(PQgetvalue(r, row, 2));
    d->deptype = 'n';
    return d->column && d->name && d->describe ? 0 : -1;
}

/* Lists the views that read the column's views as dependents of the
 * column too, so that they are dropped and created again with them. */
static int add_views_of_views(struct rehearsal *h)
{
    struct mig_str s = {0};
    mig_str_add(&s, "{");
    size_t n = 0;
    for (size_t i = 0; i < h->t->ndeps; i++)
        if (!strcmp(h->t->deps[i].column, h->col) && h->t->deps[i].kind == MIG_DEP_VIEW)
            mig_str_addf(&s, "%s%u", n++ ? "," : "", h->t->deps[i].oid);
    mig_str_add(&s, "}");
    char *oids = mig_str_take(&s), why[512] = "";
    PGresult *r = oids ? run(h->conn, VIEWS_OF_VIEWS_SQL, oids, why, sizeof why, NULL) : NULL;
    free(oids);
    if (!r)
        return snprintf(h->err, h->errlen, "operations[%d]: reading the views of views: %s", h->op->index, why), -1;
    int rc = 0;
    for (int i = 0; i < PQntuples(r) && rc == 0; i++)
        rc = add_view_dep(h->t, h->col, r, i);
    PQclear(r);
    return rc == 0 ? 0 : (snprintf(h->err, h->errlen, "out of memory"), -1);
}

/* One try of the views' rehearsal, in a transaction that is rolled back.
 * *lock says the table's lock was not granted within the short timeout. */
static int rehearse_views_once(struct rehearsal *h, struct view_script *v, size_t nv, int *lock)
{
    char why[512] = "", ignore[256];
    if (run_ok(h->conn, "BEGIN; SET LOCAL lock_timeout = '" REHEARSAL_LOCK_TIMEOUT "'", why,
               sizeof why, NULL) != 0)
        return snprintf(h->err, h->errlen, "rehearsing operations[%d]: %s", h->op->index, why), -1;
    if (play_views(h, v, nv, lock) == NULL) {
        for (size_t i = 0; i < nv; i++) {
            v[i].d->carry = view_script_text(&v[i], 1);
            v[i].d->carry_drop = strdup(v[i].drop);
        }
    }
    run_ok(h->conn, "ROLLBACK", ignore, sizeof ignore, NULL);
    return *lock ? -1 : 0;
}

/* The views' definitions are read once. The rehearsal takes the table's
 * ACCESS EXCLUSIVE lock for a moment. A request for it that waits blocks
 * every later reader and writer of the table behind it, so it waits
 * briefly and tries again later, as the contract does, instead of waiting
 * long once. */
static int rehearse_views(struct rehearsal *h)
{
    if (add_views_of_views(h) != 0)
        return -1;
    struct view_script *v = calloc(h->t->ndeps + 1, sizeof *v);
    size_t nv = 0;
    char why[512] = "";
    if (!v)
        return snprintf(h->err, h->errlen, "out of memory"), -1;
    for (size_t i = 0; i < h->t->ndeps; i++)
        if (!strcmp(h->t->deps[i].column, h->col) && h->t->deps[i].kind == MIG_DEP_VIEW)
            v[nv++].d = &h->t->deps[i];
    if (nv == 0)
        return free(v), 0;
    qsort(v, nv, sizeof *v, cmp_view);
    for (size_t i = 0; i < nv; i++)
        if (load_view(h, &v[i], why, sizeof why) != 0) {
            refuse(v[i].d, h, why, "drop it in an earlier migration and create it again after this one completes");
            return free_views(v, nv), 0;
        }
    long backoff_ms = 100;
    int rc = 0;
    for (int attempt = 1;; attempt++) {
        int lock = 0;
        rc = rehearse_views_once(h, v, nv, &lock);
        if (!lock || attempt == REHEARSAL_LOCK_TRIES)
            break;
        struct timespec pause = {backoff_ms / 1000, (backoff_ms % 1000) * 1000000L};
        nanosleep(&pause, NULL);
        backoff_ms = backoff_ms * 2 > 2000 ? 2000 : backoff_ms * 2;
    }
    free_views(v, nv);
    return rc;
}

/* ---- which operations ------------------------------------------------------ */

/* Operations that move the column to a second column which takes its place
 * at contract (a rename that keeps the original needs no rehearsal, but
 * whether it does is decided by the plan; rehearsing it anyway is harmless). */
static const char *retyped_column(const struct mig_op *op)
{
    if (op->kind == MIG_ALTER_COLUMN)
        return op->column;
    if (op->kind == MIG_RENAME_COLUMN && (op->type || op->up || op->down))
        return op->from;
    return NULL;
}

static int has_rehearsed_dependents(const struct mig_cat_table *t, const char *col, int views)
{
    for (size_t i = 0; i < t->ndeps; i++)
        if (!strcmp(t->deps[i].column, col) && dependent_rehearsed(t, &t->deps[i]) &&
            (t->deps[i].kind == MIG_DEP_VIEW) == views)
            return 1;
    return 0;
}

static int rehearse_op(PGconn *conn, const struct mig_op *op, struct mig_catalog *cat, char *err, size_t errlen)
{
    const char *col = retyped_column(op);
    struct mig_cat_table *t = col ? mig_catalog_table(cat, op->schema, op->table) : NULL;
    const struct mig_cat_column *oc = t ? mig_catalog_column(t, col) : NULL;
    if (!oc)
        return 0;   /* the plan reports what is missing */
    int copies = has_rehearsed_dependents(t, col, 0), views = has_rehearsed_dependents(t, col, 1);
    if (!copies && !views)
        return 0;
    char shadow[80];
    if (op->kind == MIG_ALTER_COLUMN)
        mig_shadow_name(shadow, sizeof shadow, col);
    else
        snprintf(shadow, sizeof shadow, "%s", op->to);
    struct rehearsal h = {conn, op, t, col, op->type ? op->type : oc->type, shadow,
                          mig_quote_qname(op->schema, op->table), err, errlen};
    int rc = h.qtable ? 0 : -1;
    if (rc == 0 && copies)
        rc = rehearse_on_copy(&h);
    if (rc == 0 && views)
        rc = rehearse_views(&h);
    free(h.qtable);
    return rc;
}

int mig_dependents_rehearse(PGconn *conn, const struct migration *m, struct mig_catalog *cat,
                            char *err, size_t errlen)
{
    for (size_t i = 0; i < m->nops; i++)
        if (rehearse_op(conn, &m->ops[i], cat, err, errlen) != 0)
            return -1;
    return 0;
}

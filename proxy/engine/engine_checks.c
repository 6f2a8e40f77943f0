/* The checks of a migration against the live database before its first
 * DDL (engine_prepare): each operation's types, expressions and index keys
 * tried on empty stand-ins in transactions rolled back at once, and the
 * probes that ask Postgres what a change would cost (a default that
 * rewrites, a change of type made in the catalog alone).
 *
 * Each of those transactions first runs the migration's `sql` operations
 * that only create new objects (types, domains, extensions, functions,
 * sequences, schemas, tables; run_created_ahead): a column of a type the
 * migration creates, an index using an operator class of an extension it
 * creates, are checked as they will run, not refused because the object
 * is not there yet. */
#include "engine_checks.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "migration_plan.h"
#include "migration_sql.h"
#include "sql_script.h"

int engine_exec_simple(PGconn *conn, const char *sql, char *sqlstate, char *err, size_t errlen)
{
    PGresult *r = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
    if (!ok) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (sqlstate)
            snprintf(sqlstate, 6, "%s", state ? state : "");
        snprintf(err, errlen, "%s", PQresultErrorMessage(r));
        size_t n = strlen(err);
        while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
            err[--n] = '\0';
    }
    PQclear(r);
    return ok ? 0 : -1;
}

PGresult *engine_exec_params(PGconn *conn, const char *sql, int n, const char *const *values,
                             char *err, size_t errlen)
{
    PGresult *r = PQexecParams(conn, sql, n, NULL, values, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "%s", PQresultErrorMessage(r));
        PQclear(r);
        return NULL;
    }
    return r;
}

/* ---- what the migration creates, run ahead -------------------------------- */

/* How long a check waits for a lock a created object takes (a foreign key
 * of a created table locks the table it references): briefly, as the
 * expand's own statements do. */
#define AHEAD_LOCK_TIMEOUT "SET LOCAL lock_timeout = '2s'"

/* 1 when every statement of the `sql` operation's text creates a new
 * object no running release can be using. */
static int creates_only(const char *text)
{
    static const char *const kinds[] = {"CreateEnumStmt", "CompositeTypeStmt", "CreateDomainStmt",
        "CreateRangeStmt", "DefineStmt", "CreateExtensionStmt", "CreateFunctionStmt", "CreateSeqStmt",
        "CreateSchemaStmt", "CreateStmt", "CreateCastStmt", "CreateOpClassStmt", NULL};
    struct sql_script s;
    char err[256];
    int ok = text && sql_script_parse(&s, "sql", text, strlen(text), err, sizeof err) == 0 && s.nstmts > 0;
    for (size_t i = 0; ok && i < s.nstmts; i++) {
        const char *const *k = kinds;
        while (*k && strcmp(*k, s.stmts[i].kind) != 0)
            k++;
        ok = *k != NULL;
    }
    if (text)
        sql_script_free(&s);
    return ok;
}

static int creates_a_table_before(const struct migration *m, const struct mig_op *op)
{
    for (size_t i = 0; i < m->nops && m->ops[i].index < op->index; i++)
        if (m->ops[i].kind == MIG_CREATE_TABLE)
            return 1;
    return 0;
}

/* Inside the transaction just begun: the migration's creating `sql`
 * operations (those run at expand), in order. A failure is the expand's
 * own, found before it starts; except a relation missing when a
 * create_table runs before the statement (a sequence OWNED BY the new
 * table's column): the checks run without the tables the migration
 * creates, so that statement is left to the expand. */
static int run_created_ahead(PGconn *conn, const struct migration *m, char *err, size_t errlen)
{
    char e2[768], state[6];
    if (engine_exec_simple(conn, AHEAD_LOCK_TIMEOUT, NULL, e2, sizeof e2) != 0)
        return snprintf(err, errlen, "%s", e2), -1;
    for (size_t i = 0; i < m->nops; i++) {
        const struct mig_op *op = &m->ops[i];
        if (op->kind != MIG_SQL || op->on != MIG_ON_START || !creates_only(op->up))
            continue;
        int later = creates_a_table_before(m, op);
        if (later && engine_exec_simple(conn, "SAVEPOINT pgtandem_ahead", NULL, e2, sizeof e2) != 0)
            return snprintf(err, errlen, "%s", e2), -1;
        if (engine_exec_simple(conn, op->up, state, e2, sizeof e2) == 0)
            continue;
        if (!later || strcmp(state, "42P01") != 0)
            return snprintf(err, errlen, "%s: operations[%d].sql: %s", m->file, op->index, e2), -1;
        if (engine_exec_simple(conn, "ROLLBACK TO SAVEPOINT pgtandem_ahead", NULL, e2, sizeof e2) != 0)
            return snprintf(err, errlen, "%s", e2), -1;
    }
    return 0;
}

/* BEGIN, then what the migration creates: every check's transaction,
 * rolled back by its caller. */
static int begin_checks(PGconn *conn, const struct migration *m, char *err, size_t errlen)
{
    if (engine_exec_simple(conn, "BEGIN", NULL, err, errlen) != 0)
        return -1;
    if (run_created_ahead(conn, m, err, errlen) == 0)
        return 0;
    char ignored[256];
    engine_exec_simple(conn, "ROLLBACK", NULL, ignored, sizeof ignored);
    return -1;
}

/* ---- the checks ------------------------------------------------------------ */

/* Postgres's message without its CONTEXT and HINT lines (a type's lookup
 * adds "unnamed portal parameter $1 = '...'", which says nothing). */
static const char *first_line(char *msg)
{
    msg[strcspn(msg, "\n")] = '\0';
    return msg;
}

/* type is SQL as written (quoted or not): printed as it is. */
static int check_type_exists(PGconn *conn, const struct migration *m, const struct mig_op *op,
                             const char *type, char *err, size_t errlen)
{
    static const char *const serials[] = {"serial", "bigserial", "smallserial", "serial2", "serial4", "serial8"};
    if (!type)
        return 0;
    for (size_t i = 0; i < sizeof serials / sizeof serials[0]; i++)
        if (strcasecmp(type, serials[i]) == 0)
            return 0;
    const char *v[1] = {type};
    char e2[512];
    PGresult *r = engine_exec_params(conn, "SELECT $1::regtype", 1, v, e2, sizeof e2);
    if (!r)
        return snprintf(err, errlen, "%s: operations[%d].%s: type %s is unknown: %s", m->file,
                        op->index, mig_op_name(op->kind), type, first_line(e2)), -1;
    PQclear(r);
    return 0;
}

static int listed(char **names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return 1;
    return 0;
}

/* "NULL::type AS name", once per name. */
static void null_column(struct mig_str *s, char **names, size_t *n, const char *name, const char *type)
{
    if (!name || !type || listed(names, *n, name) || *n >= 256)
        return;
    names[(*n)++] = (char *)name;
    mig_str_addf(s, ", NULL::%s AS ", type);
    mig_str_ident(s, name);
}

/* Whether an add_column before op takes name on op's table after a rename
 * frees it (RENAME COLUMN status TO slug; ADD COLUMN status text): from
 * there on the name is the added column's, of its type, as offline. */
static int name_taken_again(const struct migration *m, const struct mig_op *op, const char *name)
{
    for (int i = 0; i < op->index && (size_t)i < m->nops; i++) {
        const struct mig_op *o = &m->ops[i];
        if (o->kind == MIG_ADD_COLUMN && o->col.name && !strcmp(o->col.name, name) &&
            !strcmp(o->schema, op->schema) && !strcmp(o->table, op->table) && mig_add_column_freed_by(m, o))
            return 1;
    }
    return 0;
}

/* The select list of the table as the migration's expressions see it once
 * expand has run: today's columns, every column an operation of the
 * migration adds to it (so that the `up` of a merge and the `down` of a
 * split may read each other's columns; one added under a name a rename
 * before op frees in place of the renamed one), and, for alter_column's
 * `down` and `check` (written for the new shape), `retyped` with its new
 * type. */
static void shape_after_expand(struct mig_str *s, const struct migration *m, const struct mig_op *op,
                               const struct mig_cat_table *t, const char *retyped, const char *new_type)
{
    if (!t || t->ncols == 0) {
        mig_str_add(s, "*");
        return;
    }
    char *names[256];
    size_t n = 0;
    int first = 1;
    for (size_t i = 0; i < t->ncols && n < 256; i++) {
        if (name_taken_again(m, op, t->cols[i].name))
            continue;   /* the added column's, below */
        names[n++] = t->cols[i].name;
        if (!first)
            mig_str_add(s, ", ");
        first = 0;
        const char *now = mig_catalog_forward_from(t, t->cols[i].name); /* renamed by the expand */
        if (retyped && strcmp(t->cols[i].name, retyped) == 0) {
            mig_str_addf(s, "NULL::%s AS ", new_type);
            mig_str_ident(s, retyped);
        } else if (now) {
            mig_str_ident(s, now);
            mig_str_add(s, " AS ");
            mig_str_ident(s, t->cols[i].name);
        } else {
            mig_str_ident(s, t->cols[i].name);
        }
    }
    if (first)
        mig_str_add(s, "NULL AS pgtandem_no_column");  /* the columns below each start with a comma */
    for (size_t i = 0; i < m->nops; i++) {
        const struct mig_op *o = &m->ops[i];
        if (!o->table || strcmp(o->schema, op->schema) || strcmp(o->table, op->table))
            continue;
        if (o->kind == MIG_ADD_COLUMN)
            null_column(s, names, &n, o->col.name, o->col.type);
        else if (o->kind == MIG_RENAME_COLUMN) {
            const struct mig_cat_column *from = mig_catalog_column(t, o->from);
            null_column(s, names, &n, o->to, o->type ? o->type : from ? from->type : NULL);
        }
    }
}

/* A check or probe failed only because it names a value the migration's
 * add_enum_value adds (22P02, invalid input value for enum T: "v"): expand
 * adds it before anything else, and a value added in a transaction cannot
 * be used in it, so such an expression cannot be tried before; expand and
 * the backfill run it once the value is there. */
static int waits_for_enum_value(const struct migration *m, const char *sqlstate, const char *message)
{
    if (!sqlstate || strcmp(sqlstate, "22P02") != 0 || !message)
        return 0;
    for (size_t i = 0; i < m->nops; i++) {
        const struct mig_op *o = &m->ops[i];
        char quoted[80];
        if (o->kind != MIG_ADD_ENUM_VALUE || (size_t)snprintf(quoted, sizeof quoted, "\"%s\"", o->value) >= sizeof quoted)
            continue;
        if (strstr(message, quoted) && strstr(message, o->name))
            return 1;
    }
    return 0;
}

/* Likewise an expression that reads a table the migration creates or
 * renames to its name before op (42P01, relation "t" does not exist: a
 * fill from a table the file makes, as drizzle-kit writes one, or renames,
 * which takes its new name at expand): that table is there when expand
 * and the backfill run it, not before. */
static int waits_for_table_of_expand(const struct migration *m, const struct mig_op *op, const char *sqlstate,
                               const char *message)
{
    if (!sqlstate || strcmp(sqlstate, "42P01") != 0 || !message)
        return 0;
    for (size_t i = 0; i < m->nops && (int)i < op->index; i++) {
        const struct mig_op *o = &m->ops[i];
        char bare[160], qualified[224];
        const char *made = o->kind == MIG_CREATE_TABLE ? o->table : o->kind == MIG_RENAME_TABLE ? o->to : NULL;
        if (!made ||
            (size_t)snprintf(bare, sizeof bare, "relation \"%s\" does not exist", made) >= sizeof bare ||
            (size_t)snprintf(qualified, sizeof qualified, "relation \"%s.%s\" does not exist", o->schema,
                             made) >= sizeof qualified)
            continue;
        if (strstr(message, bare) || strstr(message, qualified))
            return 1;
    }
    return 0;
}

/* Evaluates an author's expression against the table with zero rows inside a
 * read-only transaction, so type errors and unknown columns are reported
 * before anything changes. The table is seen as it is after expand (see
 * shape_after_expand). PQexecParams refuses multiple statements. */
static int check_expression(PGconn *conn, const struct migration *m, const struct mig_op *op,
                            const char *key, const char *expr, const char *table,
                            const struct mig_cat_table *t, const char *retyped, const char *new_type,
                            char *err, size_t errlen)
{
    if (!expr || !table)
        return 0;
    struct mig_str s = {0};
    mig_str_addf(&s, "SELECT (%s) FROM (SELECT ", expr);
    shape_after_expand(&s, m, op, t, retyped, new_type);
    mig_str_add(&s, " FROM ");
    mig_str_qname(&s, op->schema, table);
    mig_str_add(&s, ") AS ");
    mig_str_ident(&s, table);
    mig_str_add(&s, " LIMIT 0");
    char *sql = mig_str_take(&s);
    engine_exec_simple(conn, "SAVEPOINT pgtandem_check", NULL, err, errlen);
    PGresult *r = PQexecParams(conn, sql ? sql : "", 0, NULL, NULL, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK ||
             waits_for_enum_value(m, PQresultErrorField(r, PG_DIAG_SQLSTATE), PQresultErrorMessage(r)) ||
             waits_for_table_of_expand(m, op, PQresultErrorField(r, PG_DIAG_SQLSTATE), PQresultErrorMessage(r));
    if (!ok) {
        snprintf(err, errlen, "%s: operations[%d].%s: \"%s\" expression \"%s\" does not work on table "
                 "\"%s\": %s", m->file, op->index, mig_op_name(op->kind), key, expr, table,
                 PQresultErrorMessage(r));
        size_t n = strlen(err);
        while (n > 0 && err[n - 1] == '\n')
            err[--n] = '\0';
    }
    PQclear(r);
    free(sql);
    char e2[256];
    engine_exec_simple(conn, "ROLLBACK TO SAVEPOINT pgtandem_check", NULL, e2, sizeof e2);
    return ok ? 0 : -1;
}

static const char *table_for_checks(const struct migration *m, const struct mig_op *op)
{
    /* Tables created or renamed by this migration do not exist yet. */
    for (size_t i = 0; i < m->nops && (int)i < op->index; i++) {
        const struct mig_op *o = &m->ops[i];
        if ((o->kind == MIG_CREATE_TABLE && !strcmp(o->table, op->table)) ||
            (o->kind == MIG_RENAME_TABLE && !strcmp(o->to, op->table)))
            return NULL;
    }
    return op->table;
}

/* Columns of the table this migration adds or renames before op do not
 * exist yet, so an empty copy of today's columns cannot stand in for it. */
static int earlier_op_reshapes(const struct migration *m, const struct mig_op *op)
{
    for (size_t i = 0; i < m->nops && (int)i < op->index; i++) {
        const struct mig_op *o = &m->ops[i];
        if (o->table && !strcmp(o->schema, op->schema) && !strcmp(o->table, op->table) &&
            (o->kind == MIG_ADD_COLUMN || o->kind == MIG_RENAME_COLUMN || o->kind == MIG_ALTER_COLUMN))
            return 1;
    }
    return 0;
}

/* An index with keys written as SQL, INCLUDE columns or storage parameters
 * is built once on an empty temporary copy of the table's columns, in a
 * transaction rolled back at once (a temporary table needs a read-write
 * one): an unknown function, operator class, column or parameter stops the
 * migration before its first DDL. */
static int check_index_probe(PGconn *conn, const struct migration *m, const struct mig_op *op,
                             char *err, size_t errlen)
{
    const char *table = op->kind == MIG_CREATE_INDEX ? table_for_checks(m, op) : NULL;
    if (!table || (!op->nkeys && !op->ninclude && !op->storage_parameters) || earlier_op_reshapes(m, op))
        return 0;
    struct mig_str s = {0};
    mig_str_add(&s, "CREATE TEMPORARY TABLE pgtandem_index_probe (LIKE ");
    mig_str_qname(&s, op->schema, table);
    mig_str_add(&s, ")");
    char *like = mig_str_take(&s);
    char *create = mig_index_sql_keys(op, "pg_temp", "pgtandem_index_probe", op->columns, 0);
    char e2[256];
    if (like && create && begin_checks(conn, m, err, errlen) != 0) {
        free(like);
        free(create);
        return -1;
    }
    int ok = like && create;
    ok = ok && engine_exec_simple(conn, like, NULL, err, errlen) == 0 && engine_exec_simple(conn, create, NULL, err, errlen) == 0;
    engine_exec_simple(conn, "ROLLBACK", NULL, e2, sizeof e2);
    if (!ok) {
        char why[1024];
        snprintf(why, sizeof why, "%s", like && create ? err : "out of memory");
        snprintf(err, errlen, "%s: operations[%d].create_index: index \"%s\" cannot be built on table \"%s\": %s",
                 m->file, op->index, op->name, table, why);
    }
    free(like);
    free(create);
    return ok ? 0 : -1;
}

/* Rows a new CHECK refuses already: Postgres refuses the constraint on
 * them offline too, and online it would only find them when the
 * constraint is validated after the backfill, with the expand done. Read
 * before the first DDL, on tables small enough to scan twice (a bigger one
 * is left to that validation, which then fails and rolls back), unless an
 * operation above may change those rows first. A row
 * violates a CHECK when the expression is false, not when it is null. */
#define CHECK_SCAN_MAX_ROWS 1000000.0

/* An operation before op that may write the rows of op's table before the
 * check meets them: a batched update or delete of it, or a statement run
 * as written at expand (the converter's data statements, whose tables
 * this file does not read). */
static int earlier_op_writes_rows(const struct migration *m, const struct mig_op *op)
{
    for (size_t i = 0; i < m->nops && (int)i < op->index; i++) {
        const struct mig_op *o = &m->ops[i];
        if ((o->kind == MIG_SQL && o->on != MIG_ON_COMPLETE) ||
            ((o->kind == MIG_UPDATE_ROWS || o->kind == MIG_DELETE_ROWS) && o->table && !strcmp(o->schema, op->schema) &&
             !strcmp(o->table, op->table)))
            return 1;
    }
    return 0;
}

static int check_rows_fit(PGconn *conn, const struct migration *m, const struct mig_op *op, const char *table,
                          const struct mig_cat_table *t, char *err, size_t errlen)
{
    if (!op->check || !table || !t || t->est_rows > CHECK_SCAN_MAX_ROWS || earlier_op_reshapes(m, op) ||
        earlier_op_writes_rows(m, op))
        return 0;
    struct mig_str s = {0};
    mig_str_add(&s, "SELECT count(*), (array_agg(");
    if (t->npk) {
        mig_str_add(&s, "concat_ws(', '");
        for (size_t i = 0; i < t->npk; i++) {
            mig_str_add(&s, ", ");
            mig_str_ident(&s, t->pk[i]);
            mig_str_add(&s, "::text");
        }
        mig_str_add(&s, ") ORDER BY ");
        for (size_t i = 0; i < t->npk; i++) {
            mig_str_add(&s, i ? ", " : "");
            mig_str_ident(&s, t->pk[i]);
        }
    } else {
        mig_str_add(&s, "ctid::text ORDER BY ctid");
    }
    mig_str_add(&s, "))[1] FROM ");
    mig_str_qname(&s, op->schema, table);
    mig_str_addf(&s, " WHERE (%s) IS FALSE", op->check);
    char *sql = mig_str_take(&s);
    engine_exec_simple(conn, "SAVEPOINT pgtandem_check", NULL, err, errlen);
    PGresult *r = PQexecParams(conn, sql ? sql : "", 0, NULL, NULL, NULL, NULL, 0);
    int bad = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : 0;
    if (bad > 0)
        snprintf(err, errlen, "%s: operations[%d].create_constraint: %d row(s) of \"%s\" already violate check "
                 "\"%s\" (%s), the first with key (%s); Postgres refuses the constraint on them offline too. Fix "
                 "those rows (or the check), then start again", m->file, op->index, bad, table,
                 op->name ? op->name : "", op->check, PQgetvalue(r, 0, 1));
    PQclear(r);
    free(sql);
    char e2[256];
    engine_exec_simple(conn, "ROLLBACK TO SAVEPOINT pgtandem_check", NULL, e2, sizeof e2);
    return bad > 0 ? -1 : 0;
}

static int check_op_live(PGconn *conn, const struct migration *m, const struct mig_catalog *cat,
                         const struct mig_op *op, char *err, size_t errlen)
{
    if (check_type_exists(conn, m, op, op->type, err, errlen) ||
        check_type_exists(conn, m, op, op->col.type, err, errlen))
        return -1;
    for (size_t i = 0; i < op->ncols; i++)
        if (check_type_exists(conn, m, op, op->cols[i].type, err, errlen))
            return -1;
    const char *table = op->table ? table_for_checks(m, op) : NULL;
    struct mig_cat_column *oc = NULL;
    if (table && (op->from || op->column))
        oc = mig_catalog_column(mig_catalog_table(cat, op->schema, table), op->from ? op->from : op->column);
    const char *new_type = op->type ? op->type : (oc ? oc->type : "text");
    const struct mig_cat_table *t = table ? mig_catalog_table(cat, op->schema, table) : NULL;
    const char *retyped = t && oc && op->kind == MIG_ALTER_COLUMN ? op->column : NULL;
    switch (op->kind) {
    case MIG_RENAME_COLUMN:
        return check_expression(conn, m, op, "up", op->up, table, t, NULL, NULL, err, errlen) ||
               check_expression(conn, m, op, "down", op->down, table, t, NULL, NULL, err, errlen);
    case MIG_ALTER_COLUMN:
        return check_expression(conn, m, op, "up", op->up, table, t, NULL, NULL, err, errlen) ||
               check_expression(conn, m, op, "down", op->down, table, t, retyped, new_type, err, errlen) ||
               check_expression(conn, m, op, "check", op->check, table, t, retyped, new_type, err, errlen);
    case MIG_ADD_COLUMN:
        return check_expression(conn, m, op, "up", op->up, table, t, NULL, NULL, err, errlen) ||
               check_expression(conn, m, op, "check", op->col.check, table, t, NULL, NULL, err, errlen);
    case MIG_DROP_COLUMN:
        return check_expression(conn, m, op, "down", op->down, table, t, NULL, NULL, err, errlen);
    case MIG_CREATE_INDEX:
        return check_expression(conn, m, op, "where", op->where, table, t, NULL, NULL, err, errlen);
    case MIG_CREATE_CONSTRAINT:
        return check_expression(conn, m, op, "check", op->check, table, t, NULL, NULL, err, errlen) ||
               check_rows_fit(conn, m, op, table, t, err, errlen);
    case MIG_UPDATE_ROWS:
        return check_expression(conn, m, op, "up", op->up, table, t, NULL, NULL, err, errlen) ||
               check_expression(conn, m, op, "where", op->where, table, t, NULL, NULL, err, errlen);
    case MIG_DELETE_ROWS:
        return check_expression(conn, m, op, "where", op->where, table, t, NULL, NULL, err, errlen);
    default:
        return 0;
    }
}

/* The column whose type the operation changes and keeps the default of
 * (no "default" given), or NULL. */
static const struct mig_cat_column *retyped_with_default(const struct migration *m, const struct mig_catalog *cat,
                                                         const struct mig_op *op)
{
    if ((op->kind != MIG_RENAME_COLUMN && op->kind != MIG_ALTER_COLUMN) || !op->type || op->has_default)
        return NULL;
    const char *table = table_for_checks(m, op);
    const char *col = op->kind == MIG_RENAME_COLUMN ? op->from : op->column;
    const struct mig_cat_column *oc = table ? mig_catalog_column(mig_catalog_table(cat, op->schema, table), col)
                                            : NULL;
    if (!oc || !oc->default_expr || strcmp(oc->type, op->type) == 0)
        return NULL;
    return oc;
}

/* A change of type keeps the column's default only when Postgres can assign
 * it to the new type, as an offline ALTER COLUMN ... TYPE requires. The
 * probe is a temporary table in a transaction that is always rolled back
 * (a read-only transaction may not create one), so nothing is left. */
static int check_default_fits(PGconn *conn, const struct migration *m, const struct mig_op *op,
                              const struct mig_cat_column *oc, char *err, size_t errlen)
{
    char e2[512];
    if (begin_checks(conn, m, err, errlen) != 0)
        return -1;
    struct mig_str s = {0};
    mig_str_addf(&s, "CREATE TEMPORARY TABLE pgtandem_default_probe (v %s DEFAULT %s)", op->type, oc->default_expr);
    char *sql = mig_str_take(&s);
    int rc = engine_exec_simple(conn, sql ? sql : "", NULL, e2, sizeof e2);
    free(sql);
    char e3[256];
    engine_exec_simple(conn, "ROLLBACK", NULL, e3, sizeof e3);
    if (rc == 0)
        return 0;
    const char *col = op->kind == MIG_RENAME_COLUMN ? op->from : op->column;
    snprintf(err, errlen, "%s: operations[%d].%s: the default of column \"%s\" of \"%s.%s\" (%s) cannot be the "
             "default of a %s column (%s); set \"default\" in the operation to the new column's default "
             "(null for none)", m->file, op->index, mig_op_name(op->kind), col, op->schema, op->table,
             oc->default_expr, op->type, e2);
    return -1;
}

int engine_check_live(PGconn *conn, const struct migration *m, const struct mig_catalog *cat,
                      char *err, size_t errlen)
{
    char e2[256];
    if (begin_checks(conn, m, err, errlen) != 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < m->nops && rc == 0; i++)
        rc = check_op_live(conn, m, cat, &m->ops[i], err, errlen);
    engine_exec_simple(conn, "ROLLBACK", NULL, e2, sizeof e2);
    for (size_t i = 0; i < m->nops && rc == 0; i++) {
        const struct mig_cat_column *oc = retyped_with_default(m, cat, &m->ops[i]);
        if (oc)
            rc = check_default_fits(conn, m, &m->ops[i], oc, err, errlen);
        if (rc == 0)
            rc = check_index_probe(conn, m, &m->ops[i], err, errlen);
    }
    return rc;
}

/* Whether Postgres would rewrite the table to add a column with this
 * default (a volatile default such as gen_random_uuid() or
 * clock_timestamp(), a domain with constraints ...) is Postgres's own
 * decision, so Postgres is asked: the column is added to a one-row
 * temporary table, in a transaction rolled back at once, and a rewrite
 * shows as a new relfilenode. A default that does not fit the type is
 * refused here, before any DDL. */
static int probe_default(PGconn *conn, const struct migration *m, const struct mig_op *op, int *rewrites,
                         char *err, size_t errlen)
{
    static const char *const setup[] = {
        "CREATE TEMPORARY TABLE pgtandem_default_probe (pgtandem_row int)",
        "INSERT INTO pg_temp.pgtandem_default_probe VALUES (1)",
    };
    static const char *const filenode = "SELECT pg_relation_filenode('pg_temp.pgtandem_default_probe')";
    char e2[512] = "", e3[256];
    if (begin_checks(conn, m, err, errlen) != 0)
        return -1;
    int ok = 1;
    for (size_t i = 0; ok && i < sizeof setup / sizeof setup[0]; i++)
        ok = engine_exec_simple(conn, setup[i], NULL, e2, sizeof e2) == 0;
    char *before = NULL, *after = NULL;
    PGresult *r = ok ? engine_exec_params(conn, filenode, 0, NULL, e2, sizeof e2) : NULL;
    if (r) {
        before = strdup(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    struct mig_str s = {0};
    mig_str_addf(&s, "ALTER TABLE pg_temp.pgtandem_default_probe ADD COLUMN v %s DEFAULT (%s)", op->col.type,
                 op->col.default_expr);
    char *sql = mig_str_take(&s);
    char state[6] = "";
    int added = before && sql && engine_exec_simple(conn, sql, state, e2, sizeof e2) == 0;
    int unknown = !added && waits_for_enum_value(m, state, e2);
    r = added ? engine_exec_params(conn, filenode, 0, NULL, e2, sizeof e2) : NULL;
    if (r) {
        after = strdup(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    engine_exec_simple(conn, "ROLLBACK", NULL, e3, sizeof e3);
    free(sql);
    int rc = 0;
    if (unknown) {
        *rewrites = 1;  /* not known until the value exists: added without it, set, backfilled */
    } else if (!added) {
        snprintf(err, errlen, "%s: operations[%d].add_column: the default (%s) of column \"%s\" cannot be the "
                 "default of a %s column: %s", m->file, op->index, op->col.default_expr, op->col.name,
                 op->col.type, e2[0] ? e2 : "out of memory");
        rc = -1;
    } else if (!after) {
        snprintf(err, errlen, "%s", e2[0] ? e2 : "out of memory");
        rc = -1;
    } else {
        *rewrites = strcmp(before, after) != 0;
    }
    free(before);
    free(after);
    return rc;
}

static int probe_defaults(PGconn *conn, const struct migration *m, struct mig_catalog *cat, char *err,
                          size_t errlen)
{
    cat->default_rewrites = calloc(m->nops ? m->nops : 1, 1);
    if (!cat->default_rewrites)
        return snprintf(err, errlen, "out of memory"), -1;
    cat->ndefault_rewrites = m->nops;
    for (size_t i = 0; i < m->nops; i++) {
        const struct mig_op *op = &m->ops[i];
        if (op->kind != MIG_ADD_COLUMN || !op->col.default_expr || op->up)
            continue;
        int rewrites = 0;
        if (probe_default(conn, m, op, &rewrites, err, errlen) != 0)
            return -1;
        cat->default_rewrites[i] = (unsigned char)rewrites;
    }
    return 0;
}

/* The table's and its index's files, "table/index", to tell a rewrite. */
static char *probe_filenodes(PGconn *conn, char *err, size_t errlen)
{
    PGresult *r = engine_exec_params(conn, "SELECT pg_relation_filenode('pg_temp.pgtandem_retype_probe')::text || '/' || "
                              "pg_relation_filenode('pg_temp.pgtandem_retype_probe_ix')::text", 0, NULL, err, errlen);
    char *v = r ? strdup(PQgetvalue(r, 0, 0)) : NULL;
    PQclear(r);
    return v;
}

/* Does changing a column from `from` to `to` (no USING) rewrite nothing?
 * Postgres decides (a binary-coercible cast, a longer varchar, a wider
 * numeric ...), so Postgres is asked, on a one-row temporary table with an
 * index on the column, in a transaction rolled back at once: the change
 * is made in the catalog alone when neither file changed. Anything that
 * fails (no cast without USING, no btree for the type) answers no. */
static int probe_retype(PGconn *conn, const struct migration *m, const char *from, const char *to)
{
    char e2[512], e3[256];
    struct mig_str s = {0};
    mig_str_addf(&s, "CREATE TEMPORARY TABLE pgtandem_retype_probe (v %s)", from);
    char *create = mig_str_take(&s);
    mig_str_addf(&s, "ALTER TABLE pg_temp.pgtandem_retype_probe ALTER COLUMN v TYPE %s", to);
    char *alter = mig_str_take(&s);
    int ok = create && alter && begin_checks(conn, m, e2, sizeof e2) == 0;
    ok = ok && engine_exec_simple(conn, create, NULL, e2, sizeof e2) == 0;
    ok = ok && engine_exec_simple(conn, "INSERT INTO pg_temp.pgtandem_retype_probe VALUES (NULL)", NULL, e2, sizeof e2) == 0;
    ok = ok && engine_exec_simple(conn, "CREATE INDEX pgtandem_retype_probe_ix ON pg_temp.pgtandem_retype_probe (v)", NULL,
                           e2, sizeof e2) == 0;
    char *before = ok ? probe_filenodes(conn, e2, sizeof e2) : NULL;
    char *after = before && engine_exec_simple(conn, alter, NULL, e2, sizeof e2) == 0 ? probe_filenodes(conn, e2, sizeof e2)
                                                                              : NULL;
    int in_place = before && after && strcmp(before, after) == 0;
    engine_exec_simple(conn, "ROLLBACK", NULL, e3, sizeof e3);
    free(before);
    free(after);
    free(create);
    free(alter);
    return in_place;
}

/* An operation that changes a column's type and gives no up or down: the
 * column it retypes and its type today, or NULL. */
static const struct mig_cat_column *retyped_as_is(const struct migration *m, const struct mig_catalog *cat,
                                                  const struct mig_op *op)
{
    if ((op->kind != MIG_ALTER_COLUMN && op->kind != MIG_RENAME_COLUMN) || !op->type || op->up || op->down)
        return NULL;
    const char *table = table_for_checks(m, op);
    const char *col = op->kind == MIG_RENAME_COLUMN ? op->from : op->column;
    const struct mig_cat_column *oc = table ? mig_catalog_column(mig_catalog_table(cat, op->schema, table), col)
                                            : NULL;
    return oc && strcmp(oc->type, op->type) != 0 ? oc : NULL;
}

static int probe_retypes(PGconn *conn, const struct migration *m, struct mig_catalog *cat, char *err, size_t errlen)
{
    cat->retype_in_place = calloc(m->nops ? m->nops : 1, 1);
    if (!cat->retype_in_place)
        return snprintf(err, errlen, "out of memory"), -1;
    cat->nretype_in_place = m->nops;
    for (size_t i = 0; i < m->nops; i++) {
        const struct mig_cat_column *oc = retyped_as_is(m, cat, &m->ops[i]);
        if (oc)
            cat->retype_in_place[i] = (unsigned char)probe_retype(conn, m, oc->type, m->ops[i].type);
    }
    return 0;
}

int engine_probe(PGconn *conn, const struct migration *m, struct mig_catalog *cat, char *err, size_t errlen)
{
    if (probe_defaults(conn, m, cat, err, errlen) != 0)
        return -1;
    return probe_retypes(conn, m, cat, err, errlen);
}

/* DO blocks that guard DDL, read before they run. Teams (and drizzle-kit)
 * wrap statements in DO blocks so that a file runs on a database that may
 * already have what it creates:
 *
 *   IF [NOT] EXISTS (SELECT ... FROM pg_catalog / information_schema) THEN
 *       statements [ELSIF ... THEN statements] [ELSE statements] END IF;
 *   BEGIN statements EXCEPTION WHEN duplicate_object THEN NULL; END;
 *
 * What such a block does depends on the catalog alone, which is there to
 * read before anything runs: each condition is evaluated on the live
 * database (read-only, through the caller's sqlc_catalog_bool_fn), each
 * guarded object looked up, and the block replaced in the file's text by
 * the statements Postgres would run, each at its own line, so that the
 * rest of the converter sees them as statements of the file (and its
 * messages point at them). Anything else in a DO block (a loop, EXECUTE of
 * a built string, variables, RAISE, a condition reading a user table or
 * a name an earlier statement of the file changes) is refused before
 * anything runs, naming the block and what to write instead.
 *
 * The PL/pgSQL is read by libpg_query (pg_query_parse_plpgsql, which reads
 * functions: the body is wrapped as one); the SQL inside by pg_query_parse. */
#include "sql_convert.h"
#include "sql_convert_conv.h"

#include <pg_query.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "migration_sql.h"

/* Relations made by initdb (pg_catalog's, information_schema's) have oids
 * below FirstNormalObjectId: what a condition may read. */
#define FIRST_NORMAL_OID "16384"

#define DO_FORMS "pgtandem converts a DO block only when it is IF [NOT] EXISTS (a SELECT of pg_catalog or " \
                 "information_schema) or BEGIN ... EXCEPTION WHEN duplicate_object THEN NULL around plain statements"
#define DO_INSTEAD "write the statements out in the file (or put the block in an {\"sql\": ...} operation yourself)"

struct unroll {
    struct conv *c;
    const struct sql_stmt *st;  /* the DO statement */
    const char *body;           /* its body, as the parse tree gives it */
    size_t body_off;            /* where the body starts in the file; SIZE_MAX: not found as written */
    int body_line;              /* the file's line of the body's first line */
    struct mig_str out;         /* the file's text with the blocks replaced */
    int line, col;              /* where out's end stands in the file */
    json_t *earlier;            /* parse trees of the statements before (DDL only): what they name */
    json_t *trees;              /* parse results of the statements inside, owned here */
};

/* ---- messages ---- */

static int file_line(const struct unroll *u, json_t *node)
{
    json_int_t n = json_integer_value(json_object_get(node, "lineno"));
    return u->body_off != SIZE_MAX && n > 0 ? u->body_line + (int)n - 1 : u->st->line;
}

__attribute__((format(printf, 3, 4)))
static int refuse(struct unroll *u, json_t *node, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sqlc_fail(u->c, u->st, "cannot read this DO block before it runs: %s (line %d); %s: %s", msg,
                     file_line(u, node), DO_FORMS, DO_INSTEAD);
}

/* ---- names the file changes before the block ---- */

static int above(struct unroll *u, json_t *node, const char *name, json_t *earlier)
{
    return sqlc_fail(u->c, u->st, "this DO block reads \"%s\" on the catalog as it is before the file runs (line %d), "
                     "and the statement at line %d above changes it, so the answer would be wrong: move the block "
                     "above that statement, or write out the statements it should run", name, file_line(u, node),
                     (int)json_integer_value(json_array_get(earlier, 2)));
}

/* The object an EXCEPTION WHEN duplicate_object block guards (a type, a
 * constraint) is looked up on the catalog as it is before the file runs:
 * a statement above naming it (creating, dropping or renaming it) would
 * make the answer wrong. Its name exactly, as Postgres compares it, and
 * never a column's (90003-113: a column "level" above a type "level";
 * 90003-582: a column renamed to "status" above a type "Status"). */
static int object_named_above(struct unroll *u, json_t *node, const char *name)
{
    size_t i;
    json_t *e;
    json_array_foreach(u->earlier, i, e) {
        if (sqlc_tree_names_but_columns(json_array_get(e, 1), name))
            return above(u, node, name, e);
    }
    return 0;
}

/* The name the table rel had before the file, into before (SQLC_NAME_LEN
 * bytes): the renames of tables above followed back, newest first (a
 * column's or a constraint's rename leaves its table where it is). 0, or
 * -1 refused when a statement above drops, moves or renames away a table
 * of the name (one the file makes has no constraint before it: the
 * catalog says so, as drizzle-kit's CREATE TABLE and its keys' blocks). */
static int table_before_file(struct unroll *u, json_t *node, json_t *rel, char *before)
{
    sqlc_copy_name(before, sqlc_str_or(rel, "relname", ""));
    const char *schema = sqlc_rel_schema(rel);
    for (size_t i = json_array_size(u->earlier); i-- > 0;) {
        json_t *e = json_array_get(u->earlier, i);
        const char *kind = json_string_value(json_array_get(e, 0));
        json_t *body = json_array_get(e, 1);
        json_t *r = json_object_get(body, "relation");
        int table_rename = !strcmp(kind, "RenameStmt") && !strcmp(sqlc_str_or(body, "renameType", ""), "OBJECT_TABLE");
        if (table_rename && r && !strcmp(sqlc_rel_schema(r), schema) &&
            !strcmp(sqlc_str_or(body, "newname", ""), before))
            sqlc_copy_name(before, sqlc_str_or(r, "relname", ""));
        else if ((table_rename || !strcmp(kind, "DropStmt") || !strcmp(kind, "AlterObjectSchemaStmt")) &&
                 sqlc_tree_names_but_columns(body, before))
            return above(u, node, before, e);
    }
    return 0;
}

static int remember(struct unroll *u, const char *kind, json_t *body, int line)
{
    static const char *const data[] = {"SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "TransactionStmt",
                                       NULL};
    for (const char *const *d = data; *d; d++)
        if (!strcmp(*d, kind))
            return 0;
    json_t *e = json_pack("[sOi]", kind, body, line);
    if (!e || json_array_append_new(u->earlier, e) != 0)
        return sqlc_oom(u->c, u->st);
    return 0;
}

/* ---- SQL inside the block ---- */

/* text parsed as SQL; the tree is kept (owned by u->trees). */
static json_t *parse_sql(struct unroll *u, json_t *node, const char *text, const char *what)
{
    PgQueryParseResult r = pg_query_parse(text);
    json_t *root = r.error ? NULL : json_loads(r.parse_tree, 0, NULL);
    if (r.error)
        refuse(u, node, "%s does not parse: %s", what, r.error->message ? r.error->message : "syntax error");
    pg_query_free_parse_result(r);
    if (root && json_array_append_new(u->trees, root) != 0)
        return sqlc_oom(u->c, u->st), NULL;
    if (!root && !r.error)
        sqlc_oom(u->c, u->st);
    return root;
}

/* The one statement of a parsed text, with its kind; NULL when there is
 * not exactly one. */
static json_t *only_stmt(json_t *root, const char **kind)
{
    json_t *stmts = json_object_get(root, "stmts");
    json_t *node = json_array_size(stmts) == 1 ? json_object_get(json_array_get(stmts, 0), "stmt") : NULL;
    void *it = json_object_iter(node);
    if (!it)
        return NULL;
    *kind = json_object_iter_key(it);
    return json_object_iter_value(it);
}

struct reads {
    const char *user_rel;       /* a relation that is no catalog's, by its name */
    const char *func_schema;    /* a function called in a schema other than pg_catalog */
    json_t *rels;               /* the relations read, as SQL literals' text ("schema.name" or "name") */
    json_t *funcs;              /* the functions called without a schema */
    json_t *ctes;               /* names of the WITH queries: no relation */
};

static void collect_ctes(json_t *tree, json_t *ctes)
{
    size_t i;
    json_t *v;
    const char *k;
    if (json_is_array(tree)) {
        json_array_foreach(tree, i, v) {
            collect_ctes(v, ctes);
        }
    } else if (json_is_object(tree)) {
        json_object_foreach(tree, k, v) {
            if (!strcmp(k, "CommonTableExpr"))
                json_array_append_new(ctes, json_string(sqlc_str_or(v, "ctename", "")));
            collect_ctes(v, ctes);
        }
    }
}

static int is_cte(json_t *ctes, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(ctes, i, v) {
        if (!strcmp(json_string_value(v), name))
            return 1;
    }
    return 0;
}

/* What a condition reads: every RangeVar must be a catalog relation
 * (qualified by pg_catalog or information_schema, or unqualified and
 * named pg_*, which Postgres finds in pg_catalog first), every function
 * unqualified or pg_catalog's. */
static void collect_reads(json_t *tree, struct reads *r)
{
    size_t i;
    json_t *v;
    const char *k;
    if (json_is_array(tree)) {
        json_array_foreach(tree, i, v) {
            collect_reads(v, r);
        }
        return;
    }
    if (!json_is_object(tree))
        return;
    json_object_foreach(tree, k, v) {
        if (!strcmp(k, "RangeVar")) {
            const char *schema = json_string_value(json_object_get(v, "schemaname"));
            const char *name = sqlc_str_or(v, "relname", "");
            if (!schema && is_cte(r->ctes, name))
                continue;
            int catalog = schema ? !strcmp(schema, "pg_catalog") || !strcmp(schema, "information_schema")
                                 : !strncmp(name, "pg_", 3);
            if (!catalog && !r->user_rel)
                r->user_rel = name;
            char *q = schema ? mig_quote_qname(schema, name) : mig_quote_ident(name);
            if (q)
                json_array_append_new(r->rels, json_string(q));
            free(q);
        } else if (!strcmp(k, "FuncCall")) {
            json_t *names = json_object_get(v, "funcname");
            const char *schema = json_array_size(names) > 1 ? sql_node_str(json_array_get(names, 0)) : NULL;
            if (schema && strcmp(schema, "pg_catalog") != 0 && !r->func_schema)
                r->func_schema = schema;
            const char *fname = json_array_size(names) == 1 ? sql_node_str(json_array_get(names, 0)) : NULL;
            if (fname)
                json_array_append_new(r->funcs, json_string(fname));
        }
        collect_reads(v, r);
    }
}

/* What a literal of a condition names, by the catalog column it is
 * compared to: a schema (which a file hardly drops: not looked at), a
 * table holding what is looked up (what matters is that it is dropped or
 * renamed above: ALTER TABLE t ADD COLUMN a does not change whether t has
 * column c), or the object looked up itself (any other, and a literal
 * compared to nothing known). */
enum lit_kind { LIT_SCHEMA, LIT_TABLE, LIT_OBJECT };

static enum lit_kind lit_kind_of(json_t *colref)
{
    static const char *const schemas[] = {"table_schema", "schemaname", "nspname", "constraint_schema",
                                          "udt_schema", "index_schema", NULL};
    static const char *const tables[] = {"table_name", "tablename", NULL};
    json_t *fields = json_object_get(colref, "fields");
    const char *col = sql_node_str(json_array_get(fields, json_array_size(fields) - 1));
    for (const char *const *n = schemas; col && *n; n++)
        if (!strcmp(*n, col))
            return LIT_SCHEMA;
    for (const char *const *n = tables; col && *n; n++)
        if (!strcmp(*n, col))
            return LIT_TABLE;
    return LIT_OBJECT;
}

/* The string of an A_Const (under a cast or not), or NULL. */
static const char *const_str(json_t *node)
{
    json_t *cast = json_object_get(node, "TypeCast");
    json_t *c = json_object_get(cast ? json_object_get(cast, "arg") : node, "A_Const");
    return json_string_value(sql_get(c, "sval.sval"));
}

/* The literals of a condition, each as [text, lit_kind]. */
static int collect_literals(json_t *tree, json_t *lits)
{
    size_t i;
    json_t *v;
    const char *k;
    if (json_is_array(tree)) {
        json_array_foreach(tree, i, v) {
            if (collect_literals(v, lits) != 0)
                return -1;
        }
        return 0;
    }
    if (!json_is_object(tree))
        return 0;
    json_object_foreach(tree, k, v) {
        json_t *l = json_object_get(v, "lexpr"), *r = json_object_get(v, "rexpr");
        json_t *col = !strcmp(k, "A_Expr") ? json_object_get(l, "ColumnRef") : NULL;
        const char *lit = col ? const_str(r) : NULL;
        if (!lit && !strcmp(k, "A_Expr")) {
            col = json_object_get(r, "ColumnRef");
            lit = col ? const_str(l) : NULL;
        }
        if (lit) {
            if (json_array_append_new(lits, json_pack("[si]", lit, (int)lit_kind_of(col))) != 0)
                return -1;
            continue;
        }
        lit = !strcmp(k, "A_Const") ? json_string_value(sql_get(v, "sval.sval")) : NULL;
        if (lit && json_array_append_new(lits, json_pack("[si]", lit, (int)LIT_OBJECT)) != 0)
            return -1;
        if (!lit && collect_literals(v, lits) != 0)
            return -1;
    }
    return 0;
}

/* A statement above changes what a condition looks up when it names the
 * object itself (ALTER TABLE t ADD COLUMN c before a check of column c),
 * or drops or renames the table holding it (DROP TABLE t takes its
 * columns, constraints and indexes). */
static int literals_named_above(struct unroll *u, json_t *node, json_t *tree)
{
    json_t *lits = json_array();
    if (!lits || collect_literals(tree, lits) != 0) {
        json_decref(lits);
        return sqlc_oom(u->c, u->st);
    }
    size_t i, j;
    json_t *e, *l;
    int rc = 0;
    json_array_foreach(u->earlier, i, e) {
        const char *kind = json_string_value(json_array_get(e, 0));
        int moves = !strcmp(kind, "DropStmt") || !strcmp(kind, "RenameStmt");
        json_array_foreach(lits, j, l) {
            const char *lit = json_string_value(json_array_get(l, 0));
            json_int_t what = json_integer_value(json_array_get(l, 1));
            if (what != LIT_SCHEMA && (what == LIT_OBJECT || moves) && sqlc_tree_names(json_array_get(e, 1), lit, 1)) {
                rc = above(u, node, lit, e);
                break;
            }
        }
        if (rc != 0)
            break;
    }
    json_decref(lits);
    return rc;
}

/* Asks the live catalog (read-only); stand-in conversions (no catalog
 * yet, a proxy's first check of a request) read every answer as 0. */
static int ask(struct unroll *u, json_t *node, const char *select, const char *what, int *out)
{
    const struct sqlc_options *o = u->c->opt;
    *out = 0;
    if (o && o->types_stand_in)
        return 0;
    if (!o || !o->catalog_bool)
        return sqlc_fail(u->c, u->st, "this DO block runs its statements by what the live catalog holds (%s, line "
                         "%d), and there is no database to read it: give --db URI (or --proxy URL) so it is read "
                         "there, or write out the statements it should run", what, file_line(u, node));
    char why[512] = "";
    if (o->catalog_bool(o->column_type_arg, select, out, why, sizeof why) != 0)
        return sqlc_fail(u->c, u->st, "this DO block runs its statements by what the live catalog holds, and %s "
                         "(line %d) could not be read there: %s; write out the statements it should run", what,
                         file_line(u, node), why[0] ? why : "no answer");
    return 0;
}

/* A condition: only the catalog, only names the file has not changed
 * above; evaluated when eval, else only checked. */
static int condition(struct unroll *u, json_t *node, json_t *expr, int eval, int *out)
{
    const char *q = json_string_value(json_object_get(json_object_get(expr, "PLpgSQL_expr"), "query"));
    *out = 0;
    if (!q)
        return refuse(u, node, "a condition without text");
    struct mig_str s = {0};
    /* NULL is false to IF; the newline ends a comment the condition may end with */
    mig_str_addf(&s, "SELECT coalesce((%s\n)::boolean, false)", q);
    char *select = mig_str_take(&s);
    if (!select)
        return sqlc_oom(u->c, u->st);
    json_t *root = parse_sql(u, node, select, "the condition");
    const char *kind = "";
    json_t *sel = root ? only_stmt(root, &kind) : NULL;
    struct reads r = {.rels = json_array(), .funcs = json_array(), .ctes = json_array()};
    int rc = root ? 0 : -1;
    if (rc == 0 && (!sel || strcmp(kind, "SelectStmt") != 0))
        rc = refuse(u, node, "the condition \"%.80s\" is not one expression", q);
    if (rc == 0) {
        collect_ctes(sel, r.ctes);
        collect_reads(sel, &r);
        if (r.user_rel)
            rc = refuse(u, node, "the condition \"%.80s\" reads \"%s\", which is not a catalog relation (pg_catalog, "
                        "information_schema): its answer depends on the data, which the running application "
                        "changes", q, r.user_rel);
        else if (r.func_schema)
            rc = refuse(u, node, "the condition \"%.80s\" calls a function of schema \"%s\", which may read any "
                        "table; only pg_catalog's functions are read before the file runs", q, r.func_schema);
    }
    if (rc == 0 && eval)
        rc = literals_named_above(u, node, sel);
    const struct sqlc_options *o = u->c->opt;
    if (rc == 0 && eval && json_array_size(r.rels) + json_array_size(r.funcs) && o && !o->types_stand_in &&
        o->catalog_bool) {
        /* unqualified pg_* names: the one Postgres finds must be initdb's; an
         * unqualified function must have no namesake outside pg_catalog that
         * the search_path could find first */
        struct mig_str chk = {0};
        size_t i;
        json_t *v;
        mig_str_add(&chk, "SELECT true");
        json_array_foreach(r.rels, i, v) {
            mig_str_add(&chk, " AND coalesce(pg_catalog.to_regclass(");
            mig_str_literal(&chk, json_string_value(v));
            mig_str_add(&chk, ")::oid < " FIRST_NORMAL_OID ", false)");
        }
        json_array_foreach(r.funcs, i, v) {
            mig_str_add(&chk, " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE proname = ");
            mig_str_literal(&chk, json_string_value(v));
            mig_str_add(&chk, " AND pronamespace <> 'pg_catalog'::pg_catalog.regnamespace)");
        }
        char *check = mig_str_take(&chk);
        int catalog = 0;
        rc = check ? ask(u, node, check, "what the condition reads", &catalog) : sqlc_oom(u->c, u->st);
        free(check);
        if (rc == 0 && !catalog)
            rc = refuse(u, node, "the condition \"%.80s\" reads a relation that is not Postgres's catalog (a "
                        "table of the database, or none), or calls a function of the database: its answer depends "
                        "on the data", q);
    }
    if (rc == 0 && eval)
        rc = ask(u, node, select, "its condition", out);
    json_decref(r.rels);
    json_decref(r.funcs);
    json_decref(r.ctes);
    free(select);
    return rc;
}

/* ---- the rewritten text ---- */

static void advance(struct unroll *u, const char *text, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (text[i] == '\n') {
            u->line++;
            u->col = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            u->col++;
        }
    }
}

static void add_text(struct unroll *u, const char *text, size_t n)
{
    char *copy = strndup(text, n);
    if (!copy) {
        u->out.oom = 1;
        return;
    }
    mig_str_add(&u->out, copy);
    advance(u, copy, n);
    free(copy);
}

/* Blank text up to the file's line and column, so what follows is told
 * where the file has it. */
static void move_to(struct unroll *u, int line, int col)
{
    while (u->line < line)
        add_text(u, "\n", 1);
    if (u->line == line)
        while (u->col < col)
            add_text(u, " ", 1);
}

/* A statement of the block into the file's text, where the block has it. */
static void emit(struct unroll *u, json_t *node, const char *sql)
{
    int line = file_line(u, node), col = 1;
    if (u->body_off != SIZE_MAX) {
        /* its line of the body, then its text from there */
        json_int_t n = json_integer_value(json_object_get(node, "lineno"));
        const char *p = u->c->s.text + u->body_off, *end = p + strlen(u->body);
        for (json_int_t l = 1; l < n && p < end; l++) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            p = nl ? nl + 1 : end;
        }
        const char *at = memmem(p, (size_t)(end - p), sql, strlen(sql));
        if (at)
            sql_script_where(&u->c->s, (size_t)(at - u->c->s.text), &line, &col);
    }
    move_to(u, line, col);
    if (u->line > line || (u->line == line && u->col > col))
        add_text(u, " ", 1);
    add_text(u, sql, strlen(sql));
    const char *last = strrchr(sql, '\n');
    /* a "--" on its last line may be a comment that would swallow the ';' */
    add_text(u, strstr(last ? last : sql, "--") ? "\n;" : ";", strstr(last ? last : sql, "--") ? 2 : 1);
}

/* ---- the block ---- */

static int walk_list(struct unroll *u, json_t *list, int eval);

/* A statement of SQL in the block: one statement the converter reads. */
static int plain_sql(struct unroll *u, json_t *node, json_t *f, int eval, const char **kind, json_t **stmt)
{
    const char *q = json_string_value(json_object_get(json_object_get(json_object_get(f, "sqlstmt"),
                                                                      "PLpgSQL_expr"), "query"));
    if (json_object_get(f, "into"))
        return refuse(u, node, "a statement INTO variables");
    if (!q)
        return refuse(u, node, "a statement without text");
    json_t *root = parse_sql(u, node, q, "a statement");
    if (!root)
        return -1;
    *stmt = only_stmt(root, kind);
    if (!*stmt)
        return refuse(u, node, "\"%.80s\" is not one statement", q);
    if (!strcmp(*kind, "SelectStmt") || !strcmp(*kind, "DoStmt") || !strcmp(*kind, "TransactionStmt"))
        return refuse(u, node, "\"%.80s\" inside the block", q);
    if (eval) {
        emit(u, node, q);
        return remember(u, *kind, *stmt, file_line(u, node));
    }
    return 0;
}

static const char *node_kind(json_t *node, json_t **fields)
{
    void *it = json_object_iter(node);
    *fields = it ? json_object_iter_value(it) : NULL;
    return it ? json_object_iter_key(it) : "";
}

/* What a PL/pgSQL statement the converter does not read is, for messages. */
static const char *what_it_is(const char *kind)
{
    static const struct {
        const char *kind, *what;
    } w[] = {
        {"PLpgSQL_stmt_loop", "a LOOP"}, {"PLpgSQL_stmt_while", "a WHILE loop"}, {"PLpgSQL_stmt_fori", "a FOR loop"},
        {"PLpgSQL_stmt_fors", "a FOR loop over a query"}, {"PLpgSQL_stmt_forc", "a FOR loop over a cursor"},
        {"PLpgSQL_stmt_foreach_a", "a FOREACH loop"}, {"PLpgSQL_stmt_dynexecute", "EXECUTE of a built string"},
        {"PLpgSQL_stmt_dynfors", "a FOR loop over EXECUTE"}, {"PLpgSQL_stmt_raise", "RAISE"},
        {"PLpgSQL_stmt_assign", "an assignment to a variable"}, {"PLpgSQL_stmt_perform", "PERFORM"},
        {"PLpgSQL_stmt_case", "CASE"}, {"PLpgSQL_stmt_return", "RETURN"}, {"PLpgSQL_stmt_exit", "EXIT"},
        {"PLpgSQL_stmt_getdiag", "GET DIAGNOSTICS"}, {"PLpgSQL_stmt_call", "CALL"},
        {"PLpgSQL_stmt_assert", "ASSERT"}, {"PLpgSQL_stmt_if", "IF"}, {"PLpgSQL_stmt_block", "a nested block"}, {"PLpgSQL_stmt_commit", "COMMIT"}, {"PLpgSQL_stmt_rollback", "ROLLBACK"},
    };
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
        if (!strcmp(w[i].kind, kind))
            return w[i].what;
    return "a PL/pgSQL statement";
}

/* ---- EXCEPTION WHEN duplicate_object ---- */

/* A type by name in its schema (an unqualified one is made in public). */
static char *type_exists_sql(json_t *names)
{
    size_t n = json_array_size(names);
    const char *name = n ? sql_node_str(json_array_get(names, n - 1)) : NULL;
    const char *schema = n > 1 ? sql_node_str(json_array_get(names, n - 2)) : "public";
    if (!name || !schema || n > 2)
        return NULL;
    struct mig_str s = {0};
    mig_str_add(&s, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = "
                    "t.typnamespace WHERE n.nspname = ");
    mig_str_literal(&s, schema);
    mig_str_add(&s, " AND t.typname = ");
    mig_str_literal(&s, name);
    mig_str_add(&s, ")");
    return mig_str_take(&s);
}

/* ALTER TYPE ... ADD VALUE of a label the enum has raises duplicate_object
 * (a RENAME VALUE is not read here). */
static char *enum_value_sql(json_t *stmt, const char **name)
{
    json_t *names = json_object_get(stmt, "typeName");
    size_t n = json_array_size(names);
    const char *type = n ? sql_node_str(json_array_get(names, n - 1)) : NULL;
    const char *schema = n > 1 ? sql_node_str(json_array_get(names, n - 2)) : "public";
    *name = json_string_value(json_object_get(stmt, "newVal"));
    if (!type || !schema || n > 2 || !*name || json_object_get(stmt, "oldVal"))
        return NULL;
    struct mig_str s = {0};
    mig_str_add(&s, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_enum e JOIN pg_catalog.pg_type t ON t.oid = "
                    "e.enumtypid JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = ");
    mig_str_literal(&s, schema);
    mig_str_add(&s, " AND t.typname = ");
    mig_str_literal(&s, type);
    mig_str_add(&s, " AND e.enumlabel = ");
    mig_str_literal(&s, *name);
    mig_str_add(&s, ")");
    return mig_str_take(&s);
}

static char *constraint_exists_sql(const char *schema, const char *table, const char *name);

/* The object a statement of an EXCEPTION WHEN duplicate_object block
 * would find already there, as a query, with its name (NULL: the
 * statement is not one whose duplicate_object the converter can tell). */
static char *guarded_object(json_t *stmt, const char *kind, const char **name, json_t **table)
{
    *name = NULL;
    *table = NULL;
    json_t *names = NULL;
    if (!strcmp(kind, "CreateEnumStmt") || !strcmp(kind, "CreateRangeStmt"))
        names = json_object_get(stmt, "typeName");
    else if (!strcmp(kind, "CreateDomainStmt"))
        names = json_object_get(stmt, "domainname");
    if (names) {
        *name = sql_node_str(json_array_get(names, json_array_size(names) - 1));
        return type_exists_sql(names);
    }
    if (!strcmp(kind, "AlterEnumStmt"))
        return enum_value_sql(stmt, name);
    if (!strcmp(kind, "CompositeTypeStmt")) {
        json_t *rv = json_object_get(stmt, "typevar");
        json_t *list = json_pack("[{s:{s:s}},{s:{s:s}}]", "String", "sval", sqlc_rel_schema(rv), "String", "sval",
                                 sqlc_str_or(rv, "relname", ""));
        char *sql = list ? type_exists_sql(list) : NULL;
        json_decref(list);
        *name = sqlc_str_or(rv, "relname", "");
        return sql;
    }
    if (strcmp(kind, "AlterTableStmt") != 0)
        return NULL;
    json_t *cmds = json_object_get(stmt, "cmds");
    json_t *cmd = json_array_size(cmds) == 1 ? json_object_get(json_array_get(cmds, 0), "AlterTableCmd") : NULL;
    json_t *con = sql_get(cmd, "def.Constraint");
    const char *contype = sqlc_str_or(con, "contype", "");
    /* a UNIQUE, PRIMARY KEY or EXCLUDE of a name taken raises duplicate_table, which the block does not catch */
    if (!con || strcmp(sqlc_str_or(cmd, "subtype", ""), "AT_AddConstraint") != 0 ||
        (strcmp(contype, "CONSTR_FOREIGN") != 0 && strcmp(contype, "CONSTR_CHECK") != 0))
        return NULL;
    json_t *rel = json_object_get(stmt, "relation");
    *table = rel;
    *name = json_string_value(json_object_get(con, "conname"));
    if (!*name)
        return strdup("SELECT false");     /* Postgres chooses a free name: nothing to collide with */
    return constraint_exists_sql(sqlc_rel_schema(rel), sqlc_str_or(rel, "relname", ""), *name);
}

/* A constraint by name on schema.table. */
static char *constraint_exists_sql(const char *schema, const char *table, const char *name)
{
    char *qname = mig_quote_qname(schema, table);
    struct mig_str s = {0};
    mig_str_add(&s, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = "
                    "pg_catalog.to_regclass(");
    mig_str_literal(&s, qname ? qname : "");
    mig_str_add(&s, ") AND conname = ");
    mig_str_literal(&s, name);
    mig_str_add(&s, ")");
    free(qname);
    return mig_str_take(&s);
}

/* Postgres undoes the whole block when one statement raises
 * duplicate_object: its statements run all, or none when one of them
 * finds its object there. */
static int duplicate_object_block(struct unroll *u, json_t *node, json_t *block, int eval)
{
    json_t *excs = sql_get(block, "exceptions.PLpgSQL_exception_block.exc_list");
    json_t *exc = json_array_size(excs) == 1 ? json_object_get(json_array_get(excs, 0), "PLpgSQL_exception") : NULL;
    json_t *conds = json_object_get(exc, "conditions");
    const char *cond = json_array_size(conds) == 1
                           ? json_string_value(sql_get(json_array_get(conds, 0), "PLpgSQL_condition.condname"))
                           : NULL;
    if (!cond || strcmp(cond, "duplicate_object") != 0)
        return refuse(u, node, "an EXCEPTION clause other than WHEN duplicate_object");
    if (json_array_size(json_object_get(exc, "action")))
        return refuse(u, node, "an EXCEPTION handler that does something (only THEN NULL is read)");
    json_t *list = json_object_get(block, "body");
    size_t n = json_array_size(list), i;
    json_t *s;
    int any_there = 0;
    json_array_foreach(list, i, s) {
        json_t *f;
        const char *k = node_kind(s, &f);
        const char *kind = "", *name;
        json_t *stmt = NULL, *table;
        if (strcmp(k, "PLpgSQL_stmt_execsql") != 0)
            return refuse(u, f, "%s inside BEGIN ... EXCEPTION WHEN duplicate_object", what_it_is(k));
        if (plain_sql(u, f, f, 0, &kind, &stmt) != 0)
            return -1;
        char *exists = guarded_object(stmt, kind, &name, &table);
        int rc = 0;
        if (!exists)
            rc = refuse(u, f, "%s inside BEGIN ... EXCEPTION WHEN duplicate_object: only CREATE TYPE, CREATE DOMAIN, "
                        "ALTER TYPE ... ADD VALUE and ALTER TABLE ... ADD CONSTRAINT (a FOREIGN KEY or CHECK) are "
                        "read there; guard it with IF NOT EXISTS (SELECT 1 FROM pg_catalog...) instead", kind);
        if (rc == 0 && eval && name)
            rc = object_named_above(u, f, name);
        /* a key added to a table renamed above is looked up under the
         * name the table has in the catalog, before the file (90003-108) */
        char before[SQLC_NAME_LEN];
        if (rc == 0 && eval && table && name && (rc = table_before_file(u, f, table, before)) == 0 &&
            strcmp(before, sqlc_str_or(table, "relname", "")) != 0) {
            free(exists);
            exists = constraint_exists_sql(sqlc_rel_schema(table), before, name);
        }
        int there = 0;
        if (rc == 0 && eval && !any_there)
            rc = ask(u, f, exists, "whether its object is there", &there);
        free(exists);
        if (rc != 0)
            return -1;
        any_there |= there;
    }
    if (!eval || any_there || !n)
        return 0;
    return walk_list(u, list, 1);
}

static int walk_block(struct unroll *u, json_t *block, int eval)
{
    if (json_object_get(block, "exceptions"))
        return duplicate_object_block(u, block, block, eval);
    return walk_list(u, json_object_get(block, "body"), eval);
}

/* IF cond THEN ... [ELSIF cond THEN ...] [ELSE ...] END IF: every branch
 * checked; the one the catalog picks walked when eval. */
static int walk_if(struct unroll *u, json_t *f, int eval)
{
    int taken = !eval, yes = 0;
    if (condition(u, f, json_object_get(f, "cond"), eval, &yes) != 0 ||
        walk_list(u, json_object_get(f, "then_body"), eval && yes) != 0)
        return -1;
    taken |= yes;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(f, "elsif_list"), i, e) {
        json_t *ef = json_object_get(e, "PLpgSQL_if_elsif");
        yes = 0;
        if (condition(u, ef, json_object_get(ef, "cond"), eval && !taken, &yes) != 0 ||
            walk_list(u, json_object_get(ef, "stmts"), eval && !taken && yes) != 0)
            return -1;
        taken |= yes;
    }
    return walk_list(u, json_object_get(f, "else_body"), eval && !taken);
}

static int walk_list(struct unroll *u, json_t *list, int eval)
{
    size_t i;
    json_t *s;
    json_array_foreach(list, i, s) {
        json_t *f;
        const char *k = node_kind(s, &f);
        const char *kind;
        json_t *stmt;
        int rc;
        if (!strcmp(k, "PLpgSQL_stmt_execsql"))
            rc = plain_sql(u, f, f, eval, &kind, &stmt);
        else if (!strcmp(k, "PLpgSQL_stmt_if"))
            rc = walk_if(u, f, eval);
        else if (!strcmp(k, "PLpgSQL_stmt_block"))
            rc = walk_block(u, f, eval);
        else
            rc = refuse(u, f, "%s", what_it_is(k));
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* The function's datums: found (and sqlstate, sqlerrm of an EXCEPTION
 * clause) are PL/pgSQL's own; anything else is a variable. */
static int no_variables(struct unroll *u, json_t *fn)
{
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(fn, "datums"), i, d) {
        json_t *f;
        const char *k = node_kind(d, &f);
        const char *name = sqlc_str_or(f, "refname", "?");
        if (strcmp(k, "PLpgSQL_var") != 0 ||
            (strcmp(name, "found") != 0 && strcmp(name, "sqlstate") != 0 && strcmp(name, "sqlerrm") != 0))
            return refuse(u, f, "variable \"%s\" (what a variable holds is known only as the block runs)", name);
    }
    return 0;
}

/* The function tree of the DO block's body, or NULL (refused). */
static json_t *plpgsql_tree(struct unroll *u)
{
    char tag[32] = "pgtandem_do";
    for (int i = 0; strstr(u->body, tag); i++)
        snprintf(tag, sizeof tag, "pgtandem_do%d", i);
    struct mig_str s = {0};
    mig_str_addf(&s, "CREATE FUNCTION pgtandem_do() RETURNS void LANGUAGE plpgsql AS $%s$%s$%s$", tag, u->body, tag);
    char *fn = mig_str_take(&s);
    if (!fn)
        return sqlc_oom(u->c, u->st), NULL;
    PgQueryPlpgsqlParseResult r = pg_query_parse_plpgsql(fn);
    json_t *tree = r.error ? NULL : json_loads(r.plpgsql_funcs, 0, NULL);
    if (r.error)
        refuse(u, NULL, "it does not parse as PL/pgSQL: %s", r.error->message ? r.error->message : "syntax error");
    else if (!tree)
        sqlc_oom(u->c, u->st);
    pg_query_free_plpgsql_parse_result(r);
    free(fn);
    if (tree && json_array_append_new(u->trees, tree) != 0)
        return sqlc_oom(u->c, u->st), NULL;
    return tree ? json_object_get(json_array_get(tree, 0), "PLpgSQL_function") : NULL;
}

static int unroll_one(struct unroll *u)
{
    const char *lang = NULL;
    u->body = NULL;
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(u->st->body, "args"), i, a) {
        json_t *d = json_object_get(a, "DefElem");
        const char *v = json_string_value(sql_get(d, "arg.String.sval"));
        if (!strcmp(sqlc_str_or(d, "defname", ""), "as"))
            u->body = v;
        else if (!strcmp(sqlc_str_or(d, "defname", ""), "language"))
            lang = v;
    }
    if (lang && strcasecmp(lang, "plpgsql") != 0)
        return sqlc_fail(u->c, u->st, "cannot read a DO block in language %s; %s", lang, DO_INSTEAD);
    if (!u->body)
        return sqlc_fail(u->c, u->st, "a DO block without a body");
    const char *text = u->c->s.text + u->st->start;
    const char *at = memmem(text, u->st->end - u->st->start, u->body, strlen(u->body));
    u->body_off = at ? (size_t)(at - u->c->s.text) : SIZE_MAX;
    int col;
    if (at)
        sql_script_where(&u->c->s, u->body_off, &u->body_line, &col);
    json_t *fn = plpgsql_tree(u);
    if (!fn)
        return -1;
    json_t *action = json_object_get(json_object_get(fn, "action"), "PLpgSQL_stmt_block");
    json_t *body = json_object_get(action, "body");
    size_t n = json_array_size(body);
    /* the RETURN plpgsql adds at the end of every function's outer block */
    json_t *last_fields;
    if (n && !strcmp(node_kind(json_array_get(body, n - 1), &last_fields), "PLpgSQL_stmt_return") &&
        json_object_size(last_fields) == 0)
        json_array_remove(body, n - 1);
    /* everything checked first, so no branch hides what is refused */
    if (walk_block(u, action, 0) != 0 || no_variables(u, fn) != 0)
        return -1;
    if (walk_block(u, action, 1) != 0)
        return -1;
    int end_line, end_col;
    sql_script_where(&u->c->s, u->st->end, &end_line, &end_col);
    move_to(u, end_line, 1);
    return 0;
}

static int has_do(const struct sql_script *s)
{
    for (size_t i = 0; i < s->nstmts; i++)
        if (!strcmp(s->stmts[i].kind, "DoStmt"))
            return 1;
    return 0;
}

int sqlc_unroll_do(struct conv *c, char **out)
{
    *out = NULL;
    if (!has_do(&c->s))
        return 0;
    struct unroll u = {.c = c, .line = 1, .col = 1, .earlier = json_array(), .trees = json_array()};
    int rc = u.earlier && u.trees ? 0 : -1;
    size_t copied = 0;
    for (size_t i = 0; rc == 0 && i < c->s.nstmts; i++) {
        const struct sql_stmt *st = &c->s.stmts[i];
        if (strcmp(st->kind, "DoStmt") != 0) {
            rc = remember(&u, st->kind, st->body, st->line);
            continue;
        }
        add_text(&u, c->s.text + copied, st->start - copied);
        u.st = st;
        rc = unroll_one(&u);
        copied = st->end;
    }
    if (rc == 0)
        add_text(&u, c->s.text + copied, c->s.len - copied);
    if (rc == 0 && !(*out = mig_str_take(&u.out)))
        rc = (snprintf(c->err, c->errlen, "%s: out of memory", c->s.file), -1);
    mig_str_free(&u.out);
    json_decref(u.earlier);
    json_decref(u.trees);
    return rc;
}

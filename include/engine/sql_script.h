/* SQL scripts read with Postgres's own parser (libpg_query): the statements
 * of a file with their parse trees (as JSON, walked with jansson), where each
 * one starts (line and column, for messages) and the exact source text of any
 * expression or type inside them. Shared by the converter (sql_convert.c) and
 * the linter (sql_lint.c); nothing here knows about migrations. */
#ifndef PGTANDEM_SQL_SCRIPT_H
#define PGTANDEM_SQL_SCRIPT_H

#include <jansson.h>
#include <stddef.h>

struct sql_stmt {
    const char *kind;   /* parse node name: "AlterTableStmt", "IndexStmt", ... */
    json_t *body;       /* that node's fields (borrowed from the script) */
    size_t gap;         /* where the text before it starts (after the previous ';') */
    size_t start, end;  /* its first token .. its end, without the ';' */
    int line, col;      /* of its first token, 1-based (columns count characters) */
};

struct sql_script {
    char *file;         /* for messages */
    char *text;         /* NUL-terminated copy of the input */
    size_t len;
    json_t *root;       /* pg_query_parse's tree */
    struct sql_stmt *stmts;
    size_t nstmts;
};

/* Parses text. On error returns -1 with "FILE:LINE:COL: message" in err
 * (a syntax error names where Postgres's parser stopped). */
int sql_script_parse(struct sql_script *s, const char *file, const char *text, size_t len,
                     char *err, size_t errlen);
void sql_script_free(struct sql_script *s);

/* The line of the psql meta-command (\set, \if, \i ...) at which
 * Postgres's parser stops in text: a psql script, which no migration tool
 * runs. 0 when the text parses, or stops anywhere else. */
int sql_script_psql_line(const char *text, size_t len);

/* Line and column (1-based, columns in characters) of a byte offset. */
void sql_script_where(const struct sql_script *s, size_t offset, int *line, int *col);

/* The statement's own text, without the comments before it or its ';'
 * (a trailing line comment gets a newline so appended text stays code). */
char *sql_stmt_text(const struct sql_script *s, const struct sql_stmt *st);

/* The source text of an expression node inside st: the shortest span that
 * Postgres parses back into the same tree, so it means exactly what the
 * author wrote. NULL when no such span exists (or out of memory). */
char *sql_expr_text(const struct sql_script *s, const struct sql_stmt *st, json_t *expr);
/* The same for a TypeName node ("numeric(10,2)", "timestamp with time zone"). */
char *sql_type_text(const struct sql_script *s, const struct sql_stmt *st, json_t *type_name);

/* expr (an expression's text) with the qualifier `from` of its column
 * references (p.status) written as `to` instead: the row an UPDATE ... AS p
 * names, under its table's name. NULL when a FROM item inside expr takes
 * the name `from` itself (p there is another row), when the result does not
 * parse back to the author's tree with the qualifier renamed, or out of
 * memory. Caller frees. */
char *sql_expr_requalify(const char *expr, const char *from, const char *to);
/* stmt (one CREATE INDEX CONCURRENTLY's text) without CONCURRENTLY: the
 * one word whose removal parses to the same tree but for "concurrent".
 * NULL when none does (or out of memory). Caller frees. */
char *sql_index_not_concurrently(const char *stmt);
/* An identifier as it must be written in SQL: bare when Postgres reads it
 * back unchanged, else double-quoted. Caller frees. */
char *sql_ident(const char *name);

/* json helpers for walking parse trees: the string value of a String node
 * ({"String": {"sval": ...}}), the fields of a single-key node object, and
 * a path of object keys. */
const char *sql_node_str(json_t *node);
json_t *sql_node_fields(json_t *node, const char *kind);
json_t *sql_get(json_t *obj, const char *path);
/* The number of index keys when sql is exactly one CREATE INDEX whose parse
 * node has no fields but the allowed ones; -1 otherwise. Lets a migration's
 * index keys and storage parameters be checked as what they claim to be. */
int sql_index_stmt_params(const char *sql, const char *const *allowed);
/* 1 when sql is exactly one ALTER INDEX ... RENAME TO of index name in
 * schema (written unqualified: the one in public, where the search_path
 * finds it first). */
int sql_renames_index(const char *sql, const char *schema, const char *name);
/* The same, with the new name written into to (n bytes) when it does. */
int sql_index_renamed_to(const char *sql, const char *schema, const char *name, char *to, size_t n);
/* True when obj is an object with no keys but the allowed ones. */
int sql_only_keys(json_t *obj, const char *const *allowed);
/* 1 when the tree calls a function whose value differs per row (random,
 * gen_random_uuid, clock_timestamp, nextval ...), by name: what a reading
 * of the SQL alone can tell. With a database, the engine asks Postgres. */
int sql_calls_volatile(json_t *tree);

#endif

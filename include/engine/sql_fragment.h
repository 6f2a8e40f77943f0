/* SQL fragments from untrusted files (a column default, a trigger's up/down
 * expression, a CHECK, an index predicate, a type name), checked with
 * Postgres's own parser (libpg_query) to be exactly one thing of the
 * expected kind, so that embedding them in generated DDL cannot add a
 * statement, a clause or an unbalanced parenthesis. Pure functions: no
 * database, no migration model. */
#ifndef PGTANDEM_SQL_FRAGMENT_H
#define PGTANDEM_SQL_FRAGMENT_H

#include <stddef.h>

#include <jansson.h>

enum sql_fragment_result {
    SQL_FRAGMENT_OK = 0,
    SQL_FRAGMENT_BAD = -1,
    SQL_FRAGMENT_OOM = -2,
};

/* OK when text is one value expression: "SELECT (text)" parses as a single
 * SELECT with one unnamed target and no other clause, and "SELECT text"
 * parses to the same expression, so its parentheses balance on its own (a
 * trailing "--" comment, "1) OR (2", "x; DROP ..." are all BAD). */
enum sql_fragment_result sql_fragment_expr(const char *text);

/* OK when text is one string constant and nothing else ('...', E'...',
 * $$...$$): no cast, no operator. */
enum sql_fragment_result sql_fragment_string_literal(const char *text);

/* OK when text is one type name as a column definition takes it
 * ("numeric(10,2)", "timestamp with time zone", "public.\"T\"[]"): it
 * parses inside CAST(NULL AS ...) as exactly that cast, with constant type
 * modifiers and no SETOF or %TYPE. */
enum sql_fragment_result sql_fragment_type(const char *text);

/* 1 when the expression calls a function known to differ per row (see
 * sql_calls_volatile), 0 when not, or a negative sql_fragment_result. */
int sql_fragment_volatile(const char *text);

/* The column names an expression reads: the last name of each column
 * reference (`t.col` reads col), each once, in *names (free with
 * sql_fragment_free_names); *star is set when it reads `*`. */
enum sql_fragment_result sql_fragment_columns(const char *text, char ***names, size_t *n, int *star);
/* The same, of a tree already parsed (libpg_query's JSON of an expression). */
enum sql_fragment_result sql_tree_columns(json_t *tree, char ***names, size_t *n, int *star);
void sql_fragment_free_names(char **names, size_t n);

/* The expression text with each column reference named from[k] (one
 * field, unqualified) written as to[k] (quoted as needed), for k < n;
 * NULL (caller frees otherwise) when text is no one expression, a
 * qualified reference names one of from[], or the new text would not
 * parse to the same tree with the new names. */
char *sql_fragment_rename_columns(const char *text, const char *const *from, const char *const *to, size_t n);
/* The expression text with each column reference named from[k],
 * unqualified or qualified by table, written as "(exprs[k])" instead, for
 * k < n: the places found as sql_fragment_rename_columns finds them (a
 * reference qualified otherwise is another table's, left as written);
 * NULL (caller frees otherwise) when a place cannot be taken, or the
 * result is no one expression. */
char *sql_fragment_substitute_columns(const char *text, const char *table, const char *const *from,
                                      const char *const *exprs, size_t n);

/* One index key as SQL ("note DESC", "lower(note)"): *column is the name
 * Postgres gives its column when it names an index after its columns
 * (caller frees): the column's, or for an expression the function's
 * ("lower"), a cast's type ... and NULL when it has none ("expr"). */
enum sql_fragment_result sql_fragment_index_key_column(const char *key, char **column);

#endif

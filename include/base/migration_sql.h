/* Small SQL text helpers shared by the plan generator and the engine: a
 * growable string, identifier/literal quoting that needs no connection (so
 * `migrate plan` works offline), and ordered lists of SQL steps. */
#ifndef PGTANDEM_MIGRATION_SQL_H
#define PGTANDEM_MIGRATION_SQL_H

#include <stddef.h>

struct mig_str {
    char *buf;
    size_t len, cap;
    int oom;
};

void mig_str_add(struct mig_str *s, const char *text);
void mig_str_addf(struct mig_str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends the identifier double-quoted with embedded quotes doubled, exactly
 * what PQescapeIdentifier produces. */
void mig_str_ident(struct mig_str *s, const char *ident);
/* schema.name, both quoted. */
void mig_str_qname(struct mig_str *s, const char *schema, const char *name);
/* A string literal like PQescapeLiteral: '...' or E'...' when it has backslashes. */
void mig_str_literal(struct mig_str *s, const char *text);
/* Returns the built string (caller frees) and resets s; NULL on OOM. */
char *mig_str_take(struct mig_str *s);
void mig_str_free(struct mig_str *s);

/* Convenience wrappers returning freshly allocated strings. */
char *mig_quote_ident(const char *ident);
char *mig_quote_qname(const char *schema, const char *name);

/* " -c search_path=\"schema\",public" for a startup packet's options: the
 * schema (or several, comma-separated: the path of a version route) quoted
 * as identifiers (their case kept), then `then` (a
 * search_path value, the client's own) or public when NULL, escaped as the
 * server's options splitting needs. -1 when it does not fit in n bytes. */
int mig_search_path_option(char *out, size_t n, const char *schema, const char *then);
/* The same route as a statement, for a session that is already connected:
 * SET search_path TO "schema", public. Caller frees; NULL when out of memory. */
char *mig_search_path_sql(const char *schema);
/* The route with `then` after the schema, whatever text `then` is (it is
 * passed as a literal): SELECT pg_catalog.set_config('search_path', ...).
 * Caller frees; NULL when out of memory. */
char *mig_search_path_set_config(const char *schema, const char *then);

/* A foreign key's ON DELETE / ON UPDATE action from its letter in
 * pg_constraint and the parse tree (a, r, c, n, d), as Postgres spells it;
 * NO ACTION, the default, for any other letter. */
const char *mig_fk_action(char letter);

enum mig_step_mode {
    MIG_STEP_TXN,        /* may share a transaction with its neighbours */
    MIG_STEP_ALONE,      /* must run outside a transaction (CONCURRENTLY) */
};

struct mig_step {
    char *sql;
    enum mig_step_mode mode;
    int op_index;        /* operation that produced it, -1 for engine steps */
    char *cleanup;       /* run before one retry when the step fails (NULL: no retry) */
};

struct mig_steps {
    struct mig_step *v;
    size_t n, cap;
    int oom;
};

void mig_steps_add(struct mig_steps *l, int op_index, enum mig_step_mode mode, char *sql_owned);
/* Gives the last step a cleanup statement (takes ownership). */
void mig_steps_set_cleanup(struct mig_steps *l, char *sql_owned);
void mig_steps_free(struct mig_steps *l);

#endif

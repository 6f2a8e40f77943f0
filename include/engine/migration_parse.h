/* The migration file parser's own interface, for its files only (the public
 * one is migration.h): the context errors are written through, the tables
 * of keys an object may have, and the checks and readers the top level
 * (migration.c) and the operations (migration_op_parse.c) share, defined
 * in migration_check.c. Every check fails through mparse_fail_at, which
 * writes "FILE:LINE:COL: PATH: message" into the context's err and
 * returns -1. */
#ifndef PGTANDEM_MIGRATION_PARSE_H
#define PGTANDEM_MIGRATION_PARSE_H

#include <jansson.h>
#include <stddef.h>

#define MAX_NAME 63     /* NAMEDATALEN - 1: longer identifiers get truncated silently */

enum key_type { K_STR, K_BOOL, K_STRS, K_OBJ, K_COLS, K_STR_OR_NULL, K_INT, K_NUM, K_STR_OR_OBJ };

struct key_spec {
    const char *key;
    enum key_type type;
    int required;
};

struct parse_ctx {
    const char *file;
    const char *text;
    char *err;
    size_t errlen;
    char path[160];     /* e.g. operations[2].rename_column */
};

struct mig_op;

__attribute__((format(printf, 3, 4)))
int mparse_fail_at(struct parse_ctx *c, const char *token, const char *fmt, ...);
/* The candidate nearest to word, if near enough to suggest; else NULL. */
const char *mparse_closest(const char *word, const char *const *cands, size_t n);
/* Checks that obj has only known keys, each of the right JSON type, and all
 * required keys. */
int mparse_check_keys(struct parse_ctx *c, json_t *obj, const struct key_spec *spec);
/* obj[key] copied when it is a string; else NULL. */
char *mparse_dup_str(json_t *obj, const char *key);
/* Each 0, or -1 after failing; a NULL s passes. */
int mparse_check_ident(struct parse_ctx *c, const char *key, const char *s);
int mparse_check_type(struct parse_ctx *c, const char *key, const char *s);
int mparse_check_expr(struct parse_ctx *c, const char *key, const char *s);

/* operations[idx] of the file into op (migration_op_parse.c). */
int mparse_op(struct parse_ctx *c, json_t *entry, size_t idx, struct mig_op *op);

#endif

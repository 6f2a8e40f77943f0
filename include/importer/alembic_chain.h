/* An Alembic versions/ directory read as a history, without Python: the
 * `revision` and `down_revision` lines of every *.py file and whether
 * upgrade() does anything, checked against the migration policy's chain
 * rules (one root, one head, every down_revision present, merges without
 * operations, no cycle). */
#ifndef PGTANDEM_ALEMBIC_CHAIN_H
#define PGTANDEM_ALEMBIC_CHAIN_H

#include <stddef.h>

struct alembic_rev {
    char *file;
    char *revision;
    int revision_line;
    char **parents;         /* down_revision: none (a root), one, or several (a merge) */
    size_t nparents;
    int down_line;
    int first_op_line;      /* first statement of upgrade() other than pass/docstring; 0: none */
};

struct alembic_chain {
    struct alembic_rev *revs;
    size_t n;
    size_t head;            /* index of the one head once the chain is valid */
};

/* 1 when dir holds at least one *.py file with a module-level `revision =`. */
int alembic_dir_has_revisions(const char *dir);

/* Parses one revision file's text (path for messages). A file without a
 * `revision` line leaves out->revision NULL (not a revision: __init__.py).
 * Returns 0, or -1 with "path:line: ..." in err. */
int alembic_parse_rev(const char *text, const char *path, struct alembic_rev *out, char *err, size_t errlen);

/* Reads every revision of dir and checks the chain rules. Returns 0, or -1
 * with "file:line: what, and what to do" in err. */
int alembic_load_dir(const char *dir, struct alembic_chain *out, char *err, size_t errlen);
const struct alembic_rev *alembic_find(const struct alembic_chain *c, const char *revision);
void alembic_rev_free(struct alembic_rev *r);
void alembic_chain_free(struct alembic_chain *c);

#endif

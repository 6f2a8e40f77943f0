/* An Alembic versions/ directory read as a history for `migrate lint DIR`:
 * the module-level `revision` / `down_revision` assignments of every *.py
 * file (plain or annotated, `down_revision` None, a string or a tuple for a
 * merge) and whether upgrade() does anything. The chain rules are the
 * migration policy's, the same as for a directory of JSON migrations.
 * Python is not run: the assignments are literals in every file Alembic
 * writes, and a merge's upgrade() is judged by its lines (only `pass`,
 * comments and a docstring count as "no operations"). */
#include "alembic_chain.h"
#include "migration.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_PARENTS = 32 };

static const char *skip_blanks(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static const char *skip_space(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* The value after `name =` or `name: Annotation =` at the start of line;
 * NULL when the line assigns something else. */
static const char *assigned_value(const char *line, const char *name)
{
    size_t k = strlen(name);
    if (strncmp(line, name, k) != 0)
        return NULL;
    const char *p = skip_blanks(line + k);
    if (*p != ':' && *p != '=')
        return NULL;
    while (*p && *p != '=' && *p != '\n')
        p++;
    if (*p != '=' || p[1] == '=')
        return NULL;
    return skip_blanks(p + 1);
}

/* A quoted literal at *p (no escapes: revision ids are plain words). */
static char *read_string(const char **p)
{
    char q = **p;
    if (q != '\'' && q != '"')
        return NULL;
    const char *start = *p + 1, *end = strchr(start, q);
    if (!end || memchr(start, '\n', (size_t)(end - start)) || memchr(start, '\\', (size_t)(end - start)))
        return NULL;
    *p = end + 1;
    char *s = malloc((size_t)(end - start) + 1);
    if (s) {
        memcpy(s, start, (size_t)(end - start));
        s[end - start] = '\0';
    }
    return s;
}

static int add_parent(struct alembic_rev *r, char *name)
{
    if (!name || r->nparents == MAX_PARENTS) {
        free(name);
        return -1;
    }
    if (!r->parents && !(r->parents = calloc(MAX_PARENTS, sizeof *r->parents))) {
        free(name);
        return -1;
    }
    r->parents[r->nparents++] = name;
    return 0;
}

/* down_revision's value: None, 'rev', or ('a', 'b') / ['a', 'b'] (a tuple may
 * span lines). */
static int read_down_revision(const char *p, struct alembic_rev *r)
{
    if (strncmp(p, "None", 4) == 0)
        return 0;
    if (*p == '\'' || *p == '"')
        return add_parent(r, read_string(&p));
    if (*p != '(' && *p != '[')
        return -1;
    char close = *p == '(' ? ')' : ']';
    for (p = skip_space(p + 1); *p != close; p = skip_space(p)) {
        if (add_parent(r, read_string(&p)) != 0)
            return -1;
        p = skip_space(p);
        if (*p == ',')
            p++;
        else if (*p != close)
            return -1;
    }
    return 0;
}

static int line_has(const char *s, const char *needle)
{
    size_t k = strlen(needle);
    for (; *s && *s != '\n'; s++)
        if (strncmp(s, needle, k) == 0)
            return 1;
    return 0;
}

/* One line of upgrade()'s body; *doc is the docstring quote while inside one.
 * Returns 1 for a statement that does something. */
static int body_line_acts(const char *s, const char **doc)
{
    if (*doc) {
        if (line_has(s, *doc))
            *doc = NULL;
        return 0;
    }
    if (*s == '\n' || *s == '\r' || *s == '#' || *s == '\0')
        return 0;
    if (strncmp(s, "\"\"\"", 3) == 0 || strncmp(s, "'''", 3) == 0) {
        const char *quote = *s == '"' ? "\"\"\"" : "'''";
        if (!line_has(s + 3, quote))
            *doc = quote;
        return 0;
    }
    int is_pass = strncmp(s, "pass", 4) == 0 && strchr(" \t\r\n#", s[4] ? s[4] : '\n');
    return !is_pass;
}

static int parse_fail(const char *path, int line, char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "%s:%d: %s", path, line, what);
    return -1;
}

int alembic_parse_rev(const char *text, const char *path, struct alembic_rev *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!(out->file = strdup(path)))
        return parse_fail(path, 1, err, errlen, "out of memory");
    int in_upgrade = 0, line = 0;
    const char *doc = NULL, *v;
    for (const char *l = text; *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l)) {
        line++;
        const char *s = skip_blanks(l);
        if (in_upgrade && s == l && !doc && *s != '\n' && *s != '\r' && *s != '#')
            in_upgrade = 0;     /* back at module level */
        if (in_upgrade) {
            if (body_line_acts(s, &doc) && !out->first_op_line)
                out->first_op_line = line;
        } else if (strncmp(l, "def upgrade(", 12) == 0) {
            in_upgrade = 1;
        } else if ((v = assigned_value(l, "revision")) != NULL) {
            free(out->revision);
            out->revision_line = line;
            if (!(out->revision = read_string(&v)))
                return parse_fail(path, line, err, errlen, "revision must be a quoted revision id");
        } else if ((v = assigned_value(l, "down_revision")) != NULL) {
            if (out->down_line)
                return parse_fail(path, line, err, errlen, "down_revision is assigned twice");
            out->down_line = line;
            if (read_down_revision(v, out) != 0)
                return parse_fail(path, line, err, errlen, "down_revision must be None, a quoted revision id "
                                  "or a tuple of them (a merge)");
        }
    }
    if (out->revision && !out->down_line)
        return parse_fail(path, out->revision_line, err, errlen,
                          "revision without a down_revision line (None for the first revision)");
    return 0;
}

const struct alembic_rev *alembic_find(const struct alembic_chain *c, const char *revision)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->revs[i].revision && strcmp(c->revs[i].revision, revision) == 0)
            return &c->revs[i];
    return NULL;
}

static int has_child(const struct alembic_chain *c, const char *revision)
{
    for (size_t i = 0; i < c->n; i++)
        for (size_t k = 0; k < c->revs[i].nparents; k++)
            if (strcmp(c->revs[i].parents[k], revision) == 0)
                return 1;
    return 0;
}

static int check_links(const struct alembic_chain *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < c->n; i++) {
        const struct alembic_rev *r = &c->revs[i], *dup = alembic_find(c, r->revision);
        if (dup != r) {
            snprintf(err, errlen, "%s:%d: revision \"%s\" is also defined by %s; give one of them a new id",
                     r->file, r->revision_line, r->revision, dup->file);
            return -1;
        }
        for (size_t k = 0; k < r->nparents; k++) {
            if (!alembic_find(c, r->parents[k])) {
                snprintf(err, errlen, "%s:%d: down_revision \"%s\" of \"%s\" is not in the directory; migration "
                         "files are never deleted: restore it", r->file, r->down_line, r->parents[k], r->revision);
                return -1;
            }
            for (size_t j = 0; j < k; j++)
                if (strcmp(r->parents[j], r->parents[k]) == 0) {
                    snprintf(err, errlen, "%s:%d: \"%s\" is named twice in down_revision", r->file, r->down_line,
                             r->parents[k]);
                    return -1;
                }
        }
        if (r->nparents >= 2 && r->first_op_line) {
            snprintf(err, errlen, "%s:%d: \"%s\" is a merge (down_revision names %zu revisions) but its upgrade() "
                     "changes the schema; a merge only joins heads: move the operations to a new revision after "
                     "it", r->file, r->first_op_line, r->revision, r->nparents);
            return -1;
        }
    }
    return 0;
}

/* Kahn's order on the parent links: whatever is left over sits on a cycle. */
static int check_acyclic(const struct alembic_chain *c, char *err, size_t errlen)
{
    size_t *pending = calloc(c->n ? c->n : 1, sizeof *pending), done = 0;
    if (!pending)
        return parse_fail(c->revs[0].file, 1, err, errlen, "out of memory");
    for (size_t i = 0; i < c->n; i++)
        pending[i] = c->revs[i].nparents;
    for (int progress = 1; progress;) {
        progress = 0;
        for (size_t i = 0; i < c->n; i++) {
            if (pending[i] != 0)
                continue;
            pending[i] = (size_t)-1;
            done++;
            progress = 1;
            for (size_t j = 0; j < c->n; j++)
                for (size_t k = 0; k < c->revs[j].nparents; k++)
                    if (strcmp(c->revs[j].parents[k], c->revs[i].revision) == 0 && pending[j] != (size_t)-1)
                        pending[j]--;
        }
    }
    size_t stuck = 0;
    while (done < c->n && pending[stuck] == (size_t)-1)
        stuck++;
    free(pending);
    if (done == c->n)
        return 0;
    const struct alembic_rev *r = &c->revs[stuck];
    snprintf(err, errlen, "%s:%d: the down_revision links of \"%s\" lead back to it (a cycle); restore the "
             "original down_revision", r->file, r->down_line, r->revision);
    return -1;
}

static int check_ends(struct alembic_chain *c, char *err, size_t errlen)
{
    long root = -1, head = -1;
    for (size_t i = 0; i < c->n; i++) {
        const struct alembic_rev *r = &c->revs[i];
        if (r->nparents == 0) {
            if (root >= 0) {
                snprintf(err, errlen, "%s:%d: multiple roots: \"%s\" and \"%s\" (%s) both have down_revision = "
                         "None; point one of them at the other", r->file, r->down_line, r->revision,
                         c->revs[root].revision, c->revs[root].file);
                return -1;
            }
            root = (long)i;
        }
        if (has_child(c, r->revision))
            continue;
        if (head >= 0) {
            const struct alembic_rev *h = &c->revs[head];
            snprintf(err, errlen, "%s:%d: multiple heads: \"%s\" and \"%s\" (%s:%d) are both heads; join them "
                     "with a merge revision without operations: alembic merge -m \"merge heads\" %s %s", r->file,
                     r->revision_line, r->revision, h->revision, h->file, h->revision_line, h->revision,
                     r->revision);
            return -1;
        }
        head = (long)i;
    }
    c->head = (size_t)head;
    return 0;
}

int alembic_load_dir(const char *dir, struct alembic_chain *out, char *err, size_t errlen)
{
    char **names = NULL;
    size_t nnames = 0;
    memset(out, 0, sizeof *out);
    if (mig_list_files(dir, ".py", &names, &nnames, err, errlen) != 0)
        return -1;
    int rc = 0;
    out->revs = calloc(nnames ? nnames : 1, sizeof *out->revs);
    if (!out->revs)
        rc = parse_fail(dir, 0, err, errlen, "out of memory");
    for (size_t i = 0; rc == 0 && i < nnames; i++) {
        size_t len;
        char *text = mig_read_file(names[i], &len, err, errlen);
        struct alembic_rev r;
        rc = text ? alembic_parse_rev(text, names[i], &r, err, errlen) : -1;
        free(text);
        if (rc == 0 && r.revision)
            out->revs[out->n++] = r;
        else if (text)
            alembic_rev_free(&r);
    }
    mig_free_names(names, nnames);
    if (rc == 0 && out->n == 0) {
        snprintf(err, errlen, "%s: no Alembic revisions (*.py files with a revision line)", dir);
        rc = -1;
    }
    if (rc == 0)
        rc = check_links(out, err, errlen);
    if (rc == 0)
        rc = check_acyclic(out, err, errlen);
    if (rc == 0)
        rc = check_ends(out, err, errlen);
    if (rc != 0)
        alembic_chain_free(out);
    return rc;
}

int alembic_dir_has_revisions(const char *dir)
{
    char **names = NULL, err[256];
    size_t n = 0;
    int found = 0;
    if (mig_list_files(dir, ".py", &names, &n, err, sizeof err) != 0)
        return 0;
    for (size_t i = 0; i < n && !found; i++) {
        size_t len;
        char *text = mig_read_file(names[i], &len, err, sizeof err);
        for (const char *l = text; l && *l && !found; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l))
            found = assigned_value(l, "revision") != NULL;
        free(text);
    }
    mig_free_names(names, n);
    return found;
}

void alembic_rev_free(struct alembic_rev *r)
{
    for (size_t k = 0; k < r->nparents; k++)
        free(r->parents[k]);
    free(r->parents);
    free(r->file);
    free(r->revision);
    memset(r, 0, sizeof *r);
}

void alembic_chain_free(struct alembic_chain *c)
{
    for (size_t i = 0; c->revs && i < c->n; i++)
        alembic_rev_free(&c->revs[i]);
    free(c->revs);
    memset(c, 0, sizeof *c);
}

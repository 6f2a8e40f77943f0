/* bin/pgtandem migrate lint FILE.sql|FILE.json|DIR: the SQL checked
 * statement by statement (sql_lint.c), JSON migrations and chains checked
 * as start would read and plan them, an Alembic versions/ directory's
 * chain rules, and with --db what the live catalog refuses and whether
 * applied migrations were changed since. */
#include "migrate_cli_internal.h"
#include "migrate_tool.h"
#include "sql_dir.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alembic_chain.h"
#include "engine.h"
#include "migration.h"
#include "migration_lifecycle.h"
#include "migration_plan.h"
#include "sql_convert.h"
#include "sql_lint.h"

#define CATALOG_RULE "catalog-refuses"
#define CATALOG_FIX "change the migration as the message says; `pgtandem migrate plan FILE --db` shows the same " \
                    "refusal, and start refuses it before its first DDL"

/* Where operation `index` is written in a JSON migration: the occurrence of
 * its operation key that belongs to it. 0 when unknown (a migration
 * converted from SQL has no such text). */
static void locate_op(const struct migration *m, int index, int *line, int *col)
{
    *line = 0;
    *col = 0;
    if (index < 0 || (size_t)index >= m->nops || !m->json || sqlc_is_sql_file(m->file))
        return;
    char key[40];
    snprintf(key, sizeof key, "\"%s\"", mig_op_name(m->ops[index].kind));
    int nth = 0;
    for (int i = 0; i < index; i++)
        nth += m->ops[i].kind == m->ops[index].kind;
    const char *hit = strstr(m->json, "\"operations\"");
    for (hit = hit ? strstr(hit, key) : NULL; hit && nth > 0; nth--)
        hit = strstr(hit + 1, key);
    if (hit)
        mig_text_pos(m->json, hit, line, col);
}

/* A refusal of the live catalog ("FILE: operations[i].op: object, why, what
 * to do") as a lint finding at the operation it names. */
static void add_refusal(const struct migration *m, const char *msg, struct lint_report *lr)
{
    int index = -1, line, col;
    const char *at = strstr(msg, "operations[");
    if (!at || sscanf(at, "operations[%d]", &index) != 1)
        index = -1;
    locate_op(m, index, &line, &col);
    const struct mig_op *op = index >= 0 && (size_t)index < m->nops ? &m->ops[index] : NULL;
    const char *object = op ? (op->table ? op->table : op->from) : NULL;
    char what[300];
    if (op)
        snprintf(what, sizeof what, "operations[%d].%s%s%s%s%s", index, mig_op_name(op->kind),
                 object ? " on " : "", object ? op->schema : "", object ? "." : "", object ? object : "");
    else
        snprintf(what, sizeof what, "migration \"%s\"", m->name);
    lint_report_add(lr, CATALOG_RULE, m->file, line, col, at ? at : msg, CATALOG_FIX, what);
}

/* Recorded on the database (other than rolled back): the catalog already
 * has its changes, or some of them. */
static int is_applied(json_t *applied, const struct migration *m)
{
    const char *status = json_string_value(json_object_get(json_object_get(applied, m->name), "status"));
    return status && mig_status_of_word(status) != MIG_ST_ROLLED_BACK;
}

/* What start would refuse before its first DDL (the plan against the live
 * catalog, the dependents of every column it changes, the live checks), for
 * the first migration not applied yet: the later ones build on it, so the
 * catalog cannot judge them before it is applied. Changes nothing. */
static int lint_catalog(const struct cli *c, struct engine *e, json_t *applied, struct migration *list, size_t n,
                        struct lint_report *lr, char *err, size_t errlen)
{
    size_t i = 0;
    while (i < n && is_applied(applied, &list[i]))
        i++;
    if (i == n)
        return ENGINE_OK;
    struct mig_plan plan;
    char why[2048];
    int rc = engine_prepare(e, &list[i], &plan, why, sizeof why);
    if (rc == ENGINE_OK)
        mig_plan_free(&plan);
    else if (rc == ENGINE_INVALID)
        add_refusal(&list[i], why, lr);
    else
        return snprintf(err, errlen, "%s", why), rc;
    if (rc == ENGINE_OK && !c->quiet && !c->json)
        printf("lint: \"%s\" passes the live catalog's validation (what start checks before its first DDL)\n",
               list[i].name);
    if (i + 1 < n && !c->quiet && !c->json)
        printf("lint: %zu later migration(s) are checked against the catalog once \"%s\" is applied\n",
               n - i - 1, list[i].name);
    return ENGINE_OK;
}

static int lint_against_db(const struct cli *c, struct migration *list, size_t n, struct lint_report *lr,
                           char *err, size_t errlen)
{
    struct engine e;
    int rc = migrate_cli_open_engine(c, &e, 0, err, errlen);
    if (rc != ENGINE_OK)
        return rc;
    json_t *applied = NULL;
    rc = engine_applied(&e, &applied, err, errlen);
    for (size_t i = 0; rc == ENGINE_OK && i < n; i++) {
        json_t *a = json_object_get(applied, list[i].name);
        const char *sum = json_string_value(json_object_get(a, "checksum"));
        const char *status = json_string_value(json_object_get(a, "status"));
        if (sum && strcmp(sum, list[i].checksum) != 0 && status && mig_status_of_word(status) != MIG_ST_ROLLED_BACK) {
            snprintf(err, errlen, "%s: migration \"%s\" was applied (%s) with checksum %.12s but the file now "
                     "has %.12s; applied migrations are history: restore the file and put the change in a "
                     "new migration", list[i].file, list[i].name, status, sum, list[i].checksum);
            rc = ENGINE_INVALID;
        }
    }
    if (rc == ENGINE_OK)
        rc = lint_catalog(c, &e, applied, list, n, lr, err, errlen);
    json_decref(applied);
    engine_close(&e);
    return rc;
}

/* lint FILE.sql --db: the file converted as start would convert it, then
 * checked against the catalog like a JSON migration. */
static int lint_sql_against_db(const struct cli *c, struct lint_report *lr, char *err, size_t errlen)
{
    struct migration m;
    int rc = migrate_cli_load_migration(c, c->file, &m, err, errlen) == 0 ? ENGINE_OK : ENGINE_INVALID;
    if (rc == ENGINE_OK)
        rc = lint_against_db(c, &m, 1, lr, err, errlen);
    mig_free(&m);
    return rc;
}

/* JSON migrations, one file or a directory's chain: structure, plans, the
 * applied checksums, and the SQL inside their `sql` operations. */
static int lint_json(const struct cli *c, int is_dir, struct lint_report *lr, char *err, size_t errlen)
{
    struct migration *list = NULL;
    size_t n = 0;
    int rc;
    if (is_dir) {
        rc = mig_load_dir(c->file, &list, &n, err, errlen) == 0 ? ENGINE_OK : ENGINE_INVALID;
    } else {
        list = calloc(1, sizeof *list);
        rc = list && migrate_cli_load_migration(c, c->file, list, err, errlen) == 0 ? ENGINE_OK : ENGINE_INVALID;
        n = 1;
    }
    for (size_t i = 0; rc == ENGINE_OK && i < n; i++) {
        struct mig_plan plan;
        rc = mig_plan_build(&list[i], NULL, &plan, err, errlen) == 0 ? ENGINE_OK : ENGINE_INVALID;
        if (rc == ENGINE_OK)
            mig_plan_free(&plan);
        if (rc == ENGINE_OK && sql_lint_migration(&list[i], lr, err, errlen) != 0)
            rc = ENGINE_INVALID;
    }
    if (rc == ENGINE_OK && c->db)
        rc = lint_against_db(c, list, n, lr, err, errlen);
    if (rc == ENGINE_OK && !c->quiet && !c->json && lr->blocking == 0)
        printf("lint: %zu migration(s) OK%s%s\n", n, n ? ", head " : "", n ? list[n - 1].name : "");
    mig_free_list(list, n);
    return rc;
}

/* Applied Alembic revisions are history: every revision alembic_version
 * names has its file, and one pgtandem applied still has the down_revision
 * it was applied with (the policy's "never change down_revision"). */
static int alembic_against_db(const struct cli *c, const struct alembic_chain *ch, char *err, size_t errlen)
{
    struct engine e;
    int rc = migrate_cli_open_engine(c, &e, 0, err, errlen);
    if (rc != ENGINE_OK)
        return rc;
    json_t *versions = NULL, *applied = NULL;
    rc = engine_alembic_versions(&e, &versions, err, errlen);
    if (rc == ENGINE_OK)
        rc = engine_applied(&e, &applied, err, errlen);
    size_t i;
    json_t *v;
    json_array_foreach(versions, i, v) {
        if (rc == ENGINE_OK && !alembic_find(ch, json_string_value(v))) {
            snprintf(err, errlen, "%s: the database is at revision \"%s\" (alembic_version) but no file defines "
                     "it; applied migrations are never deleted: restore its file", c->file, json_string_value(v));
            rc = ENGINE_INVALID;
        }
    }
    for (i = 0; rc == ENGINE_OK && i < ch->n; i++) {
        const struct alembic_rev *r = &ch->revs[i];
        json_t *a = json_object_get(applied, r->revision);
        const char *status = json_string_value(json_object_get(a, "status"));
        const char *parent = json_string_value(json_object_get(a, "parent"));
        int applied_here = status && mig_status_of_word(status) != MIG_ST_ROLLED_BACK && parent && r->nparents == 1;
        if (applied_here && strcmp(parent, r->parents[0]) != 0) {
            snprintf(err, errlen, "%s:%d: revision \"%s\" was applied (%s) after \"%s\" but its down_revision "
                     "is now \"%s\"; applied migrations are history: restore down_revision and put the change "
                     "in a new revision", r->file, r->down_line, r->revision, status, parent, r->parents[0]);
            rc = ENGINE_INVALID;
        }
    }
    json_decref(versions);
    json_decref(applied);
    engine_close(&e);
    return rc;
}

/* An Alembic versions/ directory: the chain rules, then with --db the
 * applied history. */
static int lint_alembic(const struct cli *c, char *err, size_t errlen)
{
    struct alembic_chain ch;
    if (alembic_load_dir(c->file, &ch, err, errlen) != 0)
        return ENGINE_INVALID;
    int rc = c->db ? alembic_against_db(c, &ch, err, errlen) : ENGINE_OK;
    if (rc == ENGINE_OK && !c->quiet && !c->json)
        printf("lint: %zu Alembic revision(s) OK, head %s\n", ch.n, ch.revs[ch.head].revision);
    alembic_chain_free(&ch);
    return rc;
}

static int dir_has_json(const char *dir)
{
    DIR *d = opendir(dir);
    const struct dirent *e;
    int found = 0;
    while (d && !found && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        found = n > 5 && !strcmp(e->d_name + n - 5, ".json");
    }
    if (d)
        closedir(d);
    return found;
}

/* lint DIR --db: the files the directory's tool applied are its own
 * history (migrate_tool.c); the rest are linted as start would run them. */
static int lint_dir_left_to_pgtandem(const struct cli *c, struct lint_report *lr, size_t *nsql, char *err,
                                     size_t errlen)
{
    struct sql_dir d;
    char **parents = NULL;
    if (sql_dir_read(c->file, &d, err, errlen) != 0)
        return ENGINE_INVALID;
    int rc = migrate_tool_filter(c, &d, &parents, err, errlen) == 0 ? ENGINE_OK : ENGINE_INVALID;
    if (rc == ENGINE_OK && sql_lint_dir_files(&d, lr, nsql, err, errlen) != 0)
        rc = ENGINE_INVALID;
    for (size_t i = 0; parents && i < d.n; i++)
        free(parents[i]);
    free(parents);
    sql_dir_free(&d);
    return rc;
}

/* lint FILE.sql|FILE.json|DIR: SQL is checked statement by statement for
 * what would block or break the running application; JSON migrations as
 * before; with --db, what the live catalog refuses as well. Anything
 * blocking or refused makes the exit status 2. */
int migrate_cli_lint(const struct cli *c)
{
    char err[2048];
    if (migrate_cli_need_file(c))
        return EXIT_INVALID;
    struct stat st;
    int is_dir = stat(c->file, &st) == 0 && S_ISDIR(st.st_mode);
    int is_sql = !is_dir && sqlc_is_sql_file(c->file);
    struct lint_report lr = {0};
    size_t nsql = 0;
    int rc = ENGINE_OK;
    if (is_dir && c->db)
        rc = lint_dir_left_to_pgtandem(c, &lr, &nsql, err, sizeof err);
    else if (is_dir)
        rc = sql_lint_dir(c->file, &lr, &nsql, err, sizeof err) == 0 ? ENGINE_OK : ENGINE_INVALID;
    else if (is_sql)
        rc = sql_lint_file(c->file, &lr, err, sizeof err) == 0 ? ENGINE_OK : ENGINE_INVALID;
    int is_alembic = is_dir && alembic_dir_has_revisions(c->file);
    if (rc == ENGINE_OK && is_alembic)
        rc = lint_alembic(c, err, sizeof err);
    if (rc == ENGINE_OK && !is_sql && (!is_dir || (nsql == 0 && !is_alembic) || dir_has_json(c->file)))
        rc = lint_json(c, is_dir, &lr, err, sizeof err);
    if (rc == ENGINE_OK && is_sql && c->db)
        rc = lint_sql_against_db(c, &lr, err, sizeof err);
    if (c->json || c->lint_sarif) {
        char *doc = c->json ? lint_report_json(&lr) : lint_report_sarif(&lr);
        printf("%s\n", doc ? doc : "{}");
        free(doc);
    } else if (c->lint_github) {
        lint_report_github(&lr, stdout);
    } else {
        lint_report_print(&lr, stdout);
    }
    if (rc == ENGINE_OK && lr.blocking) {
        size_t refused = 0;
        for (size_t i = 0; i < lr.n; i++)
            refused += !strcmp(lr.v[i].rule, CATALOG_RULE);
        int off = 0;
        if (lr.blocking > refused)
            off = snprintf(err, sizeof err, "%zu statement(s) would block or break the running application; each "
                           "finding names the online alternative (pgtandem migrate start FILE.sql runs the "
                           "convertible ones that way)%s", lr.blocking - refused, refused ? "; " : "");
        if (refused && off >= 0 && (size_t)off < sizeof err)
            snprintf(err + off, sizeof err - (size_t)off, "%zu operation(s) refused by the live catalog, as start "
                     "would refuse them before its first DDL; nothing was changed", refused);
        rc = ENGINE_INVALID;
    } else if (rc == ENGINE_OK && nsql && !c->quiet && !c->json && !c->lint_github && !c->lint_sarif) {
        printf("lint: %zu SQL file(s), nothing that blocks the running application\n", nsql);
    }
    lint_report_free(&lr);
    return migrate_cli_report(rc, err);
}

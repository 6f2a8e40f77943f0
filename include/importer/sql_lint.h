/* Lint for migration SQL: flags statements that would block or break a live
 * application if run as written (by `alembic upgrade`, drizzle-kit, psql),
 * each with a rule id, its position, why (which lock, what breaks) and the
 * online alternative. The rules follow what squawk and strong_migrations
 * check; they read the SQL only. With --db, `migrate lint` adds what the
 * live catalog refuses (rule catalog-refuses, see migrate_lint.c). */
#ifndef PGTANDEM_SQL_LINT_H
#define PGTANDEM_SQL_LINT_H

#include <stddef.h>
#include <stdio.h>

#include "migration.h"

struct lint_finding {
    const char *rule;       /* e.g. "create-index-not-concurrently" */
    char *file;
    int line, col;
    int blocking;           /* 1: blocks or breaks the running application */
    char *why;
    const char *fix;        /* the online alternative */
    char *statement;        /* the statement's first line, shortened */
};

struct lint_report {
    struct lint_finding *v;
    size_t n, cap;
    size_t blocking;
    char **skipped;         /* "FILE: why it is not a migration", for a directory's files */
    size_t nskipped;
};

/* Lints SQL text (file names it in findings; findings are appended to r).
 * Returns 0, or -1 with
 * "FILE:LINE:COL: message" in err when the SQL does not parse. */
int sql_lint_text(const char *file, const char *text, size_t len, struct lint_report *r, char *err, size_t errlen);

/* The same for a file, for the `sql` operations of a JSON migration, and
 * for every SQL migration of a directory (in its tool's layout and order,
 * sql_dir.h; *nfiles says how many);
 * a directory's psql scripts are no migrations: r->skipped says which and why. */
int sql_lint_file(const char *path, struct lint_report *r, char *err, size_t errlen);
int sql_lint_migration(const struct migration *m, struct lint_report *r, char *err, size_t errlen);
int sql_lint_dir(const char *dir, struct lint_report *r, size_t *nfiles, char *err, size_t errlen);
/* The same for the files of d as read (lint DIR --db: those its tool did
 * not apply). */
struct sql_dir;
int sql_lint_dir_files(const struct sql_dir *d, struct lint_report *r, size_t *nfiles, char *err, size_t errlen);

/* Appends a blocking finding (strings are copied; fix is kept as given).
 * line 0: no position (a migration converted from SQL, say). */
void lint_report_add(struct lint_report *r, const char *rule, const char *file, int line, int col,
                     const char *why, const char *fix, const char *statement);

void lint_report_print(const struct lint_report *r, FILE *out);
/* GitHub workflow commands, one a finding (::error file=...::message),
 * and a SARIF 2.1.0 log (caller frees): sql_lint_formats.c. */
void lint_report_github(const struct lint_report *r, FILE *out);
char *lint_report_sarif(const struct lint_report *r);
/* {"findings": [...], "blocking": N}; caller frees. */
char *lint_report_json(const struct lint_report *r);
void lint_report_free(struct lint_report *r);

#endif

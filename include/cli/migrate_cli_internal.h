/* bin/pgtandem migrate's files among themselves (migrate_cli.c: parsing,
 * dispatch and the small commands; migrate_start.c, migrate_complete.c,
 * migrate_lint.c): the parsed command line and the steps every command
 * takes. The entry point is migrate_main in cli.h. Every function that
 * returns an exit status returns 0 success, 1 operational failure,
 * EXIT_INVALID bad input. */
#ifndef PGTANDEM_MIGRATE_CLI_INTERNAL_H
#define PGTANDEM_MIGRATE_CLI_INTERNAL_H

#include <stddef.h>

#include "engine.h"

#define EXIT_INVALID 2

struct evidence;
struct migration;
struct json_t;

struct cli {
    const char *command;
    const char *file;
    const char *db;
    const char *proxy;      /* drive a running proxy's engine instead of --db */
    int json;
    int lint_github, lint_sarif;    /* lint --format github | sarif */
    int quiet;
    int force;              /* complete despite sessions that bypass the proxies */
    int revert_window_s;    /* complete: keep the old shape for a revert this long (proxy only) */
    int estimate;           /* plan: measure the backfill on a sample of each table */
    int each;               /* start DIR: each pending file its own migration, or refused */
    int merge;              /* start DIR: the pending files as one migration */
    long estimate_rows;     /* --estimate-rows; 0: not given, ESTIMATE_DEFAULT_ROWS */
    const char *name, *parent;  /* FILE.sql: the converted migration's name and parent */
    const char *evidence;       /* start/complete/rollback: the evidence bundle's directory */
    struct evidence *ev;        /* while a step runs with --evidence */
    struct engine_options opt;
};

/* migrate_cli.c */
/* rc, after printing err when rc is not 0. */
int migrate_cli_report(int rc, const char *err);
/* 0, or -1 after saying what is missing. */
int migrate_cli_need_db(const struct cli *c);
int migrate_cli_need_file(const struct cli *c);
/* A migration file: JSON as it is, FILE.sql converted first. */
int migrate_cli_load_migration(const struct cli *c, const char *path, struct migration *m, char *err,
                               size_t errlen);
/* engine_open with the command line's options; closed again on failure. */
int migrate_cli_open_engine(const struct cli *c, struct engine *e, int exclusive, char *err, size_t errlen);

/* migrate_start.c: start (resume: 1) here, and any command with --proxy. */
int migrate_cli_start(const struct cli *c, int resume);
int migrate_cli_remote(const struct cli *c);

/* migrate_dir.c: DIR as a chain (JSON with parents, or SQL migrations in
 * their tool's layout, sql_dir.h). */
int migrate_cli_is_directory(const char *path);
/* Every migration of DIR, parent-first. */
int migrate_cli_load_chain(const struct cli *c, struct migration **out, size_t *n, char *err, size_t errlen);
/* The body POST /migrations takes for DIR (caller frees), NULL with err. */
char *migrate_cli_chain_body(const struct cli *c, char *err, size_t errlen);
/* What start DIR would run: the pending migrations (all of them without
 * --db) as one. */
int migrate_cli_load_pending(const struct cli *c, struct migration *m, char *err, size_t errlen);

/* migrate_complete.c */
int migrate_cli_complete(const struct cli *c);
/* The proxies registered on the database (a JSON array; empty when none
 * or when the database cannot say). */
struct json_t *migrate_cli_live_proxies(const char *db);

/* migrate_lint.c */
int migrate_cli_lint(const struct cli *c);

#endif

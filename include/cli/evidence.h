/* Evidence bundles: `migrate start|complete|rollback --evidence DIR` keeps
 * what a staging runbook asks for, one folder per step ("01-start-<UTC>",
 * "02-complete-<UTC>", ...) and one SHA256SUMS for the whole bundle that
 * only ever grows, so `sha256sum -c SHA256SUMS` checks every step taken. */
#ifndef PGTANDEM_EVIDENCE_H
#define PGTANDEM_EVIDENCE_H

#include <stddef.h>
#include <sys/types.h>

#include "backfill.h"
#include "migration.h"

enum { EVIDENCE_OK = 0, EVIDENCE_FAILED = 1, EVIDENCE_INVALID = 2 };

struct evidence_table {
    char *schema, *table;
};

struct evidence {
    char *dir;                  /* the bundle */
    char *step;                 /* this step's folder in it */
    char *path;                 /* dir/step */
    const char *db;             /* for snapshots, counts and verify; never written anywhere */
    char *pg_dump;
    char restrict_arg[64];      /* "--restrict-key=<random>", one per step so its two snapshots diff cleanly;
                                 * empty when pg_dump does not take it */
    int log_fd;
    int saved_fd[2];            /* stdout and stderr while they are teed into the log */
    pid_t tee_pid[2];
    struct evidence_table *tables;
    size_t ntables;
    int failed;                 /* some evidence could not be taken (noted in the log) */
};

/* Checks DIR (created when missing), finds pg_dump and creates this step's
 * folder and log. Nothing else happens before it succeeds. Returns
 * EVIDENCE_INVALID for an unusable DIR, EVIDENCE_FAILED without pg_dump. */
int evidence_open(struct evidence *ev, const char *dir, const char *command, const char *db, char *err,
                  size_t errlen);
/* start: the migration as given (the .sql source too) and its plan. */
void evidence_migration(struct evidence *ev, const struct migration *m, const char *source);
/* complete/rollback: the migration in progress as the database records it. */
void evidence_current_migration(struct evidence *ev);
/* Snapshot, row counts (and verify, while a migration is active) before the
 * step; then everything printed goes to the log as well. */
void evidence_before(struct evidence *ev, int verify);
/* A timestamped line in the run log. */
void evidence_note(struct evidence *ev, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Runs fn with stdout going to the log only: reports the terminal has no
 * use for. Returns fn's result. */
int evidence_into_log(struct evidence *ev, const char *title, int (*fn)(void *), void *arg);
void evidence_batch(struct evidence *ev, const struct backfill *b, int finished);
/* Ends the step: the log's last line, snapshot after, diff, counts, verify,
 * the new checksums. Frees ev. Returns EVIDENCE_OK or EVIDENCE_FAILED. */
int evidence_finish(struct evidence *ev, int step_rc, int verify);

#endif

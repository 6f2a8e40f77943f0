/* The cutover: the contract transaction run while the relay holds client
 * traffic at transaction boundaries, retried with backoff.
 *
 * With a fleet (fleet.h), every other live proxy holds its traffic in step
 * (2): this proxy's own hold begins once the fleet's hold row is written
 * and the others are being told, so that no proxy holds while the others
 * are still hearing of it. The contract commits only while they all still
 * hold, and they re-prepare and resume with us. Sessions that bypass every
 * proxy are looked at in the contract's transaction, once every proxy's
 * acknowledgement (with its sessions) is in its row: one in a transaction
 * or that touched a migrated table refuses the cutover unless it is forced.
 *
 * One attempt: (1) look for what would block it — sessions through this
 * proxy inside a transaction for more than half the drain budget, and
 * transactions holding locks on the migrated tables for longer than the
 * lock timeout — and if there are any, wait for a better moment without
 * holding anyone; (2) hold traffic until every session is at a boundary;
 * (3) run the contract's statements in a transaction with a short
 * lock_timeout and a statement budget; (4) only then send the state update
 * and COMMIT, as a second round trip, so a contract whose coordinator died
 * while it waited for a lock never commits (its backend reads EOF instead
 * of COMMIT and rolls back; client_connection_check_interval ends the wait
 * itself); (5) re-prepare the sessions' statements and release. */
#ifndef PGTANDEM_CUTOVER_H
#define PGTANDEM_CUTOVER_H

#include <stdint.h>

#include "metrics.h"

struct relay;
struct fleet;
struct pgasync;
struct event;
struct event_base;
struct json_t;

struct cutover_options {
    int drain_timeout_ms;     /* longest hold while sessions finish their transactions */
    int lock_timeout_ms;      /* the contract's lock_timeout */
    int statement_budget_ms;  /* the contract's statement_timeout */
    int max_attempts;
    int force;                /* go on despite sessions that bypass the proxies */
    int revert_window_s;      /* complete: keep the old shape this long for a revert (0: contract at once) */
};

/* Where an attempt's time went, in ms (-1: the step was not reached). */
struct cutover_steps {
    double announce_ms;    /* fleet: writing the hold's row, before anyone holds */
    double all_held_ms;    /* from the hold's row (alone: our hold) until every proxy held, us last */
    double local_drain_ms; /* from our hold until our own sessions were at a boundary */
    double body_ms;        /* BEGIN and the DDL (fleet: and the wait for acknowledgements and the bypassing look) */
    double commit_ms;      /* the commit check, the state update and COMMIT */
    double release_ms;     /* from COMMIT's answer until traffic flows (re-prepare, release) */
    int acks_peer, acks_database; /* fleet: how the other proxies' "held" came first */
};

struct cutover_report {
    int attempts;
    int blocked_checks;       /* attempts that found a blocker and held nobody */
    double total_pause_ms, max_pause_ms, lock_wait_ms;
    uint32_t held_messages;
    int reprepared;
    char blockers[512];       /* who blocked the last attempt that was blocked (kept after success) */
    char error[768];          /* why it gave up or failed */
    char bypassing[512];      /* sessions through no proxy, seen while held */
    struct cutover_steps steps; /* of the last attempt that ran its contract */
};

enum cutover_outcome {
    CUTOVER_COMMITTED,   /* the contract committed; traffic flows again */
    CUTOVER_GAVE_UP,     /* every attempt was blocked or timed out; nothing changed */
    CUTOVER_FAILED,      /* an error that retrying will not fix; nothing changed */
    CUTOVER_REFUSED      /* sessions bypass the proxies (not forced); nothing changed */
};

/* How each attempt ended, for GET /metrics (cutover_attempt_outcomes
 * names them): committed; blocked (a blocker was seen, nobody was held);
 * abandoned (held, then a drain, lock or fleet timeout; retried or given
 * up); refused (sessions bypass the proxies); failed (an error). */
enum cutover_attempt_outcome {
    CUTOVER_ATTEMPT_COMMITTED, CUTOVER_ATTEMPT_BLOCKED, CUTOVER_ATTEMPT_ABANDONED, CUTOVER_ATTEMPT_REFUSED,
    CUTOVER_ATTEMPT_FAILED, CUTOVER_ATTEMPT_OUTCOMES
};
extern const char *const cutover_attempt_outcomes[CUTOVER_ATTEMPT_OUTCOMES];

/* Kept across the cutover's retries and its runs (complete, finalize,
 * revert) for one migration; the runner empties them for the next one. */
struct cutover_totals {
    uint64_t attempts[CUTOVER_ATTEMPT_OUTCOMES];
    struct histogram hold_seconds;   /* how long each attempt held traffic */
};
void cutover_totals_reset(struct cutover_totals *t);

struct cutover;
/* The contract's statements (no BEGIN/COMMIT) and the state update that
 * commits with them, built for the attempt in progress. Caller frees. */
typedef char *(*cutover_sql_fn)(void *ctx, const struct cutover_report *rep, int tail);
typedef void (*cutover_done_fn)(void *ctx, enum cutover_outcome outcome, const struct cutover_report *rep);

struct cutover {
    struct relay *relay;
    struct pgasync *db;
    struct event *retry_timer;
    struct cutover_options opt;
    struct cutover_report rep;
    char *tables;               /* Postgres text[] literal of the migrated tables */
    char seen[512];             /* blockers found by the attempt in progress */
    uint64_t hold_started_us;
    int holding;                /* the local relay is held (or draining) */
    struct fleet *fleet;        /* NULL: this proxy alone */
    char migration[128];
    unsigned int seed;          /* rand_r state of the retry jitter */
    char failed_sqlstate[6];    /* of the contract statement that failed the attempt */
    int waiting;                /* holds not yet answered: local, fleet */
    int contract;               /* 0: not sent; 1: the body is; 2: the COMMIT is (its outcome unknown until answered) */
    int refused;                /* rolling back because sessions bypass the fleet */
    uint64_t t_asked, t_hold, t_drained, t_all_held, t_body, t_commit; /* monotonic us, this attempt */
    uint64_t t_announced;       /* fleet: the hold's row written */
    int hold_failed;
    int attempt_open;           /* the attempt in progress is not yet counted in totals */
    struct cutover_totals totals;
    char hold_why[640];
    cutover_sql_fn build_sql;
    cutover_done_fn done;
    void *ctx;
    /* Called once the state update committed, while traffic is still held
     * (after the re-prepare, before the release): what the sessions must
     * see from their next transaction on is decided here. May be NULL. */
    void (*committed)(void *ctx);
};

/* Starts the first attempt; `done` is called exactly once (possibly before
 * this returns). Returns -1 when it cannot start (out of memory). */
int cutover_start(struct cutover *c, struct event_base *base, struct relay *relay, struct fleet *fleet,
                  struct pgasync *db, const struct cutover_options *opt, const char *migration,
                  const char *tables_literal, cutover_sql_fn build_sql, cutover_done_fn done, void *ctx);
/* Stops a cutover in progress (releases a hold); done is not called. */
void cutover_abort(struct cutover *c);
int cutover_running(const struct cutover *c);
struct json_t *cutover_report_json(const struct cutover_report *rep);

/* What follows an attempt that did not commit. sqlstate: the failed
 * contract statement's, or NULL when nothing failed in the database (the
 * drain timed out, a blocker was seen, a hold failed). Only a lock race
 * (55P03) or a fleet that stopped holding is worth another attempt; within
 * max_attempts it gets one. Pure: unit-tested in tests/unit/test_cutover.c. */
enum cutover_next { CUTOVER_NEXT_RETRY, CUTOVER_NEXT_GIVE_UP, CUTOVER_NEXT_FAIL };
enum cutover_next cutover_next_after(const char *sqlstate, int attempts, int max_attempts);

#endif

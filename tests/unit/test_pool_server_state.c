/* Unit tests for the pooled server's state machine: every move of the
 * table, allowed or forbidden, with the pool's counts after each, and
 * pool_server_set_state on real pool structs (counts kept; a forbidden
 * move logged and made in release builds, an abort under PGT_DEBUG). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool.h"
#include "pool_server_state.h"
#include "unit.h"

/* The table as the pool's code moves servers: login after connecting,
 * idle after login, lent only from idle, given back idle or (a cancel on
 * its way) cancelling, idle again once the cancel arrived. */
static int expected(enum pool_server_state from, enum pool_server_state to)
{
    switch (from) {
    case PSRV_CONNECTING: return to == PSRV_LOGIN;
    case PSRV_LOGIN: return to == PSRV_IDLE;
    case PSRV_IDLE: return to == PSRV_LENT;
    case PSRV_LENT: return to == PSRV_IDLE || to == PSRV_CANCELLING;
    case PSRV_CANCELLING: return to == PSRV_IDLE;
    default: return 0;
    }
}

/* Each of the 25 pairs: the table answers as expected, and moving one
 * server among three others (one per state it could be in) changes only
 * the two counts involved. */
static void test_every_move(void)
{
    int table_ok = 1, counts_ok = 1, allowed = 0;
    for (int f = 0; f < PSRV_NSTATES; f++)
        for (int t = 0; t < PSRV_NSTATES; t++) {
            enum pool_server_state from = (enum pool_server_state)f, to = (enum pool_server_state)t;
            int yes = pool_server_state_allowed(from, to);
            if (yes != expected(from, to)) {
                printf("FAIL table: %s -> %s is %s\n", pool_server_state_name(from), pool_server_state_name(to),
                       yes ? "allowed" : "refused");
                table_ok = 0;
            }
            allowed += yes;
            struct pool_server_counts c;
            memset(&c, 0, sizeof c);
            for (int st = 0; st < PSRV_NSTATES; st++)
                pool_server_counts_enter(&c, (enum pool_server_state)st);
            pool_server_counts_enter(&c, from);
            if (yes)
                pool_server_counts_move(&c, from, to);
            for (int st = 0; st < PSRV_NSTATES; st++) {
                uint32_t want = 1 + (uint32_t)(st == (yes ? t : f));
                counts_ok &= c.in_state[st] == want;
            }
            counts_ok &= pool_server_counts_total(&c) == PSRV_NSTATES + 1;
        }
    CHECK("table: every pair answers as the pool moves servers", table_ok);
    CHECK("table: six moves are allowed, nineteen refused", allowed == 6);
    CHECK("counts: a move changes the two counts involved only", counts_ok);
    CHECK("table: staying put is not a move", !pool_server_state_allowed(PSRV_IDLE, PSRV_IDLE) &&
                                                  !pool_server_state_allowed(PSRV_LENT, PSRV_LENT));
    CHECK("table: a lent server is never lent again without being given back",
          !pool_server_state_allowed(PSRV_CANCELLING, PSRV_LENT));
    CHECK("table: out-of-range states are refused",
          !pool_server_state_allowed((enum pool_server_state)42, PSRV_IDLE) &&
              !pool_server_state_allowed(PSRV_IDLE, (enum pool_server_state)-1) && !pool_server_state_valid(5) &&
              pool_server_state_valid(PSRV_CANCELLING));
    CHECK("names: every state has one", !strcmp(pool_server_state_name(PSRV_LENT), "active") &&
                                            !strcmp(pool_server_state_name(PSRV_CANCELLING), "cancelling") &&
                                            !strcmp(pool_server_state_name((enum pool_server_state)99), "invalid"));
}

static struct pool_server *enter(struct pool *p)
{
    struct pool_server *ps = calloc(1, sizeof *ps);
    ps->pool = p;
    ps->state = PSRV_CONNECTING;
    pool_server_counts_enter(&p->counts, PSRV_CONNECTING);
    return ps;
}

static int counts_are(const struct pool *p, uint32_t connecting, uint32_t login, uint32_t idle, uint32_t lent,
                      uint32_t cancelling)
{
    const uint32_t *n = p->counts.in_state;
    return n[PSRV_CONNECTING] == connecting && n[PSRV_LOGIN] == login && n[PSRV_IDLE] == idle &&
           n[PSRV_LENT] == lent && n[PSRV_CANCELLING] == cancelling;
}

/* pool_server_set_state on real structs: a server's life through the pool
 * and the pool's counts (what /pools and the metrics report) after each
 * step. */
static void test_set_state(void)
{
    struct pool p;
    memset(&p, 0, sizeof p);
    p.database = "db";
    p.user = "u";
    struct pool_server *a = enter(&p), *b = enter(&p);
    CHECK("set_state: two servers connecting are two logins", counts_are(&p, 2, 0, 0, 0, 0) &&
                                                                  pool_logging_in(&p) == 2);
    pool_server_set_state(a, PSRV_LOGIN);
    CHECK("set_state: one logs in", counts_are(&p, 1, 1, 0, 0, 0) && pool_logging_in(&p) == 2);
    pool_server_set_state(a, PSRV_IDLE);
    CHECK("set_state: idle after login", counts_are(&p, 1, 0, 1, 0, 0) && pool_logging_in(&p) == 1);
    pool_server_set_state(a, PSRV_LENT);
    CHECK("set_state: lent", counts_are(&p, 1, 0, 0, 1, 0) && a->state == PSRV_LENT);
    pool_server_set_state(a, PSRV_CANCELLING);
    CHECK("set_state: given back with a cancel on its way",
          counts_are(&p, 1, 0, 0, 0, 1) && pool_logging_in(&p) == 1);
    pool_server_set_state(a, PSRV_IDLE);
    CHECK("set_state: idle once the cancel arrived", counts_are(&p, 1, 0, 1, 0, 0));
    pool_server_set_state(a, PSRV_LENT);
    pool_server_set_state(a, PSRV_IDLE);
    CHECK("set_state: lent and given back clean", counts_are(&p, 1, 0, 1, 0, 0) &&
                                                      pool_server_counts_total(&p.counts) == 2);
#ifndef PGT_DEBUG
    /* Release builds: logged, and made, so the counts still add up. */
    fflush(stdout); /* the log line goes to stderr: keep the PASS lines whole */
    pool_server_set_state(b, PSRV_LENT);
    CHECK("set_state: a forbidden move is made in release builds",
          b->state == PSRV_LENT && counts_are(&p, 0, 0, 1, 1, 0) && pool_server_counts_total(&p.counts) == 2);
#else
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        pool_server_set_state(b, PSRV_LENT); /* connecting -> lent */
        _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    CHECK("set_state: a forbidden move aborts under PGT_DEBUG", WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    CHECK("set_state: ...and changed nothing here", b->state == PSRV_CONNECTING && counts_are(&p, 1, 0, 1, 0, 0));
#endif
    pool_server_counts_leave(&p.counts, a->state);
    pool_server_counts_leave(&p.counts, b->state);
    CHECK("set_state: every count is back to zero", pool_server_counts_total(&p.counts) == 0);
    free(a);
    free(b);
}

int main(void)
{
    test_every_move();
    test_set_state();
    return UNIT_RESULT();
}

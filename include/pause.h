/* Pause/resume: hold new transactions at their boundaries so that DDL can
 * run with nothing in flight, then release the held messages in order. */
#ifndef PGTANDEM_PAUSE_H
#define PGTANDEM_PAUSE_H

#include <stdint.h>

struct server;
struct event;

/* ok: 1 when every session reached a boundary, 0 on timeout (the proxy has
 * already resumed by itself in that case). */
typedef void (*pause_done_fn)(void *ctx, int ok, uint64_t waited_us);

#define PAUSE_MAX_WAITERS 16

struct pause_waiter {
    pause_done_fn done;
    void *ctx;
};

struct pause_state {
    int paused;
    int drained;                  /* every session is at a boundary */
    uint64_t started_us;
    uint64_t drained_us;
    uint32_t held_messages;       /* messages held since the pause began */
    uint64_t last_held_ms;        /* how long the last pause held traffic */
    uint32_t last_held_messages;
    struct event *timeout_timer;
    struct pause_waiter waiters[PAUSE_MAX_WAITERS];
    int nwaiters;
};

/* Starts holding (or joins a pause in progress). `done` is called once,
 * when drained or after timeout_ms. Returns -1 when too many callers wait. */
int pause_begin(struct server *srv, int timeout_ms, pause_done_fn done, void *ctx);
/* Re-checks whether every session is at a boundary; sessions call this when
 * their state changes during a pause. */
void pause_check_drained(struct server *srv);
/* Releases held messages in order; returns how long traffic was held (us). */
uint64_t pause_resume(struct server *srv);
/* Forgets a waiter whose context is going away. */
void pause_forget_waiter(struct server *srv, void *ctx);
void pause_free(struct server *srv);

#endif

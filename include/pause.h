/* Pause/resume: hold new transactions at their boundaries so that DDL can
 * run with nothing in flight, then release the held messages in order.
 * The bookkeeping lives in struct pause_state (server.h). */
#ifndef PGTANDEM_PAUSE_H
#define PGTANDEM_PAUSE_H

#include <stdint.h>

#include "server.h"

/* Starts holding (or joins a pause in progress). `done` is called once,
 * when drained or after timeout_ms. Returns -1 when too many callers wait. */
int pause_begin(struct server *srv, int timeout_ms, pause_done_fn done, void *ctx);
/* Re-checks whether every session is at a boundary. */
void pause_check_drained(struct server *srv);
/* Lets every session holding a message go on (in order): the end of a
 * pause, or a renewed fleet lease (relay_set_lease). */
void pause_release_sessions(struct server *srv);
/* Releases held messages in order; returns how long traffic was held (us). */
uint64_t pause_resume(struct server *srv);
/* Forgets a waiter whose context is going away. */
void pause_forget_waiter(struct server *srv, void *ctx);
void pause_free(struct server *srv);

#endif

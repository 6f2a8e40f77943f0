/* Sessions that declare a version this proxy has not heard of (see
 * version_gate.c): their first transaction waits for the fleet's next
 * look at the database. */
#ifndef PGTANDEM_VERSION_GATE_H
#define PGTANDEM_VERSION_GATE_H

#include "session.h"

struct relay;

/* The first call decides whether the session's first transaction waits
 * (version_gate_holds); 1 while it does. */
int version_gate_decide(struct session *s);

/* 1 while the session's first transaction waits for the fleet (it is held
 * like a pause holds it). Asked at every transaction boundary: once the
 * session is decided and waits for nothing, two flags and no call. */
static inline int version_gate_holds(struct session *s)
{
    return (!s->vgate_checked || s->vgate_look) && version_gate_decide(s);
}

void version_gate_free(struct relay *relay);

#endif

/* Sessions that declare a version this proxy has not heard of (see
 * version_gate.c): their first transaction waits for the fleet's next
 * look at the database. */
#ifndef PGTANDEM_VERSION_GATE_H
#define PGTANDEM_VERSION_GATE_H

struct relay;
struct session;

/* 1 while the session's first transaction waits for the fleet (it is held
 * like a pause holds it); the first call decides whether it must. */
int version_gate_holds(struct session *s);
void version_gate_free(struct relay *relay);

#endif

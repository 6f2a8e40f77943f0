/* What a transaction pool carries from one server connection to the
 * next for each client, and records of each server: the values of the
 * parameters Postgres reports (ParameterStatus) and the session-level SETs
 * the pool replays (pin.h: pin_carried_set). No I/O: the session compares
 * a client's with its lent server's and sends what makes them agree. */
#ifndef PGTANDEM_POOL_CARRIED_H
#define PGTANDEM_POOL_CARRIED_H

#include <stddef.h>
#include <stdint.h>

#include "pin.h"

struct evbuffer;

/* The values of the parameters the pool carries (pin.h), as Postgres
 * reported them; "" with known 0 when never reported. */
struct param_values {
    char value[PIN_NTRACKED][64];
    uint8_t known[PIN_NTRACKED];
};

/* A ParameterStatus message (whole, header included): records a tracked
 * parameter's value. 0, or -1 when the message is malformed or the value
 * does not fit (the caller then pins its client). */
int param_values_note(struct param_values *p, const uint8_t *msg, uint32_t len);

/* Session-level SETs of untracked parameters the pool carries (pin.h:
 * pin_carried_set). A client's are kept as it wrote them (a search_path
 * with its value too, so the route's schema can go first); a server's as
 * they ran on it. */
#define CARRIED_MAX 8
struct carried_sets {
    struct carried_set {
        char *name;
        char *sql;
        char *value;          /* search_path: its names (pin_carry.value); NULL for other parameters */
    } *items;                 /* CARRIED_MAX of them once one is there: most clients never SET */
    int n;
};
/* Records SET (or, reset, RESET) of `name`, with `value` for a search_path
 * (NULL otherwise); -1 when full or out of memory (the caller pins its
 * client instead). */
int carried_sets_apply(struct carried_sets *c, const char *name, int reset, const char *value, const char *sql,
                       size_t len);
void carried_sets_free(struct carried_sets *c);
/* Appends the statements that take a server from `have` to a client's
 * `want` on a server whose version route is `schema` (NULL: none): RESET of
 * what `want` lacks, the client's SET where the text differs, its
 * search_path after the route's schema; each ends in a NUL, to run as a
 * Query of its own (one that fails then takes no other with it). `have`
 * then records what ran.
 * -1 out of memory (`have` then empty, and the statements for all of
 * `want` appended, with RESETs of what it had). */
int carried_sets_sync(struct carried_sets *have, const struct carried_sets *want, const char *schema,
                      struct evbuffer *out);
/* 1 when carried_sets_sync would append anything. */
int carried_sets_differ(const struct carried_sets *have, const struct carried_sets *want, const char *schema);

#endif

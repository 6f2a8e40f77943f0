/* A client's own search_path, beside the version route's. During a
 * migration the proxy puts the release's version schema first on every
 * session's search_path (the dual-write triggers read the first schema to
 * know the writer's shape), so a client's own path cannot simply replace
 * it: the route's schema comes first, the client's path after it. This
 * file reads the client's path where Postgres would take it from: a
 * startup packet (its `search_path` parameter, else `options`), or the
 * words of a `SET search_path` (pin.c parses the statement). */
#ifndef PGTANDEM_SEARCH_PATH_H
#define PGTANDEM_SEARCH_PATH_H

#include <stddef.h>

#include "proto.h"

/* The value of the last search_path setting in a startup `options` string
 * (-c search_path=V, -csearch_path=V, --search_path=V), with Postgres's
 * backslash escapes undone, into out. 1 when found, 0 when none, -1 when
 * it does not fit. */
int search_path_from_options(const char *options, char *out, size_t cap);

/* The search_path a client's startup packet sets: its `search_path`
 * parameter (Postgres applies parameters after options, so it wins), else
 * the one in its options. Same results as above. */
int search_path_of_startup(const struct startup_packet *sp, char *out, size_t cap);

#endif

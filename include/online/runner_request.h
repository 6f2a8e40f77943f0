/* A request to the engine inside the proxy (migration_runner.h): what it
 * asks, its body and who hears the answer. Its own header so that the
 * runner's parts (runner_internal.h) keep a request by value without
 * including the runner's public header, which includes theirs. */
#ifndef PGTANDEM_RUNNER_REQUEST_H
#define PGTANDEM_RUNNER_REQUEST_H

#include <stddef.h>

#include "cutover.h"

struct json_t;

enum runner_op {
    RUNNER_START,     /* body: the migration (JSON) */
    RUNNER_STATUS,
    RUNNER_COMPLETE,  /* cutover: the cutover's settings */
    RUNNER_ROLLBACK,
    RUNNER_FINALIZE,  /* cutover: drops the old shape a complete kept */
    RUNNER_REVERT,    /* cutover: back to the old shape, then the rollback */
    RUNNER_THROTTLE   /* body: a JSON object of backfill settings */
};

/* status: an HTTP status code (200, 202, 400, 404, 409, 500, 503), since
 * the admin API passes it on and it says what the caller needs to know.
 * body: owned by the callee. */
typedef void (*runner_answer_fn)(void *ctx, int status, struct json_t *body);

struct runner_request {
    enum runner_op op;
    const char *body;
    size_t body_len;
    struct cutover_options cutover;
    /* complete, rollback, finalize, revert: the migration it is meant for
     * ("": the one this proxy's engine runs), refused when another */
    char name[128];
    runner_answer_fn answer;
    void *ctx;                  /* identifies the request for runner_forget */
};

#endif

/* A `pgtandem migrate ...` child process run by the proxy's engine, off the
 * event loop: expand, finish and rollback use the same code as the CLI.
 * Its output is collected (the tail says why it failed) and it is reaped
 * from a timer with WNOHANG, so the loop never waits for it and a lost
 * pipe event cannot leave it unreaped. */
#ifndef PGTANDEM_ENGINE_CHILD_H
#define PGTANDEM_ENGINE_CHILD_H

#include <stddef.h>
#include <sys/types.h>

struct event_base;
struct event;

/* exit_code: the child's exit status (1 when killed by a signal). */
typedef void (*engine_child_done_fn)(void *ctx, int exit_code);

struct engine_child {
    struct event_base *base;
    pid_t pid;                 /* 0: none running */
    int fd;                    /* read end of its stdout+stderr, -1 when closed */
    struct event *out_ev;
    struct event *reap_timer;
    char output[4096];         /* the tail of what it printed */
    size_t outlen;
    size_t line_start;         /* where in output the line being written began */
    engine_child_done_fn done;
    void *ctx;
};

void engine_child_init(struct engine_child *c, struct event_base *base);
/* Runs `<this binary> migrate <cmd> [file] [extra] --quiet` with the
 * database URI in its environment (PGTANDEM_DB), never in argv.
 * Returns -1 (errno set) when it could not start; done is not called. */
int engine_child_spawn(struct engine_child *c, const char *cmd, const char *file, const char *db_uri,
                       const char *extra, engine_child_done_fn done, void *ctx);
/* The same with `body` as the file: an anonymous memfd the child inherits
 * and reads as /dev/fd/3, so the body never lands in a file others see. */
int engine_child_spawn_input(struct engine_child *c, const char *cmd, const char *body, size_t len,
                             const char *db_uri, const char *extra, engine_child_done_fn done, void *ctx);
int engine_child_running(const struct engine_child *c);
/* Asks a running child to stop (SIGTERM); done is still called once it
 * has exited. */
void engine_child_terminate(struct engine_child *c);
/* The child's last non-empty line, for error reports. */
const char *engine_child_reason(struct engine_child *c);
/* Stops a running child (SIGTERM, reaped if it has exited) and frees. */
void engine_child_free(struct engine_child *c);

#endif

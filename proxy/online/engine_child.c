/* The engine's child processes (see engine_child.h). The engine's
 * database URI (password included) goes in the child's environment, which
 * only this user can read, never on its command line, which `ps` shows to
 * everyone; a migration body goes through an inherited memfd, never /tmp. */
#include "engine_child.h"

#include <assert.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

extern char **environ;

#define REAP_INTERVAL_MS 50
/* The descriptor the child reads a migration body from (/dev/fd/3). */
#define INPUT_FD 3
#define INPUT_PATH "/dev/fd/3"

void engine_child_init(struct engine_child *c, struct event_base *base)
{
    memset(c, 0, sizeof *c);
    c->base = base;
    c->fd = -1;
}

int engine_child_running(const struct engine_child *c)
{
    return c->pid > 0;
}

/* Its lines go to the log as they are written (the child logs in the same
 * format, with its own timestamps), so a step that retries shows it while
 * it retries; the tail is kept too: the last lines say why it failed. */
static void pass_line(struct engine_child *c, int whole)
{
    size_t n = c->outlen - c->line_start;
    if (n)
        fprintf(stderr, "%.*s%s", (int)n, c->output + c->line_start, whole ? "" : "\n");
    c->line_start = c->outlen;
}

static void keep_output(struct engine_child *c, const char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (c->outlen == sizeof c->output - 1) {
            pass_line(c, 0); /* a line longer than the buffer goes out in pieces */
            memmove(c->output, c->output + 1024, c->outlen - 1024);
            c->outlen -= 1024;
            c->line_start = c->outlen;
        }
        c->output[c->outlen++] = buf[i];
        if (buf[i] == '\n')
            pass_line(c, 1);
    }
    c->output[c->outlen] = '\0';
    fflush(stderr);
}

static void close_output(struct engine_child *c)
{
    if (c->out_ev)
        event_free(c->out_ev);
    c->out_ev = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* Reads what is there without waiting (the pipe is non-blocking). */
static void drain_output(struct engine_child *c)
{
    char buf[2048];
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n > 0) {
            keep_output(c, buf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            close_output(c); /* EOF: the reap timer finishes the job */
        return;
    }
}

static void output_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    drain_output(arg);
}

static void arm_reap_timer(struct engine_child *c)
{
    struct timeval tv = {0, REAP_INTERVAL_MS * 1000};
    evtimer_add(c->reap_timer, &tv);
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct engine_child *c = arg;
    assert(c->pid > 0); /* the timer runs only while a child does */
    int status = 0;
    pid_t got = waitpid(c->pid, &status, WNOHANG);
    if (got == 0 || (got < 0 && errno == EINTR)) {
        arm_reap_timer(c);
        return;
    }
    if (c->fd >= 0)
        drain_output(c); /* whatever it wrote just before exiting */
    pass_line(c, 0);     /* a last line without its newline */
    close_output(c);
    c->pid = 0;
    int code = got > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    engine_child_done_fn done = c->done;
    c->done = NULL;
    if (done)
        done(c->ctx, code);
}

/* This process's environment with the engine URI as PGTANDEM_DB (which
 * the CLI reads when there is no --db) and without the other secrets the
 * child has no use for. */
static char **child_environment(const char *db_uri)
{
    static const char *const dropped[] = {"PGTANDEM_DB=", "DATABASE_URL=", "PGTANDEM_ADMIN_TOKEN="};
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 2, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int keep = 1;
        for (size_t d = 0; d < sizeof dropped / sizeof dropped[0]; d++)
            keep = keep && strncmp(environ[i], dropped[d], strlen(dropped[d])) != 0;
        if (keep)
            env[k++] = environ[i];
    }
    if (asprintf(&env[k], "PGTANDEM_DB=%s", db_uri) < 0) {
        free(env);
        return NULL;
    }
    return env;
}

static void free_child_environment(char **env)
{
    size_t n = 0;
    while (env[n + 1])
        n++;
    free(env[n]); /* the PGTANDEM_DB entry, the last one */
    free(env);
}

/* The body in an anonymous file (nothing on disk, no name in /tmp),
 * positioned at its start; -1 on failure. */
static int input_memfd(const char *body, size_t len)
{
    int fd = memfd_create("pgtandem-migration", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, body + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)n;
    }
    if (lseek(fd, 0, SEEK_SET) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int start_process(struct engine_child *c, char **argv, char **env, int input_fd, int *out_fd)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
    if (input_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, input_fd, INPUT_FD);
    /* Client and admin sockets must not stay open in the child: a client
     * reading its reply until EOF would wait for the child to exit. */
    posix_spawn_file_actions_addclosefrom_np(&fa, input_fd >= 0 ? INPUT_FD + 1 : 3);
    int rc = posix_spawn(&c->pid, argv[0], &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    if (rc != 0) {
        close(pipefd[0]);
        c->pid = 0;
        errno = rc;
        return -1;
    }
    *out_fd = pipefd[0];
    return 0;
}

static int spawn(struct engine_child *c, const char *cmd, const char *file, int input_fd, const char *db_uri,
                 const char *extra, engine_child_done_fn done, void *ctx)
{
    if (c->pid > 0) {
        errno = EBUSY;
        return -1;
    }
    char self[512];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -1;
    self[n] = '\0';
    char *argv[8];
    int argc = 0;
    argv[argc++] = self;
    argv[argc++] = "migrate";
    argv[argc++] = (char *)cmd;
    if (file)
        argv[argc++] = (char *)file;
    if (extra)
        argv[argc++] = (char *)extra;
    argv[argc++] = "--quiet";
    argv[argc] = NULL;
    if (!c->reap_timer && !(c->reap_timer = evtimer_new(c->base, reap_cb, c)))
        return -1;
    char **env = child_environment(db_uri);
    if (!env)
        return -1;
    int fd;
    int rc = start_process(c, argv, env, input_fd, &fd);
    free_child_environment(env);
    if (rc != 0)
        return -1;
    c->fd = fd;
    c->outlen = c->line_start = 0;
    c->output[0] = '\0';
    c->done = done;
    c->ctx = ctx;
    c->out_ev = event_new(c->base, fd, EV_READ | EV_PERSIST, output_cb, c);
    if (c->out_ev)
        event_add(c->out_ev, NULL);
    arm_reap_timer(c);
    log_info("engine: running `pgtandem migrate %s` (pid %d)", cmd, (int)c->pid);
    return 0;
}

int engine_child_spawn(struct engine_child *c, const char *cmd, const char *file, const char *db_uri,
                       const char *extra, engine_child_done_fn done, void *ctx)
{
    return spawn(c, cmd, file, -1, db_uri, extra, done, ctx);
}

int engine_child_spawn_input(struct engine_child *c, const char *cmd, const char *body, size_t len,
                             const char *db_uri, const char *extra, engine_child_done_fn done, void *ctx)
{
    int fd = input_memfd(body, len);
    if (fd < 0)
        return -1;
    int rc = spawn(c, cmd, INPUT_PATH, fd, db_uri, extra, done, ctx);
    int saved = errno;
    close(fd); /* the child has its own copy */
    errno = saved;
    return rc;
}

void engine_child_terminate(struct engine_child *c)
{
    if (c->pid > 0)
        kill(c->pid, SIGTERM);
}

const char *engine_child_reason(struct engine_child *c)
{
    char *out = c->output;
    size_t n = strlen(out);
    while (n && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
    return n ? out : "the engine process failed";
}

void engine_child_free(struct engine_child *c)
{
    close_output(c);
    if (c->reap_timer)
        event_free(c->reap_timer);
    c->reap_timer = NULL;
    if (c->pid > 0) {
        /* It cleans up after itself on SIGTERM; reaped here if already gone,
         * otherwise by init once this process exits. */
        kill(c->pid, SIGTERM);
        waitpid(c->pid, NULL, WNOHANG);
    }
    c->pid = 0;
    c->done = NULL;
}

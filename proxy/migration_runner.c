/* The engine inside the proxy (see include/migration_runner.h).
 *
 * Phases: expanding (child process) -> backfilling (batches on the loop) ->
 * finishing (child: validations, status 'active') -> active -> completing
 * (pause, contract transaction, re-prepare, resume) -> completed.
 * Rollback is a child process from any phase before completed.
 *
 * The state of record stays in schema pgtandem of the database, so a proxy
 * restart picks up a running backfill where its checkpoint left it. */
#include "migration_runner.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <signal.h>
#include <stdarg.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "backfill.h"
#include "engine.h"
#include "log.h"
#include "migration.h"
#include "migration_plan.h"
#include "pgasync.h"
#include "server.h"
#include "session.h"

extern char **environ;

enum runner_phase {
    RP_IDLE, RP_EXPANDING, RP_BACKFILLING, RP_FINISHING, RP_ACTIVE, RP_COMPLETING, RP_COMPLETED,
    RP_ROLLING_BACK, RP_ROLLED_BACK, RP_FAILED
};

static const char *const phase_names[] = {"idle", "expanding", "backfilling", "finishing", "active",
                                          "completing", "completed", "rolling_back", "rolled_back", "failed"};

struct migration_runner;
typedef void (*runner_step_fn)(struct migration_runner *r);
typedef void (*child_done_fn)(struct migration_runner *r, int exit_code);

struct child_proc {
    pid_t pid;
    int fd;
    struct event *ev;
    char output[4096];
    size_t outlen;
    child_done_fn done;
};

struct cutover {
    struct evhttp_request *req;
    int drain_timeout_ms, lock_timeout_ms, max_attempts, attempt;
    uint64_t pause_started_us;
    double total_pause_ms, max_pause_ms, lock_wait_ms;
    uint32_t held_messages;
    int reprepared;
    char *sql;
    char last_error[512];
};

struct migration_runner {
    struct server *srv;
    enum runner_phase phase;
    char *name;
    char version_schema[96];
    struct migration mig;
    int have_mig;
    struct mig_plan plan;
    int have_plan;
    struct backfill *bf;
    size_t nbf, cur;
    char error[1024];
    struct child_proc child;
    char tmpfile[128];
    struct pgasync db;
    struct event *timer;
    runner_step_fn timer_step;
    double batch_t0, bf_started_ms, bf_finished_ms;
    long long bf_rows_at_start;
    long max_app_p99_ms, max_replica_lag_ms;
    double replica_lag_ms, lag_checked_ms;
    char throttle_reason[128];
    int user_paused, stop_backfill;
    struct cutover cut;
    struct evhttp_request *rollback_req;
    runner_step_fn after_connect;
    runner_step_fn after_unlock;
    int child_exit;                 /* exit status of the last engine process */
    int lock_attempts;              /* tries for the engine lock after a child exits */
};

static void backfill_next(struct migration_runner *r);
static void start_rollback(struct migration_runner *r);

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int in_progress(enum runner_phase p)
{
    return p == RP_EXPANDING || p == RP_BACKFILLING || p == RP_FINISHING || p == RP_ACTIVE ||
           p == RP_COMPLETING || p == RP_ROLLING_BACK;
}

const char *runner_version_schema(const struct migration_runner *r, const char *version)
{
    if (!r || !version || !r->name || strcmp(version, r->name) != 0)
        return NULL;
    return r->phase >= RP_BACKFILLING && r->phase <= RP_COMPLETING && r->version_schema[0] ? r->version_schema
                                                                                            : NULL;
}

static void fail(struct migration_runner *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct migration_runner *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    log_error("migration %s: %s", r->name ? r->name : "?", r->error);
    r->phase = RP_FAILED;
}

/* ---- timers ---- */

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct migration_runner *r = arg;
    runner_step_fn step = r->timer_step;
    r->timer_step = NULL;
    if (step)
        step(r);
}

static void schedule(struct migration_runner *r, long delay_ms, runner_step_fn step)
{
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
    r->timer_step = step;
    evtimer_add(r->timer, &tv);
}

/* ---- child processes: the CLI engine, off the event loop ---- */

static void child_output_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct migration_runner *r = arg;
    struct child_proc *c = &r->child;
    char buf[2048];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
        /* keep the tail: the last lines say why it failed */
        for (ssize_t i = 0; i < n; i++) {
            if (c->outlen == sizeof c->output - 1) {
                memmove(c->output, c->output + 1024, c->outlen - 1024);
                c->outlen -= 1024;
            }
            c->output[c->outlen++] = buf[i];
        }
        c->output[c->outlen] = '\0';
        return;
    }
    if (n < 0 && errno == EINTR)
        return;
    event_free(c->ev);
    c->ev = NULL;
    close(c->fd);
    int status = 0;
    waitpid(c->pid, &status, 0);
    c->pid = 0;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    r->child_exit = code;
    child_done_fn done = c->done;
    c->done = NULL;
    done(r, code);
}

static const char *engine_db(const struct migration_runner *r)
{
    return r->srv->cfg.engine_db;
}

/* Runs `pgtandem migrate <cmd> [file] --db URI [extra]` and calls done
 * with its exit status. */
static int spawn_engine(struct migration_runner *r, const char *cmd, const char *file, const char *extra,
                        child_done_fn done)
{
    char self[512];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -1;
    self[n] = '\0';
    char *argv[9];
    int argc = 0;
    argv[argc++] = self;
    argv[argc++] = "migrate";
    argv[argc++] = (char *)cmd;
    if (file)
        argv[argc++] = (char *)file;
    argv[argc++] = "--db";
    argv[argc++] = (char *)engine_db(r);
    if (extra)
        argv[argc++] = (char *)extra;
    argv[argc++] = "--quiet";
    argv[argc] = NULL;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
    /* Client and admin sockets must not stay open in the child: a client
     * reading its reply until EOF would wait for the child to exit. */
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    int rc = posix_spawn(&r->child.pid, self, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    if (rc != 0) {
        close(pipefd[0]);
        errno = rc;
        return -1;
    }
    r->child.fd = pipefd[0];
    r->child.outlen = 0;
    r->child.output[0] = '\0';
    r->child.done = done;
    r->child.ev = event_new(r->srv->base, pipefd[0], EV_READ | EV_PERSIST, child_output_cb, r);
    event_add(r->child.ev, NULL);
    log_info("migration %s: running `pgtandem migrate %s`", r->name, cmd);
    return 0;
}

/* The child's last non-empty line, for error reports. */
static const char *child_reason(struct migration_runner *r)
{
    char *out = r->child.output;
    size_t n = strlen(out);
    while (n && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
    return n ? out : "the engine process failed";
}

/* ---- backfill on the loop ---- */

static void release_lock_then(struct migration_runner *r, runner_step_fn next);

static void free_backfills(struct migration_runner *r)
{
    for (size_t i = 0; i < r->nbf; i++)
        backfill_free(&r->bf[i]);
    free(r->bf);
    r->bf = NULL;
    r->nbf = r->cur = 0;
}

static long long rows_done(const struct migration_runner *r)
{
    long long n = 0;
    for (size_t i = 0; i < r->nbf; i++)
        n += r->bf[i].rows_done;
    return n;
}

static void after_finish(struct migration_runner *r, int code)
{
    if (code != 0) {
        fail(r, "finishing the backfill: %s", child_reason(r));
        return;
    }
    r->phase = RP_ACTIVE;
    log_info("migration %s is active: both shapes are live; complete it once the old release is gone", r->name);
}

static void spawn_finish(struct migration_runner *r)
{
    r->phase = RP_FINISHING;
    if (spawn_engine(r, "resume", NULL, NULL, after_finish) != 0)
        fail(r, "cannot start the engine process: %s", strerror(errno));
}

static void backfill_stopped(struct migration_runner *r)
{
    r->stop_backfill = 0;
    release_lock_then(r, start_rollback);
}

static void on_batch_done(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    struct migration_runner *r = ctx;
    struct backfill *b = &r->bf[r->cur];
    double elapsed = now_ms() - r->batch_t0;
    if (error && sqlstate && strcmp(sqlstate, "55P03") == 0) {
        backfill_lock_timeout(b);
    } else if (error) {
        fail(r, "backfill batch on %s failed: %s", b->table->qname, error);
        return;
    } else {
        char err[512];
        if (backfill_apply_result(b, res, elapsed, err, sizeof err) != 0) {
            fail(r, "%s", err);
            return;
        }
    }
    schedule(r, backfill_sleep_ms(b), backfill_next);
}

static void on_lag(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)sqlstate;
    struct migration_runner *r = ctx;
    r->lag_checked_ms = now_ms();
    if (!error && res && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
        r->replica_lag_ms = atof(PQgetvalue(res, 0, 0));
    backfill_next(r);
}

static const char LAG_SQL[] =
    "SELECT COALESCE((SELECT max(extract(epoch FROM replay_lag)) * 1000 FROM pg_stat_replication),"
    " CASE WHEN pg_is_in_recovery() THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000 END, 0)";

/* Latency-aware throttling: smaller batches while the application's p99
 * is over its limit, then a pause; the same for replica lag. Returns how
 * long to wait before the next batch (0: go now). */
static long throttle_delay(struct migration_runner *r, struct backfill *b)
{
    r->throttle_reason[0] = '\0';
    if (r->user_paused || b->paused) {
        snprintf(r->throttle_reason, sizeof r->throttle_reason, "paused by operator");
        return 500;
    }
    double p99 = metrics_recent_p99_ms(&r->srv->metrics);
    if (r->max_app_p99_ms > 0 && p99 > (double)r->max_app_p99_ms) {
        snprintf(r->throttle_reason, sizeof r->throttle_reason, "app p99 %.1f ms > %ld ms", p99, r->max_app_p99_ms);
        if (b->batch_rows > b->cfg.min_rows) {
            b->batch_rows = b->batch_rows / 2 > b->cfg.min_rows ? b->batch_rows / 2 : b->cfg.min_rows;
            return 0;
        }
        return 250;
    }
    if (r->max_replica_lag_ms > 0 && r->replica_lag_ms > (double)r->max_replica_lag_ms) {
        snprintf(r->throttle_reason, sizeof r->throttle_reason, "replica lag %.0f ms > %ld ms", r->replica_lag_ms,
                 r->max_replica_lag_ms);
        return 500;
    }
    return 0;
}

static void backfill_finished(struct migration_runner *r)
{
    r->bf_finished_ms = now_ms();
    log_info("migration %s: backfill done, %lld rows in %.1f s", r->name, rows_done(r),
             (now_ms() - r->bf_started_ms) / 1000.0);
    release_lock_then(r, spawn_finish);
}

static void backfill_next(struct migration_runner *r)
{
    if (r->phase != RP_BACKFILLING)
        return;
    if (r->stop_backfill) {
        backfill_stopped(r);
        return;
    }
    while (r->cur < r->nbf && r->bf[r->cur].done)
        r->cur++;
    if (r->cur == r->nbf) {
        backfill_finished(r);
        return;
    }
    struct backfill *b = &r->bf[r->cur];
    if (r->max_replica_lag_ms > 0 && now_ms() - r->lag_checked_ms > 1000) {
        if (pgasync_send(&r->db, LAG_SQL, 0, NULL, on_lag, r) != 0)
            fail(r, "replica lag check: %s", r->db.error);
        return;
    }
    long delay = throttle_delay(r, b);
    if (delay > 0) {
        schedule(r, delay, backfill_next);
        return;
    }
    char *sql = backfill_batch_sql(b);
    const char *values[4 + BACKFILL_MAX_KEY];
    char num[32];
    int n = backfill_batch_params(b, values, num, sizeof num);
    r->batch_t0 = now_ms();
    int rc = sql ? pgasync_send(&r->db, sql, n, values, on_batch_done, r) : -1;
    free(sql);
    if (rc != 0)
        fail(r, "backfill batch: %s", r->db.error);
}

static void on_session_setup(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    struct migration_runner *r = ctx;
    if (error) {
        fail(r, "preparing the backfill session: %s", error);
        return;
    }
    r->bf_started_ms = now_ms();
    r->bf_finished_ms = 0;
    r->bf_rows_at_start = rows_done(r);
    backfill_next(r);
}

/* The checkpoints are a couple of single-row statements per table: read
 * them with the connection's blocking calls once, before the first batch. */
static int load_checkpoints(struct migration_runner *r)
{
    free_backfills(r);
    r->bf = calloc(r->plan.nbf ? r->plan.nbf : 1, sizeof *r->bf);
    if (!r->bf)
        return -1;
    r->nbf = r->plan.nbf;
    for (size_t i = 0; i < r->nbf; i++) {
        char err[512];
        backfill_init(&r->bf[i], &r->plan.bf[i], r->name, &r->mig.backfill);
        if (backfill_load(r->db.conn, &r->bf[i], err, sizeof err) != 0) {
            fail(r, "%s", err);
            return -1;
        }
    }
    return 0;
}

static void take_engine_lock(struct migration_runner *r);

static void on_lock(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)sqlstate;
    struct migration_runner *r = ctx;
    if (error || !res || PQntuples(res) != 1 || PQgetvalue(res, 0, 0)[0] != 't') {
        /* The expand process's backend may not have let go yet: retry briefly. */
        if (!error && ++r->lock_attempts < 50) {
            schedule(r, 100, take_engine_lock);
            return;
        }
        fail(r, "another pgtandem engine is working on this database (advisory lock " ENGINE_LOCK_KEY " is held)");
        return;
    }
    r->lock_attempts = 0;
    if (load_checkpoints(r) != 0)
        return;
    char *sql = r->nbf ? backfill_session_sql(&r->bf[0]) : strdup("SELECT 1");
    if (!sql || pgasync_send(&r->db, sql, 0, NULL, on_session_setup, r) != 0)
        fail(r, "preparing the backfill session: %s", r->db.error);
    free(sql);
}

static void take_engine_lock(struct migration_runner *r)
{
    if (pgasync_send(&r->db, "SELECT pg_try_advisory_lock(" ENGINE_LOCK_KEY ")", 0, NULL, on_lock, r) != 0)
        fail(r, "%s", r->db.error);
}

/* Loads the migration and its stored plan (the plan start computed). */
static void on_state_loaded(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)sqlstate;
    struct migration_runner *r = ctx;
    char err[1024];
    if (error || !res || PQntuples(res) != 1) {
        fail(r, "reading pgtandem.migrations: %s", error ? error : "migration not recorded");
        return;
    }
    const char *status = PQgetvalue(res, 0, 1);
    const char *json = PQgetvalue(res, 0, 2);
    if (!r->have_mig) {
        if (mig_parse(json, strlen(json), r->name, &r->mig, err, sizeof err) != 0) {
            fail(r, "%s", err);
            return;
        }
        r->have_mig = 1;
    }
    if (r->have_plan)
        mig_plan_free(&r->plan);
    r->have_plan = !PQgetisnull(res, 0, 0) && mig_plan_from_json(PQgetvalue(res, 0, 0), &r->plan, err, sizeof err) == 0;
    if (!r->have_plan) {
        fail(r, "the stored plan cannot be read: %s", err);
        return;
    }
    if (strcmp(status, "active") == 0) {
        r->phase = RP_ACTIVE;
        return;
    }
    r->phase = RP_BACKFILLING;
    take_engine_lock(r);
}

static void load_state(struct migration_runner *r)
{
    const char *values[1] = {r->name};
    if (pgasync_send(&r->db, "SELECT plan, status, migration FROM pgtandem.migrations WHERE name = $1", 1, values,
                     on_state_loaded, r) != 0)
        fail(r, "%s", r->db.error);
}

static void on_connected(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    struct migration_runner *r = ctx;
    runner_step_fn next = r->after_connect;
    r->after_connect = NULL;
    if (error) {
        fail(r, "cannot connect to the database: %s", error);
        pgasync_close(&r->db);
        return;
    }
    next(r);
}

/* Runs next once the engine connection is open (connecting without
 * blocking the loop if need be). */
static void with_connection(struct migration_runner *r, runner_step_fn next)
{
    if (pgasync_ready(&r->db)) {
        next(r);
        return;
    }
    pgasync_close(&r->db);
    r->after_connect = next;
    if (pgasync_connect(&r->db, engine_db(r), on_connected, r) != 0) {
        fail(r, "cannot connect to the database: %s", r->db.error);
        pgasync_close(&r->db);
    }
}

static void on_unlocked(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)error;
    (void)sqlstate;
    struct migration_runner *r = ctx;
    runner_step_fn next = r->after_unlock;
    r->after_unlock = NULL;
    next(r);
}

/* The child engine takes the one-engine advisory lock itself: let go first. */
static void release_lock_then(struct migration_runner *r, runner_step_fn next)
{
    if (!pgasync_ready(&r->db)) {
        next(r);
        return;
    }
    r->after_unlock = next;
    if (pgasync_send(&r->db, "SELECT pg_advisory_unlock_all()", 0, NULL, on_unlocked, r) != 0) {
        r->after_unlock = NULL;
        next(r);
    }
}

/* ---- start ---- */

static void after_expand(struct migration_runner *r, int code)
{
    unlink(r->tmpfile);
    if (code != 0) {
        fail(r, "%s", child_reason(r));
        return;
    }
    log_info("migration %s: expanded; backfilling on the proxy's event loop", r->name);
    r->phase = RP_BACKFILLING;
    with_connection(r, load_state);
}

static void set_name(struct migration_runner *r, const char *name)
{
    free(r->name);
    r->name = strdup(name);
    snprintf(r->version_schema, sizeof r->version_schema, "pgtandem_%s", name);
    /* only plain identifiers are routed: they need no quoting in options */
    if (strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != strlen(name))
        r->version_schema[0] = '\0';
}

static void reset_migration(struct migration_runner *r)
{
    free_backfills(r);
    if (r->have_plan)
        mig_plan_free(&r->plan);
    if (r->have_mig)
        mig_free(&r->mig);
    r->have_plan = r->have_mig = 0;
    r->error[0] = r->throttle_reason[0] = '\0';
    free(r->cut.sql);
    memset(&r->cut, 0, sizeof r->cut);
    r->user_paused = r->stop_backfill = 0;
    r->max_app_p99_ms = r->max_replica_lag_ms = 0;
    r->replica_lag_ms = r->lag_checked_ms = 0;
    r->lock_attempts = 0;
}

static char *request_body(struct evhttp_request *req, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    *len = evbuffer_get_length(in);
    char *text = malloc(*len + 1);
    if (!text)
        return NULL;
    evbuffer_remove(in, text, *len);
    text[*len] = '\0';
    return text;
}

static json_t *error_json(const char *msg)
{
    return json_pack("{s:s}", "error", msg);
}

static void post_migration(struct migration_runner *r, struct evhttp_request *req)
{
    if (in_progress(r->phase)) {
        admin_reply_json(req, 409, json_pack("{s:s,s:s}", "error", "a migration is already in progress", "name", r->name));
        return;
    }
    size_t len;
    char *text = request_body(req, &len);
    char err[1024];
    reset_migration(r);
    if (!text || mig_parse(text, len, "request body", &r->mig, err, sizeof err) != 0) {
        admin_reply_json(req, 400, error_json(text ? err : "out of memory"));
        free(text);
        return;
    }
    r->have_mig = 1;
    set_name(r, r->mig.name);
    snprintf(r->tmpfile, sizeof r->tmpfile, "/tmp/pgtandem-%d-XXXXXX.json", (int)getpid());
    int fd = mkstemps(r->tmpfile, 5);
    int ok = fd >= 0 && write(fd, text, len) == (ssize_t)len;
    if (fd >= 0)
        close(fd);
    free(text);
    if (!ok || spawn_engine(r, "start", r->tmpfile, "--no-backfill", after_expand) != 0) {
        admin_reply_json(req, 500, error_json("cannot start the engine process"));
        return;
    }
    r->phase = RP_EXPANDING;
    admin_reply_json(req, 202, json_pack("{s:s,s:s}", "name", r->name, "phase", phase_names[r->phase]));
}

/* ---- complete: the cutover ---- */

static void cutover_attempt(struct migration_runner *r);

static long backoff_ms(int attempt)
{
    long base = 100L << (attempt < 5 ? attempt : 5);
    if (base > 3000)
        base = 3000;
    return base / 2 + (long)((unsigned)rand() % (unsigned)(base / 2 + 1));
}

static json_t *cutover_json(const struct migration_runner *r)
{
    const struct cutover *c = &r->cut;
    return json_pack("{s:i,s:f,s:f,s:i,s:i,s:f}", "attempts", c->attempt, "pause_ms", c->total_pause_ms,
                     "max_pause_ms", c->max_pause_ms, "held_messages", (int)c->held_messages, "reprepared",
                     c->reprepared, "lock_wait_ms", c->lock_wait_ms);
}

static void reply_complete(struct migration_runner *r, int code, const char *error)
{
    if (!r->cut.req)
        return;
    json_t *body = cutover_json(r);
    json_object_set_new(body, "status", json_string(phase_names[r->phase]));
    if (error)
        json_object_set_new(body, "error", json_string(error));
    admin_reply_json(r->cut.req, code, body);
    r->cut.req = NULL;
}

/* Lets held traffic go and accounts for how long it was held. */
static void resume_traffic(struct migration_runner *r)
{
    struct cutover *c = &r->cut;
    c->held_messages += r->srv->pause.held_messages;
    double held_ms = (double)(server_now_us(r->srv) - c->pause_started_us) / 1000.0;
    pause_resume(r->srv);
    c->total_pause_ms += held_ms;
    if (held_ms > c->max_pause_ms)
        c->max_pause_ms = held_ms;
    log_info("migration %s: cutover attempt %d held traffic for %.2f ms", r->name, c->attempt, held_ms);
}

static void retry_or_give_up(struct migration_runner *r, const char *why)
{
    struct cutover *c = &r->cut;
    if (why != c->last_error)   /* formatting the buffer into itself would empty it */
        snprintf(c->last_error, sizeof c->last_error, "%s", why);
    if (c->attempt < c->max_attempts) {
        long delay = backoff_ms(c->attempt);
        log_warn("migration %s: cutover attempt %d/%d abandoned (%s); traffic resumed, retrying in %ld ms", r->name,
                 c->attempt, c->max_attempts, why, delay);
        schedule(r, delay, cutover_attempt);
        return;
    }
    r->phase = RP_ACTIVE;
    char msg[700];
    snprintf(msg, sizeof msg, "gave up after %d attempt(s): %s; nothing changed, traffic flows", c->attempt, why);
    log_error("migration %s: %s", r->name, msg);
    reply_complete(r, 409, msg);
}

static void run_post_step(struct migration_runner *r);

static void on_post_step(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    struct migration_runner *r = ctx;
    if (error)
        log_error("migration %s is complete but a post-contract validation failed: %s", r->name, error);
    r->cur++;
    run_post_step(r);
}

/* Validations that scan run after the contract, with traffic flowing. */
static void run_post_step(struct migration_runner *r)
{
    if (r->cur >= r->plan.post.n) {
        log_info("migration %s completed", r->name);
        reply_complete(r, 200, NULL);
        return;
    }
    if (pgasync_send(&r->db, r->plan.post.v[r->cur].sql, 0, NULL, on_post_step, r) != 0) {
        log_error("migration %s: post-contract step: %s", r->name, r->db.error);
        reply_complete(r, 200, NULL);
    }
}

static void contract_succeeded(struct migration_runner *r)
{
    int n = 0;
    for (struct session *s = r->srv->sessions; s; s = s->next)
        n += session_reprepare(s);
    r->cut.reprepared += n;
    resume_traffic(r);
    r->phase = RP_COMPLETED;
    r->cur = 0;
    run_post_step(r);
}

static void on_contract_rolled_back(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    (void)error;
    (void)sqlstate;
    struct migration_runner *r = ctx;
    resume_traffic(r);
    if (strstr(r->cut.last_error, "lock timeout") || strstr(r->cut.last_error, "55P03")) {
        r->cut.lock_wait_ms += r->cut.lock_timeout_ms;
        retry_or_give_up(r, r->cut.last_error);
        return;
    }
    char why[600];
    snprintf(why, sizeof why, "%s", r->cut.last_error);
    r->cut.max_attempts = r->cut.attempt; /* not a lock problem: retrying will not help */
    retry_or_give_up(r, why);
}

static void on_contract_done(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)res;
    struct migration_runner *r = ctx;
    if (!error) {
        contract_succeeded(r);
        return;
    }
    snprintf(r->cut.last_error, sizeof r->cut.last_error, "%s%s", error,
             sqlstate && !strcmp(sqlstate, "55P03") ? " (lock timeout, 55P03)" : "");
    if (pgasync_send(&r->db, "ROLLBACK", 0, NULL, on_contract_rolled_back, r) != 0) {
        resume_traffic(r);
        r->phase = RP_ACTIVE;
        reply_complete(r, 500, r->db.error);
    }
}

/* BEGIN; lock_timeout; every contract step; the state row; COMMIT. */
static char *contract_sql(struct migration_runner *r)
{
    struct evbuffer *b = evbuffer_new();
    char *lit = PQescapeLiteral(r->db.conn, r->name, strlen(r->name));
    if (!b || !lit) {
        if (b)
            evbuffer_free(b);
        PQfreemem(lit);
        return NULL;
    }
    evbuffer_add_printf(b, "BEGIN; SET LOCAL lock_timeout = '%dms'; SET LOCAL pgtandem.backfill = 'off';"
                           " SET LOCAL synchronous_commit = on;\n",
                        r->cut.lock_timeout_ms);
    for (size_t i = 0; i < r->plan.contract.n; i++)
        evbuffer_add_printf(b, "%s;\n", r->plan.contract.v[i].sql);
    evbuffer_add_printf(b, "UPDATE pgtandem.migrations SET status = 'completed', completed_at = now(), updated_at = now(),"
                           " error = NULL, contract_attempts = %d, contract_lock_wait_ms = %.1f WHERE name = %s;\nCOMMIT",
                        r->cut.attempt, r->cut.lock_wait_ms, lit);
    PQfreemem(lit);
    size_t len = evbuffer_get_length(b);
    char *sql = malloc(len + 1);
    if (sql) {
        evbuffer_remove(b, sql, len);
        sql[len] = '\0';
    }
    evbuffer_free(b);
    return sql;
}

static void on_drained(void *ctx, int ok, uint64_t waited_us)
{
    struct migration_runner *r = ctx;
    if (!ok) {
        /* the pause gave up and already resumed by itself */
        r->cut.held_messages += r->srv->pause.last_held_messages;
        double held = (double)waited_us / 1000.0;
        r->cut.total_pause_ms += held;
        if (held > r->cut.max_pause_ms)
            r->cut.max_pause_ms = held;
        retry_or_give_up(r, "sessions stayed inside transactions past the drain timeout");
        return;
    }
    free(r->cut.sql);
    r->cut.sql = contract_sql(r);
    if (!r->cut.sql || pgasync_send(&r->db, r->cut.sql, 0, NULL, on_contract_done, r) != 0) {
        resume_traffic(r);
        r->phase = RP_ACTIVE;
        reply_complete(r, 500, r->db.error[0] ? r->db.error : "out of memory");
    }
}

static void cutover_attempt(struct migration_runner *r)
{
    struct cutover *c = &r->cut;
    c->attempt++;
    c->pause_started_us = server_now_us(r->srv);
    if (!pgasync_ready(&r->db)) {
        r->phase = RP_ACTIVE;
        reply_complete(r, 500, "the engine connection is not open");
        return;
    }
    if (pause_begin(r->srv, c->drain_timeout_ms, on_drained, r) != 0) {
        r->phase = RP_ACTIVE;
        reply_complete(r, 409, "another pause is in progress");
    }
}

/* The checks that scan the table ran in a child, traffic flowing; rows that
 * violate one leave the migration active and the cutover is not attempted. */
static void after_checks(struct migration_runner *r, int code)
{
    if (code != 0) {
        r->phase = RP_ACTIVE;
        reply_complete(r, 409, child_reason(r));
        return;
    }
    with_connection(r, cutover_attempt);
}

static int query_int(struct evhttp_request *req, const char *key, int fallback, int lo, int hi)
{
    int out = admin_query_int(req, key, fallback);
    return out < lo ? lo : out > hi ? hi : out;
}

static void post_complete(struct migration_runner *r, struct evhttp_request *req)
{
    if (r->phase != RP_ACTIVE) {
        char msg[256];
        snprintf(msg, sizeof msg, "migration %s is %s, not active%s", r->name ? r->name : "(none)",
                 phase_names[r->phase], r->phase == RP_BACKFILLING ? ": let the backfill finish" : "");
        admin_reply_json(req, 409, error_json(msg));
        return;
    }
    free(r->cut.sql);
    memset(&r->cut, 0, sizeof r->cut);
    r->cut.req = req;
    r->cut.drain_timeout_ms = query_int(req, "drain_timeout_ms", 2000, 1, 600000);
    r->cut.lock_timeout_ms = query_int(req, "lock_timeout_ms", 200, 1, 600000);
    r->cut.max_attempts = query_int(req, "attempts", 10, 1, 1000);
    r->phase = RP_COMPLETING;
    if (r->plan.nchecks == 0)
        with_connection(r, cutover_attempt);
    else if (spawn_engine(r, "complete", NULL, "--validate-only", after_checks) != 0) {
        r->phase = RP_ACTIVE;
        reply_complete(r, 500, "cannot start the engine process");
    }
}

/* ---- rollback ---- */

static void after_rollback(struct migration_runner *r, int code)
{
    if (code == 0) {
        r->phase = RP_ROLLED_BACK;
        log_info("migration %s rolled back", r->name);
        if (r->rollback_req)
            admin_reply_json(r->rollback_req, 200, json_pack("{s:s,s:s}", "status", "rolled_back", "name", r->name));
    } else {
        fail(r, "rollback: %s", child_reason(r));
        if (r->rollback_req)
            admin_reply_json(r->rollback_req, code == 2 ? 409 : 500, error_json(r->error));
    }
    r->rollback_req = NULL;
}

static void start_rollback(struct migration_runner *r)
{
    r->phase = RP_ROLLING_BACK;
    if (spawn_engine(r, "rollback", NULL, NULL, after_rollback) != 0)
        after_rollback(r, 1);
}

static void post_rollback(struct migration_runner *r, struct evhttp_request *req)
{
    if (r->phase == RP_EXPANDING || r->phase == RP_FINISHING || r->phase == RP_COMPLETING ||
        r->phase == RP_ROLLING_BACK || r->rollback_req) {
        admin_reply_json(req, 409, error_json("the migration is between steps; try again in a moment"));
        return;
    }
    if (r->phase == RP_COMPLETED) {
        admin_reply_json(req, 409, error_json("the migration is completed; write a new migration to undo it"));
        return;
    }
    r->rollback_req = req;
    if (r->phase == RP_BACKFILLING) {
        r->stop_backfill = 1; /* the next batch boundary stops and rolls back */
        if (!r->db.busy && r->timer_step == backfill_next) {
            evtimer_del(r->timer);
            r->timer_step = NULL;
            backfill_stopped(r);
        }
        return;
    }
    release_lock_then(r, start_rollback);
}

/* ---- status and throttle ---- */

static json_t *backfill_json(const struct migration_runner *r)
{
    long long done = rows_done(r);
    double total = 0, max_ms = 0;
    long long batches = 0;
    for (size_t i = 0; i < r->nbf; i++) {
        total += r->bf[i].est_total > (double)r->bf[i].rows_done ? r->bf[i].est_total : (double)r->bf[i].rows_done;
        batches += r->bf[i].batches;
        max_ms = r->bf[i].max_ms > max_ms ? r->bf[i].max_ms : max_ms;
    }
    double end = r->bf_finished_ms > 0 ? r->bf_finished_ms : now_ms();
    double elapsed_s = r->bf_started_ms > 0 ? (end - r->bf_started_ms) / 1000.0 : 0;
    double rate = elapsed_s > 0 ? (double)(done - r->bf_rows_at_start) / elapsed_s : 0;
    int all_done = r->nbf > 0 && r->cur >= r->nbf;
    double percent = all_done ? 100.0 : total > 0 ? fmin(99.9, 100.0 * (double)done / total) : 0;
    /* the table being filled, or once all are done the last one */
    const struct backfill *b = r->nbf > 0 ? &r->bf[r->cur < r->nbf ? r->cur : r->nbf - 1] : NULL;
    const char *throttle = r->throttle_reason[0] ? r->throttle_reason : b && b->throttle ? b->throttle : "none";
    return json_pack("{s:I,s:f,s:f,s:f,s:f,s:I,s:I,s:f,s:s,s:{s:I,s:I,s:I,s:f,s:b}}", "rows_done", (json_int_t)done,
                     "est_total", total, "percent", percent, "rows_per_s", rate, "eta_s",
                     rate > 0 && total > done ? (total - (double)done) / rate : 0.0, "batch_rows",
                     (json_int_t)(b ? b->batch_rows : 0), "batches", (json_int_t)batches, "max_batch_ms", max_ms,
                     "throttle", throttle, "settings", "max_rows_per_sec", (json_int_t)r->mig.backfill.max_rows_per_sec,
                     "max_app_p99_ms", (json_int_t)r->max_app_p99_ms, "max_replica_lag_ms",
                     (json_int_t)r->max_replica_lag_ms, "sleep_ratio", r->mig.backfill.sleep_ratio, "paused",
                     r->user_paused);
}

static void get_current(struct migration_runner *r, struct evhttp_request *req)
{
    if (r->phase == RP_IDLE) {
        admin_reply_json(req, 404, error_json("no migration has been started through this proxy"));
        return;
    }
    json_t *body = json_pack("{s:s,s:s,s:o,s:o,s:o}", "name", r->name, "phase", phase_names[r->phase], "error",
                             r->error[0] ? json_string(r->error) : json_null(), "backfill", backfill_json(r),
                             "cutover", r->cut.attempt ? cutover_json(r) : json_null());
    /* exit status 2: the migration was refused before any DDL */
    json_object_set_new(body, "invalid", json_boolean(r->phase == RP_FAILED && r->child_exit == 2));
    admin_reply_json(req, 200, body);
}

static void apply_to_backfills(struct migration_runner *r, const char *key, json_t *v)
{
    for (size_t i = 0; i < r->nbf; i++) {
        struct mig_backfill_settings *c = &r->bf[i].cfg;
        if (!strcmp(key, "max_rows_per_sec"))
            c->max_rows_per_sec = (long)json_integer_value(v);
        else if (!strcmp(key, "target_ms"))
            c->target_ms = (long)json_integer_value(v);
        else if (!strcmp(key, "sleep_ratio"))
            c->sleep_ratio = json_number_value(v);
    }
}

static void post_throttle(struct migration_runner *r, struct evhttp_request *req)
{
    size_t len;
    char *text = request_body(req, &len);
    json_error_t jerr;
    json_t *in = text ? json_loadb(text, len, 0, &jerr) : NULL;
    free(text);
    if (!json_is_object(in)) {
        json_decref(in);
        admin_reply_json(req, 400, error_json("body must be a JSON object of settings"));
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach(in, key, v) {
        int number = json_is_number(v) && json_number_value(v) >= 0;
        if (!strcmp(key, "paused") && json_is_boolean(v)) {
            r->user_paused = json_is_true(v);
        } else if (!strcmp(key, "max_app_p99_ms") && number) {
            r->max_app_p99_ms = (long)json_number_value(v);
        } else if (!strcmp(key, "max_replica_lag_ms") && number) {
            r->max_replica_lag_ms = (long)json_number_value(v);
        } else if ((!strcmp(key, "max_rows_per_sec") || !strcmp(key, "target_ms")) && json_is_integer(v) && number) {
            apply_to_backfills(r, key, v);
            if (!strcmp(key, "max_rows_per_sec"))
                r->mig.backfill.max_rows_per_sec = (long)json_integer_value(v);
            else
                r->mig.backfill.target_ms = (long)json_integer_value(v);
        } else if (!strcmp(key, "sleep_ratio") && number) {
            apply_to_backfills(r, key, v);
            r->mig.backfill.sleep_ratio = json_number_value(v);
        } else {
            char msg[200];
            snprintf(msg, sizeof msg, "unknown or invalid setting \"%s\" (known: max_rows_per_sec, target_ms, "
                                      "sleep_ratio, max_app_p99_ms, max_replica_lag_ms, paused)", key);
            json_decref(in);
            admin_reply_json(req, 400, error_json(msg));
            return;
        }
    }
    json_decref(in);
    json_t *bf = backfill_json(r);
    json_t *settings = json_incref(json_object_get(bf, "settings"));
    json_decref(bf);
    admin_reply_json(req, 200, settings ? settings : json_object());
}

/* ---- routes ---- */

static int runner_route(struct server *srv, struct evhttp_request *req, const char *path, void *ctx)
{
    (void)srv;
    struct migration_runner *r = ctx;
    if (strncmp(path, "/migrations", 11) != 0)
        return 0;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (!engine_db(r)) {
        admin_reply_json(req, 503, error_json("no engine database: start the proxy with --engine-db URI "
                                              "(or PGTANDEM_DB / DATABASE_URL)"));
        return 1;
    }
    if (m == EVHTTP_REQ_POST && !strcmp(path, "/migrations"))
        post_migration(r, req);
    else if (m == EVHTTP_REQ_GET && !strcmp(path, "/migrations/current"))
        get_current(r, req);
    else if (m == EVHTTP_REQ_POST && !strcmp(path, "/migrations/current/complete"))
        post_complete(r, req);
    else if (m == EVHTTP_REQ_POST && !strcmp(path, "/migrations/current/rollback"))
        post_rollback(r, req);
    else if (m == EVHTTP_REQ_POST && !strcmp(path, "/migrations/current/throttle"))
        post_throttle(r, req);
    else
        return 0;
    return 1;
}

/* ---- recovery after a proxy restart ---- */

static void on_recover(void *ctx, PGresult *res, const char *error, const char *sqlstate)
{
    (void)sqlstate;
    struct migration_runner *r = ctx;
    if (error || !res || PQntuples(res) != 1)
        return; /* no state schema yet, or nothing in progress */
    set_name(r, PQgetvalue(res, 0, 0));
    log_info("migration %s was %s when the proxy stopped; picking it up", r->name, PQgetvalue(res, 0, 1));
    r->phase = RP_BACKFILLING;
    load_state(r);
}

static void recover(struct migration_runner *r)
{
    if (pgasync_send(&r->db,
                     "SELECT name, status FROM pgtandem.migrations WHERE status IN ('backfilling', 'active')"
                     " ORDER BY started_at DESC LIMIT 1", 0, NULL, on_recover, r) != 0)
        log_warn("migration state: %s", r->db.error);
}

struct migration_runner *runner_new(struct server *srv)
{
    struct migration_runner *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->srv = srv;
    pgasync_init(&r->db, srv->base);
    r->timer = evtimer_new(srv->base, timer_cb, r);
    if (!r->timer) {
        free(r);
        return NULL;
    }
    if (srv->admin)
        admin_add_routes(srv->admin, runner_route, r);
    if (engine_db(r))
        with_connection(r, recover);
    return r;
}

void runner_free(struct migration_runner *r)
{
    if (!r)
        return;
    if (r->child.ev)
        event_free(r->child.ev);
    if (r->child.pid > 0) {
        kill(r->child.pid, SIGTERM);
        waitpid(r->child.pid, NULL, 0);
        close(r->child.fd);
    }
    reset_migration(r);
    pgasync_close(&r->db);
    event_free(r->timer);
    free(r->name);
    free(r);
}

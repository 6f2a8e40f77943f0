/* A ready session's traffic: each direction streamed message by message
 * (only headers and the few messages the proxy must read or rewrite are
 * looked at), pauses and fleet fences holding the client's next message,
 * the version route followed at boundaries, and with transaction pooling a
 * server borrowed for each transaction, the client's parameters and SETs
 * carried to it, statements mapped, and pins. One part of the client
 * session (see session_internal.h). */
#include "session.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "log.h"
#include "migration_sql.h"
#include "pin.h"
#include "prepared.h"
#include "relay.h"
#include "sbuf.h"
#include "search_path.h"
#include "session_internal.h"
#include "startup_set.h"
#include "statement_map.h"
#include "version_gate.h"

/* What the server-to-client loop does with a message the proxy inspected. */
enum inspect_result {
    INSPECT_STREAM,    /* pass it on as it comes */
    INSPECT_CONSUMED,  /* handled whole (drained, or rewritten to the client) */
    INSPECT_NEED_MORE, /* not buffered whole yet */
    INSPECT_GONE,      /* the session was failed */
};

/* A client message a pause (or an expired fleet lease) holds. */
enum hold_result {
    HOLD_HELD,   /* held until the pause is lifted */
    HOLD_FAILED, /* the fence is overdue: the session was failed instead */
};

/* The pool this session's next transaction runs in: its version route may
 * have changed since the last one. */
struct pool *session_current_pool(struct session *s)
{
    struct startup_set *ss = s->startup;
    if (!ss->pool_options)
        return NULL;
    /* Every transaction asks: the set remembers its pool (pools live as
     * long as the relay), found again only when the route's schema is
     * another, rather than the user and database looked up in the startup
     * packet and the pools searched each time. */
    const char *schema = relay_version_schema(s->relay, ss->version);
    struct pool *p = ss->pool;
    if (!p || !pool_same(p->schema, schema)) {
        const char *user = session_param(s, "user");
        const char *db = session_param(s, "database");
        p = pool_for(s->relay, db && *db ? db : user, user, ss->pool_options, schema);
        ss->pool = p;
    }
    if (p && pool_wants_credentials(p))
        pool_take_credentials(p, s->creds ? &s->creds->c : NULL);
    return p;
}

/* Terminate is never held: a client leaving cannot start a transaction.
 * An expired fleet lease holds like a pause (relay_control.h: relay_set_lease). */
static int paused_hold(struct session *s, uint8_t type)
{
    /* The clock is read only at a boundary, not for every message. */
    return s->state == SESS_READY && type != 'X' && tracker_may_hold_next(&s->tracker) &&
           (s->relay->pause.paused || relay_lease_expired(s->relay) || version_gate_holds(s));
}

static void note_client_message(struct session *s, uint8_t type)
{
    if (s->tracker.pending_rfq == 0 && !s->tracker.mid_unit)
        s->unit_start_us = relay_now_us(s->relay);
    tracker_client_message(&s->tracker, type);
    session_sync_busy(s);
}

/* Named Parse and Close messages update the prepared-statement registry. */
static enum peek_result track_statement(struct session *s, struct evbuffer *in, const struct msg_header *h,
                                        size_t avail)
{
    uint32_t total = h->length + 1;
    if ((h->type != 'P' && h->type != 'C') || total > PREPARED_MAX_MESSAGE)
        return PEEK_DONE;
    if (avail < PROTO_HEADER_LEN + 1)
        return PEEK_NEED_MORE;
    uint8_t first[PROTO_HEADER_LEN + 1];
    evbuffer_copyout(in, first, sizeof first);
    if (h->type == 'P' && first[PROTO_HEADER_LEN] == '\0')
        return PEEK_DONE; /* unnamed: nothing to remember */
    if (avail < total)
        return PEEK_NEED_MORE;
    const uint8_t *msg = evbuffer_pullup(in, total);
    if (h->type == 'P')
        prepared_remember(&s->prepared, msg, total);
    else
        prepared_forget_closed(&s->prepared, msg, total);
    return PEEK_DONE;
}

/* A simple Query of the proxy's own, sent ahead of whatever the client
 * sends next; its answers up to its ReadyForQuery are swallowed. */
static void inject_query(struct session *s, const char *sql)
{
    struct evbuffer *out = sbuf_out(s->backend);
    if (!out)
        return; /* the server fails, and the session with it */
    proto_add_query(out, sql);
    s->swallow_rfq++;
}

/* The route changed since this session's search_path was set (a migration
 * started, its new shape appeared, it ended): just before its next
 * transaction, a SET search_path to the schema it should see now and its
 * named statements prepared again under it, all answers swallowed, so
 * neither a cached plan nor `SELECT *` changes shape under the client. Not
 * at a boundary (a pipeline in flight, a transaction open) it waits for
 * the next one. A route that ended needs nothing: the schema it named is
 * gone, and Postgres skips a missing schema on the search_path. */
static void follow_route(struct session *s)
{
    if (s->state != SESS_READY || !s->backend || !tracker_at_boundary(&s->tracker))
        return;
    s->route_gen = s->relay->route.gen;
    const char *want = relay_version_schema(s->relay, s->startup->version);
    const char *routed = s->extra ? s->extra->routed_schema : NULL;
    if (!want || (routed && !strcmp(want, routed)))
        return;
    char own[PIN_SEARCH_PATH_MAX];
    int has_own = search_path_of_startup(&s->startup->sp, own, sizeof own);
    char *sql = has_own > 0 ? mig_search_path_set_config(want, own) : mig_search_path_sql(want);
    struct evbuffer *out = sbuf_out(s->backend);
    if (!sql || !out || session_set_routed_schema(s, want) != 0) {
        free(sql);
        s->route_gen--; /* tried again at the next boundary */
        return;
    }
    inject_query(s, sql);
    if (prepared_write_reprepare(s->prepared, out))
        s->swallow_rfq++;
    free(sql);
    log_debug("session %llu: routed to %s", (unsigned long long)s->id, want);
}

/* A pause (or an expired fleet lease) holds the client's next message. */
static enum hold_result hold_message(struct session *s)
{
    if (relay_fence_overdue(s->relay)) {
        session_fail(s, SQLSTATE_ADMIN_SHUTDOWN, "%s", s->relay->fence_error);
        return HOLD_FAILED;
    }
    if (!s->holding) {
        s->holding = 1;
        s->relay->pause.held_messages++;
    }
    /* Reading goes on, so a client that leaves while held is noticed and
     * its session freed at once; past one buffer the held bytes stay in
     * the kernel. */
    if (sbuf_pending_in(s->client) >= s->relay->cfg.buffer_bytes)
        sbuf_pause_read(s->client);
    return HOLD_HELD;
}

/* ---- transaction pooling: lending ---- */

/* SET for each tracked parameter whose value on the lent server is not
 * the client's, sent ahead of the client's transaction, answers swallowed
 * (their ParameterStatus still noted: see note_parameter). */
static int param_differs(const struct session *s, int i)
{
    const struct param_values *have = &s->lent->params, *want = &s->params->v;
    return want->known[i] && !(have->known[i] && !strcmp(have->value[i], want->value[i]));
}

static int params_differ(const struct session *s)
{
    for (int i = 0; i < PIN_NTRACKED; i++)
        if (param_differs(s, i))
            return 1;
    return carried_sets_differ(&s->lent->carried, &s->carried, s->lent->pool->schema);
}

static void sync_params(struct session *s)
{
    if (!s->params || !params_differ(s)) /* the usual case: nothing to say, nothing allocated */
        return;
    struct evbuffer *sql = evbuffer_new();
    if (!sql)
        return;
    if (carried_sets_sync(&s->lent->carried, &s->carried, s->lent->pool->schema, sql) != 0)
        session_pin(s, "out of memory carrying its SETs");
    for (int i = 0; i < PIN_NTRACKED; i++) {
        if (!param_differs(s, i))
            continue;
        evbuffer_add_printf(sql, "SET %s TO '", PIN_TRACKED_PARAMS[i]);
        for (const char *v = s->params->v.value[i]; *v; v++) {
            if (*v == '\'')
                evbuffer_add(sql, "'", 1); /* quoted as a literal: '' */
            evbuffer_add(sql, v, 1);
        }
        evbuffer_add(sql, "'", 2); /* with its NUL */
    }
    /* one Query each: in one, a statement that fails (a SET valid when the
     * client ran it, refused now: its text search configuration dropped
     * since) would roll back the RESETs of another client's values with it */
    size_t n = evbuffer_get_length(sql);
    const char *all = n ? (const char *)evbuffer_pullup(sql, -1) : NULL;
    for (size_t at = 0; at < n; at += strlen(all + at) + 1)
        inject_query(s, all + at);
    evbuffer_free(sql);
}

/* server_reset_query_always: a server another client used last starts
 * from its login's settings, then the client's own are replayed
 * (sync_params). A function's SET or a set_config() the pool cannot see
 * then reaches no other client, for a statement more each time a server
 * changes hands. Its ParameterStatus answers are swallowed and noted
 * like the rest; meanwhile the server counts as having what its login had
 * (the pool's welcome), which is what RESET ALL goes back to. */
static void reset_for_another(struct session *s, struct pool_server *ps)
{
    uint64_t last = ps->last_borrower;
    ps->last_borrower = s->id;
    if (!s->relay->cfg.server_reset_always || !last || last == s->id)
        return;
    inject_query(s, "RESET ALL");
    carried_sets_free(&ps->carried);
    ps->params = ps->pool->welcome;
}

void session_attach_server(struct session *s, struct pool_server *ps)
{
    s->lent = ps;
    s->backend = ps->sb;
    s->upstream_pid = ps->pid;
    s->upstream_key = ps->key;
    s->backend_pid = ps->backend_pid;
    sbuf_set_ops(ps->sb, &session_backend_ops, s);
    sbuf_resume_read(ps->sb);
    s->swallow_rfq += ps->owed_rfq; /* our Close messages sent while it was idle */
    ps->owed_rfq = 0;
    reply_queue_reset(&ps->replies);
    s->unnamed.on_server = 0; /* it may have another borrower's */
    reset_for_another(s, ps);
    sync_params(s);
}

/* Between transactions: the client's next message needs a server. 1 when
 * one is lent now, 0 when the session waits for one, holds or ends. */
static int borrow_for_next_message(struct session *s)
{
    uint8_t type;
    if (s->waiter.in || !sbuf_pending_in(s->client) || evbuffer_copyout(s->client->in, &type, 1) != 1)
        return 0;
    if (type == 'X') { /* Terminate: nothing to lend for, and a pooled server must not see it */
        session_fail_silently(s);
        return 0;
    }
    if (paused_hold(s, type)) {
        (void)hold_message(s); /* failed or held: either way no server now */
        return 0;
    }
    struct pool *p = session_current_pool(s);
    if (!p) {
        session_fail(s, SQLSTATE_CONNECTION_FAILURE, "out of memory");
        return 0;
    }
    struct pool_server *ps = pool_acquire(p, &s->waiter);
    if (!ps)
        return 0;
    session_attach_server(s, ps);
    return 1;
}

/* At a transaction boundary with nothing of ours or the client's in
 * flight, the server goes back to the pool; a next transaction the client
 * already sent borrows again at once. */
static void give_back_at_boundary(struct session *s)
{
    if (!s->lent || s->pinned || s->state != SESS_READY || !tracker_at_boundary(&s->tracker) ||
        s->swallow_rfq || s->s2c_remaining || s->c2s_remaining || !reply_queue_empty(&s->lent->replies))
        return;
    struct pool_server *ps = s->lent;
    s->lent = NULL;
    s->backend = NULL;
    s->upstream_pid = s->upstream_key = s->backend_pid = 0;
    s->s2c_blocked = 0;
    if (s->c2s_blocked) {
        s->c2s_blocked = 0;
        sbuf_resume_read(s->client);
    }
    pool_release(ps, 1);
    if (!s->holding && sbuf_pending_in(s->client))
        session_client_to_server(s);
    if (!s->lent && !s->waiter.in && s->state == SESS_READY)
        session_release_idle_buffers(s);
}

/* Replies the proxy owes the client are written when nothing of the
 * server's is on its way to the client before them; 1 when any was (the
 * caller flushes the client once, after its loop). */
static int answer_due_now(struct session *s)
{
    if (s->s2c_remaining && !s->s2c_discard)
        return 0;
    struct evbuffer *out = sbuf_out(s->client);
    return out ? stmt_map_answer_due(&s->lent->replies, out) : 0;
}

/* The client's next message through the statement map; a failure ends the
 * session with what the map says. */
static enum stmt_map_result map_statement(struct session *s, struct evbuffer *in, const struct msg_header *h,
                                          size_t avail)
{
    struct stmt_map m = {.registry = &s->prepared, .replies = &s->lent->replies, .server = s->lent,
                         .unnamed = &s->unnamed};
    enum stmt_map_result r = stmt_map_client_message(&m, in, h, avail);
    if (r == STMT_FAILED)
        session_fail(s, m.sqlstate, "%s", m.error);
    else if (r == STMT_STREAM_REST)
        s->c2s_remaining = m.rest;
    if (r != STMT_FAILED && r != STMT_NEED_MORE && h->type == 'B' && !s->pinned)
        session_note_bound(s, &m.bound);
    return r;
}

void session_client_to_server(struct session *s)
{
    if (s->state == SESS_READY && session_pooled(s) && !s->backend && !borrow_for_next_message(s))
        return;
    if (!s->backend || s->state == SESS_CLOSING || s->state == SESS_CONNECTING || s->state == SESS_CLIENT_AUTH ||
        s->state == SESS_UPSTREAM_LOGIN)
        return;
    struct evbuffer *in = s->client->in; /* NULL (nothing read since it was released): session_next_message says so */
    struct relay_dir d = {s->client, s->backend, &s->c2s_remaining, &s->c2s_blocked, NULL, &s->bytes_in,
                          &s->relay->metrics.bytes_from_client, s->relay->cfg.max_message_bytes, .batch = 0};
    int answered = 0;
    for (;;) {
        struct msg_header h;
        size_t avail;
        enum next_result r = session_next_message(s, &d, &h, &avail);
        if (r == NEXT_BAD_LENGTH) {
            session_protocol_violation(s, h.length < 4 ? "invalid message length"
                                               : "message exceeds the maximum message size");
            return;
        }
        if (r == NEXT_WAIT)
            break;
        if (paused_hold(s, h.type)) {
            if (hold_message(s) == HOLD_FAILED)
                return;
            break;
        }
        if (s->lent && h.type == 'X') { /* the pooled server stays logged in */
            session_fail_silently(s);
            return;
        }
        if (s->route_gen != s->relay->route.gen && h.type != 'X' && (!s->lent || s->pinned))
            follow_route(s);
        if (s->state == SESS_READY && s->lent) {
            if (session_check_statement(s, in, &h, &avail) == PEEK_NEED_MORE)
                break;
            enum stmt_map_result m = map_statement(s, in, &h, avail);
            if (m == STMT_NEED_MORE)
                break;
            if (m == STMT_FAILED)
                return;
            note_client_message(s, h.type);
            if (m == STMT_CONSUMED)
                answered |= answer_due_now(s);
            if (m == STMT_CONSUMED || m == STMT_STREAM_REST)
                continue; /* c2s_remaining set, or nothing left of it */
        } else if (s->state == SESS_READY) {
            if (track_statement(s, in, &h, avail) == PEEK_NEED_MORE)
                break;
            note_client_message(s, h.type);
        }
        s->c2s_remaining = h.length + 1;
    }
    sbuf_flush(s->backend);
    if (answered)
        sbuf_flush(s->client);
}

/* AuthenticationSASL: drop SCRAM-SHA-256-PLUS from the offered mechanisms. */
static void forward_auth_request(struct session *s, struct evbuffer *in, struct evbuffer *out, uint32_t total)
{
    uint8_t *msg = evbuffer_pullup(in, total);
    uint32_t code = proto_get_u32(msg + 5);
    if (code == AUTH_SASL) {
        uint8_t body[MAX_AUTH_MESSAGE];
        int n = proto_sasl_without_plus(msg + 9, total - 9, body, sizeof body);
        if (n < 0) {
            session_protocol_violation(s, "malformed SASL mechanism list from upstream");
            return;
        }
        uint8_t head[9];
        head[0] = 'R';
        proto_put_u32(head + 1, (uint32_t)(8 + n));
        proto_put_u32(head + 5, AUTH_SASL);
        evbuffer_add(out, head, 9);
        evbuffer_add(out, body, (size_t)n);
        evbuffer_drain(in, total);
    } else {
        evbuffer_remove_buffer(in, out, total);
    }
}

/* BackendKeyData: the client is told the backend's own PID, the one
 * pg_backend_pid(), pg_stat_activity and notifications name, and a key of
 * ours in place of the upstream's, so a CancelRequest has to come through
 * us and reaches only the session its (pid, key) pair names. */
static void forward_backend_key(struct session *s, struct evbuffer *in, struct evbuffer *out)
{
    uint8_t msg[13];
    evbuffer_remove(in, msg, sizeof msg);
    s->upstream_pid = proto_get_u32(msg + 5);
    s->upstream_key = proto_get_u32(msg + 9);
    s->cancel_pid = s->upstream_pid;
    if (session_issue_cancel_key(s) != 0) { /* a second BackendKeyData replaces the first */
        log_error("session %llu (%s): no random bytes for a cancel key (RAND_bytes failed)", (unsigned long long)s->id,
                  session_addr(s));
        session_fail(s, SQLSTATE_INTERNAL_ERROR, "could not generate random cancel key");
        return;
    }
    proto_put_u32(msg + 9, s->cancel_key);
    evbuffer_add(out, msg, sizeof msg);
}

/* After login, before the client's first query: Postgres is asked for the
 * backend's PID, because the BackendKeyData PID may be an edge's own (Neon's
 * proxy makes one up per connection) and the fleet must name its sessions
 * as pg_stat_activity does. The answer is swallowed like a re-prepare's;
 * the client goes on seeing the BackendKeyData PID. Only in a fleet. */
static void probe_backend_pid(struct session *s)
{
    if (!s->relay->probe_backend_pids || !s->backend)
        return;
    inject_query(s, PROTO_PID_PROBE_SQL);
    s->pid_probe = 1;
    sbuf_flush(s->backend);
}

/* The probe's DataRow: one column, the PID as text. Anything unexpected
 * is ignored (the PID then stays the BackendKeyData one). */
static enum peek_result read_probe_answer(struct session *s, struct evbuffer *in, const struct msg_header *h,
                                          size_t avail)
{
    uint32_t total = h->length + 1;
    if (!s->pid_probe || h->type != 'D' || total > 32)
        return PEEK_DONE;
    if (avail < total)
        return PEEK_NEED_MORE;
    uint8_t msg[32];
    evbuffer_copyout(in, msg, total);
    proto_read_pid_row(msg, total, &s->backend_pid); /* sets it only when it reads one */
    return PEEK_DONE;
}

/* A ReadyForQuery arrived: bookkeeping for metrics, pause and shutdown. */
static void on_ready_for_query(struct session *s, uint8_t status)
{
    char before = s->tracker.tx_status;
    int unit_done = tracker_server_message(&s->tracker, 'Z', status);
    session_sync_busy(s);
    uint64_t now = relay_now_us(s->relay);
    if (s->state == SESS_AUTH) {
        session_set_state(s, SESS_READY);
        session_stop_login_timer(s);
        probe_backend_pid(s);
        log_debug("session %llu ready: user=%s database=%s", (unsigned long long)s->id, session_param(s, "user"),
                  session_param(s, "database"));
        return;
    }
    if (unit_done && s->unit_start_us)
        metrics_record_latency(&s->relay->metrics, now > s->unit_start_us ? now - s->unit_start_us : 0,
                               session_version(s) ? LATENCY_ROUTE_NEW : LATENCY_ROUTE_OLD);
    if (status == 'I')
        s->relay->metrics.transactions_total++;
    else if (before == 'I')
        s->tx_start_us = s->unit_start_us ? s->unit_start_us : now;
}

/* Auth "scram": an Authentication* message from the upstream is answered
 * by the proxy, never shown to the client. */
static enum inspect_result upstream_login_step(struct session *s, struct evbuffer *in, const struct msg_header *h,
                                               size_t avail)
{
    uint32_t total = h->length + 1;
    if (total > PROTO_MAX_AUTH_MESSAGE) {
        session_protocol_violation(s, "invalid authentication message from upstream");
        return INSPECT_GONE;
    }
    if (avail < total)
        return INSPECT_NEED_MORE;
    enum auth_result r = auth_upstream_message(s->auth, s->backend, evbuffer_pullup(in, total), total);
    if (r == AUTH_FAILED) {
        session_fail_authentication(s);
        return INSPECT_GONE;
    }
    if (r == AUTH_NOT_MINE)
        return INSPECT_STREAM;
    evbuffer_drain(in, total);
    if (r == AUTH_DONE) { /* the exchange is over, and its state no longer needed */
        auth_free(s->auth);
        s->auth = NULL;
        session_set_state(s, SESS_AUTH);
    }
    return INSPECT_CONSUMED;
}

/* The client's own copy of its tracked values takes a ParameterStatus;
 * they stay shared while it changes nothing. -1 as param_values_note, or
 * out of memory. */
static int note_own_parameter(struct session *s, const uint8_t *msg, uint32_t len)
{
    if (!s->params)
        return 0;
    struct param_values v = s->params->v;
    if (param_values_note(&v, msg, len) != 0)
        return -1;
    if (!memcmp(&v, &s->params->v, sizeof v))
        return 0;
    if (shared_params_own(&s->params) != 0)
        return -1;
    s->params->v = v;
    return 0;
}

/* Transaction pooling: a ParameterStatus of a tracked parameter is what
 * both the lent server and its client now have (the client's SET, or ours
 * from sync_params in Postgres's spelling). A value too long to carry pins
 * the client. */
static enum peek_result note_parameter(struct session *s, struct evbuffer *in, const struct msg_header *h,
                                       size_t avail)
{
    uint32_t total = h->length + 1;
    if (!s->lent || h->type != 'S' || total > 1024)
        return PEEK_DONE;
    if (avail < total)
        return PEEK_NEED_MORE;
    const uint8_t *msg = evbuffer_pullup(in, total);
    if (param_values_note(&s->lent->params, msg, total) != 0 || note_own_parameter(s, msg, total) != 0) {
        if (!s->pinned)
            session_pin(s, "parameter value too long to carry");
    }
    return PEEK_DONE;
}

/* Examines a server message at its start. */
static enum inspect_result inspect_server_message(struct session *s, struct evbuffer *in, struct evbuffer *out,
                                                  const struct msg_header *h, const uint8_t *head, size_t avail)
{
    uint32_t total = h->length + 1;
    switch (h->type) {
    case 'Z': {
        if (avail < PROTO_HEADER_LEN + 1) /* head holds the status byte once it is there */
            return INSPECT_NEED_MORE;
        uint8_t status = head[PROTO_HEADER_LEN];
        if (s->pending_sets) /* the usual case: none, no call */
            session_sets_ready(s, status);
        s->unit_failed = 0;
        on_ready_for_query(s, status);
        if (s->tracker.pending_rfq == 0)
            s->dealloc_replies = 0; /* one the server skipped (an error before it) is not owed */
        return INSPECT_STREAM;
    }
    case 'C':
        return session_note_command_complete(s, in, h, avail) == PEEK_NEED_MORE ? INSPECT_NEED_MORE : INSPECT_STREAM;
    case 'I':
        return session_answer_deallocated(s, in, out, h) ? INSPECT_CONSUMED : INSPECT_STREAM;
    case 'E':
        s->unit_failed = 1;
        if (s->pending_sets)
            session_sets_error(s);
        return INSPECT_STREAM;
    case 'G': case 'W': {
        uint32_t due = s->tracker.pending_rfq;
        tracker_server_message(&s->tracker, h->type, 0);
        session_sets_skipped(s, due - s->tracker.pending_rfq);
        session_sync_busy(s);
        return INSPECT_STREAM;
    }
    case 'S':
        return note_parameter(s, in, h, avail) == PEEK_NEED_MORE ? INSPECT_NEED_MORE : INSPECT_STREAM;
    case 'R':
        if (s->state == SESS_UPSTREAM_LOGIN)
            return upstream_login_step(s, in, h, avail);
        /* fall through */
    case 'K':
        if (s->state != SESS_AUTH)
            return INSPECT_STREAM;
        if (total > MAX_AUTH_MESSAGE || (h->type == 'K' && h->length != 12) || (h->type == 'R' && h->length < 8)) {
            session_protocol_violation(s, "invalid authentication message from upstream");
            return INSPECT_GONE;
        }
        if (avail < total)
            return INSPECT_NEED_MORE;
        if (h->type == 'K')
            forward_backend_key(s, in, out);
        else
            forward_auth_request(s, in, out, total);
        return s->state == SESS_CLOSING ? INSPECT_GONE : INSPECT_CONSUMED;
    default:
        return INSPECT_STREAM;
    }
}

/* A message the server-to-client loop only streams, touching neither
 * buffer at its head: it can wait in `held` behind the ones before it.
 * Everything else first moves those (session_pass_held). */
static int streams_untouched(const struct session *s, const struct msg_header *h)
{
    if (s->state != SESS_READY || s->swallow_rfq || (s->lent && !reply_queue_passes(&s->lent->replies, h->type)))
        return 0;
    switch (h->type) {
    case 'Z': case 'E':
        return !s->pending_sets;
    case 'C': /* read only at the lengths of DEALLOCATE ALL and DISCARD ALL */
        return !session_command_tag_matters(h);
    case 'I': case 'G': case 'W': case 'S': case 'R': case 'K':
        return 0;
    default:
        return 1;
    }
}

void session_server_to_client(struct session *s)
{
    if (!s->client || !s->backend || s->state == SESS_CLOSING)
        return;
    struct evbuffer *in = s->backend->in; /* NULL: nothing read since it was released */
    struct evbuffer *out = in ? sbuf_out(s->client) : NULL;
    if (!out)
        return;
    int saw_boundary = 0;
    struct relay_dir d = {s->backend, s->client, &s->s2c_remaining, &s->s2c_blocked, &s->s2c_discard, &s->bytes_out,
                          &s->relay->metrics.bytes_from_server, 0xffffffffu, .batch = 1};
    for (;;) {
        struct msg_header h;
        size_t avail;
        enum next_result r = session_next_message(s, &d, &h, &avail);
        if (r == NEXT_BAD_LENGTH) {
            session_pass_held(&d);
            session_protocol_violation(s, "invalid message length from upstream");
            return;
        }
        if (r == NEXT_WAIT)
            break;
        if (!streams_untouched(s, &h))
            session_pass_held(&d);
        if (s->lent) /* in their turn: the message before them has passed */
            stmt_map_answer_due(&s->lent->replies, out);
        if (s->swallow_rfq) { /* answers to our re-prepare or PID probe, not the client's */
            if (read_probe_answer(s, in, &h, avail) == PEEK_NEED_MORE ||
                note_parameter(s, in, &h, avail) == PEEK_NEED_MORE)
                break;
            if (h.type == 'Z') {
                s->swallow_rfq--;
                s->pid_probe = 0;
            } else if (h.type == 'E' && s->lent) {
                /* what it has set is no longer what the pool booked */
                s->lent->state_unknown = 1;
            }
            s->s2c_remaining = h.length + 1;
            s->s2c_discard = 1;
            continue;
        }
        if (s->lent && stmt_map_server_message(&s->lent->replies, s->lent, &s->unnamed, h.type, out)) { /* the reply to one of ours */
            s->s2c_remaining = h.length + 1;
            s->s2c_discard = 1;
            continue;
        }
        enum inspect_result seen = inspect_server_message(s, in, out, &h, d.head, avail);
        if (seen == INSPECT_GONE)
            return;
        if (seen == INSPECT_NEED_MORE)
            break;
        if (h.type == 'Z' || h.type == 'G' || h.type == 'W')
            saw_boundary = 1;
        if (seen == INSPECT_STREAM)
            s->s2c_remaining = h.length + 1;
    }
    session_pass_held(&d);
    if (s->lent && !s->s2c_remaining)
        stmt_map_answer_due(&s->lent->replies, out);
    sbuf_flush(s->client);
    if (saw_boundary && s->relay->shutting_down && session_at_boundary(s)) {
        session_fail(s, SQLSTATE_ADMIN_SHUTDOWN, "terminating connection due to administrator command");
        return;
    }
    if (saw_boundary && s->relay->pause.paused) {
        if (s->holding && !tracker_may_hold_next(&s->tracker))
            session_release_held(s);
        relay_boundary_reached(s->relay);
    }
    if (saw_boundary && s->lent)
        give_back_at_boundary(s);
    if (saw_boundary && (s->pinned || !session_pooled(s)) && session_idle_at_boundary(s))
        session_release_idle_buffers(s);
}

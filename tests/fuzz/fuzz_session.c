/* libFuzzer target for the session state machine, driven through the real
 * relay: one session accepted on a socketpair, its upstream a Unix socket
 * this target listens on, and the input split into chunks written by the
 * client or by the "server" in any interleaving, well framed or not. After
 * every chunk the loop runs and the invariants are checked: every state is
 * one of the enum, relay->counts matches a recount (per state and busy), and
 * every cancel key is found through the index. At the end both peers hang
 * up and the session must go away by itself. */
#include <assert.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "proto.h"
#include "relay.h"
#include "session.h"
#include "source_limit.h"

static struct relay relay;
static int listen_fd = -1;
static struct sockaddr_un upstream_sun;

static void set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void remove_socket(void)
{
    unlink(upstream_sun.sun_path);
}

static void setup_once(void)
{
    if (relay.base)
        return;
    signal(SIGPIPE, SIG_IGN); /* as the proxy does: a peer gone is a write error */
    log_set_level(LOG_LEVEL_ERROR);
    config_init(&relay.cfg);
    relay.base = event_base_new();
    relay.cfg.client_tls = CLIENT_TLS_DISABLE;
    relay.cfg.auth_scram = 0;
    relay.cfg.client_login_timeout_ms = 0;
    relay.cfg.buffer_bytes = 4096;
    listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    upstream_sun.sun_family = AF_UNIX;
    snprintf(upstream_sun.sun_path, sizeof upstream_sun.sun_path, "/tmp/pgt-fuzz-session-%d.sock", (int)getpid());
    unlink(upstream_sun.sun_path);
    if (!relay.base || listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&upstream_sun, sizeof upstream_sun) != 0 ||
        listen(listen_fd, 16) != 0)
        abort();
    set_nonblocking(listen_fd);
    atexit(remove_socket);
    memcpy(&relay.upstream_addr.addr, &upstream_sun, sizeof upstream_sun);
    relay.upstream_addr.addrlen = sizeof upstream_sun;
}

static void check_invariants(void)
{
    uint32_t in_state[SESS_NSTATES] = {0}, busy = 0, n = 0;
    for (const struct session *s = relay.sessions; s; s = s->next) {
        assert(session_state_valid((int)s->state));
        in_state[s->state]++;
        busy += !session_at_boundary(s);
        assert(s->busy == !session_at_boundary(s));
        n++;
        if (s->cancel_key && s->state == SESS_READY)
            assert(session_find_by_cancel_key(&relay, s->cancel_pid, s->cancel_key) == s);
    }
    assert(n == relay_session_count(&relay));
    assert(n == session_counts_total(&relay.counts));
    assert(busy == relay.counts.busy);
    for (int i = 0; i < SESS_NSTATES; i++)
        assert(in_state[i] == relay.counts.in_state[i]);
}

static void turn_loop(int *server_fd)
{
    for (int i = 0; i < 4; i++) {
        event_base_loop(relay.base, EVLOOP_NONBLOCK);
        if (*server_fd < 0 && (*server_fd = accept(listen_fd, NULL, NULL)) >= 0)
            set_nonblocking(*server_fd);
        check_invariants();
    }
}

static void put(int fd, const uint8_t *p, size_t n)
{
    if (fd >= 0 && n && write(fd, p, n) < 0 && errno != EAGAIN)
        return;
}

/* Drains what the proxy wrote, so its buffers never fill and block it. */
static void drain(int fd)
{
    uint8_t sink[4096];
    while (fd >= 0 && read(fd, sink, sizeof sink) > 0)
        ;
}

static const uint8_t startup[] = {0, 0, 0, 33, 0, 3, 0, 0, 'u', 's', 'e', 'r', 0, 'f', 'u', 'z', 'z', 0,
                                  'd', 'a', 't', 'a', 'b', 'a', 's', 'e', 0, 'f', 'u', 'z', 'z', 0, 0};
/* What an upstream says after a trust login: AuthenticationOk,
 * BackendKeyData, ReadyForQuery 'I'. */
static const uint8_t login_ok[] = {'R', 0, 0, 0, 8, 0, 0, 0, 0, 'K', 0, 0, 0, 12, 0, 0, 0x30, 0x39,
                                   1, 2, 3, 4, 'Z', 0, 0, 0, 5, 'I'};

/* Input: a mode byte, then chunks of [op][len][len bytes]. op bit 0: the
 * server writes (else the client); bit 1: framed as one message with the
 * chunk's first byte as its type and a correct length. Mode bit 0: the
 * client starts with a valid StartupMessage; bit 1: the server answers it
 * with a login. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    setup_once();
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
        return 0;
    int client_fd = fds[0], server_fd = -1;
    set_nonblocking(client_fd);
    session_accept(&relay, fds[1], (struct sockaddr *)&upstream_sun, sizeof upstream_sun);
    check_invariants();
    uint8_t mode = data[0];
    size_t pos = 1;
    if (mode & 1) {
        put(client_fd, startup, sizeof startup);
        turn_loop(&server_fd);
        if (mode & 2) {
            turn_loop(&server_fd);
            put(server_fd, login_ok, sizeof login_ok);
            turn_loop(&server_fd);
        }
    }
    while (pos + 2 <= size) {
        uint8_t op = data[pos], len = data[pos + 1];
        pos += 2;
        size_t n = len <= size - pos ? len : size - pos;
        const uint8_t *chunk = data + pos;
        pos += n;
        int fd = op & 1 ? server_fd : client_fd;
        if ((op & 2) && n >= 1) {
            uint8_t head[5] = {chunk[0]};
            proto_put_u32(head + 1, (uint32_t)(4 + n - 1));
            put(fd, head, sizeof head);
            put(fd, chunk + 1, n - 1);
        } else {
            put(fd, chunk, n);
        }
        turn_loop(&server_fd);
        drain(client_fd);
        drain(server_fd);
    }
    close(client_fd);
    if (server_fd >= 0)
        close(server_fd);
    for (int i = 0; i < 64 && relay.sessions; i++) {
        event_base_loop(relay.base, EVLOOP_NONBLOCK);
        check_invariants();
    }
    /* A session stuck waiting for an upstream that never answers is not a
     * leak of the relay's: the harness ends it as a timeout would. */
    while (relay.sessions)
        session_free(relay.sessions);
    int late;
    while ((late = accept(listen_fd, NULL, NULL)) >= 0)
        close(late);
    check_invariants();
    return 0;
}

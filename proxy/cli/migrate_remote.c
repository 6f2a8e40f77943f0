/* Client side of `pgtandem migrate start|status|complete|rollback --proxy URL`:
 * a small blocking HTTP/1.1 client for the proxy's admin API (one request per
 * connection, Connection: close, body read until the server closes) and the
 * commands on top of it. `start` submits the migration and then polls
 * GET /migrations/current, showing the same progress display as direct mode. */
#include "migrate_remote.h"

#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "file_read.h"
#include "log.h"
#include "migration_lifecycle.h"
#include "progress_line.h"

#define EXIT_OPERATIONAL 1
#define EXIT_INVALID 2
#define MAX_UPLOAD (1 << 20)    /* the admin API's body limit */
#define MAX_RESPONSE (8 << 20)
#define POLL_MS 250
#define MAX_POLL_FAILURES 40    /* 10 s of an unreachable proxy while polling */
#define SHORT_TIMEOUT_S 30
#define LONG_TIMEOUT_S 900      /* complete/rollback answer when done */

struct remote {
    const char *url;
    const char *token;
    char host[256];
    char port[8];
};

struct http_resp {
    int status;
    char *raw;         /* the whole response, NUL-terminated */
    const char *body;  /* points into raw */
    json_t *json;      /* the body parsed, or NULL */
};

struct progress {
    struct progress_line line;
    char phase[32];
    int beside;     /* the proxy starts it beside the migration in flight, on an engine of its own */
};

/* ---- URL and token ---- */

static int copy_part(char *dst, size_t cap, const char *src, size_t n)
{
    if (n == 0 || n >= cap)
        return -1;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return 0;
}

/* "http://HOST:PORT" (or "[v6]:PORT"; port 80 when omitted; a trailing "/"). */
static int parse_url(struct remote *r, char *err, size_t errlen)
{
    const char *p = r->url;
    if (strncmp(p, "http://", 7) == 0)
        p += 7;
    else if (strstr(p, "://")) {
        snprintf(err, errlen, "--proxy %s: only http:// is supported (the admin API listens on loopback; "
                 "reach a remote proxy through an SSH tunnel)", r->url);
        return -1;
    }
    const char *host = p, *hend;
    if (*p == '[') {
        host = p + 1;
        hend = strchr(host, ']');
        p = hend ? hend + 1 : host;
    } else {
        hend = p + strcspn(p, ":/");
        p = hend;
    }
    const char *port = "80";
    size_t plen = 2;
    if (hend && *p == ':') {
        port = ++p;
        plen = strspn(p, "0123456789");
        p += plen;
    }
    if (!hend || copy_part(r->host, sizeof r->host, host, (size_t)(hend - host)) != 0 ||
        copy_part(r->port, sizeof r->port, port, plen) != 0 || plen > 5 || atoi(r->port) < 1 ||
        atoi(r->port) > 65535 || (*p && strcmp(p, "/") != 0)) {
        snprintf(err, errlen, "--proxy %s: expected http://HOST:PORT (the proxy's --admin address)", r->url);
        return -1;
    }
    return 0;
}

static int check_token(const struct remote *r, char *err, size_t errlen)
{
    if (r->token && strpbrk(r->token, "\r\n")) {
        snprintf(err, errlen, "PGTANDEM_ADMIN_TOKEN contains a line break");
        return -1;
    }
    return 0;
}

/* ---- HTTP ---- */

static int dial(const struct remote *r, int timeout_s, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(r->host, r->port, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", r->host, gai_strerror(g));
        return -1;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            saved = errno;
            close(fd);
            fd = -1;
        } else if (fd < 0) {
            saved = errno;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "cannot reach the proxy's admin API at %s: %s", r->url, strerror(saved));
        return -1;
    }
    struct timeval tv = {timeout_s, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

static int send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads until the server closes; returns a NUL-terminated buffer or NULL. */
static char *read_all(int fd, size_t *len_out)
{
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (cap - len < 2) {
            char *bigger = cap < MAX_RESPONSE ? realloc(buf, cap * 2) : NULL;
            if (!bigger)
                break;
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        if (n == 0) {
            buf[len] = '\0';
            *len_out = len;
            return buf;
        }
        len += (size_t)n;
    }
    free(buf);
    return NULL;
}

static int parse_response(char *raw, size_t len, struct http_resp *out)
{
    int major, minor, status;
    if (sscanf(raw, "HTTP/%d.%d %d", &major, &minor, &status) != 3 || status < 100 || status > 599)
        return -1;
    char *end = strstr(raw, "\r\n\r\n");
    if (!end)
        return -1;
    out->status = status;
    out->body = end + 4;
    /* honour Content-Length when present (read-until-close covers the rest) */
    const char *cl = strcasestr(raw, "\r\ncontent-length:");
    if (cl && cl < end) {
        long n = strtol(cl + 17, NULL, 10);
        if (n >= 0 && (size_t)n < len - (size_t)(out->body - raw))
            end[4 + n] = '\0';
    }
    out->json = json_loads(out->body, JSON_DECODE_ANY, NULL);
    return 0;
}

static char *build_request(const struct remote *r, const char *method, const char *path, size_t body_len)
{
    char auth[1024] = "";
    if (r->token && *r->token)
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", r->token);
    char *head = NULL;
    int n = asprintf(&head, "%s %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: pgtandem-migrate\r\n"
                     "Accept: application/json\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%sConnection: close\r\n\r\n",
                     method, path, r->host, r->port, body_len, auth);
    return n < 0 ? NULL : head;
}

static void resp_free(struct http_resp *resp)
{
    json_decref(resp->json);
    free(resp->raw);
    memset(resp, 0, sizeof *resp);
}

/* One request on a fresh connection. Returns 0 with *out filled (any status),
 * -1 with err set when no HTTP answer came back. */
static int http_request(const struct remote *r, const char *method, const char *path, const char *body,
                        size_t body_len, int timeout_s, struct http_resp *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    int fd = dial(r, timeout_s, err, errlen);
    if (fd < 0)
        return -1;
    char *head = build_request(r, method, path, body_len);
    int rc = -1;
    size_t len = 0;
    if (!head)
        snprintf(err, errlen, "out of memory");
    else if (send_all(fd, head, strlen(head)) != 0 || (body_len && send_all(fd, body, body_len) != 0))
        snprintf(err, errlen, "%s %s%s: sending the request failed: %s", method, r->url, path, strerror(errno));
    else if (!(out->raw = read_all(fd, &len)))
        snprintf(err, errlen, "%s %s%s: no complete answer from the proxy (%s)", method, r->url, path,
                 errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : strerror(errno));
    else if (parse_response(out->raw, len, out) != 0)
        snprintf(err, errlen, "%s %s%s: the answer is not HTTP (is %s the proxy's --admin address?)", method,
                 r->url, path, r->url);
    else
        rc = 0;
    free(head);
    close(fd);
    if (rc != 0)
        resp_free(out);
    return rc;
}

/* ---- answers ---- */

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static double jnum(json_t *o, const char *key)
{
    return json_number_value(json_object_get(o, key));
}

/* Prints a non-2xx answer; returns the exit status it maps to. */
static int report_http_error(const char *what, const struct http_resp *resp)
{
    const char *msg = jstr(resp->json, "error");
    if (resp->status == 401)
        msg = "the proxy refused the admin token: set PGTANDEM_ADMIN_TOKEN to its --admin-token";
    fprintf(stderr, "pgtandem migrate %s: error (HTTP %d): %s\n", what, resp->status,
            msg ? msg : resp->body && *resp->body ? resp->body : "no details");
    return resp->status == 400 ? EXIT_INVALID : EXIT_OPERATIONAL;
}

static int fail_msg(const char *what, const char *err)
{
    fprintf(stderr, "pgtandem migrate %s: error: %s\n", what, err);
    return EXIT_OPERATIONAL;
}

/* ---- progress (the direct mode's status line, fed from GET /migrations/current) ---- */

static void show_backfill(struct progress *p, const char *name, json_t *bf, int finished)
{
    if (!json_is_object(bf) || !progress_line_due(&p->line, finished))
        return;
    struct progress_sample smp = {
        .table = name, .rows_done = jnum(bf, "rows_done"), .est_total = jnum(bf, "est_total"),
        .rows_per_s = jnum(bf, "rows_per_s"), .eta_s = jnum(bf, "eta_s"), .batch_rows = jnum(bf, "batch_rows"),
        .last_batch_ms = -1, .max_batch_ms = jnum(bf, "max_batch_ms"), .throttle = jstr(bf, "throttle")};
    progress_line_show(&p->line, &smp, finished);
}

/* "backfilled N rows at R rows/s"; the rate only when this proxy measured
 * one (after a resubmit or a restart its counters start again). */
static void backfilled(char *buf, size_t n, json_t *bf)
{
    double rows = jnum(bf, "rows_done"), rate = jnum(bf, "rows_per_s");
    if (rows > 0 && rate > 0 && progress_rate_known(rate))
        snprintf(buf, n, "backfilled %.0f rows at %.0f rows/s", rows, rate);
    else
        snprintf(buf, n, "backfilled %.0f rows", rows);
}

static json_t *named(json_t *list, const char *name)
{
    size_t i;
    json_t *one;
    json_array_foreach(list, i, one) {
        const char *n = jstr(one, "name");
        if (n && !strcmp(n, name))
            return one;
    }
    return NULL;
}

/* A start beside the migration in flight: its engine's outcome from
 * `beside`, its status from `in_flight` (the fleet's look at the table). */
static int on_beside_state(struct progress *p, const char *name, json_t *st)
{
    json_t *mine = named(json_object_get(st, "beside"), name);
    const char *state = jstr(mine, "state");
    const char *status = jstr(named(json_object_get(st, "in_flight"), name), "status");
    if (status && strcmp(status, p->phase) != 0) {
        log_info("migration %s: %s", name, status);
        snprintf(p->phase, sizeof p->phase, "%s", status);
    }
    if (!state)
        return fail_msg("start", "the proxy no longer knows of the start beside the migration in flight");
    if (!strcmp(state, "refused") || !strcmp(state, "failed")) {
        fprintf(stderr, "pgtandem migrate start: error: migration %s %s: %s\n", name, state,
                jstr(mine, "error") ? jstr(mine, "error") : "");
        return !strcmp(state, "refused") ? EXIT_INVALID : EXIT_OPERATIONAL;
    }
    if (!strcmp(state, "started")) {
        log_info("migration %s is active beside %s: every shape is served; complete them oldest first "
                 "(`pgtandem migrate complete NAME --proxy URL`) once their old releases are retired", name,
                 jstr(st, "name") ? jstr(st, "name") : "the one in flight");
        return 0;
    }
    return -1;
}

/* Handles one state; returns -1 to keep polling, else the exit status. */
static int on_state(struct progress *p, const char *name, json_t *st)
{
    if (p->beside)
        return on_beside_state(p, name, st);
    const char *phase = jstr(st, "phase");
    const char *cur = jstr(st, "name");
    if (!phase || !cur)
        return fail_msg("start", "unexpected answer from GET /migrations/current");
    if (strcmp(cur, name) != 0) {
        progress_line_end(&p->line);
        fprintf(stderr, "pgtandem migrate start: error: the proxy is now running migration \"%s\"\n", cur);
        return EXIT_OPERATIONAL;
    }
    int changed = strcmp(phase, p->phase) != 0;
    int ph = mig_phase_of_word(phase);
    if (changed && mig_phase_of_word(p->phase) == MIG_PH_BACKFILLING)
        show_backfill(p, name, json_object_get(st, "backfill"), 1);
    if (changed) {
        progress_line_end(&p->line);
        log_info("migration %s: %s", name, phase);
        snprintf(p->phase, sizeof p->phase, "%s", phase);
    }
    if (ph == MIG_PH_BACKFILLING)
        show_backfill(p, name, json_object_get(st, "backfill"), 0);
    if (ph == MIG_PH_ACTIVE || ph == MIG_PH_COMPLETING || ph == MIG_PH_COMPLETED) {
        char done[96];
        backfilled(done, sizeof done, json_object_get(st, "backfill"));
        log_info("migration %s is %s: both shapes are served (%s); run `pgtandem migrate complete --proxy URL` "
                 "once the old release is retired", name, phase, done);
        return 0;
    }
    if (ph == MIG_PH_FAILED || ph == MIG_PH_ROLLED_BACK) {
        const char *e = jstr(st, "error");
        fprintf(stderr, "pgtandem migrate start: error: migration %s %s%s%s\n", name, phase, e ? ": " : "",
                e ? e : "");
        return json_is_true(json_object_get(st, "invalid")) ? EXIT_INVALID : EXIT_OPERATIONAL;
    }
    return -1;
}

static int poll_until_active(const struct remote *r, const char *name, int beside)
{
    struct progress p = {.line.tty = isatty(STDERR_FILENO), .beside = beside};
    int failures = 0, rc = -1;
    char err[1024] = "";
    while (rc < 0) {
        struct http_resp resp;
        if (http_request(r, "GET", "/migrations/current", NULL, 0, SHORT_TIMEOUT_S, &resp, err, sizeof err) == 0) {
            if (resp.status == 200 && json_is_object(resp.json)) {
                failures = 0;
                rc = on_state(&p, name, resp.json);
            } else {
                snprintf(err, sizeof err, "GET /migrations/current answered HTTP %d: %.200s", resp.status,
                         jstr(resp.json, "error") ? jstr(resp.json, "error") : resp.body);
                failures++;
            }
            resp_free(&resp);
        } else {
            failures++;
        }
        if (rc < 0 && failures >= MAX_POLL_FAILURES) {
            progress_line_end(&p.line);
            return fail_msg("start", err);
        }
        if (rc < 0)
            clock_sleep_ms(POLL_MS);
    }
    progress_line_end(&p.line);
    return rc;
}

/* ---- commands ---- */

static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    return file_read_all(path, "migration file", MAX_UPLOAD, 0, len, err, errlen);
}

static int start_body(const struct remote *r, const char *body, size_t len)
{
    char err[1024];
    struct http_resp resp;
    int rc = http_request(r, "POST", "/migrations", body, len, SHORT_TIMEOUT_S, &resp, err, sizeof err);
    if (rc != 0)
        return fail_msg("start", err);
    char name[256] = "", beside[256] = "";
    if (resp.status != 202 && resp.status != 200)
        rc = report_http_error("start", &resp);
    else if (!jstr(resp.json, "name"))
        rc = fail_msg("start", "POST /migrations answered without a migration name");
    else
        snprintf(name, sizeof name, "%s", jstr(resp.json, "name"));
    if (rc == 0 && jstr(resp.json, "beside"))
        snprintf(beside, sizeof beside, "%s", jstr(resp.json, "beside"));
    if (rc == 0 && jstr(resp.json, "waits_for"))
        log_info("migration %s waits for %s", name, jstr(resp.json, "waits_for"));
    resp_free(&resp);
    if (rc != 0)
        return rc;
    log_info("migration %s submitted to the proxy at %s%s%s; it runs there (interrupting this command does not "
             "stop it: `pgtandem migrate status --proxy URL`)", name, r->url, beside[0] ? ", beside " : "", beside);
    return poll_until_active(r, name, beside[0] != '\0');
}

static int cmd_start(const struct remote *r, const char *file)
{
    char err[1024];
    if (!file) {
        fprintf(stderr, "pgtandem migrate start: a migration FILE is required\n");
        return EXIT_INVALID;
    }
    size_t len;
    char *body = read_file(file, &len, err, sizeof err);
    if (!body) {
        fprintf(stderr, "pgtandem migrate start: error: %s\n", err);
        return EXIT_INVALID;
    }
    int rc = start_body(r, body, len);
    free(body);
    return rc;
}

void migrate_print_proxies(json_t *members, const char *self_id)
{
    size_t i;
    json_t *m;
    json_array_foreach(members, i, m) {
        char *sessions = json_dumps(json_object_get(m, "sessions"), JSON_COMPACT | JSON_ENCODE_ANY);
        json_t *live = json_object_get(m, "live");
        printf("proxy:     %s at %s%s, sessions per version %s, heartbeat %.0f ms ago%s\n", jstr(m, "id"),
               jstr(m, "listen") ? jstr(m, "listen") : "?",
               self_id && jstr(m, "id") && !strcmp(jstr(m, "id"), self_id) ? " (this one)" : "",
               sessions ? sessions : "{}", jnum(m, "heartbeat_age_ms"),
               live && !json_is_true(live) ? ", out of the fleet" : "");
        free(sessions);
    }
}

/* One line per proxy of the fleet, and one per session that bypasses it. */
static void print_fleet_text(json_t *fleet)
{
    size_t i;
    json_t *m;
    migrate_print_proxies(json_object_get(fleet, "members"), jstr(fleet, "id"));
    json_array_foreach(json_object_get(fleet, "bypassing"), i, m) {
        printf("bypassing: pid %.0f (%s, %s, %s)\n", jnum(m, "pid"), jstr(m, "who") ? jstr(m, "who") : "?",
               jstr(m, "client") ? jstr(m, "client") : "?", jstr(m, "state") ? jstr(m, "state") : "?");
    }
}

/* "paused" while the operator holds the backfill, else the ETA when the
 * rate and a total are known. */
static const char *backfill_eta(char *buf, size_t n, json_t *bf, int finished, int past_estimate)
{
    const char *throttle = jstr(bf, "throttle");
    json_t *settings = json_object_get(bf, "settings");
    if (finished)
        snprintf(buf, n, "done");
    else if (json_is_true(json_object_get(settings, "paused")) || (throttle && strstr(throttle, "paused")))
        snprintf(buf, n, "paused");
    else if (past_estimate || !progress_rate_known(jnum(bf, "rows_per_s")) || jnum(bf, "rows_per_s") <= 0)
        snprintf(buf, n, "ETA ?");
    else {
        char eta[32];
        snprintf(buf, n, "ETA %s", progress_eta(eta, sizeof eta, jnum(bf, "eta_s")));
    }
    return buf;
}

static void print_backfill_text(json_t *bf, const char *phase)
{
    /* past the backfill, the rows done are the table's real count */
    int ph = mig_phase_of_word(phase);
    int finished = json_is_true(json_object_get(bf, "done")) || jnum(bf, "percent") >= 100.0 ||
                   (ph >= 0 && mig_phase_past_backfill((enum mig_phase)ph));
    json_t *est = json_object_get(bf, "estimated_rows");
    double estimated = json_is_number(est) ? json_number_value(est) : jnum(bf, "est_total");
    double done = jnum(bf, "rows_done");
    char rows[128], rate[48], eta[48];
    printf("backfill:  %s, %s, %s, %.0f batches (max %.0fms), throttle %s\n",
           progress_rows(rows, sizeof rows, done, estimated, finished),
           progress_rate(rate, sizeof rate, jnum(bf, "rows_per_s")),
           backfill_eta(eta, sizeof eta, bf, finished, !finished && estimated > 0 && done >= estimated),
           jnum(bf, "batches"), jnum(bf, "max_batch_ms"), jstr(bf, "throttle") ? jstr(bf, "throttle") : "none");
}

/* One line per blocker: the cutover's list is "a; b; c". */
static void print_blockers(const char *label, const char *list)
{
    const char *p = list;
    while (p && *p) {
        const char *end = strstr(p, "; ");
        int len = end ? (int)(end - p) : (int)strlen(p);
        printf("blocked:   %s %.*s\n", label, len, p);
        p = end ? end + 2 : NULL;
    }
}

/* The sessions a worker step (expand, contract) waits for right now. */
static void print_blocked_by(json_t *list)
{
    size_t i;
    json_t *b;
    json_array_foreach(list, i, b) {
        const char *app = jstr(b, "application_name");
        printf("blocked:   now by pid %.0f (%s, %s, transaction since %s), last query: %.120s\n", jnum(b, "pid"),
               app && app[0] ? app : "?", jstr(b, "state") ? jstr(b, "state") : "?",
               jstr(b, "xact_start") ? jstr(b, "xact_start") : "-", jstr(b, "query") ? jstr(b, "query") : "");
    }
}

/* "in flight: a1 (active, this proxy's engine; 2 sessions: pgtandem_a1,
 * pgtandem_b2_old), b2 (...)", one line per migration the proxy routes,
 * when there are several. */
static void print_in_flight_text(json_t *list)
{
    size_t i;
    json_t *m;
    if (json_array_size(list) < 2)
        return;
    printf("in flight (oldest first, each with the path a release declaring it gets):\n");
    json_array_foreach(list, i, m) {
        const char *status = jstr(m, "status");
        printf("  %s: %s, %s engine, %.0f session(s) here; %s\n", jstr(m, "name") ? jstr(m, "name") : "?",
               status ? status : "?", jstr(m, "engine") && !strcmp(jstr(m, "engine"), "this proxy") ? "this proxy's"
               : "another", jnum(m, "sessions"), jstr(m, "path") ? jstr(m, "path") : "");
    }
}

static void print_status_text(json_t *st)
{
    const char *e = jstr(st, "error"), *phase = jstr(st, "phase");
    json_t *bf = json_object_get(st, "backfill"), *cut = json_object_get(st, "cutover");
    printf("migration: %s\nphase:     %s\n", jstr(st, "name") ? jstr(st, "name") : "(none)", phase ? phase : "?");
    if (e)
        printf("error:     %s\n", e);
    if (json_is_object(bf))
        print_backfill_text(bf, phase);
    if (json_is_object(cut)) {
        printf("cutover:   %.0f attempt(s), traffic held %.1fms, %.0f held messages, %.0f re-prepared\n",
               jnum(cut, "attempts"), jnum(cut, "pause_ms"), jnum(cut, "held_messages"), jnum(cut, "reprepared"));
        print_blockers("the last cutover attempt by", jstr(cut, "blockers"));
    }
    print_blocked_by(json_object_get(st, "blocked_by"));
    print_in_flight_text(json_object_get(st, "in_flight"));
    print_fleet_text(json_object_get(st, "fleet"));
}

static void print_json(json_t *v)
{
    char *text = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    printf("%s\n", text ? text : "null");
    free(text);
}

static int cmd_status(const struct remote *r, int json)
{
    char err[1024];
    struct http_resp resp;
    if (http_request(r, "GET", "/migrations/current", NULL, 0, SHORT_TIMEOUT_S, &resp, err, sizeof err) != 0)
        return fail_msg("status", err);
    int rc = 0;
    if (resp.status == 404 && json)
        printf("{\"name\": null, \"phase\": null}\n");
    else if (resp.status == 404)
        printf("migration: (none)\n");
    else if (resp.status != 200 || !json_is_object(resp.json))
        rc = report_http_error("status", &resp);
    else if (json)
        print_json(resp.json);
    else
        print_status_text(resp.json);
    resp_free(&resp);
    return rc;
}

static void print_cutover(FILE *out, json_t *c, int ok)
{
    fprintf(out, "contract: %s after %.0f attempt(s); traffic held %.1fms in total (longest %.1fms), "
            "%.0f held messages, %.0f re-prepared statements, lock wait %.1fms\n",
            ok ? "committed" : "abandoned", jnum(c, "attempts"), jnum(c, "pause_ms"), jnum(c, "max_pause_ms"),
            jnum(c, "held_messages"), jnum(c, "reprepared"), jnum(c, "lock_wait_ms"));
}

/* A rollback (or a revert's) that the proxy accepted with 202, its step
 * waiting for another session's lock, goes on there: this follows it until
 * it has ended, saying once who it waits for. */
static int follow_rollback(const struct remote *r, const char *what, json_t *accepted)
{
    const char *msg = jstr(accepted, "message");
    log_warn("%s", msg ? msg : "the rollback goes on in the proxy");
    char err[1024] = "";
    int failures = 0;
    for (;;) {
        struct http_resp resp;
        if (http_request(r, "GET", "/migrations/current", NULL, 0, SHORT_TIMEOUT_S, &resp, err, sizeof err) != 0) {
            failures++;
        } else {
            int ph = resp.status == 200 ? mig_phase_of_word(jstr(resp.json, "phase")) : -1;
            /* on its way: the step it stopped, the cutover back, the rollback itself */
            int going = ph == MIG_PH_EXPANDING || ph == MIG_PH_FINISHING || ph == MIG_PH_COMPLETING ||
                        ph == MIG_PH_ROLLING_BACK;
            int rc = ph == MIG_PH_ROLLED_BACK ? 0 : ph >= 0 && !going ? EXIT_OPERATIONAL : -1;
            if (rc == EXIT_OPERATIONAL) {
                const char *e = jstr(resp.json, "error");
                fprintf(stderr, "pgtandem migrate %s: error: the migration is %s%s%s\n", what, mig_phase_word(ph),
                        e ? ": " : "", e ? e : "");
            }
            if (ph < 0)
                snprintf(err, sizeof err, "GET /migrations/current answered HTTP %d", resp.status);
            failures = ph < 0 ? failures + 1 : 0;
            resp_free(&resp);
            if (rc >= 0)
                return rc;
        }
        if (failures >= MAX_POLL_FAILURES)
            return fail_msg(what, err);
        clock_sleep_ms(POLL_MS);
    }
}

#define FOLLOW_RETRIES 60 /* x retry_after_ms (250): 15 s */

static int cmd_finish(const struct remote *r, const char *what, const char *name, int json, int force,
                      int revert_window_s)
{
    char err[1024], path[96 + 160];
    char window[40] = "", named[160] = "";
    if (revert_window_s > 0)
        snprintf(window, sizeof window, "%srevert_window_s=%d", force ? "&" : "?", revert_window_s);
    /* a migration's name is letters, digits, '_', '-' and '.': no escaping */
    if (name && strlen(name) < 128)
        snprintf(named, sizeof named, "%sname=%s", force || revert_window_s > 0 ? "&" : "?", name);
    snprintf(path, sizeof path, "/migrations/current/%s%s%s%s", what, force ? "?force=1" : "", window, named);
    struct http_resp resp;
    /* a 409 with retry_after_ms: the proxy's engine is about to follow the
     * migration named (the one before it just ended); asked again, for as
     * long as a few heartbeats */
    for (int tries = 0;; tries++) {
        if (http_request(r, "POST", path, NULL, 0, LONG_TIMEOUT_S, &resp, err, sizeof err) != 0)
            return fail_msg(what, err);
        json_int_t after = json_integer_value(json_object_get(resp.json, "retry_after_ms"));
        if (resp.status != 409 || after <= 0 || after > 5000 || tries >= FOLLOW_RETRIES)
            break;
        resp_free(&resp);
        struct timespec ts = {(time_t)(after / 1000), (long)(after % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    int complete = !strcmp(what, "complete");
    int rolls_back = !strcmp(what, "rollback") || !strcmp(what, "revert");
    if (resp.status == 202 && rolls_back && !json) {
        int rc = follow_rollback(r, what, resp.json);
        resp_free(&resp);
        if (rc == 0)
            printf("migration rolled back (the proxy's log says whether the shape was checked against its start)\n");
        return rc;
    }
    int ok = resp.status == 200 || (resp.status == 202 && rolls_back), rc = ok ? 0 : EXIT_OPERATIONAL;
    if (json && json_is_object(resp.json))
        print_json(resp.json);
    else if (complete && json_is_object(resp.json) && jnum(resp.json, "attempts") > 0)
        print_cutover(ok ? stdout : stderr, resp.json, ok);   /* none when refused before the cutover */
    if (!ok)
        rc = report_http_error(what, &resp);
    else if (!json && complete && revert_window_s > 0)
        printf("migration complete: every session sees the new shape; the old shape is kept for %d s"
               " (`pgtandem migrate revert` goes back to it, `pgtandem migrate finalize` drops it now)\n",
               revert_window_s);
    else if (!json)
        printf(complete ? "migration complete\n"
               : !strcmp(what, "finalize") ? "migration finalized: the old shape is gone\n"
               : "migration rolled back (the proxy's log says whether the shape was checked against its start)\n");
    resp_free(&resp);
    return rc;
}

static int open_remote(struct remote *r, const char *proxy_url)
{
    char err[1024];
    memset(r, 0, sizeof *r);
    r->url = proxy_url;
    r->token = getenv("PGTANDEM_ADMIN_TOKEN");
    if (!proxy_url || parse_url(r, err, sizeof err) != 0 || check_token(r, err, sizeof err) != 0) {
        fprintf(stderr, "pgtandem migrate: error: %s\n", proxy_url ? err : "--proxy URL is required");
        return -1;
    }
    return 0;
}

int migrate_remote_start(const char *proxy_url, const char *body, size_t len)
{
    struct remote r;
    return open_remote(&r, proxy_url) != 0 ? EXIT_INVALID : start_body(&r, body, len);
}

int migrate_remote_main(const char *command, const char *proxy_url, const char *file, int json, int force,
                        int revert_window_s)
{
    struct remote r;
    if (!command || open_remote(&r, proxy_url) != 0)
        return EXIT_INVALID;
    if (!strcmp(command, "start"))
        return cmd_start(&r, file);
    if (!strcmp(command, "status"))
        return cmd_status(&r, json);
    if (!strcmp(command, "complete") || !strcmp(command, "rollback") || !strcmp(command, "finalize") ||
        !strcmp(command, "revert"))
        return cmd_finish(&r, command, file, json, force, revert_window_s);
    fprintf(stderr, "pgtandem migrate %s: not available with --proxy (start, status, complete, finalize, revert and"
            " rollback are; "
            "run it with --db URI)\n", command);
    return EXIT_INVALID;
}

/* Wire-protocol framing and tracking. Everything here works on bytes the
 * caller has peeked at, never on sockets, so the relay, the unit tests and
 * the fuzz target share one implementation. */
#include "proto.h"

#include <assert.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum header_result proto_read_header(const uint8_t *buf, size_t avail, uint32_t max_length,
                                     struct msg_header *out)
{
    assert(buf && out);
    if (avail < PROTO_HEADER_LEN)
        return HEADER_NEED_MORE;
    out->type = buf[0];
    out->length = proto_get_u32(buf + 1);
    /* The wire's Int32 is signed; the cap also keeps length + 1 (what the
     * relay passes) from wrapping to 0. */
    if (out->length < 4 || out->length > max_length || out->length > PROTO_MAX_LENGTH)
        return HEADER_BAD_LENGTH;
    return HEADER_OK;
}

enum header_result proto_read_startup_length(const uint8_t *buf, size_t avail, uint32_t *length)
{
    assert(buf && length);
    if (avail < 4)
        return HEADER_NEED_MORE;
    *length = proto_get_u32(buf);
    if (*length < 8 || *length - 4 > PROTO_MAX_STARTUP_LEN)
        return HEADER_BAD_LENGTH;
    return HEADER_OK;
}

static int refuse(struct startup_refusal *why, const char *sqlstate, const char *message)
{
    why->sqlstate = sqlstate;
    why->old_protocol = 0;
    snprintf(why->message, sizeof why->message, "%s", message);
    return -1;
}

static int is_protocol_option(const char *key)
{
    return strncmp(key, PROTO_OPTION_PREFIX, sizeof PROTO_OPTION_PREFIX - 1) == 0;
}

/* Key/value pairs of a v3 StartupMessage: NUL-terminated strings ending with
 * an empty key. Every string must end inside the packet. Their number is
 * bounded by the packet's size (PROTO_MAX_STARTUP_LEN), as in Postgres,
 * and nothing keeps them apart from the packet itself. */
static int parse_startup_params(uint8_t *packet, size_t length, struct startup_packet *out,
                                struct startup_refusal *why)
{
    static const char bad_layout[] = "invalid startup packet layout: expected terminator as last byte";
    size_t pos = 8;
    while (pos < length && packet[pos] != '\0') {
        const char *key = (const char *)packet + pos;
        const uint8_t *key_end = memchr(packet + pos, '\0', length - pos);
        if (!key_end)
            return refuse(why, SQLSTATE_PROTOCOL_VIOLATION, bad_layout);
        pos = (size_t)(key_end - packet) + 1;
        const uint8_t *val_end = pos < length ? memchr(packet + pos, '\0', length - pos) : NULL;
        if (!val_end)
            return refuse(why, SQLSTATE_PROTOCOL_VIOLATION, bad_layout);
        if (out->nparams + out->npq == 0)
            out->params = key;
        if (is_protocol_option(key))
            out->npq++;
        else
            out->nparams++;
        pos = (size_t)(val_end - packet) + 1;
    }
    if (pos != length - 1)
        return refuse(why, SQLSTATE_PROTOCOL_VIOLATION, bad_layout);
    const char *user = startup_param(out, "user");
    if (!user || !*user)
        return refuse(why, SQLSTATE_INVALID_AUTH_SPEC, "no PostgreSQL user name specified in startup packet");
    return 0;
}

/* To 1.x and 2.x clients in their own format (0 counts as "not set yet"). */
int proto_refuse_protocol(struct startup_refusal *why, uint32_t code)
{
    unsigned major = code >> 16, minor = code & 0xffff;
    refuse(why, SQLSTATE_FEATURE_NOT_SUPPORTED, "");
    snprintf(why->message, sizeof why->message, "unsupported frontend protocol %u.%u: server supports 3.0 to 3.0",
             major, minor);
    why->old_protocol = code != 0 && major < 3;
    return -1;
}

int proto_parse_startup(uint8_t *packet, size_t length, struct startup_packet *out, struct startup_refusal *why)
{
    assert(packet && out && why);
    memset(out, 0, sizeof *out);
    if (length < 8 || proto_get_u32(packet) != length)
        return refuse(why, NULL, "invalid length of startup packet");
    out->code = proto_get_u32(packet + 4);
    switch (out->code) {
    case PROTO_SSL_CODE:
    case PROTO_GSSENC_CODE:
        return 0; /* Postgres ignores whatever follows the code */
    case PROTO_CANCEL_CODE:
        if (length != 16)
            return refuse(why, NULL, "invalid length of startup packet");
        out->cancel_pid = proto_get_u32(packet + 8);
        out->cancel_key = proto_get_u32(packet + 12);
        return 0;
    default:
        if (out->code >> 16 != 3)
            return proto_refuse_protocol(why, out->code);
        /* any 3.x: served at 3.0, and told so (proto_add_negotiate_version) */
        out->requested = out->code;
        out->code = PROTO_VERSION_3;
        return parse_startup_params(packet, length, out, why);
    }
}

int proto_needs_negotiation(const struct startup_packet *sp)
{
    return sp->code == PROTO_VERSION_3 && (sp->requested != PROTO_VERSION_3 || sp->npq > 0);
}

/* Every key in order, parameters and protocol options alike. */
static const char *next_key(const struct startup_packet *sp, const char *key)
{
    if (!key)
        return sp->nparams + sp->npq > 0 ? sp->params : NULL;
    const char *v = key + strlen(key) + 1;
    key = v + strlen(v) + 1;
    return *key ? key : NULL; /* the empty name ends the packet */
}

const char *startup_next_param(const struct startup_packet *sp, const char *key, const char **value)
{
    do
        key = next_key(sp, key);
    while (key && is_protocol_option(key));
    if (key)
        *value = key + strlen(key) + 1;
    return key;
}

void proto_add_negotiate_version(struct evbuffer *out, const struct startup_packet *sp)
{
    uint32_t len = 4 + 4 + 4;
    for (const char *k = next_key(sp, NULL); k; k = next_key(sp, k))
        if (is_protocol_option(k))
            len += (uint32_t)strlen(k) + 1;
    uint8_t head[13] = {'v'};
    proto_put_u32(head + 1, len);
    proto_put_u32(head + 5, PROTO_VERSION_3);
    proto_put_u32(head + 9, (uint32_t)sp->npq);
    evbuffer_add(out, head, sizeof head);
    for (const char *k = next_key(sp, NULL); k; k = next_key(sp, k))
        if (is_protocol_option(k))
            evbuffer_add(out, k, strlen(k) + 1);
}

const char *startup_param(const struct startup_packet *sp, const char *key)
{
    const char *value;
    for (const char *k = startup_next_param(sp, NULL, &value); k; k = startup_next_param(sp, k, &value))
        if (strcmp(k, key) == 0)
            return value;
    return NULL;
}

char *proto_startup_split_param(uint8_t *packet, uint32_t *length, struct startup_packet *sp, const char *key,
                                 char sep)
{
    const char *value = startup_param(sp, key);
    const char *at = value ? strrchr(value, sep) : NULL;
    if (!at || at == value || !at[1])
        return NULL;
    char *suffix = strdup(at + 1);
    if (!suffix)
        return NULL;
    /* "name@suffix\0rest" -> "name\0rest": the packet only shrinks, and
     * every string before the value keeps its address */
    size_t cut = strlen(at), from = (size_t)((const uint8_t *)at - packet);
    memmove(packet + from, packet + from + cut, *length - from - cut);
    *length -= (uint32_t)cut;
    proto_put_u32(packet, *length);
    struct startup_refusal why;
    if (proto_parse_startup(packet, *length, sp, &why) != 0) { /* cannot happen: the layout is kept */
        free(suffix);
        return NULL;
    }
    return suffix;
}

int proto_sasl_without_plus(const uint8_t *body, size_t len, uint8_t *out, size_t cap)
{
    assert(body && out);
    size_t pos = 0, w = 0;
    for (;;) {
        if (pos >= len)
            return -1;
        const uint8_t *end = memchr(body + pos, '\0', len - pos);
        if (!end)
            return -1;
        size_t n = (size_t)(end - (body + pos));
        if (n == 0)
            break;
        static const char plus[] = "SCRAM-SHA-256-PLUS";
        if (n != sizeof plus - 1 || memcmp(body + pos, plus, n) != 0) {
            if (w + n + 1 > cap)
                return -1;
            memcpy(out + w, body + pos, n + 1);
            w += n + 1;
        }
        pos += n + 1;
    }
    if (pos + 1 != len || w + 1 > cap)
        return -1;
    out[w++] = '\0';
    return (int)w;
}

void tracker_init(struct proto_tracker *t)
{
    memset(t, 0, sizeof *t);
    t->tx_status = 'I';
}

void tracker_client_message(struct proto_tracker *t, uint8_t type)
{
    assert(t);
    switch (type) {
    case 'Q': /* simple query */
    case 'F': /* function call */
        t->pending_rfq++;
        t->mid_unit = 0;
        t->syncs_since_execute = 0;
        break;
    case 'S': /* Sync: ignored by the server in COPY-in mode */
        if (!t->copy_in) {
            t->pending_rfq++;
            t->syncs_since_execute++;
        }
        t->mid_unit = 0;
        break;
    case 'E': /* Execute */
        t->syncs_since_execute = 0;
        t->mid_unit = 1;
        break;
    case 'P': case 'B': case 'D': case 'C':
        t->mid_unit = 1;
        break;
    case 'c': /* CopyDone */
    case 'f': /* CopyFail */
        t->copy_in = 0;
        break;
    default:
        break;
    }
}

int tracker_server_message(struct proto_tracker *t, uint8_t type, uint8_t status)
{
    assert(t);
    switch (type) {
    case 'G': /* CopyInResponse */
    case 'W': /* CopyBothResponse */
        /* Syncs that followed the COPY's Execute reach the server while it
         * is in COPY-in mode, which ignores them: no ReadyForQuery for them. */
        t->pending_rfq -= t->syncs_since_execute < t->pending_rfq ? t->syncs_since_execute : t->pending_rfq;
        t->syncs_since_execute = 0;
        t->copy_in = 1;
        return 0;
    case 'Z':
        if (status == 'I' || status == 'T' || status == 'E')
            t->tx_status = (char)status;
        if (t->pending_rfq > 0)
            t->pending_rfq--;
        t->copy_in = 0;
        return t->pending_rfq == 0;
    default:
        return 0;
    }
}

int tracker_at_boundary(const struct proto_tracker *t)
{
    return t->tx_status == 'I' && t->pending_rfq == 0 && !t->mid_unit && !t->copy_in;
}

int tracker_may_hold_next(const struct proto_tracker *t)
{
    return t->tx_status == 'I' && !t->mid_unit && !t->copy_in;
}

static size_t put_field(uint8_t *out, size_t pos, size_t cap, char code, const char *value)
{
    size_t n = strlen(value);
    if (pos == 0 || pos + 1 + n + 1 > cap)
        return 0;
    out[pos] = (uint8_t)code;
    memcpy(out + pos + 1, value, n + 1);
    return pos + 1 + n + 1;
}

size_t proto_format_error(uint8_t *out, size_t cap, const char *severity, const char *sqlstate,
                          const char *message)
{
    assert(out && severity && sqlstate && message);
    if (cap < PROTO_HEADER_LEN + 1)
        return 0;
    out[0] = 'E';
    size_t pos = PROTO_HEADER_LEN;
    pos = put_field(out, pos, cap, 'S', severity);
    pos = put_field(out, pos, cap, 'V', severity);
    pos = put_field(out, pos, cap, 'C', sqlstate);
    pos = put_field(out, pos, cap, 'M', message);
    if (pos == 0 || pos + 1 > cap)
        return 0;
    out[pos++] = '\0';
    proto_put_u32(out + 1, (uint32_t)(pos - 1));
    return pos;
}

size_t proto_format_old_error(uint8_t *out, size_t cap, const char *severity, const char *message)
{
    assert(out && severity && message);
    int n = snprintf((char *)out + 1, cap > 1 ? cap - 1 : 0, "%s:  %s\n", severity, message);
    if (cap < 2 || n < 0 || (size_t)n + 2 > cap)
        return 0;
    out[0] = 'E';
    return (size_t)n + 2; /* with the NUL that ends the text */
}

void proto_add_startup_param(struct evbuffer *params, const char *key, const char *value, const char *extra)
{
    evbuffer_add(params, key, strlen(key) + 1);
    evbuffer_add(params, value, strlen(value));
    if (extra)
        evbuffer_add(params, extra, strlen(extra));
    evbuffer_add(params, "", 1);
}

void proto_add_startup(struct evbuffer *out, struct evbuffer *params)
{
    evbuffer_add(params, "", 1);
    uint8_t head[8];
    proto_put_u32(head, (uint32_t)(8 + evbuffer_get_length(params)));
    proto_put_u32(head + 4, PROTO_VERSION_3);
    evbuffer_add(out, head, sizeof head);
    evbuffer_add_buffer(out, params);
}

void proto_add_query(struct evbuffer *out, const char *sql)
{
    uint8_t head[5] = {'Q'};
    proto_put_u32(head + 1, (uint32_t)(4 + strlen(sql) + 1));
    evbuffer_add(out, head, sizeof head);
    evbuffer_add(out, sql, strlen(sql) + 1);
}

int proto_read_pid_row(const uint8_t *msg, uint32_t len, uint32_t *pid)
{
    char text[16];
    if (len < 12 || len > 32 || msg[0] != 'D' || msg[5] != 0 || msg[6] != 1)
        return -1;
    uint32_t n = proto_get_u32(msg + 7);
    if (n == 0 || n >= sizeof text || 11 + n != len)
        return -1;
    memcpy(text, msg + 11, n);
    text[n] = '\0';
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (*end != '\0' || v == 0 || v > UINT32_MAX)
        return -1;
    *pid = (uint32_t)v;
    return 0;
}

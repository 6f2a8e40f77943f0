/* Wire-protocol framing and tracking. Everything here works on bytes the
 * caller has peeked at, never on sockets, so the relay, the unit tests and
 * the fuzz target share one implementation. */
#include "proto.h"

#include <stdio.h>
#include <string.h>

enum header_result proto_read_header(const uint8_t *buf, size_t avail, uint32_t max_length,
                                     struct msg_header *out)
{
    if (avail < PROTO_HEADER_LEN)
        return HEADER_NEED_MORE;
    out->type = buf[0];
    out->length = proto_get_u32(buf + 1);
    if (out->length < 4 || out->length > max_length)
        return HEADER_BAD_LENGTH;
    return HEADER_OK;
}

enum header_result proto_read_startup_length(const uint8_t *buf, size_t avail, uint32_t *length)
{
    if (avail < 4)
        return HEADER_NEED_MORE;
    *length = proto_get_u32(buf);
    if (*length < 8 || *length > PROTO_MAX_STARTUP_LEN)
        return HEADER_BAD_LENGTH;
    return HEADER_OK;
}

/* Key/value pairs of a v3 StartupMessage: NUL-terminated strings ending with
 * an empty key. Every string must end inside the packet. */
static int parse_startup_params(uint8_t *packet, size_t length, struct startup_packet *out,
                                const char **why)
{
    size_t pos = 8;
    while (pos < length && packet[pos] != '\0') {
        const char *key = (const char *)packet + pos;
        const uint8_t *key_end = memchr(packet + pos, '\0', length - pos);
        if (!key_end) {
            *why = "startup parameter name is not terminated";
            return -1;
        }
        pos = (size_t)(key_end - packet) + 1;
        const uint8_t *val_end = pos < length ? memchr(packet + pos, '\0', length - pos) : NULL;
        if (!val_end) {
            *why = "startup parameter value is not terminated";
            return -1;
        }
        if (out->nparams == STARTUP_MAX_PARAMS) {
            *why = "too many startup parameters";
            return -1;
        }
        if (out->nparams++ == 0)
            out->params = key;
        pos = (size_t)(val_end - packet) + 1;
    }
    if (pos != length - 1) {
        *why = "startup packet does not end with an empty parameter name";
        return -1;
    }
    if (!startup_param(out, "user")) {
        *why = "no PostgreSQL user name specified in startup packet";
        return -1;
    }
    return 0;
}

int proto_parse_startup(uint8_t *packet, size_t length, struct startup_packet *out, const char **why)
{
    memset(out, 0, sizeof *out);
    if (length < 8 || proto_get_u32(packet) != length) {
        *why = "invalid length of startup packet";
        return -1;
    }
    out->code = proto_get_u32(packet + 4);
    switch (out->code) {
    case PROTO_SSL_CODE:
    case PROTO_GSSENC_CODE:
        if (length != 8) {
            *why = "invalid length of encryption request";
            return -1;
        }
        return 0;
    case PROTO_CANCEL_CODE:
        if (length != 16) {
            *why = "invalid length of cancel request";
            return -1;
        }
        out->cancel_pid = proto_get_u32(packet + 8);
        out->cancel_key = proto_get_u32(packet + 12);
        return 0;
    case PROTO_VERSION_3:
        return parse_startup_params(packet, length, out, why);
    default:
        *why = "unsupported frontend protocol: the proxy speaks protocol 3.0";
        return -1;
    }
}

const char *startup_next_param(const struct startup_packet *sp, const char *key, const char **value)
{
    if (!key) {
        key = sp->nparams > 0 ? sp->params : NULL;
    } else {
        const char *v = key + strlen(key) + 1;
        key = v + strlen(v) + 1;
        if (*key == '\0') /* the empty name that ends the packet */
            key = NULL;
    }
    if (key)
        *value = key + strlen(key) + 1;
    return key;
}

const char *startup_param(const struct startup_packet *sp, const char *key)
{
    const char *value;
    for (const char *k = startup_next_param(sp, NULL, &value); k; k = startup_next_param(sp, k, &value))
        if (strcmp(k, key) == 0)
            return value;
    return NULL;
}

int proto_sasl_without_plus(const uint8_t *body, size_t len, uint8_t *out, size_t cap)
{
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

/* libFuzzer target for the wire-protocol code the relay runs on untrusted
 * bytes: startup packets (and the NegotiateProtocolVersion answer to a
 * 3.x one above 3.0 or with "_pq_." options), message headers streamed in arbitrary chunks,
 * the protocol tracker, and the SASL mechanism-list rewrite. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "proto.h"

/* Streams `data` as client or server messages, the way the relay does:
 * header first, then the body passed through without being assembled. */
static void stream_messages(const uint8_t *data, size_t size, int from_server)
{
    struct proto_tracker t;
    tracker_init(&t);
    size_t pos = 0;
    while (pos + PROTO_HEADER_LEN <= size) {
        struct msg_header h;
        if (proto_read_header(data + pos, size - pos, 1u << 20, &h) != HEADER_OK)
            return;
        uint8_t status = pos + 5 < size ? data[pos + 5] : 'I';
        if (from_server)
            tracker_server_message(&t, h.type, status);
        else
            tracker_client_message(&t, h.type);
        (void)tracker_at_boundary(&t);
        (void)tracker_may_hold_next(&t);
        pos += (size_t)h.length + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0] % 4;
    data++;
    size--;
    if (mode == 0) {
        uint32_t len;
        if (proto_read_startup_length(data, size, &len) == HEADER_OK && len <= size) {
            uint8_t *copy = malloc(len);
            memcpy(copy, data, len);
            struct startup_packet sp;
            struct startup_refusal why;
            const char *value;
            int n = 0;
            if (proto_parse_startup(copy, len, &sp, &why) == 0) {
                for (const char *k = startup_next_param(&sp, NULL, &value); k; k = startup_next_param(&sp, k, &value))
                    n++, (void)strlen(value);
                if (n != sp.nparams)
                    __builtin_trap();
                /* the NegotiateProtocolVersion answer: its length word is its length */
                if (proto_needs_negotiation(&sp)) {
                    struct evbuffer *out = evbuffer_new();
                    proto_add_negotiate_version(out, &sp);
                    const uint8_t *v = evbuffer_pullup(out, -1);
                    if (evbuffer_get_length(out) < 13 || proto_get_u32(v + 1) + 1 != evbuffer_get_length(out) ||
                        proto_get_u32(v + 9) != (uint32_t)sp.npq)
                        __builtin_trap();
                    evbuffer_free(out);
                }
            } else if (!memchr(why.message, '\0', sizeof why.message)) {
                __builtin_trap();
            }
            free(copy);
        }
    } else if (mode == 1 || mode == 2) {
        stream_messages(data, size, mode == 2);
    } else {
        uint8_t out[512];
        (void)proto_sasl_without_plus(data, size, out, sizeof out);
    }
    return 0;
}

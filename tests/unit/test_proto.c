/* Unit tests for the wire-protocol framing and tracking in proxy/relay/proto.c. */
#include <stdlib.h>
#include <event2/buffer.h>

#include "proto.h"
#include "unit.h"

static void test_headers(void)
{
    struct msg_header h;
    uint8_t q[] = {'Q', 0, 0, 0, 13};
    CHECK("header: needs five bytes", proto_read_header(q, 4, 1024, &h) == HEADER_NEED_MORE);
    CHECK("header: reads type and length", proto_read_header(q, 5, 1024, &h) == HEADER_OK && h.type == 'Q' && h.length == 13);
    uint8_t short_len[] = {'Q', 0, 0, 0, 3};
    CHECK("header: length below 4 is bad", proto_read_header(short_len, 5, 1024, &h) == HEADER_BAD_LENGTH);
    uint8_t big[] = {'Q', 0, 0, 4, 1};
    CHECK("header: over the maximum is bad", proto_read_header(big, 5, 1024, &h) == HEADER_BAD_LENGTH);
    CHECK("header: at the maximum is fine", proto_read_header((uint8_t[]){'d', 0, 0, 4, 0}, 5, 1024, &h) == HEADER_OK);
    /* The relay passes length + 1 bytes: a length of 0xffffffff from the
     * upstream (whose limit is "none") wrapped to 0 and spun the loop. The
     * wire's Int32 is signed, so nothing above INT32_MAX is a length. */
    CHECK("header: a length past INT32_MAX is bad even with no limit",
          proto_read_header((uint8_t[]){'Y', 0xff, 0xff, 0xff, 0xff}, 5, 0xffffffffu, &h) == HEADER_BAD_LENGTH);
    CHECK("header: INT32_MAX itself is a length",
          proto_read_header((uint8_t[]){'D', 0x7f, 0xff, 0xff, 0xff}, 5, 0xffffffffu, &h) == HEADER_OK);
}

static void test_startup(void)
{
    uint8_t pkt[] = {0, 0, 0, 39, 0, 3, 0, 0, 'u', 's', 'e', 'r', 0, 'a', 'l', 'i', 'c', 'e', 0,
                     'd', 'a', 't', 'a', 'b', 'a', 's', 'e', 0, 'd', 'b', 0, 'x', 0, 'y', 'z', 0, 0, 0, 0};
    /* fix up the real length */
    size_t len = 8 + 5 + 6 + 9 + 3 + 2 + 3 + 1;
    pkt[3] = (uint8_t)len;
    struct startup_packet sp;
    struct startup_refusal why;
    CHECK("startup: parses v3 parameters", proto_parse_startup(pkt, len, &sp, &why) == 0 && sp.nparams == 3);
    CHECK("startup: finds user", startup_param(&sp, "user") && strcmp(startup_param(&sp, "user"), "alice") == 0);
    CHECK("startup: finds database", startup_param(&sp, "database") && strcmp(startup_param(&sp, "database"), "db") == 0);
    CHECK("startup: missing key is NULL", startup_param(&sp, "options") == NULL);
    char order[64] = "";
    const char *value;
    for (const char *k = startup_next_param(&sp, NULL, &value); k; k = startup_next_param(&sp, k, &value))
        snprintf(order + strlen(order), sizeof order - strlen(order), "%s=%s;", k, value);
    CHECK("startup: parameters walked in order", strcmp(order, "user=alice;database=db;x=yz;") == 0);
    uint8_t empty_value[] = {0, 0, 0, 19, 0, 3, 0, 0, 'u', 's', 'e', 'r', 0, 'a', 0, 'o', 0, 0, 0};
    CHECK("startup: empty last value parsed", proto_parse_startup(empty_value, 19, &sp, &why) == 0 &&
                                                  sp.nparams == 2 && strcmp(startup_param(&sp, "o"), "") == 0 &&
                                                  startup_next_param(&sp, startup_next_param(&sp, NULL, &value),
                                                                     &value) != NULL);

    uint8_t unterminated[] = {0, 0, 0, 14, 0, 3, 0, 0, 'u', 's', 'e', 'r', 0, 'a'};
    CHECK("startup: unterminated value refused like Postgres",
          proto_parse_startup(unterminated, 14, &sp, &why) == -1 && strcmp(why.sqlstate, "08P01") == 0 &&
              strcmp(why.message, "invalid startup packet layout: expected terminator as last byte") == 0);
    uint8_t nouser[] = {0, 0, 0, 9, 0, 3, 0, 0, 0};
    CHECK("startup: no user refused with 28000", proto_parse_startup(nouser, 9, &sp, &why) == -1 &&
                                                     strcmp(why.sqlstate, "28000") == 0 && strstr(why.message, "user"));
    uint8_t empty_user[] = {0, 0, 0, 15, 0, 3, 0, 0, 'u', 's', 'e', 'r', 0, 0, 0};
    CHECK("startup: empty user refused with 28000",
          proto_parse_startup(empty_user, 15, &sp, &why) == -1 && strcmp(why.sqlstate, "28000") == 0);
    uint8_t ssl[] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
    CHECK("startup: SSLRequest", proto_parse_startup(ssl, 8, &sp, &why) == 0 && sp.code == PROTO_SSL_CODE);
    uint8_t ssl_padded[] = {0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2f, 0, 0, 0, 0};
    CHECK("startup: SSLRequest with trailing bytes, as Postgres takes it",
          proto_parse_startup(ssl_padded, 12, &sp, &why) == 0 && sp.code == PROTO_SSL_CODE);
    uint8_t cancel[] = {0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 7, 0, 0, 1, 2};
    CHECK("startup: CancelRequest", proto_parse_startup(cancel, 16, &sp, &why) == 0 && sp.code == PROTO_CANCEL_CODE &&
                                        sp.cancel_pid == 7 && sp.cancel_key == 258);
    uint8_t short_cancel[] = {0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 7};
    CHECK("startup: short CancelRequest closed without a word",
          proto_parse_startup(short_cancel, 12, &sp, &why) == -1 && why.sqlstate == NULL);
    uint8_t v2[] = {0, 0, 0, 8, 0, 2, 0, 0};
    CHECK("startup: protocol 2 refused in its own format",
          proto_parse_startup(v2, 8, &sp, &why) == -1 && strcmp(why.sqlstate, "0A000") == 0 && why.old_protocol &&
              strcmp(why.message, "unsupported frontend protocol 2.0: server supports 3.0 to 3.0") == 0);
    uint8_t v0[] = {0, 0, 0, 8, 0, 0, 0, 0};
    CHECK("startup: protocol 0.0 refused in the 3.0 format",
          proto_parse_startup(v0, 8, &sp, &why) == -1 && !why.old_protocol && strcmp(why.sqlstate, "0A000") == 0);
    uint8_t v4[] = {0, 0, 0, 8, 0, 4, 0, 1};
    CHECK("startup: protocol 4.1 refused", proto_parse_startup(v4, 8, &sp, &why) == -1 && !why.old_protocol &&
                                               strstr(why.message, "protocol 4.1:"));
    uint32_t l;
    CHECK("startup length: too long", proto_read_startup_length((uint8_t[]){0, 1, 0, 0}, 4, &l) == HEADER_BAD_LENGTH);
    CHECK("startup length: a body of 10000 bytes is fine",
          proto_read_startup_length((uint8_t[]){0, 0, 0x27, 0x14}, 4, &l) == HEADER_OK && l == 10004);
    CHECK("startup length: a body of 10001 bytes is not",
          proto_read_startup_length((uint8_t[]){0, 0, 0x27, 0x15}, 4, &l) == HEADER_BAD_LENGTH);
    CHECK("startup length: Terminate read as a length is bad",
          proto_read_startup_length((const uint8_t *)"X\0\0\0\4", 5, &l) == HEADER_BAD_LENGTH);
    CHECK("startup length: below 8 is bad", proto_read_startup_length((uint8_t[]){0, 0, 0, 7}, 4, &l) == HEADER_BAD_LENGTH);
}

static void test_startup_split(void)
{
    /* user=alice database=appdb@v2 application_name=w */
    uint8_t pkt[] = {0, 0, 0, 0, 0, 3, 0, 0, 'u', 's', 'e', 'r', 0, 'a', 'l', 'i', 'c', 'e', 0,
                     'd', 'a', 't', 'a', 'b', 'a', 's', 'e', 0, 'a', 'p', 'p', 'd', 'b', '@', 'v', '2', 0,
                     'a', 'p', 'p', 'l', 'i', 'c', 'a', 't', 'i', 'o', 'n', '_', 'n', 'a', 'm', 'e', 0, 'w', 0, 0};
    uint32_t len = sizeof pkt;
    pkt[3] = (uint8_t)len;
    struct startup_packet sp;
    struct startup_refusal why;
    CHECK("split: parses", proto_parse_startup(pkt, len, &sp, &why) == 0);
    char *v = proto_startup_split_param(pkt, &len, &sp, "database", '@');
    CHECK("split: the suffix", v && strcmp(v, "v2") == 0);
    free(v);
    CHECK("split: the packet shrinks by it", len == sizeof pkt - 3 && pkt[3] == len);
    CHECK("split: the value without it", strcmp(startup_param(&sp, "database"), "appdb") == 0);
    CHECK("split: the parameters after it", strcmp(startup_param(&sp, "application_name"), "w") == 0 &&
                                            strcmp(startup_param(&sp, "user"), "alice") == 0 && sp.nparams == 3);
    struct startup_packet again;
    CHECK("split: the packet still parses", proto_parse_startup(pkt, len, &again, &why) == 0);
    CHECK("split: none left", proto_startup_split_param(pkt, &len, &sp, "database", '@') == NULL &&
                              len == sizeof pkt - 3);
    CHECK("split: a missing key", proto_startup_split_param(pkt, &len, &sp, "options", '@') == NULL);
    uint8_t edge[] = {0, 0, 0, 0, 0, 3, 0, 0, 'u', 's', 'e', 'r', 0, 'a', 0,
                      'd', 'a', 't', 'a', 'b', 'a', 's', 'e', 0, '@', 'v', 0, 0};
    uint32_t elen = sizeof edge;
    edge[3] = (uint8_t)elen;
    CHECK("split: edge parses", proto_parse_startup(edge, elen, &sp, &why) == 0);
    CHECK("split: nothing before the separator is not split",
          proto_startup_split_param(edge, &elen, &sp, "database", '@') == NULL && elen == sizeof edge);
}

/* A 3.x StartupMessage above 3.0, and "_pq_." options: served at 3.0 and
 * answered with NegotiateProtocolVersion, as Postgres 18 answers them. */
static void test_negotiation(void)
{
    static const uint8_t body[] = "user\0alice\0_pq_.compress\0zstd\0database\0db\0_pq_.x\0\0\0";
    uint8_t pkt[8 + sizeof body - 1];
    proto_put_u32(pkt, sizeof pkt);
    proto_put_u32(pkt + 4, (3u << 16) | 2); /* 3.2 */
    memcpy(pkt + 8, body, sizeof body - 1);
    struct startup_packet sp;
    struct startup_refusal why;
    CHECK("negotiation: 3.2 is accepted", proto_parse_startup(pkt, sizeof pkt, &sp, &why) == 0);
    CHECK("negotiation: served as 3.0, the request kept",
          sp.code == PROTO_VERSION_3 && sp.requested == ((3u << 16) | 2));
    CHECK("negotiation: options counted apart", sp.nparams == 2 && sp.npq == 2);
    char order[64] = "";
    const char *value;
    for (const char *k = startup_next_param(&sp, NULL, &value); k; k = startup_next_param(&sp, k, &value))
        snprintf(order + strlen(order), sizeof order - strlen(order), "%s=%s;", k, value);
    CHECK("negotiation: options are not parameters", strcmp(order, "user=alice;database=db;") == 0);
    CHECK("negotiation: an option is not found as a parameter", startup_param(&sp, "_pq_.x") == NULL);
    CHECK("negotiation: needed", proto_needs_negotiation(&sp));
    struct evbuffer *out = evbuffer_new();
    proto_add_negotiate_version(out, &sp);
    static const uint8_t want[] = {'v', 0, 0, 0, 33, 0, 3, 0, 0, 0, 0, 0, 2, '_', 'p', 'q', '_', '.', 'c', 'o', 'm',
                                   'p', 'r', 'e', 's', 's', 0, '_', 'p', 'q', '_', '.', 'x', 0};
    CHECK("negotiation: NegotiateProtocolVersion as Postgres writes it",
          evbuffer_get_length(out) == sizeof want && memcmp(evbuffer_pullup(out, -1), want, sizeof want) == 0);
    evbuffer_free(out);

    uint8_t plain[] = {0, 0, 0, 19, 0, 3, 0, 0, 'u', 's', 'e', 'r', 0, 'a', 0, 'o', 0, 0, 0};
    CHECK("negotiation: not for 3.0 without options",
          proto_parse_startup(plain, sizeof plain, &sp, &why) == 0 && !proto_needs_negotiation(&sp));
    uint8_t only_option[] = {0, 0, 0, 27, 0, 3, 0, 0, '_', 'p', 'q', '_', '.', 'a', 0, 'b', 0,
                             'u', 's', 'e', 'r', 0, 'a', 'l', 'i', 0, 0};
    CHECK("negotiation: 3.0 with an option, the option first",
          proto_parse_startup(only_option, sizeof only_option, &sp, &why) == 0 && proto_needs_negotiation(&sp) &&
              sp.nparams == 1 && strcmp(startup_next_param(&sp, NULL, &value), "user") == 0);
    uint8_t big_minor[] = {0, 0, 0, 15, 0, 3, 0xff, 0xff, 'u', 's', 'e', 'r', 0, 0, 0};
    CHECK("negotiation: 3.65535 still needs a user (28000 as Postgres)",
          proto_parse_startup(big_minor, sizeof big_minor, &sp, &why) == -1 && strcmp(why.sqlstate, "28000") == 0);
    uint8_t v5[] = {0, 0, 0, 8, 0, 5, 0, 2};
    CHECK("negotiation: major 5 refused", proto_parse_startup(v5, 8, &sp, &why) == -1 &&
                                              strcmp(why.sqlstate, "0A000") == 0 && strstr(why.message, "5.2"));
}

static void test_old_error(void)
{
    uint8_t out[128];
    size_t n = proto_format_old_error(out, sizeof out, "FATAL", "no");
    CHECK("old error: Postgres's pre-3.0 format", n == 13 && memcmp(out, "EFATAL:  no\n", 13) == 0);
    CHECK("old error: too small a buffer", proto_format_old_error(out, 12, "FATAL", "no") == 0);
}

static void test_sasl(void)
{
    const char list[] = "SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0";
    uint8_t out[64];
    int n = proto_sasl_without_plus((const uint8_t *)list, sizeof list, out, sizeof out);
    CHECK("sasl: PLUS removed", n == 15 && memcmp(out, "SCRAM-SHA-256\0\0", 15) == 0);
    const char only[] = "SCRAM-SHA-256\0";
    n = proto_sasl_without_plus((const uint8_t *)only, sizeof only, out, sizeof out);
    CHECK("sasl: plain list unchanged", n == (int)sizeof only && memcmp(out, only, sizeof only) == 0);
    const char bad[] = {'S', 'C', 'R'};
    CHECK("sasl: unterminated refused", proto_sasl_without_plus((const uint8_t *)bad, sizeof bad, out, sizeof out) == -1);
}

static void test_tracker(void)
{
    struct proto_tracker t;
    tracker_init(&t);
    CHECK("tracker: starts at a boundary", tracker_at_boundary(&t));
    tracker_client_message(&t, 'Q');
    CHECK("tracker: query in flight", !tracker_at_boundary(&t) && t.pending_rfq == 1);
    CHECK("tracker: RFQ completes unit", tracker_server_message(&t, 'Z', 'T') == 1);
    CHECK("tracker: open transaction is not a boundary", !tracker_at_boundary(&t) && !tracker_may_hold_next(&t));
    tracker_client_message(&t, 'Q');
    tracker_server_message(&t, 'Z', 'I');
    CHECK("tracker: commit returns to boundary", tracker_at_boundary(&t));

    /* extended protocol: Parse/Bind/Execute without Sync is mid-batch */
    tracker_client_message(&t, 'P');
    tracker_client_message(&t, 'B');
    tracker_client_message(&t, 'E');
    CHECK("tracker: mid batch cannot hold", !tracker_may_hold_next(&t) && !tracker_at_boundary(&t));
    tracker_client_message(&t, 'S');
    CHECK("tracker: after Sync may hold", tracker_may_hold_next(&t) && t.pending_rfq == 1);
    tracker_server_message(&t, 'Z', 'I');
    CHECK("tracker: batch done", tracker_at_boundary(&t));

    /* pipeline: two Syncs, two RFQs */
    tracker_client_message(&t, 'P'); tracker_client_message(&t, 'E'); tracker_client_message(&t, 'S');
    tracker_client_message(&t, 'P'); tracker_client_message(&t, 'E'); tracker_client_message(&t, 'S');
    CHECK("tracker: pipeline counts syncs", t.pending_rfq == 2);
    CHECK("tracker: first RFQ leaves one pending", tracker_server_message(&t, 'Z', 'I') == 0);
    CHECK("tracker: second RFQ completes", tracker_server_message(&t, 'Z', 'I') == 1 && tracker_at_boundary(&t));

    /* extended COPY FROM STDIN: the Sync after Execute is ignored in COPY mode */
    tracker_client_message(&t, 'P'); tracker_client_message(&t, 'B'); tracker_client_message(&t, 'E');
    tracker_client_message(&t, 'S');
    tracker_server_message(&t, 'G', 0);
    CHECK("tracker: COPY-in drops ignored Sync", t.pending_rfq == 0 && t.copy_in && !tracker_may_hold_next(&t));
    tracker_client_message(&t, 'd');
    tracker_client_message(&t, 'S'); /* ignored by the server during COPY */
    tracker_client_message(&t, 'c');
    tracker_client_message(&t, 'S');
    CHECK("tracker: Sync after CopyDone counts", t.pending_rfq == 1);
    CHECK("tracker: COPY done", tracker_server_message(&t, 'Z', 'I') == 1 && tracker_at_boundary(&t));

    /* simple COPY */
    tracker_client_message(&t, 'Q');
    tracker_server_message(&t, 'G', 0);
    CHECK("tracker: simple COPY keeps its RFQ", t.pending_rfq == 1 && t.copy_in);
    tracker_client_message(&t, 'f');
    tracker_server_message(&t, 'Z', 'I');
    CHECK("tracker: COPY fail ends", tracker_at_boundary(&t));
}

static void test_error_format(void)
{
    uint8_t buf[256];
    size_t n = proto_format_error(buf, sizeof buf, "FATAL", "08P01", "bad");
    CHECK("error: type E", n > 0 && buf[0] == 'E');
    CHECK("error: length matches", proto_get_u32(buf + 1) == n - 1);
    CHECK("error: carries SQLSTATE", memmem(buf, n, "C08P01", 6) != NULL);
    CHECK("error: too small buffer", proto_format_error(buf, 10, "FATAL", "08P01", "bad") == 0);
}

int main(void)
{
    test_headers();
    test_startup();
    test_startup_split();
    test_negotiation();
    test_old_error();
    test_sasl();
    test_tracker();
    test_error_format();
    return UNIT_RESULT();
}

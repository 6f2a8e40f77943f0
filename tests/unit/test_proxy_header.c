/* Unit tests for the PROXY protocol header parser
 * (proxy/relay/proxy_header.c) and the trusted ranges it is taken from
 * (config_parse_cidrs, config_cidr_match in proxy/base/config.c). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>

#include "config.h"
#include "proxy_header.h"
#include "unit.h"

static const uint8_t SIG[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* A v2 header: command, family/protocol byte, address block. */
static size_t v2(uint8_t *out, uint8_t cmd, uint8_t fam, const uint8_t *block, size_t len)
{
    memcpy(out, SIG, 12);
    out[12] = (uint8_t)(0x20 | cmd);
    out[13] = fam;
    out[14] = (uint8_t)(len >> 8);
    out[15] = (uint8_t)len;
    memcpy(out + 16, block, len);
    return 16 + len;
}

static const char *source_text(const struct proxy_header *h, char *buf, size_t cap)
{
    char host[INET6_ADDRSTRLEN];
    int port;
    if (h->source.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&h->source;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&h->source;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    }
    snprintf(buf, cap, "%s:%d", host, port);
    return buf;
}

static void test_v2(void)
{
    uint8_t buf[256], block[64];
    char text[80];
    struct proxy_header h;
    /* 203.0.113.7:40000 -> 10.0.0.1:6432, and a TLV after the addresses */
    const uint8_t inet[] = {203, 0, 113, 7, 10, 0, 0, 1, 0x9c, 0x40, 0x19, 0x20, 0x04, 0x00, 0x01, 0x00};
    size_t n = v2(buf, 1, 0x11, inet, sizeof inet);
    memcpy(buf + n, "\0\0\0\x08", 4); /* a startup packet begins */
    CHECK("v2 inet: ok", proxy_header_parse(buf, n + 4, &h) == PROXY_HEADER_OK && h.version == 2 && h.length == n);
    CHECK("v2 inet: the source", h.has_source && !strcmp(source_text(&h, text, sizeof text), "203.0.113.7:40000"));
    for (size_t cut = 1; cut < n; cut++)
        if (proxy_header_parse(buf, cut, &h) != PROXY_HEADER_NEED_MORE) {
            CHECK("v2 inet: every prefix needs more", 0);
            break;
        }
    memset(block, 0, sizeof block);
    block[15] = 1;          /* ::1 source */
    block[32] = 0x30;       /* port 12345 = 0x3039 */
    block[33] = 0x39;
    n = v2(buf, 1, 0x21, block, 36);
    CHECK("v2 inet6", proxy_header_parse(buf, n, &h) == PROXY_HEADER_OK && h.has_source &&
                          !strcmp(source_text(&h, text, sizeof text), "::1:12345"));
    n = v2(buf, 0, 0x00, block, 0);
    CHECK("v2 LOCAL: the connection's own address", proxy_header_parse(buf, n, &h) == PROXY_HEADER_OK &&
                                                        !h.has_source && h.length == 16);
    n = v2(buf, 1, 0x00, block, 0);
    CHECK("v2 PROXY UNSPEC: the connection's own address",
          proxy_header_parse(buf, n, &h) == PROXY_HEADER_OK && !h.has_source);
    n = v2(buf, 1, 0x11, inet, 8);
    CHECK("v2 inet too short", proxy_header_parse(buf, n, &h) == PROXY_HEADER_BAD && strstr(h.why, "IPv4"));
    n = v2(buf, 1, 0x12, inet, sizeof inet);
    CHECK("v2 datagram refused", proxy_header_parse(buf, n, &h) == PROXY_HEADER_BAD);
    n = v2(buf, 2, 0x11, inet, sizeof inet);
    CHECK("v2 unknown command refused", proxy_header_parse(buf, n, &h) == PROXY_HEADER_BAD);
    n = v2(buf, 1, 0x11, inet, sizeof inet);
    buf[12] = 0x11;
    CHECK("v1 in the v2 version nibble refused", proxy_header_parse(buf, n, &h) == PROXY_HEADER_BAD);
    n = v2(buf, 1, 0x11, inet, sizeof inet);
    buf[14] = 0x10; /* 4096 + the 16 of the header */
    CHECK("v2 too long refused", proxy_header_parse(buf, n, &h) == PROXY_HEADER_BAD);
}

static void test_v1(void)
{
    struct proxy_header h;
    char text[80];
    const char *line = "PROXY TCP4 198.51.100.9 10.0.0.1 5555 6432\r\nrest";
    CHECK("v1 tcp4", proxy_header_parse((const uint8_t *)line, strlen(line), &h) == PROXY_HEADER_OK &&
                         h.version == 1 && h.length == strlen(line) - 4 &&
                         !strcmp(source_text(&h, text, sizeof text), "198.51.100.9:5555"));
    line = "PROXY TCP6 2001:db8::5 ::1 443 6432\r\n";
    CHECK("v1 tcp6", proxy_header_parse((const uint8_t *)line, strlen(line), &h) == PROXY_HEADER_OK &&
                         !strcmp(source_text(&h, text, sizeof text), "2001:db8::5:443"));
    line = "PROXY UNKNOWN whatever\r\n";
    CHECK("v1 unknown: own address", proxy_header_parse((const uint8_t *)line, strlen(line), &h) == PROXY_HEADER_OK &&
                                         !h.has_source);
    line = "PROXY TCP4 198.51.100.9 10.0.0.1 5555";
    CHECK("v1 without its end waits", proxy_header_parse((const uint8_t *)line, strlen(line), &h) ==
                                          PROXY_HEADER_NEED_MORE);
    line = "PROXY TCP4 198.51.100.9 10.0.0.1 05555 6432\r\n";
    CHECK("v1 port with a leading zero refused",
          proxy_header_parse((const uint8_t *)line, strlen(line), &h) == PROXY_HEADER_BAD);
    line = "PROXY TCP4 198.51.100.999 10.0.0.1 5555 6432\r\n";
    CHECK("v1 bad address refused", proxy_header_parse((const uint8_t *)line, strlen(line), &h) == PROXY_HEADER_BAD);
    line = "PROXY TCP4 198.51.100.9 10.0.0.1 5555 6432\n";
    CHECK("v1 without CR refused", proxy_header_parse((const uint8_t *)line, strlen(line), &h) == PROXY_HEADER_BAD);
    char longline[200];
    memset(longline, 'x', sizeof longline);
    memcpy(longline, "PROXY ", 6);
    CHECK("v1 too long refused", proxy_header_parse((const uint8_t *)longline, sizeof longline, &h) ==
                                     PROXY_HEADER_BAD);
}

static void test_none(void)
{
    struct proxy_header h;
    const uint8_t startup[] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
    CHECK("a startup packet is no header", proxy_header_parse(startup, sizeof startup, &h) == PROXY_HEADER_NONE);
    CHECK("P alone may be one", proxy_header_parse((const uint8_t *)"P", 1, &h) == PROXY_HEADER_NEED_MORE);
    CHECK("PROXI is none", proxy_header_parse((const uint8_t *)"PROXI", 5, &h) == PROXY_HEADER_NONE);
    CHECK("nothing yet", proxy_header_parse(startup, 0, &h) == PROXY_HEADER_NEED_MORE);
}

static struct sockaddr_storage addr(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (inet_pton(AF_INET, text, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
        ss.ss_family = AF_INET;
    else if (inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
        ss.ss_family = AF_INET6;
    return ss;
}

static void test_trusted(void)
{
    struct config_cidr *list;
    int n;
    char err[160];
    CHECK("ranges parsed", config_parse_cidrs("10.0.0.0/8, 127.0.0.1/32,2001:db8::/32 ,192.168.1.7", &list, &n, err,
                                              sizeof err) == 0 && n == 4);
    const char *in[] = {"10.200.3.4", "127.0.0.1", "2001:db8:1::9", "192.168.1.7", "::ffff:10.1.1.1"};
    const char *out[] = {"11.0.0.1", "127.0.0.2", "2001:db9::1", "192.168.1.8", "::1"};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        struct sockaddr_storage a = addr(in[i]), b = addr(out[i]);
        char name[64];
        snprintf(name, sizeof name, "%s is trusted", in[i]);
        CHECK(name, config_cidr_match(list, n, (struct sockaddr *)&a));
        snprintf(name, sizeof name, "%s is not", out[i]);
        CHECK(name, !config_cidr_match(list, n, (struct sockaddr *)&b));
    }
    free(list);
    CHECK("an odd prefix", config_parse_cidrs("10.0.0.0/9", &list, &n, err, sizeof err) == 0);
    struct sockaddr_storage a = addr("10.127.255.255"), b = addr("10.128.0.0");
    CHECK("/9 boundary", config_cidr_match(list, n, (struct sockaddr *)&a) &&
                             !config_cidr_match(list, n, (struct sockaddr *)&b));
    free(list);
    CHECK("none is none", config_parse_cidrs("none", &list, &n, err, sizeof err) == 0 && n == 0 && !list);
    CHECK("a bad word is refused with itself named",
          config_parse_cidrs("10.0.0.0/8,bogus", &list, &n, err, sizeof err) == -1 && strstr(err, "'bogus'"));
    CHECK("bits past the family refused", config_parse_cidrs("10.0.0.0/33", &list, &n, err, sizeof err) == -1);
}

int main(void)
{
    test_v2();
    test_v1();
    test_none();
    test_trusted();
    return UNIT_RESULT();
}

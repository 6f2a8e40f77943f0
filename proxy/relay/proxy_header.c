/* The PROXY protocol header parser (see proxy_header.h), after HAProxy's
 * proxy-protocol.txt: version 2's binary block and version 1's text line.
 * Nothing here trusts a length it has not checked against `avail`. */
#include "proxy_header.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t V2_SIGNATURE[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
static const char V1_SIGNATURE[] = "PROXY ";

#define V2_HEADER_LEN 16
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_FAM_UNSPEC 0x0
#define V2_FAM_INET 0x1
#define V2_FAM_INET6 0x2
#define V2_FAM_UNIX 0x3
#define V2_PROTO_UNSPEC 0x0
#define V2_PROTO_STREAM 0x1

static enum proxy_header_result bad(struct proxy_header *out, const char *why)
{
    snprintf(out->why, sizeof out->why, "%s", why);
    return PROXY_HEADER_BAD;
}

/* 1 when the first `avail` bytes match the start of `sig`. */
static int starts_like(const uint8_t *buf, size_t avail, const void *sig, size_t sig_len)
{
    return memcmp(buf, sig, avail < sig_len ? avail : sig_len) == 0;
}

static void set_inet(struct proxy_header *out, const uint8_t *addr, const uint8_t *port)
{
    struct sockaddr_in *in = (struct sockaddr_in *)&out->source;
    in->sin_family = AF_INET;
    memcpy(&in->sin_addr, addr, 4);
    memcpy(&in->sin_port, port, 2);
    out->source_len = sizeof *in;
    out->has_source = 1;
}

static void set_inet6(struct proxy_header *out, const uint8_t *addr, const uint8_t *port)
{
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->source;
    in6->sin6_family = AF_INET6;
    memcpy(&in6->sin6_addr, addr, 16);
    memcpy(&in6->sin6_port, port, 2);
    out->source_len = sizeof *in6;
    out->has_source = 1;
}

static enum proxy_header_result parse_v2(const uint8_t *buf, size_t avail, struct proxy_header *out)
{
    if (avail < V2_HEADER_LEN)
        return PROXY_HEADER_NEED_MORE;
    uint8_t ver_cmd = buf[12], fam = buf[13] >> 4, proto = buf[13] & 0xf;
    size_t len = (size_t)buf[14] << 8 | buf[15];
    if (ver_cmd >> 4 != 2)
        return bad(out, "PROXY protocol v2 header of another version");
    if (V2_HEADER_LEN + len > PROXY_HEADER_MAX)
        return bad(out, "PROXY protocol v2 header longer than 4096 bytes");
    if (avail < V2_HEADER_LEN + len)
        return PROXY_HEADER_NEED_MORE;
    out->version = 2;
    out->length = V2_HEADER_LEN + len;
    const uint8_t *a = buf + V2_HEADER_LEN;
    switch (ver_cmd & 0xf) {
    case V2_CMD_LOCAL: /* the balancer's own connection (a health check): its address stands */
        return PROXY_HEADER_OK;
    case V2_CMD_PROXY:
        break;
    default:
        return bad(out, "PROXY protocol v2 header with an unknown command");
    }
    if (proto != V2_PROTO_STREAM && proto != V2_PROTO_UNSPEC)
        return bad(out, "PROXY protocol v2 header for a datagram");
    switch (fam) {
    case V2_FAM_INET: /* src addr, dst addr, src port, dst port; TLVs after */
        if (len < 12)
            return bad(out, "PROXY protocol v2 header too short for IPv4 addresses");
        set_inet(out, a, a + 8);
        return PROXY_HEADER_OK;
    case V2_FAM_INET6:
        if (len < 36)
            return bad(out, "PROXY protocol v2 header too short for IPv6 addresses");
        set_inet6(out, a, a + 32);
        return PROXY_HEADER_OK;
    case V2_FAM_UNSPEC:
    case V2_FAM_UNIX: /* no address to speak of: the connection's own stands */
        return PROXY_HEADER_OK;
    default:
        return bad(out, "PROXY protocol v2 header with an unknown address family");
    }
}

/* A decimal port, 0 to 65535, without sign or leading zero (as the spec writes it). */
static int parse_port(const char *text, uint16_t *out)
{
    if (!*text || strlen(text) > 5 || (text[0] == '0' && text[1]) || strspn(text, "0123456789") != strlen(text))
        return -1;
    long v = strtol(text, NULL, 10);
    if (v > 65535)
        return -1;
    *out = htons((uint16_t)v);
    return 0;
}

/* "PROXY TCP4 SRC DST SPORT DPORT\r\n", "PROXY TCP6 ...", "PROXY UNKNOWN ...\r\n". */
static enum proxy_header_result parse_v1(const uint8_t *buf, size_t avail, struct proxy_header *out)
{
    size_t limit = avail < PROXY_V1_MAX ? avail : PROXY_V1_MAX;
    const uint8_t *lf = memchr(buf, '\n', limit);
    if (!lf)
        return avail < PROXY_V1_MAX ? PROXY_HEADER_NEED_MORE : bad(out, "PROXY protocol v1 line too long");
    size_t n = (size_t)(lf - buf);
    if (n < 1 || buf[n - 1] != '\r')
        return bad(out, "PROXY protocol v1 line without CRLF");
    char line[PROXY_V1_MAX + 1];
    memcpy(line, buf, n - 1);
    line[n - 1] = '\0';
    if (memchr(line, '\0', n - 1))
        return bad(out, "PROXY protocol v1 line with a NUL");
    out->version = 1;
    out->length = n + 1;
    char *save = NULL;
    strtok_r(line, " ", &save); /* "PROXY" */
    const char *proto = strtok_r(NULL, " ", &save);
    if (proto && !strcmp(proto, "UNKNOWN")) /* the rest is to be ignored */
        return PROXY_HEADER_OK;
    const char *src = strtok_r(NULL, " ", &save), *dst = strtok_r(NULL, " ", &save);
    const char *sport = strtok_r(NULL, " ", &save), *dport = strtok_r(NULL, " ", &save);
    if (!proto || !src || !dst || !sport || !dport || strtok_r(NULL, " ", &save))
        return bad(out, "PROXY protocol v1 line without its five fields");
    int v6 = !strcmp(proto, "TCP6");
    if (!v6 && strcmp(proto, "TCP4"))
        return bad(out, "PROXY protocol v1 line of an unknown protocol");
    uint8_t s[16], d[16];
    uint16_t sp, dp;
    int family = v6 ? AF_INET6 : AF_INET;
    if (inet_pton(family, src, s) != 1 || inet_pton(family, dst, d) != 1 || parse_port(sport, &sp) != 0 ||
        parse_port(dport, &dp) != 0)
        return bad(out, "PROXY protocol v1 line with a bad address or port");
    if (v6)
        set_inet6(out, s, (const uint8_t *)&sp);
    else
        set_inet(out, s, (const uint8_t *)&sp);
    return PROXY_HEADER_OK;
}

enum proxy_header_result proxy_header_parse(const uint8_t *buf, size_t avail, struct proxy_header *out)
{
    memset(out, 0, sizeof *out);
    if (avail == 0)
        return PROXY_HEADER_NEED_MORE;
    if (starts_like(buf, avail, V2_SIGNATURE, sizeof V2_SIGNATURE))
        return avail < sizeof V2_SIGNATURE ? PROXY_HEADER_NEED_MORE : parse_v2(buf, avail, out);
    if (starts_like(buf, avail, V1_SIGNATURE, sizeof V1_SIGNATURE - 1))
        return avail < sizeof V1_SIGNATURE - 1 ? PROXY_HEADER_NEED_MORE : parse_v1(buf, avail, out);
    return PROXY_HEADER_NONE;
}

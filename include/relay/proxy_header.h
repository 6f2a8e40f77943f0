/* The PROXY protocol header (HAProxy's, spec version 2 and the version 1
 * text line) that a load balancer sends before a client's first byte, so
 * that the proxy sees the real client address: for the per-source limits,
 * the log, /status and the fleet. Taken only from the sources in
 * proxy_protocol_trusted (config.h); session_login.c decides what to do with
 * what this reads. Pure: bytes in, a result out, so the fuzz target and
 * the unit tests run the same parser the relay runs. */
#ifndef PGTANDEM_PROXY_HEADER_H
#define PGTANDEM_PROXY_HEADER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* A longer header (TLVs a load balancer adds) is refused. */
#define PROXY_HEADER_MAX 4096
#define PROXY_V1_MAX 107 /* the spec's longest line, CRLF included */

enum proxy_header_result {
    PROXY_HEADER_NONE,       /* the bytes do not start with a PROXY header's signature */
    PROXY_HEADER_NEED_MORE,  /* a signature (or its start) so far: wait for more bytes */
    PROXY_HEADER_OK,
    PROXY_HEADER_BAD,        /* a signature, then something the spec does not allow (why says what) */
};

struct proxy_header {
    int version;              /* 1 or 2 */
    size_t length;            /* of the whole header: what to drain before the client's bytes */
    int has_source;           /* 0: keep the connection's own address (v2 LOCAL, UNSPEC, UNIX; v1 UNKNOWN) */
    struct sockaddr_storage source;
    socklen_t source_len;
    char why[80];
};

/* Reads the first `avail` bytes of a connection. */
enum proxy_header_result proxy_header_parse(const uint8_t *buf, size_t avail, struct proxy_header *out);

#endif

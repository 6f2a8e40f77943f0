/* libFuzzer target for the PROXY protocol header parser (proxy_header.c),
 * which reads the first bytes of every connection from a trusted load
 * balancer, and of every other connection to refuse a header. Checked
 * after each input: a header read is no longer than the input and at least
 * a signature long; every shorter prefix of it needs more bytes (a header
 * split over reads is read the same); the same header with more bytes
 * after it is read the same; a refusal says why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_header h, again;
    enum proxy_header_result r = proxy_header_parse(data, size, &h);
    if (r == PROXY_HEADER_BAD && (!h.why[0] || !memchr(h.why, '\0', sizeof h.why)))
        __builtin_trap();
    if (r != PROXY_HEADER_OK)
        return 0;
    if (h.length > size || h.length < 8 || (h.version != 1 && h.version != 2) || h.length > PROXY_HEADER_MAX)
        __builtin_trap();
    for (size_t cut = 0; cut < h.length; cut++)
        if (proxy_header_parse(data, cut, &again) != PROXY_HEADER_NEED_MORE)
            __builtin_trap();
    if (proxy_header_parse(data, h.length, &again) != PROXY_HEADER_OK || again.length != h.length ||
        again.has_source != h.has_source || (h.has_source && memcmp(&again.source, &h.source, sizeof h.source)))
        __builtin_trap();
    return 0;
}

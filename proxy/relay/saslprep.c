/* SASLprep of passwords (see saslprep.h), on libidn's stringprep
 * tables and Unicode 3.2 NFKC. libidn's own "SASLprep" profile is not used
 * as is: Postgres checks prohibited, unassigned and bidirectional characters
 * on the mapped string before NFKC, not on the normalised output (so
 * "e" U+0340 is refused and hashed raw, where libidn would give U+00E8), and
 * a refused password is hashed as raw bytes instead of being an error. The
 * same steps in Postgres's order give the same bytes as Postgres. */
#include "saslprep.h"

#include <openssl/crypto.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stringprep.h>

#define PROFILE_MAX 32

static int is_ascii(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] & 0x80)
            return 0;
    return 1;
}

/* Strict UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF, no NUL), as Postgres's pg_utf8_islegal. Returns the number of
 * code points written to out (which holds len entries), or -1. */
static long utf8_decode(const unsigned char *s, size_t len, uint32_t *out)
{
    size_t i = 0, n = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t extra;
        uint32_t cp, min;
        if (c == 0)
            return -1;
        if (c < 0x80) {
            out[n++] = c;
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF)
            extra = 1, cp = c & 0x1F, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF)
            extra = 2, cp = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4)
            extra = 3, cp = c & 0x07, min = 0x10000;
        else
            return -1;
        if (len - i <= extra)
            return -1;
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return -1;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return -1;
        out[n++] = cp;
        i += extra + 1;
    }
    return (long)n;
}

/* libidn's SASLprep profile without its NFKC step: the mappings, then the
 * prohibited, bidirectional and unassigned checks, all on the mapped string
 * as Postgres does them. Copied from the library's own table each time (a
 * few entries; no shared state). */
static void checks_profile(Stringprep_profile profile[PROFILE_MAX])
{
    size_t n = 0;
    for (const Stringprep_profile *p = stringprep_saslprep; p->operation && n + 1 < PROFILE_MAX; p++)
        if (p->operation != STRINGPREP_NFKC)
            profile[n++] = *p;
    memset(&profile[n], 0, sizeof profile[n]);
}

/* 0 with the prepared UTF-8 in *out; 1 when Postgres would use the raw
 * bytes; -1 when out of memory. */
static int prepare(const unsigned char *in, size_t len, char **out, size_t *out_len)
{
    /* Mapping only shrinks (to nothing) or keeps one code point (to a
     * space), so len code points always hold the mapped string. */
    uint32_t *ucs = malloc((len + 1) * sizeof *ucs);
    if (!ucs)
        return -1;
    long n = utf8_decode(in, len, ucs);
    size_t count = n > 0 ? (size_t)n : 0;
    int rc = 1;
    Stringprep_profile checks[PROFILE_MAX];
    checks_profile(checks);
    if (n > 0 && stringprep_4i(ucs, &count, len + 1, STRINGPREP_NO_UNASSIGNED, checks) == STRINGPREP_OK &&
        count > 0) {
        uint32_t *nfkc = stringprep_ucs4_nfkc_normalize(ucs, (ssize_t)count);
        size_t nfkc_len = 0;
        while (nfkc && nfkc[nfkc_len])
            nfkc_len++;
        char *utf8 = nfkc ? stringprep_ucs4_to_utf8(nfkc, (ssize_t)nfkc_len, NULL, out_len) : NULL;
        if (nfkc) {
            OPENSSL_cleanse(nfkc, nfkc_len * sizeof *nfkc);
            free(nfkc);
        }
        *out = utf8;
        rc = utf8 ? 0 : -1;
    }
    OPENSSL_cleanse(ucs, (len + 1) * sizeof *ucs);
    free(ucs);
    return rc;
}

int saslprep_password(const char *password, size_t len, char **out, size_t *out_len)
{
    const unsigned char *in = (const unsigned char *)password;
    *out = NULL;
    *out_len = 0;
    int rc = is_ascii(in, len) ? 1 : prepare(in, len, out, out_len);
    if (rc < 0)
        return -1;
    if (rc == 0)
        return 0;
    *out = malloc(len + 1);
    if (!*out)
        return -1;
    memcpy(*out, password, len);
    (*out)[len] = '\0';
    *out_len = len;
    return 0;
}

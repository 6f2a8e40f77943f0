/* Unit tests for SASLprep of passwords: Postgres's own cases (its
 * src/test/authentication/t/002_saslprep.pl and RFC 4013's examples), the
 * fallbacks to raw bytes, and the order Postgres checks in. */
#include <stdlib.h>

#include "saslprep.h"
#include "scram.h"
#include "unit.h"

/* 1 when password prepares to want. */
static int prepares_to(const char *password, const char *want)
{
    char *out = NULL;
    size_t len = 0;
    if (saslprep_password(password, strlen(password), &out, &len) != 0)
        return 0;
    int same = len == strlen(want) && memcmp(out, want, len) == 0 && out[len] == '\0';
    free(out);
    return same;
}

static int kept_raw(const char *password)
{
    return prepares_to(password, password);
}

static void test_mapped_and_normalised(void)
{
    CHECK("roman numeral nine under NFKC", prepares_to("IX-\xe2\x85\xa8", "IX-IX"));
    CHECK("RFC 4013: soft hyphen mapped to nothing", prepares_to("I\xc2\xadX", "IX"));
    CHECK("RFC 4013: U+2168 alone", prepares_to("\xe2\x85\xa8", "IX"));
    CHECK("RFC 4013: feminine ordinal to a", prepares_to("\xc2\xaa", "a"));
    CHECK("no-break space to space", prepares_to("no\xc2\xa0" "break", "no break"));
    CHECK("ideographic space to space", prepares_to("a\xe3\x80\x80" "b", "a b"));
    CHECK("zero width space is a space (C.1.2 first, as Postgres)", prepares_to("a\xe2\x80\x8b" "b", "a b"));
    CHECK("zero width joiner removed", prepares_to("a\xe2\x80\x8d" "b", "ab"));
    CHECK("fi ligature to fi", prepares_to("\xef\xac\x81le", "file"));
    CHECK("fullwidth letters to ASCII", prepares_to("\xef\xbc\xb0\xef\xbd\x97", "Pw"));
    CHECK("precomposed stays composed", prepares_to("caf\xc3\xa9", "caf\xc3\xa9"));
    CHECK("e + combining acute composes", prepares_to("cafe\xcc\x81", "caf\xc3\xa9"));
    CHECK("RandALCat first and last is fine", kept_raw("\xd8\xa7" "1" "\xd8\xa8"));
}

static void test_raw_bytes_when_refused(void)
{
    CHECK("plain ASCII as is", kept_raw("apppass"));
    CHECK("ASCII with a control character as is", kept_raw("foo\abar"));
    CHECK("ASCII upper case is not folded", prepares_to("USER", "USER"));
    CHECK("RFC 4013: prohibited U+0007 among non-ASCII: raw", kept_raw("\xc3\xa9\a"));
    CHECK("RFC 4013: bidi U+0627 U+0031: raw", kept_raw("foo\xd8\xa7" "1bar"));
    CHECK("RandALCat with LCat: raw", kept_raw("\xd8\xa7" "a" "\xd8\xa7"));
    CHECK("private use character: raw", kept_raw("x\xee\x80\x80"));
    CHECK("unassigned in Unicode 3.2 (U+0221): raw", kept_raw("x\xc8\xa1"));
    CHECK("Postgres checks before NFKC: e + U+0340 raw", kept_raw("e\xcd\x80"));
    CHECK("only mapped-to-nothing characters: raw", kept_raw("\xc2\xad"));
    CHECK("not UTF-8 (Latin-1 e acute): raw", kept_raw("caf\xe9"));
    CHECK("overlong UTF-8: raw", kept_raw("a\xc0\xaf" "b\xc3\xa9"));
    CHECK("UTF-8 surrogate: raw", kept_raw("\xed\xa0\x80\xc3\xa9"));
    CHECK("truncated UTF-8: raw", kept_raw("\xc3\xa9\xe2\x85"));
    char *out = NULL;
    size_t len = 1;
    CHECK("empty password: empty", saslprep_password("", 0, &out, &len) == 0 && len == 0 && out && !out[0]);
    free(out);
}

/* The verifier hashes the prepared form: every spelling Postgres treats as
 * the same password gives the same keys. */
static void test_verifiers_use_the_prepared_form(void)
{
    static const unsigned char salt[16] = "0123456789abcdef";
    struct scram_verifier a, b, c;
    int ok = scram_verifier_derive(&a, "IX-\xe2\x85\xa8", 6, salt, sizeof salt, 4096) == SCRAM_OK &&
             scram_verifier_derive(&b, "IX-IX", 5, salt, sizeof salt, 4096) == SCRAM_OK &&
             scram_verifier_derive(&c, "I\xc2\xadX-IX", 7, salt, sizeof salt, 4096) == SCRAM_OK;
    CHECK("verifier of IX-U+2168 is that of IX-IX", ok && memcmp(a.stored_key, b.stored_key, SCRAM_KEY_LEN) == 0 &&
                                                      memcmp(a.server_key, b.server_key, SCRAM_KEY_LEN) == 0);
    CHECK("verifier with a soft hyphen is that of IX-IX", ok && memcmp(c.stored_key, b.stored_key, SCRAM_KEY_LEN) == 0);
    CHECK("check_password accepts either spelling", ok && scram_verifier_check_password(&b, "IX-\xe2\x85\xa8", 6) &&
                                                        scram_verifier_check_password(&a, "IX-IX", 5));
    CHECK("case still matters", ok && !scram_verifier_check_password(&b, "ix-ix", 5));
}

int main(void)
{
    test_mapped_and_normalised();
    test_raw_bytes_when_refused();
    test_verifiers_use_the_prepared_form();
    return UNIT_RESULT();
}

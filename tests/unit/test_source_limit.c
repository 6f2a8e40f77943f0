/* Unit tests for the per-source limits on unauthenticated failures: a
 * source's burst and then nothing, sources kept apart (IPv4 addresses,
 * IPv6 /64s, Unix sockets), the table's fixed size, and log lines that
 * stay few. */
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "relay.h"
#include "source_limit.h"
#include "unit.h"

static int fail_times(struct relay *relay, const char *addr, int n)
{
    int under = 0;
    for (int i = 0; i < n; i++)
        under += source_limit_failure(relay, addr, SOURCE_CANCEL_UNKNOWN, 1, "failure from %s", addr);
    return under;
}

/* Lines written to stderr while fn runs. */
static int lines_logged(void (*fn)(struct relay *), struct relay *relay)
{
    fflush(stderr);
    FILE *tmp = tmpfile();
    int saved = dup(2);
    dup2(fileno(tmp), 2);
    fn(relay);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    int lines = 0, c;
    while ((c = fgetc(tmp)) != EOF)
        lines += c == '\n';
    fclose(tmp);
    return lines;
}

static void flood(struct relay *relay)
{
    for (int i = 0; i < 10000; i++) {
        if (source_limit_allows(relay, "198.51.100.9:4000"))
            source_limit_failure(relay, "198.51.100.9:4000", SOURCE_CANCEL_UNKNOWN, 1, "forged cancel");
    }
}

static void summary_now(struct relay *relay)
{
    source_limits_free(relay); /* writes what is still unsummed */
}

int main(void)
{
    struct relay relay;
    memset(&relay, 0, sizeof relay);
    config_init(&relay.cfg);
    relay.base = event_base_new();
    int burst = relay.cfg.source_failures_per_s * SOURCE_BURST_S;
    log_set_level(LOG_LEVEL_INFO);

    CHECK("limit: the default is 10 a second, 50 at once", burst == 50);
    /* The bucket refills with the real clock: a loaded machine (both
     * suites under the sanitizers) can spend a refill's 100 ms between two
     * lines, so "none" means none beyond what the time since refilled. */
    uint64_t t0 = relay_now_us(&relay);
    CHECK("limit: a new source has its burst", fail_times(&relay, "192.0.2.1:1000", burst) == burst);
    int more = fail_times(&relay, "192.0.2.1:1001", 1);
    int allowed = source_limit_allows(&relay, "192.0.2.1:1002");
    int refilled = (int)((double)(relay_now_us(&relay) - t0) / 1e6 * relay.cfg.source_failures_per_s);
    CHECK("limit: then none", more <= refilled);
    CHECK("limit: its cancels are not looked at", !allowed || refilled >= 1);
    CHECK("limit: another address is not affected", source_limit_allows(&relay, "192.0.2.2:1000"));
    CHECK("limit: uncharged failures never refuse",
          source_limit_failure(&relay, "192.0.2.1:1", SOURCE_BAD_STARTUP, 0, "x") == 1);

    t0 = relay_now_us(&relay);
    CHECK("limit: an IPv6 host uses up its /64", fail_times(&relay, "2001:db8:1:2::1:5432", burst) == burst);
    allowed = source_limit_allows(&relay, "[2001:db8:1:2:ffff::9]:7000");
    refilled = (int)((double)(relay_now_us(&relay) - t0) / 1e6 * relay.cfg.source_failures_per_s);
    CHECK("limit: the same /64 in the peer form", !allowed || refilled >= 1);
    CHECK("limit: the next /64 is another source", source_limit_allows(&relay, "[2001:db8:1:3::1]:7000"));
    t0 = relay_now_us(&relay);
    more = fail_times(&relay, "unix", burst + 1);
    refilled = (int)((double)(relay_now_us(&relay) - t0) / 1e6 * relay.cfg.source_failures_per_s);
    CHECK("limit: Unix-socket clients are one source", more >= burst && more <= burst + refilled);

    /* The table is fixed: 256 other sources push the oldest out, which
     * then starts afresh (that is the price of bounded memory). */
    char addr[64];
    for (int i = 0; i < 256; i++) {
        snprintf(addr, sizeof addr, "198.18.%d.%d:1000", i / 256, i % 256);
        source_limit_allows(&relay, addr);
    }
    CHECK("limit: a source pushed out of the table starts afresh", source_limit_allows(&relay, "192.0.2.1:1003"));

    /* a line a second at most: one, unless the loop outlasts a second
     * (under the sanitizer on a loaded machine) */
    t0 = relay_now_us(&relay);
    int lines = lines_logged(flood, &relay);
    int seconds = (int)((relay_now_us(&relay) - t0) / 1000000u);
    CHECK("limit: 10000 forged cancels from one address log one line a second", lines >= 1 && lines <= 1 + seconds);
    lines = lines_logged(summary_now, &relay);
    CHECK("limit: and the rest in a summary line per source", lines >= 1 && lines <= 9);
    CHECK("limit: the table is gone", relay.limits == NULL);

    config_free(&relay.cfg);
    event_base_free(relay.base);
    return UNIT_RESULT();
}

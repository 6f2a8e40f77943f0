/* Unit tests for what pins a client in transaction pooling (pin.c) and the
 * tracked-parameter bookkeeping of pool.c. */
#include <event2/buffer.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "pin.h"
#include "pool.h"
#include "proto.h"
#include "unit.h"

static int pins(const char *sql, char *why)
{
    return pin_reason_for_sql(sql, strlen(sql), why, 64);
}

static void test_pinning_statements(void)
{
    char why[64];
    CHECK("SET of an untracked parameter pins", pins("SET statement_timeout = 5", why) == 1 &&
                                                    !strcmp(why, "SET statement_timeout"));
    CHECK("SET search_path pins", pins("set search_path to a, b", why) == 1 && !strcmp(why, "SET search_path"));
    CHECK("SET SESSION pins", pins("SET SESSION work_mem = '8MB'", why) == 1);
    CHECK("SET ROLE pins", pins("SET ROLE other", why) == 1);
    CHECK("PREPARE pins", pins("PREPARE q AS SELECT 1", why) == 1 && !strcmp(why, "PREPARE"));
    CHECK("LISTEN pins", pins("  -- wake me\n LISTEN ch", why) == 1 && !strcmp(why, "LISTEN"));
    CHECK("WITH HOLD pins", pins("DECLARE c CURSOR WITH HOLD FOR SELECT 1", why) == 1);
    CHECK("a temporary table pins", pins("CREATE TEMP TABLE t (a int)", why) == 1 &&
                                        !strcmp(why, "temporary object"));
    CHECK("CREATE TEMP TABLE AS pins", pins("create temporary table t as select 1", why) == 1);
    CHECK("a session advisory lock pins", pins("SELECT pg_advisory_lock(1)", why) == 1 &&
                                              !strcmp(why, "pg_advisory_lock()"));
    CHECK("pg_try_advisory_lock pins", pins("select x from t where pg_try_advisory_lock(x)", why) == 1);
    CHECK("set_config pins", pins("SELECT set_config('a.b', 'c', false)", why) == 1);
    CHECK("LOAD pins", pins("LOAD 'auto_explain'", why) == 1);
    CHECK("the second statement of a string pins", pins("SELECT 1; SET lock_timeout = 1", why) == 1);
    CHECK("after a block comment", pins("/* x */ LISTEN ch", why) == 1);
}

static void test_statements_that_do_not_pin(void)
{
    char why[64];
    CHECK("SELECT does not pin", pins("SELECT 1", why) == 0);
    CHECK("UPDATE ... SET does not pin", pins("UPDATE t SET a = 1", why) == 0);
    CHECK("SET LOCAL does not pin", pins("SET LOCAL statement_timeout = 5", why) == 0);
    CHECK("a tracked parameter does not pin", pins("SET TimeZone = 'UTC'", why) == 0);
    CHECK("SET application_name does not pin", pins("SET application_name = 'x'", why) == 0);
    CHECK("RESET does not pin", pins("RESET statement_timeout", why) == 0);
    CHECK("RESET ALL does not pin", pins("RESET ALL", why) == 0);
    CHECK("SET TRANSACTION does not pin", pins("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", why) == 0);
    CHECK("a cursor without hold does not pin", pins("DECLARE c CURSOR FOR SELECT 1", why) == 0);
    CHECK("a table does not pin", pins("CREATE TABLE t (a int)", why) == 0);
    CHECK("an xact advisory lock does not pin", pins("SELECT pg_advisory_xact_lock(1)", why) == 0);
    CHECK("a syntax error does not pin", pins("SET SET SET", why) == 0);
    CHECK("empty text does not pin", pin_reason_for_sql("", 0, why, sizeof why) == 0);
    CHECK("a literal that says SET does not pin", pins("SELECT 'a; SET x = 1'", why) == 0);
    CHECK("text not NUL-terminated is read to len only", pin_reason_for_sql("SELECT 1LISTEN x", 8, why, 64) == 0);
}

static uint32_t parameter_status(uint8_t *buf, const char *key, const char *value)
{
    size_t kl = strlen(key) + 1, vl = strlen(value) + 1;
    buf[0] = 'S';
    proto_put_u32(buf + 1, (uint32_t)(4 + kl + vl));
    memcpy(buf + 5, key, kl);
    memcpy(buf + 5 + kl, value, vl);
    return (uint32_t)(5 + kl + vl);
}

static void test_parameter_values(void)
{
    struct param_values p;
    memset(&p, 0, sizeof p);
    uint8_t buf[256];
    uint32_t n = parameter_status(buf, "TimeZone", "Asia/Tokyo");
    CHECK("a tracked parameter is noted", param_values_note(&p, buf, n) == 0);
    int tz = pin_tracked_index("timezone");
    CHECK("tracked names match without case", tz >= 0 && p.known[tz] && !strcmp(p.value[tz], "Asia/Tokyo"));
    n = parameter_status(buf, "server_version", "15.8");
    CHECK("an untracked parameter is ignored", param_values_note(&p, buf, n) == 0);
    char long_value[100];
    memset(long_value, 'x', sizeof long_value - 1);
    long_value[sizeof long_value - 1] = '\0';
    n = parameter_status(buf, "application_name", long_value);
    CHECK("a value too long to carry is refused", param_values_note(&p, buf, n) == -1);
    buf[n - 1] = 'x';
    CHECK("a value without its NUL is refused", param_values_note(&p, buf, n) == -1);
    CHECK("a short message is refused", param_values_note(&p, buf, 6) == -1);
}

static void test_carried_sets(void)
{
    struct pin_carry c;
    const char *q = "SET extra_float_digits = 3";
    CHECK("a lone SET of an untracked parameter is carried", pin_carried_set(q, strlen(q), &c) == 1 &&
                                                               !strcmp(c.name, "extra_float_digits") && !c.reset);
    q = "RESET statement_timeout";
    CHECK("RESET is carried as a reset", pin_carried_set(q, strlen(q), &c) == 1 && c.reset);
    q = "SET statement_timeout TO DEFAULT";
    CHECK("SET ... TO DEFAULT is a reset", pin_carried_set(q, strlen(q), &c) == 1 && c.reset);
    q = "SET search_path = a, \"My \"\"S\"\"\", 'b c', \"$user\"";
    CHECK("search_path is carried with its names quoted",
          pin_carried_set(q, strlen(q), &c) == 1 && !strcmp(c.name, "search_path") && !c.reset &&
              !strcmp(c.value, "\"a\", \"My \"\"S\"\"\", \"b c\", \"$user\""));
    q = "RESET search_path";
    CHECK("RESET search_path is a reset", pin_carried_set(q, strlen(q), &c) == 1 && c.reset && !c.value[0]);
    q = "SET search_path FROM CURRENT";
    CHECK("SET search_path FROM CURRENT is not carried", pin_carried_set(q, strlen(q), &c) == 0);
    q = "SET search_path = 5";
    CHECK("a search_path that is no list of names is not carried", pin_carried_set(q, strlen(q), &c) == 0);
    q = "SET work_mem = '8MB'";
    CHECK("other parameters have no value", pin_carried_set(q, strlen(q), &c) == 1 && !c.value[0]);
    q = "SET ROLE x";
    CHECK("a role is never carried", pin_carried_set(q, strlen(q), &c) == 0);
    q = "SET TimeZone = 'UTC'";
    CHECK("a tracked parameter is not carried (Postgres reports it)", pin_carried_set(q, strlen(q), &c) == 0);
    q = "SET LOCAL work_mem = '8MB'";
    CHECK("SET LOCAL is not carried", pin_carried_set(q, strlen(q), &c) == 0);
    q = "SET work_mem = '8MB'; SELECT 1";
    CHECK("a SET among other statements is not carried", pin_carried_set(q, strlen(q), &c) == 0);
    q = "SELECT 1";
    CHECK("a SELECT is not a SET", pin_carried_set(q, strlen(q), &c) == 0);
    q = "RESET ALL";
    CHECK("RESET ALL is carried, as every parameter reset",
          pin_carried_set(q, strlen(q), &c) == 1 && c.all && c.reset && !c.name[0]);
    q = "RESET statement_timeout";
    CHECK("a RESET of one is not all", pin_carried_set(q, strlen(q), &c) == 1 && !c.all);

    char name[64];
    q = "DEALLOCATE _pg3_0";
    CHECK("DEALLOCATE name", pin_deallocate_name(q, strlen(q), name, sizeof name) == 1 && !strcmp(name, "_pg3_0"));
    q = "/* c */ deallocate prepare \"My S\"";
    CHECK("DEALLOCATE PREPARE of a quoted name, after a comment",
          pin_deallocate_name(q, strlen(q), name, sizeof name) == 1 && !strcmp(name, "My S"));
    q = "DEALLOCATE ALL";
    CHECK("DEALLOCATE ALL names none", pin_deallocate_name(q, strlen(q), name, sizeof name) == 0);
    q = "DEALLOCATE a; SELECT 1";
    CHECK("DEALLOCATE among other statements is not answered",
          pin_deallocate_name(q, strlen(q), name, sizeof name) == 0);
    q = "SELECT 'DEALLOCATE a'";
    CHECK("a SELECT is not a DEALLOCATE", pin_deallocate_name(q, strlen(q), name, sizeof name) == 0);
    char small[4];
    q = "DEALLOCATE longname";
    CHECK("a name that does not fit is not answered", pin_deallocate_name(q, strlen(q), small, sizeof small) == 0);

    struct carried_sets have = {0}, want = {0};
    CHECK("apply", carried_sets_apply(&want, "work_mem", 0, NULL, "SET work_mem = '8MB' -- mine", 29) == 0 &&
                       carried_sets_apply(&have, "lock_timeout", 0, NULL, "SET lock_timeout = 5", 20) == 0);
    struct evbuffer *out = evbuffer_new();
    CHECK("they differ", carried_sets_differ(&have, &want, NULL));
    CHECK("sync", carried_sets_sync(&have, &want, NULL, out) == 0 && have.n == 1);
    size_t n = evbuffer_get_length(out);
    char text[256] = "";
    evbuffer_remove(out, text, n < sizeof text - 1 ? n : sizeof text - 1);
    CHECK("the sync resets what the client lacks and sets what it has, a comment ended by a newline, "
          "each statement its own (NUL-ended)",
          n == sizeof "RESET lock_timeout\0SET work_mem = '8MB' -- mine\n" &&
              !memcmp(text, "RESET lock_timeout\0SET work_mem = '8MB' -- mine\n", n));
    CHECK("no diff once the same", !carried_sets_differ(&have, &want, NULL) &&
                                       carried_sets_sync(&have, &want, NULL, out) == 0 &&
                                       evbuffer_get_length(out) == 0);
    /* search_path: the route's schema first on a routed server */
    const char *sp = "SET search_path TO app";
    CHECK("a search_path", carried_sets_apply(&want, "search_path", 0, "\"app\"", sp, strlen(sp)) == 0);
    CHECK("unrouted, as written", carried_sets_sync(&have, &want, NULL, out) == 0);
    n = evbuffer_get_length(out);
    memset(text, 0, sizeof text);
    evbuffer_remove(out, text, n < sizeof text - 1 ? n : sizeof text - 1);
    CHECK("unrouted text", !strcmp(text, "SET search_path TO app\n"));
    CHECK("the same server routed differs", carried_sets_differ(&have, &want, "pgtandem_\"x") &&
                                                !carried_sets_differ(&have, &want, NULL));
    CHECK("routed sync", carried_sets_sync(&have, &want, "pgtandem_\"x", out) == 0);
    n = evbuffer_get_length(out);
    memset(text, 0, sizeof text);
    evbuffer_remove(out, text, n < sizeof text - 1 ? n : sizeof text - 1);
    CHECK("routed: the schema first, then the client's path",
          !strcmp(text, "SET search_path TO \"pgtandem_\"\"x\", \"app\"\n"));
    CHECK("routed, then the same", !carried_sets_differ(&have, &want, "pgtandem_\"x"));
    CHECK("the client's raw SET on the routed server differs again",
          carried_sets_apply(&have, "search_path", 0, NULL, sp, strlen(sp)) == 0 &&
              carried_sets_differ(&have, &want, "pgtandem_\"x"));
    CHECK("reset removes", carried_sets_apply(&want, "work_mem", 1, NULL, NULL, 0) == 0 &&
                               carried_sets_apply(&want, "search_path", 1, NULL, NULL, 0) == 0 && want.n == 0);
    for (int i = 0; i < CARRIED_MAX; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        carried_sets_apply(&want, name, 0, NULL, "SET x = 1", 9);
    }
    CHECK("a full set refuses one more", carried_sets_apply(&want, "one_more", 0, NULL, "SET x = 1", 9) == -1);
    evbuffer_free(out);
    carried_sets_free(&have);
    carried_sets_free(&want);
}

int main(void)
{
    test_carried_sets();
    test_pinning_statements();
    test_statements_that_do_not_pin();
    test_parameter_values();
    return UNIT_RESULT();
}

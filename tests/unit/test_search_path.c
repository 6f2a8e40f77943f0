/* Unit tests for reading a client's own search_path from its startup
 * packet (proxy/relay/search_path.c). */
#include <stdint.h>
#include <stdlib.h>

#include "search_path.h"
#include "unit.h"

static void test_options(void)
{
    char out[64];
    CHECK("-c name=value", search_path_from_options("-c search_path=app,public", out, sizeof out) == 1 &&
                               !strcmp(out, "app,public"));
    CHECK("-cname=value and --name=value, the last wins",
          search_path_from_options("-csearch_path=a --search-path=b -c work_mem=1MB", out, sizeof out) == 1 &&
              !strcmp(out, "b"));
    CHECK("escapes undone as Postgres splits", search_path_from_options(" -c search_path=\"My\\ S\",x\\\\y  ", out,
                                                                        sizeof out) == 1 &&
                                                   !strcmp(out, "\"My S\",x\\y"));
    CHECK("case of the name ignored", search_path_from_options("-c Search_Path=q", out, sizeof out) == 1 &&
                                          !strcmp(out, "q"));
    CHECK("none", search_path_from_options("-c statement_timeout=5 endpoint=ep-1", out, sizeof out) == 0);
    CHECK("a value only after -c", search_path_from_options("search_path=x", out, sizeof out) == 0);
    CHECK("too long", search_path_from_options("-c search_path=0123456789", out, 5) == -1);
}

static struct startup_packet parse(uint8_t *pkt, size_t len)
{
    struct startup_packet sp;
    struct startup_refusal why;
    if (proto_parse_startup(pkt, len, &sp, &why) != 0)
        abort();
    return sp;
}

static void test_startup(void)
{
    static const uint8_t body[] = "user\0u\0options\0-c search_path=from_options\0search_path\0from_param\0\0";
    uint8_t pkt[8 + sizeof body - 1];
    proto_put_u32(pkt, sizeof pkt);
    proto_put_u32(pkt + 4, PROTO_VERSION_3);
    memcpy(pkt + 8, body, sizeof body - 1);
    struct startup_packet sp = parse(pkt, sizeof pkt);
    char out[64];
    CHECK("the parameter wins over options (Postgres applies it after)",
          search_path_of_startup(&sp, out, sizeof out) == 1 && !strcmp(out, "from_param"));
    static const uint8_t only_options[] = "user\0u\0options\0--search_path=o\0\0";
    uint8_t pkt2[8 + sizeof only_options - 1];
    proto_put_u32(pkt2, sizeof pkt2);
    proto_put_u32(pkt2 + 4, PROTO_VERSION_3);
    memcpy(pkt2 + 8, only_options, sizeof only_options - 1);
    sp = parse(pkt2, sizeof pkt2);
    CHECK("from options", search_path_of_startup(&sp, out, sizeof out) == 1 && !strcmp(out, "o"));
}

int main(void)
{
    test_options();
    test_startup();
    return UNIT_RESULT();
}

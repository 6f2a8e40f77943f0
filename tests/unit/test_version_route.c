/* Unit tests for the routes of several migrations in flight
 * (proxy/relay/version_route.c): each declared version's path, the
 * engine's entry beside the fleet's, and what changes count. And the
 * path's quoting for the server (base/migration_sql.c). */
#include <stdlib.h>
#include <string.h>

#include "migration_sql.h"
#include "unit.h"
#include "version_route.h"

static const struct flight_route A1 = {"a1", "pgtandem_a1", "pgtandem_a1_old"};
static const struct flight_route B2 = {"b2", "pgtandem_b2", "pgtandem_b2_old"};
static const struct flight_route C3 = {"c3", "pgtandem_c3", "pgtandem_c3_old"};

static const char *path(const struct version_route *r, const char *declared)
{
    return r->paths[version_route_index(r, declared) + 1];
}

static void test_paths(void)
{
    struct version_route r;
    memset(&r, 0, sizeof r);
    const struct flight_route three[] = {A1, B2, C3};
    CHECK("three in flight: a change", version_route_set_flight(&r, three, 3) == 1 && r.n == 3);
    CHECK("the same look again: no change", version_route_set_flight(&r, three, 3) == 0);
    CHECK("none declared: every old shape, oldest first",
          !strcmp(path(&r, NULL), "pgtandem_a1_old,pgtandem_b2_old,pgtandem_c3_old"));
    CHECK("a1's release: its new shape, then the old ones above it",
          !strcmp(path(&r, "a1"), "pgtandem_a1,pgtandem_b2_old,pgtandem_c3_old"));
    CHECK("c3's release: every new shape, newest first", !strcmp(path(&r, "c3"), "pgtandem_c3,pgtandem_b2,pgtandem_a1"));
    CHECK("a name routed nowhere (completed, unknown) sees the old shapes",
          !strcmp(path(&r, "z9"), path(&r, NULL)) && version_route_index(&r, "z9") == -1);
    CHECK("c3 sees a1's new shape, a1 not c3's",
          version_route_sees_new(&r, "c3", 0) && version_route_sees_new(&r, "a1", 0) &&
              !version_route_sees_new(&r, "a1", 2) && !version_route_sees_new(&r, NULL, 0));
    /* b2 still expanding: its release sees the old shape like the others */
    const struct flight_route b2_expanding = {"b2", NULL, "pgtandem_b2_old"};
    CHECK("a shape not routed yet: a change", version_route_set_one(&r, &b2_expanding) == 1);
    CHECK("its release sees its old shape", !strcmp(path(&r, "b2"), "pgtandem_b2_old,pgtandem_a1,pgtandem_c3_old"));
    const struct flight_route b2_gone = {"b2", NULL, NULL};
    CHECK("one that left flight is removed", version_route_set_one(&r, &b2_gone) == 1 && r.n == 2 &&
                                                 !strcmp(path(&r, "c3"), "pgtandem_c3,pgtandem_a1"));
    CHECK("a pool's path is served while some session is routed to it",
          version_route_has_path(&r, "pgtandem_c3,pgtandem_a1") && !version_route_has_path(&r, "pgtandem_a1") &&
              !version_route_has_path(&r, NULL));
    CHECK("one heard of between looks is the newest", version_route_set_one(&r, &B2) == 1 && r.n == 3 &&
                                                          version_route_index(&r, "b2") == 2);
}

static void test_runner(void)
{
    struct version_route r;
    memset(&r, 0, sizeof r);
    CHECK("the engine's own, alone", version_route_set_runner(&r, "a1", "pgtandem_a1", "pgtandem_a1_old") == 1 &&
                                         r.n == 1 && r.e[0].by_runner);
    const struct flight_route fleet[] = {{"a1", NULL, "pgtandem_a1_old"}, B2};
    CHECK("the fleet's look keeps the engine's entry where it lists it",
          version_route_set_flight(&r, fleet, 2) == 1 && r.n == 2 && r.e[0].by_runner &&
              !strcmp(r.e[0].new_schema, "pgtandem_a1") && !strcmp(r.e[1].version, "b2"));
    const struct flight_route a1_news = {"a1", NULL, NULL};
    CHECK("news of the engine's own migration is the engine's", version_route_set_one(&r, &a1_news) == 0 && r.n == 2);
    CHECK("a look that does not list it yet keeps it first", version_route_set_flight(&r, &B2, 1) == 0 &&
                                                                 r.n == 2 && !strcmp(r.e[0].version, "a1"));
    CHECK("the engine's migration ended: removed", version_route_set_runner(&r, NULL, NULL, NULL) == 1 && r.n == 1 &&
                                                       !strcmp(r.e[0].version, "b2"));
    CHECK("the engine follows the next: the fleet's entry becomes its own",
          version_route_set_runner(&r, "b2", "pgtandem_b2", "pgtandem_b2_old") == 0 && r.n == 1 && r.e[0].by_runner);
    CHECK("a name that does not fit is not routed",
          version_route_set_runner(&r, "b2", "pgtandem_b2_with_a_schema_name_far_longer_than_any_tag_of_ours_makes_it",
                                   "pgtandem_b2_old") == 1 && r.n == 0);
    struct flight_route many[RELAY_ROUTES_MAX + 2];
    char names[RELAY_ROUTES_MAX + 2][16];
    for (int i = 0; i < RELAY_ROUTES_MAX + 2; i++) {
        snprintf(names[i], sizeof names[i], "m%d", i);
        many[i] = (struct flight_route){names[i], NULL, "x"};
    }
    CHECK("at most 8 routed", version_route_set_flight(&r, many, RELAY_ROUTES_MAX + 2) == 1 && r.n == RELAY_ROUTES_MAX);
}

static void test_quoting(void)
{
    char *q = mig_search_path_sql("pgtandem_c3,pgtandem_b2,pgtandem_a1");
    CHECK("each schema of a path quoted", q && !strcmp(q, "SET search_path TO \"pgtandem_c3\",\"pgtandem_b2\","
                                                          "\"pgtandem_a1\",public"));
    free(q);
    char opt[256];
    CHECK("in the startup options, then the client's own path",
          mig_search_path_option(opt, sizeof opt, "pgtandem_a1,pgtandem_b2_old", "app") == 0 &&
              !strcmp(opt, " -c search_path=\"pgtandem_a1\",\"pgtandem_b2_old\",app"));
}

int main(void)
{
    test_paths();
    test_runner();
    test_quoting();
    return UNIT_RESULT();
}

/* Unit tests for several migrations in flight (migration_flight.h): which
 * start, complete, finalize, revert and rollback a chain allows, in every
 * phase of the parent, and which shapes a release sees. The chain is the
 * one a team ships: a1 renames a column of users, b2 (parent a1) adds one
 * to users, c3 (parent b2) creates audit; x9 is a branch off an old
 * migration, on orders. */
#include <stdio.h>
#include <string.h>

#include "migration_flight.h"
#include "unit.h"

static const char *const USERS[] = {"public.users"};
static const char *const AUDIT[] = {"public.audit"};
static const char *const ORDERS[] = {"public.orders"};
static const char *const USERS_ORDERS[] = {"public.orders", "public.users"};

#define F(name, parent, phase, tables) {name, parent, phase, tables, sizeof tables / sizeof *tables, 0, tables, sizeof tables / sizeof *tables}

static int admit(const struct mig_flight *fl, size_t n, enum mig_request q, const struct mig_flight *m, int cascade,
                 char *why)
{
    return mig_flight_admit(fl, n, q, m, cascade, why, 512);
}

static void test_start(void)
{
    char why[512];
    struct mig_flight fl[3] = {F("a1", "init", MIG_PH_ACTIVE, USERS)};
    struct mig_flight b2 = F("b2", "a1", MIG_PH_IDLE, USERS);
    CHECK("start: none in flight, any start", admit(fl, 0, MIG_REQ_START, &b2, 0, why) == 0 && why[0] == '\0');

    static const enum mig_phase ok_phases[] = {MIG_PH_EXPANDING, MIG_PH_BACKFILLING, MIG_PH_FINISHING, MIG_PH_ACTIVE,
                                               MIG_PH_SWITCHED};
    int ok = 1;
    for (size_t i = 0; i < sizeof ok_phases / sizeof *ok_phases; i++) {
        fl[0].phase = ok_phases[i];
        ok = ok && admit(fl, 1, MIG_REQ_START, &b2, 0, why) == 0;
    }
    CHECK("start: on the newest in flight, in each of its phases that is no cutover, rollback or failure", ok);
    fl[0].phase = MIG_PH_COMPLETING;
    CHECK("start: not while the parent's cutover runs",
          admit(fl, 1, MIG_REQ_START, &b2, 0, why) == 409 && strstr(why, "a1, the parent of b2, is completing"));
    fl[0].phase = MIG_PH_ROLLING_BACK;
    CHECK("start: not while the parent rolls back", admit(fl, 1, MIG_REQ_START, &b2, 0, why) == 409);
    fl[0].phase = MIG_PH_FAILED;
    CHECK("start: not on a failed parent, saying to roll it back",
          admit(fl, 1, MIG_REQ_START, &b2, 0, why) == 409 && strstr(why, "roll it back"));
    fl[0].phase = MIG_PH_ACTIVE;

    struct mig_flight sibling = F("b2x", "init", MIG_PH_IDLE, USERS);
    CHECK("start: a table in flight changed beside it is refused, naming the parent to give",
          admit(fl, 1, MIG_REQ_START, &sibling, 0, why) == 409 &&
              strstr(why, "b2x changes public.users, which migration a1 in flight changes too") &&
              strstr(why, "give b2x the parent a1"));
    struct mig_flight other = F("x9", "init", MIG_PH_IDLE, ORDERS);
    CHECK("start: a migration on other tables is not held up, whatever its parent",
          admit(fl, 1, MIG_REQ_START, &other, 0, why) == 0);

    fl[1] = (struct mig_flight)F("b2", "a1", MIG_PH_BACKFILLING, USERS);
    struct mig_flight again = F("b3", "a1", MIG_PH_IDLE, AUDIT);
    CHECK("start: a parent already built on is refused: the child names the newest",
          admit(fl, 2, MIG_REQ_START, &again, 0, why) == 409 && strstr(why, "b2 is built on a1 already") &&
              strstr(why, "name b2"));
    struct mig_flight c3 = F("c3", "b2", MIG_PH_IDLE, AUDIT);
    CHECK("start: a third on top of the second", admit(fl, 2, MIG_REQ_START, &c3, 0, why) == 0);
    struct mig_flight late = F("b2y", "init", MIG_PH_IDLE, USERS_ORDERS);
    CHECK("start: the newest of the line is named when one of the tables is changed in flight",
          admit(fl, 2, MIG_REQ_START, &late, 0, why) == 409 && strstr(why, "give b2y the parent b2"));
    CHECK("start: a name in flight already", admit(fl, 2, MIG_REQ_START, &fl[1], 0, why) == 409 &&
                                                 strstr(why, "b2 is in flight already"));

    struct mig_flight many[MIG_FLIGHT_MAX];
    char names[MIG_FLIGHT_MAX][16];
    for (int i = 0; i < MIG_FLIGHT_MAX; i++) {
        snprintf(names[i], sizeof names[i], "m%d", i);
        many[i] = (struct mig_flight)F(names[i], i ? names[i - 1] : NULL, MIG_PH_ACTIVE, USERS);
    }
    struct mig_flight one_more = F("m99", "m7", MIG_PH_IDLE, USERS);
    CHECK("start: at most MIG_FLIGHT_MAX in flight",
          admit(many, MIG_FLIGHT_MAX, MIG_REQ_START, &one_more, 0, why) == 409 && strstr(why, "complete the oldest (m0)") &&
              admit(many, MIG_FLIGHT_MAX - 1, MIG_REQ_START, &(struct mig_flight)F("m99", "m6", MIG_PH_IDLE, USERS), 0,
                    why) == 0);
}

static void test_order(void)
{
    char why[512];
    struct mig_flight fl[4] = {F("a1", "init", MIG_PH_ACTIVE, USERS), F("b2", "a1", MIG_PH_ACTIVE, USERS),
                               F("c3", "b2", MIG_PH_ACTIVE, AUDIT), F("x9", "init", MIG_PH_ACTIVE, ORDERS)};
    CHECK("complete: the oldest of a table first", admit(fl, 4, MIG_REQ_COMPLETE, &fl[0], 0, why) == 0);
    CHECK("complete: not one built on another of its table, naming it",
          admit(fl, 4, MIG_REQ_COMPLETE, &fl[1], 0, why) == 409 && strstr(why, "complete a1 first"));
    CHECK("complete: one on other tables in any order (c3 on audit above a1 and b2 on users)",
          admit(fl, 4, MIG_REQ_COMPLETE, &fl[2], 0, why) == 0 && admit(fl, 4, MIG_REQ_COMPLETE, &fl[3], 0, why) == 0);
    fl[0].phase = MIG_PH_SWITCHED;
    CHECK("finalize: oldest first too", admit(fl, 4, MIG_REQ_FINALIZE, &fl[1], 0, why) == 409 &&
                                            strstr(why, "finalize or complete a1 first") &&
                                            admit(fl, 4, MIG_REQ_FINALIZE, &fl[0], 0, why) == 0);
    CHECK("revert: not under migrations built on it, naming them newest first",
          admit(fl, 4, MIG_REQ_REVERT, &fl[0], 0, why) == 409 && strstr(why, "(c3, b2)"));
    CHECK("revert: not even when asked to cascade", admit(fl, 4, MIG_REQ_REVERT, &fl[0], 1, why) == 409);

    CHECK("rollback: the newest at any time", admit(fl, 4, MIG_REQ_ROLLBACK, &fl[2], 0, why) == 0 &&
                                                  admit(fl, 4, MIG_REQ_ROLLBACK, &fl[3], 0, why) == 0);
    CHECK("rollback: one with migrations above it is refused naming them, newest first",
          admit(fl, 4, MIG_REQ_ROLLBACK, &fl[1], 0, why) == 409 && strstr(why, "(c3)") &&
              admit(fl, 4, MIG_REQ_ROLLBACK, &fl[0], 0, why) == 409 && strstr(why, "(c3, b2)"));
    CHECK("rollback: or rolls them back with it when asked", admit(fl, 4, MIG_REQ_ROLLBACK, &fl[0], 1, why) == 0);
    CHECK("rollback: a branch on other tables is not above anything", admit(fl, 4, MIG_REQ_ROLLBACK, &fl[3], 0, why) == 0);
    struct mig_flight gone = F("z0", NULL, MIG_PH_IDLE, USERS);
    CHECK("requests on a migration not in flight: 404", admit(fl, 4, MIG_REQ_COMPLETE, &gone, 0, why) == 404 &&
                                                            admit(fl, 4, MIG_REQ_ROLLBACK, &gone, 0, why) == 404);
    CHECK("status is never refused", admit(fl, 4, MIG_REQ_STATUS, &fl[1], 0, why) == 0);
}

static void test_seen(void)
{
    struct mig_flight fl[4] = {F("a1", "init", MIG_PH_ACTIVE, USERS), F("b2", "a1", MIG_PH_BACKFILLING, USERS),
                               F("c3", "b2", MIG_PH_EXPANDING, AUDIT), F("x9", "init", MIG_PH_ACTIVE, ORDERS)};
    CHECK("seen: a release that declares none sees the shape before every migration in flight",
          mig_flight_seen(fl, 4, NULL) == 0 && mig_flight_seen(fl, 4, "init") == 0);
    CHECK("seen: the first migration's release sees its shape only", mig_flight_seen(fl, 4, "a1") == 0x1);
    CHECK("seen: the second's sees both of its line", mig_flight_seen(fl, 4, "b2") == 0x3);
    CHECK("seen: the third's sees the three", mig_flight_seen(fl, 4, "c3") == 0x7);
    CHECK("seen: a branch's release sees its own and not the others'", mig_flight_seen(fl, 4, "x9") == 0x8);
    CHECK("seen: below is by parents only", mig_flight_below(fl, 4, &fl[0], &fl[2]) &&
                                                !mig_flight_below(fl, 4, &fl[2], &fl[0]) &&
                                                !mig_flight_below(fl, 4, &fl[3], &fl[2]) &&
                                                !mig_flight_below(fl, 4, &fl[1], &fl[1]));
    struct mig_flight loop[2] = {F("p", "q", MIG_PH_ACTIVE, USERS), F("q", "p", MIG_PH_ACTIVE, USERS)};
    CHECK("seen: a loop of parents ends", mig_flight_seen(loop, 2, "p") == 0x3);
}

static int has_tables(const char *json, const char *const *want, size_t nwant)
{
    char err[512];
    struct migration m;
    if (mig_parse(json, strlen(json), "t.json", &m, err, sizeof err) != 0) {
        printf("    parse: %s\n", err);
        mig_free(&m);
        return 0;
    }
    char **t = NULL;
    size_t n = 0;
    int ok = mig_flight_tables(&m, NULL, &t, &n) == 0 && n == nwant;
    for (size_t i = 0; ok && i < n; i++)
        ok = !strcmp(t[i], want[i]);
    for (size_t i = 0; i < n; i++)
        printf("    %s\n", t[i]);
    mig_flight_tables_free(t, n);
    mig_free(&m);
    return ok;
}

static void test_tables(void)
{
    static const char *const rename[] = {"public.users", "public.people"};
    CHECK("tables: a renamed table counts under both names",
          has_tables("{\"name\": \"t\", \"operations\": [{\"rename_table\": {"
                     " \"from\": \"users\", \"to\": \"people\"}}, {\"rename_column\": {\"table\": \"people\","
                     " \"from\": \"a\", \"to\": \"b\"}}]}", rename, 2));
    static const char *const fk[] = {"public.orders", "billing.accounts", "public.users"};
    CHECK("tables: the tables its foreign keys reference, each once",
          has_tables("{\"name\": \"t\", \"operations\": [{\"add_column\": {\"table\": \"orders\", \"column\":"
                     " {\"name\": \"acct\", \"type\": \"bigint\", \"references\": \"billing.accounts(id)\"}}},"
                     " {\"create_constraint\": {\"table\": \"orders\", \"name\": \"fk_u\", \"type\": \"foreign_key\","
                     " \"columns\": [\"user_id\"], \"references\": {\"table\": \"users\", \"columns\": [\"id\"]}}}]}",
                     fk, 3));
    static const char *const stmts[] = {"public.audit", "public.alembic_version", "app.t"};
    CHECK("tables: an sql step's plain statements name their tables, read by Postgres's parser",
          has_tables("{\"name\": \"t\", \"operations\": [{\"create_table\": {\"table\": \"audit\", \"columns\":"
                     " [{\"name\": \"id\", \"type\": \"int\", \"primary_key\": true}]}},"
                     " {\"sql\": {\"up\": \"UPDATE alembic_version SET v = 'b'; INSERT INTO app.t SELECT 1\","
                     " \"down\": \"UPDATE alembic_version SET v = 'a'\", \"on\": \"complete\"}}]}", stmts, 3));
    static const char *const any[] = {"public.audit", MIG_FLIGHT_EVERY_TABLE};
    CHECK("tables: a step that names no table stands for every one",
          has_tables("{\"name\": \"t\", \"operations\": [{\"create_table\": {\"table\": \"audit\", \"columns\":"
                     " [{\"name\": \"id\", \"type\": \"int\", \"primary_key\": true}]}},"
                     " {\"sql\": {\"up\": \"DO $$ BEGIN PERFORM 1; END $$\", \"down\": \"SELECT 1\"}}]}", any, 2));

    char why[512];
    static const char *const EVERY[] = {MIG_FLIGHT_EVERY_TABLE};
    struct mig_flight fl[1] = {F("a1", "init", MIG_PH_ACTIVE, EVERY)};
    struct mig_flight x9 = F("x9", "a1", MIG_PH_IDLE, ORDERS);
    const char *t = mig_flight_shared_table(&x9, &fl[0]);
    CHECK("tables: every table is shared with any migration, said as the other's table",
          t && !strcmp(t, "public.orders") && mig_flight_shared_table(&fl[0], &x9));
    struct mig_flight y = F("y", "init", MIG_PH_IDLE, ORDERS);
    CHECK("tables: so a sibling beside a step that names no table is refused",
          admit(fl, 1, MIG_REQ_START, &y, 0, why) == 409 && strstr(why, "which migration a1 in flight changes too"));
    struct mig_flight z = F("z", "init", MIG_PH_IDLE, AUDIT);
    CHECK("tables: disjoint tables share none", !mig_flight_shared_table(&z, &x9));
}

static int adds_only(const char *ops)
{
    char json[1024], err[512];
    snprintf(json, sizeof json, "{\"name\": \"t\", \"operations\": [%s]}", ops);
    struct migration m;
    int rc = mig_parse(json, strlen(json), "t.json", &m, err, sizeof err) == 0 ? mig_adds_only(&m) : -1;
    if (rc < 0)
        printf("    parse: %s\n", err);
    mig_free(&m);
    return rc;
}

static void test_adds_only(void)
{
    static const char *const add = "{\"add_column\": {\"table\": \"users\", \"up\": \"email IS NOT NULL\","
                                   " \"column\": {\"name\": \"verified\", \"type\": \"boolean\"}}}";
    static const char *const index = "{\"create_index\": {\"table\": \"users\", \"name\": \"u_v\","
                                     " \"columns\": [\"verified\"]}}";
    static const char *const table = "{\"create_table\": {\"table\": \"audit\", \"columns\":"
                                     " [{\"name\": \"id\", \"type\": \"int\", \"primary_key\": true}]}}";
    char all[768];
    snprintf(all, sizeof all, "%s, %s, %s", add, index, table);
    CHECK("adds only: add_column (with an up), create_index and create_table", adds_only(all) == 1);
    CHECK("adds only: not a rename, which keeps a second shape of the column",
          adds_only("{\"rename_column\": {\"table\": \"users\", \"from\": \"name\", \"to\": \"full_name\"}}")
              == 0);
    snprintf(all, sizeof all, "%s, {\"drop_column\": {\"table\": \"users\", \"column\": \"email\"}}", add);
    CHECK("adds only: not with a drop_column beside an add_column", adds_only(all) == 0);
    CHECK("adds only: not an sql step, which may do anything",
          adds_only("{\"sql\": {\"up\": \"CREATE INDEX i ON users (email)\", \"down\": \"DROP INDEX i\"}}") == 0);
}

int main(void)
{
    test_adds_only();
    test_start();
    test_order();
    test_seen();
    test_tables();
    return UNIT_RESULT();
}

/* Unit tests for the step-list machine (proxy/engine/step_run.c): the
 * statements it asks for, in order, for each kind of step list and each
 * outcome, with a fake clock. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expand_locks.h"
#include "step_run.h"
#include "unit.h"

static struct mig_step mk(const char *sql, enum mig_step_mode mode, int op, const char *cleanup)
{
    struct mig_step s = {(char *)sql, mode, op, (char *)cleanup};
    return s;
}

/* Runs the machine against a script: each line is what the next action
 * must be ("EXEC <sql>", "WAIT", "DONE", "FAILED"), and for EXEC lines the
 * outcome to report ("" ok, else "SQLSTATE message"). Returns 1 when it
 * all matched; *trace gets the first mismatch. */
struct line {
    const char *expect;
    const char *outcome; /* NULL or "": ok */
};

static double clock_ms;

static int follow(struct step_run *r, const struct line *script, size_t n, char *trace, size_t cap)
{
    for (size_t i = 0; i < n; i++) {
        struct step_action a = step_run_next(r, clock_ms);
        char got[512];
        if (a.kind == STEP_EXEC)
            snprintf(got, sizeof got, "EXEC %s", a.sql);
        else
            snprintf(got, sizeof got, "%s", a.kind == STEP_WAIT ? "WAIT" : a.kind == STEP_DONE ? "DONE" : "FAILED");
        if (strcmp(got, script[i].expect) != 0) {
            snprintf(trace, cap, "line %zu: expected [%s], got [%s]", i, script[i].expect, got);
            return 0;
        }
        clock_ms += 10;
        if (a.kind == STEP_WAIT) {
            clock_ms += (double)a.wait_ms;
            step_run_result(r, 1, NULL, NULL, clock_ms);
        } else if (a.kind == STEP_EXEC) {
            const char *o = script[i].outcome;
            if (o && o[0]) {
                char state[6];
                snprintf(state, sizeof state, "%.5s", o);
                step_run_result(r, 0, state, o + 6, clock_ms);
            } else {
                step_run_result(r, 1, NULL, NULL, clock_ms);
            }
        }
    }
    return 1;
}

#define BEGIN "EXEC BEGIN; SET LOCAL lock_timeout = '200ms'"
#define FOLLOW(name, r, script) do { \
    char trace[600] = ""; \
    int ok = follow(r, script, sizeof script / sizeof script[0], trace, sizeof trace); \
    if (!ok) printf("  %s\n", trace); \
    CHECK(name, ok); \
} while (0)

static void test_shared_transactions_and_a_concurrent_step(void)
{
    struct mig_step v[] = {mk("S1", MIG_STEP_TXN, 0, NULL), mk("S2", MIG_STEP_TXN, 1, NULL),
                           mk("IDX", MIG_STEP_ALONE, 2, NULL), mk("S4", MIG_STEP_TXN, 3, NULL)};
    struct mig_steps l = {v, 4, 4, 0};
    struct step_run r;
    step_run_init(&r, &l, STEPS_SHARED_TXN, 200, 3, 100, 1);
    static const struct line script[] = {
        {BEGIN, ""}, {"EXEC S1", ""}, {"EXEC S2", ""}, {"EXEC COMMIT", ""},
        {"EXEC SET lock_timeout = '2000ms'", ""}, {"EXEC IDX", ""}, {"EXEC RESET lock_timeout", ""},
        {BEGIN, ""}, {"EXEC S4", ""}, {"EXEC COMMIT", ""}, {"DONE", NULL}};
    FOLLOW("neighbours share a transaction; CONCURRENTLY runs alone with 10x lock_timeout", &r, script);
}

static void test_each_step_its_own_transaction(void)
{
    struct mig_step v[] = {mk("ADD", MIG_STEP_TXN, 0, NULL), mk("VALIDATE", MIG_STEP_TXN, 0, NULL)};
    struct mig_steps l = {v, 2, 2, 0};
    struct step_run r;
    step_run_init(&r, &l, STEPS_EACH, 200, 3, 100, 1);
    static const struct line script[] = {
        {BEGIN, ""}, {"EXEC ADD", ""}, {"EXEC COMMIT", ""},
        {BEGIN, ""}, {"EXEC VALIDATE", ""}, {"EXEC COMMIT", ""}, {"DONE", NULL}};
    FOLLOW("EACH: every step in its own transaction", &r, script);
}

static void test_lock_race_is_retried_then_commits(void)
{
    struct mig_step v[] = {mk("S1", MIG_STEP_TXN, 4, NULL)};
    struct mig_steps l = {v, 1, 1, 0};
    struct step_run r;
    step_run_init(&r, &l, STEPS_SHARED_TXN, 200, 3, 100, 1);
    clock_ms = 1000;
    static const struct line script[] = {
        {BEGIN, ""}, {"EXEC S1", "55P03 canceling statement due to lock timeout"}, {"EXEC ROLLBACK", ""},
        {"WAIT", NULL}, {BEGIN, ""}, {"EXEC S1", ""}, {"EXEC COMMIT", ""}, {"DONE", NULL}};
    FOLLOW("a lock timeout rolls back, waits, and tries again", &r, script);
    CHECK("the report counts both attempts", r.attempts == 2);
    CHECK("the lost attempt's time is lock wait", r.lock_wait_ms >= 20 && r.lock_wait_ms < 100);
    CHECK("total time covers both attempts", r.total_ms >= r.lock_wait_ms);
}

static void test_lock_races_give_up_after_the_attempts(void)
{
    struct mig_step v[] = {mk("S1", MIG_STEP_TXN, 4, NULL)};
    struct mig_steps l = {v, 1, 1, 0};
    struct step_run r;
    step_run_init(&r, &l, STEPS_SHARED_TXN, 200, 2, 100, 1);
    static const struct line script[] = {
        {BEGIN, ""}, {"EXEC S1", "55P03 lock timeout"}, {"EXEC ROLLBACK", ""}, {"WAIT", NULL},
        {BEGIN, ""}, {"EXEC S1", "55P03 lock timeout again"}, {"EXEC ROLLBACK", ""}, {"FAILED", NULL}};
    FOLLOW("lock races end after max_attempts, without a last useless wait", &r, script);
    CHECK("the failure names the operation and the last error",
          strcmp(r.error, "operations[4]: lock timeout again") == 0);
    CHECK("its sqlstate is kept", strcmp(r.sqlstate, "55P03") == 0);
}

static void test_other_errors_are_not_retried(void)
{
    struct mig_step v[] = {mk("S1", MIG_STEP_TXN, -1, NULL), mk("S2", MIG_STEP_TXN, 1, NULL)};
    struct mig_steps l = {v, 2, 2, 0};
    struct step_run r;
    step_run_init(&r, &l, STEPS_SHARED_TXN, 200, 5, 100, 1);
    static const struct line script[] = {
        {BEGIN, ""}, {"EXEC S1", ""}, {"EXEC S2", "42703 column \"x\" does not exist\n"}, {"EXEC ROLLBACK", ""},
        {"FAILED", NULL}};
    FOLLOW("a failing statement rolls back and fails at once", &r, script);
    CHECK("the message is trimmed and prefixed", strcmp(r.error, "operations[1]: column \"x\" does not exist") == 0);
}

static void test_index_build_is_cleaned_up_and_retried(void)
{
    struct mig_step v[] = {mk("CREATE INDEX CONCURRENTLY i", MIG_STEP_ALONE, 2, "DROP INDEX CONCURRENTLY i")};
    struct mig_steps l = {v, 1, 1, 0};
    struct step_run r;
    step_run_init(&r, &l, STEPS_SHARED_TXN, 200, 3, 100, 1);
    static const struct line script[] = {
        {"EXEC SET lock_timeout = '2000ms'", ""}, {"EXEC CREATE INDEX CONCURRENTLY i", "40P01 deadlock detected"},
        {"EXEC DROP INDEX CONCURRENTLY i", ""}, {"EXEC CREATE INDEX CONCURRENTLY i", ""},
        {"EXEC RESET lock_timeout", ""}, {"DONE", NULL}};
    FOLLOW("a failed index build is dropped and built once more", &r, script);

    step_run_init(&r, &l, STEPS_SHARED_TXN, 200, 3, 100, 1);
    static const struct line twice[] = {
        {"EXEC SET lock_timeout = '2000ms'", ""}, {"EXEC CREATE INDEX CONCURRENTLY i", "40P01 deadlock detected"},
        {"EXEC DROP INDEX CONCURRENTLY i", ""}, {"EXEC CREATE INDEX CONCURRENTLY i", "23505 could not create unique index"},
        {"EXEC DROP INDEX CONCURRENTLY i", ""}, {"EXEC RESET lock_timeout", ""}, {"FAILED", NULL}};
    FOLLOW("a second failure drops the invalid index again and fails", &r, twice);
    CHECK("with the retry's error", strcmp(r.error, "operations[2]: could not create unique index") == 0);

    struct mig_step plain[] = {mk("CREATE INDEX CONCURRENTLY j", MIG_STEP_ALONE, 3, NULL)};
    struct mig_steps l2 = {plain, 1, 1, 0};
    step_run_init(&r, &l2, STEPS_SHARED_TXN, 200, 3, 100, 1);
    static const struct line once[] = {
        {"EXEC SET lock_timeout = '2000ms'", ""}, {"EXEC CREATE INDEX CONCURRENTLY j", "42P07 exists"},
        {"EXEC RESET lock_timeout", ""}, {"FAILED", NULL}};
    FOLLOW("a step without a cleanup is not retried", &r, once);
}

static void test_rollback_keeps_going_and_reports_the_first_failure(void)
{
    struct mig_step v[] = {mk("D1", MIG_STEP_TXN, -1, NULL), mk("D2", MIG_STEP_TXN, -1, NULL),
                           mk("D3", MIG_STEP_TXN, -1, NULL)};
    struct mig_steps l = {v, 3, 3, 0};
    struct step_run r;
    step_run_init(&r, &l, STEPS_KEEP_GOING, 200, 3, 100, 1);
    static const struct line script[] = {
        {BEGIN, ""}, {"EXEC D1", ""}, {"EXEC COMMIT", ""},
        {BEGIN, ""}, {"EXEC D2", "XX000 first problem"}, {"EXEC ROLLBACK", ""},
        {BEGIN, ""}, {"EXEC D3", "XX000 second problem"}, {"EXEC ROLLBACK", ""},
        {"FAILED", NULL}};
    FOLLOW("every rollback step runs, one transaction each", &r, script);
    CHECK("the first failure is the one reported", strcmp(r.error, "first problem") == 0);
}

static void test_tail_joins_the_last_transaction(void)
{
    struct mig_step v[] = {mk("C1", MIG_STEP_TXN, 0, NULL), mk("C2", MIG_STEP_TXN, 1, NULL)};
    struct mig_steps l = {v, 2, 2, 0};
    struct step_run r;
    step_run_init(&r, &l, STEPS_SHARED_TXN, 200, 3, 100, 1);
    r.tail_sql = "UPDATE state";
    static const struct line script[] = {
        {BEGIN, ""}, {"EXEC C1", ""}, {"EXEC C2", ""}, {"EXEC UPDATE state", ""}, {"EXEC COMMIT", ""},
        {"DONE", NULL}};
    FOLLOW("the state update commits with the contract", &r, script);

    struct mig_steps empty = {NULL, 0, 0, 0};
    step_run_init(&r, &empty, STEPS_SHARED_TXN, 200, 3, 100, 1);
    r.tail_sql = "UPDATE state";
    static const struct line alone[] = {{BEGIN, ""}, {"EXEC UPDATE state", ""}, {"EXEC COMMIT", ""}, {"DONE", NULL}};
    FOLLOW("an empty contract still commits the state update", &r, alone);

    step_run_init(&r, &empty, STEPS_SHARED_TXN, 200, 3, 100, 1);
    static const struct line nothing[] = {{"DONE", NULL}};
    FOLLOW("an empty list without a tail is done at once", &r, nothing);
}

static void test_locks_run_first_in_each_transaction(void)
{
    struct mig_step v[] = {mk("S1", MIG_STEP_TXN, 0, NULL), mk("IDX", MIG_STEP_ALONE, 1, NULL),
                           mk("S3", MIG_STEP_TXN, 2, NULL)};
    struct mig_steps l = {v, 3, 3, 0};
    struct step_run r;
    step_run_init(&r, &l, STEPS_SHARED_TXN, 200, 3, 100, 1);
    r.lock_sql = "LOCKS";
    static const struct line script[] = {
        {BEGIN, ""}, {"EXEC LOCKS", "55P03 canceling statement due to lock timeout"}, {"EXEC ROLLBACK", ""},
        {"WAIT", NULL}, {BEGIN, ""}, {"EXEC LOCKS", ""}, {"EXEC S1", ""}, {"EXEC COMMIT", ""},
        {"EXEC SET lock_timeout = '2000ms'", ""}, {"EXEC IDX", ""}, {"EXEC RESET lock_timeout", ""},
        {BEGIN, ""}, {"EXEC LOCKS", ""}, {"EXEC S3", ""}, {"EXEC COMMIT", ""}, {"DONE", NULL}};
    FOLLOW("the locks open each transaction; one not granted in time is retried like a step's", &r, script);
}

/* The order expand_lock_sql writes: each table's LOCK, in the text. */
static const char *find_lock(const char *sql, const char *table_mode)
{
    return sql ? strstr(sql, table_mode) : NULL;
}

static void test_expand_locks_children_before_parents(void)
{
    static const char *json =
        "{\"name\": \"m\", \"operations\": ["
        "{\"rename_table\": {\"from\": \"user_temp\", \"to\": \"user\"}},"
        "{\"create_table\": {\"table\": \"audit\", \"columns\": [{\"name\": \"id\", \"type\": \"int\"}]}},"
        "{\"add_column\": {\"table\": \"application\", \"column\": {\"name\": \"spec\", \"type\": \"json\"}}},"
        "{\"create_constraint\": {\"table\": \"account\", \"name\": \"account_user_fk\", \"type\": \"foreign_key\","
        " \"columns\": [\"user_id\"], \"references\": {\"table\": \"user\", \"columns\": [\"id\"]}}},"
        "{\"create_constraint\": {\"table\": \"audit\", \"name\": \"audit_user_fk\", \"type\": \"foreign_key\","
        " \"columns\": [\"id\"], \"references\": {\"table\": \"user\", \"columns\": [\"id\"]}}},"
        "{\"create_index\": {\"table\": \"account\", \"name\": \"account_x\", \"columns\": [\"user_id\"]}}"
        "]}";
    struct migration m;
    char err[512] = "";
    if (mig_parse(json, strlen(json), "m.json", &m, err, sizeof err) != 0) {
        printf("  parse: %s\n", err);
        CHECK("the expand's locks: the migration parses", 0);
        return;
    }
    char *sql = expand_lock_sql(&m);
    const char *app = find_lock(sql, "\"public\".\"application\" IN ACCESS EXCLUSIVE MODE");
    const char *acct = find_lock(sql, "\"public\".\"account\" IN SHARE ROW EXCLUSIVE MODE");
    const char *user = find_lock(sql, "\"public\".\"user_temp\" IN ACCESS EXCLUSIVE MODE");
    CHECK("the expand's locks: the child's before its parent's (under its name before the rename)",
          app && acct && user && app < user && acct < user);
    CHECK("the expand's locks: a table the migration creates is not locked, nor one only indexed",
          sql && !strstr(sql, "audit") && !strstr(sql, "\"user\"") && !strstr(sql, "account_x"));
    CHECK("the expand's locks: a table missing at the time is skipped",
          sql && strstr(sql, "IF to_regclass('\"public\".\"account\"') IS NOT NULL THEN LOCK TABLE"));
    if (!sql || !app || !acct || !user)
        printf("  got: %s\n", sql ? sql : "(null)");
    free(sql);
    mig_free(&m);

    static const char *index_only = "{\"name\": \"i\", \"operations\": [{\"create_index\": {\"table\": \"t\","
                                    " \"name\": \"t_x\", \"columns\": [\"x\"]}}]}";
    if (mig_parse(index_only, strlen(index_only), "i.json", &m, err, sizeof err) == 0) {
        sql = expand_lock_sql(&m);
        CHECK("the expand's locks: none for an index built CONCURRENTLY alone", sql == NULL);
        free(sql);
        mig_free(&m);
    }
}

int main(void)
{
    test_shared_transactions_and_a_concurrent_step();
    test_each_step_its_own_transaction();
    test_lock_race_is_retried_then_commits();
    test_lock_races_give_up_after_the_attempts();
    test_other_errors_are_not_retried();
    test_index_build_is_cleaned_up_and_retried();
    test_rollback_keeps_going_and_reports_the_first_failure();
    test_tail_joins_the_last_transaction();
    test_locks_run_first_in_each_transaction();
    test_expand_locks_children_before_parents();
    return UNIT_RESULT();
}

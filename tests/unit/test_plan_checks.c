/* Unit tests of what the plan carries for complete's checks and for naming a
 * failed backfill row: alter_column's check is validated before the cutover
 * (not added inside the contract, not validated after it), and both survive
 * the plan's JSON round trip; plans stored without them still load. */
#include <stdlib.h>
#include <string.h>

#include "migration.h"
#include "migration_plan.h"
#include "unit.h"
#include "unit_steps.h"

static const char *ALTER_WITH_CHECK =
    "{\"name\": \"qty_positive\", \"operations\": ["
    " {\"rename_column\": {\"table\": \"items\", \"from\": \"note\", \"to\": \"remark\", \"copy\": true}},"
    " {\"alter_column\": {\"table\": \"items\", \"column\": \"qty\", \"type\": \"bigint\","
    "  \"up\": \"qty::bigint\", \"down\": \"qty::int\", \"check\": \"qty > 0\"}}]}";

static void test_check_runs_before_the_cutover(struct mig_plan *p)
{
    CHECK("one check before the cutover", p->nchecks == 1);
    if (p->nchecks != 1)
        return;
    const struct mig_check *k = &p->checks[0];
    CHECK("check names its operation", k->op_index == 1 && strstr(k->describe, "operations[1].alter_column"));
    CHECK("check is added NOT VALID while the shadow wears the column's name",
          strstr(k->add, "RENAME COLUMN \"_pgtandem_qty\" TO \"qty\"") &&
          strstr(k->add, "CHECK (qty > 0) NOT VALID") &&
          strstr(k->add, "RENAME COLUMN \"qty\" TO \"_pgtandem_qty\""));
    CHECK("check validation is a statement of its own", strstr(k->validate, "VALIDATE CONSTRAINT") != NULL);
    CHECK("violations read the new shape", strstr(k->violations, "\"pgtandem_qty_positive\".\"items\"") &&
          strstr(k->violations, "NOT (qty > 0)"));
    CHECK("a refusal drops the check", strstr(k->drop, "DROP CONSTRAINT IF EXISTS") != NULL);
    CHECK("contract does not add the check", !steps_contain(&p->contract, "ADD CONSTRAINT"));
    CHECK("contract validates it (a no-op by then)", steps_contain(&p->contract, "VALIDATE CONSTRAINT"));
    CHECK("nothing left for after the contract", p->post.n == 0);
    CHECK("rollback drops the check", steps_contain(&p->rollback, "DROP CONSTRAINT IF EXISTS"));
}

static void test_expressions_are_kept_apart(const struct mig_plan *p)
{
    CHECK("one backfill table with two expressions", p->nbf == 1 && p->bf[0].nexprs == 2);
    if (p->nbf != 1 || p->bf[0].nexprs != 2)
        return;
    const struct mig_bf_expr *x = &p->bf[0].exprs[1];
    CHECK("expression knows its operation and column",
          !strcmp(x->what, "operations[1].alter_column") && !strcmp(x->column, "_pgtandem_qty"));
    CHECK("expression as written", !strcmp(x->up, "qty::bigint") && strstr(x->pending, "\"_pgtandem_qty\" IS NULL"));
}

static void test_json_round_trip(const struct mig_plan *p)
{
    char err[256] = "";
    char *json = mig_plan_to_json(p);
    struct mig_plan back;
    int ok = json && mig_plan_from_json(json, &back, err, sizeof err) == 0;
    CHECK("plan with checks round-trips", ok);
    if (ok) {
        CHECK("checks survive", back.nchecks == 1 && !strcmp(back.checks[0].add, p->checks[0].add) &&
              !strcmp(back.checks[0].violations, p->checks[0].violations) && back.checks[0].op_index == 1);
        CHECK("expressions survive", back.nbf == 1 && back.bf[0].nexprs == 2 &&
              !strcmp(back.bf[0].exprs[1].pending, p->bf[0].exprs[1].pending));
        mig_plan_free(&back);
    }
    free(json);
}

static void test_older_plan_loads(void)
{
    const char *old =
        "{\"expand\": [], \"validate\": [], \"contract\": [{\"sql\": \"SELECT 1\", \"alone\": false, \"op\": 0}],"
        " \"post\": [], \"rollback\": [], \"version_schema\": \"\\\"pgtandem_x\\\"\","
        " \"backfill\": [{\"schema\": \"public\", \"name\": \"t\", \"qname\": \"\\\"public\\\".\\\"t\\\"\","
        "  \"pk\": [\"\\\"id\\\"\"], \"pk_types\": [\"bigint\"], \"set\": \"\\\"b\\\" = a\","
        "  \"pending\": \"b IS NULL\", \"est_rows\": 10}]}";
    char err[256] = "";
    struct mig_plan p;
    int ok = mig_plan_from_json(old, &p, err, sizeof err) == 0;
    CHECK("plan stored by an older version loads", ok);
    if (ok) {
        CHECK("it has no checks and no kept expressions", p.nchecks == 0 && p.nbf == 1 && p.bf[0].nexprs == 0);
        mig_plan_free(&p);
    }
}

int main(void)
{
    struct migration m;
    char err[512] = "";
    if (mig_parse(ALTER_WITH_CHECK, strlen(ALTER_WITH_CHECK), "t.json", &m, err, sizeof err) != 0) {
        printf("FAIL parse (%s)\n", err);
        return 1;
    }
    struct mig_plan p;
    int built = mig_plan_build(&m, NULL, &p, err, sizeof err) == 0;
    CHECK("offline plan builds", built);
    if (built) {
        test_check_runs_before_the_cutover(&p);
        test_expressions_are_kept_apart(&p);
        test_json_round_trip(&p);
        mig_plan_free(&p);
    }
    test_older_plan_loads();
    mig_free(&m);
    return UNIT_RESULT();
}

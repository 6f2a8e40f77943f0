/* libFuzzer target for the migration file parser and the offline plan
 * generator: any input must either parse into a plan or fail with a message,
 * never crash, leak or read out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "migration.h"
#include "migration_plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct migration m;
    char err[1024];
    if (mig_parse((const char *)data, size, "fuzz.json", &m, err, sizeof err) == 0) {
        struct mig_plan p;
        if (mig_plan_build(&m, NULL, &p, err, sizeof err) == 0) {
            char *json = mig_plan_to_json(&p);
            struct mig_plan back;
            if (json && mig_plan_from_json(json, &back, err, sizeof err) == 0)
                mig_plan_free(&back);
            free(json);
            mig_plan_free(&p);
        }
    }
    mig_free(&m);
    return 0;
}

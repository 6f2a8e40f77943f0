/* libFuzzer target for the SQL converter: any input must either convert into
 * a migration the engine's parser and plan generator take, or fail with a
 * "FILE:LINE:COL: ..." message; never crash, leak or read out of bounds. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "migration.h"
#include "migration_plan.h"
#include "sql_convert.h"

static int any_type(void *arg, const char *schema, const char *table, const char *column, char *type, size_t n)
{
    (void)arg; (void)schema; (void)table; (void)column;
    strncpy(type, "text", n);
    return 0;
}

/* A DO block's conditions and guarded objects: some there, some not, so
 * both the kept and the skipped statements reach the rest of the converter. */
static int some_there(void *arg, const char *select_sql, int *out, char *err, size_t errlen)
{
    (void)arg; (void)err; (void)errlen;
    *out = strlen(select_sql) % 2;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sqlc_options o = {.column_type = any_type, .catalog_bool = some_there};
    json_t *m = NULL;
    char err[2048];
    if (sqlc_convert("fuzz.sql", (const char *)data, size, &o, &m, err, sizeof err) != 0) {
        if (strncmp(err, "fuzz.sql:", 9) != 0)
            abort();    /* every refusal names the file and a position */
        return 0;
    }
    char *text = json_dumps(m, JSON_PRESERVE_ORDER);
    json_decref(m);
    struct migration mig;
    if (text && mig_parse(text, strlen(text), "fuzz.sql", &mig, err, sizeof err) == 0) {
        struct mig_plan p;
        if (mig_plan_build(&mig, NULL, &p, err, sizeof err) == 0)
            mig_plan_free(&p);
    }
    mig_free(&mig);
    free(text);
    return 0;
}

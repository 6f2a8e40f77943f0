/* Serialises a migration plan to JSON and back, so the plan computed at start
 * (against the pre-expand catalog) is what later phases execute, even from
 * another process after a crash. */
#include "migration_plan.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static json_t *steps_to_json(const struct mig_steps *l)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < l->n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:b, s:i, s:s?}", "sql", l->v[i].sql,
                                             "alone", l->v[i].mode == MIG_STEP_ALONE,
                                             "op", l->v[i].op_index, "cleanup", l->v[i].cleanup));
    return arr;
}

static json_t *strs_to_json(char *const *v, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_string(v[i]));
    return arr;
}

static json_t *exprs_to_json(const struct mig_bf_table *b)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < b->nexprs; i++)
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s}", "what", b->exprs[i].what, "column",
                                             b->exprs[i].column, "up", b->exprs[i].up, "pending",
                                             b->exprs[i].pending));
    return arr;
}

static json_t *bf_to_json(const struct mig_bf_table *b)
{
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:s, s:s, s:s?, s:o, s:f, s:b, s:b}", "schema", b->schema,
                     "name", b->name, "qname", b->qname, "pk", strs_to_json(b->pk, b->npk),
                     "pk_types", strs_to_json(b->pk_types, b->npk), "set", b->set_list,
                     "pending", b->pending, "mismatch", b->mismatch, "exprs", exprs_to_json(b),
                     "est_rows", b->est_rows, "deletes", b->deletes, "data", b->data);
}

static json_t *checks_to_json(const struct mig_plan *p)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < p->nchecks; i++) {
        const struct mig_check *k = &p->checks[i];
        json_array_append_new(arr, json_pack("{s:i, s:s, s:s, s:s, s:s, s:s}", "op", k->op_index,
                                             "describe", k->describe, "add", k->add, "validate", k->validate,
                                             "violations", k->violations, "drop", k->drop));
    }
    return arr;
}

char *mig_plan_to_json(const struct mig_plan *p)
{
    json_t *bf = json_array();
    for (size_t i = 0; i < p->nbf; i++)
        json_array_append_new(bf, bf_to_json(&p->bf[i]));
    json_t *root = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:s}", "expand", steps_to_json(&p->expand),
                             "validate", steps_to_json(&p->validate), "checks", checks_to_json(p),
                             "contract", steps_to_json(&p->contract), "post", steps_to_json(&p->post),
                             "rollback", steps_to_json(&p->rollback), "backfill", bf,
                             "version_schema", p->version_schema);
    char *out = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return out;
}

static int steps_from_json(json_t *arr, struct mig_steps *l)
{
    size_t i;
    json_t *v;
    if (!json_is_array(arr))
        return -1;
    json_array_foreach(arr, i, v) {
        const char *sql = json_string_value(json_object_get(v, "sql"));
        if (!sql)
            return -1;
        mig_steps_add(l, (int)json_integer_value(json_object_get(v, "op")),
                      json_is_true(json_object_get(v, "alone")) ? MIG_STEP_ALONE : MIG_STEP_TXN,
                      strdup(sql));
        const char *cleanup = json_string_value(json_object_get(v, "cleanup"));
        if (cleanup)
            mig_steps_set_cleanup(l, strdup(cleanup));
    }
    return l->oom ? -1 : 0;
}

static char *dup_key(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? strdup(s) : NULL;
}

/* Plans stored before the expressions were kept have none. */
static int exprs_from_json(json_t *arr, struct mig_bf_table *b)
{
    size_t n = json_array_size(arr);
    if (n == 0)
        return 0;
    b->exprs = calloc(n, sizeof *b->exprs);
    if (!b->exprs)
        return -1;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(arr, i);
        struct mig_bf_expr *x = &b->exprs[i];
        b->nexprs = i + 1;
        x->what = dup_key(v, "what");
        x->column = dup_key(v, "column");
        x->up = dup_key(v, "up");
        x->pending = dup_key(v, "pending");
        if (!x->what || !x->column || !x->up || !x->pending)
            return -1;
    }
    return 0;
}

static int bf_from_json(json_t *v, struct mig_bf_table *b)
{
    memset(b, 0, sizeof *b);
    b->schema = dup_key(v, "schema");
    b->name = dup_key(v, "name");
    b->qname = dup_key(v, "qname");
    b->set_list = dup_key(v, "set");
    b->pending = dup_key(v, "pending");
    b->mismatch = dup_key(v, "mismatch");
    b->est_rows = json_number_value(json_object_get(v, "est_rows"));
    b->deletes = json_is_true(json_object_get(v, "deletes")); /* plans stored before it never delete */
    b->data = json_is_true(json_object_get(v, "data"));
    if (exprs_from_json(json_object_get(v, "exprs"), b) != 0)
        return -1;
    json_t *pk = json_object_get(v, "pk"), *types = json_object_get(v, "pk_types");
    b->npk = json_array_size(pk);
    if (b->npk == 0 || b->npk != json_array_size(types))
        return -1;
    b->pk = calloc(b->npk, sizeof(char *));
    b->pk_types = calloc(b->npk, sizeof(char *));
    if (!b->pk || !b->pk_types)
        return -1;
    for (size_t k = 0; k < b->npk; k++) {
        const char *a = json_string_value(json_array_get(pk, k));
        const char *t = json_string_value(json_array_get(types, k));
        b->pk[k] = strdup(a ? a : "");
        b->pk_types[k] = strdup(t ? t : "");
    }
    return b->schema && b->name && b->qname && b->set_list && b->pending ? 0 : -1;
}

/* Plans stored before checks existed have none. */
static int checks_from_json(json_t *arr, struct mig_plan *p)
{
    size_t n = json_array_size(arr);
    if (n == 0)
        return 0;
    p->checks = calloc(n, sizeof *p->checks);
    if (!p->checks)
        return -1;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(arr, i);
        struct mig_check *k = &p->checks[i];
        p->nchecks = i + 1;
        k->op_index = (int)json_integer_value(json_object_get(v, "op"));
        k->describe = dup_key(v, "describe");
        k->add = dup_key(v, "add");
        k->validate = dup_key(v, "validate");
        k->violations = dup_key(v, "violations");
        k->drop = dup_key(v, "drop");
        if (!k->describe || !k->add || !k->validate || !k->violations || !k->drop)
            return -1;
    }
    return 0;
}

int mig_plan_from_json(const char *text, struct mig_plan *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    int rc = root ? 0 : -1;
    if (rc == 0)
        rc = steps_from_json(json_object_get(root, "expand"), &p->expand) |
             steps_from_json(json_object_get(root, "validate"), &p->validate) |
             steps_from_json(json_object_get(root, "contract"), &p->contract) |
             steps_from_json(json_object_get(root, "post"), &p->post) |
             steps_from_json(json_object_get(root, "rollback"), &p->rollback) |
             checks_from_json(json_object_get(root, "checks"), p);
    json_t *bf = root ? json_object_get(root, "backfill") : NULL;
    size_t n = json_array_size(bf);
    if (rc == 0 && n > 0) {
        p->bf = calloc(n, sizeof *p->bf);
        for (size_t i = 0; p->bf && i < n && rc == 0; i++) {
            p->nbf = i + 1;
            rc = bf_from_json(json_array_get(bf, i), &p->bf[i]);
        }
    }
    if (root)
        p->version_schema = dup_key(root, "version_schema");
    json_decref(root);
    if (rc != 0) {
        snprintf(err, errlen, "the stored plan is unreadable");
        mig_plan_free(p);
    }
    return rc;
}

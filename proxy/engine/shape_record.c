/* The record of what a migration touches, taken before its expand and
 * compared after its rollback: a rollback says "restored" only when it is.
 *
 * A rollback runs the steps the plan wrote for it; a step that was never
 * written (a statement run as written with no way back, a rename the plan
 * did not know of) leaves something behind and nothing notices. So the
 * start records, in the migration's row, every table its operations name
 * (under the names it has then; one that does not exist yet as absent)
 * with its columns in order, their types, defaults and NOT NULL, its
 * indexes, constraints, triggers and view text, the two shape schemas
 * of the migration (absent), and each enum type an add_enum_value names
 * with its values in order less the ones the migration adds: Postgres
 * cannot take a value back and a rollback keeps one added
 * (doc/migrations.md), but nothing else of the type may change. The
 * rollback takes the same record again and compares, line by line.
 *
 * What another migration does meanwhile to the same tables is not this
 * one's rollback's doing: when another started, completed or was rolled
 * back after this one started, the comparison is skipped and the log says
 * so. */
#include "shape_record.h"
#include "engine_checks.h"
#include "log.h"
#include "migration_names.h"
#include "migration_sql.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The record of the relations named in $1 (a JSON array of qualified,
 * quoted names) and the schemas named in $2 (the same, of schema names):
 * one line each, sorted, prefixed with the name as given. */
#define RECORD_SQL                                                                                                 \
    "SELECT coalesce(string_agg(r.n || ': ' || l.line, E'\\n' ORDER BY r.n || ': ' || l.line COLLATE \"C\"), '')" \
    " FROM (SELECT n, to_regclass(n) AS oid FROM jsonb_array_elements_text($1::jsonb) AS j(n)) r,"                 \
    " LATERAL (SELECT 'absent' WHERE r.oid IS NULL"                                                                \
    "  UNION ALL SELECT format('relation kind %s persistence %s replica identity %s%s', c.relkind,"                \
    "    c.relpersistence, c.relreplident, CASE WHEN c.relrowsecurity THEN ' row security' ELSE '' END)"          \
    "    FROM pg_class c WHERE c.oid = r.oid"                                                                      \
    "  UNION ALL SELECT format('column %s %s %s%s%s', lpad(x.pos::text, 4, '0'), quote_ident(x.attname), x.typ,"  \
    "    x.nn, x.dflt) FROM (SELECT row_number() OVER (ORDER BY a.attnum) AS pos, a.attname,"                      \
    "    format_type(a.atttypid, a.atttypmod) AS typ, CASE WHEN a.attnotnull THEN ' not null' ELSE '' END AS nn," \
    "    coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') AS dflt FROM pg_attribute a"               \
    "    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"                                  \
    "    WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped) x"                                      \
    "  UNION ALL SELECT 'index ' || pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE"         \
    "    ' (invalid)' END FROM pg_index i WHERE i.indrelid = r.oid"                                                \
    "  UNION ALL SELECT format('constraint %s %s%s', quote_ident(k.conname), pg_get_constraintdef(k.oid),"         \
    "    CASE WHEN k.convalidated THEN '' ELSE ' (not valid)' END) FROM pg_constraint k WHERE k.conrelid = r.oid"  \
    "  UNION ALL SELECT 'trigger ' || pg_get_triggerdef(t.oid) FROM pg_trigger t"                                  \
    "    WHERE t.tgrelid = r.oid AND NOT t.tgisinternal"                                                           \
    "  UNION ALL SELECT 'view ' || pg_get_viewdef(v.oid) FROM pg_class v"                                          \
    "    WHERE v.oid = r.oid AND v.relkind IN ('v', 'm')) l(line)"

#define SCHEMAS_SQL                                                                                                \
    "SELECT coalesce(string_agg('schema ' || s.n || ': absent', E'\\n' ORDER BY s.n COLLATE \"C\"), '')"          \
    " FROM jsonb_array_elements_text($2::jsonb) AS s(n)"                                                           \
    " WHERE NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s.n)"

/* $3: the enum types the migration adds values to, each with those values
 * ({"qualified name": [values]}); the values are left out of the line, so
 * a value kept by a rollback (or by an earlier one) matches. NULL when
 * there is none, so the record of a migration without one is as an
 * earlier release took it. */
#define ENUMS_SQL                                                                                                  \
    "SELECT nullif(coalesce(string_agg(e.n || ': ' || CASE WHEN to_regtype(e.n) IS NULL THEN 'absent'"             \
    "  ELSE 'enum ' || coalesce((SELECT string_agg(quote_literal(l.enumlabel), ', ' ORDER BY l.enumsortorder)"     \
    "  FROM pg_enum l WHERE l.enumtypid = to_regtype(e.n) AND NOT e.added ? l.enumlabel), '') END, E'\\n'"         \
    "  ORDER BY e.n COLLATE \"C\"), ''), '') FROM jsonb_each($3::jsonb) AS e(n, added)"

#define RECORD_NOW "(SELECT concat_ws(E'\\n', (" RECORD_SQL "), (" SCHEMAS_SQL "), (" ENUMS_SQL ")))"

static void add_name(json_t *names, const char *schema, const char *table)
{
    if (!table)
        return;
    char *q = mig_quote_qname(schema ? schema : "public", table);
    if (!q)
        return;
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v) {
        if (!strcmp(json_string_value(v), q)) {
            free(q);
            return;
        }
    }
    json_array_append_new(names, json_string(q));
    free(q);
}

/* "table(column)": the table part. */
static void add_reference(json_t *names, const char *schema, const char *ref)
{
    if (!ref)
        return;
    char table[128];
    size_t n = strcspn(ref, "(");
    snprintf(table, sizeof table, "%.*s", (int)(n < sizeof table - 1 ? n : sizeof table - 1), ref);
    add_name(names, schema, table);
}

/* The value an add_enum_value adds, under its type's quoted name. */
static void add_enum_value(json_t *enums, const struct mig_op *op)
{
    char *q = mig_quote_qname(op->schema ? op->schema : "public", op->name);
    if (!q || !op->value) {
        free(q);
        return;
    }
    json_t *vals = json_object_get(enums, q);
    if (!vals) {
        vals = json_array();
        json_object_set_new(enums, q, vals);
    }
    json_array_append_new(vals, json_string(op->value));
    free(q);
}

/* $1, $2 and $3 of the record's query, as JSON text; caller frees them. */
static int record_args(const struct migration *m, char **rels, char **schemas, char **enum_types)
{
    json_t *names = json_array(), *nsp = json_array(), *enums = json_object();
    for (size_t i = 0; names && enums && i < m->nops; i++) {
        const struct mig_op *op = &m->ops[i];
        if (op->kind == MIG_ADD_ENUM_VALUE)
            add_enum_value(enums, op);
        add_name(names, op->schema, op->table);
        if (op->kind == MIG_RENAME_TABLE) {
            add_name(names, op->schema, op->from);
            add_name(names, op->schema, op->to);
        }
        add_name(names, op->schema, op->ref_table);
        add_reference(names, op->schema, op->col.references);
        for (size_t k = 0; k < op->ncols; k++)
            add_reference(names, op->schema, op->cols[k].references);
        for (size_t k = 0; k < op->ncons; k++)
            add_name(names, op->schema, op->cons[k].ref_table);
    }
    char schema[80];
    mig_version_schema(m->name, schema, sizeof schema);
    json_array_append_new(nsp, json_string(schema));
    mig_old_schema(m->name, schema, sizeof schema);
    json_array_append_new(nsp, json_string(schema));
    *rels = names ? json_dumps(names, JSON_COMPACT) : NULL;
    *schemas = nsp ? json_dumps(nsp, JSON_COMPACT) : NULL;
    *enum_types = enums ? json_dumps(enums, JSON_COMPACT) : NULL;
    json_decref(names);
    json_decref(nsp);
    json_decref(enums);
    if (*rels && *schemas && *enum_types)
        return 0;
    free(*rels);
    free(*schemas);
    free(*enum_types);
    *rels = *schemas = *enum_types = NULL;
    return -1;
}

int shape_record_save(PGconn *conn, const struct migration *m, char *err, size_t errlen)
{
    char *rels, *schemas, *enums;
    if (record_args(m, &rels, &schemas, &enums) != 0)
        return snprintf(err, errlen, "out of memory"), -1;
    const char *v[4] = {rels, schemas, enums, m->name};
    PGresult *r = engine_exec_params(conn, "UPDATE pgtandem.migrations SET shape_before = " RECORD_NOW
                                           " WHERE name = $4", 4, v, err, errlen);
    free(rels);
    free(schemas);
    free(enums);
    PQclear(r);
    return r ? 0 : -1;
}

/* The lines of a that b lacks, each as "<sign> line", at most max of them,
 * into out; their number. Both are sorted the same way. */
static int lines_missing(const char *a, const char *b, char sign, struct mig_str *out, int max)
{
    int n = 0;
    for (const char *p = a; *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int found = 0;
        for (const char *q = b; *q && !found;) {
            const char *qe = strchr(q, '\n');
            size_t qlen = qe ? (size_t)(qe - q) : strlen(q);
            found = qlen == len && !memcmp(p, q, len);
            q = qe ? qe + 1 : q + qlen;
        }
        if (!found && len && n++ < max)
            mig_str_addf(out, "\n  %c %.*s", sign, (int)(len > 300 ? 300 : len), p);
        p = e ? e + 1 : p + len;
    }
    return n;
}

static int shape_record_check(PGconn *conn, const struct migration *m, char *diff, size_t difflen, char *err,
                              size_t errlen)
{
    char *rels, *schemas, *enums;
    if (record_args(m, &rels, &schemas, &enums) != 0)
        return snprintf(err, errlen, "out of memory"), -1;
    const char *v[4] = {rels, schemas, enums, m->name};
    PGresult *r = engine_exec_params(conn,
        "SELECT m.shape_before, " RECORD_NOW ","
        " (SELECT string_agg(o.name, ', ' ORDER BY o.name) FROM pgtandem.migrations o WHERE o.name <> m.name"
        "   AND (o.started_at > m.started_at OR o.completed_at > m.started_at OR o.rolled_back_at > m.started_at))"
        " FROM pgtandem.migrations m WHERE m.name = $4", 4, v, err, errlen);
    free(rels);
    free(schemas);
    free(enums);
    if (!r)
        return -1;
    int rc = SHAPE_RESTORED;
    if (PQntuples(r) != 1 || PQgetisnull(r, 0, 0)) {
        rc = SHAPE_NOT_RECORDED;  /* started by a release that took no record */
    } else if (!PQgetisnull(r, 0, 2)) {
        snprintf(diff, difflen, "%s", PQgetvalue(r, 0, 2));
        rc = SHAPE_OTHERS_MEANWHILE;
    } else if (strcmp(PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1)) != 0) {
        struct mig_str s = {0};
        int gone = lines_missing(PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), '-', &s, 8);
        int more = lines_missing(PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 0), '+', &s, 8);
        char *t = mig_str_take(&s);
        snprintf(diff, difflen, "%d line(s) of the record taken at start missing (-), %d new (+):%s", gone, more,
                 t ? t : "");
        free(t);
        rc = SHAPE_DIFFERS;
    }
    PQclear(r);
    return rc;
}

/* The tables the migration touched compared with the record its start
 * took, after the rollback's steps: "restored" is said only when they
 * match; a difference fails the rollback, naming it (its steps ran, and
 * the migration is rolled back all the same: nothing more would undo it). */
int shape_record_judge(PGconn *conn, const struct migration *m, int *check, char *others, size_t otherslen,
                       char *err, size_t errlen)
{
    char diff[1024] = "";
    int k = shape_record_check(conn, m, diff, sizeof diff, err, errlen);
    *check = k < 0 ? SHAPE_NOT_RECORDED : k;
    if (k < 0)
        log_warn("migration %s rolled back, but the record taken at start could not be read to check it: %s", m->name,
                 err);
    else if (k == SHAPE_RESTORED)
        log_info("migration %s rolled back: the tables it touched match the record taken at start", m->name);
    else if (k == SHAPE_NOT_RECORDED)
        log_info("migration %s rolled back; its start took no record to check it against (an earlier release)",
                 m->name);
    else if (k == SHAPE_OTHERS_MEANWHILE) {
        snprintf(others, otherslen, "%s", diff);
        log_info("migration %s rolled back; not compared with the record taken at start: %s changed the schema since",
                 m->name, diff);
    } else {
        snprintf(err, errlen, "migration %s rolled back, but what it touched is not as its start found it: %s; "
                 "put these back by hand (the rollback ran every step it has)", m->name, diff);
        return -1;
    }
    return 0;
}

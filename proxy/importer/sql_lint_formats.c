/* `migrate lint --format github|sarif`: the findings in the two forms a
 * pull request's checks show on the lines they are about, for the CI step
 * teams add first.
 *
 * github: one workflow command a finding, `::error file=F,line=L,col=C,
 * title=RULE::MESSAGE` (a finding that does not block is a `::warning`);
 * GitHub escapes %, CR and LF in the message and also `,` and `:` in the
 * properties, as its toolkit's command.ts does (escapeData,
 * escapeProperty).
 *
 * sarif: one SARIF 2.1.0 log, a run of the tool "pgtandem" whose rules
 * are the findings' rules, each result at its file's region
 * (code scanning's upload-sarif reads exactly these fields). */
#include "sql_lint.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "migration_sql.h"

/* GitHub's escapeData, and with props escapeProperty too. */
static void escaped(struct mig_str *s, const char *text, int props)
{
    for (const char *p = text ? text : ""; *p; p++) {
        if (*p == '%')
            mig_str_add(s, "%25");
        else if (*p == '\r')
            mig_str_add(s, "%0D");
        else if (*p == '\n')
            mig_str_add(s, "%0A");
        else if (props && *p == ':')
            mig_str_add(s, "%3A");
        else if (props && *p == ',')
            mig_str_add(s, "%2C");
        else
            mig_str_addf(s, "%c", *p);
    }
}

/* The message of a finding: why, then the online alternative. */
static char *message(const struct lint_finding *f)
{
    struct mig_str m = {0};
    mig_str_add(&m, f->why ? f->why : "");
    if (f->fix && *f->fix)
        mig_str_addf(&m, "\nOnline: %s", f->fix);
    if (f->statement && *f->statement)
        mig_str_addf(&m, "\nIn: %s", f->statement);
    return mig_str_take(&m);
}

void lint_report_github(const struct lint_report *r, FILE *out)
{
    for (size_t i = 0; i < r->n; i++) {
        const struct lint_finding *f = &r->v[i];
        struct mig_str s = {0};
        mig_str_addf(&s, "::%s file=", f->blocking ? "error" : "warning");
        escaped(&s, f->file, 1);
        if (f->line > 0)
            mig_str_addf(&s, ",line=%d,col=%d", f->line, f->col > 0 ? f->col : 1);
        mig_str_add(&s, ",title=");
        escaped(&s, f->rule, 1);
        mig_str_add(&s, "::");
        char *msg = message(f);
        escaped(&s, msg, 0);
        free(msg);
        char *line = mig_str_take(&s);
        fprintf(out, "%s\n", line ? line : "");
        free(line);
    }
}

char *lint_report_sarif(const struct lint_report *r)
{
    json_t *rules = json_array(), *results = json_array();
    for (size_t i = 0; i < r->n; i++) {
        const struct lint_finding *f = &r->v[i];
        size_t k, nrules = json_array_size(rules);
        for (k = 0; k < nrules; k++)
            if (!strcmp(json_string_value(json_object_get(json_array_get(rules, k), "id")), f->rule))
                break;
        if (k == nrules)
            json_array_append_new(rules, json_pack("{s:s, s:{s:s}}", "id", f->rule, "shortDescription", "text",
                                                   f->rule));
        char *msg = message(f);
        json_t *region = json_object();
        if (f->line > 0) {
            json_object_set_new(region, "startLine", json_integer(f->line));
            json_object_set_new(region, "startColumn", json_integer(f->col > 0 ? f->col : 1));
        }
        json_t *loc = json_pack("{s:{s:{s:s}}}", "physicalLocation", "artifactLocation", "uri", f->file ? f->file : "");
        if (f->line > 0)
            json_object_set_new(json_object_get(loc, "physicalLocation"), "region", region);
        else
            json_decref(region);
        json_array_append_new(results, json_pack("{s:s, s:i, s:s, s:{s:s}, s:[o]}", "ruleId", f->rule, "ruleIndex",
                                                 (int)k, "level", f->blocking ? "error" : "warning", "message",
                                                 "text", msg ? msg : "", "locations", loc));
        free(msg);
    }
    json_t *doc = json_pack("{s:s, s:s, s:[{s:{s:{s:s, s:o}}, s:o}]}", "$schema",
                            "https://json.schemastore.org/sarif-2.1.0.json", "version", "2.1.0", "runs", "tool",
                            "driver", "name", "pgtandem", "rules", rules, "results", results);
    char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    return text;
}

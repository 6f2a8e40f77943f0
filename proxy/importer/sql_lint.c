/* Lint rules for migration SQL. Each rule looks at one parsed statement and
 * says what running it as written does to a live application: the lock it
 * takes and for how long, or what the old release loses, and how to do the
 * same online (with pgtandem's operation for it). Tables created earlier in
 * the same script carry no traffic yet, so rules about locking them stay
 * quiet. */
#include "sql_lint.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql_convert.h"
#include "sql_dir.h"
#include "sql_script.h"

struct lint_ctx {
    struct sql_script *s;
    struct lint_report *r;
    char **created;         /* tables this script created */
    size_t ncreated;
    int converted;          /* a .sql file, which start converts (not a JSON sql operation, run as written) */
};

static const char *str_or(json_t *obj, const char *key, const char *dflt)
{
    const char *v = json_string_value(json_object_get(obj, key));
    return v ? v : dflt;
}

static char *first_line(const struct sql_script *s, const struct sql_stmt *st)
{
    size_t n = strcspn(s->text + st->start, "\n");
    if (n > st->end - st->start)
        n = st->end - st->start;
    int cut = n > 72;
    char *out = malloc(80);
    if (out)
        snprintf(out, 80, "%.*s%s", (int)(cut ? 72 : n), s->text + st->start, cut ? "..." : "");
    return out;
}

void lint_report_add(struct lint_report *r, const char *rule, const char *file, int line, int col,
                     const char *why, const char *fix, const char *statement)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 8;
        struct lint_finding *grown = realloc(r->v, cap * sizeof *grown);
        if (!grown)
            return;     /* out of memory: the finding is lost, never a crash */
        r->v = grown;
        r->cap = cap;
    }
    struct lint_finding *f = &r->v[r->n];
    f->rule = rule;
    f->file = strdup(file);
    f->line = line;
    f->col = col;
    f->blocking = 1;
    f->why = strdup(why);
    f->fix = fix;
    f->statement = strdup(statement);
    if (!f->file || !f->why || !f->statement) {
        free(f->file);
        free(f->why);
        free(f->statement);
        return;
    }
    r->n++;
    r->blocking++;
}

__attribute__((format(printf, 5, 6)))
static void report(struct lint_ctx *c, const struct sql_stmt *st, const char *rule, const char *fix,
                   const char *fmt, ...)
{
    char why[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    char *statement = first_line(c->s, st);
    if (statement)
        lint_report_add(c->r, rule, c->s->file, st->line, st->col, why, fix, statement);
    free(statement);
}

static int created_here(const struct lint_ctx *c, json_t *rel)
{
    const char *name = str_or(rel, "relname", "");
    for (size_t i = 0; i < c->ncreated; i++)
        if (!strcmp(c->created[i], name))
            return 1;
    return 0;
}

static void note_created(struct lint_ctx *c, json_t *rel)
{
    char **grown = realloc(c->created, (c->ncreated + 1) * sizeof *grown);
    if (!grown)
        return;
    c->created = grown;
    c->created[c->ncreated] = strdup(str_or(rel, "relname", ""));
    if (c->created[c->ncreated])
        c->ncreated++;
}

static int is_serial(json_t *type_name)
{
    json_t *names = json_object_get(type_name, "names");
    const char *t = sql_node_str(json_array_get(names, json_array_size(names) - 1));
    return t && (!strcmp(t, "serial") || !strcmp(t, "bigserial") || !strcmp(t, "smallserial") ||
                 !strcmp(t, "serial4") || !strcmp(t, "serial8") || !strcmp(t, "serial2"));
}

static void lint_add_column(struct lint_ctx *c, const struct sql_stmt *st, const char *table, json_t *def)
{
    const char *col = str_or(def, "colname", "?");
    int not_null = 0, has_default = 0;
    size_t i;
    json_t *node;
    json_array_foreach(json_object_get(def, "constraints"), i, node) {
        json_t *con = json_object_get(node, "Constraint");
        const char *ct = str_or(con, "contype", "");
        if (!strcmp(ct, "CONSTR_NOTNULL"))
            not_null = 1;
        if (!strcmp(ct, "CONSTR_DEFAULT")) {
            has_default = 1;
            if (sql_calls_volatile(json_object_get(con, "raw_expr")))
                report(c, st, "add-column-volatile-default",
                       "`pgtandem migrate start` runs it online as written (add_column with this default): the "
                       "column is added without it, the default set for new rows, existing rows filled in batches",
                       "ADD COLUMN \"%s\" with a volatile default rewrites \"%s\" under an ACCESS EXCLUSIVE lock: "
                       "every read and write waits for the whole rewrite", col, table);
        }
    }
    if (is_serial(json_object_get(def, "typeName")))
        report(c, st, "add-column-volatile-default",
               "add an integer column, attach a sequence with SET DEFAULT, and fill existing rows in batches",
               "ADD COLUMN \"%s\" of a serial type fills every row from a sequence: \"%s\" is rewritten under "
               "an ACCESS EXCLUSIVE lock", col, table);
    if (not_null && !has_default)
        report(c, st, "add-column-not-null-without-default",
               "add it nullable (or with a default), backfill, then SET NOT NULL (add_column with \"up\" and "
               "alter_column nullable:false)",
               "ADD COLUMN \"%s\" NOT NULL without a default fails on a table with rows, and the old release's "
               "INSERTs into \"%s\", which do not name it, fail", col, table);
}

static const char NOT_VALID_FIX[] = "ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT in its own transaction (create_constraint)";

static void lint_add_constraint(struct lint_ctx *c, const struct sql_stmt *st, const char *table, json_t *con)
{
    const char *ct = str_or(con, "contype", "");
    const char *name = str_or(con, "conname", "(unnamed)");
    if (json_is_true(json_object_get(con, "skip_validation")) || json_object_get(con, "indexname"))
        return;
    if (!strcmp(ct, "CONSTR_CHECK"))
        report(c, st, "constraint-without-not-valid", NOT_VALID_FIX,
               "ADD CONSTRAINT \"%s\" CHECK scans every row of \"%s\" under an ACCESS EXCLUSIVE lock: reads and "
               "writes wait for the scan", name, table);
    else if (!strcmp(ct, "CONSTR_FOREIGN"))
        report(c, st, "constraint-without-not-valid", NOT_VALID_FIX,
               "ADD CONSTRAINT \"%s\" FOREIGN KEY scans \"%s\" holding SHARE ROW EXCLUSIVE locks on both tables: "
               "writes to either wait for the scan", name, table);
    else if (!strcmp(ct, "CONSTR_UNIQUE") || !strcmp(ct, "CONSTR_PRIMARY"))
        report(c, st, "constraint-builds-index",
               "CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX (create_constraint unique)",
               "ADD CONSTRAINT \"%s\" builds a unique index on \"%s\" under an ACCESS EXCLUSIVE lock: reads and "
               "writes wait for the build", name, table);
}

static void lint_alter_cmd(struct lint_ctx *c, const struct sql_stmt *st, const char *table, json_t *cmd)
{
    const char *sub = str_or(cmd, "subtype", "");
    const char *col = str_or(cmd, "name", "?");
    json_t *def = json_object_get(cmd, "def");
    if (!strcmp(sub, "AT_AddColumn")) {
        lint_add_column(c, st, table, json_object_get(def, "ColumnDef"));
    } else if (!strcmp(sub, "AT_AlterColumnType")) {
        report(c, st, "alter-column-type",
               "alter_column (or rename_column) with type, up and down: a shadow column kept in sync by triggers, "
               "filled in batches, swapped in at complete",
               "ALTER COLUMN \"%s\" TYPE rewrites \"%s\" and its indexes under an ACCESS EXCLUSIVE lock (unless it "
               "only widens a varchar or numeric): reads and writes wait, and the old release gets the new type",
               col, table);
    } else if (!strcmp(sub, "AT_SetNotNull")) {
        report(c, st, "set-not-null",
               "ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT, then SET NOT NULL "
               "(Postgres 12+ skips the scan); alter_column nullable:false does this",
               "SET NOT NULL on \"%s\" scans every row of \"%s\" under an ACCESS EXCLUSIVE lock, and the old "
               "release's writes of NULL start failing", col, table);
    } else if (!strcmp(sub, "AT_AddConstraint")) {
        lint_add_constraint(c, st, table, json_object_get(def, "Constraint"));
    } else if (!strcmp(sub, "AT_DropColumn")) {
        report(c, st, "drop-column",
               "drop_column: the column stays for the old release until complete, and rollback restores it",
               "DROP COLUMN \"%s\": the old release's queries of \"%s\" that name it fail at once (42703), and its "
               "data is gone", col, table);
    }
}

/* A DO block, as `start` would read it but without a catalog: what it
 * refuses whatever the catalog holds (a loop, EXECUTE, a condition on a
 * table) is an error here, at the block; one it reads on the catalog is a
 * warning that its statements are known only with --db. */
static void lint_do(struct lint_ctx *c, const struct sql_stmt *st)
{
    size_t n = st->end - st->start, lines = (size_t)st->line - 1, cols = (size_t)st->col - 1;
    char *text = malloc(lines + cols + n + 1);
    if (!text)
        return;
    /* the block alone, where the file has it, so the converter's message points there */
    memset(text, '\n', lines);
    memset(text + lines, ' ', cols);
    memcpy(text + lines + cols, c->s->text + st->start, n);
    text[lines + cols + n] = '\0';
    struct sqlc_options o = {.types_stand_in = 1};
    json_t *m = NULL;
    char err[1500];
    int rc = sqlc_convert(c->s->file, text, lines + cols + n, &o, &m, err, sizeof err);
    json_decref(m);
    free(text);
    const char *why = rc != 0 ? strstr(err, "cannot read this DO block") : NULL;
    if (why) {
        const char *tail = strstr(why, "; pgtandem converts");
        report(c, st, "do-block", "write the statements out in the file: pgtandem converts a DO block only when "
               "it guards plain statements with IF [NOT] EXISTS over the catalog or EXCEPTION WHEN "
               "duplicate_object", "%.*s", (int)(tail ? (size_t)(tail - why) : strlen(why)), why);
        return;
    }
    size_t before = c->r->n;
    report(c, st, "do-block-reads-catalog", "`pgtandem migrate plan FILE --db URI` shows what it runs there; "
           "start converts those statements online like the file's others",
           "this DO block runs its statements by what the live catalog holds, so lint does not look into them");
    if (c->r->n > before) {     /* a note, not something that blocks */
        c->r->v[before].blocking = 0;
        c->r->blocking--;
    }
}

static void lint_statement(struct lint_ctx *c, const struct sql_stmt *st)
{
    const char *k = st->kind;
    json_t *b = st->body;
    json_t *rel = json_object_get(b, "relation");
    const char *table = str_or(rel, "relname", "?");
    if (!strcmp(k, "CreateStmt")) {
        note_created(c, rel);
    } else if (!strcmp(k, "IndexStmt")) {
        if (!json_is_true(json_object_get(b, "concurrent")) && !created_here(c, rel))
            report(c, st, "create-index-not-concurrently",
                   "CREATE INDEX CONCURRENTLY (create_index builds it that way)",
                   "CREATE INDEX without CONCURRENTLY holds a SHARE lock on \"%s\" for the whole build: every "
                   "INSERT, UPDATE and DELETE waits", table);
    } else if (!strcmp(k, "AlterTableStmt") && !created_here(c, rel)) {
        size_t i;
        json_t *cmd;
        json_array_foreach(json_object_get(b, "cmds"), i, cmd) {
            lint_alter_cmd(c, st, table, json_object_get(cmd, "AlterTableCmd"));
        }
    } else if (!strcmp(k, "RenameStmt")) {
        const char *what = str_or(b, "renameType", "");
        if (!strcmp(what, "OBJECT_COLUMN"))
            report(c, st, "rename-column",
                   "rename_column: both names work (dual-written) until complete",
                   "RENAME COLUMN \"%s\" of \"%s\": the old release's queries that name it fail at once (42703)",
                   str_or(b, "subname", "?"), table);
        else if (!strcmp(what, "OBJECT_TABLE"))
            report(c, st, "rename-table",
                   "rename_table: a view keeps the old name working until complete",
                   "RENAME of table \"%s\": the old release's queries of it fail at once (42P01)", table);
    } else if (!strcmp(k, "DropStmt") && !strcmp(str_or(b, "removeType", ""), "OBJECT_TABLE")) {
        report(c, st, "drop-table", "drop_table: dropped at complete, once the old release is gone",
               "DROP TABLE: the old release's queries of it fail at once (42P01), and its data is gone");
    } else if (!strcmp(k, "DropStmt") && !strcmp(str_or(b, "removeType", ""), "OBJECT_INDEX") &&
               !json_is_true(json_object_get(b, "concurrent"))) {
        report(c, st, "drop-index-not-concurrently", "DROP INDEX CONCURRENTLY (drop_index)",
               "DROP INDEX without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on its table: reads and writes "
               "wait behind any running query");
    } else if (!strcmp(k, "DoStmt") && c->converted) {
        lint_do(c, st);
    } else if (!strcmp(k, "LockStmt")) {
        report(c, st, "lock-table", "leave it out: pgtandem takes only short locks, with a lock_timeout",
               "LOCK TABLE blocks the application until the transaction ends");
    } else if (!strcmp(k, "ClusterStmt")) {
        report(c, st, "cluster", "pg_repack, or leave it out",
               "CLUSTER rewrites the table under an ACCESS EXCLUSIVE lock: every read and write waits");
    } else if (!strcmp(k, "VacuumStmt")) {
        size_t i;
        json_t *o;
        json_array_foreach(json_object_get(b, "options"), i, o) {
            if (!strcmp(str_or(json_object_get(o, "DefElem"), "defname", ""), "full"))
                report(c, st, "vacuum-full", "pg_repack, or plain VACUUM (autovacuum)",
                       "VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock: every read and write waits");
        }
    } else if (!strcmp(k, "ReindexStmt")) {
        int concurrent = 0;
        size_t i;
        json_t *o;
        json_array_foreach(json_object_get(b, "params"), i, o) {
            if (!strcmp(str_or(json_object_get(o, "DefElem"), "defname", ""), "concurrently"))
                concurrent = 1;
        }
        if (!concurrent)
            report(c, st, "reindex-not-concurrently", "REINDEX CONCURRENTLY (Postgres 12+), outside a transaction",
                   "REINDEX blocks writes to the table, and reads that use the index, for the whole rebuild");
    } else if (!strcmp(k, "TruncateStmt")) {
        report(c, st, "truncate", "delete in batches, or leave it to a later release",
               "TRUNCATE takes an ACCESS EXCLUSIVE lock and empties the table under the running application");
    } else if ((!strcmp(k, "UpdateStmt") || !strcmp(k, "DeleteStmt")) && !json_object_get(b, "whereClause") &&
               strcmp(table, "alembic_version") != 0) {
        report(c, st, "update-all-rows", "put the expression in add_column / alter_column \"up\": the backfill "
               "writes it in short batches",
               "%s of every row of \"%s\" in one transaction locks each row until it ends: the application's "
               "writes to them wait", !strcmp(k, "UpdateStmt") ? "UPDATE" : "DELETE", table);
    }
}

static int lint_text(const char *file, const char *text, size_t len, int converted, struct lint_report *r,
                     char *err, size_t errlen)
{
    struct sql_script s;
    if (sql_script_parse(&s, file, text, len, err, errlen) != 0) {
        sql_script_free(&s);
        return -1;
    }
    struct lint_ctx c = {.s = &s, .r = r, .converted = converted};
    for (size_t i = 0; i < s.nstmts; i++)
        lint_statement(&c, &s.stmts[i]);
    for (size_t i = 0; i < c.ncreated; i++)
        free(c.created[i]);
    free(c.created);
    sql_script_free(&s);
    return 0;
}

int sql_lint_text(const char *file, const char *text, size_t len, struct lint_report *r, char *err, size_t errlen)
{
    return lint_text(file, text, len, 1, r, err, errlen);
}

int sql_lint_file(const char *path, struct lint_report *r, char *err, size_t errlen)
{
    size_t n;
    char *buf = mig_read_file(path, &n, err, errlen);
    if (!buf)
        return -1;
    int rc = sql_lint_text(path, buf, n, r, err, errlen);
    free(buf);
    return rc;
}

int sql_lint_migration(const struct migration *m, struct lint_report *r, char *err, size_t errlen)
{
    for (size_t i = 0; i < m->nops; i++) {
        const struct mig_op *op = &m->ops[i];
        if (op->kind != MIG_SQL || !op->up)
            continue;
        char label[512];
        snprintf(label, sizeof label, "%s: operations[%d].sql", m->file ? m->file : "?", op->index);
        if (lint_text(label, op->up, strlen(op->up), 0, r, err, errlen) != 0)
            return -1;
    }
    return 0;
}

static int note_skipped(struct lint_report *r, const char *path, int line, char *err, size_t errlen)
{
    char **grown = realloc(r->skipped, (r->nskipped + 1) * sizeof *grown);
    char *note = NULL;
    if (grown)
        r->skipped = grown;
    if (!grown || asprintf(&note, "%s: skipped: a psql script (meta-command at line %d, where Postgres's parser "
                           "stops), not a migration", path, line) < 0) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    r->skipped[r->nskipped++] = note;
    return 0;
}

/* One file of a directory: a migration is linted, a psql script (seed
 * data, checks run by hand) is noted and left alone. */
static int lint_dir_file(const char *path, struct lint_report *r, int *skipped, char *err, size_t errlen)
{
    size_t n;
    char *buf = mig_read_file(path, &n, err, errlen);
    if (!buf)
        return -1;
    /* parsed a second time only when it does not parse as SQL */
    int rc = sql_lint_text(path, buf, n, r, err, errlen), line = rc != 0 ? sql_script_psql_line(buf, n) : 0;
    *skipped = line > 0;
    if (line > 0)
        rc = note_skipped(r, path, line, err, errlen);
    free(buf);
    return rc;
}

/* The directory's SQL migrations in their tool's layout and order
 * (sql_dir.h): a golang-migrate down or a Flyway undo file is not linted,
 * as it is not run. */
int sql_lint_dir(const char *dir, struct lint_report *r, size_t *nfiles, char *err, size_t errlen)
{
    *nfiles = 0;
    struct sql_dir d;
    if (sql_dir_read(dir, &d, err, errlen) != 0)
        return -1;
    int rc = sql_lint_dir_files(&d, r, nfiles, err, errlen);
    sql_dir_free(&d);
    return rc;
}

int sql_lint_dir_files(const struct sql_dir *d, struct lint_report *r, size_t *nfiles, char *err, size_t errlen)
{
    int rc = 0;
    size_t linted = 0;
    for (size_t i = 0; rc == 0 && i < d->n; i++) {
        int skipped = 0;
        rc = lint_dir_file(d->files[i].path, r, &skipped, err, errlen);
        linted += rc == 0 && !skipped;
    }
    *nfiles = linted;
    return rc;
}

void lint_report_print(const struct lint_report *r, FILE *out)
{
    for (size_t i = 0; i < r->nskipped; i++)
        fprintf(out, "lint: note: %s\n", r->skipped[i]);
    for (size_t i = 0; i < r->n; i++) {
        const struct lint_finding *f = &r->v[i];
        if (f->line > 0)
            fprintf(out, "%s:%d:%d: ", f->file, f->line, f->col);
        else
            fprintf(out, "%s: ", f->file);
        fprintf(out, "%s [%s] %s\n    in:     %s\n    online: %s\n", f->blocking ? "error" : "warning", f->rule,
                f->why, f->statement, f->fix);
    }
}

char *lint_report_json(const struct lint_report *r)
{
    json_t *doc = json_object(), *list = json_array();
    if (!doc || !list) {
        json_decref(doc);
        json_decref(list);
        return NULL;
    }
    for (size_t i = 0; i < r->n; i++) {
        const struct lint_finding *f = &r->v[i];
        json_t *o = json_object();
        json_object_set_new(o, "rule", json_string(f->rule));
        json_object_set_new(o, "file", json_string(f->file));
        json_object_set_new(o, "line", json_integer(f->line));
        json_object_set_new(o, "column", json_integer(f->col));
        json_object_set_new(o, "blocking", json_boolean(f->blocking));
        json_object_set_new(o, "why", json_string(f->why));
        json_object_set_new(o, "online_alternative", json_string(f->fix));
        json_object_set_new(o, "statement", json_string(f->statement));
        json_array_append_new(list, o);
    }
    json_object_set_new(doc, "findings", list);
    json_object_set_new(doc, "blocking", json_integer((json_int_t)r->blocking));
    if (r->nskipped) {
        json_t *skipped = json_array();
        for (size_t i = 0; i < r->nskipped; i++)
            json_array_append_new(skipped, json_string(r->skipped[i]));
        json_object_set_new(doc, "skipped", skipped);
    }
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(doc);
    return text;
}

void lint_report_free(struct lint_report *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].file);
        free(r->v[i].why);
        free(r->v[i].statement);
    }
    free(r->v);
    for (size_t i = 0; i < r->nskipped; i++)
        free(r->skipped[i]);
    free(r->skipped);
    memset(r, 0, sizeof *r);
}

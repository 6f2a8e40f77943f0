/* start|plan DIR --db and status DIR --db: the directory's tool stays in
 * charge of its history. The files its table counts as applied, and that
 * pgtandem did not run, are left out of the chain (not converted, not
 * checked against the catalog, not run again); the rest start as before,
 * and each start writes the tool's row (engine/tool_history.c). status
 * DIR lists each file as the tool and pgtandem see it. */
#include "migrate_cli_internal.h"
#include "migrate_tool.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine.h"
#include "file_read.h"
#include "migration_lifecycle.h"
#include "tool_files.h"

/* node-pg-migrate's numbered files are told by its table (public.pgmigrations). */
static enum tool_kind kind_of(PGconn *conn, enum sql_dir_layout layout)
{
    enum tool_kind k = tool_files_kind(layout);
    if (k != TOOL_NONE || layout != SQL_DIR_PLAIN)
        return k;
    PGresult *r = PQexec(conn, "SELECT to_regclass('public.pgmigrations') IS NOT NULL");
    int found = PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return found ? TOOL_NODE_PG_MIGRATE : TOOL_NONE;
}

/* pgtandem's status of name: -1 when it has no record. */
static int pgt_status(json_t *applied, const char *name)
{
    json_t *a = engine_applied_entry(applied, name);
    return a ? mig_status_of_word(json_string_value(json_object_get(a, "status"))) : -1;
}

/* Files pgtandem completed with no row in the tool's table (completed
 * before pgtandem wrote the tool's rows, or the row lost): a start writes
 * the row, finished, so the tool does not run them again. 0, or -1. */
static int adopt_completed(PGconn *conn, struct tool_history *th, json_t *applied, char *err, size_t errlen)
{
    for (size_t i = 0; i < th->n; i++) {
        struct tool_file *f = &th->f[i];
        if (f->state != TOOL_PENDING || pgt_status(applied, f->name) != MIG_ST_COMPLETED)
            continue;
        if (tool_history_started_one(conn, th, f->name, err, errlen) != 0 ||
            tool_history_completed(conn, f->name, err, errlen) != 0)
            return -1;
        f->state = TOOL_PGTANDEM;
        fprintf(stderr, "pgtandem migrate: %s was completed through pgtandem; its row in %s is written now, so %s "
                "does not run it again\n", f->name, tool_kind_table(th->kind), tool_kind_word(th->kind));
    }
    return 0;
}

/* The tool's history and pgtandem's, read on one connection. */
static int read_both(const struct cli *c, const struct sql_dir *d, struct tool_history *th, json_t **applied,
                     char *err, size_t errlen)
{
    struct engine e;
    *applied = NULL;
    int rc = migrate_cli_open_engine(c, &e, 0, err, errlen) == ENGINE_OK ? 0 : -1;
    if (rc != 0)
        return -1;
    /* a start first finishes what a proxy's complete left of the rows */
    if (c->opt.tool)
        rc = tool_history_catch_up(e.conn, err, errlen);
    if (rc == 0)
        rc = tool_files_read(c->file, d, kind_of(e.conn, d->layout), th, err, errlen);
    if (rc == 0)
        rc = tool_history_read(e.conn, th, err, errlen) != 0 ? -1 : 0;
    if (rc == 0)
        rc = engine_applied(&e, applied, err, errlen) == ENGINE_OK ? 0 : -1;
    if (rc == 0 && c->opt.tool)
        rc = adopt_completed(e.conn, th, *applied, err, errlen);
    engine_close(&e);
    if (rc != 0) {
        json_decref(*applied);
        *applied = NULL;
        tool_history_free(th);
    }
    return rc;
}

/* Applied by the tool and not pgtandem's to run: completed or in flight
 * in pgtandem, the file stays in the chain and pgtandem's checks apply. */
static int left_to_tool(const struct tool_file *f, json_t *applied)
{
    int st = pgt_status(applied, f->name);
    int mine = st == MIG_ST_COMPLETED || (st >= 0 && mig_status_in_progress((enum mig_status)st));
    return f->state == TOOL_APPLIED && !mine;
}

/* node-pg-migrate keeps a file's down in the same file, after a
 * "-- Down Migration" line (src/sqlMigration.ts, getActions: the regex
 * ^\s*--[\s-]*down\s+migration, any case); pgtandem would read it as part
 * of the migration, so a pending file with one is refused. 0, or -1 with
 * err. */
static int node_pg_down_section(const char *path, char *err, size_t errlen)
{
    size_t n = 0;
    char *text = file_read_all(path, "migration", 64u * 1024 * 1024, 0, &n, err, errlen);
    if (!text)
        return -1;
    int found = 0;
    for (char *line = text; line && *line && !found; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        char *p = line;
        while (*p == ' ' || *p == '\t' || *p == '\r')
            p++;
        if (p[0] != '-' || p[1] != '-')
            continue;
        p += 2;
        while (*p == ' ' || *p == '\t' || *p == '-')
            p++;
        found = !strncasecmp(p, "down", 4) && (p[4] == ' ' || p[4] == '\t') &&
                !strncasecmp(p + 4 + strspn(p + 4, " \t"), "migration", 9);
    }
    free(text);
    if (found)
        snprintf(err, errlen, "%s: a node-pg-migrate file with a \"-- Down Migration\" section; pgtandem would run "
                 "that section as part of the migration (its rollback is derived): move the down statements out of "
                 "the file (node-pg-migrate runs a file without one)", path);
    return found ? -1 : 0;
}

int migrate_tool_filter(const struct cli *c, struct sql_dir *d, char ***parents, char *err, size_t errlen)
{
    *parents = NULL;
    if (!c->db || d->n == 0)
        return 0;
    struct tool_history local = {0}, *th = c->opt.tool ? c->opt.tool : &local;
    json_t *applied;
    if (read_both(c, d, th, &applied, err, errlen) != 0)
        return -1;
    char **par = calloc(d->n + 1, sizeof *par);
    struct sql_dir_file *gone = calloc(d->n + 1, sizeof *gone);
    int rc = par && gone ? 0 : (snprintf(err, errlen, "out of memory"), -1);
    size_t kept = 0, skipped = 0;
    const char *last_kept = NULL;
    size_t i = 0;
    for (; rc == 0 && i < d->n; i++) {
        if (th->kind != TOOL_NONE && left_to_tool(&th->f[i], applied)) {
            gone[skipped++] = d->files[i];  /* freed after the loop: the next file's parent may be its name */
            continue;
        }
        if (th->kind == TOOL_NODE_PG_MIGRATE && th->f[i].state == TOOL_PENDING &&
            node_pg_down_section(d->files[i].path, err, errlen) != 0) {
            rc = -1;
            d->files[kept++] = d->files[i];  /* kept whole, to be freed with d */
            i++;
            break;
        }
        /* the chain pgtandem records goes on from its own last file; a
         * file the tool ran between (offline, after a rollback) is not in
         * it */
        const char *p = last_kept ? last_kept : i ? d->files[i - 1].name : c->parent;
        par[kept] = p ? strdup(p) : NULL;
        if (p && !par[kept])
            rc = (snprintf(err, errlen, "out of memory"), -1);
        last_kept = d->files[i].name;
        d->files[kept++] = d->files[i];
    }
    for (size_t k = 0; gone && k < skipped; k++) {
        free(gone[k].path);
        free(gone[k].name);
    }
    free(gone);
    json_decref(applied);
    enum tool_kind kind = th->kind;
    if (th == &local)
        tool_history_free(&local);
    if (rc != 0) {
        for (size_t k = 0; par && k < kept; k++)
            free(par[k]);
        free(par);
        /* the ones not looked at yet close the gap: d stays whole to free */
        memmove(d->files + kept, d->files + i, (d->n - i) * sizeof *d->files);
        d->n = kept + (d->n - i);
        return -1;
    }
    if (skipped)
        fprintf(stderr, "pgtandem migrate: %zu file(s) of %s applied by %s (its %s says so) are left to it; %zu "
                "file(s) of the directory are pgtandem's\n", skipped, c->file, tool_kind_word(kind),
                tool_kind_table(kind), kept);
    d->n = kept;
    *parents = par;
    return 0;
}

/* files: the directory's, f one of them; a file pgtandem ran merged into
 * a later one's migration (start DIR --merge) has no record of its own:
 * the first later file with one says its status. */
static const char *state_word(const struct tool_history *th, const struct tool_file *f, json_t *applied, char *buf,
                              size_t cap)
{
    int st = pgt_status(applied, f->name);
    const char *into = NULL;
    for (size_t j = th->kind != TOOL_NONE ? (size_t)(f - th->f) + 1 : th->n; st < 0 && f->state == TOOL_PGTANDEM &&
         j < th->n; j++)
        if ((st = pgt_status(applied, th->f[j].name)) >= 0)
            into = th->f[j].name;
    char merged[200] = "";
    if (into)
        snprintf(merged, sizeof merged, ", merged into %s", into);
    if (st >= 0 && mig_status_in_progress((enum mig_status)st))
        snprintf(buf, cap, "in flight in pgtandem (%s%s)", mig_status_word((enum mig_status)st), merged);
    else if (st == MIG_ST_COMPLETED)
        snprintf(buf, cap, "applied (completed through pgtandem%s)", merged);
    else if (f->state != TOOL_PENDING)
        snprintf(buf, cap, "applied by the tool");
    else
        snprintf(buf, cap, "pending");
    return buf;
}

int migrate_tool_status(const struct cli *c)
{
    char err[2048];
    struct sql_dir d;
    if (sql_dir_read(c->file, &d, err, sizeof err) != 0)
        return migrate_cli_report(EXIT_INVALID, err);
    struct tool_history th;
    json_t *applied = NULL;
    int rc = read_both(c, &d, &th, &applied, err, sizeof err) == 0 ? ENGINE_OK : ENGINE_FAILED;
    if (rc != ENGINE_OK) {
        sql_dir_free(&d);
        return migrate_cli_report(rc, err);
    }
    json_t *out = json_object(), *files = json_array();
    size_t pending = 0, flying = 0;
    for (size_t i = 0; i < d.n; i++) {
        char word[320];
        struct tool_file none = {.name = d.files[i].name, .state = TOOL_PENDING};
        const struct tool_file *f = th.kind != TOOL_NONE ? &th.f[i] : &none;
        const char *s = state_word(&th, f, applied, word, sizeof word);
        pending += !strcmp(s, "pending");
        flying += !strncmp(s, "in flight", 9);
        json_array_append_new(files, json_pack("{s:s, s:s, s:s}", "name", d.files[i].name, "state", s,
                                               "tool_table", th.kind != TOOL_NONE ? f->said : "-"));
    }
    json_object_set_new(out, "tool", json_string(tool_kind_word(th.kind)));
    json_object_set_new(out, "table", json_string(tool_kind_table(th.kind)));
    json_object_set_new(out, "table_exists", json_boolean(th.table));
    json_object_set_new(out, "files", files);
    json_object_set_new(out, "pending", json_integer((json_int_t)pending));
    json_object_set_new(out, "in_flight", json_integer((json_int_t)flying));
    if (c->json) {
        char *text = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", text ? text : "{}");
        free(text);
    } else {
        printf("directory: %s (%s)\n", c->file, sql_dir_layout_word(d.layout));
        if (th.kind != TOOL_NONE)
            printf("history:   %s, %s\n", tool_kind_table(th.kind), th.table ? "present" : "not created yet");
        size_t i;
        json_t *one;
        json_array_foreach(files, i, one) {
            printf("  %-40s %-36s %s\n", json_string_value(json_object_get(one, "name")),
                   json_string_value(json_object_get(one, "state")),
                   json_string_value(json_object_get(one, "tool_table")));
        }
        if (pending || flying)
            printf("%zu pending, %zu in flight in pgtandem\n", pending, flying);
        else
            printf("up to date\n");
    }
    json_decref(out);
    json_decref(applied);
    tool_history_free(&th);
    sql_dir_free(&d);
    return 0;
}

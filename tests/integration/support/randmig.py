"""Random migrations with Postgres as the oracle (issue 60): from a seed, a
small random base schema with rows and a random migration file written as
an ORM or a person writes SQL; the file runs offline on a twin (psql -1)
and online with `pgtandem migrate start FILE.sql`, then `complete` or
`rollback` by the seed, and the two ends are compared. A failing file is
shrunk statement by statement to the smallest that still fails the same
way.

With writers (Runner(..., writers=True), the bench's WRITERS=1), during a
migration that completes the old release inserts rows of the base's shape
directly and the new release rows of the file's shape with its version's
options; the twin takes the same rows before and after the file.

Used by tests/integration/test_random_migrations.py (a short seeded run in
`make test`, only the statement kinds the engine carries today) and by
bench/random_migrations.sh (all kinds, many files, a summary). Nothing here
is pytest-specific: `Runner` takes a Cluster and returns outcomes.

The generator keeps a small model of the schema (tables, columns, keys,
constraints, indexes, enums, views) and draws each statement against the
model as the statements before it left it, so that most files are valid;
a file Postgres refuses offline is counted as skipped, never as a failure.
"""
import copy
import difflib
import hashlib
import json
import os
import random
import re
import subprocess
import uuid

import psycopg

from .migrations import new_shape_options, run_pgtandem
from .pg import DUMP_NOISE, partition_foreign_keys, sort_table_columns

__all__ = ["ALL_KINDS", "KINDS_CARRIED_TODAY", "random_case", "Runner", "reason_of", "shrink_failure",
           "write_reproducer", "case_from_file", "RANDMIG_LEFTOVERS"]

# What a finished migration must not leave behind: the query of
# test_schema_fidelity.py's leftovers().
RANDMIG_LEFTOVERS = ("SELECT 'function ' || proname FROM pg_proc WHERE pronamespace = 'pgtandem'::regnamespace"
                     " UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger"
                     " WHERE NOT tgisinternal AND tgname LIKE 'pgtandem%'"
                     " UNION ALL SELECT 'invalid index ' || indexrelid::regclass::text FROM pg_index"
                     " WHERE NOT indisvalid")


def q(name):
    return '"%s"' % name


def lit(text):
    return "'%s'" % text.replace("'", "''")


# ---- the model ---------------------------------------------------------------

class Col:
    def __init__(self, name, typ, notnull=False, default=None, ident=None):
        self.name, self.typ, self.notnull, self.default, self.ident = name, typ, notnull, default, ident


class Table:
    def __init__(self, name):
        self.name = name
        self.cols = []
        self.pk = []            # column names
        self.pk_name = None
        self.cons = {}          # name -> (kind, [cols], extra)  kind: unique, check, fk
        self.indexes = {}       # name -> [cols]
        self.partitioned = False
        self.partitions = []    # partition table names
        self.key = None         # identity, serial, uuid, int, composite

    def col(self, name):
        for c in self.cols:
            if c.name == name:
                return c
        return None


class Model:
    def __init__(self):
        self.tables = {}
        self.enums = {}         # name -> [labels]
        self.views = {}         # name -> (table, [cols], materialized)
        self.relnames = set()   # every relation name (tables, indexes, views, sequences, partitions)
        self.connames = set()

    def pinned(self, table, col=None):
        """Whether a view reads the table (or the column)."""
        for t, cols, _ in self.views.values():
            if t == table and (col is None or col in cols):
                return True
        return False

    def referenced(self, table, col=None):
        """Whether another table's foreign key points at the table (column)."""
        for t in self.tables.values():
            for kind, cols, extra in t.cons.values():
                if kind == "fk" and extra[0] == table and (col is None or col in extra[1]) and t.name != table:
                    return True
        return False

    def fresh(self, rnd, stem):
        """A relation/constraint name not taken yet."""
        for i in range(100):
            n = stem if i == 0 else "%s_%d" % (stem, rnd.randrange(2, 99))
            n = n[:60]
            if n not in self.relnames and n not in self.connames and n not in self.tables and n not in self.enums:
                return n
        return stem + "_" + uuid.uuid4().hex[:6]


SCALARS = ["integer", "bigint", "text", "varchar(40)", "boolean", "numeric(10,2)", "jsonb", "uuid", "text[]",
           "integer[]", "timestamptz", "date"]


def value(typ, i, salt, model):
    """A literal of `typ` for row i, the same on every database."""
    if typ in ("integer", "bigint"):
        return str((i * 7 + len(salt)) % 97)
    if typ in ("text", "varchar(40)"):
        return lit("%s-%d" % (salt[:12], i))
    if typ == "boolean":
        return "true" if i % 2 else "false"
    if typ == "numeric(10,2)":
        return "%d.%02d" % (i % 50, (i * 13) % 100)
    if typ == "jsonb":
        return lit('{"k": %d, "s": "%s"}' % (i % 5, salt[:6]))
    if typ == "uuid":
        return lit(str(uuid.UUID(hashlib.md5(("%s%d" % (salt, i)).encode()).hexdigest())))
    if typ == "text[]":
        return "ARRAY[%s, %s]" % (lit("a%d" % (i % 3)), lit("b%d" % i))
    if typ == "integer[]":
        return "ARRAY[%d, %d]" % (i % 4, i)
    if typ == "timestamptz":
        return lit("2024-01-%02d 10:00:00+00" % (i % 28 + 1))
    if typ == "date":
        return lit("2024-02-%02d" % (i % 28 + 1))
    labels = model.enums.get(typ.strip('"'))
    if labels:
        return lit(labels[i % len(labels)])
    return "NULL"


WORDS = ["account", "note", "order", "item", "user", "team", "tag", "event", "ledger", "task", "memo", "Post",
         "Profile", "Invoice", "Session", "Comment"]
COLWORDS = ["title", "body", "status", "score", "amount", "label", "payload", "flags", "ref", "kind", "rank",
            "createdAt", "updatedAt", "email", "slug", "notes", "level", "meta", "code", "weight"]
ENUMS = [("mood", ["open", "closed", "held"]), ("Role", ["ADMIN", "USER", "GUEST"]),
         ("Priority", ["LOW", "MEDIUM", "HIGH", "URGENT"]), ("stage", ["draft", "live"])]


# ---- the base schema -----------------------------------------------------------

def make_base(rnd):
    """A random base schema: (SQL text, Model)."""
    m = Model()
    out = []
    for name, labels in rnd.sample(ENUMS, rnd.randint(1, 2)):
        m.enums[name] = list(labels)
        out.append("CREATE TYPE %s AS ENUM (%s);" % (q(name), ", ".join(lit(x) for x in labels)))
    ntables = rnd.randint(3, 6)
    names = rnd.sample(WORDS, ntables)
    keys = ["identity", "serial", "uuid", "int", "composite"]
    partitioned_done = False
    for ti, tname in enumerate(names):
        t = Table(tname)
        key = keys[ti] if ti < len(keys) else rnd.choice(keys[:4])
        if not partitioned_done and ti == ntables - 1 and rnd.random() < 0.7:
            key = "partitioned"
        t.key = key
        defs = []
        if key == "identity":
            t.cols.append(Col("id", "bigint", True, None, "identity"))
            defs.append('"id" bigint GENERATED BY DEFAULT AS IDENTITY')
            t.pk = ["id"]
        elif key == "serial":
            t.cols.append(Col("id", "integer", True, "nextval", "serial"))
            defs.append('"id" serial')
            t.pk = ["id"]
            m.relnames.add("%s_id_seq" % tname)
        elif key == "uuid":
            t.cols.append(Col("id", "uuid", True, "gen_random_uuid()"))
            defs.append('"id" uuid NOT NULL DEFAULT gen_random_uuid()')
            t.pk = ["id"]
        elif key == "int":
            t.cols.append(Col("id", "integer", True))
            defs.append('"id" integer NOT NULL')
            t.pk = ["id"]
        elif key == "composite":
            t.cols += [Col("a", "integer", True), Col("b", "integer", True)]
            defs += ['"a" integer NOT NULL', '"b" integer NOT NULL']
            t.pk = ["a", "b"]
        else:
            t.cols += [Col("id", "bigint", True), Col("at", "date", True)]
            defs += ['"id" bigint NOT NULL', '"at" date NOT NULL']
            t.pk = ["id", "at"]
            t.partitioned = True
            partitioned_done = True
        for cname in rnd.sample(COLWORDS, rnd.randint(2, 5)):
            typ = rnd.choice(SCALARS + [q(e) for e in m.enums])
            c = Col(cname, typ)
            if rnd.random() < 0.3:
                c.notnull = True
            if rnd.random() < 0.25 and typ in ("integer", "text", "boolean", "bigint"):
                c.default = {"integer": "0", "bigint": "0", "text": "''", "boolean": "false"}[typ]
            t.cols.append(c)
            defs.append("%s %s%s%s" % (q(cname), typ, " NOT NULL" if c.notnull else "",
                                       " DEFAULT " + c.default if c.default else ""))
        t.pk_name = "%s_pkey" % tname
        defs.append("CONSTRAINT %s PRIMARY KEY (%s)" % (q(t.pk_name), ", ".join(q(c) for c in t.pk)))
        m.relnames.add(t.pk_name)
        m.connames.add(t.pk_name)
        # a self-referencing foreign key on single-column keys
        if key in ("identity", "int", "serial") and rnd.random() < 0.5:
            ptype = "bigint" if key == "identity" else "integer"
            t.cols.append(Col("parentId", ptype))
            defs.append('"parentId" %s' % ptype)
            fk = "%s_parentId_fkey" % tname
            defs.append("CONSTRAINT %s FOREIGN KEY (\"parentId\") REFERENCES %s (\"id\") ON DELETE SET NULL"
                        % (q(fk), q(tname)))
            t.cons[fk] = ("fk", ["parentId"], (tname, ["id"]))
            m.connames.add(fk)
        # foreign keys to tables made before (single or composite)
        for other in list(m.tables.values()):
            if other.partitioned or rnd.random() < 0.5:
                continue
            cols = []
            for pc in other.pk:
                ptype = other.col(pc).typ
                ptype = "integer" if ptype == "serial" else ptype
                cn = "%s_%s" % (other.name.lower(), pc)
                if t.col(cn):
                    cols = []
                    break
                cols.append((cn, ptype))
            if not cols:
                continue
            for cn, ptype in cols:
                t.cols.append(Col(cn, ptype))
                defs.append("%s %s" % (q(cn), ptype))
            fk = m.fresh(rnd, "%s_%s_fkey" % (tname, cols[0][0]))
            ondel = rnd.choice(["", " ON DELETE CASCADE", " ON DELETE SET NULL"])
            defs.append("CONSTRAINT %s FOREIGN KEY (%s) REFERENCES %s (%s)%s" % (
                q(fk), ", ".join(q(c) for c, _ in cols), q(other.name), ", ".join(q(c) for c in other.pk), ondel))
            t.cons[fk] = ("fk", [c for c, _ in cols], (other.name, list(other.pk)))
            m.connames.add(fk)
        tail = " PARTITION BY RANGE (\"at\")" if t.partitioned else ""
        out.append("CREATE TABLE %s (\n    %s\n)%s;" % (q(tname), ",\n    ".join(defs), tail))
        if t.partitioned:
            for pi, (lo, hi) in enumerate([("2024-01-01", "2024-02-01"), ("2024-02-01", "2025-01-01")]):
                pn = "%s_p%d" % (tname, pi)
                t.partitions.append(pn)
                m.relnames.add(pn)
                out.append("CREATE TABLE %s PARTITION OF %s FOR VALUES FROM ('%s') TO ('%s');"
                           % (q(pn), q(tname), lo, hi))
        m.tables[tname] = t
        m.relnames.add(tname)
    # rows: parents first, in creation order; the keys the children point at exist
    for t in m.tables.values():
        n = rnd.randint(20, 50)
        t.nrows = n
        cols = [c for c in t.cols if c.ident is None]
        vals = []
        for i in range(1, n + 1):
            row = []
            for c in cols:
                row.append(base_value(m, t, c, i))
            vals.append("(%s)" % ", ".join(row))
        out.append("INSERT INTO %s (%s) VALUES\n  %s;" % (q(t.name), ", ".join(q(c.name) for c in cols),
                                                         ",\n  ".join(vals)))
    # uniques, checks and indexes (partial and expression ones)
    for t in m.tables.values():
        texts = [c for c in t.cols if c.typ in ("text", "varchar(40)") and c.name not in t.pk]
        nums = [c for c in t.cols if c.typ in ("integer", "bigint", "numeric(10,2)") and c.name not in t.pk
                and not is_fk_col(t, c.name)]
        if texts and rnd.random() < 0.6:
            c = rnd.choice(texts)
            n = m.fresh(rnd, "%s_%s_key" % (t.name, c.name))
            cols = [c.name] + (t.pk if t.partitioned else [])
            out.append("ALTER TABLE %s ADD CONSTRAINT %s UNIQUE (%s);"
                       % (q(t.name), q(n), ", ".join(q(x) for x in cols)))
            t.cons[n] = ("unique", cols, None)
            m.connames.add(n)
            m.relnames.add(n)
        if nums and rnd.random() < 0.6:
            c = rnd.choice(nums)
            n = m.fresh(rnd, "%s_%s_check" % (t.name, c.name))
            out.append("ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s >= 0);" % (q(t.name), q(n), q(c.name)))
            t.cons[n] = ("check", [c.name], None)
            m.connames.add(n)
        if texts and rnd.random() < 0.6:
            c = rnd.choice(texts)
            n = m.fresh(rnd, "%s_%s_lower_idx" % (t.name, c.name))
            out.append("CREATE INDEX %s ON %s (lower(%s));" % (q(n), q(t.name), q(c.name)))
            t.indexes[n] = [c.name]
            m.relnames.add(n)
        other = [c for c in t.cols if c.name not in t.pk and c.typ in ("integer", "bigint", "text", "boolean",
                                                                          "date", "timestamptz")]
        if other and rnd.random() < 0.6:
            c = rnd.choice(other)
            n = m.fresh(rnd, "%s_%s_idx" % (t.name, c.name))
            where = " WHERE %s IS NOT NULL" % q(c.name) if rnd.random() < 0.5 else ""
            out.append("CREATE INDEX %s ON %s (%s)%s;" % (q(n), q(t.name), q(c.name), where))
            t.indexes[n] = [c.name]
            m.relnames.add(n)
    # a view and a materialized view over tables
    plain = [t for t in m.tables.values() if not t.partitioned]
    for materialized in (False, True):
        t = rnd.choice(plain)
        cols = t.pk + [c.name for c in rnd.sample(t.cols, min(2, len(t.cols))) if c.name not in t.pk]
        vn = m.fresh(rnd, "%s_%s" % (t.name.lower(), "summary" if materialized else "view"))
        out.append("CREATE %sVIEW %s AS SELECT %s FROM %s;" % ("MATERIALIZED " if materialized else "", q(vn),
                                                              ", ".join(q(c) for c in cols), q(t.name)))
        m.views[vn] = (t.name, cols, materialized)
        m.relnames.add(vn)
    return "\n".join(out) + "\n", m


def is_fk_col(t, col):
    return any(kind == "fk" and col in cols for kind, cols, _ in t.cons.values())


def base_value(m, t, c, i):
    for kind, cols, extra in t.cons.values():
        if kind == "fk" and c.name in cols:
            parent = m.tables[extra[0]]
            if parent.name == t.name:
                return "NULL" if i == 1 or i % 3 == 0 else str((i - 1) // 2 or 1)
            j = (i % parent.nrows) + 1 if hasattr(parent, "nrows") else 1
            pc = extra[1][cols.index(c.name)]
            return base_key(parent, pc, j)
    if c.name in t.pk:
        return base_key(t, c.name, i)
    if not c.notnull and i % 5 == 0:
        return "NULL"
    return value(c.typ, i, "%s.%s" % (t.name, c.name), m)


def base_key(t, col, i):
    """The key of row i of `t` (identity and serial rows count from 1)."""
    if t.key == "uuid":
        return lit(str(uuid.UUID(hashlib.md5(("%s%d" % (t.name, i)).encode()).hexdigest())))
    if t.key == "composite":
        return str(i) if col == "a" else str(i % 3)
    if t.key == "partitioned":
        return str(i) if col == "id" else lit("2024-%02d-%02d" % (1 + i % 2, i % 28 + 1))
    return str(i)


# ---- statements ------------------------------------------------------------------

# Every kind the generator can draw. Sequences (several dependent statements
# in one file) are kinds of their own.
ALL_KINDS = [
    "add_column", "drop_column", "rename_column", "retype", "retype_using", "set_not_null", "drop_not_null",
    "set_default", "drop_default", "add_check", "add_unique", "add_fk", "drop_constraint", "rename_constraint",
    "create_index", "create_index_concurrently", "drop_index", "drop_index_concurrently", "rename_index",
    "create_table", "drop_table", "rename_table", "create_enum", "rename_enum", "add_enum_value",
    "prisma_enum_recreate", "update", "insert_select", "delete", "do_if_not_exists", "do_exception",
    "seq_rename_then_reuse", "seq_rename_twice", "seq_drop_readd", "seq_table_rename_children",
    "seq_type_created_then_used", "seq_retype_and_build",
]

# The kinds `make test` draws: those the engine carries today with no
# failure (found by running bench/random_migrations.sh; see
# doc/benchmarks.md). The others fail today and are being fixed: drawn only
# by the bench, where their failures are shrunk.
KINDS_CARRIED_TODAY = None  # filled in below, after the generators


def pick_table(rnd, m, pred=lambda t: True):
    ts = [t for t in m.tables.values() if pred(t)]
    return rnd.choice(ts) if ts else None


def pick_col(rnd, t, pred=lambda c: True):
    cs = [c for c in t.cols if pred(c)]
    return rnd.choice(cs) if cs else None


def plain_col(m, t):
    """Columns a statement may change freely: no key, no foreign key, no view,
    no partition key, no identity."""
    return lambda c: (c.name not in t.pk and not is_fk_col(t, c.name) and not m.pinned(t.name, c.name)
                      and c.ident is None and not m.referenced(t.name, c.name))


def fresh_col(rnd, t):
    for _ in range(20):
        n = rnd.choice(COLWORDS + ["extra", "note2", "flag", "archivedAt", "version"])
        if rnd.random() < 0.3:
            n += str(rnd.randint(2, 9))
        if not t.col(n):
            return n
    return "c" + uuid.uuid4().hex[:5]


def drop_col_refs(m, t, col):
    for n, (kind, cols, _) in list(t.cons.items()):
        if col in cols:
            del t.cons[n]
            m.connames.discard(n)
            m.relnames.discard(n)
    for n, cols in list(t.indexes.items()):
        if col in cols:
            del t.indexes[n]
            m.relnames.discard(n)


def rename_col_refs(m, t, old, new):
    for n, (kind, cols, extra) in list(t.cons.items()):
        t.cons[n] = (kind, [new if c == old else c for c in cols], extra)
    for n, cols in list(t.indexes.items()):
        t.indexes[n] = [new if c == old else c for c in cols]
    t.pk = [new if c == old else c for c in t.pk]
    for ot in m.tables.values():
        for n, (kind, cols, extra) in list(ot.cons.items()):
            if kind == "fk" and extra[0] == t.name:
                ot.cons[n] = (kind, cols, (extra[0], [new if c == old else c for c in extra[1]]))


def g_add_column(rnd, m):
    t = pick_table(rnd, m)
    name = fresh_col(rnd, t)
    typ = rnd.choice(SCALARS + [q(e) for e in m.enums])
    c = Col(name, typ)
    extra = ""
    r = rnd.random()
    if r < 0.3 and typ in ("integer", "bigint", "text", "boolean", "varchar(40)"):
        c.default = {"integer": "0", "bigint": "0", "text": "'none'", "boolean": "false", "varchar(40)": "'x'"}[typ]
        extra = " DEFAULT " + c.default
        if rnd.random() < 0.5:
            c.notnull = True
            extra = " NOT NULL" + extra
    elif r < 0.4 and typ == "jsonb":
        c.default = "'{}'::jsonb"
        extra = " DEFAULT '{}'::jsonb"
    t.cols.append(c)
    return ["ALTER TABLE %s ADD COLUMN %s %s%s" % (q(t.name), q(name), typ, extra)]


def g_drop_column(rnd, m):
    t = pick_table(rnd, m)
    c = pick_col(rnd, t, plain_col(m, t))
    if not c:
        return None
    t.cols.remove(c)
    drop_col_refs(m, t, c.name)
    return ["ALTER TABLE %s DROP COLUMN %s" % (q(t.name), q(c.name))]


def g_rename_column(rnd, m):
    t = pick_table(rnd, m, lambda t: not t.partitioned)
    if not t:
        return None
    c = pick_col(rnd, t, lambda c: c.ident is None and c.name not in t.pk)
    if not c:
        return None
    new = fresh_col(rnd, t)
    old = c.name
    c.name = new
    rename_col_refs(m, t, old, new)
    for vn, (vt, cols, mat) in m.views.items():
        if vt == t.name and old in cols:
            # the view keeps its output name: it now reads `new` under `old`; no longer tracked by name
            m.views[vn] = (vt, [x for x in cols if x != old] + [new], mat)
    return ["ALTER TABLE %s RENAME COLUMN %s TO %s" % (q(t.name), q(old), q(new))]


RETYPES = {
    # from: [(to, using or None)]
    "integer": [("bigint", None), ("text", None), ("numeric(10,2)", None), ("bigint", "{c}::bigint")],
    "bigint": [("numeric(20,0)", None), ("text", "{c}::text")],
    "text": [("varchar(200)", None), ("jsonb", "to_jsonb({c})"), ("varchar(200)", "{c}::varchar(200)")],
    "varchar(40)": [("text", None), ("varchar(80)", None)],
    "boolean": [("text", "{c}::text"), ("integer", "CASE WHEN {c} THEN 1 ELSE 0 END")],
    "numeric(10,2)": [("numeric(12,2)", None), ("text", None), ("double precision", "{c}::double precision")],
    "jsonb": [("text", "{c}::text"), ("json", None)],
    "timestamptz": [("timestamp", None), ("date", "{c}::date")],
    "date": [("timestamptz", None), ("text", "{c}::text")],
    "uuid": [("text", None)],
    "text[]": [("varchar(40)[]", None), ("text", "array_to_string({c}, ',')")],
    "integer[]": [("bigint[]", None)],
}


def g_retype(rnd, m, using=False):
    t = pick_table(rnd, m)
    cands = []
    for c in t.cols:
        if not plain_col(m, t)(c) or any(c.name in cs for _, cs, _ in t.cons.values()):
            continue
        base = c.typ
        if base.startswith('"'):
            opts = [("text", "{c}::text")]
        else:
            opts = RETYPES.get(base, [])
        opts = [o for o in opts if (o[1] is not None) == using]
        for o in opts:
            cands.append((c, o))
    if not cands:
        return None
    c, (to, use) = rnd.choice(cands)
    stmts = []
    if c.default and use:
        # Postgres casts the default with the column and refuses when it cannot: the ORMs drop it first
        stmts.append("ALTER TABLE %s ALTER COLUMN %s DROP DEFAULT" % (q(t.name), q(c.name)))
        c.default = None
    stmt = "ALTER TABLE %s ALTER COLUMN %s SET DATA TYPE %s" % (q(t.name), q(c.name), to)
    if use:
        stmt += " USING " + use.format(c=q(c.name))
    c.typ = to
    return stmts + [stmt]


def g_set_not_null(rnd, m):
    t = pick_table(rnd, m)
    c = pick_col(rnd, t, lambda c: not c.notnull and c.ident is None)
    if not c:
        return None
    stmts = []
    if rnd.random() < 0.7:
        # as ORMs write a required column: the rows filled first
        fill = value(c.typ, 3, "fill", m) if c.typ != "uuid" else "gen_random_uuid()"
        if fill == "NULL" or is_fk_col(t, c.name) or c.typ == "uuid" or any(
                k == "unique" and c.name in cs for k, cs, _ in t.cons.values()):
            return None
        stmts.append("UPDATE %s SET %s = %s WHERE %s IS NULL" % (q(t.name), q(c.name), fill, q(c.name)))
    c.notnull = True
    return stmts + ["ALTER TABLE %s ALTER COLUMN %s SET NOT NULL" % (q(t.name), q(c.name))]


def g_drop_not_null(rnd, m):
    t = pick_table(rnd, m)
    c = pick_col(rnd, t, lambda c: c.notnull and c.name not in t.pk)
    if not c:
        return None
    c.notnull = False
    return ["ALTER TABLE %s ALTER COLUMN %s DROP NOT NULL" % (q(t.name), q(c.name))]


def g_set_default(rnd, m):
    t = pick_table(rnd, m)
    c = pick_col(rnd, t, lambda c: c.ident is None and c.name not in t.pk and c.typ != "uuid")
    if not c:
        return None
    d = value(c.typ, 2, "dflt", m)
    if d == "NULL":
        return None
    c.default = d
    return ["ALTER TABLE %s ALTER COLUMN %s SET DEFAULT %s" % (q(t.name), q(c.name), d)]


def g_drop_default(rnd, m):
    t = pick_table(rnd, m)
    c = pick_col(rnd, t, lambda c: c.default and c.ident is None and c.name not in t.pk)
    if not c:
        return None
    c.default = None
    return ["ALTER TABLE %s ALTER COLUMN %s DROP DEFAULT" % (q(t.name), q(c.name))]


def check_expr(c):
    if c.typ in ("integer", "bigint", "numeric(10,2)", "double precision", "numeric(12,2)"):
        return "%s >= 0" % q(c.name)
    if c.typ in ("text", "varchar(40)", "varchar(200)", "varchar(80)"):
        return "length(%s) < 200" % q(c.name)
    if c.typ == "jsonb":
        return "jsonb_typeof(%s) = 'object'" % q(c.name)
    return "%s IS NOT NULL OR true" % q(c.name)


def g_add_check(rnd, m, stmt_only=False):
    t = pick_table(rnd, m)
    c = pick_col(rnd, t, lambda c: c.name not in t.pk)
    if not c:
        return None
    n = m.fresh(rnd, "%s_%s_check" % (t.name, c.name))
    t.cons[n] = ("check", [c.name], None)
    m.connames.add(n)
    return ["ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s)" % (q(t.name), q(n), check_expr(c))]


def g_add_unique(rnd, m):
    t = pick_table(rnd, m, lambda t: not t.partitioned)
    if not t:
        return None
    c = pick_col(rnd, t, lambda c: c.name not in t.pk and c.typ in ("text", "varchar(40)", "uuid", "integer"))
    if not c:
        return None
    n = m.fresh(rnd, "%s_%s_key" % (t.name, c.name))
    t.cons[n] = ("unique", [c.name], None)
    m.connames.add(n)
    m.relnames.add(n)
    if rnd.random() < 0.5:
        # Prisma's @unique: a unique index, not a constraint
        del t.cons[n]
        m.connames.discard(n)
        t.indexes[n] = [c.name]
        return ["CREATE UNIQUE INDEX %s ON %s(%s)" % (q(n), q(t.name), q(c.name))]
    return ["ALTER TABLE %s ADD CONSTRAINT %s UNIQUE (%s)" % (q(t.name), q(n), q(c.name))]


def g_add_fk(rnd, m):
    """A new nullable column referencing a table's key (Prisma writes the
    column, its index and the constraint)."""
    t = pick_table(rnd, m, lambda t: not t.partitioned)
    parent = pick_table(rnd, m, lambda p: not p.partitioned and len(p.pk) == 1)
    if not t or not parent:
        return None
    ptype = parent.col(parent.pk[0]).typ
    name = fresh_col(rnd, t)
    name = (parent.name.lower() + "Id") if not t.col(parent.name.lower() + "Id") else name
    t.cols.append(Col(name, ptype))
    n = m.fresh(rnd, "%s_%s_fkey" % (t.name, name))
    t.cons[n] = ("fk", [name], (parent.name, list(parent.pk)))
    m.connames.add(n)
    ondel = rnd.choice(["ON DELETE SET NULL ON UPDATE CASCADE", "ON DELETE RESTRICT ON UPDATE CASCADE", ""])
    stmts = ["ALTER TABLE %s ADD COLUMN %s %s" % (q(t.name), q(name), ptype)]
    if rnd.random() < 0.5:
        stmts.append("UPDATE %s SET %s = (SELECT min(%s) FROM %s)" % (q(t.name), q(name), q(parent.pk[0]),
                                                                       q(parent.name)))
    stmts.append("ALTER TABLE %s ADD CONSTRAINT %s FOREIGN KEY (%s) REFERENCES %s(%s) %s" % (
        q(t.name), q(n), q(name), q(parent.name), q(parent.pk[0]), ondel))
    return [s.rstrip() for s in stmts]


def g_drop_constraint(rnd, m):
    t = pick_table(rnd, m, lambda t: t.cons)
    if not t:
        return None
    n = rnd.choice(sorted(t.cons))
    if t.cons[n][0] == "unique" and m.referenced(t.name):
        return None
    del t.cons[n]
    m.connames.discard(n)
    m.relnames.discard(n)
    return ["ALTER TABLE %s DROP CONSTRAINT %s" % (q(t.name), q(n))]


def g_rename_constraint(rnd, m):
    t = pick_table(rnd, m, lambda t: t.cons)
    if not t:
        return None
    n = rnd.choice(sorted(t.cons))
    new = m.fresh(rnd, n + "_r")
    t.cons[new] = t.cons.pop(n)
    m.connames.discard(n)
    m.connames.add(new)
    if n in m.relnames:
        m.relnames.discard(n)
        m.relnames.add(new)
    return ["ALTER TABLE %s RENAME CONSTRAINT %s TO %s" % (q(t.name), q(n), q(new))]


def g_create_index(rnd, m, concurrently=False):
    t = pick_table(rnd, m, lambda t: not (concurrently and t.partitioned))
    if not t:
        return None
    c = pick_col(rnd, t, lambda c: not c.typ.endswith("[]") and c.typ not in ("jsonb",))
    if not c:
        return None
    n = m.fresh(rnd, "%s_%s_idx" % (t.name, c.name))
    t.indexes[n] = [c.name]
    m.relnames.add(n)
    r = rnd.random()
    key = q(c.name)
    if r < 0.2 and c.typ in ("text", "varchar(40)"):
        key = "lower(%s)" % q(c.name)
    cols = [key]
    if r > 0.7:
        other = pick_col(rnd, t, lambda o: o.name != c.name and not o.typ.endswith("[]") and o.typ != "jsonb")
        if other:
            cols.append(q(other.name))
            t.indexes[n].append(other.name)
    where = " WHERE %s IS NOT NULL" % q(c.name) if rnd.random() < 0.25 else ""
    return ["CREATE INDEX %s%s ON %s(%s)%s" % ("CONCURRENTLY " if concurrently else "", q(n), q(t.name),
                                               ", ".join(cols), where)]


def g_drop_index(rnd, m, concurrently=False):
    t = pick_table(rnd, m, lambda t: t.indexes and not (concurrently and t.partitioned))
    if not t:
        return None
    n = rnd.choice(sorted(t.indexes))
    del t.indexes[n]
    m.relnames.discard(n)
    return ["DROP INDEX %s%s" % ("CONCURRENTLY " if concurrently else "", q(n))]


def g_rename_index(rnd, m):
    t = pick_table(rnd, m, lambda t: t.indexes)
    if not t:
        return None
    n = rnd.choice(sorted(t.indexes))
    new = m.fresh(rnd, n + "_r")
    t.indexes[new] = t.indexes.pop(n)
    m.relnames.discard(n)
    m.relnames.add(new)
    return ["ALTER INDEX %s RENAME TO %s" % (q(n), q(new))]


def g_create_table(rnd, m, name=None, enum=None):
    name = name or m.fresh(rnd, rnd.choice(WORDS) + rnd.choice(["s", "Log", "Link", "_v2"]))
    if name in m.tables:
        return None
    t = Table(name)
    t.key = rnd.choice(["text", "serial", "uuid"])
    defs = []
    if t.key == "text":
        t.cols.append(Col("id", "text", True))
        defs.append('"id" TEXT NOT NULL')
    elif t.key == "serial":
        t.cols.append(Col("id", "integer", True, "nextval", "serial"))
        defs.append('"id" SERIAL NOT NULL')
        m.relnames.add(name + "_id_seq")
    else:
        t.cols.append(Col("id", "uuid", True, "gen_random_uuid()"))
        defs.append('"id" UUID NOT NULL DEFAULT gen_random_uuid()')
    t.pk = ["id"]
    for cn in rnd.sample(COLWORDS, rnd.randint(1, 3)):
        typ = rnd.choice(["TEXT", "INTEGER", "JSONB", "BOOLEAN NOT NULL DEFAULT false", "TIMESTAMP(3)"])
        t.cols.append(Col(cn, typ.split()[0].lower().replace("timestamp(3)", "timestamp"), "NOT NULL" in typ,
                          "false" if "DEFAULT" in typ else None))
        defs.append("%s %s" % (q(cn), typ))
    if enum:
        t.cols.append(Col("kind", q(enum)))
        defs.append('"kind" %s' % q(enum))
    t.pk_name = m.fresh(rnd, name + "_pkey")
    defs.append("CONSTRAINT %s PRIMARY KEY (\"id\")" % q(t.pk_name))
    m.relnames.add(t.pk_name)
    m.connames.add(t.pk_name)
    m.tables[name] = t
    m.relnames.add(name)
    t.nrows = 0
    return ["CREATE TABLE %s (\n    %s\n)" % (q(name), ",\n    ".join(defs))]


def g_drop_table(rnd, m):
    t = pick_table(rnd, m, lambda t: not m.pinned(t.name) and not m.referenced(t.name))
    if not t:
        return None
    del m.tables[t.name]
    m.relnames.discard(t.name)
    for n in list(t.indexes) + list(t.cons) + t.partitions + [t.pk_name or ""]:
        m.relnames.discard(n)
        m.connames.discard(n)
    return ["DROP TABLE %s" % q(t.name)]


def rename_table_model(m, t, new):
    old = t.name
    del m.tables[old]
    t.name = new
    m.tables[new] = t
    m.relnames.discard(old)
    m.relnames.add(new)
    for ot in m.tables.values():
        for n, (kind, cols, extra) in list(ot.cons.items()):
            if kind == "fk" and extra[0] == old:
                ot.cons[n] = (kind, cols, (new, extra[1]))
    for vn, (vt, cols, mat) in list(m.views.items()):
        if vt == old:
            m.views[vn] = (new, cols, mat)


def g_rename_table(rnd, m):
    t = pick_table(rnd, m, lambda t: not t.partitioned)
    if not t:
        return None
    old = t.name
    new = m.fresh(rnd, rnd.choice(WORDS) + rnd.choice(["_new", "Entry", "Record", "s"]))
    rename_table_model(m, t, new)
    return ["ALTER TABLE %s RENAME TO %s" % (q(old), q(new))]


def g_create_enum(rnd, m):
    name = m.fresh(rnd, rnd.choice(["Status", "Kind", "Plan", "Visibility", "level"]))
    labels = rnd.sample(["ONE", "TWO", "THREE", "FOUR", "active", "inactive", "pending"], rnd.randint(2, 4))
    m.enums[name] = labels
    m.relnames.add(name)
    return ["CREATE TYPE %s AS ENUM (%s)" % (q(name), ", ".join(lit(x) for x in labels))]


def enum_cols(m, e):
    return [(t, c) for t in m.tables.values() for c in t.cols if c.typ == q(e)]


def g_rename_enum(rnd, m):
    if not m.enums:
        return None
    e = rnd.choice(sorted(m.enums))
    new = m.fresh(rnd, e + "Type")
    m.enums[new] = m.enums.pop(e)
    for t, c in enum_cols(m, e):
        c.typ = q(new)
    return ["ALTER TYPE %s RENAME TO %s" % (q(e), q(new))]


def g_add_enum_value(rnd, m):
    if not m.enums:
        return None
    e = rnd.choice(sorted(m.enums))
    v = rnd.choice(["ARCHIVED", "review", "BLOCKED", "done", "NEW"])
    if v in m.enums[e]:
        return None
    where = ""
    if rnd.random() < 0.4:
        where = " BEFORE %s" % lit(m.enums[e][0])
        m.enums[e].insert(0, v)
    else:
        m.enums[e].append(v)
    return ["ALTER TYPE %s ADD VALUE %s%s" % (q(e), lit(v), where)]


def g_prisma_enum_recreate(rnd, m):
    """Prisma removes an enum value by making the type again: the rows that
    hold the value are moved first, as a person adds to Prisma's file."""
    es = [e for e in m.enums if len(m.enums[e]) > 1 and all(not m.pinned(t.name, c.name) and c.name not in t.pk
                                                             for t, c in enum_cols(m, e))]
    if not es:
        return None
    e = rnd.choice(sorted(es))
    gone = rnd.choice(m.enums[e][1:])
    keep = [x for x in m.enums[e] if x != gone]
    stmts = []
    for t, c in enum_cols(m, e):
        stmts.append("UPDATE %s SET %s = %s WHERE %s = %s" % (q(t.name), q(c.name), lit(keep[0]), q(c.name), lit(gone)))
    stmts.append("CREATE TYPE %s AS ENUM (%s)" % (q(e + "_new"), ", ".join(lit(x) for x in keep)))
    for t, c in enum_cols(m, e):
        if c.default:
            stmts.append("ALTER TABLE %s ALTER COLUMN %s DROP DEFAULT" % (q(t.name), q(c.name)))
        stmts.append('ALTER TABLE %s ALTER COLUMN %s TYPE %s USING (%s::text::%s)'
                     % (q(t.name), q(c.name), q(e + "_new"), q(c.name), q(e + "_new")))
        if c.default:
            stmts.append("ALTER TABLE %s ALTER COLUMN %s SET DEFAULT %s" % (q(t.name), q(c.name), lit(keep[0])))
            c.default = lit(keep[0])
    stmts.append("DROP TYPE %s" % q(e))
    stmts.append("ALTER TYPE %s RENAME TO %s" % (q(e + "_new"), q(e)))
    m.enums[e] = keep
    return stmts


def g_update(rnd, m):
    t = pick_table(rnd, m, lambda t: getattr(t, "nrows", 0))
    if not t:
        return None
    c = pick_col(rnd, t, lambda c: plain_col(m, t)(c) and not any(c.name in cs for k, cs, _ in t.cons.values()))
    if not c:
        return None
    v = value(c.typ, rnd.randint(1, 9), "upd", m)
    if v == "NULL":
        return None
    where = rnd.choice(["", " WHERE %s IS NULL" % q(c.name), " WHERE %s IS NOT NULL" % q(c.name)])
    return ["UPDATE %s SET %s = %s%s" % (q(t.name), q(c.name), v, where)]


def g_insert_select(rnd, m):
    """More rows from rows there (a key the sequence gives)."""
    t = pick_table(rnd, m, lambda t: t.key in ("identity", "serial") and getattr(t, "nrows", 0))
    if not t:
        return None
    uniq = {x for k, cs, _ in t.cons.values() if k == "unique" for x in cs}
    uniq |= {x for cs in t.indexes.values() for x in cs}
    cols = [c.name for c in t.cols if c.ident is None and c.name not in uniq]
    if any(c.notnull and c.name in uniq for c in t.cols if c.ident is None):
        return None
    if not cols:
        return None
    # ordered by the key: without ORDER BY the copies take the sequence's
    # keys in heap order, which a backfill online (rows rewritten, moved in
    # the heap) changes and the twin offline does not: the same rows with
    # each other's keys, a difference of the oracle's own (90011-930)
    return ["INSERT INTO %s (%s) SELECT %s FROM %s WHERE %s <= 3 ORDER BY %s" % (
        q(t.name), ", ".join(q(c) for c in cols), ", ".join(q(c) for c in cols), q(t.name), q(t.pk[0]),
        q(t.pk[0]))]


def g_delete(rnd, m):
    t = pick_table(rnd, m, lambda t: getattr(t, "nrows", 0) and t.key in ("identity", "serial", "int"))
    if not t:
        return None
    return ["DELETE FROM %s WHERE %s %% 7 = 3" % (q(t.name), q(t.pk[0]))]


def g_do_if_not_exists(rnd, m):
    t = pick_table(rnd, m)
    c = pick_col(rnd, t, lambda c: c.name not in t.pk)
    if not c:
        return None
    n = m.fresh(rnd, "%s_%s_check" % (t.name, c.name))
    t.cons[n] = ("check", [c.name], None)
    m.connames.add(n)
    return ["DO $$ BEGIN\n  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = %s) THEN\n"
            "    ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s);\n  END IF;\nEND $$" % (
                lit(n), q(t.name), q(n), check_expr(c))]


def g_do_exception(rnd, m):
    """drizzle-kit's guards: an enum or a foreign key made unless it is there."""
    if rnd.random() < 0.5:
        s = g_create_enum(rnd, m)
        return ["DO $$ BEGIN\n  %s;\nEXCEPTION\n  WHEN duplicate_object THEN null;\nEND $$" % s[0]]
    stmts = g_add_fk(rnd, m)
    if not stmts:
        return None
    return stmts[:-1] + ["DO $$ BEGIN\n  %s;\nEXCEPTION\n  WHEN duplicate_object THEN null;\nEND $$" % stmts[-1]]


def g_seq_rename_then_reuse(rnd, m):
    t = pick_table(rnd, m, lambda t: not t.partitioned)
    if not t:
        return None
    c = pick_col(rnd, t, lambda c: c.ident is None and c.name not in t.pk)
    if not c:
        return None
    old = c.name
    s = g_rename_column_of(rnd, m, t, c)
    t.cols.append(Col(old, "text"))
    return s + ["ALTER TABLE %s ADD COLUMN %s text" % (q(t.name), q(old))]


def g_rename_column_of(rnd, m, t, c, new=None):
    new = new or fresh_col(rnd, t)
    old = c.name
    c.name = new
    rename_col_refs(m, t, old, new)
    for vn, (vt, cols, mat) in m.views.items():
        if vt == t.name and old in cols:
            m.views[vn] = (vt, [x for x in cols if x != old] + [new], mat)
    return ["ALTER TABLE %s RENAME COLUMN %s TO %s" % (q(t.name), q(old), q(new))]


def g_seq_rename_twice(rnd, m):
    if rnd.random() < 0.5:
        t = pick_table(rnd, m, lambda t: not t.partitioned)
        c = t and pick_col(rnd, t, lambda c: c.ident is None and c.name not in t.pk)
        if not c:
            return None
        return g_rename_column_of(rnd, m, t, c) + g_rename_column_of(rnd, m, t, c)
    a = g_rename_table(rnd, m)
    if not a:
        return None
    t = m.tables[a[0].split(" TO ")[1].strip('"')]
    old = t.name
    new = m.fresh(rnd, old + "2")
    rename_table_model(m, t, new)
    return a + ["ALTER TABLE %s RENAME TO %s" % (q(old), q(new))]


def g_seq_drop_readd(rnd, m):
    """A constraint or index dropped and made again under its name (how ORMs
    change a foreign key's actions or an index's columns), or a column."""
    r = rnd.random()
    if r < 0.4:
        t = pick_table(rnd, m, lambda t: any(k in ("fk", "check") for k, _, _ in t.cons.values()))
        if not t:
            return None
        n = rnd.choice(sorted(x for x, v in t.cons.items() if v[0] in ("fk", "check")))
        kind, cols, extra = t.cons[n]
        if kind == "fk":
            add = "FOREIGN KEY (%s) REFERENCES %s(%s) ON DELETE %s ON UPDATE CASCADE" % (
                ", ".join(q(c) for c in cols), q(extra[0]), ", ".join(q(c) for c in extra[1]),
                rnd.choice(["CASCADE", "SET NULL", "RESTRICT"]))
        else:
            add = "CHECK (%s)" % check_expr(t.col(cols[0]))
        return ["ALTER TABLE %s DROP CONSTRAINT %s" % (q(t.name), q(n)),
                "ALTER TABLE %s ADD CONSTRAINT %s %s" % (q(t.name), q(n), add)]
    if r < 0.8:
        t = pick_table(rnd, m, lambda t: t.indexes)
        if not t:
            return None
        n = rnd.choice(sorted(t.indexes))
        c = pick_col(rnd, t, lambda c: not c.typ.endswith("[]") and c.typ != "jsonb")
        if not c:
            return None
        t.indexes[n] = [c.name]
        return ["DROP INDEX %s" % q(n), "CREATE INDEX %s ON %s(%s)" % (q(n), q(t.name), q(c.name))]
    t = pick_table(rnd, m)
    c = pick_col(rnd, t, plain_col(m, t))
    if not c:
        return None
    drop_col_refs(m, t, c.name)
    c.typ, c.notnull, c.default = "text", False, None
    return ["ALTER TABLE %s DROP COLUMN %s" % (q(t.name), q(c.name)),
            "ALTER TABLE %s ADD COLUMN %s TEXT" % (q(t.name), q(c.name))]


def g_seq_table_rename_children(rnd, m):
    """Prisma's table rename: the table, then its primary key, foreign keys
    and indexes named after it."""
    t = pick_table(rnd, m, lambda t: not t.partitioned)
    if not t:
        return None
    old = t.name
    new = m.fresh(rnd, rnd.choice(WORDS) + "Entry")
    rename_table_model(m, t, new)
    out = ["ALTER TABLE %s RENAME TO %s" % (q(old), q(new))]
    if t.pk_name and t.pk_name.startswith(old):
        n2 = m.fresh(rnd, new + t.pk_name[len(old):])
        out.append("ALTER TABLE %s RENAME CONSTRAINT %s TO %s" % (q(new), q(t.pk_name), q(n2)))
        m.relnames.discard(t.pk_name)
        m.connames.discard(t.pk_name)
        m.relnames.add(n2)
        m.connames.add(n2)
        t.pk_name = n2
    for n in sorted(t.cons):
        if n.startswith(old) and t.cons[n][0] == "fk":
            n2 = m.fresh(rnd, new + n[len(old):])
            t.cons[n2] = t.cons.pop(n)
            m.connames.discard(n)
            m.connames.add(n2)
            out.append("ALTER TABLE %s RENAME CONSTRAINT %s TO %s" % (q(new), q(n), q(n2)))
    for n in sorted(t.indexes):
        if n.startswith(old):
            n2 = m.fresh(rnd, new + n[len(old):])
            t.indexes[n2] = t.indexes.pop(n)
            m.relnames.discard(n)
            m.relnames.add(n2)
            out.append("ALTER INDEX %s RENAME TO %s" % (q(n), q(n2)))
    return out


def g_seq_type_created_then_used(rnd, m):
    s = g_create_enum(rnd, m)
    e = s[0].split('"')[1]
    if rnd.random() < 0.5:
        t = pick_table(rnd, m)
        n = fresh_col(rnd, t)
        t.cols.append(Col(n, q(e), False))
        dflt = ""
        if rnd.random() < 0.5:
            dflt = " NOT NULL DEFAULT %s" % lit(m.enums[e][0])
            t.cols[-1].notnull, t.cols[-1].default = True, lit(m.enums[e][0])
        return s + ["ALTER TABLE %s ADD COLUMN %s %s%s" % (q(t.name), q(n), q(e), dflt)]
    c = g_create_table(rnd, m, enum=e)
    return s + c if c else None


def g_seq_retype_and_build(rnd, m):
    """A column retyped, and an index, unique index, partial index or check
    made on it in the same file, before the retype (which offline rebuilds
    it on the new type) or after (made on the new type)."""
    before = rnd.random() < 0.5
    s = g_retype(rnd, m, rnd.random() < 0.3)
    if not s:
        return None
    tname, cname = s[-1].split('"')[1], s[-1].split('"')[3]
    t, c = m.tables[tname], m.tables[tname].col(cname)
    what = rnd.choice(["index", "unique", "partial", "check"])
    if what == "unique" and t.partitioned:
        what = "index"
    n = m.fresh(rnd, "%s_%s_%s" % (t.name, c.name, "check" if what == "check" else
                                   "key" if what == "unique" else "idx"))
    if what == "check":
        t.cons[n] = ("check", [c.name], None)
        m.connames.add(n)
        made = "ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s IS NOT NULL OR true)" % (q(t.name), q(n), q(c.name))
    else:
        t.indexes[n] = [c.name]
        m.relnames.add(n)
        key, where = q(c.name), ""
        if what == "partial":
            key, where = q(t.pk[0]) if t.pk else key, " WHERE %s IS NOT NULL" % q(c.name)
        made = "CREATE %sINDEX %s ON %s(%s)%s" % ("UNIQUE " if what == "unique" else "", q(n), q(t.name), key,
                                                  where)
    return [made] + s if before else s + [made]


GENERATORS = {
    "add_column": g_add_column, "drop_column": g_drop_column, "rename_column": g_rename_column,
    "retype": lambda r, m: g_retype(r, m, False), "retype_using": lambda r, m: g_retype(r, m, True),
    "set_not_null": g_set_not_null, "drop_not_null": g_drop_not_null, "set_default": g_set_default,
    "drop_default": g_drop_default, "add_check": g_add_check, "add_unique": g_add_unique, "add_fk": g_add_fk,
    "drop_constraint": g_drop_constraint, "rename_constraint": g_rename_constraint,
    "create_index": g_create_index, "create_index_concurrently": lambda r, m: g_create_index(r, m, True),
    "drop_index": g_drop_index, "drop_index_concurrently": lambda r, m: g_drop_index(r, m, True),
    "rename_index": g_rename_index, "create_table": g_create_table, "drop_table": g_drop_table,
    "rename_table": g_rename_table, "create_enum": g_create_enum, "rename_enum": g_rename_enum,
    "add_enum_value": g_add_enum_value, "prisma_enum_recreate": g_prisma_enum_recreate, "update": g_update,
    "insert_select": g_insert_select, "delete": g_delete, "do_if_not_exists": g_do_if_not_exists,
    "do_exception": g_do_exception, "seq_rename_then_reuse": g_seq_rename_then_reuse,
    "seq_rename_twice": g_seq_rename_twice, "seq_drop_readd": g_seq_drop_readd,
    "seq_table_rename_children": g_seq_table_rename_children,
    "seq_type_created_then_used": g_seq_type_created_then_used,
    "seq_retype_and_build": g_seq_retype_and_build,
}
assert set(GENERATORS) == set(ALL_KINDS)


def make_migration(rnd, model, kinds):
    """1-12 statements drawn from `kinds`, each against the model as the ones
    before left it. Returns ([statement], [kind of each])."""
    m = copy.deepcopy(model)
    want = rnd.randint(1, 12)
    stmts, used = [], []
    kinds = sorted(kinds)
    tries = 0
    while len(stmts) < want and tries < 200:
        tries += 1
        k = rnd.choice(kinds)
        s = GENERATORS[k](rnd, m)
        if not s:
            continue
        if len(stmts) + len(s) > 12 and stmts:
            break
        stmts += s
        used += [k] * len(s)
    return stmts, used, m


class Case:
    """One random base and one migration file of it."""

    def __init__(self, seed, k, kinds):
        self.seed, self.k = seed, k
        rnd = random.Random("%s-%s" % (seed, k))
        self.base_sql, self.model = make_base(rnd)
        self.statements, self.kinds, self.after = make_migration(rnd, self.model, kinds)
        self.rollback = rnd.random() < 0.35
        self.name = "r%s_%d" % (str(seed)[:12], k)

    def text(self, statements=None):
        return "".join(s + ";\n" for s in (self.statements if statements is None else statements))


def random_case(seed, k, kinds=ALL_KINDS):
    return Case(seed, k, kinds)


# ---- writers of both releases ------------------------------------------------------

def writer_inserts(model, start, ntables=2, nrows=2, before=None):
    """INSERTs of `nrows` rows into each of the first `ntables` tables of
    `model` that take them: explicit keys from `start` on (so that no
    sequence's order matters), a value for every other column, NULL for
    foreign keys. The old release writes the base's shape, the new release
    the shape the file leaves (support.migrations.new_shape_options). With
    `before` (the base's model), a column that was a foreign key there gets
    NULL too: until the contract both shapes' constraints hold, so the new
    release's rows must keep the old release's foreign keys."""
    out = []
    for t in list(model.tables.values()):
        if len(out) >= ntables * nrows:
            break
        stmts = []
        for i in range(start, start + nrows):
            cols, vals = [], []
            for c in t.cols:
                if c.name in t.pk:
                    v = base_key(t, c.name, i) if t.key in ("identity", "serial", "uuid", "int", "composite",
                                                            "partitioned") else value(c.typ, i, t.name, model)
                elif is_fk_col(t, c.name) or (before and t.name in before.tables
                                              and is_fk_col(before.tables[t.name], c.name)):
                    v = "NULL"
                else:
                    v = value(c.typ, i, "w%s.%s" % (t.name, c.name), model)
                    bt = before.tables.get(t.name) if before else None
                    bc = bt.col(c.name) if bt else None
                    if bc and bc.typ != c.typ:
                        # a column whose type changes: a value of the old type, so the old release can read it too
                        v = value(bc.typ, i, "w%s.%s" % (t.name, c.name), before)
                        # an enum's literal stays untyped: the column's type, whatever its name now
                        v = v if v == "NULL" or c.typ.startswith('"') else "(%s)::%s" % (v, c.typ)
                if v == "NULL" and c.notnull:
                    break
                cols.append(q(c.name))
                vals.append(v)
            else:
                stmts.append("INSERT INTO %s (%s) VALUES (%s)" % (q(t.name), ", ".join(cols), ", ".join(vals)))
        out += stmts
    return out


def run_each(uri, statements, options=""):
    """Runs each statement on its own (autocommit); returns [(statement, error or None)]."""
    res = []
    with psycopg.connect(uri, autocommit=True, options=options) as c:
        for st in statements:
            try:
                c.execute(st)
                res.append((st, None))
            except psycopg.Error as e:
                res.append((st, str(e).splitlines()[0]))
    return res


# ---- running one file --------------------------------------------------------------

def reason_of(stderr):
    """A refusal's reason with its names taken out: what refusals are counted by."""
    lines = [x for x in stderr.splitlines() if x.strip()]
    # an engine's log lines come before its error: the error is the reason
    line = next((x for x in lines if " ERROR " in x or "error:" in x), lines[0] if lines else "(no message)")
    line = re.sub(r"^pgtandem migrate: (error: )?", "", line)
    line = re.sub(r"^\S+\.(sql|json)(:\d+)*:\s*", "", line)
    line = re.sub(r'"(?:[^"\\]|\\.)*"', "NAME", line)
    line = re.sub(r"'(?:[^'\\]|\\.)*'", "'V'", line)
    line = re.sub(r"operations\[\d+\]", "operations[N]", line)
    line = re.sub(r"\b\d+\b", "N", line)
    line = re.sub(r"pgtandem_\w+", "pgtandem_X", line)
    return line[:160]


class Runner:
    """Runs cases on a cluster (support.pg.Cluster): creates the databases,
    runs offline and online, and classes the outcome."""

    def __init__(self, cluster, workdir, writers=False):
        self.cluster = cluster
        self.writers = writers
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)

    # -- databases
    def _db(self, name, template=None):
        self.cluster.psql("CREATE DATABASE %s%s" % (name, " TEMPLATE " + template if template else ""))
        return self.cluster.uri(db=name)

    def _drop(self, *names):
        for n in names:
            self.cluster.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % n, check=False)

    def psql_file(self, uri, path, single=True):
        args = ["psql", uri, "-qAtX", "-v", "ON_ERROR_STOP=1"] + (["-1"] if single else []) + ["-f", path]
        return subprocess.run(args, capture_output=True, text=True, timeout=120)

    def dump(self, uri):
        """pg_dump --schema-only without schema pgtandem and the lines that
        differ on every dump (support.pg's rules), columns in their order."""
        r = subprocess.run([os.path.join(self.cluster.bindir, "pg_dump"), "--schema-only", "--no-owner",
                            "--exclude-schema=pgtandem", "-d", uri], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        lines = [line for line in r.stdout.splitlines() if line.strip() and not DUMP_NOISE.match(line)]
        lines += partition_foreign_keys(uri)
        return lines

    def rows(self, uri):
        out = {}
        with psycopg.connect(uri, autocommit=True) as c:
            tables = [r[0] for r in c.execute(
                "SELECT format('%I', relname) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                " AND relkind IN ('r', 'p') AND NOT relispartition ORDER BY 1")]
            for t in tables:
                out[t] = [r[0] for r in c.execute("SELECT to_jsonb(x)::text FROM %s x ORDER BY 1" % t)]
        return out

    def leftovers(self, uri):
        with psycopg.connect(uri, autocommit=True) as c:
            return [r[0] for r in c.execute(RANDMIG_LEFTOVERS)]

    def migrate(self, uri, *args):
        return run_pgtandem(["migrate"] + list(args) + ["--db", uri], timeout=300)

    def run(self, case, statements=None):
        """Runs `statements` (the case's by default) and returns
        (outcome, detail): outcome is "skipped", "identical", "refused" (detail:
        the reason) or "failure" (detail: "<class>: <what>")."""
        text = case.text(statements)
        tag = uuid.uuid4().hex[:8]
        base, off, on = "rmb_" + tag, "rmo_" + tag, "rmn_" + tag
        d = os.path.join(self.workdir, tag)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, case.name + ".sql")
        with open(path, "w") as f:
            f.write(text)
        with open(os.path.join(d, "base.sql"), "w") as f:
            f.write(case.base_sql)
        try:
            buri = self._db(base)
            r = self.psql_file(buri, os.path.join(d, "base.sql"))
            if r.returncode != 0:
                return "skipped", "base: " + r.stderr.strip()
            self.cluster.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s'" % base)
            ouri, nuri = self._db(off, base), self._db(on, base)
            # writers only for the whole file of a case that completes: what a rollback keeps of
            # the new release's rows, and the shape a shrunk file leaves, are not modelled
            writes = self.writers and statements is None and not case.rollback
            if writes:
                old_w = [st for st, err in run_each(ouri, writer_inserts(case.model, 1000)) if err is None]
            # CONCURRENTLY cannot run in a transaction block: such a file runs offline statement by statement
            r = self.psql_file(ouri, path, single="CONCURRENTLY" not in text)
            if r.returncode != 0:
                return "skipped", r.stderr.strip().splitlines()[0] if r.stderr.strip() else "offline"
            if writes:
                new_w = [st for st, err in run_each(ouri, writer_inserts(case.after, 2000, before=case.model))
                         if err is None]
                return self._online(case, statements, path, base, ouri, nuri, (old_w, new_w))
            return self._online(case, statements, path, base, ouri, nuri)
        finally:
            self._drop(base, off, on)
            for f in os.listdir(d):
                os.unlink(os.path.join(d, f))
            os.rmdir(d)

    def _online(self, case, statements, path, base, ouri, nuri, writes=None):
        before_dump, before_rows = self.dump(nuri), self.rows(nuri)
        r = self.migrate(nuri, "start", path)
        if r.returncode != 0:
            changed = self.dump(nuri) != before_dump or self.rows(nuri) != before_rows
            if r.returncode == 2 and not changed:
                return "refused", reason_of(r.stderr)
            return "failure", "start exit %d, changed: %s: %s" % (r.returncode, changed, reason_of(r.stderr))
        if case.rollback:
            rb = self.migrate(nuri, "rollback")
            if rb.returncode != 0:
                return "failure", "rollback exit %d: %s" % (rb.returncode, reason_of(rb.stderr))
            got = self.dump(nuri)
            keeps = self._rollback_keeps(case, statements, base, path)
            if got != before_dump and (keeps is None or got != keeps[0]):
                return "failure", "rollback schema differs: " + first_diff(before_dump, got)
            rows = self.rows(nuri)
            if rows != before_rows and (keeps is None or rows != keeps[1]):
                return "failure", "rollback rows differ: " + rows_diff(before_rows if keeps is None else keeps[1], rows)
            left = self.leftovers(nuri)
            if left:
                return "failure", "leftovers after rollback: " + ", ".join(left[:3])
            return "identical", "rollback"
        if writes:
            # the twin took the old release's rows before the file and the new release's after it
            for st, err in run_each(nuri, writes[0]) + run_each(nuri, writes[1], new_shape_options(case.name)):
                if err:
                    return "failure", "writer refused online: %s: %s" % (reason_of(err), st[:120])
        done = self.migrate(nuri, "complete")
        if done.returncode != 0:
            return "failure", "complete exit %d: %s" % (done.returncode, reason_of(done.stderr))
        want, got = self.dump(ouri), self.dump(nuri)
        if want != got:
            if sort_table_columns(want) != sort_table_columns(got):
                return "failure", "schema differs: " + first_diff(sort_table_columns(want), sort_table_columns(got))
        order = "" if want == got else " (column order differs)"
        wrows, grows = self.rows(ouri), self.rows(nuri)
        if wrows != grows:
            return "failure", "rows differ: " + rows_diff(wrows, grows)
        left = self.leftovers(nuri)
        if left:
            return "failure", "leftovers after complete: " + ", ".join(left[:3])
        wrote = " (rows written by the old and new releases: %d, %d)" % tuple(map(len, writes)) if writes else ""
        return "identical", "complete" + order + wrote

    def _waits_for_complete(self, uri, path):
        """The data statements of the file that run at complete (the
        converter's `sql` operations `on: complete`, as `migrate convert`
        says on the base): a rollback before then never ran them."""
        r = self.migrate(uri, "convert", path)
        if r.returncode != 0:
            return set()
        ops = json.loads(r.stdout).get("operations", [])
        return {squash(op["sql"]["up"]) for op in ops if "sql" in op and op["sql"].get("on") == "complete"}

    def _rollback_keeps(self, case, statements, base, path):
        """What a rollback may keep (test_schema_fidelity's rollback_keeps and
        rollback_keeps_rows): the enum values the file adds (Postgres cannot
        remove one) and what its data statements did to the tables there
        before. The base with those statements run, each on its own where
        it can (a statement on something the file makes cannot run here):
        (dump, rows), or None when the file has none. A data statement may
        name a column the file adds (an INSERT filling it too): the rows it
        wrote stay, the column goes with the rollback; so the file's ADD
        COLUMNs run before it here, and their columns are dropped after; the
        same for a table or column it renames. A statement that waits for complete
        (after a change of its table's type, say) never ran."""
        stmts = enum_values_at_base(case.statements if statements is None else statements)
        keep = [s for s in stmts if re.match(r"\s*(ALTER TYPE \S+ ADD VALUE|UPDATE|INSERT|DELETE)", s)]
        if not keep:
            return None
        name = "rmk_" + uuid.uuid4().hex[:8]
        uri = self._db(name, base)
        try:
            waits = self._waits_for_complete(uri, path)
            keep = [s for s in keep if squash(s) not in waits]
            with psycopg.connect(uri, autocommit=True) as c:
                # what the file's renames and adds did, undone last first after its data statements
                # (an added column dropped under the name its table had then, before a rename that
                # gave a base column its name back)
                undo = []
                for s in stmts:
                    adds = re.match(r'\s*ALTER TABLE (\S+) ADD COLUMN (\S+)', s)
                    rename = re.match(r'\s*ALTER TABLE (\S+) RENAME TO (\S+)\s*$', s)
                    column = re.match(r'\s*ALTER TABLE (\S+) RENAME COLUMN (\S+) TO (\S+)\s*$', s)
                    if s not in keep and not adds and not rename and not column:
                        continue
                    try:
                        c.execute(s)
                    except psycopg.Error:
                        continue
                    if adds:
                        undo.append("ALTER TABLE %s DROP COLUMN %s" % (adds.group(1), adds.group(2)))
                    if rename:
                        undo.append("ALTER TABLE %s RENAME TO %s" % (rename.group(2), rename.group(1)))
                    if column:
                        undo.append("ALTER TABLE %s RENAME COLUMN %s TO %s"
                                    % (column.group(1), column.group(3), column.group(2)))
                for u in reversed(undo):
                    try:
                        c.execute(u)
                    except psycopg.Error:
                        pass
            return self.dump(uri), self.rows(uri)
        finally:
            self._drop(name)


def squash(sql):
    """A statement's text with its spacing and final semicolon taken out:
    how the converter's `up` and the file's statement are compared."""
    return re.sub(r"\s+", " ", sql).strip().rstrip(";").strip()


def enum_values_at_base(statements):
    """The statements with each ADD VALUE addressed to its type under the
    name the type has in the base: a rename of the type runs at complete, so
    a value added after `ALTER TYPE a RENAME TO b` goes to "a" at expand and
    a rollback keeps it there. A value added to a type the file makes (or
    makes again under a freed name) names nothing in the base: the rollback
    drops that type, so the statement is left out."""
    base_of, out = {}, []
    for s in statements:
        m = re.match(r"\s*ALTER TYPE (\S+) RENAME TO (\S+)\s*;?\s*$", s)
        if m:
            base_of[m.group(2)] = base_of.pop(m.group(1), m.group(1))
            out.append(s)
            continue
        m = re.match(r"\s*(?:CREATE TYPE|DROP TYPE(?: IF EXISTS)?) (\S+)", s)
        if m:
            base_of[m.group(1)] = None
            out.append(s)
            continue
        m = re.match(r"(\s*ALTER TYPE )(\S+)( ADD VALUE.*)$", s, re.S)
        if m and m.group(2) in base_of:
            if base_of[m.group(2)] is None:
                continue
            s = m.group(1) + base_of[m.group(2)] + m.group(3)
        out.append(s)
    return out


def first_diff(a, b):
    d = [x for x in difflib.unified_diff(a, b, lineterm="", n=0) if not x.startswith(("---", "+++", "@@"))]
    return " | ".join(d[:4])[:300]


def rows_diff(a, b):
    for t in sorted(set(a) | set(b)):
        if a.get(t) != b.get(t):
            return "table %s: %d rows vs %d" % (t, len(a.get(t) or []), len(b.get(t) or []))
    return "?"


def failure_class(detail):
    """The class of a failure, what shrinking keeps: the text before the
    first colon with names out."""
    return reason_of(detail.split(":", 1)[0])


def shrink_failure(runner, case, detail, budget=25):
    """Delta debugging (ddmin on complements): a chunk of statements goes
    when the file without it still fails in the same class (a file Postgres
    refuses offline does not count); chunks halve down to one statement.
    At most `budget` runs. Returns (statements, detail)."""
    want = failure_class(detail)
    cur = list(case.statements)
    if detail.startswith("writer"):
        return cur, detail  # a shrunk file runs without writers: nothing to compare with
    tries, n = 0, 2
    while len(cur) > 1 and tries < budget:
        size = max(1, -(-len(cur) // n))
        for i in range(0, len(cur), size):
            cand = cur[:i] + cur[i + size:]
            if not cand or tries >= budget:
                continue
            tries += 1
            outcome, d = runner.run(case, cand)
            if outcome == "failure" and failure_class(d) == want:
                cur, detail, n = cand, d, max(n - 1, 2)
                break
        else:
            if size == 1:
                break
            n = min(len(cur), n * 2)
    return cur, detail


def case_from_file(path):
    """A reproducer written by write_reproducer, read back: its base beside
    it, its statements, complete or rollback from its header. For replaying
    one by hand: Runner(cluster, dir).run(case_from_file(path))."""
    with open(path) as f:
        text = f.read()
    head = [x for x in text.splitlines() if x.startswith("-- ")]
    case = Case.__new__(Case)
    case.seed, case.k = os.path.basename(path).rsplit(".", 1)[0], 0
    case.name = "replay_" + re.sub(r"\W", "_", case.seed)[:30]
    case.rollback = any("migrate rollback" in x for x in head)
    base = next(x for x in head if x.startswith("-- base schema: ")).split(": ", 1)[1]
    with open(os.path.join(os.path.dirname(path), base)) as f:
        case.base_sql = f.read()
    body = "\n".join(x for x in text.splitlines() if not x.startswith("-- "))
    case.statements, cur = [], ""
    for part in body.split(";\n"):
        cur = cur + ";\n" + part if cur else part
        if cur.count("$$") % 2 == 0:  # not inside a DO block's body
            if cur.strip():
                case.statements.append(cur.strip().rstrip(";"))
            cur = ""
    case.kinds = []
    return case


def write_reproducer(directory, case, statements, detail):
    """failures/<seed>-<k>.sql with the base schema beside it and a header
    naming both and the failure. Returns the path."""
    os.makedirs(directory, exist_ok=True)
    stem = "%s-%d" % (case.seed, case.k)
    base_path = os.path.join(directory, stem + ".base.sql")
    with open(base_path, "w") as f:
        f.write(case.base_sql)
    path = os.path.join(directory, stem + ".sql")
    with open(path, "w") as f:
        f.write("-- base schema: %s\n-- then: migrate start; migrate %s\n-- failure: %s\n" % (
            os.path.basename(base_path), "rollback" if case.rollback else "complete", detail.replace("\n", " ")))
        f.write(case.text(statements))
    return path


def _carried_today():
    return [k for k in ALL_KINDS if k not in KINDS_FAILING_TODAY]


# Kinds that fail today (failures shrunk by the bench; see doc/benchmarks.md):
# none since the fixes of the failures in randmig_failures/.
KINDS_FAILING_TODAY = set()
KINDS_CARRIED_TODAY = _carried_today()

"""Schema fidelity, differentially: for each case (starting schema, migration,
the equivalent offline DDL) two databases are created from the same starting
SQL. One runs `migrate start` -> rollback (must give back exactly the starting
dump and rows) -> start -> concurrent old- and new-shape writers -> complete;
its twin runs the old-shape writes, the offline DDL, then the new-shape
writes. Both must end with the same `pg_dump --schema-only` (column order
inside each table aside) and the same rows. A case the engine cannot carry
must be refused by `start` and `plan` with exit 2 before the first DDL, with
a message naming the dependent, and change nothing. A few representative
cases run again with start/rollback/complete sent to a running proxy and the
writers connected through it (the new shape routed by pgtandem.version)."""
import os
import subprocess
import tempfile
import threading
import uuid

import psycopg
import pytest

from support import (admin_url, complete_migration, migrate, new_shape_options, run_pgtandem, schema_dump, sql,
                     start_migration, write_migration)

ITER = 30

BASE = """
CREATE TABLE accounts (id bigint PRIMARY KEY, code text NOT NULL UNIQUE, label text);
CREATE TABLE checks (
    id           bigserial PRIMARY KEY,
    claim_text   text NOT NULL DEFAULT '',
    aggregation  text DEFAULT '{}',
    status       text NOT NULL DEFAULT 'open',
    env          text NOT NULL DEFAULT 'prod',
    account_code text REFERENCES accounts (code),
    price        text
);
INSERT INTO accounts SELECT g, 'c' || g, 'label ' || g FROM generate_series(1, 50) g;
INSERT INTO checks (claim_text, aggregation, status, env, account_code, price)
SELECT 'claim ' || g, json_build_object('k', g % 7)::text, CASE WHEN g % 4 = 0 THEN 'closed' ELSE 'open' END,
       CASE WHEN g % 3 = 0 THEN 'dev' ELSE 'prod' END, 'c' || (g % 50 + 1), (g / 4.0)::text
  FROM generate_series(1, 400) g;
"""

RENAME_CLAIM = {"rename_column": {"table": "checks", "from": "claim_text", "to": "claim"}}
RENAME_CLAIM_OFFLINE = "ALTER TABLE checks RENAME COLUMN claim_text TO claim"
# Writers touch disjoint rows with explicit keys, so the twins end with the
# same rows whatever the interleaving.
RENAME_CLAIM_OLD = ["INSERT INTO checks (id, claim_text, env) VALUES (10000 + {i}, 'old {i}', 'dev')",
                    "UPDATE checks SET claim_text = 'old update {i}' WHERE id = {i} + 1"]
RENAME_CLAIM_NEW = ["INSERT INTO checks (id, claim, env) VALUES (20000 + {i}, 'new {i}', 'dev')",
                    "UPDATE checks SET claim = 'new update {i}' WHERE id = {i} + 100"]

RETYPE_AGG = {"rename_column": {"table": "checks", "from": "aggregation", "to": "config_json", "type": "jsonb",
                                "up": "aggregation::jsonb", "down": "config_json::text"}}
RETYPE_AGG_OLD = ["INSERT INTO checks (id, aggregation) VALUES (10000 + {i}, '{{\"o\": {i}}}')",
                  "UPDATE checks SET aggregation = '{{\"ou\": {i}}}' WHERE id = {i} + 1",
                  "INSERT INTO checks (id, claim_text) VALUES (15000 + {i}, 'old default {i}')"]
RETYPE_AGG_NEW = ["INSERT INTO checks (id, config_json) VALUES (20000 + {i}, '{{\"n\": {i}}}')",
                  "UPDATE checks SET config_json = '{{\"nu\": {i}}}' WHERE id = {i} + 100",
                  "INSERT INTO checks (id, claim_text) VALUES (25000 + {i}, 'new default {i}')"]

PRICE_NUMERIC = {"alter_column": {"table": "checks", "column": "price", "type": "numeric(10,2)",
                                  "up": "price::numeric(10,2)", "down": "price::text"}}
PRICE_NUMERIC_OFFLINE = "ALTER TABLE checks ALTER COLUMN price TYPE numeric(10,2) USING price::numeric(10,2)"
PRICE_OLD = ["INSERT INTO checks (id, price) VALUES (10000 + {i}, '{i}.5')",
             "UPDATE checks SET price = '{i}.75' WHERE id = {i} + 1"]
PRICE_NEW = ["INSERT INTO checks (id, price) VALUES (20000 + {i}, {i}.25)",
             "UPDATE checks SET price = {i}.5 WHERE id = {i} + 100"]


def case(extra="", ops=(RENAME_CLAIM,), offline=RENAME_CLAIM_OFFLINE, old=RENAME_CLAIM_OLD, new=RENAME_CLAIM_NEW,
         tables=("checks", "accounts"), before_tables=None, refused=None, carried=(), base=BASE, rollback_keeps=None,
         rollback_keeps_rows=None):
    """offline: the DDL, or a list of scripts run one after the other (what
    must commit before the next uses it). rollback_keeps: the statements
    whose effect a rollback keeps (an enum value: Postgres cannot remove
    one); the schema after the rollback is the start's with them run.
    rollback_keeps_rows: the data statements whose rows a rollback keeps
    (update_rows: data is not part of the shape a rollback restores); the
    rows after it are the start's with them run."""
    return {"base": base + extra, "ops": ops if isinstance(ops, str) else list(ops), "offline": offline, "old": old, "new": new,
            "tables": tables, "before_tables": before_tables or tables, "refused": refused, "carried": carried,
            "rollback_keeps": rollback_keeps, "rollback_keeps_rows": rollback_keeps_rows}


CASES = {
    # a view and a materialized view read the renamed column; the view has
    # options, a comment and grants, and keeps its output column name
    "view_reads_renamed_column": case(
        "CREATE VIEW open_checks WITH (security_barrier) AS SELECT id, claim_text, env FROM checks"
        " WHERE status = 'open';"
        "COMMENT ON VIEW open_checks IS 'checks still open';"
        "GRANT SELECT ON open_checks TO app;"
        "CREATE MATERIALIZED VIEW claims_per_env AS SELECT env, count(claim_text) AS n FROM checks GROUP BY env;",
        carried=['-- CARRIED operations[0].rename_column: renames column "claim_text" to "claim" at contract, '
                 'moving no data']),
    "check_on_renamed_column": case(
        "ALTER TABLE checks ADD CONSTRAINT checks_claim_len CHECK (length(claim_text) < 500);"),
    "indexes_on_renamed_column": case(
        "CREATE UNIQUE INDEX checks_open_claim ON checks (claim_text) WHERE status = 'open';"
        "CREATE INDEX checks_claim_lower ON checks (lower(claim_text));"
        "CREATE INDEX checks_env_incl ON checks (env) INCLUDE (claim_text);"
        "CREATE INDEX checks_env_claim ON checks (env, claim_text DESC);"
        "CREATE INDEX checks_claim_hash ON checks USING hash (claim_text);"
        "ALTER TABLE checks ADD CONSTRAINT checks_claim_env_key UNIQUE (claim_text, env);"),
    "foreign_keys_both_directions": case(
        ops=[{"rename_column": {"table": "accounts", "from": "code", "to": "ref"}},
             {"rename_column": {"table": "checks", "from": "account_code", "to": "account_ref"}}],
        offline="ALTER TABLE accounts RENAME COLUMN code TO ref;"
                "ALTER TABLE checks RENAME COLUMN account_code TO account_ref",
        old=["INSERT INTO accounts (id, code) VALUES (1000 + {i}, 'old {i}')",
             "INSERT INTO checks (id, account_code) VALUES (10000 + {i}, 'old {i}')"],
        new=["INSERT INTO accounts (id, ref) VALUES (2000 + {i}, 'new {i}')",
             "INSERT INTO checks (id, account_ref) VALUES (20000 + {i}, 'new {i}')",
             "UPDATE checks SET account_ref = 'c7' WHERE id = {i} + 100"]),
    "comments_grants_not_null_statistics": case(
        "COMMENT ON COLUMN checks.claim_text IS 'The claim as submitted';"
        "GRANT SELECT (id, claim_text), UPDATE (claim_text) ON checks TO app;"
        "ALTER TABLE checks ALTER COLUMN claim_text SET STATISTICS 500;"),
    "many_dependents_on_one_column": case(
        "CREATE VIEW open_checks AS SELECT id, claim_text FROM checks WHERE status = 'open';"
        "ALTER TABLE checks ADD CONSTRAINT checks_claim_len CHECK (length(claim_text) < 500);"
        "CREATE UNIQUE INDEX checks_open_claim ON checks (claim_text) WHERE status = 'open';"
        "CREATE INDEX checks_claim ON checks (claim_text);"
        "COMMENT ON COLUMN checks.claim_text IS 'The claim';"
        "GRANT SELECT (claim_text) ON checks TO app;"
        "ALTER TABLE checks ALTER COLUMN claim_text SET STATISTICS 300;"),
    "retype_rename_with_default": case(
        ops=[{"rename_column": dict(RETYPE_AGG["rename_column"], default="'{}'::jsonb")}],
        offline="ALTER TABLE checks RENAME COLUMN aggregation TO config_json;"
                "ALTER TABLE checks ALTER COLUMN config_json DROP DEFAULT,"
                " ALTER COLUMN config_json TYPE jsonb USING config_json::jsonb,"
                " ALTER COLUMN config_json SET DEFAULT '{}'::jsonb",
        old=RETYPE_AGG_OLD, new=RETYPE_AGG_NEW),
    "retype_rename_default_not_castable": case(
        "ALTER TABLE checks ALTER COLUMN aggregation SET DEFAULT 'none';",
        ops=[RETYPE_AGG], offline=None, refused=["operations[0].rename_column", "default", "\"default\""]),
    # the views are dropped and created again in the contract; the view keeps
    # its output column name, as after an offline RENAME COLUMN
    "retype_rename_read_by_view": case(
        "CREATE VIEW aggs WITH (security_barrier) AS SELECT id, aggregation FROM checks WHERE status = 'open';"
        "COMMENT ON VIEW aggs IS 'open aggregations';"
        "GRANT SELECT ON aggs TO app;"
        "CREATE MATERIALIZED VIEW agg_counts AS SELECT aggregation, count(*) AS n FROM checks GROUP BY aggregation;"
        "CREATE INDEX agg_counts_n ON agg_counts (n);",
        ops=[{"rename_column": dict(RETYPE_AGG["rename_column"], default="'{}'::jsonb")}],
        offline="DROP MATERIALIZED VIEW agg_counts; DROP VIEW aggs;"
                "ALTER TABLE checks RENAME COLUMN aggregation TO config_json;"
                "ALTER TABLE checks ALTER COLUMN config_json DROP DEFAULT,"
                " ALTER COLUMN config_json TYPE jsonb USING config_json::jsonb,"
                " ALTER COLUMN config_json SET DEFAULT '{}'::jsonb;"
                "CREATE VIEW aggs WITH (security_barrier) AS SELECT id, config_json AS aggregation FROM checks"
                " WHERE status = 'open';"
                "COMMENT ON VIEW aggs IS 'open aggregations';"
                "GRANT SELECT ON aggs TO app;"
                "CREATE MATERIALIZED VIEW agg_counts AS SELECT config_json AS aggregation, count(*) AS n FROM checks"
                " GROUP BY config_json;"
                "CREATE INDEX agg_counts_n ON agg_counts (n);",
        old=RETYPE_AGG_OLD, new=RETYPE_AGG_NEW,
        carried=["view aggs: dropped at contract", "materialized view agg_counts: dropped at contract"]),
    # what goes with the column offline goes with it online
    "drop_column_takes_its_index_and_check": case(
        "CREATE INDEX checks_price ON checks (price);"
        "ALTER TABLE checks ADD CONSTRAINT checks_price_len CHECK (length(price) < 40);",
        ops=[{"drop_column": {"table": "checks", "column": "price"}}],
        offline="ALTER TABLE checks DROP COLUMN price",
        old=["INSERT INTO checks (id, price) VALUES (10000 + {i}, '{i}.5')"],
        new=["INSERT INTO checks (id, claim_text) VALUES (20000 + {i}, 'new {i}')"]),
    "drop_column_read_by_view": case(
        "CREATE VIEW prices AS SELECT id, price FROM checks;",
        ops=[{"drop_column": {"table": "checks", "column": "price"}}], offline=None,
        refused=["operations[0].drop_column", "prices"]),
    "table_without_primary_key": case(
        "CREATE TABLE events (kind text, payload text);"
        "INSERT INTO events SELECT 'k' || g, 'p' || g FROM generate_series(1, 20) g;",
        ops=[{"rename_column": {"table": "events", "from": "payload", "to": "body", "copy": True}}], offline=None,
        refused=["operations[0].rename_column", "events", "no primary key"]),
    "rename_without_primary_key": case(
        "CREATE TABLE events (kind text, payload text);"
        "INSERT INTO events SELECT 'k' || g, 'p' || g FROM generate_series(1, 20) g;",
        ops=[{"rename_column": {"table": "events", "from": "payload", "to": "body"}}],
        offline="ALTER TABLE events RENAME COLUMN payload TO body",
        old=["INSERT INTO events VALUES ('old {i}', 'po {i}')", "UPDATE events SET payload = 'pu {i}' WHERE kind = 'k1'"],
        new=["INSERT INTO events VALUES ('new {i}', 'pn {i}')", "UPDATE events SET body = 'nu {i}' WHERE kind = 'k2'"],
        tables=("events",)),
    # changes Postgres makes in the catalog alone, in place: no second column
    "widen_varchar_in_place": case(
        "ALTER TABLE checks ADD COLUMN code varchar(20); CREATE INDEX checks_code ON checks (code);"
        "UPDATE checks SET code = 'k' || id;",
        ops=[{"alter_column": {"table": "checks", "column": "code", "type": "varchar(80)"}},
             {"alter_column": {"table": "checks", "column": "price", "type": "varchar(40)", "up": "price",
                               "down": "price"}}],
        offline="ALTER TABLE checks ALTER COLUMN code TYPE varchar(80);"
                "ALTER TABLE checks ALTER COLUMN price TYPE varchar(40)",
        old=["INSERT INTO checks (id, code) VALUES (10000 + {i}, 'old {i}')",
             "UPDATE checks SET code = 'old update {i}' WHERE id = {i} + 1"],
        new=["INSERT INTO checks (id, code) VALUES (20000 + {i}, 'new {i}')",
             "UPDATE checks SET code = 'new update {i}' WHERE id = {i} + 100"],
        carried=['-- CARRIED operations[0].alter_column: type of "code": changed in the catalog at contract']),
    "rename_widen_in_place": case(
        "ALTER TABLE checks ADD COLUMN code varchar(20); CREATE INDEX checks_code ON checks (code);"
        "UPDATE checks SET code = 'k' || id;",
        ops=[{"rename_column": {"table": "checks", "from": "code", "to": "ref", "type": "varchar(80)"}}],
        offline="ALTER TABLE checks ALTER COLUMN code TYPE varchar(80);"
                "ALTER TABLE checks RENAME COLUMN code TO ref",
        old=["INSERT INTO checks (id, code) VALUES (10000 + {i}, 'old {i}')",
             "UPDATE checks SET code = 'old update {i}' WHERE id = {i} + 1"],
        new=["INSERT INTO checks (id, ref) VALUES (20000 + {i}, 'new {i}')",
             "UPDATE checks SET ref = 'new update {i}' WHERE id = {i} + 100"],
        carried=['renames column "code" to "ref" at contract and changes its type in the catalog, moving no data']),
    "default_and_not_null_in_place": case(
        ops=[{"alter_column": {"table": "checks", "column": "status", "default": "'closed'"}},
             {"alter_column": {"table": "checks", "column": "env", "nullable": True, "default": None}},
             {"alter_column": {"table": "checks", "column": "aggregation", "nullable": False}}],
        offline="ALTER TABLE checks ALTER COLUMN status SET DEFAULT 'closed';"
                "ALTER TABLE checks ALTER COLUMN env DROP NOT NULL, ALTER COLUMN env DROP DEFAULT;"
                "ALTER TABLE checks ALTER COLUMN aggregation SET NOT NULL",
        old=["INSERT INTO checks (id, claim_text) VALUES (10000 + {i}, 'old {i}')",
             "UPDATE checks SET status = 'old update' WHERE id = {i} + 1"],
        new=["INSERT INTO checks (id, claim_text, env) VALUES (20000 + {i}, 'new {i}', 'dev')",
             "UPDATE checks SET status = 'new update' WHERE id = {i} + 100"]),
    "two_operations_on_one_table": case(
        "CREATE INDEX checks_claim ON checks (claim_text);"
        "COMMENT ON COLUMN checks.claim_text IS 'The claim';",
        ops=[RENAME_CLAIM,
             {"alter_column": {"table": "checks", "column": "price", "type": "numeric(10,2)",
                               "up": "price::numeric(10,2)", "down": "price::text"}},
             {"create_index": {"table": "checks", "name": "checks_env_price", "columns": ["env", "price"]}}],
        offline=RENAME_CLAIM_OFFLINE + ";"
                "ALTER TABLE checks ALTER COLUMN price TYPE numeric(10,2) USING price::numeric(10,2);"
                "CREATE INDEX checks_env_price ON checks (env, price)",
        old=RENAME_CLAIM_OLD + ["INSERT INTO checks (id, price) VALUES (12000 + {i}, '{i}.5')"],
        new=RENAME_CLAIM_NEW + ["INSERT INTO checks (id, price) VALUES (22000 + {i}, {i}.25)"]),
    # a change of type moves the column's simple indexes, NOT NULL, comment,
    # grants and statistics target to the new column
    "retype_carries_column_properties": case(
        "CREATE INDEX checks_price ON checks (price);"
        "CREATE UNIQUE INDEX checks_id_price ON checks (id, price);"
        "ALTER TABLE checks ALTER COLUMN price SET NOT NULL;"
        "COMMENT ON COLUMN checks.price IS 'Price as entered';"
        "GRANT SELECT (price), UPDATE (price) ON checks TO app;"
        "ALTER TABLE checks ALTER COLUMN price SET STATISTICS 250;",
        ops=[PRICE_NUMERIC], offline=PRICE_NUMERIC_OFFLINE, old=PRICE_OLD, new=PRICE_NEW,
        carried=['index "checks_price": built CONCURRENTLY on "_pgtandem_price"', 'index "checks_id_price"',
                 "column privilege SELECT to app", "statistics target of \"price\"", "NOT NULL: a CHECK NOT VALID",
                 'comment of "price"']),
    # length(numeric) does not exist: an offline ALTER COLUMN ... TYPE refuses too
    "retype_with_check_refused": case(
        "ALTER TABLE checks ADD CONSTRAINT checks_price_len CHECK (length(price) < 40);",
        ops=[PRICE_NUMERIC], offline=None,
        refused=["operations[0].alter_column", "checks_price_len", "numeric(10,2)", "length(numeric) does not exist",
                 "create_constraint"]),
    "retype_with_partial_index": case(
        "CREATE INDEX checks_open_price ON checks (price) WHERE status = 'open';",
        ops=[PRICE_NUMERIC], offline=PRICE_NUMERIC_OFFLINE, old=PRICE_OLD, new=PRICE_NEW,
        carried=['index "checks_open_price": built CONCURRENTLY on "_pgtandem_price" at expand from its definition']),
    "rename_table_with_dependents": case(
        "CREATE VIEW recent_accounts AS SELECT id, code FROM accounts WHERE id > 10;"
        "COMMENT ON TABLE accounts IS 'customer accounts';",
        ops=[{"rename_table": {"from": "accounts", "to": "customers"}}],
        offline="ALTER TABLE accounts RENAME TO customers",
        old=["INSERT INTO accounts (id, code) VALUES (1000 + {i}, 'old {i}')"],
        new=["INSERT INTO customers (id, code) VALUES (2000 + {i}, 'new {i}')"],
        tables=("checks", "customers"), before_tables=("checks", "accounts")),
    # a change of type re-checks CHECK constraints on the new type: they are
    # added NOT VALID on the second column, validated after the backfill and
    # renamed at contract (one of them, NO INHERIT, was never validated)
    "retype_with_checks": case(
        "ALTER TABLE checks ADD CONSTRAINT checks_price_positive CHECK (price::numeric >= 0);"
        "ALTER TABLE checks ADD CONSTRAINT checks_price_open CHECK (price IS NOT NULL OR status <> 'closed');"
        "ALTER TABLE checks ADD CONSTRAINT checks_price_small CHECK (price::numeric < 100000) NO INHERIT NOT VALID;",
        ops=[PRICE_NUMERIC], offline=PRICE_NUMERIC_OFFLINE, old=PRICE_OLD, new=PRICE_NEW,
        carried=['CHECK constraint "checks_price_positive": added NOT VALID on "_pgtandem_price"',
                 'CHECK constraint "checks_price_open"', 'CHECK constraint "checks_price_small"']),
    "retype_rename_with_check": case(
        "ALTER TABLE checks ADD CONSTRAINT checks_agg_set CHECK (aggregation IS NOT NULL OR env = 'dev');",
        ops=[{"rename_column": dict(RETYPE_AGG["rename_column"], default="'{}'::jsonb")}],
        offline="ALTER TABLE checks RENAME COLUMN aggregation TO config_json;"
                "ALTER TABLE checks ALTER COLUMN config_json DROP DEFAULT,"
                " ALTER COLUMN config_json TYPE jsonb USING config_json::jsonb,"
                " ALTER COLUMN config_json SET DEFAULT '{}'::jsonb",
        old=RETYPE_AGG_OLD, new=RETYPE_AGG_NEW,
        carried=['CHECK constraint "checks_agg_set": added NOT VALID on "config_json"']),
    # expressions, predicates, INCLUDE columns, ordering and access methods
    "retype_with_rich_indexes": case(
        "CREATE INDEX checks_price_double ON checks ((price::numeric * 2));"
        "CREATE INDEX checks_env_incl_price ON checks (env) INCLUDE (price);"
        "CREATE INDEX checks_price_desc ON checks (price DESC NULLS LAST, env);"
        "CREATE INDEX checks_price_hash ON checks USING hash (price);"
        "CREATE UNIQUE INDEX checks_open_id_price ON checks (id, price) WHERE status = 'open';",
        ops=[PRICE_NUMERIC], offline=PRICE_NUMERIC_OFFLINE, old=PRICE_OLD, new=PRICE_NEW,
        carried=['index "checks_price_double"', 'index "checks_env_incl_price"', 'index "checks_price_desc"',
                 'index "checks_price_hash"', 'index "checks_open_id_price"']),
    # text_pattern_ops is an operator class of text only
    "retype_index_opclass_refused": case(
        "CREATE INDEX checks_price_pattern ON checks (price text_pattern_ops);",
        ops=[PRICE_NUMERIC], offline=None,
        refused=["operations[0].alter_column", "checks_price_pattern", "text_pattern_ops", "drop_index"]),
    "retype_read_by_view": case(
        "CREATE VIEW prices AS SELECT id, price, status FROM checks;"
        "COMMENT ON COLUMN prices.price IS 'as entered';"
        "CREATE VIEW open_price_ids WITH (check_option = local) AS SELECT id FROM checks WHERE price IS NOT NULL;",
        ops=[PRICE_NUMERIC],
        offline="DROP VIEW open_price_ids; DROP VIEW prices;" + PRICE_NUMERIC_OFFLINE + ";"
                "CREATE VIEW prices AS SELECT id, price, status FROM checks;"
                "COMMENT ON COLUMN prices.price IS 'as entered';"
                "CREATE VIEW open_price_ids WITH (check_option = local) AS SELECT id FROM checks WHERE price IS NOT NULL;",
        old=PRICE_OLD, new=PRICE_NEW, carried=["view prices: dropped at contract",
                                               "view open_price_ids: dropped at contract"]),
    # a view reading a view that reads the column goes and comes back with it
    "retype_read_by_view_of_view": case(
        "CREATE VIEW prices AS SELECT id, price, status FROM checks;"
        "CREATE VIEW open_prices AS SELECT id, price FROM prices WHERE status = 'open';"
        "GRANT SELECT ON open_prices TO app;",
        ops=[PRICE_NUMERIC],
        offline="DROP VIEW open_prices; DROP VIEW prices;" + PRICE_NUMERIC_OFFLINE + ";"
                "CREATE VIEW prices AS SELECT id, price, status FROM checks;"
                "CREATE VIEW open_prices AS SELECT id, price FROM prices WHERE status = 'open';"
                "GRANT SELECT ON open_prices TO app;",
        old=PRICE_OLD, new=PRICE_NEW, carried=["view prices: dropped at contract",
                                               "view open_prices: dropped at contract"]),
    "retype_view_refused": case(
        "CREATE VIEW price_lengths AS SELECT id, length(price) AS n FROM checks;",
        ops=[PRICE_NUMERIC], offline=None,
        refused=["operations[0].alter_column", "price_lengths", "length(numeric) does not exist"]),
}


# Identity, owned sequences, generated columns, row-level security, user
# triggers and EXCLUDE constraints, for each kind of operation. Writers give
# identity and serial columns explicit values (generated ones are computed),
# so both twins end with the same rows whatever the interleaving.
IDENTITY = "ALTER TABLE checks ADD COLUMN seq_no bigint GENERATED BY DEFAULT AS IDENTITY;"
SERIAL = "ALTER TABLE checks ADD COLUMN ticket serial;"
GENERATED = "ALTER TABLE checks ADD COLUMN price_len int GENERATED ALWAYS AS (length(price)) STORED;"
POLICY = ("ALTER TABLE checks ENABLE ROW LEVEL SECURITY;"
          "CREATE POLICY checks_visible ON checks FOR SELECT TO app USING (status = 'open' AND {col} <> '');")
# An UPDATE OF trigger, a WHEN (NEW.col ...) trigger and a function that reads
# the column by name (it fires for the old release's 'audit' rows only: after
# the change, offline as online, it would fail on the missing name).
TRIGGERS = """
CREATE TABLE check_log (check_id bigint, what text, val text);
CREATE FUNCTION log_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO check_log VALUES (NEW.id, TG_NAME, NULL); RETURN NEW; END $$;
CREATE FUNCTION log_value() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO check_log VALUES (NEW.id, TG_NAME, NEW.{col}::text); RETURN NEW; END $$;
CREATE TRIGGER checks_{col}_changed AFTER UPDATE OF {col} ON checks FOR EACH ROW EXECUTE FUNCTION log_touch();
CREATE TRIGGER checks_{col}_flagged AFTER INSERT ON checks FOR EACH ROW WHEN (NEW.{col} LIKE '%7%')
    EXECUTE FUNCTION log_touch();
CREATE TRIGGER checks_audit BEFORE INSERT ON checks FOR EACH ROW WHEN (NEW.env = 'audit')
    EXECUTE FUNCTION log_value();
"""
STATISTICS_AND_TRIGGER = """
CREATE STATISTICS checks_claim_status ON claim_text, status FROM checks;
CREATE FUNCTION keep_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER checks_claim_text_guarded BEFORE UPDATE OF claim_text ON checks FOR EACH ROW
    EXECUTE FUNCTION keep_row();
"""
EXCLUDE = "ALTER TABLE checks ADD CONSTRAINT checks_{col}_excl EXCLUDE USING btree ({col} WITH =);"

AUDIT_OLD = ["INSERT INTO checks (id, claim_text, price, env) VALUES (30000 + {i}, 'audit {i}', '{i}.1', 'audit')"]
PRICE_RENAME = {"rename_column": {"table": "checks", "from": "price", "to": "amount"}}
PRICE_RENAME_OLD = ["INSERT INTO checks (id, price) VALUES (10000 + {i}, '{i}.5')",
                    "UPDATE checks SET price = '{i}.75' WHERE id = {i} + 1"]
PRICE_RENAME_NEW = ["INSERT INTO checks (id, amount) VALUES (20000 + {i}, '{i}.25')",
                    "UPDATE checks SET amount = '{i}.125' WHERE id = {i} + 100"]
WITH_LOG = ("checks", "accounts", "check_log")


def drop(col, old, new=("INSERT INTO checks (id, claim_text) VALUES (20000 + {i}, 'new {i}')",), extra="",
         refused=None, tables=("checks", "accounts")):
    return case(extra, ops=[{"drop_column": {"table": "checks", "column": col}}],
                offline=None if refused else "ALTER TABLE checks DROP COLUMN " + col,
                old=list(old), new=list(new), refused=refused, tables=tables)


def retype_refused(extra, column, typ, want):
    return case(extra, ops=[{"alter_column": {"table": "checks", "column": column, "type": typ,
                                              "up": "%s::%s" % (column, typ), "down": "%s::text" % column}}],
                offline=None, refused=["operations[0].alter_column"] + want)


CASES_MORE = {
    # same-type renames: the original column is kept, so everything follows
    "identity_column_renamed": case(
        IDENTITY, ops=[{"rename_column": {"table": "checks", "from": "seq_no", "to": "ordinal"}}],
        offline="ALTER TABLE checks RENAME COLUMN seq_no TO ordinal",
        old=["INSERT INTO checks (id, seq_no) VALUES (10000 + {i}, 5000 + {i})",
             "UPDATE checks SET seq_no = 7000 + {i} WHERE id = {i} + 1"],
        new=["INSERT INTO checks (id, ordinal) VALUES (20000 + {i}, 6000 + {i})",
             "UPDATE checks SET ordinal = 8000 + {i} WHERE id = {i} + 100"]),
    "owned_sequence_column_renamed": case(
        SERIAL, ops=[{"rename_column": {"table": "checks", "from": "ticket", "to": "ticket_no"}}],
        offline="ALTER TABLE checks RENAME COLUMN ticket TO ticket_no",
        old=["INSERT INTO checks (id, ticket) VALUES (10000 + {i}, 5000 + {i})",
             "UPDATE checks SET ticket = 7000 + {i} WHERE id = {i} + 1"],
        new=["INSERT INTO checks (id, ticket_no) VALUES (20000 + {i}, 6000 + {i})",
             "UPDATE checks SET ticket_no = 8000 + {i} WHERE id = {i} + 100"]),
    "generated_column_reads_renamed_column": case(
        GENERATED, ops=[PRICE_RENAME], offline="ALTER TABLE checks RENAME COLUMN price TO amount",
        old=PRICE_RENAME_OLD, new=PRICE_RENAME_NEW),
    "generated_column_renamed": case(
        GENERATED, ops=[{"rename_column": {"table": "checks", "from": "price_len", "to": "price_chars"}}],
        offline="ALTER TABLE checks RENAME COLUMN price_len TO price_chars",
        old=PRICE_RENAME_OLD[:1], new=["INSERT INTO checks (id, price) VALUES (20000 + {i}, '{i}.25')",
                                       "UPDATE checks SET price = '{i}.125' WHERE id = {i} + 100"]),
    "policy_reads_renamed_column": case(POLICY.format(col="claim_text")),
    "triggers_name_renamed_column": case(
        TRIGGERS.format(col="claim_text"), old=RENAME_CLAIM_OLD + AUDIT_OLD, tables=WITH_LOG),
    "exclude_on_renamed_column": case(EXCLUDE.format(col="claim_text")),
    # drop_column: what goes with the column offline goes with it online
    "drop_identity_column": drop("seq_no", ["INSERT INTO checks (id, seq_no) VALUES (10000 + {i}, 5000 + {i})"],
                                 extra=IDENTITY),
    "drop_owned_sequence_column": drop("ticket", ["INSERT INTO checks (id, ticket) VALUES (10000 + {i}, {i})"],
                                       extra=SERIAL),
    "drop_generated_column": drop("price_len", ["INSERT INTO checks (id, price) VALUES (10000 + {i}, '{i}.5')"],
                                  extra=GENERATED),
    "drop_column_in_exclude": drop("price", ["INSERT INTO checks (id, price) VALUES (10000 + {i}, '{i}.5')"],
                                   extra=EXCLUDE.format(col="price")),
    "drop_column_read_by_trigger_function": drop(
        "price", ["INSERT INTO checks (id, price) VALUES (10000 + {i}, '{i}.5')"] + AUDIT_OLD,
        extra=TRIGGERS.format(col="claim_text").replace("NEW.claim_text::text", "NEW.price"), tables=WITH_LOG),
    # ... and what an offline DROP COLUMN refuses without CASCADE is refused
    "drop_column_read_by_generated_column": drop(
        "price", [], extra=GENERATED, refused=["operations[0].drop_column", "price_len", "CASCADE",
                                               "earlier migration"]),
    "drop_column_in_policy": drop(
        "claim_text", [], extra=POLICY.format(col="claim_text"),
        refused=["operations[0].drop_column", "policy checks_visible", "earlier migration"]),
    "drop_column_named_by_triggers": drop(
        "claim_text", [], extra=TRIGGERS.format(col="claim_text"),
        refused=["operations[0].drop_column", "trigger checks_claim_text_", "earlier migration"]),
    # extended statistics go with the column offline; the UPDATE OF trigger beside them still refuses
    "drop_column_in_statistics_and_trigger": drop(
        "claim_text", [], extra=STATISTICS_AND_TRIGGER,
        refused=["operations[0].drop_column", "trigger checks_claim_text_guarded", "earlier migration"]),
    # rename_table: the table is renamed at expand, everything on it follows
    "rename_table_with_every_kind": case(
        "ALTER TABLE accounts ADD COLUMN seq_no bigint GENERATED BY DEFAULT AS IDENTITY,"
        " ADD COLUMN ticket serial, ADD COLUMN code_len int GENERATED ALWAYS AS (length(code)) STORED,"
        " ADD CONSTRAINT accounts_label_excl EXCLUDE USING btree (label WITH =);"
        "ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;"
        "CREATE POLICY accounts_own ON accounts FOR SELECT TO app USING (code <> '');"
        "CREATE TABLE account_log (account_id bigint, what text);"
        "CREATE FUNCTION log_account() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN INSERT INTO account_log VALUES (NEW.id, TG_NAME); RETURN NEW; END $$;"
        "CREATE TRIGGER accounts_label_changed AFTER UPDATE OF label ON accounts FOR EACH ROW"
        " EXECUTE FUNCTION log_account();"
        "CREATE TRIGGER accounts_flagged AFTER INSERT ON accounts FOR EACH ROW WHEN (NEW.code LIKE '%7%')"
        " EXECUTE FUNCTION log_account();",
        ops=[{"rename_table": {"from": "accounts", "to": "customers"}}],
        offline="ALTER TABLE accounts RENAME TO customers",
        old=["INSERT INTO accounts (id, code, seq_no, ticket) VALUES (1000 + {i}, 'old {i}', 500 + {i}, {i})",
             "UPDATE accounts SET label = 'old upd {i}' WHERE id = {i} + 1"],
        new=["INSERT INTO customers (id, code, seq_no, ticket) VALUES (2000 + {i}, 'new {i}', 600 + {i}, {i})",
             "UPDATE customers SET label = 'new upd {i}' WHERE id = {i} + 31"],
        tables=("checks", "customers", "account_log"), before_tables=("checks", "accounts", "account_log")),
    # a change of type: refused before DDL when a dependent cannot follow
    "retype_identity_column_refused": retype_refused(IDENTITY, "seq_no", "numeric", ["seq_no", "identity"]),
    # a serial column widened: its sequence follows it and is made AS bigint
    # (which the offline ALTER COLUMN forgets, so the twin says it)
    "retype_serial_column": case(
        SERIAL, ops=[{"alter_column": {"table": "checks", "column": "ticket", "type": "bigint",
                                       "up": "ticket::bigint", "down": "ticket::int"}}],
        offline="ALTER TABLE checks ALTER COLUMN ticket TYPE bigint; ALTER SEQUENCE checks_ticket_seq AS bigint",
        old=["INSERT INTO checks (id, ticket) VALUES (10000 + {i}, 500 + {i})",
             "UPDATE checks SET ticket = 700 + {i} WHERE id = {i} + 1"],
        new=["INSERT INTO checks (id, ticket) VALUES (20000 + {i}, 900 + {i})",
             "UPDATE checks SET ticket = 1100 + {i} WHERE id = {i} + 100"]),
    "retype_generated_column_refused": retype_refused(GENERATED, "price_len", "bigint", ["price_len", "generated"]),
    "retype_column_read_by_generated_column_refused": retype_refused(
        GENERATED, "price", "numeric", ["price_len", "generated"]),
    "retype_column_in_policy_refused": retype_refused(
        POLICY.format(col="price"), "price", "numeric", ["policy checks_visible"]),
    "retype_column_named_by_triggers_refused": retype_refused(
        TRIGGERS.format(col="price"), "price", "numeric", ["trigger checks_price_"]),
    "retype_column_in_exclude_refused": retype_refused(
        EXCLUDE.format(col="price"), "price", "numeric", ["checks_price_excl"]),
    "retype_rename_identity_and_policy_refused": case(
        IDENTITY + POLICY.format(col="seq_no::text"),
        ops=[{"rename_column": {"table": "checks", "from": "seq_no", "to": "ordinal", "type": "numeric",
                                "up": "seq_no::numeric", "down": "ordinal::bigint"}}],
        offline=None, refused=["operations[0].rename_column", "\"seq_no\"", "identity column", "add_column"]),
}
CASES.update(CASES_MORE)

# Key columns running out of room: int -> bigint of a primary key with the
# foreign keys pointing at it. The offline twin widens the serial's sequence
# too (an offline ALTER COLUMN leaves it AS integer; pgtandem widens it with
# the column so inserts go on past 2,147,483,647).
MEMBERS = ("CREATE TABLE members (id {key} PRIMARY KEY, name text);"
           "CREATE TABLE member_orders (id bigserial PRIMARY KEY, member_id integer NOT NULL REFERENCES members (id),"
           " amount int);"
           "CREATE INDEX member_orders_member ON member_orders (member_id);"
           "CREATE TABLE member_notes (id serial PRIMARY KEY, member_id integer REFERENCES members (id) ON DELETE CASCADE,"
           " note text);"
           "INSERT INTO members {overriding} SELECT g, 'm' || g FROM generate_series(1, 200) g;"
           "SELECT setval(pg_get_serial_sequence('members', 'id'), 200);"
           "INSERT INTO member_orders (member_id, amount) SELECT g % 200 + 1, g FROM generate_series(1, 600) g;"
           "INSERT INTO member_notes (member_id, note) SELECT g, 'n' || g FROM generate_series(1, 200, 3) g;")
MEMBER_TABLES = ("members", "member_orders", "member_notes")
WIDEN_MEMBERS = {"alter_column": {"table": "members", "column": "id", "type": "bigint",
                                  "up": "id::bigint", "down": "id::int"}}
WIDEN_MEMBER_ORDERS = {"alter_column": {"table": "member_orders", "column": "member_id", "type": "bigint",
                                        "up": "member_id::bigint", "down": "member_id::int"}}
MEMBERS_OLD = ["INSERT INTO members (id, name) {overriding} VALUES (1000 + {{i}}, 'old {{i}}')",
               "INSERT INTO member_orders (id, member_id, amount) VALUES (10000 + {{i}}, 1000 + {{i}}, {{i}})",
               "UPDATE members SET name = 'old update {{i}}' WHERE id = {{i}} + 1",
               "UPDATE member_orders SET member_id = {{i}} + 1 WHERE id = {{i}} + 1",
               "INSERT INTO member_notes (id, member_id, note) VALUES (1000 + {{i}}, 1000 + {{i}}, 'old')"]
MEMBERS_NEW = ["INSERT INTO members (id, name) {overriding} VALUES (2000 + {{i}}, 'new {{i}}')",
               "INSERT INTO member_orders (id, member_id, amount) VALUES (20000 + {{i}}, 2000 + {{i}}, -{{i}})",
               "UPDATE members SET name = 'new update {{i}}' WHERE id = {{i}} + 100",
               "UPDATE member_orders SET member_id = {{i}} + 100 WHERE id = {{i}} + 100"]


def members_case(key="serial", overriding="", ops=(WIDEN_MEMBERS, WIDEN_MEMBER_ORDERS), offline="", new=None):
    return case(MEMBERS.format(key=key, overriding=overriding), ops=ops, offline=offline,
                old=[s.format(overriding=overriding) for s in MEMBERS_OLD],
                new=new if new is not None else [s.format(overriding=overriding) for s in MEMBERS_NEW],
                tables=MEMBER_TABLES)


CASES_KEYS = {
    # serial key and the foreign key of one referencing table widened
    # together; the other referencing table keeps its integer column, its
    # key re-pointed at the new column
    "widen_serial_key_with_foreign_keys": members_case(
        offline="ALTER TABLE members ALTER COLUMN id TYPE bigint; ALTER SEQUENCE members_id_seq AS bigint;"
                "ALTER TABLE member_orders ALTER COLUMN member_id TYPE bigint"),
    # an identity key: the identity moves to the new column at contract,
    # under the same sequence; the referencing tables keep integer columns
    "widen_identity_key_referenced_by_two_tables": members_case(
        key="int GENERATED ALWAYS AS IDENTITY", overriding="OVERRIDING SYSTEM VALUE", ops=(WIDEN_MEMBERS,),
        offline="ALTER TABLE members ALTER COLUMN id TYPE bigint",
        new=["INSERT INTO members (id, name) OVERRIDING SYSTEM VALUE VALUES (2000 + {i}, 'new {i}')",
             "UPDATE members SET name = 'new update {i}' WHERE id = {i} + 100"]),
    # no up/down: casts, and a foreign key of the widened referencing
    # column alone (the key stays integer)
    "widen_referencing_column_only": members_case(
        ops=({"alter_column": {"table": "member_orders", "column": "member_id", "type": "bigint"}},),
        offline="ALTER TABLE member_orders ALTER COLUMN member_id TYPE bigint",
        new=["INSERT INTO member_orders (id, member_id, amount) VALUES (20000 + {i}, {i} + 1, -{i})",
             "UPDATE member_orders SET member_id = {i} + 100 WHERE id = {i} + 100"]),
}
CASES.update(CASES_KEYS)


# What Postgres would refuse at the contract or after it (once the new
# release is out), or what would do nothing, is refused before the first
# DDL; what takes the obstacle away earlier in the same migration is not.
REGIONS = ("CREATE TABLE regions (a int, b int, label text, PRIMARY KEY (a, b));"
           "CREATE TABLE sites (id int PRIMARY KEY, ra int, rb int,"
           " CONSTRAINT sites_region FOREIGN KEY (ra, rb) REFERENCES regions);"
           "INSERT INTO regions SELECT g, g, 'r' || g FROM generate_series(1, 20) g;"
           "INSERT INTO sites SELECT g, g, g FROM generate_series(1, 20) g;")
EVENTS = ("CREATE TABLE events (id int, at date NOT NULL, note text) PARTITION BY RANGE (at);"
          "CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');"
          "CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');"
          "INSERT INTO events SELECT g, date '2024-06-01' + g, 'e' || g FROM generate_series(1, 300) g;")
FK_THROUGH_INDEX = ("CREATE TABLE codes (code text NOT NULL); CREATE UNIQUE INDEX codes_code ON codes (code);"
                    "CREATE TABLE code_uses (code text CONSTRAINT code_uses_code REFERENCES codes (code));")
CHECKS_NEW = ["INSERT INTO checks (id, claim_text, env) VALUES (20000 + {i}, 'new {i}', 'dev')"]
DROP_REFUSAL = ["2BP01", "earlier migration"]


def refused_at_start(extra, op, want):
    kind = list(op)[0]
    return case(extra, ops=[op], offline=None, refused=["operations[0].%s" % kind] + want)


CASES_REFUSED_AT_START = {
    # rows a new CHECK refuses: Postgres refuses it offline too; found before any DDL (it used to fail at the
    # validation after the backfill, the expand done)
    "check_violated_by_rows_refused": refused_at_start(
        "", {"create_constraint": {"table": "checks", "name": "checks_open_only", "type": "check",
                                   "check": "status = 'open'"}},
        ['100 row(s) of "checks" already violate check "checks_open_only"', "the first with key (4)"]),
    "drop_table_referenced_refused": refused_at_start(
        "", {"drop_table": {"table": "accounts"}},
        ['table "public.accounts"', 'constraint "checks_account_code_fkey"', 'table "public.checks"',
         'drop table "public.checks" too'] + DROP_REFUSAL),
    "drop_table_referenced_multicolumn_refused": refused_at_start(
        REGIONS, {"drop_table": {"table": "regions"}},
        ['table "public.regions"', 'constraint "sites_region"', 'table "public.sites"'] + DROP_REFUSAL),
    "drop_table_referencing_dropped_later_refused": case(
        REGIONS, ops=[{"drop_table": {"table": "regions"}}, {"drop_table": {"table": "sites"}}], offline=None,
        refused=["operations[0].drop_table", 'constraint "sites_region"', "earlier in this migration"]),
    "drop_referencing_then_referenced_table": case(
        REGIONS, ops=[{"drop_table": {"table": "sites"}}, {"drop_table": {"table": "regions"}}],
        offline="DROP TABLE sites; DROP TABLE regions",
        old=["INSERT INTO regions VALUES (100 + {i}, 1, 'old')", "INSERT INTO sites VALUES (100 + {i}, 100 + {i}, 1)"],
        new=CHECKS_NEW, before_tables=("checks", "accounts", "regions", "sites")),
    "drop_foreign_key_column_then_referenced_table": case(
        ops=[{"drop_column": {"table": "checks", "column": "account_code"}}, {"drop_table": {"table": "accounts"}}],
        offline="ALTER TABLE checks DROP COLUMN account_code; DROP TABLE accounts",
        old=["INSERT INTO checks (id, account_code) VALUES (10000 + {i}, 'c1')"], new=CHECKS_NEW,
        tables=("checks",), before_tables=("checks", "accounts")),
    "drop_index_primary_key_refused": refused_at_start(
        "", {"drop_index": {"name": "checks_pkey"}},
        ['index "checks_pkey"', 'primary key constraint "checks_pkey"', "dropping the constraint drops its index",
         "DROP CONSTRAINT"]),
    "drop_index_unique_constraint_refused": refused_at_start(
        "", {"drop_index": {"name": "accounts_code_key"}},
        ['unique constraint "accounts_code_key"', "dropping the constraint drops its index"]),
    "drop_index_exclusion_refused": refused_at_start(
        EXCLUDE.format(col="price"), {"drop_index": {"name": "checks_price_excl"}},
        ['exclusion constraint "checks_price_excl"', "dropping the constraint drops its index"]),
    "drop_index_missing_refused": refused_at_start(
        "", {"drop_index": {"name": "checks_nope"}}, ['index "checks_nope" does not exist in schema "public"']),
    "drop_index_missing_if_exists": case(
        ops=[{"drop_index": {"name": "checks_nope", "if_exists": True}}], offline="DROP INDEX IF EXISTS checks_nope",
        old=RENAME_CLAIM_OLD, new=CHECKS_NEW),
    "drop_index_used_by_foreign_key_refused": refused_at_start(
        FK_THROUGH_INDEX, {"drop_index": {"name": "codes_code"}},
        ['index "codes_code"', 'constraint "code_uses_code"', 'table "public.code_uses"'] + DROP_REFUSAL),
    "drop_partition_index_refused": refused_at_start(
        EVENTS + "CREATE INDEX events_note ON events (note);", {"drop_index": {"name": "events_2024_note_idx"}},
        ['index "events_2024_note_idx"', "attached to index events_note", "drop index events_note instead"]),
    "create_and_drop_index_in_one_migration": case(
        ops=[{"create_index": {"table": "checks", "name": "checks_env_ix", "columns": ["env"]}},
             {"drop_index": {"name": "checks_env_ix"}}],
        offline="CREATE INDEX checks_env_ix ON checks (env); DROP INDEX checks_env_ix",
        old=RENAME_CLAIM_OLD, new=CHECKS_NEW),
}
CASES.update(CASES_REFUSED_AT_START)


# A partitioned table, the way Postgres users run one: three range
# partitions, one of them partitioned itself (by hash), a primary key that
# includes every partitioning column. Its indexes are built ON ONLY the
# table and CONCURRENTLY on each partition, then attached; its columns
# change through the same views and triggers as a plain table's.
PARTED = ("CREATE TABLE events (id int NOT NULL, at date NOT NULL, note text, PRIMARY KEY (id, at))"
          " PARTITION BY RANGE (at);"
          "CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');"
          "CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')"
          " PARTITION BY HASH (id);"
          "CREATE TABLE events_2025_h0 PARTITION OF events_2025 FOR VALUES WITH (MODULUS 2, REMAINDER 0);"
          "CREATE TABLE events_2025_h1 PARTITION OF events_2025 FOR VALUES WITH (MODULUS 2, REMAINDER 1);"
          "CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');"
          "INSERT INTO events SELECT g, date '2024-06-01' + g * 2, 'e' || g FROM generate_series(1, 300) g;")
PARTED_OLD = ["INSERT INTO events (id, at, note) VALUES (10000 + {i}, date '2024-02-01' + {i} * 25, 'old {i}')",
              "UPDATE events SET note = 'old upd {i}' WHERE id = {i} + 1"]
PARTED_NEW = ["INSERT INTO events (id, at, note) VALUES (20000 + {i}, date '2024-03-01' + {i} * 25, 'new {i}')",
              "UPDATE events SET note = 'new upd {i}' WHERE id = {i} + 100"]


# the base's accounts (ids 1 to 50), one per event
PARTED_ACCOUNTS = "ALTER TABLE events ADD COLUMN account_id bigint; UPDATE events SET account_id = id % 50 + 1;"


def parted(ops, offline, old=PARTED_OLD, new=PARTED_NEW, extra=""):
    return case(PARTED + extra, ops=ops, offline=offline, old=old, new=new, tables=("events",))


def parted_refused(ops, want, extra=""):
    kind = list(ops[0])[0]
    return case(PARTED + extra, ops=ops, offline=None, refused=["operations[0].%s" % kind] + want,
                tables=("events",))


CASES_PARTITIONED = {
    "parted_create_index": parted(
        [{"create_index": {"table": "events", "name": "events_note", "columns": ["note"]}}],
        "CREATE INDEX events_note ON events (note)"),
    # names Postgres chooses: a function's name or "expr" for an
    # expression, INCLUDE columns count, a taken name gets a number
    "parted_create_index_keys_and_taken_name": parted(
        [{"create_index": {"table": "events", "name": "events_at_lower", "keys": ["at DESC", "lower(note)",
                                                                                  "(id + 1)"],
                           "include": ["id"]}}],
        "CREATE INDEX events_at_lower ON events (at DESC, lower(note), (id + 1)) INCLUDE (id)",
        extra="CREATE TABLE events_2024_at_lower_expr_id_idx (x int);"),
    "parted_create_unique_index_with_key": parted(
        [{"create_index": {"table": "events", "name": "events_note_key", "unique": True,
                           "columns": ["note", "at", "id"]}},
         {"create_index": {"table": "events", "name": "events_note_at", "columns": ["note", "at", "id"],
                           "where": "note IS NOT NULL"}}],
        "CREATE UNIQUE INDEX events_note_key ON events (note, at, id);"
        "CREATE INDEX events_note_at ON events (note, at, id) WHERE note IS NOT NULL"),
    "parted_rename_column": parted(
        [{"rename_column": {"table": "events", "from": "note", "to": "body"}}],
        "ALTER TABLE events RENAME COLUMN note TO body",
        new=["INSERT INTO events (id, at, body) VALUES (20000 + {i}, date '2024-03-01' + {i} * 25, 'new {i}')",
             "UPDATE events SET body = 'new upd {i}' WHERE id = {i} + 100"]),
    "parted_rename_partition_key_column": parted(
        [{"rename_column": {"table": "events", "from": "at", "to": "happened_on"}}],
        "ALTER TABLE events RENAME COLUMN at TO happened_on",
        new=["INSERT INTO events (id, happened_on, note) VALUES (20000 + {i}, date '2024-03-01' + {i} * 25, 'n')"]),
    "parted_alter_column": parted(
        [{"alter_column": {"table": "events", "column": "note", "type": "varchar(40)",
                           "up": "left(note, 40)", "down": "note::text"}}],
        "ALTER TABLE events ALTER COLUMN note TYPE varchar(40) USING left(note, 40)",
        extra="ALTER TABLE events ADD CONSTRAINT events_note_len CHECK (length(note) < 100);"),
    "parted_add_column": parted(
        [{"add_column": {"table": "events", "column": {"name": "seen", "type": "boolean", "nullable": False,
                                                       "default": "false"}}}],
        "ALTER TABLE events ADD COLUMN seen boolean NOT NULL DEFAULT false",
        new=["INSERT INTO events (id, at, note, seen) VALUES (20000 + {i}, date '2024-03-01' + {i} * 25, 'n', true)",
             "UPDATE events SET seen = true WHERE id = {i} + 100"]),
    "parted_drop_column": parted(
        [{"drop_column": {"table": "events", "column": "note"}}],
        "ALTER TABLE events DROP COLUMN note",
        new=["INSERT INTO events (id, at) VALUES (20000 + {i}, date '2024-03-01' + {i} * 25)",
             "DELETE FROM events WHERE id = {i} + 100"]),
    # never CONCURRENTLY on a partitioned table: a plain DROP INDEX after
    # the contract (a catalog change)
    "parted_drop_index": parted(
        [{"drop_index": {"name": "events_note"}}], "DROP INDEX events_note",
        extra="CREATE INDEX events_note ON events (note);"),
    # a retyped column's one plain index: built on the second column as a
    # new partitioned index is, renamed at contract as the offline rebuild
    # names it (the table's keeps its name, each partition's is chosen anew)
    "parted_retype_indexed_column": parted(
        [{"alter_column": {"table": "events", "column": "note", "type": "varchar(40)",
                           "up": "left(note, 40)", "down": "note::text"}}],
        "ALTER TABLE events ALTER COLUMN note TYPE varchar(40) USING left(note, 40)",
        extra="CREATE INDEX events_note ON events (note); ALTER INDEX events_2024_note_idx RENAME TO events_2024_n;"),
    # made again under its name, or under another over the same columns:
    # the partitions' indexes take the names the drop frees, as offline
    # (built under temporary names, renamed once the drop has run)
    "parted_index_made_again": parted(
        [{"drop_index": {"name": "events_note"}},
         {"create_index": {"table": "events", "name": "events_note", "columns": ["note"],
                           "where": "note IS NOT NULL"}}],
        "DROP INDEX events_note; CREATE INDEX events_note ON events (note) WHERE note IS NOT NULL",
        extra="CREATE INDEX events_note ON events (note);"),
    "parted_index_other_name_same_columns": parted(
        [{"drop_index": {"name": "events_note"}},
         {"create_index": {"table": "events", "name": "events_note_v2", "columns": ["note"]}}],
        "DROP INDEX events_note; CREATE INDEX events_note_v2 ON events (note)",
        extra="CREATE INDEX events_note ON events (note);"),
    # Postgres takes no NOT VALID foreign key on a partitioned table: each
    # leaf partition's NOT VALID and validated, attached by the table's
    "parted_create_foreign_key": parted(
        [{"create_constraint": {"table": "events", "name": "events_account_fkey", "type": "foreign_key",
                                "columns": ["account_id"], "references": {"table": "accounts", "columns": ["id"]}}}],
        "ALTER TABLE events ADD CONSTRAINT events_account_fkey FOREIGN KEY (account_id) REFERENCES accounts (id)",
        extra=PARTED_ACCOUNTS),
    # changed under its name (Prisma's drop and add): made under a
    # temporary name, the table's and each partition's renamed at contract
    "parted_change_foreign_key": parted(
        [{"drop_constraint": {"table": "events", "name": "events_account_fkey"}},
         {"create_constraint": {"table": "events", "name": "events_account_fkey", "type": "foreign_key",
                                "columns": ["account_id"],
                                "references": {"table": "accounts", "columns": ["id"], "on_delete": "CASCADE"}}}],
        "ALTER TABLE events DROP CONSTRAINT events_account_fkey;"
        "ALTER TABLE events ADD CONSTRAINT events_account_fkey FOREIGN KEY (account_id) REFERENCES accounts (id)"
        " ON DELETE CASCADE",
        extra=PARTED_ACCOUNTS + "ALTER TABLE events ADD CONSTRAINT events_account_fkey FOREIGN KEY (account_id)"
        " REFERENCES accounts (id);"),
    # refused before any DDL
    "parted_unique_index_without_key_refused": parted_refused(
        [{"create_index": {"table": "events", "name": "events_note_key", "unique": True, "columns": ["note", "at"]}}],
        ['unique index "events_note_key"', 'partition key column "id"', "must include all partitioning columns"]),
    "parted_retype_partition_key_refused": parted_refused(
        [{"alter_column": {"table": "events", "column": "at", "type": "timestamp", "up": "at::timestamp",
                           "down": "at::date"}}],
        ['column "at"', "partition key", 'cannot alter column "at" because it is part of the partition key']),
    "parted_retype_in_place_partition_key_refused": parted_refused(
        [{"alter_column": {"table": "events", "column": "id", "type": "bigint"}}],
        ['column "id"', "partition key"]),
    "parted_drop_partition_key_refused": parted_refused(
        [{"drop_column": {"table": "events", "column": "at"}}],
        ['column "at"', 'cannot drop column "at" because it is part of the partition key']),
    "parted_add_column_references_refused": parted_refused(
        [{"add_column": {"table": "events", "column": {"name": "account_id", "type": "bigint",
                                                       "references": "accounts(id)"}}}],
        ['column "account_id"', "cannot add NOT VALID foreign key on partitioned table"]),
    "parted_add_column_unique_refused": parted_refused(
        [{"add_column": {"table": "events", "column": {"name": "ref", "type": "text", "unique": True}}}],
        ['column "ref"', "must include all partitioning columns", "USING INDEX"]),
    "parted_retype_partial_indexed_column_refused": parted_refused(
        [{"alter_column": {"table": "events", "column": "note", "type": "varchar(40)",
                           "up": "left(note, 40)", "down": "note::text"}}],
        ['column "note" of partitioned table "public.events"', "index events_note",
         "cannot create index on partitioned table concurrently"],
        extra="CREATE INDEX events_note ON events (note) WHERE note IS NOT NULL;"),
}
CASES.update(CASES_PARTITIONED)


# Constraints, replica identity and enum values: the constraint's changes
# run at the contract (the old release keeps what it relies on until
# then), an enum value is added first at expand so the migration can use
# it; what Postgres would refuse at the contract is refused at start.
MOOD = ("CREATE TYPE mood AS ENUM ('open', 'closed');"
        "ALTER TABLE checks ADD COLUMN mood mood NOT NULL DEFAULT 'open';")
PRICE_LEN = "ALTER TABLE checks ADD CONSTRAINT checks_price_len CHECK (length(price) < 40);"
ACCOUNTS_OLD = ["INSERT INTO accounts (id, code) VALUES (1000 + {i}, 'old {i}')"]
ACCOUNTS_NEW = ["INSERT INTO accounts (id, code) VALUES (2000 + {i}, 'new {i}')"]
PARTITION_CHECK = EVENTS + "ALTER TABLE events ADD CONSTRAINT events_note_len CHECK (length(note) < 100);"
CASES_CONSTRAINTS = {
    "drop_check_constraint": case(
        PRICE_LEN, ops=[{"drop_constraint": {"table": "checks", "name": "checks_price_len"}}],
        offline="ALTER TABLE checks DROP CONSTRAINT checks_price_len", old=PRICE_OLD, new=CHECKS_NEW),
    "drop_foreign_key_then_referenced_unique": case(
        ops=[{"drop_constraint": {"table": "checks", "name": "checks_account_code_fkey"}},
             {"drop_constraint": {"table": "accounts", "name": "accounts_code_key"}}],
        offline="ALTER TABLE checks DROP CONSTRAINT checks_account_code_fkey;"
                "ALTER TABLE accounts DROP CONSTRAINT accounts_code_key",
        old=ACCOUNTS_OLD + ["INSERT INTO checks (id, account_code) VALUES (10000 + {i}, 'c1')"],
        new=ACCOUNTS_NEW + CHECKS_NEW),
    "drop_primary_key_and_missing_if_exists": case(
        REGIONS, ops=[{"drop_constraint": {"table": "sites", "name": "sites_region"}},
                      {"drop_constraint": {"table": "regions", "name": "regions_pkey"}},
                      {"drop_constraint": {"table": "checks", "name": "checks_nope", "if_exists": True}}],
        offline="ALTER TABLE sites DROP CONSTRAINT sites_region; ALTER TABLE regions DROP CONSTRAINT regions_pkey;"
                "ALTER TABLE checks DROP CONSTRAINT IF EXISTS checks_nope",
        old=["INSERT INTO regions VALUES (100 + {i}, 1, 'old')"], new=["INSERT INTO regions VALUES (200 + {i}, 1, 'n')"],
        tables=("checks", "accounts", "regions", "sites")),
    "drop_constraint_missing_refused": refused_at_start(
        "", {"drop_constraint": {"table": "checks", "name": "checks_nope"}},
        ['constraint "checks_nope" of table "public.checks" does not exist', "42704", '"if_exists": true']),
    "drop_constraint_not_null_refused": refused_at_start(
        "", {"drop_constraint": {"table": "checks", "name": "checks_status_not_null"}},
        ["does not exist", "A NOT NULL is not a named constraint", "alter_column", '"nullable": true']),
    "drop_unique_referenced_refused": refused_at_start(
        "", {"drop_constraint": {"table": "accounts", "name": "accounts_code_key"}},
        ['unique constraint "accounts_code_key"', 'constraint "checks_account_code_fkey" on table "public.checks"',
         "2BP01", "drop_constraint of it earlier"]),
    "drop_inherited_constraint_refused": refused_at_start(
        PARTITION_CHECK, {"drop_constraint": {"table": "events_2024", "name": "events_note_len"}},
        ['constraint "events_note_len"', "inherited", "drop it on the parent table"]),
    "rename_unique_and_check_constraints": case(
        PRICE_LEN, ops=[{"rename_constraint": {"table": "accounts", "from": "accounts_code_key",
                                               "to": "accounts_code_uq"}},
                        {"rename_constraint": {"table": "checks", "from": "checks_price_len", "to": "price_short"}}],
        offline="ALTER TABLE accounts RENAME CONSTRAINT accounts_code_key TO accounts_code_uq;"
                "ALTER TABLE checks RENAME CONSTRAINT checks_price_len TO price_short",
        old=ACCOUNTS_OLD + PRICE_OLD, new=ACCOUNTS_NEW + CHECKS_NEW),
    "rename_then_drop_constraint": case(
        PRICE_LEN, ops=[{"rename_constraint": {"table": "checks", "from": "checks_price_len", "to": "price_short"}},
                        {"drop_constraint": {"table": "checks", "name": "price_short"}}],
        offline="ALTER TABLE checks RENAME CONSTRAINT checks_price_len TO price_short;"
                "ALTER TABLE checks DROP CONSTRAINT price_short", old=PRICE_OLD, new=CHECKS_NEW),
    "rename_constraint_missing_refused": refused_at_start(
        "", {"rename_constraint": {"table": "checks", "from": "checks_nope", "to": "checks_yes"}},
        ['constraint "checks_nope" of table "public.checks" does not exist']),
    "rename_constraint_to_taken_refused": refused_at_start(
        PRICE_LEN, {"rename_constraint": {"table": "checks", "from": "checks_price_len", "to": "checks_pkey"}},
        ['constraint "checks_pkey" for relation "checks" already exists', "42710"]),
    "rename_constraint_to_relation_refused": refused_at_start(
        "", {"rename_constraint": {"table": "accounts", "from": "accounts_code_key", "to": "checks"}},
        ['relation "checks" already exists in schema "public"', "renames the index", "42P07"]),
    "rename_inherited_constraint_refused": refused_at_start(
        PARTITION_CHECK, {"rename_constraint": {"table": "events_2024", "from": "events_note_len", "to": "x"}},
        ["inherited", "rename it on the parent table"]),
    "replica_identity_full_and_index": case(
        ops=[{"set_replica_identity": {"table": "checks", "identity": "full"}},
             {"set_replica_identity": {"table": "accounts", "identity": {"index": "accounts_code_key"}}}],
        offline="ALTER TABLE checks REPLICA IDENTITY FULL;"
                "ALTER TABLE accounts REPLICA IDENTITY USING INDEX accounts_code_key",
        old=ACCOUNTS_OLD + PRICE_OLD, new=ACCOUNTS_NEW + CHECKS_NEW),
    "replica_identity_new_index_on_not_null_column": case(
        ops=[{"alter_column": {"table": "checks", "column": "price", "nullable": False}},
             {"create_index": {"table": "checks", "name": "checks_price_uq", "columns": ["price"], "unique": True}},
             {"set_replica_identity": {"table": "checks", "identity": {"index": "checks_price_uq"}}}],
        offline="ALTER TABLE checks ALTER COLUMN price SET NOT NULL;"
                "CREATE UNIQUE INDEX checks_price_uq ON checks (price);"
                "ALTER TABLE checks REPLICA IDENTITY USING INDEX checks_price_uq",
        old=["INSERT INTO checks (id, price) VALUES (10000 + {i}, 'old {i}')"],
        new=["INSERT INTO checks (id, price) VALUES (20000 + {i}, 'new {i}')"]),
    "replica_identity_nullable_index_refused": refused_at_start(
        "CREATE UNIQUE INDEX checks_price_uq ON checks (price);",
        {"set_replica_identity": {"table": "checks", "identity": {"index": "checks_price_uq"}}},
        ['index "checks_price_uq"', 'column "price" is nullable', "alter_column"]),
    "replica_identity_non_unique_index_refused": refused_at_start(
        "CREATE INDEX checks_env_ix ON checks (env);",
        {"set_replica_identity": {"table": "checks", "identity": {"index": "checks_env_ix"}}},
        ['index "checks_env_ix"', "cannot use non-unique index"]),
    "replica_identity_other_table_index_refused": refused_at_start(
        "", {"set_replica_identity": {"table": "checks", "identity": {"index": "accounts_code_key"}}},
        ['index "accounts_code_key" (on accounts)', "another table"]),
    # the value is added and committed first, so the same migration's
    # default and the new release may use it; the rollback keeps it
    "add_enum_value_used_by_same_migration": case(
        MOOD, ops=[{"add_enum_value": {"type": "mood", "value": "pending", "before": "closed"}},
                   {"add_column": {"table": "checks", "column": {"name": "stage", "type": "mood",
                                                                 "default": "'pending'"}}},
                   {"alter_column": {"table": "checks", "column": "mood", "default": "'pending'::mood"}}],
        offline=["ALTER TYPE mood ADD VALUE 'pending' BEFORE 'closed'",
                 "ALTER TABLE checks ADD COLUMN stage mood DEFAULT 'pending';"
                 "ALTER TABLE checks ALTER COLUMN mood SET DEFAULT 'pending'::mood"],
        old=["INSERT INTO checks (id, claim_text, mood) VALUES (10000 + {i}, 'old {i}', 'closed')",
             "UPDATE checks SET mood = 'closed' WHERE id = {i} + 1"],
        new=["INSERT INTO checks (id, claim_text, mood, stage) VALUES (20000 + {i}, 'new {i}', 'pending', 'closed')",
             "INSERT INTO checks (id, claim_text) VALUES (25000 + {i}, 'new default {i}')",
             "UPDATE checks SET mood = 'pending' WHERE id = {i} + 100"],
        rollback_keeps=["ALTER TYPE mood ADD VALUE 'pending' BEFORE 'closed'"]),
    "add_enum_values_after_and_if_not_exists": case(
        MOOD, ops=[{"add_enum_value": {"type": "mood", "value": "review", "after": "open"}},
                   {"add_enum_value": {"type": "mood", "value": "archived"}},
                   {"add_enum_value": {"type": "mood", "value": "open", "if_not_exists": True}}],
        offline=["ALTER TYPE mood ADD VALUE 'review' AFTER 'open'", "ALTER TYPE mood ADD VALUE 'archived'",
                 "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'open'"],
        old=["INSERT INTO checks (id, claim_text, mood) VALUES (10000 + {i}, 'old {i}', 'closed')"],
        new=["INSERT INTO checks (id, claim_text, mood) VALUES (20000 + {i}, 'new {i}', 'review')"],
        rollback_keeps=["ALTER TYPE mood ADD VALUE 'review' AFTER 'open'", "ALTER TYPE mood ADD VALUE 'archived'"]),
    "add_enum_value_present_refused": refused_at_start(
        MOOD, {"add_enum_value": {"type": "mood", "value": "open"}},
        ['enum label "open" already exists in type "public.mood"', "42710", '"if_not_exists": true']),
    "add_enum_value_missing_type_refused": refused_at_start(
        "", {"add_enum_value": {"type": "mood", "value": "open"}}, ['type "public.mood" does not exist']),
    "add_enum_value_not_an_enum_refused": refused_at_start(
        "", {"add_enum_value": {"type": "checks", "value": "open"}}, ['type "public.checks" is not an enum type']),
    "add_enum_value_missing_neighbour_refused": refused_at_start(
        MOOD, {"add_enum_value": {"type": "mood", "value": "pending", "before": "shut"}},
        ['"shut" is not an existing enum label of type "public.mood"', "22023"]),
    "rename_enum_value_refused": refused_at_start(
        MOOD, {"rename_enum_value": {"type": "mood", "from": "closed", "to": "done"}},
        ['renaming value "closed" of type "public.mood" to "done" cannot run online', "both releases at once",
         "add_enum_value", "alter_column", "cannot remove an enum value"]),
}
CASES.update(CASES_CONSTRAINTS)


# Keys and constraints: the online operation ends with what the offline
# statement makes, names included (Postgres's names for what the statement
# leaves unnamed, the next free one when taken, truncated to 63 bytes).
LOG = ("CREATE TABLE check_log (check_id bigint, at int, what text);"
       "INSERT INTO check_log SELECT g, g % 5, 'w' || g FROM generate_series(1, 200) g;")
LOG_OLD = ["INSERT INTO check_log VALUES (10000 + {i}, 1, 'old {i}')", "UPDATE check_log SET what = 'o' WHERE check_id = {i} + 1"]
LOG_NEW = ["INSERT INTO check_log VALUES (20000 + {i}, 2, 'new {i}')", "UPDATE check_log SET what = 'n' WHERE check_id = {i} + 100"]
LONG_T = "t" * 40
LONG_C = "c" * 40
ORDERS = {"create_table": {"table": "orders", "columns": [
    {"name": "id", "type": "bigint", "identity": "always"},
    {"name": "ra", "type": "int", "nullable": False}, {"name": "rb", "type": "int", "nullable": False},
    {"name": "qty", "type": "int", "check": "qty > 0"},
    {"name": "price", "type": "numeric"},
    {"name": "total", "type": "numeric", "generated": "qty * price"},
    {"name": "code", "type": "text", "unique": True},
    {"name": "seq", "type": "int", "identity": "by_default"}],
    "constraints": [{"type": "primary_key", "columns": ["id", "ra"]},
                    {"type": "unique", "columns": ["ra", "rb", "code"]},
                    {"type": "check", "check": "price >= 0 AND qty < 1000"},
                    {"type": "check", "name": "orders_price_small", "check": "price < 10000"},
                    {"type": "foreign_key", "columns": ["ra", "rb"],
                     "references": {"table": "regions", "columns": ["a", "b"], "on_delete": "cascade",
                                    "on_update": "restrict"}}]}}
ORDERS_OFFLINE = ("CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY, ra int NOT NULL, rb int NOT NULL,"
                  " qty int CHECK (qty > 0), price numeric, total numeric GENERATED ALWAYS AS (qty * price) STORED,"
                  " code text UNIQUE, seq int GENERATED BY DEFAULT AS IDENTITY, PRIMARY KEY (id, ra),"
                  " UNIQUE (ra, rb, code), CHECK (price >= 0 AND qty < 1000),"
                  " CONSTRAINT orders_price_small CHECK (price < 10000),"
                  " FOREIGN KEY (ra, rb) REFERENCES regions (a, b) ON DELETE CASCADE ON UPDATE RESTRICT)")

CASES_KEYS = {
    "primary_key_composite": case(
        LOG, ops=[{"create_constraint": {"table": "check_log", "type": "primary_key", "columns": ["check_id", "at"]}}],
        offline="ALTER TABLE check_log ADD PRIMARY KEY (check_id, at)", old=LOG_OLD, new=LOG_NEW,
        tables=("checks", "check_log")),
    "primary_key_named_on_not_null_column": case(
        LOG + "ALTER TABLE check_log ALTER COLUMN check_id SET NOT NULL;",
        ops=[{"create_constraint": {"table": "check_log", "name": "log_pk", "type": "primary_key",
                                    "columns": ["check_id"]}}],
        offline="ALTER TABLE check_log ADD CONSTRAINT log_pk PRIMARY KEY (check_id)", old=LOG_OLD, new=LOG_NEW,
        tables=("checks", "check_log")),
    # Prisma's DEFERRABLE INITIALLY DEFERRED unique (hoppscotch's orderIndex keys): the index built
    # CONCURRENTLY, attached with the words at the contract
    "unique_deferrable_initially_deferred": case(
        ops=[{"create_constraint": {"table": "checks", "name": "checks_claim_env_key", "type": "unique",
                                    "columns": ["claim_text", "env"], "deferrable": True, "initially_deferred": True}}],
        offline="ALTER TABLE checks ADD CONSTRAINT checks_claim_env_key UNIQUE (claim_text, env)"
                " DEFERRABLE INITIALLY DEFERRED",
        old=RENAME_CLAIM_OLD[:1], new=["INSERT INTO checks (id, claim_text, env) VALUES (20000 + {i}, 'new {i}', 'dev')"]),
    # the foreign key's name is taken (checks_account_code_fkey): the next is ...fkey1
    "constraints_named_as_offline": case(
        ops=[{"create_constraint": {"table": "checks", "type": "check", "check": "length(env) < 10"}},
             {"create_constraint": {"table": "checks", "type": "check", "check": "status <> env"}},
             {"create_constraint": {"table": "checks", "type": "unique", "columns": ["claim_text", "env"]}},
             {"create_constraint": {"table": "checks", "type": "foreign_key", "columns": ["account_code"],
                                    "references": {"table": "accounts", "columns": ["code"], "on_delete": "set null"}}}],
        offline="ALTER TABLE checks ADD CHECK (length(env) < 10); ALTER TABLE checks ADD CHECK (status <> env);"
                "ALTER TABLE checks ADD UNIQUE (claim_text, env);"
                "ALTER TABLE checks ADD FOREIGN KEY (account_code) REFERENCES accounts (code) ON DELETE SET NULL",
        old=RENAME_CLAIM_OLD[:1], new=["INSERT INTO checks (id, claim_text, env) VALUES (20000 + {i}, 'new {i}', 'dev')"]),
    "add_column_constraints_named_as_offline": case(
        ops=[{"add_column": {"table": "checks", "column": {"name": "ref", "type": "text", "check": "ref <> ''",
                                                             "unique": True, "references": "accounts(code)"}}}],
        offline="ALTER TABLE checks ADD COLUMN ref text CHECK (ref <> '') UNIQUE REFERENCES accounts (code)",
        old=RENAME_CLAIM_OLD[:1], new=["INSERT INTO checks (id, ref) VALUES (20000 + {i}, 'c' || ({i} + 1))"]),
    "alter_column_unique_named_as_offline": case(
        "ALTER TABLE checks ADD CONSTRAINT checks_claim_text_key CHECK (claim_text <> 'x');",
        ops=[{"alter_column": {"table": "checks", "column": "claim_text", "unique": True}}],
        offline="ALTER TABLE checks ADD UNIQUE (claim_text)",
        old=RENAME_CLAIM_OLD[:1], new=["INSERT INTO checks (id, claim_text) VALUES (20000 + {i}, 'new {i}')"]),
    "long_names_truncated_as_offline": case(
        "CREATE TABLE %s (id int PRIMARY KEY, %s int);" % (LONG_T, LONG_C),
        ops=[{"create_constraint": {"table": LONG_T, "type": "unique", "columns": [LONG_C]}},
             {"create_constraint": {"table": LONG_T, "type": "unique", "columns": [LONG_C, "id"]}},
             {"create_constraint": {"table": LONG_T, "type": "check", "check": "%s > 0" % LONG_C}}],
        offline="ALTER TABLE {t} ADD UNIQUE ({c}); ALTER TABLE {t} ADD UNIQUE ({c}, id);"
                "ALTER TABLE {t} ADD CHECK ({c} > 0)".format(t=LONG_T, c=LONG_C),
        old=["INSERT INTO %s VALUES (100 + {i}, 100 + {i})" % LONG_T], new=["INSERT INTO %s VALUES (200 + {i}, 200 + {i})" % LONG_T],
        tables=("checks", LONG_T)),
    "create_table_with_table_constraints": case(
        REGIONS, ops=[ORDERS], offline=ORDERS_OFFLINE, old=RENAME_CLAIM_OLD[:1],
        new=["INSERT INTO orders (ra, rb, qty, price, code, seq) VALUES ({i} % 20 + 1, {i} % 20 + 1, {i} + 1, 2, 'o{i}', {i})"],
        tables=("checks", "regions", "orders"), before_tables=("checks", "regions")),
    "alter_column_check_and_unique_named_as_offline": case(
        ops=[{"alter_column": dict(PRICE_NUMERIC["alter_column"], check="price >= 0", unique=True)}],
        offline=PRICE_NUMERIC_OFFLINE + "; ALTER TABLE checks ADD CHECK (price >= 0); ALTER TABLE checks ADD UNIQUE (price)",
        old=["INSERT INTO checks (id, price) VALUES (10000 + {i}, '5{i}00.5')"],
        new=["INSERT INTO checks (id, price) VALUES (20000 + {i}, 7{i}00.25)"]),
    "primary_key_exists_refused": refused_at_start(
        "", {"create_constraint": {"table": "checks", "type": "primary_key", "columns": ["claim_text"]}},
        ['table "public.checks" already has a primary key (checks_pkey)']),
    "primary_key_on_partitioned_table_refused": refused_at_start(
        EVENTS, {"create_constraint": {"table": "events", "type": "primary_key", "columns": ["id", "at"]}},
        ['table "public.events" is partitioned', "cannot create index on partitioned table concurrently"]),
    "primary_key_missing_column_refused": refused_at_start(
        LOG, {"create_constraint": {"table": "check_log", "type": "primary_key", "columns": ["nope"]}},
        ['column "nope" does not exist in table "public.check_log"']),
}
CASES.update(CASES_KEYS)

# Migrations written as SQL (FILE.sql, as Prisma and drizzle-kit write them):
# `ops` is the file's text, converted by `migrate start FILE.sql`.
JOB_SQL = ("CREATE TYPE \"BackgroundJobStatus\" AS ENUM ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED');\n"
           "CREATE TABLE \"BackgroundJob\" (\"id\" TEXT NOT NULL, \"status\" \"BackgroundJobStatus\" NOT NULL"
           " DEFAULT 'PENDING', CONSTRAINT \"BackgroundJob_pkey\" PRIMARY KEY (\"id\"));\n")
TRGM_SQL = ("CREATE EXTENSION IF NOT EXISTS pg_trgm;\n"
            "CREATE INDEX \"checks_claim_trgm\" ON \"checks\" USING gin (\"claim_text\" gin_trgm_ops);\n")
NOTE_SQL = ("CREATE TABLE \"Note\" (\"id\" TEXT NOT NULL, \"body\" TEXT, \"old\" TEXT,"
            " CONSTRAINT \"Note_pkey\" PRIMARY KEY (\"id\"));\n"
            "ALTER TABLE \"Note\" DROP COLUMN \"old\";\n"
            "ALTER TABLE \"Note\" ADD COLUMN \"checkId\" BIGINT NOT NULL;\n"
            "CREATE INDEX \"Note_checkId_idx\" ON \"Note\"(\"checkId\");\n"
            "ALTER TABLE \"Note\" ADD CONSTRAINT \"Note_checkId_fkey\" FOREIGN KEY (\"checkId\") REFERENCES"
            " \"checks\"(\"id\") ON DELETE CASCADE ON UPDATE CASCADE;\n")
NOTES = ("CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);"
         "INSERT INTO notes SELECT g, 'b' || g FROM generate_series(1, 10) g;")
NOTES_SQL = ("ALTER TABLE \"notes\" ALTER COLUMN \"body\" DROP NOT NULL;\n"
             "INSERT INTO \"notes\" (\"id\", \"body\") SELECT \"id\" + 1000, NULL FROM \"notes\" WHERE \"id\" <= 5;\n")

# how ORMs give a table with rows a required column: the UPDATE becomes the
# add_column's "up" (batches, and the old release's writes filled by it)
NOTES_LEN_SQL = ("ALTER TABLE \"notes\" ADD COLUMN \"len\" integer;\n"
                 "UPDATE \"notes\" SET \"len\" = length(\"body\") WHERE \"len\" IS NULL;\n"
                 "ALTER TABLE \"notes\" ALTER COLUMN \"len\" SET NOT NULL;\n")
NOTES_KIND_SQL = ("ALTER TABLE \"notes\" ADD COLUMN \"kind\" text;\n"
                  "UPDATE \"notes\" SET \"kind\" = 'short';\n"
                  "UPDATE \"notes\" SET \"kind\" = 'long' WHERE length(\"body\") > 2;\n"
                  "ALTER TABLE \"notes\" ALTER COLUMN \"kind\" SET NOT NULL;\n")

# data statements of a table the file does not create, in batches after expand
# (idempotent, as data fixes usually are: a rollback keeps what they changed,
# and the start after it runs them again)
NOTES_DATA_SQL = ("UPDATE \"notes\" SET \"body\" = 'fixed ' || \"id\" WHERE \"id\" <= 5;\n"
                  "UPDATE \"checks\" SET \"status\" = 'archived', \"env\" = 'cold' WHERE \"id\" % 3 = 0;\n")

CASES_SQL = {
    # an UPDATE of every row: refused before (one long transaction), in batches now
    # a uuid key (as Prisma's String @id @default(uuid()) tables have): Postgres has no max(uuid)
    "backfill_on_a_uuid_key": case(
        "CREATE TABLE sessions (id uuid PRIMARY KEY, data text);"
        "INSERT INTO sessions SELECT md5(g::text)::uuid, 'd' || g FROM generate_series(1, 300) g;",
        ops=[{"add_column": {"table": "sessions", "column": {"name": "size", "type": "integer"},
                             "up": "length(data)"}}],
        offline="ALTER TABLE sessions ADD COLUMN size integer; UPDATE sessions SET size = length(data)",
        old=["INSERT INTO sessions (id, data) VALUES (md5('old' || {i})::uuid, 'old {i}')"],
        new=["INSERT INTO sessions (id, data, size) VALUES (md5('new' || {i})::uuid, 'new {i}', 5)"],
        tables=("checks", "sessions")),
    # one ALTER TABLE runs its subcommands in Postgres's order, not the written one
    "sql_check_written_before_its_column": case(
        NOTES, ops="ALTER TABLE \"notes\" ADD CONSTRAINT \"notes_score_check\" CHECK (\"score\" >= 0),"
                   " ADD COLUMN \"score\" integer DEFAULT 0;\n",
        offline="ALTER TABLE \"notes\" ADD CONSTRAINT \"notes_score_check\" CHECK (\"score\" >= 0),"
                " ADD COLUMN \"score\" integer DEFAULT 0;\n",
        old=["INSERT INTO notes VALUES (100 + {i}, 'old {i}')"],
        new=["INSERT INTO notes (id, body, score) VALUES (200 + {i}, 'new {i}', {i})"], tables=("checks", "notes")),
    "sql_data_update_of_every_row": case(
        NOTES, ops="UPDATE \"notes\" SET \"body\" = 'all ' || \"id\";\n",
        offline="UPDATE \"notes\" SET \"body\" = 'all ' || \"id\";\n",
        old=["INSERT INTO checks (id, claim_text) VALUES (10000 + {i}, 'old {i}')"],
        new=["INSERT INTO checks (id, claim_text) VALUES (20000 + {i}, 'new {i}')"], tables=("checks", "notes"),
        rollback_keeps_rows=["UPDATE notes SET body = 'all ' || id"]),
    "sql_data_deletes_in_batches": case(
        NOTES + "CREATE TABLE scratch (id int PRIMARY KEY); INSERT INTO scratch SELECT generate_series(1, 30);",
        ops="DELETE FROM \"notes\" WHERE \"id\" > 7;\nDELETE FROM \"scratch\";\n",
        offline="DELETE FROM \"notes\" WHERE \"id\" > 7;\nDELETE FROM \"scratch\";\n",
        old=["INSERT INTO checks (id, claim_text) VALUES (10000 + {i}, 'old {i}')"],
        new=["INSERT INTO checks (id, claim_text) VALUES (20000 + {i}, 'new {i}')"], tables=("checks", "notes", "scratch"),
        rollback_keeps_rows=["DELETE FROM notes WHERE id > 7; DELETE FROM scratch"]),
    # refused before any DDL: a column updated twice (a batch sets it once), an update beside a delete
    "update_rows_of_a_column_twice_refused": case(
        NOTES, ops=[{"update_rows": {"table": "notes", "column": "body", "up": "'a'"}},
                    {"update_rows": {"table": "notes", "column": "body", "up": "'b'"}}], offline=None,
        refused=['operations[0].update_rows already sets "body"']),
    "update_rows_beside_delete_rows_refused": case(
        NOTES, ops=[{"update_rows": {"table": "notes", "column": "body", "up": "'a'"}},
                    {"delete_rows": {"table": "notes", "where": "id > 5"}}], offline=None,
        refused=['operations[1].delete_rows changes the columns or rows of "public.notes"']),
    "sql_data_updates_in_batches": case(
        NOTES, ops=NOTES_DATA_SQL, offline=NOTES_DATA_SQL,
        old=["INSERT INTO notes VALUES (100 + {i}, 'old {i}')"], new=["INSERT INTO notes VALUES (200 + {i}, 'new {i}')"],
        tables=("checks", "notes"), rollback_keeps_rows=[NOTES_DATA_SQL]),
    "sql_required_column_filled_by_update": case(
        NOTES, ops=NOTES_LEN_SQL, offline=NOTES_LEN_SQL,
        old=["INSERT INTO notes VALUES (100 + {i}, 'old {i}')"],
        new=["INSERT INTO notes (id, body, len) VALUES (200 + {i}, 'new {i}', 99)"], tables=("checks", "notes")),
    "sql_required_column_filled_by_updates_with_where": case(
        NOTES, ops=NOTES_KIND_SQL, offline=NOTES_KIND_SQL,
        old=["INSERT INTO notes VALUES (100 + {i}, 'old {i}')", "INSERT INTO notes VALUES (300 + {i}, 'o')"],
        new=["INSERT INTO notes (id, body, kind) VALUES (200 + {i}, 'new {i}', 'mine')"], tables=("checks", "notes")),
    # nothing fills it for the rows there or the old release's inserts
    "sql_required_column_not_filled_refused": case(
        NOTES, ops="ALTER TABLE \"notes\" ADD COLUMN \"len\" integer;\n"
                   "ALTER TABLE \"notes\" ALTER COLUMN \"len\" SET NOT NULL;\n", offline=None,
        refused=['SET NOT NULL on "len", added above without a value']),
    # a type and an extension the file creates are there for the checks of what follows them
    "sql_enum_created_then_used": case(
        ops=JOB_SQL, offline=JOB_SQL, old=RENAME_CLAIM_OLD[:1],
        new=["INSERT INTO \"BackgroundJob\" (\"id\") VALUES ('j{i}')",
             "INSERT INTO \"BackgroundJob\" VALUES ('k{i}', 'FAILED')"],
        tables=("checks", '"BackgroundJob"'), before_tables=("checks",)),
    "sql_extension_created_then_used": case(
        ops=TRGM_SQL, offline=TRGM_SQL, old=RENAME_CLAIM_OLD[:1],
        new=["INSERT INTO checks (id, claim_text) VALUES (20000 + {i}, 'new {i}')"]),
    # no old shape for a table the file creates: what follows runs as written
    "sql_table_created_then_altered": case(
        ops=NOTE_SQL, offline=NOTE_SQL, old=RENAME_CLAIM_OLD[:1],
        new=["INSERT INTO \"Note\" (\"id\", \"checkId\") VALUES ('n{i}', {i} + 1)"],
        tables=("checks", '"Note"'), before_tables=("checks",)),
    # the rows that rely on the dropped NOT NULL are written in the contract, after the drop
    "sql_drop_not_null_then_insert_select": case(
        NOTES, ops=NOTES_SQL, offline=NOTES_SQL,
        old=["INSERT INTO notes VALUES (100 + {i}, 'old {i}')"], new=["INSERT INTO notes VALUES (200 + {i}, 'new {i}')"],
        tables=("checks", "notes")),
    # the same in JSON: no old shape's view of a table the migration creates, and the new shape's view of
    # it leaves out the column dropped
    "create_table_then_drop_column": case(
        ops=[{"create_table": {"table": "memos", "columns": [{"name": "id", "type": "int", "primary_key": True},
                                                           {"name": "body", "type": "text"},
                                                           {"name": "old", "type": "text"}]}},
             {"drop_column": {"table": "memos", "column": "old"}}],
        offline="CREATE TABLE memos (id int PRIMARY KEY, body text)", old=RENAME_CLAIM_OLD[:1],
        new=["INSERT INTO memos VALUES ({i}, 'memo {i}')"], tables=("checks", "memos"), before_tables=("checks",)),
    # the type as written, its quotes not doubled
    "sql_unknown_type_refused": case(
        ops="CREATE TABLE \"Job\" (\"id\" TEXT PRIMARY KEY, \"status\" \"NoSuchStatus\");\n", offline=None,
        refused=['operations[0].create_table: type "NoSuchStatus" is unknown']),
}
CASES.update(CASES_SQL)


# DO blocks guarding statements (issue 60): each condition is read on the
# live catalog before anything runs and the branch Postgres would take is
# converted like the file's other statements; each form with what it checks
# there in the base and not. The offline twin runs the DO blocks themselves.
NOTES_CHECK = NOTES + "ALTER TABLE notes ADD COLUMN check_id bigint;"
NOTES_OLD = ["INSERT INTO notes (id, body, check_id) VALUES (100 + {i}, 'old {i}', {i} + 1)"]
FK_DO = ("ALTER TABLE \"notes\" ADD COLUMN \"tag\" text;\n"
         "DO $$ BEGIN\n"
         "  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'notes_check_id_fkey') THEN\n"
         "    ALTER TABLE \"notes\" ADD CONSTRAINT \"notes_check_id_fkey\" FOREIGN KEY (\"check_id\")"
         " REFERENCES \"checks\"(\"id\");\n"
         "  END IF;\n"
         "END $$;\n")
FK_THERE = "ALTER TABLE notes ADD CONSTRAINT notes_check_id_fkey FOREIGN KEY (check_id) REFERENCES checks (id);"
FK_NEW = ["INSERT INTO notes (id, body, check_id, tag) VALUES (200 + {i}, 'new {i}', {i} + 2, 't{i}')"]
# IF EXISTS ... ELSE, several statements in a branch, on information_schema
SCORE_DO = ("DO $$\nBEGIN\n"
            "  IF EXISTS (SELECT 1 FROM information_schema.columns\n"
            "             WHERE table_name = 'notes' AND column_name = 'score') THEN\n"
            "    ALTER TABLE \"notes\" ALTER COLUMN \"score\" SET DEFAULT 0;\n"
            "  ELSE\n"
            "    ALTER TABLE \"notes\" ADD COLUMN \"score\" integer DEFAULT 0;\n"
            "    CREATE INDEX \"notes_score_idx\" ON \"notes\" (\"score\");\n"
            "  END IF;\n"
            "END $$;\n")
SCORE_OLD = ["INSERT INTO notes (id, body) VALUES (100 + {i}, 'old {i}')"]
SCORE_NEW = ["INSERT INTO notes (id, body, score) VALUES (200 + {i}, 'new {i}', {i})",
             "INSERT INTO notes (id, body) VALUES (300 + {i}, 'new default {i}')"]
# a type by pg_type and an index by pg_indexes, two blocks' statements in order
TYPE_DO = ("DO $$\nBEGIN\n"
           "  IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'Mood') THEN\n"
           "    CREATE TYPE \"Mood\" AS ENUM ('calm', 'busy');\n"
           "  END IF;\n"
           "  IF NOT EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = 'notes_body_idx') THEN\n"
           "    CREATE INDEX \"notes_body_idx\" ON \"notes\" (\"body\");\n"
           "  END IF;\n"
           "END $$;\n"
           "ALTER TABLE \"notes\" ADD COLUMN \"mood\" \"Mood\";\n")
TYPE_THERE = "CREATE TYPE \"Mood\" AS ENUM ('calm', 'busy'); CREATE INDEX notes_body_idx ON notes (body);"
TYPE_NEW = ["INSERT INTO notes (id, body, mood) VALUES (200 + {i}, 'new {i}', 'busy')"]
# exactly what drizzle-kit writes for an enum and for foreign keys
DRIZZLE_DO = ("DO $$ BEGIN\n CREATE TYPE \"public\".\"role\" AS ENUM('admin', 'member');\nEXCEPTION\n"
              " WHEN duplicate_object THEN null;\nEND $$;\n--> statement-breakpoint\n"
              "CREATE TABLE IF NOT EXISTS \"memberships\" (\n\t\"id\" serial PRIMARY KEY NOT NULL,\n"
              "\t\"note_id\" integer NOT NULL,\n\t\"role\" \"role\" DEFAULT 'member' NOT NULL\n);\n"
              "--> statement-breakpoint\n"
              "DO $$ BEGIN\n ALTER TABLE \"memberships\" ADD CONSTRAINT \"memberships_note_id_notes_id_fk\" FOREIGN KEY"
              " (\"note_id\") REFERENCES \"public\".\"notes\"(\"id\") ON DELETE cascade ON UPDATE no action;\n"
              "EXCEPTION\n WHEN duplicate_object THEN null;\nEND $$;\n--> statement-breakpoint\n"
              "DO $$ BEGIN\n ALTER TABLE \"notes\" ADD CONSTRAINT \"notes_check_id_checks_id_fk\" FOREIGN KEY"
              " (\"check_id\") REFERENCES \"public\".\"checks\"(\"id\") ON DELETE no action ON UPDATE no action;\n"
              "EXCEPTION\n WHEN duplicate_object THEN null;\nEND $$;\n")
DRIZZLE_THERE = ("CREATE TYPE role AS ENUM ('admin', 'member');"
                 "ALTER TABLE notes ADD CONSTRAINT notes_check_id_checks_id_fk FOREIGN KEY (check_id)"
                 " REFERENCES checks (id);")
DRIZZLE_NEW = ["INSERT INTO memberships (note_id, role) VALUES ({i} % 10 + 1, 'admin')"]
# a value added to an enum, guarded the same way (Postgres raises duplicate_object for a label it has)
ROLE = NOTES + "CREATE TYPE \"Role\" AS ENUM ('admin', 'member'); ALTER TABLE notes ADD COLUMN role \"Role\";"
GUEST = "ALTER TYPE \"Role\" ADD VALUE 'guest'"
GUEST_DO = ("DO $$ BEGIN\n  " + GUEST + ";\nEXCEPTION\n  WHEN duplicate_object THEN null;\nEND $$;\n"
            "ALTER TABLE \"notes\" ADD COLUMN \"tag\" text;\n")
GUEST_NEW = ["INSERT INTO notes (id, body, role, tag) VALUES (200 + {i}, 'new {i}', 'guest', 't{i}')"]


def do_case(base, ops, old, new, tables=("checks", "notes"), **kw):
    return case(base, ops=ops, offline=ops, old=old, new=new, tables=tables, **kw)


def do_refused(ops, refused):
    return case(NOTES, ops=ops, offline=None, refused=refused, tables=("checks", "notes"))


CASES_DO = {
    "do_block_if_not_exists_adds_foreign_key": do_case(NOTES_CHECK, FK_DO, NOTES_OLD, FK_NEW),
    "do_block_if_not_exists_foreign_key_there": do_case(NOTES_CHECK + FK_THERE, FK_DO, NOTES_OLD, FK_NEW),
    "do_block_else_adds_column_and_index": do_case(NOTES, SCORE_DO, SCORE_OLD, SCORE_NEW),
    "do_block_if_exists_sets_default": do_case(NOTES + "ALTER TABLE notes ADD COLUMN score integer;", SCORE_DO,
                                               SCORE_OLD, SCORE_NEW),
    "do_block_creates_type_and_index": do_case(NOTES, TYPE_DO, SCORE_OLD, TYPE_NEW),
    "do_block_type_and_index_there": do_case(NOTES + TYPE_THERE, TYPE_DO, SCORE_OLD, TYPE_NEW),
    "do_block_drizzle_duplicate_object": do_case(
        NOTES_CHECK, DRIZZLE_DO, NOTES_OLD, DRIZZLE_NEW, tables=("checks", "notes", "memberships"),
        before_tables=("checks", "notes")),
    "do_block_drizzle_duplicate_object_there": do_case(
        NOTES_CHECK + DRIZZLE_THERE, DRIZZLE_DO, NOTES_OLD, DRIZZLE_NEW, tables=("checks", "notes", "memberships"),
        before_tables=("checks", "notes")),
    "do_block_adds_enum_value": do_case(ROLE, GUEST_DO, SCORE_OLD, GUEST_NEW, rollback_keeps=[GUEST]),
    "do_block_enum_value_there": do_case(ROLE + GUEST + ";", GUEST_DO, SCORE_OLD, GUEST_NEW),
    # refused before any DDL, naming the block and what to write instead
    "do_block_loop_refused": do_refused(
        "ALTER TABLE \"notes\" ADD COLUMN \"tag\" text;\n"
        "DO $$\nBEGIN\n  FOR i IN 1..3 LOOP\n    EXECUTE format('ALTER TABLE notes ADD COLUMN c%s int', i);\n"
        "  END LOOP;\nEND $$;\n",
        [":2:1: cannot read this DO block before it runs: a FOR loop (line 4)", "write the statements out"]),
    "do_block_execute_refused": do_refused(
        "DO $$ BEGIN\n  EXECUTE 'ALTER TABLE notes ADD COLUMN ' || 'tag text';\nEND $$;\n",
        [":1:1: cannot read this DO block before it runs: EXECUTE of a built string (line 2)",
         "write the statements out"]),
    "do_block_condition_reads_a_table_refused": do_refused(
        "DO $$ BEGIN\n  IF EXISTS (SELECT 1 FROM notes WHERE id > 5) THEN\n"
        "    ALTER TABLE notes ADD COLUMN tag text;\n  END IF;\nEND $$;\n",
        [":1:1: cannot read this DO block before it runs", "reads \"notes\", which is not a catalog relation",
         "(line 2)"]),
    "do_block_condition_named_above_refused": do_refused(
        "ALTER TABLE notes ADD CONSTRAINT notes_body_len CHECK (length(body) < 100);\n"
        "DO $$ BEGIN\n  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'notes_body_len') THEN\n"
        "    ALTER TABLE notes ADD CONSTRAINT notes_body_len CHECK (length(body) < 100);\n  END IF;\nEND $$;\n",
        [":2:1: this DO block reads \"notes_body_len\" on the catalog as it is before the file runs (line 3)",
         "the statement at line 1 above changes it"]),
}
CASES.update(CASES_DO)


# A constraint or index dropped and made again under the same name, as
# Prisma and drizzle-kit change a foreign key's ON DELETE, a CHECK, a
# UNIQUE's or a primary key's columns, an index's keys: the new one is made
# under a temporary name (the old one stays until the contract) and takes
# the name at the contract; the rollback leaves the old one. A name that
# stays taken is refused before any DDL.
FKEY = "checks_account_code_fkey"
LOG_KEY = LOG + "ALTER TABLE check_log ADD CONSTRAINT check_log_key UNIQUE (check_id);"
LOG_PK = LOG + "ALTER TABLE check_log ADD CONSTRAINT check_log_pkey PRIMARY KEY (check_id);"
LOG_AT = LOG + "CREATE INDEX check_log_at ON check_log (at);"
CASES_SAME_NAME = {
    "foreign_key_readded_under_its_name": case(
        ops=[{"drop_constraint": {"table": "checks", "name": FKEY}},
             {"create_constraint": {"table": "checks", "name": FKEY, "type": "foreign_key",
                                    "columns": ["account_code"],
                                    "references": {"table": "accounts", "columns": ["code"], "on_delete": "CASCADE",
                                                   "on_update": "CASCADE"}}}],
        offline="ALTER TABLE checks DROP CONSTRAINT %s;"
                "ALTER TABLE checks ADD CONSTRAINT %s FOREIGN KEY (account_code) REFERENCES accounts (code)"
                " ON DELETE CASCADE ON UPDATE CASCADE" % (FKEY, FKEY),
        old=ACCOUNTS_OLD + ["INSERT INTO checks (id, account_code) VALUES (10000 + {i}, 'c1')"],
        new=ACCOUNTS_NEW + ["INSERT INTO checks (id, account_code) VALUES (20000 + {i}, 'c2')"]),
    "check_readded_under_its_name": case(
        PRICE_LEN, ops=[{"drop_constraint": {"table": "checks", "name": "checks_price_len"}},
                        {"create_constraint": {"table": "checks", "name": "checks_price_len", "type": "check",
                                               "check": "length(price) < 60"}}],
        offline="ALTER TABLE checks DROP CONSTRAINT checks_price_len;"
                "ALTER TABLE checks ADD CONSTRAINT checks_price_len CHECK (length(price) < 60)",
        old=PRICE_OLD, new=CHECKS_NEW),
    "unique_readded_under_its_name": case(
        LOG_KEY, ops=[{"drop_constraint": {"table": "check_log", "name": "check_log_key"}},
                      {"create_constraint": {"table": "check_log", "name": "check_log_key", "type": "unique",
                                             "columns": ["check_id", "at"]}}],
        offline="ALTER TABLE check_log DROP CONSTRAINT check_log_key;"
                "ALTER TABLE check_log ADD CONSTRAINT check_log_key UNIQUE (check_id, at)",
        old=LOG_OLD, new=LOG_NEW, tables=("checks", "check_log")),
    "primary_key_readded_under_its_name": case(
        LOG_PK, ops=[{"drop_constraint": {"table": "check_log", "name": "check_log_pkey"}},
                     {"create_constraint": {"table": "check_log", "name": "check_log_pkey", "type": "primary_key",
                                            "columns": ["check_id", "at"]}}],
        offline="ALTER TABLE check_log DROP CONSTRAINT check_log_pkey;"
                "ALTER TABLE check_log ADD CONSTRAINT check_log_pkey PRIMARY KEY (check_id, at)",
        old=LOG_OLD, new=LOG_NEW, tables=("checks", "check_log")),
    "index_recreated_under_its_name": case(
        LOG_AT, ops=[{"drop_index": {"name": "check_log_at"}},
                     {"create_index": {"table": "check_log", "name": "check_log_at", "columns": ["at", "what"]}}],
        offline="DROP INDEX check_log_at; CREATE INDEX check_log_at ON check_log (at, what)",
        old=LOG_OLD, new=LOG_NEW, tables=("checks", "check_log")),
    "constraint_name_taken_refused": refused_at_start(
        "", {"create_constraint": {"table": "checks", "name": FKEY, "type": "foreign_key", "columns": ["account_code"],
                                   "references": {"table": "accounts", "columns": ["code"]}}},
        ['constraint "%s" for relation "checks" already exists' % FKEY, "42710", "drop_constraint before"]),
    "unique_name_taken_by_a_relation_refused": refused_at_start(
        LOG, {"create_constraint": {"table": "check_log", "name": "accounts", "type": "unique",
                                    "columns": ["check_id"]}},
        ['relation "accounts" already exists in schema "public"', "42P07"]),
    "index_name_taken_refused": refused_at_start(
        LOG_AT, {"create_index": {"table": "check_log", "name": "check_log_at", "columns": ["what"]}},
        ['relation "check_log_at" already exists in schema "public"', "42P07", "drop_index before"]),
}
CASES.update(CASES_SAME_NAME)

# A table renamed after other changes to it, then its indexes and keys
# renamed under its new name, as Prisma writes it: the contract addresses
# the table by the name it has then (the old name is the old release's
# view by that time), and the rollback gives every index and key its old
# name back.
TOKENS = """
CREATE TABLE projects (id int PRIMARY KEY, name text);
CREATE TABLE tokens (id int PRIMARY KEY, v text);
CREATE TABLE "TokenProject" (id int PRIMARY KEY, "projectId" int, "accountId" int, "tokenId" int,
    CONSTRAINT "TokenProject_projectId_fkey" FOREIGN KEY ("projectId") REFERENCES projects (id),
    CONSTRAINT "TokenProject_tokenId_fkey" FOREIGN KEY ("tokenId") REFERENCES tokens (id));
CREATE INDEX "TokenProject_accountId_idx" ON "TokenProject" ("accountId");
INSERT INTO projects SELECT g, 'p' || g FROM generate_series(1, 50) g;
INSERT INTO tokens SELECT g, 't' || g FROM generate_series(1, 120) g;
INSERT INTO "TokenProject" SELECT g, g, g, g FROM generate_series(1, 50) g;
"""
TOKEN_RENAME = """
ALTER TABLE "TokenProject" DROP CONSTRAINT IF EXISTS "TokenProject_projectId_fkey";
ALTER TABLE "TokenProject" DROP COLUMN IF EXISTS "projectId";
ALTER TABLE "TokenProject" RENAME TO "TokenAccount";
ALTER INDEX "TokenProject_pkey" RENAME TO "TokenAccount_pkey";
ALTER INDEX "TokenProject_accountId_idx" RENAME TO "TokenAccount_accountId_idx";
ALTER TABLE "TokenAccount" RENAME CONSTRAINT "TokenProject_tokenId_fkey" TO "TokenAccount_tokenId_fkey";
"""
CASES_TABLE_RENAMED = {
    "rename_table_then_its_indexes_and_keys": case(
        TOKENS, ops=TOKEN_RENAME, offline=TOKEN_RENAME,
        old=['INSERT INTO "TokenProject" (id, "projectId", "accountId", "tokenId") VALUES (1000 + {i}, 1, {i}, {i} + 1)',
             'UPDATE "TokenProject" SET "accountId" = 500 + {i} WHERE id = {i} + 1'],
        new=['INSERT INTO "TokenAccount" (id, "accountId", "tokenId") VALUES (2000 + {i}, {i}, {i} + 2)',
             'UPDATE "TokenAccount" SET "accountId" = 700 + {i} WHERE id = {i} + 31'],
        tables=("projects", "tokens", '"TokenAccount"'), before_tables=("projects", "tokens", '"TokenProject"')),
    # the same with a change of a column's type before the rename: its
    # backfill, triggers and contract follow the table to its new name
    "retype_then_rename_table": case(
        TOKENS, ops='ALTER TABLE "TokenProject" ALTER COLUMN "accountId" TYPE bigint;'
                    'ALTER TABLE "TokenProject" RENAME TO "TokenAccount";',
        offline='ALTER TABLE "TokenProject" ALTER COLUMN "accountId" TYPE bigint;'
                'ALTER TABLE "TokenProject" RENAME TO "TokenAccount";',
        old=['INSERT INTO "TokenProject" (id, "projectId", "accountId", "tokenId") VALUES (1000 + {i}, 1, {i}, {i} + 1)',
             'UPDATE "TokenProject" SET "accountId" = 500 + {i} WHERE id = {i} + 1'],
        new=['INSERT INTO "TokenAccount" (id, "projectId", "accountId", "tokenId") VALUES (2000 + {i}, 2, {i}, {i} + 2)',
             'UPDATE "TokenAccount" SET "accountId" = 700 + {i} WHERE id = {i} + 31'],
        tables=("projects", "tokens", '"TokenAccount"'), before_tables=("projects", "tokens", '"TokenProject"')),
    # a table dropped once the foreign keys referencing it are dropped by
    # the statements before it, as Prisma writes it: its contract drops
    # the keys first, so Postgres has nothing to refuse
    "drop_table_after_its_keys": case(
        TOKENS + 'ALTER TABLE "TokenProject" ADD COLUMN "projectRef" int REFERENCES projects (id);',
        ops='ALTER TABLE "TokenProject" DROP CONSTRAINT "TokenProject_projectId_fkey";'
            'ALTER TABLE "TokenProject" DROP CONSTRAINT "TokenProject_projectRef_fkey";'
            'DROP TABLE projects;',
        offline='ALTER TABLE "TokenProject" DROP CONSTRAINT "TokenProject_projectId_fkey";'
                'ALTER TABLE "TokenProject" DROP CONSTRAINT "TokenProject_projectRef_fkey";'
                'DROP TABLE projects;',
        old=['INSERT INTO "TokenProject" (id, "projectId", "accountId", "tokenId") VALUES (1000 + {i}, 1, {i}, {i} + 1)'],
        new=['INSERT INTO "TokenProject" (id, "projectId", "accountId", "tokenId") VALUES (2000 + {i}, 2, {i}, 2)'],
        tables=("tokens", '"TokenProject"'), before_tables=("projects", "tokens", '"TokenProject"')),
    # a column of an enum the file creates, filled by an UPDATE of string
    # literals (rallly's add_space_tier): the backfill types them as the
    # column, as the assignment does offline
    "add_enum_column_filled_by_update": case(
        TOKENS,
        ops='CREATE TYPE "tiers" AS ENUM (\'hobby\', \'pro\');'
            'ALTER TABLE "tokens" ADD COLUMN "tier" "tiers" NOT NULL DEFAULT \'hobby\';'
            'UPDATE "tokens" SET "tier" = \'pro\' WHERE EXISTS (SELECT 1 FROM "TokenProject" p'
            ' WHERE p."tokenId" = "tokens".id AND p.id % 2 = 0);',
        offline='CREATE TYPE "tiers" AS ENUM (\'hobby\', \'pro\');'
                'ALTER TABLE "tokens" ADD COLUMN "tier" "tiers" NOT NULL DEFAULT \'hobby\';'
                'UPDATE "tokens" SET "tier" = \'pro\' WHERE EXISTS (SELECT 1 FROM "TokenProject" p'
                ' WHERE p."tokenId" = "tokens".id AND p.id % 2 = 0);',
        old=['INSERT INTO tokens (id, v) VALUES (1000 + {i}, \'old {i}\')'],
        new=['INSERT INTO tokens (id, v, tier) VALUES (2000 + {i}, \'new {i}\', \'pro\')'],
        tables=("tokens",), before_tables=("tokens",)),
    # a column filled by an UPDATE under an alias (rallly: UPDATE polls p
    # SET ... WHERE p.status = 'closed'): the fill names the row by the
    # table's name, so the backfill and the trigger find it
    "add_column_filled_by_aliased_update": case(
        TOKENS,
        ops='ALTER TABLE "TokenProject" ADD COLUMN "label" text;'
            'UPDATE "TokenProject" tp SET "label" = (SELECT t.v FROM tokens t WHERE t.id = tp."tokenId")'
            ' WHERE tp."accountId" % 3 = 0;',
        offline='ALTER TABLE "TokenProject" ADD COLUMN "label" text;'
                'UPDATE "TokenProject" tp SET "label" = (SELECT t.v FROM tokens t WHERE t.id = tp."tokenId")'
                ' WHERE tp."accountId" % 3 = 0;',
        old=['INSERT INTO "TokenProject" (id, "projectId", "accountId", "tokenId") VALUES (1000 + {i}, 1, {i}, {i} + 1)'],
        new=['INSERT INTO "TokenProject" (id, "projectId", "accountId", "tokenId", label) VALUES (2000 + {i}, 1, {i}, 2, \'n\')'],
        tables=('"TokenProject"',), before_tables=('"TokenProject"',)),
    # the file's own DELETE, run in batches: the foreign keys'
    # actions (ON DELETE SET NULL, CASCADE) and the table's triggers act as
    # offline (replica mode, which the backfill of new columns runs in,
    # skipped them: the referencing rows kept keys to rows gone)
    "data_statements_keep_triggers_and_key_actions": case(
        TOKENS + 'CREATE TABLE token_uses (id int PRIMARY KEY, token_id int REFERENCES tokens (id) ON DELETE CASCADE);'
                 'INSERT INTO token_uses SELECT g, g FROM generate_series(1, 120) g;'
                 'CREATE TABLE token_log (token_id int, what text);'
                 'CREATE FUNCTION log_token() RETURNS trigger LANGUAGE plpgsql AS $$'
                 ' BEGIN INSERT INTO token_log VALUES (OLD.id, TG_OP); RETURN NULL; END $$;'
                 'CREATE TRIGGER tokens_logged AFTER DELETE ON tokens FOR EACH ROW EXECUTE FUNCTION log_token();'
                 'ALTER TABLE "TokenProject" DROP CONSTRAINT "TokenProject_tokenId_fkey",'
                 ' ADD CONSTRAINT "TokenProject_tokenId_fkey" FOREIGN KEY ("tokenId") REFERENCES tokens (id) ON DELETE SET NULL;',
        ops='DELETE FROM tokens WHERE id < 1000 AND id % 7 = 3;',
        offline='DELETE FROM tokens WHERE id < 1000 AND id % 7 = 3;',
        old=['INSERT INTO tokens (id, v) VALUES (1000 + {i}, \'old {i}\')'],
        new=['INSERT INTO tokens (id, v) VALUES (2000 + {i}, \'new {i}\')'],
        tables=("tokens", "token_uses", "token_log", '"TokenProject"'),
        before_tables=("tokens", "token_uses", "token_log", '"TokenProject"'),
        rollback_keeps_rows=['DELETE FROM tokens WHERE id < 1000 AND id % 7 = 3;']),
    # a fill by a correlated subquery whose bare names are columns of both
    # tables (rallly's migrate_events_to_spaces: SELECT "id" FROM "spaces"
    # WHERE "owner_id" = ...): inside the subquery they are its table's, as
    # offline, not the trigger's locals of the same name (each old-release
    # write failed: column reference "id" is ambiguous)
    "add_column_filled_by_subquery_with_shared_names": case(
        TOKENS,
        ops='ALTER TABLE "TokenProject" ADD COLUMN "tokenV" text;'
            'UPDATE "TokenProject" SET "tokenV" = (SELECT v FROM tokens WHERE id = "TokenProject"."tokenId");',
        offline='ALTER TABLE "TokenProject" ADD COLUMN "tokenV" text;'
                'UPDATE "TokenProject" SET "tokenV" = (SELECT v FROM tokens WHERE id = "TokenProject"."tokenId");',
        old=['INSERT INTO "TokenProject" (id, "projectId", "accountId", "tokenId") VALUES (1000 + {i}, 1, {i}, {i} + 1)',
             'UPDATE "TokenProject" SET "tokenId" = {i} + 3 WHERE id = {i} + 1'],
        new=['INSERT INTO "TokenProject" (id, "projectId", "accountId", "tokenId", "tokenV") VALUES (2000 + {i}, 1, {i},'
             ' 2, \'n\')'],
        tables=('"TokenProject"',), before_tables=('"TokenProject"',)),
}
CASES.update(CASES_TABLE_RENAMED)


# Prisma removes a value from an enum by making the type again: a new type,
# the column retyped through text, the old type renamed away (or dropped
# first) and the new one given its name. The column is a second column of
# the new type until the contract; the type's drop and renames wait for it
# (the old column holds the old type until then).
ORDER = ("CREATE TYPE \"OrderState\" AS ENUM ('open', 'paid', 'void');"
         "CREATE TABLE \"Order\" (id int PRIMARY KEY, state \"OrderState\" NOT NULL DEFAULT 'open');"
         "INSERT INTO \"Order\" SELECT g, (CASE WHEN g % 2 = 0 THEN 'open' ELSE 'paid' END)::\"OrderState\""
         " FROM generate_series(1, 80) g;")
ORDER_RETYPE_SQL = ("CREATE TYPE \"OrderState_new\" AS ENUM ('open', 'paid');\n"
                    "ALTER TABLE \"Order\" ALTER COLUMN \"state\" DROP DEFAULT;\n"
                    "ALTER TABLE \"Order\" ALTER COLUMN \"state\" TYPE \"OrderState_new\""
                    " USING (\"state\"::text::\"OrderState_new\");\n"
                    "ALTER TABLE \"Order\" ALTER COLUMN \"state\" SET DEFAULT 'open';\n")
ORDER_RENAME_OLD_SQL = ORDER_RETYPE_SQL + ("ALTER TYPE \"OrderState\" RENAME TO \"OrderState_old\";\n"
                                           "ALTER TYPE \"OrderState_new\" RENAME TO \"OrderState\";\n"
                                           "DROP TYPE \"OrderState_old\";\n")
ORDER_DROP_OLD_SQL = ORDER_RETYPE_SQL + ("DROP TYPE \"OrderState\";\n"
                                         "ALTER TYPE \"OrderState_new\" RENAME TO \"OrderState\";\n")
ORDER_OLD = ["INSERT INTO \"Order\" (id) VALUES (1000 + {i})", "INSERT INTO \"Order\" VALUES (2000 + {i}, 'paid')",
             "UPDATE \"Order\" SET state = 'paid' WHERE id = {i} + 1"]
ORDER_NEW = ["INSERT INTO \"Order\" (id) VALUES (3000 + {i})", "INSERT INTO \"Order\" VALUES (4000 + {i}, 'paid')",
             "UPDATE \"Order\" SET state = 'open' WHERE id = {i} + 41"]

# A statement checked against what the statements above it left: a key
# renamed, its table renamed, the key renamed again under the table's new
# name (one rename, from the first name to the last).
ITEM = ("CREATE TABLE \"Owner\" (id int PRIMARY KEY); INSERT INTO \"Owner\" SELECT generate_series(1, 5);"
        "CREATE TABLE \"Item\" (id int PRIMARY KEY, \"ownerId\" int,"
        " CONSTRAINT \"Item_owner_fkey\" FOREIGN KEY (\"ownerId\") REFERENCES \"Owner\" (id));"
        "INSERT INTO \"Item\" SELECT g, g % 5 + 1 FROM generate_series(1, 20) g;")
ITEM_SQL = ("ALTER TABLE \"Item\" RENAME CONSTRAINT \"Item_owner_fkey\" TO \"Item_ownerId_fkey\";\n"
            "ALTER TABLE \"Item\" RENAME TO \"Thing\";\n"
            "ALTER TABLE \"Thing\" RENAME CONSTRAINT \"Item_ownerId_fkey\" TO \"Thing_ownerId_fkey\";\n")
ITEM_COLUMNS_SQL = ("ALTER TABLE \"Item\" RENAME COLUMN \"ownerId\" TO \"oid\";\n"
                    "ALTER TABLE \"Item\" ADD COLUMN \"note\" text NOT NULL DEFAULT 'none';\n"
                    "ALTER TABLE \"Item\" ALTER COLUMN \"oid\" SET DEFAULT 1;\n"
                    "ALTER TABLE \"Item\" RENAME TO \"Thing\";\n")
KIND = "CREATE TABLE \"T\" (id int PRIMARY KEY, kind text); INSERT INTO \"T\" SELECT g, 'k' || g FROM generate_series(1, 20) g;"
KIND_SQL = ("ALTER TABLE \"T\" RENAME COLUMN \"kind\" TO \"legacyKind\";\n"
            "ALTER TABLE \"T\" ADD COLUMN \"kind\" text;\n")
KIND_OLD = ["INSERT INTO \"T\" (id, kind) VALUES (1000 + {i}, 'old {i}')",
            "UPDATE \"T\" SET kind = 'ou {i}' WHERE id = {i} % 10 + 1"]
KIND_NEW = ["INSERT INTO \"T\" (id, \"legacyKind\", kind) VALUES (2000 + {i}, 'legacy {i}', 'new {i}')",
            "INSERT INTO \"T\" (id) VALUES (3000 + {i})",
            "UPDATE \"T\" SET kind = 'nu {i}', \"legacyKind\" = 'lu {i}' WHERE id = {i} % 10 + 11"]
ROLE_SQL = ("CREATE TYPE \"Role_new\" AS ENUM ('user', 'admin');\n"
            "ALTER TABLE \"User\" ALTER COLUMN \"roles\" TYPE \"Role_new\"[] USING (\"roles\"::text::\"Role_new\"[]);\n"
            "ALTER TYPE \"Role\" RENAME TO \"Role_old\";\n"
            "ALTER TYPE \"Role_new\" RENAME TO \"Role\";\n"
            "DROP TYPE \"Role_old\";\n")
CASES_PRISMA = {
    "prisma_enum_value_removed_renaming_the_old_type": case(
        ORDER, ops=ORDER_RENAME_OLD_SQL, offline=ORDER_RENAME_OLD_SQL, old=ORDER_OLD, new=ORDER_NEW,
        tables=("checks", '"Order"')),
    "prisma_enum_value_removed_dropping_the_old_type": case(
        ORDER, ops=ORDER_DROP_OLD_SQL, offline=ORDER_DROP_OLD_SQL, old=ORDER_OLD, new=ORDER_NEW,
        tables=("checks", '"Order"')),
    # an enum array column, as Prisma writes its retype ("Role_new"[])
    "prisma_enum_array_value_removed": case(
        "CREATE TYPE \"Role\" AS ENUM ('user', 'admin', 'guest');"
        "CREATE TABLE \"User\" (id int PRIMARY KEY, roles \"Role\"[]);"
        "INSERT INTO \"User\" SELECT g, ARRAY['user', 'admin']::\"Role\"[] FROM generate_series(1, 20) g;",
        ops=ROLE_SQL, offline=ROLE_SQL,
        old=["INSERT INTO \"User\" VALUES (1000 + {i}, '{{admin}}')",
             "UPDATE \"User\" SET roles = '{{user}}' WHERE id = {i} % 10 + 1"],
        new=["INSERT INTO \"User\" VALUES (2000 + {i}, '{{user,admin}}')",
             "UPDATE \"User\" SET roles = '{{admin}}' WHERE id = {i} % 10 + 11"],
        tables=("checks", '"User"')),
    "sql_key_renamed_around_its_table_rename": case(
        ITEM, ops=ITEM_SQL, offline=ITEM_SQL,
        old=["INSERT INTO \"Item\" VALUES (1000 + {i}, 1)", "UPDATE \"Item\" SET \"ownerId\" = 2 WHERE id = {i} % 10 + 1"],
        new=["INSERT INTO \"Thing\" VALUES (2000 + {i}, 3)", "UPDATE \"Thing\" SET \"ownerId\" = 4 WHERE id = {i} % 10 + 11"],
        tables=("checks", '"Thing"', '"Owner"'), before_tables=("checks", '"Item"', '"Owner"')),
    # the first two alone: the key's rename runs at the contract, on the table's new name
    "sql_key_renamed_then_its_table": case(
        ITEM, ops=ITEM_SQL.split(";\n")[0] + ";\n" + ITEM_SQL.split(";\n")[1] + ";\n",
        offline=ITEM_SQL.split(";\n")[0] + ";\n" + ITEM_SQL.split(";\n")[1] + ";\n",
        old=["INSERT INTO \"Item\" VALUES (1000 + {i}, 1)"], new=["INSERT INTO \"Thing\" VALUES (2000 + {i}, 3)"],
        tables=("checks", '"Thing"', '"Owner"'), before_tables=("checks", '"Item"', '"Owner"')),
    # a column renamed, retyped and given a default, then its table renamed: the table takes its new name at
    # expand (the old release reads a view of the old name), so the column's changes act on the new name
    "sql_columns_changed_then_their_table_renamed": case(
        ITEM, ops=ITEM_COLUMNS_SQL, offline=ITEM_COLUMNS_SQL,
        old=["INSERT INTO \"Item\" (id, \"ownerId\") VALUES (1000 + {i}, 1)",
             "UPDATE \"Item\" SET \"ownerId\" = 2 WHERE id = {i} % 10 + 1"],
        new=["INSERT INTO \"Thing\" (id, oid, note) VALUES (2000 + {i}, 3, 'n {i}')",
             "INSERT INTO \"Thing\" (id, oid) VALUES (3000 + {i}, 4)",
             "UPDATE \"Thing\" SET oid = 4 WHERE id = {i} % 10 + 11"],
        tables=("checks", '"Thing"', '"Owner"'), before_tables=("checks", '"Item"', '"Owner"')),
    # a column renamed and a new column added under its old name: the old release reads the old column under
    # that name until the contract, the new release the old one as "legacyKind" and the new one as "kind"
    "sql_column_renamed_then_its_name_added": case(
        KIND, ops=KIND_SQL, offline=KIND_SQL, old=KIND_OLD, new=KIND_NEW, tables=("checks", '"T"')),
    "sql_column_renamed_then_its_name_added_not_null_default": case(
        KIND, ops=KIND_SQL.replace("text;", "text NOT NULL DEFAULT 'plain';"),
        offline=KIND_SQL.replace("text;", "text NOT NULL DEFAULT 'plain';"), old=KIND_OLD, new=KIND_NEW,
        tables=("checks", '"T"')),
    # more than a plain column under the freed name: refused before any DDL, saying what to write instead
    "sql_column_renamed_then_its_name_added_unique_refused": case(
        KIND, ops=KIND_SQL.replace("text;", "text UNIQUE;"), offline=None, tables=("checks", '"T"'),
        refused=['column "kind" takes the name operations[0].rename_column frees', "in a migration after this one"]),
    # a default set alone on it: the new shape's view at expand, the table at the contract after its rename
    "sql_column_renamed_then_its_name_added_then_its_default_set": case(
        KIND, ops=KIND_SQL + "ALTER TABLE \"T\" ALTER COLUMN \"kind\" SET DEFAULT 'x';\n",
        offline=KIND_SQL + "ALTER TABLE \"T\" ALTER COLUMN \"kind\" SET DEFAULT 'x';\n", old=KIND_OLD, new=KIND_NEW,
        tables=("checks", '"T"')),
    "column_added_in_a_freed_name_then_changed_refused": case(
        KIND, ops=[{"rename_column": {"table": "T", "from": "kind", "to": "legacyKind"}},
                   {"add_column": {"table": "T", "column": {"name": "kind", "type": "text"}}},
                   {"alter_column": {"table": "T", "column": "kind", "nullable": False}}],
        offline=None, tables=("checks", '"T"'),
        refused=['operations[2].alter_column names "kind", the column added here under the name '
                 'operations[0].rename_column frees', "in a migration after this one"]),
    "sql_column_renamed_then_another_renamed_to_its_name_refused": case(
        KIND, ops="ALTER TABLE \"T\" RENAME COLUMN \"kind\" TO \"legacyKind\";\n"
                  "ALTER TABLE \"T\" RENAME COLUMN \"id\" TO \"kind\";\n", offline=None, tables=("checks", '"T"'),
        refused=[':2:1: column "kind" of "T" is renamed to "legacyKind" above, and this RENAME COLUMN',
                 "Put this RENAME COLUMN in a migration after this one"]),
}
CASES.update(CASES_PRISMA)


# Cases not carried yet: expected to fail until they are (strict, so a fix is noticed).
PENDING = set()


def corpus():
    return [pytest.param(n, marks=pytest.mark.xfail(strict=True)) if n in PENDING else n for n in sorted(CASES)]


# ---- databases and dumps ----------------------------------------------------

@pytest.fixture
def twins(cluster):
    names = ["fid_" + uuid.uuid4().hex[:10] for _ in range(2)]
    for n in names:
        cluster.psql("CREATE DATABASE %s" % n)
    yield [cluster.uri(db=n) for n in names]
    for n in names:
        cluster.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % n, check=False)


def run_script(uri, text):
    r = subprocess.run(["psql", uri, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", text], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def run_scripts(uri, scripts):
    for text in [scripts] if isinstance(scripts, str) else scripts:
        run_script(uri, text)


def base_with(cluster, c, scripts, read):
    """read(uri) of a scratch database holding the case's base with
    `scripts` run on it: what a rollback ends in when it keeps them."""
    name = "fid_" + uuid.uuid4().hex[:10]
    cluster.psql("CREATE DATABASE %s" % name)
    try:
        uri = cluster.uri(db=name)
        run_script(uri, c["base"])
        run_scripts(uri, scripts)
        return read(uri)
    finally:
        cluster.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name, check=False)


def rollback_rows(cluster, c, start_rows):
    """The rows a rollback ends in: the start's, or, when the case's data
    statements keep theirs, the start's with them run."""
    if not c["rollback_keeps_rows"]:
        return start_rows
    return base_with(cluster, c, c["rollback_keeps_rows"], lambda uri: table_rows(uri, c["before_tables"]))


def rollback_dump(cluster, c, start_dump):
    """The schema a rollback ends in: the start's, or, when the case keeps
    something (an enum value), the start's with it."""
    if not c["rollback_keeps"]:
        return start_dump
    return base_with(cluster, c, c["rollback_keeps"], lambda uri: schema_dump(cluster, uri))


def table_rows(uri, tables):
    return {t: sql(uri, "SELECT to_jsonb(x) FROM %s x ORDER BY 1" % t) for t in tables}


def leftovers(uri):
    """What a finished migration must not leave behind (schema pgtandem itself
    is excluded from the dumps; the cases' own triggers are in them)."""
    return sql(uri, "SELECT 'function ' || proname FROM pg_proc WHERE pronamespace = 'pgtandem'::regnamespace"
                    " UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger"
                    " WHERE NOT tgisinternal AND tgname LIKE 'pgtandem%'"
                    " UNION ALL SELECT 'invalid index ' || indexrelid::regclass::text FROM pg_index"
                    " WHERE NOT indisvalid")


def write_all(uri, statements, options=""):
    with psycopg.connect(uri, autocommit=True, options=options) as c:
        for i in range(ITER):
            for s in statements:
                c.execute(s.format(i=i))


def concurrent_writers(uri, name, old, new, new_options=None):
    """Old- and new-shape writers at once; the new shape's session declares
    the migration (and, without the proxy to route it, sets its own
    search_path)."""
    errors = []

    def writer(statements, options):
        try:
            write_all(uri, statements, options)
        except Exception as e:  # reported by the test, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(old, "")),
               threading.Thread(target=writer, args=(new, new_options or new_shape_options(name)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def diff(a, b):
    import difflib
    return "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), "offline", "online", lineterm=""))


def migration_path(name, ops):
    """The case's migration as a file: JSON, or FILE.sql when ops is the
    file's text (the migration is named after the file)."""
    if isinstance(ops, list):
        return write_migration({"name": name, "parent": None, "operations": ops})
    path = os.path.join(tempfile.mkdtemp(prefix="fid-sql-"), name + ".sql")
    with open(path, "w") as f:
        f.write(ops)
    return path


# ---- the test ----------------------------------------------------------------

@pytest.mark.parametrize("name", corpus())
def test_online_ends_where_offline_ends(cluster, twins, name):
    c = CASES[name]
    online, offline = twins
    for uri in twins:
        run_script(uri, c["base"])
    start_dump, start_rows = schema_dump(cluster, online), table_rows(online, c["before_tables"])
    mname = "fid_" + name[:36]  # migration names have at most 40 characters
    path = migration_path(mname, c["ops"])

    if c["refused"]:
        for verb in ("plan", "start"):
            r = migrate(online, verb, path)
            assert r.returncode == 2, (verb, r.returncode, r.stdout, r.stderr)
            for want in c["refused"]:
                assert want in r.stderr, (verb, want, r.stderr)
        assert schema_dump(cluster, online) == start_dump
        assert table_rows(online, c["before_tables"]) == start_rows
        return

    plan = migrate(online, "plan", path)
    assert plan.returncode == 0, plan.stderr
    for want in c["carried"]:
        assert want in plan.stdout, (want, plan.stdout[:3000])
    r = migrate(online, "start", path)
    assert r.returncode == 0, r.stderr
    rb = migrate(online, "rollback")
    assert rb.returncode == 0, rb.stderr
    after_rollback, want = schema_dump(cluster, online), rollback_dump(cluster, c, start_dump)
    assert after_rollback == want, diff(want, after_rollback)
    assert table_rows(online, c["before_tables"]) == rollback_rows(cluster, c, start_rows)
    assert leftovers(online) == []

    r = migrate(online, "start", path)
    assert r.returncode == 0, r.stderr
    concurrent_writers(online, mname, c["old"], c["new"])
    v = migrate(online, "verify")
    assert v.returncode == 0, v.stdout + v.stderr
    done = migrate(online, "complete")
    assert done.returncode == 0, done.stderr

    offline_twin_matches(cluster, c, online, offline)


def offline_twin_matches(cluster, c, online, offline):
    """The twin gets the old-shape writes, the offline DDL, the new-shape
    writes; then both must have the same schema and rows."""
    write_all(offline, c["old"])
    run_scripts(offline, c["offline"])
    write_all(offline, c["new"])

    want, got = schema_dump(cluster, offline), schema_dump(cluster, online)
    assert got == want, diff(want, got)
    assert leftovers(online) == []
    assert table_rows(online, c["tables"]) == table_rows(offline, c["tables"])


# ---- the same through a running proxy -------------------------------------------

# Representative cases: a rename keeping the original (views), a change of
# type carrying the column's properties, user triggers, a table rename, an
# enum value added alone at expand and used by the same migration, DO
# blocks read on the catalog the proxy's engine reaches.
THROUGH_PROXY = ["view_reads_renamed_column", "retype_carries_column_properties", "triggers_name_renamed_column",
                 "rename_table_with_every_kind", "add_enum_value_used_by_same_migration",
                 "do_block_drizzle_duplicate_object_there", "do_block_else_adds_column_and_index"]


def through_proxy(proxy, *args):
    return run_pgtandem(["migrate"] + list(args) + ["--proxy", admin_url(proxy)])


@pytest.mark.parametrize("name", THROUGH_PROXY)
def test_through_the_proxy_ends_where_offline_ends(cluster, twins, proxy_factory, name):
    """start, rollback, start and complete sent to a running proxy's admin
    API; the writers connect through the proxy, the new-shape one with only
    `options=-c pgtandem.version=<name>` (the proxy routes it to the new
    shape)."""
    c = CASES[name]
    online, offline = twins
    for uri in twins:
        run_script(uri, c["base"])
    start_dump, start_rows = schema_dump(cluster, online), table_rows(online, c["before_tables"])
    mname = "fidp_" + name[:35]
    path = migration_path(mname, c["ops"])   # FILE.sql is converted by the proxy's engine
    proxy = proxy_factory(extra_args=["--engine-db", online])

    start_migration(proxy, path)
    rb = through_proxy(proxy, "rollback")
    assert rb.returncode == 0, rb.stdout + rb.stderr + proxy.log()[-3000:]
    after_rollback, want = schema_dump(cluster, online), rollback_dump(cluster, c, start_dump)
    assert after_rollback == want, diff(want, after_rollback)
    assert table_rows(online, c["before_tables"]) == start_rows
    assert leftovers(online) == []

    start_migration(proxy, path)
    dbname = online.rsplit("/", 1)[1].split("?")[0]
    via_proxy = proxy.uri(user="postgres", password="postgres", db=dbname)
    concurrent_writers(via_proxy, mname, c["old"], c["new"], new_options="-c pgtandem.version=" + mname)
    complete_migration(proxy)
    offline_twin_matches(cluster, c, online, offline)

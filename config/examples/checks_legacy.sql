-- The production shape before the unify migration (seed 000): checks with
-- claim_text / aggregation / diagnostics as text JSON, alembic at the old head.
-- Row count: psql -v rows=200000 -f checks_legacy.sql (default 5000).
\if :{?rows}
\else
\set rows 5000
\endif
DROP TABLE IF EXISTS checks CASCADE;
DROP TABLE IF EXISTS anonymous_usage CASCADE;
DROP TABLE IF EXISTS alembic_version;

CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
INSERT INTO alembic_version VALUES ('9e15719c5c3c');

CREATE TABLE checks (
    id          bigserial PRIMARY KEY,
    claim_text  text NOT NULL,
    aggregation text,
    diagnostics text,
    env         text NOT NULL DEFAULT 'prod',
    anon_token  text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON COLUMN checks.claim_text IS 'The claim as submitted by the user';
CREATE INDEX ix_checks_claim_text ON checks (claim_text);

-- Generates n legacy-shaped rows; used by the demo and the benchmark too.
CREATE OR REPLACE FUNCTION legacy_fill_checks(n bigint) RETURNS void LANGUAGE sql AS $$
INSERT INTO checks (claim_text, aggregation, diagnostics, env, anon_token, created_at)
SELECT 'claim number ' || g,
       json_build_object('model', 'gpt-5', 'k', g % 7, 'p_true', round((g % 100) / 100.0, 2))::text,
       CASE WHEN g % 10 = 0 THEN NULL
            ELSE json_build_object('template_a', g % 13, 'template_b', g % 5)::text END,
       CASE WHEN g % 3 = 0 THEN 'dev' ELSE 'prod' END,
       CASE WHEN g % 2 = 0 THEN md5(g::text) END,
       now() - (g || ' seconds')::interval
  FROM generate_series(1, n) g
$$;

SELECT legacy_fill_checks(:rows);
ANALYZE checks;

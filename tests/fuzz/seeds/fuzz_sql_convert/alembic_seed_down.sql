BEGIN;

-- Running upgrade 9e15719c5c3c -> b73c9aa4f0c3

ALTER TABLE checks RENAME claim_text TO claim;

-- pgtandem:down config_json::text
ALTER TABLE checks ALTER COLUMN aggregation TYPE JSONB USING aggregation::jsonb;

ALTER TABLE checks RENAME aggregation TO config_json;

-- pgtandem:down counts_by_template_json::text
ALTER TABLE checks ALTER COLUMN diagnostics TYPE JSONB USING diagnostics::jsonb;

ALTER TABLE checks RENAME diagnostics TO counts_by_template_json;

CREATE TABLE anonymous_usage (
    token TEXT NOT NULL,
    checks_allowed INTEGER DEFAULT '3' NOT NULL,
    checks_used INTEGER DEFAULT '0' NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (token)
);

CREATE INDEX ix_checks_env_anon_token ON checks (env, anon_token);

UPDATE alembic_version SET version_num='b73c9aa4f0c3' WHERE alembic_version.version_num = '9e15719c5c3c';

COMMIT;

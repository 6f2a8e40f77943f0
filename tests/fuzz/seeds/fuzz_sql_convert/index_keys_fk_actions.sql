CREATE INDEX CONCURRENTLY ix_lower ON checks (lower(claim_text));
CREATE INDEX ix_pat ON checks USING btree (claim_text text_pattern_ops, created_at DESC NULLS LAST) INCLUDE (env) WITH (fillfactor = 70, deduplicate_items = off) WHERE env <> 'dev';
CREATE UNIQUE INDEX ix_plain ON checks (id, env);
ALTER TABLE usage ADD CONSTRAINT fk_u FOREIGN KEY (check_id) REFERENCES checks (id) ON DELETE CASCADE ON UPDATE SET NULL;

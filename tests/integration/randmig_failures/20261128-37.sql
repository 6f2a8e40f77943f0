-- base schema: 20261128-37.base.sql
-- then: migrate start; migrate rollback
-- failure: rollback schema differs: -CREATE INDEX team_body_idx ON ONLY public.team USING btree (body) WHERE (body IS NOT NULL); | +CREATE INDEX team_body_idx_r ON ONLY public.team USING btree (body) WHERE (body IS NOT NULL); | -ALTER INDEX public.team_body_idx ATTACH PARTITION public.team_p0_body_idx; | +ALTER INDEX public.team_body_
ALTER INDEX "team_body_idx" RENAME TO "team_body_idx_r";

CREATE TABLE "team" ("id" integer PRIMARY KEY, "name" text);
CREATE TABLE "tag" ("id" integer PRIMARY KEY, "parentId" integer REFERENCES "tag"("id") ON DELETE SET NULL, "team_id" integer REFERENCES "team"("id"), "body" text);
INSERT INTO "team" SELECT g, 'team'||g FROM generate_series(1,30) g;
INSERT INTO "tag" SELECT g, CASE WHEN g>1 THEN g-1 END, g%30+1, 'b'||g FROM generate_series(1,40) g;

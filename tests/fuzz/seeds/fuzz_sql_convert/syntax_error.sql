ALTER TABLE t ADD COLUMN a int;
  ALTER TABLEE t; /* unterminated
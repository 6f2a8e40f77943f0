ALTER TABLE items RENAME COLUMN remark TO note;

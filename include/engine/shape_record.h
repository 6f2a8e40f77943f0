/* The record of what a migration touches, taken before its expand and
 * compared after its rollback (shape_record.c). */
#ifndef PGTANDEM_SHAPE_RECORD_H
#define PGTANDEM_SHAPE_RECORD_H

#include <libpq-fe.h>
#include <stddef.h>

#include "migration.h"

enum shape_check {
    SHAPE_RESTORED = 0,       /* every line of the record is as it was */
    SHAPE_DIFFERS = 1,        /* diff says which lines differ */
    SHAPE_NOT_RECORDED = 2,   /* the start took no record (an older release) */
    SHAPE_OTHERS_MEANWHILE = 3, /* diff names migrations that changed the schema since the start */
};

/* Takes the record into m's row of pgtandem.migrations (which must exist):
 * 0, or -1 with a message. */
int shape_record_save(PGconn *conn, const struct migration *m, char *err, size_t errlen);
/* After a rollback's steps: compares the record with the catalog now,
 * logs the outcome and sets *check (an enum shape_check; a record that
 * could not be read counts as none) and, for SHAPE_OTHERS_MEANWHILE,
 * others (the migrations that changed the schema since). 0, or -1 with
 * err naming what differs. */
int shape_record_judge(PGconn *conn, const struct migration *m, int *check, char *others, size_t otherslen,
                       char *err, size_t errlen);

#endif

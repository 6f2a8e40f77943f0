/* Reading a whole file the operator named (a config file, pgbouncer.ini,
 * a users file, a migration to upload) with a bound: a file over it is
 * refused by name, and so is one that never ends (/dev/zero, a device),
 * rather than read until memory runs out. Files handed to a library that
 * reads them itself (OpenSSL's certificates) are checked first. */
#ifndef PGTANDEM_FILE_READ_H
#define PGTANDEM_FILE_READ_H

#include <stddef.h>

#include "compiler.h"

enum {
    FILE_PRIVATE = 1 /* secrets: a regular file only, refused when the group or others may access it */
};

/* The file's bytes, NUL-terminated (the terminator is not counted in
 * *len, which may be NULL); the caller frees them. NULL with err filled
 * ("<what> \"<path>\": ...") when it cannot be opened, is a directory, is
 * over max bytes, or (FILE_PRIVATE) has group or world access. A file that
 * is not a regular one (a pipe, /dev/stdin) is read too, up to max + 1
 * bytes. */
PGT_MUSTCHECK char *file_read_all(const char *path, const char *what, size_t max, int flags, size_t *len,
                                  char *err, size_t errlen);

/* 0 when path is a regular file of at most max bytes; -1 with err filled
 * otherwise, for files a library reads by name. */
PGT_MUSTCHECK int file_check(const char *path, const char *what, size_t max, char *err, size_t errlen);

#endif

/* Whole-file reads with a bound (see file_read.h). The size is checked on
 * the open descriptor (no window between the check and the read), and the
 * read stops one byte past the bound whatever fstat said: a file that grows
 * meanwhile, or a device with no size, still ends there. */
#include "file_read.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void say(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Checks what fstat says about an open file; 0 when it may be read. */
static int acceptable(const struct stat *st, const char *path, const char *what, size_t max, int flags, char *err,
                      size_t errlen)
{
    if (S_ISDIR(st->st_mode)) {
        say(err, errlen, "%s \"%s\" is a directory", what, path);
        return -1;
    }
    if (S_ISREG(st->st_mode) && (unsigned long long)st->st_size > (unsigned long long)max) {
        say(err, errlen, "%s \"%s\" is %lld bytes, more than the %zu a %s may have", what, path,
            (long long)st->st_size, max, what);
        return -1;
    }
    /* a secret comes from a file whose mode says who may read it, read in
     * one piece (a pipe's growing buffer would leave copies behind) */
    if ((flags & FILE_PRIVATE) && !S_ISREG(st->st_mode)) {
        say(err, errlen, "%s \"%s\" is not a regular file", what, path);
        return -1;
    }
    if ((flags & FILE_PRIVATE) && (st->st_mode & (S_IRWXG | S_IRWXO))) {
        say(err, errlen,
            "%s \"%s\" has group or world access; permissions should be u=rw (0600) or less (chmod 600 %s)", what,
            path, path);
        return -1;
    }
    return 0;
}

char *file_read_all(const char *path, const char *what, size_t max, int flags, size_t *len, char *err,
                    size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        say(err, errlen, "%s \"%s\": %s", what, path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        say(err, errlen, "%s \"%s\": %s", what, path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (acceptable(&st, path, what, max, flags, err, errlen) != 0) {
        close(fd);
        return NULL;
    }
    size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 2 : 8192, got = 0;
    char *buf = malloc(cap);
    int read_errno = 0, no_memory = buf == NULL;
    while (!no_memory && got <= max) {
        if (got + 1 >= cap) {
            size_t grown_cap = cap * 2 > max + 2 ? max + 2 : cap * 2;
            char *grown = grown_cap > cap ? realloc(buf, grown_cap) : NULL;
            if (!grown) {
                no_memory = 1;
                break;
            }
            buf = grown;
            cap = grown_cap;
        }
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            read_errno = errno;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (no_memory) {
        free(buf);
        say(err, errlen, "%s \"%s\": out of memory", what, path);
        return NULL;
    }
    if (read_errno || got > max) {
        if (read_errno)
            say(err, errlen, "%s \"%s\": %s", what, path, strerror(read_errno));
        else
            say(err, errlen, "%s \"%s\" is more than the %zu bytes a %s may have", what, path, max, what);
        free(buf);
        return NULL;
    }
    buf[got] = '\0';
    if (len)
        *len = got;
    return buf;
}

int file_check(const char *path, const char *what, size_t max, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        say(err, errlen, "%s \"%s\": %s", what, path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        say(err, errlen, "%s \"%s\" is not a regular file", what, path);
        return -1;
    }
    return acceptable(&st, path, what, max, 0, err, errlen);
}

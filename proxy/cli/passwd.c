/* `pgtandem passwd USER [--file config/users.json] [--iterations N]
 * [--verifier-only | --from-db URI]`: stores what the proxy needs for USER
 * in the users file (auth "scram"). The proxy authenticates clients with a
 * SCRAM verifier and logs in upstream on their behalf, with the password
 * or with the ClientKey a client's proof reveals, which works only where
 * the database stores the very same verifier. So by default the password
 * is stored with a verifier (works for every pool mode and every upstream
 * method); --from-db stores the role's own verifier read from pg_authid
 * (no password kept, the salts match); --verifier-only a fresh verifier
 * alone, for a database given that verifier or asking for no password.
 * The output says which modes the file works for.
 *
 * The password comes from the terminal with echo off, or from the first
 * line of stdin when stdin is not a terminal (scripts) -- never from the
 * command line, where other users could read it in the process list. The
 * file is rewritten through a 0600 temporary file and an atomic rename, so
 * a crash leaves either the old or the new file, never half of one. */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "file_read.h"
#include "scram.h"
#include "users.h"

#define PASSWORD_MAX 1024

enum passwd_store { STORE_PASSWORD, STORE_VERIFIER_ONLY, STORE_FROM_DB };

struct passwd_args {
    const char *user;
    const char *file;
    int iterations;
    enum passwd_store store;
    const char *db;   /* --from-db */
};

void passwd_usage(FILE *out)
{
    fprintf(out, "usage: pgtandem passwd USER [--file FILE] [--iterations N] [--verifier-only | --from-db URI]\n"
                 "stores what `pgtandem proxy --auth scram` needs for USER: by default the password and a\n"
                 "SCRAM-SHA-256 verifier (session and transaction pooling, any upstream method); the password is\n"
                 "read from the terminal, or from stdin's first line when it is not a terminal, never from argv\n"
                 "options:\n"
                 "  --file FILE                the users file (default config/users.json)\n"
                 "  --iterations N             SCRAM iterations, 1 to 100000000 (default %d)\n"
                 "  --verifier-only            a fresh verifier alone, no password: the proxy can then log in\n"
                 "                             upstream only where the database stores this same verifier\n"
                 "  --from-db URI              the role's own verifier from pg_authid (a superuser connection),\n"
                 "                             no password asked or kept: works in both modes with that database\n",
            SCRAM_DEFAULT_ITERATIONS);
}

static int wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
    return 0;
}

static int parse_args(int argc, char **argv, struct passwd_args *a)
{
    a->user = NULL;
    a->file = "config/users.json";
    a->iterations = SCRAM_DEFAULT_ITERATIONS;
    a->store = STORE_PASSWORD;
    a->db = NULL;
    int verifier_only = 0;
    for (int i = 1; i < argc; i++) {
        verifier_only |= strcmp(argv[i], "--verifier-only") == 0;
        if (strcmp(argv[i], "--file") == 0 && i + 1 < argc) {
            a->file = argv[++i];
        } else if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > 100000000) {
                fprintf(stderr, "pgtandem passwd: --iterations must be between 1 and 100000000\n");
                return -1;
            }
            a->iterations = (int)n;
        } else if (strcmp(argv[i], "--verifier-only") == 0) {
            a->store = STORE_VERIFIER_ONLY;
        } else if (strcmp(argv[i], "--from-db") == 0 && i + 1 < argc) {
            a->store = STORE_FROM_DB;
            a->db = argv[++i];
        } else if (argv[i][0] == '-' || a->user) {
            fprintf(stderr, "pgtandem passwd: unexpected argument '%s'\n", argv[i]);
            return -1;
        } else {
            a->user = argv[i];
        }
    }
    if (!a->user || !a->user[0]) {
        fprintf(stderr, "pgtandem passwd: a user name is required\n");
        return -1;
    }
    if (verifier_only && a->db) {
        fprintf(stderr, "pgtandem passwd: --verifier-only and --from-db exclude each other\n");
        return -1;
    }
    return 0;
}

/* One line from fd, without its line ending. Returns its length or -1. */
static long read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    char ch;
    ssize_t r;
    while ((r = read(fd, &ch, 1)) == 1 && ch != '\n') {
        if (n + 1 >= cap)
            return -1;
        buf[n++] = ch;
    }
    if (r < 0 || (r == 0 && n == 0))
        return -1;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return (long)n;
}

/* Prompts on stderr and reads one line with terminal echo turned off. */
static long read_hidden(const char *prompt, char *buf, size_t cap)
{
    struct termios old, quiet;
    fputs(prompt, stderr);
    fflush(stderr);
    if (tcgetattr(STDIN_FILENO, &old) != 0)
        return -1;
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    quiet.c_lflag |= ECHONL;
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) != 0)
        return -1;
    long n = read_line(STDIN_FILENO, buf, cap);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    return n;
}

/* The password into buf: asked twice on a terminal, one line otherwise. */
static long get_password(const char *user, char *buf, size_t cap)
{
    if (!isatty(STDIN_FILENO))
        return read_line(STDIN_FILENO, buf, cap);
    char prompt[256], again[PASSWORD_MAX];
    snprintf(prompt, sizeof prompt, "Enter password for \"%s\": ", user);
    long n = read_hidden(prompt, buf, cap);
    if (n < 0)
        return -1;
    long m = read_hidden("Enter it again: ", again, sizeof again);
    int same = m == n && memcmp(buf, again, (size_t)n) == 0;
    OPENSSL_cleanse(again, sizeof again);
    if (!same) {
        fprintf(stderr, "pgtandem passwd: passwords didn't match\n");
        return -2;
    }
    return n;
}

/* The current file, or an empty object when it does not exist yet. */
static json_t *load_users_json(const char *path)
{
    json_error_t jerr;
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            return json_object();
        fprintf(stderr, "pgtandem passwd: cannot read \"%s\": %s\n", path, strerror(errno));
        return NULL;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        fprintf(stderr, "pgtandem passwd: warning: \"%s\" has group or world access; the rewritten file will be "
                        "0600\n", path);
    char why[600];
    char *text = file_read_all(path, "users file", USERS_FILE_MAX, 0, NULL, why, sizeof why);
    if (!text) {
        fprintf(stderr, "pgtandem passwd: %s\n", why);
        return NULL;
    }
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    OPENSSL_cleanse(text, strlen(text));
    free(text);
    if (!root)
        fprintf(stderr, "pgtandem passwd: \"%s\", line %d, column %d: %s\n", path, jerr.line, jerr.column, jerr.text);
    else if (!json_is_object(root)) {
        fprintf(stderr, "pgtandem passwd: \"%s\" is not a JSON object of users\n", path);
        json_decref(root);
        root = NULL;
    }
    return root;
}

/* Writes root to a 0600 temporary file beside path, then renames it over. */
static int write_atomically(const char *path, json_t *root)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 8);
    if (!tmp)
        return -1;
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".XXXXXX", 8);
    int fd = mkstemp(tmp); /* created 0600 */
    int ok = fd >= 0 && fchmod(fd, 0600) == 0 && json_dumpfd(root, fd, JSON_INDENT(2) | JSON_SORT_KEYS) == 0 &&
             write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    if (fd >= 0 && close(fd) != 0)
        ok = 0;
    if (ok && rename(tmp, path) != 0)
        ok = 0;
    if (!ok) {
        fprintf(stderr, "pgtandem passwd: could not write \"%s\": %s\n", path, strerror(errno));
        if (fd >= 0)
            unlink(tmp);
    }
    free(tmp);
    return ok ? 0 : -1;
}

/* Sets USER's entry and writes the file. */
static int store_entry(const struct passwd_args *a, json_t *entry)
{
    json_t *root = entry ? load_users_json(a->file) : NULL;
    if (!root) {
        json_decref(entry);
        return 1;
    }
    int rc = json_object_set_new(root, a->user, entry) == 0 && write_atomically(a->file, root) == 0 ? 0 : 1;
    json_decref(root);
    return rc;
}

static int store_password(const struct passwd_args *a, const char *password, size_t len)
{
    struct scram_verifier v;
    char text[SCRAM_VERIFIER_MAX_LEN];
    if (scram_verifier_from_password(&v, password, len, a->iterations) != SCRAM_OK ||
        scram_verifier_format(&v, text, sizeof text) < 0) {
        scram_verifier_wipe(&v);
        fprintf(stderr, "pgtandem passwd: could not compute the verifier\n");
        return 1;
    }
    scram_verifier_wipe(&v);
    json_t *entry = NULL;
    if (a->store == STORE_VERIFIER_ONLY)
        entry = json_string(text);
    else
        entry = json_pack("{s:s, s:s%}", "verifier", text, "password", password, len);
    /* jansson's copy of the password is freed unwiped (see users.h): the
     * file holds it anyway */
    if (store_entry(a, entry) != 0)
        return 1;
    if (a->store == STORE_VERIFIER_ONLY)
        fprintf(stderr,
                "pgtandem passwd: stored a SCRAM-SHA-256 verifier (fresh salt) for \"%s\" in %s\n"
                "  clients can log in to the proxy with it, but the proxy can log in upstream (in either pool mode)\n"
                "  only where the database stores this same verifier (ALTER ROLE ... PASSWORD '<the verifier>') or\n"
                "  asks for no password; for a database that keeps its own, run again with --from-db URI, or\n"
                "  without --verifier-only to store the password\n",
                a->user, a->file);
    else
        fprintf(stderr,
                "pgtandem passwd: stored the password and a SCRAM-SHA-256 verifier for \"%s\" in %s\n"
                "  works for session and transaction pooling, whatever the upstream asks (SCRAM, md5, password);\n"
                "  the file holds the password in clear (mode 0600; --from-db keeps none)\n",
                a->user, a->file);
    return 0;
}

/* The role's rolpassword, as the database stores it, into out; 0, or 1
 * with the reason said. Reading pg_authid takes a superuser: on a managed
 * database (Neon) it is not readable, and the password is stored instead. */
static int read_db_verifier(const struct passwd_args *a, char *out, size_t cap)
{
    PGconn *conn = PQconnectdb(a->db);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "pgtandem passwd: --from-db: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return 1;
    }
    const char *params[1] = {a->user};
    PGresult *res = PQexecParams(conn, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", 1, NULL, params, NULL,
                                 NULL, 0);
    int rc = 1;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        fprintf(stderr, "pgtandem passwd: --from-db: reading pg_authid failed: %s", PQerrorMessage(conn));
        if (state && !strcmp(state, "42501"))
            fprintf(stderr, "  pg_authid is readable by superusers only: connect as one, or store the password "
                            "(leave out --from-db)\n");
    } else if (PQntuples(res) == 0) {
        fprintf(stderr, "pgtandem passwd: --from-db: the database has no role \"%s\"\n", a->user);
    } else if (PQgetisnull(res, 0, 0)) {
        fprintf(stderr, "pgtandem passwd: --from-db: role \"%s\" has no password\n", a->user);
    } else if (strncmp(PQgetvalue(res, 0, 0), "SCRAM-SHA-256$", 14) != 0) {
        fprintf(stderr,
                "pgtandem passwd: --from-db: role \"%s\" has an md5 password, not a SCRAM-SHA-256 verifier: set it "
                "again under password_encryption = 'scram-sha-256', or store the password (leave out --from-db)\n",
                a->user);
    } else if ((size_t)PQgetlength(res, 0, 0) >= cap) {
        fprintf(stderr, "pgtandem passwd: --from-db: role \"%s\": verifier too long\n", a->user);
    } else {
        snprintf(out, cap, "%s", PQgetvalue(res, 0, 0));
        rc = 0;
    }
    PQclear(res);
    PQfinish(conn);
    return rc;
}

static int store_from_db(const struct passwd_args *a)
{
    char text[SCRAM_VERIFIER_MAX_LEN];
    struct scram_verifier v;
    if (read_db_verifier(a, text, sizeof text) != 0)
        return 1;
    if (scram_verifier_parse(&v, text, strlen(text)) != SCRAM_OK) {
        fprintf(stderr, "pgtandem passwd: --from-db: role \"%s\": not a verifier the proxy can read\n", a->user);
        return 1;
    }
    scram_verifier_wipe(&v);
    if (store_entry(a, json_string(text)) != 0)
        return 1;
    fprintf(stderr,
            "pgtandem passwd: stored the database's own SCRAM-SHA-256 verifier for \"%s\" (from pg_authid) in %s\n"
            "  works for session and transaction pooling with that database; no password is kept (when it\n"
            "  changes there, run this again)\n",
            a->user, a->file);
    return 0;
}

int passwd_main(int argc, char **argv)
{
    struct passwd_args a;
    char password[PASSWORD_MAX];
    if (wants_help(argc, argv)) {
        passwd_usage(stdout);
        return 0;
    }
    if (parse_args(argc, argv, &a) != 0) {
        passwd_usage(stderr);
        return 2;
    }
    if (a.store == STORE_FROM_DB)
        return store_from_db(&a);
    long n = get_password(a.user, password, sizeof password);
    if (n <= 0) {
        OPENSSL_cleanse(password, sizeof password);
        if (n != -2)
            fprintf(stderr, "pgtandem passwd: %s\n", n == 0 ? "empty password refused" : "no password read");
        return n == 0 ? 2 : 1;
    }
    int rc = store_password(&a, password, (size_t)n);
    OPENSSL_cleanse(password, sizeof password);
    return rc;
}

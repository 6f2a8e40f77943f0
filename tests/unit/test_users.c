/* Unit tests for the users file of auth "scram": verifier and password
 * entries, lookups, the 0600 rule, and errors that name the file and user. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"
#include "users.h"

/* Postgres 15's verifier for the password "pencil-tandem" (see test_scram.c). */
#define PG_VERIFIER                                                                                             \
    "SCRAM-SHA-256$4096:48WdZ5WSJqk88F9eN3HXxg==$quS16VXPjZtl+fVyG0xqriMwmcceeXRH4qqIeEkj81c=:"               \
    "6f+UCTZJJClaCfrZ2ahObQqj/2kbE5ZQznb0cF2styk="

static char dir[] = "/tmp/pgtandem-users-XXXXXX";

static const char *write_file(const char *name, const char *body, mode_t mode)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(body, f);
    fclose(f);
    chmod(path, mode);
    return path;
}

static int load_fails_with(const char *body, mode_t mode, const char *needle)
{
    struct users *u = NULL;
    char err[512] = "";
    const char *path = write_file("bad.json", body, mode);
    int rc = users_load(path, &u, err, sizeof err);
    if (rc == 0)
        users_free(u);
    if (rc == 0 || !strstr(err, needle) || !strstr(err, path)) {
        printf("unexpected: rc=%d err=%s\n", rc, err);
        return 0;
    }
    return 1;
}

static void test_load_and_find(void)
{
    struct users *u = NULL;
    char err[512] = "";
    const char *path = write_file("users.json",
                                  "{\"alice\": \"" PG_VERIFIER "\",\n"
                                  " \"bob\": {\"password\": \"hunter2\"},\n"
                                  " \"carol\": {\"verifier\": \"" PG_VERIFIER "\", \"password\": \"pencil-tandem\"}}\n",
                                  0600);
    CHECK("users: loads", users_load(path, &u, err, sizeof err) == 0 && u && u->count == 3);
    if (!u) {
        printf("%s\n", err);
        return;
    }
    const struct user_entry *a = users_find(u, "alice"), *b = users_find(u, "bob"), *c = users_find(u, "carol");
    CHECK("users: verifier entry", a && !a->password && scram_verifier_check_password(&a->verifier, "pencil-tandem", 13));
    CHECK("users: password entry gets a derived verifier",
          b && b->password && strcmp(b->password, "hunter2") == 0 &&
              scram_verifier_check_password(&b->verifier, "hunter2", 7) && b->verifier.iterations == 4096);
    CHECK("users: password and verifier together", c && c->password && c->verifier.iterations == 4096);
    CHECK("users: unknown user", users_find(u, "mallory") == NULL && users_find(u, "") == NULL);
    users_free(u);
}

static void test_errors(void)
{
    CHECK("users: group-readable file refused", load_fails_with("{}", 0640, "permissions should be u=rw (0600)"));
    CHECK("users: world-readable file refused", load_fails_with("{}", 0604, "group or world access"));
    CHECK("users: invalid JSON names line", load_fails_with("{\"a\": ", 0600, "line"));
    CHECK("users: not an object", load_fails_with("[]", 0600, "expected a JSON object"));
    CHECK("users: bad verifier names the user", load_fails_with("{\"dave\": \"md5abc\"}", 0600, "user \"dave\""));
    CHECK("users: unknown field", load_fails_with("{\"dave\": {\"pasword\": \"x\"}}", 0600, "unknown field"));
    CHECK("users: empty password", load_fails_with("{\"dave\": {\"password\": \"\"}}", 0600, "empty password"));
    CHECK("users: mismatched password and verifier",
          load_fails_with("{\"dave\": {\"password\": \"x\", \"verifier\": \"" PG_VERIFIER "\"}}", 0600,
                          "does not match"));
    CHECK("users: duplicate user", load_fails_with("{\"a\": \"" PG_VERIFIER "\", \"a\": \"" PG_VERIFIER "\"}", 0600,
                                                   "duplicate"));
    struct users *u = NULL;
    char err[512] = "";
    CHECK("users: missing file", users_load("/nonexistent/users.json", &u, err, sizeof err) == -1 &&
                                     strstr(err, "/nonexistent/users.json") != NULL);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    test_load_and_find();
    test_errors();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("could not remove %s\n", dir);
    return UNIT_RESULT();
}

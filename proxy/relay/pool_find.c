/* Finding a session's pool (see pool.h): one pool per database, user,
 * options and the route's version schema, made on first use and kept for
 * the relay's life, each keeping the credentials its logins use. */
#include "pool.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static char *dup_or_null(const char *s, int *oom)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d)
        *oom = 1;
    return d;
}

void pool_destroy(struct pool *p)
{
    free(p->database);
    free(p->user);
    free(p->options);
    free(p->schema);
    if (p->welcome_msgs)
        evbuffer_free(p->welcome_msgs);
    if (p->have_creds)
        auth_credentials_wipe(&p->creds);
    free(p);
}

struct pool *pool_for(struct relay *relay, const char *database, const char *user, const char *options,
                      const char *schema)
{
    for (struct pool *p = relay->pools; p; p = p->next)
        if (pool_same(p->database, database) && pool_same(p->user, user) && pool_same(p->options, options) &&
            pool_same(p->schema, schema))
            return p;
    struct pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    int oom = 0;
    p->relay = relay;
    p->database = dup_or_null(database, &oom);
    p->user = dup_or_null(user, &oom);
    p->options = dup_or_null(options, &oom);
    p->schema = dup_or_null(schema, &oom);
    p->welcome_msgs = evbuffer_new();
    if (oom || !p->welcome_msgs) {
        pool_destroy(p);
        return NULL;
    }
    p->next = relay->pools;
    relay->pools = p;
    log_debug("pool for database %s, user %s%s%s created", database, user, schema ? ", schema " : "",
              schema ? schema : "");
    return p;
}

int pool_wants_credentials(const struct pool *p)
{
    return !p->have_creds || !p->logins_proven;
}

void pool_take_credentials(struct pool *p, const struct auth_credentials *c)
{
    struct auth_credentials fresh;
    if (!c || auth_credentials_dup(c, &fresh) != 0)
        return;
    if (p->have_creds)
        auth_credentials_wipe(&p->creds);
    p->creds = fresh;
    p->have_creds = 1;
}

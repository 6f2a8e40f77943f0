/* Named prepared statements a session has created (its Parse messages), so
 * the proxy can prepare them again after a cutover changed the tables they
 * read: Postgres would otherwise fail them with "cached plan must not change
 * result type" (0A000). */
#ifndef PGTANDEM_PREPARED_H
#define PGTANDEM_PREPARED_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

struct prepared {
    struct prepared *next;
    char *name;
    uint8_t *parse;   /* the whole Parse message, header included */
    uint32_t len;
    uint64_t hash;    /* statement_map.c: its text's hash once first needed, else 0 */
    uint8_t effect;   /* statement_map.h: enum stmt_effect, worked out at its first Bind */
};

#define PREPARED_MAX_MESSAGE (1u << 20) /* larger Parse messages are not tracked */

/* msg is a complete Parse message; unnamed statements are ignored. */
int prepared_remember(struct prepared **list, const uint8_t *msg, uint32_t len);
/* msg is a complete Close message; only statement closes matter. */
void prepared_forget_closed(struct prepared **list, const uint8_t *msg, uint32_t len);
/* Forgets the statement named `name` (SQL DEALLOCATE of it): 1, or 0 when
 * there was none. */
int prepared_forget(struct prepared **list, const char *name);
void prepared_free_all(struct prepared **list);
/* The statement the client named `name`, or NULL; moved to the front, so
 * the statements a client binds most are found first. */
struct prepared *prepared_find(struct prepared **list, const char *name);
/* Appends Close + Parse for every statement and one Sync; returns how many
 * statements (0: nothing appended). */
int prepared_write_reprepare(const struct prepared *list, struct evbuffer *out);

#endif

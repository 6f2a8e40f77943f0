/* What a client's statements do to its session under transaction pooling,
 * seen as they pass: a statement that leaves state the pool cannot carry
 * pins the client to its server; a SET the pool carries is noted when it
 * is sent (a simple Query at once, an extended one when its statement is
 * bound: a driver prepares a SET it runs often and then only binds it)
 * and booked when its ReadyForQuery says it ran;
 * SQL DEALLOCATE of a protocol-level statement is answered by the pool,
 * and DEALLOCATE ALL and DISCARD ALL are noted when they ran. One part of
 * the client session (see session_internal.h). */
#include "session.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pin.h"
#include "prepared.h"
#include "session_internal.h"
#include "statement_map.h"

#define PENDING_SETS_MAX 64 /* SETs sent and not yet answered, per session */
#define PIN_MAX_INSPECT (1u << 20) /* larger statements pin rather than being buffered whole */
/* A pinned client's statements are looked at only for a DEALLOCATE, which
 * is short: a longer one streams as it comes. */
#define DEALLOCATE_MAX 4096u

void session_pin(struct session *s, const char *why)
{
    struct session_extra *x = session_extra_get(s);
    s->pinned = 1; /* without its reason when out of memory: pinned all the same */
    if (x)
        snprintf(x->pin_reason, sizeof x->pin_reason, "%s", why);
    /* from now on routed like a session-mode session (follow_route) */
    s->route_gen = s->relay->route.gen;
    if (session_set_routed_schema(s, s->lent->pool->schema) != 0)
        s->route_gen--;
    log_info("session %llu (%s): pinned to its server connection for the rest of the session: %s",
             (unsigned long long)s->id, session_addr(s), why);
}

/* A session-level SET (or RESET, RESET ALL) the client runs now: booked to
 * the client, for every server it borrows next, and to the server it runs
 * on, as that server's session will have it. */
static void book_set(struct session *s, const struct pin_carry *carry, const char *sql, size_t len)
{
    if (carry->all) { /* RESET ALL: none left on either */
        carried_sets_free(&s->carried);
        carried_sets_free(&s->lent->carried);
        return;
    }
    /* the client's with its search_path's value, so the route's schema can
     * go first (carried_sets_differ) */
    const char *value = carry->value[0] ? carry->value : NULL;
    if (carried_sets_apply(&s->carried, carry->name, carry->reset, value, sql, len) != 0 ||
        carried_sets_apply(&s->lent->carried, carry->name, carry->reset, NULL, sql, len) != 0)
        session_pin(s, "too many SETs to carry");
}

static void pin_for_block(struct session *s, const struct pin_carry *carry)
{
    char why[128]; /* room for any name: session_pin keeps what fits */
    snprintf(why, sizeof why, "%s%s in a transaction block", carry->all ? "RESET ALL" : carry->reset ? "RESET " : "SET ",
             carry->name);
    session_pin(s, why);
}

/* A SET on its way to the server: the client's only once it ran, which
 * the ReadyForQuery that ends its unit tells (a SET Postgres refuses, or
 * one in a unit an error ends, is nobody's: booked, the pool would replay
 * it ahead of the client's next transaction, where it fails again and
 * takes the RESETs run with it). */
struct pending_set {
    struct pending_set *next;
    uint32_t countdown; /* ReadyForQuery answers due up to the one that ends its unit */
    int failed;         /* an ErrorResponse came in its unit */
    struct pin_carry carry;
    size_t len;
    char sql[];
};

/* A carried SET runs now: booked when it ran, between transactions; inside
 * a transaction block the pool cannot tell whether it will outlive it (a
 * ROLLBACK undoes it), so the client keeps its server. */
static void run_set(struct session *s, const struct pin_carry *carry, const char *sql, size_t len)
{
    if (s->tracker.tx_status != 'I') {
        pin_for_block(s, carry);
        return;
    }
    struct pending_set **tail = &s->pending_sets;
    int in_flight = 0;
    while (*tail) {
        tail = &(*tail)->next;
        in_flight++;
    }
    /* a client that pipelines SETs without reading their answers holds
     * memory of ours for each: past a bound it keeps its server instead */
    struct pending_set *p = in_flight < PENDING_SETS_MAX ? malloc(sizeof *p + len + 1) : NULL;
    if (!p) {
        session_pin(s, in_flight < PENDING_SETS_MAX ? "out of memory noting its SET" : "too many SETs in flight");
        return;
    }
    /* its unit ends with the next ReadyForQuery not yet due: a Query's own,
     * or the Sync that follows a Bind */
    p->next = NULL;
    p->countdown = s->tracker.pending_rfq + 1;
    /* a Bind read after its unit's error: the server skips it */
    p->failed = s->tracker.pending_rfq == 0 && s->unit_failed;
    p->carry = *carry;
    p->len = len;
    memcpy(p->sql, sql, len);
    p->sql[len] = '\0';
    *tail = p;
}

void session_sets_error(struct session *s)
{
    for (struct pending_set *p = s->pending_sets; p; p = p->next)
        if (p->countdown == 1)
            p->failed = 1;
}

void session_sets_ready(struct session *s, uint8_t status)
{
    struct pending_set **link = &s->pending_sets;
    while (*link) {
        struct pending_set *p = *link;
        if (--p->countdown > 0) {
            link = &p->next;
            continue;
        }
        *link = p->next;
        /* 'T': it ran in a block opened before it in its unit or in one
         * sent ahead of it; a ROLLBACK may still undo it */
        if (!p->failed && status == 'I' && s->lent)
            book_set(s, &p->carry, p->sql, p->len);
        else if (!p->failed && status == 'T' && !s->pinned)
            pin_for_block(s, &p->carry);
        free(p);
    }
}

void session_sets_skipped(struct session *s, uint32_t skipped)
{
    if (skipped && s->pending_sets && !s->pinned)
        session_pin(s, "SET sent with a COPY's pipeline");
}

void session_sets_free(struct session *s)
{
    while (s->pending_sets) {
        struct pending_set *p = s->pending_sets;
        s->pending_sets = p->next;
        free(p);
    }
}

/* strnlen by memchr: libpg_query exports a strnlen of its own, a byte
 * at a time, which the dynamic linker finds before libc's. */
static size_t text_len(const char *p, size_t max)
{
    const char *nul = memchr(p, '\0', max);
    return nul ? (size_t)(nul - p) : max;
}

/* The query text of a Parse message at `msg` (whole, `total` bytes). */
static const char *parse_text(const uint8_t *msg, uint32_t total, size_t *len)
{
    const char *body = (const char *)msg + PROTO_HEADER_LEN;
    size_t left = total - PROTO_HEADER_LEN;
    size_t name_len = text_len(body, left);
    if (name_len + 1 >= left) {
        *len = 0;
        return body + left;
    }
    *len = text_len(body + name_len + 1, left - name_len - 1);
    return body + name_len + 1;
}

void session_note_bound(struct session *s, const struct stmt_bound *b)
{
    if (!b->parse || *b->effect == STMT_EFFECT_NONE)
        return;
    size_t len;
    const char *text = parse_text(b->parse, b->len, &len);
    struct pin_carry carry;
    int sets = pin_carried_set(text, len, &carry);
    *b->effect = sets ? STMT_EFFECT_SET : STMT_EFFECT_NONE;
    if (sets)
        run_set(s, &carry, text, len);
}

/* SQL DEALLOCATE of one of the client's protocol-level statements, which
 * live on the servers under the pool's names (statement_map.h): forgotten
 * here, the servers keep them for the other clients, and the client's
 * statement runs as an empty query whose EmptyQueryResponse is said as
 * DEALLOCATE's CommandComplete. 1 when it was one. Not in an aborted
 * transaction, where Postgres refuses it and keeps the statement; as
 * a Parse only with nothing in flight before it, which could make the
 * server skip its Execute. */
static int answer_deallocate(struct session *s, struct evbuffer *in, struct msg_header *h, size_t *avail,
                             const char *text, size_t len)
{
    char name[128];
    if (s->tracker.tx_status == 'E' || (h->type == 'P' && (s->tracker.pending_rfq || s->tracker.mid_unit)) ||
        !pin_deallocate_name(text, len, name, sizeof name) || !prepared_forget(&s->prepared, name))
        return 0;
    static const uint8_t empty_query[] = {'Q', 0, 0, 0, 5, 0};
    static const uint8_t empty_parse[] = {'P', 0, 0, 0, 8, 0, 0, 0, 0}; /* unnamed, "", no parameter types */
    evbuffer_drain(in, h->length + 1u);
    if (h->type == 'Q')
        evbuffer_prepend(in, empty_query, sizeof empty_query);
    else
        evbuffer_prepend(in, empty_parse, sizeof empty_parse);
    h->length = h->type == 'Q' ? sizeof empty_query - 1 : sizeof empty_parse - 1;
    *avail = evbuffer_get_length(in);
    s->dealloc_replies++;
    return 1;
}

enum peek_result session_check_statement(struct session *s, struct evbuffer *in, struct msg_header *h,
                                         size_t *avail)
{
    uint32_t total = h->length + 1;
    if (h->type == 'F' && !s->pinned) {
        session_pin(s, "function call (fast path)");
        return PEEK_DONE;
    }
    if ((h->type != 'Q' && h->type != 'P') || (s->pinned && total > DEALLOCATE_MAX))
        return PEEK_DONE;
    if (total > PIN_MAX_INSPECT) {
        if (!s->pinned)
            session_pin(s, "statement too large to inspect");
        return PEEK_DONE;
    }
    if (*avail < total)
        return PEEK_NEED_MORE;
    const uint8_t *msg = evbuffer_pullup(in, total);
    size_t len;
    const char *text;
    if (h->type == 'P') {
        text = parse_text(msg, total, &len);
    } else {
        text = (const char *)msg + PROTO_HEADER_LEN;
        len = text_len(text, total - PROTO_HEADER_LEN);
    }
    struct pin_carry carry;
    if (!s->pinned && pin_carried_set(text, len, &carry)) {
        if (h->type == 'Q')
            run_set(s, &carry, text, len);
        return PEEK_DONE; /* a Parse's: booked when bound (session_note_bound) */
    }
    if ((h->type == 'Q' || msg[PROTO_HEADER_LEN] == '\0') && answer_deallocate(s, in, h, avail, text, len))
        return PEEK_DONE;
    char why[64];
    if (!s->pinned && pin_reason_for_sql(text, len, why, sizeof why) != 0)
        session_pin(s, why);
    return PEEK_DONE;
}

static const char dealloc_all[] = "DEALLOCATE ALL", discard_all[] = "DISCARD ALL";

int session_command_tag_matters(const struct msg_header *h)
{
    /* the length alone tells every other tag apart, before a byte is copied */
    uint32_t total = h->length + 1;
    return total == PROTO_HEADER_LEN + sizeof dealloc_all || total == PROTO_HEADER_LEN + sizeof discard_all;
}

enum peek_result session_note_command_complete(struct session *s, struct evbuffer *in, const struct msg_header *h,
                                               size_t avail)
{
    uint32_t total = h->length + 1;
    if (!session_command_tag_matters(h))
        return PEEK_DONE;
    if (avail < total)
        return PEEK_NEED_MORE;
    char tag[PROTO_HEADER_LEN + sizeof dealloc_all];
    evbuffer_copyout(in, tag, total);
    const char *t = tag + PROTO_HEADER_LEN;
    int discard = total == PROTO_HEADER_LEN + sizeof discard_all;
    if (memcmp(t, discard ? discard_all : dealloc_all, discard ? sizeof discard_all : sizeof dealloc_all))
        return PEEK_DONE;
    /* the session has no named statements left, and the server none of the
     * pool's either (pool.h); after DISCARD ALL no SET of the client's
     * either, on either side */
    prepared_free_all(&s->prepared);
    if (s->lent)
        pool_server_lost_statements(s->lent);
    if (discard) {
        carried_sets_free(&s->carried);
        if (s->lent)
            carried_sets_free(&s->lent->carried);
    }
    return PEEK_DONE;
}

int session_answer_deallocated(struct session *s, struct evbuffer *in, struct evbuffer *out,
                               const struct msg_header *h)
{
    static const char tag[] = "DEALLOCATE";
    if (!s->dealloc_replies || h->length != 4)
        return 0;
    uint8_t head[PROTO_HEADER_LEN] = {'C'};
    proto_put_u32(head + 1, (uint32_t)(4 + sizeof tag));
    evbuffer_drain(in, PROTO_HEADER_LEN);
    evbuffer_add(out, head, sizeof head);
    evbuffer_add(out, tag, sizeof tag);
    s->dealloc_replies--;
    return 1;
}

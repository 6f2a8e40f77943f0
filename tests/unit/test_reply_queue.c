/* Unit tests for the replies a pooled server owes (reply_queue.c). */
#include "reply_queue.h"

#include <stdlib.h>
#include <string.h>

#include "unit.h"

static int step_drops(struct reply_queue *q, uint8_t type)
{
    return reply_queue_on_server(q, type).drop;
}

static void test_drop_and_synth_in_their_turn(void)
{
    struct reply_queue q;
    reply_queue_init(&q);
    /* client: Parse N (on the server already: answered by us), Bind N (with
     * our Parse ahead of it), Describe portal, Execute, Sync */
    reply_queue_push(&q, 'P', REPLY_SYNTH, 0);
    CHECK("a synthetic reply first in line is due at once", reply_queue_take_synth(&q) == '1');
    reply_queue_push(&q, 'P', REPLY_DROP, 42);
    reply_queue_push(&q, 'B', REPLY_PASS, 0);
    reply_queue_push(&q, 'D', REPLY_PASS, 0);
    reply_queue_push(&q, 'E', REPLY_PASS, 0);
    reply_queue_push(&q, 'C', REPLY_SYNTH, 0);
    reply_queue_push(&q, 'S', REPLY_PASS, 0);
    CHECK("our Parse's ParseComplete is dropped", step_drops(&q, '1'));
    CHECK("nothing synthetic is due before the Bind's reply", reply_queue_take_synth(&q) == 0);
    CHECK("BindComplete passes", !step_drops(&q, '2'));
    CHECK("a notice passes whenever", !step_drops(&q, 'N'));
    CHECK("RowDescription passes", !step_drops(&q, 'T'));
    CHECK("DataRow passes", !step_drops(&q, 'D'));
    CHECK("CommandComplete passes", !step_drops(&q, 'C'));
    CHECK("the Close is answered by us after the Execute", reply_queue_take_synth(&q) == '3');
    CHECK("ReadyForQuery passes", !step_drops(&q, 'Z'));
    CHECK("nothing is owed after it", reply_queue_empty(&q));
    reply_queue_free(&q);
}

static void test_an_error_skips_to_the_sync(void)
{
    struct reply_queue q;
    reply_queue_init(&q);
    reply_queue_push(&q, 'P', REPLY_PASS, 7);
    reply_queue_push(&q, 'B', REPLY_PASS, 0);
    reply_queue_push(&q, 'P', REPLY_SYNTH, 0);
    reply_queue_push(&q, 'S', REPLY_PASS, 0);
    struct reply_step st = reply_queue_on_server(&q, 'E');
    CHECK("the error passes", !st.drop);
    CHECK("a failed Parse names its statement", st.failed_hash == 7);
    CHECK("what the server skips is owed no more (no synthetic reply)", reply_queue_take_synth(&q) == 0);
    CHECK("the Sync's ReadyForQuery ends it", !step_drops(&q, 'Z') && reply_queue_empty(&q));
    /* an error before the client's Sync is even sent */
    reply_queue_push(&q, 'B', REPLY_PASS, 0);
    reply_queue_on_server(&q, 'E');
    CHECK("after an error the server skips what comes before the Sync",
          reply_queue_push(&q, 'P', REPLY_SYNTH, 0) == 0 && reply_queue_empty(&q));
    CHECK("the Sync is owed again", reply_queue_push(&q, 'S', REPLY_PASS, 0) == 1);
    CHECK("and answered", !step_drops(&q, 'Z') && reply_queue_empty(&q));
    reply_queue_free(&q);
}

static void test_the_unnamed_statement(void)
{
    struct reply_queue q;
    reply_queue_init(&q);
    reply_queue_push(&q, 'p', REPLY_DROP, 0);
    reply_queue_push(&q, 'B', REPLY_PASS, 0);
    CHECK("the ParseComplete of our unnamed Parse is dropped", step_drops(&q, '1'));
    CHECK("the client's BindComplete passes", !step_drops(&q, '2') && reply_queue_empty(&q));
    reply_queue_push(&q, 'p', REPLY_PASS, 0);
    reply_queue_push(&q, 'S', REPLY_PASS, 0);
    struct reply_step st = reply_queue_on_server(&q, 'E');
    CHECK("a failed unnamed Parse says so", st.failed_unnamed && !st.failed_hash && !st.drop);
    reply_queue_push(&q, 'P', REPLY_PASS, 5);
    CHECK("a named one does not", !step_drops(&q, 'Z') && !reply_queue_on_server(&q, 'E').failed_unnamed);
    reply_queue_free(&q);
}

static void test_a_failure_of_ours_says_the_clients_error(void)
{
    struct reply_queue q;
    reply_queue_init(&q);
    uint8_t *error = malloc(8);
    memcpy(error, "E\0\0\0\7ab", 8);
    reply_queue_push(&q, 'B', REPLY_PASS, 0);
    CHECK("a failure is queued", reply_queue_push_failure(&q, 'd', error) == 1);
    reply_queue_push(&q, 'E', REPLY_PASS, 0);
    reply_queue_push(&q, 'S', REPLY_PASS, 0);
    CHECK("the reply before it passes", !step_drops(&q, '2'));
    struct reply_step st = reply_queue_on_server(&q, 'E');
    CHECK("the server's error comes with ours to send instead", st.error == error);
    free(st.error);
    CHECK("then the server skips to the Sync", !step_drops(&q, 'Z') && reply_queue_empty(&q));
    /* queued behind an error that already came: never sent, freed at once */
    reply_queue_push(&q, 'B', REPLY_PASS, 0);
    reply_queue_on_server(&q, 'E');
    CHECK("a failure the server will skip is not queued", reply_queue_push_failure(&q, 'd', malloc(8)) == 0);
    reply_queue_push(&q, 'S', REPLY_PASS, 0);
    /* still queued when the queue is reset or freed: freed with it (ASan) */
    reply_queue_push_failure(&q, 'd', malloc(8));
    reply_queue_reset(&q);
    reply_queue_push_failure(&q, 'd', malloc(8));
    reply_queue_free(&q);
}

static void test_simple_queries_and_growth(void)
{
    struct reply_queue q;
    reply_queue_init(&q);
    reply_queue_push(&q, 'Q', REPLY_PASS, 0);
    CHECK("an error inside a simple query does not end it", !step_drops(&q, 'E') && !reply_queue_empty(&q));
    CHECK("its ReadyForQuery does", !step_drops(&q, 'Z') && reply_queue_empty(&q));
    for (int i = 0; i < 1000; i++)
        reply_queue_push(&q, 'B', REPLY_PASS, 0);
    int passed = 0;
    for (int i = 0; i < 1000; i++)
        passed += !step_drops(&q, '2');
    CHECK("a pipeline of a thousand entries grows and drains", passed == 1000 && reply_queue_empty(&q));
    CHECK("a reply nobody asked for passes", !step_drops(&q, '2'));
    reply_queue_free(&q);
}

int main(void)
{
    test_drop_and_synth_in_their_turn();
    test_an_error_skips_to_the_sync();
    test_the_unnamed_statement();
    test_a_failure_of_ours_says_the_clients_error();
    test_simple_queries_and_growth();
    return UNIT_RESULT();
}

/*
 * Unit tests for the cross-thread side of queue/msg.c's pool, as the worker
 * loops use it: a message created on one loop's thread and released on
 * another goes back to its creator's pool, so a publishing loop keeps a
 * zero-allocation steady state; and a message outliving the thread that
 * made it is still freed cleanly (no leak under LSan).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"
#include "queue/queue.h"

enum { BATCH = 200 };

typedef struct batch_s {
    msg_t *m[BATCH];
} batch_t;

/* Creates BATCH messages of two size classes on the calling thread. */
static void create_batch(batch_t *b)
{
    uint8_t payload[300];
    memset(payload, 'p', sizeof payload);
    for (int i = 0; i < BATCH; i++) {
        b->m[i] = msg_create("a/b", 3, payload, i % 2 ? 64 : 300, NULL, 0, 0, 0, 1024, 0);
        assert_non_null(b->m[i]);
        size_t len = 0;
        assert_non_null(msg_head(b->m[i], 0, 0, &len)); /* a head block too */
    }
}

static void *release_batch(void *arg)
{
    batch_t *b = arg;
    for (int i = 0; i < BATCH; i++) msg_release(&b->m[i]);
    return NULL; /* this thread kept nothing: its exit frees no block of A */
}

/* Releases the batch on a new thread and waits for it. */
static void release_elsewhere(batch_t *b)
{
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, release_batch, b), 0);
    pthread_join(t, NULL);
    for (int i = 0; i < BATCH; i++) assert_null(b->m[i]);
}

static void released_on_another_thread_returns_to_the_creator(void **state)
{
    batch_t b;
    (void)state;
    create_batch(&b);           /* warm-up: these come from malloc */
    release_elsewhere(&b);
    uint64_t warm = xmalloc_count();
    for (int round = 0; round < 10; round++) {
        create_batch(&b);       /* served from the return stacks */
        release_elsewhere(&b);
    }
    /* pthread_create may allocate (not through xmalloc): only ours count */
    assert_int_equal(xmalloc_count(), warm);
    msg_pool_drain();
}

static void *create_one(void *arg)
{
    msg_t **out = arg;
    *out = msg_create("t", 1, (const uint8_t *)"x", 1, NULL, 0, 0, 0, 16, 0);
    size_t len = 0;
    msg_head(*out, 1, 0, &len);
    return NULL; /* exits while the message is alive */
}

static void message_outliving_its_thread_is_freed_on_release(void **state)
{
    pthread_t t;
    msg_t *m = NULL;
    (void)state;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(pthread_create(&t, NULL, create_one, &m), 0);
        pthread_join(t, NULL);
        assert_non_null(m);
        assert_string_equal(m->topic, "t");
        msg_release(&m); /* the creator's pool is dead: freed, pool too */
        assert_null(m);
    }
    msg_pool_drain();
}

static void drain_keeps_the_pool_while_its_blocks_are_alive(void **state)
{
    (void)state;
    msg_t *m = msg_create("t", 1, (const uint8_t *)"x", 1, NULL, 0, 0, 0, 16, 0);
    msg_pool_drain();          /* m is still alive: the pool must stay */
    msg_t *n = msg_create("u", 1, (const uint8_t *)"y", 1, NULL, 0, 0, 0, 16, 0);
    msg_release(&m);
    msg_release(&n);
    msg_pool_drain();          /* now everything goes */
    assert_null(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(released_on_another_thread_returns_to_the_creator),
        cmocka_unit_test(message_outliving_its_thread_is_freed_on_release),
        cmocka_unit_test(drain_keeps_the_pool_while_its_blocks_are_alive),
    };
    return cmocka_run_group_tests_name("broker/remote_free", tests, NULL, NULL);
}

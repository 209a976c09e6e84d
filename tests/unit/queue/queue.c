/*
 * Unit tests for queue/queue.c: FIFO order across ring wrap and growth,
 * count and byte limits (dropped entries are counted and their references
 * released), limits given per push, peek, clear and dispose.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "common/xmalloc.h"
#include "queue/queue.h"

/* A message whose topic is "t<i>" and payload is 10 bytes. */
static msg_t *make_msg(int i)
{
    char topic[16];
    int n = snprintf(topic, sizeof(topic), "t%d", i);
    return msg_create(topic, (size_t)n, (const uint8_t *)"0123456789", 10, NULL, 0, 1, 0, 1024, 0);
}

/* Pushes a new reference to m (the caller keeps its own). */
static int push_ref(queue_t *q, msg_t *m, uint8_t n_ids)
{
    queue_entry_t e = { .m = msg_retain(m), .qos = 1, .n_ids = n_ids };
    if (n_ids > 0) {
        e.ids = xmalloc(n_ids * sizeof(*e.ids));
        for (uint8_t i = 0; i < n_ids; i++) e.ids[i] = i + 1u;
    }
    int rc = queue_push(q, &e);
    assert_null(e.m);
    assert_null(e.ids);
    return rc;
}

static void queue_keeps_fifo_order_across_wrap_and_growth(void **state)
{
    queue_t q;
    queue_entry_t e;
    int next_in = 0, next_out = 0;
    queue_init(&q, 0, 0);
    assert_int_equal(queue_pop(&q, &e), UVMQ_ENOTFOUND);
    assert_null(queue_peek(&q));
    /* Interleave so the head moves and the ring wraps before each growth. */
    for (int round = 0; round < 6; round++) {
        for (int i = 0; i < 11 + round * 7; i++) {
            msg_t *m = make_msg(next_in++);
            queue_entry_t in = { .m = m, .qos = 1 };
            assert_int_equal(queue_push(&q, &in), 0);
        }
        for (int i = 0; i < 5 + round * 3; i++) {
            char want[16];
            snprintf(want, sizeof(want), "t%d", next_out++);
            assert_string_equal(queue_peek(&q)->m->topic, want);
            assert_int_equal(queue_pop(&q, &e), 0);
            assert_string_equal(e.m->topic, want);
            queue_entry_dispose(&e);
            assert_null(e.m);
        }
    }
    assert_int_equal(q.len, (size_t)(next_in - next_out));
    assert_true(q.cap >= q.len && (q.cap & (q.cap - 1)) == 0);
    while (queue_pop(&q, &e) == 0) {
        char want[16];
        snprintf(want, sizeof(want), "t%d", next_out++);
        assert_string_equal(e.m->topic, want);
        queue_entry_dispose(&e);
    }
    assert_int_equal(next_out, next_in);
    assert_int_equal(q.bytes, 0);
    queue_dispose(&q);
    msg_pool_drain();
}

static void queue_len_limit_drops_and_releases(void **state)
{
    queue_t q;
    msg_t *m = make_msg(1);
    queue_init(&q, 3, 0);
    for (int i = 0; i < 3; i++) assert_int_equal(push_ref(&q, m, 2), 0);
    assert_int_equal(atomic_load(&m->refs), 4);
    assert_int_equal(push_ref(&q, m, 2), UVMQ_ELIMIT);
    assert_int_equal(push_ref(&q, m, 0), UVMQ_ELIMIT);
    assert_int_equal(atomic_load(&m->refs), 4);
    assert_int_equal(q.dropped, 2);
    assert_int_equal(q.len, 3);
    assert_int_equal(q.bytes, 3 * (10 + 2));
    queue_clear(&q);
    assert_int_equal(atomic_load(&m->refs), 1);
    assert_int_equal(q.len, 0);
    assert_int_equal(q.bytes, 0);
    assert_int_equal(q.dropped, 2);
    assert_int_equal(push_ref(&q, m, 1), 0); /* usable after clear */
    assert_int_equal(atomic_load(&m->refs), 2);
    queue_dispose(&q);
    assert_int_equal(atomic_load(&m->refs), 1);
    msg_release(&m);
    msg_pool_drain();
}

static void queue_byte_limit_drops_and_releases(void **state)
{
    queue_t q;
    msg_t *m = make_msg(7); /* 2 + 10 = 12 bytes */
    queue_init(&q, 0, 30);
    assert_int_equal(push_ref(&q, m, 0), 0);
    assert_int_equal(push_ref(&q, m, 0), 0);
    assert_int_equal(q.bytes, 24);
    assert_int_equal(push_ref(&q, m, 3), UVMQ_ELIMIT); /* 36 > 30 */
    assert_int_equal(q.dropped, 1);
    assert_int_equal(atomic_load(&m->refs), 3);
    queue_entry_t e;
    assert_int_equal(queue_pop(&q, &e), 0);
    assert_int_equal(q.bytes, 12);
    queue_entry_dispose(&e);
    assert_int_equal(push_ref(&q, m, 0), 0);
    assert_int_equal(q.bytes, 24);
    assert_int_equal(atomic_load(&m->refs), 3);
    queue_dispose(&q);
    assert_int_equal(atomic_load(&m->refs), 1);
    msg_release(&m);
    msg_pool_drain();
}

static void queue_push_bounded_uses_the_given_limits(void **state)
{
    queue_t q;
    msg_t *m = make_msg(7); /* 2 + 10 = 12 bytes */
    queue_init(&q, 2, 24);
    for (int i = 0; i < 4; i++) {
        queue_entry_t e = {.m = msg_retain(m), .qos = 1};
        assert_int_equal(queue_push_bounded(&q, &e, 4, 48), 0);
        assert_null(e.m);
    }
    assert_int_equal(q.len, 4); /* twice the queue's own limits */
    assert_int_equal(q.bytes, 48);
    queue_entry_t e = {.m = msg_retain(m), .qos = 1};
    assert_int_equal(queue_push_bounded(&q, &e, 5, 48), UVMQ_ELIMIT); /* bytes */
    assert_null(e.m);
    assert_int_equal(q.dropped, 1);
    assert_int_equal(push_ref(&q, m, 0), UVMQ_ELIMIT); /* own limits: full */
    assert_int_equal(q.dropped, 2);
    assert_int_equal(atomic_load(&m->refs), 5);
    e = (queue_entry_t){.m = msg_retain(m), .qos = 1};
    assert_int_equal(queue_push_bounded(&q, &e, 0, 0), 0); /* unlimited */
    assert_int_equal(q.len, 5);
    queue_dispose(&q);
    assert_int_equal(atomic_load(&m->refs), 1);
    msg_release(&m);
    msg_pool_drain();
}

static void queue_clear_releases_wrapped_entries(void **state)
{
    queue_t q;
    queue_entry_t e;
    msg_t *m = make_msg(3);
    queue_init(&q, 0, 0);
    for (int i = 0; i < 16; i++) assert_int_equal(push_ref(&q, m, 1), 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(queue_pop(&q, &e), 0);
        queue_entry_dispose(&e);
    }
    for (int i = 0; i < 8; i++) assert_int_equal(push_ref(&q, m, 1), 0); /* wraps */
    assert_int_equal(q.cap, 16);
    assert_int_equal(atomic_load(&m->refs), 1 + 14);
    queue_clear(&q);
    assert_int_equal(atomic_load(&m->refs), 1);
    assert_null(queue_peek(&q));
    queue_dispose(&q);
    msg_release(&m);
    msg_pool_drain();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(queue_keeps_fifo_order_across_wrap_and_growth),
        cmocka_unit_test(queue_len_limit_drops_and_releases),
        cmocka_unit_test(queue_byte_limit_drops_and_releases),
        cmocka_unit_test(queue_push_bounded_uses_the_given_limits),
        cmocka_unit_test(queue_clear_releases_wrapped_entries),
    };
    return cmocka_run_group_tests_name("queue/queue", tests, NULL, NULL);
}

/*
 * Unit tests for queue/msg.c: reference counts, the single-block copy and
 * its owner area, limits, the zero-allocation steady state of the pool,
 * and the cached QoS 0 PUBLISH heads checked byte for byte against
 * literal packets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/xmalloc.h"
#include "queue/queue.h"

static msg_t *make_ab_hi(void)
{
    return msg_create("a/b", 3, (const uint8_t *)"hi", 2, NULL, 0, 0, 0, 1024, 0);
}

static void msg_release_counts_down_and_nulls_pointer(void **state)
{
    msg_t *m = make_ab_hi();
    assert_non_null(m);
    assert_int_equal(atomic_load(&m->refs), 1);
    msg_t *m2 = msg_retain(m);
    assert_ptr_equal(m2, m);
    assert_int_equal(atomic_load(&m->refs), 2);
    msg_release(&m2);
    assert_null(m2);
    assert_int_equal(atomic_load(&m->refs), 1);
    msg_release(&m);
    assert_null(m);
    msg_release(&m); /* NULL is accepted */
    assert_null(m);
    msg_pool_drain();
}

static void msg_copies_topic_props_and_payload_into_one_block(void **state)
{
    char topic[] = { 's', 'e', 'n', 's', 'o', 'r', 'X' }; /* not terminated */
    uint8_t payload[] = { 1, 2, 0, 4 };
    uint8_t props[] = { 0x01, 0x01 }; /* payload format indicator 1 */
    msg_t *m = msg_create(topic, 6, payload, sizeof(payload), props, sizeof(props), 1, 1, 100, 0);
    assert_non_null(m);
    topic[0] = 'Z';
    payload[0] = 9;
    props[1] = 0;
    assert_string_equal(m->topic, "sensor");
    assert_int_equal(m->topic_len, 6);
    assert_int_equal(m->payload_len, 4);
    assert_memory_equal(m->payload, ((uint8_t[]){ 1, 2, 0, 4 }), 4);
    assert_int_equal(m->props_len, 2);
    assert_memory_equal(m->props, ((uint8_t[]){ 0x01, 0x01 }), 2);
    assert_int_equal(m->qos, 1);
    assert_int_equal(m->retain, 1);
    assert_int_equal(m->expiry_at, 0);
    assert_null(m->origin);
    /* All inside one block that starts at m. */
    uint8_t *lo = (uint8_t *)m, *hi = lo + m->alloc_size;
    assert_true((uint8_t *)m->topic > lo && m->payload + 4 <= hi && m->props > lo);
    msg_release(&m);
    msg_pool_drain();
}

/* The owner area: in the block between msg_t and the topic, aligned,
 * zeroed at creation even when the block is reused from the pool. */
static void msg_owner_area_is_zeroed_aligned_and_in_the_block(void **state)
{
    msg_t *m = msg_create("a/b", 3, (const uint8_t *)"hi", 2, NULL, 0, 1, 0, 1024, 13);
    assert_non_null(m);
    uint8_t *o = msg_owner(m);
    assert_int_equal(m->owner_size, 13);
    assert_int_equal((uintptr_t)o % MSG_OWNER_ALIGN, 0);
    assert_ptr_equal(o, (uint8_t *)(m + 1));
    assert_ptr_equal(m->topic, (char *)o + 13);
    for (int i = 0; i < 13; i++) assert_int_equal(o[i], 0);
    memset(o, 0xa5, 13); /* the owner's to write: the message is untouched */
    assert_string_equal(m->topic, "a/b");
    assert_memory_equal(m->payload, "hi", 2);
    assert_true(m->payload + 2 <= (uint8_t *)m + m->alloc_size);
    msg_t *same = m;
    msg_release(&m);
    m = msg_create("a/b", 3, (const uint8_t *)"hi", 2, NULL, 0, 1, 0, 1024, 13);
    assert_ptr_equal(m, same); /* the block came back from the free list */
    o = msg_owner(m);
    for (int i = 0; i < 13; i++) assert_int_equal(o[i], 0);
    msg_release(&m);
    m = make_ab_hi(); /* none asked for: the topic follows msg_t */
    assert_int_equal(m->owner_size, 0);
    assert_ptr_equal(m->topic, (char *)(m + 1));
    msg_release(&m);
    msg_pool_drain();
}

static void msg_empty_payload_and_props_are_null(void **state)
{
    msg_t *m = msg_create("t", 1, NULL, 0, NULL, 0, 0, 0, 0, 0);
    assert_non_null(m);
    assert_null(m->payload);
    assert_null(m->props);
    assert_int_equal(m->payload_len, 0);
    msg_release(&m);
    msg_pool_drain();
}

static void msg_create_refuses_payload_over_max(void **state)
{
    uint8_t buf[300] = { 0 };
    assert_null(msg_create("t", 1, buf, 300, NULL, 0, 0, 0, 299, 0));
    msg_t *m = msg_create("t", 1, buf, 300, NULL, 0, 0, 0, 300, 0);
    assert_non_null(m);
    msg_release(&m);
    msg_pool_drain();
}

static void msg_big_payload_bypasses_the_pool(void **state)
{
    size_t n = 100000;
    uint8_t *buf = xcalloc(1, n);
    buf[n - 1] = 7;
    msg_t *m = msg_create("big", 3, buf, n, NULL, 0, 1, 0, n, 0);
    assert_non_null(m);
    assert_true(m->alloc_size > 65536);
    assert_int_equal(m->payload[n - 1], 7);
    msg_release(&m);
    free(buf);
    msg_pool_drain();
}

/* Two messages alive at once, sizes spanning two classes (256, 512). */
static void create_release_cycles(int n)
{
    uint8_t payload[200];
    memset(payload, 'x', sizeof(payload));
    for (int i = 0; i < n; i++) {
        msg_t *a = msg_create("a/b", 3, payload, 200, NULL, 0, 1, 0, 1024, 0);
        msg_t *b = msg_create("a/b", 3, payload, 100 + (size_t)(i % 100), NULL, 0, 1, 0, 1024, 0);
        assert_non_null(a);
        assert_non_null(b);
        msg_release(&a);
        msg_release(&b);
    }
}

static void msg_steady_state_allocates_nothing(void **state)
{
    uint64_t start = xmalloc_count();
    create_release_cycles(100); /* warm-up fills the free lists */
    uint64_t warm = xmalloc_count();
    assert_true(warm > start);  /* the first blocks did come from malloc */
    create_release_cycles(1000);
    assert_int_equal(xmalloc_count(), warm);
    msg_pool_drain();
    create_release_cycles(1);   /* drained: allocates again */
    assert_true(xmalloc_count() > warm);
    msg_pool_drain();
}

static void msg_head_v311_bytes_are_exact(void **state)
{
    static const uint8_t want[] = { 0x30, 0x07, 0x00, 0x03, 'a', '/', 'b' };
    static const uint8_t want_retain[] = { 0x31, 0x07, 0x00, 0x03, 'a', '/', 'b' };
    msg_t *m = make_ab_hi();
    size_t len = 99;
    const uint8_t *h = msg_head(m, 0, 0, &len);
    assert_non_null(h);
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(h, want, sizeof(want));
    h = msg_head(m, 0, 1, &len);
    assert_non_null(h);
    assert_int_equal(len, sizeof(want_retain));
    assert_memory_equal(h, want_retain, sizeof(want_retain));
    msg_release(&m);
    msg_pool_drain();
}

static void msg_head_v5_bytes_are_exact(void **state)
{
    static const uint8_t want[] = { 0x30, 0x08, 0x00, 0x03, 'a', '/', 'b', 0x00 };
    /* Payload format indicator = 1 (01 01) carried from the stored props. */
    static const uint8_t want_props[] = { 0x31, 0x0a, 0x00, 0x03, 'a', '/', 'b', 0x02, 0x01, 0x01 };
    msg_t *m = make_ab_hi();
    size_t len = 0;
    const uint8_t *h = msg_head(m, 1, 0, &len);
    assert_non_null(h);
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(h, want, sizeof(want));
    msg_release(&m);

    m = msg_create("a/b", 3, (const uint8_t *)"hi", 2, (const uint8_t[]){ 0x01, 0x01 }, 2, 0, 1,
                   1024, 0);
    h = msg_head(m, 1, 1, &len);
    assert_non_null(h);
    assert_int_equal(len, sizeof(want_props));
    assert_memory_equal(h, want_props, sizeof(want_props));
    msg_release(&m);
    msg_pool_drain();
}

static void msg_head_is_cached_once_per_variant(void **state)
{
    msg_t *m = make_ab_hi();
    const uint8_t *h[MSG_VARIANTS];
    size_t len = 0;
    for (int v5 = 0; v5 < 2; v5++) {
        for (int r = 0; r < 2; r++) h[MSG_VARIANT(v5, r)] = msg_head(m, v5, r, &len);
    }
    for (int i = 0; i < MSG_VARIANTS; i++) {
        assert_non_null(h[i]);
        assert_ptr_equal(atomic_load(&m->head[i]), h[i]);
        for (int j = 0; j < i; j++) assert_ptr_not_equal(h[i], h[j]);
    }
    uint64_t before = xmalloc_count();
    assert_ptr_equal(msg_head(m, 1, 0, &len), h[MSG_VARIANT(1, 0)]);
    assert_int_equal(len, 8);
    assert_ptr_equal(msg_head(m, 0, 1, &len), h[MSG_VARIANT(0, 1)]);
    assert_int_equal(len, 7);
    assert_int_equal(xmalloc_count(), before);
    msg_release(&m);
    msg_pool_drain();
}

static void msg_head_steady_state_allocates_nothing(void **state)
{
    size_t len = 0;
    msg_t *m = make_ab_hi();
    msg_head(m, 0, 0, &len);
    msg_head(m, 1, 0, &len);
    msg_release(&m);

    uint64_t before = xmalloc_count();
    for (int i = 0; i < 1000; i++) {
        m = make_ab_hi();
        assert_non_null(msg_head(m, 0, 0, &len));
        assert_non_null(msg_head(m, 1, 0, &len));
        msg_release(&m);
    }
    assert_int_equal(xmalloc_count(), before);
    msg_pool_drain();
}

typedef struct {
    msg_t *m;             /* a reference this thread releases */
    const uint8_t *head;  /* what msg_head returned here */
    size_t len;
    pthread_barrier_t *go;
} racer_t;

static void *race_head(void *arg)
{
    racer_t *r = arg;
    pthread_barrier_wait(r->go);
    r->head = msg_head(r->m, 1, 1, &r->len);
    msg_release(&r->m); /* the last one frees on this thread's list */
    return NULL;        /* no msg_pool_drain: the thread-exit hook does it */
}

static void msg_head_race_publishes_one_buffer(void **state)
{
    enum { N = 4 };
    pthread_t t[N];
    racer_t r[N];
    pthread_barrier_t go;
    for (int round = 0; round < 50; round++) {
        msg_t *m = make_ab_hi();
        pthread_barrier_init(&go, NULL, N);
        for (int i = 0; i < N; i++) {
            r[i] = (racer_t){ .m = msg_retain(m), .go = &go };
            assert_int_equal(pthread_create(&t[i], NULL, race_head, &r[i]), 0);
        }
        msg_release(&m); /* the threads hold the remaining references */
        for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
        pthread_barrier_destroy(&go);
        for (int i = 1; i < N; i++) assert_ptr_equal(r[i].head, r[0].head);
        for (int i = 0; i < N; i++) assert_int_equal(r[i].len, 8);
    }
    msg_pool_drain();
}

static void msg_with_expiry_has_no_head(void **state)
{
    msg_t *m = make_ab_hi();
    size_t len = 42;
    m->expiry_at = 5000;
    assert_null(msg_head(m, 0, 0, &len));
    assert_int_equal(len, 0);
    assert_null(atomic_load(&m->head[0]));
    assert_int_equal(msg_expired(m, 4999), 0);
    assert_int_equal(msg_expired(m, 5000), 1);
    m->expiry_at = 0;
    assert_int_equal(msg_expired(m, UINT64_MAX), 0);
    msg_release(&m);
    msg_pool_drain();
}

static void msg_now_ms_is_wall_clock(void **state)
{
    uint64_t now = msg_now_ms();
    assert_true(now > 1600000000000ull);  /* after Sep 2020 */
    assert_true(now < 4102444800000ull);  /* before 2100 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(msg_release_counts_down_and_nulls_pointer),
        cmocka_unit_test(msg_copies_topic_props_and_payload_into_one_block),
        cmocka_unit_test(msg_owner_area_is_zeroed_aligned_and_in_the_block),
        cmocka_unit_test(msg_empty_payload_and_props_are_null),
        cmocka_unit_test(msg_create_refuses_payload_over_max),
        cmocka_unit_test(msg_big_payload_bypasses_the_pool),
        cmocka_unit_test(msg_steady_state_allocates_nothing),
        cmocka_unit_test(msg_head_v311_bytes_are_exact),
        cmocka_unit_test(msg_head_v5_bytes_are_exact),
        cmocka_unit_test(msg_head_is_cached_once_per_variant),
        cmocka_unit_test(msg_head_steady_state_allocates_nothing),
        cmocka_unit_test(msg_head_race_publishes_one_buffer),
        cmocka_unit_test(msg_with_expiry_has_no_head),
        cmocka_unit_test(msg_now_ms_is_wall_clock),
    };
    return cmocka_run_group_tests_name("queue/msg", tests, NULL, NULL);
}

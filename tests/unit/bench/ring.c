/*
 * Unit tests for bench/bench_ring.c, the completion ring that keeps a
 * publisher's message outstanding until every matching subscriber has it:
 * slot count, release after the expected copies and only in order, the
 * no-progress timeout, late copies after a slot was re-armed, and one
 * publisher thread against one counting thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <cmocka.h>

#include "bench/bench_ring.c"
#include "common/xmalloc.c"

#define MS 1000000ull

static void ring_size_is_the_window_rounded_up_to_a_power_of_two(void **state)
{
    bench_ring_t r;

    bench_ring_init(&r, 1, 1);
    assert_int_equal(r.mask, 0);
    bench_ring_dispose(&r);
    bench_ring_init(&r, 5, 1);
    assert_int_equal(r.mask, 7);
    bench_ring_dispose(&r);
    bench_ring_init(&r, 64, 1);
    assert_int_equal(r.mask, 63);
    bench_ring_dispose(&r);
    assert_null(r.slots);
}

static void ring_releases_a_message_after_every_expected_copy(void **state)
{
    bench_ring_t r;

    bench_ring_init(&r, 4, 3);
    bench_ring_arm(&r, 0);
    assert_int_equal(bench_ring_count(&r, 0, 1), 0);
    assert_int_equal(bench_ring_count(&r, 0, 2), 0);
    assert_int_equal(bench_ring_reap(&r), 0);
    assert_int_equal(bench_ring_outstanding(&r), 1);
    assert_int_equal(bench_ring_count(&r, 0, 3), 1);
    assert_int_equal(bench_ring_reap(&r), 1);
    assert_int_equal(bench_ring_outstanding(&r), 0);
    bench_ring_dispose(&r);
}

static void ring_releases_only_from_the_head(void **state)
{
    bench_ring_t r;

    bench_ring_init(&r, 4, 1);
    bench_ring_arm(&r, 0);
    bench_ring_arm(&r, 0);
    bench_ring_arm(&r, 0);
    assert_int_equal(bench_ring_count(&r, 1, 1), 1);
    assert_int_equal(bench_ring_count(&r, 2, 1), 1);
    assert_int_equal(bench_ring_reap(&r), 0);
    assert_int_equal(bench_ring_outstanding(&r), 3);
    assert_int_equal(bench_ring_count(&r, 0, 1), 1);
    assert_int_equal(bench_ring_reap(&r), 3);
    assert_int_equal(r.head, 3);
    bench_ring_dispose(&r);
}

static void ring_expires_the_window_once_it_is_silent_past_the_timeout(void **state)
{
    bench_ring_t r;

    bench_ring_init(&r, 4, 2);
    bench_ring_arm(&r, 0);        /* seq 0 sent at 0 ms */
    bench_ring_arm(&r, 500 * MS); /* seq 1 sent at 500 ms */
    assert_int_equal(bench_ring_count(&r, 0, 100 * MS), 0);
    assert_int_equal(bench_ring_expire(&r, 1100 * MS, 1000 * MS), 0);
    assert_int_equal(bench_ring_expire(&r, 1101 * MS, 1000 * MS), 0); /* seq 1 is younger */
    assert_int_equal(r.head, 0);
    assert_int_equal(bench_ring_expire(&r, 1501 * MS, 1000 * MS), 2);
    assert_int_equal(bench_ring_outstanding(&r), 0);
    assert_int_equal(bench_ring_expire(&r, 9000 * MS, 1000 * MS), 0);
    bench_ring_dispose(&r);
}

static void ring_does_not_expire_a_slow_head_while_later_copies_arrive(void **state)
{
    bench_ring_t r;

    bench_ring_init(&r, 4, 2);
    bench_ring_arm(&r, 0);
    bench_ring_arm(&r, 0);
    assert_int_equal(bench_ring_count(&r, 1, 1500 * MS), 0);
    assert_int_equal(bench_ring_expire(&r, 2400 * MS, 1000 * MS), 0);
    assert_int_equal(bench_ring_outstanding(&r), 2);
    assert_int_equal(bench_ring_count(&r, 0, 2450 * MS), 0);
    assert_int_equal(bench_ring_count(&r, 0, 2460 * MS), 1);
    assert_int_equal(bench_ring_expire(&r, 2470 * MS, 1000 * MS), 0);
    assert_int_equal(r.head, 1); /* reaped, not expired */
    bench_ring_dispose(&r);
}

static void ring_does_not_expire_right_after_a_message_completed(void **state)
{
    bench_ring_t r;

    bench_ring_init(&r, 4, 1);
    bench_ring_arm(&r, 0);
    bench_ring_arm(&r, 0);
    assert_int_equal(bench_ring_count(&r, 0, 1900 * MS), 1);
    assert_int_equal(bench_ring_expire(&r, 2000 * MS, 1000 * MS), 0);
    assert_int_equal(r.head, 1);
    assert_int_equal(bench_ring_expire(&r, 2901 * MS, 1000 * MS), 1);
    assert_int_equal(r.head, 2);
    bench_ring_dispose(&r);
}

static void ring_expire_counts_only_incomplete_messages(void **state)
{
    bench_ring_t r;

    bench_ring_init(&r, 4, 1);
    bench_ring_arm(&r, 0);
    bench_ring_arm(&r, 0);
    bench_ring_arm(&r, 900 * MS);
    assert_int_equal(bench_ring_count(&r, 1, 10 * MS), 1);
    assert_int_equal(bench_ring_expire(&r, 1200 * MS, 1000 * MS), 0);
    assert_int_equal(bench_ring_expire(&r, 1901 * MS, 1000 * MS), 2); /* seqs 0 and 2 */
    assert_int_equal(r.head, 3);
    bench_ring_dispose(&r);
}

static void ring_ignores_a_late_copy_once_its_slot_is_rearmed(void **state)
{
    bench_ring_t r;

    bench_ring_init(&r, 2, 2);
    bench_ring_arm(&r, 0);
    assert_int_equal(bench_ring_expire(&r, 2000 * MS, 1000 * MS), 1);
    bench_ring_arm(&r, 2000 * MS);
    bench_ring_arm(&r, 2000 * MS); /* seq 2 takes seq 0's slot */
    assert_int_equal(bench_ring_count(&r, 0, 2001 * MS), -1);
    assert_int_equal(bench_ring_count(&r, 2, 2002 * MS), 0);
    assert_int_equal(bench_ring_count(&r, 2, 2003 * MS), 1);
    assert_int_equal(bench_ring_count(&r, 1, 2004 * MS), 0);
    assert_int_equal(bench_ring_count(&r, 3, 2004 * MS), -1); /* not sent */
    bench_ring_dispose(&r);
}

static void ring_cancel_completes_a_refused_message(void **state)
{
    bench_ring_t r;

    bench_ring_init(&r, 4, 5);
    bench_ring_arm(&r, 0);
    bench_ring_arm(&r, 0);
    assert_int_equal(bench_ring_count(&r, 0, 1), 0);
    bench_ring_cancel(&r, 0);
    bench_ring_cancel(&r, 7); /* not armed: ignored */
    assert_int_equal(bench_ring_reap(&r), 1);
    assert_int_equal(bench_ring_outstanding(&r), 1);
    bench_ring_dispose(&r);
}

static void ring_without_receivers_releases_at_once(void **state)
{
    bench_ring_t r;

    bench_ring_init(&r, 8, 0);
    bench_ring_arm(&r, 0);
    bench_ring_arm(&r, 0);
    assert_int_equal(bench_ring_reap(&r), 2);
    assert_int_equal(bench_ring_outstanding(&r), 0);
    bench_ring_dispose(&r);
}

/* Two threads as in uvmq-bench: the "subscriber" counts three copies of
 * each message once the "publisher" has published it. */
#define THREAD_MSGS 200000u

typedef struct duo_s {
    bench_ring_t ring;
    _Atomic uint64_t published;
    uint64_t completed, late;
} duo_t;

static void *counter_thread(void *arg)
{
    duo_t *d = arg;
    uint64_t seq;
    int k, rc;

    for (seq = 0; seq < THREAD_MSGS; seq++) {
        while (atomic_load_explicit(&d->published, memory_order_acquire) <= seq) {
        }
        for (k = 0; k < 3; k++) {
            rc = bench_ring_count(&d->ring, seq, seq);
            d->completed += rc == 1;
            d->late += rc == -1;
        }
    }
    return NULL;
}

static void ring_counts_from_another_thread(void **state)
{
    duo_t d = {0};
    pthread_t t;
    uint64_t peak = 0;

    bench_ring_init(&d.ring, 8, 3);
    assert_int_equal(pthread_create(&t, NULL, counter_thread, &d), 0);
    while (d.ring.head < THREAD_MSGS) {
        bench_ring_reap(&d.ring);
        while (bench_ring_outstanding(&d.ring) < 8 && d.ring.next < THREAD_MSGS)
            bench_ring_arm(&d.ring, d.ring.next);
        if (bench_ring_outstanding(&d.ring) > peak) peak = bench_ring_outstanding(&d.ring);
        atomic_store_explicit(&d.published, d.ring.next, memory_order_release);
    }
    pthread_join(t, NULL);
    assert_int_equal(d.completed, THREAD_MSGS);
    assert_int_equal(d.late, 0);
    assert_int_equal(peak, 8);
    bench_ring_dispose(&d.ring);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ring_size_is_the_window_rounded_up_to_a_power_of_two),
        cmocka_unit_test(ring_releases_a_message_after_every_expected_copy),
        cmocka_unit_test(ring_releases_only_from_the_head),
        cmocka_unit_test(ring_expires_the_window_once_it_is_silent_past_the_timeout),
        cmocka_unit_test(ring_does_not_expire_a_slow_head_while_later_copies_arrive),
        cmocka_unit_test(ring_does_not_expire_right_after_a_message_completed),
        cmocka_unit_test(ring_expire_counts_only_incomplete_messages),
        cmocka_unit_test(ring_ignores_a_late_copy_once_its_slot_is_rearmed),
        cmocka_unit_test(ring_cancel_completes_a_refused_message),
        cmocka_unit_test(ring_without_receivers_releases_at_once),
        cmocka_unit_test(ring_counts_from_another_thread),
    };
    return cmocka_run_group_tests_name("bench/ring", tests, NULL, NULL);
}

/*
 * Unit tests for storage/store_thread.c: group commit, callback order,
 * the two durability modes, barriers, draining on close and the counters.
 * Grouping is forced by first submitting a large batch, which keeps the
 * storage thread busy while two producer threads submit 500 batches each.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
#include "common/log.h"
#include "storage/store.h"
#include "storetest.h"
#define PER_THREAD 500


static void put_queued(store_batch_t *b, const char *cid, uint64_t id, uint64_t seq)
{
    store_msg_t m = { .id = id, .topic = "t", .payload = "0123456789", .payload_len = 10, .qos = 1 };
    store_entry_t e = { .client_id = cid, .seq = seq, .msg_id = id, .qos = 1 };
    assert_int_equal(store_batch_msg_put(b, &m), 0);
    assert_int_equal(store_batch_entry_add(b, &e), 0);
}

/* --- group commit from two producers ----------------------------------- */

typedef struct producer_s {
    store_t *s;
    const char *cid;
    uint64_t id_base;
    _Atomic uint64_t next_cb; /* seq the next callback must carry */
    _Atomic int out_of_order, failed;
} producer_t;

typedef struct ticket_s {
    producer_t *p;
    uint64_t seq;
} ticket_t;

static ticket_t tickets[2][PER_THREAD];

static void on_ticket(void *ctx, int status)
{
    ticket_t *t = ctx;
    if (status != 0) atomic_fetch_add(&t->p->failed, 1);
    if (atomic_load(&t->p->next_cb) != t->seq) atomic_fetch_add(&t->p->out_of_order, 1);
    atomic_store(&t->p->next_cb, t->seq + 1);
}

static void *produce(void *arg)
{
    producer_t *p = arg;
    ticket_t *tk = tickets[p->id_base == 0 ? 0 : 1];
    for (uint64_t i = 0; i < PER_THREAD; i++) {
        store_batch_t *b = store_batch_create();
        put_queued(b, p->cid, p->id_base + i + 1, i + 1);
        tk[i] = (ticket_t){ p, i + 1 };
        store_submit(p->s, b, on_ticket, &tk[i]);
    }
    return NULL;
}

static int count_entry(void *ctx, const store_entry_t *e)
{
    uint64_t *last = ctx; /* [0] for "p0", [1] for "p1": seq must rise by 1 */
    int k = strcmp(e->client_id, "p0") == 0 ? 0 : 1;
    if (e->seq != last[k] + 1) return -1;
    last[k] = e->seq;
    return 0;
}

static void store_groups_concurrent_batches_into_few_commits(void **state)
{
    store_t *s = NULL;
    producer_t p[2] = { { .cid = "p0", .id_base = 0, .next_cb = 1 },
                        { .cid = "p1", .id_base = 1000000, .next_cb = 1 } };
    pthread_t th[2];
    assert_int_equal(store_open(&s, dir, NULL), 0);
    /* Keep the storage thread busy while the producers start. */
    store_batch_t *busy = store_batch_create();
    for (uint64_t i = 0; i < 20000; i++) put_queued(busy, "warm", 5000000 + i, i + 1);
    assert_int_equal(store_submit(s, busy, NULL, NULL), 0);
    struct timespec ts = { 0, 20000000 }; /* let the thread take it alone */
    nanosleep(&ts, NULL);
    for (int i = 0; i < 2; i++) {
        p[i].s = s;
        assert_int_equal(pthread_create(&th[i], NULL, produce, &p[i]), 0);
    }
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    assert_int_equal(submit_wait(s, store_batch_create()), 0); /* barrier */

    store_stats_t st;
    store_stats(s, &st);
    assert_int_equal(st.batches, 2 * PER_THREAD + 2);
    assert_int_equal(st.ops, 40000 + 4 * PER_THREAD);
    print_message("# %llu commits for %llu batches\n", (unsigned long long)st.commits, (unsigned long long)st.batches);
    assert_true(st.commits >= 2);
    assert_true(st.commits * 10 < st.batches); /* commits << batches */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(atomic_load(&p[i].failed), 0);
        assert_int_equal(atomic_load(&p[i].out_of_order), 0);
        assert_int_equal(atomic_load(&p[i].next_cb), PER_THREAD + 1);
    }
    /* Stored order per submitter: seqs 1..500 in order for each. */
    store_close(s);
    assert_int_equal(store_open(&s, dir, NULL), 0);
    uint64_t last[2] = { 0, 0 };
    store_recover_stats_t rs;
    store_recover_cb_t cbs = { .on_entry = count_entry };
    store_batch_t *del = store_batch_create();
    store_batch_session_del(del, "warm");
    assert_int_equal(submit_wait(s, del), 0);
    assert_int_equal(store_recover(s, &cbs, last, &rs), 0);
    assert_int_equal(last[0], PER_THREAD);
    assert_int_equal(last[1], PER_THREAD);
    assert_int_equal(rs.entries, 2 * PER_THREAD);
    assert_int_equal(rs.msgs, 2 * PER_THREAD);
    store_close(s);
}

/* --- durability modes --------------------------------------------------- */

static void flag_done(void *ctx, int status)
{
    atomic_store((_Atomic int *)ctx, status + 1);
}

static void store_batch_mode_acks_before_the_commit(void **state)
{
    store_t *s = NULL;
    store_opts_t opts = { .durability = STORE_BATCH, .batch_ms = 300 };
    _Atomic int acked = 0;
    store_stats_t st;
    assert_int_equal(store_open(&s, dir, &opts), 0);
    store_batch_t *b = store_batch_create();
    put_queued(b, "c", 1, 1);
    assert_int_equal(store_submit(s, b, flag_done, &acked), 0);
    assert_int_equal(atomic_load(&acked), 1); /* called inside store_submit */
    store_stats(s, &st);
    assert_int_equal(st.commits, 0);
    assert_int_equal(store_backlog(s), 2); /* msg put + entry, not committed */
    /* A barrier commits at once and waits for it. */
    assert_int_equal(submit_wait(s, store_batch_create()), 0);
    store_stats(s, &st);
    assert_int_equal(st.commits, 1);
    assert_int_equal(st.ops, 2);
    assert_int_equal(store_backlog(s), 0);
    store_close(s);
}

static void store_batch_mode_barrier_reports_an_earlier_failure(void **state)
{
    store_t *s = NULL;
    store_opts_t opts = { .durability = STORE_BATCH, .batch_ms = 300 };
    _Atomic int acked = 0;
    assert_int_equal(store_open(&s, dir, &opts), 0);
    store_batch_t *b = store_batch_create();
    store_entry_t e = { .client_id = "c", .seq = 1, .msg_id = 77, .qos = 1 }; /* no msg 77 */
    assert_int_equal(store_batch_entry_add(b, &e), 0);
    assert_int_equal(store_submit(s, b, flag_done, &acked), 0);
    assert_int_equal(atomic_load(&acked), 1); /* status 0 at submit, as documented */
    assert_int_equal(submit_wait(s, store_batch_create()), UVMQ_EINVAL);
    assert_int_equal(submit_wait(s, store_batch_create()), 0); /* reported once */
    store_close(s);
}

static void store_batch_mode_commits_within_batch_ms(void **state)
{
    store_t *s = NULL;
    store_opts_t opts = { .durability = STORE_BATCH, .batch_ms = 20 };
    store_stats_t st = { 0 };
    assert_int_equal(store_open(&s, dir, &opts), 0);
    store_batch_t *b = store_batch_create();
    put_queued(b, "c", 1, 1);
    assert_int_equal(store_submit(s, b, NULL, NULL), 0);
    for (int i = 0; i < 200 && st.commits == 0; i++) {
        struct timespec ts = { 0, 5000000 };
        nanosleep(&ts, NULL);
        store_stats(s, &st);
    }
    assert_int_equal(st.commits, 1); /* without a barrier or close */
    store_close(s);
}

static void store_full_mode_calls_back_after_the_commit(void **state)
{
    store_t *s = NULL;
    _Atomic int first = 0;
    store_stats_t st;
    assert_int_equal(store_open(&s, dir, NULL), 0);
    store_batch_t *b = store_batch_create();
    put_queued(b, "c", 1, 1);
    assert_int_equal(store_submit(s, b, flag_done, &first), 0);
    assert_int_equal(submit_wait(s, store_batch_create()), 0);
    assert_int_equal(atomic_load(&first), 1); /* ran before the barrier's */
    store_stats(s, &st);
    assert_int_equal(st.commits, 1);
    assert_int_equal(st.batches, 2);
    assert_int_equal(st.hist[STORE_HIST_BUCKETS - 1], 1);
    for (int i = 1; i < STORE_HIST_BUCKETS; i++) assert_true(st.hist[i] >= st.hist[i - 1]);
    assert_true(st.max_commit_us >= st.last_commit_us);
    assert_int_equal(st.sum_commit_us, st.last_commit_us);
    store_close(s);
}

static void count_cb(void *ctx, int status)
{
    if (status == 0) atomic_fetch_add((_Atomic int *)ctx, 1);
}

static void store_close_drains_every_submitted_batch(void **state)
{
    store_t *s = NULL;
    _Atomic int n = 0;
    store_recover_stats_t rs;
    assert_int_equal(store_open(&s, dir, NULL), 0);
    for (uint64_t i = 1; i <= 100; i++) {
        store_batch_t *b = store_batch_create();
        put_queued(b, "c", i, i);
        assert_int_equal(store_submit(s, b, count_cb, &n), 0);
    }
    store_close(s);
    assert_int_equal(atomic_load(&n), 100);
    assert_int_equal(store_open(&s, dir, NULL), 0);
    assert_int_equal(store_recover(s, &(store_recover_cb_t){ 0 }, NULL, &rs), 0);
    assert_int_equal(rs.entries, 100);
    assert_int_equal(rs.max_msg_id, 100);
    store_close(s);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, make_tmp, remove_tmp)
    const struct CMUnitTest tests[] = {
        T(store_groups_concurrent_batches_into_few_commits),
        T(store_batch_mode_acks_before_the_commit),
        T(store_batch_mode_barrier_reports_an_earlier_failure),
        T(store_batch_mode_commits_within_batch_ms),
        T(store_full_mode_calls_back_after_the_commit),
        T(store_close_drains_every_submitted_batch),
    };
    return cmocka_run_group_tests_name("storage/commit", tests, NULL, NULL);
}

/*
 * Unit tests for broker/sess.c: the sharded session map, generated client
 * ids, a session's subscription records, destroy and offline delivery.
 * No sockets: sessions are created detached, the broker_t is built by hand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "tests/unit/broker/fixture.h"

typedef struct fixture_s {
    broker_config_t cfg;
    broker_t b;
    loop_t l;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    fx_broker(&f->cfg, &f->b, &f->l);
    f->b.retained = router_retained_create();
    pthread_mutex_init(&f->b.retained_lock, NULL);
    sess__map_init(&f->b.sessions, f->cfg.session_shards);
    f->l.router = router_create();
    router_hits_init(&f->l.hits);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    sess__map_dispose(&f->b.sessions);
    router_retained_destroy(f->b.retained, NULL, NULL);
    router_destroy(f->l.router);
    router_hits_dispose(&f->l.hits);
    fx_loop_dispose(&f->l);
    free(f->l.mvec);
    pthread_mutex_destroy(&f->b.retained_lock);
    broker_config_dispose(&f->cfg);
    free(f);
    msg_pool_drain();
    return 0;
}

static sess_t *add(fixture_t *f, const char *id)
{
    sess_t *s = sess__create(id, strlen(id), &f->cfg);
    sess__insert(&f->b.sessions, s);
    return s;
}

static void sess_map_finds_every_inserted_session(void **state)
{
    fixture_t *f = *state;
    char id[32];
    for (int i = 0; i < 2000; i++) { /* forces several bucket doublings */
        snprintf(id, sizeof id, "client-%d", i);
        add(f, id);
    }
    assert_int_equal(sess__count(&f->b.sessions), 2000);
    for (int i = 0; i < 2000; i++) {
        snprintf(id, sizeof id, "client-%d", i);
        sess_t *s = sess__find(&f->b.sessions, id, strlen(id));
        assert_non_null(s);
        assert_string_equal(s->client_id, id);
    }
    assert_null(sess__find(&f->b.sessions, "client-2000", 11));
}

static void sess_map_has_the_configured_number_of_shards(void **state)
{
    sess_map_t m;
    char id[32];
    size_t total = 0, used = 0;
    (void)state;
    sess__map_init(&m, 3);
    assert_int_equal(m.n_shards, 3);
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof id, "c%d", i);
        sess__insert(&m, sess__create(id, strlen(id), &(broker_config_t){.max_inflight = 1}));
    }
    for (size_t i = 0; i < 3; i++) {
        total += m.shards[i].count;
        used += m.shards[i].count > 0;
        assert_int_equal(m.shards[i].n_shards, 3);
    }
    assert_int_equal(total, 300);
    assert_int_equal(used, 3);
    assert_ptr_equal(sess__shard(&m, 7), &m.shards[1]);
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof id, "c%d", i);
        assert_non_null(sess__find(&m, id, strlen(id)));
    }
    sess__map_dispose(&m);
    assert_null(m.shards);
}

static void sess_map_compares_whole_ids_not_prefixes(void **state)
{
    fixture_t *f = *state;
    sess_t *a = add(f, "abc");
    assert_null(sess__find(&f->b.sessions, "ab", 2));
    assert_null(sess__find(&f->b.sessions, "abcd", 4));
    assert_ptr_equal(sess__find(&f->b.sessions, "abc", 3), a);
}

static void sess_unlink_removes_only_that_session(void **state)
{
    fixture_t *f = *state;
    sess_t *a = add(f, "a");
    sess_t *b = add(f, "b");
    sess__unlink(&f->b.sessions, a);
    assert_null(sess__find(&f->b.sessions, "a", 1));
    assert_ptr_equal(sess__find(&f->b.sessions, "b", 1), b);
    assert_int_equal(sess__count(&f->b.sessions), 1);
    sess__destroy(NULL, a);
}

static void sess_assign_id_is_uvmq_dash_16_hex_digits(void **state)
{
    char a[22], b[22];
    (void)state;
    sess__assign_id(a);
    sess__assign_id(b);
    assert_int_equal(strlen(a), 21);
    assert_memory_equal(a, "uvmq-", 5);
    for (int i = 5; i < 21; i++) assert_non_null(strchr("0123456789abcdef", a[i]));
    assert_string_not_equal(a, b);
}

static void sess_sub_add_replaces_the_same_filter(void **state)
{
    fixture_t *f = *state;
    sess_t *s = add(f, "subs");
    sess__sub_add(s, "a/+", 3, 1, 0);
    sess__sub_add(s, "a/#", 3, 0, 7);
    sess__sub_add(s, "a/+", 3, 2, 9);
    assert_int_equal(s->n_subs, 2);
    assert_string_equal(s->subs[0].filter, "a/+");
    assert_int_equal(s->subs[0].options, 2);
    assert_int_equal(s->subs[0].sub_id, 9);
    assert_int_equal(sess__sub_remove(s, "a/+", 3), 0);
    assert_int_equal(sess__sub_remove(s, "a/+", 3), UVMQ_ENOTFOUND);
    assert_int_equal(s->n_subs, 1);
    assert_string_equal(s->subs[0].filter, "a/#");
}

static void sess_destroy_removes_its_router_subscriptions(void **state)
{
    fixture_t *f = *state;
    sess_t *s = add(f, "gone");
    sess_t *keep = add(f, "keep");
    int existed = 0;
    sess__own(&f->l, s);
    sess__own(&f->l, keep);
    router_subscribe(f->l.router, "x/#", 3, s, 1, 0, &existed);
    router_subscribe(f->l.router, "y", 1, s, 0, 0, &existed);
    router_subscribe(f->l.router, "y", 1, keep, 0, 0, &existed);
    assert_int_equal(router_count(f->l.router), 3);
    sess__unlink(&f->b.sessions, s);
    sess__destroy(&f->l, s);
    assert_int_equal(router_count(f->l.router), 1);
    assert_ptr_equal(f->l.sessions, keep);      /* left the loop's list */
    assert_null(keep->lnext);
}

static void offline_session_queues_qos1_and_drops_qos0(void **state)
{
    fixture_t *f = *state;
    sess_t *s = add(f, "offline");
    uint32_t id = 5;
    s->expiry = SESS_NEVER_EXPIRES;
    msg_t *m = msg_create("t", 1, (const uint8_t *)"hi", 2, NULL, 0, 1, 0, 1024,
                          sizeof(msg_state_t));
    deliver__sess(&f->l, s, m, 0, 0, NULL, 0);
    assert_int_equal(s->queue.len, 0);
    deliver__sess(&f->l, s, m, 1, 0, &id, 1);
    assert_int_equal(s->queue.len, 1);
    assert_int_equal(atomic_load(&m->refs), 2); /* ours + the queue's */
    queue_entry_t *e = queue_peek(&s->queue);
    assert_int_equal(e->qos, 1);
    assert_int_equal(e->n_ids, 1);
    assert_int_equal(e->ids[0], 5);
    msg_release(&m);
}

static void expired_message_is_not_queued(void **state)
{
    fixture_t *f = *state;
    sess_t *s = add(f, "exp");
    msg_t *m = msg_create("t", 1, (const uint8_t *)"hi", 2, NULL, 0, 1, 0, 1024,
                          sizeof(msg_state_t));
    m->expiry_at = 1; /* long past */
    deliver__sess(&f->l, s, m, 1, 0, NULL, 0);
    assert_int_equal(s->queue.len, 0);
    assert_int_equal(atomic_load(&f->b.cnt.expired), 1);
    msg_release(&m);
}

static void full_queue_counts_the_overflow(void **state)
{
    fixture_t *f = *state;
    f->cfg.max_queued_messages = 2;
    sess_t *s = add(f, "full");
    msg_t *m = msg_create("t", 1, (const uint8_t *)"hi", 2, NULL, 0, 1, 0, 1024,
                          sizeof(msg_state_t));
    for (int i = 0; i < 5; i++) deliver__sess(&f->l, s, m, 1, 0, NULL, 0);
    assert_int_equal(s->queue.len, 2);
    assert_int_equal(atomic_load(&f->b.cnt.dropped_queue), 3);
    assert_int_equal(s->overflow_logged, 1);
    msg_release(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(sess_map_finds_every_inserted_session, setup, teardown),
        cmocka_unit_test(sess_map_has_the_configured_number_of_shards),
        cmocka_unit_test_setup_teardown(sess_map_compares_whole_ids_not_prefixes, setup, teardown),
        cmocka_unit_test_setup_teardown(sess_unlink_removes_only_that_session, setup, teardown),
        cmocka_unit_test(sess_assign_id_is_uvmq_dash_16_hex_digits),
        cmocka_unit_test_setup_teardown(sess_sub_add_replaces_the_same_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(sess_destroy_removes_its_router_subscriptions, setup, teardown),
        cmocka_unit_test_setup_teardown(offline_session_queues_qos1_and_drops_qos0, setup, teardown),
        cmocka_unit_test_setup_teardown(expired_message_is_not_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(full_queue_counts_the_overflow, setup, teardown),
    };
    return cmocka_run_group_tests_name("broker/sess", tests, NULL, NULL);
}

/*
 * Unit tests for broker/share.c: the pick (share__choose), groups and
 * members in the registry, a publish split between two loops (the
 * ITEM_SHARE posted to the other loop is run by hand), a member leaving
 * while a message is on its way, and the hand-off of a disconnected
 * member's messages. No sockets, no threads: the broker_t and its two
 * loops are built by hand, sessions stay offline (QoS 1 is queued).
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
    loop_t l[2];
    sess_t *s[3]; /* a and c on loop 0, b on loop 1 */
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    f->b.n_loops = 2;
    fx_broker(&f->cfg, &f->b, &f->l[0]);
    fx_loop(&f->l[1], &f->b, 1);
    f->b.loops = f->l;
    f->b.share = share__create(SHARE_ROUND_ROBIN);
    for (unsigned i = 0; i < 2; i++) {
        f->l[i].router = router_create();
        router_hits_init(&f->l[i].hits);
        f->l[i].out = calloc(2, sizeof *f->l[i].out);
        pthread_mutex_init(&f->l[i].inbox_mu, NULL);
    }
    const char *ids[] = {"a", "b", "c"};
    for (unsigned i = 0; i < 3; i++) {
        f->s[i] = sess__create(ids[i], 1, &f->cfg);
        f->s[i]->loop = &f->l[i == 1];
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    for (unsigned i = 0; i < 3; i++) sess__destroy(f->s[i]->loop, f->s[i]);
    for (unsigned i = 0; i < 2; i++) {
        inbox__drop_items(&f->l[i].out[0]);
        inbox__drop_items(&f->l[i].out[1]);
        inbox__items_dispose(&f->l[i].out[0]);
        inbox__items_dispose(&f->l[i].out[1]);
        free(f->l[i].out);
        fx_loop_dispose(&f->l[i]);
        router_destroy(f->l[i].router);
        router_hits_dispose(&f->l[i].hits);
        pthread_mutex_destroy(&f->l[i].inbox_mu);
    }
    assert_int_equal(atomic_load(&f->b.n_shared), 0);
    share__destroy(f->b.share);
    broker_config_dispose(&f->cfg);
    free(f);
    msg_pool_drain();
    return 0;
}

/* Subscribes s to filter f at QoS 1, as subscribe.c does. */
static void join(fixture_t *f, sess_t *s, const char *filter)
{
    int existed = 0;
    assert_int_equal(interest__subscribe(s->loop, s, filter, strlen(filter), 1, 0, &existed), 0);
}

/* Publishes a QoS 1 message on topic from loop 0; returns the groups hit. */
static size_t publish(fixture_t *f, const char *topic, const char *payload)
{
    msg_t *m = msg_create(topic, strlen(topic), (const uint8_t *)payload, strlen(payload),
                          NULL, 0, 1, 0, 1024, sizeof(msg_state_t));
    size_t n = share__publish(&f->l[0], m);
    msg_release(&m);
    return n;
}

/* Runs the items loop `from` posted to loop `to`, as the inbox would. */
static size_t run_items(fixture_t *f, unsigned from, unsigned to)
{
    item_vec_t *v = &f->l[from].out[to];
    size_t n = v->n;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(v->v[i].kind, ITEM_SHARE);
        share__item(&f->l[to], &v->v[i]);
    }
    v->n = 0;
    return n;
}

static void choose_round_robin_cycles_and_skips_the_excluded(void **state)
{
    (void)state;
    uint32_t rr = 0;
    long got[6];
    for (int i = 0; i < 6; i++) got[i] = share__choose(SHARE_ROUND_ROBIN, 3, UINT32_MAX, &rr, 0, 0);
    assert_int_equal(got[0], 0);
    assert_int_equal(got[1], 1);
    assert_int_equal(got[2], 2);
    assert_int_equal(got[3], 0);
    for (int i = 0; i < 6; i++)
        assert_int_not_equal(share__choose(SHARE_ROUND_ROBIN, 3, 1, &rr, 0, 0), 1);
    assert_int_equal(share__choose(SHARE_ROUND_ROBIN, 0, UINT32_MAX, &rr, 0, 0), -1);
    assert_int_equal(share__choose(SHARE_ROUND_ROBIN, 1, 0, &rr, 0, 0), -1);
}

static void choose_sticky_keeps_a_hash_on_one_index_and_random_stays_in_range(void **state)
{
    (void)state;
    uint32_t rr = 0;
    long first = share__choose(SHARE_STICKY, 5, UINT32_MAX, &rr, 12345, 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(share__choose(SHARE_STICKY, 5, UINT32_MAX, &rr, 12345, (uint32_t)i),
                         first);
    int seen[4] = {0};
    for (uint32_t r = 0; r < 400; r++) {
        long k = share__choose(SHARE_RANDOM, 4, 2, &rr, 0, r * 2654435761u);
        assert_true(k >= 0 && k < 4 && k != 2);
        seen[k]++;
    }
    assert_true(seen[0] > 0 && seen[1] > 0 && seen[3] > 0);
}

static void a_publish_goes_to_one_member_per_group_across_loops(void **state)
{
    fixture_t *f = *state;
    join(f, f->s[0], "$share/g/t/+");
    join(f, f->s[1], "$share/g/t/+");
    join(f, f->s[2], "$share/h/t/#");
    assert_int_equal(atomic_load(&f->b.n_shared), 3);
    for (int i = 0; i < 4; i++) assert_int_equal(publish(f, "t/x", "p"), 2);
    assert_int_equal(publish(f, "u/x", "p"), 0);
    /* group g alternates between a (here) and b (loop 1); h has only c */
    assert_int_equal(f->s[0]->queue.len, 2);
    assert_int_equal(f->s[2]->queue.len, 4);
    assert_int_equal(run_items(f, 0, 1), 2);
    assert_int_equal(f->s[1]->queue.len, 2);
    queue_entry_t *e = queue_peek(&f->s[1]->queue);
    assert_non_null(e);
    assert_int_not_equal(e->share, 0);
    assert_int_equal(atomic_load(&f->b.cnt.shared), 8);
}

static void unsubscribing_leaves_the_group(void **state)
{
    fixture_t *f = *state;
    join(f, f->s[0], "$share/g/t");
    join(f, f->s[1], "$share/g/t");
    assert_int_equal(interest__unsubscribe(&f->l[0], f->s[0], "$share/g/t", 10), 0);
    assert_int_equal(interest__unsubscribe(&f->l[0], f->s[0], "$share/g/t", 10), UVMQ_ENOTFOUND);
    for (int i = 0; i < 3; i++) assert_int_equal(publish(f, "t", "p"), 1);
    assert_int_equal(f->s[0]->queue.len, 0);
    assert_int_equal(run_items(f, 0, 1), 3);
    assert_int_equal(f->s[1]->queue.len, 3);
    assert_int_equal(interest__unsubscribe(&f->l[1], f->s[1], "$share/g/t", 10), 0);
    assert_int_equal(atomic_load(&f->b.n_shared), 0);
    assert_int_equal(publish(f, "t", "p"), 0);
}

static void a_message_for_a_member_that_left_goes_to_another(void **state)
{
    fixture_t *f = *state;
    join(f, f->s[1], "$share/g/t");
    assert_int_equal(publish(f, "t", "p"), 1); /* to b, on loop 1 */
    join(f, f->s[0], "$share/g/t");
    assert_int_equal(interest__unsubscribe(&f->l[1], f->s[1], "$share/g/t", 10), 0);
    assert_int_equal(run_items(f, 0, 1), 1);  /* b left: picked again */
    assert_int_equal(f->s[1]->queue.len, 0);
    assert_int_equal(run_items(f, 1, 0), 1);  /* a's loop takes it */
    assert_int_equal(f->s[0]->queue.len, 1);
    assert_int_equal(atomic_load(&f->b.cnt.shared_moved), 1);
}

static void online_members_are_preferred(void **state)
{
    fixture_t *f = *state;
    join(f, f->s[0], "$share/g/t");
    join(f, f->s[2], "$share/g/t");
    share__update(&f->l[0], f->s[2], 1, 0); /* c online, a not */
    for (int i = 0; i < 5; i++) publish(f, "t", "p");
    assert_int_equal(f->s[0]->queue.len, 0);
    assert_int_equal(f->s[2]->queue.len, 5);
}

static void a_disconnected_members_messages_go_to_another_member(void **state)
{
    fixture_t *f = *state;
    join(f, f->s[0], "$share/g/t");
    for (int i = 0; i < 3; i++) publish(f, "t", "p"); /* all to a */
    msg_t *m = msg_create("other", 5, NULL, 0, NULL, 0, 1, 0, 1024, sizeof(msg_state_t));
    deliver__sess(&f->l[0], f->s[0], m, 1, 0, NULL, 0); /* not through a group */
    msg_release(&m);
    assert_int_equal(f->s[0]->queue.len, 4);
    share__handoff(&f->l[0], f->s[0]); /* no other member: all stay */
    assert_int_equal(f->s[0]->queue.len, 4);
    join(f, f->s[2], "$share/g/t");
    join(f, f->s[1], "$share/g/t");
    share__update(&f->l[1], f->s[1], 1, 0); /* b is the online one */
    share__handoff(&f->l[0], f->s[0]);
    assert_int_equal(f->s[0]->queue.len, 1); /* the plain one stays */
    assert_string_equal(queue_peek(&f->s[0]->queue)->m->topic, "other");
    assert_int_equal(run_items(f, 0, 1), 3);
    assert_int_equal(f->s[1]->queue.len, 3);
    assert_int_equal(f->s[2]->queue.len, 0);
    assert_int_equal(atomic_load(&f->b.cnt.shared_moved), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(choose_round_robin_cycles_and_skips_the_excluded),
        cmocka_unit_test(choose_sticky_keeps_a_hash_on_one_index_and_random_stays_in_range),
        cmocka_unit_test_setup_teardown(a_publish_goes_to_one_member_per_group_across_loops,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(unsubscribing_leaves_the_group, setup, teardown),
        cmocka_unit_test_setup_teardown(a_message_for_a_member_that_left_goes_to_another,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(online_members_are_preferred, setup, teardown),
        cmocka_unit_test_setup_teardown(a_disconnected_members_messages_go_to_another_member,
                                        setup, teardown),
    };
    return cmocka_run_group_tests_name("unit/broker/share", tests, NULL, NULL);
}

/*
 * Unit tests for broker/interest.c: a loop's subscriptions go into its
 * router and into the summary other loops read before forwarding a
 * PUBLISH (interest__may_match). No sockets, no threads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/interest.c" /* the summary's layout (interest_loop_t) */
#include "common/log.h"
#include "tests/unit/broker/fixture.h"

typedef struct fixture_s {
    broker_config_t cfg;
    broker_t b;
    loop_t l;
    sess_t *s, *t;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    fx_broker(&f->cfg, &f->b, &f->l);
    f->l.router = router_create();
    f->s = sess__create("s", 1, &f->cfg);
    f->t = sess__create("t", 1, &f->cfg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    sess__destroy(NULL, f->s);
    sess__destroy(NULL, f->t);
    router_destroy(f->l.router);
    fx_loop_dispose(&f->l);
    broker_config_dispose(&f->cfg);
    free(f);
    return 0;
}

/* Subscribes as subscribe.c does: router, record and summary. */
static void sub(fixture_t *f, sess_t *s, const char *filter)
{
    int existed = 0;
    assert_int_equal(interest__subscribe(&f->l, s, filter, strlen(filter), 0, 0, &existed), 0);
}

static void unsub(fixture_t *f, sess_t *s, const char *filter)
{
    assert_int_equal(interest__unsubscribe(&f->l, s, filter, strlen(filter)), 0);
}

/* 1 when the summary says the loop may want topic. */
static int wants(fixture_t *f, const char *topic)
{
    uint32_t key[2];
    interest__topic_keys(topic, strlen(topic), key);
    return interest__may_match(&f->l, key);
}

static uint32_t total(const fixture_t *f)
{
    uint32_t n = atomic_load(&f->l.interest->any);
    for (size_t i = 0; i < INTEREST_SLOTS; i++) n += atomic_load(&f->l.interest->slots[i]);
    return n;
}

static void empty_loop_wants_nothing(void **state)
{
    fixture_t *f = *state;
    assert_false(wants(f, "a"));
    assert_false(wants(f, "bench/1"));
    assert_int_equal(total(f), 0);
}

static void exact_filter_is_wanted_and_its_neighbours_are_not(void **state)
{
    fixture_t *f = *state;
    sub(f, f->s, "bench/7");
    assert_true(wants(f, "bench/7"));
    /* 99 other topics of the same shape: none may collide with bench/7
     * (checked: FNV-1a spreads them over 4,096 slots). */
    char t[32];
    int hits = 0;
    for (int i = 0; i < 100; i++) {
        if (i == 7) continue;
        snprintf(t, sizeof t, "bench/%d", i);
        hits += wants(f, t);
    }
    assert_int_equal(hits, 0);
    assert_int_equal(router_count(f->l.router), 1);
}

static void filter_with_later_wildcard_is_keyed_by_first_level(void **state)
{
    fixture_t *f = *state;
    sub(f, f->s, "sensors/+/temp");
    assert_true(wants(f, "sensors/a/temp"));
    assert_true(wants(f, "sensors/b/humidity")); /* may match: same first level */
    assert_false(wants(f, "other/a/temp"));
    sub(f, f->t, "x/#");
    assert_true(wants(f, "x"));
    assert_true(wants(f, "x/y/z"));
}

static void filter_starting_with_wildcard_wants_everything(void **state)
{
    fixture_t *f = *state;
    sub(f, f->s, "+/status");
    assert_true(wants(f, "anything/else"));
    unsub(f, f->s, "+/status");
    assert_false(wants(f, "anything/else"));
    sub(f, f->s, "#");
    assert_true(wants(f, "z"));
}

static void replacing_a_subscription_counts_it_once(void **state)
{
    fixture_t *f = *state;
    sub(f, f->s, "a/b");
    sub(f, f->s, "a/b"); /* same filter again: replaces */
    assert_int_equal(total(f), 1);
    unsub(f, f->s, "a/b");
    assert_int_equal(total(f), 0);
    assert_false(wants(f, "a/b"));
}

static void shared_filter_stays_wanted_until_its_last_subscriber_goes(void **state)
{
    fixture_t *f = *state;
    sub(f, f->s, "a/b");
    sub(f, f->t, "a/b");
    unsub(f, f->s, "a/b");
    assert_true(wants(f, "a/b"));
    unsub(f, f->t, "a/b");
    assert_false(wants(f, "a/b"));
}

static void unsubscribe_all_takes_every_filter_out(void **state)
{
    fixture_t *f = *state;
    sub(f, f->s, "a/b");
    sub(f, f->s, "c/+");
    sub(f, f->s, "#");
    sub(f, f->t, "a/b");
    interest__unsubscribe_all(&f->l, f->s);
    assert_int_equal(f->s->n_subs, 0); /* the record is emptied too */
    assert_int_equal(total(f), 1); /* t's a/b */
    assert_true(wants(f, "a/b"));
    assert_false(wants(f, "c/d"));
    assert_int_equal(router_count(f->l.router), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(empty_loop_wants_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(exact_filter_is_wanted_and_its_neighbours_are_not,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(filter_with_later_wildcard_is_keyed_by_first_level,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(filter_starting_with_wildcard_wants_everything,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(replacing_a_subscription_counts_it_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            shared_filter_stays_wanted_until_its_last_subscriber_goes, setup, teardown),
        cmocka_unit_test_setup_teardown(unsubscribe_all_takes_every_filter_out, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("broker/interest", tests, NULL, NULL);
}

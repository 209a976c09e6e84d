/*
 * Unit tests for broker/throttle.c: an online session's congestion (soft
 * limit, hard limit at twice it, end at half), the marks it puts on the
 * messages it queues, and the backlog and fwd_pending accounting of
 * messages forwarded between loops. No sockets and no running loops: the
 * broker_t and two loop_t are built by hand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "broker/throttle.c" /* the loop state's layout (throttle_loop_t) */
#include "common/log.h"

typedef struct fixture_s {
    broker_config_t cfg;
    broker_t b;
    loop_t loops[2];
    sess_t *s;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    log_set_level(LOG_ERROR);
    broker_config_init(&f->cfg);
    f->cfg.max_queued_messages = 4;
    f->cfg.max_queued_bytes = 1000;
    f->b.cfg = &f->cfg;
    f->b.loops = f->loops;
    f->b.n_loops = 2;
    for (unsigned i = 0; i < 2; i++) {
        loop__state_init(&f->loops[i], &f->b, i);
        f->loops[i].throttle->backlog_max = 2;
        f->loops[i].throttle->backlog_max_bytes = 1000;
    }
    f->s = sess__create("s", 1, &f->cfg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    sess__destroy(NULL, f->s);
    for (unsigned i = 0; i < 2; i++) loop__state_dispose(&f->loops[i]);
    broker_config_dispose(&f->cfg);
    free(f);
    msg_pool_drain();
    return 0;
}

static msg_t *make_msg(void)
{
    return msg_create("t", 1, (const uint8_t *)"123456789", 9, NULL, 0, 1, 0, 1024,
                      sizeof(msg_state_t));
}

/* Queues a fresh message for s on loop l; returns the push result and
 * the message's congestion mark in *mark. */
static int queue_one(fixture_t *f, loop_t *l, uint16_t *mark)
{
    msg_t *m = make_msg();
    queue_entry_t e = {.m = msg_retain(m), .qos = 1};
    int rc = throttle__queue_online(l, f->s, &e, m);
    assert_null(e.m);
    *mark = atomic_load(&broker__msg(m)->congested_loop);
    msg_release(&m);
    return rc;
}

static void session_past_soft_limit_is_congested_and_marks_messages(void **state)
{
    fixture_t *f = *state;
    loop_t *l = &f->loops[1];
    uint16_t mark = 0;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(queue_one(f, l, &mark), 0);
        assert_int_equal(mark, 0);
    }
    assert_false(f->s->congested); /* at the soft limit, not above it */
    assert_int_equal(queue_one(f, l, &mark), 0);
    assert_true(f->s->congested);
    assert_int_equal(mark, 2); /* 1 + loop index */
    assert_int_equal(atomic_load(&l->throttle->n_congested), 1);
    assert_int_equal(queue_one(f, l, &mark), 0);
    assert_int_equal(mark, 2);
    assert_int_equal(atomic_load(&l->throttle->n_congested), 1); /* counted once */
}

static void congested_queue_holds_twice_the_soft_limit(void **state)
{
    fixture_t *f = *state;
    uint16_t mark = 0;
    for (int i = 0; i < 8; i++) assert_int_equal(queue_one(f, &f->loops[0], &mark), 0);
    assert_int_equal(queue_one(f, &f->loops[0], &mark), UVMQ_ELIMIT);
    assert_int_equal(f->s->queue.len, 8);
    assert_int_equal(f->s->queue.dropped, 1);
}

static void congestion_ends_at_half_the_soft_limit(void **state)
{
    fixture_t *f = *state;
    loop_t *l = &f->loops[0];
    uint16_t mark = 0;
    queue_entry_t e;
    for (int i = 0; i < 5; i++) assert_int_equal(queue_one(f, l, &mark), 0);
    assert_true(f->s->congested);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(queue_pop(&f->s->queue, &e), 0);
        queue_entry_dispose(&e);
    }
    throttle__congestion_check(l, f->s, 0); /* 3 > 4 / 2 */
    assert_true(f->s->congested);
    assert_int_equal(queue_pop(&f->s->queue, &e), 0);
    queue_entry_dispose(&e);
    throttle__congestion_check(l, f->s, 0); /* 2 <= 4 / 2 */
    assert_false(f->s->congested);
    assert_int_equal(atomic_load(&l->throttle->n_congested), 0);
    throttle__congestion_check(l, f->s, 1); /* not congested: no change */
    assert_int_equal(atomic_load(&l->throttle->n_congested), 0);
}

static void forced_check_ends_congestion_of_a_full_queue(void **state)
{
    fixture_t *f = *state;
    loop_t *l = &f->loops[0];
    uint16_t mark = 0;
    for (int i = 0; i < 6; i++) assert_int_equal(queue_one(f, l, &mark), 0);
    throttle__congestion_check(l, f->s, 1); /* going offline */
    assert_false(f->s->congested);
    assert_int_equal(atomic_load(&l->throttle->n_congested), 0);
}

static void forwarding_counts_backlog_until_delivered(void **state)
{
    fixture_t *f = *state;
    loop_t *p = &f->loops[0], *t = &f->loops[1];
    msg_t *m = make_msg();
    p->throttle->fwd_backlog = 0;
    p->throttle->fwd_congested = 0;
    throttle__forwarding(p, t, m);
    throttle__forwarding(p, t, m);
    assert_int_equal(atomic_load(&t->throttle->backlog), 2);
    assert_int_equal(atomic_load(&t->throttle->backlog_bytes), 20); /* 2 x (1 + 9) */
    assert_int_equal(p->throttle->fwd_backlog, 0); /* at the limit, not past it */
    atomic_store(&t->throttle->n_congested, 1);
    throttle__forwarding(p, t, m);
    assert_int_equal(p->throttle->fwd_backlog, 2); /* 1 + index of t */
    assert_true(p->throttle->fwd_congested);
    atomic_store(&broker__msg(m)->fwd_pending, 3);
    for (int i = 0; i < 3; i++) throttle__delivered(t, m, 0);
    assert_int_equal(atomic_load(&t->throttle->backlog), 0);
    assert_int_equal(atomic_load(&t->throttle->backlog_bytes), 0);
    assert_int_equal(atomic_load(&broker__msg(m)->fwd_pending), 0);
    msg_release(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(session_past_soft_limit_is_congested_and_marks_messages,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(congested_queue_holds_twice_the_soft_limit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(congestion_ends_at_half_the_soft_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(forced_check_ends_congestion_of_a_full_queue, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(forwarding_counts_backlog_until_delivered, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("broker/throttle", tests, NULL, NULL);
}

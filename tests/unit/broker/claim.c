/*
 * Unit tests for the session side of the cross-loop takeover protocol
 * (broker/sess.c, described in broker/inbox.c): find-or-create-and-claim,
 * which items each claim posts to which loop, and that a claimed session
 * is never ended under its claimer. Two hand-built loops, no threads and
 * no sockets: the items are read straight from the outboxes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "broker/broker_int.h"
#include "common/log.h"
#include "common/xmalloc.h"

typedef struct fixture_s {
    broker_config_t cfg;
    broker_t b;
    loop_t l[2];
    conn_t c[3]; /* claiming connections: only their addresses are used */
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    log_set_level(LOG_ERROR);
    broker_config_init(&f->cfg);
    f->b.cfg = &f->cfg;
    f->b.loops = f->l;
    f->b.n_loops = 2;
    sess__map_init(&f->b.sessions, f->cfg.session_shards);
    for (unsigned i = 0; i < 2; i++) {
        f->l[i].b = &f->b;
        f->l[i].index = i;
        f->l[i].router = router_create();
        f->l[i].out = xcalloc(2, sizeof(item_vec_t));
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    sess__map_dispose(&f->b.sessions);
    for (unsigned i = 0; i < 2; i++) {
        loop__items_dispose(&f->l[i].out[0]);
        loop__items_dispose(&f->l[i].out[1]);
        free(f->l[i].out);
        router_destroy(f->l[i].router);
    }
    broker_config_dispose(&f->cfg);
    free(f);
    return 0;
}

static sess_t *claim(fixture_t *f, unsigned loop, unsigned conn, int want)
{
    sess_t *s = NULL;
    assert_int_equal(sess__claim(&f->l[loop], &f->c[conn], "dev", 3, 0, &s), want);
    return s;
}

static void first_claim_creates_and_the_owner_claims_locally(void **state)
{
    fixture_t *f = *state;
    sess_t *s = claim(f, 0, 0, SESS_NEW);
    assert_ptr_equal(atomic_load(&s->loop), &f->l[0]);
    assert_ptr_equal(f->l[0].sessions, s);          /* swept by its owner */
    assert_ptr_equal(claim(f, 0, 1, SESS_LOCAL), s);
    assert_int_equal(f->l[0].out[0].n + f->l[0].out[1].n, 0);
    assert_null(s->claim_conn);
}

static void claim_from_another_loop_posts_takeover_to_the_owner(void **state)
{
    fixture_t *f = *state;
    sess_t *s = claim(f, 0, 0, SESS_NEW);
    assert_ptr_equal(claim(f, 1, 1, SESS_REMOTE), s);
    assert_int_equal(f->l[1].out[0].n, 1);
    loop_item_t *it = &f->l[1].out[0].v[0];
    assert_int_equal(it->kind, ITEM_TAKEOVER);
    assert_ptr_equal(it->s, s);
    assert_int_equal(it->seq, s->claim_seq);
    assert_ptr_equal(s->claim_conn, &f->c[1]);
    assert_int_equal(s->claim_loop, f->l[1].index + 1);
    assert_ptr_equal(atomic_load(&s->loop), &f->l[0]); /* not moved yet */
}

static void newer_claim_rejects_the_pending_one(void **state)
{
    fixture_t *f = *state;
    sess_t *s = claim(f, 0, 0, SESS_NEW);
    claim(f, 1, 1, SESS_REMOTE);
    uint64_t first = s->claim_seq;
    claim(f, 1, 2, SESS_REMOTE);
    assert_int_equal(f->l[1].out[1].n, 1);         /* to the first claimer */
    assert_int_equal(f->l[1].out[1].v[0].kind, ITEM_REJECT);
    assert_ptr_equal(f->l[1].out[1].v[0].c, &f->c[1]);
    assert_int_equal(f->l[1].out[0].n, 2);         /* a second TAKEOVER */
    assert_int_equal(f->l[1].out[0].v[1].seq, first + 1);
    assert_ptr_equal(s->claim_conn, &f->c[2]);
}

static void owner_connection_supersedes_a_remote_claim(void **state)
{
    fixture_t *f = *state;
    sess_t *s = claim(f, 0, 0, SESS_NEW);
    claim(f, 1, 1, SESS_REMOTE);
    uint64_t seq = s->claim_seq;
    assert_ptr_equal(claim(f, 0, 2, SESS_LOCAL), s);
    assert_int_equal(f->l[0].out[1].n, 1);
    assert_int_equal(f->l[0].out[1].v[0].kind, ITEM_REJECT);
    assert_null(s->claim_conn);
    assert_true(s->claim_seq > seq);               /* the TAKEOVER is stale */
}

static void claim_during_transit_leaves_the_adoptee_to_its_adopter(void **state)
{
    fixture_t *f = *state;
    sess_t *s = claim(f, 0, 0, SESS_NEW);
    claim(f, 1, 1, SESS_REMOTE);
    f->l[1].out[0].n = 0;
    /* What sess__handoff on loop 0 does under the shard lock: */
    atomic_store(&s->loop, &f->l[1]);
    s->transit = 1;
    s->transit_seq = s->claim_seq;
    claim(f, 0, 2, SESS_REMOTE);
    /* No REJECT (the ADOPT names c[1]: loop 1 closes it), no TAKEOVER
     * (loop 1 sees the newer claim when it processes the ADOPT). */
    assert_int_equal(f->l[0].out[0].n + f->l[0].out[1].n, 0);
    assert_ptr_equal(s->claim_conn, &f->c[2]);
}

static void claimed_session_is_marked_ended_not_destroyed(void **state)
{
    fixture_t *f = *state;
    sess_t *s = claim(f, 0, 0, SESS_NEW);
    claim(f, 1, 1, SESS_REMOTE);
    assert_int_equal(sess__end(&f->l[0], s), 0);
    assert_int_equal(s->ended, 1);
    assert_ptr_equal(sess__find(&f->b.sessions, "dev", 3), s);
    s->claim_conn = NULL;                          /* claim settled */
    assert_int_equal(sess__end(&f->l[0], s), 1);
    assert_null(sess__find(&f->b.sessions, "dev", 3));
    assert_null(f->l[0].sessions);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(first_claim_creates_and_the_owner_claims_locally, setup, teardown),
        cmocka_unit_test_setup_teardown(claim_from_another_loop_posts_takeover_to_the_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(newer_claim_rejects_the_pending_one, setup, teardown),
        cmocka_unit_test_setup_teardown(owner_connection_supersedes_a_remote_claim, setup, teardown),
        cmocka_unit_test_setup_teardown(claim_during_transit_leaves_the_adoptee_to_its_adopter, setup, teardown),
        cmocka_unit_test_setup_teardown(claimed_session_is_marked_ended_not_destroyed, setup, teardown),
    };
    return cmocka_run_group_tests_name("broker/claim", tests, NULL, NULL);
}

/*
 * Unit tests for session ownership (broker/sess.c, described in
 * broker/inbox.c): sess__find_or_create creates a session owned by the
 * calling loop, finds it again on that loop, and from any other loop only
 * names the owner (the connection moves there); the owner never changes,
 * and an ended session's id is free for whichever loop asks next. Two
 * hand-built loops, no threads and no sockets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "tests/unit/broker/fixture.h"
#include "common/xmalloc.h"

typedef struct fixture_s {
    broker_config_t cfg;
    broker_t b;
    loop_t l[2];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    f->b.n_loops = 2;
    fx_broker(&f->cfg, &f->b, &f->l[0]);
    fx_loop(&f->l[1], &f->b, 1);
    f->b.loops = f->l;
    sess__map_init(&f->b.sessions, f->cfg.session_shards);
    for (unsigned i = 0; i < 2; i++) {
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
        inbox__items_dispose(&f->l[i].out[0]);
        inbox__items_dispose(&f->l[i].out[1]);
        free(f->l[i].out);
        router_destroy(f->l[i].router);
        fx_loop_dispose(&f->l[i]);
    }
    broker_config_dispose(&f->cfg);
    free(f);
    return 0;
}

/* sess__find_or_create on loop `loop` for "dev", asserting the result. */
static sess_t *get(fixture_t *f, unsigned loop, int want, loop_t *want_owner)
{
    sess_t *s = (sess_t *)&s; /* must be overwritten */
    loop_t *owner = NULL;
    assert_int_equal(sess__find_or_create(&f->l[loop], "dev", 3, &s, &owner, &f->l[loop]), want);
    assert_ptr_equal(owner, want_owner);
    return s;
}

static void first_lookup_creates_a_session_owned_by_the_caller(void **state)
{
    fixture_t *f = *state;
    sess_t *s = get(f, 0, SESS_NEW, &f->l[0]);
    assert_non_null(s);
    assert_ptr_equal(s->loop, &f->l[0]);
    assert_string_equal(s->client_id, "dev");
    assert_ptr_equal(f->l[0].sessions, s); /* on the owner's sweep list */
    assert_null(f->l[1].sessions);
    assert_int_equal(sess__count(&f->b.sessions), 1);
}

static void lookup_on_the_owner_finds_the_same_session(void **state)
{
    fixture_t *f = *state;
    sess_t *s = get(f, 0, SESS_NEW, &f->l[0]);
    assert_ptr_equal(get(f, 0, SESS_LOCAL, &f->l[0]), s);
    assert_int_equal(sess__count(&f->b.sessions), 1);
}

static void lookup_from_another_loop_names_the_owner_only(void **state)
{
    fixture_t *f = *state;
    sess_t *s = get(f, 0, SESS_NEW, &f->l[0]);
    assert_null(get(f, 1, SESS_REMOTE, &f->l[0])); /* no pointer handed out */
    assert_ptr_equal(s->loop, &f->l[0]);           /* ownership unchanged */
    assert_ptr_equal(f->l[0].sessions, s);
    assert_null(f->l[1].sessions);
    assert_int_equal(f->l[1].out[0].n, 0);         /* nothing posted */
    assert_int_equal(f->l[1].out[1].n, 0);
    assert_int_equal(sess__count(&f->b.sessions), 1);
}

static void owner_keeps_the_session_after_many_remote_lookups(void **state)
{
    fixture_t *f = *state;
    sess_t *s = get(f, 1, SESS_NEW, &f->l[1]);
    for (int i = 0; i < 50; i++) get(f, 0, SESS_REMOTE, &f->l[1]);
    assert_ptr_equal(get(f, 1, SESS_LOCAL, &f->l[1]), s);
}

static void ended_session_is_created_afresh_by_the_next_loop(void **state)
{
    fixture_t *f = *state;
    sess_t *s = get(f, 0, SESS_NEW, &f->l[0]);
    sess__sub_add(s, "a/b", 3, 1, 0);
    sess__end(&f->l[0], s);
    assert_null(f->l[0].sessions);
    assert_int_equal(sess__count(&f->b.sessions), 0);
    assert_null(sess__find(&f->b.sessions, "dev", 3));
    s = get(f, 1, SESS_NEW, &f->l[1]);
    assert_ptr_equal(s->loop, &f->l[1]);
    assert_int_equal(s->n_subs, 0);
    get(f, 0, SESS_REMOTE, &f->l[1]);
}

static void a_session_is_created_only_on_the_loop_asked_for(void **state)
{
    fixture_t *f = *state;
    sess_t *s = NULL;
    loop_t *owner = NULL;
    /* persistent sessions live on one loop: a CONNECT elsewhere moves */
    assert_int_equal(sess__find_or_create(&f->l[1], "p", 1, &s, &owner, &f->l[0]), SESS_REMOTE);
    assert_null(s);
    assert_ptr_equal(owner, &f->l[0]);
    assert_int_equal(sess__count(&f->b.sessions), 0);
    assert_int_equal(sess__find_or_create(&f->l[0], "p", 1, &s, &owner, &f->l[0]), SESS_NEW);
    assert_ptr_equal(s->loop, &f->l[0]);
    /* found: the owner answers, whatever create_on says */
    assert_int_equal(sess__find_or_create(&f->l[1], "p", 1, &s, &owner, &f->l[1]), SESS_REMOTE);
    assert_ptr_equal(owner, &f->l[0]);
}

static void different_ids_get_different_sessions(void **state)
{
    fixture_t *f = *state;
    sess_t *a = NULL, *b = NULL;
    loop_t *owner = NULL;
    assert_int_equal(sess__find_or_create(&f->l[0], "dev", 3, &a, &owner, &f->l[0]), SESS_NEW);
    assert_int_equal(sess__find_or_create(&f->l[1], "de", 2, &b, &owner, &f->l[1]), SESS_NEW);
    assert_ptr_not_equal(a, b);
    assert_ptr_equal(owner, &f->l[1]);
    assert_ptr_equal(b->loop, &f->l[1]);
    assert_int_equal(sess__count(&f->b.sessions), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(first_lookup_creates_a_session_owned_by_the_caller, setup, teardown),
        cmocka_unit_test_setup_teardown(lookup_on_the_owner_finds_the_same_session, setup, teardown),
        cmocka_unit_test_setup_teardown(lookup_from_another_loop_names_the_owner_only, setup, teardown),
        cmocka_unit_test_setup_teardown(owner_keeps_the_session_after_many_remote_lookups, setup, teardown),
        cmocka_unit_test_setup_teardown(ended_session_is_created_afresh_by_the_next_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(a_session_is_created_only_on_the_loop_asked_for, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(different_ids_get_different_sessions, setup, teardown),
    };
    return cmocka_run_group_tests_name("broker/owner", tests, NULL, NULL);
}

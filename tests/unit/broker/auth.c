/*
 * Unit tests for broker/auth.c, MQTT 5 enhanced authentication, driven
 * through the real CONNECT and AUTH handlers: a test method ("two-step")
 * wants "hello" in CONNECT, answers challenge-1, wants response-1, answers
 * challenge-2, wants response-2 and ends with "welcome" in the CONNACK;
 * "quick" in CONNECT succeeds at once. The same method re-authenticates
 * a connected client (AUTH 0x19, 0x18 ... AUTH 0x00). Also: an unknown
 * method gets CONNACK 0x8C, a wrong answer 0x87, a packet out of turn
 * 0x82, AUTH without a method in CONNECT DISCONNECT 0x82, and every
 * exchange the method starts is ended once (its state freed). One
 * hand-built loop with a session map and router; the connection has a
 * uv handle but no socket, and is never flushed: its output is read from
 * its pending batch.
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
#include "common/xmalloc.h"

/* ---- the test method ---- */

typedef struct two_step_s {
    int round; /* answers received so far */
} two_step_t;

static int g_started, g_ended;

static int bytes_are(const auth_step_t *st, const char *want)
{
    return st->in_len == strlen(want) && memcmp(st->in, want, st->in_len) == 0;
}

static void answer(auth_step_t *st, const char *out)
{
    st->out = (const uint8_t *)out;
    st->out_len = strlen(out);
}

static int two_step_start(void **state, auth_step_t *st)
{
    g_started++;
    if (bytes_are(st, "quick")) {
        answer(st, "welcome");
        return AUTH_SUCCESS;
    }
    if (!bytes_are(st, "hello")) return AUTH_FAIL;
    *state = xcalloc(1, sizeof(two_step_t));
    answer(st, "challenge-1");
    return AUTH_CONTINUE;
}

static int two_step_cont(void *state, auth_step_t *st)
{
    two_step_t *t = state;
    if (t->round == 0 && bytes_are(st, "response-1")) {
        t->round = 1;
        answer(st, "challenge-2");
        return AUTH_CONTINUE;
    }
    if (t->round == 1 && bytes_are(st, "response-2")) {
        answer(st, "welcome");
        return AUTH_SUCCESS;
    }
    return AUTH_FAIL;
}

static void two_step_end(void *state)
{
    g_ended++;
    free(state);
}

static const auth_method_t two_step = {"two-step", two_step_start, two_step_cont, two_step_end};

/* ---- fixture ---- */

typedef struct fixture_s {
    broker_config_t cfg;
    broker_t b;
    loop_t l;
    conn_t *c;
    size_t seen; /* output bytes already looked at */
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    fx_broker(&f->cfg, &f->b, &f->l);
    f->b.loops = &f->l;
    f->b.n_loops = 1;
    sess__map_init(&f->b.sessions, f->cfg.session_shards);
    f->l.router = router_create();
    f->l.out = xcalloc(1, sizeof(item_vec_t));
    arena_init(&f->l.arena, 1 << 20);
    assert_int_equal(uv_loop_init(&f->l.uv), 0);
    assert_int_equal(auth__register(&f->b, &two_step), 0);
    conn_t *c = xcalloc(1, sizeof *c);
    c->loop = &f->l;
    c->peer_max_packet = UINT32_MAX;
    uv_tcp_init(&f->l.uv, &c->tcp);
    c->tcp.data = c;
    f->l.conns = c;
    f->l.n_conns = 1;
    atomic_store(&f->l.load, 1);
    atomic_store(&f->b.n_conns, 1);
    f->c = c;
    g_started = g_ended = 0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    conn__close(f->c, 0, CONN_CLOSE_QUIET, "test over");
    conn__close_handle(f->c); /* its output is never written */
    uv_run(&f->l.uv, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->l.uv), 0);
    assert_int_equal(g_started, g_ended); /* every exchange ended */
    fx_loop_dispose(&f->l);
    sess__map_dispose(&f->b.sessions);
    inbox__items_dispose(&f->l.out[0]);
    free(f->l.out);
    router_destroy(f->l.router);
    arena_dispose(&f->l.arena);
    broker_config_dispose(&f->cfg);
    free(f);
    msg_pool_drain();
    return 0;
}

/* ---- packets, built by hand ---- */

/* Appends an MQTT string (or binary) property id + 2-byte length + bytes. */
static size_t put_prop(uint8_t *p, uint8_t id, const char *v)
{
    size_t n = strlen(v);
    p[0] = id;
    p[1] = (uint8_t)(n >> 8);
    p[2] = (uint8_t)n;
    memcpy(p + 3, v, n);
    return 3 + n;
}

/* A v5 CONNECT (clean start, keep-alive 60) for client id, with method
 * and data (NULL: absent). Returns its length. */
static size_t connect_frame(uint8_t *out, const char *id, const char *method, const char *data)
{
    uint8_t props[256];
    size_t np = 0, n = 2;
    if (method != NULL) np += put_prop(props + np, PROP_AUTH_METHOD, method);
    if (data != NULL) np += put_prop(props + np, PROP_AUTH_DATA, data);
    memcpy(out + n, "\x00\x04MQTT\x05\x02\x00\x3c", 10);
    n += 10;
    out[n++] = (uint8_t)np;
    memcpy(out + n, props, np);
    n += np;
    out[n++] = 0;
    out[n++] = (uint8_t)strlen(id);
    memcpy(out + n, id, strlen(id));
    n += strlen(id);
    out[0] = 0x10;
    out[1] = (uint8_t)(n - 2);
    return n;
}

/* An AUTH with reason, method and data (NULL: absent). */
static size_t auth_frame(uint8_t *out, uint8_t reason, const char *method, const char *data)
{
    size_t np = 0;
    uint8_t *props = out + 4;
    if (method != NULL) np += put_prop(props + np, PROP_AUTH_METHOD, method);
    if (data != NULL) np += put_prop(props + np, PROP_AUTH_DATA, data);
    out[0] = 0xF0;
    out[1] = (uint8_t)(2 + np);
    out[2] = reason;
    out[3] = (uint8_t)np;
    return 4 + np;
}

/* ---- what the connection sent ---- */

/* The next packet c queued since the last call, decoded (arena memory;
 * strings point into the batch). Fails when there is none. */
static pkt_t next_out(fixture_t *f)
{
    const out_batch_t *b = &f->c->out->batch[f->c->pend];
    size_t flen = 0, need = 0;
    pkt_t p;
    assert_true(b->scratch_len > f->seen);
    const uint8_t *at = b->scratch + f->seen;
    assert_int_equal(pkt_frame(at, b->scratch_len - f->seen, 1u << 20, &flen, &need), 0);
    assert_int_equal(pkt_decode(&p, PKT_V5, at, flen, &f->l.arena), 0);
    f->seen += flen;
    return p;
}

/* No packet queued since the last next_out. */
static void nothing_out(fixture_t *f)
{
    const conn_out_t *o = f->c->out;
    assert_true(o == NULL || o->batch[f->c->pend].scratch_len == f->seen);
}

static void expect_bin(pkt_bin_t b, const char *want)
{
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.p, want, b.len);
}

/* Expects an AUTH with reason, the test method and data. */
static void expect_auth(fixture_t *f, uint8_t reason, const char *data)
{
    pkt_t p = next_out(f);
    assert_int_equal(p.type, PKT_AUTH);
    assert_int_equal(p.u.disconnect.reason, reason);
    assert_true(PKT_PROP_HAS(&p.u.disconnect.props, PROP_AUTH_METHOD));
    expect_bin(p.u.disconnect.props.auth_method, "two-step");
    expect_bin(p.u.disconnect.props.auth_data, data);
}

/* Expects a CONNACK with reason; returns it. */
static pkt_t expect_connack(fixture_t *f, uint8_t reason)
{
    pkt_t p = next_out(f);
    assert_int_equal(p.type, PKT_CONNACK);
    assert_int_equal(p.u.connack.reason, reason);
    return p;
}

/* Hands one frame to the CONNECT handler (as the read path does while
 * c is not yet connected). */
static conn_rc_t feed(fixture_t *f, const uint8_t *frame, size_t len)
{
    conn_rc_t rc = connect__handle(f->c, frame, len);
    arena_reset(&f->l.arena);
    return rc;
}

/* Hands an AUTH to the connected client's dispatch. */
static conn_rc_t feed_auth(fixture_t *f, const uint8_t *frame, size_t len)
{
    pkt_t p;
    assert_int_equal(pkt_decode(&p, PKT_V5, frame, len, &f->l.arena), 0);
    return auth__handle(f->c, &p);
}

/* Runs the whole two-round exchange of CONNECT for client "dev". */
static void connect_two_rounds(fixture_t *f)
{
    uint8_t fr[512];
    assert_int_equal(feed(f, fr, connect_frame(fr, "dev", "two-step", "hello")), CONN_OK);
    expect_auth(f, PKT_RC_CONTINUE_AUTH, "challenge-1");
    assert_int_equal(f->c->state, CONN_NEW);
    assert_int_equal(feed(f, fr, auth_frame(fr, PKT_RC_CONTINUE_AUTH, "two-step", "response-1")),
                     CONN_OK);
    expect_auth(f, PKT_RC_CONTINUE_AUTH, "challenge-2");
    assert_int_equal(feed(f, fr, auth_frame(fr, PKT_RC_CONTINUE_AUTH, "two-step", "response-2")),
                     CONN_OK);
    pkt_t p = expect_connack(f, PKT_RC_SUCCESS);
    expect_bin(p.u.connack.props.auth_method, "two-step"); /* MQTT-4.12.0-5 */
    expect_bin(p.u.connack.props.auth_data, "welcome");
    assert_int_equal(f->c->state, CONN_ACTIVE);
    assert_string_equal(f->c->sess->client_id, "dev");
}

/* ---- tests ---- */

static void methods_register_once_each_up_to_the_limit(void **state)
{
    fixture_t *f = *state;
    static auth_method_t more[AUTH_METHODS_MAX];
    static char names[AUTH_METHODS_MAX][8];
    assert_int_equal(auth__register(&f->b, &two_step), UVMQ_EEXISTS);
    assert_ptr_equal(auth__find(&f->b, (const uint8_t *)"two-step", 8), &two_step);
    assert_null(auth__find(&f->b, (const uint8_t *)"two-ste", 7));
    int rc = 0;
    for (int i = 0; i < AUTH_METHODS_MAX && rc == 0; i++) {
        snprintf(names[i], sizeof names[i], "m%d", i);
        more[i] = two_step;
        more[i].name = names[i];
        rc = auth__register(&f->b, &more[i]);
    }
    assert_int_equal(rc, UVMQ_ELIMIT);
    assert_int_equal(f->b.n_auth_methods, AUTH_METHODS_MAX);
}

static void unknown_method_gets_connack_0x8c(void **state)
{
    fixture_t *f = *state;
    uint8_t fr[512];
    assert_int_equal(feed(f, fr, connect_frame(fr, "dev", "xyz", NULL)), CONN_GONE);
    pkt_t p = expect_connack(f, PKT_RC_BAD_AUTH_METHOD);
    assert_false(PKT_PROP_HAS(&p.u.connack.props, PROP_AUTH_METHOD));
    assert_int_equal(f->c->state, CONN_CLOSING);
    assert_int_equal(g_started, 0);
}

static void two_round_exchange_ends_in_connack_with_the_method(void **state)
{
    fixture_t *f = *state;
    connect_two_rounds(f);
    nothing_out(f);
    assert_int_equal(g_started, 1);
    assert_int_equal(g_ended, 1); /* the exchange ended with the CONNACK */
}

static void method_that_succeeds_at_once_connects_without_auth_packets(void **state)
{
    fixture_t *f = *state;
    uint8_t fr[512];
    assert_int_equal(feed(f, fr, connect_frame(fr, "dev", "two-step", "quick")), CONN_OK);
    pkt_t p = expect_connack(f, PKT_RC_SUCCESS);
    expect_bin(p.u.connack.props.auth_method, "two-step");
    expect_bin(p.u.connack.props.auth_data, "welcome");
    assert_int_equal(f->c->state, CONN_ACTIVE);
    nothing_out(f);
}

static void wrong_answer_gets_connack_0x87(void **state)
{
    fixture_t *f = *state;
    uint8_t fr[512];
    assert_int_equal(feed(f, fr, connect_frame(fr, "dev", "two-step", "hello")), CONN_OK);
    expect_auth(f, PKT_RC_CONTINUE_AUTH, "challenge-1");
    assert_int_equal(feed(f, fr, auth_frame(fr, PKT_RC_CONTINUE_AUTH, "two-step", "guess")),
                     CONN_GONE);
    pkt_t p = expect_connack(f, PKT_RC_NOT_AUTHORIZED);
    assert_false(PKT_PROP_HAS(&p.u.connack.props, PROP_AUTH_METHOD));
    assert_int_equal(f->c->state, CONN_CLOSING);
    assert_null(f->c->sess);
    assert_int_equal(g_ended, 1);
}

static void refused_at_the_first_step_gets_connack_0x87(void **state)
{
    fixture_t *f = *state;
    uint8_t fr[512];
    assert_int_equal(feed(f, fr, connect_frame(fr, "dev", "two-step", NULL)), CONN_GONE);
    expect_connack(f, PKT_RC_NOT_AUTHORIZED);
}

/* Sends CONNECT "hello", then bad[0..n) where AUTH 0x18 is due: CONNACK
 * 0x82 (Protocol Error), closed, no session. */
static void out_of_turn(fixture_t *f, const uint8_t *bad, size_t n)
{
    uint8_t fr[512];
    assert_int_equal(feed(f, fr, connect_frame(fr, "dev", "two-step", "hello")), CONN_OK);
    expect_auth(f, PKT_RC_CONTINUE_AUTH, "challenge-1");
    assert_int_equal(feed(f, bad, n), CONN_GONE);
    expect_connack(f, PKT_RC_PROTOCOL_ERROR);
    assert_int_equal(f->c->state, CONN_CLOSING);
    assert_null(f->c->sess);
}

static void ping_during_the_exchange_is_a_protocol_error(void **state)
{
    static const uint8_t ping[] = {0xC0, 0x00};
    out_of_turn(*state, ping, sizeof ping);
}

static void auth_naming_another_method_during_the_exchange_is_a_protocol_error(void **state)
{
    uint8_t fr[64];
    out_of_turn(*state, fr, auth_frame(fr, PKT_RC_CONTINUE_AUTH, "other", "response-1"));
}

static void reauthenticate_during_the_exchange_is_a_protocol_error(void **state)
{
    uint8_t fr[64];
    out_of_turn(*state, fr, auth_frame(fr, PKT_RC_REAUTHENTICATE, "two-step", "hello"));
}

static void disconnect_during_the_exchange_closes_quietly(void **state)
{
    fixture_t *f = *state;
    static const uint8_t disc[] = {0xE0, 0x00};
    uint8_t fr[512];
    assert_int_equal(feed(f, fr, connect_frame(fr, "dev", "two-step", "hello")), CONN_OK);
    expect_auth(f, PKT_RC_CONTINUE_AUTH, "challenge-1");
    assert_int_equal(feed(f, disc, sizeof disc), CONN_GONE);
    nothing_out(f);
    assert_int_equal(f->c->state, CONN_CLOSING);
}

static void connected_client_reauthenticates_in_two_rounds(void **state)
{
    fixture_t *f = *state;
    uint8_t fr[512];
    connect_two_rounds(f);
    assert_int_equal(feed_auth(f, fr, auth_frame(fr, PKT_RC_REAUTHENTICATE, "two-step", "hello")),
                     CONN_OK);
    expect_auth(f, PKT_RC_CONTINUE_AUTH, "challenge-1");
    assert_int_equal(feed_auth(f, fr, auth_frame(fr, PKT_RC_CONTINUE_AUTH, "two-step", "response-1")),
                     CONN_OK);
    expect_auth(f, PKT_RC_CONTINUE_AUTH, "challenge-2");
    assert_int_equal(feed_auth(f, fr, auth_frame(fr, PKT_RC_CONTINUE_AUTH, "two-step", "response-2")),
                     CONN_OK);
    expect_auth(f, PKT_RC_SUCCESS, "welcome");
    assert_int_equal(f->c->state, CONN_ACTIVE);
    assert_int_equal(g_started, 2);
    assert_int_equal(g_ended, 2);
    /* and again: an exchange ended leaves the method ready for the next */
    assert_int_equal(feed_auth(f, fr, auth_frame(fr, PKT_RC_REAUTHENTICATE, "two-step", "quick")),
                     CONN_OK);
    expect_auth(f, PKT_RC_SUCCESS, "welcome");
}

/* Expects the v5 DISCONNECT c queued, with reason. */
static void expect_disconnect(fixture_t *f, uint8_t reason)
{
    pkt_t p = next_out(f);
    assert_int_equal(p.type, PKT_DISCONNECT);
    assert_int_equal(p.u.disconnect.reason, reason);
    assert_int_equal(f->c->state, CONN_CLOSING);
}

static void failed_reauthentication_disconnects_with_0x87(void **state)
{
    fixture_t *f = *state;
    uint8_t fr[512];
    connect_two_rounds(f);
    assert_int_equal(feed_auth(f, fr, auth_frame(fr, PKT_RC_REAUTHENTICATE, "two-step", "nope")),
                     CONN_GONE);
    expect_disconnect(f, PKT_RC_NOT_AUTHORIZED); /* MQTT-4.12.1-2 */
}

static void reauthentication_with_another_method_is_a_protocol_error(void **state)
{
    fixture_t *f = *state;
    uint8_t fr[512];
    connect_two_rounds(f);
    assert_int_equal(feed_auth(f, fr, auth_frame(fr, PKT_RC_REAUTHENTICATE, "other", "hello")),
                     CONN_GONE);
    expect_disconnect(f, PKT_RC_PROTOCOL_ERROR); /* MQTT-4.12.1-1 */
}

static void continue_without_a_reauthentication_is_a_protocol_error(void **state)
{
    fixture_t *f = *state;
    uint8_t fr[512];
    connect_two_rounds(f);
    assert_int_equal(feed_auth(f, fr, auth_frame(fr, PKT_RC_CONTINUE_AUTH, "two-step", "x")),
                     CONN_GONE);
    expect_disconnect(f, PKT_RC_PROTOCOL_ERROR);
}

static void auth_without_a_method_in_connect_is_a_protocol_error(void **state)
{
    fixture_t *f = *state;
    uint8_t fr[512];
    assert_int_equal(feed(f, fr, connect_frame(fr, "plain", NULL, NULL)), CONN_OK);
    pkt_t p = expect_connack(f, PKT_RC_SUCCESS);
    assert_false(PKT_PROP_HAS(&p.u.connack.props, PROP_AUTH_METHOD)); /* MQTT-4.12.0-6 */
    assert_int_equal(feed_auth(f, fr, auth_frame(fr, PKT_RC_REAUTHENTICATE, "two-step", "hello")),
                     CONN_GONE);
    expect_disconnect(f, PKT_RC_PROTOCOL_ERROR); /* MQTT-4.12.0-7 */
    assert_int_equal(g_started, 0);
}

static void connection_moves_to_its_sessions_loop_before_the_exchange(void **state)
{
    fixture_t *f = *state;
    uint8_t fr[512];
    loop_t *other = xcalloc(1, sizeof *other);
    sess_t *s = NULL;
    loop_t *owner = NULL;
    other->b = &f->b;
    other->index = 1;
    other->router = router_create();
    assert_int_equal(sess__find_or_create(other, "dev", 3, &s, &owner, other), SESS_NEW);
    /* The exchange must run where the CONNECT will complete: no AUTH yet. */
    assert_int_equal(feed(f, fr, connect_frame(fr, "dev", "two-step", "hello")), CONN_MIGRATE);
    assert_int_equal(f->c->move_to, 1);
    nothing_out(f);
    assert_int_equal(g_started, 0);
    assert_false(auth__connecting(f->c));
    sess__end(other, s);
    router_destroy(other->router);
    free(other);
}

static void connection_closed_mid_exchange_ends_the_method(void **state)
{
    fixture_t *f = *state;
    uint8_t fr[512];
    assert_int_equal(feed(f, fr, connect_frame(fr, "dev", "two-step", "hello")), CONN_OK);
    expect_auth(f, PKT_RC_CONTINUE_AUTH, "challenge-1");
    assert_int_equal(g_ended, 0); /* teardown closes: then it must be 1 */
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(methods_register_once_each_up_to_the_limit),
        T(unknown_method_gets_connack_0x8c),
        T(two_round_exchange_ends_in_connack_with_the_method),
        T(method_that_succeeds_at_once_connects_without_auth_packets),
        T(wrong_answer_gets_connack_0x87),
        T(refused_at_the_first_step_gets_connack_0x87),
        T(ping_during_the_exchange_is_a_protocol_error),
        T(auth_naming_another_method_during_the_exchange_is_a_protocol_error),
        T(reauthenticate_during_the_exchange_is_a_protocol_error),
        T(disconnect_during_the_exchange_closes_quietly),
        T(connected_client_reauthenticates_in_two_rounds),
        T(failed_reauthentication_disconnects_with_0x87),
        T(reauthentication_with_another_method_is_a_protocol_error),
        T(continue_without_a_reauthentication_is_a_protocol_error),
        T(auth_without_a_method_in_connect_is_a_protocol_error),
        T(connection_moves_to_its_sessions_loop_before_the_exchange),
        T(connection_closed_mid_exchange_ends_the_method),
    };
    return cmocka_run_group_tests_name("broker/auth", tests, NULL, NULL);
}

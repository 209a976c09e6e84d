/*
 * Unit tests for broker/alias.c, MQTT 5 topic aliases. Server to client,
 * through conn__send_publish on a hand-built v5 connection whose output
 * is read back from its pending batch: the first PUBLISH of a topic
 * carries topic and alias, repeats carry the alias and an empty topic, the
 * least recently used alias is taken over when all are in use, short
 * topics get none, and a PUBLISH dropped for the client's Maximum Packet
 * Size or for max_out_bytes leaves no alias behind. Client to server:
 * alias__in_resolve and alias__in_set with the reason codes the spec
 * gives (0x94 for 0 or over the maximum, 0x82 for an empty topic with an
 * alias never set).
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
    conn_t c;
    size_t seen; /* scratch bytes already parsed */
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    fx_broker(&f->cfg, &f->b, &f->l);
    fx_conn(&f->c, &f->l, PKT_V5);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    alias__out_disable(&f->c);
    assert_int_equal(f->l.n_alias_out, 0);
    if (f->c.ext != NULL) {
        alias__v5_free(&f->c);
        free(f->c.ext);
    }
    if (f->c.out != NULL) conn__out_free(f->c.out);
    fx_loop_dispose(&f->l);
    broker_config_dispose(&f->cfg);
    free(f);
    msg_pool_drain();
    return 0;
}

/* Sends a QoS 0 PUBLISH of topic with payload "x" to c; returns the
 * send's result. */
static int send_topic(fixture_t *f, const char *topic)
{
    msg_t *m = msg_create(topic, strlen(topic), (const uint8_t *)"x", 1, NULL, 0, 0, 0, 1u << 20,
                          sizeof(msg_state_t));
    int rc = conn__send_publish(&f->c, m, 0, 0, 0, 0, NULL, 0);
    msg_release(&m);
    return rc;
}

/* The next PUBLISH c queued: its topic (copied into topic[]) and alias
 * (0 when absent). */
static void next_pub(fixture_t *f, char *topic, size_t cap, uint16_t *alias)
{
    const out_batch_t *b = &f->c.out->batch[f->c.pend];
    arena_t a;
    pkt_t p;
    size_t flen = 0, need = 0;
    assert_true(b->scratch_len > f->seen);
    const uint8_t *at = b->scratch + f->seen;
    assert_int_equal(pkt_frame(at, b->scratch_len - f->seen, 1u << 20, &flen, &need), 0);
    arena_init(&a, 1 << 16);
    assert_int_equal(pkt_decode(&p, PKT_V5, at, flen, &a), 0);
    assert_int_equal(p.type, PKT_PUBLISH);
    assert_true(p.u.publish.topic.len < cap);
    memcpy(topic, p.u.publish.topic.p, p.u.publish.topic.len);
    topic[p.u.publish.topic.len] = '\0';
    *alias = PKT_PROP_HAS(&p.u.publish.props, PROP_TOPIC_ALIAS) ? p.u.publish.props.topic_alias : 0;
    arena_dispose(&a);
    f->seen += flen;
}

/* Expects the next PUBLISH to carry topic (empty: alias only) and alias. */
static void expect_pub(fixture_t *f, const char *topic, uint16_t alias)
{
    char t[256];
    uint16_t a = 0;
    next_pub(f, t, sizeof t, &a);
    assert_string_equal(t, topic);
    assert_int_equal(a, alias);
}

static void first_publish_assigns_an_alias_and_repeats_send_it_alone(void **state)
{
    fixture_t *f = *state;
    alias__out_enable(&f->c, 10);
    assert_int_equal(f->l.n_alias_out, 1);
    assert_int_equal(send_topic(f, "sensors/a"), 0);
    assert_int_equal(send_topic(f, "sensors/a"), 0);
    assert_int_equal(send_topic(f, "sensors/b"), 0);
    assert_int_equal(send_topic(f, "sensors/a"), 0);
    expect_pub(f, "sensors/a", 1);
    expect_pub(f, "", 1);
    expect_pub(f, "sensors/b", 2);
    expect_pub(f, "", 1);
    /* Bytes of the repeat: 30, length 7, topic length 0, properties 3
     * (23 00 01: Topic Alias 1), payload "x". */
    const out_batch_t *b = &f->c.out->batch[f->c.pend];
    size_t first = 2 + 2 + 9 + 1 + 3 + 1;
    assert_memory_equal(b->scratch + first, "\x30\x07\x00\x00\x03\x23\x00\x01x", 9);
}

static void all_aliases_in_use_the_least_recently_used_is_taken_over(void **state)
{
    fixture_t *f = *state;
    alias__out_enable(&f->c, 2);
    send_topic(f, "topic/1"); /* alias 1 */
    send_topic(f, "topic/2"); /* alias 2 */
    send_topic(f, "topic/1"); /* 1 used: 2 is the least recent */
    send_topic(f, "topic/3"); /* takes 2 */
    send_topic(f, "topic/1"); /* still 1 */
    send_topic(f, "topic/2"); /* takes 2 again (3 is older than 1) */
    send_topic(f, "topic/3"); /* takes 1 */
    send_topic(f, "topic/2");
    expect_pub(f, "topic/1", 1);
    expect_pub(f, "topic/2", 2);
    expect_pub(f, "", 1);
    expect_pub(f, "topic/3", 2);
    expect_pub(f, "", 1);
    expect_pub(f, "topic/2", 2);
    expect_pub(f, "topic/3", 1);
    expect_pub(f, "", 2);
}

static void many_topics_through_few_aliases_keep_the_index_consistent(void **state)
{
    fixture_t *f = *state;
    char t[32];
    uint16_t a = 0;
    alias__out_enable(&f->c, 3);
    /* 40 topics cycling through 3 aliases, then the last three again: each
     * is known (empty topic), so the index found every one after all the
     * take-overs and removals. */
    for (int i = 0; i < 40; i++) {
        snprintf(t, sizeof t, "cycle/%d", i);
        assert_int_equal(send_topic(f, t), 0);
    }
    for (int i = 37; i < 40; i++) {
        snprintf(t, sizeof t, "cycle/%d", i);
        assert_int_equal(send_topic(f, t), 0);
    }
    for (int i = 0; i < 40; i++) next_pub(f, t, sizeof t, &a);
    for (int i = 0; i < 3; i++) {
        next_pub(f, t, sizeof t, &a);
        assert_string_equal(t, "");
        assert_true(a >= 1 && a <= 3);
    }
}

static void topics_shorter_than_four_bytes_get_no_alias(void **state)
{
    fixture_t *f = *state;
    alias__out_enable(&f->c, 10);
    send_topic(f, "a/b");
    send_topic(f, "a/b");
    send_topic(f, "a/bc");
    expect_pub(f, "a/b", 0);
    expect_pub(f, "a/b", 0);
    expect_pub(f, "a/bc", 1);
}

static void publish_dropped_for_its_size_leaves_no_alias(void **state)
{
    fixture_t *f = *state;
    alias__out_enable(&f->c, 10);
    /* "big/topic/x" with alias: 2 + 2 + 11 + 1 + 3 + 1 = 20 bytes, 17
     * without the alias. */
    f->c.peer_max_packet = 16;
    assert_int_equal(send_topic(f, "big/topic/x"), UVMQ_ELIMIT);
    f->c.peer_max_packet = 17; /* fits only without a new alias */
    assert_int_equal(send_topic(f, "big/topic/x"), 0);
    f->c.peer_max_packet = UINT32_MAX;
    assert_int_equal(send_topic(f, "big/topic/x"), 0);
    assert_int_equal(send_topic(f, "big/topic/x"), 0);
    expect_pub(f, "big/topic/x", 0); /* sent whole, no alias */
    expect_pub(f, "big/topic/x", 1); /* the first alias the client sees */
    expect_pub(f, "", 1);
}

static void qos0_dropped_past_max_out_bytes_leaves_no_alias(void **state)
{
    fixture_t *f = *state;
    alias__out_enable(&f->c, 10);
    f->cfg.max_out_bytes = 40;
    f->c.unsent = 30; /* as if 30 bytes were waiting */
    assert_int_equal(send_topic(f, "busy/topic"), UVMQ_ELIMIT);
    f->c.unsent = 0;
    assert_int_equal(send_topic(f, "busy/topic"), 0);
    expect_pub(f, "busy/topic", 1);
}

static void without_alias_out_the_shared_head_is_used_and_no_alias_sent(void **state)
{
    fixture_t *f = *state;
    send_topic(f, "sensors/a");
    send_topic(f, "sensors/a");
    expect_pub(f, "sensors/a", 0);
    expect_pub(f, "sensors/a", 0);
    assert_null(f->c.ext);
}

/* A v5 PUBLISH from the client with topic and alias (0: none). */
static pkt_publish_t pub_in(const char *topic, int alias, uint16_t value)
{
    pkt_publish_t p;
    memset(&p, 0, sizeof p);
    p.topic.p = (const uint8_t *)topic;
    p.topic.len = (uint32_t)strlen(topic);
    if (alias) {
        PKT_PROP_SET(&p.props, PROP_TOPIC_ALIAS);
        p.props.topic_alias = value;
    }
    return p;
}

/* The reason alias__in_resolve leaves for p (0 when p resolved), checking
 * that it returned 0 exactly then and UVMQ_EINVAL otherwise. */
static uint8_t resolve(fixture_t *f, pkt_publish_t *p)
{
    uint8_t reason = 0xFF;
    int rc = alias__in_resolve(&f->c, p, &reason);
    assert_int_equal(rc, reason == PKT_RC_SUCCESS ? 0 : UVMQ_EINVAL);
    return reason;
}

static void inbound_alias_0_or_over_the_maximum_is_0x94(void **state)
{
    fixture_t *f = *state;
    f->cfg.topic_alias_max = 5;
    pkt_publish_t p = pub_in("a/b", 1, 0); /* MQTT-3.3.2-8 */
    assert_int_equal(resolve(f, &p), PKT_RC_TOPIC_ALIAS_INVALID);
    p = pub_in("a/b", 1, 6);
    assert_int_equal(resolve(f, &p), PKT_RC_TOPIC_ALIAS_INVALID);
    p = pub_in("a/b", 1, 5);
    assert_int_equal(resolve(f, &p), 0);
    f->cfg.topic_alias_max = 0; /* none allowed at all */
    p = pub_in("a/b", 1, 1);
    assert_int_equal(resolve(f, &p), PKT_RC_TOPIC_ALIAS_INVALID);
    assert_null(f->c.ext); /* nothing made for refused aliases */
}

static void inbound_empty_topic_with_an_alias_never_set_is_0x82(void **state)
{
    fixture_t *f = *state;
    pkt_publish_t p = pub_in("", 1, 3);
    assert_int_equal(resolve(f, &p), PKT_RC_PROTOCOL_ERROR);
    p = pub_in("x/y", 1, 2);
    alias__in_set(&f->c, 2, &p.topic);
    p = pub_in("", 1, 3); /* the table exists, alias 3 is still unset */
    assert_int_equal(resolve(f, &p), PKT_RC_PROTOCOL_ERROR);
}

static void inbound_alias_stands_for_its_last_topic(void **state)
{
    fixture_t *f = *state;
    pkt_publish_t p = pub_in("room/1/temp", 1, 10);
    assert_int_equal(resolve(f, &p), 0);
    alias__in_set(&f->c, 10, &p.topic);
    p = pub_in("", 1, 10);
    assert_int_equal(resolve(f, &p), 0);
    assert_int_equal(p.topic.len, 11);
    assert_memory_equal(p.topic.p, "room/1/temp", 11);
    p = pub_in("r/2", 1, 10); /* a new topic resets the alias */
    alias__in_set(&f->c, 10, &p.topic);
    p = pub_in("", 1, 10);
    assert_int_equal(resolve(f, &p), 0);
    assert_int_equal(p.topic.len, 3);
    assert_memory_equal(p.topic.p, "r/2", 3);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(first_publish_assigns_an_alias_and_repeats_send_it_alone),
        T(all_aliases_in_use_the_least_recently_used_is_taken_over),
        T(many_topics_through_few_aliases_keep_the_index_consistent),
        T(topics_shorter_than_four_bytes_get_no_alias),
        T(publish_dropped_for_its_size_leaves_no_alias),
        T(qos0_dropped_past_max_out_bytes_leaves_no_alias),
        T(without_alias_out_the_shared_head_is_used_and_no_alias_sent),
        T(inbound_alias_0_or_over_the_maximum_is_0x94),
        T(inbound_empty_topic_with_an_alias_never_set_is_0x82),
        T(inbound_alias_stands_for_its_last_topic),
    };
    return cmocka_run_group_tests_name("broker/alias", tests, NULL, NULL);
}

/*
 * 02-pubsub - SUBSCRIBE, PUBLISH and UNSUBSCRIBE at QoS 0 between clients.
 *
 * Scenario: raw clients subscribe (exact SUBACK bytes), another raw client
 * publishes, and the subscribers must receive exactly the PUBLISH bytes the
 * spec prescribes, in 3.1.1 and 5.0. Wildcards '+' and '#' match as in
 * MQTT 4.7, except that '#' never matches a '$' topic; overlapping
 * subscriptions yield one copy at the highest granted QoS; an invalid
 * filter gets a failure code in its SUBACK slot; after UNSUBSCRIBE nothing
 * more arrives. A 1 MiB payload and a PUBLISH dribbled one byte per write
 * must arrive intact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tests/integration/harness/harness.h"

/* SUBSCRIBE id 1 to "a/b" QoS 0, v3.1.1 and v5, and their SUBACKs. */
static const unsigned char SUB_AB_311[] = {
    0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 'a', '/', 'b', 0x00};
static const unsigned char SUBACK_1_Q0_311[] = {0x90, 0x03, 0x00, 0x01, 0x00};
static const unsigned char SUB_AB_5[] = {
    0x82, 0x09, 0x00, 0x01, 0x00, 0x00, 0x03, 'a', '/', 'b', 0x00};
static const unsigned char SUBACK_1_Q0_5[] = {
    0x90, 0x04, 0x00, 0x01, 0x00, 0x00};

/* PUBLISH QoS 0 "a/b" payload "hi", v3.1.1 and v5 (empty properties). */
static const unsigned char PUB_AB_311[] = {
    0x30, 0x07, 0x00, 0x03, 'a', '/', 'b', 'h', 'i'};
static const unsigned char PUB_AB_5[] = {
    0x30, 0x08, 0x00, 0x03, 'a', '/', 'b', 0x00, 'h', 'i'};

static void v311_qos0_publish_reaches_subscriber_byte_exact(th_ctx_t *t)
{
    int sub = th_mqtt_open(t->port, 4, "sub", 0x02, 60);
    int pub = th_mqtt_open(t->port, 4, "pub", 0x02, 60);
    th_send(sub, SUB_AB_311, sizeof SUB_AB_311);
    th_expect(sub, SUBACK_1_Q0_311, sizeof SUBACK_1_Q0_311, TH_WAIT_MS);
    th_send(pub, PUB_AB_311, sizeof PUB_AB_311);
    th_expect(sub, PUB_AB_311, sizeof PUB_AB_311, TH_WAIT_MS);
    th_expect_silence(pub, 200); /* QoS 0: no acknowledgement */
    th_close(pub);
    th_close(sub);
}

static void v5_qos0_publish_reaches_subscriber_byte_exact(th_ctx_t *t)
{
    int sub = th_mqtt_open(t->port, 5, "sub", 0x02, 60);
    int pub = th_mqtt_open(t->port, 5, "pub", 0x02, 60);
    th_send(sub, SUB_AB_5, sizeof SUB_AB_5);
    th_expect(sub, SUBACK_1_Q0_5, sizeof SUBACK_1_Q0_5, TH_WAIT_MS);
    th_send(pub, PUB_AB_5, sizeof PUB_AB_5);
    th_expect(sub, PUB_AB_5, sizeof PUB_AB_5, TH_WAIT_MS);
    th_close(pub);
    th_close(sub);
}

static void v311_publish_reaches_v311_and_v5_subscribers(th_ctx_t *t)
{
    int sub5 = th_mqtt_open(t->port, 5, "sub5", 0x02, 60);
    int sub4 = th_mqtt_open(t->port, 4, "sub4", 0x02, 60);
    int pub = th_mqtt_open(t->port, 4, "pub", 0x02, 60);
    th_send(sub5, SUB_AB_5, sizeof SUB_AB_5);
    th_expect(sub5, SUBACK_1_Q0_5, sizeof SUBACK_1_Q0_5, TH_WAIT_MS);
    th_send(sub4, SUB_AB_311, sizeof SUB_AB_311);
    th_expect(sub4, SUBACK_1_Q0_311, sizeof SUBACK_1_Q0_311, TH_WAIT_MS);
    th_send(pub, PUB_AB_311, sizeof PUB_AB_311);
    th_expect(sub5, PUB_AB_5, sizeof PUB_AB_5, TH_WAIT_MS);
    th_expect(sub4, PUB_AB_311, sizeof PUB_AB_311, TH_WAIT_MS);
    th_close(pub);
    th_close(sub4);
    th_close(sub5);
}

/* Reads QoS 0 PUBLISH packets until one on topic "end" and returns their
 * topics joined by spaces ("a a/b end"). At most 16 packets. */
static void collect_topics(int fd, char *out, size_t cap)
{
    unsigned char buf[256];
    out[0] = '\0';
    for (int i = 0; i < 16; i++) {
        int n = th_read_type(fd, 0x30, buf, sizeof buf, TH_WAIT_MS);
        size_t h = th_header_len(buf);
        size_t tlen = (size_t)buf[h] << 8 | buf[h + 1];
        assert_true(h + 2 + tlen <= (size_t)n);
        if (out[0] != '\0')
            strncat(out, " ", cap - strlen(out) - 1);
        strncat(out, (const char *)buf + h + 2,
                tlen < cap - strlen(out) - 1 ? tlen : cap - strlen(out) - 1);
        if (tlen == 3 && memcmp(buf + h + 2, "end", 3) == 0)
            return;
    }
    fail_msg("no PUBLISH on \"end\" among 16 packets");
}

static void wildcards_match_as_the_spec_says(th_ctx_t *t)
{
    /* A: "a/#" + "end"; B: "a/+" + "end"; C: "#" (MQTT-4.7.1-2, 4.7.1-3). */
    static const unsigned char sub_a[] = {
        0x82, 0x0e, 0x00, 0x01, 0x00, 0x03, 'a', '/', '#', 0x00,
        0x00, 0x03, 'e', 'n', 'd', 0x00};
    static const unsigned char sub_b[] = {
        0x82, 0x0e, 0x00, 0x01, 0x00, 0x03, 'a', '/', '+', 0x00,
        0x00, 0x03, 'e', 'n', 'd', 0x00};
    static const unsigned char sub_c[] = {
        0x82, 0x06, 0x00, 0x01, 0x00, 0x01, '#', 0x00};
    static const unsigned char suback2[] = {0x90, 0x04, 0x00, 0x01, 0x00, 0x00};
    static const unsigned char pubs[] = {
        0x30, 0x03, 0x00, 0x01, 'a',
        0x30, 0x05, 0x00, 0x03, 'a', '/', 'b',
        0x30, 0x07, 0x00, 0x05, 'a', '/', 'b', '/', 'c',
        0x30, 0x03, 0x00, 0x01, 'b',
        0x30, 0x08, 0x00, 0x06, '$', 'S', 'Y', 'S', '/', 'x',
        0x30, 0x05, 0x00, 0x03, 'e', 'n', 'd'};
    char got[256];
    int a = th_mqtt_open(t->port, 4, "A", 0x02, 60);
    int b = th_mqtt_open(t->port, 4, "B", 0x02, 60);
    int c = th_mqtt_open(t->port, 4, "C", 0x02, 60);
    int pub = th_mqtt_open(t->port, 4, "pub", 0x02, 60);
    th_send(a, sub_a, sizeof sub_a);
    th_expect(a, suback2, sizeof suback2, TH_WAIT_MS);
    th_send(b, sub_b, sizeof sub_b);
    th_expect(b, suback2, sizeof suback2, TH_WAIT_MS);
    th_send(c, sub_c, sizeof sub_c);
    th_expect(c, SUBACK_1_Q0_311, sizeof SUBACK_1_Q0_311, TH_WAIT_MS);
    th_send(pub, pubs, sizeof pubs);
    collect_topics(a, got, sizeof got);
    assert_string_equal(got, "a a/b a/b/c end"); /* "a/#" matches "a" too */
    collect_topics(b, got, sizeof got);
    assert_string_equal(got, "a/b end");
    collect_topics(c, got, sizeof got);
    assert_string_equal(got, "a a/b a/b/c b end"); /* no $SYS/x: 4.7.2-1 */
    th_close(pub);
    th_close(c);
    th_close(b);
    th_close(a);
}

static void overlapping_subscriptions_deliver_once_at_highest_qos(th_ctx_t *t)
{
    /* "a/#" QoS 0 and "a/b" QoS 1 both match a/b (MQTT-3.3.5-1). */
    static const unsigned char sub[] = {
        0x82, 0x0e, 0x00, 0x01, 0x00, 0x03, 'a', '/', '#', 0x00,
        0x00, 0x03, 'a', '/', 'b', 0x01};
    static const unsigned char suback[] = {0x90, 0x04, 0x00, 0x01, 0x00, 0x01};
    static const unsigned char pub_q1[] = {
        0x32, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x07, 'h', 'i'};
    static const unsigned char puback7[] = {0x40, 0x02, 0x00, 0x07};
    unsigned char buf[256];
    int s = th_mqtt_open(t->port, 4, "sub", 0x02, 60);
    int p = th_mqtt_open(t->port, 4, "pub", 0x02, 60);
    th_send(s, sub, sizeof sub);
    th_expect(s, suback, sizeof suback, TH_WAIT_MS);
    th_send(p, pub_q1, sizeof pub_q1);
    th_expect(p, puback7, sizeof puback7, TH_WAIT_MS);
    int n = th_read_packet(s, buf, sizeof buf, TH_WAIT_MS);
    assert_int_equal(n, 11);
    assert_int_equal(buf[0] & 0xf6, 0x32); /* PUBLISH QoS 1 (DUP/RETAIN aside) */
    assert_memory_equal(buf + 1, "\x09\x00\x03" "a/b", 6);
    assert_memory_equal(buf + 9, "hi", 2);
    uint16_t id = th_publish_id(buf);
    assert_int_not_equal(id, 0);
    unsigned char ack[] = {0x40, 0x02, (unsigned char)(id >> 8),
                           (unsigned char)id};
    th_send(s, ack, sizeof ack);
    th_expect_silence(s, 500); /* no second copy */
    th_close(p);
    th_close(s);
}

static void v311_suback_grants_qos_and_refuses_invalid_filter(th_ctx_t *t)
{
    /* "x/y" QoS 2 is granted 2; "a/#/b" breaks MQTT-4.7.1-2 -> 0x80. */
    static const unsigned char sub[] = {
        0x82, 0x10, 0x00, 0x02, 0x00, 0x03, 'x', '/', 'y', 0x02,
        0x00, 0x05, 'a', '/', '#', '/', 'b', 0x00};
    static const unsigned char suback[] = {0x90, 0x04, 0x00, 0x02, 0x02, 0x80};
    int s = th_mqtt_open(t->port, 4, "sub", 0x02, 60);
    th_send(s, sub, sizeof sub);
    th_expect(s, suback, sizeof suback, TH_WAIT_MS);
    th_close(s);
}

static void v5_suback_grants_qos_and_refuses_invalid_filter_with_0x8f(th_ctx_t *t)
{
    /* v5: 0x8F Topic Filter invalid in the SUBACK slot, and a Reason
     * String saying so (docs/protocol.md). */
    static const unsigned char sub[] = {
        0x82, 0x11, 0x00, 0x02, 0x00, 0x00, 0x03, 'x', '/', 'y', 0x02,
        0x00, 0x05, 'a', '/', '#', '/', 'b', 0x00};
    static const unsigned char suback[] = {
        0x90, 0x21, 0x00, 0x02, 0x1c, 0x1f, 0x00, 0x19,
        't', 'o', 'p', 'i', 'c', ' ', 'f', 'i', 'l', 't', 'e', 'r', ' ',
        'n', 'o', 't', ' ', 'a', 'c', 'c', 'e', 'p', 't', 'e', 'd',
        0x02, 0x8f};
    int s = th_mqtt_open(t->port, 5, "sub", 0x02, 60);
    th_send(s, sub, sizeof sub);
    th_expect(s, suback, sizeof suback, TH_WAIT_MS);
    th_close(s);
}

static void v311_unsubscribe_stops_delivery(th_ctx_t *t)
{
    static const unsigned char unsub[] = {
        0xa2, 0x07, 0x00, 0x03, 0x00, 0x03, 'a', '/', 'b'};
    static const unsigned char unsuback[] = {0xb0, 0x02, 0x00, 0x03};
    int s = th_mqtt_open(t->port, 4, "sub", 0x02, 60);
    int p = th_mqtt_open(t->port, 4, "pub", 0x02, 60);
    th_send(s, SUB_AB_311, sizeof SUB_AB_311);
    th_expect(s, SUBACK_1_Q0_311, sizeof SUBACK_1_Q0_311, TH_WAIT_MS);
    th_send(p, PUB_AB_311, sizeof PUB_AB_311);
    th_expect(s, PUB_AB_311, sizeof PUB_AB_311, TH_WAIT_MS);
    th_send(s, unsub, sizeof unsub);
    th_expect(s, unsuback, sizeof unsuback, TH_WAIT_MS);
    th_send(p, PUB_AB_311, sizeof PUB_AB_311);
    th_expect_silence(s, 500);
    th_close(p);
    th_close(s);
}

static void v5_unsubscribe_stops_delivery(th_ctx_t *t)
{
    static const unsigned char unsub[] = {
        0xa2, 0x08, 0x00, 0x03, 0x00, 0x00, 0x03, 'a', '/', 'b'};
    static const unsigned char unsuback[] = {
        0xb0, 0x04, 0x00, 0x03, 0x00, 0x00};
    int s = th_mqtt_open(t->port, 5, "sub", 0x02, 60);
    int p = th_mqtt_open(t->port, 5, "pub", 0x02, 60);
    th_send(s, SUB_AB_5, sizeof SUB_AB_5);
    th_expect(s, SUBACK_1_Q0_5, sizeof SUBACK_1_Q0_5, TH_WAIT_MS);
    th_send(s, unsub, sizeof unsub);
    th_expect(s, unsuback, sizeof unsuback, TH_WAIT_MS);
    th_send(p, PUB_AB_5, sizeof PUB_AB_5);
    th_expect_silence(s, 500);
    th_close(p);
    th_close(s);
}

static void one_mib_payload_round_trips_intact(th_ctx_t *t)
{
    enum { LEN = 1 << 20 };
    unsigned char *payload = malloc(LEN);
    th_mosq_t sub, pub;
    assert_non_null(payload);
    for (int i = 0; i < LEN; i++)
        payload[i] = (unsigned char)(i * 7 + (i >> 11));
    th_mosq_open(&sub, t->port, "bigsub", 5, true);
    th_mosq_open(&pub, t->port, "bigpub", 5, true);
    th_mosq_subscribe(&sub, "big/#", 1);
    th_mosq_publish(&pub, "big/one", payload, LEN, 1, false);
    th_mosq_wait_msgs(&sub, &pub, 1, 20000);
    assert_string_equal(sub.msgs[0].topic, "big/one");
    assert_int_equal(sub.msgs[0].len, LEN);
    assert_memory_equal(sub.msgs[0].payload, payload, LEN);
    th_mosq_wait_published(&pub, &sub, 1, TH_WAIT_MS);
    th_mosq_close(&pub);
    th_mosq_close(&sub);
    free(payload);
}

static void publish_written_one_byte_at_a_time_is_delivered(th_ctx_t *t)
{
    static const unsigned char connect[] = {
        0x10, 0x0f, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c,
        0x00, 0x03, 'p', 'u', 'b'};
    static const unsigned char connack[] = {0x20, 0x02, 0x00, 0x00};
    int s = th_mqtt_open(t->port, 4, "sub", 0x02, 60);
    th_send(s, SUB_AB_311, sizeof SUB_AB_311);
    th_expect(s, SUBACK_1_Q0_311, sizeof SUBACK_1_Q0_311, TH_WAIT_MS);
    int p = th_connect(t->port);
    th_send_slow(p, connect, sizeof connect);
    th_expect(p, connack, sizeof connack, TH_WAIT_MS);
    th_send_slow(p, PUB_AB_311, sizeof PUB_AB_311);
    th_expect(s, PUB_AB_311, sizeof PUB_AB_311, TH_WAIT_MS);
    th_close(p);
    th_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_TEST(v311_qos0_publish_reaches_subscriber_byte_exact),
        TH_TEST(v5_qos0_publish_reaches_subscriber_byte_exact),
        TH_TEST(v311_publish_reaches_v311_and_v5_subscribers),
        TH_TEST(wildcards_match_as_the_spec_says),
        TH_TEST(overlapping_subscriptions_deliver_once_at_highest_qos),
        TH_TEST(v311_suback_grants_qos_and_refuses_invalid_filter),
        TH_TEST(v5_suback_grants_qos_and_refuses_invalid_filter_with_0x8f),
        TH_TEST(v311_unsubscribe_stops_delivery),
        TH_TEST(v5_unsubscribe_stops_delivery),
        TH_TEST(one_mib_payload_round_trips_intact),
        TH_TEST(publish_written_one_byte_at_a_time_is_delivered),
    };
    return cmocka_run_group_tests_name("integration/02-pubsub", tests, NULL,
                                       NULL);
}

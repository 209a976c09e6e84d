/*
 * 11-bad-input - hostile bytes close one connection and nothing else.
 *
 * Scenario: one broker (max_packet_size 1024) serves every test here, and a
 * libmosquitto subscriber stays connected throughout. Each test commits one
 * offence on a raw connection: a 5-byte remaining length, an oversize
 * packet, a packet before CONNECT, a second CONNECT, ill-formed UTF-8 in a
 * topic, '#' in a published topic, QoS 3. That connection must close (v5
 * first gets DISCONNECT 0x81 malformed, 0x82 protocol error, 0x90 topic
 * name invalid or 0x95 too large); then fresh clients and the long-lived
 * subscriber must still get a publish.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tests/integration/harness/harness.h"

static th_broker_t g_broker;
static th_mosq_t g_long;   /* long-lived subscriber on "ok/#" */
static int g_long_expect;  /* messages it should have by now */

/* Checks the broker still serves others: a new subscriber and publisher
 * exchange a QoS 0 message, and the long-lived subscriber gets it too. */
static void others_are_unaffected(th_ctx_t *t)
{
    static const unsigned char sub_ok[] = {
        0x82, 0x09, 0x00, 0x01, 0x00, 0x04, 'o', 'k', '/', 't', 0x00};
    static const unsigned char suback[] = {0x90, 0x03, 0x00, 0x01, 0x00};
    static const unsigned char pub_ok[] = {
        0x30, 0x08, 0x00, 0x04, 'o', 'k', '/', 't', 'h', 'i'};
    int s = th_mqtt_open(t->port, 4, "healthy-sub", 0x02, 60);
    int p = th_mqtt_open(t->port, 4, "healthy-pub", 0x02, 60);
    th_send(s, sub_ok, sizeof sub_ok);
    th_expect(s, suback, sizeof suback, TH_WAIT_MS);
    th_send(p, pub_ok, sizeof pub_ok);
    th_expect(s, pub_ok, sizeof pub_ok, TH_WAIT_MS);
    th_mosq_wait_msgs(&g_long, NULL, ++g_long_expect, TH_WAIT_MS);
    assert_string_equal(g_long.msgs[g_long_expect - 1].topic, "ok/t");
    th_close(p);
    th_close(s);
}

/* Sends bad bytes on a connected v3.1.1 client and expects a plain close. */
static void v311_offence_closes(th_ctx_t *t, const unsigned char *bad,
                                size_t len)
{
    int fd = th_mqtt_open(t->port, 4, "bad4", 0x02, 60);
    th_try_send(fd, bad, len); /* the broker may close before the end */
    th_expect_closed(fd, TH_WAIT_MS);
    th_close(fd);
    others_are_unaffected(t);
}

/* Sends bad bytes on a connected v5 client and expects DISCONNECT with
 * `reason`, then the close. */
static void v5_offence_disconnects(th_ctx_t *t, const unsigned char *bad,
                                   size_t len, uint8_t reason)
{
    int fd = th_mqtt_open(t->port, 5, "bad5", 0x02, 60);
    th_try_send(fd, bad, len);
    th_expect_disconnect_v5(fd, reason, TH_WAIT_MS);
    th_close(fd);
    others_are_unaffected(t);
}

static void five_byte_remaining_length_closes_v311(th_ctx_t *t)
{
    static const unsigned char bad[] = {0x30, 0xff, 0xff, 0xff, 0xff, 0x7f};
    v311_offence_closes(t, bad, sizeof bad);
}

static void five_byte_remaining_length_gets_0x81_on_v5(th_ctx_t *t)
{
    /* MQTT-1.5.5: at most 4 bytes; otherwise Malformed Packet. */
    static const unsigned char bad[] = {0x30, 0xff, 0xff, 0xff, 0xff, 0x7f};
    v5_offence_disconnects(t, bad, sizeof bad, 0x81);
}

/* A 2048-byte PUBLISH on "t" (v5 layout when v5 != 0): a literal header
 * followed by 'x' bytes. Returns its length; buf holds 2051 bytes. */
static size_t oversize_publish(unsigned char *buf, int v5)
{
    static const unsigned char hdr4[] = {0x30, 0x80, 0x10, 0x00, 0x01, 't'};
    static const unsigned char hdr5[] = {0x30, 0x80, 0x10, 0x00, 0x01, 't',
                                         0x00};
    size_t h = v5 ? sizeof hdr5 : sizeof hdr4;
    memcpy(buf, v5 ? hdr5 : hdr4, h);
    memset(buf + h, 'x', 2048 + 3 - h);
    return 2048 + 3; /* remaining length 2048 + type byte + 2 varint bytes */
}

static void oversize_packet_closes_v311(th_ctx_t *t)
{
    unsigned char buf[2051];
    size_t n = oversize_publish(buf, 0);
    v311_offence_closes(t, buf, n);
}

static void oversize_packet_gets_0x95_on_v5(th_ctx_t *t)
{
    /* v5 3.1.2.11.4 / 4.13: over Maximum Packet Size -> 0x95. The CONNACK
     * may announce the limit (property 0x27); if it does, it is 1024. */
    static const unsigned char connect[] = {
        0x10, 0x11, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3c,
        0x00, 0x00, 0x04, 'b', 'i', 'g', '5'};
    unsigned char buf[2051], ack[256];
    size_t n = oversize_publish(buf, 1);
    int fd = th_connect(t->port);
    th_send(fd, connect, sizeof connect);
    int alen = th_read_type(fd, 0x20, ack, sizeof ack, TH_WAIT_MS);
    assert_int_equal(ack[3], 0x00);
    size_t at = th_v5_prop(ack, (size_t)alen, 4, 0x27);
    if (at != 0)
        assert_memory_equal(ack + at, "\x00\x00\x04\x00", 4);
    th_try_send(fd, buf, n);
    th_expect_disconnect_v5(fd, 0x95, TH_WAIT_MS);
    th_close(fd);
    others_are_unaffected(t);
}

static void packet_before_connect_closes(th_ctx_t *t)
{
    /* MQTT-3.1.0-1: a PUBLISH as the first packet. */
    static const unsigned char pub[] = {0x30, 0x05, 0x00, 0x01, 't', 'h', 'i'};
    int fd = th_connect(t->port);
    th_try_send(fd, pub, sizeof pub);
    th_expect_closed(fd, TH_WAIT_MS);
    th_close(fd);
    others_are_unaffected(t);
}

static void second_connect_closes_v311(th_ctx_t *t)
{
    static const unsigned char again[] = {
        0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c,
        0x00, 0x04, 'b', 'a', 'd', '4'};
    v311_offence_closes(t, again, sizeof again);
}

static void second_connect_gets_0x82_on_v5(th_ctx_t *t)
{
    /* MQTT-3.1.0-2: a second CONNECT is a Protocol Error. */
    static const unsigned char again[] = {
        0x10, 0x11, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3c,
        0x00, 0x00, 0x04, 'b', 'a', 'd', '5'};
    v5_offence_disconnects(t, again, sizeof again, 0x82);
}

static void invalid_utf8_topic_closes_v311(th_ctx_t *t)
{
    /* MQTT-1.5.3-1: ill-formed UTF-8 (c3 28) -> close. */
    static const unsigned char bad[] = {
        0x30, 0x06, 0x00, 0x02, 0xc3, 0x28, 'h', 'i'};
    v311_offence_closes(t, bad, sizeof bad);
}

static void invalid_utf8_topic_gets_0x81_on_v5(th_ctx_t *t)
{
    /* MQTT-1.5.4-1: ill-formed UTF-8 makes a Malformed Packet. */
    static const unsigned char bad[] = {
        0x30, 0x07, 0x00, 0x02, 0xc3, 0x28, 0x00, 'h', 'i'};
    v5_offence_disconnects(t, bad, sizeof bad, 0x81);
}

static void wildcard_in_published_topic_closes_v311(th_ctx_t *t)
{
    /* MQTT-3.3.2-2: no wildcards in a Topic Name. */
    static const unsigned char bad[] = {
        0x30, 0x07, 0x00, 0x03, 'a', '/', '#', 'h', 'i'};
    v311_offence_closes(t, bad, sizeof bad);
}

static void wildcard_in_published_topic_gets_0x90_on_v5(th_ctx_t *t)
{
    /* MQTT-3.3.2-2; v5 reason 0x90 Topic Name invalid. */
    static const unsigned char bad[] = {
        0x30, 0x08, 0x00, 0x03, 'a', '/', '#', 0x00, 'h', 'i'};
    v5_offence_disconnects(t, bad, sizeof bad, 0x90);
}

static void qos_3_publish_closes_v311(th_ctx_t *t)
{
    /* MQTT-3.3.1-4: both QoS bits set. */
    static const unsigned char bad[] = {
        0x36, 0x07, 0x00, 0x01, 't', 0x00, 0x01, 'h', 'i'};
    v311_offence_closes(t, bad, sizeof bad);
}

static void qos_3_publish_gets_0x81_on_v5(th_ctx_t *t)
{
    /* MQTT-3.3.1-4 (v5): QoS 3 is a Malformed Packet. */
    static const unsigned char bad[] = {
        0x36, 0x08, 0x00, 0x01, 't', 0x00, 0x01, 0x00, 'h', 'i'};
    v5_offence_disconnects(t, bad, sizeof bad, 0x81);
}

static void long_lived_subscriber_survived_everything(th_ctx_t *t)
{
    th_mosq_t pub;
    th_mosq_open(&pub, t->port, "last-pub", 5, true);
    th_mosq_publish(&pub, "ok/last", "end", 3, 1, false);
    th_mosq_wait_msgs(&g_long, &pub, ++g_long_expect, TH_WAIT_MS);
    assert_string_equal(g_long.msgs[g_long_expect - 1].topic, "ok/last");
    assert_false(g_long.disconnected);
    th_mosq_close(&pub);
}

/* Starts the shared broker and the long-lived subscriber. */
static int group_setup(void **state)
{
    th_broker_start(&g_broker, "{\"max_packet_size\": 1024}\n");
    th_share_broker(&g_broker);
    th_mosq_open(&g_long, g_broker.port, "long-lived", 4, true);
    th_mosq_subscribe(&g_long, "ok/#", 0);
    return 0;
}

/* Stops them; fails unless the broker exits 0. */
static int group_teardown(void **state)
{
    th_mosq_close(&g_long);
    th_share_broker(NULL);
    int rc = th_broker_stop(&g_broker);
    if (rc != 0)
        print_error("ERROR: broker exited with status %d\n", rc);
    return rc == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_TEST(five_byte_remaining_length_closes_v311),
        TH_TEST(five_byte_remaining_length_gets_0x81_on_v5),
        TH_TEST(oversize_packet_closes_v311),
        TH_TEST(oversize_packet_gets_0x95_on_v5),
        TH_TEST(packet_before_connect_closes),
        TH_TEST(second_connect_closes_v311),
        TH_TEST(second_connect_gets_0x82_on_v5),
        TH_TEST(invalid_utf8_topic_closes_v311),
        TH_TEST(invalid_utf8_topic_gets_0x81_on_v5),
        TH_TEST(wildcard_in_published_topic_closes_v311),
        TH_TEST(wildcard_in_published_topic_gets_0x90_on_v5),
        TH_TEST(qos_3_publish_closes_v311),
        TH_TEST(qos_3_publish_gets_0x81_on_v5),
        TH_TEST(long_lived_subscriber_survived_everything),
    };
    return cmocka_run_group_tests_name("integration/11-bad-input", tests,
                                       group_setup, group_teardown);
}

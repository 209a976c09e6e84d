/*
 * 01-connect - the CONNECT handshake against a real broker, byte by byte.
 *
 * Scenario: a raw TCP client opens a connection and sends CONNECT packets
 * of each protocol version the broker speaks (3.1 "MQIsdp", 3.1.1, 5.0)
 * and checks the exact CONNACK. Then it breaks the rules one at a time:
 * wrong protocol name, unsupported level, reserved flag, empty client id
 * without a clean session, a second CONNECT, a packet before CONNECT, and
 * silence past the keep-alive. Each time the broker must refuse or close
 * as the spec says. PINGREQ and DISCONNECT round out the session basics.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/integration/harness/harness.h"

/* CONNECT v3.1.1, client id "c1", clean session, keep alive 60. */
static const unsigned char CONNECT_311[] = {
    0x10, 0x0e, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c,
    0x00, 0x02, 'c', '1'};
static const unsigned char CONNACK_OK[] = {0x20, 0x02, 0x00, 0x00};

/* CONNECT v5, client id "c5", clean start, keep alive 60, no properties. */
static const unsigned char CONNECT_5[] = {
    0x10, 0x0f, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3c,
    0x00, 0x00, 0x02, 'c', '5'};

/* Reads a v5 CONNACK, checks type, reason 0 and a well-formed property
 * list that ends exactly at the packet end; returns the packet length. */
static int read_v5_connack_ok(int fd, unsigned char *buf, size_t cap)
{
    int n = th_read_type(fd, 0x20, buf, cap, TH_WAIT_MS);
    assert_int_equal(buf[0], 0x20);
    assert_true(n >= 5);           /* flags, reason, property length */
    assert_int_equal(buf[2] & 0xfe, 0x00); /* reserved ack flag bits */
    assert_int_equal(buf[3], 0x00);        /* reason: success */
    th_v5_prop(buf, (size_t)n, 4, 0x00);   /* walks and checks the list */
    return n;
}

static void v311_connect_gets_exact_connack(th_ctx_t *t)
{
    int fd = th_connect(t->port);
    th_send(fd, CONNECT_311, sizeof CONNECT_311);
    th_expect(fd, CONNACK_OK, sizeof CONNACK_OK, TH_WAIT_MS);
    th_close(fd);
}

static void v31_mqisdp_connect_is_accepted(th_ctx_t *t)
{
    static const unsigned char connect31[] = {
        0x10, 0x10, 0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', 0x03, 0x02,
        0x00, 0x3c, 0x00, 0x02, 'c', '3'};
    int fd = th_connect(t->port);
    th_send(fd, connect31, sizeof connect31);
    th_expect(fd, CONNACK_OK, sizeof CONNACK_OK, TH_WAIT_MS);
    th_close(fd);
}

static void v5_connect_gets_connack_with_reason_0_and_properties(th_ctx_t *t)
{
    unsigned char buf[512];
    int fd = th_connect(t->port);
    th_send(fd, CONNECT_5, sizeof CONNECT_5);
    read_v5_connack_ok(fd, buf, sizeof buf);
    th_close(fd);
}

static void bad_protocol_name_closes_the_connection(th_ctx_t *t)
{
    /* MQTT-3.1.2-1: protocol name "MQTX" is not MQTT: close, no CONNACK. */
    static const unsigned char bad[] = {
        0x10, 0x0e, 0x00, 0x04, 'M', 'Q', 'T', 'X', 0x04, 0x02, 0x00, 0x3c,
        0x00, 0x02, 'c', '1'};
    int fd = th_connect(t->port);
    th_send(fd, bad, sizeof bad);
    th_expect_closed(fd, TH_WAIT_MS);
    th_close(fd);
}

static void unsupported_protocol_level_gets_connack_1_then_close(th_ctx_t *t)
{
    /* MQTT-3.1.2-2: level 6 -> CONNACK 0x01 (unacceptable protocol level). */
    static const unsigned char lvl6[] = {
        0x10, 0x0e, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x06, 0x02, 0x00, 0x3c,
        0x00, 0x02, 'c', '1'};
    static const unsigned char connack1[] = {0x20, 0x02, 0x00, 0x01};
    int fd = th_connect(t->port);
    th_send(fd, lvl6, sizeof lvl6);
    th_expect(fd, connack1, sizeof connack1, TH_WAIT_MS);
    th_expect_closed(fd, TH_WAIT_MS);
    th_close(fd);
}

static void reserved_connect_flag_closes_the_connection(th_ctx_t *t)
{
    /* MQTT-3.1.2-3: connect flags bit 0 is reserved and must be 0. */
    static const unsigned char bad[] = {
        0x10, 0x0e, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x03, 0x00, 0x3c,
        0x00, 0x02, 'c', '1'};
    int fd = th_connect(t->port);
    th_send(fd, bad, sizeof bad);
    th_expect_closed(fd, TH_WAIT_MS);
    th_close(fd);
}

static void v311_empty_client_id_with_clean_session_is_accepted(th_ctx_t *t)
{
    /* MQTT-3.1.3-6: zero-length id, clean session 1: server assigns one. */
    static const unsigned char empty[] = {
        0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c,
        0x00, 0x00};
    int fd = th_connect(t->port);
    th_send(fd, empty, sizeof empty);
    th_expect(fd, CONNACK_OK, sizeof CONNACK_OK, TH_WAIT_MS);
    th_close(fd);
}

static void v311_empty_client_id_without_clean_session_gets_rc_2(th_ctx_t *t)
{
    /* MQTT-3.1.3-8: zero-length id, clean session 0: CONNACK 0x02, close. */
    static const unsigned char empty[] = {
        0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x00, 0x00, 0x3c,
        0x00, 0x00};
    static const unsigned char connack2[] = {0x20, 0x02, 0x00, 0x02};
    int fd = th_connect(t->port);
    th_send(fd, empty, sizeof empty);
    th_expect(fd, connack2, sizeof connack2, TH_WAIT_MS);
    th_expect_closed(fd, TH_WAIT_MS);
    th_close(fd);
}

static void v5_empty_client_id_gets_assigned_client_identifier(th_ctx_t *t)
{
    /* MQTT-3.2.2-16: the CONNACK carries Assigned Client Identifier 0x12. */
    static const unsigned char empty[] = {
        0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3c,
        0x00, 0x00, 0x00};
    unsigned char buf[512];
    int fd = th_connect(t->port);
    th_send(fd, empty, sizeof empty);
    int n = read_v5_connack_ok(fd, buf, sizeof buf);
    size_t at = th_v5_prop(buf, (size_t)n, 4, 0x12);
    assert_true(at > 0);
    assert_true(((size_t)buf[at] << 8 | buf[at + 1]) > 0); /* non-empty id */
    th_close(fd);
}

static void pingreq_gets_pingresp(th_ctx_t *t)
{
    static const unsigned char pingreq[] = {0xc0, 0x00};
    static const unsigned char pingresp[] = {0xd0, 0x00};
    int fd = th_connect(t->port);
    th_send(fd, CONNECT_311, sizeof CONNECT_311);
    th_expect(fd, CONNACK_OK, sizeof CONNACK_OK, TH_WAIT_MS);
    th_send(fd, pingreq, sizeof pingreq);
    th_expect(fd, pingresp, sizeof pingresp, TH_WAIT_MS);
    th_send(fd, pingreq, sizeof pingreq);
    th_expect(fd, pingresp, sizeof pingresp, TH_WAIT_MS);
    th_close(fd);
}

static void silent_client_is_closed_after_one_and_a_half_keep_alives(th_ctx_t *t)
{
    /* MQTT-3.1.2-24: keep alive 1 s; nothing sent -> closed after 1.5 s.
     * We allow up to 4 s for scheduling, but not less than 1 s. */
    static const unsigned char ka1[] = {
        0x10, 0x0e, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x01,
        0x00, 0x02, 'k', 'a'};
    int fd = th_connect(t->port);
    th_send(fd, ka1, sizeof ka1);
    th_expect(fd, CONNACK_OK, sizeof CONNACK_OK, TH_WAIT_MS);
    int64_t t0 = th_now_ms();
    th_expect_closed(fd, 4000);
    int64_t elapsed = th_now_ms() - t0;
    assert_true(elapsed >= 1000);
    th_close(fd);
}

static void disconnect_makes_the_broker_close(th_ctx_t *t)
{
    static const unsigned char disconnect[] = {0xe0, 0x00};
    int fd = th_connect(t->port);
    th_send(fd, CONNECT_311, sizeof CONNECT_311);
    th_expect(fd, CONNACK_OK, sizeof CONNACK_OK, TH_WAIT_MS);
    th_send(fd, disconnect, sizeof disconnect);
    th_expect_closed(fd, TH_WAIT_MS);
    th_close(fd);
}

static void v311_second_connect_closes_the_connection(th_ctx_t *t)
{
    /* MQTT-3.1.0-2: a second CONNECT is a protocol violation. */
    int fd = th_connect(t->port);
    th_send(fd, CONNECT_311, sizeof CONNECT_311);
    th_expect(fd, CONNACK_OK, sizeof CONNACK_OK, TH_WAIT_MS);
    th_send(fd, CONNECT_311, sizeof CONNECT_311);
    th_expect_closed(fd, TH_WAIT_MS);
    th_close(fd);
}

static void v5_second_connect_gets_disconnect_0x82(th_ctx_t *t)
{
    /* MQTT-3.1.0-2, v5: DISCONNECT with 0x82 Protocol Error, then close. */
    unsigned char buf[512];
    int fd = th_connect(t->port);
    th_send(fd, CONNECT_5, sizeof CONNECT_5);
    read_v5_connack_ok(fd, buf, sizeof buf);
    th_send(fd, CONNECT_5, sizeof CONNECT_5);
    th_expect_disconnect_v5(fd, 0x82, TH_WAIT_MS);
    th_close(fd);
}

static void packet_before_connect_closes_the_connection(th_ctx_t *t)
{
    /* MQTT-3.1.0-1: the first packet must be CONNECT. */
    static const unsigned char pingreq[] = {0xc0, 0x00};
    int fd = th_connect(t->port);
    th_send(fd, pingreq, sizeof pingreq);
    th_expect_closed(fd, TH_WAIT_MS);
    th_close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_TEST(v311_connect_gets_exact_connack),
        TH_TEST(v31_mqisdp_connect_is_accepted),
        TH_TEST(v5_connect_gets_connack_with_reason_0_and_properties),
        TH_TEST(bad_protocol_name_closes_the_connection),
        TH_TEST(unsupported_protocol_level_gets_connack_1_then_close),
        TH_TEST(reserved_connect_flag_closes_the_connection),
        TH_TEST(v311_empty_client_id_with_clean_session_is_accepted),
        TH_TEST(v311_empty_client_id_without_clean_session_gets_rc_2),
        TH_TEST(v5_empty_client_id_gets_assigned_client_identifier),
        TH_TEST(pingreq_gets_pingresp),
        TH_TEST(silent_client_is_closed_after_one_and_a_half_keep_alives),
        TH_TEST(disconnect_makes_the_broker_close),
        TH_TEST(v311_second_connect_closes_the_connection),
        TH_TEST(v5_second_connect_gets_disconnect_0x82),
        TH_TEST(packet_before_connect_closes_the_connection),
    };
    return cmocka_run_group_tests_name("integration/01-connect", tests, NULL,
                                       NULL);
}

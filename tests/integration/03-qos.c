/*
 * 03-qos - QoS 1 and QoS 2 handshakes in both directions, both versions.
 *
 * Scenario: a raw publisher sends QoS 1 and QoS 2 PUBLISH packets and must
 * get PUBACK, or PUBREC then (after its PUBREL) PUBCOMP, with its own
 * packet id. A raw subscriber with a QoS 2 subscription must receive each
 * message at the publisher's QoS with a broker-chosen non-zero packet id
 * and complete the flow from its side (PUBACK; PUBREC -> PUBREL ->
 * PUBCOMP). A QoS 2 PUBLISH resent with DUP before PUBREL is delivered
 * once (MQTT-4.3.3). Last, 1,000 QoS 1 messages between libmosquitto
 * clients arrive complete and in order (MQTT-4.6.0).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tests/integration/harness/harness.h"

/* Reads a v5 acknowledgement (PUBACK, PUBREC, PUBREL or PUBCOMP: `first`
 * is the exact byte 0) and checks its packet id and reason code; a
 * remaining length of 2 means reason 0 (MQTT 5.0 section 3.4.2.1). */
static void expect_v5_ack(int fd, uint8_t first, uint16_t id, uint8_t reason)
{
    unsigned char buf[256];
    int n = th_read_packet(fd, buf, sizeof buf, TH_WAIT_MS);
    assert_int_equal(buf[0], first);
    assert_true(n >= 4 && buf[1] >= 2);
    assert_int_equal((buf[2] << 8) | buf[3], id);
    assert_int_equal(buf[1] >= 3 ? buf[4] : 0x00, reason);
    if (buf[1] >= 4)
        th_v5_prop(buf, (size_t)n, 5, 0x00); /* well-formed properties */
}

/* Reads a PUBLISH of `len` bytes and checks it equals want except the
 * 2-byte packet id at offset id_at, which must be non-zero; returns it. */
static uint16_t expect_publish_any_id(int fd, const unsigned char *want,
                                      size_t len, size_t id_at)
{
    unsigned char buf[256];
    int n = th_read_packet(fd, buf, sizeof buf, TH_WAIT_MS);
    if ((size_t)n != len || memcmp(buf, want, id_at) != 0 ||
        memcmp(buf + id_at + 2, want + id_at + 2, len - id_at - 2) != 0) {
        th_hexdump("expected (id aside)", want, len);
        th_hexdump("received", buf, (size_t)n);
        fail_msg("PUBLISH differs");
    }
    uint16_t id = (uint16_t)(buf[id_at] << 8 | buf[id_at + 1]);
    assert_int_not_equal(id, 0); /* MQTT-2.3.1-1 */
    return id;
}

/* Sends a 4-byte acknowledgement `first` id. */
static void send_ack(int fd, uint8_t first, uint16_t id)
{
    unsigned char ack[] = {first, 0x02, (unsigned char)(id >> 8),
                           (unsigned char)id};
    th_send(fd, ack, sizeof ack);
}

/* Opens subscriber "sub" with "q" at QoS 2 and publisher "pub". */
static void open_pair(th_ctx_t *t, int version, int *sub, int *pub)
{
    static const unsigned char sub311[] = {
        0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'q', 0x02};
    static const unsigned char suback311[] = {0x90, 0x03, 0x00, 0x01, 0x02};
    static const unsigned char sub5[] = {
        0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 'q', 0x02};
    static const unsigned char suback5[] = {
        0x90, 0x04, 0x00, 0x01, 0x00, 0x02};
    *sub = th_mqtt_open(t->port, version, "sub", 0x02, 60);
    *pub = th_mqtt_open(t->port, version, "pub", 0x02, 60);
    if (version == 4) {
        th_send(*sub, sub311, sizeof sub311);
        th_expect(*sub, suback311, sizeof suback311, TH_WAIT_MS);
    } else {
        th_send(*sub, sub5, sizeof sub5);
        th_expect(*sub, suback5, sizeof suback5, TH_WAIT_MS);
    }
}

static void v311_qos1_round_trip_acks_both_ways(th_ctx_t *t)
{
    static const unsigned char pub_q1[] = {
        0x32, 0x07, 0x00, 0x01, 'q', 0x00, 0x05, 'h', 'i'};
    static const unsigned char puback5[] = {0x40, 0x02, 0x00, 0x05};
    int sub, pub;
    open_pair(t, 4, &sub, &pub);
    th_send(pub, pub_q1, sizeof pub_q1);
    th_expect(pub, puback5, sizeof puback5, TH_WAIT_MS); /* MQTT-4.3.2-2 */
    uint16_t id = expect_publish_any_id(sub, pub_q1, sizeof pub_q1, 5);
    send_ack(sub, 0x40, id);
    th_expect_silence(sub, 300); /* acked: no resend */
    th_close(pub);
    th_close(sub);
}

static void v311_qos2_round_trip_completes_both_ways(th_ctx_t *t)
{
    static const unsigned char pub_q2[] = {
        0x34, 0x07, 0x00, 0x01, 'q', 0x00, 0x06, 'h', 'i'};
    static const unsigned char pubrec6[] = {0x50, 0x02, 0x00, 0x06};
    static const unsigned char pubrel6[] = {0x62, 0x02, 0x00, 0x06};
    static const unsigned char pubcomp6[] = {0x70, 0x02, 0x00, 0x06};
    int sub, pub;
    open_pair(t, 4, &sub, &pub);
    th_send(pub, pub_q2, sizeof pub_q2);
    th_expect(pub, pubrec6, sizeof pubrec6, TH_WAIT_MS);
    th_send(pub, pubrel6, sizeof pubrel6);
    th_expect(pub, pubcomp6, sizeof pubcomp6, TH_WAIT_MS);
    uint16_t id = expect_publish_any_id(sub, pub_q2, sizeof pub_q2, 5);
    send_ack(sub, 0x50, id);
    unsigned char pubrel[] = {0x62, 0x02, (unsigned char)(id >> 8),
                              (unsigned char)id};
    th_expect(sub, pubrel, sizeof pubrel, TH_WAIT_MS); /* MQTT-4.3.3-4 */
    send_ack(sub, 0x70, id);
    th_expect_silence(sub, 300);
    th_close(pub);
    th_close(sub);
}

static void v5_qos1_round_trip_acks_both_ways(th_ctx_t *t)
{
    static const unsigned char pub_q1[] = {
        0x32, 0x08, 0x00, 0x01, 'q', 0x00, 0x05, 0x00, 'h', 'i'};
    int sub, pub;
    open_pair(t, 5, &sub, &pub);
    th_send(pub, pub_q1, sizeof pub_q1);
    expect_v5_ack(pub, 0x40, 5, 0x00);
    uint16_t id = expect_publish_any_id(sub, pub_q1, sizeof pub_q1, 5);
    send_ack(sub, 0x40, id);
    th_expect_silence(sub, 300);
    th_close(pub);
    th_close(sub);
}

static void v5_qos2_round_trip_completes_both_ways(th_ctx_t *t)
{
    static const unsigned char pub_q2[] = {
        0x34, 0x08, 0x00, 0x01, 'q', 0x00, 0x06, 0x00, 'h', 'i'};
    static const unsigned char pubrel6[] = {0x62, 0x02, 0x00, 0x06};
    int sub, pub;
    open_pair(t, 5, &sub, &pub);
    th_send(pub, pub_q2, sizeof pub_q2);
    expect_v5_ack(pub, 0x50, 6, 0x00);
    th_send(pub, pubrel6, sizeof pubrel6);
    expect_v5_ack(pub, 0x70, 6, 0x00);
    uint16_t id = expect_publish_any_id(sub, pub_q2, sizeof pub_q2, 5);
    send_ack(sub, 0x50, id);
    expect_v5_ack(sub, 0x62, id, 0x00);
    send_ack(sub, 0x70, id);
    th_expect_silence(sub, 300);
    th_close(pub);
    th_close(sub);
}

static void qos2_publish_resent_with_dup_before_pubrel_is_delivered_once(th_ctx_t *t)
{
    /* MQTT-4.3.3-2 (method B): until PUBREL, a resend is the same message. */
    static const unsigned char sub_q0[] = {
        0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'q', 0x00};
    static const unsigned char suback[] = {0x90, 0x03, 0x00, 0x01, 0x00};
    static const unsigned char pub_q2[] = {
        0x34, 0x07, 0x00, 0x01, 'q', 0x00, 0x09, 'h', 'i'};
    static const unsigned char pub_q2_dup[] = {
        0x3c, 0x07, 0x00, 0x01, 'q', 0x00, 0x09, 'h', 'i'};
    static const unsigned char pubrec9[] = {0x50, 0x02, 0x00, 0x09};
    static const unsigned char pubrel9[] = {0x62, 0x02, 0x00, 0x09};
    static const unsigned char pubcomp9[] = {0x70, 0x02, 0x00, 0x09};
    static const unsigned char got_q0[] = {0x30, 0x05, 0x00, 0x01, 'q', 'h', 'i'};
    int sub = th_mqtt_open(t->port, 4, "sub", 0x02, 60);
    int pub = th_mqtt_open(t->port, 4, "pub", 0x02, 60);
    th_send(sub, sub_q0, sizeof sub_q0);
    th_expect(sub, suback, sizeof suback, TH_WAIT_MS);
    th_send(pub, pub_q2, sizeof pub_q2);
    th_expect(pub, pubrec9, sizeof pubrec9, TH_WAIT_MS);
    th_send(pub, pub_q2_dup, sizeof pub_q2_dup);
    th_expect(pub, pubrec9, sizeof pubrec9, TH_WAIT_MS);
    th_send(pub, pubrel9, sizeof pubrel9);
    th_expect(pub, pubcomp9, sizeof pubcomp9, TH_WAIT_MS);
    th_expect(sub, got_q0, sizeof got_q0, TH_WAIT_MS);
    th_expect_silence(sub, 500); /* exactly once */
    th_close(pub);
    th_close(sub);
}

static void thousand_qos1_messages_arrive_complete_and_in_order(th_ctx_t *t)
{
    enum { N = 1000 };
    th_mosq_t sub, pub;
    char payload[16];
    th_mosq_open(&sub, t->port, "ordsub", 4, true);
    th_mosq_open(&pub, t->port, "ordpub", 4, true);
    th_mosq_subscribe(&sub, "ord/#", 1);
    for (int i = 0; i < N; i++) {
        int len = snprintf(payload, sizeof payload, "%d", i);
        th_mosq_publish(&pub, "ord/x", payload, len, 1, false);
    }
    th_mosq_wait_msgs(&sub, &pub, N, 60000);
    th_mosq_wait_published(&pub, &sub, N, 10000);
    th_mosq_loop_for(&sub, 200); /* catch duplicates, if any */
    assert_int_equal(sub.n_msgs, N);
    for (int i = 0; i < N; i++) {
        snprintf(payload, sizeof payload, "%d", i);
        assert_string_equal((char *)sub.msgs[i].payload, payload);
        assert_int_equal(sub.msgs[i].qos, 1);
    }
    th_mosq_close(&pub);
    th_mosq_close(&sub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_TEST(v311_qos1_round_trip_acks_both_ways),
        TH_TEST(v311_qos2_round_trip_completes_both_ways),
        TH_TEST(v5_qos1_round_trip_acks_both_ways),
        TH_TEST(v5_qos2_round_trip_completes_both_ways),
        TH_TEST(qos2_publish_resent_with_dup_before_pubrel_is_delivered_once),
        TH_TEST(thousand_qos1_messages_arrive_complete_and_in_order),
    };
    return cmocka_run_group_tests_name("integration/03-qos", tests, NULL,
                                       NULL);
}

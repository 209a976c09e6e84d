/*
 * 06-will - the Will Message: when it is sent, and with which QoS/retain.
 *
 * Scenario: a raw subscriber listens on "w/t". A second raw client
 * connects with a Will ("w/t" = "bye") and then vanishes: its socket is
 * closed without DISCONNECT, or it stays silent past its 1 s keep-alive.
 * Either way the broker must publish the Will (MQTT-3.1.2-8). Will Retain
 * makes it a retained message a later subscriber receives; Will QoS 1 is
 * delivered at QoS 1. After a normal DISCONNECT the Will is discarded
 * (MQTT-3.1.2-10) and nothing arrives within 500 ms.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/integration/harness/harness.h"

/* CONNECT v3.1.1 "w1", will "w/t" = "bye", keep alive 60; byte 9 is the
 * connect flags: 0x06 = will + clean session. */
#define CONNECT_WILL(flags, ka)                                              \
    {0x10, 0x18, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, (flags), 0x00, (ka),  \
     0x00, 0x02, 'w', '1', 0x00, 0x03, 'w', '/', 't', 0x00, 0x03, 'b', 'y', \
     'e'}
static const unsigned char CONNACK_OK[] = {0x20, 0x02, 0x00, 0x00};

/* SUBSCRIBE id 1 "w/t" QoS 0 / QoS 1 and their SUBACKs. */
static const unsigned char SUB_W_Q0[] = {
    0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 'w', '/', 't', 0x00};
static const unsigned char SUBACK_Q0[] = {0x90, 0x03, 0x00, 0x01, 0x00};
static const unsigned char SUB_W_Q1[] = {
    0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 'w', '/', 't', 0x01};
static const unsigned char SUBACK_Q1[] = {0x90, 0x03, 0x00, 0x01, 0x01};

/* The Will as a QoS 0 subscriber receives it: live (retain 0) or as a
 * retained message on subscribe (retain 1). */
static const unsigned char WILL_Q0[] = {
    0x30, 0x08, 0x00, 0x03, 'w', '/', 't', 'b', 'y', 'e'};
static const unsigned char WILL_Q0_RETAINED[] = {
    0x31, 0x08, 0x00, 0x03, 'w', '/', 't', 'b', 'y', 'e'};

/* Opens a subscriber on "w/t" at QoS 0 or 1. */
static int open_sub(th_ctx_t *t, const char *id, int qos)
{
    int fd = th_mqtt_open(t->port, 4, id, 0x02, 60);
    th_send(fd, qos ? SUB_W_Q1 : SUB_W_Q0, sizeof SUB_W_Q0);
    th_expect(fd, qos ? SUBACK_Q1 : SUBACK_Q0, sizeof SUBACK_Q0, TH_WAIT_MS);
    return fd;
}

/* Connects the will client with CONNECT bytes pkt. */
static int open_will_client(th_ctx_t *t, const unsigned char *pkt, size_t len)
{
    int fd = th_connect(t->port);
    th_send(fd, pkt, len);
    th_expect(fd, CONNACK_OK, sizeof CONNACK_OK, TH_WAIT_MS);
    return fd;
}

static void will_is_sent_when_the_socket_closes_without_disconnect(th_ctx_t *t)
{
    static const unsigned char connect[] = CONNECT_WILL(0x06, 0x3c);
    int sub = open_sub(t, "sub", 0);
    int w = open_will_client(t, connect, sizeof connect);
    th_close(w);
    th_expect(sub, WILL_Q0, sizeof WILL_Q0, TH_WAIT_MS);
    th_close(sub);
}

static void v5_will_is_sent_when_the_socket_closes(th_ctx_t *t)
{
    /* v5 CONNECT "w5": empty CONNECT and Will property lists. */
    static const unsigned char connect[] = {
        0x10, 0x1a, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x06, 0x00, 0x3c,
        0x00, 0x00, 0x02, 'w', '5', 0x00, 0x00, 0x03, 'w', '/', 't',
        0x00, 0x03, 'b', 'y', 'e'};
    unsigned char buf[64];
    int sub = open_sub(t, "sub", 0);
    int w = th_connect(t->port);
    th_send(w, connect, sizeof connect);
    th_read_type(w, 0x20, buf, sizeof buf, TH_WAIT_MS);
    assert_int_equal(buf[3], 0x00);
    th_close(w);
    th_expect(sub, WILL_Q0, sizeof WILL_Q0, TH_WAIT_MS);
    th_close(sub);
}

static void will_is_sent_when_keep_alive_expires(th_ctx_t *t)
{
    static const unsigned char connect[] = CONNECT_WILL(0x06, 0x01);
    int sub = open_sub(t, "sub", 0);
    int w = open_will_client(t, connect, sizeof connect);
    int64_t t0 = th_now_ms();
    th_expect(sub, WILL_Q0, sizeof WILL_Q0, 4000); /* 1.5 x 1 s, MQTT-3.1.2-24 */
    assert_true(th_now_ms() - t0 >= 1000);
    th_expect_closed(w, TH_WAIT_MS);
    th_close(w);
    th_close(sub);
}

static void will_retain_makes_it_retained_for_later_subscribers(th_ctx_t *t)
{
    static const unsigned char connect[] = CONNECT_WILL(0x26, 0x3c);
    int sub = open_sub(t, "sub", 0);
    int w = open_will_client(t, connect, sizeof connect);
    th_close(w);
    th_expect(sub, WILL_Q0, sizeof WILL_Q0, TH_WAIT_MS); /* live: retain 0 */
    int later = open_sub(t, "later", 0);
    th_expect(later, WILL_Q0_RETAINED, sizeof WILL_Q0_RETAINED, TH_WAIT_MS);
    th_close(later);
    th_close(sub);
}

static void will_qos_1_is_delivered_at_qos_1(th_ctx_t *t)
{
    static const unsigned char connect[] = CONNECT_WILL(0x0e, 0x3c);
    unsigned char buf[64];
    int sub = open_sub(t, "sub", 1);
    int w = open_will_client(t, connect, sizeof connect);
    th_close(w);
    int n = th_read_packet(sub, buf, sizeof buf, TH_WAIT_MS);
    assert_int_equal(n, 12);
    assert_memory_equal(buf, "\x32\x0a\x00\x03w/t", 7);
    assert_memory_equal(buf + 9, "bye", 3);
    uint16_t id = th_publish_id(buf);
    assert_int_not_equal(id, 0);
    unsigned char ack[] = {0x40, 0x02, (unsigned char)(id >> 8),
                           (unsigned char)id};
    th_send(sub, ack, sizeof ack);
    th_expect_silence(sub, 300);
    th_close(sub);
}

static void will_is_not_sent_after_a_normal_disconnect(th_ctx_t *t)
{
    static const unsigned char connect[] = CONNECT_WILL(0x06, 0x3c);
    static const unsigned char disconnect[] = {0xe0, 0x00};
    int sub = open_sub(t, "sub", 0);
    int w = open_will_client(t, connect, sizeof connect);
    th_send(w, disconnect, sizeof disconnect);
    th_expect_closed(w, TH_WAIT_MS);
    th_close(w);
    th_expect_silence(sub, 500);
    th_close(sub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_TEST(will_is_sent_when_the_socket_closes_without_disconnect),
        TH_TEST(v5_will_is_sent_when_the_socket_closes),
        TH_TEST(will_is_sent_when_keep_alive_expires),
        TH_TEST(will_retain_makes_it_retained_for_later_subscribers),
        TH_TEST(will_qos_1_is_delivered_at_qos_1),
        TH_TEST(will_is_not_sent_after_a_normal_disconnect),
    };
    return cmocka_run_group_tests_name("integration/06-will", tests, NULL,
                                       NULL);
}

/*
 * 05-sessions - session takeover, persistent sessions and clean sessions.
 *
 * Scenario: a second connection with a client id already connected takes
 * the session over and the first connection is closed (v5: DISCONNECT
 * 0x8E first). A v3.1.1 client with clean session 0 subscribes at QoS 1
 * and disconnects; QoS 1 messages published while it is away are waiting
 * when it reconnects, with session present = 1 in the CONNACK. A QoS 1
 * message it received but never acknowledged is sent again after the
 * reconnect with the DUP flag, the same packet id and payload (MQTT-4.4.0-1).
 * A connection with clean session 1 discards the stored session.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "tests/integration/harness/harness.h"

/* CONNECT v3.1.1 "ps", clean session 0, keep alive 60, and CONNACKs with
 * session present 0 and 1 (MQTT-3.2.2-2, 3.2.2-3). */
static const unsigned char CONNECT_PS[] = {
    0x10, 0x0e, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x00, 0x00, 0x3c,
    0x00, 0x02, 'p', 's'};
static const unsigned char CONNACK_SP0[] = {0x20, 0x02, 0x00, 0x00};
static const unsigned char CONNACK_SP1[] = {0x20, 0x02, 0x01, 0x00};

/* SUBSCRIBE id 1 to "q" at QoS 1 and its SUBACK. */
static const unsigned char SUB_Q1[] = {
    0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'q', 0x01};
static const unsigned char SUBACK_Q1[] = {0x90, 0x03, 0x00, 0x01, 0x01};

static const unsigned char DISCONNECT[] = {0xe0, 0x00};
static const unsigned char PINGREQ[] = {0xc0, 0x00};
static const unsigned char PINGRESP[] = {0xd0, 0x00};

/* Connects "ps" with clean session 0 and checks the session-present flag. */
static int connect_ps(th_ctx_t *t, const unsigned char *connack)
{
    int fd = th_connect(t->port);
    th_send(fd, CONNECT_PS, sizeof CONNECT_PS);
    th_expect(fd, connack, 4, TH_WAIT_MS);
    return fd;
}

/* Sends DISCONNECT and waits for the broker to close. */
static void disconnect(int fd)
{
    th_send(fd, DISCONNECT, sizeof DISCONNECT);
    th_expect_closed(fd, TH_WAIT_MS);
    th_close(fd);
}

/* Publishes QoS 1 "q" with a 2-byte payload and id from a clean client. */
static void publish_q1(th_ctx_t *t, const char *payload, uint8_t id)
{
    unsigned char pkt[] = {0x32, 0x07, 0x00, 0x01, 'q', 0x00, id,
                           (unsigned char)payload[0], (unsigned char)payload[1]};
    unsigned char puback[] = {0x40, 0x02, 0x00, id};
    int pub = th_mqtt_open(t->port, 4, "pub", 0x02, 60);
    th_send(pub, pkt, sizeof pkt);
    th_expect(pub, puback, sizeof puback, TH_WAIT_MS);
    disconnect(pub);
}

/* Reads a QoS 1 PUBLISH on "q"; checks byte 0 (0x32, or 0x3a with DUP)
 * and the payload; returns the packet id. */
static uint16_t expect_q1(int fd, uint8_t first, const char *payload)
{
    unsigned char buf[64];
    int n = th_read_packet(fd, buf, sizeof buf, TH_WAIT_MS);
    if (n != 9 || buf[0] != first || memcmp(buf + 1, "\x07\x00\x01q", 4) != 0 ||
        memcmp(buf + 7, payload, 2) != 0) {
        th_hexdump("received", buf, (size_t)n);
        fail_msg("expected PUBLISH 0x%02x q \"%s\"", first, payload);
    }
    return th_publish_id(buf);
}

/* Sends PUBACK for id. */
static void puback(int fd, uint16_t id)
{
    unsigned char ack[] = {0x40, 0x02, (unsigned char)(id >> 8),
                           (unsigned char)id};
    th_send(fd, ack, sizeof ack);
}

static void v311_same_client_id_takes_over_and_closes_the_first(th_ctx_t *t)
{
    /* MQTT-3.1.4-2: the existing connection is closed. */
    int first = th_mqtt_open(t->port, 4, "dup", 0x02, 60);
    int second = th_mqtt_open(t->port, 4, "dup", 0x02, 60);
    th_expect_closed(first, TH_WAIT_MS);
    th_send(second, PINGREQ, sizeof PINGREQ);
    th_expect(second, PINGRESP, sizeof PINGRESP, TH_WAIT_MS);
    th_close(second);
    th_close(first);
}

static void v5_takeover_sends_disconnect_0x8e_to_the_first(th_ctx_t *t)
{
    int first = th_mqtt_open(t->port, 5, "dup5", 0x02, 60);
    int second = th_mqtt_open(t->port, 5, "dup5", 0x02, 60);
    th_expect_disconnect_v5(first, 0x8e, TH_WAIT_MS);
    th_send(second, PINGREQ, sizeof PINGREQ);
    th_expect(second, PINGRESP, sizeof PINGRESP, TH_WAIT_MS);
    th_close(second);
    th_close(first);
}

static void persistent_session_gets_messages_queued_while_away(th_ctx_t *t)
{
    int fd = connect_ps(t, CONNACK_SP0);
    th_send(fd, SUB_Q1, sizeof SUB_Q1);
    th_expect(fd, SUBACK_Q1, sizeof SUBACK_Q1, TH_WAIT_MS);
    disconnect(fd);
    publish_q1(t, "m1", 1);
    publish_q1(t, "m2", 2);
    fd = connect_ps(t, CONNACK_SP1);
    puback(fd, expect_q1(fd, 0x32, "m1")); /* first delivery: DUP 0 */
    puback(fd, expect_q1(fd, 0x32, "m2"));
    th_expect_silence(fd, 300);
    disconnect(fd);
}

static void unacked_qos1_is_resent_with_dup_after_reconnect(th_ctx_t *t)
{
    int fd = connect_ps(t, CONNACK_SP0);
    th_send(fd, SUB_Q1, sizeof SUB_Q1);
    th_expect(fd, SUBACK_Q1, sizeof SUBACK_Q1, TH_WAIT_MS);
    publish_q1(t, "m1", 1);
    uint16_t id = expect_q1(fd, 0x32, "m1"); /* not acknowledged */
    disconnect(fd);
    fd = connect_ps(t, CONNACK_SP1);
    uint16_t again = expect_q1(fd, 0x3a, "m1"); /* DUP set: MQTT-3.3.1-1 */
    assert_int_equal(again, id);                /* same id: MQTT-4.4.0-1 */
    puback(fd, again);
    th_expect_silence(fd, 300);
    disconnect(fd);
    fd = connect_ps(t, CONNACK_SP1); /* acked now: not sent a third time */
    th_expect_silence(fd, 300);
    disconnect(fd);
}

static void clean_session_discards_the_stored_session(th_ctx_t *t)
{
    /* MQTT-3.1.2-6: clean session 1 discards any previous session and
     * its own ends with the connection; session present 0 (3.2.2-1). */
    static const unsigned char connect_clean[] = {
        0x10, 0x0e, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c,
        0x00, 0x02, 'p', 's'};
    int fd = connect_ps(t, CONNACK_SP0);
    th_send(fd, SUB_Q1, sizeof SUB_Q1);
    th_expect(fd, SUBACK_Q1, sizeof SUBACK_Q1, TH_WAIT_MS);
    disconnect(fd);
    fd = th_connect(t->port);
    th_send(fd, connect_clean, sizeof connect_clean);
    th_expect(fd, CONNACK_SP0, sizeof CONNACK_SP0, TH_WAIT_MS);
    disconnect(fd);
    publish_q1(t, "m1", 1);
    fd = connect_ps(t, CONNACK_SP0); /* no session left to resume */
    th_expect_silence(fd, 500);      /* and no subscription */
    disconnect(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_TEST(v311_same_client_id_takes_over_and_closes_the_first),
        TH_TEST(v5_takeover_sends_disconnect_0x8e_to_the_first),
        TH_TEST(persistent_session_gets_messages_queued_while_away),
        TH_TEST(unacked_qos1_is_resent_with_dup_after_reconnect),
        TH_TEST(clean_session_discards_the_stored_session),
    };
    return cmocka_run_group_tests_name("integration/05-sessions", tests, NULL,
                                       NULL);
}

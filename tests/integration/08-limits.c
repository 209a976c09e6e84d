/*
 * 08-limits - per-client and per-broker limits, and v5 subscription options.
 *
 * Scenario: a v5 client's Maximum Packet Size makes the broker skip only
 * the deliveries too big for that client (MQTT-3.1.2-25); an offline
 * session's queue stops at max_queued_messages and says so once in the log;
 * a v5 Session Expiry Interval ends a session after it runs out (or at the
 * disconnect when absent) and keeps it before; shared subscriptions are
 * granted, a malformed one refused per filter; Retain Handling 1 and 2 (MQTT-3.3.1-10/11) and
 * Subscription Identifiers (MQTT-3.3.4-3/4 and docs/protocol.md: one copy
 * carrying every matching id) behave as specified; a client PUBLISH with a
 * Subscription Identifier is a protocol error (MQTT-3.3.4-6); and
 * max_topic_levels refuses deeper topic names and filters. A client not
 * yet connected may send a first packet of max_connect_size bytes at most.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tests/integration/harness/harness.h"

/* ---- helpers ------------------------------------------------------------- */

/* Sends a CONNECT and reads the CONNACK, which must be a success (v3 or
 * v5); returns the fd and stores the session-present flag. */
static int connect_raw(th_ctx_t *t, const unsigned char *connect, size_t len,
                       int *session_present)
{
    unsigned char buf[256];
    int fd = th_connect(t->port);
    th_send(fd, connect, len);
    int n = th_read_type(fd, 0x20, buf, sizeof buf, TH_WAIT_MS);
    if (n < 4 || buf[3] != 0x00 || (buf[2] & 0xfe) != 0) {
        th_hexdump("CONNACK", buf, (size_t)n);
        fail_msg("CONNECT refused or CONNACK malformed");
    }
    *session_present = buf[2];
    return fd;
}

/* Sends DISCONNECT (reason 0) and waits for the broker to close. */
static void disconnect(int fd)
{
    th_send(fd, "\xe0\x00", 2);
    th_expect_closed(fd, TH_WAIT_MS);
    th_close(fd);
}

/* Sends PUBACK for id. */
static void puback(int fd, uint16_t id)
{
    unsigned char ack[] = {0x40, 0x02, (unsigned char)(id >> 8),
                           (unsigned char)id};
    th_send(fd, ack, sizeof ack);
}

/* Sends one packet from a fresh v3.1.1 publisher "pub" and, for QoS 1
 * (ack not NULL), waits for that 4-byte PUBACK; then disconnects. */
static void publish_from(th_ctx_t *t, const unsigned char *pkt, size_t len,
                         const unsigned char *ack)
{
    int pub = th_mqtt_open(t->port, 4, "pub", 0x02, 60);
    th_send(pub, pkt, len);
    if (ack != NULL)
        th_expect(pub, ack, 4, TH_WAIT_MS);
    disconnect(pub);
}

/* ---- maximum packet size ------------------------------------------------- */

static void v5_maximum_packet_size_drops_oversize_delivery_for_that_client_only(th_ctx_t *t)
{
    /* CONNECT v5 "mp", clean start, Maximum Packet Size 64. */
    static const unsigned char connect_mp[] = {
        0x10, 0x14, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3c,
        0x05, 0x27, 0x00, 0x00, 0x00, 0x40, 0x00, 0x02, 'm', 'p'};
    static const unsigned char sub5[] = {
        0x82, 0x09, 0x00, 0x01, 0x00, 0x00, 0x03, 'm', '/', '#', 0x00};
    static const unsigned char suback5[] = {0x90, 0x04, 0x00, 0x01, 0x00, 0x00};
    static const unsigned char sub4[] = {
        0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 'm', '/', '#', 0x00};
    static const unsigned char suback4[] = {0x90, 0x03, 0x00, 0x01, 0x00};
    /* "m/a" = 200 x 'B' (remaining length 205 = cd 01), then "small". */
    unsigned char big[3 + 5 + 200] = {0x30, 0xcd, 0x01, 0x00, 0x03, 'm', '/', 'a'};
    static const unsigned char small[] = {
        0x30, 0x0a, 0x00, 0x03, 'm', '/', 'a', 's', 'm', 'a', 'l', 'l'};
    static const unsigned char small5[] = {
        0x30, 0x0b, 0x00, 0x03, 'm', '/', 'a', 0x00, 's', 'm', 'a', 'l', 'l'};
    int sp;
    memset(big + 8, 'B', 200);
    int lim = connect_raw(t, connect_mp, sizeof connect_mp, &sp);
    int all = th_mqtt_open(t->port, 4, "all", 0x02, 60);
    th_send(lim, sub5, sizeof sub5);
    th_expect(lim, suback5, sizeof suback5, TH_WAIT_MS);
    th_send(all, sub4, sizeof sub4);
    th_expect(all, suback4, sizeof suback4, TH_WAIT_MS);
    int pub = th_mqtt_open(t->port, 4, "pub", 0x02, 60);
    th_send(pub, big, sizeof big);
    th_send(pub, small, sizeof small);
    th_expect(all, big, sizeof big, TH_WAIT_MS);
    th_expect(all, small, sizeof small, TH_WAIT_MS);
    th_expect(lim, small5, sizeof small5, TH_WAIT_MS); /* big one skipped */
    th_expect_silence(lim, 300);
    th_expect_silence(all, 300);
    th_close(pub);
    th_close(all);
    th_close(lim);
}

/* A persistent v5 session holds an unacknowledged 200-byte QoS 1 message
 * in a window of one (max_inflight 1). The client comes back with Maximum
 * Packet Size 64: the message must not be resent (MQTT-3.1.2-25), and it
 * must not keep its window place either - the next small message arrives. */
static void resumed_session_with_smaller_maximum_packet_size_frees_the_window(th_ctx_t *t)
{
    /* CONNECT v5 "rs", clean start 0, Session Expiry 60. */
    static const unsigned char connect1[] = {
        0x10, 0x14, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x00, 0x00, 0x3c,
        0x05, 0x11, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x02, 'r', 's'};
    /* The same, plus Maximum Packet Size 64. */
    static const unsigned char connect2[] = {
        0x10, 0x19, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x00, 0x00, 0x3c,
        0x0a, 0x11, 0x00, 0x00, 0x00, 0x3c, 0x27, 0x00, 0x00, 0x00, 0x40,
        0x00, 0x02, 'r', 's'};
    static const unsigned char sub[] = {
        0x82, 0x09, 0x00, 0x01, 0x00, 0x00, 0x03, 'r', '/', '#', 0x01};
    static const unsigned char suback[] = {0x90, 0x04, 0x00, 0x01, 0x00, 0x01};
    /* QoS 1 "r/a", id 1, 200 x 'B' (remaining length 207 = cf 01). */
    unsigned char big[3 + 7 + 200] = {0x32, 0xcf, 0x01, 0x00, 0x03, 'r', '/', 'a', 0x00, 0x01};
    static const unsigned char puback1[] = {0x40, 0x02, 0x00, 0x01};
    static const unsigned char small[] = {
        0x32, 0x09, 0x00, 0x03, 'r', '/', 'a', 0x00, 0x02, 'o', 'k'};
    static const unsigned char puback2[] = {0x40, 0x02, 0x00, 0x02};
    unsigned char buf[512];
    int sp;
    memset(big + 10, 'B', 200);
    int fd = connect_raw(t, connect1, sizeof connect1, &sp);
    th_send(fd, sub, sizeof sub);
    th_expect(fd, suback, sizeof suback, TH_WAIT_MS);
    int pub = th_mqtt_open(t->port, 4, "pub", 0x02, 60);
    th_send(pub, big, sizeof big);
    th_expect(pub, puback1, sizeof puback1, TH_WAIT_MS);
    int n = th_read_packet(fd, buf, sizeof buf, TH_WAIT_MS);
    assert_true(n > 200 && (buf[0] & 0xf0) == 0x30); /* not acknowledged */
    th_close(fd);
    fd = connect_raw(t, connect2, sizeof connect2, &sp);
    assert_int_equal(sp, 1);
    th_send(pub, small, sizeof small);
    th_expect(pub, puback2, sizeof puback2, TH_WAIT_MS);
    n = th_read_packet(fd, buf, sizeof buf, TH_WAIT_MS);
    if (n < 0 || (buf[0] & 0xf6) != 0x32 || buf[n - 2] != 'o' || buf[n - 1] != 'k') {
        th_hexdump("expected the small QoS 1 PUBLISH", buf, n > 0 ? (size_t)n : 0);
        fail_msg("the oversize message still holds the window of one");
    }
    th_close(pub);
    th_close(fd);
}

/* ---- offline queue ------------------------------------------------------- */

static void offline_queue_overflow_is_bounded(th_ctx_t *t)
{
    /* CONNECT v3.1.1 "qo", clean session 0; SUBSCRIBE "q/#" QoS 1. */
    static const unsigned char connect_qo[] = {
        0x10, 0x0e, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x00, 0x00, 0x3c,
        0x00, 0x02, 'q', 'o'};
    static const unsigned char sub[] = {
        0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 'q', '/', '#', 0x01};
    static const unsigned char suback[] = {0x90, 0x03, 0x00, 0x01, 0x01};
    unsigned char buf[64];
    int sp;
    int fd = connect_raw(t, connect_qo, sizeof connect_qo, &sp);
    assert_int_equal(sp, 0);
    th_send(fd, sub, sizeof sub);
    th_expect(fd, suback, sizeof suback, TH_WAIT_MS);
    disconnect(fd);
    int pub = th_mqtt_open(t->port, 4, "pub", 0x02, 60);
    for (int i = 0; i < 10; i++) {
        unsigned char pkt[] = {0x32, 0x08, 0x00, 0x03, 'q', '/', '1', 0x00,
                               (unsigned char)(i + 1), (unsigned char)('0' + i)};
        unsigned char ack[] = {0x40, 0x02, 0x00, (unsigned char)(i + 1)};
        th_send(pub, pkt, sizeof pkt);
        th_expect(pub, ack, sizeof ack, TH_WAIT_MS); /* acked even if full */
    }
    disconnect(pub);
    fd = connect_raw(t, connect_qo, sizeof connect_qo, &sp);
    assert_int_equal(sp, 1);
    for (int i = 0; i < 5; i++) { /* the first five, in order */
        unsigned char want[] = {0x32, 0x08, 0x00, 0x03, 'q', '/', '1',
                                (unsigned char)('0' + i)};
        int n = th_read_packet(fd, buf, sizeof buf, TH_WAIT_MS);
        if (n != 10 || memcmp(buf, want, 7) != 0 || buf[9] != want[7]) {
            th_hexdump("received", buf, (size_t)n);
            fail_msg("expected queued message %d (\"%c\")", i, want[7]);
        }
        puback(fd, th_publish_id(buf));
    }
    th_expect_silence(fd, 500);
    disconnect(fd);
    char *log = th_broker_stop_log(t->broker);
    int n_full = th_count(log, "queue full");
    const char *stop = strstr(log, "uvmq stopped:");
    const char *qf = stop ? strstr(stop, " queue-full") : NULL;
    unsigned long long dropped = 0;
    bool counted = false; /* the stop line must count the 5 refusals */
    while (qf != NULL && qf > stop && qf[-1] >= '0' && qf[-1] <= '9')
        qf--;
    if (qf != NULL && sscanf(qf, "%llu queue-full", &dropped) == 1)
        counted = dropped == 5;
    free(log);
    if (n_full != 1 || !counted)
        fail_msg("log: %d \"queue full\" lines (want 1), stop line says %llu "
                 "queue-full (want 5)", n_full, dropped);
}

/* ---- session expiry ------------------------------------------------------ */

/* CONNECT v5 "se", clean start 0, with Session Expiry Interval `secs`
 * (property 0x11) or none when secs is 0. */
static int connect_se(th_ctx_t *t, uint8_t secs, int *sp)
{
    unsigned char with[] = {
        0x10, 0x14, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x00, 0x00, 0x3c,
        0x05, 0x11, 0x00, 0x00, 0x00, secs, 0x00, 0x02, 's', 'e'};
    static const unsigned char without[] = {
        0x10, 0x0f, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x00, 0x00, 0x3c,
        0x00, 0x00, 0x02, 's', 'e'};
    return secs ? connect_raw(t, with, sizeof with, sp)
                : connect_raw(t, without, sizeof without, sp);
}

/* SUBSCRIBE v5 id 1 to "se" QoS 0 and its SUBACK. */
static void subscribe_se(int fd)
{
    static const unsigned char sub[] = {
        0x82, 0x08, 0x00, 0x01, 0x00, 0x00, 0x02, 's', 'e', 0x00};
    static const unsigned char suback[] = {0x90, 0x04, 0x00, 0x01, 0x00, 0x00};
    th_send(fd, sub, sizeof sub);
    th_expect(fd, suback, sizeof suback, TH_WAIT_MS);
}

static void v5_session_expiry_ends_the_session(th_ctx_t *t)
{
    static const unsigned char pub[] = {
        0x30, 0x06, 0x00, 0x02, 's', 'e', 'h', 'i'};
    static const unsigned char got[] = {
        0x30, 0x07, 0x00, 0x02, 's', 'e', 0x00, 'h', 'i'};
    int sp;
    int fd = connect_se(t, 1, &sp);
    assert_int_equal(sp, 0);
    subscribe_se(fd);
    disconnect(fd);
    th_sleep_ms(3000); /* 1 s expiry, swept once a second */
    fd = connect_se(t, 60, &sp);
    assert_int_equal(sp, 0); /* expired: MQTT-3.1.2-23 */
    publish_from(t, pub, sizeof pub, NULL);
    th_expect_silence(fd, 300); /* its subscription went with it */
    subscribe_se(fd);
    disconnect(fd);
    th_sleep_ms(500); /* well within the 60 s asked for just now */
    fd = connect_se(t, 60, &sp);
    assert_int_equal(sp, 1);
    publish_from(t, pub, sizeof pub, NULL);
    th_expect(fd, got, sizeof got, TH_WAIT_MS); /* still subscribed */
    disconnect(fd);
}

static void v5_session_expiry_zero_ends_the_session_at_disconnect(th_ctx_t *t)
{
    static const unsigned char pub[] = {
        0x30, 0x06, 0x00, 0x02, 's', 'e', 'h', 'i'};
    int sp;
    int fd = connect_se(t, 0, &sp);
    assert_int_equal(sp, 0);
    subscribe_se(fd);
    disconnect(fd);
    fd = connect_se(t, 0, &sp);
    assert_int_equal(sp, 0); /* MQTT-3.1.2-23: absent = 0, ends at close */
    publish_from(t, pub, sizeof pub, NULL);
    th_expect_silence(fd, 300); /* and its subscription went with it */
    disconnect(fd);
}

/* ---- subscription options ------------------------------------------------ */

/* Shared subscriptions are granted (17-shared tests what they do); one
 * whose group name is empty is an invalid filter (MQTT-4.8.2-1). */
static void shared_subscription_is_granted_and_a_bad_one_refused(th_ctx_t *t)
{
    static const unsigned char sub5[] = {
        0x82, 0x10, 0x00, 0x01, 0x00, 0x00, 0x0a,
        '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'a', 0x00};
    static const unsigned char suback5[] = {0x90, 0x04, 0x00, 0x01, 0x00, 0x00};
    static const unsigned char bad5[] = {
        0x82, 0x0f, 0x00, 0x02, 0x00, 0x00, 0x09,
        '$', 's', 'h', 'a', 'r', 'e', '/', '/', 'a', 0x00};
    static const unsigned char badack5[] = { /* with a Reason String */
        0x90, 0x20, 0x00, 0x02, 0x1c, 0x1f, 0x00, 0x19,
        't', 'o', 'p', 'i', 'c', ' ', 'f', 'i', 'l', 't', 'e', 'r', ' ', 'n', 'o', 't', ' ',
        'a', 'c', 'c', 'e', 'p', 't', 'e', 'd',
        0x8f};
    static const unsigned char sub4[] = {
        0x82, 0x0f, 0x00, 0x01, 0x00, 0x0a,
        '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'a', 0x00};
    static const unsigned char suback4[] = {0x90, 0x03, 0x00, 0x01, 0x00};
    int v5 = th_mqtt_open(t->port, 5, "sh5", 0x02, 60);
    int v4 = th_mqtt_open(t->port, 4, "sh4", 0x02, 60);
    th_send(v5, sub5, sizeof sub5);
    th_expect(v5, suback5, sizeof suback5, TH_WAIT_MS);
    th_send(v5, bad5, sizeof bad5);
    th_expect(v5, badack5, sizeof badack5, TH_WAIT_MS);
    th_send(v4, sub4, sizeof sub4);
    th_expect(v4, suback4, sizeof suback4, TH_WAIT_MS);
    disconnect(v4);
    disconnect(v5);
}

/* SUBSCRIBE v5 `id` to "r/1" with options byte opts, and its SUBACK. */
static void subscribe_r1(int fd, uint8_t id, uint8_t opts)
{
    unsigned char sub[] = {0x82, 0x09, 0x00, id, 0x00, 0x00, 0x03,
                           'r', '/', '1', opts};
    unsigned char suback[] = {0x90, 0x04, 0x00, id, 0x00, 0x00};
    th_send(fd, sub, sizeof sub);
    th_expect(fd, suback, sizeof suback, TH_WAIT_MS);
}

static void retain_handling_2_sends_no_retained_and_1_only_for_new_subscriptions(th_ctx_t *t)
{
    static const unsigned char pub_ret[] = {
        0x33, 0x0a, 0x00, 0x03, 'r', '/', '1', 0x00, 0x01, 'r', 'e', 't'};
    static const unsigned char puback1[] = {0x40, 0x02, 0x00, 0x01};
    static const unsigned char got_ret[] = {
        0x31, 0x09, 0x00, 0x03, 'r', '/', '1', 0x00, 'r', 'e', 't'};
    publish_from(t, pub_ret, sizeof pub_ret, puback1);
    int rh2 = th_mqtt_open(t->port, 5, "rh2", 0x02, 60);
    subscribe_r1(rh2, 1, 0x20); /* Retain Handling 2: never */
    th_expect_silence(rh2, 300);
    int rh1 = th_mqtt_open(t->port, 5, "rh1", 0x02, 60);
    subscribe_r1(rh1, 1, 0x10); /* Retain Handling 1: new subscription */
    th_expect(rh1, got_ret, sizeof got_ret, TH_WAIT_MS);
    subscribe_r1(rh1, 2, 0x10); /* same filter again: not new */
    th_expect_silence(rh1, 300);
    subscribe_r1(rh1, 3, 0x00); /* control: Retain Handling 0 sends it */
    th_expect(rh1, got_ret, sizeof got_ret, TH_WAIT_MS);
    disconnect(rh1);
    disconnect(rh2);
}

static void subscription_identifier_is_delivered(th_ctx_t *t)
{
    static const unsigned char sub7[] = {
        0x82, 0x0b, 0x00, 0x01, 0x02, 0x0b, 0x07, 0x00, 0x03, 's', '/', '#', 0x00};
    static const unsigned char suback7[] = {0x90, 0x04, 0x00, 0x01, 0x00, 0x00};
    static const unsigned char sub9[] = {
        0x82, 0x0b, 0x00, 0x02, 0x02, 0x0b, 0x09, 0x00, 0x03, 's', '/', '+', 0x00};
    static const unsigned char suback9[] = {0x90, 0x04, 0x00, 0x02, 0x00, 0x00};
    static const unsigned char pub[] = {
        0x30, 0x07, 0x00, 0x03, 's', '/', 'x', 'h', 'i'};
    /* One copy: topic, 4 bytes of properties (ids 7 and 9), payload. */
    static const unsigned char head[] = {
        0x30, 0x0c, 0x00, 0x03, 's', '/', 'x', 0x04};
    unsigned char buf[64];
    int fd = th_mqtt_open(t->port, 5, "sid", 0x02, 60);
    th_send(fd, sub7, sizeof sub7);
    th_expect(fd, suback7, sizeof suback7, TH_WAIT_MS);
    th_send(fd, sub9, sizeof sub9);
    th_expect(fd, suback9, sizeof suback9, TH_WAIT_MS);
    publish_from(t, pub, sizeof pub, NULL);
    int n = th_read_packet(fd, buf, sizeof buf, TH_WAIT_MS);
    bool ids_ok = memcmp(buf + 8, "\x0b\x07\x0b\x09", 4) == 0 ||
                  memcmp(buf + 8, "\x0b\x09\x0b\x07", 4) == 0;
    if (n != 14 || memcmp(buf, head, sizeof head) != 0 || !ids_ok ||
        memcmp(buf + 12, "hi", 2) != 0) {
        th_hexdump("received", buf, (size_t)n);
        fail_msg("expected one PUBLISH s/x with Subscription Identifiers 7 "
                 "and 9 (MQTT-3.3.4-4)");
    }
    th_expect_silence(fd, 300); /* once, not once per subscription */
    disconnect(fd);
}

static void publish_with_subscription_identifier_from_client_is_a_protocol_error(th_ctx_t *t)
{
    /* v5 PUBLISH "t" QoS 0 with Subscription Identifier 1. */
    static const unsigned char bad[] = {
        0x30, 0x08, 0x00, 0x01, 't', 0x02, 0x0b, 0x01, 'h', 'i'};
    int fd = th_mqtt_open(t->port, 5, "sidpub", 0x02, 60);
    th_send(fd, bad, sizeof bad);
    th_expect_disconnect_v5(fd, 0x82, TH_WAIT_MS); /* MQTT-3.3.4-6 */
    th_close(fd);
}

/* ---- topic levels -------------------------------------------------------- */

static void too_many_topic_levels_is_refused(th_ctx_t *t)
{
    static const unsigned char sub4lv[] = {
        0x82, 0x0d, 0x00, 0x01, 0x00, 0x00, 0x07,
        'a', '/', 'b', '/', 'c', '/', 'd', 0x00};
    static const unsigned char sub5lv[] = {
        0x82, 0x0f, 0x00, 0x02, 0x00, 0x00, 0x09,
        'a', '/', 'b', '/', 'c', '/', 'd', '/', 'e', 0x00};
    static const unsigned char suback_ok[] = {0x90, 0x04, 0x00, 0x01, 0x00, 0x00};
    static const unsigned char suback_bad[] = { /* with a Reason String */
        0x90, 0x20, 0x00, 0x02, 0x1c, 0x1f, 0x00, 0x19,
        't', 'o', 'p', 'i', 'c', ' ', 'f', 'i', 'l', 't', 'e', 'r', ' ',
        'n', 'o', 't', ' ', 'a', 'c', 'c', 'e', 'p', 't', 'e', 'd',
        0x8f};
    static const unsigned char pub4lv[] = {
        0x30, 0x0b, 0x00, 0x07, 'a', '/', 'b', '/', 'c', '/', 'd', 0x00, 'h'};
    static const unsigned char pub5lv[] = {
        0x30, 0x0d, 0x00, 0x09, 'a', '/', 'b', '/', 'c', '/', 'd', '/', 'e',
        0x00, 'h'};
    int sub = th_mqtt_open(t->port, 5, "lv-sub", 0x02, 60);
    th_send(sub, sub4lv, sizeof sub4lv); /* four levels: allowed */
    th_expect(sub, suback_ok, sizeof suback_ok, TH_WAIT_MS);
    th_send(sub, sub5lv, sizeof sub5lv);
    th_expect(sub, suback_bad, sizeof suback_bad, TH_WAIT_MS);
    int pub = th_mqtt_open(t->port, 5, "lv-pub", 0x02, 60);
    th_send(pub, pub4lv, sizeof pub4lv);
    th_expect(sub, pub4lv, sizeof pub4lv, TH_WAIT_MS);
    th_send(pub, pub5lv, sizeof pub5lv);
    th_expect_disconnect_v5(pub, 0x90, TH_WAIT_MS);
    th_expect_silence(sub, 200);
    th_close(pub);
    disconnect(sub);
}

/* A CONNECT of about 70,000 bytes: a will payload of 40,000 and a
 * password of 30,000 (each field's length is two bytes: 65535 at most). */
static size_t big_connect(unsigned char *pkt, size_t cap, const char *id)
{
    char *payload = malloc(40001), *password = malloc(30001);
    assert_non_null(payload);
    assert_non_null(password);
    memset(payload, 'x', 40000);
    payload[40000] = '\0';
    memset(password, 'y', 30000);
    password[30000] = '\0';
    th_connect_t c = {.version = 4, .client_id = id, .clean = true, .keepalive = 60,
                      .will_topic = "lim/will", .will_payload = payload, .username = "u",
                      .password = password};
    size_t n = th_build_connect(pkt, cap, &c);
    free(payload);
    free(password);
    assert_true(n > 65536 && n < 72000);
    return n;
}

/* A connected client is served: PINGRESP, and a PUBACK for a QoS 1 PUBLISH. */
static void still_served(int fd)
{
    static const unsigned char pingreq[] = {0xc0, 0x00};
    unsigned char buf[64], pkt[64];
    th_send(fd, pingreq, sizeof pingreq);
    th_read_type(fd, 0xd0, buf, sizeof buf, TH_WAIT_MS);
    size_t n = th_build_publish(pkt, sizeof pkt, 4, "lim/t", 1, false, false, 7, "hi", 2);
    th_send(fd, pkt, n);
    th_read_type(fd, 0x40, buf, sizeof buf, TH_WAIT_MS);
}

/* Before its CONNECT is accepted a client may send at most
 * max_connect_size bytes (64 KiB) in its first packet, not
 * max_packet_size (16 MiB): a fixed header announcing 1,000,000 bytes
 * closes the connection at once (the broker reserves nothing for it), and
 * a whole CONNECT of some 70,000 bytes (a large will) is refused the same
 * way; a client connected on the same broker is served meanwhile. */
static void first_packet_is_capped_until_connect(th_ctx_t *t)
{
    static const unsigned char huge[] = {0x10, 0xc0, 0x84, 0x3d}; /* 1,000,000 */
    th_connect_t ok = {.version = 4, .client_id = "lim-ok", .clean = true, .keepalive = 60};
    int good = th_mqtt_connect(t->port, &ok, NULL);
    int fd = th_connect(t->port);
    th_send(fd, huge, sizeof huge);
    th_expect_closed(fd, TH_WAIT_MS);
    th_close(fd);
    still_served(good);
    size_t cap = 72000;
    unsigned char *pkt = malloc(cap);
    assert_non_null(pkt);
    size_t n = big_connect(pkt, cap, "lim-big");
    fd = th_connect(t->port);
    (void)th_try_send(fd, pkt, n); /* the broker may close before the end */
    th_expect_closed(fd, TH_WAIT_MS);
    th_close(fd);
    free(pkt);
    still_served(good);
    disconnect(good);
}

/* With max_connect_size raised, the same 70,000-byte CONNECT is taken. */
static void max_connect_size_admits_a_larger_connect(th_ctx_t *t)
{
    size_t cap = 72000;
    unsigned char *pkt = malloc(cap);
    assert_non_null(pkt);
    size_t n = big_connect(pkt, cap, "lim-big2");
    int session_present = 0;
    int fd = connect_raw(t, pkt, n, &session_present);
    free(pkt);
    still_served(fd);
    disconnect(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_TEST(first_packet_is_capped_until_connect),
        TH_TEST_CFG(max_connect_size_admits_a_larger_connect, "{\"max_connect_size\": 131072}\n"),
        TH_TEST(v5_maximum_packet_size_drops_oversize_delivery_for_that_client_only),
        TH_TEST_CFG(resumed_session_with_smaller_maximum_packet_size_frees_the_window,
                    "{\"max_inflight\": 1}\n"),
        TH_TEST_CFG(offline_queue_overflow_is_bounded,
                 "{\"max_queued_messages\": 5}\n"),
        TH_TEST(v5_session_expiry_ends_the_session),
        TH_TEST(v5_session_expiry_zero_ends_the_session_at_disconnect),
        TH_TEST(shared_subscription_is_granted_and_a_bad_one_refused),
        TH_TEST(retain_handling_2_sends_no_retained_and_1_only_for_new_subscriptions),
        TH_TEST(subscription_identifier_is_delivered),
        TH_TEST(publish_with_subscription_identifier_from_client_is_a_protocol_error),
        TH_TEST_CFG(too_many_topic_levels_is_refused, "{\"max_topic_levels\": 4}\n"),
    };
    return cmocka_run_group_tests_name("integration/08-limits", tests, NULL,
                                       NULL);
}

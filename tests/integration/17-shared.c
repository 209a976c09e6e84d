/*
 * 17-shared - shared subscriptions: "$share/<group>/<filter>" (issue 5).
 *
 * Scenario: MQTT 5.0 and 3.1.1 clients (libmosquitto, and raw sockets
 * where the bytes matter) join groups; a publisher sends numbered
 * messages. Every message reaches exactly one member of each matching
 * group, and every plain subscriber as well. Round robin (the default)
 * hands them out in turn, random spreads them, sticky keeps a publisher's
 * messages on one member. A member that drops its connection with QoS 1
 * messages it never acknowledged (and more queued behind its inflight
 * window) has them delivered to another member; a QoS 2 message already
 * sent stays with its member (MQTT-4.8.2-4/5). No Local on a shared
 * subscription is a Protocol Error (MQTT-3.8.3-4), a new shared
 * subscription gets no retained messages (MQTT 5.0 4.8.2), the granted
 * QoS and Subscription Identifier of the shared subscription apply, and
 * UNSUBSCRIBE leaves the group. A persistent member's shared subscription
 * survives a restart: messages published after it are queued for it.
 * run.sh runs this with 1 and 4 worker loops, so members and publishers
 * also sit on different loops.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <mosquitto.h>

#include "tests/integration/harness/harness.h"
#include "tests/integration/harness/mosq5.h"

#define PKT_CAP 512
#define MAX_MSGS 100

/* ---- libmosquitto helpers --------------------------------------------- */

static int total(th_mosq_t *const *cs, int n)
{
    int sum = 0;
    for (int i = 0; i < n; i++) sum += cs[i]->n_msgs;
    return sum;
}

/* Runs every client's loop until the clients of cs[0..n) hold `want`
 * messages between them, then for settle_ms more (to catch extras). */
static void pump(th_mosq_t *const *cs, int n, th_mosq_t *pub, int want, int settle_ms)
{
    int64_t deadline = th_now_ms() + 10000, settle_end = 0;
    for (;;) {
        int64_t now = th_now_ms();
        if (settle_end == 0 && total(cs, n) >= want) settle_end = now + settle_ms;
        if ((settle_end != 0 && now >= settle_end) || now >= deadline) break;
        for (int i = 0; i < n; i++) mosquitto_loop(cs[i]->m, 1, 1);
        if (pub != NULL) mosquitto_loop(pub->m, 1, 1);
    }
    if (total(cs, n) != want)
        fail_msg("members hold %d messages between them, expected %d", total(cs, n), want);
}

/* The number in a "m<N>" payload. */
static int num(const th_msg_t *m)
{
    return atoi((const char *)m->payload + 1);
}

/* Fails unless messages 0..n-1 are each held exactly once by cs[0..k). */
static void each_once(th_mosq_t *const *cs, int k, int n, const char *what)
{
    int seen[MAX_MSGS] = {0};
    for (int i = 0; i < k; i++)
        for (int j = 0; j < cs[i]->n_msgs; j++) {
            int x = num(&cs[i]->msgs[j]);
            if (x < 0 || x >= n) fail_msg("%s: unexpected payload %s", what,
                                          (const char *)cs[i]->msgs[j].payload);
            seen[x]++;
        }
    for (int x = 0; x < n; x++)
        if (seen[x] != 1) fail_msg("%s: message m%d arrived %d times", what, x, seen[x]);
}

/* Publishes m<first>..m<first+n-1> on topic at qos and waits for acks. */
static void publish_n(th_mosq_t *pub, const char *topic, int first, int n, int qos)
{
    char p[16];
    int before = pub->n_published;
    for (int i = first; i < first + n; i++) {
        int len = snprintf(p, sizeof p, "m%d", i);
        th_mosq_publish(pub, topic, p, len, qos, false);
    }
    th_mosq_wait_published(pub, NULL, before + n, TH_WAIT_MS);
}

/* ---- raw helpers ------------------------------------------------------ */

/* Raw clean v3.1.1 (4) or v5 client. */
static int raw_open(th_ctx_t *t, int version, const char *id, bool clean)
{
    th_connect_t c = {.version = version, .client_id = id, .clean = clean, .keepalive = 60};
    return th_mqtt_connect(t->port, &c, NULL);
}

/* Reads PUBLISH packets until none comes for quiet_ms; acks QoS 1 ones
 * when ack is set. Returns how many arrived. */
static int raw_drain(int fd, int version, bool ack, int quiet_ms)
{
    unsigned char buf[PKT_CAP];
    th_publish_t p;
    int n = 0, len;
    while ((len = th_try_read_packet(fd, buf, sizeof buf, quiet_ms)) > 0) {
        if (!th_parse_publish(buf, (size_t)len, version, &p)) {
            th_hexdump("not a PUBLISH", buf, (size_t)len);
            fail_msg("expected a PUBLISH");
        }
        if (ack && p.qos == 1) th_send_ack(fd, 0x40, p.id);
        n++;
    }
    return n;
}

/* ---- tests -------------------------------------------------------------- */

/* MQTT 5.0 3.2.2.3.13: Shared Subscription Available. */
static void connack_says_shared_subscriptions_are_available(th_ctx_t *t)
{
    unsigned char pkt[256], buf[PKT_CAP];
    th_connect_t c = {.version = 5, .client_id = "avail", .clean = true, .keepalive = 60};
    size_t n = th_build_connect(pkt, sizeof pkt, &c);
    int fd = th_connect(t->port);
    th_send(fd, pkt, n);
    int len = th_read_type(fd, 0x20, buf, sizeof buf, TH_WAIT_MS);
    size_t at = th_v5_prop(buf, (size_t)len, 4, 0x2A);
    assert_true(at > 0);
    assert_int_equal(buf[at], 1);
    th_close(fd);
}

/* Two groups on the same filter and a plain subscriber; members speak
 * v5 and v3.1.1. Round robin with two online members: exactly half each. */
static void one_member_of_each_group_gets_each_message(th_ctx_t *t)
{
    th_mosq_t a, b, c, d, plain, pub;
    th_mosq_open(&a, t->port, "g1-a", 5, true);
    th_mosq_open(&b, t->port, "g1-b", 4, true);
    th_mosq_open(&c, t->port, "g2-c", 4, true);
    th_mosq_open(&d, t->port, "g2-d", 5, true);
    th_mosq_open(&plain, t->port, "plain", 4, true);
    th_mosq_open(&pub, t->port, "pub", 4, true);
    th_mosq_subscribe(&a, "$share/g1/t/#", 1);
    th_mosq_subscribe(&b, "$share/g1/t/#", 1);
    th_mosq_subscribe(&c, "$share/g2/t/+", 1);
    th_mosq_subscribe(&d, "$share/g2/t/+", 1);
    th_mosq_subscribe(&plain, "t/#", 1);
    publish_n(&pub, "t/x", 0, 40, 1);
    th_mosq_t *all[] = {&a, &b, &c, &d, &plain};
    pump(all, 5, &pub, 120, 300);
    th_mosq_t *g1[] = {&a, &b}, *g2[] = {&c, &d}, *pl[] = {&plain};
    each_once(g1, 2, 40, "group g1");
    each_once(g2, 2, 40, "group g2");
    each_once(pl, 1, 40, "plain subscriber");
    assert_int_equal(a.n_msgs, 20); /* round robin */
    assert_int_equal(c.n_msgs, 20);
    for (int i = 0; i < a.n_msgs; i++) assert_int_equal(a.msgs[i].qos, 1);
    th_mosq_close(&a), th_mosq_close(&b), th_mosq_close(&c), th_mosq_close(&d);
    th_mosq_close(&plain), th_mosq_close(&pub);
}

static void round_robin_spreads_evenly(th_ctx_t *t)
{
    th_mosq_t m[3], pub;
    th_mosq_t *all[] = {&m[0], &m[1], &m[2]};
    char id[16];
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "rr-%d", i);
        th_mosq_open(&m[i], t->port, id, i == 1 ? 4 : 5, true);
        th_mosq_subscribe(&m[i], "$share/rr/even", 0);
    }
    th_mosq_open(&pub, t->port, "rr-pub", 5, true);
    publish_n(&pub, "even", 0, 30, 1);
    pump(all, 3, &pub, 30, 300);
    each_once(all, 3, 30, "group rr");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(m[i].n_msgs, 10);
        assert_int_equal(m[i].msgs[0].qos, 0); /* granted QoS 0 */
        th_mosq_close(&m[i]);
    }
    th_mosq_close(&pub);
}

static void random_gives_each_message_to_one_member(th_ctx_t *t)
{
    th_mosq_t m[3], pub;
    th_mosq_t *all[] = {&m[0], &m[1], &m[2]};
    char id[16];
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "rnd-%d", i);
        th_mosq_open(&m[i], t->port, id, 5, true);
        th_mosq_subscribe(&m[i], "$share/rnd/r", 1);
    }
    th_mosq_open(&pub, t->port, "rnd-pub", 5, true);
    publish_n(&pub, "r", 0, 60, 1);
    pump(all, 3, &pub, 60, 300);
    each_once(all, 3, 60, "group rnd");
    /* one member getting none of 60 happens with probability ~1e-10 */
    for (int i = 0; i < 3; i++) {
        assert_true(m[i].n_msgs > 0);
        th_mosq_close(&m[i]);
    }
    th_mosq_close(&pub);
}

/* The member holding all of one publisher's messages, or -1. */
static int holder_of(th_mosq_t *const *ms, int n, char who)
{
    int at = -1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < ms[i]->n_msgs; j++) {
            if (ms[i]->msgs[j].payload[0] != who) continue;
            if (at >= 0 && at != i) return -1;
            at = i;
        }
    return at;
}

static void sticky_keeps_a_publisher_on_one_member(th_ctx_t *t)
{
    th_mosq_t m[3], p1, p2;
    th_mosq_t *all[] = {&m[0], &m[1], &m[2]};
    char id[16], p[16];
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "st-%d", i);
        th_mosq_open(&m[i], t->port, id, i == 2 ? 4 : 5, true);
        th_mosq_subscribe(&m[i], "$share/st/s/#", 1);
    }
    th_mosq_open(&p1, t->port, "sticky-publisher-one", 5, true);
    th_mosq_open(&p2, t->port, "sticky-publisher-two", 4, true);
    for (int i = 0; i < 20; i++) {
        int len = snprintf(p, sizeof p, "a%d", i);
        th_mosq_publish(&p1, "s/1", p, len, 1, false);
        len = snprintf(p, sizeof p, "b%d", i);
        th_mosq_publish(&p2, "s/2", p, len, 1, false);
    }
    th_mosq_wait_published(&p1, &p2, 20, TH_WAIT_MS);
    th_mosq_wait_published(&p2, &p1, 20, TH_WAIT_MS);
    pump(all, 3, NULL, 40, 300);
    if (holder_of(all, 3, 'a') < 0) fail_msg("publisher one's messages went to several members");
    if (holder_of(all, 3, 'b') < 0) fail_msg("publisher two's messages went to several members");
    for (int i = 0; i < 3; i++) th_mosq_close(&m[i]);
    th_mosq_close(&p1), th_mosq_close(&p2);
}

/* A raw v3.1.1 member takes 10 QoS 1 messages (4 sent: max_inflight 4,
 * 6 queued) and never acknowledges; when its connection drops, the other
 * member (v5) gets all 10. */
static void unacked_messages_of_a_dropped_member_go_to_another(th_ctx_t *t)
{
    int r = raw_open(t, 4, "silent", true);
    th_mqtt_subscribe(r, 4, 1, "$share/w/q", 1);
    th_mosq_t pub, other;
    th_mosq_open(&pub, t->port, "w-pub", 4, true);
    publish_n(&pub, "q", 0, 10, 1);
    assert_int_equal(raw_drain(r, 4, false, 300), 4); /* its window; no PUBACK */
    th_mosq_open(&other, t->port, "w-other", 5, true);
    th_mosq_subscribe(&other, "$share/w/q", 1);
    th_mosq_loop_for(&other, 200);
    assert_int_equal(other.n_msgs, 0); /* the first member is still there */
    th_close(r);
    th_mosq_t *all[] = {&other};
    pump(all, 1, NULL, 10, 300);
    each_once(all, 1, 10, "the other member");
    publish_n(&pub, "q", 10, 5, 1); /* the group goes on with one member */
    pump(all, 1, &pub, 15, 200);
    th_mosq_close(&other), th_mosq_close(&pub);
}

/* The same for a persistent v5 member (Session Expiry 300 s): its
 * unacknowledged messages go to the other member at the disconnect, and
 * when it resumes its session nothing of them is resent to it. */
static void a_persistent_member_hands_over_at_disconnect_too(th_ctx_t *t)
{
    th_connect_t c = {.version = 5, .client_id = "pv-member", .clean = true, .keepalive = 60,
                      .session_expiry = 300};
    int r = th_mqtt_connect(t->port, &c, NULL);
    th_mqtt_subscribe(r, 5, 1, "$share/pv/q", 1);
    th_mosq_t pub, other;
    th_mosq_open(&pub, t->port, "pv-pub", 5, true);
    publish_n(&pub, "q", 0, 3, 1);
    assert_int_equal(raw_drain(r, 5, false, 300), 3);
    th_mosq_open(&other, t->port, "pv-other", 4, true);
    th_mosq_subscribe(&other, "$share/pv/q", 1);
    th_close(r);
    th_mosq_t *all[] = {&other};
    pump(all, 1, NULL, 3, 300);
    each_once(all, 1, 3, "the other member");
    c.clean = false;
    bool present = false;
    r = th_mqtt_connect(t->port, &c, &present);
    assert_true(present);
    th_expect_silence(r, 300); /* nothing left to resend */
    th_mqtt_disconnect(r);
    th_mosq_close(&other), th_mosq_close(&pub);
}

/* Churn: two libmosquitto members stay while a raw member joins, takes
 * what it is given without ever acknowledging, and drops its connection,
 * six times over, with 40 QoS 1 messages published each time. Whatever
 * reached the raw member, queued or sent, and whatever was on its way to
 * it from another loop, ends with the two that stay: between them they
 * hold every message (duplicates allowed: QoS 1). */
static void churning_member_loses_no_qos1_message(th_ctx_t *t)
{
    enum { ROUNDS = 6, PER = 40 };
    th_mosq_t a, b, pub;
    th_mosq_open(&a, t->port, "ch-a", 4, true);
    th_mosq_open(&b, t->port, "ch-b", 5, true);
    th_mosq_subscribe(&a, "$share/ch/c", 1);
    th_mosq_subscribe(&b, "$share/ch/c", 1);
    th_mosq_open(&pub, t->port, "ch-pub", 4, true);
    char id[16];
    for (int r = 0; r < ROUNDS; r++) {
        snprintf(id, sizeof id, "ch-raw-%d", r);
        int c = raw_open(t, 4, id, true);
        th_mqtt_subscribe(c, 4, 1, "$share/ch/c", 1);
        char p[16];
        for (int i = r * PER; i < (r + 1) * PER; i++) {
            int len = snprintf(p, sizeof p, "m%d", i);
            th_mosq_publish(&pub, "c", p, len, 1, false);
        }
        /* the members that stay keep acknowledging meanwhile */
        int64_t end = th_now_ms() + TH_WAIT_MS;
        while (pub.n_published < (r + 1) * PER && th_now_ms() < end) {
            mosquitto_loop(pub.m, 1, 1);
            mosquitto_loop(a.m, 1, 1);
            mosquitto_loop(b.m, 1, 1);
        }
        assert_int_equal(pub.n_published, (r + 1) * PER);
        raw_drain(c, 4, false, 20); /* some, never acknowledged */
        th_close(c);
    }
    int seen[ROUNDS * PER] = {0}, missing = ROUNDS * PER;
    int64_t end = th_now_ms() + 10000;
    int done_a = 0, done_b = 0;
    while (missing > 0 && th_now_ms() < end) {
        mosquitto_loop(a.m, 1, 1);
        mosquitto_loop(b.m, 1, 1);
        for (; done_a < a.n_msgs; done_a++)
            if (seen[num(&a.msgs[done_a])]++ == 0) missing--;
        for (; done_b < b.n_msgs; done_b++)
            if (seen[num(&b.msgs[done_b])]++ == 0) missing--;
    }
    for (int i = 0; i < ROUNDS * PER && missing > 0; i++)
        if (seen[i] == 0) fail_msg("message m%d reached neither member (%d missing)", i, missing);
    th_mosq_close(&a), th_mosq_close(&b), th_mosq_close(&pub);
}

/* A QoS 2 PUBLISH already sent to a member that drops its connection
 * before PUBREC is not given to another member (MQTT-4.8.2-4/5). */
static void a_sent_qos2_message_stays_with_its_member(th_ctx_t *t)
{
    unsigned char buf[PKT_CAP];
    int r = raw_open(t, 5, "q2-silent", true);
    th_mqtt_subscribe(r, 5, 1, "$share/w2/q2", 2);
    th_mosq_t pub, other;
    th_mosq_open(&pub, t->port, "w2-pub", 5, true);
    publish_n(&pub, "q2", 0, 1, 2);
    int len = th_read_type(r, 0x30, buf, sizeof buf, TH_WAIT_MS);
    assert_int_equal((buf[0] >> 1) & 3, 2);
    (void)len;
    th_mosq_open(&other, t->port, "w2-other", 5, true);
    th_mosq_subscribe(&other, "$share/w2/q2", 2);
    th_close(r);
    th_mosq_loop_for(&other, 500);
    assert_int_equal(other.n_msgs, 0);
    publish_n(&pub, "q2", 1, 1, 2); /* the next one reaches it */
    th_mosq_t *all[] = {&other};
    pump(all, 1, &pub, 1, 100);
    th_mosq_close(&other), th_mosq_close(&pub);
}

/* SUBSCRIBE id 2, no properties, "$share/g/n" with No Local + QoS 1. */
static const unsigned char SUB_NO_LOCAL[] = {
    0x82, 0x10, 0x00, 0x02, 0x00, 0x00, 0x0a, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'n',
    0x05};

static void no_local_on_a_shared_subscription_is_a_protocol_error(th_ctx_t *t)
{
    int fd = raw_open(t, 5, "nl", true);
    th_send(fd, SUB_NO_LOCAL, sizeof SUB_NO_LOCAL);
    th_expect_disconnect_v5(fd, 0x82, TH_WAIT_MS); /* MQTT-3.8.3-4 */
    th_close(fd);
    /* the broker goes on: a shared subscription without it works */
    fd = raw_open(t, 5, "nl2", true);
    th_mqtt_subscribe(fd, 5, 1, "$share/g/n", 1);
    th_mqtt_disconnect(fd);
}

/* PUBLISH QoS 1 id 1 retain "r/1" payload "kept", v5. */
static const unsigned char PUB_RETAINED_5[] = {
    0x33, 0x0c, 0x00, 0x03, 'r', '/', '1', 0x00, 0x01, 0x00, 'k', 'e', 'p', 't'};

static void a_shared_subscribe_gets_no_retained_messages(th_ctx_t *t)
{
    unsigned char buf[PKT_CAP];
    int pub = raw_open(t, 5, "ret-pub", true);
    th_send(pub, PUB_RETAINED_5, sizeof PUB_RETAINED_5);
    th_expect_ack(pub, 0x40, 1, TH_WAIT_MS); /* stored before anyone subscribes */
    int plain = raw_open(t, 5, "ret-plain", true);
    th_mqtt_subscribe(plain, 5, 1, "r/#", 0); /* the retained message is there */
    th_read_type(plain, 0x30, buf, sizeof buf, TH_WAIT_MS);
    assert_int_equal(buf[0], 0x31);
    int sh = raw_open(t, 5, "ret-shared", true);
    th_mqtt_subscribe(sh, 5, 1, "$share/g/r/#", 0);
    th_expect_silence(sh, 500); /* MQTT 5.0 4.8.2 */
    int v3 = raw_open(t, 4, "ret-v3", true);
    th_mqtt_subscribe(v3, 4, 1, "$share/h/r/+", 0);
    th_expect_silence(v3, 300);
    th_mqtt_disconnect(sh), th_mqtt_disconnect(v3), th_mqtt_disconnect(plain);
    th_mqtt_disconnect(pub);
}

/* SUBSCRIBE id 1, Subscription Identifier 7, "$share/g/s" QoS 0. */
static const unsigned char SUB_ID7_Q0[] = {
    0x82, 0x12, 0x00, 0x01, 0x02, 0x0b, 0x07, 0x00, 0x0a, '$', 's', 'h', 'a', 'r', 'e', '/',
    'g', '/', 's', 0x00};
static const unsigned char SUBACK_1_Q0_5[] = {0x90, 0x04, 0x00, 0x01, 0x00, 0x00};
/* PUBLISH QoS 1 id 9 "s" payload "x", v5. */
static const unsigned char PUB_S_Q1[] = {0x32, 0x07, 0x00, 0x01, 's', 0x00, 0x09, 0x00, 'x'};

/* The member's granted QoS (0 < 1 published) and Subscription Identifier
 * apply to what the group gives it (MQTT-4.8.2-3). */
static void granted_qos_and_subscription_id_apply(th_ctx_t *t)
{
    unsigned char buf[PKT_CAP];
    int sub = raw_open(t, 5, "sid", true);
    th_send(sub, SUB_ID7_Q0, sizeof SUB_ID7_Q0);
    th_expect(sub, SUBACK_1_Q0_5, sizeof SUBACK_1_Q0_5, TH_WAIT_MS);
    int pub = raw_open(t, 5, "sid-pub", true);
    th_send(pub, PUB_S_Q1, sizeof PUB_S_Q1);
    assert_int_equal(th_expect_ack(pub, 0x40, 9, TH_WAIT_MS), 0x00); /* matched */
    int len = th_read_type(sub, 0x30, buf, sizeof buf, TH_WAIT_MS);
    assert_int_equal(buf[0], 0x30); /* QoS 0, retain 0 */
    /* 30 len | 00 01 's' | props */
    size_t at = th_v5_prop(buf, (size_t)len, th_header_len(buf) + 3, 0x0b);
    assert_true(at > 0);
    assert_int_equal(buf[at], 7);
    th_expect_silence(sub, 200);
    th_mqtt_disconnect(sub), th_mqtt_disconnect(pub);
}

/* UNSUBSCRIBE id 3 "$share/u/t", v5, and its UNSUBACKs. */
static const unsigned char UNSUB_U[] = {
    0xa2, 0x0f, 0x00, 0x03, 0x00, 0x00, 0x0a, '$', 's', 'h', 'a', 'r', 'e', '/', 'u', '/', 't'};
static const unsigned char UNSUBACK_3_OK[] = {0xb0, 0x04, 0x00, 0x03, 0x00, 0x00};
static const unsigned char UNSUBACK_3_NONE[] = { /* with a Reason String */
    0xb0, 0x1e, 0x00, 0x03, 0x1a, 0x1f, 0x00, 0x17, 'n', 'o', ' ', 's', 'u', 'b', 's', 'c', 'r',
    'i', 'p', 't', 'i', 'o', 'n', ' ', 'e', 'x', 'i', 's', 't', 'e', 'd', 0x11};

static void unsubscribe_leaves_the_group(th_ctx_t *t)
{
    int gone = raw_open(t, 5, "u-gone", true);
    th_mqtt_subscribe(gone, 5, 1, "$share/u/t", 1);
    th_mosq_t stay, pub;
    th_mosq_open(&stay, t->port, "u-stay", 4, true);
    th_mosq_subscribe(&stay, "$share/u/t", 1);
    th_send(gone, UNSUB_U, sizeof UNSUB_U);
    th_expect(gone, UNSUBACK_3_OK, sizeof UNSUBACK_3_OK, TH_WAIT_MS);
    th_send(gone, UNSUB_U, sizeof UNSUB_U);
    th_expect(gone, UNSUBACK_3_NONE, sizeof UNSUBACK_3_NONE, TH_WAIT_MS);
    th_mosq_open(&pub, t->port, "u-pub", 5, true);
    publish_n(&pub, "t", 0, 10, 1);
    th_mosq_t *all[] = {&stay};
    pump(all, 1, &pub, 10, 200);
    each_once(all, 1, 10, "the member that stayed");
    th_expect_silence(gone, 200);
    th_mqtt_disconnect(gone);
    th_mosq_close(&stay), th_mosq_close(&pub);
}

/* PUBLISH QoS 1 id n "p" payload "x", v5. */
static void publish_p(int fd, uint16_t id)
{
    unsigned char pkt[64];
    size_t n = th_build_publish(pkt, sizeof pkt, 5, "p", 1, false, false, id, "x", 1);
    th_send(fd, pkt, n);
}

/* A persistent v3.1.1 member's shared subscription is stored and comes
 * back after a SIGKILL: messages published after the restart are queued
 * for it (and the publisher is told they matched). */
static void a_persistent_member_keeps_its_shared_subscription_across_a_restart(th_ctx_t *t)
{
    th_connect_t c = {.version = 4, .client_id = "durable", .clean = false, .keepalive = 60};
    int fd = th_mqtt_connect(t->port, &c, NULL);
    th_mqtt_subscribe(fd, 4, 1, "$share/d/p", 1);
    th_mqtt_disconnect(fd);
    th_broker_kill(t->broker);
    th_broker_restart(t->broker, NULL);
    t->port = t->broker->port;
    int pub = raw_open(t, 5, "d-pub", true);
    for (uint16_t id = 1; id <= 5; id++) {
        publish_p(pub, id);
        assert_int_equal(th_expect_ack(pub, 0x40, id, TH_WAIT_MS), 0x00); /* not 0x10 */
    }
    bool present = false;
    fd = th_mqtt_connect(t->port, &c, &present);
    assert_true(present);
    assert_int_equal(raw_drain(fd, 4, true, 500), 5);
    /* still a member after it came back */
    publish_p(pub, 6);
    assert_int_equal(th_expect_ack(pub, 0x40, 6, TH_WAIT_MS), 0x00);
    assert_int_equal(raw_drain(fd, 4, true, 300), 1);
    th_mqtt_disconnect(fd), th_mqtt_disconnect(pub);
}

/* libmosquitto's v5 API: CONNACK says Shared Subscription Available 1;
 * two members with their own Subscription Identifiers and granted QoS
 * (1 and 0) split 10 QoS 1 messages, each delivery carrying its member's
 * identifier at its member's QoS; a third client asking for No Local on
 * the group is disconnected with 0x82. */
static void libmosquitto_v5_members_get_their_own_id_and_qos(th_ctx_t *t)
{
    th_m5_t a, b, pub, nl;
    th_m5_opts_t oa = {.id = "m5-a", .clean = true}, ob = {.id = "m5-b", .clean = true};
    th_m5_opts_t op = {.id = "m5-pub", .clean = true}, on = {.id = "m5-nl", .clean = true};
    uint8_t avail = 0;
    th_m5_open(&a, t->port, &oa);
    assert_true(th_m5_prop_byte(a.connack_props, MQTT_PROP_SHARED_SUB_AVAILABLE, &avail));
    assert_int_equal(avail, 1);
    th_m5_open(&b, t->port, &ob);
    assert_int_equal(th_m5_subscribe_id(&a, "$share/m5/v/#", 1, 11), 1);
    assert_int_equal(th_m5_subscribe_id(&b, "$share/m5/v/#", 0, 22), 0);
    th_m5_open(&pub, t->port, &op);
    for (int i = 0; i < 10; i++) th_m5_publish(&pub, "v/1", "x", 1, 1, false, NULL);
    th_m5_wait_acks(&pub, NULL, 10, TH_WAIT_MS);
    for (int i = 0; i < 10; i++) assert_int_equal(pub.acks[i].reason, 0);
    th_m5_wait_msgs(&a, &b, 5, TH_WAIT_MS);
    th_m5_wait_msgs(&b, &a, 5, TH_WAIT_MS);
    th_m5_expect_no_msg(&a, &b, 200);
    assert_int_equal(b.n_msgs, 5);
    th_m5_t *ms[] = {&a, &b};
    const uint32_t want_id[] = {11, 22};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < ms[k]->n_msgs; i++) {
            uint32_t ids[4];
            assert_int_equal(th_m5_sub_ids(ms[k]->msgs[i].props, ids, 4), 1);
            assert_int_equal(ids[0], want_id[k]);
            assert_int_equal(ms[k]->msgs[i].qos, k == 0 ? 1 : 0);
        }
    th_m5_open(&nl, t->port, &on);
    assert_int_equal(mosquitto_subscribe_v5(nl.m, NULL, "$share/m5/v/#", 1, MQTT_SUB_OPT_NO_LOCAL,
                                            NULL),
                     MOSQ_ERR_SUCCESS);
    assert_int_equal(th_m5_wait_disconnect(&nl, TH_WAIT_MS), MQTT_RC_PROTOCOL_ERROR);
    th_m5_drop(&nl);
    th_m5_close(&a), th_m5_close(&b), th_m5_close(&pub);
}

/* Two `mosquitto_sub -V mqttv5` processes in one group and mosquitto_pub
 * publishing 10 messages: round robin gives each exactly 5 (-C 5 makes
 * each exit after 5, so a sixth would not be seen; the count of message
 * lines checks that neither got more before exiting). */
static void mosquitto_sub_v5_members_share_the_messages(th_ctx_t *t)
{
    char out[2][160], pub_out[160], port[8], msg[8];
    pid_t pid[2];
    snprintf(port, sizeof port, "%u", (unsigned)t->port);
    for (int i = 0; i < 2; i++) {
        snprintf(out[i], sizeof out[i], "%s/sub%d.out", t->broker->dir, i);
        const char *argv[] = {"stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", port,
                              "-V", "mqttv5", "-d", "-v", "-q", "1", "-C", "5", "-W", "10",
                              "-t", "$share/cli/x", NULL};
        pid[i] = th_cmd_start(argv, out[i]);
        if (!th_file_wait(out[i], "SUBACK", TH_WAIT_MS)) fail_msg("mosquitto_sub: no SUBACK");
    }
    snprintf(pub_out, sizeof pub_out, "%s/pub.out", t->broker->dir);
    for (int i = 0; i < 10; i++) {
        snprintf(msg, sizeof msg, "m%d", i);
        const char *argv[] = {"mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-V", "mqttv5",
                              "-q", "1", "-t", "x", "-m", msg, NULL};
        assert_int_equal(th_cmd_run(argv, pub_out, 10000), 0);
    }
    for (int i = 0; i < 2; i++) {
        int rc = th_cmd_wait(pid[i], 10000);
        char *text = th_file_read(out[i]);
        int lines = th_count(text, "\nx m");
        if (rc != 0 || lines != 5)
            fail_msg("mosquitto_sub %d exited %d with %d messages: %s", i, rc, lines, text);
        free(text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_TEST(connack_says_shared_subscriptions_are_available),
        TH_TEST(one_member_of_each_group_gets_each_message),
        TH_TEST(round_robin_spreads_evenly),
        TH_TEST_CFG(random_gives_each_message_to_one_member,
                    "{\"shared_strategy\": \"random\"}\n"),
        TH_TEST_CFG(sticky_keeps_a_publisher_on_one_member,
                    "{\"shared_strategy\": \"sticky\"}\n"),
        TH_TEST_CFG(unacked_messages_of_a_dropped_member_go_to_another,
                    "{\"max_inflight\": 4}\n"),
        TH_TEST(a_persistent_member_hands_over_at_disconnect_too),
        TH_TEST(churning_member_loses_no_qos1_message),
        TH_TEST(a_sent_qos2_message_stays_with_its_member),
        TH_TEST(no_local_on_a_shared_subscription_is_a_protocol_error),
        TH_TEST(a_shared_subscribe_gets_no_retained_messages),
        TH_TEST(granted_qos_and_subscription_id_apply),
        TH_TEST(unsubscribe_leaves_the_group),
        TH_TEST(a_persistent_member_keeps_its_shared_subscription_across_a_restart),
        TH_TEST(libmosquitto_v5_members_get_their_own_id_and_qos),
        TH_TEST(mosquitto_sub_v5_members_share_the_messages),
    };
    return cmocka_run_group_tests_name("integration/17-shared", tests, NULL, NULL);
}

/*
 * 16-v5 - every MQTT 5.0 feature uvmq has, driven by a real v5 client:
 * libmosquitto's v5 API (harness/mosq5.h) and mosquitto_pub/sub -V mqttv5.
 *
 * Scenario: a v5 client connects and reads in the CONNACK what the server
 * offers (Receive Maximum, Maximum QoS, Retain Available, Maximum Packet
 * Size, Wildcard and Subscription Identifier Available, Server Keep Alive
 * when max_keepalive caps its ask, an Assigned Client Identifier for an
 * empty id, a Reason String when refused). Subscribers use No Local,
 * Retain As Published, Retain Handling 0/1/2 and Subscription Identifiers;
 * messages expire on the way to an offline session and carry what is left
 * of their interval; sessions end when their expiry says (changed at
 * DISCONNECT, 0 at disconnect), also when a reconnect takes the session
 * over before the broker read that DISCONNECT; a delayed will is cancelled by a reconnect
 * in time and otherwise sent with its properties; Receive Maximum and
 * Maximum Packet Size hold in both directions; request/response properties
 * arrive unchanged; reason codes come back on PUBACK, SUBACK, UNSUBACK and
 * DISCONNECT. Where libmosquitto 2.0.11 cannot show something (UNSUBACK
 * reason codes, a PUBREC's 0x10) a raw client checks the bytes; where it
 * refuses to break a limit the broker set, the test sends before the
 * CONNACK is read. docs/mqtt5.md maps each feature to its test here.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "tests/integration/harness/harness.h"
#include "tests/integration/harness/mosq5.h"

/* ---- helpers ------------------------------------------------------------- */

/* A property list built by the test; freed with mosquitto_property_free_all. */
typedef mosquitto_property props_t;

static props_t *add_int32(props_t *p, int id, uint32_t v)
{
    assert_int_equal(mosquitto_property_add_int32(&p, id, v), MOSQ_ERR_SUCCESS);
    return p;
}

static props_t *add_int16(props_t *p, int id, uint16_t v)
{
    assert_int_equal(mosquitto_property_add_int16(&p, id, v), MOSQ_ERR_SUCCESS);
    return p;
}

static props_t *add_byte(props_t *p, int id, uint8_t v)
{
    assert_int_equal(mosquitto_property_add_byte(&p, id, v), MOSQ_ERR_SUCCESS);
    return p;
}

static props_t *add_string(props_t *p, int id, const char *v)
{
    assert_int_equal(mosquitto_property_add_string(&p, id, v), MOSQ_ERR_SUCCESS);
    return p;
}

static props_t *add_binary(props_t *p, int id, const void *v, uint16_t len)
{
    assert_int_equal(mosquitto_property_add_binary(&p, id, v, len),
                     MOSQ_ERR_SUCCESS);
    return p;
}

static props_t *add_user(props_t *p, const char *k, const char *v)
{
    assert_int_equal(mosquitto_property_add_string_pair(
                         &p, MQTT_PROP_USER_PROPERTY, k, v),
                     MOSQ_ERR_SUCCESS);
    return p;
}

/* Opens a v5 client with id, clean start and a Session Expiry Interval
 * (0: none sent). */
static void open_se(th_m5_t *c, th_ctx_t *t, const char *id, bool clean,
                    uint32_t expiry)
{
    props_t *p = expiry ? add_int32(NULL, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                    expiry)
                        : NULL;
    th_m5_opts_t o = {.id = id, .clean = clean, .props = p};
    th_m5_open(c, t->port, &o);
    mosquitto_property_free_all(&p);
}

/* Opens a plain v5 client: id, clean start 1. */
static void open_clean(th_m5_t *c, th_ctx_t *t, const char *id)
{
    open_se(c, t, id, true, 0);
}

/* Fails unless message i of c has this topic and payload. */
static void expect_msg(const th_m5_t *c, int i, const char *topic,
                       const char *payload)
{
    assert_true(i < c->n_msgs);
    assert_string_equal(c->msgs[i].topic, topic);
    assert_string_equal((const char *)c->msgs[i].payload, payload);
}

/* Sorts n ids (few) in place. */
static void sort_ids(uint32_t *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0 && v[k - 1] > v[k]; k--) {
            uint32_t x = v[k];
            v[k] = v[k - 1];
            v[k - 1] = x;
        }
}

/* Counts the whole PUBLISH packets sitting unread in fd's receive buffer
 * (MSG_PEEK: libmosquitto still reads them later). */
static int peek_publishes(int fd)
{
    unsigned char buf[8192];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    int count = 0;
    size_t off = 0;
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    while (off + 2 <= (size_t)n) {
        size_t len = 0, i = 1;
        int shift = 0;
        while (off + i < (size_t)n && i <= 4) {
            len |= (size_t)(buf[off + i] & 0x7f) << shift;
            shift += 7;
            if ((buf[off + i++] & 0x80) == 0)
                break;
        }
        if (off + i + len > (size_t)n)
            break;
        count += (buf[off] >> 4) == 3;
        off += i + len;
    }
    return count;
}

/* ---- CONNACK: what the server offers ------------------------------------ */

static void connack_describes_the_server(th_ctx_t *t)
{
    th_m5_t c;
    uint16_t u16 = 0;
    uint32_t u32 = 0;
    uint8_t b = 0xff;
    open_clean(&c, t, "caps");
    const props_t *p = c.connack_props;
    assert_true(th_m5_prop_int16(p, MQTT_PROP_RECEIVE_MAXIMUM, &u16));
    assert_int_equal(u16, 10); /* max_inflight of this test's config */
    assert_true(th_m5_prop_int32(p, MQTT_PROP_MAXIMUM_PACKET_SIZE, &u32));
    assert_int_equal(u32, 100000); /* max_packet_size */
    /* 3.2.2.3.4: absent Maximum QoS means QoS 2 is supported. */
    if (th_m5_prop_byte(p, MQTT_PROP_MAXIMUM_QOS, &b))
        assert_int_equal(b, 2);
    b = 0;
    if (th_m5_prop_byte(p, MQTT_PROP_RETAIN_AVAILABLE, &b))
        assert_int_equal(b, 1);
    b = 0;
    if (th_m5_prop_byte(p, MQTT_PROP_WILDCARD_SUB_AVAILABLE, &b))
        assert_int_equal(b, 1);
    b = 0;
    if (th_m5_prop_byte(p, MQTT_PROP_SUBSCRIPTION_ID_AVAILABLE, &b))
        assert_int_equal(b, 1);
    /* Keep-alive 60 is within max_keepalive: no Server Keep Alive. */
    assert_false(th_m5_prop_int16(p, MQTT_PROP_SERVER_KEEP_ALIVE, &u16));
    /* A named client gets no Assigned Client Identifier. */
    assert_int_equal(th_m5_prop_count(p, MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER), 0);
    /* What it offers works: a retained QoS 2 message on a wildcard. */
    th_m5_publish(&c, "caps/x", "r", 1, 2, true, NULL);
    th_m5_wait_acks(&c, NULL, 1, TH_WAIT_MS);
    assert_int_equal(th_m5_subscribe(&c, "caps/+", 2, NULL), 2);
    th_m5_wait_msgs(&c, NULL, 1, TH_WAIT_MS);
    expect_msg(&c, 0, "caps/x", "r");
    assert_true(c.msgs[0].retain);
    assert_int_equal(c.msgs[0].qos, 2);
    th_m5_close(&c);
}

static void connack_server_keep_alive_caps_the_ask(th_ctx_t *t)
{
    th_m5_t c;
    uint16_t ka = 0;
    th_m5_opts_t o = {.id = "ka", .clean = true, .keepalive = 600};
    th_m5_open(&c, t->port, &o);
    /* max_keepalive 30 < 600: the server says what it uses (3.2.2.3.14). */
    assert_true(th_m5_prop_int16(c.connack_props, MQTT_PROP_SERVER_KEEP_ALIVE, &ka));
    assert_int_equal(ka, 30);
    th_m5_close(&c);
}

static void connack_assigns_a_client_identifier_to_an_empty_one(th_ctx_t *t)
{
    th_m5_t c, again;
    char id[128];
    th_m5_opts_t o = {.id = NULL, .clean = true};
    th_m5_open(&c, t->port, &o);
    assert_true(th_m5_prop_string(c.connack_props,
                                  MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER, id,
                                  sizeof id));
    /* docs/protocol.md: "uvmq-" and 16 hex digits. */
    assert_int_equal(strlen(id), 21);
    assert_memory_equal(id, "uvmq-", 5);
    /* The id is the session's: a second empty id gets another one. */
    th_m5_open(&again, t->port, &o);
    char id2[128];
    assert_true(th_m5_prop_string(again.connack_props,
                                  MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER, id2,
                                  sizeof id2));
    assert_string_not_equal(id, id2);
    th_m5_close(&again);
    th_m5_close(&c);
}

static void assigned_client_identifier_resumes_its_session(th_ctx_t *t)
{
    th_m5_t c, pub;
    char id[64];
    props_t *p = add_int32(NULL, MQTT_PROP_SESSION_EXPIRY_INTERVAL, 300);
    th_m5_opts_t o = {.id = NULL, .props = p};
    th_m5_open(&c, t->port, &o);
    assert_true(th_m5_prop_string(c.connack_props,
                                  MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER, id,
                                  sizeof id));
    th_m5_subscribe(&c, "aid/t", 1, NULL);
    th_m5_close(&c);
    open_clean(&pub, t, "aid-pub");
    th_m5_publish(&pub, "aid/t", "for you", 7, 1, false, NULL);
    th_m5_wait_acks(&pub, NULL, 1, TH_WAIT_MS);
    /* The assigned id names a session like any other (3.2.2.3.7). */
    o.id = id;
    o.clean = false;
    th_m5_open(&c, t->port, &o);
    mosquitto_property_free_all(&p);
    assert_true(c.session_present);
    th_m5_wait_msgs(&c, NULL, 1, TH_WAIT_MS);
    expect_msg(&c, 0, "aid/t", "for you");
    th_m5_close(&pub);
    th_m5_close(&c);
}

static void refused_connect_gets_reason_code_and_reason_string(th_ctx_t *t)
{
    th_m5_t c;
    char why[256];
    th_m5_opts_t o = {.id = "this-id-is-longer-than-the-limit", .clean = true};
    /* max_client_id_len is 23 (the least allowed) in this test's config. */
    int rc = th_m5_try_open(&c, t->port, &o);
    assert_int_equal(rc, MQTT_RC_CLIENTID_NOT_VALID);
    assert_true(th_m5_prop_string(c.connack_props, MQTT_PROP_REASON_STRING,
                                  why, sizeof why));
    assert_true(strlen(why) > 0);
    th_m5_drop(&c);
}

/* ---- subscription options ------------------------------------------------ */

static void no_local_keeps_a_clients_own_messages_from_it(th_ctx_t *t)
{
    th_m5_t me, other;
    open_clean(&me, t, "nl-me");
    open_clean(&other, t, "nl-other");
    th_m5_subscribe(&me, "nl/t", 1 | MQTT_SUB_OPT_NO_LOCAL, NULL);
    th_m5_subscribe(&other, "nl/t", 1, NULL);
    th_m5_publish(&me, "nl/t", "mine", 4, 1, false, NULL);
    th_m5_wait_msgs(&other, &me, 1, TH_WAIT_MS);
    expect_msg(&other, 0, "nl/t", "mine");
    th_m5_expect_no_msg(&me, &other, 300); /* MQTT-3.8.3-3 */
    th_m5_publish(&other, "nl/t", "theirs", 6, 1, false, NULL);
    th_m5_wait_msgs(&me, &other, 1, TH_WAIT_MS);
    expect_msg(&me, 0, "nl/t", "theirs");
    /* An overlapping subscription without No Local still delivers, once
     * (docs/protocol.md: No Local applies per subscription). */
    th_m5_subscribe(&me, "nl/#", 1, NULL);
    th_m5_publish(&me, "nl/t", "mine again", 10, 1, false, NULL);
    th_m5_wait_msgs(&me, &other, 2, TH_WAIT_MS);
    expect_msg(&me, 1, "nl/t", "mine again");
    th_m5_expect_no_msg(&me, &other, 300);
    th_m5_close(&other);
    th_m5_close(&me);
}

static void retain_as_published_keeps_the_retain_flag_live(th_ctx_t *t)
{
    th_m5_t rap, plain, pub;
    open_clean(&rap, t, "rap");
    open_clean(&plain, t, "plain");
    open_clean(&pub, t, "rap-pub");
    th_m5_subscribe(&rap, "rap/t", 1 | MQTT_SUB_OPT_RETAIN_AS_PUBLISHED, NULL);
    th_m5_subscribe(&plain, "rap/t", 1, NULL);
    th_m5_publish(&pub, "rap/t", "kept", 4, 1, true, NULL);
    th_m5_publish(&pub, "rap/t", "live", 4, 1, false, NULL);
    th_m5_wait_acks(&pub, NULL, 2, TH_WAIT_MS);
    th_m5_wait_msgs(&rap, NULL, 2, TH_WAIT_MS);
    th_m5_wait_msgs(&plain, NULL, 2, TH_WAIT_MS);
    expect_msg(&rap, 0, "rap/t", "kept");
    assert_true(rap.msgs[0].retain); /* MQTT-3.3.1-13 */
    assert_false(rap.msgs[1].retain);
    expect_msg(&plain, 0, "rap/t", "kept");
    assert_false(plain.msgs[0].retain); /* MQTT-3.3.1-12 */
    assert_false(plain.msgs[1].retain);
    th_m5_close(&pub);
    th_m5_close(&plain);
    th_m5_close(&rap);
}

static void retain_handling_0_1_2_decide_when_retained_messages_come(th_ctx_t *t)
{
    th_m5_t pub, c;
    open_clean(&pub, t, "rh-pub");
    th_m5_publish(&pub, "rh/t", "old", 3, 1, true, NULL);
    th_m5_wait_acks(&pub, NULL, 1, TH_WAIT_MS);
    open_clean(&c, t, "rh");
    /* 0: on every subscribe, even one that exists (MQTT-3.3.1-9). */
    th_m5_subscribe(&c, "rh/+", 1 | MQTT_SUB_OPT_SEND_RETAIN_ALWAYS, NULL);
    th_m5_wait_msgs(&c, NULL, 1, TH_WAIT_MS);
    th_m5_subscribe(&c, "rh/+", 1 | MQTT_SUB_OPT_SEND_RETAIN_ALWAYS, NULL);
    th_m5_wait_msgs(&c, NULL, 2, TH_WAIT_MS);
    expect_msg(&c, 1, "rh/t", "old");
    assert_true(c.msgs[1].retain);
    /* 1: only when the subscription is new (MQTT-3.3.1-10). */
    th_m5_subscribe(&c, "rh/#", 1 | MQTT_SUB_OPT_SEND_RETAIN_NEW, NULL);
    th_m5_wait_msgs(&c, NULL, 3, TH_WAIT_MS);
    th_m5_subscribe(&c, "rh/#", 1 | MQTT_SUB_OPT_SEND_RETAIN_NEW, NULL);
    th_m5_expect_no_msg(&c, NULL, 300);
    /* 2: never (MQTT-3.3.1-11). */
    th_m5_subscribe(&c, "+/t", 1 | MQTT_SUB_OPT_SEND_RETAIN_NEVER, NULL);
    th_m5_expect_no_msg(&c, NULL, 300);
    /* Live messages still come, once (overlapping subscriptions). */
    th_m5_publish(&pub, "rh/t", "new", 3, 1, false, NULL);
    th_m5_wait_msgs(&c, &pub, 4, TH_WAIT_MS);
    expect_msg(&c, 3, "rh/t", "new");
    th_m5_expect_no_msg(&c, &pub, 300);
    th_m5_close(&c);
    th_m5_close(&pub);
}

static void subscription_identifiers_come_with_every_matching_message(th_ctx_t *t)
{
    th_m5_t c, pub;
    uint32_t ids[8];
    open_clean(&c, t, "sid");
    open_clean(&pub, t, "sid-pub");
    th_m5_subscribe_id(&c, "sid/+", 1, 7);
    th_m5_subscribe_id(&c, "sid2/#", 1, 9);
    th_m5_subscribe(&c, "other/#", 1, NULL); /* no identifier */
    th_m5_publish(&pub, "sid/x", "one", 3, 1, false, NULL);
    th_m5_publish(&pub, "sid2/y", "two", 3, 1, false, NULL);
    th_m5_publish(&pub, "other/x", "none", 4, 1, false, NULL);
    th_m5_wait_msgs(&c, &pub, 3, TH_WAIT_MS);
    expect_msg(&c, 0, "sid/x", "one");
    assert_int_equal(th_m5_sub_ids(c.msgs[0].props, ids, 8), 1);
    assert_int_equal(ids[0], 7); /* MQTT-3.3.4-3 */
    assert_int_equal(th_m5_sub_ids(c.msgs[1].props, ids, 8), 1);
    assert_int_equal(ids[0], 9);
    assert_int_equal(th_m5_sub_ids(c.msgs[2].props, ids, 8), 0);
    /* A retained message sent on subscribe carries that subscription's. */
    th_m5_publish(&pub, "ret/r", "ret", 3, 1, true, NULL);
    th_m5_wait_acks(&pub, NULL, 4, TH_WAIT_MS);
    th_m5_subscribe_id(&c, "ret/#", 1, 12);
    th_m5_wait_msgs(&c, NULL, 4, TH_WAIT_MS);
    expect_msg(&c, 3, "ret/r", "ret");
    assert_true(c.msgs[3].retain);
    assert_int_equal(th_m5_sub_ids(c.msgs[3].props, ids, 8), 1);
    assert_int_equal(ids[0], 12);
    th_m5_close(&pub);
    th_m5_close(&c);
}

/* Reads the Subscription Identifiers of a v5 PUBLISH of n bytes (QoS 0)
 * into ids; returns how many. Fails the test on other properties. */
static int publish_sub_ids(const unsigned char *pkt, size_t n, uint32_t *ids)
{
    size_t off = th_header_len(pkt);
    size_t end, count = 0;
    off += 2 + ((size_t)pkt[off] << 8 | pkt[off + 1]); /* topic */
    assert_true(off < n && pkt[off] < 0x80); /* one-byte property length */
    end = off + 1 + pkt[off];
    for (off++; off < end; off += 2) {
        assert_int_equal(pkt[off], 0x0b); /* Subscription Identifier */
        assert_true(pkt[off + 1] < 0x80); /* one-byte varint */
        ids[count++] = pkt[off + 1];
    }
    return (int)count;
}

static void overlapping_subscriptions_carry_every_identifier_in_one_copy(th_ctx_t *t)
{
    /* libmosquitto 2.0.11 treats two Subscription Identifiers in one
     * PUBLISH as a duplicate property and drops the connection, so the
     * subscriber here is raw. SUBSCRIBE id 1 "sid/+" with identifier 7,
     * id 2 "sid/a/#" with identifier 9, QoS 0. */
    static const unsigned char sub1[] = {
        0x82, 0x0d, 0x00, 0x01, 0x02, 0x0b, 0x07,
        0x00, 0x05, 's', 'i', 'd', '/', '+', 0x00};
    static const unsigned char suback1[] = {0x90, 0x04, 0x00, 0x01, 0x00, 0x00};
    static const unsigned char sub2[] = {
        0x82, 0x0f, 0x00, 0x02, 0x02, 0x0b, 0x09,
        0x00, 0x07, 's', 'i', 'd', '/', 'a', '/', '#', 0x00};
    static const unsigned char suback2[] = {0x90, 0x04, 0x00, 0x02, 0x00, 0x00};
    unsigned char buf[256];
    uint32_t ids[4];
    th_m5_t pub;
    int fd = th_mqtt_open(t->port, 5, "sid-raw", 0x02, 60);
    th_send(fd, sub1, sizeof sub1);
    th_expect(fd, suback1, sizeof suback1, TH_WAIT_MS);
    th_send(fd, sub2, sizeof sub2);
    th_expect(fd, suback2, sizeof suback2, TH_WAIT_MS);
    open_clean(&pub, t, "sid-pub");
    th_m5_publish(&pub, "sid/a", "both", 4, 0, false, NULL);
    th_m5_loop_for(&pub, 50);
    int n = th_read_type(fd, 0x30, buf, sizeof buf, TH_WAIT_MS);
    /* One copy (docs/protocol.md) with both identifiers (MQTT-3.3.4-4). */
    assert_int_equal(publish_sub_ids(buf, (size_t)n, ids), 2);
    sort_ids(ids, 2);
    assert_int_equal(ids[0], 7);
    assert_int_equal(ids[1], 9);
    assert_memory_equal(buf + n - 4, "both", 4);
    th_expect_silence(fd, 300);
    th_m5_close(&pub);
    th_mqtt_disconnect(fd);
}

/* ---- Message Expiry Interval -------------------------------------------- */

static void expired_messages_are_not_delivered_to_a_returning_session(th_ctx_t *t)
{
    th_m5_t sub, pub;
    uint32_t left = 0;
    open_se(&sub, t, "me", true, 300);
    th_m5_subscribe(&sub, "me/t", 1, NULL);
    size_t from = th_broker_log_size(t->broker);
    th_m5_close(&sub); /* the session stays, offline */
    /* Offline for the broker too: a message that reaches the session while
     * its connection is still attached (the DISCONNECT not yet read by its
     * loop) is in flight, and MQTT-4.4.0-1 resends it, expired or not. */
    th_broker_wait_closed(t->broker, from, "me");
    open_clean(&pub, t, "me-pub");
    props_t *one = add_int32(NULL, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, 1);
    props_t *thirty = add_int32(NULL, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, 30);
    th_m5_publish(&pub, "me/t", "short", 5, 1, false, one);
    th_m5_publish(&pub, "me/t", "long", 4, 1, false, thirty);
    th_m5_wait_acks(&pub, NULL, 2, TH_WAIT_MS);
    mosquitto_property_free_all(&one);
    mosquitto_property_free_all(&thirty);
    th_sleep_ms(2200);
    open_se(&sub, t, "me", false, 300);
    assert_true(sub.session_present);
    th_m5_wait_msgs(&sub, NULL, 1, TH_WAIT_MS);
    expect_msg(&sub, 0, "me/t", "long"); /* MQTT-3.3.2-5: "short" expired */
    /* MQTT-3.3.2-6: what is left of 30 s after 2.2 s, in whole seconds. */
    assert_true(th_m5_prop_int32(sub.msgs[0].props,
                                 MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, &left));
    assert_in_range(left, 20, 28);
    th_m5_expect_no_msg(&sub, NULL, 300);
    th_m5_close(&sub);
    th_m5_close(&pub);
}

static void live_message_carries_its_expiry_interval(th_ctx_t *t)
{
    th_m5_t sub, pub;
    uint32_t left = 0;
    open_clean(&sub, t, "mel");
    open_clean(&pub, t, "mel-pub");
    th_m5_subscribe(&sub, "mel/t", 0, NULL);
    props_t *p = add_int32(NULL, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, 3600);
    th_m5_publish(&pub, "mel/t", "x", 1, 0, false, p);
    mosquitto_property_free_all(&p);
    th_m5_wait_msgs(&sub, &pub, 1, TH_WAIT_MS);
    assert_true(th_m5_prop_int32(sub.msgs[0].props,
                                 MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, &left));
    assert_in_range(left, 3590, 3600);
    /* Without an interval, none is made up. */
    th_m5_publish(&pub, "mel/t", "y", 1, 0, false, NULL);
    th_m5_wait_msgs(&sub, &pub, 2, TH_WAIT_MS);
    assert_int_equal(th_m5_prop_count(sub.msgs[1].props,
                                      MQTT_PROP_MESSAGE_EXPIRY_INTERVAL), 0);
    th_m5_close(&pub);
    th_m5_close(&sub);
}

static void expired_retained_message_is_not_sent_on_subscribe(th_ctx_t *t)
{
    th_m5_t pub, sub;
    uint32_t left = 0;
    open_clean(&pub, t, "mer-pub");
    props_t *one = add_int32(NULL, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, 1);
    props_t *sixty = add_int32(NULL, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, 60);
    th_m5_publish(&pub, "mer/short", "s", 1, 1, true, one);
    th_m5_publish(&pub, "mer/long", "l", 1, 1, true, sixty);
    th_m5_wait_acks(&pub, NULL, 2, TH_WAIT_MS);
    mosquitto_property_free_all(&one);
    mosquitto_property_free_all(&sixty);
    th_sleep_ms(2200);
    open_clean(&sub, t, "mer-sub");
    th_m5_subscribe(&sub, "mer/#", 1, NULL);
    th_m5_wait_msgs(&sub, NULL, 1, TH_WAIT_MS);
    expect_msg(&sub, 0, "mer/long", "l"); /* MQTT-3.3.2-5: retained too */
    assert_true(sub.msgs[0].retain);
    assert_true(th_m5_prop_int32(sub.msgs[0].props,
                                 MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, &left));
    assert_in_range(left, 50, 58);
    th_m5_expect_no_msg(&sub, NULL, 300);
    th_m5_close(&sub);
    th_m5_close(&pub);
}

static void queued_message_keeps_its_subscription_identifier(th_ctx_t *t)
{
    th_m5_t sub, pub;
    uint32_t ids[4];
    open_se(&sub, t, "qsid", true, 300);
    th_m5_subscribe_id(&sub, "qsid/t", 1, 5);
    th_m5_close(&sub); /* offline: the message waits in its queue */
    open_clean(&pub, t, "qsid-pub");
    th_m5_publish(&pub, "qsid/t", "later", 5, 1, false, NULL);
    th_m5_wait_acks(&pub, NULL, 1, TH_WAIT_MS);
    open_se(&sub, t, "qsid", false, 300);
    assert_true(sub.session_present);
    th_m5_wait_msgs(&sub, NULL, 1, TH_WAIT_MS);
    expect_msg(&sub, 0, "qsid/t", "later");
    assert_int_equal(th_m5_sub_ids(sub.msgs[0].props, ids, 4), 1);
    assert_int_equal(ids[0], 5); /* MQTT-3.3.4-3, for a queued delivery */
    th_m5_close(&pub);
    th_m5_close(&sub);
}

static void subscription_options_identifiers_and_properties_survive_a_restart(th_ctx_t *t)
{
    th_m5_t sub, pub;
    uint32_t ids[4], left = 0;
    char v[32];
    open_se(&sub, t, "rs", true, 300);
    th_m5_subscribe_id(&sub, "rs/t",
                       1 | MQTT_SUB_OPT_NO_LOCAL | MQTT_SUB_OPT_RETAIN_AS_PUBLISHED, 21);
    th_m5_close(&sub);
    open_clean(&pub, t, "rs-pub");
    props_t *p = add_int32(NULL, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, 600);
    p = add_user(p, "k", "v");
    th_m5_publish(&pub, "rs/t", "queued", 6, 1, false, p);
    mosquitto_property_free_all(&p);
    th_m5_wait_acks(&pub, NULL, 1, TH_WAIT_MS); /* acknowledged once stored */
    th_m5_close(&pub);
    th_broker_kill(t->broker); /* SIGKILL: only what was committed counts */
    th_broker_restart(t->broker, NULL);
    t->port = t->broker->port;
    open_se(&sub, t, "rs", false, 300);
    assert_true(sub.session_present);
    th_m5_wait_msgs(&sub, NULL, 1, TH_WAIT_MS);
    expect_msg(&sub, 0, "rs/t", "queued");
    assert_int_equal(th_m5_sub_ids(sub.msgs[0].props, ids, 4), 1);
    assert_int_equal(ids[0], 21);
    assert_true(th_m5_prop_user(sub.msgs[0].props, "k", v, sizeof v));
    assert_string_equal(v, "v");
    assert_true(th_m5_prop_int32(sub.msgs[0].props,
                                 MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, &left));
    assert_in_range(left, 500, 600);
    /* The options came back with the subscription: No Local ... */
    th_m5_publish(&sub, "rs/t", "own", 3, 1, false, NULL);
    th_m5_expect_no_msg(&sub, NULL, 300);
    /* ... and Retain As Published. */
    open_clean(&pub, t, "rs-pub");
    th_m5_publish(&pub, "rs/t", "kept", 4, 1, true, NULL);
    th_m5_wait_msgs(&sub, &pub, 2, TH_WAIT_MS);
    expect_msg(&sub, 1, "rs/t", "kept");
    assert_true(sub.msgs[1].retain);
    th_m5_close(&pub);
    th_m5_close(&sub);
}

/* ---- Session Expiry Interval -------------------------------------------- */

static void session_is_kept_for_its_expiry_interval_then_ends(th_ctx_t *t)
{
    th_m5_t c, pub;
    open_se(&c, t, "se", true, 2);
    assert_false(c.session_present);
    th_m5_subscribe(&c, "se/t", 1, NULL);
    th_m5_close(&c);
    open_clean(&pub, t, "se-pub");
    th_m5_publish(&pub, "se/t", "queued", 6, 1, false, NULL);
    th_m5_wait_acks(&pub, NULL, 1, TH_WAIT_MS);
    open_se(&c, t, "se", false, 2);
    assert_true(c.session_present); /* within 2 s: kept, queue and all */
    th_m5_wait_msgs(&c, NULL, 1, TH_WAIT_MS);
    expect_msg(&c, 0, "se/t", "queued");
    th_m5_close(&c);
    th_sleep_ms(3500); /* 2 s expiry, swept once a second */
    open_se(&c, t, "se", false, 2);
    assert_false(c.session_present); /* MQTT-3.1.2-23: it ended */
    th_m5_close(&c);
    th_m5_close(&pub);
}

static void session_expiry_0_ends_the_session_at_disconnect(th_ctx_t *t)
{
    th_m5_t c;
    open_se(&c, t, "se0", true, 0);
    th_m5_subscribe(&c, "se0/t", 1, NULL);
    th_m5_close(&c);
    open_se(&c, t, "se0", false, 0);
    assert_false(c.session_present);
    th_m5_close(&c);
}

static void session_expiry_changed_at_disconnect_is_honoured(th_ctx_t *t)
{
    th_m5_t c;
    /* Long at CONNECT, 0 at DISCONNECT: ends now (3.14.2.2.2). */
    open_se(&c, t, "sed", true, 300);
    th_m5_subscribe(&c, "sed/t", 1, NULL);
    props_t *zero = add_int32(NULL, MQTT_PROP_SESSION_EXPIRY_INTERVAL, 0);
    th_m5_close_with(&c, 0, zero);
    mosquitto_property_free_all(&zero);
    open_se(&c, t, "sed", false, 1);
    assert_false(c.session_present);
    /* 1 s at CONNECT, 300 at DISCONNECT: still there after 2.5 s. */
    props_t *more = add_int32(NULL, MQTT_PROP_SESSION_EXPIRY_INTERVAL, 300);
    th_m5_close_with(&c, 0, more);
    mosquitto_property_free_all(&more);
    th_sleep_ms(2500);
    open_se(&c, t, "sed", false, 300);
    assert_true(c.session_present);
    th_m5_close(&c);
    /* 0 at CONNECT cannot become more at DISCONNECT (MQTT-3.14.2-2): a
     * protocol error, and the session still ends. */
    open_se(&c, t, "sed0", true, 0);
    th_m5_subscribe(&c, "sed/t", 1, NULL);
    more = add_int32(NULL, MQTT_PROP_SESSION_EXPIRY_INTERVAL, 300);
    th_m5_close_with(&c, 0, more);
    mosquitto_property_free_all(&more);
    open_se(&c, t, "sed0", false, 300);
    assert_false(c.session_present);
    th_m5_close(&c);
}

/* A client that sent DISCONNECT (Session Expiry 0) and reconnected at once
 * must find its session ended, even when the broker has not read that
 * DISCONNECT yet when the new CONNECT takes the session over (a worker
 * loop that happens to serve the new socket first: the expiry change of
 * 3.14.2.2.2 and the takeover of 3.1.4 both apply, in the order the
 * client sent them). Made certain: the broker has paused reading the old
 * connection (backpressure) when it sends the DISCONNECT (takeover.c). */
static void takeover_honours_a_disconnect_the_broker_had_not_read(th_ctx_t *t)
{
    int fd = th_connect_rcvbuf(t->port, 4096);
    th_io_t io = th_io_fd(fd);
    th_takeover_after_unread_disconnect(t, &io);
    th_close(fd);
}

/* ---- wills --------------------------------------------------------------- */

/* Opens client id with a will on will/<id> (payload "gone"), a Will Delay
 * Interval and a Session Expiry Interval. */
static void open_with_will(th_m5_t *c, th_ctx_t *t, const char *id,
                           bool clean, uint32_t delay, uint32_t expiry,
                           props_t *will_props)
{
    char topic[64];
    props_t *cp = add_int32(NULL, MQTT_PROP_SESSION_EXPIRY_INTERVAL, expiry);
    props_t *wp = will_props;
    if (delay > 0)
        wp = add_int32(wp, MQTT_PROP_WILL_DELAY_INTERVAL, delay);
    snprintf(topic, sizeof topic, "will/%s", id);
    th_m5_opts_t o = {.id = id, .clean = clean, .props = cp,
                      .will_topic = topic, .will_payload = "gone",
                      .will_len = 4, .will_qos = 1, .will_props = wp};
    th_m5_open(c, t->port, &o);
    mosquitto_property_free_all(&cp);
    mosquitto_property_free_all(&wp);
}

static void delayed_will_is_not_sent_when_the_client_returns_in_time(th_ctx_t *t)
{
    th_m5_t w, c;
    open_clean(&w, t, "watch");
    th_m5_subscribe(&w, "will/#", 1, NULL);
    open_with_will(&c, t, "wd", true, 2, 60, NULL);
    th_m5_drop(&c); /* no DISCONNECT: the will is due in 2 s */
    th_m5_loop_for(&w, 300);
    open_with_will(&c, t, "wd", false, 2, 60, NULL);
    assert_true(c.session_present);
    th_m5_expect_no_msg(&w, NULL, 2700); /* MQTT-3.1.3-9 */
    th_m5_close(&c); /* reason 0: the will is discarded */
    th_m5_expect_no_msg(&w, NULL, 300);
    th_m5_close(&w);
}

static void delayed_will_is_sent_after_the_delay_with_its_properties(th_ctx_t *t)
{
    th_m5_t w, c;
    char s[64];
    unsigned char bin[16];
    size_t blen = 0;
    uint8_t pfi = 0;
    uint32_t exp = 0;
    open_clean(&w, t, "watch");
    th_m5_subscribe(&w, "will/#", 1, NULL);
    props_t *wp = add_byte(NULL, MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, 1);
    wp = add_int32(wp, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, 100);
    wp = add_string(wp, MQTT_PROP_CONTENT_TYPE, "text/plain");
    wp = add_string(wp, MQTT_PROP_RESPONSE_TOPIC, "will/reply");
    wp = add_binary(wp, MQTT_PROP_CORRELATION_DATA, "\x00\x01id", 4);
    wp = add_user(wp, "why", "test");
    int64_t t0 = th_now_ms();
    open_with_will(&c, t, "wp", true, 1, 60, wp);
    th_m5_drop(&c);
    th_m5_expect_no_msg(&w, NULL, 500); /* not before 1 s */
    th_m5_wait_msgs(&w, NULL, 1, 4000);
    assert_true(th_now_ms() - t0 >= 900);
    expect_msg(&w, 0, "will/wp", "gone");
    const props_t *p = w.msgs[0].props; /* 3.1.3.2: forwarded as given */
    assert_true(th_m5_prop_byte(p, MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, &pfi));
    assert_int_equal(pfi, 1);
    assert_true(th_m5_prop_int32(p, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, &exp));
    assert_in_range(exp, 95, 100);
    assert_true(th_m5_prop_string(p, MQTT_PROP_CONTENT_TYPE, s, sizeof s));
    assert_string_equal(s, "text/plain");
    assert_true(th_m5_prop_string(p, MQTT_PROP_RESPONSE_TOPIC, s, sizeof s));
    assert_string_equal(s, "will/reply");
    assert_true(th_m5_prop_binary(p, MQTT_PROP_CORRELATION_DATA, bin,
                                  sizeof bin, &blen));
    assert_int_equal(blen, 4);
    assert_memory_equal(bin, "\x00\x01id", 4);
    assert_true(th_m5_prop_user(p, "why", s, sizeof s));
    assert_string_equal(s, "test");
    th_m5_close(&w);
}

static void delayed_will_is_sent_at_once_when_a_clean_start_ends_the_session(th_ctx_t *t)
{
    th_m5_t w, c;
    open_clean(&w, t, "watch");
    th_m5_subscribe(&w, "will/#", 1, NULL);
    open_with_will(&c, t, "wc", true, 30, 60, NULL);
    th_m5_drop(&c);
    th_m5_loop_for(&w, 200);
    assert_int_equal(w.n_msgs, 0);
    /* 3.1.3.2.2: the delay runs until it passes or the session ends. */
    open_with_will(&c, t, "wc", true, 30, 60, NULL);
    th_m5_wait_msgs(&w, NULL, 1, TH_WAIT_MS);
    expect_msg(&w, 0, "will/wc", "gone");
    th_m5_close(&c);
    th_m5_close(&w);
}

static void will_is_sent_when_the_session_expires_before_the_delay(th_ctx_t *t)
{
    th_m5_t w, c;
    open_clean(&w, t, "watch");
    th_m5_subscribe(&w, "will/#", 1, NULL);
    int64_t t0 = th_now_ms();
    open_with_will(&c, t, "wx", true, 30, 1, NULL); /* delay 30 s, session 1 s */
    th_m5_drop(&c);
    /* 3.1.3.2.2: at the delay or when the session ends, whichever first. */
    th_m5_wait_msgs(&w, NULL, 1, 4000);
    assert_true(th_now_ms() - t0 >= 900);
    expect_msg(&w, 0, "will/wx", "gone");
    th_m5_close(&w);
}

static void disconnect_with_will_message_0x04_publishes_the_will(th_ctx_t *t)
{
    th_m5_t w, c;
    open_clean(&w, t, "watch");
    th_m5_subscribe(&w, "will/#", 1, NULL);
    open_with_will(&c, t, "w4", true, 0, 0, NULL);
    th_m5_close_with(&c, MQTT_RC_DISCONNECT_WITH_WILL_MSG, NULL);
    th_m5_wait_msgs(&w, NULL, 1, TH_WAIT_MS); /* MQTT-3.14.4-3 */
    expect_msg(&w, 0, "will/w4", "gone");
    open_with_will(&c, t, "w0", true, 0, 0, NULL);
    th_m5_close(&c); /* reason 0x00: no will */
    th_m5_expect_no_msg(&w, NULL, 500);
    th_m5_close(&w);
}

/* ---- Receive Maximum ----------------------------------------------------- */

static void broker_keeps_within_the_clients_receive_maximum(th_ctx_t *t)
{
    th_m5_t sub, pub;
    char want[8];
    props_t *p = add_int16(NULL, MQTT_PROP_RECEIVE_MAXIMUM, 2);
    th_m5_opts_t o = {.id = "rmax", .clean = true, .props = p};
    th_m5_open(&sub, t->port, &o);
    mosquitto_property_free_all(&p);
    th_m5_subscribe(&sub, "rmax/t", 1, NULL);
    open_clean(&pub, t, "rmax-pub");
    for (int i = 0; i < 8; i++) {
        snprintf(want, sizeof want, "m%d", i);
        th_m5_publish(&pub, "rmax/t", want, 2, 1, false, NULL);
    }
    th_m5_wait_acks(&pub, NULL, 8, TH_WAIT_MS);
    /* The subscriber has not read anything yet: on its socket are exactly
     * the 2 PUBLISH packets its Receive Maximum allows (MQTT-3.3.4-9),
     * and no more come while it does not answer. */
    int fd = mosquitto_socket(sub.m);
    int64_t deadline = th_now_ms() + TH_WAIT_MS;
    while (peek_publishes(fd) < 2 && th_now_ms() < deadline)
        th_sleep_ms(10);
    th_sleep_ms(300);
    assert_int_equal(peek_publishes(fd), 2);
    th_m5_wait_msgs(&sub, NULL, 8, TH_WAIT_MS); /* its PUBACKs open the window */
    for (int i = 0; i < 8; i++) {
        snprintf(want, sizeof want, "m%d", i);
        expect_msg(&sub, i, "rmax/t", want);
    }
    th_m5_close(&pub);
    th_m5_close(&sub);
}

static void publisher_over_the_brokers_receive_maximum_gets_0x93(th_ctx_t *t)
{
    th_m5_t c;
    uint16_t rm = 0;
    /* Within the limit: libmosquitto reads Receive Maximum 2 from the
     * CONNACK and keeps 10 QoS 2 publishes to 2 at a time. */
    open_clean(&c, t, "rm-ok");
    assert_true(th_m5_prop_int16(c.connack_props, MQTT_PROP_RECEIVE_MAXIMUM, &rm));
    assert_int_equal(rm, 2);
    for (int i = 0; i < 10; i++)
        th_m5_publish(&c, "rm/t", "x", 1, 2, false, NULL);
    th_m5_wait_acks(&c, NULL, 10, TH_WAIT_MS);
    assert_false(c.disconnected);
    th_m5_close(&c);
    /* Over it: 5 QoS 2 PUBLISH packets written before the CONNACK is read
     * (the library does not know the limit yet); none is completed, so
     * the third is one too many (3.3.4, 4.9). */
    th_m5_opts_t o = {.id = "rm-over", .clean = true};
    th_m5_start(&c, t->port, &o);
    for (int i = 0; i < 5; i++)
        th_m5_publish(&c, "rm/t", "x", 1, 2, false, NULL);
    assert_int_equal(th_m5_wait_disconnect(&c, TH_WAIT_MS),
                     MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED);
    th_m5_drop(&c);
}

/* ---- Maximum Packet Size ------------------------------------------------- */

static void message_over_the_clients_maximum_packet_size_is_not_sent_to_it(th_ctx_t *t)
{
    th_m5_t small, big, pub;
    char payload[600];
    memset(payload, 'z', sizeof payload);
    props_t *p = add_int32(NULL, MQTT_PROP_MAXIMUM_PACKET_SIZE, 200);
    th_m5_opts_t o = {.id = "mps-small", .clean = true, .props = p};
    th_m5_open(&small, t->port, &o);
    mosquitto_property_free_all(&p);
    open_clean(&big, t, "mps-big");
    open_clean(&pub, t, "mps-pub");
    th_m5_subscribe(&small, "mps/t", 1, NULL);
    th_m5_subscribe(&big, "mps/t", 1, NULL);
    th_m5_publish(&pub, "mps/t", "before", 6, 1, false, NULL);
    th_m5_publish(&pub, "mps/t", payload, (int)sizeof payload, 1, false, NULL);
    th_m5_publish(&pub, "mps/t", "after", 5, 1, false, NULL);
    th_m5_wait_acks(&pub, NULL, 3, TH_WAIT_MS);
    th_m5_wait_msgs(&big, NULL, 3, TH_WAIT_MS);
    assert_int_equal(big.msgs[1].len, (int)sizeof payload);
    /* MQTT-3.1.2-25: dropped for that client only, the rest flows on. */
    th_m5_wait_msgs(&small, NULL, 2, TH_WAIT_MS);
    expect_msg(&small, 0, "mps/t", "before");
    expect_msg(&small, 1, "mps/t", "after");
    th_m5_expect_no_msg(&small, NULL, 300);
    assert_false(small.disconnected);
    /* The same for a retained message sent on subscribe. */
    th_m5_publish(&pub, "mps/r", payload, (int)sizeof payload, 1, true, NULL);
    th_m5_publish(&pub, "mps/r2", "fits", 4, 1, true, NULL);
    th_m5_wait_acks(&pub, NULL, 5, TH_WAIT_MS);
    th_m5_subscribe(&small, "mps/+", 1, NULL);
    th_m5_wait_msgs(&small, NULL, 3, TH_WAIT_MS);
    expect_msg(&small, 2, "mps/r2", "fits");
    th_m5_expect_no_msg(&small, NULL, 300);
    th_m5_close(&pub);
    th_m5_close(&big);
    th_m5_close(&small);
}

static void packet_over_the_brokers_maximum_packet_size_gets_0x95(th_ctx_t *t)
{
    th_m5_t c;
    uint32_t max = 0;
    static char payload[2000];
    memset(payload, 'p', sizeof payload);
    /* After the CONNACK libmosquitto knows the limit and refuses itself. */
    open_clean(&c, t, "mps-ok");
    assert_true(th_m5_prop_int32(c.connack_props, MQTT_PROP_MAXIMUM_PACKET_SIZE, &max));
    assert_int_equal(max, 1000);
    assert_int_equal(th_m5_try_publish(&c, NULL, "mps/t", payload,
                                       (int)sizeof payload, 0, false, NULL),
                     MOSQ_ERR_OVERSIZE_PACKET);
    th_m5_close(&c);
    /* Before it, the packet goes out and the broker refuses it. */
    th_m5_opts_t o = {.id = "mps-over", .clean = true};
    th_m5_start(&c, t->port, &o);
    th_m5_publish(&c, "mps/t", payload, (int)sizeof payload, 0, false, NULL);
    assert_int_equal(th_m5_wait_disconnect(&c, TH_WAIT_MS),
                     MQTT_RC_PACKET_TOO_LARGE);
    th_m5_drop(&c);
}

/* ---- request / response -------------------------------------------------- */

/* Collects the User Properties of p in order as "k=v;" into out. */
static void user_props(const props_t *p, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (; p != NULL; p = mosquitto_property_next(p)) {
        char *k = NULL, *v = NULL;
        if (mosquitto_property_identifier(p) != MQTT_PROP_USER_PROPERTY)
            continue;
        mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &k,
                                            &v, false);
        n += (size_t)snprintf(out + n, cap - n, "%s=%s;", k, v);
        free(k);
        free(v);
        assert_true(n < cap);
    }
}

static void request_response_properties_are_forwarded_unchanged(th_ctx_t *t)
{
    th_m5_t req, resp;
    char s[128];
    unsigned char corr[16];
    size_t clen = 0;
    uint8_t pfi = 0;
    static const unsigned char id[] = {0x00, 0xff, 0x10, 'q'};
    open_clean(&req, t, "requester");
    open_clean(&resp, t, "responder");
    th_m5_subscribe(&resp, "svc/req", 1, NULL);
    th_m5_subscribe(&req, "svc/reply/requester", 1, NULL);
    props_t *p = add_string(NULL, MQTT_PROP_RESPONSE_TOPIC, "svc/reply/requester");
    p = add_binary(p, MQTT_PROP_CORRELATION_DATA, id, sizeof id);
    p = add_string(p, MQTT_PROP_CONTENT_TYPE, "application/json");
    p = add_byte(p, MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, 1);
    p = add_user(p, "a", "1");
    p = add_user(p, "b", "2");
    p = add_user(p, "a", "3");
    th_m5_publish(&req, "svc/req", "{\"x\":1}", 7, 1, false, p);
    mosquitto_property_free_all(&p);
    th_m5_wait_msgs(&resp, &req, 1, TH_WAIT_MS);
    const props_t *got = resp.msgs[0].props; /* MQTT-3.3.2-15..20 */
    assert_true(th_m5_prop_string(got, MQTT_PROP_RESPONSE_TOPIC, s, sizeof s));
    assert_string_equal(s, "svc/reply/requester");
    assert_true(th_m5_prop_binary(got, MQTT_PROP_CORRELATION_DATA, corr,
                                  sizeof corr, &clen));
    assert_int_equal(clen, sizeof id);
    assert_memory_equal(corr, id, sizeof id);
    assert_true(th_m5_prop_string(got, MQTT_PROP_CONTENT_TYPE, s, sizeof s));
    assert_string_equal(s, "application/json");
    assert_true(th_m5_prop_byte(got, MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, &pfi));
    assert_int_equal(pfi, 1);
    user_props(got, s, sizeof s); /* order kept, MQTT-3.3.2-18 */
    assert_string_equal(s, "a=1;b=2;a=3;");
    /* The responder answers on the Response Topic with the same data. */
    props_t *r = add_binary(NULL, MQTT_PROP_CORRELATION_DATA, corr, (uint16_t)clen);
    th_m5_publish(&resp, "svc/reply/requester", "ok", 2, 1, false, r);
    mosquitto_property_free_all(&r);
    th_m5_wait_msgs(&req, &resp, 1, TH_WAIT_MS);
    expect_msg(&req, 0, "svc/reply/requester", "ok");
    assert_true(th_m5_prop_binary(req.msgs[0].props, MQTT_PROP_CORRELATION_DATA,
                                  corr, sizeof corr, &clen));
    assert_memory_equal(corr, id, sizeof id);
    th_m5_close(&resp);
    th_m5_close(&req);
}

static void many_user_properties_are_forwarded_in_order(th_ctx_t *t)
{
    th_m5_t sub, pub;
    char k[16], v[64], want[4096], got[4096];
    size_t n = 0;
    props_t *p = NULL;
    open_clean(&sub, t, "up-sub");
    open_clean(&pub, t, "up-pub");
    th_m5_subscribe_id(&sub, "up/#", 1, 200); /* a two-byte varint */
    for (int i = 0; i < 40; i++) { /* about 1.3 KB of properties */
        snprintf(k, sizeof k, "key-%02d", 39 - i);
        snprintf(v, sizeof v, "value %02d with some length to it", i);
        p = add_user(p, k, v);
        n += (size_t)snprintf(want + n, sizeof want - n, "%s=%s;", k, v);
    }
    th_m5_publish(&pub, "up/x", "p", 1, 1, false, p);
    th_m5_wait_msgs(&sub, &pub, 1, TH_WAIT_MS);
    user_props(sub.msgs[0].props, got, sizeof got);
    assert_string_equal(got, want); /* MQTT-3.3.2-18: all, in order */
    uint32_t ids[4];
    assert_int_equal(th_m5_sub_ids(sub.msgs[0].props, ids, 4), 1);
    assert_int_equal(ids[0], 200);
    th_m5_publish(&pub, "up/y", "q", 1, 1, false, NULL);
    th_m5_publish(&pub, "up/t/deeper", "r", 1, 1, false, NULL);
    th_m5_wait_msgs(&sub, &pub, 3, TH_WAIT_MS);
    assert_int_equal(th_m5_sub_ids(sub.msgs[1].props, ids, 4), 1);
    assert_int_equal(ids[0], 200);
    mosquitto_property_free_all(&p);
    /* The largest identifier (a four-byte varint), on another client. */
    th_m5_t solo;
    open_clean(&solo, t, "up-solo");
    th_m5_subscribe_id(&solo, "up/t", 0, 268435455);
    th_m5_publish(&pub, "up/t", "s", 1, 0, false, NULL);
    th_m5_wait_msgs(&solo, &pub, 1, TH_WAIT_MS);
    assert_int_equal(th_m5_sub_ids(solo.msgs[0].props, ids, 4), 1);
    assert_int_equal(ids[0], 268435455);
    th_m5_close(&solo);
    th_m5_close(&sub);
    th_m5_close(&pub);
}

static void payload_format_1_with_invalid_utf8_gets_0x99(th_ctx_t *t)
{
    th_m5_t sub, pub;
    open_clean(&sub, t, "pf-sub");
    open_clean(&pub, t, "pf-pub");
    th_m5_subscribe(&sub, "pf/t", 1, NULL);
    props_t *p = add_byte(NULL, MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, 1);
    th_m5_publish(&pub, "pf/t", "caf\xc3\xa9", 5, 1, false, p); /* valid */
    th_m5_wait_msgs(&sub, &pub, 1, TH_WAIT_MS);
    th_m5_publish(&pub, "pf/t", "\xc3\x28", 2, 1, false, p); /* MQTT-3.3.2-4 */
    mosquitto_property_free_all(&p);
    assert_int_equal(th_m5_wait_disconnect(&pub, TH_WAIT_MS),
                     MQTT_RC_PAYLOAD_FORMAT_INVALID);
    th_m5_expect_no_msg(&sub, NULL, 300);
    th_m5_drop(&pub);
    th_m5_close(&sub);
}

static void mosquitto_pub_and_sub_v5_carry_properties(th_ctx_t *t)
{
    char port[8], out[256];
    snprintf(port, sizeof port, "%u", t->port);
    snprintf(out, sizeof out, "%s/sub.out", t->broker->dir);
    const char *pub[] = {
        "mosquitto_pub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", port,
        "-i", "cli-pub", "-t", "cli/t", "-m", "hello", "-q", "1", "-r",
        "-D", "publish", "content-type", "text/plain",
        "-D", "publish", "response-topic", "cli/reply",
        "-D", "publish", "correlation-data", "c0rr",
        "-D", "publish", "user-property", "k", "v",
        "-D", "publish", "payload-format-indicator", "1",
        "-D", "publish", "message-expiry-interval", "600", NULL};
    assert_int_equal(th_cmd_run(pub, NULL, TH_WAIT_MS), 0);
    /* The retained copy keeps its properties; the subscription adds its
     * identifier. */
    const char *sub[] = {
        "mosquitto_sub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", port,
        "-i", "cli-sub", "-t", "cli/#", "-C", "1", "-W", "5",
        "-D", "subscribe", "subscription-identifier", "42",
        "-F", "%t|%p|%C|%R|%D|%P|%F|%S|%r", NULL};
    assert_int_equal(th_cmd_run(sub, out, 8000), 0);
    char *text = th_file_read(out);
    if (strcmp(text, "cli/t|hello|text/plain|cli/reply|c0rr|k:v|1|42|1\n") != 0) {
        print_error("mosquitto_sub printed: %s\n", text);
        free(text);
        fail_msg("properties did not survive mosquitto_pub -> uvmq -> mosquitto_sub");
    }
    free(text);
}

/* ---- reason codes -------------------------------------------------------- */

static void puback_says_0x10_when_nobody_subscribed(th_ctx_t *t)
{
    th_m5_t pub, sub;
    char why[128];
    open_clean(&pub, t, "rc-pub");
    th_m5_publish(&pub, "rc/t", "x", 1, 1, false, NULL);
    th_m5_wait_acks(&pub, NULL, 1, TH_WAIT_MS);
    assert_int_equal(pub.acks[0].reason, MQTT_RC_NO_MATCHING_SUBSCRIBERS);
    /* No Reason String with 0x10: some libraries refuse an acknowledgement
     * longer than 4 bytes (only error codes carry one). */
    assert_false(th_m5_prop_string(pub.ack_props, MQTT_PROP_REASON_STRING, why, sizeof why));
    open_clean(&sub, t, "rc-sub");
    th_m5_subscribe(&sub, "rc/t", 1, NULL);
    th_m5_publish(&pub, "rc/t", "y", 1, 1, false, NULL);
    th_m5_wait_acks(&pub, &sub, 2, TH_WAIT_MS);
    assert_int_equal(pub.acks[1].reason, MQTT_RC_SUCCESS);
    assert_int_equal(th_m5_prop_count(pub.ack_props, MQTT_PROP_REASON_STRING), 0);
    th_m5_wait_msgs(&sub, &pub, 1, TH_WAIT_MS);
    th_m5_close(&sub);
    th_m5_close(&pub);
}

static void pubrec_says_0x10_when_nobody_subscribed(th_ctx_t *t)
{
    /* libmosquitto reports a QoS 2 flow by its PUBCOMP: raw bytes here.
     * PUBLISH QoS 2 id 1 "nobody" (v5, no properties). */
    static const unsigned char pub[] = {
        0x34, 0x0c, 0x00, 0x06, 'n', 'o', 'b', 'o', 'd', 'y', 0x00, 0x01,
        0x00, 'x'};
    int fd = th_mqtt_open(t->port, 5, "rec", 0x02, 60);
    th_send(fd, pub, sizeof pub);
    assert_int_equal(th_expect_ack(fd, 0x50, 1, TH_WAIT_MS),
                     MQTT_RC_NO_MATCHING_SUBSCRIBERS);
    th_send_ack(fd, 0x62, 1);
    th_expect_ack(fd, 0x70, 1, TH_WAIT_MS);
    th_mqtt_disconnect(fd);
}

static void suback_grants_qos_or_says_0x8f(th_ctx_t *t)
{
    th_m5_t c;
    char why[128];
    open_clean(&c, t, "sa");
    assert_int_equal(th_m5_subscribe(&c, "sa/0", 0, NULL), 0);
    assert_int_equal(th_m5_subscribe(&c, "sa/1", 1, NULL), 1);
    assert_int_equal(th_m5_subscribe(&c, "sa/2", 2, NULL), 2);
    /* max_topic_levels is 4: a deeper filter is valid but refused. */
    assert_int_equal(th_m5_prop_count(c.suback_props, MQTT_PROP_REASON_STRING), 0);
    assert_int_equal(th_m5_subscribe(&c, "sa/b/c/d/e", 1, NULL),
                     MQTT_RC_TOPIC_FILTER_INVALID);
    assert_true(th_m5_prop_string(c.suback_props, MQTT_PROP_REASON_STRING, why,
                                  sizeof why)); /* 3.9.2.1.2 */
    assert_false(c.disconnected); /* a refused filter is not an error */
    th_m5_close(&c);
}

static void unsuback_says_0x11_when_no_subscription_existed(th_ctx_t *t)
{
    /* libmosquitto 2.0.11 hides UNSUBACK reason codes: raw bytes.
     * SUBSCRIBE id 1 "us" QoS 0; UNSUBSCRIBE id 2 "us", "none". */
    static const unsigned char sub[] = {
        0x82, 0x08, 0x00, 0x01, 0x00, 0x00, 0x02, 'u', 's', 0x00};
    static const unsigned char suback[] = {0x90, 0x04, 0x00, 0x01, 0x00, 0x00};
    static const unsigned char unsub[] = {
        0xa2, 0x0d, 0x00, 0x02, 0x00, 0x00, 0x02, 'u', 's',
        0x00, 0x04, 'n', 'o', 'n', 'e'};
    static const unsigned char unsuback[] = { /* Reason String for the 0x11 */
        0xb0, 0x1f, 0x00, 0x02, 0x1a, 0x1f, 0x00, 0x17,
        'n', 'o', ' ', 's', 'u', 'b', 's', 'c', 'r', 'i', 'p', 't', 'i', 'o', 'n',
        ' ', 'e', 'x', 'i', 's', 't', 'e', 'd', 0x00, 0x11};
    int fd = th_mqtt_open(t->port, 5, "us", 0x02, 60);
    th_send(fd, sub, sizeof sub);
    th_expect(fd, suback, sizeof suback, TH_WAIT_MS);
    th_send(fd, unsub, sizeof unsub);
    th_expect(fd, unsuback, sizeof unsuback, TH_WAIT_MS);
    th_mqtt_disconnect(fd);
    /* A real client's UNSUBSCRIBE is answered and stops delivery; the
     * Reason String it can see tells 0x11 from 0x00 (3.11.2.1.2). */
    th_m5_t c, pub;
    char why[128];
    open_clean(&c, t, "us5");
    open_clean(&pub, t, "us5-pub");
    th_m5_unsubscribe(&c, "us/none");
    assert_true(th_m5_prop_string(c.unsuback_props, MQTT_PROP_REASON_STRING,
                                  why, sizeof why));
    assert_string_equal(why, "no subscription existed");
    th_m5_subscribe(&c, "us/t", 1, NULL);
    th_m5_unsubscribe(&c, "us/t");
    assert_int_equal(th_m5_prop_count(c.unsuback_props, MQTT_PROP_REASON_STRING), 0);
    th_m5_publish(&pub, "us/t", "x", 1, 1, false, NULL);
    th_m5_wait_acks(&pub, NULL, 1, TH_WAIT_MS);
    th_m5_expect_no_msg(&c, &pub, 300);
    th_m5_close(&pub);
    th_m5_close(&c);
}

static void server_shutdown_gets_disconnect_0x8b(th_ctx_t *t)
{
    th_m5_t c;
    open_clean(&c, t, "bye");
    assert_int_equal(th_broker_stop(t->broker), 0); /* SIGTERM, exit 0 */
    assert_int_equal(th_m5_wait_disconnect(&c, TH_WAIT_MS),
                     MQTT_RC_SERVER_SHUTTING_DOWN); /* docs/protocol.md */
    th_m5_drop(&c);
}

static void request_problem_information_0_keeps_reason_strings_off_acks(th_ctx_t *t)
{
    th_m5_t c;
    char why[128];
    props_t *p = add_byte(NULL, MQTT_PROP_REQUEST_PROBLEM_INFORMATION, 0);
    th_m5_opts_t o = {.id = "rpi", .clean = true, .props = p};
    th_m5_open(&c, t->port, &o);
    mosquitto_property_free_all(&p);
    th_m5_publish(&c, "rpi/t", "x", 1, 1, false, NULL);
    th_m5_wait_acks(&c, NULL, 1, TH_WAIT_MS);
    assert_int_equal(c.acks[0].reason, MQTT_RC_NO_MATCHING_SUBSCRIBERS);
    /* MQTT-3.1.2-29: the code, but no Reason String. */
    assert_int_equal(th_m5_prop_count(c.ack_props, MQTT_PROP_REASON_STRING), 0);
    th_m5_unsubscribe(&c, "rpi/none");
    assert_false(th_m5_prop_string(c.unsuback_props, MQTT_PROP_REASON_STRING,
                                   why, sizeof why));
    th_m5_close(&c);
}

static void reason_string_is_left_out_rather_than_pass_maximum_packet_size(th_ctx_t *t)
{
    th_m5_t c;
    /* A PUBACK with reason 0x10 takes 5 or 6 bytes; its Reason String
     * would make it 32 (MQTT-3.4.2-2). */
    props_t *p = add_int32(NULL, MQTT_PROP_MAXIMUM_PACKET_SIZE, 20);
    th_m5_opts_t o = {.id = "small", .clean = true, .props = p};
    th_m5_open(&c, t->port, &o);
    mosquitto_property_free_all(&p);
    th_m5_publish(&c, "small/t", "x", 1, 1, false, NULL);
    th_m5_wait_acks(&c, NULL, 1, TH_WAIT_MS);
    assert_int_equal(c.acks[0].reason, MQTT_RC_NO_MATCHING_SUBSCRIBERS);
    assert_int_equal(th_m5_prop_count(c.ack_props, MQTT_PROP_REASON_STRING), 0);
    assert_false(c.disconnected);
    th_m5_close(&c);
}

static void server_disconnect_carries_a_reason_string(th_ctx_t *t)
{
    /* libmosquitto 2.0.11 drops a DISCONNECT's properties: raw bytes. */
    unsigned char buf[256];
    char why[64];
    int first = th_mqtt_open(t->port, 5, "rs", 0x02, 60);
    int second = th_mqtt_open(t->port, 5, "rs", 0x02, 60);
    int n = th_read_type(first, 0xe0, buf, sizeof buf, TH_WAIT_MS);
    size_t h = th_header_len(buf);
    assert_true((size_t)n > h + 1);
    assert_int_equal(buf[h], 0x8e);
    size_t at = th_v5_prop(buf, (size_t)n, h + 1, 0x1f); /* 3.14.2.2.3 */
    assert_true(at != 0);
    size_t len = (size_t)buf[at] << 8 | buf[at + 1];
    assert_true(len > 0 && len < sizeof why);
    memcpy(why, buf + at + 2, len);
    why[len] = '\0';
    assert_string_equal(why, "session taken over");
    th_expect_closed(first, TH_WAIT_MS);
    th_close(first);
    th_mqtt_disconnect(second);
}

static void keep_alive_timeout_gets_disconnect_0x8d(th_ctx_t *t)
{
    th_m5_t c;
    uint16_t ka = 0;
    th_m5_opts_t o = {.id = "ka1", .clean = true, .keepalive = 60};
    th_m5_open(&c, t->port, &o);
    /* max_keepalive 1: the client is told 1 s, then stays silent. */
    assert_true(th_m5_prop_int16(c.connack_props, MQTT_PROP_SERVER_KEEP_ALIVE, &ka));
    assert_int_equal(ka, 1);
    th_sleep_ms(3000); /* 1.5 x 1 s, checked once a second */
    assert_int_equal(th_m5_wait_disconnect(&c, TH_WAIT_MS),
                     MQTT_RC_KEEP_ALIVE_TIMEOUT);
    th_m5_drop(&c);
}

static void takeover_gets_disconnect_0x8e(th_ctx_t *t)
{
    th_m5_t first, second;
    open_clean(&first, t, "twin");
    open_clean(&second, t, "twin");
    assert_int_equal(th_m5_wait_disconnect(&first, TH_WAIT_MS),
                     MQTT_RC_SESSION_TAKEN_OVER);
    assert_false(second.disconnected);
    th_m5_close(&second);
    th_m5_drop(&first);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_TEST_CFG(connack_describes_the_server,
                    "{\"max_inflight\": 10, \"max_packet_size\": 100000}\n"),
        TH_TEST_CFG(connack_server_keep_alive_caps_the_ask,
                    "{\"max_keepalive\": 30}\n"),
        TH_TEST(connack_assigns_a_client_identifier_to_an_empty_one),
        TH_TEST(assigned_client_identifier_resumes_its_session),
        TH_TEST_CFG(refused_connect_gets_reason_code_and_reason_string,
                    "{\"max_client_id_len\": 23}\n"),
        TH_TEST(no_local_keeps_a_clients_own_messages_from_it),
        TH_TEST(retain_as_published_keeps_the_retain_flag_live),
        TH_TEST(retain_handling_0_1_2_decide_when_retained_messages_come),
        TH_TEST(subscription_identifiers_come_with_every_matching_message),
        TH_TEST(overlapping_subscriptions_carry_every_identifier_in_one_copy),
        TH_TEST(expired_messages_are_not_delivered_to_a_returning_session),
        TH_TEST(live_message_carries_its_expiry_interval),
        TH_TEST(expired_retained_message_is_not_sent_on_subscribe),
        TH_TEST(queued_message_keeps_its_subscription_identifier),
        TH_TEST(subscription_options_identifiers_and_properties_survive_a_restart),
        TH_TEST(session_is_kept_for_its_expiry_interval_then_ends),
        TH_TEST(session_expiry_0_ends_the_session_at_disconnect),
        TH_TEST(session_expiry_changed_at_disconnect_is_honoured),
        TH_TEST_CFG(takeover_honours_a_disconnect_the_broker_had_not_read,
                    "{\"max_out_bytes\": 65536, \"max_packet_size\": 67108864}\n"),
        TH_TEST(delayed_will_is_not_sent_when_the_client_returns_in_time),
        TH_TEST(delayed_will_is_sent_after_the_delay_with_its_properties),
        TH_TEST(delayed_will_is_sent_at_once_when_a_clean_start_ends_the_session),
        TH_TEST(will_is_sent_when_the_session_expires_before_the_delay),
        TH_TEST(disconnect_with_will_message_0x04_publishes_the_will),
        TH_TEST(broker_keeps_within_the_clients_receive_maximum),
        TH_TEST_CFG(publisher_over_the_brokers_receive_maximum_gets_0x93,
                    "{\"max_inflight\": 2}\n"),
        TH_TEST(message_over_the_clients_maximum_packet_size_is_not_sent_to_it),
        TH_TEST_CFG(packet_over_the_brokers_maximum_packet_size_gets_0x95,
                    "{\"max_packet_size\": 1000}\n"),
        TH_TEST(request_response_properties_are_forwarded_unchanged),
        TH_TEST(many_user_properties_are_forwarded_in_order),
        TH_TEST(payload_format_1_with_invalid_utf8_gets_0x99),
        TH_TEST(mosquitto_pub_and_sub_v5_carry_properties),
        TH_TEST(puback_says_0x10_when_nobody_subscribed),
        TH_TEST(pubrec_says_0x10_when_nobody_subscribed),
        TH_TEST_CFG(suback_grants_qos_or_says_0x8f, "{\"max_topic_levels\": 4}\n"),
        TH_TEST(unsuback_says_0x11_when_no_subscription_existed),
        TH_TEST_CFG(keep_alive_timeout_gets_disconnect_0x8d,
                    "{\"max_keepalive\": 1}\n"),
        TH_TEST(takeover_gets_disconnect_0x8e),
        TH_TEST(server_shutdown_gets_disconnect_0x8b),
        TH_TEST(request_problem_information_0_keeps_reason_strings_off_acks),
        TH_TEST(reason_string_is_left_out_rather_than_pass_maximum_packet_size),
        TH_TEST(server_disconnect_carries_a_reason_string),
    };
    return cmocka_run_group_tests_name("integration/16-v5", tests, NULL, NULL);
}

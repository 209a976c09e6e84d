/*
 * 19-alias - MQTT 5 topic aliases both ways, Response Information, the
 * request/response properties forwarded unchanged, and enhanced
 * authentication refused.
 *
 * Scenario: raw v5 clients (every byte written here, never by uvmq's
 * encoder) see the wire. Client to server: CONNACK advertises Topic Alias
 * Maximum 10 (0 with "topic_alias_max": 0); a PUBLISH that sets alias 1
 * and one with an empty topic and alias 1 both reach a subscriber under
 * the full topic; alias 0 or 11 gets DISCONNECT 0x94, an empty topic with
 * an alias never set or with no alias DISCONNECT 0x82. Server to client:
 * a subscriber whose CONNECT allows 2 aliases gets each topic once with a
 * new alias, then the alias with an empty topic, the least recently used
 * alias taken over for a third topic, while a v5 subscriber that allows
 * none gets whole topics from the same fan-out; a resumed session's
 * resends assign aliases afresh on the new connection; a message dropped
 * for the client's Maximum Packet Size leaves no alias behind.
 * A libmosquitto v5 publisher's aliases reach a libmosquitto subscriber
 * as whole topics.
 * Request Response Information 1 gets Response Information
 * "resp/<client id>". Response Topic, Correlation Data, User Properties,
 * Content Type and Payload Format Indicator arrive as sent. A CONNECT
 * with an Authentication Method gets CONNACK 0x8C (raw, libmosquitto and
 * mosquitto_pub), one with Authentication Data and no method CONNACK
 * 0x82, and AUTH after a plain CONNECT DISCONNECT 0x82.
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
#include <mqtt_protocol.h>

#include "tests/integration/harness/harness.h"
#include "tests/integration/harness/mosq5.h"

/* ---- raw v5 packets ---- */

/* Connects a raw v5 client with CONNECT flags and properties
 * props[0..np); the CONNACK goes into connack (its length returned in
 * *clen). Fails the test unless a CONNACK arrives. Returns the fd. */
static int v5_open(uint16_t port, const char *id, uint8_t flags, const uint8_t *props, size_t np,
                   unsigned char *connack, size_t cap, int *clen)
{
    unsigned char pkt[256];
    size_t idlen = strlen(id), n = 2;
    assert_true(np < 100 && idlen < 100);
    memcpy(pkt + n, "\x00\x04MQTT\x05", 7);
    n += 7;
    pkt[n++] = flags;
    pkt[n++] = 0;
    pkt[n++] = 60;
    pkt[n++] = (unsigned char)np;
    if (np > 0) memcpy(pkt + n, props, np);
    n += np;
    pkt[n++] = 0;
    pkt[n++] = (unsigned char)idlen;
    memcpy(pkt + n, id, idlen);
    n += idlen;
    pkt[0] = 0x10;
    pkt[1] = (unsigned char)(n - 2);
    int fd = th_connect(port);
    th_send(fd, pkt, n);
    *clen = th_read_type(fd, 0x20, connack, cap, TH_WAIT_MS);
    return fd;
}

/* v5_open that fails the test unless the CONNACK is a success. */
static int v5_connect(uint16_t port, const char *id, uint8_t flags, const uint8_t *props,
                      size_t np)
{
    unsigned char ack[256];
    int n = 0;
    int fd = v5_open(port, id, flags, props, np, ack, sizeof ack, &n);
    if (n < 4 || ack[3] != 0) {
        th_hexdump("CONNACK", ack, (size_t)n);
        fail_msg("CONNECT of %s refused", id);
    }
    return fd;
}

/* Sends a v5 PUBLISH of topic (may be empty) with Topic Alias alias
 * (NONE: no property) at QoS qos (id 1 when > 0). */
#define NONE (-1)
static void v5_publish(int fd, const char *topic, int alias, int qos, const char *payload)
{
    unsigned char pkt[256];
    size_t tl = strlen(topic), pl = strlen(payload), n = 2;
    pkt[0] = (unsigned char)(0x30 | (qos << 1));
    pkt[n++] = (unsigned char)(tl >> 8);
    pkt[n++] = (unsigned char)tl;
    memcpy(pkt + n, topic, tl);
    n += tl;
    if (qos > 0) {
        pkt[n++] = 0;
        pkt[n++] = 1;
    }
    if (alias >= 0) {
        pkt[n++] = 3;
        pkt[n++] = 0x23;
        pkt[n++] = (unsigned char)(alias >> 8);
        pkt[n++] = (unsigned char)alias;
    } else {
        pkt[n++] = 0;
    }
    memcpy(pkt + n, payload, pl);
    n += pl;
    assert_true(n - 2 < 128);
    pkt[1] = (unsigned char)(n - 2);
    th_send(fd, pkt, n);
}

/* A PUBLISH a raw v5 client received. */
typedef struct rx_s {
    char topic[128];
    uint16_t alias; /* 0 when absent */
    char payload[256];
    int qos;
    bool dup;
    uint16_t id;
} rx_t;

/* Reads one v5 PUBLISH from fd into r. */
static void v5_read_pub(int fd, rx_t *r)
{
    unsigned char b[1024];
    int n = th_read_type(fd, 0x30, b, sizeof b, TH_WAIT_MS);
    size_t off = th_header_len(b), tl = ((size_t)b[off] << 8) | b[off + 1], plen = 0, i = 0;
    memset(r, 0, sizeof *r);
    r->qos = (b[0] >> 1) & 3;
    r->dup = (b[0] & 0x08) != 0;
    off += 2;
    assert_true(tl < sizeof r->topic);
    memcpy(r->topic, b + off, tl);
    off += tl;
    if (r->qos > 0) {
        r->id = (uint16_t)((b[off] << 8) | b[off + 1]);
        off += 2;
    }
    size_t v = th_v5_prop(b, (size_t)n, off, 0x23);
    if (v != 0) r->alias = (uint16_t)((b[v] << 8) | b[v + 1]);
    do {
        plen |= (size_t)(b[off + i] & 0x7f) << (7 * i);
    } while (b[off + i++] & 0x80);
    off += i + plen;
    assert_true((size_t)n - off < sizeof r->payload);
    memcpy(r->payload, b + off, (size_t)n - off);
}

/* Reads a PUBLISH and checks topic (empty: alias only), alias and
 * payload. */
static void expect_pub(int fd, const char *topic, uint16_t alias, const char *payload)
{
    rx_t r;
    v5_read_pub(fd, &r);
    if (strcmp(r.topic, topic) != 0 || r.alias != alias || strcmp(r.payload, payload) != 0)
        fail_msg("got PUBLISH \"%s\" alias %u \"%s\", expected \"%s\" alias %u \"%s\"", r.topic,
                 r.alias, r.payload, topic, alias, payload);
}

/* A v3.1.1 publisher and a QoS 0 PUBLISH of topic/payload from it. */
static void v3_publish(int fd, const char *topic, int qos, uint16_t id, const char *payload)
{
    unsigned char pkt[512];
    size_t n = th_build_publish(pkt, sizeof pkt, 4, topic, qos, false, false, id, payload,
                                strlen(payload));
    th_send(fd, pkt, n);
    if (qos == 1) th_expect_ack(fd, 0x40, id, TH_WAIT_MS);
}

/* Value of a two-byte property id in a CONNACK (-1 when absent). */
static int connack_u16(const unsigned char *ack, int n, uint8_t id)
{
    size_t v = th_v5_prop(ack, (size_t)n, 4, id);
    return v == 0 ? -1 : (ack[v] << 8) | ack[v + 1];
}

/* Copies a string property of a CONNACK into out ("" when absent). */
static void connack_str(const unsigned char *ack, int n, uint8_t id, char *out, size_t cap)
{
    size_t v = th_v5_prop(ack, (size_t)n, 4, id);
    out[0] = '\0';
    if (v == 0) return;
    size_t len = ((size_t)ack[v] << 8) | ack[v + 1];
    assert_true(len < cap);
    memcpy(out, ack + v + 2, len);
    out[len] = '\0';
}

/* CONNECT properties: Topic Alias Maximum 2 / 5. */
static const uint8_t ALIAS_MAX_2[] = {0x22, 0x00, 0x02};

/* ---- client to server ---- */

static void connack_advertises_ten_aliases_and_the_broker_resolves_them(th_ctx_t *t)
{
    unsigned char ack[256];
    int n = 0;
    int sub = th_mqtt_open(t->port, 4, "in-sub", 0x02, 60);
    th_mqtt_subscribe(sub, 4, 1, "alias/#", 0);
    int pub = v5_open(t->port, "in-pub", 0x02, NULL, 0, ack, sizeof ack, &n);
    assert_int_equal(ack[3], 0);
    assert_int_equal(connack_u16(ack, n, 0x22), 10);
    v5_publish(pub, "alias/t", 1, 0, "one");  /* sets alias 1 */
    v5_publish(pub, "", 1, 0, "two");         /* uses it */
    v5_publish(pub, "alias/u", 1, 0, "three"); /* sets it anew */
    v5_publish(pub, "", 1, 0, "four");
    v5_publish(pub, "", 10, 0, "x");          /* 10 is allowed, but never set: */
    th_expect_disconnect_v5(pub, 0x82, TH_WAIT_MS);
    static const char *const topics[] = {"alias/t", "alias/t", "alias/u", "alias/u"};
    static const char *const payloads[] = {"one", "two", "three", "four"};
    for (int i = 0; i < 4; i++) {
        unsigned char b[256];
        th_publish_t p;
        int len = th_read_type(sub, 0x30, b, sizeof b, TH_WAIT_MS);
        assert_true(th_parse_publish(b, (size_t)len, 4, &p));
        assert_int_equal(p.topic_len, strlen(topics[i]));
        assert_memory_equal(p.topic, topics[i], p.topic_len);
        assert_int_equal(p.len, strlen(payloads[i]));
        assert_memory_equal(p.payload, payloads[i], p.len);
    }
    th_expect_silence(sub, 200);
    th_close(pub);
    th_close(sub);
}

/* A raw v5 client sends one bad PUBLISH and gets DISCONNECT reason. */
static void bad_alias(th_ctx_t *t, const char *topic, int alias, uint8_t reason)
{
    int fd = v5_connect(t->port, "bad-alias", 0x02, NULL, 0);
    v5_publish(fd, topic, alias, 0, "x");
    th_expect_disconnect_v5(fd, reason, TH_WAIT_MS);
    th_close(fd);
}

static void invalid_aliases_get_the_reason_codes_of_the_spec(th_ctx_t *t)
{
    bad_alias(t, "a/b", 11, 0x94); /* over the maximum: MQTT-3.3.2-9, 3.3.4 */
    bad_alias(t, "a/b", 0, 0x94);  /* 0: MQTT-3.3.2-8 (0x23 00 00 on the wire) */
    bad_alias(t, "", 3, 0x82);     /* empty topic, alias never set: 3.3.4 */
    bad_alias(t, "", NONE, 0x82);  /* empty topic, no alias: 3.3.2.1 */
}

static void topic_alias_max_0_advertises_none_and_refuses_them(th_ctx_t *t)
{
    unsigned char ack[256];
    int n = 0;
    int fd = v5_open(t->port, "no-alias", 0x02, NULL, 0, ack, sizeof ack, &n);
    assert_int_equal(connack_u16(ack, n, 0x22), 0);
    v5_publish(fd, "a/b", 1, 0, "x");
    th_expect_disconnect_v5(fd, 0x94, TH_WAIT_MS);
    th_close(fd);
    /* and none towards a client that allows them */
    int sub = v5_connect(t->port, "no-alias-sub", 0x02, ALIAS_MAX_2, sizeof ALIAS_MAX_2);
    th_mqtt_subscribe(sub, 5, 1, "na/#", 0);
    int pub = th_mqtt_open(t->port, 4, "no-alias-pub", 0x02, 60);
    v3_publish(pub, "na/topic", 0, 0, "1");
    v3_publish(pub, "na/topic", 0, 0, "2");
    expect_pub(sub, "na/topic", 0, "1");
    expect_pub(sub, "na/topic", 0, "2");
    th_close(pub);
    th_close(sub);
}

/* ---- server to client ---- */

static void subscriber_allowing_aliases_gets_each_topic_once_then_the_alias(th_ctx_t *t)
{
    int sub = v5_connect(t->port, "out-sub", 0x02, ALIAS_MAX_2, sizeof ALIAS_MAX_2);
    int plain = v5_connect(t->port, "out-plain", 0x02, NULL, 0);
    th_mqtt_subscribe(sub, 5, 1, "out/#", 1);
    th_mqtt_subscribe(plain, 5, 1, "out/#", 0);
    int pub = th_mqtt_open(t->port, 4, "out-pub", 0x02, 60);
    /* Small QoS 0 messages: the fan-out's shared-packet path, which the
     * aliased subscriber must leave. */
    v3_publish(pub, "out/a", 0, 0, "1");
    v3_publish(pub, "out/a", 0, 0, "2");
    v3_publish(pub, "out/b", 0, 0, "3");
    v3_publish(pub, "out/c", 0, 0, "4"); /* both aliases in use: 1 is older */
    v3_publish(pub, "out/a", 0, 0, "5"); /* 2 (out/b) is now the oldest */
    expect_pub(sub, "out/a", 1, "1");
    expect_pub(sub, "", 1, "2");
    expect_pub(sub, "out/b", 2, "3");
    expect_pub(sub, "out/c", 1, "4");
    expect_pub(sub, "out/a", 2, "5");
    static const char *const plain_topics[] = {"out/a", "out/a", "out/b", "out/c", "out/a"};
    for (int i = 0; i < 5; i++) {
        char p[2] = {(char)('1' + i), 0};
        expect_pub(plain, plain_topics[i], 0, p);
    }
    /* QoS 1 takes the per-subscriber path with a packet id: the same table. */
    v3_publish(pub, "out/c", 1, 7, "6");
    rx_t r;
    v5_read_pub(sub, &r);
    assert_string_equal(r.topic, "");
    assert_int_equal(r.alias, 1);
    assert_int_equal(r.qos, 1);
    th_send_ack(sub, 0x40, r.id);
    expect_pub(plain, "out/c", 0, "6");
    th_expect_silence(sub, 200);
    th_close(pub);
    th_close(plain);
    th_close(sub);
}

static void resent_messages_assign_aliases_on_the_new_connection(th_ctx_t *t)
{
    /* Session Expiry 3600, Topic Alias Maximum 5. */
    static const uint8_t props[] = {0x11, 0x00, 0x00, 0x0e, 0x10, 0x22, 0x00, 0x05};
    unsigned char ack[256];
    int n = 0;
    int sub = v5_connect(t->port, "re-sub", 0x00, props, sizeof props);
    th_mqtt_subscribe(sub, 5, 1, "re/#", 1);
    int pub = th_mqtt_open(t->port, 4, "re-pub", 0x02, 60);
    v3_publish(pub, "re/topic", 1, 1, "m1");
    v3_publish(pub, "re/topic", 1, 2, "m2");
    rx_t r1, r2;
    v5_read_pub(sub, &r1);
    v5_read_pub(sub, &r2);
    assert_string_equal(r1.topic, "re/topic");
    assert_int_equal(r1.alias, 1);
    assert_string_equal(r2.topic, "");
    assert_int_equal(r2.alias, 1);
    th_close(sub); /* neither acknowledged */
    /* Resumed: the new connection has no aliases (MQTT-3.3.2-7), so the
     * first resend carries the topic again. */
    sub = v5_open(t->port, "re-sub", 0x00, props, sizeof props, ack, sizeof ack, &n);
    assert_int_equal(ack[3], 0);
    assert_int_equal(ack[2], 1); /* session present */
    v5_read_pub(sub, &r1);
    v5_read_pub(sub, &r2);
    assert_true(r1.dup && r2.dup);
    assert_string_equal(r1.payload, "m1");
    assert_string_equal(r1.topic, "re/topic");
    assert_int_equal(r1.alias, 1);
    assert_string_equal(r2.payload, "m2");
    assert_string_equal(r2.topic, "");
    assert_int_equal(r2.alias, 1);
    th_send_ack(sub, 0x40, r1.id);
    th_send_ack(sub, 0x40, r2.id);
    th_mqtt_disconnect(sub);
    th_close(pub);
}

static void message_dropped_for_maximum_packet_size_leaves_no_alias(th_ctx_t *t)
{
    /* Topic Alias Maximum 5, Maximum Packet Size 64. */
    static const uint8_t props[] = {0x22, 0x00, 0x05, 0x27, 0x00, 0x00, 0x00, 0x40};
    char big[101];
    memset(big, 'b', 100);
    big[100] = '\0';
    int sub = v5_connect(t->port, "mps-sub", 0x02, props, sizeof props);
    th_mqtt_subscribe(sub, 5, 1, "big/#", 0);
    int pub = th_mqtt_open(t->port, 4, "mps-pub", 0x02, 60);
    v3_publish(pub, "big/topic", 0, 0, big); /* too large: never sent */
    v3_publish(pub, "big/topic", 0, 0, "small");
    v3_publish(pub, "big/topic", 0, 0, "again");
    expect_pub(sub, "big/topic", 1, "small"); /* the alias it never saw is not assumed */
    expect_pub(sub, "", 1, "again");
    th_close(pub);
    th_close(sub);
}

/* ---- libmosquitto v5 (th_m5_*) ---- */

/* libmosquitto 2.0.11 (Debian 12) cannot take a PUBLISH with an empty
 * topic and an alias (it drops the connection: eclipse/mosquitto#1468),
 * so its subscriber here does not allow aliases; the raw clients above
 * check that direction. */
static void libmosquitto_v5_publishes_with_aliases(th_ctx_t *t)
{
    th_m5_t sub = {0}, pub = {0};
    th_m5_opts_t so = {.id = "m5-sub", .clean = true}, po = {.id = "m5-pub", .clean = true};
    th_m5_open(&sub, t->port, &so);
    assert_int_equal(th_m5_subscribe(&sub, "lib/#", 0, NULL), 0);
    th_m5_open(&pub, t->port, &po);
    /* The publisher sets alias 3 for lib/one, then uses it alone (no
     * topic: libmosquitto sends an empty one with the alias). */
    for (int i = 0; i < 3; i++) {
        mosquitto_property *pp = NULL;
        char payload[8];
        snprintf(payload, sizeof payload, "p%d", i);
        assert_int_equal(mosquitto_property_add_int16(&pp, MQTT_PROP_TOPIC_ALIAS, 3), 0);
        th_m5_publish(&pub, i == 0 ? "lib/one" : NULL, payload, (int)strlen(payload), 0, false,
                      pp);
        mosquitto_property_free_all(&pp);
    }
    th_m5_publish(&pub, "lib/two", "p3", 2, 0, false, NULL);
    th_m5_wait_msgs(&sub, &pub, 4, TH_WAIT_MS);
    static const char *const topics[] = {"lib/one", "lib/one", "lib/one", "lib/two"};
    for (int i = 0; i < 4; i++) {
        char payload[8];
        snprintf(payload, sizeof payload, "p%d", i);
        assert_string_equal(sub.msgs[i].topic, topics[i]);
        assert_string_equal((const char *)sub.msgs[i].payload, payload);
    }
    th_m5_close(&pub);
    th_m5_close(&sub);
}

/* ---- Response Information ---- */

static const uint8_t REQUEST_RESPONSE_INFO[] = {0x19, 0x01};

static void request_response_information_gets_resp_and_the_client_id(th_ctx_t *t)
{
    unsigned char ack[256];
    char info[128];
    int n = 0;
    int fd = v5_open(t->port, "ri-client", 0x02, REQUEST_RESPONSE_INFO,
                     sizeof REQUEST_RESPONSE_INFO, ack, sizeof ack, &n);
    connack_str(ack, n, 0x1A, info, sizeof info);
    assert_string_equal(info, "resp/ri-client");
    th_close(fd);
    fd = v5_open(t->port, "", 0x02, REQUEST_RESPONSE_INFO, sizeof REQUEST_RESPONSE_INFO, ack,
                 sizeof ack, &n); /* assigned id */
    connack_str(ack, n, 0x1A, info, sizeof info);
    char assigned[64];
    connack_str(ack, n, 0x12, assigned, sizeof assigned);
    assert_true(strncmp(assigned, "uvmq-", 5) == 0);
    assert_true(strncmp(info, "resp/", 5) == 0);
    assert_string_equal(info + 5, assigned);
    th_close(fd);
    fd = v5_open(t->port, "no-ri", 0x02, NULL, 0, ack, sizeof ack, &n);
    assert_int_equal(th_v5_prop(ack, (size_t)n, 4, 0x1A), 0); /* not asked: none */
    th_close(fd);
}

static void response_information_off_sends_none(th_ctx_t *t)
{
    unsigned char ack[256];
    int n = 0;
    int fd = v5_open(t->port, "ri-off", 0x02, REQUEST_RESPONSE_INFO,
                     sizeof REQUEST_RESPONSE_INFO, ack, sizeof ack, &n);
    assert_int_equal(ack[3], 0);
    assert_int_equal(th_v5_prop(ack, (size_t)n, 4, 0x1A), 0);
    th_close(fd);
}

/* ---- request/response properties ---- */

/* The User Properties of p, in order, as "k=v;k=v;". */
static void user_props(const mosquitto_property *p, char *out, size_t cap)
{
    char *k = NULL, *v = NULL;
    bool skip = false;
    size_t n = 0;
    out[0] = '\0';
    while ((p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &k, &v, skip)) !=
           NULL) {
        n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s=%s;", k, v);
        free(k);
        free(v);
        skip = true;
    }
}

static void request_response_properties_arrive_unchanged(th_ctx_t *t)
{
    th_m5_t responder = {0}, requester = {0};
    mosquitto_property *ri = NULL;
    assert_int_equal(mosquitto_property_add_byte(&ri, MQTT_PROP_REQUEST_RESPONSE_INFORMATION, 1),
                     0);
    th_m5_opts_t qo = {.id = "requester", .clean = true, .props = ri};
    th_m5_opts_t ro = {.id = "responder", .clean = true};
    th_m5_open(&requester, t->port, &qo);
    mosquitto_property_free_all(&ri);
    th_m5_open(&responder, t->port, &ro);
    assert_int_equal(th_m5_subscribe(&responder, "svc/echo", 1, NULL), 1);
    /* The requester builds its response topics on its Response Information. */
    char info[64], filter[80], rtopic[80];
    assert_true(th_m5_prop_string(requester.connack_props, MQTT_PROP_RESPONSE_INFORMATION, info,
                                  sizeof info));
    assert_string_equal(info, "resp/requester");
    snprintf(filter, sizeof filter, "%s/#", info);
    snprintf(rtopic, sizeof rtopic, "%s/1", info);
    assert_int_equal(th_m5_subscribe(&requester, filter, 1, NULL), 1);
    static const unsigned char corr[] = {0x00, 0x01, 0xfe, 0xff, 'c'};
    mosquitto_property *pp = NULL;
    assert_int_equal(mosquitto_property_add_string(&pp, MQTT_PROP_RESPONSE_TOPIC, rtopic), 0);
    assert_int_equal(mosquitto_property_add_binary(&pp, MQTT_PROP_CORRELATION_DATA, corr,
                                                   sizeof corr), 0);
    assert_int_equal(mosquitto_property_add_string_pair(&pp, MQTT_PROP_USER_PROPERTY, "k1", "v1"),
                     0);
    assert_int_equal(mosquitto_property_add_string_pair(&pp, MQTT_PROP_USER_PROPERTY, "k1", "v2"),
                     0);
    assert_int_equal(mosquitto_property_add_string(&pp, MQTT_PROP_CONTENT_TYPE,
                                                   "application/json"), 0);
    assert_int_equal(mosquitto_property_add_byte(&pp, MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, 1), 0);
    th_m5_publish(&requester, "svc/echo", "{\"q\":1}", 7, 1, false, pp);
    mosquitto_property_free_all(&pp);
    th_m5_wait_msgs(&responder, &requester, 1, TH_WAIT_MS);
    const th_m5_msg_t *req = &responder.msgs[0];
    char got[128];
    unsigned char cd[32];
    size_t cd_len = 0;
    uint8_t pfi = 0;
    assert_string_equal((const char *)req->payload, "{\"q\":1}");
    assert_true(th_m5_prop_string(req->props, MQTT_PROP_RESPONSE_TOPIC, got, sizeof got));
    assert_string_equal(got, rtopic);
    assert_true(th_m5_prop_binary(req->props, MQTT_PROP_CORRELATION_DATA, cd, sizeof cd, &cd_len));
    assert_int_equal(cd_len, sizeof corr);
    assert_memory_equal(cd, corr, sizeof corr);
    user_props(req->props, got, sizeof got);
    assert_string_equal(got, "k1=v1;k1=v2;"); /* in order, repeats kept */
    assert_true(th_m5_prop_string(req->props, MQTT_PROP_CONTENT_TYPE, got, sizeof got));
    assert_string_equal(got, "application/json");
    assert_true(th_m5_prop_byte(req->props, MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, &pfi));
    assert_int_equal(pfi, 1);
    /* The response goes to the Response Topic with the Correlation Data. */
    pp = NULL;
    assert_int_equal(mosquitto_property_add_binary(&pp, MQTT_PROP_CORRELATION_DATA, cd,
                                                   (uint16_t)cd_len), 0);
    th_m5_publish(&responder, rtopic, "ok", 2, 1, false, pp);
    mosquitto_property_free_all(&pp);
    th_m5_wait_msgs(&requester, &responder, 1, TH_WAIT_MS);
    const th_m5_msg_t *resp = &requester.msgs[0];
    assert_string_equal(resp->topic, rtopic);
    assert_string_equal((const char *)resp->payload, "ok");
    assert_true(th_m5_prop_binary(resp->props, MQTT_PROP_CORRELATION_DATA, cd, sizeof cd, &cd_len));
    assert_int_equal(cd_len, sizeof corr);
    assert_memory_equal(cd, corr, sizeof corr);
    assert_false(th_m5_prop_byte(resp->props, MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, &pfi));
    th_m5_close(&responder);
    th_m5_close(&requester);
}

/* ---- enhanced authentication ---- */

static void authentication_method_gets_connack_0x8c(th_ctx_t *t)
{
    static const uint8_t method[] = {0x15, 0x00, 0x03, 'x', 'y', 'z', 0x16, 0x00, 0x01, 'd'};
    unsigned char ack[256];
    int n = 0;
    size_t from = th_broker_log_size(t->broker);
    int fd = v5_open(t->port, "auth-raw", 0x02, method, sizeof method, ack, sizeof ack, &n);
    assert_int_equal(ack[3], 0x8C); /* Bad authentication method */
    assert_int_equal(th_v5_prop(ack, (size_t)n, 4, 0x15), 0);
    th_expect_closed(fd, TH_WAIT_MS);
    th_close(fd);
    th_broker_logged_once(t->broker, from, "authentication method \"xyz\" not supported");
    /* libmosquitto v5 */
    th_m5_t c = {0};
    mosquitto_property *p = NULL;
    assert_int_equal(mosquitto_property_add_string(&p, MQTT_PROP_AUTHENTICATION_METHOD, "xyz"),
                     0);
    th_m5_opts_t o = {.id = "auth-lib", .clean = true, .props = p};
    assert_int_equal(th_m5_try_open(&c, t->port, &o), 0x8C);
    mosquitto_property_free_all(&p);
    th_m5_close(&c);
    /* mosquitto_pub -V mqttv5 -D connect authentication-method xyz */
    char port[8], out[128];
    snprintf(port, sizeof port, "%u", t->port);
    snprintf(out, sizeof out, "%s/mosquitto_pub.out", t->broker->dir);
    const char *const argv[] = {"mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-V", "mqttv5",
                                "-D", "connect", "authentication-method", "xyz", "-t", "a/b",
                                "-m", "x", NULL};
    assert_int_not_equal(th_cmd_run(argv, out, TH_WAIT_MS), 0);
}

static void authentication_data_without_a_method_gets_connack_0x82(th_ctx_t *t)
{
    static const uint8_t data[] = {0x16, 0x00, 0x01, 'd'};
    unsigned char ack[256];
    int n = 0;
    int fd = v5_open(t->port, "auth-data", 0x02, data, sizeof data, ack, sizeof ack, &n);
    assert_int_equal(ack[3], 0x82); /* 3.1.2.11.10 */
    th_expect_closed(fd, TH_WAIT_MS);
    th_close(fd);
}

static void auth_after_a_plain_connect_is_a_protocol_error(th_ctx_t *t)
{
    /* AUTH 0x19 Re-authenticate, method "xyz". */
    static const uint8_t auth[] = {0xF0, 0x08, 0x19, 0x06, 0x15, 0x00, 0x03, 'x', 'y', 'z'};
    int fd = th_mqtt_open(t->port, 5, "auth-late", 0x02, 60);
    th_send(fd, auth, sizeof auth);
    th_expect_disconnect_v5(fd, 0x82, TH_WAIT_MS); /* MQTT-4.12.0-7 */
    th_close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_TEST(connack_advertises_ten_aliases_and_the_broker_resolves_them),
        TH_TEST(invalid_aliases_get_the_reason_codes_of_the_spec),
        TH_TEST_CFG(topic_alias_max_0_advertises_none_and_refuses_them,
                    "{\"topic_alias_max\": 0}"),
        TH_TEST(subscriber_allowing_aliases_gets_each_topic_once_then_the_alias),
        TH_TEST(resent_messages_assign_aliases_on_the_new_connection),
        TH_TEST(message_dropped_for_maximum_packet_size_leaves_no_alias),
        TH_TEST(libmosquitto_v5_publishes_with_aliases),
        TH_TEST(request_response_information_gets_resp_and_the_client_id),
        TH_TEST_CFG(response_information_off_sends_none,
                    "{\"response_information_prefix\": null}"),
        TH_TEST(request_response_properties_arrive_unchanged),
        TH_TEST(authentication_method_gets_connack_0x8c),
        TH_TEST(authentication_data_without_a_method_gets_connack_0x82),
        TH_TEST(auth_after_a_plain_connect_is_a_protocol_error),
    };
    return cmocka_run_group_tests_name("19-alias", tests, NULL, NULL);
}

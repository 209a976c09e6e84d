/*
 * Unit tests for packets/: round trips of every packet type in 3.1.1 and
 * 5.0 (CONNECT also in 3.1), exact bytes for the simple ones, properties of
 * every type, framing under any fragmentation, varint boundaries, UTF-8.
 * Malformed input lives in malformed.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/xmalloc.h"
#include "packets/packets_int.h"
#include "packets/pkt.h"

#define B(s) ((pkt_bin_t){(const uint8_t *)(s), sizeof(s) - 1})

/* One encode -> decode cycle; the decoded packet borrows `buf`. */
typedef struct rt_s {
    uint8_t buf[8192];
    size_t len;
    arena_t arena;
    pkt_t out;
} rt_t;

static void bin_eq(pkt_bin_t a, pkt_bin_t b)
{
    assert_int_equal(a.len, b.len);
    if (a.len > 0) assert_memory_equal(a.p, b.p, a.len);
}

/* Compares every typed property (not raw). */
static void props_eq(const pkt_props_t *a, const pkt_props_t *b)
{
    assert_int_equal(a->present, b->present);
    assert_int_equal(a->payload_format, b->payload_format);
    assert_int_equal(a->message_expiry, b->message_expiry);
    bin_eq(a->content_type, b->content_type);
    bin_eq(a->response_topic, b->response_topic);
    bin_eq(a->correlation_data, b->correlation_data);
    assert_int_equal(a->n_sub_ids, b->n_sub_ids);
    for (uint32_t i = 0; i < a->n_sub_ids; i++)
        assert_int_equal(a->sub_ids[i], b->sub_ids[i]);
    assert_int_equal(a->session_expiry, b->session_expiry);
    bin_eq(a->assigned_client_id, b->assigned_client_id);
    assert_int_equal(a->server_keep_alive, b->server_keep_alive);
    bin_eq(a->auth_method, b->auth_method);
    bin_eq(a->auth_data, b->auth_data);
    assert_int_equal(a->request_problem_info, b->request_problem_info);
    assert_int_equal(a->will_delay, b->will_delay);
    assert_int_equal(a->request_response_info, b->request_response_info);
    bin_eq(a->response_info, b->response_info);
    bin_eq(a->server_reference, b->server_reference);
    bin_eq(a->reason_string, b->reason_string);
    assert_int_equal(a->receive_max, b->receive_max);
    assert_int_equal(a->topic_alias_max, b->topic_alias_max);
    assert_int_equal(a->topic_alias, b->topic_alias);
    assert_int_equal(a->maximum_qos, b->maximum_qos);
    assert_int_equal(a->retain_available, b->retain_available);
    assert_int_equal(a->n_user, b->n_user);
    for (uint32_t i = 0; i < a->n_user; i++) {
        bin_eq(a->user[i].key, b->user[i].key);
        bin_eq(a->user[i].val, b->user[i].val);
    }
    assert_int_equal(a->max_packet_size, b->max_packet_size);
    assert_int_equal(a->wildcard_sub_available, b->wildcard_sub_available);
    assert_int_equal(a->sub_id_available, b->sub_id_available);
    assert_int_equal(a->shared_sub_available, b->shared_sub_available);
}

static void connect_eq(const pkt_connect_t *a, const pkt_connect_t *b)
{
    assert_int_equal(a->version, b->version);
    assert_int_equal(a->clean_start, b->clean_start);
    assert_int_equal(a->will_flag, b->will_flag);
    assert_int_equal(a->will_qos, b->will_qos);
    assert_int_equal(a->will_retain, b->will_retain);
    assert_int_equal(a->has_username, b->has_username);
    assert_int_equal(a->has_password, b->has_password);
    assert_int_equal(a->keep_alive, b->keep_alive);
    props_eq(&a->props, &b->props);
    bin_eq(a->client_id, b->client_id);
    props_eq(&a->will_props, &b->will_props);
    bin_eq(a->will_topic, b->will_topic);
    bin_eq(a->will_payload, b->will_payload);
    bin_eq(a->username, b->username);
    bin_eq(a->password, b->password);
}

/* Field-by-field equality of two packets of the same type. */
static void pkt_eq(const pkt_t *a, const pkt_t *b)
{
    assert_int_equal(a->type, b->type);
    switch (a->type) {
    case PKT_CONNECT: connect_eq(&a->u.connect, &b->u.connect); break;
    case PKT_CONNACK:
        assert_int_equal(a->u.connack.session_present, b->u.connack.session_present);
        assert_int_equal(a->u.connack.reason, b->u.connack.reason);
        props_eq(&a->u.connack.props, &b->u.connack.props);
        break;
    case PKT_PUBLISH:
        assert_int_equal(a->u.publish.qos, b->u.publish.qos);
        assert_int_equal(a->u.publish.retain, b->u.publish.retain);
        assert_int_equal(a->u.publish.dup, b->u.publish.dup);
        assert_int_equal(a->u.publish.packet_id, b->u.publish.packet_id);
        bin_eq(a->u.publish.topic, b->u.publish.topic);
        bin_eq(a->u.publish.payload, b->u.publish.payload);
        props_eq(&a->u.publish.props, &b->u.publish.props);
        break;
    case PKT_PUBACK: case PKT_PUBREC: case PKT_PUBREL: case PKT_PUBCOMP:
        assert_int_equal(a->u.ack.packet_id, b->u.ack.packet_id);
        assert_int_equal(a->u.ack.reason, b->u.ack.reason);
        props_eq(&a->u.ack.props, &b->u.ack.props);
        break;
    case PKT_SUBSCRIBE:
        assert_int_equal(a->u.subscribe.packet_id, b->u.subscribe.packet_id);
        props_eq(&a->u.subscribe.props, &b->u.subscribe.props);
        assert_int_equal(a->u.subscribe.n_subs, b->u.subscribe.n_subs);
        for (uint32_t i = 0; i < a->u.subscribe.n_subs; i++) {
            bin_eq(a->u.subscribe.subs[i].filter, b->u.subscribe.subs[i].filter);
            assert_int_equal(a->u.subscribe.subs[i].options,
                             b->u.subscribe.subs[i].options);
        }
        break;
    case PKT_SUBACK: case PKT_UNSUBACK:
        assert_int_equal(a->u.suback.packet_id, b->u.suback.packet_id);
        props_eq(&a->u.suback.props, &b->u.suback.props);
        assert_int_equal(a->u.suback.n_reasons, b->u.suback.n_reasons);
        if (a->u.suback.n_reasons > 0)
            assert_memory_equal(a->u.suback.reasons, b->u.suback.reasons,
                                a->u.suback.n_reasons);
        break;
    case PKT_UNSUBSCRIBE:
        assert_int_equal(a->u.unsubscribe.packet_id, b->u.unsubscribe.packet_id);
        props_eq(&a->u.unsubscribe.props, &b->u.unsubscribe.props);
        assert_int_equal(a->u.unsubscribe.n_filters, b->u.unsubscribe.n_filters);
        for (uint32_t i = 0; i < a->u.unsubscribe.n_filters; i++)
            bin_eq(a->u.unsubscribe.filters[i], b->u.unsubscribe.filters[i]);
        break;
    case PKT_DISCONNECT: case PKT_AUTH:
        assert_int_equal(a->u.disconnect.reason, b->u.disconnect.reason);
        props_eq(&a->u.disconnect.props, &b->u.disconnect.props);
        break;
    default: break;
    }
}

static rt_t rt;

static int dispose_arena(void **state)
{
    arena_dispose(&rt.arena);
    return 0;
}

/* Encodes p, checks the bytes against exp (when given), frames and decodes
 * them back and checks every field. */
static void round_trip(rt_t *r, const pkt_t *p, uint8_t ver,
                       const uint8_t *exp, size_t exp_len)
{
    size_t size = pkt_encoded_size(p, ver), fl = 0, need = 0;
    assert_true(size > 0 && size <= sizeof r->buf);
    assert_int_equal(pkt_encode(p, ver, r->buf, sizeof r->buf, &r->len), 0);
    assert_int_equal(r->len, size);
    if (exp != NULL) {
        assert_int_equal(r->len, exp_len);
        assert_memory_equal(r->buf, exp, exp_len);
    }
    assert_int_equal(pkt_frame(r->buf, r->len, 1u << 20, &fl, &need), 0);
    assert_int_equal(fl, r->len);
    assert_int_equal(need, r->len);
    arena_dispose(&r->arena); /* the previous round trip's; kept so a
                                  * test may inspect r->out afterwards */
    arena_init(&r->arena, 1 << 20);
    assert_int_equal(pkt_decode(&r->out, ver, r->buf, r->len, &r->arena), 0);
    pkt_eq(&r->out, p);
}

#define RT(p, ver, ...)                                                      \
    do {                                                                     \
        static const uint8_t exp_[] = {__VA_ARGS__};                         \
        round_trip(&rt, (p), (ver), exp_, sizeof exp_);                      \
    } while (0)


/* ---- CONNECT / CONNACK ---- */

static void pkt_round_trips_connect_v311(void **state)
{
    pkt_t p = {.type = PKT_CONNECT};
    pkt_connect_t *c = &p.u.connect;
    c->version = PKT_V311;
    c->clean_start = 1;
    c->keep_alive = 60;
    c->client_id = B("c1");
    c->has_username = c->has_password = 1;
    c->username = B("u");
    c->password = B("p");
    RT(&p, PKT_V311, 0x10, 0x14, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 60,
       0, 2, 'c', '1', 0, 1, 'u', 0, 1, 'p');
}

static void pkt_round_trips_connect_v31_with_will(void **state)
{
    pkt_t p = {.type = PKT_CONNECT};
    pkt_connect_t *c = &p.u.connect;
    c->version = PKT_V31;
    c->clean_start = 1;
    c->keep_alive = 10;
    c->client_id = B("abc");
    c->will_flag = 1;
    c->will_qos = 1;
    c->will_retain = 1;
    c->will_topic = B("w");
    c->will_payload = B("x");
    RT(&p, PKT_V31, 0x10, 0x17, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 0x2E,
       0, 10, 0, 3, 'a', 'b', 'c', 0, 1, 'w', 0, 1, 'x');
}

static void pkt_round_trips_connect_v5_simple(void **state)
{
    pkt_t p = {.type = PKT_CONNECT};
    pkt_connect_t *c = &p.u.connect;
    c->version = PKT_V5;
    c->clean_start = 1;
    c->client_id = B("c");
    c->props.session_expiry = 10;
    PKT_PROP_SET(&c->props, PROP_SESSION_EXPIRY);
    RT(&p, PKT_V5, 0x10, 0x13, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 0,
       5, 0x11, 0, 0, 0, 10, 0, 1, 'c');
}

static void pkt_round_trips_connect_v5_with_will_and_all_properties(void **state)
{
    static pkt_user_prop_t up[] = {{B("k1"), B("v1")}, {B("k1"), B("v2")}};
    static pkt_user_prop_t wup[] = {{B("wk"), B("wv")}};
    pkt_t p = {.type = PKT_CONNECT};
    pkt_connect_t *c = &p.u.connect;
    pkt_props_t *cp = &c->props, *wp = &c->will_props;
    c->version = PKT_V5;
    c->keep_alive = 30;
    c->client_id = B("client-\xc3\xa9");
    c->has_password = 1; /* without a username: allowed in v5 */
    c->password = B("\x00\x01pw");
    c->will_flag = 1;
    c->will_qos = 2;
    c->will_topic = B("will/t");
    c->will_payload = B("gone \xe2\x82\xac");
    cp->session_expiry = 3600;
    cp->receive_max = 20;
    cp->max_packet_size = 65536;
    cp->topic_alias_max = 5;
    cp->request_response_info = 1;
    cp->request_problem_info = 0;
    cp->auth_method = B("SCRAM");
    cp->auth_data = B("\x00\xff");
    cp->present = (1ull << PROP_SESSION_EXPIRY) | (1ull << PROP_RECEIVE_MAX) |
                  (1ull << PROP_MAX_PACKET_SIZE) | (1ull << PROP_TOPIC_ALIAS_MAX) |
                  (1ull << PROP_REQUEST_RESPONSE_INFO) |
                  (1ull << PROP_REQUEST_PROBLEM_INFO) |
                  (1ull << PROP_AUTH_METHOD) | (1ull << PROP_AUTH_DATA);
    cp->user = up;
    cp->n_user = 2;
    wp->will_delay = 7;
    wp->payload_format = 1;
    wp->message_expiry = 100;
    wp->content_type = B("text/plain");
    wp->response_topic = B("resp/t");
    wp->correlation_data = B("\x01\x02");
    wp->present = (1ull << PROP_WILL_DELAY) | (1ull << PROP_PAYLOAD_FORMAT) |
                  (1ull << PROP_MESSAGE_EXPIRY) | (1ull << PROP_CONTENT_TYPE) |
                  (1ull << PROP_RESPONSE_TOPIC) | (1ull << PROP_CORRELATION_DATA);
    wp->user = wup;
    wp->n_user = 1;
    round_trip(&rt, &p, PKT_V5, NULL, 0);
}

static void pkt_round_trips_connack(void **state)
{
    pkt_t p = {.type = PKT_CONNACK};
    p.u.connack.session_present = 1;
    RT(&p, PKT_V311, 0x20, 0x02, 0x01, 0x00);
    p.u.connack.session_present = 0;
    p.u.connack.reason = PKT_RC311_NOT_AUTHORIZED;
    RT(&p, PKT_V311, 0x20, 0x02, 0x00, 0x05);
    p.u.connack.reason = PKT_RC_SUCCESS;
    RT(&p, PKT_V5, 0x20, 0x03, 0x00, 0x00, 0x00);
    p.u.connack.reason = PKT_RC_BAD_USER_PASS;
    p.u.connack.props.reason_string = B("no");
    PKT_PROP_SET(&p.u.connack.props, PROP_REASON_STRING);
    RT(&p, PKT_V5, 0x20, 0x08, 0x00, 0x86, 0x05, 0x1F, 0, 2, 'n', 'o');
}

static void pkt_round_trips_connack_v5_with_every_connack_property(void **state)
{
    static pkt_user_prop_t up[] = {{B("a"), B("1")}, {B("b"), B("")}, {B("a"), B("3")}};
    pkt_t p = {.type = PKT_CONNACK};
    pkt_props_t *q = &p.u.connack.props;
    q->session_expiry = 0xFFFFFFFF;
    q->assigned_client_id = B("auto-1");
    q->server_keep_alive = 120;
    q->auth_method = B("m");
    q->auth_data = B("d");
    q->response_info = B("ri");
    q->server_reference = B("other:1883");
    q->reason_string = B("ok");
    q->receive_max = 65535;
    q->topic_alias_max = 10;
    q->maximum_qos = 1;
    q->retain_available = 0;
    q->max_packet_size = 268435460;
    q->wildcard_sub_available = 1;
    q->sub_id_available = 1;
    q->shared_sub_available = 0;
    q->user = up;
    q->n_user = 3;
    uint8_t ids[] = {PROP_SESSION_EXPIRY, PROP_ASSIGNED_CLIENT_ID,
        PROP_SERVER_KEEP_ALIVE, PROP_AUTH_METHOD, PROP_AUTH_DATA,
        PROP_RESPONSE_INFO, PROP_SERVER_REFERENCE, PROP_REASON_STRING,
        PROP_RECEIVE_MAX, PROP_TOPIC_ALIAS_MAX, PROP_MAXIMUM_QOS,
        PROP_RETAIN_AVAILABLE, PROP_MAX_PACKET_SIZE,
        PROP_WILDCARD_SUB_AVAILABLE, PROP_SUB_ID_AVAILABLE,
        PROP_SHARED_SUB_AVAILABLE};
    for (size_t i = 0; i < sizeof ids; i++) PKT_PROP_SET(q, ids[i]);
    round_trip(&rt, &p, PKT_V5, NULL, 0);
    assert_int_equal(rt.out.u.connack.props.n_user, 3);
    bin_eq(rt.out.u.connack.props.user[2].val, B("3"));
}

/* ---- PUBLISH ---- */

static void pkt_round_trips_publish(void **state)
{
    pkt_t p = {.type = PKT_PUBLISH};
    pkt_publish_t *pub = &p.u.publish;
    pub->topic = B("a/b");
    pub->payload = B("hi");
    RT(&p, PKT_V311, 0x30, 0x07, 0, 3, 'a', '/', 'b', 'h', 'i');
    RT(&p, PKT_V5, 0x30, 0x08, 0, 3, 'a', '/', 'b', 0, 'h', 'i');
    pub->qos = 1;
    pub->retain = 1;
    pub->packet_id = 10;
    RT(&p, PKT_V311, 0x33, 0x09, 0, 3, 'a', '/', 'b', 0, 10, 'h', 'i');
    pub->qos = 2;
    pub->dup = 1;
    pub->retain = 0;
    pub->payload = B("");
    RT(&p, PKT_V311, 0x3C, 0x07, 0, 3, 'a', '/', 'b', 0, 10);
}

static void pkt_round_trips_publish_v5_with_all_publish_properties(void **state)
{
    static pkt_user_prop_t up[] = {{B("x"), B("1")}, {B("x"), B("2")}};
    pkt_t p = {.type = PKT_PUBLISH};
    pkt_publish_t *pub = &p.u.publish;
    pkt_props_t *q = &pub->props;
    pub->qos = 1;
    pub->packet_id = 0xFFFF;
    pub->topic = B("");
    pub->payload = B("caf\xc3\xa9");
    q->payload_format = 1;
    q->message_expiry = 60;
    q->content_type = B("text/plain");
    q->response_topic = B("reply/to");
    q->correlation_data = B("\x00\x01\x02");
    q->topic_alias = 3;
    q->present = (1ull << PROP_PAYLOAD_FORMAT) | (1ull << PROP_MESSAGE_EXPIRY) |
                 (1ull << PROP_CONTENT_TYPE) | (1ull << PROP_RESPONSE_TOPIC) |
                 (1ull << PROP_CORRELATION_DATA) | (1ull << PROP_TOPIC_ALIAS);
    q->sub_ids[0] = 1;
    q->sub_ids[1] = 128;
    q->sub_ids[2] = PKT_VARINT_MAX;
    q->n_sub_ids = 3;
    q->user = up;
    q->n_user = 2;
    round_trip(&rt, &p, PKT_V5, NULL, 0);
}

static void pkt_publish_head_plus_payload_equals_full_encoding(void **state)
{
    static uint8_t payload[300];
    uint8_t head[64];
    size_t n = 0;
    pkt_t p = {.type = PKT_PUBLISH};
    pkt_publish_t *pub = &p.u.publish;
    memset(payload, 'z', sizeof payload);
    pub->qos = 1;
    pub->packet_id = 7;
    pub->topic = B("t");
    pub->payload = (pkt_bin_t){payload, sizeof payload};
    pub->props.sub_ids[0] = 5;
    pub->props.n_sub_ids = 1;
    for (uint8_t v = PKT_V311; v <= PKT_V5; v++) {
        size_t full = 0;
        assert_int_equal(pkt_encode(&p, v, rt.buf, sizeof rt.buf, &full), 0);
        uint64_t before = xmalloc_count();
        assert_int_equal(pkt_encode_publish_head(pub, v, head, sizeof head, &n), 0);
        assert_int_equal(xmalloc_count(), before); /* hot path: no allocation */
        assert_int_equal(n, pkt_publish_head_size(pub, v));
        assert_int_equal(n + sizeof payload, full);
        assert_memory_equal(head, rt.buf, n);
        assert_int_equal(pkt_encode_publish_head(pub, v, head, n - 1, &n), UVMQ_ELIMIT);
    }
}

/* ---- acknowledgements ---- */

static void pkt_round_trips_acks_v311(void **state)
{
    pkt_t p = {.type = PKT_PUBACK};
    p.u.ack.packet_id = 0x1234;
    RT(&p, PKT_V311, 0x40, 0x02, 0x12, 0x34);
    p.type = PKT_PUBREC;
    RT(&p, PKT_V311, 0x50, 0x02, 0x12, 0x34);
    p.type = PKT_PUBREL;
    RT(&p, PKT_V311, 0x62, 0x02, 0x12, 0x34);
    p.type = PKT_PUBCOMP;
    RT(&p, PKT_V311, 0x70, 0x02, 0x12, 0x34);
}

static void pkt_round_trips_acks_v5_short_and_long_forms(void **state)
{
    static pkt_user_prop_t up[] = {{B("k"), B("v")}};
    pkt_t p = {.type = PKT_PUBACK};
    p.u.ack.packet_id = 0x1234;
    RT(&p, PKT_V5, 0x40, 0x02, 0x12, 0x34);
    p.u.ack.reason = PKT_RC_NO_MATCHING_SUBSCRIBERS;
    RT(&p, PKT_V5, 0x40, 0x03, 0x12, 0x34, 0x10);
    p.u.ack.props.reason_string = B("x");
    PKT_PROP_SET(&p.u.ack.props, PROP_REASON_STRING);
    RT(&p, PKT_V5, 0x40, 0x08, 0x12, 0x34, 0x10, 0x04, 0x1F, 0, 1, 'x');
    p.type = PKT_PUBREC;
    p.u.ack.reason = PKT_RC_QUOTA_EXCEEDED;
    p.u.ack.props.user = up;
    p.u.ack.props.n_user = 1;
    round_trip(&rt, &p, PKT_V5, NULL, 0);
    p.type = PKT_PUBREL;
    p.u.ack.reason = PKT_RC_PACKET_ID_NOT_FOUND;
    round_trip(&rt, &p, PKT_V5, NULL, 0);
    memset(&p.u.ack.props, 0, sizeof p.u.ack.props);
    RT(&p, PKT_V5, 0x62, 0x03, 0x12, 0x34, 0x92);
    p.type = PKT_PUBCOMP;
    p.u.ack.reason = 0;
    RT(&p, PKT_V5, 0x70, 0x02, 0x12, 0x34);
}

/* ---- SUBSCRIBE / SUBACK / UNSUBSCRIBE / UNSUBACK ---- */

static void pkt_round_trips_subscribe(void **state)
{
    pkt_sub_t subs[] = {{B("a/#"), 1}, {B("b"), 2}};
    pkt_t p = {.type = PKT_SUBSCRIBE};
    p.u.subscribe.packet_id = 1;
    p.u.subscribe.subs = subs;
    p.u.subscribe.n_subs = 2;
    RT(&p, PKT_V311, 0x82, 0x0C, 0, 1, 0, 3, 'a', '/', '#', 1, 0, 1, 'b', 2);
    subs[0].options = 1 | PKT_SUBOPT_NO_LOCAL | PKT_SUBOPT_RAP |
                      (2 << PKT_SUBOPT_RH_SHIFT);
    p.u.subscribe.props.sub_ids[0] = 16384;
    p.u.subscribe.props.n_sub_ids = 1;
    RT(&p, PKT_V5, 0x82, 0x11, 0, 1, 0x04, 0x0B, 0x80, 0x80, 0x01, 0, 3, 'a',
       '/', '#', 0x2D, 0, 1, 'b', 2);
}

static void pkt_round_trips_suback(void **state)
{
    uint8_t codes[] = {0x01, 0x80};
    pkt_t p = {.type = PKT_SUBACK};
    p.u.suback.packet_id = 1;
    p.u.suback.reasons = codes;
    p.u.suback.n_reasons = 2;
    RT(&p, PKT_V311, 0x90, 0x04, 0, 1, 0x01, 0x80);
    RT(&p, PKT_V5, 0x90, 0x05, 0, 1, 0, 0x01, 0x80);
    codes[1] = PKT_RC_SHARED_SUBS_NOT_SUPPORTED;
    p.u.suback.props.reason_string = B("r");
    PKT_PROP_SET(&p.u.suback.props, PROP_REASON_STRING);
    round_trip(&rt, &p, PKT_V5, NULL, 0);
}

static void pkt_maps_v5_suback_failures_to_0x80_in_v311(void **state)
{
    uint8_t codes[] = {0x02, PKT_RC_NOT_AUTHORIZED};
    uint8_t exp[] = {0x90, 0x04, 0, 9, 0x02, 0x80};
    size_t n = 0;
    pkt_t p = {.type = PKT_SUBACK};
    p.u.suback.packet_id = 9;
    p.u.suback.reasons = codes;
    p.u.suback.n_reasons = 2;
    assert_int_equal(pkt_encode(&p, PKT_V311, rt.buf, sizeof rt.buf, &n), 0);
    assert_int_equal(n, sizeof exp);
    assert_memory_equal(rt.buf, exp, sizeof exp);
}

static void pkt_round_trips_unsubscribe_and_unsuback(void **state)
{
    pkt_bin_t filters[] = {B("a/#"), B("+/x")};
    uint8_t codes[] = {0x00, 0x11};
    pkt_t p = {.type = PKT_UNSUBSCRIBE};
    p.u.unsubscribe.packet_id = 2;
    p.u.unsubscribe.filters = filters;
    p.u.unsubscribe.n_filters = 1;
    RT(&p, PKT_V311, 0xA2, 0x07, 0, 2, 0, 3, 'a', '/', '#');
    p.u.unsubscribe.n_filters = 2;
    RT(&p, PKT_V5, 0xA2, 0x0D, 0, 2, 0, 0, 3, 'a', '/', '#', 0, 3, '+', '/', 'x');
    p = (pkt_t){.type = PKT_UNSUBACK};
    p.u.suback.packet_id = 2;
    RT(&p, PKT_V311, 0xB0, 0x02, 0, 2);
    p.u.suback.reasons = codes;
    p.u.suback.n_reasons = 2;
    RT(&p, PKT_V5, 0xB0, 0x05, 0, 2, 0, 0x00, 0x11);
}

/* ---- PINGREQ / PINGRESP / DISCONNECT / AUTH ---- */

static void pkt_round_trips_ping_and_disconnect(void **state)
{
    pkt_t p = {.type = PKT_PINGREQ};
    RT(&p, PKT_V311, 0xC0, 0x00);
    RT(&p, PKT_V5, 0xC0, 0x00);
    p.type = PKT_PINGRESP;
    RT(&p, PKT_V311, 0xD0, 0x00);
    RT(&p, PKT_V5, 0xD0, 0x00);
    p.type = PKT_DISCONNECT;
    RT(&p, PKT_V311, 0xE0, 0x00);
    RT(&p, PKT_V5, 0xE0, 0x00);
    p.u.disconnect.reason = PKT_RC_DISCONNECT_WITH_WILL;
    RT(&p, PKT_V5, 0xE0, 0x01, 0x04);
    p.u.disconnect.reason = 0;
    PKT_PROP_SET(&p.u.disconnect.props, PROP_SESSION_EXPIRY);
    RT(&p, PKT_V5, 0xE0, 0x07, 0x00, 0x05, 0x11, 0, 0, 0, 0);
    p.u.disconnect.reason = PKT_RC_SERVER_MOVED;
    p.u.disconnect.props.server_reference = B("srv");
    p.u.disconnect.props.reason_string = B("moved");
    PKT_PROP_SET(&p.u.disconnect.props, PROP_SERVER_REFERENCE);
    PKT_PROP_SET(&p.u.disconnect.props, PROP_REASON_STRING);
    round_trip(&rt, &p, PKT_V5, NULL, 0);
}

static void pkt_round_trips_auth_and_refuses_it_in_v3(void **state)
{
    size_t n = 0;
    pkt_t p = {.type = PKT_AUTH};
    RT(&p, PKT_V5, 0xF0, 0x00);
    p.u.disconnect.reason = PKT_RC_CONTINUE_AUTH;
    p.u.disconnect.props.auth_method = B("m");
    PKT_PROP_SET(&p.u.disconnect.props, PROP_AUTH_METHOD);
    RT(&p, PKT_V5, 0xF0, 0x06, 0x18, 0x04, 0x15, 0, 1, 'm');
    p.u.disconnect.props.auth_data = B("\x00\x01");
    PKT_PROP_SET(&p.u.disconnect.props, PROP_AUTH_DATA);
    round_trip(&rt, &p, PKT_V5, NULL, 0);
    assert_int_equal(pkt_encoded_size(&p, PKT_V311), 0);
    assert_int_equal(pkt_encode(&p, PKT_V311, rt.buf, sizeof rt.buf, &n), UVMQ_EINVAL);
}

/* ---- properties as bytes ---- */

static void pkt_keeps_raw_property_block_and_appends_it_on_encode(void **state)
{
    static const uint8_t wire[] = {0x30, 0x0C, 0, 1, 't', 0x07, 0x02, 0, 0, 0,
                                   9, 0x01, 0x01, 'p'};
    arena_t a;
    pkt_t d, p = {.type = PKT_PUBLISH};
    size_t n = 0;
    arena_init(&a, 4096);
    assert_int_equal(pkt_decode(&d, PKT_V5, wire, sizeof wire, &a), 0);
    assert_int_equal(d.u.publish.props.raw.len, 7);
    assert_ptr_equal(d.u.publish.props.raw.p, wire + 6);
    assert_int_equal(d.u.publish.props.message_expiry, 9);
    assert_int_equal(d.u.publish.props.payload_format, 1);
    /* Re-encode the stored block verbatim after a fresh Topic Alias. */
    p.u.publish.topic = B("t");
    p.u.publish.payload = B("p");
    p.u.publish.props.raw = d.u.publish.props.raw;
    p.u.publish.props.topic_alias = 2;
    PKT_PROP_SET(&p.u.publish.props, PROP_TOPIC_ALIAS);
    assert_int_equal(pkt_props_size(&p.u.publish.props), 10);
    assert_int_equal(pkt_encode(&p, PKT_V5, rt.buf, sizeof rt.buf, &n), 0);
    static const uint8_t exp[] = {0x30, 0x0F, 0, 1, 't', 0x0A, 0x23, 0, 2,
                                  0x02, 0, 0, 0, 9, 0x01, 0x01, 'p'};
    assert_int_equal(n, sizeof exp);
    assert_memory_equal(rt.buf, exp, sizeof exp);
    uint8_t block[16];
    assert_int_equal(pkt_props_write(&p.u.publish.props, block), 10);
    assert_memory_equal(block, exp + 6, 10);
    arena_dispose(&a);
}

static void pkt_reports_nomem_when_the_arena_is_exhausted(void **state)
{
    static const uint8_t wire[] = {0x30, 0x11, 0, 1, 't', 0x0C, 0x26, 0, 1,
                                   'k', 0, 1, 'v', 0x26, 0, 0, 0, 0, 'p'};
    arena_t a;
    pkt_t d;
    arena_init(&a, 8);
    /* Two pkt_user_prop_t need 64 bytes. */
    assert_int_equal(pkt_decode(&d, PKT_V5, wire, sizeof wire, &a), UVMQ_ENOMEM);
    assert_int_equal(pkt_decode(&d, PKT_V5, wire, sizeof wire, NULL), UVMQ_ENOMEM);
    arena_dispose(&a);
    arena_init(&a, 4096);
    assert_int_equal(pkt_decode(&d, PKT_V5, wire, sizeof wire, &a), 0);
    assert_int_equal(d.u.publish.props.n_user, 2);
    bin_eq(d.u.publish.props.user[1].key, B(""));
    arena_dispose(&a);
}

/* ---- encoder limits ---- */

static void pkt_encode_refuses_small_buffers_and_oversized_fields(void **state)
{
    static uint8_t big[70000];
    size_t n = 99;
    pkt_t p = {.type = PKT_PUBLISH};
    p.u.publish.topic = B("t");
    assert_int_equal(pkt_encode(&p, PKT_V311, rt.buf, 4, &n), UVMQ_ELIMIT);
    assert_int_equal(n, 0);
    p.u.publish.topic = (pkt_bin_t){big, sizeof big};
    assert_int_equal(pkt_encoded_size(&p, PKT_V311), 0);
    assert_int_equal(pkt_publish_head_size(&p.u.publish, PKT_V311), 0);
    assert_int_equal(pkt_encode(&p, PKT_V311, rt.buf, sizeof rt.buf, &n), UVMQ_EINVAL);
    p.u.publish.topic = B("t");
    p.u.publish.props.n_sub_ids = PKT_MAX_SUB_IDS + 1;
    assert_int_equal(pkt_encoded_size(&p, PKT_V5), 0);
    p.u.publish.props.n_sub_ids = 1;
    p.u.publish.props.sub_ids[0] = PKT_VARINT_MAX + 1;
    assert_int_equal(pkt_encoded_size(&p, PKT_V5), 0);
    p.u.publish.props.n_sub_ids = 0;
    p.u.publish.qos = 3;
    assert_int_equal(pkt_encoded_size(&p, PKT_V5), 0);
}

/* ---- framing ---- */

/* Frames every complete packet in buf[*off..avail); appends lengths. */
static void frame_all(const uint8_t *buf, size_t avail, size_t *off,
                      size_t *lens, size_t *n)
{
    size_t fl = 0, need = 0;
    int rc;
    while ((rc = pkt_frame(buf + *off, avail - *off, 1u << 20, &fl, &need)) == 0) {
        lens[(*n)++] = fl;
        *off += fl;
    }
    assert_int_equal(rc, PKT_NEED_MORE);
    assert_int_equal(fl, 0);
}

static void pkt_frame_handles_every_split_of_a_multi_packet_buffer(void **state)
{
    static uint8_t buf[1024];
    static uint8_t payload[200];
    size_t exp[6], n_exp = 0, total = 0, w = 0;
    pkt_t pk[6] = {{.type = PKT_CONNECT}, {.type = PKT_PUBLISH},
                   {.type = PKT_PINGREQ}, {.type = PKT_PUBLISH},
                   {.type = PKT_PUBACK}, {.type = PKT_DISCONNECT}};
    pk[0].u.connect.client_id = B("id");
    pk[1].u.publish.topic = B("a");
    pk[3].u.publish.topic = B("big");
    pk[3].u.publish.payload = (pkt_bin_t){payload, sizeof payload};
    pk[4].u.ack.packet_id = 3;
    for (int i = 0; i < 6; i++) {
        assert_int_equal(pkt_encode(&pk[i], PKT_V311, buf + total,
                                    sizeof buf - total, &w), 0);
        exp[n_exp++] = w;
        total += w;
    }
    assert_int_equal(buf[exp[0] + exp[1] + exp[2] + 2], 0x01); /* 2-byte remlen */
    for (size_t k = 0; k <= total; k++) {
        size_t lens[8], n = 0, off = 0;
        frame_all(buf, k, &off, lens, &n);
        frame_all(buf, total, &off, lens, &n);
        assert_int_equal(n, n_exp);
        assert_memory_equal(lens, exp, sizeof exp);
    }
    size_t lens[8], n = 0, off = 0;
    for (size_t avail = 0; avail <= total; avail++)
        frame_all(buf, avail, &off, lens, &n);
    assert_int_equal(n, n_exp);
    assert_memory_equal(lens, exp, sizeof exp);
}

static void pkt_frame_reports_too_large_from_the_header_alone(void **state)
{
    static const uint8_t hdr[] = {0x30, 0x80, 0x01}; /* 131 bytes in all */
    size_t fl = 9, need = 9;
    assert_int_equal(pkt_frame(hdr, 1, 100, &fl, &need), PKT_NEED_MORE);
    assert_int_equal(need, 0);
    assert_int_equal(pkt_frame(hdr, 2, 100, &fl, &need), PKT_NEED_MORE);
    assert_int_equal(pkt_frame(hdr, 3, 100, &fl, &need), UVMQ_EPKT_TOO_LARGE);
    assert_int_equal(need, 131);
    assert_int_equal(pkt_frame(hdr, 3, 131, &fl, &need), PKT_NEED_MORE);
    assert_int_equal(need, 131);
    assert_int_equal(fl, 0);
}

static void pkt_rejects_5_byte_varint(void **state)
{
    static const uint8_t hdr[] = {0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F};
    static const uint8_t longform[] = {0x30, 0x80, 0x00};
    size_t fl, need;
    assert_int_equal(pkt_frame(hdr, 4, PKT_VARINT_MAX, &fl, &need), PKT_NEED_MORE);
    assert_int_equal(pkt_frame(hdr, 5, PKT_VARINT_MAX, &fl, &need), UVMQ_EPKT_REMLEN);
    assert_int_equal(pkt_frame(longform, 3, 100, &fl, &need), UVMQ_EPKT_REMLEN);
}

static void pkt_varint_boundaries_encode_and_decode(void **state)
{
    static const struct { uint32_t v; uint8_t n; uint8_t b[4]; } cases[] = {
        {0, 1, {0x00}}, {127, 1, {0x7F}}, {128, 2, {0x80, 0x01}},
        {16383, 2, {0xFF, 0x7F}}, {16384, 3, {0x80, 0x80, 0x01}},
        {2097151, 3, {0xFF, 0xFF, 0x7F}}, {2097152, 4, {0x80, 0x80, 0x80, 0x01}},
        {268435455, 4, {0xFF, 0xFF, 0xFF, 0x7F}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t out[5] = {0x30};
        uint32_t v = 1;
        size_t used = 0, fl, need;
        assert_int_equal(pkt_varint_size(cases[i].v), cases[i].n);
        assert_int_equal(pkt_varint_write(cases[i].v, out + 1), cases[i].n);
        assert_memory_equal(out + 1, cases[i].b, cases[i].n);
        assert_int_equal(pkt__varint_decode(out + 1, cases[i].n, &v, &used), 0);
        assert_int_equal(v, cases[i].v);
        assert_int_equal(used, cases[i].n);
        /* The framer announces 1 + n + v bytes. */
        int rc = pkt_frame(out, 1 + cases[i].n, PKT_VARINT_MAX + 5, &fl, &need);
        assert_int_equal(rc, cases[i].v == 0 ? 0 : PKT_NEED_MORE);
        assert_int_equal(need, 1 + cases[i].n + cases[i].v);
    }
}

/* ---- UTF-8 ---- */

static void pkt_utf8_validator_accepts_and_rejects(void **state)
{
    static const struct { const char *s; size_t len; int ok; } cases[] = {
        {"", 0, 1}, {"a/b", 3, 1}, {"\xc3\xa9", 2, 1}, {"\xe2\x82\xac", 3, 1},
        {"\xf0\x9f\x98\x80", 4, 1}, {"\xf4\x8f\xbf\xbf", 4, 1},
        {"\xef\xbb\xbf", 3, 1}, {"\xed\x9f\xbf", 3, 1}, {"\xee\x80\x80", 3, 1},
        {"\x00", 1, 0},                 /* U+0000 */
        {"a\x00" "b", 3, 0},
        {"\xed\xa0\x80", 3, 0},         /* U+D800 */
        {"\xed\xbf\xbf", 3, 0},         /* U+DFFF */
        {"\xc0\x80", 2, 0},             /* overlong U+0000 */
        {"\xc1\xbf", 2, 0},             /* overlong 2-byte */
        {"\xe0\x80\x80", 3, 0},         /* overlong 3-byte */
        {"\xe0\x9f\xbf", 3, 0},
        {"\xf0\x80\x80\x80", 4, 0},     /* overlong 4-byte */
        {"\xf0\x8f\xbf\xbf", 4, 0},
        {"\xf4\x90\x80\x80", 4, 0},     /* U+110000 */
        {"\xf5\x80\x80\x80", 4, 0}, {"\xff", 1, 0},
        {"\x80", 1, 0},                 /* lone continuation */
        {"\xe2\x82", 2, 0},             /* truncated */
        {"\xe2\x28\xa1", 3, 0},         /* bad continuation */
        {"\xf0\x9f\x98\x28", 4, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (pkt_utf8_valid((const uint8_t *)cases[i].s, cases[i].len) != cases[i].ok)
            fail_msg("utf8 case %zu: expected %d", i, cases[i].ok);
    }
    assert_int_equal(pkt_utf8_valid(NULL, 0), 1);
    assert_int_equal(pkt__utf8_check((const uint8_t *)"a\x00", 2, 1), 1);
}

/* ---- helpers ---- */

static void pkt_err_reason_maps_every_decode_error(void **state)
{
    static const struct { int err; uint8_t rc; } map[] = {
        {UVMQ_EPKT_REMLEN, 0x81}, {UVMQ_EPKT_TYPE, 0x81}, {UVMQ_EPKT_FLAGS, 0x81},
        {UVMQ_EPKT_SHORT, 0x81}, {UVMQ_EPKT_TRAILING, 0x81}, {UVMQ_EPKT_UTF8, 0x81},
        {UVMQ_EPKT_QOS, 0x81}, {UVMQ_EPKT_SUBOPTS, 0x81},
        {UVMQ_EPKT_CONNECT_FLAGS, 0x81}, {UVMQ_EPKT_PROP_ID, 0x81},
        {UVMQ_EPKT_PROP_PLACE, 0x81}, {UVMQ_EPKT_PROP_DUP, 0x82},
        {UVMQ_EPKT_PROP_VALUE, 0x82}, {UVMQ_EPKT_EMPTY, 0x82},
        {UVMQ_EPKT_PACKET_ID, 0x82}, {UVMQ_EPKT_REASON, 0x82},
        {UVMQ_EPKT_VERSION, 0x82}, {UVMQ_EPKT_NO_TOPIC, 0x82}, {UVMQ_EPKT_TOPIC, 0x90},
        {UVMQ_EPKT_TOO_LARGE, 0x95}, {UVMQ_EPKT_PROTO_NAME, 0x84},
        {UVMQ_EPKT_PROTO_LEVEL, 0x84}, {UVMQ_EPKT_CLIENT_ID, 0x85},
        {UVMQ_EPKT_PAYLOAD_FORMAT, 0x99}, {UVMQ_ENOMEM, 0x97}, {UVMQ_EIO, 0x80},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        assert_int_equal(pkt_err_reason(map[i].err), map[i].rc);
}

static void pkt_maps_connack_reasons_and_names_types(void **state)
{
    assert_int_equal(pkt_connack_rc311(PKT_RC_SUCCESS), 0);
    assert_int_equal(pkt_connack_rc311(PKT_RC_UNSUPPORTED_VERSION), 1);
    assert_int_equal(pkt_connack_rc311(PKT_RC_CLIENT_ID_INVALID), 2);
    assert_int_equal(pkt_connack_rc311(PKT_RC_SERVER_BUSY), 3);
    assert_int_equal(pkt_connack_rc311(PKT_RC_BAD_USER_PASS), 4);
    assert_int_equal(pkt_connack_rc311(PKT_RC_NOT_AUTHORIZED), 5);
    assert_int_equal(pkt_connack_rc311(PKT_RC_BANNED), 5);
    assert_string_equal(pkt_type_name(PKT_PUBLISH), "PUBLISH");
    assert_string_equal(pkt_type_name(PKT_AUTH), "AUTH");
    assert_string_equal(pkt_type_name(0), "RESERVED");
    assert_string_equal(pkt_type_name(200), "RESERVED");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pkt_round_trips_connect_v311),
        cmocka_unit_test(pkt_round_trips_connect_v31_with_will),
        cmocka_unit_test(pkt_round_trips_connect_v5_simple),
        cmocka_unit_test(pkt_round_trips_connect_v5_with_will_and_all_properties),
        cmocka_unit_test(pkt_round_trips_connack),
        cmocka_unit_test(pkt_round_trips_connack_v5_with_every_connack_property),
        cmocka_unit_test(pkt_round_trips_publish),
        cmocka_unit_test(pkt_round_trips_publish_v5_with_all_publish_properties),
        cmocka_unit_test(pkt_publish_head_plus_payload_equals_full_encoding),
        cmocka_unit_test(pkt_round_trips_acks_v311),
        cmocka_unit_test(pkt_round_trips_acks_v5_short_and_long_forms),
        cmocka_unit_test(pkt_round_trips_subscribe),
        cmocka_unit_test(pkt_round_trips_suback),
        cmocka_unit_test(pkt_maps_v5_suback_failures_to_0x80_in_v311),
        cmocka_unit_test(pkt_round_trips_unsubscribe_and_unsuback),
        cmocka_unit_test(pkt_round_trips_ping_and_disconnect),
        cmocka_unit_test(pkt_round_trips_auth_and_refuses_it_in_v3),
        cmocka_unit_test(pkt_keeps_raw_property_block_and_appends_it_on_encode),
        cmocka_unit_test(pkt_reports_nomem_when_the_arena_is_exhausted),
        cmocka_unit_test(pkt_encode_refuses_small_buffers_and_oversized_fields),
        cmocka_unit_test(pkt_frame_handles_every_split_of_a_multi_packet_buffer),
        cmocka_unit_test(pkt_frame_reports_too_large_from_the_header_alone),
        cmocka_unit_test(pkt_rejects_5_byte_varint),
        cmocka_unit_test(pkt_varint_boundaries_encode_and_decode),
        cmocka_unit_test(pkt_utf8_validator_accepts_and_rejects),
        cmocka_unit_test(pkt_err_reason_maps_every_decode_error),
        cmocka_unit_test(pkt_maps_connack_reasons_and_names_types),
    };
    return cmocka_run_group_tests_name("packets/pkt", tests, NULL,
                                       dispose_arena);
}

/*
 * Unit tests for bench/bench_mqtt.c, uvmq-bench's own MQTT codec: exact
 * bytes of the encoders, encode/parse round trips in both protocol
 * versions, broker packets given as literals, malformed input, and a
 * stream of packets split at every byte boundary.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "bench/bench_mqtt.c"

static void connect_v311_has_exact_bytes(void **state)
{
    static const uint8_t want[] = {0x10, 0x10, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02,
                                   0, 60, 0, 4, 'b', 's', '-', '1'};
    bench_connect_t c = {BENCH_MQTT_V311, 1, 60, 0, "bs-1", NULL, NULL};
    uint8_t buf[64];

    assert_int_equal(bench_mqtt_encode_connect(buf, sizeof buf, &c), sizeof want);
    assert_memory_equal(buf, want, sizeof want);
}

static void connect_v5_round_trips_with_session_expiry(void **state)
{
    bench_connect_t c = {BENCH_MQTT_V5, 0, 30, 3600, "client-x", NULL, NULL};
    uint8_t buf[64];
    bench_pkt_t p;
    int n = bench_mqtt_encode_connect(buf, sizeof buf, &c);

    assert_true(n > 0);
    assert_int_equal(bench_mqtt_parse(buf, (size_t)n, BENCH_MQTT_V5, &p), n);
    assert_int_equal(p.type, BENCH_CONNECT);
    assert_int_equal(p.proto, 5);
    assert_int_equal(p.connect_flags, 0);
    assert_int_equal(p.keepalive, 30);
    assert_int_equal(p.session_expiry, 3600);
    assert_int_equal(p.topic_len, 8);
    assert_memory_equal(p.topic, "client-x", 8);
}

static void connect_with_user_and_password_has_exact_bytes(void **state)
{
    static const uint8_t want[] = {0x10, 0x19, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xc2, 0, 60,
                                   0, 2, 'c', '1', 0, 3, 'u', '1', '7', 0, 4, 'p', 'w', '!', '?'};
    bench_connect_t c = {BENCH_MQTT_V311, 1, 60, 0, "c1", "u17", "pw!?"};
    uint8_t buf[64];
    bench_pkt_t p;

    assert_true(bench_mqtt_connect_cap(&c) >= sizeof want);
    assert_int_equal(bench_mqtt_encode_connect(buf, sizeof buf, &c), sizeof want);
    assert_memory_equal(buf, want, sizeof want);
    assert_int_equal(bench_mqtt_parse(buf, sizeof want, 4, &p), sizeof want);
    assert_int_equal(p.user_len, 3);
    assert_memory_equal(p.user, "u17", 3);
    assert_int_equal(p.password_len, 4);
    assert_memory_equal(p.password, "pw!?", 4);
}

static void connect_v5_round_trips_with_password_only(void **state)
{
    bench_connect_t c = {BENCH_MQTT_V5, 1, 30, 0, "id", NULL, "secret"};
    uint8_t buf[64];
    bench_pkt_t p;
    int n = bench_mqtt_encode_connect(buf, sizeof buf, &c);

    assert_true(n > 0 && (size_t)n <= bench_mqtt_connect_cap(&c));
    assert_int_equal(bench_mqtt_parse(buf, (size_t)n, BENCH_MQTT_V5, &p), n);
    assert_int_equal(p.connect_flags, 0x42);
    assert_null(p.user);
    assert_int_equal(p.password_len, 6);
    assert_memory_equal(p.password, "secret", 6);
}

static void subscribe_has_exact_bytes_in_both_versions(void **state)
{
    static const uint8_t v4[] = {0x82, 0x0c, 0, 1, 0, 7, 'b', 'e', 'n', 'c', 'h', '/', '0', 1};
    static const uint8_t v5[] = {0x82, 0x0d, 0, 1, 0, 0, 7, 'b', 'e', 'n', 'c', 'h', '/', '0', 2};
    uint8_t buf[64];
    bench_pkt_t p;

    assert_int_equal(bench_mqtt_encode_subscribe(buf, sizeof buf, 4, 1, "bench/0", 1), sizeof v4);
    assert_memory_equal(buf, v4, sizeof v4);
    assert_int_equal(bench_mqtt_encode_subscribe(buf, sizeof buf, 5, 1, "bench/0", 2), sizeof v5);
    assert_memory_equal(buf, v5, sizeof v5);
    assert_int_equal(bench_mqtt_parse(buf, sizeof v5, 5, &p), sizeof v5);
    assert_int_equal(p.type, BENCH_SUBSCRIBE);
    assert_int_equal(p.pid, 1);
    assert_int_equal(p.qos, 2);
    assert_int_equal(p.topic_len, 7);
}

/* Encodes and parses a PUBLISH; checks every field. */
static void publish_round_trip(int proto, int qos, size_t payload_len, size_t remlen_bytes)
{
    static uint8_t payload[20000], buf[20100];
    bench_pkt_t p;
    size_t i;
    int n;

    for (i = 0; i < payload_len; i++) payload[i] = (uint8_t)(i * 7);
    n = bench_mqtt_encode_publish(buf, sizeof buf, proto, qos, 0x1234, "bench/12/x", 10,
                                  payload, payload_len);
    assert_int_equal(n, bench_mqtt_publish_len(proto, qos, 10, payload_len));
    assert_int_equal(n, 1 + remlen_bytes + 2 + 10 + (qos ? 2 : 0) + (proto == 5) + payload_len);
    assert_int_equal(buf[0], 0x30 | qos << 1);
    assert_int_equal(bench_mqtt_parse(buf, (size_t)n, proto, &p), n);
    assert_int_equal(p.type, BENCH_PUBLISH);
    assert_int_equal(p.qos, qos);
    assert_int_equal(p.pid, qos ? 0x1234 : 0);
    assert_int_equal(p.topic_len, 10);
    assert_memory_equal(p.topic, "bench/12/x", 10);
    assert_int_equal(p.payload_len, payload_len);
    assert_memory_equal(p.payload, payload, payload_len);
}

static void publish_round_trips_at_every_qos_and_length_size(void **state)
{
    int proto, qos;

    for (proto = 4; proto <= 5; proto++) {
        for (qos = 0; qos <= 2; qos++) {
            publish_round_trip(proto, qos, 64, 1);
            publish_round_trip(proto, qos, 200, 2);
            publish_round_trip(proto, qos, 20000, 3);
        }
    }
}

static void acks_have_exact_bytes_and_round_trip(void **state)
{
    static const uint8_t want[4][4] = {
        {0x40, 2, 0, 7}, {0x50, 2, 0, 7}, {0x62, 2, 0, 7}, {0x70, 2, 0, 7}};
    uint8_t buf[4];
    bench_pkt_t p;
    int t;

    for (t = BENCH_PUBACK; t <= BENCH_PUBCOMP; t++) {
        assert_int_equal(bench_mqtt_encode_ack(buf, sizeof buf, t, 7), 4);
        assert_memory_equal(buf, want[t - BENCH_PUBACK], 4);
        assert_int_equal(bench_mqtt_parse(buf, 4, 5, &p), 4);
        assert_int_equal(p.type, t);
        assert_int_equal(p.pid, 7);
        assert_int_equal(p.reason, 0);
    }
}

static void ping_and_disconnect_are_two_bytes(void **state)
{
    uint8_t buf[2];
    bench_pkt_t p;

    assert_int_equal(bench_mqtt_encode_empty(buf, 2, BENCH_PINGREQ), 2);
    assert_int_equal(buf[0], 0xc0);
    assert_int_equal(buf[1], 0);
    assert_int_equal(bench_mqtt_parse(buf, 2, 4, &p), 2);
    assert_int_equal(p.type, BENCH_PINGREQ);
    assert_int_equal(bench_mqtt_encode_empty(buf, 2, BENCH_DISCONNECT), 2);
    assert_int_equal(buf[0], 0xe0);
    assert_int_equal(bench_mqtt_parse(buf, 2, 5, &p), 2);
    assert_int_equal(p.type, BENCH_DISCONNECT);
}

static void encoders_refuse_a_short_buffer(void **state)
{
    static const uint8_t pl[64];
    bench_connect_t c = {4, 1, 60, 0, "abc", NULL, NULL};
    uint8_t buf[128];

    assert_int_equal(bench_mqtt_encode_connect(buf, 16, &c), UVMQ_ELIMIT);
    assert_int_equal(bench_mqtt_encode_connect(buf, 17, &c), 17);
    assert_int_equal(bench_mqtt_encode_publish(buf, 74, 4, 0, 0, "bench/0", 7, pl, 64), UVMQ_ELIMIT);
    assert_int_equal(bench_mqtt_encode_publish(buf, 75, 4, 0, 0, "bench/0", 7, pl, 64), 75);
    assert_int_equal(bench_mqtt_encode_ack(buf, 3, BENCH_PUBACK, 1), UVMQ_ELIMIT);
    assert_int_equal(bench_mqtt_encode_subscribe(buf, 13, 4, 1, "bench/0", 0), UVMQ_ELIMIT);
}

static void connack_v5_yields_receive_maximum(void **state)
{
    static const uint8_t v4[] = {0x20, 2, 1, 0};
    static const uint8_t v5[] = {0x20, 0x0b, 0, 0, 8, 0x21, 0, 20, 0x13, 0, 30, 0x25, 1};
    bench_pkt_t p;

    assert_int_equal(bench_mqtt_parse(v4, sizeof v4, 4, &p), 4);
    assert_int_equal(p.type, BENCH_CONNACK);
    assert_int_equal(p.session_present, 1);
    assert_int_equal(p.reason, 0);
    assert_int_equal(bench_mqtt_parse(v5, sizeof v5, 5, &p), sizeof v5);
    assert_int_equal(p.receive_max, 20);
    assert_int_equal(p.keepalive, 30);
}

static void suback_and_v5_acks_yield_reason_codes(void **state)
{
    static const uint8_t sa4[] = {0x90, 3, 0, 1, 1};
    static const uint8_t sa5[] = {0x90, 4, 0, 1, 0, 0x80};
    static const uint8_t pa5[] = {0x40, 4, 0, 5, 0x10, 0};
    static const uint8_t rs5[] = {0x40, 3, 0, 6, 0x80};
    static const uint8_t dc5[] = {0xe0, 1, 0x8b};
    bench_pkt_t p;

    assert_int_equal(bench_mqtt_parse(sa4, sizeof sa4, 4, &p), sizeof sa4);
    assert_int_equal(p.pid, 1);
    assert_int_equal(p.reason, 1);
    assert_int_equal(p.nreasons, 1);
    assert_int_equal(bench_mqtt_parse(sa5, sizeof sa5, 5, &p), sizeof sa5);
    assert_int_equal(p.reason, 0x80);
    assert_int_equal(bench_mqtt_parse(pa5, sizeof pa5, 5, &p), sizeof pa5);
    assert_int_equal(p.pid, 5);
    assert_int_equal(p.reason, 0x10);
    assert_int_equal(bench_mqtt_parse(rs5, sizeof rs5, 5, &p), sizeof rs5);
    assert_int_equal(p.reason, 0x80);
    assert_int_equal(bench_mqtt_parse(dc5, sizeof dc5, 5, &p), sizeof dc5);
    assert_int_equal(p.type, BENCH_DISCONNECT);
    assert_int_equal(p.reason, 0x8b);
}

static void parser_rejects_malformed_packets(void **state)
{
    static const uint8_t varint5[] = {0x30, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const uint8_t qos3[] = {0x36, 5, 0, 1, 'a', 0, 1};
    static const uint8_t pubrel0[] = {0x60, 2, 0, 1};
    static const uint8_t trailing[] = {0x40, 3, 0, 1, 0};
    static const uint8_t short_topic[] = {0x30, 3, 0, 9, 'a'};
    static const uint8_t bad_prop[] = {0x20, 5, 0, 0, 2, 0x7f, 0};
    static const uint8_t pid0[] = {0x32, 6, 0, 1, 'a', 0, 0, 'x'};
    static const uint8_t type0[] = {0x00, 0};
    bench_pkt_t p;

    assert_int_equal(bench_mqtt_parse(varint5, sizeof varint5, 4, &p), UVMQ_EPKT_REMLEN);
    assert_int_equal(bench_mqtt_parse(qos3, sizeof qos3, 4, &p), UVMQ_EPKT_QOS);
    assert_int_equal(bench_mqtt_parse(pubrel0, sizeof pubrel0, 4, &p), UVMQ_EPKT_FLAGS);
    assert_int_equal(bench_mqtt_parse(trailing, sizeof trailing, 4, &p), UVMQ_EPKT_TRAILING);
    assert_int_equal(bench_mqtt_parse(short_topic, sizeof short_topic, 4, &p), UVMQ_EPKT_SHORT);
    assert_int_equal(bench_mqtt_parse(bad_prop, sizeof bad_prop, 5, &p), UVMQ_EPKT_PROP_ID);
    assert_int_equal(bench_mqtt_parse(pid0, sizeof pid0, 4, &p), UVMQ_EPKT_PACKET_ID);
    assert_int_equal(bench_mqtt_parse(type0, sizeof type0, 4, &p), UVMQ_EPKT_TYPE);
}

/* Builds a stream of broker packets; returns its length. */
static size_t build_stream(uint8_t *s, size_t cap)
{
    static const uint8_t connack[] = {0x20, 0x06, 0, 0, 3, 0x21, 0, 20};
    static const uint8_t suback[] = {0x90, 4, 0, 1, 0, 1};
    static const uint8_t ping[] = {0xd0, 0};
    static uint8_t payload[300];
    size_t n = 0;

    memcpy(s, connack, sizeof connack), n += sizeof connack;
    memcpy(s + n, suback, sizeof suback), n += sizeof suback;
    n += (size_t)bench_mqtt_encode_publish(s + n, cap - n, 5, 1, 9, "bench/0", 7, payload, 64);
    n += (size_t)bench_mqtt_encode_ack(s + n, cap - n, BENCH_PUBREL, 10);
    memcpy(s + n, ping, sizeof ping), n += sizeof ping;
    n += (size_t)bench_mqtt_encode_publish(s + n, cap - n, 5, 2, 11, "bench/1", 7, payload, 300);
    n += (size_t)bench_mqtt_encode_publish(s + n, cap - n, 5, 0, 0, "b", 1, payload, 24);
    return n;
}

/* Feeds data to a framer that keeps a partial-packet tail, as the client
 * does; appends each packet's type*100000+pid to got. Returns the new tail length. */
static size_t feed(uint8_t *tail, size_t tail_len, const uint8_t *data, size_t len,
                   long *got, size_t *ngot)
{
    uint8_t buf[1024];
    size_t total = tail_len + len, off = 0;
    bench_pkt_t p;
    int rc;

    memcpy(buf, tail, tail_len);
    memcpy(buf + tail_len, data, len);
    while ((rc = bench_mqtt_parse(buf + off, total - off, 5, &p)) > 0) {
        got[(*ngot)++] = p.type * 100000L + p.pid;
        off += (size_t)rc;
    }
    assert_int_equal(rc, BENCH_MQTT_NEED_MORE);
    memcpy(tail, buf + off, total - off);
    return total - off;
}

static void parser_frames_a_stream_split_at_every_byte(void **state)
{
    static const long want[] = {200000, 900001, 300009, 600010, 1300000, 300011, 300000};
    uint8_t stream[1024], tail[1024];
    long got[16];
    size_t n = build_stream(stream, sizeof stream), k, ngot, t;

    for (k = 0; k <= n; k++) {
        ngot = 0;
        t = feed(tail, 0, stream, k, got, &ngot);
        t = feed(tail, t, stream + k, n - k, got, &ngot);
        assert_int_equal(t, 0);
        assert_int_equal(ngot, 7);
        assert_memory_equal(got, want, sizeof want);
    }
}

static void parser_needs_more_for_every_proper_prefix(void **state)
{
    uint8_t stream[1024];
    bench_pkt_t p;
    size_t k;
    int len;

    build_stream(stream, sizeof stream);
    len = bench_mqtt_parse(stream + 14, sizeof stream - 14, 5, &p); /* the first PUBLISH */
    assert_int_equal(p.type, BENCH_PUBLISH);
    for (k = 0; k < (size_t)len; k++)
        assert_int_equal(bench_mqtt_parse(stream + 14, k, 5, &p), BENCH_MQTT_NEED_MORE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(connect_v311_has_exact_bytes),
        cmocka_unit_test(connect_v5_round_trips_with_session_expiry),
        cmocka_unit_test(connect_with_user_and_password_has_exact_bytes),
        cmocka_unit_test(connect_v5_round_trips_with_password_only),
        cmocka_unit_test(subscribe_has_exact_bytes_in_both_versions),
        cmocka_unit_test(publish_round_trips_at_every_qos_and_length_size),
        cmocka_unit_test(acks_have_exact_bytes_and_round_trip),
        cmocka_unit_test(ping_and_disconnect_are_two_bytes),
        cmocka_unit_test(encoders_refuse_a_short_buffer),
        cmocka_unit_test(connack_v5_yields_receive_maximum),
        cmocka_unit_test(suback_and_v5_acks_yield_reason_codes),
        cmocka_unit_test(parser_rejects_malformed_packets),
        cmocka_unit_test(parser_frames_a_stream_split_at_every_byte),
        cmocka_unit_test(parser_needs_more_for_every_proper_prefix),
    };
    return cmocka_run_group_tests_name("bench/mqtt", tests, NULL, NULL);
}

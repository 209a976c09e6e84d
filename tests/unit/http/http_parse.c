/*
 * Unit tests for http/http_parse.c: the pure part of the HTTP/2 API.
 * Percent-decoding, topic and filter checks (the MQTT PUBLISH/SUBSCRIBE
 * rules), query parsing with its errors, request headers into MQTT 5
 * properties, base64 both ways, JSON strings, and the server-sent event
 * of a message byte for byte. No sockets, no nghttp2.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_int.h"

/* ---- percent-decoding, topics, filters ---- */

static void pct_decode_keeps_plus_and_decodes_escapes(void **state)
{
    char out[32];
    (void)state;
    long n = http__pct_decode("a/%2B/b+c%23%2f", 15, out);
    assert_int_equal(n, 9);
    assert_memory_equal(out, "a/+/b+c#/", 9);
}

static void pct_decode_rejects_bad_escapes(void **state)
{
    char out[8];
    (void)state;
    assert_int_equal(http__pct_decode("a%2", 3, out), -1);
    assert_int_equal(http__pct_decode("a%zz", 4, out), -1);
    assert_int_equal(http__pct_decode("%", 1, out), -1);
}

/* The reason http__check_topic leaves (0 for a valid topic), checking
 * that it returned 0 exactly then and UVMQ_EINVAL otherwise. */
static uint8_t topic_reason(const char *t, size_t len, uint32_t max_levels)
{
    uint8_t reason = 0xFF;
    int rc = http__check_topic(t, len, max_levels, &reason);
    assert_int_equal(rc, reason == PKT_RC_SUCCESS ? 0 : UVMQ_EINVAL);
    return reason;
}

/* The same for http__check_filter. */
static uint8_t filter_reason(const char *f, size_t len, uint32_t max_levels)
{
    uint8_t reason = 0xFF;
    int rc = http__check_filter(f, len, max_levels, &reason);
    assert_int_equal(rc, reason == PKT_RC_SUCCESS ? 0 : UVMQ_EINVAL);
    return reason;
}

static void topic_checks_are_mqtts(void **state)
{
    (void)state;
    assert_int_equal(topic_reason("a/b", 3, 128), 0);
    assert_int_equal(topic_reason("/a//b/", 6, 128), 0);
    assert_int_equal(topic_reason("", 0, 128), PKT_RC_TOPIC_NAME_INVALID);
    assert_int_equal(topic_reason("a/+", 3, 128), PKT_RC_TOPIC_NAME_INVALID);
    assert_int_equal(topic_reason("a/#", 3, 128), PKT_RC_TOPIC_NAME_INVALID);
    assert_int_equal(topic_reason("a\0b", 3, 128), PKT_RC_TOPIC_NAME_INVALID);
    assert_int_equal(topic_reason("a\xff", 2, 128), PKT_RC_TOPIC_NAME_INVALID);
    assert_int_equal(topic_reason("a/b/c", 5, 2), PKT_RC_TOPIC_NAME_INVALID);
    char *big = calloc(1, 65537);
    memset(big, 'a', 65536);
    assert_int_equal(topic_reason(big, 65535, 128), 0);
    assert_int_equal(topic_reason(big, 65536, 128), PKT_RC_TOPIC_NAME_INVALID);
    free(big);
}

static void filter_checks_are_mqtts(void **state)
{
    (void)state;
    assert_int_equal(filter_reason("a/+/#", 5, 128), 0);
    assert_int_equal(filter_reason("#", 1, 128), 0);
    assert_int_equal(filter_reason("a/#/b", 5, 128), PKT_RC_TOPIC_FILTER_INVALID);
    assert_int_equal(filter_reason("a+", 2, 128), PKT_RC_TOPIC_FILTER_INVALID);
    assert_int_equal(filter_reason("$share/g/a", 10, 128), PKT_RC_SHARED_SUBS_NOT_SUPPORTED);
    assert_int_equal(filter_reason("a/b", 3, 1), PKT_RC_TOPIC_FILTER_INVALID);
}

/* ---- queries ---- */

static void publish_query_takes_qos_and_retain(void **state)
{
    http_pub_opts_t o;
    http_err_t e;
    (void)state;
    assert_int_equal(http__parse_publish_query("", 0, &o, &e), 0);
    assert_int_equal(o.qos, 0);
    assert_int_equal(o.retain, 0);
    assert_int_equal(http__parse_publish_query("qos=2&retain=true", 17, &o, &e), 0);
    assert_int_equal(o.qos, 2);
    assert_int_equal(o.retain, 1);
    assert_int_equal(http__parse_publish_query("&retain=1&&qos=1&", 17, &o, &e), 0);
    assert_int_equal(o.qos, 1);
    assert_int_equal(o.retain, 1);
    assert_int_equal(http__parse_publish_query("retain=false", 12, &o, &e), 0);
    assert_int_equal(o.retain, 0);
}

static void publish_query_refuses_bad_values(void **state)
{
    static const char *const bad[] = {"qos=3", "qos=", "qos", "qos=01", "qos=1&qos=1",
                                      "retain=yes", "retain=1&retain=0", "q=1", "QOS=1"};
    http_pub_opts_t o;
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        http_err_t e = {0};
        assert_int_equal(http__parse_publish_query(bad[i], strlen(bad[i]), &o, &e), UVMQ_EINVAL);
        assert_int_equal(e.status, 400);
        assert_int_equal(e.reason, PKT_RC_MALFORMED);
        assert_non_null(e.msg);
    }
}

static void subscribe_query_takes_filters_and_qos(void **state)
{
    static const char q[] = "filter=a%2F%2B&qos=1&filter=b/%23&filter=c";
    char fbuf[sizeof q];
    uint32_t off[HTTP_MAX_FILTERS], len[HTTP_MAX_FILTERS];
    uint8_t qos = 9;
    http_err_t e;
    (void)state;
    int n = http__parse_subscribe_query(q, sizeof q - 1, fbuf, off, len, &qos, 128, &e);
    assert_int_equal(n, 3);
    assert_int_equal(qos, 1);
    assert_int_equal(len[0], 3);
    assert_memory_equal(fbuf + off[0], "a/+", 3);
    assert_memory_equal(fbuf + off[1], "b/#", 3);
    assert_memory_equal(fbuf + off[2], "c", 1);
}

static void subscribe_query_refuses_bad_ones(void **state)
{
    static const struct {
        const char *q;
        uint8_t reason;
    } bad[] = {{"", PKT_RC_MALFORMED},
               {"qos=1", PKT_RC_MALFORMED},
               {"filter=a&qos=3", PKT_RC_MALFORMED},
               {"filter=a&x=1", PKT_RC_MALFORMED},
               {"filter=a%2", PKT_RC_MALFORMED},
               {"filter=a/%23/b", PKT_RC_TOPIC_FILTER_INVALID},
               {"filter=", PKT_RC_TOPIC_FILTER_INVALID},
               {"filter=%24share/g/a", PKT_RC_SHARED_SUBS_NOT_SUPPORTED}};
    char fbuf[64];
    uint32_t off[HTTP_MAX_FILTERS], len[HTTP_MAX_FILTERS];
    uint8_t qos;
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        http_err_t e = {0};
        int n = http__parse_subscribe_query(bad[i].q, strlen(bad[i].q), fbuf, off, len, &qos,
                                            128, &e);
        assert_int_equal(n, UVMQ_EINVAL);
        assert_int_equal(e.status, 400);
        assert_int_equal(e.reason, bad[i].reason);
    }
}

static void subscribe_query_caps_the_filter_count(void **state)
{
    char q[65 * 9 + 1] = "", fbuf[sizeof q];
    uint32_t off[HTTP_MAX_FILTERS], len[HTTP_MAX_FILTERS];
    uint8_t qos;
    http_err_t e;
    (void)state;
    for (int i = 0; i < 65; i++) strcat(q, i ? "&filter=a" : "filter=a");
    assert_int_equal(http__parse_subscribe_query(q, strlen(q), fbuf, off, len, &qos, 128, &e),
                     UVMQ_EINVAL);
    q[strlen(q) - 9] = '\0'; /* 64 */
    assert_int_equal(http__parse_subscribe_query(q, strlen(q), fbuf, off, len, &qos, 128, &e),
                     64);
}

/* ---- headers into properties ---- */

/* Builds kept headers from name, value pairs into hb/hdrs. */
static uint32_t headers(http_buf_t *hb, http_hdr_t *hdrs, const char *const *nv)
{
    uint32_t n = 0;
    for (size_t i = 0; nv[i] != NULL; i += 2, n++) {
        uint32_t off = (uint32_t)hb->len;
        http__buf_put(hb, nv[i], strlen(nv[i]), SIZE_MAX);
        http__buf_put(hb, nv[i + 1], strlen(nv[i + 1]), SIZE_MAX);
        hdrs[n] = (http_hdr_t){off, (uint32_t)strlen(nv[i]), off + (uint32_t)strlen(nv[i]),
                               (uint32_t)strlen(nv[i + 1])};
    }
    return n;
}

static void headers_become_properties(void **state)
{
    static const char *const nv[] = {"content-type", "text/plain",
                                     "x-mqtt-user-k", "v1",
                                     "x-mqtt-message-expiry", "60",
                                     "x-mqtt-response-topic", "r/t",
                                     "x-mqtt-correlation-data", "AAEC/w==",
                                     "x-mqtt-user-k", "v2",
                                     "x-mqtt-other", "ignored", NULL};
    http_buf_t hb = {0};
    http_hdr_t hdrs[8];
    uint8_t cbuf[16];
    pkt_props_t p;
    http_err_t e;
    arena_t a;
    (void)state;
    arena_init(&a, 4096);
    uint32_t n = headers(&hb, hdrs, nv);
    assert_int_equal(http__props_from_headers(hb.p, hdrs, n, &p, cbuf, &a, &e), 0);
    assert_true(PKT_PROP_HAS(&p, PROP_CONTENT_TYPE));
    assert_memory_equal(p.content_type.p, "text/plain", 10);
    assert_int_equal(p.message_expiry, 60);
    assert_memory_equal(p.response_topic.p, "r/t", 3);
    assert_int_equal(p.correlation_data.len, 4);
    assert_memory_equal(p.correlation_data.p, "\x00\x01\x02\xff", 4);
    assert_int_equal(p.n_user, 2);
    assert_memory_equal(p.user[0].key.p, "k", 1);
    assert_memory_equal(p.user[0].val.p, "v1", 2);
    assert_memory_equal(p.user[1].val.p, "v2", 2);
    /* the encoded block decodes back to the same (what a message keeps) */
    uint8_t enc[256];
    size_t len = pkt_props_write(&p, enc);
    pkt_props_t back;
    assert_int_equal(pkt_props_parse(enc, len, PKT_PUBLISH, &back, &a), 0);
    assert_int_equal(back.n_user, 2);
    assert_int_equal(back.message_expiry, 60);
    arena_dispose(&a);
    http__buf_free(&hb);
}

static void bad_property_headers_are_refused(void **state)
{
    static const char *const cases[][3] = {
        {"x-mqtt-correlation-data", "not base64!", "base64"},
        {"x-mqtt-correlation-data", "AAE", "base64"}, /* 3 chars: fine, below */
        {"x-mqtt-message-expiry", "0", "seconds"},
        {"x-mqtt-message-expiry", "4294967296", "seconds"},
        {"x-mqtt-message-expiry", "-1", "seconds"},
        {"x-mqtt-response-topic", "a/+", "response-topic"},
        {"content-type", "\xc3\x28", "UTF-8"},
        {"x-mqtt-user-k", "\xff", "UTF-8"},
        {"x-mqtt-correlation-data", "AA==", "twice"}, /* given twice: below */
        {"content-type", "a", "twice"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int twice = strcmp(cases[i][2], "twice") == 0;
        const char *nv[] = {cases[i][0], cases[i][1], twice ? cases[i][0] : NULL,
                            "AAAAAAAAAAAAAAAAAAAA", NULL};
        http_buf_t hb = {0};
        http_hdr_t hdrs[2];
        uint8_t cbuf[32];
        pkt_props_t p;
        http_err_t e = {0};
        arena_t a;
        arena_init(&a, 4096);
        uint32_t n = headers(&hb, hdrs, nv);
        int rc = http__props_from_headers(hb.p, hdrs, n, &p, cbuf, &a, &e);
        if (i == 1) {
            assert_int_equal(rc, 0); /* "AAE" is base64 of two bytes, unpadded */
            assert_int_equal(p.correlation_data.len, 2);
        } else {
            assert_int_equal(rc, UVMQ_EINVAL);
            assert_int_equal(e.status, 400);
            assert_non_null(strstr(e.msg, cases[i][2]));
        }
        arena_dispose(&a);
        http__buf_free(&hb);
    }
}

/* ---- base64, JSON ---- */

static void base64_round_trips(void **state)
{
    static const struct {
        const char *raw, *b64;
    } v[] = {{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"},
             {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
    (void)state;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char enc[16];
        uint8_t dec[16];
        size_t n = http__b64_encode((const uint8_t *)v[i].raw, strlen(v[i].raw), enc);
        assert_int_equal(n, strlen(v[i].b64));
        assert_int_equal(n, http__b64_len(strlen(v[i].raw)));
        assert_memory_equal(enc, v[i].b64, n);
        assert_int_equal(http__b64_decode(v[i].b64, n, dec), (long)strlen(v[i].raw));
        assert_memory_equal(dec, v[i].raw, strlen(v[i].raw));
    }
    uint8_t dec[8];
    assert_int_equal(http__b64_decode("Zg", 2, dec), 1);   /* unpadded */
    assert_int_equal(http__b64_decode("Z", 1, dec), -1);   /* no whole byte */
    assert_int_equal(http__b64_decode("Zm9v!", 5, dec), -1);
    assert_int_equal(http__b64_decode("Z===", 4, dec), -1);
}

static void json_strings_are_escaped(void **state)
{
    http_buf_t b = {0};
    (void)state;
    assert_int_equal(http__json_str(&b, "a\"b\\c\nd\x01\x7f\xc3\xa9", 11, SIZE_MAX), 0);
    assert_int_equal(b.len, strlen("\"a\\\"b\\\\c\\nd\\u0001\x7f\xc3\xa9\""));
    assert_memory_equal(b.p, "\"a\\\"b\\\\c\\nd\\u0001\x7f\xc3\xa9\"", b.len);
    http__buf_free(&b);
    assert_int_equal(http__json_error(&b, "bad \"x\"", 0x90), 0);
    assert_memory_equal(b.p, "{\"error\":\"bad \\\"x\\\"\",\"reason_code\":144}\n", b.len);
    http__buf_free(&b);
}

/* ---- events ---- */

static void event_of_a_text_message(void **state)
{
    static const char want[] =
        "data: {\"topic\":\"a/b\",\"qos\":1,\"retain\":false,\"payload\":\"hi\\n\","
        "\"encoding\":\"utf-8\"}\n\n";
    http_buf_t b = {0};
    (void)state;
    msg_t *m = msg_create("a/b", 3, (const uint8_t *)"hi\n", 3, NULL, 0, 1, 0, 1 << 20,
                          0); /* no broker state: http_parse reads msg_t only */
    size_t n = http__sse_event(&b, m, 1, 0, 0, SIZE_MAX);
    assert_int_equal(n, sizeof want - 1);
    assert_memory_equal(b.p, want, n);
    msg_release(&m);
    http__buf_free(&b);
}

static void event_of_a_binary_message_with_properties(void **state)
{
    static const char *const nv[] = {"content-type", "app/x", "x-mqtt-user-k", "v\"",
                                     "x-mqtt-correlation-data", "AQI=",
                                     "x-mqtt-response-topic", "r", NULL};
    static const char want[] =
        "data: {\"topic\":\"t\",\"qos\":0,\"retain\":true,\"payload\":\"AP8=\","
        "\"encoding\":\"base64\",\"properties\":{\"content_type\":\"app/x\","
        "\"response_topic\":\"r\",\"correlation_data\":\"AQI=\",\"message_expiry\":10,"
        "\"user\":[[\"k\",\"v\\\"\"]]}}\n\n";
    http_buf_t hb = {0}, b = {0};
    http_hdr_t hdrs[4];
    uint8_t cbuf[8], enc[128];
    pkt_props_t p;
    http_err_t e;
    arena_t a;
    (void)state;
    arena_init(&a, 4096);
    uint32_t n = headers(&hb, hdrs, nv);
    assert_int_equal(http__props_from_headers(hb.p, hdrs, n, &p, cbuf, &a, &e), 0);
    size_t plen = pkt_props_write(&p, enc);
    msg_t *m = msg_create("t", 1, (const uint8_t *)"\x00\xff", 2, enc, plen, 0, 1, 1 << 20,
                          0); /* no broker state: http_parse reads msg_t only */
    m->expiry_at = 1000000 + 9500; /* 9.5 s left: rounds up to 10 */
    size_t len = http__sse_event(&b, m, 0, 1, 1000000, SIZE_MAX);
    assert_int_equal(len, sizeof want - 1);
    assert_memory_equal(b.p, want, len);
    /* past the limit nothing is added */
    assert_int_equal(http__sse_event(&b, m, 0, 1, 1000000, b.len + 20), 0);
    assert_int_equal(b.len, len);
    msg_release(&m);
    arena_dispose(&a);
    http__buf_free(&hb);
    http__buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pct_decode_keeps_plus_and_decodes_escapes),
        cmocka_unit_test(pct_decode_rejects_bad_escapes),
        cmocka_unit_test(topic_checks_are_mqtts),
        cmocka_unit_test(filter_checks_are_mqtts),
        cmocka_unit_test(publish_query_takes_qos_and_retain),
        cmocka_unit_test(publish_query_refuses_bad_values),
        cmocka_unit_test(subscribe_query_takes_filters_and_qos),
        cmocka_unit_test(subscribe_query_refuses_bad_ones),
        cmocka_unit_test(subscribe_query_caps_the_filter_count),
        cmocka_unit_test(headers_become_properties),
        cmocka_unit_test(bad_property_headers_are_refused),
        cmocka_unit_test(base64_round_trips),
        cmocka_unit_test(json_strings_are_escaped),
        cmocka_unit_test(event_of_a_text_message),
        cmocka_unit_test(event_of_a_binary_message_with_properties),
    };
    return cmocka_run_group_tests_name("unit/http/http_parse", tests, NULL, NULL);
}

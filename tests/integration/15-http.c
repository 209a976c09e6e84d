/*
 * 15-http - the HTTP/2 API (h2c, prior knowledge) next to MQTT.
 *
 * Scenario: a broker listens for MQTT and for HTTP/2. HTTP clients (the
 * harness's nghttp2 client, h2client.c) publish with POST /v1/publish and
 * raw MQTT subscribers (byte-exact packets) receive the messages with the
 * QoS, retain flag and v5 properties the request asked for; MQTT
 * publishers reach HTTP event streams (GET /v1/subscribe), several of
 * which share one connection, retained messages first. A QoS 1 HTTP
 * publish to a stored MQTT session is answered 204 only once committed:
 * the broker is SIGKILLed right after the 204 and the message is still
 * delivered after the restart. Every bad request gets its status and a
 * JSON error with an MQTT 5 reason code; an HTTP/1.1 request on the port
 * gets an HTTP/1.1 505 and is closed; an event stream whose client stops
 * granting window drops QoS 0 events (counted in /v1/stats) instead of
 * growing; an idle connection is closed after http_idle_timeout; HTTP/2
 * connections count in max_connections; nghttp2's rapid-reset limit
 * closes a client that resets streams in bulk.
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

#include "tests/integration/harness/h2client.h"
#include "tests/integration/harness/harness.h"

#define PKT_CAP 4096
#define WAIT TH_WAIT_MS

/* ---- helpers ------------------------------------------------------------- */

/* POST /v1/publish/<path> (path holds the topic and query) with body and
 * headers; returns the status. */
static int publish(uint16_t port, const char *path, const char *body,
                   const char *const *hdrs)
{
    char url[512];
    snprintf(url, sizeof url, "/v1/publish/%s", path);
    th_h2_resp_t *r = th_h2_get(port, "POST", url, hdrs, body, strlen(body));
    int status = r->status;
    th_h2_resp_free(r);
    return status;
}

/* Fails unless a request answers `status` with a JSON error whose
 * reason_code is `reason`. */
static void expect_error(uint16_t port, const char *method, const char *path,
                         const char *const *hdrs, const char *body, int status,
                         int reason)
{
    char want[64];
    th_h2_resp_t *r = th_h2_get(port, method, path, hdrs, body,
                                body != NULL ? strlen(body) : 0);
    snprintf(want, sizeof want, "\"reason_code\":%d}", reason);
    if (r->status != status || strstr(r->body, "{\"error\":\"") != r->body ||
        strstr(r->body, want) == NULL || strcmp(r->ctype, "application/json") != 0)
        fail_msg("%s %s: got %d %s %s, want %d reason %d", method, path, r->status,
                 r->ctype, r->body, status, reason);
    th_h2_resp_free(r);
}

/* The value of "name": in a JSON object text (a number), or -1. */
static long json_num(const char *json, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", name);
    const char *p = strstr(json, key);
    return p != NULL ? strtol(p + strlen(key), NULL, 10) : -1;
}

/* Reads the next PUBLISH on a raw MQTT connection and parses it. */
static int read_publish(int fd, int version, unsigned char *buf, th_publish_t *p)
{
    int n = th_read_type(fd, 0x30, buf, PKT_CAP, WAIT);
    if (!th_parse_publish(buf, (size_t)n, version, p)) fail_msg("malformed PUBLISH");
    return n;
}

/* Opens an event stream on h for the query; waits for its first event. */
static int32_t subscribe(th_h2_t *h, const char *query)
{
    char url[512];
    snprintf(url, sizeof url, "/v1/subscribe?%s", query);
    int32_t id = th_h2_request(h, "GET", url, NULL, NULL, 0);
    if (!th_h2_wait_body(h, id, "event: subscribed\n", 1, WAIT))
        fail_msg("no subscribed event on %s", url);
    th_h2_resp_t *r = th_h2_wait(h, id, 0);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->ctype, "text/event-stream");
    return id;
}

/* ---- publish ------------------------------------------------------------- */

/* A v3.1.1 subscriber receives an HTTP publish at QoS 0 as exact bytes. */
static void http_publish_qos0_reaches_mqtt_subscriber(th_ctx_t *t)
{
    static const unsigned char want[] = {0x30, 0x0a, 0x00, 0x03, 'h', '/', 'a',
                                         'h', 'e', 'l', 'l', 'o'};
    int fd = th_mqtt_open(t->port, 4, "sub", 0x02, 60);
    th_mqtt_subscribe(fd, 4, 1, "h/#", 1);
    assert_int_equal(publish(t->broker->http_port, "h/a", "hello", NULL), 204);
    th_expect(fd, want, sizeof want, WAIT);
}

/* QoS 1 and 2 publishes arrive at the published QoS; retain=true is kept
 * for a new subscriber (retained) and then a GET /v1/retained shows it. */
static void http_publish_qos_and_retain_are_kept(th_ctx_t *t)
{
    unsigned char buf[PKT_CAP];
    th_publish_t p;
    uint16_t hp = t->broker->http_port;
    int fd = th_mqtt_open(t->port, 4, "sub", 0x02, 60);
    th_mqtt_subscribe(fd, 4, 1, "q/#", 2);
    assert_int_equal(publish(hp, "q/1?qos=1", "one", NULL), 204);
    read_publish(fd, 4, buf, &p);
    assert_int_equal(p.qos, 1);
    th_send_ack(fd, 0x40, p.id);
    assert_int_equal(publish(hp, "q/2?qos=2&retain=false", "two", NULL), 204);
    read_publish(fd, 4, buf, &p);
    assert_int_equal(p.qos, 2);
    assert_false(p.retain);
    assert_int_equal(publish(hp, "q/r?qos=1&retain=1", "kept", NULL), 204);
    th_close(fd);
    /* a new subscriber gets it retained */
    static const unsigned char sub[] = {0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 'q', '/', 'r', 0x01};
    static const unsigned char suback[] = {0x90, 0x03, 0x00, 0x01, 0x01};
    int fd2 = th_mqtt_open(t->port, 4, "sub2", 0x02, 60);
    th_send(fd2, sub, sizeof sub);
    th_expect(fd2, suback, sizeof suback, WAIT);
    read_publish(fd2, 4, buf, &p);
    assert_true(p.retain);
    assert_int_equal(p.qos, 1);
    assert_memory_equal(p.payload, "kept", 4);
    th_h2_resp_t *r = th_h2_get(hp, "GET", "/v1/retained/q/r", NULL, NULL, 0);
    assert_int_equal(r->status, 200);
    assert_non_null(strstr(r->body, "\"topic\":\"q/r\",\"qos\":1,\"retain\":true,"
                                     "\"payload\":\"kept\",\"encoding\":\"utf-8\""));
    th_h2_resp_free(r);
    /* an empty retained publish deletes it */
    assert_int_equal(publish(hp, "q/r?retain=true", "", NULL), 204);
    expect_error(hp, "GET", "/v1/retained/q/r", NULL, NULL, 404, 0x80);
}

/* Request headers become MQTT 5 properties on a v5 subscriber. */
static void http_headers_become_v5_properties(th_ctx_t *t)
{
    static const char *const hdrs[] = {
        "content-type", "text/plain", "x-mqtt-user-colour", "blue",
        "x-mqtt-user-colour", "red", "x-mqtt-response-topic", "reply/here",
        "x-mqtt-correlation-data", "AAEC", "x-mqtt-message-expiry", "3600", NULL};
    unsigned char buf[PKT_CAP];
    th_publish_t p;
    th_connect_t c = {.version = 5, .client_id = "v5sub", .clean = true, .keepalive = 60};
    int fd = th_mqtt_connect(t->port, &c, NULL);
    th_mqtt_subscribe(fd, 5, 1, "p/#", 0);
    assert_int_equal(publish(t->broker->http_port, "p/x", "body", hdrs), 204);
    int n = read_publish(fd, 5, buf, &p);
    assert_memory_equal(p.payload, "body", 4);
    size_t off = (size_t)(p.topic + p.topic_len - (const char *)buf);
    size_t v = th_v5_prop(buf, (size_t)n, off, 0x03); /* Content Type */
    assert_true(v > 0);
    assert_memory_equal(buf + v, "\x00\x0atext/plain", 12);
    v = th_v5_prop(buf, (size_t)n, off, 0x08); /* Response Topic */
    assert_memory_equal(buf + v, "\x00\x0areply/here", 12);
    v = th_v5_prop(buf, (size_t)n, off, 0x09); /* Correlation Data */
    assert_memory_equal(buf + v, "\x00\x03\x00\x01\x02", 5);
    v = th_v5_prop(buf, (size_t)n, off, 0x02); /* Message Expiry */
    assert_true(v > 0);
    uint32_t left = (uint32_t)buf[v] << 24 | buf[v + 1] << 16 | buf[v + 2] << 8 | buf[v + 3];
    assert_true(left > 3500 && left <= 3600);
    v = th_v5_prop(buf, (size_t)n, off, 0x26); /* User Property: the first */
    assert_memory_equal(buf + v, "\x00\x06" "colour\x00\x04" "blue", 14);
    assert_non_null(memmem(buf, (size_t)n, "\x26\x00\x06" "colour\x00\x03" "red", 14));
}

/* ---- event streams --------------------------------------------------------- */

/* MQTT publishes reach an event stream as JSON events; the retained
 * message comes first, marked retain; binary payloads are base64. */
static void mqtt_publish_reaches_event_stream(th_ctx_t *t)
{
    unsigned char pub[64];
    static const unsigned char bin[] = {0x00, 0xff, 0x10};
    int fd = th_mqtt_open(t->port, 4, "pub", 0x02, 60);
    size_t n = th_build_publish(pub, sizeof pub, 4, "e/r", 1, true, false, 1, "old", 3);
    th_send(fd, pub, n);
    th_expect_ack(fd, 0x40, 1, WAIT);
    th_h2_t *h = th_h2_open(t->broker->http_port, false);
    int32_t id = subscribe(h, "filter=e/%23&qos=1");
    assert_true(th_h2_wait_body(h, id, "data: {\"topic\":\"e/r\",\"qos\":1,\"retain\":true,"
                                       "\"payload\":\"old\",\"encoding\":\"utf-8\"}\n\n", 1, WAIT));
    n = th_build_publish(pub, sizeof pub, 4, "e/t", 0, false, false, 0, "live \"q\"", 8);
    th_send(fd, pub, n);
    assert_true(th_h2_wait_body(h, id, "data: {\"topic\":\"e/t\",\"qos\":0,\"retain\":false,"
                                       "\"payload\":\"live \\\"q\\\"\",\"encoding\":\"utf-8\"}\n\n",
                                1, WAIT));
    n = th_build_publish(pub, sizeof pub, 4, "e/b", 2, false, false, 2, bin, sizeof bin);
    th_send(fd, pub, n);
    th_expect_ack(fd, 0x50, 2, WAIT);
    assert_true(th_h2_wait_body(h, id, "\"topic\":\"e/b\",\"qos\":1,\"retain\":false,"
                                       "\"payload\":\"AP8Q\",\"encoding\":\"base64\"}",
                                1, WAIT));
    /* the retained one came before the live ones */
    th_h2_resp_t *r = th_h2_wait(h, id, 0);
    assert_true(strstr(r->body, "e/r") < strstr(r->body, "e/t"));
    th_h2_close(h);
}

/* Several event streams share one connection; an HTTP publish on the same
 * connection reaches them, each its own filters; a cancelled stream stops
 * receiving and its subscription goes away. */
static void event_streams_share_one_connection(th_ctx_t *t)
{
    th_h2_t *h = th_h2_open(t->broker->http_port, false);
    int32_t a = subscribe(h, "filter=s/a");
    int32_t b = subscribe(h, "filter=s/b&filter=s/%2B/deep&qos=2");
    int32_t all = subscribe(h, "filter=s/%23");
    int32_t p1 = th_h2_request(h, "POST", "/v1/publish/s/a", NULL, "to-a", 4);
    int32_t p2 = th_h2_request(h, "POST", "/v1/publish/s/x/deep?qos=1", NULL, "to-b", 4);
    assert_int_equal(th_h2_wait(h, p1, WAIT)->status, 204);
    assert_int_equal(th_h2_wait(h, p2, WAIT)->status, 204);
    assert_true(th_h2_wait_body(h, all, "\"payload\":\"to-", 2, WAIT));
    assert_true(th_h2_wait_body(h, a, "\"payload\":\"to-a\"", 1, WAIT));
    assert_true(th_h2_wait_body(h, b, "\"topic\":\"s/x/deep\",\"qos\":1", 1, WAIT));
    th_h2_pump(h, 200);
    assert_int_equal(th_h2_count(h, a, "to-b"), 0);
    assert_int_equal(th_h2_count(h, b, "to-a"), 0);
    /* cancel b: the stats show the subscriptions of a and all only */
    th_h2_cancel(h, b);
    th_h2_pump(h, 200);
    th_h2_resp_t *r = th_h2_get(t->broker->http_port, "GET", "/v1/stats", NULL, NULL, 0);
    assert_int_equal(json_num(r->body, "subscriptions"), 2);
    th_h2_resp_free(r);
    th_h2_close(h);
}

/* A client that stops granting window is flow-controlled; past
 * max_out_bytes its QoS 0 events are dropped and counted, and the
 * broker stays responsive. */
static void slow_event_reader_drops_qos0_and_counts(th_ctx_t *t)
{
    char body[1024];
    memset(body, 'x', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    th_h2_t *slow = th_h2_open(t->broker->http_port, true);
    int32_t id = subscribe(slow, "filter=f/%23");
    int fd = th_mqtt_open(t->port, 4, "pub", 0x02, 60);
    unsigned char pub[1200];
    size_t n = th_build_publish(pub, sizeof pub, 4, "f/x", 0, false, false, 0, body,
                                sizeof body - 1);
    for (int i = 0; i < 200; i++) th_send(fd, pub, n);
    /* PINGREQ round trip: everything before it was read and delivered */
    static const unsigned char ping[] = {0xc0, 0x00}, pong[] = {0xd0, 0x00};
    th_send(fd, ping, 2);
    th_expect(fd, pong, 2, WAIT);
    long dropped = -1;
    for (int64_t end = th_now_ms() + WAIT; th_now_ms() < end && dropped <= 0;) {
        th_h2_resp_t *r = th_h2_get(t->broker->http_port, "GET", "/v1/stats", NULL, NULL, 0);
        dropped = json_num(strstr(r->body, "\"dropped\""), "qos0");
        th_h2_resp_free(r);
        if (dropped <= 0) th_sleep_ms(50);
    }
    assert_true(dropped > 0);
    assert_true(dropped < 200); /* the first 64 KiB went into the window/buffer */
    th_h2_pump(slow, 100);
    assert_true(th_h2_count(slow, id, "data: {") < 200);
    th_h2_close(slow);
}

/* ---- durability ------------------------------------------------------------ */

/* A QoS 1 HTTP publish to a stored session: 204, SIGKILL at once, restart:
 * the message is delivered to the session. */
static void http_qos1_publish_survives_kill9(th_ctx_t *t)
{
    unsigned char buf[PKT_CAP];
    th_publish_t p;
    th_connect_t c = {.version = 4, .client_id = "keeper", .clean = false, .keepalive = 60};
    int fd = th_mqtt_connect(t->port, &c, NULL);
    th_mqtt_subscribe(fd, 4, 1, "d/#", 1);
    th_mqtt_disconnect(fd);
    assert_int_equal(publish(t->broker->http_port, "d/x?qos=1", "durable", NULL), 204);
    th_broker_kill(t->broker);
    th_broker_restart(t->broker, NULL);
    bool sp = false;
    fd = th_mqtt_connect(t->port, &c, &sp);
    assert_true(sp);
    read_publish(fd, 4, buf, &p);
    assert_int_equal(p.qos, 1);
    assert_memory_equal(p.payload, "durable", 7);
    th_send_ack(fd, 0x40, p.id);
}

/* ---- bad requests ---------------------------------------------------------- */

static void bad_requests_get_status_and_reason(th_ctx_t *t)
{
    uint16_t hp = t->broker->http_port;
    static const char *const bad_b64[] = {"x-mqtt-correlation-data", "*nope*", NULL};
    static const char *const bad_exp[] = {"x-mqtt-message-expiry", "soon", NULL};
    static const char *const bad_rt[] = {"x-mqtt-response-topic", "a/#", NULL};
    expect_error(hp, "GET", "/nowhere", NULL, NULL, 404, 0x80);
    expect_error(hp, "GET", "/v1/publish/a", NULL, NULL, 405, 0x80);
    expect_error(hp, "POST", "/v1/stats", NULL, "x", 405, 0x80);
    expect_error(hp, "POST", "/v1/publish/a/%2B/b", NULL, "x", 400, 0x90);
    expect_error(hp, "POST", "/v1/publish/a/%23", NULL, "x", 400, 0x90);
    expect_error(hp, "POST", "/v1/publish/", NULL, "x", 400, 0x90);
    expect_error(hp, "POST", "/v1/publish/a%zz", NULL, "x", 400, 0x90);
    expect_error(hp, "POST", "/v1/publish/a%00b", NULL, "x", 400, 0x90);
    expect_error(hp, "POST", "/v1/publish/a/b/c/d/e", NULL, "x", 400, 0x90); /* levels */
    expect_error(hp, "POST", "/v1/publish/a?qos=3", NULL, "x", 400, 0x81);
    expect_error(hp, "POST", "/v1/publish/a?qos=1&qos=1", NULL, "x", 400, 0x81);
    expect_error(hp, "POST", "/v1/publish/a?retain=yes", NULL, "x", 400, 0x81);
    expect_error(hp, "POST", "/v1/publish/a?colour=red", NULL, "x", 400, 0x81);
    expect_error(hp, "POST", "/v1/publish/a", bad_b64, "x", 400, 0x81);
    expect_error(hp, "POST", "/v1/publish/a", bad_exp, "x", 400, 0x81);
    expect_error(hp, "POST", "/v1/publish/a", bad_rt, "x", 400, 0x90);
    expect_error(hp, "GET", "/v1/subscribe", NULL, NULL, 400, 0x81);
    expect_error(hp, "GET", "/v1/subscribe?filter=a/%23/b", NULL, NULL, 400, 0x8F);
    expect_error(hp, "GET", "/v1/subscribe?filter=%24share/g/a", NULL, NULL, 400, 0x9E);
    expect_error(hp, "GET", "/v1/subscribe?filter=a&qos=9", NULL, NULL, 400, 0x81);
    expect_error(hp, "GET", "/v1/retained/a/%2B", NULL, NULL, 400, 0x90);
    /* over max_packet_size (1024 here): by Content-Length and by body */
    char big[2048];
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    expect_error(hp, "POST", "/v1/publish/a", NULL, big, 413, 0x95);
    static const char *const no_len[] = {"x-mqtt-user-k", "v", NULL};
    th_h2_t *h = th_h2_open(hp, false);
    /* nghttp2 sends no content-length by itself: the body limit decides */
    int32_t id = th_h2_request(h, "POST", "/v1/publish/a", no_len, big, sizeof big - 1);
    th_h2_resp_t *r = th_h2_wait(h, id, WAIT);
    assert_int_equal(r->status, 413);
    assert_non_null(strstr(r->body, "\"reason_code\":149"));
    th_h2_close(h);
    /* the broker is fine */
    r = th_h2_get(hp, "GET", "/healthz", NULL, NULL, 0);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "{\"status\":\"ok\"}\n");
    th_h2_resp_free(r);
}

/* HTTP/1.1 on the h2c port: an HTTP/1.1 505 with a JSON error, closed. */
static void http1_request_gets_505_and_close(th_ctx_t *t)
{
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char want[] = "HTTP/1.1 505 HTTP Version Not Supported\r\n";
    char buf[1024];
    size_t got = 0;
    int fd = th_connect(t->broker->http_port);
    th_send(fd, req, sizeof req - 1);
    for (int64_t end = th_now_ms() + WAIT; th_now_ms() < end && got < sizeof buf - 1;) {
        ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, MSG_DONTWAIT);
        if (n == 0) break;
        if (n > 0) got += (size_t)n;
        else th_sleep_ms(10);
    }
    buf[got] = '\0';
    assert_true(strncmp(buf, want, sizeof want - 1) == 0);
    assert_non_null(strstr(buf, "\r\n\r\n{\"error\":\"this port speaks HTTP/2 only"));
    assert_non_null(strstr(buf, "\"reason_code\":132}"));
    th_expect_closed(fd, WAIT); /* the peer closed: recv returned 0 above */
}

/* ---- stats, metrics, limits -------------------------------------------------- */

static void stats_and_metrics_report_counters(th_ctx_t *t)
{
    uint16_t hp = t->broker->http_port;
    int fd = th_mqtt_open(t->port, 4, "sub", 0x02, 60);
    th_mqtt_subscribe(fd, 4, 1, "m/#", 0);
    assert_int_equal(publish(hp, "m/a?qos=1&retain=1", "x", NULL), 204);
    assert_int_equal(publish(hp, "m/b", "y", NULL), 204);
    th_h2_resp_t *r = th_h2_get(hp, "GET", "/v1/stats", NULL, NULL, 0);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->ctype, "application/json");
    assert_int_equal(json_num(r->body, "in"), 2); /* messages in */
    assert_int_equal(json_num(r->body, "retained"), 1);
    assert_int_equal(json_num(r->body, "subscriptions"), 1);
    assert_true(json_num(r->body, "current") >= 2); /* MQTT + this HTTP/2 */
    assert_true(json_num(r->body, "http") >= 1);
    assert_true(json_num(r->body, "commits") >= 1); /* the retained message */
    th_h2_resp_free(r);
    r = th_h2_get(hp, "GET", "/metrics", NULL, NULL, 0);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->ctype, "text/plain; version=0.0.4");
    assert_non_null(strstr(r->body, "\nuvmq_messages_received_total 2\n"));
    assert_non_null(strstr(r->body, "# TYPE uvmq_store_commit_seconds histogram\n"));
    assert_non_null(strstr(r->body, "uvmq_store_commit_seconds_bucket{le=\"+Inf\"} "));
    assert_non_null(strstr(r->body, "uvmq_messages_dropped_total{reason=\"qos0\"} 0\n"));
    assert_non_null(strstr(r->body, "\nuvmq_retained_messages 1\n"));
    th_h2_resp_free(r);
}

/* With http_idle_timeout 1, a connection with no request is closed
 * (GOAWAY, then EOF) within a few seconds. */
static void idle_connection_is_closed(th_ctx_t *t)
{
    bool goaway = false;
    th_h2_t *h = th_h2_open(t->broker->http_port, false);
    int32_t id = th_h2_request(h, "GET", "/healthz", NULL, NULL, 0);
    assert_int_equal(th_h2_wait(h, id, WAIT)->status, 200);
    assert_true(th_h2_wait_closed(h, 6000, &goaway));
    assert_true(goaway);
    th_h2_close(h);
}

/* max_connections 1 counts HTTP/2 connections too. */
static void http_connections_count_in_max_connections(th_ctx_t *t)
{
    static const unsigned char connect[] = {0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04,
                                            0x02, 0x00, 0x3c, 0x00, 0x04, 'o', 'n', 'l', 'y'};
    static const unsigned char connack[] = {0x20, 0x02, 0x00, 0x00};
    unsigned char buf[16];
    int fd = -1;
    /* The harness's start-up probes (one per port) may still be counted
     * for a moment: retry until the one allowed connection is ours. */
    for (int64_t end = th_now_ms() + WAIT; fd < 0 && th_now_ms() < end;) {
        fd = th_connect(t->port);
        th_send(fd, connect, sizeof connect);
        if (th_try_read_packet(fd, buf, sizeof buf, 1000) == 4 &&
            memcmp(buf, connack, 4) == 0)
            break;
        th_close(fd);
        fd = -1;
        th_sleep_ms(50);
    }
    assert_true(fd >= 0);
    int hfd = th_connect(t->broker->http_port);
    th_expect_closed(hfd, WAIT);
    th_mqtt_disconnect(fd);
}

/* Rapid reset (CVE-2023-44487): a client that opens and resets streams in
 * bulk is sent GOAWAY and closed by nghttp2's reset rate limit. */
static void rapid_reset_is_stopped(th_ctx_t *t)
{
    bool goaway = false;
    th_h2_t *h = th_h2_open(t->broker->http_port, false);
    for (int i = 0; i < 1500; i++) {
        int32_t id = th_h2_request(h, "GET", "/healthz", NULL, NULL, 0);
        th_h2_cancel(h, id);
        if (i % 50 == 0) th_h2_pump(h, 1);
    }
    assert_true(th_h2_wait_closed(h, WAIT, &goaway));
    assert_true(goaway);
    th_h2_close(h);
    th_h2_resp_t *r = th_h2_get(t->broker->http_port, "GET", "/v1/stats", NULL, NULL, 0);
    assert_int_equal(r->status, 200); /* the broker is fine, and counted it */
    assert_true(json_num(strstr(r->body, "\"bad_input\""), "protocol_error") >= 1);
    th_h2_resp_free(r);
}

static int group_setup(void **state)
{
    (void)state;
    th_http_enable(true);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_TEST(http_publish_qos0_reaches_mqtt_subscriber),
        TH_TEST(http_publish_qos_and_retain_are_kept),
        TH_TEST(http_headers_become_v5_properties),
        TH_TEST(mqtt_publish_reaches_event_stream),
        TH_TEST(event_streams_share_one_connection),
        TH_TEST_CFG(slow_event_reader_drops_qos0_and_counts, "{\"max_out_bytes\": 65536}"),
        TH_TEST(http_qos1_publish_survives_kill9),
        TH_TEST_CFG(bad_requests_get_status_and_reason,
                    "{\"max_packet_size\": 1024, \"max_topic_levels\": 4}"),
        TH_TEST(http1_request_gets_505_and_close),
        /* sys_interval 0: the $SYS retained messages would count */
        TH_TEST_CFG(stats_and_metrics_report_counters, "{\"sys_interval\": 0}"),
        TH_TEST_CFG(idle_connection_is_closed, "{\"http_idle_timeout\": 1}"),
        TH_TEST_CFG(http_connections_count_in_max_connections, "{\"max_connections\": 1}"),
        TH_TEST(rapid_reset_is_stopped),
    };
    return cmocka_run_group_tests_name("integration/15-http", tests, group_setup, NULL);
}

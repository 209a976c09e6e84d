/*
 * http_api.c - the HTTP/2 API's requests: routing, publish, subscribe
 * (event streams), retained, stats, metrics, health.
 *
 * Every request but /healthz is authorized first (http_auth.c: Basic
 * credentials against the password file), and what its user asks is
 * checked against the ACL (403 when refused; an event stream's session
 * carries the user, so the ACL filters every message it is sent). A
 * publish goes through conn_publish as an MQTT PUBLISH would; QoS 1/2 is answered when the core calls the transport's
 * acked (http.c), so its 204 waits for the same commits a PUBACK would.
 * A subscribe is an event stream: a sink (broker/sink.h) with its own
 * clean session, which the router and the fan-out treat as any
 * subscriber; each message reaches sse_deliver, which appends one event
 * to the stream. What "delivered" means for QoS 1/2 there, and the drop
 * rules: docs/http.md.
 */
#include "http_int.h"

#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

#define P_PUBLISH "/v1/publish/"
#define P_RETAINED "/v1/retained/"

enum route {
    R_NONE = 0,
    R_PUBLISH,
    R_SUBSCRIBE,
    R_RETAINED,
    R_STATS,
    R_METRICS,
    R_HEALTH
};

/* The route of a path (query excluded) and the method it takes. */
static int route_of(const char *p, size_t len, uint8_t *method)
{
    static const struct {
        const char *path;
        int prefix;
        int route;
        uint8_t method;
    } tab[] = {
        {P_PUBLISH, 1, R_PUBLISH, HTTP_POST}, {P_RETAINED, 1, R_RETAINED, HTTP_GET},
        {"/v1/subscribe", 0, R_SUBSCRIBE, HTTP_GET}, {"/v1/stats", 0, R_STATS, HTTP_GET},
        {"/metrics", 0, R_METRICS, HTTP_GET}, {"/healthz", 0, R_HEALTH, HTTP_GET},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        size_t n = strlen(tab[i].path);
        if (tab[i].prefix ? len >= n && memcmp(p, tab[i].path, n) == 0
                          : len == n && memcmp(p, tab[i].path, n) == 0) {
            *method = tab[i].method;
            return tab[i].route;
        }
    }
    return R_NONE;
}

/* The request's path and query (without '?'; empty when none). */
static void split_path(const http_stream_t *st, const char **path, size_t *plen,
                       const char **query, size_t *qlen)
{
    const char *p = (const char *)st->hbuf.p + st->path - 1;
    const char *q = memchr(p, '?', st->path_len);
    *path = p;
    *plen = q != NULL ? (size_t)(q - p) : st->path_len;
    *query = q != NULL ? q + 1 : p + st->path_len;
    *qlen = q != NULL ? st->path_len - *plen - 1 : 0;
}

static void answer(http_stream_t *st, uint16_t status, uint8_t reason, const char *msg)
{
    http_err_t e = {status, reason, msg};
    http__respond_error(st, &e);
}

/* 403: the ACL does not let the request's user do this. */
static void forbidden(http_stream_t *st)
{
    answer(st, 403, PKT_RC_NOT_AUTHORIZED, "not authorized");
}

/* Decodes and checks the topic after `prefix` in the path into arena
 * memory. Returns it (NUL-terminated), or NULL after answering 400. */
static char *topic_of(http_stream_t *st, const char *path, size_t plen,
                      size_t prefix, size_t *len)
{
    const broker_config_t *cfg = conn_config(st->h->c);
    char *t = arena_alloc_raw(conn_arena(st->h->c), plen - prefix + 1);
    long n = t != NULL ? http__pct_decode(path + prefix, plen - prefix, t) : -1;
    if (n < 0) {
        answer(st, 400, PKT_RC_TOPIC_NAME_INVALID, "malformed %-escape in the topic");
        return NULL;
    }
    t[n] = '\0';
    uint8_t bad = 0;
    if (http__check_topic(t, (size_t)n, cfg->max_topic_levels, &bad) != 0) {
        answer(st, 400, bad,
               "invalid topic name (empty, wildcards, bad UTF-8, too long or too many levels)");
        return NULL;
    }
    *len = (size_t)n;
    return t;
}

/* ---- publish ---- */

/* Checks path, query and announced length of a publish; answers and
 * returns -1 when one is bad, so a bad request is refused before its body. */
static int publish_check(http_stream_t *st, http_pub_opts_t *o, char **topic, size_t *tlen)
{
    const char *path, *query;
    size_t plen, qlen;
    http_err_t err;
    split_path(st, &path, &plen, &query, &qlen);
    *topic = topic_of(st, path, plen, sizeof P_PUBLISH - 1, tlen);
    if (*topic == NULL) return -1;
    if (broker_topic_is_sys(*topic, *tlen)) {
        answer(st, 403, PKT_RC_NOT_AUTHORIZED, "$SYS topics are published by the broker only");
        return -1;
    }
    if (http__parse_publish_query(query, qlen, o, &err) != 0) {
        http__respond_error(st, &err);
        return -1;
    }
    if (st->content_length != UINT64_MAX &&
        st->content_length > conn_config(st->h->c)->max_packet_size) {
        st->stop_body = 1;
        answer(st, 413, PKT_RC_PACKET_TOO_LARGE, "body larger than max_packet_size");
        return -1;
    }
    return 0;
}

/* The v5 properties of the request's headers; -1 after answering 400. */
static int publish_props(http_stream_t *st, pkt_props_t *props)
{
    size_t clen = 0;
    http_err_t err;
    arena_t *a = conn_arena(st->h->c);
    (void)http__header(st, "x-mqtt-correlation-data", &clen);
    uint8_t *cbuf = arena_alloc_raw(a, clen + 1);
    if (cbuf == NULL ||
        http__props_from_headers(st->hbuf.p, st->hdrs, st->n_hdrs, props, cbuf, a, &err) != 0) {
        if (cbuf == NULL) err = (http_err_t){431, PKT_RC_PACKET_TOO_LARGE, "headers too large"};
        http__respond_error(st, &err);
        return -1;
    }
    return 0;
}

static void do_publish(http_stream_t *st)
{
    conn_t *c = st->h->c;
    http_pub_opts_t o;
    pkt_props_t props;
    char *topic = NULL;
    size_t tlen = 0;
    if (publish_check(st, &o, &topic, &tlen) != 0 || publish_props(st, &props) != 0) return;
    if (!conn_may_publish(c, st->user, st->user_len, topic, tlen)) {
        forbidden(st);
        return;
    }
    pkt_bin_t t = {(const uint8_t *)topic, tlen};
    pkt_bin_t payload = {st->body.p, st->body.len};
    /* QoS 1/2: answered in http.c's acked, perhaps before this returns */
    if (conn_publish(c, &t, &payload, &props, o.qos, o.retain, (uint32_t)st->id) != 0)
        answer(st, 413, PKT_RC_PACKET_TOO_LARGE, "message larger than max_packet_size");
    else if (o.qos == 0)
        http__respond(st, 204, NULL, NULL, 0, NULL, 0);
    st->h->body_bytes -= st->body.len;
    http__buf_free(&st->body);
}

/* ---- subscribe ---- */

/* The first event of a stream: the filters now subscribed. */
static void subscribed_event(http_stream_t *st, const char *fbuf, const uint32_t *off,
                             const uint32_t *len, int n)
{
    http_buf_t *o = &st->out;
    char tail[32];
    int rc = http__buf_put(o, "event: subscribed\ndata: {\"filters\":[", 36, SIZE_MAX);
    for (int i = 0; rc == 0 && i < n; i++) {
        if (i > 0) rc = http__buf_put(o, ",", 1, SIZE_MAX);
        if (rc == 0) rc = http__json_str(o, fbuf + off[i], len[i], SIZE_MAX);
    }
    snprintf(tail, sizeof tail, "],\"qos\":%u}\n\n", (unsigned)st->sse_qos);
    if (rc == 0) http__buf_put(o, tail, strlen(tail), SIZE_MAX);
}

/* A message for event stream k: one event, or counted as dropped past
 * the connection's limits. As the MQTT admission rules: past
 * max_out_bytes of the connection's unsent and not yet framed event bytes
 * a QoS 0 event is dropped, unless nothing is pending; QoS 1/2 events may
 * use max_queued_bytes more. */
static void sse_deliver(sink_t *k, msg_t *m, uint8_t qos, uint8_t retain)
{
    http_stream_t *st = (http_stream_t *)k; /* sink is its first member */
    http_conn_t *h = st->h;
    conn_t *c = h->c;
    const broker_config_t *cfg = conn_config(c);
    size_t pending = conn_unsent(c) + h->sse_bytes;
    size_t cap = qos == 0 ? cfg->max_out_bytes : cfg->max_out_bytes + cfg->max_queued_bytes;
    size_t room = pending == 0 ? SIZE_MAX / 2 : pending < cap ? cap - pending : 0;
    size_t n = room > 0 ? http__sse_event(&st->out, m, qos, retain, msg_now_ms(),
                                          st->out.len + room)
                        : 0;
    if (n == 0) {
        conn_count(c, qos == 0 ? CONN_CNT_DROPPED_QOS0 : CONN_CNT_DROPPED_QUEUE, 1);
        if (!h->warned_drop) {
            h->warned_drop = 1;
            log_warn("http client %s is not reading its event streams: dropping events",
                     conn_peer(c));
        }
        return;
    }
    h->sse_bytes += n;
    conn_count(c, CONN_CNT_MSGS_OUT, 1);
    http__sse_wake(st);
}

static const sink_ops_t sse_ops = {.deliver = sse_deliver};

static void do_subscribe(http_stream_t *st)
{
    http_conn_t *h = st->h;
    conn_t *c = h->c;
    const char *path, *query;
    size_t plen, qlen;
    uint32_t off[HTTP_MAX_FILTERS], len[HTTP_MAX_FILTERS];
    uint8_t qos = 0;
    http_err_t err;
    char id[48];
    split_path(st, &path, &plen, &query, &qlen);
    char *fbuf = arena_alloc_raw(conn_arena(c), qlen + 1);
    int n = fbuf != NULL ? http__parse_subscribe_query(query, qlen, fbuf, off, len, &qos,
                                                       conn_config(c)->max_topic_levels, &err)
                         : UVMQ_ENOMEM;
    if (n < 0) {
        if (fbuf == NULL) err = (http_err_t){431, PKT_RC_PACKET_TOO_LARGE, "query too large"};
        http__respond_error(st, &err);
        return;
    }
    for (int i = 0; i < n; i++) {
        if (!conn_may_subscribe(c, st->user, st->user_len, fbuf + off[i], len[i])) {
            forbidden(st);
            return;
        }
    }
    /* Its own clean session: not in the session map, never stored. */
    int idn = snprintf(id, sizeof id, "$http/%u/%u", conn_loop_index(c), ++h->sse_seq);
    st->sink.ops = &sse_ops;
    st->sess = sink_open(c, &st->sink, id, (size_t)idn, st->user, st->user_len);
    st->sse_qos = qos;
    for (int i = 0; i < n; i++) /* in the router before the 200 (inbox.c) */
        (void)sink_subscribe(st->sess, fbuf + off[i], len[i], qos);
    subscribed_event(st, fbuf, off, len, n);
    if (http__respond_sse(st) != 0) return;
    for (int i = 0; i < n; i++) /* retained messages first */
        sink_send_retained(st->sess, fbuf + off[i], len[i], qos);
    log_debug("http %s: stream %d subscribed to %d filter(s)", conn_peer(c), st->id, n);
}

void http__stream_gone(http_stream_t *st)
{
    http__auth_gone(st);
    if (st->sess != NULL) sink_close(&st->sess); /* out of the router, then freed */
}

/* ---- retained, stats, metrics, health ---- */

static void do_retained(http_stream_t *st)
{
    const char *path, *query;
    size_t plen, qlen, tlen = 0;
    http_buf_t body = {0};
    split_path(st, &path, &plen, &query, &qlen);
    char *t = topic_of(st, path, plen, sizeof P_RETAINED - 1, &tlen);
    if (t == NULL) return;
    if (!conn_may_subscribe(st->h->c, st->user, st->user_len, t, tlen)) {
        forbidden(st); /* reading it is subscribing to it, once */
        return;
    }
    msg_t *m = broker_retained_get(conn_broker(st->h->c), t, tlen);
    if (m == NULL) {
        answer(st, 404, PKT_RC_UNSPECIFIED, "no retained message on this topic");
        return;
    }
    if (http__msg_json(&body, m, m->qos, 1, msg_now_ms(), SIZE_MAX) == 0 &&
        http__buf_put(&body, "\n", 1, SIZE_MAX) == 0)
        http__respond(st, 200, "application/json", body.p, body.len, NULL, 0);
    else
        answer(st, 503, PKT_RC_UNSPECIFIED, "out of memory");
    http__buf_free(&body);
    msg_release(&m);
}

/* 1 when the request's user may read the statistics: one who may
 * subscribe to $SYS/# (any user without an ACL file); else answered 403. */
static int may_read_stats(http_stream_t *st)
{
    if (conn_may_subscribe(st->h->c, st->user, st->user_len, "$SYS/#", 6)) return 1;
    forbidden(st);
    return 0;
}

static void do_stats(http_stream_t *st)
{
    char *json = NULL;
    if (!may_read_stats(st)) return;
    if (http__stats_json(conn_broker(st->h->c), &json) != 0) {
        answer(st, 503, PKT_RC_UNSPECIFIED, "out of memory");
        return;
    }
    http__respond(st, 200, "application/json", json, strlen(json), NULL, 0);
    free(json);
}

static void do_metrics(http_stream_t *st)
{
    http_buf_t b = {0};
    if (!may_read_stats(st)) return;
    if (http__metrics_text(conn_broker(st->h->c), &b) == 0)
        http__respond(st, 200, "text/plain; version=0.0.4", b.p, b.len, NULL, 0);
    else
        answer(st, 503, PKT_RC_UNSPECIFIED, "out of memory");
    http__buf_free(&b);
}

static void do_health(http_stream_t *st)
{
    static const char ok[] = "{\"status\":\"ok\"}\n";
    if (conn_stopping(st->h->c))
        answer(st, 503, PKT_RC_SERVER_SHUTTING_DOWN, "shutting down");
    else
        http__respond(st, 200, "application/json", ok, sizeof ok - 1, NULL, 0);
}

/* ---- dispatch ---- */

void http__request_headers(http_stream_t *st, int end_stream)
{
    const char *path, *query;
    size_t plen, qlen;
    uint8_t want = 0;
    (void)end_stream;
    if (st->answered) return;
    if (st->early != 0) {
        answer(st, st->early, st->early_reason, st->early_msg);
        return;
    }
    if (st->path == 0) { /* nghttp2 checks :path is there; belt and braces */
        answer(st, 400, PKT_RC_MALFORMED, "no :path");
        return;
    }
    split_path(st, &path, &plen, &query, &qlen);
    int r = route_of(path, plen, &want);
    if (r == R_NONE) {
        answer(st, 404, PKT_RC_UNSPECIFIED, "no such resource");
    } else if (st->method != want) {
        static const char *const allow_get[] = {"allow", "GET"};
        static const char *const allow_post[] = {"allow", "POST"};
        http_buf_t b = {0};
        http__json_error(&b, "method not allowed", PKT_RC_UNSPECIFIED);
        http__respond(st, 405, "application/json", b.p, b.len,
                      want == HTTP_POST ? allow_post : allow_get, 1);
        http__buf_free(&b);
    } else if (r == R_HEALTH) {
        st->auth = HTTP_AUTH_OK; /* open to all: load balancers probe it */
    } else if (http__authorize(st) == 0 && r == R_PUBLISH) {
        http_pub_opts_t o;
        char *t = NULL;
        size_t tlen = 0;
        (void)publish_check(st, &o, &t, &tlen); /* bad ones answered before the body */
    }
}

void http__request_end(http_stream_t *st)
{
    const char *path, *query;
    size_t plen, qlen;
    uint8_t want = 0;
    if (st->answered || st->path == 0) return;
    if (st->auth != HTTP_AUTH_OK) { /* its password is being verified */
        st->ended = 1;
        return;
    }
    split_path(st, &path, &plen, &query, &qlen);
    switch (route_of(path, plen, &want)) {
    case R_PUBLISH: do_publish(st); break;
    case R_SUBSCRIBE: do_subscribe(st); break;
    case R_RETAINED: do_retained(st); break;
    case R_STATS: do_stats(st); break;
    case R_METRICS: do_metrics(st); break;
    case R_HEALTH: do_health(st); break;
    default: break; /* answered at the headers */
    }
}

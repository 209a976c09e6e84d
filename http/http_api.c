/*
 * http_api.c - the HTTP/2 API's requests: routing, publish, subscribe
 * (event streams), retained, stats, metrics, health.
 *
 * A publish becomes a msg_t as an MQTT PUBLISH does and goes through
 * broker__publish; QoS 1/2 is answered through persist__ack (ACK_HTTP),
 * so its 204 waits for the same commits a PUBACK would. A subscribe is an
 * event stream backed by its own clean session (never in the session map,
 * never stored) whose connection is the HTTP/2 one (state CONN_HTTP):
 * the router and the fan-out treat it as any subscriber, and the delivery
 * path, seeing CONN_HTTP where an MQTT subscriber is CONN_ACTIVE, calls
 * http__deliver, which appends one event to the stream. What "delivered"
 * means for QoS 1/2 there, and the drop rules: docs/http.md.
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

/* Decodes and checks the topic after `prefix` in the path into arena
 * memory. Returns it (NUL-terminated), or NULL after answering 400. */
static char *topic_of(http_stream_t *st, const char *path, size_t plen,
                      size_t prefix, size_t *len)
{
    const broker_config_t *cfg = st->h->c->loop->b->cfg;
    char *t = arena_alloc_raw(&st->h->c->loop->arena, plen - prefix + 1);
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
    if (broker__topic_is_sys(*topic, *tlen)) {
        answer(st, 403, PKT_RC_NOT_AUTHORIZED, "$SYS topics are published by the broker only");
        return -1;
    }
    if (http__parse_publish_query(query, qlen, o, &err) != 0) {
        http__respond_error(st, &err);
        return -1;
    }
    if (st->content_length != UINT64_MAX &&
        st->content_length > st->h->c->loop->b->cfg->max_packet_size) {
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
    arena_t *a = &st->h->c->loop->arena;
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
    loop_t *l = c->loop;
    broker_t *b = l->b;
    http_pub_opts_t o;
    pkt_props_t props;
    char *topic = NULL;
    size_t tlen = 0;
    if (publish_check(st, &o, &topic, &tlen) != 0 || publish_props(st, &props) != 0) return;
    pkt_bin_t t = {(const uint8_t *)topic, tlen};
    pkt_bin_t payload = {st->body.p, st->body.len};
    size_t ops = persist__ops(l); /* did this publish write? (persist.c) */
    msg_t *m = conn__msg_from(b, t, payload, &props, o.qos, o.retain, c);
    CNT_INC(b, msgs_in);
    if (m == NULL) {
        answer(st, 413, PKT_RC_PACKET_TOO_LARGE, "message larger than max_packet_size");
        return;
    }
    broker__publish(l, m);
    if (o.qos > 0 && b->cfg->throttle_publishers) conn__throttle_note(c, m);
    if (o.qos == 0)
        http__respond(st, 204, NULL, NULL, 0, NULL, 0);
    else /* after the commits a PUBACK would wait for */
        persist__ack(c, ACK_HTTP, (uint32_t)st->id, 0, m, persist__gen_since(l, ops));
    msg_release(&m);
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

static void do_subscribe(http_stream_t *st)
{
    http_conn_t *h = st->h;
    loop_t *l = h->c->loop;
    const char *path, *query;
    size_t plen, qlen;
    uint32_t off[HTTP_MAX_FILTERS], len[HTTP_MAX_FILTERS];
    uint8_t qos = 0;
    http_err_t err;
    char id[48];
    split_path(st, &path, &plen, &query, &qlen);
    char *fbuf = arena_alloc_raw(&l->arena, qlen + 1);
    int n = fbuf != NULL ? http__parse_subscribe_query(query, qlen, fbuf, off, len, &qos,
                                                       l->b->cfg->max_topic_levels, &err)
                         : UVMQ_ENOMEM;
    if (n < 0) {
        if (fbuf == NULL) err = (http_err_t){431, PKT_RC_PACKET_TOO_LARGE, "query too large"};
        http__respond_error(st, &err);
        return;
    }
    /* Its own clean session: not in the session map, never stored. */
    int idn = snprintf(id, sizeof id, "$http/%u/%u", l->index, ++h->sse_seq);
    sess_t *s = sess__create(id, (size_t)idn, l->b->cfg);
    s->loop = l;
    s->conn = h->c;
    s->http = st;
    s->version = PKT_V5;
    st->sess = s;
    st->sse_qos = qos;
    for (int i = 0; i < n; i++) { /* in the router before the 200 (inbox.c) */
        int existed = 0;
        loop__subscribe(l, s, fbuf + off[i], len[i], qos, 0, &existed);
    }
    subscribed_event(st, fbuf, off, len, n);
    if (http__respond_sse(st) != 0) return;
    for (int i = 0; i < n; i++) /* retained messages first */
        sess__send_retained(l, s, fbuf + off[i], len[i], qos, 0);
    log_debug("http %s: stream %d subscribed to %d filter(s)", conn__peer(h->c), st->id, n);
}

void http__deliver(loop_t *l, sess_t *s, msg_t *m, uint8_t qos, uint8_t retain)
{
    http_stream_t *st = s->http;
    http_conn_t *h = st->h;
    conn_t *c = h->c;
    const broker_config_t *cfg = l->b->cfg;
    /* As conn__admit: past max_out_bytes of the connection's unsent and
     * not yet framed event bytes a QoS 0 event is dropped, unless nothing
     * is pending; QoS 1/2 events may use max_queued_bytes more. */
    size_t pending = c->unsent + h->sse_bytes;
    size_t cap = qos == 0 ? cfg->max_out_bytes : cfg->max_out_bytes + cfg->max_queued_bytes;
    size_t room = pending == 0 ? SIZE_MAX / 2 : pending < cap ? cap - pending : 0;
    size_t n = room > 0 ? http__sse_event(&st->out, m, qos, retain, msg_now_ms(),
                                          st->out.len + room)
                        : 0;
    if (n == 0) {
        if (qos == 0) CNT_INC(l->b, dropped_qos0);
        else CNT_INC(l->b, dropped_queue);
        if (!h->warned_drop) {
            h->warned_drop = 1;
            log_warn("http client %s is not reading its event streams: dropping events",
                     conn__peer(c));
        }
        return;
    }
    h->sse_bytes += n;
    l->msgs_out++;
    http__sse_wake(st);
}

void http__stream_gone(http_stream_t *st)
{
    sess_t *s = st->sess;
    if (s == NULL) return;
    st->sess = NULL;
    s->conn = NULL;
    sess__destroy(s->loop, s); /* out of the router, then freed */
}

/* ---- retained, stats, metrics, health ---- */

/* router_retained_match callback: the one message of an exact topic. */
static void take_one(void *value, void *ctx)
{
    msg_t **out = ctx;
    if (*out == NULL) *out = msg_retain(value);
}

static void do_retained(http_stream_t *st)
{
    broker_t *b = st->h->c->loop->b;
    const char *path, *query;
    size_t plen, qlen, tlen = 0;
    msg_t *m = NULL;
    http_buf_t body = {0};
    split_path(st, &path, &plen, &query, &qlen);
    char *t = topic_of(st, path, plen, sizeof P_RETAINED - 1, &tlen);
    if (t == NULL) return;
    pthread_mutex_lock(&b->retained_lock);
    router_retained_match(b->retained, t, tlen, take_one, &m);
    pthread_mutex_unlock(&b->retained_lock);
    if (m != NULL && m->expiry_at != 0 && msg_expired(m, msg_now_ms())) msg_release(&m);
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

static void do_stats(http_stream_t *st)
{
    char *json = NULL;
    if (http__stats_json(st->h->c->loop->b, &json) != 0) {
        answer(st, 503, PKT_RC_UNSPECIFIED, "out of memory");
        return;
    }
    http__respond(st, 200, "application/json", json, strlen(json), NULL, 0);
    free(json);
}

static void do_metrics(http_stream_t *st)
{
    http_buf_t b = {0};
    if (http__metrics_text(st->h->c->loop->b, &b) == 0)
        http__respond(st, 200, "text/plain; version=0.0.4", b.p, b.len, NULL, 0);
    else
        answer(st, 503, PKT_RC_UNSPECIFIED, "out of memory");
    http__buf_free(&b);
}

static void do_health(http_stream_t *st)
{
    static const char ok[] = "{\"status\":\"ok\"}\n";
    if (st->h->c->loop->stopping)
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
    } else if (r == R_PUBLISH) {
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

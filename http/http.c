/*
 * http.c - HTTP/2 connections: the HTTP/2 transport (http_transport), one
 * nghttp2 server session per connection, on the worker loop that owns the
 * connection.
 *
 * The connection is an ordinary broker connection: the core reads,
 * writes, flushes, closes and frees it, and calls this transport's table
 * (broker/transport.h). Bytes in go to nghttp2_session_mem_recv (input:
 * from the socket for h2c, decrypted by the TLS transport for h2, which
 * opens this one only once ALPN chose "h2"), whose callbacks build one
 * http_stream_t per request and hand finished requests to http_api.c.
 * Bytes out are pulled with nghttp2_session_mem_send into the
 * connection's out-batch by the output pass, so everything a tick
 * produces still leaves in one write (over TLS, one encryption pass of
 * that batch); a pull stops at HTTP_PULL_MAX unsent bytes, and what is not
 * pulled stays in nghttp2 and in the streams, where HTTP/2 flow control
 * (the client's windows) decides when it may go. nghttp2 functions that
 * send are never called from inside an nghttp2 callback: a handler only
 * submits, and the next flush pulls.
 *
 * Protections kept on (nghttp2's defaults, set explicitly so they are
 * visible): SETTINGS_MAX_CONCURRENT_STREAMS (http_max_streams), at most
 * 32 entries per SETTINGS frame, 1,000 queued SETTINGS/PING ACKs, the
 * RST_STREAM rate limit against rapid reset (burst 1,000, 33/s), at most
 * 8 CONTINUATION frames per header block, and the flood detection of
 * mem_recv, which ends the session.
 */
#include "http_int.h"

#include <nghttp2/nghttp2.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

/* Flow-control windows we announce: per request stream, and for the whole
 * connection. Request bodies are bounded by max_packet_size anyway (per
 * stream and per connection, http_api.c), so larger windows only save
 * WINDOW_UPDATE round trips for bodies up to this size. */
#define HTTP_STREAM_WINDOW (256 * 1024)
#define HTTP_CONN_WINDOW (4 * 1024 * 1024)

/* TCP keep-alive probes on HTTP/2 connections after this many seconds of
 * silence: an event stream has no MQTT keep-alive to find a dead peer. */
#define HTTP_TCP_KEEPALIVE_S 60

/* The answer to an HTTP/1.x request on the h2c port (then closed). */
#define H1_BODY \
    "{\"error\":\"this port speaks HTTP/2 only (h2c with prior knowledge, e.g. " \
    "curl --http2-prior-knowledge)\",\"reason_code\":132}\n"

/* ---- streams ---- */

static http_stream_t *stream_new(http_conn_t *h, int32_t id)
{
    http_stream_t *st = xcalloc(1, sizeof *st);
    st->h = h;
    st->id = id;
    st->content_length = UINT64_MAX;
    st->next = h->streams;
    if (h->streams != NULL) h->streams->prev = st;
    h->streams = st;
    h->n_streams++;
    return st;
}

/* Frees st (its session must be gone: http__stream_gone). */
static void stream_free(http_stream_t *st)
{
    http_conn_t *h = st->h;
    if (st->prev != NULL) st->prev->next = st->next;
    else h->streams = st->next;
    if (st->next != NULL) st->next->prev = st->prev;
    h->n_streams--;
    if (st->sse) {
        h->n_sse--;
        h->sse_bytes -= st->out.len - st->out.off;
    }
    h->body_bytes -= st->body.len;
    http__buf_free(&st->hbuf);
    http__buf_free(&st->body);
    http__buf_free(&st->out);
    free(st->hdrs);
    free(st);
    if (h->n_streams == 0) h->idle_since = conn_now(h->c); /* idle from now (sweep) */
}

/* The stream of a request frame, or NULL. */
static http_stream_t *stream_of(nghttp2_session *ng, int32_t id)
{
    return nghttp2_session_get_stream_user_data(ng, id);
}

/* Makes the request fail with status/reason/msg once its headers are
 * complete (the first failure wins). */
static void fail_early(http_stream_t *st, uint16_t status, uint8_t reason, const char *msg)
{
    if (st->early != 0) return;
    st->early = status;
    st->early_reason = reason;
    st->early_msg = msg;
}

/* Keeps a header (name and value) in st->hbuf. */
static void keep_header(http_stream_t *st, const uint8_t *name, size_t nlen,
                        const uint8_t *val, size_t vlen)
{
    http_buf_t *hb = &st->hbuf;
    uint32_t off = (uint32_t)hb->len;
    if (http__buf_put(hb, name, nlen, HTTP_MAX_HEADER_BYTES) != 0 ||
        http__buf_put(hb, val, vlen, HTTP_MAX_HEADER_BYTES) != 0) {
        fail_early(st, 431, PKT_RC_PACKET_TOO_LARGE, "request headers too large");
        return;
    }
    if (st->n_hdrs == st->cap_hdrs) {
        st->cap_hdrs = st->cap_hdrs ? 2 * st->cap_hdrs : 8;
        st->hdrs = xrealloc(st->hdrs, st->cap_hdrs * sizeof *st->hdrs);
    }
    st->hdrs[st->n_hdrs++] = (http_hdr_t){off, (uint32_t)nlen, off + (uint32_t)nlen,
                                          (uint32_t)vlen};
}

const char *http__header(const http_stream_t *st, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    for (uint32_t i = 0; i < st->n_hdrs; i++) {
        const http_hdr_t *h = &st->hdrs[i];
        if (h->name_len == nl && memcmp(st->hbuf.p + h->name, name, nl) == 0) {
            *len = h->val_len;
            return (const char *)st->hbuf.p + h->val;
        }
    }
    *len = 0;
    return NULL;
}

/* A decimal Content-Length, or UINT64_MAX when it is not one. */
static uint64_t parse_length(const uint8_t *v, size_t len)
{
    uint64_t n = 0;
    if (len == 0 || len > 18) return UINT64_MAX;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') return UINT64_MAX;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    return n;
}

static uint8_t method_of(const uint8_t *v, size_t len)
{
    if (len == 3 && memcmp(v, "GET", 3) == 0) return HTTP_GET;
    if (len == 4 && memcmp(v, "POST", 4) == 0) return HTTP_POST;
    if (len == 4 && memcmp(v, "HEAD", 4) == 0) return HTTP_HEAD;
    return HTTP_OTHER;
}

/* ---- nghttp2 callbacks (in the order a request lives them) ---- */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    http_conn_t *h = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    http_stream_t *st = stream_new(h, f->hd.stream_id);
    nghttp2_session_set_stream_user_data(ng, f->hd.stream_id, st);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t nlen, const uint8_t *val, size_t vlen, uint8_t flags, void *ud)
{
    http_stream_t *st = stream_of(ng, f->hd.stream_id);
    (void)flags;
    (void)ud;
    if (st == NULL || f->hd.type != NGHTTP2_HEADERS ||
        f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers: ignored */
    st->hdr_bytes += nlen + vlen + 32; /* RFC 9113 6.5.2's field size */
    if (st->hdr_bytes > HTTP_MAX_HEADER_BYTES) {
        fail_early(st, 431, PKT_RC_PACKET_TOO_LARGE, "request headers too large");
        return 0;
    }
    if (nlen == 7 && memcmp(name, ":method", 7) == 0) {
        st->method = method_of(val, vlen);
    } else if (nlen == 5 && memcmp(name, ":path", 5) == 0) {
        st->path = (uint32_t)st->hbuf.len + 1;
        st->path_len = (uint32_t)vlen;
        if (http__buf_put(&st->hbuf, val, vlen, HTTP_MAX_HEADER_BYTES) != 0) {
            st->path = 0;
            fail_early(st, 431, PKT_RC_PACKET_TOO_LARGE, "request headers too large");
        }
    } else if (nlen == 14 && memcmp(name, "content-length", 14) == 0) {
        st->content_length = parse_length(val, vlen);
    } else if ((nlen == 12 && memcmp(name, "content-type", 12) == 0) ||
               (nlen == 13 && memcmp(name, "authorization", 13) == 0) ||
               (nlen > 7 && memcmp(name, "x-mqtt-", 7) == 0)) {
        keep_header(st, name, nlen, val, vlen);
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    http_conn_t *h = ud;
    int end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    http_stream_t *st = NULL;
    switch (f->hd.type) {
    case NGHTTP2_SETTINGS: /* the client's first frame: past the preface */
        conn_set_active(h->c);
        break;
    case NGHTTP2_HEADERS:
        st = stream_of(ng, f->hd.stream_id);
        if (st == NULL) break;
        if (f->headers.cat == NGHTTP2_HCAT_REQUEST) http__request_headers(st, end);
        if (end) http__request_end(st);
        break;
    case NGHTTP2_DATA:
        st = stream_of(ng, f->hd.stream_id);
        if (st != NULL && end) http__request_end(st);
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id,
                         const uint8_t *data, size_t len, void *ud)
{
    http_conn_t *h = ud;
    http_stream_t *st = stream_of(ng, id);
    size_t max = conn_config(h->c)->max_packet_size;
    (void)flags;
    if (st == NULL || st->answered) return 0; /* answered early: dropped */
    if (st->body.len + len > max) {
        http_err_t e = {413, PKT_RC_PACKET_TOO_LARGE, "body larger than max_packet_size"};
        st->stop_body = 1;
        http__respond_error(st, &e);
    } else if (h->body_bytes + len > max ||
               http__buf_put(&st->body, data, len, max) != 0) {
        /* One connection holds at most max_packet_size of request bodies
         * in all, as an MQTT connection holds at most one packet. */
        http_err_t e = {503, PKT_RC_QUOTA_EXCEEDED,
                        "request bodies of this connection pass max_packet_size"};
        http__respond_error(st, &e);
    } else {
        h->body_bytes += len;
    }
    return 0;
}

/* After our last frame of a 413, a body still being sent is told to stop
 * (RFC 9113 section 8.1: RST_STREAM NO_ERROR). Other early answers let
 * the client finish its (bounded) body, which is dropped: curl 7.88 takes
 * a reset during its upload for a failure, and would hide the answer. */
static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    http_conn_t *h = ud;
    http_stream_t *st = f->hd.stream_id != 0 ? stream_of(ng, f->hd.stream_id) : NULL;
    if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR) {
        /* nghttp2 ends the session on a protocol error or a flood (rapid
         * reset, SETTINGS or PING floods...): one line, counted */
        conn_count(h->c, CONN_CNT_PROTOCOL_ERROR, 1);
        log_info("http client %s: protocol error, sending GOAWAY %s", conn_peer(h->c),
                 nghttp2_http2_strerror(f->goaway.error_code));
    }
    if (st != NULL && st->stop_body &&
        (f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        nghttp2_session_get_stream_remote_close(ng, f->hd.stream_id) == 0)
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    http_stream_t *st = stream_of(ng, id);
    (void)code;
    (void)ud;
    if (st == NULL) return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    http__stream_gone(st);
    stream_free(st);
    return 0;
}

/* ---- responses ---- */

/* nghttp2 data source: the stream's out buffer. An event stream never
 * ends; with nothing buffered it waits (DEFERRED) for http__sse_wake. */
static ssize_t read_out(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
                        uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    http_stream_t *st = src->ptr;
    http_buf_t *o = &st->out;
    size_t n = o->len - o->off;
    (void)ng;
    (void)id;
    (void)ud;
    if (n > len) n = len;
    if (n > 0) memcpy(buf, o->p + o->off, n);
    o->off += n;
    if (st->sse) {
        st->h->sse_bytes -= n;
        http__buf_compact(o);
        if (n == 0) {
            st->deferred = 1;
            return NGHTTP2_ERR_DEFERRED;
        }
    } else if (o->off == o->len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        http__buf_free(o);
    }
    return (ssize_t)n;
}

/* One header field (nghttp2 copies names and values at submit). */
static nghttp2_nv nv(const char *name, const char *value)
{
    nghttp2_nv v = {(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                    NGHTTP2_NV_FLAG_NONE};
    return v;
}

/* Decimal digits of v into out (room for 21); returns out. Not snprintf:
 * at 10^5 requests/s the printf machinery showed in profiles. */
static const char *u64_str(uint64_t v, char *out)
{
    char tmp[21];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return out;
}

/* Submits st's response headers (+ nv extras) with out as the body
 * source when `body` is set. Returns 0 or -1. */
static int submit(http_stream_t *st, unsigned status, const char *ctype,
                  const char *clen, const char *const *extra, size_t n_extra, int body)
{
    nghttp2_nv h[12];
    size_t n = 0;
    char code[24];
    h[n++] = nv(":status", u64_str(status, code));
    if (ctype != NULL) h[n++] = nv("content-type", ctype);
    if (clen != NULL) h[n++] = nv("content-length", clen);
    for (size_t i = 0; i < n_extra && n < sizeof h / sizeof h[0]; i++)
        h[n++] = nv(extra[2 * i], extra[2 * i + 1]);
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_out};
    int rv = nghttp2_submit_response(st->h->ng, st->id, h, n, body ? &prd : NULL);
    st->answered = 1;
    conn_count(st->h->c, CONN_CNT_HTTP_REQUESTS, 1);
    conn_want_flush(st->h->c);
    if (rv != 0) log_debug("http: cannot answer stream %d: %s", st->id, nghttp2_strerror(rv));
    return rv != 0 ? -1 : 0;
}

int http__respond(http_stream_t *st, unsigned status, const char *ctype,
                  const void *body, size_t len, const char *const *extra,
                  size_t n_extra)
{
    char clen[24];
    if (st->answered) return -1;
    if (len > 0 && http__buf_put(&st->out, body, len, SIZE_MAX) != 0) {
        static const char e[] = "{\"error\":\"out of memory\",\"reason_code\":128}\n";
        status = 503;
        ctype = "application/json";
        http__buf_put(&st->out, e, sizeof e - 1, SIZE_MAX);
        len = sizeof e - 1;
    }
    return submit(st, status, ctype, status == 204 ? NULL : u64_str(len, clen), extra,
                  n_extra, st->out.len > 0);
}

void http__respond_error(http_stream_t *st, const http_err_t *e)
{
    http_buf_t b = {0};
    if (http__json_error(&b, e->msg, e->reason) == 0)
        http__respond(st, e->status, "application/json", b.p, b.len, NULL, 0);
    http__buf_free(&b);
    log_debug("http %s: stream %d: %u %s", conn_peer(st->h->c), st->id,
              (unsigned)e->status, e->msg);
}

int http__respond_sse(http_stream_t *st)
{
    static const char *const extra[] = {"cache-control", "no-cache"};
    st->sse = 1;
    st->h->n_sse++;
    st->h->sse_bytes += st->out.len - st->out.off;
    return submit(st, 200, "text/event-stream", NULL, extra, 1, 1);
}

void http__sse_wake(http_stream_t *st)
{
    if (st->deferred) {
        st->deferred = 0;
        nghttp2_session_resume_data(st->h->ng, st->id);
    }
    conn_want_flush(st->h->c);
}

/* ---- the connection ---- */

/* Our SETTINGS, queued first (mem_send sends them before anything). */
static int submit_settings(http_conn_t *h)
{
    const broker_config_t *cfg = conn_config(h->c);
    nghttp2_settings_entry s[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg->http_max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, HTTP_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, HTTP_MAX_HEADER_BYTES},
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1}, /* no priority tree kept */
    };
    int rv = nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, s, sizeof s / sizeof s[0]);
    if (rv == 0)
        rv = nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0,
                                                   HTTP_CONN_WINDOW);
    return rv;
}

/* The server session with our callbacks and protections. */
static int session_new(http_conn_t *h)
{
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;
    int rv = nghttp2_session_callbacks_new(&cb);
    if (rv == 0) rv = nghttp2_option_new(&opt);
    if (rv == 0) {
        nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
        nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
        nghttp2_option_set_max_settings(opt, 32);
        nghttp2_option_set_max_outbound_ack(opt, 1000);
        nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
        nghttp2_option_set_max_continuations(opt, 8);
        rv = nghttp2_session_server_new2(&h->ng, cb, h, opt);
    }
    if (rv == 0) rv = submit_settings(h);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    return rv;
}

/* c (new) speaks HTTP/2: its nghttp2 server session, our SETTINGS
 * queued. At accept for h2c, once ALPN chose "h2" for TLS. */
static int http_open(conn_t *c, const transport_t *inner, void *arg, void **self)
{
    http_conn_t *h = xcalloc(1, sizeof *h);
    (void)inner, (void)arg;
    h->c = c;
    h->idle_since = conn_now(c);
    *self = h; /* freed by http_free, even when this fails */
    conn_count(c, CONN_CNT_HTTP_CONNS, 1);
    if (session_new(h) != 0) {
        log_error("http: cannot create an HTTP/2 session for %s", conn_peer(c));
        return UVMQ_ENOMEM;
    }
    conn_tcp_keepalive(c, HTTP_TCP_KEEPALIVE_S);
    /* Our SETTINGS wait for the client's first bytes (RFC 9113 3.4 allows
     * it): an HTTP/1.x client then gets a plain HTTP/1.1 answer. */
    return 0;
}

/* 1 when data starts like an HTTP/1.x request line ("GET / HTTP/1.1"). */
static int looks_http1(const uint8_t *d, size_t n)
{
    size_t i = 0;
    while (i < n && i < 16 && d[i] >= 'A' && d[i] <= 'Z') i++;
    return i > 0 && i < n && d[i] == ' ';
}

/* An HTTP/1.x client on the h2c port: a plain HTTP/1.1 error, then close. */
static void answer_http1(conn_t *c, http_conn_t *h)
{
    char reply[512];
    int n = snprintf(reply, sizeof reply,
                     "HTTP/1.1 505 HTTP Version Not Supported\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     sizeof H1_BODY - 1, H1_BODY);
    h->ending = 2; /* no GOAWAY after it: not an HTTP/2 peer */
    conn_send(c, reply, (size_t)n);
    conn_close(c, 0, "HTTP/1.x request on the HTTP/2 port (answered 505)");
}

/* Bytes in: nghttp2 takes them all (it keeps what it needs), so an
 * HTTP/2 connection leaves nothing in the core's input buffer. */
static conn_rc_t http_input(conn_t *c, void *self, const uint8_t *data, size_t n,
                            size_t *used, size_t *need)
{
    http_conn_t *h = self;
    *used = n;
    *need = 0;
    if (n == 0) return CONN_OK;
    ssize_t rv = nghttp2_session_mem_recv(h->ng, data, n);
    arena_reset(conn_arena(c)); /* what the requests' handlers used */
    if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC && !h->got_input && looks_http1(data, n)) {
        answer_http1(c, h);
        return CONN_GONE;
    }
    h->got_input = 1;
    if (rv < 0) {
        if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC) h->ending = 2;
        conn_count(c, CONN_CNT_PROTOCOL_ERROR, 1);
        conn_close(c, 0, nghttp2_strerror((int)rv));
        return CONN_GONE;
    }
    conn_want_flush(c);
    return conn_closing(c) ? CONN_GONE : CONN_OK;
}

/* Copies what nghttp2 has to send into c's batch: at most until c holds
 * `max` unsent bytes. Returns 0, or -1 when the session failed. */
static int pull(conn_t *c, http_conn_t *h, size_t max)
{
    while (conn_unsent(c) < max) {
        const uint8_t *p = NULL;
        ssize_t n = nghttp2_session_mem_send(h->ng, &p);
        if (n < 0) {
            log_info("closing client (http) (%s): %s", conn_peer(c),
                     nghttp2_strerror((int)n));
            return -1;
        }
        if (n == 0) break;
        conn_send(c, p, (size_t)n);
    }
    return 0;
}

/* The output pass: frames into c's batch; closes a finished session. */
static void http_output(conn_t *c, void *self)
{
    http_conn_t *h = self;
    if (conn_closing(c) || !h->got_input) return; /* nothing sent before the client spoke */
    if (pull(c, h, HTTP_PULL_MAX) != 0) {
        h->ending = 2;
        conn_close(c, CONN_CLOSE_QUIET, "HTTP/2 session failed");
    } else if (!nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng)) {
        conn_close(c, CONN_CLOSE_QUIET, "HTTP/2 session ended");
    }
}

/* A write finished: another flush if frames wait. */
static void http_written(conn_t *c, void *self)
{
    http_conn_t *h = self;
    if (nghttp2_session_want_write(h->ng)) conn_want_flush(c);
}

/* Ends every event stream's session (their connection is going). */
static void end_sessions(http_conn_t *h)
{
    for (http_stream_t *st = h->streams; st != NULL; st = st->next) http__stream_gone(st);
}

/* c is closing: GOAWAY (and its last frames) unless the session ended;
 * the event streams' sessions end. */
static void http_closing(conn_t *c, void *self, uint8_t reason, unsigned flags, const char *why)
{
    http_conn_t *h = self;
    (void)reason, (void)flags, (void)why;
    end_sessions(h);
    if (h->ending == 2) return; /* nothing more to say on this session */
    if (!h->ending) nghttp2_session_terminate_session(h->ng, NGHTTP2_NO_ERROR);
    h->ending = 2;
    (void)pull(c, h, SIZE_MAX); /* GOAWAY and what was queued before it */
}

static void http_free(conn_t *c, void *self)
{
    http_conn_t *h = self;
    if (h == NULL) return;
    end_sessions(h);
    nghttp2_session_del(h->ng); /* NULL: nothing; runs no callback */
    while (h->streams != NULL) stream_free(h->streams);
    if (c != NULL) conn_count(c, CONN_CNT_HTTP_CONNS, -1);
    free(h);
}

/* Closed after http_idle_timeout seconds without a request open (GOAWAY).
 * h is NULL over TLS before ALPN chose "h2" (the core times that out). */
static void http_sweep(conn_t *c, void *self, uint64_t now)
{
    http_conn_t *h = self;
    uint64_t idle_ms = (uint64_t)conn_config(c)->http_idle_timeout * 1000u;
    if (h == NULL || !conn_active(c)) return;
    if (h->n_streams == 0 && now - h->idle_since >= idle_ms)
        conn_close(c, CONN_CLOSE_QUIET, "HTTP/2 connection idle (http_idle_timeout)");
}

/* The acknowledgement conn_publish promised for stream id is due:
 * answers 204, or 503 when the message could not be stored. A stream
 * gone meanwhile (reset by the client) is skipped. */
static void http_acked(conn_t *c, void *self, uint32_t id, int failed)
{
    http_conn_t *h = self;
    http_stream_t *st = stream_of(h->ng, (int32_t)id);
    (void)c;
    if (st == NULL || st->answered) return;
    if (failed) {
        http_err_t e = {503, PKT_RC_UNSPECIFIED, "the message could not be stored"};
        http__respond_error(st, &e);
    } else {
        http__respond(st, 204, NULL, NULL, 0, NULL, 0);
    }
}

const transport_t http_transport = {
    .name = "http",
    .anon = "(http)",
    .late = "no HTTP/2 preface within connect_timeout_ms",
    .alpn = "\x02h2",
    .alpn_required = 1,
    .open = http_open,
    .input = http_input,
    .output = http_output,
    .written = http_written,
    .closing = http_closing,
    .free = http_free,
    .sweep = http_sweep,
    .acked = http_acked,
};

/*
 * http_int.h - the HTTP/2 API's types, shared by the files of http/ only.
 *
 * An HTTP/2 connection is a broker connection (conn_t, opaque here: the
 * core does its socket, out-batch, writes and close) whose transport is
 * http_transport, with an http_conn_t holding the nghttp2 server session
 * (http.c) as the transport's state. Each request is an http_stream_t, the
 * nghttp2 stream's user data, freed when nghttp2 closes the stream.
 * http_api.c routes finished requests; an event stream is a sink
 * (broker/sink.h). http_parse.c is the pure part (paths, queries, headers
 * into MQTT 5 properties, JSON, base64, event encoding) and has no
 * nghttp2 or libuv in it, so unit tests reach it directly. Nothing here
 * reaches the core but through broker/'s public headers.
 */
#ifndef UVMQ_HTTP_INT_H
#define UVMQ_HTTP_INT_H

#include <stddef.h>
#include <stdint.h>

#include "../broker/broker.h"
#include "../broker/sink.h"
#include "../broker/transport.h"
#include "../common/arena.h"
#include "../packets/pkt.h"
#include "../queue/queue.h"
#include "http.h"

struct nghttp2_session;

/* Request headers kept per stream (names, values and the :path) at most;
 * past it the request is answered 431. Also announced to clients as
 * SETTINGS_MAX_HEADER_LIST_SIZE. */
#define HTTP_MAX_HEADER_BYTES (128 * 1024)
/* Most x-mqtt-user-* headers one request may carry. */
#define HTTP_MAX_USER_PROPS 256
/* Most `filter` parameters one subscribe request may carry. */
#define HTTP_MAX_FILTERS 64
/* Frames are copied from nghttp2 into the connection's out-batch while it
 * holds fewer unsent bytes than this (conn.c keeps a batch's scratch up
 * to 64 KiB; a pull stops below it, plus one 16 KiB frame). Beyond it,
 * what is not pulled stays in the streams (flow control then counts). */
#define HTTP_PULL_MAX (32 * 1024)

/* A growable byte buffer; off = bytes already consumed from the front. */
typedef struct http_buf_s {
    uint8_t *p;
    size_t len, cap, off;
} http_buf_t;

/* An HTTP error answer: status, MQTT 5 reason code, static message. */
typedef struct http_err_s {
    uint16_t status;
    uint8_t reason;
    const char *msg;
} http_err_t;

/* One request header kept for later (x-mqtt-*, content-type): offsets of
 * name and value in the stream's header buffer. */
typedef struct http_hdr_s {
    uint32_t name, name_len, val, val_len;
} http_hdr_t;

enum http_method { HTTP_OTHER = 0, HTTP_GET, HTTP_POST, HTTP_HEAD };

/* Where a request's credentials stand (http_auth.c). */
enum http_auth { HTTP_AUTH_NONE = 0, HTTP_AUTH_WAIT, HTTP_AUTH_OK };

typedef struct http_conn_s http_conn_t;
typedef struct http_stream_s http_stream_t;

struct http_stream_s {
    sink_t sink;         /* an event stream's messages come here (first:
                            the sink's container) */
    http_conn_t *h;
    http_stream_t *prev, *next; /* the connection's open streams */
    int32_t id;
    uint8_t method;      /* enum http_method */
    uint8_t answered;    /* a response was submitted */
    uint8_t sse;         /* an event stream (subscribe) */
    uint8_t deferred;    /* its data source returned DEFERRED */
    uint8_t sse_qos;     /* granted QoS of an event stream */
    uint8_t stop_body;   /* answered 413 early: RST_STREAM after it */
    uint16_t early;      /* headers made the request fail: this status,
                            answered once its headers are complete */
    uint8_t early_reason;
    const char *early_msg;
    uint32_t path;       /* offset of :path in hbuf, 0 = none (1-based) */
    uint32_t path_len;
    uint64_t content_length; /* UINT64_MAX when not given */
    http_buf_t hbuf;     /* kept header bytes (the :path, x-mqtt-*, ...) */
    http_hdr_t *hdrs;    /* kept headers, n_hdrs of them (owned) */
    uint32_t n_hdrs, cap_hdrs;
    size_t hdr_bytes;    /* all header bytes received, kept or not */
    http_buf_t body;     /* request body */
    http_buf_t out;      /* response body, or pending events */
    sess_t *sess;        /* an event stream's session (sink_open; owned) */
    uint8_t auth;        /* enum http_auth (http_auth.c) */
    uint8_t ended;       /* the request ended while its credentials were
                            being verified: run it when they are */
    char *user;          /* the request's user name (owned, NUL-terminated;
                            NULL: anonymous) */
    uint32_t user_len;
    conn_auth_t *auth_job; /* the verification under way, or NULL */
};

struct http_conn_s {
    conn_t *c;                  /* the connection whose state this is */
    struct nghttp2_session *ng; /* owned */
    http_stream_t *streams;     /* open streams (owned) */
    uint32_t n_streams;
    uint32_t n_sse;             /* of them, event streams */
    uint32_t sse_seq;           /* names event stream sessions */
    size_t body_bytes;          /* request body bytes held, all streams */
    size_t sse_bytes;           /* event bytes not yet taken by nghttp2 */
    uint8_t got_input;          /* nghttp2 accepted bytes before */
    uint8_t warned_drop;        /* the QoS 0 drop warning was logged */
    uint8_t ending;             /* GOAWAY submitted: close once sent */
    uint64_t idle_since;        /* conn_now when the last stream closed
                                   (or the connection opened) */
};

/* ---- http_parse.c (pure) ---- */

/* Appends n bytes to b, growing it; the buffer never passes limit bytes
 * (consumed ones included). Returns 0 or UVMQ_ENOMEM. */
int http__buf_put(http_buf_t *b, const void *src, size_t n, size_t limit);
/* Drops consumed bytes (moving the rest to the front) once they are more
 * than half; frees the memory when everything is consumed. */
void http__buf_compact(http_buf_t *b);
void http__buf_free(http_buf_t *b);

/* Decodes %XX escapes of s[0..len) into out (room for len bytes); '+' is
 * kept as it is (RFC 3986, not form encoding: MQTT filters use '+').
 * Returns the decoded length, or -1 for a malformed escape. */
long http__pct_decode(const char *s, size_t len, char *out);

/* Checks a decoded topic name as an MQTT PUBLISH is checked (non-empty,
 * UTF-8 without U+0000, no wildcards, at most 65535 bytes and max_levels
 * levels). Returns 0, or UVMQ_EINVAL with *reason set to the v5 reason
 * (0x90); *reason is 0 on success. */
int http__check_topic(const char *t, size_t len, uint32_t max_levels, uint8_t *reason);
/* The same for a subscription filter: *reason 0x8F, or 0x9E for $share. */
int http__check_filter(const char *f, size_t len, uint32_t max_levels, uint8_t *reason);

/* What a publish request asks for (see http__parse_publish_query). */
typedef struct http_pub_opts_s {
    uint8_t qos;
    uint8_t retain;
} http_pub_opts_t;

/* Parses the query of POST /v1/publish (q[0..len), without '?'):
 * qos=0|1|2, retain=0|1|true|false, each at most once, nothing else.
 * Returns 0, or fills *err (400) and returns UVMQ_EINVAL. */
int http__parse_publish_query(const char *q, size_t len, http_pub_opts_t *o,
                              http_err_t *err);

/* Parses the query of GET /v1/subscribe: filter (1..HTTP_MAX_FILTERS,
 * percent-decoded into fbuf, which has room for len bytes; offsets and
 * lengths into foff/flen) and qos (once). Returns the number of filters,
 * or UVMQ_EINVAL with *err filled. */
int http__parse_subscribe_query(const char *q, size_t len, char *fbuf,
                                uint32_t *foff, uint32_t *flen, uint8_t *qos,
                                uint32_t max_levels, http_err_t *err);

/* Builds the v5 properties of a publish from its kept headers (names
 * lower case): content-type, x-mqtt-message-expiry, x-mqtt-response-topic,
 * x-mqtt-correlation-data (base64, decoded into cbuf with room for its
 * length), x-mqtt-user-<key>. Slices borrow hb (and cbuf); the user array
 * comes from a. Returns 0, or UVMQ_EINVAL with *err filled (400). */
int http__props_from_headers(const uint8_t *hb, const http_hdr_t *hdrs,
                             uint32_t n, pkt_props_t *props, uint8_t *cbuf,
                             arena_t *a, http_err_t *err);

/* Standard base64 (RFC 4648 section 4) with padding into out (room for
 * http__b64_len(n)); returns the length written. */
size_t http__b64_len(size_t n);
size_t http__b64_encode(const uint8_t *in, size_t n, char *out);
/* Decodes standard base64 (padding optional, no whitespace) into out
 * (room for len bytes). Returns the decoded length or -1. */
long http__b64_decode(const char *in, size_t len, uint8_t *out);

/* Appends s[0..len) as a JSON string (quotes included; s must be valid
 * UTF-8) to b. Returns 0 or UVMQ_ENOMEM. */
int http__json_str(http_buf_t *b, const char *s, size_t len, size_t limit);
/* The error body {"error":"msg","reason_code":N} into b. */
int http__json_error(http_buf_t *b, const char *msg, uint8_t reason);

/* Appends message m (delivered with qos and retain) as one JSON object:
 * {"topic","qos","retain","payload","encoding"[,"properties"]}, the
 * payload as text when it is valid UTF-8 (encoding "utf-8"), else base64
 * (encoding "base64"); properties as docs/http.md shows. Returns 0 or
 * UVMQ_ENOMEM (past limit; b may hold part of it). */
int http__msg_json(http_buf_t *b, const msg_t *m, uint8_t qos, uint8_t retain,
                   uint64_t now_ms, size_t limit);
/* Appends one server-sent event for message m (delivered with qos and
 * retain) to b, at most limit bytes in all: a "data:" line holding
 * {"topic","qos","retain","payload","encoding"["properties"]} and a blank
 * line. docs/http.md shows the format. Returns the bytes added, or 0 when
 * it would pass limit (nothing added). */
size_t http__sse_event(http_buf_t *b, const msg_t *m, uint8_t qos,
                       uint8_t retain, uint64_t now_ms, size_t limit);

/* ---- http.c ---- */

/* Submits a response: status, content type (NULL for none), a body copied
 * from body[0..len) (none when len is 0 and not an event stream), extra
 * headers (name, value pairs, n_extra pairs). Returns 0 or -1 (the stream
 * is gone or nghttp2 refused; logged). Marks the connection for a flush. */
int http__respond(http_stream_t *st, unsigned status, const char *ctype,
                  const void *body, size_t len, const char *const *extra,
                  size_t n_extra);
/* Answers with the JSON error body. */
void http__respond_error(http_stream_t *st, const http_err_t *e);
/* Starts an event stream on st: 200, text/event-stream, no end. */
int http__respond_sse(http_stream_t *st);
/* Tells nghttp2 that st has event bytes again. */
void http__sse_wake(http_stream_t *st);
/* The header value of the kept header `name`, or NULL; *len its length. */
const char *http__header(const http_stream_t *st, const char *name, size_t *len);

/* ---- http_api.c ---- */

/* A request's headers are complete: answers at once what can be (bad
 * path, method, query, oversize Content-Length), else waits for the body. */
/* ---- http_auth.c ---- */

/* Decides who st's request comes from (its Authorization header; the
 * password file; the listener's anonymous rule). Returns 0 when known
 * (st->auth is HTTP_AUTH_OK, st->user set or NULL for anonymous), 1 while
 * a password is being verified (http__request_end runs once it is, if
 * the request ended meanwhile), or -1 after answering 401 or 503. */
int http__authorize(http_stream_t *st);
/* Cancels st's verification under way and frees its user name. */
void http__auth_gone(http_stream_t *st);

void http__request_headers(http_stream_t *st, int end_stream);
/* The request is complete (END_STREAM): runs it. */
void http__request_end(http_stream_t *st);
/* The stream is closing: an event stream's session is ended. */
void http__stream_gone(http_stream_t *st);

/* ---- http_stats.c ---- */

/* GET /v1/stats: the broker's counters as JSON (cJSON) into *out (malloc'd,
 * caller frees). Returns 0 or UVMQ_ENOMEM. */
int http__stats_json(broker_t *b, char **out);
/* GET /metrics: the Prometheus text exposition into b. */
int http__metrics_text(broker_t *b, http_buf_t *out);

#endif

/*
 * h2client.h - a small HTTP/2 (h2c, prior knowledge) client for the
 * integration tests, on nghttp2's client session over a blocking socket.
 *
 * Every wait is bounded: th_h2_wait* pump the socket with poll() until a
 * condition holds or the deadline passes. Responses are collected per
 * stream (status, headers of interest, body, whether it ended or was
 * reset). The client can stop granting flow-control window (a slow
 * reader) to test the broker's HTTP/2 backpressure. Prefix: th_h2_.
 */
#ifndef UVMQ_TH_H2CLIENT_H
#define UVMQ_TH_H2CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct th_h2_s th_h2_t;

/* One stream's response as collected so far. */
typedef struct th_h2_resp_s {
    int32_t id;
    int status;          /* 0 until the response headers arrive */
    char ctype[128];     /* content-type, "" when none */
    char allow[32];      /* allow, "" when none */
    char *body;          /* NUL-terminated; len bytes (owned) */
    size_t len;
    bool ended;          /* END_STREAM seen */
    bool reset;          /* closed by RST_STREAM */
    uint32_t reset_code;
} th_h2_resp_t;

/* Connects to 127.0.0.1:port and sends the preface and SETTINGS. With
 * slow_reader, the client announces small windows (stream 1 KiB,
 * connection 64 KiB) and never sends WINDOW_UPDATE: the server is
 * flow-controlled once it has sent that much. Fails the test on error. */
th_h2_t *th_h2_open(uint16_t port, bool slow_reader);

/* Submits a request: method, path (with query), extra headers as
 * NULL-terminated name, value pairs (may be NULL), and a body (len 0 and
 * body NULL for none). Returns the stream id. */
int32_t th_h2_request(th_h2_t *h, const char *method, const char *path,
                      const char *const *hdrs, const void *body, size_t len);

/* Sends RST_STREAM (CANCEL) for stream id. */
void th_h2_cancel(th_h2_t *h, int32_t id);

/* Sends and receives for about ms milliseconds. */
void th_h2_pump(th_h2_t *h, int ms);

/* Pumps until stream id has ended (END_STREAM or reset) or timeout_ms
 * passed; returns its response (never NULL; check ended/reset). */
th_h2_resp_t *th_h2_wait(th_h2_t *h, int32_t id, int timeout_ms);

/* Pumps until stream id's body holds needle at least n times, or
 * timeout_ms passed; returns whether it does. */
bool th_h2_wait_body(th_h2_t *h, int32_t id, const char *needle, int n,
                     int timeout_ms);

/* Number of times needle occurs in stream id's body so far. */
int th_h2_count(th_h2_t *h, int32_t id, const char *needle);

/* Pumps until the server closed the connection (GOAWAY then EOF, or EOF)
 * or timeout_ms passed; returns whether it did. got_goaway, when not
 * NULL, tells whether a GOAWAY came first. */
bool th_h2_wait_closed(th_h2_t *h, int timeout_ms, bool *got_goaway);

/* The connection's socket (for raw frames in tests). */
int th_h2_fd(th_h2_t *h);

/* Closes the socket and frees everything. NULL is a no-op. */
void th_h2_close(th_h2_t *h);

/* One request on a fresh connection, waited for (TH_WAIT_MS): returns a
 * malloc'd copy of the response (free with th_h2_resp_free). */
th_h2_resp_t *th_h2_get(uint16_t port, const char *method, const char *path,
                        const char *const *hdrs, const void *body, size_t len);
void th_h2_resp_free(th_h2_resp_t *r);

#endif

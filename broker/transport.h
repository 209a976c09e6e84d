/*
 * transport.h - what a connection speaks, as a table the core calls.
 *
 * conn.c owns a connection's socket, its input buffer, its out-batch and
 * every write, its close and its memory; it never asks which protocol or
 * security layer it holds. Each listener names a transport (MQTT over
 * TCP, HTTP/2, and TLS wrapping either), and conn.c calls that table at
 * each event of the connection's life: bytes read, the output pass at the
 * end of a loop tick, a write finished, closing, freed, the 1 s sweep.
 * A transport may wrap another (TLS decrypts and hands plaintext to the
 * MQTT or HTTP/2 transport it wraps; WebSockets will unframe for MQTT the
 * same way), so each operation receives its own state as `self`, and a
 * wrapping transport calls the inner one's table with the inner state.
 *
 * Implementations: broker/mqtt.c (MQTT over a byte stream: framing and
 * the packet handlers), broker/conn_tls.c (TLS on tls/), http/http.c
 * (HTTP/2). Adding one adds a table and a listener type, not a branch in
 * conn.c. docs/architecture.md "Transports and sinks" tours the calls.
 *
 * Everything here runs on the connection's worker loop. The services
 * below are what a transport outside broker/ may use of the core.
 */
#ifndef UVMQ_BROKER_TRANSPORT_H
#define UVMQ_BROKER_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../common/arena.h"
#include "../packets/pkt.h"
#include "broker.h"

typedef struct conn_s conn_t;
typedef struct transport_s transport_t;

/* What a call that may close its connection returns (STYLE 6): after
 * CONN_GONE the connection is closing and its input must not be touched
 * again (its memory stays valid until its handle's close callback, in a
 * later loop phase). CONN_MIGRATE and CONN_PENDING are the MQTT CONNECT
 * handler's (mqtt.c turns them into CONN_OK or CONN_GONE before a
 * transport sees them). */
typedef enum conn_rc {
    CONN_OK = 0,  /* go on with the connection's input */
    CONN_GONE,    /* c was closed: stop processing its input */
    CONN_MIGRATE, /* CONNECT: move c to the loop c->move_to (mqtt.c) */
    CONN_PENDING  /* CONNECT waits: for its password check (access.c;
                     its bytes stay unread until c is resumed), or for
                     the client's next AUTH (auth.c; turned into CONN_OK
                     before it reaches mqtt.c) */
} conn_rc_t;

/* conn_close flags; the v5 ones matter to MQTT only. */
#define CONN_CLOSE_DISCONNECT 0x01 /* v5: send DISCONNECT with the reason first */
#define CONN_CLOSE_WILL 0x02       /* abnormal: publish the will */
#define CONN_CLOSE_QUIET 0x04      /* normal close: log at DEBUG, not INFO */

/* The table of one transport. Every operation but input may be NULL
 * (nothing to do at that event). `self` is the state the transport's
 * open set (NULL when it keeps none). */
struct transport_s {
    /* For logs and statistics: "mqtt", "http", "tls". */
    const char *name;
    /* What the logs call a connection of this protocol that has no
     * session: "-" for MQTT (before CONNECT), "(http)" for HTTP/2. */
    const char *anon;
    /* Why a connection that did not finish this protocol's handshake
     * (an MQTT CONNECT answered, an HTTP/2 preface) within
     * connect_timeout_ms is closed, for the log. */
    const char *late;
    /* The ALPN protocol list (RFC 7301, wire format: length byte, name)
     * a TLS listener of this protocol offers, and whether a client must
     * choose it: over TLS, HTTP/2 is "h2" or nothing (RFC 9113 3.3). */
    const char *alpn;
    uint8_t alpn_required;
    /* c was accepted on a listener of this transport (arg is the
     * listener's: a TLS context, borrowed), or the transport wrapping
     * this one is ready for it (TLS: the handshake chose it). inner is
     * the transport this one wraps (the listener's protocol), or NULL.
     * Sets *self. Returns 0, or a negative error: c is then closed. */
    int (*open)(conn_t *c, const transport_t *inner, void *arg, void **self);
    /* Where the next read of c goes, when not the loop's shared buffer
     * or the end of c's partial input (conn.c's choice when NULL): a
     * transport that reads bytes it does not consume as they are (TLS
     * reads ciphertext into a buffer of its own). */
    void (*alloc)(conn_t *c, void *self, uv_buf_t *buf);
    /* Bytes in: data[0..n) is borrowed for the call; n may be 0 (and
     * data NULL) to process what self kept (a connection moved between
     * loops). The transport consumes what it can and sets *used; what it
     * leaves, conn.c keeps in c's input buffer and hands back in front of
     * the next bytes, with *need (the size of the unit it waits for, 0
     * when unknown) sizing that buffer. Returns CONN_OK or CONN_GONE. */
    conn_rc_t (*input)(conn_t *c, void *self, const uint8_t *data, size_t n, size_t *used,
                       size_t *need);
    /* End of a loop tick, no write of c in flight: add what waits to be
     * sent to c's pending batch (HTTP/2 frames), or turn the batch into
     * the bytes the socket carries (TLS encrypts it). May close c. */
    void (*output)(conn_t *c, void *self);
    /* The socket did not take c's pending batch whole: uv_write will
     * write the rest later, so bytes the batch borrows from the
     * transport must stay valid until that write completes. */
    void (*hold)(conn_t *c, void *self);
    /* Everything written to c's socket so far has left: the transport
     * may ask for another flush (conn_want_flush) when it has more. */
    void (*written)(conn_t *c, void *self);
    /* c is closing (reason, flags and why, static, as the close gave
     * them): last words (an MQTT DISCONNECT, an HTTP/2 GOAWAY, a TLS
     * close_notify), which the flush still writes. */
    void (*closing)(conn_t *c, void *self, uint8_t reason, unsigned flags, const char *why);
    /* c's handle is closed: free self. c is NULL when the state of a
     * connection moved between loops is dropped unopened (shutdown). */
    void (*free)(conn_t *c, void *self);
    /* Once a second (now: the loop's clock, ms): timeouts of the
     * transport's own past the handshake (MQTT keep-alive, HTTP/2 idle;
     * the core applies connect_timeout_ms). */
    void (*sweep)(conn_t *c, void *self, uint64_t now);
    /* An acknowledgement conn_publish promised for id is due: failed
     * when the message could not be stored. */
    void (*acked)(conn_t *c, void *self, uint32_t id, int failed);
    /* The MQTT session of c lives on another loop, where c is going:
     * make self independent of this loop and of the bytes of this read
     * (TLS keeps its unread ciphertext). Returns 0, or a negative error
     * (c stays and is closed). */
    int (*detach)(conn_t *c, void *self);
    /* The user name the transport vouches for (TLS with
     * use_identity_as_username: the client certificate's CN), into
     * out[0..cap). Returns 1 when it wrote one, 0 when it vouches for
     * none (the CONNECT's user name stands), or a negative error when it
     * must but cannot (no usable certificate name: not authorized). */
    int (*username)(conn_t *c, void *self, char *out, size_t cap);
};

/* The MQTT transport (mqtt.c): the protocol of MQTT listeners, and what
 * a transport that unwraps MQTT bytes (TLS, WebSockets) hands them to. */
extern const transport_t mqtt_transport;

/* ---- services of the core for transports (conn.c) ---- */

/* Bytes for transport tp (state self) of c: tp consumes what it can; the
 * rest is kept in c's input buffer and handed to tp again, in front of
 * the next bytes fed. data[0..n) is borrowed for the call. Only the
 * innermost transport of c may leave bytes (one input buffer). Returns
 * CONN_OK, or CONN_GONE when c closed. */
conn_rc_t conn_feed(conn_t *c, const transport_t *tp, void *self, const uint8_t *data, size_t n);
/* Appends bytes (copied) to c's pending batch; the flush writes them. */
void conn_send(conn_t *c, const void *bytes, size_t len);
/* Bytes queued to c and not yet written (pending batch and write). */
size_t conn_unsent(const conn_t *c);
/* Asks for a flush of c at the end of this loop tick (its output op runs
 * then, even with nothing pending). */
void conn_want_flush(conn_t *c);
/* The handshake of c's protocol is done (an HTTP/2 preface): c is
 * running, past connect_timeout_ms. */
void conn_set_active(conn_t *c);
/* 1 once c is running (conn_set_active, or an MQTT CONNECT answered)
 * and not closing; 1 once c is closing (conn_close ran). */
int conn_active(const conn_t *c);
int conn_closing(const conn_t *c);
/* Closes c (CONN_CLOSE_* flags): its transport's last words, then what
 * is queued drains and the handle closes; c is freed in a later loop
 * phase. `why` (static) is logged. A second call does nothing. */
void conn_close(conn_t *c, unsigned flags, const char *why);
/* The peer's "ip:port" for logs, in a buffer of the calling thread that
 * the next call overwrites ("?" when unknown). */
const char *conn_peer(const conn_t *c);
/* TCP keep-alive probes on c's socket after secs of silence. */
void conn_tcp_keepalive(conn_t *c, unsigned secs);

/* c's broker and its configuration (read-only). */
broker_t *conn_broker(const conn_t *c);
const broker_config_t *conn_config(const conn_t *c);
/* The index of c's worker loop, its clock (ms, uv_now) and whether it is
 * shutting down. */
unsigned conn_loop_index(const conn_t *c);
uint64_t conn_now(const conn_t *c);
int conn_stopping(const conn_t *c);
/* The loop's arena for temporaries of the input being handled: reset
 * after each input, so nothing in it outlives the call that fed it. */
arena_t *conn_arena(conn_t *c);

/* What conn_count counts (docs/http.md and sys.md name the statistics). */
enum conn_counter {
    CONN_CNT_MSGS_IN = 0,      /* a message published (any protocol) */
    CONN_CNT_MSGS_OUT,         /* a message delivered */
    CONN_CNT_DROPPED_QOS0,     /* a QoS 0 delivery dropped: not reading */
    CONN_CNT_DROPPED_QUEUE,    /* a QoS 1/2 delivery dropped: full */
    CONN_CNT_PROTOCOL_ERROR,   /* a peer broke its protocol */
    CONN_CNT_HTTP_REQUESTS,    /* an HTTP/2 request answered */
    CONN_CNT_HTTP_CONNS        /* HTTP/2 connections open (n: +1, -1) */
};
/* Adds n to counter k of c's broker. */
void conn_count(conn_t *c, enum conn_counter k, int n);

/* Publishes a message from c (a transport's own request, e.g. an HTTP/2
 * POST) as an MQTT PUBLISH of an anonymous client would be: topic (a
 * valid topic name, not $SYS), payload, the v5 properties to forward
 * (NULL: none), qos and retain. QoS 0 is done on return; a QoS 1/2
 * message is acknowledged through c's transport's acked(id) once every
 * durable copy is stored (at once, from inside this call, when nothing
 * needs to be). The publisher may be paused meanwhile (throttling: its
 * reads stop). Returns 0, or UVMQ_ELIMIT when the message is larger than
 * max_packet_size (nothing published, no acked call). */
int conn_publish(conn_t *c, const pkt_bin_t *topic, const pkt_bin_t *payload,
                 const pkt_props_t *props, uint8_t qos, uint8_t retain, uint32_t id);

/* ---- access control for a transport's own requests (access.c) ----
 * The same password file and ACL file as MQTT clients: an HTTP/2 request
 * with Basic credentials is a client with that user name. */

/* A password verification under way on the thread pool. */
typedef struct conn_auth_s conn_auth_t;
/* What conn_authenticate decided (or its callback reports). */
enum conn_auth_verdict {
    CONN_AUTH_OK = 0, /* user and password match */
    CONN_AUTH_DENIED, /* unknown user or wrong password (counted, logged) */
    CONN_AUTH_PENDING,/* being verified: the callback tells */
    CONN_AUTH_BUSY    /* too many verifications queued (max_auth_pending) */
};
/* A verification's end, on c's loop: verdict CONN_AUTH_OK or
 * CONN_AUTH_DENIED. The job is over (its pointer is invalid) when this
 * runs. */
typedef void (*conn_auth_cb)(conn_t *c, void *arg, int verdict);

/* 1 when the broker has a password file: a transport must ask for
 * credentials (and check them with conn_authenticate). */
int conn_auth_required(const conn_t *c);
/* 1 when c's listener takes clients without a user name
 * (allow_anonymous, or the loopback rule). */
int conn_anonymous_ok(const conn_t *c);
/* Checks user[0..ulen) with password pass[0..plen) (both borrowed for the
 * call) against the password file: CONN_AUTH_OK or CONN_AUTH_DENIED at
 * once when the answer is known (the cache of verified credentials),
 * CONN_AUTH_BUSY, or CONN_AUTH_PENDING with *job set: cb(c, arg, verdict)
 * runs later unless conn_auth_cancel(job) comes first. */
int conn_authenticate(conn_t *c, const char *user, size_t ulen, const char *pass, size_t plen,
                      conn_auth_cb cb, void *arg, conn_auth_t **job);
/* Forgets a pending *job (its callback never runs); *job is NULL. */
void conn_auth_cancel(conn_auth_t **job);
/* 1 when user[0..ulen) (user NULL: anonymous) may publish to the topic
 * name t[0..len) from c; always 1 without an ACL file. A refusal is
 * counted. */
int conn_may_publish(conn_t *c, const char *user, size_t ulen, const char *t, size_t len);
/* 1 when that user may subscribe to the filter f[0..len) (as an MQTT
 * SUBSCRIBE would be answered); always 1 without an ACL file. */
int conn_may_subscribe(conn_t *c, const char *user, size_t ulen, const char *f, size_t len);

#endif

/*
 * conn_tls.c - the TLS transport: tls/ under a connection, wrapping the
 * protocol of its listener (MQTT, or HTTP/2 once ALPN chose "h2").
 *
 * Reads: ciphertext goes into a per-loop buffer of its own (alloc), is
 * decrypted into the loop's shared read buffer, and the plaintext is fed
 * to the wrapped transport through conn_feed, so MQTT framing sees
 * exactly what it sees on a plain socket. Writes: the output pass first
 * lets the wrapped transport add what it has (HTTP/2 frames), then
 * encrypts the whole pending batch in one tls/ pass into a per-loop
 * ciphertext buffer, releasing each entry's reference as its bytes are
 * encrypted, and leaves the batch holding that ciphertext; conn.c writes
 * it. When the socket does not take it whole, hold gives the buffer to
 * the batch (no copy) and the loop takes the batch's old array in
 * exchange. A close ends with close_notify. docs/tls.md has the design
 * and the measurements.
 */
#include "conn_tls_int.h"

#include "chunk_int.h"
#include "conn_int.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

/* The loop's ciphertext buffer (out) is kept between passes up to this
 * size; a larger one (a pass of big messages) is freed after it. */
#define TLS_OUT_KEEP (1024 * 1024)

/* A loop's TLS buffers (loop_t.tls), made with its first TLS connection. */
typedef struct tls_loop_s {
    uint8_t *in;    /* ciphertext reads, LOOP_READ_BUF bytes */
    uint8_t *stage; /* TLS_RECORD_MAX bytes a pass gathers small pieces in */
    uint8_t *out;   /* ciphertext of the pass being written */
    size_t out_len, out_cap;
} tls_loop_t;

/* One connection's TLS: the session and the transport it wraps. */
typedef struct tls_conn_s {
    tls_t *t;                 /* owned */
    const transport_t *inner; /* the listener's protocol */
    void *inner_self;         /* its state, once opened */
    uint8_t inner_open;       /* the handshake is done and inner opened */
} tls_conn_t;

static tls_loop_t *loop_bufs(loop_t *l)
{
    if (l->tls == NULL) {
        l->tls = xcalloc(1, sizeof *l->tls);
        l->tls->in = xmalloc(LOOP_READ_BUF);
        l->tls->stage = xmalloc(TLS_RECORD_MAX);
    }
    return l->tls;
}

void conn_tls__loop_dispose(loop_t *l)
{
    if (l->tls == NULL) return;
    free(l->tls->in);
    free(l->tls->stage);
    free(l->tls->out);
    free(l->tls);
    l->tls = NULL;
}

/* ---- open ---- */

static int wrap_open(conn_t *c, const transport_t *inner, void *arg, void **self)
{
    tls_conn_t *w = xcalloc(1, sizeof *w);
    w->inner = inner;
    *self = w; /* freed by tls_free, even when this fails */
    w->t = tls_create(arg);
    (void)loop_bufs(c->loop);
    return w->t != NULL ? 0 : UVMQ_ENOMEM;
}

/* The handshake of c just finished. A protocol with alpn_required speaks
 * only when ALPN chose it (RFC 9113 sections 3.2, 3.3: over TLS, HTTP/2
 * is always negotiated by ALPN, never assumed); one that negotiated
 * nothing (it offered no ALPN: a client offering others was refused in
 * the handshake, tls.c alpn_select) is closed with one line, counted as a
 * TLS failure. Then the wrapped transport opens, before any application
 * byte is read. Returns 0, or -1 when c was closed. */
static int established(conn_t *c, tls_conn_t *w)
{
    const transport_t *in = w->inner;
    char d[96];
    size_t n = 0;
    tls_describe(w->t, d, sizeof d);
    log_debug("TLS handshake with %s done: %s", conn__peer(c), d);
    if (in->alpn_required) {
        const uint8_t *p = tls_alpn(w->t, &n);
        if (p == NULL || n != (uint8_t)in->alpn[0] || memcmp(p, in->alpn + 1, n) != 0) {
            CNT_INC(c->loop->b, tls_failed);
            conn__close(c, 0, 0, "HTTP/2 over TLS needs ALPN \"h2\" (the client negotiated none)");
            return -1;
        }
    }
    if (in->open != NULL && in->open(c, NULL, NULL, &w->inner_self) != 0) {
        conn__close(c, 0, 0, err_str(UVMQ_ENOMEM));
        return -1;
    }
    w->inner_open = 1;
    return 0;
}

/* ---- read ---- */

/* Ciphertext goes into a second per-loop buffer: the shared one receives
 * the plaintext. OpenSSL copies what it needs out of it during the read
 * callback, so one buffer serves every TLS connection of the loop. */
static void wrap_alloc(conn_t *c, void *self, uv_buf_t *buf)
{
    (void)self;
    *buf = uv_buf_init((char *)loop_bufs(c->loop)->in, LOOP_READ_BUF);
}

/* Where plaintext is decrypted to: the loop's shared read buffer, or,
 * while that holds input being processed (a takeover reading the old
 * connection from inside the new one's CONNECT), a buffer of its own.
 * *own is set when the caller must free it. */
static uint8_t *plain_buf(loop_t *l, int *own)
{
    *own = l->rbuf_busy;
    if (*own) return xmalloc(LOOP_READ_BUF);
    l->rbuf_busy = 1;
    return l->rbuf;
}

/* Ciphertext data[0..n) arrived (NULL, 0: only what the session kept when
 * c moved here): runs the handshake, decrypts up to LOOP_READ_BUF bytes
 * at a time and feeds the plaintext to the wrapped transport. Every byte
 * fed is used before returning (the buffer is borrowed), even while c is
 * paused: the plaintext then waits in c's input buffer, as on a plain
 * connection, bounded by one read. Stops when c closes or moves. */
static conn_rc_t wrap_input(conn_t *c, void *self, const uint8_t *data, size_t n, size_t *used,
                           size_t *need)
{
    tls_conn_t *w = self;
    loop_t *l = c->loop;
    int own = 0, rc = tls_feed(w->t, data, n);
    uint8_t *plain = plain_buf(l, &own);
    conn_rc_t crc = CONN_OK;
    *used = n;
    *need = 0;
    while (rc == 0 && crc == CONN_OK) {
        size_t got = 0, k = 0;
        while (got < LOOP_READ_BUF &&
               (rc = tls_read(w->t, plain + got, LOOP_READ_BUF - got, &k)) == 0)
            got += k;
        if (!w->inner_open && tls_handshake_done(w->t) && established(c, w) != 0) {
            crc = CONN_GONE;
        } else if (got > 0) {
            crc = conn_feed(c, w->inner, w->inner_self, plain, got);
        }
        if (rc == TLS_WANT_READ) break;
        /* rc == 0: the buffer filled up, more may wait decrypted */
    }
    if (own) free(plain);
    else l->rbuf_busy = 0;
    if (conn__tp_data(c) != w) return CONN_GONE; /* moved away with its session */
    if (crc == CONN_OK && rc == UVMQ_ETLS) {
        /* The fatal alert OpenSSL made for the peer goes out first (the
         * close waits for it). */
        CNT_INC(l->b, tls_failed);
        conn__close(c, 0, CONN_CLOSE_WILL, tls_strerror());
    } else if (crc == CONN_OK && rc == TLS_CLOSED) {
        conn__close(c, 0, CONN_CLOSE_WILL, "connection closed by peer (TLS close_notify)");
    }
    if (tls_has_output(w->t)) conn__mark_dirty(c);
    return c->state == CONN_CLOSING ? CONN_GONE : CONN_OK;
}

/* ---- write ---- */

int conn_tls__encrypt(conn_t *c, tls_t *t, const uint8_t **out, size_t *len)
{
    tls_loop_t *tl = loop_bufs(c->loop);
    out_batch_t *b = c->batch;
    size_t plain = b->bytes;
    uint32_t n = b->n;
    tls_pass_t p;
    tl->out_len = 0;
    tls_pass_begin(&p, t, tl->stage, &tl->out, &tl->out_len, &tl->out_cap);
    for (uint32_t i = 0; i < n; i++) {
        out_ent_t *e = &b->v[i];
        tls_pass_put(&p, e->base != NULL ? e->base : b->scratch + e->off, e->len, i + 1 < n);
        if (e->ref != NULL) msg_release(&e->ref);
        if (e->chunk != NULL) chunk__release(&e->chunk);
    }
    int rc = tls_pass_end(&p);
    b->n = 0;
    b->bytes = 0;
    b->scratch_len = 0;
    c->unsent -= plain;
    *out = tl->out;
    *len = tl->out_len;
    return rc;
}

/* The output pass: the wrapped transport's frames first (HTTP/2), then
 * the pending batch and whatever OpenSSL made meanwhile (handshake,
 * alerts, close_notify) become ciphertext, which the batch then holds as
 * one entry borrowed from the loop's buffer. */
static void wrap_output(conn_t *c, void *self)
{
    tls_conn_t *w = self;
    const uint8_t *out = NULL;
    size_t len = 0;
    if (w->inner_open && w->inner->output != NULL) {
        w->inner->output(c, w->inner_self); /* may close c */
        if (c->handle_closing) return;
    }
    if ((c->batch == NULL || c->batch->n == 0) && !tls_has_output(w->t)) return;
    if (c->batch == NULL) conn__out_attach(c);
    if (conn_tls__encrypt(c, w->t, &out, &len) != 0) {
        CNT_INC(c->loop->b, tls_failed);
        conn__close(c, 0, CONN_CLOSE_WILL, tls_strerror());
        conn__close_handle(c);
        return;
    }
    if (len > 0) conn__send_borrowed(c, out, len);
}

/* The socket did not take the ciphertext whole: the loop's buffer
 * becomes the scratch of c's pending batch (about to be the writing one)
 * until the write completes, and the loop takes that batch's old array
 * as its next buffer (no copy, no allocation). */
static void wrap_hold(conn_t *c, void *self)
{
    tls_loop_t *tl = loop_bufs(c->loop);
    out_batch_t *b = c->batch;
    uint8_t *spare = b->scratch;
    size_t spare_cap = b->scratch_cap;
    (void)self;
    assert(b->n == 1 && b->v[0].base == tl->out);
    b->scratch = tl->out;
    b->scratch_cap = tl->out_cap;
    b->scratch_len = b->v[0].len;
    b->v[0].base = NULL; /* at offset 0 of scratch */
    b->v[0].off = 0;
    tl->out = spare;
    tl->out_cap = spare_cap;
    tl->out_len = 0;
}

/* A write finished: what OpenSSL made since (a session ticket, an alert)
 * asks for another flush, as does the wrapped transport; a buffer grown
 * for a pass of big messages is let go. */
static void wrap_written(conn_t *c, void *self)
{
    tls_conn_t *w = self;
    tls_loop_t *tl = loop_bufs(c->loop);
    tl->out_len = 0;
    if (tl->out_cap > TLS_OUT_KEEP) {
        free(tl->out);
        tl->out = NULL;
        tl->out_cap = 0;
    }
    if (tls_has_output(w->t)) conn__mark_dirty(c);
    if (w->inner_open && w->inner->written != NULL) w->inner->written(c, w->inner_self);
}

/* ---- close ---- */

/* The wrapped transport's last words, then close_notify after them. */
static void wrap_closing(conn_t *c, void *self, uint8_t reason, unsigned flags, const char *why)
{
    tls_conn_t *w = self;
    if (w->inner_open && w->inner->closing != NULL)
        w->inner->closing(c, w->inner_self, reason, flags, why);
    tls_shutdown(w->t);
    if (tls_has_output(w->t)) conn__mark_dirty(c);
}

static void wrap_free(conn_t *c, void *self)
{
    tls_conn_t *w = self;
    if (w == NULL) return;
    if (w->inner_open && w->inner->free != NULL) w->inner->free(c, w->inner_self);
    tls_destroy(w->t);
    free(w);
}

/* The wrapped transport's timeouts run from the start (a client that
 * never finishes the handshake meets connect_timeout_ms); an idle session
 * gives OpenSSL's buffers back. */
static void wrap_sweep(conn_t *c, void *self, uint64_t now)
{
    tls_conn_t *w = self;
    if (w->inner->sweep != NULL) w->inner->sweep(c, w->inner_open ? w->inner_self : NULL, now);
    if (!c->writing) tls_sweep(w->t);
}

static void wrap_acked(conn_t *c, void *self, uint32_t id, int failed)
{
    tls_conn_t *w = self;
    if (w->inner_open && w->inner->acked != NULL) w->inner->acked(c, w->inner_self, id, failed);
}

/* The session goes along to the session's loop, with the ciphertext not
 * yet decrypted (in the loop's buffer until kept). */
static int wrap_detach(conn_t *c, void *self)
{
    tls_conn_t *w = self;
    (void)c;
    return tls_keep_input(w->t);
}

/* use_identity_as_username, as mosquitto has it: on such a TLS listener
 * the client certificate's common name is the user name. */
static int wrap_username(conn_t *c, void *self, char *out, size_t cap)
{
    tls_conn_t *w = self;
    (void)c;
    if (!tls_identity_as_username(w->t)) return 0;
    int rc = tls_peer_cn(w->t, out, cap);
    return rc == 0 ? 1 : rc;
}

const transport_t conn_tls__transport = {
    .name = "tls",
    .anon = "-",
    .open = wrap_open,
    .alloc = wrap_alloc,
    .input = wrap_input,
    .output = wrap_output,
    .hold = wrap_hold,
    .written = wrap_written,
    .closing = wrap_closing,
    .free = wrap_free,
    .sweep = wrap_sweep,
    .acked = wrap_acked,
    .detach = wrap_detach,
    .username = wrap_username,
};

/*
 * tls.h - TLS on OpenSSL 3 with no socket and no event loop in sight:
 * ciphertext comes in as bytes the caller read, plaintext goes out into
 * the caller's buffer, and what OpenSSL wants to send is appended to a
 * byte array the caller then writes. The module knows nothing of the
 * broker: broker/conn.c puts it under MQTT and HTTP/2 connections.
 *
 * The broker's listeners make one tls_ctx_t per TLS listener (and a new
 * one on SIGHUP); each connection gets a tls_t. docs/tls.md walks
 * through the read path, the write pass and memory.
 *
 * Threads: a tls_ctx_t is shared (atomic reference count; created and
 * replaced on the listener thread, released on any). A tls_t belongs to
 * one thread at a time (it may move with its connection between loops).
 * OpenSSL's error queue is per thread: every failure is read and cleared
 * where it happens.
 */
#ifndef UVMQ_TLS_H
#define UVMQ_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"

/* tls_read results besides 0 ("that many bytes"); not errors. */
#define TLS_WANT_READ 1 /* every byte fed was used: feed more */
#define TLS_CLOSED    2 /* the peer sent close_notify: treat as EOF */

/* Largest plaintext of one TLS record (RFC 8446 5.1, RFC 5246 6.2.1):
 * the size of the staging buffer a write pass borrows. */
#define TLS_RECORD_MAX 16384

/* A write-pass entry of at least this many bytes is encrypted in place
 * rather than copied into the staging buffer: copying costs per byte, an
 * extra record a fixed ~22 bytes and one AEAD set-up (docs/tls.md has
 * the numbers of bench/micro/tls.c). */
#define TLS_DIRECT_MIN 4096

/* ALPN protocol lists in wire format (RFC 7301: length byte + name). */
#define TLS_ALPN_MQTT "\x04mqtt"
#define TLS_ALPN_H2 "\x02h2"

/* TLS minimum protocol versions ("min_version"). */
enum tls_min_version { TLS_MIN_1_2 = 12, TLS_MIN_1_3 = 13 };

/* A listener's "tls" object (docs/configuration.md). Strings are owned;
 * NULL means "not set". */
typedef struct tls_config_s {
    char *cert;                   /* "cert": PEM certificate chain, required */
    char *key;                    /* "key": PEM private key, required */
    char *ca;                     /* "ca": PEM CA bundle that client
                                     certificates must chain to; NULL = no
                                     client certificates are asked for */
    char *ciphers;                /* "ciphers": TLS 1.2 cipher list; NULL =
                                     OpenSSL's default */
    char *ciphersuites;           /* "ciphersuites": TLS 1.3 suites; NULL =
                                     OpenSSL's default */
    int min_version;              /* "min_version": enum tls_min_version,
                                     "1.2" (default) or "1.3" */
    int require_certificate;      /* "require_certificate": a client without
                                     a valid certificate fails the handshake;
                                     needs "ca". false */
    int use_identity_as_username; /* "use_identity_as_username": the client
                                     certificate's CN replaces the CONNECT
                                     user name; needs "ca". false */
} tls_config_t;

/* tls_ctx_create flags. */
#define TLS_ALPN_REQUIRED 0x01 /* a client offering ALPN without one of ours
                                  fails the handshake (no_application_protocol
                                  alert, RFC 7301 section 3.2) */

typedef struct tls_ctx_s tls_ctx_t; /* one per TLS listener (SSL_CTX) */
typedef struct tls_s tls_t;         /* one per TLS connection (SSL) */

/* One encryption pass over a connection's out-batch (tls_pass_*): lives
 * on the caller's stack. */
typedef struct tls_pass_s {
    tls_t *t;
    uint8_t *stage; /* TLS_RECORD_MAX bytes, borrowed (one per loop) */
    size_t staged;  /* plaintext bytes waiting in stage */
    int rc;         /* 0, or UVMQ_ETLS once a write failed */
    uint8_t drop;   /* handshake not finished: plaintext is dropped */
} tls_pass_t;

/* ---- contexts ---- */

/* Builds a server context from cfg: certificate chain, private key (no
 * passphrase prompt), CA, minimum version, ciphers, client certificate
 * policy (require_certificate: mandatory; ca alone: asked for, verified
 * when given; neither: not asked for), and the ALPN protocols accepted,
 * alpn[0..alpn_len) in wire format, in preference order (a client
 * offering none of them goes on without ALPN, or, with flags
 * TLS_ALPN_REQUIRED, fails the handshake and tls_strerror says which
 * protocol it did not offer). Renegotiation is off. Returns 0 with *out
 * holding one reference, or UVMQ_ECONFIG with a message naming the key
 * ("cert", "key", "ca", "ciphers", "ciphersuites") and the file in
 * err[0..errlen); *out is NULL then. */
int tls_ctx_create(tls_ctx_t **out, const tls_config_t *cfg, const char *alpn, size_t alpn_len,
                   unsigned flags, char *err, size_t errlen) __attribute__((warn_unused_result));
/* Takes one more reference (any thread); returns c. */
tls_ctx_t *tls_ctx_retain(tls_ctx_t *c);
/* Drops one reference of *cp (any thread) and NULLs it; the last frees
 * the context (connections made from it hold their own references). */
void tls_ctx_release(tls_ctx_t **cp);

/* ---- connections: create, read ---- */

/* Server-side state for one new connection, retaining ctx. NULL when
 * OpenSSL cannot allocate (logged). Idle, it holds the SSL object and
 * nothing else: see tls_sweep. */
tls_t *tls_create(tls_ctx_t *ctx);
/* Frees t and its SSL object; drops its context reference. NULL is a
 * no-op. */
void tls_destroy(tls_t *t);

/* Hands ciphertext to t, borrowed until tls_read returns anything but 0
 * (or until tls_keep_input). The first bytes of a connection must start
 * a TLS handshake record: anything else (plaintext MQTT or HTTP on a TLS
 * port) returns UVMQ_ETLS at once. data may be NULL with len 0: read what
 * tls_keep_input kept. Returns 0 or UVMQ_ETLS. */
int tls_feed(tls_t *t, const uint8_t *data, size_t len);
/* Runs the handshake and decrypts into dst[0..cap). Returns 0 with
 * *got > 0 plaintext bytes; TLS_WANT_READ once every byte fed is used
 * (handshake messages and alerts OpenSSL produced meanwhile wait in t:
 * tls_has_output); TLS_CLOSED on close_notify; or UVMQ_ETLS (the session
 * is dead; tls_strerror says why, and a fatal alert for the peer may
 * wait in t). */
int tls_read(tls_t *t, uint8_t *dst, size_t cap, size_t *got);
/* Copies the unread part of the ciphertext fed into t's own memory, so t
 * can move to another thread or outlive the caller's buffer (conn.c moves
 * a connection to its session's loop). Returns 0 or UVMQ_ENOMEM. */
int tls_keep_input(tls_t *t);
/* Ciphertext fed and not yet used (0 after tls_read said WANT_READ). */
size_t tls_input_left(const tls_t *t);

/* ---- connections: write ---- */

/* Starts a pass: from now until tls_pass_end every byte OpenSSL sends is
 * appended to the caller's growable array (*buf, *len, *cap; xrealloc'd
 * as needed, so the caller's array is reused pass after pass), first the
 * bytes OpenSSL produced outside a pass (handshake, alerts). stage is
 * TLS_RECORD_MAX bytes of scratch the caller lends for the pass. */
void tls_pass_begin(tls_pass_t *p, tls_t *t, uint8_t *stage, uint8_t **buf, size_t *len,
                     size_t *cap);
/* Encrypts data[0..len) after what the pass already took. Small pieces are
 * gathered in the stage and go out as full 16 KiB records; a piece of
 * TLS_DIRECT_MIN bytes or more, or the last piece (more == 0) when nothing
 * is staged (the single small record fast path), is encrypted straight
 * from data, with no copy. data is only read during the call. */
void tls_pass_put(tls_pass_t *p, const uint8_t *data, size_t len, int more);
/* Encrypts what is staged, sends close_notify if tls_shutdown asked for
 * it, and stops appending to the caller's array. Returns 0 or UVMQ_ETLS. */
int tls_pass_end(tls_pass_t *p);
/* Asks for close_notify at the end of the next pass (after the last
 * data), when the handshake finished and the session is sound. */
void tls_shutdown(tls_t *t);
/* 1 when t has bytes to send without any plaintext: handshake messages or
 * an alert waiting, or a close_notify asked for and not yet sent. */
int tls_has_output(const tls_t *t);

/* ---- connections: state ---- */

/* 1 once the handshake has finished. */
int tls_handshake_done(const tls_t *t);
/* The protocol ALPN selected (not NUL-terminated; *len bytes), or NULL
 * when none was. */
const uint8_t *tls_alpn(const tls_t *t, size_t *len);
/* Writes the (verified) client certificate's subject common name, UTF-8
 * and NUL-terminated, into out[0..cap). Returns 0, UVMQ_ENOTFOUND when the
 * client sent no certificate or it has no CN, UVMQ_ELIMIT when it does not
 * fit, UVMQ_EINVAL when it holds a NUL. */
int tls_peer_cn(const tls_t *t, char *out, size_t cap);
/* Whether t's listener maps the certificate CN onto the user name. */
int tls_identity_as_username(const tls_t *t);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" into out[0..cap), for logs. */
void tls_describe(const tls_t *t, char *out, size_t cap);
/* Once a second: a session used since the last call keeps OpenSSL's
 * ~17 KiB read and write buffers between records (no allocation per
 * pass); a quiet one frees them now and after each later use
 * (SSL_MODE_RELEASE_BUFFERS), which is also how a new session starts. */
void tls_sweep(tls_t *t);
/* Why the last UVMQ_ETLS on this thread happened, e.g. "TLS handshake
 * failed: certificate verify failed (certificate has expired)"; valid
 * until the next failure on this thread. */
const char *tls_strerror(void);

#endif

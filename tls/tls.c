/*
 * tls.c - TLS sessions on memory (OpenSSL 3): contexts per listener, one
 * SSL per connection, a BIO of our own in place of a socket.
 *
 * The BIO is the first idea to hold: OpenSSL reads ciphertext from the
 * bytes the caller fed (borrowed, never copied: OpenSSL takes what a
 * record needs straight into its own buffer) and writes ciphertext by
 * appending to whatever array the caller named for the current write pass,
 * or, outside a pass (handshake flights, alerts, session tickets), to a
 * small array of t's own that the next pass emits first, so bytes leave
 * in the order OpenSSL made them. Memory BIOs (BIO_s_mem) would cost a
 * copy each way and keep their high-water buffers per idle connection.
 *
 * The write pass gathers small pieces into full records in a borrowed
 * 16 KiB stage and encrypts large pieces in place (tls_pass_put); see
 * docs/tls.md for why and for the measurements.
 */
#include "tls.h"

#include <assert.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

/* A TLS record starts with its content type; a ClientHello comes in a
 * handshake record (RFC 8446 5.1, RFC 5246 6.2.1). */
#define TLS_CT_HANDSHAKE 0x16

/* Longest ALPN list a context keeps (wire format). */
#define ALPN_MAX 64

struct tls_ctx_s {
    SSL_CTX *ssl_ctx;
    atomic_uint refs;
    uint8_t identity_as_username;
    uint8_t alpn_required; /* a client offering ALPN without one of ours
                              fails the handshake (TLS_ALPN_REQUIRED) */
    uint8_t alpn_len;
    uint8_t alpn[ALPN_MAX]; /* protocols we accept, wire format */
};

struct tls_s {
    SSL *ssl;          /* owns the BIO */
    tls_ctx_t *ctx;    /* a reference */
    const uint8_t *in; /* ciphertext fed, not yet used (borrowed, or
                          own when kept) */
    size_t in_len;
    uint8_t *own;   /* tls_keep_input's copy; freed once used */
    uint8_t **sink; /* the pass's array (NULL outside a pass) */
    size_t *sink_len, *sink_cap;
    uint8_t *hold; /* output made outside a pass; owned */
    size_t hold_len, hold_cap;
    unsigned seen_first : 1; /* the first byte was checked */
    unsigned failed : 1;     /* fatal error: no more reads, writes or
                                close_notify */
    unsigned want_shutdown : 1;
    unsigned shutdown_sent : 1;
    unsigned active : 1; /* used since the last tls_sweep */
    unsigned alpn_refused : 1; /* alpn_select refused the client's list */
};

static _Thread_local char last_error[256];

/* ---- failures ---- */

const char *tls_strerror(void)
{
    return last_error[0] ? last_error : "TLS failure";
}

/* Describes OpenSSL's last error (and a failed certificate check) into
 * last_error with prefix, then clears the thread's error queue. */
static void note_failure(const SSL *ssl, const char *prefix)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
    char buf[128];
    if (reason == NULL && e != 0) {
        ERR_error_string_n(e, buf, sizeof buf);
        reason = buf;
    }
    if (reason == NULL) reason = "unexpected end of the stream";
    if (vr != X509_V_OK)
        snprintf(last_error, sizeof last_error, "%s%s (%s)", prefix, reason,
                 X509_verify_cert_error_string(vr));
    else
        snprintf(last_error, sizeof last_error, "%s%s", prefix, reason);
    ERR_clear_error();
}

/* The session is dead: records why (for tls_strerror). */
static int fail(tls_t *t)
{
    t->failed = 1;
    note_failure(t->ssl, SSL_is_init_finished(t->ssl) ? "TLS error: " : "TLS handshake failed: ");
    if (t->alpn_refused) /* say which protocol the client did not offer */
        snprintf(last_error, sizeof last_error,
                 "TLS handshake failed: no application protocol (the client's ALPN list "
                 "lacks \"%.*s\")",
                 t->ctx->alpn[0], (const char *)t->ctx->alpn + 1);
    return UVMQ_ETLS;
}

/* ---- the BIO ---- */

/* Appends n bytes to the pass's array, or to t->hold outside a pass. */
static void sink_append(tls_t *t, const void *data, size_t n)
{
    uint8_t **buf = t->sink != NULL ? t->sink : &t->hold;
    size_t *len = t->sink != NULL ? t->sink_len : &t->hold_len;
    size_t *cap = t->sink != NULL ? t->sink_cap : &t->hold_cap;
    if (*len + n > *cap) {
        size_t c = *cap ? *cap * 2 : 256;
        while (c < *len + n)
            c *= 2;
        *buf = xrealloc(*buf, c);
        *cap = c;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
}

static int bio_write(BIO *b, const char *data, size_t n, size_t *written)
{
    sink_append(BIO_get_data(b), data, n);
    *written = n;
    return 1;
}

static int bio_read(BIO *b, char *out, size_t n, size_t *got)
{
    tls_t *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (t->in_len == 0) {
        BIO_set_retry_read(b); /* would block: SSL_ERROR_WANT_READ */
        *got = 0;
        return 0;
    }
    if (n > t->in_len) n = t->in_len;
    memcpy(out, t->in, n);
    t->in += n;
    t->in_len -= n;
    if (t->in_len == 0 && t->own != NULL) {
        free(t->own);
        t->own = NULL;
        t->in = NULL;
    }
    *got = n;
    return 1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    tls_t *t = BIO_get_data(b);
    (void)num, (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_PENDING: return t != NULL ? (long)t->in_len : 0;
    default: return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

/* Made once per process and kept (OpenSSL holds no reference to free). */
static void make_bio_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "uvmq");
    if (m != NULL && (!BIO_meth_set_write_ex(m, bio_write) || !BIO_meth_set_read_ex(m, bio_read) ||
                      !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create))) {
        BIO_meth_free(m);
        m = NULL;
    }
    bio_method = m;
}

/* ---- contexts ---- */

/* Never prompt on a terminal for a key's passphrase: fail instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;
}

/* Picks our first protocol the client offers. Without one: a context
 * without alpn_required (MQTT's) goes on without ALPN (a client that
 * insists will end the handshake itself); one with it (HTTP/2's) answers
 * with the fatal no_application_protocol alert, as RFC 7301 section 3.2
 * says a server supporting none of the client's protocols does. A client
 * that offers no ALPN at all is not seen here (the caller checks
 * tls_alpn after the handshake). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    tls_ctx_t *c = arg;
    unsigned char *sel = NULL;
    if (c->alpn_len == 0 || SSL_select_next_proto(&sel, outlen, c->alpn, c->alpn_len, in, inlen) !=
                                OPENSSL_NPN_NEGOTIATED) {
        if (!c->alpn_required) return SSL_TLSEXT_ERR_NOACK;
        ((tls_t *)BIO_get_data(SSL_get_rbio(ssl)))->alpn_refused = 1;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    *out = sel; /* points into c->alpn, which outlives the handshake */
    return SSL_TLSEXT_ERR_OK;
}

/* Writes "key: what "path": OpenSSL's reason" into err; returns
 * UVMQ_ECONFIG. */
static int ctx_error(char *err, size_t errlen, const char *key, const char *what, const char *path)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    snprintf(err, errlen, "%s: %s \"%s\": %s", key, what, path != NULL ? path : "",
             reason != NULL ? reason : "rejected by OpenSSL");
    ERR_clear_error();
    return UVMQ_ECONFIG;
}

/* Names the file at path when it cannot be read; 0 or UVMQ_ECONFIG. */
static int check_readable(const char *key, const char *path, char *err, size_t errlen)
{
    if (access(path, R_OK) == 0) return 0;
    snprintf(err, errlen, "%s: cannot read \"%s\": %s", key, path, strerror(errno));
    return UVMQ_ECONFIG;
}

/* Certificate chain and private key. */
static int load_identity(SSL_CTX *s, const tls_config_t *cfg, char *err, size_t errlen)
{
    int rc = check_readable("cert", cfg->cert, err, errlen);
    if (rc == 0) rc = check_readable("key", cfg->key, err, errlen);
    if (rc == 0 && SSL_CTX_use_certificate_chain_file(s, cfg->cert) != 1)
        rc = ctx_error(err, errlen, "cert", "cannot use the certificate chain in", cfg->cert);
    if (rc == 0 && SSL_CTX_use_PrivateKey_file(s, cfg->key, SSL_FILETYPE_PEM) != 1)
        rc = ctx_error(err, errlen, "key", "cannot use the private key in", cfg->key);
    if (rc == 0 && SSL_CTX_check_private_key(s) != 1)
        rc = ctx_error(err, errlen, "key", "does not match the certificate of", cfg->cert);
    return rc;
}

/* CA, client certificate policy, versions and ciphers. */
static int load_policy(SSL_CTX *s, const tls_config_t *cfg, char *err, size_t errlen)
{
    int rc = 0;
    int mode = SSL_VERIFY_NONE;
    if (cfg->ca != NULL) {
        STACK_OF(X509_NAME) *names = NULL;
        rc = check_readable("ca", cfg->ca, err, errlen);
        if (rc == 0 && SSL_CTX_load_verify_locations(s, cfg->ca, NULL) != 1)
            rc = ctx_error(err, errlen, "ca", "cannot load the CA certificates in", cfg->ca);
        /* Tells clients which CAs we accept, so they pick a matching cert. */
        if (rc == 0 && (names = SSL_load_client_CA_file(cfg->ca)) != NULL)
            SSL_CTX_set_client_CA_list(s, names);
        ERR_clear_error();
        mode = SSL_VERIFY_PEER;
        if (cfg->require_certificate) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    }
    SSL_CTX_set_verify(s, mode, NULL);
    if (rc == 0 && !SSL_CTX_set_min_proto_version(
                       s, cfg->min_version == TLS_MIN_1_3 ? TLS1_3_VERSION : TLS1_2_VERSION))
        rc = ctx_error(err, errlen, "min_version", "cannot set", "");
    if (rc == 0 && cfg->ciphers != NULL && SSL_CTX_set_cipher_list(s, cfg->ciphers) != 1)
        rc = ctx_error(err, errlen, "ciphers", "no usable TLS 1.2 cipher in", cfg->ciphers);
    if (rc == 0 && cfg->ciphersuites != NULL && SSL_CTX_set_ciphersuites(s, cfg->ciphersuites) != 1)
        rc =
            ctx_error(err, errlen, "ciphersuites", "no usable TLS 1.3 suite in", cfg->ciphersuites);
    return rc;
}

int tls_ctx_create(tls_ctx_t **out, const tls_config_t *cfg, const char *alpn, size_t alpn_len,
                   unsigned flags, char *err, size_t errlen)
{
    tls_ctx_t *c = NULL;
    SSL_CTX *s = NULL;
    int rc = 0;
    *out = NULL;
    ERR_clear_error();
    assert(alpn_len <= ALPN_MAX);
    if (cfg->cert == NULL || cfg->key == NULL) {
        snprintf(err, errlen, "%s: required", cfg->cert == NULL ? "cert" : "key");
        return UVMQ_ECONFIG;
    }
    s = SSL_CTX_new(TLS_server_method());
    if (s == NULL) return ctx_error(err, errlen, "tls", "cannot create a context", "");
    SSL_CTX_set_default_passwd_cb(s, no_passphrase);
    /* No renegotiation (a client could make us pay for handshakes at
     * will), our cipher order, no compression (CRIME). */
    SSL_CTX_set_options(s, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_NO_COMPRESSION);
    /* A new connection frees OpenSSL's buffers after each use until it
     * proves busy (tls_sweep), so the handshake's 2 x 17 KiB do not stay
     * with a connection that then idles. */
    SSL_CTX_set_mode(s, SSL_MODE_RELEASE_BUFFERS);
    /* Required for session resumption when client certificates are
     * verified; any constant will do. */
    SSL_CTX_set_session_id_context(s, (const unsigned char *)"uvmq", 4);
    rc = load_identity(s, cfg, err, errlen);
    if (rc == 0) rc = load_policy(s, cfg, err, errlen);
    if (rc != 0) {
        SSL_CTX_free(s);
        return rc;
    }
    c = xcalloc(1, sizeof *c);
    c->ssl_ctx = s;
    atomic_init(&c->refs, 1);
    c->identity_as_username = (uint8_t)(cfg->use_identity_as_username != 0);
    memcpy(c->alpn, alpn, alpn_len);
    c->alpn_len = (uint8_t)alpn_len;
    c->alpn_required = (flags & TLS_ALPN_REQUIRED) != 0;
    SSL_CTX_set_alpn_select_cb(s, alpn_select, c);
    *out = c;
    return 0;
}

tls_ctx_t *tls_ctx_retain(tls_ctx_t *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void tls_ctx_release(tls_ctx_t **cp)
{
    tls_ctx_t *c = *cp;
    *cp = NULL;
    if (c == NULL) return;
    unsigned before = atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel);
    assert(before > 0);
    if (before == 1) {
        SSL_CTX_free(c->ssl_ctx);
        free(c);
    }
}

/* ---- connections ---- */

tls_t *tls_create(tls_ctx_t *ctx)
{
    tls_t *t = NULL;
    BIO *bio = NULL;
    pthread_once(&bio_once, make_bio_method);
    t = xcalloc(1, sizeof *t);
    t->ssl = bio_method != NULL ? SSL_new(ctx->ssl_ctx) : NULL;
    if (t->ssl != NULL) bio = BIO_new(bio_method);
    if (bio == NULL) {
        note_failure(NULL, "cannot create a TLS session: ");
        log_error("%s", last_error);
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    BIO_set_data(bio, t);
    SSL_set_bio(t->ssl, bio, bio); /* one reference, taken by the SSL */
    SSL_set_accept_state(t->ssl);
    t->ctx = tls_ctx_retain(ctx);
    return t;
}

void tls_destroy(tls_t *t)
{
    if (t == NULL) return;
    SSL_free(t->ssl);
    tls_ctx_release(&t->ctx);
    free(t->own);
    free(t->hold);
    free(t);
}

int tls_feed(tls_t *t, const uint8_t *data, size_t len)
{
    if (len > 0 && !t->seen_first) {
        t->seen_first = 1;
        if (data[0] != TLS_CT_HANDSHAKE) {
            t->failed = 1;
            snprintf(last_error, sizeof last_error,
                     "not a TLS handshake (first byte 0x%02x: plaintext on a TLS port?)", data[0]);
            return UVMQ_ETLS;
        }
    }
    if (data != NULL) {
        assert(t->own == NULL); /* kept input is read before any new */
        t->in = data;
        t->in_len = len;
    }
    return 0;
}

int tls_read(tls_t *t, uint8_t *dst, size_t cap, size_t *got)
{
    int rc = 0;
    *got = 0;
    if (t->failed) return UVMQ_ETLS;
    t->active = 1;
    if (SSL_read_ex(t->ssl, dst, cap, got) != 1) {
        switch (SSL_get_error(t->ssl, 0)) {
        case SSL_ERROR_WANT_READ: rc = TLS_WANT_READ; break;
        case SSL_ERROR_ZERO_RETURN: rc = TLS_CLOSED; break;
        default: rc = fail(t); break;
        }
    }
    return rc;
}

int tls_keep_input(tls_t *t)
{
    uint8_t *copy = NULL;
    if (t->in_len == 0 || t->own != NULL) return 0;
    copy = try_malloc(t->in_len, t->in_len);
    if (copy == NULL) return UVMQ_ENOMEM;
    memcpy(copy, t->in, t->in_len);
    t->own = copy;
    t->in = copy;
    return 0;
}

size_t tls_input_left(const tls_t *t)
{
    return t->in_len;
}

/* ---- write pass ---- */

void tls_pass_begin(tls_pass_t *p, tls_t *t, uint8_t *stage, uint8_t **buf, size_t *len,
                     size_t *cap)
{
    p->t = t;
    p->stage = stage;
    p->staged = 0;
    p->rc = 0;
    /* Plaintext cannot go out before the handshake; nothing sends any
     * then (the first packet out answers a CONNECT), so it is dropped. */
    p->drop = t->failed || !SSL_is_init_finished(t->ssl);
    t->sink = buf;
    t->sink_len = len;
    t->sink_cap = cap;
    if (t->hold_len > 0) { /* made before this pass: goes first */
        sink_append(t, t->hold, t->hold_len);
        free(t->hold);
        t->hold = NULL;
        t->hold_len = t->hold_cap = 0;
    }
}

/* Encrypts data[0..len) as application data (OpenSSL cuts records). */
static void write_now(tls_pass_t *p, const uint8_t *data, size_t len)
{
    size_t done = 0;
    if (p->rc != 0 || len == 0) return;
    if (SSL_write_ex(p->t->ssl, data, len, &done) != 1) p->rc = fail(p->t);
}

static void flush_stage(tls_pass_t *p)
{
    write_now(p, p->stage, p->staged);
    p->staged = 0;
}

void tls_pass_put(tls_pass_t *p, const uint8_t *data, size_t len, int more)
{
    if (p->drop || p->rc != 0 || len == 0) return;
    p->t->active = 1;
    if (len >= TLS_DIRECT_MIN || (!more && p->staged == 0)) {
        flush_stage(p);
        write_now(p, data, len);
        return;
    }
    while (len > 0) { /* small: fill the stage, a full record at a time */
        size_t room = TLS_RECORD_MAX - p->staged;
        size_t n = len < room ? len : room;
        memcpy(p->stage + p->staged, data, n);
        p->staged += n;
        data += n;
        len -= n;
        if (p->staged == TLS_RECORD_MAX) flush_stage(p);
    }
}

int tls_pass_end(tls_pass_t *p)
{
    tls_t *t = p->t;
    if (!p->drop) flush_stage(p);
    if (p->rc == 0 && t->want_shutdown && !t->shutdown_sent && !t->failed &&
        SSL_is_init_finished(t->ssl)) {
        t->shutdown_sent = 1;
        if (SSL_shutdown(t->ssl) < 0) ERR_clear_error(); /* best effort */
    }
    t->sink = NULL;
    t->sink_len = t->sink_cap = NULL;
    return p->rc;
}

void tls_shutdown(tls_t *t)
{
    t->want_shutdown = 1;
}

int tls_has_output(const tls_t *t)
{
    return t->hold_len > 0 ||
           (t->want_shutdown && !t->shutdown_sent && !t->failed && SSL_is_init_finished(t->ssl));
}

/* ---- state ---- */

int tls_handshake_done(const tls_t *t)
{
    return SSL_is_init_finished(t->ssl);
}

const uint8_t *tls_alpn(const tls_t *t, size_t *len)
{
    const unsigned char *p = NULL;
    unsigned n = 0;
    SSL_get0_alpn_selected(t->ssl, &p, &n);
    *len = n;
    return n > 0 ? p : NULL;
}

int tls_peer_cn(const tls_t *t, char *out, size_t cap)
{
    X509 *x = SSL_get0_peer_certificate(t->ssl);
    X509_NAME *name = x != NULL ? X509_get_subject_name(x) : NULL;
    int i = name != NULL ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
    unsigned char *utf8 = NULL;
    int len = -1, rc = 0;
    if (i >= 0)
        len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
    if (len < 0)
        rc = UVMQ_ENOTFOUND;
    else if ((size_t)len + 1 > cap)
        rc = UVMQ_ELIMIT;
    else if (memchr(utf8, 0, (size_t)len) != NULL)
        rc = UVMQ_EINVAL;
    else {
        memcpy(out, utf8, (size_t)len);
        out[len] = '\0';
    }
    OPENSSL_free(utf8);
    ERR_clear_error();
    return rc;
}

int tls_identity_as_username(const tls_t *t)
{
    return t->ctx->identity_as_username;
}

void tls_describe(const tls_t *t, char *out, size_t cap)
{
    snprintf(out, cap, "%s %s", SSL_get_version(t->ssl),
             SSL_CIPHER_get_name(SSL_get_current_cipher(t->ssl)));
}

void tls_sweep(tls_t *t)
{
    if (t->active) {
        SSL_clear_mode(t->ssl, SSL_MODE_RELEASE_BUFFERS); /* busy: keep them */
    } else {
        SSL_set_mode(t->ssl, SSL_MODE_RELEASE_BUFFERS); /* quiet: free after use */
        SSL_free_buffers(t->ssl);                       /* 0 (kept) while a record is partial */
    }
    t->active = 0;
}

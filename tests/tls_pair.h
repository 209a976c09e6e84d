/*
 * tests/tls_pair.h - a TLS client on OpenSSL memory BIOs talking to a
 * server-side tls_t (tls/tls.h) in the same process: no sockets, no
 * loop. The unit tests of the write pass and bench/micro/tls.c use it.
 *
 * Header-only (static inline), like tests/pki.h, whose certificates it
 * loads from a directory. Prefix: pair_.
 */
#ifndef UVMQ_TESTS_TLS_PAIR_H
#define UVMQ_TESTS_TLS_PAIR_H

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/tls.h"
#include "tests/pki.h"

/* OpenSSL's allocations, counted, and the bytes it holds, once
 * pair_count_openssl has run (first thing in main: before OpenSSL
 * allocates anything). A 16-byte header keeps each block's size. */
static uint64_t pair_ossl_allocs;
static int64_t pair_ossl_live;

static inline void *pair_malloc(size_t n, const char *file, int line)
{
    size_t *h = malloc(n + 16);
    (void)file, (void)line;
    if (h == NULL) return NULL;
    pair_ossl_allocs++;
    pair_ossl_live += (int64_t)n;
    h[0] = n;
    return (char *)h + 16;
}

static inline void pair_free(void *p, const char *file, int line)
{
    size_t *h = p != NULL ? (size_t *)((char *)p - 16) : NULL;
    (void)file, (void)line;
    if (h == NULL) return;
    pair_ossl_live -= (int64_t)h[0];
    free(h);
}

static inline void *pair_realloc(void *p, size_t n, const char *file, int line)
{
    size_t *h = p != NULL ? (size_t *)((char *)p - 16) : NULL, old = h != NULL ? h[0] : 0;
    if (h == NULL) return pair_malloc(n, file, line);
    h = realloc(h, n + 16);
    if (h == NULL) return NULL;
    pair_ossl_allocs++;
    pair_ossl_live += (int64_t)n - (int64_t)old;
    h[0] = n;
    return (char *)h + 16;
}

/* Routes OpenSSL's allocations through the counters above. Returns 0, or
 * -1 when OpenSSL has allocated already. */
static inline int pair_count_openssl(void)
{
    return CRYPTO_set_mem_functions(pair_malloc, pair_realloc, pair_free) == 1 ? 0 : -1;
}

typedef struct pair_s {
    tls_ctx_t *sctx; /* server context (a reference) */
    tls_t *srv;      /* server session */
    SSL_CTX *cctx;
    SSL *cli;        /* client session: reads cin, writes cout */
    BIO *cin, *cout; /* owned by cli */
    uint8_t stage[TLS_RECORD_MAX];
    uint8_t *wire; /* server -> client bytes of the last pass */
    size_t wire_len, wire_cap;
} pair_t;

/* Moves the server's pending output (handshake, alerts) to the client. */
static inline int pair_server_out(pair_t *p)
{
    tls_pass_t pass;
    p->wire_len = 0;
    tls_pass_begin(&pass, p->srv, p->stage, &p->wire, &p->wire_len, &p->wire_cap);
    int rc = tls_pass_end(&pass);
    if (p->wire_len > 0) BIO_write(p->cin, p->wire, (int)p->wire_len);
    return rc;
}

/* Feeds the client's output to the server; plaintext the server decrypts
 * is appended to out[0..*out_len) (cap bytes). Returns tls_read's last. */
static inline int pair_client_out(pair_t *p, uint8_t *out, size_t *out_len, size_t cap)
{
    uint8_t buf[65536];
    int n, rc = TLS_WANT_READ;
    while ((n = BIO_read(p->cout, buf, sizeof buf)) > 0) {
        rc = tls_feed(p->srv, buf, (size_t)n);
        while (rc == 0) {
            size_t got = 0;
            rc = tls_read(p->srv, out + *out_len, cap - *out_len, &got);
            *out_len += got;
        }
        if (rc != TLS_WANT_READ) break;
    }
    return rc;
}

/* Runs the handshake to its end, session tickets included. Returns 0 or
 * -1 (the server refused: tls_strerror says why). */
static inline int pair_handshake(pair_t *p)
{
    uint8_t none[16];
    size_t n = 0;
    for (int i = 0; i < 10; i++) {
        int r = SSL_do_handshake(p->cli);
        if (pair_client_out(p, none, &n, sizeof none) == UVMQ_ETLS) return -1;
        pair_server_out(p);
        if (r == 1 && tls_handshake_done(p->srv)) {
            /* Session tickets (TLS 1.3) go to the client now. */
            SSL_read_ex(p->cli, none, sizeof none, &n);
            ERR_clear_error();
            return 0;
        }
    }
    return -1;
}

/* Makes a pair, before any handshake byte: server with
 * dir/server.{crt,key} (and ca, mandatory client certificates when client
 * is not NULL), client trusting dir/ca.crt and presenting
 * dir/<client>.{crt,key} when client is not NULL, offering alpn (wire
 * format) when not NULL. */
static inline int pair_start(pair_t *p, const char *dir, const char *client, const char *alpn)
{
    char cert[512], key[512], ca[512], err[400];
    tls_config_t cfg = {0};
    memset(p, 0, sizeof *p);
    snprintf(cert, sizeof cert, "%s/server.crt", dir);
    snprintf(key, sizeof key, "%s/server.key", dir);
    snprintf(ca, sizeof ca, "%s/ca.crt", dir);
    cfg.cert = cert;
    cfg.key = key;
    cfg.ca = client != NULL ? ca : NULL;
    cfg.require_certificate = client != NULL;
    cfg.min_version = TLS_MIN_1_2;
    if (tls_ctx_create(&p->sctx, &cfg, TLS_ALPN_MQTT, sizeof TLS_ALPN_MQTT - 1, 0, err,
                       sizeof err) != 0) {
        fprintf(stderr, "# pair: %s\n", err);
        return -1;
    }
    p->srv = tls_create(p->sctx);
    p->cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(p->cctx, ca, NULL);
    SSL_CTX_set_verify(p->cctx, SSL_VERIFY_PEER, NULL);
    if (client != NULL) {
        snprintf(cert, sizeof cert, "%s/%s.crt", dir, client);
        snprintf(key, sizeof key, "%s/%s.key", dir, client);
        SSL_CTX_use_certificate_file(p->cctx, cert, SSL_FILETYPE_PEM);
        SSL_CTX_use_PrivateKey_file(p->cctx, key, SSL_FILETYPE_PEM);
    }
    p->cli = SSL_new(p->cctx);
    p->cin = BIO_new(BIO_s_mem());
    p->cout = BIO_new(BIO_s_mem());
    SSL_set_bio(p->cli, p->cin, p->cout);
    SSL_set_connect_state(p->cli);
    SSL_set1_host(p->cli, "localhost");
    if (alpn != NULL)
        SSL_set_alpn_protos(p->cli, (const unsigned char *)alpn, (unsigned)strlen(alpn));
    return 0;
}

/* pair_start, then the handshake. Returns 0 or -1. */
static inline int pair_open(pair_t *p, const char *dir, const char *client, const char *alpn)
{
    return pair_start(p, dir, client, alpn) == 0 ? pair_handshake(p) : -1;
}

/* The client decrypts bytes[0..len) from the server into out[0..cap);
 * returns the plaintext length, or -1 when a record does not decrypt
 * (*closed is set on close_notify). */
static inline long pair_client_read(pair_t *p, const uint8_t *bytes, size_t len, uint8_t *out,
                                    size_t cap, int *closed)
{
    size_t total = 0, got = 0;
    *closed = 0;
    BIO_write(p->cin, bytes, (int)len);
    while (total < cap && SSL_read_ex(p->cli, out + total, cap - total, &got) == 1)
        total += got;
    int e = SSL_get_error(p->cli, 0);
    ERR_clear_error();
    if (e == SSL_ERROR_ZERO_RETURN)
        *closed = 1;
    else if (e != SSL_ERROR_WANT_READ && total < cap)
        return -1;
    return (long)total;
}

/* Number of TLS records in bytes[0..len) (-1 if it does not end on a
 * record boundary). */
static inline long pair_records(const uint8_t *bytes, size_t len)
{
    long n = 0;
    size_t off = 0;
    while (off + 5 <= len) {
        off += 5 + ((size_t)bytes[off + 3] << 8 | bytes[off + 4]);
        n++;
    }
    return off == len ? n : -1;
}

static inline void pair_close(pair_t *p)
{
    SSL_free(p->cli);
    SSL_CTX_free(p->cctx);
    tls_destroy(p->srv);
    tls_ctx_release(&p->sctx);
    free(p->wire);
    memset(p, 0, sizeof *p);
}

#endif

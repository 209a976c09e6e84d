/*
 * tls.c - the harness's TLS helpers: certificates for a test run (made
 * with tests/pki.h in a temp dir), a blocking TLS client that reports
 * which certificate the broker shows (SIGHUP reload tests), and a raw TLS
 * MQTT client (th_tls_raw_t) for byte-level tests over TLS.
 */
#include "tests/integration/harness/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tests/pki.h"

/* Makes the run's certificates; see harness.h. */
void th_pki_make(char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/uvmq-pki-XXXXXX");
    if (mkdtemp(dir) == NULL) fail_msg("mkdtemp: %s", strerror(errno));
    if (pki_make_set(dir) != 0) fail_msg("cannot make test certificates in %s", dir);
}

/* "dir/name.ext", interned; see harness.h. */
const char *th_pki_path(const char *dir, const char *name, const char *ext)
{
    static char paths[64][256];
    static int n;
    char want[256];
    snprintf(want, sizeof want, "%s/%s.%s", dir, name, ext);
    for (int i = 0; i < n; i++)
        if (strcmp(paths[i], want) == 0) return paths[i];
    if (n == 64) fail_msg("th_pki_path: more than 64 distinct paths");
    strcpy(paths[n], want);
    return paths[n++];
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* Removes a tree; see harness.h. */
void th_rmtree(const char *dir)
{
    if (dir != NULL && dir[0] != '\0' && getenv("TH_KEEP_TMP") == NULL)
        nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Blocking TCP connect to 127.0.0.1:port with 5 s timeouts, or -1. */
static int tcp_connect(uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct timeval tv = {5, 0};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* The CN of the broker's certificate; see harness.h. */
int th_tls_server_cn(uint16_t port, const char *ca, char *out, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    int fd = tcp_connect(port), rc = -1;
    X509 *x = NULL;
    if (ctx != NULL && fd >= 0 && SSL_CTX_load_verify_locations(ctx, ca, NULL) == 1) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        SSL_set1_host(ssl, "127.0.0.1");
        if (SSL_connect(ssl) == 1) x = SSL_get1_peer_certificate(ssl);
    }
    if (x != NULL &&
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)cap) > 0)
        rc = 0;
    if (rc != 0) {
        char why[160] = "no certificate";
        unsigned long e = ERR_peek_last_error();
        if (e != 0) ERR_error_string_n(e, why, sizeof why);
        fprintf(stderr, "# TLS connect to port %u: %s\n", (unsigned)port, why);
    }
    if (ssl != NULL && rc == 0) SSL_shutdown(ssl);
    ERR_clear_error();
    X509_free(x);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    if (fd >= 0) close(fd);
    return rc;
}

/* ---- raw TLS client ------------------------------------------------------ */

struct th_tls_raw_s {
    SSL_CTX *ctx;
    SSL *ssl;
    int fd; /* tracked: the teardown closes it if the test failed */
};

/* Opens a raw TLS connection; see harness.h. */
th_tls_raw_t *th_tls_raw_open(uint16_t port, const char *ca, int rcvbuf)
{
    th_tls_raw_t *r = calloc(1, sizeof *r);
    assert_non_null(r);
    struct timeval tv = {TH_WAIT_MS / 1000, 0}; /* what a read waits */
    r->fd = th_connect_rcvbuf(port, rcvbuf);
    setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    r->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(r->ctx);
    if (SSL_CTX_load_verify_locations(r->ctx, ca, NULL) != 1)
        fail_msg("cannot load CA %s", ca);
    SSL_CTX_set_verify(r->ctx, SSL_VERIFY_PEER, NULL);
    r->ssl = SSL_new(r->ctx);
    assert_non_null(r->ssl);
    SSL_set_fd(r->ssl, r->fd);
    SSL_set1_host(r->ssl, "127.0.0.1");
    if (SSL_connect(r->ssl) != 1) {
        char why[160] = "handshake failed";
        unsigned long e = ERR_peek_last_error();
        if (e != 0) ERR_error_string_n(e, why, sizeof why);
        fail_msg("TLS connect to port %u: %s", (unsigned)port, why);
    }
    return r;
}

/* Writes all of buf; see harness.h. */
void th_tls_raw_send(th_tls_raw_t *r, const void *buf, size_t len)
{
    size_t done = 0;
    if (SSL_write_ex(r->ssl, buf, len, &done) != 1 || done != len)
        fail_msg("SSL_write of %zu bytes failed", len);
}

/* n bytes into buf, or fails the test (the socket's timeout bounds it). */
static void tls_read_full(th_tls_raw_t *r, unsigned char *buf, size_t n)
{
    size_t got = 0, k = 0;
    while (got < n) {
        if (SSL_read_ex(r->ssl, buf + got, n - got, &k) != 1)
            fail_msg("TLS read: nothing within %d ms or the connection closed",
                     TH_WAIT_MS);
        got += k;
    }
}

/* Reads one MQTT packet; see harness.h. */
int th_tls_raw_read_packet(th_tls_raw_t *r, unsigned char *buf, size_t cap)
{
    size_t off = 1, rem = 0;
    tls_read_full(r, buf, 2);
    for (int shift = 0;; shift += 7) { /* Remaining Length, 1..4 bytes */
        rem |= (size_t)(buf[off] & 0x7f) << shift;
        if ((buf[off++] & 0x80) == 0) break;
        if (off == 5 || off >= cap) fail_msg("malformed Remaining Length");
        tls_read_full(r, buf + off, 1);
    }
    if (off + rem > cap) fail_msg("packet of %zu bytes over %zu", off + rem, cap);
    tls_read_full(r, buf + off, rem);
    return (int)(off + rem);
}

/* Closes and frees; see harness.h. */
void th_tls_raw_close(th_tls_raw_t *r)
{
    SSL_free(r->ssl);
    SSL_CTX_free(r->ctx);
    th_close(r->fd);
    free(r);
}

static void tls_io_send(void *ctx, const void *buf, size_t len)
{
    th_tls_raw_send(ctx, buf, len);
}

static int tls_io_read(void *ctx, unsigned char *buf, size_t cap)
{
    return th_tls_raw_read_packet(ctx, buf, cap);
}

/* th_io_t of a raw TLS connection; see harness.h. */
th_io_t th_io_tls(th_tls_raw_t *r)
{
    return (th_io_t){.send = tls_io_send, .read_packet = tls_io_read, .ctx = r};
}

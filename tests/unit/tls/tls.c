/*
 * Unit tests for tls/tls.c, with no sockets: a server tls_t and an OpenSSL client on memory BIOs
 * (tests/tls_pair.h) shake hands in process, with certificates made in a
 * temp dir for this run (tests/pki.h). What the server writes is decrypted
 * by the client, so each test checks the bytes, their order and the record
 * boundaries a pass produces, and what a pass allocates and releases.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tls/tls.h"
#include "common/log.h"
#include "common/xmalloc.h"
#include "tests/tls_pair.h"

static char g_dir[64]; /* the run's certificates */

static int group_setup(void **state)
{
    (void)state;
    log_set_level(LOG_ERROR);
    strcpy(g_dir, "/tmp/uvmq-tls-unit-XXXXXX");
    return pki_set_create(g_dir);
}

static int group_teardown(void **state)
{
    (void)state;
    pki_set_remove(g_dir);
    return 0;
}

static int setup(void **state)
{
    pair_t *p = calloc(1, sizeof *p);
    assert_non_null(p);
    assert_int_equal(pair_open(p, g_dir, NULL, NULL), 0);
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    pair_close(*state);
    free(*state);
    return 0;
}

/* Runs one pass over pieces[0..n) of the given sizes (bytes 'a' + i).
 * Returns the pass's result; the ciphertext is in p->wire. */
static int pass_of(pair_t *p, const size_t *sizes, size_t n, uint8_t *plain, size_t *plain_len)
{
    tls_pass_t pass;
    size_t off = 0;
    p->wire_len = 0;
    tls_pass_begin(&pass, p->srv, p->stage, &p->wire, &p->wire_len, &p->wire_cap);
    for (size_t i = 0; i < n; i++) {
        memset(plain + off, 'a' + (int)(i % 26), sizes[i]);
        tls_pass_put(&pass, plain + off, sizes[i], i + 1 < n);
        off += sizes[i];
    }
    *plain_len = off;
    return tls_pass_end(&pass);
}

/* The client decrypts p->wire and must get plain[0..len) back. */
static void expect_client_gets(pair_t *p, const uint8_t *plain, size_t len)
{
    uint8_t *got = malloc(len + 1);
    int closed = 0;
    assert_non_null(got);
    assert_int_equal(pair_client_read(p, p->wire, p->wire_len, got, len + 1, &closed), (long)len);
    assert_memory_equal(got, plain, len);
    free(got);
}

static void handshake_completes_and_selects_alpn_mqtt(void **state)
{
    pair_t p;
    size_t len = 0;
    const uint8_t *proto;
    (void)state;
    assert_int_equal(pair_open(&p, g_dir, NULL, TLS_ALPN_MQTT), 0);
    assert_true(tls_handshake_done(p.srv));
    proto = tls_alpn(p.srv, &len);
    assert_non_null(proto);
    assert_int_equal(len, 4);
    assert_memory_equal(proto, "mqtt", 4);
    pair_close(&p);
}

static void a_client_offering_other_protocols_goes_on_without_alpn(void **state)
{
    pair_t p;
    size_t len = 1;
    (void)state;
    assert_int_equal(pair_open(&p, g_dir, NULL, "\x02h2"), 0);
    assert_null(tls_alpn(p.srv, &len));
    assert_int_equal(len, 0);
    pair_close(&p);
}

/* A pair whose server has an HTTP/2 listener's context (ALPN "h2" only,
 * required), the client offering alpn; then the handshake. 0 or -1. */
static int pair_open_http(pair_t *p, const char *alpn)
{
    char cert[256], key[256], err[400];
    tls_config_t cfg = {.cert = cert, .key = key, .min_version = TLS_MIN_1_2};
    snprintf(cert, sizeof cert, "%s/server.crt", g_dir);
    snprintf(key, sizeof key, "%s/server.key", g_dir);
    if (pair_start(p, g_dir, NULL, alpn) != 0) return -1;
    tls_destroy(p->srv);
    tls_ctx_release(&p->sctx);
    assert_int_equal(tls_ctx_create(&p->sctx, &cfg, TLS_ALPN_H2, sizeof TLS_ALPN_H2 - 1,
                                    TLS_ALPN_REQUIRED, err, sizeof err),
                     0);
    p->srv = tls_create(p->sctx);
    return pair_handshake(p);
}

static void an_http_context_selects_h2(void **state)
{
    pair_t p;
    size_t len = 0;
    const uint8_t *proto;
    (void)state;
    assert_int_equal(pair_open_http(&p, "\x08http/1.1\x02h2"), 0);
    proto = tls_alpn(p.srv, &len);
    assert_non_null(proto);
    assert_int_equal(len, 2);
    assert_memory_equal(proto, "h2", 2);
    pair_close(&p);
}

static void an_http_context_refuses_a_client_whose_alpn_lacks_h2(void **state)
{
    pair_t p;
    (void)state;
    assert_int_equal(pair_open_http(&p, "\x08http/1.1"), -1);
    assert_string_equal(tls_strerror(), "TLS handshake failed: no application protocol (the "
                                         "client's ALPN list lacks \"h2\")");
    assert_true(tls_has_output(p.srv)); /* the alert for the client */
    pair_close(&p);
}

static void an_http_context_lets_a_client_without_alpn_finish_unselected(void **state)
{
    pair_t p;
    size_t len = 1;
    (void)state;
    assert_int_equal(pair_open_http(&p, NULL), 0); /* conn.c then closes it */
    assert_null(tls_alpn(p.srv, &len));
    assert_int_equal(len, 0);
    pair_close(&p);
}

static void small_pieces_are_gathered_into_one_record(void **state)
{
    pair_t *p = *state;
    size_t sizes[32], len = 0;
    uint8_t plain[32 * 20];
    for (int i = 0; i < 32; i++)
        sizes[i] = 20;
    assert_int_equal(pass_of(p, sizes, 32, plain, &len), 0);
    assert_int_equal(pair_records(p->wire, p->wire_len), 1);
    expect_client_gets(p, plain, len);
}

static void small_pieces_fill_records_of_16_kib(void **state)
{
    pair_t *p = *state;
    size_t sizes[100], len = 0;
    uint8_t *plain = malloc(100 * 1000);
    for (int i = 0; i < 100; i++)
        sizes[i] = 1000; /* 100,000 bytes: 7 records */
    assert_int_equal(pass_of(p, sizes, 100, plain, &len), 0);
    assert_int_equal(pair_records(p->wire, p->wire_len),
                     (100000 + TLS_RECORD_MAX - 1) / TLS_RECORD_MAX);
    expect_client_gets(p, plain, len);
    free(plain);
}

static void a_large_piece_is_encrypted_in_place_after_the_staged_ones(void **state)
{
    pair_t *p = *state;
    size_t sizes[] = {5, 40000, 7}, len = 0;
    uint8_t plain[40012];
    /* 5 staged -> their own record; 40000 in place -> 3 records; 7 -> 1. */
    assert_int_equal(pass_of(p, sizes, 3, plain, &len), 0);
    assert_int_equal(pair_records(p->wire, p->wire_len), 5);
    expect_client_gets(p, plain, len);
}

static void a_single_small_piece_is_not_copied_into_the_stage(void **state)
{
    pair_t *p = *state;
    size_t sizes[] = {3}, len = 0;
    uint8_t plain[3];
    memset(p->stage, 0x5a, sizeof p->stage);
    assert_int_equal(pass_of(p, sizes, 1, plain, &len), 0);
    assert_int_equal(pair_records(p->wire, p->wire_len), 1);
    assert_int_equal(p->stage[0], 0x5a); /* the fast path left it alone */
    expect_client_gets(p, plain, len);
}

static void passes_reuse_the_callers_array_and_allocate_nothing(void **state)
{
    pair_t *p = *state;
    size_t sizes[] = {100, 20000, 30}, len = 0;
    uint8_t plain[20130];
    assert_int_equal(pass_of(p, sizes, 3, plain, &len), 0); /* grows wire once */
    expect_client_gets(p, plain, len);
    uint8_t *wire = p->wire;
    uint64_t before = xmalloc_count();
    for (int i = 0; i < 100; i++) {
        assert_int_equal(pass_of(p, sizes, 3, plain, &len), 0);
        expect_client_gets(p, plain, len); /* (malloc, not xmalloc) */
    }
    assert_true(xmalloc_count() == before);
    assert_ptr_equal(p->wire, wire);
}

static void handshake_output_goes_out_before_the_next_pass(void **state)
{
    pair_t p;
    uint8_t buf[64], plain[64];
    size_t n = 0, sizes[] = {10}, len = 0;
    int closed = 0;
    (void)state;
    assert_int_equal(pair_start(&p, g_dir, NULL, NULL), 0);
    assert_int_equal(SSL_do_handshake(p.cli), -1); /* ClientHello */
    assert_int_equal(pair_client_out(&p, buf, &n, sizeof buf), TLS_WANT_READ);
    assert_true(tls_has_output(p.srv)); /* the server's flight waits */
    assert_int_equal(pair_server_out(&p), 0);
    assert_int_equal(SSL_do_handshake(p.cli), 1); /* client Finished */
    assert_int_equal(pair_client_out(&p, buf, &n, sizeof buf), TLS_WANT_READ);
    assert_true(tls_handshake_done(p.srv));
    assert_true(tls_has_output(p.srv)); /* TLS 1.3 session tickets wait */
    /* One pass: the tickets first, then the data; the client decrypts in
     * sequence, so any other order would fail. */
    assert_int_equal(pass_of(&p, sizes, 1, plain, &len), 0);
    assert_false(tls_has_output(p.srv));
    assert_true(pair_records(p.wire, p.wire_len) >= 2);
    assert_int_equal(pair_client_read(&p, p.wire, p.wire_len, buf, sizeof buf, &closed), 10);
    assert_memory_equal(buf, plain, 10);
    pair_close(&p);
}

static void plaintext_on_a_tls_port_is_refused_at_once(void **state)
{
    pair_t *p = *state;
    tls_t *t = tls_create(p->sctx);
    static const uint8_t connect[] = {0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T'};
    assert_int_equal(tls_feed(t, connect, sizeof connect), UVMQ_ETLS);
    assert_non_null(strstr(tls_strerror(), "not a TLS handshake (first byte 0x10"));
    assert_false(tls_has_output(t));
    tls_destroy(t);
}

static void records_split_into_single_bytes_decrypt(void **state)
{
    pair_t *p = *state;
    uint8_t wire[512], out[64];
    size_t n = 0, got = 0;
    int rc = TLS_WANT_READ, len;
    assert_int_equal(SSL_write_ex(p->cli, "hello over tls", 14, &n), 1);
    len = BIO_read(p->cout, wire, sizeof wire);
    assert_true(len > 14);
    for (int i = 0; i < len; i++) {
        rc = tls_feed(p->srv, wire + i, 1);
        while (rc == 0) {
            size_t k = 0;
            rc = tls_read(p->srv, out + got, sizeof out - got, &k);
            got += k;
        }
        assert_int_equal(rc, TLS_WANT_READ);
    }
    assert_int_equal(got, 14);
    assert_memory_equal(out, "hello over tls", 14);
}

static void close_notify_follows_the_last_data(void **state)
{
    pair_t *p = *state;
    size_t sizes[] = {50}, len = 0;
    uint8_t plain[50], got[64];
    int closed = 0;
    tls_shutdown(p->srv);
    assert_true(tls_has_output(p->srv));
    assert_int_equal(pass_of(p, sizes, 1, plain, &len), 0);
    assert_false(tls_has_output(p->srv));
    assert_int_equal(pair_client_read(p, p->wire, p->wire_len, got, sizeof got, &closed), 50);
    assert_memory_equal(got, plain, 50);
    assert_int_equal(closed, 1);
}

static void the_client_certificate_cn_is_read(void **state)
{
    pair_t p;
    char cn[64];
    (void)state;
    assert_int_equal(pair_open(&p, g_dir, "client", NULL), 0);
    assert_int_equal(tls_peer_cn(p.srv, cn, sizeof cn), 0);
    assert_string_equal(cn, "tls-user");
    assert_int_equal(tls_peer_cn(p.srv, cn, 4), UVMQ_ELIMIT);
    pair_close(&p);
    assert_int_equal(pair_open(&p, g_dir, "nocn", NULL), 0);
    assert_int_equal(tls_peer_cn(p.srv, cn, sizeof cn), UVMQ_ENOTFOUND);
    pair_close(&p);
    assert_int_equal(pair_open(&p, g_dir, NULL, NULL), 0);
    assert_int_equal(tls_peer_cn(p.srv, cn, sizeof cn), UVMQ_ENOTFOUND);
    pair_close(&p);
}

static void expired_and_untrusted_client_certificates_fail_with_the_reason(void **state)
{
    pair_t p;
    (void)state;
    assert_int_equal(pair_open(&p, g_dir, "expired", NULL), -1);
    assert_non_null(strstr(tls_strerror(), "TLS handshake failed: certificate verify failed "
                                            "(certificate has expired)"));
    assert_true(tls_has_output(p.srv)); /* the alert for the client */
    pair_close(&p);
    assert_int_equal(pair_open(&p, g_dir, "rogue", NULL), -1);
    assert_non_null(strstr(tls_strerror(), "unable to get local issuer certificate"));
    pair_close(&p);
}

static void a_context_names_the_key_and_the_file_it_cannot_use(void **state)
{
    char cert[128], key[128], other[128], err[400];
    tls_config_t cfg = {.min_version = TLS_MIN_1_2};
    tls_ctx_t *c = NULL;
    (void)state;
    snprintf(cert, sizeof cert, "%s/server.crt", g_dir);
    snprintf(key, sizeof key, "%s/client.key", g_dir);
    snprintf(other, sizeof other, "%s/missing.pem", g_dir);
    cfg.cert = cert;
    cfg.key = key;
    assert_int_equal(tls_ctx_create(&c, &cfg, "", 0, 0, err, sizeof err), UVMQ_ECONFIG);
    assert_null(c);
    assert_non_null(strstr(err, "key: cannot use the private key in \""));
    assert_non_null(strstr(err, "client.key\": key values mismatch"));
    cfg.key = other;
    assert_int_equal(tls_ctx_create(&c, &cfg, "", 0, 0, err, sizeof err), UVMQ_ECONFIG);
    assert_non_null(strstr(err, "key: cannot read \""));
    assert_non_null(strstr(err, "missing.pem\": No such file or directory"));
    cfg.key = cert; /* a certificate is not a key */
    assert_int_equal(tls_ctx_create(&c, &cfg, "", 0, 0, err, sizeof err), UVMQ_ECONFIG);
    assert_non_null(strstr(err, "key: cannot use the private key in"));
    snprintf(key, sizeof key, "%s/server.key", g_dir);
    cfg.key = key;
    cfg.ciphers = "NO-SUCH-CIPHER";
    assert_int_equal(tls_ctx_create(&c, &cfg, "", 0, 0, err, sizeof err), UVMQ_ECONFIG);
    assert_non_null(strstr(err, "ciphers: no usable TLS 1.2 cipher in \"NO-SUCH-CIPHER\""));
    cfg.ciphers = NULL;
    assert_int_equal(tls_ctx_create(&c, &cfg, "", 0, 0, err, sizeof err), 0);
    tls_ctx_release(&c);
    assert_null(c);
}

static void a_quiet_session_frees_openssl_buffers_and_a_busy_one_keeps_them(void **state)
{
    pair_t *p = *state;
    uint8_t buf[64];
    size_t n = 0, len = 0, sizes[] = {10};
    int64_t quiet, busy;
    tls_sweep(p->srv);
    tls_sweep(p->srv); /* quiet since the last sweep */
    quiet = pair_ossl_live;
    assert_int_equal(SSL_write_ex(p->cli, "ping", 4, &n), 1);
    n = 0;
    assert_int_equal(pair_client_out(p, buf, &n, sizeof buf), TLS_WANT_READ);
    assert_int_equal(pair_ossl_live, quiet); /* released after the read */
    tls_sweep(p->srv);                      /* used: busy from now on */
    assert_int_equal(pass_of(p, sizes, 1, buf, &len), 0);
    busy = pair_ossl_live;
    assert_true(busy >= quiet + 16 * 1024); /* the write buffer stays */
    uint64_t allocs = pair_ossl_allocs;
    assert_int_equal(pass_of(p, sizes, 1, buf, &len), 0);
    assert_true(pair_ossl_allocs - allocs < 8); /* AEAD's own, not buffers */
    tls_sweep(p->srv);
    tls_sweep(p->srv); /* a quiet second: released */
    assert_true(pair_ossl_live <= quiet);
    assert_int_equal(pass_of(p, sizes, 1, buf, &len), 0); /* and they come back */
}

/* Replaces p's server with one made from server.{crt,key} and the
 * settings of cfg (cert and key filled in here). */
static void replace_server(pair_t *p, tls_config_t cfg)
{
    char cert[128], key[128], err[400];
    snprintf(cert, sizeof cert, "%s/server.crt", g_dir);
    snprintf(key, sizeof key, "%s/server.key", g_dir);
    cfg.cert = cert;
    cfg.key = key;
    tls_destroy(p->srv);
    tls_ctx_release(&p->sctx);
    assert_int_equal(
        tls_ctx_create(&p->sctx, &cfg, TLS_ALPN_MQTT, sizeof TLS_ALPN_MQTT - 1, 0, err, sizeof err),
        0);
    p->srv = tls_create(p->sctx);
}

static void min_version_1_3_refuses_a_tls_1_2_client(void **state)
{
    pair_t p;
    (void)state;
    assert_int_equal(pair_start(&p, g_dir, NULL, NULL), 0);
    replace_server(&p, (tls_config_t){.min_version = TLS_MIN_1_3});
    SSL_set_max_proto_version(p.cli, TLS1_2_VERSION);
    assert_int_equal(pair_handshake(&p), -1);
    assert_non_null(strstr(tls_strerror(), "TLS handshake failed: unsupported protocol"));
    pair_close(&p);
    assert_int_equal(pair_start(&p, g_dir, NULL, NULL), 0); /* the default takes 1.2 */
    SSL_set_max_proto_version(p.cli, TLS1_2_VERSION);
    assert_int_equal(pair_handshake(&p), 0);
    pair_close(&p);
}

static void ciphers_and_ciphersuites_limit_what_is_agreed(void **state)
{
    pair_t p;
    char d[96];
    (void)state;
    /* TLS 1.2: only the listed cipher; a client without it fails. */
    assert_int_equal(pair_start(&p, g_dir, NULL, NULL), 0);
    replace_server(
        &p, (tls_config_t){.min_version = TLS_MIN_1_2, .ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256"});
    SSL_set_max_proto_version(p.cli, TLS1_2_VERSION);
    SSL_set_cipher_list(p.cli, "ECDHE-ECDSA-CHACHA20-POLY1305");
    assert_int_equal(pair_handshake(&p), -1);
    assert_non_null(strstr(tls_strerror(), "no shared cipher"));
    pair_close(&p);
    assert_int_equal(pair_start(&p, g_dir, NULL, NULL), 0);
    replace_server(
        &p, (tls_config_t){.min_version = TLS_MIN_1_2, .ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256"});
    SSL_set_max_proto_version(p.cli, TLS1_2_VERSION);
    assert_int_equal(pair_handshake(&p), 0);
    tls_describe(p.srv, d, sizeof d);
    assert_string_equal(d, "TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256");
    pair_close(&p);
    /* TLS 1.3: the suites. */
    assert_int_equal(pair_start(&p, g_dir, NULL, NULL), 0);
    replace_server(&p, (tls_config_t){.min_version = TLS_MIN_1_3,
                                      .ciphersuites = "TLS_CHACHA20_POLY1305_SHA256"});
    assert_int_equal(pair_handshake(&p), 0);
    tls_describe(p.srv, d, sizeof d);
    assert_string_equal(d, "TLSv1.3 TLS_CHACHA20_POLY1305_SHA256");
    pair_close(&p);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(handshake_completes_and_selects_alpn_mqtt),
        cmocka_unit_test(a_client_offering_other_protocols_goes_on_without_alpn),
        cmocka_unit_test(an_http_context_selects_h2),
        cmocka_unit_test(an_http_context_refuses_a_client_whose_alpn_lacks_h2),
        cmocka_unit_test(an_http_context_lets_a_client_without_alpn_finish_unselected),
        T(small_pieces_are_gathered_into_one_record),
        T(small_pieces_fill_records_of_16_kib),
        T(a_large_piece_is_encrypted_in_place_after_the_staged_ones),
        T(a_single_small_piece_is_not_copied_into_the_stage),
        T(passes_reuse_the_callers_array_and_allocate_nothing),
        cmocka_unit_test(handshake_output_goes_out_before_the_next_pass),
        T(plaintext_on_a_tls_port_is_refused_at_once),
        T(records_split_into_single_bytes_decrypt),
        T(close_notify_follows_the_last_data),
        T(a_quiet_session_frees_openssl_buffers_and_a_busy_one_keeps_them),
        cmocka_unit_test(the_client_certificate_cn_is_read),
        cmocka_unit_test(expired_and_untrusted_client_certificates_fail_with_the_reason),
        cmocka_unit_test(a_context_names_the_key_and_the_file_it_cannot_use),
        cmocka_unit_test(min_version_1_3_refuses_a_tls_1_2_client),
        cmocka_unit_test(ciphers_and_ciphersuites_limit_what_is_agreed),
    };
    if (pair_count_openssl() != 0) return 1;
    return cmocka_run_group_tests_name("unit/tls/tls", tests, group_setup, group_teardown);
}

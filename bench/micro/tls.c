/*
 * bench/micro/tls.c - the TLS write pass in process: a connection's
 * out-batch encrypted by conn_tls__encrypt (one pass: small pieces
 * gathered into full records, large ones encrypted in place, references
 * released as the pass goes) against the simple path (one SSL_write_ex
 * per batch entry, or per MQTT packet, then the write completion's
 * release loop). No sockets: the server session and an OpenSSL client on
 * memory BIOs shake hands in process (tests/tls_pair.h) with certificates
 * made in a temp dir; the ciphertext is dropped after each pass (the
 * client decrypts one pass per case first, to prove it is right).
 *
 * Cases: 3-byte payloads (1 message per pass: the single small record;
 * 32 per pass as one merged entry; 32 per pass as 32 entries), 16 KiB and
 * 64 KiB payloads (1 and 4 per pass). Prints ns per message, records per
 * pass and allocations per pass (ours through xmalloc, OpenSSL's through
 * CRYPTO_set_mem_functions), medians of ROUNDS alternating rounds, plus
 * the pass with SSL_MODE_RELEASE_BUFFERS set (OpenSSL frees its buffers
 * after every write) to show what that mode costs. Last, the OpenSSL heap
 * one server session holds once connected: quiet (buffers released, as
 * tls_sweep leaves an idle connection) and busy (buffers kept). Run it
 * pinned (taskset -c 1). Usage: tls [scale [case method]] (default scale
 * 1: ~15 s). With a case and a method (indexes from 0, as printed) only
 * that one runs: for instruction counts under callgrind, whose
 * --toggle-collect=conn_tls__encrypt --toggle-collect=simple counts the
 * passes alone (docs/tls.md has the command).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "broker/alias_int.h"
#include "broker/auth_int.h"
#include "broker/broker_int.h"
#include "broker/chunk_int.h"
#include "broker/conn_int.h"
#include "broker/conn_tls_int.h"
#include "broker/connect_int.h"
#include "broker/deliver_int.h"
#include "broker/inbox_int.h"
#include "broker/interest_int.h"
#include "broker/listener_int.h"
#include "broker/loop_int.h"
#include "broker/mqtt_int.h"
#include "broker/persist_int.h"
#include "broker/publish_int.h"
#include "broker/recover_int.h"
#include "broker/sess_int.h"
#include "broker/share_int.h"
#include "broker/subscribe_int.h"
#include "broker/sys_int.h"
#include "broker/throttle_int.h"
#include "tls/tls.c" /* the SSL of a tls_t, for SSL_MODE_RELEASE_BUFFERS */
#include "common/log.h"
#include "common/xmalloc.h"
#include "tests/tls_pair.h"

#define ROUNDS       5
#define SEPARATE_MAX 32

static int g_case = -1, g_method = -1; /* run only these (>= 0) */

typedef struct bench_s {
    pair_t p;
    broker_config_t cfg;
    broker_t b;
    loop_t l;
    conn_t c;
    uint8_t *stage;     /* the simple path's: TLS_RECORD_MAX bytes */
    uint8_t *out;       /* the simple path's ciphertext */
    size_t out_len, out_cap;
    const uint8_t *wire; /* the last pass's ciphertext, either path */
    size_t wire_len;
    uint8_t small_bytes[SEPARATE_MAX][16]; /* 3-byte PUBLISH packets */
} bench_t;

typedef struct bcase_s {
    const char *name;
    size_t payload;
    int per_pass;
    int separate; /* small packets as separate entries */
    int passes;   /* at scale 1 */
} bcase_t;

enum { M_PASS, M_ENTRY, M_MESSAGE, M_RELEASE, N_METHODS };
static const char *const method_names[] = {"pass", "per entry", "per message",
                                           "pass+RELEASE_BUFFERS"};

/* Fills c's pending batch with one pass worth of messages of case k. */
static void fill(bench_t *x, const bcase_t *k, msg_t *m)
{
    conn_t *c = &x->c;
    if (k->separate) {
        out_batch_t *b = c->batch != NULL ? c->batch : conn__out_attach(c);
        for (int i = 0; i < k->per_pass; i++) {
            if (b->n == b->cap) conn__batch_grow(b);
            b->v[b->n++] = (out_ent_t){.base = x->small_bytes[i], .len = 10};
            b->bytes += 10;
            c->unsent += 10;
        }
        return;
    }
    for (int i = 0; i < k->per_pass; i++)
        if (conn__send_publish(c, m, 0, 0, 0, 0, NULL, 0) != 0) abort();
}

/* The simple path: one SSL_write_ex per entry (or per MQTT packet, each
 * packet being plen bytes), then the write completion's release loop. */
__attribute__((noinline)) static int simple(bench_t *x, int per_message, size_t plen)
{
    conn_t *c = &x->c;
    out_batch_t *b = c->batch;
    tls_pass_t pass;
    x->out_len = 0;
    tls_pass_begin(&pass, x->p.srv, x->stage, &x->out, &x->out_len, &x->out_cap);
    for (uint32_t i = 0; i < b->n; i++) {
        const out_ent_t *e = &b->v[i];
        const uint8_t *p = e->base != NULL ? e->base : b->scratch + e->off;
        size_t step = per_message && plen < e->len ? plen : e->len;
        for (size_t off = 0; off < e->len; off += step)
            tls_pass_put(&pass, p + off, e->len - off < step ? e->len - off : step, 0);
    }
    int rc = tls_pass_end(&pass);
    c->unsent -= b->bytes;
    conn__batch_reset(b); /* what on_write does for a plain connection */
    x->wire = x->out;
    x->wire_len = x->out_len;
    return rc;
}

/* Runs n passes of case k with method; returns ns per message and sets
 * *records (per pass) and *allocs (ours + OpenSSL's, per pass; ours
 * alone in *ours). */
static double run(bench_t *x, const bcase_t *k, int method, int n, msg_t *m, double *records,
                  double *allocs, double *ours)
{
    conn_t *c = &x->c;
    uint64_t t = 0, recs = 0, a0 = xmalloc_count(), o0 = pair_ossl_allocs;
    size_t plen = k->separate ? 10 : conn__publish_size(c, m, 0, NULL, 0);
    SSL_set_mode(x->p.srv->ssl, method == M_RELEASE ? SSL_MODE_RELEASE_BUFFERS : 0);
    if (method != M_RELEASE) SSL_clear_mode(x->p.srv->ssl, SSL_MODE_RELEASE_BUFFERS);
    for (int i = 0; i < n; i++) {
        fill(x, k, m);
        uint64_t t0 = uv_hrtime();
        int rc = method == M_PASS || method == M_RELEASE
                     ? conn_tls__encrypt(c, x->p.srv, &x->wire, &x->wire_len)
                     : simple(x, method == M_MESSAGE, plen);
        t += uv_hrtime() - t0;
        if (rc != 0) abort();
        if (i == 0) recs = (uint64_t)pair_records(x->wire, x->wire_len);
        c->unsent = 0; /* the ciphertext is dropped */
    }
    *records = (double)recs;
    *allocs = (double)(xmalloc_count() - a0 + pair_ossl_allocs - o0) / n;
    *ours = (double)(xmalloc_count() - a0) / n;
    return (double)t / n / k->per_pass;
}

/* The client must decrypt one pass of case k to exactly the batch. */
static void check(bench_t *x, const bcase_t *k, msg_t *m)
{
    conn_t *c = &x->c;
    size_t len;
    int closed = 0;
    fill(x, k, m);
    len = c->batch->bytes;
    uint8_t *want = malloc(len), *got = malloc(len + 1);
    size_t off = 0;
    for (uint32_t i = 0; i < c->batch->n; i++) {
        const out_ent_t *e = &c->batch->v[i];
        memcpy(want + off, e->base != NULL ? e->base : c->batch->scratch + e->off, e->len);
        off += e->len;
    }
    if (conn_tls__encrypt(c, x->p.srv, &x->wire, &x->wire_len) != 0 ||
        pair_client_read(&x->p, x->wire, x->wire_len, got, len + 1, &closed) != (long)len ||
        memcmp(got, want, len) != 0) {
        fprintf(stderr, "tls: %s: the client does not read back the batch\n", k->name);
        exit(1);
    }
    c->unsent = 0;
    free(want);
    free(got);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void bench_case(bench_t *x, const bcase_t *k, double scale, const char *dir)
{
    static uint8_t payload[64 * 1024];
    double ns[N_METHODS][ROUNDS], recs[N_METHODS], allocs[N_METHODS], ours[N_METHODS];
    int n = (int)(k->passes * scale);
    msg_t *m = msg_create("bench/tls", 9, payload, k->payload, NULL, 0, 0, 0, 1u << 20,
                          sizeof(msg_state_t));
    /* A fresh session per case: the client reads the first pass. */
    pair_close(&x->p);
    if (pair_open(&x->p, dir, NULL, NULL) != 0) exit(1);
    check(x, k, m);
    memset(ns, 0, sizeof ns);
    memset(recs, 0, sizeof recs);
    memset(allocs, 0, sizeof allocs);
    memset(ours, 0, sizeof ours);
    for (int r = 0; r < ROUNDS; r++)
        for (int mt = 0; mt < N_METHODS; mt++)
            if (g_method < 0 || mt == g_method)
                ns[mt][r] = run(x, k, mt, n < 1 ? 1 : n, m, &recs[mt], &allocs[mt], &ours[mt]);
    printf("%-28s", k->name);
    for (int mt = 0; mt < N_METHODS; mt++) {
        qsort(ns[mt], ROUNDS, sizeof ns[mt][0], cmp_double);
        printf(" | %7.0f %4.0f %4.1f/%.0f", ns[mt][ROUNDS / 2], recs[mt], allocs[mt], ours[mt]);
    }
    printf("\n");
    msg_release(&m);
}

/* Bytes of OpenSSL heap a connected server session holds: quiet (as
 * tls_sweep leaves an idle one) or busy (read and write buffers kept). */
static int64_t session_bytes(const char *dir, int busy)
{
    pair_t p;
    uint8_t plain[64];
    size_t n = 0, sizes = 10;
    if (pair_open(&p, dir, NULL, NULL) != 0) exit(1);
    tls_sweep(p.srv);
    tls_sweep(p.srv); /* quiet: released */
    if (busy) {
        tls_pass_t pass;
        SSL_write_ex(p.cli, "ping", 4, &n);
        n = 0;
        pair_client_out(&p, plain, &n, sizeof plain); /* a read */
        tls_sweep(p.srv);                            /* busy: kept from now */
        SSL_write_ex(p.cli, "ping", 4, &n);
        n = 0;
        pair_client_out(&p, plain, &n, sizeof plain);
        tls_pass_begin(&pass, p.srv, p.stage, &p.wire, &p.wire_len, &p.wire_cap);
        tls_pass_put(&pass, plain, sizes, 0);
        tls_pass_end(&pass);
    }
    int64_t before = pair_ossl_live;
    tls_destroy(p.srv);
    p.srv = NULL;
    int64_t held = before - pair_ossl_live;
    pair_close(&p);
    return held;
}

static void setup(bench_t *x, const char *dir)
{
    log_set_level(LOG_ERROR);
    if (pki_make_set(dir) != 0 || pair_open(&x->p, dir, NULL, NULL) != 0) {
        fprintf(stderr, "tls: cannot set up the TLS pair\n");
        exit(1);
    }
    broker_config_init(&x->cfg);
    x->b.cfg = &x->cfg;
    x->l.b = &x->b;
    x->stage = xmalloc(TLS_RECORD_MAX);
    x->c.loop = &x->l;
    x->c.version = PKT_V311;
    x->c.state = CONN_ACTIVE;
    x->c.peer_max_packet = UINT32_MAX;
    for (int i = 0; i < SEPARATE_MAX; i++) /* 30 08 00 03 "a/b" "xyz" */
        memcpy(x->small_bytes[i],
               "\x30\x08\x00\x03"
               "a/b"
               "xyz",
               10);
}

int main(int argc, char **argv)
{
    static const bcase_t cases[] = {
        {"3 B x1 (single record)", 3, 1, 0, 200000},
        {"3 B x32, one entry", 3, 32, 0, 20000},
        {"3 B x32, 32 entries", 3, 32, 1, 20000},
        {"16 KiB x1", 16384, 1, 0, 20000},
        {"16 KiB x4", 16384, 4, 0, 5000},
        {"64 KiB x1", 65536, 1, 0, 5000},
        {"64 KiB x4", 65536, 4, 0, 1250},
    };
    double scale = argc > 1 ? strtod(argv[1], NULL) : 1.0;
    if (argc > 3) {
        g_case = atoi(argv[2]);
        g_method = atoi(argv[3]);
    }
    char dir[] = "/tmp/uvmq-tls-bench-XXXXXX";
    bench_t *x = calloc(1, sizeof *x);
    pair_count_openssl();
    if (x == NULL || mkdtemp(dir) == NULL) return 1;
    setup(x, dir);
    printf("tls write pass: ns per message | records per pass | allocations per pass, "
           "all/ours (medians of %d rounds)\n",
           ROUNDS);
    printf("%-28s", "case");
    for (int mt = 0; mt < N_METHODS; mt++)
        printf(" | %-20s", method_names[mt]);
    printf("\n");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (g_case < 0 || (size_t)g_case == i) bench_case(x, &cases[i], scale, dir);
    printf("one connected server session holds %lld B of OpenSSL heap when quiet "
           "(buffers released), %lld B when busy (buffers kept)\n",
           (long long)session_bytes(dir, 0), (long long)session_bytes(dir, 1));
    if (x->c.out != NULL) conn__out_free(x->c.out);
    free(x->stage);
    free(x->out);
    conn_tls__loop_dispose(&x->l);
    pair_close(&x->p);
    broker_config_dispose(&x->cfg);
    msg_pool_drain();
    free(x);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}

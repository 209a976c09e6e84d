/*
 * bench/micro/deliver.c - the fan-out path in process: one QoS 0 64-byte
 * message to 1,000 subscribers' out-batches through deliver__publish
 * (router match + the small QoS 0 fan-out path), no sockets.
 *
 * 1,000 real conn_t/sess_t pairs are attached to one hand-built loop whose
 * flush hook never runs; after each message their batches are reset as a
 * write completion would (releasing the message references), timed apart.
 * Prints ns per message (all 1,000 deliveries), allocations per message
 * (xmalloc_count delta) after a warm-up, and the iovec entries and message
 * references a delivery leaves in its batch (a small message is shared
 * whole from a loop chunk: 1 entry, 0 message references, one plain
 * chunk reference). Run it pinned (taskset -c 1): this VM's timings
 * vary by 20 % from run to run. Target: < 10 us, 0.
 * Exits 1 if the timed loop allocated. Usage: deliver [messages]
 * (default 10,000).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
#include "common/log.h"
#include "common/xmalloc.h"

#define SUBSCRIBERS 1000
#define WARMUP 200
#define PAYLOAD 64

typedef struct bench_s {
    broker_config_t cfg;
    broker_t b;
    loop_t l;
    conn_t *conns[SUBSCRIBERS];
    sess_t *sess[SUBSCRIBERS];
} bench_t;

/* One loop, no thread, no uv handles: only what delivery touches. */
static void setup(bench_t *x)
{
    int existed = 0;
    broker_config_init(&x->cfg);
    x->b.cfg = &x->cfg;
    x->b.loops = &x->l;
    x->b.n_loops = 1; /* forward() skips the loop itself */
    x->b.retained = router_retained_create();
    pthread_mutex_init(&x->b.retained_lock, NULL);
    loop__state_init(&x->l, &x->b, 0);
    x->l.router = router_create();
    router_hits_init(&x->l.hits);
    for (int i = 0; i < SUBSCRIBERS; i++) {
        char id[32];
        snprintf(id, sizeof id, "sub-%d", i);
        sess_t *s = sess__create(id, strlen(id), &x->cfg);
        conn_t *c = xcalloc(1, sizeof *c);
        c->loop = &x->l;
        c->version = i % 2 ? PKT_V5 : PKT_V311; /* both cached heads */
        c->state = CONN_ACTIVE;
        c->peer_max_packet = UINT32_MAX;
        c->sess = s;
        s->conn = c;
        router_subscribe(x->l.router, "bench/fan", 9, s, 0, 0, &existed);
        x->conns[i] = c;
        x->sess[i] = s;
    }
}

/* Entries and references the timed deliveries left (all messages). */
static uint64_t n_entries, n_refs;

/* What on_write does for each connection: release and reuse the batch. */
static void reset_batches(bench_t *x)
{
    for (int i = 0; i < SUBSCRIBERS; i++) {
        conn_t *c = x->conns[i];
        if (c->out == NULL) continue;
        out_batch_t *b = &c->out->batch[c->pend];
        n_entries += b->n;
        for (size_t k = 0; k < b->n; k++) n_refs += b->v[k].ref != NULL;
        conn__batch_reset(b);
        c->unsent = 0;
        c->dirty = 0;
        c->dirty_next = NULL;
    }
    x->l.dirty = NULL;
}

static void teardown(bench_t *x)
{
    for (int i = 0; i < SUBSCRIBERS; i++) {
        conn_t *c = x->conns[i];
        if (c->out != NULL) conn__out_free(c->out);
        free(c);
        x->sess[i]->conn = NULL;
        sess__destroy(&x->l, x->sess[i]);
    }
    router_destroy(x->l.router);
    router_hits_dispose(&x->l.hits);
    loop__state_dispose(&x->l);
    router_retained_destroy(x->b.retained, NULL, NULL);
    pthread_mutex_destroy(&x->b.retained_lock);
    broker_config_dispose(&x->cfg);
    msg_pool_drain();
}

/* Publishes n messages; returns the ns spent in deliver__publish. */
static uint64_t run(bench_t *x, size_t n, uint64_t *reset_ns)
{
    uint8_t payload[PAYLOAD];
    uint64_t pub = 0, rst = 0;
    memset(payload, 'x', sizeof payload);
    for (size_t i = 0; i < n; i++) {
        uint64_t t0 = uv_hrtime();
        msg_t *m = msg_create("bench/fan", 9, payload, sizeof payload, NULL, 0, 0, 0,
                              1u << 20, sizeof(msg_state_t));
        size_t hits = deliver__publish(&x->l, m);
        msg_release(&m);
        uint64_t t1 = uv_hrtime();
        reset_batches(x);
        rst += uv_hrtime() - t1;
        pub += t1 - t0;
        if (hits != SUBSCRIBERS) {
            fprintf(stderr, "expected %d hits, got %zu\n", SUBSCRIBERS, hits);
            exit(1);
        }
    }
    *reset_ns = rst;
    return pub;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 10000;
    bench_t *x = xcalloc(1, sizeof *x);
    uint64_t rst = 0;
    log_set_level(LOG_ERROR);
    setup(x);
    run(x, WARMUP, &rst);
    uint64_t allocs = xmalloc_count();
    n_entries = n_refs = 0;
    uint64_t ns = run(x, n, &rst);
    allocs = xmalloc_count() - allocs;
    printf("deliver: %d QoS 0 subscribers, %d-byte payload, %zu messages\n",
           SUBSCRIBERS, PAYLOAD, n);
    printf("  publish (match + 1,000 deliveries): %.0f ns/message, %.1f ns/delivery\n",
           (double)ns / (double)n, (double)ns / (double)n / SUBSCRIBERS);
    printf("  batch reset (write completion):     %.0f ns/message\n",
           (double)rst / (double)n);
    printf("  allocations: %llu total, %.3f per message\n",
           (unsigned long long)allocs, (double)allocs / (double)n);
    printf("  per delivery: %.2f iovec entries, %.2f message references\n",
           (double)n_entries / (double)n / SUBSCRIBERS,
           (double)n_refs / (double)n / SUBSCRIBERS);
    printf("  target < 10000 ns/message: %s\n",
           (double)ns / (double)n < 10000.0 ? "met" : "MISSED");
    teardown(x);
    free(x);
    return allocs == 0 ? 0 : 1; /* allocating per delivery is a bug */
}

/*
 * bench/micro/share.c - what a shared subscription costs a publish: the
 * registry's lock, the match on the groups' router and one pick per
 * matching group (broker/share.c share__publish), no sockets.
 *
 * GROUPS groups ("$share/g<i>/t/<i>") of MEMBERS offline sessions each,
 * half of them owned by each of two hand-built loops. A publish on
 * "t/<k>" matches one group; its member is picked round robin, and a
 * member of the other loop gets an ITEM_SHARE in the publishing loop's
 * outbox (dropped, as if run, every 256 publishes; QoS 0, so the offline
 * member of this loop drops it too). Prints ns per publish with one
 * publishing thread, then per publish with two threads publishing at
 * once (each on its own loop: the registry's mutex is contended). Run it
 * pinned (taskset -c 0,1). Usage: share [publishes per thread] (default
 * 200,000).
 */
#include <pthread.h>
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

#define GROUPS 100
#define MEMBERS 8
#define DROP_EVERY 256

typedef struct bench_s {
    broker_config_t cfg;
    broker_t b;
    loop_t l[2];
    sess_t *sess[GROUPS * MEMBERS];
    msg_t *m[GROUPS];
    long n;
} bench_t;

typedef struct worker_s {
    bench_t *x;
    unsigned loop;
    uint64_t ns;
} worker_t;

static void setup(bench_t *x)
{
    char id[32], f[64], topic[32];
    broker_config_init(&x->cfg);
    x->cfg.throttle_publishers = 0;
    x->b.cfg = &x->cfg;
    x->b.loops = x->l;
    x->b.n_loops = 2;
    x->b.share = share__create(SHARE_ROUND_ROBIN);
    for (unsigned i = 0; i < 2; i++) {
        loop__state_init(&x->l[i], &x->b, i);
        x->l[i].router = router_create();
        router_hits_init(&x->l[i].hits);
        x->l[i].out = calloc(2, sizeof *x->l[i].out);
    }
    for (int g = 0; g < GROUPS; g++) {
        snprintf(f, sizeof f, "$share/g%d/t/%d", g, g);
        for (int k = 0; k < MEMBERS; k++) {
            int i = g * MEMBERS + k, existed = 0;
            snprintf(id, sizeof id, "s%d", i);
            sess_t *s = x->sess[i] = sess__create(id, strlen(id), &x->cfg);
            s->loop = &x->l[k & 1];
            interest__subscribe(s->loop, s, f, strlen(f), 0, 0, &existed);
        }
        snprintf(topic, sizeof topic, "t/%d", g);
        x->m[g] = msg_create(topic, strlen(topic), (const uint8_t *)"payload", 7, NULL, 0, 0, 0,
                             1024, sizeof(msg_state_t));
    }
}

static void teardown(bench_t *x)
{
    for (int i = 0; i < GROUPS * MEMBERS; i++) sess__destroy(x->sess[i]->loop, x->sess[i]);
    for (int g = 0; g < GROUPS; g++) msg_release(&x->m[g]);
    for (unsigned i = 0; i < 2; i++) {
        for (unsigned j = 0; j < 2; j++) {
            inbox__drop_items(&x->l[i].out[j]);
            inbox__items_dispose(&x->l[i].out[j]);
        }
        free(x->l[i].out);
        loop__state_dispose(&x->l[i]);
        router_destroy(x->l[i].router);
        router_hits_dispose(&x->l[i].hits);
    }
    share__destroy(x->b.share);
    broker_config_dispose(&x->cfg);
}

static void *run(void *arg)
{
    worker_t *w = arg;
    loop_t *l = &w->x->l[w->loop];
    uint64_t t0 = uv_hrtime();
    for (long i = 0; i < w->x->n; i++) {
        share__publish(l, w->x->m[i % GROUPS]);
        if (i % DROP_EVERY == DROP_EVERY - 1) inbox__drop_items(&l->out[!w->loop]);
    }
    w->ns = uv_hrtime() - t0;
    inbox__drop_items(&l->out[!w->loop]);
    return NULL;
}

int main(int argc, char **argv)
{
    static bench_t x;
    log_set_level(LOG_ERROR);
    x.n = argc > 1 ? atol(argv[1]) : 200000;
    setup(&x);
    worker_t one = {&x, 0, 0};
    run(&one);
    printf("shared publish, 1 thread:  %6.1f ns/publish (%d groups of %d members)\n",
           (double)one.ns / (double)x.n, GROUPS, MEMBERS);
    worker_t w[2] = {{&x, 0, 0}, {&x, 1, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, run, &w[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    printf("shared publish, 2 threads: %6.1f ns/publish per thread (one lock)\n",
           (double)(w[0].ns + w[1].ns) / 2.0 / (double)x.n);
    teardown(&x);
    msg_pool_drain();
    return 0;
}

/*
 * bench/micro/router_lock.c - why each worker loop has its own router:
 * router_match under a shared pthread rwlock versus per-thread routers.
 *
 * Shared: one router of SUBS subscriptions; MATCHERS threads each take the
 * read lock around router_match while one more thread subscribes and
 * unsubscribes under the write lock without pause (a busy broker's
 * SUBSCRIBE traffic). Per-loop: each matcher owns a router holding its
 * share (SUBS / MATCHERS) and matches it with no lock, while the churn
 * thread works on a router of its own. A publish costs one match in the
 * shared scheme and one match per loop with subscriptions in the per-loop
 * scheme, so both per-match and per-publish (x MATCHERS) costs are
 * printed, in CPU ns of the matching threads (lock waits that spin count,
 * sleeping in the lock does not). Usage: router_lock [seconds per case]
 * (default 2).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "router/router.h"

#define SUBS 20000
#define MATCHERS 2
#define TOPICS 1024

typedef struct shared_s {
    router_t *rt[MATCHERS + 1]; /* per-loop: one each; shared: all rt[0] */
    pthread_rwlock_t lock;
    int use_lock;
    atomic_int stop;
    char subs[SUBS];            /* subscriber identities */
} shared_t;

typedef struct worker_s {
    shared_t *sh;
    int index;
    uint64_t matches;
    uint64_t ns;
} worker_t;

/* CPU time of the calling thread: the box may have fewer cores than the
 * 3 threads, and wall time would count the waits for a core. */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *matcher(void *arg)
{
    worker_t *w = arg;
    shared_t *sh = w->sh;
    router_t *rt = sh->use_lock ? sh->rt[0] : sh->rt[w->index];
    router_hits_t h;
    char topic[48];
    router_hits_init(&h);
    uint64_t t0 = now_ns();
    for (uint32_t i = 0; !atomic_load_explicit(&sh->stop, memory_order_relaxed); i++) {
        int len = snprintf(topic, sizeof topic, "dev/%u/temp", (i * 7919u) % SUBS);
        if (sh->use_lock) pthread_rwlock_rdlock(&sh->lock);
        router_match(rt, topic, (size_t)len, NULL, &h);
        if (sh->use_lock) pthread_rwlock_unlock(&sh->lock);
        w->matches++;
    }
    w->ns = now_ns() - t0;
    router_hits_dispose(&h);
    return NULL;
}

static void *churn(void *arg)
{
    worker_t *w = arg;
    shared_t *sh = w->sh;
    router_t *rt = sh->use_lock ? sh->rt[0] : sh->rt[MATCHERS];
    char f[48];
    int existed = 0;
    for (uint32_t i = 0; !atomic_load_explicit(&sh->stop, memory_order_relaxed); i++) {
        int len = snprintf(f, sizeof f, "churn/%u/+", i % 512);
        if (sh->use_lock) pthread_rwlock_wrlock(&sh->lock);
        router_subscribe(rt, f, (size_t)len, &sh->subs[i % SUBS], 1, 0, &existed);
        if (sh->use_lock) pthread_rwlock_unlock(&sh->lock);
        if (sh->use_lock) pthread_rwlock_wrlock(&sh->lock);
        router_unsubscribe(rt, f, (size_t)len, &sh->subs[i % SUBS]);
        if (sh->use_lock) pthread_rwlock_unlock(&sh->lock);
        w->matches++;
    }
    return NULL;
}

/* Subscribes "dev/<i>/temp" and "dev/<i>/+" for each i, spread over the
 * routers (per-loop) or all in rt[0] (shared). */
static void build(shared_t *sh)
{
    char f[48];
    int existed = 0;
    for (int i = 0; i < SUBS; i++) {
        router_t *rt = sh->use_lock ? sh->rt[0] : sh->rt[i % MATCHERS];
        int len = snprintf(f, sizeof f, i % 2 ? "dev/%d/+" : "dev/%d/temp", i);
        router_subscribe(rt, f, (size_t)len, &sh->subs[i], 1, 0, &existed);
    }
}

/* Runs one case; returns ns per match across the matchers. */
static double run_case(int use_lock, unsigned seconds, uint64_t *churned)
{
    shared_t *sh = calloc(1, sizeof *sh);
    pthread_t t[MATCHERS + 1];
    worker_t w[MATCHERS + 1];
    uint64_t matches = 0, ns = 0;
    sh->use_lock = use_lock;
    pthread_rwlock_init(&sh->lock, NULL);
    for (int i = 0; i <= MATCHERS; i++) sh->rt[i] = router_create();
    build(sh);
    for (int i = 0; i <= MATCHERS; i++) {
        w[i] = (worker_t){.sh = sh, .index = i};
        pthread_create(&t[i], NULL, i < MATCHERS ? matcher : churn, &w[i]);
    }
    struct timespec d = {.tv_sec = seconds};
    nanosleep(&d, NULL);
    atomic_store(&sh->stop, 1);
    for (int i = 0; i <= MATCHERS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < MATCHERS; i++) {
        matches += w[i].matches;
        ns += w[i].ns;
    }
    *churned = w[MATCHERS].matches;
    for (int i = 0; i <= MATCHERS; i++) router_destroy(sh->rt[i]);
    pthread_rwlock_destroy(&sh->lock);
    free(sh);
    return (double)ns / (double)matches;
}

int main(int argc, char **argv)
{
    unsigned seconds = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
    uint64_t c1 = 0, c2 = 0;
    double shared = run_case(1, seconds, &c1);
    double per_loop = run_case(0, seconds, &c2);
    printf("router_lock: %d subscriptions, %d matching threads + 1 subscribing, %u s each\n",
           SUBS, MATCHERS, seconds);
    printf("  shared router + rwlock: %8.1f ns/match = ns/publish (%llu sub+unsub)\n",
           shared, (unsigned long long)c1);
    printf("  per-loop routers:       %8.1f ns/match, x %d loops = %.1f ns/publish "
           "(%llu sub+unsub)\n", per_loop, MATCHERS, per_loop * MATCHERS,
           (unsigned long long)c2);
    return 0;
}

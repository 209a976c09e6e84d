/*
 * bench/micro/router.c - router_match throughput on a trie of 100,000
 * subscriptions.
 *
 * Half are exact filters "bench/<i>/x", half wildcards "bench/<i>/+", each
 * for its own subscriber, so "bench" has 100,000 siblings below it. The
 * cases time router_match for an exact hit, a '+' hit, a miss and a
 * 2,000-subscriber fan-out that needs merging, and check that the timed
 * loops allocate nothing. Usage: router [matches per case] (default 2M);
 * each case also stops after 2 s, so a run stays under 10 s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "common/xmalloc.h"
#include "router/router.h"

#define NSUBS       100000
#define NTOPICS     4096
#define FANOUT      1000
#define CASE_MAX_NS 2000000000ull

typedef struct bench_case_s {
    const char *name;
    char (*topics)[32]; /* NTOPICS topics, used round-robin */
    size_t want;        /* hits expected per match */
} bench_case_t;

static uint32_t lcg(uint32_t *x)
{
    *x = *x * 1103515245u + 12345u;
    return *x >> 8;
}

static void subscribe_or_die(router_t *rt, const char *f, void *sub, uint8_t qos, uint32_t id)
{
    if (router_subscribe(rt, f, strlen(f), sub, qos, id, NULL) != 0) {
        fprintf(stderr, "subscribe %s failed\n", f);
        exit(1);
    }
}

/* Builds the 100k-subscription trie plus the fan-out filters. */
static void build(router_t *rt, char *subs, char *fan)
{
    char f[32];
    for (int i = 0; i < NSUBS; i++) {
        snprintf(f, sizeof f, i < NSUBS / 2 ? "bench/%d/x" : "bench/%d/+", i);
        subscribe_or_die(rt, f, &subs[i], 1, 0);
    }
    for (int i = 0; i < FANOUT; i++) {
        subscribe_or_die(rt, "fan/t", &fan[i], 0, 1);
        subscribe_or_die(rt, "fan/+", &fan[FANOUT + i], 1, 2);
        if (i % 4 == 0) subscribe_or_die(rt, "fan/#", &fan[i], 2, 3);
    }
}

/* Runs one case; returns 0 when every match had the expected hits. */
static int run_case(router_t *rt, const bench_case_t *bc, size_t n, router_hits_t *h)
{
    uint64_t t0, ns, allocs;
    size_t i, bad = 0, sink = 0;
    router_match(rt, bc->topics[0], strlen(bc->topics[0]), NULL, h); /* warm */
    allocs = xmalloc_count();
    t0 = uv_hrtime();
    for (i = 0; i < n; i++) {
        const char *t = bc->topics[i % NTOPICS];
        size_t got = router_match(rt, t, strlen(t), NULL, h);
        sink += got;
        bad += got != bc->want;
        if ((i & 1023) == 1023 && uv_hrtime() - t0 > CASE_MAX_NS) {
            i++;
            break;
        }
    }
    ns = uv_hrtime() - t0;
    allocs = xmalloc_count() - allocs;
    printf("%-22s %9zu matches %8.1f ns/match %12.0f matches/s "
           "%zu hits/match, %llu allocations%s\n",
           bc->name, i, (double)ns / (double)i, (double)i * 1e9 / (double)ns, i ? sink / i : 0,
           (unsigned long long)allocs, bad ? " (WRONG HIT COUNT)" : "");
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    static char subs[NSUBS], fan[2 * FANOUT];
    static char exact[NTOPICS][32], wild[NTOPICS][32], miss[NTOPICS][32], fanout[NTOPICS][32];
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000000;
    uint32_t x = 42;
    router_hits_t h;
    router_t *rt = router_create();
    int rc = 0;
    uint64_t t0 = uv_hrtime();

    build(rt, subs, fan);
    printf("built %zu subscriptions in %.1f ms\n", router_count(rt), (double)(uv_hrtime() - t0) / 1e6);
    for (int i = 0; i < NTOPICS; i++) {
        uint32_t r = lcg(&x) % (NSUBS / 2);
        snprintf(exact[i], 32, "bench/%u/x", (unsigned)r);
        snprintf(wild[i], 32, "bench/%u/y", (unsigned)(r + NSUBS / 2));
        snprintf(miss[i], 32, "bench/%u/y", (unsigned)r);
        snprintf(fanout[i], 32, "fan/t");
    }
    const bench_case_t cases[] = {
        {"exact bench/<i>/x", exact, 1},
        {"wildcard bench/<i>/+", wild, 1},
        {"miss bench/<i>/y", miss, 0},
        {"fan-out 2000 merged", fanout, 2 * FANOUT},
    };
    router_hits_init(&h);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t nc = c == 3 ? n / 1000 + 1 : n; /* fan-out is ~1000x the work */
        rc |= run_case(rt, &cases[c], nc, &h);
    }
    t0 = uv_hrtime();
    for (int i = 0; i < NSUBS; i++)
        router_unsubscribe_all(rt, &subs[i]);
    printf("unsubscribe_all of %d subscribers in %.1f ms, %zu left\n", NSUBS,
           (double)(uv_hrtime() - t0) / 1e6, router_count(rt));
    router_hits_dispose(&h);
    router_destroy(rt);
    return rc;
}

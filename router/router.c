/*
 * router.c - topic syntax checks and the subscription trie.
 *
 * A trie keyed by topic levels: each node is one level of a filter, with
 * its exact children in a hash table and its "+" and "#" children in two
 * pointers. A node stores the subscriptions whose filter ends there; each
 * subscription is also on its subscriber's list, so unsubscribing a whole
 * session costs only its own subscriptions. router_match walks the exact
 * and "+" branches of the topic and merges the hits per subscriber in
 * O(hits). Subscribe and unsubscribe cost O(levels) plus a scan of the
 * shorter of the node's subscribers and the subscriber's subscriptions.
 *
 * MATCHING RULES (MQTT 3.1.1 and 5.0 section 4.7)
 *
 * Topic names and filters are split into levels on '/'. Empty levels
 * count: "a//b" has three levels, "/a" has two (the first one empty), "/"
 * has two empty levels and "a/" has two ("a" and ""). Names and filters
 * are case-sensitive and at least one byte long [MQTT-4.7.3-1].
 *
 *   '+' matches exactly one level, which may be empty. It must be the whole
 *       level [MQTT-4.7.1-2]; it may appear at any level, several times.
 *   '#' matches its parent level and any number of child levels. It must
 *       be the whole level and the last one [MQTT-4.7.1-1].
 *   Names never contain '+' or '#' [MQTT-4.7.0-1].
 *   A topic starting with '$' is not matched by a filter whose first level
 *       is '+' or '#' [MQTT-4.7.2-1]; a filter starting with the same '$'
 *       level matches it normally.
 *
 * Matches:
 *   "sport/tennis/player1/#"  "sport/tennis/player1", ".../player1/ranking",
 *                             ".../player1/score/wimbledon"
 *   "sport/#"                 "sport", "sport/", "sport/a/b"
 *   "sport/tennis/+"          "sport/tennis/player1", "sport/tennis/player2"
 *   "sport/+"                 "sport/" (one empty level)
 *   "+/+", "/+"               "/finance"
 *   "+/a"                     "/a"           "a/+/b"   "a//b"
 *   "#"                       everything not starting with '$'
 *   "$SYS/#"                  "$SYS/x", "$SYS"
 *   "$SYS/monitor/+"          "$SYS/monitor/Clients"
 * Does not match:
 *   "sport/tennis/+"          "sport/tennis/player1/ranking" (two levels)
 *   "sport/+"                 "sport" (no level for '+' to match)
 *   "+"                       "/finance" (two levels)
 *   "#", "+/monitor/Clients"  "$SYS/monitor/Clients" (the '$' rule)
 *   "ACCOUNTS"                "Accounts" (case)
 * Valid filters:   "#", "+", "sport/tennis/#", "+/tennis/#",
 *                  "sport/+/player1", "/", "a//b", "$share/g/a/+"
 * Invalid filters: "" (empty), "sport/tennis#", "sport/tennis/#/ranking",
 *                  "sport+", "a/b+", "a#", "$share/g" (no filter),
 *                  "$share//a" (empty group), "$share/g+/a" (wildcard in
 *                  the group name)
 *
 * Shared subscriptions "$share/<group>/<filter>" [MQTT-4.8.2-1,
 * MQTT-4.8.2-2] pass topic_filter_valid and topic_matches compares the
 * inner filter, but router_subscribe refuses them with UVMQ_EINVAL: the
 * groups live in broker/share.c, which subscribes the inner filter with
 * the group as the subscriber.
 */
#include "router.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "../common/xmalloc.h"
#include "router_int.h"

/* Subscription option bits. They mirror MQTT v5 3.8.3.1 (PKT_SUBOPT_* in
 * packets/pkt.h), redefined here so that router/ does not depend on
 * packets/. */
#define SUBOPT_QOS_MASK 0x03
#define SUBOPT_NO_LOCAL 0x04
#define SUBOPT_RAP      0x08

/* A table keeps its children in one chain up to this many, then hashes. */
#define KIDS_CHAIN_MAX 4

#define SHARE_PREFIX     "$share/"
#define SHARE_PREFIX_LEN 7

typedef struct sref_s sref_t;
typedef struct subr_s subr_t;

/* A node's subscriptions live in one block of capsubs slots (payload):
 * first the hits they produce (sub, qos, rap, and the raw subscription
 * id in id_off, 0 = none), then the rest of each entry (subext_t) at the
 * same index. A node whose entries need no per-entry decision (nspecial
 * == 0: no No Local, no ids) holds its result as it is: router_match
 * hands that array out when it is the only node that matched, and
 * copies it when others did. */
typedef struct subext_s {
    sref_t *ref;     /* the subscriber's record of this subscription */
    uint8_t options; /* PKT_SUBOPT_* byte */
} subext_t;

static router_hit_t *node_hits(const router__node_t *n)
{
    return n->payload;
}

static subext_t *node_ext(const router__node_t *n)
{
    return (subext_t *)(node_hits(n) + n->capsubs);
}

/* 1 when entry i of n needs a decision per match (see nspecial). */
static int entry_special(const router__node_t *n, uint32_t i)
{
    return (node_ext(n)[i].options & SUBOPT_NO_LOCAL) || node_hits(n)[i].id_off != 0;
}

/* Sets what a subscription's options and id say in entry i of n. */
static void entry_set(router__node_t *n, uint32_t i, uint8_t options, uint32_t id)
{
    router_hit_t *h = &node_hits(n)[i];
    assert(n->nspecial >= (uint32_t)entry_special(n, i));
    n->nspecial -= (uint32_t)entry_special(n, i);
    node_ext(n)[i].options = options;
    h->qos = options & SUBOPT_QOS_MASK;
    h->rap = (options & SUBOPT_RAP) != 0;
    h->id_off = id;
    h->id_count = 0;
    n->nspecial += (uint32_t)entry_special(n, i);
}

/* The subscriber's record of one subscription: where its entry lives. */
struct sref_s {
    router__node_t *node;
    uint32_t idx; /* index of the entry in node->payload */
    sref_t *prev, *next;
};

/* One subscriber with at least one subscription. */
struct subr_s {
    void *sub;
    subr_t *hnext; /* next in router_s.sbk bucket chain */
    sref_t *head;  /* its subscriptions, newest first */
    size_t count;
};

struct router_s {
    router__node_t *root; /* level "" that no topic names */
    uint64_t seed;
    size_t count; /* subscriptions */
    subr_t **sbk; /* subscriber map: nsbk buckets (power of 2) */
    size_t nsbk, nsubr;
};

/* State of one router_match call. */
typedef struct mctx_s {
    const char *t;
    size_t len;
    const void *publisher;
    router_hits_t *h;
    uint64_t seed;  /* the router's hash seed */
    unsigned nodes; /* nodes that contributed at least one hit */
    const router__node_t *whole; /* the only one so far, not copied */
    uint32_t any_id; /* nonzero when a hit may carry a subscription id */
} mctx_t;

/* ---- topic syntax ---- */

static int is_plus(const char *s, size_t len)
{
    return len == 1 && s[0] == '+';
}

static int is_pound(const char *s, size_t len)
{
    return len == 1 && s[0] == '#';
}

/* Filter syntax without the $share prefix. */
static int plain_filter_valid(const char *f, size_t len)
{
    size_t pos = 0, e;
    int ok = len > 0; /* MQTT-4.7.3-1 */
    while (ok && pos <= len) {
        e = router__level_end(f, len, pos);
        const char *wild = memchr(f + pos, '+', e - pos);
        if (!wild) wild = memchr(f + pos, '#', e - pos);
        if (wild && e - pos != 1) ok = 0;                   /* MQTT-4.7.1-1, MQTT-4.7.1-2 */
        if (is_pound(f + pos, e - pos) && e != len) ok = 0; /* MQTT-4.7.1-1 */
        pos = e + 1;
    }
    return ok;
}

/* Length of the "$share/<group>/" prefix of f, or 0 when f is not shared
 * syntax; *bad is set when it starts with "$share/" but is malformed. */
static size_t share_prefix(const char *f, size_t len, int *bad)
{
    size_t g, e;
    *bad = 0;
    if (len < SHARE_PREFIX_LEN || memcmp(f, SHARE_PREFIX, SHARE_PREFIX_LEN)) return 0;
    g = SHARE_PREFIX_LEN;
    e = router__level_end(f, len, g);
    /* MQTT-4.8.2-1: a non-empty ShareName without '/', '+' or '#';
     * MQTT-4.8.2-2: followed by '/' and a Topic Filter. */
    if (e == g || e == len || memchr(f + g, '+', e - g) || memchr(f + g, '#', e - g)) *bad = 1;
    return e + 1;
}

/* Returns 1 when t[0..len) is a valid topic name (see router.h). */
int topic_name_valid(const char *t, size_t len)
{
    return len > 0 && len <= TOPIC_MAX_LEN &&            /* MQTT-4.7.3-1 */
           !memchr(t, '+', len) && !memchr(t, '#', len); /* MQTT-4.7.0-1 */
}

/* Returns 1 when f[0..len) is a valid filter, shared or not (router.h). */
int topic_filter_valid(const char *f, size_t len)
{
    int bad;
    size_t skip;
    assert(f != NULL || len == 0);
    if (len == 0 || len > TOPIC_MAX_LEN) return 0;
    skip = share_prefix(f, len, &bad);
    return !bad && plain_filter_valid(f + skip, len - skip);
}

/* Returns 1 when filter matches topic, applying every rule in the essay
 * above; a "$share/<group>/" prefix is skipped. Both must be valid. */
int topic_matches(const char *filter, size_t flen, const char *topic, size_t tlen)
{
    int bad, rc = -1;
    assert(filter != NULL && flen > 0); /* a valid filter is not empty */
    assert(topic != NULL || tlen == 0);
    size_t fi = share_prefix(filter, flen, &bad), ti = 0, fe, te;
    if (tlen == 0 || fi > flen) return 0;
    if (topic[0] == '$' && fi < flen && (filter[fi] == '+' || filter[fi] == '#'))
        return 0; /* MQTT-4.7.2-1 */
    while (rc < 0) {
        fe = router__level_end(filter, flen, fi);
        if (is_pound(filter + fi, fe - fi)) {
            rc = 1; /* the parent level and any number of children */
        } else if (ti > tlen) {
            rc = 0; /* the topic ran out of levels first */
        } else {
            te = router__level_end(topic, tlen, ti);
            if (!is_plus(filter + fi, fe - fi) &&
                (fe - fi != te - ti || memcmp(filter + fi, topic + ti, fe - fi)))
                rc = 0;
            fi = fe + 1;
            ti = te + 1;
            if (rc < 0 && fi > flen) rc = ti > tlen;
        }
    }
    return rc;
}

/* ---- nodes and child tables (shared with retained.c) ---- */

/* Returns a random seed, or a clock-derived one if getrandom fails. */
uint64_t router__seed(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec;
    }
    return s;
}

/* FNV-1a over the level, started from the seed and finished with a
 * 64-bit mixer. The seed makes collisions differ per process, which is
 * enough here: a bad chain costs a subscriber's own subscribe speed. */
uint32_t router__hash(uint64_t seed, const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (uint32_t)h;
}

/* Returns a zeroed node holding a copy of the level; len <= TOPIC_MAX_LEN. */
router__node_t *router__node_create(router__node_t *parent, const char *s, size_t len,
                                    uint32_t hash)
{
    assert(len <= TOPIC_MAX_LEN); /* n->len is 32 bits; the callers check */
    assert(s != NULL || len == 0);
    router__node_t *n = xcalloc(1, sizeof *n + len);
    memcpy(n->level, s, len);
    n->parent = parent;
    n->hash = hash;
    n->len = (uint32_t)len;
    return n;
}

/* Returns the exact child named s[0..len), or NULL. */
router__node_t *router__kid_find(const router__node_t *n, const char *s, size_t len, uint32_t hash)
{
    router__node_t *k = n->nkb ? n->kids[hash & (n->nkb - 1)] : NULL;
    while (k && (k->hash != hash || k->len != len || memcmp(k->level, s, len)))
        k = k->hnext;
    return k;
}

/* Rehashes n's exact children into nb buckets (a power of two). */
static void kids_resize(router__node_t *n, uint32_t nb)
{
    router__node_t **old = n->kids, **nk, *k, *next;
    uint32_t oldnb = n->nkb, moved = 0;
    assert(nb > 0 && (nb & (nb - 1)) == 0);
    assert(oldnb > 0 && nb != oldnb);
    assert(n->nkids <= (nb == 1 ? KIDS_CHAIN_MAX : nb)); /* the new load */
    nk = nb == 1 ? &n->inl : xcalloc(nb, sizeof *nk);
    if (nb == 1) n->inl = NULL;
    for (uint32_t i = 0; i < oldnb; i++) {
        /* The inline bucket is being reused only when nb == 1, and then
         * old != &n->inl because a 1-bucket table never resizes to 1. */
        for (k = old[i]; k; k = next) {
            next = k->hnext;
            k->hnext = nk[k->hash & (nb - 1)];
            nk[k->hash & (nb - 1)] = k;
            moved++;
        }
    }
    assert(moved == n->nkids); /* the table held every child, once */
    if (oldnb > 1) free(old);
    n->kids = nk;
    n->nkb = nb;
}

/* Links kid into n's table; grows it past KIDS_CHAIN_MAX children and then
 * whenever the load factor passes 1. */
void router__kid_add(router__node_t *n, router__node_t *kid)
{
    router__node_t **b;
    assert(kid->parent == n && kid->hnext == NULL);
    assert(kid != n->plus && kid != n->pound);
    assert(router__kid_find(n, kid->level, kid->len, kid->hash) == NULL);
    if (n->nkb == 0) {
        n->kids = &n->inl;
        n->nkb = 1;
    }
    b = &n->kids[kid->hash & (n->nkb - 1)];
    kid->hnext = *b;
    *b = kid;
    n->nkids++;
    if (n->nkb == 1 ? n->nkids > KIDS_CHAIN_MAX : n->nkids > n->nkb)
        kids_resize(n, n->nkb == 1 ? 2 * KIDS_CHAIN_MAX : 2 * n->nkb);
    assert(router__node_ok(n));
}

/* Unlinks kid from n's table and shrinks the table when it is 1/4 full. */
static void kid_remove(router__node_t *n, router__node_t *kid)
{
    assert(kid->parent == n && n->nkids > 0 && n->nkb > 0);
    router__node_t **p = &n->kids[kid->hash & (n->nkb - 1)];
    while (*p != kid) {
        assert(*p != NULL); /* kid is in its bucket's chain */
        p = &(*p)->hnext;
    }
    *p = kid->hnext;
    kid->hnext = NULL;
    n->nkids--;
    if (n->nkids == 0) {
        if (n->nkb > 1) free(n->kids);
        n->kids = NULL;
        n->nkb = 0;
    } else if (n->nkb > 1 && n->nkids < n->nkb / 4) {
        kids_resize(n, n->nkids <= KIDS_CHAIN_MAX ? 1 : n->nkb / 2);
    }
    assert(router__node_ok(n));
}

/* Returns the first non-empty bucket's head from bucket i on, or NULL. */
static router__node_t *bucket_from(const router__node_t *n, uint32_t i)
{
    while (i < n->nkb && !n->kids[i])
        i++;
    return i < n->nkb ? n->kids[i] : NULL;
}

/* Returns n's first exact child in table order, or NULL. */
router__node_t *router__kid_first(const router__node_t *n)
{
    return bucket_from(n, 0);
}

/* Returns the exact child after kid in table order, or NULL. */
router__node_t *router__kid_next(const router__node_t *n, const router__node_t *kid)
{
    assert(kid->parent == n && n->nkb > 0);
    return kid->hnext ? kid->hnext : bucket_from(n, (kid->hash & (n->nkb - 1)) + 1);
}

/* See router_int.h. */
int router__node_ok(const router__node_t *n)
{
    if (n->nkb == 0) return n->nkids == 0 && n->kids == NULL;
    if (n->nkb == 1) return n->kids == &n->inl && n->nkids >= 1 && n->nkids <= KIDS_CHAIN_MAX;
    return (n->nkb & (n->nkb - 1)) == 0 && n->kids != &n->inl && n->nkids <= n->nkb;
}

static int node_empty(const router__node_t *n)
{
    return !n->nkids && !n->plus && !n->pound && !n->nsubs && !n->payload;
}

/* Frees n and each ancestor that is left empty; roots stay. */
void router__prune(router__node_t *n)
{
    router__node_t *p;
    while (n->parent && node_empty(n)) {
        assert(n->nkb == 0 && n->capsubs == 0); /* nothing left to free */
        p = n->parent;
        if (p->plus == n)
            p->plus = NULL;
        else if (p->pound == n)
            p->pound = NULL;
        else
            kid_remove(p, n);
        free(n);
        n = p;
    }
}

/* Moves n's children onto the work list threaded through hnext. */
static router__node_t *push_kids(router__node_t *n, router__node_t *list)
{
    router__node_t *k, *next;
    for (uint32_t i = 0; i < n->nkb; i++) {
        for (k = n->kids[i]; k; k = next) {
            next = k->hnext;
            k->hnext = list;
            list = k;
        }
    }
    if (n->plus) {
        n->plus->hnext = list;
        list = n->plus;
    }
    if (n->pound) {
        n->pound->hnext = list;
        list = n->pound;
    }
    return list;
}

/* Frees the tree under root (root included) through a work list. */
void router__tree_free(router__node_t *root, void (*on_free)(router__node_t *n, void *ctx),
                       void *ctx)
{
    router__node_t *list = root, *n;
    assert(root->parent == NULL); /* a whole trie, not a branch */
    root->hnext = NULL;
    while (list) {
        n = list;
        list = push_kids(n, n->hnext);
        if (on_free) on_free(n, ctx);
        if (n->nkb > 1) free(n->kids);
        free(n);
    }
}

/* ---- subscriber map (sub pointer -> its subscriptions) ---- */

static size_t ptr_bucket(const router_t *rt, const void *sub)
{
    uint64_t h = (uint64_t)(uintptr_t)sub * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32) & (rt->nsbk - 1);
}

static subr_t *subr_find(const router_t *rt, const void *sub)
{
    subr_t *s = rt->sbk[ptr_bucket(rt, sub)];
    while (s && s->sub != sub)
        s = s->hnext;
    return s;
}

/* Doubles the subscriber map. */
static void subr_grow(router_t *rt)
{
    subr_t **old = rt->sbk, *s, *next;
    size_t oldn = rt->nsbk;
    assert(oldn > 0 && (oldn & (oldn - 1)) == 0); /* ptr_bucket masks */
    rt->nsbk *= 2;
    rt->sbk = xcalloc(rt->nsbk, sizeof *rt->sbk);
    for (size_t i = 0; i < oldn; i++) {
        for (s = old[i]; s; s = next) {
            next = s->hnext;
            s->hnext = rt->sbk[ptr_bucket(rt, s->sub)];
            rt->sbk[ptr_bucket(rt, s->sub)] = s;
        }
    }
    free(old);
}

static subr_t *subr_get(router_t *rt, void *sub)
{
    subr_t *s = subr_find(rt, sub);
    if (!s) {
        if (rt->nsubr >= rt->nsbk) subr_grow(rt);
        s = xcalloc(1, sizeof *s);
        s->sub = sub;
        s->hnext = rt->sbk[ptr_bucket(rt, sub)];
        rt->sbk[ptr_bucket(rt, sub)] = s;
        rt->nsubr++;
    }
    return s;
}

/* Unlinks and frees a subscriber that has no subscriptions left. */
static void subr_drop(router_t *rt, subr_t *s)
{
    subr_t **p = &rt->sbk[ptr_bucket(rt, s->sub)];
    assert(s->head == NULL && s->count == 0 && rt->nsubr > 0);
    while (*p != s) {
        assert(*p != NULL); /* s is in its bucket's chain */
        p = &(*p)->hnext;
    }
    *p = s->hnext;
    rt->nsubr--;
    free(s);
}

/* ---- subscriptions on a node ---- */

/* Index of sub's entry on n, or -1. Scans whichever is shorter: the
 * node's subscribers or the subscriber's subscriptions. */
static long entry_find(const router__node_t *n, const subr_t *s)
{
    const router_hit_t *h = node_hits(n);
    long idx = -1;
    if (n->nsubs <= s->count) {
        for (uint32_t i = 0; i < n->nsubs && idx < 0; i++)
            if (h[i].sub == s->sub) idx = (long)i;
    } else {
        for (const sref_t *r = s->head; r && idx < 0; r = r->next)
            if (r->node == n) idx = (long)r->idx;
    }
    return idx;
}

/* Gives n's entry block room for cap entries (cap >= nsubs), moving the
 * side entries to their new place after the hits; cap 0 frees it. */
static void entries_resize(router__node_t *n, uint32_t cap)
{
    size_t slot = sizeof(router_hit_t) + sizeof(subext_t);
    size_t ext_bytes = n->nsubs * sizeof(subext_t);
    subext_t *old_ext = node_ext(n);
    assert(cap >= n->nsubs && cap != n->capsubs);
    if (cap == 0) {
        free(n->payload);
        n->payload = NULL;
    } else if (cap > n->capsubs) {
        n->payload = xrealloc(n->payload, cap * slot);
        old_ext = node_ext(n); /* same offset in the moved block */
        memmove(node_hits(n) + cap, old_ext, ext_bytes);
    } else {
        memmove(node_hits(n) + cap, old_ext, ext_bytes);
        n->payload = xrealloc(n->payload, cap * slot);
    }
    n->capsubs = cap;
}

static void entry_add(router_t *rt, router__node_t *n, subr_t *s, uint8_t options, uint32_t id)
{
    uint32_t i = n->nsubs;
    sref_t *r = xmalloc(sizeof *r);
    if (i == n->capsubs) entries_resize(n, i ? 2 * i : 2);
    assert(i < n->capsubs);
    node_hits(n)[i] = (router_hit_t){.sub = s->sub};
    node_ext(n)[i] = (subext_t){.ref = r};
    entry_set(n, i, options, id);
    *r = (sref_t){.node = n, .idx = i, .prev = NULL, .next = s->head};
    if (s->head) s->head->prev = r;
    s->head = r;
    s->count++;
    n->nsubs++;
    rt->count++;
}

/* Removes entry idx of n (s is its subscriber): swap with the last entry,
 * unlink and free the sref, shrink or free the array. Does not prune. */
static void entry_remove(router_t *rt, router__node_t *n, subr_t *s, uint32_t idx)
{
    router_hit_t *h = node_hits(n);
    subext_t *x = node_ext(n);
    assert(idx < n->nsubs && n->nspecial <= n->nsubs);
    sref_t *r = x[idx].ref;
    /* The entry and the subscriber's record point at each other. */
    assert(r->node == n && r->idx == idx && h[idx].sub == s->sub);
    assert(s->count > 0 && rt->count > 0);
    if (r->prev)
        r->prev->next = r->next;
    else
        s->head = r->next;
    if (r->next) r->next->prev = r->prev;
    free(r);
    s->count--;
    rt->count--;
    n->nspecial -= (uint32_t)entry_special(n, idx);
    if (idx != --n->nsubs) {
        h[idx] = h[n->nsubs];
        x[idx] = x[n->nsubs];
        x[idx].ref->idx = idx;
    }
    if (n->nsubs == 0)
        entries_resize(n, 0);
    else if (n->nsubs < n->capsubs / 4)
        entries_resize(n, n->capsubs / 2);
    assert(n->nspecial <= n->nsubs);
}

/* ---- paths ---- */

/* Child of n for one filter level; creates it when create is set. */
static router__node_t *filter_child(router_t *rt, router__node_t *n, const char *s, size_t len,
                                    int create)
{
    router__node_t **slot = is_plus(s, len) ? &n->plus : is_pound(s, len) ? &n->pound : NULL;
    router__node_t *k;
    uint32_t h = router__hash(rt->seed, s, len);
    if (slot) {
        if (!*slot && create) *slot = router__node_create(n, s, len, h);
        k = *slot;
    } else {
        k = router__kid_find(n, s, len, h);
        if (!k && create) {
            k = router__node_create(n, s, len, h);
            router__kid_add(n, k);
        }
    }
    return k;
}

/* Node of filter f (valid), created when create is set; or NULL. */
static router__node_t *filter_node(router_t *rt, const char *f, size_t len, int create)
{
    router__node_t *n = rt->root;
    size_t pos = 0, e;
    while (n && pos <= len) {
        e = router__level_end(f, len, pos);
        n = filter_child(rt, n, f + pos, e - pos, create);
        pos = e + 1;
    }
    return n;
}

static int subscribable(const char *f, size_t len)
{
    int bad;
    /* A router holds no shared subscription: broker/share.c keeps the
     * groups and subscribes each one's inner filter. */
    return topic_filter_valid(f, len) && share_prefix(f, len, &bad) == 0;
}

/* ---- public: lifecycle and updates ---- */

/* Returns an empty router; never NULL (xmalloc aborts). */
router_t *router_create(void)
{
    router_t *rt = xcalloc(1, sizeof *rt);
    rt->seed = router__seed();
    rt->root = router__node_create(NULL, "", 0, 0);
    rt->nsbk = 16;
    rt->sbk = xcalloc(rt->nsbk, sizeof *rt->sbk);
    return rt;
}

static void free_subs(router__node_t *n, void *ctx)
{
    subext_t *x = node_ext(n);
    for (uint32_t i = 0; i < n->nsubs; i++)
        free(x[i].ref);
    free(n->payload);
}

/* Frees every node, subscription record and subscriber record; the
 * subscriber pointers themselves are borrowed and not touched. rt may be
 * NULL. */
void router_destroy(router_t *rt)
{
    subr_t *s, *next;
    if (!rt) return;
    router__tree_free(rt->root, free_subs, NULL);
    for (size_t i = 0; i < rt->nsbk; i++) {
        for (s = rt->sbk[i]; s; s = next) {
            next = s->hnext;
            free(s);
        }
    }
    free(rt->sbk);
    free(rt);
}

/* Adds or replaces sub's subscription to filter (see router.h). existed
 * may be NULL. Returns 0, or UVMQ_EINVAL (invalid or $share filter) with
 * the trie unchanged. The trie borrows sub until it is unsubscribed. */
int router_subscribe(router_t *rt, const char *filter, size_t len, void *sub, uint8_t options,
                     uint32_t sub_id, int *existed)
{
    int rc = UVMQ_EINVAL, old = 0;
    router__node_t *n;
    subr_t *s;
    long idx;
    assert(sub != NULL); /* NULL is router_match's "no publisher" */
    assert(filter != NULL || len == 0);
    if (subscribable(filter, len)) {
        n = filter_node(rt, filter, len, 1);
        s = subr_get(rt, sub);
        idx = entry_find(n, s);
        if (idx >= 0) {
            entry_set(n, (uint32_t)idx, options, sub_id);
            old = 1;
        } else {
            entry_add(rt, n, s, options, sub_id);
        }
        assert(s->count > 0 && n->nsubs > 0 && n->nspecial <= n->nsubs);
        rc = 0;
    }
    if (existed) *existed = old;
    return rc;
}

/* Removes sub's subscription to filter and prunes nodes left empty.
 * Returns 0, or UVMQ_ENOTFOUND (also for an invalid filter). */
int router_unsubscribe(router_t *rt, const char *filter, size_t len, void *sub)
{
    int rc = UVMQ_ENOTFOUND;
    router__node_t *n = NULL;
    subr_t *s = subr_find(rt, sub);
    long idx = -1;
    if (s && subscribable(filter, len)) n = filter_node(rt, filter, len, 0);
    if (n) idx = entry_find(n, s);
    if (idx >= 0) {
        entry_remove(rt, n, s, (uint32_t)idx);
        router__prune(n);
        assert((s->head == NULL) == (s->count == 0));
        if (!s->head) subr_drop(rt, s);
        rc = 0;
    }
    return rc;
}

/* Removes every subscription of sub in O(its subscriptions) and prunes.
 * Returns how many were removed (0 when sub had none). */
size_t router_unsubscribe_all(router_t *rt, void *sub)
{
    subr_t *s = subr_find(rt, sub);
    size_t removed = 0, want = s ? s->count : 0;
    router__node_t *n;
    while (s && s->head) {
        n = s->head->node;
        entry_remove(rt, n, s, s->head->idx);
        router__prune(n);
        removed++;
    }
    assert(removed == want); /* s->count is the length of s's list */
    (void)want;
    if (s) subr_drop(rt, s);
    return removed;
}

/* Returns the number of subscriptions stored. */
size_t router_count(const router_t *rt)
{
    return rt->count;
}

/* ---- matching ---- */

/* Sets h to empty without allocating. */
void router_hits_init(router_hits_t *h)
{
    memset(h, 0, sizeof *h);
}

/* Frees h's arrays; h is empty (and reusable) afterwards. */
void router_hits_dispose(router_hits_t *h)
{
    free(h->v);
    free(h->ids);
    router_hits_init(h);
}

static void hits_reserve(router_hits_t *h, size_t n)
{
    if (n > h->cap) {
        h->cap = n < 2 * h->cap ? 2 * h->cap : n < 16 ? 16 : n;
        h->v = xrealloc(h->v, h->cap * sizeof *h->v);
    }
}

/* Appends one raw hit per subscription on n; the subscription id waits
 * in id_off until place_ids or merge_hits. Locals, not h->v[h->n++]: the
 * stores cannot alias them, so the loops keep them in registers (a
 * fan-out runs them once per hit). Returns the number appended. */
static size_t copy_hits(mctx_t *c, const router__node_t *n)
{
    const router_hit_t *e = node_hits(n);
    const subext_t *x = node_ext(n);
    router_hits_t *h = c->h;
    const void *publisher = c->publisher;
    uint32_t nsubs = n->nsubs;
    hits_reserve(h, h->n + nsubs);
    router_hit_t *out = h->v + h->n, *start = out;
    if (n->nspecial == 0) {
        for (uint32_t i = 0; i < nsubs; i++) *out++ = e[i];
    } else {
        for (uint32_t i = 0; i < nsubs; i++) {
            if ((x[i].options & SUBOPT_NO_LOCAL) && e[i].sub == publisher)
                continue; /* MQTT-3.8.3-3 */
            *out++ = e[i];
        }
        c->any_id = 1; /* maybe: place_ids skips hits without one */
    }
    h->n += (size_t)(out - start);
    return (size_t)(out - start);
}

/* Adds n's subscriptions to the match. The first contributing node, when
 * its array is the result as it is (nspecial == 0), is only noted in
 * c->whole: router_match hands that array out if no other node matches,
 * and the next contributing node copies it first (a fan-out to 1,000
 * subscribers of one filter then copies nothing: 8 instructions and 24
 * bytes of stores per hit saved, bench/micro/deliver.c). */
static void collect(mctx_t *c, const router__node_t *n)
{
    if (n->nsubs == 0) return;
    if (c->nodes == 0 && n->nspecial == 0) {
        c->whole = n;
        c->nodes = 1;
        return;
    }
    if (c->whole != NULL) {
        copy_hits(c, c->whole);
        c->whole = NULL;
    }
    c->nodes += copy_hits(c, n) > 0;
}

/* Collects every subscription under n that matches the topic levels from
 * pos on (pos > len: all levels consumed). Follows the exact branch in a
 * loop and recurses only into "+" branches, so the depth of recursion is
 * the number of '+' levels on a path (bounded by broker/'s level limit). */
static void walk(mctx_t *c, const router__node_t *n, size_t pos)
{
    size_t e;
    /* MQTT-4.7.2-1: no first-level wildcard matches a '$' topic. */
    int skip_wild = n->parent == NULL && c->t[0] == '$';
    while (n) {
        if (n->pound && !skip_wild) collect(c, n->pound); /* also the parent */
        if (pos > c->len) {
            collect(c, n);
            break;
        }
        e = router__level_end(c->t, c->len, pos);
        if (n->plus && !skip_wild) walk(c, n->plus, e + 1);
        if (n->nkids)
            n = router__kid_find(n, c->t + pos, e - pos,
                                 router__hash(c->seed, c->t + pos, e - pos));
        else
            n = NULL;
        pos = e + 1;
        skip_wild = 0;
    }
}

/* Grows hits->ids to at least n entries. */
static void ids_reserve(router_hits_t *h, size_t n)
{
    if (n > h->cap_ids) {
        h->cap_ids = n < 2 * h->cap_ids ? 2 * h->cap_ids : n;
        h->ids = xrealloc(h->ids, h->cap_ids * sizeof *h->ids);
    }
}

/* Hits from one node: each subscriber appears once; move the raw ids. */
static void place_ids(router_hits_t *h)
{
    assert(h->n_ids == 0);
    ids_reserve(h, h->n);
    for (size_t r = 0; r < h->n; r++) {
        uint32_t id = h->v[r].id_off;
        h->v[r].id_off = (uint32_t)h->n_ids;
        h->v[r].id_count = id != 0;
        if (id) h->ids[h->n_ids++] = id;
    }
}

/* Pass 1 of merge_hits: finds each raw hit's leader (the subscriber's
 * first raw hit) through an open-addressing table of tsize slots holding
 * leader index + 1; stores it in id_count, folds QoS and RAP into the
 * leader and counts the leader's ids in cnt[]. */
static void find_leaders(router_hits_t *h, uint32_t *cnt, uint32_t *slot, size_t tsize)
{
    router_hit_t *v = h->v;
    /* A power of two with a free slot for every probe to stop at. */
    assert((tsize & (tsize - 1)) == 0 && tsize > h->n);
    for (size_t r = 0; r < h->n; r++) {
        uint64_t k = (uint64_t)(uintptr_t)v[r].sub * 0x9E3779B97F4A7C15ull;
        size_t i = (size_t)(k >> 32) & (tsize - 1);
        while (slot[i] && v[slot[i] - 1].sub != v[r].sub)
            i = (i + 1) & (tsize - 1);
        if (!slot[i]) {
            slot[i] = (uint32_t)r + 1;
            cnt[r] = 0;
        }
        uint32_t l = slot[i] - 1;
        v[r].id_count = l;
        if (v[r].qos > v[l].qos) v[l].qos = v[r].qos;
        v[l].rap |= v[r].rap;
        cnt[l] += v[r].id_off != 0;
    }
}

/* Merges the raw hits into one per subscriber: max QoS [MQTT-3.3.4-2],
 * OR of Retain As Published, and every non-zero subscription id, since
 * one copy is sent [MQTT-3.3.4-3]. O(n): a hash table keyed by
 * subscriber finds each one's first hit. The ids buffer doubles as
 * scratch: [0,n) output ids, [n,2n) per-leader cursors, then the table.
 * (Hits from a single node cannot repeat a subscriber: see place_ids.) */
static void merge_hits(router_hits_t *h)
{
    size_t raw = h->n, tsize = 16, w = 0;
    router_hit_t *v = h->v;
    assert(raw >= 2 && h->n_ids == 0); /* hits from two nodes at least */
    while (tsize < 2 * raw)
        tsize *= 2;
    ids_reserve(h, 2 * raw + tsize);
    uint32_t *cur = h->ids + raw, *slot = cur + raw;
    memset(slot, 0, tsize * sizeof *slot);
    find_leaders(h, cur, slot, tsize);
    for (size_t r = 0; r < raw; r++) { /* leaders: reserve their run */
        if (v[r].id_count != r) continue;
        uint32_t base = (uint32_t)h->n_ids;
        h->n_ids += cur[r];
        cur[r] = base;
        if (v[r].id_off) h->ids[cur[r]++] = v[r].id_off;
        v[r].id_off = base;
    }
    /* At most one id per raw hit: the runs end before the cursors. */
    assert(h->n_ids <= raw);
    for (size_t r = 0; r < raw; r++) /* followers' ids into the runs */
        if (v[r].id_count != r && v[r].id_off) h->ids[cur[v[r].id_count]++] = v[r].id_off;
    for (size_t r = 0; r < raw; r++) { /* keep the leaders, in order */
        if (v[r].id_count != r) continue;
        uint32_t n = cur[r] - v[r].id_off;
        v[w] = v[r];
        v[w++].id_count = n;
    }
    assert(w >= 1 && w <= raw);
    h->n = w;
}

/* Fills hits (cleared first) with one merged entry per matching
 * subscriber; see router.h. topic must be a valid name. Only reads the
 * trie, but the hits may be a node's own array, so the router must not
 * change while they are read (broker/interest.c asserts that no fan-out
 * is reading them when it changes a loop's router). Allocates only to
 * grow hits. Returns hits->n. */
size_t router_match(router_t *rt, const char *topic, size_t len, const void *publisher,
                    router_hits_t *hits)
{
    mctx_t c = {
        .t = topic, .len = len, .publisher = publisher, .h = hits, .seed = rt->seed, .nodes = 0};
    hits->n = 0;
    hits->n_ids = 0;
    if (len > 0) walk(&c, rt->root, 0);
    hits->hit = hits->v; /* after walk: it may have moved v */
    assert(c.whole == NULL || c.nodes == 1); /* noted only while alone */
    if (c.whole != NULL) { /* ids all 0: nspecial == 0 */
        hits->hit = node_hits(c.whole);
        hits->n = c.whole->nsubs;
    } else if (c.nodes > 1) {
        merge_hits(hits);
    } else if (c.any_id != 0) { /* else every id_off and id_count is 0 */
        place_ids(hits);
    }
    return hits->n;
}

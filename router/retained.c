/*
 * retained.c - the retained-message trie: topic name -> opaque value.
 *
 * The reverse of router.c: here the trie holds topic NAMES (no wildcards)
 * and a FILTER is matched against them, when a client subscribes. It uses
 * the same nodes and child tables (router_int.h) and the same rules ('+'
 * one level, '#' the parent and everything below, no first-level wildcard
 * for '$' topics [MQTT-4.7.2-1]). The trie borrows the values: the caller
 * owns them and releases what set() returns.
 */
#include "router.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "../common/xmalloc.h"
#include "router_int.h"

struct router_retained_s {
    router__node_t *root; /* level "" that no topic names */
    uint64_t seed;
    size_t count; /* stored values */
};

/* State of one router_retained_match call. */
typedef struct rctx_s {
    const router_retained_t *r;
    const char *f;
    size_t len;
    router_retained_cb cb;
    void *ctx;
} rctx_t;

/* Returns an empty trie; never NULL (xmalloc aborts). */
router_retained_t *router_retained_create(void)
{
    router_retained_t *r = xcalloc(1, sizeof *r);
    r->seed = router__seed();
    r->root = router__node_create(NULL, "", 0, 0);
    return r;
}

typedef struct free_ctx_s {
    router_retained_cb cb;
    void *ctx;
} free_ctx_t;

static void free_value(router__node_t *n, void *ctx)
{
    free_ctx_t *fc = ctx;
    if (n->payload && fc->cb) fc->cb(n->payload, fc->ctx);
}

/* Calls free_cb (when not NULL) on every stored value, then frees the
 * trie. r may be NULL. */
void router_retained_destroy(router_retained_t *r, router_retained_cb free_cb, void *ctx)
{
    free_ctx_t fc = {.cb = free_cb, .ctx = ctx};
    if (!r) return;
    router__tree_free(r->root, free_value, &fc);
    free(r);
}

/* Node of topic t, created when create is set; or NULL. */
static router__node_t *topic_node(router_retained_t *r, const char *t, size_t len, int create)
{
    router__node_t *n = r->root, *k;
    size_t pos = 0, e;
    uint32_t h;
    while (n && pos <= len) {
        e = router__level_end(t, len, pos);
        h = router__hash(r->seed, t + pos, e - pos);
        k = router__kid_find(n, t + pos, e - pos, h);
        if (!k && create) {
            k = router__node_create(n, t + pos, e - pos, h);
            router__kid_add(n, k);
        }
        n = k;
        pos = e + 1;
    }
    return n;
}

/* Stores value under topic (a valid name, 1..TOPIC_MAX_LEN bytes) and
 * returns the previous value or NULL; the caller releases it. value ==
 * NULL deletes the topic and frees the nodes it leaves empty. For a topic
 * of invalid length nothing is stored and value itself is returned, so
 * the caller releases it like a replaced one. */
void *router_retained_set(router_retained_t *r, const char *topic, size_t len, void *value)
{
    router__node_t *n;
    void *prev = value;
    assert(topic != NULL || len == 0);
    if (len > 0 && len <= TOPIC_MAX_LEN) {
        n = topic_node(r, topic, len, value != NULL);
        prev = n ? n->payload : NULL;
        if (n) n->payload = value;
        assert(value == NULL || n != NULL); /* created when storing */
        /* A name has no wildcard level and a value is not an entry block. */
        assert(n == NULL || (n->plus == NULL && n->pound == NULL && n->capsubs == 0));
        assert(prev == NULL || r->count > 0);
        if (value && !prev) r->count++;
        if (!value && prev) r->count--;
        if (n && !value) router__prune(n);
    }
    return prev;
}

/* Calls the callback on every value at or below top, iteratively (a
 * stored topic may be thousands of levels deep). */
static void visit_subtree(const rctx_t *c, router__node_t *top)
{
    router__node_t *n = top, *k;
    for (;;) {
        if (n->payload) c->cb(n->payload, c->ctx);
        k = router__kid_first(n);
        if (k) {
            n = k;
            continue;
        }
        while (n != top && !(k = router__kid_next(n->parent, n)))
            n = n->parent;
        if (n == top) break;
        n = k;
    }
}

/* A first-level node a wildcard may not reach [MQTT-4.7.2-1]. */
static int dollar_top(const router__node_t *k)
{
    return k->parent->parent == NULL && k->len > 0 && k->level[0] == '$';
}

static void walk(const rctx_t *c, router__node_t *n, size_t pos);

/* Filter level '#' at n: n itself and everything below it; at the root,
 * every first level except the '$' ones. */
static void match_pound(const rctx_t *c, router__node_t *n)
{
    router__node_t *k;
    if (n->parent) {
        visit_subtree(c, n);
    } else {
        for (k = router__kid_first(n); k; k = router__kid_next(n, k))
            if (!dollar_top(k)) visit_subtree(c, k);
    }
}

/* Filter level '+' at n: each child, with the rest of the filter. */
static void match_plus(const rctx_t *c, router__node_t *n, size_t next)
{
    for (router__node_t *k = router__kid_first(n); k; k = router__kid_next(n, k))
        if (!dollar_top(k)) walk(c, k, next);
}

/* Reports every stored topic under n that matches the filter levels from
 * pos on. Recurses only at '+' levels, so its depth is bounded by the
 * number of '+' levels in the filter. */
static void walk(const rctx_t *c, router__node_t *n, size_t pos)
{
    size_t e;
    while (n && pos <= c->len) {
        e = router__level_end(c->f, c->len, pos);
        if (e - pos == 1 && c->f[pos] == '#') {
            match_pound(c, n);
            n = NULL;
        } else if (e - pos == 1 && c->f[pos] == '+') {
            match_plus(c, n, e + 1);
            n = NULL;
        } else {
            n = router__kid_find(n, c->f + pos, e - pos,
                                 router__hash(c->r->seed, c->f + pos, e - pos));
        }
        pos = e + 1;
    }
    if (n && n->payload) c->cb(n->payload, c->ctx);
}

/* Calls cb(value, ctx) for every stored value whose topic matches filter
 * (a valid, non-shared filter). cb must not change the trie. */
void router_retained_match(router_retained_t *r, const char *filter, size_t len,
                           router_retained_cb cb, void *ctx)
{
    rctx_t c = {.r = r, .f = filter, .len = len, .cb = cb, .ctx = ctx};
    assert(cb != NULL);
    assert(filter != NULL || len == 0);
    if (len > 0) walk(&c, r->root, 0);
}

/* Returns the number of stored values. */
size_t router_retained_count(const router_retained_t *r)
{
    return r->count;
}

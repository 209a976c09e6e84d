/*
 * router_int.h - internals shared by router.c and retained.c.
 *
 * Both tries are made of the same node: one topic level, a parent pointer,
 * and a table of exact-level children that is a single chain while small
 * and a hash table (chained, power-of-two buckets) once it has more than
 * a few children, so lookup stays O(1) with thousands of siblings. Nodes
 * are allocated with xmalloc; their level length is bounded by
 * TOPIC_MAX_LEN, which the public functions check first.
 */
#ifndef UVMQ_ROUTER_INT_H
#define UVMQ_ROUTER_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct router__node_s router__node_t;

struct router__node_s {
    router__node_t *parent;  /* NULL for a root */
    router__node_t *hnext;   /* next sibling in the parent's bucket chain */
    router__node_t **kids;   /* nkb buckets; == &inl while nkb == 1 */
    router__node_t *inl;     /* the one bucket of a small table */
    router__node_t *plus;    /* "+" child (subscription trie only) */
    router__node_t *pound;   /* "#" child (subscription trie only) */
    void *payload;           /* subscriptions: entry block (router.c); retained: value */
    uint32_t nkids, nkb;     /* exact children, buckets (0 or a power of 2) */
    uint32_t nsubs, capsubs; /* subscription trie only: payload entries */
    uint32_t hash, len;      /* of level[0..len) */
    uint32_t nspecial;       /* subscription trie only: entries with No
                                Local or a subscription id (router.c) */
    char level[];            /* not NUL-terminated */
};

/* End of the topic level that starts at pos in s[0..len): the index of
 * the next '/' or len. Levels may be empty; pos == len is the empty last
 * level of "a/". */
static inline size_t router__level_end(const char *s, size_t len, size_t pos)
{
    const char *p = len > pos ? memchr(s + pos, '/', len - pos) : NULL;
    return p ? (size_t)(p - s) : len;
}

/* A per-trie random seed for router__hash (from getrandom). */
uint64_t router__seed(void);

/* Seeded hash of one topic level. */
uint32_t router__hash(uint64_t seed, const char *s, size_t len);

/* Allocates a node for level s[0..len) with the given hash, not yet linked
 * into parent's table (the caller adds it or sets plus/pound). */
router__node_t *router__node_create(router__node_t *parent, const char *s, size_t len,
                                    uint32_t hash);

/* Exact child of n named s[0..len), or NULL. */
router__node_t *router__kid_find(const router__node_t *n, const char *s, size_t len, uint32_t hash);

/* Links kid (not yet in any table) into n's table, growing it. */
void router__kid_add(router__node_t *n, router__node_t *kid);

/* First exact child of n in table order, or NULL. */
router__node_t *router__kid_first(const router__node_t *n);

/* The exact child after kid in n's table order, or NULL. O(1) amortized
 * over a whole walk; n must not change during the walk. */
router__node_t *router__kid_next(const router__node_t *n, const router__node_t *kid);

/* 1 when n's child table agrees with its counters: no table (nkb 0, kids
 * NULL) exactly when there are no exact children; one bucket is the
 * inline one and holds 1 to a few children; more buckets are a power of
 * two holding at most one child per bucket on average. For assert(). */
int router__node_ok(const router__node_t *n);

/* Frees n and then each ancestor that became empty (no children, no
 * subscriptions, no value), unlinking it from its parent; a root
 * (parent == NULL) is never freed. n is invalid afterwards. */
void router__prune(router__node_t *n);

/* Frees root and every node below it in O(nodes), without recursion.
 * on_free, when not NULL, sees each node just before it is freed. */
void router__tree_free(router__node_t *root, void (*on_free)(router__node_t *n, void *ctx),
                       void *ctx);

#endif

/*
 * router.h - topic trie: subscriptions, matching, retained messages.
 *
 * Pure code: no libuv, no sessions. A subscriber is an opaque pointer the
 * trie borrows (a session, or a shared subscription group in
 * broker/share.c); the trie owns its nodes. The same module holds the
 * retained-message trie, keyed by topic name, whose values are opaque
 * pointers too (msg_t in broker/), owned by the caller.
 *
 * Matching rules, with examples, are at the top of router.c. Not
 * thread-safe, and no lock is needed where broker/ uses it: each worker
 * loop has its own router, touched only by that loop's thread
 * (broker/loop.c); the shared subscription registry's router is used
 * under the registry's mutex (broker/share.c); the one retained trie is
 * behind broker_t's retained_lock (docs/architecture.md, "router/").
 */
#ifndef UVMQ_ROUTER_H
#define UVMQ_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"

/* Topic and filter limits (configurable upper bounds live in broker/). */
#define TOPIC_MAX_LEN 65535

/* ---- topic syntax (MQTT 4.7) ---- */

/* 1 when t[0..len) is a valid topic name for PUBLISH: non-empty, no '+' or
 * '#'. UTF-8 validity is the codec's job. */
int topic_name_valid(const char *t, size_t len);

/* 1 when f[0..len) is a valid topic filter: non-empty, '#' only as the whole
 * last level, '+' only as a whole level. A "$share/..." filter is valid
 * syntax only when it is "$share/<name>/<filter>" with a non-empty name
 * free of wildcards. */
int topic_filter_valid(const char *f, size_t len);

/* Number of levels in a topic name or filter ("a/b" -> 2, "" -> 1): what
 * the broker's max_topic_levels limits. Inline: every PUBLISH counts. */
static inline size_t topic_levels(const char *t, size_t len)
{
    size_t n = 1;
    for (size_t i = 0; i < len; i++) n += t[i] == '/';
    return n;
}

/* 1 when filter matches topic (both assumed valid). */
int topic_matches(const char *filter, size_t flen, const char *topic,
                  size_t tlen);

/* ---- subscriptions ---- */

typedef struct router_s router_t;

/* One merged match for one subscriber: QoS is the highest granted among the
 * subscriber's matching subscriptions; subscription identifiers of all of
 * them are in hits->ids[id_off .. id_off+id_count). */
typedef struct router_hit_s {
    void *sub;        /* borrowed subscriber pointer */
    uint8_t qos;      /* max granted QoS of the matching subscriptions */
    uint8_t rap;      /* 1 if any matching subscription has Retain As Published */
    uint32_t id_off;  /* into router_hits_t.ids */
    uint32_t id_count;
} router_hit_t;

/* Result vector, reused across calls (caller owns it; the steady state
 * allocates nothing once it has grown). Read the result through hit: it
 * is v, or, when a single node matched with nothing to filter or merge,
 * that node's own array (no copy), which stays valid only until the
 * router changes: no subscribe or unsubscribe while the hits are used. */
typedef struct router_hits_s {
    const router_hit_t *hit; /* the n hits */
    router_hit_t *v;         /* owned storage behind hit (when copied) */
    size_t n, cap;
    uint32_t *ids;
    size_t n_ids, cap_ids;
} router_hits_t;

router_t *router_create(void);
/* Frees every node; subscriber pointers are not touched. */
void router_destroy(router_t *rt);

/* Adds or replaces sub's subscription to filter with options (the
 * pkt.h PKT_SUBOPT_* byte) and subscription id (0 = none). Sets *existed to
 * 1 when it replaced one. Returns 0, or UVMQ_EINVAL for an invalid filter. */
int router_subscribe(router_t *rt, const char *filter, size_t len, void *sub,
                     uint8_t options, uint32_t sub_id, int *existed);

/* Removes sub's subscription to filter. Returns 0, or UVMQ_ENOTFOUND. */
int router_unsubscribe(router_t *rt, const char *filter, size_t len,
                       void *sub);

/* Removes every subscription of sub (on session end). Returns the count. */
size_t router_unsubscribe_all(router_t *rt, void *sub);

/* Fills hits (cleared first) with one entry per subscriber whose
 * subscriptions match topic, merged as described at router_hit_t.
 * Subscriptions with No Local whose subscriber == publisher are skipped.
 * Returns the number of hits (hits->hit[0..n), borrowed from rt: see
 * router_hits_t). */
size_t router_match(router_t *rt, const char *topic, size_t len,
                    const void *publisher, router_hits_t *hits);

/* Number of subscriptions currently stored. */
size_t router_count(const router_t *rt);

void router_hits_init(router_hits_t *h);
void router_hits_dispose(router_hits_t *h);

/* ---- retained messages ---- */

typedef struct router_retained_s router_retained_t;
typedef void (*router_retained_cb)(void *value, void *ctx);

router_retained_t *router_retained_create(void);
/* Calls free_cb on every stored value, then frees the trie. */
void router_retained_destroy(router_retained_t *r, router_retained_cb free_cb,
                             void *ctx);

/* Stores value under topic and returns the previous value (or NULL); the
 * caller releases the previous one. value == NULL deletes the topic. */
void *router_retained_set(router_retained_t *r, const char *topic,
                          size_t len, void *value);

/* Calls cb for every stored value whose topic matches filter. */
void router_retained_match(router_retained_t *r, const char *filter,
                           size_t len, router_retained_cb cb, void *ctx);

size_t router_retained_count(const router_retained_t *r);

#endif

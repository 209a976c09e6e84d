/*
 * interest.c - a loop's subscriptions, and a summary other loops read.
 *
 * Every subscribe and unsubscribe of a loop's sessions goes through here,
 * keeping three things in step: the session's own record (s->subs), the
 * loop's router (which only its thread reads) and, for other loops, a
 * summary of which topics it may want: a table of counters indexed by the
 * hash of an exact filter or of the first level of a filter with
 * wildcards further on, and a count of filters that start with a
 * wildcard. A publishing loop forwards a message only to loops whose
 * summary says they may match it (deliver.c forward), instead of to every
 * loop with a subscription. Hash collisions only forward in vain; a
 * subscription is counted (release) before its SUBACK is queued, so the
 * ordering guarantee of inbox.c holds for it as for n_subs. A second table
 * of the same shape counts only the filters of stored (persistent)
 * sessions: a publisher's acknowledgement waits for the loops it may
 * match (persist.c); s->stored says which table a filter is counted in,
 * and persist.c recounts a session's filters when it changes.
 *
 * Shared subscriptions ($share/<group>/<filter>) are recorded in the
 * session like the others (so they are stored and recovered alike) but
 * live in the broker's share registry (share.c), not in the loop's router
 * or summaries: a group gets a message from the publishing loop itself.
 */
#include "interest_int.h"

#include "loop_int.h"
#include "sess_int.h"
#include "share_int.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "../common/hash.h"
#include "../common/xmalloc.h"

/* The exact-filter and first-level keys use different seeds so "a" as a
 * filter and "a/+" share no slot. */
#define SEED_EXACT FNV1A_SEED
#define SEED_FIRST 0x9747b28cu

/* Counters in a loop's summaries: 16 KiB each. */
#define INTEREST_SLOTS 4096

/* A loop's summaries (loop_t.interest): written by the loop (its
 * subscribes), read by every loop that publishes (any thread; relaxed
 * increments, acquire reads, as the essay above says). */
struct interest_loop_s {
    _Atomic uint32_t any;                    /* filters starting with + or # */
    _Atomic uint32_t slots[INTEREST_SLOTS];  /* by exact or first-level key */
    /* The same for the filters of stored (persistent) sessions only. */
    _Atomic uint32_t durable_any;
    _Atomic uint32_t durable[INTEREST_SLOTS];
};

void interest__loop_init(loop_t *l)
{
    interest_loop_t *k = l->interest = xcalloc(1, sizeof *l->interest);
    atomic_init(&k->any, 0);
    atomic_init(&k->durable_any, 0);
    for (size_t i = 0; i < INTEREST_SLOTS; i++) {
        atomic_init(&k->slots[i], 0);
        atomic_init(&k->durable[i], 0);
    }
}

void interest__loop_dispose(loop_t *l)
{
    free(l->interest);
    l->interest = NULL;
}

/* Length of the first level of s[0..len). */
static size_t first_level(const char *s, size_t len)
{
    const char *slash = memchr(s, '/', len);
    return slash != NULL ? (size_t)(slash - s) : len;
}

/* The summary slot of filter f: 1 in *wild for a filter starting with a
 * wildcard (no slot), else the key of the whole filter (exact) or of its
 * first level (wildcards further on). */
static size_t key_of(const char *f, size_t len, int *wild)
{
    size_t first = first_level(f, len);
    *wild = first == 1 && (f[0] == '+' || f[0] == '#');
    if (*wild) return 0;
    if (memchr(f, '+', len) == NULL && memchr(f, '#', len) == NULL)
        return fnv1a(SEED_EXACT, f, len) % INTEREST_SLOTS;
    return fnv1a(SEED_FIRST, f, first) % INTEREST_SLOTS;
}

/* Adds delta (+1 or -1) to a summary counter. */
static void bump(_Atomic uint32_t *slot, int delta)
{
    if (delta > 0)
        atomic_fetch_add_explicit(slot, 1, memory_order_release);
    else
        atomic_fetch_sub_explicit(slot, 1, memory_order_relaxed);
}

/* Counts one filter in or out (delta +1 or -1) of l's summary and, when
 * durable, of its durable summary (same keys). */
static void count(loop_t *l, const char *f, size_t len, int delta, int durable)
{
    int wild = 0;
    size_t k = key_of(f, len, &wild);
    bump(wild ? &l->interest->any : &l->interest->slots[k], delta);
    if (durable) bump(wild ? &l->interest->durable_any : &l->interest->durable[k], delta);
}

void interest__topic_keys(const char *topic, size_t len, uint32_t key[2])
{
    key[0] = fnv1a(SEED_EXACT, topic, len) % INTEREST_SLOTS;
    key[1] = fnv1a(SEED_FIRST, topic, first_level(topic, len)) % INTEREST_SLOTS;
}

int interest__may_match(loop_t *l, const uint32_t key[2])
{
    return atomic_load_explicit(&l->interest->any, memory_order_acquire) > 0 ||
           atomic_load_explicit(&l->interest->slots[key[0]], memory_order_acquire) > 0 ||
           atomic_load_explicit(&l->interest->slots[key[1]], memory_order_acquire) > 0;
}

int interest__may_match_durable(loop_t *l, const uint32_t key[2])
{
    return atomic_load_explicit(&l->interest->durable_any, memory_order_acquire) > 0 ||
           atomic_load_explicit(&l->interest->durable[key[0]], memory_order_acquire) > 0 ||
           atomic_load_explicit(&l->interest->durable[key[1]], memory_order_acquire) > 0;
}

void interest__durable_count(loop_t *l, sess_t *s, int delta)
{
    for (uint32_t i = 0; i < s->n_subs; i++) {
        int wild = 0;
        size_t len = strlen(s->subs[i].filter);
        if (share__is_shared(s->subs[i].filter, len)) continue;
        size_t k = key_of(s->subs[i].filter, len, &wild);
        bump(wild ? &l->interest->durable_any : &l->interest->durable[k], delta);
    }
    if (s->shares) share__update(l, s, sess__online(s), delta > 0);
}

/* interest__subscribe for a shared filter: the registry, and s's record. */
static int subscribe_shared(loop_t *l, sess_t *s, const char *f, size_t len,
                            uint8_t options, uint32_t sub_id, int *existed)
{
    int rc = l->b->share != NULL ? share__join(l, s, f, len, options, sub_id, existed)
                                 : UVMQ_EINVAL;
    if (rc == 0) sess__sub_add(s, f, len, options, sub_id);
    return rc;
}

int interest__subscribe(loop_t *l, sess_t *s, const char *f, size_t len,
                    uint8_t options, uint32_t sub_id, int *existed)
{
    assert(!l->delivering); /* it may be reading the router's arrays */
    if (share__is_shared(f, len)) return subscribe_shared(l, s, f, len, options, sub_id, existed);
    int rc = router_subscribe(l->router, f, len, s, options, sub_id, existed);
    if (rc == 0) {
        if (!*existed) count(l, f, len, +1, s->stored);
        sess__sub_add(s, f, len, options, sub_id);
        loop__subs_changed(l);
    }
    return rc;
}

int interest__unsubscribe(loop_t *l, sess_t *s, const char *f, size_t len)
{
    assert(!l->delivering);
    if (share__is_shared(f, len)) {
        int rc = s->shares ? share__leave(l, s, f, len) : UVMQ_ENOTFOUND;
        if (rc == 0) sess__sub_remove(s, f, len);
        return rc;
    }
    int rc = router_unsubscribe(l->router, f, len, s);
    if (rc == 0) {
        count(l, f, len, -1, s->stored);
        sess__sub_remove(s, f, len);
        loop__subs_changed(l);
    }
    return rc;
}

void interest__unsubscribe_all(loop_t *l, sess_t *s)
{
    assert(!l->delivering);
    size_t removed = router_unsubscribe_all(l->router, s);
    for (uint32_t i = 0; i < s->n_subs; i++) {
        const char *f = s->subs[i].filter;
        size_t len = strlen(f);
        if (share__is_shared(f, len)) {
            if (s->shares) share__leave(l, s, f, len);
        } else if (removed > 0) {
            count(l, f, len, -1, s->stored);
        }
        free(s->subs[i].filter);
    }
    s->n_subs = 0;
    s->shares = 0;
    if (removed > 0) loop__subs_changed(l);
}

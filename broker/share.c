/*
 * share.c - shared subscriptions: "$share/<group>/<filter>" groups whose
 * members take turns at the matching messages, across worker loops.
 *
 * The sessions of one group may live on different loops, and a loop's
 * router holds only its own sessions, so groups are not in any router:
 * one registry for the broker (share_t, its own mutex) holds the groups,
 * keyed by "<group>/<filter>", in a router of its own keyed by the filter
 * (the subscriber of each entry is a group). The publishing loop, and
 * only it, matches a message against that router, picks one member per
 * matching group under the mutex (round robin, random or sticky; online
 * members first), and delivers to it: directly when the member's session
 * is its own, else with an ITEM_SHARE to the member's loop. Nothing of
 * this runs while no session is in a group (b->n_shared is 0).
 *
 * A member is a small refcounted record of one session's subscription:
 * the group list holds one reference and each ITEM_SHARE in flight one.
 * Its session pointer is written under the mutex, and only by the loop
 * that owns the session (join sets it, leave clears it), so any thread may
 * read it under the mutex and the owner may read it without; a member
 * whose session left keeps its memory until the last item for it ran. The
 * receiving loop delivers to the member's session if it is still in the
 * group and online, else picks again (another online member, or the
 * member itself if it is only offline), so a QoS 1/2 message is never
 * lost on the way. A group stays allocated while any member record
 * refers to it; it leaves the registry with its last member.
 *
 * Each group's member array is kept partitioned: online members first
 * (n_online of them), then offline ones, so every strategy picks in O(1).
 * Queue and inflight entries a group gave a session carry the group's id
 * (queue_entry_t.share): when the session disconnects, share__handoff
 * gives them to another member (docs/protocol.md "Shared subscriptions").
 */
#include "share_int.h"

#include "deliver_int.h"
#include "inbox_int.h"
#include "persist_int.h"
#include "sess_int.h"
#include "throttle_int.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "../common/hash.h"
#include "../common/log.h"
#include "../common/xmalloc.h"

/* Times one message may be picked again because the member it was for
 * left or went offline before its item ran; then it goes to that member
 * anyway (queued if it is offline) or, if it left, is dropped. */
#define SHARE_MAX_HOPS 4

#define BUCKETS_INITIAL 64

typedef struct share_group_s share_group_t;

/* One session's membership of one group. Fields marked "lock" are read
 * and written under the registry mutex; "owner" ones only by the loop of
 * the session. */
struct share_member_s {
    atomic_uint refs;      /* the group list's + one per ITEM_SHARE */
    uint32_t idx;          /* lock: position in group->mem */
    share_group_t *group;  /* immutable; holds a group reference */
    loop_t *loop;          /* immutable: the session's loop */
    sess_t *sess;          /* lock (written by the owner only), owner: the
                              session, NULL once it left the group */
    uint32_t sub_id;       /* owner: its subscription identifier, 0 none */
    uint8_t options;       /* owner: its PKT_SUBOPT_* byte */
    uint8_t online;        /* lock: in the online part of group->mem */
    uint8_t durable;       /* lock: the session is stored (persist.c) */
};

/* A group: its members, its place in the registry. Every field but refs
 * and the immutable ones is under the registry mutex. */
struct share_group_s {
    share_group_t *hnext;  /* registry bucket chain */
    atomic_uint refs;      /* member records alive that point here */
    uint32_t id;           /* queue tag; never 0, not reused */
    uint32_t hash;         /* of key */
    uint32_t rr;           /* round-robin cursor */
    uint8_t linked;        /* in the registry (has members) */
    share_member_t **mem;  /* [0, n_online) online, then offline */
    uint32_t n, n_online, cap;
    uint32_t name_len;     /* key[0..name_len) is the group name */
    uint32_t key_len;
    char key[];            /* "<group>/<filter>", NUL-terminated */
};

struct share_s {
    pthread_mutex_t mu;
    int strategy;             /* enum share_strategy */
    router_t *router;         /* groups by filter (subscriber = group) */
    router_hits_t hits;       /* used under mu */
    share_group_t **buckets;  /* by key */
    size_t n_buckets, n_groups;
    share_group_t **by_id;    /* ascending ids, for queue tags */
    size_t n_by_id, cap_by_id;
    uint32_t next_id;
};

/* One member a publish picked (share_loop_t.picks). */
struct share_pick_s {
    share_member_t *mb; /* a reference */
    uint8_t durable;
};

/* A per-thread xorshift32 for the random strategy (seeded on first use). */
static uint32_t rnd(void)
{
    static _Thread_local uint32_t x;
    if (x == 0) x = (uint32_t)(uv_hrtime() ^ (uintptr_t)&x) | 1u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}

long share__choose(int strategy, uint32_t n, uint32_t excl, uint32_t *rr, uint32_t hash,
                   uint32_t r)
{
    uint32_t m = n - (excl < n ? 1 : 0), k = 0;
    if (m == 0) return -1;
    if (strategy == SHARE_RANDOM)
        k = r % m;
    else if (strategy == SHARE_STICKY)
        k = hash % m;
    else
        k = (*rr)++ % m;
    return (long)(k >= excl ? k + 1 : k); /* skips excl (excl >= n: k < excl) */
}

int share__is_shared(const char *f, size_t len)
{
    return len > SHARE_PREFIX_LEN && memcmp(f, SHARE_PREFIX, SHARE_PREFIX_LEN) == 0;
}

/* ---- registry ---- */

share_t *share__create(int strategy)
{
    share_t *r = xcalloc(1, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    r->strategy = strategy;
    r->router = router_create();
    router_hits_init(&r->hits);
    r->n_buckets = BUCKETS_INITIAL;
    r->buckets = xcalloc(r->n_buckets, sizeof *r->buckets);
    return r;
}

/* The group of key in r, or NULL (lock held). */
static share_group_t *find_group(share_t *r, const char *key, size_t len, uint32_t h)
{
    share_group_t *g = r->buckets[h & (r->n_buckets - 1)];
    while (g != NULL && !(g->hash == h && g->key_len == len && memcmp(g->key, key, len) == 0))
        g = g->hnext;
    return g;
}

/* The linked group with this id, or NULL (lock held). */
static share_group_t *group_by_id(share_t *r, uint32_t id)
{
    size_t lo = 0, hi = r->n_by_id;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->by_id[mid]->id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < r->n_by_id && r->by_id[lo]->id == id ? r->by_id[lo] : NULL;
}

/* Doubles r's buckets (lock held). */
static void buckets_grow(share_t *r)
{
    size_t n = r->n_buckets * 2;
    share_group_t **v = xcalloc(n, sizeof *v);
    for (size_t i = 0; i < r->n_buckets; i++) {
        share_group_t *g = r->buckets[i];
        while (g != NULL) {
            share_group_t *next = g->hnext;
            g->hnext = v[g->hash & (n - 1)];
            v[g->hash & (n - 1)] = g;
            g = next;
        }
    }
    free(r->buckets);
    r->buckets = v;
    r->n_buckets = n;
}

/* Makes the group of key (name_len bytes of name, '/', the filter) and
 * links it, filter in r's router. Returns NULL when the router refuses
 * the filter (lock held). */
static share_group_t *group_create(share_t *r, const char *key, size_t len, size_t name_len,
                                   uint32_t h)
{
    share_group_t *g = xcalloc(1, sizeof *g + len + 1);
    int existed = 0;
    memcpy(g->key, key, len);
    g->key_len = (uint32_t)len;
    g->name_len = (uint32_t)name_len;
    g->hash = h;
    if (router_subscribe(r->router, key + name_len + 1, len - name_len - 1, g, 0, 0,
                         &existed) != 0) {
        free(g);
        return NULL;
    }
    g->id = ++r->next_id ? r->next_id : ++r->next_id; /* never 0 */
    g->linked = 1;
    if (r->n_groups >= 2 * r->n_buckets) buckets_grow(r);
    g->hnext = r->buckets[h & (r->n_buckets - 1)];
    r->buckets[h & (r->n_buckets - 1)] = g;
    r->n_groups++;
    if (r->n_by_id == r->cap_by_id) {
        r->cap_by_id = r->cap_by_id ? 2 * r->cap_by_id : 16;
        r->by_id = xrealloc(r->by_id, r->cap_by_id * sizeof *r->by_id);
    }
    /* ids grow, so the new one goes last, unless the counter wrapped */
    size_t at = r->n_by_id;
    while (at > 0 && r->by_id[at - 1]->id > g->id) at--;
    memmove(&r->by_id[at + 1], &r->by_id[at], (r->n_by_id - at) * sizeof *r->by_id);
    r->by_id[at] = g;
    r->n_by_id++;
    return g;
}

/* Takes g (no members left) out of the registry; its memory goes with the
 * last member record (lock held). */
static void group_unlink(share_t *r, share_group_t *g)
{
    share_group_t **pp = &r->buckets[g->hash & (r->n_buckets - 1)];
    while (*pp != g) pp = &(*pp)->hnext;
    *pp = g->hnext;
    r->n_groups--;
    for (size_t i = 0; i < r->n_by_id; i++) {
        if (r->by_id[i] != g) continue;
        memmove(&r->by_id[i], &r->by_id[i + 1], (r->n_by_id - i - 1) * sizeof *r->by_id);
        r->n_by_id--;
        break;
    }
    router_unsubscribe(r->router, g->key + g->name_len + 1, g->key_len - g->name_len - 1, g);
    g->linked = 0;
}

static void group_release(share_group_t *g)
{
    if (atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1) return;
    assert(!g->linked && g->n == 0);
    free(g->mem);
    free(g);
}

void share__member_release(share_member_t **mp)
{
    share_member_t *mb = *mp;
    *mp = NULL;
    if (mb == NULL || atomic_fetch_sub_explicit(&mb->refs, 1, memory_order_acq_rel) != 1)
        return;
    group_release(mb->group);
    free(mb);
}

static share_member_t *member_retain(share_member_t *mb)
{
    atomic_fetch_add_explicit(&mb->refs, 1, memory_order_relaxed);
    return mb;
}

void share__destroy(share_t *r)
{
    if (r == NULL) return;
    while (r->n_by_id > 0) {
        share_group_t *g = r->by_id[r->n_by_id - 1];
        share_member_t **mem = g->mem;
        uint32_t n = g->n;
        g->mem = NULL;
        g->n = g->n_online = 0;
        group_unlink(r, g);
        /* the records may free g: hold it until they are gone */
        atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
        for (uint32_t i = 0; i < n; i++) {
            mem[i]->sess = NULL;
            share__member_release(&mem[i]);
        }
        free(mem);
        group_release(g);
    }
    router_destroy(r->router);
    router_hits_dispose(&r->hits);
    free(r->buckets);
    free(r->by_id);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* ---- members (lock held) ---- */

/* Moves mb into (on) or out of the online part of g->mem. */
static void set_online(share_group_t *g, share_member_t *mb, int on)
{
    if (mb->online == (on != 0)) return;
    uint32_t b = on ? g->n_online++ : --g->n_online;
    share_member_t *other = g->mem[b];
    g->mem[mb->idx] = other;
    other->idx = mb->idx;
    g->mem[b] = mb;
    mb->idx = b;
    mb->online = on != 0;
}

/* The member of s in g, or NULL. */
static share_member_t *find_member(const share_group_t *g, const sess_t *s)
{
    for (uint32_t i = 0; i < g->n; i++)
        if (g->mem[i]->sess == s) return g->mem[i];
    return NULL;
}

/* Adds a member record for s (owned by l) to g, with the list's
 * reference. */
static share_member_t *member_add(share_group_t *g, loop_t *l, sess_t *s, int online)
{
    share_member_t *mb = xcalloc(1, sizeof *mb);
    atomic_init(&mb->refs, 1);
    mb->group = g;
    atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
    mb->loop = l;
    mb->sess = s;
    if (g->n == g->cap) {
        g->cap = g->cap ? 2 * g->cap : 4;
        g->mem = xrealloc(g->mem, g->cap * sizeof *g->mem);
    }
    mb->idx = g->n;
    g->mem[g->n++] = mb;
    set_online(g, mb, online);
    return mb;
}

/* Takes mb out of g's list (the list's reference is the caller's now). */
static void member_remove(share_group_t *g, share_member_t *mb)
{
    set_online(g, mb, 0); /* now in the offline part, as the last one is */
    share_member_t *last = g->mem[--g->n];
    g->mem[mb->idx] = last;
    last->idx = mb->idx;
    mb->sess = NULL;
}

/* Picks a member of g other than the one at index excl (>= g->n: none):
 * an online one, or, with offline_ok, any. */
static share_member_t *pick(const share_t *r, share_group_t *g, uint32_t excl, int offline_ok,
                            uint32_t hash)
{
    long i = share__choose(r->strategy, g->n_online, excl, &g->rr, hash, rnd());
    if (i < 0 && offline_ok) i = share__choose(r->strategy, g->n, excl, &g->rr, hash, rnd());
    return i < 0 ? NULL : g->mem[i];
}

/* ---- joining and leaving ---- */

/* Splits shared filter f into its key ("<group>/<filter>") and the
 * group name's length; 0 when it is not "$share/<name>/<filter>". */
static size_t split(const char *f, size_t len, const char **key, size_t *key_len)
{
    *key = f + SHARE_PREFIX_LEN;
    *key_len = len - SHARE_PREFIX_LEN;
    const char *slash = memchr(*key, '/', *key_len);
    if (slash == NULL || slash == *key || (size_t)(slash - *key) + 1 >= *key_len) return 0;
    return (size_t)(slash - *key);
}

int share__join(loop_t *l, sess_t *s, const char *f, size_t len, uint8_t options,
                uint32_t sub_id, int *existed)
{
    share_t *r = l->b->share;
    const char *key = NULL;
    size_t klen = 0, name_len = split(f, len, &key, &klen);
    uint32_t h = fnv1a(FNV1A_SEED, key, klen);
    int rc = 0;
    *existed = 0;
    if (name_len == 0) return UVMQ_EINVAL;
    pthread_mutex_lock(&r->mu);
    share_group_t *g = find_group(r, key, klen, h);
    if (g == NULL) g = group_create(r, key, klen, name_len, h);
    share_member_t *mb = g != NULL ? find_member(g, s) : NULL;
    if (g == NULL) {
        rc = UVMQ_EINVAL;
    } else if (mb != NULL) {
        *existed = 1;
    } else {
        mb = member_add(g, l, s, sess__online(s));
        /* before the SUBACK is queued: ordering guarantee (inbox.c) */
        atomic_fetch_add_explicit(&l->b->n_shared, 1, memory_order_release);
    }
    if (mb != NULL) {
        mb->options = options;
        mb->sub_id = sub_id;
        mb->durable = s->stored;
        s->shares = 1;
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int share__leave(loop_t *l, sess_t *s, const char *f, size_t len)
{
    share_t *r = l->b->share;
    const char *key = NULL;
    size_t klen = 0, name_len = split(f, len, &key, &klen);
    share_member_t *mb = NULL;
    if (r == NULL || name_len == 0) return UVMQ_ENOTFOUND;
    pthread_mutex_lock(&r->mu);
    share_group_t *g = find_group(r, key, klen, fnv1a(FNV1A_SEED, key, klen));
    if (g != NULL) mb = find_member(g, s);
    if (mb != NULL) {
        member_remove(g, mb);
        atomic_fetch_sub_explicit(&l->b->n_shared, 1, memory_order_relaxed);
        if (g->n == 0) group_unlink(r, g);
    }
    pthread_mutex_unlock(&r->mu);
    if (mb == NULL) return UVMQ_ENOTFOUND;
    share__member_release(&mb); /* the list's reference */
    return 0;
}

void share__update(loop_t *l, sess_t *s, int on, int durable)
{
    share_t *r = l->b->share;
    if (r == NULL || !s->shares) return;
    pthread_mutex_lock(&r->mu);
    for (uint32_t i = 0; i < s->n_subs; i++) {
        const char *f = s->subs[i].filter, *key = NULL;
        size_t klen = 0, len = strlen(f);
        if (!share__is_shared(f, len) || split(f, len, &key, &klen) == 0) continue;
        share_group_t *g = find_group(r, key, klen, fnv1a(FNV1A_SEED, key, klen));
        share_member_t *mb = g != NULL ? find_member(g, s) : NULL;
        if (mb == NULL) continue;
        set_online(g, mb, on);
        mb->durable = durable != 0;
    }
    pthread_mutex_unlock(&r->mu);
}

/* ---- delivery ---- */

/* Delivers m to mb's session (mb is l's and still in its group) with the
 * member's granted QoS, Retain As Published and subscription id. */
static void deliver_local(loop_t *l, share_member_t *mb, msg_t *m)
{
    uint8_t granted = mb->options & PKT_SUBOPT_QOS_MASK;
    uint8_t qos = m->qos < granted ? m->qos : granted;
    uint8_t retain = (mb->options & PKT_SUBOPT_RAP) ? m->retain : 0; /* MQTT-3.3.1-12/13 */
    uint32_t id = mb->sub_id;
    deliver__sess_share(l, mb->sess, m, qos, retain, &id, id != 0 ? 1 : 0, mb->group->id);
}

/* Posts m to mb's loop (ITEM_SHARE; takes the reference mb is). */
static void post(loop_t *l, share_member_t *mb, msg_t *m, uint8_t hops, uint8_t report,
                 uint8_t track, unsigned from)
{
    loop_t *t = mb->loop;
    loop_item_t it = {.kind = ITEM_SHARE, .m = msg_retain(m), .ptr = mb, .hops = hops,
                      .report = report, .track = track, .seq = from};
    inbox__post(l, t->index, &it);
    if (track) { /* as forward() does: the target counts it down */
        throttle__forwarding(l, t, m);
        atomic_fetch_add_explicit(&broker__msg(m)->fwd_pending, 1, memory_order_relaxed);
    }
}

/* A slot in l's reused pick vector. */
/* A loop's share state (loop_t.share): the members a publish picked,
 * reused; it holds no references between publishes. */
struct share_loop_s {
    struct share_pick_s *picks;
    size_t cap_picks;
};

void share__loop_init(loop_t *l)
{
    l->share = xcalloc(1, sizeof *l->share);
}

void share__loop_dispose(loop_t *l)
{
    if (l->share == NULL) return;
    free(l->share->picks);
    free(l->share);
    l->share = NULL;
}

static struct share_pick_s *pick_slot(loop_t *l, size_t i)
{
    if (i == l->share->cap_picks) {
        l->share->cap_picks = l->share->cap_picks ? 2 * l->share->cap_picks : 8;
        l->share->picks = xrealloc(l->share->picks, l->share->cap_picks * sizeof *l->share->picks);
    }
    return &l->share->picks[i];
}

size_t share__publish(loop_t *l, msg_t *m)
{
    share_t *r = l->b->share;
    size_t n = 0;
    if (r == NULL) return 0;
    /* Pick under the lock, deliver after it: a delivery takes other
     * locks (persist, retained) and may be slow. */
    pthread_mutex_lock(&r->mu);
    size_t hits = router_match(r->router, m->topic, m->topic_len, NULL, &r->hits);
    for (size_t i = 0; i < hits; i++) {
        share_member_t *mb = pick(r, r->hits.hit[i].sub, UINT32_MAX, 1, broker__msg(m)->origin_hash);
        if (mb == NULL) continue;
        struct share_pick_s *p = pick_slot(l, n++);
        p->mb = member_retain(mb);
        p->durable = mb->durable;
    }
    pthread_mutex_unlock(&r->mu);
    int track = m->qos > 0 && l->b->cfg->throttle_publishers;
    for (size_t i = 0; i < n; i++) {
        share_member_t *mb = l->share->picks[i].mb;
        if (mb->loop == l) {
            deliver_local(l, mb, m); /* a stored session's entry is in this
                                        tick's batch: the ack waits for it */
            share__member_release(&mb);
            continue;
        }
        uint8_t report = l->share->picks[i].durable && persist__report_needed(l, m);
        if (report) /* relaxed: the outbox flush publishes it with the item */
            atomic_fetch_add_explicit(&broker__msg(m)->persist_wait, 1, memory_order_relaxed);
        post(l, mb, m, 0, report, (uint8_t)track, l->index);
    }
    if (n > 0) /* a topic no group matches writes no shared line */
        atomic_fetch_add_explicit(&l->b->cnt.shared, n, memory_order_relaxed);
    return n;
}

/* Another member of mb's group for m: online only, unless mb left the
 * group (then any). Returns a reference, or NULL. */
static share_member_t *repick(share_t *r, share_member_t *mb, msg_t *m, int offline_ok)
{
    share_member_t *nb = NULL;
    pthread_mutex_lock(&r->mu);
    share_group_t *g = mb->group;
    uint32_t excl = mb->sess != NULL ? mb->idx : UINT32_MAX;
    if (g->linked) nb = pick(r, g, excl, offline_ok, broker__msg(m)->origin_hash);
    if (nb != NULL) member_retain(nb);
    pthread_mutex_unlock(&r->mu);
    return nb;
}

/* Runs an ITEM_SHARE's delivery on l. Returns 1 when the item went on to
 * another loop with its report (the next loop settles it). */
static int item_deliver(loop_t *l, share_member_t *mb, loop_item_t *it)
{
    msg_t *m = it->m;
    sess_t *s = mb->sess; /* ours: only this loop clears it */
    if (s != NULL && sess__online(s)) {
        deliver_local(l, mb, m);
        return 0;
    }
    share_member_t *nb = it->hops < SHARE_MAX_HOPS ? repick(l->b->share, mb, m, s == NULL) : NULL;
    if (nb == NULL) {
        if (s != NULL) {
            deliver_local(l, mb, m); /* offline, and no one else is online */
        } else {
            CNT_INC(l->b, shared_dropped);
            log_debug("shared subscription %s: message on %s dropped, no member left",
                      mb->group->key, m->topic);
        }
        return 0;
    }
    CNT_INC(l->b, shared_moved);
    if (nb->loop == l) {
        deliver_local(l, nb, m);
        share__member_release(&nb);
        return 0;
    }
    post(l, nb, m, (uint8_t)(it->hops + 1), it->report, it->track, (unsigned)it->seq);
    return it->report;
}

void share__item(loop_t *l, loop_item_t *it)
{
    share_member_t *mb = it->ptr;
    size_t ops = persist__ops(l);
    int passed = 0;
    if (!l->stopping) passed = item_deliver(l, mb, it);
    if (it->report && !passed) persist__delivered(l, it->m, ops);
    if (it->track) throttle__delivered(l, it->m, (unsigned)it->seq);
    share__member_release(&mb);
    msg_release(&it->m);
}

/* ---- hand-off at disconnect ---- */

/* A member of group `id`, other than s's own membership, for m: online
 * first, else offline. Returns a reference, or NULL. */
static share_member_t *pick_other(share_t *r, uint32_t id, const sess_t *s, const msg_t *m)
{
    share_member_t *nb = NULL;
    pthread_mutex_lock(&r->mu);
    share_group_t *g = group_by_id(r, id);
    if (g != NULL) {
        share_member_t *own = find_member(g, s);
        nb = pick(r, g, own != NULL ? own->idx : UINT32_MAX, 1, broker__msg(m)->origin_hash);
    }
    if (nb != NULL) member_retain(nb);
    pthread_mutex_unlock(&r->mu);
    return nb;
}

/* Gives m to member nb (a reference, taken) for a hand-off. */
static void give(loop_t *l, share_member_t *nb, msg_t *m)
{
    CNT_INC(l->b, shared_moved);
    if (nb->loop != l) {
        post(l, nb, m, 0, 0, 0, l->index);
        return;
    }
    deliver_local(l, nb, m);
    share__member_release(&nb);
}

/* inflight_foreach callback: collects the packet ids of QoS 1 slots a
 * group gave (QoS 2 ones already sent stay: MQTT-4.8.2-4/5). */
typedef struct ids_s {
    uint16_t *v;
    size_t n;
} ids_t;

static void collect_slot(inflight_slot_t *slot, void *ctx)
{
    ids_t *x = ctx;
    if (slot->state == INFLIGHT_WAIT_PUBACK && slot->e.share != 0 && slot->e.m != NULL)
        x->v[x->n++] = slot->packet_id;
}

/* The unacknowledged QoS 1 messages of s, in the order they were sent. */
static void handoff_inflight(loop_t *l, share_t *r, sess_t *s)
{
    inflight_t *f = &s->inflight;
    ids_t x = {xmalloc(f->count * sizeof *x.v), 0};
    inflight_foreach(f, collect_slot, &x);
    for (size_t i = 0; i < x.n; i++) {
        inflight_slot_t *slot = inflight_get(f, x.v[i]);
        share_member_t *nb = pick_other(r, slot->e.share, s, slot->e.m);
        if (nb == NULL) continue; /* no other member: it stays */
        msg_t *m = msg_retain(slot->e.m);
        uint64_t seq = slot->e.seq;
        inflight_complete(f, x.v[i], PKT_PUBACK);
        persist__entry_del(l, s, seq); /* in the batch that adds the new one
                                          when the member is a stored
                                          session: they all live on loop 0 */
        give(l, nb, m);
        msg_release(&m);
    }
    free(x.v);
}

/* The queued messages of s a group gave, in order; the others stay in
 * their order. */
static void handoff_queue(loop_t *l, share_t *r, sess_t *s)
{
    queue_entry_t e;
    for (size_t n = s->queue.len; n > 0 && queue_pop(&s->queue, &e) == 0; n--) {
        share_member_t *nb = e.share != 0 ? pick_other(r, e.share, s, e.m) : NULL;
        if (nb == NULL) {
            queue_push_bounded(&s->queue, &e, 0, 0); /* no limit: cannot fail */
            continue;
        }
        persist__entry_del(l, s, e.seq);
        give(l, nb, e.m);
        queue_entry_dispose(&e);
    }
}

void share__handoff(loop_t *l, sess_t *s)
{
    share_t *r = l->b->share;
    if (r == NULL || !s->shares) return;
    if (s->inflight.count > 0) handoff_inflight(l, r, s);
    if (s->queue.len > 0) handoff_queue(l, r, s);
}

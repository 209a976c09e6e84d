/*
 * sess.c - sessions: the sharded map keyed by client id, the session
 * lifecycle (create, detach at close, expiry, destroy) and wills.
 *
 * The map has session_shards shards (a setting, 64 by default), each a
 * chained hash table behind its own mutex (shard = hash(client id) %
 * session_shards), so a loop finds or creates a session atomically. A
 * session is owned, for its whole life, by the loop that created it (a
 * connection for it on another loop moves there: inbox.c); only that loop
 * touches it, ends it and sweeps it (expiry, delayed wills). A session
 * with expiry 0 ends with its connection; others stay offline, keep their
 * subscriptions and queue QoS 1/2 messages until they expire.
 */
#include "sess_int.h"

#include "access_int.h"
#include "deliver_int.h"
#include "interest_int.h"
#include "persist_int.h"
#include "share_int.h"
#include "throttle_int.h"

#include <stdlib.h>
#include <string.h>

#include "../common/hash.h"
#include "../common/log.h"
#include "../common/xmalloc.h"

#define SHARD_INITIAL_BUCKETS 16

/* The hash of a client id (the shard and the bucket come from it). */
static uint32_t hash_id(const char *id, size_t len)
{
    return fnv1a(FNV1A_SEED, id, len);
}

/* The shard of a client id's hash. */
sess_shard_t *sess__shard(sess_map_t *m, uint32_t hash)
{
    return &m->shards[hash % m->n_shards];
}

/* The bucket of hash in sh: the bits above the shard choice. */
static size_t bucket_of(const sess_shard_t *sh, uint32_t hash)
{
    return (hash / sh->n_shards) & (sh->n_buckets - 1);
}

void sess__map_init(sess_map_t *m, size_t n_shards)
{
    m->n_shards = n_shards ? n_shards : 1;
    m->shards = xcalloc(m->n_shards, sizeof *m->shards);
    for (size_t i = 0; i < m->n_shards; i++) {
        sess_shard_t *sh = &m->shards[i];
        pthread_mutex_init(&sh->mu, NULL);
        sh->n_shards = (uint32_t)m->n_shards;
        sh->n_buckets = SHARD_INITIAL_BUCKETS;
        sh->buckets = xcalloc(sh->n_buckets, sizeof *sh->buckets);
        sh->count = 0;
    }
}

void sess__map_dispose(sess_map_t *m)
{
    for (size_t i = 0; i < m->n_shards; i++) {
        sess_shard_t *sh = &m->shards[i];
        for (size_t k = 0; k < sh->n_buckets; k++) {
            sess_t *s = sh->buckets[k];
            while (s != NULL) {
                sess_t *next = s->next;
                sess__destroy(NULL, s);
                s = next;
            }
        }
        free(sh->buckets);
        sh->buckets = NULL;
        sh->count = 0;
        pthread_mutex_destroy(&sh->mu);
    }
    free(m->shards);
    m->shards = NULL;
    m->n_shards = 0;
}

/* The session with this id in sh, or NULL (lock held). */
static sess_t *lookup(sess_shard_t *sh, uint32_t h, const char *id, size_t len)
{
    sess_t *s = sh->buckets[bucket_of(sh, h)];
    /* strnlen first: never read past the stored id's NUL */
    while (s != NULL && !(s->hash == h && strnlen(s->client_id, len + 1) == len &&
                          memcmp(s->client_id, id, len) == 0))
        s = s->next;
    return s;
}

sess_t *sess__find(sess_map_t *m, const char *id, size_t len)
{
    uint32_t h = hash_id(id, len);
    sess_shard_t *sh = sess__shard(m, h);
    pthread_mutex_lock(&sh->mu);
    sess_t *s = lookup(sh, h, id, len);
    pthread_mutex_unlock(&sh->mu);
    return s;
}

loop_t *sess__owner_of(sess_map_t *m, const char *id, size_t len)
{
    uint32_t h = hash_id(id, len);
    sess_shard_t *sh = sess__shard(m, h);
    pthread_mutex_lock(&sh->mu);
    sess_t *s = lookup(sh, h, id, len);
    loop_t *owner = s != NULL ? s->loop : NULL;
    pthread_mutex_unlock(&sh->mu);
    return owner;
}

/* Doubles the bucket array of sh (lock held). */
static void shard_grow(sess_shard_t *sh)
{
    size_t old_n = sh->n_buckets;
    sess_t **old = sh->buckets;
    sh->n_buckets = old_n * 2;
    sh->buckets = xcalloc(sh->n_buckets, sizeof *sh->buckets);
    for (size_t k = 0; k < old_n; k++) {
        sess_t *s = old[k];
        while (s != NULL) {
            sess_t *next = s->next;
            size_t bi = bucket_of(sh, s->hash);
            s->next = sh->buckets[bi];
            sh->buckets[bi] = s;
            s = next;
        }
    }
    free(old);
}

/* Links s into sh (lock held). */
static void insert_locked(sess_shard_t *sh, sess_t *s)
{
    /* Two sessions per bucket on average before growing: a chain step
     * compares one hash; the array costs each session 4-8 bytes, not 8-16. */
    if (sh->count >= 2 * sh->n_buckets) shard_grow(sh);
    size_t bi = bucket_of(sh, s->hash);
    s->next = sh->buckets[bi];
    sh->buckets[bi] = s;
    sh->count++;
}

void sess__insert(sess_map_t *m, sess_t *s)
{
    sess_shard_t *sh = sess__shard(m, s->hash);
    pthread_mutex_lock(&sh->mu);
    insert_locked(sh, s);
    pthread_mutex_unlock(&sh->mu);
}

/* Unlinks s from sh (lock held). */
static void unlink_locked(sess_shard_t *sh, sess_t *s)
{
    sess_t **pp = &sh->buckets[bucket_of(sh, s->hash)];
    while (*pp != NULL && *pp != s) pp = &(*pp)->next;
    if (*pp == s) {
        *pp = s->next;
        sh->count--;
    }
    s->next = NULL;
}

void sess__unlink(sess_map_t *m, sess_t *s)
{
    sess_shard_t *sh = sess__shard(m, s->hash);
    pthread_mutex_lock(&sh->mu);
    unlink_locked(sh, s);
    pthread_mutex_unlock(&sh->mu);
}

size_t sess__count(sess_map_t *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_shards; i++) {
        pthread_mutex_lock(&m->shards[i].mu);
        n += m->shards[i].count;
        pthread_mutex_unlock(&m->shards[i].mu);
    }
    return n;
}

sess_t *sess__create(const char *id, size_t len, const broker_config_t *cfg)
{
    /* The id follows the fixed fields (offsetof: not the tail padding). */
    sess_t *s = xcalloc(1, offsetof(sess_t, client_id) + len + 1);
    memcpy(s->client_id, id, len);
    s->hash = hash_id(id, len);
    queue_init(&s->queue, cfg->max_queued_messages, cfg->max_queued_bytes);
    inflight_init(&s->inflight, cfg->max_inflight ? cfg->max_inflight : 1);
    return s;
}

void sess__own(loop_t *l, sess_t *s)
{
    s->lprev = NULL;
    s->lnext = l->sessions;
    if (l->sessions != NULL) l->sessions->lprev = s;
    l->sessions = s;
}

/* Removes s from l's list and l's router (s is being destroyed). */
static void disown(loop_t *l, sess_t *s)
{
    if (s->lprev != NULL) s->lprev->lnext = s->lnext;
    else if (l->sessions == s) l->sessions = s->lnext;
    if (s->lnext != NULL) s->lnext->lprev = s->lprev;
    s->lprev = s->lnext = NULL;
    interest__unsubscribe_all(l, s);
    throttle__congestion_check(l, s, 1);
}

void sess__destroy(loop_t *l, sess_t *s)
{
    if (l != NULL) disown(l, s);
    for (size_t i = 0; i < s->n_subs; i++) free(s->subs[i].filter);
    free(s->subs);
    queue_dispose(&s->queue);
    inflight_dispose(&s->inflight);
    if (s->will != NULL) msg_release(&s->will);
    access__sess_free(s);
    free(s);
}

/* Entries the subs array has room for when it holds n: 4, then powers
 * of two (no capacity field: it would cost every idle session 4 bytes). */
static uint32_t subs_room(uint32_t n)
{
    uint32_t room = 4;
    while (room < n) room *= 2;
    return room;
}

/* Index of the subscription on filter f, or n_subs. */
static size_t sub_index(const sess_t *s, const char *f, size_t len)
{
    size_t i = 0;
    while (i < s->n_subs &&
           !(strlen(s->subs[i].filter) == len && memcmp(s->subs[i].filter, f, len) == 0))
        i++;
    return i;
}

void sess__sub_add(sess_t *s, const char *f, size_t len, uint8_t options,
                   uint32_t sub_id)
{
    size_t i = sub_index(s, f, len);
    if (i == s->n_subs) {
        if (s->subs == NULL || s->n_subs == subs_room(s->n_subs))
            s->subs = xrealloc(s->subs, subs_room(s->n_subs + 1) * sizeof *s->subs);
        s->subs[i].filter = xstrndup(f, len);
        s->n_subs++;
    }
    s->subs[i].options = options;
    s->subs[i].sub_id = sub_id;
}

int sess__sub_remove(sess_t *s, const char *f, size_t len)
{
    size_t i = sub_index(s, f, len);
    if (i == s->n_subs) return UVMQ_ENOTFOUND;
    free(s->subs[i].filter);
    s->subs[i] = s->subs[--s->n_subs];
    return 0;
}

void sess__assign_id(char out[22])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t rnd[8];
    if (uv_random(NULL, NULL, rnd, sizeof rnd, 0, NULL) != 0) {
        uint64_t t = uv_hrtime(); /* fallback: still unique enough per boot */
        memcpy(rnd, &t, sizeof rnd);
    }
    memcpy(out, "uvmq-", 5);
    for (size_t i = 0; i < sizeof rnd; i++) {
        out[5 + 2 * i] = hex[rnd[i] >> 4];
        out[6 + 2 * i] = hex[rnd[i] & 15];
    }
    out[21] = '\0';
}

/* Takes the will out of s, stamping its expiry from now. */
static msg_t *take_will(sess_t *s)
{
    msg_t *m = s->will;
    s->will = NULL;
    s->will_at = 0;
    if (m != NULL && s->will_expiry != 0) /* not yet shared: still ours */
        m->expiry_at = msg_now_ms() + (uint64_t)s->will_expiry * 1000;
    return m;
}

void sess__publish_will(loop_t *l, sess_t *s)
{
    msg_t *m = take_will(s);
    if (m == NULL) return;
    if (broker_topic_is_sys(m->topic, m->topic_len)) { /* as a PUBLISH there */
        log_debug("will of %s dropped: $SYS topics are the broker's", s->client_id);
        msg_release(&m);
        return;
    }
    if (!access__may_publish(l, s, m->topic, m->topic_len)) { /* counted, logged */
        msg_release(&m);
        return;
    }
    log_debug("publishing will of %s", s->client_id);
    deliver__publish(l, m);
    msg_release(&m);
}

void sess__detach(loop_t *l, sess_t *s, int publish_will, int keep)
{
    if (s->conn != NULL) s->conn->sess = NULL;
    s->conn = NULL;
    s->disconnected_at = uv_now(&l->uv);
    throttle__congestion_check(l, s, 1); /* offline: drops past the soft limit */
    if (l->stopping) { /* shutdown: no wills (a stored will waits for the
                          restart); sessions freed at exit */
        if (s->stored) persist__session_put(l, s);
        return;
    }
    if (s->shares) { /* its groups prefer other members from now on */
        share__update(l, s, 0, s->stored);
        if (!keep) share__handoff(l, s);
    }
    if (publish_will && s->will != NULL) {
        /* v5 Will Delay: publish when the delay passes or the session
         * ends, whichever comes first (MQTT-3.1.3-9). */
        if (s->will_delay == 0 || s->expiry == 0)
            sess__publish_will(l, s);
        else
            s->will_at = s->disconnected_at + (uint64_t)s->will_delay * 1000;
    } else if (s->will != NULL) {
        msg_release(&s->will); /* MQTT-3.1.2-10: normal DISCONNECT */
    }
    if (s->expiry == 0 && !keep)
        sess__end(l, s);
    else if (s->stored && !keep)
        persist__session_put(l, s); /* offline since now, its will */
}

void sess__end(loop_t *l, sess_t *s)
{
    sess_shard_t *sh = sess__shard(&l->b->sessions, s->hash);
    /* Unlinked first: no other loop can find s once it is being freed. */
    pthread_mutex_lock(&sh->mu);
    unlink_locked(sh, s);
    pthread_mutex_unlock(&sh->mu);
    share__handoff(l, s); /* what stayed at disconnect, if a member came */
    persist__session_del(l, s);
    sess__destroy(l, s);
}

void sess__reset(loop_t *l, sess_t *s)
{
    share__handoff(l, s); /* the old session ends: MQTT 5 section 4.8.2 */
    persist__session_del(l, s);
    interest__unsubscribe_all(l, s);
    queue_clear(&s->queue);
    throttle__congestion_check(l, s, 1);
    inflight_clear(&s->inflight);
    if (s->will != NULL) msg_release(&s->will);
    s->will_at = 0;
    s->overflow_logged = 0;
}

int sess__find_or_create(loop_t *l, const char *id, size_t len, sess_t **out,
                         loop_t **owner, loop_t *create_on)
{
    uint32_t h = hash_id(id, len);
    sess_shard_t *sh = sess__shard(&l->b->sessions, h);
    int rc = SESS_LOCAL;
    pthread_mutex_lock(&sh->mu);
    sess_t *s = lookup(sh, h, id, len);
    if (s == NULL && create_on == l) {
        s = sess__create(id, len, l->b->cfg);
        s->loop = l; /* for the session's whole life */
        insert_locked(sh, s);
        rc = SESS_NEW;
    } else if (s == NULL || s->loop != l) {
        rc = SESS_REMOTE;
    }
    *owner = s != NULL ? s->loop : create_on; /* read under the lock: s may
                                                 be freed after it */
    pthread_mutex_unlock(&sh->mu);
    if (rc == SESS_NEW) sess__own(l, s);
    *out = rc == SESS_REMOTE ? NULL : s;
    return rc;
}

static int expired(const sess_t *s, uint64_t now)
{
    return s->expiry != SESS_NEVER_EXPIRES &&
           now - s->disconnected_at >= (uint64_t)s->expiry * 1000;
}

void sess__sweep(loop_t *l, uint64_t now)
{
    sess_t *next = NULL;
    size_t queued = 0, inflight = 0, online = 0;
    for (sess_t *s = l->sessions; s != NULL; s = next) {
        next = s->lnext; /* publishing a will never ends another session */
        queued += s->queue.len;
        inflight += s->inflight.count;
        online += s->conn != NULL;
        if (s->conn != NULL) continue;
        int gone = expired(s, now);
        if (s->will != NULL && (gone || (s->will_at != 0 && now >= s->will_at))) {
            sess__publish_will(l, s);
            if (!gone && s->stored) persist__session_put(l, s); /* will gone */
        }
        if (gone) {
            log_debug("session %s expired", s->client_id);
            CNT_INC(l->b, sess_expired);
            sess__end(l, s);
        }
    }
    /* for the stats (broker_stats): other threads read them */
    atomic_store_explicit(&l->queued, queued, memory_order_relaxed);
    atomic_store_explicit(&l->inflight, inflight, memory_order_relaxed);
    atomic_store_explicit(&l->online, online, memory_order_relaxed);
}

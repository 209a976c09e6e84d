/*
 * sess.c - sessions: the sharded map keyed by client id, the session
 * lifecycle (create, detach at close, expiry, destroy) and wills.
 *
 * The map has SESS_SHARDS shards, each a chained hash table behind its own
 * mutex (shard = hash(client id) % SESS_SHARDS), so a later multi-loop
 * broker can look sessions up and take them over from any loop. A session
 * with expiry 0 ends with its connection; others stay offline, keep their
 * subscriptions and queue QoS 1/2 messages until they expire.
 */
#include "broker_int.h"

#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

#define SHARD_INITIAL_BUCKETS 16

/* FNV-1a, 32 bits. */
static uint32_t hash_id(const char *id, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)id[i];
        h *= 16777619u;
    }
    return h;
}

static sess_shard_t *shard_of(sess_map_t *m, uint32_t hash)
{
    return &m->shards[hash % SESS_SHARDS];
}

static size_t bucket_of(const sess_shard_t *sh, uint32_t hash)
{
    return (hash / SESS_SHARDS) & (sh->n_buckets - 1);
}

void sess__map_init(sess_map_t *m)
{
    for (size_t i = 0; i < SESS_SHARDS; i++) {
        sess_shard_t *sh = &m->shards[i];
        pthread_mutex_init(&sh->mu, NULL);
        sh->n_buckets = SHARD_INITIAL_BUCKETS;
        sh->buckets = xcalloc(sh->n_buckets, sizeof *sh->buckets);
        sh->count = 0;
    }
}

void sess__map_dispose(sess_map_t *m, broker_t *b)
{
    for (size_t i = 0; i < SESS_SHARDS; i++) {
        sess_shard_t *sh = &m->shards[i];
        for (size_t k = 0; k < sh->n_buckets; k++) {
            sess_t *s = sh->buckets[k];
            while (s != NULL) {
                sess_t *next = s->next;
                sess__destroy(b, s);
                s = next;
            }
        }
        free(sh->buckets);
        sh->buckets = NULL;
        sh->count = 0;
        pthread_mutex_destroy(&sh->mu);
    }
}

sess_t *sess__find(sess_map_t *m, const char *id, size_t len)
{
    uint32_t h = hash_id(id, len);
    sess_shard_t *sh = shard_of(m, h);
    sess_t *s = NULL;
    pthread_mutex_lock(&sh->mu);
    for (s = sh->buckets[bucket_of(sh, h)]; s != NULL; s = s->next) {
        if (s->hash == h && s->id_len == len && memcmp(s->client_id, id, len) == 0)
            break;
    }
    pthread_mutex_unlock(&sh->mu);
    return s;
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

void sess__insert(sess_map_t *m, sess_t *s)
{
    sess_shard_t *sh = shard_of(m, s->hash);
    pthread_mutex_lock(&sh->mu);
    if (sh->count >= sh->n_buckets) shard_grow(sh);
    size_t bi = bucket_of(sh, s->hash);
    s->next = sh->buckets[bi];
    sh->buckets[bi] = s;
    sh->count++;
    pthread_mutex_unlock(&sh->mu);
}

void sess__unlink(sess_map_t *m, sess_t *s)
{
    sess_shard_t *sh = shard_of(m, s->hash);
    pthread_mutex_lock(&sh->mu);
    sess_t **pp = &sh->buckets[bucket_of(sh, s->hash)];
    while (*pp != NULL && *pp != s) pp = &(*pp)->next;
    if (*pp == s) {
        *pp = s->next;
        sh->count--;
    }
    s->next = NULL;
    pthread_mutex_unlock(&sh->mu);
}

size_t sess__count(sess_map_t *m)
{
    size_t n = 0;
    for (size_t i = 0; i < SESS_SHARDS; i++) {
        pthread_mutex_lock(&m->shards[i].mu);
        n += m->shards[i].count;
        pthread_mutex_unlock(&m->shards[i].mu);
    }
    return n;
}

sess_t *sess__create(const char *id, size_t len, const broker_config_t *cfg)
{
    sess_t *s = xcalloc(1, sizeof *s);
    s->client_id = xstrndup(id, len);
    s->id_len = len;
    s->hash = hash_id(id, len);
    queue_init(&s->queue, cfg->max_queued_messages, cfg->max_queued_bytes);
    inflight_init(&s->inflight, cfg->max_inflight ? cfg->max_inflight : 1);
    return s;
}

void sess__destroy(broker_t *b, sess_t *s)
{
    if (b->router != NULL) {
        pthread_rwlock_wrlock(&b->router_lock);
        router_unsubscribe_all(b->router, s);
        pthread_rwlock_unlock(&b->router_lock);
    }
    for (size_t i = 0; i < s->n_subs; i++) free(s->subs[i].filter);
    free(s->subs);
    queue_dispose(&s->queue);
    inflight_dispose(&s->inflight);
    if (s->will != NULL) msg_release(&s->will);
    free(s->client_id);
    free(s);
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
        if (s->n_subs == s->cap_subs) {
            s->cap_subs = s->cap_subs ? s->cap_subs * 2 : 4;
            s->subs = xrealloc(s->subs, s->cap_subs * sizeof *s->subs);
        }
        s->subs[i].filter = xstrndup(f, len);
        s->n_subs++;
    }
    s->subs[i].options = options;
    s->subs[i].sub_id = sub_id;
}

int sess__sub_remove(sess_t *s, const char *f, size_t len)
{
    size_t i = sub_index(s, f, len);
    if (i == s->n_subs) return ERR_NOTFOUND;
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
    log_debug("publishing will of %s on %s", s->client_id, m->topic);
    broker__publish(l, m);
    msg_release(&m);
}

void sess__detach(loop_t *l, sess_t *s, int publish_will)
{
    broker_t *b = l->b;
    if (s->conn != NULL) s->conn->sess = NULL;
    s->conn = NULL;
    s->disconnected_at = uv_now(&l->uv);
    if (b->stopping) return; /* shutdown: no wills; sessions freed at exit */
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
    if (s->expiry == 0) {
        sess__unlink(&b->sessions, s);
        sess__destroy(b, s);
    }
}

static int expired(const sess_t *s, uint64_t now)
{
    return s->expiry != SESS_NEVER_EXPIRES &&
           now - s->disconnected_at >= (uint64_t)s->expiry * 1000;
}

/* Collects (shard lock held): due wills into l->mvec, expired sessions
 * unlinked onto *dead. */
static void sweep_shard(loop_t *l, sess_shard_t *sh, uint64_t now, sess_t **dead)
{
    for (size_t k = 0; k < sh->n_buckets; k++) {
        sess_t **pp = &sh->buckets[k];
        while (*pp != NULL) {
            sess_t *s = *pp;
            int gone = s->conn == NULL && expired(s, now);
            int will_due = s->conn == NULL && s->will != NULL &&
                           (gone || (s->will_at != 0 && now >= s->will_at));
            if (will_due) {
                if (l->n_mvec == l->cap_mvec) {
                    l->cap_mvec = l->cap_mvec ? l->cap_mvec * 2 : 16;
                    l->mvec = xrealloc(l->mvec, l->cap_mvec * sizeof *l->mvec);
                }
                l->mvec[l->n_mvec++] = take_will(s);
            }
            if (gone) {
                *pp = s->next;
                sh->count--;
                s->next = *dead;
                *dead = s;
            } else {
                pp = &s->next;
            }
        }
    }
}

void sess__sweep(loop_t *l, uint64_t now)
{
    broker_t *b = l->b;
    sess_t *dead = NULL;
    l->n_mvec = 0;
    for (size_t i = 0; i < SESS_SHARDS; i++) {
        sess_shard_t *sh = &b->sessions.shards[i];
        pthread_mutex_lock(&sh->mu);
        sweep_shard(l, sh, now, &dead);
        pthread_mutex_unlock(&sh->mu);
    }
    for (size_t i = 0; i < l->n_mvec; i++) {
        broker__publish(l, l->mvec[i]);
        msg_release(&l->mvec[i]);
    }
    l->n_mvec = 0;
    while (dead != NULL) {
        sess_t *s = dead;
        dead = s->next;
        log_debug("session %s expired", s->client_id);
        sess__destroy(b, s);
    }
}

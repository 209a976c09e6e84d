/*
 * cache.c - the verified-credentials cache: (user, stored hash, password)
 * triples that passed passwd_verify lately, so a reconnect storm does not
 * run argon2 once per client.
 *
 * An entry is only a digest: HMAC-SHA256 under a key drawn from RAND_bytes
 * when the cache is made, over the user name's length and bytes, the
 * stored hash's length and bytes, then the password. No password is kept,
 * a dump of the process shows nothing to try offline without the key, and
 * a reloaded file with a new hash misses. Entries sit in a fixed array of
 * max slots, chained from a power-of-two bucket table by the digest's
 * first bytes (random under the key, so no one can aim at a bucket), and
 * on a list from oldest to newest, which gives eviction and expiry in
 * O(1). One mutex guards it all; the HMAC runs outside it.
 */
#include "auth.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "common/log.h"
#include "common/xmalloc.h"

#define DIGEST_LEN 32 /* SHA-256 */
#define KEY_LEN    32
#define NONE       UINT32_MAX
/* The most slots a cache gets, whatever max asks (about 1 GiB). */
#define SLOTS_MAX (1u << 24)

/* One verified triple. */
typedef struct entry_s {
    uint8_t digest[DIGEST_LEN];
    uint64_t made_ms;      /* when it was verified */
    uint32_t chain;        /* next in its bucket, or next free */
    uint32_t older, newer; /* the age list; NONE at its ends */
} entry_t;

struct authcache_s {
    pthread_mutex_t mu;
    EVP_MAC_CTX *mac; /* HMAC-SHA256 with the key set: copied for each digest */
    size_t max;       /* 0: caching off */
    size_t count;
    uint64_t ttl_ms;
    entry_t *e;       /* max slots */
    uint32_t *bucket; /* mask + 1 chain heads */
    uint32_t mask;
    uint32_t oldest, newest, free_list;
};

/* ---- the table ---- */

/* Empties the table: every slot free, every bucket empty. */
static void reset(authcache_t *c)
{
    for (size_t i = 0; i < c->max; i++)
        c->e[i].chain = i + 1 < c->max ? (uint32_t)(i + 1) : NONE;
    for (size_t i = 0; c->max && i <= c->mask; i++)
        c->bucket[i] = NONE;
    c->free_list = c->max ? 0 : NONE;
    c->oldest = c->newest = NONE;
    c->count = 0;
}

static uint32_t *bucket_of(authcache_t *c, const uint8_t *d)
{
    uint32_t h;
    memcpy(&h, d, sizeof h);
    return &c->bucket[h & c->mask];
}

/* The slot holding digest d, or NONE. */
static uint32_t find(authcache_t *c, const uint8_t *d)
{
    uint32_t i = *bucket_of(c, d);
    while (i != NONE && memcmp(c->e[i].digest, d, DIGEST_LEN) != 0)
        i = c->e[i].chain;
    return i;
}

/* Takes slot i out of its bucket and the age list, and frees it. */
static void drop(authcache_t *c, uint32_t i)
{
    entry_t *x = &c->e[i];
    uint32_t *link = bucket_of(c, x->digest);
    while (*link != i)
        link = &c->e[*link].chain;
    *link = x->chain;
    *(x->older == NONE ? &c->oldest : &c->e[x->older].newer) = x->newer;
    *(x->newer == NONE ? &c->newest : &c->e[x->newer].older) = x->older;
    x->chain = c->free_list;
    c->free_list = i;
    c->count--;
}

/* Takes a free slot for d, made at now_ms, as the newest entry. */
static void add(authcache_t *c, const uint8_t *d, uint64_t now_ms)
{
    uint32_t i = c->free_list, *head = bucket_of(c, d);
    entry_t *x = &c->e[i];
    c->free_list = x->chain;
    memcpy(x->digest, d, DIGEST_LEN);
    x->made_ms = now_ms;
    x->chain = *head;
    *head = i;
    x->older = c->newest;
    x->newer = NONE;
    *(c->newest == NONE ? &c->oldest : &c->e[c->newest].newer) = i;
    c->newest = i;
    c->count++;
}

/* 1 when slot i was made ttl or more before now_ms (or after it: a clock
 * that went back expires rather than extends). */
static int expired(const authcache_t *c, uint32_t i, uint64_t now_ms)
{
    return now_ms < c->e[i].made_ms || now_ms - c->e[i].made_ms >= c->ttl_ms;
}

/* ---- digests ---- */

static void put_len(EVP_MAC_CTX *m, size_t n)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)n >> (8 * i));
    EVP_MAC_update(m, b, sizeof b);
}

/* The entry digest of (user, stored, pass) into d. Returns 0, or -1 when
 * OpenSSL fails (out of memory). */
static int digest(authcache_t *c, const char *user, size_t ulen, const char *stored,
                  const char *pass, size_t plen, uint8_t d[DIGEST_LEN])
{
    size_t n = 0;
    size_t slen = strlen(stored);
    int ok;
    pthread_mutex_lock(&c->mu);
    EVP_MAC_CTX *m = EVP_MAC_CTX_dup(c->mac);
    pthread_mutex_unlock(&c->mu);
    if (m == NULL) return -1;
    put_len(m, ulen);
    ok = EVP_MAC_update(m, (const uint8_t *)user, ulen);
    put_len(m, slen);
    ok = ok && EVP_MAC_update(m, (const uint8_t *)stored, slen);
    ok = ok && EVP_MAC_update(m, (const uint8_t *)pass, plen);
    ok = ok && EVP_MAC_final(m, d, &n, DIGEST_LEN) && n == DIGEST_LEN;
    EVP_MAC_CTX_free(m);
    return ok ? 0 : -1;
}

/* HMAC-SHA256 keyed with fresh random bytes, or NULL. */
static EVP_MAC_CTX *new_mac(void)
{
    uint8_t key[KEY_LEN];
    char sha256[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, sha256, 0),
                           OSSL_PARAM_construct_end()};
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *m = mac ? EVP_MAC_CTX_new(mac) : NULL;
    if (m && (RAND_bytes(key, sizeof key) != 1 || !EVP_MAC_init(m, key, sizeof key, params))) {
        EVP_MAC_CTX_free(m);
        m = NULL;
    }
    EVP_MAC_free(mac); /* the context keeps its own reference */
    OPENSSL_cleanse(key, sizeof key);
    return m;
}

/* ---- the cache ---- */

/* Makes a cache; see auth.h. Its max slots (about 56 bytes each) are
 * allocated now. When no random key can be had it logs and runs with
 * caching off. */
authcache_t *authcache_create(size_t max, uint64_t ttl_ms)
{
    authcache_t *c = xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    c->ttl_ms = ttl_ms;
    if (max > SLOTS_MAX) max = SLOTS_MAX;
    if (max > 0 && (c->mac = new_mac()) == NULL) {
        log_error("authcache: no HMAC key (OpenSSL failed); credentials are not cached");
        max = 0;
    }
    c->max = max;
    if (max > 0) {
        size_t buckets = 1;
        while (buckets < max)
            buckets *= 2;
        c->mask = (uint32_t)(buckets - 1);
        c->e = xmalloc(max * sizeof *c->e);
        c->bucket = xmalloc(buckets * sizeof *c->bucket);
    }
    reset(c);
    return c;
}

/* Frees *cp; *cp is NULL. */
void authcache_destroy(authcache_t **cp)
{
    authcache_t *c = *cp;
    *cp = NULL;
    if (c == NULL) return;
    EVP_MAC_CTX_free(c->mac);
    pthread_mutex_destroy(&c->mu);
    free(c->e);
    free(c->bucket);
    free(c);
}

/* 1 on a live entry for the triple; an expired one is dropped. */
int authcache_lookup(authcache_t *c, const char *user, size_t ulen, const char *stored,
                     const char *pass, size_t plen, uint64_t now_ms)
{
    uint8_t d[DIGEST_LEN];
    int hit = 0;
    if (c->max == 0 || digest(c, user, ulen, stored, pass, plen, d) != 0) return 0;
    pthread_mutex_lock(&c->mu);
    uint32_t i = find(c, d);
    if (i != NONE && expired(c, i, now_ms))
        drop(c, i);
    else
        hit = i != NONE;
    pthread_mutex_unlock(&c->mu);
    return hit;
}

/* Records a verification; expired entries at the old end go first, then
 * the oldest when the cache is full. A triple already there is renewed. */
void authcache_insert(authcache_t *c, const char *user, size_t ulen, const char *stored,
                      const char *pass, size_t plen, uint64_t now_ms)
{
    uint8_t d[DIGEST_LEN];
    if (c->max == 0 || digest(c, user, ulen, stored, pass, plen, d) != 0) return;
    pthread_mutex_lock(&c->mu);
    while (c->oldest != NONE && expired(c, c->oldest, now_ms))
        drop(c, c->oldest);
    uint32_t i = find(c, d);
    if (i != NONE) drop(c, i);
    if (c->count == c->max) drop(c, c->oldest);
    add(c, d, now_ms);
    pthread_mutex_unlock(&c->mu);
}

void authcache_clear(authcache_t *c)
{
    pthread_mutex_lock(&c->mu);
    reset(c);
    pthread_mutex_unlock(&c->mu);
}

size_t authcache_count(authcache_t *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->count;
    pthread_mutex_unlock(&c->mu);
    return n;
}

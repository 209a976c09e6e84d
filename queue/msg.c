/*
 * msg.c - refcounted messages, their cached PUBLISH heads, and the
 * per-thread size-class pool both come from.
 *
 * A message is ONE block: msg_t, then its owner area (msg_owner), then the
 * topic (NUL-terminated), then the encoded forwardable v5 properties, then
 * the payload. Blocks up to 64 KiB
 * (and the small head buffers) come from per-thread pools of power-of-two
 * classes, so creating and releasing same-size messages allocates nothing
 * once warm.
 *
 * Remote free: a hidden header before each pooled block names the pool it
 * came from. A block released on its own thread joins that thread's free
 * list; released on another thread it is pushed (CAS, lock-free) onto the
 * owner pool's return stack for its class, which the owner takes whole
 * (one atomic exchange) when its free list for that class runs dry. So a
 * loop that only publishes and a loop that only delivers still reach a
 * steady state with no allocation. A pool outlives its thread while blocks
 * it made are alive: refs counts the thread (1) plus its blocks held
 * outside the owner's free lists; once the thread has exited ("dead"),
 * blocks coming home are freed, and the last one frees the pool.
 */
#include "queue.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/xmalloc.h"
#include "../packets/pkt.h"

/* Classes are 64 B << c for c in [0, POOL_CLASSES): 64 B .. 64 KiB. */
#define POOL_MIN_SHIFT 6
#define POOL_CLASSES 11
/* Per class and thread, keep at most this many blocks or bytes. */
#define POOL_MAX_BLOCKS 1024
#define POOL_MAX_BYTES ((size_t)8 << 20)

/* A free block reuses its first bytes as the list link. */
typedef struct pool_node_s {
    struct pool_node_s *next;
} pool_node_t;

typedef struct pool_class_s {
    pool_node_t *head;
    size_t count;
} pool_class_t;

typedef struct pool_s {
    pool_class_t cls[POOL_CLASSES];               /* owner thread only */
    _Atomic(pool_node_t *) ret[POOL_CLASSES];     /* remote frees (MPSC) */
    atomic_size_t refs; /* 1 while the thread lives + blocks malloc'd from
                           this pool, not yet freed, and not on cls[] */
    atomic_int dead;    /* the owner thread has exited */
} pool_t;

/* Hidden header before every block pool_alloc returns (16 bytes keeps the
 * block max-aligned). owner is NULL for blocks too big to pool. */
typedef struct block_hdr_s {
    pool_t *owner;
    void *pad;
} block_hdr_t;

/* The owner area follows msg_t in a block at least this aligned. */
_Static_assert(sizeof(block_hdr_t) % MSG_OWNER_ALIGN == 0 &&
                   sizeof(msg_t) % MSG_OWNER_ALIGN == 0,
               "msg_owner must stay MSG_OWNER_ALIGN-aligned");

static _Thread_local pool_t *my_pool;
static pthread_key_t pool_key;
static pthread_once_t pool_key_once = PTHREAD_ONCE_INIT;

/* A cached head: this prefix, then `len` encoded bytes. m->head[v] points
 * at the bytes; the length travels with them so readers need no second
 * atomic. */
typedef struct head_buf_s {
    uint32_t alloc_size;
    uint32_t len;
    uint8_t bytes[];
} head_buf_t;

static size_t class_size(int c)
{
    return (size_t)1 << (POOL_MIN_SHIFT + c);
}

/* Index of the smallest class holding n bytes, or -1 when n is too big. */
static int pool_class_of(size_t n)
{
    int c = 0;
    while (c < POOL_CLASSES && class_size(c) < n) c++;
    return c < POOL_CLASSES ? c : -1;
}

static void on_thread_exit(void *arg);

static void make_pool_key(void)
{
    if (pthread_key_create(&pool_key, on_thread_exit) != 0) abort();
}

/* The calling thread's pool, created on first use; its exit hook marks it
 * dead (the main thread calls msg_pool_drain instead). */
static pool_t *pool_get(void)
{
    if (my_pool == NULL) {
        pool_t *p = xcalloc(1, sizeof *p);
        for (int c = 0; c < POOL_CLASSES; c++) atomic_init(&p->ret[c], NULL);
        atomic_init(&p->refs, 1);
        atomic_init(&p->dead, 0);
        pthread_once(&pool_key_once, make_pool_key);
        pthread_setspecific(pool_key, p);
        my_pool = p;
    }
    return my_pool;
}

/* Drops n references of p; the last one frees it. */
static void pool_unref(pool_t *p, size_t n)
{
    if (n > 0 && atomic_fetch_sub(&p->refs, n) == n) free(p);
}

/* Frees every block on p's return stacks; returns how many. */
static size_t reap_returns(pool_t *p)
{
    size_t n = 0;
    for (int c = 0; c < POOL_CLASSES; c++) {
        pool_node_t *node = atomic_exchange(&p->ret[c], NULL);
        while (node != NULL) {
            pool_node_t *next = node->next;
            free(node);
            node = next;
            n++;
        }
    }
    return n;
}

/* A block p gets back from another thread. The extra reference keeps p
 * alive across the push and the dead check; seq_cst on both sides means
 * either the exiting owner's final exchange sees the block or we see
 * dead and reap it ourselves. */
static void pool_push_remote(pool_t *p, int c, pool_node_t *node)
{
    atomic_fetch_add(&p->refs, 1);
    pool_node_t *head = atomic_load_explicit(&p->ret[c], memory_order_relaxed);
    do {
        node->next = head;
    } while (!atomic_compare_exchange_weak(&p->ret[c], &head, node));
    if (atomic_load(&p->dead)) pool_unref(p, reap_returns(p));
    pool_unref(p, 1);
}

/* Refills the owner's empty list of class c from its return stack. */
static void take_returns(pool_t *p, int c)
{
    pool_node_t *node = atomic_exchange_explicit(&p->ret[c], NULL, memory_order_acquire);
    size_t n = 0;
    p->cls[c].head = node;
    for (; node != NULL; node = node->next) n++;
    p->cls[c].count = n;
    atomic_fetch_sub(&p->refs, n); /* back on the free list; never the last */
}

/* Returns a block of at least n bytes (NULL when n > limit or memory is
 * short) and its real size in *alloc_size, which pool_free needs. Blocks
 * from malloc go through try_malloc, so xmalloc_count sees every miss. */
static void *pool_alloc(size_t n, size_t limit, uint32_t *alloc_size)
{
    size_t total = n + sizeof(block_hdr_t);
    int c = pool_class_of(total);
    block_hdr_t *h = NULL;
    pool_t *p = NULL;

    if (c < 0) {
        *alloc_size = (uint32_t)total;
        h = total <= UINT32_MAX
                ? try_malloc(total, limit > SIZE_MAX - sizeof *h ? SIZE_MAX : limit + sizeof *h)
                : NULL;
    } else if (n <= limit) {
        p = pool_get();
        *alloc_size = (uint32_t)class_size(c);
        if (p->cls[c].head == NULL) take_returns(p, c);
        if (p->cls[c].head != NULL) {
            h = (block_hdr_t *)p->cls[c].head;
            p->cls[c].head = p->cls[c].head->next;
            p->cls[c].count--;
        } else {
            h = try_malloc(class_size(c), class_size(c));
        }
        if (h != NULL) atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    }
    if (h == NULL) return NULL;
    h->owner = p;
    return h + 1;
}

/* Returns a block to its pool: the owner's free list when released on the
 * owner thread (or to the system past the bound, 1024 blocks / 8 MiB per
 * class), else the owner's return stack. Unpooled blocks go to free(). */
static void pool_free(void *ptr, uint32_t alloc_size)
{
    block_hdr_t *h = (block_hdr_t *)ptr - 1;
    pool_t *p = h->owner;
    int c = pool_class_of(alloc_size);
    size_t bound = POOL_MAX_BLOCKS;

    if (p == NULL || c < 0) {
        free(h);
    } else if (p != my_pool) {
        pool_push_remote(p, c, (pool_node_t *)h);
    } else {
        if (POOL_MAX_BYTES / alloc_size < bound) bound = POOL_MAX_BYTES / alloc_size;
        if (p->cls[c].count < bound) {
            pool_node_t *node = (pool_node_t *)h;
            node->next = p->cls[c].head;
            p->cls[c].head = node;
            p->cls[c].count++;
            atomic_fetch_sub_explicit(&p->refs, 1, memory_order_relaxed);
        } else {
            free(h);
            atomic_fetch_sub_explicit(&p->refs, 1, memory_order_relaxed);
        }
    }
}

/* Frees every block on the calling thread's lists and return stacks; the
 * pool itself too when none of its blocks is still in use. Worker threads
 * call it before they exit; any thread may call it again later. */
void msg_pool_drain(void)
{
    pool_t *p = my_pool;
    if (p == NULL) return;
    for (int c = 0; c < POOL_CLASSES; c++) {
        while (p->cls[c].head != NULL) {
            pool_node_t *next = p->cls[c].head->next;
            free(p->cls[c].head);
            p->cls[c].head = next;
        }
        p->cls[c].count = 0;
    }
    atomic_fetch_sub(&p->refs, reap_returns(p)); /* they were counted */
    if (atomic_load(&p->refs) == 1) { /* nothing of ours is alive */
        pthread_setspecific(pool_key, NULL);
        my_pool = NULL;
        free(p);
    }
}

/* Thread exit: free what can be freed, mark the pool dead so blocks still
 * alive elsewhere are freed when they come home, drop the thread's ref. */
static void on_thread_exit(void *arg)
{
    pool_t *p = arg;
    if (p != my_pool) return; /* drained and freed already */
    msg_pool_drain();
    if (my_pool == NULL) return;
    my_pool = NULL;
    atomic_store(&p->dead, 1);
    pool_unref(p, reap_returns(p) + 1);
}

/* Creates a message holding copies of topic, props and payload in one
 * block, after a zeroed owner area of owner_size bytes; see queue.h. topic
 * need not be NUL-terminated. Returns NULL when payload_len > max_payload,
 * topic_len > 65535, or memory is short. */
msg_t *msg_create(const char *topic, size_t topic_len, const uint8_t *payload,
                  size_t payload_len, const uint8_t *props, size_t props_len,
                  uint8_t qos, uint8_t retain, size_t max_payload, size_t owner_size)
{
    size_t overhead = sizeof(msg_t) + owner_size + topic_len + 1 + props_len;
    size_t limit = max_payload > SIZE_MAX - overhead ? SIZE_MAX : max_payload + overhead;
    uint32_t alloc_size = 0;
    msg_t *m = NULL;

    assert(owner_size <= UINT16_MAX); /* the creator's constant, not input */
    if (payload_len > max_payload || topic_len > UINT16_MAX || props_len > UINT32_MAX)
        return NULL;
    m = pool_alloc(overhead + payload_len, limit, &alloc_size);
    if (m == NULL) return NULL;

    memset(m, 0, sizeof(*m) + owner_size); /* the owner area starts zeroed */
    atomic_init(&m->refs, 1);
    for (int v = 0; v < MSG_VARIANTS; v++) atomic_init(&m->head[v], NULL);
    m->qos = qos;
    m->retain = retain;
    m->topic_len = (uint16_t)topic_len;
    m->payload_len = (uint32_t)payload_len;
    m->props_len = (uint32_t)props_len;
    m->alloc_size = alloc_size;
    m->owner_size = (uint16_t)owner_size;
    m->topic = (char *)msg_owner(m) + owner_size;
    if (topic_len > 0) memcpy(m->topic, topic, topic_len);
    m->topic[topic_len] = '\0';
    if (props_len > 0) {
        m->props = (uint8_t *)m->topic + topic_len + 1;
        memcpy(m->props, props, props_len);
    }
    if (payload_len > 0) {
        m->payload = (uint8_t *)m->topic + topic_len + 1 + props_len;
        memcpy(m->payload, payload, payload_len);
    }
    return m;
}

/* Adds a reference (relaxed: the caller already holds one); returns m. */
msg_t *msg_retain(msg_t *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

static head_buf_t *head_buf_of(uint8_t *bytes)
{
    return (head_buf_t *)(bytes - offsetof(head_buf_t, bytes));
}

/* Drops a reference and sets *mp to NULL. The last reference frees the
 * cached heads and returns the block to this thread's pool. *mp == NULL
 * is accepted and does nothing (an inflight slot past PUBREC holds none). */
void msg_release(msg_t **mp)
{
    msg_t *m = *mp;

    *mp = NULL;
    if (m == NULL) return;
    /* acq_rel: our writes happen before the free, and the freeing thread
     * sees every other holder's writes. */
    unsigned old = atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel);
    assert(old > 0);
    if (old != 1) return;
    for (int v = 0; v < MSG_VARIANTS; v++) {
        uint8_t *h = atomic_load_explicit(&m->head[v], memory_order_acquire);
        if (h != NULL) pool_free(head_buf_of(h), head_buf_of(h)->alloc_size);
    }
    pool_free(m, m->alloc_size);
}

/* Encodes the QoS 0 head for one variant into a fresh buffer; NULL when
 * the head cannot be encoded or memory is short. */
static uint8_t *head_encode(const msg_t *m, int v5, int retain)
{
    pkt_publish_t pub;
    uint8_t version = v5 ? PKT_V5 : PKT_V311;
    size_t need, written = 0;
    uint32_t alloc_size = 0;
    head_buf_t *hb = NULL;

    memset(&pub, 0, sizeof(pub));
    pub.retain = retain ? 1 : 0;
    pub.topic.p = (const uint8_t *)m->topic;
    pub.topic.len = m->topic_len;
    pub.payload.len = m->payload_len; /* counted, never read */
    pub.props.raw.p = m->props;
    pub.props.raw.len = m->props_len;
    need = pkt_publish_head_size(&pub, version);
    if (need == 0 || need > UINT32_MAX - sizeof(head_buf_t)) return NULL;
    hb = pool_alloc(sizeof(head_buf_t) + need, sizeof(head_buf_t) + need, &alloc_size);
    if (hb == NULL) return NULL;
    if (pkt_encode_publish_head(&pub, version, hb->bytes, need, &written) != 0) {
        pool_free(hb, alloc_size);
        return NULL;
    }
    hb->alloc_size = alloc_size;
    hb->len = (uint32_t)written;
    return hb->bytes;
}

/* Returns the cached QoS 0 head for (v5, retain), encoding it on first use;
 * see queue.h. Thread-safe: racing encoders publish with one
 * compare-exchange and the loser frees its copy. */
const uint8_t *msg_head(msg_t *m, int v5, int retain, size_t *len)
{
    int v = MSG_VARIANT(v5, retain);
    uint8_t *h = NULL;

    *len = 0;
    if (m->expiry_at != 0) return NULL; /* Message Expiry Interval is per delivery */
    h = atomic_load_explicit(&m->head[v], memory_order_acquire);
    if (h == NULL) {
        uint8_t *mine = head_encode(m, v5, retain);
        if (mine == NULL) return NULL;
        /* release: the bytes and their length are visible to any thread
         * that acquires the pointer. */
        if (atomic_compare_exchange_strong_explicit(&m->head[v], &h, mine,
                                                    memory_order_acq_rel,
                                                    memory_order_acquire)) {
            h = mine;
        } else {
            pool_free(head_buf_of(mine), head_buf_of(mine)->alloc_size);
        }
    }
    *len = head_buf_of(h)->len;
    return h;
}

/* 1 when m carries an expiry and now_ms has reached it. */
int msg_expired(const msg_t *m, uint64_t now_ms)
{
    return m->expiry_at != 0 && now_ms >= m->expiry_at;
}

/* Wall-clock milliseconds since the epoch (CLOCK_REALTIME). */
uint64_t msg_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

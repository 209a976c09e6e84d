/*
 * msg.c - refcounted messages, their cached PUBLISH heads, and the
 * per-thread size-class pool both come from.
 *
 * A message is ONE block: msg_t, then the topic (NUL-terminated), then the
 * encoded forwardable v5 properties, then the payload. Blocks up to 64 KiB
 * (and the small head buffers) come from per-thread free lists of power-of-
 * two classes, so creating and releasing same-size messages in a loop
 * allocates nothing once warm. A block released on another thread simply
 * joins that thread's list.
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

static _Thread_local pool_class_t pool[POOL_CLASSES];
/* Set once this thread has kept a block, so the key's destructor drains
 * its lists when the thread exits (the main thread calls msg_pool_drain). */
static _Thread_local int pool_registered;
static pthread_key_t pool_key;
static pthread_once_t pool_key_once = PTHREAD_ONCE_INIT;

/* A cached head: this prefix, then `len` encoded bytes. m->head[v] points
 * at the bytes; the length travels with them so readers need no second
 * atomic (m->head_len is left 0). */
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

/* Returns a block of at least n bytes (NULL when n > limit or memory is
 * short) and its real size in *alloc_size, which pool_free needs. Pooled
 * blocks go through try_malloc too, so xmalloc_count sees every miss. */
static void *pool_alloc(size_t n, size_t limit, uint32_t *alloc_size)
{
    int c = pool_class_of(n);
    void *p = NULL;

    if (c < 0) {
        *alloc_size = (uint32_t)n;
        p = n <= UINT32_MAX ? try_malloc(n, limit) : NULL;
    } else if (pool[c].head != NULL) {
        *alloc_size = (uint32_t)class_size(c);
        p = pool[c].head;
        pool[c].head = pool[c].head->next;
        pool[c].count--;
    } else {
        *alloc_size = (uint32_t)class_size(c);
        p = n <= limit ? try_malloc(class_size(c), class_size(c)) : NULL;
    }
    return p;
}

static void on_thread_exit(void *unused)
{
    pool_registered = 0; /* a later free re-registers (another round) */
    msg_pool_drain();
}

static void make_pool_key(void)
{
    if (pthread_key_create(&pool_key, on_thread_exit) != 0) abort();
}

/* Arranges for this thread's lists to be drained when it exits. */
static void pool_register_thread(void)
{
    pthread_once(&pool_key_once, make_pool_key);
    pthread_setspecific(pool_key, &pool_registered);
    pool_registered = 1;
}

/* Returns a block to the calling thread's list, or to the system when it
 * is not a class size or the list is at its bound (1024 blocks / 8 MiB). */
static void pool_free(void *p, uint32_t alloc_size)
{
    int c = pool_class_of(alloc_size);
    size_t bound = POOL_MAX_BLOCKS;

    if (c >= 0 && POOL_MAX_BYTES / alloc_size < bound) bound = POOL_MAX_BYTES / alloc_size;
    if (c >= 0 && alloc_size == class_size(c) && pool[c].count < bound) {
        pool_node_t *node = p;
        if (!pool_registered) pool_register_thread();
        node->next = pool[c].head;
        pool[c].head = node;
        pool[c].count++;
    } else {
        free(p);
    }
}

/* Frees every block on the calling thread's lists. Threads other than
 * main also drain automatically when they exit. */
void msg_pool_drain(void)
{
    for (int c = 0; c < POOL_CLASSES; c++) {
        while (pool[c].head != NULL) {
            pool_node_t *next = pool[c].head->next;
            free(pool[c].head);
            pool[c].head = next;
        }
        pool[c].count = 0;
    }
}

/* Creates a message holding copies of topic, props and payload in one
 * block; see queue.h. topic need not be NUL-terminated. Returns NULL when
 * payload_len > max_payload, topic_len > 65535, or memory is short. */
msg_t *msg_create(const char *topic, size_t topic_len, const uint8_t *payload,
                  size_t payload_len, const uint8_t *props, size_t props_len,
                  uint8_t qos, uint8_t retain, size_t max_payload)
{
    size_t overhead = sizeof(msg_t) + topic_len + 1 + props_len;
    size_t limit = max_payload > SIZE_MAX - overhead ? SIZE_MAX : max_payload + overhead;
    uint32_t alloc_size = 0;
    msg_t *m = NULL;

    if (payload_len > max_payload || topic_len > UINT16_MAX || props_len > UINT32_MAX)
        return NULL;
    m = pool_alloc(overhead + payload_len, limit, &alloc_size);
    if (m == NULL) return NULL;

    memset(m, 0, sizeof(*m));
    atomic_init(&m->refs, 1);
    for (int v = 0; v < MSG_VARIANTS; v++) atomic_init(&m->head[v], NULL);
    m->qos = qos;
    m->retain = retain;
    m->topic_len = (uint16_t)topic_len;
    m->payload_len = (uint32_t)payload_len;
    m->props_len = (uint32_t)props_len;
    m->alloc_size = alloc_size;
    m->topic = (char *)(m + 1);
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

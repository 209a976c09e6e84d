/*
 * bench_ring.c - a publisher's completion ring: the publisher arms and
 * releases slots, the subscriber thread counts copies into them.
 *
 * Ordering: bench_ring_arm stores the slot with release semantics before
 * the PUBLISH is handed to the kernel, and the subscriber reads it with
 * acquire semantics after the read() that brought the copy, so a copy never
 * finds its slot un-armed. The publisher reads counts with acquire too, so
 * what the subscriber thread did before completing a message is visible.
 */
#include "bench/bench_ring.h"

#include <assert.h>
#include <stdlib.h>

#include "common/xmalloc.h"

#define TAG_BITS (64 - BENCH_RING_COUNT_BITS)
#define TAG_MASK ((UINT64_C(1) << TAG_BITS) - 1)
#define COUNT_MASK ((UINT64_C(1) << BENCH_RING_COUNT_BITS) - 1)

static uint64_t tag_of(uint64_t seq)
{
    return (seq & TAG_MASK) << BENCH_RING_COUNT_BITS;
}

static bench_ring_slot_t *slot_of(const bench_ring_t *r, uint64_t seq)
{
    return &r->slots[seq & r->mask];
}

/* Allocates the slots (a power of two >= window); see the header. */
void bench_ring_init(bench_ring_t *r, uint32_t window, uint32_t expected)
{
    uint32_t size = 1;

    assert(window >= 1 && expected <= BENCH_RING_MAX_EXPECTED);
    while (size < window) size <<= 1;
    r->slots = xcalloc(size, sizeof *r->slots);
    r->mask = size - 1;
    r->expected = expected;
    r->head = r->next = r->done_ns = 0;
}

/* Arms the slot of r->next with count 0 and the send time; see the header. */
void bench_ring_arm(bench_ring_t *r, uint64_t now_ns)
{
    bench_ring_slot_t *s = slot_of(r, r->next);

    assert(r->next - r->head <= r->mask); /* the slot's old message is released */
    atomic_store_explicit(&s->last_ns, now_ns, memory_order_relaxed);
    atomic_store_explicit(&s->tag_count, tag_of(r->next), memory_order_release);
    r->next++;
}

/* Returns next - head: armed, not released. */
uint64_t bench_ring_outstanding(const bench_ring_t *r)
{
    return r->next - r->head;
}

/* Advances the head over complete messages; returns how many. */
uint64_t bench_ring_reap(bench_ring_t *r)
{
    uint64_t n = 0, v, t;

    while (r->head < r->next) {
        v = atomic_load_explicit(&slot_of(r, r->head)->tag_count, memory_order_acquire);
        if ((v & COUNT_MASK) < r->expected) break;
        t = atomic_load_explicit(&slot_of(r, r->head)->last_ns, memory_order_relaxed);
        if (t > r->done_ns) r->done_ns = t;
        r->head++;
        n++;
    }
    return n;
}

/* Latest send time or copy time over the outstanding messages and the
 * last completed one. */
static uint64_t newest_activity(const bench_ring_t *r)
{
    uint64_t seq, t, newest = r->done_ns;

    for (seq = r->head; seq < r->next; seq++) {
        t = atomic_load_explicit(&slot_of(r, seq)->last_ns, memory_order_relaxed);
        if (t > newest) newest = t;
    }
    return newest;
}

/* Gives up on the whole window once it has been silent for timeout_ns
 * (after reaping); returns how many incomplete messages were released. The
 * head alone is checked first so the scan runs only for a stuck head. */
uint64_t bench_ring_expire(bench_ring_t *r, uint64_t now_ns, uint64_t timeout_ns)
{
    uint64_t n = 0, head_ns, v;

    bench_ring_reap(r);
    if (r->head == r->next) return 0;
    head_ns = atomic_load_explicit(&slot_of(r, r->head)->last_ns, memory_order_relaxed);
    if (now_ns <= head_ns + timeout_ns || now_ns <= newest_activity(r) + timeout_ns) return 0;
    for (; r->head < r->next; r->head++) {
        v = atomic_load_explicit(&slot_of(r, r->head)->tag_count, memory_order_acquire);
        n += (v & COUNT_MASK) < r->expected;
    }
    return n;
}

/* Adds one copy to seq's slot if the slot still holds seq; see the header. */
int bench_ring_count(bench_ring_t *r, uint64_t seq, uint64_t now_ns)
{
    bench_ring_slot_t *s = slot_of(r, seq);
    uint64_t v = atomic_load_explicit(&s->tag_count, memory_order_acquire);
    int rc = -1;

    /* The publisher may re-arm the slot between the load and the exchange
     * (seq given up on meanwhile): the exchange then fails and the retry
     * sees the new tag. */
    while ((v & ~COUNT_MASK) == tag_of(seq) && (v & COUNT_MASK) < COUNT_MASK) {
        if (atomic_compare_exchange_weak_explicit(&s->tag_count, &v, v + 1,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire)) {
            atomic_store_explicit(&s->last_ns, now_ns, memory_order_relaxed);
            rc = (v & COUNT_MASK) + 1 == r->expected;
            break;
        }
    }
    return rc;
}

/* Completes seq's slot if it still holds seq; see the header. */
void bench_ring_cancel(bench_ring_t *r, uint64_t seq)
{
    bench_ring_slot_t *s = slot_of(r, seq);
    uint64_t v = atomic_load_explicit(&s->tag_count, memory_order_acquire);

    while ((v & ~COUNT_MASK) == tag_of(seq) && (v & COUNT_MASK) < r->expected) {
        if (atomic_compare_exchange_weak_explicit(&s->tag_count, &v, tag_of(seq) | r->expected,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire))
            break;
    }
}

/* Frees the slots. */
void bench_ring_dispose(bench_ring_t *r)
{
    free(r->slots);
    r->slots = NULL;
}

/*
 * bench_ring.h - a publisher's completion ring in uvmq-bench.
 *
 * One ring per publisher, one slot per message it has outstanding (the
 * size is --window rounded up to a power of two). The publisher thread arms
 * a slot when it sends sequence s; the subscriber thread counts every copy
 * of s it receives; the publisher releases s once the count reaches the
 * number of subscribers that match it, or when the whole window made no
 * progress for a timeout. Each slot holds the sequence (40 bits) next to
 * its count (24 bits) in one atomic word, so a copy arriving after its
 * message was given up on and its slot re-armed is recognised as late and
 * never counted for the newer message. Releases go in sequence order (a
 * sliding window).
 */
#ifndef UVMQ_BENCH_RING_H
#define UVMQ_BENCH_RING_H

#include <stdatomic.h>
#include <stdint.h>

#define BENCH_RING_COUNT_BITS 24 /* copies per message: < 16,777,216 subscribers */
#define BENCH_RING_MAX_EXPECTED ((1u << BENCH_RING_COUNT_BITS) - 1)

typedef struct bench_ring_slot_s {
    _Atomic uint64_t tag_count; /* (seq mod 2^40) << 24 | copies counted */
    _Atomic uint64_t last_ns;   /* send time, then the time of the last copy */
} bench_ring_slot_t;

/* Caller-owned; the slots are shared by the two threads, head and next
 * belong to the publisher thread. */
typedef struct bench_ring_s {
    bench_ring_slot_t *slots; /* owned; size mask + 1 */
    uint32_t mask;
    uint32_t expected;        /* copies that complete a message; 0 = none */
    char pad[48];             /* keeps head/next off the subscriber's line */
    uint64_t head;            /* oldest sequence not yet released */
    uint64_t next;            /* sequence the next arm must use */
    uint64_t done_ns;         /* time of the last copy of the last message reaped */
} bench_ring_t;

/* Allocates r's slots for up to window (>= 1) outstanding messages, each
 * complete after expected copies (<= BENCH_RING_MAX_EXPECTED). */
void bench_ring_init(bench_ring_t *r, uint32_t window, uint32_t expected);

/* Publisher thread. Arms the slot of the next sequence (r->next), sent at
 * now_ns; the caller keeps bench_ring_outstanding below the window. */
void bench_ring_arm(bench_ring_t *r, uint64_t now_ns);
/* Messages armed and not released. */
uint64_t bench_ring_outstanding(const bench_ring_t *r);
/* Releases complete messages from the head; returns how many. */
uint64_t bench_ring_reap(bench_ring_t *r);
/* Reaps, then, when the window has been silent for more than timeout_ns
 * (no message completed, no copy of an outstanding one arrived, none was
 * sent: it is stuck), releases every outstanding message; returns how many
 * of those were incomplete. A slow broker keeps the window moving and never times out;
 * a copy the broker dropped stops it. */
uint64_t bench_ring_expire(bench_ring_t *r, uint64_t now_ns, uint64_t timeout_ns);
/* Marks seq complete, as when the broker refused it and no copy will come;
 * nothing happens when seq is no longer armed. */
void bench_ring_cancel(bench_ring_t *r, uint64_t seq);

/* Subscriber thread. Counts one copy of seq received at now_ns. Returns 1
 * when this copy completed the message, 0 when more are due, and -1 when
 * seq is not armed (already given up on, or not yet sent). */
int bench_ring_count(bench_ring_t *r, uint64_t seq, uint64_t now_ns);

/* Frees the slots; r may be initialised again. */
void bench_ring_dispose(bench_ring_t *r);

#endif

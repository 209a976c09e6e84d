/*
 * queue.c - a session's FIFO of messages waiting to be sent.
 *
 * A ring buffer of queue_entry_t whose capacity is a power of two and
 * doubles when full (the wrapped tail is moved behind the old end). The
 * queue owns every entry's message reference and subscription-id array;
 * limits on count and bytes refuse (and release) new entries instead of
 * growing without bound.
 */
#include "queue.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "../common/xmalloc.h"

#define QUEUE_MIN_CAP 16

/* Bytes an entry counts against max_bytes. */
static size_t entry_bytes(const queue_entry_t *e)
{
    return (size_t)e->m->payload_len + e->m->topic_len;
}

/* Sets up an empty queue; no memory is allocated until the first push. */
void queue_init(queue_t *q, size_t max_len, size_t max_bytes)
{
    memset(q, 0, sizeof(*q));
    q->max_len = max_len;
    q->max_bytes = max_bytes;
}

/* Doubles the ring. Entries that wrapped to the front (indexes below
 * head) move to just past the old end, which keeps them in order. */
static void grow(queue_t *q)
{
    size_t old = q->cap;
    size_t cap = old ? old * 2 : QUEUE_MIN_CAP;

    q->v = xrealloc(q->v, cap * sizeof(*q->v));
    if (q->head + q->len > old) {
        size_t wrapped = q->head + q->len - old;
        memcpy(q->v + old, q->v, wrapped * sizeof(*q->v));
    }
    q->cap = cap;
}

static int is_full(const queue_t *q, size_t add_bytes, size_t max_len,
                   size_t max_bytes)
{
    return (max_len != 0 && q->len >= max_len) ||
           (max_bytes != 0 && q->bytes + add_bytes > max_bytes);
}

/* Appends e at the tail against the queue's own limits; see
 * queue_push_bounded. */
int queue_push(queue_t *q, queue_entry_t *e)
{
    return queue_push_bounded(q, e, q->max_len, q->max_bytes);
}

/* Appends e at the tail unless that would pass max_len entries or
 * max_bytes bytes (0 = no limit). Takes e's references whatever happens:
 * on success the queue owns them, on UVMQ_ELIMIT they are released and
 * q->dropped counts the entry. *e is zeroed in both cases. */
int queue_push_bounded(queue_t *q, queue_entry_t *e, size_t max_len,
                       size_t max_bytes)
{
    int rc = 0;
    size_t add = 0;

    assert(e->m != NULL);
    add = entry_bytes(e);
    if (is_full(q, add, max_len, max_bytes)) {
        queue_entry_dispose(e);
        q->dropped++;
        rc = UVMQ_ELIMIT;
    } else {
        if (q->len == q->cap) grow(q);
        q->v[(q->head + q->len) & (q->cap - 1)] = *e;
        q->len++;
        q->bytes += add;
        memset(e, 0, sizeof(*e));
    }
    return rc;
}

/* Moves the oldest entry into *out; the caller now owns its references.
 * Returns 0, or UVMQ_ENOTFOUND (and leaves *out alone) when empty. */
int queue_pop(queue_t *q, queue_entry_t *out)
{
    int rc = UVMQ_ENOTFOUND;

    if (q->len > 0) {
        queue_entry_t *e = &q->v[q->head];
        q->bytes -= entry_bytes(e);
        *out = *e;
        memset(e, 0, sizeof(*e));
        q->head = (q->head + 1) & (q->cap - 1);
        q->len--;
        rc = 0;
    }
    return rc;
}

/* Borrows the oldest entry; valid until the next push, pop or clear. */
queue_entry_t *queue_peek(queue_t *q)
{
    return q->len > 0 ? &q->v[q->head] : NULL;
}

/* Releases every entry; capacity, limits and the dropped count stay. */
void queue_clear(queue_t *q)
{
    for (size_t i = 0; i < q->len; i++)
        queue_entry_dispose(&q->v[(q->head + i) & (q->cap - 1)]);
    q->head = 0;
    q->len = 0;
    q->bytes = 0;
}

/* Releases every entry and the ring; q may be initialized again. */
void queue_dispose(queue_t *q)
{
    queue_clear(q);
    free(q->v);
    q->v = NULL;
    q->cap = 0;
}

/* Releases e->m (if any) and e->ids, then zeroes *e. */
void queue_entry_dispose(queue_entry_t *e)
{
    msg_release(&e->m);
    free(e->ids);
    memset(e, 0, sizeof(*e));
}

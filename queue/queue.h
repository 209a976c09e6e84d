/*
 * queue.h - messages, per-session outbound queues and inflight windows.
 *
 * msg_t is one published message: created once, shared by every subscriber
 * by reference (atomic count), never copied. Its encoded PUBLISH head
 * (fixed header + topic + properties, without the payload) is cached per
 * wire variant so a QoS 0 fan-out writes the same bytes to every
 * subscriber. Messages come from size-class free lists; the steady state
 * allocates nothing.
 *
 * queue_t is a session's FIFO of messages waiting to be sent; inflight_t is
 * its window of sent-but-unacknowledged QoS 1/2 messages keyed by packet
 * id, plus the inbound QoS 2 packet ids awaiting PUBREL. Both own the
 * message references they hold. Neither is thread-safe: one loop owns a
 * session at a time.
 */
#ifndef UVMQ_QUEUE_H
#define UVMQ_QUEUE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"

/* Cached head variants: protocol (v3.x / v5) x retain flag, QoS 0 only. */
#define MSG_VARIANTS 4
#define MSG_VARIANT(v5, retain) ((((v5) ? 1 : 0) << 1) | ((retain) ? 1 : 0))

/* Alignment of a message's owner area (msg_owner): enough for any
 * integer, pointer or lock-free atomic up to 64 bits. */
#define MSG_OWNER_ALIGN 8

/* A published message. Fields are read-only once it is shared, except the
 * reference count and the head cache, which msg_head fills lazily and
 * thread-safely; the creator sets store_id, expiry_at and origin before
 * sharing it. The owner area (msg_owner) follows it in the same block. */
typedef struct msg_s {
    atomic_uint refs;
    uint8_t qos;         /* QoS as published */
    uint8_t retain;      /* retain flag as published */
    uint16_t topic_len;
    uint32_t payload_len;
    uint32_t props_len;  /* forwardable v5 properties, already encoded */
    uint32_t alloc_size; /* size class of this block (internal) */
    uint16_t owner_size; /* bytes of the owner area (msg_owner), 0 = none;
                            in what was padding */
    uint64_t store_id;   /* id of its row in the store; 0 = none yet (set
                            by the publisher before it is shared) */
    uint64_t expiry_at;  /* wall-clock ms when it expires; 0 = never */
    const void *origin;  /* publishing session; compared, never dereferenced */
    char *topic;         /* NUL-terminated, inside this block */
    uint8_t *payload;    /* inside this block (or NULL when payload_len 0) */
    uint8_t *props;      /* inside this block (or NULL when props_len 0) */
    _Atomic(uint8_t *) head[MSG_VARIANTS]; /* cached QoS 0 heads; owned */
} msg_t;

/* ---- messages ---- */

/* Copies topic, payload and the encoded forwardable properties into one
 * pooled block and returns the message with one reference (the caller's).
 * The block also holds owner_size (at most 65535) zeroed bytes for the
 * creator's own per-message state (msg_owner); 0 reserves none.
 * Returns NULL when payload_len > max_payload or memory is short. */
msg_t *msg_create(const char *topic, size_t topic_len, const uint8_t *payload,
                  size_t payload_len, const uint8_t *props, size_t props_len,
                  uint8_t qos, uint8_t retain, size_t max_payload, size_t owner_size);

/* The owner area of m: the m->owner_size bytes msg_create reserved in m's
 * own block (no allocation, no pointer to follow), zeroed at creation,
 * MSG_OWNER_ALIGN-aligned, valid as long as m. queue/ never reads or
 * writes it again: the creator defines what it holds and how threads
 * share it. It is not part of the read-only message, hence the const m. */
static inline void *msg_owner(const msg_t *m)
{
    return (void *)(m + 1);
}

/* Adds a reference; returns m. */
msg_t *msg_retain(msg_t *m);

/* Drops a reference and sets *mp to NULL; the last one returns the block to
 * the free list. Asserts the count was non-zero. */
void msg_release(msg_t **mp);

/* The shared QoS 0 PUBLISH head for (v5, retain): fixed header (remaining
 * length counts the payload), topic, and for v5 the property block with
 * the message's forwardable properties. Encoded on first use and cached;
 * safe to call from several threads. Returns NULL (and *len 0) when the
 * message carries an expiry (its head is then per delivery) or the
 * encoding would exceed the format. The bytes live as long as m. */
const uint8_t *msg_head(msg_t *m, int v5, int retain, size_t *len);

/* 1 when the message has expired at wall-clock time now_ms. */
int msg_expired(const msg_t *m, uint64_t now_ms);

/* Wall-clock milliseconds (CLOCK_REALTIME). */
uint64_t msg_now_ms(void);

/* Returns every pooled block of the calling thread to the system (at
 * shutdown, so leak checkers see a clean heap). */
void msg_pool_drain(void);

/* ---- per-session FIFO ---- */

/* A message waiting for a session, with how it is to be delivered. */
typedef struct queue_entry_s {
    msg_t *m;          /* owned reference */
    uint8_t qos;       /* delivery QoS: min(published, granted) */
    uint8_t retain;    /* retain flag to send */
    uint8_t n_ids;     /* subscription identifiers to attach */
    uint32_t share;    /* id of the shared subscription group it came
                          through (broker/share.c), 0 = none; in what was
                          padding: the entry stays 32 bytes */
    uint32_t *ids;     /* n_ids entries, owned (xmalloc), NULL when 0 */
    uint64_t seq;      /* its row in the store (per session), 0 = none */
} queue_entry_t;

typedef struct queue_s {
    queue_entry_t *v;  /* ring buffer */
    size_t head, len, cap;
    size_t bytes;      /* sum of payload_len + topic_len of queued entries */
    size_t max_len;    /* 0 = unlimited */
    size_t max_bytes;  /* 0 = unlimited */
    uint64_t dropped;  /* entries refused because the queue was full */
} queue_t;

/* Caller owns the queue_t memory. */
void queue_init(queue_t *q, size_t max_len, size_t max_bytes);

/* Appends; takes e->m and e->ids on success AND on failure (they are
 * released on failure). Returns 0, or UVMQ_ELIMIT when full (counted in
 * q->dropped). */
int queue_push(queue_t *q, queue_entry_t *e);

/* Like queue_push, but against the limits max_len and max_bytes given
 * here (0 = unlimited) instead of the queue's own: the broker lets an
 * online session whose publishers are being throttled hold up to twice
 * its configured limits. Takes e's references on success and on failure.
 * Returns 0, or UVMQ_ELIMIT when full (counted in q->dropped). */
int queue_push_bounded(queue_t *q, queue_entry_t *e, size_t max_len,
                       size_t max_bytes);

/* Removes the oldest entry into *out (caller owns its references).
 * Returns 0, or UVMQ_ENOTFOUND when empty. */
int queue_pop(queue_t *q, queue_entry_t *out);

/* Borrow the oldest entry without removing it; NULL when empty. */
queue_entry_t *queue_peek(queue_t *q);

/* Releases every entry; the queue stays usable. */
void queue_clear(queue_t *q);
void queue_dispose(queue_t *q);

/* Releases an entry's references (m, ids) and zeroes it. */
void queue_entry_dispose(queue_entry_t *e);

/* ---- inflight window ---- */

enum inflight_state {
    INFLIGHT_FREE = 0,
    INFLIGHT_WAIT_PUBACK,  /* QoS 1 sent, waiting for PUBACK */
    INFLIGHT_WAIT_PUBREC,  /* QoS 2 sent, waiting for PUBREC */
    INFLIGHT_WAIT_PUBCOMP, /* PUBREL sent, waiting for PUBCOMP */
};

typedef struct inflight_slot_s {
    uint16_t packet_id;
    uint8_t state;     /* enum inflight_state */
    uint64_t seq;      /* send order, for in-order resend */
    queue_entry_t e;   /* owned; e.m is NULL in WAIT_PUBCOMP */
} inflight_slot_t;

typedef struct inflight_s {
    inflight_slot_t *slots; /* open-addressed by packet id; owned */
    size_t cap;             /* power of two, >= 2 * max */
    size_t count;           /* slots in use */
    size_t max;             /* window size (Receive Maximum / max_inflight) */
    uint16_t next_id;       /* last packet id handed out */
    uint32_t displaced;     /* used slots not in their home slot (in
                               what was padding) */
    uint64_t next_seq;
    /* inbound QoS 2: packet ids whose PUBREC was sent, PUBREL not yet seen */
    uint16_t *in_ids;
    size_t in_count, in_cap;
} inflight_t;

/* Caller owns the memory; max is the window (1..65535). */
void inflight_init(inflight_t *f, size_t max);

/* Changes the window (on reconnect with a new Receive Maximum); slots
 * already in use stay even when over the new max. */
void inflight_set_max(inflight_t *f, size_t max);

/* 1 when another message may be sent now. */
int inflight_has_room(const inflight_t *f);

/* Allocates an unused non-zero packet id, stores e (taking its references)
 * in state WAIT_PUBACK (qos 1) or WAIT_PUBREC (qos 2) and returns the
 * slot. Returns NULL when the window is full; e is then untouched. */
inflight_slot_t *inflight_add(inflight_t *f, queue_entry_t *e);

/* Recovery: takes e into a slot with this packet id (non-zero, unused)
 * in state (WAIT_PUBACK, WAIT_PUBREC, or WAIT_PUBCOMP with e->m NULL),
 * ignoring the window size; slots restored in send order resend in that
 * order. Returns 0, or UVMQ_EINVAL (bad id or state, id in use: e is then
 * untouched). */
int inflight_restore(inflight_t *f, uint16_t packet_id, uint8_t state,
                     queue_entry_t *e);

/* Borrow the slot for packet_id, or NULL. */
inflight_slot_t *inflight_get(inflight_t *f, uint16_t packet_id);

/* PUBACK (QoS 1) or PUBCOMP (QoS 2) received: releases the slot. Returns
 * 0, or UVMQ_ENOTFOUND when no slot is in the matching state. */
int inflight_complete(inflight_t *f, uint16_t packet_id, uint8_t ack_type);

/* PUBREC received: the slot moves to WAIT_PUBCOMP and drops its message
 * reference. Returns 0, or UVMQ_ENOTFOUND. */
int inflight_pubrec(inflight_t *f, uint16_t packet_id);

/* Calls cb for each used slot in send order (for resend on reconnect). */
typedef void (*inflight_cb)(inflight_slot_t *s, void *ctx);
void inflight_foreach(inflight_t *f, inflight_cb cb, void *ctx);

/* Inbound QoS 2. inflight_in_add returns 1 if packet_id was newly added
 * (deliver the message), 0 if it was already there (a resend: do not
 * deliver again), UVMQ_ELIMIT when max_in ids are already held. */
int inflight_in_add(inflight_t *f, uint16_t packet_id, size_t max_in);
/* PUBREL received: forget the id. Returns 0, or UVMQ_ENOTFOUND. */
int inflight_in_remove(inflight_t *f, uint16_t packet_id);

/* Releases every slot and inbound id; the window stays usable. */
void inflight_clear(inflight_t *f);
void inflight_dispose(inflight_t *f);

#endif

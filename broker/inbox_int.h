/*
 * inbox_int.h - items between threads (inbox.c): outboxes, inboxes and
 * the kinds of work one loop hands another.
 */
#ifndef UVMQ_BROKER_INBOX_INT_H
#define UVMQ_BROKER_INBOX_INT_H

#include "broker_int.h"

enum loop_item_kind {
    ITEM_ACCEPT = 1, /* fd: a socket accepted by listener ptr (borrowed);
                        tls_ctx: a reference to its TLS context, or NULL */
    ITEM_PUBLISH,    /* m: match the loop's router, deliver; one reference;
                        seq: index of the posting loop */
    ITEM_MIGRATE,    /* fd, bytes, len, hops, tp, tp_data: an MQTT
                        connection moved here from another loop, its MQTT
                        input from its CONNECT on, and its transport (TLS:
                        with any ciphertext after that input) */
    ITEM_STOP,       /* shut the loop down */
    ITEM_COMMITTED,  /* ptr: a commit of this loop's batch finished
                        (persist.c; posted by the storage thread) */
    ITEM_ACK_WAKE,   /* a message this loop published may now be
                        acknowledged: run the ack queues (persist.c) */
    ITEM_SHARE       /* m: one reference; ptr: a reference to the shared
                        subscription member (share.c) it is for; hops:
                        re-picks so far; report: as for PUBLISH; track:
                        counted for throttling as a forward; seq: index of
                        the publishing loop */
};

typedef struct loop_item_s {
    uint8_t kind;
    uint8_t hops;    /* ITEM_MIGRATE: moves so far, this one included */
    uint8_t report;  /* ITEM_PUBLISH, ITEM_SHARE: counted in m's
                        persist_wait (msg_state_t); report once this
                        loop's entries of m are committed */
    union {
        uint8_t track; /* ITEM_SHARE: counted in m's fwd_pending and the
                          target's backlog (throttle.c) */
        uint8_t anon;  /* ITEM_MIGRATE: the connection's anon_ok */
    };
    int fd;
    uint64_t seq;
    union {
        msg_t *m;           /* ITEM_PUBLISH */
        tls_ctx_t *tls_ctx; /* ITEM_ACCEPT: owned reference, or NULL */
        const transport_t *tp; /* ITEM_MIGRATE: the moved transport */
    };
    void *tp_data;          /* ITEM_MIGRATE: its state (owned), or NULL */
    union {
        uint8_t *bytes; /* ITEM_MIGRATE: owned input bytes (len of them) */
        void *ptr;      /* ITEM_COMMITTED: owned commit record;
                           ITEM_ACCEPT: the listener (borrowed);
                           ITEM_SHARE: a member reference (owned) */
    };
    size_t len;
} loop_item_t;

/* A reused vector of items (outboxes, inboxes). */
typedef struct item_vec_s {
    loop_item_t *v;
    size_t n, cap;
} item_vec_t;

/* Appends item to from's outbox for loop index `to` (no lock; flushed at
 * the end of from's tick). Takes the item's references (m, fd). */
void inbox__post(loop_t *from, unsigned to, const loop_item_t *item);
/* Appends item to v (growing it; reused, so no allocation once grown). */
void inbox__append(item_vec_t *v, const loop_item_t *item);
/* Moves each non-empty outbox of out[0..b->n_loops) into its target's
 * inbox (one lock each) and wakes each target once. Any thread; out is
 * the calling thread's own array. */
void inbox__flush_outboxes(broker_t *b, item_vec_t *out);
/* Appends item to t's inbox under its lock and wakes t: for threads that
 * have no outboxes (the storage thread). Takes the item's references. */
void inbox__post_direct(loop_t *t, const loop_item_t *item);
/* uv_async callback of a worker: swaps the inbox out, runs every item. */
void inbox__on_async(uv_async_t *h);
/* Releases the references of items never processed (shutdown). */
void inbox__drop_items(item_vec_t *v);
void inbox__items_dispose(item_vec_t *v);

#endif

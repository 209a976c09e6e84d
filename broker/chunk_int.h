/*
 * chunk_int.h - loop-local chunks of shared small PUBLISH packets
 * (chunk.c).
 */
#ifndef UVMQ_BROKER_CHUNK_INT_H
#define UVMQ_BROKER_CHUNK_INT_H

#include "broker_int.h"

/* Loop-local block of whole small QoS 0 PUBLISH packets that many
 * connections' batches point into (chunk.c). Not thread-safe: only its
 * loop builds, references and releases it. */
typedef struct pkt_chunk_s {
    chunk_loop_t *owner; /* the loop's chunks whose free list it returns to */
    uint32_t refs;   /* batch entries pointing into it, + 1 while it is
                        the loop's current chunk for its variant */
    uint32_t len;    /* bytes used */
    struct pkt_chunk_s *next_free;
    uint8_t data[];
} pkt_chunk_t;

/* Room for len bytes at the end of l's current chunk of variant v (a new
 * chunk when it is full); *ch is that chunk. Commit with
 * chunk__commit. len is at most PUBLISH_COPY_MAX. */
uint8_t *chunk__reserve(loop_t *l, int v, size_t len, pkt_chunk_t **ch);
/* Marks len reserved bytes of ch as used. */
void chunk__commit(pkt_chunk_t *ch, size_t len);
/* Drops one reference of *chp and NULLs it; the last returns the chunk
 * to its loop's free list (or frees it past a few). */
void chunk__release(pkt_chunk_t **chp);
/* Makes l's chunk state (loop__state_init). */
void chunk__loop_init(loop_t *l);
/* Drops l's current chunks and frees its free list and state (loop teardown; every
 * batch must have released its references first). */
void chunk__loop_dispose(loop_t *l);

#endif

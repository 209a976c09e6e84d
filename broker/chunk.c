/*
 * chunk.c - loop-local chunks of shared small PUBLISH packets.
 *
 * A QoS 0 fan-out of a small message builds the whole packet once per
 * wire variant into the loop's current chunk of that variant; every
 * subscriber's batch points at those bytes and holds a (plain, loop-local)
 * reference to the chunk until its write completes. Consecutive messages
 * of one variant sit back to back, so a subscriber getting all of them
 * gets one iovec, and the only copy of the bytes per subscriber is the
 * kernel's. Chunks are small (CHUNK_SIZE) because a connection that stops
 * reading pins the chunks its unwritten entries point into.
 */
#include "broker_int.h"

#include <assert.h>
#include <stdlib.h>

#include "../common/xmalloc.h"

/* Bytes of packets per chunk: about 50 packets of 80 bytes. */
#define CHUNK_SIZE 4096
/* Released chunks a loop keeps for reuse; more are freed. */
#define CHUNK_POOL_MAX 64

static pkt_chunk_t *chunk_get(loop_t *l)
{
    pkt_chunk_t *ch = l->free_chunks;
    if (ch != NULL) {
        l->free_chunks = ch->next_free;
        l->n_free_chunks--;
    } else {
        ch = xmalloc(sizeof *ch + CHUNK_SIZE);
        ch->owner = l;
    }
    ch->refs = 1; /* the loop's, while it is current */
    ch->len = 0;
    ch->next_free = NULL;
    return ch;
}

uint8_t *chunk__reserve(loop_t *l, int v, size_t len, pkt_chunk_t **ch)
{
    pkt_chunk_t *cur = l->chunk[v];
    assert(len <= CHUNK_SIZE);
    if (cur != NULL && cur->len + len > CHUNK_SIZE)
        chunk__release(&l->chunk[v]); /* full: no longer current */
    if (l->chunk[v] == NULL) l->chunk[v] = chunk_get(l);
    *ch = l->chunk[v];
    return (*ch)->data + (*ch)->len;
}

void chunk__commit(pkt_chunk_t *ch, size_t len)
{
    ch->len += (uint32_t)len;
}

void chunk__release(pkt_chunk_t **chp)
{
    pkt_chunk_t *ch = *chp;
    loop_t *l = ch->owner;
    *chp = NULL;
    if (--ch->refs > 0) return;
    if (l->n_free_chunks >= CHUNK_POOL_MAX) {
        free(ch);
        return;
    }
    ch->next_free = l->free_chunks;
    l->free_chunks = ch;
    l->n_free_chunks++;
}

void chunk__dispose(loop_t *l)
{
    for (int v = 0; v < MSG_VARIANTS; v++) {
        if (l->chunk[v] != NULL) chunk__release(&l->chunk[v]);
    }
    while (l->free_chunks != NULL) {
        pkt_chunk_t *ch = l->free_chunks;
        l->free_chunks = ch->next_free;
        free(ch);
    }
    l->n_free_chunks = 0;
}

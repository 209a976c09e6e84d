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
#include "chunk_int.h"
#include "loop_int.h"

#include <assert.h>
#include <stdlib.h>

#include "../common/xmalloc.h"

/* Bytes of packets per chunk: about 50 packets of 80 bytes. */
#define CHUNK_SIZE 4096
/* Released chunks a loop keeps for reuse; more are freed. */
#define CHUNK_POOL_MAX 64

/* A loop's chunks (loop_t.chunks). Only its loop touches them. */
struct chunk_loop_s {
    pkt_chunk_t *cur[MSG_VARIANTS]; /* current chunk per variant */
    pkt_chunk_t *free;              /* released chunks kept for reuse */
    unsigned n_free;
};

void chunk__loop_init(loop_t *l)
{
    l->chunks = xcalloc(1, sizeof *l->chunks);
}

static pkt_chunk_t *chunk_get(chunk_loop_t *k)
{
    pkt_chunk_t *ch = k->free;
    if (ch != NULL) {
        k->free = ch->next_free;
        k->n_free--;
    } else {
        ch = xmalloc(sizeof *ch + CHUNK_SIZE);
        ch->owner = k;
    }
    ch->refs = 1; /* the loop's, while it is current */
    ch->len = 0;
    ch->next_free = NULL;
    return ch;
}

uint8_t *chunk__reserve(loop_t *l, int v, size_t len, pkt_chunk_t **ch)
{
    chunk_loop_t *k = l->chunks;
    pkt_chunk_t *cur = k->cur[v];
    assert(len <= CHUNK_SIZE);
    if (cur != NULL && cur->len + len > CHUNK_SIZE)
        chunk__release(&k->cur[v]); /* full: no longer current */
    if (k->cur[v] == NULL) k->cur[v] = chunk_get(k);
    *ch = k->cur[v];
    return (*ch)->data + (*ch)->len;
}

void chunk__commit(pkt_chunk_t *ch, size_t len)
{
    ch->len += (uint32_t)len;
}

void chunk__release(pkt_chunk_t **chp)
{
    pkt_chunk_t *ch = *chp;
    chunk_loop_t *k = ch->owner;
    *chp = NULL;
    assert(ch->refs > 0);
    if (--ch->refs > 0) return;
    if (k->n_free >= CHUNK_POOL_MAX) {
        free(ch);
        return;
    }
    ch->next_free = k->free;
    k->free = ch;
    k->n_free++;
}

void chunk__loop_dispose(loop_t *l)
{
    chunk_loop_t *k = l->chunks;
    if (k == NULL) return;
    for (int v = 0; v < MSG_VARIANTS; v++) {
        if (k->cur[v] != NULL) chunk__release(&k->cur[v]);
    }
    while (k->free != NULL) {
        pkt_chunk_t *ch = k->free;
        k->free = ch->next_free;
        free(ch);
    }
    free(k);
    l->chunks = NULL;
}

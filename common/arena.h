/*
 * arena.h - bump allocator for decode temporaries.
 *
 * A connection owns one arena; the decoder takes arrays (subscription
 * lists, user properties) from it, and the connection resets it after each
 * packet. Memory grows in chunks up to a hard limit, so a hostile peer
 * cannot make one packet's decode use more than `limit` bytes.
 */
#ifndef UVMQ_ARENA_H
#define UVMQ_ARENA_H

#include <stddef.h>

typedef struct arena_chunk_s arena_chunk_t;

typedef struct arena_s {
    arena_chunk_t *head;  /* newest chunk; owned */
    size_t used_total;    /* bytes handed out since the last reset */
    size_t limit;         /* arena_alloc fails past this many bytes */
} arena_t;

/* Caller owns the arena_t memory; init sets the per-reset byte limit. */
void arena_init(arena_t *a, size_t limit);
/* Returns 8-byte aligned zeroed memory, or NULL when the limit is reached. */
void *arena_alloc(arena_t *a, size_t n);
/* The same without zeroing, for memory the caller overwrites at once. */
void *arena_alloc_raw(arena_t *a, size_t n);
/* Frees all but the first chunk; earlier arena_alloc pointers are invalid. */
void arena_reset(arena_t *a);
void arena_dispose(arena_t *a);

#endif

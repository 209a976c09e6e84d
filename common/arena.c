/*
 * arena.c - chunked bump allocator with a per-reset byte limit.
 *
 * The first chunk is kept across resets so decoding a typical packet
 * allocates nothing once the connection has warmed up.
 */
#include "arena.h"

#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

#define ARENA_CHUNK 4096

struct arena_chunk_s {
    arena_chunk_t *next;
    size_t size; /* usable bytes in data */
    size_t used;
    _Alignas(8) unsigned char data[];
};

void arena_init(arena_t *a, size_t limit)
{
    a->head = NULL;
    a->used_total = 0;
    a->limit = limit;
}

void *arena_alloc_raw(arena_t *a, size_t n)
{
    n = (n + 7u) & ~(size_t)7u;
    if (n == 0) n = 8;
    if (n > a->limit || a->used_total > a->limit - n) return NULL;

    arena_chunk_t *c = a->head;
    if (c == NULL || c->size - c->used < n) {
        size_t size = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        c = try_malloc(sizeof *c + size, (size_t)-1);
        if (c == NULL) return NULL;
        c->size = size;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    a->used_total += n;
    return p;
}

void *arena_alloc(arena_t *a, size_t n)
{
    void *p = arena_alloc_raw(a, n);
    if (p != NULL) memset(p, 0, n);
    return p;
}

void arena_reset(arena_t *a)
{
    arena_chunk_t *c = a->head;
    if (c == NULL) return;
    /* Keep the oldest chunk (the bottom of the list) and free the rest. */
    while (c->next != NULL) {
        arena_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    c->used = 0;
    a->head = c;
    a->used_total = 0;
}

void arena_dispose(arena_t *a)
{
    arena_chunk_t *c = a->head;
    while (c != NULL) {
        arena_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used_total = 0;
}

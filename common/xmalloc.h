/*
 * xmalloc.h - aborting allocators for small, fixed-size objects.
 *
 * xmalloc/xcalloc/xrealloc/xstrdup never return NULL: on failure they log
 * and abort, so callers do not check. Sizes chosen by a peer (payloads,
 * topics, properties) must use try_malloc with a limit instead and fail
 * only that connection.
 *
 * A counting hook (xmalloc_count) lets tests and micro-benchmarks prove
 * that a steady-state path allocates nothing.
 */
#ifndef UVMQ_XMALLOC_H
#define UVMQ_XMALLOC_H

#include <stddef.h>
#include <stdint.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
/* Zeroed block aligned to align (a power of two, multiple of
 * sizeof(void *)); freed with free(). */
void *xaligned_zalloc(size_t align, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Peer-sized allocation: NULL when n > limit or memory is short. */
void *try_malloc(size_t n, size_t limit);

/* Number of successful xmalloc/xcalloc/xrealloc/try_malloc calls so far in
 * this process (relaxed atomic; for tests and benchmarks). */
uint64_t xmalloc_count(void);

#endif

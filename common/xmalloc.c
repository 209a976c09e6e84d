/*
 * xmalloc.c - aborting allocators and the allocation counter.
 *
 * The counter is a relaxed atomic so micro-benchmarks and tests can prove
 * that a path allocates nothing; its cost is one uncontended add.
 */
#include "xmalloc.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_uint_fast64_t alloc_count;

static void *check(void *p, size_t n)
{
    if (p == NULL && n != 0) {
        fprintf(stderr, "uvmq: out of memory allocating %zu bytes\n", n);
        abort();
    }
    atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed);
    return p;
}

void *xmalloc(size_t n)
{
    return check(malloc(n ? n : 1), n ? n : 1);
}

void *xcalloc(size_t count, size_t n)
{
    return check(calloc(count ? count : 1, n ? n : 1), 1);
}

void *xaligned_zalloc(size_t align, size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, align, n ? n : 1) != 0) p = NULL;
    check(p, n ? n : 1);
    memset(p, 0, n);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    return check(realloc(p, n ? n : 1), n ? n : 1);
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void *try_malloc(size_t n, size_t limit)
{
    if (n > limit) return NULL;
    void *p = malloc(n ? n : 1);
    if (p != NULL) atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed);
    return p;
}

uint64_t xmalloc_count(void)
{
    return atomic_load_explicit(&alloc_count, memory_order_relaxed);
}

/*
 * loop.c - one worker loop: its uv_loop, flush hooks, sweep timer and the
 * vectors it reuses.
 *
 * Handlers only append to a connection's out-batch and mark it dirty; the
 * flush hooks (uv_prepare before polling, uv_check right after the I/O
 * callbacks) issue one uv_write per dirty connection, so everything one
 * loop turn produces for a client leaves in a single writev.
 */
#include "broker_int.h"

#include <stdlib.h>

#include "../common/xmalloc.h"

#define SWEEP_MS 1000

/* Writes every dirty connection (both hooks call this). */
static void flush_dirty(loop_t *l)
{
    while (l->dirty != NULL) {
        conn_t *c = l->dirty;
        l->dirty = c->dirty_next;
        c->dirty_next = NULL;
        c->dirty = 0;
        conn__flush(c);
    }
}

static void on_prepare(uv_prepare_t *h)
{
    flush_dirty(h->data);
}

static void on_check(uv_check_t *h)
{
    flush_dirty(h->data);
}

/* Once a second: per-connection timeouts, then session timers. */
static void on_sweep(uv_timer_t *t)
{
    loop_t *l = t->data;
    uint64_t now = uv_now(&l->uv);
    conn_t *next = NULL;
    for (conn_t *c = l->conns; c != NULL; c = next) {
        next = c->next; /* conn__sweep may close c; it stays listed */
        conn__sweep(c, now);
    }
    if (l->index == 0 && !l->b->stopping) sess__sweep(l, now);
}

int loop__init(loop_t *l, broker_t *b, unsigned index)
{
    int rc = uv_loop_init(&l->uv);
    if (rc != 0) return rc;
    l->b = b;
    l->index = index;
    l->uv.data = l;
    uv_prepare_init(&l->uv, &l->prepare);
    uv_check_init(&l->uv, &l->check);
    uv_timer_init(&l->uv, &l->sweep);
    l->prepare.data = l;
    l->check.data = l;
    l->sweep.data = l;
    uv_prepare_start(&l->prepare, on_prepare);
    uv_check_start(&l->check, on_check);
    uv_timer_start(&l->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    router_hits_init(&l->hits);
    l->rbuf = xmalloc(LOOP_READ_BUF);
    return 0;
}

void loop__close_handles(loop_t *l)
{
    if (!uv_is_closing((uv_handle_t *)&l->prepare)) {
        uv_close((uv_handle_t *)&l->prepare, NULL);
        uv_close((uv_handle_t *)&l->check, NULL);
        uv_close((uv_handle_t *)&l->sweep, NULL);
    }
}

int loop__dispose(loop_t *l)
{
    int rc = uv_loop_close(&l->uv);
    router_hits_dispose(&l->hits);
    free(l->bufs);
    free(l->rbuf);
    free(l->mvec);
    l->bufs = NULL;
    l->rbuf = NULL;
    l->mvec = NULL;
    return rc;
}

void loop__mark_dirty(conn_t *c)
{
    if (c->dirty) return;
    c->dirty = 1;
    c->dirty_next = c->loop->dirty;
    c->loop->dirty = c;
}

void loop__unmark_dirty(conn_t *c)
{
    if (!c->dirty) return;
    conn_t **pp = &c->loop->dirty;
    while (*pp != NULL && *pp != c) pp = &(*pp)->dirty_next;
    if (*pp == c) *pp = c->dirty_next;
    c->dirty_next = NULL;
    c->dirty = 0;
}

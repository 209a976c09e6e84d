/*
 * loop.c - one worker loop: its uv_loop, flush hooks, sweep timer, router
 * and the vectors it reuses.
 *
 * Handlers only append to a connection's out-batch and mark it dirty; the
 * flush hooks (uv_prepare before polling, uv_check right after the I/O
 * callbacks) first move the loop's outboxes into other loops' inboxes,
 * then issue one uv_write per dirty connection, so everything one loop
 * turn produces for a client leaves in a single writev. The threading
 * model is described at the top of inbox.c.
 */
#include "loop_int.h"

#include "chunk_int.h"
#include "conn_int.h"
#include "conn_tls_int.h"
#include "inbox_int.h"
#include "interest_int.h"
#include "persist_int.h"
#include "sess_int.h"
#include "share_int.h"
#include "sys_int.h"
#include "throttle_int.h"

#include <stdlib.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

#define SWEEP_MS 1000

/* Outboxes first: a PUBLISH forwarded to another loop is in its inbox
 * before the PUBACK that acknowledges it is written (inbox.c). */
static void flush_all(loop_t *l)
{
    loop__fold_counters(l);
    persist__flush(l); /* its wake-ups go out with the outboxes */
    inbox__flush_outboxes(l->b, l->out);
    while (l->dirty != NULL) {
        conn_t *c = l->dirty;
        l->dirty = c->dirty_next;
        if (c->out != NULL && c->out->hold_gen != 0 && persist__holds(l, c->out->hold_gen)) {
            /* persist.c: stays dirty */
            c->dirty_next = l->held;
            l->held = c;
            continue;
        }
        c->dirty_next = NULL;
        c->dirty = 0;
        conn__flush(c);
    }
}

static void on_prepare(uv_prepare_t *h)
{
    flush_all(h->data);
}

static void on_check(uv_check_t *h)
{
    flush_all(h->data);
}

/* Once a second: per-connection timeouts, then the loop's sessions. */
static void on_sweep(uv_timer_t *t)
{
    loop_t *l = t->data;
    uint64_t now = uv_now(&l->uv);
    conn_t *next = NULL;
    for (conn_t *c = l->conns; c != NULL; c = next) {
        next = c->next; /* conn__sweep may close c; it stays listed */
        conn__sweep(c, now);
    }
    if (!l->stopping) sess__sweep(l, now);
    conn__trim_outs(l);
}

void loop__state_init(loop_t *l, broker_t *b, unsigned index)
{
    l->b = b;
    l->index = index;
    chunk__loop_init(l);
    interest__loop_init(l);
    persist__loop_init(l);
    share__loop_init(l);
    throttle__loop_init(l);
}

void loop__state_dispose(loop_t *l)
{
    conn__outs_dispose(l); /* before the chunks their batches reference */
    chunk__loop_dispose(l);
    conn_tls__loop_dispose(l);
    interest__loop_dispose(l);
    persist__loop_dispose(l);
    share__loop_dispose(l);
    throttle__loop_dispose(l);
}

int loop__init(loop_t *l, broker_t *b, unsigned index)
{
    int rc = uv_loop_init(&l->uv);
    if (rc != 0) return rc;
    loop__state_init(l, b, index);
    l->uv.data = l;
    uv_prepare_init(&l->uv, &l->prepare);
    uv_check_init(&l->uv, &l->check);
    uv_timer_init(&l->uv, &l->sweep);
    uv_async_init(&l->uv, &l->async, inbox__on_async);
    l->prepare.data = l;
    l->check.data = l;
    l->sweep.data = l;
    l->async.data = l;
    uv_prepare_start(&l->prepare, on_prepare);
    uv_check_start(&l->check, on_check);
    uv_timer_start(&l->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    throttle__start(l);
    pthread_mutex_init(&l->inbox_mu, NULL);
    atomic_init(&l->n_subs, 0);
    atomic_init(&l->load, 0);
    l->router = router_create();
    l->out = xcalloc(b->n_loops, sizeof *l->out);
    router_hits_init(&l->hits);
    l->rbuf = xmalloc(LOOP_READ_BUF);
    /* One decode arena per loop: a packet is decoded and handled before
     * the next one, of any connection, is (mqtt.c input). */
    arena_init(&l->arena, (1u << 20) + b->cfg->max_packet_size / 2);
    if (index == 0) sys__start(l);
    return 0;
}

void loop__close_handles(loop_t *l)
{
    if (uv_is_closing((uv_handle_t *)&l->prepare)) return;
    /* Under the inbox lock: a producer that saw inbox_closed == 0 has
     * finished its uv_async_send before the handle starts closing. */
    pthread_mutex_lock(&l->inbox_mu);
    l->inbox_closed = 1;
    pthread_mutex_unlock(&l->inbox_mu);
    uv_close((uv_handle_t *)&l->prepare, NULL);
    uv_close((uv_handle_t *)&l->check, NULL);
    uv_close((uv_handle_t *)&l->sweep, NULL);
    uv_close((uv_handle_t *)&l->async, NULL);
    throttle__close(l);
    sys__close(l);
}

int loop__close_uv(loop_t *l)
{
    if (!l->uv_closed) {
        l->close_rc = uv_loop_close(&l->uv);
        l->uv_closed = 1;
    }
    return l->close_rc;
}

void loop__dispose(loop_t *l)
{
    if (l->rbuf == NULL) return; /* never initialised */
    inbox__drop_items(&l->inbox);
    inbox__drop_items(&l->work);
    inbox__items_dispose(&l->inbox);
    inbox__items_dispose(&l->work);
    for (unsigned j = 0; j < l->b->n_loops; j++) {
        inbox__drop_items(&l->out[j]);
        inbox__items_dispose(&l->out[j]);
    }
    free(l->out);
    router_destroy(l->router);
    router_hits_dispose(&l->hits);
    pthread_mutex_destroy(&l->inbox_mu);
    free(l->bufs);
    free(l->rbuf);
    free(l->mvec);
    arena_dispose(&l->arena);
    loop__state_dispose(l);
    l->out = NULL;
    l->router = NULL;
    l->bufs = NULL;
    l->rbuf = NULL;
    l->mvec = NULL;
}

void loop__fold_counters(loop_t *l)
{
    broker_counters_t *k = &l->b->cnt;
    if (l->msgs_out != 0)
        atomic_fetch_add_explicit(&k->msgs_out, l->msgs_out, memory_order_relaxed);
    if (l->bytes_in != 0)
        atomic_fetch_add_explicit(&k->bytes_in, l->bytes_in, memory_order_relaxed);
    if (l->bytes_out != 0)
        atomic_fetch_add_explicit(&k->bytes_out, l->bytes_out, memory_order_relaxed);
    l->msgs_out = l->bytes_in = l->bytes_out = 0;
    if (l->acl_denied_read != 0) {
        atomic_fetch_add_explicit(&k->acl_denied_read, l->acl_denied_read, memory_order_relaxed);
        l->acl_denied_read = 0;
    }
    if ((l->pkts_in | l->pkts_out | l->connects) == 0) return;
    atomic_fetch_add_explicit(&k->pkts_in, l->pkts_in, memory_order_relaxed);
    atomic_fetch_add_explicit(&k->pkts_out, l->pkts_out, memory_order_relaxed);
    atomic_fetch_add_explicit(&k->connects, l->connects, memory_order_relaxed);
    l->pkts_in = l->pkts_out = l->connects = 0;
}

msg_t *loop__ref(loop_t *l, msg_t *m)
{
    if (l->credit_msg != m || l->credit == 0) return msg_retain(m);
    l->credit--;
    return m;
}

void loop__subs_changed(loop_t *l)
{
    size_t n = l->stopping ? 0 : router_count(l->router);
    /* release: a loop that reads n > 0 and forwards a PUBLISH here finds
     * the subscription in l->router, which only l's thread reads. */
    atomic_store_explicit(&l->n_subs, n, memory_order_release);
}

void loop__stop(loop_t *l)
{
    if (l->stopping) return;
    l->stopping = 1;
    loop__subs_changed(l); /* others stop forwarding here */
    atomic_fetch_add_explicit(&l->b->conns_closed_at_stop, l->n_conns,
                              memory_order_relaxed);
    for (conn_t *c = l->conns; c != NULL; c = c->next)
        conn__close(c, PKT_RC_SERVER_SHUTTING_DOWN,
                    CONN_CLOSE_DISCONNECT | CONN_CLOSE_QUIET, "server shutting down");
    if (l->n_conns == 0) loop__close_handles(l);
    log_debug("worker loop %u stopping", l->index);
}

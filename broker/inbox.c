/*
 * inbox.c - how the worker loops talk to each other: outboxes, inboxes and
 * the items they carry.
 *
 * THE THREADING MODEL
 *
 * The main thread runs the listener loop (listener.c): the listening
 * socket, SIGINT/SIGTERM and shutdown. `threads` worker loops each run on
 * their own thread. A worker OWNS, and is the only thread to touch:
 *   - its connections (conn_t: socket, input, out-batches);
 *   - its router (subscriptions of the sessions it owns; no lock);
 *   - the sessions it owns (sess->loop == l, from creation to the end):
 *     their connection pointer, queue, inflight window, subscriptions
 *     list, will, expiry;
 *   - its outboxes, dirty list and reused vectors.
 * Shared between threads, and nothing else:
 *   - msg_t: immutable after creation, atomic refcount, blocks go back to
 *     the pool of the thread that made them (queue/msg.c);
 *   - the retained trie, behind b->retained_lock;
 *   - the session map: session_shards shards (64 by default), a mutex
 *     each, under which a session is found, created (owner set) or
 *     unlinked;
 *   - per loop: the inbox (behind inbox_mu), n_subs and load (atomics);
 *   - broker-wide atomic counters.
 *
 * MESSAGES BETWEEN LOOPS
 *
 * A loop never locks another loop's inbox per message. During its tick it
 * appends items to out[target], a vector it alone owns; its end-of-tick
 * hook (loop.c flush_all, uv_prepare and uv_check) moves each non-empty
 * outbox into the target's inbox under one lock (swapping the vectors when
 * the inbox is empty, appending otherwise) and calls uv_async_send once per
 * target. The target's async callback swaps the whole inbox out under the
 * lock and runs every item; what that produces is written by its own
 * flush hook. All vectors are kept and reused: no allocation per item once
 * they have grown. Items of one producer reach a target in the order they
 * were posted.
 *
 * PUBLISH. A PUBLISH read on loop P is matched against P's router and
 * delivered to P's sessions at once; then one ITEM_PUBLISH (one message
 * reference) goes to every other loop whose n_subs is non-zero, which
 * matches it against its own router. Subscribe ordering guarantee: a loop
 * adds a subscription to its router and stores n_subs (release) BEFORE it
 * queues the SUBACK; any PUBLISH that a loop reads after that SUBACK was
 * written (any causal chain through the network: the kernel's socket
 * locks order the two) sees n_subs > 0 (acquire) and is forwarded, and
 * the owner loop processes the item after the subscription is in its
 * router. A PUBLISH concurrent with the SUBSCRIBE may or may not be
 * delivered, as on any broker. Also: the outboxes are flushed before any
 * connection is written, so a PUBLISH is in every target inbox before its
 * PUBACK leaves.
 *
 * SHARE. A shared subscription group's members may be sessions of any
 * loop; the publishing loop picks one member per group (share.c, under
 * the registry's mutex) and, for a member of another loop, posts
 * ITEM_SHARE {message, member reference} to that loop. Only the member's
 * loop clears the member's session pointer (under the mutex), so the
 * receiving loop sees without a lock whether the member is still in the
 * group, and picks again if not. The same ordering guarantee holds: a
 * session joins its group (b->n_shared, release) before its SUBACK is
 * queued.
 *
 * SESSIONS STAY; CONNECTIONS MOVE
 *
 * A session is owned by the loop that created it for its whole life,
 * online or not: only that loop touches it, keeps its subscriptions in
 * its router, sweeps it and ends it. A CONNECT on loop B calls
 * sess__find_or_create, which under the shard mutex either creates the
 * session, owned by B, or returns the existing one's owner A:
 *   - A == B: the same-loop path (a live connection holding the session
 *     gets DISCONNECT 0x8E, clean start, session present, CONNACK,
 *     resend, drain);
 *   - A != B: the CONNECT handler returns CONN_MIGRATE and the MQTT
 *     transport's input (mqtt.c), which knows the buffer, moves the
 *     CONNECTION: it stops reading, dup()s the socket, copies the input
 *     from the CONNECT's first byte on (the CONNECT and whatever the
 *     client pipelined after it; none of it is processed on B), takes the
 *     connection's transport state along (TLS: with its unread
 *     ciphertext), posts MIGRATE {fd, bytes, hops, transport} to A and
 *     closes its connection quietly (no will, no CONNACK, DEBUG log, not
 *     counted as closed; uv_close closes only B's descriptor, the
 *     duplicate keeps the socket open). A opens the descriptor as on
 *     ACCEPT, feeds it the bytes as if just read, then reads: the CONNECT
 *     is handled from scratch and now finds the session A's own.
 * If the session ended on A and was re-created on another loop C in
 * between, A moves the connection on to C; after MIGRATE_MAX_HOPS moves
 * the CONNECT is refused with "Server busy" (v5 0x89, v3.1.1 code 3).
 *
 * Why it is race-free: ownership never changes, so no session state ever
 * crosses threads and a session's router entries never leave its
 * owner's router: a PUBLISH that matches a session always finds it,
 * online or offline, at every moment (no window while a session moves).
 * The only cross-thread steps are the shard-locked find-or-create (whose
 * result about another loop is only that loop's index: B never touches
 * A's session) and the descriptor hand-off through A's inbox; a
 * connection exists on exactly one loop at a time (B stops reading before
 * it posts, A starts only when the item runs, and the kernel keeps any
 * bytes that arrive meanwhile). Sessions are freed only by their owner
 * after unlinking them under the shard mutex, or by the main thread after
 * every loop has stopped.
 *
 * Trade-off: the listener still places each new connection on the least
 * loaded loop, but a persistent session sticks to its loop, so a
 * reconnecting persistent client costs one extra hand-off (a dup, a copy
 * of its CONNECT, an inbox round), and load may skew toward loops that
 * hold many long-lived sessions (the moved connections are counted in
 * their new loop's load, so new clients avoid it).
 *
 * SHUTDOWN
 *
 * The listener stops accepting and posts STOP to every worker; a worker
 * closes its connections (v5 DISCONNECT 0x8B, no wills), then its handles;
 * loop__close_handles marks the inbox closed under inbox_mu so no producer
 * wakes a closing loop. Items still queued are dropped by the main thread
 * after joining every worker (loop__dispose).
 */
#include "inbox_int.h"
#include "listener_int.h"

#include "conn_int.h"
#include "deliver_int.h"
#include "loop_int.h"
#include "mqtt_int.h"
#include "persist_int.h"
#include "sess_int.h"
#include "share_int.h"
#include "throttle_int.h"

#include <stdlib.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

static loop_item_t *items_push(item_vec_t *v)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->v = xrealloc(v->v, v->cap * sizeof *v->v);
    }
    return &v->v[v->n++];
}

void inbox__append(item_vec_t *v, const loop_item_t *item)
{
    *items_push(v) = *item;
}

void inbox__post(loop_t *from, unsigned to, const loop_item_t *item)
{
    *items_push(&from->out[to]) = *item;
}

/* Moves src's items to the end of dst (dst empty: swap the arrays). */
static void items_move(item_vec_t *dst, item_vec_t *src)
{
    if (dst->n == 0) {
        item_vec_t t = *dst;
        *dst = *src;
        *src = t;
        return;
    }
    for (size_t i = 0; i < src->n; i++) *items_push(dst) = src->v[i];
    src->n = 0;
}

void inbox__flush_outboxes(broker_t *b, item_vec_t *out)
{
    for (unsigned j = 0; j < b->n_loops; j++) {
        loop_t *t = &b->loops[j];
        if (out[j].n == 0) continue;
        pthread_mutex_lock(&t->inbox_mu);
        items_move(&t->inbox, &out[j]);
        /* Sent under the lock: see loop__close_handles. */
        if (!t->inbox_closed) uv_async_send(&t->async);
        pthread_mutex_unlock(&t->inbox_mu);
    }
}

void inbox__post_direct(loop_t *t, const loop_item_t *item)
{
    pthread_mutex_lock(&t->inbox_mu);
    *items_push(&t->inbox) = *item;
    if (!t->inbox_closed) uv_async_send(&t->async); /* see loop__close_handles */
    pthread_mutex_unlock(&t->inbox_mu);
}

/* A socket from a listener: a connection with the listener's transport
 * (its protocol, or TLS wrapping it with the context the item holds). */
static void accept_item(loop_t *l, loop_item_t *it)
{
    const listener_t *ls = it->ptr;
    conn__open(l, it->fd, ls->tp, ls->proto, it->tls_ctx, ls->anon);
    tls_ctx_release(&it->tls_ctx); /* the connection took its own */
}

/* Runs one item on its target loop l. */
static void run_item(loop_t *l, loop_item_t *it)
{
    switch (it->kind) {
    case ITEM_ACCEPT:
        accept_item(l, it);
        break;
    case ITEM_PUBLISH: {
        size_t ops = persist__ops(l);
        if (!l->stopping) deliver__local(l, it->m);
        if (it->report) persist__delivered(l, it->m, ops);
        /* After any congestion mark: throttle.c. */
        if (it->m->qos > 0 && l->b->cfg->throttle_publishers)
            throttle__delivered(l, it->m, (unsigned)it->seq);
        msg_release(&it->m);
        break;
    }
    case ITEM_SHARE:
        share__item(l, it);
        break;
    case ITEM_COMMITTED:
        persist__committed(l, it->ptr);
        break;
    case ITEM_ACK_WAKE:
        persist__run_acks(l);
        break;
    case ITEM_MIGRATE:
        mqtt__open_moved(l, it);
        break;
    case ITEM_STOP:
        loop__stop(l);
        break;
    default:
        log_error("worker loop %u: unknown item kind %u", l->index, it->kind);
        break;
    }
}

void inbox__on_async(uv_async_t *h)
{
    loop_t *l = h->data;
    pthread_mutex_lock(&l->inbox_mu);
    items_move(&l->work, &l->inbox);
    pthread_mutex_unlock(&l->inbox_mu);
    for (size_t i = 0; i < l->work.n; i++) run_item(l, &l->work.v[i]);
    l->work.n = 0;
    throttle__wake(l); /* another loop may have woken us for this */
}

void inbox__drop_items(item_vec_t *v)
{
    for (size_t i = 0; i < v->n; i++) {
        loop_item_t *it = &v->v[i];
        if (it->kind == ITEM_PUBLISH || it->kind == ITEM_SHARE) msg_release(&it->m);
        if (it->kind == ITEM_SHARE) {
            share_member_t *mb = it->ptr;
            share__member_release(&mb);
        }
        if (it->kind == ITEM_ACCEPT || it->kind == ITEM_MIGRATE) close(it->fd);
        if (it->kind == ITEM_ACCEPT) tls_ctx_release(&it->tls_ctx);
        if (it->kind == ITEM_MIGRATE) {
            free(it->bytes);
            if (it->tp->free != NULL) it->tp->free(NULL, it->tp_data);
        }
        if (it->kind == ITEM_COMMITTED) persist__drop_record(it->ptr);
    }
    v->n = 0;
}

void inbox__items_dispose(item_vec_t *v)
{
    free(v->v);
    v->v = NULL;
    v->n = v->cap = 0;
}

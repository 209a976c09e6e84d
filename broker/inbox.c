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
 *   - the sessions it owns (sess->loop == l): their connection pointer,
 *     queue, inflight window, subscriptions list, will, expiry;
 *   - its outboxes, dirty list and reused vectors.
 * Shared between threads, and nothing else:
 *   - msg_t: immutable after creation, atomic refcount, blocks go back to
 *     the pool of the thread that made them (queue/msg.c);
 *   - the retained trie, behind b->retained_lock;
 *   - the session map: session_shards shards (64 by default), a mutex
 *     each, which also guards each session's ownership and claim fields
 *     (marked "shard" in sess_t);
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
 * SESSION TAKEOVER ACROSS LOOPS
 *
 * A session is owned by exactly one loop at a time, online or not, and
 * only the owner mutates it. A CONNECT on loop B for a client id calls
 * sess__claim, which under the shard mutex finds or creates the session:
 *   - absent: created, owned by B (SESS_NEW);
 *   - owned by B and not in transit: same-loop takeover, as on a single
 *     loop (SESS_LOCAL); a pending claim of another connection x on loop
 *     X is superseded: REJECT(x) goes to X;
 *   - owned by A != B (or in transit): B records the claim
 *     {B, c, ++claim_seq, clean_start}, REJECTs the previous pending claim
 *     (unless that one is already being adopted: its adopter closes it),
 *     posts TAKEOVER(s, seq) to A, stops reading c (CONN_TAKING) and waits.
 * A on TAKEOVER(s, seq), if it still owns s (not in transit) and seq is the
 * pending claim's: closes s->conn (v5 DISCONNECT 0x8E, will per the usual
 * rules), removes s's subscriptions from its router (s->subs keeps them),
 * drops it from its sweep list, and under the shard mutex sets s->loop to
 * the claimer, transit = 1, then posts ADOPT(s, c, seq). Otherwise it
 * ignores the item (a newer claim's TAKEOVER or adoption handles s).
 * B on ADOPT: clears transit under the mutex; adds s->subs to its router;
 * if s->claim_seq is still seq it clears the claim and finishes the CONNECT
 * exactly like the local path (clean start, session present, CONNACK,
 * resend, drain, resume reading); else c was superseded while s travelled:
 * B closes c and hands s straight on to the pending claim.
 * If c died meanwhile, s simply stays with B as an offline session.
 *
 * Why it is race-free: (1) ownership changes only under the shard mutex
 * and only by the owner, and only to the loop of the pending claim; every
 * other field of s is touched by the owner thread only, and the hand-off
 * (mutex + inbox mutex) orders the old owner's writes before the new
 * owner's reads. (2) Exactly one item names each claiming connection: the
 * ADOPT (claim honoured, or superseded in transit) or the REJECT
 * (superseded before the hand-off), never both, so a CONN_TAKING
 * connection's memory is kept (parked) until that item arrives and then
 * freed exactly once. (3) A never destroys or expires a session with a
 * pending claim (sess__end marks it ended instead; the adopter starts it
 * afresh), so a TAKEOVER or ADOPT never names freed memory. (4) Sessions
 * are freed only by their owner after unlinking them under the mutex with
 * no claim pending, or by the main thread after every loop has stopped.
 *
 * Known window: a QoS 1/2 message published between A leaving its router
 * and B's ADOPT, matched only by the moving session, is not delivered.
 *
 * SHUTDOWN
 *
 * The listener stops accepting and posts STOP to every worker; a worker
 * closes its connections (v5 DISCONNECT 0x8B, no wills), then its handles;
 * loop__close_handles marks the inbox closed under inbox_mu so no producer
 * wakes a closing loop. Items still queued are dropped by the main thread
 * after joining every worker (loop__dispose).
 */
#include "broker_int.h"

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

void loop__items_append(item_vec_t *v, const loop_item_t *item)
{
    *items_push(v) = *item;
}

void loop__post(loop_t *from, unsigned to, const loop_item_t *item)
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

void loop__flush_outboxes(broker_t *b, item_vec_t *out)
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

/* Runs one item on its target loop l. */
static void run_item(loop_t *l, loop_item_t *it)
{
    switch (it->kind) {
    case ITEM_ACCEPT:
        conn__open(l, it->fd);
        break;
    case ITEM_PUBLISH:
        if (!l->stopping) broker__deliver_local(l, it->m);
        /* After any congestion mark: throttle.c. */
        if (it->m->qos > 0 && l->b->cfg->throttle_publishers)
            loop__throttle_delivered(l, it->m, (unsigned)it->seq);
        msg_release(&it->m);
        break;
    case ITEM_TAKEOVER:
        sess__on_takeover(l, it->s, it->seq);
        break;
    case ITEM_ADOPT:
        conn__on_adopt(l, it->s, it->c, it->seq);
        break;
    case ITEM_REJECT:
        conn__on_reject(l, it->c);
        break;
    case ITEM_STOP:
        loop__stop(l);
        break;
    default:
        log_error("worker loop %u: unknown item kind %u", l->index, it->kind);
        break;
    }
}

void loop__on_async(uv_async_t *h)
{
    loop_t *l = h->data;
    pthread_mutex_lock(&l->inbox_mu);
    items_move(&l->work, &l->inbox);
    pthread_mutex_unlock(&l->inbox_mu);
    for (size_t i = 0; i < l->work.n; i++) run_item(l, &l->work.v[i]);
    l->work.n = 0;
    loop__throttle_wake(l); /* another loop may have woken us for this */
}

void loop__drop_items(item_vec_t *v)
{
    for (size_t i = 0; i < v->n; i++) {
        loop_item_t *it = &v->v[i];
        if (it->kind == ITEM_PUBLISH) msg_release(&it->m);
        if (it->kind == ITEM_ACCEPT) close(it->fd);
    }
    v->n = 0;
}

void loop__items_dispose(item_vec_t *v)
{
    free(v->v);
    v->v = NULL;
    v->n = v->cap = 0;
}

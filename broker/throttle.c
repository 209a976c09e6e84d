/*
 * throttle.c - lossless QoS 1/2: an online subscriber that cannot keep up
 * pauses the publishers feeding it instead of losing acknowledged messages.
 *
 * THE DESIGN
 *
 * Soft limit: max_queued_messages / max_queued_bytes of a session queue.
 * Hard limit: twice that. With throttle_publishers on, a QoS 1/2 delivery
 * that leaves an ONLINE session's queue above the soft limit makes the
 * session "congested" (s->congested, counted in its owner loop's atomic
 * n_congested); it stays so until its queue is at or below half the soft
 * limit, or it goes offline, is reset or leaves the loop. Every QoS 1/2
 * message queued into a congested session is marked with the loop
 * (its congested_loop = 1 + index, in msg_state_t). Messages keep being
 * queued up to the hard limit; only past it are they dropped (counted,
 * logged once per session, as before). Offline sessions, and everything
 * with throttle_publishers 0, keep the soft limit and drop past it.
 *
 * A publishing connection c on loop P is paused (uv_read_stop; bytes
 * already read wait in c->in, unprocessed) right after a QoS 1/2 PUBLISH
 * m, in one of three ways (throttle__note):
 *   - WAIT_CONGESTED: a delivery on P itself marked m (local deliveries run
 *     inside deliver__publish). c waits until that loop's n_congested is 0.
 *   - WAIT_PROBE: forward() posted m to a loop whose n_congested was > 0.
 *     c keeps m (c->probe) and waits until every target has delivered it:
 *     forward() adds the number of targets to m->fwd_pending and each
 *     target subtracts one after delivering (acq_rel). Once it is 0 the
 *     marks are visible; a mark from a loop still congested turns the wait
 *     into WAIT_CONGESTED, else c goes on. So while a loop has a congested
 *     session, publishers feeding it advance one message per round trip.
 *   - WAIT_BACKLOG: forward() found a target whose backlog (QoS 1/2 items
 *     posted to it and not yet delivered, counted by every producer) is
 *     past backlog_max (half the soft limit, at most 4096 messages) or
 *     backlog_max_bytes. c waits until it is below half of that.
 * A per-loop timer (1 ms, running only while the loop has paused
 * connections) resumes those that may go on and refreshes last_rx of the
 * others, so keep-alive never expires a client we chose not to read. A
 * probe's last delivery also wakes P at once: a flag bit in fwd_pending
 * (FWD_WAITER) asks for it, and the flag and count share one atomic so
 * exactly one of the two sides sees the other.
 *
 * Why it is race-free: the owner loop increments n_congested before it
 * stores a mark, and stores the mark before its release decrement of
 * fwd_pending; the publisher's acquire load of fwd_pending == 0 therefore
 * sees the mark and an n_congested no older than that increment, so a
 * publisher never waits on a count that had not risen yet (and one that
 * fell since lets it go at once). Each loop changes only its own counts;
 * the others only read them. No lock on the delivery path: a congested
 * session costs one relaxed store per message; a forwarded QoS 1/2
 * message costs, per target, one atomic add on P and one subtract on the
 * target for fwd_pending and for the backlog. The wake-up takes the
 * target's inbox lock, and only for paused probes.
 *
 * Bound: when a session S on loop B becomes congested, what reaches S
 * before its publishers stop is B's backlog (at most backlog_max plus one
 * message per producer racing the limit), plus one message per publisher
 * (its local mark, or its probe). So the queue stays under the hard limit
 * while fewer than about max_queued_messages / 4 publishers feed one
 * congested session at once; past that, drops are counted as before.
 * The wait is per loop, not per session: a publisher waits until the loop
 * it waits for has no congested session at all. A connection whose own
 * session is congested is never throttled (and is resumed if it was), so
 * a client that publishes to a topic it is slow to read, or two clients
 * feeding each other, cannot deadlock; such a client is bounded by the
 * hard limit only. A subscriber that never reads keeps its publishers
 * paused until it disconnects.
 */
#include "throttle_int.h"
#include "sess_int.h"

#include "conn_int.h"
#include "deliver_int.h"
#include "inbox_int.h"
#include "loop_int.h"

#include <stdlib.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

/* How often a loop with paused connections checks what they wait for. */
#define THROTTLE_TICK_MS 1

/* Upper bound of backlog_max, in messages. */
#define BACKLOG_MAX_CAP 4096u

/* msg_state_t.fwd_pending: the count of loops yet to deliver, and a flag
 * asking the last of them to wake the publisher's loop. */
#define FWD_COUNT 0x7fffu
#define FWD_WAITER 0x8000u

/* conn_t.throttled: why the connection is paused. */
enum { WAIT_NONE = 0, WAIT_CONGESTED, WAIT_PROBE, WAIT_BACKLOG };

static void on_throttle_tick(uv_timer_t *t);

/* A loop's throttling state (loop_t.throttle). Fields marked atomic are
 * read by the other loops; the rest is the loop's own. */
struct throttle_loop_s {
    atomic_uint n_congested; /* sessions of this loop that are congested;
                                read by every loop's throttle timer */
    atomic_uint backlog;  /* QoS 1/2 PUBLISH items posted to this loop and
                             not yet delivered (any producer) */
    atomic_size_t backlog_bytes; /* their topic + payload bytes */
    unsigned backlog_max; /* a producer pauses a publisher past these */
    size_t backlog_max_bytes;
    uint8_t fwd_congested; /* forward(): a target had a congested session */
    uint16_t fwd_backlog; /* forward(): 1 + index of a target past its
                             backlog limit, or 0 */
    uv_timer_t timer;     /* runs while n_throttled > 0 */
    conn_t **throttled;   /* this loop's throttled connections */
    size_t n_throttled, cap_throttled;
    conn_t **resumable;   /* scratch of the throttle timer */
    size_t cap_resumable;
};

/* Counters and backlog limits (from the config) of l. */
void throttle__loop_init(loop_t *l)
{
    const broker_config_t *cfg = l->b->cfg;
    throttle_loop_t *k = l->throttle = xcalloc(1, sizeof *l->throttle);
    atomic_init(&k->n_congested, 0);
    atomic_init(&k->backlog, 0);
    atomic_init(&k->backlog_bytes, 0);
    k->backlog_max = cfg->max_queued_messages / 2;
    if (k->backlog_max > BACKLOG_MAX_CAP) k->backlog_max = BACKLOG_MAX_CAP;
    if (k->backlog_max == 0) k->backlog_max = 1;
    k->backlog_max_bytes = cfg->max_queued_bytes / 2 ? cfg->max_queued_bytes / 2 : 1;
}

/* The timer of l, on its uv loop. */
void throttle__start(loop_t *l)
{
    uv_timer_init(&l->uv, &l->throttle->timer);
    l->throttle->timer.data = l;
}

/* Closes the timer (with the loop's other handles). */
void throttle__close(loop_t *l)
{
    uv_close((uv_handle_t *)&l->throttle->timer, NULL);
}

/* Frees the paused list, its scratch and the state (the timer, if it was
 * started, is closed: loop__dispose runs after uv_loop_close). */
void throttle__loop_dispose(loop_t *l)
{
    throttle_loop_t *k = l->throttle;
    if (k == NULL) return;
    free(k->throttled);
    free(k->resumable);
    free(k);
    l->throttle = NULL;
}

/* A publish begins on l: forward() notes its targets' state afresh. */
void throttle__publish_begin(loop_t *l)
{
    l->throttle->fwd_congested = 0;
    l->throttle->fwd_backlog = 0;
}

/* ---- the producer side of forward() ---- */

/* Counts m in t's backlog; notes t's congestion and backlog in l. */
void throttle__forwarding(loop_t *l, loop_t *t, msg_t *m)
{
    throttle_loop_t *k = l->throttle;
    throttle_loop_t *tk = t->throttle;
    size_t bytes = (size_t)m->payload_len + m->topic_len;
    unsigned n = atomic_fetch_add_explicit(&tk->backlog, 1, memory_order_relaxed) + 1;
    size_t nb = atomic_fetch_add_explicit(&tk->backlog_bytes, bytes, memory_order_relaxed) + bytes;
    if (n > tk->backlog_max || nb > tk->backlog_max_bytes)
        k->fwd_backlog = (uint16_t)(t->index + 1);
    if (atomic_load_explicit(&tk->n_congested, memory_order_relaxed) > 0) k->fwd_congested = 1;
}

/* Takes m off l's backlog and fwd_pending; wakes a waiting probe. */
void throttle__delivered(loop_t *l, msg_t *m, unsigned from)
{
    size_t bytes = (size_t)m->payload_len + m->topic_len;
    atomic_fetch_sub_explicit(&l->throttle->backlog, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&l->throttle->backlog_bytes, bytes, memory_order_relaxed);
    unsigned old = atomic_fetch_sub_explicit(&broker__msg(m)->fwd_pending, 1, memory_order_acq_rel);
    if ((old & FWD_COUNT) != 1 || !(old & FWD_WAITER) || from >= l->b->n_loops) return;
    /* The last delivery of a probe: wake its loop (under the inbox lock,
     * as inbox__flush_outboxes does, so a closing loop's async is never
     * used). */
    loop_t *t = &l->b->loops[from];
    pthread_mutex_lock(&t->inbox_mu);
    if (!t->inbox_closed) uv_async_send(&t->async);
    pthread_mutex_unlock(&t->inbox_mu);
}

/* ---- pausing a publisher ---- */

/* 1 when loop `mark` (1 + index) has a congested session now. */
static int still_congested(broker_t *b, uint16_t mark)
{
    unsigned j = (unsigned)mark - 1;
    return j < b->n_loops &&
           atomic_load_explicit(&b->loops[j].throttle->n_congested, memory_order_acquire) > 0;
}

/* 1 when loop `wait` (1 + index) is below half its backlog limits. */
static int backlog_low(broker_t *b, uint16_t wait)
{
    unsigned j = (unsigned)wait - 1;
    if (j >= b->n_loops) return 1;
    const loop_t *t = &b->loops[j];
    const throttle_loop_t *k = t->throttle;
    size_t bytes = atomic_load_explicit(&k->backlog_bytes, memory_order_relaxed);
    return atomic_load_explicit(&k->backlog, memory_order_relaxed) <= k->backlog_max / 2 &&
           bytes <= k->backlog_max_bytes / 2;
}

/* Stops reading c and puts it on its loop's paused list. */
static void pause_conn(conn_t *c, uint8_t why, uint16_t wait)
{
    loop_t *l = c->loop;
    throttle_loop_t *k = l->throttle;
    if (k->n_throttled == k->cap_throttled) {
        k->cap_throttled = k->cap_throttled ? k->cap_throttled * 2 : 16;
        k->throttled = xrealloc(k->throttled, k->cap_throttled * sizeof *k->throttled);
    }
    k->throttled[k->n_throttled++] = c;
    c->throttled = why;
    c->wait_loop = wait;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (k->n_throttled == 1)
        uv_timer_start(&k->timer, on_throttle_tick, THROTTLE_TICK_MS, THROTTLE_TICK_MS);
    if (why == WAIT_CONGESTED)
        log_debug("client %s (%s): its messages fill a congested session (loop %u), "
                  "reading paused", conn__id(c), conn__peer(c), (unsigned)wait - 1);
}

/* 1 when c may be throttled on loop `mark`: that loop is still congested
 * and c's own session is not (such a client is always read, see above). */
static int may_throttle(const conn_t *c, uint16_t mark)
{
    if (c->sess != NULL && c->sess->congested) return 0;
    return mark != 0 && still_congested(c->loop->b, mark);
}

/* After c published QoS 1/2 m: pauses c if m met congestion (above). */
void throttle__note(conn_t *c, msg_t *m)
{
    loop_t *l = c->loop;
    uint16_t mark = atomic_load_explicit(&broker__msg(m)->congested_loop, memory_order_relaxed);
    if (c->throttled || !conn__running(c)) return;
    if (may_throttle(c, mark)) {
        pause_conn(c, WAIT_CONGESTED, mark);
    } else if (l->throttle->fwd_congested) {
        /* Not flushed yet, so every target is still to deliver: the
         * flag is always armed here. */
        atomic_fetch_or_explicit(&broker__msg(m)->fwd_pending, FWD_WAITER, memory_order_relaxed);
        c->probe = msg_retain(m);
        pause_conn(c, WAIT_PROBE, 0);
    } else if (l->throttle->fwd_backlog != 0) {
        pause_conn(c, WAIT_BACKLOG, l->throttle->fwd_backlog);
    }
}

/* Removes index i of l's paused list (order does not matter). */
static void list_remove(loop_t *l, size_t i)
{
    l->throttle->throttled[i] = l->throttle->throttled[--l->throttle->n_throttled];
    if (l->throttle->n_throttled == 0) uv_timer_stop(&l->throttle->timer);
}

/* Leaves the paused list and releases the probe (close). */
void throttle__forget(conn_t *c)
{
    loop_t *l = c->loop;
    /* c->probe shares memory with c->hello: only a WAIT_PROBE holds it. */
    if (c->throttled == WAIT_PROBE && c->probe != NULL) msg_release(&c->probe);
    if (c->throttled == WAIT_NONE) return;
    c->throttled = WAIT_NONE;
    for (size_t i = 0; i < l->throttle->n_throttled; i++) {
        if (l->throttle->throttled[i] == c) {
            list_remove(l, i);
            break;
        }
    }
}

/* ---- resuming ---- */

/* A probe's fate is known: forgets it; returns the loop to wait for now
 * (1 + index), or 0 to go on. */
static uint16_t probe_result(conn_t *c)
{
    uint16_t mark =
        atomic_load_explicit(&broker__msg(c->probe)->congested_loop, memory_order_relaxed);
    msg_release(&c->probe);
    return may_throttle(c, mark) ? mark : 0;
}

/* 1 when the paused connection c may be read again; a resolved probe
 * that was marked turns into WAIT_CONGESTED. */
static int may_resume(conn_t *c)
{
    broker_t *b = c->loop->b;
    if (c->throttled == WAIT_PROBE) {
        unsigned p =
            atomic_load_explicit(&broker__msg(c->probe)->fwd_pending, memory_order_acquire);
        if ((p & FWD_COUNT) != 0) return 0;
        c->wait_loop = probe_result(c);
        if (c->wait_loop == 0) return 1;
        c->throttled = WAIT_CONGESTED;
        log_debug("client %s (%s): its messages fill a congested session (loop %u), "
                  "reading paused", conn__id(c), conn__peer(c), (unsigned)c->wait_loop - 1);
        return 0;
    }
    if (c->throttled == WAIT_BACKLOG) return backlog_low(b, c->wait_loop);
    if (c->sess != NULL && c->sess->congested) return 1;
    return !still_congested(b, c->wait_loop);
}

/* Moves the resumable connections to l->throttle->resumable; returns how many. */
static size_t collect_resumable(loop_t *l, uint64_t now)
{
    throttle_loop_t *k = l->throttle;
    size_t n = 0;
    if (k->cap_resumable < k->n_throttled) {
        k->cap_resumable = k->cap_throttled;
        k->resumable = xrealloc(k->resumable, k->cap_resumable * sizeof *k->resumable);
    }
    for (size_t i = 0; i < k->n_throttled;) {
        conn_t *c = k->throttled[i];
        if (may_resume(c)) {
            k->resumable[n++] = c;
            k->throttled[i] = k->throttled[--k->n_throttled];
        } else {
            c->last_rx = (uint32_t)now; /* paused by us: not a keep-alive failure */
            i++;
        }
    }
    return n;
}

/* Resumes every paused connection of l that may go on. */
static void resume_ready(loop_t *l)
{
    throttle_loop_t *k = l->throttle;
    size_t n = collect_resumable(l, uv_now(&l->uv));
    if (k->n_throttled == 0) uv_timer_stop(&k->timer);
    /* Resuming processes buffered input, which may pause a connection
     * again (appending to k->throttled, never to k->resumable). A closed
     * connection's memory lives until its uv_close callback, a later
     * phase, so every pointer collected stays valid here. */
    for (size_t i = 0; i < n; i++) {
        conn_t *c = k->resumable[i];
        c->throttled = WAIT_NONE;
        c->wait_loop = 0;
        if (conn__running(c)) conn__resume(c);
    }
}

static void on_throttle_tick(uv_timer_t *t)
{
    resume_ready(t->data);
}

/* Async wake-up: resumes what may go on. */
void throttle__wake(loop_t *l)
{
    if (l->throttle->n_throttled > 0) resume_ready(l);
}

/* ---- the subscriber side ---- */

/* 1 when q holds more than its soft limit (0 = unlimited). */
static int over_soft(const queue_t *q)
{
    return (q->max_len != 0 && q->len > q->max_len) ||
           (q->max_bytes != 0 && q->bytes > q->max_bytes);
}

/* 1 when q is at or below half its soft limit. */
static int below_half(const queue_t *q)
{
    return (q->max_len == 0 || 2 * q->len <= q->max_len) &&
           (q->max_bytes == 0 || 2 * q->bytes <= q->max_bytes);
}

/* Twice a limit, saturating; 0 (unlimited) stays 0. */
static size_t twice(size_t v)
{
    return v > SIZE_MAX / 2 ? SIZE_MAX : 2 * v;
}

/* Queues e up to the hard limit; congestion and marks (above). */
int throttle__queue_online(loop_t *l, sess_t *s, queue_entry_t *e, msg_t *m)
{
    queue_t *q = &s->queue;
    int rc = queue_push_bounded(q, e, twice(q->max_len), twice(q->max_bytes));
    if (rc == 0 && !s->congested && over_soft(q)) {
        s->congested = 1;
        atomic_fetch_add_explicit(&l->throttle->n_congested, 1, memory_order_relaxed);
        log_debug("session %s: queue past max_queued_messages/bytes, "
                  "throttling its publishers", s->client_id);
    }
    if (rc == 0 && s->congested) /* after the increment: see above */
        atomic_store_explicit(&broker__msg(m)->congested_loop, (uint16_t)(l->index + 1),
                              memory_order_relaxed);
    return rc;
}

/* Ends s's congestion at half the soft limit, or when forced. */
void throttle__congestion_check(loop_t *l, sess_t *s, int force)
{
    if (!s->congested || (!force && !below_half(&s->queue))) return;
    s->congested = 0;
    atomic_fetch_sub_explicit(&l->throttle->n_congested, 1, memory_order_release);
    log_debug("session %s: queue drained, its publishers resume", s->client_id);
}

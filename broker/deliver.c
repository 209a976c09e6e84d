/*
 * deliver.c - fan-out: router match, then per-subscriber delivery; other
 * loops get the message as one PUBLISH item each (inbox.c).
 *
 * QoS 0 goes straight to the subscriber's out-batch (sharing the message's
 * cached head when it can). QoS 1/2 takes a packet id in the session's
 * inflight window when there is room and nothing is queued ahead of it;
 * otherwise it waits in the session queue, which acks drain. Offline
 * persistent sessions queue QoS 1/2 and drop QoS 0. An online session
 * whose queue passes its limit throttles its publishers (throttle.c).
 */
#include "deliver_int.h"
#include "sess_int.h"

#include "access_int.h"
#include "chunk_int.h"
#include "conn_int.h"
#include "inbox_int.h"
#include "interest_int.h"
#include "loop_int.h"
#include "persist_int.h"
#include "share_int.h"
#include "throttle_int.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

/* Stores (or, with an empty payload, deletes) the retained copy of m. */
static void retain_store(broker_t *b, msg_t *m)
{
    void *prev = NULL;
    pthread_mutex_lock(&b->retained_lock);
    if (m->payload_len == 0) /* MQTT-3.3.1-6: empty payload deletes */
        prev = router_retained_set(b->retained, m->topic, m->topic_len, NULL);
    else
        prev = router_retained_set(b->retained, m->topic, m->topic_len,
                                   msg_retain(m));
    pthread_mutex_unlock(&b->retained_lock);
    if (prev != NULL) {
        msg_t *old = prev;
        msg_release(&old);
    }
}

/* Takes n references of m with one atomic add instead of n (the caller
 * holds one, so the count is live); deliveries use them via loop__ref. */
static void credit_take(loop_t *l, msg_t *m, size_t n)
{
    atomic_fetch_add_explicit(&m->refs, (unsigned)n, memory_order_relaxed);
    l->credit_msg = m;
    l->credit = n;
}

/* Gives back the references no delivery used (never the last one). */
static void credit_return(loop_t *l)
{
    if (l->credit > 0)
        atomic_fetch_sub_explicit(&l->credit_msg->refs, (unsigned)l->credit,
                                  memory_order_relaxed);
    l->credit_msg = NULL;
    l->credit = 0;
}

/* A large fan-out is bound by each subscriber's session, connection and
 * batch (separate blocks): the delivery loops fetch the session PF_SESS
 * hits ahead. The prefetch sits in the loop itself: GCC deletes a call to
 * a helper that only prefetches (it finds it free of side effects), which
 * silently removed the earlier ones. Fetching the connection and batch
 * ahead as well measured no better in bench/micro/deliver.c, nor did
 * dropping this one at 1,000 subscribers; it is kept for larger ones. */
#define PF_SESS 16

/* 1 when every variant of m's QoS 0 PUBLISH is at most PUBLISH_COPY_MAX
 * bytes (head bound: type, 4-byte remaining length, topic length and
 * topic, 4-byte property length and the properties) and the same for every
 * subscriber of a variant (no expiry: see msg_head). */
static int small_message(const msg_t *m)
{
    size_t head_max = 1 + 4 + 2 + m->topic_len + 4 + m->props_len;
    return m->expiry_at == 0 && head_max + m->payload_len <= PUBLISH_COPY_MAX;
}

/* Builds m's whole QoS 0 PUBLISH (retain 0) for v5 into l's current chunk
 * of that variant: sp->p, sp->len and sp->ch. sp->p stays NULL when
 * msg_head cannot give the head or the packet is over PUBLISH_COPY_MAX. */
static void build_small(loop_t *l, msg_t *m, int v5, shared_pkt_t *sp)
{
    size_t hlen = 0;
    const uint8_t *head = msg_head(m, v5, 0, &hlen);
    if (head != NULL && hlen + m->payload_len <= PUBLISH_COPY_MAX) {
        uint8_t *p = chunk__reserve(l, MSG_VARIANT(v5, 0),
                                         hlen + m->payload_len, &sp->ch);
        memcpy(p, head, hlen);
        if (m->payload_len > 0) memcpy(p + hlen, m->payload, m->payload_len);
        sp->len = hlen + m->payload_len;
        chunk__commit(sp->ch, sp->len);
        sp->p = p;
    }
}

/* State of one small QoS 0 fan-out (fanout_small). */
typedef struct fan_s {
    loop_t *l;
    msg_t *m;
    const router_hits_t *h;
    shared_pkt_t pkt[2]; /* v3.x, v5; p == NULL: not built or cannot be */
    uint8_t tried[2];    /* build_small was called for the variant */
    size_t max_out;      /* the broker's max_out_bytes */
} fan_t;

/* 1 when a v5 subscriber needs a PUBLISH of its own rather than the
 * shared one: subscription ids, or topic aliases (alias.c). */
static inline int own_head(const conn_t *c, const router_hit_t *hit)
{
    return hit->id_count > 0 || c->alias_out;
}

/* One delivery of a fan-out off its fast path: builds the variant's
 * packet on first use, then shares it or, when it cannot be built or the
 * v5 subscriber needs its own head (own_head), takes the general path.
 * Returns 1 when it queued the shared packet (counted by the caller),
 * else 0. */
static __attribute__((noinline)) int fan_slow(fan_t *f, const router_hit_t *hit,
                                              conn_t *c, int v5)
{
    shared_pkt_t *sp = &f->pkt[v5];
    if (!f->tried[v5]) {
        build_small(f->l, f->m, v5, sp);
        f->tried[v5] = 1;
    }
    if (sp->p != NULL && !(v5 && own_head(c, hit)))
        return conn__send_shared(c, sp, f->max_out) == 0;
    deliver__sess(f->l, hit->sub, f->m, 0, 0, f->h->ids + hit->id_off, hit->id_count);
    return 0;
}

/* A fan-out's subscriber that is a sink's session (an HTTP/2 event
 * stream) takes the message through its sink. Out of line: the loop below
 * stays as it was for MQTT subscribers (no compare added for them). */
static __attribute__((noinline, cold)) void fan_sink(sess_t *s, msg_t *m)
{
    s->sink->ops->deliver(s->sink, m, 0, 0);
}

/* The common fan-out, kept tight: a small QoS 0 message without the
 * retain flag, so every subscriber gets QoS 0, retain 0 and one of two
 * packets (v3.x or v5), built on first use and shared (chunk.c). A v5
 * subscriber with subscription ids or outbound topic aliases needs its
 * own head: general path. What does not change per subscriber (the hits
 * array, whether any hit has ids or any connection of l takes aliases,
 * max_out_bytes) is read once, and msgs_out is counted once: while no
 * connection of l takes aliases, the loop below is what it was without
 * them. acl is a constant at each call (fanout_small), so the compiler
 * makes two loops: without an ACL file the one below has no check at
 * all; with one, each subscriber's read permission is asked first
 * (access.c, through the session's cache of decisions). */
static inline __attribute__((always_inline)) void fanout_loop(loop_t *l, msg_t *m,
                                                              const router_hits_t *h,
                                                              size_t n, const int acl)
{
    fan_t f = {.l = l, .m = m, .h = h, .max_out = l->b->cfg->max_out_bytes};
    const router_hit_t *v = h->hit;
    size_t max_out = f.max_out;
    int own = h->n_ids > 0 || l->n_alias_out > 0;
    uint64_t sent = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + PF_SESS < n) __builtin_prefetch(v[i + PF_SESS].sub);
        if (acl && !access__may_read(l, v[i].sub, m)) continue;
        conn_t *c = ((sess_t *)v[i].sub)->conn;
        if (c == NULL || c->state != CONN_ACTIVE) { /* QoS 0: dropped, */
            if (c == NULL && ((sess_t *)v[i].sub)->to_sink) fan_sink(v[i].sub, m);
            continue; /* (to_sink is on conn's cache line) */
        }
        int v5 = c->version == PKT_V5;
        const shared_pkt_t *sp = &f.pkt[v5];
        if (sp->p != NULL && !(own && v5 && own_head(c, &v[i])))
            sent += conn__send_shared(c, sp, max_out) == 0;
        else
            sent += (uint64_t)fan_slow(&f, &v[i], c, v5);
    }
    l->msgs_out += sent;
}

static void fanout_small(loop_t *l, msg_t *m, const router_hits_t *h, size_t n)
{
    if (access__acl_on(l->b))
        fanout_loop(l, m, h, n, 1);
    else
        fanout_loop(l, m, h, n, 0);
}

/* The general fan-out: each hit's QoS, retain flag and subscription ids
 * through deliver__sess, with the message references taken in bulk. */
static void deliver_each(loop_t *l, msg_t *m, const router_hits_t *h, size_t n)
{
    const router_hit_t *v = h->hit;
    if (n > 1) credit_take(l, m, n);
    for (size_t i = 0; i < n; i++) {
        const router_hit_t *hit = &v[i];
        if (i + PF_SESS < n) __builtin_prefetch(v[i + PF_SESS].sub);
        uint8_t qos = hit->qos < m->qos ? hit->qos : m->qos;
        /* MQTT-3.3.1-12/13: retain flag kept only with Retain As Published */
        uint8_t retain = hit->rap ? m->retain : 0;
        deliver__sess(l, hit->sub, m, qos, retain, h->ids + hit->id_off,
                      hit->id_count);
    }
    credit_return(l);
}

size_t deliver__local(loop_t *l, msg_t *m)
{
    router_hits_t *h = &l->hits;
    assert(!l->delivering); /* no nested fan-out: it would reuse l->hits */
    size_t n = router_match(l->router, m->topic, m->topic_len, m->origin, h);
    l->delivering = 1; /* h->hit may be the router's: no (un)subscribe */
    if (m->qos == 0 && !m->retain && small_message(m)) {
        fanout_small(l, m, h, n);
    } else {
        deliver_each(l, m, h, n);
    }
    l->delivering = 0;
    return n;
}

/* Posts m to every other loop whose subscriptions may match it; returns
 * how many. The acquires pair with loop__subs_changed and interest.c's
 * counting (ordering guarantee: inbox.c). */
static size_t forward(loop_t *l, msg_t *m)
{
    broker_t *b = l->b;
    size_t k = 0;
    int track = m->qos > 0 && b->cfg->throttle_publishers;
    uint32_t key[2];
    uint16_t reports = 0;
    if (b->n_loops > 1) interest__topic_keys(m->topic, m->topic_len, key);
    for (unsigned j = 0; j < b->n_loops; j++) {
        loop_t *t = &b->loops[j];
        if (t == l || atomic_load_explicit(&t->n_subs, memory_order_acquire) == 0 ||
            !interest__may_match(t, key))
            continue;
        loop_item_t it = {.kind = ITEM_PUBLISH, .m = msg_retain(m), .seq = l->index};
        it.report = (uint8_t)persist__must_report(l, t, m, key);
        reports += it.report;
        inbox__post(l, j, &it);
        if (track) throttle__forwarding(l, t, m);
        k++;
    }
    /* Throttling (throttle.c): each target decrements after delivering.
     * Relaxed: the outbox flush (a mutex) publishes it with the items. */
    if (k > 0 && track)
        atomic_fetch_add_explicit(&broker__msg(m)->fwd_pending, (uint16_t)k, memory_order_relaxed);
    /* persist.c: the targets count down after their commits (relaxed:
     * the outbox flush publishes it with the items) */
    if (reports > 0)
        atomic_fetch_add_explicit(&broker__msg(m)->persist_wait, reports, memory_order_relaxed);
    return k;
}

size_t deliver__publish(loop_t *l, msg_t *m)
{
    throttle__publish_begin(l);
    broker__msg(m)->home = (uint16_t)l->index;
    /* before anyone else sees m: other loops may store it (persist.c) */
    if (m->store_id == 0 && (m->qos > 0 || m->retain) && l->b->store != NULL)
        m->store_id = persist__new_id(l);
    if (m->retain) {
        retain_store(l->b, m);
        persist__retained(l, m);
    }
    size_t n = deliver__local(l, m);
    n += forward(l, m);
    /* Shared subscriptions cost a publish this one load until one exists
     * (acquire: pairs with share__join, ordering guarantee of inbox.c). */
    if (atomic_load_explicit(&l->b->n_shared, memory_order_acquire) != 0)
        n += share__publish(l, m);
    return n;
}

void deliver__publish_sys(loop_t *l, msg_t *m)
{
    assert(m->retain && m->qos == 0 && m->store_id == 0);
    throttle__publish_begin(l);
    broker__msg(m)->home = (uint16_t)l->index;
    retain_store(l->b, m); /* no persist__retained: memory only */
    deliver__local(l, m);
    forward(l, m);
    if (atomic_load_explicit(&l->b->n_shared, memory_order_acquire) != 0)
        share__publish(l, m); /* $share/g/$SYS/... members too */
}

/* Queue-full: count and log once per session. */
static void queue_overflow(broker_t *b, sess_t *s)
{
    CNT_INC(b, dropped_queue);
    if (!s->overflow_logged) {
        s->overflow_logged = 1;
        log_warn("session %s: queue full (max_queued_messages/bytes), "
                 "dropping QoS 1/2 messages", s->client_id);
    }
}

/* Ends the flow of a slot whose PUBLISH cannot be sent (over the client's
 * Maximum Packet Size, which a resumed session may have lowered): the
 * message was counted as dropped and, as MQTT-3.1.2-25 says, is treated as
 * sent, so its packet id and window place are freed instead of waiting
 * for an acknowledgement that cannot come. Never call it from inside
 * inflight_foreach. */
static void give_up_slot(sess_t *s, uint16_t id)
{
    inflight_t *f = &s->inflight;
    inflight_slot_t *slot = inflight_get(f, id);
    if (slot == NULL) return;
    persist__entry_del(s->loop, s, slot->e.seq);
    if (slot->state == INFLIGHT_WAIT_PUBACK) {
        inflight_complete(f, id, PKT_PUBACK);
    } else if (slot->state == INFLIGHT_WAIT_PUBREC) {
        inflight_pubrec(f, id);
        inflight_complete(f, id, PKT_PUBCOMP);
    }
}

/* Sends the message of an inflight slot as a PUBLISH with its packet id.
 * Returns 0, or the send's error (the slot is then still in use). */
static int send_slot(conn_t *c, inflight_slot_t *slot, uint8_t dup)
{
    queue_entry_t *e = &slot->e;
    return conn__send_publish(c, e->m, e->qos, e->retain, dup, slot->packet_id,
                              e->ids, e->n_ids);
}

/* send_slot for a slot just added: frees it again if it cannot be sent.
 * A QoS 2 PUBLISH to a stored session leaves after its entry (with the
 * packet id) is committed: sent earlier, a crash could deliver it twice. */
static void send_new_slot(sess_t *s, inflight_slot_t *slot)
{
    int qos2 = slot->e.qos == 2; /* the slot may be gone after the send */
    if (send_slot(s->conn, slot, 0) != 0)
        give_up_slot(s, slot->packet_id);
    else if (s->stored && qos2)
        persist__hold(s->conn);
}

/* 1 when m fits the client's Maximum Packet Size; counts a drop if not. */
static int fits(conn_t *c, msg_t *m, uint8_t qos, const uint32_t *ids,
                size_t n_ids)
{
    if (c->peer_max_packet == UINT32_MAX) return 1;
    if (conn__publish_size(c, m, qos, ids, n_ids) <= c->peer_max_packet) return 1;
    CNT_INC(c->loop->b, dropped_size); /* MQTT-3.1.2-25: act as if sent */
    return 0;
}

/* The store's state for an inflight slot just sent. */
static uint8_t slot_state(const inflight_slot_t *slot)
{
    return slot->state == INFLIGHT_WAIT_PUBACK ? STORE_ENTRY_PUBACK : STORE_ENTRY_PUBREC;
}

/* Builds a queue entry for m (retains m, copies ids), tagged with the
 * shared subscription group it came through (0: none). */
static void make_entry(queue_entry_t *e, msg_t *m, uint8_t qos, uint8_t retain,
                       const uint32_t *ids, size_t n_ids, uint32_t group)
{
    memset(e, 0, sizeof *e);
    e->m = msg_retain(m);
    e->qos = qos;
    e->retain = retain;
    e->share = group;
    if (n_ids > PKT_MAX_SUB_IDS) n_ids = PKT_MAX_SUB_IDS;
    if (n_ids > 0) {
        e->ids = xmalloc(n_ids * sizeof *e->ids);
        memcpy(e->ids, ids, n_ids * sizeof *e->ids);
        e->n_ids = (uint8_t)n_ids;
    }
}

/* deliver__sess, with the group tag of a shared subscription's entries. */
static void deliver(loop_t *l, sess_t *s, msg_t *m, uint8_t qos, uint8_t retain,
                    const uint32_t *ids, size_t n_ids, uint32_t group)
{
    conn_t *c = s->conn;
    int online = c != NULL && c->state == CONN_ACTIVE;
    queue_entry_t e;
    if (m->expiry_at != 0 && msg_expired(m, msg_now_ms())) {
        CNT_INC(l->b, expired);
        return;
    }
    /* Read permission (ACL file only; retained messages and shared
     * subscriptions come this way too). */
    if (__builtin_expect(access__acl_on(l->b), 0) && !access__may_read(l, s, m)) return;
    if (c == NULL && s->to_sink) { /* never for an MQTT session */
        s->sink->ops->deliver(s->sink, m, qos, retain);
        return;
    }
    if (c != NULL && c->version != PKT_V5) n_ids = 0;
    if (qos == 0) {
        /* QoS 0 to an offline session is dropped (not queued). */
        if (online) conn__send_publish(c, m, 0, retain, 0, 0, ids, n_ids);
        return;
    }
    if (online && !fits(c, m, qos, ids, n_ids)) return;
    make_entry(&e, m, qos, retain, ids, n_ids, group);
    if (s->stored) e.seq = ++s->store_seq;
    if (online && s->queue.len == 0 && inflight_has_room(&s->inflight)) {
        inflight_slot_t *slot = inflight_add(&s->inflight, &e);
        if (slot != NULL) {
            persist__entry_add(l, s, m, &slot->e, slot->packet_id, slot_state(slot));
            send_new_slot(s, slot);
            return;
        }
    }
    queue_entry_t rec = e; /* for the store: the queue takes e */
    /* Online with throttling: up to the hard limit, congestion marks
     * (throttle.c); offline or throttling off: the soft limit. */
    int rc = online && l->b->cfg->throttle_publishers
                 ? throttle__queue_online(l, s, &e, m)
                 : queue_push(&s->queue, &e);
    if (rc != 0)
        queue_overflow(l->b, s);
    else
        persist__entry_add(l, s, m, &rec, 0, STORE_ENTRY_QUEUED);
}

void deliver__sess(loop_t *l, sess_t *s, msg_t *m, uint8_t qos,
                   uint8_t retain, const uint32_t *ids, size_t n_ids)
{
    deliver(l, s, m, qos, retain, ids, n_ids, 0);
}

void deliver__sess_share(loop_t *l, sess_t *s, msg_t *m, uint8_t qos, uint8_t retain,
                         const uint32_t *ids, size_t n_ids, uint32_t group)
{
    deliver(l, s, m, qos, retain, ids, n_ids, group);
}

void deliver__drain(sess_t *s)
{
    conn_t *c = s->conn;
    queue_entry_t e;
    if (c == NULL || c->state != CONN_ACTIVE) return;
    while (inflight_has_room(&s->inflight) && queue_pop(&s->queue, &e) == 0) {
        inflight_slot_t *slot = NULL;
        if (e.m->expiry_at != 0 && msg_expired(e.m, msg_now_ms())) {
            CNT_INC(c->loop->b, expired);
        } else if (fits(c, e.m, e.qos, e.ids, e.n_ids)) {
            slot = inflight_add(&s->inflight, &e);
        }
        if (slot != NULL) {
            persist__entry_update(c->loop, s, slot->e.seq, slot->packet_id,
                                  slot_state(slot), 0);
            send_new_slot(s, slot);
        } else {
            persist__entry_del(c->loop, s, e.seq);
            queue_entry_dispose(&e);
        }
    }
    throttle__congestion_check(c->loop, s, 0);
}

/* What resend_one needs: the connection, and the ids it could not send
 * (ended after the walk: inflight_foreach forbids completing slots). */
typedef struct resend_s {
    conn_t *c;
    uint16_t *failed;
    size_t n_failed;
} resend_t;

/* inflight_foreach callback: resend one slot after a resume. */
static void resend_one(inflight_slot_t *slot, void *ctx)
{
    resend_t *r = ctx;
    if (slot->state == INFLIGHT_WAIT_PUBCOMP) {
        pkt_t p = {.type = PKT_PUBREL};
        p.u.ack.packet_id = slot->packet_id;
        conn__send_pkt(r->c, &p);
    } else if (slot->e.m != NULL && send_slot(r->c, slot, 1) != 0) {
        r->failed[r->n_failed++] = slot->packet_id; /* MQTT-4.4.0-1: same id, DUP */
    }
}

void deliver__resend(sess_t *s)
{
    if (s->conn == NULL || s->inflight.count == 0) return;
    resend_t r = {s->conn, xmalloc(s->inflight.count * sizeof *r.failed), 0};
    inflight_foreach(&s->inflight, resend_one, &r);
    for (size_t i = 0; i < r.n_failed; i++) give_up_slot(s, r.failed[i]);
    free(r.failed);
    if (s->stored) persist__hold(s->conn); /* states may still be pending */
}

/* router_retained_match callback: collect references in l->mvec. */
static void collect(void *value, void *ctx)
{
    loop_t *l = ctx;
    if (l->n_mvec == l->cap_mvec) {
        l->cap_mvec = l->cap_mvec ? l->cap_mvec * 2 : 16;
        l->mvec = xrealloc(l->mvec, l->cap_mvec * sizeof *l->mvec);
    }
    l->mvec[l->n_mvec++] = msg_retain(value);
}

void deliver__retained(loop_t *l, sess_t *s, const char *filter,
                         size_t len, uint8_t granted, uint32_t sub_id)
{
    broker_t *b = l->b;
    l->n_mvec = 0;
    pthread_mutex_lock(&b->retained_lock);
    router_retained_match(b->retained, filter, len, collect, l);
    pthread_mutex_unlock(&b->retained_lock);
    for (size_t i = 0; i < l->n_mvec; i++) {
        msg_t *m = l->mvec[i];
        uint8_t qos = m->qos < granted ? m->qos : granted;
        /* MQTT-3.3.1-9: retained messages on subscribe carry retain 1 */
        deliver__sess(l, s, m, qos, 1, &sub_id, sub_id ? 1 : 0);
        msg_release(&l->mvec[i]);
    }
    l->n_mvec = 0;
}

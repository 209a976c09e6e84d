/*
 * persist.c - the broker's side of the store: what each loop writes, and
 * acknowledgements that wait for the commit.
 *
 * Each worker loop fills one store batch per tick (sessions, subscriptions,
 * queue entries of its stored sessions, retained messages) and the flush
 * hook submits it; the storage thread commits batches in groups and posts
 * ITEM_COMMITTED back to the loop. A QoS 1/2 PUBLISH is acknowledged once
 * every durable write it caused is committed: the publishing loop's batch
 * of that tick (a generation number) and, on each other loop whose stored
 * sessions may match it (durable summary, interest.c), that loop's batch
 * which took its entries; those loops count down its persist_wait after
 * their commit and wake the publishing loop. Acknowledgements leave a
 * connection in the order their packets came (a queue per connection).
 * A message that reached no stored session is acknowledged at once.
 */
#include "persist_int.h"
#include "sess_int.h"

#include "access_int.h"
#include "conn_int.h"
#include "inbox_int.h"
#include "interest_int.h"
#include "publish_int.h"
#include "subscribe_int.h"

#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

/* One acknowledgement waiting for commits. */
typedef struct ack_s {
    msg_t *m;      /* reference while other loops must report, or NULL */
    uint64_t gen;  /* generation of the loop's batch to wait for; 0 none */
    uint8_t *reasons; /* SUBACK/UNSUBACK reason codes (owned once queued) */
    uint32_t n_reasons;
    uint32_t id;   /* packet id; for ACK_TRANSPORT the transport's own */
    uint8_t type;  /* PKT_PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK or
                      ACK_TRANSPORT */
    uint8_t reason;
    uint8_t failed; /* the commit it waited for failed */
} ack_t;

/* A connection's waiting acknowledgements: a ring, oldest at head. */
struct ack_fifo_s {
    ack_t *v;
    size_t head, n, cap; /* cap: power of two */
    size_t n_open;       /* PUBACK and PUBCOMP among them: publishes the
                            client still counts against Receive Maximum */
};

/* A loop's persistence state (loop_t.persist): the batch this tick
 * fills, submitted by the flush hook; generations count submitted
 * batches. The loop's own. */
struct persist_loop_s {
    store_batch_t *batch; /* NULL until the tick's first write */
    uint64_t batch_gen;   /* generation of the batch being filled */
    uint64_t committed_gen; /* highest generation whose commit ended */
    uint64_t put_id;      /* last message written into batch */
    uint64_t next_msg_id; /* store ids: index + k * n_loops + base */
    msg_t **reports;      /* other loops' messages with entries in batch:
                             reported to their publisher once committed */
    size_t n_reports, cap_reports;
    conn_t **ack_conns;   /* connections with waiting acknowledgements */
    size_t n_ack_conns, cap_ack_conns;
    uint8_t *wake;        /* per loop: post ITEM_ACK_WAKE this tick */
    uint8_t wake_any;
    uint8_t want_commit;  /* durability batch: something waits for this
                             tick's commit (submit a barrier with notice) */
    uint32_t batch_bad;   /* operations that could not be added to batch:
                             what waits for it is refused */
};

void persist__loop_init(loop_t *l)
{
    persist_loop_t *p = l->persist = xcalloc(1, sizeof *l->persist);
    p->wake = xcalloc(l->b->n_loops ? l->b->n_loops : 1, 1);
    p->batch_gen = 1;
    p->next_msg_id = l->index + 1; /* persist__ids_after moves it past the store */
}

void persist__loop_dispose(loop_t *l)
{
    persist_loop_t *p = l->persist;
    if (p == NULL) return;
    store_batch_destroy(p->batch);
    for (size_t i = 0; i < p->n_reports; i++) msg_release(&p->reports[i]);
    free(p->reports);
    free(p->ack_conns);
    free(p->wake);
    free(p);
    l->persist = NULL;
}

void persist__ids_after(loop_t *l, uint64_t max_id)
{
    l->persist->next_msg_id = max_id + 1 + l->index;
}

int persist__holds(const loop_t *l, uint64_t gen)
{
    return gen > l->persist->committed_gen;
}

/* What the storage thread hands back for one submitted batch. */
typedef struct commit_rec_s {
    loop_t *l;
    uint64_t gen;
    int status;    /* store_done_cb's */
    msg_t **msgs;  /* other loops' messages with entries in the batch */
    size_t n_msgs;
    uint8_t bad;   /* an operation could not be added: count it failed */
} commit_rec_t;

/* 1 when l writes: it has a store. */
static int on(const loop_t *l)
{
    return l->b->store != NULL;
}

/* Durability batch acknowledges at once only while the storage thread
 * keeps up: past this many operations waiting for a commit (about 0.1 s
 * of its work on the machine of docs/storage.md), acknowledgements wait
 * for the commit as in full mode, so publishers slow to the disk's pace
 * and what a crash can lose stays bounded. */
#define BATCH_MAX_BACKLOG 20000

/* 1 when acknowledgements wait for commits: durability full, or batch
 * with the store behind. Batch mode then asks the flush hook for a
 * commit notice (want_commit). */
static int acks_wait(const loop_t *l)
{
    if (!on(l)) return 0;
    if (l->b->cfg->durability == 0) return 1;
    return store_backlog(l->b->store) > BATCH_MAX_BACKLOG;
}

/* acks_wait for a caller that will wait: in batch mode the tick's batch
 * must then be followed by a barrier whose callback is the notice. */
static int will_wait(loop_t *l)
{
    int w = acks_wait(l);
    if (w && l->b->cfg->durability != 0) l->persist->want_commit = 1;
    return w;
}

/* l's batch for this tick, made on first use. */
static store_batch_t *batch(loop_t *l)
{
    if (l->persist->batch == NULL) l->persist->batch = store_batch_create();
    return l->persist->batch;
}

loop_t *persist__loop(broker_t *b)
{
    return &b->loops[0];
}

uint64_t persist__new_id(loop_t *l)
{
    uint64_t id = l->persist->next_msg_id;
    l->persist->next_msg_id += l->b->n_loops;
    return id;
}

size_t persist__ops(const loop_t *l)
{
    const persist_loop_t *p = l->persist;
    /* failed operations count: what caused one must wait, to be refused */
    return (p->batch != NULL ? store_batch_count(p->batch) : 0) + p->batch_bad;
}

uint64_t persist__gen_since(loop_t *l, size_t ops_before)
{
    return persist__ops(l) > ops_before && will_wait(l) ? l->persist->batch_gen : 0;
}

/* A reference is about to go: the store deletes a message with its last
 * one, so the next entry of the message written last must write it again. */
static void forget_put(loop_t *l)
{
    l->persist->put_id = 0;
}

/* Logs a batch operation that could not be added (memory). */
static void op_failed(loop_t *l, const char *what, const char *id, int rc)
{
    log_error("storage: cannot record %s of %s: %s", what, id, err_str(rc));
    l->persist->batch_bad++; /* what waits for this batch is refused, not acked */
}

/* ---- sessions and subscriptions ---- */

void persist__session_put(loop_t *l, sess_t *s)
{
    if (!on(l)) return;
    store_session_t r = {.client_id = s->client_id, .proto = (uint8_t)s->version,
                         .expiry_s = s->expiry,
                         .disconnected_at = s->conn != NULL ? 0 : msg_now_ms(),
                         .username = access__sess_user(s)};
    msg_t *w = s->will;
    if (w != NULL) {
        r.will_topic = w->topic;
        r.will_payload = w->payload;
        r.will_payload_len = w->payload_len;
        r.will_props = w->props;
        r.will_props_len = w->props_len;
        r.will_qos = w->qos;
        r.will_retain = w->retain != 0;
        r.will_delay_s = s->will_delay;
        r.will_expiry_s = s->will_expiry;
    }
    int rc = store_batch_session_put(batch(l), &r);
    if (rc != 0) op_failed(l, "the session", s->client_id, rc);
    if (!s->stored) {
        s->stored = 1;
        interest__durable_count(l, s, +1);
    }
}

void persist__session_del(loop_t *l, sess_t *s)
{
    if (!s->stored) return;
    forget_put(l);
    if (on(l)) store_batch_session_del(batch(l), s->client_id);
    interest__durable_count(l, s, -1);
    s->stored = 0;
}

void persist__sub_put(loop_t *l, sess_t *s, const char *f, size_t len,
                      uint8_t options, uint32_t sub_id)
{
    if (!s->stored || !on(l)) return;
    char *filter = xstrndup(f, len);
    store_sub_t r = {.client_id = s->client_id, .filter = filter,
                     .qos = options & PKT_SUBOPT_QOS_MASK,
                     .no_local = (options & PKT_SUBOPT_NO_LOCAL) != 0,
                     .retain_as_published = (options & PKT_SUBOPT_RAP) != 0,
                     .retain_handling = (options & PKT_SUBOPT_RH_MASK) >> PKT_SUBOPT_RH_SHIFT,
                     .sub_id = sub_id};
    store_batch_sub_put(batch(l), &r);
    free(filter);
}

void persist__sub_del(loop_t *l, sess_t *s, const char *f, size_t len)
{
    if (!s->stored || !on(l)) return;
    char *filter = xstrndup(f, len);
    store_batch_sub_del(batch(l), s->client_id, filter);
    free(filter);
}

/* ---- messages and queue entries ---- */

/* Writes m into l's batch unless it is the message written last. */
static void put_msg(loop_t *l, msg_t *m)
{
    if (m->store_id == 0) m->store_id = persist__new_id(l); /* not shared yet */
    if (l->persist->put_id == m->store_id) return;
    store_msg_t r = {.id = m->store_id, .topic = m->topic, .payload = m->payload,
                     .payload_len = m->payload_len, .props = m->props,
                     .props_len = m->props_len, .qos = m->qos, .retain = m->retain != 0,
                     .expiry_at = m->expiry_at};
    int rc = store_batch_msg_put(batch(l), &r);
    if (rc != 0) op_failed(l, "a message", m->topic, rc);
    else l->persist->put_id = m->store_id;
}

void persist__entry_add(loop_t *l, sess_t *s, msg_t *m, const queue_entry_t *e,
                        uint16_t packet_id, uint8_t state)
{
    if (!s->stored || !on(l) || e->seq == 0) return;
    put_msg(l, m);
    unsigned n_ids = e->n_ids > STORE_MAX_SUB_IDS ? STORE_MAX_SUB_IDS : e->n_ids;
    store_entry_t r = {.client_id = s->client_id, .seq = e->seq, .msg_id = m->store_id,
                       .qos = e->qos, .retain = e->retain != 0, .packet_id = packet_id,
                       .state = state, .n_sub_ids = n_ids, .sub_ids = e->ids};
    int rc = store_batch_entry_add(batch(l), &r);
    if (rc != 0) op_failed(l, "a queue entry", s->client_id, rc);
}

void persist__entry_update(loop_t *l, sess_t *s, uint64_t seq, uint16_t packet_id,
                           uint8_t state, int drop_msg)
{
    if (!s->stored || !on(l) || seq == 0) return;
    if (drop_msg) forget_put(l);
    store_batch_entry_update(batch(l), s->client_id, seq, packet_id, state, drop_msg != 0);
}

void persist__entry_del(loop_t *l, sess_t *s, uint64_t seq)
{
    if (!s->stored || !on(l) || seq == 0) return;
    forget_put(l);
    store_batch_entry_del(batch(l), s->client_id, seq);
}

void persist__inq2(loop_t *l, sess_t *s, uint16_t packet_id, int add)
{
    if (!s->stored || !on(l)) return;
    if (add)
        store_batch_inq2_add(batch(l), s->client_id, packet_id);
    else
        store_batch_inq2_del(batch(l), s->client_id, packet_id);
}

void persist__retained(loop_t *l, msg_t *m)
{
    if (!on(l)) return;
    forget_put(l); /* a retained message it replaces may be the one */
    if (m->payload_len == 0) {
        store_batch_retained_del(batch(l), m->topic);
        return;
    }
    put_msg(l, m);
    store_batch_retained_set(batch(l), m->topic, m->store_id);
}

/* ---- reports between loops ---- */

int persist__report_needed(loop_t *l, const msg_t *m)
{
    return m->qos > 0 && acks_wait(l);
}

int persist__must_report(loop_t *l, loop_t *t, msg_t *m, const uint32_t key[2])
{
    return m->qos > 0 && interest__may_match_durable(t, key) && acks_wait(l);
}

/* Asks the flush hook to wake loop `home` (ITEM_ACK_WAKE). */
static void wake(loop_t *l, unsigned home)
{
    if (home >= l->b->n_loops) return;
    l->persist->wake[home] = 1;
    l->persist->wake_any = 1;
}

/* One loop's part of m is committed (or failed): counts it down. */
static void report(loop_t *l, msg_t *m, int failed)
{
    msg_state_t *st = broker__msg(m);
    if (failed) atomic_store_explicit(&st->persist_failed, 1, memory_order_relaxed);
    /* acq_rel: the publishing loop that reads 0 also sees the flag */
    if (atomic_fetch_sub_explicit(&st->persist_wait, 1, memory_order_acq_rel) == 1)
        wake(l, st->home);
}

void persist__delivered(loop_t *l, msg_t *m, size_t ops_before)
{
    persist_loop_t *p = l->persist;
    if (persist__ops(l) == ops_before) {
        report(l, m, 0); /* no stored session of l took it */
        return;
    }
    if (l->b->cfg->durability != 0) p->want_commit = 1; /* batch, behind */
    if (p->n_reports == p->cap_reports) {
        p->cap_reports = p->cap_reports ? 2 * p->cap_reports : 16;
        p->reports = xrealloc(p->reports, p->cap_reports * sizeof *p->reports);
    }
    p->reports[p->n_reports++] = msg_retain(m);
}

/* ---- acknowledgement queues ---- */

/* Adds c to its loop's list of connections with waiting acks. */
static void list_add(loop_t *l, conn_t *c)
{
    persist_loop_t *p = l->persist;
    if (p->n_ack_conns == p->cap_ack_conns) {
        p->cap_ack_conns = p->cap_ack_conns ? 2 * p->cap_ack_conns : 16;
        p->ack_conns = xrealloc(p->ack_conns, p->cap_ack_conns * sizeof *p->ack_conns);
    }
    p->ack_conns[p->n_ack_conns++] = c;
}

/* Removes c from the list (swapping the last one into its place). */
static void list_remove(loop_t *l, conn_t *c)
{
    persist_loop_t *p = l->persist;
    for (size_t i = 0; i < p->n_ack_conns; i++) {
        if (p->ack_conns[i] != c) continue;
        p->ack_conns[i] = p->ack_conns[--p->n_ack_conns];
        break;
    }
}

/* c's queue of waiting acknowledgements, or NULL (it lives in c->ext,
 * which a connection has only when something needs it). */
static struct ack_fifo_s *fifo_of(const conn_t *c)
{
    return c->ext != NULL ? c->ext->acks : NULL;
}

/* Appends a to c's queue (made on first use). */
static void enqueue(conn_t *c, const ack_t *a)
{
    struct ack_fifo_s *f = fifo_of(c);
    if (f == NULL) {
        f = conn__ext(c)->acks = xcalloc(1, sizeof *f);
        list_add(c->loop, c);
    }
    if (f->n == f->cap) { /* unroll the ring into a bigger array */
        size_t cap = f->cap ? 2 * f->cap : 8;
        ack_t *v = xmalloc(cap * sizeof *v);
        for (size_t i = 0; i < f->n; i++) v[i] = f->v[(f->head + i) & (f->cap - 1)];
        free(f->v);
        f->v = v;
        f->cap = cap;
        f->head = 0;
    }
    f->v[(f->head + f->n++) & (f->cap - 1)] = *a;
    f->n_open += a->type == PKT_PUBACK || a->type == PKT_PUBCOMP;
}

/* Frees c's queue and takes c off the list; an extension left empty
 * goes too. */
static void fifo_free(conn_t *c)
{
    struct ack_fifo_s *f = c->ext->acks;
    for (size_t i = 0; i < f->n; i++) {
        ack_t *a = &f->v[(f->head + i) & (f->cap - 1)];
        if (a->m != NULL) msg_release(&a->m);
        free(a->reasons);
    }
    free(f->v);
    free(f);
    c->ext->acks = NULL;
    conn__ext_trim(c);
    list_remove(c->loop, c);
}

/* 1 when everything a waits for is committed. */
static int ready(const loop_t *l, const ack_t *a)
{
    return (a->gen == 0 || a->gen <= l->persist->committed_gen) &&
           (a->m == NULL ||
            atomic_load_explicit(&broker__msg(a->m)->persist_wait, memory_order_acquire) == 0);
}

/* Sends a: a failed PUBACK/PUBREC becomes a v5 negative acknowledgement
 * (and frees the inbound QoS 2 id: the flow ended) or closes a v3.1.1
 * connection. Returns CONN_OK or CONN_GONE. */
static conn_rc_t send_one(conn_t *c, ack_t *a)
{
    if (a->type == PKT_SUBACK || a->type == PKT_UNSUBACK) {
        /* the subscription works in memory either way: sent as decided */
        pkt_t r = {.type = a->type};
        r.u.suback.packet_id = (uint16_t)a->id;
        r.u.suback.reasons = a->reasons;
        r.u.suback.n_reasons = a->n_reasons;
        conn__reason_string(c, &r, &r.u.suback.props,
                            subscribe__reason_text(a->reasons, a->n_reasons));
        conn__send_pkt(c, &r);
        return CONN_OK;
    }
    int failed = a->failed ||
                 (a->m != NULL &&
                  atomic_load_explicit(&broker__msg(a->m)->persist_failed, memory_order_relaxed));
    if (a->type == ACK_TRANSPORT) {
        const transport_t *tp = conn__tp(c);
        if (tp->acked != NULL) tp->acked(c, conn__tp_data(c), a->id, failed);
        return CONN_OK;
    }
    if (!failed || a->type == PKT_PUBCOMP) {
        publish__send_ack(c, a->type, (uint16_t)a->id, a->reason);
        return CONN_OK;
    }
    if (c->version != PKT_V5)
        return conn__fail(c, PKT_RC_UNSPECIFIED, "the message could not be stored");
    if (a->type == PKT_PUBREC && c->sess != NULL)
        inflight_in_remove(&c->sess->inflight, (uint16_t)a->id);
    publish__send_ack(c, a->type, (uint16_t)a->id, PKT_RC_UNSPECIFIED);
    return CONN_OK;
}

/* Sends c's acknowledgements that are due, in order. */
static void drain(conn_t *c)
{
    struct ack_fifo_s *f = c->ext->acks;
    while (f->n > 0 && ready(c->loop, &f->v[f->head])) {
        ack_t a = f->v[f->head];
        f->head = (f->head + 1) & (f->cap - 1);
        f->n--;
        f->n_open -= a.type == PKT_PUBACK || a.type == PKT_PUBCOMP;
        conn_rc_t rc = conn__running(c) ? send_one(c, &a) : CONN_OK;
        if (a.m != NULL) msg_release(&a.m);
        free(a.reasons);
        if (rc == CONN_GONE) return; /* the close freed the queue */
    }
    if (f->n == 0) fifo_free(c);
}

void persist__run_acks(loop_t *l)
{
    /* Backwards: a drained connection swaps the last one into its place. */
    for (size_t i = l->persist->n_ack_conns; i-- > 0;)
        if (i < l->persist->n_ack_conns) drain(l->persist->ack_conns[i]);
}

conn_rc_t persist__ack(conn_t *c, uint8_t type, uint32_t id, uint8_t reason, msg_t *m,
                       uint64_t gen)
{
    loop_t *l = c->loop;
    msg_state_t *st = m != NULL ? broker__msg(m) : NULL;
    int remote = st != NULL && atomic_load_explicit(&st->persist_wait, memory_order_acquire) > 0;
    ack_t a = {.m = remote ? msg_retain(m) : NULL, .gen = gen, .id = id, .type = type,
               .reason = reason,
               .failed = st != NULL &&
                         atomic_load_explicit(&st->persist_failed, memory_order_relaxed)};
    if (fifo_of(c) == NULL && ready(l, &a)) {
        if (a.m != NULL) msg_release(&a.m);
        return send_one(c, &a);
    }
    enqueue(c, &a);
    return CONN_OK;
}

conn_rc_t persist__ack_sub(conn_t *c, uint8_t type, uint16_t id, const uint8_t *reasons,
                           uint32_t n, uint64_t gen)
{
    ack_t a = {.gen = gen, .id = id, .type = type, .reasons = (uint8_t *)reasons,
               .n_reasons = n};
    if (fifo_of(c) == NULL && ready(c->loop, &a)) return send_one(c, &a);
    a.reasons = NULL;
    if (n > 0) { /* the caller's array is the decode arena's */
        a.reasons = xmalloc(n);
        memcpy(a.reasons, reasons, n);
    }
    enqueue(c, &a);
    return CONN_OK;
}

size_t persist__open_acks(const conn_t *c)
{
    const struct ack_fifo_s *f = fifo_of(c);
    return f != NULL ? f->n_open : 0;
}

void persist__conn_gone(conn_t *c)
{
    if (fifo_of(c) != NULL) fifo_free(c);
}

/* Marks the waiting acks of generation gen failed (its commit failed). */
static void mark_failed(loop_t *l, uint64_t gen)
{
    for (size_t i = 0; i < l->persist->n_ack_conns; i++) {
        struct ack_fifo_s *f = l->persist->ack_conns[i]->ext->acks;
        for (size_t k = 0; k < f->n; k++) {
            ack_t *a = &f->v[(f->head + k) & (f->cap - 1)];
            if (a->gen == gen) a->failed = 1;
        }
    }
}

/* ---- commits ---- */

/* Storage thread: hands the record back to its loop. */
static void on_commit(void *ctx, int status)
{
    commit_rec_t *r = ctx;
    r->status = status;
    loop_item_t it = {.kind = ITEM_COMMITTED, .ptr = r};
    inbox__post_direct(r->l, &it);
}

/* Submits l's batch (if any) for generation l->persist->batch_gen with a commit
 * notice when something waits for it: in full mode the batch's own
 * callback (after the fsync); in batch mode, whose callbacks run at once,
 * an empty barrier batch after it, called back after the real commit. */
static void submit(loop_t *l)
{
    persist_loop_t *p = l->persist;
    int full = l->b->cfg->durability == 0;
    int notice = (full && p->batch != NULL) || p->want_commit || p->n_reports > 0;
    commit_rec_t *r = NULL;
    if (notice) {
        r = xcalloc(1, sizeof *r);
        r->l = l;
        r->gen = p->batch_gen;
        r->bad = p->batch_bad > 0;
        r->msgs = p->reports;
        r->n_msgs = p->n_reports;
        p->reports = NULL;
        p->n_reports = p->cap_reports = 0;
    }
    if (p->batch != NULL)
        store_submit(l->b->store, p->batch, full ? on_commit : NULL, full ? r : NULL);
    if (notice && !full) store_submit(l->b->store, store_batch_create(), on_commit, r);
    p->batch = NULL;
    p->batch_gen++;
    p->put_id = 0;
    p->want_commit = 0;
    p->batch_bad = 0;
}

void persist__flush(loop_t *l)
{
    persist_loop_t *p = l->persist;
    if (p->batch != NULL || p->want_commit) submit(l);
    if (!p->wake_any) return;
    p->wake_any = 0;
    for (unsigned j = 0; j < l->b->n_loops; j++) {
        if (!p->wake[j]) continue;
        p->wake[j] = 0;
        loop_item_t it = {.kind = ITEM_ACK_WAKE};
        if (j == l->index)
            persist__run_acks(l);
        else
            inbox__post(l, j, &it);
    }
}

uint64_t persist__gen_now(loop_t *l)
{
    if (!will_wait(l)) return 0;
    /* the pending batch; else the last submitted one, or in batch mode
     * (no notice for submitted batches) a barrier alone brings one */
    if (l->persist->batch != NULL || l->b->cfg->durability != 0) return l->persist->batch_gen;
    return l->persist->batch_gen - 1;
}

void persist__hold(conn_t *c)
{
    uint64_t gen = c->out != NULL ? persist__gen_now(c->loop) : 0;
    if (gen > c->loop->persist->committed_gen && gen > c->out->hold_gen) c->out->hold_gen = gen;
}

void persist__committed(loop_t *l, void *rec)
{
    commit_rec_t *r = rec;
    int failed = r->status != 0 || r->bad;
    if (r->gen > l->persist->committed_gen) l->persist->committed_gen = r->gen;
    while (l->held != NULL) { /* the flush hook checks them again */
        conn_t *c = l->held;
        l->held = c->dirty_next;
        c->dirty_next = l->dirty;
        l->dirty = c;
    }
    if (failed) mark_failed(l, r->gen);
    for (size_t i = 0; i < r->n_msgs; i++) {
        report(l, r->msgs[i], failed);
        msg_release(&r->msgs[i]);
    }
    free(r->msgs);
    free(r);
    persist__run_acks(l);
}

void persist__drop_record(void *rec)
{
    commit_rec_t *r = rec;
    for (size_t i = 0; i < r->n_msgs; i++) msg_release(&r->msgs[i]);
    free(r->msgs);
    free(r);
}

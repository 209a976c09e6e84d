/*
 * recover.c - start-up: the store's contents back into the broker.
 *
 * Runs on the main thread before any worker thread starts. Messages come
 * first (by id) and are kept in a sorted array while the rest refers to
 * them; each stored session is created on the loop that owns stored
 * sessions (persist__loop), offline since the restart or since it went offline, with its will,
 * subscriptions (router, record, summaries), queue in order, inflight
 * slots with their packet ids and QoS 2 stage, and inbound QoS 2 ids;
 * retained messages go back into the trie. A session that was online
 * when the broker stopped is offline from now: its will follows its Will
 * Delay from now unless the client comes back first.
 */
#include "recover_int.h"

#include "access_int.h"
#include "interest_int.h"
#include "persist_int.h"
#include "sess_int.h"

#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

/* A recovered message by its store id. */
typedef struct rec_msg_s {
    uint64_t id;
    msg_t *m; /* one reference, released at the end */
} rec_msg_t;

typedef struct rec_s {
    broker_t *b;
    rec_msg_t *msgs; /* ascending ids (the store streams them so) */
    size_t n_msgs, cap_msgs;
    sess_t *last;    /* session of the previous callback */
    uint64_t wall_now, mono_now;
    uint64_t skipped; /* rows naming a missing session or message */
} rec_t;

static int on_msg(void *ctx, const store_msg_t *r)
{
    rec_t *x = ctx;
    msg_t *m = msg_create(r->topic, strlen(r->topic), r->payload, r->payload_len, r->props,
                          r->props_len, r->qos, r->retain, r->payload_len, sizeof(msg_state_t));
    if (m == NULL) return UVMQ_ENOMEM;
    m->store_id = r->id;
    m->expiry_at = r->expiry_at;
    if (x->n_msgs == x->cap_msgs) {
        x->cap_msgs = x->cap_msgs ? 2 * x->cap_msgs : 1024;
        x->msgs = xrealloc(x->msgs, x->cap_msgs * sizeof *x->msgs);
    }
    x->msgs[x->n_msgs++] = (rec_msg_t){r->id, m};
    return 0;
}

/* The recovered message with this id, or NULL. */
static msg_t *find_msg(const rec_t *x, uint64_t id)
{
    size_t lo = 0, hi = x->n_msgs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (x->msgs[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < x->n_msgs && x->msgs[lo].id == id ? x->msgs[lo].m : NULL;
}

/* The session of client id, the previous one's when it is the same. */
static sess_t *find_sess(rec_t *x, const char *id)
{
    if (x->last == NULL || strcmp(x->last->client_id, id) != 0)
        x->last = sess__find(&x->b->sessions, id, strlen(id));
    if (x->last == NULL) x->skipped++;
    return x->last;
}

/* The will of a stored session, as CONNECT made it (expiry stamped when
 * it is published). */
static msg_t *will_of(const store_session_t *r)
{
    msg_t *w = msg_create(r->will_topic, strlen(r->will_topic), r->will_payload,
                          r->will_payload_len, r->will_props, r->will_props_len,
                          r->will_qos, r->will_retain, r->will_payload_len, sizeof(msg_state_t));
    return w;
}

/* Loop-clock time (uv_now of l) when the session went offline. */
static uint64_t offline_since(const rec_t *x, const store_session_t *r)
{
    if (r->disconnected_at == 0 || r->disconnected_at >= x->wall_now) return x->mono_now;
    uint64_t ago = x->wall_now - r->disconnected_at;
    return ago < x->mono_now ? x->mono_now - ago : 0;
}

static int on_session(void *ctx, const store_session_t *r)
{
    rec_t *x = ctx;
    broker_t *b = x->b;
    loop_t *l = persist__loop(b);
    sess_t *s = sess__create(r->client_id, strlen(r->client_id), b->cfg);
    s->loop = l;
    s->version = r->proto & 7;
    s->expiry = r->expiry_s;
    uint32_t cap = b->cfg->max_session_expiry;
    if (s->version != PKT_V5 && cap != 0 && s->expiry > cap) s->expiry = cap; /* v3.1.1 */
    s->store_seq = r->last_seq;
    s->stored = 1; /* before its subscriptions: they count as durable */
    s->disconnected_at = offline_since(x, r);
    if (r->username != NULL) access__sess_set_user(s, r->username, strlen(r->username));
    if (r->will_topic != NULL) {
        s->will = will_of(r);
        if (s->will == NULL) return UVMQ_ENOMEM;
        s->will->origin = s;
        broker__msg(s->will)->origin_hash = sess__origin_hash(s);
        s->will_delay = r->will_delay_s;
        s->will_expiry = r->will_expiry_s;
        /* due at once (sweep) or after its delay, from going offline */
        s->will_at = s->disconnected_at + (uint64_t)r->will_delay_s * 1000;
        if (s->will_at == 0) s->will_at = 1;
    }
    sess__insert(&b->sessions, s);
    sess__own(l, s);
    x->last = s;
    return 0;
}

static int on_sub(void *ctx, const store_sub_t *r)
{
    rec_t *x = ctx;
    sess_t *s = find_sess(x, r->client_id);
    int existed = 0;
    if (s == NULL) return 0;
    uint8_t options = (uint8_t)((r->qos & PKT_SUBOPT_QOS_MASK) |
                                (r->no_local ? PKT_SUBOPT_NO_LOCAL : 0) |
                                (r->retain_as_published ? PKT_SUBOPT_RAP : 0) |
                                ((r->retain_handling & 3) << PKT_SUBOPT_RH_SHIFT));
    if (interest__subscribe(s->loop, s, r->filter, strlen(r->filter), options, r->sub_id,
                        &existed) != 0)
        x->skipped++;
    return 0;
}

/* The inflight state of a stored entry state. */
static uint8_t inflight_state(uint8_t st)
{
    return st == STORE_ENTRY_PUBACK   ? INFLIGHT_WAIT_PUBACK
           : st == STORE_ENTRY_PUBREC ? INFLIGHT_WAIT_PUBREC
                                      : INFLIGHT_WAIT_PUBCOMP;
}

static int on_entry(void *ctx, const store_entry_t *r)
{
    rec_t *x = ctx;
    sess_t *s = find_sess(x, r->client_id);
    msg_t *m = r->msg_id != 0 ? find_msg(x, r->msg_id) : NULL;
    if (s == NULL) return 0;
    if (m == NULL && r->state != STORE_ENTRY_PUBCOMP) {
        x->skipped++;
        return 0;
    }
    queue_entry_t e = {.m = m != NULL ? msg_retain(m) : NULL, .qos = r->qos,
                       .retain = r->retain, .seq = r->seq};
    if (r->n_sub_ids > 0) {
        e.ids = xmalloc(r->n_sub_ids * sizeof *e.ids);
        memcpy(e.ids, r->sub_ids, r->n_sub_ids * sizeof *e.ids);
        e.n_ids = (uint8_t)r->n_sub_ids;
    }
    int rc = r->state == STORE_ENTRY_QUEUED
                 ? queue_push_bounded(&s->queue, &e, 0, 0)
                 : inflight_restore(&s->inflight, r->packet_id, inflight_state(r->state), &e);
    if (rc != 0) {
        queue_entry_dispose(&e); /* a push takes it; a restore leaves it */
        x->skipped++;
    }
    return 0;
}

static int on_inq2(void *ctx, const char *client_id, uint16_t packet_id)
{
    rec_t *x = ctx;
    sess_t *s = find_sess(x, client_id);
    if (s != NULL) inflight_in_add(&s->inflight, packet_id, 65535);
    return 0;
}

static int on_retained(void *ctx, const char *topic, uint64_t msg_id)
{
    rec_t *x = ctx;
    msg_t *m = find_msg(x, msg_id);
    if (m == NULL) {
        x->skipped++;
        return 0;
    }
    void *prev = router_retained_set(x->b->retained, topic, strlen(topic), msg_retain(m));
    if (prev != NULL) {
        msg_t *old = prev;
        msg_release(&old);
    }
    return 0;
}

/* Gives every loop its first message id past the stored ones. */
static void set_ids(broker_t *b, uint64_t max_id)
{
    for (unsigned i = 0; i < b->n_loops; i++) persist__ids_after(&b->loops[i], max_id);
}

int recover__run(broker_t *b)
{
    static const store_recover_cb_t cbs = {on_msg, on_session, on_sub, on_entry, on_inq2,
                                           on_retained};
    rec_t x = {.b = b, .wall_now = msg_now_ms(), .mono_now = uv_now(&b->loops[0].uv)};
    store_recover_stats_t st;
    memset(&st, 0, sizeof st);
    int rc = store_recover(b->store, &cbs, &x, &st);
    for (size_t i = 0; i < x.n_msgs; i++) msg_release(&x.msgs[i].m);
    free(x.msgs);
    if (rc != 0) {
        log_error("recovery from %s failed: %s", store_dir(b->store), err_str(rc));
        return rc;
    }
    set_ids(b, st.max_msg_id);
    log_info("recovered %llu sessions, %llu subscriptions, %llu queued messages, "
             "%llu retained messages in %llu ms from %s",
             (unsigned long long)st.sessions, (unsigned long long)st.subs,
             (unsigned long long)st.entries, (unsigned long long)st.retained,
             (unsigned long long)st.elapsed_ms, store_dir(b->store));
    if (x.skipped > 0)
        log_warn("recovery skipped %llu rows that name a missing session or message",
                 (unsigned long long)x.skipped);
    return 0;
}

/*
 * alias.c - MQTT 5 topic aliases, both directions, per connection.
 *
 * Client to server: uvmq advertises Topic Alias Maximum topic_alias_max
 * (default 10) and keeps, from the first alias a client sets, a table of
 * what each alias stands for (c->ext->v5->in). Server to client: when the
 * client's CONNECT allows aliases, every PUBLISH to it is encoded for that
 * connection (never the shared fan-out packet: deliver.c) and carries an
 * alias. The first PUBLISH of a topic assigns one (topic and alias), later
 * ones send the alias and an empty topic. When every alias is in use, the
 * least recently used one is given to the new topic (sent with the topic
 * again, which the receiver takes as the new mapping, 3.3.2.3.4); topics
 * shorter than ALIAS_MIN_TOPIC bytes never get one (an alias costs three
 * bytes). An alias is recorded only once its PUBLISH is in the out-batch,
 * which goes out in order, so the client sees every assignment before
 * its first use. Both tables die with the connection (MQTT-3.3.2-7).
 */
#include "alias_int.h"

#include "auth_int.h"
#include "conn_int.h"

#include <stdlib.h>
#include <string.h>

#include "../common/hash.h"
#include "../common/xmalloc.h"

/* Shortest topic worth an alias: the property takes 3 bytes, so a topic
 * of 3 bytes or fewer saves nothing on repeats and costs 3 on the first. */
#define ALIAS_MIN_TOPIC 4

conn_v5_t *alias__v5(conn_t *c)
{
    conn_ext_t *x = conn__ext(c);
    if (x->v5 == NULL) x->v5 = xcalloc(1, sizeof *x->v5);
    return x->v5;
}

/* Copies t[0..len) into a, reusing its memory when it is large enough. */
static void topic_set(alias_topic_t *a, const char *t, size_t len)
{
    if (a->cap < len) {
        free(a->p);
        a->p = xmalloc(len);
        a->cap = (uint32_t)len;
    }
    memcpy(a->p, t, len);
    a->len = (uint32_t)len;
}

void alias__v5_free(conn_t *c)
{
    conn_v5_t *v = c->ext != NULL ? c->ext->v5 : NULL;
    if (v == NULL) return;
    auth__free(c);
    for (uint32_t i = 0; v->in.v != NULL && i < v->in.max; i++) free(v->in.v[i].p);
    free(v->in.v);
    for (uint32_t a = 1; v->out.ent != NULL && a <= v->out.used; a++) free(v->out.ent[a].t.p);
    free(v->out.ent);
    free(v->out.slots);
    free(v);
    c->ext->v5 = NULL;
}

/* ---- client to server ---- */

int alias__in_resolve(conn_t *c, pkt_publish_t *pub, uint8_t *reason)
{
    uint16_t a = pub->props.topic_alias;
    conn_v5_t *v = c->ext != NULL ? c->ext->v5 : NULL;
    *reason = PKT_RC_SUCCESS;
    /* MQTT-3.3.2-8 (0) and -9 (over our maximum): Topic Alias invalid
     * (3.3.4, "Topic Alias value of 0 or greater than the Maximum"). */
    if (a == 0 || a > c->loop->b->cfg->topic_alias_max) {
        *reason = PKT_RC_TOPIC_ALIAS_INVALID;
        return UVMQ_EINVAL;
    }
    if (pub->topic.len > 0) return 0; /* sets (or resets) the alias */
    /* An empty topic with an alias the client never set: Protocol Error
     * (3.3.4, "does not already have a mapping"). */
    if (v == NULL || v->in.v == NULL || a > v->in.max || v->in.v[a - 1].len == 0) {
        *reason = PKT_RC_PROTOCOL_ERROR;
        return UVMQ_EINVAL;
    }
    pub->topic.p = (const uint8_t *)v->in.v[a - 1].p;
    pub->topic.len = v->in.v[a - 1].len;
    return 0;
}

void alias__in_set(conn_t *c, uint16_t alias, const pkt_bin_t *topic)
{
    conn_v5_t *v = alias__v5(c);
    if (v->in.v == NULL) { /* the client's first alias */
        v->in.max = (uint16_t)c->loop->b->cfg->topic_alias_max;
        v->in.v = xcalloc(v->in.max, sizeof *v->in.v);
    }
    if (alias == 0 || alias > v->in.max || topic->len == 0) return; /* checked before */
    topic_set(&v->in.v[alias - 1], (const char *)topic->p, topic->len);
}

/* ---- server to client ---- */

void alias__out_enable(conn_t *c, uint16_t max)
{
    alias__v5(c)->out.max = max;
    c->alias_out = 1;
    c->loop->n_alias_out++;
}

void alias__out_disable(conn_t *c)
{
    if (!c->alias_out) return;
    c->alias_out = 0;
    c->loop->n_alias_out--;
}

/* The slot of o's index holding the topic t (hash h), or of the empty
 * slot where its probe ends. */
static uint32_t slot_find(const alias_out_t *o, const char *t, size_t len, uint32_t h)
{
    uint32_t i = h & o->mask;
    for (;;) {
        uint16_t a = o->slots[i];
        if (a == 0) return i;
        const alias_out_ent_t *e = &o->ent[a];
        if (e->hash == h && e->t.len == len && memcmp(e->t.p, t, len) == 0) return i;
        i = (i + 1) & o->mask;
    }
}

/* Empties slot i and moves later entries of its probe run back into the
 * gap (backward-shift deletion: no tombstones). */
static void slot_remove(alias_out_t *o, uint32_t i)
{
    uint32_t j = i;
    for (;;) {
        o->slots[i] = 0;
        for (;;) {
            j = (j + 1) & o->mask;
            if (o->slots[j] == 0) return;
            uint32_t k = o->ent[o->slots[j]].hash & o->mask; /* its home slot */
            /* It stays when its home is cyclically within (i, j]. */
            int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
            if (!stays) break;
        }
        o->slots[i] = o->slots[j];
        i = j;
    }
}

/* Takes alias a off the LRU list. */
static void lru_unlink(alias_out_t *o, uint16_t a)
{
    alias_out_ent_t *e = &o->ent[a];
    if (e->prev != 0) o->ent[e->prev].next = e->next;
    else o->head = e->next;
    if (e->next != 0) o->ent[e->next].prev = e->prev;
    else o->tail = e->prev;
    e->prev = e->next = 0;
}

/* Puts alias a at the front (most recently used). */
static void lru_front(alias_out_t *o, uint16_t a)
{
    alias_out_ent_t *e = &o->ent[a];
    e->prev = 0;
    e->next = o->head;
    if (o->head != 0) o->ent[o->head].prev = a;
    o->head = a;
    if (o->tail == 0) o->tail = a;
}

/* Makes o's tables for its maximum: the index at least twice as large. */
static void out_tables(alias_out_t *o)
{
    uint32_t n = 16;
    while (n < 2u * o->max) n *= 2;
    o->ent = xcalloc((size_t)o->max + 1, sizeof *o->ent);
    o->slots = xcalloc(n, sizeof *o->slots);
    o->mask = n - 1;
}

void alias__out_pick(conn_t *c, const char *t, size_t len, alias_pick_t *pk)
{
    const alias_out_t *o = &c->ext->v5->out;
    memset(pk, 0, sizeof *pk);
    if (len < ALIAS_MIN_TOPIC || o->max == 0) return;
    pk->hash = fnv1a(FNV1A_SEED, t, len);
    if (o->ent != NULL) {
        uint16_t a = o->slots[slot_find(o, t, len, pk->hash)];
        if (a != 0) {
            pk->alias = a;
            pk->known = 1;
            return;
        }
    }
    /* A new alias while there are some left, then the least recently
     * used one. */
    pk->alias = o->used < o->max ? (uint16_t)(o->used + 1) : o->tail;
}

void alias__out_commit(conn_t *c, const char *t, size_t len, const alias_pick_t *pk)
{
    alias_out_t *o = &c->ext->v5->out;
    uint16_t a = pk->alias;
    if (a == 0) return;
    if (o->ent == NULL) out_tables(o);
    alias_out_ent_t *e = &o->ent[a];
    if (pk->known) {
        lru_unlink(o, a);
    } else if (a <= o->used) { /* taken over from its old topic */
        slot_remove(o, slot_find(o, e->t.p, e->t.len, e->hash));
        lru_unlink(o, a);
    } else {
        o->used = a; /* new aliases are handed out in order */
    }
    if (!pk->known) {
        topic_set(&e->t, t, len);
        e->hash = pk->hash;
        o->slots[slot_find(o, t, len, pk->hash)] = a;
    }
    lru_front(o, a);
}

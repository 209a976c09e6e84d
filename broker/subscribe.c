/*
 * subscribe.c - SUBSCRIBE and UNSUBSCRIBE.
 *
 * Each filter is checked, added to the loop's router and recorded in
 * the session; the SUBACK goes first and the retained messages matching
 * the new filters follow it in the same batch (MQTT-3.8.4-4 ordering).
 * Shared subscriptions ($share/<group>/<filter>) join their group in the
 * broker's registry (share.c) through the same interest__subscribe, get no
 * retained messages, and may not ask for No Local.
 */
#include "subscribe_int.h"

#include "access_int.h"
#include "conn_int.h"
#include "deliver_int.h"
#include "interest_int.h"
#include "persist_int.h"
#include "share_int.h"

#include <string.h>

#include "../common/log.h"

/* 1 when the ACL lets c subscribe to the valid filter f[0..len): for a
 * shared subscription, to the filter after "$share/<group>/". */
static int may_subscribe(conn_t *c, const char *f, size_t len)
{
    if (share__is_shared(f, len)) {
        const char *g = memchr(f + SHARE_PREFIX_LEN, '/', len - SHARE_PREFIX_LEN);
        if (g == NULL) return 0; /* cannot happen: a valid shared filter */
        len -= (size_t)(g + 1 - f);
        f = g + 1;
    }
    return access__may_subscribe(c->loop, c->sess, f, len);
}

/* Subscribes to one filter: sets *reason to its SUBACK reason code (the
 * granted QoS, or the refusal) and *send_ret when retained messages are
 * to follow (v5 Retain Handling). Returns 0, or UVMQ_EINVAL (or
 * interest__subscribe's error) when the filter is refused. */
static int subscribe_one(conn_t *c, const pkt_sub_t *sub, uint32_t sub_id, uint8_t *reason,
                         uint8_t *send_ret)
{
    broker_t *b = c->loop->b;
    const char *f = (const char *)sub->filter.p;
    size_t len = sub->filter.len;
    int v5 = c->version == PKT_V5;
    int existed = 0;
    *send_ret = 0;
    *reason = v5 ? PKT_RC_TOPIC_FILTER_INVALID : PKT_RC_UNSPECIFIED; /* until granted */
    if (!topic_filter_valid(f, len) || topic_levels(f, len) > b->cfg->max_topic_levels)
        return UVMQ_EINVAL;
    if (!may_subscribe(c, f, len)) {
        /* 0x87 Not authorized (v3.1.1: 0x80 Failure) */
        *reason = v5 ? PKT_RC_NOT_AUTHORIZED : PKT_RC_UNSPECIFIED;
        return UVMQ_EINVAL;
    }
    /* Into this loop's router, published before the SUBACK is queued
     * (ordering guarantee: inbox.c). */
    int rc = interest__subscribe(c->loop, c->sess, f, len, sub->options, sub_id, &existed);
    if (rc != 0) return rc;
    persist__sub_put(c->loop, c->sess, f, len, sub->options, sub_id);
    unsigned rh = (sub->options & PKT_SUBOPT_RH_MASK) >> PKT_SUBOPT_RH_SHIFT;
    /* MQTT-3.3.1-9/10/11; none on a shared subscription (MQTT 5.0 4.8.2) */
    *send_ret = !share__is_shared(f, len) && (rh == 0 || (rh == 1 && !existed));
    *reason = sub->options & PKT_SUBOPT_QOS_MASK;
    return 0;
}

/* 1 when a filter of sp is a shared subscription with No Local, a
 * Protocol Error [MQTT-3.8.3-4]: checked before any filter is applied. */
static int no_local_on_shared(const pkt_subscribe_t *sp)
{
    for (uint32_t i = 0; i < sp->n_subs; i++) {
        const pkt_sub_t *sub = &sp->subs[i];
        if ((sub->options & PKT_SUBOPT_NO_LOCAL) &&
            share__is_shared((const char *)sub->filter.p, sub->filter.len))
            return 1;
    }
    return 0;
}

const char *subscribe__reason_text(const uint8_t *reasons, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        switch (reasons[i]) {
        case PKT_RC_NO_SUBSCRIPTION_EXISTED: return "no subscription existed";
        case PKT_RC_TOPIC_FILTER_INVALID: return "topic filter not accepted";
        case PKT_RC_SHARED_SUBS_NOT_SUPPORTED: return "shared subscriptions not supported";
        default:
            if (reasons[i] >= 0x80) return "subscription refused";
        }
    }
    return NULL;
}

conn_rc_t subscribe__handle(conn_t *c, pkt_t *p)
{
    pkt_subscribe_t *sp = &p->u.subscribe;
    uint32_t n = sp->n_subs;
    uint32_t sub_id = 0;
    if (c->version == PKT_V5 && no_local_on_shared(sp))
        return conn__fail(c, PKT_RC_PROTOCOL_ERROR,
                          "No Local on a shared subscription [MQTT-3.8.3-4]");
    uint8_t *reasons = arena_alloc(&c->loop->arena, n);
    uint8_t *send_ret = arena_alloc(&c->loop->arena, n);
    size_t ops = persist__ops(c->loop);
    if (reasons == NULL || send_ret == NULL)
        return conn__fail(c, PKT_RC_PACKET_TOO_LARGE, err_str(UVMQ_ENOMEM));
    if (c->version == PKT_V5 && sp->props.n_sub_ids > 0) sub_id = sp->props.sub_ids[0];
    for (uint32_t i = 0; i < n; i++) /* a refused filter is its SUBACK reason */
        (void)subscribe_one(c, &sp->subs[i], sub_id, &reasons[i], &send_ret[i]);
    /* After the commit (persist.c); retained messages may go first, as
     * MQTT-3.8.4 allows. */
    persist__ack_sub(c, PKT_SUBACK, sp->packet_id, reasons, n,
                     persist__gen_since(c->loop, ops));
    for (uint32_t i = 0; i < n; i++) {
        if (!send_ret[i]) continue;
        deliver__retained(c->loop, c->sess, (const char *)sp->subs[i].filter.p,
                            sp->subs[i].filter.len, reasons[i], sub_id);
    }
    return CONN_OK;
}

conn_rc_t subscribe__handle_unsubscribe(conn_t *c, pkt_t *p)
{
    pkt_unsubscribe_t *up = &p->u.unsubscribe;
    uint8_t *reasons = arena_alloc(&c->loop->arena, up->n_filters);
    size_t ops = persist__ops(c->loop);
    if (reasons == NULL) return conn__fail(c, PKT_RC_PACKET_TOO_LARGE, err_str(UVMQ_ENOMEM));
    for (uint32_t i = 0; i < up->n_filters; i++) {
        const char *f = (const char *)up->filters[i].p;
        size_t len = up->filters[i].len;
        int rc = interest__unsubscribe(c->loop, c->sess, f, len);
        if (rc == 0) persist__sub_del(c->loop, c->sess, f, len);
        reasons[i] = rc == 0 ? PKT_RC_SUCCESS : PKT_RC_NO_SUBSCRIPTION_EXISTED;
    }
    return persist__ack_sub(c, PKT_UNSUBACK, up->packet_id, reasons,
                            c->version == PKT_V5 ? up->n_filters : 0,
                            persist__gen_since(c->loop, ops));
}

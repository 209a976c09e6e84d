/*
 * publish.c - PUBLISH in, and the QoS 1/2 acknowledgement flows
 * (PUBACK, PUBREC, PUBREL, PUBCOMP) in both directions.
 *
 * An incoming PUBLISH becomes one refcounted msg_t holding the topic, the
 * payload and the encoded forwardable v5 properties; it is stored as
 * retained when flagged, fanned out, and acknowledged. Inbound QoS 2 is
 * delivered on PUBLISH and its packet id remembered until PUBREL, so a
 * resent PUBLISH is not delivered twice.
 */
#include "publish_int.h"

#include "access_int.h"
#include "alias_int.h"
#include "conn_int.h"
#include "deliver_int.h"
#include "persist_int.h"
#include "sess_int.h"
#include "throttle_int.h"

#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

/* Encoded forwardable properties up to this size use a stack buffer. */
#define PROPS_STACK 512

/* Copies the properties a PUBLISH forwards (MQTT-3.3.2-16..20): Payload
 * Format, Content Type, Response Topic, Correlation Data, User Properties.
 * Message Expiry is re-computed per delivery; Topic Alias and
 * Subscription Identifiers are never forwarded. */
static void forwardable(const pkt_props_t *in, pkt_props_t *out)
{
    static const uint8_t keep[] = {PROP_PAYLOAD_FORMAT, PROP_CONTENT_TYPE,
                                   PROP_RESPONSE_TOPIC, PROP_CORRELATION_DATA};
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < sizeof keep; i++)
        if (PKT_PROP_HAS(in, keep[i])) PKT_PROP_SET(out, keep[i]);
    out->payload_format = in->payload_format;
    out->content_type = in->content_type;
    out->response_topic = in->response_topic;
    out->correlation_data = in->correlation_data;
    out->user = in->user;
    out->n_user = in->n_user;
}

msg_t *publish__msg_from(broker_t *b, pkt_bin_t topic, pkt_bin_t payload,
                      const pkt_props_t *props, uint8_t qos, uint8_t retain,
                      const void *origin)
{
    uint8_t stack[PROPS_STACK];
    uint8_t *buf = stack;
    size_t plen = 0;
    msg_t *m = NULL;
    pkt_props_t fw;
    if (props != NULL) {
        forwardable(props, &fw);
        plen = pkt_props_size(&fw);
        if (plen > sizeof stack) buf = try_malloc(plen, b->cfg->max_packet_size);
        if (buf == NULL) return NULL;
        if (plen > 0) pkt_props_write(&fw, buf);
    }
    m = msg_create((const char *)topic.p, topic.len, payload.p, payload.len,
                   plen ? buf : NULL, plen, qos, retain, b->cfg->max_packet_size,
                   sizeof(msg_state_t));
    if (buf != stack) free(buf);
    if (m == NULL) return NULL;
    if (props != NULL && PKT_PROP_HAS(props, PROP_MESSAGE_EXPIRY))
        m->expiry_at = msg_now_ms() + (uint64_t)props->message_expiry * 1000;
    m->origin = origin;
    return m;
}

/* Reason String of a v5 PUBACK, PUBREC, PUBREL or PUBCOMP with this
 * error reason code (3.4.2.2.2 and after), or NULL. */
static const char *ack_text(uint8_t reason)
{
    switch (reason) {
    case PKT_RC_NOT_AUTHORIZED: return "not authorized";
    case PKT_RC_QUOTA_EXCEEDED: return "too many QoS 2 messages awaiting PUBREL";
    case PKT_RC_PACKET_ID_NOT_FOUND: return "packet identifier not found";
    case PKT_RC_UNSPECIFIED: return "the message could not be stored";
    default: return NULL;
    }
}

void publish__send_ack(conn_t *c, uint8_t type, uint16_t id, uint8_t reason)
{
    pkt_t r = {.type = type};
    r.u.ack.packet_id = id;
    r.u.ack.reason = c->version == PKT_V5 ? reason : 0;
    /* Only with an error (0x80 and above): never with 0x00 or 0x10 No
     * matching subscribers, since some client libraries refuse an
     * acknowledgement longer than 4 bytes, and a QoS 1 publish to a topic
     * nobody reads would pay the bytes every time. */
    if (reason >= 0x80) conn__reason_string(c, &r, &r.u.ack.props, ack_text(reason));
    conn__send_pkt(c, &r);
}

/* Checks the topic of an incoming PUBLISH, resolving a v5 Topic Alias
 * (an empty topic takes the alias's; a topic with an alias sets it once
 * the topic is valid: alias.c). Returns 0, or UVMQ_EINVAL with *reason
 * set to the v5 reason to close with (0 on success) and *why saying what
 * failed, for the log. */
static int check_topic(conn_t *c, pkt_publish_t *pub, uint8_t *reason, const char **why)
{
    int alias = c->version == PKT_V5 && PKT_PROP_HAS(&pub->props, PROP_TOPIC_ALIAS);
    int sets = alias && pub->topic.len > 0;
    *reason = PKT_RC_SUCCESS;
    *why = "invalid PUBLISH topic or properties";
    if (pub->props.n_sub_ids > 0) {
        *reason = PKT_RC_PROTOCOL_ERROR; /* MQTT-3.3.4-6: server-to-client only */
        return UVMQ_EINVAL;
    }
    if (alias && alias__in_resolve(c, pub, reason) != 0) {
        *why = *reason == PKT_RC_TOPIC_ALIAS_INVALID ? "Topic Alias 0 or over topic_alias_max"
                                                     : "empty topic with a Topic Alias never set";
        return UVMQ_EINVAL;
    }
    const char *t = (const char *)pub->topic.p;
    if (pub->topic.len == 0)
        *reason = PKT_RC_PROTOCOL_ERROR; /* MQTT-3.3.2-1 */
    else if (!topic_name_valid(t, pub->topic.len) ||
             topic_levels(t, pub->topic.len) > c->loop->b->cfg->max_topic_levels)
        *reason = PKT_RC_TOPIC_NAME_INVALID;
    if (*reason != PKT_RC_SUCCESS) return UVMQ_EINVAL;
    if (sets) alias__in_set(c, pub->props.topic_alias, &pub->topic);
    return 0;
}

/* 1 when a v5 client has more QoS 1/2 PUBLISH packets unanswered than
 * the Receive Maximum uvmq announced (max_inflight), counting the new one
 * (`extra`, 1 for QoS 1; a new QoS 2 id is already in in_count). Open are
 * QoS 2 ids awaiting PUBREL and PUBACKs/PUBCOMPs waiting for a commit; the
 * client counts each until it gets the answer, so a client that keeps the
 * limit (MQTT-3.3.4-7) is never over it here. */
static int over_receive_max(const conn_t *c, size_t extra)
{
    return c->version == PKT_V5 &&
           c->sess->inflight.in_count + persist__open_acks(c) + extra >
               c->loop->b->cfg->max_inflight;
}

/* v5 3.3.4 / 4.9: the Server uses DISCONNECT 0x93 when a client exceeds
 * the Receive Maximum it was given. Returns CONN_GONE. */
static conn_rc_t fail_receive_max(conn_t *c)
{
    return conn__fail(c, PKT_RC_RECEIVE_MAX_EXCEEDED,
                      "more unacknowledged QoS 1/2 PUBLISH packets than Receive Maximum");
}

/* QoS 2 bookkeeping before delivery: sets *deliver when the message is
 * to be delivered (a new packet id). Returns CONN_OK, or CONN_GONE when c
 * was closed. (*deliver is separate: one return value for both was
 * ambiguous.) */
static conn_rc_t qos2_admit(conn_t *c, uint16_t id, int *deliver)
{
    int r = inflight_in_add(&c->sess->inflight, id, c->loop->b->cfg->max_inbound_qos2);
    *deliver = 0;
    if (r == 1 && over_receive_max(c, 0)) {
        inflight_in_remove(&c->sess->inflight, id);
        return fail_receive_max(c);
    }
    if (r == 1) {
        persist__inq2(c->loop, c->sess, id, 1);
        *deliver = 1;
        return CONN_OK;
    }
    if (r == 0) /* MQTT-4.3.3-10: resend before PUBREL: no second delivery;
                   acknowledged after the first one (persist.c) */
        return persist__ack(c, PKT_PUBREC, id, PKT_RC_SUCCESS, NULL, persist__gen_now(c->loop));
    if (c->version != PKT_V5)
        return conn__fail(c, PKT_RC_QUOTA_EXCEEDED, "too many QoS 2 messages awaiting PUBREL");
    publish__send_ack(c, PKT_PUBREC, id, PKT_RC_QUOTA_EXCEEDED);
    return CONN_OK;
}

/* A client's PUBLISH it may not make (to a $SYS topic, or one the ACL
 * does not let it write): dropped, as mosquitto does; QoS 1/2 still get
 * their acknowledgement, in order with the others, v5 with 0x87 Not
 * authorized, which ends a QoS 2 flow, v3.1.1 a plain one (the protocol
 * has no refusal code: docs/protocol.md). Returns CONN_OK or CONN_GONE. */
static conn_rc_t drop_denied(conn_t *c, const pkt_publish_t *pub)
{
    if (pub->qos == 0) return CONN_OK;
    return persist__ack(c, pub->qos == 1 ? PKT_PUBACK : PKT_PUBREC, pub->packet_id,
                        PKT_RC_NOT_AUTHORIZED, NULL, persist__gen_now(c->loop));
}

conn_rc_t publish__handle(conn_t *c, pkt_t *p)
{
    pkt_publish_t *pub = &p->u.publish;
    broker_t *b = c->loop->b;
    const char *why = NULL;
    uint8_t bad = 0;
    int invalid = check_topic(c, pub, &bad, &why) != 0;
    CNT_INC(b, msgs_in);
    if (invalid) return conn__fail(c, bad, why);
    /* After check_topic: an aliased PUBLISH has its topic by now. */
    loop_t *l = c->loop;
    if (broker_topic_is_sys((const char *)pub->topic.p, pub->topic.len)) {
        log_debug("client %s: PUBLISH to a $SYS topic dropped: $SYS topics are the broker's",
                  conn__id(c));
        return drop_denied(c, pub);
    }
    if (!access__may_publish(l, c->sess, (const char *)pub->topic.p, pub->topic.len))
        return drop_denied(c, pub); /* counted and logged there */
    size_t ops = persist__ops(l); /* did this PUBLISH write? (persist.c) */
    if (pub->qos == 1 && over_receive_max(c, 1)) return fail_receive_max(c);
    if (pub->qos == 2) {
        int deliver = 0;
        conn_rc_t r = qos2_admit(c, pub->packet_id, &deliver);
        if (r != CONN_OK || !deliver) return r;
    }
    msg_t *m = publish__msg_from(b, pub->topic, pub->payload,
                              c->version == PKT_V5 ? &pub->props : NULL,
                              pub->qos, pub->retain, c->sess);
    if (m == NULL) {
        if (pub->qos == 2) {
            inflight_in_remove(&c->sess->inflight, pub->packet_id);
            persist__inq2(l, c->sess, pub->packet_id, 0);
        }
        return conn__fail(c, PKT_RC_PACKET_TOO_LARGE, "cannot allocate message");
    }
    broker__msg(m)->origin_hash = sess__origin_hash(c->sess); /* share.c */
    size_t n = deliver__publish(l, m);
    if (pub->qos > 0 && b->cfg->throttle_publishers) throttle__note(c, m);
    uint8_t reason = n == 0 ? PKT_RC_NO_MATCHING_SUBSCRIBERS : PKT_RC_SUCCESS;
    conn_rc_t rc = CONN_OK;
    if (pub->qos > 0)
        rc = persist__ack(c, pub->qos == 1 ? PKT_PUBACK : PKT_PUBREC, pub->packet_id,
                          reason, m, persist__gen_since(l, ops));
    msg_release(&m);
    return rc;
}

/* PUBREC for one of our QoS 2 deliveries. */
static void on_pubrec(conn_t *c, const pkt_ack_t *a)
{
    inflight_t *f = &c->sess->inflight;
    inflight_slot_t *slot = inflight_get(f, a->packet_id);
    if (slot != NULL && slot->state == INFLIGHT_WAIT_PUBCOMP) {
        publish__send_ack(c, PKT_PUBREL, a->packet_id, PKT_RC_SUCCESS); /* duplicate */
    } else if (c->version == PKT_V5 && a->reason >= 0x80) {
        /* v5 4.3.3: a failing PUBREC ends the flow; the id is free again. */
        uint64_t seq = slot != NULL ? slot->e.seq : 0;
        if (inflight_pubrec(f, a->packet_id) == 0) {
            inflight_complete(f, a->packet_id, PKT_PUBCOMP);
            persist__entry_del(c->loop, c->sess, seq);
        }
        deliver__drain(c->sess);
    } else if (inflight_pubrec(f, a->packet_id) == 0) {
        persist__entry_update(c->loop, c->sess, slot->e.seq, a->packet_id,
                              STORE_ENTRY_PUBCOMP, 1);
        publish__send_ack(c, PKT_PUBREL, a->packet_id, PKT_RC_SUCCESS);
        if (c->sess->stored) persist__hold(c); /* written after the stage */
    } else {
        log_debug("client %s: PUBREC for unknown id %u", conn__id(c), a->packet_id);
        if (c->version == PKT_V5)
            publish__send_ack(c, PKT_PUBREL, a->packet_id, PKT_RC_PACKET_ID_NOT_FOUND);
    }
}

conn_rc_t publish__handle_ack(conn_t *c, const pkt_t *p)
{
    const pkt_ack_t *a = &p->u.ack;
    inflight_t *f = &c->sess->inflight;
    inflight_slot_t *slot = NULL;
    uint64_t seq = 0;
    size_t ops = persist__ops(c->loop);
    conn_rc_t rc = CONN_OK;
    switch (p->type) {
    case PKT_PUBACK:
    case PKT_PUBCOMP:
        slot = inflight_get(f, a->packet_id);
        seq = slot != NULL ? slot->e.seq : 0;
        if (inflight_complete(f, a->packet_id, p->type) == 0) {
            persist__entry_del(c->loop, c->sess, seq);
            deliver__drain(c->sess);
        } else {
            log_debug("client %s: %s for unknown id %u", conn__id(c),
                      pkt_type_name(p->type), a->packet_id);
        }
        break;
    case PKT_PUBREC:
        on_pubrec(c, a);
        break;
    default: { /* PUBREL: the last step of an inbound QoS 2 flow */
        int known = inflight_in_remove(f, a->packet_id) == 0;
        if (known) persist__inq2(c->loop, c->sess, a->packet_id, 0);
        /* after the id is forgotten on disk too: the client may reuse it */
        rc = persist__ack(c, PKT_PUBCOMP, a->packet_id,
                          known ? PKT_RC_SUCCESS : PKT_RC_PACKET_ID_NOT_FOUND, NULL,
                          known ? persist__gen_since(c->loop, ops) : persist__gen_now(c->loop));
        break;
    }
    }
    return rc;
}

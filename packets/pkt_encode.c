/*
 * pkt_encode.c - MQTT 3.1 / 3.1.1 / 5.0 encoder.
 *
 * Each packet body is produced by one emit_* function driven twice through
 * a writer: first with no buffer, to count the remaining length (and notice
 * fields that do not fit the format), then for real behind the fixed
 * header. No allocation; work is linear in the packet. The byte format is
 * described at the top of pkt.c.
 */
#include "pkt.h"

#include <assert.h>
#include <string.h>

#include "packets_int.h"

/* Output cursor. With p == NULL it only counts; `bad` records a field that
 * cannot be encoded (string over 65535 bytes, varint over the maximum). */
typedef struct wr_s {
    uint8_t *p;
    size_t len;
    int bad;
} wr_t;

static void put(wr_t *w, const void *src, size_t n)
{
    if (w->p != NULL && n > 0) memcpy(w->p + w->len, src, n);
    w->len += n;
}

static void put_u8(wr_t *w, uint8_t v)
{
    put(w, &v, 1);
}

static void put_u16(wr_t *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 2);
}

static void put_varint(wr_t *w, size_t v)
{
    uint8_t b[4];
    if (v > PKT_VARINT_MAX) w->bad = 1;
    put(w, b, w->p ? pkt_varint_write((uint32_t)v, b)
                   : pkt_varint_size((uint32_t)v));
}

/* String or binary data: two-byte length, then the bytes. */
static void put_bin(wr_t *w, const pkt_bin_t *b)
{
    if (b->len > UINT16_MAX) w->bad = 1;
    put_u16(w, (uint16_t)b->len);
    put(w, b->p, b->len);
}

/* Property block with its length prefix. */
static void put_props(wr_t *w, const pkt_props_t *props)
{
    if (!pkt__props_fit(props)) {
        w->bad = 1;
        return;
    }
    size_t n = pkt_props_size(props);
    put_varint(w, n);
    if (w->p != NULL) {
        size_t wrote = pkt_props_write(props, w->p + w->len);
        assert(wrote == n); /* the writer and the sizer agree */
        (void)wrote;
    }
    w->len += n;
}

/* 1 when the block would hold at least one byte. */
static int has_props(const pkt_props_t *props)
{
    return pkt_props_size(props) > 0;
}

/* ---- bodies ---- */

static void emit_connect(wr_t *w, const pkt_connect_t *c, uint8_t version)
{
    static const pkt_bin_t mqisdp = {(const uint8_t *)"MQIsdp", 6};
    static const pkt_bin_t mqtt = {(const uint8_t *)"MQTT", 4};
    uint8_t flags = (uint8_t)((c->has_username ? 0x80 : 0) |
                              (c->has_password ? 0x40 : 0) |
                              (c->will_flag && c->will_retain ? 0x20 : 0) |
                              (c->will_flag ? (c->will_qos & 3) << 3 : 0) |
                              (c->will_flag ? 0x04 : 0) |
                              (c->clean_start ? 0x02 : 0));
    if (c->will_flag && c->will_qos > 2) w->bad = 1;
    put_bin(w, version == PKT_V31 ? &mqisdp : &mqtt);
    put_u8(w, version);
    put_u8(w, flags);
    put_u16(w, c->keep_alive);
    if (version == PKT_V5) put_props(w, &c->props);
    put_bin(w, &c->client_id);
    if (c->will_flag) {
        if (version == PKT_V5) put_props(w, &c->will_props);
        put_bin(w, &c->will_topic);
        put_bin(w, &c->will_payload);
    }
    if (c->has_username) put_bin(w, &c->username);
    if (c->has_password) put_bin(w, &c->password);
}

static void emit_connack(wr_t *w, const pkt_connack_t *c, uint8_t version)
{
    put_u8(w, c->session_present ? 1 : 0);
    put_u8(w, c->reason);
    if (version == PKT_V5) put_props(w, &c->props);
}

/* PUBLISH up to (not including) the payload. */
static void emit_publish_head(wr_t *w, const pkt_publish_t *p,
                              uint8_t version)
{
    if (p->qos > 2) w->bad = 1;
    put_bin(w, &p->topic);
    if (p->qos > 0) put_u16(w, p->packet_id);
    if (version == PKT_V5) put_props(w, &p->props);
}

/* PUBACK..PUBCOMP: v5 short forms, length 2 for reason 0 without
 * properties and 3 for another reason without properties (3.4.2.1). */
static void emit_ack(wr_t *w, const pkt_ack_t *k, uint8_t version)
{
    put_u16(w, k->packet_id);
    if (version != PKT_V5) return;
    int props = has_props(&k->props);
    if (k->reason != 0 || props) put_u8(w, k->reason);
    if (props) put_props(w, &k->props);
}

/* v3 keeps only the QoS bits of the options. */
static void emit_subscribe(wr_t *w, const pkt_subscribe_t *s,
                           uint8_t version)
{
    assert(s->subs != NULL || s->n_subs == 0);
    put_u16(w, s->packet_id);
    if (version == PKT_V5) put_props(w, &s->props);
    for (uint32_t i = 0; i < s->n_subs; i++) {
        uint8_t o = s->subs[i].options;
        put_bin(w, &s->subs[i].filter);
        put_u8(w, version == PKT_V5 ? o : (uint8_t)(o & PKT_SUBOPT_QOS_MASK));
    }
}

/* SUBACK / UNSUBACK. In v3 SUBACK every failure code (0x80 and up) becomes
 * 0x80, the only one 3.1.1 has; a v3 UNSUBACK carries no codes. */
static void emit_suback(wr_t *w, const pkt_suback_t *s, uint8_t type,
                        uint8_t version)
{
    assert(s->reasons != NULL || s->n_reasons == 0);
    put_u16(w, s->packet_id);
    if (version != PKT_V5 && type == PKT_UNSUBACK) return;
    if (version == PKT_V5) put_props(w, &s->props);
    for (uint32_t i = 0; i < s->n_reasons; i++) {
        uint8_t r = s->reasons[i];
        put_u8(w, version != PKT_V5 && r >= 0x80 ? 0x80 : r);
    }
}

static void emit_unsubscribe(wr_t *w, const pkt_unsubscribe_t *u,
                             uint8_t version)
{
    assert(u->filters != NULL || u->n_filters == 0);
    put_u16(w, u->packet_id);
    if (version == PKT_V5) put_props(w, &u->props);
    for (uint32_t i = 0; i < u->n_filters; i++) put_bin(w, &u->filters[i]);
}

/* DISCONNECT / AUTH: empty for reason 0 without properties (and always in
 * v3), the reason alone when there are no properties. */
static void emit_reason(wr_t *w, const pkt_reason_t *d, uint8_t version)
{
    if (version != PKT_V5) return;
    int props = has_props(&d->props);
    if (d->reason != 0 || props) put_u8(w, d->reason);
    if (props) put_props(w, &d->props);
}

static int encodable(const pkt_t *p, uint8_t version);

/* Runs the emitter for p's type; PINGREQ/PINGRESP have no body. */
static void emit_body(wr_t *w, const pkt_t *p, uint8_t version)
{
    assert(encodable(p, version)); /* body_size checked before any pass */
    switch (p->type) {
    case PKT_CONNECT: emit_connect(w, &p->u.connect, version); break;
    case PKT_CONNACK: emit_connack(w, &p->u.connack, version); break;
    case PKT_PUBLISH:
        emit_publish_head(w, &p->u.publish, version);
        put(w, p->u.publish.payload.p, p->u.publish.payload.len);
        break;
    case PKT_PUBACK: case PKT_PUBREC: case PKT_PUBREL: case PKT_PUBCOMP:
        emit_ack(w, &p->u.ack, version);
        break;
    case PKT_SUBSCRIBE: emit_subscribe(w, &p->u.subscribe, version); break;
    case PKT_SUBACK: case PKT_UNSUBACK:
        emit_suback(w, &p->u.suback, p->type, version);
        break;
    case PKT_UNSUBSCRIBE: emit_unsubscribe(w, &p->u.unsubscribe, version); break;
    case PKT_DISCONNECT: case PKT_AUTH:
        emit_reason(w, &p->u.disconnect, version);
        break;
    default: assert(p->type == PKT_PINGREQ || p->type == PKT_PINGRESP); break;
    }
}

/* First byte of the fixed header; PUBLISH flags come from its fields. */
static uint8_t first_byte(const pkt_t *p)
{
    uint8_t flags = 0;
    if (p->type == PKT_PUBREL || p->type == PKT_SUBSCRIBE ||
        p->type == PKT_UNSUBSCRIBE)
        flags = 0x2;
    if (p->type == PKT_PUBLISH) {
        const pkt_publish_t *pub = &p->u.publish;
        flags = (uint8_t)((pub->dup ? 0x8 : 0) | ((pub->qos & 3) << 1) |
                          (pub->retain ? 1 : 0));
    }
    return (uint8_t)(p->type << 4 | flags);
}

/* 1 when p's type exists in version. */
static int encodable(const pkt_t *p, uint8_t version)
{
    if (version < PKT_V31 || version > PKT_V5) return 0;
    if (p->type == 0 || p->type > PKT_AUTH) return 0;
    return p->type != PKT_AUTH || version == PKT_V5;
}

/* Remaining length of p, or SIZE_MAX when it cannot be encoded. */
static size_t body_size(const pkt_t *p, uint8_t version)
{
    wr_t w = {NULL, 0, 0};
    if (!encodable(p, version)) return SIZE_MAX;
    emit_body(&w, p, version);
    return w.bad || w.len > PKT_VARINT_MAX ? SIZE_MAX : w.len;
}

/* ---- public ---- */

/* See pkt.h. Returns the whole packet's size, 0 when it cannot be encoded
 * (type not in the version, string over 65535 bytes, QoS 3, more than
 * PKT_MAX_SUB_IDS subscription identifiers, remaining length too big). */
size_t pkt_encoded_size(const pkt_t *p, uint8_t version)
{
    size_t rem = body_size(p, version);
    return rem == SIZE_MAX ? 0 : 1 + pkt_varint_size((uint32_t)rem) + rem;
}

/* See pkt.h. The fixed header flags are derived from the type (and the
 * PUBLISH fields); p->flags is ignored. On error nothing useful is in out. */
int pkt_encode(const pkt_t *p, uint8_t version, uint8_t *out, size_t cap,
               size_t *written)
{
    size_t rem = body_size(p, version);
    assert(out != NULL || cap == 0);
    *written = 0;
    if (rem == SIZE_MAX) return UVMQ_EINVAL;
    size_t hdr = 1 + pkt_varint_size((uint32_t)rem);
    if (cap < hdr + rem) return UVMQ_ELIMIT;
    out[0] = first_byte(p);
    pkt_varint_write((uint32_t)rem, out + 1);
    wr_t w = {out, hdr, 0};
    emit_body(&w, p, version);
    /* The writing pass wrote what the counting pass counted, so it stayed
     * inside out[0..cap). */
    assert(!w.bad && w.len == hdr + rem);
    *written = w.len;
    return 0;
}

/* Remaining length of a PUBLISH (payload included), SIZE_MAX if it does
 * not fit; *head_body gets the part before the payload. */
static size_t publish_rem(const pkt_publish_t *pub, uint8_t version,
                          size_t *head_body)
{
    wr_t w = {NULL, 0, 0};
    if (version < PKT_V31 || version > PKT_V5) return SIZE_MAX;
    emit_publish_head(&w, pub, version);
    *head_body = w.len;
    size_t rem = w.len + pub->payload.len;
    return w.bad || rem > PKT_VARINT_MAX ? SIZE_MAX : rem;
}

/* See pkt.h. */
size_t pkt_publish_head_size(const pkt_publish_t *pub, uint8_t version)
{
    size_t head = 0;
    size_t rem = publish_rem(pub, version, &head);
    return rem == SIZE_MAX ? 0 : 1 + pkt_varint_size((uint32_t)rem) + head;
}

/* See pkt.h. Writes no payload byte; *written is the head's length. */
int pkt_encode_publish_head(const pkt_publish_t *pub, uint8_t version,
                            uint8_t *out, size_t cap, size_t *written)
{
    size_t head = 0;
    size_t rem = publish_rem(pub, version, &head);
    assert(out != NULL || cap == 0);
    *written = 0;
    if (rem == SIZE_MAX) return UVMQ_EINVAL;
    size_t hdr = 1 + pkt_varint_size((uint32_t)rem);
    if (cap < hdr + head) return UVMQ_ELIMIT;
    out[0] = (uint8_t)(PKT_PUBLISH << 4 | (pub->dup ? 0x8 : 0) |
                       ((pub->qos & 3) << 1) | (pub->retain ? 1 : 0));
    pkt_varint_write((uint32_t)rem, out + 1);
    wr_t w = {out, hdr, 0};
    emit_publish_head(&w, pub, version);
    assert(!w.bad && w.len == hdr + head); /* as in pkt_encode */
    *written = w.len;
    return 0;
}

/*
 * props.c - MQTT 5.0 properties: decode, validate, size and write.
 *
 * One table (prop_info) says, for each identifier, its data type, the
 * packets it may appear in (spec v5 table 2-4) and where its value lives
 * in pkt_props_t; decoder and encoder both walk it, so they cannot
 * disagree. The byte format is described at the top of pkt.c.
 */
#include "pkt.h"

#include <assert.h>
#include <string.h>

#include "packets_int.h"

#define PROP_ID_MAX 0x2A

enum prop_type { PT_NONE, PT_BYTE, PT_U16, PT_U32, PT_VARINT, PT_STR,
                 PT_BIN, PT_PAIR };

/* Placement bits: one per packet type, bit 0 for Will Properties. */
#define W(t) (1u << (t))
#define W_WILL (1u << PKT__CTX_WILL)
#define W_ACKS (W(PKT_PUBACK) | W(PKT_PUBREC) | W(PKT_PUBREL) | W(PKT_PUBCOMP))
#define W_ALL 0xFFFFu

typedef struct prop_info_s {
    uint8_t type;     /* enum prop_type; PT_NONE = unknown identifier */
    uint8_t nonzero;  /* value 0 is a Protocol Error */
    uint16_t where;   /* placement bits */
    uint16_t off;     /* offset of the value in pkt_props_t */
} prop_info_t;

#define F(field) ((uint16_t)offsetof(pkt_props_t, field))

/* Spec v5 table 2-4. Every byte property is a 0/1 switch (2.2.2.2 and
 * 3.1.2.11, 3.2.2.3): values above 1 are rejected for all of them. */
static const prop_info_t prop_info[PROP_ID_MAX + 1] = {
    [PROP_PAYLOAD_FORMAT] = {PT_BYTE, 0, W(PKT_PUBLISH) | W_WILL, F(payload_format)},
    [PROP_MESSAGE_EXPIRY] = {PT_U32, 0, W(PKT_PUBLISH) | W_WILL, F(message_expiry)},
    [PROP_CONTENT_TYPE] = {PT_STR, 0, W(PKT_PUBLISH) | W_WILL, F(content_type)},
    [PROP_RESPONSE_TOPIC] = {PT_STR, 0, W(PKT_PUBLISH) | W_WILL, F(response_topic)},
    [PROP_CORRELATION_DATA] = {PT_BIN, 0, W(PKT_PUBLISH) | W_WILL, F(correlation_data)},
    [PROP_SUBSCRIPTION_ID] = {PT_VARINT, 1, W(PKT_PUBLISH) | W(PKT_SUBSCRIBE), F(sub_ids)},
    [PROP_SESSION_EXPIRY] = {PT_U32, 0, W(PKT_CONNECT) | W(PKT_CONNACK) | W(PKT_DISCONNECT), F(session_expiry)},
    [PROP_ASSIGNED_CLIENT_ID] = {PT_STR, 0, W(PKT_CONNACK), F(assigned_client_id)},
    [PROP_SERVER_KEEP_ALIVE] = {PT_U16, 0, W(PKT_CONNACK), F(server_keep_alive)},
    [PROP_AUTH_METHOD] = {PT_STR, 0, W(PKT_CONNECT) | W(PKT_CONNACK) | W(PKT_AUTH), F(auth_method)},
    [PROP_AUTH_DATA] = {PT_BIN, 0, W(PKT_CONNECT) | W(PKT_CONNACK) | W(PKT_AUTH), F(auth_data)},
    [PROP_REQUEST_PROBLEM_INFO] = {PT_BYTE, 0, W(PKT_CONNECT), F(request_problem_info)},
    [PROP_WILL_DELAY] = {PT_U32, 0, W_WILL, F(will_delay)},
    [PROP_REQUEST_RESPONSE_INFO] = {PT_BYTE, 0, W(PKT_CONNECT), F(request_response_info)},
    [PROP_RESPONSE_INFO] = {PT_STR, 0, W(PKT_CONNACK), F(response_info)},
    [PROP_SERVER_REFERENCE] = {PT_STR, 0, W(PKT_CONNACK) | W(PKT_DISCONNECT), F(server_reference)},
    [PROP_REASON_STRING] = {PT_STR, 0, W(PKT_CONNACK) | W_ACKS | W(PKT_SUBACK) | W(PKT_UNSUBACK) | W(PKT_DISCONNECT) | W(PKT_AUTH), F(reason_string)},
    [PROP_RECEIVE_MAX] = {PT_U16, 1, W(PKT_CONNECT) | W(PKT_CONNACK), F(receive_max)},
    [PROP_TOPIC_ALIAS_MAX] = {PT_U16, 0, W(PKT_CONNECT) | W(PKT_CONNACK), F(topic_alias_max)},
    /* 0 is the receiver's to refuse, with 0x94 like any alias over its
     * maximum (3.3.4), not a decode error. */
    [PROP_TOPIC_ALIAS] = {PT_U16, 0, W(PKT_PUBLISH), F(topic_alias)},
    [PROP_MAXIMUM_QOS] = {PT_BYTE, 0, W(PKT_CONNACK), F(maximum_qos)},
    [PROP_RETAIN_AVAILABLE] = {PT_BYTE, 0, W(PKT_CONNACK), F(retain_available)},
    [PROP_USER_PROPERTY] = {PT_PAIR, 0, W_ALL, F(user)},
    [PROP_MAX_PACKET_SIZE] = {PT_U32, 1, W(PKT_CONNECT) | W(PKT_CONNACK), F(max_packet_size)},
    [PROP_WILDCARD_SUB_AVAILABLE] = {PT_BYTE, 0, W(PKT_CONNACK), F(wildcard_sub_available)},
    [PROP_SUB_ID_AVAILABLE] = {PT_BYTE, 0, W(PKT_CONNACK), F(sub_id_available)},
    [PROP_SHARED_SUB_AVAILABLE] = {PT_BYTE, 0, W(PKT_CONNACK), F(shared_sub_available)},
};

/* ---- decoding ---- */

/* Reads one scalar (byte, two- or four-byte integer) into *v. */
static int read_scalar(pkt__rd_t *r, uint8_t type, uint32_t *v)
{
    uint8_t b = 0;
    uint16_t s = 0;
    int rc;
    assert(type >= PT_BYTE && type <= PT_VARINT);
    if (type == PT_BYTE) {
        rc = pkt__rd_u8(r, &b);
        *v = b;
    } else if (type == PT_U16) {
        rc = pkt__rd_u16(r, &s);
        *v = s;
    } else if (type == PT_U32) {
        rc = pkt__rd_u32(r, v);
    } else {
        rc = pkt__rd_varint(r, v);
    }
    return rc;
}

/* Stores scalar v into the field described by pi. */
static void store_scalar(pkt_props_t *props, const prop_info_t *pi,
                         uint32_t v)
{
    unsigned char *f = (unsigned char *)props + pi->off;
    uint8_t b = (uint8_t)v;
    uint16_t s = (uint16_t)v;
    if (pi->type == PT_BYTE) memcpy(f, &b, 1);
    else if (pi->type == PT_U16) memcpy(f, &s, 2);
    else memcpy(f, &v, 4);
}

/* Subscription Identifier: may repeat only in PUBLISH (3.3.2.3.8), once
 * in SUBSCRIBE (3.8.2.1.2); 0 is a Protocol Error. */
static int add_sub_id(pkt_props_t *props, uint8_t ctx, uint32_t v)
{
    /* prop_info places the identifier in these two packets only. */
    assert(ctx == PKT_PUBLISH || ctx == PKT_SUBSCRIBE);
    assert(v > 0 && v <= PKT_VARINT_MAX);
    if (ctx != PKT_PUBLISH && props->n_sub_ids > 0) return UVMQ_EPKT_PROP_DUP;
    /* More than PKT_MAX_SUB_IDS does not fit pkt_props_t; a sender would
     * need that many overlapping subscriptions. */
    if (props->n_sub_ids >= PKT_MAX_SUB_IDS) return UVMQ_EPKT_PROP_VALUE;
    props->sub_ids[props->n_sub_ids++] = v;
    return 0;
}

/* Reads the value of property `id` (already placed and checked for
 * repetition) and stores it. User properties are only counted here. */
static int read_value(pkt__rd_t *r, pkt_props_t *props, uint8_t id,
                      uint8_t ctx)
{
    const prop_info_t *pi = &prop_info[id];
    pkt_bin_t key, val;
    uint32_t v = 0;
    int rc;
    assert(id <= PROP_ID_MAX && pi->type != PT_NONE); /* read_prop checked */
    if (pi->type == PT_PAIR) {
        rc = pkt__rd_str(r, &key);
        if (rc == 0) rc = pkt__rd_str(r, &val);
        if (rc == 0) props->n_user++;
        return rc;
    }
    if (pi->type == PT_STR || pi->type == PT_BIN) {
        rc = pi->type == PT_STR ? pkt__rd_str(r, &val) : pkt__rd_bin(r, &val);
        if (rc != 0) return rc;
        memcpy((unsigned char *)props + pi->off, &val, sizeof val);
        PKT_PROP_SET(props, id);
        /* The Response Topic is a Topic Name: no wildcards (MQTT-3.3.2-14). */
        return id == PROP_RESPONSE_TOPIC && pkt__has_wildcard(&val)
                   ? UVMQ_EPKT_TOPIC : 0;
    }
    rc = read_scalar(r, pi->type, &v);
    if (rc != 0) return rc;
    if ((pi->type == PT_BYTE && v > 1) || (pi->nonzero && v == 0))
        return UVMQ_EPKT_PROP_VALUE;
    if (pi->type == PT_VARINT) return add_sub_id(props, ctx, v);
    store_scalar(props, pi, v);
    PKT_PROP_SET(props, id);
    return 0;
}

/* Decodes one property at r: identifier, placement, repetition, value. */
static int read_prop(pkt__rd_t *r, pkt_props_t *props, uint8_t ctx)
{
    uint8_t id = 0;
    int rc = pkt__rd_u8(r, &id);
    if (rc != 0) return rc;
    /* Identifiers are one-byte varints in practice; 0x80+ is unknown. */
    if (id > PROP_ID_MAX || prop_info[id].type == PT_NONE)
        return UVMQ_EPKT_PROP_ID;
    /* 2.2.2.2: an identifier not valid for its packet type is malformed. */
    if (!(prop_info[id].where & (1u << ctx))) return UVMQ_EPKT_PROP_PLACE;
    if (PKT_PROP_HAS(props, id)) return UVMQ_EPKT_PROP_DUP;
    return read_value(r, props, id, ctx);
}

/* Second pass over an already validated block: collects user properties
 * into arena memory, in order. */
static int collect_user(pkt_props_t *props, arena_t *a)
{
    pkt__rd_t r = {props->raw.p, props->raw.p + props->raw.len};
    pkt_bin_t skip;
    uint32_t v, i = 0;
    uint8_t id = 0;
    assert(props->n_user > 0);
    props->user = a ? arena_alloc(a, props->n_user * sizeof *props->user)
                    : NULL;
    if (props->user == NULL) return UVMQ_ENOMEM;
    while (pkt__rd_left(&r) > 0 && i < props->n_user) {
        (void)pkt__rd_u8(&r, &id);
        uint8_t type = prop_info[id].type;
        if (type == PT_PAIR) {
            (void)pkt__rd_bin(&r, &props->user[i].key);
            (void)pkt__rd_bin(&r, &props->user[i++].val);
        } else if (type == PT_STR || type == PT_BIN) {
            (void)pkt__rd_bin(&r, &skip);
        } else {
            (void)read_scalar(&r, type, &v);
        }
    }
    assert(i == props->n_user); /* the first pass counted these pairs */
    return 0;
}

/* Decodes every property of buf[0..len) into *props (raw = the block):
 * the part pkt__props_decode and pkt_props_parse share. */
static int decode_block(const uint8_t *buf, size_t len, pkt_props_t *props,
                        uint8_t ctx, arena_t *a)
{
    pkt__rd_t block = {buf, buf + len};
    int rc = 0;
    assert(buf != NULL || len == 0);
    /* ctx is a packet type or PKT__CTX_WILL: a bit of prop_info.where. */
    assert(ctx <= PKT_AUTH);
    assert(props->present == 0 && props->n_user == 0 && props->n_sub_ids == 0);
    props->raw.p = buf;
    props->raw.len = len;
    while (rc == 0 && pkt__rd_left(&block) > 0)
        rc = read_prop(&block, props, ctx);
    if (rc == 0 && props->n_user > 0) rc = collect_user(props, a);
    return rc;
}

/* See packets_int.h. props->raw borrows the block in r; user property
 * slices borrow it too, their array is arena memory. */
int pkt__props_decode(pkt__rd_t *r, pkt_props_t *props, uint8_t ctx,
                      arena_t *a)
{
    uint32_t len = 0;
    int rc = pkt__rd_varint(r, &len);
    if (rc != 0) return rc;
    if (pkt__rd_left(r) < len) return UVMQ_EPKT_SHORT;
    const uint8_t *p = r->p;
    r->p += len;
    return decode_block(p, len, props, ctx, a);
}

int pkt_props_parse(const uint8_t *buf, size_t len, uint8_t type,
                    pkt_props_t *out, arena_t *a)
{
    assert(type >= PKT_CONNECT && type <= PKT_AUTH);
    memset(out, 0, sizeof *out);
    return decode_block(buf, len, out, type, a);
}

/* ---- sizing and writing ---- */

/* Bytes of one present single-valued property, identifier included. */
static size_t single_size(const pkt_props_t *props, const prop_info_t *pi)
{
    const pkt_bin_t *b;
    assert(pi->type != PT_NONE && pi->type != PT_VARINT && pi->type != PT_PAIR);
    switch (pi->type) {
    case PT_BYTE: return 2;
    case PT_U16: return 3;
    case PT_U32: return 5;
    default:
        b = (const pkt_bin_t *)((const unsigned char *)props + pi->off);
        return 3 + (size_t)b->len;
    }
}

/* Bit mask of present single-valued properties that the table knows. */
static uint64_t single_mask(const pkt_props_t *props)
{
    uint64_t m = props->present & ((2ull << PROP_ID_MAX) - 1);
    m &= ~((1ull << PROP_SUBSCRIPTION_ID) | (1ull << PROP_USER_PROPERTY) | 1ull);
    return m;
}

/* Returns the size of the property block (without its length prefix):
 * present single-valued properties, every subscription identifier, every
 * user property, then props->raw. Assumes pkt__props_fit(props); present
 * bits for unknown identifiers are ignored. */
size_t pkt_props_size(const pkt_props_t *props)
{
    size_t n = props->raw.len;
    uint64_t m = single_mask(props);
    while (m != 0) {
        int id = __builtin_ctzll(m);
        m &= m - 1;
        if (prop_info[id].type != PT_NONE)
            n += single_size(props, &prop_info[id]);
    }
    for (uint32_t i = 0; i < props->n_sub_ids && i < PKT_MAX_SUB_IDS; i++)
        n += 1 + pkt_varint_size(props->sub_ids[i]);
    for (uint32_t i = 0; i < props->n_user; i++)
        n += 5 + (size_t)props->user[i].key.len + props->user[i].val.len;
    return n;
}

/* Writes a two-byte length and the bytes of b at out; returns bytes used. */
static size_t put_bin(uint8_t *out, const pkt_bin_t *b)
{
    out[0] = (uint8_t)(b->len >> 8);
    out[1] = (uint8_t)b->len;
    if (b->len > 0) memcpy(out + 2, b->p, b->len);
    return 2 + (size_t)b->len;
}

/* Writes one present single-valued property; returns bytes used. */
static size_t put_single(uint8_t *out, const pkt_props_t *props, uint8_t id)
{
    const prop_info_t *pi = &prop_info[id];
    const unsigned char *f = (const unsigned char *)props + pi->off;
    uint16_t s;
    uint32_t v;
    /* single_mask leaves out the repeating and unknown identifiers. */
    assert(pi->type != PT_NONE && pi->type != PT_VARINT && pi->type != PT_PAIR);
    out[0] = id;
    switch (pi->type) {
    case PT_BYTE: out[1] = f[0]; return 2;
    case PT_U16:
        memcpy(&s, f, 2);
        out[1] = (uint8_t)(s >> 8);
        out[2] = (uint8_t)s;
        return 3;
    case PT_U32:
        memcpy(&v, f, 4);
        for (int i = 0; i < 4; i++) out[1 + i] = (uint8_t)(v >> (24 - 8 * i));
        return 5;
    default: return 1 + put_bin(out + 1, (const pkt_bin_t *)(const void *)f);
    }
}

/* Writes the block pkt_props_size() measured, in identifier order
 * (subscription identifiers at 0x0B, user properties at 0x26), then raw.
 * Returns the bytes written. Assumes pkt__props_fit(props). */
size_t pkt_props_write(const pkt_props_t *props, uint8_t *out)
{
    size_t n = 0;
    uint64_t m = single_mask(props) | (1ull << PROP_SUBSCRIPTION_ID) |
                 (1ull << PROP_USER_PROPERTY);
    assert(props->n_sub_ids <= PKT_MAX_SUB_IDS);
    assert(props->user != NULL || props->n_user == 0);
    assert(props->raw.p != NULL || props->raw.len == 0);
    while (m != 0) {
        uint8_t id = (uint8_t)__builtin_ctzll(m);
        m &= m - 1;
        if (id == PROP_SUBSCRIPTION_ID) {
            for (uint32_t i = 0; i < props->n_sub_ids && i < PKT_MAX_SUB_IDS; i++) {
                out[n++] = id;
                n += pkt_varint_write(props->sub_ids[i], out + n);
            }
        } else if (id == PROP_USER_PROPERTY) {
            for (uint32_t i = 0; i < props->n_user; i++) {
                out[n++] = id;
                n += put_bin(out + n, &props->user[i].key);
                n += put_bin(out + n, &props->user[i].val);
            }
        } else if (prop_info[id].type != PT_NONE) {
            n += put_single(out + n, props, id);
        }
    }
    if (props->raw.len > 0) memcpy(out + n, props->raw.p, props->raw.len);
    return n + props->raw.len;
}

/* See packets_int.h. */
int pkt__props_fit(const pkt_props_t *props)
{
    uint64_t m = single_mask(props);
    int ok = props->n_sub_ids <= PKT_MAX_SUB_IDS;
    while (ok && m != 0) {
        int id = __builtin_ctzll(m);
        m &= m - 1;
        const prop_info_t *pi = &prop_info[id];
        if (pi->type == PT_STR || pi->type == PT_BIN) {
            const pkt_bin_t *b =
                (const pkt_bin_t *)((const unsigned char *)props + pi->off);
            ok = b->len <= UINT16_MAX;
        }
    }
    for (uint32_t i = 0; ok && i < props->n_sub_ids; i++)
        ok = props->sub_ids[i] <= PKT_VARINT_MAX;
    for (uint32_t i = 0; ok && i < props->n_user; i++)
        ok = props->user[i].key.len <= UINT16_MAX &&
             props->user[i].val.len <= UINT16_MAX;
    return ok;
}

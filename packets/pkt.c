/*
 * pkt.c - MQTT 3.1 / 3.1.1 / 5.0 framing and decoding.
 *
 * pkt_frame() finds packet boundaries in a byte stream; pkt_decode() turns
 * one whole packet into a pkt_t whose strings borrow the input buffer and
 * whose arrays come from the caller's arena. Every check a malformed or
 * non-conforming packet can fail returns one UVMQ_EPKT_* code. Properties
 * live in props.c, the encoder in pkt_encode.c.
 *
 * FORMAT DETAILS
 *
 * Fixed header. Every packet starts with one byte, type in the high nibble
 * and flags in the low one, then the Remaining Length: the number of bytes
 * after it.
 *
 *   type  name         flags (bit 3..0)            body
 *   ----  -----------  --------------------------  -----------------------
 *     0   reserved     -                           (UVMQ_EPKT_TYPE)
 *     1   CONNECT      0000                        var header + payload
 *     2   CONNACK      0000                        ack flags, code
 *     3   PUBLISH      DUP, QoS(2 bits), RETAIN    topic, [id], payload
 *     4   PUBACK       0000                        packet id [reason]
 *     5   PUBREC       0000                        packet id [reason]
 *     6   PUBREL       0010                        packet id [reason]
 *     7   PUBCOMP      0000                        packet id [reason]
 *     8   SUBSCRIBE    0010                        packet id, filter list
 *     9   SUBACK       0000                        packet id, code list
 *    10   UNSUBSCRIBE  0010                        packet id, filter list
 *    11   UNSUBACK     0000                        packet id [code list]
 *    12   PINGREQ      0000                        empty
 *    13   PINGRESP     0000                        empty
 *    14   DISCONNECT   0000                        v5: [reason [props]]
 *    15   AUTH         0000                        v5 only: [reason [props]]
 *
 * Any other flag value is UVMQ_EPKT_FLAGS (MQTT-2.1.3-1); PUBLISH QoS 3 is
 * UVMQ_EPKT_QOS (MQTT-3.3.1-4) and DUP with QoS 0 UVMQ_EPKT_FLAGS (MQTT-3.3.1-2).
 *
 * Variable byte integer (Remaining Length, property lengths, Subscription
 * Identifiers): 7 bits per byte, least significant group first, bit 7 set
 * when another byte follows. At most 4 bytes, and the shortest form only.
 *
 *   bytes  from         to                       encoding of the lower bound
 *     1    0            127 (0x7F)               00
 *     2    128          16 383                   80 01
 *     3    16 384       2 097 151                80 80 01
 *     4    2 097 152    268 435 455 (FF FF FF 7F) 80 80 80 01
 *
 * A fifth byte, or a final byte 00 after a continuation (a longer form than
 * needed, MQTT-1.5.5-1), is UVMQ_EPKT_REMLEN wherever a varint appears.
 *
 * Data types: two-byte and four-byte integers are big-endian; a UTF-8
 * string and binary data are a two-byte length then that many bytes; a
 * string pair is two strings. Strings must be well-formed UTF-8 with no
 * U+0000 and no surrogate (MQTT-1.5.4-1, -2), else UVMQ_EPKT_UTF8.
 *
 * Property block (v5 only): a varint length, then properties, each a
 * one-byte identifier and a value whose type the identifier fixes:
 *
 *   id    property                   type      packets
 *   0x01  Payload Format Indicator   byte      PUBLISH, Will
 *   0x02  Message Expiry Interval    4 bytes   PUBLISH, Will
 *   0x03  Content Type               string    PUBLISH, Will
 *   0x08  Response Topic             string    PUBLISH, Will
 *   0x09  Correlation Data           binary    PUBLISH, Will
 *   0x0B  Subscription Identifier    varint    PUBLISH (repeats), SUBSCRIBE
 *   0x11  Session Expiry Interval    4 bytes   CONNECT, CONNACK, DISCONNECT
 *   0x12  Assigned Client Identifier string    CONNACK
 *   0x13  Server Keep Alive          2 bytes   CONNACK
 *   0x15  Authentication Method      string    CONNECT, CONNACK, AUTH
 *   0x16  Authentication Data        binary    CONNECT, CONNACK, AUTH
 *   0x17  Request Problem Info       byte      CONNECT
 *   0x18  Will Delay Interval        4 bytes   Will
 *   0x19  Request Response Info      byte      CONNECT
 *   0x1A  Response Information       string    CONNACK
 *   0x1C  Server Reference           string    CONNACK, DISCONNECT
 *   0x1F  Reason String              string    every ack, DISCONNECT, AUTH
 *   0x21  Receive Maximum            2 bytes   CONNECT, CONNACK (not 0)
 *   0x22  Topic Alias Maximum        2 bytes   CONNECT, CONNACK
 *   0x23  Topic Alias                2 bytes   PUBLISH (not 0)
 *   0x24  Maximum QoS                byte      CONNACK
 *   0x25  Retain Available           byte      CONNACK
 *   0x26  User Property              pair      every packet (repeats)
 *   0x27  Maximum Packet Size        4 bytes   CONNECT, CONNACK (not 0)
 *   0x28  Wildcard Sub Available     byte      CONNACK
 *   0x29  Sub Identifier Available   byte      CONNACK
 *   0x2A  Shared Sub Available       byte      CONNACK
 *
 * Unknown id: UVMQ_EPKT_PROP_ID; wrong packet: UVMQ_EPKT_PROP_PLACE; repeated:
 * UVMQ_EPKT_PROP_DUP; a byte property above 1 or a "not 0" one at 0:
 * UVMQ_EPKT_PROP_VALUE.
 *
 * Per-packet layouts after the fixed header ([v5] = only in version 5):
 *
 *   CONNECT     string protocol name ("MQIsdp" level 3, "MQTT" level 4/5),
 *               byte level, byte flags (7 user, 6 password, 5 will retain,
 *               4-3 will QoS, 2 will, 1 clean, 0 reserved), 2-byte keep
 *               alive, [v5] props; payload: client id, if will: [v5] will
 *               props, will topic, binary will payload; if user: username;
 *               if password: binary password.
 *   CONNACK     byte flags (bit 0 session present), byte code, [v5] props.
 *   PUBLISH     string topic, 2-byte packet id if QoS > 0, [v5] props,
 *               payload = everything left.
 *   PUBACK..    2-byte packet id; [v5] reason and props, where remaining
 *   PUBCOMP     length 2 means reason 0 and 3 means no properties.
 *   SUBSCRIBE   packet id, [v5] props, then pairs (string filter, byte
 *               options: 1-0 QoS, 2 no local, 3 retain as published, 5-4
 *               retain handling, 7-6 reserved; v3 allows only the QoS bits).
 *   SUBACK      packet id, [v5] props, one code per filter.
 *   UNSUBSCRIBE packet id, [v5] props, string filters.
 *   UNSUBACK    packet id; [v5] props, one reason per filter.
 *   DISCONNECT  v3 empty; v5 remaining length 0 = reason 0, 1 = reason
 *   AUTH        only, else reason and props.
 */
#include "pkt.h"

#include <assert.h>
#include <string.h>

#include "packets_int.h"

/* ---- variable byte integers, UTF-8 ---- */

/* See packets_int.h. Reads at most 4 bytes. */
int pkt__varint_decode(const uint8_t *p, size_t len, uint32_t *v,
                       size_t *used)
{
    uint32_t val = 0;
    size_t i = 0;
    int rc = PKT_NEED_MORE;
    while (i < len && i < 4 && rc == PKT_NEED_MORE) {
        val |= (uint32_t)(p[i] & 0x7F) << (7 * i);
        if ((p[i] & 0x80) == 0) rc = (i > 0 && p[i] == 0) ? UVMQ_EPKT_REMLEN : 0;
        i++;
    }
    if (rc == PKT_NEED_MORE && i == 4) rc = UVMQ_EPKT_REMLEN;
    *v = val;
    *used = i;
    return rc;
}

/* Writes v (at most PKT_VARINT_MAX) as a varint; returns 1-4. */
size_t pkt_varint_write(uint32_t v, uint8_t *out)
{
    size_t n = 0;
    assert(v <= PKT_VARINT_MAX); /* callers size first (put_varint, pkt__props_fit) */
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        out[n++] = (uint8_t)(b | (v > 0 ? 0x80 : 0));
    } while (v > 0 && n < 4);
    return n;
}

/* Returns the bytes a varint of v takes (values past the maximum: 4). */
size_t pkt_varint_size(uint32_t v)
{
    return v < 128u ? 1 : v < 16384u ? 2 : v < 2097152u ? 3 : 4;
}

/* Length of the sequence starting with lead byte c, and the allowed range
 * of its second byte (which excludes overlongs, surrogates and code points
 * past U+10FFFF, RFC 3629 section 4); 0 for a byte that cannot lead. */
static int utf8_lead(uint8_t c, uint8_t *lo, uint8_t *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0) *lo = 0xA0;
        if (c == 0xED) *hi = 0x9F; /* U+D800-DFFF, MQTT-1.5.4-1 */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0) *lo = 0x90;
        if (c == 0xF4) *hi = 0x8F;
        return 4;
    }
    return 0;
}

/* See packets_int.h. One pass, no allocation. */
int pkt__utf8_check(const uint8_t *s, size_t len, int allow_nul)
{
    size_t i = 0;
    int ok = 1;
    while (ok && i < len) {
        uint8_t c = s[i], lo, hi;
        if (c < 0x80) {
            ok = c != 0 || allow_nul; /* MQTT-1.5.4-2 */
            i++;
            continue;
        }
        int n = utf8_lead(c, &lo, &hi);
        ok = n > 0 && len - i >= (size_t)n && s[i + 1] >= lo && s[i + 1] <= hi;
        for (int k = 2; ok && k < n; k++) ok = (s[i + k] & 0xC0) == 0x80;
        i += (size_t)n;
    }
    return ok;
}

/* Returns 1 when s[0..len) is well-formed UTF-8 without U+0000 or
 * surrogates; s may be NULL when len is 0. */
int pkt_utf8_valid(const uint8_t *s, size_t len)
{
    return pkt__utf8_check(s, len, 0);
}

/* See packets_int.h. */
int pkt__has_wildcard(const pkt_bin_t *b)
{
    for (uint32_t i = 0; i < b->len; i++)
        if (b->p[i] == '+' || b->p[i] == '#') return 1;
    return 0;
}

/* ---- framing ---- */

/* See pkt.h. Reads at most 5 bytes of buf before deciding; never reads
 * past len. */
int pkt_frame(const uint8_t *buf, size_t len, uint32_t max_size,
              size_t *frame_len, size_t *need)
{
    uint32_t rem = 0;
    size_t used = 0;
    int rc = PKT_NEED_MORE;
    *frame_len = 0;
    *need = 0;
    if (len >= 2) rc = pkt__varint_decode(buf + 1, len - 1, &rem, &used);
    if (rc == 0) {
        size_t total = 1 + used + (size_t)rem;
        *need = total;
        if (total > max_size) rc = UVMQ_EPKT_TOO_LARGE;
        else if (len < total) rc = PKT_NEED_MORE;
        else *frame_len = total;
    }
    assert(rc != 0 || (*frame_len >= 2 && *frame_len <= len));
    return rc;
}

/* ---- decoding: CONNECT ---- */

/* Protocol name and level must agree: "MQIsdp" 3, "MQTT" 4 or 5. */
static int read_protocol(pkt__rd_t *r, pkt_connect_t *c)
{
    pkt_bin_t name;
    int rc = pkt__rd_bin(r, &name);
    if (rc == 0) rc = pkt__rd_u8(r, &c->version);
    if (rc != 0) return rc;
    int mqtt = name.len == 4 && memcmp(name.p, "MQTT", 4) == 0;
    int isdp = name.len == 6 && memcmp(name.p, "MQIsdp", 6) == 0;
    if (!mqtt && !isdp) return UVMQ_EPKT_PROTO_NAME;
    if (isdp && c->version != PKT_V31) return UVMQ_EPKT_PROTO_LEVEL;
    if (mqtt && c->version != PKT_V311 && c->version != PKT_V5)
        return UVMQ_EPKT_PROTO_LEVEL;
    return 0;
}

/* Connect flags byte (3.1.2.3). */
static int read_connect_flags(pkt__rd_t *r, pkt_connect_t *c)
{
    uint8_t f = 0;
    int rc = pkt__rd_u8(r, &f);
    if (rc != 0) return rc;
    c->has_username = (f >> 7) & 1;
    c->has_password = (f >> 6) & 1;
    c->will_retain = (f >> 5) & 1;
    c->will_qos = (f >> 3) & 3;
    c->will_flag = (f >> 2) & 1;
    c->clean_start = (f >> 1) & 1;
    if (f & 1) return UVMQ_EPKT_CONNECT_FLAGS;            /* MQTT-3.1.2-3 */
    if (c->will_qos == 3) return UVMQ_EPKT_CONNECT_FLAGS; /* MQTT-3.1.2-14 */
    if (!c->will_flag && (c->will_qos || c->will_retain))
        return UVMQ_EPKT_CONNECT_FLAGS;                   /* MQTT-3.1.2-13, -15 */
    if (c->version != PKT_V5 && c->has_password && !c->has_username)
        return UVMQ_EPKT_CONNECT_FLAGS;                   /* MQTT-3.1.2-22 */
    return 0;
}

/* Will properties, topic and payload (3.1.3.2-3.1.3.4). */
static int read_will(pkt__rd_t *r, pkt_connect_t *c, arena_t *a)
{
    int rc = 0;
    assert(c->will_flag);
    if (c->version == PKT_V5)
        rc = pkt__props_decode(r, &c->will_props, PKT__CTX_WILL, a);
    if (rc == 0) rc = pkt__rd_str(r, &c->will_topic);
    if (rc == 0) rc = pkt__rd_bin(r, &c->will_payload);
    if (rc != 0) return rc;
    if (c->will_topic.len == 0 || pkt__has_wildcard(&c->will_topic))
        return UVMQ_EPKT_TOPIC;
    if (c->will_props.payload_format == 1 &&
        !pkt__utf8_check(c->will_payload.p, c->will_payload.len, 1))
        return UVMQ_EPKT_PAYLOAD_FORMAT;
    return 0;
}

static int decode_connect(pkt__rd_t *r, pkt_connect_t *c, arena_t *a)
{
    int rc = read_protocol(r, c);
    if (rc == 0) rc = read_connect_flags(r, c);
    if (rc == 0) rc = pkt__rd_u16(r, &c->keep_alive);
    if (rc == 0 && c->version == PKT_V5)
        rc = pkt__props_decode(r, &c->props, PKT_CONNECT, a);
    if (rc == 0) rc = pkt__rd_str(r, &c->client_id);
    /* MQTT 3.1 (section 3.1, payload): 1 to 23 characters. */
    if (rc == 0 && c->version == PKT_V31 &&
        (c->client_id.len == 0 || c->client_id.len > 23))
        rc = UVMQ_EPKT_CLIENT_ID;
    if (rc == 0 && c->will_flag) rc = read_will(r, c, a);
    if (rc == 0 && c->has_username) rc = pkt__rd_str(r, &c->username);
    if (rc == 0 && c->has_password) rc = pkt__rd_bin(r, &c->password);
    return rc;
}

/* ---- decoding: reason codes ---- */

/* Valid v5 reason codes per packet type (spec v5 3.2.2.2, 3.4.2.1,
 * 3.5.2.1, 3.6.2.1, 3.7.2.1, 3.9.3, 3.11.3, 3.14.2.1, 3.15.2.1). */
static const uint8_t rc_connack[] = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84,
    0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A,
    0x9B, 0x9C, 0x9D, 0x9F};
static const uint8_t rc_puback[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90,
    0x91, 0x97, 0x99};
static const uint8_t rc_pubrel[] = {0x00, 0x92};
static const uint8_t rc_suback[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87,
    0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
static const uint8_t rc_unsuback[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F,
    0x91};
static const uint8_t rc_disconnect[] = {0x00, 0x04, 0x80, 0x81, 0x82, 0x83,
    0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97,
    0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2};
static const uint8_t rc_auth[] = {0x00, 0x18, 0x19};
static const uint8_t rc_suback311[] = {0x00, 0x01, 0x02, 0x80};

#define RC_SET(t) {t, sizeof t}

/* Returns 0 when `code` is valid for packet `type` in `version`, else
 * UVMQ_EPKT_REASON. */
static int check_reason(uint8_t type, uint8_t version, uint8_t code)
{
    static const struct { const uint8_t *set; size_t n; } sets[16] = {
        [PKT_CONNACK] = RC_SET(rc_connack),
        [PKT_PUBACK] = RC_SET(rc_puback), [PKT_PUBREC] = RC_SET(rc_puback),
        [PKT_PUBREL] = RC_SET(rc_pubrel), [PKT_PUBCOMP] = RC_SET(rc_pubrel),
        [PKT_SUBACK] = RC_SET(rc_suback),
        [PKT_UNSUBACK] = RC_SET(rc_unsuback),
        [PKT_DISCONNECT] = RC_SET(rc_disconnect), [PKT_AUTH] = RC_SET(rc_auth),
    };
    assert(type < 16 && sets[type].set != NULL); /* only types with a reason */
    const uint8_t *set = sets[type].set;
    size_t n = sets[type].n;
    if (version != PKT_V5 && type == PKT_SUBACK) {
        set = rc_suback311;
        n = sizeof rc_suback311;
    }
    if (version != PKT_V5 && type == PKT_CONNACK)
        return code <= PKT_RC311_NOT_AUTHORIZED ? 0 : UVMQ_EPKT_REASON;
    return memchr(set, code, n) != NULL ? 0 : UVMQ_EPKT_REASON;
}

/* ---- decoding: the other packets ---- */

static int decode_connack(pkt__rd_t *r, pkt_connack_t *c, uint8_t version,
                          arena_t *a)
{
    uint8_t flags = 0;
    int rc = pkt__rd_u8(r, &flags);
    if (rc == 0) rc = pkt__rd_u8(r, &c->reason);
    if (rc != 0) return rc;
    /* Bits 7-1 of the acknowledge flags are reserved (MQTT-3.2.2-1). */
    if (flags & 0xFE) return UVMQ_EPKT_FLAGS;
    c->session_present = flags & 1;
    rc = check_reason(PKT_CONNACK, version, c->reason);
    if (rc == 0 && version == PKT_V5)
        rc = pkt__props_decode(r, &c->props, PKT_CONNACK, a);
    return rc;
}

/* Topic Name rules (4.7.3, MQTT-3.3.2-2): no wildcards; empty only in v5
 * with a Topic Alias (3.3.2.3.4), and without one a Protocol Error there
 * (3.3.2.1). Whether the alias is valid is for the receiver to say: its
 * range is the receiver's Topic Alias Maximum (0 included: 0x94). */
static int check_topic_name(const pkt_publish_t *p, uint8_t version)
{
    if (pkt__has_wildcard(&p->topic)) return UVMQ_EPKT_TOPIC;
    if (p->topic.len == 0 && version != PKT_V5) return UVMQ_EPKT_TOPIC;
    if (p->topic.len == 0 && !PKT_PROP_HAS(&p->props, PROP_TOPIC_ALIAS))
        return UVMQ_EPKT_NO_TOPIC;
    return 0;
}

static int decode_publish(pkt__rd_t *r, pkt_publish_t *p, uint8_t flags,
                          uint8_t version, arena_t *a)
{
    p->dup = (flags >> 3) & 1;
    p->qos = (flags >> 1) & 3;
    p->retain = flags & 1;
    assert(p->qos <= 2); /* check_flags refused QoS 3 before the body */
    int rc = pkt__rd_str(r, &p->topic);
    if (rc == 0 && p->qos > 0) rc = pkt__rd_u16(r, &p->packet_id);
    if (rc == 0 && p->qos > 0 && p->packet_id == 0)
        rc = UVMQ_EPKT_PACKET_ID; /* MQTT-2.2.1-3 */
    if (rc == 0 && version == PKT_V5)
        rc = pkt__props_decode(r, &p->props, PKT_PUBLISH, a);
    if (rc == 0) rc = check_topic_name(p, version);
    if (rc != 0) return rc;
    p->payload.p = r->p;
    p->payload.len = (uint32_t)pkt__rd_left(r);
    r->p = r->end;
    if (p->props.payload_format == 1 &&
        !pkt__utf8_check(p->payload.p, p->payload.len, 1))
        rc = UVMQ_EPKT_PAYLOAD_FORMAT; /* 3.3.2.3.2 */
    return rc;
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP; v5 short forms per 3.4.2.1. */
static int decode_ack(pkt__rd_t *r, pkt_ack_t *k, uint8_t type,
                      uint8_t version, arena_t *a)
{
    int rc = pkt__rd_u16(r, &k->packet_id);
    if (rc == 0 && k->packet_id == 0) rc = UVMQ_EPKT_PACKET_ID;
    if (rc != 0 || version != PKT_V5 || pkt__rd_left(r) == 0) return rc;
    rc = pkt__rd_u8(r, &k->reason);
    if (rc == 0) rc = check_reason(type, version, k->reason);
    if (rc == 0 && pkt__rd_left(r) > 0)
        rc = pkt__props_decode(r, &k->props, type, a);
    return rc;
}

/* Packet id (non-zero, MQTT-2.2.1-3) and v5 properties: the common start
 * of SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK. */
static int read_id_props(pkt__rd_t *r, uint16_t *id, pkt_props_t *props,
                         uint8_t type, uint8_t version, arena_t *a)
{
    int rc = pkt__rd_u16(r, id);
    if (rc == 0 && *id == 0) rc = UVMQ_EPKT_PACKET_ID;
    if (rc == 0 && version == PKT_V5)
        rc = pkt__props_decode(r, props, type, a);
    return rc;
}

/* Subscription options (3.8.3.1, MQTT-3.8.3-5). */
static int check_subopts(uint8_t o, uint8_t version)
{
    if (version != PKT_V5 && (o & ~PKT_SUBOPT_QOS_MASK)) return UVMQ_EPKT_SUBOPTS;
    if (o & 0xC0) return UVMQ_EPKT_SUBOPTS;
    if ((o & PKT_SUBOPT_RH_MASK) >> PKT_SUBOPT_RH_SHIFT == 3)
        return UVMQ_EPKT_SUBOPTS;
    if ((o & PKT_SUBOPT_QOS_MASK) == 3) return UVMQ_EPKT_QOS;
    return 0;
}

/* One topic filter (and its options byte when opts != NULL). A filter
 * must be non-empty UTF-8 (MQTT-4.7.3-1); wildcard placement is the
 * broker's business (it answers with a failure reason code). */
static int read_filter(pkt__rd_t *r, pkt_bin_t *f, uint8_t *opts,
                       uint8_t version)
{
    int rc = pkt__rd_str(r, f);
    if (rc == 0 && f->len == 0) rc = UVMQ_EPKT_TOPIC;
    if (rc == 0 && opts != NULL) rc = pkt__rd_u8(r, opts);
    if (rc == 0 && opts != NULL) rc = check_subopts(*opts, version);
    return rc;
}

/* Validates and counts the filters left in r without consuming them. */
static int count_filters(pkt__rd_t r, int with_opts, uint8_t version,
                         uint32_t *n)
{
    pkt_bin_t f;
    uint8_t o = 0;
    int rc = 0;
    *n = 0;
    while (rc == 0 && pkt__rd_left(&r) > 0) {
        rc = read_filter(&r, &f, with_opts ? &o : NULL, version);
        (*n)++;
    }
    if (rc == 0 && *n == 0) rc = UVMQ_EPKT_EMPTY; /* MQTT-3.8.3-3, -3.10.3-2 */
    return rc;
}

static int decode_subscribe(pkt__rd_t *r, pkt_subscribe_t *s,
                            uint8_t version, arena_t *a)
{
    int rc = read_id_props(r, &s->packet_id, &s->props, PKT_SUBSCRIBE,
                           version, a);
    if (rc == 0) rc = count_filters(*r, 1, version, &s->n_subs);
    if (rc != 0) return rc;
    s->subs = a ? arena_alloc(a, s->n_subs * sizeof *s->subs) : NULL;
    if (s->subs == NULL) return UVMQ_ENOMEM;
    for (uint32_t i = 0; i < s->n_subs; i++) {
        /* count_filters validated these very bytes: no read can fail. */
        rc = read_filter(r, &s->subs[i].filter, &s->subs[i].options, version);
        assert(rc == 0);
    }
    assert(pkt__rd_left(r) == 0); /* count_filters stopped at the end */
    return 0;
}

static int decode_unsubscribe(pkt__rd_t *r, pkt_unsubscribe_t *u,
                              uint8_t version, arena_t *a)
{
    int rc = read_id_props(r, &u->packet_id, &u->props, PKT_UNSUBSCRIBE,
                           version, a);
    if (rc == 0) rc = count_filters(*r, 0, version, &u->n_filters);
    if (rc != 0) return rc;
    u->filters = a ? arena_alloc(a, u->n_filters * sizeof *u->filters) : NULL;
    if (u->filters == NULL) return UVMQ_ENOMEM;
    for (uint32_t i = 0; i < u->n_filters; i++) {
        rc = read_filter(r, &u->filters[i], NULL, version); /* as above */
        assert(rc == 0);
    }
    assert(pkt__rd_left(r) == 0);
    return 0;
}

/* SUBACK and UNSUBACK; the v3 UNSUBACK is the packet id alone. */
static int decode_suback(pkt__rd_t *r, pkt_suback_t *s, uint8_t type,
                         uint8_t version, arena_t *a)
{
    int rc = read_id_props(r, &s->packet_id, &s->props, type, version, a);
    if (rc != 0 || (type == PKT_UNSUBACK && version != PKT_V5)) return rc;
    s->n_reasons = (uint32_t)pkt__rd_left(r);
    if (s->n_reasons == 0) return UVMQ_EPKT_EMPTY;
    s->reasons = a ? arena_alloc(a, s->n_reasons) : NULL;
    if (s->reasons == NULL) return UVMQ_ENOMEM;
    memcpy(s->reasons, r->p, s->n_reasons);
    r->p = r->end;
    for (uint32_t i = 0; rc == 0 && i < s->n_reasons; i++)
        rc = check_reason(type, version, s->reasons[i]);
    return rc;
}

/* DISCONNECT and AUTH: v5 remaining length 0 is reason 0, 1 is reason
 * without properties (3.14.2.1, 3.15.2.1); v3 DISCONNECT is empty. */
static int decode_reason(pkt__rd_t *r, pkt_reason_t *d, uint8_t type,
                         uint8_t version, arena_t *a)
{
    int rc = 0;
    if (version != PKT_V5 || pkt__rd_left(r) == 0) return 0;
    rc = pkt__rd_u8(r, &d->reason);
    if (rc == 0) rc = check_reason(type, version, d->reason);
    if (rc == 0 && pkt__rd_left(r) > 0)
        rc = pkt__props_decode(r, &d->props, type, a);
    return rc;
}

/* ---- decoding: dispatch ---- */

/* Fixed header flag rules (2.1.3, MQTT-2.1.3-1, MQTT-3.3.1-2, -4). */
static int check_flags(uint8_t type, uint8_t flags)
{
    if (type == PKT_PUBLISH) {
        if (((flags >> 1) & 3) == 3) return UVMQ_EPKT_QOS;
        if ((flags & 0x8) && ((flags >> 1) & 3) == 0) return UVMQ_EPKT_FLAGS;
        return 0;
    }
    if (type == PKT_PUBREL || type == PKT_SUBSCRIBE || type == PKT_UNSUBSCRIBE)
        return flags == 0x2 ? 0 : UVMQ_EPKT_FLAGS;
    return flags == 0 ? 0 : UVMQ_EPKT_FLAGS;
}

/* Bytes of pkt_t's union that each packet type's decoder fills: only
 * those are zeroed (the CONNECT member, with two property blocks, is twice
 * a PUBLISH's, 832 bytes against 416 on x86-64, and pkt_decode runs for
 * every packet read). */
static const uint16_t body_size[16] = {
    [PKT_CONNECT] = sizeof(pkt_connect_t),
    [PKT_CONNACK] = sizeof(pkt_connack_t),
    [PKT_PUBLISH] = sizeof(pkt_publish_t),
    [PKT_PUBACK] = sizeof(pkt_ack_t),
    [PKT_PUBREC] = sizeof(pkt_ack_t),
    [PKT_PUBREL] = sizeof(pkt_ack_t),
    [PKT_PUBCOMP] = sizeof(pkt_ack_t),
    [PKT_SUBSCRIBE] = sizeof(pkt_subscribe_t),
    [PKT_SUBACK] = sizeof(pkt_suback_t),
    [PKT_UNSUBSCRIBE] = sizeof(pkt_unsubscribe_t),
    [PKT_UNSUBACK] = sizeof(pkt_suback_t),
    [PKT_DISCONNECT] = sizeof(pkt_reason_t),
    [PKT_AUTH] = sizeof(pkt_reason_t),
};

static int decode_body(pkt_t *out, pkt__rd_t *r, uint8_t version, arena_t *a)
{
    /* pkt_decode refused type 0, a version out of range, AUTH before v5
     * and every flag violation before calling this. */
    assert(out->type >= PKT_CONNECT && out->type <= PKT_AUTH);
    assert(version >= PKT_V31 && version <= PKT_V5);
    memset(&out->u, 0, body_size[out->type & 0x0F]);
    switch (out->type) {
    case PKT_CONNECT: return decode_connect(r, &out->u.connect, a);
    case PKT_CONNACK: return decode_connack(r, &out->u.connack, version, a);
    case PKT_PUBLISH:
        return decode_publish(r, &out->u.publish, out->flags, version, a);
    case PKT_PUBACK: case PKT_PUBREC: case PKT_PUBREL: case PKT_PUBCOMP:
        return decode_ack(r, &out->u.ack, out->type, version, a);
    case PKT_SUBSCRIBE: return decode_subscribe(r, &out->u.subscribe, version, a);
    case PKT_SUBACK: case PKT_UNSUBACK:
        return decode_suback(r, &out->u.suback, out->type, version, a);
    case PKT_UNSUBSCRIBE:
        return decode_unsubscribe(r, &out->u.unsubscribe, version, a);
    case PKT_DISCONNECT: case PKT_AUTH:
        return decode_reason(r, &out->u.disconnect, out->type, version, a);
    default: return 0; /* PINGREQ, PINGRESP: empty body */
    }
}

/* See pkt.h. Checks the fixed header (type, flags, remaining length equal
 * to len), decodes the body and rejects bytes left after its last field. */
int pkt_decode(pkt_t *out, uint8_t version, const uint8_t *buf, size_t len,
               arena_t *a)
{
    uint32_t rem = 0;
    size_t used = 0;
    int rc;
    assert(buf != NULL || len == 0);
    if (len < 2) return UVMQ_EPKT_SHORT;
    out->type = buf[0] >> 4;
    out->flags = buf[0] & 0x0F;
    rc = pkt__varint_decode(buf + 1, len - 1, &rem, &used);
    if (rc == PKT_NEED_MORE) return UVMQ_EPKT_SHORT;
    if (rc != 0) return rc;
    if (out->type == 0) return UVMQ_EPKT_TYPE;
    if (out->type == PKT_CONNECT) version = PKT_V5; /* until the level is read */
    else if (version < PKT_V31 || version > PKT_V5) return UVMQ_EPKT_VERSION;
    if (out->type == PKT_AUTH && version != PKT_V5) return UVMQ_EPKT_VERSION;
    rc = check_flags(out->type, out->flags);
    if (rc != 0) return rc;
    if (len - 1 - used < rem) return UVMQ_EPKT_SHORT;
    if (len - 1 - used > rem) return UVMQ_EPKT_TRAILING;
    pkt__rd_t r = {buf + 1 + used, buf + len};
    rc = decode_body(out, &r, version, a);
    assert(r.p <= r.end); /* every read was bounds-checked */
    if (rc == 0 && pkt__rd_left(&r) > 0) rc = UVMQ_EPKT_TRAILING;
    assert(rc <= 0); /* PKT_NEED_MORE never leaves a whole packet */
    return rc;
}

/* ---- helpers ---- */

/* Decode error to v5 reason code. Where the spec names the class of a
 * violation we follow it; otherwise "Malformed" is for bytes that cannot
 * be parsed and "Protocol Error" for well-formed but forbidden content.
 *
 *   error                  reason  why
 *   REMLEN, TYPE, FLAGS,   0x81    malformed (1.5.5, 2.1.3-1, 1.5.4-1,
 *   SHORT, TRAILING, UTF8,         3.3.1-4, MQTT-3.8.3-5, 3.1.2-3/-14)
 *   QOS, SUBOPTS,
 *   CONNECT_FLAGS
 *   PROP_ID, PROP_PLACE    0x81    2.2.2.2: an identifier not valid for its
 *                                  packet type is a Malformed Packet
 *   PROP_DUP, PROP_VALUE   0x82    each property says "It is a Protocol
 *                                  Error to include it more than once / a
 *                                  value of 0 / other than 0 or 1"
 *   EMPTY                  0x82    3.8.3, 3.10.3: no payload = Protocol Error
 *   NO_TOPIC               0x82    3.3.2.1: v5 empty topic, no Topic Alias
 *   PACKET_ID, REASON,     0x82    well-formed but not allowed
 *   VERSION
 *   TOPIC                  0x90    Topic Name invalid
 *   TOO_LARGE              0x95    Packet too large
 *   PROTO_NAME, _LEVEL     0x84    Unsupported Protocol Version (3.1.2.1/2)
 *   CLIENT_ID              0x85    Client Identifier not valid
 *   PAYLOAD_FORMAT         0x99    Payload format invalid
 *   UVMQ_ENOMEM              0x97    Quota exceeded: the arena limit is a
 *                                  per-packet quota the peer ran into
 *   anything else          0x80    Unspecified error
 */
uint8_t pkt_err_reason(int err)
{
    assert(err < 0);
    switch (err) {
    case UVMQ_EPKT_REMLEN: case UVMQ_EPKT_TYPE: case UVMQ_EPKT_FLAGS:
    case UVMQ_EPKT_SHORT: case UVMQ_EPKT_TRAILING: case UVMQ_EPKT_UTF8:
    case UVMQ_EPKT_QOS: case UVMQ_EPKT_SUBOPTS: case UVMQ_EPKT_CONNECT_FLAGS:
    case UVMQ_EPKT_PROP_ID: case UVMQ_EPKT_PROP_PLACE:
        return PKT_RC_MALFORMED;
    case UVMQ_EPKT_PROP_DUP: case UVMQ_EPKT_PROP_VALUE: case UVMQ_EPKT_EMPTY:
    case UVMQ_EPKT_PACKET_ID: case UVMQ_EPKT_REASON: case UVMQ_EPKT_VERSION:
    case UVMQ_EPKT_NO_TOPIC:
        return PKT_RC_PROTOCOL_ERROR;
    case UVMQ_EPKT_TOPIC: return PKT_RC_TOPIC_NAME_INVALID;
    case UVMQ_EPKT_TOO_LARGE: return PKT_RC_PACKET_TOO_LARGE;
    case UVMQ_EPKT_PROTO_NAME: case UVMQ_EPKT_PROTO_LEVEL:
        return PKT_RC_UNSUPPORTED_VERSION;
    case UVMQ_EPKT_CLIENT_ID: return PKT_RC_CLIENT_ID_INVALID;
    case UVMQ_EPKT_PAYLOAD_FORMAT: return PKT_RC_PAYLOAD_FORMAT_INVALID;
    case UVMQ_ENOMEM: return PKT_RC_QUOTA_EXCEEDED;
    default: return PKT_RC_UNSPECIFIED;
    }
}

/* Maps a v5 CONNACK reason onto a v3.1.1 return code: the six codes that
 * have an equivalent map to it, authentication and ban failures to "not
 * authorized", everything else to "server unavailable". */
uint8_t pkt_connack_rc311(uint8_t v5_reason)
{
    switch (v5_reason) {
    case PKT_RC_SUCCESS: return PKT_RC311_ACCEPTED;
    case PKT_RC_UNSUPPORTED_VERSION: return PKT_RC311_BAD_VERSION;
    case PKT_RC_CLIENT_ID_INVALID: return PKT_RC311_ID_REJECTED;
    case PKT_RC_BAD_USER_PASS: return PKT_RC311_BAD_USER_PASS;
    case PKT_RC_NOT_AUTHORIZED: case PKT_RC_BANNED:
    case PKT_RC_BAD_AUTH_METHOD:
        return PKT_RC311_NOT_AUTHORIZED;
    default: return PKT_RC311_SERVER_UNAVAILABLE;
    }
}

/* Returns a static name for a packet type, "RESERVED" for 0 or others. */
const char *pkt_type_name(uint8_t type)
{
    static const char *const names[16] = {
        "RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC",
        "PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE",
        "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH",
    };
    return type < 16 ? names[type] : "RESERVED";
}

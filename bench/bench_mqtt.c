/*
 * bench_mqtt.c - minimal MQTT 3.1.1/5.0 encoder and parser for uvmq-bench.
 *
 * Every packet is a fixed header (type nibble, flags nibble, Remaining
 * Length as a 1-4 byte variable byte integer) followed by Remaining Length
 * bytes. The parser frames first (so a partial packet is BENCH_MQTT_NEED_MORE
 * whatever the split) and then decodes inside the frame with a bounds-
 * checked reader, so no field can run past the packet.
 */
#include "bench/bench_mqtt.h"

#include <string.h>

#include "common/err.h"

/* Bounds-checked cursor over one packet body. */
typedef struct rd_s {
    const uint8_t *p;
    const uint8_t *end;
    int err; /* first error, sticky */
} rd_t;

/* v5 property value types, for skipping the ones we do not use. */
enum { P_BYTE = 1, P_U16, P_U32, P_VARINT, P_STR, P_BIN, P_PAIR };

/* ---- writing ---------------------------------------------------------- */

static uint8_t *put_varint(uint8_t *p, uint32_t v)
{
    do {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        *p++ = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    return p;
}

static size_t varint_len(uint32_t v)
{
    return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

static uint8_t *put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

static uint8_t *put_str(uint8_t *p, const void *s, size_t n)
{
    p = put_u16(p, (uint16_t)n);
    memcpy(p, s, n);
    return p + n;
}

/* Writes the fixed header; returns UVMQ_ELIMIT if the whole packet won't fit. */
static int put_fixed(uint8_t **pp, size_t cap, uint8_t first, size_t remlen)
{
    if (remlen > 268435455u || 1 + varint_len((uint32_t)remlen) + remlen > cap)
        return UVMQ_ELIMIT;
    **pp = first;
    *pp = put_varint(*pp + 1, (uint32_t)remlen);
    return 0;
}

/* Bytes of an optional two-byte-length string: 0 when absent. */
static size_t opt_str_len(const char *s)
{
    return s ? 2 + strlen(s) : 0;
}

/* An upper bound of the CONNECT c: fixed header, variable header and the
 * properties at their largest, then the payload's strings. */
size_t bench_mqtt_connect_cap(const bench_connect_t *c)
{
    return BENCH_MQTT_MAX_FIXED + 10 + 6 + 2 + strlen(c->client_id) + opt_str_len(c->user) +
           opt_str_len(c->password);
}

/* Encodes CONNECT: protocol name, level, flags, keep-alive, [properties],
 * client id, [user name], [password]. No will. */
int bench_mqtt_encode_connect(uint8_t *buf, size_t cap, const bench_connect_t *c)
{
    size_t idlen = strlen(c->client_id);
    size_t ulen = c->user ? strlen(c->user) : 0, plen = c->password ? strlen(c->password) : 0;
    int v5 = c->proto == BENCH_MQTT_V5;
    size_t props = v5 && c->session_expiry ? 5 : 0;
    size_t remlen = 10 + (v5 ? varint_len((uint32_t)props) + props : 0) + 2 + idlen +
                    opt_str_len(c->user) + opt_str_len(c->password);
    uint8_t flags = c->clean ? 0x02 : 0x00; /* MQTT-3.1.2-3: reserved bit 0 stays 0 */
    uint8_t *p = buf;

    if (c->user) flags |= 0x80;
    if (c->password) flags |= 0x40;
    if (idlen > 65535 || ulen > 65535 || plen > 65535 ||
        put_fixed(&p, cap, BENCH_CONNECT << 4, remlen) != 0)
        return UVMQ_ELIMIT;
    p = put_str(p, "MQTT", 4);
    *p++ = (uint8_t)c->proto;
    *p++ = flags;
    p = put_u16(p, c->keepalive);
    if (v5) {
        p = put_varint(p, (uint32_t)props);
        if (props) {
            *p++ = 0x11; /* Session Expiry Interval, four bytes */
            p = put_u16(put_u16(p, (uint16_t)(c->session_expiry >> 16)),
                        (uint16_t)c->session_expiry);
        }
    }
    p = put_str(p, c->client_id, idlen);
    if (c->user) p = put_str(p, c->user, ulen); /* MQTT-3.1.3-1: id, will, user, password */
    if (c->password) p = put_str(p, c->password, plen);
    return (int)(p - buf);
}

/* Encodes a SUBSCRIBE with one filter at the given maximum QoS. */
int bench_mqtt_encode_subscribe(uint8_t *buf, size_t cap, int proto, uint16_t pid,
                                const char *filter, int qos)
{
    size_t flen = strlen(filter);
    size_t remlen = 2 + (proto == BENCH_MQTT_V5 ? 1 : 0) + 2 + flen + 1;
    uint8_t *p = buf;

    /* MQTT-3.8.1-1: SUBSCRIBE's fixed-header flags are 0010. */
    if (flen > 65535 || put_fixed(&p, cap, BENCH_SUBSCRIBE << 4 | 0x2, remlen) != 0)
        return UVMQ_ELIMIT;
    p = put_u16(p, pid);
    if (proto == BENCH_MQTT_V5) *p++ = 0; /* no properties */
    p = put_str(p, filter, flen);
    *p++ = (uint8_t)qos; /* v5: no-local, RAP and retain handling all 0 */
    return (int)(p - buf);
}

/* Returns the Remaining Length of a PUBLISH. */
static size_t publish_remlen(int proto, int qos, size_t topic_len, size_t payload_len)
{
    return 2 + topic_len + (qos ? 2 : 0) + (proto == BENCH_MQTT_V5 ? 1 : 0) + payload_len;
}

/* Returns the total encoded length of a PUBLISH. */
size_t bench_mqtt_publish_len(int proto, int qos, size_t topic_len, size_t payload_len)
{
    size_t remlen = publish_remlen(proto, qos, topic_len, payload_len);
    return 1 + varint_len((uint32_t)remlen) + remlen;
}

/* Encodes a PUBLISH (no DUP, no RETAIN); pid is ignored at QoS 0. */
int bench_mqtt_encode_publish(uint8_t *buf, size_t cap, int proto, int qos,
                              uint16_t pid, const char *topic, size_t topic_len,
                              const uint8_t *payload, size_t payload_len)
{
    size_t remlen = publish_remlen(proto, qos, topic_len, payload_len);
    uint8_t *p = buf;

    if (topic_len > 65535 ||
        put_fixed(&p, cap, (uint8_t)(BENCH_PUBLISH << 4 | qos << 1), remlen) != 0)
        return UVMQ_ELIMIT;
    p = put_str(p, topic, topic_len);
    if (qos) p = put_u16(p, pid);
    if (proto == BENCH_MQTT_V5) *p++ = 0; /* no properties */
    memcpy(p, payload, payload_len);
    return (int)(p + payload_len - buf);
}

/* Encodes PUBACK/PUBREC/PUBREL/PUBCOMP. In v5 the reason code and property
 * length may be left out when the reason is Success (MQTT 5.0 3.4.2.1), so
 * both versions use the same 4 bytes. */
int bench_mqtt_encode_ack(uint8_t *buf, size_t cap, int type, uint16_t pid)
{
    uint8_t *p = buf;
    /* MQTT-3.6.1-1: PUBREL's fixed-header flags are 0010. */
    uint8_t first = (uint8_t)(type << 4 | (type == BENCH_PUBREL ? 0x2 : 0));

    if (put_fixed(&p, cap, first, 2) != 0) return UVMQ_ELIMIT;
    put_u16(p, pid);
    return 4;
}

/* Encodes a packet with an empty body: PINGREQ, or DISCONNECT whose v5
 * reason code may be left out for Normal disconnection. */
int bench_mqtt_encode_empty(uint8_t *buf, size_t cap, int type)
{
    uint8_t *p = buf;

    if (put_fixed(&p, cap, (uint8_t)(type << 4), 0) != 0) return UVMQ_ELIMIT;
    return 2;
}

/* ---- reading ---------------------------------------------------------- */

static void rd_fail(rd_t *r, int err)
{
    if (!r->err) r->err = err;
    r->p = r->end;
}

static uint8_t rd_u8(rd_t *r)
{
    if (r->p >= r->end) {
        rd_fail(r, UVMQ_EPKT_SHORT);
        return 0;
    }
    return *r->p++;
}

static uint16_t rd_u16(rd_t *r)
{
    uint16_t hi = rd_u8(r);
    return (uint16_t)(hi << 8 | rd_u8(r));
}

static uint32_t rd_u32(rd_t *r)
{
    uint32_t hi = rd_u16(r);
    return hi << 16 | rd_u16(r);
}

static uint32_t rd_varint(rd_t *r)
{
    uint32_t v = 0;
    int shift;

    for (shift = 0; shift < 28; shift += 7) {
        uint8_t b = rd_u8(r);
        v |= (uint32_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return v;
    }
    rd_fail(r, UVMQ_EPKT_REMLEN); /* more than four bytes */
    return 0;
}

/* Reads n raw bytes; returns a pointer to them or NULL after an error. */
static const uint8_t *rd_bytes(rd_t *r, size_t n)
{
    const uint8_t *p = r->p;
    if ((size_t)(r->end - r->p) < n) {
        rd_fail(r, UVMQ_EPKT_SHORT);
        return NULL;
    }
    r->p += n;
    return p;
}

/* Reads a two-byte-length string or binary field. */
static const uint8_t *rd_str(rd_t *r, uint16_t *len)
{
    *len = rd_u16(r);
    return rd_bytes(r, *len);
}

static int prop_type(uint8_t id)
{
    switch (id) {
    case 0x01: case 0x17: case 0x19: case 0x24: case 0x25:
    case 0x28: case 0x29: case 0x2A:
        return P_BYTE;
    case 0x13: case 0x21: case 0x22: case 0x23:
        return P_U16;
    case 0x02: case 0x11: case 0x18: case 0x27:
        return P_U32;
    case 0x0B:
        return P_VARINT;
    case 0x03: case 0x08: case 0x12: case 0x15: case 0x1A: case 0x1C: case 0x1F:
        return P_STR;
    case 0x09: case 0x16:
        return P_BIN;
    case 0x26:
        return P_PAIR;
    default:
        return 0;
    }
}

/* Reads one property value and stores the few this tool uses in *out. */
static void read_prop(rd_t *r, bench_pkt_t *out)
{
    uint8_t id = (uint8_t)rd_varint(r);
    uint16_t n;
    uint32_t v = 0;

    switch (prop_type(id)) {
    case P_BYTE: v = rd_u8(r); break;
    case P_U16: v = rd_u16(r); break;
    case P_U32: v = rd_u32(r); break;
    case P_VARINT: v = rd_varint(r); break;
    case P_STR: case P_BIN: rd_str(r, &n); break;
    case P_PAIR: rd_str(r, &n); rd_str(r, &n); break;
    default: rd_fail(r, UVMQ_EPKT_PROP_ID); break;
    }
    if (id == 0x21) out->receive_max = (uint16_t)v;
    if (id == 0x13) out->keepalive = (uint16_t)v;
    if (id == 0x11) out->session_expiry = v;
}

/* Reads a v5 property block (length, then properties) inside r. */
static void read_props(rd_t *r, bench_pkt_t *out)
{
    uint32_t len = rd_varint(r);
    rd_t sub;

    sub.p = rd_bytes(r, len);
    if (!sub.p) return;
    sub.end = sub.p + len;
    sub.err = 0;
    while (sub.p < sub.end) read_prop(&sub, out);
    if (sub.err) rd_fail(r, sub.err);
}

static void parse_connect(rd_t *r, bench_pkt_t *out)
{
    uint16_t n;
    const uint8_t *name = rd_str(r, &n);

    if (r->err) return;
    if (n != 4 || memcmp(name, "MQTT", 4) != 0) {
        rd_fail(r, UVMQ_EPKT_PROTO_NAME);
        return;
    }
    out->proto = rd_u8(r);
    out->connect_flags = rd_u8(r);
    out->keepalive = rd_u16(r);
    if (out->proto == BENCH_MQTT_V5) read_props(r, out);
    out->topic = rd_str(r, &out->topic_len); /* the client identifier */
    /* A will is never sent by this tool; bit 0 is reserved (MQTT-3.1.2-3). */
    if (out->connect_flags & 0x3d) rd_fail(r, UVMQ_EPKT_CONNECT_FLAGS);
    if (out->connect_flags & 0x80) out->user = rd_str(r, &out->user_len);
    if (out->connect_flags & 0x40) out->password = rd_str(r, &out->password_len);
}

static void parse_connack(rd_t *r, int proto, bench_pkt_t *out)
{
    out->session_present = rd_u8(r) & 1;
    out->reason = rd_u8(r);
    if (proto == BENCH_MQTT_V5) read_props(r, out);
}

static void parse_publish(rd_t *r, int proto, bench_pkt_t *out)
{
    out->qos = (out->flags >> 1) & 3;
    if (out->qos == 3) { /* MQTT-3.3.1-4 */
        rd_fail(r, UVMQ_EPKT_QOS);
        return;
    }
    out->topic = rd_str(r, &out->topic_len);
    if (out->qos) out->pid = rd_u16(r);
    if (proto == BENCH_MQTT_V5) read_props(r, out);
    if (out->qos && out->pid == 0 && !r->err) rd_fail(r, UVMQ_EPKT_PACKET_ID);
    out->payload = r->p;
    out->payload_len = (uint32_t)(r->end - r->p);
    r->p = r->end;
}

/* PUBACK/PUBREC/PUBREL/PUBCOMP, and v5 reason code + properties if present. */
static void parse_ack(rd_t *r, int proto, bench_pkt_t *out)
{
    out->pid = rd_u16(r);
    if (proto == BENCH_MQTT_V5 && r->p < r->end) out->reason = rd_u8(r);
    if (proto == BENCH_MQTT_V5 && r->p < r->end) read_props(r, out);
    if (out->pid == 0 && !r->err) rd_fail(r, UVMQ_EPKT_PACKET_ID); /* MQTT-2.3.1-1 */
}

static void parse_subscribe(rd_t *r, int proto, bench_pkt_t *out)
{
    out->pid = rd_u16(r);
    if (proto == BENCH_MQTT_V5) read_props(r, out);
    out->topic = rd_str(r, &out->topic_len);
    out->qos = rd_u8(r);
    r->p = r->end; /* further filters are not decoded */
}

static void parse_suback(rd_t *r, int proto, bench_pkt_t *out)
{
    out->pid = rd_u16(r);
    if (proto == BENCH_MQTT_V5) read_props(r, out);
    if (r->p >= r->end && !r->err) rd_fail(r, UVMQ_EPKT_EMPTY);
    if (r->err) return;
    out->reason = *r->p;
    out->nreasons = (uint16_t)(r->end - r->p);
    r->p = r->end;
}

static void parse_disconnect(rd_t *r, int proto, bench_pkt_t *out)
{
    if (proto == BENCH_MQTT_V5 && r->p < r->end) out->reason = rd_u8(r);
    if (proto == BENCH_MQTT_V5 && r->p < r->end) read_props(r, out);
}

/* Fixed-header flags every type but PUBLISH must carry (MQTT-2.2.2-1). */
static int flags_ok(uint8_t type, uint8_t flags)
{
    if (type == BENCH_PUBLISH) return 1;
    if (type == BENCH_PUBREL || type == BENCH_SUBSCRIBE || type == BENCH_UNSUBSCRIBE)
        return flags == 0x2;
    return flags == 0;
}

/* Decodes the body r of a packet whose fixed header is already in out. */
static void parse_body(rd_t *r, int proto, bench_pkt_t *out)
{
    switch (out->type) {
    case BENCH_CONNECT: parse_connect(r, out); break;
    case BENCH_CONNACK: parse_connack(r, proto, out); break;
    case BENCH_PUBLISH: parse_publish(r, proto, out); break;
    case BENCH_PUBACK: case BENCH_PUBREC: case BENCH_PUBREL: case BENCH_PUBCOMP:
        parse_ack(r, proto, out);
        break;
    case BENCH_SUBSCRIBE: parse_subscribe(r, proto, out); break;
    case BENCH_SUBACK: parse_suback(r, proto, out); break;
    case BENCH_DISCONNECT: parse_disconnect(r, proto, out); break;
    case BENCH_PINGREQ: case BENCH_PINGRESP: break;
    default: rd_fail(r, UVMQ_EPKT_TYPE); break; /* not used by this tool */
    }
}

/* Frames and decodes one packet; see the header for the contract. */
int bench_mqtt_parse(const uint8_t *buf, size_t len, int proto, bench_pkt_t *out)
{
    uint32_t remlen = 0;
    size_t i;
    rd_t r;

    for (i = 1; i <= 4; i++) { /* Remaining Length: at most four bytes */
        if (i >= len) return BENCH_MQTT_NEED_MORE;
        remlen |= (uint32_t)(buf[i] & 0x7f) << (7 * (i - 1));
        if (!(buf[i] & 0x80)) break;
    }
    if (i > 4) return UVMQ_EPKT_REMLEN;
    if (len - (i + 1) < remlen) return BENCH_MQTT_NEED_MORE;
    memset(out, 0, sizeof *out);
    out->type = buf[0] >> 4;
    out->flags = buf[0] & 0x0f;
    if (out->type == 0) return UVMQ_EPKT_TYPE;
    if (!flags_ok(out->type, out->flags)) return UVMQ_EPKT_FLAGS;
    r.p = buf + i + 1;
    r.end = r.p + remlen;
    r.err = 0;
    parse_body(&r, proto, out);
    if (!r.err && r.p != r.end) r.err = UVMQ_EPKT_TRAILING;
    return r.err ? r.err : (int)(i + 1 + remlen);
}

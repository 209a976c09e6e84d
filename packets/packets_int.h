/*
 * packets_int.h - internals shared by pkt.c, props.c and pkt_encode.c.
 *
 * A bounds-checked reader over one packet's body (every read either fits or
 * fails with UVMQ_EPKT_SHORT), the variable byte integer decoder, the UTF-8
 * checker, and the v5 property decoder. Not part of the public contract.
 */
#ifndef UVMQ_PACKETS_INT_H
#define UVMQ_PACKETS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "pkt.h"

/* Property context for the Will Properties of a CONNECT (packet types use
 * their own number, 1-15, so 0 is free). */
#define PKT__CTX_WILL 0

/* Cursor over bytes [p, end) of one packet. */
typedef struct pkt__rd_s {
    const uint8_t *p;
    const uint8_t *end;
} pkt__rd_t;

/* Decodes a variable byte integer from p[0..len). Returns 0 and sets *v and
 * *used, PKT_NEED_MORE when len ends inside it, or UVMQ_EPKT_REMLEN for a
 * fifth byte or a non-minimal encoding (MQTT-1.5.5-1). */
int pkt__varint_decode(const uint8_t *p, size_t len, uint32_t *v,
                       size_t *used);

/* 1 when s[0..len) is well-formed UTF-8 without surrogates or overlongs;
 * U+0000 is accepted only when allow_nul is set (payloads, not strings). */
int pkt__utf8_check(const uint8_t *s, size_t len, int allow_nul);

/* 1 when the slice holds '+' or '#'. */
int pkt__has_wildcard(const pkt_bin_t *b);

/* Decodes a v5 property block (length prefix included) at r into *props
 * for packet context ctx (a pkt_type, or PKT__CTX_WILL), validating
 * identifiers, placement, repetition and values; user properties go into
 * arena memory. Returns 0 or a negative UVMQ_EPKT_* / UVMQ_ENOMEM. */
int pkt__props_decode(pkt__rd_t *r, pkt_props_t *props, uint8_t ctx,
                      arena_t *a);

/* 1 when every present property of *props can be encoded (string lengths,
 * subscription identifier count and range), 0 otherwise. */
int pkt__props_fit(const pkt_props_t *props);

static inline size_t pkt__rd_left(const pkt__rd_t *r)
{
    return (size_t)(r->end - r->p);
}

static inline int pkt__rd_u8(pkt__rd_t *r, uint8_t *v)
{
    if (pkt__rd_left(r) < 1) return UVMQ_EPKT_SHORT;
    *v = *r->p++;
    return 0;
}

static inline int pkt__rd_u16(pkt__rd_t *r, uint16_t *v)
{
    if (pkt__rd_left(r) < 2) return UVMQ_EPKT_SHORT;
    *v = (uint16_t)((r->p[0] << 8) | r->p[1]);
    r->p += 2;
    return 0;
}

static inline int pkt__rd_u32(pkt__rd_t *r, uint32_t *v)
{
    if (pkt__rd_left(r) < 4) return UVMQ_EPKT_SHORT;
    *v = ((uint32_t)r->p[0] << 24) | ((uint32_t)r->p[1] << 16) |
         ((uint32_t)r->p[2] << 8) | r->p[3];
    r->p += 4;
    return 0;
}

static inline int pkt__rd_varint(pkt__rd_t *r, uint32_t *v)
{
    size_t used = 0;
    int rc = pkt__varint_decode(r->p, pkt__rd_left(r), v, &used);
    if (rc == PKT_NEED_MORE) return UVMQ_EPKT_SHORT;
    if (rc == 0) r->p += used;
    return rc;
}

/* Binary data: two-byte length, then that many bytes (borrowed). */
static inline int pkt__rd_bin(pkt__rd_t *r, pkt_bin_t *b)
{
    uint16_t n = 0;
    int rc = pkt__rd_u16(r, &n);
    if (rc != 0) return rc;
    if (pkt__rd_left(r) < n) return UVMQ_EPKT_SHORT;
    b->p = r->p;
    b->len = n;
    r->p += n;
    return 0;
}

/* UTF-8 Encoded String: binary data that must pass MQTT-1.5.4-1/2/3. */
static inline int pkt__rd_str(pkt__rd_t *r, pkt_bin_t *b)
{
    int rc = pkt__rd_bin(r, b);
    if (rc == 0 && !pkt__utf8_check(b->p, b->len, 0)) rc = UVMQ_EPKT_UTF8;
    return rc;
}

#endif

/*
 * fuzz_pkt.c - libFuzzer target for packets/: framing, decoding, re-encoding.
 *
 * The input is a byte stream read as a v3.1.1 connection and again as a
 * v5 one: every frame pkt_frame finds is decoded; every packet that
 * decodes is encoded, decoded and encoded again, and the two encodings
 * must be identical (the codec agrees with itself). Any crash, sanitizer
 * report or abort() is a finding.
 *
 * Build and run (from the repo top):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -I. \
 *       -fsanitize=fuzzer,address,undefined \
 *       tests/fuzz/fuzz_pkt.c packets/pkt.c packets/props.c \
 *       packets/pkt_encode.c common/arena.c common/xmalloc.c common/log.c \
 *       -o build/fuzz_pkt
 *   mkdir -p build/fuzz-corpus && \
 *       build/fuzz_pkt build/fuzz-corpus tests/fuzz/corpus/pkt -max_total_time=60
 * (common/err.c is left out: it needs libuv, and the target does not.)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "packets/pkt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decoded property blocks keep the received bytes in raw; an encoder would
 * append them again, so drop them before re-encoding. */
static void clear_raw(pkt_t *p)
{
    static const pkt_bin_t none;
    switch (p->type) {
    case PKT_CONNECT:
        p->u.connect.props.raw = none;
        p->u.connect.will_props.raw = none;
        break;
    case PKT_CONNACK: p->u.connack.props.raw = none; break;
    case PKT_PUBLISH: p->u.publish.props.raw = none; break;
    case PKT_SUBSCRIBE: p->u.subscribe.props.raw = none; break;
    case PKT_SUBACK: case PKT_UNSUBACK: p->u.suback.props.raw = none; break;
    case PKT_UNSUBSCRIBE: p->u.unsubscribe.props.raw = none; break;
    case PKT_DISCONNECT: case PKT_AUTH: p->u.disconnect.props.raw = none; break;
    default: p->u.ack.props.raw = none; break;
    }
}

/* Encodes p into out (cap bytes); aborts when the codec disagrees with
 * itself about the size. Returns the bytes written. */
static size_t encode_or_die(const pkt_t *p, uint8_t version, uint8_t *out,
                            size_t cap)
{
    size_t want = pkt_encoded_size(p, version), n = 0;
    if (want == 0 || want > cap) abort();
    if (pkt_encode(p, version, out, cap, &n) != 0 || n != want) abort();
    return n;
}

/* A packet that decoded must survive encode -> decode -> encode unchanged. */
static void check_round_trip(pkt_t *p, uint8_t version)
{
    static uint8_t a_buf[1 << 17], b_buf[1 << 17];
    arena_t a;
    pkt_t q;
    if (p->type == PKT_CONNECT) version = p->u.connect.version;
    clear_raw(p);
    size_t na = encode_or_die(p, version, a_buf, sizeof a_buf);
    arena_init(&a, 1 << 20);
    if (pkt_decode(&q, version, a_buf, na, &a) != 0) abort();
    clear_raw(&q);
    size_t nb = encode_or_die(&q, version, b_buf, sizeof b_buf);
    if (na != nb || memcmp(a_buf, b_buf, na) != 0) abort();
    arena_dispose(&a);
}

static void run_stream(const uint8_t *data, size_t size, uint8_t version)
{
    arena_t a;
    size_t off = 0, fl = 0, need = 0;
    arena_init(&a, 1 << 20);
    while (pkt_frame(data + off, size - off, 1 << 16, &fl, &need) == 0) {
        pkt_t p;
        if (fl == 0 || fl > size - off || fl != need) abort();
        int rc = pkt_decode(&p, version, data + off, fl, &a);
        if (rc == 0) check_round_trip(&p, version);
        else if (rc >= 0 || pkt_err_reason(rc) < 0x80) abort();
        arena_reset(&a);
        off += fl;
    }
    arena_dispose(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run_stream(data, size, PKT_V311);
    run_stream(data, size, PKT_V5);
    return 0;
}

/*
 * hash.h - FNV-1a (32 bits), the one string hash of the broker: client
 * ids in the session map, shared-subscription group keys, outbound topic
 * aliases and the per-loop interest summary.
 */
#ifndef UVMQ_HASH_H
#define UVMQ_HASH_H

#include <stddef.h>
#include <stdint.h>

#define FNV1A_SEED 2166136261u /* the FNV offset basis */

/* FNV-1a over len bytes at p, starting from seed (FNV1A_SEED, or another
 * value for a hash independent of the standard one). */
static inline uint32_t fnv1a(uint32_t seed, const void *p, size_t len)
{
    const uint8_t *s = p;
    uint32_t h = seed;
    for (size_t i = 0; i < len; i++) h = (h ^ s[i]) * 16777619u;
    return h;
}

#endif

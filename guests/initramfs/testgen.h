/*
 * Deterministic test data and digests that the host recomputes exactly
 * (tests/e2e/guest_crypto.py implements the same two functions).
 *
 * Data: a SplitMix64 stream.  Each step adds 0x9e3779b97f4a7c15 to the state and
 * mixes it; every output word gives 8 bytes, least significant first, used in order.
 * A test case seeds its own stream and draws its key, then its IV, then its data.
 *
 * Digest: 64-bit FNV-1a over the bytes, printed as 16 lower-case hex digits.  It
 * keeps result lines short (a 64 KiB ciphertext becomes one word) while any wrong
 * byte still changes it.
 */
#ifndef VMSIM_TESTGEN_H
#define VMSIM_TESTGEN_H

#include <stddef.h>
#include <stdint.h>

#define TESTGEN_FNV_OFFSET 0xcbf29ce484222325ULL
#define TESTGEN_FNV_PRIME 0x100000001b3ULL

struct testgen {
    uint64_t state;
    uint64_t word;      /* the current output word */
    unsigned left;      /* bytes of `word` not handed out yet */
};

static inline void testgen_seed(struct testgen *g, uint64_t seed)
{
    g->state = seed;
    g->left = 0;
}

static inline uint64_t testgen_next64(struct testgen *g)
{
    uint64_t z = (g->state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline void testgen_fill(struct testgen *g, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (g->left == 0) {
            g->word = testgen_next64(g);
            g->left = 8;
        }
        out[i] = (uint8_t)g->word;
        g->word >>= 8;
        g->left--;
    }
}

static inline uint64_t fnv1a64(const uint8_t *data, size_t len)
{
    uint64_t h = TESTGEN_FNV_OFFSET;
    for (size_t i = 0; i < len; i++) {
        h ^= data[i];
        h *= TESTGEN_FNV_PRIME;
    }
    return h;
}

#endif

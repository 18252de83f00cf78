/*
 * AES-CBC known answers through AF_ALG, bound by driver name (vmsim.kat_driver,
 * default virtio_crypto_aes_cbc) so that only the virtio device can answer.
 *
 * For every key size, length and feeding mode (see afalg.h) the program encrypts
 * deterministic data (testgen.h), decrypts the result again and prints
 *
 *   @vmsim event=kat key=<bits> len=<bytes> mode=<mode> ct=<fnv> pt=<fnv> err=<errno>
 *
 * where ct is the digest of the ciphertext and pt that of the decrypted text.  The
 * host recomputes both with its own AES (tests/e2e/guest_crypto.py), so a wrong
 * ciphertext is caught there; the guest itself checks that decryption round-trips.
 *
 * Case seed: (key bytes << 56) | (mode index << 48) | length; the stream gives the
 * key, then the 16-byte IV, then the plaintext.
 */
#define _GNU_SOURCE
#include "afalg.h"
#include "testgen.h"
#include "vmsim.h"

#include <inttypes.h>

#define TEST "afalg-kat"
#define MAX_LEN 65536

static const size_t key_sizes[] = {16, 24, 32};
static const size_t lengths[] = {0, 16, 32, 48, 80, 208, 1040, 4096, 4112, 12304, 65536};

/* Page-aligned, so splice moves whole pages and 64 KiB fits one default pipe. */
static uint8_t plain[MAX_LEN] __attribute__((aligned(4096)));
static uint8_t cipher[MAX_LEN] __attribute__((aligned(4096)));
static uint8_t back[MAX_LEN] __attribute__((aligned(4096)));

/* Runs one case; returns 0 when it round-tripped. */
static int run_case(const char *driver, size_t keylen, size_t len, enum afalg_mode mode)
{
    uint8_t key[32], iv[AFALG_IV_LEN];
    struct testgen g;
    testgen_seed(&g, ((uint64_t)keylen << 56) | ((uint64_t)mode << 48) | len);
    testgen_fill(&g, key, keylen);
    testgen_fill(&g, iv, sizeof(iv));
    testgen_fill(&g, plain, len);
    memset(cipher, 0, len);
    memset(back, 0, len);

    struct afalg_cipher c;
    int err = afalg_open_cipher(&c, driver, key, keylen);
    if (!err)
        err = afalg_crypt(c.op, 1, iv, plain, cipher, len, mode);
    if (!err)
        err = afalg_crypt(c.op, 0, iv, cipher, back, len, mode);
    afalg_close(&c);

    int ok = !err && memcmp(plain, back, len) == 0;
    vmsim_line("@vmsim event=kat key=%zu len=%zu mode=%s ct=%016" PRIx64 " pt=%016" PRIx64
               " err=%d ok=%d", keylen * 8, len, afalg_mode_names[mode],
               fnv1a64(cipher, len), fnv1a64(back, len), -err, ok);
    return ok ? 0 : 1;
}

int main(void)
{
    char driver[128];
    afalg_driver_param("kat_driver", driver, sizeof(driver));

    int cases = 0, failed = 0;
    for (size_t k = 0; k < sizeof(key_sizes) / sizeof(key_sizes[0]); k++)
        for (size_t l = 0; l < sizeof(lengths) / sizeof(lengths[0]); l++)
            for (int m = 0; m < AFALG_MODES; m++) {
                failed += run_case(driver, key_sizes[k], lengths[l], (enum afalg_mode)m);
                cases++;
            }

    vmsim_result(TEST, failed ? "fail" : "pass", "driver=%s cases=%d failed=%d", driver, cases,
                 failed);
    return failed ? 1 : 0;
}

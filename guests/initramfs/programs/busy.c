/*
 * A user-space busy loop for vmsim.busy_ms (default 2000) whose every result is known
 * in advance, for the preemption stress test: a stop that lands in the middle of an
 * atomic and replays it, or corrupts registers, shows up as a wrong number.
 *
 * Each batch redoes the same arithmetic from the same seed (read through a volatile,
 * so the compiler cannot fold it), bumps a 64-bit counter with an AMO and a 32-bit sum
 * with an LR/SC compare-and-swap loop.  The constants were computed on the host.
 */
#include "vmsim.h"

#include <inttypes.h>
#include <stdint.h>

#define BATCH 4096
#define ADD_STEP 3
#define EXPECTED_ACC 0x512add7789c49c67ULL
#define EXPECTED_CAS_PER_BATCH 0x0007f6a9U

static volatile uint64_t seed_source = 0x243f6a8885a308d3ULL;
static uint64_t amo_counter;
static uint32_t cas_sum;

static uint64_t xorshift64(uint64_t x)
{
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

static void cas_add(uint32_t *target, uint32_t delta)
{
    uint32_t old = __atomic_load_n(target, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(target, &old, old + delta, 1, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED))
        ;
}

static uint64_t run_batch(void)
{
    uint64_t x = seed_source;
    uint64_t acc = 0;
    for (int i = 0; i < BATCH; i++) {
        x = xorshift64(x);
        acc = acc * 31 + x % 1000003;
        __atomic_fetch_add(&amo_counter, ADD_STEP, __ATOMIC_SEQ_CST);
        cas_add(&cas_sum, (uint32_t)(x & 0xff));
    }
    return acc;
}

int main(void)
{
    long ms = vmsim_param_long("busy_ms", 2000);
    long long start = vmsim_coarse_ms();
    uint64_t batches = 0;
    do {
        uint64_t acc = run_batch();
        batches++;
        if (acc != EXPECTED_ACC) {
            vmsim_result("busy", "fail",
                         "what=arith batch=%" PRIu64 " expected=%#" PRIx64 " got=%#" PRIx64,
                         batches, (uint64_t)EXPECTED_ACC, acc);
            return 1;
        }
    } while (vmsim_coarse_ms() - start < ms);

    uint64_t want_amo = batches * BATCH * ADD_STEP;
    uint32_t want_cas = (uint32_t)(batches * EXPECTED_CAS_PER_BATCH);
    if (amo_counter != want_amo) {
        vmsim_result("busy", "fail", "what=amo expected=%" PRIu64 " got=%" PRIu64, want_amo,
                     amo_counter);
        return 1;
    }
    if (cas_sum != want_cas) {
        vmsim_result("busy", "fail", "what=cas expected=%" PRIu32 " got=%" PRIu32, want_cas,
                     cas_sum);
        return 1;
    }
    vmsim_result("busy", "pass", "ms=%ld batches=%" PRIu64, ms, batches);
    return 0;
}

/*
 * The patched engine's code invalidation for the pages the host wrote since the guest
 * last ran (docs/engine.md, P11): runs of adjacent pages, each a pair of
 * pseudo-register writes, BATCH runs per uc_reg_write_batch call. The native form of
 * EngineCpu._invalidate_physical in vmsim/core/cpu.py, which stays the reference.
 *
 * Why: after every register access that wrote guest RAM (a virtio request's output,
 * status byte and used ring) the pages go to the engine. In Python, merging the runs
 * and calling the engine through ctypes took about 7 us of the CPU thread per request
 * once the guest had run.
 */
#include <stdint.h>

#define BATCH 16        /* page runs per engine call (_INVALIDATE_BATCH in cpu.py) */

typedef int (*write_batch_fn)(void *uc, int *regs, void *const *vals, int count);

/* Set once per CPU by the caller; it fills pages before each call. */
struct invalidate_context {
    void *uc;
    write_batch_fn write_batch;     /* uc_reg_write_batch */
    int64_t start_reg;              /* the run's first byte... */
    int64_t end_reg;                /* ...and the byte past it */
    uint64_t shift;                 /* page number -> address */
    const uint64_t *pages;          /* sorted, distinct page numbers */
};

/* Invalidate the first `count` pages. Returns 0, or the engine's error. (An int
 * argument and result: the caller passes them without ctypes argtypes.) */
int vmsim_invalidate_pages(const struct invalidate_context *c, int count)
{
    int regs[2 * BATCH];
    uint64_t bounds[2 * BATCH];
    void *refs[2 * BATCH];
    int n = 0, i = 0;

    while (i < count) {
        uint64_t start = c->pages[i], end = start + 1;
        for (i++; i < count && c->pages[i] == end; i++)
            end++;
        regs[n] = (int)c->start_reg;
        bounds[n] = start << c->shift;
        refs[n] = &bounds[n];
        n++;
        regs[n] = (int)c->end_reg;
        bounds[n] = end << c->shift;
        refs[n] = &bounds[n];
        n++;
        if (n == 2 * BATCH || i >= count) {
            int status = c->write_batch(c->uc, regs, refs, n);
            if (status)
                return status;
            n = 0;
        }
    }
    return 0;
}

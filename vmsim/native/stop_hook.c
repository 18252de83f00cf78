/*
 * A UC_HOOK_BLOCK callback that turns a stop request from any thread into
 * uc_emu_stop() at the start of the next translation block.
 *
 * Why: with the stock libunicorn, uc_emu_stop() from another thread can land
 * between the load and the store of an atomic, which then runs twice on resume
 * (docs/engine.md, E14 and W1). Called from the CPU thread at a block start, the stop
 * is exact. The callback runs without the Python GIL, so its cost is a flag
 * test per block.
 *
 * The library does not link against libunicorn: the caller passes the address
 * of uc_emu_stop from whichever libunicorn it loaded.
 */
#include <stdint.h>
#include <stdlib.h>

typedef int (*emu_stop_fn)(void *uc);

struct vmsim_stop_state {
    int pending;            /* set by any thread, consumed by the hook */
    emu_stop_fn emu_stop;   /* uc_emu_stop of the loaded libunicorn */
};

struct vmsim_stop_state *vmsim_stop_new(emu_stop_fn emu_stop)
{
    struct vmsim_stop_state *state = calloc(1, sizeof(*state));
    if (state) {
        state->emu_stop = emu_stop;
    }
    return state;
}

void vmsim_stop_free(struct vmsim_stop_state *state)
{
    free(state);
}

/* Returns int so that it has the shape of uc_emu_stop (vmsim_stop_fn in fd_watch.c). */
int vmsim_stop_request(struct vmsim_stop_state *state)
{
    __atomic_store_n(&state->pending, 1, __ATOMIC_RELEASE);
    return 0;
}

/* Signature of uc_cb_hookcode_t. */
void vmsim_stop_hook(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    struct vmsim_stop_state *state = user_data;
    (void)address;
    (void)size;
    if (__atomic_load_n(&state->pending, __ATOMIC_RELAXED)
        && __atomic_exchange_n(&state->pending, 0, __ATOMIC_ACQUIRE)) {
        state->emu_stop(uc);
    }
}

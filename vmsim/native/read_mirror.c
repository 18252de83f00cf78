/*
 * An MMIO read callback that answers a few registers from values their device
 * published, and hands every other read to the device's Python callback.
 *
 * Why: each guest access to a device register costs a call into Python, and right
 * after the guest has run that call is slow (the interpreter's code and data have
 * left the host's caches). Some registers read the same until the device itself
 * changes them, and reading them changes nothing: a virtio-mmio InterruptStatus, or a
 * GICv2 GICC_IAR while no interrupt is signalled (it reads as the spurious ID).
 * Linux reads both on every interrupt. The device publishes such a value when it
 * changes (and withdraws it when a read would have an effect again); this callback
 * returns it without leaving the CPU thread's native code.
 *
 * Only the CPU thread touches a mirror: the engine calls this function from it, and
 * devices publish from inside their own callbacks or the run loop, on the same
 * thread. The struct layout is mirrored by ctypes in vmsim/core/cpu.py.
 */
#include <stdint.h>

#define VMSIM_MIRROR_SLOTS 4

typedef uint64_t (*mmio_read_fn)(void *uc, uint64_t offset, unsigned size, void *data);

struct vmsim_mirror_slot {
    uint64_t offset;
    uint64_t value;
    uint32_t size;
    uint32_t valid;     /* 0: the device answers this register itself */
};

struct vmsim_read_mirror {
    mmio_read_fn read;  /* the device's own read callback */
    void *read_data;
    uint64_t hits;      /* reads answered here (tests, statistics) */
    uint32_t count;
    uint32_t reserved;
    struct vmsim_mirror_slot slots[VMSIM_MIRROR_SLOTS];
};

/* Signature of uc_cb_mmio_read_t; user_data is the window's struct vmsim_read_mirror. */
uint64_t vmsim_mirror_read(void *uc, uint64_t offset, unsigned size, void *user_data)
{
    struct vmsim_read_mirror *mirror = user_data;
    uint32_t i;

    for (i = 0; i < mirror->count && i < VMSIM_MIRROR_SLOTS; i++) {
        const struct vmsim_mirror_slot *slot = &mirror->slots[i];
        if (slot->valid && slot->offset == offset && slot->size == size) {
            mirror->hits++;
            return slot->value;
        }
    }
    return mirror->read(uc, offset, size, mirror->read_data);
}

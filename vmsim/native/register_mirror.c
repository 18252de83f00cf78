/*
 * MMIO callbacks that answer a few register reads from values their device published,
 * and take a few register writes the device said it can apply later; every other
 * access goes on to the device's Python callbacks.
 *
 * Why: each guest access to a device register costs a call into Python, and right
 * after the guest has run that call is slow (the interpreter's code and data have
 * left the host's caches). Linux touches some registers on every interrupt where
 * nothing needs Python at that moment:
 * - reads that change nothing, of a value only the device changes: virtio-mmio
 *   InterruptStatus, or GICC_IAR while no interrupt is signalled (the spurious ID);
 * - a write whose effect nobody can see until the device is next called: GICC_EOIR of
 *   the one active interrupt when ending it leaves nothing to signal, so the CPU's
 *   interrupt line would not change.
 * - a read whose effect nobody can see until the device is next called, except that
 *   it drops the device's output line: GICC_IAR of the one signalled interrupt when
 *   acknowledging it leaves nothing to signal. Such a read is answered once, and the
 *   machine's line (an engine register and the host's copy of it) is dropped here.
 * The device publishes a read value when it changes, and offers a write (one exact
 * value) while taking it later is safe. A taken write, or a read answered once, is
 * marked posted and withdrawn; the device applies it before anything else the next
 * time it is called.
 *
 * Only the CPU thread touches a mirror: the engine calls these functions from it, and
 * devices publish from inside their own callbacks or the run loop, on the same
 * thread. The struct layout is mirrored by ctypes in vmsim/core/nativelib.py.
 */
#include <stdint.h>

#define VMSIM_MIRROR_SLOTS 4

typedef uint64_t (*mmio_read_fn)(void *uc, uint64_t offset, unsigned size, void *data);
typedef void (*mmio_write_fn)(void *uc, uint64_t offset, unsigned size, uint64_t value,
                              void *data);
typedef int (*engine_write_fn)(void *uc, int regid, const void *value);   /* uc_reg_write */

struct vmsim_mirror_slot {
    uint64_t offset;
    uint64_t value;     /* a read's answer, or the one write value that may be taken */
    uint32_t size;
    uint32_t valid;     /* 0: the device handles this register itself */
    uint64_t posted;    /* 1 once a write (or a read answered once) was taken and not
                           yet applied */
    uint64_t once;      /* reads: answer once, then drop the line (see above) */
};

struct vmsim_register_mirror {
    mmio_read_fn read;  /* the device's own callbacks */
    void *read_data;
    mmio_write_fn write;
    void *write_data;
    uint64_t hits;      /* reads answered here (tests, statistics) */
    uint64_t taken;     /* writes taken here */
    uint32_t reads;     /* slots in use */
    uint32_t writes;
    /* The line a read answered once drops: engine register line_reg through
     * engine_write, and the host's copy of its level. Unset (0): no read is answered
     * once (the device is told so). */
    engine_write_fn engine_write;
    int64_t line_reg;
    uint64_t *line_copy;
    struct vmsim_mirror_slot read_slots[VMSIM_MIRROR_SLOTS];
    struct vmsim_mirror_slot write_slots[VMSIM_MIRROR_SLOTS];
};

/* Signature of uc_cb_mmio_read_t; user_data is the window's struct vmsim_register_mirror. */
uint64_t vmsim_mirror_read(void *uc, uint64_t offset, unsigned size, void *user_data)
{
    struct vmsim_register_mirror *mirror = user_data;
    uint32_t i;

    for (i = 0; i < mirror->reads && i < VMSIM_MIRROR_SLOTS; i++) {
        struct vmsim_mirror_slot *slot = &mirror->read_slots[i];
        if (slot->valid && slot->offset == offset && slot->size == size) {
            mirror->hits++;
            if (slot->once) {
                static const uint64_t low = 0;
                slot->valid = 0;
                slot->posted = 1;
                mirror->engine_write(uc, (int)mirror->line_reg, &low);
                *mirror->line_copy = 0;
            }
            return slot->value;
        }
    }
    return mirror->read(uc, offset, size, mirror->read_data);
}

/* Signature of uc_cb_mmio_write_t. */
void vmsim_mirror_write(void *uc, uint64_t offset, unsigned size, uint64_t value,
                        void *user_data)
{
    struct vmsim_register_mirror *mirror = user_data;
    uint32_t i;

    for (i = 0; i < mirror->writes && i < VMSIM_MIRROR_SLOTS; i++) {
        struct vmsim_mirror_slot *slot = &mirror->write_slots[i];
        if (slot->valid && slot->offset == offset && slot->size == size
            && slot->value == value) {
            slot->valid = 0;
            slot->posted = 1;
            mirror->taken++;
            return;
        }
    }
    mirror->write(uc, offset, size, value, mirror->write_data);
}

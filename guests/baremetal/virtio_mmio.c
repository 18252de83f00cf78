/* Driver side of virtio-mmio device initialisation, in the order the spec gives. */
#include "board.h"
#include "bugs.h"
#include "virtio_mmio.h"

static void add_status(uintptr_t base, uint32_t bits)
{
    uint32_t status = virtio_mmio_read(base, VIRTIO_MMIO_STATUS);

    virtio_mmio_write(base, VIRTIO_MMIO_STATUS, status | bits);
}

enum virtio_mmio_error virtio_mmio_begin(uintptr_t base, uint32_t device_id)
{
    if (VMSIM_BUG == BUG_NO_IDENTIFY)       /* a reset before knowing what is there */
        virtio_mmio_write(base, VIRTIO_MMIO_STATUS, 0);
    if (virtio_mmio_read(base, VIRTIO_MMIO_MAGIC_VALUE) != VIRTIO_MMIO_MAGIC ||
        virtio_mmio_read(base, VIRTIO_MMIO_VERSION) != 2 ||
        virtio_mmio_read(base, VIRTIO_MMIO_DEVICE_ID) != device_id)
        return VIRTIO_MMIO_NO_DEVICE;

    /* Reset: write 0, then wait until the device reads back 0 (reset complete). */
    virtio_mmio_write(base, VIRTIO_MMIO_STATUS, 0);
    while (virtio_mmio_read(base, VIRTIO_MMIO_STATUS) != 0)
        ;
    add_status(base, VIRTIO_STATUS_ACKNOWLEDGE);    /* "I see a virtio device" */
    add_status(base, VIRTIO_STATUS_DRIVER);         /* "and I can drive it" */
    return VIRTIO_MMIO_OK;
}

static uint64_t device_features(uintptr_t base)
{
    uint64_t features = 0;

    for (uint32_t word = 0; word < 2; word++) {
        virtio_mmio_write(base, VIRTIO_MMIO_DEVICE_FEATURES_SEL, word);
        features |= (uint64_t)virtio_mmio_read(base, VIRTIO_MMIO_DEVICE_FEATURES) << (32 * word);
    }
    return features;
}

static void set_driver_features(uintptr_t base, uint64_t features)
{
    for (uint32_t word = 0; word < 2; word++) {
        virtio_mmio_write(base, VIRTIO_MMIO_DRIVER_FEATURES_SEL, word);
        virtio_mmio_write(base, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> (32 * word)));
    }
}

enum virtio_mmio_error virtio_mmio_negotiate(uintptr_t base, uint64_t wanted)
{
    uint64_t accepted = device_features(base) & wanted;

    /* Without VERSION_1 the device would speak the legacy interface. */
    if (!(accepted & (1ULL << VIRTIO_F_VERSION_1)))
        return VIRTIO_MMIO_FEATURES;
    set_driver_features(base, accepted);
    add_status(base, VIRTIO_STATUS_FEATURES_OK);
    if (VMSIM_BUG == BUG_FEATURES_LATE)     /* too late: the features are settled */
        set_driver_features(base, accepted);
    /* The device clears FEATURES_OK if it cannot work with the accepted subset. */
    if (!(virtio_mmio_read(base, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK))
        return VIRTIO_MMIO_FEATURES;
    return VIRTIO_MMIO_OK;
}

static void write_address(uintptr_t base, uint32_t low_reg, const volatile void *ring)
{
    uint64_t addr = (uintptr_t)ring;   /* no MMU: virtual = guest-physical */

    virtio_mmio_write(base, low_reg, (uint32_t)addr);
    virtio_mmio_write(base, low_reg + 4, (uint32_t)(addr >> 32));
}

enum virtio_mmio_error virtio_mmio_setup_queue(uintptr_t base, struct virtqueue *vq)
{
    virtio_mmio_write(base, VIRTIO_MMIO_QUEUE_SEL, vq->index);
    if (virtio_mmio_read(base, VIRTIO_MMIO_QUEUE_READY) != 0)
        return VIRTIO_MMIO_QUEUE;
    if (VMSIM_BUG == BUG_QUEUE_NUM_UNREAD)  /* a size chosen without asking the device */
        virtio_mmio_write(base, VIRTIO_MMIO_QUEUE_NUM, VQ_SIZE);
    uint32_t max = virtio_mmio_read(base, VIRTIO_MMIO_QUEUE_NUM_MAX);
    if (max < VQ_SIZE)
        return VIRTIO_MMIO_QUEUE;     /* 0 means the queue does not exist */

    virtio_mmio_write(base, VIRTIO_MMIO_QUEUE_NUM, VQ_SIZE);
    write_address(base, VIRTIO_MMIO_QUEUE_DESC_LOW, vq->rings.desc);
    write_address(base, VIRTIO_MMIO_QUEUE_DRIVER_LOW, &vq->rings.avail);
    write_address(base, VIRTIO_MMIO_QUEUE_DEVICE_LOW, &vq->rings.used);
    vq->notify = base + VIRTIO_MMIO_QUEUE_NOTIFY;
    virtio_mmio_write(base, VIRTIO_MMIO_QUEUE_READY, 1);
    return VIRTIO_MMIO_OK;
}

void virtio_mmio_driver_ok(uintptr_t base)
{
    add_status(base, VIRTIO_STATUS_DRIVER_OK);
}

void virtio_mmio_fail(uintptr_t base)
{
    add_status(base, VIRTIO_STATUS_FAILED);
}

uint32_t virtio_mmio_config32(uintptr_t base, uint32_t offset)
{
    uint32_t generation, value;

    do {
        generation = virtio_mmio_read(base, VIRTIO_MMIO_CONFIG_GENERATION);
        value = virtio_mmio_read(base, VIRTIO_MMIO_CONFIG + offset);
    } while (generation != virtio_mmio_read(base, VIRTIO_MMIO_CONFIG_GENERATION));
    return value;
}

uint64_t virtio_mmio_config64(uintptr_t base, uint32_t offset)
{
    uint32_t generation, low, high;

    do {
        generation = virtio_mmio_read(base, VIRTIO_MMIO_CONFIG_GENERATION);
        low = virtio_mmio_read(base, VIRTIO_MMIO_CONFIG + offset);
        high = virtio_mmio_read(base, VIRTIO_MMIO_CONFIG + offset + 4);
    } while (generation != virtio_mmio_read(base, VIRTIO_MMIO_CONFIG_GENERATION));
    return ((uint64_t)high << 32) | low;
}

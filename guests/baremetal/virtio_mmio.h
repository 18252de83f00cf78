/* The virtio-mmio transport, version 2 (virtio 1.2, section 4.2.2): register offsets,
 * status bits, and the driver-side steps of device initialisation (section 3.1.1). */
#ifndef VIRTIO_MMIO_H
#define VIRTIO_MMIO_H

#include <stdint.h>
#include "board.h"
#include "virtqueue.h"

#define VIRTIO_MMIO_MAGIC_VALUE          0x000   /* reads "virt" = 0x74726976 */
#define VIRTIO_MMIO_VERSION              0x004   /* 2 = modern; 1 is legacy */
#define VIRTIO_MMIO_DEVICE_ID            0x008   /* 0 = empty slot */
#define VIRTIO_MMIO_DEVICE_FEATURES      0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL  0x014
#define VIRTIO_MMIO_DRIVER_FEATURES      0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL  0x024
#define VIRTIO_MMIO_QUEUE_SEL            0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX        0x034
#define VIRTIO_MMIO_QUEUE_NUM            0x038
#define VIRTIO_MMIO_QUEUE_READY          0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY         0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS     0x060
#define VIRTIO_MMIO_INTERRUPT_ACK        0x064
#define VIRTIO_MMIO_STATUS               0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW       0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH      0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW     0x090   /* the available ring */
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH    0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW     0x0a0   /* the used ring */
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH    0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION    0x0fc
#define VIRTIO_MMIO_CONFIG               0x100   /* device-specific config space */

#define VIRTIO_MMIO_MAGIC                0x74726976

/* Device status bits (section 2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE        0x01
#define VIRTIO_STATUS_DRIVER             0x02
#define VIRTIO_STATUS_DRIVER_OK          0x04
#define VIRTIO_STATUS_FEATURES_OK        0x08
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED             0x80

/* Transport feature bits, as bit numbers of the 64-bit feature word. */
#define VIRTIO_F_VERSION_1               32

enum virtio_mmio_error {
    VIRTIO_MMIO_OK = 0,
    VIRTIO_MMIO_NO_DEVICE,      /* wrong magic, legacy version, or another device type */
    VIRTIO_MMIO_FEATURES,       /* VERSION_1 not offered, or FEATURES_OK not kept */
    VIRTIO_MMIO_QUEUE,          /* the queue does not exist or is already live */
};

static inline uint32_t virtio_mmio_read(uintptr_t base, uint32_t reg)
{
    return mmio_read32(base + reg);
}

static inline void virtio_mmio_write(uintptr_t base, uint32_t reg, uint32_t value)
{
    mmio_write32(base + reg, value);
}

/* Steps 1-3 of initialisation: check the slot holds `device_id`, reset it, and set
 * ACKNOWLEDGE then DRIVER. */
enum virtio_mmio_error virtio_mmio_begin(uintptr_t base, uint32_t device_id);

/* Steps 4-6: accept the offered features that are also in `wanted` (VERSION_1 must be
 * among them), set FEATURES_OK and check that the device kept it. */
enum virtio_mmio_error virtio_mmio_negotiate(uintptr_t base, uint64_t wanted);

/* Step 7, one queue: tell the device where the rings of `vq` are and enable it. */
enum virtio_mmio_error virtio_mmio_setup_queue(uintptr_t base, struct virtqueue *vq);

/* Step 8: the driver is ready; the device may now use the queues. */
void virtio_mmio_driver_ok(uintptr_t base);

/* On any failure after ACKNOWLEDGE: tell the device the driver gave up. */
void virtio_mmio_fail(uintptr_t base);

/* Read a 32-bit config field consistently: retry while ConfigGeneration changes. */
uint32_t virtio_mmio_config32(uintptr_t base, uint32_t offset);

/* A 64-bit config field is two 32-bit reads; the generation check makes them a pair. */
uint64_t virtio_mmio_config64(uintptr_t base, uint32_t offset);

#endif

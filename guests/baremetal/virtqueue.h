/* A split virtqueue (virtio 1.2, section 2.7) driven by polling, like a DPDK PMD.
 *
 * The driver writes descriptors and the available ring; the device writes the used
 * ring. Here the driver never waits for an interrupt: it sets NO_INTERRUPT in the
 * available ring and spins on used->idx, which the device updates in RAM. The spin
 * loop makes no trap and no MMIO access, so the completion must arrive by memory
 * alone; that is exactly what this example checks.
 *
 * One request is in flight per queue at a time, so every chain starts at descriptor
 * 0 and no free list is needed. A real poll-mode driver keeps a free list, submits
 * bursts, and reaps many used entries per poll.
 */
#ifndef VIRTQUEUE_H
#define VIRTQUEUE_H

#include <stdint.h>

#define VQ_SIZE                 8       /* entries; a power of two <= QueueNumMax */

#define VIRTQ_DESC_F_NEXT       1       /* the chain continues at `next` */
#define VIRTQ_DESC_F_WRITE      2       /* the device writes this buffer */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1    /* "I poll: do not interrupt me" */

struct virtq_desc {
    uint64_t addr;                      /* guest-physical */
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct virtq_avail {
    uint16_t flags;
    uint16_t idx;                       /* where the driver puts the next entry */
    uint16_t ring[VQ_SIZE];
    uint16_t used_event;                /* only with VIRTIO_F_EVENT_IDX */
};

struct virtq_used_elem {
    uint32_t id;                        /* head descriptor of the completed chain */
    uint32_t len;                       /* bytes the device wrote */
};

struct virtq_used {
    uint16_t flags;
    uint16_t idx;                       /* where the device puts the next entry */
    struct virtq_used_elem ring[VQ_SIZE];
    uint16_t avail_event;
};

/* The three rings in one page-aligned block. The spec asks only for 16-byte (desc),
 * 2-byte (avail) and 4-byte (used) alignment. */
struct virtq_rings {
    struct virtq_desc desc[VQ_SIZE] __attribute__((aligned(16)));
    struct virtq_avail avail __attribute__((aligned(2)));
    struct virtq_used used __attribute__((aligned(4)));
} __attribute__((aligned(4096)));

struct virtqueue {
    struct virtq_rings rings;
    uint16_t index;                     /* the queue's number on the device */
    uint16_t last_used;                 /* used->idx as far as the driver has read */
    uintptr_t notify;                   /* the QueueNotify register */
};

/* One buffer of a request: the device reads it (out) or writes it (in). */
struct vq_buf {
    void *addr;
    uint32_t len;
    int device_writes;
};

/* What one request took: the used entry and how long the driver waited for it. */
struct vq_completion {
    uint32_t id;
    uint32_t len;
    uint64_t ticks;                     /* timebase ticks from the doorbell to the used entry */
    uint64_t spins;                     /* reads of used->idx while waiting */
};

/* Spins before a request counts as lost. */
#ifndef VQ_MAX_SPINS
#define VQ_MAX_SPINS (1ULL << 30)      /* about 10 s of spinning under vmsim */
#endif

void vq_init(struct virtqueue *vq, uint16_t index);

enum vq_result {
    VQ_OK = 0,
    VQ_LOST = -1,                       /* no used entry within VQ_MAX_SPINS */
    VQ_BAD_USED = -2,                   /* the used entry names another chain */
};

/* Put a chain of `n` buffers (every device-readable one before every device-written
 * one, as the spec requires) on the queue, ring the doorbell and spin until the
 * device returns it. */
enum vq_result vq_transact(struct virtqueue *vq, const struct vq_buf *bufs, int n, struct vq_completion *done);

#endif

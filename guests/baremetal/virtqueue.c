/* Submitting a chain and polling the used ring. */
#include "board.h"
#include "lib.h"
#include "virtqueue.h"

void vq_init(struct virtqueue *vq, uint16_t index)
{
    memset(&vq->rings, 0, sizeof(vq->rings));
    vq->index = index;
    vq->last_used = 0;
    vq->rings.avail.flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
}

/* Write the chain into descriptors 0..n-1 and publish its head in the available ring. */
static uint16_t vq_publish(struct virtqueue *vq, const struct vq_buf *bufs, int n)
{
    struct virtq_rings *r = &vq->rings;

    for (int i = 0; i < n; i++) {
        r->desc[i].addr = (uintptr_t)bufs[i].addr;   /* no MMU: virtual = physical */
        r->desc[i].len = bufs[i].len;
        r->desc[i].flags = (uint16_t)((bufs[i].device_writes ? VIRTQ_DESC_F_WRITE : 0) |
                                      (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
        r->desc[i].next = (uint16_t)(i + 1 < n ? i + 1 : 0);
    }
    uint16_t head = 0;
    uint16_t idx = r->avail.idx;
    r->avail.ring[idx % VQ_SIZE] = head;
    /* The device may act as soon as it sees the new idx: descriptors and ring entry
     * must be in memory first. */
    __asm__ volatile("fence w, w" ::: "memory");
    *(volatile uint16_t *)&r->avail.idx = (uint16_t)(idx + 1);
    return head;
}

/* Spin on used->idx. `volatile` makes every iteration a real load from RAM, which the
 * device may change at any moment; no trap, no MMIO, no wfi. */
static uint64_t vq_wait(struct virtqueue *vq)
{
    volatile uint16_t *used_idx = &vq->rings.used.idx;
    uint64_t spins = 0;

    while (*used_idx == vq->last_used) {
        if (++spins == VQ_MAX_SPINS)
            break;
    }
    /* Read the used entry and the buffers only after seeing the new idx. */
    __asm__ volatile("fence r, r" ::: "memory");
    return spins;
}

enum vq_result vq_transact(struct virtqueue *vq, const struct vq_buf *bufs, int n, struct vq_completion *done)
{
    uint16_t head = vq_publish(vq, bufs, n);
    uint64_t start = read_time();
    mmio_write32(vq->notify, vq->index);    /* the doorbell */
    done->spins = vq_wait(vq);
    done->ticks = read_time() - start;
    if (done->spins == VQ_MAX_SPINS)
        return VQ_LOST;

    volatile struct virtq_used_elem *e = &vq->rings.used.ring[vq->last_used % VQ_SIZE];
    done->id = e->id;
    done->len = e->len;
    vq->last_used++;
    return done->id == head ? VQ_OK : VQ_BAD_USED;
}

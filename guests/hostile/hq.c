/* Registers, bring-up and raw split virtqueues for the hostile driver. */
#include "hostile.h"

struct hq dataq, ctrlq;
static uint64_t offered, negotiated;

uint32_t reg_read(uint32_t reg)
{
    return mmio_read32(VIRTIO_CRYPTO_BASE + reg);
}

void reg_write(uint32_t reg, uint32_t value)
{
    mmio_write32(VIRTIO_CRYPTO_BASE + reg, value);
}

uint32_t config32(uint32_t offset)
{
    return reg_read(VIRTIO_MMIO_CONFIG + offset);
}

uint64_t now_ms(void)
{
    return read_time() / (TIMEBASE_HZ / 1000);
}

static void add_status(uint32_t bits)
{
    reg_write(VIRTIO_MMIO_STATUS, reg_read(VIRTIO_MMIO_STATUS) | bits);
}

int needs_reset(void)
{
    return (reg_read(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET) != 0;
}

uint64_t dev_offered(void)
{
    return offered;
}

int dev_negotiated(int bit)
{
    return (negotiated >> bit) & 1;
}

static void queue_address(uint32_t low, const volatile void *where)
{
    uint64_t addr = (uintptr_t)where;

    reg_write(low, (uint32_t)addr);
    reg_write(low + 4, (uint32_t)(addr >> 32));
}

static int setup_queue(struct hq *q, uint16_t index, uint32_t bad_num)
{
    memset(q, 0, sizeof(*q));
    q->index = index;
    q->rings.avail.flags = 1;               /* NO_INTERRUPT: this driver polls */
    reg_write(VIRTIO_MMIO_QUEUE_SEL, index);
    if (reg_read(VIRTIO_MMIO_QUEUE_READY) != 0)
        return 1;
    uint32_t max = reg_read(VIRTIO_MMIO_QUEUE_NUM_MAX);
    if (max == 0)
        return 1;
    q->size = max < HQ_SIZE ? (uint16_t)max : HQ_SIZE;
    reg_write(VIRTIO_MMIO_QUEUE_NUM, q->size);
    if (bad_num)
        reg_write(VIRTIO_MMIO_QUEUE_NUM, bad_num);     /* a device must not take it */
    queue_address(VIRTIO_MMIO_QUEUE_DESC_LOW, q->rings.desc);
    queue_address(VIRTIO_MMIO_QUEUE_DRIVER_LOW, &q->rings.avail);
    queue_address(VIRTIO_MMIO_QUEUE_DEVICE_LOW, &q->rings.used);
    reg_write(VIRTIO_MMIO_QUEUE_READY, 1);
    return 0;
}

int dev_up(int revision_1, int driver_ok, uint32_t bad_queue_num)
{
    reg_write(VIRTIO_MMIO_STATUS, 0);
    while (reg_read(VIRTIO_MMIO_STATUS) != 0)
        ;
    add_status(VIRTIO_STATUS_ACKNOWLEDGE);
    add_status(VIRTIO_STATUS_DRIVER);
    offered = 0;
    for (uint32_t word = 0; word < 2; word++) {
        reg_write(VIRTIO_MMIO_DEVICE_FEATURES_SEL, word);
        offered |= (uint64_t)reg_read(VIRTIO_MMIO_DEVICE_FEATURES) << (32 * word);
    }
    uint64_t want = (1ULL << F_VERSION_1) | (1ULL << F_INDIRECT_DESC);
    if (revision_1 && (offered & (1ULL << F_REVISION_1)))
        want |= 0x3f;
    negotiated = offered & want;
    for (uint32_t word = 0; word < 2; word++) {
        reg_write(VIRTIO_MMIO_DRIVER_FEATURES_SEL, word);
        reg_write(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(negotiated >> (32 * word)));
    }
    add_status(VIRTIO_STATUS_FEATURES_OK);
    if (!(reg_read(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK))
        return 1;
    uint32_t control = config32(4);         /* max_dataqueues: the control queue's index */
    if (setup_queue(&dataq, 0, bad_queue_num) || setup_queue(&ctrlq, (uint16_t)control, 0))
        return 1;
    if (driver_ok)
        dev_driver_ok();
    return 0;
}

void dev_driver_ok(void)
{
    add_status(VIRTIO_STATUS_DRIVER_OK);
}

void hq_desc(struct hq *q, uint16_t index, uint64_t addr, uint32_t len, uint16_t flags,
             uint16_t next)
{
    struct hq_desc *d = &q->rings.desc[index % HQ_SIZE];

    d->addr = addr;
    d->len = len;
    d->flags = flags;
    d->next = next;
}

uint16_t hq_chain(struct hq *q, const struct hbuf *bufs, int n)
{
    if (q->next_desc + n > q->size)
        q->next_desc = 0;                   /* earlier chains are back by now */
    uint16_t head = q->next_desc;
    for (int i = 0; i < n; i++) {
        uint16_t at = (uint16_t)(head + i);
        int last = i + 1 == n;
        hq_desc(q, at, (uintptr_t)bufs[i].addr, bufs[i].len,
                (uint16_t)((bufs[i].w ? D_WRITE : 0) | (last ? 0 : D_NEXT)),
                (uint16_t)(last ? 0 : at + 1));
    }
    q->next_desc = (uint16_t)(head + n);
    return head;
}

void hq_publish(struct hq *q, uint16_t head)
{
    uint16_t idx = q->rings.avail.idx;

    q->rings.avail.ring[idx % q->size] = head;
    __asm__ volatile("fence w, w" ::: "memory");
    *(volatile uint16_t *)&q->rings.avail.idx = (uint16_t)(idx + 1);
}

void hq_kick(struct hq *q)
{
    reg_write(VIRTIO_MMIO_QUEUE_NOTIFY, q->index);
}

int hq_wait(struct hq *q, uint32_t ms, struct hused *used)
{
    volatile uint16_t *idx = &q->rings.used.idx;
    uint64_t deadline = now_ms() + ms;

    while (*idx == q->last_used) {
        if (now_ms() >= deadline)
            return 0;
    }
    __asm__ volatile("fence r, r" ::: "memory");
    volatile typeof(q->rings.used.ring[0]) *e = &q->rings.used.ring[q->last_used % q->size];
    used->id = e->id;
    used->len = e->len;
    q->last_used++;
    return 1;
}

int hq_transact(struct hq *q, const struct hbuf *bufs, int n, uint32_t ms, struct hused *used)
{
    uint16_t head = hq_chain(q, bufs, n);

    hq_publish(q, head);
    hq_kick(q);
    return hq_wait(q, ms, used) && used->id == head;
}

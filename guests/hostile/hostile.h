/* The hostile driver's own small virtio layer: raw access to one device's registers and
 * to two split virtqueues whose every descriptor, index and flag the cases choose.
 *
 * Unlike the well-behaved driver in ../baremetal, nothing here protects the device from
 * the driver: a case may write any descriptor, any avail.idx, any register, in any
 * order. What it keeps is the means to tell what the device did: the used ring, the
 * status register and the buffers, read back with timeouts so that a device which
 * never answers costs a case, not the run.
 */
#ifndef HOSTILE_H
#define HOSTILE_H

#include <stdint.h>
#include "board.h"
#include "lib.h"
#include "virtio_mmio.h"

#define HQ_SIZE 64                      /* entries per queue (vmsim and QEMU allow 1024) */

struct hq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

#define D_NEXT     1
#define D_WRITE    2
#define D_INDIRECT 4

struct hq_rings {
    struct hq_desc desc[HQ_SIZE] __attribute__((aligned(16)));
    struct {
        uint16_t flags;
        uint16_t idx;
        uint16_t ring[HQ_SIZE];
        uint16_t used_event;
    } avail __attribute__((aligned(2)));
    struct {
        uint16_t flags;
        uint16_t idx;
        struct {
            uint32_t id;
            uint32_t len;
        } ring[HQ_SIZE];
        uint16_t avail_event;
    } used __attribute__((aligned(4)));
} __attribute__((aligned(4096)));

struct hq {
    struct hq_rings rings;
    uint16_t index;                     /* the queue's number on the device */
    uint16_t size;                      /* what QueueNum was set to */
    uint16_t last_used;
    uint16_t next_desc;                 /* where the next chain's descriptors go */
};

/* One buffer of a well-formed chain: read by the device, or written (w = 1). */
struct hbuf {
    const void *addr;
    uint32_t len;
    int w;
};

struct hused {
    uint32_t id;
    uint32_t len;
};

/* Feature bits (bit numbers of the 64-bit word). */
#define F_INDIRECT_DESC 28
#define F_VERSION_1     32
#define F_REVISION_1    0

uint32_t reg_read(uint32_t reg);
void reg_write(uint32_t reg, uint32_t value);
uint32_t config32(uint32_t offset);

/* Reset, then bring the device up as a driver would (VERSION_1, INDIRECT_DESC when
 * offered; with `revision_1`, also REVISION_1 and every stateless bit offered), with
 * data queue 0 and the control queue. `driver_ok` = 0 stops before DRIVER_OK; a
 * non-zero `bad_queue_num` is written to QueueNum after the right value. Returns 0. */
int dev_up(int revision_1, int driver_ok, uint32_t bad_queue_num);
void dev_driver_ok(void);
int dev_negotiated(int bit);
uint64_t dev_offered(void);
int needs_reset(void);

extern struct hq dataq, ctrlq;

/* Write `n` descriptors for `bufs` (readable first) and return the head. */
uint16_t hq_chain(struct hq *q, const struct hbuf *bufs, int n);
/* Write one descriptor verbatim. */
void hq_desc(struct hq *q, uint16_t index, uint64_t addr, uint32_t len, uint16_t flags,
             uint16_t next);
void hq_publish(struct hq *q, uint16_t head);
void hq_kick(struct hq *q);
/* Wait up to `ms` for the next used entry; 1 and the entry if one came. */
int hq_wait(struct hq *q, uint32_t ms, struct hused *used);
/* A well-formed request, start to finish: 1 and the entry if it was answered. */
int hq_transact(struct hq *q, const struct hbuf *bufs, int n, uint32_t ms, struct hused *used);

uint64_t now_ms(void);

#endif

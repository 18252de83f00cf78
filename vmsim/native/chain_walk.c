/*
 * A split virtqueue's chain walk for chains that break no rule: the native form of
 * SplitQueue._walk in devices/virtio/queue.py, which stays the reference. The caller
 * takes this walk's answer when it gives one; for any chain that breaks a rule (or is
 * longer than the output arrays) it declines, and the Python walk runs to find what is
 * wrong and say it in the ChainError it raises.
 *
 * Why: every request the guest makes is one chain to walk. In Python the walk of a
 * 16-byte AF_ALG request's five descriptors took about 19 us of the CPU thread once the
 * guest had run, out of about 250 for the whole request. Here it reads the descriptors
 * in place, in guest RAM, and never writes it.
 */
#include <stdint.h>
#include <string.h>

#define DESC_SIZE 16
#define F_NEXT 1
#define F_WRITE 2
#define F_INDIRECT 4
#define MAX_TABLE_ENTRIES 0x10000   /* an indirect table's limit (u16 next fields) */
#define MAX_TOTAL 0xFFFFFFFFull     /* used.len is 32 bits: no chain carries more */
#define NONE UINT64_MAX

/* Set once per queue by the caller, which checked that the descriptor table (queue_size
 * entries at desc) lies in RAM. */
struct walk_context {
    const uint8_t *ram;     /* host buffer of guest RAM [base, base + size) */
    uint64_t base;
    uint64_t size;
    uint64_t desc;          /* guest address of the descriptor table */
    uint64_t queue_size;
    uint64_t indirect;      /* VIRTIO_F_INDIRECT_DESC was negotiated */
    uint64_t cap;           /* entries of addrs and lengths */
    uint64_t *addrs;        /* out: the segments, readable ones first */
    uint32_t *lengths;
    uint64_t *shape;        /* out: SHAPE_FIELDS values */
};

/* What the walk found besides the segments, in DescriptorChain's argument order. */
enum { SHAPE_READABLE, SHAPE_DESCRIPTORS, SHAPE_INDIRECT, SHAPE_READABLE_LEN,
       SHAPE_WRITABLE_LEN, SHAPE_FIELDS };

static int in_ram(const struct walk_context *c, uint64_t addr, uint64_t len)
{
    if (addr < c->base)
        return 0;
    uint64_t off = addr - c->base;
    return off <= c->size && len <= c->size - off;
}

/*
 * Walk the chain at descriptor `head`. Returns the number of segments and fills
 * addrs, lengths and shape, or -1 where _walk would raise (or the chain has more than
 * cap segments), having written nothing the caller reads.
 */
int vmsim_walk_chain(const struct walk_context *c, int head)
{
    /* (An int and an int result: the caller passes them without ctypes argtypes,
     * the cheaper call.) */
    if (head < 0 || (uint64_t)head >= c->queue_size)
        return -1;
    const uint8_t *table = c->ram + (c->desc - c->base);
    uint64_t table_len = c->queue_size, index = (uint64_t)head;
    uint64_t count = 0, outer = 0, segments = 0, readable = NONE;
    uint64_t total = 0, writable_len = 0;
    int indirect = 0;

    for (;;) {
        uint64_t addr;
        uint32_t len;
        uint16_t flags, next;
        if (++count > table_len)
            return -1;                          /* a loop */
        const uint8_t *d = table + index * DESC_SIZE;
        memcpy(&addr, d, 8);
        memcpy(&len, d + 8, 4);
        memcpy(&flags, d + 12, 2);
        memcpy(&next, d + 14, 2);

        if (flags & F_INDIRECT) {
            if (!c->indirect || indirect || (flags & F_NEXT) || !len || len % DESC_SIZE
                || len > DESC_SIZE * MAX_TABLE_ENTRIES || !in_ram(c, addr, len))
                return -1;
            table = c->ram + (addr - c->base);
            table_len = len / DESC_SIZE;
            indirect = 1;
            index = 0;
            outer = count;
            count = 0;
            continue;
        }
        if (len) {
            if (!in_ram(c, addr, len))
                return -1;
            total += len;
            if (total > MAX_TOTAL)
                return -1;
        }
        if (flags & F_WRITE) {
            if (len) {                 /* an empty writable buffer changes nothing */
                if (readable == NONE)
                    readable = segments;
                if (segments >= c->cap)
                    return -1;
                c->addrs[segments] = addr;
                c->lengths[segments++] = len;
                writable_len += len;
            }
        } else if (readable != NONE) {
            return -1;                          /* readable after writable */
        } else if (len) {
            if (segments >= c->cap)
                return -1;
            c->addrs[segments] = addr;
            c->lengths[segments++] = len;
        }
        if (!(flags & F_NEXT))
            break;
        if (next >= table_len)
            return -1;
        index = next;
    }
    c->shape[SHAPE_READABLE] = readable == NONE ? segments : readable;
    c->shape[SHAPE_DESCRIPTORS] = outer + count;
    c->shape[SHAPE_INDIRECT] = indirect;
    c->shape[SHAPE_READABLE_LEN] = total - writable_len;
    c->shape[SHAPE_WRITABLE_LEN] = writable_len;
    return (int)segments;
}

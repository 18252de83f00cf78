/*
 * The pop trace event's copy of a chain in the shape Linux builds: the head descriptor,
 * the short indirect table it names, and the first bytes of every buffer in the table.
 * The native form of the short path of chain_capture in devices/virtio/queue.py (the
 * Python stays the reference and the fallback).
 *
 * Why: while something observes, every request's pop event makes this copy, and in
 * Python its reads took about 9 us of the CPU thread once the guest had run; the
 * guest's request itself takes about 200.
 */
#include <stdint.h>
#include <string.h>

#define DESC_SIZE 16
#define F_NEXT 1
#define F_INDIRECT 4

/* What stays the same from one call to the next: set once by the caller. */
struct capture_context {
    const uint8_t *ram;     /* host buffer of guest RAM [base, base + size) */
    uint64_t base;
    uint64_t size;
    uint64_t max_entries;   /* longest table copied whole */
    uint64_t cap;           /* bytes of each buffer copied (at most 255) */
    uint8_t *out;
    uint64_t out_size;
};

static int in_ram(const struct capture_context *c, uint64_t addr, uint64_t len)
{
    if (addr < c->base)
        return 0;
    uint64_t off = addr - c->base;
    return off <= c->size && len <= c->size - off;
}

/*
 * desc: the guest address of the head descriptor. Writes to c->out the head descriptor
 * (16 bytes), the table (its length), then per table entry one byte n and the first n
 * bytes of its buffer: n = min(len, cap), or 0 when those bytes are not all in RAM.
 * Returns the bytes written, or -1 when the chain is not one indirect table of 1 to
 * max_entries entries, all in RAM (the caller lists it another way).
 */
int64_t vmsim_capture_table(const struct capture_context *c, uint64_t desc)
{
    if (!in_ram(c, desc, DESC_SIZE))
        return -1;
    const uint8_t *head = c->ram + (desc - c->base);
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    memcpy(&addr, head, 8);
    memcpy(&len, head + 8, 4);
    memcpy(&flags, head + 12, 2);
    if ((flags & (F_INDIRECT | F_NEXT)) != F_INDIRECT || !len || len % DESC_SIZE
        || len > DESC_SIZE * c->max_entries || !in_ram(c, addr, len))
        return -1;
    uint64_t count = len / DESC_SIZE;
    if (c->cap > 255 || c->out_size < DESC_SIZE + len + count * (1 + c->cap))
        return -1;
    const uint8_t *table = c->ram + (addr - c->base);
    uint8_t *out = c->out;
    memcpy(out, head, DESC_SIZE);
    memcpy(out + DESC_SIZE, table, len);
    out += DESC_SIZE + len;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t buf;
        uint32_t buf_len;
        memcpy(&buf, table + i * DESC_SIZE, 8);
        memcpy(&buf_len, table + i * DESC_SIZE + 8, 4);
        uint64_t n = buf_len < c->cap ? buf_len : c->cap;
        if (!in_ram(c, buf, n))
            n = 0;
        *out++ = (uint8_t)n;
        if (n)
            memcpy(out, c->ram + (buf - c->base), n);
        out += n;
    }
    return out - c->out;
}

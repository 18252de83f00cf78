/*
 * The trace events' copy of a chain in the shape Linux builds: the head descriptor, the
 * indirect table it names, and the first bytes of each buffer the observer lists. The
 * native form of chain_capture in devices/virtio/queue.py for such chains (the Python
 * stays the reference and the fallback).
 *
 * Why: while something observes, every request's pop and completion events make this
 * copy; in Python, a short table's reads took about 9 us of the CPU thread once the
 * guest had run (the whole request takes about 200), and a 64 KiB request's table of
 * ~276 entries was walked entry by entry.
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
    uint64_t max_entries;   /* longest table copied (at most MAX_TABLE) */
    uint64_t max_listed;    /* entries a long table's listing shows before it skips */
    uint64_t cap;           /* bytes of each buffer copied (at most 255) */
    uint8_t *out;
    uint64_t out_size;
    uint64_t desc;          /* guest address of the descriptor table */
};

#define MAX_TABLE 4096

static int in_ram(const struct capture_context *c, uint64_t addr, uint64_t len)
{
    if (addr < c->base)
        return 0;
    uint64_t off = addr - c->base;
    return off <= c->size && len <= c->size - off;
}

static void entry(const uint8_t *table, uint64_t i, uint64_t *addr, uint32_t *len,
                  uint16_t *flags, uint16_t *next)
{
    memcpy(addr, table + i * DESC_SIZE, 8);
    memcpy(len, table + i * DESC_SIZE + 8, 4);
    memcpy(flags, table + i * DESC_SIZE + 12, 2);
    memcpy(next, table + i * DESC_SIZE + 14, 2);
}

/*
 * head: the head descriptor's index in the table. Writes to c->out the head descriptor
 * (16 bytes), the table (its length), then per table entry one byte n and the first n
 * bytes of its buffer: n = min(len, cap) for the entries the observer lists (the walk
 * of _list_table in devices/virtio/queue.py: in chain order, and past max_listed
 * entries only the last), 0 for the others and where those bytes are not all in RAM.
 * Returns the bytes written, or -1 when the chain is not one indirect table of 1 to
 * max_entries entries, all in RAM (the caller lists it another way).
 */
int vmsim_capture_table(const struct capture_context *c, int head_index)
{
    /* (An int and an int result: the caller passes them without ctypes argtypes,
     * the cheaper call.) */
    if (head_index < 0 || c->desc > UINT64_MAX - DESC_SIZE * (uint64_t)head_index)
        return -1;
    uint64_t desc = c->desc + DESC_SIZE * (uint64_t)head_index;
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
    if (c->cap > 255 || count > MAX_TABLE
        || c->out_size < DESC_SIZE + len + count * (1 + c->cap))
        return -1;
    const uint8_t *table = c->ram + (addr - c->base);

    /* The entries the observer's walk reaches: only theirs are copied. */
    uint8_t listed[MAX_TABLE];
    memset(listed, 0, count);
    uint64_t index = 0;
    for (uint64_t step = 0; step <= count; step++) {
        uint64_t buf;
        uint32_t buf_len;
        uint16_t buf_flags, next;
        entry(table, index, &buf, &buf_len, &buf_flags, &next);
        if (index >= c->max_listed && (buf_flags & F_NEXT) && next < count) {
            index = count - 1;
            continue;
        }
        listed[index] = 1;
        if (!(buf_flags & F_NEXT) || next >= count)
            break;
        index = next;
    }

    uint8_t *out = c->out;
    memcpy(out, head, DESC_SIZE);
    memcpy(out + DESC_SIZE, table, len);
    out += DESC_SIZE + len;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t buf;
        uint32_t buf_len;
        uint16_t buf_flags, next;
        entry(table, i, &buf, &buf_len, &buf_flags, &next);
        uint64_t n = buf_len < c->cap ? buf_len : c->cap;
        if (!listed[i] || !in_ram(c, buf, n))
            n = 0;
        *out++ = (uint8_t)n;
        if (n)
            memcpy(out, c->ram + (buf - c->base), n);
        out += n;
    }
    return (int)(out - c->out);
}

/*
 * The check of an indirect descriptor table for the shape Linux builds, and the copy of
 * its addresses and lengths: the native form of _linear_table in
 * devices/virtio/queue.py, which is the reference and says why the shape matters.
 *
 * Why: Linux's 64 KiB AF_ALG request carries a table of ~276 descriptors. In Python
 * the check took about a tenth of the whole request once the guest had run. Here it is
 * one pass over a copy of the table the caller made; nothing here reads guest memory,
 * and the caller checks the span it returns against RAM.
 */
#include <stdint.h>
#include <string.h>

#define DESC_SIZE 16
#define F_NEXT 1
#define F_WRITE 2

/* Outputs besides the two arrays, in this order (uint64_t each). */
enum { SHAPE_READABLE, SHAPE_READABLE_LEN, SHAPE_WRITABLE_LEN, SHAPE_LOW, SHAPE_TOP,
       SHAPE_LONGEST, SHAPE_FIELDS };

/*
 * table: n descriptors of 16 bytes, little-endian. Returns 1 and fills addrs[n],
 * lengths[n] and shape[SHAPE_FIELDS] when the table has the shape (entries chained in
 * order; flags' low byte NEXT for readable entries, which come first, NEXT|WRITE for
 * writable ones, the last 0 or WRITE; no empty buffer; no readable entry when
 * after_writable); returns 0 otherwise. The span's bound, the highest address plus the
 * longest length, may pass 2^64: the caller adds shape[SHAPE_TOP] and
 * shape[SHAPE_LONGEST] itself.
 */
int vmsim_linear_table(const uint8_t *table, uint32_t n, int after_writable,
                       uint64_t *addrs, uint32_t *lengths, uint64_t *shape)
{
    uint64_t low = UINT64_MAX, top = 0, longest = 0, readable_len = 0, writable_len = 0;
    uint32_t i, readable = 0;
    int writing = 0;

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    return 0;               /* the fields are read in the host's byte order */
#endif
    if (n == 0) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        const uint8_t *desc = table + (size_t)DESC_SIZE * i;
        uint64_t addr;
        uint32_t length;
        uint16_t flags, next;
        uint8_t kind;

        memcpy(&addr, desc, 8);
        memcpy(&length, desc + 8, 4);
        memcpy(&flags, desc + 12, 2);
        memcpy(&next, desc + 14, 2);
        kind = flags & 0xFF;
        if (i + 1 < n) {
            if (next != i + 1) {
                return 0;
            }
            if (kind == F_NEXT && !writing) {
                readable++;
            } else if (kind == (F_NEXT | F_WRITE)) {
                writing = 1;
            } else {
                return 0;
            }
        } else if (kind == 0) {
            if (writing) {          /* a readable last entry after writable ones */
                return 0;
            }
            readable++;
        } else if (kind != F_WRITE) {
            return 0;
        }
        if (length == 0) {
            return 0;
        }
        addrs[i] = addr;
        lengths[i] = length;
        if (i < readable) {
            readable_len += length;
        } else {
            writable_len += length;
        }
        if (addr < low) {
            low = addr;
        }
        if (addr > top) {
            top = addr;
        }
        if (length > longest) {
            longest = length;
        }
    }
    if (readable && after_writable) {
        return 0;
    }
    shape[SHAPE_READABLE] = readable;
    shape[SHAPE_READABLE_LEN] = readable_len;
    shape[SHAPE_WRITABLE_LEN] = writable_len;
    shape[SHAPE_LOW] = low;
    shape[SHAPE_TOP] = top;
    shape[SHAPE_LONGEST] = longest;
    return 1;
}

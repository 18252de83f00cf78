/* The board: what a bare-metal program needs from vmsim's machine (QEMU virt layout).
 *
 *   0x10000000  UART 16550A (text out)
 *   0x00100000  sifive-test power device (exit status)
 *   0x10001000  virtio-mmio slot 0 (+0x1000 per slot)
 *   time CSR    10 MHz timebase (timebase-frequency in the device tree)
 *
 * The addresses are fixed here rather than read from the device tree, to keep the
 * example short; a real driver would look them up under /soc.
 */
#ifndef BOARD_H
#define BOARD_H

#include <stdint.h>

#define UART_BASE        0x10000000UL
#define POWER_BASE       0x00100000UL
#define VIRTIO_SLOT0     0x10001000UL
#ifndef VIRTIO_CRYPTO_BASE
#define VIRTIO_CRYPTO_BASE VIRTIO_SLOT0  /* QEMU virt fills slots from the top: 0x10008000 */
#endif
#define TIMEBASE_HZ      10000000UL

/* Device registers are uncached I/O. The fences order them against ordinary memory
 * (RISC-V "o"/"i" = device output/input): a write to a register happens only after
 * every earlier write to RAM, so a doorbell never overtakes the ring update it
 * announces, and a register read completes before later RAM reads. */
static inline uint32_t mmio_read32(uintptr_t addr)
{
    uint32_t value = *(volatile uint32_t *)addr;
    __asm__ volatile("fence i, r" ::: "memory");
    return value;
}

static inline void mmio_write32(uintptr_t addr, uint32_t value)
{
    __asm__ volatile("fence w, o" ::: "memory");
    *(volatile uint32_t *)addr = value;
}

/* The timebase counter. Depending on the engine, vmsim may emulate each read in a
 * host trap (about 8 us), so read it sparingly: once before and once after what is
 * being timed. */
static inline uint64_t read_time(void)
{
    uint64_t t;
    __asm__ volatile("rdtime %0" : "=r"(t));
    return t;
}

static inline uint64_t ticks_to_us(uint64_t ticks)
{
    return ticks / (TIMEBASE_HZ / 1000000UL);
}

void uart_putc(char c);
void uart_puts(const char *s);
void uart_put_dec(uint64_t value);
void uart_put_hex(uint64_t value);

/* Power off through the sifive-test device: 0 passes, anything else fails with that
 * code (vmsim's exit status). Never returns. */
void board_exit(int code) __attribute__((noreturn));

#endif

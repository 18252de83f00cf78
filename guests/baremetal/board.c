/* UART text output, the exit device, and the handler for traps that should not happen. */
#include "board.h"

#define UART_THR         0      /* transmit holding register */
#define UART_LSR         5      /* line status register */
#define UART_LSR_THRE    0x20   /* THR empty: room for a byte */

#define POWER_PASS       0x5555
#define POWER_FAIL       0x3333 /* | (code << 16) */

void uart_putc(char c)
{
    volatile uint8_t *uart = (volatile uint8_t *)UART_BASE;

    while (!(uart[UART_LSR] & UART_LSR_THRE))
        ;
    uart[UART_THR] = (uint8_t)c;
}

void uart_puts(const char *s)
{
    while (*s)
        uart_putc(*s++);
}

void uart_put_dec(uint64_t value)
{
    char digits[20];
    int n = 0;

    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    while (n)
        uart_putc(digits[--n]);
}

void uart_put_hex(uint64_t value)
{
    uart_puts("0x");
    for (int shift = 60; shift >= 0; shift -= 4)
        uart_putc("0123456789abcdef"[(value >> shift) & 0xf]);
}

void board_exit(int code)
{
    uint32_t word = code == 0 ? POWER_PASS : ((uint32_t)(code & 0xffff) << 16) | POWER_FAIL;

    mmio_write32(POWER_BASE, word);
    for (;;)
        ;
}

/* Called from start.S for any trap: interrupts are off and nothing here should fault. */
void unexpected_trap(uint64_t cause, uint64_t epc, uint64_t tval) __attribute__((noreturn));
void unexpected_trap(uint64_t cause, uint64_t epc, uint64_t tval)
{
    uart_puts("\nunexpected trap: scause=");
    uart_put_hex(cause);
    uart_puts(" sepc=");
    uart_put_hex(epc);
    uart_puts(" stval=");
    uart_put_hex(tval);
    uart_putc('\n');
    board_exit(0x7f);
}

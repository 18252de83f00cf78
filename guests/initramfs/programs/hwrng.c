/*
 * Reads the hardware RNG the kernel picked (/dev/hwrng, served by Linux's virtio_rng
 * driver when the machine has -device virtio-rng) and reports what it got:
 *
 *   @vmsim event=hwrng-current name=<rng_current, "none" without an rng>
 *   @vmsim test=hwrng result=pass|fail current=<name> want=<n> bytes=<read> err=<errno>
 *          ms=<time> digest=<fnv1a64> distinct=<byte values seen> longest_run=<bytes>
 *          max_count=<most frequent value's count> head=<first 32 bytes, hex>
 *
 * It passes when /sys/class/misc/hw_random/rng_current names a virtio_rng device
 * and vmsim.hwrng_bytes (default 65536) bytes were read.  Whether the bytes look
 * random is the host's call, from the statistics (tests/e2e/test_virtio_rng.py); the
 * digest and head let it check a device whose bytes it knows.  Without an rng the
 * result is fail with what=no-device.
 */
#include "testgen.h"
#include "vmsim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define TEST "hwrng"
/* Overridable so that a host test can run the statistics on a file. */
#ifndef CURRENT_PATH
#define CURRENT_PATH "/sys/class/misc/hw_random/rng_current"
#endif
#ifndef DEVICE_PATH
#define DEVICE_PATH "/dev/hwrng"
#endif
#define DEFAULT_BYTES 65536
#define MAX_BYTES (1 << 20)
#define HEAD_BYTES 32

static uint8_t data[MAX_BYTES];

/* rng_current without its newline, or "missing" when the hwrng core is absent. */
static void read_current(char *buf, size_t len)
{
    snprintf(buf, len, "missing");
    int fd = open(CURRENT_PATH, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n <= 0) {
        snprintf(buf, len, "unreadable");
        return;
    }
    buf[n] = '\0';
    buf[strcspn(buf, " \t\n")] = '\0';
}

/* Reads up to `want` bytes; returns how many, with the errno that stopped it in *err. */
static size_t read_rng(size_t want, int *err)
{
    *err = 0;
    int fd = open(DEVICE_PATH, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *err = errno;
        return 0;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t n = read(fd, data + got, want - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            *err = n < 0 ? errno : 0;
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    return got;
}

int main(void)
{
    long want_long = vmsim_param_long("hwrng_bytes", DEFAULT_BYTES);
    size_t want = want_long > MAX_BYTES ? MAX_BYTES : (size_t)want_long;

    char current[64];
    read_current(current, sizeof(current));
    vmsim_line("@vmsim event=hwrng-current name=%s", current);

    long long start = vmsim_coarse_ms();
    int err = 0;
    size_t got = read_rng(want, &err);
    long long ms = vmsim_coarse_ms() - start;

    size_t counts[256] = {0};
    size_t run = 0, longest = 0, max_count = 0;
    unsigned distinct = 0;
    for (size_t i = 0; i < got; i++) {
        counts[data[i]]++;
        run = i > 0 && data[i] == data[i - 1] ? run + 1 : 1;
        if (run > longest)
            longest = run;
    }
    for (int v = 0; v < 256; v++) {
        distinct += counts[v] != 0;
        if (counts[v] > max_count)
            max_count = counts[v];
    }
    char head[2 * HEAD_BYTES + 1] = "";
    for (size_t i = 0; i < got && i < HEAD_BYTES; i++)
        snprintf(head + 2 * i, 3, "%02x", data[i]);

    const char *what = "none";
    if (strcmp(current, "none") == 0 || strcmp(current, "missing") == 0)
        what = "no-device";
    else if (strncmp(current, "virtio_rng", 10) != 0)
        what = "not-virtio";
    else if (got != want)
        what = "short-read";
    int ok = strcmp(what, "none") == 0;
    vmsim_result(TEST, ok ? "pass" : "fail",
                 "what=%s current=%s want=%zu bytes=%zu err=%d ms=%lld digest=%016llx "
                 "distinct=%u longest_run=%zu max_count=%zu head=%s",
                 what, current, want, got, err, ms,
                 (unsigned long long)fnv1a64(data, got), distinct, longest, max_count,
                 head[0] ? head : "-");
    return ok ? 0 : 1;
}

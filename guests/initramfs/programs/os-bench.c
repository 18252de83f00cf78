/*
 * The guest operating system's everyday work, timed from inside the guest for the
 * host's bench/guest_os.py: page faults on fresh anonymous memory, mmap/touch/munmap,
 * fork+exit+wait, a trivial system call, a pipe ping-pong between two processes,
 * clock reads, a pure user loop and memcpy.
 *
 * Each point repeats its operation in batches until vmsim.bench_ms (default 500) have
 * passed and prints one line:
 *
 *   @vmsim event=osbench name=<point> ops=<n> ns=<elapsed> ns_per_op=<x> err=<errno>
 *
 * Time is CLOCK_MONOTONIC through the vdso, which reads the time CSR: natively on
 * QEMU and on vmsim's patched engine, so reading it costs what the `clock` point
 * shows, and batches keep that small next to what is measured.  The names to run can
 * be narrowed with vmsim.points=a,b (default: all).
 */
#define _GNU_SOURCE
#include "vmsim.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TEST "os-bench"
#define PAGE 4096
#define FAULT_REGION (4u << 20)         /* pages faulted in per mmap */
#define COPY_LEN 65536
#define LOOP_ITERS 100000

static uint8_t copy_src[COPY_LEN] __attribute__((aligned(4096)));
static uint8_t copy_dst[COPY_LEN] __attribute__((aligned(4096)));

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

struct result {
    long long ops;
    long long ns;
    int err;
};

/* One point's operation: runs `batch` times (or as the point defines an op), adds to
 * r->ops and, for points that time only part of their work, to r->ns. */
typedef int (*batch_fn)(struct result *r);

/* Page faults: a fresh anonymous mapping, one write per page; only the writes count. */
static int batch_pagefault(struct result *r)
{
    uint8_t *p = mmap(NULL, FAULT_REGION, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return errno;
    madvise(p, FAULT_REGION, MADV_NOHUGEPAGE);     /* one fault per page, on any config */
    long long t0 = now_ns();
    for (size_t off = 0; off < FAULT_REGION; off += PAGE)
        p[off] = 1;
    r->ns += now_ns() - t0;
    r->ops += FAULT_REGION / PAGE;
    munmap(p, FAULT_REGION);
    return 0;
}

static int batch_mmap(struct result *r)
{
    for (int i = 0; i < 64; i++) {
        volatile uint8_t *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return errno;
        p[0] = 1;
        if (munmap((void *)p, PAGE) != 0)
            return errno;
    }
    r->ops += 64;
    return 0;
}

static int batch_fork(struct result *r)
{
    for (int i = 0; i < 8; i++) {
        pid_t pid = fork();
        if (pid < 0)
            return errno;
        if (pid == 0)
            _exit(0);
        int status;
        if (waitpid(pid, &status, 0) != pid)
            return errno;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            return ECHILD;
    }
    r->ops += 8;
    return 0;
}

static int batch_syscall(struct result *r)
{
    for (int i = 0; i < 256; i++)
        syscall(SYS_getppid);           /* not cached by the C library */
    r->ops += 256;
    return 0;
}

static int batch_clock(struct result *r)
{
    struct timespec ts;
    for (int i = 0; i < 1024; i++)
        clock_gettime(CLOCK_MONOTONIC, &ts);
    r->ops += 1024;
    return 0;
}

static int batch_loop(struct result *r)
{
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < LOOP_ITERS; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        __asm__ volatile("" : "+r"(x));  /* keep every iteration */
    }
    r->ops += LOOP_ITERS;
    return 0;
}

static int batch_memcpy(struct result *r)
{
    for (int i = 0; i < 8; i++) {
        memcpy(copy_dst, copy_src, COPY_LEN);
        __asm__ volatile("" : : "r"(copy_dst) : "memory");
    }
    r->ops += 8;
    return 0;
}

/* Pipe ping-pong: one byte there and back between this process and a child. */
static int pipe_to_child[2], pipe_to_parent[2];

static int batch_pipe(struct result *r)
{
    char byte = 'p';
    for (int i = 0; i < 64; i++) {
        if (write(pipe_to_child[1], &byte, 1) != 1 || read(pipe_to_parent[0], &byte, 1) != 1)
            return errno ? errno : EIO;
    }
    r->ops += 64;
    return 0;
}

static int pipe_start(pid_t *child)
{
    if (pipe(pipe_to_child) != 0 || pipe(pipe_to_parent) != 0)
        return errno;
    *child = fork();
    if (*child < 0)
        return errno;
    if (*child == 0) {
        char byte;
        close(pipe_to_child[1]);
        close(pipe_to_parent[0]);
        while (read(pipe_to_child[0], &byte, 1) == 1)
            if (write(pipe_to_parent[1], &byte, 1) != 1)
                _exit(1);
        _exit(0);
    }
    close(pipe_to_child[0]);
    close(pipe_to_parent[1]);
    return 0;
}

static int pipe_stop(pid_t child)
{
    close(pipe_to_child[1]);            /* the child reads EOF and exits */
    close(pipe_to_parent[0]);
    int status;
    if (waitpid(child, &status, 0) != child)
        return errno;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : ECHILD;
}

struct point {
    const char *name;
    batch_fn fn;
    int self_timed;                     /* the batch adds its own ns */
};

static const struct point points[] = {
    {"pagefault", batch_pagefault, 1},
    {"mmap", batch_mmap, 0},
    {"fork", batch_fork, 0},
    {"syscall", batch_syscall, 0},
    {"pipe", batch_pipe, 0},
    {"clock", batch_clock, 0},
    {"loop", batch_loop, 0},
    {"memcpy", batch_memcpy, 0},
};

static int wanted(const char *name, const char *list)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        p += len + (end != NULL);
    }
    return 0;
}

static struct result run_point(const struct point *pt, long ms)
{
    struct result r = {0, 0, 0};
    pid_t child = -1;
    if (pt->fn == batch_pipe && (r.err = pipe_start(&child)) != 0)
        return r;
    pt->fn(&r);                         /* warm up: code, page tables, caches */
    r.ops = r.ns = 0;
    long long start = now_ns(), end = start + ms * 1000000LL, t = start;
    while (t < end && !r.err) {
        r.err = pt->fn(&r);
        t = now_ns();
    }
    if (!pt->self_timed)
        r.ns = t - start;
    if (child > 0) {
        int err = pipe_stop(child);
        r.err = r.err ? r.err : err;
    }
    return r;
}

int main(void)
{
    long ms = vmsim_param_long("bench_ms", 500);
    char list[256];
    int all = !vmsim_param("points", list, sizeof(list));
    memset(copy_src, 0x5a, sizeof(copy_src));
    memset(copy_dst, 0xa5, sizeof(copy_dst));

    int failed = 0, ran = 0;
    for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
        if (!all && !wanted(points[i].name, list))
            continue;
        struct result r = run_point(&points[i], ms);
        double per_op = r.ops ? (double)r.ns / (double)r.ops : 0.0;
        vmsim_line("@vmsim event=osbench name=%s ops=%lld ns=%lld ns_per_op=%.2f err=%d",
                   points[i].name, r.ops, r.ns, per_op, r.err);
        failed += r.err != 0 || r.ops == 0;
        ran++;
    }
    vmsim_result(TEST, failed || !ran ? "fail" : "pass", "points=%d bench_ms=%ld", ran, ms);
    return failed || !ran ? 1 : 0;
}

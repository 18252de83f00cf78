/*
 * Throughput of AES-128-CBC encryption through AF_ALG, bound by driver name
 * (vmsim.bench_driver, default virtio_crypto_aes_cbc), for the host's
 * bench/guest_crypto.py.
 *
 * For each request size (16 B, 256 B, 4 KiB, 64 KiB) it runs one process, then
 * vmsim.procs processes (default 4), each looping encryptions for vmsim.bench_ms
 * (default 1000), in one or both of two patterns (vmsim.bench_pattern=persistent,
 * oneshot or both; default persistent):
 *
 *   persistent  one operation socket per process, accepted once; every request is a
 *               sendmsg (operation and IV in control messages, then the data) and a
 *               recvmsg of the result on it;
 *   oneshot     a new operation socket for every request: accept, the same sendmsg
 *               and recvmsg, close. This is what a program that encrypts one buffer
 *               now and then does, and it adds the socket's setup to every request.
 *
 * It prints one line per point:
 *
 *   @vmsim event=bench pattern=<p> size=<bytes> procs=<n> ops=<total> ms=<elapsed>
 *          ops_per_s=<x> mb_per_s=<x>     (MB = 10^6 bytes)
 *
 * Time comes from the coarse clock only (vmsim_coarse_ms): reading rdtime traps to
 * the emulator and would slow the very thing being measured.
 */
#define _GNU_SOURCE
#include "afalg.h"
#include "children.h"
#include "testgen.h"
#include "vmsim.h"

#include <sched.h>
#include <sys/mman.h>

#define TEST "afalg-bench"
#define MAX_LEN 65536
#define START_DELAY_MS 30       /* lets every child get ready before the clock starts */
#define HANG_MARGIN_MS 30000

static const size_t sizes[] = {16, 256, 4096, 65536};

static uint8_t in_buf[MAX_LEN] __attribute__((aligned(4096)));
static uint8_t out_buf[MAX_LEN] __attribute__((aligned(4096)));

struct point {
    const char *driver;
    int oneshot;                    /* a new operation socket per request */
    size_t size;
    long long start_ms;
    long ms;
    long ops[CHILDREN_MAX];         /* shared with the children */
    long elapsed[CHILDREN_MAX];
    int err[CHILDREN_MAX];
};

/* One request on an operation socket of its own: accept, send, receive, close. */
static int oneshot_crypt(int tfm, const uint8_t *iv, size_t len)
{
    int op = accept4(tfm, NULL, NULL, SOCK_CLOEXEC);
    if (op < 0)
        return afalg_errno();
    int err = afalg_crypt(op, 1, iv, in_buf, out_buf, len, AFALG_SINGLE);
    close(op);
    return err;
}

static int bench_child(int id, void *arg)
{
    struct point *p = arg;
    uint8_t key[16], iv[AFALG_IV_LEN];
    struct testgen g;
    testgen_seed(&g, 0x62656e6368000000ULL + (uint64_t)id);   /* "bench" + id */
    testgen_fill(&g, key, sizeof(key));
    testgen_fill(&g, iv, sizeof(iv));
    testgen_fill(&g, in_buf, p->size);

    struct afalg_cipher c;
    int err = afalg_open_cipher(&c, p->driver, key, sizeof(key));
    if (err) {
        p->err[id] = err;
        return 1;
    }
    while (vmsim_coarse_ms() < p->start_ms)
        sched_yield();
    long ops = 0;
    long long now = p->start_ms;
    long long end = p->start_ms + p->ms;
    while (now < end) {
        if (p->oneshot)
            err = oneshot_crypt(c.tfm, iv, p->size);
        else
            err = afalg_crypt(c.op, 1, iv, in_buf, out_buf, p->size, AFALG_SINGLE);
        if (err)
            break;
        ops++;
        now = vmsim_coarse_ms();
    }
    afalg_close(&c);
    p->ops[id] = ops;
    p->elapsed[id] = (long)(now - p->start_ms);
    p->err[id] = err;
    return err ? 1 : 0;
}

/* Runs one point; returns 0 when every process finished cleanly. */
static int run_point(struct point *p, int procs)
{
    memset(p->ops, 0, sizeof(p->ops));
    memset(p->elapsed, 0, sizeof(p->elapsed));
    memset(p->err, 0, sizeof(p->err));
    p->start_ms = vmsim_coarse_ms() + START_DELAY_MS;
    struct children kids;
    int failed = children_start(&kids, procs, bench_child, p) != 0;
    failed |= children_wait(&kids, p->ms + START_DELAY_MS + HANG_MARGIN_MS) != 0;

    long total = 0, ms = 1;
    int err = 0;
    for (int i = 0; i < procs; i++) {
        total += p->ops[i];
        ms = p->elapsed[i] > ms ? p->elapsed[i] : ms;
        err = err ? err : p->err[i];
    }
    double ops_per_s = 1000.0 * (double)total / (double)ms;
    vmsim_line("@vmsim event=bench pattern=%s size=%zu procs=%d ops=%ld ms=%ld "
               "ops_per_s=%.1f mb_per_s=%.3f err=%d hung=%d",
               p->oneshot ? "oneshot" : "persistent", p->size, procs, total, ms, ops_per_s,
               ops_per_s * (double)p->size / 1e6, -err, kids.hung);
    return failed || err;
}

int main(void)
{
    struct point *p = mmap(NULL, sizeof(*p), PROT_READ | PROT_WRITE,
                           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        vmsim_result(TEST, "fail", "what=mmap errno=%d", errno);
        return 1;
    }
    char driver[128];
    afalg_driver_param("bench_driver", driver, sizeof(driver));
    p->driver = driver;
    p->ms = vmsim_param_long("bench_ms", 1000);
    long procs = vmsim_param_long("procs", 4);
    if (procs < 1 || procs > CHILDREN_MAX)
        procs = 4;
    char pattern[16];
    if (!vmsim_param("bench_pattern", pattern, sizeof(pattern)))
        snprintf(pattern, sizeof(pattern), "persistent");
    int persistent = !strcmp(pattern, "persistent") || !strcmp(pattern, "both");
    int oneshot = !strcmp(pattern, "oneshot") || !strcmp(pattern, "both");
    if (!persistent && !oneshot) {
        vmsim_result(TEST, "fail", "what=bench_pattern pattern=%s", pattern);
        return 1;
    }

    int failed = 0;
    for (int shot = 0; shot < 2; shot++) {
        if (!(shot ? oneshot : persistent))
            continue;
        p->oneshot = shot;
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            p->size = sizes[i];
            failed += run_point(p, 1);
            if (procs > 1)
                failed += run_point(p, (int)procs);
        }
    }
    vmsim_result(TEST, failed ? "fail" : "pass", "driver=%s bench_ms=%ld procs=%ld pattern=%s",
                 driver, p->ms, procs, pattern);
    return failed ? 1 : 0;
}

/*
 * What the virtio_crypto driver hands user space while the device misbehaves on
 * purpose (vmsim's fault rules, docs/faults.md).
 *
 * One cbc(aes) tfm bound to the virtio driver is keyed first; then the program prints
 *
 *   @vmsim event=fault-ready ops=<n>
 *
 * waits until the console has sent that line (the host arms its rules on it), and runs
 * n encryptions of the same 64 bytes one after the other, each in a child process
 * with its own operation socket.  A child prints what it got:
 *
 *   @vmsim event=fault-op n=<k> err=<errno> us=<how long it took> ct=<hex of the output>
 *
 * and the parent waits for it at most vmsim.fault_wait_ms (default 2000), then prints
 *
 *   @vmsim event=fault-wait n=<k> done=<0|1>
 *
 * and goes on: a request the device never completes leaves its child in an
 * uninterruptible wait, which the program can only report, never end (the init powers
 * the machine off without waiting for it).  The host checks every ct of err=0 with its
 * own AES (key a0..af, IV 0, plaintext 00..3f).  Last, a fresh bind shows whether the
 * driver still offers the algorithm:
 *
 *   @vmsim event=fault-bind err=<errno>
 */
#define _GNU_SOURCE
#include "afalg.h"
#include "vmsim.h"

#include <signal.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>

#define TEST "afalg-faults"
#define LEN 64

static uint8_t key[16], iv[AFALG_IV_LEN], plain[LEN];

static long long now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static int encrypt_once(int tfm, int n)
{
    uint8_t out[LEN] = {0};
    char hex[2 * LEN + 1];
    long long start = now_us();
    int op = accept4(tfm, NULL, NULL, SOCK_CLOEXEC);
    int err = op < 0 ? afalg_errno() : afalg_crypt(op, 1, iv, plain, out, LEN, AFALG_SINGLE);
    long long took = now_us() - start;
    for (int i = 0; i < LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", out[i]);
    vmsim_line("@vmsim event=fault-op n=%d err=%d us=%lld ct=%s", n, -err, took, hex);
    return err ? 1 : 0;
}

/* Waits for `pid` until `ms` passed; 1 if it exited. Never kills it (see above). */
static int wait_for(pid_t pid, long ms)
{
    long long deadline = vmsim_coarse_ms() + ms;
    while (vmsim_coarse_ms() < deadline) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return 1;
        struct timespec nap = {0, 10 * 1000000L};
        nanosleep(&nap, NULL);
    }
    return 0;
}

int main(void)
{
    char driver[128];
    afalg_driver_param("kat_driver", driver, sizeof(driver));
    long ops = vmsim_param_long("fault_ops", 12);
    long wait_ms = vmsim_param_long("fault_wait_ms", 2000);
    for (int i = 0; i < LEN; i++)
        plain[i] = (uint8_t)i;
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)(0xA0 + i);
    struct afalg_cipher c;
    int err = afalg_open_cipher(&c, driver, key, sizeof(key));
    if (err) {
        vmsim_result(TEST, "fail", "setup=bind err=%d", -err);
        return 1;
    }
    signal(SIGCHLD, SIG_DFL);
    vmsim_line("@vmsim event=fault-ready ops=%ld", ops);
    tcdrain(STDOUT_FILENO);
    int hung = 0;
    for (int n = 1; n <= ops; n++) {
        pid_t pid = fork();
        if (pid < 0) {
            vmsim_result(TEST, "fail", "setup=fork err=%d", errno);
            return 1;
        }
        if (pid == 0)
            _exit(encrypt_once(c.tfm, n));
        int done = wait_for(pid, wait_ms);
        hung += !done;
        vmsim_line("@vmsim event=fault-wait n=%d done=%d", n, done);
    }
    int fd = afalg_bind("skcipher", driver);
    vmsim_line("@vmsim event=fault-bind err=%d", fd < 0 ? -fd : 0);
    if (fd >= 0)
        close(fd);
    vmsim_result(TEST, "pass", "ops=%ld hung=%d", ops, hung);
    return 0;
}

/*
 * One AES-CBC request of 1 MiB in 65536 source pieces, which the Linux 6.1
 * virtio_crypto driver hands the device as one indirect table of more than 65536
 * descriptors, then ordinary requests on the same device, a new key included.
 *
 * The device refuses a chain that long, but it can still find the chain's status
 * byte, so it answers the request with an error status (docs/virtio-crypto.md).  A
 * device that only sets DEVICE_NEEDS_RESET leaves this request, and every later one
 * (setkey included), waiting forever: 6.1 ignores that status bit.
 *
 * Making one request that big from user space takes three limits raised: optmem_max
 * (AF_ALG keeps its scatterlists in socket option memory), and wmem_max and rmem_max
 * (the whole request must be queued before the receive, or the kernel splits it).
 * The data then goes in through a pipe in 16-byte pieces: each pipe buffer becomes a
 * scatterlist entry of its own.
 *
 *   @vmsim event=huge len=<bytes> pieces=<n> err=<errno> ms=<elapsed>
 *   @vmsim event=after what=setkey|roundtrip err=<errno> ok=0|1
 *   @vmsim test=afalg-huge result=pass|fail err=<errno of the huge request>
 *
 * pass: the huge request came back (with any status) and, afterwards, a new key and
 * a 4 KiB encrypt/decrypt round trip on the device both worked.  The host checks the
 * errno and the device's log.
 */
#define _GNU_SOURCE
#include "afalg.h"
#include "testgen.h"
#include "vmsim.h"

#include <time.h>

#define TEST "afalg-huge"
#define PIECE 16
#define PIECES 65536
#define HUGE_LEN (PIECE * PIECES)
#define PIPE_BYTES (1 << 20)
#define LIMIT "16777216"
#define SOCKET_BUF (8 << 20)

static uint8_t plain[HUGE_LEN] __attribute__((aligned(4096)));
static uint8_t out[HUGE_LEN] __attribute__((aligned(4096)));

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return afalg_errno();
    ssize_t n = write(fd, text, strlen(text));
    int err = n == (ssize_t)strlen(text) ? 0 : afalg_errno();
    close(fd);
    return err;
}

/* Splices `plain` into the operation socket as PIECES pipe buffers of PIECE bytes,
 * as many per round as the pipe has slots; the last one ends the request. */
static int send_in_pieces(int op)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        return afalg_errno();
    int bytes = fcntl(pipefd[1], F_SETPIPE_SZ, PIPE_BYTES);
    int per_round = bytes >= 4096 ? bytes / 4096 : 16;     /* one buffer per slot */
    if (per_round > 1024)
        per_round = 1024;
    while (PIECES % per_round)
        per_round /= 2;
    int err = 0;
    struct iovec iov[1024];
    for (int done = 0; !err && done < PIECES; done += per_round) {
        for (int i = 0; i < per_round; i++)
            iov[i] = (struct iovec){.iov_base = plain + (size_t)(done + i) * PIECE,
                                    .iov_len = PIECE};
        ssize_t in = vmsplice(pipefd[1], iov, (unsigned long)per_round, 0);
        if (in != (ssize_t)per_round * PIECE) {
            err = in < 0 ? afalg_errno() : -EIO;
            vmsim_line("@vmsim event=huge-setup step=vmsplice done=%d got=%zd err=%d", done, in, -err);
            break;
        }
        int last = done + per_round >= PIECES;
        while (!err && in > 0) {
            ssize_t moved = splice(pipefd[0], NULL, op, NULL, (size_t)in, last ? 0 : SPLICE_F_MORE);
            if (moved <= 0) {
                err = moved < 0 ? afalg_errno() : -EIO;
                vmsim_line("@vmsim event=huge-setup step=splice done=%d err=%d", done, -err);
            } else {
                in -= moved;
            }
        }
    }
    close(pipefd[0]);
    close(pipefd[1]);
    return err;
}

static int huge_request(const char *driver, const uint8_t *key, const uint8_t *iv)
{
    struct afalg_cipher c;
    int err = afalg_open_cipher(&c, driver, key, 16);
    if (err)
        return err;
    int size = SOCKET_BUF;
    if (setsockopt(c.op, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)) != 0 ||
        setsockopt(c.op, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)) != 0)
        err = afalg_errno();
    if (!err)
        err = afalg_send_header(c.op, 1, iv, NULL, 0, MSG_MORE);
    if (!err)
        err = send_in_pieces(c.op);
    if (!err) {
        struct iovec iov = {.iov_base = out, .iov_len = HUGE_LEN};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        ssize_t got = recvmsg(c.op, &msg, 0);
        err = got < 0 ? afalg_errno() : got == HUGE_LEN ? 0 : -EMSGSIZE;
    }
    afalg_close(&c);
    return err;
}

/* After the huge request: a new key (a control-queue request) and a round trip. */
static int afterwards(const char *driver, const uint8_t *key, const uint8_t *iv)
{
    static uint8_t data[4096], sealed[4096], back[4096];
    struct afalg_cipher c;
    struct testgen g;
    testgen_seed(&g, 0x6875676521ULL);
    testgen_fill(&g, data, sizeof(data));
    int err = afalg_open_cipher(&c, driver, key, 32);
    vmsim_line("@vmsim event=after what=setkey err=%d ok=%d", -err, !err);
    if (err)
        return err;
    err = afalg_crypt(c.op, 1, iv, data, sealed, sizeof(data), AFALG_SINGLE);
    if (!err)
        err = afalg_crypt(c.op, 0, iv, sealed, back, sizeof(data), AFALG_SINGLE);
    afalg_close(&c);
    int ok = !err && memcmp(data, back, sizeof(data)) == 0 && memcmp(data, sealed, sizeof(data)) != 0;
    vmsim_line("@vmsim event=after what=roundtrip err=%d ok=%d", -err, ok);
    return ok ? 0 : (err ? err : -EIO);
}

int main(void)
{
    char driver[128];
    afalg_driver_param("kat_driver", driver, sizeof(driver));
    static const char *const limits[] = {"/proc/sys/net/core/optmem_max",
                                         "/proc/sys/net/core/wmem_max",
                                         "/proc/sys/net/core/rmem_max"};
    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        int err = write_file(limits[i], LIMIT);
        if (err) {
            vmsim_result(TEST, "fail", "setup=%s err=%d", limits[i], -err);
            return 1;
        }
    }
    uint8_t key[32], iv[AFALG_IV_LEN];
    struct testgen g;
    testgen_seed(&g, 0x68756765ULL);
    testgen_fill(&g, key, sizeof(key));
    testgen_fill(&g, iv, sizeof(iv));
    testgen_fill(&g, plain, sizeof(plain));

    long long start = now_ms();
    int err = huge_request(driver, key, iv);
    vmsim_line("@vmsim event=huge len=%d pieces=%d err=%d ms=%lld", HUGE_LEN, PIECES, -err,
               now_ms() - start);
    int after = afterwards(driver, key, iv);
    vmsim_result(TEST, after ? "fail" : "pass", "driver=%s err=%d", driver, -err);
    return after ? 1 : 0;
}

/*
 * AF_ALG skcipher helpers for the crypto test programs (afalg-kat, afalg-stress,
 * afalg-bench).
 *
 * A cipher is bound by name: a driver name such as "virtio_crypto_aes_cbc" pins one
 * implementation, so nothing else in the kernel can answer for it.  One operation
 * can feed the kernel in four ways, because the driver sees a different scatterlist
 * shape for each:
 *
 *   single  one sendmsg with one iovec; one recvmsg into one buffer;
 *   iov     one sendmsg with three uneven iovecs; recvmsg into two uneven iovecs;
 *   more    several sendmsg calls, all but the last with MSG_MORE;
 *   splice  the data goes vmsplice -> pipe -> splice into the operation socket.
 *
 * Every function returns 0 (or a descriptor) on success and -errno on failure.
 */
#ifndef VMSIM_AFALG_H
#define VMSIM_AFALG_H

#ifndef _GNU_SOURCE
#error "define _GNU_SOURCE before any include: vmsplice, splice and accept4 need it"
#endif

#include <errno.h>
#include <fcntl.h>
#include <linux/if_alg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vmsim.h"

#ifndef SOL_ALG
#define SOL_ALG 279
#endif

#define AFALG_IV_LEN 16
#define AFALG_MAX_PIECES 4

enum afalg_mode { AFALG_SINGLE, AFALG_IOV, AFALG_MORE, AFALG_SPLICE, AFALG_MODES };

static const char *const afalg_mode_names[AFALG_MODES] = {"single", "iov", "more", "splice"};

/* Where the uneven pieces of a buffer end, in 1/1000ths of its length (the last is
 * always the whole): deliberately not block-aligned, so blocks straddle pieces. */
static const unsigned afalg_send_cuts[] = {273, 658, 1000};
static const unsigned afalg_recv_cuts[] = {411, 1000};

/* The cipher a program tests: vmsim.<param> from the command line, or the virtio one. */
static inline const char *afalg_driver_param(const char *param, char *buf, size_t len)
{
    if (!vmsim_param(param, buf, len))
        snprintf(buf, len, "%s", "virtio_crypto_aes_cbc");
    return buf;
}

struct afalg_cipher {
    int tfm;    /* the bound algorithm socket, which holds the key */
    int op;     /* the operation socket accepted from it */
};

static inline int afalg_errno(void)
{
    return errno ? -errno : -EIO;
}

/* An algorithm socket of `type` ("skcipher") bound to `name` (algorithm or driver). */
static inline int afalg_bind(const char *type, const char *name)
{
    struct sockaddr_alg sa = {.salg_family = AF_ALG};
    if (strlen(type) >= sizeof(sa.salg_type) || strlen(name) >= sizeof(sa.salg_name))
        return -ENAMETOOLONG;
    memcpy(sa.salg_type, type, strlen(type));
    memcpy(sa.salg_name, name, strlen(name));
    int fd = socket(AF_ALG, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return afalg_errno();
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int err = afalg_errno();
        close(fd);
        return err;
    }
    return fd;
}

static inline void afalg_close(struct afalg_cipher *c)
{
    if (c->op >= 0)
        close(c->op);
    if (c->tfm >= 0)
        close(c->tfm);
    c->op = c->tfm = -1;
}

/* Sets the key on the algorithm socket and opens a fresh operation socket. */
static inline int afalg_rekey(struct afalg_cipher *c, const uint8_t *key, size_t keylen)
{
    if (c->op >= 0)
        close(c->op);
    c->op = -1;
    if (setsockopt(c->tfm, SOL_ALG, ALG_SET_KEY, key, (socklen_t)keylen) != 0)
        return afalg_errno();
    c->op = accept4(c->tfm, NULL, NULL, SOCK_CLOEXEC);
    return c->op < 0 ? afalg_errno() : 0;
}

/* A skcipher bound to `name`, keyed and ready for operations. */
static inline int afalg_open_cipher(struct afalg_cipher *c, const char *name,
                                    const uint8_t *key, size_t keylen)
{
    c->op = c->tfm = -1;
    int fd = afalg_bind("skcipher", name);
    if (fd < 0)
        return fd;
    c->tfm = fd;
    int err = afalg_rekey(c, key, keylen);
    if (err)
        afalg_close(c);
    return err;
}

/* The iovecs covering [from, len) of `base`, split at `cuts` (see above). */
static inline int afalg_pieces(uint8_t *base, size_t len, size_t from, const unsigned *cuts,
                               int ncuts, struct iovec *iov)
{
    int n = 0;
    size_t start = 0;
    for (int i = 0; i < ncuts; i++) {
        size_t end = len * cuts[i] / 1000;
        size_t lo = start > from ? start : from;
        if (end > lo)
            iov[n++] = (struct iovec){.iov_base = base + lo, .iov_len = end - lo};
        start = end;
    }
    return n;
}

/* sendmsg carrying the operation and IV, plus `niov` data iovecs. */
static inline int afalg_send_header(int op, int encrypt, const uint8_t *iv, struct iovec *iov,
                                    int niov, int flags)
{
    union {
        char buf[CMSG_SPACE(sizeof(uint32_t)) +
                 CMSG_SPACE(sizeof(struct af_alg_iv) + AFALG_IV_LEN)];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof(control));
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)niov,
                         .msg_control = control.buf, .msg_controllen = sizeof(control.buf)};

    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_ALG;
    cm->cmsg_type = ALG_SET_OP;
    cm->cmsg_len = CMSG_LEN(sizeof(uint32_t));
    uint32_t opcode = encrypt ? ALG_OP_ENCRYPT : ALG_OP_DECRYPT;
    memcpy(CMSG_DATA(cm), &opcode, sizeof(opcode));

    cm = CMSG_NXTHDR(&msg, cm);
    cm->cmsg_level = SOL_ALG;
    cm->cmsg_type = ALG_SET_IV;
    cm->cmsg_len = CMSG_LEN(sizeof(struct af_alg_iv) + AFALG_IV_LEN);
    struct af_alg_iv *alg_iv = (struct af_alg_iv *)CMSG_DATA(cm);
    alg_iv->ivlen = AFALG_IV_LEN;
    memcpy(alg_iv->iv, iv, AFALG_IV_LEN);

    size_t want = 0;
    for (int i = 0; i < niov; i++)
        want += iov[i].iov_len;
    ssize_t sent = sendmsg(op, &msg, flags);
    if (sent < 0)
        return afalg_errno();
    return (size_t)sent == want ? 0 : -EMSGSIZE;
}

static inline int afalg_send_all(int op, const uint8_t *data, size_t len, int last_flags)
{
    while (len > 0) {
        ssize_t n = send(op, data, len, last_flags);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? afalg_errno() : -EIO;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Moves `len` bytes of user memory into the operation socket through a pipe, without
 * copying them: the kernel cipher reads the very pages of `data`. */
static inline int afalg_splice_in(int op, const uint8_t *data, size_t len)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        return afalg_errno();
    int err = 0;
    size_t done = 0;
    while (!err && done < len) {
        struct iovec iov = {.iov_base = (void *)(data + done), .iov_len = len - done};
        ssize_t in = vmsplice(pipefd[1], &iov, 1, 0);
        if (in <= 0) {
            err = in < 0 ? afalg_errno() : -EIO;
            break;
        }
        while (!err && in > 0) {
            int more = done + (size_t)in < len ? SPLICE_F_MORE : 0;
            ssize_t out = splice(pipefd[0], NULL, op, NULL, (size_t)in, more);
            if (out <= 0)
                err = out < 0 ? afalg_errno() : -EIO;
            else {
                in -= out;
                done += (size_t)out;
            }
        }
    }
    close(pipefd[0]);
    close(pipefd[1]);
    return err;
}

static inline int afalg_send(int op, int encrypt, const uint8_t *iv, const uint8_t *in,
                             size_t len, enum afalg_mode mode)
{
    uint8_t *data = (uint8_t *)in;
    struct iovec iov[AFALG_MAX_PIECES];
    int n;
    int err;
    switch (mode) {
    case AFALG_SINGLE:
        iov[0] = (struct iovec){.iov_base = data, .iov_len = len};
        return afalg_send_header(op, encrypt, iv, iov, 1, 0);
    case AFALG_IOV:
        n = afalg_pieces(data, len, 0, afalg_send_cuts, 3, iov);
        return afalg_send_header(op, encrypt, iv, iov, n, 0);
    case AFALG_MORE:
        n = afalg_pieces(data, len, 0, afalg_send_cuts, 3, iov);
        if (n == 0)
            return afalg_send_header(op, encrypt, iv, iov, 0, 0);
        err = afalg_send_header(op, encrypt, iv, iov, 1, n > 1 ? MSG_MORE : 0);
        for (int i = 1; !err && i < n; i++)
            err = afalg_send_all(op, iov[i].iov_base, iov[i].iov_len,
                                 i + 1 < n ? MSG_MORE : 0);
        return err;
    case AFALG_SPLICE:
        err = afalg_send_header(op, encrypt, iv, iov, 0, len ? MSG_MORE : 0);
        return err || len == 0 ? err : afalg_splice_in(op, data, len);
    default:
        return -EINVAL;
    }
}

/* Receives exactly `len` bytes; the kernel may hand back less per call. */
static inline int afalg_recv(int op, uint8_t *out, size_t len, enum afalg_mode mode)
{
    size_t done = 0;
    do {
        struct iovec iov[AFALG_MAX_PIECES];
        int n = 1;
        if (mode == AFALG_IOV)
            n = afalg_pieces(out, len, done, afalg_recv_cuts, 2, iov);
        else
            iov[0] = (struct iovec){.iov_base = out + done, .iov_len = len - done};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t got = recvmsg(op, &msg, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return afalg_errno();
        if (got == 0 && len > 0)
            return -EIO;
        done += (size_t)got;
    } while (done < len);
    return 0;
}

/* One whole encryption or decryption of `len` bytes from `in` to `out`. */
static inline int afalg_crypt(int op, int encrypt, const uint8_t *iv, const uint8_t *in,
                              uint8_t *out, size_t len, enum afalg_mode mode)
{
    int err = afalg_send(op, encrypt, iv, in, len, mode);
    return err ? err : afalg_recv(op, out, len, mode);
}

#endif

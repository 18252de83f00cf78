/*
 * Concurrency: vmsim.procs processes (default 4) each send vmsim.ops requests
 * (default 64) of mixed sizes, keys and feeding modes through the virtio driver
 * (vmsim.stress_driver, default virtio_crypto_aes_cbc), all at once.  Every
 * ciphertext is compared with the kernel's generic software AES-CBC, and every
 * decryption with the plaintext.
 *
 * Afterwards the kernel log written during the run is scanned for the marks of a
 * driver or device bug: "is not a head" (a used ring entry the driver did not post),
 * Oops, BUG, WARNING, a call trace.  It passes only when every result is right, no
 * process hung (vmsim.stress_timeout_s, default 120) and the log is clean.
 */
#define _GNU_SOURCE
#include "afalg.h"
#include "children.h"
#include "testgen.h"
#include "vmsim.h"

#include <fcntl.h>
#include <inttypes.h>

#define TEST "afalg-stress"
#define MAX_LEN 65536
#define REKEY_EVERY 8
#define KMSG_RECORD 1024
#define KMSG_QUOTE 160

static const size_t lengths[] = {16, 32, 48, 64, 256, 1008, 1024, 4096, 4112, 16384, 65536};
static const size_t key_sizes[] = {16, 24, 32};

/* Software implementations to compare with, by the name the kernel may know them. */
static const char *const generic_names[] = {"cbc(aes-generic)", "cbc-aes-generic"};

static const char *const bad_log_marks[] = {"is not a head", "Oops", "BUG:", "kernel BUG",
                                            "WARNING:", "Call Trace", "Unable to handle"};

static uint8_t plain[MAX_LEN] __attribute__((aligned(4096)));
static uint8_t dev_out[MAX_LEN] __attribute__((aligned(4096)));
static uint8_t ref_out[MAX_LEN] __attribute__((aligned(4096)));
static uint8_t back[MAX_LEN] __attribute__((aligned(4096)));

struct stress {
    char driver[128];
    long ops;
};

static int open_generic(struct afalg_cipher *c, const uint8_t *key, size_t keylen)
{
    int err = -ENOENT;
    for (size_t i = 0; i < sizeof(generic_names) / sizeof(generic_names[0]); i++)
        if ((err = afalg_open_cipher(c, generic_names[i], key, keylen)) == 0)
            break;
    return err;
}

static int child_fail(int id, long op, const char *what, int err, size_t len)
{
    vmsim_line("@vmsim event=stress-proc id=%d ok=0 op=%ld what=%s err=%d len=%zu", id, op,
               what, -err, len);
    return 1;
}

/* One process's share of the load; returns its exit code. */
static int stress_child(int id, void *arg)
{
    const struct stress *s = arg;
    struct testgen g;
    testgen_seed(&g, 0x7374726573730000ULL + (uint64_t)id);   /* "stress" + id */
    uint8_t key[32], iv[AFALG_IV_LEN];
    size_t keylen = 16;
    testgen_fill(&g, key, keylen);

    struct afalg_cipher dev, ref;
    int err = afalg_open_cipher(&dev, s->driver, key, keylen);
    if (err)
        return child_fail(id, 0, "open-device", err, 0);
    if ((err = open_generic(&ref, key, keylen)))
        return child_fail(id, 0, "open-generic", err, 0);

    uint64_t bytes = 0;
    for (long op = 0; op < s->ops; op++) {
        uint64_t pick = testgen_next64(&g);
        size_t len = lengths[pick % (sizeof(lengths) / sizeof(lengths[0]))];
        enum afalg_mode mode = (enum afalg_mode)((pick >> 8) % AFALG_MODES);
        if (op > 0 && op % REKEY_EVERY == 0) {
            keylen = key_sizes[(pick >> 16) % 3];
            testgen_fill(&g, key, keylen);
            if ((err = afalg_rekey(&dev, key, keylen)) || (err = afalg_rekey(&ref, key, keylen)))
                return child_fail(id, op, "rekey", err, keylen);
        }
        testgen_fill(&g, iv, sizeof(iv));
        testgen_fill(&g, plain, len);

        if ((err = afalg_crypt(dev.op, 1, iv, plain, dev_out, len, mode)))
            return child_fail(id, op, "encrypt", err, len);
        if ((err = afalg_crypt(ref.op, 1, iv, plain, ref_out, len, AFALG_SINGLE)))
            return child_fail(id, op, "encrypt-generic", err, len);
        if (memcmp(dev_out, ref_out, len) != 0)
            return child_fail(id, op, "ciphertext-differs", 0, len);
        if ((err = afalg_crypt(dev.op, 0, iv, dev_out, back, len, mode)))
            return child_fail(id, op, "decrypt", err, len);
        if (memcmp(back, plain, len) != 0)
            return child_fail(id, op, "plaintext-differs", 0, len);
        bytes += 2 * len;
    }
    afalg_close(&dev);
    afalg_close(&ref);
    vmsim_line("@vmsim event=stress-proc id=%d ok=1 ops=%ld bytes=%" PRIu64, id, s->ops, bytes);
    return 0;
}

/* The kernel log from now on: /dev/kmsg positioned past every existing record. */
static int open_kmsg_tail(void)
{
    int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0)
        lseek(fd, 0, SEEK_END);
    return fd;
}

/* Counts (and quotes) the new log records that carry a bad mark. */
static int scan_kmsg(int fd)
{
    char rec[KMSG_RECORD];
    int bad = 0;
    for (;;) {
        ssize_t n = read(fd, rec, sizeof(rec) - 1);
        if (n < 0 && errno == EPIPE)
            continue;               /* records were overwritten; go on with the next */
        if (n <= 0)
            break;
        rec[n] = '\0';
        char *text = strchr(rec, ';');
        text = text ? text + 1 : rec;
        text[strcspn(text, "\n")] = '\0';
        for (size_t i = 0; i < sizeof(bad_log_marks) / sizeof(bad_log_marks[0]); i++) {
            if (!strstr(text, bad_log_marks[i]))
                continue;
            for (char *p = text; *p; p++)
                if (*p == ' ' || *p == '\t')
                    *p = '_';
            vmsim_line("@vmsim event=kmsg-bad text=%.*s", KMSG_QUOTE, text);
            bad++;
            break;
        }
    }
    return bad;
}

int main(void)
{
    struct stress s = {.ops = vmsim_param_long("ops", 64)};
    afalg_driver_param("stress_driver", s.driver, sizeof(s.driver));
    long procs = vmsim_param_long("procs", 4);
    if (procs < 1 || procs > CHILDREN_MAX)
        procs = 4;
    long timeout_s = vmsim_param_long("stress_timeout_s", 120);

    int kmsg = open_kmsg_tail();
    if (kmsg < 0) {
        vmsim_result(TEST, "fail", "what=kmsg errno=%d", errno);
        return 1;
    }
    long long start = vmsim_coarse_ms();
    struct children kids;
    int err = children_start(&kids, (int)procs, stress_child, &s);
    children_wait(&kids, timeout_s * 1000);
    long long ms = vmsim_coarse_ms() - start;
    int bad_log = scan_kmsg(kmsg);
    close(kmsg);

    if (kids.hung)
        vmsim_line("@vmsim event=stress-hang procs=%d timeout_s=%ld", kids.hung, timeout_s);
    int ok = !err && !kids.failed && !kids.hung && !bad_log;
    vmsim_result(TEST, ok ? "pass" : "fail",
                 "driver=%s procs=%ld ops=%ld failed=%d hung=%d bad_log=%d ms=%lld", s.driver,
                 procs, s.ops, kids.failed, kids.hung, bad_log, ms);
    return ok ? 0 : 1;
}

/*
 * Checks, from /proc/crypto, what the virtio_crypto driver registered.
 *
 * By default it requires the three algorithms of the Linux 6.1 driver, each with
 * "selftest : passed" (the kernel's self-tests run against the device when the
 * algorithm registers):
 *
 *   cbc(aes)       virtio_crypto_aes_cbc
 *   rsa            virtio-crypto-rsa
 *   pkcs1pad(rsa)  virtio-pkcs1-rsa (newer kernels: virtio-pkcs1-rsa-with-sha1)
 *
 * With vmsim.expect_algs=none it requires instead that no virtio algorithm exists
 * at all: what a machine without the device, or whose device never sets HW_READY,
 * must show.
 *
 * Prints one "@vmsim event=reg" line per required driver and one "@vmsim event=alg"
 * line per virtio algorithm found, then the result with the drivers that failed.
 */
#include "proc_crypto.h"
#include "vmsim.h"

#include <stdio.h>
#include <string.h>

#define TEST "crypto-reg"

struct required {
    const char *driver;     /* exact name, or a prefix when `prefix` is set */
    int prefix;
    char selftest[32];      /* "" while not found */
};

static int matches(const struct required *r, const char *driver)
{
    return r->prefix ? strncmp(driver, r->driver, strlen(r->driver)) == 0
                     : strcmp(driver, r->driver) == 0;
}

struct tally {
    struct required *req;
    size_t nreq;
    int count;      /* virtio algorithms seen */
};

/* Reports a virtio algorithm and notes the self-test of a required one. */
static void note_alg(const struct proc_crypto_alg *alg, void *arg)
{
    struct tally *t = arg;
    if (!strstr(alg->driver, "virtio"))
        return;
    /* Without CRYPTO_MANAGER there is no selftest line and nothing to require. */
    const char *selftest = alg->selftest[0] ? alg->selftest : "none";
    vmsim_line("@vmsim event=alg name=%s driver=%s selftest=%s", alg->name, alg->driver,
               selftest);
    t->count++;
    for (size_t i = 0; i < t->nreq; i++)
        if (matches(&t->req[i], alg->driver) && strcmp(t->req[i].selftest, "passed") != 0)
            snprintf(t->req[i].selftest, sizeof(t->req[i].selftest), "%s", selftest);
}

int main(void)
{
    struct required req[] = {
        {.driver = "virtio_crypto_aes_cbc"},
        {.driver = "virtio-crypto-rsa"},
        {.driver = "virtio-pkcs1-rsa", .prefix = 1},
    };
    const size_t nreq = sizeof(req) / sizeof(req[0]);
    char expect[16] = "all";
    vmsim_param("expect_algs", expect, sizeof(expect));
    int want_none = strcmp(expect, "none") == 0;

    struct tally tally = {.req = req, .nreq = nreq};
    if (proc_crypto_scan(note_alg, &tally) != 0) {
        vmsim_result(TEST, "fail", "what=proc-crypto");
        return 1;
    }
    int count = tally.count;
    if (want_none) {
        vmsim_result(TEST, count == 0 ? "pass" : "fail", "expect=none count=%d", count);
        return count == 0 ? 0 : 1;
    }

    char failed[256] = "";
    for (size_t i = 0; i < nreq; i++) {
        const char *selftest = req[i].selftest[0] ? req[i].selftest : "missing";
        vmsim_line("@vmsim event=reg driver=%s selftest=%s", req[i].driver, selftest);
        if (strcmp(selftest, "passed") != 0 && strcmp(selftest, "none") != 0) {
            size_t used = strlen(failed);
            snprintf(failed + used, sizeof(failed) - used, "%s%s", used ? "," : "",
                     req[i].driver);
        }
    }
    int ok = failed[0] == '\0';
    vmsim_result(TEST, ok ? "pass" : "fail", "expect=all count=%d failed=%s", count,
                 ok ? "none" : failed);
    return ok ? 0 : 1;
}

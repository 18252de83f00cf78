/*
 * Lists the crypto algorithms that a virtio driver registered, from /proc/crypto,
 * one "@vmsim event=alg" line each, and passes when there is at least one.  The
 * result also counts those whose kernel self-test did not pass (QEMU's raw RSA does
 * not), so a host test can require not_passed=0.
 */
#include "proc_crypto.h"
#include "vmsim.h"

#include <string.h>

struct tally {
    int count;
    int not_passed;
};

/* Reports the algorithm if its driver is a virtio one. */
static void report(const struct proc_crypto_alg *alg, void *arg)
{
    struct tally *tally = arg;
    if (!strstr(alg->driver, "virtio"))
        return;
    vmsim_line("@vmsim event=alg name=%s driver=%s selftest=%s", alg->name, alg->driver,
               alg->selftest[0] ? alg->selftest : "none");
    tally->count++;
    tally->not_passed += strcmp(alg->selftest, "passed") != 0;
}

int main(void)
{
    struct tally tally = {0};
    if (proc_crypto_scan(report, &tally) != 0) {
        vmsim_result("virtio-algs", "fail", "what=proc-crypto");
        return 1;
    }
    int ok = tally.count > 0;
    vmsim_result("virtio-algs", ok ? "pass" : "fail", "count=%d not_passed=%d", tally.count,
                 tally.not_passed);
    return ok ? 0 : 1;
}

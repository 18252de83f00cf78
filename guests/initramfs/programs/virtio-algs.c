/*
 * Lists the crypto algorithms that a virtio driver registered, from /proc/crypto,
 * one "@vmsim event=alg" line each, and passes when there is at least one.  The
 * result also counts those whose kernel self-test did not pass (QEMU's raw RSA does
 * not), so a host test can require not_passed=0.
 *
 * /proc/crypto is a series of blank-line separated blocks of "key : value" lines;
 * only name, driver and selftest matter here.
 */
#include "vmsim.h"

#include <stdio.h>
#include <string.h>

struct alg {
    char name[128];
    char driver[128];
    char selftest[32];
};

/* Copies the value of a "key : value" line if its key is `key`. */
static void take_field(const char *line, const char *key, char *dst, size_t len)
{
    size_t keylen = strlen(key);
    if (strncmp(line, key, keylen) != 0 || (line[keylen] != ' ' && line[keylen] != ':'))
        return;
    const char *colon = strchr(line, ':');
    if (!colon)
        return;
    const char *value = colon + 1 + strspn(colon + 1, " \t");
    snprintf(dst, len, "%.*s", (int)strcspn(value, " \t\n"), value);
}

struct tally {
    int count;
    int not_passed;
};

/* Reports the block if its driver is a virtio one, then clears it for the next. */
static void report(struct alg *alg, struct tally *tally)
{
    if (strstr(alg->driver, "virtio")) {
        vmsim_line("@vmsim event=alg name=%s driver=%s selftest=%s", alg->name,
                   alg->driver, alg->selftest[0] ? alg->selftest : "none");
        tally->count++;
        tally->not_passed += strcmp(alg->selftest, "passed") != 0;
    }
    memset(alg, 0, sizeof(*alg));
}

int main(void)
{
    FILE *f = fopen("/proc/crypto", "r");
    if (!f) {
        vmsim_result("virtio-algs", "fail", "what=proc-crypto");
        return 1;
    }
    struct alg alg = {0};
    struct tally tally = {0};
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == '\n') {
            report(&alg, &tally);
            continue;
        }
        take_field(line, "name", alg.name, sizeof(alg.name));
        take_field(line, "driver", alg.driver, sizeof(alg.driver));
        take_field(line, "selftest", alg.selftest, sizeof(alg.selftest));
    }
    report(&alg, &tally);
    fclose(f);

    int ok = tally.count > 0;
    vmsim_result("virtio-algs", ok ? "pass" : "fail", "count=%d not_passed=%d", tally.count,
                 tally.not_passed);
    return ok ? 0 : 1;
}

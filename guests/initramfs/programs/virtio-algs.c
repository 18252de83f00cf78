/*
 * Lists the crypto algorithms that a virtio driver registered, from /proc/crypto,
 * one "@vmsim event=alg" line each, and passes when there is at least one.
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

/* Reports the block if its driver is a virtio one; returns 1 when it did. */
static int report(struct alg *alg)
{
    int virtio = strstr(alg->driver, "virtio") != NULL;
    if (virtio)
        vmsim_line("@vmsim event=alg name=%s driver=%s selftest=%s", alg->name,
                   alg->driver, alg->selftest[0] ? alg->selftest : "none");
    memset(alg, 0, sizeof(*alg));
    return virtio;
}

int main(void)
{
    FILE *f = fopen("/proc/crypto", "r");
    if (!f) {
        vmsim_result("virtio-algs", "fail", "what=proc-crypto");
        return 1;
    }
    struct alg alg = {0};
    int count = 0;
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == '\n') {
            count += report(&alg);
            continue;
        }
        take_field(line, "name", alg.name, sizeof(alg.name));
        take_field(line, "driver", alg.driver, sizeof(alg.driver));
        take_field(line, "selftest", alg.selftest, sizeof(alg.selftest));
    }
    count += report(&alg);
    fclose(f);

    vmsim_result("virtio-algs", count > 0 ? "pass" : "fail", "count=%d", count);
    return count > 0 ? 0 : 1;
}

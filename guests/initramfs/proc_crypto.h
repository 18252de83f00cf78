/*
 * A reader of /proc/crypto for the crypto test programs.
 *
 * /proc/crypto is a series of blank-line separated blocks of "key : value" lines,
 * one block per registered algorithm; only name, driver, priority and selftest are
 * kept.  The self-test line is absent when the kernel runs no self-tests.
 */
#ifndef VMSIM_PROC_CRYPTO_H
#define VMSIM_PROC_CRYPTO_H

#include <stdio.h>
#include <string.h>

struct proc_crypto_alg {
    char name[128];
    char driver[128];
    char priority[16];
    char selftest[32];      /* "" when the block has no selftest line */
};

typedef void (*proc_crypto_visit)(const struct proc_crypto_alg *alg, void *arg);

/* Copies the value of a "key : value" line if its key is `key`. */
static inline void proc_crypto_field(const char *line, const char *key, char *dst, size_t len)
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

/* Calls `visit` for every algorithm block; returns 0, or -1 if the file is missing. */
static inline int proc_crypto_scan(proc_crypto_visit visit, void *arg)
{
    FILE *f = fopen("/proc/crypto", "r");
    if (!f)
        return -1;
    struct proc_crypto_alg alg = {0};
    char line[256];
    int more = 1;
    while (more) {
        more = fgets(line, sizeof(line), f) != NULL;
        if (!more || line[0] == '\n') {
            if (alg.name[0])
                visit(&alg, arg);
            memset(&alg, 0, sizeof(alg));
            continue;
        }
        proc_crypto_field(line, "name", alg.name, sizeof(alg.name));
        proc_crypto_field(line, "driver", alg.driver, sizeof(alg.driver));
        proc_crypto_field(line, "priority", alg.priority, sizeof(alg.priority));
        proc_crypto_field(line, "selftest", alg.selftest, sizeof(alg.selftest));
    }
    fclose(f);
    return 0;
}

#endif

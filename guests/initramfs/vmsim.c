/* Implementation of vmsim.h; linked into every guest program. */
#define _GNU_SOURCE
#include "vmsim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_LEN 512
#define CMDLINE_MAX_LEN 4096

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

/* Formats into a bounded buffer, always leaving room for the newline. */
static void emit(const char *prefix, const char *fmt, va_list ap)
{
    char line[LINE_MAX_LEN];
    int used = snprintf(line, sizeof(line) - 1, "%s", prefix);
    if (used < 0)
        return;
    if (fmt && *fmt) {
        int more = vsnprintf(line + used, sizeof(line) - 1 - (size_t)used, fmt, ap);
        if (more > 0)
            used += more;
    }
    if (used > (int)sizeof(line) - 2)
        used = (int)sizeof(line) - 2;
    line[used++] = '\n';
    write_all(STDOUT_FILENO, line, (size_t)used);
}

void vmsim_line(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit("", fmt, ap);
    va_end(ap);
}

void vmsim_result(const char *test, const char *result, const char *fmt, ...)
{
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "@vmsim test=%s result=%s%s", test, result,
             fmt && *fmt ? " " : "");
    va_list ap;
    va_start(ap, fmt);
    emit(prefix, fmt, ap);
    va_end(ap);
}

static size_t read_cmdline(char *buf, size_t len)
{
    int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        n = 0;
    buf[n] = '\0';
    return (size_t)n;
}

const char *vmsim_param(const char *name, char *buf, size_t len)
{
    char cmdline[CMDLINE_MAX_LEN];
    char key[64];
    read_cmdline(cmdline, sizeof(cmdline));
    int keylen = snprintf(key, sizeof(key), "vmsim.%s=", name);
    if (keylen <= 0 || (size_t)keylen >= sizeof(key))
        return NULL;

    char *save = NULL;
    for (char *word = strtok_r(cmdline, " \t\n", &save); word;
         word = strtok_r(NULL, " \t\n", &save)) {
        if (strncmp(word, key, (size_t)keylen) != 0)
            continue;
        const char *value = word + keylen;
        if (strlen(value) >= len)
            return NULL;
        strcpy(buf, value);
        return buf;
    }
    return NULL;
}

long vmsim_param_long(const char *name, long dflt)
{
    char value[32];
    if (!vmsim_param(name, value, sizeof(value)))
        return dflt;
    char *end = NULL;
    errno = 0;
    long n = strtol(value, &end, 10);
    if (errno || end == value || *end || n < 0)
        return dflt;
    return n;
}

long long vmsim_coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Helpers shared by the init and the test programs of the vmsim default guest.
 *
 * Everything the host reads from the console goes through vmsim_line(), as one
 * write(2) per line, so lines never interleave with each other and nothing is lost in
 * a stdio buffer when the machine powers off.  Machine-readable lines start with
 * "@vmsim " and carry key=value pairs without spaces:
 *
 *   @vmsim event=<what> [key=value ...]
 *   @vmsim test=<name> result=pass|fail|skip [key=value ...]
 *
 * A program is one file in programs/ with an `int main(void)`; its file name is its
 * name in /bin.  All programs and the init are linked into one binary (multicall.c),
 * so everything else in a program file must be static.
 */
#ifndef VMSIM_H
#define VMSIM_H

#include <stddef.h>

/* Print one console line (a newline is added). */
void vmsim_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print "@vmsim test=<name> result=<result>" followed by optional key=value text. */
void vmsim_result(const char *test, const char *result, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Look up "vmsim.<name>=<value>" on the kernel command line.  Copies the value into
 * buf and returns buf, or returns NULL when the parameter is absent or too long.
 */
const char *vmsim_param(const char *name, char *buf, size_t len);

/* A non-negative integer parameter, or dflt when it is absent or malformed. */
long vmsim_param_long(const char *name, long dflt);

/* Milliseconds on a coarse monotonic clock: cheap, because it never reads rdtime. */
long long vmsim_coarse_ms(void);

/* The generated table of programs in the multi-call binary, ended by a null name. */
struct vmsim_program {
    const char *name;
    int (*main)(void);
};
extern const struct vmsim_program vmsim_programs[];

#endif

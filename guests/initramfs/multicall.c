/*
 * One static binary for the init and every program, chosen by the name it was run
 * as (/init, /bin/busy, ...).  glibc makes each static program about 400 KB, and the
 * kernel unpacks the whole initramfs on every boot, so sharing one copy of the C
 * library keeps boots fast however many programs there are.
 *
 * The build compiles each program's main() under its own name and generates the
 * table below (see vmsim/guest.py).
 */
#include "vmsim.h"

#include <string.h>

int main(int argc, char **argv)
{
    const char *self = argc > 0 ? argv[0] : "";
    const char *slash = strrchr(self, '/');
    const char *name = slash ? slash + 1 : self;
    for (const struct vmsim_program *p = vmsim_programs; p->name; p++) {
        if (strcmp(p->name, name) == 0)
            return p->main();
    }
    vmsim_line("@vmsim event=unknown-program prog=%s", name);
    return 127;
}

/*
 * The default program: proves the guest reached user space with what the other
 * programs rely on (the command line, /dev/mem for poweroff, a working clock).
 */
#include "vmsim.h"

#include <sys/utsname.h>
#include <unistd.h>

int main(void)
{
    struct utsname uts;
    if (uname(&uts) != 0) {
        vmsim_result("sanity", "fail", "what=uname");
        return 1;
    }
    if (access("/proc/cmdline", R_OK) != 0) {
        vmsim_result("sanity", "fail", "what=proc-cmdline");
        return 1;
    }
    if (access("/dev/mem", R_OK | W_OK) != 0) {
        vmsim_result("sanity", "fail", "what=dev-mem");
        return 1;
    }
    vmsim_result("sanity", "pass", "kernel=%s machine=%s", uts.release, uts.machine);
    return 0;
}

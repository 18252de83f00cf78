/*
 * Sleeps for vmsim.idle_ms (default 1000) so the host can measure what an idle guest
 * costs: the kernel sits in wfi for the whole sleep.
 */
#include "vmsim.h"

#include <time.h>

int main(void)
{
    long ms = vmsim_param_long("idle_ms", 1000);
    long long start = vmsim_coarse_ms();
    struct timespec left = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&left, &left) != 0)
        ;
    long long slept = vmsim_coarse_ms() - start;
    /* The coarse clock may lag by one tick, so allow it 20 ms of slack. */
    const char *result = slept + 20 >= ms ? "pass" : "fail";
    vmsim_result("idle", result, "ms=%ld slept_ms=%lld", ms, slept);
    return result[0] == 'p' ? 0 : 1;
}

/*
 * Runs a function in N forked children and waits for all of them with a deadline,
 * for the programs that load the device from several processes at once.
 *
 * A child stuck in the kernel (a request the device never completes) sits in an
 * uninterruptible wait and cannot be killed, so the parent never waits without a
 * deadline: it polls, and on timeout reports which children are still running and
 * leaves them behind (the machine powers off afterwards anyway).
 */
#ifndef VMSIM_CHILDREN_H
#define VMSIM_CHILDREN_H

#include <errno.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmsim.h"

#define CHILDREN_MAX 64
#define CHILDREN_POLL_MS 20

struct children {
    int count;
    pid_t pid[CHILDREN_MAX];
    int status[CHILDREN_MAX];   /* exit code, 128 + signal, or -1 while running */
    int failed;                 /* children that exited non-zero */
    int hung;                   /* children still running at the deadline */
};

/* Forks `count` children running `fn(index, arg)`; each exits with its return value. */
static inline int children_start(struct children *c, int count, int (*fn)(int, void *),
                                 void *arg)
{
    c->count = 0;
    c->failed = c->hung = 0;
    for (int i = 0; i < count && i < CHILDREN_MAX; i++) {
        pid_t pid = fork();
        if (pid < 0)
            return -errno;
        if (pid == 0)
            _exit(fn(i, arg));
        c->pid[i] = pid;
        c->status[i] = -1;
        c->count++;
    }
    return 0;
}

/* Waits until every child exited or `timeout_ms` passed; returns 0 if all exited 0. */
static inline int children_wait(struct children *c, long timeout_ms)
{
    long long deadline = vmsim_coarse_ms() + timeout_ms;
    int running = c->count;
    while (running > 0 && vmsim_coarse_ms() < deadline) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) {
            struct timespec nap = {0, CHILDREN_POLL_MS * 1000000L};
            nanosleep(&nap, NULL);
            continue;
        }
        for (int i = 0; i < c->count; i++) {
            if (c->pid[i] != pid)
                continue;
            c->status[i] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            c->failed += c->status[i] != 0;
            running--;
        }
    }
    c->hung = running;
    for (int i = 0; i < c->count; i++)
        if (c->status[i] < 0)
            kill(c->pid[i], SIGKILL);
    return c->failed || c->hung ? -1 : 0;
}

#endif

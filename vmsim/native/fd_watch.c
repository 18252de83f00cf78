/*
 * A native thread that watches file descriptors for the run loop and, as soon
 * as one is readable, stops the CPU and wakes the run loop's idle wait.
 *
 * Why: a device's worker processes answer through pipes. A Python collector
 * thread needs the GIL to notice an answer and to stop the engine, and it
 * shares a core with the workers; any host load then delays the completion by
 * milliseconds (a preempted GIL holder, a switch interval). A poll-mode guest
 * spinning on its used ring sees that whole delay. This thread holds no GIL:
 * readable -> stop -> the CPU thread reads the pipes itself.
 *
 * States: armed (polling the fds) and fired (stopped the CPU, waiting for the
 * run loop to call vmsim_watch_rearm, which it does before it reads the fds).
 * While fired it repeats the stop every RETRY_NS, because a stop requested just
 * before the CPU enters the engine is dropped (vmsim/core/preempt.py;
 * docs/engine.md, E19).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 256
#define RETRY_NS 250000L

typedef int (*vmsim_stop_fn)(void *arg);

struct vmsim_watch {
    pthread_t thread;
    pthread_mutex_t lock;
    int control[2];             /* a byte here makes the thread re-read its state */
    int fds[MAX_FDS];
    int nfds;
    int fired;
    int quit;
    unsigned long nudges;       /* rounds asked for by vmsim_watch_nudge (tests) */
    unsigned long begun;        /* `nudges` as of the round the thread last began */
    vmsim_stop_fn stop;
    void *stop_arg;
    int wake_fd;                /* written when fired: ends the run loop's idle wait */
};

static void poke(int fd)
{
    char byte = 0;
    ssize_t unused = write(fd, &byte, 1);  /* a full pipe is already a pending wake */
    (void)unused;
}

static void drain(int fd)
{
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
}

static void *watch_main(void *arg)
{
    struct vmsim_watch *w = arg;
    struct pollfd pfds[1 + MAX_FDS];
    const struct timespec retry = {0, RETRY_NS};

    for (;;) {
        int n = 0, fired;

        pthread_mutex_lock(&w->lock);
        if (w->quit) {
            pthread_mutex_unlock(&w->lock);
            return NULL;
        }
        fired = w->fired;
        w->begun = w->nudges;
        pfds[n++] = (struct pollfd){.fd = w->control[0], .events = POLLIN};
        if (!fired) {
            for (int i = 0; i < w->nfds; i++) {
                pfds[n++] = (struct pollfd){.fd = w->fds[i], .events = POLLIN};
            }
        }
        pthread_mutex_unlock(&w->lock);

        int ready = ppoll(pfds, n, fired ? &retry : NULL, NULL);
        if (ready < 0 && errno != EINTR) {
            ready = 0;
            nanosleep(&retry, NULL);    /* a closed fd: wait for the owner's new set */
        }
        if (pfds[0].revents) {
            drain(w->control[0]);
        }
        int readable = 0;
        for (int i = 1; i < n; i++) {
            readable |= pfds[i].revents != 0;      /* data, EOF or an error */
        }

        pthread_mutex_lock(&w->lock);
        if (readable) {
            w->fired = 1;
        }
        fired = w->fired && !w->quit;
        pthread_mutex_unlock(&w->lock);
        if (fired) {
            w->stop(w->stop_arg);
            poke(w->wake_fd);
        }
    }
}

struct vmsim_watch *vmsim_watch_new(vmsim_stop_fn stop, void *stop_arg, int wake_fd)
{
    struct vmsim_watch *w = calloc(1, sizeof(*w));
    if (!w) {
        return NULL;
    }
    w->stop = stop;
    w->stop_arg = stop_arg;
    w->wake_fd = wake_fd;
    if (pthread_mutex_init(&w->lock, NULL) != 0) {
        free(w);
        return NULL;
    }
    if (pipe2(w->control, O_NONBLOCK | O_CLOEXEC) != 0) {
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
    }
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        close(w->control[0]);
        close(w->control[1]);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
    }
    return w;
}

/* Replace the watched set (any thread). Returns 0, or -1 if there are too many. */
int vmsim_watch_set_fds(struct vmsim_watch *w, const int *fds, int nfds)
{
    if (nfds < 0 || nfds > MAX_FDS) {
        return -1;
    }
    pthread_mutex_lock(&w->lock);
    memcpy(w->fds, fds, sizeof(int) * (size_t)nfds);
    w->nfds = nfds;
    pthread_mutex_unlock(&w->lock);
    poke(w->control[1]);
    return 0;
}

/* The run loop took over: watch again. Call before reading the watched fds, so
 * that data arriving after the read fires once more. */
void vmsim_watch_rearm(struct vmsim_watch *w)
{
    int was_fired;

    pthread_mutex_lock(&w->lock);
    was_fired = w->fired;
    w->fired = 0;
    pthread_mutex_unlock(&w->lock);
    if (was_fired) {
        poke(w->control[1]);
    }
}

/* For tests, which must not wait a fixed time to see that nothing fires: ask
 * for a new round and return its number. Once vmsim_watch_begun reaches it, the
 * thread has finished the round it was in (including any stop and wake that
 * round owed) and begun one that sees every set_fds and rearm made before. */
unsigned long vmsim_watch_nudge(struct vmsim_watch *w)
{
    unsigned long round;

    pthread_mutex_lock(&w->lock);
    round = ++w->nudges;
    pthread_mutex_unlock(&w->lock);
    poke(w->control[1]);
    return round;
}

unsigned long vmsim_watch_begun(struct vmsim_watch *w)
{
    unsigned long begun;

    pthread_mutex_lock(&w->lock);
    begun = w->begun;
    pthread_mutex_unlock(&w->lock);
    return begun;
}

void vmsim_watch_free(struct vmsim_watch *w)
{
    pthread_mutex_lock(&w->lock);
    w->quit = 1;
    pthread_mutex_unlock(&w->lock);
    poke(w->control[1]);
    pthread_join(w->thread, NULL);
    close(w->control[0]);
    close(w->control[1]);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

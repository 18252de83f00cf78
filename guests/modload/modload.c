/*
 * PID 1 of the guest around a distribution kernel: loads the modules that kernel keeps
 * out of its image (virtio_mmio, virtio_crypto, AF_ALG, ...), then becomes the default
 * guest's init, so the same programs run as on the vmsim-built kernels.
 *
 * The build resolved the dependencies and wrote the modules' paths, one a line, in an
 * order that loads each after what it needs (MODULE_LIST).  A module that fails is
 * named on the console and the init still runs: the programs then report what is
 * missing.  MODULE_LIST and PROGRAMS come from the build (vmsim/build/distro.py).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static void load(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST))
        dprintf(STDOUT_FILENO, "@vmsim event=module-failed path=%s errno=%d\n", path, errno);
    if (fd >= 0)
        close(fd);
}

int main(void)
{
    FILE *list = fopen(MODULE_LIST, "re");
    char path[512];
    if (!list)
        dprintf(STDOUT_FILENO, "@vmsim event=module-failed path=%s errno=%d\n", MODULE_LIST,
                errno);
    while (list && fgets(path, sizeof(path), list)) {
        path[strcspn(path, "\n")] = '\0';
        if (*path)
            load(path);
    }
    if (list)
        fclose(list);
    char *argv[] = {"init", NULL};
    execv(PROGRAMS, argv);
    dprintf(STDOUT_FILENO, "@vmsim event=exec-failed path=%s errno=%d\n", PROGRAMS, errno);
    return 127;
}

/*
 * PID 1 of the vmsim default guest.
 *
 * Runs the programs named by "vmsim.run=<prog>[,<prog>...]" (from /bin, default:
 * sanity) one after the other, then powers the machine off with an exit code the
 * host can read: the first non-zero program status, or 0.  The code leaves through
 * the sifive-test finisher register, which QEMU virt and vmsim both turn into the
 * emulator's own exit status.
 */
#define _GNU_SOURCE
#include "vmsim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define DEFAULT_PROGRAMS "sanity"
#define FINISHER_ADDR 0x100000UL
#define FINISHER_PASS 0x5555u
#define FINISHER_FAIL 0x3333u
#define EXIT_NOT_FOUND 127

static void mount_one(const char *fstype, const char *target)
{
    mkdir(target, 0755);
    if (mount(fstype, target, fstype, 0, NULL) != 0 && errno != EBUSY)
        vmsim_line("@vmsim event=mount-failed fs=%s errno=%d", fstype, errno);
}

/* A name is a plain file name in /bin: no path tricks from the command line. */
static int valid_program_name(const char *name)
{
    return *name && !strchr(name, '/') && strcmp(name, ".") && strcmp(name, "..");
}

/* Returns the program's exit status, 128 + signal, or EXIT_NOT_FOUND. */
static int run_program(const char *name)
{
    char path[256];
    if (!valid_program_name(name) ||
        snprintf(path, sizeof(path), "/bin/%s", name) >= (int)sizeof(path) ||
        access(path, X_OK) != 0) {
        vmsim_line("@vmsim event=program prog=%s exit=%d reason=not-found", name,
                   EXIT_NOT_FOUND);
        return EXIT_NOT_FOUND;
    }

    pid_t pid = fork();
    if (pid == 0) {
        char *argv[] = {path, NULL};
        execv(path, argv);
        _exit(EXIT_NOT_FOUND);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) {
        vmsim_line("@vmsim event=program prog=%s exit=1 reason=fork-failed", name);
        return 1;
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    vmsim_line("@vmsim event=program prog=%s exit=%d", name, code);
    return code;
}

static int run_programs(char *list)
{
    int first_failure = 0;
    char *save = NULL;
    for (char *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        int code = run_program(name);
        if (code != 0 && first_failure == 0)
            first_failure = code;
    }
    return first_failure;
}

/* The riscv board's power device (a SiFive test finisher) carries the exit status; the
 * arm64 board powers off through PSCI SYSTEM_OFF, which carries none, so there the
 * status is only in the "done" line. */
static void write_finisher(uint32_t value)
{
#if defined(__riscv)
    int fd = open("/dev/mem", O_RDWR | O_SYNC | O_CLOEXEC);
    if (fd < 0)
        return;
    long page = sysconf(_SC_PAGESIZE);
    off_t base = (off_t)(FINISHER_ADDR & ~(unsigned long)(page - 1));
    volatile uint32_t *reg = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED,
                                  fd, base);
    if (reg != MAP_FAILED)
        reg[(FINISHER_ADDR - (unsigned long)base) / sizeof(uint32_t)] = value;
    close(fd);
#else
    (void)value;
#endif
}

static void power_off(int code)
{
    /* The console must finish sending "done" before the machine goes away. */
    tcdrain(STDOUT_FILENO);
    code &= 0xffff;
    write_finisher(code == 0 ? FINISHER_PASS : ((uint32_t)code << 16) | FINISHER_FAIL);
    reboot(RB_POWER_OFF);
    for (;;)
        pause();
}

int main(void)
{
    mount_one("proc", "/proc");
    mount_one("sysfs", "/sys");
    mount_one("devtmpfs", "/dev");
    vmsim_line("@vmsim event=init-start");

    char programs[1024];
    if (!vmsim_param("run", programs, sizeof(programs)))
        snprintf(programs, sizeof(programs), "%s", DEFAULT_PROGRAMS);
    int code = run_programs(programs);

    vmsim_line("@vmsim event=done exit=%d", code);
    power_off(code);
    return code;
}

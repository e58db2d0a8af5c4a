/* Clones with the flags that have names but used to print as hex: the
 * namespace flags (legacy clone), CLONE_PIDFD|CLONE_SYSVSEM|CLONE_INTO_CGROUP
 * (clone3) and CLONE_NEWTIME (clone3 only: in clone(2) its bit is part of the
 * exit signal). Each child exits at once; prints `CASE=PID` per child. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

static int reap(const char *name, pid_t pid) {
    int status;
    if (pid < 0) { perror(name); return 1; }
    if (pid == 0) _exit(0);
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s: child %d failed (%d)\n", name, (int)pid, status);
        return 1;
    }
    printf("%s=%d\n", name, (int)pid);
    return 0;
}

static pid_t clone3_with(struct clone_args *args) {
    return (pid_t)syscall(SYS_clone3, args, sizeof(*args));
}

/* Where cgroup2 is mounted (/sys/fs/cgroup, or .../unified on a hybrid
 * layout), from /proc/self/mountinfo. */
static int cgroup2_mount(char *out, size_t len) {
    char line[4096];
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (!f) return -1;
    int found = -1;
    while (found < 0 && fgets(line, sizeof line, f)) {
        /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS... - FSTYPE SOURCE ... */
        char *sep = strstr(line, " - ");
        if (!sep || strncmp(sep + 3, "cgroup2 ", 8) != 0) continue;
        char root[1024], mnt[1024];
        if (sscanf(line, "%*s %*s %*s %1023s %1023s", root, mnt) == 2 && strcmp(root, "/") == 0) {
            snprintf(out, len, "%s", mnt);
            found = 0;
        }
    }
    fclose(f);
    return found;
}

/* The cgroup (v2) this process is in, opened for CLONE_INTO_CGROUP. */
static int own_cgroup(void) {
    char line[4096], mnt[1024], path[5200];
    if (cgroup2_mount(mnt, sizeof mnt) < 0) return -1;
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return -1;
    int fd = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "0::", 3) == 0) {
            line[strcspn(line, "\n")] = 0;
            snprintf(path, sizeof path, "%s%s", mnt, line + 3);
            fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
    }
    fclose(f);
    return fd;
}

int main(void) {
    int failed = 0;
    unsigned long ns = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET |
                       CLONE_NEWCGROUP | CLONE_NEWUSER | SIGCHLD;
    failed |= reap("namespaces", (pid_t)syscall(SYS_clone, ns, 0, NULL, NULL, 0));
    fflush(stdout);

    int pidfd = -1;
    int cgroup = own_cgroup();
    if (cgroup < 0) { perror("open own cgroup"); return 1; }
    struct clone_args a = {
        .flags = CLONE_PIDFD | CLONE_SYSVSEM | CLONE_INTO_CGROUP,
        .pidfd = (uint64_t)(uintptr_t)&pidfd,
        .exit_signal = SIGCHLD,
        .cgroup = (uint64_t)cgroup,
    };
    failed |= reap("pidfd_sysvsem_cgroup", clone3_with(&a));
    fflush(stdout);

    struct clone_args t = {.flags = CLONE_NEWTIME, .exit_signal = SIGCHLD};
    failed |= reap("newtime", clone3_with(&t));
    return failed;
}

/* The independent harness of `cargo xtask bench-overhead`: a plain C loop
 * that spawns PROGRAM COUNT times, one at a time, and waits for each.
 *
 *   spawn_loop posix-spawn|fork-exec|vfork-exec COUNT [PROGRAM]
 *   spawn_loop getppid COUNT
 *
 * Prints one JSON line in the spawner's terms: spawns_per_sec over the
 * summed spawn calls, loop_per_sec over the whole loop (spawn, the child's
 * life, the wait), and the median spawn call. `getppid` times COUNT bare
 * syscalls instead: the yardstick for what one probe run costs. */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static pid_t spawn_one(const char *method, char *prog, char **args) {
    pid_t pid = -1;
    if (strcmp(method, "posix-spawn") == 0) {
        if (posix_spawn(&pid, prog, NULL, NULL, args, environ) != 0)
            return -1;
    } else if (strcmp(method, "fork-exec") == 0) {
        pid = fork();
        if (pid == 0) {
            execve(prog, args, environ);
            _exit(127);
        }
    } else {
        pid = vfork();
        if (pid == 0) {
            execve(prog, args, environ);
            _exit(127);
        }
    }
    return pid;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s posix-spawn|fork-exec|vfork-exec COUNT [PROGRAM]\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "getppid") == 0) {
        long n = atol(argv[2]);
        long long a = now_ns();
        for (long i = 0; i < n; i++)
            syscall(SYS_getppid);
        printf("{\"ns_per_call\":%.1f}\n", (now_ns() - a) / (double)(n > 0 ? n : 1));
        return 0;
    }
    const char *method = argv[1];
    int count = atoi(argv[2]);
    char *prog = argc > 3 ? argv[3] : "/bin/true";
    char *args[] = {prog, NULL};
    long long *lat = calloc(count > 0 ? count : 1, sizeof *lat);
    long long sum = 0, t0 = 0;
    for (int i = -10; i < count; i++) {  /* 10 untimed warm-up spawns */
        if (i == 0)
            t0 = now_ns();
        long long a = now_ns();
        pid_t pid = spawn_one(method, prog, args);
        long long b = now_ns();
        if (pid < 0) {
            perror("spawn");
            return 1;
        }
        waitpid(pid, NULL, 0);
        if (i >= 0) {
            lat[i] = b - a;
            sum += b - a;
        }
    }
    long long loop = now_ns() - t0;
    qsort(lat, count, sizeof *lat, by_value);
    printf("{\"method\":\"%s\",\"count\":%d,\"spawns_per_sec\":%.1f,\"loop_per_sec\":%.1f,"
           "\"latency_ns\":{\"p50\":%lld}}\n",
           method, count, count * 1e9 / sum, count * 1e9 / loop, lat[count / 2]);
    return 0;
}

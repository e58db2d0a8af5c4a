/* The parent's copy-on-write faults after a fork, when the parent does
 * something else between the fork and its writes.
 *
 *   cow_after_fork plain|thread|spawn
 *
 * Makes 20 MiB resident (4 KiB pages), forks a child that only waits (so
 * every page stays shared), then, for `thread`, starts and joins a thread,
 * or for `spawn`, posix_spawns /bin/true and waits for it; then writes to
 * every page (one copy-on-write fault each), kills and reaps the child.
 * Prints `fork_child=PID pages=N` on stdout. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define BYTES (20u << 20)

extern char **environ;

static void *nothing(void *arg) { return arg; }

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s plain|thread|spawn\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    long page = sysconf(_SC_PAGESIZE);
    char *mem = mmap(NULL, BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) { perror("mmap"); return 1; }
    madvise(mem, BYTES, MADV_NOHUGEPAGE);
    for (size_t off = 0; off < BYTES; off += page) mem[off] = 1;

    pid_t child = fork();
    if (child < 0) { perror("fork"); return 1; }
    if (child == 0) {
        for (;;) pause();
    }
    if (strcmp(mode, "thread") == 0) {
        pthread_t t;
        if (pthread_create(&t, NULL, nothing, NULL) != 0) { perror("pthread_create"); return 1; }
        pthread_join(t, NULL);
    } else if (strcmp(mode, "spawn") == 0) {
        pid_t p;
        char *args[] = {"true", NULL};
        if (posix_spawn(&p, "/bin/true", NULL, NULL, args, environ) != 0) { perror("posix_spawn"); return 1; }
        waitpid(p, NULL, 0);
    } else if (strcmp(mode, "plain") != 0) {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    for (size_t off = 0; off < BYTES; off += page) mem[off] = 2;
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    printf("fork_child=%d pages=%zu\n", (int)child, (size_t)(BYTES / page));
    return 0;
}

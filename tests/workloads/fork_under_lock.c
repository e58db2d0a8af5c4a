/* Forks that wait for their parent's mmap lock.
 *
 *   fork_under_lock
 *
 * Makes 256 MiB resident (4 KiB pages), then one thread keeps flipping
 * the protection of all of it: mprotect holds the mmap write lock while it
 * rewrites every page table entry. Meanwhile the main thread forks 20
 * children that exit at once, so most forks' dup_mmap first waits for that
 * lock. Prints `forks=N` on stdout. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define BYTES (256ul << 20)
#define FORKS 20

static char *region;
static atomic_int done;

static void *flip(void *arg) {
    while (!atomic_load(&done)) {
        mprotect(region, BYTES, PROT_READ);
        mprotect(region, BYTES, PROT_READ | PROT_WRITE);
    }
    return arg;
}

int main(void) {
    region = mmap(NULL, BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    madvise(region, BYTES, MADV_NOHUGEPAGE);
    memset(region, 1, BYTES);
    pthread_t t;
    if (pthread_create(&t, NULL, flip, NULL) != 0) {
        perror("pthread_create");
        return 1;
    }
    usleep(20000);
    int forks = 0;
    for (int i = 0; i < FORKS; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        if (pid < 0) {
            perror("fork");
            break;
        }
        waitpid(pid, NULL, 0);
        forks++;
        usleep(2000);
    }
    atomic_store(&done, 1);
    pthread_join(t, NULL);
    printf("forks=%d\n", forks);
    return forks == FORKS ? 0 : 1;
}

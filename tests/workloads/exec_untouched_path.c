/* A fork child execs paths that are string literals in pages nobody has
 * touched yet: first a path that does not exist (ENOENT), then /bin/true.
 * Each literal sits alone in its own 64 KiB-aligned block of .rodata, so
 * neither the child's other reads nor the kernel's fault-around (64 KiB)
 * map it before the execve. */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#define BLOCK 65536

static const struct {
    __attribute__((aligned(BLOCK))) char missing[BLOCK];
    __attribute__((aligned(BLOCK))) char real[BLOCK];
} paths = {
    .missing = "/nonexistent/spawnprof-hard-case/true",
    .real = "/bin/true",
};

int main(void) {
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 1; }
    if (pid == 0) {
        char *argv[] = {"true", NULL};
        char *envp[] = {NULL};
        execve(paths.missing, argv, envp);
        execve(paths.real, argv, envp);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid) { perror("waitpid"); return 1; }
    printf("child=%d status=%d\n", (int)pid, status);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

/*
 * proc.c - the harness's child processes (mosquitto_pub, mosquitto_sub):
 * started with their output in a file, each bounded by a wait that kills
 * it (only the pid started here) when it overruns, and killed with the
 * test process (PR_SET_PDEATHSIG).
 */
#include "tests/integration/harness/harness.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

/* Starts a command; see harness.h. */
pid_t th_cmd_start(const char *const argv[], const char *out_path)
{
    pid_t pid;
    fflush(NULL);
    pid = fork();
    if (pid < 0) fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(out_path != NULL ? out_path : "/dev/null",
                      O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "harness: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

/* Waits for a command; see harness.h. */
int th_cmd_wait(pid_t pid, int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    int status;
    while (th_now_ms() < deadline) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        th_sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* Runs a command to its end; see harness.h. */
int th_cmd_run(const char *const argv[], const char *out_path, int timeout_ms)
{
    return th_cmd_wait(th_cmd_start(argv, out_path), timeout_ms);
}

/* Reads a whole file; see harness.h. */
char *th_file_read(const char *path)
{
    FILE *f = fopen(path, "r");
    char *text = NULL;
    long len = 0;
    if (f != NULL && fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0) {
        rewind(f);
        text = malloc((size_t)len + 1);
        if (text != NULL) text[fread(text, 1, (size_t)len, f)] = '\0';
    }
    if (f != NULL) fclose(f);
    if (text == NULL) text = calloc(1, 1);
    assert_non_null(text);
    return text;
}

/* Waits for needle in a file; see harness.h. */
bool th_file_wait(const char *path, const char *needle, int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    bool found = false;
    for (;;) {
        char *text = th_file_read(path);
        found = strstr(text, needle) != NULL;
        free(text);
        if (found || th_now_ms() >= deadline) break;
        th_sleep_ms(20);
    }
    return found;
}

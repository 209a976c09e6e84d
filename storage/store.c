/*
 * store.c - data directory creation and the single-instance lock.
 *
 * The lock is a flock(2) on DIR/uvmq.lock: released by the kernel when the
 * process dies, so a crashed broker never leaves a stale lock behind.
 */
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/err.h"
#include "../common/log.h"
#include "../common/xmalloc.h"

struct store_s {
    char *dir;
    int lock_fd;
};

/* mkdir -p with mode 0700 for every missing component. */
static int mkdir_p(const char *dir)
{
    char *path = xstrdup(dir);
    int rc = 0;
    for (char *p = path + 1; *p != '\0' && rc == 0; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) rc = -errno;
        *p = '/';
    }
    if (rc == 0 && mkdir(path, 0700) != 0 && errno != EEXIST) rc = -errno;
    free(path);
    return rc;
}

/* Opens and locks DIR/uvmq.lock; returns the fd or -1 after logging. */
static int take_lock(const char *dir)
{
    size_t n = strlen(dir) + sizeof "/uvmq.lock";
    char *path = xmalloc(n);
    snprintf(path, n, "%s/uvmq.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("cannot open lock file %s: %s (is the data dir writable?)",
                  path, strerror(errno));
    } else if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            log_error("data dir %s is in use by another uvmq (lock %s is held)",
                      dir, path);
        else
            log_error("cannot lock %s: %s", path, strerror(errno));
        close(fd);
        fd = -1;
    }
    free(path);
    return fd;
}

int store_open(store_t **out, const char *dir)
{
    int rc = 0;
    int fd = -1;
    *out = NULL;
    if (dir == NULL || dir[0] == '\0') {
        log_error("data dir is empty");
        rc = ERR_IO;
    } else if ((rc = mkdir_p(dir)) != 0) {
        log_error("cannot create data dir %s: %s", dir, strerror(-rc));
        rc = ERR_IO;
    } else if ((fd = take_lock(dir)) < 0) {
        rc = ERR_IO;
    } else {
        store_t *s = xmalloc(sizeof *s);
        s->dir = xstrdup(dir);
        s->lock_fd = fd;
        *out = s;
    }
    return rc;
}

const char *store_dir(const store_t *s)
{
    return s->dir;
}

void store_close(store_t *s)
{
    if (s == NULL) return;
    close(s->lock_fd); /* closing the only descriptor drops the flock */
    free(s->dir);
    free(s);
}

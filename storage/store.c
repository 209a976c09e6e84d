/*
 * store.c - opening and closing the store: the data directory, its lock,
 * and the checks that keep uvmq from starting over a database it must not
 * touch.
 *
 * The lock is a flock(2) on DIR/uvmq.lock: released by the kernel when the
 * process dies, so a crashed broker never leaves a stale lock behind. Every
 * refusal happens before the first write to DIR/uvmq.db, so a refused file
 * keeps its bytes (the WAL mode switch and migrations come after).
 */
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "store_int.h"
#include "../common/err.h"
#include "../common/log.h"
#include "../common/xmalloc.h"

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

/* Refuses a data dir on a read-only file system or without the owner's
 * write bit. The mode bit is checked even for root, who would otherwise
 * write into a directory the operator marked read-only. */
static int check_dir(const char *dir)
{
    struct statvfs vfs;
    struct stat st;
    int rc = UVMQ_EIO;
    if (statvfs(dir, &vfs) == 0 && (vfs.f_flag & ST_RDONLY) != 0)
        log_error("data dir %s is on a read-only file system", dir);
    else if (stat(dir, &st) != 0)
        log_error("cannot stat data dir %s: %s", dir, strerror(errno));
    else if ((st.st_mode & S_IWUSR) == 0)
        log_error("data dir %s is read-only (mode %04o)", dir, (unsigned)(st.st_mode & 07777));
    else if (access(dir, W_OK | X_OK) != 0)
        log_error("data dir %s is not writable: %s", dir, strerror(errno));
    else
        rc = 0;
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

/* Checks an existing database file before SQLite sees it. Sets *exists.
 * Returns 0 or UVMQ_EIO after logging. */
static int check_file(const char *path, bool *exists)
{
    struct stat st;
    int rc = UVMQ_EIO;
    *exists = stat(path, &st) == 0;
    if (!*exists && errno == ENOENT)
        rc = 0;
    else if (!*exists)
        log_error("cannot stat %s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        log_error("%s is not a regular file; refusing to use it", path);
    else if ((st.st_mode & (S_IRUSR | S_IWUSR)) != (S_IRUSR | S_IWUSR))
        log_error("%s is not readable and writable by its owner (mode %04o)", path,
                  (unsigned)(st.st_mode & 07777));
    else if (access(path, R_OK | W_OK) != 0)
        log_error("%s is not readable and writable: %s", path, strerror(errno));
    else
        rc = 0;
    return rc;
}

/* Runs a one-row read and returns the SQLite code; *count gets column 0. */
static int read_int(sqlite3 *db, const char *sql, int *count)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *count = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* PRAGMA quick_check(1): "ok" or the first problem. Returns 0 or UVMQ_EIO. */
static int quick_check(store_t *s)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA quick_check(1)", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    const char *res = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    if (res == NULL || strcmp(res, "ok") != 0) {
        char first[160]; /* the report spans lines; the log takes one */
        snprintf(first, sizeof first, "%s", res != NULL ? res : sqlite3_errmsg(s->db));
        for (char *p = first; *p != '\0'; p++) if (*p == '\n') *p = ' ';
        log_error("%s is corrupt: integrity check says \"%s\"; refusing to open it",
                  s->db_path, first);
        rc = UVMQ_EIO;
    } else {
        rc = 0;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Reads the header and schema (without writing) and refuses what uvmq must
 * not touch: not a database, corrupt, a foreign or newer schema. */
static int check_db(store_t *s)
{
    int n_tables = 0, rc = UVMQ_EIO;
    int src = read_int(s->db, "SELECT count(*) FROM sqlite_schema", &n_tables);
    int v = src == SQLITE_OK ? store__read_version(s->db) : -1;
    if ((src & 0xff) == SQLITE_NOTADB)
        log_error("%s is not an SQLite database; refusing to open it", s->db_path);
    else if ((src & 0xff) == SQLITE_CORRUPT)
        log_error("%s is corrupt (%s); refusing to open it", s->db_path, sqlite3_errmsg(s->db));
    else if (src != SQLITE_OK || v < 0)
        log_error("cannot read %s: %s", s->db_path, sqlite3_errmsg(s->db));
    else if (v > STORE_SCHEMA_VERSION)
        log_error("%s has schema version %d, newer than this uvmq knows (%d);"
                  " refusing to open it", s->db_path, v, STORE_SCHEMA_VERSION);
    else if (v == 0 && n_tables > 0)
        log_error("%s is not a uvmq database (schema version 0 with %d tables);"
                  " refusing to open it", s->db_path, n_tables);
    else
        rc = v > 0 && s->opts.check == STORE_CHECK_QUICK ? quick_check(s) : 0;
    return rc;
}

/* WAL mode, synchronous level and page limit. Returns 0 or UVMQ_EIO. */
static int set_pragmas(store_t *s)
{
    sqlite3_stmt *st = NULL;
    int rc = UVMQ_EIO;
    if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW &&
        strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0)
        rc = 0;
    sqlite3_finalize(st);
    const char *sync = s->opts.durability == STORE_FULL ? "PRAGMA synchronous=FULL"
                                                        : "PRAGMA synchronous=NORMAL";
    if (rc == 0 && sqlite3_exec(s->db, sync, NULL, NULL, NULL) != SQLITE_OK) rc = UVMQ_EIO;
    if (rc != 0)
        log_error("%s: cannot switch to WAL mode: %s", s->db_path, sqlite3_errmsg(s->db));
    return rc;
}

/* Opens DIR/uvmq.db, checks it, migrates it and prepares the statements. */
static int open_db(store_t *s)
{
    bool exists = false;
    int rc = check_file(s->db_path, &exists);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (exists ? 0 : SQLITE_OPEN_CREATE);
    if (rc == 0 && sqlite3_open_v2(s->db_path, &s->db, flags, NULL) != SQLITE_OK) {
        log_error("cannot open %s: %s", s->db_path,
                  s->db != NULL ? sqlite3_errmsg(s->db) : "out of memory");
        rc = UVMQ_EIO;
    }
    if (rc == 0) sqlite3_extended_result_codes(s->db, 1);
    if (rc == 0 && sqlite3_db_readonly(s->db, "main") != 0) {
        log_error("%s can only be opened read-only; refusing to use it", s->db_path);
        rc = UVMQ_EIO;
    }
    if (rc == 0) rc = check_db(s);
    if (rc == 0) rc = set_pragmas(s);
    if (rc == 0) store_set_max_db_pages(s, s->opts.max_db_pages);
    if (rc == 0) rc = store__migrate(s->db, s->db_path, store__migrations, STORE_SCHEMA_VERSION);
    if (rc == 0) rc = store__prepare(s);
    return rc;
}

/* Frees everything open_db and store_open built; the thread is stopped. */
static void teardown(store_t *s)
{
    assert(!s->thread_started);
    store__finalize(s);
    if (s->db != NULL && sqlite3_close(s->db) != SQLITE_OK)
        log_error("%s: close failed: %s", s->db_path, sqlite3_errmsg(s->db));
    if (s->lock_fd >= 0) close(s->lock_fd); /* the only descriptor: drops the flock */
    pthread_mutex_destroy(&s->db_mu);
    free(s->db_path);
    free(s->dir);
    free(s);
}

/* Builds the store object for a locked dir. */
static store_t *store_new(const char *dir, int fd, const store_opts_t *opts)
{
    store_t *s = xcalloc(1, sizeof *s);
    size_t n = strlen(dir) + sizeof "/" STORE_DB_NAME;
    s->dir = xstrdup(dir);
    s->db_path = xmalloc(n);
    snprintf(s->db_path, n, "%s/%s", dir, STORE_DB_NAME);
    s->lock_fd = fd;
    if (opts != NULL) s->opts = *opts;
    if (s->opts.batch_ms == 0) s->opts.batch_ms = 10;
    pthread_mutex_init(&s->db_mu, NULL);
    return s;
}

/* See store.h. On failure everything is undone: the lock is released and
 * nothing was written to an existing database file. */
int store_open(store_t **out, const char *dir, const store_opts_t *opts)
{
    int rc = 0;
    int fd = -1;
    *out = NULL;
    if (dir == NULL || dir[0] == '\0') {
        log_error("data dir is empty");
        rc = UVMQ_EIO;
    } else if ((rc = mkdir_p(dir)) != 0) {
        log_error("cannot create data dir %s: %s", dir, strerror(-rc));
        rc = UVMQ_EIO;
    } else if ((rc = check_dir(dir)) != 0) {
        rc = UVMQ_EIO;
    } else if ((fd = take_lock(dir)) < 0) {
        rc = UVMQ_EIO;
    } else {
        store_t *s = store_new(dir, fd, opts);
        rc = open_db(s);
        if (rc == 0) rc = store__thread_start(s);
        if (rc == 0) {
            log_info("%s: opened (schema version %d, durability %s)", s->db_path,
                     STORE_SCHEMA_VERSION, s->opts.durability == STORE_FULL ? "full" : "batch");
            *out = s;
        } else {
            teardown(s);
        }
    }
    return rc;
}

/* Returns the data directory path (owned by the store). */
const char *store_dir(const store_t *s)
{
    return s->dir;
}

/* Drains and stops the storage thread, closes the database (SQLite
 * checkpoints the WAL and removes it when the last connection closes),
 * releases the lock and frees s. */
void store_close(store_t *s)
{
    if (s == NULL) return;
    store__thread_stop(s);
    teardown(s);
}

/*
 * store_int.h - internals shared by storage/'s files (prefix store__).
 *
 * A batch is an array of operations, each a copy of a public record whose
 * strings and blobs point into one allocation the operation owns. The
 * store holds the SQLite connection, its prepared statements (prepared
 * once at open), the submission queue and the counters.
 */
#ifndef UVMQ_STORE_INT_H
#define UVMQ_STORE_INT_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>

#include "store.h"
#include "../common/arena.h"

#define STORE_SCHEMA_VERSION 2
#define STORE_DB_NAME "uvmq.db"

enum store_op_kind {
    OP_SESSION_PUT, OP_SESSION_DEL, OP_SUB_PUT, OP_SUB_DEL, OP_MSG_PUT,
    OP_ENTRY_ADD, OP_ENTRY_UPDATE, OP_ENTRY_DEL, OP_INQ2_ADD, OP_INQ2_DEL,
    OP_RETAINED_SET, OP_RETAINED_DEL,
};

/* Keyed operations with no record of their own (deletes, updates). */
typedef struct store_key_s {
    const char *client_id; /* or the retained topic */
    const char *filter;
    uint64_t seq;          /* or the retained message id */
    uint16_t packet_id;
    uint8_t state;
    bool drop_msg;
} store_key_t;

typedef struct store_op_s {
    enum store_op_kind kind;
    union {
        store_session_t sess;
        store_sub_t sub;
        store_msg_t msg;
        store_entry_t entry;
        store_key_t key;
    } u; /* strings and blobs point into the batch's arena */
} store_op_t;

struct store_batch_s {
    store_op_t *ops;
    size_t n, cap;
    arena_t copies; /* every string and blob the operations point at */
    store_done_cb cb; /* NULL once called (STORE_BATCH acks at submit) */
    void *ctx;
    int status;
    struct store_batch_s *next;
};

/* Prepared statements, indexed by these ids (SQL text in store_sql.c). */
enum store_stmt_id {
    ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_SAVEPOINT, ST_RELEASE, ST_ROLLBACK_TO,
    ST_SESS_PUT, ST_SESS_DEL, ST_SESS_ENTRY_MSGS, ST_SESS_DEL_ENTRIES,
    ST_SESS_DEL_SUBS, ST_SESS_DEL_INQ2, ST_SUB_PUT, ST_SUB_DEL, ST_MSG_PUT,
    ST_MSG_REF, ST_MSG_GC, ST_ENTRY_ADD, ST_ENTRY_MSG, ST_ENTRY_UPDATE,
    ST_ENTRY_DEL, ST_INQ2_ADD, ST_INQ2_DEL, ST_RET_GET, ST_RET_SET, ST_RET_DEL,
    ST_COUNT
};

/* One schema step: run sql to go from version (index) to index + 1. */
typedef struct store_migration_s {
    const char *name;
    const char *sql;
} store_migration_t;

struct store_s {
    char *dir;
    char *db_path;
    int lock_fd;
    store_opts_t opts;
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    pthread_mutex_t db_mu; /* held by a commit and by store_recover */

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu; /* guards the fields down to barrier */
    pthread_cond_t cond;
    store_batch_t *head, *tail;
    uint64_t first_ms; /* monotonic ms of the oldest queued batch */
    bool stopping;
    bool barrier; /* an empty batch is queued: commit without waiting */

    bool failing; /* in a failure episode (logged once); storage thread */
    int failed_since_barrier; /* first batch failure since the last
                                 barrier (carry_failures); storage thread */
    uint32_t applied_max_pages;
    _Atomic uint32_t max_pages;
    _Atomic uint64_t commits, batches, ops, failed_commits;
    _Atomic uint64_t backlog; /* operations submitted, not yet committed */
    _Atomic uint64_t last_commit_us, max_commit_us, sum_commit_us;
    _Atomic uint64_t hist[STORE_HIST_BUCKETS]; /* per bucket, not cumulative */
};

/* The schema steps, STORE_SCHEMA_VERSION of them. */
extern const store_migration_t store__migrations[STORE_SCHEMA_VERSION];

/* Runs steps mig[from .. n-1], each in its own transaction that also sets
 * PRAGMA user_version. Returns 0 or UVMQ_EIO after logging (that step rolled
 * back; earlier steps stay). path is for the log. */
int store__migrate(sqlite3 *db, const char *path, const store_migration_t *mig,
                   int n);

/* Reads PRAGMA user_version; returns it, or -1 on a read failure. */
int store__read_version(sqlite3 *db);

/* Prepares every statement into s->st. Returns 0 or UVMQ_EIO after logging. */
int store__prepare(store_t *s);

/* Finalizes the statements (NULL entries are skipped). */
void store__finalize(store_t *s);

/* Applies one operation inside the open transaction. Returns 0, UVMQ_EINVAL
 * (a missing message, caller error) or a SQLite result code > 0. */
int store__apply(store_t *s, const store_op_t *op);

/* Runs a prepared statement with no result rows; resets it. Returns the
 * SQLite code (SQLITE_DONE mapped to SQLITE_OK). */
int store__run(sqlite3_stmt *st);

/* Starts the storage thread. Returns 0 or UVMQ_EIO. */
int store__thread_start(store_t *s);

/* Drains the queue (every callback runs) and joins the thread. */
void store__thread_stop(store_t *s);

/* Frees a batch's operations and the batch. */
void store__batch_free(store_batch_t *b);

/* Monotonic clock in microseconds. */
uint64_t store__now_us(void);

#endif

/*
 * store_thread.c - submission queue, the storage thread and group commit.
 *
 * Submitters append to one FIFO under a mutex (a few pointer writes); the
 * storage thread takes the whole list at once and applies it in ONE
 * transaction, each batch inside a savepoint: an invalid batch (a caller
 * bug such as an entry for a missing message) is rolled back alone, while
 * an I/O-class failure (SQLITE_FULL, SQLITE_IOERR, ...) rolls back the
 * whole transaction and fails every batch in it. Callbacks run after.
 */
#include "store_int.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../common/err.h"
#include "../common/log.h"

const uint64_t store_hist_le_us[STORE_HIST_BUCKETS] = {
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,
    UINT64_MAX,
};

/* Constraint-type failures belong to one batch; everything else (full
 * disk, I/O error, no memory, corruption) fails the whole transaction. */
static bool batch_local(int rc)
{
    int prim = rc & 0xff;
    return rc == UVMQ_EINVAL || prim == SQLITE_CONSTRAINT || prim == SQLITE_MISMATCH ||
           prim == SQLITE_TOOBIG || prim == SQLITE_RANGE;
}

/* Applies one batch inside a savepoint. Returns 0, UVMQ_EINVAL (batch rolled
 * back alone, b->status set) or a fatal SQLite code. */
static int apply_batch(store_t *s, store_batch_t *b)
{
    assert(!sqlite3_get_autocommit(s->db)); /* inside commit_list's BEGIN */
    assert(b->status == 0); /* each batch is applied once */
    int rc = store__run(s->st[ST_SAVEPOINT]);
    for (size_t i = 0; i < b->n && rc == SQLITE_OK; i++) rc = store__apply(s, &b->ops[i]);
    if (rc == SQLITE_OK) {
        rc = store__run(s->st[ST_RELEASE]);
    } else if (batch_local(rc)) {
        log_warn("%s: a storage batch was rejected (%s) and rolled back alone",
                 s->db_path, rc == UVMQ_EINVAL ? "an invalid operation: a reference to a "
                                               "missing message, or a message without id"
                                             : sqlite3_errstr(rc));
        b->status = UVMQ_EINVAL;
        rc = store__run(s->st[ST_ROLLBACK_TO]);
        if (rc == SQLITE_OK) rc = store__run(s->st[ST_RELEASE]);
    }
    return rc;
}

/* Logs the first failure of an episode and the recovery after it. */
static void note_result(store_t *s, int rc)
{
    if (rc != SQLITE_OK && !s->failing) {
        log_error("%s: commit failed: %s (%s); rolled back, the affected"
                  " publishes are refused until writes succeed again",
                  s->db_path, sqlite3_errstr(rc), sqlite3_errmsg(s->db));
        s->failing = true;
    } else if (rc == SQLITE_OK && s->failing) {
        log_info("%s: commits succeed again", s->db_path);
        s->failing = false;
    }
}

static void count_commit(store_t *s, uint64_t us)
{
    unsigned i = 0;
    while (us > store_hist_le_us[i]) i++; /* the last bound is UINT64_MAX */
    assert(i < STORE_HIST_BUCKETS);
    atomic_fetch_add_explicit(&s->hist[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->commits, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sum_commit_us, us, memory_order_relaxed);
    atomic_store_explicit(&s->last_commit_us, us, memory_order_relaxed);
    if (us > atomic_load_explicit(&s->max_commit_us, memory_order_relaxed))
        atomic_store_explicit(&s->max_commit_us, us, memory_order_relaxed);
}

/* Applies a pending max_page_count change (fault injection). */
static void apply_max_pages(store_t *s)
{
    uint32_t want = atomic_load_explicit(&s->max_pages, memory_order_relaxed);
    if (want != s->applied_max_pages) {
        /* Not the hot path: runs once per change. 0 restores the default. */
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA max_page_count=%u", want ? want : 0xfffffffeu);
        sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        s->applied_max_pages = want;
    }
}

/* Applies every batch of the list in one transaction and commits it. On a
 * fatal failure every batch gets UVMQ_EIO. Skips the transaction when the
 * list holds only barriers. */
static void commit_list(store_t *s, store_batch_t *list)
{
    size_t n_ops = 0, n_batches = 0;
    for (store_batch_t *b = list; b != NULL; b = b->next, n_batches++) n_ops += b->n;
    atomic_fetch_add_explicit(&s->batches, n_batches, memory_order_relaxed);
    if (n_ops == 0) return;
    pthread_mutex_lock(&s->db_mu);
    apply_max_pages(s);
    uint64_t t0 = store__now_us();
    int rc = store__run(s->st[ST_BEGIN]);
    for (store_batch_t *b = list; b != NULL && rc == SQLITE_OK; b = b->next)
        rc = apply_batch(s, b);
    if (rc == SQLITE_OK) rc = store__run(s->st[ST_COMMIT]);
    if (rc != SQLITE_OK && !sqlite3_get_autocommit(s->db)) store__run(s->st[ST_ROLLBACK]);
    note_result(s, rc);
    if (rc == SQLITE_OK) {
        count_commit(s, store__now_us() - t0);
        atomic_fetch_add_explicit(&s->ops, n_ops, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&s->failed_commits, 1, memory_order_relaxed);
        for (store_batch_t *b = list; b != NULL; b = b->next) b->status = UVMQ_EIO;
    }
    uint64_t before = atomic_fetch_sub_explicit(&s->backlog, n_ops, memory_order_relaxed);
    assert(before >= n_ops); /* store_submit counted them before queueing */
    (void)before;
    pthread_mutex_unlock(&s->db_mu);
}

/* A barrier reports the first failure of any batch since the previous
 * barrier, in this list or an earlier one: in STORE_BATCH mode the
 * batches' own callbacks ran at submit time, and the barrier is the only
 * way a caller learns that what it submitted did not commit. Storage
 * thread only. */
static void carry_failures(store_t *s, store_batch_t *list)
{
    for (store_batch_t *b = list; b != NULL; b = b->next) {
        if (b->n > 0 && b->status != 0 && s->failed_since_barrier == 0)
            s->failed_since_barrier = b->status;
        if (b->n == 0) {
            if (b->status == 0) b->status = s->failed_since_barrier;
            s->failed_since_barrier = 0;
        }
    }
}

/* Runs the callbacks in submission order and frees the batches. */
static void finish_list(store_batch_t *list)
{
    while (list != NULL) {
        store_batch_t *next = list->next;
        if (list->cb != NULL) list->cb(list->ctx, list->status);
        store__batch_free(list);
        list = next;
    }
}

/* Waits for work; in STORE_BATCH mode also until the oldest batch is
 * batch_ms old (or a barrier or shutdown asks for a commit now). Returns
 * the taken list, or NULL when stopping with nothing left. Called with mu
 * held. */
static store_batch_t *take_list(store_t *s)
{
    while (s->head == NULL && !s->stopping) pthread_cond_wait(&s->cond, &s->mu);
    if (s->opts.durability == STORE_BATCH) {
        uint64_t due_ms = s->first_ms + s->opts.batch_ms;
        struct timespec ts = { (time_t)(due_ms / 1000), (long)(due_ms % 1000) * 1000000L };
        int rc = 0;
        while (s->head != NULL && !s->stopping && !s->barrier && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&s->cond, &s->mu, &ts);
    }
    store_batch_t *list = s->head;
    assert((s->head == NULL) == (s->tail == NULL));
    assert(list != NULL || s->stopping); /* only the storage thread takes */
    s->head = s->tail = NULL;
    s->barrier = false;
    return list;
}

static void *thread_main(void *arg)
{
    store_t *s = arg;
    store_batch_t *list = NULL;
    pthread_mutex_lock(&s->mu);
    while ((list = take_list(s)) != NULL) {
        pthread_mutex_unlock(&s->mu);
        commit_list(s, list);
        carry_failures(s, list);
        finish_list(list);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Monotonic milliseconds, the clock the condition variable waits on. */
static uint64_t now_ms(void)
{
    return store__now_us() / 1000u;
}

/* Initialises the queue and starts the storage thread. The condition
 * variable uses CLOCK_MONOTONIC so batch_ms survives wall clock steps.
 * Returns 0 or UVMQ_EIO after logging. */
int store__thread_start(store_t *s)
{
    pthread_condattr_t ca;
    int rc = 0;
    assert(!s->thread_started && s->head == NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->mu, NULL);
    /* The thread starts with every signal blocked (it inherits the mask):
     * SIGINT/SIGTERM must reach a thread that runs an event loop. Once,
     * under TSan, a SIGTERM taken by this thread, idle in its condition
     * wait, was never handled and the broker did not stop. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&s->thread, NULL, thread_main, s) != 0) {
        log_error("%s: cannot start the storage thread", s->db_path);
        rc = UVMQ_EIO;
    } else {
        s->thread_started = true;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* Asks the thread to commit what is queued and exit, and joins it. Every
 * callback has run when this returns. */
void store__thread_stop(store_t *s)
{
    if (s->thread_started) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        s->thread_started = false;
        /* The thread left take_list only with nothing queued, and every
         * operation it took was counted off the backlog. */
        assert(s->head == NULL && s->tail == NULL);
        assert(atomic_load_explicit(&s->backlog, memory_order_relaxed) == 0);
    }
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
}

/* Queues b for the next group commit (see store.h). In STORE_BATCH mode a
 * non-empty batch's callback runs here, at once, with status 0. Takes b. */
int store_submit(store_t *s, store_batch_t *b, store_done_cb cb, void *ctx)
{
    int rc = 0;
    if (b == NULL) {
        rc = UVMQ_EINVAL;
    } else {
        b->cb = cb;
        b->ctx = ctx;
        b->next = NULL;
        if (s->opts.durability == STORE_BATCH && b->n > 0 && cb != NULL) {
            cb(ctx, 0);
            b->cb = NULL;
        }
        atomic_fetch_add_explicit(&s->backlog, b->n, memory_order_relaxed);
        pthread_mutex_lock(&s->mu);
        assert(!s->stopping); /* store.h: no store_submit during or after store_close */
        assert((s->head == NULL) == (s->tail == NULL));
        if (s->head == NULL) {
            s->head = b;
            s->first_ms = now_ms();
        } else {
            s->tail->next = b;
        }
        s->tail = b;
        if (b->n == 0) s->barrier = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->mu);
    }
    return rc;
}

size_t store_backlog(const store_t *s)
{
    return (size_t)atomic_load_explicit(&s->backlog, memory_order_relaxed);
}

/* Copies the counters with relaxed loads; the histogram is made cumulative. */
void store_stats(const store_t *s, store_stats_t *out)
{
    store_t *m = (store_t *)s; /* atomic loads take non-const pointers */
    uint64_t acc = 0;
    out->commits = atomic_load_explicit(&m->commits, memory_order_relaxed);
    out->batches = atomic_load_explicit(&m->batches, memory_order_relaxed);
    out->ops = atomic_load_explicit(&m->ops, memory_order_relaxed);
    out->failed_commits = atomic_load_explicit(&m->failed_commits, memory_order_relaxed);
    out->last_commit_us = atomic_load_explicit(&m->last_commit_us, memory_order_relaxed);
    out->max_commit_us = atomic_load_explicit(&m->max_commit_us, memory_order_relaxed);
    out->sum_commit_us = atomic_load_explicit(&m->sum_commit_us, memory_order_relaxed);
    for (int i = 0; i < STORE_HIST_BUCKETS; i++) {
        acc += atomic_load_explicit(&m->hist[i], memory_order_relaxed);
        out->hist[i] = acc;
    }
}

/* Records a new page limit; the storage thread applies it before its next
 * commit. */
void store_set_max_db_pages(store_t *s, uint32_t pages)
{
    atomic_store_explicit(&s->max_pages, pages, memory_order_relaxed);
}

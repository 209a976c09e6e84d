/*
 * bench/micro/store.c - persisted QoS 1 throughput of storage/, group commit
 * against one transaction per message, bytes on disk per message, and
 * recovery time.
 *
 * Each message is a 64-byte payload with one queue entry; once its batch is
 * acknowledged the entry is deleted, as a subscriber's PUBACK would. Usage:
 *   store [N]              (a) 2 producers, group commit; (b) one
 *                          transaction per message; (c) bytes per message
 *   store recover N        N queued messages, then open/quick_check/recover
 * Runs in a temporary dir under $TMPDIR (default /tmp) on STORE_FULL. Each
 * result is one line of key=value pairs.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "common/log.h"
#include "storage/store.h"

#define PAYLOAD 64
#define WINDOW 256 /* publishes in flight per producer */

static const char payload[PAYLOAD] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde";

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void die(const char *what)
{
    fprintf(stderr, "store bench: %s failed\n", what);
    exit(1);
}

static void add_publish(store_batch_t *b, const char *cid, uint64_t id)
{
    store_msg_t m = { .id = id, .topic = "bench/store", .payload = payload,
                      .payload_len = PAYLOAD, .qos = 1 };
    store_entry_t e = { .client_id = cid, .seq = id, .msg_id = id, .qos = 1 };
    if (store_batch_msg_put(b, &m) != 0 || store_batch_entry_add(b, &e) != 0) die("batch");
}

/* A completion counter a thread can wait on. */
typedef struct acks_s {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    uint64_t n;
} acks_t;

static void on_ack(void *ctx, int status)
{
    acks_t *a = ctx;
    if (status != 0) die("commit");
    pthread_mutex_lock(&a->mu);
    a->n++;
    pthread_cond_signal(&a->cond);
    pthread_mutex_unlock(&a->mu);
}

/* Waits until at least want acks arrived; returns the count. */
static uint64_t wait_acks(acks_t *a, uint64_t want)
{
    pthread_mutex_lock(&a->mu);
    while (a->n < want) pthread_cond_wait(&a->cond, &a->mu);
    uint64_t n = a->n;
    pthread_mutex_unlock(&a->mu);
    return n;
}

typedef struct producer_s {
    store_t *s;
    char cid[16];
    uint64_t base, n;
    acks_t acks;
} producer_t;

/* Submits dels for the entries acked since the last call. */
static uint64_t delete_acked(producer_t *p, uint64_t deleted, uint64_t acked)
{
    if (acked > deleted) {
        store_batch_t *b = store_batch_create();
        for (uint64_t i = deleted; i < acked; i++) store_batch_entry_del(b, p->cid, p->base + i);
        store_submit(p->s, b, NULL, NULL);
    }
    return acked;
}

static void *produce(void *arg)
{
    producer_t *p = arg;
    uint64_t deleted = 0;
    for (uint64_t sent = 0; sent < p->n; sent++) {
        uint64_t acked = wait_acks(&p->acks, sent >= WINDOW ? sent - WINDOW + 1 : 0);
        store_batch_t *b = store_batch_create();
        add_publish(b, p->cid, p->base + sent);
        store_submit(p->s, b, on_ack, &p->acks);
        deleted = delete_acked(p, deleted, acked);
    }
    delete_acked(p, deleted, wait_acks(&p->acks, p->n));
    return NULL;
}

static void barrier(store_t *s)
{
    acks_t a = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
    store_submit(s, store_batch_create(), on_ack, &a);
    wait_acks(&a, 1);
}

static void report(const char *name, uint64_t n, uint64_t us, const store_stats_t *a,
                   const store_stats_t *b)
{
    uint64_t commits = b->commits - a->commits;
    double sec = (double)us / 1e6;
    printf("store %s msgs=%llu elapsed_ms=%llu msgs_per_s=%.0f commits=%llu commits_per_s=%.0f"
           " batches=%llu mean_commit_us=%.0f max_commit_us=%llu\n",
           name, (unsigned long long)n, (unsigned long long)(us / 1000), (double)n / sec,
           (unsigned long long)commits, (double)commits / sec,
           (unsigned long long)(b->batches - a->batches),
           commits ? (double)(b->sum_commit_us - a->sum_commit_us) / (double)commits : 0.0,
           (unsigned long long)b->max_commit_us);
}

/* (a) two producers, group commit. */
static void run_group(store_t *s, uint64_t n)
{
    producer_t p[2];
    pthread_t th[2];
    store_stats_t a, b;
    store_stats(s, &a);
    uint64_t t0 = now_us();
    for (int i = 0; i < 2; i++) {
        p[i] = (producer_t){ .s = s, .base = 1 + (uint64_t)i * n, .n = n / 2,
                             .acks = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 } };
        snprintf(p[i].cid, sizeof p[i].cid, "group%d", i);
        if (pthread_create(&th[i], NULL, produce, &p[i]) != 0) die("pthread_create");
    }
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    barrier(s);
    uint64_t us = now_us() - t0;
    store_stats(s, &b);
    report("group_commit", n, us, &a, &b);
}

/* (b) one transaction per message: the batch holding message i also
 * deletes the entry of message i-1, acked by then. */
static void run_single(store_t *s, uint64_t n)
{
    acks_t acks = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
    store_stats_t a, b;
    uint64_t base = 10 * n;
    store_stats(s, &a);
    uint64_t t0 = now_us();
    for (uint64_t i = 0; i < n; i++) {
        store_batch_t *bt = store_batch_create();
        add_publish(bt, "single", base + i);
        if (i > 0) store_batch_entry_del(bt, "single", base + i - 1);
        store_submit(s, bt, on_ack, &acks);
        wait_acks(&acks, i + 1);
    }
    uint64_t us = now_us() - t0;
    store_stats(s, &b);
    report("one_txn_per_msg", n, us, &a, &b);
}

static uint64_t file_size(const char *dir, const char *name)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* Queues n messages (left queued) in batches of 1000 from this thread,
 * waiting every 20 batches so the queue stays small. */
static void fill(store_t *s, const char *cid, uint64_t base, uint64_t n)
{
    for (uint64_t i = 0, nb = 1; i < n; nb++) {
        store_batch_t *b = store_batch_create();
        for (uint64_t k = 0; k < 1000 && i < n; k++, i++) add_publish(b, cid, base + i);
        store_submit(s, b, NULL, NULL);
        if (nb % 20 == 0) barrier(s);
    }
    barrier(s);
}

/* (c) bytes on disk per queued message, in a fresh data dir: db + wal
 * while open, and the db alone after close (WAL checkpointed). */
static void run_bytes(const char *parent, uint64_t n)
{
    char dir[300];
    store_t *s = NULL;
    snprintf(dir, sizeof dir, "%s/bytes", parent);
    if (store_open(&s, dir, NULL) != 0) die("store_open");
    uint64_t before = file_size(dir, "uvmq.db") + file_size(dir, "uvmq.db-wal");
    fill(s, "bytes", 1, n);
    uint64_t open_sz = file_size(dir, "uvmq.db") + file_size(dir, "uvmq.db-wal") - before;
    store_close(s);
    uint64_t closed = file_size(dir, "uvmq.db");
    printf("store bytes_on_disk msgs=%llu payload=%d db_plus_wal=%llu per_msg_open=%.1f"
           " db_after_close=%llu per_msg_closed=%.1f\n", (unsigned long long)n, PAYLOAD,
           (unsigned long long)open_sz, (double)open_sz / (double)n,
           (unsigned long long)closed, (double)closed / (double)n);
}

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Current resident set in KiB (/proc/self/statm, 4 KiB pages). */
static long rss_kb(void)
{
    long size = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL && fscanf(f, "%ld %ld", &size, &res) != 2) res = 0;
    if (f != NULL) fclose(f);
    return res * 4;
}

static int count_msg(void *ctx, const store_msg_t *m)
{
    (*(uint64_t *)ctx)++;
    return 0;
}

/* Opens dir with the given check, recovers, prints one line. */
static void time_recover(const char *dir, store_check_t check)
{
    store_opts_t opts = { .check = check };
    store_t *s = NULL;
    store_recover_stats_t st;
    store_recover_cb_t cbs = { .on_msg = count_msg };
    uint64_t seen = 0;
    uint64_t t0 = now_us();
    if (store_open(&s, dir, &opts) != 0) die("store_open");
    uint64_t t1 = now_us();
    long rss0 = rss_kb();
    if (store_recover(s, &cbs, &seen, &st) != 0) die("store_recover");
    uint64_t t2 = now_us();
    long rss1 = rss_kb();
    store_close(s);
    printf("store recover check=%s msgs=%llu entries=%llu open_ms=%llu recover_ms=%llu"
           " rss_kb_before=%ld rss_kb_after=%ld\n", check == STORE_CHECK_QUICK ? "quick" : "none",
           (unsigned long long)seen, (unsigned long long)st.entries,
           (unsigned long long)((t1 - t0) / 1000), (unsigned long long)((t2 - t1) / 1000),
           rss0, rss1);
}

static void run_recover(const char *dir, uint64_t n)
{
    store_t *s = NULL;
    uint64_t t0 = now_us();
    if (store_open(&s, dir, NULL) != 0) die("store_open");
    fill(s, "queued", 1, n);
    store_close(s);
    printf("store fill msgs=%llu elapsed_ms=%llu db_bytes=%llu max_rss_kb=%ld\n",
           (unsigned long long)n, (unsigned long long)((now_us() - t0) / 1000),
           (unsigned long long)file_size(dir, "uvmq.db"), max_rss_kb());
    time_recover(dir, STORE_CHECK_NONE);
    time_recover(dir, STORE_CHECK_QUICK);
}

int main(int argc, char **argv)
{
    char dir[256];
    const char *tmp = getenv("TMPDIR");
    bool recover = argc > 1 && strcmp(argv[1], "recover") == 0;
    uint64_t n = strtoull(argc > (recover ? 2 : 1) ? argv[recover ? 2 : 1] : "20000", NULL, 10);
    log_set_level(LOG_WARN);
    snprintf(dir, sizeof dir, "%s/uvmq-bench-store-XXXXXX", tmp ? tmp : "/tmp");
    if (n < 2 || mkdtemp(dir) == NULL) die("arguments or mkdtemp");
    if (recover) {
        run_recover(dir, n);
    } else {
        store_t *s = NULL;
        if (store_open(&s, dir, NULL) != 0) die("store_open");
        run_group(s, n);
        run_single(s, n / 10);
        store_close(s);
        run_bytes(dir, n);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}

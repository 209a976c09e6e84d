/*
 * store.h - the data directory and the durable SQLite store.
 *
 * store_open creates and locks the data dir (flock on DIR/uvmq.lock), opens
 * DIR/uvmq.db (WAL), checks and migrates its schema, and starts the storage
 * thread. Callers on any thread build a batch of operations without locks
 * and hand it over with store_submit; the storage thread applies every batch
 * submitted since its last commit in ONE transaction (group commit) and then
 * calls each batch's callback on the storage thread. At start-up
 * store_recover streams everything back. Schema and guarantees:
 * docs/storage.md. The store knows bytes, ids and strings, never msg_t.
 */
#ifndef UVMQ_STORE_H
#define UVMQ_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Queue entry states (store_entry_t.state). */
enum {
    STORE_ENTRY_QUEUED = 0,  /* not sent yet (packet_id 0) */
    STORE_ENTRY_PUBACK = 1,  /* QoS 1 sent, waiting for PUBACK */
    STORE_ENTRY_PUBREC = 2,  /* QoS 2 sent, waiting for PUBREC */
    STORE_ENTRY_PUBCOMP = 3, /* PUBREC received, PUBREL sent, waiting for PUBCOMP */
};

/* Page size of the database (SQLite's default, which store_open keeps):
 * turns a byte cap into store_opts_t.max_db_pages. */
#define STORE_PAGE_SIZE 4096
#define STORE_MAX_SUB_IDS 32  /* subscription ids kept per queue entry */
#define STORE_HIST_BUCKETS 12 /* commit latency buckets, the last is +Inf */

/*
 * Durability. What each can lose (docs/storage.md has the long form):
 * STORE_FULL   synchronous=FULL, callbacks after the commit's fsync. Loses
 *              nothing whose callback ran, on kill -9 or on power loss
 *              (given a disk that honours fsync).
 * STORE_BATCH  synchronous=NORMAL, commits at least every batch_ms, and
 *              callbacks of non-empty batches run at once inside
 *              store_submit with status 0. kill -9 loses what was submitted
 *              in the last batch_ms (not yet committed); power loss also
 *              loses commits since the last WAL checkpoint's sync. A later
 *              commit failure is logged and counted only.
 */
typedef enum { STORE_FULL = 0, STORE_BATCH = 1 } store_durability_t;

/* Integrity check run by store_open on an existing database. The default,
 * PRAGMA quick_check, cost 0.40-0.46 s at 1,000,000 queued messages against
 * 0.73-0.98 s for their recovery (docs/storage.md). */
typedef enum { STORE_CHECK_QUICK = 0, STORE_CHECK_NONE = 1 } store_check_t;

typedef struct store_opts_s {
    store_durability_t durability; /* default STORE_FULL */
    unsigned batch_ms;             /* STORE_BATCH commit interval; 0 = 10 */
    store_check_t check;           /* default STORE_CHECK_QUICK */
    uint32_t max_db_pages;         /* PRAGMA max_page_count; 0 = no limit */
} store_opts_t;

typedef struct store_s store_t;
typedef struct store_batch_s store_batch_t;

/* A session. will_topic NULL means no will. last_seq is filled by
 * store_recover (largest seq among its stored queue entries, 0 if none)
 * and ignored by store_batch_session_put. */
typedef struct store_session_s {
    const char *client_id;
    uint8_t proto;             /* protocol level: 3, 4 or 5 */
    uint32_t expiry_s;         /* session expiry interval, seconds */
    uint64_t disconnected_at;  /* wall clock ms; 0 = online */
    const char *will_topic;
    const void *will_payload;
    size_t will_payload_len;
    const void *will_props;    /* v5 properties, encoded; may be NULL */
    size_t will_props_len;
    uint8_t will_qos;
    bool will_retain;
    uint32_t will_delay_s;
    uint32_t will_expiry_s;
    uint64_t last_seq;
    const char *username;      /* the client's user name; NULL = anonymous */
} store_session_t;

typedef struct store_sub_s {
    const char *client_id;
    const char *filter;
    uint8_t qos;
    bool no_local;
    bool retain_as_published;
    uint8_t retain_handling;
    uint32_t sub_id; /* subscription identifier; 0 = none */
} store_sub_t;

typedef struct store_msg_s {
    uint64_t id; /* chosen by the caller, unique, non-zero */
    const char *topic;
    const void *payload;
    size_t payload_len;
    const void *props; /* v5 properties, encoded; may be NULL */
    size_t props_len;
    uint8_t qos;
    bool retain;
    uint64_t expiry_at; /* wall clock ms; 0 = never */
} store_msg_t;

typedef struct store_entry_s {
    const char *client_id;
    uint64_t seq;     /* assigned by the caller, increasing per session */
    uint64_t msg_id;  /* 0 once dropped in state STORE_ENTRY_PUBCOMP */
    uint8_t qos;
    bool retain;
    uint16_t packet_id; /* 0 = still queued */
    uint8_t state;      /* STORE_ENTRY_* */
    unsigned n_sub_ids; /* at most STORE_MAX_SUB_IDS */
    const uint32_t *sub_ids;
} store_entry_t;

/* Completion of a submitted batch, called on the storage thread (see
 * STORE_BATCH for the exception): status 0, or negative when the whole
 * transaction was rolled back (UVMQ_EIO) or this batch was invalid (UVMQ_EINVAL,
 * only this batch rolled back). Must be cheap and must not call store_*. */
typedef void (*store_done_cb)(void *ctx, int status);

/* Recovery callbacks; any may be NULL. Pointers inside the records are
 * borrowed for the call only. A non-zero return stops recovery and is
 * returned by store_recover. */
typedef struct store_recover_cb_s {
    int (*on_msg)(void *ctx, const store_msg_t *m);
    int (*on_session)(void *ctx, const store_session_t *s);
    int (*on_sub)(void *ctx, const store_sub_t *sub);
    int (*on_entry)(void *ctx, const store_entry_t *e);
    int (*on_inq2)(void *ctx, const char *client_id, uint16_t packet_id);
    int (*on_retained)(void *ctx, const char *topic, uint64_t msg_id);
} store_recover_cb_t;

typedef struct store_recover_stats_s {
    uint64_t msgs, sessions, subs, entries, inq2, retained;
    uint64_t orphans_removed; /* messages nothing referenced */
    uint64_t max_msg_id;      /* largest stored message id, 0 if none */
    uint64_t elapsed_ms;
} store_recover_stats_t;

/* Counters; hist[i] counts commits that took at most store_hist_le_us[i]
 * microseconds (cumulative, like Prometheus "le"); hist[last] = commits. */
typedef struct store_stats_s {
    uint64_t commits, batches, ops, failed_commits;
    uint64_t last_commit_us, max_commit_us, sum_commit_us;
    uint64_t hist[STORE_HIST_BUCKETS];
} store_stats_t;

/* Bucket upper bounds in microseconds; the last is UINT64_MAX (+Inf). */
extern const uint64_t store_hist_le_us[STORE_HIST_BUCKETS];

/* --- open, use, close ------------------------------------------------- */

/* Creates dir if missing (mode 0700), locks DIR/uvmq.lock, opens or creates
 * DIR/uvmq.db, checks it, runs migrations and starts the storage thread.
 * opts NULL means defaults. Returns 0 and *out, or UVMQ_EIO after logging a
 * line naming the path and the problem (dir not writable or read-only, lock
 * held, file unreadable, not a database, corrupt, schema newer than this
 * code); *out is then NULL and an existing database file is left unchanged.
 * Borrows dir and opts. */
int store_open(store_t **out, const char *dir, const store_opts_t *opts);

/* The data directory path (owned by the store). */
const char *store_dir(const store_t *s);

/* Streams the stored state back through cbs, in this order: messages (by
 * id), sessions, subscriptions, queue entries (per session in seq order),
 * inbound QoS 2, retained; then removes messages nothing references
 * (logged).
 * Call once after store_open, before submitting. Returns 0, a callback's
 * non-zero value, or UVMQ_EIO. st may be NULL. Memory use does not grow with
 * the number of rows. */
int store_recover(store_t *s, const store_recover_cb_t *cbs, void *ctx,
                  store_recover_stats_t *st);

/* Operations submitted and not yet committed (any thread): how far the
 * storage thread is behind. The broker's batch durability stops
 * acknowledging at once past a limit (docs/storage.md). */
size_t store_backlog(const store_t *s);

/* Copies the counters; any thread, any time. */
void store_stats(const store_t *s, store_stats_t *out);

/* Changes PRAGMA max_page_count before the next commit (0 = no limit); for
 * fault-injection tests of a full disk. */
void store_set_max_db_pages(store_t *s, uint32_t pages);

/* Commits everything submitted, runs every callback, stops the thread,
 * closes the database (checkpointing the WAL), releases the lock and frees
 * s. NULL is a no-op. No store_submit may run concurrently or after. */
void store_close(store_t *s);

/* --- batches ---------------------------------------------------------- */

/* A new empty batch; no locks, any thread. */
store_batch_t *store_batch_create(void);

/* Frees a batch that was never submitted; NULL is a no-op. */
void store_batch_destroy(store_batch_t *b);

/* Operations, applied in the order added. Each copies what it borrows.
 * Those taking peer-sized bytes return 0 or UVMQ_ENOMEM (the batch is then
 * unchanged); the rest cannot fail. */
int store_batch_session_put(store_batch_t *b, const store_session_t *sess);
/* Deletes the session with its subscriptions, queue entries and inbound
 * QoS 2 ids; messages lose those references. */
void store_batch_session_del(store_batch_t *b, const char *client_id);
void store_batch_sub_put(store_batch_t *b, const store_sub_t *sub);
void store_batch_sub_del(store_batch_t *b, const char *client_id, const char *filter);
/* Stores a message once (a message with the same id is already the same
 * message: the put does nothing then; ids are never reused). It must gain
 * a reference (entry or retained) in the same or a later batch; one left
 * without is removed by the next store_recover. */
int store_batch_msg_put(store_batch_t *b, const store_msg_t *m);
/* Adds a queue entry holding one reference on e->msg_id. UVMQ_EINVAL if
 * n_sub_ids is above STORE_MAX_SUB_IDS. */
int store_batch_entry_add(store_batch_t *b, const store_entry_t *e);
/* Sets packet_id and state; drop_msg also releases the entry's message
 * reference (the QoS 2 PUBREL stage needs no message). */
void store_batch_entry_update(store_batch_t *b, const char *client_id, uint64_t seq,
                              uint16_t packet_id, uint8_t state, bool drop_msg);
/* Deletes an entry and releases its message reference. */
void store_batch_entry_del(store_batch_t *b, const char *client_id, uint64_t seq);
void store_batch_inq2_add(store_batch_t *b, const char *client_id, uint16_t packet_id);
void store_batch_inq2_del(store_batch_t *b, const char *client_id, uint16_t packet_id);
/* Retained topic -> message (holds a reference); replaces any previous. */
void store_batch_retained_set(store_batch_t *b, const char *topic, uint64_t msg_id);
void store_batch_retained_del(store_batch_t *b, const char *topic);

/* Number of operations in b. */
size_t store_batch_count(const store_batch_t *b);

/* Queues b for the next commit; takes b (also on failure). cb may be NULL.
 * An empty batch with a cb is a barrier: cb runs after everything submitted
 * before it is committed (in both durability modes), with the first
 * failure of any batch since the previous barrier (STORE_BATCH callers
 * learn of failures this way). Returns 0, or UVMQ_EINVAL
 * when b is NULL. Any thread. */
int store_submit(store_t *s, store_batch_t *b, store_done_cb cb, void *ctx);

#endif

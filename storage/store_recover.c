/*
 * store_recover.c - streaming the stored state back at start-up.
 *
 * Each kind is one SELECT walked row by row in primary-key order, each row
 * handed to a callback as a record whose pointers borrow SQLite's column
 * buffers, so memory stays flat however many rows there are. Messages come
 * first (the caller rebuilds its message objects by id before the entries
 * that reference them); unreferenced ones (refs 0: stored, then a crash
 * before any entry took them) are skipped, counted and deleted at the end.
 */
#include "store_int.h"

#include <assert.h>
#include <string.h>

#include "../common/err.h"
#include "../common/log.h"

enum { Q_MAX_ID, Q_MSG, Q_SESSION, Q_SUB, Q_ENTRY, Q_INQ2, Q_RETAINED, Q_ORPHANS, Q_COUNT };

static const char *const query_sql[Q_COUNT] = {
    [Q_MAX_ID] = "SELECT coalesce(max(id),0) FROM msg",
    [Q_MSG] = "SELECT id,refs,qos,retain,expiry_at,topic,props,payload FROM msg ORDER BY id",
    [Q_SESSION] = "SELECT s.*, (SELECT coalesce(max(seq),0) FROM entry e"
                  " WHERE e.client_id=s.client_id) FROM session s ORDER BY client_id",
    [Q_SUB] = "SELECT * FROM sub ORDER BY client_id, filter",
    [Q_ENTRY] = "SELECT * FROM entry ORDER BY client_id, seq",
    [Q_INQ2] = "SELECT * FROM inq2 ORDER BY client_id, packet_id",
    [Q_RETAINED] = "SELECT * FROM retained ORDER BY topic",
    [Q_ORPHANS] = "DELETE FROM msg WHERE refs<=0",
};

typedef struct rec_s {
    const store_recover_cb_t *cbs;
    void *ctx;
    store_recover_stats_t *st;
} rec_t;

typedef int (*row_fn)(rec_t *r, sqlite3_stmt *q);

static const char *col_text(sqlite3_stmt *q, int i)
{
    return (const char *)sqlite3_column_text(q, i);
}

static uint64_t col_u64(sqlite3_stmt *q, int i)
{
    return (uint64_t)sqlite3_column_int64(q, i);
}

/* Column bytes; an empty or NULL blob reads as ("" or NULL, 0). */
static const void *col_blob(sqlite3_stmt *q, int i, size_t *len, bool not_null)
{
    const void *p = sqlite3_column_blob(q, i);
    *len = (size_t)sqlite3_column_bytes(q, i);
    return p == NULL && not_null ? "" : p;
}

static int row_msg(rec_t *r, sqlite3_stmt *q)
{
    store_msg_t m = { 0 };
    int rc = 0;
    if (sqlite3_column_int64(q, 1) <= 0) {
        r->st->orphans_removed++;
    } else {
        m.id = col_u64(q, 0);
        m.qos = (uint8_t)sqlite3_column_int(q, 2);
        m.retain = sqlite3_column_int(q, 3) != 0;
        m.expiry_at = col_u64(q, 4);
        m.topic = col_text(q, 5);
        m.props = col_blob(q, 6, &m.props_len, false);
        m.payload = col_blob(q, 7, &m.payload_len, true);
        r->st->msgs++;
        if (r->cbs->on_msg != NULL) rc = r->cbs->on_msg(r->ctx, &m);
    }
    return rc;
}

static int row_session(rec_t *r, sqlite3_stmt *q)
{
    store_session_t x = { 0 };
    x.client_id = col_text(q, 0);
    x.proto = (uint8_t)sqlite3_column_int(q, 1);
    x.expiry_s = (uint32_t)sqlite3_column_int64(q, 2);
    x.disconnected_at = col_u64(q, 3);
    x.will_topic = col_text(q, 4);
    if (x.will_topic != NULL) {
        x.will_payload = col_blob(q, 5, &x.will_payload_len, true);
        x.will_props = col_blob(q, 6, &x.will_props_len, false);
        x.will_qos = (uint8_t)sqlite3_column_int(q, 7);
        x.will_retain = sqlite3_column_int(q, 8) != 0;
        x.will_delay_s = (uint32_t)sqlite3_column_int64(q, 9);
        x.will_expiry_s = (uint32_t)sqlite3_column_int64(q, 10);
    }
    x.username = col_text(q, 11);
    x.last_seq = col_u64(q, 12);
    r->st->sessions++;
    return r->cbs->on_session != NULL ? r->cbs->on_session(r->ctx, &x) : 0;
}

static int row_sub(rec_t *r, sqlite3_stmt *q)
{
    store_sub_t x = { 0 };
    x.client_id = col_text(q, 0);
    x.filter = col_text(q, 1);
    x.qos = (uint8_t)sqlite3_column_int(q, 2);
    x.no_local = sqlite3_column_int(q, 3) != 0;
    x.retain_as_published = sqlite3_column_int(q, 4) != 0;
    x.retain_handling = (uint8_t)sqlite3_column_int(q, 5);
    x.sub_id = (uint32_t)sqlite3_column_int64(q, 6);
    r->st->subs++;
    return r->cbs->on_sub != NULL ? r->cbs->on_sub(r->ctx, &x) : 0;
}

static int row_entry(rec_t *r, sqlite3_stmt *q)
{
    store_entry_t x = { 0 };
    uint32_t ids[STORE_MAX_SUB_IDS];
    size_t len = 0;
    const void *blob = col_blob(q, 7, &len, false);
    x.client_id = col_text(q, 0);
    x.seq = col_u64(q, 1);
    x.msg_id = col_u64(q, 2);
    x.qos = (uint8_t)sqlite3_column_int(q, 3);
    x.retain = sqlite3_column_int(q, 4) != 0;
    x.packet_id = (uint16_t)sqlite3_column_int(q, 5);
    x.state = (uint8_t)sqlite3_column_int(q, 6);
    /* Copied out: the column buffer need not be 4-byte aligned. */
    if (len > sizeof ids) len = sizeof ids;
    if (blob != NULL) memcpy(ids, blob, len);
    x.n_sub_ids = (unsigned)(len / sizeof(uint32_t));
    x.sub_ids = x.n_sub_ids > 0 ? ids : NULL;
    r->st->entries++;
    return r->cbs->on_entry != NULL ? r->cbs->on_entry(r->ctx, &x) : 0;
}

static int row_inq2(rec_t *r, sqlite3_stmt *q)
{
    r->st->inq2++;
    return r->cbs->on_inq2 != NULL
               ? r->cbs->on_inq2(r->ctx, col_text(q, 0), (uint16_t)sqlite3_column_int(q, 1))
               : 0;
}

static int row_retained(rec_t *r, sqlite3_stmt *q)
{
    r->st->retained++;
    return r->cbs->on_retained != NULL
               ? r->cbs->on_retained(r->ctx, col_text(q, 0), col_u64(q, 1))
               : 0;
}

/* Runs one query, feeding each row to fn. Returns 0, fn's non-zero result,
 * or UVMQ_EIO after logging a read failure. */
static int walk(store_t *s, rec_t *r, int which, row_fn fn)
{
    sqlite3_stmt *q = NULL;
    int rc = 0;
    assert(which >= 0 && which < Q_COUNT);
    assert(fn != NULL || which == Q_ORPHANS); /* only a DELETE has no rows */
    int step = sqlite3_prepare_v2(s->db, query_sql[which], -1, &q, NULL);
    if (step == SQLITE_OK) step = sqlite3_step(q);
    for (; step == SQLITE_ROW && rc == 0; step = sqlite3_step(q)) rc = fn(r, q);
    if (rc == 0 && step != SQLITE_DONE && step != SQLITE_ROW) {
        log_error("%s: recovery cannot read: %s", s->db_path, sqlite3_errmsg(s->db));
        rc = UVMQ_EIO;
    }
    sqlite3_finalize(q);
    return rc;
}

static int row_max_id(rec_t *r, sqlite3_stmt *q)
{
    r->st->max_msg_id = col_u64(q, 0);
    return 0;
}

/* Deletes the unreferenced messages counted by row_msg; logs if any. */
static int remove_orphans(store_t *s, rec_t *r)
{
    int rc = 0;
    if (r->st->orphans_removed > 0) {
        rc = walk(s, r, Q_ORPHANS, NULL);
        log_warn("%s: removed %llu stored messages that nothing referenced", s->db_path,
                 (unsigned long long)r->st->orphans_removed);
    }
    return rc;
}

/* See store.h. Holds the database mutex throughout, so a commit never
 * interleaves with it; logs one debug line with the counts on success
 * (the broker logs the info line). */
int store_recover(store_t *s, const store_recover_cb_t *cbs, void *ctx,
                  store_recover_stats_t *st)
{
    static const row_fn fns[] = { row_max_id, row_msg, row_session, row_sub,
                                  row_entry, row_inq2, row_retained };
    store_recover_stats_t local;
    rec_t r = { cbs, ctx, st != NULL ? st : &local };
    int rc = 0;
    _Static_assert(sizeof fns / sizeof fns[0] == Q_RETAINED + 1, "one row_fn per SELECT");
    assert(cbs != NULL); /* dereferenced only once a row is found */
    memset(r.st, 0, sizeof *r.st);
    pthread_mutex_lock(&s->db_mu);
    uint64_t t0 = store__now_us();
    for (int i = Q_MAX_ID; i <= Q_RETAINED && rc == 0; i++) rc = walk(s, &r, i, fns[i]);
    if (rc == 0) rc = remove_orphans(s, &r);
    r.st->elapsed_ms = (store__now_us() - t0) / 1000u;
    pthread_mutex_unlock(&s->db_mu);
    if (rc == 0)
        log_debug("%s: recovered %llu messages, %llu sessions, %llu subscriptions, %llu queue"
                 " entries, %llu inbound QoS 2 ids, %llu retained in %llu ms", s->db_path,
                 (unsigned long long)r.st->msgs, (unsigned long long)r.st->sessions,
                 (unsigned long long)r.st->subs, (unsigned long long)r.st->entries,
                 (unsigned long long)r.st->inq2, (unsigned long long)r.st->retained,
                 (unsigned long long)r.st->elapsed_ms);
    return rc;
}

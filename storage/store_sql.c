/*
 * store_sql.c - the schema, its migrations, the prepared statements and
 * the application of one batch operation inside a transaction.
 *
 * Messages carry a reference count (msg.refs): +1 per queue entry holding
 * the message and +1 per retained topic. The operation that drops the last
 * reference deletes the row, so it goes in the same transaction. Schema
 * description and rationale: docs/storage.md.
 */
#include "store_int.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../common/err.h"
#include "../common/log.h"

/* Version 0 -> 1: the whole schema. WITHOUT ROWID for tables keyed by text
 * so each row lives in its primary-key b-tree once. msg.refs comes before
 * the payload so reading it never touches overflow pages. */
static const char schema_v1[] =
    "CREATE TABLE session(client_id TEXT PRIMARY KEY NOT NULL,"
    " proto INTEGER NOT NULL, expiry_s INTEGER NOT NULL,"
    " disconnected_at INTEGER NOT NULL, will_topic TEXT, will_payload BLOB,"
    " will_props BLOB, will_qos INTEGER, will_retain INTEGER,"
    " will_delay_s INTEGER, will_expiry_s INTEGER) WITHOUT ROWID;"
    "CREATE TABLE sub(client_id TEXT NOT NULL, filter TEXT NOT NULL,"
    " qos INTEGER NOT NULL, no_local INTEGER NOT NULL, rap INTEGER NOT NULL,"
    " retain_handling INTEGER NOT NULL, sub_id INTEGER NOT NULL,"
    " PRIMARY KEY(client_id, filter)) WITHOUT ROWID;"
    "CREATE TABLE msg(id INTEGER PRIMARY KEY, refs INTEGER NOT NULL,"
    " qos INTEGER NOT NULL, retain INTEGER NOT NULL,"
    " expiry_at INTEGER NOT NULL, topic TEXT NOT NULL, props BLOB,"
    " payload BLOB NOT NULL);"
    "CREATE TABLE entry(client_id TEXT NOT NULL, seq INTEGER NOT NULL,"
    " msg_id INTEGER NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,"
    " packet_id INTEGER NOT NULL, state INTEGER NOT NULL, sub_ids BLOB,"
    " PRIMARY KEY(client_id, seq)) WITHOUT ROWID;"
    "CREATE TABLE inq2(client_id TEXT NOT NULL, packet_id INTEGER NOT NULL,"
    " PRIMARY KEY(client_id, packet_id)) WITHOUT ROWID;"
    "CREATE TABLE retained(topic TEXT PRIMARY KEY NOT NULL,"
    " msg_id INTEGER NOT NULL) WITHOUT ROWID;";

/* Version 1 -> 2: a session keeps its client's user name, so that after
 * a restart the ACL reads for the user who made it (NULL: anonymous). */
static const char schema_v2[] = "ALTER TABLE session ADD COLUMN username TEXT;";

const store_migration_t store__migrations[STORE_SCHEMA_VERSION] = {
    { "initial schema", schema_v1 },
    { "session user names", schema_v2 },
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT batch",
    [ST_RELEASE] = "RELEASE batch",
    [ST_ROLLBACK_TO] = "ROLLBACK TO batch",
    [ST_SESS_PUT] = "INSERT OR REPLACE INTO session VALUES"
                    "(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
    [ST_SESS_DEL] = "DELETE FROM session WHERE client_id=?1",
    [ST_SESS_ENTRY_MSGS] = "SELECT msg_id FROM entry WHERE client_id=?1 AND msg_id<>0",
    [ST_SESS_DEL_ENTRIES] = "DELETE FROM entry WHERE client_id=?1",
    [ST_SESS_DEL_SUBS] = "DELETE FROM sub WHERE client_id=?1",
    [ST_SESS_DEL_INQ2] = "DELETE FROM inq2 WHERE client_id=?1",
    [ST_SUB_PUT] = "INSERT OR REPLACE INTO sub VALUES(?1,?2,?3,?4,?5,?6,?7)",
    [ST_SUB_DEL] = "DELETE FROM sub WHERE client_id=?1 AND filter=?2",
    /* A message id names one content forever: a second put of it (another
     * loop's batch) leaves the row and its references alone. */
    [ST_MSG_PUT] = "INSERT INTO msg VALUES(?1,0,?2,?3,?4,?5,?6,?7)"
                   " ON CONFLICT(id) DO NOTHING",
    [ST_MSG_REF] = "UPDATE msg SET refs=refs+?2 WHERE id=?1",
    [ST_MSG_GC] = "DELETE FROM msg WHERE id=?1 AND refs<=0",
    [ST_ENTRY_ADD] = "INSERT INTO entry VALUES(?1,?2,?3,?4,?5,?6,?7,?8)",
    [ST_ENTRY_MSG] = "SELECT msg_id FROM entry WHERE client_id=?1 AND seq=?2",
    [ST_ENTRY_UPDATE] = "UPDATE entry SET packet_id=?3, state=?4,"
                        " msg_id=CASE WHEN ?5 THEN 0 ELSE msg_id END"
                        " WHERE client_id=?1 AND seq=?2",
    [ST_ENTRY_DEL] = "DELETE FROM entry WHERE client_id=?1 AND seq=?2",
    [ST_INQ2_ADD] = "INSERT OR IGNORE INTO inq2 VALUES(?1,?2)",
    [ST_INQ2_DEL] = "DELETE FROM inq2 WHERE client_id=?1 AND packet_id=?2",
    [ST_RET_GET] = "SELECT msg_id FROM retained WHERE topic=?1",
    [ST_RET_SET] = "INSERT OR REPLACE INTO retained VALUES(?1,?2)",
    [ST_RET_DEL] = "DELETE FROM retained WHERE topic=?1",
};

/* Runs one migration step and the user_version bump in one transaction. */
static int migrate_step(sqlite3 *db, const char *path, const store_migration_t *m,
                        int to)
{
    char pragma[48];
    char *msg = NULL;
    assert(m->sql != NULL); /* sqlite3_exec would run nothing and succeed */
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, m->sql, NULL, NULL, &msg);
    snprintf(pragma, sizeof pragma, "PRAGMA user_version=%d", to);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, pragma, NULL, NULL, &msg);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, "COMMIT", NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        log_error("%s: schema migration to version %d (%s) failed: %s", path, to,
                  m->name, msg != NULL ? msg : sqlite3_errstr(rc));
        if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    sqlite3_free(msg);
    return rc == SQLITE_OK ? 0 : UVMQ_EIO;
}

/* Reads PRAGMA user_version; returns it, or -1 on a read failure. */
int store__read_version(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Brings the database from its user_version to n by running mig[v..n-1],
 * logging each step at info level. Returns 0 or UVMQ_EIO; a failed step is
 * rolled back and the steps before it stay committed. */
int store__migrate(sqlite3 *db, const char *path, const store_migration_t *mig,
                   int n)
{
    int v = store__read_version(db);
    int rc = v < 0 ? UVMQ_EIO : 0;
    assert(v <= n); /* check_db refuses a newer schema before this runs */
    for (; rc == 0 && v < n; v++) {
        rc = migrate_step(db, path, &mig[v], v + 1);
        if (rc == 0) log_info("%s: schema migrated to version %d (%s)", path, v + 1, mig[v].name);
    }
    return rc;
}

/* Prepares every statement of stmt_sql once, with SQLITE_PREPARE_PERSISTENT.
 * Returns 0 or UVMQ_EIO after logging; the statements prepared so far stay in
 * s->st for store__finalize. */
int store__prepare(store_t *s)
{
    int rc = 0;
    for (int i = 0; i < ST_COUNT && rc == 0; i++) {
        /* Once, and no gap in stmt_sql: SQL NULL "prepares" a NULL statement. */
        assert(s->st[i] == NULL && stmt_sql[i] != NULL);
        if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &s->st[i], NULL) != SQLITE_OK) {
            log_error("%s: cannot prepare \"%s\": %s", s->db_path, stmt_sql[i],
                      sqlite3_errmsg(s->db));
            rc = UVMQ_EIO;
        }
    }
    return rc;
}

/* Finalizes every prepared statement and NULLs it. */
void store__finalize(store_t *s)
{
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(s->st[i]);
        s->st[i] = NULL;
    }
}

/* Steps st to completion and resets it (bindings stay until rebound).
 * Returns SQLITE_OK or the failing SQLite code. */
int store__run(sqlite3_stmt *st)
{
    assert(st != NULL); /* prepared at open (store__prepare) */
    int rc = sqlite3_step(st);
    while (rc == SQLITE_ROW) rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Monotonic clock in microseconds. */
uint64_t store__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

static void bind_u64(sqlite3_stmt *st, int i, uint64_t v)
{
    sqlite3_bind_int64(st, i, (sqlite3_int64)v);
}

/* Binds bytes; NULL binds SQL NULL unless not_null, then an empty blob. */
static void bind_blob(sqlite3_stmt *st, int i, const void *p, size_t n, bool not_null)
{
    if (p == NULL && not_null) p = "";
    sqlite3_bind_blob64(st, i, p, (sqlite3_uint64)n, SQLITE_STATIC);
}

/* Runs a statement keyed by (text, integer) or by text when k2 is unused. */
static int run_keyed(store_t *s, int id, const char *k1, uint64_t k2)
{
    sqlite3_stmt *st = s->st[id];
    bind_text(st, 1, k1);
    if (sqlite3_bind_parameter_count(st) >= 2) bind_u64(st, 2, k2);
    return store__run(st);
}

/* Adds delta to a message's count; UVMQ_EINVAL if no such message. */
static int msg_ref(store_t *s, uint64_t id, int delta)
{
    sqlite3_stmt *st = s->st[ST_MSG_REF];
    assert(delta == 1 || delta == -1);
    bind_u64(st, 1, id);
    sqlite3_bind_int(st, 2, delta);
    int rc = store__run(st);
    if (rc == SQLITE_OK && sqlite3_changes(s->db) == 0) rc = UVMQ_EINVAL;
    return rc;
}

/* Drops one reference and deletes the message if it was the last. */
static int msg_unref(store_t *s, uint64_t id)
{
    int rc = 0;
    if (id != 0) {
        rc = msg_ref(s, id, -1);
        if (rc == UVMQ_EINVAL) rc = 0; /* already gone: nothing to release */
        if (rc == SQLITE_OK) {
            bind_u64(s->st[ST_MSG_GC], 1, id);
            rc = store__run(s->st[ST_MSG_GC]);
        }
    }
    return rc;
}

/* Reads the single integer a (text, integer) lookup returns; 0 if no row. */
static int lookup_id(store_t *s, int id, const char *k1, uint64_t k2, uint64_t *out)
{
    sqlite3_stmt *st = s->st[id];
    bind_text(st, 1, k1);
    if (sqlite3_bind_parameter_count(st) >= 2) bind_u64(st, 2, k2);
    int rc = sqlite3_step(st);
    *out = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int session_put(store_t *s, const store_session_t *x)
{
    sqlite3_stmt *st = s->st[ST_SESS_PUT];
    bool will = x->will_topic != NULL;
    bind_text(st, 1, x->client_id);
    sqlite3_bind_int(st, 2, x->proto);
    bind_u64(st, 3, x->expiry_s);
    bind_u64(st, 4, x->disconnected_at);
    bind_text(st, 5, x->will_topic);
    bind_blob(st, 6, x->will_payload, x->will_payload_len, will);
    bind_blob(st, 7, x->will_props, x->will_props_len, false);
    sqlite3_bind_int(st, 8, x->will_qos);
    sqlite3_bind_int(st, 9, x->will_retain);
    bind_u64(st, 10, x->will_delay_s);
    bind_u64(st, 11, x->will_expiry_s);
    bind_text(st, 12, x->username);
    return store__run(st);
}

/* Releases the message of every entry of the session, then deletes its
 * entries, subscriptions, inbound QoS 2 ids and the session row. Updating
 * msg while stepping a SELECT on entry is safe: another table. */
static int session_del(store_t *s, const char *client_id)
{
    sqlite3_stmt *st = s->st[ST_SESS_ENTRY_MSGS];
    int rc = SQLITE_OK;
    bind_text(st, 1, client_id);
    int step = sqlite3_step(st);
    for (; step == SQLITE_ROW && rc == SQLITE_OK; step = sqlite3_step(st))
        rc = msg_unref(s, (uint64_t)sqlite3_column_int64(st, 0));
    sqlite3_reset(st);
    if (rc == SQLITE_OK && step != SQLITE_DONE && step != SQLITE_ROW) rc = step;
    if (rc == SQLITE_OK) rc = run_keyed(s, ST_SESS_DEL_ENTRIES, client_id, 0);
    if (rc == SQLITE_OK) rc = run_keyed(s, ST_SESS_DEL_SUBS, client_id, 0);
    if (rc == SQLITE_OK) rc = run_keyed(s, ST_SESS_DEL_INQ2, client_id, 0);
    if (rc == SQLITE_OK) rc = run_keyed(s, ST_SESS_DEL, client_id, 0);
    return rc;
}

static int sub_put(store_t *s, const store_sub_t *x)
{
    sqlite3_stmt *st = s->st[ST_SUB_PUT];
    bind_text(st, 1, x->client_id);
    bind_text(st, 2, x->filter);
    sqlite3_bind_int(st, 3, x->qos);
    sqlite3_bind_int(st, 4, x->no_local);
    sqlite3_bind_int(st, 5, x->retain_as_published);
    sqlite3_bind_int(st, 6, x->retain_handling);
    bind_u64(st, 7, x->sub_id);
    return store__run(st);
}

static int sub_del(store_t *s, const store_key_t *k)
{
    sqlite3_stmt *st = s->st[ST_SUB_DEL];
    bind_text(st, 1, k->client_id);
    bind_text(st, 2, k->filter);
    return store__run(st);
}

static int msg_put(store_t *s, const store_msg_t *m)
{
    sqlite3_stmt *st = s->st[ST_MSG_PUT];
    int rc = UVMQ_EINVAL;
    if (m->id != 0 && m->topic != NULL) {
        bind_u64(st, 1, m->id);
        sqlite3_bind_int(st, 2, m->qos);
        sqlite3_bind_int(st, 3, m->retain);
        bind_u64(st, 4, m->expiry_at);
        bind_text(st, 5, m->topic);
        bind_blob(st, 6, m->props, m->props_len, false);
        bind_blob(st, 7, m->payload, m->payload_len, true);
        rc = store__run(st);
    }
    return rc;
}

/* Inserts the entry, then takes its reference (UVMQ_EINVAL: no message). */
static int entry_add(store_t *s, const store_entry_t *e)
{
    sqlite3_stmt *st = s->st[ST_ENTRY_ADD];
    bind_text(st, 1, e->client_id);
    bind_u64(st, 2, e->seq);
    bind_u64(st, 3, e->msg_id);
    sqlite3_bind_int(st, 4, e->qos);
    sqlite3_bind_int(st, 5, e->retain);
    sqlite3_bind_int(st, 6, e->packet_id);
    sqlite3_bind_int(st, 7, e->state);
    bind_blob(st, 8, e->sub_ids, e->n_sub_ids * sizeof(uint32_t), false);
    int rc = store__run(st);
    if (rc == SQLITE_OK && e->msg_id != 0) rc = msg_ref(s, e->msg_id, 1);
    return rc;
}

static int entry_update(store_t *s, const store_key_t *k)
{
    uint64_t msg_id = 0;
    int rc = k->drop_msg ? lookup_id(s, ST_ENTRY_MSG, k->client_id, k->seq, &msg_id) : 0;
    if (rc == SQLITE_OK) {
        sqlite3_stmt *st = s->st[ST_ENTRY_UPDATE];
        bind_text(st, 1, k->client_id);
        bind_u64(st, 2, k->seq);
        sqlite3_bind_int(st, 3, k->packet_id);
        sqlite3_bind_int(st, 4, k->state);
        sqlite3_bind_int(st, 5, k->drop_msg);
        rc = store__run(st);
    }
    if (rc == SQLITE_OK) rc = msg_unref(s, msg_id);
    return rc;
}

static int entry_del(store_t *s, const store_key_t *k)
{
    uint64_t msg_id = 0;
    int rc = lookup_id(s, ST_ENTRY_MSG, k->client_id, k->seq, &msg_id);
    if (rc == SQLITE_OK) rc = run_keyed(s, ST_ENTRY_DEL, k->client_id, k->seq);
    if (rc == SQLITE_OK) rc = msg_unref(s, msg_id);
    return rc;
}

/* Points topic at msg_id: the new reference is taken before the old one is
 * released, so re-setting the same message never deletes it. */
static int retained_set(store_t *s, const char *topic, uint64_t msg_id)
{
    uint64_t old = 0;
    int rc = lookup_id(s, ST_RET_GET, topic, 0, &old);
    if (rc == SQLITE_OK && old != msg_id) {
        rc = msg_ref(s, msg_id, 1);
        if (rc == SQLITE_OK) rc = run_keyed(s, ST_RET_SET, topic, msg_id);
        if (rc == SQLITE_OK) rc = msg_unref(s, old);
    }
    return rc;
}

static int retained_del(store_t *s, const char *topic)
{
    uint64_t old = 0;
    int rc = lookup_id(s, ST_RET_GET, topic, 0, &old);
    if (rc == SQLITE_OK && old != 0) rc = run_keyed(s, ST_RET_DEL, topic, 0);
    if (rc == SQLITE_OK) rc = msg_unref(s, old);
    return rc;
}

/* Applies op inside the caller's open transaction and savepoint. Returns 0,
 * UVMQ_EINVAL (reference to a missing message, bad record) or the SQLite
 * code of the failing statement; the caller rolls back. */
int store__apply(store_t *s, const store_op_t *op)
{
    const store_key_t *k = &op->u.key;
    int rc = UVMQ_EINVAL;
    assert(op->kind >= OP_SESSION_PUT && op->kind <= OP_RETAINED_DEL); /* push_op */
    switch (op->kind) {
    case OP_SESSION_PUT: rc = session_put(s, &op->u.sess); break;
    case OP_SESSION_DEL: rc = session_del(s, k->client_id); break;
    case OP_SUB_PUT: rc = sub_put(s, &op->u.sub); break;
    case OP_SUB_DEL: rc = sub_del(s, k); break;
    case OP_MSG_PUT: rc = msg_put(s, &op->u.msg); break;
    case OP_ENTRY_ADD: rc = entry_add(s, &op->u.entry); break;
    case OP_ENTRY_UPDATE: rc = entry_update(s, k); break;
    case OP_ENTRY_DEL: rc = entry_del(s, k); break;
    case OP_INQ2_ADD: rc = run_keyed(s, ST_INQ2_ADD, k->client_id, k->packet_id); break;
    case OP_INQ2_DEL: rc = run_keyed(s, ST_INQ2_DEL, k->client_id, k->packet_id); break;
    case OP_RETAINED_SET: rc = retained_set(s, k->client_id, k->seq); break;
    case OP_RETAINED_DEL: rc = retained_del(s, k->client_id); break;
    }
    return rc;
}

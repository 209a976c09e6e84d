/*
 * Unit tests for storage/: what goes in comes back. Every record kind makes
 * a round trip through submit, close, reopen and recover; message reference
 * counting, session deletion, invalid batches, orphans and a full disk are
 * checked against the rows actually in DIR/uvmq.db (read through a second,
 * read-only SQLite connection, which WAL mode allows alongside the store).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "storage/store.h"
#include "storetest.h"

static store_t *open_store(void)
{
    store_t *s = NULL;
    assert_int_equal(store_open(&s, dir, NULL), 0);
    return s;
}

/* Runs a one-integer query on DIR/uvmq.db through its own connection. */
static long long query(const char *sql)
{
    char path[128];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;
    snprintf(path, sizeof path, "%s/uvmq.db", dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void put_msg(store_batch_t *b, uint64_t id, const char *topic, const char *payload)
{
    store_msg_t m = { .id = id, .topic = topic, .payload = payload,
                      .payload_len = strlen(payload), .qos = 1 };
    assert_int_equal(store_batch_msg_put(b, &m), 0);
}

static void add_entry(store_batch_t *b, const char *cid, uint64_t seq, uint64_t msg_id)
{
    store_entry_t e = { .client_id = cid, .seq = seq, .msg_id = msg_id, .qos = 1 };
    assert_int_equal(store_batch_entry_add(b, &e), 0);
}

/* --- recovery into a text dump, compared exactly ---------------------- */

typedef struct dump_s {
    char buf[8192];
    size_t len;
} dump_t;

static void dprint(dump_t *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    d->len += (size_t)vsnprintf(d->buf + d->len, sizeof d->buf - d->len, fmt, ap);
    va_end(ap);
}

static int d_msg(void *ctx, const store_msg_t *m)
{
    dprint(ctx, "msg %llu %s [%.*s] props=%zu q%u r%d exp=%llu\n", (unsigned long long)m->id,
           m->topic, (int)m->payload_len, (const char *)m->payload, m->props_len, m->qos,
           m->retain, (unsigned long long)m->expiry_at);
    return 0;
}

static int d_session(void *ctx, const store_session_t *x)
{
    dprint(ctx, "sess %s v%u exp=%u disc=%llu last=%llu", x->client_id, x->proto, x->expiry_s,
           (unsigned long long)x->disconnected_at, (unsigned long long)x->last_seq);
    if (x->will_topic != NULL)
        dprint(ctx, " will %s [%.*s] props=%zu q%u r%d d=%u e=%u", x->will_topic,
               (int)x->will_payload_len, (const char *)x->will_payload, x->will_props_len,
               x->will_qos, x->will_retain, x->will_delay_s, x->will_expiry_s);
    dprint(ctx, "\n");
    return 0;
}

static int d_sub(void *ctx, const store_sub_t *x)
{
    dprint(ctx, "sub %s %s q%u nl%d rap%d rh%u id=%u\n", x->client_id, x->filter, x->qos,
           x->no_local, x->retain_as_published, x->retain_handling, x->sub_id);
    return 0;
}

static int d_entry(void *ctx, const store_entry_t *x)
{
    dprint(ctx, "entry %s %llu msg=%llu q%u r%d pid=%u st=%u ids=", x->client_id,
           (unsigned long long)x->seq, (unsigned long long)x->msg_id, x->qos, x->retain,
           x->packet_id, x->state);
    for (unsigned i = 0; i < x->n_sub_ids; i++) dprint(ctx, "%u,", x->sub_ids[i]);
    dprint(ctx, "\n");
    return 0;
}

static int d_inq2(void *ctx, const char *cid, uint16_t pid)
{
    dprint(ctx, "inq2 %s %u\n", cid, pid);
    return 0;
}

static int d_retained(void *ctx, const char *topic, uint64_t id)
{
    dprint(ctx, "ret %s %llu\n", topic, (unsigned long long)id);
    return 0;
}

static const store_recover_cb_t dump_cbs = { d_msg, d_session, d_sub, d_entry, d_inq2, d_retained };

/* Reopens the store, recovers into d and returns the stats. */
static store_recover_stats_t reopen_dump(store_t **s, dump_t *d)
{
    store_recover_stats_t st;
    store_close(*s);
    *s = open_store();
    d->len = 0;
    d->buf[0] = '\0';
    assert_int_equal(store_recover(*s, &dump_cbs, d, &st), 0);
    return st;
}

/* --- tests ------------------------------------------------------------ */

static void store_round_trips_every_record_kind(void **state)
{
    store_t *s = open_store();
    store_batch_t *b = store_batch_create();
    static const uint32_t ids[3] = { 7, 70000, 4000000000u };
    store_session_t with_will = {
        .client_id = "alice", .proto = 5, .expiry_s = 3600, .disconnected_at = 1700000000123ull,
        .will_topic = "alice/status", .will_payload = "gone", .will_payload_len = 4,
        .will_props = "\x01\x01", .will_props_len = 2, .will_qos = 2, .will_retain = true,
        .will_delay_s = 30, .will_expiry_s = 600,
    };
    store_session_t plain = { .client_id = "bob", .proto = 4, .expiry_s = 0xffffffffu };
    store_sub_t sub1 = { "alice", "a/+/c", 2, true, true, 2, 268435455 };
    store_sub_t sub2 = { "bob", "#", 1, false, false, 0, 0 };
    store_msg_t m1 = { .id = 1, .topic = "a/b/c", .payload = "hello", .payload_len = 5,
                       .props = "\x02\x00\x00\x00\x3c", .props_len = 5, .qos = 2,
                       .retain = true, .expiry_at = 1700000060000ull };
    store_msg_t m2 = { .id = 9000000000ull, .topic = "x", .payload = NULL, .qos = 1 };
    store_entry_t e1 = { "alice", 10, 1, 2, true, 0, STORE_ENTRY_QUEUED, 3, ids };
    store_entry_t e2 = { "alice", 11, 9000000000ull, 1, false, 17, STORE_ENTRY_PUBACK, 0, NULL };
    store_entry_t e3 = { "bob", 5, 1, 1, false, 65535, STORE_ENTRY_PUBREC, 1, ids };
    assert_int_equal(store_batch_session_put(b, &with_will), 0);
    assert_int_equal(store_batch_session_put(b, &plain), 0);
    store_batch_sub_put(b, &sub1);
    store_batch_sub_put(b, &sub2);
    assert_int_equal(store_batch_msg_put(b, &m1), 0);
    assert_int_equal(store_batch_msg_put(b, &m2), 0);
    assert_int_equal(store_batch_entry_add(b, &e1), 0);
    assert_int_equal(store_batch_entry_add(b, &e2), 0);
    assert_int_equal(store_batch_entry_add(b, &e3), 0);
    store_batch_inq2_add(b, "alice", 4242);
    store_batch_inq2_add(b, "bob", 1);
    store_batch_retained_set(b, "a/b/c", 1);
    assert_int_equal(store_batch_count(b), 12);
    assert_int_equal(submit_wait(s, b), 0);

    dump_t d;
    store_recover_stats_t st = reopen_dump(&s, &d);
    assert_string_equal(d.buf,
        "msg 1 a/b/c [hello] props=5 q2 r1 exp=1700000060000\n"
        "msg 9000000000 x [] props=0 q1 r0 exp=0\n"
        "sess alice v5 exp=3600 disc=1700000000123 last=11 will alice/status [gone] props=2 q2 r1 d=30 e=600\n"
        "sess bob v4 exp=4294967295 disc=0 last=5\n"
        "sub alice a/+/c q2 nl1 rap1 rh2 id=268435455\n"
        "sub bob # q1 nl0 rap0 rh0 id=0\n"
        "entry alice 10 msg=1 q2 r1 pid=0 st=0 ids=7,70000,4000000000,\n"
        "entry alice 11 msg=9000000000 q1 r0 pid=17 st=1 ids=\n"
        "entry bob 5 msg=1 q1 r0 pid=65535 st=2 ids=7,\n"
        "inq2 alice 4242\n"
        "inq2 bob 1\n"
        "ret a/b/c 1\n");
    assert_int_equal(st.msgs, 2);
    assert_int_equal(st.sessions, 2);
    assert_int_equal(st.subs, 2);
    assert_int_equal(st.entries, 3);
    assert_int_equal(st.inq2, 2);
    assert_int_equal(st.retained, 1);
    assert_int_equal(st.orphans_removed, 0);
    assert_int_equal(st.max_msg_id, 9000000000ull);
    assert_int_equal(query("SELECT refs FROM msg WHERE id=1"), 3);
    store_close(s);
}

static void store_updates_and_deletes_what_it_stored(void **state)
{
    store_t *s = open_store();
    store_batch_t *b = store_batch_create();
    store_sub_t sub = { "c", "t/#", 1, false, false, 0, 1 };
    put_msg(b, 1, "t/1", "p");
    add_entry(b, "c", 1, 1);
    store_batch_sub_put(b, &sub);
    store_batch_inq2_add(b, "c", 9);
    assert_int_equal(submit_wait(s, b), 0);
    b = store_batch_create();
    store_batch_entry_update(b, "c", 1, 33, STORE_ENTRY_PUBREC, false);
    sub.qos = 2; /* put replaces */
    store_batch_sub_put(b, &sub);
    store_batch_inq2_del(b, "c", 9);
    assert_int_equal(submit_wait(s, b), 0);

    dump_t d;
    reopen_dump(&s, &d);
    assert_string_equal(d.buf, "msg 1 t/1 [p] props=0 q1 r0 exp=0\n"
                               "sub c t/# q2 nl0 rap0 rh0 id=1\n"
                               "entry c 1 msg=1 q1 r0 pid=33 st=2 ids=\n");
    b = store_batch_create();
    store_batch_sub_del(b, "c", "t/#");
    store_batch_entry_update(b, "c", 1, 33, STORE_ENTRY_PUBCOMP, true);
    assert_int_equal(submit_wait(s, b), 0);
    reopen_dump(&s, &d);
    /* The PUBREL stage keeps the entry but drops the only reference. */
    assert_string_equal(d.buf, "entry c 1 msg=0 q1 r0 pid=33 st=3 ids=\n");
    assert_int_equal(query("SELECT count(*) FROM msg"), 0);
    store_close(s);
}

static void store_keeps_a_shared_message_until_its_last_reference_goes(void **state)
{
    store_t *s = open_store();
    store_batch_t *b = store_batch_create();
    put_msg(b, 7, "t", "shared");
    add_entry(b, "a", 1, 7);
    add_entry(b, "b", 1, 7);
    assert_int_equal(submit_wait(s, b), 0);
    assert_int_equal(query("SELECT count(*) FROM msg"), 1);
    assert_int_equal(query("SELECT refs FROM msg WHERE id=7"), 2);

    b = store_batch_create();
    store_batch_entry_del(b, "a", 1);
    assert_int_equal(submit_wait(s, b), 0);
    assert_int_equal(query("SELECT refs FROM msg WHERE id=7"), 1);

    b = store_batch_create();
    store_batch_entry_del(b, "b", 1);
    assert_int_equal(submit_wait(s, b), 0);
    assert_int_equal(query("SELECT count(*) FROM msg"), 0);
    store_close(s);
}

static void store_keeps_a_retained_message_alive_and_replaces_it(void **state)
{
    store_t *s = open_store();
    store_batch_t *b = store_batch_create();
    put_msg(b, 8, "r", "v1");
    add_entry(b, "a", 1, 8);
    store_batch_retained_set(b, "r", 8);
    store_batch_entry_del(b, "a", 1); /* the retained row still holds it */
    assert_int_equal(submit_wait(s, b), 0);
    assert_int_equal(query("SELECT refs FROM msg WHERE id=8"), 1);

    b = store_batch_create();
    store_batch_retained_set(b, "r", 8); /* same message: no change */
    put_msg(b, 9, "r", "v2");
    store_batch_retained_set(b, "r", 9); /* replaces: 8 loses its last reference */
    assert_int_equal(submit_wait(s, b), 0);
    assert_int_equal(query("SELECT count(*) FROM msg WHERE id=8"), 0);
    assert_int_equal(query("SELECT msg_id FROM retained WHERE topic='r'"), 9);

    b = store_batch_create();
    store_batch_retained_del(b, "r");
    assert_int_equal(submit_wait(s, b), 0);
    assert_int_equal(query("SELECT count(*) FROM msg"), 0);
    assert_int_equal(query("SELECT count(*) FROM retained"), 0);
    store_close(s);
}

static void store_session_del_cascades_to_subs_entries_and_inq2(void **state)
{
    store_t *s = open_store();
    store_batch_t *b = store_batch_create();
    store_session_t a = { .client_id = "a", .proto = 5, .expiry_s = 10 };
    store_session_t bb = { .client_id = "b", .proto = 4 };
    store_sub_t sub = { "a", "x/#", 1, false, false, 0, 0 };
    assert_int_equal(store_batch_session_put(b, &a), 0);
    assert_int_equal(store_batch_session_put(b, &bb), 0);
    store_batch_sub_put(b, &sub);
    put_msg(b, 1, "x/1", "one");
    put_msg(b, 2, "x/2", "two");
    add_entry(b, "a", 1, 1);
    add_entry(b, "a", 2, 2);
    add_entry(b, "a", 3, 1);
    add_entry(b, "b", 1, 2);
    store_batch_inq2_add(b, "a", 5);
    assert_int_equal(submit_wait(s, b), 0);

    b = store_batch_create();
    store_batch_session_del(b, "a");
    assert_int_equal(submit_wait(s, b), 0);
    dump_t d;
    reopen_dump(&s, &d);
    /* Message 1 went with a's entries; 2 is still b's. */
    assert_string_equal(d.buf, "msg 2 x/2 [two] props=0 q1 r0 exp=0\n"
                               "sess b v4 exp=0 disc=0 last=1\n"
                               "entry b 1 msg=2 q1 r0 pid=0 st=0 ids=\n");
    assert_int_equal(query("SELECT refs FROM msg WHERE id=2"), 1);
    store_close(s);
}

static void store_rejects_only_the_invalid_batch(void **state)
{
    store_t *s = open_store();
    store_batch_t *bad = store_batch_create();
    store_batch_t *good = store_batch_create();
    store_sub_t sub = { "c", "f", 0, false, false, 0, 0 };
    waiter_t w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 };
    store_batch_sub_put(bad, &sub);
    add_entry(bad, "c", 1, 404); /* no message 404 */
    put_msg(good, 1, "t", "ok");
    add_entry(good, "c", 2, 1);
    assert_int_equal(store_submit(s, bad, on_done, &w), 0);
    assert_int_equal(submit_wait(s, good), 0);
    assert_int_equal(w.done, 1); /* callbacks run in submission order */
    assert_int_equal(w.status, UVMQ_EINVAL);
    assert_int_equal(query("SELECT count(*) FROM sub"), 0);
    assert_int_equal(query("SELECT count(*) FROM entry"), 1);
    /* A duplicate (client_id, seq) is rejected the same way. */
    store_batch_t *dup = store_batch_create();
    add_entry(dup, "c", 2, 1);
    assert_int_equal(submit_wait(s, dup), UVMQ_EINVAL);
    assert_int_equal(query("SELECT refs FROM msg WHERE id=1"), 1);
    store_close(s);
}

static void store_recover_removes_unreferenced_messages(void **state)
{
    store_t *s = open_store();
    store_batch_t *b = store_batch_create();
    put_msg(b, 5, "o", "orphan");
    put_msg(b, 6, "k", "kept");
    add_entry(b, "c", 1, 6);
    assert_int_equal(submit_wait(s, b), 0);
    dump_t d;
    store_recover_stats_t st = reopen_dump(&s, &d);
    assert_string_equal(d.buf, "msg 6 k [kept] props=0 q1 r0 exp=0\n"
                               "entry c 1 msg=6 q1 r0 pid=0 st=0 ids=\n");
    assert_int_equal(st.orphans_removed, 1);
    assert_int_equal(st.max_msg_id, 6);
    st = reopen_dump(&s, &d);
    assert_int_equal(st.orphans_removed, 0);
    assert_int_equal(query("SELECT count(*) FROM msg"), 1);
    store_close(s);
}

static int stop_at_second(void *ctx, const store_msg_t *m)
{
    return ++*(int *)ctx == 2 ? 77 : 0;
}

static void store_recover_stops_when_a_callback_says_so(void **state)
{
    store_t *s = open_store();
    store_batch_t *b = store_batch_create();
    store_recover_cb_t cbs = { .on_msg = stop_at_second };
    int n = 0;
    for (uint64_t i = 1; i <= 3; i++) {
        put_msg(b, i, "t", "p");
        add_entry(b, "c", i, i);
    }
    assert_int_equal(submit_wait(s, b), 0);
    assert_int_equal(store_recover(s, &cbs, &n, NULL), 77);
    assert_int_equal(n, 2);
    store_close(s);
}

/* Counts the lines of path that contain needle. */
static int count_lines(const char *path, const char *needle)
{
    char line[1024];
    int n = 0;
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f) != NULL) n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static void store_survives_a_full_disk_and_keeps_what_it_had(void **state)
{
    static char big[65536];
    char logpath[128];
    store_t *s = open_store();
    store_batch_t *b = store_batch_create();
    put_msg(b, 1, "before", "committed");
    add_entry(b, "c", 1, 1);
    assert_int_equal(submit_wait(s, b), 0);

    /* Capture stderr: one error line for the whole failure episode. */
    snprintf(logpath, sizeof logpath, "%s/log", dir);
    fflush(stderr);
    int saved = dup(2), fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
    memset(big, 'x', sizeof big - 1);
    store_set_max_db_pages(s, (uint32_t)query("PRAGMA page_count") + 2);
    for (uint64_t i = 10; i < 13; i++) {
        b = store_batch_create();
        put_msg(b, i, "lost", big);
        add_entry(b, "c", i, i);
        assert_int_equal(submit_wait(s, b), UVMQ_EIO);
    }
    store_stats_t st;
    store_stats(s, &st);
    assert_int_equal(st.failed_commits, 3);
    store_set_max_db_pages(s, 0); /* space comes back */
    b = store_batch_create();
    put_msg(b, 2, "after", "works");
    add_entry(b, "c", 2, 2);
    assert_int_equal(submit_wait(s, b), 0);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    assert_int_equal(count_lines(logpath, "commit failed"), 1);
    assert_int_equal(count_lines(logpath, "ERROR"), 1);

    dump_t d;
    reopen_dump(&s, &d);
    assert_string_equal(d.buf, "msg 1 before [committed] props=0 q1 r0 exp=0\n"
                               "msg 2 after [works] props=0 q1 r0 exp=0\n"
                               "entry c 1 msg=1 q1 r0 pid=0 st=0 ids=\n"
                               "entry c 2 msg=2 q1 r0 pid=0 st=0 ids=\n");
    store_close(s);
}

static void store_batch_refuses_too_many_subscription_ids(void **state)
{
    uint32_t ids[STORE_MAX_SUB_IDS + 1] = { 0 };
    store_entry_t e = { .client_id = "c", .seq = 1, .msg_id = 1,
                        .n_sub_ids = STORE_MAX_SUB_IDS + 1, .sub_ids = ids };
    store_batch_t *b = store_batch_create();
    assert_int_equal(store_batch_entry_add(b, &e), UVMQ_EINVAL);
    assert_int_equal(store_batch_count(b), 0);
    e.n_sub_ids = STORE_MAX_SUB_IDS;
    assert_int_equal(store_batch_entry_add(b, &e), 0);
    assert_int_equal(store_batch_count(b), 1);
    store_batch_destroy(b);
    assert_int_equal(store_submit(NULL, NULL, NULL, NULL), UVMQ_EINVAL);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, make_tmp, remove_tmp)
    const struct CMUnitTest tests[] = {
        T(store_round_trips_every_record_kind),
        T(store_updates_and_deletes_what_it_stored),
        T(store_keeps_a_shared_message_until_its_last_reference_goes),
        T(store_keeps_a_retained_message_alive_and_replaces_it),
        T(store_session_del_cascades_to_subs_entries_and_inq2),
        T(store_rejects_only_the_invalid_batch),
        T(store_recover_removes_unreferenced_messages),
        T(store_recover_stops_when_a_callback_says_so),
        T(store_survives_a_full_disk_and_keeps_what_it_had),
        T(store_batch_refuses_too_many_subscription_ids),
    };
    return cmocka_run_group_tests_name("storage/db", tests, NULL, NULL);
}

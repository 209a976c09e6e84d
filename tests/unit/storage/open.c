/*
 * Unit tests for storage/store.c's refusals and storage/store_sql.c's
 * migrations. Each refusal test snapshots DIR/uvmq.db, tries store_open,
 * expects UVMQ_EIO and then compares the file byte for byte: a refused
 * database is never modified. The tests run as root too, so read-only and
 * unreadable are set with mode bits the store checks itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "storage/store.h"
#include "storage/store_int.h"

static char dir[64];
static char path[128];

static int make_tmp(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/uvmq-open-XXXXXX");
    log_set_level(LOG_ERROR);
    if (mkdtemp(dir) == NULL) return -1;
    snprintf(path, sizeof path, "%s/uvmq.db", dir);
    return 0;
}

static int remove_tmp(void **state)
{
    char cmd[128];
    chmod(dir, 0700);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void on_done(void *ctx, int status)
{
    *(int *)ctx = status + 1;
}

/* Builds a valid database with n messages, each queued once, and closes
 * it (so the WAL is checkpointed into the file). */
static void make_db(int n)
{
    static char payload[200];
    store_t *s = NULL;
    store_batch_t *b = store_batch_create();
    int done = 0;
    memset(payload, 'p', sizeof payload);
    assert_int_equal(store_open(&s, dir, NULL), 0);
    for (int i = 1; i <= n; i++) {
        store_msg_t m = { .id = (uint64_t)i, .topic = "t", .payload = payload,
                          .payload_len = sizeof payload, .qos = 1 };
        store_entry_t e = { .client_id = "c", .seq = (uint64_t)i, .msg_id = (uint64_t)i };
        assert_int_equal(store_batch_msg_put(b, &m), 0);
        assert_int_equal(store_batch_entry_add(b, &e), 0);
    }
    assert_int_equal(store_submit(s, b, on_done, &done), 0);
    store_close(s);
    assert_int_equal(done, 1);
}

static char *slurp(const char *p, size_t *len)
{
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(*len + 1);
    assert_int_equal(fread(buf, 1, *len, f), *len);
    fclose(f);
    return buf;
}

static void write_file(const char *p, const void *data, size_t len, long off)
{
    FILE *f = fopen(p, off < 0 ? "wb" : "r+b");
    assert_non_null(f);
    if (off > 0) fseek(f, off, SEEK_SET);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* Expects store_open to refuse with UVMQ_EIO and the file to stay the same. */
static void assert_refused_unchanged(const store_opts_t *opts)
{
    size_t before_len = 0, after_len = 0;
    store_t *s = NULL;
    chmod(path, 0600);
    char *before = slurp(path, &before_len);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(store_open(&s, dir, opts), UVMQ_EIO);
    assert_null(s);
    char *after = slurp(path, &after_len);
    assert_int_equal(after_len, before_len);
    assert_memory_equal(after, before, before_len);
    free(before);
    free(after);
}

/* Sets PRAGMA user_version on the closed database directly. */
static void set_version(int v)
{
    sqlite3 *db = NULL;
    char sql[48];
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", v);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static void store_refuses_a_file_that_is_not_a_database(void **state)
{
    char text[8192];
    memset(text, 'z', sizeof text);
    memcpy(text, "just some notes\n", 16);
    write_file(path, text, sizeof text, -1);
    assert_refused_unchanged(NULL);
}

static void store_refuses_a_corrupt_database_by_default(void **state)
{
    char junk[8192];
    make_db(200);
    memset(junk, 0x5a, sizeof junk);
    write_file(path, junk, sizeof junk, 4096 * 3); /* pages 4 and 5 */
    assert_refused_unchanged(NULL); /* quick_check is the default */
}

static void store_recover_reports_corruption_without_quick_check(void **state)
{
    char junk[4096 * 8];
    store_t *s = NULL;
    size_t len = 0;
    store_opts_t opts = { .check = STORE_CHECK_NONE };
    make_db(200);
    memset(junk, 0x5a, sizeof junk);
    write_file(path, junk, sizeof junk, 4096);
    char *before = slurp(path, &len);
    /* The schema page is intact, so an unchecked open succeeds; the first
     * read of a data page then fails and recovery returns UVMQ_EIO. */
    assert_int_equal(store_open(&s, dir, &opts), 0);
    assert_int_equal(store_recover(s, &(store_recover_cb_t){ 0 }, NULL, NULL), UVMQ_EIO);
    store_close(s);
    size_t after_len = 0;
    char *after = slurp(path, &after_len);
    assert_int_equal(after_len, len);
    assert_memory_equal(after, before, len);
    free(before);
    free(after);
}

static void store_refuses_a_schema_newer_than_it_knows(void **state)
{
    make_db(3);
    set_version(STORE_SCHEMA_VERSION + 1);
    assert_refused_unchanged(NULL);
}

static void store_refuses_a_foreign_database(void **state)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE notes(x); INSERT INTO notes VALUES(1)",
                                  NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    assert_refused_unchanged(NULL);
}

static void store_refuses_an_unreadable_file(void **state)
{
    size_t len = 0;
    store_t *s = NULL;
    make_db(3);
    char *before = slurp(path, &len);
    chmod(path, 0000);
    assert_int_equal(store_open(&s, dir, NULL), UVMQ_EIO);
    assert_null(s);
    chmod(path, 0600);
    size_t after_len = 0;
    char *after = slurp(path, &after_len);
    assert_int_equal(after_len, len);
    assert_memory_equal(after, before, len);
    free(before);
    free(after);
    /* A directory where the file should be cannot be read either. */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(store_open(&s, dir, NULL), UVMQ_EIO);
    assert_null(s);
}

static void store_refuses_a_read_only_database_file(void **state)
{
    size_t len = 0;
    store_t *s = NULL;
    make_db(3);
    char *before = slurp(path, &len);
    chmod(path, 0400);
    assert_int_equal(store_open(&s, dir, NULL), UVMQ_EIO);
    assert_null(s);
    size_t after_len = 0;
    char *after = slurp(path, &after_len);
    assert_int_equal(after_len, len);
    assert_memory_equal(after, before, len);
    free(before);
    free(after);
}

static void store_refuses_a_read_only_data_dir(void **state)
{
    size_t len = 0;
    store_t *s = NULL;
    make_db(3);
    char *before = slurp(path, &len);
    assert_int_equal(chmod(dir, 0500), 0);
    assert_int_equal(store_open(&s, dir, NULL), UVMQ_EIO);
    assert_null(s);
    assert_int_equal(chmod(dir, 0700), 0);
    size_t after_len = 0;
    char *after = slurp(path, &after_len);
    assert_int_equal(after_len, len);
    assert_memory_equal(after, before, len);
    free(before);
    free(after);
}

static void store_creates_the_current_schema_in_an_empty_file(void **state)
{
    store_t *s = NULL;
    write_file(path, "", 0, -1);
    assert_int_equal(store_open(&s, dir, NULL), 0);
    store_close(s);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(store__read_version(db), STORE_SCHEMA_VERSION);
    sqlite3_close(db);
}

static int count(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int v = -1;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void store_migrate_runs_each_step_once_in_order(void **state)
{
    static const store_migration_t fake[2] = {
        { "fake v1", "CREATE TABLE t(x); INSERT INTO t VALUES(42);" },
        { "fake v2", "INSERT INTO t VALUES(43);" },
    };
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(store__migrate(db, path, fake, 1), 0); /* v0 -> v1 */
    assert_int_equal(store__read_version(db), 1);
    assert_int_equal(count(db, "SELECT sum(x) FROM t"), 42);
    assert_int_equal(store__migrate(db, path, fake, 1), 0); /* nothing to do */
    assert_int_equal(count(db, "SELECT count(*) FROM t"), 1);
    assert_int_equal(store__migrate(db, path, fake, 2), 0); /* v1 -> v2 only */
    assert_int_equal(store__read_version(db), 2);
    assert_int_equal(count(db, "SELECT sum(x) FROM t"), 85);
    sqlite3_close(db);
}

static void store_migrate_rolls_back_a_failing_step(void **state)
{
    static const store_migration_t fake[2] = {
        { "fake v1", "CREATE TABLE t(x);" },
        { "broken v2", "INSERT INTO t VALUES(1); CREATE TABLE t(y);" },
    };
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(store__migrate(db, path, fake, 2), UVMQ_EIO);
    assert_int_equal(store__read_version(db), 1);
    assert_int_equal(count(db, "SELECT count(*) FROM t"), 0);
    assert_int_equal(sqlite3_get_autocommit(db), 1);
    sqlite3_close(db);
}

static void store_migrates_a_real_database_to_a_fake_next_version(void **state)
{
    const store_migration_t steps[STORE_SCHEMA_VERSION + 1] = {
        store__migrations[0],
        store__migrations[1],
        { "fake next", "ALTER TABLE session ADD COLUMN note TEXT DEFAULT 'next';" },
    };
    _Static_assert(STORE_SCHEMA_VERSION == 2, "list every real step above");
    sqlite3 *db = NULL;
    make_db(2);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(store__migrate(db, path, steps, STORE_SCHEMA_VERSION + 1), 0);
    assert_int_equal(store__read_version(db), STORE_SCHEMA_VERSION + 1);
    assert_int_equal(count(db, "SELECT count(*) FROM pragma_table_info('session') WHERE name='note'"), 1);
    assert_int_equal(count(db, "SELECT count(*) FROM entry"), 2);
    sqlite3_close(db);
    /* This code does not know that version: the file is now refused. */
    assert_refused_unchanged(NULL);
}

/* Version 1 -> 2 (session user names) on a v1 file with a session: the
 * row stays, with no user name (anonymous). */
static void store_migrates_a_v1_database_to_v2_keeping_its_sessions(void **state)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(store__migrate(db, path, store__migrations, 1), 0);
    assert_int_equal(sqlite3_exec(db, "INSERT INTO session(client_id, proto, expiry_s,"
                                      " disconnected_at) VALUES('c1', 4, 60, 0)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    store_t *s = NULL;
    assert_int_equal(store_open(&s, dir, NULL), 0);
    store_close(s);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(store__read_version(db), 2);
    assert_int_equal(count(db, "SELECT count(*) FROM session WHERE client_id='c1'"
                               " AND username IS NULL"),
                     1);
    sqlite3_close(db);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, make_tmp, remove_tmp)
    const struct CMUnitTest tests[] = {
        T(store_refuses_a_file_that_is_not_a_database),
        T(store_refuses_a_corrupt_database_by_default),
        T(store_recover_reports_corruption_without_quick_check),
        T(store_refuses_a_schema_newer_than_it_knows),
        T(store_refuses_a_foreign_database),
        T(store_refuses_an_unreadable_file),
        T(store_refuses_a_read_only_database_file),
        T(store_refuses_a_read_only_data_dir),
        T(store_creates_the_current_schema_in_an_empty_file),
        T(store_migrates_a_v1_database_to_v2_keeping_its_sessions),
        T(store_migrate_runs_each_step_once_in_order),
        T(store_migrate_rolls_back_a_failing_step),
        T(store_migrates_a_real_database_to_a_fake_next_version),
    };
    return cmocka_run_group_tests_name("storage/open", tests, NULL, NULL);
}

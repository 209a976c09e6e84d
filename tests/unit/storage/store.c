/*
 * Unit tests for storage/store.c: the data directory and its lock.
 *
 * flock(2) locks belong to an open file description, so a second
 * store_open in the same process conflicts exactly as a second broker
 * process would.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "storage/store.h"

static char tmpl[64];

static int make_tmp(void **state)
{
    snprintf(tmpl, sizeof tmpl, "/tmp/uvmq-store-XXXXXX");
    if (mkdtemp(tmpl) == NULL) return -1;
    log_set_level(LOG_ERROR);
    return 0;
}

static int remove_tmp(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
    return system(cmd) == 0 ? 0 : -1;
}

static void store_creates_missing_dirs_with_mode_0700(void **state)
{
    char dir[128];
    struct stat st;
    store_t *s = NULL;
    snprintf(dir, sizeof dir, "%s/a/b/data", tmpl);
    assert_int_equal(store_open(&s, dir, NULL), 0);
    assert_non_null(s);
    assert_string_equal(store_dir(s), dir);
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    store_close(s);
}

static void store_refuses_a_dir_another_store_holds(void **state)
{
    store_t *a = NULL, *b = NULL;
    assert_int_equal(store_open(&a, tmpl, NULL), 0);
    assert_int_equal(store_open(&b, tmpl, NULL), UVMQ_EIO);
    assert_null(b);
    store_close(a);
    /* The lock goes with the first store: a new one gets it. */
    assert_int_equal(store_open(&b, tmpl, NULL), 0);
    store_close(b);
}

static void store_refuses_an_unwritable_parent(void **state)
{
    char dir[128];
    store_t *s = NULL;
    if (geteuid() == 0) {
        /* root ignores directory permissions; use a path under a file. */
        char file[96];
        snprintf(file, sizeof file, "%s/plain", tmpl);
        FILE *f = fopen(file, "w");
        assert_non_null(f);
        fclose(f);
        snprintf(dir, sizeof dir, "%s/plain/data", tmpl);
    } else {
        char ro[96];
        snprintf(ro, sizeof ro, "%s/ro", tmpl);
        assert_int_equal(mkdir(ro, 0500), 0);
        snprintf(dir, sizeof dir, "%s/data", ro);
    }
    assert_int_equal(store_open(&s, dir, NULL), UVMQ_EIO);
    assert_null(s);
}

static void store_refuses_an_empty_path(void **state)
{
    store_t *s = NULL;
    assert_int_equal(store_open(&s, "", NULL), UVMQ_EIO);
    assert_null(s);
    store_close(NULL); /* a no-op */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(store_creates_missing_dirs_with_mode_0700, make_tmp, remove_tmp),
        cmocka_unit_test_setup_teardown(store_refuses_a_dir_another_store_holds, make_tmp, remove_tmp),
        cmocka_unit_test_setup_teardown(store_refuses_an_unwritable_parent, make_tmp, remove_tmp),
        cmocka_unit_test_setup_teardown(store_refuses_an_empty_path, make_tmp, remove_tmp),
    };
    return cmocka_run_group_tests_name("storage/store", tests, NULL, NULL);
}

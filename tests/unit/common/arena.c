/*
 * Unit tests for common/arena.c: limits, alignment, reset.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/arena.h"
#include "common/err.h"

static void arena_returns_aligned_zeroed_memory(void **state)
{
    arena_t a;
    arena_init(&a, 1 << 20);
    unsigned char *p = arena_alloc(&a, 3);
    unsigned char *q = arena_alloc(&a, 5);
    assert_non_null(p);
    assert_non_null(q);
    assert_int_equal((uintptr_t)q % 8, 0);
    assert_int_equal(q[0] | q[4], 0);
    arena_dispose(&a);
}

static void arena_refuses_past_its_limit(void **state)
{
    arena_t a;
    arena_init(&a, 64);
    assert_non_null(arena_alloc(&a, 56));
    assert_null(arena_alloc(&a, 16));
    arena_reset(&a);
    assert_non_null(arena_alloc(&a, 64));
    arena_dispose(&a);
}

static void arena_grows_past_one_chunk_and_resets(void **state)
{
    arena_t a;
    arena_init(&a, 1 << 20);
    for (int i = 0; i < 100; i++) assert_non_null(arena_alloc(&a, 1000));
    arena_reset(&a);
    assert_int_equal(a.used_total, 0);
    assert_non_null(arena_alloc(&a, 100000));
    arena_dispose(&a);
}

static void err_str_names_ours_and_errno_codes(void **state)
{
    assert_string_equal(err_str(UVMQ_EPKT_UTF8), "invalid UTF-8 string");
    assert_string_equal(err_str(0), "success");
    /* -104 is UV_ECONNRESET on Linux: libuv passes errno through */
    assert_string_equal(err_str(-ECONNRESET), "Connection reset by peer");
    assert_string_equal(err_str(-4095), "unknown error"); /* UV_EOF: libuv's own */
    assert_string_equal(err_str(UVMQ_EBASE - 5000), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arena_returns_aligned_zeroed_memory),
        cmocka_unit_test(arena_refuses_past_its_limit),
        cmocka_unit_test(arena_grows_past_one_chunk_and_resets),
        cmocka_unit_test(err_str_names_ours_and_errno_codes),
    };
    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}

/*
 * Unit tests for bench/bench_stats.c: the log-linear latency histogram's
 * bucket layout, percentiles on known data, merge, /proc sampling of this
 * very process, and steal time from /proc/stat's format.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "bench/bench_stats.c"

static void hist_buckets_are_linear_then_64_per_power_of_two(void **state)
{
    assert_int_equal(bench_hist_bucket(0), 0);
    assert_int_equal(bench_hist_bucket(999), 999);
    assert_int_equal(bench_hist_bucket(1023), 1023);
    assert_int_equal(bench_hist_bucket(1024), 1024);
    assert_int_equal(bench_hist_bucket(1039), 1024);
    assert_int_equal(bench_hist_bucket(1040), 1025);
    assert_int_equal(bench_hist_bucket(2047), 1024 + 63);
    assert_int_equal(bench_hist_bucket(2048), 1024 + 64);
    assert_int_equal(bench_hist_bucket((1u << 26) - 1), BENCH_HIST_BUCKETS - 1);
    assert_int_equal(bench_hist_bucket(1ull << 40), BENCH_HIST_BUCKETS - 1);
}

static void hist_percentiles_of_1_to_1000_us_are_exact(void **state)
{
    static bench_hist_t h;
    uint64_t us;

    bench_hist_init(&h);
    for (us = 1000; us >= 1; us--) bench_hist_record(&h, us * 1000 + 999);
    assert_int_equal(h.count, 1000);
    assert_true(bench_hist_percentile(&h, 50) == 500.0);
    assert_true(bench_hist_percentile(&h, 90) == 900.0);
    assert_true(bench_hist_percentile(&h, 99) == 990.0);
    assert_true(bench_hist_percentile(&h, 99.9) == 999.0);
    assert_true(bench_hist_percentile(&h, 100) == 1000.0);
    assert_true(bench_hist_max_us(&h) == 1000.999);
}

static void hist_log_buckets_report_their_midpoint_under_the_max(void **state)
{
    static bench_hist_t h;
    int i;

    bench_hist_init(&h);
    for (i = 0; i < 10; i++) bench_hist_record(&h, 1500000); /* 1500 us: [1488, 1504) */
    assert_true(bench_hist_percentile(&h, 50) == 1496.0);
    bench_hist_init(&h);
    bench_hist_record(&h, 1490000);
    assert_true(bench_hist_percentile(&h, 50) == 1490.0);      /* clamped to the max */
}

static void hist_relative_error_stays_under_two_percent(void **state)
{
    static bench_hist_t h;
    uint64_t us;

    for (us = 1024; us < 60000000; us = us * 21 / 20 + 1) {
        double v;
        bench_hist_init(&h);
        bench_hist_record(&h, us * 1000);
        bench_hist_record(&h, 60000000000ull); /* a far larger max */
        v = bench_hist_percentile(&h, 50);
        assert_true(v >= (double)us * 0.98 && v <= (double)us * 1.02);
    }
}

static void hist_tail_percentiles_see_the_rare_slow_sample(void **state)
{
    static bench_hist_t h, other;
    int i;

    bench_hist_init(&h);
    bench_hist_init(&other);
    for (i = 0; i < 999; i++) bench_hist_record(&h, 100000);  /* 100 us */
    bench_hist_record(&other, 250000000);                      /* 250 ms */
    bench_hist_merge(&h, &other);
    assert_int_equal(h.count, 1000);
    assert_true(bench_hist_percentile(&h, 99) == 100.0);
    assert_true(bench_hist_percentile(&h, 99.9) == 100.0);
    assert_true(bench_hist_percentile(&h, 100) == 250000.0);
    assert_true(bench_hist_max_us(&h) == 250000.0);
}

static void hist_empty_reports_zero(void **state)
{
    static bench_hist_t h;

    bench_hist_init(&h);
    assert_true(bench_hist_percentile(&h, 50) == 0.0);
    assert_true(bench_hist_max_us(&h) == 0.0);
}

static void proc_sampling_reads_this_process(void **state)
{
    volatile uint64_t x = 0;
    uint64_t i;

    for (i = 0; i < 50000000; i++) x += i;
    assert_true(bench_proc_cpu_s(getpid()) >= 0.0);
    assert_true(bench_proc_rss_kb(getpid()) > 100);
    /* RssAnon is part of VmRSS (the rest is file-backed and shmem). */
    assert_true(bench_proc_anon_kb(getpid()) > 0);
    assert_true(bench_proc_anon_kb(getpid()) <= bench_proc_rss_kb(getpid()));
    assert_true(bench_self_cpu_s() > 0.0);
    assert_true(bench_proc_cpu_s(0x7ffffff0) < 0);
    assert_true(bench_proc_rss_kb(0x7ffffff0) < 0);
    assert_true(bench_proc_anon_kb(0x7ffffff0) < 0);
}

/* Writes text to a fresh temporary file; returns its path in buf. */
static const char *stat_file(char *buf, const char *text)
{
    int fd;
    strcpy(buf, "/tmp/uvmq-stat-XXXXXX");
    fd = mkstemp(buf);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return buf;
}

static void steal_is_the_eighth_value_of_the_cpu_line(void **state)
{
    char path[64];
    double hz = (double)sysconf(_SC_CLK_TCK);

    stat_file(path, "cpu  10 0 20 3000 5 0 7 250 0 0\ncpu0 5 0 10 1500 2 0 3 100 0 0\n");
    assert_true(bench_stat_steal_s(path) == 250.0 / hz);
    unlink(path);
    /* an old kernel's line without steal, or no summary line: unknown */
    stat_file(path, "cpu  10 0 20 3000 5 0 7\n");
    assert_true(bench_stat_steal_s(path) < 0);
    unlink(path);
    stat_file(path, "cpu0 5 0 10 1500 2 0 3 100 0 0\n");
    assert_true(bench_stat_steal_s(path) < 0);
    unlink(path);
    assert_true(bench_stat_steal_s("/nonexistent/stat") < 0);
    /* this machine's own: never negative, never going back */
    double a = bench_steal_s();
    assert_true(a >= 0.0);
    assert_true(bench_steal_s() >= a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hist_buckets_are_linear_then_64_per_power_of_two),
        cmocka_unit_test(hist_percentiles_of_1_to_1000_us_are_exact),
        cmocka_unit_test(hist_log_buckets_report_their_midpoint_under_the_max),
        cmocka_unit_test(hist_relative_error_stays_under_two_percent),
        cmocka_unit_test(hist_tail_percentiles_see_the_rare_slow_sample),
        cmocka_unit_test(hist_empty_reports_zero),
        cmocka_unit_test(proc_sampling_reads_this_process),
        cmocka_unit_test(steal_is_the_eighth_value_of_the_cpu_line),
    };
    return cmocka_run_group_tests_name("bench/stats", tests, NULL, NULL);
}

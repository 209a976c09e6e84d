/*
 * bench_stats.h - latency histogram and /proc sampling for uvmq-bench.
 *
 * The histogram is log-linear in the style of HdrHistogram: values below
 * 1024 us land in 1 us buckets, larger ones in 64 sub-buckets per power of
 * two (at most 1/64 = 1.6% relative error) up to 2^26 us (67 s); anything
 * larger is clamped into the last bucket. Recording is one index
 * computation and one increment: no allocation, no lock. A histogram
 * belongs to one thread; merge copies at the end.
 */
#ifndef UVMQ_BENCH_STATS_H
#define UVMQ_BENCH_STATS_H

#include <stdint.h>

#define BENCH_HIST_LINEAR 1024 /* 1 us buckets below this many us */
#define BENCH_HIST_SUB 64      /* buckets per power of two above it */
#define BENCH_HIST_TOP_EXP 26  /* values >= 2^26 us are clamped */
#define BENCH_HIST_BUCKETS \
    (BENCH_HIST_LINEAR + (BENCH_HIST_TOP_EXP - 10) * BENCH_HIST_SUB)

/* Caller-owned histogram of latencies; zero it with bench_hist_init. */
typedef struct bench_hist_s {
    uint64_t count;
    uint64_t max_ns; /* exact maximum, not bucketed */
    uint64_t buckets[BENCH_HIST_BUCKETS];
} bench_hist_t;

void bench_hist_init(bench_hist_t *h);
/* Records one latency in nanoseconds. */
void bench_hist_record(bench_hist_t *h, uint64_t ns);
/* Adds every sample of src into dst. */
void bench_hist_merge(bench_hist_t *dst, const bench_hist_t *src);
/*
 * Returns the p-th percentile (0 < p <= 100) in microseconds: the smallest
 * bucket value v such that at least ceil(p% of count) samples are <= v.
 * Linear buckets report their integer lower bound (exact for whole-us
 * data), log buckets their midpoint; never more than the exact maximum.
 * Returns 0 for an empty histogram.
 */
double bench_hist_percentile(const bench_hist_t *h, double p);
/* Returns the exact maximum in microseconds (0 when empty). */
double bench_hist_max_us(const bench_hist_t *h);

/* Bucket index of a value in whole microseconds (exposed for tests). */
int bench_hist_bucket(uint64_t us);

/* CPU seconds (utime + stime) the process pid has used, from
 * /proc/PID/stat; negative when it cannot be read. */
double bench_proc_cpu_s(int pid);
/* Resident set size of pid in KiB (VmRSS in /proc/PID/status); negative
 * when it cannot be read. */
long bench_proc_rss_kb(int pid);
/* RssAnon of pid in KiB (anonymous memory only), or -1. The idle mode's
 * bytes per connection come from it: a library's code pages that a code
 * path maps in during the window are not memory a connection holds. */
long bench_proc_anon_kb(int pid);
/* CPU seconds the hypervisor ran something else while this machine's
 * CPUs wanted to run (steal, summed over every CPU, from /proc/stat); 0
 * on bare metal, negative when it cannot be read. A run that loses CPU
 * to steal measures the host, not the broker. */
double bench_steal_s(void);
/* The same from a file in /proc/stat's format (exposed for tests). */
double bench_stat_steal_s(const char *path);
/* user + system CPU seconds of this process, all threads (getrusage). */
double bench_self_cpu_s(void);

#endif

/*
 * bench_stats.c - log-linear latency histogram and process sampling.
 *
 * Bucket layout, for a value v in whole microseconds:
 *   v < 1024:            bucket v                      (1 us wide)
 *   2^e <= v < 2^(e+1):  1024 + (e-10)*64 + sub, where sub is the six bits
 *                        below the leading one         (2^(e-6) us wide)
 */
#include "bench/bench_stats.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Initialises an empty histogram; the caller owns the memory. */
void bench_hist_init(bench_hist_t *h)
{
    memset(h, 0, sizeof *h);
}

/* Returns the bucket of a whole-microsecond value (clamped). */
int bench_hist_bucket(uint64_t us)
{
    int e;

    if (us < BENCH_HIST_LINEAR) return (int)us;
    if (us >= (1ull << BENCH_HIST_TOP_EXP)) return BENCH_HIST_BUCKETS - 1;
    e = 63 - __builtin_clzll(us);
    return BENCH_HIST_LINEAR + (e - 10) * BENCH_HIST_SUB +
           (int)((us >> (e - 6)) & (BENCH_HIST_SUB - 1));
}

/* Lowest value of a bucket and its width, in microseconds. */
static void bucket_range(int b, double *low, double *width)
{
    int e, sub;

    if (b < BENCH_HIST_LINEAR) {
        *low = b;
        *width = 1;
        return;
    }
    e = (b - BENCH_HIST_LINEAR) / BENCH_HIST_SUB + 10;
    sub = (b - BENCH_HIST_LINEAR) % BENCH_HIST_SUB;
    *width = (double)(1ull << (e - 6));
    *low = (double)(1ull << e) + sub * *width;
}

/* Records one latency sample given in nanoseconds. */
void bench_hist_record(bench_hist_t *h, uint64_t ns)
{
    h->buckets[bench_hist_bucket(ns / 1000)]++;
    h->count++;
    if (ns > h->max_ns) h->max_ns = ns;
}

/* Adds src's samples to dst. */
void bench_hist_merge(bench_hist_t *dst, const bench_hist_t *src)
{
    int i;

    for (i = 0; i < BENCH_HIST_BUCKETS; i++) dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    if (src->max_ns > dst->max_ns) dst->max_ns = src->max_ns;
}

/* Returns a percentile in microseconds; see the header. */
double bench_hist_percentile(const bench_hist_t *h, double p)
{
    uint64_t want, seen = 0;
    double low = 0, width = 1, v, max = bench_hist_max_us(h);
    int b;

    if (h->count == 0) return 0;
    want = (uint64_t)(p / 100.0 * (double)h->count + 0.999999);
    if (want < 1) want = 1;
    for (b = 0; b < BENCH_HIST_BUCKETS; b++) {
        seen += h->buckets[b];
        if (seen >= want) break;
    }
    bucket_range(b < BENCH_HIST_BUCKETS ? b : BENCH_HIST_BUCKETS - 1, &low, &width);
    v = b < BENCH_HIST_LINEAR ? low : low + width / 2;
    return v > max ? max : v;
}

/* Returns the exact maximum in microseconds. */
double bench_hist_max_us(const bench_hist_t *h)
{
    return (double)h->max_ns / 1000.0;
}

/* Returns utime+stime of pid in seconds from /proc/PID/stat. The command
 * name (field 2) may hold spaces and parentheses, so fields are counted
 * from the last ')': utime and stime are fields 14 and 15. */
double bench_proc_cpu_s(int pid)
{
    char path[64], buf[2048];
    unsigned long long ut = 0, st = 0;
    double rc = -1;
    size_t n;
    char *p;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (!f) return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    /* After ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime(14) stime(15). */
    if (p && sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                    &ut, &st) == 2)
        rc = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    return rc;
}

/* The "<key>: N kB" line of /proc/PID/status, in KiB, or -1. */
static long status_kb(int pid, const char *key)
{
    char path[64], line[256];
    size_t klen = strlen(key);
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/status", pid);
    f = fopen(path, "r");
    if (!f) return -1;
    while (kb < 0 && fgets(line, sizeof line, f))
        if (strncmp(line, key, klen) != 0 || line[klen] != ':' ||
            sscanf(line + klen + 1, "%ld", &kb) != 1)
            kb = -1;
    fclose(f);
    return kb;
}

/* Returns VmRSS of pid in KiB from /proc/PID/status. */
long bench_proc_rss_kb(int pid)
{
    return status_kb(pid, "VmRSS");
}

/* Returns RssAnon of pid in KiB (heap, stacks: no file-backed pages). */
long bench_proc_anon_kb(int pid)
{
    return status_kb(pid, "RssAnon");
}

double bench_stat_steal_s(const char *path)
{
    char line[512];
    unsigned long long v[8] = {0};
    double rc = -1;
    FILE *f = fopen(path, "r");

    if (!f) return -1;
    /* "cpu  user nice system idle iowait irq softirq steal ...": the first
     * line sums every CPU; steal is its eighth value. */
    if (fgets(line, sizeof line, f) && strncmp(line, "cpu ", 4) == 0 &&
        sscanf(line + 4, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
               &v[3], &v[4], &v[5], &v[6], &v[7]) == 8)
        rc = (double)v[7] / (double)sysconf(_SC_CLK_TCK);
    fclose(f);
    return rc;
}

double bench_steal_s(void)
{
    return bench_stat_steal_s("/proc/stat");
}

/* Returns this process's user+system CPU time in seconds. */
double bench_self_cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/*
 * bench.c - main() of uvmq-bench: options, the run's phases, the report.
 *
 * Publishers live on the main thread's loop, subscribers on a second loop
 * in their own thread (bench/uvmq-bench.md is the contract). The two share
 * only per-publisher atomics (the sequence range of the measured window and
 * the completion ring: a message stays outstanding until every matching
 * subscriber has it), a few atomic progress counters, and two uv_async
 * wake-ups; everything else per message is thread-local. A message counts when
 * its sequence number lies in [win_first, win_end) of its publisher: the
 * publisher thread records both bounds at the window's start and end, so
 * warm-up messages never count, whenever they arrive. The connect mode
 * (bench_connect.c) runs on the main loop alone, with no subscriber thread.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/err.h>

#include "bench/bench_client.h"
#include "bench/bench_connect.h"
#include "bench/bench_mqtt.h"
#include "bench/bench_ring.h"
#include "bench/bench_stats.h"
#include "common/err.h"
#include "common/log.h"
#include "common/xmalloc.h"

#define HDR_LEN 24               /* index u32, seq u64, send ns u64 (REALTIME), magic u32 */
#define MAGIC 0x75764d51u        /* "uvMQ" */
#define NO_SEQ UINT64_MAX
#define PUB_HIGH_WATER (1u << 20) /* stop filling a publisher past 1 MiB unsent */
#define STALL_NS 1000000000ull   /* give up on a window without progress for 1 s */
#define DRAIN_MAX_NS 10000000000ull /* the drain's hard limit */
#define KEEPALIVE 60
#define SESSION_EXPIRY 3600      /* v5 with --clean 0 */

enum { MODE_FANOUT, MODE_MANY, MODE_WILDCARD, MODE_IDLE, MODE_CONNECT };
enum { PH_SETUP, PH_WARMUP, PH_WINDOW, PH_DRAIN, PH_DONE };

static const char *const mode_names[] = {"fanout", "many", "wildcard", "idle", "connect"};

typedef struct opts_s {
    const char *host, *label;
    int port, proto, mode, qos, clean, json_only, broker_pid;
    int latency_kernel;    /* --latency kernel (1) or user (0) */
    int tls;               /* --tls (implied by --cafile) */
    const char *cafile, *cert, *key;
    const char *user, *user_prefix, *password; /* CONNECT credentials */
    long users;            /* connect mode: --users */
    long subs, pubs, topics, size, window, conns;
    int conns_set;         /* --conns given (its default depends on the mode) */
    double rate, duration, warmup;
} opts_t;

/* Per-publisher state both threads read. */
typedef struct pub_shared_s {
    _Atomic uint64_t win_first;  /* first seq of the window, NO_SEQ before */
    _Atomic uint64_t win_end;    /* first seq after it, NO_SEQ before */
    char pad[48];
    bench_ring_t ring;           /* copies received per outstanding message */
} pub_shared_t;

typedef struct pub_s {
    bench_conn_t conn;
    uint64_t next_seq;
    double tokens;         /* --rate token bucket */
    uint32_t window;       /* --window, capped by the broker's Receive Maximum */
    uint32_t inflight;     /* QoS 1/2 */
    uint16_t *free_pids;   /* QoS 1/2: stack of unused packet ids */
    uint32_t nfree;
    uint8_t *pid_state;    /* 0 free, 1 awaiting PUBACK/PUBREC, 2 awaiting PUBCOMP */
    uint64_t *pid_seq;     /* QoS 1/2: sequence sent with each packet id */
    uint8_t *payload;      /* template: header then filler */
    char topic[48];
    size_t topic_len;
} pub_t;

typedef struct sub_s {
    bench_conn_t conn;
    uint64_t *last;        /* per publisher: last seq + 1, 0 = none; lazy */
} sub_t;

/* The subscriber thread's side; counters are its alone until the join. */
typedef struct sub_side_s {
    uv_loop_t loop;
    bench_loop_t lp;
    uv_async_t cmd;        /* main -> subscribers: stop */
    uv_thread_t thread;
    sub_t *subs;
    bench_hist_t hist;
    uint64_t received;     /* in-window deliveries */
    uint64_t received_all;
    uint64_t duplicates, order_violations, bad_payloads, unexpected, misrouted, stale;
    uint64_t t_start_ns;   /* CLOCK_REALTIME; messages sent before belong to another run */
    uint64_t qos2_pending; /* PUBRECs sent, PUBREL not yet received */
    uint64_t lost_conns, connect_errors;
    uint64_t late;         /* copies of messages already given up on */
    int progress;          /* a message completed since the last tick */
    _Atomic uint64_t pending_pub;
    _Atomic int setup;     /* 0 running, 1 done, -1 failed */
    _Atomic int stop;
} sub_side_t;

typedef struct bench_s {
    opts_t o;
    uv_loop_t *loop;
    bench_loop_t lp;       /* publishers or idle connections */
    uv_async_t wake;       /* subscribers -> main */
    uv_timer_t phase_timer, tick_timer, drain_timer;
    bench_client_cfg_t ccfg;
    pub_t *pubs;
    pub_shared_t *shared;
    bench_conn_t *idle;
    bench_cx_t *cx;        /* connect mode */
    sub_side_t *ss;
    int phase, status, subs_started;
    uint64_t t0, t1, drain_start, last_tick;
    uint64_t rt_off;       /* CLOCK_REALTIME - uv_hrtime(), read once: send
                              times cost no clock read per message */
    double cpu0, cpu1, bcpu0, bcpu1, steal0, steal1;
    long rss_idle, rss;
    long anon_idle, anon; /* RssAnon: bytes per idle connection */
    uint64_t published, expected, pub_lost_conns, pub_connect_errors, timeouts, nacks;
    char addr_text[300];
} bench_t;

static void finish(bench_t *b);
static void begin_window(bench_t *b);

/* ---- options ----------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs("usage: uvmq-bench [options]\n"
          "  -H, --host ADDR        broker address (127.0.0.1)\n"
          "  -p, --port N           broker port (1883)\n"
          "  -V, --protocol 4|5     MQTT 3.1.1 (4) or 5.0 (5)\n"
          "  -m, --mode MODE        fanout | many | wildcard | idle | connect (fanout)\n"
          "  -s, --subs N           subscriber connections (1)\n"
          "  -P, --pubs N           publisher connections (1)\n"
          "  -t, --topics N         topics for mode many (1)\n"
          "  -q, --qos 0|1|2        QoS of publishes and subscriptions (0)\n"
          "  -S, --size N           payload bytes, >= 24 (64)\n"
          "  -r, --rate R           total publish rate, msgs/s; 0 = max (0)\n"
          "  -W, --window N         messages outstanding per publisher (64)\n"
          "  -d, --duration SECS    measured time (10)\n"
          "  -w, --warmup SECS      unmeasured time before it (2)\n"
          "  -c, --conns N          idle: connections to hold (10000); connect: CONNECTs\n"
          "                         in flight, one per slot (50)\n"
          "      --user NAME        user name of every CONNECT\n"
          "      --users N          connect mode: CONNECT k uses user <prefix><k mod N>\n"
          "      --user-prefix P    that prefix (user)\n"
          "      --password PASS    password of every CONNECT\n"
          "      --broker-pid PID   sample that process's CPU time and RSS\n"
          "      --label TEXT       copied into the JSON line\n"
          "      --clean 0|1        clean session / clean start (1)\n"
          "      --json-only        print only the JSON line\n"
          "      --latency SRC      arrival time: kernel (receive timestamp) | user (kernel)\n"
          "      --tls              connect with TLS (every connection)\n"
          "      --cafile FILE      CA to verify the broker with (implies --tls)\n"
          "      --cert FILE        client certificate (with --key)\n"
          "      --key FILE         its private key\n"
          "  -h, --help\n", f);
}

/* Parses a number in [lo, hi] into *out; returns 0 or -1. */
static int num(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int lnum(const char *s, long lo, long hi, long *out)
{
    double v;

    if (num(s, (double)lo, (double)hi, &v) != 0 || v != (double)(long)v) return -1;
    *out = (long)v;
    return 0;
}

static int parse_mode(const char *s)
{
    int i;

    for (i = 0; i <= MODE_CONNECT; i++)
        if (strcmp(s, mode_names[i]) == 0) return i;
    return -1;
}

static void opts_defaults(opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->label = "";
    o->port = 1883;
    o->proto = 4;
    o->clean = 1;
    o->subs = o->pubs = o->topics = 1;
    o->size = 64;
    o->window = 64;
    o->conns = 10000;
    o->user_prefix = "user";
    o->duration = 10;
    o->warmup = 2;
    o->latency_kernel = 1;
}

/* Applies one option; returns 0, or -1 for a bad value. */
static int apply_opt(opts_t *o, int ch, const char *a)
{
    long l = 0;
    int rc = 0;

    switch (ch) {
    case 'H': o->host = a; break;
    case 'p': rc = lnum(a, 1, 65535, &l); o->port = (int)l; break;
    case 'V': rc = lnum(a, 4, 5, &l); o->proto = (int)l; break;
    case 'm': o->mode = parse_mode(a); rc = o->mode < 0 ? -1 : 0; break;
    case 's': rc = lnum(a, 0, 1000000, &o->subs); break;
    case 'P': rc = lnum(a, 0, 100000, &o->pubs); break;
    case 't': rc = lnum(a, 1, 1000000, &o->topics); break;
    case 'q': rc = lnum(a, 0, 2, &l); o->qos = (int)l; break;
    case 'S': rc = lnum(a, HDR_LEN, 64 << 20, &o->size); break;
    case 'r': rc = num(a, 0, 1e9, &o->rate); break;
    case 'W': rc = lnum(a, 1, 65535, &o->window); break;
    case 'd': rc = num(a, 0.001, 1e6, &o->duration); break;
    case 'w': rc = num(a, 0, 1e6, &o->warmup); break;
    case 'c': rc = lnum(a, 1, 1000000, &o->conns); o->conns_set = 1; break;
    case 1: rc = lnum(a, 1, 1 << 30, &l); o->broker_pid = (int)l; break;
    case 2: o->label = a; break;
    case 3: rc = lnum(a, 0, 1, &l); o->clean = (int)l; break;
    case 4: o->json_only = 1; break;
    case 5:
        o->latency_kernel = strcmp(a, "kernel") == 0 ? 1 : 0;
        rc = o->latency_kernel || strcmp(a, "user") == 0 ? 0 : -1;
        break;
    case 6: o->tls = 1; break;
    case 7: o->cafile = a; o->tls = 1; break;
    case 8: o->cert = a; break;
    case 9: o->key = a; break;
    case 10: o->user = a; break;
    case 11: rc = lnum(a, 1, 100000000, &o->users); break;
    case 12: o->user_prefix = a; break;
    case 13: o->password = a; break;
    default: rc = -1; break;
    }
    return rc;
}

/* The rules of --user, --users and --password; returns 0 or -1 (printed). */
static int check_credentials(const opts_t *o)
{
    const char *why = NULL;

    if (o->user && o->users) why = "--user and --users exclude each other";
    else if (o->users && o->mode != MODE_CONNECT) why = "--users is for the connect mode";
    else if (strlen(o->user_prefix) > 40) why = "--user-prefix is longer than 40 bytes";
    else if (o->password && !o->user && !o->users && o->proto == 4)
        why = "MQTT 3.1.1 sends a password only with a user name (MQTT-3.1.2-22)";
    if (why) fprintf(stderr, "uvmq-bench: %s\n", why);
    return why ? -1 : 0;
}

/* Returns 0 to run, 1 after --help, 2 for bad options (message printed). */
static int parse_opts(opts_t *o, int argc, char **argv)
{
    static const struct option longs[] = {
        {"host", 1, 0, 'H'}, {"port", 1, 0, 'p'}, {"protocol", 1, 0, 'V'},
        {"mode", 1, 0, 'm'}, {"subs", 1, 0, 's'}, {"pubs", 1, 0, 'P'},
        {"topics", 1, 0, 't'}, {"qos", 1, 0, 'q'}, {"size", 1, 0, 'S'},
        {"rate", 1, 0, 'r'}, {"window", 1, 0, 'W'}, {"duration", 1, 0, 'd'},
        {"warmup", 1, 0, 'w'}, {"conns", 1, 0, 'c'}, {"broker-pid", 1, 0, 1},
        {"label", 1, 0, 2}, {"clean", 1, 0, 3}, {"json-only", 0, 0, 4}, {"latency", 1, 0, 5},
        {"tls", 0, 0, 6}, {"cafile", 1, 0, 7}, {"cert", 1, 0, 8}, {"key", 1, 0, 9},
        {"user", 1, 0, 10}, {"users", 1, 0, 11}, {"user-prefix", 1, 0, 12},
        {"password", 1, 0, 13},
        {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int ch;

    opts_defaults(o);
    while ((ch = getopt_long(argc, argv, "H:p:V:m:s:P:t:q:S:r:W:d:w:c:h", longs, NULL)) != -1) {
        if (ch == 'h') {
            usage(stdout);
            return 1;
        }
        if (ch == '?' || apply_opt(o, ch, optarg) != 0) {
            if (ch != '?') fprintf(stderr, "uvmq-bench: bad value '%s'\n", optarg);
            usage(stderr);
            return 2;
        }
    }
    if ((o->cert != NULL) != (o->key != NULL) || (o->cert != NULL && !o->tls)) {
        fprintf(stderr, "uvmq-bench: --cert and --key go together, with --tls or --cafile\n");
        return 2;
    }
    if (o->mode == MODE_CONNECT && !o->conns_set) o->conns = 50;
    if (check_credentials(o) != 0) return 2;
    if (optind < argc || (o->mode == MODE_WILDCARD && o->subs < 1) ||
        (o->mode != MODE_IDLE && o->pubs < 1)) {
        fprintf(stderr, "uvmq-bench: %s\n", optind < argc ? "unexpected argument"
                        : o->pubs < 1 ? "--pubs must be >= 1" : "wildcard needs --subs >= 1");
        return 2;
    }
    return 0;
}

/* ---- topology: who matches what ----------------------------------------- */

/* Number of subscribers that receive each message of publisher i. */
static uint64_t matching_subs(const opts_t *o, long i)
{
    long t = i % o->topics;

    if (o->mode == MODE_FANOUT) return (uint64_t)o->subs;
    if (o->mode == MODE_WILDCARD) return 1;
    return o->subs > t ? (uint64_t)((o->subs - t - 1) / o->topics + 1) : 0;
}

/* Whether subscriber j should receive message seq of publisher i. */
static int sub_matches(const opts_t *o, long j, long i, uint64_t seq)
{
    if (o->mode == MODE_MANY) return j % o->topics == i % o->topics;
    if (o->mode == MODE_WILDCARD) return (uint64_t)j == ((uint64_t)i + seq) % (uint64_t)o->subs;
    return 1;
}

/* Writes v in decimal at p; returns the number of digits. */
static size_t put_uint(char *p, uint64_t v)
{
    char tmp[24];
    size_t n = 0, i;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (i = 0; i < n; i++) p[i] = tmp[n - 1 - i];
    return n;
}

/* ---- subscribers (their own thread) ------------------------------------- */

/* Accounts one delivered payload header h: order, duplicates, the
 * publisher's completion ring, and (inside the window) the count and the
 * latency. */
static void sub_record(sub_side_t *ss, sub_t *s, const uint8_t *h, uint64_t now,
                       uint64_t rx, pub_shared_t *shared, const opts_t *o)
{
    uint32_t pi, magic;
    uint64_t seq, sent, first, end;
    int rc;

    memcpy(&pi, h, 4);
    memcpy(&seq, h + 4, 8);
    memcpy(&sent, h + 12, 8);
    memcpy(&magic, h + 20, 4);
    if (magic != MAGIC || pi >= (uint32_t)o->pubs) {
        ss->bad_payloads++;
        return;
    }
    if (sent < ss->t_start_ns) { /* an earlier run's message, late: same topics */
        ss->stale++;
        return;
    }
    if (!sub_matches(o, s->conn.index, pi, seq)) {
        ss->misrouted++;
        return;
    }
    if (!s->last) s->last = xcalloc((size_t)o->pubs, sizeof *s->last);
    ss->received_all++;
    if (s->last[pi] == seq + 1) { /* the same message again */
        ss->duplicates++;
        return;
    }
    if (s->last[pi] > seq + 1) ss->order_violations++;
    else s->last[pi] = seq + 1;
    rc = bench_ring_count(&shared[pi].ring, seq, now);
    if (rc > 0) ss->progress = 1;
    if (rc < 0) ss->late++;
    /* Relaxed is enough: the publisher stores a bound before the write()
     * of the first message past it, and this load follows the read() that
     * brought that message; the two syscalls order them. */
    first = atomic_load_explicit(&shared[pi].win_first, memory_order_relaxed);
    end = atomic_load_explicit(&shared[pi].win_end, memory_order_relaxed);
    if (seq < first || seq >= end) return;
    ss->received++;
    bench_hist_record(&ss->hist, rx > sent ? rx - sent : 0); /* both CLOCK_REALTIME */
}

static void sub_on_packet(bench_conn_t *c, const bench_pkt_t *p, uint64_t now)
{
    bench_t *b = c->lp->data;
    sub_side_t *ss = b->ss;

    if (p->type == BENCH_PUBREL) {
        bench_conn_send_ack(c, BENCH_PUBCOMP, p->pid);
        if (ss->qos2_pending) ss->qos2_pending--;
        return;
    }
    if (p->type != BENCH_PUBLISH) {
        ss->unexpected++;
        return;
    }
    if (p->qos == 1) bench_conn_send_ack(c, BENCH_PUBACK, p->pid);
    if (p->qos == 2) {
        bench_conn_send_ack(c, BENCH_PUBREC, p->pid);
        ss->qos2_pending++;
    }
    if (p->payload_len < HDR_LEN) ss->bad_payloads++;
    else sub_record(ss, c->data, p->payload, now, c->lp->rx_real_ns, b->shared, &b->o);
}

static void sub_on_tick(bench_loop_t *lp)
{
    bench_t *b = lp->data;
    sub_side_t *ss = b->ss;

    atomic_store_explicit(&ss->pending_pub, ss->qos2_pending, memory_order_relaxed);
    if (ss->progress) {
        ss->progress = 0;
        uv_async_send(&b->wake);
    }
}

/* Text for a connection failure: a libuv code, one of ours, or 0 (the
 * broker broke the protocol). */
static const char *why(int err)
{
    if (err == 0) return "protocol";
    return err > UVMQ_EBASE ? uv_strerror(err) : err_str(err);
}

static void sub_on_fail(bench_conn_t *c, const char *what, int err)
{
    bench_t *b = c->lp->data;
    int in_setup = atomic_load(&b->ss->setup) == 0;

    if (in_setup && b->ss->connect_errors++ == 0)
        fprintf(stderr, "uvmq-bench: subscriber %s to %s: %s (%s)\n", c->client_id,
                b->addr_text, what, why(err));
    if (!in_setup && !atomic_load(&b->ss->stop) && b->ss->lost_conns++ < 5)
        fprintf(stderr, "uvmq-bench: subscriber %s lost: %s (%s)\n", c->client_id, what,
                why(err));
}

static void sub_on_setup_done(bench_loop_t *lp)
{
    bench_t *b = lp->data;

    atomic_store(&b->ss->setup, lp->nfailed ? -1 : 1);
    uv_async_send(&b->wake);
}

static void sub_on_ready(bench_conn_t *c)
{
    (void)c;
}

static void on_sub_cmd(uv_async_t *h)
{
    sub_side_t *ss = h->data;

    if (!atomic_load(&ss->stop)) return;
    bench_loop_close(&ss->lp);
    uv_close((uv_handle_t *)&ss->cmd, NULL);
}

static void sub_thread(void *arg)
{
    sub_side_t *ss = arg;

    bench_loop_connect(&ss->lp);
    uv_run(&ss->loop, UV_RUN_DEFAULT);
}

/* Prepares the subscriber side and starts its thread; returns 0 or a libuv code. */
static int subs_start(bench_t *b)
{
    sub_side_t *ss = xcalloc(1, sizeof *ss);
    const opts_t *o = &b->o;
    bench_client_cfg_t cfg = b->ccfg;
    long j;
    int rc;

    b->ss = ss;
    ss->t_start_ns = bench_realtime_ns();
    bench_hist_init(&ss->hist);
    rc = uv_loop_init(&ss->loop);
    if (rc != 0) return rc;
    cfg.cbs.on_ready = sub_on_ready;
    cfg.cbs.on_packet = sub_on_packet;
    cfg.cbs.on_fail = sub_on_fail;
    cfg.cbs.on_setup_done = sub_on_setup_done;
    cfg.cbs.on_tick = sub_on_tick;
    cfg.rx_timestamps = o->latency_kernel;
    bench_loop_init(&ss->lp, &ss->loop, &cfg);
    ss->lp.data = b;
    uv_async_init(&ss->loop, &ss->cmd, on_sub_cmd);
    ss->cmd.data = ss;
    ss->subs = xcalloc((size_t)o->subs, sizeof *ss->subs);
    for (j = 0; j < o->subs; j++) {
        bench_conn_t *c = &ss->subs[j].conn;
        c->index = (uint32_t)j;
        c->data = &ss->subs[j];
        snprintf(c->client_id, sizeof c->client_id, "bs%d-%ld", (int)getpid(), j);
        if (o->mode == MODE_WILDCARD)
            snprintf(c->filter, sizeof c->filter, "bench/%ld/+", j);
        else
            snprintf(c->filter, sizeof c->filter, "bench/%ld",
                     o->mode == MODE_MANY ? j % o->topics : 0);
        bench_loop_add(&ss->lp, c);
    }
    rc = uv_thread_create(&ss->thread, sub_thread, ss);
    b->subs_started = rc == 0;
    return rc;
}

/* Stops the subscriber thread (DISCONNECT, close) and joins it. */
static void subs_stop(bench_t *b)
{
    sub_side_t *ss = b->ss;

    if (!b->subs_started) return;
    b->subs_started = 0;
    atomic_store(&ss->stop, 1);
    uv_async_send(&ss->cmd);
    uv_thread_join(&ss->thread);
}

static void subs_free(bench_t *b)
{
    sub_side_t *ss = b->ss;
    long j;

    if (!ss) return;
    for (j = 0; j < b->o.subs && ss->subs; j++) free(ss->subs[j].last);
    free(ss->subs);
    if (ss->lp.loop) { /* the loop was initialised */
        bench_loop_dispose(&ss->lp);
        uv_loop_close(&ss->loop);
    }
    free(ss);
    b->ss = NULL;
}

/* ---- publishers (main thread) ------------------------------------------- */

/* Messages of p still outstanding: not yet received by every matching
 * subscriber (nor given up on), or, QoS 1/2, not yet acknowledged. */
static uint64_t pub_outstanding(bench_t *b, pub_t *p)
{
    uint64_t n = bench_ring_outstanding(&b->shared[p->conn.index].ring);

    return p->inflight > n ? p->inflight : n;
}

/* Encodes the next message of p into its output; now is the uv_hrtime()
 * of the callback that sends it (all of one callback's messages leave in
 * one write). */
static void pub_send_one(bench_t *b, pub_t *p, uint64_t now)
{
    uint32_t idx = p->conn.index, magic = MAGIC;
    uint64_t sent = now + b->rt_off;
    uint16_t pid = 0;
    size_t len;
    int n;

    if (b->o.mode == MODE_WILDCARD) { /* bench/<k>/x, k cycling over the subscribers */
        p->topic_len = 6 + put_uint(p->topic + 6, (idx + p->next_seq) % (uint64_t)b->o.subs);
        memcpy(p->topic + p->topic_len, "/x", 2);
        p->topic_len += 2;
    }
    bench_ring_arm(&b->shared[idx].ring, now);
    if (b->o.qos) {
        pid = p->free_pids[--p->nfree];
        p->pid_state[pid] = 1;
        p->pid_seq[pid] = p->next_seq;
        p->inflight++;
    }
    memcpy(p->payload, &idx, 4);
    memcpy(p->payload + 4, &p->next_seq, 8);
    memcpy(p->payload + 12, &sent, 8);
    memcpy(p->payload + 20, &magic, 4);
    len = bench_mqtt_publish_len(b->o.proto, b->o.qos, p->topic_len, (size_t)b->o.size);
    n = bench_mqtt_encode_publish(bench_conn_reserve(&p->conn, len), len, b->o.proto,
                                  b->o.qos, pid, p->topic, p->topic_len, p->payload,
                                  (size_t)b->o.size);
    bench_conn_commit(&p->conn, (size_t)n);
    p->next_seq++;
}

/* Publishes while the window, the rate and the output buffer allow. The
 * ring is reaped only when the window looks full: its head slot is on a
 * cache line the subscriber thread writes. */
static void pub_fill(bench_t *b, pub_t *p, uint64_t now)
{
    bench_ring_t *ring = &b->shared[p->conn.index].ring;

    if ((b->phase != PH_WARMUP && b->phase != PH_WINDOW) ||
        p->conn.state != BENCH_CONN_READY)
        return;
    while (bench_conn_pending(&p->conn) < PUB_HIGH_WATER &&
           (b->o.rate <= 0 || p->tokens >= 1)) {
        if (pub_outstanding(b, p) >= p->window && (bench_ring_reap(ring) == 0 ||
                                                    pub_outstanding(b, p) >= p->window))
            break;
        pub_send_one(b, p, now);
        if (b->o.rate > 0) p->tokens -= 1;
    }
}

/* Frees packet id pid and publishes more. A publish the broker refused
 * (reason >= 0x80) reaches no subscriber: its ring slot completes at once. */
static void pub_release(bench_t *b, pub_t *p, uint16_t pid, int refused, uint64_t now)
{
    if (refused) {
        b->nacks++;
        bench_ring_cancel(&b->shared[p->conn.index].ring, p->pid_seq[pid]);
    }
    p->pid_state[pid] = 0;
    p->free_pids[p->nfree++] = pid;
    p->inflight--;
    pub_fill(b, p, now);
}

static void pub_on_packet(bench_conn_t *c, const bench_pkt_t *k, uint64_t now)
{
    bench_t *b = c->lp->data;
    pub_t *p = c->data;
    uint8_t st = k->pid <= b->o.window ? p->pid_state[k->pid] : 0;

    if (k->type == BENCH_PUBACK && st == 1 && b->o.qos == 1) {
        pub_release(b, p, k->pid, k->reason >= 0x80, now);
    } else if (k->type == BENCH_PUBREC && st == 1 && b->o.qos == 2) {
        if (k->reason >= 0x80) { /* refused: the exchange ends here */
            pub_release(b, p, k->pid, 1, now);
        } else {
            p->pid_state[k->pid] = 2;
            bench_conn_send_ack(c, BENCH_PUBREL, k->pid);
        }
    } else if (k->type == BENCH_PUBCOMP && st == 2) {
        pub_release(b, p, k->pid, 0, now);
    } else if (k->type != BENCH_PUBLISH) {
        log_warn("publisher %s: unexpected packet type %d (pid %u)", c->client_id,
                 k->type, k->pid);
    }
}

static void pub_on_writable(bench_conn_t *c)
{
    pub_fill(c->lp->data, c->data, uv_hrtime());
}

static void pub_on_ready(bench_conn_t *c)
{
    bench_t *b = c->lp->data;
    pub_t *p = c->data;

    if (b->o.qos && c->receive_max < p->window) p->window = c->receive_max;
}

static void pub_on_fail(bench_conn_t *c, const char *what, int err)
{
    bench_t *b = c->lp->data;
    int in_setup = b->phase == PH_SETUP;
    uint64_t *count = in_setup ? &b->pub_connect_errors : &b->pub_lost_conns;

    if ((*count)++ == 0 && b->phase < PH_DONE)
        fprintf(stderr, "uvmq-bench: %s %s to %s: %s (%s)\n",
                b->o.mode == MODE_IDLE ? "connection" : "publisher", c->client_id,
                b->addr_text, what, why(err));
}

static void pubs_create(bench_t *b)
{
    const opts_t *o = &b->o;
    long i;
    uint32_t k;

    b->pubs = xcalloc((size_t)o->pubs, sizeof *b->pubs);
    for (i = 0; i < o->pubs; i++) {
        pub_t *p = &b->pubs[i];
        p->conn.index = (uint32_t)i;
        p->conn.data = p;
        p->window = (uint32_t)o->window;
        p->payload = xmalloc((size_t)o->size);
        memset(p->payload, 'x', (size_t)o->size);
        p->pid_state = xcalloc((size_t)o->window + 1, 1);
        p->pid_seq = xcalloc((size_t)o->window + 1, sizeof *p->pid_seq);
        p->free_pids = xmalloc((size_t)o->window * sizeof *p->free_pids);
        for (k = 0; k < (uint32_t)o->window; k++) p->free_pids[k] = (uint16_t)(o->window - k);
        p->nfree = (uint32_t)o->window;
        p->topic_len = (size_t)snprintf(p->topic, sizeof p->topic, "bench/%ld",
                                        o->mode == MODE_MANY ? i % o->topics : 0);
        snprintf(p->conn.client_id, sizeof p->conn.client_id, "bp%d-%ld", (int)getpid(), i);
        bench_loop_add(&b->lp, &p->conn);
    }
}

static void pubs_free(bench_t *b)
{
    long i;

    for (i = 0; b->pubs && i < b->o.pubs; i++) {
        free(b->pubs[i].payload);
        free(b->pubs[i].pid_state);
        free(b->pubs[i].pid_seq);
        free(b->pubs[i].free_pids);
    }
    free(b->pubs);
    b->pubs = NULL;
}

/* ---- phases (main thread) ------------------------------------------------ */

static double secs(uint64_t ns)
{
    return (double)ns / 1e9;
}

/* Tick (1 ms with --rate, else 20 ms): token bucket refill, and messages
 * no copy of arrived for STALL_NS are given up on (window_timeouts). */
static void on_tick_timer(uv_timer_t *t)
{
    bench_t *b = t->data;
    uint64_t now = uv_hrtime();
    double per_pub = b->o.rate / (double)b->o.pubs;
    double cap = per_pub / 100 > 1 ? per_pub / 100 : 1; /* at most 10 ms of burst */
    uint64_t expired;
    long i;

    for (i = 0; i < b->o.pubs; i++) {
        pub_t *p = &b->pubs[i];
        if (b->o.rate > 0) p->tokens += per_pub * secs(now - b->last_tick);
        if (p->tokens > cap) p->tokens = cap;
        expired = bench_ring_expire(&b->shared[i].ring, now, STALL_NS);
        if (b->phase == PH_WINDOW) b->timeouts += expired; /* not in the warm-up */
        pub_fill(b, p, now);
    }
    b->last_tick = now;
}

/* Whether every message is complete or given up on and every QoS 1/2
 * exchange, the subscribers' included, has ended. */
static int drained(bench_t *b)
{
    long i;

    for (i = 0; i < b->o.pubs; i++) {
        bench_ring_reap(&b->shared[i].ring);
        if (bench_ring_outstanding(&b->shared[i].ring) || b->pubs[i].inflight) return 0;
    }
    return !b->ss || atomic_load_explicit(&b->ss->pending_pub, memory_order_relaxed) == 0;
}

/* 10 ms during the drain: the stall guard keeps running, so a lost copy
 * ends the wait STALL_NS after the last progress. */
static void on_drain_timer(uv_timer_t *t)
{
    bench_t *b = t->data;
    uint64_t now = uv_hrtime();
    long i;

    for (i = 0; i < b->o.pubs; i++)
        b->timeouts += bench_ring_expire(&b->shared[i].ring, now, STALL_NS);
    if (drained(b) || now - b->drain_start >= DRAIN_MAX_NS) finish(b);
}

static void sample_start(bench_t *b)
{
    b->t0 = uv_hrtime();
    b->cpu0 = bench_self_cpu_s();
    b->steal0 = bench_steal_s();
    if (b->o.broker_pid) b->bcpu0 = bench_proc_cpu_s(b->o.broker_pid);
}

static void sample_end(bench_t *b)
{
    b->t1 = uv_hrtime();
    b->cpu1 = bench_self_cpu_s();
    b->steal1 = bench_steal_s();
    if (b->o.broker_pid) {
        b->bcpu1 = bench_proc_cpu_s(b->o.broker_pid);
        b->rss = bench_proc_rss_kb(b->o.broker_pid);
        b->anon = bench_proc_anon_kb(b->o.broker_pid);
    }
}

static void end_window(bench_t *b);

/* Warm-up over: begin_window; window over: end_window. */
static void on_phase_timer(uv_timer_t *t)
{
    bench_t *b = t->data;

    if (b->phase == PH_WARMUP) begin_window(b);
    else if (b->phase == PH_WINDOW) end_window(b);
}

/* Window start: every publisher's next sequence number is its first. */
static void begin_window(bench_t *b)
{
    uint64_t ms = (uint64_t)(b->o.duration * 1000 + 0.5);
    long i;

    for (i = 0; b->pubs && i < b->o.pubs; i++)
        atomic_store(&b->shared[i].win_first, b->pubs[i].next_seq);
    if (b->cx) b->cx->counting = 1;
    sample_start(b);
    b->phase = PH_WINDOW;
    uv_update_time(b->loop); /* the loop's cached time may lag under load */
    uv_timer_start(&b->phase_timer, on_phase_timer, ms ? ms : 1, 0);
}

/* Window end: publishing stops; expected deliveries are now known. */
static void end_window(bench_t *b)
{
    long i;

    if (b->cx) b->cx->counting = 0;
    sample_end(b);
    if (b->cx && b->cx->answered == 0) {
        fprintf(stderr, "uvmq-bench: no CONNACK in the whole run\n");
        b->status = 1;
    }
    if (b->o.mode == MODE_IDLE || b->o.mode == MODE_CONNECT) {
        finish(b);
        return;
    }
    b->phase = PH_DRAIN;
    for (i = 0; i < b->o.pubs; i++) {
        uint64_t first = atomic_load(&b->shared[i].win_first);
        uint64_t n = b->pubs[i].next_seq - first;
        atomic_store(&b->shared[i].win_end, b->pubs[i].next_seq);
        b->published += n;
        b->expected += n * matching_subs(&b->o, i);
    }
    uv_timer_stop(&b->tick_timer);
    b->drain_start = uv_hrtime();
    uv_update_time(b->loop);
    uv_timer_start(&b->drain_timer, on_drain_timer, 10, 10);
}

static void start_publishing(bench_t *b)
{
    uint64_t ms = (uint64_t)(b->o.warmup * 1000 + 0.5);
    long i;

    b->phase = PH_WARMUP;
    b->last_tick = uv_hrtime();
    if (b->pubs) {
        for (i = 0; i < b->o.pubs; i++) b->pubs[i].tokens = 1;
        /* 1 ms token-bucket tick with --rate; otherwise only the stall
         * check runs, every 20 ms, to keep the generator's CPU low. */
        uint64_t tick = b->o.rate > 0 ? 1 : 20;
        uv_timer_start(&b->tick_timer, on_tick_timer, tick, tick);
        for (i = 0; i < b->o.pubs; i++) pub_fill(b, &b->pubs[i], b->last_tick);
    }
    uv_update_time(b->loop);
    if (ms == 0) begin_window(b);
    else uv_timer_start(&b->phase_timer, on_phase_timer, ms, 0);
}

/* ---- set-up and shutdown (main thread) ------------------------------------ */

static void pub_setup_done(bench_loop_t *lp)
{
    bench_t *b = lp->data;

    if (b->phase != PH_SETUP) return;
    if (lp->nfailed && (b->o.mode != MODE_IDLE || lp->nready == 0)) {
        b->status = 1;
        finish(b);
        return;
    }
    start_publishing(b);
}

static void connect_pubs(bench_t *b)
{
    pubs_create(b);
    bench_loop_connect(&b->lp);
}

/* Subscribers -> main: set-up finished, or messages completed. */
static void on_wake(uv_async_t *h)
{
    bench_t *b = h->data;
    long i;

    if (b->phase == PH_SETUP && !b->pubs && b->ss) {
        int st = atomic_load(&b->ss->setup);
        if (st == 1) connect_pubs(b);
        if (st == -1) b->status = 1;
        if (st == -1) finish(b);
        return;
    }
    uint64_t now = uv_hrtime();
    for (i = 0; b->pubs && i < b->o.pubs; i++) pub_fill(b, &b->pubs[i], now);
}

static void idle_on_ready(bench_conn_t *c)
{
    (void)c;
}

static void idle_on_packet(bench_conn_t *c, const bench_pkt_t *p, uint64_t now)
{
    (void)now;
    log_warn("connection %s: unexpected packet type %d", c->client_id, p->type);
}

static void idle_start(bench_t *b)
{
    long k;

    if (b->o.broker_pid) {
        b->rss_idle = bench_proc_rss_kb(b->o.broker_pid);
        b->anon_idle = bench_proc_anon_kb(b->o.broker_pid);
    }
    b->idle = xcalloc((size_t)b->o.conns, sizeof *b->idle);
    for (k = 0; k < b->o.conns; k++) {
        bench_conn_t *c = &b->idle[k];
        c->index = (uint32_t)k;
        snprintf(c->client_id, sizeof c->client_id, "bi%d-%ld", (int)getpid(), k);
        bench_loop_add(&b->lp, c);
    }
    bench_loop_connect(&b->lp);
}

/* Ends the run: stops the subscriber thread, closes every handle here. */
static void finish(bench_t *b)
{
    if (b->phase == PH_DONE) return;
    if (b->phase != PH_DRAIN && b->phase != PH_WINDOW) b->status = b->status ? b->status : 1;
    b->phase = PH_DONE;
    subs_stop(b);
    if (b->cx) bench_cx_stop(b->cx);
    bench_loop_close(&b->lp);
    uv_close((uv_handle_t *)&b->wake, NULL);
    uv_close((uv_handle_t *)&b->phase_timer, NULL);
    uv_close((uv_handle_t *)&b->tick_timer, NULL);
    uv_close((uv_handle_t *)&b->drain_timer, NULL);
}

/* ---- report --------------------------------------------------------------- */

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20) printf("\\u%04x", ch);
        else putchar(ch);
    }
    putchar('"');
}

/* Everything the report prints, computed once. */
typedef struct result_s {
    double dur, gen_cpu, bcpu, steal, p50, p90, p99, p999, max; /* steal < 0: unknown */
    uint64_t received, dups, order, connect_errors;
    long conns_held;
} result_t;

static void compute(const bench_t *b, result_t *r)
{
    const sub_side_t *ss = b->ss;
    const bench_hist_t *h = ss ? &ss->hist : b->cx ? &b->cx->hist : NULL;

    memset(r, 0, sizeof *r);
    r->dur = secs(b->t1 - b->t0);
    r->gen_cpu = b->cpu1 - b->cpu0;
    r->bcpu = b->bcpu1 - b->bcpu0;
    r->steal = b->steal0 >= 0 && b->steal1 >= 0 ? b->steal1 - b->steal0 : -1;
    r->received = ss ? ss->received : 0;
    r->dups = ss ? ss->duplicates : 0;
    r->order = ss ? ss->order_violations : 0;
    r->connect_errors = b->pub_connect_errors + (ss ? ss->connect_errors : 0) +
                        (b->cx ? b->cx->errors : 0);
    r->conns_held = b->o.mode == MODE_IDLE ? (long)b->lp.nready : 0;
    if (h && h->count) {
        r->p50 = bench_hist_percentile(h, 50);
        r->p90 = bench_hist_percentile(h, 90);
        r->p99 = bench_hist_percentile(h, 99);
        r->p999 = bench_hist_percentile(h, 99.9);
        r->max = bench_hist_max_us(h);
    }
}

/* Rows of every mode: CPU of both sides, steal, connections. */
static void print_common_rows(const bench_t *b, const result_t *r)
{
    const sub_side_t *ss = b->ss;

    printf("  %-22s %.3f s\n", "generator CPU", r->gen_cpu);
    if (r->steal >= 0)
        printf("  %-22s %.2f s over all CPUs (%.1f %% of the window)\n", "steal (hypervisor)",
               r->steal, 100.0 * r->steal / (r->dur * (double)sysconf(_SC_NPROCESSORS_ONLN)));
    if (b->o.broker_pid)
        printf("  %-22s %.3f s (%.0f %s per CPU s), RSS %ld KiB\n", "broker CPU", r->bcpu,
               r->bcpu > 0 ? (double)(b->cx ? b->cx->ok : r->received) / r->bcpu : 0.0,
               b->cx ? "connects" : "deliveries", b->rss);
    printf("  %-22s %" PRIu64 " connect errors, %" PRIu64 " lost connections\n", "connections",
           r->connect_errors, b->pub_lost_conns + (ss ? ss->lost_conns : 0));
}

/* The connect mode's rows: CONNACKs, refusals by code, their latency. */
static void print_connect_rows(const bench_t *b, const result_t *r)
{
    const bench_cx_t *cx = b->cx;
    int code;

    printf("  %-22s %" PRIu64 " (%.0f connects/s)\n", "CONNACKs accepted", cx->ok,
           (double)cx->ok / r->dur);
    printf("  %-22s %" PRIu64, "CONNACKs refused", cx->refused_total);
    for (code = 1; code < 256; code++)
        if (cx->refused[code]) printf("  0x%02x: %" PRIu64, code, cx->refused[code]);
    printf("\n  %-22s p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
           "CONNECT->CONNACK (us)", r->p50, r->p90, r->p99, r->p999, r->max);
}

static void print_table(const bench_t *b, const result_t *r)
{
    const opts_t *o = &b->o;
    const sub_side_t *ss = b->ss;

    if (b->cx)
        printf("uvmq-bench connect -> %s%s  MQTT %s  conns %ld  %s %s%s%s\n", b->addr_text,
               o->tls ? " (TLS)" : "", o->proto == 5 ? "5.0" : "3.1.1", o->conns,
               o->users ? "users" : "user", o->users ? o->user_prefix : o->user ? o->user : "-",
               o->label[0] ? "  label " : "", o->label);
    else
        printf("uvmq-bench %s -> %s%s  MQTT %s  QoS %d  subs %ld  pubs %ld  size %ld%s%s\n",
               mode_names[o->mode], b->addr_text, o->tls ? " (TLS)" : "",
               o->proto == 5 ? "5.0" : "3.1.1", o->qos, o->mode == MODE_IDLE ? 0 : o->subs,
               o->mode == MODE_IDLE ? 0 : o->pubs, o->size, o->label[0] ? "  label " : "",
               o->label);
    printf("  %-22s %.3f s\n", "measured window", r->dur);
    if (b->cx) {
        print_connect_rows(b, r);
        print_common_rows(b, r);
        return;
    }
    if (o->mode == MODE_IDLE) printf("  %-22s %ld\n", "connections held", r->conns_held);
    printf("  %-22s %" PRIu64 " (%.0f msgs/s)\n", "published", b->published,
           (double)b->published / r->dur);
    printf("  %-22s %" PRIu64 "\n", "expected deliveries", b->expected);
    printf("  %-22s %" PRIu64 " (%.0f deliveries/s)\n", "received", r->received,
           (double)r->received / r->dur);
    printf("  %-22s %" PRId64 " / %" PRIu64 " / %" PRIu64 "\n", "lost / dup / order",
           (int64_t)(b->expected - r->received), r->dups, r->order);
    printf("  %-22s p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
           o->latency_kernel ? "latency (us, kernel)" : "latency (us, user)", r->p50, r->p90,
           r->p99, r->p999, r->max);
    if (ss && o->latency_kernel && ss->lp.rx_unstamped)
        printf("  %-22s %" PRIu64 " of %" PRIu64 " reads timed in user space\n", "no kernel stamp",
               ss->lp.rx_unstamped, ss->lp.rx_unstamped + ss->lp.rx_stamped);
    print_common_rows(b, r);
    if (ss && (ss->bad_payloads || ss->unexpected || ss->misrouted || ss->stale))
        printf("  %-22s %" PRIu64 " bad payloads, %" PRIu64 " misrouted, %" PRIu64
               " unexpected packets, %" PRIu64 " from an earlier run\n", "anomalies",
               ss->bad_payloads, ss->misrouted, ss->unexpected, ss->stale);
    if (b->timeouts || b->nacks || (ss && ss->late))
        printf("  %-22s %" PRIu64 " window timeouts, %" PRIu64 " late copies, %" PRIu64
               " refused publishes\n", "flow", b->timeouts, ss ? ss->late : 0, b->nacks);
}

static void print_broker_json(const bench_t *b, const result_t *r)
{
    const opts_t *o = &b->o;

    if (!o->broker_pid) {
        printf("\"broker_cpu_s\":null,\"deliveries_per_broker_cpu_s\":null,"
               "\"broker_rss_kb\":null,\"broker_rss_idle_kb\":null,\"rss_per_conn_b\":null,");
        return;
    }
    printf("\"broker_cpu_s\":%.3f,", r->bcpu);
    if (r->bcpu > 0 && !b->cx)
        printf("\"deliveries_per_broker_cpu_s\":%.1f,", (double)r->received / r->bcpu);
    else printf("\"deliveries_per_broker_cpu_s\":null,");
    printf("\"broker_rss_kb\":%ld,", b->rss);
    if (o->mode == MODE_IDLE && r->conns_held > 0)
        printf("\"broker_rss_idle_kb\":%ld,\"broker_anon_kb\":%ld,\"broker_anon_idle_kb\":%ld,"
               "\"rss_per_conn_b\":%.1f,",
               b->rss_idle, b->anon, b->anon_idle,
               (double)(b->anon - b->anon_idle) * 1024.0 / (double)r->conns_held);
    else
        printf("\"broker_rss_idle_kb\":null,\"rss_per_conn_b\":null,");
}

/* The connect mode's fields: CONNACKs accepted, per second and per broker
 * CPU-second, refusals by code ("0x86"), and the slots and users. */
static void print_connect_json(const bench_t *b, const result_t *r)
{
    const bench_cx_t *cx = b->cx;
    const char *sep = "";
    int code;

    printf("\"conns\":%ld,\"users\":%ld,\"connects_ok\":%" PRIu64 ",\"connects_ok_per_s\":%.1f,",
           b->o.conns, b->o.users ? b->o.users : b->o.user ? 1 : 0, cx->ok,
           (double)cx->ok / r->dur);
    if (b->o.broker_pid && r->bcpu > 0)
        printf("\"connects_per_broker_cpu_s\":%.1f,", (double)cx->ok / r->bcpu);
    else
        printf("\"connects_per_broker_cpu_s\":null,");
    printf("\"refused_total\":%" PRIu64 ",\"refused\":{", cx->refused_total);
    for (code = 1; code < 256; code++) {
        if (!cx->refused[code]) continue;
        printf("%s\"0x%02x\":%" PRIu64, sep, code, cx->refused[code]);
        sep = ",";
    }
    printf("},");
}

static void print_json(const bench_t *b, const result_t *r)
{
    const opts_t *o = &b->o;
    int idle = o->mode == MODE_IDLE || o->mode == MODE_CONNECT; /* no subs or pubs */

    printf("{\"label\":");
    json_str(o->label);
    printf(",\"mode\":\"%s\",\"protocol\":%d,\"tls\":%s,\"qos\":%d,\"subs\":%ld,\"pubs\":%ld,"
           "\"size\":%ld,",
           mode_names[o->mode], o->proto, o->tls ? "true" : "false", o->qos, idle ? 0 : o->subs,
           idle ? 0 : o->pubs, o->size);
    printf("\"duration_s\":%.3f,\"published\":%" PRIu64 ",\"published_per_s\":%.1f,", r->dur,
           b->published, (double)b->published / r->dur);
    printf("\"expected\":%" PRIu64 ",\"received\":%" PRIu64 ",\"deliveries_per_s\":%.1f,",
           b->expected, r->received, (double)r->received / r->dur);
    printf("\"lost\":%" PRId64 ",\"duplicates\":%" PRIu64 ",\"order_violations\":%" PRIu64 ",",
           (int64_t)(b->expected - r->received), r->dups, r->order);
    printf("\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f},",
           r->p50, r->p90, r->p99, r->p999, r->max);
    printf("\"latency_source\":\"%s\",",
           b->cx ? "connack" : o->latency_kernel ? "kernel" : "user");
    if (b->cx) print_connect_json(b, r);
    printf("\"gen_cpu_s\":%.3f,", r->gen_cpu);
    if (r->steal >= 0) printf("\"steal_s\":%.2f,", r->steal);
    else printf("\"steal_s\":null,");
    print_broker_json(b, r);
    printf("\"connect_errors\":%" PRIu64 ",\"window_timeouts\":%" PRIu64 "}\n",
           r->connect_errors, b->timeouts);
}

/* ---- main ------------------------------------------------------------------ */

/* Raises the open-file limit to the hard limit (10,000 connections). */
static void raise_nofile(long need)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rlim_t)need + 64 > rl.rlim_cur)
        fprintf(stderr, "uvmq-bench: warning: open-file limit %lu is below the %ld "
                "connections asked for\n", (unsigned long)rl.rlim_cur, need);
}

/* Resolves host:port into the client config; returns 0 or -1. */
static int resolve(bench_t *b)
{
    struct addrinfo hints, *res = NULL;
    char port[16];
    int rc;

    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(port, sizeof port, "%d", b->o.port);
    rc = getaddrinfo(b->o.host, port, &hints, &res);
    snprintf(b->addr_text, sizeof b->addr_text, strchr(b->o.host, ':') ? "[%s]:%d" : "%s:%d",
             b->o.host, b->o.port);
    if (rc != 0) {
        fprintf(stderr, "uvmq-bench: cannot resolve broker address %s: %s\n", b->addr_text,
                gai_strerror(rc));
        return -1;
    }
    memcpy(&b->ccfg.addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

/* The client TLS context of --tls / --cafile / --cert / --key: the
 * broker's certificate is verified against --cafile (else the system's
 * CAs) and must name --host. Returns 0 or -1 (message printed). */
static int setup_tls(bench_t *b)
{
    const opts_t *o = &b->o;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    int ok = ctx != NULL;

    if (ok && o->cafile) ok = SSL_CTX_load_verify_locations(ctx, o->cafile, NULL) == 1;
    else if (ok) ok = SSL_CTX_set_default_verify_paths(ctx) == 1;
    if (ok && o->cert) ok = SSL_CTX_use_certificate_chain_file(ctx, o->cert) == 1 &&
                            SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) == 1;
    if (!ok) {
        unsigned long e = ERR_peek_last_error();
        fprintf(stderr, "uvmq-bench: TLS set-up: %s\n",
                e ? ERR_reason_error_string(e) : "cannot create a context");
        SSL_CTX_free(ctx);
        return -1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    b->ccfg.tls = ctx;
    snprintf(b->ccfg.tls_host, sizeof b->ccfg.tls_host, "%s", o->host);
    return 0;
}

static void setup_config(bench_t *b)
{
    const opts_t *o = &b->o;
    bench_client_cfg_t *cfg = &b->ccfg;

    cfg->proto = o->proto;
    cfg->clean = o->clean;
    cfg->keepalive = KEEPALIVE;
    cfg->session_expiry = (!o->clean && o->proto == 5) ? SESSION_EXPIRY : 0;
    cfg->sub_qos = o->qos;
    cfg->max_packet = (size_t)o->size + 1024;
    cfg->max_in_flight = 500;
    cfg->user = o->user;
    cfg->password = o->password;
    cfg->quiet_refusals = o->mode == MODE_CONNECT; /* counted by code instead */
}

/* The connect mode: every slot starts cycling now; the warm-up covers the
 * ramp (lp paces the first CONNECTs). */
static void connect_start(bench_t *b)
{
    bench_cx_cfg_t cfg = {b->o.conns, b->o.user, b->o.user_prefix, b->o.users};

    b->cx = xmalloc(sizeof *b->cx);
    bench_cx_start(b->cx, &b->lp, &cfg);
    start_publishing(b);
}

/* Creates the main loop's handles and starts the first step of the run. */
static int run(bench_t *b)
{
    bench_client_cfg_t cfg = b->ccfg;
    int idle = b->o.mode == MODE_IDLE;
    int rc = 0;

    b->loop = uv_default_loop();
    b->shared = xcalloc((size_t)(b->o.pubs ? b->o.pubs : 1), sizeof *b->shared);
    for (long i = 0; i < b->o.pubs; i++) {
        atomic_init(&b->shared[i].win_first, NO_SEQ);
        atomic_init(&b->shared[i].win_end, NO_SEQ);
        bench_ring_init(&b->shared[i].ring, (uint32_t)b->o.window,
                        (uint32_t)matching_subs(&b->o, i));
    }
    cfg.cbs.on_ready = idle ? idle_on_ready : pub_on_ready;
    cfg.cbs.on_packet = idle ? idle_on_packet : pub_on_packet;
    cfg.cbs.on_fail = pub_on_fail;
    cfg.cbs.on_setup_done = pub_setup_done;
    cfg.cbs.on_writable = idle ? NULL : pub_on_writable;
    if (b->o.mode == MODE_CONNECT) bench_cx_callbacks(&cfg.cbs);
    bench_loop_init(&b->lp, b->loop, &cfg);
    b->lp.data = b;
    uv_async_init(b->loop, &b->wake, on_wake);
    uv_timer_init(b->loop, &b->phase_timer);
    uv_timer_init(b->loop, &b->tick_timer);
    uv_timer_init(b->loop, &b->drain_timer);
    b->wake.data = b->phase_timer.data = b->tick_timer.data = b->drain_timer.data = b;
    if (b->o.mode == MODE_CONNECT) connect_start(b);
    else if (idle) idle_start(b);
    else if (b->o.subs > 0) rc = subs_start(b);
    else connect_pubs(b);
    if (rc != 0) {
        fprintf(stderr, "uvmq-bench: cannot start the subscriber thread: %s\n", uv_strerror(rc));
        b->status = 1;
        finish(b);
    }
    uv_run(b->loop, UV_RUN_DEFAULT);
    return b->status;
}

/* Parses options, runs, prints the report; returns the exit status. */
int main(int argc, char **argv)
{
    bench_t b;
    result_t r;
    int status;

    memset(&b, 0, sizeof b);
    status = parse_opts(&b.o, argc, argv);
    if (status != 0) return status == 1 ? 0 : 2;
    signal(SIGPIPE, SIG_IGN);
    raise_nofile(b.o.mode == MODE_IDLE || b.o.mode == MODE_CONNECT ? b.o.conns
                                                                   : b.o.subs + b.o.pubs);
    setup_config(&b);
    b.rt_off = bench_realtime_ns() - uv_hrtime();
    if (resolve(&b) != 0 || (b.o.tls && setup_tls(&b) != 0)) return 1;
    status = run(&b);
    if (status == 0) {
        compute(&b, &r);
        if (!b.o.json_only) print_table(&b, &r);
        print_json(&b, &r);
    } else {
        fprintf(stderr, "uvmq-bench: could not connect or subscribe to the broker at %s\n",
                b.addr_text);
    }
    bench_loop_dispose(&b.lp);
    if (b.cx) bench_cx_dispose(b.cx);
    free(b.cx);
    subs_free(&b);
    pubs_free(&b);
    free(b.idle);
    for (long i = 0; i < b.o.pubs; i++) bench_ring_dispose(&b.shared[i].ring);
    free(b.shared);
    SSL_CTX_free(b.ccfg.tls);
    uv_loop_close(b.loop);
    return status;
}

/*
 * bench_connect.c - the connect mode's slots: cycles of CONNECT, CONNACK,
 * DISCONNECT on bench_client connections (bench/uvmq-bench.md, "Modes").
 *
 * A cycle ends in on_closed, where the slot takes the next CONNECT number
 * and starts again at once; only a slot whose connection failed without a
 * CONNACK waits RETRY_MS first, so a broker that is down or refusing TCP
 * connections is not hammered in a tight loop. The client closes first
 * (DISCONNECT, then close, as MQTT-3.14.4-1 asks): the TIME_WAIT sockets
 * are the generator's, which Linux reuses on loopback after a second
 * (net.ipv4.tcp_tw_reuse = 2, its default).
 */
#include "bench/bench_connect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/xmalloc.h"

#define RETRY_MS 10

struct bench_cx_slot_s {
    bench_conn_t conn;        /* conn.data points back here */
    bench_cx_t *cx;
    int failed;               /* this cycle failed without a CONNACK */
    uint64_t retry_at;        /* uv_hrtime() to start again after a failure; 0 none */
    char user[64];            /* --users: this cycle's user name */
};

/* Names the slot's next CONNECT: client id and, with --users, user. */
static void name_cycle(bench_cx_slot_t *s)
{
    bench_cx_t *cx = s->cx;
    uint64_t k = cx->started++;

    snprintf(s->conn.client_id, sizeof s->conn.client_id, "bc%d-%llu", (int)getpid(),
             (unsigned long long)k);
    if (cx->cfg.users > 0) {
        snprintf(s->user, sizeof s->user, "%s%llu", cx->cfg.user_prefix,
                 (unsigned long long)(k % (uint64_t)cx->cfg.users));
        s->conn.user = s->user;
    } else {
        s->conn.user = cx->cfg.user;
    }
}

/* CONNACK accepted: count it, then DISCONNECT and close. */
static void on_ready(bench_conn_t *c)
{
    bench_cx_slot_t *s = c->data;
    bench_cx_t *cx = s->cx;

    cx->answered++;
    if (cx->counting) {
        cx->ok++;
        bench_hist_record(&cx->hist, uv_hrtime() - c->t_connect_ns);
    }
    bench_conn_close(c);
}

/* A refused CONNACK (c->refused) or a failure; c is closing. */
static void on_fail(bench_conn_t *c, const char *what, int err)
{
    bench_cx_slot_t *s = c->data;
    bench_cx_t *cx = s->cx;

    if (c->refused) {
        cx->answered++;
        if (cx->counting) {
            cx->refused[c->refused]++;
            cx->refused_total++;
        }
        return;
    }
    s->failed = 1;
    if (cx->stopped) return;
    if (cx->counting) cx->errors++;
    if (cx->errors_all++ == 0)
        fprintf(stderr, "uvmq-bench: connection %s: %s (%s)\n", c->client_id, what,
                err == 0 ? "protocol" : err > UVMQ_EBASE ? uv_strerror(err) : err_str(err));
}

static void on_packet(bench_conn_t *c, const bench_pkt_t *p, uint64_t now)
{
    (void)c, (void)p, (void)now; /* nothing comes between CONNACK and the close */
}

static void on_setup_done(bench_loop_t *lp)
{
    (void)lp; /* every slot is in its first cycle: nothing waits for that */
}

/* The cycle is over: the next one starts now, or after RETRY_MS. */
static void on_closed(bench_conn_t *c)
{
    bench_cx_slot_t *s = c->data;

    if (s->cx->stopped) return;
    if (s->failed) {
        s->failed = 0;
        s->retry_at = uv_hrtime() + RETRY_MS * 1000000ull;
        return;
    }
    name_cycle(s);
    bench_conn_restart(c);
}

/* Every RETRY_MS: starts the slots whose wait after a failure is over. */
static void on_retry(uv_timer_t *t)
{
    bench_cx_t *cx = t->data;
    uint64_t now = uv_hrtime();
    long i;

    for (i = 0; i < cx->cfg.slots && !cx->stopped; i++) {
        bench_cx_slot_t *s = &cx->slots[i];
        if (s->retry_at == 0 || s->retry_at > now) continue;
        s->retry_at = 0;
        name_cycle(s);
        bench_conn_restart(&s->conn);
    }
}

/* Fills cbs with the connect mode's callbacks. */
void bench_cx_callbacks(bench_client_cbs_t *cbs)
{
    memset(cbs, 0, sizeof *cbs);
    cbs->on_ready = on_ready;
    cbs->on_packet = on_packet;
    cbs->on_fail = on_fail;
    cbs->on_setup_done = on_setup_done;
    cbs->on_closed = on_closed;
}

/* Creates the slots, adds them to lp and starts their first cycles. */
void bench_cx_start(bench_cx_t *cx, bench_loop_t *lp, const bench_cx_cfg_t *cfg)
{
    long i;

    memset(cx, 0, sizeof *cx);
    cx->cfg = *cfg;
    cx->lp = lp;
    bench_hist_init(&cx->hist);
    cx->slots = xcalloc((size_t)cfg->slots, sizeof *cx->slots);
    for (i = 0; i < cfg->slots; i++) {
        bench_cx_slot_t *s = &cx->slots[i];
        s->cx = cx;
        s->conn.index = (uint32_t)i;
        s->conn.data = s;
        name_cycle(s);
        bench_loop_add(lp, &s->conn);
    }
    uv_timer_init(lp->loop, &cx->retry);
    cx->retry.data = cx;
    uv_timer_start(&cx->retry, on_retry, RETRY_MS, RETRY_MS);
    bench_loop_connect(lp);
}

/* Stops new cycles and the retry timer. */
void bench_cx_stop(bench_cx_t *cx)
{
    if (cx->stopped) return;
    cx->stopped = 1;
    uv_close((uv_handle_t *)&cx->retry, NULL);
}

/* Frees the slots (their connections are closed by then). */
void bench_cx_dispose(bench_cx_t *cx)
{
    free(cx->slots);
    cx->slots = NULL;
}

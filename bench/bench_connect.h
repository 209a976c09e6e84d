/*
 * bench_connect.h - uvmq-bench's connect mode: a storm of short MQTT
 * sessions, to measure what a broker's CONNECT costs (password hashing,
 * the verified-credentials cache, session set-up and teardown).
 *
 * --conns slots share the main loop's bench_loop_t. Each runs one cycle
 * after another: TCP connect, CONNECT (clean, with a user name and
 * password when given), CONNACK, DISCONNECT, close. A slot holds at most
 * one connection, so at most --conns CONNECTs are ever in flight. CONNECT
 * number k (over all slots, from 0) uses client id "bc<pid>-<k>" and, with
 * --users N, user "<prefix><k mod N>": more users than the broker caches
 * makes every CONNECT a cold hash. A refused CONNACK is counted by its
 * code and the slot goes on; a connection that fails otherwise (timeout,
 * reset) is counted and its slot starts again after RETRY_MS.
 */
#ifndef UVMQ_BENCH_CONNECT_H
#define UVMQ_BENCH_CONNECT_H

#include <stdint.h>

#include "bench/bench_client.h"
#include "bench/bench_stats.h"

/* Settings of the connect mode; the strings are borrowed for the run. */
typedef struct bench_cx_cfg_s {
    long slots;              /* --conns: connections in flight at most */
    const char *user;        /* --user: every CONNECT's user name, or NULL */
    const char *user_prefix; /* --user-prefix, with users > 0 */
    long users;              /* --users: 0 for none (or --user) */
} bench_cx_cfg_t;

typedef struct bench_cx_slot_s bench_cx_slot_t;

/* The mode's state; the caller owns the memory (16 KiB: the histogram). */
typedef struct bench_cx_s {
    bench_cx_cfg_t cfg;
    bench_loop_t *lp;        /* borrowed: the loop's connections are the slots' */
    bench_cx_slot_t *slots;  /* owned */
    uv_timer_t retry;        /* starts failed slots again */
    int counting;            /* 1 inside the measured window: the caller sets it */
    int stopped;             /* no new cycles */
    uint64_t started;        /* CONNECTs begun, whole run: numbers ids and users */
    uint64_t answered;       /* CONNACKs received, whole run */
    uint64_t ok;             /* accepted CONNACKs in the window */
    uint64_t refused[256];   /* refused CONNACKs in the window, by code */
    uint64_t refused_total;
    uint64_t errors;         /* failures other than refusals in the window */
    uint64_t errors_all;     /* ... and in the whole run */
    bench_hist_t hist;       /* CONNECT -> accepted CONNACK, in the window */
} bench_cx_t;

/* The callbacks a bench_loop_t running the connect mode needs; lp->data is
 * not used by them (each connection's data is its slot). */
void bench_cx_callbacks(bench_client_cbs_t *cbs);
/* Prepares cx for cfg (copied) on lp, whose config must carry the
 * callbacks of bench_cx_callbacks, and starts every slot's first cycle
 * (paced by lp's max_in_flight). */
void bench_cx_start(bench_cx_t *cx, bench_loop_t *lp, const bench_cx_cfg_t *cfg);
/* Ends the cycles: no slot starts again; the caller then closes lp. */
void bench_cx_stop(bench_cx_t *cx);
/* Frees the slots, once lp's loop has run its close callbacks. */
void bench_cx_dispose(bench_cx_t *cx);

#endif

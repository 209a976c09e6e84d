/*
 * broker.c - broker lifecycle: create (data dir, worker loops, listener),
 * run the worker threads and the listener loop until SIGINT/SIGTERM or
 * broker_stop, orderly shutdown, destroy.
 *
 * Shutdown: the listener loop stops accepting and posts STOP to every
 * worker; each sends v5 clients DISCONNECT 0x8B (Server shutting down),
 * closes its connections without publishing wills, then its handles, so
 * its uv_run returns and uv_loop_close finds no handle left. The main
 * thread joins the workers, then frees sessions, routers and retained
 * messages (broker_destroy). The threading model is in inbox.c.
 */
#include "broker_int.h"

#include "access_int.h"
#include "inbox_int.h"
#include "listener_int.h"
#include "loop_int.h"
#include "persist_int.h"
#include "recover_int.h"
#include "sess_int.h"
#include "share_int.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

/* Closes the listener loop's handles (listening sockets, signals, stop). */
static void close_own_handles(broker_t *b)
{
    uv_handle_t *hs[] = {(uv_handle_t *)&b->sigint, (uv_handle_t *)&b->sigterm,
                         (uv_handle_t *)&b->sighup, (uv_handle_t *)&b->stop_async};
    listener__stop(b);
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) {
        if (hs[i]->loop != NULL && !uv_is_closing(hs[i])) uv_close(hs[i], NULL);
    }
}

/* Starts the orderly shutdown; idempotent. */
static void begin_stop(broker_t *b)
{
    if (b->stopping) return;
    b->stopping = 1;
    close_own_handles(b);
    for (unsigned i = 0; i < b->n_loops; i++) {
        loop_item_t it = {.kind = ITEM_STOP};
        inbox__append(&b->lout[i], &it);
    }
    inbox__flush_outboxes(b, b->lout);
}

static void on_signal(uv_signal_t *h, int signum)
{
    log_info("received %s, stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
    begin_stop(h->data);
}

/* SIGHUP: TLS listeners reload their certificates (listener.c); the
 * password and ACL files are read again (access.c). */
static void on_hup(uv_signal_t *h, int signum)
{
    broker_t *b = h->data;
    (void)signum;
    if (b->stopping) return;
    listener__reload(b);
    access__reload(b);
}

static void on_stop_async(uv_async_t *h)
{
    begin_stop(h->data);
}

/* Number of worker loops for cfg->threads (0 = one per core). */
static unsigned loop_count(const broker_config_t *cfg)
{
    unsigned n = cfg->threads;
    if (n == 0) n = uv_available_parallelism();
    return n ? n : 1;
}

/* For loops never run on a thread (broker_create failed, or broker_run
 * never called): closes their handles and runs them until closed. */
static void close_unrun_loops(broker_t *b)
{
    for (unsigned i = 0; i < b->n_loops; i++) {
        loop_t *l = &b->loops[i];
        if (l->rbuf == NULL || l->uv_closed) continue;
        loop__close_handles(l);
        uv_run(&l->uv, UV_RUN_DEFAULT);
        if (loop__close_uv(l) != 0)
            log_error("uv_loop_close (worker %u): %s", i, uv_strerror(l->close_rc));
    }
}

/* Closes the listener loop (its handles first). Returns uv_loop_close's. */
static int close_listener_loop(broker_t *b)
{
    int rc = 0;
    if (!b->luv_init) return 0;
    close_own_handles(b);
    uv_run(&b->luv, UV_RUN_DEFAULT);
    rc = uv_loop_close(&b->luv);
    if (rc != 0) log_error("uv_loop_close (listener): %s", uv_strerror(rc));
    b->luv_init = 0;
    return rc;
}

/* Creates the retained trie, its lock and the session map. */
static void state_init(broker_t *b)
{
    b->retained = router_retained_create();
    pthread_mutex_init(&b->retained_lock, NULL);
    sess__map_init(&b->sessions, b->cfg->session_shards);
    b->share = share__create(b->cfg->shared_strategy);
}

static void release_retained(void *value, void *ctx)
{
    msg_t *m = value;
    (void)ctx;
    msg_release(&m);
}

/* Frees sessions, retained messages and each loop's leftovers and router
 * (every loop is down). */
static void state_dispose(broker_t *b)
{
    sess__map_dispose(&b->sessions);
    for (unsigned i = 0; i < b->n_loops; i++) loop__dispose(&b->loops[i]);
    share__destroy(b->share); /* after the loops dropped their items */
    b->share = NULL;
    router_retained_destroy(b->retained, release_retained, NULL);
    b->retained = NULL;
    pthread_mutex_destroy(&b->retained_lock);
}

/* Initialises the worker loops and the listener loop's handles. */
static int loops_init(broker_t *b)
{
    int rc = uv_loop_init(&b->luv);
    if (rc != 0) return rc;
    b->luv_init = 1;
    b->luv.data = b;
    b->lout = xcalloc(b->n_loops, sizeof *b->lout);
    for (unsigned i = 0; i < b->n_loops && rc == 0; i++)
        rc = loop__init(&b->loops[i], b, i);
    if (rc != 0) return rc;
    uv_signal_init(&b->luv, &b->sigint);
    uv_signal_init(&b->luv, &b->sigterm);
    uv_signal_init(&b->luv, &b->sighup);
    uv_async_init(&b->luv, &b->stop_async, on_stop_async);
    b->sigint.data = b->sigterm.data = b->sighup.data = b->stop_async.data = b;
    /* Caught from here on: a signal during start-up waits for the loop. */
    uv_signal_start(&b->sigint, on_signal, SIGINT);
    uv_signal_start(&b->sigterm, on_signal, SIGTERM);
    uv_signal_start(&b->sighup, on_hup, SIGHUP);
    return 0;
}

/* Frees what loops_init and state_init made (loops are closed). */
static void loops_free(broker_t *b)
{
    for (unsigned i = 0; b->lout != NULL && i < b->n_loops; i++) {
        inbox__drop_items(&b->lout[i]);
        inbox__items_dispose(&b->lout[i]);
    }
    free(b->lout);
    free(b->loops);
    b->lout = NULL;
    b->loops = NULL;
}

int broker_create(broker_t **out, const broker_config_t *cfg)
{
    broker_t *b = xcalloc(1, sizeof *b);
    int rc = 0;
    *out = NULL;
    b->cfg = cfg;
    b->started_ms = uv_hrtime() / 1000000;
    store_opts_t so = {.durability = cfg->durability ? STORE_BATCH : STORE_FULL,
                       .batch_ms = cfg->batch_ms,
                       .max_db_pages = (uint32_t)(cfg->max_db_bytes / STORE_PAGE_SIZE)};
    rc = access__create(b);
    if (rc != 0) goto fail_access;
    rc = store_open(&b->store, cfg->data_dir, &so);
    if (rc != 0) goto fail_store;
    b->n_loops = loop_count(cfg);
    b->loops = xcalloc(b->n_loops, sizeof *b->loops);
    state_init(b);
    rc = loops_init(b);
    if (rc != 0) {
        log_error("cannot create the event loops: %s", uv_strerror(rc));
        goto fail_loops;
    }
    rc = recover__run(b);
    if (rc == 0) rc = listener__start(b);
    if (rc != 0) goto fail_loops;
    *out = b;
    return 0;

fail_loops:
    close_unrun_loops(b);
    close_listener_loop(b);
    store_close(b->store); /* before the loops: its last callbacks post there */
    state_dispose(b);
    loops_free(b);
    listener__free(b);
fail_store:
    access__destroy(b);
fail_access:
    free(b);
    return rc;
}

static uint64_t ld(atomic_uint_fast64_t *v)
{
    return (uint64_t)atomic_load_explicit(v, memory_order_relaxed);
}

/* The per-loop figures each loop publishes (atomics) and the counters a
 * loop folds at the end of its ticks (broker_counters_t). */
static void stats_counters(broker_t *b, broker_stats_t *s)
{
    broker_counters_t *k = &b->cnt;
    s->accepted = ld(&k->accepted);
    s->refused = ld(&k->refused);
    s->closed = ld(&k->closed);
    s->msgs_in = ld(&k->msgs_in);
    s->msgs_out = ld(&k->msgs_out);
    s->bytes_in = ld(&k->bytes_in);
    s->bytes_out = ld(&k->bytes_out);
    s->http_requests = ld(&k->http_requests);
    s->pkts_in = ld(&k->pkts_in);
    s->pkts_out = ld(&k->pkts_out) + s->msgs_out;
    s->connects = ld(&k->connects);
    s->drop_qos0 = ld(&k->dropped_qos0);
    s->drop_queue = ld(&k->dropped_queue);
    s->drop_size = ld(&k->dropped_size);
    s->expired = ld(&k->expired);
    s->malformed = ld(&k->malformed);
    s->too_large = ld(&k->too_large);
    s->protocol_error = ld(&k->protocol_error);
    s->tls_failed = ld(&k->tls_failed);
    s->sess_expired = ld(&k->sess_expired);
    s->shared_subs = atomic_load_explicit(&b->n_shared, memory_order_relaxed);
    s->shared = ld(&k->shared);
    s->shared_moved = ld(&k->shared_moved);
    s->shared_dropped = ld(&k->shared_dropped);
    s->auth_failed = ld(&k->auth_failed);
    s->auth_anonymous = ld(&k->auth_anonymous);
    s->auth_busy = ld(&k->auth_busy);
    s->auth_cache_hits = ld(&k->auth_cache_hits);
    s->acl_denied_publish = ld(&k->acl_denied_publish);
    s->acl_denied_subscribe = ld(&k->acl_denied_subscribe);
    s->acl_denied_read = ld(&k->acl_denied_read);
}

void broker_stats(broker_t *b, broker_stats_t *s)
{
    memset(s, 0, sizeof *s);
    s->uptime_s = (uv_hrtime() / 1000000 - b->started_ms) / 1000;
    s->conns = atomic_load_explicit(&b->n_conns, memory_order_relaxed);
    s->http_conns = atomic_load_explicit(&b->n_http, memory_order_relaxed);
    stats_counters(b, s);
    for (unsigned i = 0; i < b->n_loops; i++) {
        loop_t *l = &b->loops[i];
        s->subs += atomic_load_explicit(&l->n_subs, memory_order_relaxed);
        s->queued += atomic_load_explicit(&l->queued, memory_order_relaxed);
        s->inflight += atomic_load_explicit(&l->inflight, memory_order_relaxed);
        s->online += atomic_load_explicit(&l->online, memory_order_relaxed);
    }
    pthread_mutex_lock(&b->retained_lock);
    s->retained = router_retained_count(b->retained);
    pthread_mutex_unlock(&b->retained_lock);
    s->sessions = sess__count(&b->sessions);
    if (b->store != NULL) store_stats(b->store, &s->st);
}

/* router_retained_match callback: the one message of an exact topic. */
static void take_one(void *value, void *ctx)
{
    msg_t **out = ctx;
    if (*out == NULL) *out = msg_retain(value);
}

msg_t *broker_retained_get(broker_t *b, const char *t, size_t len)
{
    msg_t *m = NULL;
    pthread_mutex_lock(&b->retained_lock);
    router_retained_match(b->retained, t, len, take_one, &m);
    pthread_mutex_unlock(&b->retained_lock);
    if (m != NULL && m->expiry_at != 0 && msg_expired(m, msg_now_ms())) msg_release(&m);
    return m;
}

/* Counter value for the stop line. */
static unsigned long long cnt(atomic_uint_fast64_t *v)
{
    return (unsigned long long)atomic_load_explicit(v, memory_order_relaxed);
}

/* One line at shutdown with what the broker counted, so an operator sees
 * losses and bad clients without a stats endpoint. */
static void log_stop_line(broker_t *b)
{
    broker_counters_t *k = &b->cnt;
    log_info("uvmq stopped: %llu connections closed; messages in %llu, out %llu; "
             "dropped: %llu qos0, %llu queue-full, %llu too-large-for-client, "
             "%llu expired; malformed %llu, too large %llu, protocol errors %llu, "
             "TLS failures %llu",
             cnt(&b->conns_closed_at_stop), cnt(&k->msgs_in),
             cnt(&k->msgs_out), cnt(&k->dropped_qos0), cnt(&k->dropped_queue),
             cnt(&k->dropped_size), cnt(&k->expired), cnt(&k->malformed),
             cnt(&k->too_large), cnt(&k->protocol_error), cnt(&k->tls_failed));
    store_stats_t st;
    store_stats(b->store, &st);
    log_info("storage: %llu commits (%llu failed), %llu batches, %llu operations; "
             "commit time avg %llu us, max %llu us",
             (unsigned long long)st.commits, (unsigned long long)st.failed_commits,
             (unsigned long long)st.batches, (unsigned long long)st.ops,
             (unsigned long long)(st.commits ? st.sum_commit_us / st.commits : 0),
             (unsigned long long)st.max_commit_us);
}

/* Body of a worker thread: runs the loop until STOP has closed every
 * handle, closes it, and returns this thread's pooled message blocks. */
static void worker_main(void *arg)
{
    loop_t *l = arg;
    uv_run(&l->uv, UV_RUN_DEFAULT);
    persist__flush(l); /* what the closing connections wrote */
    loop__fold_counters(l);
    if (loop__close_uv(l) != 0)
        log_error("uv_loop_close (worker %u): %s", l->index, uv_strerror(l->close_rc));
    msg_pool_drain();
}

/* Starts one thread per worker loop. Returns 0 or the first failure. */
static int start_workers(broker_t *b)
{
    int rc = 0;
    for (unsigned i = 0; i < b->n_loops && rc == 0; i++) {
        rc = uv_thread_create(&b->loops[i].thread, worker_main, &b->loops[i]);
        if (rc == 0) b->loops[i].thread_started = 1;
        else log_error("cannot start worker thread %u: %s", i, uv_strerror(rc));
    }
    return rc;
}

/* Joins every started worker; returns the first uv_loop_close failure. */
static int join_workers(broker_t *b)
{
    int rc = 0;
    for (unsigned i = 0; i < b->n_loops; i++) {
        loop_t *l = &b->loops[i];
        if (!l->thread_started) continue;
        uv_thread_join(&l->thread);
        l->thread_started = 0;
        if (rc == 0) rc = l->close_rc;
    }
    return rc;
}

int broker_run(broker_t *b)
{
    int rc = 0;
    signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error, not a kill */
    log_info("%u worker loop(s) (threads=%u requested)", b->n_loops, b->cfg->threads);
    rc = start_workers(b);
    if (rc != 0) begin_stop(b);
    uv_run(&b->luv, UV_RUN_DEFAULT);
    int jr = join_workers(b);
    if (rc == 0) rc = jr;
    close_unrun_loops(b); /* those whose thread did not start */
    int lr = close_listener_loop(b);
    if (rc == 0) rc = lr;
    log_stop_line(b);
    return rc;
}

void broker_stop(broker_t *b)
{
    uv_async_send(&b->stop_async);
}

void broker_destroy(broker_t *b)
{
    if (b == NULL) return;
    b->stopping = 1;
    close_unrun_loops(b);
    close_listener_loop(b);
    store_close(b->store); /* commits the last batches; before the loops:
                              its callbacks post to their inboxes */
    b->store = NULL;
    state_dispose(b);
    loops_free(b);
    listener__free(b); /* after the loops: their items borrow listeners */
    access__destroy(b); /* after the sessions: none holds a view */
    msg_pool_drain();
    free(b);
}

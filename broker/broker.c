/*
 * broker.c - broker lifecycle: create (data dir, loops, listener), run
 * until SIGINT/SIGTERM or broker_stop, orderly shutdown, destroy.
 *
 * Shutdown closes the listener, sends v5 clients DISCONNECT 0x8B (Server
 * shutting down) and closes every connection without publishing wills;
 * the loop's hooks close once the last connection has, so uv_run returns
 * and uv_loop_close finds no handle left. Sessions, retained messages and
 * the router are freed in broker_destroy.
 */
#include "broker_int.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

#define LISTEN_BACKLOG 511

/* Closes the broker's own handles (listener, signals, stop async). */
static void close_own_handles(broker_t *b)
{
    uv_handle_t *hs[] = {(uv_handle_t *)&b->listener, (uv_handle_t *)&b->sigint,
                         (uv_handle_t *)&b->sigterm, (uv_handle_t *)&b->stop_async};
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
        loop_t *l = &b->loops[i];
        b->conns_closed_at_stop += l->n_conns;
        for (conn_t *c = l->conns; c != NULL; c = c->next)
            conn__close(c, PKT_RC_SERVER_SHUTTING_DOWN,
                        CLOSE_DISCONNECT | CLOSE_QUIET, "server shutting down");
        if (l->n_conns == 0) loop__close_handles(l);
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    log_info("received %s, stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
    begin_stop(h->data);
}

static void on_stop_async(uv_async_t *h)
{
    begin_stop(h->data);
}

static void on_connection(uv_stream_t *server, int status)
{
    broker_t *b = server->data;
    if (status < 0) {
        log_warn("accept failed: %s", uv_strerror(status));
        return;
    }
    conn__accept(&b->loops[0], server); /* one loop for now */
}

/* Formats the bound address for the start-up line. */
static void bound_name(uv_tcp_t *t, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    snprintf(out, cap, "?");
    if (uv_tcp_getsockname(t, (struct sockaddr *)&ss, &len) != 0) return;
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, ip, sizeof ip);
        snprintf(out, cap, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, sizeof ip);
        snprintf(out, cap, "%s:%u", ip, ntohs(a->sin_port));
    }
}

/* Binds and listens on cfg->bind:cfg->port (IPv4 or IPv6 literal). */
static int listen_start(broker_t *b)
{
    const broker_config_t *cfg = b->cfg;
    struct sockaddr_storage ss;
    char name[96];
    int rc = uv_ip4_addr(cfg->bind, cfg->port, (struct sockaddr_in *)&ss);
    if (rc != 0) rc = uv_ip6_addr(cfg->bind, cfg->port, (struct sockaddr_in6 *)&ss);
    if (rc != 0) {
        log_error("invalid bind address \"%s\" (expected an IPv4 or IPv6 literal)",
                  cfg->bind);
        return ERR_CONFIG;
    }
    uv_tcp_init(&b->loops[0].uv, &b->listener);
    b->listener.data = b;
    rc = uv_tcp_bind(&b->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&b->listener, LISTEN_BACKLOG, on_connection);
    if (rc != 0) {
        log_error("cannot listen on %s port %u: %s", cfg->bind, cfg->port,
                  uv_strerror(rc));
        return rc;
    }
    bound_name(&b->listener, name, sizeof name);
    log_info("uvmq %s listening on %s (mqtt), data dir %s", UVMQ_VERSION, name,
             cfg->data_dir);
    return 0;
}

/* Closes whatever handles remain, runs the loops until their close
 * callbacks ran, then closes them. Returns 0 or the first failure. */
static int teardown_loops(broker_t *b)
{
    int rc = 0;
    if (b->loops == NULL) return 0;
    for (unsigned i = 0; i < b->n_loops; i++) {
        loop_t *l = &b->loops[i];
        if (l->rbuf == NULL) continue; /* never initialised or disposed */
        if (i == 0) close_own_handles(b);
        loop__close_handles(l);
        uv_run(&l->uv, UV_RUN_DEFAULT);
        int r = loop__dispose(l);
        if (r != 0) log_error("uv_loop_close: %s", uv_strerror(r));
        if (rc == 0) rc = r;
    }
    return rc;
}

/* Creates router, retained trie, locks and the session map. */
static void state_init(broker_t *b)
{
    b->router = router_create();
    pthread_rwlock_init(&b->router_lock, NULL);
    b->retained = router_retained_create();
    pthread_mutex_init(&b->retained_lock, NULL);
    sess__map_init(&b->sessions);
}

static void release_retained(void *value, void *ctx)
{
    msg_t *m = value;
    (void)ctx;
    msg_release(&m);
}

/* Frees sessions, retained messages and the router (loops are down). */
static void state_dispose(broker_t *b)
{
    sess__map_dispose(&b->sessions, b);
    router_retained_destroy(b->retained, release_retained, NULL);
    router_destroy(b->router);
    b->retained = NULL;
    b->router = NULL;
    pthread_mutex_destroy(&b->retained_lock);
    pthread_rwlock_destroy(&b->router_lock);
}

int broker_create(broker_t **out, const broker_config_t *cfg)
{
    broker_t *b = xcalloc(1, sizeof *b);
    int rc = 0;
    *out = NULL;
    b->cfg = cfg;
    rc = store_open(&b->store, cfg->data_dir);
    if (rc != 0) goto fail_store;
    b->n_loops = 1; /* config "threads" is accepted; multi-core comes later */
    b->loops = xcalloc(b->n_loops, sizeof *b->loops);
    rc = loop__init(&b->loops[0], b, 0);
    if (rc != 0) {
        log_error("cannot create the event loop: %s", uv_strerror(rc));
        goto fail_loop;
    }
    state_init(b);
    uv_signal_init(&b->loops[0].uv, &b->sigint);
    uv_signal_init(&b->loops[0].uv, &b->sigterm);
    uv_async_init(&b->loops[0].uv, &b->stop_async, on_stop_async);
    b->sigint.data = b->sigterm.data = b->stop_async.data = b;
    rc = listen_start(b);
    if (rc != 0) goto fail_listen;
    *out = b;
    return 0;

fail_listen:
    teardown_loops(b);
    state_dispose(b);
fail_loop:
    free(b->loops);
    store_close(b->store);
fail_store:
    free(b);
    return rc;
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
             "%llu expired; malformed %llu, too large %llu, protocol errors %llu",
             (unsigned long long)b->conns_closed_at_stop, cnt(&k->msgs_in),
             cnt(&k->msgs_out), cnt(&k->dropped_qos0), cnt(&k->dropped_queue),
             cnt(&k->dropped_size), cnt(&k->expired), cnt(&k->malformed),
             cnt(&k->too_large), cnt(&k->protocol_error));
}

int broker_run(broker_t *b)
{
    int rc = 0;
    signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error, not a kill */
    uv_signal_start(&b->sigint, on_signal, SIGINT);
    uv_signal_start(&b->sigterm, on_signal, SIGTERM);
    log_info("%u worker loop(s) (threads=%u requested)", b->n_loops, b->cfg->threads);
    uv_run(&b->loops[0].uv, UV_RUN_DEFAULT);
    rc = teardown_loops(b);
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
    b->stopping = 1; /* no wills while sessions are torn down */
    teardown_loops(b);
    state_dispose(b);
    msg_pool_drain();
    store_close(b->store);
    free(b->loops);
    free(b);
}

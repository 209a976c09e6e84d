/*
 * listener.c - the listening sockets, on the main thread's listener loop.
 *
 * The default MQTT listener (bind, port) comes first, then the default
 * HTTP/2 one (bind, http_port; h2c, none when http_port is 0), then one
 * per entry of the config's "listeners", each with a kind (enum
 * listener_kind: MQTT or HTTP) and, when it has "tls", a TLS context whose
 * ALPN list fits the kind ("mqtt", or "h2"). We create each socket ourselves and
 * watch it with a uv_poll_t, because a libuv stream cannot hand an
 * accepted socket to another loop. On each readable event up to
 * ACCEPT_BATCH sockets are accepted (non-blocking, close-on-exec) and each
 * is given, with its listener and a reference to the listener's current
 * TLS context, to the worker loop with the fewest connections (ties round
 * robin) as an ITEM_ACCEPT through the listener's outboxes, flushed once
 * per callback. max_connections is enforced here with the broker-wide
 * atomic connection count, HTTP/2 connections included. SIGHUP replaces each TLS listener's context
 * with one loaded afresh from its files (listener__reload); connections
 * keep the context they were accepted with.
 */
#include "listener_int.h"

#include "access_int.h"
#include "config_int.h"
#include "conn_tls_int.h"
#include "inbox_int.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

#define LISTEN_BACKLOG 511
#define ACCEPT_BATCH 64

/* Names of enum listener_kind, for logs. */
static const char *const kind_names[] = {"mqtt", "http"};

/* The worker with the fewest connections; ties go round robin. */
static unsigned pick_loop(broker_t *b)
{
    unsigned best = b->rr % b->n_loops;
    unsigned best_load = atomic_load_explicit(&b->loops[best].load, memory_order_relaxed);
    for (unsigned k = 1; k < b->n_loops; k++) {
        unsigned i = (b->rr + k) % b->n_loops;
        unsigned ld = atomic_load_explicit(&b->loops[i].load, memory_order_relaxed);
        if (ld < best_load) {
            best = i;
            best_load = ld;
        }
    }
    b->rr++;
    return best;
}

/* max_connections reached: close at once, log at most once per 10 s. */
static void refuse(broker_t *b, int fd)
{
    uint64_t now = uv_now(&b->luv);
    close(fd);
    CNT_INC(b, refused);
    b->refused_since_log++;
    if (b->last_refuse_log == 0 || now - b->last_refuse_log >= 10000) {
        log_warn("max_connections (%u) reached: refused %llu connection(s)",
                 b->cfg->max_connections,
                 (unsigned long long)b->refused_since_log);
        b->last_refuse_log = now;
        b->refused_since_log = 0;
    }
}

/* Counts fd in and hands it, with its listener, to a worker, or refuses
 * it. */
static void hand_off(listener_t *ls, int fd)
{
    broker_t *b = ls->b;
    unsigned max = b->cfg->max_connections;
    unsigned n = atomic_fetch_add_explicit(&b->n_conns, 1, memory_order_relaxed) + 1;
    if (max != 0 && n > max) {
        atomic_fetch_sub_explicit(&b->n_conns, 1, memory_order_relaxed);
        refuse(b, fd);
        return;
    }
    unsigned k = pick_loop(b);
    atomic_fetch_add_explicit(&b->loops[k].load, 1, memory_order_relaxed);
    loop_item_t it = {.kind = ITEM_ACCEPT, .fd = fd, .ptr = ls};
    if (ls->tls != NULL) it.tls_ctx = tls_ctx_retain(ls->tls);
    inbox__append(&b->lout[k], &it); /* flushed after the batch */
}

static void on_listen(uv_poll_t *h, int status, int events)
{
    listener_t *ls = h->data;
    broker_t *b = ls->b;
    (void)events;
    if (status < 0) {
        log_warn("listening socket %s: %s", ls->name, uv_strerror(status));
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH && !b->stopping; i++) {
        int fd = accept4(ls->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            hand_off(ls, fd);
        } else if (errno == EINTR || errno == ECONNABORTED) {
            continue;
        } else {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("accept on %s failed: %s", ls->name, strerror(errno));
            break;
        }
    }
    inbox__flush_outboxes(b, b->lout);
}

/* Formats the bound address of fd and the listener's kind into ls->name. */
static void name_listener(listener_t *ls)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (getsockname(ls->fd, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, ip, sizeof ip);
        port = ntohs(a->sin6_port);
    } else if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, sizeof ip);
        port = ntohs(a->sin_port);
    }
    snprintf(ls->name, sizeof ls->name, ss.ss_family == AF_INET6 ? "[%s]:%u (%s%s)" : "%s:%u (%s%s)",
             ip, port, kind_names[ls->kind], ls->tls_cfg != NULL ? ", tls" : "");
}

/* socket + SO_REUSEADDR + bind + listen; returns the fd or -errno. */
static int open_socket(const struct sockaddr *sa, socklen_t len)
{
    int one = 1;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, sa, len) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int listener__ctx_create(tls_ctx_t **out, const tls_config_t *cfg, const transport_t *proto,
                         char *err, size_t errlen)
{
    const char *alpn = proto != NULL && proto->alpn != NULL ? proto->alpn : "";
    unsigned flags = proto != NULL && proto->alpn_required ? TLS_ALPN_REQUIRED : 0;
    return tls_ctx_create(out, cfg, alpn, strlen(alpn), flags, err, errlen);
}

/* Builds ls's TLS context from its files; 0 or UVMQ_ECONFIG (why in err). */
static int make_ctx(listener_t *ls, tls_ctx_t **out, char *err, size_t errlen)
{
    return listener__ctx_create(out, ls->tls_cfg, ls->proto, err, errlen);
}

/* Opens listener ls (its fields set): TLS context, socket, poll. */
static int open_listener(broker_t *b, listener_t *ls)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(struct sockaddr_in);
    char err[400];
    int rc = uv_ip4_addr(ls->bind, ls->port, (struct sockaddr_in *)&ss);
    if (rc != 0) {
        rc = uv_ip6_addr(ls->bind, ls->port, (struct sockaddr_in6 *)&ss);
        len = sizeof(struct sockaddr_in6);
    }
    if (rc != 0) {
        log_error("invalid bind address \"%s\" (expected an IPv4 or IPv6 literal)", ls->bind);
        return UVMQ_ECONFIG;
    }
    if (ls->proto == NULL) {
        log_error("listener %s port %u: this program has no %s transport", ls->bind, ls->port,
                  kind_names[ls->kind]);
        return UVMQ_ECONFIG;
    }
    if (ls->tls_cfg != NULL && make_ctx(ls, &ls->tls, err, sizeof err) != 0) {
        log_error("listener %s port %u: TLS: %s", ls->bind, ls->port, err);
        return UVMQ_ECONFIG;
    }
    rc = open_socket((struct sockaddr *)&ss, len);
    if (rc < 0) {
        log_error("cannot listen on %s port %u (%s): %s", ls->bind, ls->port,
                  kind_names[ls->kind], uv_strerror(rc));
        return rc;
    }
    ls->fd = rc;
    uv_poll_init(&b->luv, &ls->poll, ls->fd);
    ls->poll.data = ls;
    uv_poll_start(&ls->poll, UV_READABLE, on_listen);
    name_listener(ls);
    return 0;
}

/* Fills the listener array from the config (nothing opened yet): the
 * default MQTT listener, the default HTTP/2 one unless http_port is 0,
 * then "listeners". */
static void describe_listeners(broker_t *b)
{
    const broker_config_t *cfg = b->cfg;
    unsigned fixed = cfg->http_port != 0 ? 2 : 1; /* not from "listeners" */
    b->n_listeners = fixed + (unsigned)cfg->n_listeners;
    b->listeners = xcalloc(b->n_listeners, sizeof *b->listeners);
    for (unsigned i = 0; i < b->n_listeners; i++) {
        listener_t *ls = &b->listeners[i];
        const listener_config_t *lc = i >= fixed ? &cfg->listeners[i - fixed] : NULL;
        ls->b = b;
        ls->fd = -1;
        ls->kind = lc != NULL ? (uint8_t)lc->kind : i == 0 ? LISTENER_MQTT : LISTENER_HTTP;
        ls->bind = lc != NULL && lc->bind != NULL ? lc->bind : cfg->bind;
        ls->port = lc != NULL ? lc->port : i == 0 ? cfg->port : cfg->http_port;
        ls->tls_cfg = lc != NULL && lc->has_tls ? &lc->tls : NULL;
        ls->anon = (uint8_t)config__anonymous(cfg, lc != NULL ? lc->allow_anonymous : -1,
                                              ls->bind);
        ls->proto = cfg->protocols[ls->kind];
        ls->tp = ls->tls_cfg != NULL ? &conn_tls__transport : ls->proto;
    }
}

/* Start-up lines an operator needs about access: which listeners take
 * anonymous clients, and a warning for HTTP/2 credentials sent in clear
 * text over the network (h2c on a non-loopback address). */
static void log_access(broker_t *b)
{
    char names[512] = "";
    size_t n = 0;
    for (unsigned i = 0; i < b->n_listeners; i++) {
        const listener_t *ls = &b->listeners[i];
        if (ls->anon && n < sizeof names)
            n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", n ? ", " : "", ls->name);
        if (ls->kind == LISTENER_HTTP && ls->tls_cfg == NULL && !config__loopback(ls->bind) &&
            access__passwd_on(b))
            log_warn("listener %s: HTTP/2 without TLS on a network address: Basic "
                     "credentials travel in clear text (add \"tls\" to this listener; "
                     "docs/http.md)",
                     ls->name);
    }
    log_info("anonymous clients (no user name) accepted on: %s", n ? names : "no listener");
}

int listener__start(broker_t *b)
{
    int rc = 0;
    describe_listeners(b);
    /* The default listener opens last: whoever reaches it (scripts and
     * tests wait for it) finds every other listener open too. */
    for (unsigned i = b->n_listeners; i-- > 0 && rc == 0;)
        rc = open_listener(b, &b->listeners[i]);
    if (rc != 0) return rc;
    /* The first line keeps its historic form (scripts wait for it). */
    log_info("uvmq %s listening on %s, data dir %s", UVMQ_VERSION, b->listeners[0].name,
             b->cfg->data_dir);
    for (unsigned i = 1; i < b->n_listeners; i++)
        log_info("also listening on %s", b->listeners[i].name);
    log_access(b);
    return 0;
}

void listener__reload(broker_t *b)
{
    unsigned n = 0;
    for (unsigned i = 0; i < b->n_listeners; i++) {
        listener_t *ls = &b->listeners[i];
        tls_ctx_t *fresh = NULL;
        char err[400];
        if (ls->tls_cfg == NULL || ls->fd < 0) continue;
        n++;
        if (make_ctx(ls, &fresh, err, sizeof err) != 0) {
            log_error("listener %s: cannot reload certificates: %s; keeping the old ones",
                      ls->name, err);
            continue;
        }
        tls_ctx_release(&ls->tls); /* connections hold their own */
        ls->tls = fresh;
        log_info("listener %s: certificates reloaded from %s", ls->name, ls->tls_cfg->cert);
    }
    if (n == 0) log_info("SIGHUP: no TLS listener to reload");
}

static void on_poll_closed(uv_handle_t *h)
{
    listener_t *ls = h->data;
    close(ls->fd); /* only once libuv has stopped watching it */
    ls->fd = -1;
}

void listener__stop(broker_t *b)
{
    for (unsigned i = 0; i < b->n_listeners; i++) {
        listener_t *ls = &b->listeners[i];
        if (ls->fd < 0 || uv_is_closing((uv_handle_t *)&ls->poll)) continue;
        uv_poll_stop(&ls->poll);
        uv_close((uv_handle_t *)&ls->poll, on_poll_closed);
    }
}

void listener__free(broker_t *b)
{
    for (unsigned i = 0; i < b->n_listeners; i++) {
        listener_t *ls = &b->listeners[i];
        assert(ls->fd < 0);
        tls_ctx_release(&ls->tls);
    }
    free(b->listeners);
    b->listeners = NULL;
    b->n_listeners = 0;
}

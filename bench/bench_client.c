/*
 * bench_client.c - paced MQTT connections with batched I/O on one libuv loop.
 *
 * Reads: alloc_cb copies the connection's partial-packet tail to the front
 * of the loop's shared buffer and offers the 64 KiB after it, so each read
 * callback sees contiguous bytes and every complete packet is parsed in
 * place; only the new tail is copied back. Writes: handlers append to the
 * connection's out buffer; once per loop turn a uv_prepare hook tries
 * uv_try_write and hands what is left to one uv_write (double buffered).
 * Kernel receive timestamps: libuv's read() drops control messages, so
 * on_alloc (called right before each read) peeks one byte with recvmsg for
 * the SO_TIMESTAMPNS stamp of the skb at the head of the receive queue.
 * TCP coalesces queued segments into that skb and keeps the stamp of the
 * last one appended (see bench/uvmq-bench.md, "Latency").
 */
#include "bench/bench_client.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
#include "common/log.h"
#include "common/xmalloc.h"

#define WATCHDOG_MS 250
#define SUB_PID 1

static void start_next(bench_loop_t *lp);
static void conn_fail(bench_conn_t *c, const char *what, int err);
static void flush_conn(bench_conn_t *c);
static void tls_start(bench_conn_t *c);

/* ---- connect ----------------------------------------------------------- */

static void send_connect(bench_conn_t *c)
{
    const bench_client_cfg_t *cfg = &c->lp->cfg;
    bench_connect_t cc;
    size_t cap;
    int n;

    cc.proto = cfg->proto;
    cc.clean = cfg->clean;
    cc.keepalive = cfg->keepalive;
    cc.session_expiry = cfg->session_expiry;
    cc.client_id = c->client_id;
    cc.user = c->user ? c->user : cfg->user;
    cc.password = cfg->password;
    cap = bench_mqtt_connect_cap(&cc);
    n = bench_mqtt_encode_connect(bench_conn_reserve(c, cap), cap, &cc);
    assert(n > 0);
    bench_conn_commit(c, (size_t)n);
    c->state = BENCH_CONN_CONNACK;
    c->t_connect_ns = uv_hrtime();
}

/* Returns the realtime clock in ns. */
uint64_t bench_realtime_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Returns the SCM_TIMESTAMPNS stamp of msg in ns, 0 if absent. */
uint64_t bench_cmsg_rx_ns(const struct msghdr *msg)
{
    struct cmsghdr *cm;
    struct timespec ts;
    uint64_t ns = 0;

    for (cm = CMSG_FIRSTHDR(msg); cm && ns == 0; cm = CMSG_NXTHDR((struct msghdr *)msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_TIMESTAMPNS ||
            cm->cmsg_len < CMSG_LEN(sizeof ts))
            continue;
        memcpy(&ts, CMSG_DATA(cm), sizeof ts);
        ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    }
    return ns;
}

/* Peeks the first unread byte of c's socket for the kernel receive stamp of
 * the skb holding it (0 when nothing is queued or it carries no stamp). */
static uint64_t peek_rx_stamp(bench_conn_t *c)
{
    union { char buf[CMSG_SPACE(sizeof(struct timespec)) + 64]; struct cmsghdr align; } ctl;
    struct msghdr msg;
    struct iovec iov;
    uv_os_fd_t fd;
    char byte;

    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return 0;
    memset(&msg, 0, sizeof msg);
    iov.iov_base = &byte;
    iov.iov_len = 1;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof ctl.buf;
    if (recvmsg(fd, &msg, MSG_PEEK | MSG_DONTWAIT) <= 0) return 0;
    return bench_cmsg_rx_ns(&msg);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    bench_conn_t *c = h->data;
    bench_loop_t *lp = c->lp;

    (void)hint;
    if (lp->cfg.rx_timestamps) c->rx_stamp_ns = peek_rx_stamp(c);
    if (c->tail_len) memcpy(lp->rbuf + lp->tail_max - c->tail_len, c->tail, c->tail_len);
    buf->base = (char *)lp->rbuf + lp->tail_max;
    buf->len = BENCH_READ_SIZE;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Asks the kernel to stamp every segment c receives (SO_TIMESTAMPNS). */
static int enable_rx_stamps(bench_conn_t *c)
{
    uv_os_fd_t fd;
    int one = 1, rc = uv_fileno((uv_handle_t *)&c->tcp, &fd);

    if (rc == 0 && setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) != 0)
        rc = uv_translate_sys_error(errno);
    return rc;
}

static void on_connect(uv_connect_t *req, int status)
{
    bench_conn_t *c = req->data;
    int rc = status;

    if (c->state != BENCH_CONN_TCP) return; /* closed meanwhile */
    if (rc == 0) rc = uv_tcp_nodelay(&c->tcp, 1);
    if (rc == 0 && c->lp->cfg.rx_timestamps) rc = enable_rx_stamps(c);
    if (rc == 0) rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0) {
        conn_fail(c, "TCP connect failed", rc);
        return;
    }
    if (c->lp->cfg.tls != NULL)
        tls_start(c); /* CONNECT once the handshake is done */
    else
        send_connect(c);
}

/* Starts the TCP connect of c; failures are reported through conn_fail. */
static void conn_start(bench_conn_t *c)
{
    bench_loop_t *lp = c->lp;
    int rc;

    c->t_start_ns = uv_hrtime();
    c->t_sent_ns = c->t_start_ns;
    c->receive_max = 65535;
    c->refused = 0;
    rc = uv_tcp_init(lp->loop, &c->tcp);
    if (rc != 0) {
        c->state = BENCH_CONN_CLOSED; /* no handle to close */
        lp->nfailed++;
        lp->cfg.cbs.on_fail(c, "uv_tcp_init failed", rc);
        return;
    }
    c->tcp.data = c;
    c->creq.data = c;
    c->state = BENCH_CONN_TCP;
    lp->in_flight++;
    rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&lp->cfg.addr,
                        on_connect);
    if (rc != 0) conn_fail(c, "TCP connect failed", rc);
}

static void check_setup_done(bench_loop_t *lp)
{
    if (lp->setup_reported || lp->nready + lp->nfailed < lp->nconns) return;
    lp->setup_reported = 1;
    lp->cfg.cbs.on_setup_done(lp);
}

/* Starts connects while fewer than max_in_flight are being set up. */
static void start_next(bench_loop_t *lp)
{
    if (lp->starting) return; /* a synchronous failure re-entered: no recursion */
    lp->starting = 1;
    while (lp->in_flight < lp->cfg.max_in_flight && lp->next_connect < lp->nconns)
        conn_start(lp->conns[lp->next_connect++]);
    lp->starting = 0;
    check_setup_done(lp);
}

static void conn_ready(bench_conn_t *c)
{
    c->state = BENCH_CONN_READY;
    c->lp->in_flight--;
    c->lp->nready++;
    c->lp->cfg.cbs.on_ready(c);
    start_next(c->lp);
}

/* ---- read and dispatch ------------------------------------------------- */

static void handle_connack(bench_conn_t *c, const bench_pkt_t *p)
{
    uint8_t *b;
    int n;

    if (p->type != BENCH_CONNACK) {
        conn_fail(c, "first packet from the broker is not CONNACK", UVMQ_EINVAL);
        return;
    }
    if (p->reason != 0) {
        c->refused = p->reason;
        if (!c->lp->cfg.quiet_refusals)
            log_error("broker refused CONNECT of %s: reason 0x%02x", c->client_id, p->reason);
        conn_fail(c, "CONNECT refused", UVMQ_EINVAL);
        return;
    }
    if (p->receive_max) c->receive_max = p->receive_max;
    if (!c->filter[0]) {
        conn_ready(c);
        return;
    }
    b = bench_conn_reserve(c, 64);
    n = bench_mqtt_encode_subscribe(b, 64, c->lp->cfg.proto, SUB_PID, c->filter,
                                    c->lp->cfg.sub_qos);
    assert(n > 0);
    bench_conn_commit(c, (size_t)n);
    c->state = BENCH_CONN_SUBACK;
}

static void handle_suback(bench_conn_t *c, const bench_pkt_t *p, uint64_t now)
{
    if (p->type != BENCH_SUBACK) {
        c->lp->cfg.cbs.on_packet(c, p, now);
    } else if (p->pid != SUB_PID || p->reason >= 0x80) {
        log_error("broker refused SUBSCRIBE %s of %s: reason 0x%02x", c->filter,
                  c->client_id, p->reason);
        conn_fail(c, "SUBSCRIBE refused", UVMQ_EINVAL);
    } else {
        conn_ready(c);
    }
}

/* Sets lp->rx_real_ns for the read c just did: the stamp on_alloc peeked,
 * else (user mode, or nothing was queued at the peek) the time now. */
static void set_rx_time(bench_conn_t *c)
{
    bench_loop_t *lp = c->lp;

    if (c->rx_stamp_ns) {
        lp->rx_real_ns = c->rx_stamp_ns;
        lp->rx_stamped++;
    } else {
        lp->rx_real_ns = bench_realtime_ns();
        if (lp->cfg.rx_timestamps) lp->rx_unstamped++;
    }
    c->rx_stamp_ns = 0;
}

/* Handles one packet; c may be closing afterwards. */
static void dispatch(bench_conn_t *c, const bench_pkt_t *p, uint64_t now)
{
    if (c->state == BENCH_CONN_CONNACK) {
        handle_connack(c, p);
    } else if (c->state == BENCH_CONN_SUBACK) {
        handle_suback(c, p, now);
    } else if (p->type == BENCH_DISCONNECT) {
        log_error("broker sent DISCONNECT to %s: reason 0x%02x", c->client_id, p->reason);
        conn_fail(c, "broker sent DISCONNECT", UVMQ_EINVAL);
    } else if (p->type != BENCH_PINGRESP) {
        c->lp->cfg.cbs.on_packet(c, p, now);
    }
}

/* Keeps the n bytes at p as c's partial-packet tail. */
static int keep_tail(bench_conn_t *c, const uint8_t *p, size_t n)
{
    c->tail_len = 0;
    if (n == 0) return 0;
    if (n > c->lp->tail_max) return UVMQ_EPKT_TOO_LARGE;
    if (n > c->tail_cap) {
        c->tail_cap = n < 256 ? 256 : n;
        c->tail = xrealloc(c->tail, c->tail_cap);
    }
    memmove(c->tail, p, n);
    c->tail_len = n;
    return 0;
}

/* Parses and dispatches every whole packet of data[0..total) (c's old
 * tail first), keeping the partial rest as the new tail. */
static void parse_input(bench_conn_t *c, const uint8_t *data, size_t total, uint64_t now)
{
    size_t off = 0;
    bench_pkt_t pkt;
    int rc = 0;

    while (off < total && c->state < BENCH_CONN_CLOSING) {
        rc = bench_mqtt_parse(data + off, total - off, c->lp->cfg.proto, &pkt);
        if (rc <= 0) break;
        dispatch(c, &pkt, now);
        off += (size_t)rc;
    }
    if (c->state >= BENCH_CONN_CLOSING) return;
    if (rc >= 0) rc = keep_tail(c, data + off, total - off);
    if (rc < 0) conn_fail(c, "malformed or oversized packet from the broker", rc);
}

/* ---- TLS --------------------------------------------------------------- */

/* Describes OpenSSL's last error for a failure message; clears it. */
static const char *tls_why(void)
{
    static char buf[160];
    unsigned long e = ERR_peek_last_error();
    snprintf(buf, sizeof buf, "%s", e ? ERR_reason_error_string(e) : "TLS failure");
    ERR_clear_error();
    return buf;
}

/* Queues what OpenSSL wrote (handshake, records) for this turn's flush. */
static void tls_pending_out(bench_conn_t *c)
{
    if (BIO_ctrl_pending(c->wbio) > 0) bench_conn_commit(c, 0);
}

/* A session for c on memory BIOs; sends the ClientHello. */
static void tls_start(bench_conn_t *c)
{
    const bench_client_cfg_t *cfg = &c->lp->cfg;
    unsigned char ip[16];
    X509_VERIFY_PARAM *vp;

    c->ssl = SSL_new(cfg->tls);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        c->rbio = c->wbio = NULL;
        conn_fail(c, "cannot create a TLS session", UVMQ_ENOMEM);
        return;
    }
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_connect_state(c->ssl);
    vp = SSL_get0_param(c->ssl);
    if (inet_pton(AF_INET, cfg->tls_host, ip) == 1 || inet_pton(AF_INET6, cfg->tls_host, ip) == 1)
        X509_VERIFY_PARAM_set1_ip_asc(vp, cfg->tls_host);
    else
        SSL_set1_host(c->ssl, cfg->tls_host);
    c->state = BENCH_CONN_TLS;
    SSL_do_handshake(c->ssl); /* WANT_READ: the ClientHello is in wbio */
    tls_pending_out(c);
}

/* Ciphertext arrived: finishes the handshake (then sends CONNECT), and
 * decrypts into the read buffer, after c's tail, to parse as plaintext. */
static void tls_input(bench_conn_t *c, const uint8_t *data, size_t n, uint64_t now)
{
    bench_loop_t *lp = c->lp;
    uint8_t *base = lp->rbuf + lp->tail_max;
    size_t got = 0;

    BIO_write(c->rbio, data, (int)n);
    if (c->state == BENCH_CONN_TLS) {
        int r = SSL_do_handshake(c->ssl);
        if (r == 1) send_connect(c);
        else if (SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ) {
            conn_fail(c, tls_why(), UVMQ_EINVAL);
            return;
        }
    }
    while (c->state > BENCH_CONN_TLS && c->state < BENCH_CONN_CLOSING &&
           SSL_read_ex(c->ssl, base, BENCH_READ_SIZE, &got) == 1) {
        if (c->tail_len) memcpy(base - c->tail_len, c->tail, c->tail_len);
        parse_input(c, base - c->tail_len, c->tail_len + got, now);
    }
    if (c->state < BENCH_CONN_CLOSING) {
        int e = SSL_get_error(c->ssl, 0);
        if (e == SSL_ERROR_SSL || e == SSL_ERROR_ZERO_RETURN) {
            conn_fail(c, e == SSL_ERROR_SSL ? tls_why() : "broker closed TLS", UVMQ_EINVAL);
            return;
        }
        ERR_clear_error();
        tls_pending_out(c);
    }
}

/* Encrypts c's plaintext output in one SSL_write and replaces it with the
 * ciphertext OpenSSL has for the socket (handshake bytes included). */
static int tls_wrap(bench_conn_t *c)
{
    size_t done = 0, pend;
    if (c->out_len > 0 && c->state > BENCH_CONN_TLS) {
        if (SSL_write_ex(c->ssl, c->out, c->out_len, &done) != 1) return -1;
        c->out_len = 0;
    }
    pend = BIO_ctrl_pending(c->wbio);
    if (pend > 0) {
        uint8_t *p = bench_conn_reserve(c, pend);
        c->out_len += (size_t)BIO_read(c->wbio, p, (int)pend);
    }
    return 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    bench_conn_t *c = s->data;
    uint64_t now = uv_hrtime();

    if (nread == 0) return; /* EAGAIN: the tail is still in c->tail */
    if (nread < 0) {
        conn_fail(c, nread == UV_EOF ? "broker closed the connection" : "read failed",
                  (int)nread);
        return;
    }
    set_rx_time(c);
    if (c->ssl != NULL) {
        tls_input(c, (const uint8_t *)buf->base, (size_t)nread, now);
        return;
    }
    /* on_alloc put the tail right before buf->base */
    parse_input(c, (const uint8_t *)buf->base - c->tail_len, c->tail_len + (size_t)nread, now);
}

/* ---- write ------------------------------------------------------------- */

/* Returns room for n more output bytes, growing the out buffer. */
uint8_t *bench_conn_reserve(bench_conn_t *c, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 256;
        while (cap < c->out_len + n) cap *= 2;
        c->out = xrealloc(c->out, cap);
        c->out_cap = cap;
    }
    return c->out + c->out_len;
}

/* Commits n reserved bytes and schedules a flush this loop turn. */
void bench_conn_commit(bench_conn_t *c, size_t n)
{
    bench_loop_t *lp = c->lp;

    c->out_len += n;
    if (c->dirty || c->state >= BENCH_CONN_CLOSING) return;
    c->dirty = 1;
    if (lp->ndirty == lp->conns_cap) return; /* cannot happen: one slot per conn */
    lp->dirty[lp->ndirty++] = c;
}

/* Queues a QoS acknowledgement packet. */
void bench_conn_send_ack(bench_conn_t *c, int type, uint16_t pid)
{
    bench_mqtt_encode_ack(bench_conn_reserve(c, 4), 4, type, pid);
    bench_conn_commit(c, 4);
}

/* Returns bytes queued but not yet accepted by the kernel. */
size_t bench_conn_pending(const bench_conn_t *c)
{
    return c->out_len + (c->writing ? c->wbuf_len : 0);
}

static void on_write(uv_write_t *req, int status)
{
    bench_conn_t *c = req->data;

    c->writing = 0;
    c->wbuf_len = 0;
    if (c->state >= BENCH_CONN_CLOSING) return;
    if (status < 0) {
        conn_fail(c, "write failed", status);
        return;
    }
    if (c->out_len) flush_conn(c);
    if (!c->writing && c->lp->cfg.cbs.on_writable) c->lp->cfg.cbs.on_writable(c);
}

/* Writes c's gathered output: uv_try_write, then one uv_write for the rest. */
static void flush_conn(bench_conn_t *c)
{
    uv_buf_t b = uv_buf_init((char *)c->out, (unsigned)c->out_len);
    uint8_t *tmp;
    size_t cap;
    int n;

    if (c->writing || c->state >= BENCH_CONN_CLOSING) return;
    if (c->ssl != NULL && tls_wrap(c) != 0) {
        conn_fail(c, tls_why(), UVMQ_EINVAL);
        return;
    }
    if (c->out_len == 0) return;
    b = uv_buf_init((char *)c->out, (unsigned)c->out_len);
    c->t_sent_ns = uv_hrtime();
    n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == UV_EAGAIN) n = 0;
    if (n < 0) {
        conn_fail(c, "write failed", n);
        return;
    }
    if ((size_t)n == c->out_len) {
        c->out_len = 0;
        return;
    }
    tmp = c->wbuf, cap = c->wbuf_cap; /* swap: out goes in flight */
    c->wbuf = c->out, c->wbuf_cap = c->out_cap, c->wbuf_len = c->out_len;
    c->out = tmp, c->out_cap = cap, c->out_len = 0;
    b = uv_buf_init((char *)c->wbuf + n, (unsigned)(c->wbuf_len - (size_t)n));
    c->wreq.data = c;
    n = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (n < 0) conn_fail(c, "write failed", n);
    else c->writing = 1;
}

static void on_prepare(uv_prepare_t *h)
{
    bench_loop_t *lp = h->data;
    size_t i;

    if (lp->cfg.cbs.on_tick) lp->cfg.cbs.on_tick(lp);
    for (i = 0; i < lp->ndirty; i++) { /* flush_conn never adds to dirty */
        lp->dirty[i]->dirty = 0;
        flush_conn(lp->dirty[i]);
    }
    lp->ndirty = 0;
}

/* ---- timeouts, close --------------------------------------------------- */

static void watch_conn(bench_conn_t *c, uint64_t now)
{
    uint64_t ka = (uint64_t)c->lp->cfg.keepalive * 1000000000ull;

    if (c->state >= BENCH_CONN_TCP && c->state < BENCH_CONN_READY &&
        now - c->t_start_ns > BENCH_CONNECT_TIMEOUT_MS * 1000000ull) {
        conn_fail(c, "connection set-up timed out", UV_ETIMEDOUT);
    } else if (c->state == BENCH_CONN_READY && ka && now - c->t_sent_ns >= ka) {
        bench_mqtt_encode_empty(bench_conn_reserve(c, 2), 2, BENCH_PINGREQ);
        bench_conn_commit(c, 2);
        c->t_sent_ns = now;
    }
}

static void on_watchdog(uv_timer_t *t)
{
    bench_loop_t *lp = t->data;
    uint64_t now = uv_hrtime();
    size_t i;

    for (i = 0; i < lp->nconns; i++) watch_conn(lp->conns[i], now);
}

static void on_close(uv_handle_t *h)
{
    bench_conn_t *c = h->data;

    c->state = BENCH_CONN_CLOSED;
    c->lp->nclosed++;
    SSL_free(c->ssl); /* and its BIOs */
    c->ssl = NULL;
    c->rbio = c->wbio = NULL;
    free(c->tail);
    free(c->out);
    free(c->wbuf);
    c->tail = c->out = c->wbuf = NULL;
    c->tail_len = c->out_len = c->wbuf_len = 0;
    c->tail_cap = c->out_cap = c->wbuf_cap = 0;
    if (c->lp->cfg.cbs.on_closed) c->lp->cfg.cbs.on_closed(c);
}

/* Closes c and reports the failure to the owner. */
static void conn_fail(bench_conn_t *c, const char *what, int err)
{
    bench_loop_t *lp = c->lp;
    int in_setup = c->state < BENCH_CONN_READY;

    if (c->state >= BENCH_CONN_CLOSING) return;
    c->state = BENCH_CONN_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, on_close);
    if (in_setup) {
        lp->in_flight--;
        lp->nfailed++;
    }
    lp->cfg.cbs.on_fail(c, what, err);
    if (in_setup) start_next(lp);
}

/* ---- public ------------------------------------------------------------- */

/* Initialises lp and starts its flush hook and watchdog. */
int bench_loop_init(bench_loop_t *lp, uv_loop_t *loop, const bench_client_cfg_t *cfg)
{
    int rc;

    memset(lp, 0, sizeof *lp);
    lp->loop = loop;
    lp->cfg = *cfg;
    lp->tail_max = cfg->max_packet > BENCH_READ_SIZE ? cfg->max_packet : BENCH_READ_SIZE;
    lp->rbuf = xmalloc(lp->tail_max + BENCH_READ_SIZE);
    rc = uv_prepare_init(loop, &lp->flush_handle);
    if (rc == 0) rc = uv_timer_init(loop, &lp->watchdog);
    if (rc != 0) return rc; /* cannot happen on Linux: neither allocates */
    lp->flush_handle.data = lp;
    lp->watchdog.data = lp;
    uv_prepare_start(&lp->flush_handle, on_prepare);
    uv_unref((uv_handle_t *)&lp->flush_handle);
    uv_timer_start(&lp->watchdog, on_watchdog, WATCHDOG_MS, WATCHDOG_MS);
    uv_unref((uv_handle_t *)&lp->watchdog);
    return 0;
}

/* Registers c; it is connected by a later bench_loop_connect. */
void bench_loop_add(bench_loop_t *lp, bench_conn_t *c)
{
    if (lp->nconns == lp->conns_cap) {
        lp->conns_cap = lp->conns_cap ? lp->conns_cap * 2 : 64;
        lp->conns = xrealloc(lp->conns, lp->conns_cap * sizeof *lp->conns);
        lp->dirty = xrealloc(lp->dirty, lp->conns_cap * sizeof *lp->dirty);
    }
    c->lp = lp;
    c->state = BENCH_CONN_NEW;
    lp->conns[lp->nconns++] = c;
    lp->setup_reported = 0;
}

/* Starts the pacer over the connections added so far. */
void bench_loop_connect(bench_loop_t *lp)
{
    start_next(lp);
}

/* Best effort DISCONNECT (only if nothing else is queued), then close. */
void bench_conn_close(bench_conn_t *c)
{
    uv_buf_t b;

    if (c->state == BENCH_CONN_NEW) c->state = BENCH_CONN_CLOSED;
    if (c->state >= BENCH_CONN_CLOSING) return;
    if (c->state == BENCH_CONN_READY && !c->writing) {
        bench_mqtt_encode_empty(bench_conn_reserve(c, 2), 2, BENCH_DISCONNECT);
        c->out_len += 2;
        if (c->ssl == NULL || tls_wrap(c) == 0) {
            b = uv_buf_init((char *)c->out, (unsigned)c->out_len);
            uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        }
    }
    c->state = BENCH_CONN_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* A new cycle of c on a fresh handle; its buffers went in on_close. A
 * dirty mark left from before the close stays: its entry is flushed (as
 * nothing) at the next prepare, before the new connect can complete. */
void bench_conn_restart(bench_conn_t *c)
{
    assert(c->state == BENCH_CONN_CLOSED);
    conn_start(c);
}

/* Closes every connection and the loop's own handles. */
void bench_loop_close(bench_loop_t *lp)
{
    size_t i;

    for (i = 0; i < lp->nconns; i++) bench_conn_close(lp->conns[i]);
    lp->ndirty = 0;
    if (!uv_is_closing((uv_handle_t *)&lp->flush_handle)) {
        uv_close((uv_handle_t *)&lp->flush_handle, NULL);
        uv_close((uv_handle_t *)&lp->watchdog, NULL);
    }
}

/* Frees the loop's buffers and arrays; connections stay the owner's. */
void bench_loop_dispose(bench_loop_t *lp)
{
    free(lp->rbuf);
    free(lp->conns);
    free(lp->dirty);
    lp->rbuf = NULL;
    lp->conns = lp->dirty = NULL;
}

/*
 * conn.c - one connection, whatever it speaks: accept, read, batched
 * writes, close, with the connection's transport (transport.h) called at
 * each event and never tested for.
 *
 * Input: a connection holding no partial input reads into the loop's
 * shared 64 KiB buffer, and its transport consumes what it can in place;
 * only the tail of a unit split across reads (an MQTT packet) is copied
 * into the connection's own buffer, sized to the unit the transport
 * announced, and handed back in front of the next bytes (conn_feed).
 * Output: handlers append to the pending out-batch of the connection's
 * output object, taken from a per-loop pool with the first byte and given
 * back once everything is written, so an idle connection holds neither
 * input nor output memory; the loop's flush hook runs the transport's
 * output pass and writes the batch once per tick (uv_try_write, then one
 * uv_write for any rest; double-buffered: one batch being written, one
 * filling). Connection memory is freed only in the uv_close callback.
 *
 * A connection without an extension (c->ext) speaks MQTT over plain TCP
 * (conn__tp): it pays nothing for transports but that pointer, which
 * also holds the acknowledgements waiting for commits (persist.c) of the
 * connections that have some (docs/architecture.md).
 */
#include "conn_int.h"

#include "access_int.h"
#include "alias_int.h"
#include "chunk_int.h"
#include "connect_int.h"
#include "deliver_int.h"
#include "loop_int.h"
#include "persist_int.h"
#include "publish_int.h"
#include "sess_int.h"
#include "throttle_int.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

/* A closing connection whose peer does not take its last bytes within
 * this long is closed hard (the pending write is cancelled). */
#define CLOSE_GRACE_MS 2000

/* Batches bigger than this are freed after their write instead of kept. */
#define BATCH_KEEP_SCRATCH (64 * 1024)
#define BATCH_KEEP_ENTRIES 4096

/* PUBLISH_COPY_MAX (conn_int.h): a PUBLISH of at most that many bytes
 * (head + payload) that is not a shared fan-out packet (deliver.c) is
 * copied into the batch's scratch bytes instead of queued as two iovecs (shared head,
 * payload) plus a message reference: one memcpy, merged with the entry
 * before it, no reference count traffic, one iovec for a run of small
 * messages at writev time. Larger ones stay zero-copy (copying costs per
 * byte, a reference does not). Measured on this noisy 2-core VM, 64-byte
 * payload, medians, zero-copy -> copy: bench/micro/deliver 52 -> 51 us to
 * put one message in 1,000 batches (cache misses dominate) and 20 -> 11 us
 * to release them; broker, 1 thread, deliveries per broker CPU second:
 * fanout 1,000 subscribers 3.1 M -> 4.2 M, many (100 x 100, QoS 1)
 * 0.83 M -> 0.94 M. 256 (four cache lines) was not tuned by a sweep;
 * measure larger sizes before raising it. */

/* Idle output objects a loop keeps for reuse at most; more are freed.
 * The pool is also trimmed to what the last second used (conn__trim_outs),
 * so it holds what steady traffic needs (a fan-out to N subscribers uses
 * N per loop turn) without keeping a burst's worth forever. */
#define OUT_POOL_MAX 65536

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void close_flushed(conn_t *c);
static void on_write(uv_write_t *req, int status);
static void on_close(uv_handle_t *h);

/* ---- out-batch ---- */

void conn__batch_reset(out_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        out_ent_t *e = &b->v[i];
        if (e->ref != NULL) msg_release(&e->ref);
        if (e->chunk != NULL) chunk__release(&e->chunk);
    }
    b->n = 0;
    b->scratch_len = 0;
    b->bytes = 0;
    if (b->scratch_cap > BATCH_KEEP_SCRATCH) {
        free(b->scratch);
        b->scratch = NULL;
        b->scratch_cap = 0;
    }
    if (b->cap > BATCH_KEEP_ENTRIES) {
        free(b->v);
        b->v = b->inl;
        b->cap = OUT_INLINE;
    }
}

static void batch_dispose(out_batch_t *b)
{
    conn__batch_reset(b);
    if (b->v != b->inl) free(b->v);
    free(b->scratch);
    memset(b, 0, sizeof *b);
}

/* Frees the pooled output objects unused since the last call. */
void conn__trim_outs(loop_t *l)
{
    for (size_t n = l->outs_low; n > 0 && l->free_outs != NULL; n--) {
        conn_out_t *o = l->free_outs;
        l->free_outs = o->next_free;
        l->n_free_outs--;
        conn__out_free(o);
    }
    l->outs_low = l->n_free_outs;
}

void conn__outs_dispose(loop_t *l)
{
    l->outs_low = SIZE_MAX; /* all of them count as unused */
    conn__trim_outs(l);
}

/* Frees o and its batch arrays (releasing any references left). */
void conn__out_free(conn_out_t *o)
{
    batch_dispose(&o->batch[0]);
    batch_dispose(&o->batch[1]);
    free(o);
}

/* Makes batch p of c's output object the pending one. */
static void set_pend(conn_t *c, unsigned p)
{
    c->pend = p & 1;
    c->batch = &c->out->batch[c->pend];
}

/* Gives c (which has none) an output object from the loop's pool and
 * returns its pending batch. Kept out of line: the delivery path only
 * tests c->batch. */
__attribute__((noinline)) out_batch_t *conn__out_attach(conn_t *c)
{
    loop_t *l = c->loop;
    conn_out_t *o = l->free_outs;
    if (o != NULL) {
        l->free_outs = o->next_free;
        l->n_free_outs--;
        if (l->n_free_outs < l->outs_low) l->outs_low = l->n_free_outs;
    } else {
        o = xaligned_zalloc(_Alignof(conn_out_t), sizeof *o);
        for (int i = 0; i < 2; i++) {
            o->batch[i].v = o->batch[i].inl;
            o->batch[i].cap = OUT_INLINE;
        }
    }
    o->next_free = NULL;
    o->hold_gen = 0;
    c->out = o;
    set_pend(c, 0);
    return c->batch;
}

/* Gives c's output object back to the loop's pool (nothing pending, no
 * write in flight): an idle connection holds no output memory. Beyond
 * OUT_POOL_MAX idle objects per loop, it is freed instead. */
static void out_put(conn_t *c)
{
    loop_t *l = c->loop;
    conn_out_t *o = c->out;
    c->out = NULL;
    c->batch = NULL;
    conn__batch_reset(&o->batch[0]);
    conn__batch_reset(&o->batch[1]);
    if (l->n_free_outs >= OUT_POOL_MAX) {
        conn__out_free(o);
        return;
    }
    o->next_free = l->free_outs;
    l->free_outs = o;
    l->n_free_outs++;
}

/* The batch handlers append to (c gets an output object if needed). */
static inline out_batch_t *pending(conn_t *c)
{
    return c->batch != NULL ? c->batch : conn__out_attach(c);
}

/* Moves b's entries to a heap array twice as large (kept out of line:
 * most batches fit their inline entries or an array from before). */
__attribute__((noinline)) void conn__batch_grow(out_batch_t *b)
{
    b->cap *= 2;
    if (b->v == b->inl) {
        b->v = xmalloc(b->cap * sizeof *b->v);
        memcpy(b->v, b->inl, sizeof b->inl);
    } else {
        b->v = xrealloc(b->v, b->cap * sizeof *b->v);
    }
}

static inline out_ent_t *batch_push(out_batch_t *b)
{
    if (b->n == b->cap) conn__batch_grow(b);
    out_ent_t *e = &b->v[b->n++];
    e->ref = NULL;
    e->chunk = NULL;
    return e;
}

/* Returns where n scratch bytes may be written; commit with
 * add_scratch. Offsets, not pointers, survive the realloc. */
static uint8_t *scratch_reserve(out_batch_t *b, size_t n)
{
    if (b->scratch_len + n > b->scratch_cap) {
        size_t cap = b->scratch_cap ? b->scratch_cap * 2 : 64;
        while (cap < b->scratch_len + n) cap *= 2;
        b->scratch = xrealloc(b->scratch, cap);
        b->scratch_cap = cap;
    }
    return b->scratch + b->scratch_len;
}

/* Commits len reserved scratch bytes as an entry, merged into the previous
 * entry when that one ends exactly where these begin. */
static void add_scratch(conn_t *c, size_t len)
{
    out_batch_t *b = pending(c);
    size_t off = b->scratch_len;
    out_ent_t *last = b->n ? &b->v[b->n - 1] : NULL;
    if (last != NULL && last->base == NULL && last->off + last->len == off) {
        last->len += len;
    } else {
        out_ent_t *e = batch_push(b);
        e->base = NULL;
        e->off = (uint32_t)off;
        e->len = (uint32_t)len;
    }
    b->scratch_len += len;
    b->bytes += len;
    c->unsent += len;
    conn__mark_dirty(c);
}

/* Appends borrowed bytes; ref (taken) keeps them alive until written. */
static void add_ref(conn_t *c, const uint8_t *base, size_t len, msg_t *ref)
{
    out_batch_t *b = pending(c);
    out_ent_t *e = batch_push(b);
    e->base = base;
    e->off = 0;
    e->len = (uint32_t)len;
    e->ref = ref;
    b->bytes += len;
    c->unsent += len;
    conn__mark_dirty(c);
}

void conn__send_borrowed(conn_t *c, const uint8_t *bytes, size_t len)
{
    add_ref(c, bytes, len, NULL);
}

/* ---- accept ---- */

/* Keeps the peer's address in binary (19 bytes, not a 64-byte string:
 * idle connections are many); conn__peer formats it for logs. */
static void keep_peer(conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0) return;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        memcpy(c->peer_addr, &a->sin_addr, 4);
        c->peer_port = ntohs(a->sin_port);
        c->peer_family = 4;
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        memcpy(c->peer_addr, &a->sin6_addr, 16);
        c->peer_port = ntohs(a->sin6_port);
        c->peer_family = 6;
    }
}

/* "ip:port" of c in a thread-local buffer (see conn_int.h). */
const char *conn__peer(const conn_t *c)
{
    static _Thread_local char buf[INET6_ADDRSTRLEN + 10];
    char ip[INET6_ADDRSTRLEN] = "?";
    int af = c->peer_family == 6 ? AF_INET6 : AF_INET;
    if (c->peer_family == 0 || inet_ntop(af, c->peer_addr, ip, sizeof ip) == NULL)
        return "?";
    snprintf(buf, sizeof buf, af == AF_INET6 ? "[%s]:%u" : "%s:%u", ip,
             (unsigned)c->peer_port);
    return buf;
}

/* Opens a connection on l for fd (taken); `moved` when it comes from
 * another loop (not counted as accepted). Returns c, ready to read, or
 * NULL when it is already closing (bad socket, loop stopping). */
conn_t *conn__open_fd(loop_t *l, int fd, int moved)
{
    broker_t *b = l->b;
    conn_t *c = xcalloc(1, sizeof *c);
    c->loop = l;
    uv_tcp_init(&l->uv, &c->tcp);
    c->tcp.data = c;
    c->next = l->conns;
    if (l->conns != NULL) l->conns->prev = c;
    l->conns = c;
    l->n_conns++;
    c->since = c->last_rx = (uint32_t)uv_now(&l->uv);
    c->peer_max_packet = UINT32_MAX;
    int rc = uv_tcp_open(&c->tcp, fd);
    if (rc != 0) {
        log_warn("cannot open an accepted socket: %s", uv_strerror(rc));
        close(fd);
        conn__close_handle(c);
        c = NULL;
    } else if (l->stopping) {
        conn__close_handle(c);
        c = NULL;
    } else {
        if (!moved) CNT_INC(b, accepted);
        uv_tcp_nodelay(&c->tcp, 1);
        keep_peer(c);
        log_debug("%s connection from %s", moved ? "moved here" : "accepted",
                  conn__peer(c));
    }
    return c;
}

/* ---- extension and transport ---- */

conn_ext_t *conn__ext(conn_t *c)
{
    if (c->ext == NULL) {
        c->ext = xcalloc(1, sizeof *c->ext);
        c->ext->tp = c->ext->proto = &mqtt_transport;
    }
    return c->ext;
}

void conn__ext_trim(conn_t *c)
{
    conn_ext_t *x = c->ext;
    if (x == NULL || x->tp != &mqtt_transport || x->proto != &mqtt_transport ||
        x->tp_data != NULL || x->acks != NULL || x->v5 != NULL || x->verify != NULL)
        return;
    free(x);
    c->ext = NULL;
}

void conn__set_tp(conn_t *c, const transport_t *tp, const transport_t *proto, void *self)
{
    if (c->ext == NULL && tp == &mqtt_transport && self == NULL) return; /* the default */
    conn_ext_t *x = conn__ext(c);
    x->tp = tp;
    x->proto = proto;
    x->tp_data = self;
}

void conn__take_tp(conn_t *c, const transport_t **tp, void **self)
{
    *tp = conn__tp(c);
    *self = conn__tp_data(c);
    if (c->ext == NULL) return;
    c->ext->tp = &mqtt_transport;
    c->ext->tp_data = NULL;
}

void conn__start_reading(conn_t *c)
{
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

void conn__open(loop_t *l, int fd, const transport_t *tp, const transport_t *proto, void *arg,
                int anon)
{
    conn_t *c = conn__open_fd(l, fd, 0);
    void *self = NULL;
    if (c == NULL) return;
    c->anon_ok = anon != 0;
    int rc = tp->open != NULL ? tp->open(c, tp != proto ? proto : NULL, arg, &self) : 0;
    conn__set_tp(c, tp, proto, self); /* so that the close frees self */
    if (rc != 0) {
        conn__close(c, 0, 0, rc == UVMQ_ENOMEM ? "cannot create the connection's transport state"
                                               : err_str(rc));
        return;
    }
    conn__start_reading(c);
}

/* ---- read ---- */

/* Bytes of partial input c holds. */
static size_t in_len(const conn_t *c)
{
    return c->in != NULL ? c->in->len : 0;
}

/* Grows the private input buffer to hold at least want bytes. Peer-sized:
 * bounded by max_packet_size plus one read chunk. */
static int grow_in(conn_t *c, size_t want)
{
    size_t limit = (size_t)c->loop->b->cfg->max_packet_size + LOOP_READ_BUF;
    conn_in_t *old = c->in;
    if (old != NULL && want <= old->cap) return 0;
    conn_in_t *in = try_malloc(sizeof *in + want, sizeof *in + limit);
    if (in == NULL) return UVMQ_ENOMEM;
    *in = old != NULL ? *old : (conn_in_t){0};
    in->cap = (uint32_t)want; /* < max_packet_size + LOOP_READ_BUF < 2^32 */
    if (in->len) memcpy(in->data, old->data, in->len);
    free(old);
    c->in = in;
    return 0;
}

/* A read goes into the loop's shared buffer unless c holds the start of
 * a unit, which the read then completes in place (or the shared buffer
 * is busy); a transport that consumes nothing as read (TLS) says where. */
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    conn_t *c = h->data;
    loop_t *l = c->loop;
    const transport_t *tp = conn__tp(c);
    size_t want = in_len(c) + LOOP_READ_BUF;
    size_t need = c->in != NULL ? c->in->need : 0;
    (void)hint;
    if (tp->alloc != NULL) {
        tp->alloc(c, conn__tp_data(c), buf);
    } else if (in_len(c) == 0 && !l->rbuf_busy) {
        l->rbuf_busy = 1;
        *buf = uv_buf_init((char *)l->rbuf, LOOP_READ_BUF);
    } else if (grow_in(c, need > want ? need : want) == 0) {
        *buf = uv_buf_init((char *)c->in->data + c->in->len,
                           (unsigned)(c->in->cap - c->in->len));
    } else {
        *buf = uv_buf_init(NULL, 0); /* on_read gets UV_ENOBUFS */
    }
}

/* Hands c->in's bytes (n of them just read into its end) to the
 * transport that left them, and compacts what it leaves again. */
static conn_rc_t feed_own(conn_t *c, size_t n)
{
    conn_in_t *in = c->in;
    size_t used = 0, need = 0;
    in->len += (uint32_t)n;
    conn_rc_t rc = in->tp->input(c, in->self, in->data, in->len, &used, &need);
    if (rc == CONN_GONE) return rc; /* c->in is freed with c */
    in->len -= (uint32_t)used;
    in->need = (uint32_t)need; /* announced sizes are below 2^28 */
    if (in->len > 0 && used > 0) memmove(in->data, in->data + used, in->len);
    if (in->len == 0) { /* idle connections hold no input memory */
        free(in);
        c->in = NULL;
    }
    return rc;
}

conn_rc_t conn_feed(conn_t *c, const transport_t *tp, void *self, const uint8_t *data, size_t n)
{
    conn_in_t *in = c->in;
    size_t used = 0, need = 0;
    if (in != NULL && data == in->data + in->len) { /* read in place (on_alloc) */
        in->tp = tp;
        in->self = self;
        return feed_own(c, n);
    }
    if (in_len(c) > 0 && in->tp == tp) { /* behind a unit begun earlier */
        assert(in->self == self);
        if (grow_in(c, in->len + n) != 0)
            return conn__fail(c, PKT_RC_PACKET_TOO_LARGE, err_str(UVMQ_ENOMEM));
        memcpy(c->in->data + c->in->len, data, n);
        return feed_own(c, n);
    }
    conn_rc_t rc = tp->input(c, self, data, n, &used, &need);
    if (rc == CONN_GONE || used == n) return rc;
    assert(in_len(c) == 0); /* one transport of c leaves bytes: the innermost */
    size_t rest = n - used;
    if (grow_in(c, need > rest ? need : rest) != 0)
        return conn__fail(c, PKT_RC_PACKET_TOO_LARGE, err_str(UVMQ_ENOMEM));
    memcpy(c->in->data, data + used, rest);
    c->in->tp = tp;
    c->in->self = self;
    c->in->len = (uint32_t)rest;
    c->in->need = (uint32_t)need;
    return rc;
}

/* Backpressure (STYLE 6): a client whose own traffic makes output pile up
 * faster than it reads (e.g. QoS 1 publishes whose PUBACKs it never reads)
 * is not read any more until its unsent bytes fall below half the limit.
 * QoS 0 deliveries to it are dropped above the limit anyway, so this bounds
 * what one connection can make the broker hold. */
void conn__pause_if_backed_up(conn_t *c)
{
    if (c->read_paused || !conn__running(c)) return;
    if (c->unsent <= c->loop->b->cfg->max_out_bytes) return;
    c->read_paused = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    log_debug("client %s (%s): output backed up, reading paused", conn__id(c),
              conn__peer(c));
}

static void resume_if_drained(conn_t *c)
{
    if (!c->read_paused || !conn__running(c)) return;
    /* While paused, write progress is the client's sign of life: the
     * keep-alive clock must not run out on bytes we chose not to read. */
    c->last_rx = (uint32_t)uv_now(&c->loop->uv);
    if (c->unsent > c->loop->b->cfg->max_out_bytes / 2) return;
    c->read_paused = 0;
    if (!c->throttled) conn__start_reading(c);
}

/* A read of c ended in EOF or error (a libuv code): no DISCONNECT seen,
 * abnormal, so the will is published (MQTT-3.1.2-8). */
static void read_ended(conn_t *c, int err)
{
    conn__close(c, 0, CONN_CLOSE_WILL,
                err == UV_EOF ? "connection closed by peer" : uv_strerror(err));
}

/* The bytes read are handed on where they are (buf): the loop's shared
 * buffer, which stays busy while they are processed, the end of c's
 * partial input, or the transport's own buffer. */
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    loop_t *l = c->loop;
    int shared = buf->base == (char *)l->rbuf;
    if (n < 0) {
        read_ended(c, (int)n);
    } else if (n > 0 && c->state != CONN_CLOSING) {
        l->bytes_in += (uint64_t)n; /* as read: ciphertext over TLS */
        if (conn_feed(c, conn__tp(c), conn__tp_data(c), (const uint8_t *)buf->base,
                      (size_t)n) == CONN_OK)
            conn__pause_if_backed_up(c);
    }
    if (shared) l->rbuf_busy = 0;
}

void conn__resume(conn_t *c)
{
    c->last_rx = (uint32_t)uv_now(&c->loop->uv);
    /* input that came with the CONNECT, or arrived before a pause (or a
     * CONNECT left unread while its password was verified: access.c) */
    if (in_len(c) > 0 && feed_own(c, 0) == CONN_GONE) return;
    if (c->state == CONN_NEW) { /* waiting for the rest of a CONNECT */
        if (!access__waiting(c)) conn__start_reading(c);
        return;
    }
    if (!conn__running(c)) return;
    conn__pause_if_backed_up(c);
    if (!c->read_paused && !c->throttled) conn__start_reading(c);
}

/* What a takeover reads of the connection it replaces: a client that
 * sends DISCONNECT and reconnects at once has little in flight. */
#define TAKEOVER_READ_MAX (4 * LOOP_READ_BUF)

int conn__read_pending(conn_t *c)
{
    loop_t *l = c->loop;
    uv_os_fd_t fd = -1;
    if (!conn__running(c) || c->throttled || uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0)
        return 0;
    /* The new connection's CONNECT may still be in the loop's read
     * buffer (then busy) and its decode in the loop's arena: c gets its
     * own. */
    arena_t saved = l->arena;
    arena_init(&l->arena, saved.limit);
    uint8_t *buf = xmalloc(LOOP_READ_BUF);
    for (size_t total = 0; total < TAKEOVER_READ_MAX && conn__running(c) && !c->throttled;) {
        ssize_t n = recv(fd, buf, LOOP_READ_BUF, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n <= 0) {
            read_ended(c, n == 0 ? UV_EOF : uv_translate_sys_error(errno));
            break;
        }
        total += (size_t)n;
        l->bytes_in += (uint64_t)n;
        if (conn_feed(c, conn__tp(c), conn__tp_data(c), buf, (size_t)n) == CONN_GONE) break;
    }
    free(buf);
    arena_dispose(&l->arena);
    l->arena = saved;
    return c->state == CONN_CLOSING;
}

/* ---- write ---- */

int conn__send_pkt(conn_t *c, const pkt_t *p)
{
    size_t n = pkt_encoded_size(p, c->version);
    size_t written = 0;
    if (n == 0) return UVMQ_EINVAL;
    uint8_t *dst = scratch_reserve(pending(c), n);
    int rc = pkt_encode(p, c->version, dst, n, &written);
    if (rc == 0) {
        add_scratch(c, written);
        c->loop->pkts_out++; /* folded into b->cnt once per tick */
    }
    return rc;
}

void conn__reason_string(const conn_t *c, pkt_t *p, pkt_props_t *props, const char *why)
{
    int always = p->type == PKT_CONNACK || p->type == PKT_DISCONNECT;
    if (why == NULL || c->version != PKT_V5 || (c->no_problem_info && !always)) return;
    PKT_PROP_SET(props, PROP_REASON_STRING);
    props->reason_string.p = (const uint8_t *)why;
    props->reason_string.len = (uint32_t)strlen(why);
    if (pkt_encoded_size(p, PKT_V5) > c->peer_max_packet)
        props->present &= ~(1ull << PROP_REASON_STRING);
}

void conn__send_raw(conn_t *c, const uint8_t *bytes, size_t len)
{
    memcpy(scratch_reserve(pending(c), len), bytes, len);
    add_scratch(c, len);
}

/* Fills pub for delivering m to c with the given header fields. */
static void fill_pub(conn_t *c, pkt_publish_t *pub, msg_t *m, uint8_t qos,
                     uint8_t retain, uint8_t dup, uint16_t packet_id,
                     const uint32_t *ids, size_t n_ids)
{
    memset(pub, 0, sizeof *pub);
    pub->qos = qos;
    pub->retain = retain;
    pub->dup = dup;
    pub->packet_id = packet_id;
    pub->topic.p = (const uint8_t *)m->topic;
    pub->topic.len = m->topic_len;
    pub->payload.p = m->payload;
    pub->payload.len = m->payload_len;
    if (c->version != PKT_V5) return;
    pub->props.raw.p = m->props;
    pub->props.raw.len = m->props_len;
    if (n_ids > PKT_MAX_SUB_IDS) n_ids = PKT_MAX_SUB_IDS;
    for (size_t i = 0; i < n_ids; i++) pub->props.sub_ids[i] = ids[i];
    pub->props.n_sub_ids = (uint32_t)n_ids;
    if (m->expiry_at != 0) {
        /* MQTT-3.3.2-6: forward the remaining lifetime, in seconds. */
        uint64_t now = msg_now_ms();
        uint64_t left = m->expiry_at > now ? m->expiry_at - now : 0;
        PKT_PROP_SET(&pub->props, PROP_MESSAGE_EXPIRY);
        pub->props.message_expiry = (uint32_t)((left + 999) / 1000);
    }
}

size_t conn__publish_size(conn_t *c, msg_t *m, uint8_t qos,
                          const uint32_t *ids, size_t n_ids)
{
    pkt_publish_t pub;
    fill_pub(c, &pub, m, qos, 0, 0, 1, ids, n_ids);
    size_t h = pkt_publish_head_size(&pub, c->version);
    return h == 0 ? SIZE_MAX : h + m->payload_len;
}

/* See conn_int.h: the admission rules of every PUBLISH sent. */
int conn__admit(conn_t *c, size_t len, int qos0, size_t max_out)
{
    if (len > c->peer_max_packet) {
        CNT_INC(c->loop->b, dropped_size);
        return UVMQ_ELIMIT;
    }
    if (qos0 && c->unsent > 0 && c->unsent + len > max_out) return conn__drop_qos0(c);
    return 0;
}

/* QoS 0 over max_out_bytes: drop, count, warn once per connection. */
__attribute__((noinline)) int conn__drop_qos0(conn_t *c)
{
    CNT_INC(c->loop->b, dropped_qos0);
    if (!c->warned_drop) {
        c->warned_drop = 1;
        log_warn("client %s (%s) is not reading: dropping QoS 0 messages",
                 conn__id(c), conn__peer(c));
    }
    return UVMQ_ELIMIT;
}

/* Appends one PUBLISH of m: its head (the shared bytes `head`, or encoded
 * from pub when head is NULL) and its payload. A packet of at most
 * PUBLISH_COPY_MAX bytes is copied whole into scratch, where it merges with
 * the entry before it (no reference, no iovec of its own); a larger one
 * borrows the payload (and the shared head) and holds a reference to m.
 * Returns 0, or UVMQ_EINVAL when the head cannot be encoded. */
static int add_publish(conn_t *c, const uint8_t *head, size_t hlen,
                       const pkt_publish_t *pub, msg_t *m)
{
    size_t plen = m->payload_len;
    int copy = hlen + plen <= PUBLISH_COPY_MAX;
    int rc = 0;
    if (head != NULL && !copy) {
        add_ref(c, head, hlen, NULL);
    } else {
        size_t written = hlen;
        uint8_t *dst = scratch_reserve(pending(c), hlen + (copy ? plen : 0));
        if (head != NULL)
            memcpy(dst, head, hlen);
        else
            rc = pkt_encode_publish_head(pub, c->version, dst, hlen, &written);
        if (rc == 0 && copy && plen > 0) memcpy(dst + written, m->payload, plen);
        if (rc == 0) add_scratch(c, written + (copy ? plen : 0));
    }
    if (rc == 0 && !copy) add_ref(c, m->payload, plen, loop__ref(c->loop, m));
    return rc != 0 ? UVMQ_EINVAL : 0;
}

/* Puts the topic alias alias.c picks for c into pub and returns the
 * head size: the alias alone (empty topic) when the client knows it, the
 * topic and a new alias otherwise, or the topic alone when that new alias
 * would take the packet past the client's Maximum Packet Size (pk->alias
 * is then 0: nothing to record). */
static size_t alias_head(conn_t *c, pkt_publish_t *pub, msg_t *m, alias_pick_t *pk)
{
    alias__out_pick(c, m->topic, m->topic_len, pk);
    if (pk->alias == 0) return pkt_publish_head_size(pub, c->version);
    PKT_PROP_SET(&pub->props, PROP_TOPIC_ALIAS);
    pub->props.topic_alias = pk->alias;
    if (pk->known) pub->topic.len = 0;
    size_t hlen = pkt_publish_head_size(pub, c->version);
    if (!pk->known && hlen + m->payload_len > c->peer_max_packet) {
        pub->props.present &= ~(1ull << PROP_TOPIC_ALIAS);
        pk->alias = 0;
        hlen = pkt_publish_head_size(pub, c->version);
    }
    return hlen;
}

int conn__send_publish(conn_t *c, msg_t *m, uint8_t qos, uint8_t retain,
                       uint8_t dup, uint16_t packet_id, const uint32_t *ids,
                       size_t n_ids)
{
    int v5 = c->version == PKT_V5;
    size_t hlen = 0;
    const uint8_t *head = NULL;
    pkt_publish_t pub;
    alias_pick_t pk = {0};
    /* With outbound aliases every head is c's own (alias.c). */
    if (qos == 0 && (!v5 || n_ids == 0) && !c->alias_out) head = msg_head(m, v5, retain, &hlen);
    if (head == NULL) {
        fill_pub(c, &pub, m, qos, retain, dup, packet_id, ids, n_ids);
        hlen = c->alias_out ? alias_head(c, &pub, m, &pk)
                            : pkt_publish_head_size(&pub, c->version);
        if (hlen == 0) return UVMQ_EINVAL;
    }
    int rc = conn__admit(c, hlen + m->payload_len, qos == 0, c->loop->b->cfg->max_out_bytes);
    if (rc != 0) return rc;
    rc = add_publish(c, head, hlen, &pub, m);
    if (rc == 0 && pk.alias != 0) alias__out_commit(c, m->topic, m->topic_len, &pk);
    if (rc == 0) c->loop->msgs_out++; /* folded into b->cnt once per tick */
    return rc;
}

/* Drops the first n bytes (already written) from bufs[0..*nbufs); returns
 * the first buffer still to write, adjusted, and its count in *nbufs. */
static uv_buf_t *skip_written(uv_buf_t *bufs, size_t *nbufs, size_t n)
{
    while (*nbufs > 0 && n >= bufs->len) {
        n -= bufs->len;
        bufs++;
        (*nbufs)--;
    }
    if (*nbufs > 0) {
        bufs->base += n;
        bufs->len -= n;
    }
    return bufs;
}

/* Fills the loop's iovec array with the entries of b. */
static void fill_bufs(loop_t *l, const out_batch_t *b)
{
    if (b->n > l->cap_bufs) {
        l->cap_bufs = b->n * 2;
        l->bufs = xrealloc(l->bufs, l->cap_bufs * sizeof *l->bufs);
    }
    for (size_t i = 0; i < b->n; i++) {
        const out_ent_t *e = &b->v[i];
        const uint8_t *p = e->base ? e->base : b->scratch + e->off;
        l->bufs[i] = uv_buf_init((char *)p, (unsigned)e->len);
    }
}

/* Everything written from batch w has left (at once, or in on_write):
 * releases it, lets the transport ask for more, and goes on: pending
 * output waits for the next flush; with none, the output object goes back
 * to the pool, a closing connection finishes its close and a paused one
 * may read again. The one place a write ends. */
static void write_done(conn_t *c, out_batch_t *w)
{
    const transport_t *tp = conn__tp(c);
    c->unsent -= w->bytes;
    conn__batch_reset(w); /* releases the message references */
    if (tp->written != NULL) tp->written(c, conn__tp_data(c)); /* may mark c dirty */
    if (c->batch->n > 0 || c->dirty) {
        conn__mark_dirty(c);
        resume_if_drained(c);
        return;
    }
    out_put(c); /* (the write request lives in it: not used after this) */
    if (c->state == CONN_CLOSING)
        close_flushed(c);
    else
        resume_if_drained(c);
}

/* A write of c failed (a libuv code): what it held is dropped with c. */
static void write_failed(conn_t *c, out_batch_t *w, int err)
{
    c->unsent -= w->bytes;
    conn__batch_reset(w);
    conn__close(c, 0, CONN_CLOSE_WILL, uv_strerror(err));
    conn__close_handle(c);
}

/* Writes the pending batch of c: first straight to the socket
 * (uv_try_write), which usually takes it all, so the output object goes
 * back to the pool at once and a burst of CONNACKs or PINGRESPs does not
 * hold one per connection until the next loop turn; what the kernel does
 * not take goes out with one uv_write, completed in on_write. */
static void write_batch(conn_t *c, out_batch_t *b)
{
    loop_t *l = c->loop;
    const transport_t *tp = conn__tp(c);
    fill_bufs(l, b);
    l->bytes_out += b->bytes; /* as written: ciphertext over TLS */
    int rc = uv_try_write((uv_stream_t *)&c->tcp, l->bufs, (unsigned)b->n);
    if (rc >= 0 && (size_t)rc == b->bytes) {
        write_done(c, b);
        return;
    }
    size_t nbufs = b->n;
    uv_buf_t *rest = skip_written(l->bufs, &nbufs, rc > 0 ? (size_t)rc : 0);
    if (rc >= 0 || rc == UV_EAGAIN) {
        if (tp->hold != NULL) tp->hold(c, conn__tp_data(c)); /* b outlives this tick */
        set_pend(c, c->pend ^ 1); /* b is now the writing batch, owned
                                     by the request */
        c->writing = 1;
        c->out->wreq.data = c;
        rc = uv_write(&c->out->wreq, (uv_stream_t *)&c->tcp, rest, (unsigned)nbufs, on_write);
    }
    if (rc < 0) {
        if (c->writing) set_pend(c, c->pend ^ 1);
        c->writing = 0;
        write_failed(c, b, rc);
    }
}

/* The flush hook's call for a dirty c: the transport's output pass, then
 * one write of the pending batch, if no write is in flight. */
void conn__flush(conn_t *c)
{
    const transport_t *tp = conn__tp(c);
    if (c->writing || c->handle_closing) return;
    if (tp->output != NULL) {
        tp->output(c, conn__tp_data(c)); /* may close c, or give it a batch */
        if (c->handle_closing) return;
    }
    if (c->batch == NULL || c->batch->n == 0) {
        /* nothing to write after all (a transport asked for a flush that
         * found nothing): an idle connection holds no output object */
        if (c->out != NULL) out_put(c);
        if (c->state == CONN_CLOSING) close_flushed(c);
        return;
    }
    write_batch(c, c->batch);
}

static void on_write(uv_write_t *req, int status)
{
    conn_t *c = req->data;
    out_batch_t *w = &c->out->batch[c->pend ^ 1];
    c->writing = 0;
    if (status < 0)
        write_failed(c, w, status);
    else
        write_done(c, w);
}

/* ---- close ---- */

void conn__unmark_dirty(conn_t *c)
{
    if (!c->dirty) return;
    conn_t **pp = &c->loop->dirty;
    while (*pp != NULL && *pp != c) pp = &(*pp)->dirty_next;
    if (*pp == NULL) { /* on the held list instead */
        pp = &c->loop->held;
        while (*pp != NULL && *pp != c) pp = &(*pp)->dirty_next;
    }
    if (*pp == c) *pp = c->dirty_next;
    c->dirty_next = NULL;
    c->dirty = 0;
}


const char *conn__id(const conn_t *c)
{
    if (c->sess != NULL) return c->sess->client_id;
    return c->ext != NULL ? c->ext->proto->anon : mqtt_transport.anon;
}

void conn__close(conn_t *c, uint8_t reason, unsigned flags, const char *why)
{
    const transport_t *tp = conn__tp(c);
    if (c->state == CONN_CLOSING) {
        if (c->lingering && c->loop->stopping) conn__close_handle(c); /* loop__stop */
        return;
    }
    c->state = CONN_CLOSING;
    c->since = (uint32_t)uv_now(&c->loop->uv);
    if (flags & CONN_CLOSE_QUIET)
        log_debug("closing client %s (%s): %s", conn__id(c), conn__peer(c), why);
    else
        log_info("closing client %s (%s): %s", conn__id(c), conn__peer(c), why);
    uv_read_stop((uv_stream_t *)&c->tcp);
    throttle__forget(c);
    persist__conn_gone(c); /* acks it still waits for: never sent */
    if (flags & CONN_CLOSE_MOVED) c->moved = 1;
    /* last words: DISCONNECT (lingering then), GOAWAY, close_notify */
    if (tp->closing != NULL) tp->closing(c, conn__tp_data(c), reason, flags, why);
    if (c->sess != NULL)
        sess__detach(c->loop, c->sess, (flags & CONN_CLOSE_WILL) != 0,
                     (flags & CONN_CLOSE_TAKEN) != 0);
    /* with nothing left to write, at once; else once the flush wrote it */
    if (!c->writing && (c->batch == NULL || c->batch->n == 0) && !c->dirty)
        conn__close_handle(c);
}

conn_rc_t conn__fail(conn_t *c, uint8_t reason, const char *why)
{
    broker_t *b = c->loop->b;
    if (reason == PKT_RC_MALFORMED)
        CNT_INC(b, malformed);
    else if (reason == PKT_RC_PACKET_TOO_LARGE)
        CNT_INC(b, too_large);
    else
        CNT_INC(b, protocol_error);
    conn__close(c, reason, CONN_CLOSE_DISCONNECT | CONN_CLOSE_WILL, why);
    return CONN_GONE;
}

/* Lingering close. A v5 client that gets our DISCONNECT may still be
 * sending (pipelined publishes, a PUBREL for a PUBREC we sent). Closing
 * the socket with its bytes unread, or with more on the way, makes our
 * kernel answer with a reset, and a reset makes the client's kernel drop
 * what the client has not read yet: our DISCONNECT and its reason code
 * (libmosquitto then reports a socket error). So once the DISCONNECT is
 * out, c sends FIN (uv_shutdown), reads and drops whatever still comes,
 * and closes at the client's EOF, CLOSE_GRACE_MS after the close began
 * (conn__sweep), or at once when the loop stops (conn__close). */
static void on_linger_shutdown(uv_shutdown_t *req, int status)
{
    (void)status; /* UV_ECANCELED when the handle closed first */
    free(req);
}

static void linger_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    conn_t *c = h->data;
    (void)hint;
    if (c->loop->rbuf_busy) {
        *buf = uv_buf_init(NULL, 0); /* linger_read gets UV_ENOBUFS: close */
        return;
    }
    c->loop->rbuf_busy = 1;
    *buf = uv_buf_init((char *)c->loop->rbuf, LOOP_READ_BUF);
}

static void linger_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (buf->base == (char *)c->loop->rbuf) c->loop->rbuf_busy = 0;
    if (n < 0) conn__close_handle(c); /* the client closed too (or failed) */
}

/* Everything c had to send before closing is out: closes its handle, or
 * lingers (above) when it sent a DISCONNECT. */
static void close_flushed(conn_t *c)
{
    uv_shutdown_t *req;
    int rc;
    if (!c->linger || c->lingering || c->handle_closing || c->loop->stopping) {
        conn__close_handle(c);
        return;
    }
    req = xmalloc(sizeof *req);
    rc = uv_shutdown(req, (uv_stream_t *)&c->tcp, on_linger_shutdown);
    if (rc != 0) free(req);
    if (rc == 0) rc = uv_read_start((uv_stream_t *)&c->tcp, linger_alloc, linger_read);
    if (rc != 0) { /* a pending shutdown is cancelled by the close */
        conn__close_handle(c);
        return;
    }
    c->lingering = 1;
}

void conn__close_handle(conn_t *c)
{
    if (c->handle_closing) return;
    c->handle_closing = 1;
    c->state = CONN_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* Frees c's memory (its handle is closed). */
static void conn_free(conn_t *c)
{
    throttle__forget(c);
    persist__conn_gone(c);
    if (c->out != NULL) conn__out_free(c->out);
    free(c->in);
    connect__hello_free(c);
    access__conn_free(c); /* a verification under way forgets c */
    alias__out_disable(c);
    if (c->ext != NULL) { /* persist__conn_gone took the acks */
        const transport_t *tp = c->ext->tp;
        if (tp->free != NULL) tp->free(c, c->ext->tp_data);
        alias__v5_free(c);
        free(c->ext);
    }
    free(c);
}

/* Runs after any write callback (libuv cancels writes before closing). */
static void on_close(uv_handle_t *h)
{
    conn_t *c = h->data;
    loop_t *l = c->loop;
    broker_t *b = l->b;
    if (c->sess != NULL) sess__detach(l, c->sess, 0, 0); /* never left attached */
    conn__unmark_dirty(c);
    if (c->prev != NULL) c->prev->next = c->next;
    else l->conns = c->next;
    if (c->next != NULL) c->next->prev = c->prev;
    l->n_conns--;
    atomic_fetch_sub_explicit(&l->load, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&b->n_conns, 1, memory_order_relaxed);
    if (!c->moved) CNT_INC(b, closed); /* moved: its successor counts */
    conn_free(c);
    if (l->stopping && l->n_conns == 0) loop__close_handles(l);
}

void conn__sweep(conn_t *c, uint64_t now)
{
    const transport_t *tp = conn__tp(c);
    uint32_t t = (uint32_t)now; /* unsigned difference with since */
    if (c->handle_closing) return;
    if (c->state == CONN_CLOSING && t - c->since >= CLOSE_GRACE_MS) {
        conn__close_handle(c);
        return;
    }
    if (c->state == CONN_NEW && t - c->since >= c->loop->b->cfg->connect_timeout_ms) {
        conn__close(c, 0, 0, c->ext != NULL ? c->ext->proto->late : mqtt_transport.late);
        return;
    }
    if (tp->sweep != NULL) tp->sweep(c, conn__tp_data(c), now); /* timeouts, idle buffers */
}

/* ---- services for transports (transport.h) ---- */

void conn_send(conn_t *c, const void *bytes, size_t len)
{
    conn__send_raw(c, bytes, len);
}

size_t conn_unsent(const conn_t *c)
{
    return c->unsent;
}

void conn_want_flush(conn_t *c)
{
    conn__mark_dirty(c);
}

void conn_set_active(conn_t *c)
{
    if (c->state == CONN_NEW) c->state = CONN_ACTIVE;
}

int conn_active(const conn_t *c)
{
    return c->state == CONN_ACTIVE;
}

int conn_closing(const conn_t *c)
{
    return c->state == CONN_CLOSING;
}

void conn_close(conn_t *c, unsigned flags, const char *why)
{
    conn__close(c, 0, flags, why);
}

const char *conn_peer(const conn_t *c)
{
    return conn__peer(c);
}

void conn_tcp_keepalive(conn_t *c, unsigned secs)
{
    uv_tcp_keepalive(&c->tcp, 1, secs);
}

broker_t *conn_broker(const conn_t *c)
{
    return c->loop->b;
}

const broker_config_t *conn_config(const conn_t *c)
{
    return c->loop->b->cfg;
}

unsigned conn_loop_index(const conn_t *c)
{
    return c->loop->index;
}

uint64_t conn_now(const conn_t *c)
{
    return uv_now(&c->loop->uv);
}

int conn_stopping(const conn_t *c)
{
    return c->loop->stopping;
}

arena_t *conn_arena(conn_t *c)
{
    return &c->loop->arena;
}

void conn_count(conn_t *c, enum conn_counter k, int n)
{
    broker_counters_t *cnt = &c->loop->b->cnt;
    atomic_uint_fast64_t *v = NULL;
    switch (k) {
    case CONN_CNT_MSGS_IN: v = &cnt->msgs_in; break;
    case CONN_CNT_DROPPED_QOS0: v = &cnt->dropped_qos0; break;
    case CONN_CNT_DROPPED_QUEUE: v = &cnt->dropped_queue; break;
    case CONN_CNT_PROTOCOL_ERROR: v = &cnt->protocol_error; break;
    case CONN_CNT_HTTP_REQUESTS: v = &cnt->http_requests; break;
    case CONN_CNT_MSGS_OUT:
        c->loop->msgs_out += (uint64_t)n; /* folded into b->cnt once per tick */
        return;
    case CONN_CNT_HTTP_CONNS: /* a gauge: +1 and -1 */
        if (n >= 0) atomic_fetch_add_explicit(&c->loop->b->n_http, (unsigned)n, memory_order_relaxed);
        else atomic_fetch_sub_explicit(&c->loop->b->n_http, (unsigned)-n, memory_order_relaxed);
        return;
    }
    if (v != NULL && n > 0) atomic_fetch_add_explicit(v, (uint64_t)n, memory_order_relaxed);
}

int conn_publish(conn_t *c, const pkt_bin_t *topic, const pkt_bin_t *payload,
                 const pkt_props_t *props, uint8_t qos, uint8_t retain, uint32_t id)
{
    loop_t *l = c->loop;
    broker_t *b = l->b;
    size_t ops = persist__ops(l); /* did this publish write? (persist.c) */
    msg_t *m = publish__msg_from(b, *topic, *payload, props, qos, retain, c);
    CNT_INC(b, msgs_in);
    if (m == NULL) return UVMQ_ELIMIT;
    deliver__publish(l, m);
    if (qos > 0 && b->cfg->throttle_publishers) throttle__note(c, m);
    if (qos > 0) /* after the commits a PUBACK would wait for */
        (void)persist__ack(c, ACK_TRANSPORT, id, 0, m, persist__gen_since(l, ops));
    msg_release(&m);
    return 0;
}

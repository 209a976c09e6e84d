/*
 * conn.c - one MQTT connection: accept, read, frame, dispatch, batched
 * writes, close.
 *
 * Input: a connection holding no partial packet reads into the loop's
 * shared 64 KiB buffer; only the tail of a packet split across reads is
 * copied into the connection's own buffer, sized to the packet pkt_frame
 * announced. Output: handlers append to the pending out-batch of the
 * connection's output object, taken from a per-loop pool with the first
 * byte and given back once everything is written, so an idle connection
 * holds neither input nor output memory; the loop's flush hook writes the
 * batch once per tick (uv_try_write, then one uv_write for any rest;
 * double-buffered: one batch being written, one filling). Connection
 * memory is freed only in the uv_close callback. A connection whose
 * CONNECT names a session of another loop moves there (move_away,
 * conn__open_moved; inbox.c).
 *
 * TLS connections (conn__tls(c), tls.h) differ in three places only, each
 * behind one test of c->ext: their reads go through tls_on_read,
 * which decrypts into the loop's shared buffer and feeds the same framing
 * path; their flush encrypts the whole pending batch in one pass into the
 * loop's ciphertext buffer and writes that (conn__tls_encrypt,
 * flush_tls); and their close ends with close_notify. HTTP/2 connections
 * (conn__http(c), http/http.c) are fed and pulled through hooks behind the same
 * test. A plain connection pays nothing but the c->ext pointer, which also
 * holds the acknowledgements waiting for commits (persist.c) of the
 * connections that have some (docs/tls.md, docs/architecture.md).
 */
#include "broker_int.h"

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

/* PUBLISH_COPY_MAX (broker_int.h): a PUBLISH of at most that many bytes
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
static void tls_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void tls_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void flush_tls(conn_t *c);
static void on_write(uv_write_t *req, int status);
static void on_close(uv_handle_t *h);

/* ---- out-batch ---- */

void conn__batch_reset(out_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        out_ent_t *e = &b->v[i];
        if (e->ref != NULL) msg_release(&e->ref);
        if (e->chunk != NULL) loop__chunk_release(&e->chunk);
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
    loop__mark_dirty(c);
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
    loop__mark_dirty(c);
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

/* "ip:port" of c in a thread-local buffer (see broker_int.h). */
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
static conn_t *open_fd(loop_t *l, int fd, int moved)
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

/* ---- extension ---- */

conn_ext_t *conn__ext(conn_t *c)
{
    if (c->ext == NULL) c->ext = xcalloc(1, sizeof *c->ext); /* kind MQTT */
    return c->ext;
}

void conn__ext_trim(conn_t *c)
{
    conn_ext_t *x = c->ext;
    if (x == NULL || x->tls != NULL || x->http != NULL || x->acks != NULL ||
        x->v5 != NULL || x->kind != LISTENER_MQTT)
        return;
    free(x);
    c->ext = NULL;
}

/* Starts (or restarts) reading c with the callbacks of its transport. */
static void start_reading(conn_t *c)
{
    if (conn__tls(c) != NULL)
        uv_read_start((uv_stream_t *)&c->tcp, tls_on_alloc, tls_on_read);
    else
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

void conn__open(loop_t *l, int fd, unsigned kind, tls_ctx_t *ctx)
{
    conn_t *c = open_fd(l, fd, 0);
    if (c == NULL) return;
    if (kind != LISTENER_MQTT) conn__ext(c)->kind = (uint8_t)kind;
    if (ctx != NULL && (conn__ext(c)->tls = tls_create(ctx)) == NULL) {
        conn__close(c, 0, 0, "cannot create a TLS session");
        return;
    }
    /* h2c starts its HTTP/2 session now; h2 once ALPN chose it */
    if (kind == LISTENER_HTTP && ctx == NULL && http__open(c) != 0) {
        conn__close(c, 0, 0, err_str(UVMQ_ENOMEM));
        return;
    }
    start_reading(c);
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
    in->len = old != NULL ? old->len : 0;
    in->need = old != NULL ? old->need : 0;
    in->cap = (uint32_t)want; /* < max_packet_size + LOOP_READ_BUF < 2^32 */
    if (in->len) memcpy(in->data, old->data, in->len);
    free(old);
    c->in = in;
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    conn_t *c = h->data;
    loop_t *l = c->loop;
    size_t want = in_len(c) + LOOP_READ_BUF;
    size_t need = c->in != NULL ? c->in->need : 0;
    if (in_len(c) == 0 && !l->rbuf_busy) {
        l->rbuf_busy = 1;
        *buf = uv_buf_init((char *)l->rbuf, LOOP_READ_BUF);
    } else if (grow_in(c, need > want ? need : want) == 0) {
        *buf = uv_buf_init((char *)c->in->data + c->in->len,
                           (unsigned)(c->in->cap - c->in->len));
    } else {
        *buf = uv_buf_init(NULL, 0); /* on_read gets UV_ENOBUFS */
    }
}

static conn_rc_t dispatch(conn_t *c, const uint8_t *frame, size_t len)
{
    pkt_t p;
    conn_rc_t rc = CONN_OK;
    loop_t *l = c->loop;
    c->last_rx = (uint32_t)uv_now(&l->uv);
    if (c->state == CONN_NEW) {
        rc = conn__handle_connect(c, frame, len);
        if (rc != CONN_MIGRATE) { /* a moved CONNECT counts where handled */
            l->pkts_in++;
            l->connects += (frame[0] >> 4) == PKT_CONNECT;
        }
        return rc;
    }
    l->pkts_in++; /* folded into b->cnt once per tick */
    int err = pkt_decode(&p, c->version, frame, len, &l->arena);
    if (err < 0) return conn__fail(c, pkt_err_reason(err), err_str(err));
    switch (p.type) {
    case PKT_PUBLISH: rc = conn__handle_publish(c, &p); break;
    case PKT_PUBACK:
    case PKT_PUBREC:
    case PKT_PUBREL:
    case PKT_PUBCOMP: rc = conn__handle_ack(c, &p); break;
    case PKT_SUBSCRIBE: rc = conn__handle_subscribe(c, &p); break;
    case PKT_UNSUBSCRIBE: rc = conn__handle_unsubscribe(c, &p); break;
    case PKT_PINGREQ: {
        pkt_t r = {.type = PKT_PINGRESP};
        conn__send_pkt(c, &r);
        break;
    }
    case PKT_DISCONNECT: rc = conn__handle_disconnect(c, &p); break;
    case PKT_CONNECT: /* MQTT-3.1.0-2: a second CONNECT is a protocol error */
        rc = conn__fail(c, PKT_RC_PROTOCOL_ERROR, "second CONNECT");
        break;
    case PKT_AUTH: rc = conn__handle_auth(c, &p); break; /* auth.c */
    default:
        rc = conn__fail(c, PKT_RC_PROTOCOL_ERROR, "unexpected packet type");
        break;
    }
    return rc;
}

/* CONN_MIGRATE: moves c to loop c->move_to with data[0..len), its input
 * from the CONNECT on. A duplicate of the socket and a copy of the bytes
 * go there as ITEM_MIGRATE (which takes them), and c closes quietly here:
 * closing its handle closes only this loop's descriptor. The target's
 * load and the broker's connection count include c's successor from now
 * on (its close subtracts them). Returns CONN_GONE. */
static conn_rc_t move_away(conn_t *c, const uint8_t *data, size_t len)
{
    broker_t *b = c->loop->b;
    loop_item_t it = {.kind = ITEM_MIGRATE, .hops = (uint8_t)(c->hops + 1),
                      .fd = -1, .len = len};
    uv_os_fd_t fd = -1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    /* TLS: the session goes along, with the ciphertext not yet decrypted
     * (in the loop's buffer until kept). Nothing of ours is in flight: the
     * client sent its CONNECT after our last handshake flight arrived. */
    if (conn__tls(c) != NULL && (c->writing || tls_keep_input(c->ext->tls) != 0)) {
        conn__close(c, 0, 0, "cannot move the TLS connection to its session's loop");
        return CONN_GONE;
    }
    /* dup() and then FD_CLOEXEC rather than F_DUPFD_CLOEXEC: the broker
     * never forks, and ThreadSanitizer sees a dup() (it does not model
     * fcntl's), so it knows the target loop's descriptor is a new one. */
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 && (it.fd = dup(fd)) >= 0)
        (void)fcntl(it.fd, F_SETFD, FD_CLOEXEC);
    it.bytes = try_malloc(len, (size_t)b->cfg->max_packet_size + LOOP_READ_BUF);
    if (it.fd < 0 || it.bytes == NULL) {
        if (it.fd >= 0) close(it.fd);
        free(it.bytes);
        conn__close(c, 0, 0, "cannot move the connection to its session's loop");
        return CONN_GONE;
    }
    memcpy(it.bytes, data, len);
    if (c->ext != NULL) { /* moves; this side closes without close_notify */
        it.tls = c->ext->tls;
        c->ext->tls = NULL;
    }
    atomic_fetch_add_explicit(&b->loops[c->move_to].load, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&b->n_conns, 1, memory_order_relaxed);
    loop__post(c->loop, c->move_to, &it);
    conn__close(c, 0, CLOSE_QUIET | CLOSE_MOVED, "moved to its session's loop");
    return CONN_GONE;
}

/* Frames and dispatches every whole packet in data[0..len). Sets *used to
 * the bytes consumed and *need to the size of the incomplete packet that
 * follows (0 when unknown). Stops early (bytes left unused) when c is
 * throttled. A CONNECT for another loop's session moves c there with the
 * bytes from that CONNECT on (none is processed here). Returns CONN_OK
 * or CONN_GONE. */
static conn_rc_t process(conn_t *c, const uint8_t *data, size_t len, size_t *used,
                         size_t *need)
{
    size_t off = 0;
    conn_rc_t rc = CONN_OK;
    *need = 0;
    while (rc == CONN_OK && c->state != CONN_CLOSING && !c->throttled) {
        size_t flen = 0, want = 0;
        int fr = pkt_frame(data + off, len - off, c->loop->b->cfg->max_packet_size,
                           &flen, &want);
        if (fr == PKT_NEED_MORE) {
            *need = want;
            break;
        }
        if (fr == UVMQ_EPKT_TOO_LARGE) {
            rc = conn__fail(c, PKT_RC_PACKET_TOO_LARGE, err_str(fr));
        } else if (fr < 0) {
            rc = conn__fail(c, PKT_RC_MALFORMED, err_str(fr));
        } else {
            rc = dispatch(c, data + off, flen);
            arena_reset(&c->loop->arena);
            if (rc == CONN_MIGRATE)
                rc = move_away(c, data + off, len - off);
            else
                off += flen;
        }
    }
    *used = off;
    return c->state == CONN_CLOSING ? CONN_GONE : rc;
}

/* Bytes arrived in the loop's shared buffer: process, keep the tail. */
static void read_shared(conn_t *c, const uint8_t *data, size_t n)
{
    size_t used = 0, need = 0;
    if (process(c, data, n, &used, &need) == CONN_GONE || used == n) return;
    size_t rest = n - used;
    if (grow_in(c, need > rest ? need : rest) != 0) {
        conn__fail(c, PKT_RC_PACKET_TOO_LARGE, err_str(UVMQ_ENOMEM));
        return;
    }
    memcpy(c->in->data, data + used, rest);
    c->in->len = (uint32_t)rest;
    c->in->need = (uint32_t)need; /* announced sizes are below 2^28 */
}

/* Bytes arrived in the private buffer: process, compact the rest. */
static void read_own(conn_t *c, size_t n)
{
    size_t used = 0, need = 0;
    conn_in_t *in = c->in;
    in->len += (uint32_t)n;
    if (process(c, in->data, in->len, &used, &need) == CONN_GONE) return;
    in->len -= (uint32_t)used;
    in->need = (uint32_t)need;
    if (in->len > 0 && used > 0) memmove(in->data, in->data + used, in->len);
    if (in->len == 0) { /* idle connections hold no input memory */
        free(in);
        c->in = NULL;
    }
}

/* Backpressure (STYLE 6): a client whose own traffic makes output pile up
 * faster than it reads (e.g. QoS 1 publishes whose PUBACKs it never reads)
 * is not read any more until its unsent bytes fall below half the limit.
 * QoS 0 deliveries to it are dropped above the limit anyway, so this bounds
 * what one connection can make the broker hold. */
static void pause_if_backed_up(conn_t *c)
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
    if (!c->throttled) start_reading(c);
}

/* HTTP/2 bytes: nghttp2 takes them all (it keeps what it needs), so an
 * HTTP/2 connection holds no input of its own; bytes that went to c->in
 * (the shared buffer was busy) are dropped from it once taken. */
static void read_http(conn_t *c, const uint8_t *data, size_t n)
{
    http__input(c, data, n);
    if (c->in != NULL) {
        free(c->in);
        c->in = NULL;
    }
}

/* A read of c ended in EOF or error (a libuv code): no DISCONNECT seen,
 * abnormal, so the will is published (MQTT-3.1.2-8). */
static void read_ended(conn_t *c, int err)
{
    conn__close(c, 0, CLOSE_WILL,
                err == UV_EOF ? "connection closed by peer" : uv_strerror(err));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    loop_t *l = c->loop;
    int shared = buf->base == (char *)l->rbuf;
    if (shared) l->rbuf_busy = 0;
    if (n < 0) {
        read_ended(c, (int)n);
    } else if (n > 0 && c->state != CONN_CLOSING) {
        l->bytes_in += (uint64_t)n;
        if (conn__http(c) != NULL)
            read_http(c, (const uint8_t *)buf->base, (size_t)n);
        else if (shared)
            read_shared(c, l->rbuf, (size_t)n);
        else
            read_own(c, (size_t)n);
        pause_if_backed_up(c);
    }
}

/* ---- TLS read ---- */

/* Ciphertext goes into a second per-loop buffer: the shared one
 * receives the plaintext. OpenSSL copies what it needs out of it during
 * this callback, so one buffer serves every TLS connection of the loop. */
static void tls_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    conn_t *c = h->data;
    loop_t *l = c->loop;
    (void)hint;
    if (l->tls_in == NULL) l->tls_in = xmalloc(LOOP_READ_BUF);
    *buf = uv_buf_init((char *)l->tls_in, LOOP_READ_BUF);
}

/* Plaintext data[0..n) in the loop's shared buffer: framed and handled as
 * bytes read from a plain socket are. */
static void plain_input(conn_t *c, const uint8_t *data, size_t n)
{
    size_t have = in_len(c);
    if (have == 0) {
        read_shared(c, data, n);
    } else if (grow_in(c, have + n) != 0) {
        conn__fail(c, PKT_RC_PACKET_TOO_LARGE, err_str(UVMQ_ENOMEM));
    } else {
        memcpy(c->in->data + have, data, n);
        read_own(c, n);
    }
}

/* Decrypted bytes: to the HTTP/2 session, or framed as MQTT. */
static void tls_plaintext(conn_t *c, const uint8_t *data, size_t n)
{
    if (c->ext->http != NULL)
        http__input(c, data, n); /* nghttp2 takes them all */
    else
        plain_input(c, data, n);
}

/* The handshake of c just finished. A connection of an HTTP listener
 * speaks HTTP/2 only when ALPN chose "h2" (RFC 9113 sections 3.2, 3.3:
 * over TLS, HTTP/2 is always negotiated by ALPN, never assumed): its
 * HTTP/2 session starts now, before any application byte is read. One
 * that negotiated nothing (it offered no ALPN: a client offering others
 * was refused in the handshake, tls.c alpn_select) is closed with one
 * line, counted as a TLS failure. Returns 0, or -1 when c was closed. */
static int tls_established(conn_t *c)
{
    tls_t *t = c->ext->tls;
    char d[96];
    size_t n = 0;
    const uint8_t *p = NULL;
    tls_describe(t, d, sizeof d);
    log_debug("TLS handshake with %s done: %s", conn__peer(c), d);
    if (!conn__is_http(c)) return 0;
    p = tls_alpn(t, &n);
    if (p == NULL || n != 2 || memcmp(p, "h2", 2) != 0) {
        CNT_INC(c->loop->b, tls_failed);
        conn__close(c, 0, 0, "HTTP/2 over TLS needs ALPN \"h2\" (the client negotiated none)");
        return -1;
    }
    if (http__open(c) != 0) {
        conn__close(c, 0, 0, err_str(UVMQ_ENOMEM));
        return -1;
    }
    return 0;
}

/* The session failed: count it and close, logging the reason once. The
 * fatal alert OpenSSL made for the peer goes out first (conn__close
 * waits for it). */
static void tls_failed(conn_t *c)
{
    CNT_INC(c->loop->b, tls_failed);
    conn__close(c, 0, CLOSE_WILL, tls_strerror());
}

/* Ciphertext data[0..n) arrived (NULL, 0: only what the session kept when
 * c moved here): runs the handshake, decrypts into plain (LOOP_READ_BUF
 * bytes: the loop's shared buffer, or conn__read_pending's own), up to
 * LOOP_READ_BUF bytes at a time, and processes the plaintext (MQTT
 * framing, or the HTTP/2 session once ALPN chose "h2"). Every
 * byte fed is used before returning (the buffer is borrowed), even
 * while c is paused: the plaintext then waits in c->in, as on a plain
 * connection, bounded by one read. Stops when c closes or moves. */
static void tls_input(conn_t *c, const uint8_t *data, size_t n, uint8_t *plain)
{
    loop_t *l = c->loop;
    tls_t *t = c->ext->tls;
    int was_done = tls_handshake_done(t);
    int rc = tls_feed(t, data, n);
    assert(plain != l->rbuf || !l->rbuf_busy);
    while (rc == 0 && conn__tls(c) != NULL && c->state != CONN_CLOSING) {
        size_t got = 0, k = 0;
        while (got < LOOP_READ_BUF &&
               (rc = tls_read(t, plain + got, LOOP_READ_BUF - got, &k)) == 0)
            got += k;
        if (!was_done && tls_handshake_done(t)) {
            was_done = 1;
            if (tls_established(c) != 0) break;
        }
        if (got > 0) tls_plaintext(c, plain, got);
        if (rc == TLS_WANT_READ) break;
        /* rc == 0: the buffer filled up, more may wait decrypted */
    }
    if (conn__tls(c) == NULL) return; /* moved to another loop with its session */
    if (rc == UVMQ_ETLS)
        tls_failed(c);
    else if (rc == TLS_CLOSED)
        conn__close(c, 0, CLOSE_WILL, "connection closed by peer (TLS close_notify)");
    if (tls_has_output(t)) loop__mark_dirty(c);
}

static void tls_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (n < 0) {
        read_ended(c, (int)n);
    } else if (n > 0 && c->state != CONN_CLOSING) {
        c->loop->bytes_in += (uint64_t)n; /* ciphertext, as read */
        tls_input(c, (const uint8_t *)buf->base, (size_t)n, c->loop->rbuf);
        pause_if_backed_up(c); /* running connections only */
    }
}

void conn__open_moved(loop_t *l, int fd, uint8_t *bytes, size_t len,
                      uint8_t hops, tls_t *tls)
{
    conn_t *c = open_fd(l, fd, 1);
    if (c == NULL) tls_destroy(tls);
    if (c != NULL) {
        c->hops = hops;
        if (tls != NULL) conn__ext(c)->tls = tls;
        if (grow_in(c, len) != 0) {
            conn__close(c, 0, 0, err_str(UVMQ_ENOMEM));
        } else {
            memcpy(c->in->data, bytes, len); /* as if just read */
            read_own(c, len);
        }
        if (conn__tls(c) != NULL && c->state != CONN_CLOSING) tls_input(c, NULL, 0, l->rbuf);
        if (c->state == CONN_ACTIVE) pause_if_backed_up(c);
        if (c->state != CONN_CLOSING && !c->read_paused && !c->throttled)
            start_reading(c);
    }
    free(bytes);
}

void conn__resume(conn_t *c)
{
    c->last_rx = (uint32_t)uv_now(&c->loop->uv);
    if (in_len(c) > 0) read_own(c, 0); /* input that came with the CONNECT */
    if (!conn__running(c)) return;
    pause_if_backed_up(c);
    if (!c->read_paused && !c->throttled) start_reading(c);
}

/* What a takeover reads of the connection it replaces: a client that
 * sends DISCONNECT and reconnects at once has little in flight. */
#define TAKEOVER_READ_MAX (4 * LOOP_READ_BUF)

int conn__read_pending(conn_t *c)
{
    loop_t *l = c->loop;
    uv_os_fd_t fd = -1;
    if (!conn__running(c) || conn__http(c) != NULL || c->throttled ||
        uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0)
        return 0;
    /* The new connection's CONNECT may still be in the loop's read
     * buffer and its decode in the loop's arena: c gets its own. */
    arena_t saved = l->arena;
    arena_init(&l->arena, saved.limit);
    uint8_t *buf = xmalloc(2 * LOOP_READ_BUF); /* ciphertext, plaintext */
    for (size_t total = 0; total < TAKEOVER_READ_MAX && conn__running(c) && !c->throttled;) {
        ssize_t n = recv(fd, buf, LOOP_READ_BUF, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n <= 0) {
            read_ended(c, n == 0 ? UV_EOF : uv_translate_sys_error(errno));
            break;
        }
        total += (size_t)n;
        l->bytes_in += (uint64_t)n;
        if (conn__tls(c) != NULL)
            tls_input(c, buf, (size_t)n, buf + LOOP_READ_BUF);
        else
            plain_input(c, buf, (size_t)n);
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

/* See broker_int.h: the admission rules of every PUBLISH sent. */
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

/* The whole pending batch b went out at once: releases it and, as the
 * write callback would, gives the output object back. */
static void written_now(conn_t *c, out_batch_t *b)
{
    c->unsent -= b->bytes;
    conn__batch_reset(b); /* releases the message references */
    out_put(c);
    if (c->state == CONN_CLOSING) {
        close_flushed(c);
    } else {
        resume_if_drained(c);
        if (conn__http(c) != NULL) http__written(c);
    }
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

/* Writes the pending batch of c: first straight to the socket
 * (uv_try_write), which usually takes it all, so the output object goes
 * back to the pool at once and a burst of CONNACKs or PINGRESPs does not
 * hold one per connection until the next loop turn; what the kernel does
 * not take goes out with one uv_write, completed in on_write. */
void conn__flush(conn_t *c)
{
    conn_out_t *o = c->out;
    out_batch_t *b = c->batch;
    loop_t *l = c->loop;
    conn_ext_t *x = c->ext; /* NULL on a plain MQTT connection */
    if (x != NULL && x->tls != NULL) {
        flush_tls(c);
        return;
    }
    if (c->writing || c->handle_closing) return;
    if (x != NULL && x->http != NULL && c->state != CONN_CLOSING) {
        http__pull(c); /* may close c, or give it a batch */
        o = c->out;
        b = c->batch;
    }
    if (b == NULL || b->n == 0) {
        if (c->state == CONN_CLOSING) close_flushed(c);
        return;
    }
    fill_bufs(l, b);
    l->bytes_out += b->bytes;
    int rc = uv_try_write((uv_stream_t *)&c->tcp, l->bufs, (unsigned)b->n);
    if (rc >= 0 && (size_t)rc == b->bytes) {
        written_now(c, b);
        return;
    }
    size_t nbufs = b->n;
    uv_buf_t *rest = skip_written(l->bufs, &nbufs, rc > 0 ? (size_t)rc : 0);
    if (rc >= 0 || rc == UV_EAGAIN) {
        set_pend(c, c->pend ^ 1); /* b is now the writing batch, owned
                                     by the request */
        c->writing = 1;
        o->wreq.data = c;
        rc = uv_write(&o->wreq, (uv_stream_t *)&c->tcp, rest, (unsigned)nbufs, on_write);
    }
    if (rc < 0) {
        if (c->writing) set_pend(c, c->pend ^ 1);
        c->writing = 0;
        c->unsent -= b->bytes;
        conn__batch_reset(b);
        conn__close(c, 0, CLOSE_WILL, uv_strerror(rc));
        conn__close_handle(c);
    }
}

/* ---- TLS write ---- */

/* The loop's ciphertext buffer (l->tls_out) is kept between passes up to
 * this size; a larger one (a pass of big messages) is freed after it. */
#define TLS_OUT_KEEP (1024 * 1024)

/* See broker_int.h. The one loop over the entries both encrypts and
 * releases; tls_pass_put gathers or encrypts in place. */
int conn__tls_encrypt(conn_t *c)
{
    loop_t *l = c->loop;
    out_batch_t *b = c->batch;
    size_t plain = b->bytes;
    uint32_t n = b->n;
    tls_pass_t p;
    if (l->tls_stage == NULL) l->tls_stage = xmalloc(TLS_RECORD_MAX);
    l->tls_out_len = 0;
    tls_pass_begin(&p, c->ext->tls, l->tls_stage, &l->tls_out, &l->tls_out_len, &l->tls_out_cap);
    for (uint32_t i = 0; i < n; i++) {
        out_ent_t *e = &b->v[i];
        tls_pass_put(&p, e->base != NULL ? e->base : b->scratch + e->off, e->len, i + 1 < n);
        if (e->ref != NULL) msg_release(&e->ref);
        if (e->chunk != NULL) loop__chunk_release(&e->chunk);
    }
    int rc = tls_pass_end(&p);
    b->n = 0;
    b->bytes = 0;
    b->scratch_len = 0;
    c->unsent -= plain;
    return rc;
}

/* The kernel took only done bytes of the ciphertext in l->tls_out: the
 * loop's buffer becomes the scratch of c's writing batch until on_write,
 * and the loop takes that batch's old array as its next buffer (no copy,
 * no allocation). Writes the rest; returns uv_write's result. */
static int write_rest(conn_t *c, size_t done)
{
    loop_t *l = c->loop;
    out_batch_t *w = &c->out->batch[c->pend ^ 1];
    uint8_t *spare = w->scratch;
    size_t spare_cap = w->scratch_cap;
    w->scratch = l->tls_out;
    w->scratch_cap = l->tls_out_cap;
    w->scratch_len = l->tls_out_len;
    w->bytes = l->tls_out_len - done;
    l->tls_out = spare;
    l->tls_out_cap = spare_cap;
    l->tls_out_len = 0;
    c->unsent += w->bytes;
    uv_buf_t buf = uv_buf_init((char *)w->scratch + done, (unsigned)w->bytes);
    c->out->wreq.data = c;
    int rc = uv_write(&c->out->wreq, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
    if (rc == 0) {
        c->writing = 1;
    } else {
        c->unsent -= w->bytes;
        conn__batch_reset(w);
    }
    return rc;
}

/* conn__flush for TLS: one pass over the pending batch (for HTTP/2, after
 * http__pull put its frames there) into the loop's ciphertext buffer,
 * then one write of it: straight to the socket, which usually takes it
 * all (no memory of c's holds it afterwards), else the rest with uv_write
 * (write_rest). Once the ciphertext is written, here or in on_write,
 * HTTP/2 hears of it (http__written). */
static void flush_tls(conn_t *c)
{
    loop_t *l = c->loop;
    int rc = 0;
    if (c->writing || c->handle_closing) return;
    if (c->ext->http != NULL && c->state != CONN_CLOSING) {
        http__pull(c); /* HTTP/2 frames into the batch; may close c */
        if (c->handle_closing) return;
    }
    if ((c->batch == NULL || c->batch->n == 0) && !tls_has_output(c->ext->tls)) {
        if (c->state == CONN_CLOSING) close_flushed(c);
        return;
    }
    if (c->batch == NULL) conn__out_attach(c);
    rc = conn__tls_encrypt(c);
    if (rc == 0 && l->tls_out_len > 0) {
        uv_buf_t buf = uv_buf_init((char *)l->tls_out, (unsigned)l->tls_out_len);
        l->bytes_out += l->tls_out_len; /* ciphertext: what the socket gets */
        rc = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
        if (rc == UV_EAGAIN) rc = 0;
        if (rc >= 0) rc = (size_t)rc < l->tls_out_len ? write_rest(c, (size_t)rc) : 0;
    }
    l->tls_out_len = 0;
    if (l->tls_out_cap > TLS_OUT_KEEP) {
        free(l->tls_out);
        l->tls_out = NULL;
        l->tls_out_cap = 0;
    }
    if (rc < 0) {
        if (rc == UVMQ_ETLS) CNT_INC(l->b, tls_failed);
        conn__close(c, 0, CLOSE_WILL, rc == UVMQ_ETLS ? tls_strerror() : uv_strerror(rc));
        conn__close_handle(c);
    } else if (!c->writing) { /* all written, as on_write would finish */
        out_put(c);
        if (c->state == CONN_CLOSING) {
            close_flushed(c);
        } else {
            resume_if_drained(c);
            if (c->ext->http != NULL) http__written(c);
        }
    }
}

/* The write is done: releases its references; an idle connection gives
 * its output object back (req lives in it: not used after this). */
static void on_write(uv_write_t *req, int status)
{
    conn_t *c = req->data;
    out_batch_t *w = &c->out->batch[c->pend ^ 1];
    c->unsent -= w->bytes;
    conn__batch_reset(w); /* releases the message references */
    c->writing = 0;
    if (status < 0) {
        conn__close(c, 0, CLOSE_WILL, uv_strerror(status));
        conn__close_handle(c);
    } else if (c->batch->n > 0 || (conn__tls(c) != NULL && tls_has_output(c->ext->tls))) {
        loop__mark_dirty(c);
        resume_if_drained(c);
    } else {
        out_put(c);
        if (c->state == CONN_CLOSING) {
            close_flushed(c);
        } else {
            resume_if_drained(c);
            if (conn__http(c) != NULL) http__written(c);
        }
    }
}

/* ---- close ---- */

const char *conn__id(const conn_t *c)
{
    if (conn__is_http(c)) return "(http)";
    return c->sess != NULL ? c->sess->client_id : "-";
}

void conn__close(conn_t *c, uint8_t reason, unsigned flags, const char *why)
{
    int was_active = c->state == CONN_ACTIVE;
    if (c->state == CONN_CLOSING) {
        if (c->lingering && c->loop->stopping) conn__close_handle(c); /* loop__stop */
        return;
    }
    c->state = CONN_CLOSING;
    c->since = (uint32_t)uv_now(&c->loop->uv);
    if (flags & CLOSE_QUIET)
        log_debug("closing client %s (%s): %s", conn__id(c), conn__peer(c), why);
    else
        log_info("closing client %s (%s): %s", conn__id(c), conn__peer(c), why);
    uv_read_stop((uv_stream_t *)&c->tcp);
    conn__throttle_forget(c);
    persist__conn_gone(c); /* acks it still waits for: never sent */
    if ((flags & CLOSE_DISCONNECT) && was_active && c->version == PKT_V5) {
        pkt_t d = {.type = PKT_DISCONNECT};
        d.u.disconnect.reason = reason;
        conn__reason_string(c, &d, &d.u.disconnect.props, why); /* 3.14.2.2.3 */
        conn__send_pkt(c, &d);
        c->linger = conn__http(c) == NULL; /* see close_flushed */
    }
    if (flags & CLOSE_MOVED) c->moved = 1;
    if (conn__http(c) != NULL) http__closing(c); /* GOAWAY, event streams end */
    if (c->sess != NULL)
        sess__detach(c->loop, c->sess, (flags & CLOSE_WILL) != 0,
                     (flags & CLOSE_TAKEN) != 0);
    if (conn__tls(c) != NULL) {
        tls_shutdown(c->ext->tls); /* close_notify after the last data */
        if (tls_has_output(c->ext->tls)) loop__mark_dirty(c);
    }
    if (!c->writing && (c->batch == NULL || c->batch->n == 0) &&
        (conn__tls(c) == NULL || !tls_has_output(c->ext->tls)))
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
    conn__close(c, reason, CLOSE_DISCONNECT | CLOSE_WILL, why);
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
    conn__throttle_forget(c);
    persist__conn_gone(c);
    if (c->out != NULL) conn__out_free(c->out);
    free(c->in);
    conn__hello_free(c);
    alias__out_disable(c);
    if (c->ext != NULL) { /* persist__conn_gone took the acks */
        conn__v5_free(c);
        tls_destroy(c->ext->tls);
        if (c->ext->http != NULL) http__free(c);
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
    loop__unmark_dirty(c);
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
    const broker_config_t *cfg = c->loop->b->cfg;
    uint32_t t = (uint32_t)now; /* unsigned differences with since, last_rx */
    if (c->state == CONN_NEW) {
        if (t - c->since >= cfg->connect_timeout_ms)
            conn__close(c, 0, 0, conn__is_http(c)
                                     ? "no HTTP/2 preface within connect_timeout_ms"
                                     : "no CONNECT within connect_timeout_ms");
    } else if (c->state == CONN_HTTP) {
        http__sweep(c, t);
    } else if (c->state == CONN_ACTIVE) {
        /* MQTT-3.1.2-24: nothing received for 1.5 x keep-alive. */
        if (c->keepalive != 0 && t - c->last_rx >= (uint32_t)c->keepalive * 1500)
            conn__close(c, PKT_RC_KEEP_ALIVE_TIMEOUT,
                        CLOSE_DISCONNECT | CLOSE_WILL, "keep-alive timeout");
    } else if (c->state == CONN_CLOSING && !c->handle_closing &&
               t - c->since >= CLOSE_GRACE_MS) {
        conn__close_handle(c);
    }
    if (conn__tls(c) != NULL && !c->writing) tls_sweep(c->ext->tls); /* idle: free buffers */
}

/*
 * conn_int.h - one connection (conn.c): conn_t, its out-batch and the
 * functions that append to it, the dirty list, the transport it holds
 * (transport.h) and its life from accept to free. The fan-out's
 * per-subscriber step (conn__send_shared) is inline here.
 */
#ifndef UVMQ_BROKER_CONN_INT_H
#define UVMQ_BROKER_CONN_INT_H

#include "chunk_int.h"
#include "loop_int.h"

typedef struct conn_hello_s conn_hello_t; /* connect_int.h */

/* Flags for conn__close beyond CONN_CLOSE_DISCONNECT, CONN_CLOSE_WILL and
 * CONN_CLOSE_QUIET (transport.h). */
#define CONN_CLOSE_TAKEN 0x08 /* taken over: detach the session without
                                 ending it (the new connection has it) */
#define CONN_CLOSE_MOVED 0x10 /* moved to another loop: not counted */

/* A PUBLISH of at most this many bytes goes out whole rather than as a
 * referenced payload: a QoS 0 fan-out shares it from a chunk (chunk.c),
 * other deliveries copy it into scratch (conn.c says what it measured). */
#define PUBLISH_COPY_MAX 256

/* One iovec-to-be: borrowed bytes (base != NULL, kept alive by ref or
 * chunk) or an offset into the batch's scratch bytes (base == NULL). */
typedef struct out_ent_s {
    const uint8_t *base;
    uint32_t off;
    uint32_t len;
    msg_t *ref;         /* owned message reference, or NULL */
    pkt_chunk_t *chunk; /* owned chunk reference, or NULL */
} out_ent_t;

/* Entries kept inside the batch itself: the first deliveries of a tick
 * write next to the batch header (no separate array to miss in cache). */
#define OUT_INLINE 2

/* Hot first (a delivery touches v, n, cap, bytes and inl[0]: one cache
 * line, the batch being line-aligned), then what control packets use. */
typedef struct out_batch_s {
    out_ent_t *v; /* inl, or a heap array once more entries are needed */
    uint32_t n, cap;
    size_t bytes; /* total bytes of all entries */
    out_ent_t inl[OUT_INLINE];
    uint8_t *scratch; /* encoded control packets, per-subscriber heads and
                         small PUBLISH packets copied whole (conn.c) */
    size_t scratch_len, scratch_cap;
} __attribute__((aligned(64))) out_batch_t;

/* A connection's output while it has any: the two out-batches (one
 * filling, one being written) and the write request. Taken from the
 * loop's pool with the first byte to send and given back when a write
 * completes with nothing pending, so an idle connection holds none; the
 * arrays stay with the pooled object and are reused. */
typedef struct conn_out_s {
    out_batch_t batch[2]; /* batch[conn->pend] fills */
    uv_write_t wreq;      /* the one write in flight; data = the conn */
    struct conn_out_s *next_free; /* loop's pool */
    uint64_t hold_gen;    /* not written until this generation of the
                             loop's batches is committed (persist.c);
                             here, not in conn_t: only output is held */
} conn_out_t;

/* ---- connection ---- */

/* Input a connection holds between reads: the start of a unit (an MQTT
 * packet) split across reads, allocated only then and freed once it is
 * whole, with the transport it is for (conn_feed). */
typedef struct conn_in_s {
    const transport_t *tp; /* the transport that left the bytes */
    void *self;            /* and its state */
    uint32_t len, cap;     /* bytes held; bytes data can hold */
    uint32_t need;         /* size of the unit being received, or 0 */
    uint8_t data[];
} conn_in_t;

/* CONN_NEW until the protocol's handshake is done (an MQTT CONNECT
 * answered, an HTTP/2 preface), under connect_timeout_ms; CONN_ACTIVE
 * while running (an MQTT connection then has its session attached). */
enum conn_state { CONN_NEW = 0, CONN_ACTIVE, CONN_CLOSING };

/* What only some connections have, behind one pointer (conn_t.ext), so
 * that a plain MQTT connection pays 8 bytes for all of it. Idle memory is
 * counted in malloc's 16-byte steps: conn_t at 376 bytes takes a 384-byte
 * chunk, at 384 or 392 a 400-byte one (architecture.md, "Memory"). Made
 * by conn__ext on first need; owned by the connection and freed with it,
 * or sooner by conn__ext_trim once nothing is left in it. A connection
 * without one speaks MQTT over plain TCP (conn__tp). */
typedef struct conn_ext_s {
    const transport_t *tp;    /* the transport conn.c calls (transport.h):
                                 the listener's, perhaps TLS wrapping the
                                 protocol */
    void *tp_data;            /* its state (owned by it), or NULL */
    const transport_t *proto; /* the protocol at the core of tp (MQTT,
                                 HTTP/2): for logs */
    struct ack_fifo_s *acks;  /* acknowledgements waiting for commits, in
                                 order (persist.c); NULL when none */
    struct conn_v5_s *v5;     /* topic aliases and enhanced authentication
                                 (alias.c, auth.c), or NULL */
    conn_auth_t *verify;      /* CONN_NEW: the password verification of
                                 the CONNECT, under way or with its verdict
                                 (access.c), or NULL */
} conn_ext_t;

struct conn_s {
    /* Hot: every delivery touches these; kept together at the top so a
     * fan-out to 1,000 connections reads two cache lines of each. */
    loop_t *loop;
    sess_t *sess;         /* attached session (borrowed) */
    conn_t *dirty_next;   /* loop's dirty list */
    size_t unsent;        /* bytes in flight + pending */
    conn_out_t *out;      /* output, or NULL when there is none */
    out_batch_t *batch;   /* &out->batch[pend], the one filling, or NULL
                             with out (not recomputed per delivery) */
    uint32_t peer_max_packet; /* client's Maximum Packet Size (v5) */
    uint8_t state;        /* enum conn_state */
    uint8_t version;      /* PKT_V31/V311/V5 once CONNECT is decoded */
    unsigned dirty : 1;   /* on the dirty list */
    unsigned writing : 1; /* a uv_write is in flight */
    unsigned handle_closing : 1; /* uv_close was called */
    unsigned warned_drop : 1; /* the QoS 0 drop warning was logged */
    unsigned got_disconnect : 1;
    unsigned read_paused : 1; /* reading stopped: unsent > max_out_bytes */
    unsigned moved : 1;   /* handed to another loop: not counted closed */
    unsigned pend : 1;    /* index of the pending batch; !pend is writing */
    unsigned peer_family : 3; /* 4, 6, or 0 when unknown */
    unsigned alias_out : 1; /* v5 client takes topic aliases from us: its
                               PUBLISH packets are encoded per connection
                               (alias.c; counted in loop->n_alias_out) */
    unsigned no_problem_info : 1; /* v5 Request Problem Information 0:
                                     Reason Strings only in CONNACK and
                                     DISCONNECT (MQTT-3.1.2-29) */
    unsigned linger : 1;    /* we sent DISCONNECT: linger once it is out */
    unsigned lingering : 1; /* FIN sent, dropping input until EOF (conn.c) */
    unsigned anon_ok : 1;   /* its listener takes clients without a user
                               name (config__anonymous) */
    uint8_t throttled;    /* 0, or why c is paused (enum in throttle.c) */
    uint8_t hops;         /* times this connection was moved (CONNECT) */
    union {               /* (in a padding hole: no extra bytes) */
        uint16_t wait_loop; /* throttle.c (CONN_ACTIVE): 1 + index of the
                               loop c waits for */
        uint16_t move_to; /* CONN_MIGRATE (CONN_NEW): index of the loop
                             owning the session */
    };
    uint16_t keepalive;   /* seconds, as granted; 0 = none */
    uint16_t peer_port;
    /* Cold. Sized with care: an idle connection costs this struct, its
     * session and nothing else (no buffers, no write request). */
    uv_tcp_t tcp;      /* tcp.data = this; memory freed in on_close */
    conn_t *prev, *next;  /* loop's list of all its connections */
    union {
        conn_hello_t *hello; /* the CONNECT, until the session is attached
                                (CONN_NEW); owned */
        msg_t *probe;     /* throttle.c WAIT_PROBE (CONN_ACTIVE): the
                             message whose fate c awaits; owned */
    };
    conn_in_t *in;        /* partial input, or NULL (owned) */
    conn_ext_t *ext;      /* transport, waiting acks, v5 extras (owned),
                             or NULL: all that costs a plain idle one */
    uint8_t peer_addr[16]; /* for logs: conn__peer formats it */
    uint32_t since;       /* uv_now ms, truncated: accepted or moved here
                             (CONN_NEW) or closing began (CONN_CLOSING) */
    uint32_t last_rx;     /* uv_now ms, truncated, of the last packet in;
                             compared by unsigned difference (< 49 days) */
};

/* Puts c on its loop's dirty list (once) so the flush hook writes it.
 * Inline: every delivery calls it. */
static inline void conn__mark_dirty(conn_t *c)
{
    if (c->dirty) return;
    c->dirty = 1;
    c->dirty_next = c->loop->dirty;
    c->loop->dirty = c;
}
/* Removes c from the dirty list if it is on it. */
void conn__unmark_dirty(conn_t *c);
/* The transport conn.c calls for c, and its state: MQTT over plain TCP
 * (no state) for a connection without an extension. */
static inline const transport_t *conn__tp(const conn_t *c)
{
    return c->ext != NULL ? c->ext->tp : &mqtt_transport;
}
static inline void *conn__tp_data(const conn_t *c)
{
    return c->ext != NULL ? c->ext->tp_data : NULL;
}
/* c's extension, made (zeroed, transport MQTT) when c has none. */
conn_ext_t *conn__ext(conn_t *c);
/* Frees c's extension once it holds nothing (MQTT over plain TCP, no
 * acks, no v5 state); c->ext is then NULL. */
void conn__ext_trim(conn_t *c);
/* 1 when c is past its handshake and not closing: an MQTT connection
 * after CONNACK or an HTTP/2 one after its preface. */
static inline int conn__running(const conn_t *c)
{
    return c->state == CONN_ACTIVE;
}

/* Out-of-line parts of conn__send_shared (conn.c). conn__out_attach
 * gives c (which has none) an output object and returns its pending
 * batch. */
out_batch_t *conn__out_attach(conn_t *c);
void conn__batch_grow(out_batch_t *b);
int conn__drop_qos0(conn_t *c);
/* The admission rules of every PUBLISH sent, both paths (conn.c and the
 * shared fan-out below, which calls it only when one fails): a packet
 * over the client's Maximum Packet Size is dropped and counted
 * (MQTT-3.1.2-25); a QoS 0 one that would take the unsent bytes past
 * max_out is dropped and counted, unless nothing is unsent (so one larger
 * than max_out still goes). Returns 0 to send it, or UVMQ_ELIMIT. Out of
 * line: inlined, it kept conn__send_shared from being inlined (+16 %
 * instructions in bench/micro/deliver.c). */
int conn__admit(conn_t *c, size_t len, int qos0, size_t max_out);

/* A whole small QoS 0 PUBLISH that a fan-out shares among the
 * subscribers of one wire variant: len bytes at p in chunk ch (chunk.c). */
typedef struct shared_pkt_s {
    const uint8_t *p;
    pkt_chunk_t *ch;
    size_t len;
} shared_pkt_t;

/* Appends the shared packet sp to c's pending batch (the fan-out fast
 * path, deliver.c): retains sp->ch, or extends the previous entry when
 * sp->p follows its bytes in the same chunk. conn__send_publish's QoS 0
 * rules apply: dropped and counted (UVMQ_ELIMIT) over the client's maximum
 * packet size or past max_out (the broker's max_out_bytes, which the
 * caller reads once per fan-out). Returns 0 when queued for writing;
 * unlike conn__send_publish, leaves counting it in the loop's msgs_out
 * to the caller (once per fan-out). Inline: it runs once per subscriber
 * of a fan-out. */
static inline int conn__send_shared(conn_t *c, const shared_pkt_t *sp,
                                    size_t max_out)
{
    size_t len = sp->len, unsent = c->unsent;
    if (len > c->peer_max_packet || (unsent > 0 && unsent + len > max_out))
        return conn__admit(c, len, 1, max_out); /* drops and counts */
    out_batch_t *b = c->batch != NULL ? c->batch : conn__out_attach(c);
    uint32_t n = b->n;
    out_ent_t *last = &b->v[n > 0 ? n - 1 : 0];
    if (n > 0 && last->chunk == sp->ch && last->base + last->len == sp->p) {
        last->len += (uint32_t)len; /* the packet before it in ch */
    } else {
        if (n == b->cap) conn__batch_grow(b);
        /* One literal: GCC zeroes it with two 16-byte stores first, which
         * bench/micro/deliver.c measured ~10 % faster than five field
         * stores (fewer instructions, yet slower). */
        b->v[n] = (out_ent_t){.base = sp->p, .len = (uint32_t)len, .chunk = sp->ch};
        b->n = n + 1;
        sp->ch->refs++;
    }
    b->bytes += len;
    c->unsent = unsent + len;
    conn__mark_dirty(c);
    return 0;
}

/* Opens a connection on loop l for the accepted socket fd (taken) that
 * speaks transport tp, whose protocol is proto (tp itself, or the one tp
 * wraps); arg is the listener's for tp->open (its TLS context: borrowed,
 * the connection takes its own reference); anon is the listener's rule
 * for clients without a user name (conn_t.anon_ok). */
void conn__open(loop_t *l, int fd, const transport_t *tp, const transport_t *proto, void *arg,
                int anon);
/* Opens a connection on l for fd (taken), moved here from another loop
 * (not counted as accepted), with no transport state yet. Returns it,
 * ready to read, or NULL when it is already closing (bad socket, loop
 * stopping). */
conn_t *conn__open_fd(loop_t *l, int fd, int moved);
/* Gives c transport tp (state self, taken) over protocol proto. */
void conn__set_tp(conn_t *c, const transport_t *tp, const transport_t *proto, void *self);
/* Takes c's transport and its state away (for the loop c moves to): c is
 * left MQTT over plain TCP with no state, to close without last words. */
void conn__take_tp(conn_t *c, const transport_t **tp, void **self);
/* Starts (or restarts) reading c. */
void conn__start_reading(conn_t *c);
/* Stops reading c when its unsent output passed max_out_bytes (STYLE 6
 * backpressure; resumed once half of it is written). */
void conn__pause_if_backed_up(conn_t *c);
/* Restarts reading after a deferred CONNECT finished or a throttle ended,
 * first processing whatever input arrived meanwhile (unless c is paused
 * again by backpressure or throttling). */
void conn__resume(conn_t *c);
/* Takeover: processes, in order, what the peer of c (attached, on this
 * loop) already sent and the broker has not read yet: a client that sent
 * DISCONNECT (with a new Session Expiry Interval, or reason 0x00 that
 * discards its will) and reconnected at once must find its DISCONNECT
 * honoured, whichever socket the loop would have read first. Reads what
 * the socket holds now, at most 256 KiB, into buffers and an arena of its
 * own (the caller's CONNECT may live in the loop's). Returns 1 when c
 * closed meanwhile: its session may have ended (look it up again). */
int conn__read_pending(conn_t *c);
/* Frees an output object (conn_out_t) and its arrays. */
void conn__out_free(conn_out_t *o);
/* Frees the pooled output objects l did not need since the last call
 * (its 1 s sweep). */
void conn__trim_outs(loop_t *l);
/* Frees every pooled output object of l (the loop is ending). */
void conn__outs_dispose(loop_t *l);
/* Appends an encoded control packet to c's pending batch. Returns 0, or
 * UVMQ_EINVAL when p cannot be encoded. */
int conn__send_pkt(conn_t *c, const pkt_t *p);
/* Puts Reason String `why` (static, or outliving the send; NULL: none)
 * into props, the property block of p, when c may get it: a v5 client
 * that did not ask for no problem information (MQTT-3.1.2-29; CONNACK and
 * DISCONNECT may always carry one), and only while p stays within c's
 * Maximum Packet Size (MQTT-3.2.2-19, 3.4.2-2, 3.5.2-2, 3.6.2-2, 3.9.2-1,
 * 3.11.2-1, 3.14.2-3). */
void conn__reason_string(const conn_t *c, pkt_t *p, pkt_props_t *props, const char *why);
/* Reason String for a SUBACK or UNSUBACK with these n reason codes: the
 * first that is not a grant or success, or NULL (subscribe.c). */
const char *subscribe__reason_text(const uint8_t *reasons, uint32_t n);
/* Appends raw bytes (copied) to c's pending batch. */
void conn__send_raw(conn_t *c, const uint8_t *bytes, size_t len);
/* Appends bytes[0..len) to c's pending batch without copying them: the
 * caller keeps them valid until they are written or, should the write
 * not finish in this tick, until its transport's hold op ran. */
void conn__send_borrowed(conn_t *c, const uint8_t *bytes, size_t len);
/* Bytes the PUBLISH of m would take for c (head + payload), with the
 * whole topic and no topic alias (conn__send_publish decides on an alias
 * and checks the size again). */
size_t conn__publish_size(conn_t *c, msg_t *m, uint8_t qos,
                          const uint32_t *ids, size_t n_ids);
/* Appends a PUBLISH of m (retains m for the write). QoS 0 is dropped and
 * counted (returns UVMQ_ELIMIT) when c's unsent bytes would pass
 * max_out_bytes; any QoS is dropped (UVMQ_ELIMIT) when over the client's
 * maximum packet size. Returns 0 when queued for writing. */
int conn__send_publish(conn_t *c, msg_t *m, uint8_t qos, uint8_t retain,
                       uint8_t dup, uint16_t packet_id, const uint32_t *ids,
                       size_t n_ids);
/* Releases the references of a written (or abandoned) batch and empties
 * it, keeping its arrays for reuse up to a size. */
void conn__batch_reset(out_batch_t *b);
/* Writes the pending batch of c if no write is in flight (flush hook). */
void conn__flush(conn_t *c);
/* Closes c: optional v5 DISCONNECT (flags), detaches the session (will per
 * flags), lets queued output drain, then uv_close; c is freed in on_close.
 * `why` is logged. Safe to call twice (the second is a no-op). */
void conn__close(conn_t *c, uint8_t reason, unsigned flags, const char *why);
/* Closes c for a bad packet or protocol violation: counts it by reason
 * (0x81 malformed, 0x95 too large, else protocol error), logs why, sends
 * a v5 DISCONNECT with reason, publishes the will. Returns CONN_GONE. */
conn_rc_t conn__fail(conn_t *c, uint8_t reason, const char *why);
/* Forces uv_close (shutdown, stuck peers). */
void conn__close_handle(conn_t *c);
/* Client id for logs ("-" before CONNECT). */
const char *conn__id(const conn_t *c);
/* The peer's "ip:port" for logs, in a buffer of the calling thread that
 * the next call overwrites ("?" when unknown). */
const char *conn__peer(const conn_t *c);
/* Sweep step for one connection at uv time now. */
void conn__sweep(conn_t *c, uint64_t now);

#endif

/*
 * broker_int.h - types and functions shared by the files of broker/.
 *
 * Ownership in one paragraph: broker_t owns the worker loops, the listener
 * loop, the retained trie (behind a mutex), the session map and the store.
 * Each worker loop runs on its own thread and owns its connections, its
 * router (the subscriptions of its sessions) and the sessions it owns,
 * outright, for the session's whole life; the threading model and how a
 * connection moves to its session's loop are described at the top of
 * inbox.c. A connection borrows its session while
 * attached (sess->conn / conn->sess point at each other). Functions shared
 * between broker/ files carry a double underscore (conn__close).
 */
#ifndef UVMQ_BROKER_INT_H
#define UVMQ_BROKER_INT_H

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../common/arena.h"
#include "../packets/pkt.h"
#include "../queue/queue.h"
#include "../router/router.h"
#include "../storage/store.h"
#include "broker.h"
#include "sink.h"
#include "transport.h"
#include "../tls/tls.h"

/* Hand-offs of one connection between loops before its CONNECT is
 * refused with "Server busy" (the session kept being re-created on
 * another loop meanwhile). */
#define MIGRATE_MAX_HOPS 8

/* Flags for conn__close beyond CONN_CLOSE_DISCONNECT, CONN_CLOSE_WILL and
 * CONN_CLOSE_QUIET (transport.h). */
#define CONN_CLOSE_TAKEN 0x08 /* taken over: detach the session without
                                 ending it (the new connection has it) */
#define CONN_CLOSE_MOVED 0x10 /* moved to another loop: not counted */

/* Enhanced authentication methods a broker can hold (auth.c). */
#define AUTH_METHODS_MAX 8

/* Session expiry value meaning "never" (v5 0xFFFFFFFF; v3.1.1 clean 0). */
#define SESS_NEVER_EXPIRES 0xFFFFFFFFu

/* Size of the loop's shared read buffer (alloc_cb hands it out to any
 * connection that holds no partial packet). */
#define LOOP_READ_BUF (64 * 1024)

typedef struct loop_s loop_t;
typedef struct throttle_loop_s throttle_loop_t;
typedef struct persist_loop_s persist_loop_t;
typedef struct interest_loop_s interest_loop_t;
typedef struct share_loop_s share_loop_t;
typedef struct conn_s conn_t;
typedef struct sess_s sess_t;

/* Broker-wide counters (relaxed atomics: later several loops add to them). */
typedef struct broker_counters_s {
    atomic_uint_fast64_t accepted;      /* connections accepted */
    atomic_uint_fast64_t refused;       /* refused: max_connections */
    atomic_uint_fast64_t closed;        /* connections closed */
    atomic_uint_fast64_t malformed;     /* decode errors */
    atomic_uint_fast64_t too_large;     /* packets over max_packet_size */
    atomic_uint_fast64_t protocol_error;/* protocol violations */
    atomic_uint_fast64_t msgs_in;       /* PUBLISH received */
    atomic_uint_fast64_t msgs_out;      /* PUBLISH sent (queued to write) */
    atomic_uint_fast64_t dropped_qos0;  /* QoS 0 dropped: max_out_bytes */
    atomic_uint_fast64_t dropped_size;  /* over the client's max packet size */
    atomic_uint_fast64_t dropped_queue; /* session queue full */
    atomic_uint_fast64_t expired;       /* messages expired before sending */
    atomic_uint_fast64_t bytes_in;      /* bytes read from clients */
    atomic_uint_fast64_t bytes_out;     /* bytes handed to the socket */
    atomic_uint_fast64_t http_requests; /* HTTP/2 requests answered */
    atomic_uint_fast64_t tls_failed;    /* TLS connections closed by a failed
                                           handshake or a TLS error */
    atomic_uint_fast64_t pkts_in;       /* MQTT packets received, any type */
    atomic_uint_fast64_t pkts_out;      /* MQTT packets other than PUBLISH
                                           sent (msgs_out counts those) */
    atomic_uint_fast64_t connects;      /* CONNECT packets received */
    atomic_uint_fast64_t sess_expired;  /* offline sessions ended by expiry */
    atomic_uint_fast64_t shared;        /* messages a shared subscription
                                           group gave one of its members */
    atomic_uint_fast64_t shared_moved;  /* of those, given to another member
                                           after the first one left or
                                           disconnected (share.c) */
    atomic_uint_fast64_t shared_dropped;/* given to a member that left, with
                                           no other member to take them */
} broker_counters_t;

#define CNT_INC(b, field) \
    atomic_fetch_add_explicit(&(b)->cnt.field, 1, memory_order_relaxed)

/* ---- msg_state_t: the broker's state of each message ----
 *
 * Kept in the owner area of the message's msg_t (queue.h msg_owner): every
 * message the broker creates asks msg_create for sizeof(msg_state_t) bytes,
 * in the same block, which start zeroed. */
typedef struct msg_state_s {
    /* Publisher throttling (throttle.c). congested_loop is 0, or 1 + the
     * index of a worker loop that queued this QoS 1/2 message into a
     * congested session: that loop stores it (relaxed) after incrementing
     * its n_congested; the publishing loop reads it (relaxed) after its
     * local deliveries, or after an acquire load of fwd_pending == 0.
     * fwd_pending counts the worker loops the message was forwarded to
     * that have not yet delivered it (FWD_COUNT) plus a flag (FWD_WAITER)
     * asking the last of them to wake the publisher's loop: the publishing
     * loop adds the targets (relaxed; the outbox flush publishes it with
     * the items) and sets the flag (relaxed, before that flush); each
     * target subtracts one after delivering (acq_rel). */
    _Atomic uint16_t congested_loop;
    _Atomic uint16_t fwd_pending;
    /* Persistence (persist.c). persist_wait counts the other loops that
     * must commit their queue entries of this message before its publisher
     * is acknowledged: the publishing loop adds them (relaxed; the outbox
     * flush publishes it with the items), each of them subtracts one after
     * its commit (acq_rel) and the publishing loop's acknowledgement waits
     * for an acquire load of 0. persist_failed is set (relaxed, before that
     * subtraction) when one of those commits failed; read (relaxed) after
     * that acquire. home is the publishing loop's index, which the last
     * loop to commit wakes; set by the publishing loop before m is shared. */
    _Atomic uint16_t persist_wait;
    uint16_t home;
    _Atomic uint8_t persist_failed;
    /* The publisher's client id hashed (sess__origin_hash; share.c's
     * "sticky" strategy picks a member by it); set before m is shared, 0
     * when unknown. */
    uint16_t origin_hash;
} msg_state_t;

_Static_assert(_Alignof(msg_state_t) <= MSG_OWNER_ALIGN, "msg_state_t in msg_owner");

/* The broker's state of m (mutable even through a const m, as msg_owner).
 * Asserts m was created with it: msg_create(..., sizeof(msg_state_t)). */
static inline msg_state_t *broker__msg(const msg_t *m)
{
    assert(m->owner_size == sizeof(msg_state_t));
    return msg_owner(m);
}

/* ---- session map ---- */

/* sess__find_or_create results. */
#define SESS_NEW 0    /* created, owned by the calling loop */
#define SESS_LOCAL 1  /* exists and is owned by the calling loop */
#define SESS_REMOTE 2 /* owned by another loop: move the connection there */

typedef struct sess_shard_s {
    pthread_mutex_t mu;
    sess_t **buckets; /* chained hash table; owns the sessions */
    size_t n_buckets; /* power of two */
    size_t count;
    uint32_t n_shards; /* the map's: bucket = hash / n_shards */
} sess_shard_t;

/* cfg->session_shards shards, allocated by sess__map_init. */
typedef struct sess_map_s {
    sess_shard_t *shards; /* owned array */
    size_t n_shards;
} sess_map_t;

/* One subscription a session holds (mirrors the router's entry). */
typedef struct sess_sub_s {
    char *filter; /* NUL-terminated, owned */
    uint8_t options;
    uint32_t sub_id;
} sess_sub_t;

/* Every field is the owner loop's alone, except those marked "shard":
 * read and written only under the session's shard mutex. */
struct sess_s {
    conn_t *conn;      /* attached connection or NULL (offline); borrowed;
                          first: the one field a QoS 0 delivery reads */
    sess_t *next;      /* hash chain (shard) */
    loop_t *loop;      /* owner loop: set at creation, before the session
                          is linked, and never changed (read: shard) */
    sess_t *lprev, *lnext; /* owner loop's list of its sessions */
    union {
        uint64_t disconnected_at; /* uv_now ms when it went offline */
        sink_t *sink;      /* to_sink: where its messages go (sink.c; an
                              HTTP/2 event stream); such a session has no
                              connection and is never offline, stored or
                              in the map */
    };
    queue_t queue;     /* QoS 1/2 waiting for window room */
    inflight_t inflight;
    sess_sub_t *subs;  /* owned array; room for sess.c subs_room(n_subs) */
    msg_t *will;       /* owned; NULL when none */
    uint64_t will_at;  /* uv_now ms when a delayed will is due; 0 = none */
    uint32_t n_subs;
    uint32_t expiry;   /* session expiry interval, s; 0 = ends with conn */
    uint32_t will_delay; /* v5 Will Delay Interval, s */
    uint32_t will_expiry; /* v5 Message Expiry of the will, s; 0 = none;
                             counted from publication, not from CONNECT */
    uint64_t store_seq; /* last queue entry seq given out (persist.c) */
    uint32_t hash;
    unsigned version : 3; /* protocol of the last connection (3, 4, 5) */
    unsigned stored : 1;  /* persistent: its row is in the store (or in
                             the loop's pending batch); its filters count
                             in the loop's durable summary */
    unsigned overflow_logged : 1;
    unsigned congested : 1; /* online, queue past the soft limit, publishers
                               being throttled (loop->n_congested counts) */
    unsigned shares : 1;  /* may hold shared subscriptions ($share/...,
                             share.c): set when it joins a group, cleared
                             with all its subscriptions; a hint that
                             spares other sessions the walk of subs */
    unsigned to_sink : 1; /* a sink's session (sink.c): delivers to sink */
    char client_id[];  /* NUL-terminated, in the same block (sized with
                          offsetof: an idle session is this block only);
                          immutable */
};

/* ---- out-batch ---- */

/* A PUBLISH of at most this many bytes goes out whole rather than as a
 * referenced payload: a QoS 0 fan-out shares it from a chunk (chunk.c),
 * other deliveries copy it into scratch (conn.c says what it measured). */
#define PUBLISH_COPY_MAX 256

/* Loop-local block of whole small QoS 0 PUBLISH packets that many
 * connections' batches point into (chunk.c). Not thread-safe: only its
 * loop builds, references and releases it. */
typedef struct chunk_loop_s chunk_loop_t;
typedef struct pkt_chunk_s {
    chunk_loop_t *owner; /* the loop's chunks whose free list it returns to */
    uint32_t refs;   /* batch entries pointing into it, + 1 while it is
                        the loop's current chunk for its variant */
    uint32_t len;    /* bytes used */
    struct pkt_chunk_s *next_free;
    uint8_t data[];
} pkt_chunk_t;

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

/* What a decoded CONNECT asks for, kept until the session is ours. */
typedef struct conn_hello_s {
    msg_t *will;          /* owned until attached to the session */
    uint32_t expiry;      /* session expiry interval, s */
    uint32_t will_delay;  /* v5 Will Delay Interval, s */
    uint32_t will_expiry; /* v5 will Message Expiry, s; 0 = none */
    uint16_t window;      /* inflight window (Receive Maximum) */
    uint8_t clean_start;
    uint8_t assigned;     /* v5: report the generated id in CONNACK */
    uint8_t server_ka;    /* v5: report the granted keep-alive */
    uint8_t response_info; /* v5: Request Response Information was 1 */
    uint16_t alias_max;   /* v5: the client's Topic Alias Maximum, capped
                             by topic_alias_max (0: no outbound aliases) */
} conn_hello_t;

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

/* ---- inbox items (inbox.c) ---- */

enum loop_item_kind {
    ITEM_ACCEPT = 1, /* fd: a socket accepted by listener ptr (borrowed);
                        tls_ctx: a reference to its TLS context, or NULL */
    ITEM_PUBLISH,    /* m: match the loop's router, deliver; one reference;
                        seq: index of the posting loop */
    ITEM_MIGRATE,    /* fd, bytes, len, hops, tp, tp_data: an MQTT
                        connection moved here from another loop, its MQTT
                        input from its CONNECT on, and its transport (TLS:
                        with any ciphertext after that input) */
    ITEM_STOP,       /* shut the loop down */
    ITEM_COMMITTED,  /* ptr: a commit of this loop's batch finished
                        (persist.c; posted by the storage thread) */
    ITEM_ACK_WAKE,   /* a message this loop published may now be
                        acknowledged: run the ack queues (persist.c) */
    ITEM_SHARE       /* m: one reference; ptr: a reference to the shared
                        subscription member (share.c) it is for; hops:
                        re-picks so far; report: as for PUBLISH; track:
                        counted for throttling as a forward; seq: index of
                        the publishing loop */
};

typedef struct loop_item_s {
    uint8_t kind;
    uint8_t hops;    /* ITEM_MIGRATE: moves so far, this one included */
    uint8_t report;  /* ITEM_PUBLISH, ITEM_SHARE: counted in m's
                        persist_wait (msg_state_t); report once this
                        loop's entries of m are committed */
    uint8_t track;   /* ITEM_SHARE: counted in m's fwd_pending and the
                        target's backlog (throttle.c) */
    int fd;
    uint64_t seq;
    union {
        msg_t *m;           /* ITEM_PUBLISH */
        tls_ctx_t *tls_ctx; /* ITEM_ACCEPT: owned reference, or NULL */
        const transport_t *tp; /* ITEM_MIGRATE: the moved transport */
    };
    void *tp_data;          /* ITEM_MIGRATE: its state (owned), or NULL */
    union {
        uint8_t *bytes; /* ITEM_MIGRATE: owned input bytes (len of them) */
        void *ptr;      /* ITEM_COMMITTED: owned commit record;
                           ITEM_ACCEPT: the listener (borrowed);
                           ITEM_SHARE: a member reference (owned) */
    };
    size_t len;
} loop_item_t;

/* A reused vector of items (outboxes, inboxes). */
typedef struct item_vec_s {
    loop_item_t *v;
    size_t n, cap;
} item_vec_t;

/* ---- loop ---- */

/* A worker loop. Every field belongs to the loop's thread except those
 * marked atomic or "inbox". */

struct loop_s {
    broker_t *b;
    unsigned index;
    uv_loop_t uv;
    uv_prepare_t prepare; /* flush hook before polling */
    uv_check_t check;     /* flush hook right after I/O callbacks */
    uv_timer_t sweep;     /* 1 s: keep-alive, connect timeout, expiry */
    uv_async_t async;     /* wakes the loop when its inbox has items */
    uv_thread_t thread;
    uint8_t thread_started;
    uint8_t stopping;     /* STOP received */
    uint8_t uv_closed;    /* uv_loop_close done */
    int close_rc;         /* its result */
    router_t *router;     /* subscriptions of this loop's sessions */
    atomic_size_t n_subs; /* router_count(router) for other loops; 0 once
                             stopping (a stale read is harmless, inbox.c) */
    interest_loop_t *interest; /* which topics router may match, for
                                  other loops (interest.c) */
    atomic_uint load;     /* connections handed here and not yet closed */
    pthread_mutex_t inbox_mu;
    item_vec_t inbox;     /* inbox: items posted by other threads */
    uint8_t inbox_closed; /* inbox: async closed, post without waking */
    item_vec_t work;      /* the swapped-out inbox being processed */
    item_vec_t *out;      /* one outbox per worker loop, flushed per tick */
    sess_t *sessions;     /* sessions this loop owns (sess->lnext) */
    conn_t *conns;        /* every connection of the loop */
    size_t n_conns;
    conn_t *dirty;        /* connections with pending output */
    conn_t *held;         /* dirty ones whose output waits for a commit
                             (out->hold_gen); back on dirty after one */
    router_hits_t hits;   /* reused match vector */
    uint8_t delivering;   /* deliver__local is walking hits, which
                             may be the router's own array: the router
                             must not change (asserted in interest.c) */
    uv_buf_t *bufs;       /* reused iovec array for flushes */
    size_t cap_bufs;
    uint8_t *rbuf;        /* shared read buffer, LOOP_READ_BUF bytes */
    uint8_t rbuf_busy;    /* rbuf is handed to libuv or holds input being
                             processed: nested readers use their own */
    struct tls_loop_s *tls; /* the TLS transport's buffers (conn_tls.c),
                               made with the loop's first TLS connection */
    msg_t **mvec;         /* reused message vector (retained sends) */
    size_t n_mvec, cap_mvec;
    share_loop_t *share;  /* reused picks of shared groups (share.c) */
    arena_t arena;        /* decode temporaries of the packet being
                             handled, whichever connection it came from;
                             reset after each packet */
    conn_out_t *free_outs; /* pool of idle connections' output objects */
    size_t n_free_outs;
    size_t outs_low;      /* fewest in the pool since the last trim */
    uint64_t msgs_out;    /* PUBLISH queued since the last fold into
                             b->cnt (one atomic add per tick, not per
                             delivery) */
    uint64_t bytes_in, bytes_out; /* the same for bytes read and written */
    uint64_t pkts_in, pkts_out, connects; /* the same for MQTT packets in,
                                     control packets out, CONNECTs in */
    atomic_size_t queued; /* QoS 1/2 messages in the queues of l's
                             sessions, at the last sweep (stats) */
    atomic_size_t inflight; /* sent and not yet acknowledged, the same */
    atomic_size_t online; /* l's sessions with a connection, the same */
    struct sys_s *sys;    /* the $SYS publisher (sys.c): loop 0 only, and
                             only when sys_interval is not 0; else NULL */
    chunk_loop_t *chunks; /* small QoS 0 PUBLISH packets shared by
                             fan-outs (chunk.c) */
    unsigned n_alias_out; /* connections with c->alias_out: while 0 the
                             small fan-out never looks at the bit */
    msg_t *credit_msg;    /* references of credit_msg taken in bulk by */
    size_t credit;        /* deliver__local, used by deliveries */
    persist_loop_t *persist; /* the tick's store batch, generations and
                                waiting acknowledgements (persist.c) */
    throttle_loop_t *throttle; /* publisher throttling (throttle.c) */
};

/* ---- broker ---- */

/* One listening socket (listener.c), on the listener loop. Worker loops
 * read kind and name (immutable once started); tls is the listener
 * thread's alone: it hands each accepted socket a reference. */
typedef struct listener_s {
    broker_t *b;
    uint8_t kind;          /* enum listener_kind */
    const transport_t *proto; /* the protocol of its kind (cfg->protocols) */
    const transport_t *tp; /* what its connections get: proto, or TLS
                              wrapping proto */
    const char *bind;      /* borrowed from the config */
    uint16_t port;
    const tls_config_t *tls_cfg; /* borrowed; NULL = plain TCP */
    tls_ctx_t *tls;        /* current context for new connections (a
                              reference); replaced on SIGHUP */
    int fd;                /* listening socket, -1 when closed */
    uv_poll_t poll;
    char name[80];         /* "127.0.0.1:8883 (mqtt, tls)", for logs */
} listener_t;

/* The listener loop runs on the main thread; its fields are the main
 * thread's alone unless marked atomic. */
struct broker_s {
    const broker_config_t *cfg;
    loop_t *loops; /* n_loops worker loops */
    unsigned n_loops;
    uv_loop_t luv; /* listener loop: listening sockets, signals, stop */
    uint8_t luv_init;
    listener_t *listeners; /* the default MQTT listener, then
                              cfg->listeners; owned array */
    unsigned n_listeners;
    uint64_t started_ms; /* uv_hrtime ms at broker_create (uptime) */
    atomic_uint n_http;  /* HTTP/2 connections open (conn_count) */
    uv_signal_t sigint, sigterm;
    uv_signal_t sighup;    /* reloads TLS certificates */
    uv_async_t stop_async;
    item_vec_t *lout; /* listener's outboxes (ACCEPT, STOP) */
    unsigned rr;      /* round-robin start for ties */
    uint8_t stopping; /* listener: stop begun */
    atomic_uint n_conns; /* connections accepted and not yet closed */
    router_retained_t *retained;
    pthread_mutex_t retained_lock;
    sess_map_t sessions;
    struct share_s *share; /* shared subscription groups (share.c) */
    atomic_uint n_shared;  /* members of every group: 0 means a publish
                              skips share.c (one load, no lock) */
    store_t *store;
    broker_counters_t cnt;
    atomic_uint_fast64_t conns_closed_at_stop;
    uint64_t last_refuse_log; /* uv_now ms; rate limit for refusals */
    uint64_t refused_since_log;
    /* Enhanced authentication methods (auth.c): registered before the
     * loops start, read-only after (so loops read them without a lock). */
    const struct auth_method_s *auth_methods[AUTH_METHODS_MAX];
    unsigned n_auth_methods;
};

/* ---- broker.c ---- */

/* ---- sys.c ---- */

/* Starts the $SYS publisher on loop l (loop 0, from loop__init) when
 * sys_interval is not 0: a timer whose first update runs as soon as the
 * loop does. Sets l->sys. */
void sys__start(loop_t *l);
/* Closes l's $SYS timer, if any (loop__close_handles); its memory goes
 * in the close callback. l->sys is NULL after. */
void sys__close(loop_t *l);

/* ---- loop.c ---- */

/* Makes the state each module keeps per loop (chunk, interest, persist,
 * share, throttle) for loop index of b, with no uv loop: loop__init calls
 * it, and so do unit tests that build loops by hand. */
void loop__state_init(loop_t *l, broker_t *b, unsigned index);
/* Frees that state, the loop's pooled output objects and TLS buffers. */
void loop__state_dispose(loop_t *l);
/* Initialises l (uv loop, flush hooks, sweep timer, async, router,
 * outboxes) for broker b. Returns 0 or a libuv error; on failure nothing
 * needs disposing. */
int loop__init(loop_t *l, broker_t *b, unsigned index);
/* Closes the loop's hooks, timer and async (asynchronously); marks the
 * inbox closed so producers stop waking it. */
void loop__close_handles(loop_t *l);
/* Closes the uv loop (on the loop's thread, after uv_run); returns
 * uv_loop_close's result (0 when every handle was closed). */
int loop__close_uv(loop_t *l);
/* Frees the loop's router, vectors and leftovers (main thread, after every
 * worker thread has been joined and the sessions destroyed). */
void loop__dispose(loop_t *l);
/* Adds l->msgs_out to the broker's counter (flush hook, loop exit). */
void loop__fold_counters(loop_t *l);
/* A reference to m for one delivery: from the bulk credit when m is the
 * message being fanned out, else msg_retain. */
msg_t *loop__ref(loop_t *l, msg_t *m);
/* Publishes router_count(l->router) to other loops (after any change). */
void loop__subs_changed(loop_t *l);
/* Shuts the loop down on STOP: closes every connection (v5 DISCONNECT
 * 0x8B, no wills), then its handles once the last one has closed. */
void loop__stop(loop_t *l);
/* Puts c on its loop's dirty list (once) so the flush hook writes it.
 * Inline: every delivery calls it. */
static inline void loop__mark_dirty(conn_t *c)
{
    if (c->dirty) return;
    c->dirty = 1;
    c->dirty_next = c->loop->dirty;
    c->loop->dirty = c;
}
/* Removes c from the dirty list if it is on it. */
void loop__unmark_dirty(conn_t *c);
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
    loop__mark_dirty(c);
    return 0;
}

/* ---- interest.c ---- */

/* Adds or replaces s's subscription in l's router and in s's record, and
 * counts a new one in l's summary (before returning: queue the SUBACK
 * after). Returns router_subscribe's result; *existed as it sets it. */
int interest__subscribe(loop_t *l, sess_t *s, const char *f, size_t len,
                    uint8_t options, uint32_t sub_id, int *existed);
/* Removes s's subscription to f from l's router and summary and from s's
 * record. Returns 0 or UVMQ_ENOTFOUND. */
int interest__unsubscribe(loop_t *l, sess_t *s, const char *f, size_t len);
/* Removes every subscription of s from l's router and summary and empties
 * s's record. */
void interest__unsubscribe_all(loop_t *l, sess_t *s);
/* Makes l's summaries, all zero (loop__state_init); frees them. */
void interest__loop_init(loop_t *l);
void interest__loop_dispose(loop_t *l);
/* The two summary keys of a topic: computed once per PUBLISH. */
void interest__topic_keys(const char *topic, size_t len, uint32_t key[2]);
/* 1 when l may have a subscription matching the topic of key (any
 * thread; a false 1 only costs a forward in vain). */
int interest__may_match(loop_t *l, const uint32_t key[2]);
/* The same, for the subscriptions of l's stored sessions only. */
int interest__may_match_durable(loop_t *l, const uint32_t key[2]);
/* Counts s's filters in (delta +1) or out (-1) of l's durable summary:
 * s->stored is changing. */
void interest__durable_count(loop_t *l, sess_t *s, int delta);

/* ---- persist.c ---- */

/* Every function here does nothing when the broker has no store (the
 * in-process benchmarks) or, for the per-session ones, when the session
 * is not stored. Writes go into the loop's batch for this tick. */

/* The loop that owns every stored (persistent) session: loop 0. Their
 * writes then share one batch per tick, so what a QoS 2 PUBLISH stores
 * (its inbound id and every durable queue entry) commits atomically
 * (storage.md says why). */
loop_t *persist__loop(broker_t *b);
/* Makes l's persistence state (loop__state_init); frees it, with a batch
 * never submitted and reports never made (loop__state_dispose). */
void persist__loop_init(loop_t *l);
void persist__loop_dispose(loop_t *l);
/* Store ids l gives out from now on are past max_id (recovery). */
void persist__ids_after(loop_t *l, uint64_t max_id);
/* 1 while generation gen of l's batches is not committed: output held
 * for it waits (conn_out_t.hold_gen; the flush hook). */
int persist__holds(const loop_t *l, uint64_t gen);
/* The store id for a new message of l (unique across loops). */
uint64_t persist__new_id(loop_t *l);
/* Operations in l's pending batch (0 when none): a handler compares the
 * count before and after to learn whether its acknowledgement must wait
 * for the commit. */
size_t persist__ops(const loop_t *l);
/* Writes s's session row (client id, protocol, expiry, will, online or
 * not) and marks it stored; the first time counts its filters durable. */
void persist__session_put(loop_t *l, sess_t *s);
/* Deletes s's stored state (row, subscriptions, entries, inbound QoS 2
 * ids) and marks it not stored. */
void persist__session_del(loop_t *l, sess_t *s);
/* Writes or deletes one subscription of stored session s. */
void persist__sub_put(loop_t *l, sess_t *s, const char *f, size_t len,
                      uint8_t options, uint32_t sub_id);
void persist__sub_del(loop_t *l, sess_t *s, const char *f, size_t len);
/* Writes queue entry e (its seq set) of stored session s, holding m,
 * with packet_id and state (STORE_ENTRY_*); writes m first if this batch
 * does not hold it yet. */
void persist__entry_add(loop_t *l, sess_t *s, msg_t *m, const queue_entry_t *e,
                        uint16_t packet_id, uint8_t state);
/* Moves entry seq of s to packet_id/state; drop_msg releases its message
 * (QoS 2 after PUBREC). */
void persist__entry_update(loop_t *l, sess_t *s, uint64_t seq, uint16_t packet_id,
                           uint8_t state, int drop_msg);
/* Deletes entry seq of s (no-op for seq 0). */
void persist__entry_del(loop_t *l, sess_t *s, uint64_t seq);
/* Records (add 1) or forgets (add 0) an inbound QoS 2 packet id of s. */
void persist__inq2(loop_t *l, sess_t *s, uint16_t packet_id, int add);
/* Stores m as its topic's retained message, or deletes the topic's
 * retained message when m's payload is empty. */
void persist__retained(loop_t *l, msg_t *m);
/* 1 when a loop given m for a stored session must report its commit of m
 * back: m is QoS 1/2 and acks wait for commits (share.c). */
int persist__report_needed(loop_t *l, const msg_t *m);
/* 1 when the target loop t must report its commit of m back (t may hold
 * a durable destination of m and acks wait for commits). */
int persist__must_report(loop_t *l, loop_t *t, msg_t *m, const uint32_t key[2]);
/* A forwarded m was delivered on l with report set: once l's entries of
 * it are committed (now, if l wrote none), tells m's publishing loop. */
void persist__delivered(loop_t *l, msg_t *m, size_t ops_before);
/* Sends acknowledgement `type` (PUBACK, PUBREC, PUBCOMP) for packet id
 * now, or queues it behind c's waiting ones until generation gen of c's
 * loop is committed (gen 0: nothing to wait for) and, when m is not NULL,
 * until every other loop holding m durably has reported. Returns CONN_OK,
 * or CONN_GONE when c was closed (a v3.1.1 client whose message could not be
 * stored). */
conn_rc_t persist__ack(conn_t *c, uint8_t type, uint32_t id, uint8_t reason,
                       msg_t *m, uint64_t gen);
/* persist__ack's type for a transport's own publish (conn_publish; 0: no
 * MQTT packet type): the answer is its transport's acked(id). */
#define ACK_TRANSPORT 0
/* The same for SUBACK/UNSUBACK (type) with n reason codes (copied when
 * it must wait): a subscription of a stored session is acknowledged once
 * it is committed. Returns CONN_OK. */
conn_rc_t persist__ack_sub(conn_t *c, uint8_t type, uint16_t id, const uint8_t *reasons,
                           uint32_t n, uint64_t gen);
/* The generation that holds everything l has written so far, when
 * acknowledgements wait for commits; else 0. For answers that repeat an
 * earlier one (a resent QoS 2 PUBLISH, an unknown PUBREL) and for holds. */
uint64_t persist__gen_now(loop_t *l);
/* The generation a handler's acknowledgement waits for: l's pending one
 * when the batch grew past ops_before, else 0. */
uint64_t persist__gen_since(loop_t *l, size_t ops_before);
/* Flush hook: submits the tick's batch and wakes the publishing loops of
 * messages whose reports are complete. */
void persist__flush(loop_t *l);
/* ITEM_COMMITTED on l: records the generation, reports the messages of
 * other loops, sends acknowledgements that are now due. */
void persist__committed(loop_t *l, void *rec);
/* ITEM_ACK_WAKE: sends acknowledgements that are now due. */
void persist__run_acks(loop_t *l);
/* Holds c's output until what l's batches hold now is committed: c was
 * just sent a QoS 2 PUBLISH or PUBREL whose stored state is not yet on
 * disk (a crash in between would make the client see it twice). Call it
 * after queuing the packet (the hold lives in c->out). */
void persist__hold(conn_t *c);
/* PUBACKs and PUBCOMPs waiting in c's queue: QoS 1/2 publishes of c not
 * yet answered (v5 Receive Maximum counts them). */
size_t persist__open_acks(const conn_t *c);
/* c is closing: drops its waiting acknowledgements. */
void persist__conn_gone(conn_t *c);
/* Frees an ITEM_COMMITTED record that was never run (shutdown). */
void persist__drop_record(void *rec);

/* ---- recover.c ---- */

/* Loads the store into the loops, the session map and the retained trie
 * before the worker threads start; logs what it recovered. Returns 0 or
 * the store's error. */
int recover__run(broker_t *b);

/* ---- chunk.c ---- */

/* Room for len bytes at the end of l's current chunk of variant v (a new
 * chunk when it is full); *ch is that chunk. Commit with
 * chunk__commit. len is at most PUBLISH_COPY_MAX. */
uint8_t *chunk__reserve(loop_t *l, int v, size_t len, pkt_chunk_t **ch);
/* Marks len reserved bytes of ch as used. */
void chunk__commit(pkt_chunk_t *ch, size_t len);
/* Drops one reference of *chp and NULLs it; the last returns the chunk
 * to its loop's free list (or frees it past a few). */
void chunk__release(pkt_chunk_t **chp);
/* Makes l's chunk state (loop__state_init). */
void chunk__loop_init(loop_t *l);
/* Drops l's current chunks and frees its free list and state (loop teardown; every
 * batch must have released its references first). */
void chunk__loop_dispose(loop_t *l);

/* ---- inbox.c ---- */

/* Appends item to from's outbox for loop index `to` (no lock; flushed at
 * the end of from's tick). Takes the item's references (m, fd). */
void inbox__post(loop_t *from, unsigned to, const loop_item_t *item);
/* Appends item to v (growing it; reused, so no allocation once grown). */
void inbox__append(item_vec_t *v, const loop_item_t *item);
/* Moves each non-empty outbox of out[0..b->n_loops) into its target's
 * inbox (one lock each) and wakes each target once. Any thread; out is
 * the calling thread's own array. */
void inbox__flush_outboxes(broker_t *b, item_vec_t *out);
/* Appends item to t's inbox under its lock and wakes t: for threads that
 * have no outboxes (the storage thread). Takes the item's references. */
void inbox__post_direct(loop_t *t, const loop_item_t *item);
/* uv_async callback of a worker: swaps the inbox out, runs every item. */
void inbox__on_async(uv_async_t *h);
/* Releases the references of items never processed (shutdown). */
void inbox__drop_items(item_vec_t *v);
void inbox__items_dispose(item_vec_t *v);

/* ---- listener.c ---- */

/* Creates the listeners (the default MQTT one on cfg->bind:cfg->port,
 * then cfg->listeners, with their TLS contexts) and starts watching them
 * on the listener loop. Returns 0 or a negative error (logged); what was
 * opened is closed by listener__stop and freed by listener__free. */
int listener__start(broker_t *b);
/* Stops accepting and closes the listening sockets (asynchronously). */
void listener__stop(broker_t *b);
/* SIGHUP: builds a new TLS context for each TLS listener from its files;
 * new connections get it, existing ones keep theirs. One log line per
 * listener: reloaded, or why not (the old context stays). */
void listener__reload(broker_t *b);
/* Frees the listeners (after the listener loop closed their handles). */
void listener__free(broker_t *b);
/* Builds the TLS context of a listener of protocol proto (NULL: none
 * known, no ALPN) from cfg, with the protocol's ALPN list: "mqtt" offered
 * for MQTT; "h2" required for HTTP/2. Returns 0 with *out holding one
 * reference, or UVMQ_ECONFIG with why in err (config.c checks a listener
 * with it). */
int listener__ctx_create(tls_ctx_t **out, const tls_config_t *cfg, const transport_t *proto,
                         char *err, size_t errlen);

/* ---- conn.c ---- */

/* Opens a connection on loop l for the accepted socket fd (taken) that
 * speaks transport tp, whose protocol is proto (tp itself, or the one tp
 * wraps); arg is the listener's for tp->open (its TLS context: borrowed,
 * the connection takes its own reference). */
void conn__open(loop_t *l, int fd, const transport_t *tp, const transport_t *proto, void *arg);
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

/* ---- mqtt.c: the MQTT transport (mqtt_transport, transport.h) ---- */

/* ITEM_MIGRATE on l: opens the MQTT connection moved here (it->fd, its
 * transport it->tp and state it->tp_data, all taken), processes its MQTT
 * input it->bytes[0..len) (taken, freed here; it starts with the
 * CONNECT) as if just read, then what its transport kept, then reads. */
void mqtt__open_moved(loop_t *l, loop_item_t *it);

/* ---- conn_tls.c: the TLS transport ---- */

/* TLS wrapping the listener's protocol: open's arg is the listener's
 * tls_ctx_t (the connection takes its own reference). */
extern const transport_t conn_tls__transport;
/* Encrypts c's pending batch, after anything OpenSSL made outside a
 * pass, into the loop's ciphertext buffer (*out, *len: valid until the
 * next pass on the loop), in one pass of t: small entries are gathered
 * into full records, large ones encrypted in place, and each entry's
 * reference is released as soon as its bytes are encrypted, so no write
 * completion has anything to release. The pending batch is left empty
 * and its bytes leave unsent. Adds close_notify after tls_shutdown. No
 * write of c may be in flight. Returns 0 or UVMQ_ETLS. */
int conn_tls__encrypt(conn_t *c, tls_t *t, const uint8_t **out, size_t *len);
/* Frees l's TLS buffers (loop__dispose). */
void conn_tls__loop_dispose(loop_t *l);

/* ---- connect.c ---- */

/* Handles the first packet of a connection (raw bytes of one frame).
 * Returns CONN_OK, CONN_GONE, or CONN_MIGRATE (c->move_to set: the caller
 * moves c, from this frame on, to its session's loop). */
conn_rc_t connect__handle(conn_t *c, const uint8_t *frame, size_t len);
/* Frees c->hello (and the will it still holds), if any. */
void connect__hello_free(conn_t *c);
/* Refuses c's CONNECT: CONNACK with reason (v3: its nearest return
 * code), then closes. cp is the decoded CONNECT, or NULL when its limits
 * are not at hand: a v5 CONNACK then carries no Reason String. Returns
 * CONN_GONE. */
conn_rc_t connect__refuse(conn_t *c, const pkt_connect_t *cp, uint8_t reason);
/* Handles DISCONNECT from the client. Returns CONN_GONE. */
conn_rc_t connect__handle_disconnect(conn_t *c, const pkt_t *p);

/* ---- alias.c: topic aliases (MQTT 5.0 section 3.3.2.3.4) ----
 *
 * Per connection, both directions, behind c->ext->v5 (made on first
 * need, freed with the connection: aliases never outlive a network
 * connection, MQTT-3.3.2-7). The policy is described at the top of
 * alias.c and in docs/protocol.md. */

/* A topic an alias stands for: an owned copy, cap bytes allocated. */
typedef struct alias_topic_s {
    char *p;
    uint32_t len, cap;
} alias_topic_t;

/* Client to server: what the client set each alias to. */
typedef struct alias_in_s {
    alias_topic_t *v; /* v[alias - 1], max entries; NULL until the first
                         alias the client sets */
    uint16_t max;     /* entries in v (topic_alias_max when made) */
} alias_in_t;

/* One alias we gave the client: its topic, hash and LRU links (aliases,
 * 0 = none). */
typedef struct alias_out_ent_s {
    alias_topic_t t;
    uint32_t hash;
    uint16_t prev, next;
} alias_out_ent_t;

/* Server to client: topic -> alias, the least recently used one taken
 * over when all are in use. */
typedef struct alias_out_s {
    alias_out_ent_t *ent; /* ent[alias], max + 1 entries (0 unused); NULL
                             until the first PUBLISH to the client */
    uint16_t *slots;      /* open-addressing index by topic hash: an
                             alias, or 0 for an empty slot; mask + 1 */
    uint32_t mask;
    uint16_t max;         /* aliases we may use: the client's Topic Alias
                             Maximum capped by topic_alias_max */
    uint16_t used;        /* aliases given out so far: 1..used */
    uint16_t head, tail;  /* most and least recently used alias */
} alias_out_t;

/* MQTT 5 state that only some connections have (c->ext->v5). */
typedef struct conn_v5_s {
    alias_in_t in;
    alias_out_t out;
    struct auth_conn_s *auth; /* auth.c: the CONNECT had an Authentication
                                 Method; NULL otherwise */
} conn_v5_t;

/* What conn__send_publish does about the topic of one PUBLISH. */
typedef struct alias_pick_s {
    uint16_t alias; /* 0: no alias, the whole topic */
    uint8_t known;  /* the client has this alias for this topic: the
                       topic goes empty */
    uint32_t hash;
} alias_pick_t;

/* c's MQTT 5 extension, made (zeroed) when c has none. */
conn_v5_t *alias__v5(conn_t *c);
/* Frees c's MQTT 5 extension (alias tables, authentication state). */
void alias__v5_free(conn_t *c);
/* A PUBLISH from c carries a Topic Alias: checks it against
 * topic_alias_max (0 or above: 0x94, MQTT-3.3.2-8/-9) and, when its topic
 * is empty, replaces it with the topic the alias stands for (borrowed
 * from the table until the next PUBLISH of c), or refuses with 0x82 when
 * the client never set that alias. Returns 0, or UVMQ_EINVAL with *reason
 * set to the v5 reason to close with (*reason is 0 on success). */
int alias__in_resolve(conn_t *c, pkt_publish_t *pub, uint8_t *reason);
/* Records that alias stands for topic (validated) from now on. */
void alias__in_set(conn_t *c, uint16_t alias, const pkt_bin_t *topic);
/* The client allows max aliases (capped): c->alias_out is set and
 * counted in its loop; the tables are made with the first PUBLISH. */
void alias__out_enable(conn_t *c, uint16_t max);
/* Undoes alias__out_enable's count (the connection is freed). */
void alias__out_disable(conn_t *c);
/* Decides the alias for topic t of a PUBLISH to c (c->alias_out set)
 * without changing anything: the alias the client knows, a new one, the
 * least recently used one, or none (short topics). */
void alias__out_pick(conn_t *c, const char *t, size_t len, alias_pick_t *pk);
/* Records pk once the PUBLISH carrying it is queued, so a packet dropped
 * for its size or for max_out_bytes leaves no alias the client never
 * saw. */
void alias__out_commit(conn_t *c, const char *t, size_t len, const alias_pick_t *pk);

/* ---- auth.c: enhanced authentication (MQTT 5.0 section 4.12) ----
 *
 * A registry of methods per broker and the exchange of AUTH packets that
 * a method drives, at CONNECT and for re-authentication. No method is
 * built in: an Authentication Method in CONNECT gets CONNACK 0x8C until
 * one is registered. */

/* What one step of a method decided. */
enum auth_verdict {
    AUTH_SUCCESS = 0, /* authenticated (CONNACK 0x00 / AUTH 0x00) */
    AUTH_CONTINUE,    /* send step->out in AUTH 0x18, wait for the next */
    AUTH_FAIL         /* refused (CONNACK / DISCONNECT 0x87) */
};

/* One step of an exchange: the client's Authentication Data in (in_len 0
 * when absent) and the method's answer out (owned by the method, valid
 * until its next call or end; NULL when none). client_id is the CONNECT's
 * (possibly empty: the server assigns one) or the session's. */
typedef struct auth_step_s {
    conn_t *c;
    const char *client_id;
    size_t client_id_len;
    const uint8_t *in;
    size_t in_len;
    const uint8_t *out;
    size_t out_len;
} auth_step_t;

/* An authentication method: callbacks run on the connection's loop. */
typedef struct auth_method_s {
    const char *name; /* the Authentication Method, compared exactly */
    /* Begins an exchange (CONNECT, or AUTH 0x19 re-authenticate); may
     * set *state, which end frees. Returns enum auth_verdict. */
    int (*start)(void **state, auth_step_t *step);
    /* The client's AUTH 0x18 with the next data. */
    int (*cont)(void *state, auth_step_t *step);
    /* Ends an exchange, whatever its outcome (also when the connection
     * closes in the middle); frees state. May be NULL. */
    void (*end)(void *state);
} auth_method_t;

/* Adds method m (borrowed for the broker's life) to b before the loops
 * start. Returns 0, UVMQ_EEXISTS for a name already there, or UVMQ_ELIMIT
 * past AUTH_METHODS_MAX. */
int auth__register(broker_t *b, const auth_method_t *m);
/* The method named name[0..len), or NULL. */
const auth_method_t *auth__find(const broker_t *b, const uint8_t *name, size_t len);
/* Starts the exchange of a v5 CONNECT that has an Authentication Method
 * (frame[0..len) is that CONNECT: kept while the exchange goes on).
 * Returns CONN_OK when authenticated (go on with the CONNECT: its CONNACK
 * carries the method, auth__connack; then auth__connect_done),
 * CONN_PENDING when an AUTH 0x18 went out and c waits
 * (auth__connecting), or CONN_GONE when refused with CONNACK 0x8C
 * (unknown method) or 0x87 (the method said no). */
conn_rc_t auth__connect_start(conn_t *c, const pkt_connect_t *cp, const uint8_t *frame,
                              size_t len);
/* 1 while c's CONNECT waits for the client's next AUTH. */
int auth__connecting(const conn_t *c);
/* A packet of c while its CONNECT waits: an AUTH 0x18 with the same
 * method steps the exchange; DISCONNECT closes; anything else is refused
 * with CONNACK 0x82 (or the decode error's reason). Returns as
 * auth__connect_start; on CONN_OK, *connect and *connect_len are the kept
 * CONNECT frame (valid until auth__connect_done). */
conn_rc_t auth__connect_step(conn_t *c, const uint8_t *frame, size_t len,
                             const uint8_t **connect, size_t *connect_len);
/* Adds Authentication Method and the method's last data to c's CONNACK
 * properties pp (no-op without enhanced authentication). */
void auth__connack(conn_t *c, pkt_props_t *pp);
/* The CONNECT was answered or refused: ends the method's exchange and
 * frees the kept frame; the method stays for re-authentication. */
void auth__connect_done(conn_t *c);
/* AUTH from a connected client: re-authentication (0x19, then 0x18), or
 * 0x82 without an Authentication Method in CONNECT. Returns CONN_OK or
 * CONN_GONE. */
conn_rc_t auth__handle(conn_t *c, const pkt_t *p);
/* Frees c's authentication state (ending an exchange under way). */
void auth__free(conn_t *c);

/* ---- publish.c ---- */

conn_rc_t publish__handle(conn_t *c, pkt_t *p);
conn_rc_t publish__handle_ack(conn_t *c, const pkt_t *p); /* PUBACK/REC/REL/COMP */
/* Queues PUBACK/PUBREC/PUBREL/PUBCOMP for packet id (reason: v5 only). */
void publish__send_ack(conn_t *c, uint8_t type, uint16_t id, uint8_t reason);
/* Builds a msg from topic, payload and the forwardable subset of props
 * (v5), with expiry from Message Expiry Interval. NULL when too large. */
msg_t *publish__msg_from(broker_t *b, pkt_bin_t topic, pkt_bin_t payload,
                      const pkt_props_t *props, uint8_t qos, uint8_t retain,
                      const void *origin);

/* ---- subscribe.c ---- */

conn_rc_t subscribe__handle(conn_t *c, pkt_t *p);
conn_rc_t subscribe__handle_unsubscribe(conn_t *c, pkt_t *p);

/* ---- deliver.c ---- */

/* Stores m in the retained trie when its retain flag is set, then fans it
 * out: to the matching sessions of l, and (one PUBLISH item each) to every
 * other loop whose router is not empty. Borrows m (each delivery and item
 * retains). Returns the local matches plus the loops forwarded to, so 0
 * means "no matching subscribers" for sure. */
size_t deliver__publish(loop_t *l, msg_t *m);
/* deliver__publish for the broker's own retained $SYS messages (QoS 0):
 * the retained copy is kept in memory only, never written to the store
 * (sys.c regenerates them after a restart). Borrows m. */
void deliver__publish_sys(loop_t *l, msg_t *m);
/* Matches m against l's own router and delivers to those sessions only.
 * Borrows m. Returns the number of matches. */
size_t deliver__local(loop_t *l, msg_t *m);
/* Delivers m to session s with delivery QoS qos, retain flag and v5
 * subscription ids (copied). Borrows m. */
void deliver__sess(loop_t *l, sess_t *s, msg_t *m, uint8_t qos,
                   uint8_t retain, const uint32_t *ids, size_t n_ids);
/* deliver__sess for a message a shared subscription group gave s: a QoS
 * 1/2 entry is tagged with the group's id (share.c hands it to another
 * member if s disconnects before it is acknowledged). */
void deliver__sess_share(loop_t *l, sess_t *s, msg_t *m, uint8_t qos, uint8_t retain,
                         const uint32_t *ids, size_t n_ids, uint32_t group);
/* Moves queued messages into the inflight window while there is room. */
void deliver__drain(sess_t *s);
/* Resends the inflight window (DUP) after a session was resumed. */
void deliver__resend(sess_t *s);
/* Sends the retained messages matching filter to s (after SUBACK). */
void deliver__retained(loop_t *l, sess_t *s, const char *filter,
                         size_t len, uint8_t granted, uint32_t sub_id);

/* ---- throttle.c ---- */

/* Makes l's throttle state (loop__state_init), then starts its timer on
 * the uv loop (loop__init); closes the timer (loop__close_handles);
 * frees the state (loop__state_dispose). */
void throttle__loop_init(loop_t *l);
void throttle__start(loop_t *l);
void throttle__close(loop_t *l);
void throttle__loop_dispose(loop_t *l);
/* A publish begins on l (deliver__publish): forgets what the last one's
 * forwards noted. */
void throttle__publish_begin(loop_t *l);
/* c has just published the QoS 1/2 message m (deliver__publish returned):
 * pauses c when a delivery on this loop found a congested session, when
 * m went to a loop with a congested session (until that loop has
 * delivered m: a probe), or to a loop whose backlog is past its limit.
 * Borrows m (a probe retains it). */
void throttle__note(conn_t *c, msg_t *m);
/* Drops c's throttle state (close): leaves the loop's list, releases the
 * probe. Safe to call twice. */
void throttle__forget(conn_t *c);
/* forward() posts the QoS 1/2 message m from loop l to loop t: counts it
 * in t's backlog and notes in l whether t is congested or backlogged. */
void throttle__forwarding(loop_t *l, loop_t *t, msg_t *m);
/* Loop l has delivered m, forwarded to it by loop index `from`: takes it
 * off l's backlog and m's fwd_pending, and wakes `from` when a paused
 * publisher waits for exactly this. Call after the delivery. */
void throttle__delivered(loop_t *l, msg_t *m, unsigned from);
/* Resumes the paused connections of l that may go on (async wake-up). */
void throttle__wake(loop_t *l);
/* Queues e (taken) for the online session s of loop l, allowing up to
 * twice the soft limit; marks s congested past the soft limit and, while
 * it is, marks m with l. Returns 0, or UVMQ_ELIMIT when past the hard limit
 * (e released, counted in the queue). */
int throttle__queue_online(loop_t *l, sess_t *s, queue_entry_t *e, msg_t *m);
/* Ends s's congestion when its queue is at or below half the soft limit,
 * or when force is set (s going offline, reset or leaving l). */
void throttle__congestion_check(loop_t *l, sess_t *s, int force);

/* ---- share.c: shared subscriptions ($share/<group>/<filter>) ----
 *
 * One registry for the broker, behind its own mutex: groups keyed by
 * (name, filter), each with its members; a member is a refcounted record
 * of one session's subscription, owned by the session's loop. The design
 * (and why) is in docs/architecture.md "Shared subscriptions"; the
 * protocol choices are in docs/protocol.md. Every function is called on
 * the loop that owns the sessions it names. */

typedef struct share_s share_t;
typedef struct share_member_s share_member_t;

/* Makes l's share state (loop__state_init); frees it. */
void share__loop_init(loop_t *l);
void share__loop_dispose(loop_t *l);
/* Creates the registry (groups pick members by strategy, enum
 * share_strategy). */
share_t *share__create(int strategy);
/* Frees the registry with every group and member left (every loop is
 * down and their items dropped). NULL is a no-op. */
void share__destroy(share_t *r);
/* 1 when f[0..len) starts with "$share/". */
int share__is_shared(const char *f, size_t len);
/* s (owned by l) joins the group of the valid shared filter f, or updates
 * its options and subscription id (*existed set). Counted in b->n_shared
 * (release) before it returns: the SUBACK goes after. Does not touch
 * s->subs (interest.c does). Returns 0 or UVMQ_EINVAL. */
int share__join(loop_t *l, sess_t *s, const char *f, size_t len, uint8_t options,
                uint32_t sub_id, int *existed);
/* s leaves the group of f. Returns 0 or UVMQ_ENOTFOUND. */
int share__leave(loop_t *l, sess_t *s, const char *f, size_t len);
/* Records whether s is online (its groups prefer online members) and
 * stored (a publisher's acknowledgement waits for its commit) in each of
 * its memberships. */
void share__update(loop_t *l, sess_t *s, int online, int durable);
/* The publish of m on l (deliver__publish, when b->n_shared > 0): picks
 * one member of each group whose filter matches and delivers to it, here
 * or through ITEM_SHARE. Borrows m. Returns the number of groups. */
size_t share__publish(loop_t *l, msg_t *m);
/* ITEM_SHARE on l: delivers to the member, or to another one when it
 * left or went offline meanwhile; takes the item's references. */
void share__item(loop_t *l, loop_item_t *it);
/* s (of l) disconnected or is ending: each QoS 1 message it has
 * unacknowledged and each QoS 1/2 message queued for it that came
 * through a group goes to another member of that group (an online one
 * first); without one it stays. QoS 2 messages already sent stay
 * (MQTT-4.8.2-4, MQTT-4.8.2-5). */
void share__handoff(loop_t *l, sess_t *s);
/* Drops a member reference (ITEM_SHARE never run) and NULLs *mp. */
void share__member_release(share_member_t **mp);
/* The pure choice under every pick: an index in [0, n) other than excl
 * (excl >= n: none excluded) by strategy; round robin advances *rr, sticky
 * uses hash, random rnd. Returns -1 when there is none. */
long share__choose(int strategy, uint32_t n, uint32_t excl, uint32_t *rr, uint32_t hash,
                   uint32_t rnd);

/* ---- sess.c ---- */

/* 1 when s's connection is an active MQTT one (not closing, not an
 * HTTP/2 event stream's). */
static inline int sess__online(const sess_t *s)
{
    return s->conn != NULL && s->conn->state == CONN_ACTIVE;
}

/* The 16 bits of s's client id hash a message it publishes carries
 * (msg_state_t.origin_hash, the "sticky" strategy's key). */
static inline uint16_t sess__origin_hash(const sess_t *s)
{
    return (uint16_t)(s->hash ^ (s->hash >> 16));
}

/* Sets up an empty map of n_shards shards (0 is taken as 1), each with
 * its mutex and a small bucket array. */
void sess__map_init(sess_map_t *m, size_t n_shards);
/* The shard that holds (or would hold) the session whose id hashes to
 * hash; its mutex guards the fields marked "shard". */
sess_shard_t *sess__shard(sess_map_t *m, uint32_t hash);
/* Destroys every session left (shutdown, all loops joined), then the
 * locks. */
void sess__map_dispose(sess_map_t *m);
/* Returns the session with this client id, or NULL (borrowed). */
sess_t *sess__find(sess_map_t *m, const char *id, size_t len);
/* The loop that owns the session with this client id (read under its
 * shard mutex), or NULL when there is none. */
loop_t *sess__owner_of(sess_map_t *m, const char *id, size_t len);
/* Adds s (the map takes it); the id must not be present. */
void sess__insert(sess_map_t *m, sess_t *s);
/* Removes s from the map (the caller then owns it). */
void sess__unlink(sess_map_t *m, sess_t *s);
size_t sess__count(sess_map_t *m);
/* New offline session with the given id and limits; not in the map. */
sess_t *sess__create(const char *id, size_t len, const broker_config_t *cfg);
/* Finds the session with this client id or, when create_on is l,
 * creates it owned by l, atomically under the shard mutex (see inbox.c).
 * Returns SESS_NEW or SESS_LOCAL with *out the session (l's: borrowed),
 * or SESS_REMOTE with *out NULL and *owner the loop that owns it, or
 * create_on when there is none (the caller moves its connection there).
 * *owner is set in every case. */
int sess__find_or_create(loop_t *l, const char *id, size_t len, sess_t **out,
                         loop_t **owner, loop_t *create_on);
/* Records s as owned by l (its list for the sweep). */
void sess__own(loop_t *l, sess_t *s);
/* Removes s's subscriptions from l's router, releases queue, inflight and
 * will, frees s. s must be unlinked and detached; l is its owner, or NULL
 * at shutdown (routers are freed wholesale). */
void sess__destroy(loop_t *l, sess_t *s);
/* Ends a session owned by l: unlinks it under the shard mutex, then
 * destroys it. */
void sess__end(loop_t *l, sess_t *s);
/* Empties s in place for a clean start: subscriptions (and l's router
 * entries), queue, inflight, will. */
void sess__reset(loop_t *l, sess_t *s);
/* Records a subscription (replacing one on the same filter). */
void sess__sub_add(sess_t *s, const char *f, size_t len, uint8_t options,
                   uint32_t sub_id);
/* Forgets a subscription; returns 0 or UVMQ_ENOTFOUND. */
int sess__sub_remove(sess_t *s, const char *f, size_t len);
/* Writes "uvmq-" and 16 random hex digits plus NUL into out (22 bytes). */
void sess__assign_id(char out[22]);
/* Detaches s from its connection at close. publish_will per the close
 * reason; a session with expiry 0 is ended here (sess__end) unless keep
 * is set (takeover: the new connection resets it instead). */
void sess__detach(loop_t *l, sess_t *s, int publish_will, int keep);
/* Publishes s's will now (retained + fan-out) and forgets it. */
void sess__publish_will(loop_t *l, sess_t *s);
/* 1 s sweep of the sessions l owns: due delayed wills, expired offline
 * sessions. */
void sess__sweep(loop_t *l, uint64_t now);

#endif

/*
 * broker_int.h - types and functions shared by the files of broker/.
 *
 * Ownership in one paragraph: broker_t owns the loops, the router (behind
 * a rwlock), the retained trie (behind a mutex), the session map and the
 * store. A loop owns its connections outright; a connection borrows its
 * session while attached (sess->conn / conn->sess point at each other).
 * Sessions live in the map and are destroyed by sess.c only. Functions
 * shared between broker/ files carry a double underscore (conn__close).
 */
#ifndef UVMQ_BROKER_INT_H
#define UVMQ_BROKER_INT_H

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

/* Handlers return 0, or CONN_GONE when they closed the connection: the
 * caller must then stop processing its input (the memory stays valid until
 * the uv_close callback, which runs in a later loop phase). */
#define CONN_GONE 1

/* Flags for conn__close. */
#define CLOSE_DISCONNECT 0x01 /* v5: send DISCONNECT with the reason first */
#define CLOSE_WILL 0x02       /* abnormal: publish the will */
#define CLOSE_QUIET 0x04      /* normal close: log at DEBUG, not INFO */

/* Session expiry value meaning "never" (v5 0xFFFFFFFF; v3.1.1 clean 0). */
#define SESS_NEVER_EXPIRES 0xFFFFFFFFu

/* Size of the loop's shared read buffer (alloc_cb hands it out to any
 * connection that holds no partial packet). */
#define LOOP_READ_BUF (64 * 1024)

typedef struct loop_s loop_t;
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
} broker_counters_t;

#define CNT_INC(b, field) \
    atomic_fetch_add_explicit(&(b)->cnt.field, 1, memory_order_relaxed)

/* ---- session map ---- */

#define SESS_SHARDS 64

typedef struct sess_shard_s {
    pthread_mutex_t mu;
    sess_t **buckets; /* chained hash table; owns the sessions */
    size_t n_buckets; /* power of two */
    size_t count;
} sess_shard_t;

typedef struct sess_map_s {
    sess_shard_t shards[SESS_SHARDS];
} sess_map_t;

/* One subscription a session holds (mirrors the router's entry). */
typedef struct sess_sub_s {
    char *filter; /* NUL-terminated, owned */
    uint8_t options;
    uint32_t sub_id;
} sess_sub_t;

struct sess_s {
    sess_t *next;      /* hash chain */
    uint32_t hash;
    char *client_id;   /* NUL-terminated, owned */
    size_t id_len;
    conn_t *conn;      /* attached connection or NULL (offline); borrowed */
    loop_t *loop;      /* loop that owns the session now */
    uint8_t version;   /* protocol of the last connection */
    uint32_t expiry;   /* session expiry interval, s; 0 = ends with conn */
    uint64_t disconnected_at; /* uv_now ms when it went offline */
    queue_t queue;     /* QoS 1/2 waiting for window room */
    inflight_t inflight;
    sess_sub_t *subs;  /* owned array */
    size_t n_subs, cap_subs;
    msg_t *will;       /* owned; NULL when none */
    uint32_t will_delay; /* v5 Will Delay Interval, s */
    uint32_t will_expiry; /* v5 Message Expiry of the will, s; 0 = none;
                             counted from publication, not from CONNECT */
    uint64_t will_at;  /* uv_now ms when a delayed will is due; 0 = none */
    uint8_t overflow_logged;
};

/* ---- out-batch ---- */

/* One iovec-to-be: either borrowed bytes (base != NULL, kept alive by ref)
 * or an offset into the batch's scratch bytes (base == NULL). */
typedef struct out_ent_s {
    const uint8_t *base;
    size_t off;
    size_t len;
    msg_t *ref; /* owned reference released when the write completes */
} out_ent_t;

typedef struct out_batch_s {
    out_ent_t *v; /* reused array */
    size_t n, cap;
    uint8_t *scratch; /* encoded control packets and per-subscriber heads */
    size_t scratch_len, scratch_cap;
    size_t bytes; /* total bytes of all entries */
} out_batch_t;

/* ---- connection ---- */

enum conn_state { CONN_NEW = 0, CONN_ACTIVE, CONN_CLOSING };

struct conn_s {
    uv_tcp_t tcp;      /* tcp.data = this; memory freed in on_close */
    uv_write_t wreq;   /* the one write in flight */
    loop_t *loop;
    conn_t *prev, *next;  /* loop's list of all its connections */
    conn_t *dirty_next;   /* loop's dirty list */
    uint8_t dirty;        /* on the dirty list */
    uint8_t state;        /* enum conn_state */
    uint8_t version;      /* PKT_V31/V311/V5 once CONNECT is decoded */
    uint8_t writing;      /* a uv_write is in flight */
    uint8_t handle_closing; /* uv_close was called */
    uint8_t warned_drop;
    uint8_t got_disconnect;
    uint8_t read_paused;  /* reading stopped: unsent output > max_out_bytes */
    uint8_t *in;          /* partial input (NULL when none held) */
    size_t in_len, in_cap;
    size_t need;          /* size of the packet being received (pkt_frame) */
    arena_t arena;        /* decode temporaries; reset after each packet */
    out_batch_t batch[2]; /* double buffer */
    int pend;             /* index of the pending batch; !pend is writing */
    size_t unsent;        /* bytes in flight + pending */
    uint64_t accepted_at; /* uv_now ms */
    uint64_t last_rx;     /* uv_now ms of the last packet received */
    uint64_t closing_since;
    uint16_t keepalive;   /* seconds, as granted; 0 = none */
    uint32_t peer_max_packet; /* client's Maximum Packet Size (v5) */
    uint64_t dropped_qos0;
    sess_t *sess;         /* attached session (borrowed) */
    char peer[64];        /* "ip:port" for logs */
};

/* ---- loop ---- */

struct loop_s {
    broker_t *b;
    unsigned index;
    uv_loop_t uv;
    uv_prepare_t prepare; /* flush hook before polling */
    uv_check_t check;     /* flush hook right after I/O callbacks */
    uv_timer_t sweep;     /* 1 s: keep-alive, connect timeout, expiry */
    conn_t *conns;        /* every connection of the loop */
    size_t n_conns;
    conn_t *dirty;        /* connections with pending output */
    router_hits_t hits;   /* reused match vector */
    uv_buf_t *bufs;       /* reused iovec array for flushes */
    size_t cap_bufs;
    uint8_t *rbuf;        /* shared read buffer, LOOP_READ_BUF bytes */
    uint8_t rbuf_busy;
    msg_t **mvec;         /* reused message vector (retained sends) */
    size_t n_mvec, cap_mvec;
};

/* ---- broker ---- */

struct broker_s {
    const broker_config_t *cfg;
    loop_t *loops; /* n_loops entries; loops[0] runs the listener */
    unsigned n_loops;
    uv_tcp_t listener;
    uv_signal_t sigint, sigterm;
    uv_async_t stop_async;
    uint8_t handles_open; /* listener/signals/async/loop hooks initialised */
    uint8_t stopping;
    router_t *router;
    pthread_rwlock_t router_lock;
    router_retained_t *retained;
    pthread_mutex_t retained_lock;
    sess_map_t sessions;
    store_t *store;
    broker_counters_t cnt;
    uint64_t conns_closed_at_stop;
    uint64_t last_refuse_log; /* uv_now ms; rate limit for refusals */
    uint64_t refused_since_log;
};

/* ---- loop.c ---- */

/* Initialises l (uv loop, flush hooks, sweep timer) for broker b. Returns
 * 0 or a libuv error; on failure nothing needs disposing. */
int loop__init(loop_t *l, broker_t *b, unsigned index);
/* Closes the loop's hooks and timer (asynchronously). */
void loop__close_handles(loop_t *l);
/* Frees the loop's reused vectors and closes the uv loop; returns
 * uv_loop_close's result (0 when every handle was closed). */
int loop__dispose(loop_t *l);
/* Puts c on its loop's dirty list (once) so the flush hook writes it. */
void loop__mark_dirty(conn_t *c);
/* Removes c from the dirty list if it is on it. */
void loop__unmark_dirty(conn_t *c);

/* ---- conn.c ---- */

/* Accepts one connection from server on loop l. */
void conn__accept(loop_t *l, uv_stream_t *server);
/* Appends an encoded control packet to c's pending batch. Returns 0, or
 * ERR_INVAL when p cannot be encoded. */
int conn__send_pkt(conn_t *c, const pkt_t *p);
/* Appends raw bytes (copied) to c's pending batch. */
void conn__send_raw(conn_t *c, const uint8_t *bytes, size_t len);
/* Bytes the PUBLISH of m would take for c (head + payload). */
size_t conn__publish_size(conn_t *c, msg_t *m, uint8_t qos,
                          const uint32_t *ids, size_t n_ids);
/* Appends a PUBLISH of m (retains m for the write). QoS 0 is dropped and
 * counted (returns ERR_LIMIT) when c's unsent bytes would pass
 * max_out_bytes; any QoS is dropped (ERR_LIMIT) when over the client's
 * maximum packet size. Returns 0 when queued for writing. */
int conn__send_publish(conn_t *c, msg_t *m, uint8_t qos, uint8_t retain,
                       uint8_t dup, uint16_t packet_id, const uint32_t *ids,
                       size_t n_ids);
/* Writes the pending batch of c if no write is in flight (flush hook). */
void conn__flush(conn_t *c);
/* Closes c: optional v5 DISCONNECT (flags), detaches the session (will per
 * flags), lets queued output drain, then uv_close; c is freed in on_close.
 * `why` is logged. Safe to call twice (the second is a no-op). */
void conn__close(conn_t *c, uint8_t reason, unsigned flags, const char *why);
/* Closes c for a bad packet or protocol violation: counts it by reason
 * (0x81 malformed, 0x95 too large, else protocol error), logs why, sends
 * a v5 DISCONNECT with reason, publishes the will. Returns CONN_GONE. */
int conn__fail(conn_t *c, uint8_t reason, const char *why);
/* Forces uv_close (shutdown, stuck peers). */
void conn__close_handle(conn_t *c);
/* Client id for logs ("-" before CONNECT). */
const char *conn__id(const conn_t *c);
/* Sweep step for one connection at uv time now. */
void conn__sweep(conn_t *c, uint64_t now);

/* ---- handle_connect.c ---- */

/* Handles the first packet of a connection (raw bytes of one frame). */
int conn__handle_connect(conn_t *c, const uint8_t *frame, size_t len);
/* Handles DISCONNECT from the client. */
int conn__handle_disconnect(conn_t *c, const pkt_t *p);

/* ---- handle_publish.c ---- */

int conn__handle_publish(conn_t *c, pkt_t *p);
/* Number of levels in a topic name or filter ("a/b" -> 2). */
size_t conn__levels(const char *t, size_t len);
int conn__handle_ack(conn_t *c, const pkt_t *p); /* PUBACK/REC/REL/COMP */
/* Builds a msg from topic, payload and the forwardable subset of props
 * (v5), with expiry from Message Expiry Interval. NULL when too large. */
msg_t *conn__msg_from(broker_t *b, pkt_bin_t topic, pkt_bin_t payload,
                      const pkt_props_t *props, uint8_t qos, uint8_t retain,
                      const void *origin);

/* ---- handle_sub.c ---- */

int conn__handle_subscribe(conn_t *c, pkt_t *p);
int conn__handle_unsubscribe(conn_t *c, pkt_t *p);

/* ---- deliver.c ---- */

/* Stores m in the retained trie when its retain flag is set, then fans it
 * out to every matching subscriber. Borrows m (each delivery retains).
 * Returns the number of matching subscribers. */
size_t broker__publish(loop_t *l, msg_t *m);
/* Delivers m to session s with delivery QoS qos, retain flag and v5
 * subscription ids (copied). Borrows m. */
void sess__deliver(loop_t *l, sess_t *s, msg_t *m, uint8_t qos,
                   uint8_t retain, const uint32_t *ids, size_t n_ids);
/* Moves queued messages into the inflight window while there is room. */
void sess__drain(sess_t *s);
/* Resends the inflight window (DUP) after a session was resumed. */
void sess__resend(sess_t *s);
/* Sends the retained messages matching filter to s (after SUBACK). */
void sess__send_retained(loop_t *l, sess_t *s, const char *filter,
                         size_t len, uint8_t granted, uint32_t sub_id);

/* ---- sess.c ---- */

void sess__map_init(sess_map_t *m);
/* Destroys every session left (shutdown), then the locks. */
void sess__map_dispose(sess_map_t *m, broker_t *b);
/* Returns the session with this client id, or NULL (borrowed). */
sess_t *sess__find(sess_map_t *m, const char *id, size_t len);
/* Adds s (the map takes it); the id must not be present. */
void sess__insert(sess_map_t *m, sess_t *s);
/* Removes s from the map (the caller then owns it). */
void sess__unlink(sess_map_t *m, sess_t *s);
size_t sess__count(sess_map_t *m);
/* New offline session with the given id and limits; not in the map. */
sess_t *sess__create(const char *id, size_t len, const broker_config_t *cfg);
/* Removes s's subscriptions from the router, releases queue, inflight and
 * will, frees s. s must be unlinked and detached. */
void sess__destroy(broker_t *b, sess_t *s);
/* Records a subscription (replacing one on the same filter). */
void sess__sub_add(sess_t *s, const char *f, size_t len, uint8_t options,
                   uint32_t sub_id);
/* Forgets a subscription; returns 0 or ERR_NOTFOUND. */
int sess__sub_remove(sess_t *s, const char *f, size_t len);
/* Writes "uvmq-" and 16 random hex digits plus NUL into out (22 bytes). */
void sess__assign_id(char out[22]);
/* Detaches s from its connection at close. publish_will per the close
 * reason; a session with expiry 0 is destroyed here. */
void sess__detach(loop_t *l, sess_t *s, int publish_will);
/* Publishes s's will now (retained + fan-out) and forgets it. */
void sess__publish_will(loop_t *l, sess_t *s);
/* 1 s sweep: due delayed wills and expired offline sessions. */
void sess__sweep(loop_t *l, uint64_t now);

#endif

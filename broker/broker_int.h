/*
 * broker_int.h - the types every file of broker/ shares.
 *
 * Ownership in one paragraph: broker_t owns the worker loops, the listener
 * loop, the retained trie (behind a mutex), the session map and the store.
 * Each worker loop runs on its own thread and owns its connections, its
 * router (the subscriptions of its sessions) and the sessions it owns,
 * outright, for the session's whole life; the threading model and how a
 * connection moves to its session's loop are described at the top of
 * inbox.c. A connection borrows its session while attached (sess->conn /
 * conn->sess point at each other).
 *
 * Each file of broker/ has its own small internal header for what it
 * shares (conn_int.h for conn.c, prefix conn__, and so on); this one holds
 * what they all need: the broker, its counters, the session map's
 * storage and each message's broker state (msg_state_t).
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

/* Enhanced authentication methods a broker can hold (auth.c). */
#define AUTH_METHODS_MAX 8

typedef struct loop_s loop_t;
typedef struct throttle_loop_s throttle_loop_t;
typedef struct persist_loop_s persist_loop_t;
typedef struct interest_loop_s interest_loop_t;
typedef struct share_loop_s share_loop_t;
typedef struct conn_s conn_t;
typedef struct sess_s sess_t;
typedef struct item_vec_s item_vec_t;
typedef struct conn_out_s conn_out_t;
typedef struct chunk_loop_s chunk_loop_t;
typedef struct listener_s listener_t;
typedef struct share_s share_t;
typedef struct access_s access_t;
typedef struct access_sess_s access_sess_t;

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
    /* Access control (access.c). */
    atomic_uint_fast64_t auth_failed;   /* CONNECTs refused: bad user name
                                           or password */
    atomic_uint_fast64_t auth_anonymous;/* CONNECTs refused: no user name on
                                           a listener without anonymous */
    atomic_uint_fast64_t auth_busy;     /* CONNECTs refused: max_auth_pending
                                           verifications queued */
    atomic_uint_fast64_t auth_cache_hits; /* credentials found verified */
    atomic_uint_fast64_t acl_denied_publish;   /* PUBLISH not routed */
    atomic_uint_fast64_t acl_denied_subscribe; /* filters refused */
    atomic_uint_fast64_t acl_denied_read; /* deliveries withheld (folded
                                             from the loops) */
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

/* ---- the session map (sess.c runs it) ---- */

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
    uv_signal_t sighup;    /* reloads TLS certificates, password and
                              ACL files */
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
    access_t *access; /* password and ACL files in force (access.c) */
    uint8_t acl_on;   /* an acl_file is configured (immutable; access.c) */
    atomic_uint acl_gen; /* bumped by each reload that swapped a file in
                            (access.c): sessions rebuild their views */
};

#endif

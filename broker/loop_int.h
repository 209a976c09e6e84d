/*
 * loop_int.h - one worker loop (loop.c): loop_t, its uv loop, flush
 * hooks, sweep and the state each module keeps per loop (as opaque
 * pointers to structs those modules own).
 */
#ifndef UVMQ_BROKER_LOOP_INT_H
#define UVMQ_BROKER_LOOP_INT_H

#include "inbox_int.h"

/* Size of the loop's shared read buffer (alloc_cb hands it out to any
 * connection that holds no partial packet). */
#define LOOP_READ_BUF (64 * 1024)

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
    unsigned auth_pending; /* password verifications on the thread pool
                              (access.c; max_auth_pending) */
    conn_auth_t *auth_flight; /* those verifications, each with the checks
                                 of the same credentials waiting for it */
    uint64_t acl_denied_read; /* deliveries the ACL withheld since the
                                 last fold (access.c) */
    const msg_t *acl_hash_m; /* the message whose topic hash acl_hash is: */
    uint32_t acl_hash;       /* a fan-out hashes its topic once (access.c) */
    uint64_t auth_busy_log_at; /* uv_now of the last "server busy" line */
    uint64_t auth_busy_since_log; /* busy refusals since (access.c) */
};

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

#endif

/*
 * bench_client.h - MQTT client connections of uvmq-bench on one libuv loop.
 *
 * A bench_loop_t owns the per-loop machinery every connection shares: one
 * large read buffer (packets are parsed in place; a connection keeps only
 * the tail of a partial packet), the list of connections with output to
 * flush (one write per connection per loop turn, uv_try_write first), the
 * connect pacer (at most max_in_flight set-ups at a time) and a watchdog
 * (connect timeouts, keep-alive PINGREQs). A connection does CONNECT,
 * CONNACK and, when it has a filter, SUBSCRIBE/SUBACK by itself; every
 * other packet goes to the owner's on_packet. With rx_timestamps the
 * loop also asks the kernel when each read's data arrived (SO_TIMESTAMPNS,
 * read with a 1-byte MSG_PEEK recvmsg just before libuv's read). With a TLS
 * context in the config every connection runs TLS on memory BIOs: the
 * handshake comes before CONNECT, each turn's output is encrypted in one
 * SSL_write, and reads are decrypted into the same parse buffer. A closed
 * connection can be started again (bench_conn_restart, from on_closed):
 * the connect mode runs cycles of CONNECT, CONNACK, DISCONNECT on each.
 * One loop, one thread: no function here may be called from another thread.
 */
#ifndef UVMQ_BENCH_CLIENT_H
#define UVMQ_BENCH_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "bench/bench_mqtt.h"

#define BENCH_READ_SIZE (64 * 1024)  /* bytes offered to each read */
#define BENCH_CONNECT_TIMEOUT_MS 10000

typedef struct bench_loop_s bench_loop_t;
typedef struct bench_conn_s bench_conn_t;

/* Connection states, in the order a connection lives them. */
enum {
    BENCH_CONN_NEW = 0,    /* waiting for the pacer */
    BENCH_CONN_TCP,        /* TCP connect in progress */
    BENCH_CONN_TLS,        /* TLS handshake in progress */
    BENCH_CONN_CONNACK,    /* CONNECT sent */
    BENCH_CONN_SUBACK,     /* SUBSCRIBE sent */
    BENCH_CONN_READY,      /* set up; traffic flows */
    BENCH_CONN_CLOSING,    /* uv_close called */
    BENCH_CONN_CLOSED,     /* close callback ran; buffers freed */
};

/* Callbacks of a loop's owner; all run on the loop's thread. */
typedef struct bench_client_cbs_s {
    /* Set-up of c finished (CONNACK accepted, SUBACK granted if it has a filter). */
    void (*on_ready)(bench_conn_t *c);
    /* Any packet the connection does not handle itself; now_ns is the
     * uv_hrtime() of the read callback that brought it, and lp->rx_real_ns
     * the CLOCK_REALTIME arrival time of that read (see rx_timestamps). */
    void (*on_packet)(bench_conn_t *c, const bench_pkt_t *p, uint64_t now_ns);
    /* c failed (set-up error, timeout, or lost after set-up); what is static
     * text, err a libuv or UVMQ_E* code or 0. c is closing when this runs. */
    void (*on_fail)(bench_conn_t *c, const char *what, int err);
    /* Every connection added so far is ready or failed. */
    void (*on_setup_done)(bench_loop_t *lp);
    /* Once per loop turn, before output is flushed (may be NULL). */
    void (*on_tick)(bench_loop_t *lp);
    /* A write of c completed and c has room for more output (may be NULL). */
    void (*on_writable)(bench_conn_t *c);
    /* c's close callback ran: its buffers are freed and it may be
     * restarted with bench_conn_restart (may be NULL). */
    void (*on_closed)(bench_conn_t *c);
} bench_client_cbs_t;

/* Settings shared by all connections of a loop; copied at init. */
typedef struct bench_client_cfg_s {
    struct sockaddr_storage addr; /* broker address */
    int proto;                    /* 4 or 5 */
    int clean;                    /* clean session / clean start */
    uint16_t keepalive;           /* seconds; PINGREQ after this long silent */
    uint32_t session_expiry;      /* v5 with clean 0 */
    int sub_qos;                  /* QoS of SUBSCRIBEs */
    size_t max_packet;            /* largest packet expected from the broker */
    size_t max_in_flight;         /* connect pacing, e.g. 500 */
    int rx_timestamps;            /* 1: arrival = kernel receive timestamp */
    const char *user;             /* CONNECT user name (borrowed), or NULL */
    const char *password;         /* CONNECT password (borrowed), or NULL */
    int quiet_refusals;           /* 1: a refused CONNECT is the owner's to
                                     count (c->refused), not logged */
    SSL_CTX *tls;                 /* client TLS context (borrowed), or NULL */
    char tls_host[64];            /* name or IP the broker's certificate must
                                     hold (with tls) */
    bench_client_cbs_t cbs;
} bench_client_cfg_t;

/* Per-loop context; the caller owns the memory, bench_loop_init fills it. */
struct bench_loop_s {
    uv_loop_t *loop;              /* borrowed */
    bench_client_cfg_t cfg;
    uv_prepare_t flush_handle;    /* flushes dirty connections each turn */
    uv_timer_t watchdog;          /* timeouts and keep-alive */
    uint8_t *rbuf;                /* tail area + BENCH_READ_SIZE; owned */
    size_t tail_max;              /* largest partial packet kept */
    bench_conn_t **conns;         /* every added connection; array owned */
    size_t nconns, conns_cap;
    bench_conn_t **dirty;         /* connections with output to flush */
    size_t ndirty;
    size_t next_connect;          /* pacer: index of the next to start */
    size_t in_flight, nready, nfailed, nclosed;
    int setup_reported;
    int starting;                 /* inside start_next */
    uint64_t rx_real_ns;          /* CLOCK_REALTIME arrival of the current read */
    uint64_t rx_stamped;          /* reads timed by the kernel (rx_timestamps) */
    uint64_t rx_unstamped;        /* reads that fell back to the read time */
    void *data;                   /* the owner's */
};

/* One connection; the owner embeds or allocates it and keeps the memory
 * until the loop has run to completion after bench_loop_close. */
struct bench_conn_s {
    uv_tcp_t tcp;                 /* tcp.data points back to this */
    uv_connect_t creq;
    uv_write_t wreq;
    bench_loop_t *lp;
    uint32_t index;               /* the owner's number for it */
    uint8_t state;                /* BENCH_CONN_* */
    uint8_t dirty;                /* on lp->dirty */
    uint8_t writing;              /* wbuf is in a uv_write */
    uint16_t receive_max;         /* broker's v5 Receive Maximum or 65535 */
    char client_id[48];           /* at most 16 characters in practice */
    char filter[40];              /* subscribed at set-up when not empty */
    const char *user;             /* user name (borrowed); NULL: cfg.user */
    uint8_t refused;              /* CONNACK code of a refused CONNECT, else 0 */
    uint8_t *tail;                /* partial packet bytes; owned */
    size_t tail_len, tail_cap;
    uint8_t *out;                 /* output gathered this turn; owned */
    size_t out_len, out_cap;
    uint8_t *wbuf;                /* output in the uv_write in flight; owned */
    size_t wbuf_len, wbuf_cap;
    uint64_t t_start_ns;          /* set-up start, for the connect timeout */
    uint64_t t_connect_ns;        /* when CONNECT was queued (uv_hrtime) */
    uint64_t t_sent_ns;           /* last output, for keep-alive */
    uint64_t rx_stamp_ns;         /* kernel stamp peeked by on_alloc, 0 none */
    SSL *ssl;                     /* TLS session, or NULL; owned */
    BIO *rbio, *wbio;             /* its memory BIOs (owned by ssl) */
    void *data;                   /* the owner's */
};

/* Returns clock_gettime(CLOCK_REALTIME) in ns (the clock of kernel receive
 * timestamps and of the send time in the payloads). */
uint64_t bench_realtime_ns(void);
/* Returns the SCM_TIMESTAMPNS time (CLOCK_REALTIME ns) in the control
 * messages of msg (borrowed), or 0 when it holds none. */
uint64_t bench_cmsg_rx_ns(const struct msghdr *msg);

/* Initialises lp on loop with a copy of cfg and starts its handles.
 * Returns 0 or a libuv error. */
int bench_loop_init(bench_loop_t *lp, uv_loop_t *loop, const bench_client_cfg_t *cfg);
/* Registers c (borrowed until the loop ends) to be connected by the pacer;
 * client_id and filter must be set before bench_loop_connect. */
void bench_loop_add(bench_loop_t *lp, bench_conn_t *c);
/* Starts (or continues) connecting the added connections, paced. */
void bench_loop_connect(bench_loop_t *lp);

/* Returns room for n more output bytes of c; valid until the next call on c.
 * Follow with bench_conn_commit. */
uint8_t *bench_conn_reserve(bench_conn_t *c, size_t n);
/* Adds n bytes written at the reserved space to c's output for this turn. */
void bench_conn_commit(bench_conn_t *c, size_t n);
/* Queues a 4-byte PUBACK/PUBREC/PUBREL/PUBCOMP. */
void bench_conn_send_ack(bench_conn_t *c, int type, uint16_t pid);
/* Output bytes of c not yet handed to the kernel. */
size_t bench_conn_pending(const bench_conn_t *c);

/* Sends DISCONNECT when c is set up and nothing else is queued, then
 * closes it; on_closed follows. Nothing happens when c is already closing. */
void bench_conn_close(bench_conn_t *c);
/* Starts c again (TCP connect, CONNECT, ...) after its on_closed, with
 * whatever client_id and user it holds now. c counts as being set up
 * again: on_ready or on_fail follows. */
void bench_conn_restart(bench_conn_t *c);

/* Sends DISCONNECT where possible and closes every connection and the
 * loop's handles; uv_run then returns once the close callbacks ran.
 * bench_loop_dispose may be called after that. */
void bench_loop_close(bench_loop_t *lp);
/* Frees what bench_loop_init allocated (after the loop has finished). */
void bench_loop_dispose(bench_loop_t *lp);

#endif

/*
 * broker.h - the broker: listeners, worker loop, connections, sessions.
 *
 * cli/uvmq.c fills a broker_config_t (defaults, then the JSON file, then
 * flags, then the transports of the listener kinds the broker does not
 * know itself), creates the broker and runs it until SIGINT/SIGTERM.
 * Transports (http/, later ws/ and cluster/) reach the core through
 * transport.h and sink.h and the queries at the end of this header;
 * everything else in broker/ is internal.
 */
#ifndef UVMQ_BROKER_H
#define UVMQ_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "../storage/store.h"
#include "../tls/tls.h"

#define UVMQ_VERSION "0.1.0"

typedef struct broker_s broker_t;
struct transport_s;
struct msg_s;

/* What a listener speaks: the kind of the connections it hands out.
 * HTTP is HTTP/2: h2c with prior knowledge on a plain listener, h2 (ALPN)
 * on a TLS one. */
enum listener_kind { LISTENER_MQTT = 0, LISTENER_HTTP = 1 };
#define LISTENER_KINDS 2

/* How a shared subscription group picks the member that gets a message
 * ("shared_strategy"; docs/protocol.md "Shared subscriptions"). */
enum share_strategy {
    SHARE_ROUND_ROBIN = 0, /* "round_robin": each member in turn */
    SHARE_RANDOM = 1,      /* "random": any member, uniformly */
    SHARE_STICKY = 2       /* "sticky": the hash of the publisher's client
                              id picks the member, so one publisher's
                              messages stay with one member while the
                              group's online members do not change */
};

/* One entry of "listeners". The default MQTT listener (bind/port) and
 * the default HTTP/2 one (bind/http_port) are not among them. */
typedef struct listener_config_s {
    int kind;          /* "type": enum listener_kind; "mqtt" or "http" */
    char *bind;        /* "bind": owned; NULL = the top-level bind */
    uint16_t port;     /* "port": default with "tls" 8883 (mqtt) or 8443
                          (http); else required */
    int has_tls;       /* a "tls" object was given */
    tls_config_t tls;  /* "tls" */
    int allow_anonymous; /* "allow_anonymous": -1 = unset (the top-level
                            setting, else the default rule) */
} listener_config_t;

/* Every setting, with its JSON key in the config file (docs/configuration.md
 * lists them). Strings are owned by the config (xstrdup'd). */
typedef struct broker_config_s {
    char *bind;                   /* "bind": listen address, "127.0.0.1" */
    uint16_t port;                /* "port": MQTT over TCP, 1883 */
    uint16_t http_port;           /* "http_port": HTTP/2 h2c, 8080; 0 = off */
    uint32_t http_max_streams;    /* "http_max_streams": concurrent streams
                                     per HTTP/2 connection, 100 */
    uint32_t http_idle_timeout;   /* "http_idle_timeout": seconds an HTTP/2
                                     connection may have no stream open, 60 */
    char *data_dir;               /* "data_dir": "./data" */
    unsigned threads;             /* "threads": worker loops; 0 = cores */
    int allow_anonymous;          /* "allow_anonymous": -1 = unset: clients
                                     without a user name are accepted only
                                     on loopback listeners and only when
                                     there is no password_file */
    char *password_file;          /* "password_file": mosquitto's format;
                                     NULL = none (user names unchecked) */
    char *acl_file;               /* "acl_file": mosquitto's format; NULL =
                                     none (every client may do anything) */
    uint32_t auth_cache_size;     /* "auth_cache_size": verified
                                     credentials kept, 1024; 0 = off */
    uint32_t auth_cache_ttl;      /* "auth_cache_ttl": seconds one is kept,
                                     300 */
    uint32_t max_auth_pending;    /* "max_auth_pending": password checks a
                                     worker loop may have queued on the
                                     thread pool; past it a CONNECT gets
                                     Server busy. 64 */
    uint32_t max_packet_size;     /* "max_packet_size": bytes, 16 MiB */
    uint32_t max_connect_size;    /* "max_connect_size": the largest packet
                                     of a client not yet connected (its
                                     CONNECT, AUTH during an exchange),
                                     bytes; 64 KiB (capped by
                                     max_packet_size) */
    uint16_t max_inflight;        /* "max_inflight": QoS 1/2 window per
                                     session and our Receive Maximum, 64 */
    uint32_t max_queued_messages; /* "max_queued_messages": per session, 1000 */
    uint64_t max_queued_bytes;    /* "max_queued_bytes": per session, 64 MiB */
    uint64_t max_out_bytes;       /* "max_out_bytes": unsent bytes per
                                     connection past which QoS 0 is dropped,
                                     8 MiB */
    uint16_t max_keepalive;       /* "max_keepalive": seconds; clients asking
                                     for more (or 0) get this, 65535 = none */
    uint32_t max_connections;     /* "max_connections": 0 = unlimited */
    uint32_t max_topic_levels;    /* "max_topic_levels": 128 */
    uint32_t max_client_id_len;   /* "max_client_id_len": 65535 */
    uint32_t max_inbound_qos2;    /* "max_inbound_qos2": PUBREL-pending ids
                                     per session, 65535 */
    uint32_t connect_timeout_ms;  /* "connect_timeout_ms": time allowed from
                                     accept to CONNECT, 10000 */
    int throttle_publishers;      /* "throttle_publishers": 1 = an online
                                     session whose QoS 1/2 queue is full
                                     pauses the publishers feeding it
                                     instead of dropping; 0 = drop. 1 */
    uint32_t session_shards;      /* "session_shards": mutex-guarded shards
                                     of the session map, 64 */
    int shared_strategy;          /* "shared_strategy": enum share_strategy,
                                     "round_robin" (default), "random" or
                                     "sticky" */
    int durability;               /* "durability": "full" (0): PUBACK/PUBREC
                                     after the commit's fsync; "batch" (1):
                                     at once, committed within batch_ms */
    uint32_t batch_ms;            /* "batch_ms": batch commit interval, 10 */
    uint32_t max_session_expiry;  /* "max_session_expiry": seconds after
                                     which an offline v3.1.1 persistent
                                     session ends; 0 = never (default) */
    uint64_t max_db_bytes;        /* "max_db_bytes": database size cap;
                                     commits past it fail (negative acks);
                                     0 = none (default) */
    uint32_t sys_interval;        /* "sys_interval": seconds between $SYS
                                     statistics updates, 10; 0 = none
                                     (docs/sys.md) */
    uint16_t topic_alias_max;     /* "topic_alias_max": MQTT 5 topic aliases
                                     a client may set (our Topic Alias
                                     Maximum) and the most we use towards a
                                     client; 0 = none either way. 10 */
    char *response_information_prefix; /* "response_information_prefix":
                                     a v5 client asking for Response
                                     Information gets "<prefix>/<client
                                     id>"; NULL (JSON null) = none. "resp" */
    int log_level;                /* "log_level": "error"|"warn"|"info"|
                                     "debug" (enum log_level); -v = debug */
    listener_config_t *listeners; /* "listeners": more listeners (TLS, other
                                     ports); owned array, NULL when none */
    size_t n_listeners;
    char *config_file;            /* the -c file the listeners came from,
                                     for messages; owned, NULL when none */
    const struct transport_s *protocols[LISTENER_KINDS]; /* the transport of
                                     each listener kind (transport.h):
                                     MQTT's is the broker's own (set by
                                     broker_config_init); HTTP/2's comes
                                     from http/ (cli sets it). NULL: this
                                     program has none, and broker_create
                                     fails on a listener of that kind */
} broker_config_t;

/* Fills c with the defaults above. */
void broker_config_init(broker_config_t *c);
/* Frees the strings and the listener array c owns. */
void broker_config_dispose(broker_config_t *c);
/* Appends a listener with defaults (kind MQTT, no bind, port 0, no TLS,
 * min_version 1.2) to c and returns it (owned by c). */
listener_config_t *broker_config_add_listener(broker_config_t *c);

/* Checks cross-setting rules (e.g. a non-loopback bind needs an explicit
 * allow_anonymous) and each listener: a TLS listener's certificate, key,
 * CA and ciphers are loaded once, so an unreadable file or a key that does
 * not match fails here, before the broker starts. Returns 0, or UVMQ_ECONFIG
 * after writing a message naming the setting (for a listener: the config
 * file and "listeners[i].tls.key") into err[0..errlen). */
int broker_config_check(const broker_config_t *c, char *err, size_t errlen);

/* Creates the broker: opens the data dir, binds the listeners. On failure
 * logs why and returns a negative code; *out is NULL. Borrows cfg for the
 * broker's lifetime. */
int broker_create(broker_t **out, const broker_config_t *cfg);

/* Runs the loops until SIGINT or SIGTERM (or broker_stop), then closes
 * every connection. Returns 0 after a clean shutdown. */
int broker_run(broker_t *b);

/* Asks a running broker to stop; safe from any thread. */
void broker_stop(broker_t *b);

/* Frees everything broker_create made. */
void broker_destroy(broker_t *b);

/* ---- queries, from any thread ---- */

/* One snapshot of everything the statistics report: GET /v1/stats and
 * /metrics (http/http_stats.c) and $SYS (sys.c). Counters are totals since
 * the start; queue, inflight and online are as of each loop's last 1 s
 * sweep. */
typedef struct broker_stats_s {
    uint64_t uptime_s;
    uint64_t conns, http_conns, accepted, refused, closed;
    uint64_t msgs_in, msgs_out, bytes_in, bytes_out, http_requests;
    uint64_t pkts_in, pkts_out, connects; /* pkts_out: PUBLISH included */
    uint64_t drop_qos0, drop_queue, drop_size, expired;
    uint64_t malformed, too_large, protocol_error, tls_failed;
    uint64_t subs, retained, sessions, online, sess_expired, queued, inflight;
    uint64_t shared_subs, shared, shared_moved, shared_dropped; /* share.c */
    /* access control (access.c): CONNECTs refused for a bad user name or
     * password, for no user name, for max_auth_pending; credentials found
     * in the cache; PUBLISH packets, SUBSCRIBE filters and deliveries the
     * ACL refused */
    uint64_t auth_failed, auth_anonymous, auth_busy, auth_cache_hits;
    uint64_t acl_denied_publish, acl_denied_subscribe, acl_denied_read;
    store_stats_t st;
} broker_stats_t;

/* Fills s from b's counters, each loop's published figures, the retained
 * trie (its lock), the session map (its shard locks) and the store. */
void broker_stats(broker_t *b, broker_stats_t *s);
/* The retained message of the topic name t[0..len) (a reference the
 * caller releases), or NULL when there is none or it has expired. */
struct msg_s *broker_retained_get(broker_t *b, const char *t, size_t len);
/* 1 when a topic name's first level is "$SYS": the broker's own topics,
 * which clients may read but not publish to (docs/protocol.md). */
int broker_topic_is_sys(const char *topic, size_t len);

#endif

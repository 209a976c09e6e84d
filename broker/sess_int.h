/*
 * sess_int.h - sessions (sess.c): sess_t and the sharded session map's
 * operations. A session belongs to one loop for its whole life; its
 * connection, when it has one, is borrowed (sess->conn / conn->sess).
 */
#ifndef UVMQ_BROKER_SESS_INT_H
#define UVMQ_BROKER_SESS_INT_H

#include "conn_int.h"

/* Session expiry value meaning "never" (v5 0xFFFFFFFF; v3.1.1 clean 0). */
#define SESS_NEVER_EXPIRES 0xFFFFFFFFu

/* sess__find_or_create results. */
#define SESS_NEW 0    /* created, owned by the calling loop */
#define SESS_LOCAL 1  /* exists and is owned by the calling loop */
#define SESS_REMOTE 2 /* owned by another loop: move the connection there */

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
                          first: what a QoS 0 delivery reads, with
                          to_sink below when conn is NULL (one line) */
    uint32_t hash;     /* of client_id; immutable */
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
    access_sess_t *access; /* user and ACL view (access.c), or NULL when
                              no access control needs them */
    char client_id[];  /* NUL-terminated, in the same block (sized with
                          offsetof: an idle session is this block only);
                          immutable */
};

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

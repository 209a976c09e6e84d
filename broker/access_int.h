/*
 * access_int.h - access control in the broker (access.c): who may
 * connect (password file, allow_anonymous, certificate identities) and
 * what a client may publish, subscribe to and receive (ACL file).
 *
 * The files are parsed by auth/ (pure); this file owns when they are
 * loaded (start, SIGHUP), where passwords are verified (the libuv thread
 * pool, never a worker loop), the cache of verified credentials, and the
 * per-session view of the ACL with its cache of decisions. With no ACL
 * file no check runs on the delivery path at all (access__acl_on is a
 * setting read once per fan-out).
 */
#ifndef UVMQ_BROKER_ACCESS_INT_H
#define UVMQ_BROKER_ACCESS_INT_H

#include "broker_int.h"
#include "loop_int.h"
#include "sess_int.h"

#include <string.h>

#include "../auth/auth.h"
#include "../common/hash.h"

/* Topics up to this many bytes are cached per session (longer ones are
 * checked every time). */
#define ACCESS_TOPIC_INLINE 52
/* Decisions cached per session (direct-mapped by the topic's hash). */
#define ACCESS_CACHE_SLOTS 8

/* One cached read decision of a session. */
typedef struct access_slot_s {
    uint32_t hash;  /* fnv1a of the topic */
    uint16_t len;   /* topic bytes; 0 = empty slot */
    uint8_t allow;  /* the decision */
    uint8_t pad;
    char topic[ACCESS_TOPIC_INLINE];
} access_slot_t;

/* What a session carries for access control (sess_t.access): made for a
 * client with a user name (stored with the session, so a restart keeps
 * it), and with an ACL file for every session. Owned by the session; its
 * loop's alone. */
struct access_sess_s {
    char *user;          /* owned; NULL = anonymous */
    acl_view_t *view;    /* built lazily from the ACL of generation gen */
    uint32_t gen;        /* the generation view was built from */
    access_slot_t *slot; /* ACCESS_CACHE_SLOTS read decisions under gen
                            (owned; made with the view) */
};

/* ---- the broker's files (main thread, then shared read-only) ---- */

/* Loads cfg's password and ACL files once to check them. Returns 0, or
 * UVMQ_ECONFIG with "password_file: PATH:LINE: why" (or acl_file) in
 * err. */
int access__check(const broker_config_t *cfg, char *err, size_t errlen);
/* Makes b->access from cfg (loads the files; logs which listeners take
 * anonymous clients is listener.c's). Returns 0 or UVMQ_ECONFIG (logged). */
int access__create(broker_t *b);
/* Frees b->access. */
void access__destroy(broker_t *b);
/* SIGHUP: reads the password and ACL files again. A file with an error
 * keeps the old one in force (logged with file and line). Connections
 * stay; every later CONNECT, SUBSCRIBE, PUBLISH and delivery uses the
 * new files. */
void access__reload(broker_t *b);
/* 1 when an ACL file is configured: checks run on publish, subscribe and
 * delivery. Immutable after start; inline: every fan-out asks. */
static inline int access__acl_on(const broker_t *b)
{
    return b->acl_on;
}
/* 1 when a password file is configured. */
int access__passwd_on(const broker_t *b);

/* ---- CONNECT ---- */

/* Decides whether c's decoded CONNECT cp may go on: the anonymous rule,
 * then the user name and password against the password file (from the
 * cache, or verified on the thread pool). identity is 1 when c's
 * transport vouched for the user name (a certificate). Returns CONN_OK
 * (go on; c's user is kept for the session), CONN_PENDING (a
 * verification is queued: the caller leaves the CONNECT's bytes unread
 * and stops; access resumes reading c when it ends, and the CONNECT is
 * handled again with the verdict), or CONN_GONE (refused: CONNACK sent,
 * closing). */
conn_rc_t access__connect(conn_t *c, const pkt_connect_t *cp, int identity);
/* 1 while c waits for a verification (no input is handled). */
int access__waiting(const conn_t *c);
/* c is closing: a verification under way forgets it. */
void access__conn_free(conn_t *c);
/* Sets s's user (the CONNECT's, bytes user[0..len); user NULL:
 * anonymous), dropping the old view. */
void access__sess_set_user(sess_t *s, const char *user, size_t len);
/* s's user name, or NULL (anonymous). */
const char *access__sess_user(const sess_t *s);
/* The user name of c's CONNECT as access__connect accepted it (until the
 * session is attached), or NULL. */
const char *access__conn_user(const conn_t *c, size_t *len);
/* Frees s's access state. */
void access__sess_free(sess_t *s);

/* ---- ACL checks (the session's loop) ---- */

/* 1 when s may publish to topic t[0..len) (its will included). Counts
 * and logs (debug) a refusal. Always 1 without an ACL file. */
int access__may_publish(loop_t *l, sess_t *s, const char *t, size_t len);
/* 1 when s may subscribe to filter f[0..len) (of a $share filter, the
 * part after the group). Always 1 without an ACL file. */
int access__may_subscribe(loop_t *l, sess_t *s, const char *f, size_t len);
/* access__may_read when the session's cache does not answer. */
int access__read_slow(loop_t *l, sess_t *s, const msg_t *m);

/* The hash of m's topic (fnv1a), computed once per message a loop fans
 * out: the last one is kept (a stale pointer match gives a wrong hash at
 * worst, which only misses: a slot compares the topic's bytes too). */
static inline uint32_t access__topic_hash(loop_t *l, const msg_t *m)
{
    if (l->acl_hash_m != m) {
        l->acl_hash = fnv1a(FNV1A_SEED, m->topic, m->topic_len);
        l->acl_hash_m = m;
    }
    return l->acl_hash;
}

/* 1 when s may receive m (read permission on its topic), through the
 * session's cache of decisions: inline, since a fan-out with an ACL asks
 * for every subscriber; the first message of a topic, a reload or a long
 * topic take access__read_slow. Call only when access__acl_on. Counts a
 * refusal in the loop's counters. */
static inline int access__may_read(loop_t *l, sess_t *s, const msg_t *m)
{
    const access_sess_t *x = s->access;
    size_t len = m->topic_len;
    if (x != NULL && x->slot != NULL && len <= ACCESS_TOPIC_INLINE &&
        x->gen == atomic_load_explicit(&l->b->acl_gen, memory_order_acquire)) {
        uint32_t h = access__topic_hash(l, m);
        const access_slot_t *e = &x->slot[h & (ACCESS_CACHE_SLOTS - 1)];
        if (e->len == len && e->hash == h && memcmp(e->topic, m->topic, len) == 0) {
            l->acl_denied_read += !e->allow;
            return e->allow;
        }
    }
    return access__read_slow(l, s, m);
}

/* ---- HTTP/2 and other transports ---- */

/* Verdict of access__basic. */
enum access_verdict { ACCESS_OK = 0, ACCESS_DENIED, ACCESS_PENDING, ACCESS_BUSY };

#endif

/*
 * auth.h - access control: mosquitto password files, mosquitto ACL files
 * and the cache of verified credentials.
 *
 * Pure and unit-testable: no libuv, no sockets, no broker state. The
 * broker (broker/access.c) loads these objects on start and on SIGHUP,
 * verifies passwords on the libuv thread pool (passwd_verify is slow on
 * purpose) and asks an acl_view_t at SUBSCRIBE, PUBLISH and delivery.
 * Loaded files are immutable and reference-counted, so a reload swaps
 * them while other threads still read the old ones. docs/security.md
 * describes the formats and the rules from a user's side.
 */
#ifndef UVMQ_AUTH_H
#define UVMQ_AUTH_H

#include <stddef.h>
#include <stdint.h>

/* ---- password files (passwd.c) ----
 *
 * One "user:hash" per line, as mosquitto_passwd writes them; blank lines
 * and lines whose first non-blank character is '#' are skipped. Hashes:
 *   $6$<salt b64>$<hash b64>            SHA-512(password || salt), mosquitto 1.x
 *   $7$<iterations>$<salt b64>$<hash b64>  PBKDF2-HMAC-SHA512, 64-byte key;
 *                                       12-byte (2.0) or 64-byte (2.1) salts
 *   $argon2id$v=19$m=..,t=..,p=..$<salt>$<hash>  the standard encoded form
 */

/* The hash a new password gets (passwd_hash). */
enum passwd_type {
    PASSWD_SHA512 = 6,  /* "$6$": read for old files, never the default */
    PASSWD_PBKDF2 = 7,  /* "$7$" */
    PASSWD_ARGON2ID = 8 /* "$argon2id$": the default of uvmq passwd */
};

/* PBKDF2 iterations of a new "$7$" hash (mosquitto 2.0 writes 101; 2.1
 * reads any count). */
#define PASSWD_PBKDF2_ITERATIONS 1000
/* Salt of a new "$7$" hash: 12 bytes, the only size mosquitto 2.0 reads. */
#define PASSWD_PBKDF2_SALT 12
/* argon2id parameters of a new hash: mosquitto 2.1's (t=1, 46 MiB, p=1,
 * 64-byte salt and hash). */
#define PASSWD_ARGON2_T 1
#define PASSWD_ARGON2_M_KIB 47104
#define PASSWD_ARGON2_P 1
#define PASSWD_ARGON2_SALT 64
#define PASSWD_ARGON2_HASH 64
/* Longest encoded hash passwd_hash writes, with its NUL. */
#define PASSWD_HASH_MAX 256
/* Longest user name a file may hold (MQTT's string limit). */
#define PASSWD_USER_MAX 65535

typedef struct passwd_s passwd_t;           /* a loaded file: immutable */
typedef struct passwd_user_s passwd_user_t; /* one of its users */

/* Reads and checks the password file at path. Returns 0 with *out (one
 * reference, the caller's), or UVMQ_ECONFIG with "PATH:LINE: why" (or
 * "PATH: why" when it cannot be read) in err[0..errlen); *out is NULL
 * then. Every line is checked: a missing colon, an empty user name, a
 * duplicate user, an unknown or plaintext hash, bad base64 or a salt or
 * hash of the wrong size is an error. */
int passwd_load(passwd_t **out, const char *path, char *err, size_t errlen);
/* The same over text[0..len), named name in messages (tests, fuzzing). */
int passwd_parse(passwd_t **out, const char *text, size_t len, const char *name, char *err,
                 size_t errlen);
/* Adds a reference (atomic: any thread). */
void passwd_retain(passwd_t *pw);
/* Drops *pwp's reference (freeing the file on the last); *pwp is NULL. */
void passwd_release(passwd_t **pwp);
/* Users in pw. */
size_t passwd_count(const passwd_t *pw);
/* The user named user[0..len) (bytes, compared exactly), or NULL.
 * Borrowed: valid while the caller holds a reference to pw. */
const passwd_user_t *passwd_find(const passwd_t *pw, const char *user, size_t len);
/* A user of pw whose hash an unknown user's password is checked against
 * (and then refused), so that a refusal costs what a known user's check
 * costs and its time does not tell whether the user exists: the file's
 * first user (files are usually of one hash type). NULL when pw has no
 * user (passwd_verify's dummy then). */
const passwd_user_t *passwd_decoy(const passwd_t *pw);
/* The user's stored hash, as in the file (NUL-terminated). */
const char *passwd_user_hash(const passwd_user_t *u);
/* Checks password pass[0..len) against u's hash, comparing in constant
 * time. u NULL (an unknown user) runs the same work against a dummy
 * argon2id hash and fails, so a refusal takes as long either way. Slow
 * (milliseconds to tens of them) and thread-safe: never call it on a
 * worker loop. Returns 0 on a match, UVMQ_EAUTH on a mismatch or unknown
 * user, UVMQ_ENOMEM when argon2 cannot get its memory. */
int passwd_verify(const passwd_user_t *u, const char *pass, size_t len);
/* Writes a new encoded hash of pass[0..len) with a fresh random salt into
 * out[0..outlen) (NUL-terminated; PASSWD_HASH_MAX is enough). iterations
 * is PBKDF2's count (0: PASSWD_PBKDF2_ITERATIONS; ignored otherwise).
 * Returns 0, UVMQ_EINVAL for an unknown type (or an out too small),
 * UVMQ_ENOMEM, UVMQ_EIO when the random generator gives no salt. */
int passwd_hash(enum passwd_type type, const char *pass, size_t len, unsigned iterations,
                char *out, size_t outlen);

/* ---- ACL files (acl.c) ----
 *
 * mosquitto's syntax and meaning: '#' lines are comments; lines before
 * the first "user NAME" apply to anonymous clients; "user NAME" starts
 * NAME's block; "topic [read|write|readwrite|deny] FILTER" (readwrite
 * when the access word is left out) adds to the current block; "pattern
 * [read|write|readwrite|deny] FILTER" applies to every client, with a
 * level that is exactly "%c" or "%u" replaced by the client id or user
 * name. A check walks the client's block, deny lines first, then the
 * patterns, deny lines first; the first line whose filter matches
 * decides (deny refuses; a line granting the access asked allows; a line
 * granting other access is passed over). Nothing matched: refused. A
 * client whose id or user name holds '+' or '#' matches no pattern
 * (mosquitto's CVE-2017-7650 rule); a pattern with %u never matches an
 * anonymous client. Filters follow MQTT's matching, so "#" does not
 * match "$SYS/..." topics.
 */

/* The access a check asks for. */
enum acl_access { ACL_READ = 1, ACL_WRITE = 2 };

typedef struct acl_s acl_t;           /* a loaded file: immutable */
typedef struct acl_view_s acl_view_t; /* one client's lines, expanded */

/* Reads and checks the ACL file at path. Returns 0 with *out (one
 * reference), or UVMQ_ECONFIG with "PATH:LINE: why" in err[0..errlen)
 * (unknown keyword, unknown access word, missing or invalid filter,
 * "user" without a name). */
int acl_load(acl_t **out, const char *path, char *err, size_t errlen);
/* The same over text[0..len), named name in messages. */
int acl_parse(acl_t **out, const char *text, size_t len, const char *name, char *err,
              size_t errlen);
void acl_retain(acl_t *a);
void acl_release(acl_t **ap);
/* Lines (topic and pattern) in a. */
size_t acl_count(const acl_t *a);

/* Builds the rules of one client: user[0..ulen) (user NULL: anonymous)
 * with client id id[0..idlen) (id NULL: a client without one, such as an
 * HTTP/2 request, to which no pattern naming %c applies). Retains a; the
 * view is the caller's, used on one thread at a time. Returns NULL only
 * when out of memory. */
acl_view_t *acl_view_create(acl_t *a, const char *user, size_t ulen, const char *id,
                            size_t idlen);
/* Frees *vp (releasing its acl); *vp is NULL. */
void acl_view_destroy(acl_view_t **vp);
/* 1 when the view allows access (ACL_READ or ACL_WRITE) to the topic
 * name t[0..len), else 0. */
int acl_view_allows(const acl_view_t *v, const char *t, size_t len, unsigned access);
/* SUBSCRIBE: 1 when the view lets a client subscribe to the valid filter
 * f[0..len): no deny line covers every topic f matches, and some read
 * line matches a topic f matches. Deliveries are still checked one by
 * one (acl_view_allows), so a granted wildcard never leaks a topic a
 * deny line or a narrower grant keeps out. */
int acl_view_allows_filter(const acl_view_t *v, const char *f, size_t len);

/* ---- verified credentials (cache.c) ----
 *
 * Successful verifications, so a reconnect storm does not run argon2
 * again for every client. An entry is a keyed digest of (user, stored
 * hash, password): no password is kept, a changed hash (a reload) misses,
 * and it expires ttl after it was made. Thread-safe (one mutex).
 */
typedef struct authcache_s authcache_t;

/* A cache of at most max entries (0: caching off), each good for ttl_ms. */
authcache_t *authcache_create(size_t max, uint64_t ttl_ms);
void authcache_destroy(authcache_t **cp);
/* 1 when (user, stored, pass) was verified less than ttl before now_ms. */
int authcache_lookup(authcache_t *c, const char *user, size_t ulen, const char *stored,
                     const char *pass, size_t plen, uint64_t now_ms);
/* Records a successful verification made at now_ms; past max entries
 * the oldest goes. */
void authcache_insert(authcache_t *c, const char *user, size_t ulen, const char *stored,
                      const char *pass, size_t plen, uint64_t now_ms);
/* Drops every entry. */
void authcache_clear(authcache_t *c);
/* Entries held now. */
size_t authcache_count(authcache_t *c);

#endif

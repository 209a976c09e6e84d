/*
 * auth_int.h - what passwd.c and acl.c share: reading a whole file,
 * walking it line by line, blanks, "NAME:LINE: why" messages, a string
 * index (user name -> item) and MQTT topic matching.
 *
 * Nothing here is thread-safe or meant for the broker; only auth/'s own
 * files include it.
 */
#ifndef UVMQ_AUTH_INT_H
#define UVMQ_AUTH_INT_H

#include <stddef.h>
#include <stdint.h>

/* Largest password or ACL file read: a million users at about 64 bytes a
 * line fit. */
#define AUTH_FILE_MAX (64u << 20)
/* Longest topic filter or name MQTT can carry. */
#define AUTH_TOPIC_MAX 65535
/* auth__index_find's "not there". */
#define AUTH_NONE SIZE_MAX

/* ---- files and lines (auth_text.c) ---- */

/* Reads path into a new buffer (*buf, *len; the caller frees *buf; one
 * NUL byte follows the text). Returns 0, or UVMQ_ECONFIG with "PATH: why"
 * in err (and *buf NULL). */
int auth__read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen);

/* A walk over text split on '\n'. */
typedef struct auth_lines_s {
    const char *p, *end; /* what is left */
    unsigned line;       /* number of the line last returned, from 1 */
} auth_lines_t;

void auth__lines_init(auth_lines_t *it, const char *text, size_t len);
/* The next line (without its '\n') in *s, *n; 0 at the end. */
int auth__lines_next(auth_lines_t *it, const char **s, size_t *n);

/* The blanks trimmed around names, hashes and lines: space, tab, CR, VT
 * and FF (what isspace means to mosquitto, less '\n', which ends lines). */
static inline int auth__is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Trims blanks at both ends of s[0..*n); returns the new start. */
const char *auth__trim(const char *s, size_t *n);

/* Writes "NAME:LINE: " (or "NAME: " for line 0) and the formatted reason
 * into err[0..errlen), truncating; returns UVMQ_ECONFIG. */
int auth__errf(char *err, size_t errlen, const char *name, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* ---- string index (auth_text.c) ---- */

/* Open addressing from a byte string to an item number. The keys are
 * borrowed: they must stay where they are while the index lives. */
typedef struct auth_index_s {
    struct auth_slot_s *slots; /* cap slots; NULL until the first add */
    size_t cap;                /* a power of two, or 0 */
    size_t used;
} auth_index_t;

/* Adds key -> item. Returns 0, or UVMQ_EEXISTS (index unchanged) when key
 * is there already; *old (if not NULL) is then the item it maps to. */
int auth__index_add(auth_index_t *ix, const char *key, size_t len, size_t item, size_t *old);
/* The item of key, or AUTH_NONE. */
size_t auth__index_find(const auth_index_t *ix, const char *key, size_t len);
/* Frees the slots (not the keys). */
void auth__index_dispose(auth_index_t *ix);

/* ---- topic matching (acl_match.c) ---- */

/* 1 when f[0..flen) is a valid MQTT filter: 1 to 65535 bytes, '+' and '#'
 * only as whole levels, '#' only last. */
int acl__filter_valid(const char *f, size_t flen);
/* 1 when filter f matches topic name t (a '+' or '#' in t is an ordinary
 * character). */
int acl__matches(const char *f, size_t flen, const char *t, size_t tlen);
/* 1 when some topic name matches both filters. */
int acl__intersects(const char *a, size_t alen, const char *b, size_t blen);
/* 1 when every topic name that filter f matches, filter d matches too. */
int acl__covers(const char *d, size_t dlen, const char *f, size_t flen);

#endif

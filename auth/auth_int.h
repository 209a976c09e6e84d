/*
 * auth_int.h - what passwd.c and acl.c share: reading a whole file,
 * walking its lines, blanks, "NAME:LINE: why" messages, reference counts,
 * a string index (user name -> item) and MQTT topic matching.
 *
 * Nothing here is thread-safe or meant for the broker; only auth/'s own
 * files include it.
 */
#ifndef UVMQ_AUTH_INT_H
#define UVMQ_AUTH_INT_H

#include <assert.h>
#include <stdatomic.h>
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

/* Where a parse is, for its messages. */
typedef struct auth_parse_s {
    const char *name; /* the file's name in messages */
    unsigned line;    /* the line being read, from 1; 0 for the whole file */
    char *err;        /* where a message goes: errlen bytes, may be NULL */
    size_t errlen;
} auth_parse_t;

/* What a parser does with one line: s[0..n), trimmed, not empty and not
 * a comment. Returns 0, or an error from auth__fail. */
typedef int (*auth_line_cb)(auth_parse_t *p, void *state, const char *s, size_t n);

/* Runs cb over the lines of text[0..len) (split on '\n'; a last line
 * without one counts), with p->line set. Blank lines and lines whose
 * first non-blank is '#' are skipped; a NUL byte in a line is an error.
 * Returns 0, or the first error. */
int auth__parse_lines(auth_parse_t *p, const char *text, size_t len, auth_line_cb cb, void *state);

/* The blanks trimmed around names, hashes and lines: space, tab, CR, VT
 * and FF (what isspace means to mosquitto, less '\n', which ends lines). */
static inline int auth__is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Trims blanks at both ends of s[0..*n); returns the new start. */
const char *auth__trim(const char *s, size_t *n);

/* Writes "NAME:LINE: " (or "NAME: " when p->line is 0) and the formatted
 * reason into p->err, truncating; returns UVMQ_ECONFIG. */
int auth__fail(auth_parse_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- reference counts ---- */

static inline void auth__ref_retain(atomic_uint *refs)
{
    unsigned old = atomic_fetch_add_explicit(refs, 1, memory_order_relaxed);
    assert(old > 0);
    (void)old;
}

/* 1 when the reference dropped was the last: the caller frees. */
static inline int auth__ref_release(atomic_uint *refs)
{
    unsigned old = atomic_fetch_sub_explicit(refs, 1, memory_order_acq_rel);
    assert(old > 0);
    return old == 1;
}

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

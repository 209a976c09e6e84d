/*
 * auth_text.c - the plumbing under passwd.c and acl.c: a file read whole,
 * its lines, trimmed blanks, "NAME:LINE: why" messages and the string
 * index that finds a user's entry in O(1).
 *
 * Files are read whole because both parsers want every line checked
 * before anything is used, and a file of AUTH_FILE_MAX bytes at most is
 * cheap to hold for the length of a load.
 */
#include "auth_int.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/hash.h"
#include "common/xmalloc.h"

/* One slot of the index: a borrowed key, its hash and its item (+1, so a
 * zeroed slot is empty). */
struct auth_slot_s {
    const char *key;
    size_t len;
    size_t item1;
    uint32_t hash;
};

/* ---- files and lines ---- */

/* Reads f to its end into a growing buffer. Returns 0, or an errno value,
 * or EFBIG past AUTH_FILE_MAX. */
static int read_all(FILE *f, char **buf, size_t *len)
{
    size_t cap = 4096, n = 0, got;
    char *b = xmalloc(cap + 1);
    int rc = 0;
    while ((got = fread(b + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n > AUTH_FILE_MAX) {
            rc = EFBIG;
            break;
        }
        if (n == cap) {
            cap = cap * 2 > AUTH_FILE_MAX ? AUTH_FILE_MAX + 1 : cap * 2;
            b = xrealloc(b, cap + 1);
        }
    }
    if (rc == 0 && ferror(f)) rc = errno ? errno : EIO;
    if (rc != 0) {
        free(b);
        b = NULL;
        n = 0;
    } else {
        b[n] = '\0';
    }
    *buf = b;
    *len = n;
    return rc;
}

/* Reads path whole; see auth_int.h. */
int auth__read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
    char why[128];
    int rc = 0;
    FILE *f = fopen(path, "rb");
    *buf = NULL;
    *len = 0;
    if (f == NULL) {
        rc = errno;
    } else {
        errno = 0;
        rc = read_all(f, buf, len);
        fclose(f);
    }
    if (rc == EFBIG)
        return auth__errf(err, errlen, path, 0, "larger than %u bytes", (unsigned)AUTH_FILE_MAX);
    if (rc != 0) return auth__errf(err, errlen, path, 0, "%s", strerror_r(rc, why, sizeof why));
    return 0;
}

/* Starts a walk over text[0..len). */
void auth__lines_init(auth_lines_t *it, const char *text, size_t len)
{
    it->p = text;
    it->end = text + len;
    it->line = 0;
}

/* Returns the next line; see auth_int.h. A final line without '\n' counts;
 * an empty text has no lines. */
int auth__lines_next(auth_lines_t *it, const char **s, size_t *n)
{
    if (it->p >= it->end) return 0;
    const char *nl = memchr(it->p, '\n', (size_t)(it->end - it->p));
    const char *stop = nl ? nl : it->end;
    *s = it->p;
    *n = (size_t)(stop - it->p);
    it->p = nl ? nl + 1 : it->end;
    it->line++;
    return 1;
}

/* Trims blanks at both ends; see auth_int.h. */
const char *auth__trim(const char *s, size_t *n)
{
    size_t len = *n;
    while (len > 0 && auth__is_blank(*s)) {
        s++;
        len--;
    }
    while (len > 0 && auth__is_blank(s[len - 1]))
        len--;
    *n = len;
    return s;
}

/* Formats an error message; see auth_int.h. */
int auth__errf(char *err, size_t errlen, const char *name, unsigned line, const char *fmt, ...)
{
    va_list ap;
    int used;
    if (err == NULL || errlen == 0) return UVMQ_ECONFIG;
    if (line > 0)
        used = snprintf(err, errlen, "%s:%u: ", name, line);
    else
        used = snprintf(err, errlen, "%s: ", name);
    if (used >= 0 && (size_t)used < errlen) {
        va_start(ap, fmt);
        vsnprintf(err + used, errlen - (size_t)used, fmt, ap);
        va_end(ap);
    }
    return UVMQ_ECONFIG;
}

/* ---- string index ---- */

/* The slot holding key, or the empty slot where it would go. */
static struct auth_slot_s *probe(const auth_index_t *ix, const char *key, size_t len, uint32_t hash)
{
    size_t mask = ix->cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        struct auth_slot_s *s = &ix->slots[i];
        if (s->item1 == 0) return s;
        if (s->hash == hash && s->len == len && memcmp(s->key, key, len) == 0) return s;
    }
}

/* Doubles the table (8 slots at first), keeping the load at most 1/2. */
static void grow(auth_index_t *ix)
{
    auth_index_t bigger = {NULL, ix->cap ? ix->cap * 2 : 8, ix->used};
    bigger.slots = xcalloc(bigger.cap, sizeof *bigger.slots);
    for (size_t i = 0; i < ix->cap; i++) {
        const struct auth_slot_s *s = &ix->slots[i];
        if (s->item1 != 0) *probe(&bigger, s->key, s->len, s->hash) = *s;
    }
    free(ix->slots);
    *ix = bigger;
}

/* Adds key -> item; see auth_int.h. */
int auth__index_add(auth_index_t *ix, const char *key, size_t len, size_t item, size_t *old)
{
    uint32_t hash = fnv1a(FNV1A_SEED, key, len);
    if ((ix->used + 1) * 2 > ix->cap) grow(ix);
    struct auth_slot_s *s = probe(ix, key, len, hash);
    if (s->item1 != 0) {
        if (old) *old = s->item1 - 1;
        return UVMQ_EEXISTS;
    }
    *s = (struct auth_slot_s){key, len, item + 1, hash};
    ix->used++;
    return 0;
}

/* Finds key; see auth_int.h. */
size_t auth__index_find(const auth_index_t *ix, const char *key, size_t len)
{
    if (ix->cap == 0) return AUTH_NONE;
    const struct auth_slot_s *s = probe(ix, key, len, fnv1a(FNV1A_SEED, key, len));
    return s->item1 ? s->item1 - 1 : AUTH_NONE;
}

/* Frees the slots; see auth_int.h. */
void auth__index_dispose(auth_index_t *ix)
{
    free(ix->slots);
    *ix = (auth_index_t){NULL, 0, 0};
}

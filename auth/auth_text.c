/*
 * auth_text.c - the plumbing under passwd.c and acl.c: a file read whole,
 * its lines with blanks trimmed and comments skipped, "NAME:LINE: why"
 * messages and the string index that finds a user's entry in O(1).
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
    auth_parse_t p = {path, 0, err, errlen};
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
    if (rc == EFBIG) return auth__fail(&p, "larger than %u bytes", (unsigned)AUTH_FILE_MAX);
    if (rc != 0) return auth__fail(&p, "%s", strerror_r(rc, why, sizeof why));
    return 0;
}

/* Runs cb over the content lines; see auth_int.h. */
int auth__parse_lines(auth_parse_t *p, const char *text, size_t len, auth_line_cb cb, void *state)
{
    const char *end = text + len;
    int rc = 0;
    p->line = 0;
    while (rc == 0 && text < end) {
        const char *nl = memchr(text, '\n', (size_t)(end - text));
        size_t n = (size_t)((nl ? nl : end) - text);
        const char *s = auth__trim(text, &n);
        text = nl ? nl + 1 : end;
        p->line++;
        if (n == 0 || s[0] == '#') continue;
        rc = memchr(s, '\0', n) ? auth__fail(p, "NUL byte in the line") : cb(p, state, s, n);
    }
    return rc;
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
int auth__fail(auth_parse_t *p, const char *fmt, ...)
{
    va_list ap;
    int used;
    if (p->err == NULL || p->errlen == 0) return UVMQ_ECONFIG;
    if (p->line > 0)
        used = snprintf(p->err, p->errlen, "%s:%u: ", p->name, p->line);
    else
        used = snprintf(p->err, p->errlen, "%s: ", p->name);
    if (used >= 0 && (size_t)used < p->errlen) {
        va_start(ap, fmt);
        vsnprintf(p->err + used, p->errlen - (size_t)used, fmt, ap);
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

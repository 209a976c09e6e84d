/*
 * acl.c - mosquitto ACL files: loading them, and per-client views that
 * answer "may this client read, write or subscribe to that?".
 *
 * A loaded file is a list of blocks (the anonymous one, then one per user
 * name, found through a hash index) and the list of patterns; in each,
 * deny lines stand first and the rest keep their file order, as mosquitto
 * 2.0's src/security_default.c arranges them (add__acl, add__acl_pattern).
 * A view borrows its user's block from the file and holds the patterns
 * that apply to its client with %c and %u already replaced, so a check
 * walks two arrays and allocates nothing. The matching itself is in
 * acl_match.c.
 *
 * FORMAT (one instruction a line; blanks around words are ignored):
 *   # comment                  a line whose first non-blank is '#'
 *   user NAME                  NAME's block starts (the rest of the line,
 *                              trimmed; a second "user NAME" adds to it)
 *   topic [ACCESS] FILTER      a line of the current block; before any
 *                              "user", the anonymous clients' block
 *   pattern [ACCESS] FILTER    a line for every client; a level that is
 *                              exactly %c or %u becomes the client id or
 *                              user name ("devices/%c/#"); "dev-%c" stays
 *                              as written, as in mosquitto 2.1
 *   ACCESS                     read, write, readwrite or deny; left out,
 *                              readwrite. As in mosquitto, a lone word
 *                              after topic is the filter ("topic read"
 *                              grants readwrite on the topic "read"), and
 *                              FILTER is the rest of the line, so it may
 *                              hold blanks.
 * Errors (UVMQ_ECONFIG, "NAME:LINE: why"): an unknown keyword or access
 * word, topic/pattern without a filter, an invalid MQTT filter, user
 * without a name, a NUL byte.
 */
#include "auth.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "auth_int.h"
#include "common/err.h"
#include "common/xmalloc.h"

/* The most substituted-filter text a view may hold: client ids and user
 * names are the peer's choice (up to 65535 bytes each) and each %c or %u
 * level copies one. */
#define ACL_VIEW_TEXT_MAX (1u << 20)
/* rule_t.subst bits: the pattern has a level that is exactly %c / %u. */
#define SUBST_C 1
#define SUBST_U 2
/* rule_decides' access for a SUBSCRIBE check. */
#define CHECK_FILTER 0

/* One topic or pattern line. */
typedef struct rule_s {
    const char *filter; /* owned by the acl_t, or by a view's text */
    uint32_t len;
    uint8_t access; /* ACL_READ | ACL_WRITE; 0 is deny */
    uint8_t subst;  /* SUBST_* (patterns of the file only) */
} rule_t;

/* A list of lines: a user's block, the anonymous block or the patterns. */
typedef struct block_s {
    char *user; /* NUL-terminated; NULL for the anonymous block and patterns */
    size_t ulen;
    rule_t *rules;
    size_t n, cap;
} block_t;

struct acl_s {
    atomic_uint refs;
    block_t anon;     /* lines before the first "user" */
    block_t patterns; /* every "pattern" line */
    block_t *users;   /* one block per user name */
    size_t nusers, capusers;
    auth_index_t index; /* user name -> users[] */
    size_t lines;       /* topic and pattern lines */
};

struct acl_view_s {
    acl_t *acl;           /* retained */
    const block_t *block; /* the client's block in acl, or NULL */
    rule_t *pats;         /* the patterns that apply, expanded; one allocation */
    size_t npats;         /* with the text of their filters after them */
};

/* What the parser builds, and where it is in it. */
typedef struct reader_s {
    acl_t *a;
    size_t cur_user; /* the block "topic" lines go to: a->users[cur_user],
                      * or a->anon while it is AUTH_NONE */
} reader_t;

/* ---- loading ---- */

/* Cuts the first blank-separated word off s[0..*n) (which has no leading
 * blanks); returns it with its length in *wlen, and leaves the rest,
 * trimmed, in *s, *n. */
static const char *take_word(const char **s, size_t *n, size_t *wlen)
{
    const char *w = *s;
    size_t i = 0;
    while (i < *n && !auth__is_blank(w[i]))
        i++;
    *wlen = i;
    *n -= i;
    *s = auth__trim(w + i, n);
    return w;
}

/* SUBST_* bits of a pattern's filter. */
static uint8_t subst_bits(const char *f, size_t n)
{
    uint8_t bits = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && f[i] != '/') continue;
        if (i - start == 2 && f[start] == '%' && f[start + 1] == 'c') bits |= SUBST_C;
        if (i - start == 2 && f[start] == '%' && f[start + 1] == 'u') bits |= SUBST_U;
        start = i + 1;
    }
    return bits;
}

static void block_add(block_t *b, const char *f, size_t n, uint8_t access, uint8_t subst)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 4;
        b->rules = xrealloc(b->rules, b->cap * sizeof *b->rules);
    }
    b->rules[b->n++] = (rule_t){xstrndup(f, n), (uint32_t)n, access, subst};
}

/* Makes the deny lines of b come first, each group in file order. */
static void deny_first(block_t *b)
{
    size_t k = 0;
    if (b->n < 2) return;
    rule_t *sorted = xmalloc(b->n * sizeof *sorted);
    for (size_t i = 0; i < b->n; i++)
        if (b->rules[i].access == 0) sorted[k++] = b->rules[i];
    for (size_t i = 0; i < b->n; i++)
        if (b->rules[i].access != 0) sorted[k++] = b->rules[i];
    free(b->rules);
    b->rules = sorted;
    b->cap = b->n;
}

/* "user NAME": finds or starts NAME's block. */
static int parse_user(auth_parse_t *p, reader_t *rd, const char *s, size_t n)
{
    acl_t *a = rd->a;
    size_t at;
    if (n == 0) return auth__fail(p, "user without a name");
    if (n > PASSWD_USER_MAX)
        return auth__fail(p, "user name longer than %u bytes", PASSWD_USER_MAX);
    at = auth__index_find(&a->index, s, n);
    if (at == AUTH_NONE) {
        if (a->nusers == a->capusers) {
            a->capusers = a->capusers ? a->capusers * 2 : 4;
            a->users = xrealloc(a->users, a->capusers * sizeof *a->users);
        }
        at = a->nusers++;
        a->users[at] = (block_t){xstrndup(s, n), n, NULL, 0, 0};
        auth__index_add(&a->index, a->users[at].user, n, at, NULL);
    }
    rd->cur_user = at;
    return 0;
}

/* The ACL_* bits of an access word; -1 when it is none. */
static int access_bits(const char *w, size_t n)
{
    static const struct {
        const char *word;
        int bits;
    } words[] = {
        {"read", ACL_READ}, {"write", ACL_WRITE}, {"readwrite", ACL_READ | ACL_WRITE}, {"deny", 0}};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strlen(words[i].word) == n && memcmp(words[i].word, w, n) == 0) return words[i].bits;
    return -1;
}

/* "topic ..." or "pattern ...": s[0..n) is what follows the keyword. */
static int parse_rule(auth_parse_t *p, reader_t *rd, const char *kw, const char *s, size_t n)
{
    size_t wlen;
    int access = ACL_READ | ACL_WRITE, pattern = kw[0] == 'p';
    const char *w = take_word(&s, &n, &wlen);
    if (wlen == 0) return auth__fail(p, "%s without a filter", kw);
    if (n == 0) {
        s = w; /* one word: the filter, readwrite */
        n = wlen;
    } else if ((access = access_bits(w, wlen)) < 0) {
        return auth__fail(p, "unknown access word '%.*s' (read, write, readwrite or deny)",
                          (int)(wlen > 32 ? 32 : wlen), w);
    }
    if (!acl__filter_valid(s, n))
        return auth__fail(p, "invalid topic filter '%.*s'", (int)(n > 64 ? 64 : n), s);
    block_t *b = &rd->a->anon;
    if (pattern)
        b = &rd->a->patterns;
    else if (rd->cur_user != AUTH_NONE)
        b = &rd->a->users[rd->cur_user];
    block_add(b, s, n, (uint8_t)access, pattern ? subst_bits(s, n) : 0);
    rd->a->lines++;
    return 0;
}

/* One line of the file (an auth_line_cb). */
static int parse_line(auth_parse_t *p, void *state, const char *s, size_t n)
{
    size_t wlen;
    const char *w = take_word(&s, &n, &wlen);
    if (wlen == 4 && memcmp(w, "user", 4) == 0) return parse_user(p, state, s, n);
    if (wlen == 5 && memcmp(w, "topic", 5) == 0) return parse_rule(p, state, "topic", s, n);
    if (wlen == 7 && memcmp(w, "pattern", 7) == 0) return parse_rule(p, state, "pattern", s, n);
    return auth__fail(p, "unknown keyword '%.*s' (topic, pattern or user)",
                      (int)(wlen > 32 ? 32 : wlen), w);
}

static void block_dispose(block_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        free((char *)b->rules[i].filter);
    free(b->rules);
    free(b->user);
}

static void acl_free(acl_t *a)
{
    block_dispose(&a->anon);
    block_dispose(&a->patterns);
    for (size_t i = 0; i < a->nusers; i++)
        block_dispose(&a->users[i]);
    free(a->users);
    auth__index_dispose(&a->index);
    free(a);
}

/* Parses text[0..len); see auth.h. On failure nothing is kept. */
int acl_parse(acl_t **out, const char *text, size_t len, const char *name, char *err, size_t errlen)
{
    acl_t *a = xcalloc(1, sizeof *a);
    reader_t rd = {a, AUTH_NONE};
    auth_parse_t p = {name, 0, err, errlen};
    atomic_init(&a->refs, 1);
    int rc = auth__parse_lines(&p, text, len, parse_line, &rd);
    if (rc != 0) {
        acl_free(a);
        a = NULL;
    } else {
        deny_first(&a->anon);
        deny_first(&a->patterns);
        for (size_t i = 0; i < a->nusers; i++)
            deny_first(&a->users[i]);
    }
    *out = a;
    return rc;
}

/* Reads and parses the file at path; see auth.h. */
int acl_load(acl_t **out, const char *path, char *err, size_t errlen)
{
    char *text;
    size_t len;
    int rc = auth__read_file(path, &text, &len, err, errlen);
    *out = NULL;
    if (rc == 0) rc = acl_parse(out, text, len, path, err, errlen);
    free(text);
    return rc;
}

/* Adds a reference; any thread. */
void acl_retain(acl_t *a)
{
    auth__ref_retain(&a->refs);
}

/* Drops *ap's reference, freeing the file on the last; *ap is NULL. */
void acl_release(acl_t **ap)
{
    acl_t *a = *ap;
    *ap = NULL;
    if (a && auth__ref_release(&a->refs)) acl_free(a);
}

size_t acl_count(const acl_t *a)
{
    return a->lines;
}

/* ---- views ---- */

/* Writes r's filter with each whole %c / %u level replaced into out (when
 * out is not NULL); returns its length. */
static size_t expand(const rule_t *r, const char *id, size_t idlen, const char *user, size_t ulen,
                     char *out)
{
    size_t start = 0, len = 0;
    for (size_t i = 0; i <= r->len; i++) {
        if (i < r->len && r->filter[i] != '/') continue;
        const char *lv = r->filter + start;
        size_t lvlen = i - start;
        if (lvlen == 2 && lv[0] == '%' && (lv[1] == 'c' || lv[1] == 'u')) {
            lvlen = lv[1] == 'c' ? idlen : ulen;
            lv = lv[1] == 'c' ? id : user;
        }
        if (out && lvlen) memcpy(out + len, lv, lvlen);
        len += lvlen;
        if (i < r->len) {
            if (out) out[len] = '/';
            len++;
        }
        start = i + 1;
    }
    return len;
}

/* 1 when s[0..n) holds '+' or '#'. */
static int has_wildcard(const char *s, size_t n)
{
    return n > 0 && (memchr(s, '+', n) || memchr(s, '#', n));
}

/* 1 when pattern r applies to a client: a %u pattern to one with a user
 * name, a %c one to one with a client id (an HTTP/2 request has none). */
static int applies(const rule_t *r, const char *user, const char *id)
{
    return !((r->subst & SUBST_U) && user == NULL) && !((r->subst & SUBST_C) && id == NULL);
}

/* Fills v->pats with the patterns that apply to the client. Returns 0, or
 * -1 past ACL_VIEW_TEXT_MAX or out of memory. */
static int view_patterns(acl_view_t *v, const block_t *p, const char *user, size_t ulen,
                         const char *id, size_t idlen)
{
    size_t text = 0, n = 0;
    /* CVE-2017-7650: an id or name with a wildcard must not widen a pattern. */
    if (has_wildcard(id, idlen) || (user && has_wildcard(user, ulen))) return 0;
    for (size_t i = 0; i < p->n; i++) {
        if (!applies(&p->rules[i], user, id)) continue;
        n++;
        if (p->rules[i].subst) text += expand(&p->rules[i], id, idlen, user, ulen, NULL);
    }
    if (n == 0) return 0;
    v->pats = try_malloc(n * sizeof *v->pats + text, n * sizeof *v->pats + ACL_VIEW_TEXT_MAX);
    if (v->pats == NULL) return -1;
    char *t = (char *)(v->pats + n);
    for (size_t i = 0; i < p->n; i++) {
        rule_t r = p->rules[i];
        if (!applies(&r, user, id)) continue;
        if (r.subst) {
            r.len = (uint32_t)expand(&p->rules[i], id, idlen, user, ulen, t);
            r.filter = t;
            t += r.len;
        }
        if (r.len > 0) v->pats[v->npats++] = r; /* "%c" with an empty id matches nothing */
    }
    return 0;
}

/* Builds one client's view; see auth.h. */
acl_view_t *acl_view_create(acl_t *a, const char *user, size_t ulen, const char *id, size_t idlen)
{
    acl_view_t *v = xcalloc(1, sizeof *v);
    size_t at;
    if (id == NULL) idlen = 0; /* no client id: no %c pattern applies */
    if (user == NULL) {
        v->block = &a->anon;
    } else if ((at = auth__index_find(&a->index, user, ulen)) != AUTH_NONE) {
        v->block = &a->users[at];
    }
    if (view_patterns(v, &a->patterns, user, ulen, id, idlen) != 0) {
        free(v);
        return NULL;
    }
    acl_retain(a);
    v->acl = a;
    return v;
}

/* Frees *vp and drops its acl reference; *vp is NULL. */
void acl_view_destroy(acl_view_t **vp)
{
    acl_view_t *v = *vp;
    *vp = NULL;
    if (v == NULL) return;
    acl_release(&v->acl);
    free(v->pats);
    free(v);
}

/* What one line says about s: 1 allow, 0 refuse, -1 nothing (next line).
 * access is ACL_READ or ACL_WRITE for a topic name, CHECK_FILTER for a
 * SUBSCRIBE filter. */
static int rule_decides(const rule_t *r, const char *s, size_t n, unsigned access)
{
    if (access == CHECK_FILTER) {
        if (r->access == 0) return acl__covers(r->filter, r->len, s, n) ? 0 : -1;
        return (r->access & ACL_READ) && acl__intersects(r->filter, r->len, s, n) ? 1 : -1;
    }
    if (!acl__matches(r->filter, r->len, s, n)) return -1;
    if (r->access == 0) return 0;
    return (r->access & access) ? 1 : -1;
}

/* The client's block, then its patterns: the first line that decides. */
static int view_decides(const acl_view_t *v, const char *s, size_t n, unsigned access)
{
    int rc = -1;
    const block_t *b = v->block;
    for (size_t i = 0; b && rc < 0 && i < b->n; i++)
        rc = rule_decides(&b->rules[i], s, n, access);
    for (size_t i = 0; rc < 0 && i < v->npats; i++)
        rc = rule_decides(&v->pats[i], s, n, access);
    return rc == 1;
}

/* PUBLISH and delivery: 1 when access to the topic name t is allowed. */
int acl_view_allows(const acl_view_t *v, const char *t, size_t len, unsigned access)
{
    assert(access == ACL_READ || access == ACL_WRITE);
    return len > 0 && view_decides(v, t, len, access);
}

/* SUBSCRIBE: 1 when the filter f may be subscribed to; an invalid filter
 * may not. A shared subscription's "$share/NAME/" is the caller's to
 * strip: it would be compared as two literal levels. */
int acl_view_allows_filter(const acl_view_t *v, const char *f, size_t len)
{
    return acl__filter_valid(f, len) && view_decides(v, f, len, CHECK_FILTER);
}

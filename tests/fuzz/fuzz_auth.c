/*
 * fuzz_auth.c - libFuzzer target for auth/: the password and ACL file
 * parsers, the per-client views and the matching under them.
 *
 * The input is FILE, a NUL byte, then QUERIES: lines of which the first
 * is a user name ("-" for an anonymous client), the second a client id
 * and the rest topics and filters. FILE is read as a password file and as
 * an ACL file. Password users named in the queries are looked up and, for
 * the cheap hashes ("$6$", "$7$" under 1000 iterations), verified; the
 * first query is hashed as "$6$" and must verify. An ACL view is built
 * and every query is checked as a topic name and as a filter. Besides
 * crashes and sanitizer reports, these must hold or the target aborts:
 * a topic name without '+' or '#' is read by the same rule whether it is
 * asked as a name or as a filter; a filter covers and meets itself; a
 * covering filter meets; meeting is symmetric.
 *
 * make fuzz FUZZ_TARGETS=auth builds and runs it (the Makefile has the
 * command line), seeded from tests/fuzz/corpus/auth.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "auth/auth_int.h"
#include "common/err.h"

#define QUERIES_MAX 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct query_s {
    const char *s;
    size_t n;
} query_t;

/* Splits q[0..n) on '\n' into at most QUERIES_MAX queries. */
static size_t split(const char *q, size_t n, query_t *out)
{
    size_t count = 0;
    while (n > 0 && count < QUERIES_MAX) {
        const char *nl = memchr(q, '\n', n);
        size_t len = nl ? (size_t)(nl - q) : n;
        out[count++] = (query_t){q, len};
        q += len + (nl != NULL);
        n -= len + (nl != NULL);
    }
    return count;
}

/* 1 for a "$7$" hash of fewer than 1000 iterations or any "$6$". */
static int cheap(const char *hash)
{
    if (strncmp(hash, "$6$", 3) == 0) return 1;
    return strncmp(hash, "$7$", 3) == 0 && strtol(hash + 3, NULL, 10) < 1000;
}

static void check_passwd(const char *text, size_t len, const query_t *q, size_t nq)
{
    char err[256], hash[PASSWD_HASH_MAX], line[PASSWD_HASH_MAX + 8];
    passwd_t *pw = NULL;
    if (passwd_parse(&pw, text, len, "fuzz", err, sizeof err) == 0) {
        for (size_t i = 0; i < nq; i++) {
            const passwd_user_t *u = passwd_find(pw, q[i].s, q[i].n);
            if (u && cheap(passwd_user_hash(u))) {
                int rc = passwd_verify(u, q[i].s, q[i].n);
                if (rc != 0 && rc != UVMQ_EAUTH) abort();
            }
        }
        passwd_release(&pw);
    }
    if (nq == 0 || passwd_hash(PASSWD_SHA512, q[0].s, q[0].n, 0, hash, sizeof hash) != 0) return;
    memcpy(line, "u:", 2);
    memcpy(line + 2, hash, strlen(hash) + 1);
    if (passwd_parse(&pw, line, strlen(line), "fuzz", err, sizeof err) != 0) abort();
    if (passwd_verify(passwd_find(pw, "u", 1), q[0].s, q[0].n) != 0) abort();
    passwd_release(&pw);
}

/* The matching invariants over two filters. */
static void check_filters(const query_t *a, const query_t *b)
{
    if (!acl__filter_valid(a->s, a->n) || !acl__filter_valid(b->s, b->n)) return;
    if (!acl__covers(a->s, a->n, a->s, a->n) || !acl__intersects(a->s, a->n, a->s, a->n))
        abort();
    int meets = acl__intersects(a->s, a->n, b->s, b->n);
    if (meets != acl__intersects(b->s, b->n, a->s, a->n)) abort();
    if (acl__covers(a->s, a->n, b->s, b->n) && !meets) abort();
}

static void check_view(const acl_view_t *v, const query_t *q)
{
    int r = acl_view_allows(v, q->s, q->n, ACL_READ);
    (void)acl_view_allows(v, q->s, q->n, ACL_WRITE);
    int f = acl_view_allows_filter(v, q->s, q->n);
    int name = q->n > 0 && !memchr(q->s, '+', q->n) && !memchr(q->s, '#', q->n);
    if (name && q->n <= AUTH_TOPIC_MAX && r != f) abort();
}

static void check_acl(const char *text, size_t len, const query_t *q, size_t nq)
{
    char err[256];
    acl_t *a = NULL;
    if (acl_parse(&a, text, len, "fuzz", err, sizeof err) != 0) return;
    int anonymous = nq == 0 || (q[0].n == 1 && q[0].s[0] == '-');
    const char *user = anonymous ? NULL : q[0].s;
    size_t ulen = anonymous ? 0 : q[0].n;
    acl_view_t *v = acl_view_create(a, user, ulen, nq > 1 ? q[1].s : "c", nq > 1 ? q[1].n : 1);
    for (size_t i = 2; v && i < nq; i++) {
        check_view(v, &q[i]);
        check_filters(&q[i], &q[i + 1 < nq ? i + 1 : 2]);
    }
    acl_view_destroy(&v);
    acl_release(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nul = memchr(text, '\0', size);
    size_t len = nul ? (size_t)(nul - text) : size;
    query_t q[QUERIES_MAX];
    size_t nq = nul ? split(nul + 1, size - len - 1, q) : 0;
    check_passwd(text, len, q, nq);
    check_acl(text, len, q, nq);
    return 0;
}

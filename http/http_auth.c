/*
 * http_auth.c - who an HTTP/2 request comes from: Basic credentials
 * (RFC 7617) checked against the broker's password file, the same users
 * MQTT clients have.
 *
 * With a password file every request but GET /healthz must carry
 * "Authorization: Basic base64(user:password)"; a missing or wrong one
 * gets 401 with WWW-Authenticate. The password is verified by the core
 * (conn_authenticate): from its cache of verified credentials at once, or
 * on the thread pool, while the stream waits (its request may end
 * meanwhile; http_api.c runs it once the verdict is in). Without a
 * password file a request without credentials is anonymous where the
 * listener takes anonymous clients, and a user name given is taken as
 * it is, as for MQTT. What the user may then do is the ACL's (http_api.c
 * asks conn_may_publish and conn_may_subscribe).
 */
#include "http_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

/* Longest Authorization value looked at (user and password of 1 KiB in
 * base64 and the scheme). */
#define AUTH_VALUE_MAX 2800

/* 401 with the challenge (RFC 7617 section 2). */
static void unauthorized(http_stream_t *st, const char *msg)
{
    static const char *const extra[] = {"www-authenticate",
                                        "Basic realm=\"uvmq\", charset=\"UTF-8\""};
    http_buf_t b = {0};
    if (http__json_error(&b, msg, PKT_RC_BAD_USER_PASS) == 0)
        http__respond(st, 401, "application/json", b.p, b.len, extra, 1);
    http__buf_free(&b);
}

/* Keeps user[0..len) as the stream's user. */
static void keep_user(http_stream_t *st, const char *user, size_t len)
{
    free(st->user);
    st->user = xmalloc(len + 1);
    memcpy(st->user, user, len);
    st->user[len] = '\0';
    st->user_len = (uint32_t)len;
}

/* A verification the stream waited for ended (on the loop): its request
 * goes on, or gets 401. */
static void on_verified(conn_t *c, void *arg, int verdict)
{
    http_stream_t *st = arg;
    st->auth_job = NULL;
    if (verdict != CONN_AUTH_OK) {
        unauthorized(st, "bad user name or password");
    } else {
        st->auth = HTTP_AUTH_OK;
        if (st->ended) http__request_end(st);
    }
    conn_want_flush(c);
}

/* Decodes "Basic <base64>" in v[0..len) into buf (len bytes at least)
 * and splits it at the first ':'. Returns 0, or -1 when it is not Basic,
 * not base64, has no colon, or the user name is not UTF-8. */
static int parse_basic(const char *v, size_t len, uint8_t *buf, const char **user,
                       size_t *ulen, const char **pass, size_t *plen)
{
    if (len < 6 || strncasecmp(v, "Basic ", 6) != 0) return -1;
    v += 6;
    len -= 6;
    while (len > 0 && *v == ' ') v++, len--;
    long n = http__b64_decode(v, len, buf);
    const uint8_t *colon = n > 0 ? memchr(buf, ':', (size_t)n) : NULL;
    if (colon == NULL) return -1;
    *user = (const char *)buf;
    *ulen = (size_t)(colon - buf);
    *pass = (const char *)colon + 1;
    *plen = (size_t)n - *ulen - 1;
    return pkt_utf8_valid(buf, *ulen) ? 0 : -1;
}

int http__authorize(http_stream_t *st)
{
    conn_t *c = st->h->c;
    size_t vlen = 0;
    const char *v = http__header(st, "authorization", &vlen);
    const char *user = NULL, *pass = NULL;
    size_t ulen = 0, plen = 0;
    int rc = -1;
    if (v == NULL) {
        if (conn_auth_required(c) || !conn_anonymous_ok(c)) {
            unauthorized(st, "credentials required");
            return -1;
        }
        st->auth = HTTP_AUTH_OK; /* anonymous */
        return 0;
    }
    uint8_t *buf = vlen <= AUTH_VALUE_MAX ? xmalloc(vlen + 1) : NULL;
    if (buf == NULL || parse_basic(v, vlen, buf, &user, &ulen, &pass, &plen) != 0) {
        unauthorized(st, "malformed Authorization (expected Basic credentials)");
    } else if (!conn_auth_required(c)) { /* nothing to check it against */
        keep_user(st, user, ulen);
        st->auth = HTTP_AUTH_OK;
        rc = 0;
    } else {
        switch (conn_authenticate(c, user, ulen, pass, plen, on_verified, st, &st->auth_job)) {
        case CONN_AUTH_OK:
            keep_user(st, user, ulen);
            st->auth = HTTP_AUTH_OK;
            rc = 0;
            break;
        case CONN_AUTH_PENDING:
            keep_user(st, user, ulen);
            st->auth = HTTP_AUTH_WAIT;
            rc = 1;
            break;
        case CONN_AUTH_BUSY: {
            http_err_t e = {503, PKT_RC_SERVER_BUSY, "too many password checks queued"};
            http__respond_error(st, &e);
            break;
        }
        default:
            unauthorized(st, "bad user name or password");
            break;
        }
    }
    if (buf != NULL) explicit_bzero(buf, vlen + 1);
    free(buf);
    return rc;
}

void http__auth_gone(http_stream_t *st)
{
    conn_auth_cancel(&st->auth_job);
    free(st->user);
    st->user = NULL;
}

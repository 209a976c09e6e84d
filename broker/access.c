/*
 * access.c - access control in the broker: who may connect, and what a
 * client may publish, subscribe to and receive.
 *
 * The broker holds the loaded password file and ACL file (auth/ parses
 * them) behind a mutex with a generation number; SIGHUP loads both again
 * and, when they parse, swaps them in and bumps the generation. Nothing
 * on a worker loop takes that mutex per packet: a session's ACL view is
 * rebuilt when it sees a new generation (one atomic load per check).
 *
 * Passwords are verified on the libuv thread pool (argon2id takes tens of
 * milliseconds and 46 MiB): a CONNECT whose credentials are not in the
 * cache of verified ones leaves its bytes unread, reading stops, and the
 * work's callback resumes the connection, which handles the same CONNECT
 * again with the verdict in hand (the connection may be gone by then: its
 * close unhooks the work). Transports other than MQTT (HTTP/2 Basic
 * credentials) get the same verification through conn_authenticate.
 *
 * Read permission is checked per delivery with a small cache of
 * decisions in the session, keyed by topic, so a fan-out of one topic to
 * a thousand subscribers runs the ACL walk once per subscriber and
 * generation. docs/security.md is the user's side of all this.
 */
#include "access_int.h"

#include "config_int.h"
#include "conn_int.h"
#include "connect_int.h"
#include "sess_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/hash.h"
#include "../common/log.h"
#include "../common/xmalloc.h"

_Static_assert((ACCESS_CACHE_SLOTS & (ACCESS_CACHE_SLOTS - 1)) == 0, "a power of two");

struct access_s {
    pthread_mutex_t mu;    /* guards pw and acl */
    passwd_t *pw;          /* the password file in force, or NULL */
    acl_t *acl;            /* the ACL file in force, or NULL */
    authcache_t *cache;    /* verified credentials */
    uint8_t passwd_on;     /* configured (immutable); acl_file's is
                              broker_t.acl_on */
};

/* One verification on the thread pool. The loop's alone, except what
 * the work function reads (u, pass) and writes (rc), which libuv orders
 * around the work. */
struct conn_auth_s {
    uv_work_t req;
    loop_t *l;
    conn_t *c;         /* NULL once c closed or the caller cancelled */
    conn_auth_cb cb;   /* a transport's callback; NULL for an MQTT CONNECT */
    void *arg;
    passwd_t *pw;      /* a reference: u lives in it */
    const passwd_user_t *u; /* NULL: unknown user (checked against the
                               file's decoy, then refused) */
    char *user;        /* owned copies */
    size_t ulen;
    char *pass;
    size_t plen;
    int rc;            /* passwd_verify's */
    uint8_t done;      /* the work ended; rc is the verdict */
    conn_auth_t *next; /* a leader: the loop's next one in flight
                          (loop_t.auth_flight) */
    conn_auth_t *followers; /* a leader: checks of the same credentials
                               that wait for its verdict (not queued) */
    conn_auth_t *next_follower;
};

/* ---- the files ---- */

/* Loads the configured files into *pw and *acl (NULL when not
 * configured). Returns 0, or UVMQ_ECONFIG with the key and the auth/
 * message in err. */
static int load_files(const broker_config_t *cfg, passwd_t **pw, acl_t **acl, char *err,
                      size_t errlen)
{
    char why[512];
    int rc = 0;
    *pw = NULL;
    *acl = NULL;
    if (cfg->password_file != NULL &&
        (rc = passwd_load(pw, cfg->password_file, why, sizeof why)) != 0) {
        snprintf(err, errlen, "password_file: %s", why);
        return rc;
    }
    if (cfg->acl_file != NULL && (rc = acl_load(acl, cfg->acl_file, why, sizeof why)) != 0) {
        snprintf(err, errlen, "acl_file: %s", why);
        passwd_release(pw);
    }
    return rc;
}

int access__check(const broker_config_t *cfg, char *err, size_t errlen)
{
    passwd_t *pw = NULL;
    acl_t *acl = NULL;
    int rc = load_files(cfg, &pw, &acl, err, errlen);
    passwd_release(&pw);
    acl_release(&acl);
    return rc;
}

int access__create(broker_t *b)
{
    const broker_config_t *cfg = b->cfg;
    char err[600];
    access_t *a = xcalloc(1, sizeof *a);
    int rc = load_files(cfg, &a->pw, &a->acl, err, sizeof err);
    if (rc != 0) {
        log_error("%s", err);
        free(a);
        return rc;
    }
    pthread_mutex_init(&a->mu, NULL);
    a->passwd_on = cfg->password_file != NULL;
    a->cache = authcache_create(cfg->auth_cache_size, (uint64_t)cfg->auth_cache_ttl * 1000);
    if (a->pw != NULL)
        log_info("password file %s: %zu users", cfg->password_file, passwd_count(a->pw));
    if (a->acl != NULL) log_info("ACL file %s: %zu lines", cfg->acl_file, acl_count(a->acl));
    if (a->acl != NULL && a->pw == NULL)
        log_warn("acl_file without password_file: the ACL trusts any user name a client "
                 "claims (use a password file or certificate identities)");
    b->access = a;
    b->acl_on = cfg->acl_file != NULL;
    return 0;
}

void access__destroy(broker_t *b)
{
    access_t *a = b->access;
    if (a == NULL) return;
    passwd_release(&a->pw);
    acl_release(&a->acl);
    authcache_destroy(&a->cache);
    pthread_mutex_destroy(&a->mu);
    free(a);
    b->access = NULL;
}

/* Reloads one configured file; on success swaps it in (under the mutex)
 * and returns 1, else logs why and returns 0. */
static int reload_passwd(access_t *a, const char *path)
{
    passwd_t *pw = NULL;
    char why[512];
    if (passwd_load(&pw, path, why, sizeof why) != 0) {
        log_error("password_file: %s; keeping the users loaded before", why);
        return 0;
    }
    log_info("password file %s reloaded: %zu users", path, passwd_count(pw));
    pthread_mutex_lock(&a->mu);
    passwd_t *old = a->pw;
    a->pw = pw;
    pthread_mutex_unlock(&a->mu);
    passwd_release(&old);
    return 1;
}

static int reload_acl(access_t *a, const char *path)
{
    acl_t *acl = NULL;
    char why[512];
    if (acl_load(&acl, path, why, sizeof why) != 0) {
        log_error("acl_file: %s; keeping the rules loaded before", why);
        return 0;
    }
    log_info("ACL file %s reloaded: %zu lines", path, acl_count(acl));
    pthread_mutex_lock(&a->mu);
    acl_t *old = a->acl;
    a->acl = acl;
    pthread_mutex_unlock(&a->mu);
    acl_release(&old);
    return 1;
}

void access__reload(broker_t *b)
{
    access_t *a = b->access;
    int changed = 0;
    if (a->passwd_on && reload_passwd(a, b->cfg->password_file)) {
        authcache_clear(a->cache); /* a removed user must not stay in */
        changed = 1;
    }
    if (b->acl_on) changed |= reload_acl(a, b->cfg->acl_file);
    /* Release: a loop that sees the new generation finds the new files
     * under the mutex anyway; the bump only tells it to look. */
    if (changed) atomic_fetch_add_explicit(&b->acl_gen, 1, memory_order_release);
}

int access__passwd_on(const broker_t *b)
{
    return b->access != NULL && b->access->passwd_on;
}

/* The password file in force (a reference the caller releases), or
 * NULL. */
static passwd_t *current_passwd(access_t *a)
{
    pthread_mutex_lock(&a->mu);
    passwd_t *pw = a->pw;
    if (pw != NULL) passwd_retain(pw);
    pthread_mutex_unlock(&a->mu);
    return pw;
}

/* ---- verification on the thread pool ---- */

/* Thread pool: the slow part. An unknown user's password is checked
 * against the file's decoy user and refused whatever the outcome, so a
 * refusal takes as long as a known user's check (passwd_decoy). */
static void verify_work(uv_work_t *req)
{
    conn_auth_t *w = req->data;
    if (w->u != NULL) {
        w->rc = passwd_verify(w->u, w->pass, w->plen);
    } else {
        (void)passwd_verify(passwd_decoy(w->pw), w->pass, w->plen);
        w->rc = UVMQ_EAUTH;
    }
}

/* Wipes and frees w's copy of the password (it is needed only by the
 * work function). */
static void forget_password(conn_auth_t *w)
{
    if (w->pass != NULL) explicit_bzero(w->pass, w->plen);
    free(w->pass);
    w->pass = NULL;
}

static void verify_free(conn_auth_t *w)
{
    forget_password(w);
    passwd_release(&w->pw);
    free(w->user);
    free(w);
}

/* Hands w its verdict rc: to the transport's callback (w is freed), to an
 * MQTT CONNECT handled again (which frees w), or to nobody when its
 * connection went (w is freed). */
static void hand_verdict(conn_auth_t *w, int rc)
{
    loop_t *l = w->l;
    conn_t *c = w->c;
    w->rc = rc;
    w->done = 1;
    if (w->rc != 0 && w->cb != NULL) { /* an MQTT refusal counts at its CONNECT */
        char user[LOG_QUOTE_MAX];
        CNT_INC(l->b, auth_failed);
        log_info("client %s: bad user name or password (user \"%s\"): refused",
                 c != NULL ? conn__peer(c) : "(gone)",
                 log_quote(user, sizeof user, w->user, w->ulen));
    }
    if (c == NULL) {
        verify_free(w);
    } else if (w->cb != NULL) { /* a transport's: the job ends here */
        conn_auth_cb cb = w->cb;
        void *arg = w->arg;
        int verdict = w->rc == 0 ? CONN_AUTH_OK : CONN_AUTH_DENIED;
        verify_free(w);
        cb(c, arg, verdict);
    } else if (c->state == CONN_NEW) { /* an MQTT CONNECT: handled again */
        conn__resume(c);                /* with the verdict */
    }
}

/* Loop thread, after verify_work: caches a success, then hands the
 * verdict to w and to the checks of the same credentials that waited
 * for it (verify_start). */
static void verify_done(uv_work_t *req, int status)
{
    conn_auth_t *w = req->data;
    loop_t *l = w->l;
    access_t *a = l->b->access;
    conn_auth_t **pp = &l->auth_flight;
    while (*pp != w) pp = &(*pp)->next;
    *pp = w->next;
    l->auth_pending--;
    int rc = status == 0 ? w->rc : UVMQ_EAUTH; /* never cancelled: cannot fail */
    if (rc == 0 && w->u != NULL)
        authcache_insert(a->cache, w->user, w->ulen, passwd_user_hash(w->u), w->pass, w->plen,
                         uv_now(&l->uv));
    forget_password(w);
    conn_auth_t *f = w->followers;
    w->followers = NULL;
    hand_verdict(w, rc); /* w may be gone */
    while (f != NULL) {
        conn_auth_t *next = f->next_follower;
        hand_verdict(f, rc);
        f = next;
    }
}

/* 1 when a and b hold the same bytes, in time that depends only on the
 * lengths (a client must not learn another's password by timing). */
static int same_secret(const char *a, size_t alen, const char *b, size_t blen)
{
    unsigned char d = alen != blen;
    for (size_t i = 0; i < alen && i < blen; i++) d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

/* The check in flight on l of the same credentials (the same user entry
 * of the same file, the same user name and password), or NULL. */
static conn_auth_t *in_flight(loop_t *l, const passwd_t *pw, const passwd_user_t *u,
                              const char *user, size_t ulen, const char *pass, size_t plen)
{
    for (conn_auth_t *w = l->auth_flight; w != NULL; w = w->next)
        if (w->pw == pw && w->u == u && w->ulen == ulen && memcmp(w->user, user, ulen) == 0 &&
            same_secret(w->pass, w->plen, pass, plen))
            return w;
    return NULL;
}

/* A check for c of user[0..ulen), for the log and the cache. */
static conn_auth_t *check_new(conn_t *c, const char *user, size_t ulen)
{
    conn_auth_t *w = xcalloc(1, sizeof *w);
    w->req.data = w;
    w->l = c->loop;
    w->c = c;
    w->user = xmalloc(ulen + 1);
    memcpy(w->user, user, ulen);
    w->user[ulen] = '\0';
    w->ulen = ulen;
    return w;
}

/* Queues the verification of pass[0..plen) for user[0..ulen) of c on
 * the thread pool (takes pw's reference), or, when the same credentials
 * are being verified on c's loop already, makes it wait for that verdict
 * (a reconnect storm after a restart or a reload hashes each password
 * once, not once per client). Returns it, or NULL when c's loop has
 * max_auth_pending verifications queued already (pw released). */
static conn_auth_t *verify_start(conn_t *c, passwd_t *pw, const char *user, size_t ulen,
                                 const char *pass, size_t plen)
{
    loop_t *l = c->loop;
    const passwd_user_t *u = passwd_find(pw, user, ulen);
    conn_auth_t *lead = in_flight(l, pw, u, user, ulen, pass, plen);
    if (lead != NULL) {
        conn_auth_t *f = check_new(c, user, ulen);
        f->next_follower = lead->followers;
        lead->followers = f;
        passwd_release(&pw);
        return f;
    }
    if (l->auth_pending >= l->b->cfg->max_auth_pending) {
        passwd_release(&pw);
        CNT_INC(l->b, auth_busy);
        return NULL;
    }
    conn_auth_t *w = check_new(c, user, ulen);
    w->pw = pw;
    w->u = u;
    w->pass = xmalloc(plen + 1);
    memcpy(w->pass, pass, plen);
    w->plen = plen;
    if (uv_queue_work(&l->uv, &w->req, verify_work, verify_done) != 0) {
        verify_free(w); /* the loop is closing */
        return NULL;
    }
    l->auth_pending++;
    w->next = l->auth_flight;
    l->auth_flight = w;
    return w;
}

/* Looks (user, pass) up in the cache of verified credentials: 1 on a
 * hit. *pw gets the file in force (a reference), for a verification. */
static int cached(loop_t *l, const char *user, size_t ulen, const char *pass, size_t plen,
                  passwd_t **pw)
{
    access_t *a = l->b->access;
    *pw = current_passwd(a);
    const passwd_user_t *u = *pw != NULL ? passwd_find(*pw, user, ulen) : NULL;
    int hit = u != NULL && authcache_lookup(a->cache, user, ulen, passwd_user_hash(u), pass,
                                            plen, uv_now(&l->uv));
    if (hit) {
        passwd_release(pw);
        CNT_INC(l->b, auth_cache_hits);
    }
    return hit;
}

/* ---- CONNECT ---- */

/* What a log line shows of a CONNECT's client id. */
static const char *shown_id(const pkt_connect_t *cp, char *buf, size_t cap)
{
    if (cp->client_id.len == 0) return "-";
    return log_quote(buf, cap, cp->client_id.p, cp->client_id.len);
}

/* Refuses cp with 0x86 Bad user name or password (v3.1.1: 4), logged once
 * at info without the password. Returns CONN_GONE. */
static conn_rc_t refuse_bad(conn_t *c, const pkt_connect_t *cp)
{
    char id[LOG_QUOTE_MAX], user[LOG_QUOTE_MAX];
    CNT_INC(c->loop->b, auth_failed);
    log_info("client %s (%s): bad user name or password (user \"%s\"): refused",
             shown_id(cp, id, sizeof id), conn__peer(c),
             log_quote(user, sizeof user, cp->username.p, cp->username.len));
    return connect__refuse(c, cp, PKT_RC_BAD_USER_PASS);
}

/* Refuses cp with 0x89 Server busy (v3.1.1: 3): max_auth_pending checks
 * are queued on c's loop. One warning per loop and second at most, with
 * the count refused since the last (a storm must not flood the log). */
static conn_rc_t refuse_busy(conn_t *c, const pkt_connect_t *cp)
{
    loop_t *l = c->loop;
    uint64_t now = uv_now(&l->uv);
    l->auth_busy_since_log++;
    if (l->auth_busy_log_at == 0 || now - l->auth_busy_log_at >= 1000) {
        log_warn("%llu CONNECT(s) refused (server busy): %u password checks already queued "
                 "on worker loop %u (max_auth_pending)",
                 (unsigned long long)l->auth_busy_since_log, l->b->cfg->max_auth_pending,
                 l->index);
        l->auth_busy_log_at = now;
        l->auth_busy_since_log = 0;
    }
    return connect__refuse(c, cp, PKT_RC_SERVER_BUSY);
}

/* The verification c waited for, unhooked from c; NULL when none. */
static conn_auth_t *take_verdict(conn_t *c)
{
    conn_auth_t *w = c->ext != NULL ? c->ext->verify : NULL;
    if (w == NULL || !w->done) return NULL;
    c->ext->verify = NULL;
    return w;
}

conn_rc_t access__connect(conn_t *c, const pkt_connect_t *cp, int identity)
{
    access_t *a = c->loop->b->access;
    conn_auth_t *w = take_verdict(c);
    passwd_t *pw = NULL;
    const char *user = (const char *)cp->username.p, *pass = (const char *)cp->password.p;
    if (a == NULL) return CONN_OK; /* a broker built by hand (unit tests) */
    if (access__waiting(c)) return CONN_PENDING; /* handled again when done */
    if (w != NULL) { /* this CONNECT again, its password verified */
        int rc = w->rc;
        verify_free(w);
        return rc == 0 ? CONN_OK : refuse_bad(c, cp);
    }
    if (!cp->has_username) {
        char id[LOG_QUOTE_MAX];
        if (c->anon_ok) return CONN_OK;
        CNT_INC(c->loop->b, auth_anonymous);
        log_info("client %s (%s): no user name, and this listener takes no anonymous "
                 "clients: refused",
                 shown_id(cp, id, sizeof id), conn__peer(c));
        return connect__refuse(c, cp, PKT_RC_NOT_AUTHORIZED);
    }
    if (identity || !a->passwd_on) return CONN_OK; /* nothing to check it against */
    if (!cp->has_password) return refuse_bad(c, cp);
    if (cached(c->loop, user, cp->username.len, pass, cp->password.len, &pw)) return CONN_OK;
    w = verify_start(c, pw, user, cp->username.len, pass, cp->password.len);
    if (w == NULL) return refuse_busy(c, cp);
    conn__ext(c)->verify = w;
    uv_read_stop((uv_stream_t *)&c->tcp); /* until verify_done resumes c */
    return CONN_PENDING;
}

int access__waiting(const conn_t *c)
{
    return c->ext != NULL && c->ext->verify != NULL && !c->ext->verify->done;
}

void access__conn_free(conn_t *c)
{
    conn_auth_t *w = c->ext != NULL ? c->ext->verify : NULL;
    if (w == NULL) return;
    c->ext->verify = NULL;
    if (w->done)
        verify_free(w);
    else
        w->c = NULL; /* verify_done frees it */
}

/* ---- sessions ---- */

void access__sess_set_user(sess_t *s, const char *user, size_t len)
{
    if (user == NULL && !access__acl_on(s->loop->b) && s->access == NULL)
        return; /* anonymous without an ACL: nothing to keep */
    access__sess_free(s);
    access_sess_t *x = xcalloc(1, sizeof *x);
    if (user != NULL) {
        x->user = xmalloc(len + 1);
        memcpy(x->user, user, len);
        x->user[len] = '\0';
    }
    s->access = x;
}

const char *access__sess_user(const sess_t *s)
{
    return s->access != NULL ? s->access->user : NULL;
}

void access__sess_free(sess_t *s)
{
    access_sess_t *x = s->access;
    if (x == NULL) return;
    acl_view_destroy(&x->view);
    free(x->slot);
    free(x->user);
    free(x);
    s->access = NULL;
}

/* s's ACL view for the generation in force, rebuilt when a reload
 * happened since it was made (its decisions forgotten). NULL only when
 * out of memory. */
static const acl_view_t *view_of(loop_t *l, sess_t *s)
{
    access_t *a = l->b->access;
    unsigned gen = atomic_load_explicit(&l->b->acl_gen, memory_order_acquire);
    if (s->access == NULL) access__sess_set_user(s, NULL, 0); /* anonymous */
    access_sess_t *x = s->access;
    if (x->view != NULL && x->gen == gen) return x->view;
    acl_view_destroy(&x->view);
    if (x->slot == NULL) x->slot = xmalloc(ACCESS_CACHE_SLOTS * sizeof *x->slot);
    memset(x->slot, 0, ACCESS_CACHE_SLOTS * sizeof *x->slot);
    /* A sink's session (an HTTP/2 event stream) has an id of the broker's
     * making, not a client's: no %c pattern is its, as for its request. */
    const char *id = s->to_sink ? NULL : s->client_id;
    pthread_mutex_lock(&a->mu);
    x->view = acl_view_create(a->acl, x->user, x->user != NULL ? strlen(x->user) : 0, id,
                              id != NULL ? strlen(id) : 0);
    pthread_mutex_unlock(&a->mu);
    x->gen = gen;
    return x->view;
}

/* ---- ACL checks ---- */

int access__may_publish(loop_t *l, sess_t *s, const char *t, size_t len)
{
    if (!access__acl_on(l->b)) return 1;
    const acl_view_t *v = view_of(l, s);
    if (v != NULL && acl_view_allows(v, t, len, ACL_WRITE)) return 1;
    char id[LOG_QUOTE_MAX], topic[LOG_QUOTE_MAX];
    CNT_INC(l->b, acl_denied_publish);
    log_debug("client %s: PUBLISH to \"%s\" not authorized by the ACL: dropped",
              log_quote(id, sizeof id, s->client_id, strlen(s->client_id)),
              log_quote(topic, sizeof topic, t, len));
    return 0;
}

int access__may_subscribe(loop_t *l, sess_t *s, const char *f, size_t len)
{
    if (!access__acl_on(l->b)) return 1;
    const acl_view_t *v = view_of(l, s);
    if (v != NULL && acl_view_allows_filter(v, f, len)) return 1;
    char id[LOG_QUOTE_MAX], filter[LOG_QUOTE_MAX];
    CNT_INC(l->b, acl_denied_subscribe);
    log_debug("client %s: SUBSCRIBE to \"%s\" not authorized by the ACL",
              log_quote(id, sizeof id, s->client_id, strlen(s->client_id)),
              log_quote(filter, sizeof filter, f, len));
    return 0;
}

int access__read_slow(loop_t *l, sess_t *s, const msg_t *m)
{
    const acl_view_t *v = view_of(l, s);
    access_sess_t *x = s->access;
    size_t len = m->topic_len;
    if (v == NULL) {
        l->acl_denied_read++;
        return 0;
    }
    if (len > ACCESS_TOPIC_INLINE) { /* not cached */
        int ok = acl_view_allows(v, m->topic, len, ACL_READ);
        l->acl_denied_read += !ok;
        return ok;
    }
    uint32_t h = access__topic_hash(l, m);
    access_slot_t *e = &x->slot[h & (ACCESS_CACHE_SLOTS - 1)];
    if (e->len != len || e->hash != h || memcmp(e->topic, m->topic, len) != 0) {
        e->hash = h;
        e->len = (uint16_t)len;
        memcpy(e->topic, m->topic, len);
        e->allow = (uint8_t)acl_view_allows(v, m->topic, len, ACL_READ);
    }
    l->acl_denied_read += !e->allow;
    return e->allow;
}

/* ---- transports (transport.h) ---- */

int conn_auth_required(const conn_t *c)
{
    return c->loop->b->access != NULL && c->loop->b->access->passwd_on;
}

int conn_anonymous_ok(const conn_t *c)
{
    return c->anon_ok;
}

int conn_authenticate(conn_t *c, const char *user, size_t ulen, const char *pass, size_t plen,
                      conn_auth_cb cb, void *arg, conn_auth_t **job)
{
    passwd_t *pw = NULL;
    *job = NULL;
    if (cached(c->loop, user, ulen, pass, plen, &pw)) return CONN_AUTH_OK;
    conn_auth_t *w = verify_start(c, pw, user, ulen, pass, plen);
    if (w == NULL) return CONN_AUTH_BUSY;
    w->cb = cb;
    w->arg = arg;
    *job = w;
    return CONN_AUTH_PENDING;
}

void conn_auth_cancel(conn_auth_t **job)
{
    if (*job == NULL) return;
    (*job)->c = NULL; /* verify_done frees it */
    *job = NULL;
}

/* A transient session-less view for a transport's request: user and no
 * client id (no pattern with %c applies; an id such as "-" would give
 * the request the topics of the MQTT client of that id). */
static acl_view_t *request_view(access_t *a, const char *user, size_t ulen)
{
    pthread_mutex_lock(&a->mu);
    acl_view_t *v = acl_view_create(a->acl, user, ulen, NULL, 0);
    pthread_mutex_unlock(&a->mu);
    return v;
}

int conn_may_publish(conn_t *c, const char *user, size_t ulen, const char *t, size_t len)
{
    access_t *a = c->loop->b->access;
    if (!access__acl_on(c->loop->b)) return 1;
    acl_view_t *v = request_view(a, user, ulen);
    int ok = v != NULL && acl_view_allows(v, t, len, ACL_WRITE);
    acl_view_destroy(&v);
    if (!ok) CNT_INC(c->loop->b, acl_denied_publish);
    return ok;
}

int conn_may_subscribe(conn_t *c, const char *user, size_t ulen, const char *f, size_t len)
{
    access_t *a = c->loop->b->access;
    if (!access__acl_on(c->loop->b)) return 1;
    acl_view_t *v = request_view(a, user, ulen);
    int ok = v != NULL && acl_view_allows_filter(v, f, len);
    acl_view_destroy(&v);
    if (!ok) CNT_INC(c->loop->b, acl_denied_subscribe);
    return ok;
}

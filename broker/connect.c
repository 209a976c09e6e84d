/*
 * connect.c - CONNECT and DISCONNECT: decode, validate, take the
 * session over (or create it), reply.
 *
 * The steps are separate functions: decode errors get the CONNACK (or
 * silence) the spec asks for; validation picks a CONNACK reason; apply
 * finds or creates the session (sess__find_or_create). A session owned by
 * another loop sends the connection there (CONN_MIGRATE: the read path
 * moves it, and the CONNECT is handled again there; inbox.c). Otherwise
 * the request is kept in c->hello, a live connection holding the session
 * is closed (takeover), and finish sends CONNACK and, for a resumed
 * session, resends the inflight window and drains the queue.
 */
#include "connect_int.h"

#include "access_int.h"
#include "alias_int.h"
#include "auth_int.h"
#include "conn_int.h"
#include "deliver_int.h"
#include "persist_int.h"
#include "publish_int.h"
#include "sess_int.h"
#include "share_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

/* Protocol level byte of a CONNECT frame, or -1 when it is not there. */
static int peek_level(const uint8_t *f, size_t len)
{
    size_t i = 1;
    while (i < len && i < 5 && (f[i] & 0x80)) i++;
    i++; /* past the last remaining-length byte */
    if (i + 2 > len) return -1;
    i += 2 + (((size_t)f[i] << 8) | f[i + 1]);
    return i < len ? f[i] : -1;
}

/* CONNECT that failed to decode: answer as the spec says, then close. */
static conn_rc_t connect_decode_error(conn_t *c, const uint8_t *f, size_t len, int err)
{
    static const uint8_t bad_version[] = {0x20, 0x02, 0x00, 0x01};
    int level = peek_level(f, len);
    uint8_t reason = pkt_err_reason(err);
    if (err == UVMQ_EPKT_PROTO_LEVEL) {
        /* MQTT-3.1.2-2: CONNACK 0x01 (v5 peers accept the 3.1.1 form) */
        conn__send_raw(c, bad_version, sizeof bad_version);
    } else if (err == UVMQ_EPKT_CLIENT_ID && level >= PKT_V31 && level <= PKT_V5) {
        c->version = (uint8_t)level;
        pkt_t r = {.type = PKT_CONNACK};
        r.u.connack.reason = level == PKT_V5 ? PKT_RC_CLIENT_ID_INVALID
                                             : PKT_RC311_ID_REJECTED;
        conn__send_pkt(c, &r);
    } else if (err != UVMQ_EPKT_PROTO_NAME && level == PKT_V5) {
        c->version = PKT_V5; /* MQTT-3.1.4-1: v5 gets a reason code */
        pkt_t r = {.type = PKT_CONNACK};
        r.u.connack.reason = reason;
        conn__send_pkt(c, &r);
    }
    return conn__fail(c, reason, err_str(err));
}

/* Picks the CONNACK reason for a decoded CONNECT into *reason
 * (PKT_RC_SUCCESS: accept). Returns 0 when accepted, else UVMQ_EINVAL. */
static int validate(conn_t *c, const pkt_connect_t *cp, uint8_t *reason)
{
    const broker_config_t *cfg = c->loop->b->cfg;
    int v5 = cp->version == PKT_V5;
    *reason = PKT_RC_SUCCESS;
    if (v5 && PKT_PROP_HAS(&cp->props, PROP_AUTH_DATA) &&
        !PKT_PROP_HAS(&cp->props, PROP_AUTH_METHOD)) {
        *reason = PKT_RC_PROTOCOL_ERROR; /* 3.1.2.11.10: data without a method */
    } else if (cp->client_id.len == 0 && !v5 &&
               (cp->version == PKT_V31 || !cp->clean_start)) {
        /* MQTT-3.1.3-8: empty id with clean session 0 is rejected. */
        *reason = PKT_RC_CLIENT_ID_INVALID;
    } else if (cp->client_id.len > cfg->max_client_id_len) {
        *reason = PKT_RC_CLIENT_ID_INVALID;
    } else if (cp->will_flag &&
               (!topic_name_valid((const char *)cp->will_topic.p, cp->will_topic.len) ||
                topic_levels((const char *)cp->will_topic.p, cp->will_topic.len) >
                    cfg->max_topic_levels)) {
        *reason = PKT_RC_TOPIC_NAME_INVALID;
    }
    return *reason == PKT_RC_SUCCESS ? 0 : UVMQ_EINVAL;
}

/* Longest certificate common name taken as a user name (X.520 allows 64
 * characters; UTF-8 may take four bytes each). */
#define IDENTITY_MAX 257

/* A user name the connection's transport vouches for replaces the
 * CONNECT's, and its password is ignored: use_identity_as_username, as
 * mosquitto has it, on a TLS listener (the client certificate's common
 * name). A client the transport must name but cannot (no certificate, no
 * CN) is not authorized. The name lives in the loop's arena while the
 * CONNECT is handled. Sets *vouched when the name came from there (no
 * password check then). Returns 0, or the transport's error (UVMQ_ENOMEM
 * without arena memory) with *reason set to the CONNACK reason, Not
 * authorized (0 on success). */
static int identity_username(conn_t *c, pkt_connect_t *cp, uint8_t *reason, int *vouched)
{
    const transport_t *tp = conn__tp(c);
    *reason = PKT_RC_SUCCESS;
    *vouched = 0;
    if (tp->username == NULL) return 0;
    char *cn = arena_alloc_raw(&c->loop->arena, IDENTITY_MAX);
    int rc = cn != NULL ? tp->username(c, conn__tp_data(c), cn, IDENTITY_MAX) : UVMQ_ENOMEM;
    if (rc == 0) return 0; /* it vouches for none */
    if (rc < 0) {
        log_info("client %.*s (%s): no usable common name in its certificate (%s): "
                 "not authorized",
                 cp->client_id.len ? (int)cp->client_id.len : 1,
                 cp->client_id.len ? (const char *)cp->client_id.p : "-", conn__peer(c),
                 err_str(rc));
        *reason = PKT_RC_NOT_AUTHORIZED;
        return rc;
    }
    cp->username.p = (const uint8_t *)cn;
    cp->username.len = (uint32_t)strlen(cn);
    cp->has_username = 1;
    cp->password.p = NULL;
    cp->password.len = 0;
    cp->has_password = 0;
    *vouched = 1;
    char shown[LOG_QUOTE_MAX];
    log_debug("client %.*s (%s): user name \"%s\" from its certificate",
              cp->client_id.len ? (int)cp->client_id.len : 1,
              cp->client_id.len ? (const char *)cp->client_id.p : "-", conn__peer(c),
              log_quote(shown, sizeof shown, cn, strlen(cn)));
    return 0;
}

/* Reason String of a refused v5 CONNECT (3.2.2.3.9): what the person
 * reading the client's log needs. NULL when the code says it all. */
static const char *refusal_text(uint8_t reason)
{
    switch (reason) {
    case PKT_RC_CLIENT_ID_INVALID: return "client identifier longer than the server allows";
    case PKT_RC_BAD_AUTH_METHOD: return "authentication method not supported";
    case PKT_RC_TOPIC_NAME_INVALID: return "will topic is not a valid topic name";
    case PKT_RC_NOT_AUTHORIZED: return "not authorized";
    case PKT_RC_PACKET_TOO_LARGE: return "will message too large";
    default: return NULL;
    }
}

/* See connect_int.h. c is closing after (its memory stays valid until the
 * uv_close callback). */
conn_rc_t connect__refuse(conn_t *c, const pkt_connect_t *cp, uint8_t reason)
{
    pkt_t r = {.type = PKT_CONNACK};
    r.u.connack.reason = c->version == PKT_V5 ? reason : pkt_connack_rc311(reason);
    if (cp != NULL && cp->version == PKT_V5) {
        if (PKT_PROP_HAS(&cp->props, PROP_MAX_PACKET_SIZE)) /* c is closing */
            c->peer_max_packet = cp->props.max_packet_size;
        conn__reason_string(c, &r, &r.u.connack.props, refusal_text(reason));
    }
    conn__send_pkt(c, &r);
    conn__close(c, 0, 0, "CONNECT refused");
    return CONN_GONE;
}

/* Session expiry interval for this CONNECT, in seconds. */
static uint32_t session_expiry(const pkt_connect_t *cp, const broker_config_t *cfg)
{
    uint32_t v3 = cfg->max_session_expiry ? cfg->max_session_expiry : SESS_NEVER_EXPIRES;
    if (cp->version != PKT_V5) return cp->clean_start ? 0 : v3;
    return PKT_PROP_HAS(&cp->props, PROP_SESSION_EXPIRY) ? cp->props.session_expiry : 0;
}

/* Sets the granted keep-alive; returns 1 when it differs from the ask. */
static int grant_keepalive(conn_t *c, const pkt_connect_t *cp)
{
    uint16_t max = c->loop->b->cfg->max_keepalive;
    uint16_t ka = cp->keep_alive;
    int changed = 0;
    if (max < 65535 && (ka == 0 || ka > max)) {
        ka = max;
        changed = 1;
    }
    c->keepalive = ka;
    return changed;
}

/* Response Information for a client that asked for it (3.1.2.11.6,
 * 3.2.2.3.15; MQTT-3.1.2-28: never unasked):
 * "<response_information_prefix>/<client id>", in a buffer the caller
 * frees; NULL when the prefix is off or the id holds + or # (the result
 * would not be a topic name). */
static char *response_info(const broker_config_t *cfg, const char *id)
{
    const char *pre = cfg->response_information_prefix;
    if (pre == NULL || strpbrk(id, "+#") != NULL) return NULL;
    size_t n = strlen(pre) + 1 + strlen(id) + 1;
    char *v = xmalloc(n);
    snprintf(v, n, "%s/%s", pre, id);
    return v;
}

/* Sends the CONNACK of a CONNECT that attached session s, with the
 * properties c->hello asked for. */
static void send_connack(conn_t *c, const sess_t *s, int present)
{
    const broker_config_t *cfg = c->loop->b->cfg;
    const conn_hello_t *h = c->hello;
    pkt_t r = {.type = PKT_CONNACK};
    pkt_props_t *pp = &r.u.connack.props;
    char *info = NULL;
    r.u.connack.session_present = (uint8_t)present;
    if (c->version == PKT_V5) {
        PKT_PROP_SET(pp, PROP_RECEIVE_MAX);
        pp->receive_max = cfg->max_inflight;
        PKT_PROP_SET(pp, PROP_MAX_PACKET_SIZE);
        pp->max_packet_size = cfg->max_packet_size;
        PKT_PROP_SET(pp, PROP_TOPIC_ALIAS_MAX);
        pp->topic_alias_max = cfg->topic_alias_max;
        PKT_PROP_SET(pp, PROP_RETAIN_AVAILABLE);
        pp->retain_available = 1;
        PKT_PROP_SET(pp, PROP_WILDCARD_SUB_AVAILABLE);
        pp->wildcard_sub_available = 1;
        PKT_PROP_SET(pp, PROP_SUB_ID_AVAILABLE);
        pp->sub_id_available = 1;
        PKT_PROP_SET(pp, PROP_SHARED_SUB_AVAILABLE);
        pp->shared_sub_available = 1; /* share.c */
        if (h->assigned) {
            PKT_PROP_SET(pp, PROP_ASSIGNED_CLIENT_ID);
            pp->assigned_client_id.p = (const uint8_t *)s->client_id;
            pp->assigned_client_id.len = (uint32_t)strlen(s->client_id);
        }
        if (h->server_ka) {
            PKT_PROP_SET(pp, PROP_SERVER_KEEP_ALIVE);
            pp->server_keep_alive = c->keepalive;
        }
        if (h->response_info && (info = response_info(cfg, s->client_id)) != NULL) {
            PKT_PROP_SET(pp, PROP_RESPONSE_INFO);
            pp->response_info.p = (const uint8_t *)info;
            pp->response_info.len = (uint32_t)strlen(info);
        }
        auth__connack(c, pp);
    }
    conn__send_pkt(c, &r);
    free(info);
}

/* Inflight window for this CONNECT: max_inflight, lowered by a v5
 * Receive Maximum. Also takes the client's Maximum Packet Size and
 * Request Problem Information. */
static uint16_t apply_limits(conn_t *c, const pkt_connect_t *cp)
{
    size_t window = c->loop->b->cfg->max_inflight;
    if (cp->version == PKT_V5 && PKT_PROP_HAS(&cp->props, PROP_RECEIVE_MAX) &&
        cp->props.receive_max < window)
        window = cp->props.receive_max;
    if (cp->version == PKT_V5 && PKT_PROP_HAS(&cp->props, PROP_MAX_PACKET_SIZE))
        c->peer_max_packet = cp->props.max_packet_size;
    c->no_problem_info = cp->version == PKT_V5 &&
                         PKT_PROP_HAS(&cp->props, PROP_REQUEST_PROBLEM_INFO) &&
                         cp->props.request_problem_info == 0;
    return (uint16_t)(window ? window : 1);
}

/* Frees c->hello and the will it still holds; c->hello is NULL after. */
void connect__hello_free(conn_t *c)
{
    if (c->hello == NULL) return;
    if (c->hello->will != NULL) msg_release(&c->hello->will);
    free(c->hello->user);
    free(c->hello);
    c->hello = NULL;
}

/* Keeps what the CONNECT asks for in c->hello (takes will). Allocated
 * only from CONNECT to CONNACK: an attached connection has none. */
static void keep_hello(conn_t *c, const pkt_connect_t *cp, msg_t *will, int assigned)
{
    conn_hello_t *h = xcalloc(1, sizeof *h);
    c->hello = h;
    h->will = will;
    if (cp->has_username) {
        h->user = xmalloc(cp->username.len + 1);
        memcpy(h->user, cp->username.p, cp->username.len);
        h->user[cp->username.len] = '\0';
        h->user_len = cp->username.len;
    }
    h->expiry = session_expiry(cp, c->loop->b->cfg);
    h->will_delay = will != NULL && cp->version == PKT_V5 ? cp->will_props.will_delay : 0;
    h->will_expiry = 0;
    if (will != NULL) {
        if (will->expiry_at != 0) h->will_expiry = cp->will_props.message_expiry;
        will->expiry_at = 0; /* stamped when the will is published */
    }
    h->window = apply_limits(c, cp);
    h->clean_start = cp->clean_start;
    h->assigned = (uint8_t)assigned;
    h->server_ka = (uint8_t)grant_keepalive(c, cp);
    if (cp->version == PKT_V5) {
        const broker_config_t *cfg = c->loop->b->cfg;
        h->response_info = PKT_PROP_HAS(&cp->props, PROP_REQUEST_RESPONSE_INFO) &&
                           cp->props.request_response_info == 1;
        /* MQTT-3.3.2-11: never an alias above the client's maximum. */
        uint16_t want = PKT_PROP_HAS(&cp->props, PROP_TOPIC_ALIAS_MAX) ? cp->props.topic_alias_max : 0;
        h->alias_max = want < cfg->topic_alias_max ? want : cfg->topic_alias_max;
    }
}

/* Prepares s (owned by c's loop) for c: closes a live connection holding
 * it (takeover), applies clean start. Returns 1 when the session is
 * resumed (session present). */
static int resume_or_reset(conn_t *c, sess_t *s)
{
    loop_t *l = c->loop;
    int clean = c->hello->clean_start;
    int ended = 0; /* the old connection's session ended with it */
    if (s->conn != NULL) {
        /* Takeover (MQTT-3.1.4-3). A resumed session cancels a delayed
         * will instead of publishing it (design choice, see report). */
        if (!clean && s->will_delay > 0 && s->expiry != 0 && s->will != NULL)
            msg_release(&s->will);
        ended = s->expiry == 0; /* kept (CONN_CLOSE_TAKEN), reset below */
        conn__close(s->conn, PKT_RC_SESSION_TAKEN_OVER,
                    CONN_CLOSE_DISCONNECT | CONN_CLOSE_WILL | CONN_CLOSE_TAKEN, "session taken over");
    }
    if (clean || ended) {
        if (clean) sess__publish_will(l, s); /* a pending delayed will: session ends */
        sess__reset(l, s);
        return 0;
    }
    if (s->will != NULL) msg_release(&s->will); /* MQTT-3.1.3-9 */
    s->will_at = 0;
    return 1;
}

/* Attaches s to c and answers the CONNECT (CONNACK, resend, drain). */
static void finish(conn_t *c, sess_t *s, int present)
{
    conn_hello_t *h = c->hello;
    s->conn = c;
    s->version = c->version;
    s->expiry = h->expiry;
    s->will = h->will;
    h->will = NULL;
    s->will_delay = h->will_delay;
    s->will_expiry = h->will_expiry;
    if (s->will != NULL) {
        s->will->origin = s;
        broker__msg(s->will)->origin_hash = sess__origin_hash(s);
    }
    s->overflow_logged = 0;
    access__sess_set_user(s, h->user, h->user_len); /* its ACL view */
    c->sess = s;
    c->state = CONN_ACTIVE;
    inflight_set_max(&s->inflight, h->window);
    if (h->alias_max > 0) alias__out_enable(c, h->alias_max); /* before any PUBLISH */
    if (s->expiry != 0)
        persist__session_put(c->loop, s); /* persistent: stored */
    else
        persist__session_del(c->loop, s); /* no longer persistent */
    if (s->shares) share__update(c->loop, s, 1, s->stored); /* online */
    send_connack(c, s, present);
    connect__hello_free(c);
    log_debug("client %s connected from %s (v%u, keep-alive %u, session %s)",
              s->client_id, conn__peer(c), c->version, c->keepalive,
              present ? "resumed" : "new");
    if (present) {
        deliver__resend(s);
        deliver__drain(s);
    }
}

/* A CONNECT asking for a persistent session found a clean session of its
 * id (live: clean ones end with their connection) on c's loop, which is
 * not the loop of stored sessions: that session is taken over and ends
 * here (its will as on any takeover), and the new one is created there.
 * The client gets "session present 0", as it would for the reset of a
 * clean session. */
static void replace_elsewhere(conn_t *c, sess_t *s)
{
    loop_t *l = c->loop;
    if (s->conn != NULL)
        conn__close(s->conn, PKT_RC_SESSION_TAKEN_OVER,
                    CONN_CLOSE_DISCONNECT | CONN_CLOSE_WILL | CONN_CLOSE_TAKEN, "session taken over");
    sess__publish_will(l, s); /* a delayed one: the session ends now */
    sess__end(l, s);
}

/* The session is owned by loop `owner`: asks the read path to move c
 * there (CONN_MIGRATE), or refuses after MIGRATE_MAX_HOPS moves. */
static conn_rc_t migrate(conn_t *c, loop_t *owner, const char *id, size_t id_len)
{
    if (c->hops >= MIGRATE_MAX_HOPS) {
        log_warn("client %.*s (%s): its session moved between loops %u times "
                 "during CONNECT: refused (server busy)",
                 (int)id_len, id, conn__peer(c), (unsigned)c->hops);
        return connect__refuse(c, NULL, PKT_RC_SERVER_BUSY);
    }
    c->move_to = (uint16_t)owner->index;
    log_debug("client %.*s (%s): moving to loop %u, its session's owner",
              (int)id_len, id, conn__peer(c), owner->index);
    return CONN_MIGRATE;
}

/* The loop a new session for cp is created on: a persistent one lives on
 * the loop of stored sessions, a clean one on c's. */
static loop_t *home_loop(conn_t *c, const pkt_connect_t *cp)
{
    broker_t *b = c->loop->b;
    return session_expiry(cp, b->cfg) != 0 && b->store != NULL ? persist__loop(b) : c->loop;
}

static conn_rc_t apply(conn_t *c, const pkt_connect_t *cp)
{
    broker_t *b = c->loop->b;
    char gen[22];
    const char *id = (const char *)cp->client_id.p;
    size_t id_len = cp->client_id.len;
    msg_t *will = NULL;
    sess_t *s = NULL;
    loop_t *owner = NULL;
    if (cp->will_flag) {
        will = publish__msg_from(b, cp->will_topic, cp->will_payload,
                              cp->version == PKT_V5 ? &cp->will_props : NULL,
                              cp->will_qos, cp->will_retain, NULL);
        if (will == NULL) return connect__refuse(c, cp, PKT_RC_PACKET_TOO_LARGE);
    }
    if (id_len == 0) { /* MQTT-3.1.3-6: the server assigns an id */
        sess__assign_id(gen);
        id = gen;
        id_len = strlen(gen);
    }
    loop_t *home = home_loop(c, cp);
    int rc = sess__find_or_create(c->loop, id, id_len, &s, &owner, home);
    /* Takeover: the old connection's last packets first (a DISCONNECT
     * may end the session or change its will); then look again. */
    if (rc == SESS_LOCAL && s->conn != NULL && conn__read_pending(s->conn))
        rc = sess__find_or_create(c->loop, id, id_len, &s, &owner, home);
    if (rc == SESS_LOCAL && home != c->loop) {
        replace_elsewhere(c, s); /* a live clean session of this id */
        rc = SESS_REMOTE;
        owner = home;
    }
    if (rc == SESS_REMOTE) {
        /* A session never changes loops: c goes to it (inbox.c). */
        if (will != NULL) msg_release(&will);
        return migrate(c, owner, id, id_len);
    }
    keep_hello(c, cp, will, cp->client_id.len == 0 && cp->version == PKT_V5);
    finish(c, s, rc == SESS_LOCAL ? resume_or_reset(c, s) : 0);
    return CONN_OK;
}

/* A v5 CONNECT with an Authentication Method (auth.c). The exchange runs
 * on the loop that owns the session (or would create it), so c moves
 * there first: once the client has seen an AUTH, the CONNECT can no
 * longer be handed to another loop and handled again from its first byte.
 * A session found on c's own loop keeps c here. Returns what
 * connect__handle returns. */
static conn_rc_t authenticate(conn_t *c, const pkt_connect_t *cp, const uint8_t *frame,
                              size_t len)
{
    const char *id = (const char *)cp->client_id.p;
    const pkt_bin_t *m = &cp->props.auth_method;
    if (auth__find(c->loop->b, m->p, m->len) != NULL) {
        loop_t *owner = cp->client_id.len > 0
                            ? sess__owner_of(&c->loop->b->sessions, id, cp->client_id.len)
                            : NULL;
        if (owner == NULL) owner = home_loop(c, cp);
        if (owner != c->loop) return migrate(c, owner, id, cp->client_id.len);
    }
    conn_rc_t rc = auth__connect_start(c, cp, frame, len);
    if (rc == CONN_PENDING) return CONN_OK;
    if (rc == CONN_OK) {
        rc = apply(c, cp); /* may move c: nothing was sent yet */
        auth__connect_done(c);
    }
    return rc;
}

/* A packet of c while its CONNECT waits for an enhanced authentication
 * exchange: steps it and, once it succeeds, handles the kept CONNECT. */
static conn_rc_t authenticate_step(conn_t *c, const uint8_t *frame, size_t len)
{
    const uint8_t *f = NULL;
    size_t flen = 0;
    pkt_t p;
    conn_rc_t rc = auth__connect_step(c, frame, len, &f, &flen);
    if (rc == CONN_PENDING) return CONN_OK;
    if (rc != CONN_OK) return rc;
    arena_reset(&c->loop->arena); /* the AUTH is done with */
    if (pkt_decode(&p, 0, f, flen, &c->loop->arena) != 0) {
        /* cannot happen: it decoded the first time */
        rc = connect__refuse(c, NULL, PKT_RC_UNSPECIFIED);
    } else if ((rc = apply(c, &p.u.connect)) == CONN_MIGRATE) {
        /* The session moved to another loop during the exchange (rare: a
         * race, or a clean session of this id on this loop replaced by a
         * persistent one); the client tries again. */
        log_warn("client %.*s (%s): its session changed loops during authentication: "
                 "refused (server busy)",
                 (int)p.u.connect.client_id.len, (const char *)p.u.connect.client_id.p,
                 conn__peer(c));
        rc = connect__refuse(c, NULL, PKT_RC_SERVER_BUSY);
    }
    auth__connect_done(c);
    return rc;
}

conn_rc_t connect__handle(conn_t *c, const uint8_t *frame, size_t len)
{
    pkt_t p;
    int rc = 0;
    if (auth__connecting(c)) return authenticate_step(c, frame, len);
    if ((frame[0] >> 4) != PKT_CONNECT) {
        /* MQTT-3.1.0-1: the first packet must be CONNECT. */
        return conn__fail(c, PKT_RC_PROTOCOL_ERROR, "first packet is not CONNECT");
    }
    rc = pkt_decode(&p, 0, frame, len, &c->loop->arena);
    if (rc < 0) return connect_decode_error(c, frame, len, rc);
    c->version = p.u.connect.version;
    uint8_t reason = PKT_RC_SUCCESS;
    int vouched = 0;
    rc = validate(c, &p.u.connect, &reason);
    if (rc == 0) rc = identity_username(c, &p.u.connect, &reason, &vouched);
    if (rc != 0) return connect__refuse(c, &p.u.connect, reason);
    if (c->version == PKT_V5 && PKT_PROP_HAS(&p.u.connect.props, PROP_AUTH_METHOD))
        return authenticate(c, &p.u.connect, frame, len); /* the method decides */
    /* The password file and allow_anonymous (access.c); CONN_PENDING
     * leaves this CONNECT unread until its password is verified. */
    conn_rc_t ar = access__connect(c, &p.u.connect, vouched);
    if (ar != CONN_OK) return ar;
    return apply(c, &p.u.connect);
}

conn_rc_t connect__handle_disconnect(conn_t *c, const pkt_t *p)
{
    const pkt_reason_t *d = &p->u.disconnect;
    sess_t *s = c->sess;
    unsigned flags = CONN_CLOSE_QUIET;
    if (c->version == PKT_V5 && PKT_PROP_HAS(&d->props, PROP_SESSION_EXPIRY)) {
        /* MQTT-3.14.2-2: expiry 0 at CONNECT cannot become non-zero. */
        if (s->expiry == 0 && d->props.session_expiry != 0)
            return conn__fail(c, PKT_RC_PROTOCOL_ERROR,
                              "session expiry set at DISCONNECT after 0 at CONNECT");
        s->expiry = d->props.session_expiry;
    }
    /* MQTT-3.14.4-3: only reason 0x00 discards the will; 0x04 and the
     * error reasons publish it. */
    if (c->version == PKT_V5 && d->reason != PKT_RC_SUCCESS) flags |= CONN_CLOSE_WILL;
    c->got_disconnect = 1;
    conn__close(c, 0, flags, "client sent DISCONNECT");
    return CONN_GONE;
}

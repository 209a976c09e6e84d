/*
 * auth.c - MQTT 5 enhanced authentication (section 4.12): a registry of
 * methods per broker and the AUTH exchanges a method drives.
 *
 * At CONNECT: a v5 CONNECT with an Authentication Method the broker does
 * not know gets CONNACK 0x8C (Bad authentication method). A known method
 * starts; each step answers success (the CONNECT goes on, and its CONNACK
 * carries the method and the method's last data), continue (AUTH 0x18 to
 * the client, whose next packet must be AUTH 0x18 with the same method;
 * the CONNECT frame is kept and decoded again when the exchange ends) or
 * failure (CONNACK 0x87). connect.c moves the connection to its
 * session's loop before the first step, so the CONNECT completes where
 * the exchange ran. After CONNACK the client may re-authenticate (AUTH
 * 0x19, then 0x18 steps; our AUTH 0x00 ends it, a failure closes with
 * DISCONNECT 0x87) while other packets keep flowing. A client whose
 * CONNECT had no method may not send AUTH at all (0x82). The state lives
 * behind c->ext->v5 (conn_v5_t) and only for connections that named a
 * method. No method is built in: production builds refuse every method.
 */
#include "auth_int.h"
#include "sess_int.h"

#include "alias_int.h"
#include "conn_int.h"
#include "connect_int.h"

#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

/* Where a connection's exchange stands. */
enum auth_phase {
    PHASE_IDLE = 0, /* none under way (connected; re-authentication may start) */
    PHASE_CONNECT,  /* the CONNECT waits for the exchange */
    PHASE_REAUTH    /* a re-authentication is under way */
};

/* A connection's enhanced authentication (conn_v5_t.auth). */
typedef struct auth_conn_s {
    const auth_method_t *m; /* the CONNECT's method, for the connection's life */
    void *state;            /* the method's, during an exchange */
    uint8_t phase;          /* enum auth_phase */
    uint8_t *connect;       /* PHASE_CONNECT after a continue: the CONNECT
                               frame (owned), decoded again at the end */
    size_t connect_len;
    const uint8_t *data;    /* the method's last answer, for the CONNACK
                               (the method's memory, valid until end) */
    size_t data_len;
} auth_conn_t;

int auth__register(broker_t *b, const auth_method_t *m)
{
    if (auth__find(b, (const uint8_t *)m->name, strlen(m->name)) != NULL) return UVMQ_EEXISTS;
    if (b->n_auth_methods == AUTH_METHODS_MAX) return UVMQ_ELIMIT;
    b->auth_methods[b->n_auth_methods++] = m;
    return 0;
}

const auth_method_t *auth__find(const broker_t *b, const uint8_t *name, size_t len)
{
    for (unsigned i = 0; i < b->n_auth_methods; i++) {
        const auth_method_t *m = b->auth_methods[i];
        if (strlen(m->name) == len && memcmp(m->name, name, len) == 0) return m;
    }
    return NULL;
}

static auth_conn_t *auth_of(const conn_t *c)
{
    return c->ext != NULL && c->ext->v5 != NULL ? c->ext->v5->auth : NULL;
}

/* Ends the method's exchange under way, if any. */
static void exchange_end(auth_conn_t *a)
{
    if (a->phase != PHASE_IDLE && a->m->end != NULL) a->m->end(a->state);
    a->state = NULL;
    a->phase = PHASE_IDLE;
    a->data = NULL;
    a->data_len = 0;
}

/* 1 when props name a's method (MQTT-4.12.0-5: every AUTH carries it). */
static int same_method(const auth_conn_t *a, const pkt_props_t *props)
{
    return PKT_PROP_HAS(props, PROP_AUTH_METHOD) &&
           props->auth_method.len == strlen(a->m->name) &&
           memcmp(props->auth_method.p, a->m->name, props->auth_method.len) == 0;
}

/* A step whose input is the Authentication Data of props, if any. */
static auth_step_t step_of(conn_t *c, const pkt_props_t *props)
{
    auth_step_t st = {.c = c};
    if (PKT_PROP_HAS(props, PROP_AUTH_DATA)) {
        st.in = props->auth_data.p;
        st.in_len = props->auth_data.len;
    }
    return st;
}

/* Puts a's Authentication Method into pp, and data[0..len) as its
 * Authentication Data when len > 0. */
static void put_method(const auth_conn_t *a, const uint8_t *data, size_t len, pkt_props_t *pp)
{
    PKT_PROP_SET(pp, PROP_AUTH_METHOD);
    pp->auth_method.p = (const uint8_t *)a->m->name;
    pp->auth_method.len = (uint32_t)strlen(a->m->name);
    if (len > 0) {
        PKT_PROP_SET(pp, PROP_AUTH_DATA);
        pp->auth_data.p = data;
        pp->auth_data.len = (uint32_t)len;
    }
}

/* Sends AUTH with reason and the method's answer of st. */
static void send_auth(conn_t *c, const auth_conn_t *a, uint8_t reason, const auth_step_t *st)
{
    pkt_t p = {.type = PKT_AUTH};
    p.u.disconnect.reason = reason;
    put_method(a, st->out, st->out_len, &p.u.disconnect.props);
    if (conn__send_pkt(c, &p) != 0)
        log_warn("client %s (%s): AUTH too large to send", conn__id(c), conn__peer(c));
}

/* What a step of the CONNECT exchange leads to: CONN_OK (authenticated:
 * the CONNECT goes on), CONN_PENDING (AUTH 0x18 sent) or CONN_GONE
 * (CONNACK 0x87, closed). */
static conn_rc_t connect_verdict(conn_t *c, auth_conn_t *a, int v, const auth_step_t *st)
{
    if (v == AUTH_SUCCESS) {
        a->data = st->out;
        a->data_len = st->out_len;
        return CONN_OK;
    }
    if (v == AUTH_CONTINUE) {
        send_auth(c, a, PKT_RC_CONTINUE_AUTH, st);
        return CONN_PENDING;
    }
    log_info("client (%s): enhanced authentication (%s) failed", conn__peer(c), a->m->name);
    exchange_end(a);
    return connect__refuse(c, NULL, PKT_RC_NOT_AUTHORIZED);
}

conn_rc_t auth__connect_start(conn_t *c, const pkt_connect_t *cp, const uint8_t *frame,
                              size_t len)
{
    const pkt_bin_t *name = &cp->props.auth_method;
    const auth_method_t *m = auth__find(c->loop->b, name->p, name->len);
    if (m == NULL) {
        log_info("client (%s): authentication method \"%.*s\" not supported", conn__peer(c),
                 name->len > 64 ? 64 : (int)name->len, (const char *)name->p);
        return connect__refuse(c, cp, PKT_RC_BAD_AUTH_METHOD);
    }
    auth_conn_t *a = xcalloc(1, sizeof *a);
    alias__v5(c)->auth = a;
    a->m = m;
    a->phase = PHASE_CONNECT;
    auth_step_t st = step_of(c, &cp->props);
    st.client_id = (const char *)cp->client_id.p;
    st.client_id_len = cp->client_id.len;
    conn_rc_t rc = connect_verdict(c, a, m->start(&a->state, &st), &st);
    if (rc != CONN_PENDING) return rc;
    /* The exchange goes on: keep the CONNECT (a size the peer chose). */
    a->connect = try_malloc(len, c->loop->b->cfg->max_packet_size);
    if (a->connect == NULL) {
        exchange_end(a);
        return connect__refuse(c, cp, PKT_RC_QUOTA_EXCEEDED);
    }
    memcpy(a->connect, frame, len);
    a->connect_len = len;
    return CONN_PENDING;
}

int auth__connecting(const conn_t *c)
{
    const auth_conn_t *a = auth_of(c);
    return a != NULL && a->phase == PHASE_CONNECT;
}

conn_rc_t auth__connect_step(conn_t *c, const uint8_t *frame, size_t len,
                             const uint8_t **connect, size_t *connect_len)
{
    auth_conn_t *a = auth_of(c);
    pkt_t p;
    int err = pkt_decode(&p, c->version, frame, len, &c->loop->arena);
    if (err < 0) {
        log_info("client (%s): bad packet during enhanced authentication: %s", conn__peer(c),
                 err_str(err));
        return connect__refuse(c, NULL, pkt_err_reason(err));
    }
    if (p.type == PKT_DISCONNECT) {
        conn__close(c, 0, CONN_CLOSE_QUIET, "client sent DISCONNECT during authentication");
        return CONN_GONE;
    }
    /* MQTT-4.12.0-3 and -5: the client answers with AUTH 0x18 naming the
     * CONNECT's method; MQTT-3.1.2-30: nothing but AUTH or DISCONNECT
     * before CONNACK. Anything else is a Protocol Error. */
    if (p.type != PKT_AUTH || p.u.disconnect.reason != PKT_RC_CONTINUE_AUTH ||
        !same_method(a, &p.u.disconnect.props)) {
        log_info("client (%s): %s (reason 0x%02x) where AUTH 0x18 (%s) was due",
                 conn__peer(c), pkt_type_name(p.type), p.u.disconnect.reason, a->m->name);
        CNT_INC(c->loop->b, protocol_error);
        return connect__refuse(c, NULL, PKT_RC_PROTOCOL_ERROR);
    }
    auth_step_t st = step_of(c, &p.u.disconnect.props);
    conn_rc_t rc = connect_verdict(c, a, a->m->cont(a->state, &st), &st);
    if (rc == CONN_OK) {
        *connect = a->connect;
        *connect_len = a->connect_len;
    }
    return rc;
}

void auth__connack(conn_t *c, pkt_props_t *pp)
{
    const auth_conn_t *a = auth_of(c);
    if (a != NULL && a->phase == PHASE_CONNECT) put_method(a, a->data, a->data_len, pp);
}

void auth__connect_done(conn_t *c)
{
    auth_conn_t *a = auth_of(c);
    if (a == NULL) return;
    exchange_end(a);
    free(a->connect);
    a->connect = NULL;
    a->connect_len = 0;
}

/* Closes c after a failed or broken re-authentication. */
static conn_rc_t reauth_fail(conn_t *c, uint8_t reason, const char *why)
{
    auth_conn_t *a = auth_of(c);
    if (a != NULL) exchange_end(a);
    if (reason == PKT_RC_PROTOCOL_ERROR) return conn__fail(c, reason, why);
    conn__close(c, reason, CONN_CLOSE_DISCONNECT | CONN_CLOSE_WILL, why); /* MQTT-4.12.1-2 */
    return CONN_GONE;
}

conn_rc_t auth__handle(conn_t *c, const pkt_t *p)
{
    auth_conn_t *a = auth_of(c);
    const pkt_reason_t *r = &p->u.disconnect;
    int v;
    /* MQTT-4.12.0-7: no Authentication Method in CONNECT, no AUTH. */
    if (a == NULL)
        return conn__fail(c, PKT_RC_PROTOCOL_ERROR,
                          "AUTH without an Authentication Method in CONNECT");
    if (!same_method(a, &r->props)) /* MQTT-4.12.1-1 */
        return reauth_fail(c, PKT_RC_PROTOCOL_ERROR, "AUTH with another authentication method");
    auth_step_t st = step_of(c, &r->props);
    if (r->reason == PKT_RC_REAUTHENTICATE && a->phase == PHASE_IDLE) {
        a->phase = PHASE_REAUTH;
        st.client_id = c->sess->client_id;
        st.client_id_len = strlen(c->sess->client_id);
        v = a->m->start(&a->state, &st);
    } else if (r->reason == PKT_RC_CONTINUE_AUTH && a->phase == PHASE_REAUTH) {
        v = a->m->cont(a->state, &st);
    } else {
        return reauth_fail(c, PKT_RC_PROTOCOL_ERROR, "AUTH out of sequence");
    }
    if (v == AUTH_CONTINUE) {
        send_auth(c, a, PKT_RC_CONTINUE_AUTH, &st);
    } else if (v == AUTH_SUCCESS) {
        send_auth(c, a, PKT_RC_SUCCESS, &st);
        exchange_end(a);
        log_debug("client %s re-authenticated (%s)", conn__id(c), a->m->name);
    } else {
        return reauth_fail(c, PKT_RC_NOT_AUTHORIZED, "re-authentication failed");
    }
    return CONN_OK;
}

void auth__free(conn_t *c)
{
    auth_conn_t *a = auth_of(c);
    if (a == NULL) return;
    exchange_end(a);
    free(a->connect);
    free(a);
    c->ext->v5->auth = NULL;
}

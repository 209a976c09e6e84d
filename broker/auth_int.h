/*
 * auth_int.h - enhanced authentication (MQTT 5.0 section 4.12) (auth.c).
 *
 * A registry of methods per broker and the exchange of AUTH packets that
 * a method drives, at CONNECT and for re-authentication. No method is
 * built in: an Authentication Method in CONNECT gets CONNACK 0x8C until
 * one is registered.
 */
#ifndef UVMQ_BROKER_AUTH_INT_H
#define UVMQ_BROKER_AUTH_INT_H

#include "conn_int.h"

/* What one step of a method decided. */
enum auth_verdict {
    AUTH_SUCCESS = 0, /* authenticated (CONNACK 0x00 / AUTH 0x00) */
    AUTH_CONTINUE,    /* send step->out in AUTH 0x18, wait for the next */
    AUTH_FAIL         /* refused (CONNACK / DISCONNECT 0x87) */
};

/* One step of an exchange: the client's Authentication Data in (in_len 0
 * when absent) and the method's answer out (owned by the method, valid
 * until its next call or end; NULL when none). client_id is the CONNECT's
 * (possibly empty: the server assigns one) or the session's. */
typedef struct auth_step_s {
    conn_t *c;
    const char *client_id;
    size_t client_id_len;
    const uint8_t *in;
    size_t in_len;
    const uint8_t *out;
    size_t out_len;
} auth_step_t;

/* An authentication method: callbacks run on the connection's loop. */
typedef struct auth_method_s {
    const char *name; /* the Authentication Method, compared exactly */
    /* Begins an exchange (CONNECT, or AUTH 0x19 re-authenticate); may
     * set *state, which end frees. Returns enum auth_verdict. */
    int (*start)(void **state, auth_step_t *step);
    /* The client's AUTH 0x18 with the next data. */
    int (*cont)(void *state, auth_step_t *step);
    /* Ends an exchange, whatever its outcome (also when the connection
     * closes in the middle); frees state. May be NULL. */
    void (*end)(void *state);
} auth_method_t;

/* Adds method m (borrowed for the broker's life) to b before the loops
 * start. Returns 0, UVMQ_EEXISTS for a name already there, or UVMQ_ELIMIT
 * past AUTH_METHODS_MAX. */
int auth__register(broker_t *b, const auth_method_t *m);
/* The method named name[0..len), or NULL. */
const auth_method_t *auth__find(const broker_t *b, const uint8_t *name, size_t len);
/* Starts the exchange of a v5 CONNECT that has an Authentication Method
 * (frame[0..len) is that CONNECT: kept while the exchange goes on).
 * Returns CONN_OK when authenticated (go on with the CONNECT: its CONNACK
 * carries the method, auth__connack; then auth__connect_done),
 * CONN_PENDING when an AUTH 0x18 went out and c waits
 * (auth__connecting), or CONN_GONE when refused with CONNACK 0x8C
 * (unknown method) or 0x87 (the method said no). */
conn_rc_t auth__connect_start(conn_t *c, const pkt_connect_t *cp, const uint8_t *frame,
                              size_t len);
/* 1 while c's CONNECT waits for the client's next AUTH. */
int auth__connecting(const conn_t *c);
/* A packet of c while its CONNECT waits: an AUTH 0x18 with the same
 * method steps the exchange; DISCONNECT closes; anything else is refused
 * with CONNACK 0x82 (or the decode error's reason). Returns as
 * auth__connect_start; on CONN_OK, *connect and *connect_len are the kept
 * CONNECT frame (valid until auth__connect_done). */
conn_rc_t auth__connect_step(conn_t *c, const uint8_t *frame, size_t len,
                             const uint8_t **connect, size_t *connect_len);
/* Adds Authentication Method and the method's last data to c's CONNACK
 * properties pp (no-op without enhanced authentication). */
void auth__connack(conn_t *c, pkt_props_t *pp);
/* The CONNECT was answered or refused: ends the method's exchange and
 * frees the kept frame; the method stays for re-authentication. */
void auth__connect_done(conn_t *c);
/* AUTH from a connected client: re-authentication (0x19, then 0x18), or
 * 0x82 without an Authentication Method in CONNECT. Returns CONN_OK or
 * CONN_GONE. */
conn_rc_t auth__handle(conn_t *c, const pkt_t *p);
/* Frees c's authentication state (ending an exchange under way). */
void auth__free(conn_t *c);

#endif

/*
 * connect_int.h - CONNECT and DISCONNECT (connect.c): what a CONNECT
 * asks for until its session is attached, refusals, takeover.
 */
#ifndef UVMQ_BROKER_CONNECT_INT_H
#define UVMQ_BROKER_CONNECT_INT_H

#include "conn_int.h"

/* Hand-offs of one connection between loops before its CONNECT is
 * refused with "Server busy" (the session kept being re-created on
 * another loop meanwhile). */
#define MIGRATE_MAX_HOPS 8

/* What a decoded CONNECT asks for, kept until the session is ours. */
typedef struct conn_hello_s {
    msg_t *will;          /* owned until attached to the session */
    uint32_t expiry;      /* session expiry interval, s */
    uint32_t will_delay;  /* v5 Will Delay Interval, s */
    uint32_t will_expiry; /* v5 will Message Expiry, s; 0 = none */
    uint16_t window;      /* inflight window (Receive Maximum) */
    uint8_t clean_start;
    uint8_t assigned;     /* v5: report the generated id in CONNACK */
    uint8_t server_ka;    /* v5: report the granted keep-alive */
    uint8_t response_info; /* v5: Request Response Information was 1 */
    uint16_t alias_max;   /* v5: the client's Topic Alias Maximum, capped
                             by topic_alias_max (0: no outbound aliases) */
    char *user;           /* the user name (NUL-terminated copy, owned;
                             NULL: anonymous), for the session's ACL */
    uint32_t user_len;
} conn_hello_t;

/* Handles the first packet of a connection (raw bytes of one frame).
 * Returns CONN_OK, CONN_GONE, or CONN_MIGRATE (c->move_to set: the caller
 * moves c, from this frame on, to its session's loop). */
conn_rc_t connect__handle(conn_t *c, const uint8_t *frame, size_t len);
/* Frees c->hello (and the will it still holds), if any. */
void connect__hello_free(conn_t *c);
/* Refuses c's CONNECT: CONNACK with reason (v3: its nearest return
 * code), then closes. cp is the decoded CONNECT, or NULL when its limits
 * are not at hand: a v5 CONNACK then carries no Reason String. Returns
 * CONN_GONE. */
conn_rc_t connect__refuse(conn_t *c, const pkt_connect_t *cp, uint8_t reason);
/* Handles DISCONNECT from the client. Returns CONN_GONE. */
conn_rc_t connect__handle_disconnect(conn_t *c, const pkt_t *p);

#endif

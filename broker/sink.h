/*
 * sink.h - where a session's messages go when no MQTT client takes them:
 * an HTTP/2 event stream today (http/http_api.c), a cluster link later.
 *
 * A session delivers to its MQTT connection (the protocol's own queue,
 * inflight window and packet ids, inlined on the fan-out path) or, for a
 * session opened here, to a sink: one call per message, and the sink
 * decides how to frame, queue or drop it. The router and the fan-out treat
 * a sink's session as any subscriber, so a message reaches a sink through
 * the same matching, retained messages and $SYS rules as an MQTT client.
 *
 * A sink's session is clean: it lives on the worker loop of the
 * connection that opened it, is never in the session map (no client can
 * take it over) and never stored; it ends with sink_close. Everything
 * here runs on that loop.
 */
#ifndef UVMQ_BROKER_SINK_H
#define UVMQ_BROKER_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "../queue/queue.h"
#include "transport.h"

typedef struct sink_s sink_t;
typedef struct sess_s sess_t;

typedef struct sink_ops_s {
    /* Message m (borrowed; retain it to keep it) for this sink, as its
     * subscriber gets it: delivery qos (the lower of the message's and
     * the subscription's) and retain flag (1 for a retained message sent
     * on subscribe). The sink counts what it drops (conn_count). */
    void (*deliver)(sink_t *k, msg_t *m, uint8_t qos, uint8_t retain);
} sink_ops_t;

/* Embedded first in the implementation's own struct (the sink finds
 * itself with container_of). */
struct sink_s {
    const sink_ops_t *ops;
};

/* Opens a session named id[0..len) (for logs; "$http/<loop>/<n>") on c's
 * loop that delivers to k (borrowed until sink_close), for the client
 * user[0..ulen) (NULL: anonymous), whose read permission the ACL checks
 * on every message, as for an MQTT subscriber. Returns it, with no
 * subscriptions yet. */
sess_t *sink_open(conn_t *c, sink_t *k, const char *id, size_t len, const char *user,
                  size_t ulen);
/* Subscribes s to the valid filter f[0..len) at QoS qos. The subscription
 * matches from the moment this returns. Returns 0, UVMQ_EINVAL for a
 * $share filter (a sink is one subscriber, not a group member), or the
 * router's error. */
int sink_subscribe(sess_t *s, const char *f, size_t len, uint8_t qos);
/* Delivers the retained messages matching f[0..len) to s's sink (after
 * the subscription, as an MQTT SUBACK is followed by them). */
void sink_send_retained(sess_t *s, const char *f, size_t len, uint8_t qos);
/* Ends *sp's session: out of the router, freed; *sp is NULL after. */
void sink_close(sess_t **sp);

#endif

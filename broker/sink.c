/*
 * sink.c - sessions that deliver to a sink (sink.h): clean, loop-local,
 * never in the session map and never stored, subscribed through the same
 * router as MQTT sessions (interest.c), fed by the fan-out (deliver.c
 * hands a sink's session its messages where an MQTT one would queue
 * them).
 */
#include "broker_int.h"

#include "access_int.h"
#include "deliver_int.h"
#include "interest_int.h"
#include "sess_int.h"
#include "share_int.h"

sess_t *sink_open(conn_t *c, sink_t *k, const char *id, size_t len, const char *user,
                  size_t ulen)
{
    loop_t *l = c->loop;
    sess_t *s = sess__create(id, len, l->b->cfg);
    s->loop = l;
    s->sink = k;
    s->to_sink = 1;
    s->version = PKT_V5; /* gets v5 properties; no subscription ids asked */
    access__sess_set_user(s, user, ulen);
    return s;
}

int sink_subscribe(sess_t *s, const char *f, size_t len, uint8_t qos)
{
    int existed = 0;
    if (share__is_shared(f, len)) return UVMQ_EINVAL; /* a sink is one subscriber */
    return interest__subscribe(s->loop, s, f, len, qos, 0, &existed);
}

void sink_send_retained(sess_t *s, const char *f, size_t len, uint8_t qos)
{
    deliver__retained(s->loop, s, f, len, qos, 0);
}

void sink_close(sess_t **sp)
{
    sess_t *s = *sp;
    *sp = NULL;
    sess__destroy(s->loop, s); /* out of the router, then freed */
}

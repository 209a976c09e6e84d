/*
 * subscribe_int.h - SUBSCRIBE and UNSUBSCRIBE (subscribe.c).
 */
#ifndef UVMQ_BROKER_SUBSCRIBE_INT_H
#define UVMQ_BROKER_SUBSCRIBE_INT_H

#include "conn_int.h"

conn_rc_t subscribe__handle(conn_t *c, pkt_t *p);
conn_rc_t subscribe__handle_unsubscribe(conn_t *c, pkt_t *p);

#endif

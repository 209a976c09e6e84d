/*
 * publish_int.h - PUBLISH in, and the acknowledgements of QoS 1/2 both
 * ways (publish.c).
 */
#ifndef UVMQ_BROKER_PUBLISH_INT_H
#define UVMQ_BROKER_PUBLISH_INT_H

#include "conn_int.h"

conn_rc_t publish__handle(conn_t *c, pkt_t *p);
conn_rc_t publish__handle_ack(conn_t *c, const pkt_t *p); /* PUBACK/REC/REL/COMP */
/* Queues PUBACK/PUBREC/PUBREL/PUBCOMP for packet id (reason: v5 only). */
void publish__send_ack(conn_t *c, uint8_t type, uint16_t id, uint8_t reason);
/* Builds a msg from topic, payload and the forwardable subset of props
 * (v5), with expiry from Message Expiry Interval. NULL when too large. */
msg_t *publish__msg_from(broker_t *b, pkt_bin_t topic, pkt_bin_t payload,
                      const pkt_props_t *props, uint8_t qos, uint8_t retain,
                      const void *origin);

#endif

/*
 * deliver_int.h - fan-out and per-session delivery (deliver.c).
 */
#ifndef UVMQ_BROKER_DELIVER_INT_H
#define UVMQ_BROKER_DELIVER_INT_H

#include "broker_int.h"

/* Stores m in the retained trie when its retain flag is set, then fans it
 * out: to the matching sessions of l, and (one PUBLISH item each) to every
 * other loop whose router is not empty. Borrows m (each delivery and item
 * retains). Returns the local matches plus the loops forwarded to, so 0
 * means "no matching subscribers" for sure. */
size_t deliver__publish(loop_t *l, msg_t *m);
/* deliver__publish for the broker's own retained $SYS messages (QoS 0):
 * the retained copy is kept in memory only, never written to the store
 * (sys.c regenerates them after a restart). Borrows m. */
void deliver__publish_sys(loop_t *l, msg_t *m);
/* Matches m against l's own router and delivers to those sessions only.
 * Borrows m. Returns the number of matches. */
size_t deliver__local(loop_t *l, msg_t *m);
/* Delivers m to session s with delivery QoS qos, retain flag and v5
 * subscription ids (copied). Borrows m. */
void deliver__sess(loop_t *l, sess_t *s, msg_t *m, uint8_t qos,
                   uint8_t retain, const uint32_t *ids, size_t n_ids);
/* deliver__sess for a message a shared subscription group gave s: a QoS
 * 1/2 entry is tagged with the group's id (share.c hands it to another
 * member if s disconnects before it is acknowledged). */
void deliver__sess_share(loop_t *l, sess_t *s, msg_t *m, uint8_t qos, uint8_t retain,
                         const uint32_t *ids, size_t n_ids, uint32_t group);
/* Moves queued messages into the inflight window while there is room. */
void deliver__drain(sess_t *s);
/* Resends the inflight window (DUP) after a session was resumed. */
void deliver__resend(sess_t *s);
/* Sends the retained messages matching filter to s (after SUBACK). */
void deliver__retained(loop_t *l, sess_t *s, const char *filter,
                         size_t len, uint8_t granted, uint32_t sub_id);

#endif

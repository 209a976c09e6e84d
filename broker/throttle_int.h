/*
 * throttle_int.h - lossless QoS 1/2: pausing the publishers that feed a
 * congested session (throttle.c).
 */
#ifndef UVMQ_BROKER_THROTTLE_INT_H
#define UVMQ_BROKER_THROTTLE_INT_H

#include "broker_int.h"

/* Makes l's throttle state (loop__state_init), then starts its timer on
 * the uv loop (loop__init); closes the timer (loop__close_handles);
 * frees the state (loop__state_dispose). */
void throttle__loop_init(loop_t *l);
void throttle__start(loop_t *l);
void throttle__close(loop_t *l);
void throttle__loop_dispose(loop_t *l);
/* A publish begins on l (deliver__publish): forgets what the last one's
 * forwards noted. */
void throttle__publish_begin(loop_t *l);
/* c has just published the QoS 1/2 message m (deliver__publish returned):
 * pauses c when a delivery on this loop found a congested session, when
 * m went to a loop with a congested session (until that loop has
 * delivered m: a probe), or to a loop whose backlog is past its limit.
 * Borrows m (a probe retains it). */
void throttle__note(conn_t *c, msg_t *m);
/* Drops c's throttle state (close): leaves the loop's list, releases the
 * probe. Safe to call twice. */
void throttle__forget(conn_t *c);
/* forward() posts the QoS 1/2 message m from loop l to loop t: counts it
 * in t's backlog and notes in l whether t is congested or backlogged. */
void throttle__forwarding(loop_t *l, loop_t *t, msg_t *m);
/* Loop l has delivered m, forwarded to it by loop index `from`: takes it
 * off l's backlog and m's fwd_pending, and wakes `from` when a paused
 * publisher waits for exactly this. Call after the delivery. */
void throttle__delivered(loop_t *l, msg_t *m, unsigned from);
/* Resumes the paused connections of l that may go on (async wake-up). */
void throttle__wake(loop_t *l);
/* Queues e (taken) for the online session s of loop l, allowing up to
 * twice the soft limit; marks s congested past the soft limit and, while
 * it is, marks m with l. Returns 0, or UVMQ_ELIMIT when past the hard limit
 * (e released, counted in the queue). */
int throttle__queue_online(loop_t *l, sess_t *s, queue_entry_t *e, msg_t *m);
/* Ends s's congestion when its queue is at or below half the soft limit,
 * or when force is set (s going offline, reset or leaving l). */
void throttle__congestion_check(loop_t *l, sess_t *s, int force);

#endif

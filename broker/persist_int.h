/*
 * persist_int.h - the broker's side of the store (persist.c): what each
 * loop writes per tick and acknowledgements that wait for commits.
 */
#ifndef UVMQ_BROKER_PERSIST_INT_H
#define UVMQ_BROKER_PERSIST_INT_H

#include "conn_int.h"

/* Every function here does nothing when the broker has no store (the
 * in-process benchmarks) or, for the per-session ones, when the session
 * is not stored. Writes go into the loop's batch for this tick. */

/* The loop that owns every stored (persistent) session: loop 0. Their
 * writes then share one batch per tick, so what a QoS 2 PUBLISH stores
 * (its inbound id and every durable queue entry) commits atomically
 * (storage.md says why). */
loop_t *persist__loop(broker_t *b);
/* Makes l's persistence state (loop__state_init); frees it, with a batch
 * never submitted and reports never made (loop__state_dispose). */
void persist__loop_init(loop_t *l);
void persist__loop_dispose(loop_t *l);
/* Store ids l gives out from now on are past max_id (recovery). */
void persist__ids_after(loop_t *l, uint64_t max_id);
/* 1 while generation gen of l's batches is not committed: output held
 * for it waits (conn_out_t.hold_gen; the flush hook). */
int persist__holds(const loop_t *l, uint64_t gen);
/* The store id for a new message of l (unique across loops). */
uint64_t persist__new_id(loop_t *l);
/* Operations in l's pending batch (0 when none): a handler compares the
 * count before and after to learn whether its acknowledgement must wait
 * for the commit. */
size_t persist__ops(const loop_t *l);
/* Writes s's session row (client id, protocol, expiry, will, online or
 * not) and marks it stored; the first time counts its filters durable. */
void persist__session_put(loop_t *l, sess_t *s);
/* Deletes s's stored state (row, subscriptions, entries, inbound QoS 2
 * ids) and marks it not stored. */
void persist__session_del(loop_t *l, sess_t *s);
/* Writes or deletes one subscription of stored session s. */
void persist__sub_put(loop_t *l, sess_t *s, const char *f, size_t len,
                      uint8_t options, uint32_t sub_id);
void persist__sub_del(loop_t *l, sess_t *s, const char *f, size_t len);
/* Writes queue entry e (its seq set) of stored session s, holding m,
 * with packet_id and state (STORE_ENTRY_*); writes m first if this batch
 * does not hold it yet. */
void persist__entry_add(loop_t *l, sess_t *s, msg_t *m, const queue_entry_t *e,
                        uint16_t packet_id, uint8_t state);
/* Moves entry seq of s to packet_id/state; drop_msg releases its message
 * (QoS 2 after PUBREC). */
void persist__entry_update(loop_t *l, sess_t *s, uint64_t seq, uint16_t packet_id,
                           uint8_t state, int drop_msg);
/* Deletes entry seq of s (no-op for seq 0). */
void persist__entry_del(loop_t *l, sess_t *s, uint64_t seq);
/* Records (add 1) or forgets (add 0) an inbound QoS 2 packet id of s. */
void persist__inq2(loop_t *l, sess_t *s, uint16_t packet_id, int add);
/* Stores m as its topic's retained message, or deletes the topic's
 * retained message when m's payload is empty. */
void persist__retained(loop_t *l, msg_t *m);
/* 1 when a loop given m for a stored session must report its commit of m
 * back: m is QoS 1/2 and acks wait for commits (share.c). */
int persist__report_needed(loop_t *l, const msg_t *m);
/* 1 when the target loop t must report its commit of m back (t may hold
 * a durable destination of m and acks wait for commits). */
int persist__must_report(loop_t *l, loop_t *t, msg_t *m, const uint32_t key[2]);
/* A forwarded m was delivered on l with report set: once l's entries of
 * it are committed (now, if l wrote none), tells m's publishing loop. */
void persist__delivered(loop_t *l, msg_t *m, size_t ops_before);
/* Sends acknowledgement `type` (PUBACK, PUBREC, PUBCOMP) for packet id
 * now, or queues it behind c's waiting ones until generation gen of c's
 * loop is committed (gen 0: nothing to wait for) and, when m is not NULL,
 * until every other loop holding m durably has reported. Returns CONN_OK,
 * or CONN_GONE when c was closed (a v3.1.1 client whose message could not be
 * stored). */
conn_rc_t persist__ack(conn_t *c, uint8_t type, uint32_t id, uint8_t reason,
                       msg_t *m, uint64_t gen);
/* persist__ack's type for a transport's own publish (conn_publish; 0: no
 * MQTT packet type): the answer is its transport's acked(id). */
#define ACK_TRANSPORT 0
/* The same for SUBACK/UNSUBACK (type) with n reason codes (copied when
 * it must wait): a subscription of a stored session is acknowledged once
 * it is committed. Returns CONN_OK. */
conn_rc_t persist__ack_sub(conn_t *c, uint8_t type, uint16_t id, const uint8_t *reasons,
                           uint32_t n, uint64_t gen);
/* The generation that holds everything l has written so far, when
 * acknowledgements wait for commits; else 0. For answers that repeat an
 * earlier one (a resent QoS 2 PUBLISH, an unknown PUBREL) and for holds. */
uint64_t persist__gen_now(loop_t *l);
/* The generation a handler's acknowledgement waits for: l's pending one
 * when the batch grew past ops_before, else 0. */
uint64_t persist__gen_since(loop_t *l, size_t ops_before);
/* Flush hook: submits the tick's batch and wakes the publishing loops of
 * messages whose reports are complete. */
void persist__flush(loop_t *l);
/* ITEM_COMMITTED on l: records the generation, reports the messages of
 * other loops, sends acknowledgements that are now due. */
void persist__committed(loop_t *l, void *rec);
/* ITEM_ACK_WAKE: sends acknowledgements that are now due. */
void persist__run_acks(loop_t *l);
/* Holds c's output until what l's batches hold now is committed: c was
 * just sent a QoS 2 PUBLISH or PUBREL whose stored state is not yet on
 * disk (a crash in between would make the client see it twice). Call it
 * after queuing the packet (the hold lives in c->out). */
void persist__hold(conn_t *c);
/* PUBACKs and PUBCOMPs waiting in c's queue: QoS 1/2 publishes of c not
 * yet answered (v5 Receive Maximum counts them). */
size_t persist__open_acks(const conn_t *c);
/* c is closing: drops its waiting acknowledgements. */
void persist__conn_gone(conn_t *c);
/* Frees an ITEM_COMMITTED record that was never run (shutdown). */
void persist__drop_record(void *rec);

#endif

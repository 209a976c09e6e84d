/*
 * interest_int.h - a loop's subscriptions and the summaries other loops
 * read to decide where to forward a message (interest.c).
 */
#ifndef UVMQ_BROKER_INTEREST_INT_H
#define UVMQ_BROKER_INTEREST_INT_H

#include "broker_int.h"

/* Adds or replaces s's subscription in l's router and in s's record, and
 * counts a new one in l's summary (before returning: queue the SUBACK
 * after). Returns router_subscribe's result; *existed as it sets it. */
int interest__subscribe(loop_t *l, sess_t *s, const char *f, size_t len,
                    uint8_t options, uint32_t sub_id, int *existed);
/* Removes s's subscription to f from l's router and summary and from s's
 * record. Returns 0 or UVMQ_ENOTFOUND. */
int interest__unsubscribe(loop_t *l, sess_t *s, const char *f, size_t len);
/* Removes every subscription of s from l's router and summary and empties
 * s's record. */
void interest__unsubscribe_all(loop_t *l, sess_t *s);
/* Makes l's summaries, all zero (loop__state_init); frees them. */
void interest__loop_init(loop_t *l);
void interest__loop_dispose(loop_t *l);
/* The two summary keys of a topic: computed once per PUBLISH. */
void interest__topic_keys(const char *topic, size_t len, uint32_t key[2]);
/* 1 when l may have a subscription matching the topic of key (any
 * thread; a false 1 only costs a forward in vain). */
int interest__may_match(loop_t *l, const uint32_t key[2]);
/* The same, for the subscriptions of l's stored sessions only. */
int interest__may_match_durable(loop_t *l, const uint32_t key[2]);
/* Counts s's filters in (delta +1) or out (-1) of l's durable summary:
 * s->stored is changing. */
void interest__durable_count(loop_t *l, sess_t *s, int delta);

#endif

/*
 * share_int.h - shared subscriptions ($share/<group>/<filter>) (share.c).
 *
 * One registry for the broker, behind its own mutex: groups keyed by
 * (name, filter), each with its members; a member is a refcounted record
 * of one session's subscription, owned by the session's loop. The design
 * (and why) is in docs/architecture.md "Shared subscriptions"; the
 * protocol choices are in docs/protocol.md. Every function is called on
 * the loop that owns the sessions it names.
 */
#ifndef UVMQ_BROKER_SHARE_INT_H
#define UVMQ_BROKER_SHARE_INT_H

#include "inbox_int.h"

/* What begins a shared subscription's filter: "$share/<group>/<filter>". */
#define SHARE_PREFIX "$share/"
#define SHARE_PREFIX_LEN 7

typedef struct share_s share_t;
typedef struct share_member_s share_member_t;

/* Makes l's share state (loop__state_init); frees it. */
void share__loop_init(loop_t *l);
void share__loop_dispose(loop_t *l);
/* Creates the registry (groups pick members by strategy, enum
 * share_strategy). */
share_t *share__create(int strategy);
/* Frees the registry with every group and member left (every loop is
 * down and their items dropped). NULL is a no-op. */
void share__destroy(share_t *r);
/* 1 when f[0..len) starts with "$share/". */
int share__is_shared(const char *f, size_t len);
/* s (owned by l) joins the group of the valid shared filter f, or updates
 * its options and subscription id (*existed set). Counted in b->n_shared
 * (release) before it returns: the SUBACK goes after. Does not touch
 * s->subs (interest.c does). Returns 0 or UVMQ_EINVAL. */
int share__join(loop_t *l, sess_t *s, const char *f, size_t len, uint8_t options,
                uint32_t sub_id, int *existed);
/* s leaves the group of f. Returns 0 or UVMQ_ENOTFOUND. */
int share__leave(loop_t *l, sess_t *s, const char *f, size_t len);
/* Records whether s is online (its groups prefer online members) and
 * stored (a publisher's acknowledgement waits for its commit) in each of
 * its memberships. */
void share__update(loop_t *l, sess_t *s, int online, int durable);
/* The publish of m on l (deliver__publish, when b->n_shared > 0): picks
 * one member of each group whose filter matches and delivers to it, here
 * or through ITEM_SHARE. Borrows m. Returns the number of groups. */
size_t share__publish(loop_t *l, msg_t *m);
/* ITEM_SHARE on l: delivers to the member, or to another one when it
 * left or went offline meanwhile; takes the item's references. */
void share__item(loop_t *l, loop_item_t *it);
/* s (of l) disconnected or is ending: each QoS 1 message it has
 * unacknowledged and each QoS 1/2 message queued for it that came
 * through a group goes to another member of that group (an online one
 * first); without one it stays. QoS 2 messages already sent stay
 * (MQTT-4.8.2-4, MQTT-4.8.2-5). */
void share__handoff(loop_t *l, sess_t *s);
/* Drops a member reference (ITEM_SHARE never run) and NULLs *mp. */
void share__member_release(share_member_t **mp);
/* The pure choice under every pick: an index in [0, n) other than excl
 * (excl >= n: none excluded) by strategy; round robin advances *rr, sticky
 * uses hash, random rnd. Returns -1 when there is none. */
long share__choose(int strategy, uint32_t n, uint32_t excl, uint32_t *rr, uint32_t hash,
                   uint32_t rnd);

#endif

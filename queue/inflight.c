/*
 * inflight.c - a session's window of unacknowledged QoS 1/2 messages and
 * its set of inbound QoS 2 packet ids awaiting PUBREL.
 *
 * Outbound slots live in an open-addressed table keyed by packet id with
 * linear probing. The home slot is id & (cap - 1): ids are handed out in
 * sequence, so a window of live ids rarely collides. The table grows so it
 * is never more than half full, and deletion shifts later members of the
 * probe run back (no tombstones), so a lookup stops at the first free slot.
 * Slot pointers are valid only until the next add, complete or clear.
 *
 *   QoS 1: add -> WAIT_PUBACK  --PUBACK-->  freed
 *   QoS 2: add -> WAIT_PUBREC  --PUBREC-->  WAIT_PUBCOMP --PUBCOMP--> freed
 */
#include "queue.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "../common/xmalloc.h"
#include "../packets/pkt.h"

#define INFLIGHT_MIN_CAP 16
#define INFLIGHT_MAX_ID 65535

static size_t clamp_max(size_t max)
{
    return max == 0 ? 1 : (max > INFLIGHT_MAX_ID ? INFLIGHT_MAX_ID : max);
}

/* Sets up an empty window of `max` slots (clamped to 1..65535). The table
 * is allocated by the first inflight_add (16 slots) and grows with use, so
 * a session that never gets a QoS 1/2 message costs no table, and one with
 * Receive Maximum 65535 costs 16 slots, not 2 x 65535. */
void inflight_init(inflight_t *f, size_t max)
{
    memset(f, 0, sizeof(*f));
    f->max = clamp_max(max);
}

/* Changes the window; slots already in use stay. */
void inflight_set_max(inflight_t *f, size_t max)
{
    f->max = clamp_max(max);
}

/* 1 when fewer than max slots are in use. */
int inflight_has_room(const inflight_t *f)
{
    return f->count < f->max;
}

static size_t home_of(const inflight_t *f, uint16_t id)
{
    return (size_t)id & (f->cap - 1);
}

/* Index of id's slot, or of the free slot where the probe stopped. */
static size_t probe(const inflight_t *f, uint16_t id)
{
    size_t i = home_of(f, id);
    while (f->slots[i].state != INFLIGHT_FREE && f->slots[i].packet_id != id)
        i = (i + 1) & (f->cap - 1);
    return i;
}

/* Doubles the table (or makes the first one) and reinserts every used
 * slot. */
static void grow(inflight_t *f)
{
    inflight_slot_t *old = f->slots;
    size_t old_cap = f->cap;

    f->cap = old_cap ? old_cap * 2 : INFLIGHT_MIN_CAP;
    f->slots = xcalloc(f->cap, sizeof(*f->slots));
    f->displaced = 0;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].state == INFLIGHT_FREE) continue;
        size_t j = probe(f, old[i].packet_id);
        f->slots[j] = old[i];
        f->displaced += j != home_of(f, old[i].packet_id);
    }
    free(old);
}

/* Frees slot i and shifts back later members of its probe run whose home
 * does not lie cyclically in (i, j], so every lookup still finds them.
 * Only a displaced member (not in its home slot) can move, so while none
 * is displaced, which next_free_id arranges in the steady state, this is
 * O(1): a window of consecutive ids fills consecutive slots, and the scan
 * to the end of that run was 10 % of the broker's CPU in bench F4. */
static void remove_at(inflight_t *f, size_t i)
{
    size_t mask = f->cap - 1;
    size_t j = i;

    f->displaced -= i != home_of(f, f->slots[i].packet_id);
    while (f->displaced > 0) {
        j = (j + 1) & mask;
        if (f->slots[j].state == INFLIGHT_FREE) break;
        size_t k = home_of(f, f->slots[j].packet_id);
        int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (stays) continue;
        f->slots[i] = f->slots[j];
        f->displaced -= i == k; /* it moved home */
        i = j;
    }
    memset(&f->slots[i], 0, sizeof(f->slots[i]));
    f->count--;
}

/* The packet id after next_id that no slot uses, wrapping 65535 -> 1. Ids
 * must be non-zero and unused, and one becomes free only after its PUBACK
 * or PUBCOMP (3.1.1 section 2.3.1, 5.0 section 2.2.1), so WAIT_PUBCOMP
 * slots keep theirs. The caller checked count < 65535: one exists. While
 * no member is displaced, an id whose home slot is free is unused, and
 * only such an id is taken (skipping the few whose home an old, slow id
 * holds), so the new member is not displaced either; the table is at
 * most half full, so one comes within cap ids. */
static uint16_t next_free_id(inflight_t *f)
{
    uint16_t id = f->next_id;
    do {
        id = id == INFLIGHT_MAX_ID ? 1 : (uint16_t)(id + 1);
    } while (f->displaced == 0 ? f->slots[home_of(f, id)].state != INFLIGHT_FREE
                               : f->slots[probe(f, id)].state != INFLIGHT_FREE);
    return id;
}

/* Takes e (qos 1 or 2) into a new slot with a fresh packet id; see
 * queue.h. Returns the slot, valid until the next add, complete or clear,
 * or NULL when the window is full (e untouched). */
inflight_slot_t *inflight_add(inflight_t *f, queue_entry_t *e)
{
    inflight_slot_t *s = NULL;

    assert(e->qos == 1 || e->qos == 2);
    if (!inflight_has_room(f)) return NULL;
    if ((f->count + 1) * 2 > f->cap) grow(f);
    f->next_id = next_free_id(f);
    size_t i = probe(f, f->next_id);
    f->displaced += i != home_of(f, f->next_id);
    s = &f->slots[i];
    s->packet_id = f->next_id;
    s->state = e->qos == 1 ? INFLIGHT_WAIT_PUBACK : INFLIGHT_WAIT_PUBREC;
    s->seq = f->next_seq++;
    s->e = *e;
    memset(e, 0, sizeof(*e));
    f->count++;
    return s;
}

/* Takes e into slot packet_id in state st; see queue.h. */
int inflight_restore(inflight_t *f, uint16_t packet_id, uint8_t st, queue_entry_t *e)
{
    int ok = packet_id != 0 && st >= INFLIGHT_WAIT_PUBACK && st <= INFLIGHT_WAIT_PUBCOMP &&
             (st == INFLIGHT_WAIT_PUBCOMP || e->m != NULL) && inflight_get(f, packet_id) == NULL;
    if (!ok) return UVMQ_EINVAL;
    if ((f->count + 1) * 2 > f->cap) grow(f);
    size_t i = probe(f, packet_id);
    f->displaced += i != home_of(f, packet_id);
    inflight_slot_t *s = &f->slots[i];
    s->packet_id = packet_id;
    s->state = st;
    s->seq = f->next_seq++;
    s->e = *e;
    memset(e, 0, sizeof(*e));
    f->count++;
    if (packet_id > f->next_id) f->next_id = packet_id; /* new ids follow */
    return 0;
}

/* Borrows packet_id's slot, or NULL when it is not in use. */
inflight_slot_t *inflight_get(inflight_t *f, uint16_t packet_id)
{
    inflight_slot_t *s = f->cap ? &f->slots[probe(f, packet_id)] : NULL;
    return s != NULL && s->state != INFLIGHT_FREE ? s : NULL;
}

/* Frees the slot on PUBACK (state WAIT_PUBACK) or PUBCOMP (state
 * WAIT_PUBCOMP), releasing its references. Any other ack type, state or
 * unknown id returns UVMQ_ENOTFOUND and changes nothing. */
int inflight_complete(inflight_t *f, uint16_t packet_id, uint8_t ack_type)
{
    size_t i = f->cap ? probe(f, packet_id) : 0;
    uint8_t want = ack_type == PKT_PUBACK    ? INFLIGHT_WAIT_PUBACK
                   : ack_type == PKT_PUBCOMP ? INFLIGHT_WAIT_PUBCOMP
                                             : INFLIGHT_FREE;
    int rc = UVMQ_ENOTFOUND;

    if (f->cap != 0 && want != INFLIGHT_FREE && f->slots[i].state == want) {
        queue_entry_dispose(&f->slots[i].e);
        remove_at(f, i);
        rc = 0;
    }
    return rc;
}

/* PUBREC: WAIT_PUBREC -> WAIT_PUBCOMP. The message reference and the
 * subscription ids are released (only the packet id is needed to resend
 * PUBREL); e.qos and e.retain stay. A repeated PUBREC on a WAIT_PUBCOMP
 * slot returns 0 too, so the caller answers it with PUBREL again. Returns
 * UVMQ_ENOTFOUND for an unknown id or a QoS 1 slot. */
int inflight_pubrec(inflight_t *f, uint16_t packet_id)
{
    inflight_slot_t *s = inflight_get(f, packet_id);
    int rc = UVMQ_ENOTFOUND;

    if (s != NULL && s->state == INFLIGHT_WAIT_PUBREC) {
        msg_release(&s->e.m);
        free(s->e.ids);
        s->e.ids = NULL;
        s->e.n_ids = 0;
        s->state = INFLIGHT_WAIT_PUBCOMP;
        rc = 0;
    } else if (s != NULL && s->state == INFLIGHT_WAIT_PUBCOMP) {
        rc = 0;
    }
    return rc;
}

static int by_seq(const void *a, const void *b)
{
    const inflight_slot_t *x = *(inflight_slot_t *const *)a;
    const inflight_slot_t *y = *(inflight_slot_t *const *)b;
    return x->seq < y->seq ? -1 : (x->seq > y->seq ? 1 : 0);
}

/* Calls cb for every used slot, oldest send first. cb may change a slot's
 * state or entry but must not add or complete slots. Allocates a temporary
 * array (this runs on reconnect, not per message). */
void inflight_foreach(inflight_t *f, inflight_cb cb, void *ctx)
{
    inflight_slot_t **order = NULL;
    size_t n = 0;

    if (f->count == 0) return;
    order = xmalloc(f->count * sizeof(*order));
    for (size_t i = 0; i < f->cap; i++) {
        if (f->slots[i].state != INFLIGHT_FREE) order[n++] = &f->slots[i];
    }
    assert(n == f->count);
    qsort(order, n, sizeof(*order), by_seq);
    for (size_t i = 0; i < n; i++) cb(order[i], ctx);
    free(order);
}

/* Index of the first inbound id >= id (binary search of the sorted set). */
static size_t in_lower_bound(const inflight_t *f, uint16_t id)
{
    size_t lo = 0, hi = f->in_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->in_ids[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Records an inbound QoS 2 packet id whose PUBREC is being sent. Returns 1
 * when new, 0 when already held (a resend before PUBREL: answer PUBREC
 * but do not deliver again, MQTT-4.3.3-2 in 3.1.1, MQTT-4.3.3-10 in 5.0),
 * UVMQ_ELIMIT when max_in ids are held already. */
int inflight_in_add(inflight_t *f, uint16_t packet_id, size_t max_in)
{
    size_t i = in_lower_bound(f, packet_id);
    int rc = 1;

    if (i < f->in_count && f->in_ids[i] == packet_id) {
        rc = 0;
    } else if (f->in_count >= max_in) {
        rc = UVMQ_ELIMIT;
    } else {
        if (f->in_count == f->in_cap) {
            f->in_cap = f->in_cap ? f->in_cap * 2 : 8;
            f->in_ids = xrealloc(f->in_ids, f->in_cap * sizeof(*f->in_ids));
        }
        memmove(f->in_ids + i + 1, f->in_ids + i, (f->in_count - i) * sizeof(*f->in_ids));
        f->in_ids[i] = packet_id;
        f->in_count++;
    }
    return rc;
}

/* PUBREL received: forgets packet_id. Returns 0, or UVMQ_ENOTFOUND. */
int inflight_in_remove(inflight_t *f, uint16_t packet_id)
{
    size_t i = in_lower_bound(f, packet_id);
    int rc = UVMQ_ENOTFOUND;

    if (i < f->in_count && f->in_ids[i] == packet_id) {
        memmove(f->in_ids + i, f->in_ids + i + 1, (f->in_count - i - 1) * sizeof(*f->in_ids));
        f->in_count--;
        rc = 0;
    }
    return rc;
}

/* Releases every slot's references and forgets every inbound id; the
 * window, its table and the id/seq counters stay. */
void inflight_clear(inflight_t *f)
{
    for (size_t i = 0; i < f->cap; i++) {
        if (f->slots[i].state != INFLIGHT_FREE) queue_entry_dispose(&f->slots[i].e);
    }
    if (f->slots != NULL) memset(f->slots, 0, f->cap * sizeof(*f->slots));
    f->count = 0;
    f->displaced = 0;
    f->in_count = 0;
}

/* Releases everything inflight_clear does, plus the table and id array. */
void inflight_dispose(inflight_t *f)
{
    inflight_clear(f);
    free(f->slots);
    free(f->in_ids);
    memset(f, 0, sizeof(*f));
}

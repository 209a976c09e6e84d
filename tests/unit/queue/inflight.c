/*
 * Unit tests for queue/inflight.c: packet id allocation (skips ids in use
 * and 0, wraps), the full window, the QoS 1 and QoS 2 ack state machines,
 * send-order iteration, the inbound QoS 2 id set, and a long randomized
 * run checked against a simple model after every step.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/err.h"
#include "common/xmalloc.h"
#include "packets/pkt.h"
#include "queue/queue.h"

static msg_t *shared_msg(void)
{
    return msg_create("a/b", 3, (const uint8_t *)"hi", 2, NULL, 0, 2, 0, 1024, 0);
}

/* Adds a slot holding a new reference to m; returns its packet id or 0. */
static uint16_t add(inflight_t *f, msg_t *m, uint8_t qos)
{
    queue_entry_t e = { .m = msg_retain(m), .qos = qos };
    inflight_slot_t *s = inflight_add(f, &e);
    uint16_t id = 0;
    if (s != NULL) {
        assert_null(e.m);
        assert_ptr_equal(s->e.m, m);
        id = s->packet_id;
    } else {
        msg_release(&e.m);
    }
    return id;
}

/* Slots whose member is not in its home slot: f->displaced must agree
 * (remove_at and next_free_id rely on it). */
static size_t count_displaced(const inflight_t *f)
{
    size_t n = 0;
    for (size_t i = 0; i < f->cap; i++) {
        if (f->slots[i].state != INFLIGHT_FREE)
            n += i != (f->slots[i].packet_id & (f->cap - 1));
    }
    return n;
}

static void inflight_allocates_no_table_until_the_first_add(void **state)
{
    inflight_t f;
    msg_t *m = shared_msg();
    inflight_init(&f, 65535);
    assert_null(f.slots); /* an idle session costs no table */
    assert_int_equal(f.cap, 0);
    assert_null(inflight_get(&f, 1));
    assert_int_equal(inflight_complete(&f, 1, PKT_PUBACK), UVMQ_ENOTFOUND);
    assert_int_equal(inflight_pubrec(&f, 1), UVMQ_ENOTFOUND);
    inflight_clear(&f);
    assert_int_equal(add(&f, m, 1), 1);
    assert_int_equal(f.cap, 16);
    assert_int_equal(inflight_complete(&f, 1, PKT_PUBACK), 0);
    inflight_dispose(&f);
    assert_int_equal(atomic_load(&m->refs), 1);
    msg_release(&m);
    msg_pool_drain();
}

static void inflight_ids_skip_used_ids_and_zero_on_wrap(void **state)
{
    inflight_t f;
    msg_t *m = shared_msg();
    inflight_init(&f, 10);
    assert_int_equal(add(&f, m, 2), 1);
    assert_int_equal(add(&f, m, 1), 2);
    assert_int_equal(inflight_pubrec(&f, 1), 0); /* 1 now WAIT_PUBCOMP */
    f.next_id = 65533;
    assert_int_equal(add(&f, m, 1), 65534);
    assert_int_equal(add(&f, m, 1), 65535);
    assert_int_equal(add(&f, m, 1), 3); /* not 0, not 1 (PUBCOMP), not 2 */
    assert_int_equal(add(&f, m, 1), 4);
    assert_int_equal(inflight_complete(&f, 65534, PKT_PUBACK), 0);
    f.next_id = 65532;
    assert_int_equal(add(&f, m, 1), 65533);
    assert_int_equal(add(&f, m, 1), 65534); /* freed id is reused */
    assert_int_equal(add(&f, m, 1), 5);
    assert_int_equal(f.count, 8);
    inflight_dispose(&f);
    assert_int_equal(atomic_load(&m->refs), 1);
    msg_release(&m);
    msg_pool_drain();
}

static void inflight_full_window_returns_null_and_leaves_entry(void **state)
{
    inflight_t f;
    msg_t *m = shared_msg();
    inflight_init(&f, 3);
    for (int i = 0; i < 3; i++) assert_int_not_equal(add(&f, m, 1), 0);
    assert_int_equal(inflight_has_room(&f), 0);
    queue_entry_t e = { .m = msg_retain(m), .qos = 1 };
    assert_null(inflight_add(&f, &e));
    assert_ptr_equal(e.m, m); /* untouched */
    assert_int_equal(atomic_load(&m->refs), 5);
    assert_int_equal(inflight_complete(&f, 2, PKT_PUBACK), 0);
    assert_int_equal(inflight_has_room(&f), 1);
    inflight_slot_t *s = inflight_add(&f, &e);
    assert_non_null(s);
    assert_int_equal(s->packet_id, 4);
    inflight_set_max(&f, 1); /* existing slots stay */
    assert_int_equal(f.count, 3);
    assert_int_equal(inflight_has_room(&f), 0);
    assert_non_null(inflight_get(&f, 1));
    inflight_dispose(&f);
    assert_int_equal(atomic_load(&m->refs), 1);
    msg_release(&m);
    msg_pool_drain();
}

static void inflight_qos1_completes_only_on_puback(void **state)
{
    inflight_t f;
    msg_t *m = shared_msg();
    inflight_init(&f, 5);
    uint16_t id = add(&f, m, 1);
    inflight_slot_t *s = inflight_get(&f, id);
    assert_non_null(s);
    assert_int_equal(s->state, INFLIGHT_WAIT_PUBACK);
    assert_int_equal(inflight_complete(&f, id, PKT_PUBCOMP), UVMQ_ENOTFOUND);
    assert_int_equal(inflight_complete(&f, id, PKT_PUBREC), UVMQ_ENOTFOUND);
    assert_int_equal(inflight_pubrec(&f, id), UVMQ_ENOTFOUND);
    assert_int_equal(inflight_complete(&f, (uint16_t)(id + 1), PKT_PUBACK), UVMQ_ENOTFOUND);
    assert_int_equal(atomic_load(&m->refs), 2);
    assert_int_equal(inflight_complete(&f, id, PKT_PUBACK), 0);
    assert_int_equal(atomic_load(&m->refs), 1);
    assert_null(inflight_get(&f, id));
    assert_int_equal(inflight_complete(&f, id, PKT_PUBACK), UVMQ_ENOTFOUND);
    assert_int_equal(f.count, 0);
    inflight_dispose(&f);
    msg_release(&m);
    msg_pool_drain();
}

static void inflight_qos2_goes_pubrec_then_pubcomp(void **state)
{
    inflight_t f;
    msg_t *m = shared_msg();
    inflight_init(&f, 5);
    queue_entry_t e = { .m = msg_retain(m), .qos = 2, .n_ids = 2 };
    e.ids = xmalloc(2 * sizeof(*e.ids));
    e.ids[0] = 7;
    e.ids[1] = 9;
    inflight_slot_t *s = inflight_add(&f, &e);
    assert_non_null(s);
    uint16_t id = s->packet_id;
    assert_int_equal(s->state, INFLIGHT_WAIT_PUBREC);
    assert_int_equal(inflight_complete(&f, id, PKT_PUBACK), UVMQ_ENOTFOUND);
    assert_int_equal(inflight_complete(&f, id, PKT_PUBCOMP), UVMQ_ENOTFOUND);
    assert_int_equal(inflight_pubrec(&f, id), 0);
    s = inflight_get(&f, id);
    assert_int_equal(s->state, INFLIGHT_WAIT_PUBCOMP);
    assert_null(s->e.m);
    assert_null(s->e.ids);
    assert_int_equal(s->e.qos, 2);
    assert_int_equal(atomic_load(&m->refs), 1);
    assert_int_equal(inflight_pubrec(&f, id), 0); /* repeated PUBREC */
    assert_int_equal(inflight_complete(&f, id, PKT_PUBACK), UVMQ_ENOTFOUND);
    assert_int_equal(inflight_complete(&f, id, PKT_PUBCOMP), 0);
    assert_null(inflight_get(&f, id));
    assert_int_equal(inflight_pubrec(&f, id), UVMQ_ENOTFOUND);
    inflight_dispose(&f);
    msg_release(&m);
    msg_pool_drain();
}

typedef struct {
    uint16_t ids[64];
    int n;
} visit_t;

static void on_visit(inflight_slot_t *s, void *ctx)
{
    visit_t *v = ctx;
    v->ids[v->n++] = s->packet_id;
}

/* Completes packet id's flow, whichever QoS it is. */
static void finish(inflight_t *f, uint16_t id)
{
    inflight_slot_t *s = inflight_get(f, id);
    assert_non_null(s);
    if (s->state == INFLIGHT_WAIT_PUBACK) {
        assert_int_equal(inflight_complete(f, id, PKT_PUBACK), 0);
    } else {
        assert_int_equal(inflight_pubrec(f, id), 0);
        assert_int_equal(inflight_complete(f, id, PKT_PUBCOMP), 0);
    }
    assert_null(inflight_get(f, id));
}

static void inflight_foreach_visits_in_send_order_after_deletions(void **state)
{
    inflight_t f;
    visit_t v = { .n = 0 };
    msg_t *m = shared_msg();
    inflight_init(&f, 40);
    inflight_foreach(&f, on_visit, &v);
    assert_int_equal(v.n, 0);
    f.next_id = 65525; /* ids wrap, so table order is not send order */
    for (int i = 0; i < 30; i++) add(&f, m, (uint8_t)(1 + i % 2));
    /* sent: 65526..65535 (10), then 1..20; free about a third of them
     * and move a few QoS 2 slots on to WAIT_PUBCOMP (they stay). */
    for (uint32_t id = 65526; id <= 65535 + 20; id++) {
        uint16_t pid = (uint16_t)(id > 65535 ? id - 65535 : id);
        if (id % 3 == 0) finish(&f, pid);
        else if (id % 5 == 0 && inflight_get(&f, pid)->state == INFLIGHT_WAIT_PUBREC)
            assert_int_equal(inflight_pubrec(&f, pid), 0);
    }
    assert_int_equal(f.count, 20);
    uint16_t extra = add(&f, m, 1); /* 21, newest */
    assert_int_equal(extra, 21);

    inflight_foreach(&f, on_visit, &v);
    assert_int_equal(v.n, (int)f.count);
    int k = 0;
    for (uint32_t id = 65526; id <= 65535; id++) {
        if (inflight_get(&f, (uint16_t)id) != NULL) assert_int_equal(v.ids[k++], id);
    }
    for (uint16_t id = 1; id <= 21; id++) {
        if (inflight_get(&f, id) != NULL) assert_int_equal(v.ids[k++], id);
    }
    assert_int_equal(k, v.n);
    assert_int_equal(v.ids[v.n - 1], 21);
    inflight_dispose(&f);
    assert_int_equal(atomic_load(&m->refs), 1);
    msg_release(&m);
    msg_pool_drain();
}

static void inflight_restore_keeps_ids_states_and_order_past_the_window(void **state)
{
    inflight_t f;
    visit_t v = { .n = 0 };
    msg_t *m = shared_msg();
    static const uint16_t ids[] = {900, 7, 65535, 12};
    static const uint8_t st[] = {INFLIGHT_WAIT_PUBACK, INFLIGHT_WAIT_PUBREC,
                                 INFLIGHT_WAIT_PUBCOMP, INFLIGHT_WAIT_PUBACK};
    inflight_init(&f, 2); /* smaller than what was stored */
    for (int i = 0; i < 4; i++) {
        queue_entry_t e = { .m = st[i] == INFLIGHT_WAIT_PUBCOMP ? NULL : msg_retain(m),
                            .qos = st[i] == INFLIGHT_WAIT_PUBACK ? 1 : 2, .seq = 100u + i };
        assert_int_equal(inflight_restore(&f, ids[i], st[i], &e), 0);
        assert_null(e.m);
    }
    assert_int_equal(f.count, 4);
    assert_int_equal(inflight_get(&f, 7)->state, INFLIGHT_WAIT_PUBREC);
    assert_int_equal(inflight_get(&f, 65535)->state, INFLIGHT_WAIT_PUBCOMP);
    assert_true(inflight_get(&f, 12)->e.seq == 103);
    assert_false(inflight_has_room(&f));
    inflight_foreach(&f, on_visit, &v); /* restore order is send order */
    assert_int_equal(v.n, 4);
    for (int i = 0; i < 4; i++) assert_int_equal(v.ids[i], ids[i]);
    /* refused: id in use, id 0, a state without its message */
    queue_entry_t dup = { .m = msg_retain(m), .qos = 1 };
    assert_int_equal(inflight_restore(&f, 7, INFLIGHT_WAIT_PUBACK, &dup), UVMQ_EINVAL);
    assert_int_equal(inflight_restore(&f, 0, INFLIGHT_WAIT_PUBACK, &dup), UVMQ_EINVAL);
    assert_ptr_equal(dup.m, m);
    queue_entry_dispose(&dup);
    queue_entry_t none = { .qos = 1 };
    assert_int_equal(inflight_restore(&f, 5, INFLIGHT_WAIT_PUBACK, &none), UVMQ_EINVAL);
    /* the PUBREC stage goes on as usual, and new ids skip the restored */
    assert_int_equal(inflight_pubrec(&f, 7), 0);
    assert_int_equal(inflight_complete(&f, 7, PKT_PUBCOMP), 0);
    assert_int_equal(inflight_complete(&f, 900, PKT_PUBACK), 0);
    assert_int_equal(inflight_complete(&f, 65535, PKT_PUBCOMP), 0);
    assert_int_equal(f.count, 1);
    assert_int_equal(add(&f, m, 1), 1); /* after 65535 comes 1 */
    inflight_dispose(&f);
    assert_int_equal(atomic_load(&m->refs), 1);
    msg_release(&m);
    msg_pool_drain();
}

/* Restored ids that share a home slot (1, 17, 33 in a 16-slot table) are
 * displaced; removals shift them home and new ids avoid taken homes, so
 * the table returns to the no-displacement steady state. */
static void inflight_displaced_members_shift_home(void **state)
{
    inflight_t f;
    msg_t *m = shared_msg();
    static const uint16_t ids[] = {1, 17, 33};
    inflight_init(&f, 8);
    for (int i = 0; i < 3; i++) {
        queue_entry_t e = { .m = msg_retain(m), .qos = 1 };
        assert_int_equal(inflight_restore(&f, ids[i], INFLIGHT_WAIT_PUBACK, &e), 0);
    }
    assert_int_equal(f.cap, 16);
    assert_int_equal(f.displaced, 2);
    assert_int_equal(f.displaced, count_displaced(&f));
    assert_int_equal(add(&f, m, 1), 34); /* after the highest restored */
    assert_int_equal(f.displaced, count_displaced(&f));
    assert_int_equal(inflight_complete(&f, 1, PKT_PUBACK), 0);
    assert_int_equal(f.displaced, count_displaced(&f));
    assert_non_null(inflight_get(&f, 17));
    assert_non_null(inflight_get(&f, 33));
    assert_int_equal(inflight_complete(&f, 17, PKT_PUBACK), 0);
    assert_int_equal(f.displaced, 0);
    assert_non_null(inflight_get(&f, 33));
    /* 33 and 34 are home (slots 1, 2) now: ids 49 and 50 are skipped */
    f.next_id = 48;
    assert_int_equal(add(&f, m, 1), 51);
    assert_int_equal(f.displaced, 0);
    assert_int_equal(inflight_complete(&f, 33, PKT_PUBACK), 0);
    assert_int_equal(inflight_complete(&f, 34, PKT_PUBACK), 0);
    assert_int_equal(inflight_complete(&f, 51, PKT_PUBACK), 0);
    assert_int_equal(f.count, 0);
    inflight_dispose(&f);
    assert_int_equal(atomic_load(&m->refs), 1);
    msg_release(&m);
    msg_pool_drain();
}

static void inflight_inbound_qos2_set_dedups_and_limits(void **state)
{
    inflight_t f;
    inflight_init(&f, 10);
    assert_int_equal(inflight_in_add(&f, 5, 3), 1);
    assert_int_equal(inflight_in_add(&f, 5, 3), 0);
    assert_int_equal(inflight_in_add(&f, 9, 3), 1);
    assert_int_equal(inflight_in_add(&f, 2, 3), 1);
    assert_int_equal(inflight_in_add(&f, 7, 3), UVMQ_ELIMIT);
    assert_int_equal(inflight_in_add(&f, 2, 3), 0); /* duplicate at the limit */
    assert_int_equal(f.in_count, 3);
    assert_int_equal(inflight_in_remove(&f, 5), 0);
    assert_int_equal(inflight_in_remove(&f, 5), UVMQ_ENOTFOUND);
    assert_int_equal(inflight_in_add(&f, 7, 3), 1);
    assert_int_equal(f.in_ids[0], 2);
    assert_int_equal(f.in_ids[1], 7);
    assert_int_equal(f.in_ids[2], 9);
    for (uint16_t id = 100; id < 140; id++) assert_int_equal(inflight_in_add(&f, id, 1000), 1);
    assert_int_equal(f.in_count, 43);
    inflight_clear(&f);
    assert_int_equal(f.in_count, 0);
    assert_int_equal(inflight_in_remove(&f, 2), UVMQ_ENOTFOUND);
    assert_int_equal(inflight_in_add(&f, 2, 1), 1);
    inflight_dispose(&f);
}

/* ---- randomized run against a model ---- */

typedef struct {
    uint8_t state[65536]; /* expected enum inflight_state per id */
    uint16_t live[256];
    int n_live;
    int n_pinned; /* live[0..n_pinned) are never acked */
    int with_msg; /* slots expected to hold a message reference */
    uint32_t rng;
} model_t;

static uint32_t next_rand(model_t *md)
{
    md->rng = md->rng * 1103515245u + 12345u;
    return md->rng >> 8;
}

static void check_consistent(inflight_t *f, model_t *md, msg_t *m)
{
    size_t used = 0;
    assert_int_equal(f->count, (size_t)md->n_live);
    assert_int_equal(f->displaced, count_displaced(f));
    for (size_t i = 0; i < f->cap; i++) {
        if (f->slots[i].state == INFLIGHT_FREE) continue;
        used++;
        assert_int_equal(f->slots[i].state, md->state[f->slots[i].packet_id]);
    }
    assert_int_equal(used, f->count);
    for (int i = 0; i < md->n_live; i++) {
        inflight_slot_t *s = inflight_get(f, md->live[i]);
        assert_non_null(s);
        assert_int_equal(s->state, md->state[md->live[i]]);
    }
    assert_int_equal(atomic_load(&m->refs), 1 + (unsigned)md->with_msg);
}

/* Adds one slot, or checks that a full window refuses; returns 1 when a
 * slot was added. */
static int model_add(inflight_t *f, model_t *md, msg_t *m)
{
    uint8_t qos = (uint8_t)(1 + next_rand(md) % 2);
    uint16_t id = add(f, m, qos);
    if (md->n_live == (int)f->max) {
        assert_int_equal(id, 0);
        return 0;
    }
    assert_int_not_equal(id, 0);
    assert_int_equal(md->state[id], INFLIGHT_FREE);
    md->state[id] = qos == 1 ? INFLIGHT_WAIT_PUBACK : INFLIGHT_WAIT_PUBREC;
    md->live[md->n_live++] = id;
    md->with_msg++;
    return 1;
}

static void model_ack(inflight_t *f, model_t *md, int k)
{
    uint16_t id = md->live[k];
    uint8_t st = md->state[id];
    if (st == INFLIGHT_WAIT_PUBREC) {
        assert_int_equal(inflight_complete(f, id, PKT_PUBCOMP), UVMQ_ENOTFOUND);
        assert_int_equal(inflight_pubrec(f, id), 0);
        md->state[id] = INFLIGHT_WAIT_PUBCOMP;
        md->with_msg--;
        return;
    }
    uint8_t good = st == INFLIGHT_WAIT_PUBACK ? PKT_PUBACK : PKT_PUBCOMP;
    uint8_t bad = st == INFLIGHT_WAIT_PUBACK ? PKT_PUBCOMP : PKT_PUBACK;
    assert_int_equal(inflight_complete(f, id, bad), UVMQ_ENOTFOUND);
    assert_int_equal(inflight_complete(f, id, good), 0);
    if (st == INFLIGHT_WAIT_PUBACK) md->with_msg--;
    md->state[id] = INFLIGHT_FREE;
    md->live[k] = md->live[--md->n_live];
}

static void inflight_stays_consistent_over_many_cycles(void **state)
{
    static model_t md;
    inflight_t f;
    msg_t *m = shared_msg();
    int adds = 0;
    memset(&md, 0, sizeof(md));
    md.rng = 12345;
    inflight_init(&f, 200);
    /* Ids 1..5 stay in use throughout: the allocator must skip them after
     * the wrap. */
    for (int i = 0; i < 5; i++) model_add(&f, &md, m);
    md.n_pinned = 5;
    /* 200,000 steps, 41% adds: a QoS 2 slot takes two acks, so adds and
     * frees roughly balance and over 65,535 adds succeed: ids wrap at
     * least once while some slots stay in use for a long time. */
    for (int step = 0; step < 200000; step++) {
        uint32_t r = next_rand(&md) % 100;
        if (md.n_live == md.n_pinned || r < 41) {
            adds += model_add(&f, &md, m);
        } else {
            /* Entries in the first quarter of live[] are acked a quarter
             * as often, so some ids stay in use while the others wrap. */
            int n = md.n_live - md.n_pinned;
            int k = md.n_pinned + (int)(next_rand(&md) % (uint32_t)n);
            if (k < md.n_pinned + n / 4 && next_rand(&md) % 4 != 0) k = md.n_live - 1;
            model_ack(&f, &md, k);
        }
        if (step % 7 == 0 || step > 199000) check_consistent(&f, &md, m);
    }
    print_message("# %d adds, %zu live at the end\n", adds, f.count);
    assert_true(adds > 65535);
    assert_int_equal(f.next_seq, (uint64_t)adds + 5);
    check_consistent(&f, &md, m);
    inflight_clear(&f);
    assert_int_equal(f.count, 0);
    assert_int_equal(atomic_load(&m->refs), 1);
    assert_int_not_equal(add(&f, m, 1), 0); /* usable after clear */
    inflight_dispose(&f);
    assert_int_equal(atomic_load(&m->refs), 1);
    msg_release(&m);
    msg_pool_drain();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(inflight_allocates_no_table_until_the_first_add),
        cmocka_unit_test(inflight_ids_skip_used_ids_and_zero_on_wrap),
        cmocka_unit_test(inflight_full_window_returns_null_and_leaves_entry),
        cmocka_unit_test(inflight_qos1_completes_only_on_puback),
        cmocka_unit_test(inflight_qos2_goes_pubrec_then_pubcomp),
        cmocka_unit_test(inflight_foreach_visits_in_send_order_after_deletions),
        cmocka_unit_test(inflight_restore_keeps_ids_states_and_order_past_the_window),
        cmocka_unit_test(inflight_displaced_members_shift_home),
        cmocka_unit_test(inflight_inbound_qos2_set_dedups_and_limits),
        cmocka_unit_test(inflight_stays_consistent_over_many_cycles),
    };
    return cmocka_run_group_tests_name("queue/inflight", tests, NULL, NULL);
}

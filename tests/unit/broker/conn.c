/*
 * Unit tests for the out-batch of broker/conn.c: how control packets and
 * deliveries are appended, merged, counted against max_out_bytes and the
 * client's Maximum Packet Size, and released; the pooled output object an
 * idle connection does not hold; the compact peer address. No socket is opened: the
 * connection is built by hand and never flushed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "broker/conn.c"
#include "tests/unit/broker/fixture.h"

typedef struct fixture_s {
    broker_config_t cfg;
    broker_t b;
    loop_t l;
    conn_t c;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    fx_broker(&f->cfg, &f->b, &f->l);
    fx_conn(&f->c, &f->l, PKT_V311);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (f->c.out != NULL) conn__out_free(f->c.out);
    fx_loop_dispose(&f->l);
    broker_config_dispose(&f->cfg);
    free(f);
    msg_pool_drain();
    return 0;
}

static msg_t *make_msg(size_t payload_len)
{
    static uint8_t payload[4096];
    for (size_t i = 0; i < sizeof payload; i++) payload[i] = (uint8_t)('a' + i % 26);
    return msg_create("a/b", 3, payload, payload_len, NULL, 0, 0, 0, 1u << 20, sizeof(msg_state_t));
}

static void control_packets_merge_into_one_entry(void **state)
{
    fixture_t *f = *state;
    pkt_t ping = {.type = PKT_PINGRESP};
    assert_int_equal(conn__send_pkt(&f->c, &ping), 0);
    assert_int_equal(conn__send_pkt(&f->c, &ping), 0);
    out_batch_t *b = &f->c.out->batch[f->c.pend];
    assert_int_equal(b->n, 1);
    assert_int_equal(b->v[0].len, 4);
    assert_memory_equal(b->scratch, "\xd0\x00\xd0\x00", 4);
    assert_int_equal(f->c.unsent, 4);
    assert_int_equal(f->c.dirty, 1);
    assert_ptr_equal(f->l.dirty, &f->c);
}

static void small_qos0_deliveries_are_copied_into_one_merged_entry(void **state)
{
    fixture_t *f = *state;
    msg_t *m = make_msg(10);
    size_t hlen = 0;
    const uint8_t *head = msg_head(m, 0, 0, &hlen);
    assert_int_equal(hlen, 7); /* 0x30 0x0f 0x00 0x03 a/b */
    assert_int_equal(conn__send_publish(&f->c, m, 0, 0, 0, 0, NULL, 0), 0);
    assert_int_equal(conn__send_publish(&f->c, m, 0, 0, 0, 0, NULL, 0), 0);
    out_batch_t *b = &f->c.out->batch[f->c.pend];
    assert_int_equal(b->n, 1);
    assert_null(b->v[0].base);
    assert_null(b->v[0].ref);
    assert_int_equal(b->v[0].len, 34);
    assert_memory_equal(b->scratch, head, 7);
    assert_memory_equal(b->scratch + 7, "abcdefghij", 10);
    assert_memory_equal(b->scratch + 17, head, 7);
    assert_memory_equal(b->scratch + 24, "abcdefghij", 10);
    assert_int_equal(b->bytes, 34);
    assert_int_equal(f->c.unsent, 34);
    assert_int_equal(atomic_load(&m->refs), 1); /* no reference held */
    assert_int_equal(f->l.msgs_out, 2);
    msg_release(&m);
}

static void copy_threshold_is_256_bytes_of_head_and_payload(void **state)
{
    fixture_t *f = *state;
    msg_t *at = make_msg(248);    /* 1 + 2 (remaining 253) + 5 + 248 = 256 */
    msg_t *over = make_msg(249);  /* 257 */
    assert_int_equal(conn__send_publish(&f->c, at, 0, 0, 0, 0, NULL, 0), 0);
    out_batch_t *b = &f->c.out->batch[f->c.pend];
    assert_int_equal(b->n, 1);
    assert_int_equal(b->v[0].len, 256);
    assert_int_equal(atomic_load(&at->refs), 1);
    assert_int_equal(conn__send_publish(&f->c, over, 0, 0, 0, 0, NULL, 0), 0);
    assert_int_equal(b->n, 3);
    assert_int_equal(b->v[1].len, 8);
    assert_ptr_equal(b->v[2].base, over->payload);
    assert_int_equal(atomic_load(&over->refs), 2);
    assert_int_equal(f->c.unsent, 256 + 257);
    conn__batch_reset(b);
    assert_int_equal(atomic_load(&over->refs), 1);
    msg_release(&at);
    msg_release(&over);
}

static void large_qos0_delivery_shares_the_head_and_holds_one_reference(void **state)
{
    fixture_t *f = *state;
    msg_t *m = make_msg(300);
    assert_int_equal(conn__send_publish(&f->c, m, 0, 0, 0, 0, NULL, 0), 0);
    out_batch_t *b = &f->c.out->batch[f->c.pend];
    size_t hlen = 0;
    const uint8_t *head = msg_head(m, 0, 0, &hlen);
    assert_int_equal(b->n, 2);
    assert_ptr_equal(b->v[0].base, head);            /* shared, not copied */
    assert_ptr_equal(b->v[1].base, m->payload);
    assert_int_equal(b->v[1].len, 300);
    assert_int_equal(f->c.unsent, hlen + 300);
    assert_int_equal(atomic_load(&m->refs), 2);
    conn__batch_reset(b);                                   /* as on write done */
    assert_int_equal(atomic_load(&m->refs), 1);
    msg_release(&m);
}

static void qos1_delivery_encodes_its_own_head_with_packet_id(void **state)
{
    fixture_t *f = *state;
    msg_t *m = make_msg(2);
    assert_int_equal(conn__send_publish(&f->c, m, 1, 0, 1, 0x1234, NULL, 0), 0);
    out_batch_t *b = &f->c.out->batch[f->c.pend];
    assert_int_equal(b->n, 1); /* small: payload copied right after the head */
    assert_null(b->v[0].base);
    assert_null(b->v[0].ref);
    assert_int_equal(b->v[0].len, 11);
    /* 0x3A = PUBLISH, DUP, QoS 1; remaining 2+3+2+2 = 9 */
    assert_memory_equal(b->scratch, "\x3a\x09\x00\x03" "a/b" "\x12\x34" "ab", 11);
    assert_int_equal(f->c.unsent, 11);
    assert_int_equal(atomic_load(&m->refs), 1);
    msg_release(&m);
}

static void large_qos1_delivery_borrows_the_payload_after_its_head(void **state)
{
    fixture_t *f = *state;
    msg_t *m = make_msg(300);
    assert_int_equal(conn__send_publish(&f->c, m, 1, 0, 0, 5, NULL, 0), 0);
    out_batch_t *b = &f->c.out->batch[f->c.pend];
    assert_int_equal(b->n, 2);
    assert_null(b->v[0].base);
    assert_int_equal(b->v[0].len, 10); /* 0x32, 2-byte remaining 307, 7 */
    assert_memory_equal(b->scratch, "\x32\xb3\x02\x00\x03" "a/b" "\x00\x05", 10);
    assert_ptr_equal(b->v[1].base, m->payload);
    assert_int_equal(f->c.unsent, 310);
    assert_int_equal(atomic_load(&m->refs), 2);
    conn__batch_reset(b);
    assert_int_equal(atomic_load(&m->refs), 1);
    msg_release(&m);
}

static void qos0_past_max_out_bytes_is_dropped_and_counted(void **state)
{
    fixture_t *f = *state;
    msg_t *m = make_msg(1000);
    f->cfg.max_out_bytes = 2500;
    assert_int_equal(conn__send_publish(&f->c, m, 0, 0, 0, 0, NULL, 0), 0);
    assert_int_equal(conn__send_publish(&f->c, m, 0, 0, 0, 0, NULL, 0), 0);
    assert_int_equal(conn__send_publish(&f->c, m, 0, 0, 0, 0, NULL, 0), UVMQ_ELIMIT);
    assert_true(f->c.warned_drop);
    assert_int_equal(atomic_load(&f->b.cnt.dropped_qos0), 1);
    assert_int_equal(atomic_load(&m->refs), 3);
    /* QoS 1 is never dropped for backpressure (the window bounds it) */
    assert_int_equal(conn__send_publish(&f->c, m, 1, 0, 0, 7, NULL, 0), 0);
    msg_release(&m);
}

/* A fan-out's shared packets (conn__send_shared): consecutive ones of a
 * chunk merge into one entry holding one chunk reference, anything in
 * between starts a new one; max_out applies once bytes are unsent; the
 * caller counts msgs_out; c->batch is the pending batch. */
static void shared_packets_merge_within_their_chunk(void **state)
{
    fixture_t *f = *state;
    shared_pkt_t a = {.len = 40}, b = {.len = 40};
    pkt_t ping = {.type = PKT_PINGRESP};
    a.p = chunk__reserve(&f->l, MSG_VARIANT(0, 0), 40, &a.ch);
    chunk__commit(a.ch, 40);
    b.p = chunk__reserve(&f->l, MSG_VARIANT(0, 0), 40, &b.ch);
    chunk__commit(b.ch, 40);
    assert_ptr_equal(b.p, a.p + 40);
    assert_int_equal(conn__send_shared(&f->c, &a, 100), 0);
    assert_ptr_equal(f->c.batch, &f->c.out->batch[f->c.pend]);
    assert_int_equal(conn__send_shared(&f->c, &b, 100), 0);
    out_batch_t *ob = f->c.batch;
    assert_int_equal(ob->n, 1);
    assert_int_equal(ob->v[0].len, 80);
    assert_int_equal(ob->bytes, 80);
    assert_int_equal(f->c.unsent, 80);
    assert_int_equal(a.ch->refs, 2); /* the loop's and the entry's */
    assert_int_equal(f->l.msgs_out, 0);
    assert_int_equal(conn__send_shared(&f->c, &a, 100), UVMQ_ELIMIT); /* 120 */
    assert_int_equal(atomic_load(&f->b.cnt.dropped_qos0), 1);
    assert_int_equal(conn__send_pkt(&f->c, &ping), 0);
    assert_int_equal(conn__send_shared(&f->c, &b, 1000), 0);
    assert_int_equal(ob->n, 3);
    assert_int_equal(a.ch->refs, 3);
    conn__out_free(f->c.out);
    f->c.out = NULL;
    f->c.batch = NULL;
    assert_int_equal(a.ch->refs, 1);
}

static void publish_over_client_maximum_packet_size_is_dropped(void **state)
{
    fixture_t *f = *state;
    msg_t *m = make_msg(100);
    f->c.peer_max_packet = 100;
    assert_int_equal(conn__send_publish(&f->c, m, 0, 0, 0, 0, NULL, 0), UVMQ_ELIMIT);
    assert_int_equal(conn__send_publish(&f->c, m, 1, 0, 0, 3, NULL, 0), UVMQ_ELIMIT);
    assert_int_equal(atomic_load(&f->b.cnt.dropped_size), 2);
    assert_int_equal(f->c.unsent, 0);
    assert_int_equal(atomic_load(&m->refs), 1);
    msg_release(&m);
}

static void v5_subscription_ids_get_a_per_subscriber_head(void **state)
{
    fixture_t *f = *state;
    msg_t *m = make_msg(1);
    uint32_t ids[2] = {1, 200};
    f->c.version = PKT_V5;
    assert_int_equal(conn__send_publish(&f->c, m, 0, 0, 0, 0, ids, 2), 0);
    out_batch_t *b = &f->c.out->batch[f->c.pend];
    /* 0x30, rem 2+3 + props(1 + 2 + 3) + 1 payload = 12;
     * props: 0B 01, 0B C8 01 */
    assert_int_equal(b->n, 1);
    assert_int_equal(b->v[0].len, 2 + 5 + 6 + 1);
    assert_memory_equal(b->scratch, "\x30\x0c\x00\x03" "a/b" "\x05\x0b\x01\x0b\xc8\x01" "a", 14);
    msg_release(&m);
}

static void batch_keeps_offsets_valid_across_scratch_growth(void **state)
{
    fixture_t *f = *state;
    msg_t *m = make_msg(300); /* zero-copy: a head in scratch, then a ref */
    for (uint16_t i = 1; i <= 200; i++) /* scratch reallocs several times */
        conn__send_publish(&f->c, m, 1, 0, 0, i, NULL, 0);
    out_batch_t *b = &f->c.out->batch[f->c.pend];
    assert_int_equal(b->n, 400);
    assert_int_equal(b->v[398].off, 199 * 10);
    assert_memory_equal(b->scratch + b->v[398].off, "\x32\xb3\x02\x00\x03" "a/b" "\x00\xc8", 10);
    assert_int_equal(atomic_load(&m->refs), 201);
    conn__batch_reset(b);
    assert_int_equal(atomic_load(&m->refs), 1);
    msg_release(&m);
}

static void small_copies_stay_intact_across_scratch_growth(void **state)
{
    fixture_t *f = *state;
    msg_t *m = make_msg(3);
    for (uint16_t i = 1; i <= 200; i++) /* 12 bytes each: several reallocs */
        conn__send_publish(&f->c, m, 1, 0, 0, i, NULL, 0);
    out_batch_t *b = &f->c.out->batch[f->c.pend];
    assert_int_equal(b->n, 1);
    assert_int_equal(b->v[0].len, 200 * 12);
    assert_int_equal(b->bytes, 200 * 12);
    assert_memory_equal(b->scratch + 199 * 12, "\x32\x0a\x00\x03" "a/b" "\x00\xc8" "abc", 12);
    assert_int_equal(atomic_load(&m->refs), 1);
    msg_release(&m);
}

static void qos0_larger_than_max_out_bytes_goes_when_nothing_is_unsent(void **state)
{
    fixture_t *f = *state;
    msg_t *m = make_msg(1000);
    f->cfg.max_out_bytes = 500;
    assert_int_equal(conn__send_publish(&f->c, m, 0, 0, 0, 0, NULL, 0), 0);
    assert_int_equal(conn__send_publish(&f->c, m, 0, 0, 0, 0, NULL, 0), UVMQ_ELIMIT);
    assert_int_equal(atomic_load(&f->b.cnt.dropped_qos0), 1);
    msg_release(&m);
}

static void idle_connection_gives_its_output_object_back(void **state)
{
    fixture_t *f = *state;
    pkt_t ping = {.type = PKT_PINGRESP};
    assert_null(f->c.out); /* a new connection holds none */
    assert_int_equal(conn__send_pkt(&f->c, &ping), 0);
    conn_out_t *o = f->c.out;
    assert_non_null(o);
    f->c.unsent = 0;
    out_put(&f->c); /* as a write that left nothing pending does */
    assert_null(f->c.out);
    assert_ptr_equal(f->l.free_outs, o);
    assert_int_equal(f->l.n_free_outs, 1);
    assert_int_equal(o->batch[0].n, 0);
    assert_int_equal(conn__send_pkt(&f->c, &ping), 0);
    assert_ptr_equal(f->c.out, o); /* reused, arrays and all */
    assert_int_equal(f->l.n_free_outs, 0);
}

static void sweep_trims_output_objects_unused_for_a_second(void **state)
{
    fixture_t *f = *state;
    conn_t c2 = f->c;
    pkt_t ping = {.type = PKT_PINGRESP};
    c2.out = NULL;
    c2.batch = NULL;
    conn__send_pkt(&f->c, &ping);
    conn__send_pkt(&c2, &ping);
    out_put(&f->c);
    out_put(&c2);
    assert_int_equal(f->l.n_free_outs, 2);
    conn__trim_outs(&f->l); /* low-water mark 0: both were in use */
    assert_int_equal(f->l.n_free_outs, 2);
    conn__send_pkt(&f->c, &ping); /* takes one: low-water 1 */
    conn__trim_outs(&f->l);
    assert_int_equal(f->l.n_free_outs, 0); /* the unused one went */
    conn__trim_outs(&f->l);
    assert_int_equal(f->l.n_free_outs, 0);
}

static void peer_address_is_kept_compact_and_formatted_for_logs(void **state)
{
    fixture_t *f = *state;
    static const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
    assert_string_equal(conn__peer(&f->c), "?");
    memcpy(f->c.peer_addr, "\x7f\x00\x00\x01", 4);
    f->c.peer_port = 1883;
    f->c.peer_family = 4;
    assert_string_equal(conn__peer(&f->c), "127.0.0.1:1883");
    memcpy(f->c.peer_addr, v6, 16);
    f->c.peer_family = 6;
    assert_string_equal(conn__peer(&f->c), "[2001:db8::1]:1883");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(control_packets_merge_into_one_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(small_qos0_deliveries_are_copied_into_one_merged_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(copy_threshold_is_256_bytes_of_head_and_payload, setup, teardown),
        cmocka_unit_test_setup_teardown(large_qos0_delivery_shares_the_head_and_holds_one_reference, setup, teardown),
        cmocka_unit_test_setup_teardown(qos1_delivery_encodes_its_own_head_with_packet_id, setup, teardown),
        cmocka_unit_test_setup_teardown(large_qos1_delivery_borrows_the_payload_after_its_head, setup, teardown),
        cmocka_unit_test_setup_teardown(qos0_past_max_out_bytes_is_dropped_and_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(shared_packets_merge_within_their_chunk, setup, teardown),
        cmocka_unit_test_setup_teardown(publish_over_client_maximum_packet_size_is_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(v5_subscription_ids_get_a_per_subscriber_head, setup, teardown),
        cmocka_unit_test_setup_teardown(batch_keeps_offsets_valid_across_scratch_growth, setup, teardown),
        cmocka_unit_test_setup_teardown(small_copies_stay_intact_across_scratch_growth, setup, teardown),
        cmocka_unit_test_setup_teardown(qos0_larger_than_max_out_bytes_goes_when_nothing_is_unsent, setup, teardown),
        cmocka_unit_test_setup_teardown(idle_connection_gives_its_output_object_back, setup, teardown),
        cmocka_unit_test_setup_teardown(sweep_trims_output_objects_unused_for_a_second, setup, teardown),
        cmocka_unit_test_setup_teardown(peer_address_is_kept_compact_and_formatted_for_logs, setup, teardown),
    };
    return cmocka_run_group_tests_name("broker/conn", tests, NULL, NULL);
}

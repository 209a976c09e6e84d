/*
 * Unit tests for packets/: a table of malformed and non-conforming packets,
 * each written as bytes with the protocol version it is decoded for and
 * the exact UVMQ_EPKT_* code expected. One loop runs every row through
 * pkt_frame (then pkt_decode) and names each row that fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "packets/pkt.h"

typedef struct row_s {
    const char *name;
    uint8_t version;  /* connection's version (ignored for CONNECT) */
    uint32_t max;     /* pkt_frame max_size; 0 = 1 MiB */
    int err;          /* expected result */
    size_t len;
    uint8_t b[64];
} row_t;

#define ROW(name, ver, err, ...)                                             \
    {name, ver, 0, err, sizeof((uint8_t[]){__VA_ARGS__}), {__VA_ARGS__}}
#define ROWMAX(name, ver, max, err, ...)                                     \
    {name, ver, max, err, sizeof((uint8_t[]){__VA_ARGS__}), {__VA_ARGS__}}

/* CONNECT prefixes: protocol name and level. */
#define MQTT4 0, 4, 'M', 'Q', 'T', 'T', 4
#define MQTT5 0, 4, 'M', 'Q', 'T', 'T', 5
#define ISDP3 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3
#define A24 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', \
            'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a'

static const row_t rows[] = {
    /* fixed header and remaining length */
    ROW("remlen_5_bytes", 4, UVMQ_EPKT_REMLEN, 0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F),
    ROW("remlen_not_minimal", 4, UVMQ_EPKT_REMLEN, 0x30, 0x80, 0x00),
    ROW("type_0", 4, UVMQ_EPKT_TYPE, 0x00, 0x00),
    ROWMAX("too_large_from_header", 4, 10, UVMQ_EPKT_TOO_LARGE, 0x30, 0x0A),
    ROW("pubrel_flags_0", 4, UVMQ_EPKT_FLAGS, 0x60, 0x02, 0, 1),
    ROW("subscribe_flags_0", 4, UVMQ_EPKT_FLAGS, 0x80, 0x06, 0, 1, 0, 1, 'a', 0),
    ROW("unsubscribe_flags_0", 4, UVMQ_EPKT_FLAGS, 0xA0, 0x05, 0, 1, 0, 1, 'a'),
    ROW("puback_flags_1", 4, UVMQ_EPKT_FLAGS, 0x41, 0x02, 0, 1),
    ROW("pingreq_flags_1", 5, UVMQ_EPKT_FLAGS, 0xC1, 0x00),
    ROW("connect_flags_2", 4, UVMQ_EPKT_FLAGS, 0x12, 0x0C, MQTT4, 0x02, 0, 60, 0, 0),
    ROW("publish_dup_with_qos0", 4, UVMQ_EPKT_FLAGS, 0x38, 0x05, 0, 1, 'a', 'h', 'i'),
    ROW("publish_qos3", 4, UVMQ_EPKT_QOS, 0x36, 0x07, 0, 1, 'a', 0, 1, 'h', 'i'),
    ROW("connack_reserved_ack_flags", 4, UVMQ_EPKT_FLAGS, 0x20, 0x02, 0x02, 0x00),
    ROW("auth_in_v311", 4, UVMQ_EPKT_VERSION, 0xF0, 0x00),
    /* running short, left over */
    ROW("publish_topic_past_end", 4, UVMQ_EPKT_SHORT, 0x30, 0x02, 0, 5),
    ROW("puback_one_byte", 4, UVMQ_EPKT_SHORT, 0x40, 0x01, 0),
    ROW("buffer_shorter_than_remlen", 4, UVMQ_EPKT_SHORT, 0x30, 0x05, 0, 1),
    ROW("connect_username_missing", 4, UVMQ_EPKT_SHORT, 0x10, 0x0C, MQTT4, 0x82, 0, 60, 0, 0),
    ROW("property_length_past_end", 5, UVMQ_EPKT_SHORT, 0x30, 0x05, 0, 1, 'a', 0x05, 0x01),
    ROW("v5_connack_without_props", 5, UVMQ_EPKT_SHORT, 0x20, 0x02, 0x00, 0x00),
    ROW("v311_puback_with_reason", 4, UVMQ_EPKT_TRAILING, 0x40, 0x03, 0, 1, 0),
    ROW("pingreq_with_body", 4, UVMQ_EPKT_TRAILING, 0xC0, 0x01, 0),
    ROW("v311_disconnect_with_body", 4, UVMQ_EPKT_TRAILING, 0xE0, 0x01, 0),
    ROW("v311_unsuback_with_codes", 4, UVMQ_EPKT_TRAILING, 0xB0, 0x03, 0, 1, 0),
    ROW("v311_connack_3_bytes", 4, UVMQ_EPKT_TRAILING, 0x20, 0x03, 0, 0, 0),
    /* UTF-8 */
    ROW("topic_surrogate", 4, UVMQ_EPKT_UTF8, 0x30, 0x05, 0, 3, 0xED, 0xA0, 0x80),
    ROW("topic_nul", 4, UVMQ_EPKT_UTF8, 0x30, 0x04, 0, 2, 'a', 0x00),
    ROW("filter_overlong", 4, UVMQ_EPKT_UTF8, 0x82, 0x07, 0, 1, 0, 2, 0xC0, 0xAF, 0),
    ROW("client_id_0xff", 4, UVMQ_EPKT_UTF8, 0x10, 0x0D, MQTT4, 0x02, 0, 60, 0, 1, 0xFF),
    ROW("user_property_key", 5, UVMQ_EPKT_UTF8, 0x30, 0x0A, 0, 1, 'a', 0x06, 0x26,
        0, 1, 0xFF, 0, 0),
    ROW("content_type_above_10ffff", 5, UVMQ_EPKT_UTF8, 0x30, 0x0B, 0, 1, 'a', 0x07,
        0x03, 0, 4, 0xF4, 0x90, 0x80, 0x80),
    /* CONNECT */
    ROW("protocol_name_mqtx", 4, UVMQ_EPKT_PROTO_NAME, 0x10, 0x0C, 0, 4, 'M', 'Q',
        'T', 'X', 4, 0x02, 0, 60, 0, 0),
    ROW("protocol_level_6", 4, UVMQ_EPKT_PROTO_LEVEL, 0x10, 0x0C, 0, 4, 'M', 'Q',
        'T', 'T', 6, 0x02, 0, 60, 0, 0),
    ROW("mqisdp_with_level_4", 4, UVMQ_EPKT_PROTO_LEVEL, 0x10, 0x0E, 0, 6, 'M',
        'Q', 'I', 's', 'd', 'p', 4, 0x02, 0, 60, 0, 0),
    ROW("mqtt_with_level_3", 4, UVMQ_EPKT_PROTO_LEVEL, 0x10, 0x0C, 0, 4, 'M', 'Q',
        'T', 'T', 3, 0x02, 0, 60, 0, 0),
    ROW("connect_reserved_bit", 4, UVMQ_EPKT_CONNECT_FLAGS, 0x10, 0x0C, MQTT4, 0x03, 0, 60, 0, 0),
    ROW("will_qos_3", 4, UVMQ_EPKT_CONNECT_FLAGS, 0x10, 0x0C, MQTT4, 0x1E, 0, 60, 0, 0),
    ROW("will_qos_without_will", 4, UVMQ_EPKT_CONNECT_FLAGS, 0x10, 0x0C, MQTT4, 0x0A, 0, 60, 0, 0),
    ROW("will_retain_without_will", 5, UVMQ_EPKT_CONNECT_FLAGS, 0x10, 0x0C, MQTT5, 0x22, 0, 60, 0, 0),
    ROW("password_without_username_v311", 4, UVMQ_EPKT_CONNECT_FLAGS, 0x10, 0x0F,
        MQTT4, 0x42, 0, 60, 0, 0, 0, 1, 'p'),
    ROW("v31_client_id_24_bytes", 3, UVMQ_EPKT_CLIENT_ID, 0x10, 0x26, ISDP3, 0x02,
        0, 60, 0, 24, A24),
    ROW("v31_client_id_empty", 3, UVMQ_EPKT_CLIENT_ID, 0x10, 0x0E, ISDP3, 0x02, 0, 60, 0, 0),
    ROW("will_topic_wildcard", 4, UVMQ_EPKT_TOPIC, 0x10, 0x11, MQTT4, 0x06, 0, 60,
        0, 0, 0, 1, '#', 0, 0),
    ROW("will_payload_not_utf8", 5, UVMQ_EPKT_PAYLOAD_FORMAT, 0x10, 0x16, MQTT5,
        0x06, 0, 60, 0x00, 0, 0, 0x02, 0x01, 0x01, 0, 1, 't', 0, 1, 0xFF),
    /* PUBLISH */
    ROW("publish_packet_id_0", 4, UVMQ_EPKT_PACKET_ID, 0x32, 0x07, 0, 1, 'a', 0, 0, 'h', 'i'),
    ROW("topic_with_plus", 4, UVMQ_EPKT_TOPIC, 0x30, 0x05, 0, 3, 'a', '/', '+'),
    ROW("topic_with_hash", 5, UVMQ_EPKT_TOPIC, 0x30, 0x04, 0, 1, '#', 0),
    ROW("topic_empty_v311", 4, UVMQ_EPKT_TOPIC, 0x30, 0x02, 0, 0),
    ROW("topic_empty_v5_no_alias", 5, UVMQ_EPKT_NO_TOPIC, 0x30, 0x03, 0, 0, 0),
    ROW("response_topic_wildcard", 5, UVMQ_EPKT_TOPIC, 0x30, 0x08, 0, 1, 'a', 0x04,
        0x08, 0, 1, '#'),
    ROW("payload_not_utf8", 5, UVMQ_EPKT_PAYLOAD_FORMAT, 0x30, 0x07, 0, 1, 'a',
        0x02, 0x01, 0x01, 0xFF),
    /* acknowledgements and reason codes */
    ROW("puback_packet_id_0", 4, UVMQ_EPKT_PACKET_ID, 0x40, 0x02, 0, 0),
    ROW("puback_reason_0x05", 5, UVMQ_EPKT_REASON, 0x40, 0x03, 0, 1, 0x05),
    ROW("pubrel_reason_0x10", 5, UVMQ_EPKT_REASON, 0x62, 0x03, 0, 1, 0x10),
    ROW("connack_v5_reason_0x04", 5, UVMQ_EPKT_REASON, 0x20, 0x03, 0, 0x04, 0),
    ROW("connack_v311_code_6", 4, UVMQ_EPKT_REASON, 0x20, 0x02, 0, 6),
    ROW("suback_v311_code_0x87", 4, UVMQ_EPKT_REASON, 0x90, 0x03, 0, 1, 0x87),
    ROW("suback_v5_code_0x11", 5, UVMQ_EPKT_REASON, 0x90, 0x04, 0, 1, 0, 0x11),
    ROW("unsuback_v5_code_0x01", 5, UVMQ_EPKT_REASON, 0xB0, 0x04, 0, 1, 0, 0x01),
    ROW("disconnect_reason_0x01", 5, UVMQ_EPKT_REASON, 0xE0, 0x01, 0x01),
    ROW("auth_reason_0x04", 5, UVMQ_EPKT_REASON, 0xF0, 0x01, 0x04),
    ROW("suback_no_codes", 4, UVMQ_EPKT_EMPTY, 0x90, 0x02, 0, 1),
    /* SUBSCRIBE / UNSUBSCRIBE */
    ROW("subscribe_packet_id_0", 4, UVMQ_EPKT_PACKET_ID, 0x82, 0x06, 0, 0, 0, 1, 'a', 0),
    ROW("subscribe_no_filters", 4, UVMQ_EPKT_EMPTY, 0x82, 0x02, 0, 1),
    ROW("unsubscribe_no_filters_v5", 5, UVMQ_EPKT_EMPTY, 0xA2, 0x03, 0, 1, 0),
    ROW("subscribe_empty_filter", 4, UVMQ_EPKT_TOPIC, 0x82, 0x05, 0, 1, 0, 0, 0),
    ROW("unsubscribe_empty_filter", 4, UVMQ_EPKT_TOPIC, 0xA2, 0x04, 0, 1, 0, 0),
    ROW("subopts_v311_no_local", 4, UVMQ_EPKT_SUBOPTS, 0x82, 0x06, 0, 1, 0, 1, 'a', 0x04),
    ROW("subopts_v5_bit_6", 5, UVMQ_EPKT_SUBOPTS, 0x82, 0x07, 0, 1, 0, 0, 1, 'a', 0x40),
    ROW("subopts_v5_retain_handling_3", 5, UVMQ_EPKT_SUBOPTS, 0x82, 0x07, 0, 1, 0,
        0, 1, 'a', 0x30),
    ROW("subscribe_qos3_v311", 4, UVMQ_EPKT_QOS, 0x82, 0x06, 0, 1, 0, 1, 'a', 0x03),
    ROW("subscribe_qos3_v5", 5, UVMQ_EPKT_QOS, 0x82, 0x07, 0, 1, 0, 0, 1, 'a', 0x03),
    /* properties */
    ROW("prop_id_0x04", 5, UVMQ_EPKT_PROP_ID, 0x30, 0x06, 0, 1, 'a', 0x02, 0x04, 0),
    ROW("prop_id_0x80", 5, UVMQ_EPKT_PROP_ID, 0x30, 0x06, 0, 1, 'a', 0x02, 0x80, 0),
    ROW("payload_format_twice", 5, UVMQ_EPKT_PROP_DUP, 0x30, 0x08, 0, 1, 'a', 0x04,
        0x01, 0, 0x01, 0),
    ROW("sub_id_twice_in_subscribe", 5, UVMQ_EPKT_PROP_DUP, 0x82, 0x0B, 0, 1, 0x04,
        0x0B, 0x01, 0x0B, 0x02, 0, 1, 'a', 0),
    ROW("reason_string_twice", 5, UVMQ_EPKT_PROP_DUP, 0x40, 0x0C, 0, 1, 0, 0x08,
        0x1F, 0, 1, 'a', 0x1F, 0, 1, 'b'),
    ROW("session_expiry_in_publish", 5, UVMQ_EPKT_PROP_PLACE, 0x30, 0x09, 0, 1, 'a',
        0x05, 0x11, 0, 0, 0, 1),
    ROW("will_delay_in_connect_props", 5, UVMQ_EPKT_PROP_PLACE, 0x10, 0x12, MQTT5,
        0x02, 0, 60, 0x05, 0x18, 0, 0, 0, 1, 0, 0),
    ROW("topic_alias_in_will_props", 5, UVMQ_EPKT_PROP_PLACE, 0x10, 0x16, MQTT5,
        0x06, 0, 60, 0x00, 0, 0, 0x03, 0x23, 0, 1, 0, 1, 't', 0, 0),
    ROW("auth_method_in_puback", 5, UVMQ_EPKT_PROP_PLACE, 0x40, 0x08, 0, 1, 0,
        0x04, 0x15, 0, 1, 'm'),
    ROW("payload_format_2", 5, UVMQ_EPKT_PROP_VALUE, 0x30, 0x06, 0, 1, 'a', 0x02, 0x01, 0x02),
    ROW("receive_max_0", 5, UVMQ_EPKT_PROP_VALUE, 0x10, 0x10, MQTT5, 0x02, 0, 60,
        0x03, 0x21, 0, 0, 0, 0),
    ROW("max_packet_size_0", 5, UVMQ_EPKT_PROP_VALUE, 0x20, 0x08, 0, 0, 0x05, 0x27, 0, 0, 0, 0),
    ROW("maximum_qos_2", 5, UVMQ_EPKT_PROP_VALUE, 0x20, 0x05, 0, 0, 0x02, 0x24, 0x02),
    ROW("retain_available_2", 5, UVMQ_EPKT_PROP_VALUE, 0x20, 0x05, 0, 0, 0x02, 0x25, 0x02),
    ROW("shared_sub_available_2", 5, UVMQ_EPKT_PROP_VALUE, 0x20, 0x05, 0, 0, 0x02, 0x2A, 0x02),
    ROW("request_problem_info_2", 5, UVMQ_EPKT_PROP_VALUE, 0x10, 0x0F, MQTT5, 0x02,
        0, 60, 0x02, 0x17, 0x02, 0, 0),
    ROW("subscription_id_0", 5, UVMQ_EPKT_PROP_VALUE, 0x82, 0x09, 0, 1, 0x02, 0x0B,
        0x00, 0, 1, 'a', 0),
    ROW("sub_id_varint_5_bytes", 5, UVMQ_EPKT_REMLEN, 0x30, 0x0A, 0, 1, 'a', 0x06,
        0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F),
    ROW("prop_length_not_minimal", 5, UVMQ_EPKT_REMLEN, 0x30, 0x05, 0, 1, 'a', 0x80, 0x00),
};

/* Frames the row (a negative result ends there), then decodes all bytes. */
static int run_row(const row_t *r, arena_t *a)
{
    size_t fl = 0, need = 0;
    pkt_t p;
    int rc = pkt_frame(r->b, r->len, r->max ? r->max : 1u << 20, &fl, &need);
    if (rc < 0) return rc;
    rc = pkt_decode(&p, r->version, r->b, r->len, a);
    arena_reset(a);
    return rc;
}

static void pkt_rejects_every_malformed_row_with_its_exact_code(void **state)
{
    arena_t a;
    int failures = 0;
    arena_init(&a, 1 << 16);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int rc = run_row(&rows[i], &a);
        if (rc != rows[i].err) {
            print_error("row %zu %s: got %d (%s), want %d (%s)\n", i,
                        rows[i].name, rc, err_str(rc), rows[i].err,
                        err_str(rows[i].err));
            failures++;
        }
    }
    arena_dispose(&a);
    assert_int_equal(failures, 0);
}

/* Every decode error code the codec can produce has at least one row. */
static void pkt_malformed_table_covers_every_error_code(void **state)
{
    static const int codes[] = {UVMQ_EPKT_REMLEN, UVMQ_EPKT_TYPE, UVMQ_EPKT_FLAGS,
        UVMQ_EPKT_SHORT, UVMQ_EPKT_TRAILING, UVMQ_EPKT_UTF8, UVMQ_EPKT_PROTO_NAME,
        UVMQ_EPKT_PROTO_LEVEL, UVMQ_EPKT_CONNECT_FLAGS, UVMQ_EPKT_QOS,
        UVMQ_EPKT_PACKET_ID, UVMQ_EPKT_TOPIC, UVMQ_EPKT_EMPTY, UVMQ_EPKT_SUBOPTS,
        UVMQ_EPKT_PROP_ID, UVMQ_EPKT_PROP_DUP, UVMQ_EPKT_PROP_PLACE,
        UVMQ_EPKT_PROP_VALUE, UVMQ_EPKT_REASON, UVMQ_EPKT_TOO_LARGE,
        UVMQ_EPKT_VERSION, UVMQ_EPKT_PAYLOAD_FORMAT, UVMQ_EPKT_CLIENT_ID, UVMQ_EPKT_NO_TOPIC};
    assert_true(sizeof rows / sizeof rows[0] >= 45);
    for (size_t c = 0; c < sizeof codes / sizeof codes[0]; c++) {
        int seen = 0;
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
            seen |= rows[i].err == codes[c];
        if (!seen) fail_msg("no row for %s", err_str(codes[c]));
    }
}

/* The same valid packets the table mutates decode cleanly: the rows fail
 * for the one reason they name, not for a typo elsewhere. */
static void pkt_accepts_the_valid_packets_the_table_mutates(void **state)
{
    static const row_t ok[] = {
        ROW("connect_v311", 4, 0, 0x10, 0x0C, MQTT4, 0x02, 0, 60, 0, 0),
        ROW("connect_v31", 3, 0, 0x10, 0x0F, ISDP3, 0x02, 0, 60, 0, 1, 'a'),
        ROW("connect_v5_password_only", 5, 0, 0x10, 0x10, MQTT5, 0x42, 0, 60,
            0x00, 0, 0, 0, 1, 'p'),
        ROW("connect_v5_will", 5, 0, 0x10, 0x16, MQTT5, 0x06, 0, 60, 0x00, 0,
            0, 0x02, 0x01, 0x01, 0, 1, 't', 0, 1, 'x'),
        ROW("publish_v5_alias_empty_topic", 5, 0, 0x30, 0x06, 0, 0, 0x03, 0x23, 0, 1),
        /* Topic Alias 0: the receiver refuses it (0x94), not the codec. */
        ROW("publish_v5_topic_alias_0", 5, 0, 0x30, 0x07, 0, 1, 'a', 0x03, 0x23, 0, 0),
        ROW("publish_v5_nul_in_utf8_payload", 5, 0, 0x30, 0x07, 0, 1, 'a', 0x02,
            0x01, 0x01, 0x00),
        ROW("publish_v5_two_sub_ids", 5, 0, 0x30, 0x08, 0, 1, 'a', 0x04, 0x0B,
            0x01, 0x0B, 0x02),
        ROW("puback_v5_with_reason_string", 5, 0, 0x40, 0x08, 0, 1, 0, 0x04,
            0x1F, 0, 1, 'a'),
        ROW("subscribe_v5_options", 5, 0, 0x82, 0x07, 0, 1, 0, 0, 1, 'a', 0x2E),
        ROW("subscribe_filter_wildcards_unchecked", 4, 0, 0x82, 0x07, 0, 1, 0,
            2, 'a', '#', 0),
        ROW("connack_v5_max_qos_1", 5, 0, 0x20, 0x05, 0, 0, 0x02, 0x24, 0x01),
        ROW("disconnect_v5_reason_only", 5, 0, 0xE0, 0x01, 0x8E),
        ROW("auth_v5_empty", 5, 0, 0xF0, 0x00),
    };
    arena_t a;
    arena_init(&a, 1 << 16);
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int rc = run_row(&ok[i], &a);
        if (rc != 0) fail_msg("%s: %d (%s)", ok[i].name, rc, err_str(rc));
    }
    arena_dispose(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pkt_rejects_every_malformed_row_with_its_exact_code),
        cmocka_unit_test(pkt_malformed_table_covers_every_error_code),
        cmocka_unit_test(pkt_accepts_the_valid_packets_the_table_mutates),
    };
    return cmocka_run_group_tests_name("packets/malformed", tests, NULL, NULL);
}

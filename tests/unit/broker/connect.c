/*
 * Unit tests for the pure steps of broker/connect.c: peeking the
 * protocol level of a CONNECT that failed to decode, the client id and
 * will checks that choose a CONNACK reason, the keep-alive grant, the
 * session expiry a CONNECT asks for, and the move to the session's loop
 * (CONN_MIGRATE, refused with "Server busy" after MIGRATE_MAX_HOPS).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "broker/connect.c"

static broker_config_t cfg;
static broker_t tbrk;
static loop_t lp;
static conn_t cn;

static int setup(void **state)
{
    (void)state;
    log_set_level(LOG_ERROR);
    broker_config_init(&cfg);
    memset(&tbrk, 0, sizeof tbrk);
    memset(&lp, 0, sizeof lp);
    memset(&cn, 0, sizeof cn);
    tbrk.cfg = &cfg;
    lp.b = &tbrk;
    cn.loop = &lp;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    broker_config_dispose(&cfg);
    return 0;
}

static pkt_connect_t connect_of(uint8_t version, const char *id, int clean)
{
    pkt_connect_t cp;
    memset(&cp, 0, sizeof cp);
    cp.version = version;
    cp.client_id.p = (const uint8_t *)id;
    cp.client_id.len = (uint32_t)strlen(id);
    cp.clean_start = (uint8_t)clean;
    return cp;
}

/* The CONNACK reason validate picks for cp, checking that it returned 0
 * exactly for PKT_RC_SUCCESS and UVMQ_EINVAL otherwise. */
static uint8_t validated(const pkt_connect_t *cp)
{
    uint8_t reason = 0xFF;
    int rc = validate(&cn, cp, &reason);
    assert_int_equal(rc, reason == PKT_RC_SUCCESS ? 0 : UVMQ_EINVAL);
    return reason;
}

static void peek_level_finds_the_level_after_mqtt_and_mqisdp(void **state)
{
    static const uint8_t v5[] = {0x10, 0x0a, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02};
    static const uint8_t v31[] = {0x10, 0x0c, 0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', 0x03};
    static const uint8_t cut[] = {0x10, 0x0a, 0x00, 0x04, 'M', 'Q'};
    (void)state;
    assert_int_equal(peek_level(v5, sizeof v5), 5);
    assert_int_equal(peek_level(v31, sizeof v31), 3);
    assert_int_equal(peek_level(cut, sizeof cut), -1);
    assert_int_equal(peek_level(v5, 3), -1);
}

static void empty_client_id_rules_follow_the_protocol_version(void **state)
{
    (void)state;
    pkt_connect_t cp = connect_of(PKT_V5, "", 0);
    assert_int_equal(validated(&cp), PKT_RC_SUCCESS);   /* assigned */
    cp = connect_of(PKT_V311, "", 1);
    assert_int_equal(validated(&cp), PKT_RC_SUCCESS);   /* assigned */
    cp = connect_of(PKT_V311, "", 0);                       /* MQTT-3.1.3-8 */
    assert_int_equal(validated(&cp), PKT_RC_CLIENT_ID_INVALID);
    cp = connect_of(PKT_V31, "", 1);
    assert_int_equal(validated(&cp), PKT_RC_CLIENT_ID_INVALID);
    assert_int_equal(pkt_connack_rc311(PKT_RC_CLIENT_ID_INVALID), PKT_RC311_ID_REJECTED);
}

static void client_id_over_max_client_id_len_is_refused(void **state)
{
    (void)state;
    cfg.max_client_id_len = 4;
    pkt_connect_t cp = connect_of(PKT_V5, "abcd", 1);
    assert_int_equal(validated(&cp), PKT_RC_SUCCESS);
    cp = connect_of(PKT_V5, "abcde", 1);
    assert_int_equal(validated(&cp), PKT_RC_CLIENT_ID_INVALID);
}

static void will_topic_with_wildcard_is_refused(void **state)
{
    (void)state;
    pkt_connect_t cp = connect_of(PKT_V5, "w", 1);
    cp.will_flag = 1;
    cp.will_topic.p = (const uint8_t *)"a/+";
    cp.will_topic.len = 3;
    assert_int_equal(validated(&cp), PKT_RC_TOPIC_NAME_INVALID);
    cp.will_topic.p = (const uint8_t *)"a/b";
    assert_int_equal(validated(&cp), PKT_RC_SUCCESS);
}

static void v5_authentication_method_is_left_to_auth_c(void **state)
{
    (void)state;
    pkt_connect_t cp = connect_of(PKT_V5, "x", 1);
    PKT_PROP_SET(&cp.props, PROP_AUTH_DATA);
    assert_int_equal(validated(&cp), PKT_RC_PROTOCOL_ERROR); /* data, no method */
    PKT_PROP_SET(&cp.props, PROP_AUTH_METHOD); /* 0x8C comes from auth.c */
    assert_int_equal(validated(&cp), PKT_RC_SUCCESS);
}

static void keepalive_zero_or_over_max_gets_max_keepalive(void **state)
{
    (void)state;
    pkt_connect_t cp = connect_of(PKT_V5, "k", 1);
    cfg.max_keepalive = 100;
    cp.keep_alive = 0;
    assert_int_equal(grant_keepalive(&cn, &cp), 1);
    assert_int_equal(cn.keepalive, 100);
    cp.keep_alive = 101;
    assert_int_equal(grant_keepalive(&cn, &cp), 1);
    assert_int_equal(cn.keepalive, 100);
    cp.keep_alive = 30;
    assert_int_equal(grant_keepalive(&cn, &cp), 0);
    assert_int_equal(cn.keepalive, 30);
    cfg.max_keepalive = 65535; /* no limit: 0 stays 0 (no keep-alive) */
    cp.keep_alive = 0;
    assert_int_equal(grant_keepalive(&cn, &cp), 0);
    assert_int_equal(cn.keepalive, 0);
}

static void session_expiry_maps_clean_session_and_v5_property(void **state)
{
    (void)state;
    broker_config_t bc;
    broker_config_init(&bc);
    pkt_connect_t cp = connect_of(PKT_V311, "s", 0);
    assert_int_equal(session_expiry(&cp, &bc), SESS_NEVER_EXPIRES);
    bc.max_session_expiry = 90; /* caps v3.1.1 persistent sessions only */
    assert_int_equal(session_expiry(&cp, &bc), 90);
    cp.clean_start = 1;
    assert_int_equal(session_expiry(&cp, &bc), 0);
    cp = connect_of(PKT_V5, "s", 0);
    assert_int_equal(session_expiry(&cp, &bc), 0);
    PKT_PROP_SET(&cp.props, PROP_SESSION_EXPIRY);
    cp.props.session_expiry = 600;
    assert_int_equal(session_expiry(&cp, &bc), 600);
    broker_config_dispose(&bc);
}

static void session_of_another_loop_moves_the_connection_there(void **state)
{
    loop_t owner;
    (void)state;
    memset(&owner, 0, sizeof owner);
    owner.index = 3;
    assert_int_equal(migrate(&cn, &owner, "dev", 3), CONN_MIGRATE);
    assert_int_equal(cn.move_to, 3);
    cn.hops = MIGRATE_MAX_HOPS - 1;
    assert_int_equal(migrate(&cn, &owner, "dev", 3), CONN_MIGRATE);
    assert_int_equal(cn.state, CONN_NEW);
}

/* The CONNACK return code a refused CONNECT of version v got after
 * MIGRATE_MAX_HOPS moves (needs a uv handle: conn__close stops it). */
static uint8_t refused_after_max_hops(uint8_t version)
{
    loop_t owner;
    memset(&owner, 0, sizeof owner);
    owner.index = 1;
    assert_int_equal(uv_loop_init(&lp.uv), 0);
    uv_tcp_init(&lp.uv, &cn.tcp);
    cn.version = version;
    cn.hops = MIGRATE_MAX_HOPS;
    assert_int_equal(migrate(&cn, &owner, "dev", 3), CONN_GONE);
    assert_int_equal(cn.state, CONN_CLOSING);
    const out_batch_t *b = &cn.out->batch[cn.pend];
    assert_int_equal(b->scratch_len, version == PKT_V5 ? 5 : 4); /* CONNACK only */
    assert_int_equal(b->scratch[0], 0x20);
    uint8_t rc = b->scratch[3];
    conn__out_free(cn.out);
    uv_close((uv_handle_t *)&cn.tcp, NULL);
    uv_run(&lp.uv, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&lp.uv), 0);
    return rc;
}

static void too_many_moves_are_refused_as_server_busy(void **state)
{
    (void)state;
    assert_int_equal(refused_after_max_hops(PKT_V5), PKT_RC_SERVER_BUSY);
    memset(&cn, 0, sizeof cn);
    cn.loop = &lp;
    lp.dirty = NULL;
    assert_int_equal(refused_after_max_hops(PKT_V311), PKT_RC311_SERVER_UNAVAILABLE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(peek_level_finds_the_level_after_mqtt_and_mqisdp, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_client_id_rules_follow_the_protocol_version, setup, teardown),
        cmocka_unit_test_setup_teardown(client_id_over_max_client_id_len_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(will_topic_with_wildcard_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(v5_authentication_method_is_left_to_auth_c, setup, teardown),
        cmocka_unit_test_setup_teardown(keepalive_zero_or_over_max_gets_max_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(session_expiry_maps_clean_session_and_v5_property, setup, teardown),
        cmocka_unit_test_setup_teardown(session_of_another_loop_moves_the_connection_there, setup, teardown),
        cmocka_unit_test_setup_teardown(too_many_moves_are_refused_as_server_busy, setup, teardown),
    };
    return cmocka_run_group_tests_name("broker/connect", tests, NULL, NULL);
}

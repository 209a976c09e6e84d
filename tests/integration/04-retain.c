/*
 * 04-retain - retained messages: set, replace, clear, wildcard delivery.
 *
 * Scenario: a raw publisher sends retained PUBLISH packets at QoS 1 (the
 * PUBACK tells us the broker has stored it), then a new raw subscriber
 * subscribes and must receive the retained message with the RETAIN flag
 * set (MQTT-3.3.1-8) right after its SUBACK. A second retained PUBLISH on
 * the same topic replaces the first; a retained PUBLISH with an empty
 * payload clears it (MQTT-3.3.1-10); a wildcard subscription receives all
 * matching retained messages. A subscriber that is already connected gets
 * a retained PUBLISH with RETAIN 0 (MQTT-3.3.1-9).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tests/integration/harness/harness.h"

/* SUBSCRIBE id 1 to "r/a" QoS 0 and its SUBACK (v3.1.1). */
static const unsigned char SUB_RA[] = {
    0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 'r', '/', 'a', 0x00};
static const unsigned char SUBACK_Q0[] = {0x90, 0x03, 0x00, 0x01, 0x00};

/* Retained QoS 1 PUBLISH "r/a" = "v1" (id 1) and "v2" (id 2), their PUBACKs
 * and the QoS 0 retained copies a new subscriber gets. */
static const unsigned char PUB_V1[] = {
    0x33, 0x09, 0x00, 0x03, 'r', '/', 'a', 0x00, 0x01, 'v', '1'};
static const unsigned char PUBACK_1[] = {0x40, 0x02, 0x00, 0x01};
static const unsigned char GOT_V1[] = {
    0x31, 0x07, 0x00, 0x03, 'r', '/', 'a', 'v', '1'};
static const unsigned char PUB_V2[] = {
    0x33, 0x09, 0x00, 0x03, 'r', '/', 'a', 0x00, 0x02, 'v', '2'};
static const unsigned char PUBACK_2[] = {0x40, 0x02, 0x00, 0x02};
static const unsigned char GOT_V2[] = {
    0x31, 0x07, 0x00, 0x03, 'r', '/', 'a', 'v', '2'};

/* Publishes one retained message from a fresh publisher and waits for its
 * PUBACK, so it is stored before anyone subscribes. */
static void publish_retained(th_ctx_t *t, const unsigned char *pkt, size_t len,
                             const unsigned char *puback)
{
    int pub = th_mqtt_open(t->port, 4, "pub", 0x02, 60);
    th_send(pub, pkt, len);
    th_expect(pub, puback, 4, TH_WAIT_MS);
    th_send(pub, "\xe0\x00", 2); /* DISCONNECT */
    th_expect_closed(pub, TH_WAIT_MS);
    th_close(pub);
}

static void new_subscriber_receives_retained_with_retain_flag(th_ctx_t *t)
{
    publish_retained(t, PUB_V1, sizeof PUB_V1, PUBACK_1);
    int sub = th_mqtt_open(t->port, 4, "sub", 0x02, 60);
    th_send(sub, SUB_RA, sizeof SUB_RA);
    th_expect(sub, SUBACK_Q0, sizeof SUBACK_Q0, TH_WAIT_MS);
    th_expect(sub, GOT_V1, sizeof GOT_V1, TH_WAIT_MS);
    th_expect_silence(sub, 300);
    th_close(sub);
}

static void second_retained_publish_replaces_the_first(th_ctx_t *t)
{
    publish_retained(t, PUB_V1, sizeof PUB_V1, PUBACK_1);
    publish_retained(t, PUB_V2, sizeof PUB_V2, PUBACK_2);
    int sub = th_mqtt_open(t->port, 4, "sub", 0x02, 60);
    th_send(sub, SUB_RA, sizeof SUB_RA);
    th_expect(sub, SUBACK_Q0, sizeof SUBACK_Q0, TH_WAIT_MS);
    th_expect(sub, GOT_V2, sizeof GOT_V2, TH_WAIT_MS);
    th_expect_silence(sub, 300);
    th_close(sub);
}

static void empty_retained_payload_clears_the_retained_message(th_ctx_t *t)
{
    static const unsigned char clear[] = {
        0x33, 0x07, 0x00, 0x03, 'r', '/', 'a', 0x00, 0x03};
    static const unsigned char puback3[] = {0x40, 0x02, 0x00, 0x03};
    publish_retained(t, PUB_V1, sizeof PUB_V1, PUBACK_1);
    publish_retained(t, clear, sizeof clear, puback3);
    int sub = th_mqtt_open(t->port, 4, "sub", 0x02, 60);
    th_send(sub, SUB_RA, sizeof SUB_RA);
    th_expect(sub, SUBACK_Q0, sizeof SUBACK_Q0, TH_WAIT_MS);
    th_expect_silence(sub, 500);
    th_close(sub);
}

static void wildcard_subscription_receives_every_matching_retained(th_ctx_t *t)
{
    static const unsigned char pubs[][13] = {
        {0x33, 0x08, 0x00, 0x03, 'r', '/', '1', 0x00, 0x01, 'x'},
        {0x33, 0x08, 0x00, 0x03, 'r', '/', '2', 0x00, 0x02, 'y'},
        {0x33, 0x0a, 0x00, 0x05, 'r', '/', '3', '/', 'z', 0x00, 0x03, 'z'},
        {0x33, 0x08, 0x00, 0x03, 's', '/', '1', 0x00, 0x04, 'n'},
    };
    static const size_t lens[] = {10, 10, 12, 10};
    static const unsigned char sub_all[] = {
        0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 'r', '/', '#', 0x00};
    unsigned char buf[64];
    char seen[64] = "";
    for (int i = 0; i < 4; i++) {
        unsigned char ack[] = {0x40, 0x02, 0x00, (unsigned char)(i + 1)};
        publish_retained(t, pubs[i], lens[i], ack);
    }
    int sub = th_mqtt_open(t->port, 4, "sub", 0x02, 60);
    th_send(sub, sub_all, sizeof sub_all);
    th_expect(sub, SUBACK_Q0, sizeof SUBACK_Q0, TH_WAIT_MS);
    for (int i = 0; i < 3; i++) { /* order among topics is not specified */
        int n = th_read_type(sub, 0x30, buf, sizeof buf, TH_WAIT_MS);
        assert_int_equal(buf[0], 0x31); /* retained, QoS 0 */
        strncat(seen, (const char *)buf + n - 1, 1); /* last payload byte */
    }
    assert_non_null(strchr(seen, 'x'));
    assert_non_null(strchr(seen, 'y'));
    assert_non_null(strchr(seen, 'z'));
    th_expect_silence(sub, 300); /* not s/1 */
    th_close(sub);
}

static void live_subscriber_gets_retained_publish_with_retain_0(th_ctx_t *t)
{
    static const unsigned char got_live[] = {
        0x30, 0x07, 0x00, 0x03, 'r', '/', 'a', 'v', '1'};
    int sub = th_mqtt_open(t->port, 4, "sub", 0x02, 60);
    th_send(sub, SUB_RA, sizeof SUB_RA);
    th_expect(sub, SUBACK_Q0, sizeof SUBACK_Q0, TH_WAIT_MS);
    publish_retained(t, PUB_V1, sizeof PUB_V1, PUBACK_1);
    th_expect(sub, got_live, sizeof got_live, TH_WAIT_MS);
    th_close(sub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_TEST(new_subscriber_receives_retained_with_retain_flag),
        TH_TEST(second_retained_publish_replaces_the_first),
        TH_TEST(empty_retained_payload_clears_the_retained_message),
        TH_TEST(wildcard_subscription_receives_every_matching_retained),
        TH_TEST(live_subscriber_gets_retained_publish_with_retain_0),
    };
    return cmocka_run_group_tests_name("integration/04-retain", tests, NULL,
                                       NULL);
}

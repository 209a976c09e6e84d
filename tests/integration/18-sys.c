/*
 * 18-sys - broker statistics under $SYS/broker/... (docs/sys.md).
 *
 * Scenario: a broker with sys_interval 1 publishes its statistics every
 * second as retained messages with mosquitto's topic names. A v5
 * libmosquitto client subscribed to "$SYS/#" sees the version, an uptime
 * that grows, itself counted in clients/connected, and the publish and
 * packet counters grow after another client publishes; the load averages
 * of that traffic rise above zero. With sys_interval 60 nothing changes
 * after the first update, so a late subscriber (mosquitto_sub -V mqttv5
 * --retained-only, and a v3.1.1 libmosquitto client) gets every topic at
 * once, retained. A subscriber to "#" and "+/broker/uptime" never sees a
 * $SYS topic (MQTT-4.7.2-1). sys_interval 0 publishes nothing. Clients
 * cannot publish under $SYS: the message is dropped, QoS 1/2 are still
 * acknowledged (v5 with 0x87 Not authorized), a will on $SYS is dropped,
 * and HTTP/2 publishes get 403. A bad sys_interval stops the broker with
 * a message naming the key and the file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "broker/broker.h" /* UVMQ_VERSION */
#include "tests/integration/harness/h2client.h"
#include "tests/integration/harness/harness.h"

/* How many topics one update publishes: 24 counts, 9 loads x 3 windows,
 * uptime and version (docs/sys.md). */
#define SYS_TOPICS 53

#define T_VERSION "$SYS/broker/version"
#define T_UPTIME "$SYS/broker/uptime"
#define T_CONNECTED "$SYS/broker/clients/connected"
#define T_PUB_RX "$SYS/broker/publish/messages/received"
#define T_PKTS_RX "$SYS/broker/messages/received"

#define VERSION_TEXT "uvmq version " UVMQ_VERSION

/* The payload of the last message on topic c received, or NULL. */
static const char *last_value(const th_mosq_t *c, const char *topic)
{
    for (int i = c->n_msgs - 1; i >= 0; i--)
        if (strcmp(c->msgs[i].topic, topic) == 0) return (const char *)c->msgs[i].payload;
    return NULL;
}

/* Runs c's loop until the last value on topic, read as a number ("12",
 * "0.25", "7 seconds"), is at least min, or timeout_ms passed. Returns
 * that value, or -1 when none came. */
static double wait_value(th_mosq_t *c, const char *topic, double min, int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    for (;;) {
        const char *v = last_value(c, topic);
        double n = v != NULL ? strtod(v, NULL) : -1;
        if (n >= min || th_now_ms() >= deadline) return n;
        th_mosq_loop_for(c, 20);
    }
}

/* Fails the test unless topic's value reaches min within 5 s. */
static double expect_at_least(th_mosq_t *c, const char *topic, double min)
{
    double v = wait_value(c, topic, min, 5000);
    if (v < min) fail_msg("%s: %g, expected at least %g within 5 s", topic, v, min);
    return v;
}

/* Opens a client subscribed to filter (and filter2 unless NULL). */
static void open_sub(th_mosq_t *c, th_ctx_t *t, const char *id, int version, const char *filter,
                     const char *filter2)
{
    th_mosq_open(c, t->port, id, version, true);
    th_mosq_subscribe(c, filter, 0);
    if (filter2 != NULL) th_mosq_subscribe(c, filter2, 0);
}

static void sys_topics_appear_with_sane_values(th_ctx_t *t)
{
    th_mosq_t sub = {0}, pub = {0};
    open_sub(&sub, t, "sys-sub", 5, "$SYS/#", NULL);
    expect_at_least(&sub, T_CONNECTED, 1); /* the subscriber itself */
    assert_string_equal(last_value(&sub, T_VERSION), VERSION_TEXT);
    double up0 = expect_at_least(&sub, T_UPTIME, 0);
    const char *up = last_value(&sub, T_UPTIME);
    assert_non_null(strstr(up, " seconds"));
    double rx0 = expect_at_least(&sub, T_PUB_RX, 0);
    double pk0 = expect_at_least(&sub, T_PKTS_RX, 2); /* CONNECT, SUBSCRIBE */

    th_mosq_open(&pub, t->port, "sys-pub", 5, true);
    for (int i = 0; i < 5; i++) th_mosq_publish(&pub, "t/x", "m", 1, 1, false);
    th_mosq_wait_published(&pub, &sub, 5, TH_WAIT_MS);
    expect_at_least(&sub, T_PUB_RX, rx0 + 5);
    expect_at_least(&sub, T_PKTS_RX, pk0 + 6); /* the CONNECT and 5 PUBLISH */
    expect_at_least(&sub, T_UPTIME, up0 + 1);
    expect_at_least(&sub, "$SYS/broker/clients/total", 2);
    expect_at_least(&sub, "$SYS/broker/clients/maximum", 2);
    expect_at_least(&sub, "$SYS/broker/subscriptions/count", 1);
    expect_at_least(&sub, "$SYS/broker/retained messages/count", SYS_TOPICS);
    expect_at_least(&sub, "$SYS/broker/bytes/received", 50);
    expect_at_least(&sub, "$SYS/broker/bytes/sent", 50);
    expect_at_least(&sub, "$SYS/broker/messages/sent", 5); /* CONNACKs, SUBACK, PUBACKs */
    expect_at_least(&sub, "$SYS/broker/publish/messages/sent", 1); /* $SYS itself */
    expect_at_least(&sub, "$SYS/broker/load/publish/received/1min", 0.01);
    expect_at_least(&sub, "$SYS/broker/load/connections/1min", 0.01);
    expect_at_least(&sub, "$SYS/broker/load/sockets/15min", 0.01);
    assert_true(wait_value(&sub, "$SYS/broker/publish/messages/dropped", 0, 0) == 0);
    for (int i = 0; i < sub.n_msgs; i++)
        assert_int_equal(sub.msgs[i].qos, 0);
    th_mosq_close(&pub);
    th_mosq_close(&sub);
}

/* Waits until the first update is out (the retained version is there). */
static void wait_first_update(th_ctx_t *t)
{
    th_mosq_t first = {0};
    open_sub(&first, t, "sys-first", 4, T_VERSION, NULL);
    th_mosq_wait_msgs(&first, NULL, 1, TH_WAIT_MS);
    th_mosq_close(&first);
}

static void late_subscriber_gets_every_topic_retained_at_once(th_ctx_t *t)
{
    char port[8], out[192];
    snprintf(port, sizeof port, "%u", (unsigned)t->port);
    snprintf(out, sizeof out, "%s/sub.out", t->broker->dir);
    wait_first_update(t);
    /* --retained-only: exits at the first message without the retain flag */
    char count[8];
    snprintf(count, sizeof count, "%d", SYS_TOPICS);
    const char *argv[] = {"mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-V", "mqttv5",
                          "-t", "$SYS/#", "-v", "--retained-only", "-C", count, "-W", "10",
                          NULL};
    int rc = th_cmd_run(argv, out, 15000);
    char *text = th_file_read(out);
    if (rc != 0 || th_count(text, "$SYS/broker/") != SYS_TOPICS ||
        strstr(text, "$SYS/broker/version " VERSION_TEXT "\n") == NULL ||
        strstr(text, "$SYS/broker/load/messages/received/15min 0.00\n") == NULL ||
        strstr(text, "$SYS/broker/uptime ") == NULL)
        fail_msg("mosquitto_sub exited %d with:\n%s", rc, text);
    free(text);

    th_mosq_t late = {0};
    int64_t t0 = th_now_ms();
    open_sub(&late, t, "sys-late", 4, "$SYS/#", NULL);
    th_mosq_wait_msgs(&late, NULL, SYS_TOPICS, 2000); /* the interval is 60 s */
    assert_true(th_now_ms() - t0 < 5000);
    for (int i = 0; i < late.n_msgs; i++) {
        assert_true(late.msgs[i].retain);
        assert_int_equal(strncmp(late.msgs[i].topic, "$SYS/broker/", 12), 0);
    }
    th_mosq_close(&late);
}

static void hash_subscriber_sees_no_sys_topics(th_ctx_t *t)
{
    th_mosq_t all = {0}, sys = {0}, pub = {0};
    open_sub(&all, t, "sys-all", 5, "#", "+/broker/uptime");
    open_sub(&sys, t, "sys-sys", 5, "$SYS/#", NULL);
    double up0 = expect_at_least(&sys, T_UPTIME, 0);
    th_mosq_open(&pub, t->port, "sys-pub", 4, true);
    th_mosq_publish(&pub, "t/a", "x", 1, 1, false);
    th_mosq_wait_published(&pub, &all, 1, TH_WAIT_MS);
    expect_at_least(&sys, T_UPTIME, up0 + 2); /* two more updates went out */
    th_mosq_loop_for(&all, 300);
    for (int i = 0; i < all.n_msgs; i++)
        if (all.msgs[i].topic[0] == '$') fail_msg("\"#\" received %s", all.msgs[i].topic);
    assert_int_equal(all.n_msgs, 1);
    assert_string_equal(all.msgs[0].topic, "t/a");
    th_mosq_close(&pub);
    th_mosq_close(&sys);
    th_mosq_close(&all);
}

/* $SYS updates reach shared subscription groups too, one member per
 * update: "uptime" changes every second, so no value may come twice. */
static void shared_group_gets_each_update_once(th_ctx_t *t)
{
    th_mosq_t a = {0}, b = {0};
    open_sub(&a, t, "sys-share-a", 5, "$share/g/" T_UPTIME, NULL);
    open_sub(&b, t, "sys-share-b", 4, "$share/g/" T_UPTIME, NULL);
    int64_t deadline = th_now_ms() + 6000;
    while (a.n_msgs + b.n_msgs < 3 && th_now_ms() < deadline) {
        th_mosq_loop_for(&a, 20);
        th_mosq_loop_for(&b, 20);
    }
    int n = a.n_msgs + b.n_msgs;
    assert_true(n >= 3);
    th_msg_t **all = calloc((size_t)n, sizeof *all); /* both members' */
    assert_non_null(all);
    for (int i = 0; i < n; i++)
        all[i] = i < a.n_msgs ? &a.msgs[i] : &b.msgs[i - a.n_msgs];
    for (int i = 0; i < n; i++) {
        assert_string_equal(all[i]->topic, T_UPTIME);
        for (int j = i + 1; j < n; j++)
            if (all[j]->len == all[i]->len &&
                memcmp(all[j]->payload, all[i]->payload, (size_t)all[i]->len) == 0)
                fail_msg("uptime \"%.*s\" came twice", all[i]->len,
                         (const char *)all[i]->payload);
    }
    free(all);
    th_mosq_close(&b);
    th_mosq_close(&a);
}

static void sys_interval_0_publishes_nothing(th_ctx_t *t)
{
    th_mosq_t sub = {0};
    open_sub(&sub, t, "sys-off", 5, "$SYS/#", T_VERSION);
    th_mosq_loop_for(&sub, 2500);
    assert_int_equal(sub.n_msgs, 0);
    th_mosq_close(&sub);
}

/* v5 PUBLISH packets written out, not built with the project's encoder:
 * QoS 1 id 1 and QoS 2 id 2, retained, "$SYS/broker/version" = "fake",
 * empty properties; and QoS 0 retained "$SYS/fake" = "fake". */
static const unsigned char PUB5_Q1[] = {
    0x33, 0x1c, 0x00, 0x13, '$', 'S', 'Y', 'S', '/', 'b', 'r', 'o', 'k', 'e', 'r', '/',
    'v',  'e',  'r',  's',  'i', 'o', 'n', 0x00, 0x01, 0x00, 'f', 'a', 'k', 'e'};
static const unsigned char PUB5_Q2[] = {
    0x35, 0x1c, 0x00, 0x13, '$', 'S', 'Y', 'S', '/', 'b', 'r', 'o', 'k', 'e', 'r', '/',
    'v',  'e',  'r',  's',  'i', 'o', 'n', 0x00, 0x02, 0x00, 'f', 'a', 'k', 'e'};
static const unsigned char PUB5_Q0[] = {
    0x31, 0x10, 0x00, 0x09, '$', 'S', 'Y', 'S', '/', 'f', 'a', 'k', 'e', 0x00, 'f', 'a', 'k', 'e'};
/* The same in v3.1.1 (no property length): QoS 1 id 3, QoS 2 id 4. */
static const unsigned char PUB3_Q1[] = {
    0x33, 0x1b, 0x00, 0x13, '$', 'S', 'Y', 'S', '/', 'b', 'r', 'o', 'k', 'e', 'r', '/',
    'v',  'e',  'r',  's',  'i', 'o', 'n', 0x00, 0x03, 'f', 'a', 'k', 'e'};
static const unsigned char PUB3_Q2[] = {
    0x35, 0x1b, 0x00, 0x13, '$', 'S', 'Y', 'S', '/', 'b', 'r', 'o', 'k', 'e', 'r', '/',
    'v',  'e',  'r',  's',  'i', 'o', 'n', 0x00, 0x04, 'f', 'a', 'k', 'e'};
static const unsigned char PINGREQ[] = {0xc0, 0x00};
static const unsigned char PINGRESP[] = {0xd0, 0x00};

/* Fails the test if c holds a message that is not the broker's. */
static void expect_only_broker_values(const th_mosq_t *c)
{
    for (int i = 0; i < c->n_msgs; i++)
        if (strcmp(c->msgs[i].topic, "$SYS/fake") == 0 ||
            strcmp((const char *)c->msgs[i].payload, "fake") == 0)
            fail_msg("a client's message reached a $SYS subscriber: %s %s", c->msgs[i].topic,
                     (const char *)c->msgs[i].payload);
}

static void client_publishes_to_sys_are_dropped(th_ctx_t *t)
{
    th_mosq_t live = {0}, late = {0};
    wait_first_update(t);
    open_sub(&live, t, "sys-live", 5, "$SYS/#", NULL);
    th_mosq_wait_msgs(&live, NULL, SYS_TOPICS, TH_WAIT_MS);

    int v5 = th_mqtt_open(t->port, 5, "w5", 0x02, 60);
    th_send(v5, PUB5_Q1, sizeof PUB5_Q1);
    assert_int_equal(th_expect_ack(v5, 0x40, 1, TH_WAIT_MS), 0x87); /* Not authorized */
    th_send(v5, PUB5_Q2, sizeof PUB5_Q2);
    assert_int_equal(th_expect_ack(v5, 0x50, 2, TH_WAIT_MS), 0x87); /* ends the flow */
    th_send(v5, PUB5_Q0, sizeof PUB5_Q0);
    th_send(v5, PINGREQ, sizeof PINGREQ); /* still connected, nothing else came */
    th_expect(v5, PINGRESP, sizeof PINGRESP, TH_WAIT_MS);

    int v3 = th_mqtt_open(t->port, 4, "w3", 0x02, 60);
    th_send(v3, PUB3_Q1, sizeof PUB3_Q1);
    th_expect_ack(v3, 0x40, 3, TH_WAIT_MS);
    th_send(v3, PUB3_Q2, sizeof PUB3_Q2);
    th_expect_ack(v3, 0x50, 4, TH_WAIT_MS);
    th_send_ack(v3, 0x62, 4); /* PUBREL */
    th_expect_ack(v3, 0x70, 4, TH_WAIT_MS);

    /* A will on $SYS, set off by closing the socket without DISCONNECT. */
    th_connect_t will = {.version = 4, .client_id = "sys-will", .clean = true, .keepalive = 60,
                         .will_topic = T_VERSION, .will_payload = "fake", .will_retain = true};
    int w = th_mqtt_connect(t->port, &will, NULL);
    th_close(w);

    th_mosq_loop_for(&live, 500);
    expect_only_broker_values(&live);
    assert_int_equal(live.n_msgs, SYS_TOPICS); /* the interval is 60 s */
    th_mqtt_disconnect(v5);
    th_mqtt_disconnect(v3);

    open_sub(&late, t, "sys-late", 5, "$SYS/#", NULL);
    th_mosq_wait_msgs(&late, NULL, SYS_TOPICS, TH_WAIT_MS);
    th_mosq_loop_for(&late, 300);
    expect_only_broker_values(&late);
    assert_int_equal(late.n_msgs, SYS_TOPICS);
    assert_string_equal(last_value(&late, T_VERSION), VERSION_TEXT);

    /* HTTP/2: refused before anything is published. */
    th_h2_resp_t *r = th_h2_get(t->broker->http_port, "POST", "/v1/publish/$SYS/fake", NULL,
                                "fake", 4);
    assert_int_equal(r->status, 403);
    assert_non_null(strstr(r->body, "$SYS"));
    th_h2_resp_free(r);
    th_mosq_loop_for(&live, 300);
    expect_only_broker_values(&live);
    th_mosq_close(&late);
    th_mosq_close(&live);
}

/* Runs the broker with config json; expects exit 2 and a message naming
 * sys_interval and the config file. */
static void expect_refused(th_ctx_t *t, const char *json)
{
    char cfg[160];
    size_t from = 0;
    int rc = th_broker_run_expect_exit(t->broker, json, 10000, &from);
    char *log = th_broker_log(t->broker, from);
    snprintf(cfg, sizeof cfg, "%s/config.json", t->broker->dir);
    bool ok = rc == 2 && strstr(log, "\"sys_interval\" must be an integer 0..86400") != NULL &&
              strstr(log, cfg) != NULL;
    if (!ok) print_error("# exit %d, log:\n%s", rc, log);
    free(log);
    if (!ok) fail_msg("config %s: expected exit 2 naming sys_interval and %s", json, cfg);
}

static void bad_sys_interval_names_key_and_file(th_ctx_t *t)
{
    assert_int_equal(th_broker_stop_keep(t->broker), 0);
    expect_refused(t, "{\"sys_interval\": -1}");
    expect_refused(t, "{\"sys_interval\": 86401}");
    expect_refused(t, "{\"sys_interval\": \"10\"}");
    expect_refused(t, "{\"sys_interval\": 1.5}");
    th_broker_restart(t->broker, "{\"sys_interval\": 86400}"); /* the limit starts */
    t->port = t->broker->port;
}

static int group_setup(void **state)
{
    (void)state;
    th_http_enable(true); /* the HTTP/2 publish refusal */
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_TEST_CFG(sys_topics_appear_with_sane_values, "{\"sys_interval\": 1}"),
        TH_TEST_CFG(late_subscriber_gets_every_topic_retained_at_once, "{\"sys_interval\": 60}"),
        TH_TEST_CFG(hash_subscriber_sees_no_sys_topics, "{\"sys_interval\": 1}"),
        TH_TEST_CFG(shared_group_gets_each_update_once, "{\"sys_interval\": 1}"),
        TH_TEST_CFG(sys_interval_0_publishes_nothing, "{\"sys_interval\": 0}"),
        TH_TEST_CFG(client_publishes_to_sys_are_dropped, "{\"sys_interval\": 60}"),
        TH_TEST(bad_sys_interval_names_key_and_file),
    };
    return cmocka_run_group_tests_name("integration/18-sys", tests, group_setup, NULL);
}

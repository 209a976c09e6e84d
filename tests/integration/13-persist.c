/*
 * 13-persist - durable sessions, queues and retained messages (issue 4).
 *
 * Scenario: persistent sessions (v3.1.1 clean session 0, v5 Session Expiry
 * Interval > 0) subscribe and go offline; publishers get PUBACK / PUBREC,
 * the broker is SIGKILLed and restarted on the same data dir, and every
 * acknowledged message reaches its subscriber once, in order. Packet ids
 * and QoS 2 stages of unfinished flows survive the restart in both
 * directions, as do retained messages, wills (with their delay) and the
 * session limits. A database the broker must not touch is refused, left
 * byte-for-byte unchanged, and a database at its size cap fails acks
 * (PUBACK 0x80) without losing what was acknowledged.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "tests/integration/harness/harness.h"

#define N_MSGS 20          /* messages of the basic queue tests */
#define BIG_LEN (64 * 1024) /* payload of the size-cap test */
#define BIG_MAX 40         /* most big messages the size-cap test sends */
#define PKT_CAP 512        /* read buffer of small packets */

/* A QoS 2 receiver's state across its connections: ids whose PUBLISH was
 * taken (delivered) and whose PUBREL has not come yet (MQTT-4.3.3-9). */
typedef struct q2_rx_s {
    uint16_t pending[16];
    int n_pending;
    int delivered; /* distinct deliveries counted */
} q2_rx_t;

/* ---- helpers ------------------------------------------------------------- */

/* Connects a raw client and fails unless CONNACK's session present flag is
 * want_sp. expiry: v5 Session Expiry Interval (0 = none). */
static int open_session(th_ctx_t *t, int version, const char *id, bool clean,
                        uint32_t expiry, bool want_sp)
{
    th_connect_t c = {.version = version, .client_id = id, .clean = clean,
                      .keepalive = 60, .session_expiry = expiry};
    bool sp = false;
    int fd = th_mqtt_connect(t->port, &c, &sp);
    if (sp != want_sp)
        fail_msg("client %s: CONNACK session present %d, expected %d", id,
                 (int)sp, (int)want_sp);
    return fd;
}

/* Opens a persistent subscriber on filter at qos, then disconnects it. */
static void park_subscriber(th_ctx_t *t, int version, const char *id,
                            uint32_t expiry, const char *filter, int qos)
{
    int fd = open_session(t, version, id, true, expiry, false);
    if (version == 4) { /* clean 1 dropped any old state; now clean 0 */
        th_mqtt_disconnect(fd);
        fd = open_session(t, 4, id, false, 0, false);
    }
    th_mqtt_subscribe(fd, version, 1, filter, qos);
    th_mqtt_disconnect(fd);
}

/* Sends one PUBLISH "m<index>" on fd and completes its flow (PUBACK, or
 * PUBREC -> PUBREL -> PUBCOMP); fails unless the broker acks success. */
static void publish_one(int fd, int version, const char *topic, int qos,
                        int index, uint16_t id)
{
    unsigned char pkt[PKT_CAP];
    char payload[16];
    int len = snprintf(payload, sizeof payload, "m%03d", index);
    size_t n = th_build_publish(pkt, sizeof pkt, version, topic, qos, false,
                                false, id, payload, (size_t)len);
    th_send(fd, pkt, n);
    if (qos == 1) {
        assert_true(th_expect_ack(fd, 0x40, id, TH_WAIT_MS) < 0x80);
    } else if (qos == 2) {
        assert_true(th_expect_ack(fd, 0x50, id, TH_WAIT_MS) < 0x80);
        th_send_ack(fd, 0x62, id);
        th_expect_ack(fd, 0x70, id, TH_WAIT_MS);
    }
}

/* Publishes messages "m<first>".."m<first+n-1>" from a clean client,
 * each acknowledged before the next is sent. */
static void publish_seq(th_ctx_t *t, int version, const char *topic, int qos,
                        int first, int n)
{
    int fd = open_session(t, version, "pub", true, 0, false);
    for (int i = 0; i < n; i++)
        publish_one(fd, version, topic, qos, first + i, (uint16_t)(i + 1));
    th_mqtt_disconnect(fd);
}

/* Fails unless pkt (n bytes) is a PUBLISH on topic with payload
 * "m<index>", QoS qos and the DUP flag dup. Returns its packet id. */
static uint16_t check_pub(const unsigned char *pkt, int n, int version,
                          const char *topic, int qos, int index, bool dup)
{
    char want[16];
    th_publish_t p;
    int wlen = snprintf(want, sizeof want, "m%03d", index);
    if (!th_parse_publish(pkt, (size_t)n, version, &p) || p.qos != qos ||
        p.dup != dup || p.topic_len != strlen(topic) ||
        memcmp(p.topic, topic, p.topic_len) != 0 || p.len != (size_t)wlen ||
        memcmp(p.payload, want, p.len) != 0) {
        th_hexdump("received", pkt, (size_t)n);
        fail_msg("expected PUBLISH %s \"%s\" QoS %d DUP %d", topic, want, qos,
                 (int)dup);
    }
    if (qos > 0)
        assert_int_not_equal(p.id, 0);
    return p.id;
}

/* Reads one PUBLISH and checks it as check_pub does; returns its id. */
static uint16_t expect_pub(int fd, int version, const char *topic, int qos,
                           int index, bool dup)
{
    unsigned char buf[PKT_CAP];
    int n = th_read_packet(fd, buf, sizeof buf, TH_WAIT_MS);
    return check_pub(buf, n, version, topic, qos, index, dup);
}

/* Removes id from ids[0..*n); returns whether it was there. */
static bool take_id(uint16_t *ids, int *n, uint16_t id)
{
    int i = 0;
    bool found;
    while (i < *n && ids[i] != id)
        i++;
    found = i < *n;
    if (found)
        ids[i] = ids[--*n];
    return found;
}

/* Answers a PUBREL (any reason code) whose id is in pending[0..*n) with
 * PUBCOMP and removes the id; fails if the id is not pending. */
static void answer_pubrel(int fd, const unsigned char *pkt, uint16_t *pending,
                          int *n)
{
    uint16_t id = (uint16_t)(pkt[2] << 8 | pkt[3]);
    if (!take_id(pending, n, id))
        fail_msg("PUBREL for packet id %u, which is not awaiting one",
                 (unsigned)id);
    th_send_ack(fd, 0x70, id);
}

/* Receives and acknowledges "m<first>".."m<first+n-1>" in order as first
 * deliveries (DUP 0). The broker may send the next PUBLISH packets before
 * the PUBREL of a QoS 2 one (its inflight window), so this reads packets
 * as they come until every flow is finished. */
static void drain_seq(int fd, int version, const char *topic, int qos,
                      int first, int n)
{
    unsigned char buf[PKT_CAP];
    uint16_t pending[N_MSGS];
    int got = 0, n_pending = 0;
    assert_true(n <= N_MSGS);
    while (got < n || n_pending > 0) {
        int len = th_read_packet(fd, buf, sizeof buf, TH_WAIT_MS);
        if (qos == 2 && (buf[0] == 0x62) && len >= 4) {
            answer_pubrel(fd, buf, pending, &n_pending);
            continue;
        }
        uint16_t id = check_pub(buf, len, version, topic, qos, first + got++,
                                false);
        if (qos == 1)
            th_send_ack(fd, 0x40, id);
        else if (qos == 2)
            th_send_ack(fd, 0x50, pending[n_pending++] = id);
    }
}

/* Runs `SELECT count(*) ...` on the data dir's database, opened read-only
 * so that nothing is checkpointed; returns the count or -1. */
static long long db_count(const th_broker_t *b, const char *sql)
{
    char path[160];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long n = -1;
    th_broker_data_path(b, "uvmq.db", path, sizeof path);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    if (n < 0)
        print_error("# %s: %s: %s\n", path, sql,
                    db != NULL ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* SIGKILLs the broker and starts it again on the same data dir; returns
 * the log offset of the new run. */
static size_t crash_and_restart(th_ctx_t *t)
{
    size_t from;
    th_broker_kill(t->broker);
    from = th_broker_restart(t->broker, NULL);
    t->port = t->broker->port;
    return from;
}

/* Fails unless one log line after `from` contains "recovered " and every
 * needle (a NULL-terminated list). */
static void expect_recovered(th_ctx_t *t, size_t from, ...)
{
    bool ok = false;
    char *log;
    assert_true(th_broker_wait_log(t->broker, from, "recovered ", TH_WAIT_MS));
    log = th_broker_log(t->broker, from);
    for (char *line = strtok(log, "\n"); line != NULL && !ok;
         line = strtok(NULL, "\n")) {
        va_list ap;
        const char *needle;
        ok = strstr(line, "recovered ") != NULL;
        va_start(ap, from);
        while (ok && (needle = va_arg(ap, const char *)) != NULL)
            ok = strstr(line, needle) != NULL;
        va_end(ap);
    }
    free(log);
    if (!ok) {
        th_broker_dump_log(t->broker);
        fail_msg("no \"recovered ...\" line with the expected counts");
    }
}

/* Handles one packet p of n bytes as a QoS 2 receiver of payload want:
 * a PUBLISH whose id awaits PUBREL is not a new delivery (MQTT 4.3.3,
 * method B); PUBREL forgets the id (known or not) and gets PUBCOMP. */
static void q2_handle(int fd, q2_rx_t *rx, const unsigned char *pkt, int n,
                      const char *want)
{
    th_publish_t p;
    if (pkt[0] == 0x62 && n == 4) {
        uint16_t id = (uint16_t)(pkt[2] << 8 | pkt[3]);
        take_id(rx->pending, &rx->n_pending, id);
        th_send_ack(fd, 0x70, id);
        return;
    }
    if (!th_parse_publish(pkt, (size_t)n, 4, &p) || p.qos != 2 ||
        p.len != strlen(want) || memcmp(p.payload, want, p.len) != 0) {
        th_hexdump("received", pkt, (size_t)n);
        fail_msg("expected QoS 2 PUBLISH \"%s\" or PUBREL", want);
    }
    if (take_id(rx->pending, &rx->n_pending, p.id)) {
        rx->pending[rx->n_pending++] = p.id; /* a resend: still pending */
    } else if (rx->n_pending < 16) {
        rx->pending[rx->n_pending++] = p.id;
        rx->delivered++;
    }
    th_send_ack(fd, 0x50, p.id);
}

/* Reads packets for up to ms (each wait 500 ms at most) and handles them
 * with q2_handle, until the broker closes or time is up. */
static void q2_receive(int fd, q2_rx_t *rx, const char *want, int ms)
{
    unsigned char buf[PKT_CAP];
    int64_t deadline = th_now_ms() + ms;
    int n;
    while (th_now_ms() < deadline &&
           (n = th_try_read_packet(fd, buf, sizeof buf, 500)) != 0) {
        if (n != -ETIMEDOUT)
            assert_true(n > 0);
        if (n > 0)
            q2_handle(fd, rx, buf, n, want);
    }
}

/* ---- 1-3: queues survive SIGKILL; clean sessions write nothing ----------- */

static void offline_qos1_queue_survives_sigkill(th_ctx_t *t)
{
    park_subscriber(t, 4, "s1", 0, "q1", 1);
    publish_seq(t, 4, "q1", 1, 0, N_MSGS); /* every one PUBACKed */
    th_broker_kill(t->broker);
    /* Stored once each, before the subscriber drains them. */
    assert_int_equal(db_count(t->broker, "SELECT count(*) FROM msg"), N_MSGS);
    size_t from = th_broker_restart(t->broker, NULL);
    t->port = t->broker->port;
    expect_recovered(t, from, " 1 sessions", " 1 subscriptions",
                     " 20 queued messages", NULL);
    int fd = open_session(t, 4, "s1", false, 0, true);
    drain_seq(fd, 4, "q1", 1, 0, N_MSGS);
    th_expect_silence(fd, 500); /* each exactly once */
    th_mqtt_disconnect(fd);
    fd = open_session(t, 4, "s1", false, 0, true);
    th_expect_silence(fd, 300); /* acknowledged: not sent again */
    th_mqtt_disconnect(fd);
}

static void v5_offline_queue_from_qos2_publisher_survives_sigkill(th_ctx_t *t)
{
    park_subscriber(t, 5, "s2", 300, "q2", 2);
    publish_seq(t, 5, "q2", 2, 0, N_MSGS); /* every one PUBRECed */
    size_t from = crash_and_restart(t);
    expect_recovered(t, from, " 1 sessions", " 1 subscriptions",
                     " 20 queued messages", NULL);
    int fd = open_session(t, 5, "s2", false, 300, true);
    drain_seq(fd, 5, "q2", 2, 0, N_MSGS);
    th_expect_silence(fd, 500);
    th_mqtt_disconnect(fd);
}

static void clean_session_subscribers_store_no_messages(th_ctx_t *t)
{
    int c4 = open_session(t, 4, "c4", true, 0, false);
    int c5 = open_session(t, 5, "c5", true, 0, false); /* expiry 0 */
    th_mqtt_subscribe(c4, 4, 1, "q3", 1);
    th_mqtt_subscribe(c5, 5, 1, "q3", 2);
    publish_seq(t, 4, "q3", 1, 0, 10); /* PUBACKs arrive */
    drain_seq(c4, 4, "q3", 1, 0, 10);
    drain_seq(c5, 5, "q3", 1, 0, 10); /* at the publisher's QoS 1 */
    th_broker_kill(t->broker);
    assert_int_equal(db_count(t->broker, "SELECT count(*) FROM msg"), 0);
    size_t from = th_broker_restart(t->broker, NULL);
    t->port = t->broker->port;
    expect_recovered(t, from, " 0 sessions", " 0 queued messages", NULL);
    th_close(c4);
    th_close(c5);
}

/* ---- 4-5: session expiry --------------------------------------------------- */

static void v5_session_ends_after_its_expiry_interval(th_ctx_t *t)
{
    park_subscriber(t, 5, "e2s", 2, "q4", 1);   /* expires after 2 s */
    park_subscriber(t, 5, "e300", 300, "q4", 1); /* the control */
    publish_seq(t, 4, "q4", 1, 0, 1);
    th_sleep_ms(3500);
    int fd = open_session(t, 5, "e2s", false, 2, false);
    th_expect_silence(fd, 500); /* queue and subscription gone */
    th_mqtt_disconnect(fd);
    fd = open_session(t, 5, "e300", false, 300, true);
    drain_seq(fd, 5, "q4", 1, 0, 1);
    th_mqtt_disconnect(fd);
}

static void v5_session_with_expiry_300_survives_a_restart(th_ctx_t *t)
{
    park_subscriber(t, 5, "e300", 300, "q4", 1);
    crash_and_restart(t);
    int fd = open_session(t, 5, "e300", false, 300, true);
    publish_seq(t, 4, "q4", 1, 0, 1); /* the subscription survived too */
    drain_seq(fd, 5, "q4", 1, 0, 1);
    th_mqtt_disconnect(fd);
}

static void v311_session_ends_after_max_session_expiry(th_ctx_t *t)
{
    park_subscriber(t, 4, "x1", 0, "q5", 1);
    publish_seq(t, 4, "q5", 1, 0, 2);
    th_sleep_ms(3000); /* max_session_expiry is 1 s */
    int fd = open_session(t, 4, "x1", false, 0, false);
    th_expect_silence(fd, 500);
    th_mqtt_disconnect(fd);
}

static void v311_expired_sessions_stay_gone_across_a_restart(th_ctx_t *t)
{
    /* x1 expires while the broker runs, x2 while it is down or after. */
    park_subscriber(t, 4, "x1", 0, "q5", 1);
    publish_seq(t, 4, "q5", 1, 0, 1);
    th_sleep_ms(3000);
    park_subscriber(t, 4, "x2", 0, "q5", 1);
    publish_seq(t, 4, "q5", 1, 1, 1);
    crash_and_restart(t);
    th_sleep_ms(3000);
    int fd = open_session(t, 4, "x1", false, 0, false);
    th_expect_silence(fd, 300);
    th_mqtt_disconnect(fd);
    fd = open_session(t, 4, "x2", false, 0, false);
    th_expect_silence(fd, 300);
    th_mqtt_disconnect(fd);
}

/* ---- 6: queue overflow ----------------------------------------------------- */

/* Overflows a 5-message queue with 10 messages; optionally restarts. */
static void overflow_scenario(th_ctx_t *t, bool restart)
{
    char *log, *line;
    park_subscriber(t, 4, "o1", 0, "q6", 1);
    publish_seq(t, 4, "q6", 1, 0, 10);
    if (restart)
        crash_and_restart(t);
    int fd = open_session(t, 4, "o1", false, 0, true);
    drain_seq(fd, 4, "q6", 1, 0, 5); /* the oldest five are kept */
    th_expect_silence(fd, 500);
    th_mqtt_disconnect(fd);
    log = th_broker_log(t->broker, 0);
    line = strstr(log, "queue full");
    int warnings = th_count(log, "queue full");
    while (line != NULL && line > log && line[-1] != '\n')
        line--;
    if (line != NULL && strchr(line, '\n') != NULL)
        *strchr(line, '\n') = '\0';
    bool names_client = line != NULL && strstr(line, "o1") != NULL;
    free(log);
    assert_int_equal(warnings, 1); /* once, not 5 times */
    assert_true(names_client);
}

static void full_queue_keeps_the_oldest_and_warns_once(th_ctx_t *t)
{
    overflow_scenario(t, false);
}

static void full_queue_keeps_the_oldest_across_a_restart(th_ctx_t *t)
{
    overflow_scenario(t, true);
}

/* ---- 7: unacknowledged QoS 1 resent with DUP ------------------------------- */

/* Three QoS 1 messages read but not acknowledged, two more queued; after
 * an optional SIGKILL the three come again with DUP, the same ids and in
 * order (MQTT-4.4.0-1, MQTT-3.3.1-1), then the two new ones. */
static void dup_resend_scenario(th_ctx_t *t, bool restart)
{
    uint16_t ids[3];
    park_subscriber(t, 4, "s7", 0, "q7", 1);
    int fd = open_session(t, 4, "s7", false, 0, true);
    publish_seq(t, 4, "q7", 1, 0, 3);
    for (int i = 0; i < 3; i++)
        ids[i] = expect_pub(fd, 4, "q7", 1, i, false);
    th_mqtt_disconnect(fd);
    publish_seq(t, 4, "q7", 1, 3, 2);
    th_sleep_ms(300); /* lets the store record the ids it sent */
    if (restart)
        crash_and_restart(t);
    fd = open_session(t, 4, "s7", false, 0, true);
    for (int i = 0; i < 3; i++)
        assert_int_equal(expect_pub(fd, 4, "q7", 1, i, true), ids[i]);
    for (int i = 0; i < 3; i++)
        th_send_ack(fd, 0x40, ids[i]);
    drain_seq(fd, 4, "q7", 1, 3, 2);
    th_expect_silence(fd, 300);
    th_mqtt_disconnect(fd);
}

static void unacked_qos1_resent_with_dup_and_same_ids(th_ctx_t *t)
{
    dup_resend_scenario(t, false);
}

static void unacked_qos1_resent_with_dup_and_same_ids_after_sigkill(th_ctx_t *t)
{
    dup_resend_scenario(t, true);
}

/* ---- 8: retained messages ------------------------------------------------- */

/* Reads one retained PUBLISH and records it as found[0] ("a") or found[1]
 * ("b"); fails on anything else. */
static void expect_retained(int fd, bool found[2])
{
    unsigned char buf[PKT_CAP];
    th_publish_t p;
    int n = th_read_packet(fd, buf, sizeof buf, TH_WAIT_MS);
    bool ok = th_parse_publish(buf, (size_t)n, 4, &p) && p.retain &&
              p.topic_len == 1 && p.len == 1;
    if (ok && p.topic[0] == 'a' && p.payload[0] == 'A' && p.qos == 0)
        found[0] = true;
    else if (ok && p.topic[0] == 'b' && p.payload[0] == 'B' && p.qos == 1)
        found[1] = true;
    else
        ok = false;
    if (!ok) {
        th_hexdump("received", buf, (size_t)n);
        fail_msg("expected retained a=A (QoS 0) or b=B (QoS 1)");
    }
    if (p.qos == 1)
        th_send_ack(fd, 0x40, p.id);
}

static void retained_messages_survive_sigkill(th_ctx_t *t)
{
    unsigned char pkt[PKT_CAP];
    bool found[2] = {false, false};
    int fd = open_session(t, 4, "rp", true, 0, false);
    /* QoS 0 first: the QoS 1 PUBACKs after it follow its commit. */
    th_send(fd, pkt, th_build_publish(pkt, sizeof pkt, 4, "a", 0, true, false,
                                      0, "A", 1));
    th_send(fd, pkt, th_build_publish(pkt, sizeof pkt, 4, "b", 1, true, false,
                                      1, "B", 1));
    th_expect_ack(fd, 0x40, 1, TH_WAIT_MS);
    th_send(fd, pkt, th_build_publish(pkt, sizeof pkt, 4, "c", 1, true, false,
                                      2, "C", 1));
    th_expect_ack(fd, 0x40, 2, TH_WAIT_MS);
    th_send(fd, pkt, th_build_publish(pkt, sizeof pkt, 4, "c", 1, true, false,
                                      3, "", 0)); /* clears c */
    th_expect_ack(fd, 0x40, 3, TH_WAIT_MS);
    th_close(fd);
    size_t from = crash_and_restart(t);
    expect_recovered(t, from, " 2 retained messages", NULL);
    fd = open_session(t, 4, "rs", true, 0, false);
    th_mqtt_subscribe(fd, 4, 1, "#", 1);
    expect_retained(fd, found);
    expect_retained(fd, found);
    assert_true(found[0] && found[1]);
    th_expect_silence(fd, 500); /* not c */
    th_mqtt_disconnect(fd);
}

/* ---- 9: wills of sessions that were online at the crash ------------------- */

/* Connects the v5 will client "wc" (Session Expiry 300, will "w" = "gone"
 * at QoS 1 with Will Delay 2 s) and the persistent watcher "ww" on "w". */
static void open_will_pair(th_ctx_t *t, int *wc, int *ww)
{
    th_connect_t c = {.version = 5, .client_id = "wc", .clean = true,
                      .keepalive = 60, .session_expiry = 300,
                      .will_topic = "w", .will_payload = "gone",
                      .will_qos = 1, .will_delay = 2};
    park_subscriber(t, 4, "ww", 0, "w", 1);
    *ww = open_session(t, 4, "ww", false, 0, true);
    *wc = th_mqtt_connect(t->port, &c, NULL);
}

/* Reads the will PUBLISH "w" = "gone" (QoS 1) within ms and acks it. */
static void expect_will(int fd, int ms)
{
    unsigned char buf[PKT_CAP];
    th_publish_t p;
    int n = th_read_packet(fd, buf, sizeof buf, ms);
    if (!th_parse_publish(buf, (size_t)n, 4, &p) || p.qos != 1 ||
        p.len != 4 || memcmp(p.payload, "gone", 4) != 0) {
        th_hexdump("received", buf, (size_t)n);
        fail_msg("expected the will w = gone at QoS 1");
    }
    th_send_ack(fd, 0x40, p.id);
}

static void will_of_a_crashed_session_follows_its_delay_after_restart(th_ctx_t *t)
{
    int wc, ww;
    open_will_pair(t, &wc, &ww);
    th_sleep_ms(300); /* the session and its will are committed */
    th_broker_kill(t->broker); /* both clients still connected */
    th_close(ww);
    th_close(wc);
    int64_t before = th_now_ms();
    th_broker_restart(t->broker, NULL);
    t->port = t->broker->port;
    int64_t up = th_now_ms();
    ww = open_session(t, 4, "ww", false, 0, true);
    expect_will(ww, 7000);
    int64_t now = th_now_ms();
    /* Not before the 2 s delay from the restart, and within about 6 s. */
    if (now - before < 1800 || now - up > 6000)
        fail_msg("will arrived %lld ms after the restart began, %lld ms "
                 "after it accepted; expected about 2 s",
                 (long long)(now - before), (long long)(now - up));
    th_mqtt_disconnect(ww);
}

static void will_is_not_sent_when_the_client_returns_after_restart(th_ctx_t *t)
{
    int wc, ww;
    open_will_pair(t, &wc, &ww);
    th_sleep_ms(300);
    crash_and_restart(t); /* both clients were connected */
    th_close(ww);
    th_close(wc);
    wc = open_session(t, 5, "wc", false, 300, true); /* well within 1 s */
    ww = open_session(t, 4, "ww", false, 0, true);
    th_expect_silence(ww, 4000); /* MQTT-3.1.3-9 */
    th_mqtt_disconnect(wc); /* normal DISCONNECT: the will is discarded */
    th_mqtt_disconnect(ww);
}

/* ---- 10-11: QoS 2 flows across a restart ---------------------------------- */

static void inbound_qos2_is_exactly_once_across_sigkill(th_ctx_t *t)
{
    static const unsigned char pub7[] = {0x34, 0x0b, 0x00, 0x03, 'q', '1', '0',
                                         0x00, 0x07, 'o', 'n', 'c', 'e'};
    static const unsigned char pub7_dup[] = {0x3c, 0x0b, 0x00, 0x03, 'q', '1',
                                             '0', 0x00, 0x07, 'o', 'n', 'c',
                                             'e'};
    q2_rx_t rx = {.n_pending = 0};
    park_subscriber(t, 4, "s10", 0, "q10", 2);
    int sub = open_session(t, 4, "s10", false, 0, true);
    int pub = open_session(t, 4, "p10", false, 0, false);
    th_send(pub, pub7, sizeof pub7);
    th_expect_ack(pub, 0x50, 7, TH_WAIT_MS); /* PUBREC: id 7 is stored */
    q2_receive(sub, &rx, "once", 1000);      /* delivered now or later */
    th_sleep_ms(300);
    crash_and_restart(t); /* both clients were connected */
    th_close(pub);
    th_close(sub);
    sub = open_session(t, 4, "s10", false, 0, true);
    pub = open_session(t, 4, "p10", false, 0, true);
    th_send(pub, pub7_dup, sizeof pub7_dup); /* MQTT-4.3.3-2: resend */
    th_expect_ack(pub, 0x50, 7, TH_WAIT_MS);
    th_send_ack(pub, 0x62, 7);
    th_expect_ack(pub, 0x70, 7, TH_WAIT_MS);
    q2_receive(sub, &rx, "once", 2000);
    assert_int_equal(rx.delivered, 1);
    assert_int_equal(rx.n_pending, 0);
    th_mqtt_disconnect(pub);
    th_mqtt_disconnect(sub);
}

static void outbound_qos2_pubrel_stage_survives_sigkill(th_ctx_t *t)
{
    park_subscriber(t, 4, "s11", 0, "q11", 2);
    int sub = open_session(t, 4, "s11", false, 0, true);
    publish_seq(t, 4, "q11", 2, 0, 1);
    uint16_t id = expect_pub(sub, 4, "q11", 2, 0, false);
    th_send_ack(sub, 0x50, id);
    th_expect_ack(sub, 0x62, id, TH_WAIT_MS); /* PUBREL; no PUBCOMP sent */
    th_mqtt_disconnect(sub);
    th_sleep_ms(300);
    crash_and_restart(t);
    sub = open_session(t, 4, "s11", false, 0, true);
    unsigned char pubrel[] = {0x62, 0x02, (unsigned char)(id >> 8),
                              (unsigned char)(id & 0xff)};
    th_expect(sub, pubrel, sizeof pubrel, TH_WAIT_MS); /* not the PUBLISH */
    th_expect_silence(sub, 500);
    th_send_ack(sub, 0x70, id);
    th_expect_silence(sub, 300);
    th_mqtt_disconnect(sub);
    sub = open_session(t, 4, "s11", false, 0, true);
    th_expect_silence(sub, 500); /* finished: nothing left to resend */
    th_mqtt_disconnect(sub);
}

/* ---- 12: durability batch ------------------------------------------------- */

static void batch_durability_keeps_queues_across_a_clean_stop(th_ctx_t *t)
{
    park_subscriber(t, 4, "b1", 0, "q12", 1);
    publish_seq(t, 4, "q12", 1, 0, 10);
    assert_int_equal(th_broker_stop_keep(t->broker), 0);
    size_t from = th_broker_restart(t->broker, NULL);
    t->port = t->broker->port;
    expect_recovered(t, from, " 1 sessions", " 10 queued messages", NULL);
    int fd = open_session(t, 4, "b1", false, 0, true);
    drain_seq(fd, 4, "q12", 1, 0, 10);
    th_expect_silence(fd, 300);
    th_mqtt_disconnect(fd);
}

/* ---- 13: the database at its size cap ------------------------------------- */

/* Publishes big QoS 1 messages (payload starts with "seq<i>") until three
 * PUBACKs say 0x80; ok[i] records which got success. Returns how many
 * were sent. */
static int fill_database(th_ctx_t *t, unsigned char *pkt, size_t cap,
                         unsigned char *payload, bool *ok)
{
    int fd = open_session(t, 5, "bigpub", true, 0, false), i, failed = 0;
    for (i = 0; i < BIG_MAX && failed < 3; i++) {
        snprintf((char *)payload, 16, "seq%04d", i);
        size_t n = th_build_publish(pkt, cap, 5, "big", 1, false, false,
                                    (uint16_t)(i + 1), payload, BIG_LEN);
        th_send(fd, pkt, n);
        uint8_t reason = th_expect_ack(fd, 0x40, (uint16_t)(i + 1), 10000);
        if (reason != 0x00 && reason != 0x80)
            fail_msg("PUBACK reason 0x%02x for message %d", reason, i);
        ok[i] = reason == 0x00;
        failed += reason == 0x80;
    }
    if (failed == 0)
        fail_msg("%d messages of 64 KiB all acknowledged under a 1 MiB cap", i);
    th_mqtt_disconnect(fd);
    return i;
}

/* After a failed commit: a v3.1.1 publisher's connection is closed, and
 * QoS 0 traffic still flows. */
static void check_still_serving(th_ctx_t *t, unsigned char *pkt, size_t cap,
                                const unsigned char *payload)
{
    unsigned char buf[PKT_CAP];
    int fd = open_session(t, 4, "bigpub4", true, 0, false);
    th_send(fd, pkt, th_build_publish(pkt, cap, 4, "big", 1, false, false, 1,
                                      payload, BIG_LEN));
    int n = th_try_read_packet(fd, buf, sizeof buf, 10000);
    if (n != 0)
        fail_msg("v3.1.1 publish into a full database: expected the close, "
                 "got %d", n);
    th_close(fd);
    fd = open_session(t, 4, "live", true, 0, false);
    th_mqtt_subscribe(fd, 4, 1, "live", 0);
    th_send(fd, pkt, th_build_publish(pkt, cap, 4, "live", 0, false, false, 0,
                                      "hi", 2));
    static const unsigned char hi[] = {0x30, 0x08, 0x00, 0x04, 'l', 'i', 'v',
                                       'e', 'h', 'i'};
    th_expect(fd, hi, sizeof hi, TH_WAIT_MS);
    th_mqtt_disconnect(fd);
}

/* Reconnects "big" and receives until 2 s of silence; counts deliveries
 * per sequence number in got[]. */
static void drain_big(th_ctx_t *t, unsigned char *buf, size_t cap, int *got)
{
    int fd = open_session(t, 4, "big", false, 0, true), n;
    th_publish_t p;
    for (int k = 0; k < 2 * BIG_MAX &&
                    (n = th_try_read_packet(fd, buf, cap, 2000)) > 0; k++) {
        int seq = -1;
        if (!th_parse_publish(buf, (size_t)n, 4, &p) || p.qos != 1 ||
            p.len != BIG_LEN || sscanf((const char *)p.payload, "seq%4d", &seq) != 1 ||
            seq < 0 || seq >= BIG_MAX)
            fail_msg("unexpected packet 0x%02x of %d bytes", buf[0], n);
        got[seq]++;
        th_send_ack(fd, 0x40, p.id);
    }
    th_mqtt_disconnect(fd);
}

static void full_database_nacks_and_keeps_what_it_acked(th_ctx_t *t)
{
    static unsigned char pkt[BIG_LEN + 256], payload[BIG_LEN];
    size_t cap = sizeof pkt;
    bool ok[BIG_MAX] = {false};
    int got[BIG_MAX] = {0}, sent;
    memset(payload, 0, sizeof payload);
    park_subscriber(t, 4, "big", 0, "big", 1);
    sent = fill_database(t, pkt, cap, payload, ok);
    check_still_serving(t, pkt, cap, payload);
    assert_true(th_broker_wait_log(t->broker, 0, "commit failed", TH_WAIT_MS));
    crash_and_restart(t);
    drain_big(t, pkt, cap, got);
    for (int i = 0; i < sent; i++) {
        if (got[i] != (ok[i] ? 1 : 0))
            fail_msg("message %d (PUBACK %s) delivered %d times", i,
                     ok[i] ? "success" : "0x80", got[i]);
    }
    assert_true(ok[0]); /* the first ones fitted */
}

/* ---- 14: refusals --------------------------------------------------------- */

#define FILE_CAP (1 << 20) /* largest database file the refusals copy */

/* Reads a whole file (at most FILE_CAP bytes) into buf; returns its size. */
static size_t slurp(const char *path, unsigned char *buf)
{
    FILE *f = fopen(path, "rb");
    size_t len;
    assert_non_null(f);
    len = fread(buf, 1, FILE_CAP, f);
    fclose(f);
    return len;
}

/* Writes len bytes to path, replacing it. */
static void spit(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    fclose(f);
}

/* Replaces the stopped broker's database with bad[0..len), runs the
 * broker, and checks it exits non-zero, names the file and one of the
 * problem words, and leaves the file unchanged. */
static void expect_db_refused(th_ctx_t *t, const void *bad, size_t len,
                              const char *word1, const char *word2)
{
    static unsigned char after[FILE_CAP];
    char path[160];
    size_t from;
    th_broker_data_path(t->broker, "uvmq.db", path, sizeof path);
    spit(path, bad, len);
    int rc = th_broker_run_expect_exit(t->broker, NULL, 10000, &from);
    char *log = th_broker_log(t->broker, from);
    bool ok = rc != 0 && strstr(log, path) != NULL &&
              (strstr(log, word1) != NULL || strstr(log, word2) != NULL);
    if (!ok)
        print_error("# exit %d, log:\n%s", rc, log);
    free(log);
    if (!ok)
        fail_msg("expected a non-zero exit naming %s and \"%s\" or \"%s\"",
                 path, word1, word2);
    assert_int_equal(slurp(path, after), len);
    assert_memory_equal(after, bad, len); /* byte-for-byte unchanged */
}

static void refuses_a_truncated_or_corrupt_database(th_ctx_t *t)
{
    static unsigned char db[FILE_CAP];
    char path[160];
    park_subscriber(t, 4, "keep", 0, "k", 1); /* some rows */
    assert_int_equal(th_broker_stop_keep(t->broker), 0);
    th_broker_data_path(t->broker, "uvmq.db", path, sizeof path);
    size_t len = slurp(path, db);
    assert_true(len >= 4 * 4096);
    expect_db_refused(t, db, len - 4096 - 1000, "corrupt", "malformed");
    for (size_t i = 2 * 4096; i < len; i++) /* scribble over the tables */
        db[i] = (unsigned char)(i * 37 + 11);
    expect_db_refused(t, db, len, "corrupt", "malformed");
}

static void refuses_a_file_that_is_not_a_database(th_ctx_t *t)
{
    unsigned char junk[5000];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)("not a database\n"[i % 15] ^ (i & 1));
    assert_int_equal(th_broker_stop_keep(t->broker), 0);
    expect_db_refused(t, junk, sizeof junk, "not an SQLite database",
                      "not a database");
}

static void refuses_a_read_only_data_dir(th_ctx_t *t)
{
    char dir[160];
    size_t from;
    assert_int_equal(th_broker_stop_keep(t->broker), 0);
    th_broker_data_path(t->broker, "", dir, sizeof dir);
    assert_int_equal(chmod(dir, 0500), 0);
    int rc = th_broker_run_expect_exit(t->broker, NULL, 10000, &from);
    chmod(dir, 0700);
    char *log = th_broker_log(t->broker, from);
    bool ok = rc != 0 && strstr(log, dir) != NULL &&
              (strstr(log, "read-only") != NULL || strstr(log, "writable") != NULL);
    if (!ok)
        print_error("# exit %d, log:\n%s", rc, log);
    free(log);
    if (!ok)
        fail_msg("expected a non-zero exit naming %s as read-only", dir);
    th_broker_restart(t->broker, NULL); /* writable again: starts */
    t->port = t->broker->port;
}

/* Runs the broker with config json; expects exit 2 and a message naming
 * key and, if with_path, the config file. */
static void expect_config_refused(th_ctx_t *t, const char *json,
                                  const char *key, bool with_path)
{
    char cfg[160];
    size_t from;
    int rc = th_broker_run_expect_exit(t->broker, json, 10000, &from);
    char *log = th_broker_log(t->broker, from);
    snprintf(cfg, sizeof cfg, "%s/config.json", t->broker->dir);
    bool ok = rc == 2 && strstr(log, key) != NULL &&
              (!with_path || strstr(log, cfg) != NULL);
    if (!ok)
        print_error("# exit %d, log:\n%s", rc, log);
    free(log);
    if (!ok)
        fail_msg("config %s: expected exit 2 naming \"%s\"%s%s", json, key,
                 with_path ? " and " : "", with_path ? cfg : "");
}

static void refuses_bad_durability_settings(th_ctx_t *t)
{
    assert_int_equal(th_broker_stop_keep(t->broker), 0);
    expect_config_refused(t, "{\"durability\": \"fast\"}", "durability", true);
    expect_config_refused(t, "{\"batch_ms\": 0}", "batch_ms", true);
    expect_config_refused(t, "{\"batch_ms\": 60001}", "batch_ms", true);
    expect_config_refused(t, "{\"max_db_bytes\": 1000}", "max_db_bytes",
                          false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_TEST(offline_qos1_queue_survives_sigkill),
        TH_TEST(v5_offline_queue_from_qos2_publisher_survives_sigkill),
        TH_TEST(clean_session_subscribers_store_no_messages),
        TH_TEST(v5_session_ends_after_its_expiry_interval),
        TH_TEST(v5_session_with_expiry_300_survives_a_restart),
        TH_TEST_CFG(v311_session_ends_after_max_session_expiry,
                    "{\"max_session_expiry\": 1}"),
        TH_TEST_CFG(v311_expired_sessions_stay_gone_across_a_restart,
                    "{\"max_session_expiry\": 1}"),
        TH_TEST_CFG(full_queue_keeps_the_oldest_and_warns_once,
                    "{\"max_queued_messages\": 5}"),
        TH_TEST_CFG(full_queue_keeps_the_oldest_across_a_restart,
                    "{\"max_queued_messages\": 5}"),
        TH_TEST(unacked_qos1_resent_with_dup_and_same_ids),
        TH_TEST(unacked_qos1_resent_with_dup_and_same_ids_after_sigkill),
        TH_TEST(retained_messages_survive_sigkill),
        TH_TEST(will_of_a_crashed_session_follows_its_delay_after_restart),
        TH_TEST(will_is_not_sent_when_the_client_returns_after_restart),
        TH_TEST(inbound_qos2_is_exactly_once_across_sigkill),
        TH_TEST(outbound_qos2_pubrel_stage_survives_sigkill),
        TH_TEST_CFG(batch_durability_keeps_queues_across_a_clean_stop,
                    "{\"durability\": \"batch\", \"batch_ms\": 20}"),
        TH_TEST_CFG(full_database_nacks_and_keeps_what_it_acked,
                    "{\"max_db_bytes\": 1048576}"),
        TH_TEST(refuses_a_truncated_or_corrupt_database),
        TH_TEST(refuses_a_file_that_is_not_a_database),
        TH_TEST(refuses_a_read_only_data_dir),
        TH_TEST(refuses_bad_durability_settings),
    };
    return cmocka_run_group_tests_name("integration/13-persist", tests, NULL,
                                       NULL);
}

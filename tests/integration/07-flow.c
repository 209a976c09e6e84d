/*
 * 07-flow - flow control: slow readers, non-reading publishers, windows.
 *
 * Scenario: with max_out_bytes 256 KiB, a subscriber that never reads (4 KiB
 * receive buffer) gets its QoS 0 messages dropped, logged once, while a
 * second subscriber that reads gets all 400 x 32 KiB QoS 0 messages and a
 * final QoS 1 one, the publisher gets its PUBACK and the broker stays small.
 * With max_out_bytes 64 KiB, a client that floods QoS 1 PUBLISH packets
 * without reading their PUBACKs is paused (its sends end in EAGAIN) instead
 * of being buffered, and others keep being served. Last, a v5 Receive
 * Maximum of 2 and a broker max_inflight of 3 bound how many unacknowledged
 * QoS 1 messages a subscriber is sent (v5: MQTT-3.3.4-9).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/integration/harness/harness.h"

#define RSS_LIMIT_KIB (100 * 1024)
#define SMALL_RCVBUF 4096

/* ---- helpers ------------------------------------------------------------- */

/* Resident memory of the broker process in KiB, from /proc/<pid>/status. */
static long broker_rss_kib(const th_broker_t *b)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%d/status", (int)b->pid);
    f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    while (kib < 0 && fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kib) != 1)
            kib = -1;
    fclose(f);
    if (kib < 0)
        fail_msg("no VmRSS line in %s", path);
    return kib;
}

/* Reads the "dropped: X qos0, Y queue-full, Z too-large-for-client" part of
 * the "uvmq stopped:" line into out[3]. Returns false when the line or its
 * "dropped:" part is missing. */
static bool stop_line_drops(const char *log, unsigned long long out[3])
{
    const char *line = strstr(log, "uvmq stopped:");
    const char *eol = line ? strchr(line, '\n') : NULL;
    const char *d = line ? strstr(line, "dropped: ") : NULL;
    if (d == NULL || (eol != NULL && d > eol)) {
        fprintf(stderr, "# no \"uvmq stopped: ... dropped:\" line in the log\n");
        return false;
    }
    if (sscanf(d, "dropped: %llu qos0, %llu queue-full, %llu "
                  "too-large-for-client", &out[0], &out[1], &out[2]) != 3)
        fail_msg("cannot parse the stop line: %.200s", line);
    return true;
}

/* Sends PUBACK for id. */
static void puback(int fd, uint16_t id)
{
    unsigned char ack[] = {0x40, 0x02, (unsigned char)(id >> 8),
                           (unsigned char)id};
    th_send(fd, ack, sizeof ack);
}

/* ---- slow subscriber ----------------------------------------------------- */

enum { BIG_N = 400, BIG_PAYLOAD = 32768, BIG_LAG = 4 };

/* QoS 0 PUBLISH "flow/x", remaining length 2 + 6 + 32768 = 32776, whose
 * varint is 88 80 02. */
static const unsigned char BIG_HEAD[] = {
    0x30, 0x88, 0x80, 0x02, 0x00, 0x06, 'f', 'l', 'o', 'w', '/', 'x'};
#define BIG_LEN (sizeof BIG_HEAD + BIG_PAYLOAD)

/* QoS 1 PUBLISH "flow/x" = "final" with id 1, its PUBACK, and the copy a
 * QoS 1 subscriber gets (id at offset 10 chosen by the broker). */
static const unsigned char FINAL_PUB[] = {
    0x32, 0x0f, 0x00, 0x06, 'f', 'l', 'o', 'w', '/', 'x', 0x00, 0x01,
    'f', 'i', 'n', 'a', 'l'};
static const unsigned char PUBACK_1[] = {0x40, 0x02, 0x00, 0x01};

/* Writes message i (a whole PUBLISH packet) into pkt: the payload starts
 * with i big-endian and is filled with i's low byte. */
static void make_big(unsigned char *pkt, int i)
{
    memcpy(pkt, BIG_HEAD, sizeof BIG_HEAD);
    memset(pkt + sizeof BIG_HEAD, i & 0xff, BIG_PAYLOAD);
    pkt[sizeof BIG_HEAD] = (unsigned char)(i >> 24);
    pkt[sizeof BIG_HEAD + 1] = (unsigned char)(i >> 16);
    pkt[sizeof BIG_HEAD + 2] = (unsigned char)(i >> 8);
    pkt[sizeof BIG_HEAD + 3] = (unsigned char)i;
}

/* Reads S2's next packet and checks it is message i, byte for byte. */
static void expect_big(int fd, int i, unsigned char *want, unsigned char *buf)
{
    int n = th_read_packet(fd, buf, BIG_LEN + 16, TH_WAIT_MS);
    make_big(want, i);
    if ((size_t)n != BIG_LEN || memcmp(buf, want, BIG_LEN) != 0) {
        th_hexdump("expected", want, BIG_LEN);
        th_hexdump("received", buf, (size_t)n);
        fail_msg("message %d to the reading subscriber differs", i);
    }
}

/* Opens a v3.1.1 client with a QoS `qos` subscription to "flow/#". */
static int flow_subscriber(int fd, const char *id2, uint8_t qos)
{
    unsigned char connect[] = {
        0x10, 0x0e, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c,
        0x00, 0x02, (unsigned char)id2[0], (unsigned char)id2[1]};
    static const unsigned char connack[] = {0x20, 0x02, 0x00, 0x00};
    unsigned char sub[] = {
        0x82, 0x0b, 0x00, 0x01, 0x00, 0x06, 'f', 'l', 'o', 'w', '/', '#', qos};
    unsigned char suback[] = {0x90, 0x03, 0x00, 0x01, qos};
    th_send(fd, connect, sizeof connect);
    th_expect(fd, connack, sizeof connack, TH_WAIT_MS);
    th_send(fd, sub, sizeof sub);
    th_expect(fd, suback, sizeof suback, TH_WAIT_MS);
    return fd;
}

/* Publishes the BIG_N messages, never more than BIG_LAG ahead of what s2
 * has read (so s2 itself stays far below max_out_bytes), then the final
 * QoS 1 one. Returns the largest broker RSS seen, in KiB. */
static long publish_big_paced(th_ctx_t *t, int pub, int s2)
{
    unsigned char *pkt = malloc(BIG_LEN), *want = malloc(BIG_LEN);
    unsigned char *buf = malloc(BIG_LEN + 16);
    long rss, max_rss = 0;
    int got = 0;
    assert_true(pkt != NULL && want != NULL && buf != NULL);
    for (int i = 0; i < BIG_N; i++) {
        while (i - got >= BIG_LAG)
            expect_big(s2, got++, want, buf);
        make_big(pkt, i);
        th_send(pub, pkt, BIG_LEN);
        if (i % 20 == 0 && (rss = broker_rss_kib(t->broker)) > max_rss)
            max_rss = rss;
    }
    while (got < BIG_N)
        expect_big(s2, got++, want, buf);
    free(buf);
    free(want);
    free(pkt);
    return max_rss;
}

static void slow_subscriber_gets_qos0_dropped_and_others_are_unaffected(th_ctx_t *t)
{
    unsigned char buf[64];
    unsigned long long drops[3];
    bool drops_counted = false; /* the stop line must show the drops */
    int s1 = flow_subscriber(th_connect_rcvbuf(t->port, SMALL_RCVBUF), "s1", 0);
    int s2 = flow_subscriber(th_connect(t->port), "s2", 1);
    int pub = th_mqtt_open(t->port, 4, "flow-pub", 0x02, 60);
    long max_rss = publish_big_paced(t, pub, s2);
    th_send(pub, FINAL_PUB, sizeof FINAL_PUB);
    th_expect(pub, PUBACK_1, sizeof PUBACK_1, 20000);
    int n = th_read_type(s2, 0x30, buf, sizeof buf, 20000); /* message 401 */
    if (n != sizeof FINAL_PUB || memcmp(buf, FINAL_PUB, 10) != 0 ||
        memcmp(buf + 12, FINAL_PUB + 12, 5) != 0) {
        th_hexdump("received", buf, (size_t)n);
        fail_msg("the final QoS 1 message to the reading subscriber differs");
    }
    puback(s2, th_publish_id(buf));
    long rss = broker_rss_kib(t->broker);
    fprintf(stderr, "# broker VmRSS max %ld KiB during, %ld KiB after\n",
            max_rss > rss ? max_rss : rss, rss);
    assert_true(max_rss < RSS_LIMIT_KIB && rss < RSS_LIMIT_KIB);
    th_expect_silence(s2, 200); /* 401 messages, no more */
    th_close(pub);
    th_close(s2);
    (void)s1; /* stays connected and unread until the broker stops */
    char *log = th_broker_stop_log(t->broker);
    int warned = th_count(log, "is not reading: dropping QoS 0 messages");
    if (stop_line_drops(log, drops)) {
        fprintf(stderr, "# stop line: %llu qos0 dropped\n", drops[0]);
        drops_counted = drops[0] > 0;
    }
    free(log);
    if (warned != 1 || !drops_counted)
        fail_msg("log: %d \"is not reading\" warnings (want 1), qos0 drops "
                 "%s", warned, drops_counted ? "counted" : "not counted");
}

/* ---- publisher that does not read ---------------------------------------- */

enum { P_PKT = 17, P_BATCH = 1024 };

/* Fills batch with P_BATCH QoS 1 PUBLISH "p" packets with a 10-byte payload
 * and packet ids following *next_id (1..65535, wrapping). */
static void fill_p_batch(unsigned char *batch, uint16_t *next_id)
{
    static const unsigned char tmpl[P_PKT] = {
        0x32, 0x0f, 0x00, 0x01, 'p', 0x00, 0x00,
        '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'};
    for (int i = 0; i < P_BATCH; i++) {
        unsigned char *p = batch + i * P_PKT;
        memcpy(p, tmpl, P_PKT);
        p[5] = (unsigned char)(*next_id >> 8);
        p[6] = (unsigned char)*next_id;
        *next_id = *next_id == 65535 ? 1 : *next_id + 1;
    }
}

/* A flooding client's stream: a send can stop in the middle of a packet,
 * so the next flood must finish that batch before it starts another, or
 * the broker would read a truncated packet followed by a new one. */
typedef struct flood_s {
    unsigned char batch[P_BATCH * P_PKT];
    size_t off; /* bytes of batch sent; sizeof batch: refill first */
    uint16_t next_id;
} flood_t;

/* Sends QoS 1 publishes on the non-blocking fd for at most 10 s until the
 * socket stays unwritable for a whole second (the broker stopped reading),
 * going on from where the last flood of f stopped. Returns the number of
 * batches' packets sent whole, or -1 if it never paused. */
static long flood_until_paused(int fd, flood_t *f)
{
    unsigned char *batch = f->batch;
    long sent = 0;
    bool paused = false;
    int64_t deadline = th_now_ms() + 10000;
    while (!paused && th_now_ms() < deadline) {
        if (f->off == sizeof f->batch) {
            fill_p_batch(batch, &f->next_id);
            f->off = 0;
        }
        ssize_t n = send(fd, batch + f->off, sizeof f->batch - f->off,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            f->off += (size_t)n;
            sent += f->off == sizeof f->batch ? P_BATCH : 0;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            paused = poll(&pfd, 1, 1000) == 0;
        } else if (n < 0 && errno != EINTR) {
            fail_msg("send on the flooding client: %s", strerror(errno));
        }
    }
    return paused ? sent : -1;
}

/* A fresh subscriber and publisher exchange a QoS 0 message on topic
 * `topic` (2 bytes), which must arrive within 2 s. */
static void round_trip(th_ctx_t *t, const char *topic)
{
    unsigned char sub[] = {0x82, 0x07, 0x00, 0x01, 0x00, 0x02,
                           (unsigned char)topic[0], (unsigned char)topic[1],
                           0x00};
    static const unsigned char suback[] = {0x90, 0x03, 0x00, 0x01, 0x00};
    unsigned char pub[] = {0x30, 0x06, 0x00, 0x02, (unsigned char)topic[0],
                           (unsigned char)topic[1], 'o', 'k'};
    int s = th_mqtt_open(t->port, 4, "healthy-sub", 0x02, 60);
    int p = th_mqtt_open(t->port, 4, "healthy-pub", 0x02, 60);
    th_send(s, sub, sizeof sub);
    th_expect(s, suback, sizeof suback, 2000);
    th_send(p, pub, sizeof pub);
    th_expect(s, pub, sizeof pub, 2000);
    th_close(p);
    th_close(s);
}

static void client_that_publishes_without_reading_is_paused_not_buffered(th_ctx_t *t)
{
    static const unsigned char connect[] = {
        0x10, 0x12, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c,
        0x00, 0x06, 'f', 'l', 'o', 'o', 'd', 'r'};
    static const unsigned char connack[] = {0x20, 0x02, 0x00, 0x00};
    static flood_t flood; /* 17 KiB: not on the stack */
    flood.off = sizeof flood.batch;
    flood.next_id = 1;
    int fd = th_connect_rcvbuf(t->port, SMALL_RCVBUF);
    th_send(fd, connect, sizeof connect);
    th_expect(fd, connack, sizeof connack, TH_WAIT_MS);
    assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    long sent = flood_until_paused(fd, &flood);
    long rss = broker_rss_kib(t->broker);
    fprintf(stderr, "# %ld QoS 1 publishes sent before EAGAIN; broker "
                    "VmRSS %ld KiB\n", sent, rss);
    if (sent < 0)
        fail_msg("sends never blocked for 1 s within 10 s: the broker kept "
                 "reading a client that reads nothing");
    assert_true(rss < RSS_LIMIT_KIB);
    round_trip(t, "h1"); /* the loop is not blocked */
    /* The broker may read this client again once its own unsent output has
     * drained into the kernel's send buffer (which grows on its own), but
     * never keeps reading: a second flood blocks again and the broker's
     * memory stays bounded. (A "no POLLOUT right now" check here was
     * flaky under ThreadSanitizer: it tested kernel buffer timing.) */
    if (flood_until_paused(fd, &flood) < 0)
        fail_msg("after a round trip, sends never blocked again: the broker "
                 "kept reading a client that reads nothing");
    assert_true(broker_rss_kib(t->broker) < RSS_LIMIT_KIB);
    th_close(fd);
    round_trip(t, "h2");
    assert_true(broker_rss_kib(t->broker) < RSS_LIMIT_KIB);
}

/* ---- inflight windows ---------------------------------------------------- */

/* Publishes QoS 1 "rm" = "m1".."m<n>" (ids 1..n) from a fresh v3.1.1
 * client, each acknowledged. */
static void publish_rm(th_ctx_t *t, int n)
{
    int pub = th_mqtt_open(t->port, 4, "rm-pub", 0x02, 60);
    for (int i = 1; i <= n; i++) {
        unsigned char pkt[] = {0x32, 0x08, 0x00, 0x02, 'r', 'm', 0x00,
                               (unsigned char)i, 'm', (unsigned char)('0' + i)};
        unsigned char ack[] = {0x40, 0x02, 0x00, (unsigned char)i};
        th_send(pub, pkt, sizeof pkt);
        th_expect(pub, ack, sizeof ack, TH_WAIT_MS);
    }
    th_close(pub);
}

/* Reads a QoS 1 PUBLISH "rm" = "m<i>" (v5 with an empty property list if
 * v5) and returns its packet id. */
static uint16_t expect_rm(int fd, bool v5, int i)
{
    unsigned char buf[64];
    unsigned char want[] = {0x32, 0x09, 0x00, 0x02, 'r', 'm', 0x00, 0x00,
                            0x00, 'm', (unsigned char)('0' + i)};
    size_t len = sizeof want;
    int n = th_read_packet(fd, buf, sizeof buf, TH_WAIT_MS);
    if (!v5) { /* no property length byte */
        want[1] = 0x08;
        memmove(want + 8, want + 9, 2);
        len--;
    }
    if ((size_t)n != len || memcmp(buf, want, 6) != 0 ||
        memcmp(buf + 8, want + 8, len - 8) != 0) {
        th_hexdump("expected (id aside)", want, len);
        th_hexdump("received", buf, (size_t)n);
        fail_msg("expected QoS 1 PUBLISH rm \"m%d\"", i);
    }
    return th_publish_id(buf);
}

static void receive_maximum_limits_unacked_qos1_deliveries(th_ctx_t *t)
{
    /* CONNECT v5 "rm", clean start, keep alive 60, Receive Maximum 2. */
    static const unsigned char connect[] = {
        0x10, 0x12, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3c,
        0x03, 0x21, 0x00, 0x02, 0x00, 0x02, 'r', 'm'};
    static const unsigned char sub[] = {
        0x82, 0x08, 0x00, 0x01, 0x00, 0x00, 0x02, 'r', 'm', 0x01};
    static const unsigned char suback[] = {0x90, 0x04, 0x00, 0x01, 0x00, 0x01};
    unsigned char buf[256];
    uint16_t id[6];
    int fd = th_connect(t->port);
    th_send(fd, connect, sizeof connect);
    th_read_type(fd, 0x20, buf, sizeof buf, TH_WAIT_MS);
    assert_int_equal(buf[2] << 8 | buf[3], 0x0000); /* no session, success */
    th_send(fd, sub, sizeof sub);
    th_expect(fd, suback, sizeof suback, TH_WAIT_MS);
    publish_rm(t, 5);
    id[1] = expect_rm(fd, true, 1);
    id[2] = expect_rm(fd, true, 2);
    th_expect_silence(fd, 300); /* MQTT-3.3.4-9: window of 2 is full */
    puback(fd, id[1]);
    id[3] = expect_rm(fd, true, 3);
    th_expect_silence(fd, 300);
    puback(fd, id[2]);
    puback(fd, id[3]);
    id[4] = expect_rm(fd, true, 4);
    id[5] = expect_rm(fd, true, 5);
    puback(fd, id[4]);
    puback(fd, id[5]);
    th_expect_silence(fd, 300);
    th_close(fd);
}

static void max_inflight_limits_v311_window(th_ctx_t *t)
{
    static const unsigned char sub[] = {
        0x82, 0x07, 0x00, 0x01, 0x00, 0x02, 'r', 'm', 0x01};
    static const unsigned char suback[] = {0x90, 0x03, 0x00, 0x01, 0x01};
    uint16_t id[6];
    int fd = th_mqtt_open(t->port, 4, "win", 0x02, 60);
    th_send(fd, sub, sizeof sub);
    th_expect(fd, suback, sizeof suback, TH_WAIT_MS);
    publish_rm(t, 5);
    for (int i = 1; i <= 3; i++)
        id[i] = expect_rm(fd, false, i);
    th_expect_silence(fd, 300); /* max_inflight 3 */
    puback(fd, id[1]);
    id[4] = expect_rm(fd, false, 4);
    th_expect_silence(fd, 300);
    puback(fd, id[2]);
    id[5] = expect_rm(fd, false, 5);
    for (int i = 3; i <= 5; i++)
        puback(fd, id[i]);
    th_expect_silence(fd, 300);
    th_close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_TEST_CFG(slow_subscriber_gets_qos0_dropped_and_others_are_unaffected,
                 "{\"max_out_bytes\": 262144}\n"),
        TH_TEST_CFG(client_that_publishes_without_reading_is_paused_not_buffered,
                 "{\"max_out_bytes\": 65536}\n"),
        TH_TEST(receive_maximum_limits_unacked_qos1_deliveries),
        TH_TEST_CFG(max_inflight_limits_v311_window, "{\"max_inflight\": 3}\n"),
    };
    return cmocka_run_group_tests_name("integration/07-flow", tests, NULL,
                                       NULL);
}

/*
 * 09-throttle - lossless QoS 1: a slow subscriber throttles its publishers.
 *
 * Scenario: with max_queued_messages 100 and max_inflight 10, ten raw
 * v3.1.1 publishers (one thread each, at most 10 unacknowledged PUBLISHes)
 * send 5,000 QoS 1 messages in all to one raw v3.1.1 QoS 1 subscriber that
 * reads one message every 20 ms for a second, then as fast as it can.
 * Every message arrives exactly once, in order per publisher, and nothing
 * is dropped: the publishers were paused, not their messages. With
 * throttle_publishers false the same run drops messages, and the stop
 * line counts exactly the ones that did not arrive. Last, an offline
 * persistent session still drops past its limit while an online fast
 * subscriber of the same topic gets everything and the publisher, not
 * throttled, finishes in bounded time; the offline session gets the first
 * 100 when it comes back.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/integration/harness/harness.h"

enum {
    N_PUBS = 10,       /* publishers in the slow-subscriber tests */
    PER_PUB = 500,     /* messages each: 5,000 in all */
    PUB_WINDOW = 10,   /* unacknowledged PUBLISHes per publisher */
    SLOW_MS = 1000,    /* the subscriber's slow phase */
    SLOW_GAP_MS = 20,  /* its pause between two reads meanwhile */
    RUN_MS = 60000,    /* bound on any whole exchange (sanitizers) */
    QUEUE_MAX = 100,   /* max_queued_messages of the configs below */
    OFFLINE_N = 1000,  /* messages in the offline-session test */
};

/* QoS 1 PUBLISH "t", packet id 0, payload: publisher (2 bytes, big
 * endian) and sequence number (2 bytes). Remaining length 2+1+2+4 = 9. */
static const unsigned char PUB_TMPL[] = {0x32, 0x09, 0x00, 0x01, 't', 0x00,
                                         0x00, 0x00, 0x00, 0x00, 0x00};
#define PUB_LEN sizeof PUB_TMPL

/* ---- publisher threads (no cmocka calls: they are not thread-safe) ----- */

typedef struct pub_s {
    int fd;         /* connected by the main thread */
    int index;      /* payload's publisher number */
    int count;      /* messages to send */
    int err;        /* 0, or errno of the failure (ETIMEDOUT, EPROTO...) */
    int64_t ms;     /* time from the first PUBLISH to the last PUBACK */
    pthread_t thread;
} pub_t;

static int send_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : EPIPE;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one 4-byte PUBACK (the only packet a publisher gets) within the
 * deadline. Returns 0 or an errno. */
static int read_puback(int fd, int64_t deadline)
{
    unsigned char ack[4];
    size_t got = 0;
    while (got < sizeof ack) {
        if (th_now_ms() > deadline)
            return ETIMEDOUT;
        ssize_t r = recv(fd, ack + got, sizeof ack - got, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue; /* SO_RCVTIMEO: check the deadline again */
        if (r <= 0)
            return r < 0 ? errno : ECONNRESET;
        got += (size_t)r;
    }
    return ack[0] == 0x40 && ack[1] == 0x02 ? 0 : EPROTO;
}

/* Sends p->count QoS 1 messages keeping at most PUB_WINDOW unacknowledged
 * (PUBACKs come in order: the broker acknowledges as it reads). */
static void *pub_main(void *arg)
{
    pub_t *p = arg;
    int64_t start = th_now_ms(), deadline = start + RUN_MS;
    int sent = 0, acked = 0;
    while (p->err == 0 && acked < p->count) {
        if (sent < p->count && sent - acked < PUB_WINDOW) {
            unsigned char pkt[PUB_LEN];
            uint16_t id = (uint16_t)(sent % 65535 + 1);
            memcpy(pkt, PUB_TMPL, PUB_LEN);
            pkt[5] = (unsigned char)(id >> 8);
            pkt[6] = (unsigned char)id;
            pkt[7] = (unsigned char)(p->index >> 8);
            pkt[8] = (unsigned char)p->index;
            pkt[9] = (unsigned char)(sent >> 8);
            pkt[10] = (unsigned char)sent;
            p->err = send_all(p->fd, pkt, PUB_LEN);
            sent++;
        } else {
            p->err = read_puback(p->fd, deadline);
            acked++;
        }
    }
    p->ms = th_now_ms() - start;
    return NULL;
}

/* Connects n publishers "pub0".. (main thread) and starts their threads. */
static void pubs_start(th_ctx_t *t, pub_t *pubs, int n, int count)
{
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof id, "pub%d", i);
        pubs[i] = (pub_t){.fd = th_mqtt_open(t->port, 4, id, 0x02, 60),
                          .index = i, .count = count};
    }
    for (int i = 0; i < n; i++)
        assert_int_equal(pthread_create(&pubs[i].thread, NULL, pub_main, &pubs[i]), 0);
}

/* Joins the publishers; fails unless every one got all its PUBACKs. */
static void pubs_join(pub_t *pubs, int n)
{
    for (int i = 0; i < n; i++) {
        pthread_join(pubs[i].thread, NULL);
        if (pubs[i].err != 0)
            fail_msg("publisher %d: %s after %lld ms", i, strerror(pubs[i].err),
                     (long long)pubs[i].ms);
        th_close(pubs[i].fd);
    }
}

/* ---- subscriber --------------------------------------------------------- */

/* Opens a raw v3.1.1 client `id` (CONNECT flags as given) subscribed to
 * "t" at QoS 1. */
static int sub_open(th_ctx_t *t, const char *id, uint8_t flags)
{
    static const unsigned char sub[] = {0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 't', 0x01};
    static const unsigned char suback[] = {0x90, 0x03, 0x00, 0x01, 0x01};
    int fd = th_mqtt_open(t->port, 4, id, flags, 60);
    th_send(fd, sub, sizeof sub);
    th_expect(fd, suback, sizeof suback, TH_WAIT_MS);
    return fd;
}

/* What a subscriber has seen: next expected sequence per publisher. */
typedef struct seen_s {
    int next[N_PUBS];
    int total;
} seen_t;

/* Checks one received PUBLISH (QoS 1 "t", 4-byte payload) against s:
 * exactly the next message of its publisher when gaps are not allowed,
 * else any later one. Acknowledges it. */
static void take_publish(int fd, const unsigned char *pkt, int n, seen_t *s,
                         bool gaps_allowed)
{
    unsigned char ack[] = {0x40, 0x02, pkt[5], pkt[6]};
    if (n != (int)PUB_LEN || pkt[0] != 0x32 || memcmp(pkt + 1, PUB_TMPL + 1, 4) != 0) {
        th_hexdump("received", pkt, (size_t)(n > 0 ? n : 0));
        fail_msg("expected a QoS 1 PUBLISH on \"t\" with a 4-byte payload");
    }
    int p = pkt[7] << 8 | pkt[8], seq = pkt[9] << 8 | pkt[10];
    if (p >= N_PUBS)
        fail_msg("unknown publisher %d", p);
    if (seq < s->next[p] || (!gaps_allowed && seq != s->next[p]))
        fail_msg("publisher %d: got message %d, expected %s%d (duplicate or "
                 "out of order)", p, seq, gaps_allowed ? ">= " : "", s->next[p]);
    s->next[p] = seq + 1;
    s->total++;
    th_send(fd, ack, sizeof ack);
}

/* Reads and acknowledges messages: one per SLOW_GAP_MS for SLOW_MS, then
 * as fast as they come, until `want` arrived (want > 0; a missing message
 * fails the test after 10 s) or, with want 0, until 1 s of silence once
 * *done is set. */
static void sub_consume(int fd, seen_t *s, int want, bool gaps_allowed,
                        atomic_int *done)
{
    unsigned char buf[64];
    int64_t start = th_now_ms();
    while (want == 0 || s->total < want) {
        if (th_now_ms() - start > RUN_MS)
            fail_msg("subscriber: %d messages after %d ms", s->total, RUN_MS);
        if (th_now_ms() - start < SLOW_MS)
            th_sleep_ms(SLOW_GAP_MS);
        bool finished = done != NULL && atomic_load(done);
        int n = th_try_read_packet(fd, buf, sizeof buf,
                                   want > 0 ? 10000 : (finished ? 1000 : 200));
        if (n == -ETIMEDOUT && want == 0 && finished)
            break;
        if (n == -ETIMEDOUT && want == 0)
            continue;
        if (n <= 0)
            fail_msg("subscriber: read failed (%d) after %d messages", n, s->total);
        take_publish(fd, buf, n, s, gaps_allowed);
    }
}

/* ---- stop line ------------------------------------------------------------ */

/* The "N queue-full" count of the "uvmq stopped:" line. */
static unsigned long long queue_full_count(const char *log)
{
    unsigned long long q0 = 0, qf = 0;
    const char *d = strstr(log, "uvmq stopped:");
    d = d != NULL ? strstr(d, "dropped: ") : NULL;
    if (d == NULL || sscanf(d, "dropped: %llu qos0, %llu queue-full", &q0, &qf) != 2)
        fail_msg("no parsable \"uvmq stopped: ... dropped:\" line in the log");
    return qf;
}

/* ---- tests ------------------------------------------------------------- */

/* Thread that joins the publishers and sets *done (for want-0 reads). */
typedef struct joiner_s {
    pub_t *pubs;
    int n;
    atomic_int done;
} joiner_t;

static void *join_main(void *arg)
{
    joiner_t *j = arg;
    for (int i = 0; i < j->n; i++)
        pthread_join(j->pubs[i].thread, NULL);
    atomic_store(&j->done, 1);
    return NULL;
}

static void slow_subscriber_throttles_publishers_and_loses_nothing(th_ctx_t *t)
{
    static pub_t pubs[N_PUBS];
    seen_t seen = {0};
    int sub = sub_open(t, "slow-sub", 0x02);
    pubs_start(t, pubs, N_PUBS, PER_PUB);
    sub_consume(sub, &seen, N_PUBS * PER_PUB, false, NULL);
    pubs_join(pubs, N_PUBS);
    for (int i = 0; i < N_PUBS; i++)
        assert_int_equal(seen.next[i], PER_PUB);
    th_expect_silence(sub, 300); /* exactly once: nothing more */
    th_close(sub);
    char *log = th_broker_stop_log(t->broker);
    int drop_lines = th_count(log, "dropping QoS 1/2");
    int paused = th_count(log, "reading paused");
    unsigned long long qf = queue_full_count(log);
    free(log);
    fprintf(stderr, "# %d publisher pauses logged, %llu queue-full drops\n", paused, qf);
    assert_int_equal(drop_lines, 0);
    assert_int_equal(qf, 0);
    assert_true(paused > 0); /* the slow phase did throttle */
}

static void without_throttling_a_slow_subscriber_loses_messages(th_ctx_t *t)
{
    static pub_t pubs[N_PUBS];
    joiner_t j = {.pubs = pubs, .n = N_PUBS};
    pthread_t jt;
    seen_t seen = {0};
    int sub = sub_open(t, "slow-sub", 0x02);
    pubs_start(t, pubs, N_PUBS, PER_PUB);
    assert_int_equal(pthread_create(&jt, NULL, join_main, &j), 0);
    sub_consume(sub, &seen, 0, true, &j.done);
    pthread_join(jt, NULL);
    for (int i = 0; i < N_PUBS; i++) {
        if (pubs[i].err != 0)
            fail_msg("publisher %d: %s", i, strerror(pubs[i].err));
        th_close(pubs[i].fd);
    }
    th_close(sub);
    char *log = th_broker_stop_log(t->broker);
    unsigned long long qf = queue_full_count(log);
    int drop_lines = th_count(log, "dropping QoS 1/2");
    free(log);
    fprintf(stderr, "# received %d, %llu queue-full drops\n", seen.total, qf);
    assert_true(qf > 0);
    assert_int_equal(drop_lines, 1); /* logged once per session */
    assert_int_equal((unsigned long long)seen.total + qf, N_PUBS * PER_PUB);
}

static void offline_session_drops_while_online_subscriber_gets_all(th_ctx_t *t)
{
    static const unsigned char disconnect[] = {0xe0, 0x00};
    static pub_t pub;
    seen_t fast = {0}, back = {0};
    int off = sub_open(t, "offline-sub", 0x00); /* clean session 0 */
    th_send(off, disconnect, sizeof disconnect);
    th_expect_closed(off, TH_WAIT_MS);
    th_close(off);
    int sub = sub_open(t, "fast-sub", 0x02);
    unsigned char buf[64];
    pubs_start(t, &pub, 1, OFFLINE_N);
    while (fast.total < OFFLINE_N) /* as fast as it can */
        take_publish(sub, buf, th_read_packet(sub, buf, sizeof buf, 10000), &fast, false);
    pubs_join(&pub, 1);
    fprintf(stderr, "# publisher done in %lld ms\n", (long long)pub.ms);
    assert_true(pub.ms < 20000); /* not held back by the offline session */
    th_expect_silence(sub, 200);
    th_close(sub);
    /* The offline session kept the first QUEUE_MAX messages. */
    static const unsigned char connack_present[] = {0x20, 0x02, 0x01, 0x00};
    static const unsigned char connect[] = {
        0x10, 0x17, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x00, 0x00, 0x3c,
        0x00, 0x0b, 'o', 'f', 'f', 'l', 'i', 'n', 'e', '-', 's', 'u', 'b'};
    off = th_connect(t->port);
    th_send(off, connect, sizeof connect);
    th_expect(off, connack_present, sizeof connack_present, TH_WAIT_MS);
    while (back.total < QUEUE_MAX)
        take_publish(off, buf, th_read_packet(off, buf, sizeof buf, TH_WAIT_MS), &back, false);
    th_expect_silence(off, 300);
    th_close(off);
    char *log = th_broker_stop_log(t->broker);
    unsigned long long qf = queue_full_count(log);
    free(log);
    assert_int_equal(qf, OFFLINE_N - QUEUE_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_TEST_CFG(slow_subscriber_throttles_publishers_and_loses_nothing,
                    "{\"max_queued_messages\": 100, \"max_inflight\": 10}\n"),
        TH_TEST_CFG(without_throttling_a_slow_subscriber_loses_messages,
                    "{\"max_queued_messages\": 100, \"max_inflight\": 10, "
                    "\"throttle_publishers\": false}\n"),
        TH_TEST_CFG(offline_session_drops_while_online_subscriber_gets_all,
                    "{\"max_queued_messages\": 100, \"max_inflight\": 10}\n"),
    };
    return cmocka_run_group_tests_name("integration/09-throttle", tests, NULL, NULL);
}

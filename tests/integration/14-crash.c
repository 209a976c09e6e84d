/*
 * 14-crash - QoS 1/2 traffic through repeated SIGKILLs of the broker.
 *
 * Scenario: publisher "cp1" (QoS 1) and "cp2" (QoS 2), both v3.1.1 with
 * clean session 0, send numbered messages to "crash/1" and "crash/2"; the
 * persistent subscriber "csub" (QoS 2 on "crash/#") is online part of the
 * time. The broker is SIGKILLed at random moments (seeded rand, seed
 * printed; TH_SEED repeats a run) CYCLES times and restarted on the same
 * data dir; every client reconnects and resends its unfinished flows
 * (MQTT-4.4.0-1). At the end: every message a publisher got PUBACK/PUBREC
 * for was delivered, no QoS 2 message twice, and the first deliveries of
 * the QoS 1 messages came in the order they were published (MQTT-4.6.0).
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/integration/harness/harness.h"

#define N_PUBS 2
#define MSGS 120          /* messages per publisher */
#define CYCLES 12         /* SIGKILL + restart cycles */
#define WINDOW 8          /* unfinished flows per publisher */
#define PAYLOAD_LEN 24
#define IN_CAP 65536
#define FINAL_MS 30000    /* bound of the last phase */

enum { UNSENT = 0, SENT, RELEASED, DONE }; /* a publisher's message state */

/* A raw client connection with its unparsed input. fd -1 = offline. */
typedef struct conn_s {
    int fd;
    size_t n;
    unsigned char in[IN_CAP];
} conn_t;

typedef struct pub_s {
    const char *id;
    const char *topic;
    int qos;
    conn_t c;
    int next;                /* next sequence number never sent */
    int inflight;            /* in SENT or RELEASED */
    int64_t next_send_at;    /* pacing of new messages */
    int resent;              /* flows resumed after a reconnect */
    uint8_t state[MSGS];
    bool acked[MSGS];        /* PUBACK (QoS 1) or PUBREC (QoS 2) seen */
} pub_t;

typedef struct sub_s {
    conn_t c;
    uint16_t pending[256];   /* QoS 2 ids taken, PUBREL not seen yet */
    int n_pending;
    int deliveries[N_PUBS][MSGS];
    int order[N_PUBS][MSGS]; /* sequence numbers in first-delivery order */
    int n_order[N_PUBS];
    int n_dup_qos1;
} sub_t;

typedef struct crash_s {
    th_ctx_t *t;
    pub_t pubs[N_PUBS];
    sub_t sub;
    unsigned seed;
    int kills;
} crash_t;

/* ---- connections ---------------------------------------------------------- */

/* Connects client id with clean session 0; returns session present. */
static bool conn_open(conn_t *c, uint16_t port, const char *id)
{
    th_connect_t o = {.version = 4, .client_id = id, .clean = false,
                      .keepalive = 60};
    bool sp = false;
    c->fd = th_mqtt_connect(port, &o, &sp);
    c->n = 0;
    return sp;
}

/* Closes the connection (after DISCONNECT if polite). */
static void conn_drop(conn_t *c, bool polite)
{
    static const unsigned char disconnect[] = {0xe0, 0x00};
    if (c->fd >= 0) {
        if (polite)
            th_try_send(c->fd, disconnect, sizeof disconnect);
        th_close(c->fd);
    }
    c->fd = -1;
    c->n = 0;
}

/* Sends bytes; a failure can only mean the broker went away, which the
 * test never causes while a cycle runs. */
static void conn_send(conn_t *c, const void *buf, size_t len)
{
    int rc = th_try_send(c->fd, buf, len);
    if (rc != 0)
        fail_msg("send on fd %d failed: %s", c->fd, strerror(-rc));
}

/* Length of the first whole packet in c->in, or 0 if incomplete. */
static size_t conn_packet_len(const conn_t *c)
{
    size_t rem = 0, i = 1;
    for (; i < c->n && i <= 4; i++) {
        rem |= (size_t)(c->in[i] & 0x7f) << (7 * (i - 1));
        if ((c->in[i] & 0x80) == 0)
            return i + 1 + rem <= c->n ? i + 1 + rem : 0;
    }
    if (i > 4)
        fail_msg("malformed remaining length from the broker");
    return 0;
}

/* Reads what is available; fails the test if the broker closed. */
static void conn_fill(conn_t *c)
{
    ssize_t r = recv(c->fd, c->in + c->n, IN_CAP - c->n, MSG_DONTWAIT);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
        fail_msg("the broker closed fd %d during a cycle", c->fd);
    if (r > 0)
        c->n += (size_t)r;
}

/* Removes the first len bytes of input. */
static void conn_consume(conn_t *c, size_t len)
{
    memmove(c->in, c->in + len, c->n - len);
    c->n -= len;
}

/* ---- publishers ------------------------------------------------------------ */

/* Packet id of sequence number seq: unique within the window. */
static uint16_t seq_id(int seq)
{
    return (uint16_t)(seq + 1);
}

/* Sends the PUBLISH of seq (payload: publisher index, seq, padding). */
static void pub_send(pub_t *p, int index, int seq, bool dup)
{
    unsigned char payload[PAYLOAD_LEN], pkt[128];
    memset(payload, 'x', sizeof payload);
    snprintf((char *)payload, sizeof payload, "%d:%06d", index, seq);
    size_t n = th_build_publish(pkt, sizeof pkt, 4, p->topic, p->qos, false,
                                dup, seq_id(seq), payload, sizeof payload);
    conn_send(&p->c, pkt, n);
}

/* Sends a 4-byte acknowledgement on c. */
static void conn_ack(conn_t *c, uint8_t first, uint16_t id)
{
    unsigned char ack[] = {first, 0x02, (unsigned char)(id >> 8),
                           (unsigned char)(id & 0xff)};
    conn_send(c, ack, sizeof ack);
}

/* After a (re)connect: resends every unfinished flow in order, PUBLISH
 * with DUP or PUBREL (MQTT-4.4.0-1). */
static void pub_resend(pub_t *p, int index)
{
    for (int seq = 0; seq < p->next; seq++) {
        if (p->state[seq] == SENT)
            pub_send(p, index, seq, true);
        else if (p->state[seq] == RELEASED)
            conn_ack(&p->c, 0x62, seq_id(seq));
        p->resent += p->state[seq] == SENT || p->state[seq] == RELEASED;
    }
}

/* Handles one acknowledgement the broker sent to publisher p. */
static void pub_on_packet(pub_t *p, const unsigned char *pkt, size_t len)
{
    int seq = len == 4 ? (pkt[2] << 8 | pkt[3]) - 1 : -1;
    if (seq < 0 || seq >= p->next)
        fail_msg("%s: unexpected packet 0x%02x (%zu bytes, id seq %d)", p->id,
                 pkt[0], len, seq);
    if (pkt[0] == 0x40 && p->qos == 1 && p->state[seq] == SENT) {
        p->acked[seq] = true;
        p->state[seq] = DONE;
        p->inflight--;
    } else if (pkt[0] == 0x50 && p->qos == 2 && p->state[seq] != DONE) {
        p->acked[seq] = true; /* the broker holds it now */
        p->state[seq] = RELEASED;
        conn_ack(&p->c, 0x62, seq_id(seq));
    } else if (pkt[0] == 0x70 && p->qos == 2 && p->state[seq] == RELEASED) {
        p->state[seq] = DONE;
        p->inflight--;
    } else if (pkt[0] != 0x40 && pkt[0] != 0x70) {
        fail_msg("%s: unexpected packet 0x%02x for seq %d in state %d", p->id,
                 pkt[0], seq, p->state[seq]);
    }
}

/* Sends a new message if the window, the quota and the pacing allow. */
static void pub_maybe_send(crash_t *k, int index, int quota)
{
    pub_t *p = &k->pubs[index];
    int64_t now = th_now_ms();
    if (p->c.fd < 0 || p->inflight >= WINDOW || p->next >= quota ||
        now < p->next_send_at)
        return;
    int seq = p->next++;
    p->state[seq] = SENT;
    p->inflight++;
    pub_send(p, index, seq, false);
    /* Mostly bursts that fill the window, sometimes a pause. */
    p->next_send_at = now + (rand_r(&k->seed) % 3 == 0 ? rand_r(&k->seed) % 15 : 0);
}

/* ---- subscriber ------------------------------------------------------------ */

/* Records a delivery of (publisher, seq); counts first deliveries. */
static void sub_record(sub_t *s, int pub, int seq, int qos)
{
    if (s->deliveries[pub][seq]++ == 0)
        s->order[pub][s->n_order[pub]++] = seq;
    else if (qos == 1)
        s->n_dup_qos1++;
}

/* Handles a PUBLISH to the subscriber as a QoS 2 receiver does (MQTT
 * 4.3.3, method B): an id awaiting PUBREL is not delivered again. */
static void sub_on_publish(sub_t *s, const unsigned char *pkt, size_t len)
{
    th_publish_t p;
    int pub = -1, seq = -1;
    char text[PAYLOAD_LEN + 1] = "";
    if (th_parse_publish(pkt, len, 4, &p) && p.len == PAYLOAD_LEN) {
        memcpy(text, p.payload, PAYLOAD_LEN);
        sscanf(text, "%d:%d", &pub, &seq);
    }
    if (pub < 0 || pub >= N_PUBS || seq < 0 || seq >= MSGS || p.qos == 0) {
        th_hexdump("received", pkt, len);
        fail_msg("csub: unexpected PUBLISH");
    }
    bool known = false;
    for (int i = 0; i < s->n_pending; i++)
        known = known || s->pending[i] == p.id;
    if (p.qos == 1) {
        sub_record(s, pub, seq, 1);
        conn_ack(&s->c, 0x40, p.id);
    } else {
        if (!known && s->n_pending == 256)
            fail_msg("csub: more than 256 QoS 2 flows awaiting PUBREL");
        if (!known) {
            s->pending[s->n_pending++] = p.id;
            sub_record(s, pub, seq, 2);
        }
        conn_ack(&s->c, 0x50, p.id);
    }
}

/* Handles PUBREL (forget the id, PUBCOMP) or PUBLISH to the subscriber. */
static void sub_on_packet(sub_t *s, const unsigned char *pkt, size_t len)
{
    if (pkt[0] == 0x62 && len == 4) {
        uint16_t id = (uint16_t)(pkt[2] << 8 | pkt[3]);
        for (int i = 0; i < s->n_pending; i++)
            if (s->pending[i] == id)
                s->pending[i--] = s->pending[--s->n_pending];
        conn_ack(&s->c, 0x70, id);
    } else if ((pkt[0] & 0xf0) == 0x30) {
        sub_on_publish(s, pkt, len);
    } else {
        th_hexdump("received", pkt, len);
        fail_msg("csub: unexpected packet");
    }
}

/* Connects the subscriber; its session exists since the set-up. */
static void sub_connect(crash_t *k)
{
    if (!conn_open(&k->sub.c, k->t->port, "csub"))
        fail_msg("csub: session present 0 after %d kills", k->kills);
}

/* ---- the loop --------------------------------------------------------------- */

/* The connection of client i: publishers 0..N_PUBS-1, then csub. */
static conn_t *conn_of(crash_t *k, int i)
{
    return i < N_PUBS ? &k->pubs[i].c : &k->sub.c;
}

/* Handles every whole packet buffered on client i's connection. */
static void dispatch(crash_t *k, int i)
{
    conn_t *c = conn_of(k, i);
    size_t len;
    while ((len = conn_packet_len(c)) > 0) {
        if (i < N_PUBS)
            pub_on_packet(&k->pubs[i], c->in, len);
        else
            sub_on_packet(&k->sub, c->in, len);
        conn_consume(c, len);
    }
}

/* Waits at most timeout_ms for input, then reads and handles it. */
static void pump(crash_t *k, int timeout_ms)
{
    struct pollfd pfd[N_PUBS + 1];
    int who[N_PUBS + 1], n = 0;
    for (int i = 0; i <= N_PUBS; i++) {
        if (conn_of(k, i)->fd >= 0) {
            pfd[n] = (struct pollfd){.fd = conn_of(k, i)->fd, .events = POLLIN};
            who[n++] = i;
        }
    }
    if (poll(pfd, (nfds_t)n, timeout_ms) <= 0)
        return;
    for (int j = 0; j < n; j++) {
        if ((pfd[j].revents & (POLLIN | POLLHUP | POLLERR)) != 0)
            conn_fill(conn_of(k, who[j]));
        dispatch(k, who[j]);
    }
}

/* Connects every publisher and resends its unfinished flows; the
 * subscriber comes online with probability 2/3. */
static void reconnect_all(crash_t *k)
{
    for (int i = 0; i < N_PUBS; i++) {
        conn_open(&k->pubs[i].c, k->t->port, k->pubs[i].id);
        pub_resend(&k->pubs[i], i);
    }
    if (rand_r(&k->seed) % 3 != 0)
        sub_connect(k);
}

/* Messages the publishers have started so far. */
static int total_sent(const crash_t *k)
{
    int n = 0;
    for (int i = 0; i < N_PUBS; i++)
        n += k->pubs[i].next;
    return n;
}

/* Runs traffic for about ms, toggling the subscriber once at a random
 * moment with probability 1/2. Half the cycles end instead 0-2 ms after
 * the 1st-8th new message of the cycle, so that kills land while flows
 * are open. quota: messages each publisher may have started by now. */
static void run_for(crash_t *k, int ms, int quota)
{
    int64_t start = th_now_ms(), end = start + ms;
    int64_t toggle_at = rand_r(&k->seed) % 2 ? start + rand_r(&k->seed) % (ms + 1)
                                             : end + 1;
    int trigger = rand_r(&k->seed) % 2 ? 1 + (int)(rand_r(&k->seed) % 8) : 0;
    int sent0 = total_sent(k);
    while (th_now_ms() < end) {
        if (th_now_ms() >= toggle_at) {
            if (k->sub.c.fd >= 0)
                conn_drop(&k->sub.c, rand_r(&k->seed) % 2 == 0);
            else
                sub_connect(k);
            toggle_at = end + 1;
        }
        for (int i = 0; i < N_PUBS; i++)
            pub_maybe_send(k, i, quota);
        if (trigger > 0 && total_sent(k) - sent0 >= trigger) {
            end = th_now_ms() + rand_r(&k->seed) % 3;
            trigger = 0;
        }
        pump(k, 1);
    }
}

/* SIGKILLs the broker, forgets the dead connections, restarts it. */
static void kill_and_restart(crash_t *k)
{
    th_broker_kill(k->t->broker);
    k->kills++;
    for (int i = 0; i < N_PUBS; i++)
        conn_drop(&k->pubs[i].c, false);
    conn_drop(&k->sub.c, false);
    th_broker_restart(k->t->broker, NULL);
    k->t->port = k->t->broker->port;
}

/* True once every publisher finished every flow and the subscriber has
 * seen every acknowledged message with no QoS 2 flow open. */
static bool all_done(const crash_t *k)
{
    bool done = k->sub.n_pending == 0;
    for (int i = 0; i < N_PUBS && done; i++) {
        for (int seq = 0; seq < MSGS && done; seq++)
            done = k->pubs[i].state[seq] == DONE &&
                   k->sub.deliveries[i][seq] > 0;
    }
    return done;
}

/* The last phase: everyone online until all flows end (bounded), then
 * 500 ms more to catch late duplicates. */
static void finish(crash_t *k)
{
    int64_t deadline = th_now_ms() + FINAL_MS;
    if (k->sub.c.fd < 0)
        sub_connect(k);
    while (!all_done(k) && th_now_ms() < deadline) {
        for (int i = 0; i < N_PUBS; i++)
            pub_maybe_send(k, i, MSGS);
        pump(k, 5);
    }
    int64_t quiet_end = th_now_ms() + 500;
    while (th_now_ms() < quiet_end)
        pump(k, 5);
}

/* ---- checks ----------------------------------------------------------------- */

/* Fails unless every acked message arrived, no QoS 2 one twice, and the
 * QoS 1 first deliveries of each publisher are in publish order. */
static void check(const crash_t *k)
{
    int errors = 0;
    for (int i = 0; i < N_PUBS; i++) {
        const pub_t *p = &k->pubs[i];
        for (int seq = 0; seq < MSGS; seq++) {
            int d = k->sub.deliveries[i][seq];
            bool bad = (p->acked[seq] && d == 0) || (p->qos == 2 && d > 1) ||
                       p->state[seq] != DONE;
            if (bad && errors++ < 20)
                print_error("# %s seq %d: acked %d, state %d, delivered %d\n",
                            p->id, seq, (int)p->acked[seq], p->state[seq], d);
        }
        for (int j = 1; p->qos == 1 && j < k->sub.n_order[i]; j++) {
            if (k->sub.order[i][j] < k->sub.order[i][j - 1] && errors++ < 20)
                print_error("# %s: first delivery of seq %d after seq %d\n",
                            p->id, k->sub.order[i][j], k->sub.order[i][j - 1]);
        }
    }
    print_error("# %d kills; flows resumed: %s %d, %s %d; %d QoS 1 "
                "duplicates (allowed)\n", k->kills, k->pubs[0].id,
                k->pubs[0].resent, k->pubs[1].id, k->pubs[1].resent,
                k->sub.n_dup_qos1);
    if (errors > 0)
        fail_msg("%d problems (seed %u; rerun with TH_SEED=%u)", errors,
                 k->seed, k->seed);
}

/* Subscribes csub at QoS 2 and opens the publishers for the first time. */
static void set_up(crash_t *k)
{
    static const char *const ids[N_PUBS] = {"cp1", "cp2"};
    static const char *const topics[N_PUBS] = {"crash/1", "crash/2"};
    th_connect_t o = {.version = 4, .client_id = "csub", .clean = true,
                      .keepalive = 60};
    th_mqtt_disconnect(th_mqtt_connect(k->t->port, &o, NULL));
    conn_open(&k->sub.c, k->t->port, "csub");
    th_mqtt_subscribe(k->sub.c.fd, 4, 1, "crash/#", 2);
    for (int i = 0; i < N_PUBS; i++) {
        k->pubs[i].id = ids[i];
        k->pubs[i].topic = topics[i];
        k->pubs[i].qos = i + 1;
        k->pubs[i].c.fd = -1;
        conn_open(&k->pubs[i].c, k->t->port, ids[i]);
    }
    th_sleep_ms(300); /* the subscription is committed */
}

static void acked_messages_survive_repeated_sigkill(th_ctx_t *t)
{
    static crash_t state; /* large; static so a failure leaks nothing */
    crash_t *k = &state;
    const char *env = getenv("TH_SEED");
    memset(k, 0, sizeof *k);
    k->t = t;
    k->sub.c.fd = -1;
    k->seed = env != NULL ? (unsigned)strtoul(env, NULL, 10)
                          : (unsigned)time(NULL) ^ (unsigned)getpid();
    unsigned seed0 = k->seed;
    print_error("# seed %u\n", seed0);
    set_up(k);
    for (int cycle = 0; cycle < CYCLES; cycle++) {
        if (cycle > 0)
            reconnect_all(k);
        run_for(k, 30 + (int)(rand_r(&k->seed) % 300),
                MSGS * (cycle + 1) / CYCLES);
        kill_and_restart(k);
    }
    reconnect_all(k);
    finish(k);
    k->seed = seed0;
    check(k);
    for (int i = 0; i < N_PUBS; i++)
        conn_drop(&k->pubs[i].c, true);
    conn_drop(&k->sub.c, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_TEST(acked_messages_survive_repeated_sigkill),
    };
    return cmocka_run_group_tests_name("integration/14-crash", tests, NULL,
                                       NULL);
}

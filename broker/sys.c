/*
 * sys.c - the broker's statistics as retained messages under
 * $SYS/broker/..., every sys_interval seconds, with mosquitto's topic
 * names and text payloads (docs/sys.md lists them).
 *
 * One timer on worker loop 0 takes a snapshot (broker_stats, the same
 * one GET /v1/stats reads) and publishes each value whose text changed
 * since the last update, through deliver__publish_sys: retained in memory,
 * never stored, fanned out like any QoS 0 message. A subscriber to
 * "$SYS/#" gets the current values at once (retained), then the changes;
 * "#" never matches them (MQTT-4.7.2-1, router.c). Nothing of this runs
 * with sys_interval 0, and the delivery path knows nothing of it.
 *
 * Load averages follow the Unix load average, as mosquitto's do: at each
 * update the rate of the last interval, as a count per minute, pulls each
 * average toward it by 1 - exp(-dt / window), with windows of 1, 5 and 15
 * minutes, starting from 0.
 */
#include "sys_int.h"
#include "loop_int.h"

#include "deliver_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

/* The values behind the topics, from one snapshot (values()). */
enum sys_value {
    V_BYTES_IN, V_BYTES_OUT, V_CONNECTED, V_DISCONNECTED, V_TOTAL, V_MAXIMUM,
    V_SESS_EXPIRED, V_INFLIGHT, V_PKTS_IN, V_PKTS_OUT, V_DROPPED, V_PUB_IN,
    V_PUB_OUT, V_RETAINED, V_SUBS, V_QUEUED, V_MSG_EXPIRED, V_HTTP_CONNS,
    V_REFUSED, V_CONNECTS, V_SOCKETS, V_AUTH_FAILED, V_AUTH_ANON, V_ACL_PUB, V_ACL_SUB,
    V_ACL_READ, N_VALUES
};

typedef struct sys_topic_s {
    const char *topic;
    enum sys_value v;
} sys_topic_t;

/* Integer values, one topic each. Names are mosquitto's (mosquitto(8),
 * "BROKER STATUS") except those under $SYS/broker/uvmq/, which mosquitto
 * has no name for. */
static const sys_topic_t counts[] = {
    {"$SYS/broker/bytes/received", V_BYTES_IN},
    {"$SYS/broker/bytes/sent", V_BYTES_OUT},
    {"$SYS/broker/clients/connected", V_CONNECTED},
    {"$SYS/broker/clients/disconnected", V_DISCONNECTED},
    {"$SYS/broker/clients/total", V_TOTAL},
    {"$SYS/broker/clients/maximum", V_MAXIMUM},
    {"$SYS/broker/clients/expired", V_SESS_EXPIRED},
    {"$SYS/broker/messages/inflight", V_INFLIGHT},
    {"$SYS/broker/messages/received", V_PKTS_IN},
    {"$SYS/broker/messages/sent", V_PKTS_OUT},
    {"$SYS/broker/publish/messages/dropped", V_DROPPED},
    {"$SYS/broker/publish/messages/received", V_PUB_IN},
    {"$SYS/broker/publish/messages/sent", V_PUB_OUT},
    {"$SYS/broker/retained messages/count", V_RETAINED},
    {"$SYS/broker/subscriptions/count", V_SUBS},
    {"$SYS/broker/uvmq/messages/queued", V_QUEUED},
    {"$SYS/broker/uvmq/messages/expired", V_MSG_EXPIRED},
    {"$SYS/broker/uvmq/connections/http", V_HTTP_CONNS},
    {"$SYS/broker/uvmq/connections/refused", V_REFUSED},
    {"$SYS/broker/uvmq/auth/bad_credentials", V_AUTH_FAILED},
    {"$SYS/broker/uvmq/auth/anonymous_refused", V_AUTH_ANON},
    {"$SYS/broker/uvmq/acl/denied/publish", V_ACL_PUB},
    {"$SYS/broker/uvmq/acl/denied/subscribe", V_ACL_SUB},
    {"$SYS/broker/uvmq/acl/denied/deliver", V_ACL_READ},
};
#define N_COUNTS (sizeof counts / sizeof counts[0])

/* Counters with load averages: "<topic>/1min", "/5min", "/15min". */
static const sys_topic_t rates[] = {
    {"$SYS/broker/load/bytes/received", V_BYTES_IN},
    {"$SYS/broker/load/bytes/sent", V_BYTES_OUT},
    {"$SYS/broker/load/connections", V_CONNECTS},
    {"$SYS/broker/load/sockets", V_SOCKETS},
    {"$SYS/broker/load/messages/received", V_PKTS_IN},
    {"$SYS/broker/load/messages/sent", V_PKTS_OUT},
    {"$SYS/broker/load/publish/received", V_PUB_IN},
    {"$SYS/broker/load/publish/sent", V_PUB_OUT},
    {"$SYS/broker/load/publish/dropped", V_DROPPED},
};
#define N_RATES (sizeof rates / sizeof rates[0])

/* The averaging windows, seconds, and their topic suffixes. */
static const double window_s[3] = {60.0, 300.0, 900.0};
static const char *const window_name[3] = {"1min", "5min", "15min"};

#define SYS_UPTIME "$SYS/broker/uptime"
#define SYS_VERSION "$SYS/broker/version"

/* Slots of what was last published: counts, then loads, then these two. */
#define SLOT_LOAD(r, w) (N_COUNTS + (r) * 3 + (w))
#define SLOT_UPTIME (N_COUNTS + N_RATES * 3)
#define SLOT_VERSION (SLOT_UPTIME + 1)
#define N_SLOTS (SLOT_VERSION + 1)

/* Longest payload: a 20-digit count, or "uvmq version " and the version. */
#define SYS_VALUE_MAX 48

/* Loop 0's $SYS publisher. Only loop 0's thread touches it. */
typedef struct sys_s {
    uv_timer_t timer;      /* timer.data = this; freed in its close cb */
    loop_t *l;
    uint64_t last_ms;      /* uv_now of the last update; 0 before the first */
    uint64_t max_online;   /* most clients connected at any update */
    uint64_t prev[N_RATES];   /* the rate counters at the last update */
    double load[N_RATES][3];  /* per minute, averaged over window_s[] */
    char last[N_SLOTS][SYS_VALUE_MAX]; /* payload last published; "" = none */
} sys_t;

int broker_topic_is_sys(const char *topic, size_t len)
{
    return len >= 4 && memcmp(topic, "$SYS", 4) == 0 && (len == 4 || topic[4] == '/');
}

/* The values of snapshot s; clients/maximum goes through y. */
static void values(sys_t *y, const broker_stats_t *s, uint64_t v[N_VALUES])
{
    /* online is per loop sweep and sessions is read now: clamp the skew */
    uint64_t online = s->online < s->sessions ? s->online : s->sessions;
    if (online > y->max_online) y->max_online = online;
    v[V_BYTES_IN] = s->bytes_in;
    v[V_BYTES_OUT] = s->bytes_out;
    v[V_CONNECTED] = online;
    v[V_DISCONNECTED] = s->sessions - online;
    v[V_TOTAL] = s->sessions;
    v[V_MAXIMUM] = y->max_online;
    v[V_SESS_EXPIRED] = s->sess_expired;
    v[V_INFLIGHT] = s->inflight;
    v[V_PKTS_IN] = s->pkts_in;
    v[V_PKTS_OUT] = s->pkts_out;
    /* what limits dropped; expiry is the publisher's wish, counted apart */
    v[V_DROPPED] = s->drop_qos0 + s->drop_queue + s->drop_size;
    v[V_PUB_IN] = s->msgs_in;
    v[V_PUB_OUT] = s->msgs_out;
    v[V_RETAINED] = s->retained;
    v[V_SUBS] = s->subs;
    v[V_QUEUED] = s->queued;
    v[V_MSG_EXPIRED] = s->expired;
    v[V_HTTP_CONNS] = s->http_conns;
    v[V_REFUSED] = s->refused;
    v[V_CONNECTS] = s->connects;
    v[V_SOCKETS] = s->accepted;
    v[V_AUTH_FAILED] = s->auth_failed;
    v[V_AUTH_ANON] = s->auth_anonymous;
    v[V_ACL_PUB] = s->acl_denied_publish;
    v[V_ACL_SUB] = s->acl_denied_subscribe;
    v[V_ACL_READ] = s->acl_denied_read;
}

/* Publishes payload on topic, retained, unless slot holds it already. */
static void put(sys_t *y, size_t slot, const char *topic, const char *payload)
{
    size_t plen = strlen(payload);
    if (strcmp(y->last[slot], payload) == 0) return;
    snprintf(y->last[slot], sizeof y->last[slot], "%s", payload);
    msg_t *m = msg_create(topic, strlen(topic), (const uint8_t *)payload, plen, NULL, 0, 0, 1,
                          SYS_VALUE_MAX, sizeof(msg_state_t));
    if (m == NULL) {
        y->last[slot][0] = '\0'; /* try again next time */
        return;
    }
    deliver__publish_sys(y->l, m);
    msg_release(&m);
}

/* Moves the load averages over the dt_ms since the last update. */
static void update_loads(sys_t *y, const uint64_t v[N_VALUES], uint64_t dt_ms)
{
    double dt = (double)dt_ms / 1000.0;
    for (size_t r = 0; r < N_RATES; r++) {
        uint64_t now = v[rates[r].v];
        double per_min = dt > 0 && now >= y->prev[r] ? (double)(now - y->prev[r]) * 60.0 / dt : 0;
        y->prev[r] = now;
        for (size_t w = 0; dt > 0 && w < 3; w++) {
            double keep = exp(-dt / window_s[w]);
            y->load[r][w] = per_min + keep * (y->load[r][w] - per_min);
        }
    }
}

/* One update: snapshot, loads, then every topic whose text changed. */
static void update(sys_t *y)
{
    broker_stats_t s;
    uint64_t v[N_VALUES];
    char text[SYS_VALUE_MAX], topic[64];
    uint64_t now = uv_now(&y->l->uv);
    broker_stats(y->l->b, &s);
    values(y, &s, v);
    update_loads(y, v, y->last_ms != 0 ? now - y->last_ms : 0);
    y->last_ms = now != 0 ? now : 1;
    for (size_t i = 0; i < N_COUNTS; i++) {
        snprintf(text, sizeof text, "%llu", (unsigned long long)v[counts[i].v]);
        put(y, i, counts[i].topic, text);
    }
    for (size_t r = 0; r < N_RATES; r++) {
        for (size_t w = 0; w < 3; w++) {
            snprintf(topic, sizeof topic, "%s/%s", rates[r].topic, window_name[w]);
            snprintf(text, sizeof text, "%.2f", y->load[r][w]);
            put(y, SLOT_LOAD(r, w), topic, text);
        }
    }
    snprintf(text, sizeof text, "%llu seconds", (unsigned long long)s.uptime_s);
    put(y, SLOT_UPTIME, SYS_UPTIME, text);
    put(y, SLOT_VERSION, SYS_VERSION, "uvmq version " UVMQ_VERSION);
}

static void on_tick(uv_timer_t *t)
{
    sys_t *y = t->data;
    if (!y->l->stopping) update(y);
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void sys__start(loop_t *l)
{
    uint32_t every = l->b->cfg->sys_interval;
    if (every == 0) return;
    sys_t *y = xcalloc(1, sizeof *y);
    y->l = l;
    uv_timer_init(&l->uv, &y->timer);
    y->timer.data = y;
    /* first update as soon as the loop runs: a subscriber never waits a
     * whole interval for the version and the first values */
    uv_timer_start(&y->timer, on_tick, 0, (uint64_t)every * 1000);
    l->sys = y;
    log_debug("$SYS statistics every %u s on worker loop %u", every, l->index);
}

void sys__close(loop_t *l)
{
    if (l->sys == NULL) return;
    uv_close((uv_handle_t *)&l->sys->timer, on_closed);
    l->sys = NULL;
}

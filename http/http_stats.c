/*
 * http_stats.c - GET /v1/stats (JSON, cJSON) and GET /metrics (Prometheus
 * text format 0.0.4) from one snapshot of the broker's counters.
 *
 * Any worker loop answers these from broker_stats (broker.c), which
 * reads only atomics, state behind a mutex (the retained trie, the session
 * map's shards) and the store's own copy (store_stats); sys.c publishes
 * the same snapshot under $SYS. docs/http.md lists every field.
 */
#include "http_int.h"

#include <cJSON.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- JSON ---- */

/* A member object holding name/value pairs (NULL name ends the list). */
static void add_obj(cJSON *root, const char *name, const char *const *keys,
                    const uint64_t *vals)
{
    cJSON *o = cJSON_AddObjectToObject(root, name);
    for (size_t i = 0; o != NULL && keys[i] != NULL; i++)
        cJSON_AddNumberToObject(o, keys[i], (double)vals[i]);
}

int http__stats_json(broker_t *b, char **out)
{
    broker_stats_t s;
    broker_stats(b, &s);
    cJSON *r = cJSON_CreateObject();
    if (r == NULL) return UVMQ_ENOMEM;
    cJSON_AddStringToObject(r, "version", UVMQ_VERSION);
    cJSON_AddNumberToObject(r, "uptime_s", (double)s.uptime_s);
    add_obj(r, "connections",
            (const char *const[]){"current", "http", "accepted", "refused", "closed", NULL},
            (uint64_t[]){s.conns, s.http_conns, s.accepted, s.refused, s.closed});
    add_obj(r, "messages", (const char *const[]){"in", "out", NULL},
            (uint64_t[]){s.msgs_in, s.msgs_out});
    add_obj(r, "bytes", (const char *const[]){"in", "out", NULL},
            (uint64_t[]){s.bytes_in, s.bytes_out});
    add_obj(r, "dropped",
            (const char *const[]){"qos0", "queue_full", "too_large_for_client", "expired", NULL},
            (uint64_t[]){s.drop_qos0, s.drop_queue, s.drop_size, s.expired});
    add_obj(r, "bad_input",
            (const char *const[]){"malformed", "too_large", "protocol_error", "tls_failed", NULL},
            (uint64_t[]){s.malformed, s.too_large, s.protocol_error, s.tls_failed});
    cJSON_AddNumberToObject(r, "subscriptions", (double)s.subs);
    add_obj(r, "shared",
            (const char *const[]){"members", "delivered", "moved", "dropped", NULL},
            (uint64_t[]){s.shared_subs, s.shared, s.shared_moved, s.shared_dropped});
    add_obj(r, "auth",
            (const char *const[]){"bad_credentials", "anonymous_refused", "busy", "cache_hits",
                                  NULL},
            (uint64_t[]){s.auth_failed, s.auth_anonymous, s.auth_busy, s.auth_cache_hits});
    add_obj(r, "acl_denied", (const char *const[]){"publish", "subscribe", "deliver", NULL},
            (uint64_t[]){s.acl_denied_publish, s.acl_denied_subscribe, s.acl_denied_read});
    cJSON_AddNumberToObject(r, "retained", (double)s.retained);
    cJSON_AddNumberToObject(r, "sessions", (double)s.sessions);
    add_obj(r, "queue", (const char *const[]){"queued", "inflight", NULL},
            (uint64_t[]){s.queued, s.inflight});
    cJSON_AddNumberToObject(r, "http_requests", (double)s.http_requests);
    add_obj(r, "storage",
            (const char *const[]){"commits", "failed_commits", "batches", "operations",
                                  "last_commit_us", "max_commit_us", "sum_commit_us", NULL},
            (uint64_t[]){s.st.commits, s.st.failed_commits, s.st.batches, s.st.ops,
                         s.st.last_commit_us, s.st.max_commit_us, s.st.sum_commit_us});
    *out = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return *out != NULL ? 0 : UVMQ_ENOMEM;
}

/* ---- Prometheus ---- */

/* Appends printf output to b. */
static int put(http_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int put(http_buf_t *b, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return UVMQ_EINVAL;
    return http__buf_put(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1,
                         SIZE_MAX);
}

/* One metric with HELP and TYPE, and value v. */
static int metric(http_buf_t *b, const char *name, const char *type, const char *help,
                  uint64_t v)
{
    int rc = put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    if (rc == 0) rc = put(b, "%s %llu\n", name, (unsigned long long)v);
    return rc;
}

/* The drops, one labelled series per kind. */
static int drops(http_buf_t *b, const broker_stats_t *s)
{
    static const char *const kind[] = {"qos0", "queue_full", "too_large_for_client", "expired"};
    const uint64_t v[] = {s->drop_qos0, s->drop_queue, s->drop_size, s->expired};
    int rc = put(b, "# HELP uvmq_messages_dropped_total Messages not delivered, by reason.\n"
                    "# TYPE uvmq_messages_dropped_total counter\n");
    for (size_t i = 0; rc == 0 && i < 4; i++)
        rc = put(b, "uvmq_messages_dropped_total{reason=\"%s\"} %llu\n", kind[i],
                 (unsigned long long)v[i]);
    return rc;
}

/* The storage commit latency histogram (store_hist_le_us: cumulative). */
static int commit_hist(http_buf_t *b, const store_stats_t *st)
{
    int rc = put(b, "# HELP uvmq_store_commit_seconds Time of one storage commit "
                    "(SQLite transaction with its fsync).\n"
                    "# TYPE uvmq_store_commit_seconds histogram\n");
    for (size_t i = 0; rc == 0 && i < STORE_HIST_BUCKETS; i++) {
        if (store_hist_le_us[i] == UINT64_MAX)
            rc = put(b, "uvmq_store_commit_seconds_bucket{le=\"+Inf\"} %llu\n",
                     (unsigned long long)st->hist[i]);
        else
            rc = put(b, "uvmq_store_commit_seconds_bucket{le=\"%g\"} %llu\n",
                     (double)store_hist_le_us[i] / 1e6, (unsigned long long)st->hist[i]);
    }
    if (rc == 0) rc = put(b, "uvmq_store_commit_seconds_sum %.6f\n", (double)st->sum_commit_us / 1e6);
    if (rc == 0)
        rc = put(b, "uvmq_store_commit_seconds_count %llu\n", (unsigned long long)st->commits);
    return rc;
}

int http__metrics_text(broker_t *b, http_buf_t *out)
{
    broker_stats_t s;
    broker_stats(b, &s);
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } m[] = {
#define M(n, t, h, f) {n, t, h, offsetof(broker_stats_t, f)}
        M("uvmq_uptime_seconds", "gauge", "Seconds since the broker started.", uptime_s),
        M("uvmq_connections", "gauge", "Open client connections (MQTT and HTTP/2).", conns),
        M("uvmq_http_connections", "gauge", "Open HTTP/2 connections.", http_conns),
        M("uvmq_connections_accepted_total", "counter", "Connections accepted.", accepted),
        M("uvmq_connections_refused_total", "counter", "Connections refused (max_connections).",
          refused),
        M("uvmq_connections_closed_total", "counter", "Connections closed.", closed),
        M("uvmq_messages_received_total", "counter", "Messages published to the broker.", msgs_in),
        M("uvmq_messages_sent_total", "counter", "Messages delivered to subscribers.", msgs_out),
        M("uvmq_bytes_received_total", "counter", "Bytes read from clients.", bytes_in),
        M("uvmq_bytes_sent_total", "counter", "Bytes written to clients.", bytes_out),
        M("uvmq_http_requests_total", "counter", "HTTP/2 requests answered.", http_requests),
        M("uvmq_malformed_total", "counter", "Malformed packets or frames.", malformed),
        M("uvmq_too_large_total", "counter", "Packets over max_packet_size.", too_large),
        M("uvmq_protocol_errors_total", "counter", "Protocol violations.", protocol_error),
        M("uvmq_tls_failures_total", "counter",
          "TLS connections closed by a failed handshake, a TLS error or no ALPN h2.", tls_failed),
        M("uvmq_subscriptions", "gauge", "Subscriptions (filter, subscriber).", subs),
        M("uvmq_shared_subscriptions", "gauge", "Members of shared subscription groups.",
          shared_subs),
        M("uvmq_shared_messages_total", "counter",
          "Messages a shared subscription group gave one of its members.", shared),
        M("uvmq_shared_moved_total", "counter",
          "Messages given to another member after theirs left or disconnected.", shared_moved),
        M("uvmq_shared_dropped_total", "counter",
          "Messages whose member left with no other member to take them.", shared_dropped),
        M("uvmq_auth_failures_total", "counter",
          "CONNECTs and HTTP requests refused: bad user name or password.", auth_failed),
        M("uvmq_auth_anonymous_refused_total", "counter",
          "CONNECTs refused: no user name on a listener without anonymous clients.",
          auth_anonymous),
        M("uvmq_auth_busy_total", "counter",
          "CONNECTs refused: max_auth_pending password checks queued.", auth_busy),
        M("uvmq_auth_cache_hits_total", "counter",
          "Credentials found in the cache of verified ones.", auth_cache_hits),
        M("uvmq_acl_denied_publish_total", "counter", "Publishes the ACL refused.",
          acl_denied_publish),
        M("uvmq_acl_denied_subscribe_total", "counter", "Subscription filters the ACL refused.",
          acl_denied_subscribe),
        M("uvmq_acl_denied_deliveries_total", "counter",
          "Deliveries withheld: the subscriber may not read the topic.", acl_denied_read),
        M("uvmq_retained_messages", "gauge", "Retained messages.", retained),
        M("uvmq_sessions", "gauge", "MQTT sessions, online or not.", sessions),
        M("uvmq_queued_messages", "gauge", "QoS 1/2 messages waiting in session queues.", queued),
        M("uvmq_inflight_messages", "gauge", "QoS 1/2 messages sent, not yet acknowledged.",
          inflight),
        M("uvmq_store_commits_total", "counter", "Storage commits.", st.commits),
        M("uvmq_store_failed_commits_total", "counter", "Storage commits that failed.",
          st.failed_commits),
        M("uvmq_store_operations_total", "counter", "Storage operations committed.", st.ops),
#undef M
    };
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof m / sizeof m[0]; i++)
        rc = metric(out, m[i].name, m[i].type, m[i].help,
                    *(const uint64_t *)((const char *)&s + m[i].off));
    if (rc == 0) rc = drops(out, &s);
    if (rc == 0) rc = commit_hist(out, &s.st);
    return rc;
}

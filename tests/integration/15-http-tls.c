/*
 * 15-http-tls.c - the HTTP/2 API over TLS (h2, negotiated by ALPN), with
 * the real curl.
 *
 * Scenario: the group makes a CA, a server certificate for 127.0.0.1 /
 * localhost and a client certificate (tests/pki.h). Each broker listens
 * for MQTT on its plain port, for HTTP/2 over TLS on @PORT2@ (a listener
 * of type "http" with "tls") and for MQTT over TLS on @PORT3@. curl
 * --http2 --cacert publishes at QoS 0, 1 and 2 and a libmosquitto client
 * subscribed over TLS receives the messages with their QoS; a curl event
 * stream over TLS receives the retained message first, then what a
 * libmosquitto client publishes over TLS, a 64 KiB payload included;
 * /v1/stats, /metrics and the JSON error answers come back over h2.
 * Clients that do not negotiate "h2" are refused, each with one log line
 * and counted as a TLS failure, while h2 clients go on being served:
 * curl --http1.1 (ALPN "http/1.1" only: the handshake fails with
 * no_application_protocol), a TLS client offering no ALPN at all (closed
 * after its handshake) and h2c with prior knowledge on the TLS port
 * (plaintext). A broker that stops sends an open event stream's client
 * GOAWAY (NO_ERROR, as nghttp -v shows) before its TLS close_notify. An
 * http listener with require_certificate serves curl with the client
 * certificate and refuses it without.
 */
#include "tests/integration/harness/harness.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/pki.h"

/* Bound of every curl run (curl's own --max-time is below it). */
#define CURL_WAIT_MS 20000
/* Waits for bytes an event stream receives (the broker may run under a
 * sanitizer on a busy machine). */
#define EVENT_WAIT_MS 15000
/* The large message an event stream carries (text, so it is sent as is). */
#define BIG (64 * 1024)

static char g_pki[64];    /* the run's certificates */
static char g_json[2048]; /* h2 over TLS + MQTT over TLS */
static char g_mtls[2048]; /* h2 over TLS with client certificates */
static int g_runs;        /* numbers the curl output files */

#define PATH(name, ext) th_pki_path(g_pki, name, ext)

static int group_setup(void **state)
{
    (void)state;
    th_pki_make(g_pki, sizeof g_pki);
    snprintf(
        g_json, sizeof g_json,
        "{\"listeners\": [\n"
        " {\"type\": \"http\", \"port\": @PORT2@, \"tls\": {\"cert\": \"%s\", \"key\": \"%s\"}},\n"
        " {\"type\": \"mqtt\", \"port\": @PORT3@, \"tls\": {\"cert\": \"%s\", \"key\": "
        "\"%s\"}}]}\n",
        PATH("server", "crt"), PATH("server", "key"), PATH("server", "crt"), PATH("server", "key"));
    snprintf(
        g_mtls, sizeof g_mtls,
        "{\"listeners\": [{\"type\": \"http\", \"port\": @PORT2@, \"tls\": {\"cert\": \"%s\",\n"
        "  \"key\": \"%s\", \"ca\": \"%s\", \"require_certificate\": true}}]}\n",
        PATH("server", "crt"), PATH("server", "key"), PATH("ca", "crt"));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    th_rmtree(g_pki);
    return 0;
}

/* ---- curl ------------------------------------------------------------- */

/* A fresh output file for one curl run. */
static const char *out_file(char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/curl-%d.out", g_pki, ++g_runs);
    return buf;
}

/* Runs curl with args (NULL-terminated, after the common ones: silent but
 * showing errors, our CA, bounded, and a last line "HTTP-version status")
 * against https://127.0.0.1:port + path. Returns the output (malloc'd)
 * and curl's exit status in *rc. */
static char *curl(uint16_t port, const char *path, const char *const *args, int *rc)
{
    char url[512], out[128];
    const char *argv[40] = {"curl",       "-sS", "--cacert", PATH("ca", "crt"),
                            "--max-time", "15",  "-w",       "\n%{http_version} %{http_code}\n"};
    int n = 8;
    for (int i = 0; args[i] != NULL && n < 38; i++)
        argv[n++] = args[i];
    snprintf(url, sizeof url, "https://127.0.0.1:%u%s", (unsigned)port, path);
    argv[n++] = url;
    argv[n] = NULL;
    out_file(out, sizeof out);
    *rc = th_cmd_run(argv, out, CURL_WAIT_MS);
    return th_file_read(out);
}

/* curl --http2 that must exit 0 with HTTP/2 and `status`; returns the
 * output (the body, then the "2 <status>" line). */
static char *h2(uint16_t port, const char *path, const char *const *args, int status)
{
    const char *argv[32] = {"--http2"};
    char want[32];
    int n = 1, rc = 0;
    for (int i = 0; args != NULL && args[i] != NULL && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char *text = curl(port, path, argv, &rc);
    snprintf(want, sizeof want, "\n2 %d\n", status);
    if (rc != 0 || strstr(text, want) == NULL)
        fail_msg("curl --http2 %s: exit %d, want HTTP/2 %d: %s", path, rc, status, text);
    return text;
}

/* ---- tests ------------------------------------------------------------ */

static void curl_publishes_over_h2_to_an_mqtt_tls_subscriber(th_ctx_t *t)
{
    th_tls_t server_auth = {PATH("ca", "crt"), NULL, NULL};
    th_mosq_t sub;
    uint16_t p2 = t->broker->port2;
    th_mosq_open_tls(&sub, t->broker->port3, "h2tls-sub", 5, true, &server_auth);
    th_mosq_subscribe(&sub, "ht/#", 2);
    free(h2(p2, "/v1/publish/ht/0",
            (const char *[]){"-H", "content-type: text/plain", "--data-binary", "zero", NULL},
            204));
    free(h2(p2, "/v1/publish/ht/1?qos=1",
            (const char *[]){"-H", "x-mqtt-user-from: curl", "--data-binary", "one", NULL}, 204));
    free(h2(p2, "/v1/publish/ht/2?qos=2", (const char *[]){"--data-binary", "two", NULL}, 204));
    th_mosq_wait_msgs(&sub, NULL, 3, EVENT_WAIT_MS);
    const char *want[] = {"zero", "one", "two"};
    for (int i = 0; i < 3; i++) {
        char topic[8];
        snprintf(topic, sizeof topic, "ht/%d", i);
        assert_string_equal(sub.msgs[i].topic, topic);
        assert_int_equal(sub.msgs[i].len, (int)strlen(want[i]));
        assert_memory_equal(sub.msgs[i].payload, want[i], strlen(want[i]));
        assert_int_equal(sub.msgs[i].qos, i);
    }
    th_mosq_close(&sub);
}

static void an_h2_event_stream_gets_what_mqtt_tls_clients_publish(th_ctx_t *t)
{
    th_tls_t server_auth = {PATH("ca", "crt"), NULL, NULL};
    th_mosq_t pub;
    char url[256], out[128], *big = malloc(BIG + 1);
    assert_non_null(big);
    for (int i = 0; i < BIG; i++)
        big[i] = "0123456789abcdef"[(i + i / 16) % 16];
    big[BIG] = '\0';
    th_mosq_open_tls(&pub, t->broker->port3, "h2tls-pub", 5, true, &server_auth);
    th_mosq_publish(&pub, "ev/kept", "kept", 4, 1, true);
    th_mosq_wait_published(&pub, NULL, 1, TH_WAIT_MS);
    snprintf(url, sizeof url, "https://127.0.0.1:%u/v1/subscribe?filter=ev/%%23&qos=1",
             (unsigned)t->broker->port2);
    const char *argv[] = {"curl",       "-sSN", "--http2", "--cacert", PATH("ca", "crt"),
                          "--max-time", "30",   url,       NULL};
    pid_t pid = th_cmd_start(argv, out_file(out, sizeof out));
    bool ok =
        th_file_wait(out, "event: subscribed", EVENT_WAIT_MS) &&
        th_file_wait(out, "\"topic\":\"ev/kept\",\"qos\":1,\"retain\":true,\"payload\":\"kept\"",
                     EVENT_WAIT_MS);
    if (ok) {
        th_mosq_publish(&pub, "ev/live", "live over tls", 13, 1, false);
        th_mosq_publish(&pub, "ev/big", big, BIG, 0, false);
        ok = th_file_wait(out, "\"payload\":\"live over tls\"", EVENT_WAIT_MS) &&
             th_file_wait(out, big, EVENT_WAIT_MS);
    }
    kill(pid, SIGTERM); /* ours: the event stream never ends by itself */
    th_cmd_wait(pid, TH_WAIT_MS);
    char *text = th_file_read(out);
    if (!ok) fail_msg("the event stream over TLS missed an event: %.2000s", text);
    char *kept = strstr(text, "\"payload\":\"kept\""), *live = strstr(text, "live over tls");
    assert_true(kept != NULL && live != NULL && kept < live); /* retained first */
    free(text);
    free(big);
    th_mosq_close(&pub);
}

static void stats_metrics_and_errors_come_back_over_h2(th_ctx_t *t)
{
    uint16_t p2 = t->broker->port2;
    char *text = h2(p2, "/v1/stats", NULL, 200);
    assert_non_null(strstr(text, "\"http\":1,")); /* this very connection */
    assert_non_null(strstr(text, "\"tls_failed\":0}"));
    free(text);
    text = h2(p2, "/metrics", NULL, 200);
    assert_non_null(strstr(text, "\nuvmq_tls_failures_total 0\n"));
    free(text);
    text = h2(p2, "/healthz", NULL, 200);
    assert_non_null(strstr(text, "{\"status\":\"ok\"}"));
    free(text);
    text = h2(p2, "/nope", NULL, 404);
    assert_non_null(strstr(text, "{\"error\":\""));
    assert_non_null(strstr(text, "\"reason_code\":128}"));
    free(text);
    text = h2(p2, "/v1/publish/a/%2B", (const char *[]){"--data-binary", "x", NULL}, 400);
    assert_non_null(strstr(text, "\"reason_code\":144}"));
    free(text);
}

static void clients_without_alpn_h2_are_refused_with_one_line_each(th_ctx_t *t)
{
    uint16_t p2 = t->broker->port2;
    char cn[64], plain[128];
    int rc = 0;
    size_t from = th_broker_log_size(t->broker);
    /* curl --http1.1 offers ALPN "http/1.1" only: a fatal alert. */
    char *text = curl(p2, "/healthz", (const char *[]){"--http1.1", NULL}, &rc);
    if (rc == 0 || strstr(text, "no application protocol") == NULL)
        fail_msg("curl --http1.1 over TLS: exit %d: %s", rc, text);
    assert_null(strstr(text, "HTTP/1.1 "));
    free(text);
    th_broker_logged_once(
        t->broker, from,
        "TLS handshake failed: no application protocol (the client's ALPN list lacks "
        "\"h2\")");
    /* A TLS client that offers no ALPN: its handshake succeeds, then it
     * is closed. */
    assert_int_equal(th_tls_server_cn(p2, PATH("ca", "crt"), cn, sizeof cn), 0);
    th_broker_logged_once(t->broker, from,
                          "HTTP/2 over TLS needs ALPN \"h2\" (the client negotiated none)");
    /* h2c with prior knowledge on the TLS port: plaintext. */
    snprintf(plain, sizeof plain, "http://127.0.0.1:%u/healthz", (unsigned)p2);
    rc = th_cmd_run(
        (const char *[]){"curl", "-sS", "--http2-prior-knowledge", "--max-time", "15", plain, NULL},
        NULL, CURL_WAIT_MS);
    assert_int_not_equal(rc, 0);
    th_broker_logged_once(t->broker, from,
                          "not a TLS handshake (first byte 0x50: plaintext on a TLS port?)");
    /* h2 clients are still served, and the three refusals are counted. */
    text = h2(p2, "/v1/stats", NULL, 200);
    assert_non_null(strstr(text, "\"tls_failed\":3}"));
    free(text);
    char *log = th_broker_stop_log(t->broker);
    assert_non_null(strstr(log, "TLS failures 3"));
    free(log);
}

static void goaway_comes_before_close_notify_when_the_broker_stops(th_ctx_t *t)
{
    char url[256], out[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%u/v1/subscribe?filter=gone",
             (unsigned)t->broker->port2);
    /* nghttp -v prints every frame it receives. */
    const char *argv[] = {"nghttp", "-v", "-t", "30", url, NULL};
    pid_t pid = th_cmd_start(argv, out_file(out, sizeof out));
    bool ok = th_file_wait(out, "event: subscribed", EVENT_WAIT_MS);
    char *log = th_broker_stop_log(t->broker); /* exit 0 checked there */
    free(log);
    if (ok) ok = th_file_wait(out, "recv GOAWAY frame", TH_WAIT_MS);
    th_cmd_wait(pid, TH_WAIT_MS);
    char *text = th_file_read(out);
    /* Read at all, the GOAWAY came before the TLS session ended. */
    if (!ok || strstr(text, "error_code=NO_ERROR(0x00)") == NULL)
        fail_msg("no GOAWAY NO_ERROR over TLS before the close: %.2000s", text);
    free(text);
}

static void client_certificates_guard_an_http_listener(th_ctx_t *t)
{
    uint16_t p2 = t->broker->port2;
    int rc = 0;
    size_t from = th_broker_log_size(t->broker);
    char *text =
        h2(p2, "/healthz",
           (const char *[]){"--cert", PATH("client", "crt"), "--key", PATH("client", "key"), NULL},
           200);
    free(text);
    text = curl(p2, "/healthz", (const char *[]){"--http2", NULL}, &rc);
    if (rc == 0) fail_msg("curl without a client certificate was served: %s", text);
    free(text);
    th_broker_logged_once(t->broker, from,
                          "TLS handshake failed: peer did not return a certificate");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_TEST_CFG(curl_publishes_over_h2_to_an_mqtt_tls_subscriber, g_json),
        TH_TEST_CFG(an_h2_event_stream_gets_what_mqtt_tls_clients_publish, g_json),
        TH_TEST_CFG(stats_metrics_and_errors_come_back_over_h2, g_json),
        TH_TEST_CFG(clients_without_alpn_h2_are_refused_with_one_line_each, g_json),
        TH_TEST_CFG(goaway_comes_before_close_notify_when_the_broker_stops, g_json),
        TH_TEST_CFG(client_certificates_guard_an_http_listener, g_mtls),
    };
    return cmocka_run_group_tests_name("integration/15-http-tls", tests, group_setup,
                                       group_teardown);
}

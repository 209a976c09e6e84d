/*
 * 15-tls.c - MQTT over TLS, end to end.
 *
 * Scenario: the group makes a CA, a second CA nobody trusts, a server
 * certificate for 127.0.0.1 / localhost and client certificates (valid,
 * expired yesterday, from the untrusted CA, without a CN) in a temp dir.
 * Each broker listens on its plain port, on a TLS port with server
 * authentication only (@PORT2@) and on an mTLS port (@PORT3@) that
 * requires a client certificate and takes its CN as the user name.
 * mosquitto_pub / mosquitto_sub (--cafile, --cert, --key) and libmosquitto
 * (mosquitto_tls_set) publish and subscribe across the three listeners.
 * Clients that fail TLS (plaintext on a TLS port, no certificate, an
 * expired or untrusted one) are closed with one log line naming the
 * reason while a TLS subscriber connected throughout keeps receiving.
 * SIGHUP reloads the server certificate (or keeps the old one when the
 * new files are bad) without dropping that subscriber. A 1 MiB message
 * and 2,000 small ones cross TLS in order, and persistent TLS sessions
 * reconnect across worker loops (with --threads 4 their connections move
 * to the session's loop, TLS state and all). A takeover decrypts and
 * processes the DISCONNECT the old TLS connection sent while the broker
 * was not reading it.
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
#include <mosquitto.h>

#include "tests/pki.h"

static char g_pki[64];         /* the run's certificates */
static char g_json[4096];      /* plain + TLS + mTLS listeners */
static char g_json_opt[2048];  /* TLS, client certificate optional, CN = user */
static char g_json_hup[2048];  /* TLS with the certificate SIGHUP reloads */
static char g_json_flow[4160]; /* g_json, small max_out_bytes, big packets */

#define PATH(name, ext) th_pki_path(g_pki, name, ext)

/* TLS files of a client: trusting the test CA, with certificate `name`. */
static th_tls_t tls_as(const char *name)
{
    th_tls_t t = {PATH("ca", "crt"), NULL, NULL};
    if (name != NULL) {
        t.cert = PATH(name, "crt");
        t.key = PATH(name, "key");
    }
    return t;
}

static int group_setup(void **state)
{
    (void)state;
    th_pki_make(g_pki, sizeof g_pki);
    /* The certificate the SIGHUP test replaces: CN "first" for now. */
    if (pki_issue(g_pki, "ca", "reload", "first", PKI_SERVER, -1, 30) != 0) return -1;
    snprintf(
        g_json, sizeof g_json,
        "{\"listeners\": [\n"
        " {\"type\": \"mqtt\", \"port\": @PORT2@, \"tls\": {\"cert\": \"%s\", \"key\": \"%s\"}},\n"
        " {\"port\": @PORT3@, \"tls\": {\"cert\": \"%s\", \"key\": \"%s\", \"ca\": \"%s\",\n"
        "  \"require_certificate\": true, \"use_identity_as_username\": true}}]}\n",
        PATH("server", "crt"), PATH("server", "key"), PATH("server", "crt"), PATH("server", "key"),
        PATH("ca", "crt"));
    snprintf(g_json_opt, sizeof g_json_opt,
             "{\"listeners\": [{\"port\": @PORT2@, \"tls\": {\"cert\": \"%s\", \"key\": \"%s\",\n"
             "  \"ca\": \"%s\", \"use_identity_as_username\": true}}]}\n",
             PATH("server", "crt"), PATH("server", "key"), PATH("ca", "crt"));
    snprintf(
        g_json_hup, sizeof g_json_hup,
        "{\"listeners\": [{\"port\": @PORT2@, \"tls\": {\"cert\": \"%s\", \"key\": \"%s\"}}]}\n",
        PATH("reload", "crt"), PATH("reload", "key"));
    snprintf(g_json_flow, sizeof g_json_flow,
             "{\"max_out_bytes\": 65536, \"max_packet_size\": 67108864, %s", g_json + 1);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    th_rmtree(g_pki);
    return 0;
}

/* Starts mosquitto_sub with args (NULL-terminated, after the common
 * ones) writing to out, and waits for its SUBACK (its debug line; stdbuf
 * makes it line-buffered into the file). Returns its pid. */
static pid_t start_sub(const char *out, const char *const *args)
{
    const char *argv[32] = {"stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-d", "-C", "1",
                            "-W",     "10"};
    int n = 10;
    for (int i = 0; args[i] != NULL && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = th_cmd_start(argv, out);
    if (!th_file_wait(out, "SUBACK", TH_WAIT_MS)) {
        char *text = th_file_read(out);
        th_cmd_wait(pid, 0);
        fail_msg("mosquitto_sub got no SUBACK: %s", text);
    }
    return pid;
}

/* mosquitto_pub with args; fails the test unless it exits 0. */
static void run_pub(const char *out, const char *const *args)
{
    const char *argv[32] = {"mosquitto_pub", "-h", "127.0.0.1"};
    int n = 3;
    for (int i = 0; args[i] != NULL && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int rc = th_cmd_run(argv, out, 10000);
    if (rc != 0) {
        char *text = th_file_read(out);
        fail_msg("mosquitto_pub exited %d: %s", rc, text);
    }
}

/* One mosquitto_sub / mosquitto_pub exchange: sub_args and pub_args each
 * end with NULL; the subscriber must print payload. */
static void exchange(const char *const *sub_args, const char *const *pub_args, const char *payload)
{
    char out[128], pub_out[128];
    snprintf(out, sizeof out, "%s/sub-%s.out", g_pki, payload);
    snprintf(pub_out, sizeof pub_out, "%s/pub-%s.out", g_pki, payload);
    pid_t pid = start_sub(out, sub_args);
    run_pub(pub_out, pub_args);
    int rc = th_cmd_wait(pid, 10000);
    char *text = th_file_read(out);
    if (rc != 0 || strstr(text, payload) == NULL)
        fail_msg("mosquitto_sub exited %d without \"%s\": %s", rc, payload, text);
    free(text);
}

static void mosquitto_clients_publish_and_subscribe_over_tls(th_ctx_t *t)
{
    char p2[8], p3[8];
    snprintf(p2, sizeof p2, "%u", (unsigned)t->broker->port2);
    snprintf(p3, sizeof p3, "%u", (unsigned)t->broker->port3);
    const char *ca = PATH("ca", "crt"), *crt = PATH("client", "crt"), *key = PATH("client", "key");
    /* Server authentication only, MQTT 3.1.1 then 5. */
    exchange((const char *[]){"-p", p2, "--cafile", ca, "-t", "tls/cli", NULL},
             (const char *[]){"-p", p2, "--cafile", ca, "-t", "tls/cli", "-m", "hello-tls", NULL},
             "hello-tls");
    exchange((const char *[]){"-p", p2, "--cafile", ca, "-t", "tls/cli", "-V", "mqttv5", NULL},
             (const char *[]){"-p", p2, "--cafile", ca, "-t", "tls/cli", "-V", "mqttv5", "-q", "1",
                              "-m", "hello-v5", NULL},
             "hello-v5");
    /* mTLS: both sides with the client certificate. */
    exchange((const char *[]){"-p", p3, "--cafile", ca, "--cert", crt, "--key", key, "-t",
                              "tls/mtls", NULL},
             (const char *[]){"-p", p3, "--cafile", ca, "--cert", crt, "--key", key, "-t",
                              "tls/mtls", "-q", "2", "-m", "hello-mtls", NULL},
             "hello-mtls");
}

static void libmosquitto_crosses_plain_tls_and_mtls_listeners(th_ctx_t *t)
{
    th_tls_t server_auth = tls_as(NULL), mtls = tls_as("client");
    th_mosq_t s5, s3, pub;
    th_mosq_open_tls(&s5, t->broker->port2, "tls-sub-v5", 5, true, &server_auth);
    th_mosq_open_tls(&s3, t->broker->port3, "tls-sub-v3", 4, true, &mtls);
    th_mosq_subscribe(&s5, "x/#", 2);
    th_mosq_subscribe(&s3, "x/#", 2);
    th_mosq_open(&pub, t->port, "plain-pub", 4, true); /* the plain listener */
    for (int qos = 0; qos <= 2; qos++) {
        char topic[16];
        snprintf(topic, sizeof topic, "x/%d", qos);
        th_mosq_publish(&pub, topic, "abc", 3, qos, false);
    }
    th_mosq_wait_published(&pub, NULL, 3, TH_WAIT_MS);
    th_mosq_wait_msgs(&s5, NULL, 3, TH_WAIT_MS);
    th_mosq_wait_msgs(&s3, NULL, 3, TH_WAIT_MS);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(s5.msgs[i].len, 3);
        assert_memory_equal(s5.msgs[i].payload, "abc", 3);
        assert_int_equal(s3.msgs[i].qos, s5.msgs[i].qos);
    }
    th_mosq_close(&pub);
    th_mosq_close(&s3);
    th_mosq_close(&s5);
}

/* A TLS subscriber that must keep receiving while other clients fail. */
static void open_witness(th_ctx_t *t, th_mosq_t *w)
{
    th_tls_t mtls = tls_as("client");
    th_mosq_open_tls(w, t->broker->port3, "witness", 5, true, &mtls);
    th_mosq_subscribe(w, "w", 1);
}

/* Publishes on the plain port; w must receive it (n messages so far). */
static void witness_receives(th_ctx_t *t, th_mosq_t *w, int n)
{
    th_mosq_t pub;
    th_mosq_open(&pub, t->port, "witness-pub", 4, true);
    th_mosq_publish(&pub, "w", "still here", 10, 1, false);
    th_mosq_wait_published(&pub, NULL, 1, TH_WAIT_MS);
    th_mosq_wait_msgs(w, NULL, n, TH_WAIT_MS);
    th_mosq_close(&pub);
}

static void plaintext_on_a_tls_port_is_closed_and_logged_once(th_ctx_t *t)
{
    th_mosq_t w;
    unsigned char pkt[64];
    open_witness(t, &w);
    size_t from = th_broker_log_size(t->broker);
    size_t n = th_build_connect(
        pkt, sizeof pkt,
        &(th_connect_t){.version = 4, .client_id = "plain", .clean = true, .keepalive = 60});
    int fd = th_connect(t->broker->port2);
    th_send(fd, pkt, n);
    th_expect_closed(fd, TH_WAIT_MS); /* not one byte back */
    th_close(fd);
    th_broker_logged_once(t->broker, from,
                          "not a TLS handshake (first byte 0x10: plaintext on a TLS port?)");
    witness_receives(t, &w, 1);
    th_mosq_close(&w);
}

static void bad_client_certificates_are_refused_and_others_go_on(th_ctx_t *t)
{
    th_mosq_t w, c;
    th_tls_t none = tls_as(NULL), expired = tls_as("expired"), rogue = tls_as("rogue");
    open_witness(t, &w);
    size_t from = th_broker_log_size(t->broker);
    assert_int_equal(th_mosq_try_open(&c, t->broker->port3, "no-cert", 4, true, &none, NULL), -1);
    th_mosq_close(&c);
    th_broker_logged_once(t->broker, from,
                          "TLS handshake failed: peer did not return a certificate");
    assert_int_equal(th_mosq_try_open(&c, t->broker->port3, "expired", 4, true, &expired, NULL),
                     -1);
    th_mosq_close(&c);
    th_broker_logged_once(t->broker, from, "certificate verify failed (certificate has expired)");
    assert_int_equal(th_mosq_try_open(&c, t->broker->port3, "rogue", 4, true, &rogue, NULL), -1);
    th_mosq_close(&c);
    th_broker_logged_once(t->broker, from,
                          "certificate verify failed (unable to get local issuer certificate)");
    witness_receives(t, &w, 1);
    /* The failures are counted once each in the stop line. */
    th_mosq_close(&w);
    char *log = th_broker_stop_log(t->broker);
    assert_non_null(strstr(log, "TLS failures 3"));
    free(log);
}

static void the_certificate_cn_becomes_the_user_name(th_ctx_t *t)
{
    th_mosq_t c;
    th_tls_t mtls = tls_as("client");
    size_t from = th_broker_log_size(t->broker);
    /* The CONNECT names another user; the certificate wins. */
    assert_int_equal(th_mosq_try_open(&c, t->broker->port3, "cn-user", 4, true, &mtls, "mallory"),
                     0);
    th_broker_logged_once(t->broker, from, "client cn-user (127.0.0.1:");
    th_broker_logged_once(t->broker, from, "): user name \"tls-user\" from its certificate");
    char *log = th_broker_log(t->broker, from);
    assert_null(strstr(log, "mallory"));
    free(log);
    th_mosq_close(&c);
}

static void without_a_usable_certificate_cn_a_client_is_not_authorized(th_ctx_t *t)
{
    th_mosq_t c;
    th_tls_t none = tls_as(NULL), nocn = tls_as("nocn"), mtls = tls_as("client");
    size_t from = th_broker_log_size(t->broker);
    /* Certificates are optional on this listener, and the CN is needed. */
    assert_int_equal(th_mosq_try_open(&c, t->broker->port2, "anon", 4, true, &none, NULL), 5);
    th_mosq_close(&c);
    assert_int_equal(th_mosq_try_open(&c, t->broker->port2, "nocn", 5, true, &nocn, NULL),
                     0x87); /* v5 Not authorized */
    th_mosq_close(&c);
    th_broker_logged_once(t->broker, from, "client anon (");
    th_broker_logged_once(t->broker, from, "client nocn (");
    char *log = th_broker_log(t->broker, from);
    assert_int_equal(th_count(log, "no usable common name in its certificate (not found): "
                                   "not authorized"),
                     2);
    free(log);
    assert_int_equal(th_mosq_try_open(&c, t->broker->port2, "named", 4, true, &mtls, NULL), 0);
    th_mosq_close(&c);
}

static void sighup_reloads_the_certificate_and_keeps_connections(th_ctx_t *t)
{
    th_mosq_t sub, pub;
    th_tls_t server_auth = tls_as(NULL);
    char cn[64];
    uint16_t p2 = t->broker->port2;
    th_mosq_open_tls(&sub, p2, "hup-sub", 4, true, &server_auth);
    th_mosq_subscribe(&sub, "hup", 1);
    assert_int_equal(th_tls_server_cn(p2, PATH("ca", "crt"), cn, sizeof cn), 0);
    assert_string_equal(cn, "first");
    /* New certificate files, then SIGHUP. */
    assert_int_equal(pki_issue(g_pki, "ca", "reload", "second", PKI_SERVER, -1, 30), 0);
    size_t from = th_broker_log_size(t->broker);
    th_broker_signal(t->broker, SIGHUP);
    th_broker_logged_once(t->broker, from, "(mqtt, tls): certificates reloaded from");
    assert_int_equal(th_tls_server_cn(p2, PATH("ca", "crt"), cn, sizeof cn), 0);
    assert_string_equal(cn, "second");
    /* Bad files: one error line, the old context stays. */
    FILE *f = fopen(PATH("reload", "key"), "w");
    assert_non_null(f);
    fputs("not a key\n", f);
    fclose(f);
    from = th_broker_log_size(t->broker);
    th_broker_signal(t->broker, SIGHUP);
    th_broker_logged_once(t->broker, from,
                          "cannot reload certificates: key: cannot use the private key in");
    th_broker_logged_once(t->broker, from, "keeping the old ones");
    assert_int_equal(th_tls_server_cn(p2, PATH("ca", "crt"), cn, sizeof cn), 0);
    assert_string_equal(cn, "second");
    /* The subscriber from before both reloads is still served. */
    th_mosq_open_tls(&pub, p2, "hup-pub", 5, true, &server_auth);
    th_mosq_publish(&pub, "hup", "after", 5, 1, false);
    th_mosq_wait_msgs(&sub, &pub, 1, TH_WAIT_MS);
    assert_false(sub.disconnected);
    th_mosq_close(&pub);
    th_mosq_close(&sub);
}

#define N_SMALL 2000
#define BIG     (1024 * 1024)

static void a_large_message_and_many_small_ones_arrive_in_order(th_ctx_t *t)
{
    th_mosq_t sub, pub;
    th_tls_t server_auth = tls_as(NULL), mtls = tls_as("client");
    unsigned char *big = malloc(BIG);
    assert_non_null(big);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (unsigned char)(i * 7 + i / 4096);
    th_mosq_open_tls(&sub, t->broker->port3, "big-sub", 5, true, &mtls);
    th_mosq_subscribe(&sub, "big/#", 1);
    th_mosq_open_tls(&pub, t->broker->port2, "big-pub", 5, true, &server_auth);
    th_mosq_publish(&pub, "big/one", big, BIG, 1, false);
    for (int i = 0; i < N_SMALL; i++) {
        char p[16];
        int n = snprintf(p, sizeof p, "%d", i);
        th_mosq_publish(&pub, "big/small", p, n, 1, false);
    }
    th_mosq_wait_msgs(&sub, &pub, 1 + N_SMALL, 30000);
    assert_int_equal(sub.msgs[0].len, BIG);
    assert_memory_equal(sub.msgs[0].payload, big, BIG);
    for (int i = 0; i < N_SMALL; i++) {
        char p[16];
        snprintf(p, sizeof p, "%d", i);
        assert_string_equal((const char *)sub.msgs[1 + i].payload, p);
    }
    free(big);
    th_mosq_close(&pub);
    th_mosq_close(&sub);
}

static void persistent_tls_sessions_resume_on_their_loop(th_ctx_t *t)
{
    th_tls_t mtls = tls_as("client");
    th_mosq_t sub, pub;
    th_mosq_open(&pub, t->port, "resume-pub", 4, true);
    for (int round = 0; round < 6; round++) {
        char id[32], payload[16];
        snprintf(id, sizeof id, "resume-%d", round);
        snprintf(payload, sizeof payload, "queued-%d", round);
        th_mosq_open_tls(&sub, t->broker->port3, id, 4, false, &mtls);
        th_mosq_subscribe(&sub, "resume/#", 1);
        th_mosq_close(&sub); /* offline: the next message is queued */
        th_mosq_publish(&pub, "resume/x", payload, (int)strlen(payload), 1, false);
        th_mosq_wait_published(&pub, NULL, round + 1, TH_WAIT_MS);
        th_mosq_open_tls(&sub, t->broker->port3, id, 4, false, &mtls);
        th_mosq_wait_msgs(&sub, NULL, 1, TH_WAIT_MS);
        assert_string_equal((const char *)sub.msgs[sub.n_msgs - 1].payload, payload);
        th_mosq_close(&sub);
    }
    th_mosq_close(&pub);
}

/* A TLS client that sent DISCONNECT (Session Expiry 0) while the broker
 * was not reading it, then reconnected: the takeover decrypts and
 * processes that DISCONNECT first, and the session has ended
 * (16-v5:takeover_honours_a_disconnect_the_broker_had_not_read over TLS). */
static void tls_takeover_honours_a_disconnect_the_broker_had_not_read(th_ctx_t *t)
{
    th_tls_raw_t *r = th_tls_raw_open(t->broker->port2, PATH("ca", "crt"), 4096);
    th_io_t io = th_io_tls(r);
    th_takeover_after_unread_disconnect(t, &io);
    th_tls_raw_close(r);
}

static void bad_tls_settings_stop_the_broker_with_status_2(th_ctx_t *t)
{
    char json[1024];
    size_t from = 0;
    th_broker_stop_keep(t->broker);
    snprintf(
        json, sizeof json,
        "{\"listeners\": [{\"port\": 1, \"tls\": {\"cert\": \"%s\", \"key\": \"%s/none.key\"}}]}",
        PATH("server", "crt"), g_pki);
    assert_int_equal(th_broker_run_expect_exit(t->broker, json, 10000, &from), 2);
    char *log = th_broker_log(t->broker, from);
    assert_non_null(strstr(log, "config.json: listeners[0].tls.key: cannot read \""));
    assert_non_null(strstr(log, "none.key\": No such file or directory"));
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_TEST_CFG(mosquitto_clients_publish_and_subscribe_over_tls, g_json),
        TH_TEST_CFG(libmosquitto_crosses_plain_tls_and_mtls_listeners, g_json),
        TH_TEST_CFG(plaintext_on_a_tls_port_is_closed_and_logged_once, g_json),
        TH_TEST_CFG(bad_client_certificates_are_refused_and_others_go_on, g_json),
        TH_TEST_CFG(the_certificate_cn_becomes_the_user_name, g_json),
        TH_TEST_CFG(without_a_usable_certificate_cn_a_client_is_not_authorized, g_json_opt),
        TH_TEST_CFG(sighup_reloads_the_certificate_and_keeps_connections, g_json_hup),
        TH_TEST_CFG(a_large_message_and_many_small_ones_arrive_in_order, g_json),
        TH_TEST_CFG(persistent_tls_sessions_resume_on_their_loop, g_json),
        TH_TEST_CFG(tls_takeover_honours_a_disconnect_the_broker_had_not_read, g_json_flow),
        TH_TEST_CFG(bad_tls_settings_stop_the_broker_with_status_2, g_json),
    };
    return cmocka_run_group_tests_name("integration/15-tls", tests, group_setup, group_teardown);
}

/*
 * 20-access - access control: users from a password file, an ACL file,
 * allow_anonymous per listener, SIGHUP reloads (docs/security.md).
 *
 * Scenario: the group writes a password file with Debian's tools into a
 * temp dir: mosquitto_passwd -b makes $7$ (alice) and $6$ (-H sha512:
 * bob, eve, admin, sysup) users, the argon2 command argon2id ones
 * (carol with 1 MiB, dave with 64 MiB and sloth with 40 passes, so that
 * their checks take a while), and an ACL file gives each user its
 * topics. Each broker has those files, a second MQTT listener that takes
 * anonymous clients (or, where the top level takes them, one that does
 * not), an HTTP/2 port for /v1/stats, and $SYS every second.
 *
 * Raw clients (byte-exact packets) then check what security.md promises:
 * anonymous clients are refused (v5 0x87, v3.1.1 5) except where
 * allow_anonymous lets them in; a wrong password or an unknown user is
 * refused (0x86, 4), logged once without the password and counted; each
 * hash type lets its user in. The check runs off the loop: argon2id
 * clients connecting at once all get their answer, a CONNECT pipelined
 * with a SUBSCRIBE, a PUBLISH and a PINGREQ is answered in order after
 * its CONNACK, CONNECTs past max_auth_pending get 0x89 (3), and clients
 * that leave (or a broker that stops) while their password is checked
 * leave nothing behind (the SAN tier checks leaks). The ACL decides
 * publishes (v5 PUBACK/PUBREC 0x87; v3.1.1 acknowledged and dropped),
 * each filter of a SUBSCRIBE (0x87 / 0x80), deliveries to a wildcard or
 * shared subscriber and retained messages sent on subscribe, %c and %u
 * patterns (not for a client id holding '+'), the anonymous block, $SYS,
 * wills and HTTP/2 requests (their user's rights, no client id). SIGHUP
 * takes a new user and new rules while a client stays connected, drops a
 * removed user at once (the cache of verified passwords is emptied), and
 * keeps the old users or rules when a new file is broken. A TLS client
 * certificate's CN is the ACL's user; a persistent session keeps its
 * user across a restart, and takes the rights of the user it reconnects
 * as.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tests/integration/harness/h2client.h"
#include "tests/integration/harness/harness.h"
#include "tests/integration/harness/mosq5.h"
#include "tests/pki.h"

#define WAIT    TH_WAIT_MS
#define PKT_CAP 4096
/* v5 PUBACK "No matching subscribers": accepted, and nobody subscribed. */
#define NO_MATCH 0x10

/* admin:admin-pw, eve:eve-pw, bob:bob-pw and dave:dave-pw in Basic
 * credentials (RFC 7617). */
#define ADMIN_BASIC "Basic YWRtaW46YWRtaW4tcHc="
#define EVE_BASIC   "Basic ZXZlOmV2ZS1wdw=="
#define BOB_BASIC   "Basic Ym9iOmJvYi1wdw=="
#define DAVE_BASIC  "Basic ZGF2ZTpkYXZlLXB3"

static char g_dir[64];       /* password and ACL files */
static char g_pki[64];       /* certificates (tests/pki.h) */
static char g_main[1024];    /* both files, anonymous listener on @PORT2@ */
static char g_anon[1024];    /* both files, allow_anonymous true (false on @PORT2@) */
static char g_nocache[1024]; /* g_main with auth_cache_size 0 */
static char g_busy[1024];    /* g_nocache with max_auth_pending 1 */
static char g_hup[1024];     /* the SIGHUP test's own files */
static char g_tls[2048];     /* g_main with an mTLS listener on @PORT2@ */

/* The users' rights. Lines before the first "user" are anonymous
 * clients'; the patterns are every client's. */
static const char ACL[] = "# anonymous clients\n"
                          "topic read public/#\n"
                          "topic write anon/#\n"
                          "\n"
                          "user alice\n"
                          "topic readwrite a/#\n"
                          "topic deny a/private\n"
                          "\n"
                          "user bob\n"
                          "topic read ro/#\n"
                          "topic write wo/#\n"
                          "topic readwrite rw/#\n"
                          "topic deny rw/no/#\n"
                          "\n"
                          "user carol\n"
                          "topic readwrite pipe/#\n"
                          "\n"
                          "user eve\n"
                          "topic read #\n"
                          "topic deny secret/#\n"
                          "\n"
                          "user admin\n"
                          "topic readwrite #\n"
                          "topic read $SYS/#\n"
                          "\n"
                          "user sysup\n"
                          "topic read $SYS/broker/uptime\n"
                          "\n"
                          "user tls-user\n"
                          "topic readwrite tls/#\n"
                          "\n"
                          "pattern readwrite clients/%c/#\n"
                          "pattern read users/%u/#\n";

/* The SIGHUP test's ACL before and after the reload, and a broken one
 * (line 3). */
static const char HUP_ACL_1[] = "user old\n"
                                "topic readwrite x/#\n";
static const char HUP_ACL_2[] = "user old\n"
                                "topic deny x/secret\n"
                                "topic read x/#\n"
                                "topic readwrite y/#\n"
                                "\n"
                                "user new\n"
                                "topic write x/#\n";
static const char HUP_ACL_BAD[] = "user old\n"
                                  "topic read x/#\n"
                                  "topic sometimes y/#\n";

/* ---- files --------------------------------------------------------------- */

/* "g_dir/name.ext", interned (th_pki_path). */
static const char *dpath(const char *name, const char *ext)
{
    return th_pki_path(g_dir, name, ext);
}

/* Writes text to path; fails the test on error. */
static void put_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) fail_msg("cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* Runs a shell script (bounded, 60 s) in g_dir; fails with its output
 * unless it exits 0. */
static void run_sh(const char *script)
{
    char cmd[2048], out[128];
    snprintf(cmd, sizeof cmd, "set -e; cd '%s'; %s", g_dir, script);
    snprintf(out, sizeof out, "%s/sh.out", g_dir);
    const char *argv[] = {"sh", "-c", cmd, NULL};
    int rc = th_cmd_run(argv, out, 60000);
    if (rc != 0) {
        char *text = th_file_read(out);
        fail_msg("sh -c '%s' exited %d: %s", script, rc, text);
    }
}

/* The password file: mosquitto_passwd for $7$ and $6$, the argon2
 * command for argon2id (t=1, p=1, m=2^10 KiB for carol, 2^16 for dave;
 * sloth's 40 passes over 16 MiB take some 0.4 s of CPU; sloth0..sloth11
 * have the same hash under names of their own, so each needs its own
 * check). */
static const char MAKE_PASSWD[] =
    "mosquitto_passwd -c -b users.passwd alice alice-pw\n"
    "for u in bob eve admin sysup; do mosquitto_passwd -H sha512 -b users.passwd $u $u-pw; done\n"
    "h=$(printf %s carol-pw | argon2 SALTSALTSALT -id -t 1 -m 10 -p 1 -e)\n"
    "echo \"carol:$h\" >>users.passwd\n"
    "h=$(printf %s dave-pw | argon2 SALTSALTSALT -id -t 1 -m 16 -p 1 -e)\n"
    "echo \"dave:$h\" >>users.passwd\n"
    "h=$(printf %s sloth-pw | argon2 SALTSALTSALT -id -t 40 -m 14 -p 1 -e)\n"
    "echo \"sloth:$h\" >>users.passwd\n"
    "for i in 0 1 2 3 4 5 6 7 8 9 10 11; do echo \"sloth$i:$h\" >>users.passwd; done\n"
    "mosquitto_passwd -H sha512 -c -b hup.passwd old old-pw\n";

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/uvmq-access-XXXXXX");
    if (mkdtemp(g_dir) == NULL) return -1;
    run_sh(MAKE_PASSWD);
    put_file(dpath("users", "acl"), ACL);
    put_file(dpath("hup", "acl"), HUP_ACL_1);
    th_pki_make(g_pki, sizeof g_pki);
    if (pki_issue(g_pki, "ca", "other", "other-user", PKI_CLIENT, -1, 30) != 0) return -1;
    const char *files = "\"password_file\": \"%s\", \"acl_file\": \"%s\", \"sys_interval\": 1";
    char both[512];
    snprintf(both, sizeof both, files, dpath("users", "passwd"), dpath("users", "acl"));
    snprintf(g_main, sizeof g_main,
             "{%s, \"listeners\": [{\"type\": \"mqtt\", \"port\": @PORT2@, "
             "\"allow_anonymous\": true}]}",
             both);
    snprintf(g_anon, sizeof g_anon,
             "{%s, \"allow_anonymous\": true, \"listeners\": [{\"type\": \"mqtt\", "
             "\"port\": @PORT2@, \"allow_anonymous\": false}]}",
             both);
    snprintf(g_nocache, sizeof g_nocache, "{%s, \"auth_cache_size\": 0}", both);
    snprintf(g_busy, sizeof g_busy, "{%s, \"auth_cache_size\": 0, \"max_auth_pending\": 1}", both);
    snprintf(g_hup, sizeof g_hup, "{\"password_file\": \"%s\", \"acl_file\": \"%s\"}",
             dpath("hup", "passwd"), dpath("hup", "acl"));
    snprintf(g_tls, sizeof g_tls,
             "{%s, \"listeners\": [{\"port\": @PORT2@, \"tls\": {\"cert\": \"%s\", "
             "\"key\": \"%s\", \"ca\": \"%s\", \"require_certificate\": true, "
             "\"use_identity_as_username\": true}}]}",
             both, th_pki_path(g_pki, "server", "crt"), th_pki_path(g_pki, "server", "key"),
             th_pki_path(g_pki, "ca", "crt"));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    th_rmtree(g_pki);
    th_rmtree(g_dir);
    return 0;
}

/* ---- raw clients --------------------------------------------------------- */

/* A CONNECT of user (NULL: anonymous) with password pass (NULL: none). */
static th_connect_t as_user(int version, const char *id, const char *user, const char *pass)
{
    return (th_connect_t){.version = version,
                          .client_id = id,
                          .clean = true,
                          .keepalive = 60,
                          .username = user,
                          .password = pass};
}

/* Connects as user; fails the test unless the CONNACK is a success. */
static int open_as(uint16_t port, int version, const char *id, const char *user, const char *pass)
{
    th_connect_t c = as_user(version, id, user, pass);
    return th_mqtt_connect(port, &c, NULL);
}

/* Sends c's CONNECT on a fresh connection and returns the CONNACK's
 * reason code (v5) or return code (v3.1.1). A refusal must close the
 * connection; a success is ended with DISCONNECT. A v3.1.1 CONNACK is
 * checked byte for byte. */
static uint8_t connack_of(uint16_t port, const th_connect_t *c)
{
    unsigned char pkt[512], buf[256];
    size_t n = th_build_connect(pkt, sizeof pkt, c);
    int fd = th_connect(port);
    th_send(fd, pkt, n);
    int len = th_read_type(fd, 0x20, buf, sizeof buf, WAIT);
    assert_true(len >= 4);
    uint8_t rc = buf[3];
    if (c->version == 4) {
        const unsigned char want[] = {0x20, 0x02, 0x00, rc};
        assert_memory_equal(buf, want, sizeof want);
        assert_int_equal(len, 4);
    }
    if (rc != 0) {
        th_expect_closed(fd, WAIT);
        th_close(fd);
    } else {
        th_mqtt_disconnect(fd);
    }
    return rc;
}

/* connack_of a CONNECT of user with pass. */
static uint8_t try_user(uint16_t port, int version, const char *id, const char *user,
                        const char *pass)
{
    th_connect_t c = as_user(version, id, user, pass);
    return connack_of(port, &c);
}

/* Sends one SUBSCRIBE (packet id `id`) of the NULL-terminated filters,
 * each with QoS 1 (v5: options 0x01, no properties), and fails unless its
 * SUBACK has want[i] for filter i. */
static void subscribe_expect(int fd, int version, uint16_t id, const char *const *filters,
                             const uint8_t *want)
{
    unsigned char pkt[512], buf[256];
    size_t n = 2, nf = 0;
    pkt[n++] = (unsigned char)(id >> 8);
    pkt[n++] = id & 0xff;
    if (version == 5) pkt[n++] = 0x00; /* no properties */
    for (; filters[nf] != NULL; nf++) {
        size_t fl = strlen(filters[nf]);
        assert_true(n + fl + 3 < 128);
        pkt[n++] = 0x00;
        pkt[n++] = (unsigned char)fl;
        memcpy(pkt + n, filters[nf], fl);
        n += fl;
        pkt[n++] = 0x01;
    }
    pkt[0] = 0x82;
    pkt[1] = (unsigned char)(n - 2); /* remaining length < 128 */
    th_send(fd, pkt, n);
    int len = th_read_type(fd, 0x90, buf, sizeof buf, WAIT);
    size_t off = th_header_len(buf);
    assert_int_equal(buf[off] << 8 | buf[off + 1], id);
    off += 2;
    if (version == 5) {
        assert_true(buf[off] < 0x80); /* property length, one byte */
        off += 1 + buf[off];
    }
    if ((size_t)len - off != nf || memcmp(buf + off, want, nf) != 0) {
        th_hexdump("SUBACK", buf, (size_t)len);
        th_hexdump("wanted reason codes", want, nf);
        fail_msg("SUBACK %u: unexpected reason codes", (unsigned)id);
    }
}

/* subscribe_expect of one filter. */
static void subscribe1(int fd, int version, uint16_t id, const char *filter, uint8_t want)
{
    const char *const f[] = {filter, NULL};
    subscribe_expect(fd, version, id, f, &want);
}

/* Publishes "x" to topic at QoS 1 or 2 with packet id `id` and returns
 * the reason code of the PUBACK / PUBREC (0 for v3.1.1); an accepted QoS 2
 * flow is completed (PUBREL, PUBCOMP). */
static uint8_t publish_ack(int fd, int version, const char *topic, int qos, uint16_t id)
{
    unsigned char pkt[512];
    size_t n = th_build_publish(pkt, sizeof pkt, version, topic, qos, false, false, id, "x", 1);
    th_send(fd, pkt, n);
    uint8_t rc = th_expect_ack(fd, qos == 1 ? 0x40 : 0x50, id, WAIT);
    if (qos == 2 && rc < 0x80) {
        th_send_ack(fd, 0x62, id);
        th_expect_ack(fd, 0x70, id, WAIT);
    }
    return rc;
}

/* Publishes payload to topic at QoS 0 (retain flag as given). */
static void publish0(int fd, int version, const char *topic, const char *payload, bool retain)
{
    unsigned char pkt[512];
    size_t n = th_build_publish(pkt, sizeof pkt, version, topic, 0, retain, false, 0, payload,
                                strlen(payload));
    th_send(fd, pkt, n);
}

/* Reads the next PUBLISH (acknowledging QoS 1) and fails unless its topic
 * is topic (and payload is payload, when not NULL). Returns its retain flag. */
static bool expect_publish(int fd, int version, const char *topic, const char *payload)
{
    unsigned char buf[PKT_CAP];
    th_publish_t p;
    int n = th_read_type(fd, 0x30, buf, sizeof buf, WAIT);
    if (!th_parse_publish(buf, (size_t)n, version, &p)) fail_msg("malformed PUBLISH");
    if (p.topic_len != strlen(topic) || memcmp(p.topic, topic, p.topic_len) != 0 ||
        (payload != NULL && (p.len != strlen(payload) || memcmp(p.payload, payload, p.len) != 0))) {
        th_hexdump("PUBLISH", buf, (size_t)n);
        fail_msg("expected a PUBLISH to %s", topic);
    }
    if (p.qos == 1) th_send_ack(fd, 0x40, p.id);
    return p.retain;
}

/* A PINGREQ answered by a PINGRESP: the connection is up and everything
 * sent before it was handled. */
static void ping(int fd)
{
    static const unsigned char pingresp[] = {0xd0, 0x00};
    th_send(fd, "\xc0\x00", 2);
    th_expect(fd, pingresp, sizeof pingresp, WAIT);
}

/* ---- /v1/stats ----------------------------------------------------------- */

/* The number after key (e.g. "\"bad_credentials\":") in /v1/stats as
 * admin sees it; fails the test unless the request succeeds. */
static long stat_of(th_ctx_t *t, const char *key)
{
    const char *hdrs[] = {"authorization", ADMIN_BASIC, NULL};
    th_h2_resp_t *r = th_h2_get(t->broker->http_port, "GET", "/v1/stats", hdrs, NULL, 0);
    const char *p = r->status == 200 ? strstr(r->body, key) : NULL;
    if (p == NULL) fail_msg("/v1/stats: %d %s (no %s)", r->status, r->body, key);
    long v = strtol(p + strlen(key), NULL, 10);
    th_h2_resp_free(r);
    return v;
}

/* Waits (bounded) until stat_of(key) is want; fails with the last value. */
static void wait_stat(th_ctx_t *t, const char *key, long want)
{
    int64_t deadline = th_now_ms() + WAIT;
    long v;
    while ((v = stat_of(t, key)) != want && th_now_ms() < deadline)
        th_sleep_ms(50);
    if (v != want) fail_msg("%s %ld in /v1/stats, expected %ld", key, v, want);
}

#define ACL_DENIED_PUBLISH "\"acl_denied\":{\"publish\":"
#define ACL_DENIED_DELIVER "\"deliver\":"

/* ---- authentication ------------------------------------------------------ */

static void anonymous_clients_are_refused_where_the_listener_takes_none(th_ctx_t *t)
{
    size_t from = th_broker_log_size(t->broker);
    /* The default listener: no allow_anonymous, and a password file. */
    assert_int_equal(try_user(t->port, 5, "anon5", NULL, NULL), 0x87);
    assert_int_equal(try_user(t->port, 4, "anon4", NULL, NULL), 5);
    th_broker_logged_once(t->broker, from, "client anon5 (127.0.0.1:");
    th_broker_logged_once(t->broker, from, "client anon4 (127.0.0.1:");
    char *log = th_broker_log(t->broker, from);
    assert_int_equal(th_count(log, "no user name, and this listener takes no anonymous "
                                   "clients: refused"),
                     2);
    free(log);
    /* The second listener has "allow_anonymous": true. */
    assert_int_equal(try_user(t->broker->port2, 5, "anon5", NULL, NULL), 0);
    assert_int_equal(try_user(t->broker->port2, 4, "anon4", NULL, NULL), 0);
    /* Users get in on both. */
    assert_int_equal(try_user(t->port, 4, "alice", "alice", "alice-pw"), 0);
    assert_int_equal(try_user(t->broker->port2, 5, "alice", "alice", "alice-pw"), 0);
    assert_int_equal(stat_of(t, "\"anonymous_refused\":"), 2);
}

static void allow_anonymous_true_lets_anonymous_clients_in_beside_the_users(th_ctx_t *t)
{
    assert_int_equal(try_user(t->port, 5, "anon5", NULL, NULL), 0);
    assert_int_equal(try_user(t->port, 4, "anon4", NULL, NULL), 0);
    assert_int_equal(try_user(t->port, 5, "alice", "alice", "alice-pw"), 0);
    assert_int_equal(try_user(t->port, 5, "alice", "alice", "not-alice-pw"), 0x86);
    /* The listener on @PORT2@ says "allow_anonymous": false. */
    assert_int_equal(try_user(t->broker->port2, 5, "anon5", NULL, NULL), 0x87);
    assert_int_equal(try_user(t->broker->port2, 4, "anon4", NULL, NULL), 5);
    assert_int_equal(try_user(t->broker->port2, 4, "alice", "alice", "alice-pw"), 0);
}

static void bad_credentials_are_refused_logged_once_without_the_password(th_ctx_t *t)
{
    size_t from = th_broker_log_size(t->broker);
    assert_int_equal(try_user(t->port, 5, "w5", "alice", "Wrong-Secret-5"), 0x86);
    assert_int_equal(try_user(t->port, 4, "w4", "alice", "Wrong-Secret-4"), 4);
    assert_int_equal(try_user(t->port, 5, "u5", "nobody", "Unknown-Secret-5"), 0x86);
    assert_int_equal(try_user(t->port, 4, "u4", "nobody", "Unknown-Secret-4"), 4);
    assert_int_equal(try_user(t->port, 5, "np5", "bob", NULL), 0x86); /* no password */
    th_broker_logged_once(t->broker, from, "client w5 (127.0.0.1:");
    th_broker_logged_once(t->broker, from, "client w4 (127.0.0.1:");
    th_broker_logged_once(t->broker, from, "client u5 (127.0.0.1:");
    th_broker_logged_once(t->broker, from, "client u4 (127.0.0.1:");
    th_broker_logged_once(t->broker, from, "client np5 (127.0.0.1:");
    th_broker_logged_once(t->broker, from, "bad user name or password (user \"bob\"): refused");
    char *log = th_broker_log(t->broker, from);
    assert_int_equal(th_count(log, "bad user name or password (user \"alice\"): refused"), 2);
    assert_int_equal(th_count(log, "bad user name or password (user \"nobody\"): refused"), 2);
    assert_null(strstr(log, "Secret"));
    free(log);
    assert_int_equal(stat_of(t, "\"bad_credentials\":"), 5);
    /* The HTTP/2 port refuses the same credentials with 401. */
    const char *hdrs[] = {"authorization", "Basic YWxpY2U6V3JvbmctU2VjcmV0LTU=", NULL};
    th_h2_resp_t *r = th_h2_get(t->broker->http_port, "GET", "/v1/stats", hdrs, NULL, 0);
    assert_int_equal(r->status, 401);
    th_h2_resp_free(r);
    assert_int_equal(stat_of(t, "\"bad_credentials\":"), 6);
    log = th_broker_stop_log(t->broker);
    assert_null(strstr(log, "Secret"));
    free(log);
}

static void each_hash_type_lets_its_user_in(th_ctx_t *t)
{
    static const char *const users[][2] = {
        {"alice", "alice-pw"}, /* $7$, mosquitto_passwd's default */
        {"bob", "bob-pw"},     /* $6$ */
        {"carol", "carol-pw"}, /* argon2id, 1 MiB */
        {"dave", "dave-pw"},   /* argon2id, 64 MiB */
    };
    for (size_t i = 0; i < sizeof users / sizeof users[0]; i++) {
        assert_int_equal(try_user(t->port, 5, users[i][0], users[i][0], users[i][1]), 0);
        assert_int_equal(try_user(t->port, 4, users[i][0], users[i][0], users[i][1]), 0);
        assert_int_equal(try_user(t->port, 5, users[i][0], users[i][0], "bob-pw-not"), 0x86);
        /* Another user's right password is wrong here. */
        assert_int_equal(try_user(t->port, 4, users[i][0], users[i][0], users[(i + 1) % 4][1]), 4);
    }
}

#define N_AT_ONCE 10
#define N_GONE    6

static void argon2id_clients_connecting_at_once_all_get_their_answer(th_ctx_t *t)
{
    /* The cache is off: every CONNECT costs a hash on the thread pool. */
    int fd[N_AT_ONCE];
    for (int i = 0; i < N_AT_ONCE; i++) {
        unsigned char pkt[256];
        char id[16];
        snprintf(id, sizeof id, "many-%d", i);
        /* Every fifth one has a wrong password. */
        th_connect_t c = as_user(4, id, "carol", i % 5 == 4 ? "carol-pw?" : "carol-pw");
        size_t n = th_build_connect(pkt, sizeof pkt, &c);
        fd[i] = th_connect(t->port);
        th_send(fd[i], pkt, n);
    }
    for (int i = 0; i < N_AT_ONCE; i++) {
        static const unsigned char ok[] = {0x20, 0x02, 0x00, 0x00};
        static const unsigned char bad[] = {0x20, 0x02, 0x00, 0x04};
        th_expect(fd[i], i % 5 == 4 ? bad : ok, 4, 30000);
    }
    for (int i = 0; i < N_AT_ONCE; i++)
        if (i % 5 != 4) ping(fd[i]);
    assert_int_equal(stat_of(t, "\"bad_credentials\":"), 2);
    assert_int_equal(stat_of(t, "\"busy\":"), 0);
    assert_int_equal(stat_of(t, "\"cache_hits\":"), 0);
}

static void a_pipelined_connect_subscribe_publish_is_handled_in_order(th_ctx_t *t)
{
    /* v3.1.1 CONNECT "pipe" (clean, keep-alive 60) of carol:carol-pw,
     * SUBSCRIBE id 1 "pipe/#" QoS 0, PUBLISH QoS 0 "pipe/x" = "hi" and
     * PINGREQ, sent in one write; the argon2id check runs between the
     * CONNECT and the rest. */
    static const unsigned char connect[] = {0x10, 0x21, 0x00, 0x04, 'M',  'Q', 'T', 'T',  0x04,
                                            0xc2, 0x00, 0x3c, 0x00, 0x04, 'p', 'i', 'p',  'e',
                                            0x00, 0x05, 'c',  'a',  'r',  'o', 'l', 0x00, 0x08,
                                            'c',  'a',  'r',  'o',  'l',  '-', 'p', 'w'};
    static const unsigned char subscribe[] = {0x82, 0x0b, 0x00, 0x01, 0x00, 0x06, 'p',
                                              'i',  'p',  'e',  '/',  '#',  0x00};
    static const unsigned char publish[] = {0x30, 0x0a, 0x00, 0x06, 'p', 'i',
                                            'p',  'e',  '/',  'x',  'h', 'i'};
    static const unsigned char pingreq[] = {0xc0, 0x00};
    static const unsigned char connack[] = {0x20, 0x02, 0x00, 0x00};
    static const unsigned char suback[] = {0x90, 0x03, 0x00, 0x01, 0x00};
    static const unsigned char pingresp[] = {0xd0, 0x00};
    unsigned char pkt[PKT_CAP], buf[PKT_CAP];
    size_t n = 0;
    const struct {
        const unsigned char *p;
        size_t len;
    } parts[] = {{connect, sizeof connect},
                 {subscribe, sizeof subscribe},
                 {publish, sizeof publish},
                 {pingreq, sizeof pingreq}};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        memcpy(pkt + n, parts[i].p, parts[i].len);
        n += parts[i].len;
    }
    int fd = th_connect(t->port);
    th_send(fd, pkt, n);
    th_expect(fd, connack, sizeof connack, WAIT);
    th_expect(fd, suback, sizeof suback, WAIT);
    th_expect(fd, publish, sizeof publish, WAIT); /* its own message */
    th_expect(fd, pingresp, sizeof pingresp, WAIT);
    th_mqtt_disconnect(fd);
    /* The same in MQTT 5 (a CONNACK with properties): packet types in order. */
    th_connect_t c = as_user(5, "pipe5", "carol", "carol-pw");
    n = th_build_connect(pkt, sizeof pkt, &c);
    n += th_build_subscribe(pkt + n, sizeof pkt - n, 5, 1, "pipe/#", 0);
    n += th_build_publish(pkt + n, sizeof pkt - n, 5, "pipe/5", 0, false, false, 0, "v5", 2);
    pkt[n++] = 0xc0;
    pkt[n++] = 0x00;
    fd = th_connect(t->port);
    th_send(fd, pkt, n);
    th_read_type(fd, 0x20, buf, sizeof buf, WAIT);
    assert_int_equal(buf[3], 0x00);
    th_read_type(fd, 0x90, buf, sizeof buf, WAIT);
    expect_publish(fd, 5, "pipe/5", "v5");
    th_read_type(fd, 0xd0, buf, sizeof buf, WAIT);
    th_mqtt_disconnect(fd);
}

#define N_BUSY 12

/* Sends N_BUSY CONNECTs at once (v3.1.1 and v5 in turn), client i named
 * id_fmt with i, as user_fmt with i (a format with or without %d), with
 * sloth's password; their sockets into fd. */
static void send_sloth_connects(th_ctx_t *t, int fd[N_BUSY], const char *id_fmt,
                                const char *user_fmt)
{
    for (int i = 0; i < N_BUSY; i++) {
        unsigned char pkt[256];
        char id[16], user[16];
        snprintf(id, sizeof id, id_fmt, i);
        snprintf(user, sizeof user, user_fmt, i);
        th_connect_t c = as_user(i % 2 ? 5 : 4, id, user, "sloth-pw");
        size_t n = th_build_connect(pkt, sizeof pkt, &c);
        fd[i] = th_connect(t->port);
        th_send(fd[i], pkt, n);
    }
}

static void connects_past_max_auth_pending_are_told_the_server_is_busy(th_ctx_t *t)
{
    /* max_auth_pending 1 per worker loop (4 at most), no cache: while a
     * loop checks one sloth's password (0.4 s of CPU), its next CONNECT
     * with other credentials gets 0x89 Server busy (v3.1.1: 3). Twelve
     * CONNECTs of twelve users sent at once: at least one loop gets two
     * of them in that time. */
    int fd[N_BUSY], busy = 0;
    send_sloth_connects(t, fd, "busy-%d", "sloth%d");
    for (int i = 0; i < N_BUSY; i++) {
        unsigned char buf[256];
        th_read_type(fd[i], 0x20, buf, sizeof buf, 30000);
        if (buf[3] == (i % 2 ? 0x89 : 3)) {
            busy++;
            th_expect_closed(fd[i], WAIT);
        } else {
            assert_int_equal(buf[3], 0x00);
            ping(fd[i]);
        }
        th_close(fd[i]);
    }
    assert_true(busy >= 1);
    assert_int_equal(stat_of(t, "\"busy\":"), busy);
    assert_int_equal(stat_of(t, "\"bad_credentials\":"), 0);
    /* Nothing waits now: sloth gets in. */
    assert_int_equal(try_user(t->port, 5, "sloth", "sloth", "sloth-pw"), 0);
}

static void connects_with_the_same_credentials_share_one_check(th_ctx_t *t)
{
    /* The same settings, and twelve CONNECTs of one user sent at once:
     * each loop checks sloth's password once and the other CONNECTs of
     * those credentials wait for that verdict instead of asking for a
     * check of their own, so none is told the server is busy. */
    int fd[N_BUSY];
    send_sloth_connects(t, fd, "same-%d", "sloth");
    for (int i = 0; i < N_BUSY; i++) {
        unsigned char buf[256];
        th_read_type(fd[i], 0x20, buf, sizeof buf, 30000);
        assert_int_equal(buf[3], 0x00);
        ping(fd[i]);
        th_close(fd[i]);
    }
    assert_int_equal(stat_of(t, "\"busy\":"), 0);
}

static void clients_that_leave_while_their_password_is_checked_leave_nothing(th_ctx_t *t)
{
    /* dave's argon2id takes 64 MiB and a while: each client is gone
     * before its check ends (the broker reads nothing more from it until
     * then). Every third one has the wrong password. */
    size_t from = th_broker_log_size(t->broker);
    for (int i = 0; i < N_GONE; i++) {
        unsigned char pkt[256];
        char id[16];
        snprintf(id, sizeof id, "gone-%d", i);
        th_connect_t c = as_user(i % 2 ? 5 : 4, id, "dave", i % 3 ? "dave-pw" : "dave-pw-no");
        size_t n = th_build_connect(pkt, sizeof pkt, &c);
        int fd = th_connect(t->port);
        th_send(fd, pkt, n);
        th_close(fd);
    }
    /* Each is answered once its check ends, and finds its peer gone. */
    for (int i = 0; i < N_GONE; i++) {
        char id[16], refused[64];
        snprintf(id, sizeof id, "gone-%d", i);
        snprintf(refused, sizeof refused, "client %s (127.0.0.1:", id);
        if (i % 3 == 0 && !th_broker_wait_log(t->broker, from, refused, 30000))
            fail_msg("no refusal of %s in the log", id);
        if (i % 3 != 0) th_broker_wait_closed(t->broker, from, id);
    }
    /* The broker still serves, dave too. */
    int fd = open_as(t->port, 5, "dave", "dave", "dave-pw");
    ping(fd);
    int fd2 = open_as(t->port, 4, "alice", "alice", "alice-pw");
    ping(fd2);
    th_mqtt_disconnect(fd2);
    th_mqtt_disconnect(fd);
    /* The teardown stops the broker: exit 0 (no leak under SAN=1). */
}

static void the_broker_stops_cleanly_while_passwords_are_checked(th_ctx_t *t)
{
    /* More checks of dave's than the thread pool has threads, with
     * passwords no cache holds; SIGTERM comes while they run (or wait to
     * run: the 30 ms only make that likely, the test holds either way). */
    int fd[N_GONE];
    for (int i = 0; i < N_GONE; i++) {
        unsigned char pkt[256];
        char id[16], pass[16];
        snprintf(id, sizeof id, "stopping-%d", i);
        snprintf(pass, sizeof pass, "dave-pw-%d", i);
        th_connect_t c = as_user(5, id, "dave", pass);
        size_t n = th_build_connect(pkt, sizeof pkt, &c);
        fd[i] = th_connect(t->port);
        th_send(fd[i], pkt, n);
    }
    th_sleep_ms(30);
    char *log = th_broker_stop_log(t->broker); /* fails unless exit 0 */
    free(log);
    for (int i = 0; i < N_GONE; i++) {
        /* Whatever came before the close, it let nobody in. */
        unsigned char buf[64];
        int r = th_try_read_packet(fd[i], buf, sizeof buf, WAIT);
        assert_false(r >= 4 && buf[0] == 0x20 && buf[3] == 0x00);
        th_close(fd[i]);
    }
}

/* ---- the ACL: publish, subscribe, deliveries ------------------------------ */

static void publishes_need_write_permission(th_ctx_t *t)
{
    /* A watcher that reads everything (admin: readwrite #). */
    int w = open_as(t->port, 4, "watch", "admin", "admin-pw");
    subscribe1(w, 4, 1, "#", 1);
    int fd = open_as(t->port, 5, "bob5", "bob", "bob-pw");
    assert_int_equal(publish_ack(fd, 5, "ro/x", 1, 1), 0x87); /* read only */
    assert_int_equal(publish_ack(fd, 5, "wo/x", 1, 2), 0x00);
    assert_int_equal(publish_ack(fd, 5, "rw/x", 1, 3), 0x00);
    assert_int_equal(publish_ack(fd, 5, "rw/no/x", 1, 4), 0x87); /* deny */
    assert_int_equal(publish_ack(fd, 5, "a/x", 1, 5), 0x87);     /* alice's */
    assert_int_equal(publish_ack(fd, 5, "ro/y", 2, 6), 0x87);    /* PUBREC */
    publish0(fd, 5, "ro/z", "dropped", false);
    assert_int_equal(publish_ack(fd, 5, "wo/last", 2, 7), 0x00);
    th_mqtt_disconnect(fd);
    expect_publish(w, 4, "wo/x", NULL); /* the allowed ones only, in order */
    expect_publish(w, 4, "rw/x", NULL);
    expect_publish(w, 4, "wo/last", NULL);
    /* MQTT 3.1.1: acknowledged as usual, and dropped. */
    static const unsigned char puback8[] = {0x40, 0x02, 0x00, 0x08};
    static const unsigned char pubrec9[] = {0x50, 0x02, 0x00, 0x09};
    static const unsigned char pubcomp9[] = {0x70, 0x02, 0x00, 0x09};
    unsigned char pkt[256];
    fd = open_as(t->port, 4, "bob4", "bob", "bob-pw");
    size_t n = th_build_publish(pkt, sizeof pkt, 4, "ro/v3", 1, false, false, 8, "x", 1);
    th_send(fd, pkt, n);
    th_expect(fd, puback8, sizeof puback8, WAIT);
    n = th_build_publish(pkt, sizeof pkt, 4, "ro/v3", 2, false, false, 9, "x", 1);
    th_send(fd, pkt, n);
    th_expect(fd, pubrec9, sizeof pubrec9, WAIT);
    th_send_ack(fd, 0x62, 9);
    th_expect(fd, pubcomp9, sizeof pubcomp9, WAIT);
    assert_int_equal(publish_ack(fd, 4, "wo/v3", 1, 10), 0);
    th_mqtt_disconnect(fd);
    expect_publish(w, 4, "wo/v3", NULL);
    ping(w);
    assert_int_equal(stat_of(t, ACL_DENIED_PUBLISH), 7);
}

static void each_filter_of_a_subscribe_is_checked(th_ctx_t *t)
{
    static const char *const filters[] = {"ro/#",    /* read */
                                          "wo/#",    /* write only */
                                          "rw/+",    /* readwrite */
                                          "rw/no/#", /* a deny covers all of it */
                                          "rw/#",    /* rw/no/# is denied, the rest is not */
                                          "#",       /* wider than the grants */
                                          "a/#",     /* alice's */
                                          "users/bob/#", "users/alice/#", /* pattern %u */
                                          NULL};
    static const uint8_t want5[] = {0x01, 0x87, 0x01, 0x87, 0x01, 0x01, 0x87, 0x01, 0x87};
    static const uint8_t want4[] = {0x01, 0x80, 0x01, 0x80, 0x01, 0x01, 0x80, 0x01, 0x80};
    int fd5 = open_as(t->port, 5, "bob5", "bob", "bob-pw");
    subscribe_expect(fd5, 5, 1, filters, want5);
    int fd4 = open_as(t->port, 4, "bob4", "bob", "bob-pw");
    subscribe_expect(fd4, 4, 2, filters, want4);
    /* What the granted filters deliver is still checked: rw/no/x is not. */
    int pub = open_as(t->port, 4, "pub", "admin", "admin-pw");
    assert_int_equal(publish_ack(pub, 4, "rw/no/x", 1, 1), 0);
    assert_int_equal(publish_ack(pub, 4, "wo/x", 1, 2), 0);
    assert_int_equal(publish_ack(pub, 4, "ro/x", 1, 3), 0);
    expect_publish(fd5, 5, "ro/x", NULL);
    expect_publish(fd4, 4, "ro/x", NULL);
    th_mqtt_disconnect(pub);
    th_mqtt_disconnect(fd4);
    th_mqtt_disconnect(fd5);
    assert_int_equal(stat_of(t, "\"subscribe\":"), 8);
}

static void a_wildcard_subscriber_gets_only_what_it_may_read(th_ctx_t *t)
{
    int eve = open_as(t->port, 5, "eve", "eve", "eve-pw");
    subscribe1(eve, 5, 1, "#", 0x01);
    /* A shared subscription's messages are checked the same way. */
    int shared = open_as(t->port, 5, "eve-shared", "eve", "eve-pw");
    subscribe1(shared, 5, 1, "$share/g/#", 0x01);
    int pub = open_as(t->port, 5, "pub", "admin", "admin-pw");
    static const char *const topics[] = {"secret/a", "open/a", "secret/b/c",
                                         "open/b",   "secret", "open/c"};
    for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++)
        assert_int_equal(publish_ack(pub, 5, topics[i], 1, (uint16_t)(i + 1)), 0);
    for (int i = 0; i < 2; i++) {
        int fd = i == 0 ? eve : shared;
        expect_publish(fd, 5, "open/a", NULL);
        expect_publish(fd, 5, "open/b", NULL);
        expect_publish(fd, 5, "open/c", NULL);
        ping(fd);
    }
    wait_stat(t, ACL_DENIED_DELIVER, 6);
    th_mqtt_disconnect(pub);
    th_mqtt_disconnect(shared);
    th_mqtt_disconnect(eve);
}

static void retained_messages_the_subscriber_may_not_read_are_not_sent(th_ctx_t *t)
{
    int pub = open_as(t->port, 4, "pub", "admin", "admin-pw");
    unsigned char pkt[256];
    size_t n = th_build_publish(pkt, sizeof pkt, 4, "secret/r", 1, true, false, 1, "no", 2);
    th_send(pub, pkt, n);
    th_expect_ack(pub, 0x40, 1, WAIT);
    n = th_build_publish(pkt, sizeof pkt, 4, "open/r", 1, true, false, 2, "yes", 3);
    th_send(pub, pkt, n);
    th_expect_ack(pub, 0x40, 2, WAIT);
    int eve = open_as(t->port, 4, "eve", "eve", "eve-pw");
    subscribe1(eve, 4, 1, "#", 0x01);
    assert_true(expect_publish(eve, 4, "open/r", "yes")); /* retained */
    ping(eve);                                            /* nothing else came with the SUBACK */
    /* admin reads both. */
    int adm = open_as(t->port, 4, "adm", "admin", "admin-pw");
    subscribe1(adm, 4, 1, "secret/#", 0x01);
    assert_true(expect_publish(adm, 4, "secret/r", "no"));
    th_mqtt_disconnect(adm);
    th_mqtt_disconnect(eve);
    th_mqtt_disconnect(pub);
}

static void patterns_give_each_client_its_subtree(th_ctx_t *t)
{
    /* pattern readwrite clients/%c/#, pattern read users/%u/# */
    int fd = open_as(t->port, 5, "c7", "bob", "bob-pw");
    assert_int_equal(publish_ack(fd, 5, "clients/c7/x", 1, 1), NO_MATCH);
    assert_int_equal(publish_ack(fd, 5, "clients/c8/x", 1, 2), 0x87);
    assert_int_equal(publish_ack(fd, 5, "users/bob/x", 1, 3), 0x87); /* read only */
    subscribe1(fd, 5, 4, "clients/c7/#", 0x01);
    subscribe1(fd, 5, 5, "clients/c8/#", 0x87);
    subscribe1(fd, 5, 6, "users/bob/#", 0x01);
    subscribe1(fd, 5, 7, "users/alice/#", 0x87);
    th_mqtt_disconnect(fd);
    /* A client id with '+' matches no pattern at all (CVE-2017-7650):
     * clients/%c/# is not clients/+/#, and users/%u/# is gone too. */
    fd = open_as(t->port, 5, "+", "bob", "bob-pw");
    assert_int_equal(publish_ack(fd, 5, "clients/c7/x", 1, 1), 0x87);
    subscribe1(fd, 5, 2, "clients/+/#", 0x87);
    subscribe1(fd, 5, 3, "users/bob/#", 0x87);
    subscribe1(fd, 5, 4, "ro/#", 0x01); /* its user's own lines still count */
    th_mqtt_disconnect(fd);
    fd = open_as(t->port, 4, "a+b", "bob", "bob-pw");
    subscribe1(fd, 4, 1, "users/bob/#", 0x80);
    th_mqtt_disconnect(fd);
}

static void anonymous_clients_have_the_lines_before_the_first_user(th_ctx_t *t)
{
    uint16_t anon_port = t->broker->port2;
    int fd = open_as(anon_port, 5, "anon1", NULL, NULL);
    subscribe1(fd, 5, 1, "public/#", 0x01);
    subscribe1(fd, 5, 2, "anon/#", 0x87);          /* write only */
    subscribe1(fd, 5, 3, "a/#", 0x87);             /* alice's */
    subscribe1(fd, 5, 4, "clients/anon1/#", 0x01); /* %c patterns apply */
    subscribe1(fd, 5, 5, "users/#", 0x87);         /* %u ones do not */
    assert_int_equal(publish_ack(fd, 5, "anon/x", 1, 6), NO_MATCH);
    assert_int_equal(publish_ack(fd, 5, "public/x", 1, 7), 0x87);
    publish0(fd, 5, "clients/anon1/x", "mine", false);
    expect_publish(fd, 5, "clients/anon1/x", "mine"); /* its own, read back */
    int pub = open_as(t->port, 4, "pub", "admin", "admin-pw");
    assert_int_equal(publish_ack(pub, 4, "public/news", 1, 1), 0);
    expect_publish(fd, 5, "public/news", NULL);
    th_mqtt_disconnect(pub);
    th_mqtt_disconnect(fd);
}

static void sys_topics_need_a_grant(th_ctx_t *t)
{
    /* sys_interval 1: $SYS/broker/... every second. */
    int eve = open_as(t->port, 5, "eve", "eve", "eve-pw"); /* read # */
    subscribe1(eve, 5, 1, "$SYS/#", 0x87);
    subscribe1(eve, 5, 2, "$SYS/broker/uptime", 0x87);
    int adm = open_as(t->port, 5, "adm", "admin", "admin-pw");
    subscribe1(adm, 5, 1, "$SYS/broker/uptime", 0x01);
    expect_publish(adm, 5, "$SYS/broker/uptime", NULL);
    /* sysup may read the uptime only: "$SYS/#" is granted and delivers
     * that topic alone. */
    int up = open_as(t->port, 4, "sysup", "sysup", "sysup-pw");
    subscribe1(up, 4, 1, "$SYS/#", 0x01);
    for (int i = 0; i < 3; i++) /* the retained one, then updates */
        expect_publish(up, 4, "$SYS/broker/uptime", NULL);
    th_mqtt_disconnect(up);
    th_mqtt_disconnect(adm);
    ping(eve);
    th_mqtt_disconnect(eve);
    /* /v1/stats needs $SYS too. */
    const char *hdrs[] = {"authorization", EVE_BASIC, NULL};
    th_h2_resp_t *r = th_h2_get(t->broker->http_port, "GET", "/v1/stats", hdrs, NULL, 0);
    assert_int_equal(r->status, 403);
    th_h2_resp_free(r);
}

/* Status of an HTTP/2 request with Basic credentials auth (NULL: none). */
static int http_status(th_ctx_t *t, const char *method, const char *path, const char *auth)
{
    const char *hdrs[] = {"authorization", auth, NULL};
    th_h2_resp_t *r = th_h2_get(t->broker->http_port, method, path, auth != NULL ? hdrs : NULL,
                                method[0] == 'P' ? "h" : NULL, method[0] == 'P' ? 1 : 0);
    int status = r->status;
    th_h2_resp_free(r);
    return status;
}

static void http_requests_have_their_users_rights_and_no_client_id(th_ctx_t *t)
{
    /* An MQTT client whose id is "-" owns clients/-/# (pattern %c). */
    int dash = open_as(t->port, 4, "-", "alice", "alice-pw");
    subscribe1(dash, 4, 1, "clients/-/#", 0x01);
    /* An HTTP request of bob's has no client id: no %c pattern is its,
     * whatever stands for the id; the %u ones are, and bob's lines. */
    assert_int_equal(http_status(t, "POST", "/v1/publish/clients/-/x", BOB_BASIC), 403);
    assert_int_equal(http_status(t, "GET", "/v1/subscribe?filter=clients/-/%23", BOB_BASIC), 403);
    assert_int_equal(http_status(t, "GET", "/v1/retained/clients/-/x", BOB_BASIC), 403);
    assert_int_equal(http_status(t, "GET", "/v1/retained/users/bob/x", BOB_BASIC), 404);
    assert_int_equal(http_status(t, "GET", "/v1/retained/users/eve/x", BOB_BASIC), 403);
    assert_int_equal(http_status(t, "POST", "/v1/publish/ro/x", BOB_BASIC), 403);
    assert_int_equal(http_status(t, "POST", "/v1/publish/wo/x", BOB_BASIC), 204);
    assert_int_equal(http_status(t, "POST", "/v1/publish/clients/-/y", ADMIN_BASIC), 204);
    expect_publish(dash, 4, "clients/-/y", "h"); /* admin's, the first to arrive */
    th_mqtt_disconnect(dash);
}

static void http_requests_gone_while_their_password_is_checked_leave_nothing(th_ctx_t *t)
{
    /* No cache: each request of dave's costs a 64 MiB argon2id. One is
     * cancelled (RST_STREAM), then the connection closes with another
     * still waiting for its check. */
    const char *hdrs[] = {"authorization", DAVE_BASIC, NULL};
    th_h2_t *h = th_h2_open(t->broker->http_port, false);
    int32_t a = th_h2_request(h, "GET", "/v1/retained/users/dave/a", hdrs, NULL, 0);
    th_h2_request(h, "POST", "/v1/publish/users/dave/b", hdrs, "b", 1);
    th_h2_cancel(h, a);
    th_h2_close(h);
    /* The broker still answers dave (his %u pattern lets him read
     * users/dave/#: 404, nothing retained there), and refuses a wrong
     * password. */
    assert_int_equal(http_status(t, "GET", "/v1/retained/users/dave/c", DAVE_BASIC), 404);
    assert_int_equal(http_status(t, "GET", "/v1/retained/users/dave/c", BOB_BASIC), 403);
    assert_int_equal(http_status(t, "GET", "/v1/retained/users/dave/c", "Basic ZGF2ZTpubw=="),
                     401); /* dave:no */
    /* The teardown stops the broker: exit 0 (no leak under SAN=1). */
}

/* A v3.1.1 client of bob with a will on will_topic, dropped without
 * DISCONNECT. */
static void drop_with_will(th_ctx_t *t, const char *id, const char *will_topic)
{
    th_connect_t c = as_user(4, id, "bob", "bob-pw");
    c.will_topic = will_topic;
    c.will_payload = "bye";
    int fd = th_mqtt_connect(t->port, &c, NULL);
    ping(fd);
    th_close(fd);
}

static void a_will_is_published_only_where_its_client_may_write(th_ctx_t *t)
{
    int w = open_as(t->port, 4, "watch", "admin", "admin-pw");
    subscribe1(w, 4, 1, "#", 0x01);
    drop_with_will(t, "will-ro", "ro/will"); /* bob may only read ro/# */
    wait_stat(t, ACL_DENIED_PUBLISH, 1);
    drop_with_will(t, "will-wo", "wo/will");
    expect_publish(w, 4, "wo/will", "bye");
    ping(w);
    assert_int_equal(stat_of(t, ACL_DENIED_PUBLISH), 1);
    th_mqtt_disconnect(w);
}

/* ---- SIGHUP -------------------------------------------------------------- */

static void sighup_takes_new_users_and_rules_and_keeps_connections(th_ctx_t *t)
{
    char want[256];
    int old = open_as(t->port, 5, "old", "old", "old-pw");
    subscribe1(old, 5, 1, "x/#", 0x01);
    subscribe1(old, 5, 2, "y/#", 0x87);
    assert_int_equal(try_user(t->port, 5, "new", "new", "new-pw"), 0x86);
    /* A new user and new rules, then SIGHUP. */
    run_sh("mosquitto_passwd -b hup.passwd new new-pw");
    put_file(dpath("hup", "acl"), HUP_ACL_2);
    size_t from = th_broker_log_size(t->broker);
    th_broker_signal(t->broker, SIGHUP);
    snprintf(want, sizeof want, "password file %s reloaded: 2 users", dpath("hup", "passwd"));
    th_broker_logged_once(t->broker, from, want);
    snprintf(want, sizeof want, "ACL file %s reloaded: ", dpath("hup", "acl"));
    th_broker_logged_once(t->broker, from, want);
    int nw = open_as(t->port, 5, "new", "new", "new-pw");
    /* old's next PUBLISH and SUBSCRIBE follow the new rules ... */
    assert_int_equal(publish_ack(old, 5, "x/a", 1, 3), 0x87); /* read only now */
    subscribe1(old, 5, 4, "y/#", 0x01);
    /* ... and so do deliveries to its subscription from before. */
    assert_int_equal(publish_ack(nw, 5, "x/secret", 1, 1), 0x00);
    assert_int_equal(publish_ack(nw, 5, "x/a", 1, 2), 0x00);
    expect_publish(old, 5, "x/a", NULL);
    ping(old);
    /* A broken ACL file: the rules in force stay, the log names the line. */
    put_file(dpath("hup", "acl"), HUP_ACL_BAD);
    from = th_broker_log_size(t->broker);
    th_broker_signal(t->broker, SIGHUP);
    snprintf(want, sizeof want, "acl_file: %s:3: unknown access word 'sometimes'",
             dpath("hup", "acl"));
    th_broker_logged_once(t->broker, from, want);
    th_broker_logged_once(t->broker, from, "keeping the rules loaded before");
    subscribe1(old, 5, 5, "y/+", 0x01);
    assert_int_equal(publish_ack(old, 5, "x/b", 1, 6), 0x87);
    assert_int_equal(publish_ack(nw, 5, "x/secret", 1, 3), 0x00);
    assert_int_equal(publish_ack(nw, 5, "x/c", 1, 4), 0x00);
    expect_publish(old, 5, "x/c", NULL);
    assert_int_equal(try_user(t->port, 4, "new4", "new", "new-pw"), 0); /* still a user */
    ping(old);
    th_mqtt_disconnect(nw);
    /* A user removed is refused at once: the reload empties the cache
     * of verified passwords, where new's is. */
    run_sh("mosquitto_passwd -D hup.passwd new");
    from = th_broker_log_size(t->broker);
    th_broker_signal(t->broker, SIGHUP);
    snprintf(want, sizeof want, "password file %s reloaded: 1 ", dpath("hup", "passwd"));
    th_broker_logged_once(t->broker, from, want);
    assert_int_equal(try_user(t->port, 5, "new5", "new", "new-pw"), 0x86);
    /* A broken password file: the users in force stay. */
    run_sh("echo 'no colon here' >>hup.passwd");
    from = th_broker_log_size(t->broker);
    th_broker_signal(t->broker, SIGHUP);
    snprintf(want, sizeof want, "password_file: %s:2: ", dpath("hup", "passwd"));
    th_broker_logged_once(t->broker, from, want);
    th_broker_logged_once(t->broker, from, "keeping the users loaded before");
    assert_int_equal(try_user(t->port, 4, "old4", "old", "old-pw"), 0);
    assert_int_equal(try_user(t->port, 4, "new4", "new", "new-pw"), 4);
    ping(old);
    th_mqtt_disconnect(old);
}

/* ---- certificates, restarts ---------------------------------------------- */

static void a_certificate_cn_is_the_acl_user(th_ctx_t *t)
{
    th_tls_t mine = {th_pki_path(g_pki, "ca", "crt"), th_pki_path(g_pki, "client", "crt"),
                     th_pki_path(g_pki, "client", "key")};
    th_tls_t other = {th_pki_path(g_pki, "ca", "crt"), th_pki_path(g_pki, "other", "crt"),
                      th_pki_path(g_pki, "other", "key")};
    th_m5_t a, b;
    /* CN=tls-user: "user tls-user" grants tls/#; no password needed. */
    th_m5_open(&a, t->broker->port2, &(th_m5_opts_t){.id = "cn-a", .clean = true, .tls = &mine});
    assert_int_equal(th_m5_subscribe(&a, "tls/#", 1, NULL), 0x01);
    /* CN=other-user, claiming to be admin: the certificate wins. */
    th_m5_open(&b, t->broker->port2,
               &(th_m5_opts_t){.id = "cn-b",
                               .clean = true,
                               .tls = &other,
                               .username = "admin",
                               .password = "admin-pw"});
    assert_int_equal(th_m5_subscribe(&b, "tls/#", 1, NULL), 0x87);
    th_m5_publish(&b, "tls/b", "no", 2, 1, false, NULL);
    th_m5_wait_acks(&b, NULL, 1, WAIT);
    assert_int_equal(b.acks[0].reason, 0x87);
    th_m5_publish(&a, "tls/a", "yes", 3, 1, false, NULL);
    th_m5_wait_acks(&a, NULL, 1, WAIT);
    assert_int_equal(a.acks[0].reason, 0x00);
    th_m5_wait_msgs(&a, NULL, 1, WAIT);
    assert_string_equal(a.msgs[0].topic, "tls/a");
    th_m5_close(&b);
    th_m5_close(&a);
}

static void a_persistent_session_keeps_its_user_across_a_restart(th_ctx_t *t)
{
    th_connect_t p1 = as_user(4, "p1", "alice", "alice-pw");
    p1.clean = false;
    bool present = true;
    int fd = th_mqtt_connect(t->port, &p1, &present);
    assert_false(present);
    subscribe1(fd, 4, 1, "a/#", 0x01);
    th_mqtt_disconnect(fd);
    assert_int_equal(th_broker_stop_keep(t->broker), 0);
    th_broker_restart(t->broker, NULL);
    /* While p1 is offline: a/private (alice may not read it), then a/x. */
    int pub = open_as(t->broker->port, 4, "pub", "admin", "admin-pw");
    assert_int_equal(publish_ack(pub, 4, "a/private", 1, 1), 0);
    assert_int_equal(publish_ack(pub, 4, "a/x", 1, 2), 0);
    th_mqtt_disconnect(pub);
    fd = th_mqtt_connect(t->broker->port, &p1, &present);
    assert_true(present);
    expect_publish(fd, 4, "a/x", "x");
    ping(fd);
    th_mqtt_disconnect(fd);
    /* p1 back as bob: the session (a/# and all) takes bob's rights. */
    th_connect_t p1b = as_user(4, "p1", "bob", "bob-pw");
    p1b.clean = false;
    fd = th_mqtt_connect(t->broker->port, &p1b, &present);
    assert_true(present);
    subscribe1(fd, 4, 1, "ro/#", 0x01);
    pub = open_as(t->broker->port, 4, "pub", "admin", "admin-pw");
    assert_int_equal(publish_ack(pub, 4, "a/y", 1, 1), 0);
    assert_int_equal(publish_ack(pub, 4, "ro/y", 1, 2), 0);
    th_mqtt_disconnect(pub);
    expect_publish(fd, 4, "ro/y", "x");
    th_mqtt_disconnect(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TH_TEST_CFG(anonymous_clients_are_refused_where_the_listener_takes_none, g_main),
        TH_TEST_CFG(allow_anonymous_true_lets_anonymous_clients_in_beside_the_users, g_anon),
        TH_TEST_CFG(bad_credentials_are_refused_logged_once_without_the_password, g_main),
        TH_TEST_CFG(each_hash_type_lets_its_user_in, g_nocache),
        TH_TEST_CFG(argon2id_clients_connecting_at_once_all_get_their_answer, g_nocache),
        TH_TEST_CFG(a_pipelined_connect_subscribe_publish_is_handled_in_order, g_nocache),
        TH_TEST_CFG(connects_past_max_auth_pending_are_told_the_server_is_busy, g_busy),
        TH_TEST_CFG(connects_with_the_same_credentials_share_one_check, g_busy),
        TH_TEST_CFG(clients_that_leave_while_their_password_is_checked_leave_nothing, g_main),
        TH_TEST_CFG(the_broker_stops_cleanly_while_passwords_are_checked, g_main),
        TH_TEST_CFG(publishes_need_write_permission, g_main),
        TH_TEST_CFG(each_filter_of_a_subscribe_is_checked, g_main),
        TH_TEST_CFG(a_wildcard_subscriber_gets_only_what_it_may_read, g_main),
        TH_TEST_CFG(retained_messages_the_subscriber_may_not_read_are_not_sent, g_main),
        TH_TEST_CFG(patterns_give_each_client_its_subtree, g_main),
        TH_TEST_CFG(anonymous_clients_have_the_lines_before_the_first_user, g_main),
        TH_TEST_CFG(sys_topics_need_a_grant, g_main),
        TH_TEST_CFG(a_will_is_published_only_where_its_client_may_write, g_main),
        TH_TEST_CFG(http_requests_have_their_users_rights_and_no_client_id, g_main),
        TH_TEST_CFG(http_requests_gone_while_their_password_is_checked_leave_nothing, g_nocache),
        TH_TEST_CFG(sighup_takes_new_users_and_rules_and_keeps_connections, g_hup),
        TH_TEST_CFG(a_certificate_cn_is_the_acl_user, g_tls),
        TH_TEST_CFG(a_persistent_session_keeps_its_user_across_a_restart, g_main),
    };
    th_http_enable(true);
    return cmocka_run_group_tests_name("integration/20-access", tests, group_setup, group_teardown);
}

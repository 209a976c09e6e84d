/*
 * mosq5.c - libmosquitto MQTT 5.0 clients for the integration tests: the
 * callbacks record what the broker sent, property lists are copied before
 * libmosquitto frees them, and every wait runs mosquitto_loop in short
 * slices on the test thread until a count is reached or time is up.
 */
#include "tests/integration/harness/mosq5.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/integration/harness/harness.h"

#define CLOSE_WAIT_MS 1000

static bool g_init;

/* ---- callbacks ------------------------------------------------------------ */

/* Replaces *dst with a copy of src (NULL when src is NULL). */
static void props_keep(mosquitto_property **dst, const mosquitto_property *src)
{
    mosquitto_property_free_all(dst);
    if (src != NULL && mosquitto_property_copy_all(dst, src) != MOSQ_ERR_SUCCESS)
        fail_msg("mosquitto_property_copy_all failed");
}

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    th_m5_t *c = obj;
    (void)m;
    c->connack_rc = rc;
    c->session_present = (flags & 1) != 0;
    props_keep(&c->connack_props, props);
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n,
                         const int *granted, const mosquitto_property *props)
{
    th_m5_t *c = obj;
    int max = (int)(sizeof c->suback_rc / sizeof c->suback_rc[0]);
    (void)m, (void)mid;
    c->n_suback_rc = n < max ? n : max;
    for (int i = 0; i < c->n_suback_rc; i++)
        c->suback_rc[i] = granted[i];
    props_keep(&c->suback_props, props);
    c->n_subacks++;
}

static void on_unsubscribe(struct mosquitto *m, void *obj, int mid,
                           const mosquitto_property *props)
{
    th_m5_t *c = obj;
    (void)m, (void)mid;
    props_keep(&c->unsuback_props, props);
    c->n_unsubacks++;
}

static void on_publish(struct mosquitto *m, void *obj, int mid, int reason,
                       const mosquitto_property *props)
{
    th_m5_t *c = obj;
    (void)m;
    c->acks = th_grow(c->acks, &c->cap_acks, c->n_acks, sizeof *c->acks);
    c->acks[c->n_acks].mid = mid;
    c->acks[c->n_acks].reason = reason;
    c->n_acks++;
    props_keep(&c->ack_props, props);
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc,
                          const mosquitto_property *props)
{
    th_m5_t *c = obj;
    (void)m;
    /* 2.0.11 may report a close twice: the server's DISCONNECT, then the
     * dead socket (as success) when the loop next writes. Keep the first. */
    if (c->disconnected)
        return;
    c->disconnected = true;
    c->disconnect_rc = rc;
    props_keep(&c->disconnect_props, props);
}

/* Appends a copy of the message and of its properties. */
static void on_message(struct mosquitto *m, void *obj,
                       const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    th_m5_t *c = obj;
    th_m5_msg_t *e;
    (void)m;
    c->msgs = th_grow(c->msgs, &c->cap_msgs, c->n_msgs, sizeof *c->msgs);
    e = &c->msgs[c->n_msgs++];
    memset(e, 0, sizeof *e);
    e->topic = strdup(msg->topic);
    e->payload = malloc((size_t)msg->payloadlen + 1);
    assert_true(e->topic != NULL && e->payload != NULL);
    if (msg->payloadlen > 0)
        memcpy(e->payload, msg->payload, (size_t)msg->payloadlen);
    e->payload[msg->payloadlen] = '\0';
    e->len = msg->payloadlen;
    e->qos = msg->qos;
    e->retain = msg->retain;
    e->mid = msg->mid;
    props_keep(&e->props, props);
}

/* With TH_M5_LOG set, libmosquitto's own log lines as TAP comments. */
static void on_log(struct mosquitto *m, void *obj, int level, const char *line)
{
    (void)m, (void)level;
    fprintf(stderr, "# m5 %s: %s\n", ((th_m5_t *)obj)->id, line);
}

/* ---- connect -------------------------------------------------------------- */

/* atexit hook pairing the one mosquitto_lib_init of this file. */
static void lib_cleanup(void)
{
    mosquitto_lib_cleanup();
}

/* Creates the client with the callbacks above and the will, if any. */
static void create(th_m5_t *c, const th_m5_opts_t *o)
{
    const char *id = o->id != NULL && o->id[0] != '\0' ? o->id : NULL;
    if (!g_init && mosquitto_lib_init() == MOSQ_ERR_SUCCESS)
        atexit(lib_cleanup);
    g_init = true;
    memset(c, 0, sizeof *c);
    c->connack_rc = -1;
    c->disconnect_rc = -1;
    if (id != NULL)
        snprintf(c->id, sizeof c->id, "%s", id);
    /* With a NULL id libmosquitto 2.0 sends an empty client id (the server
     * assigns one) and mosquitto_new insists on clean start 1 for it. */
    c->m = mosquitto_new(id, id != NULL ? o->clean : true, c);
    assert_non_null(c->m);
    mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_connect_v5_callback_set(c->m, on_connect);
    mosquitto_subscribe_v5_callback_set(c->m, on_subscribe);
    mosquitto_unsubscribe_v5_callback_set(c->m, on_unsubscribe);
    mosquitto_publish_v5_callback_set(c->m, on_publish);
    mosquitto_disconnect_v5_callback_set(c->m, on_disconnect);
    mosquitto_message_v5_callback_set(c->m, on_message);
    if (getenv("TH_M5_LOG") != NULL)
        mosquitto_log_callback_set(c->m, on_log);
    if (o->username != NULL &&
        mosquitto_username_pw_set(c->m, o->username, o->password) != MOSQ_ERR_SUCCESS)
        fail_msg("mosquitto_username_pw_set %s failed", o->username);
    if (o->tls != NULL &&
        mosquitto_tls_set(c->m, o->tls->ca, NULL, o->tls->cert, o->tls->key, NULL) !=
            MOSQ_ERR_SUCCESS)
        fail_msg("mosquitto_tls_set %s failed", o->tls->ca);
    if (o->will_topic != NULL) {
        mosquitto_property *wp = NULL;
        int rc;
        props_keep(&wp, o->will_props); /* the library takes wp on success */
        rc = mosquitto_will_set_v5(c->m, o->will_topic, o->will_len,
                                   o->will_payload, o->will_qos,
                                   o->will_retain, wp);
        if (rc != MOSQ_ERR_SUCCESS) {
            mosquitto_property_free_all(&wp);
            fail_msg("mosquitto_will_set_v5 %s: %s", o->will_topic,
                     mosquitto_strerror(rc));
        }
    }
}

/* Creates the client (o NULL: defaults) and sends its CONNECT; returns
 * mosquitto_connect_bind_v5's result. */
static int start(th_m5_t *c, uint16_t port, const th_m5_opts_t *o)
{
    static const th_m5_opts_t none;
    if (o == NULL)
        o = &none;
    create(c, o);
    return mosquitto_connect_bind_v5(c->m, "127.0.0.1", port,
                                     o->keepalive > 0 ? o->keepalive : 60,
                                     NULL, o->props);
}

/* Creates the client and sends its CONNECT; see mosq5.h. */
void th_m5_start(th_m5_t *c, uint16_t port, const th_m5_opts_t *o)
{
    int rc = start(c, port, o);
    if (rc != MOSQ_ERR_SUCCESS)
        fail_msg("mosquitto_connect_bind_v5 port %u: %s", port,
                 mosquitto_strerror(rc));
}

/* Waits for the CONNACK; see mosq5.h. */
int th_m5_wait_connack(th_m5_t *c, int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    while (c->connack_rc == -1 && !c->disconnected && th_now_ms() < deadline) {
        if (mosquitto_loop(c->m, 10, 1) != MOSQ_ERR_SUCCESS)
            break; /* the broker closed the connection */
    }
    return c->connack_rc;
}

/* Connects and returns the CONNACK reason code; see mosq5.h. */
int th_m5_try_open(th_m5_t *c, uint16_t port, const th_m5_opts_t *o)
{
    if (start(c, port, o) != MOSQ_ERR_SUCCESS)
        return -1;
    return th_m5_wait_connack(c, TH_WAIT_MS);
}

/* Connects and fails the test unless the CONNACK is a success. */
void th_m5_open(th_m5_t *c, uint16_t port, const th_m5_opts_t *o)
{
    int rc = th_m5_try_open(c, port, o);
    if (rc != 0)
        fail_msg("v5 client '%s': CONNACK 0x%02x (-1 = none within %d ms)",
                 c->id, (unsigned)rc, TH_WAIT_MS);
}

/* ---- subscribe ------------------------------------------------------------ */

/* Subscribes with options and properties; see mosq5.h. */
int th_m5_subscribe(th_m5_t *c, const char *filter, int options,
                    const mosquitto_property *props)
{
    int64_t deadline = th_now_ms() + TH_WAIT_MS;
    int want = c->n_subacks + 1;
    int rc = mosquitto_subscribe_v5(c->m, NULL, filter, options & 0x03,
                                    options & ~0x03, props);
    if (rc != MOSQ_ERR_SUCCESS)
        fail_msg("mosquitto_subscribe_v5 %s: %s", filter,
                 mosquitto_strerror(rc));
    while (c->n_subacks < want && !c->disconnected && th_now_ms() < deadline)
        mosquitto_loop(c->m, 10, 1);
    if (c->n_subacks < want)
        fail_msg("no SUBACK for %s within %d ms", filter, TH_WAIT_MS);
    return c->n_suback_rc > 0 ? c->suback_rc[0] : -1;
}

/* Subscribes with a Subscription Identifier; see mosq5.h. */
int th_m5_subscribe_id(th_m5_t *c, const char *filter, int options,
                       uint32_t sub_id)
{
    mosquitto_property *p = NULL;
    int rc;
    if (mosquitto_property_add_varint(&p, MQTT_PROP_SUBSCRIPTION_IDENTIFIER,
                                      sub_id) != MOSQ_ERR_SUCCESS)
        fail_msg("bad subscription identifier %u", sub_id);
    rc = th_m5_subscribe(c, filter, options, p); /* fails: p leaks, once */
    mosquitto_property_free_all(&p);
    return rc;
}

/* Unsubscribes and waits for the UNSUBACK; see mosq5.h. */
void th_m5_unsubscribe(th_m5_t *c, const char *filter)
{
    int64_t deadline = th_now_ms() + TH_WAIT_MS;
    int want = c->n_unsubacks + 1;
    int rc = mosquitto_unsubscribe_v5(c->m, NULL, filter, NULL);
    if (rc != MOSQ_ERR_SUCCESS)
        fail_msg("mosquitto_unsubscribe_v5 %s: %s", filter,
                 mosquitto_strerror(rc));
    while (c->n_unsubacks < want && !c->disconnected && th_now_ms() < deadline)
        mosquitto_loop(c->m, 10, 1);
    if (c->n_unsubacks < want)
        fail_msg("no UNSUBACK for %s within %d ms", filter, TH_WAIT_MS);
}

/* ---- publish -------------------------------------------------------------- */

/* Queues a PUBLISH, returning libmosquitto's result; see mosq5.h. */
int th_m5_try_publish(th_m5_t *c, int *mid, const char *topic,
                      const void *payload, int len, int qos, bool retain,
                      const mosquitto_property *props)
{
    return mosquitto_publish_v5(c->m, mid, topic, len, payload, qos, retain,
                                props);
}

/* Queues a PUBLISH; see mosq5.h. */
int th_m5_publish(th_m5_t *c, const char *topic, const void *payload,
                  int len, int qos, bool retain,
                  const mosquitto_property *props)
{
    int mid = 0;
    int rc = th_m5_try_publish(c, &mid, topic, payload, len, qos, retain,
                               props);
    if (rc != MOSQ_ERR_SUCCESS)
        fail_msg("mosquitto_publish_v5 %s: %s", topic, mosquitto_strerror(rc));
    return mid;
}

/* ---- waiting -------------------------------------------------------------- */

/* Runs the loop of c for about ms milliseconds. */
void th_m5_loop_for(th_m5_t *c, int ms)
{
    th_m5_loop2_for(c, NULL, ms);
}

/* Runs the loops of a and b for about ms milliseconds. */
void th_m5_loop2_for(th_m5_t *a, th_m5_t *b, int ms)
{
    int64_t deadline = th_now_ms() + ms;
    while (th_now_ms() < deadline) {
        mosquitto_loop(a->m, b != NULL ? 2 : 5, 1);
        if (b != NULL)
            mosquitto_loop(b->m, 2, 1);
    }
}

static int loop_until(th_m5_t *a, th_m5_t *b, const int *counter, int n, int timeout_ms)
{
    return th_mosq_loop_until(a->m, b != NULL ? b->m : NULL, counter, n, timeout_ms);
}

/* Waits for `a` to hold n messages; see mosq5.h. */
void th_m5_wait_msgs(th_m5_t *a, th_m5_t *b, int n, int timeout_ms)
{
    int got = loop_until(a, b, &a->n_msgs, n, timeout_ms);
    if (got < n)
        fail_msg("v5 client '%s': expected %d messages within %d ms, got %d",
                 a->id, n, timeout_ms, got);
}

/* Waits for `a` to complete n publishes; see mosq5.h. */
void th_m5_wait_acks(th_m5_t *a, th_m5_t *b, int n, int timeout_ms)
{
    int got = loop_until(a, b, &a->n_acks, n, timeout_ms);
    if (got < n)
        fail_msg("v5 client '%s': expected %d publishes completed within "
                 "%d ms, got %d", a->id, n, timeout_ms, got);
}

/* Waits for the client to be disconnected; see mosq5.h. */
int th_m5_wait_disconnect(th_m5_t *c, int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    while (!c->disconnected && th_now_ms() < deadline) {
        if (mosquitto_loop(c->m, 10, 1) == MOSQ_ERR_NO_CONN && !c->disconnected)
            break; /* closed without the callback: nothing more will come */
    }
    return c->disconnect_rc;
}

/* Fails the test if `a` receives a message within ms; see mosq5.h. */
void th_m5_expect_no_msg(th_m5_t *a, th_m5_t *b, int ms)
{
    int before = a->n_msgs;
    th_m5_loop2_for(a, b, ms);
    if (a->n_msgs != before)
        fail_msg("v5 client '%s': unexpected message on %s", a->id,
                 a->msgs[before].topic);
}

/* ---- properties ----------------------------------------------------------- */

/* Reads a byte property; see mosq5.h. */
bool th_m5_prop_byte(const mosquitto_property *p, int id, uint8_t *v)
{
    return p != NULL && mosquitto_property_read_byte(p, id, v, false) != NULL;
}

/* Reads a two byte integer property; see mosq5.h. */
bool th_m5_prop_int16(const mosquitto_property *p, int id, uint16_t *v)
{
    return p != NULL && mosquitto_property_read_int16(p, id, v, false) != NULL;
}

/* Reads a four byte integer property; see mosq5.h. */
bool th_m5_prop_int32(const mosquitto_property *p, int id, uint32_t *v)
{
    return p != NULL && mosquitto_property_read_int32(p, id, v, false) != NULL;
}

/* Reads a variable byte integer property; see mosq5.h. */
bool th_m5_prop_varint(const mosquitto_property *p, int id, uint32_t *v)
{
    return p != NULL && mosquitto_property_read_varint(p, id, v, false) != NULL;
}

/* Copies a string property; see mosq5.h. */
bool th_m5_prop_string(const mosquitto_property *p, int id, char *out,
                       size_t cap)
{
    char *s = NULL;
    size_t n;
    if (p == NULL || mosquitto_property_read_string(p, id, &s, false) == NULL)
        return false;
    n = strlen(s);
    if (n >= cap) {
        free(s);
        fail_msg("string property %d of %zu bytes does not fit in %zu", id, n,
                 cap);
    }
    memcpy(out, s, n + 1);
    free(s);
    return true;
}

/* Copies a binary property; see mosq5.h. */
bool th_m5_prop_binary(const mosquitto_property *p, int id, void *out,
                       size_t cap, size_t *len)
{
    void *b = NULL;
    uint16_t n = 0;
    if (p == NULL ||
        mosquitto_property_read_binary(p, id, &b, &n, false) == NULL)
        return false;
    if (n > cap) {
        free(b);
        fail_msg("binary property %d of %u bytes does not fit in %zu", id,
                 (unsigned)n, cap);
    }
    if (n > 0)
        memcpy(out, b, n);
    free(b);
    *len = n;
    return true;
}

/* Looks a User Property up by name; see mosq5.h. */
bool th_m5_prop_user(const mosquitto_property *p, const char *name,
                     char *out, size_t cap)
{
    bool skip = false;
    bool found = false;
    while (p != NULL && !found) {
        char *k = NULL, *v = NULL;
        p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY,
                                                &k, &v, skip);
        skip = true;
        if (p != NULL && strcmp(k, name) == 0) {
            snprintf(out, cap, "%s", v);
            found = true;
        }
        free(k);
        free(v);
    }
    return found;
}

/* Counts the properties id in p; see mosq5.h. */
int th_m5_prop_count(const mosquitto_property *p, int id)
{
    int n = 0;
    for (; p != NULL; p = mosquitto_property_next(p))
        n += mosquitto_property_identifier(p) == id;
    return n;
}

/* Lists the Subscription Identifiers; see mosq5.h. */
int th_m5_sub_ids(const mosquitto_property *p, uint32_t *out, int cap)
{
    int n = 0;
    bool skip = false;
    uint32_t v;
    while (p != NULL) {
        p = mosquitto_property_read_varint(
            p, MQTT_PROP_SUBSCRIPTION_IDENTIFIER, &v, skip);
        skip = true;
        if (p == NULL)
            break;
        if (n < cap)
            out[n] = v;
        n++;
    }
    return n;
}

/* ---- close ---------------------------------------------------------------- */

/* Frees everything c recorded and zeroes it (the client is gone). */
static void free_all(th_m5_t *c)
{
    for (int i = 0; i < c->n_msgs; i++) {
        free(c->msgs[i].topic);
        free(c->msgs[i].payload);
        mosquitto_property_free_all(&c->msgs[i].props);
    }
    free(c->msgs);
    free(c->acks);
    mosquitto_property_free_all(&c->connack_props);
    mosquitto_property_free_all(&c->suback_props);
    mosquitto_property_free_all(&c->unsuback_props);
    mosquitto_property_free_all(&c->ack_props);
    mosquitto_property_free_all(&c->disconnect_props);
    memset(c, 0, sizeof *c);
}

/* Disconnects with a reason code and properties, then frees; see mosq5.h. */
void th_m5_close_with(th_m5_t *c, int reason, const mosquitto_property *props)
{
    int64_t deadline = th_now_ms() + CLOSE_WAIT_MS;
    if (c->m != NULL && !c->disconnected &&
        mosquitto_disconnect_v5(c->m, reason, props) == MOSQ_ERR_SUCCESS) {
        while (!c->disconnected && th_now_ms() < deadline)
            if (mosquitto_loop(c->m, 10, 1) == MOSQ_ERR_NO_CONN)
                break;
    }
    if (c->m != NULL)
        mosquitto_destroy(c->m);
    free_all(c);
}

/* Disconnects normally and frees; see mosq5.h. */
void th_m5_close(th_m5_t *c)
{
    th_m5_close_with(c, 0, NULL);
}

/* Drops the connection without DISCONNECT and frees; see mosq5.h. */
void th_m5_drop(th_m5_t *c)
{
    if (c->m != NULL)
        mosquitto_destroy(c->m); /* closes the socket, sends nothing */
    free_all(c);
}

/*
 * mosq5.h - MQTT 5.0 clients for integration tests: libmosquitto's v5 API
 * with everything the broker said recorded, every wait bounded in time.
 *
 * A th_m5_t is one libmosquitto client speaking MQTT 5.0. Its callbacks
 * record the CONNACK reason code and properties, SUBACK reason codes, the
 * reason code of each PUBACK/PUBREC/PUBCOMP (on_publish_v5), DISCONNECT
 * reason codes, and every message received with a copy of its properties.
 * The test thread drives mosquitto_loop itself (no background thread), so
 * nothing changes in a th_m5_t except inside a th_m5_* call. Prefix: th_m5_.
 *
 * libmosquitto 2.0.11 (Debian 12) limits what a test can see:
 * - the properties of a DISCONNECT from the server are freed before the
 *   callback runs: disconnect_props is always NULL (reason code is kept);
 * - on_unsubscribe_v5 carries no reason codes: UNSUBACK 0x11 needs a raw
 *   client (harness.h);
 * - a PUBREC with a reason code below 0x80 (e.g. 0x10) continues the QoS 2
 *   flow and the callback reports the PUBCOMP's reason, not the PUBREC's;
 *   a PUBREC >= 0x80 is reported as is;
 * - the library refuses to send what the server's CONNACK forbids (a
 *   packet over its Maximum Packet Size, more than its Receive Maximum in
 *   flight) and refuses invalid topic filters and keep-alives 1..4 before
 *   sending: tests of the broker's reaction to those use raw bytes, or
 *   send before the CONNACK is read (th_m5_start).
 */
#ifndef UVMQ_TH_MOSQ5_H
#define UVMQ_TH_MOSQ5_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

struct th_tls_s; /* harness.h: a client's TLS files */

/* One message a v5 client received; everything owned by the th_m5_t. */
typedef struct th_m5_msg_s {
    char *topic;
    unsigned char *payload; /* len bytes and a NUL after them */
    int len;
    int qos;
    bool retain;
    int mid;                   /* packet id as received (0 at QoS 0) */
    mosquitto_property *props; /* copy of the PUBLISH properties, or NULL */
} th_m5_msg_t;

/* One completed publish: QoS 0 written, QoS 1 PUBACK, QoS 2 PUBCOMP (or a
 * PUBREC >= 0x80 that ended the flow). */
typedef struct th_m5_ack_s {
    int mid;
    int reason; /* reason code of the acknowledgement (0 at QoS 0) */
} th_m5_ack_t;

/* A libmosquitto v5 client and what it saw. Must not move in memory while
 * open: it is libmosquitto's userdata. */
typedef struct th_m5_s {
    struct mosquitto *m;
    char id[64];                        /* client id asked for ("" = none) */
    int connack_rc;                     /* -1 until a CONNACK arrives */
    bool session_present;               /* CONNACK flag */
    mosquitto_property *connack_props;  /* copy, or NULL */
    int n_subacks;                      /* SUBACKs seen */
    int suback_rc[16];                  /* reason codes of the last SUBACK */
    int n_suback_rc;
    mosquitto_property *suback_props;   /* of the last SUBACK, or NULL */
    int n_unsubacks;                    /* UNSUBACKs seen */
    mosquitto_property *unsuback_props; /* of the last UNSUBACK, or NULL */
    th_m5_ack_t *acks;                  /* completed publishes, in order */
    int n_acks, cap_acks;
    mosquitto_property *ack_props;      /* of the last acknowledgement */
    bool disconnected;                  /* on_disconnect_v5 fired */
    int disconnect_rc;                  /* -1 until then; the first
                                         * report: the server's
                                         * DISCONNECT reason code, 0 after
                                         * our own DISCONNECT, or a
                                         * MOSQ_ERR_* (e.g. 7 connection
                                         * lost) when the socket closed
                                         * without a DISCONNECT */
    mosquitto_property *disconnect_props; /* always NULL with 2.0.11 */
    th_m5_msg_t *msgs;                  /* received, in order */
    int n_msgs, cap_msgs;
} th_m5_t;

/* What th_m5_open puts into the CONNECT. Zero is a usable default: empty
 * client id, clean start 0, keep-alive 60 s, no properties, no will, no
 * user name, plain TCP. */
typedef struct th_m5_opts_s {
    const char *id;                     /* NULL or "": server assigns one
                                         * (clean start is then always 1) */
    bool clean;                         /* clean start */
    int keepalive;                      /* seconds; 0 means 60 (2.0.11
                                         * refuses 1..4) */
    const mosquitto_property *props;    /* CONNECT properties (borrowed) */
    const char *will_topic;             /* NULL: no will */
    const void *will_payload;
    int will_len;
    int will_qos;
    bool will_retain;
    const mosquitto_property *will_props; /* will properties (borrowed) */
    const char *username;               /* NULL: none */
    const char *password;               /* NULL: none (with a user name) */
    const struct th_tls_s *tls;         /* NULL: plain TCP, else TLS with
                                         * these files (harness.h) */
} th_m5_opts_t;

/* --- connect ------------------------------------------------------------ */

/* Creates a v5 client, connects to 127.0.0.1:port and waits at most
 * TH_WAIT_MS for the CONNACK. Returns its reason code (0 success), or -1
 * when none came (the connection was refused or closed). Never fails the
 * test on the CONNACK: c must be th_m5_close'd (or dropped) either way. */
int th_m5_try_open(th_m5_t *c, uint16_t port, const th_m5_opts_t *o);

/* th_m5_try_open that fails the test unless the CONNACK is a success. */
void th_m5_open(th_m5_t *c, uint16_t port, const th_m5_opts_t *o);

/* Creates the client and sends its CONNECT without waiting for the
 * CONNACK: what the test sends next goes out before libmosquitto knows
 * the server's limits. Fails the test if the TCP connect fails. */
void th_m5_start(th_m5_t *c, uint16_t port, const th_m5_opts_t *o);

/* Runs the loop until the CONNACK (or a close) within timeout_ms; returns
 * connack_rc (-1 when none came). */
int th_m5_wait_connack(th_m5_t *c, int timeout_ms);

/* --- subscribe ---------------------------------------------------------- */

/* Subscribes to filter with options = QoS | MQTT_SUB_OPT_NO_LOCAL |
 * MQTT_SUB_OPT_RETAIN_AS_PUBLISHED | MQTT_SUB_OPT_SEND_RETAIN_* and the
 * SUBSCRIBE properties props (borrowed; may be NULL), then waits at most
 * TH_WAIT_MS for the SUBACK. Returns its first reason code (granted QoS or
 * a failure >= 0x80); fails the test if libmosquitto refuses to send or no
 * SUBACK arrives. */
int th_m5_subscribe(th_m5_t *c, const char *filter, int options,
                    const mosquitto_property *props);

/* th_m5_subscribe with a Subscription Identifier (1..268435455) and no
 * other property. */
int th_m5_subscribe_id(th_m5_t *c, const char *filter, int options,
                       uint32_t sub_id);

/* Unsubscribes and waits at most TH_WAIT_MS for the UNSUBACK (whose
 * reason codes 2.0.11 does not report); fails the test otherwise. */
void th_m5_unsubscribe(th_m5_t *c, const char *filter);

/* --- publish ------------------------------------------------------------ */

/* Queues a PUBLISH with properties props (borrowed; may be NULL); the
 * library sends it as the loop runs. Returns the message id; fails the
 * test if libmosquitto refuses it. */
int th_m5_publish(th_m5_t *c, const char *topic, const void *payload,
                  int len, int qos, bool retain,
                  const mosquitto_property *props);

/* Like th_m5_publish but returns libmosquitto's result (MOSQ_ERR_*, e.g.
 * MOSQ_ERR_OVERSIZE_PACKET) instead of failing; *mid if not NULL. */
int th_m5_try_publish(th_m5_t *c, int *mid, const char *topic,
                      const void *payload, int len, int qos, bool retain,
                      const mosquitto_property *props);

/* --- waiting ------------------------------------------------------------ */

/* Runs c's loop for about ms milliseconds. */
void th_m5_loop_for(th_m5_t *c, int ms);

/* Runs the loops of a and b (b may be NULL) for about ms milliseconds. */
void th_m5_loop2_for(th_m5_t *a, th_m5_t *b, int ms);

/* Runs the loops of a and b (b may be NULL) until `a` holds n messages or
 * timeout_ms passed; fails the test if fewer arrived. */
void th_m5_wait_msgs(th_m5_t *a, th_m5_t *b, int n, int timeout_ms);

/* Runs the loops of a and b until `a` completed n publishes (n_acks);
 * fails the test otherwise. */
void th_m5_wait_acks(th_m5_t *a, th_m5_t *b, int n, int timeout_ms);

/* Runs c's loop until it is disconnected or timeout_ms passed; returns
 * disconnect_rc (-1 if still connected). */
int th_m5_wait_disconnect(th_m5_t *c, int timeout_ms);

/* Fails the test if `a` receives any message while the loops of a and b
 * run for ms milliseconds (compares n_msgs before and after). */
void th_m5_expect_no_msg(th_m5_t *a, th_m5_t *b, int ms);

/* --- properties (of connack_props, msgs[i].props, ...) -------------------- */

/* Each reads the first property `id` of list p (may be NULL) into *v and
 * returns true, or returns false when it is absent. */
bool th_m5_prop_byte(const mosquitto_property *p, int id, uint8_t *v);
bool th_m5_prop_int16(const mosquitto_property *p, int id, uint16_t *v);
bool th_m5_prop_int32(const mosquitto_property *p, int id, uint32_t *v);
bool th_m5_prop_varint(const mosquitto_property *p, int id, uint32_t *v);

/* Copies string property id into out[0..cap) NUL-terminated; returns
 * false when absent. Fails the test if it does not fit. */
bool th_m5_prop_string(const mosquitto_property *p, int id, char *out,
                       size_t cap);

/* Copies binary property id into out[0..cap) and sets *len; returns false
 * when absent. Fails the test if it does not fit. */
bool th_m5_prop_binary(const mosquitto_property *p, int id, void *out,
                       size_t cap, size_t *len);

/* Copies the value of the first User Property named name into out[0..cap);
 * returns false when there is none. */
bool th_m5_prop_user(const mosquitto_property *p, const char *name,
                     char *out, size_t cap);

/* Number of properties id in p (User Property, Subscription Identifier
 * may repeat). */
int th_m5_prop_count(const mosquitto_property *p, int id);

/* Writes the Subscription Identifiers in p, in order, into out[0..cap);
 * returns how many there are (may exceed cap). */
int th_m5_sub_ids(const mosquitto_property *p, uint32_t *out, int cap);

/* --- close -------------------------------------------------------------- */

/* Sends DISCONNECT with reason 0 (bounded wait), destroys the client and
 * frees all it recorded. Safe on a client already disconnected, and on a
 * zeroed th_m5_t. */
void th_m5_close(th_m5_t *c);

/* Sends DISCONNECT with this reason code (e.g. 0x04 with will) and
 * properties (borrowed; e.g. a new Session Expiry Interval), then closes
 * like th_m5_close. */
void th_m5_close_with(th_m5_t *c, int reason, const mosquitto_property *props);

/* Closes the socket without a DISCONNECT (as a crashed client would) and
 * frees the client. */
void th_m5_drop(th_m5_t *c);

#endif

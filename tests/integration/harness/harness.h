/*
 * harness.h - integration-test harness: a real uvmq process, raw sockets
 * and libmosquitto clients, every wait bounded in time.
 *
 * A test file lists its tests with TH_TEST(fn) (a fresh broker per test) or
 * drives a broker itself with th_broker_start/th_broker_stop. Helpers that
 * check something fail the running cmocka test with a message naming what
 * was expected; the broker's log is printed when a test fails. Prefix: th_.
 */
#ifndef UVMQ_TH_HARNESS_H
#define UVMQ_TH_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct mosquitto;

/* Default time a helper waits for something the broker should do at once. */
#define TH_WAIT_MS 5000

/* A broker process started by th_broker_start. */
typedef struct th_broker_s {
    pid_t pid;          /* 0 once it has been reaped */
    uint16_t port;      /* MQTT port on 127.0.0.1 */
    uint16_t http_port; /* HTTP/2 port (th_http_enable), 0 = off */
    uint16_t port2;     /* more free ports, written where the config */
    uint16_t port3;     /* says @PORT2@ and @PORT3@ (extra listeners) */
    char dir[64];       /* temp dir: data dir, config file and log */
    char log_path[128]; /* broker stdout + stderr */
} th_broker_t;

/* Per-test context made by TH_TEST's setup: the broker of this test. */
typedef struct th_ctx_s {
    th_broker_t *broker; /* the test's own, or the shared one */
    uint16_t port;       /* == broker->port */
} th_ctx_t;

typedef void (*th_test_fn)(th_ctx_t *t);

/* One message a libmosquitto client received (topic and payload owned). */
typedef struct th_msg_s {
    char *topic;
    unsigned char *payload;
    int len;
    int qos;
    bool retain;
} th_msg_t;

/* A libmosquitto client with its received messages and event counts. */
typedef struct th_mosq_s {
    struct mosquitto *m;
    int connack_rc;    /* -1 until CONNACK arrives */
    int n_subacks;     /* SUBACKs seen */
    int n_published;   /* on_publish callbacks (QoS 0 sent, QoS 1/2 acked) */
    bool disconnected; /* on_disconnect fired */
    th_msg_t *msgs;    /* received, in order */
    int n_msgs, cap_msgs;
} th_mosq_t;

/* cmocka test entry running fn with its own freshly started broker; the
 * teardown stops the broker and fails the test unless it exits 0. */
#define TH_TEST(fn)                                                          \
    {                                                                        \
        .name = #fn, .test_func = th_run, .setup_func = th_setup,            \
        .teardown_func = th_teardown, .initial_state = (void *)(fn)          \
    }

/* A test that needs its own broker config: the body and the JSON. */
typedef struct th_cfg_test_s {
    th_test_fn fn;
    const char *json;
} th_cfg_test_t;

/* Like TH_TEST, with this test's broker started from config `json`. */
#define TH_TEST_CFG(fn, json)                                                \
    {                                                                        \
        .name = #fn, .test_func = th_run, .setup_func = th_setup_cfg,        \
        .teardown_func = th_teardown,                                        \
        .initial_state = &(th_cfg_test_t){(fn), (json)}                      \
    }

/* Makes the TH_TEST tests that follow use b (started and stopped by a
 * group setup/teardown) instead of a broker each; NULL undoes it. */
void th_share_broker(th_broker_t *b);

/* TH_TEST's fixtures (cmocka signatures); not called directly. */
int th_setup(void **state);
int th_setup_cfg(void **state);
void th_run(void **state);
int th_teardown(void **state);

/* --- broker process ---------------------------------------------------- */

/* Starts UVMQ_BIN (default ./build/uvmq) on a free 127.0.0.1 port with a
 * fresh temp data dir; extra_json, if not NULL, is written to a config file
 * passed with -c, with @PORT2@ and @PORT3@ replaced by two more free ports
 * (b->port2, b->port3). Waits at most 10 s for the port to accept. Fails
 * the test if the broker does not come up. */
void th_broker_start(th_broker_t *b, const char *extra_json);

/* With on, brokers started from now on also listen for HTTP/2 (h2c) on a
 * free port (b->http_port; restarts keep it when they can); off (the
 * default) passes --http-port 0. */
void th_http_enable(bool on);

/* Sends SIGTERM and waits at most 15 s (then SIGKILL). Returns the exit
 * code (0 = clean), 128 + signal if it died of a signal, or -1 if it had to
 * be killed. Prints the log on any non-zero result and removes the temp
 * dir. Safe to call twice. */
int th_broker_stop(th_broker_t *b);

/* Stops the broker like th_broker_stop, asserts it exited 0, and returns
 * its whole log as a malloc'd string (the caller frees it). */
char *th_broker_stop_log(th_broker_t *b);

/* Number of times needle occurs in text. */
int th_count(const char *text, const char *needle);

/* SIGKILLs the broker (only the pid we started) and reaps it; the temp dir
 * stays until th_broker_stop. */
void th_broker_kill(th_broker_t *b);

/* Sends sig (e.g. SIGHUP) to the broker we started; fails the test when it
 * is not running. */
void th_broker_signal(th_broker_t *b, int sig);

/* Prints the last lines of the broker log to stderr as TAP comments. */
void th_broker_dump_log(const th_broker_t *b);

/* --- broker restarts on the same data dir (durable storage) ------------ */

/* Stops the broker like th_broker_stop (SIGTERM, bounded wait) but keeps
 * its temp dir (data dir, config file, log) for th_broker_restart.
 * Returns the exit status as th_broker_stop does. */
int th_broker_stop_keep(th_broker_t *b);

/* Starts the broker again on b's temp dir after th_broker_kill or
 * th_broker_stop_keep: same data dir, same log (appended to), and the same
 * port when it can be bound again, else a fresh one (read b->port after).
 * extra_json non-NULL replaces the config file; NULL keeps the previous
 * one, if any. Returns the log offset where this run's output starts (for
 * th_broker_log). Fails the test if the broker does not come up. */
size_t th_broker_restart(th_broker_t *b, const char *extra_json);

/* Runs the broker on b's temp dir (b must not be running) expecting it to
 * exit by itself, e.g. refusing its data dir or config; extra_json as for
 * th_broker_restart. Returns the exit status (128 + signal if a signal
 * ended it) and sets *log_from, if not NULL, to the log offset where this
 * run's output starts. Fails the test if the broker still runs after
 * timeout_ms (it is SIGKILLed then). */
int th_broker_run_expect_exit(th_broker_t *b, const char *extra_json,
                              int timeout_ms, size_t *log_from);

/* Size of the broker log in bytes: an offset for th_broker_log. */
size_t th_broker_log_size(const th_broker_t *b);

/* The broker log from byte offset `from` to its end, as a malloc'd string
 * the caller frees ("" when there is nothing). */
char *th_broker_log(const th_broker_t *b, size_t from);

/* Waits at most timeout_ms until the log after offset `from` contains
 * needle; returns whether it does. */
bool th_broker_wait_log(const th_broker_t *b, size_t from,
                        const char *needle, int timeout_ms);

/* Waits (TH_WAIT_MS) until the log after offset `from` says the broker
 * closed client id's connection ("closing client <id> (..."), and fails
 * the test otherwise: a client's DISCONNECT and another client's PUBLISH
 * reach different worker loops, so only the broker can tell which it
 * handled first. Skips the test under TH_BROKER_QUIET (a debug line). */
void th_broker_wait_closed(const th_broker_t *b, size_t from, const char *id);

/* Waits (TH_WAIT_MS) until the log after offset `from` contains needle,
 * then fails the test unless it holds needle exactly once: a failure
 * that must be logged once, not per retry or per step. */
void th_broker_logged_once(const th_broker_t *b, size_t from, const char *needle);

/* Writes "<temp dir>/data/<name>" (name "" gives the data dir itself)
 * into out[0..cap); fails the test if it does not fit. */
void th_broker_data_path(const th_broker_t *b, const char *name, char *out,
                         size_t cap);

/* --- raw sockets ------------------------------------------------------- */

/* Tracks an fd the test opened itself, so TH_TEST's teardown closes it if
 * the test does not (th_close closes and forgets it). */
void th_track_fd(int fd);

/* Connects to 127.0.0.1:port; returns the fd (tracked: TH_TEST's teardown
 * closes any left open). Fails the test on error. */
int th_connect(uint16_t port);

/* th_connect with the socket's receive buffer set to rcvbuf bytes before
 * connecting (0: the kernel's default), so that the broker's sends to a
 * test that does not read block soon. */
int th_connect_rcvbuf(uint16_t port, int rcvbuf);

/* Closes an fd from th_connect. */
void th_close(int fd);

/* Writes all len bytes; returns 0 or -errno (e.g. -EPIPE once the broker
 * closed the connection). Never fails the test. */
int th_try_send(int fd, const void *buf, size_t len);

/* Writes all len bytes; fails the test on error. */
void th_send(int fd, const void *buf, size_t len);

/* Writes one byte per write(2), 1 ms apart; fails the test on error. */
void th_send_slow(int fd, const void *buf, size_t len);

/* Reads exactly len bytes within timeout_ms and fails the test (with a hex
 * dump of both) unless they equal want. */
void th_expect(int fd, const void *want, size_t len, int timeout_ms);

/* Reads one whole MQTT packet (fixed header included) into buf. Returns its
 * length, 0 if the peer closed first, or -ETIMEDOUT / -EMSGSIZE / -errno. */
int th_try_read_packet(int fd, unsigned char *buf, size_t cap, int timeout_ms);

/* Like th_try_read_packet but fails the test unless a packet arrives. */
int th_read_packet(int fd, unsigned char *buf, size_t cap, int timeout_ms);

/* Fails the test unless the broker closes fd (read returns 0 or
 * ECONNRESET) within timeout_ms with no bytes sent first. */
void th_expect_closed(int fd, int timeout_ms);

/* Fails the test if any byte arrives or the connection closes within ms. */
void th_expect_silence(int fd, int ms);

/* Reads one packet and fails the test unless it is a v5 DISCONNECT with
 * this reason code (remaining length 0 means reason 0), then expects the
 * connection to close. */
void th_expect_disconnect_v5(int fd, uint8_t reason, int timeout_ms);

/* Reads a packet of type `type` (high nibble of byte 0, e.g. 0x40 PUBACK),
 * fails the test otherwise; returns its length. */
int th_read_type(int fd, uint8_t type, unsigned char *buf, size_t cap,
                 int timeout_ms);

/* Offset of the first byte after a packet's fixed header (1 + varint). */
size_t th_header_len(const unsigned char *pkt);

/* Packet identifier of a QoS>0 PUBLISH packet. */
uint16_t th_publish_id(const unsigned char *pkt);

/* Finds property `id` in the v5 property list starting at pkt[off] (its
 * length varint) of a packet n bytes long. Returns the offset of the
 * property's value, 0 if absent, and fails the test if the list is
 * malformed. */
size_t th_v5_prop(const unsigned char *pkt, size_t n, size_t off, uint8_t id);

/* Opens a raw connection and completes a CONNECT handshake, checking the
 * CONNACK is a success. version: 4 (v3.1.1) or 5; flags: the CONNECT flags
 * byte (e.g. 0x02 clean session). The CONNECT is assembled byte by byte
 * here, not by the project's encoder. Returns the fd. */
int th_mqtt_open(uint16_t port, int version, const char *client_id,
                 uint8_t flags, uint16_t keepalive);

/* Prints bytes as hex to stderr as a TAP comment, prefixed by what. */
void th_hexdump(const char *what, const void *buf, size_t len);

/* Milliseconds on the monotonic clock. */
int64_t th_now_ms(void);

/* Sleeps ms milliseconds. */
void th_sleep_ms(int ms);

/* --- raw MQTT packets built by the test, not by the project's encoder --- */

/* What th_build_connect puts into a CONNECT. */
typedef struct th_connect_s {
    int version;             /* 4 (v3.1.1) or 5 */
    const char *client_id;
    bool clean;              /* clean session (v3.1.1) / clean start (v5) */
    uint16_t keepalive;      /* seconds */
    uint32_t session_expiry; /* v5 Session Expiry Interval; 0 = absent */
    const char *will_topic;  /* NULL = no will */
    const char *will_payload;
    int will_qos;
    bool will_retain;
    uint32_t will_delay;     /* v5 Will Delay Interval; 0 = absent */
    const char *username;    /* NULL = no user name */
    const char *password;    /* NULL = no password */
} th_connect_t;

/* A PUBLISH as th_parse_publish reads it; pointers point into the packet. */
typedef struct th_publish_s {
    int qos;
    bool dup, retain;
    uint16_t id;             /* 0 for QoS 0 */
    const char *topic;       /* not NUL-terminated */
    size_t topic_len;
    const unsigned char *payload;
    size_t len;
} th_publish_t;

/* Builds a CONNECT into out[0..cap); returns its length. Fails the test if
 * it does not fit. */
size_t th_build_connect(unsigned char *out, size_t cap, const th_connect_t *c);

/* Builds a PUBLISH (id ignored at QoS 0; v5: empty property list) into
 * out[0..cap); returns its length; fails the test if it does not fit. */
size_t th_build_publish(unsigned char *out, size_t cap, int version,
                        const char *topic, int qos, bool retain, bool dup,
                        uint16_t id, const void *payload, size_t len);

/* Builds a SUBSCRIBE of one filter (v5: empty properties, options = qos)
 * into out[0..cap); returns its length. */
size_t th_build_subscribe(unsigned char *out, size_t cap, int version,
                          uint16_t id, const char *filter, int qos);

/* Parses a PUBLISH packet of n bytes; returns false if it is not a
 * well-formed PUBLISH. */
bool th_parse_publish(const unsigned char *pkt, size_t n, int version,
                      th_publish_t *p);

/* Connects, sends c's CONNECT and reads the CONNACK within TH_WAIT_MS.
 * Returns the fd (tracked) and sets *session_present if not NULL; fails
 * the test unless the CONNACK is a success. */
int th_mqtt_connect(uint16_t port, const th_connect_t *c,
                    bool *session_present);

/* th_mqtt_connect on fd, a connection the test opened (th_connect_rcvbuf). */
void th_mqtt_connect_on(int fd, const th_connect_t *c, bool *session_present);

/* Sends a SUBSCRIBE of one filter and fails the test unless its SUBACK
 * (same id) grants exactly qos within TH_WAIT_MS. */
void th_mqtt_subscribe(int fd, int version, uint16_t id, const char *filter,
                       int qos);

/* Sends a 4-byte acknowledgement: first is byte 0 (0x40 PUBACK, 0x50
 * PUBREC, 0x62 PUBREL, 0x70 PUBCOMP); valid in v3.1.1 and v5 (reason 0). */
void th_send_ack(int fd, uint8_t first, uint16_t id);

/* Reads an acknowledgement of type first (exact byte 0) and fails the test
 * unless its packet id is id; returns its reason code (0 when a v5 packet
 * omits it, and always 0 for v3.1.1). */
uint8_t th_expect_ack(int fd, uint8_t first, uint16_t id, int timeout_ms);

/* Sends DISCONNECT (0xe0 0x00), waits (bounded) for the close, th_close. */
void th_mqtt_disconnect(int fd);

/* --- libmosquitto clients ---------------------------------------------- */

/* Creates a client (protocol 4 or 5), connects to 127.0.0.1:port and waits
 * at most TH_WAIT_MS for a successful CONNACK; fails the test otherwise. */
void th_mosq_open(th_mosq_t *c, uint16_t port, const char *id, int version,
                  bool clean);

/* TLS files of a libmosquitto client: CA to verify the broker with, and
 * its own certificate and key (NULL: none). */
typedef struct th_tls_s {
    const char *ca, *cert, *key;
} th_tls_t;

/* Like th_mosq_open, over TLS when tls is not NULL and with a user name
 * when username is not NULL, but never fails the test: returns the
 * CONNACK code, or -1 when none came within TH_WAIT_MS (connection or
 * handshake refused). c must be th_mosq_close'd either way. */
int th_mosq_try_open(th_mosq_t *c, uint16_t port, const char *id, int version,
                     bool clean, const th_tls_t *tls, const char *username);

/* th_mosq_try_open that fails the test unless the CONNACK is a success. */
void th_mosq_open_tls(th_mosq_t *c, uint16_t port, const char *id, int version,
                      bool clean, const th_tls_t *tls);

/* Subscribes and waits at most TH_WAIT_MS for the SUBACK. */
void th_mosq_subscribe(th_mosq_t *c, const char *filter, int qos);

/* Queues a PUBLISH (the library sends it as the loop runs). */
void th_mosq_publish(th_mosq_t *c, const char *topic, const void *payload,
                     int len, int qos, bool retain);

/* Array v of *cap elements of size bytes, n of them used: returned as is
 * while n < *cap, else grown (doubled, 64 at first; *cap updated). Fails
 * the test when memory runs out. */
void *th_grow(void *v, int *cap, int n, size_t size);

/* Runs the client's network loop for about ms milliseconds. */
void th_mosq_loop_for(th_mosq_t *c, int ms);
/* Runs the network loops of a and b (b may be NULL) until *counter >= n
 * or timeout_ms passed; returns *counter. For any libmosquitto client
 * (th_mosq_t here, th_m5_t in mosq5.c). */
int th_mosq_loop_until(struct mosquitto *a, struct mosquitto *b, const int *counter, int n,
                       int timeout_ms);

/* Runs the loops of both clients (b may be NULL) until `a` has n messages
 * or timeout_ms passed; fails the test if fewer arrived. */
void th_mosq_wait_msgs(th_mosq_t *a, th_mosq_t *b, int n, int timeout_ms);

/* Runs the loops of both clients until `a` completed n publishes. */
void th_mosq_wait_published(th_mosq_t *a, th_mosq_t *b, int n,
                            int timeout_ms);

/* Disconnects (bounded), destroys the client and frees its messages. */
void th_mosq_close(th_mosq_t *c);

/* --- TLS (tests/integration/harness/tls.c) ------------------------------ */

/* Makes tests/pki.h's set of certificates (ca, rogue-ca, server, client,
 * expired, rogue, nocn) in a fresh temp dir, written into dir[0..cap).
 * Fails the test on error. Remove it with th_rmtree. */
void th_pki_make(char *dir, size_t cap);

/* "dir/name.ext" as a string that stays valid and unchanged for the
 * whole run (interned; at most 64 distinct paths), for config strings and
 * th_tls_t. */
const char *th_pki_path(const char *dir, const char *name, const char *ext);

/* Connects to 127.0.0.1:port over TLS trusting the CA file ca (and nothing
 * else), then writes the subject CN of the certificate the server showed
 * into out[0..cap). Returns 0, or -1 when the handshake fails. */
int th_tls_server_cn(uint16_t port, const char *ca, char *out, size_t cap);

/* A raw TLS connection of a test (OpenSSL, blocking socket: reads wait
 * TH_WAIT_MS, writes at most 10 s). */
typedef struct th_tls_raw_s th_tls_raw_t;

/* Connects to 127.0.0.1:port over TLS trusting the CA file ca, with a
 * receive buffer of rcvbuf bytes (0: the kernel's default). Fails the
 * test when the handshake fails. Close with th_tls_raw_close. */
th_tls_raw_t *th_tls_raw_open(uint16_t port, const char *ca, int rcvbuf);

/* Writes all of buf; fails the test on error. */
void th_tls_raw_send(th_tls_raw_t *r, const void *buf, size_t len);

/* Reads one MQTT packet into buf[0..cap) within TH_WAIT_MS and returns
 * its length; fails the test otherwise. */
int th_tls_raw_read_packet(th_tls_raw_t *r, unsigned char *buf, size_t cap);

/* Closes without close_notify (the broker sees EOF) and frees. */
void th_tls_raw_close(th_tls_raw_t *r);

/* The same raw MQTT client, over a plain socket or TLS, for scenarios
 * that run over both (tests/integration/harness/takeover.c). */
typedef struct th_io_s {
    void (*send)(void *ctx, const void *buf, size_t len);
    int (*read_packet)(void *ctx, unsigned char *buf, size_t cap); /* TH_WAIT_MS */
    void *ctx;
} th_io_t;

/* th_io_t of a plain connection fd (th_send, th_read_packet). */
th_io_t th_io_fd(int fd);

/* th_io_t of a raw TLS connection. */
th_io_t th_io_tls(th_tls_raw_t *r);

/* --- shared scenarios (tests/integration/harness/takeover.c) ----------- */

/* A v5 client on io (a fresh connection whose receive buffer is small)
 * sends DISCONNECT with Session Expiry 0 while the broker is not reading
 * it (paused by backpressure: a message larger than both kernel buffers
 * waits for it), then the same client id reconnects with clean start 0:
 * the test fails unless the CONNACK says session present 0. The broker
 * needs max_out_bytes 65536 and max_packet_size 64 MiB, and its debug log
 * (not TH_BROKER_QUIET: the test is skipped then). */
void th_takeover_after_unread_disconnect(th_ctx_t *t, const th_io_t *io);

/* Removes a directory tree (temp dirs the test made). */
void th_rmtree(const char *dir);

/* --- child processes (tests/integration/harness/proc.c) ------------------ */

/* Starts argv[0] (searched in PATH) with stdout and stderr appended to
 * out_path (NULL: /dev/null); the child dies with the test process.
 * Returns its pid; fails the test if it cannot be started. */
pid_t th_cmd_start(const char *const argv[], const char *out_path);

/* Waits at most timeout_ms for a child from th_cmd_start; returns its exit
 * status (128 + signal), or -1 after SIGKILLing it on timeout. */
int th_cmd_wait(pid_t pid, int timeout_ms);

/* th_cmd_start then th_cmd_wait. */
int th_cmd_run(const char *const argv[], const char *out_path, int timeout_ms);

/* Waits at most timeout_ms until the file at path contains needle. */
bool th_file_wait(const char *path, const char *needle, int timeout_ms);

/* The whole file at path as a malloc'd string ("" when unreadable). */
char *th_file_read(const char *path);

#endif

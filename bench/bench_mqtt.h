/*
 * bench_mqtt.h - the load generator's own MQTT 3.1.1/5.0 codec.
 *
 * Deliberately independent of packets/: a codec bug in the broker must not
 * be able to hide in the tool that measures it. Only what a benchmark
 * client needs is here: encoders for CONNECT (with a user name and password
 * when asked), SUBSCRIBE, PUBLISH, the four
 * QoS acknowledgements, PINGREQ and DISCONNECT, and one parser that frames
 * and decodes every packet type the broker can send (plus CONNECT and
 * SUBSCRIBE, so the encoders can be round-trip tested).
 */
#ifndef UVMQ_BENCH_MQTT_H
#define UVMQ_BENCH_MQTT_H

#include <stddef.h>
#include <stdint.h>

/* MQTT control packet types (first byte >> 4). */
enum {
    BENCH_CONNECT = 1,
    BENCH_CONNACK = 2,
    BENCH_PUBLISH = 3,
    BENCH_PUBACK = 4,
    BENCH_PUBREC = 5,
    BENCH_PUBREL = 6,
    BENCH_PUBCOMP = 7,
    BENCH_SUBSCRIBE = 8,
    BENCH_SUBACK = 9,
    BENCH_UNSUBSCRIBE = 10,
    BENCH_UNSUBACK = 11,
    BENCH_PINGREQ = 12,
    BENCH_PINGRESP = 13,
    BENCH_DISCONNECT = 14,
    BENCH_AUTH = 15,
};

/* bench_mqtt_parse result when the buffer holds no complete packet yet. */
#define BENCH_MQTT_NEED_MORE 0

/* Largest fixed header: one type byte and a 4-byte remaining length. */
#define BENCH_MQTT_MAX_FIXED 5

/* Protocol levels accepted by the encoders. */
#define BENCH_MQTT_V311 4
#define BENCH_MQTT_V5 5

/*
 * One decoded packet. Pointers borrow the parsed buffer and are valid only
 * while it is. Fields a packet type does not carry are zero.
 */
typedef struct bench_pkt_s {
    uint8_t type;            /* BENCH_CONNECT ... BENCH_AUTH */
    uint8_t flags;           /* low nibble of the first byte */
    uint8_t qos;             /* PUBLISH QoS; SUBSCRIBE first option byte */
    uint8_t reason;          /* CONNACK/ack/DISCONNECT reason, first SUBACK code */
    uint8_t session_present; /* CONNACK */
    uint8_t proto;           /* CONNECT protocol level */
    uint8_t connect_flags;   /* CONNECT flags byte */
    uint16_t pid;            /* packet identifier, 0 when absent */
    uint16_t keepalive;      /* CONNECT keep-alive; CONNACK v5 Server Keep Alive */
    uint16_t receive_max;    /* CONNACK v5 Receive Maximum, 0 when absent */
    uint32_t session_expiry; /* CONNECT v5 Session Expiry Interval */
    uint16_t nreasons;       /* SUBACK: number of reason codes */
    const uint8_t *topic;    /* PUBLISH topic, SUBSCRIBE first filter, CONNECT id */
    uint16_t topic_len;
    const uint8_t *payload;  /* PUBLISH payload */
    uint32_t payload_len;
    const uint8_t *user;     /* CONNECT user name, NULL when absent */
    uint16_t user_len;
    const uint8_t *password; /* CONNECT password, NULL when absent */
    uint16_t password_len;
} bench_pkt_t;

/* Parameters of a CONNECT; the strings are borrowed. */
typedef struct bench_connect_s {
    int proto;               /* BENCH_MQTT_V311 or BENCH_MQTT_V5 */
    int clean;               /* clean session (3.1.1) / clean start (5.0) */
    uint16_t keepalive;      /* seconds */
    uint32_t session_expiry; /* v5 only; 0 leaves the property out */
    const char *client_id;
    const char *user;        /* NULL: no user name */
    const char *password;    /* NULL: no password (3.1.1 needs a user with it) */
} bench_connect_t;

/* Encoders write one packet at buf and return its length, or UVMQ_ELIMIT when
 * it does not fit in cap bytes (nothing useful is written then). */
int bench_mqtt_encode_connect(uint8_t *buf, size_t cap, const bench_connect_t *c);
int bench_mqtt_encode_subscribe(uint8_t *buf, size_t cap, int proto, uint16_t pid,
                                const char *filter, int qos);
int bench_mqtt_encode_publish(uint8_t *buf, size_t cap, int proto, int qos,
                              uint16_t pid, const char *topic, size_t topic_len,
                              const uint8_t *payload, size_t payload_len);
/* PUBACK, PUBREC, PUBREL or PUBCOMP with success, always 4 bytes. */
int bench_mqtt_encode_ack(uint8_t *buf, size_t cap, int type, uint16_t pid);
/* PINGREQ or DISCONNECT (normal disconnection), always 2 bytes. */
int bench_mqtt_encode_empty(uint8_t *buf, size_t cap, int type);

/* Room bench_mqtt_encode_connect needs for c: an upper bound. */
size_t bench_mqtt_connect_cap(const bench_connect_t *c);
/* Exact length of the PUBLISH bench_mqtt_encode_publish would write. */
size_t bench_mqtt_publish_len(int proto, int qos, size_t topic_len, size_t payload_len);

/*
 * Frames and decodes the packet at the start of buf[0..len). Returns the
 * packet's total length (> 0) with *out filled, BENCH_MQTT_NEED_MORE when
 * the packet is not complete yet, or a negative UVMQ_EPKT_* code when the
 * bytes are malformed for protocol level proto (4 or 5). Does not copy.
 */
int bench_mqtt_parse(const uint8_t *buf, size_t len, int proto, bench_pkt_t *out);

#endif

/*
 * pkt.h - MQTT 3.1, 3.1.1 and 5.0 packet codec.
 *
 * Pure code: no sockets, no libuv, no allocation except from the caller's
 * arena. Decoded strings and binary fields are borrowed slices pointing into
 * the caller's input buffer; they are valid until that buffer changes. The
 * byte-level format is described at the top of pkt.c.
 *
 * Framing: pkt_frame() looks at the start of a byte stream and says whether
 * a whole packet is there (any fragmentation, any number of packets per
 * read). pkt_decode() then decodes exactly one whole packet.
 */
#ifndef UVMQ_PKT_H
#define UVMQ_PKT_H

#include <stddef.h>
#include <stdint.h>

#include "../common/arena.h"
#include "../common/err.h"

/* Result of pkt_frame when the buffer holds only part of a packet. Not an
 * error: positive so it cannot collide with an error code. */
#define PKT_NEED_MORE 1

/* Protocol levels as sent in CONNECT. */
#define PKT_V31 3
#define PKT_V311 4
#define PKT_V5 5

/* Largest value a variable byte integer can hold (4 bytes). */
#define PKT_VARINT_MAX 268435455u

enum pkt_type {
    PKT_CONNECT = 1,
    PKT_CONNACK = 2,
    PKT_PUBLISH = 3,
    PKT_PUBACK = 4,
    PKT_PUBREC = 5,
    PKT_PUBREL = 6,
    PKT_PUBCOMP = 7,
    PKT_SUBSCRIBE = 8,
    PKT_SUBACK = 9,
    PKT_UNSUBSCRIBE = 10,
    PKT_UNSUBACK = 11,
    PKT_PINGREQ = 12,
    PKT_PINGRESP = 13,
    PKT_DISCONNECT = 14,
    PKT_AUTH = 15,
};

/* MQTT 5.0 reason codes (spec 2.4). v3.1.1 CONNACK return codes 1-5 are
 * separate (PKT_RC311_*); pkt_connack_rc311() maps a v5 code onto them. */
enum pkt_reason {
    PKT_RC_SUCCESS = 0x00, /* also Normal disconnection, Granted QoS 0 */
    PKT_RC_GRANTED_QOS1 = 0x01,
    PKT_RC_GRANTED_QOS2 = 0x02,
    PKT_RC_DISCONNECT_WITH_WILL = 0x04,
    PKT_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
    PKT_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
    PKT_RC_CONTINUE_AUTH = 0x18,
    PKT_RC_REAUTHENTICATE = 0x19,
    PKT_RC_UNSPECIFIED = 0x80,
    PKT_RC_MALFORMED = 0x81,
    PKT_RC_PROTOCOL_ERROR = 0x82,
    PKT_RC_IMPL_SPECIFIC = 0x83,
    PKT_RC_UNSUPPORTED_VERSION = 0x84,
    PKT_RC_CLIENT_ID_INVALID = 0x85,
    PKT_RC_BAD_USER_PASS = 0x86,
    PKT_RC_NOT_AUTHORIZED = 0x87,
    PKT_RC_SERVER_UNAVAILABLE = 0x88,
    PKT_RC_SERVER_BUSY = 0x89,
    PKT_RC_BANNED = 0x8A,
    PKT_RC_SERVER_SHUTTING_DOWN = 0x8B,
    PKT_RC_BAD_AUTH_METHOD = 0x8C,
    PKT_RC_KEEP_ALIVE_TIMEOUT = 0x8D,
    PKT_RC_SESSION_TAKEN_OVER = 0x8E,
    PKT_RC_TOPIC_FILTER_INVALID = 0x8F,
    PKT_RC_TOPIC_NAME_INVALID = 0x90,
    PKT_RC_PACKET_ID_IN_USE = 0x91,
    PKT_RC_PACKET_ID_NOT_FOUND = 0x92,
    PKT_RC_RECEIVE_MAX_EXCEEDED = 0x93,
    PKT_RC_TOPIC_ALIAS_INVALID = 0x94,
    PKT_RC_PACKET_TOO_LARGE = 0x95,
    PKT_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
    PKT_RC_QUOTA_EXCEEDED = 0x97,
    PKT_RC_ADMIN_ACTION = 0x98,
    PKT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    PKT_RC_RETAIN_NOT_SUPPORTED = 0x9A,
    PKT_RC_QOS_NOT_SUPPORTED = 0x9B,
    PKT_RC_USE_ANOTHER_SERVER = 0x9C,
    PKT_RC_SERVER_MOVED = 0x9D,
    PKT_RC_SHARED_SUBS_NOT_SUPPORTED = 0x9E,
    PKT_RC_CONNECTION_RATE_EXCEEDED = 0x9F,
    PKT_RC_MAX_CONNECT_TIME = 0xA0,
    PKT_RC_SUB_IDS_NOT_SUPPORTED = 0xA1,
    PKT_RC_WILDCARD_SUBS_NOT_SUPPORTED = 0xA2,
};

/* v3.1 / v3.1.1 CONNACK return codes. */
enum pkt_rc311 {
    PKT_RC311_ACCEPTED = 0,
    PKT_RC311_BAD_VERSION = 1,
    PKT_RC311_ID_REJECTED = 2,
    PKT_RC311_SERVER_UNAVAILABLE = 3,
    PKT_RC311_BAD_USER_PASS = 4,
    PKT_RC311_NOT_AUTHORIZED = 5,
};

/* v5 property identifiers (spec 2.2.2.2). */
enum pkt_prop_id {
    PROP_PAYLOAD_FORMAT = 0x01,        /* byte */
    PROP_MESSAGE_EXPIRY = 0x02,        /* four byte integer */
    PROP_CONTENT_TYPE = 0x03,          /* UTF-8 string */
    PROP_RESPONSE_TOPIC = 0x08,        /* UTF-8 string */
    PROP_CORRELATION_DATA = 0x09,      /* binary */
    PROP_SUBSCRIPTION_ID = 0x0B,       /* varint; may repeat in PUBLISH */
    PROP_SESSION_EXPIRY = 0x11,        /* four byte integer */
    PROP_ASSIGNED_CLIENT_ID = 0x12,    /* UTF-8 string */
    PROP_SERVER_KEEP_ALIVE = 0x13,     /* two byte integer */
    PROP_AUTH_METHOD = 0x15,           /* UTF-8 string */
    PROP_AUTH_DATA = 0x16,             /* binary */
    PROP_REQUEST_PROBLEM_INFO = 0x17,  /* byte */
    PROP_WILL_DELAY = 0x18,            /* four byte integer */
    PROP_REQUEST_RESPONSE_INFO = 0x19, /* byte */
    PROP_RESPONSE_INFO = 0x1A,         /* UTF-8 string */
    PROP_SERVER_REFERENCE = 0x1C,      /* UTF-8 string */
    PROP_REASON_STRING = 0x1F,         /* UTF-8 string */
    PROP_RECEIVE_MAX = 0x21,           /* two byte integer */
    PROP_TOPIC_ALIAS_MAX = 0x22,       /* two byte integer */
    PROP_TOPIC_ALIAS = 0x23,           /* two byte integer */
    PROP_MAXIMUM_QOS = 0x24,           /* byte */
    PROP_RETAIN_AVAILABLE = 0x25,      /* byte */
    PROP_USER_PROPERTY = 0x26,         /* UTF-8 string pair; may repeat */
    PROP_MAX_PACKET_SIZE = 0x27,       /* four byte integer */
    PROP_WILDCARD_SUB_AVAILABLE = 0x28,/* byte */
    PROP_SUB_ID_AVAILABLE = 0x29,      /* byte */
    PROP_SHARED_SUB_AVAILABLE = 0x2A,  /* byte */
};

/* A borrowed byte slice (UTF-8 string or binary data). p may be NULL when
 * len is 0. Never NUL-terminated. */
typedef struct pkt_bin_s {
    const uint8_t *p;
    uint32_t len;
} pkt_bin_t;

typedef struct pkt_user_prop_s {
    pkt_bin_t key;
    pkt_bin_t val;
} pkt_user_prop_t;

/* Most subscription identifiers one PUBLISH may carry, in and out. */
#define PKT_MAX_SUB_IDS 32

/* The v5 properties of one packet. `present` has bit (1ull << id) set for
 * each single-valued property that is present; user properties and
 * subscription identifiers are counted instead. On encode the same rules
 * apply: only present properties are written. */
typedef struct pkt_props_s {
    uint64_t present;
    uint8_t payload_format;
    uint32_t message_expiry;
    pkt_bin_t content_type;
    pkt_bin_t response_topic;
    pkt_bin_t correlation_data;
    uint32_t sub_ids[PKT_MAX_SUB_IDS]; /* PROP_SUBSCRIPTION_ID, in order */
    uint32_t n_sub_ids;
    uint32_t session_expiry;
    pkt_bin_t assigned_client_id;
    uint16_t server_keep_alive;
    pkt_bin_t auth_method;
    pkt_bin_t auth_data;
    uint8_t request_problem_info;
    uint32_t will_delay;
    uint8_t request_response_info;
    pkt_bin_t response_info;
    pkt_bin_t server_reference;
    pkt_bin_t reason_string;
    uint16_t receive_max;
    uint16_t topic_alias_max;
    uint16_t topic_alias;
    uint8_t maximum_qos;
    uint8_t retain_available;
    pkt_user_prop_t *user; /* arena memory on decode; borrowed on encode */
    uint32_t n_user;
    uint32_t max_packet_size;
    uint8_t wildcard_sub_available;
    uint8_t sub_id_available;
    uint8_t shared_sub_available;
    /* On decode: the whole property block as received (without its length
     * prefix). On encode: bytes of already-encoded properties appended
     * verbatim after the present ones (how a stored message's forwardable
     * properties go out); counted by pkt_props_size. */
    pkt_bin_t raw;
} pkt_props_t;

#define PKT_PROP_HAS(props, id) (((props)->present >> (id)) & 1u)
#define PKT_PROP_SET(props, id) ((props)->present |= (1ull << (id)))

typedef struct pkt_connect_s {
    uint8_t version; /* PKT_V31, PKT_V311 or PKT_V5 */
    uint8_t clean_start;
    uint8_t will_flag;
    uint8_t will_qos;
    uint8_t will_retain;
    uint8_t has_username;
    uint8_t has_password;
    uint16_t keep_alive; /* seconds */
    pkt_props_t props;
    pkt_bin_t client_id;
    pkt_props_t will_props;
    pkt_bin_t will_topic;
    pkt_bin_t will_payload;
    pkt_bin_t username;
    pkt_bin_t password;
} pkt_connect_t;

typedef struct pkt_connack_s {
    uint8_t session_present;
    uint8_t reason; /* v5 reason code, or a PKT_RC311_* code for v3 */
    pkt_props_t props;
} pkt_connack_t;

typedef struct pkt_publish_s {
    uint8_t qos;
    uint8_t retain;
    uint8_t dup;
    pkt_bin_t topic; /* may be empty in v5 when a topic alias is used */
    uint16_t packet_id; /* only for qos > 0 */
    pkt_props_t props;
    pkt_bin_t payload;
} pkt_publish_t;

/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
typedef struct pkt_ack_s {
    uint16_t packet_id;
    uint8_t reason; /* v5 only; 0 for v3 */
    pkt_props_t props;
} pkt_ack_t;

/* Subscription options byte (v5 3.8.3.1); v3 uses only the QoS bits. */
#define PKT_SUBOPT_QOS_MASK 0x03
#define PKT_SUBOPT_NO_LOCAL 0x04
#define PKT_SUBOPT_RAP 0x08 /* retain as published */
#define PKT_SUBOPT_RH_SHIFT 4 /* retain handling, 2 bits */
#define PKT_SUBOPT_RH_MASK 0x30

typedef struct pkt_sub_s {
    pkt_bin_t filter;
    uint8_t options;
} pkt_sub_t;

typedef struct pkt_subscribe_s {
    uint16_t packet_id;
    pkt_props_t props;
    pkt_sub_t *subs; /* arena memory on decode */
    uint32_t n_subs;
} pkt_subscribe_t;

/* SUBACK and UNSUBACK (v3 UNSUBACK has no reason codes: n_reasons = 0). */
typedef struct pkt_suback_s {
    uint16_t packet_id;
    pkt_props_t props;
    uint8_t *reasons; /* arena memory on decode */
    uint32_t n_reasons;
} pkt_suback_t;

typedef struct pkt_unsubscribe_s {
    uint16_t packet_id;
    pkt_props_t props;
    pkt_bin_t *filters; /* arena memory on decode */
    uint32_t n_filters;
} pkt_unsubscribe_t;

/* DISCONNECT and AUTH (v5 reason + properties; v3 DISCONNECT is empty). */
typedef struct pkt_reason_s {
    uint8_t reason;
    pkt_props_t props;
} pkt_reason_t;

typedef struct pkt_s {
    uint8_t type;  /* enum pkt_type */
    uint8_t flags; /* low nibble of the fixed header byte */
    union {
        pkt_connect_t connect;
        pkt_connack_t connack;
        pkt_publish_t publish;
        pkt_ack_t ack;
        pkt_subscribe_t subscribe;
        pkt_suback_t suback; /* also UNSUBACK */
        pkt_unsubscribe_t unsubscribe;
        pkt_reason_t disconnect; /* also AUTH */
    } u;
} pkt_t;

/* ---- framing and decoding ---- */

/* Looks at the start of buf. Returns PKT_NEED_MORE when the fixed header or
 * the body is incomplete, 0 when a whole packet of *frame_len bytes is
 * there, UVMQ_EPKT_REMLEN for a 5-byte remaining length, UVMQ_EPKT_TOO_LARGE
 * as soon as the announced size passes max_size (before the body arrives).
 * *need is set to the whole packet's size whenever the header is complete
 * (so a caller can size its buffer); otherwise 0. */
int pkt_frame(const uint8_t *buf, size_t len, uint32_t max_size,
              size_t *frame_len, size_t *need);

/* Decodes one whole packet (as framed by pkt_frame) for a connection of the
 * given protocol version; for CONNECT, version is ignored and taken from
 * the packet. Slices in *out borrow buf; arrays come from `a`. Returns 0 or
 * a negative UVMQ_EPKT_* / UVMQ_ENOMEM code; *out is then unspecified. */
int pkt_decode(pkt_t *out, uint8_t version, const uint8_t *buf, size_t len,
               arena_t *a);

/* v5 reason code that describes decode error `err` (0x81 malformed, 0x82
 * protocol error, 0x95 too large, ...). */
uint8_t pkt_err_reason(int err);

/* ---- encoding ---- */

/* Bytes pkt_encode would write for p, or 0 when p cannot be encoded (a
 * field over its limit). */
size_t pkt_encoded_size(const pkt_t *p, uint8_t version);

/* Encodes p for a peer speaking `version` into out[0..cap). Returns 0 and
 * sets *written, or UVMQ_ELIMIT when cap is too small, UVMQ_EINVAL when a field
 * does not fit the format. Properties are written only for PKT_V5. */
int pkt_encode(const pkt_t *p, uint8_t version, uint8_t *out, size_t cap,
               size_t *written);

/* Encodes a PUBLISH without its payload: fixed header (whose remaining
 * length counts payload.len), topic, packet id, properties. The caller
 * sends the payload bytes right after. Same returns as pkt_encode. */
int pkt_encode_publish_head(const pkt_publish_t *pub, uint8_t version,
                            uint8_t *out, size_t cap, size_t *written);

/* Size of the head pkt_encode_publish_head would write, 0 if impossible. */
size_t pkt_publish_head_size(const pkt_publish_t *pub, uint8_t version);

/* Size of a v5 property block (without its length prefix): the present
 * single-valued properties, every subscription identifier and user
 * property, then props->raw. No packet type is checked: the caller puts
 * in only what its packet may carry. */
size_t pkt_props_size(const pkt_props_t *props);

/* Encodes the property block without its length prefix into out; returns
 * bytes written. out must have pkt_props_size() bytes. Used to keep a
 * message's forwardable properties as bytes. */
size_t pkt_props_write(const pkt_props_t *props, uint8_t *out);

/* Decodes a property block of packet type `type` WITHOUT its length prefix
 * (what pkt_props_write wrote, e.g. a message's forwardable properties)
 * into *out; strings borrow buf, the user property array comes from `a`.
 * Returns 0 or a negative UVMQ_EPKT_* / UVMQ_ENOMEM. */
int pkt_props_parse(const uint8_t *buf, size_t len, uint8_t type,
                    pkt_props_t *out, arena_t *a);

/* ---- small helpers shared with broker/ ---- */

/* Writes v as a variable byte integer; returns 1-4 bytes used.
 * v must be <= PKT_VARINT_MAX. */
size_t pkt_varint_write(uint32_t v, uint8_t *out);
size_t pkt_varint_size(uint32_t v);

/* 1 when s[0..len) is well-formed UTF-8 with no U+0000 and no surrogates
 * (MQTT-1.5.4-1, MQTT-1.5.4-2). */
int pkt_utf8_valid(const uint8_t *s, size_t len);

/* Maps a v5 CONNACK reason onto the nearest v3.1.1 return code. */
uint8_t pkt_connack_rc311(uint8_t v5_reason);

/* Static name of a packet type ("PUBLISH"), for logs. */
const char *pkt_type_name(uint8_t type);

#endif

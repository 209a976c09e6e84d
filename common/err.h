/*
 * err.h - uvmq's own error codes and err_str().
 *
 * Functions return int: 0 on success, negative on failure. libuv codes
 * (all above -4096) pass through untouched; ours live below -10000 so the
 * two ranges never collide. "Need more bytes" is a result, not an error
 * (PKT_NEED_MORE in packets/pkt.h).
 */
#ifndef UVMQ_ERR_H
#define UVMQ_ERR_H

#define ERR_BASE (-10000)

enum {
    /* generic */
    ERR_NOMEM = ERR_BASE - 1,      /* a peer-sized allocation hit its limit */
    ERR_LIMIT = ERR_BASE - 2,      /* a configured limit was exceeded */
    ERR_INVAL = ERR_BASE - 3,      /* invalid argument */
    ERR_NOTFOUND = ERR_BASE - 4,   /* lookup found nothing */
    ERR_EXISTS = ERR_BASE - 5,     /* already present */
    ERR_CONFIG = ERR_BASE - 6,     /* bad configuration */
    ERR_IO = ERR_BASE - 7,         /* file or storage I/O failed */
    ERR_TLS = ERR_BASE - 8,        /* TLS handshake or record failure */

    /* packets/: decode errors (each maps to a v5 reason code) */
    ERR_PKT_REMLEN = ERR_BASE - 100,     /* remaining length varint > 4 bytes */
    ERR_PKT_TYPE = ERR_BASE - 101,       /* packet type 0 */
    ERR_PKT_FLAGS = ERR_BASE - 102,      /* reserved fixed-header flag bits wrong */
    ERR_PKT_SHORT = ERR_BASE - 103,      /* a field runs past the packet end */
    ERR_PKT_TRAILING = ERR_BASE - 104,   /* bytes left over after the last field */
    ERR_PKT_UTF8 = ERR_BASE - 105,       /* ill-formed UTF-8, U+0000 or a surrogate */
    ERR_PKT_PROTO_NAME = ERR_BASE - 106, /* CONNECT protocol name not MQTT/MQIsdp */
    ERR_PKT_PROTO_LEVEL = ERR_BASE - 107,/* CONNECT protocol level not 3, 4 or 5 */
    ERR_PKT_CONNECT_FLAGS = ERR_BASE - 108, /* reserved bit, will/user/pass flag rules */
    ERR_PKT_QOS = ERR_BASE - 109,        /* QoS 3 */
    ERR_PKT_PACKET_ID = ERR_BASE - 110,  /* packet identifier 0 */
    ERR_PKT_TOPIC = ERR_BASE - 111,      /* topic name empty or holds + or # */
    ERR_PKT_EMPTY = ERR_BASE - 112,      /* SUBSCRIBE/UNSUBSCRIBE with no filters */
    ERR_PKT_SUBOPTS = ERR_BASE - 113,    /* reserved subscription option bits */
    ERR_PKT_PROP_ID = ERR_BASE - 114,    /* unknown property identifier */
    ERR_PKT_PROP_DUP = ERR_BASE - 115,   /* property that may not repeat, repeated */
    ERR_PKT_PROP_PLACE = ERR_BASE - 116, /* property not allowed in this packet */
    ERR_PKT_PROP_VALUE = ERR_BASE - 117, /* property value out of range */
    ERR_PKT_REASON = ERR_BASE - 118,     /* reason code not valid for this packet */
    ERR_PKT_TOO_LARGE = ERR_BASE - 119,  /* packet over the configured maximum */
    ERR_PKT_VERSION = ERR_BASE - 120,    /* packet type not in this protocol version */
    ERR_PKT_PAYLOAD_FORMAT = ERR_BASE - 121, /* payload format 1 but payload not UTF-8 */
    ERR_PKT_CLIENT_ID = ERR_BASE - 122,  /* v3.1 client id longer than 23 bytes */
    ERR_PKT_NO_TOPIC = ERR_BASE - 123,   /* v5 empty topic name without a Topic Alias */
};

/* Returns a static, human-readable description of any code (ours or libuv's). */
const char *err_str(int code);

#endif

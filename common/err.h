/*
 * err.h - uvmq's own error codes and err_str().
 *
 * Functions return int: 0 on success, negative on failure. libuv codes
 * (all above -4096) pass through untouched; ours live below -10000 so the
 * two ranges never collide. "Need more bytes" is a result, not an error
 * (PKT_NEED_MORE in packets/pkt.h). The names are UVMQ_E*: ERR_ is
 * OpenSSL's prefix, and E[A-Z] errno's.
 */
#ifndef UVMQ_ERR_H
#define UVMQ_ERR_H

#define UVMQ_EBASE (-10000)

enum {
    /* generic */
    UVMQ_ENOMEM = UVMQ_EBASE - 1,      /* a peer-sized allocation hit its limit */
    UVMQ_ELIMIT = UVMQ_EBASE - 2,      /* a configured limit was exceeded */
    UVMQ_EINVAL = UVMQ_EBASE - 3,      /* invalid argument */
    UVMQ_ENOTFOUND = UVMQ_EBASE - 4,   /* lookup found nothing */
    UVMQ_EEXISTS = UVMQ_EBASE - 5,     /* already present */
    UVMQ_ECONFIG = UVMQ_EBASE - 6,     /* bad configuration */
    UVMQ_EIO = UVMQ_EBASE - 7,         /* file or storage I/O failed */
    UVMQ_ETLS = UVMQ_EBASE - 8,        /* TLS handshake or record failure */
    UVMQ_EAUTH = UVMQ_EBASE - 9,       /* wrong password or unknown user */

    /* packets/: decode errors (each maps to a v5 reason code) */
    UVMQ_EPKT_REMLEN = UVMQ_EBASE - 100,     /* remaining length varint > 4 bytes */
    UVMQ_EPKT_TYPE = UVMQ_EBASE - 101,       /* packet type 0 */
    UVMQ_EPKT_FLAGS = UVMQ_EBASE - 102,      /* reserved fixed-header flag bits wrong */
    UVMQ_EPKT_SHORT = UVMQ_EBASE - 103,      /* a field runs past the packet end */
    UVMQ_EPKT_TRAILING = UVMQ_EBASE - 104,   /* bytes left over after the last field */
    UVMQ_EPKT_UTF8 = UVMQ_EBASE - 105,       /* ill-formed UTF-8, U+0000 or a surrogate */
    UVMQ_EPKT_PROTO_NAME = UVMQ_EBASE - 106, /* CONNECT protocol name not MQTT/MQIsdp */
    UVMQ_EPKT_PROTO_LEVEL = UVMQ_EBASE - 107,/* CONNECT protocol level not 3, 4 or 5 */
    UVMQ_EPKT_CONNECT_FLAGS = UVMQ_EBASE - 108, /* reserved bit, will/user/pass flag rules */
    UVMQ_EPKT_QOS = UVMQ_EBASE - 109,        /* QoS 3 */
    UVMQ_EPKT_PACKET_ID = UVMQ_EBASE - 110,  /* packet identifier 0 */
    UVMQ_EPKT_TOPIC = UVMQ_EBASE - 111,      /* topic name empty or holds + or # */
    UVMQ_EPKT_EMPTY = UVMQ_EBASE - 112,      /* SUBSCRIBE/UNSUBSCRIBE with no filters */
    UVMQ_EPKT_SUBOPTS = UVMQ_EBASE - 113,    /* reserved subscription option bits */
    UVMQ_EPKT_PROP_ID = UVMQ_EBASE - 114,    /* unknown property identifier */
    UVMQ_EPKT_PROP_DUP = UVMQ_EBASE - 115,   /* property that may not repeat, repeated */
    UVMQ_EPKT_PROP_PLACE = UVMQ_EBASE - 116, /* property not allowed in this packet */
    UVMQ_EPKT_PROP_VALUE = UVMQ_EBASE - 117, /* property value out of range */
    UVMQ_EPKT_REASON = UVMQ_EBASE - 118,     /* reason code not valid for this packet */
    UVMQ_EPKT_TOO_LARGE = UVMQ_EBASE - 119,  /* packet over the configured maximum */
    UVMQ_EPKT_VERSION = UVMQ_EBASE - 120,    /* packet type not in this protocol version */
    UVMQ_EPKT_PAYLOAD_FORMAT = UVMQ_EBASE - 121, /* payload format 1 but payload not UTF-8 */
    UVMQ_EPKT_CLIENT_ID = UVMQ_EBASE - 122,  /* v3.1 client id longer than 23 bytes */
    UVMQ_EPKT_NO_TOPIC = UVMQ_EBASE - 123,   /* v5 empty topic name without a Topic Alias */
};

/* Returns a static, human-readable description of one of our codes, or of
 * a negated errno (which most libuv codes are on Unix); "unknown error"
 * for anything else. Thread-safe. */
const char *err_str(int code);

#endif

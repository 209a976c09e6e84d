/*
 * err.c - err_str(): one static description per error code.
 *
 * Ours have their own text. A libuv code on Unix is a negated errno (but
 * for a few of its own, such as UV_EOF): those are described by the C
 * library, so common/ needs nothing of libuv; callers that hold a libuv
 * code and want libuv's wording call uv_strerror themselves.
 */
#include "err.h"

#include <string.h>

const char *err_str(int code)
{
    switch (code) {
    case 0: return "success";
    case UVMQ_ENOMEM: return "allocation limit reached";
    case UVMQ_ELIMIT: return "limit exceeded";
    case UVMQ_EINVAL: return "invalid argument";
    case UVMQ_ENOTFOUND: return "not found";
    case UVMQ_EEXISTS: return "already exists";
    case UVMQ_ECONFIG: return "invalid configuration";
    case UVMQ_EIO: return "I/O error";
    case UVMQ_ETLS: return "TLS failure";
    case UVMQ_EAUTH: return "bad user name or password";
    case UVMQ_EPKT_REMLEN: return "malformed remaining length";
    case UVMQ_EPKT_TYPE: return "reserved packet type";
    case UVMQ_EPKT_FLAGS: return "invalid fixed header flags";
    case UVMQ_EPKT_SHORT: return "packet shorter than its fields";
    case UVMQ_EPKT_TRAILING: return "unexpected bytes after the last field";
    case UVMQ_EPKT_UTF8: return "invalid UTF-8 string";
    case UVMQ_EPKT_PROTO_NAME: return "unknown protocol name";
    case UVMQ_EPKT_PROTO_LEVEL: return "unsupported protocol level";
    case UVMQ_EPKT_CONNECT_FLAGS: return "invalid CONNECT flags";
    case UVMQ_EPKT_QOS: return "invalid QoS";
    case UVMQ_EPKT_PACKET_ID: return "packet identifier 0";
    case UVMQ_EPKT_TOPIC: return "invalid topic name";
    case UVMQ_EPKT_EMPTY: return "no topic filters";
    case UVMQ_EPKT_SUBOPTS: return "reserved subscription option bits set";
    case UVMQ_EPKT_PROP_ID: return "unknown property";
    case UVMQ_EPKT_PROP_DUP: return "property repeated";
    case UVMQ_EPKT_PROP_PLACE: return "property not allowed in this packet";
    case UVMQ_EPKT_PROP_VALUE: return "property value out of range";
    case UVMQ_EPKT_REASON: return "invalid reason code";
    case UVMQ_EPKT_TOO_LARGE: return "packet too large";
    case UVMQ_EPKT_VERSION: return "packet type not in this protocol version";
    case UVMQ_EPKT_PAYLOAD_FORMAT: return "payload is not valid UTF-8";
    case UVMQ_EPKT_CLIENT_ID: return "client identifier too long";
    case UVMQ_EPKT_NO_TOPIC: return "empty topic name without a topic alias";
    default:
        if (code < 0 && code > UVMQ_EBASE) {
            const char *d = strerrordesc_np(-code); /* static, thread-safe */
            if (d != NULL) return d;
        }
        return "unknown error";
    }
}

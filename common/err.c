/*
 * err.c - err_str(): one static description per error code.
 */
#include "err.h"

#include <uv.h>

const char *err_str(int code)
{
    switch (code) {
    case 0: return "success";
    case ERR_NOMEM: return "allocation limit reached";
    case ERR_LIMIT: return "limit exceeded";
    case ERR_INVAL: return "invalid argument";
    case ERR_NOTFOUND: return "not found";
    case ERR_EXISTS: return "already exists";
    case ERR_CONFIG: return "invalid configuration";
    case ERR_IO: return "I/O error";
    case ERR_TLS: return "TLS failure";
    case ERR_PKT_REMLEN: return "malformed remaining length";
    case ERR_PKT_TYPE: return "reserved packet type";
    case ERR_PKT_FLAGS: return "invalid fixed header flags";
    case ERR_PKT_SHORT: return "packet shorter than its fields";
    case ERR_PKT_TRAILING: return "unexpected bytes after the last field";
    case ERR_PKT_UTF8: return "invalid UTF-8 string";
    case ERR_PKT_PROTO_NAME: return "unknown protocol name";
    case ERR_PKT_PROTO_LEVEL: return "unsupported protocol level";
    case ERR_PKT_CONNECT_FLAGS: return "invalid CONNECT flags";
    case ERR_PKT_QOS: return "invalid QoS";
    case ERR_PKT_PACKET_ID: return "packet identifier 0";
    case ERR_PKT_TOPIC: return "invalid topic name";
    case ERR_PKT_EMPTY: return "no topic filters";
    case ERR_PKT_SUBOPTS: return "reserved subscription option bits set";
    case ERR_PKT_PROP_ID: return "unknown property";
    case ERR_PKT_PROP_DUP: return "property repeated";
    case ERR_PKT_PROP_PLACE: return "property not allowed in this packet";
    case ERR_PKT_PROP_VALUE: return "property value out of range";
    case ERR_PKT_REASON: return "invalid reason code";
    case ERR_PKT_TOO_LARGE: return "packet too large";
    case ERR_PKT_VERSION: return "packet type not in this protocol version";
    case ERR_PKT_PAYLOAD_FORMAT: return "payload is not valid UTF-8";
    case ERR_PKT_CLIENT_ID: return "client identifier too long";
    case ERR_PKT_NO_TOPIC: return "empty topic name without a topic alias";
    default:
        if (code > ERR_BASE) return uv_strerror(code);
        return "unknown error";
    }
}

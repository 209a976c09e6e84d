/*
 * http_parse.c - the pure part of the HTTP/2 API: paths and queries,
 * request headers into MQTT 5 properties, base64, JSON strings, and the
 * server-sent event of a message.
 *
 * No nghttp2, no libuv, no connection: everything takes bytes and gives
 * bytes or an error (status, MQTT 5 reason code, static message), so
 * tests/unit/broker/http_parse.c checks it directly. Validation is the
 * MQTT codec's: a topic from a URL passes exactly the checks a PUBLISH
 * topic passes (broker/publish.c), a filter those of a SUBSCRIBE.
 * docs/http.md is the user's side of the same rules.
 */
#include "http_int.h"

#include <stdlib.h>
#include <string.h>

#include "../common/xmalloc.h"
#include "../router/router.h"

/* Longest topic name or filter (a two-byte length prefix in MQTT). */
#define TOPIC_LEN_MAX 65535

/* ---- buffers ---- */

/* Makes room for n more bytes (never past limit). 0 or UVMQ_ENOMEM. */
static int reserve(http_buf_t *b, size_t n, size_t limit)
{
    if (b->len + n > limit || b->len + n < n) return UVMQ_ENOMEM;
    if (b->len + n <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    if (cap > limit) cap = limit;
    uint8_t *p = try_malloc(cap, limit);
    if (p == NULL) return UVMQ_ENOMEM;
    if (b->len > 0) memcpy(p, b->p, b->len);
    free(b->p);
    b->p = p;
    b->cap = cap;
    return 0;
}

int http__buf_put(http_buf_t *b, const void *src, size_t n, size_t limit)
{
    if (n == 0) return 0;
    int rc = reserve(b, n, limit);
    if (rc != 0) return rc;
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

void http__buf_compact(http_buf_t *b)
{
    if (b->off == 0) return;
    if (b->off == b->len) {
        http__buf_free(b);
    } else if (b->off > b->len / 2) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
}

void http__buf_free(http_buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- URLs ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

long http__pct_decode(const char *s, size_t len, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            out[n++] = s[i];
            continue;
        }
        int hi = i + 2 < len ? hexval(s[i + 1]) : -1;
        int lo = hi >= 0 ? hexval(s[i + 2]) : -1;
        if (lo < 0) return -1;
        out[n++] = (char)(hi << 4 | lo);
        i += 2;
    }
    return (long)n;
}

int http__check_topic(const char *t, size_t len, uint32_t max_levels, uint8_t *reason)
{
    *reason = PKT_RC_TOPIC_NAME_INVALID;
    if (len == 0 || len > TOPIC_LEN_MAX) return UVMQ_EINVAL;
    if (!pkt_utf8_valid((const uint8_t *)t, len)) return UVMQ_EINVAL;
    if (!topic_name_valid(t, len)) return UVMQ_EINVAL;
    if (topic_levels(t, len) > max_levels) return UVMQ_EINVAL;
    *reason = PKT_RC_SUCCESS;
    return 0;
}

int http__check_filter(const char *f, size_t len, uint32_t max_levels, uint8_t *reason)
{
    static const char share[] = "$share/";
    *reason = PKT_RC_SHARED_SUBS_NOT_SUPPORTED;
    if (len >= sizeof share - 1 && memcmp(f, share, sizeof share - 1) == 0) return UVMQ_EINVAL;
    *reason = PKT_RC_TOPIC_FILTER_INVALID;
    if (len == 0 || len > TOPIC_LEN_MAX) return UVMQ_EINVAL;
    if (!pkt_utf8_valid((const uint8_t *)f, len)) return UVMQ_EINVAL;
    if (!topic_filter_valid(f, len)) return UVMQ_EINVAL;
    if (topic_levels(f, len) > max_levels) return UVMQ_EINVAL;
    *reason = PKT_RC_SUCCESS;
    return 0;
}

static int fail(http_err_t *err, uint16_t status, uint8_t reason, const char *msg)
{
    err->status = status;
    err->reason = reason;
    err->msg = msg;
    return UVMQ_EINVAL;
}

/* One name=value pair of a query; the cursor moves past it and its '&'. */
typedef struct qpair_s {
    const char *name, *val;
    size_t name_len, val_len;
} qpair_t;

/* The next pair of q[*pos..len); 0 when there is none left. */
static int next_pair(const char *q, size_t len, size_t *pos, qpair_t *p)
{
    while (*pos < len && q[*pos] == '&') (*pos)++; /* empty pairs: skipped */
    if (*pos >= len) return 0;
    const char *start = q + *pos;
    const char *amp = memchr(start, '&', len - *pos);
    size_t plen = amp != NULL ? (size_t)(amp - start) : len - *pos;
    const char *eq = memchr(start, '=', plen);
    p->name = start;
    p->name_len = eq != NULL ? (size_t)(eq - start) : plen;
    p->val = eq != NULL ? eq + 1 : start + plen;
    p->val_len = eq != NULL ? plen - p->name_len - 1 : 0;
    *pos += plen;
    return 1;
}

static int is(const qpair_t *p, const char *name)
{
    return p->name_len == strlen(name) && memcmp(p->name, name, p->name_len) == 0;
}

static int val_is(const qpair_t *p, const char *v)
{
    return p->val_len == strlen(v) && memcmp(p->val, v, p->val_len) == 0;
}

/* qos=0|1|2 into *qos; -1 when the value is anything else. */
static int parse_qos(const qpair_t *p, uint8_t *qos)
{
    if (p->val_len != 1 || p->val[0] < '0' || p->val[0] > '2') return -1;
    *qos = (uint8_t)(p->val[0] - '0');
    return 0;
}

int http__parse_publish_query(const char *q, size_t len, http_pub_opts_t *o,
                              http_err_t *err)
{
    size_t pos = 0;
    int seen_qos = 0, seen_retain = 0;
    qpair_t p;
    o->qos = 0;
    o->retain = 0;
    while (next_pair(q, len, &pos, &p)) {
        if (is(&p, "qos")) {
            if (seen_qos++ || parse_qos(&p, &o->qos) != 0)
                return fail(err, 400, PKT_RC_MALFORMED, "qos must be 0, 1 or 2, given once");
        } else if (is(&p, "retain")) {
            if (seen_retain++)
                return fail(err, 400, PKT_RC_MALFORMED, "retain given twice");
            if (val_is(&p, "1") || val_is(&p, "true"))
                o->retain = 1;
            else if (!val_is(&p, "0") && !val_is(&p, "false"))
                return fail(err, 400, PKT_RC_MALFORMED, "retain must be 0, 1, true or false");
        } else {
            return fail(err, 400, PKT_RC_MALFORMED,
                        "unknown query parameter (publish takes qos and retain)");
        }
    }
    return 0;
}

int http__parse_subscribe_query(const char *q, size_t len, char *fbuf,
                                uint32_t *foff, uint32_t *flen, uint8_t *qos,
                                uint32_t max_levels, http_err_t *err)
{
    size_t pos = 0, used = 0;
    int n = 0, seen_qos = 0;
    qpair_t p;
    *qos = 0;
    while (next_pair(q, len, &pos, &p)) {
        if (is(&p, "qos")) {
            if (seen_qos++ || parse_qos(&p, qos) != 0)
                return fail(err, 400, PKT_RC_MALFORMED, "qos must be 0, 1 or 2, given once");
            continue;
        }
        if (!is(&p, "filter"))
            return fail(err, 400, PKT_RC_MALFORMED,
                        "unknown query parameter (subscribe takes filter and qos)");
        if (n == HTTP_MAX_FILTERS)
            return fail(err, 400, PKT_RC_MALFORMED, "too many filters (at most 64)");
        long dl = http__pct_decode(p.val, p.val_len, fbuf + used);
        if (dl < 0) return fail(err, 400, PKT_RC_MALFORMED, "malformed %-escape in filter");
        uint8_t bad = 0;
        int refused = http__check_filter(fbuf + used, (size_t)dl, max_levels, &bad) != 0;
        if (refused && bad == PKT_RC_SHARED_SUBS_NOT_SUPPORTED)
            return fail(err, 400, bad, "shared subscriptions are not supported");
        if (refused) return fail(err, 400, bad, "invalid topic filter");
        foff[n] = (uint32_t)used;
        flen[n++] = (uint32_t)dl;
        used += (size_t)dl;
    }
    if (n == 0) return fail(err, 400, PKT_RC_MALFORMED, "at least one filter is required");
    return n;
}

/* ---- headers into properties ---- */

#define USER_PREFIX "x-mqtt-user-"

static int name_is(const uint8_t *hb, const http_hdr_t *h, const char *name)
{
    return h->name_len == strlen(name) && memcmp(hb + h->name, name, h->name_len) == 0;
}

static pkt_bin_t slice(const uint8_t *hb, uint32_t off, uint32_t len)
{
    pkt_bin_t b = {hb + off, len};
    return b;
}

/* A decimal 1..4294967295 without sign or spaces; 0 when it is not. */
static uint32_t parse_expiry(const uint8_t *s, size_t len)
{
    uint64_t v = 0;
    if (len == 0 || len > 10) return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    return v > UINT32_MAX ? 0 : (uint32_t)v;
}

/* The property a single-valued header sets, or 0 for any other. */
static uint8_t prop_of(const uint8_t *hb, const http_hdr_t *h)
{
    if (name_is(hb, h, "x-mqtt-correlation-data")) return PROP_CORRELATION_DATA;
    if (name_is(hb, h, "content-type")) return PROP_CONTENT_TYPE;
    if (name_is(hb, h, "x-mqtt-message-expiry")) return PROP_MESSAGE_EXPIRY;
    if (name_is(hb, h, "x-mqtt-response-topic")) return PROP_RESPONSE_TOPIC;
    return 0;
}

/* One header into props; 0, or UVMQ_EINVAL with *err set. A property that
 * MQTT allows once is refused when its header comes twice (and cbuf, sized
 * for the first correlation header, is written once). */
static int prop_from(const uint8_t *hb, const http_hdr_t *h, pkt_props_t *props,
                     uint8_t *cbuf, http_err_t *err)
{
    const uint8_t *v = hb + h->val;
    uint8_t id = prop_of(hb, h);
    if (id == 0) return 0;
    if (PKT_PROP_HAS(props, id))
        return fail(err, 400, PKT_RC_MALFORMED, "a property header is given twice");
    if (h->val_len > UINT16_MAX)
        return fail(err, 400, PKT_RC_MALFORMED, "a property header is longer than 65535 bytes");
    if (id == PROP_CORRELATION_DATA) {
        long n = http__b64_decode((const char *)v, h->val_len, cbuf);
        if (n < 0)
            return fail(err, 400, PKT_RC_MALFORMED, "x-mqtt-correlation-data must be base64");
        props->correlation_data.p = cbuf;
        props->correlation_data.len = (size_t)n;
        PKT_PROP_SET(props, PROP_CORRELATION_DATA);
        return 0;
    }
    if (!pkt_utf8_valid(v, h->val_len))
        return fail(err, 400, PKT_RC_MALFORMED, "a property header is not valid UTF-8");
    if (name_is(hb, h, "content-type")) {
        props->content_type = slice(hb, h->val, h->val_len);
        PKT_PROP_SET(props, PROP_CONTENT_TYPE);
    } else if (name_is(hb, h, "x-mqtt-message-expiry")) {
        props->message_expiry = parse_expiry(v, h->val_len);
        if (props->message_expiry == 0)
            return fail(err, 400, PKT_RC_MALFORMED,
                        "x-mqtt-message-expiry must be seconds, 1..4294967295");
        PKT_PROP_SET(props, PROP_MESSAGE_EXPIRY);
    } else if (name_is(hb, h, "x-mqtt-response-topic")) {
        uint8_t bad = 0;
        if (http__check_topic((const char *)v, h->val_len, UINT32_MAX, &bad) != 0)
            return fail(err, 400, bad,
                        "x-mqtt-response-topic must be a topic name (no wildcards)");
        props->response_topic = slice(hb, h->val, h->val_len);
        PKT_PROP_SET(props, PROP_RESPONSE_TOPIC);
    }
    return 0;
}

int http__props_from_headers(const uint8_t *hb, const http_hdr_t *hdrs,
                             uint32_t n, pkt_props_t *props, uint8_t *cbuf,
                             arena_t *a, http_err_t *err)
{
    const size_t plen = sizeof USER_PREFIX - 1;
    uint32_t n_user = 0;
    memset(props, 0, sizeof *props);
    for (uint32_t i = 0; i < n; i++) {
        const http_hdr_t *h = &hdrs[i];
        if (h->name_len > plen && memcmp(hb + h->name, USER_PREFIX, plen) == 0) {
            n_user++;
            continue;
        }
        if (prop_from(hb, &hdrs[i], props, cbuf, err) != 0) return UVMQ_EINVAL;
    }
    if (n_user == 0) return 0;
    if (n_user > HTTP_MAX_USER_PROPS)
        return fail(err, 400, PKT_RC_MALFORMED, "too many x-mqtt-user-* headers (at most 256)");
    props->user = arena_alloc(a, n_user * sizeof *props->user);
    if (props->user == NULL) return fail(err, 413, PKT_RC_PACKET_TOO_LARGE, "headers too large");
    for (uint32_t i = 0; i < n; i++) {
        const http_hdr_t *h = &hdrs[i];
        if (!(h->name_len > plen && memcmp(hb + h->name, USER_PREFIX, plen) == 0)) continue;
        if (h->val_len > UINT16_MAX || !pkt_utf8_valid(hb + h->val, h->val_len))
            return fail(err, 400, PKT_RC_MALFORMED,
                        "an x-mqtt-user-* value is not UTF-8 of at most 65535 bytes");
        pkt_user_prop_t *u = &props->user[props->n_user++];
        u->key = slice(hb, h->name + (uint32_t)plen, h->name_len - (uint32_t)plen);
        u->val = slice(hb, h->val, h->val_len);
    }
    PKT_PROP_SET(props, PROP_USER_PROPERTY);
    return 0;
}

/* ---- base64 ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t http__b64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

size_t http__b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
        out[o++] = b64[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    return o;
}

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

long http__b64_decode(const char *in, size_t len, uint8_t *out)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    if (len % 4 == 0 && len >= 1 && in[len - 1] == '=') len--;
    if (len % 4 == 3 && len >= 1 && in[len - 1] == '=') len--;
    if (len % 4 == 1) return -1; /* no whole byte in the last group */
    for (size_t i = 0; i < len; i++) {
        int v = b64val(in[i]);
        if (v < 0) return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return (long)o;
}

/* ---- JSON ---- */

int http__json_str(http_buf_t *b, const char *s, size_t len, size_t limit)
{
    static const char hex[] = "0123456789abcdef";
    char esc[6] = {'\\', 'u', '0', '0', 0, 0};
    size_t run = 0; /* bytes before i that need no escape */
    int rc = http__buf_put(b, "\"", 1, limit);
    for (size_t i = 0; rc == 0 && i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') {
            run++;
            continue;
        }
        rc = http__buf_put(b, s + i - run, run, limit);
        run = 0;
        if (rc != 0) break;
        if (ch == '"' || ch == '\\') {
            char two[2] = {'\\', (char)ch};
            rc = http__buf_put(b, two, 2, limit);
        } else if (ch == '\n') {
            rc = http__buf_put(b, "\\n", 2, limit);
        } else {
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            rc = http__buf_put(b, esc, 6, limit);
        }
    }
    if (rc == 0) rc = http__buf_put(b, s + len - run, run, limit);
    if (rc == 0) rc = http__buf_put(b, "\"", 1, limit);
    return rc;
}

int http__json_error(http_buf_t *b, const char *msg, uint8_t reason)
{
    char tail[40];
    int n = snprintf(tail, sizeof tail, ",\"reason_code\":%u}\n", (unsigned)reason);
    int rc = http__buf_put(b, "{\"error\":", 9, SIZE_MAX);
    if (rc == 0) rc = http__json_str(b, msg, strlen(msg), SIZE_MAX);
    if (rc == 0) rc = http__buf_put(b, tail, (size_t)n, SIZE_MAX);
    return rc;
}

/* ---- server-sent events ---- */

/* Appends a literal. */
static int lit(http_buf_t *b, const char *s, size_t limit)
{
    return http__buf_put(b, s, strlen(s), limit);
}

/* Appends bytes as a base64 JSON string. */
static int json_b64(http_buf_t *b, const uint8_t *p, size_t n, size_t limit)
{
    int rc = reserve(b, http__b64_len(n) + 2, limit);
    if (rc != 0) return rc;
    b->p[b->len++] = '"';
    b->len += http__b64_encode(p, n, (char *)b->p + b->len);
    b->p[b->len++] = '"';
    return 0;
}

/* "name":<string> with a leading comma when not first. */
static int json_field_str(http_buf_t *b, const char *name, const pkt_bin_t *v,
                          int *first, size_t limit)
{
    int rc = lit(b, *first ? "\"" : ",\"", limit);
    *first = 0;
    if (rc == 0) rc = lit(b, name, limit);
    if (rc == 0) rc = lit(b, "\":", limit);
    if (rc == 0) rc = http__json_str(b, (const char *)v->p, v->len, limit);
    return rc;
}

/* The "properties" object of a message with forwardable properties. */
static int json_props(http_buf_t *b, const msg_t *m, uint64_t now_ms, size_t limit)
{
    pkt_props_t p;
    arena_t a;
    int first = 1;
    arena_init(&a, 1u << 20); /* takes memory only for user properties */
    int rc = m->props_len > 0
                 ? pkt_props_parse(m->props, m->props_len, PKT_PUBLISH, &p, &a)
                 : (memset(&p, 0, sizeof p), 0);
    if (rc == 0 && p.present == 0 && p.n_user == 0 && m->expiry_at == 0)
        goto out; /* none */
    if (rc == 0) rc = lit(b, ",\"properties\":{", limit);
    if (rc == 0 && PKT_PROP_HAS(&p, PROP_CONTENT_TYPE))
        rc = json_field_str(b, "content_type", &p.content_type, &first, limit);
    if (rc == 0 && PKT_PROP_HAS(&p, PROP_RESPONSE_TOPIC))
        rc = json_field_str(b, "response_topic", &p.response_topic, &first, limit);
    if (rc == 0 && PKT_PROP_HAS(&p, PROP_CORRELATION_DATA)) {
        rc = lit(b, first ? "\"correlation_data\":" : ",\"correlation_data\":", limit);
        first = 0;
        if (rc == 0) rc = json_b64(b, p.correlation_data.p, p.correlation_data.len, limit);
    }
    if (rc == 0 && PKT_PROP_HAS(&p, PROP_PAYLOAD_FORMAT)) {
        char num[48];
        snprintf(num, sizeof num, "%s\"payload_format\":%u", first ? "" : ",",
                 (unsigned)p.payload_format);
        first = 0;
        rc = lit(b, num, limit);
    }
    if (rc == 0 && m->expiry_at != 0) { /* MQTT-3.3.2-6: what is left */
        char num[48];
        uint64_t left = m->expiry_at > now_ms ? m->expiry_at - now_ms : 0;
        snprintf(num, sizeof num, "%s\"message_expiry\":%llu", first ? "" : ",",
                 (unsigned long long)((left + 999) / 1000));
        first = 0;
        rc = lit(b, num, limit);
    }
    if (rc == 0 && p.n_user > 0) {
        rc = lit(b, first ? "\"user\":[" : ",\"user\":[", limit);
        for (uint32_t i = 0; rc == 0 && i < p.n_user; i++) {
            rc = lit(b, i == 0 ? "[" : ",[", limit);
            if (rc == 0)
                rc = http__json_str(b, (const char *)p.user[i].key.p, p.user[i].key.len, limit);
            if (rc == 0) rc = lit(b, ",", limit);
            if (rc == 0)
                rc = http__json_str(b, (const char *)p.user[i].val.p, p.user[i].val.len, limit);
            if (rc == 0) rc = lit(b, "]", limit);
        }
        if (rc == 0) rc = lit(b, "]", limit);
    }
    if (rc == 0) rc = lit(b, "}", limit);
out:
    arena_dispose(&a);
    return rc;
}

int http__msg_json(http_buf_t *b, const msg_t *m, uint8_t qos, uint8_t retain,
                   uint64_t now_ms, size_t limit)
{
    char head[48];
    int text = pkt_utf8_valid(m->payload, m->payload_len);
    int rc = lit(b, "{\"topic\":", limit);
    if (rc == 0) rc = http__json_str(b, m->topic, m->topic_len, limit);
    snprintf(head, sizeof head, ",\"qos\":%u,\"retain\":%s,\"payload\":", (unsigned)qos,
             retain ? "true" : "false");
    if (rc == 0) rc = lit(b, head, limit);
    if (rc == 0 && text)
        rc = http__json_str(b, (const char *)m->payload, m->payload_len, limit);
    else if (rc == 0)
        rc = json_b64(b, m->payload, m->payload_len, limit);
    if (rc == 0) rc = lit(b, text ? ",\"encoding\":\"utf-8\"" : ",\"encoding\":\"base64\"", limit);
    if (rc == 0) rc = json_props(b, m, now_ms, limit);
    if (rc == 0) rc = lit(b, "}", limit);
    return rc;
}

size_t http__sse_event(http_buf_t *b, const msg_t *m, uint8_t qos,
                       uint8_t retain, uint64_t now_ms, size_t limit)
{
    size_t start = b->len;
    int rc = lit(b, "data: ", limit);
    if (rc == 0) rc = http__msg_json(b, m, qos, retain, now_ms, limit);
    if (rc == 0) rc = lit(b, "\n\n", limit);
    if (rc != 0) {
        b->len = start; /* nothing of a partial event stays */
        return 0;
    }
    return b->len - start;
}

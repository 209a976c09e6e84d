/*
 * mqtt.c - the MQTT transport: MQTT packets over a byte stream, whatever
 * carries the stream (plain TCP, TLS, later WebSockets).
 *
 * Input: every whole packet in the bytes fed is framed (pkt_frame) and
 * handed to its handler (connect.c for the first one, then publish.c,
 * subscribe.c, auth.c); the tail of a packet split across reads stays
 * with conn.c (conn_feed), sized to the packet the fixed header
 * announced. A CONNECT whose session lives on another loop moves the
 * connection there with the bytes from that CONNECT on (a session never
 * changes loops: inbox.c describes the threading model). The sweep
 * applies the MQTT keep-alive (conn.c applies connect_timeout_ms); a
 * close of ours sends a v5 DISCONNECT with its reason code first and
 * lingers (conn.c close_flushed). Output is conn.c's out-batch
 * (conn__send_pkt, conn__send_publish).
 */
#include "mqtt_int.h"

#include "access_int.h"
#include "auth_int.h"
#include "conn_int.h"
#include "connect_int.h"
#include "inbox_int.h"
#include "publish_int.h"
#include "subscribe_int.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/xmalloc.h"

/* Hands one whole packet (frame[0..len)) to its handler. */
static conn_rc_t dispatch(conn_t *c, const uint8_t *frame, size_t len)
{
    pkt_t p;
    conn_rc_t rc = CONN_OK;
    loop_t *l = c->loop;
    c->last_rx = (uint32_t)uv_now(&l->uv);
    if (c->state == CONN_NEW) {
        rc = connect__handle(c, frame, len);
        /* a moved CONNECT counts where handled; one waiting for its
         * password check, when handled again */
        if (rc != CONN_MIGRATE && rc != CONN_PENDING) {
            l->pkts_in++;
            l->connects += (frame[0] >> 4) == PKT_CONNECT;
        }
        return rc;
    }
    l->pkts_in++; /* folded into b->cnt once per tick */
    int drc = pkt_decode(&p, c->version, frame, len, &l->arena);
    if (drc < 0) return conn__fail(c, pkt_err_reason(drc), err_str(drc));
    switch (p.type) {
    case PKT_PUBLISH: rc = publish__handle(c, &p); break;
    case PKT_PUBACK:
    case PKT_PUBREC:
    case PKT_PUBREL:
    case PKT_PUBCOMP: rc = publish__handle_ack(c, &p); break;
    case PKT_SUBSCRIBE: rc = subscribe__handle(c, &p); break;
    case PKT_UNSUBSCRIBE: rc = subscribe__handle_unsubscribe(c, &p); break;
    case PKT_PINGREQ: {
        pkt_t r = {.type = PKT_PINGRESP};
        conn__send_pkt(c, &r);
        break;
    }
    case PKT_DISCONNECT: rc = connect__handle_disconnect(c, &p); break;
    case PKT_CONNECT: /* MQTT-3.1.0-2: a second CONNECT is a protocol error */
        rc = conn__fail(c, PKT_RC_PROTOCOL_ERROR, "second CONNECT");
        break;
    case PKT_AUTH: rc = auth__handle(c, &p); break; /* auth.c */
    default:
        rc = conn__fail(c, PKT_RC_PROTOCOL_ERROR, "unexpected packet type");
        break;
    }
    return rc;
}

/* CONN_MIGRATE: moves c to loop c->move_to with data[0..len), its MQTT
 * input from the CONNECT on. A duplicate of the socket, a copy of the
 * bytes and c's transport state (TLS: with its unread ciphertext) go
 * there as ITEM_MIGRATE (which takes them), and c closes quietly here:
 * closing its handle closes only this loop's descriptor. The target's
 * load and the broker's connection count include c's successor from now
 * on (its close subtracts them). Returns CONN_GONE. */
static conn_rc_t move_away(conn_t *c, const uint8_t *data, size_t len)
{
    broker_t *b = c->loop->b;
    const transport_t *tp = conn__tp(c);
    loop_item_t it = {.kind = ITEM_MIGRATE, .hops = (uint8_t)(c->hops + 1),
                      .anon = c->anon_ok, .fd = -1, .len = len};
    uv_os_fd_t fd = -1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    /* Nothing of ours may be in flight: a TLS client sent its CONNECT
     * after our last handshake flight arrived. */
    if (c->writing || (tp->detach != NULL && tp->detach(c, conn__tp_data(c)) != 0)) {
        conn__close(c, 0, 0, "cannot move the connection's transport to its session's loop");
        return CONN_GONE;
    }
    /* dup() and then FD_CLOEXEC rather than F_DUPFD_CLOEXEC: the broker
     * never forks, and ThreadSanitizer sees a dup() (it does not model
     * fcntl's), so it knows the target loop's descriptor is a new one. */
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 && (it.fd = dup(fd)) >= 0)
        (void)fcntl(it.fd, F_SETFD, FD_CLOEXEC);
    it.bytes = try_malloc(len, (size_t)b->cfg->max_packet_size + LOOP_READ_BUF);
    if (it.fd < 0 || it.bytes == NULL) {
        if (it.fd >= 0) close(it.fd);
        free(it.bytes);
        conn__close(c, 0, 0, "cannot move the connection to its session's loop");
        return CONN_GONE;
    }
    memcpy(it.bytes, data, len);
    conn__take_tp(c, &it.tp, &it.tp_data); /* this side closes without last words */
    atomic_fetch_add_explicit(&b->loops[c->move_to].load, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&b->n_conns, 1, memory_order_relaxed);
    inbox__post(c->loop, c->move_to, &it);
    conn__close(c, 0, CONN_CLOSE_QUIET | CONN_CLOSE_MOVED, "moved to its session's loop");
    return CONN_GONE;
}

/* The largest packet c may send now: max_connect_size (or
 * max_packet_size when smaller) until its CONNECT is accepted, so that a
 * client nobody has authenticated cannot make the broker hold 16 MiB for
 * its first packet; max_packet_size after. */
static uint32_t packet_max(const conn_t *c)
{
    const broker_config_t *cfg = c->loop->b->cfg;
    if (c->state == CONN_NEW && cfg->max_connect_size < cfg->max_packet_size)
        return cfg->max_connect_size;
    return cfg->max_packet_size;
}

/* Frames and dispatches every whole packet in data[0..n). Sets *used to
 * the bytes consumed and *need to the size of the incomplete packet that
 * follows (0 when unknown). Stops early (bytes left unused) when c is
 * throttled, or at a CONNECT whose password is being verified (those
 * bytes stay with conn.c until access.c resumes c). A CONNECT for another
 * loop's session moves c there with the bytes from that CONNECT on (none
 * is processed here). */
static conn_rc_t input(conn_t *c, void *self, const uint8_t *data, size_t n, size_t *used,
                       size_t *need)
{
    size_t off = 0;
    conn_rc_t rc = CONN_OK;
    (void)self;
    *used = 0;
    *need = 0;
    if (n == 0) return CONN_OK; /* nothing kept: MQTT keeps no input of its own */
    while (rc == CONN_OK && c->state != CONN_CLOSING && !c->throttled) {
        size_t flen = 0, want = 0;
        int fr = pkt_frame(data + off, n - off, packet_max(c), &flen, &want);
        if (fr == PKT_NEED_MORE) {
            *need = want;
            break;
        }
        if (fr == UVMQ_EPKT_TOO_LARGE) {
            rc = conn__fail(c, PKT_RC_PACKET_TOO_LARGE, err_str(fr));
        } else if (fr < 0) {
            rc = conn__fail(c, PKT_RC_MALFORMED, err_str(fr));
        } else {
            rc = dispatch(c, data + off, flen);
            arena_reset(&c->loop->arena);
            if (rc == CONN_MIGRATE) {
                rc = move_away(c, data + off, n - off);
            } else if (rc == CONN_PENDING) { /* its password is being */
                rc = CONN_OK;                 /* verified (access.c): the */
                break;                        /* CONNECT stays unread */
            } else {
                off += flen;
            }
        }
    }
    *used = off;
    return c->state == CONN_CLOSING ? CONN_GONE : rc;
}

/* Our last words: a v5 client whose session is attached gets DISCONNECT
 * with the reason (and a Reason String, 3.14.2.2.3) when the close asks
 * for one; the connection then lingers once it is out (conn.c). */
static void closing(conn_t *c, void *self, uint8_t reason, unsigned flags, const char *why)
{
    (void)self;
    if (!(flags & CONN_CLOSE_DISCONNECT) || c->sess == NULL || c->version != PKT_V5) return;
    pkt_t d = {.type = PKT_DISCONNECT};
    d.u.disconnect.reason = reason;
    conn__reason_string(c, &d, &d.u.disconnect.props, why);
    conn__send_pkt(c, &d);
    c->linger = 1;
}

/* MQTT-3.1.2-24: nothing received for 1.5 x keep-alive. */
static void sweep(conn_t *c, void *self, uint64_t now)
{
    uint32_t t = (uint32_t)now; /* unsigned difference with last_rx */
    (void)self;
    if (c->state == CONN_ACTIVE && c->keepalive != 0 &&
        t - c->last_rx >= (uint32_t)c->keepalive * 1500)
        conn__close(c, PKT_RC_KEEP_ALIVE_TIMEOUT, CONN_CLOSE_DISCONNECT | CONN_CLOSE_WILL,
                    "keep-alive timeout");
}

const transport_t mqtt_transport = {
    .name = "mqtt",
    .anon = "-",
    .late = "no CONNECT within connect_timeout_ms",
    .alpn = TLS_ALPN_MQTT,
    .input = input,
    .closing = closing,
    .sweep = sweep, /* its state is conn_t's and the session's: no free */
};

void mqtt__open_moved(loop_t *l, loop_item_t *it)
{
    conn_t *c = conn__open_fd(l, it->fd, 1);
    if (c == NULL) {
        if (it->tp->free != NULL) it->tp->free(NULL, it->tp_data); /* closing */
    } else {
        size_t used = 0, need = 0;
        c->hops = it->hops;
        c->anon_ok = it->anon;
        conn__set_tp(c, it->tp, &mqtt_transport, it->tp_data);
        /* as if just read; then what the transport kept (TLS ciphertext) */
        if (conn_feed(c, &mqtt_transport, NULL, it->bytes, it->len) == CONN_OK)
            (void)it->tp->input(c, it->tp_data, NULL, 0, &used, &need);
        if (c->state == CONN_ACTIVE) conn__pause_if_backed_up(c);
        if (c->state != CONN_CLOSING && !c->read_paused && !c->throttled &&
            !access__waiting(c)) /* its CONNECT's password is being checked */
            conn__start_reading(c);
    }
    it->tp_data = NULL;
    free(it->bytes);
    it->bytes = NULL;
}

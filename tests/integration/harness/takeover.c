/*
 * takeover.c - scenarios the integration tests run over a plain socket
 * and over TLS (th_io_t): a takeover that must first process what the
 * old connection sent and the broker had not read.
 */
#include "tests/integration/harness/harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

/* Largest send buffer the kernel grows a TCP socket's to (tcp_wmem's
 * third value), 4 MiB when unreadable. */
static size_t tcp_wmem_max(void)
{
    unsigned long lo = 0, def = 0, max = 0;
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_wmem", "r");
    if (f != NULL) {
        if (fscanf(f, "%lu %lu %lu", &lo, &def, &max) != 3) max = 0;
        fclose(f);
    }
    return max > 0 ? (size_t)max : (size_t)4 << 20;
}

/* Connects "tk" (v5, Session Expiry 300) on io and subscribes it to
 * tk/big at QoS 0. */
static void open_old(const th_io_t *io)
{
    th_connect_t c = {.version = 5, .client_id = "tk", .clean = true,
                      .keepalive = 60, .session_expiry = 300};
    unsigned char pkt[512];
    size_t n = th_build_connect(pkt, sizeof pkt, &c);
    io->send(io->ctx, pkt, n);
    int len = io->read_packet(io->ctx, pkt, sizeof pkt);
    if (len < 4 || pkt[0] != 0x20 || pkt[3] != 0x00) fail_msg("CONNACK of tk: refused");
    n = th_build_subscribe(pkt, sizeof pkt, 5, 1, "tk/big", 0);
    io->send(io->ctx, pkt, n);
    len = io->read_packet(io->ctx, pkt, sizeof pkt);
    if (len < 6 || pkt[0] != 0x90 || pkt[len - 1] != 0x00) fail_msg("SUBACK of tk: refused");
}

/* Sends tk/big a QoS 0 message of `big` bytes from a plain publisher. */
static int publish_big(th_ctx_t *t, size_t big)
{
    unsigned char *pub = malloc(big + 64);
    unsigned char *payload = calloc(1, big);
    assert_non_null(pub);
    assert_non_null(payload);
    size_t n = th_build_publish(pub, big + 64, 4, "tk/big", 0, false, false, 0,
                                payload, big);
    int p = th_mqtt_open(t->port, 4, "tk-pub", 0x02, 60);
    th_send(p, pub, n);
    free(pub);
    free(payload);
    return p;
}

/* See harness.h. */
void th_takeover_after_unread_disconnect(th_ctx_t *t, const th_io_t *io)
{
    static const unsigned char pingreq[] = {0xc0, 0x00};
    /* reason 0x00, properties: Session Expiry Interval 0 */
    static const unsigned char disconnect[] = {0xe0, 0x07, 0x00, 0x05, 0x11,
                                               0x00, 0x00, 0x00, 0x00};
    th_connect_t again = {.version = 5, .client_id = "tk", .clean = false,
                          .keepalive = 60, .session_expiry = 300};
    bool present = true, paused = false;
    size_t big = tcp_wmem_max() + ((size_t)4 << 20);
    if (getenv("TH_BROKER_QUIET") != NULL)
        skip(); /* the pause is seen in the broker's debug log */
    if (big > ((size_t)60 << 20)) big = (size_t)60 << 20;
    open_old(io);
    int p = publish_big(t, big);
    /* Each PINGREQ read makes the broker check the old connection's unsent
     * output; the big message may still be on its way at first. */
    for (int i = 0; i < 10 && !paused; i++) {
        size_t from = th_broker_log_size(t->broker);
        io->send(io->ctx, pingreq, sizeof pingreq);
        paused = th_broker_wait_log(t->broker, from, "reading paused", 1000);
    }
    if (!paused)
        fail_msg("the broker never paused reading the client it could not send "
                 "%zu bytes to", big);
    io->send(io->ctx, disconnect, sizeof disconnect);
    int fresh = th_mqtt_connect(t->port, &again, &present);
    assert_false(present); /* the DISCONNECT ended the session first */
    th_mqtt_disconnect(fresh);
    th_close(p);
}

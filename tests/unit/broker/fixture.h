/*
 * fixture.h - the wiring the unit tests of broker/ share: a broker with
 * the default config, one loop of it and a connection on that loop, set
 * up as the broker sets them up, without a uv loop or a socket. Each test
 * file adds what it needs (routers, sessions, outboxes) around it. It
 * includes every internal header of broker/: tests reach internals.
 */
#ifndef UVMQ_TEST_BROKER_FIXTURE_H
#define UVMQ_TEST_BROKER_FIXTURE_H

#include <stdint.h>

#include "broker/access_int.h"
#include "broker/alias_int.h"
#include "broker/auth_int.h"
#include "broker/broker_int.h"
#include "broker/chunk_int.h"
#include "broker/conn_int.h"
#include "broker/config_int.h"
#include "broker/conn_tls_int.h"
#include "broker/connect_int.h"
#include "broker/deliver_int.h"
#include "broker/inbox_int.h"
#include "broker/interest_int.h"
#include "broker/listener_int.h"
#include "broker/loop_int.h"
#include "broker/mqtt_int.h"
#include "broker/persist_int.h"
#include "broker/publish_int.h"
#include "broker/recover_int.h"
#include "broker/sess_int.h"
#include "broker/share_int.h"
#include "broker/subscribe_int.h"
#include "broker/sys_int.h"
#include "broker/throttle_int.h"
#include "common/log.h"

/* Default config in cfg, b using it, loop l (index 0) of b with the
 * state its modules keep (loop__state_init); logs errors only. A second
 * loop: fx_loop. Undo with fx_loop_dispose. */
static inline void fx_loop(loop_t *l, broker_t *b, unsigned index)
{
    loop__state_init(l, b, index);
}

static inline void fx_broker(broker_config_t *cfg, broker_t *b, loop_t *l)
{
    log_set_level(LOG_ERROR);
    broker_config_init(cfg);
    b->cfg = cfg;
    if (b->n_loops == 0) b->n_loops = 1;
    fx_loop(l, b, 0);
}

/* Frees what fx_loop made (and the loop's pooled output objects). */
static inline void fx_loop_dispose(loop_t *l)
{
    loop__state_dispose(l);
}

/* c as an active connection of l speaking `version` (PKT_V311, PKT_V5),
 * with no Maximum Packet Size of its own. */
static inline void fx_conn(conn_t *c, loop_t *l, uint8_t version)
{
    c->loop = l;
    c->version = version;
    c->state = CONN_ACTIVE;
    c->peer_max_packet = UINT32_MAX;
}

#endif

/*
 * Unit tests for the TLS write pass of broker/conn.c over a connection's
 * out-batch, with no sockets: a server tls_t and an OpenSSL client on
 * memory BIOs (tests/tls_pair.h) shake hands in process, with
 * certificates made in a temp dir for this run (tests/pki.h). The client
 * decrypts what a pass wrote, so each test checks the bytes and what the
 * pass released.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/alias_int.h"
#include "broker/auth_int.h"
#include "broker/broker_int.h"
#include "broker/chunk_int.h"
#include "broker/conn_int.h"
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
#include "common/xmalloc.h"
#include "tests/tls_pair.h"

static char g_dir[64]; /* the run's certificates */

static int group_setup(void **state)
{
    (void)state;
    log_set_level(LOG_ERROR);
    strcpy(g_dir, "/tmp/uvmq-conn-tls-unit-XXXXXX");
    return pki_set_create(g_dir);
}

static int group_teardown(void **state)
{
    (void)state;
    pki_set_remove(g_dir);
    return 0;
}

typedef struct conn_fixture_s {
    pair_t p;
    broker_config_t cfg;
    broker_t b;
    loop_t l;
    conn_t c;
} conn_fixture_t;

static void conn_setup(conn_fixture_t *f)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(pair_open(&f->p, g_dir, NULL, NULL), 0);
    broker_config_init(&f->cfg);
    f->b.cfg = &f->cfg;
    f->l.b = &f->b;
    f->c.loop = &f->l;
    f->c.version = PKT_V311;
    f->c.state = CONN_ACTIVE;
    f->c.peer_max_packet = UINT32_MAX;
}

static void conn_teardown(conn_fixture_t *f)
{
    if (f->c.out != NULL) conn__out_free(f->c.out);
    conn__outs_dispose(&f->l);
    conn_tls__loop_dispose(&f->l);
    broker_config_dispose(&f->cfg);
    pair_close(&f->p);
    msg_pool_drain();
}

static void the_conn_pass_releases_references_as_it_encrypts(void **state)
{
    conn_fixture_t f;
    static uint8_t payload[5000];
    uint8_t got[6000];
    pkt_t ping = {.type = PKT_PINGRESP};
    int closed = 0;
    (void)state;
    conn_setup(&f);
    memset(payload, 'p', sizeof payload);
    msg_t *m = msg_create("a/b", 3, payload, sizeof payload, NULL, 0, 0, 0, 1u << 20,
                          sizeof(msg_state_t));
    assert_int_equal(conn__send_pkt(&f.c, &ping), 0);
    assert_int_equal(conn__send_publish(&f.c, m, 0, 0, 0, 0, NULL, 0), 0);
    assert_int_equal(conn__send_pkt(&f.c, &ping), 0);
    out_batch_t *b = f.c.batch;
    size_t plain = b->bytes;
    assert_true(b->n >= 3);
    assert_int_equal(atomic_load(&m->refs), 2); /* ours and the batch's */
    const uint8_t *out = NULL;
    size_t len = 0;
    assert_int_equal(conn_tls__encrypt(&f.c, f.p.srv, &out, &len), 0);
    assert_int_equal(atomic_load(&m->refs), 1); /* released in the pass */
    assert_int_equal(b->n, 0);
    assert_int_equal(b->bytes, 0);
    assert_int_equal(f.c.unsent, 0); /* the caller writes it at once */
    assert_true(len > plain);
    long n = pair_client_read(&f.p, out, len, got, sizeof got, &closed);
    assert_int_equal(n, (long)plain);
    assert_memory_equal(got, "\xd0\x00", 2);
    assert_memory_equal(got + n - 2, "\xd0\x00", 2);
    assert_memory_equal(got + n - 2 - sizeof payload, payload, sizeof payload);
    msg_release(&m);
    conn_teardown(&f);
}

static void the_conn_pass_sends_close_notify_when_closing(void **state)
{
    conn_fixture_t f;
    uint8_t got[16];
    pkt_t ping = {.type = PKT_PINGRESP};
    int closed = 0;
    (void)state;
    conn_setup(&f);
    assert_int_equal(conn__send_pkt(&f.c, &ping), 0);
    const uint8_t *out = NULL;
    size_t len = 0;
    tls_shutdown(f.p.srv);
    assert_int_equal(conn_tls__encrypt(&f.c, f.p.srv, &out, &len), 0);
    assert_int_equal(pair_client_read(&f.p, out, len, got, sizeof got, &closed), 2);
    assert_int_equal(closed, 1);
    conn_teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_conn_pass_releases_references_as_it_encrypts),
        cmocka_unit_test(the_conn_pass_sends_close_notify_when_closing),
    };
    if (pair_count_openssl() != 0) return 1;
    return cmocka_run_group_tests_name("unit/broker/conn_tls", tests, group_setup, group_teardown);
}

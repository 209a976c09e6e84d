/*
 * Unit tests for bench/bench_connect.c, uvmq-bench's connect mode, against
 * a toy broker on the same loop (127.0.0.1, a port the kernel picks): it
 * answers each CONNECT with a CONNACK that accepts user "u0" and refuses
 * every other with return code 5, and closes a connection on DISCONNECT or
 * EOF. The slots must cycle, count accepted and refused CONNACKs apart,
 * name users u0, u1, u0, ... and wait between retries when nobody listens.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "bench/bench_client.c"
#include "bench/bench_connect.c"
#include "bench/bench_mqtt.c"
#include "bench/bench_stats.c"
#include "common/err.c"
#include "common/log.c"
#include "common/xmalloc.c"

#define RUN_MS 300

/* One accepted connection of the toy broker. */
typedef struct toy_conn_s {
    uv_tcp_t tcp;
    uint8_t in[512];
    size_t len;
} toy_conn_t;

typedef struct toy_s {
    uv_loop_t loop;
    uv_tcp_t server;
    uv_timer_t stop;
    bench_loop_t lp;
    bench_cx_t cx;
    uint64_t connects, accepted_u0, disconnects;
} toy_t;

static toy_t *toy;

static void toy_free(uv_handle_t *h)
{
    free(h->data);
}

static void toy_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    toy_conn_t *t = h->data;

    (void)hint;
    buf->base = (char *)t->in + t->len;
    buf->len = sizeof t->in - t->len;
}

/* Answers each whole packet: CONNACK to CONNECT, a close to DISCONNECT. */
static void toy_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    toy_conn_t *t = s->data;
    static const uint8_t ok[] = {0x20, 2, 0, 0}, refused[] = {0x20, 2, 0, 5};
    bench_pkt_t p;
    uv_buf_t b;
    int rc;

    (void)buf;
    if (n < 0) {
        uv_close((uv_handle_t *)s, toy_free);
        return;
    }
    t->len += (size_t)n;
    while ((rc = bench_mqtt_parse(t->in, t->len, 4, &p)) > 0) {
        if (p.type == BENCH_DISCONNECT) {
            toy->disconnects++;
            uv_close((uv_handle_t *)s, toy_free);
            return;
        }
        assert_int_equal(p.type, BENCH_CONNECT);
        toy->connects++;
        assert_int_equal(p.password_len, 2);
        assert_memory_equal(p.password, "pw", 2);
        int good = p.user_len == 2 && memcmp(p.user, "u0", 2) == 0;
        toy->accepted_u0 += (uint64_t)good;
        b = uv_buf_init((char *)(good ? ok : refused), 4);
        assert_int_equal(uv_try_write(s, &b, 1), 4);
        memmove(t->in, t->in + rc, t->len - (size_t)rc);
        t->len -= (size_t)rc;
    }
    assert_true(rc == 0);
}

static void toy_accept(uv_stream_t *server, int status)
{
    toy_conn_t *t = xcalloc(1, sizeof *t);

    assert_int_equal(status, 0);
    uv_tcp_init(server->loop, &t->tcp);
    t->tcp.data = t;
    assert_int_equal(uv_accept(server, (uv_stream_t *)&t->tcp), 0);
    uv_read_start((uv_stream_t *)&t->tcp, toy_alloc, toy_read);
}

/* RUN_MS over: what finish() does in bench.c, and the toy closes too. */
static void on_stop(uv_timer_t *t)
{
    toy->cx.counting = 0;
    bench_cx_stop(&toy->cx);
    bench_loop_close(&toy->lp);
    uv_close((uv_handle_t *)&toy->server, NULL);
    uv_close((uv_handle_t *)t, NULL);
}

/* Runs the connect mode against port (the toy's when listen) for RUN_MS. */
static void run_toy(int listen, long slots, long users)
{
    struct sockaddr_in a;
    int alen = sizeof a;
    bench_client_cfg_t cfg;
    bench_cx_cfg_t xc = {slots, NULL, "u", users};

    toy = xcalloc(1, sizeof *toy);
    assert_int_equal(uv_loop_init(&toy->loop), 0);
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(&toy->loop, &toy->server);
    assert_int_equal(uv_tcp_bind(&toy->server, (const struct sockaddr *)&a, 0), 0);
    uv_tcp_getsockname(&toy->server, (struct sockaddr *)&a, &alen);
    if (listen) assert_int_equal(uv_listen((uv_stream_t *)&toy->server, 128, toy_accept), 0);
    memset(&cfg, 0, sizeof cfg);
    memcpy(&cfg.addr, &a, sizeof a);
    cfg.proto = 4;
    cfg.clean = 1;
    cfg.keepalive = 60;
    cfg.max_packet = 1024;
    cfg.max_in_flight = 500;
    cfg.password = "pw";
    cfg.quiet_refusals = 1;
    bench_cx_callbacks(&cfg.cbs);
    bench_loop_init(&toy->lp, &toy->loop, &cfg);
    bench_cx_start(&toy->cx, &toy->lp, &xc);
    toy->cx.counting = 1;
    uv_timer_init(&toy->loop, &toy->stop);
    uv_timer_start(&toy->stop, on_stop, RUN_MS, 0);
    uv_run(&toy->loop, UV_RUN_DEFAULT);
}

static void toy_done(void)
{
    bench_loop_dispose(&toy->lp);
    bench_cx_dispose(&toy->cx);
    assert_int_equal(uv_loop_close(&toy->loop), 0); /* every handle closed */
    free(toy);
}

static void slots_cycle_and_count_accepted_and_refused_apart(void **state)
{
    uint64_t answered;

    run_toy(1, 4, 2);
    answered = toy->cx.ok + toy->cx.refused_total;
    assert_true(toy->cx.ok > 20);
    assert_int_equal(toy->cx.errors, 0);
    assert_int_equal(toy->cx.refused_total, toy->cx.refused[5]);
    assert_int_equal(toy->cx.hist.count, toy->cx.ok);
    /* users alternate u0, u1: the two counts differ by the CONNECTs in flight */
    assert_true(toy->cx.ok <= toy->cx.refused_total + 4 && toy->cx.refused_total <= toy->cx.ok + 4);
    assert_true(answered <= toy->connects && toy->connects <= toy->cx.started);
    /* every accepted CONNECT ended with a DISCONNECT (the last few may be cut off) */
    assert_true(toy->disconnects + 4 >= toy->accepted_u0);
    toy_done();
}

static void a_failed_connect_waits_before_its_slot_tries_again(void **state)
{
    run_toy(0, 2, 0); /* bound, not listening: every connect is refused */
    assert_int_equal(toy->cx.ok, 0);
    assert_int_equal(toy->cx.answered, 0);
    assert_true(toy->cx.errors >= 2);
    /* 2 slots, one try per RETRY_MS at most, in RUN_MS */
    assert_true(toy->cx.errors <= 2 * (RUN_MS / RETRY_MS + 1));
    toy_done();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(slots_cycle_and_count_accepted_and_refused_apart),
        cmocka_unit_test(a_failed_connect_waits_before_its_slot_tries_again),
    };
    return cmocka_run_group_tests_name("bench/connect", tests, NULL, NULL);
}

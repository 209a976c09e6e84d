/*
 * Unit tests for bench/bench_client.c's kernel receive timestamps: parsing
 * SCM_TIMESTAMPNS control messages, and the MSG_PEEK probe on a real
 * loopback TCP socket (the stamp of the head of the receive queue, nothing
 * consumed), plus the user-space fallback of set_rx_time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <unistd.h>
#include <cmocka.h>

#include "bench/bench_client.c"
#include "bench/bench_mqtt.c"
#include "common/err.c"
#include "common/log.c"
#include "common/xmalloc.c"

/* A connected loopback pair: cli is wrapped in c->tcp, srv stays raw. */
typedef struct pair_s {
    uv_loop_t loop;
    bench_loop_t lp;
    bench_conn_t c;
    int srv;
} pair_t;

static int tcp_pair(int *cli, int *srv)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);

    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
    *cli = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(*cli, (struct sockaddr *)&a, sizeof a), 0);
    *srv = accept(l, NULL, NULL);
    assert_true(*srv >= 0);
    close(l);
    return 0;
}

static int pair_setup(void **state)
{
    pair_t *p = xcalloc(1, sizeof *p);
    int cli;

    tcp_pair(&cli, &p->srv);
    assert_int_equal(uv_loop_init(&p->loop), 0);
    p->lp.cfg.rx_timestamps = 1;
    p->c.lp = &p->lp;
    assert_int_equal(uv_tcp_init(&p->loop, &p->c.tcp), 0);
    assert_int_equal(uv_tcp_open(&p->c.tcp, cli), 0);
    *state = p;
    return 0;
}

static int pair_teardown(void **state)
{
    pair_t *p = *state;

    uv_close((uv_handle_t *)&p->c.tcp, NULL);
    uv_run(&p->loop, UV_RUN_DEFAULT);
    uv_loop_close(&p->loop);
    close(p->srv);
    free(p);
    return 0;
}

static void cmsg_rx_ns_reads_scm_timestampns(void **state)
{
    union { char buf[CMSG_SPACE(sizeof(struct timespec))]; struct cmsghdr align; } ctl;
    struct timespec ts = {5, 7};
    struct msghdr msg;
    struct cmsghdr *cm;

    memset(&msg, 0, sizeof msg);
    memset(&ctl, 0, sizeof ctl);
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof ctl.buf;
    cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_TIMESTAMPNS;
    cm->cmsg_len = CMSG_LEN(sizeof ts);
    memcpy(CMSG_DATA(cm), &ts, sizeof ts);
    assert_int_equal(bench_cmsg_rx_ns(&msg), 5000000007ull);
    cm->cmsg_type = SCM_TIMESTAMP; /* microseconds: not ours */
    assert_int_equal(bench_cmsg_rx_ns(&msg), 0);
    msg.msg_controllen = 0;
    assert_int_equal(bench_cmsg_rx_ns(&msg), 0);
}

static void peek_finds_no_stamp_on_an_empty_socket(void **state)
{
    pair_t *p = *state;

    assert_int_equal(enable_rx_stamps(&p->c), 0);
    assert_int_equal(peek_rx_stamp(&p->c), 0);
}

static void peek_stamps_the_queued_data_and_consumes_nothing(void **state)
{
    pair_t *p = *state;
    uint64_t t0, t1, t2, s0, s1, s2;
    uv_os_fd_t fd;
    char buf[8];

    assert_int_equal(enable_rx_stamps(&p->c), 0);
    usleep(10000); /* the timestamp static key may be enabled lazily */
    t0 = bench_realtime_ns();
    assert_int_equal(write(p->srv, "a", 1), 1);
    t1 = bench_realtime_ns();
    usleep(20000);
    s0 = peek_rx_stamp(&p->c);
    assert_true(s0 >= t0 && s0 <= t1);
    assert_int_equal(write(p->srv, "b", 1), 1);
    t2 = bench_realtime_ns();
    usleep(20000);
    /* "b" may be coalesced into "a"'s skb, which then carries b's stamp */
    s1 = peek_rx_stamp(&p->c);
    assert_true(s1 >= t0 && s1 <= t2);
    assert_int_equal(uv_fileno((uv_handle_t *)&p->c.tcp, &fd), 0);
    assert_int_equal(read(fd, buf, 1), 1); /* the peeks consumed nothing */
    assert_int_equal(buf[0], 'a');
    s2 = peek_rx_stamp(&p->c);
    assert_true(s2 >= t1 && s2 <= t2);
}

static void rx_time_falls_back_to_now_and_counts_it(void **state)
{
    pair_t *p = *state;
    uint64_t t0 = bench_realtime_ns();

    p->c.rx_stamp_ns = 42;
    set_rx_time(&p->c);
    assert_int_equal(p->lp.rx_real_ns, 42);
    assert_int_equal(p->c.rx_stamp_ns, 0);
    set_rx_time(&p->c);
    assert_true(p->lp.rx_real_ns >= t0 && p->lp.rx_real_ns <= bench_realtime_ns());
    assert_int_equal(p->lp.rx_stamped, 1);
    assert_int_equal(p->lp.rx_unstamped, 1);
    p->lp.cfg.rx_timestamps = 0; /* user mode: the fallback is the method */
    set_rx_time(&p->c);
    assert_int_equal(p->lp.rx_unstamped, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cmsg_rx_ns_reads_scm_timestampns),
        cmocka_unit_test_setup_teardown(peek_finds_no_stamp_on_an_empty_socket, pair_setup,
                                        pair_teardown),
        cmocka_unit_test_setup_teardown(peek_stamps_the_queued_data_and_consumes_nothing,
                                        pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(rx_time_falls_back_to_now_and_counts_it, pair_setup,
                                        pair_teardown),
    };

    return cmocka_run_group_tests_name("bench/client", tests, NULL, NULL);
}

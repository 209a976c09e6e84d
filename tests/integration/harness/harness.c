/*
 * harness.c - runs a real uvmq process for integration tests and talks to
 * it over raw sockets or libmosquitto, with every wait bounded in time.
 *
 * The broker runs as a child process on a free 127.0.0.1 port with a temp
 * dir under /tmp holding its data dir, optional config file and log. Only
 * the pid we forked is ever signalled. Failures go through th_fail(), which
 * reports through cmocka; TH_TEST's teardown prints the broker log when the
 * test did not run to its end and fails it when the broker exits non-zero.
 */
#include "tests/integration/harness/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <mosquitto.h>

#define START_TIMEOUT_MS 10000
#define START_POLL_MS 20
#define STOP_TIMEOUT_MS 15000
#define START_ATTEMPTS 5
#define LOG_TAIL_LINES 150
#define MAX_TRACKED_FDS 64

/* Context of the running TH_TEST test, so teardown can clean up after a
 * failure that longjmp'd out of the test body. */
typedef struct run_state_s {
    th_ctx_t ctx;
    th_broker_t own; /* the broker, unless a shared one is in use */
    th_test_fn fn;
    bool finished; /* the test body returned normally */
} run_state_t;

static int g_fds[MAX_TRACKED_FDS];
static int g_n_fds;
static bool g_mosq_init;
static th_broker_t *g_shared; /* see th_share_broker */
static bool g_http;           /* see th_http_enable */

static void th_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Reports a failure through cmocka and leaves the test (longjmp). */
static void th_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_error("ERROR: ");
    vprint_error(fmt, ap);
    print_error("\n");
    va_end(ap);
    _fail(__FILE__, __LINE__);
    abort(); /* _fail does not return; keeps noreturn honest */
}

/* ---- time ---------------------------------------------------------------- */

/* Milliseconds on the monotonic clock. */
int64_t th_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps ms milliseconds (restarting after signals). */
void th_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- broker process ------------------------------------------------------ */

/* Returns a port the kernel just gave a socket bound to 127.0.0.1:0. The
 * socket is closed, so another process could take it before the broker
 * binds; th_broker_start retries on that. */
static uint16_t pick_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t alen = sizeof a;
    uint16_t port = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    if (port == 0)
        th_fail("cannot pick a free port: %s", strerror(errno));
    return port;
}

/* Writes text to path; fails the test on error. */
static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        th_fail("cannot write %s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
}

/* Writes the config json to path with @PORT2@ and @PORT3@ replaced by
 * b's extra ports. */
static void write_config(const th_broker_t *b, const char *path, const char *json)
{
    size_t cap = strlen(json) + 64, n = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    for (const char *p = json; *p != '\0' && n + 8 < cap;) {
        uint16_t port = strncmp(p, "@PORT2@", 7) == 0   ? b->port2
                        : strncmp(p, "@PORT3@", 7) == 0 ? b->port3
                                                        : 0;
        if (port != 0) {
            n += (size_t)snprintf(out + n, cap - n, "%u", (unsigned)port);
            p += 7;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
    write_file(path, out);
    free(out);
}

/* In the child: stdout/stderr to the log, no inherited fds, die with the
 * test process, then exec the broker. Never returns. */
static void exec_broker(const th_broker_t *b, const char *cfg_path)
{
    const char *bin = getenv("UVMQ_BIN");
    char port[8], hport[8], data[160];
    const char *argv[16];
    int n = 0;
    int log = open(b->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (log >= 0) {
        dup2(log, 1);
        dup2(log, 2);
    }
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    snprintf(port, sizeof port, "%u", (unsigned)b->port);
    snprintf(hport, sizeof hport, "%u", (unsigned)b->http_port);
    snprintf(data, sizeof data, "%s/data", b->dir);
    const char *fixed[] = {bin && *bin ? bin : "./build/uvmq",
                           "-p", port, "--http-port", hport, "-b",
                           "127.0.0.1", "--data-dir", data};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        argv[n++] = fixed[i];
    if (cfg_path != NULL) {
        argv[n++] = "-c";
        argv[n++] = cfg_path;
    }
    /* tests/run.sh runs the integration tests once per worker-loop count. */
    const char *threads = getenv("UVMQ_TEST_THREADS");
    if (threads != NULL && *threads != '\0') {
        argv[n++] = "--threads";
        argv[n++] = threads;
    }
    if (getenv("TH_BROKER_QUIET") == NULL)
        argv[n++] = "-v";
    argv[n] = NULL;
    execv(argv[0], (char *const *)argv);
    fprintf(stderr, "harness: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* Returns true once a TCP connect to the broker's port succeeds. */
static bool port_accepts(uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Forks the broker and waits (bounded) until it accepts. Returns 0 when
 * up, 1 if it exited early (e.g. port taken: the caller retries), and
 * fails the test if it neither came up nor exited in time. */
static int spawn_and_wait(th_broker_t *b, const char *cfg_path)
{
    int64_t deadline = th_now_ms() + START_TIMEOUT_MS;
    int status, rc = -1;
    fflush(NULL);
    b->pid = fork();
    if (b->pid < 0)
        th_fail("fork: %s", strerror(errno));
    if (b->pid == 0)
        exec_broker(b, cfg_path);
    while (rc == -1 && th_now_ms() < deadline) {
        if (port_accepts(b->port) && (b->http_port == 0 || port_accepts(b->http_port))) {
            rc = 0;
        } else if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
            b->pid = 0;
            rc = 1;
        } else {
            th_sleep_ms(START_POLL_MS);
        }
    }
    if (rc == -1) {
        th_broker_dump_log(b);
        th_broker_kill(b);
        th_fail("broker did not accept on port %u within %d ms",
                (unsigned)b->port, START_TIMEOUT_MS);
    }
    return rc;
}

void th_http_enable(bool on)
{
    g_http = on;
}

/* Starts the broker; see harness.h. */
void th_broker_start(th_broker_t *b, const char *extra_json)
{
    char cfg[160], data[160];
    const char *cfg_path = NULL;
    memset(b, 0, sizeof *b);
    snprintf(b->dir, sizeof b->dir, "/tmp/uvmq-it-XXXXXX");
    if (mkdtemp(b->dir) == NULL)
        th_fail("mkdtemp: %s", strerror(errno));
    snprintf(data, sizeof data, "%s/data", b->dir);
    snprintf(b->log_path, sizeof b->log_path, "%s/broker.log", b->dir);
    mkdir(data, 0700);
    if (extra_json != NULL) {
        snprintf(cfg, sizeof cfg, "%s/config.json", b->dir);
        cfg_path = cfg;
    }
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < START_ATTEMPTS; i++) {
        b->port = pick_port();
        b->http_port = g_http ? pick_port() : 0;
        b->port2 = pick_port();
        b->port3 = pick_port();
        if (cfg_path != NULL)
            write_config(b, cfg_path, extra_json);
        if (spawn_and_wait(b, cfg_path) == 0)
            return;
    }
    th_broker_dump_log(b);
    th_fail("broker exited at start %d times in a row (see log above)",
            START_ATTEMPTS);
}

/* nftw callback removing each entry of the temp dir, children first. */
static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* Waits up to ms for the broker to exit; returns its status as
 * th_broker_stop reports it, or -1 if it is still running. */
static int reap_within(th_broker_t *b, int ms)
{
    int64_t deadline = th_now_ms() + ms;
    int status, rc = -1;
    while (rc == -1 && th_now_ms() < deadline) {
        if (waitpid(b->pid, &status, WNOHANG) == b->pid)
            rc = WIFEXITED(status) ? WEXITSTATUS(status)
                                   : 128 + WTERMSIG(status);
        else
            th_sleep_ms(10);
    }
    return rc;
}

/* Ends the broker process: SIGTERM, bounded wait, SIGKILL. Returns the
 * status as th_broker_stop reports it; the temp dir stays. */
static int stop_process(th_broker_t *b)
{
    int rc = 0;
    if (b->pid > 0) {
        kill(b->pid, SIGTERM);
        rc = reap_within(b, STOP_TIMEOUT_MS);
        if (rc == -1) {
            fprintf(stderr, "# broker did not exit within %d ms of SIGTERM\n",
                    STOP_TIMEOUT_MS);
            th_broker_kill(b);
        }
        b->pid = 0;
        if (rc != 0) {
            fprintf(stderr, "# broker exit status %d after SIGTERM\n", rc);
            th_broker_dump_log(b);
        }
    }
    return rc;
}

/* Removes the broker's temp dir (unless TH_KEEP_TMP is set). */
static void remove_dir(th_broker_t *b)
{
    if (b->dir[0] != '\0' && getenv("TH_KEEP_TMP") == NULL)
        nftw(b->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    b->dir[0] = '\0';
}

/* Stops the broker; see harness.h. */
int th_broker_stop(th_broker_t *b)
{
    int rc = stop_process(b);
    remove_dir(b);
    return rc;
}

/* Stops the broker and returns its log; see harness.h. */
char *th_broker_stop_log(th_broker_t *b)
{
    int rc = stop_process(b);
    FILE *f = fopen(b->log_path, "r");
    char *log = NULL;
    long len = -1;
    if (f != NULL && fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0) {
        rewind(f);
        log = malloc((size_t)len + 1);
        if (log != NULL) log[fread(log, 1, (size_t)len, f)] = '\0';
    }
    if (f != NULL) fclose(f);
    remove_dir(b);
    if (log == NULL) th_fail("cannot read the broker log %s", b->log_path);
    if (rc != 0) {
        free(log);
        th_fail("broker exited with status %d", rc);
    }
    return log;
}

/* Counts needle in text; see harness.h. */
int th_count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* SIGKILLs the broker we started; see harness.h. */
void th_broker_kill(th_broker_t *b)
{
    int status;
    if (b->pid > 0) {
        kill(b->pid, SIGKILL);
        waitpid(b->pid, &status, 0);
        b->pid = 0;
    }
}

/* Signals the broker we started; see harness.h. */
void th_broker_signal(th_broker_t *b, int sig)
{
    if (b->pid <= 0 || kill(b->pid, sig) != 0)
        th_fail("cannot signal the broker (pid %d): not running", (int)b->pid);
}

/* Prints the last LOG_TAIL_LINES lines of the broker log; see harness.h. */
void th_broker_dump_log(const th_broker_t *b)
{
    static char buf[1 << 16];
    FILE *f = b->log_path[0] ? fopen(b->log_path, "r") : NULL;
    size_t n = 0;
    int lines = 0;
    char *p;
    if (f == NULL)
        return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0,
          SEEK_SET);
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (p = buf + n; p > buf && lines <= LOG_TAIL_LINES; p--)
        lines += p[-1] == '\n';
    fprintf(stderr, "# ---- broker log %s (tail) ----\n", b->log_path);
    for (char *line = strtok(p, "\n"); line; line = strtok(NULL, "\n"))
        fprintf(stderr, "#   %s\n", line);
    fprintf(stderr, "# ---- end of broker log ----\n");
}

/* ---- broker restarts on the same data dir ------------------------------- */

#define RESTART_SAME_PORT_TRIES 3
#define RESTART_RETRY_MS 300

/* Stops the broker, keeping its temp dir; see harness.h. */
int th_broker_stop_keep(th_broker_t *b)
{
    return stop_process(b);
}

/* Writes extra_json (if not NULL) as the config file, then returns the
 * config path to pass with -c, or NULL when there is no config file. */
static const char *config_for_run(const th_broker_t *b, const char *extra_json,
                                  char *cfg, size_t cap)
{
    struct stat st;
    if (b->dir[0] == '\0')
        th_fail("the broker's temp dir is gone (th_broker_stop ran?)");
    if (b->pid > 0)
        th_fail("broker pid %d is still running", (int)b->pid);
    snprintf(cfg, cap, "%s/config.json", b->dir);
    if (extra_json != NULL)
        write_file(cfg, extra_json);
    return stat(cfg, &st) == 0 ? cfg : NULL;
}

/* Restarts the broker on its temp dir; see harness.h. */
size_t th_broker_restart(th_broker_t *b, const char *extra_json)
{
    char cfg[160];
    const char *cfg_path = config_for_run(b, extra_json, cfg, sizeof cfg);
    size_t from = th_broker_log_size(b);
    for (int i = 0; i < RESTART_SAME_PORT_TRIES + START_ATTEMPTS; i++) {
        /* The same port first: clients of the test keep using it. */
        if (i >= RESTART_SAME_PORT_TRIES) {
            b->port = pick_port();
            if (b->http_port != 0) b->http_port = pick_port();
        }
        else if (i > 0)
            th_sleep_ms(RESTART_RETRY_MS);
        if (spawn_and_wait(b, cfg_path) == 0)
            return from;
    }
    th_broker_dump_log(b);
    th_fail("broker exited at restart %d times in a row (see log above)",
            RESTART_SAME_PORT_TRIES + START_ATTEMPTS);
}

/* Runs the broker expecting it to exit by itself; see harness.h. */
int th_broker_run_expect_exit(th_broker_t *b, const char *extra_json,
                              int timeout_ms, size_t *log_from)
{
    char cfg[160];
    const char *cfg_path = config_for_run(b, extra_json, cfg, sizeof cfg);
    int rc;
    if (log_from != NULL)
        *log_from = th_broker_log_size(b);
    fflush(NULL);
    signal(SIGPIPE, SIG_IGN);
    b->pid = fork();
    if (b->pid < 0)
        th_fail("fork: %s", strerror(errno));
    if (b->pid == 0)
        exec_broker(b, cfg_path);
    rc = reap_within(b, timeout_ms);
    if (rc == -1) {
        th_broker_dump_log(b);
        th_broker_kill(b);
        th_fail("broker still running %d ms after start; expected it to exit",
                timeout_ms);
    }
    b->pid = 0;
    return rc;
}

/* Size of the broker log; see harness.h. */
size_t th_broker_log_size(const th_broker_t *b)
{
    struct stat st;
    return stat(b->log_path, &st) == 0 ? (size_t)st.st_size : 0;
}

/* The log from offset `from`; see harness.h. */
char *th_broker_log(const th_broker_t *b, size_t from)
{
    size_t size = th_broker_log_size(b);
    size_t len = size > from ? size - from : 0, got = 0;
    char *text = malloc(len + 1);
    FILE *f = len > 0 ? fopen(b->log_path, "r") : NULL;
    assert_non_null(text);
    if (f != NULL && fseek(f, (long)from, SEEK_SET) == 0)
        got = fread(text, 1, len, f);
    if (f != NULL)
        fclose(f);
    text[got] = '\0';
    return text;
}

/* Waits for needle in the log; see harness.h. */
bool th_broker_wait_log(const th_broker_t *b, size_t from, const char *needle,
                        int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    bool found = false;
    for (;;) {
        char *text = th_broker_log(b, from);
        found = strstr(text, needle) != NULL;
        free(text);
        if (found || th_now_ms() >= deadline)
            break;
        th_sleep_ms(20);
    }
    return found;
}

/* Waits for the close of client id in the log; see harness.h. */
void th_broker_wait_closed(const th_broker_t *b, size_t from, const char *id)
{
    char needle[160];
    if (getenv("TH_BROKER_QUIET") != NULL) skip();
    snprintf(needle, sizeof needle, "closing client %s (", id);
    if (!th_broker_wait_log(b, from, needle, TH_WAIT_MS))
        th_fail("the broker did not close client %s within %d ms", id, TH_WAIT_MS);
}

/* The log after `from` holds needle once; see harness.h. */
void th_broker_logged_once(const th_broker_t *b, size_t from, const char *needle)
{
    if (!th_broker_wait_log(b, from, needle, TH_WAIT_MS))
        th_fail("no \"%s\" in the broker log", needle);
    char *log = th_broker_log(b, from);
    int n = th_count(log, needle);
    free(log);
    if (n != 1) th_fail("\"%s\" logged %d times, expected once", needle, n);
}

/* Path inside the data dir; see harness.h. */
void th_broker_data_path(const th_broker_t *b, const char *name, char *out,
                         size_t cap)
{
    int n = snprintf(out, cap, "%s/data%s%s", b->dir, *name ? "/" : "", name);
    if (n < 0 || (size_t)n >= cap)
        th_fail("data path of '%s' does not fit in %zu bytes", name, cap);
}

/* ---- TH_TEST fixtures ---------------------------------------------------- */

/* Makes TH_TEST tests use a group's broker; see harness.h. */
void th_share_broker(th_broker_t *b)
{
    g_shared = b;
}

/* Sets up one test running fn; starts its broker with json unless a
 * shared broker is in use. */
static int setup_with(void **state, th_test_fn fn, const char *json)
{
    run_state_t *rs = calloc(1, sizeof *rs);
    assert_non_null(rs);
    rs->fn = fn;
    *state = rs;
    g_n_fds = 0;
    rs->ctx.broker = g_shared != NULL ? g_shared : &rs->own;
    if (g_shared == NULL)
        th_broker_start(&rs->own, json);
    rs->ctx.port = rs->ctx.broker->port;
    return 0;
}

/* Starts the broker of one TH_TEST test; initial state is the test body. */
int th_setup(void **state)
{
    return setup_with(state, (th_test_fn)*state, NULL);
}

/* Starts the broker of one TH_TEST_CFG test with its config. */
int th_setup_cfg(void **state)
{
    const th_cfg_test_t *ct = *state;
    return setup_with(state, ct->fn, ct->json);
}

/* Runs the body of one TH_TEST test. */
void th_run(void **state)
{
    run_state_t *rs = *state;
    rs->fn(&rs->ctx);
    rs->finished = true;
}

/* Closes what the test left open and, unless the broker is shared, stops
 * it and fails unless it exited 0 (ASan makes a leaking broker exit
 * non-zero). A shared broker that died during the test also fails it. */
int th_teardown(void **state)
{
    run_state_t *rs = *state;
    int rc = 0, status;
    while (g_n_fds > 0)
        th_close(g_fds[g_n_fds - 1]);
    if (!rs->finished)
        th_broker_dump_log(rs->ctx.broker);
    if (g_shared == NULL) {
        rc = th_broker_stop(&rs->own);
    } else if (g_shared->pid <= 0 ||
               waitpid(g_shared->pid, &status, WNOHANG) == g_shared->pid) {
        g_shared->pid = 0; /* the shared broker died: never signal it */
        rc = -1;
    }
    free(rs);
    if (rc != 0)
        print_error("ERROR: broker exited with status %d\n", rc);
    return rc == 0 ? 0 : -1;
}

/* ---- raw sockets --------------------------------------------------------- */

/* Connects to 127.0.0.1:port; see harness.h. */
int th_connect(uint16_t port)
{
    return th_connect_rcvbuf(port, 0);
}

/* Connects with a receive buffer of rcvbuf bytes; see harness.h. */
int th_connect_rcvbuf(uint16_t port, int rcvbuf)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct timeval tv = {10, 0};
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0) th_fail("socket: %s", strerror(errno));
    th_track_fd(fd); /* closed by the teardown if a step below fails */
    if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) != 0)
        th_fail("SO_RCVBUF %d: %s", rcvbuf, strerror(errno));
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        th_fail("connect to 127.0.0.1:%u: %s", (unsigned)port, strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Tracks an fd for teardown; see harness.h. */
void th_track_fd(int fd)
{
    if (g_n_fds < MAX_TRACKED_FDS)
        g_fds[g_n_fds++] = fd;
}

/* Closes an fd from th_connect and forgets it. */
void th_close(int fd)
{
    for (int i = 0; i < g_n_fds; i++) {
        if (g_fds[i] == fd) {
            g_fds[i] = g_fds[--g_n_fds];
            break;
        }
    }
    close(fd);
}

/* Writes all bytes; returns 0 or -errno. */
int th_try_send(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    int rc = 0;
    while (len > 0 && rc == 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno != EINTR) {
            rc = -errno;
        }
    }
    return rc;
}

/* Writes all bytes or fails the test. */
void th_send(int fd, const void *buf, size_t len)
{
    int rc = th_try_send(fd, buf, len);
    if (rc != 0)
        th_fail("send of %zu bytes failed: %s", len, strerror(-rc));
}

/* Writes one byte per write, 1 ms apart. */
void th_send_slow(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        th_send(fd, p + i, 1);
        th_sleep_ms(1);
    }
}

/* Reads exactly n bytes before the deadline. Returns 0 when all arrived,
 * 1 if the peer closed (EOF or reset) first, -ETIMEDOUT, or -errno; *got
 * says how many bytes arrived. */
static int read_full(int fd, unsigned char *buf, size_t n, int64_t deadline,
                     size_t *got)
{
    int rc = 0;
    *got = 0;
    while (*got < n && rc == 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - th_now_ms();
        if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
            rc = -ETIMEDOUT;
            continue;
        }
        ssize_t r = recv(fd, buf + *got, n - *got, 0);
        if (r > 0)
            *got += (size_t)r;
        else if (r == 0 || errno == ECONNRESET)
            rc = 1;
        else if (errno != EINTR && errno != EAGAIN)
            rc = -errno;
    }
    return rc;
}

/* Prints bytes as hex (at most 64) as a TAP comment. */
void th_hexdump(const char *what, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    fprintf(stderr, "# %s (%zu bytes):", what, len);
    for (size_t i = 0; i < len && i < 64; i++)
        fprintf(stderr, " %02x", p[i]);
    fprintf(stderr, "%s\n", len > 64 ? " ..." : "");
}

/* Reads exactly len bytes and compares them with want. */
void th_expect(int fd, const void *want, size_t len, int timeout_ms)
{
    unsigned char *got = malloc(len + 1);
    size_t n;
    int rc;
    assert_non_null(got);
    rc = read_full(fd, got, len, th_now_ms() + timeout_ms, &n);
    if (rc != 0 || memcmp(got, want, len) != 0) {
        th_hexdump("expected", want, len);
        th_hexdump("received", got, n);
        free(got);
        th_fail("expected %zu bytes: %s", len,
                rc == 1 ? "connection closed early"
                : rc == -ETIMEDOUT ? "timed out"
                : rc != 0 ? strerror(-rc) : "bytes differ");
    }
    free(got);
}

/* Length of the fixed header starting at pkt (1 + varint bytes). */
size_t th_header_len(const unsigned char *pkt)
{
    size_t i = 1;
    while (i < 5 && (pkt[i] & 0x80))
        i++;
    return i + 1;
}

/* Packet identifier of a QoS>0 PUBLISH packet. */
uint16_t th_publish_id(const unsigned char *pkt)
{
    size_t h = th_header_len(pkt);
    size_t tlen = (size_t)pkt[h] << 8 | pkt[h + 1];
    return (uint16_t)(pkt[h + 2 + tlen] << 8 | pkt[h + 3 + tlen]);
}

/* Reads one whole packet; see harness.h. */
int th_try_read_packet(int fd, unsigned char *buf, size_t cap, int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    size_t got, i = 1, remlen = 0;
    int rc = cap < 5 ? -EMSGSIZE : read_full(fd, buf, 2, deadline, &got);
    /* Remaining length: a varint of at most 4 bytes, low 7 bits first. */
    while (rc == 0 && (buf[i] & 0x80)) {
        remlen |= (size_t)(buf[i] & 0x7f) << (7 * (i - 1));
        i++;
        rc = i > 4 ? -EPROTO : read_full(fd, buf + i, 1, deadline, &got);
    }
    if (rc == 0) {
        remlen |= (size_t)buf[i] << (7 * (i - 1));
        rc = i + 1 + remlen > cap ? -EMSGSIZE
             : read_full(fd, buf + i + 1, remlen, deadline, &got);
    }
    return rc == 0 ? (int)(i + 1 + remlen) : rc == 1 ? 0 : rc;
}

/* Reads one whole packet or fails the test. */
int th_read_packet(int fd, unsigned char *buf, size_t cap, int timeout_ms)
{
    int n = th_try_read_packet(fd, buf, cap, timeout_ms);
    if (n <= 0)
        th_fail("expected a packet within %d ms: %s", timeout_ms,
                n == 0 ? "connection closed" : strerror(-n));
    return n;
}

/* Reads a packet and checks its type nibble. */
int th_read_type(int fd, uint8_t type, unsigned char *buf, size_t cap,
                 int timeout_ms)
{
    int n = th_read_packet(fd, buf, cap, timeout_ms);
    if ((buf[0] & 0xf0) != type) {
        th_hexdump("received", buf, (size_t)n);
        th_fail("expected packet type 0x%02x, got 0x%02x", type, buf[0]);
    }
    return n;
}

static void fd_io_send(void *ctx, const void *buf, size_t len)
{
    th_send((int)(intptr_t)ctx, buf, len);
}

static int fd_io_read(void *ctx, unsigned char *buf, size_t cap)
{
    return th_read_packet((int)(intptr_t)ctx, buf, cap, TH_WAIT_MS);
}

/* th_io_t of a plain connection; see harness.h. */
th_io_t th_io_fd(int fd)
{
    return (th_io_t){.send = fd_io_send, .read_packet = fd_io_read,
                     .ctx = (void *)(intptr_t)fd};
}

/* Expects the peer to close with no bytes first. */
void th_expect_closed(int fd, int timeout_ms)
{
    unsigned char buf[256];
    size_t got;
    int rc = read_full(fd, buf, sizeof buf, th_now_ms() + timeout_ms, &got);
    if (rc != 1 || got != 0) {
        th_hexdump("received", buf, got);
        th_fail("expected the broker to close the connection within %d ms: %s",
                timeout_ms, got ? "bytes arrived instead"
                : rc == -ETIMEDOUT ? "still open" : strerror(-rc));
    }
}

/* Expects nothing at all for ms milliseconds. */
void th_expect_silence(int fd, int ms)
{
    unsigned char buf[256];
    size_t got;
    int rc = read_full(fd, buf, 1, th_now_ms() + ms, &got);
    if (rc != -ETIMEDOUT) {
        th_hexdump("received", buf, got);
        th_fail("expected silence for %d ms: %s", ms,
                rc == 1 ? "connection closed" : "bytes arrived");
    }
}

/* Expects a v5 DISCONNECT with `reason`, then the close. */
void th_expect_disconnect_v5(int fd, uint8_t reason, int timeout_ms)
{
    unsigned char buf[512];
    int n = th_read_type(fd, 0xe0, buf, sizeof buf, timeout_ms);
    size_t h = th_header_len(buf);
    uint8_t got = (size_t)n > h ? buf[h] : 0x00;
    if (got != reason) {
        th_hexdump("received", buf, (size_t)n);
        th_fail("expected DISCONNECT reason 0x%02x, got 0x%02x", reason, got);
    }
    th_expect_closed(fd, timeout_ms);
}

/* Size of the value of v5 property `id` at p (MQTT 5.0 section 2.2.2.2),
 * or 0 for an unknown identifier. Strings and binary data carry a 2-byte
 * length; a user property is two strings; 0x0B is a varint. */
static size_t prop_value_len(uint8_t id, const unsigned char *p, size_t left)
{
    size_t len = 0, s1;
    switch (id) {
    case 0x01: case 0x17: case 0x19: case 0x24: case 0x25: case 0x28:
    case 0x29: case 0x2A:
        len = 1;
        break;
    case 0x13: case 0x21: case 0x22: case 0x23:
        len = 2;
        break;
    case 0x02: case 0x11: case 0x18: case 0x27:
        len = 4;
        break;
    case 0x0B:
        while (len < left && len < 4 && (p[len] & 0x80))
            len++;
        len++;
        break;
    case 0x03: case 0x08: case 0x09: case 0x12: case 0x15: case 0x16:
    case 0x1A: case 0x1C: case 0x1F:
        len = left >= 2 ? 2 + ((size_t)p[0] << 8 | p[1]) : left + 1;
        break;
    case 0x26:
        s1 = left >= 2 ? 2 + ((size_t)p[0] << 8 | p[1]) : left;
        len = s1 + 2 <= left ? s1 + 2 + ((size_t)p[s1] << 8 | p[s1 + 1])
                             : left + 1;
        break;
    default:
        break;
    }
    return len;
}

/* Finds a v5 property; see harness.h. */
size_t th_v5_prop(const unsigned char *pkt, size_t n, size_t off, uint8_t id)
{
    size_t plen = 0, i = 0, found = 0, end;
    do {
        if (off + i >= n || i >= 4)
            th_fail("property length runs past the packet end");
        plen |= (size_t)(pkt[off + i] & 0x7f) << (7 * i);
    } while (pkt[off + i++] & 0x80);
    end = off + i + plen;
    if (end > n)
        th_fail("property length %zu runs past the packet end", plen);
    for (size_t p = off + i; p < end;) {
        uint8_t pid = pkt[p++];
        size_t vlen = prop_value_len(pid, pkt + p, end - p);
        if (vlen == 0 || p + vlen > end) {
            th_hexdump("packet", pkt, n);
            th_fail("bad or unknown property 0x%02x at offset %zu", pid, p - 1);
        }
        if (pid == id && found == 0)
            found = p;
        p += vlen;
    }
    return found;
}

/* Builds and sends a CONNECT, checks the CONNACK; see harness.h. */
int th_mqtt_open(uint16_t port, int version, const char *client_id,
                 uint8_t flags, uint16_t keepalive)
{
    unsigned char pkt[300], buf[512];
    size_t idlen = strlen(client_id), n = 2;
    int fd, len;
    assert_true(idlen < 200 && (version == 4 || version == 5));
    memcpy(pkt + n, "\x00\x04MQTT", 6);
    n += 6;
    pkt[n++] = (unsigned char)version;
    pkt[n++] = flags;
    pkt[n++] = (unsigned char)(keepalive >> 8);
    pkt[n++] = keepalive & 0xff;
    if (version == 5)
        pkt[n++] = 0x00; /* no properties */
    pkt[n++] = 0x00;
    pkt[n++] = (unsigned char)idlen;
    memcpy(pkt + n, client_id, idlen);
    n += idlen;
    pkt[0] = 0x10;                      /* CONNECT */
    pkt[1] = (unsigned char)(n - 2);    /* remaining length, < 128 */
    fd = th_connect(port);
    th_send(fd, pkt, n);
    len = th_read_type(fd, 0x20, buf, sizeof buf, TH_WAIT_MS);
    if (len < 4 || buf[3] != 0x00) {
        th_hexdump("CONNACK", buf, (size_t)len);
        th_fail("CONNECT of '%s' refused", client_id);
    }
    return fd;
}

/* ---- raw MQTT packets ---------------------------------------------------- */

/* Growing output of a packet builder: fails the test instead of
 * overflowing cap. */
typedef struct wbuf_s {
    unsigned char *p;
    size_t n, cap;
} wbuf_t;

/* Appends len bytes. */
static void put_bytes(wbuf_t *w, const void *src, size_t len)
{
    if (len > w->cap - w->n)
        th_fail("packet of more than %zu bytes does not fit", w->cap);
    if (len > 0)
        memcpy(w->p + w->n, src, len);
    w->n += len;
}

/* Appends one byte. */
static void put_u8(wbuf_t *w, unsigned v)
{
    unsigned char c = (unsigned char)v;
    put_bytes(w, &c, 1);
}

/* Appends a big-endian 16-bit integer. */
static void put_u16(wbuf_t *w, unsigned v)
{
    put_u8(w, (v >> 8) & 0xff);
    put_u8(w, v & 0xff);
}

/* Appends a big-endian 32-bit integer. */
static void put_u32(wbuf_t *w, uint32_t v)
{
    put_u16(w, v >> 16);
    put_u16(w, v & 0xffff);
}

/* Appends a length-prefixed string or binary value. */
static void put_str(wbuf_t *w, const void *s, size_t len)
{
    put_u16(w, (unsigned)len);
    put_bytes(w, s, len);
}

/* Appends a variable byte integer (MQTT 5.0 1.5.5: 7 bits a byte, low
 * bits first, high bit = more). */
static void put_varint(wbuf_t *w, size_t v)
{
    do {
        put_u8(w, (v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v > 0);
}

/* Writes the fixed header `first` + remaining length of the body already
 * built at out+5 and moves the body to follow it; returns the length. */
static size_t finish_packet(unsigned char *out, uint8_t first, size_t body)
{
    unsigned char hdr[5];
    wbuf_t h = {hdr, 0, sizeof hdr};
    put_u8(&h, first);
    put_varint(&h, body);
    memmove(out + h.n, out + 5, body);
    memcpy(out, hdr, h.n);
    return h.n + body;
}

/* Starts a body 5 bytes into out, leaving room for the fixed header. */
static wbuf_t body_of(unsigned char *out, size_t cap)
{
    if (cap < 5)
        th_fail("packet buffer of %zu bytes is too small", cap);
    return (wbuf_t){out + 5, 0, cap - 5};
}

/* The CONNECT's v5 property list: Session Expiry Interval if set. */
static void put_connect_props(wbuf_t *w, const th_connect_t *c)
{
    put_varint(w, c->session_expiry ? 5 : 0);
    if (c->session_expiry) {
        put_u8(w, 0x11);
        put_u32(w, c->session_expiry);
    }
}

/* Builds a CONNECT; see harness.h. */
size_t th_build_connect(unsigned char *out, size_t cap, const th_connect_t *c)
{
    wbuf_t w = body_of(out, cap);
    unsigned flags = (c->clean ? 0x02 : 0) |
                     (c->will_topic ? 0x04 | (unsigned)c->will_qos << 3 |
                                          (c->will_retain ? 0x20 : 0)
                                    : 0) |
                     (c->username ? 0x80 : 0) | (c->password ? 0x40 : 0);
    put_str(&w, "MQTT", 4);
    put_u8(&w, (unsigned)c->version);
    put_u8(&w, flags);
    put_u16(&w, c->keepalive);
    if (c->version == 5)
        put_connect_props(&w, c);
    put_str(&w, c->client_id, strlen(c->client_id));
    if (c->will_topic != NULL && c->version == 5) {
        put_varint(&w, c->will_delay ? 5 : 0); /* will properties */
        if (c->will_delay) {
            put_u8(&w, 0x18);
            put_u32(&w, c->will_delay);
        }
    }
    if (c->will_topic != NULL) {
        put_str(&w, c->will_topic, strlen(c->will_topic));
        put_str(&w, c->will_payload, strlen(c->will_payload));
    }
    if (c->username != NULL)
        put_str(&w, c->username, strlen(c->username));
    if (c->password != NULL)
        put_str(&w, c->password, strlen(c->password));
    return finish_packet(out, 0x10, w.n);
}

/* Builds a PUBLISH; see harness.h. */
size_t th_build_publish(unsigned char *out, size_t cap, int version,
                        const char *topic, int qos, bool retain, bool dup,
                        uint16_t id, const void *payload, size_t len)
{
    wbuf_t w = body_of(out, cap);
    uint8_t first = (uint8_t)(0x30 | (dup ? 0x08 : 0) | qos << 1 |
                              (retain ? 0x01 : 0));
    put_str(&w, topic, strlen(topic));
    if (qos > 0)
        put_u16(&w, id);
    if (version == 5)
        put_varint(&w, 0);
    put_bytes(&w, payload, len);
    return finish_packet(out, first, w.n);
}

/* Builds a SUBSCRIBE; see harness.h. */
size_t th_build_subscribe(unsigned char *out, size_t cap, int version,
                          uint16_t id, const char *filter, int qos)
{
    wbuf_t w = body_of(out, cap);
    put_u16(&w, id);
    if (version == 5)
        put_varint(&w, 0);
    put_str(&w, filter, strlen(filter));
    put_u8(&w, (unsigned)qos);
    return finish_packet(out, 0x82, w.n);
}

/* Reads a variable byte integer at pkt[*off] (at most 4 bytes, below n);
 * returns false if malformed. */
static bool get_varint(const unsigned char *pkt, size_t n, size_t *off,
                       size_t *v)
{
    size_t i = 0;
    *v = 0;
    do {
        if (*off >= n || i == 4)
            return false;
        *v |= (size_t)(pkt[*off] & 0x7f) << (7 * i++);
    } while (pkt[(*off)++] & 0x80);
    return true;
}

/* Parses a PUBLISH; see harness.h. */
bool th_parse_publish(const unsigned char *pkt, size_t n, int version,
                      th_publish_t *p)
{
    size_t off = 1, rem = 0, plen = 0;
    memset(p, 0, sizeof *p);
    if (n < 2 || (pkt[0] & 0xf0) != 0x30 || !get_varint(pkt, n, &off, &rem) ||
        off + rem != n || off + 2 > n)
        return false;
    p->qos = (pkt[0] >> 1) & 3;
    p->dup = (pkt[0] & 0x08) != 0;
    p->retain = (pkt[0] & 0x01) != 0;
    p->topic_len = (size_t)pkt[off] << 8 | pkt[off + 1];
    p->topic = (const char *)pkt + off + 2;
    off += 2 + p->topic_len;
    if (p->qos > 0 && off + 2 <= n)
        p->id = (uint16_t)(pkt[off] << 8 | pkt[off + 1]);
    off += p->qos > 0 ? 2 : 0;
    if (version == 5 && (!get_varint(pkt, n, &off, &plen) || plen > n - off))
        return false;
    off += plen;
    if (p->qos == 3 || off > n)
        return false;
    p->payload = pkt + off;
    p->len = n - off;
    return true;
}

/* Connects with a built CONNECT; see harness.h. */
int th_mqtt_connect(uint16_t port, const th_connect_t *c,
                    bool *session_present)
{
    int fd = th_connect(port);
    th_mqtt_connect_on(fd, c, session_present);
    return fd;
}

/* th_mqtt_connect on a connection the test opened; see harness.h. */
void th_mqtt_connect_on(int fd, const th_connect_t *c, bool *session_present)
{
    unsigned char pkt[1024], buf[512];
    size_t n = th_build_connect(pkt, sizeof pkt, c);
    int len;
    th_send(fd, pkt, n);
    len = th_read_type(fd, 0x20, buf, sizeof buf, TH_WAIT_MS);
    if (len < 4 || buf[3] != 0x00) {
        th_hexdump("CONNACK", buf, (size_t)len);
        th_fail("CONNECT of '%s' refused", c->client_id);
    }
    if (session_present != NULL)
        *session_present = (buf[2] & 0x01) != 0;
}

/* Subscribes one filter and checks the SUBACK; see harness.h. */
void th_mqtt_subscribe(int fd, int version, uint16_t id, const char *filter,
                       int qos)
{
    unsigned char pkt[512], buf[256];
    size_t n = th_build_subscribe(pkt, sizeof pkt, version, id, filter, qos);
    size_t off = 1, rem = 0, plen = 0;
    int len;
    th_send(fd, pkt, n);
    len = th_read_type(fd, 0x90, buf, sizeof buf, TH_WAIT_MS);
    bool ok = get_varint(buf, (size_t)len, &off, &rem) && off + 2 <= (size_t)len &&
              (buf[off] << 8 | buf[off + 1]) == id;
    off += 2;
    if (ok && version == 5)
        ok = get_varint(buf, (size_t)len, &off, &plen);
    off += plen;
    if (!ok || off >= (size_t)len || buf[off] != qos) {
        th_hexdump("SUBACK", buf, (size_t)len);
        th_fail("SUBACK for %s (id %u) does not grant QoS %d", filter,
                (unsigned)id, qos);
    }
}

/* Sends a 4-byte acknowledgement; see harness.h. */
void th_send_ack(int fd, uint8_t first, uint16_t id)
{
    unsigned char ack[] = {first, 0x02, (unsigned char)(id >> 8),
                           (unsigned char)(id & 0xff)};
    th_send(fd, ack, sizeof ack);
}

/* Reads and checks an acknowledgement; see harness.h. */
uint8_t th_expect_ack(int fd, uint8_t first, uint16_t id, int timeout_ms)
{
    unsigned char buf[256];
    int n = th_read_packet(fd, buf, sizeof buf, timeout_ms);
    if (buf[0] != first || n < 4 || (buf[2] << 8 | buf[3]) != id) {
        th_hexdump("received", buf, (size_t)n);
        th_fail("expected ack 0x%02x for packet id %u", first, (unsigned)id);
    }
    return n >= 5 ? buf[4] : 0x00;
}

/* Sends DISCONNECT and waits for the close; see harness.h. */
void th_mqtt_disconnect(int fd)
{
    static const unsigned char disconnect[] = {0xe0, 0x00};
    unsigned char buf[256];
    int64_t deadline = th_now_ms() + TH_WAIT_MS;
    if (th_try_send(fd, disconnect, sizeof disconnect) == 0) {
        /* Packets still in flight may arrive before the close. */
        while (th_now_ms() < deadline &&
               th_try_read_packet(fd, buf, sizeof buf, 100) != 0) {
        }
    }
    th_close(fd);
}

/* ---- libmosquitto clients ----------------------------------------------- */

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
    (void)m;
    ((th_mosq_t *)obj)->connack_rc = rc;
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n,
                         const int *granted)
{
    (void)m, (void)mid, (void)n, (void)granted;
    ((th_mosq_t *)obj)->n_subacks++;
}

static void on_publish(struct mosquitto *m, void *obj, int mid)
{
    (void)m, (void)mid;
    ((th_mosq_t *)obj)->n_published++;
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc)
{
    (void)m, (void)rc;
    ((th_mosq_t *)obj)->disconnected = true;
}

/* See harness.h. */
void *th_grow(void *v, int *cap, int n, size_t size)
{
    if (n < *cap) return v;
    *cap = *cap ? *cap * 2 : 64;
    v = realloc(v, (size_t)*cap * size);
    assert_non_null(v);
    return v;
}

/* Appends a copy of the message to the client's list. */
static void on_message(struct mosquitto *m, void *obj,
                       const struct mosquitto_message *msg)
{
    th_mosq_t *c = obj;
    th_msg_t *e;
    (void)m;
    c->msgs = th_grow(c->msgs, &c->cap_msgs, c->n_msgs, sizeof *c->msgs);
    e = &c->msgs[c->n_msgs++];
    e->topic = strdup(msg->topic);
    e->payload = malloc((size_t)msg->payloadlen + 1);
    assert_true(e->topic != NULL && e->payload != NULL);
    memcpy(e->payload, msg->payload, (size_t)msg->payloadlen);
    e->payload[msg->payloadlen] = '\0';
    e->len = msg->payloadlen;
    e->qos = msg->qos;
    e->retain = msg->retain;
}

/* atexit hook pairing the one mosquitto_lib_init. */
static void mosq_cleanup(void)
{
    mosquitto_lib_cleanup();
}

/* Creates a libmosquitto client with the harness's callbacks. */
static void mosq_new(th_mosq_t *c, const char *id, int version, bool clean)
{
    if (!g_mosq_init && mosquitto_lib_init() == MOSQ_ERR_SUCCESS)
        atexit(mosq_cleanup);
    g_mosq_init = true;
    memset(c, 0, sizeof *c);
    c->connack_rc = -1;
    c->m = mosquitto_new(id, clean, c);
    assert_non_null(c->m);
    mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION,
                         version == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
    mosquitto_connect_callback_set(c->m, on_connect);
    mosquitto_subscribe_callback_set(c->m, on_subscribe);
    mosquitto_publish_callback_set(c->m, on_publish);
    mosquitto_disconnect_callback_set(c->m, on_disconnect);
    mosquitto_message_callback_set(c->m, on_message);
}

/* Connects a libmosquitto client, TLS optional; see harness.h. */
int th_mosq_try_open(th_mosq_t *c, uint16_t port, const char *id, int version,
                     bool clean, const th_tls_t *tls, const char *username)
{
    int64_t deadline = th_now_ms() + TH_WAIT_MS;
    int rc = MOSQ_ERR_SUCCESS;
    mosq_new(c, id, version, clean);
    if (tls != NULL)
        rc = mosquitto_tls_set(c->m, tls->ca, NULL, tls->cert, tls->key, NULL);
    if (rc != MOSQ_ERR_SUCCESS)
        th_fail("mosquitto_tls_set '%s': %s", id, mosquitto_strerror(rc));
    if (username != NULL)
        mosquitto_username_pw_set(c->m, username, "secret");
    rc = mosquitto_connect(c->m, "127.0.0.1", port, 60);
    if (rc != MOSQ_ERR_SUCCESS)
        return -1; /* e.g. a TLS handshake refused during the connect */
    while (c->connack_rc == -1 && !c->disconnected && th_now_ms() < deadline) {
        if (mosquitto_loop(c->m, 10, 1) != MOSQ_ERR_SUCCESS)
            break; /* the broker closed the connection */
    }
    return c->connack_rc;
}

/* Creates and connects a libmosquitto client; see harness.h. */
void th_mosq_open(th_mosq_t *c, uint16_t port, const char *id, int version,
                  bool clean)
{
    th_mosq_open_tls(c, port, id, version, clean, NULL);
}

/* Creates and connects a libmosquitto client over TLS; see harness.h. */
void th_mosq_open_tls(th_mosq_t *c, uint16_t port, const char *id, int version,
                      bool clean, const th_tls_t *tls)
{
    int rc = th_mosq_try_open(c, port, id, version, clean, tls, NULL);
    if (rc != 0)
        th_fail("client '%s': CONNACK %d (-1 = none within %d ms)", id, rc, TH_WAIT_MS);
}

/* Subscribes and waits for the SUBACK; see harness.h. */
void th_mosq_subscribe(th_mosq_t *c, const char *filter, int qos)
{
    int64_t deadline = th_now_ms() + TH_WAIT_MS;
    int want = c->n_subacks + 1;
    int rc = mosquitto_subscribe(c->m, NULL, filter, qos);
    if (rc != MOSQ_ERR_SUCCESS)
        th_fail("mosquitto_subscribe %s: %s", filter, mosquitto_strerror(rc));
    while (c->n_subacks < want && th_now_ms() < deadline)
        mosquitto_loop(c->m, 10, 1);
    if (c->n_subacks < want)
        th_fail("no SUBACK for %s within %d ms", filter, TH_WAIT_MS);
}

/* Queues a PUBLISH; see harness.h. */
void th_mosq_publish(th_mosq_t *c, const char *topic, const void *payload,
                     int len, int qos, bool retain)
{
    int rc = mosquitto_publish(c->m, NULL, topic, len, payload, qos, retain);
    if (rc != MOSQ_ERR_SUCCESS)
        th_fail("mosquitto_publish %s: %s", topic, mosquitto_strerror(rc));
}

/* Runs the network loop of c for about ms milliseconds. */
void th_mosq_loop_for(th_mosq_t *c, int ms)
{
    int64_t deadline = th_now_ms() + ms;
    while (th_now_ms() < deadline)
        mosquitto_loop(c->m, 5, 1);
}

/* See harness.h. */
int th_mosq_loop_until(struct mosquitto *a, struct mosquitto *b, const int *counter, int n,
                       int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    while (*counter < n && th_now_ms() < deadline) {
        mosquitto_loop(a, 1, 1);
        if (b != NULL)
            mosquitto_loop(b, 1, 1);
    }
    return *counter;
}

static int loop_until(th_mosq_t *a, th_mosq_t *b, const int *counter, int n, int timeout_ms)
{
    return th_mosq_loop_until(a->m, b != NULL ? b->m : NULL, counter, n, timeout_ms);
}

/* Waits for `a` to hold n messages; see harness.h. */
void th_mosq_wait_msgs(th_mosq_t *a, th_mosq_t *b, int n, int timeout_ms)
{
    int got = loop_until(a, b, &a->n_msgs, n, timeout_ms);
    if (got < n)
        th_fail("expected %d messages within %d ms, got %d", n, timeout_ms,
                got);
}

/* Waits for `a` to complete n publishes; see harness.h. */
void th_mosq_wait_published(th_mosq_t *a, th_mosq_t *b, int n, int timeout_ms)
{
    int got = loop_until(a, b, &a->n_published, n, timeout_ms);
    if (got < n)
        th_fail("expected %d publishes acknowledged within %d ms, got %d", n,
                timeout_ms, got);
}

/* Disconnects and frees a client; see harness.h. */
void th_mosq_close(th_mosq_t *c)
{
    int64_t deadline = th_now_ms() + 1000;
    if (c->m != NULL && mosquitto_disconnect(c->m) == MOSQ_ERR_SUCCESS) {
        while (!c->disconnected && th_now_ms() < deadline)
            mosquitto_loop(c->m, 10, 1);
    }
    if (c->m != NULL)
        mosquitto_destroy(c->m);
    for (int i = 0; i < c->n_msgs; i++) {
        free(c->msgs[i].topic);
        free(c->msgs[i].payload);
    }
    free(c->msgs);
    memset(c, 0, sizeof *c);
}

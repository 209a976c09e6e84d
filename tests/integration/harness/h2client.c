/*
 * h2client.c - the tests' HTTP/2 client (see h2client.h): nghttp2's
 * client session, one blocking TCP socket, poll() with deadlines.
 */
#include "h2client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

#define MAX_STREAMS 4096

struct th_h2_s {
    int fd;
    nghttp2_session *ng;
    th_h2_resp_t *resp[MAX_STREAMS]; /* by (id - 1) / 2 */
    void *bodies[MAX_STREAMS];       /* request bodies, the same index */
    bool eof;
    bool goaway;
};

static void h2_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void h2_fail(const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fail_msg("%s", msg);
    abort(); /* not reached: fail_msg longjmps */
}

static th_h2_resp_t *resp_of(th_h2_t *h, int32_t id)
{
    if (id < 1 || (id & 1) == 0 || (id - 1) / 2 >= MAX_STREAMS) return NULL;
    th_h2_resp_t **slot = &h->resp[(id - 1) / 2];
    if (*slot == NULL) {
        *slot = calloc(1, sizeof **slot);
        (*slot)->id = id;
        (*slot)->body = calloc(1, 1);
    }
    return *slot;
}

/* ---- nghttp2 callbacks ---- */

static ssize_t on_send(nghttp2_session *ng, const uint8_t *data, size_t len, int flags,
                       void *ud)
{
    th_h2_t *h = ud;
    (void)ng;
    (void)flags;
    ssize_t n = send(h->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return NGHTTP2_ERR_WOULDBLOCK;
    if (n < 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
    return n;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t nlen, const uint8_t *val, size_t vlen, uint8_t flags, void *ud)
{
    th_h2_resp_t *r = resp_of(ud, f->hd.stream_id);
    (void)ng;
    (void)flags;
    if (r == NULL) return 0;
    if (nlen == 7 && memcmp(name, ":status", 7) == 0)
        r->status = atoi((const char *)val);
    else if (nlen == 12 && memcmp(name, "content-type", 12) == 0)
        snprintf(r->ctype, sizeof r->ctype, "%.*s", (int)vlen, (const char *)val);
    else if (nlen == 5 && memcmp(name, "allow", 5) == 0)
        snprintf(r->allow, sizeof r->allow, "%.*s", (int)vlen, (const char *)val);
    return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                   size_t len, void *ud)
{
    th_h2_resp_t *r = resp_of(ud, id);
    (void)ng;
    (void)flags;
    if (r == NULL) return 0;
    r->body = realloc(r->body, r->len + len + 1);
    memcpy(r->body + r->len, data, len);
    r->len += len;
    r->body[r->len] = '\0';
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    th_h2_t *h = ud;
    (void)ng;
    if (f->hd.type == NGHTTP2_GOAWAY) h->goaway = true;
    if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        th_h2_resp_t *r = resp_of(h, f->hd.stream_id);
        if (r != NULL) r->ended = true;
    }
    return 0;
}

static int on_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    th_h2_resp_t *r = resp_of(ud, id);
    (void)ng;
    if (r != NULL && !r->ended) {
        r->reset = true;
        r->reset_code = code;
    }
    return 0;
}

/* ---- connection ---- */

th_h2_t *th_h2_open(uint16_t port, bool slow_reader)
{
    th_h2_t *h = calloc(1, sizeof *h);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    int one = 1;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    h->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (h->fd < 0 || connect(h->fd, (struct sockaddr *)&a, sizeof a) != 0)
        h2_fail("h2: cannot connect to port %u: %s", (unsigned)port, strerror(errno));
    setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    th_track_fd(h->fd);
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    nghttp2_option_new(&opt);
    if (slow_reader) nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_session_client_new2(&h->ng, cb, h, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_settings_entry s[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, slow_reader ? 1024 : 1u << 20},
    };
    nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, s, 2);
    if (!slow_reader)
        nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0, 1 << 24);
    nghttp2_session_send(h->ng);
    return h;
}

/* A request body: a heap copy its data source walks (th_h2_close frees
 * it: nghttp2 never frees a data source). */
typedef struct body_src_s {
    uint8_t *p;
    size_t len, off;
} body_src_t;

static ssize_t read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *s, void *ud)
{
    body_src_t *src = s->ptr;
    size_t n = src->len - src->off < len ? src->len - src->off : len;
    (void)ng;
    (void)id;
    (void)ud;
    memcpy(buf, src->p + src->off, n);
    src->off += n;
    if (src->off == src->len) *flags |= NGHTTP2_DATA_FLAG_EOF; /* freed at close */
    return (ssize_t)n;
}

static nghttp2_nv mknv(const char *name, const char *value)
{
    nghttp2_nv v = {(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                    NGHTTP2_NV_FLAG_NONE};
    return v;
}

int32_t th_h2_request(th_h2_t *h, const char *method, const char *path,
                      const char *const *hdrs, const void *body, size_t len)
{
    nghttp2_nv nv[40];
    size_t n = 0;
    nghttp2_data_provider prd = {.read_callback = read_body};
    nv[n++] = mknv(":method", method);
    nv[n++] = mknv(":scheme", "http");
    nv[n++] = mknv(":authority", "127.0.0.1");
    nv[n++] = mknv(":path", path);
    for (size_t i = 0; hdrs != NULL && hdrs[i] != NULL && n < 40; i += 2)
        nv[n++] = mknv(hdrs[i], hdrs[i + 1]);
    if (body != NULL) {
        body_src_t *src = calloc(1, sizeof *src);
        src->p = malloc(len + 1);
        memcpy(src->p, body, len);
        src->len = len;
        prd.source.ptr = src;
    }
    int32_t id = nghttp2_submit_request(h->ng, NULL, nv, n, body != NULL ? &prd : NULL, NULL);
    if (id < 0) h2_fail("h2: submit_request: %s", nghttp2_strerror(id));
    (void)resp_of(h, id);
    if (body != NULL && (id - 1) / 2 < MAX_STREAMS) h->bodies[(id - 1) / 2] = prd.source.ptr;
    nghttp2_session_send(h->ng);
    return id;
}

void th_h2_cancel(th_h2_t *h, int32_t id)
{
    nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    nghttp2_session_send(h->ng);
}

/* Reads what is there within ms (one poll) into the session. */
static void pump_once(th_h2_t *h, int ms)
{
    struct pollfd p = {.fd = h->fd, .events = POLLIN};
    uint8_t buf[16384];
    if (h->eof) {
        th_sleep_ms(ms);
        return;
    }
    if (nghttp2_session_want_write(h->ng)) nghttp2_session_send(h->ng);
    if (poll(&p, 1, ms) <= 0) return;
    ssize_t n = recv(h->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        h->eof = true;
        return;
    }
    if (n > 0 && nghttp2_session_mem_recv(h->ng, buf, (size_t)n) < 0) h->eof = true;
    nghttp2_session_send(h->ng);
}

void th_h2_pump(th_h2_t *h, int ms)
{
    int64_t end = th_now_ms() + ms;
    while (th_now_ms() < end) pump_once(h, (int)(end - th_now_ms()) > 20 ? 20 : 1);
}

th_h2_resp_t *th_h2_wait(th_h2_t *h, int32_t id, int timeout_ms)
{
    int64_t end = th_now_ms() + timeout_ms;
    th_h2_resp_t *r = resp_of(h, id);
    while (!r->ended && !r->reset && !h->eof && th_now_ms() < end) pump_once(h, 20);
    return r;
}

int th_h2_count(th_h2_t *h, int32_t id, const char *needle)
{
    return th_count(resp_of(h, id)->body, needle);
}

bool th_h2_wait_body(th_h2_t *h, int32_t id, const char *needle, int n, int timeout_ms)
{
    int64_t end = th_now_ms() + timeout_ms;
    while (th_h2_count(h, id, needle) < n && !h->eof && th_now_ms() < end) pump_once(h, 20);
    return th_h2_count(h, id, needle) >= n;
}

bool th_h2_wait_closed(th_h2_t *h, int timeout_ms, bool *got_goaway)
{
    int64_t end = th_now_ms() + timeout_ms;
    while (!h->eof && th_now_ms() < end) pump_once(h, 20);
    if (got_goaway != NULL) *got_goaway = h->goaway;
    return h->eof;
}

int th_h2_fd(th_h2_t *h)
{
    return h->fd;
}

void th_h2_close(th_h2_t *h)
{
    if (h == NULL) return;
    nghttp2_session_del(h->ng);
    th_close(h->fd);
    for (size_t i = 0; i < MAX_STREAMS; i++) {
        th_h2_resp_free(h->resp[i]);
        body_src_t *b = h->bodies[i];
        if (b != NULL) free(b->p);
        free(b);
    }
    free(h);
}

void th_h2_resp_free(th_h2_resp_t *r)
{
    if (r == NULL) return;
    free(r->body);
    free(r);
}

th_h2_resp_t *th_h2_get(uint16_t port, const char *method, const char *path,
                        const char *const *hdrs, const void *body, size_t len)
{
    th_h2_t *h = th_h2_open(port, false);
    int32_t id = th_h2_request(h, method, path, hdrs, body, len);
    th_h2_resp_t *r = th_h2_wait(h, id, TH_WAIT_MS);
    th_h2_resp_t *copy = malloc(sizeof *copy);
    *copy = *r;
    copy->body = malloc(r->len + 1);
    memcpy(copy->body, r->body, r->len + 1);
    th_h2_close(h);
    return copy;
}

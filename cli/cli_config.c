/*
 * cli_config.c - uvmq's flags and JSON config file into a broker_config_t.
 *
 * One table (settings[]) names every JSON key with its kind, field and
 * range; the file reader and the flag parser both check values against it,
 * so a limit is written once. Messages name the file and key ("uvmq.json:
 * \"port\" must be ...") or the flag ("--port: must be ..."), and nothing
 * here exits or prints: main does that with the returned message.
 */
#include "cli/cli_config.h"

#include <cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "common/xmalloc.h"

/* Largest integer a JSON number (an IEEE double) carries exactly: 2^53.
 * The 64-bit byte limits stop there; 8 PiB is ample. */
#define JSON_MAX_EXACT 9007199254740992ull

/* K_BOOL: an int field, true or false; K_TRIBOOL also takes null (-1).
 * K_TOPIC: a string field holding a topic name prefix (no + or #), or
 * null (NULL: the feature is off). K_LISTENERS: the "listeners" array
 * (apply_listeners). */
enum kind { K_UINT, K_STRING, K_BOOL, K_TRIBOOL, K_TOPIC, K_LEVEL, K_DURABILITY, K_STRATEGY,
            K_LISTENERS };

/* One setting: its JSON key, how it is typed, where it lives in
 * broker_config_t, and for K_UINT its byte width and inclusive range. */
struct setting {
    const char *key;
    enum kind kind;
    size_t off;
    size_t width;
    uint64_t min, max;
};

#define FIELD(f)       offsetof(broker_config_t, f), sizeof(((broker_config_t *)0)->f)
#define NUM(f, lo, hi) #f, K_UINT, FIELD(f), lo, hi

static const struct setting settings[] = {
    {"bind", K_STRING, FIELD(bind), 0, 0},
    {NUM(port, 1, 65535)},
    {NUM(http_port, 0, 65535)},
    {NUM(http_max_streams, 1, 65535)},
    {NUM(http_idle_timeout, 1, 86400)},
    {"data_dir", K_STRING, FIELD(data_dir), 0, 0},
    {NUM(threads, 0, 1024)},
    {"allow_anonymous", K_TRIBOOL, FIELD(allow_anonymous), 0, 0},
    {"password_file", K_STRING, FIELD(password_file), 0, 0},
    {"acl_file", K_STRING, FIELD(acl_file), 0, 0},
    {NUM(auth_cache_size, 0, 1048576)},
    {NUM(auth_cache_ttl, 1, 86400)},
    {NUM(max_auth_pending, 1, 65535)},
    {"throttle_publishers", K_BOOL, FIELD(throttle_publishers), 0, 0},
    {NUM(session_shards, 1, 4096)},
    {"shared_strategy", K_STRATEGY, FIELD(shared_strategy), 0, 0},
    /* 268,435,455 is the largest Remaining Length four varint bytes hold. */
    {NUM(max_packet_size, 2, 268435455)},
    /* A CONNECT with a client id, user name, password and will takes some
     * room; 64 bytes is the least that leaves any. */
    {NUM(max_connect_size, 64, 268435455)},
    /* Receive Maximum 0 is a Protocol Error (MQTT 5.0 section 3.2.2.3.3). */
    {NUM(max_inflight, 1, 65535)},
    {NUM(max_queued_messages, 1, UINT32_MAX)},
    {NUM(max_queued_bytes, 1, JSON_MAX_EXACT)},
    {NUM(max_out_bytes, 1, JSON_MAX_EXACT)},
    {NUM(max_keepalive, 1, 65535)},
    {NUM(max_connections, 0, UINT32_MAX)},
    {NUM(max_topic_levels, 1, 65535)},
    /* The server must accept client ids of 1..23 bytes [MQTT-3.1.3-5]. */
    {NUM(max_client_id_len, 23, 65535)},
    /* At most 65535 packet ids can await PUBREL at once. */
    {NUM(max_inbound_qos2, 1, 65535)},
    {NUM(connect_timeout_ms, 1, UINT32_MAX)},
    {"durability", K_DURABILITY, FIELD(durability), 0, 0},
    {NUM(batch_ms, 1, 60000)},
    {NUM(max_session_expiry, 0, UINT32_MAX)},
    /* 0 = no cap; otherwise at least 1 MiB (the schema and a few rows). */
    {NUM(max_db_bytes, 0, JSON_MAX_EXACT)},
    /* 0 = off; at most a day between $SYS updates. */
    {NUM(sys_interval, 0, 86400)},
    /* Topic Alias Maximum is a two-byte integer (3.2.2.3.8). */
    {NUM(topic_alias_max, 0, 65535)},
    {"response_information_prefix", K_TOPIC, FIELD(response_information_prefix), 0, 0},
    {"log_level", K_LEVEL, FIELD(log_level), 0, 0},
    {"listeners", K_LISTENERS, FIELD(listeners), 0, 0},
};

#define N_SETTINGS (sizeof settings / sizeof settings[0])

/* Indexed by enum log_level. */
static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* Long-only options get codes above any character. */
enum { OPT_HTTP_PORT = 256, OPT_DATA_DIR, OPT_THREADS };

static const struct option long_opts[] = {
    {"port", required_argument, NULL, 'p'},
    {"http-port", required_argument, NULL, OPT_HTTP_PORT},
    {"bind", required_argument, NULL, 'b'},
    {"data-dir", required_argument, NULL, OPT_DATA_DIR},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"config", required_argument, NULL, 'c'},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

/* Flag values as given (borrowed from argv), applied after the file. */
struct flags {
    const char *config;
    const char *port, *http_port, *bind, *data_dir, *threads;
    int verbose;
};

/* Writes "prefix: message" into err; returns rc so callers can return it. */
static int fail(int rc, char *err, size_t errlen, const char *prefix, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int fail(int rc, char *err, size_t errlen, const char *prefix, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(err, errlen, "%s: ", prefix);

    if (n >= 0 && (size_t)n < errlen) {
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static const struct setting *find_setting(const char *key)
{
    const struct setting *s = NULL;

    for (size_t i = 0; i < N_SETTINGS && s == NULL; i++)
        if (strcmp(settings[i].key, key) == 0) s = &settings[i];
    return s;
}

/* Stores v into the integer field s describes (v already range-checked). */
static void store_uint(broker_config_t *cfg, const struct setting *s, uint64_t v)
{
    char *p = (char *)cfg + s->off;
    uint16_t v16 = (uint16_t)v;
    uint32_t v32 = (uint32_t)v;

    switch (s->width) {
    case 2: memcpy(p, &v16, 2); break;
    case 4: memcpy(p, &v32, 4); break;
    default: memcpy(p, &v, 8); break;
    }
}

/* Replaces the string field s describes with a copy of v. */
static void store_string(broker_config_t *cfg, const struct setting *s, const char *v)
{
    char **p = (char **)((char *)cfg + s->off);

    free(*p);
    *p = xstrdup(v);
}

/* Describes a JSON value for an error message: "abc" quoted, 1.5, true,
 * null, an array, an object. */
static void describe(const cJSON *item, char *buf, size_t n)
{
    if (cJSON_IsString(item))
        snprintf(buf, n, "\"%.40s%s\"", item->valuestring,
                 strlen(item->valuestring) > 40 ? "..." : "");
    else if (cJSON_IsNumber(item))
        snprintf(buf, n, "%.15g", item->valuedouble);
    else if (cJSON_IsBool(item))
        snprintf(buf, n, "%s", cJSON_IsTrue(item) ? "true" : "false");
    else if (cJSON_IsNull(item))
        snprintf(buf, n, "null");
    else
        snprintf(buf, n, "%s", cJSON_IsArray(item) ? "an array" : "an object");
}

/* Applies one integer key: the number must be integral and in range. */
static int apply_uint(broker_config_t *cfg, const struct setting *s, const cJSON *item,
                      const char *path, char *err, size_t errlen)
{
    double d = cJSON_IsNumber(item) ? item->valuedouble : -1.0;
    /* Range first (NaN fails it), so the cast below is defined; then the
     * round trip rejects fractions such as 1.5. */
    int ok = cJSON_IsNumber(item) && d >= (double)s->min && d <= (double)s->max &&
             (double)(uint64_t)d == d;
    char got[64];

    if (!ok) {
        describe(item, got, sizeof got);
        return fail(UVMQ_ECONFIG, err, errlen, path, "\"%s\" must be an integer %llu..%llu (got %s)",
                    s->key, (unsigned long long)s->min, (unsigned long long)s->max, got);
    }
    store_uint(cfg, s, (uint64_t)d);
    return 0;
}

/* Indexed by the int a "durability" value stores (0 full, 1 batch). */
static const char *const durability_names[] = {"full", "batch"};
/* Indexed by enum share_strategy. */
static const char *const strategy_names[] = {"round_robin", "random", "sticky"};

/* Index of item's string in names[0..n), or -1 if it is none of them. */
static int parse_name(const char *const *names, size_t n, const cJSON *item)
{
    int found = -1;

    for (size_t i = 0; cJSON_IsString(item) && i < n; i++)
        if (strcmp(names[i], item->valuestring) == 0) found = (int)i;
    return found;
}

/* The names a K_LEVEL, K_DURABILITY or K_STRATEGY key takes (*n of
 * them) and how an error message lists them. */
static const char *const *names_of(enum kind k, size_t *n, const char **list)
{
    if (k == K_LEVEL) {
        *n = sizeof level_names / sizeof level_names[0];
        *list = "\"error\", \"warn\", \"info\" or \"debug\"";
        return level_names;
    }
    if (k == K_STRATEGY) {
        *n = sizeof strategy_names / sizeof strategy_names[0];
        *list = "\"round_robin\", \"random\" or \"sticky\"";
        return strategy_names;
    }
    *n = sizeof durability_names / sizeof durability_names[0];
    *list = "\"full\" or \"batch\"";
    return durability_names;
}

/* Applies a key whose value is one of a fixed list of names, storing its
 * index into the int field (log_level, durability, shared_strategy). */
static int apply_named(broker_config_t *cfg, const struct setting *s, const cJSON *item,
                       const char *path, char *err, size_t errlen)
{
    size_t n = 0;
    const char *list = NULL;
    const char *const *names = names_of(s->kind, &n, &list);
    int v = parse_name(names, n, item);
    char got[64];

    if (v >= 0) {
        *(int *)((char *)cfg + s->off) = v;
        return 0;
    }
    describe(item, got, sizeof got);
    return fail(UVMQ_ECONFIG, err, errlen, path, "\"%s\" must be %s (got %s)", s->key, list,
                got);
}

/* Longest K_TOPIC value: room for a client id after it in one topic. */
#define TOPIC_PREFIX_MAX 1024

/* Applies a K_TOPIC key: a non-empty string of at most TOPIC_PREFIX_MAX
 * bytes without + or # (it starts topic names), or null (off). */
static int apply_topic(broker_config_t *cfg, const struct setting *s, const cJSON *item,
                       const char *path, char *err, size_t errlen)
{
    char **p = (char **)((char *)cfg + s->off);
    const char *v = cJSON_IsString(item) ? item->valuestring : NULL;
    char got[64];

    if (cJSON_IsNull(item)) {
        free(*p);
        *p = NULL;
        return 0;
    }
    if (v != NULL && v[0] != '\0' && strlen(v) <= TOPIC_PREFIX_MAX && strpbrk(v, "+#") == NULL) {
        store_string(cfg, s, v);
        return 0;
    }
    describe(item, got, sizeof got);
    return fail(UVMQ_ECONFIG, err, errlen, path,
                "\"%s\" must be null or a non-empty topic of at most %d bytes without + or # "
                "(got %s)",
                s->key, TOPIC_PREFIX_MAX, got);
}

/* Applies a string or boolean key. */
static int apply_other(broker_config_t *cfg, const struct setting *s, const cJSON *item,
                       const char *path, char *err, size_t errlen)
{
    char got[64];
    int rc = 0;

    describe(item, got, sizeof got);
    if (s->kind == K_LEVEL || s->kind == K_DURABILITY || s->kind == K_STRATEGY)
        rc = apply_named(cfg, s, item, path, err, errlen);
    else if (s->kind == K_TOPIC)
        rc = apply_topic(cfg, s, item, path, err, errlen);
    else if (s->kind == K_STRING && cJSON_IsString(item) && item->valuestring[0] != '\0')
        store_string(cfg, s, item->valuestring);
    else if (s->kind == K_STRING)
        rc = fail(UVMQ_ECONFIG, err, errlen, path, "\"%s\" must be a non-empty string (got %s)",
                  s->key, got);
    else if ((s->kind == K_BOOL && cJSON_IsBool(item)) ||
             (s->kind == K_TRIBOOL && (cJSON_IsBool(item) || cJSON_IsNull(item))))
        *(int *)((char *)cfg + s->off) = cJSON_IsNull(item) ? -1 : cJSON_IsTrue(item);
    else if (s->kind == K_BOOL)
        rc = fail(UVMQ_ECONFIG, err, errlen, path, "\"%s\" must be true or false (got %s)",
                  s->key, got);
    else
        rc = fail(UVMQ_ECONFIG, err, errlen, path, "\"%s\" must be true, false or null (got %s)",
                  s->key, got);
    return rc;
}

/* ---- "listeners" ---- */

/* TLS port when a listener gives none: IANA "secure-mqtt" for MQTT, the
 * common HTTPS alternative for HTTP/2 (443 needs privileges). */
#define DEFAULT_TLS_PORT 8883
#define DEFAULT_HTTPS_PORT 8443

/* Names of a listener's members and of its "tls" object's, for the
 * unknown / repeated key checks. */
static const char *const listener_keys[] = {"type", "bind", "port", "tls", "allow_anonymous"};
static const char *const tls_keys[] = {"cert", "key", "ca", "ciphers", "ciphersuites",
                                       "min_version", "require_certificate",
                                       "use_identity_as_username"};

/* Index of key in keys[0..n), or -1. */
static int key_index(const char *const *keys, size_t n, const char *key)
{
    int found = -1;

    for (size_t i = 0; i < n && found < 0; i++)
        if (strcmp(keys[i], key) == 0) found = (int)i;
    return found;
}

/* Checks that obj (at "where") is an object whose members are all in
 * keys[0..n), each once. */
static int check_members(const cJSON *obj, const char *where, const char *const *keys,
                         size_t n, const char *path, char *err, size_t errlen)
{
    unsigned char seen[16] = {0};
    char got[64];
    int rc = 0;

    if (!cJSON_IsObject(obj)) {
        describe(obj, got, sizeof got);
        return fail(UVMQ_ECONFIG, err, errlen, path, "\"%s\" must be an object (got %s)", where,
                    got);
    }
    for (const cJSON *m = obj->child; m != NULL && rc == 0; m = m->next) {
        int k = key_index(keys, n, m->string);
        if (k < 0)
            rc = fail(UVMQ_ECONFIG, err, errlen, path, "\"%s\": unknown key \"%.64s\"", where,
                      m->string);
        else if (seen[k]++)
            rc = fail(UVMQ_ECONFIG, err, errlen, path, "\"%s\": key \"%s\" appears twice", where,
                      m->string);
    }
    return rc;
}

/* Copies member key of obj, a non-empty string, into *out (replacing it);
 * absent leaves *out alone. */
static int member_string(const cJSON *obj, const char *where, const char *key, char **out,
                         const char *path, char *err, size_t errlen)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, key);
    char got[64];

    if (m == NULL) return 0;
    if (!cJSON_IsString(m) || m->valuestring[0] == '\0') {
        describe(m, got, sizeof got);
        return fail(UVMQ_ECONFIG, err, errlen, path, "\"%s.%s\" must be a non-empty string (got %s)",
                    where, key, got);
    }
    free(*out);
    *out = xstrdup(m->valuestring);
    return 0;
}

/* Reads member key of obj, true or false, into *out; absent leaves it. */
static int member_bool(const cJSON *obj, const char *where, const char *key, int *out,
                       const char *path, char *err, size_t errlen)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, key);
    char got[64];

    if (m == NULL) return 0;
    if (!cJSON_IsBool(m)) {
        describe(m, got, sizeof got);
        return fail(UVMQ_ECONFIG, err, errlen, path, "\"%s.%s\" must be true or false (got %s)",
                    where, key, got);
    }
    *out = cJSON_IsTrue(m);
    return 0;
}

/* Reads member key of obj, one of names[0..n), as its index into *out. */
static int member_named(const cJSON *obj, const char *where, const char *key,
                        const char *const *names, size_t n, int *out, const char *path,
                        char *err, size_t errlen)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, key);
    int v = m != NULL ? parse_name(names, n, m) : 0;
    char got[64], list[96] = "";

    if (m == NULL) return 0;
    if (v >= 0) {
        *out = v;
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s\"%s\"",
                 i == 0 ? "" : i + 1 == n ? " or " : ", ", names[i]);
    describe(m, got, sizeof got);
    return fail(UVMQ_ECONFIG, err, errlen, path, "\"%s.%s\" must be %s (got %s)", where, key,
                list, got);
}

/* Indexed by enum listener_kind. */
static const char *const listener_types[] = {"mqtt", "http"};
/* Indexed by (min_version - TLS_MIN_1_2). */
static const char *const tls_versions[] = {"1.2", "1.3"};

/* Reads listeners[i].tls into l->tls. */
static int apply_tls(listener_config_t *l, const cJSON *obj, const char *where,
                     const char *path, char *err, size_t errlen)
{
    tls_config_t *t = &l->tls;
    int v = t->min_version - TLS_MIN_1_2;
    int rc = check_members(obj, where, tls_keys, sizeof tls_keys / sizeof tls_keys[0], path,
                           err, errlen);

    if (rc == 0) rc = member_string(obj, where, "cert", &t->cert, path, err, errlen);
    if (rc == 0) rc = member_string(obj, where, "key", &t->key, path, err, errlen);
    if (rc == 0) rc = member_string(obj, where, "ca", &t->ca, path, err, errlen);
    if (rc == 0) rc = member_string(obj, where, "ciphers", &t->ciphers, path, err, errlen);
    if (rc == 0)
        rc = member_string(obj, where, "ciphersuites", &t->ciphersuites, path, err, errlen);
    if (rc == 0)
        rc = member_named(obj, where, "min_version", tls_versions, 2, &v, path, err, errlen);
    if (rc == 0)
        rc = member_bool(obj, where, "require_certificate", &t->require_certificate, path, err,
                         errlen);
    if (rc == 0)
        rc = member_bool(obj, where, "use_identity_as_username", &t->use_identity_as_username,
                         path, err, errlen);
    t->min_version = TLS_MIN_1_2 + v;
    if (rc == 0 && (t->cert == NULL || t->key == NULL))
        rc = fail(UVMQ_ECONFIG, err, errlen, path, "\"%s.%s\" is required", where,
                  t->cert == NULL ? "cert" : "key");
    l->has_tls = 1;
    return rc;
}

/* Reads the port of a listener: an integer 1..65535. */
static int listener_port(listener_config_t *l, const cJSON *obj, const char *where,
                         const char *path, char *err, size_t errlen)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, "port");
    double d = cJSON_IsNumber(m) ? m->valuedouble : -1.0;
    char got[64];

    if (m == NULL) return 0;
    if (!cJSON_IsNumber(m) || d < 1 || d > 65535 || (double)(int)d != d) {
        describe(m, got, sizeof got);
        return fail(UVMQ_ECONFIG, err, errlen, path,
                    "\"%s.port\" must be an integer 1..65535 (got %s)", where, got);
    }
    l->port = (uint16_t)d;
    return 0;
}

/* Reads one element of "listeners" (at index i) into a new listener. */
static int apply_listener(broker_config_t *cfg, const cJSON *obj, size_t i, const char *path,
                          char *err, size_t errlen)
{
    listener_config_t *l = broker_config_add_listener(cfg);
    const cJSON *tls = NULL;
    char where[48], tls_where[64];
    int rc;

    snprintf(where, sizeof where, "listeners[%zu]", i);
    snprintf(tls_where, sizeof tls_where, "%s.tls", where);
    rc = check_members(obj, where, listener_keys, sizeof listener_keys / sizeof listener_keys[0],
                       path, err, errlen);
    if (rc == 0)
        rc = member_named(obj, where, "type", listener_types,
                          sizeof listener_types / sizeof listener_types[0], &l->kind, path, err,
                          errlen);
    if (rc == 0) rc = member_string(obj, where, "bind", &l->bind, path, err, errlen);
    if (rc == 0) rc = listener_port(l, obj, where, path, err, errlen);
    if (rc == 0)
        rc = member_bool(obj, where, "allow_anonymous", &l->allow_anonymous, path, err, errlen);
    if (rc == 0 && (tls = cJSON_GetObjectItemCaseSensitive(obj, "tls")) != NULL)
        rc = apply_tls(l, tls, tls_where, path, err, errlen);
    if (rc == 0 && l->has_tls && l->port == 0)
        l->port = l->kind == LISTENER_HTTP ? DEFAULT_HTTPS_PORT : DEFAULT_TLS_PORT;
    /* Like the top-level bind: "localhost" is 127.0.0.1, not looked up. */
    if (rc == 0 && l->bind != NULL && strcmp(l->bind, "localhost") == 0) {
        free(l->bind);
        l->bind = xstrdup("127.0.0.1");
    }
    return rc;
}

/* Applies "listeners": an array of listener objects, replacing any
 * listeners cfg had. */
static int apply_listeners(broker_config_t *cfg, const cJSON *item, const char *path, char *err,
                           size_t errlen)
{
    const cJSON *e;
    size_t i = 0;
    char got[64];
    int rc = 0;

    if (!cJSON_IsArray(item)) {
        describe(item, got, sizeof got);
        return fail(UVMQ_ECONFIG, err, errlen, path, "\"listeners\" must be an array (got %s)",
                    got);
    }
    cJSON_ArrayForEach(e, item)
    {
        if (rc == 0) rc = apply_listener(cfg, e, i++, path, err, errlen);
    }
    return rc;
}

/* Applies every member of the top-level object; stops at the first error.
 * A key may appear once: JSON leaves duplicates undefined. */
static int apply_object(broker_config_t *cfg, const cJSON *root, const char *path, char *err,
                        size_t errlen)
{
    unsigned char seen[N_SETTINGS] = {0};
    const cJSON *item;
    int rc = 0;

    for (item = root->child; item != NULL && rc == 0; item = item->next) {
        const struct setting *s = find_setting(item->string);

        if (s == NULL)
            rc = fail(UVMQ_ECONFIG, err, errlen, path, "unknown key \"%.64s\"", item->string);
        else if (seen[s - settings]++)
            rc = fail(UVMQ_ECONFIG, err, errlen, path, "key \"%s\" appears twice", s->key);
        else if (s->kind == K_UINT)
            rc = apply_uint(cfg, s, item, path, err, errlen);
        else if (s->kind == K_LISTENERS)
            rc = apply_listeners(cfg, item, path, err, errlen);
        else
            rc = apply_other(cfg, s, item, path, err, errlen);
    }
    return rc;
}

/* Reads the whole file at path into a NUL-terminated buffer the caller
 * frees. Returns 0 or UVMQ_EIO with a message. */
static int read_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;
    int rc = 0;

    if (f == NULL) return fail(UVMQ_EIO, err, errlen, path, "%s", strerror(errno));
    buf = xmalloc(CLI_CONFIG_MAX_FILE + 1);
    n = fread(buf, 1, CLI_CONFIG_MAX_FILE + 1, f);
    if (ferror(f))
        rc = fail(UVMQ_EIO, err, errlen, path, "%s", strerror(errno));
    else if (n > CLI_CONFIG_MAX_FILE)
        rc = fail(UVMQ_EIO, err, errlen, path, "larger than %d bytes", CLI_CONFIG_MAX_FILE);
    fclose(f);
    if (rc != 0) {
        free(buf);
        buf = NULL;
    } else {
        buf[n] = '\0';
    }
    *out = buf;
    *len = n;
    return rc;
}

/* Writes a syntax error naming the line, column and byte offset of pos. */
static int syntax_error(const char *text, const char *pos, const char *path, char *err,
                        size_t errlen)
{
    size_t off = (size_t)(pos - text);
    size_t line = 1, col = 1;

    for (size_t i = 0; i < off; i++) {
        col = text[i] == '\n' ? 1 : col + 1;
        line += text[i] == '\n';
    }
    return fail(UVMQ_ECONFIG, err, errlen, path,
                "JSON syntax error near line %zu, column %zu (byte %zu)", line, col, off);
}

/* Reads the JSON object at path into cfg. See cli_config.h. */
int cli_config_load_file(broker_config_t *cfg, const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    const char *end = NULL;
    cJSON *root = NULL;
    int rc = read_file(path, &text, &len, err, errlen);

    if (rc == 0) {
        /* require_null_terminated: trailing bytes after the object are an
         * error too, reported at their offset. */
        root = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
        if (root == NULL)
            rc = syntax_error(text, end != NULL ? end : text, path, err, errlen);
        else if (!cJSON_IsObject(root))
            rc = fail(UVMQ_ECONFIG, err, errlen, path, "the top level must be a JSON object");
        else
            rc = apply_object(cfg, root, path, err, errlen);
    }
    cJSON_Delete(root);
    free(text);
    free(cfg->config_file); /* for the listener checks' messages */
    cfg->config_file = xstrdup(path);
    return rc;
}

/* Parses a decimal flag value for setting key and stores it. Digits only:
 * no sign, no spaces, no hex. */
static int apply_uint_flag(broker_config_t *cfg, const char *flag, const char *key, const char *val,
                           char *err, size_t errlen)
{
    const struct setting *s = find_setting(key);
    char *end = NULL;
    unsigned long long v = 0;
    int ok = val[0] >= '0' && val[0] <= '9';

    errno = 0;
    if (ok) v = strtoull(val, &end, 10);
    ok = ok && errno == 0 && *end == '\0' && v >= s->min && v <= s->max;
    if (!ok)
        return fail(UVMQ_ECONFIG, err, errlen, flag, "must be an integer %llu..%llu (got %.40s)",
                    (unsigned long long)s->min, (unsigned long long)s->max, val);
    store_uint(cfg, s, v);
    return 0;
}

/* Stores a string flag value; empty is refused. */
static int apply_string_flag(broker_config_t *cfg, const char *flag, const char *key,
                             const char *val, char *err, size_t errlen)
{
    if (val[0] == '\0') return fail(UVMQ_ECONFIG, err, errlen, flag, "must not be empty");
    store_string(cfg, find_setting(key), val);
    return 0;
}

/* Applies the collected flags over cfg, in a fixed order. */
static int apply_flags(broker_config_t *cfg, const struct flags *fl, char *err, size_t errlen)
{
    int rc = 0;

    if (rc == 0 && fl->port) rc = apply_uint_flag(cfg, "--port", "port", fl->port, err, errlen);
    if (rc == 0 && fl->http_port)
        rc = apply_uint_flag(cfg, "--http-port", "http_port", fl->http_port, err, errlen);
    if (rc == 0 && fl->threads)
        rc = apply_uint_flag(cfg, "--threads", "threads", fl->threads, err, errlen);
    if (rc == 0 && fl->bind) rc = apply_string_flag(cfg, "--bind", "bind", fl->bind, err, errlen);
    if (rc == 0 && fl->data_dir)
        rc = apply_string_flag(cfg, "--data-dir", "data_dir", fl->data_dir, err, errlen);
    if (rc == 0 && fl->verbose) cfg->log_level = LOG_DEBUG;
    return rc;
}

/* Writes the message for getopt's '?': an unknown short option (optopt),
 * an unknown or ambiguous long one (optopt 0, the word is argv[optind - 1]),
 * or a value given to a flag that takes none (--verbose=1: optopt is the
 * flag's own letter). Returns UVMQ_EINVAL. */
static int bad_option(char **argv, char *err, size_t errlen)
{
    int rc;

    if (optopt == 'v' || optopt == 'h' || optopt == 'V')
        rc = fail(UVMQ_EINVAL, err, errlen, argv[optind - 1], "takes no value");
    else if (optopt != 0)
        rc = fail(UVMQ_EINVAL, err, errlen, "unknown option", "-%c", optopt);
    else
        rc = fail(UVMQ_EINVAL, err, errlen, "unknown option", "%s", argv[optind - 1]);
    return rc;
}

/* Records one getopt result in fl or *action; returns UVMQ_EINVAL with a
 * message for an unknown option or a missing value. */
static int take_option(int opt, char **argv, struct flags *fl, cli_action_t *action, char *err,
                       size_t errlen)
{
    int rc = 0;

    switch (opt) {
    case 'p': fl->port = optarg; break;
    case OPT_HTTP_PORT: fl->http_port = optarg; break;
    case 'b': fl->bind = optarg; break;
    case OPT_DATA_DIR: fl->data_dir = optarg; break;
    case OPT_THREADS: fl->threads = optarg; break;
    case 'c': fl->config = optarg; break;
    case 'v': fl->verbose = 1; break;
    case 'h': *action = CLI_HELP; break;
    case 'V': *action = *action == CLI_HELP ? CLI_HELP : CLI_VERSION; break;
    case ':': rc = fail(UVMQ_EINVAL, err, errlen, argv[optind - 1], "missing value"); break;
    default: rc = bad_option(argv, err, errlen); break;
    }
    return rc;
}

/* Runs getopt_long over argv into fl and *action. */
static int collect_flags(int argc, char **argv, struct flags *fl, cli_action_t *action, char *err,
                         size_t errlen)
{
    int rc = 0;
    int opt;

    optind = 0; /* glibc: 0 re-initialises the scanner, so tests may call us repeatedly */
    opterr = 0; /* we write the message, getopt stays quiet */
    while (rc == 0 && (opt = getopt_long(argc, argv, ":p:b:c:vhV", long_opts, NULL)) != -1)
        rc = take_option(opt, argv, fl, action, err, errlen);
    if (rc == 0 && optind < argc)
        rc = fail(UVMQ_EINVAL, err, errlen, "unexpected argument", "%s", argv[optind]);
    return rc;
}

/* Parses argv over cfg: the -c file, then the flags. See cli_config.h. */
int cli_parse_args(int argc, char **argv, broker_config_t *cfg, cli_action_t *action, char *err,
                   size_t errlen)
{
    struct flags fl = {0};
    int rc;

    *action = CLI_RUN;
    rc = collect_flags(argc, argv, &fl, action, err, errlen);
    if (rc == 0 && *action == CLI_RUN && fl.config != NULL)
        rc = cli_config_load_file(cfg, fl.config, err, errlen);
    if (rc == 0 && *action == CLI_RUN) rc = apply_flags(cfg, &fl, err, errlen);
    /* The listener takes numeric addresses only; "localhost" is documented
     * as 127.0.0.1 rather than resolved. */
    if (rc == 0 && cfg->bind != NULL && strcmp(cfg->bind, "localhost") == 0)
        store_string(cfg, find_setting("bind"), "127.0.0.1");
    return rc;
}

/* Prints the usage text with the built-in defaults to out. */
void cli_usage(FILE *out)
{
    broker_config_t d;

    broker_config_init(&d);
    fprintf(out,
            "Usage: uvmq [options]\n"
            "       uvmq passwd [-H TYPE] [-c | -D] [-b] FILE USER [PASSWORD]\n"
            "\n"
            "MQTT 3.1.1/5.0 broker. Settings come from the defaults, then the JSON\n"
            "config file (-c), then the flags below; see docs/configuration.md.\n"
            "`uvmq passwd` manages a mosquitto password file (uvmq passwd --help).\n"
            "\n"
            "  -c, --config FILE   JSON config file (default: none)\n"
            "  -p, --port N        MQTT TCP port, 1..65535 (default: %u)\n"
            "      --http-port N   HTTP/2 h2c port, 0 = off (default: %u)\n"
            "  -b, --bind ADDR     listen address, IPv4, IPv6 or localhost (default: %s)\n"
            "      --data-dir DIR  data directory (default: %s)\n"
            "      --threads N     worker loops, 0 = one per core (default: %u)\n"
            "  -v, --verbose       log at debug level (default: %s)\n"
            "  -h, --help          print this help and exit\n"
            "  -V, --version       print the version and exit\n",
            (unsigned)d.port, (unsigned)d.http_port, d.bind, d.data_dir, d.threads,
            level_names[d.log_level]);
    broker_config_dispose(&d);
}

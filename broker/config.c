/*
 * config.c - broker_config_t defaults, disposal and cross-setting checks.
 *
 * The defaults here are the ones broker.h and docs/configuration.md list;
 * change all three together. cli/cli_config.c checks each value's type and
 * range as it reads it; broker_config_check is the last gate before
 * broker_create and holds the rules that span settings, chiefly: a listener
 * on a non-loopback address needs an explicit allow_anonymous, and a TLS
 * listener's files must load (they are loaded once here, so a missing key
 * is a configuration error, exit 2, not a start-up failure).
 */
#include "broker/broker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "common/xmalloc.h"
#include "broker/access_int.h"
#include "broker/config_int.h"
#include "broker/listener_int.h"

/* The largest Remaining Length a fixed header can encode (MQTT 3.1.1
 * section 2.2.3 and 5.0 section 1.5.5: four varint bytes, 268,435,455). */
#define MQTT_MAX_PACKET 268435455u

/* Upper bound for "threads": far above any core count we expect, low enough
 * that a typo cannot ask for a million loops. */
#define MAX_THREADS 1024u

/* Smallest database cap: room for the schema and some rows (1 MiB). */
#define MIN_DB_BYTES (1024u * 1024u)

/* Fills c with the documented defaults. Strings are xstrdup'd and owned by
 * c until broker_config_dispose. */
void broker_config_init(broker_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->bind = xstrdup("127.0.0.1");
    c->port = 1883;
    c->http_port = 8080;
    c->http_max_streams = 100;
    c->http_idle_timeout = 60;
    c->protocols[LISTENER_MQTT] = &mqtt_transport; /* others: the program's */
    c->data_dir = xstrdup("./data");
    c->threads = 0;
    c->allow_anonymous = -1;
    c->auth_cache_size = 1024;
    c->auth_cache_ttl = 300;
    c->max_auth_pending = 64;
    c->max_packet_size = 16u * 1024 * 1024;
    c->max_connect_size = 64u * 1024;
    c->max_inflight = 256;
    c->max_queued_messages = 1000;
    c->max_queued_bytes = 64u * 1024 * 1024;
    c->max_out_bytes = 8u * 1024 * 1024;
    c->max_keepalive = 65535;
    c->max_connections = 0;
    c->max_topic_levels = 128;
    c->max_client_id_len = 65535;
    c->max_inbound_qos2 = 65535;
    c->connect_timeout_ms = 10000;
    c->throttle_publishers = 1;
    c->session_shards = 64;
    c->shared_strategy = SHARE_ROUND_ROBIN;
    c->durability = 0;
    c->batch_ms = 10;
    c->max_session_expiry = 0;
    c->max_db_bytes = 0;
    c->sys_interval = 10; /* mosquitto's default */
    c->topic_alias_max = 10;
    c->response_information_prefix = xstrdup("resp");
    c->log_level = LOG_INFO;
}

/* Frees the strings of one listener. */
static void listener_dispose(listener_config_t *l)
{
    free(l->bind);
    free(l->tls.cert);
    free(l->tls.key);
    free(l->tls.ca);
    free(l->tls.ciphers);
    free(l->tls.ciphersuites);
}

/* Frees the strings and listeners c owns and NULLs them; c may be disposed
 * twice. */
void broker_config_dispose(broker_config_t *c)
{
    for (size_t i = 0; i < c->n_listeners; i++)
        listener_dispose(&c->listeners[i]);
    free(c->listeners);
    free(c->bind);
    free(c->data_dir);
    free(c->config_file);
    free(c->password_file);
    free(c->acl_file);
    free(c->response_information_prefix);
    c->response_information_prefix = NULL;
    c->listeners = NULL;
    c->n_listeners = 0;
    c->bind = NULL;
    c->data_dir = NULL;
    c->config_file = NULL;
}

/* Appends a listener with its defaults; see broker.h. */
listener_config_t *broker_config_add_listener(broker_config_t *c)
{
    listener_config_t *l;
    c->listeners = xrealloc(c->listeners, (c->n_listeners + 1) * sizeof *c->listeners);
    l = &c->listeners[c->n_listeners++];
    memset(l, 0, sizeof *l);
    l->kind = LISTENER_MQTT;
    l->tls.min_version = TLS_MIN_1_2;
    l->allow_anonymous = -1;
    return l;
}

/* Classifies an address string: 1 loopback, 0 other valid address, -1 not
 * an address. "localhost" counts as 127.0.0.1 (the CLI rewrites it so). */
static int addr_kind(const char *s)
{
    unsigned char a[sizeof(struct in6_addr)];
    int kind = -1;

    if (strcmp(s, "localhost") == 0) {
        kind = 1;
    } else if (inet_pton(AF_INET, s, a) == 1) {
        kind = a[0] == 127;
    } else if (inet_pton(AF_INET6, s, a) == 1) {
        const struct in6_addr *a6 = (const struct in6_addr *)a;
        /* ::ffff:127.x.y.z is IPv4 loopback seen through a v6 socket. */
        kind = IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a[12] == 127);
    }
    return kind;
}

int config__loopback(const char *bind)
{
    return addr_kind(bind) == 1;
}

int config__anonymous(const broker_config_t *c, int listener_setting, const char *bind)
{
    if (listener_setting >= 0) return listener_setting;
    if (c->allow_anonymous >= 0) return c->allow_anonymous;
    /* As mosquitto 2 does: without a word from the operator, anonymous
     * clients only where nobody off this host can reach the listener,
     * and not at all once there is a password file. */
    return c->password_file == NULL && bind != NULL && addr_kind(bind) == 1;
}

/* Checks one bind address (what: "bind" or "listeners[i].bind", with
 * the file prefix) and the anonymous rule (anon: the listener's own
 * allow_anonymous, -1 unset); 0 or UVMQ_ECONFIG. */
static int check_bind(const broker_config_t *c, const char *what, const char *bind, int anon,
                      char *err, size_t errlen)
{
    int kind = bind != NULL ? addr_kind(bind) : -1;

    if (kind < 0) {
        snprintf(err, errlen, "%s \"%.64s\" is not an IPv4 or IPv6 address (or \"localhost\")",
                 what, bind != NULL ? bind : "");
        return UVMQ_ECONFIG;
    }
    /* A network listener with neither a password file nor a word on
     * anonymous clients would take no client at all, or (before access
     * control) anyone: the operator must say which. */
    if (kind == 0 && anon < 0 && c->allow_anonymous < 0 && c->password_file == NULL) {
        snprintf(err, errlen,
                 "%s %s is not a loopback address: set password_file, or allow_anonymous "
                 "(true to accept anonymous clients from the network) in the config file",
                 what, bind);
        return UVMQ_ECONFIG;
    }
    return 0;
}

/* Checks listener i's TLS settings by building its context once. */
static int check_tls(const broker_config_t *c, size_t i, const char *where, char *err,
                     size_t errlen)
{
    const tls_config_t *t = &c->listeners[i].tls;
    tls_ctx_t *ctx = NULL;
    char why[400];
    int rc = 0;

    if ((t->require_certificate || t->use_identity_as_username) && t->ca == NULL) {
        snprintf(why, sizeof why, "%s: needs \"ca\" (the CA client certificates chain to)",
                 t->require_certificate ? "require_certificate" : "use_identity_as_username");
        rc = UVMQ_ECONFIG;
    } else {
        rc = listener__ctx_create(&ctx, t, c->protocols[c->listeners[i].kind], why, sizeof why);
    }
    tls_ctx_release(&ctx);
    if (rc != 0) snprintf(err, errlen, "%s.tls.%s", where, why);
    return rc;
}

/* Checks every entry of "listeners": address, port, TLS files. Messages
 * name the config file and "listeners[i].key". */
static int check_listeners(const broker_config_t *c, char *err, size_t errlen)
{
    int rc = 0;

    for (size_t i = 0; i < c->n_listeners && rc == 0; i++) {
        const listener_config_t *l = &c->listeners[i];
        char where[128], what[160];
        snprintf(where, sizeof where, "%s%slisteners[%zu]",
                 c->config_file != NULL ? c->config_file : "", c->config_file != NULL ? ": " : "",
                 i);
        snprintf(what, sizeof what, "%s.bind", where);
        rc = check_bind(c, what, l->bind != NULL ? l->bind : c->bind, l->allow_anonymous, err,
                        errlen);
        if (rc == 0 && l->port == 0) {
            snprintf(err, errlen, "%s.port: required for a listener without \"tls\"", where);
            rc = UVMQ_ECONFIG;
        }
        if (rc == 0 && l->has_tls) rc = check_tls(c, i, where, err, errlen);
    }
    return rc;
}

/* Checks the numeric settings whose limits come from the protocol or from
 * the broker's design; 0 or UVMQ_ECONFIG. */
static int check_ranges(const broker_config_t *c, char *err, size_t errlen)
{
    int rc = UVMQ_ECONFIG;

    if (c->port == 0)
        snprintf(err, errlen, "port must be 1..65535 (got 0)");
    else if (c->http_port != 0 && c->http_port == c->port)
        snprintf(err, errlen, "http_port must differ from port (both %u)", (unsigned)c->port);
    else if (c->http_max_streams == 0)
        snprintf(err, errlen, "http_max_streams must be 1..65535 (got 0)");
    else if (c->http_idle_timeout == 0)
        snprintf(err, errlen, "http_idle_timeout must be 1..86400 (got 0)");
    else if (c->max_packet_size < 2 || c->max_packet_size > MQTT_MAX_PACKET)
        snprintf(err, errlen, "max_packet_size must be 2..%u (got %u)", MQTT_MAX_PACKET,
                 (unsigned)c->max_packet_size);
    else if (c->max_inflight == 0) /* Receive Maximum 0 is a Protocol Error */
        snprintf(err, errlen, "max_inflight must be 1..65535 (got 0)");
    else if (c->threads > MAX_THREADS)
        snprintf(err, errlen, "threads must be 0..%u (got %u)", MAX_THREADS, c->threads);
    else if (c->data_dir == NULL || c->data_dir[0] == '\0')
        snprintf(err, errlen, "data_dir must be a non-empty path");
    else if (c->max_db_bytes != 0 && c->max_db_bytes < MIN_DB_BYTES)
        snprintf(err, errlen, "max_db_bytes must be 0 (no cap) or at least %u (got %llu)",
                 MIN_DB_BYTES, (unsigned long long)c->max_db_bytes);
    else if (c->durability != 0 && c->durability != 1)
        snprintf(err, errlen, "durability must be full or batch");
    else if (c->shared_strategy < SHARE_ROUND_ROBIN || c->shared_strategy > SHARE_STICKY)
        snprintf(err, errlen, "shared_strategy must be round_robin, random or sticky");
    else if (c->batch_ms == 0)
        snprintf(err, errlen, "batch_ms must be 1..60000 (got 0)");
    else if (c->log_level < LOG_ERROR || c->log_level > LOG_DEBUG)
        snprintf(err, errlen, "log_level must be error, warn, info or debug");
    else
        rc = 0;
    return rc;
}

/* Checks the rules that span settings and the protocol limits. Returns 0,
 * or UVMQ_ECONFIG after writing one line naming the setting into err. */
int broker_config_check(const broker_config_t *c, char *err, size_t errlen)
{
    int rc = check_bind(c, "bind", c->bind, -1, err, errlen);

    if (rc == 0) rc = check_ranges(c, err, errlen);
    if (rc == 0) rc = check_listeners(c, err, errlen);
    if (rc == 0) rc = access__check(c, err, errlen); /* the files parse */
    return rc;
}

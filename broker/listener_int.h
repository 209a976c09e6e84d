/*
 * listener_int.h - the listening sockets on the main thread
 * (listener.c).
 */
#ifndef UVMQ_BROKER_LISTENER_INT_H
#define UVMQ_BROKER_LISTENER_INT_H

#include "broker_int.h"

/* One listening socket (listener.c), on the listener loop. Worker loops
 * read kind and name (immutable once started); tls is the listener
 * thread's alone: it hands each accepted socket a reference. */
typedef struct listener_s {
    broker_t *b;
    uint8_t kind;          /* enum listener_kind */
    const transport_t *proto; /* the protocol of its kind (cfg->protocols) */
    const transport_t *tp; /* what its connections get: proto, or TLS
                              wrapping proto */
    const char *bind;      /* borrowed from the config */
    uint16_t port;
    uint8_t anon;          /* takes clients without a user name
                              (config__anonymous) */
    const tls_config_t *tls_cfg; /* borrowed; NULL = plain TCP */
    tls_ctx_t *tls;        /* current context for new connections (a
                              reference); replaced on SIGHUP */
    int fd;                /* listening socket, -1 when closed */
    uv_poll_t poll;
    char name[80];         /* "127.0.0.1:8883 (mqtt, tls)", for logs */
} listener_t;

/* Creates the listeners (the default MQTT one on cfg->bind:cfg->port,
 * then cfg->listeners, with their TLS contexts) and starts watching them
 * on the listener loop. Returns 0 or a negative error (logged); what was
 * opened is closed by listener__stop and freed by listener__free. */
int listener__start(broker_t *b);
/* Stops accepting and closes the listening sockets (asynchronously). */
void listener__stop(broker_t *b);
/* SIGHUP: builds a new TLS context for each TLS listener from its files;
 * new connections get it, existing ones keep theirs. One log line per
 * listener: reloaded, or why not (the old context stays). */
void listener__reload(broker_t *b);
/* Frees the listeners (after the listener loop closed their handles). */
void listener__free(broker_t *b);
/* Builds the TLS context of a listener of protocol proto (NULL: none
 * known, no ALPN) from cfg, with the protocol's ALPN list: "mqtt" offered
 * for MQTT; "h2" required for HTTP/2. Returns 0 with *out holding one
 * reference, or UVMQ_ECONFIG with why in err (config.c checks a listener
 * with it). */
int listener__ctx_create(tls_ctx_t **out, const tls_config_t *cfg, const transport_t *proto,
                         char *err, size_t errlen);

#endif

/*
 * conn_tls_int.h - the TLS transport (conn_tls.c) on tls/.
 */
#ifndef UVMQ_BROKER_CONN_TLS_INT_H
#define UVMQ_BROKER_CONN_TLS_INT_H

#include "conn_int.h"

/* TLS wrapping the listener's protocol: open's arg is the listener's
 * tls_ctx_t (the connection takes its own reference). */
extern const transport_t conn_tls__transport;
/* Encrypts c's pending batch, after anything OpenSSL made outside a
 * pass, into the loop's ciphertext buffer (*out, *len: valid until the
 * next pass on the loop), in one pass of t: small entries are gathered
 * into full records, large ones encrypted in place, and each entry's
 * reference is released as soon as its bytes are encrypted, so no write
 * completion has anything to release. The pending batch is left empty
 * and its bytes leave unsent. Adds close_notify after tls_shutdown. No
 * write of c may be in flight. Returns 0 or UVMQ_ETLS. */
int conn_tls__encrypt(conn_t *c, tls_t *t, const uint8_t **out, size_t *len);
/* Frees l's TLS buffers (loop__dispose). */
void conn_tls__loop_dispose(loop_t *l);

#endif

/*
 * http.h - the HTTP/2 API as a transport (broker/transport.h): h2c with
 * prior knowledge on a plain listener, h2 inside TLS once ALPN chose it.
 * One nghttp2 server session per connection, on the connection's worker
 * loop; requests publish through conn_publish and subscribe through
 * sinks (broker/sink.h). docs/http.md is the user's side.
 */
#ifndef UVMQ_HTTP_H
#define UVMQ_HTTP_H

#include "../broker/transport.h"

/* The table of listeners of type "http" (cli/uvmq.c gives it to the
 * broker as the protocol of LISTENER_HTTP). */
extern const transport_t http_transport;

#endif

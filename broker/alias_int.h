/*
 * alias_int.h - topic aliases (MQTT 5.0 section 3.3.2.3.4) (alias.c).
 *
 * Per connection, both directions, behind c->ext->v5 (made on first
 * need, freed with the connection: aliases never outlive a network
 * connection, MQTT-3.3.2-7). The policy is described at the top of
 * alias.c and in docs/protocol.md.
 */
#ifndef UVMQ_BROKER_ALIAS_INT_H
#define UVMQ_BROKER_ALIAS_INT_H

#include "conn_int.h"

/* A topic an alias stands for: an owned copy, cap bytes allocated. */
typedef struct alias_topic_s {
    char *p;
    uint32_t len, cap;
} alias_topic_t;

/* Client to server: what the client set each alias to. */
typedef struct alias_in_s {
    alias_topic_t *v; /* v[alias - 1], max entries; NULL until the first
                         alias the client sets */
    uint16_t max;     /* entries in v (topic_alias_max when made) */
} alias_in_t;

/* One alias we gave the client: its topic, hash and LRU links (aliases,
 * 0 = none). */
typedef struct alias_out_ent_s {
    alias_topic_t t;
    uint32_t hash;
    uint16_t prev, next;
} alias_out_ent_t;

/* Server to client: topic -> alias, the least recently used one taken
 * over when all are in use. */
typedef struct alias_out_s {
    alias_out_ent_t *ent; /* ent[alias], max + 1 entries (0 unused); NULL
                             until the first PUBLISH to the client */
    uint16_t *slots;      /* open-addressing index by topic hash: an
                             alias, or 0 for an empty slot; mask + 1 */
    uint32_t mask;
    uint16_t max;         /* aliases we may use: the client's Topic Alias
                             Maximum capped by topic_alias_max */
    uint16_t used;        /* aliases given out so far: 1..used */
    uint16_t head, tail;  /* most and least recently used alias */
} alias_out_t;

/* MQTT 5 state that only some connections have (c->ext->v5). */
typedef struct conn_v5_s {
    alias_in_t in;
    alias_out_t out;
    struct auth_conn_s *auth; /* auth.c: the CONNECT had an Authentication
                                 Method; NULL otherwise */
} conn_v5_t;

/* What conn__send_publish does about the topic of one PUBLISH. */
typedef struct alias_pick_s {
    uint16_t alias; /* 0: no alias, the whole topic */
    uint8_t known;  /* the client has this alias for this topic: the
                       topic goes empty */
    uint32_t hash;
} alias_pick_t;

/* c's MQTT 5 extension, made (zeroed) when c has none. */
conn_v5_t *alias__v5(conn_t *c);
/* Frees c's MQTT 5 extension (alias tables, authentication state). */
void alias__v5_free(conn_t *c);
/* A PUBLISH from c carries a Topic Alias: checks it against
 * topic_alias_max (0 or above: 0x94, MQTT-3.3.2-8/-9) and, when its topic
 * is empty, replaces it with the topic the alias stands for (borrowed
 * from the table until the next PUBLISH of c), or refuses with 0x82 when
 * the client never set that alias. Returns 0, or UVMQ_EINVAL with *reason
 * set to the v5 reason to close with (*reason is 0 on success). */
int alias__in_resolve(conn_t *c, pkt_publish_t *pub, uint8_t *reason);
/* Records that alias stands for topic (validated) from now on. */
void alias__in_set(conn_t *c, uint16_t alias, const pkt_bin_t *topic);
/* The client allows max aliases (capped): c->alias_out is set and
 * counted in its loop; the tables are made with the first PUBLISH. */
void alias__out_enable(conn_t *c, uint16_t max);
/* Undoes alias__out_enable's count (the connection is freed). */
void alias__out_disable(conn_t *c);
/* Decides the alias for topic t of a PUBLISH to c (c->alias_out set)
 * without changing anything: the alias the client knows, a new one, the
 * least recently used one, or none (short topics). */
void alias__out_pick(conn_t *c, const char *t, size_t len, alias_pick_t *pk);
/* Records pk once the PUBLISH carrying it is queued, so a packet dropped
 * for its size or for max_out_bytes leaves no alias the client never
 * saw. */
void alias__out_commit(conn_t *c, const char *t, size_t len, const alias_pick_t *pk);

#endif

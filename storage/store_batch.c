/*
 * store_batch.c - building batches of storage operations, lock-free.
 *
 * Every operation copies the record it is given: the strings and blobs go
 * into the batch's arena (sized first, then filled by a packer; one malloc
 * per 4 KiB of small operations, not one per operation) and the copied
 * record's pointers are redirected into it, so the caller's buffers can be
 * reused as soon as the call returns.
 */
#include "store_int.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/err.h"
#include "../common/xmalloc.h"

/* Largest copy one operation may make: an MQTT packet is at most 256 MiB,
 * a message or a will holds a payload plus its topic and properties. */
#define OP_DATA_LIMIT ((size_t)300 << 20)

/* Fills a room of len bytes that was sized for exactly what is packed. */
typedef struct pack_s {
    char *base;
    size_t off, len;
} pack_t;

static size_t str_size(const char *s)
{
    return s == NULL ? 0 : strlen(s) + 1;
}

/* Copies s into the pack; NULL stays NULL. */
static const char *pack_str(pack_t *pk, const char *s)
{
    char *p = NULL;
    if (s != NULL) {
        size_t n = strlen(s) + 1;
        assert(pk->off + n <= pk->len); /* the room was sized with str_size */
        p = pk->base + pk->off;
        memcpy(p, s, n);
        pk->off += n;
    }
    return p;
}

/* Copies n bytes; NULL or empty stays as given (NULL, 0). */
static const void *pack_bytes(pack_t *pk, const void *b, size_t n)
{
    void *p = NULL;
    if (b != NULL && n > 0) {
        assert(pk->off + n <= pk->len);
        p = pk->base + pk->off;
        memcpy(p, b, n);
        pk->off += n;
    }
    return p;
}

/* Appends a zeroed operation of kind and returns it. */
static store_op_t *push_op(store_batch_t *b, enum store_op_kind kind)
{
    assert(b->n <= b->cap && (b->ops != NULL || b->cap == 0));
    assert(kind >= OP_SESSION_PUT && kind <= OP_RETAINED_DEL);
    if (b->n == b->cap) {
        b->cap = b->cap == 0 ? 8 : b->cap * 2;
        b->ops = xrealloc(b->ops, b->cap * sizeof *b->ops);
    }
    store_op_t *op = &b->ops[b->n++];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    return op;
}

/* Room for n copied bytes in b's arena, or NULL past OP_DATA_LIMIT or
 * when memory is short (only peer-sized copies can get there). */
static char *copy_room(store_batch_t *b, size_t n)
{
    return n <= OP_DATA_LIMIT ? arena_alloc_raw(&b->copies, n) : NULL; /* all overwritten */
}

/* copy_room for the small, fixed-size copies: aborts when memory is
 * short, like xmalloc. */
static char *key_room(store_batch_t *b, size_t n)
{
    char *p = copy_room(b, n);
    if (p == NULL) {
        fprintf(stderr, "uvmq: out of memory allocating %zu bytes\n", n);
        abort();
    }
    return p;
}

/* Pushes a keyed operation whose strings are copied into b's arena. */
static store_op_t *push_key(store_batch_t *b, enum store_op_kind kind,
                            const char *k1, const char *k2)
{
    store_op_t *op = push_op(b, kind);
    size_t n = str_size(k1) + str_size(k2) + 1;
    pack_t pk = { key_room(b, n), 0, n };
    assert(k1 != NULL); /* every keyed operation names a client or topic */
    op->u.key.client_id = pack_str(&pk, k1);
    op->u.key.filter = pack_str(&pk, k2);
    return op;
}

/* Returns a new empty batch (aborts on no memory); the caller owns it until
 * store_submit or store_batch_destroy. */
store_batch_t *store_batch_create(void)
{
    store_batch_t *b = xcalloc(1, sizeof(store_batch_t));
    arena_init(&b->copies, SIZE_MAX);
    return b;
}

/* Frees b, its operations and their copies; b becomes invalid. */
void store__batch_free(store_batch_t *b)
{
    arena_dispose(&b->copies);
    free(b->ops);
    free(b);
}

/* Frees a batch that was never submitted; NULL is a no-op. */
void store_batch_destroy(store_batch_t *b)
{
    if (b != NULL) store__batch_free(b);
}

/* Returns the number of operations in b. */
size_t store_batch_count(const store_batch_t *b)
{
    return b->n;
}

/* Adds an insert-or-replace of a session, will included; copies sess.
 * Returns 0, or UVMQ_ENOMEM with b unchanged. */
int store_batch_session_put(store_batch_t *b, const store_session_t *sess)
{
    size_t n = str_size(sess->client_id) + str_size(sess->will_topic) +
               str_size(sess->username) + sess->will_payload_len + sess->will_props_len + 1;
    pack_t pk = { copy_room(b, n), 0, n };
    int rc = 0;
    assert(sess->client_id != NULL);
    assert(sess->will_payload != NULL || sess->will_payload_len == 0);
    assert(sess->will_props != NULL || sess->will_props_len == 0);
    if (pk.base == NULL) {
        rc = UVMQ_ENOMEM;
    } else {
        store_op_t *op = push_op(b, OP_SESSION_PUT);
        op->u.sess = *sess;
        op->u.sess.client_id = pack_str(&pk, sess->client_id);
        op->u.sess.will_topic = pack_str(&pk, sess->will_topic);
        op->u.sess.username = pack_str(&pk, sess->username);
        op->u.sess.will_payload = pack_bytes(&pk, sess->will_payload, sess->will_payload_len);
        op->u.sess.will_props = pack_bytes(&pk, sess->will_props, sess->will_props_len);
        if (op->u.sess.will_payload == NULL) op->u.sess.will_payload_len = 0;
        if (op->u.sess.will_props == NULL) op->u.sess.will_props_len = 0;
    }
    return rc;
}

/* Adds the deletion of a session with its subscriptions, queue entries and
 * inbound QoS 2 ids; copies client_id. */
void store_batch_session_del(store_batch_t *b, const char *client_id)
{
    push_key(b, OP_SESSION_DEL, client_id, NULL);
}

/* Adds an insert-or-replace of a subscription; copies sub. */
void store_batch_sub_put(store_batch_t *b, const store_sub_t *sub)
{
    store_op_t *op = push_op(b, OP_SUB_PUT);
    size_t n = str_size(sub->client_id) + str_size(sub->filter) + 1;
    pack_t pk = { key_room(b, n), 0, n };
    assert(sub->client_id != NULL && sub->filter != NULL);
    op->u.sub = *sub;
    op->u.sub.client_id = pack_str(&pk, sub->client_id);
    op->u.sub.filter = pack_str(&pk, sub->filter);
}

/* Adds the deletion of one subscription; copies the strings. */
void store_batch_sub_del(store_batch_t *b, const char *client_id, const char *filter)
{
    assert(filter != NULL);
    push_key(b, OP_SUB_DEL, client_id, filter);
}

/* Adds the storing of a message (no reference yet); copies m and its
 * bytes. Returns 0, or UVMQ_ENOMEM with b unchanged. */
int store_batch_msg_put(store_batch_t *b, const store_msg_t *m)
{
    size_t n = str_size(m->topic) + m->payload_len + m->props_len + 1;
    pack_t pk = { copy_room(b, n), 0, n };
    int rc = 0;
    assert(m->payload != NULL || m->payload_len == 0);
    assert(m->props != NULL || m->props_len == 0);
    if (pk.base == NULL) {
        rc = UVMQ_ENOMEM;
    } else {
        store_op_t *op = push_op(b, OP_MSG_PUT);
        op->u.msg = *m;
        op->u.msg.topic = pack_str(&pk, m->topic);
        op->u.msg.payload = pack_bytes(&pk, m->payload, m->payload_len);
        op->u.msg.props = pack_bytes(&pk, m->props, m->props_len);
        if (op->u.msg.payload == NULL) op->u.msg.payload_len = 0;
        if (op->u.msg.props == NULL) op->u.msg.props_len = 0;
    }
    return rc;
}

/* Adds a queue entry referencing e->msg_id; copies e. Returns 0, or
 * UVMQ_EINVAL (too many subscription ids) with b unchanged. */
int store_batch_entry_add(store_batch_t *b, const store_entry_t *e)
{
    int rc = 0;
    assert(e->client_id != NULL);
    assert(e->sub_ids != NULL || e->n_sub_ids == 0);
    assert(e->state <= STORE_ENTRY_PUBCOMP);
    /* store.h: packet id 0 means still queued, and only then. */
    assert((e->state == STORE_ENTRY_QUEUED) == (e->packet_id == 0));
    if (e->n_sub_ids > STORE_MAX_SUB_IDS) {
        rc = UVMQ_EINVAL;
    } else {
        size_t ids = e->n_sub_ids * sizeof(uint32_t);
        store_op_t *op = push_op(b, OP_ENTRY_ADD);
        /* The ids go first so they stay 4-byte aligned. */
        size_t n = ids + str_size(e->client_id) + 1;
        pack_t pk = { key_room(b, n), 0, n };
        op->u.entry = *e;
        op->u.entry.sub_ids = pack_bytes(&pk, e->sub_ids, ids);
        op->u.entry.client_id = pack_str(&pk, e->client_id);
        if (op->u.entry.sub_ids == NULL) op->u.entry.n_sub_ids = 0;
    }
    return rc;
}

/* Adds a packet id / state change of an entry, optionally dropping its
 * message reference; copies client_id. */
void store_batch_entry_update(store_batch_t *b, const char *client_id, uint64_t seq,
                              uint16_t packet_id, uint8_t state, bool drop_msg)
{
    assert(state <= STORE_ENTRY_PUBCOMP);
    assert((state == STORE_ENTRY_QUEUED) == (packet_id == 0));
    /* Only the PUBREL stage lets the message go (store_entry_t.msg_id). */
    assert(!drop_msg || state == STORE_ENTRY_PUBCOMP);
    store_op_t *op = push_key(b, OP_ENTRY_UPDATE, client_id, NULL);
    op->u.key.seq = seq;
    op->u.key.packet_id = packet_id;
    op->u.key.state = state;
    op->u.key.drop_msg = drop_msg;
}

/* Adds the deletion of an entry and the release of its message reference. */
void store_batch_entry_del(store_batch_t *b, const char *client_id, uint64_t seq)
{
    push_key(b, OP_ENTRY_DEL, client_id, NULL)->u.key.seq = seq;
}

/* Adds an inbound QoS 2 packet id (PUBREC sent, PUBREL awaited). */
void store_batch_inq2_add(store_batch_t *b, const char *client_id, uint16_t packet_id)
{
    assert(packet_id != 0); /* the codec refuses 0 (MQTT-2.2.1-3) */
    push_key(b, OP_INQ2_ADD, client_id, NULL)->u.key.packet_id = packet_id;
}

/* Adds the removal of an inbound QoS 2 packet id (PUBREL received). */
void store_batch_inq2_del(store_batch_t *b, const char *client_id, uint16_t packet_id)
{
    assert(packet_id != 0);
    push_key(b, OP_INQ2_DEL, client_id, NULL)->u.key.packet_id = packet_id;
}

/* Adds retained topic -> msg_id, replacing (and releasing) any previous. */
void store_batch_retained_set(store_batch_t *b, const char *topic, uint64_t msg_id)
{
    assert(msg_id != 0); /* no message: store_batch_retained_del */
    push_key(b, OP_RETAINED_SET, topic, NULL)->u.key.seq = msg_id;
}

/* Adds the removal of a retained topic and the release of its message. */
void store_batch_retained_del(store_batch_t *b, const char *topic)
{
    push_key(b, OP_RETAINED_DEL, topic, NULL);
}

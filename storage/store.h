/*
 * store.h - the data directory and, later, durable storage.
 *
 * For now the store only owns the data directory: store_open creates it
 * (mkdir -p, mode 0700) and holds an exclusive flock on DIR/uvmq.lock for
 * the process lifetime, so two brokers never share one directory. Durable
 * sessions, queues and retained messages (SQLite, group commit) are a later
 * issue; nothing is written to disk yet.
 */
#ifndef UVMQ_STORE_H
#define UVMQ_STORE_H

typedef struct store_s store_t;

/* Creates dir if missing and locks DIR/uvmq.lock. Returns 0 and *out, or
 * ERR_IO after logging a message naming the path (not writable, or another
 * uvmq holds the lock); *out is then NULL. Borrows dir. */
int store_open(store_t **out, const char *dir);

/* The data directory path (owned by the store). */
const char *store_dir(const store_t *s);

/* Releases the lock and frees s; NULL is a no-op. */
void store_close(store_t *s);

#endif

/*
 * recover_int.h - start-up recovery from the store (recover.c).
 */
#ifndef UVMQ_BROKER_RECOVER_INT_H
#define UVMQ_BROKER_RECOVER_INT_H

#include "broker_int.h"

/* Loads the store into the loops, the session map and the retained trie
 * before the worker threads start; logs what it recovered. Returns 0 or
 * the store's error. */
int recover__run(broker_t *b);

#endif

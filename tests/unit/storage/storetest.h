/*
 * storetest.h - what the storage unit tests share: a temporary data dir
 * per test (cmocka setup/teardown) and submitting a batch and waiting for
 * its callback. Included by one test program each (static functions).
 */
#ifndef UVMQ_STORETEST_H
#define UVMQ_STORETEST_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/log.h"
#include "storage/store.h"

static char dir[64];

/* cmocka setup: a fresh /tmp/uvmq-store-XXXXXX in dir. */
static int make_tmp(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/uvmq-store-XXXXXX");
    log_set_level(LOG_ERROR);
    return mkdtemp(dir) == NULL ? -1 : 0;
}

/* cmocka teardown: removes dir and everything in it. */
static int remove_tmp(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

typedef struct waiter_s {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int done, status;
} waiter_t;

static void on_done(void *ctx, int status)
{
    waiter_t *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    w->status = status;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

/* Submits b and waits for its callback; returns the status. */
static int submit_wait(store_t *s, store_batch_t *b)
{
    waiter_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    assert_int_equal(store_submit(s, b, on_done, &w), 0);
    pthread_mutex_lock(&w.mu);
    while (!w.done) pthread_cond_wait(&w.cond, &w.mu);
    pthread_mutex_unlock(&w.mu);
    return w.status;
}

#endif

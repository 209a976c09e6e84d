/*
 * Unit tests for auth/cache.c: a verified triple hits until its time is
 * up; any other user, stored hash or password misses; the oldest entry
 * goes when the cache is full; clear empties it; max 0 turns it off; no
 * password bytes are kept; threads may share it. Includes cache.c to look
 * at its slots.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "auth/cache.c"

#define HASH_A "$7$101$H8ErwJhyN5+YtRBd$D9GPVslwTSA87JHU1Y3XpWgd/R5tA+vFssIwTh0tcYq"
#define HASH_B "$6$pzQ3LovKFyLXCQK6$G/yBA2EEUZbaK8UHGnRd3aBbSMj9V5eSu/rlXZG2ZjgS"

/* lookup/insert with C strings. */
static int hit(authcache_t *c, const char *u, const char *h, const char *p, uint64_t now)
{
    return authcache_lookup(c, u, strlen(u), h, p, strlen(p), now);
}

static void put(authcache_t *c, const char *u, const char *h, const char *p, uint64_t now)
{
    authcache_insert(c, u, strlen(u), h, p, strlen(p), now);
}

/* Inserts users u0..u(n-1), user i at time i. */
static void put_many(authcache_t *c, int n)
{
    char user[16];
    for (int i = 0; i < n; i++) {
        snprintf(user, sizeof user, "u%d", i);
        put(c, user, HASH_A, "pw", (uint64_t)i);
    }
}

static void cache_hits_only_after_an_insert(void **state)
{
    authcache_t *c = authcache_create(8, 1000);
    assert_int_equal(hit(c, "alice", HASH_A, "pw", 0), 0);
    put(c, "alice", HASH_A, "pw", 0);
    assert_int_equal(authcache_count(c), 1);
    assert_int_equal(hit(c, "alice", HASH_A, "pw", 10), 1);
    assert_int_equal(hit(c, "alice", HASH_A, "pw", 999), 1);
    authcache_destroy(&c);
    assert_null(c);
    authcache_destroy(&c); /* NULL: nothing */
}

static void cache_misses_on_any_other_user_hash_or_password(void **state)
{
    authcache_t *c = authcache_create(8, 1000);
    put(c, "alice", HASH_A, "pw", 0);
    assert_int_equal(hit(c, "alice", HASH_A, "pw2", 1), 0);
    assert_int_equal(hit(c, "alice", HASH_A, "p", 1), 0);
    assert_int_equal(hit(c, "alice", HASH_A, "", 1), 0);
    assert_int_equal(hit(c, "alice", HASH_B, "pw", 1), 0); /* a reload changed the hash */
    assert_int_equal(hit(c, "Alice", HASH_A, "pw", 1), 0);
    assert_int_equal(hit(c, "bob", HASH_A, "pw", 1), 0);
    /* The lengths keep the fields apart: no sliding bytes from one to the next. */
    put(c, "ab", "cd", "ef", 0);
    assert_int_equal(hit(c, "ab", "cd", "ef", 1), 1);
    assert_int_equal(hit(c, "a", "bcd", "ef", 1), 0);
    assert_int_equal(hit(c, "abc", "d", "ef", 1), 0);
    assert_int_equal(hit(c, "ab", "cde", "f", 1), 0);
    assert_int_equal(hit(c, "ab", "c", "def", 1), 0);
    authcache_destroy(&c);
}

static void cache_entry_expires_after_ttl(void **state)
{
    authcache_t *c = authcache_create(8, 500);
    put(c, "alice", HASH_A, "pw", 1000);
    assert_int_equal(hit(c, "alice", HASH_A, "pw", 1499), 1);
    assert_int_equal(hit(c, "alice", HASH_A, "pw", 1500), 0);
    assert_int_equal(authcache_count(c), 0); /* dropped when found stale */
    put(c, "alice", HASH_A, "pw", 2000);
    assert_int_equal(hit(c, "alice", HASH_A, "pw", 1999), 0); /* the clock went back */
    authcache_destroy(&c);
    c = authcache_create(8, 0);
    put(c, "alice", HASH_A, "pw", 1000);
    assert_int_equal(hit(c, "alice", HASH_A, "pw", 1000), 0); /* ttl 0: never good */
    authcache_destroy(&c);
}

static void cache_insert_drops_expired_entries_first(void **state)
{
    authcache_t *c = authcache_create(8, 100);
    put_many(c, 5);
    assert_int_equal(authcache_count(c), 5);
    put(c, "late", HASH_A, "pw", 103); /* u0..u3 are 100 ms old or more */
    assert_int_equal(authcache_count(c), 2);
    assert_int_equal(hit(c, "u4", HASH_A, "pw", 103), 1);
    authcache_destroy(&c);
}

static void cache_evicts_the_oldest_when_full(void **state)
{
    authcache_t *c = authcache_create(3, 1000);
    put(c, "a", HASH_A, "pw", 1);
    put(c, "b", HASH_A, "pw", 2);
    put(c, "c", HASH_A, "pw", 3);
    put(c, "a", HASH_A, "pw", 4); /* renewed: now the newest */
    put(c, "d", HASH_A, "pw", 5); /* b goes */
    assert_int_equal(authcache_count(c), 3);
    assert_int_equal(hit(c, "b", HASH_A, "pw", 6), 0);
    assert_int_equal(hit(c, "a", HASH_A, "pw", 6), 1);
    assert_int_equal(hit(c, "c", HASH_A, "pw", 6), 1);
    assert_int_equal(hit(c, "d", HASH_A, "pw", 6), 1);
    put(c, "e", HASH_A, "pw", 7); /* c goes */
    assert_int_equal(hit(c, "c", HASH_A, "pw", 8), 0);
    assert_int_equal(authcache_count(c), 3);
    authcache_destroy(&c);
}

static void cache_of_one_entry_keeps_the_last(void **state)
{
    authcache_t *c = authcache_create(1, 1000);
    put(c, "a", HASH_A, "pw", 1);
    put(c, "b", HASH_A, "pw", 2);
    assert_int_equal(authcache_count(c), 1);
    assert_int_equal(hit(c, "a", HASH_A, "pw", 3), 0);
    assert_int_equal(hit(c, "b", HASH_A, "pw", 3), 1);
    authcache_destroy(&c);
}

static void cache_clear_drops_everything(void **state)
{
    authcache_t *c = authcache_create(4, 1000);
    put(c, "a", HASH_A, "pw", 1);
    put(c, "b", HASH_A, "pw", 1);
    authcache_clear(c);
    assert_int_equal(authcache_count(c), 0);
    assert_int_equal(hit(c, "a", HASH_A, "pw", 2), 0);
    for (int i = 0; i < 10; i++)
        put(c, i % 2 ? "a" : "b", HASH_A, "pw", 3);
    assert_int_equal(authcache_count(c), 2);
    assert_int_equal(hit(c, "b", HASH_A, "pw", 4), 1);
    authcache_destroy(&c);
}

static void cache_with_max_0_is_off(void **state)
{
    authcache_t *c = authcache_create(0, 1000);
    put(c, "a", HASH_A, "pw", 1);
    assert_int_equal(authcache_count(c), 0);
    assert_int_equal(hit(c, "a", HASH_A, "pw", 2), 0);
    authcache_clear(c);
    authcache_destroy(&c);
}

static void cache_keeps_no_password_bytes(void **state)
{
    const char *pass = "a-password-to-find";
    authcache_t *c = authcache_create(4, 1000);
    put(c, "alice", HASH_A, pass, 1);
    assert_null(memmem(c->e, c->max * sizeof *c->e, pass, 8));
    assert_null(memmem(c->e, c->max * sizeof *c->e, "alice", 5));
    authcache_destroy(&c);
}

static void caches_have_different_keys(void **state)
{
    authcache_t *a = authcache_create(4, 1000), *b = authcache_create(4, 1000);
    put(a, "alice", HASH_A, "pw", 1);
    put(b, "alice", HASH_A, "pw", 1);
    assert_memory_not_equal(a->e[a->newest].digest, b->e[b->newest].digest, DIGEST_LEN);
    authcache_destroy(&a);
    authcache_destroy(&b);
}

static void cache_holds_many_entries(void **state)
{
    enum { N = 5000 };
    authcache_t *c = authcache_create(N, 1000000);
    char user[16];
    put_many(c, 2 * N);
    assert_int_equal(authcache_count(c), N);
    for (int i = 0; i < 2 * N; i++) {
        snprintf(user, sizeof user, "u%d", i);
        assert_int_equal(hit(c, user, HASH_A, "pw", 2 * N), i >= N);
    }
    authcache_destroy(&c);
}

static void *hammer(void *arg)
{
    authcache_t *c = arg;
    char user[16];
    for (int i = 0; i < 2000; i++) {
        snprintf(user, sizeof user, "u%d", i % 50);
        put(c, user, HASH_A, "pw", (uint64_t)i);
        (void)hit(c, user, HASH_A, "pw", (uint64_t)i);
        if (i % 500 == 0) authcache_clear(c);
        (void)authcache_count(c);
    }
    return NULL;
}

static void cache_is_shared_by_threads(void **state)
{
    authcache_t *c = authcache_create(32, 100);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, c), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_true(authcache_count(c) <= 32);
    authcache_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cache_hits_only_after_an_insert),
        cmocka_unit_test(cache_misses_on_any_other_user_hash_or_password),
        cmocka_unit_test(cache_entry_expires_after_ttl),
        cmocka_unit_test(cache_insert_drops_expired_entries_first),
        cmocka_unit_test(cache_evicts_the_oldest_when_full),
        cmocka_unit_test(cache_of_one_entry_keeps_the_last),
        cmocka_unit_test(cache_clear_drops_everything),
        cmocka_unit_test(cache_with_max_0_is_off),
        cmocka_unit_test(cache_keeps_no_password_bytes),
        cmocka_unit_test(caches_have_different_keys),
        cmocka_unit_test(cache_holds_many_entries),
        cmocka_unit_test(cache_is_shared_by_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

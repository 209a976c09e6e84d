/*
 * Unit tests for router/retained.c: set, replace, delete and pruning,
 * filter matching with wildcards and '$' topics, count, destroy, depth
 * and width. Includes retained.c to check pruning.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "router/retained.c"

/* Stored topics; the value of topics[i] is &topics[i]. */
static const char *topics[] = {
    "a", "a/b", "a/c", "a/b/c", "/a", "b", "$SYS/x", "$SYS", "a//b", "/",
};
#define NTOPICS (sizeof topics / sizeof topics[0])

static void *set_str(router_retained_t *r, const char *t, void *v)
{
    return router_retained_set(r, t, strlen(t), v);
}

static void record(void *value, void *ctx)
{
    unsigned *mask = ctx;
    size_t i = (size_t)((const char **)value - topics);
    assert_true(i < NTOPICS);
    assert_int_equal(*mask & (1u << i), 0); /* reported once */
    *mask |= 1u << i;
}

static unsigned match_mask(router_retained_t *r, const char *filter)
{
    unsigned mask = 0;
    router_retained_match(r, filter, strlen(filter), record, &mask);
    return mask;
}

/* Bit mask of the topics[] entries named in a NULL-terminated list. */
static unsigned mask_of(const char *const *names)
{
    unsigned m = 0;
    for (; *names; names++)
        for (size_t i = 0; i < NTOPICS; i++)
            if (!strcmp(*names, topics[i])) m |= 1u << i;
    return m;
}

static router_retained_t *fill(void)
{
    router_retained_t *r = router_retained_create();
    for (size_t i = 0; i < NTOPICS; i++)
        assert_null(set_str(r, topics[i], &topics[i]));
    assert_int_equal(router_retained_count(r), NTOPICS);
    return r;
}

static void set_replaces_and_deletes_returning_the_previous_value(void **state)
{
    router_retained_t *r = router_retained_create();
    int v1, v2;
    assert_null(set_str(r, "a/b", &v1));
    assert_int_equal(router_retained_count(r), 1);
    assert_ptr_equal(set_str(r, "a/b", &v2), &v1);
    assert_int_equal(router_retained_count(r), 1);
    assert_null(set_str(r, "a", NULL)); /* inner node, no value */
    assert_null(set_str(r, "x/y", NULL));
    assert_int_equal(router_retained_count(r), 1);
    assert_ptr_equal(set_str(r, "a/b", NULL), &v2);
    assert_int_equal(router_retained_count(r), 0);
    assert_int_equal(r->root->nkids, 0); /* "a" was pruned too */
    assert_null(set_str(r, "a/b", NULL));
    router_retained_destroy(r, NULL, NULL);
}

static void deleting_a_parent_keeps_its_children(void **state)
{
    router_retained_t *r = router_retained_create();
    int v1, v2;
    assert_null(set_str(r, "a", &v1));
    assert_null(set_str(r, "a/b", &v2));
    assert_ptr_equal(set_str(r, "a", NULL), &v1);
    assert_int_equal(router_retained_count(r), 1);
    assert_ptr_equal(set_str(r, "a/b", NULL), &v2);
    assert_int_equal(r->root->nkids, 0);
    router_retained_destroy(r, NULL, NULL);
}

static void invalid_length_stores_nothing_and_hands_the_value_back(void **state)
{
    router_retained_t *r = router_retained_create();
    int v;
    assert_ptr_equal(router_retained_set(r, "", 0, &v), &v);
    assert_int_equal(router_retained_count(r), 0);
    router_retained_destroy(r, NULL, NULL);
}

static void filters_match_stored_topics_by_the_wildcard_rules(void **state)
{
    static const struct {
        const char *filter;
        const char *want[11];
    } cases[] = {
        {"a/#", {"a", "a/b", "a/c", "a/b/c", "a//b", NULL}},
        {"#", {"a", "a/b", "a/c", "a/b/c", "/a", "b", "a//b", "/", NULL}},
        {"+", {"a", "b", NULL}},
        {"a/+", {"a/b", "a/c", NULL}},
        {"+/+", {"a/b", "a/c", "/a", "/", NULL}},
        {"a/+/b", {"a//b", NULL}},
        {"a/+/#", {"a/b", "a/c", "a/b/c", "a//b", NULL}},
        {"+/#", {"a", "a/b", "a/c", "a/b/c", "/a", "b", "a//b", "/", NULL}},
        {"/#", {"/a", "/", NULL}},
        {"$SYS/#", {"$SYS", "$SYS/x", NULL}},
        {"$SYS/+", {"$SYS/x", NULL}},
        {"+/x", {NULL}},
        {"a/b", {"a/b", NULL}},
        {"/", {"/", NULL}},
        {"a/b/c/d", {NULL}},
        {"nothing/#", {NULL}},
    };
    router_retained_t *r = fill();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned got = match_mask(r, cases[i].filter);
        unsigned want = mask_of(cases[i].want);
        if (got != want) fail_msg("\"%s\": got mask %#x, want %#x", cases[i].filter, got, want);
    }
    router_retained_destroy(r, NULL, NULL);
}

static void count_calls(void *value, void *ctx)
{
    (*(size_t *)ctx)++;
}

static void destroy_releases_every_value(void **state)
{
    router_retained_t *r = fill();
    size_t n = 0;
    router_retained_destroy(r, count_calls, &n);
    assert_int_equal(n, NTOPICS);
}

static void deep_topics_are_walked_without_deep_recursion(void **state)
{
    enum { LEVELS = 20000 };
    size_t len = 2 * LEVELS - 1, n = 0;
    char *t = malloc(len);
    int v1, v2;
    for (size_t i = 0; i < len; i++)
        t[i] = i % 2 ? '/' : 'a';
    router_retained_t *r = router_retained_create();
    assert_null(router_retained_set(r, t, len, &v1));
    assert_null(router_retained_set(r, t, 1, &v2));
    router_retained_match(r, "#", 1, count_calls, &n);
    assert_int_equal(n, 2);
    n = 0;
    router_retained_match(r, "a/+/#", 5, count_calls, &n);
    assert_int_equal(n, 1);
    assert_ptr_equal(router_retained_set(r, t, len, NULL), &v1);
    assert_int_equal(r->root->nkids, 1);
    router_retained_destroy(r, count_calls, &n);
    free(t);
}

static void ten_thousand_siblings_match_and_delete(void **state)
{
    enum { N = 10000 };
    static char vals[N];
    char t[32];
    size_t n = 0;
    router_retained_t *r = router_retained_create();
    for (int i = 0; i < N; i++) {
        snprintf(t, sizeof t, "s/%d", i);
        assert_null(set_str(r, t, &vals[i]));
    }
    router_retained_match(r, "s/+", 3, count_calls, &n);
    assert_int_equal(n, N);
    n = 0;
    router_retained_match(r, "s/1234", 6, count_calls, &n);
    assert_int_equal(n, 1);
    for (int i = 0; i < N; i++) {
        snprintf(t, sizeof t, "s/%d", i);
        assert_ptr_equal(set_str(r, t, NULL), &vals[i]);
    }
    assert_int_equal(router_retained_count(r), 0);
    assert_int_equal(r->root->nkids, 0);
    router_retained_destroy(r, NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(set_replaces_and_deletes_returning_the_previous_value),
        cmocka_unit_test(deleting_a_parent_keeps_its_children),
        cmocka_unit_test(invalid_length_stores_nothing_and_hands_the_value_back),
        cmocka_unit_test(filters_match_stored_topics_by_the_wildcard_rules),
        cmocka_unit_test(destroy_releases_every_value),
        cmocka_unit_test(deep_topics_are_walked_without_deep_recursion),
        cmocka_unit_test(ten_thousand_siblings_match_and_delete),
    };
    return cmocka_run_group_tests_name("router/retained", tests, NULL, NULL);
}

/*
 * Unit tests for router/router.c: topic syntax, matching rules (one table
 * run through both topic_matches and the trie), merging, No Local,
 * replace, unsubscribe and scale. Includes router.c to check pruning.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "router/router.c"

#define QOS1     0x01
#define QOS2     0x02
#define NO_LOCAL 0x04
#define RAP      0x08

typedef struct match_row_s {
    const char *filter;
    const char *topic;
    int match;
} match_row_t;

/* MQTT 3.1.1 and 5.0 section 4.7 examples first, then edge cases. */
static const match_row_t rows[] = {
    {"sport/tennis/player1/#", "sport/tennis/player1", 1},
    {"sport/tennis/player1/#", "sport/tennis/player1/ranking", 1},
    {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", 1},
    {"sport/tennis/player1/#", "sport/tennis/player2", 0},
    {"sport/tennis/player1/#", "sport/tennis", 0},
    {"sport/#", "sport", 1},
    {"sport/#", "sport/", 1},
    {"sport/#", "sport/a/b", 1},
    {"sport/#", "sports", 0},
    {"sport/#", "/sport", 0},
    {"sport/tennis/+", "sport/tennis/player1", 1},
    {"sport/tennis/+", "sport/tennis/player2", 1},
    {"sport/tennis/+", "sport/tennis/player1/ranking", 0},
    {"sport/tennis/+", "sport/tennis", 0},
    {"sport/+", "sport", 0},
    {"sport/+", "sport/", 1},
    {"sport/+", "sport/x", 1},
    {"sport/+/player1", "sport/tennis/player1", 1},
    {"sport/+/player1", "sport/tennis/player2", 0},
    {"+/tennis/#", "sport/tennis/player1", 1},
    {"+/tennis/#", "sport/tennis", 1},
    {"+/+", "/finance", 1},
    {"/+", "/finance", 1},
    {"+", "/finance", 0},
    {"+", "finance", 1},
    {"+", "/", 0},
    {"+/+", "/", 1},
    {"#", "sport/tennis", 1},
    {"#", "/", 1},
    {"#", "a/$SYS", 1},
    {"#", "$SYS/monitor/Clients", 0},
    {"#", "$", 0},
    {"+/monitor/Clients", "$SYS/monitor/Clients", 0},
    {"+/monitor/Clients", "a/monitor/Clients", 1},
    {"$SYS/#", "$SYS/monitor/Clients", 1},
    {"$SYS/#", "$SYS", 1},
    {"$SYS/monitor/+", "$SYS/monitor/Clients", 1},
    {"$SYS/+", "$SYS/x", 1},
    {"+", "$SYS", 0},
    {"+/+", "a/$SYS", 1},
    {"+/a", "/a", 1},
    {"a/+/b", "a//b", 1},
    {"a/+/b", "a/b", 0},
    {"a//b", "a//b", 1},
    {"a//b", "a/b", 0},
    {"a/b", "a//b", 0},
    {"/a", "a", 0},
    {"a", "/a", 0},
    {"a/", "a", 0},
    {"a", "a/", 0},
    {"a/+", "a/", 1},
    {"a/#", "a", 1},
    {"+/#", "a", 1},
    {"+/#", "/", 1},
    {"+/+/#", "a", 0},
    {"ACCOUNTS", "Accounts", 0},
    {"Accounts payable", "Accounts payable", 1},
    {"$share/g/sport/+", "sport/x", 1},
    {"$share/g/#", "$SYS/x", 0},
};

#define NROWS (sizeof rows / sizeof rows[0])

static int is_share(const char *f)
{
    return strncmp(f, "$share/", 7) == 0;
}

static size_t match_str(router_t *rt, const char *topic, const void *pub, router_hits_t *h)
{
    return router_match(rt, topic, strlen(topic), pub, h);
}

static int sub_str(router_t *rt, const char *f, void *sub, uint8_t opts, uint32_t id)
{
    int existed = -1;
    return router_subscribe(rt, f, strlen(f), sub, opts, id, &existed);
}

static void topic_matches_follows_the_table(void **state)
{
    assert_true(NROWS >= 45);
    for (size_t i = 0; i < NROWS; i++) {
        const match_row_t *r = &rows[i];
        int got = topic_matches(r->filter, strlen(r->filter), r->topic, strlen(r->topic));
        if (got != r->match)
            fail_msg("row %zu: \"%s\" vs \"%s\": got %d", i, r->filter, r->topic, got);
    }
}

static void trie_follows_the_table_one_filter_at_a_time(void **state)
{
    router_hits_t h;
    router_hits_init(&h);
    for (size_t i = 0; i < NROWS; i++) {
        const match_row_t *r = &rows[i];
        router_t *rt = router_create();
        int rc = sub_str(rt, r->filter, (void *)r, 1, 0);
        if (is_share(r->filter)) {
            assert_int_equal(rc, UVMQ_EINVAL);
        } else {
            assert_int_equal(rc, 0);
            size_t n = match_str(rt, r->topic, NULL, &h);
            if (n != (size_t)r->match)
                fail_msg("row %zu: \"%s\" vs \"%s\": %zu hits", i, r->filter, r->topic, n);
            if (n) assert_ptr_equal(h.hit[0].sub, r);
        }
        router_destroy(rt);
    }
    router_hits_dispose(&h);
}

static void trie_with_every_filter_agrees_with_topic_matches(void **state)
{
    router_t *rt = router_create();
    router_hits_t h;
    router_hits_init(&h);
    for (size_t i = 0; i < NROWS; i++)
        if (!is_share(rows[i].filter))
            assert_int_equal(sub_str(rt, rows[i].filter, (void *)&rows[i], 0, 0), 0);
    for (size_t t = 0; t < NROWS; t++) {
        const char *topic = rows[t].topic;
        size_t want = 0, n = match_str(rt, topic, NULL, &h);
        for (size_t i = 0; i < NROWS; i++) {
            const char *f = rows[i].filter;
            if (!is_share(f) && topic_matches(f, strlen(f), topic, strlen(topic))) want++;
        }
        assert_int_equal(n, want);
        for (size_t k = 0; k < n; k++) {
            const match_row_t *r = h.hit[k].sub;
            assert_true(topic_matches(r->filter, strlen(r->filter), topic, strlen(topic)));
        }
    }
    router_hits_dispose(&h);
    router_destroy(rt);
}

static void filters_are_valid_or_invalid_as_the_spec_says(void **state)
{
    static const char *valid[] = {
        "#",
        "+",
        "sport/tennis/#",
        "+/tennis/#",
        "sport/+/player1",
        "/",
        "a//b",
        "+/+",
        "/+",
        "a/",
        "$SYS/#",
        "$share/g/a/+",
        "$share/g/#",
        "$share/g//",
        "$share",
        "$sharex/a",
        "Accounts payable",
        "a/+/#",
    };
    static const char *invalid[] = {
        "",
        "sport/tennis#",
        "sport/tennis/#/ranking",
        "sport+",
        "a/b+",
        "a#",
        "#/a",
        "+a",
        "a/+b/c",
        "##",
        "++",
        "$share/g",
        "$share//a",
        "$share/g+/a",
        "$share/g#/a",
        "$share/g/",
        "$share/g/a#",
        "$share/",
        "$share/+/a",
    };
    for (size_t i = 0; i < sizeof valid / sizeof *valid; i++)
        if (!topic_filter_valid(valid[i], strlen(valid[i])))
            fail_msg("\"%s\" should be a valid filter", valid[i]);
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++)
        if (topic_filter_valid(invalid[i], strlen(invalid[i])))
            fail_msg("\"%s\" should be an invalid filter", invalid[i]);
}

static void names_are_valid_or_invalid_as_the_spec_says(void **state)
{
    static const char *valid[] = {"a", "/", "a//b", "$SYS/x", " ", "a/"};
    static const char *invalid[] = {"", "a/+", "#", "a/b#", "+", "sport+"};
    for (size_t i = 0; i < sizeof valid / sizeof *valid; i++)
        assert_true(topic_name_valid(valid[i], strlen(valid[i])));
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++)
        assert_false(topic_name_valid(invalid[i], strlen(invalid[i])));
}

static void names_and_filters_past_the_length_limit_are_invalid(void **state)
{
    size_t n = TOPIC_MAX_LEN + 1;
    char *s = malloc(n);
    memset(s, 'a', n);
    assert_true(topic_name_valid(s, n - 1));
    assert_true(topic_filter_valid(s, n - 1));
    assert_false(topic_name_valid(s, n));
    assert_false(topic_filter_valid(s, n));
    free(s);
}

static void subscribe_refuses_invalid_and_shared_filters(void **state)
{
    router_t *rt = router_create();
    int existed = -1;
    char sub;
    assert_int_equal(router_subscribe(rt, "a/#/b", 5, &sub, 0, 0, &existed), UVMQ_EINVAL);
    assert_int_equal(existed, 0);
    assert_int_equal(sub_str(rt, "", &sub, 0, 0), UVMQ_EINVAL);
    assert_int_equal(sub_str(rt, "$share/g/a", &sub, 0, 0), UVMQ_EINVAL);
    assert_int_equal(router_count(rt), 0);
    assert_int_equal(rt->root->nkids, 0);
    router_destroy(rt);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static const router_hit_t *hit_of(const router_hits_t *h, const void *sub)
{
    const router_hit_t *found = NULL;
    for (size_t i = 0; i < h->n; i++) {
        if (h->hit[i].sub == sub) {
            assert_null(found); /* one hit per subscriber */
            found = &h->hit[i];
        }
    }
    return found;
}

static void overlapping_subscriptions_merge_into_one_hit(void **state)
{
    router_t *rt = router_create();
    router_hits_t h;
    char a, b;
    router_hits_init(&h);
    assert_int_equal(sub_str(rt, "a/+", &a, QOS1, 5), 0);
    assert_int_equal(sub_str(rt, "a/#", &a, QOS2, 0), 0);
    assert_int_equal(sub_str(rt, "a/b", &a, RAP, 7), 0);
    assert_int_equal(sub_str(rt, "#", &a, 0, 9), 0);
    assert_int_equal(sub_str(rt, "a/b", &b, QOS1, 3), 0);
    assert_int_equal(router_count(rt), 5);

    assert_int_equal(match_str(rt, "a/b", NULL, &h), 2);
    const router_hit_t *ha = hit_of(&h, &a), *hb = hit_of(&h, &b);
    assert_non_null(ha);
    assert_non_null(hb);
    assert_int_equal(ha->qos, 2);
    assert_int_equal(ha->rap, 1);
    assert_int_equal(ha->id_count, 3);
    uint32_t ids[3];
    memcpy(ids, h.ids + ha->id_off, sizeof ids);
    qsort(ids, 3, sizeof *ids, cmp_u32);
    assert_int_equal(ids[0], 5);
    assert_int_equal(ids[1], 7);
    assert_int_equal(ids[2], 9);
    assert_int_equal(hb->qos, 1);
    assert_int_equal(hb->rap, 0);
    assert_int_equal(hb->id_count, 1);
    assert_int_equal(h.ids[hb->id_off], 3);
    assert_int_equal(h.n_ids, 4);

    /* "a/c": only a's "a/+", "a/#" and "#" match. */
    assert_int_equal(match_str(rt, "a/c", NULL, &h), 1);
    assert_ptr_equal(h.hit[0].sub, &a);
    assert_int_equal(h.hit[0].qos, 2);
    assert_int_equal(h.hit[0].rap, 0);
    assert_int_equal(h.hit[0].id_count, 2);
    router_hits_dispose(&h);
    router_destroy(rt);
}

static void many_subscribers_on_two_nodes_merge_per_subscriber(void **state)
{
    enum { N = 300 };
    static char subs[N];
    router_t *rt = router_create();
    router_hits_t h;
    router_hits_init(&h);
    for (int i = 0; i < N; i++) {
        assert_int_equal(sub_str(rt, "m/+", &subs[i], QOS1, (uint32_t)i + 1), 0);
        if (i % 2 == 0) assert_int_equal(sub_str(rt, "m/#", &subs[i], QOS2, 0), 0);
    }
    assert_int_equal(match_str(rt, "m/x", NULL, &h), N);
    for (int i = 0; i < N; i++) {
        const router_hit_t *x = hit_of(&h, &subs[i]);
        assert_non_null(x);
        assert_int_equal(x->qos, i % 2 == 0 ? 2 : 1);
        assert_int_equal(x->id_count, 1);
        assert_int_equal(h.ids[x->id_off], (uint32_t)i + 1);
    }
    router_hits_dispose(&h);
    router_destroy(rt);
}

static void no_local_skips_only_the_publishers_own_subscription(void **state)
{
    router_t *rt = router_create();
    router_hits_t h;
    char a, b;
    router_hits_init(&h);
    assert_int_equal(sub_str(rt, "t", &a, QOS2 | NO_LOCAL, 1), 0);
    assert_int_equal(sub_str(rt, "t", &b, NO_LOCAL, 2), 0);
    assert_int_equal(match_str(rt, "t", &a, &h), 1);
    assert_ptr_equal(h.hit[0].sub, &b);
    assert_int_equal(match_str(rt, "t", NULL, &h), 2);

    /* a's "#" without No Local still delivers, at that subscription's QoS
     * and id only. */
    assert_int_equal(sub_str(rt, "#", &a, QOS1, 3), 0);
    assert_int_equal(match_str(rt, "t", &a, &h), 2);
    const router_hit_t *ha = hit_of(&h, &a);
    assert_non_null(ha);
    assert_int_equal(ha->qos, 1);
    assert_int_equal(ha->id_count, 1);
    assert_int_equal(h.ids[ha->id_off], 3);
    router_hits_dispose(&h);
    router_destroy(rt);
}

static void subscribe_replaces_the_same_filter_of_the_same_subscriber(void **state)
{
    router_t *rt = router_create();
    router_hits_t h;
    int existed = -1;
    char a, b;
    router_hits_init(&h);
    assert_int_equal(router_subscribe(rt, "x/+", 3, &a, QOS1, 4, &existed), 0);
    assert_int_equal(existed, 0);
    assert_int_equal(router_subscribe(rt, "x/+", 3, &b, 0, 0, &existed), 0);
    assert_int_equal(existed, 0);
    assert_int_equal(router_subscribe(rt, "x/+", 3, &a, QOS2 | RAP, 8, &existed), 0);
    assert_int_equal(existed, 1);
    assert_int_equal(router_count(rt), 2);
    assert_int_equal(match_str(rt, "x/y", NULL, &h), 2);
    const router_hit_t *ha = hit_of(&h, &a);
    assert_int_equal(ha->qos, 2);
    assert_int_equal(ha->rap, 1);
    assert_int_equal(ha->id_count, 1);
    assert_int_equal(h.ids[ha->id_off], 8);
    /* Replacing with id 0 drops the identifier. */
    assert_int_equal(router_subscribe(rt, "x/+", 3, &a, 0, 0, NULL), 0);
    match_str(rt, "x/y", NULL, &h);
    assert_int_equal(hit_of(&h, &a)->id_count, 0);
    router_hits_dispose(&h);
    router_destroy(rt);
}

static void unsubscribe_removes_one_and_prunes_nodes(void **state)
{
    router_t *rt = router_create();
    router_hits_t h;
    char a, b;
    router_hits_init(&h);
    assert_int_equal(sub_str(rt, "a/b/c", &a, 0, 0), 0);
    assert_int_equal(sub_str(rt, "a/+/#", &a, 0, 0), 0);
    assert_int_equal(sub_str(rt, "a/b/c", &b, 0, 0), 0);
    assert_int_equal(router_unsubscribe(rt, "a/b/c", 5, &a), 0);
    assert_int_equal(router_unsubscribe(rt, "a/b/c", 5, &a), UVMQ_ENOTFOUND);
    assert_int_equal(router_unsubscribe(rt, "a/b", 3, &b), UVMQ_ENOTFOUND);
    assert_int_equal(router_unsubscribe(rt, "q", 1, &b), UVMQ_ENOTFOUND);
    assert_int_equal(router_count(rt), 2);
    assert_int_equal(match_str(rt, "a/b/c", NULL, &h), 2); /* a via a/+/# */
    assert_int_equal(router_unsubscribe(rt, "a/+/#", 5, &a), 0);
    assert_int_equal(router_unsubscribe(rt, "a/b/c", 5, &b), 0);
    assert_int_equal(router_count(rt), 0);
    assert_int_equal(match_str(rt, "a/b/c", NULL, &h), 0);
    assert_int_equal(match_str(rt, "a/x", NULL, &h), 0);
    assert_int_equal(rt->root->nkids, 0);
    assert_null(rt->root->plus);
    assert_null(rt->root->pound);
    assert_int_equal(rt->nsubr, 0);
    router_hits_dispose(&h);
    router_destroy(rt);
}

static void unsubscribe_all_removes_only_that_subscriber(void **state)
{
    static const char *filters[] = {"a", "a/+", "#", "+/b", "a/b/#"};
    router_t *rt = router_create();
    router_hits_t h;
    char a, b;
    router_hits_init(&h);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(sub_str(rt, filters[i], &a, 0, 0), 0);
    assert_int_equal(sub_str(rt, "a/b", &b, 0, 0), 0);
    assert_int_equal(match_str(rt, "a/b", NULL, &h), 2);
    assert_int_equal(router_unsubscribe_all(rt, &a), 5);
    assert_int_equal(router_unsubscribe_all(rt, &a), 0);
    assert_int_equal(router_count(rt), 1);
    assert_int_equal(match_str(rt, "a/b", NULL, &h), 1);
    assert_ptr_equal(h.hit[0].sub, &b);
    assert_int_equal(match_str(rt, "a", NULL, &h), 0);
    assert_int_equal(router_unsubscribe_all(rt, &b), 1);
    assert_int_equal(router_count(rt), 0);
    assert_int_equal(rt->root->nkids, 0);
    assert_null(rt->root->pound);
    router_hits_dispose(&h);
    router_destroy(rt);
}

static void removing_every_other_subscriber_of_one_filter_keeps_the_rest(void **state)
{
    enum { N = 1000 };
    static char subs[N];
    router_t *rt = router_create();
    router_hits_t h;
    router_hits_init(&h);
    for (int i = 0; i < N; i++)
        assert_int_equal(sub_str(rt, "x/y", &subs[i], 0, 0), 0);
    for (int i = 0; i < N; i += 2)
        assert_int_equal(router_unsubscribe(rt, "x/y", 3, &subs[i]), 0);
    assert_int_equal(match_str(rt, "x/y", NULL, &h), N / 2);
    for (int i = 0; i < N; i++) {
        if (i % 2)
            assert_non_null(hit_of(&h, &subs[i]));
        else
            assert_null(hit_of(&h, &subs[i]));
    }
    router_hits_dispose(&h);
    router_destroy(rt);
}

/* Each subscription keeps its options and id while its node's entry
 * block grows and shrinks (the side entries move inside it). */
static void options_and_ids_survive_a_node_growing_and_shrinking(void **state)
{
    enum { N = 200, KEEP = 10 };
    static char subs[N];
    router_t *rt = router_create();
    router_hits_t h;
    router_hits_init(&h);
    for (int i = 0; i < N; i++) {
        uint8_t opts = QOS1 | (i % 3 == 0 ? NO_LOCAL : 0);
        assert_int_equal(sub_str(rt, "g/h", &subs[i], opts, (uint32_t)i + 1), 0);
    }
    for (int i = 0; i < N - KEEP; i++)
        assert_int_equal(router_unsubscribe(rt, "g/h", 3, &subs[i]), 0);
    for (int k = N - KEEP; k < N; k++) {
        assert_int_equal(match_str(rt, "g/h", &subs[k], &h), KEEP - (k % 3 == 0));
        for (int i = N - KEEP; i < N; i++) {
            const router_hit_t *x = hit_of(&h, &subs[i]);
            if (i == k && k % 3 == 0) {
                assert_null(x);
                continue;
            }
            assert_non_null(x);
            assert_int_equal(x->qos, 1);
            assert_int_equal(x->id_count, 1);
            assert_int_equal(h.ids[x->id_off], (uint32_t)i + 1);
        }
    }
    router_hits_dispose(&h);
    router_destroy(rt);
}

/* A match on one node with nothing to filter or merge hands out that
 * node's own array; a second matching node makes it copy and merge. */
static void one_plain_node_is_lent_and_two_are_merged(void **state)
{
    static char subs[3];
    router_t *rt = router_create();
    router_hits_t h;
    router_hits_init(&h);
    assert_int_equal(sub_str(rt, "a/b", &subs[0], 0, 0), 0);
    assert_int_equal(sub_str(rt, "a/b", &subs[1], QOS1, 0), 0);
    assert_int_equal(match_str(rt, "a/b", NULL, &h), 2);
    assert_true(h.hit != h.v);
    assert_int_equal(hit_of(&h, &subs[1])->qos, 1);
    assert_int_equal(sub_str(rt, "a/+", &subs[1], QOS2, 0), 0);
    assert_int_equal(sub_str(rt, "a/+", &subs[2], 0, 0), 0);
    assert_int_equal(match_str(rt, "a/b", NULL, &h), 3);
    assert_ptr_equal(h.hit, h.v);
    assert_int_equal(hit_of(&h, &subs[0])->qos, 0);
    assert_int_equal(hit_of(&h, &subs[1])->qos, 2);
    assert_non_null(hit_of(&h, &subs[2]));
    assert_int_equal(match_str(rt, "a/c", NULL, &h), 2);
    assert_true(h.hit != h.v);
    router_hits_dispose(&h);
    router_destroy(rt);
}

static void ten_thousand_subscribers_on_distinct_filters(void **state)
{
    enum { N = 10000 };
    static char subs[N];
    char f[32];
    router_t *rt = router_create();
    router_hits_t h;
    router_hits_init(&h);
    for (int i = 0; i < N; i++) {
        snprintf(f, sizeof f, "dev/%d/+", i);
        assert_int_equal(sub_str(rt, f, &subs[i], QOS1, (uint32_t)i + 1), 0);
    }
    assert_int_equal(router_count(rt), N);
    router__node_t *dev = router__kid_find(rt->root, "dev", 3, router__hash(rt->seed, "dev", 3));
    assert_non_null(dev);
    assert_int_equal(dev->nkids, N);
    assert_true(dev->nkb >= N / 2); /* hashed, not one long chain */
    for (int i = 0; i < N; i += 37) {
        snprintf(f, sizeof f, "dev/%d/temp", i);
        assert_int_equal(match_str(rt, f, NULL, &h), 1);
        assert_ptr_equal(h.hit[0].sub, &subs[i]);
        assert_int_equal(h.hit[0].id_count, 1);
        assert_int_equal(h.ids[h.hit[0].id_off], (uint32_t)i + 1);
    }
    assert_int_equal(match_str(rt, "dev/10000/temp", NULL, &h), 0);
    assert_int_equal(match_str(rt, "dev/5", NULL, &h), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(router_unsubscribe_all(rt, &subs[i]), 1);
    assert_int_equal(router_count(rt), 0);
    assert_int_equal(rt->root->nkids, 0);
    router_hits_dispose(&h);
    router_destroy(rt);
}

static void match_allocates_nothing_once_hits_have_grown(void **state)
{
    enum { N = 200 };
    static char subs[N];
    router_t *rt = router_create();
    router_hits_t h;
    router_hits_init(&h);
    for (int i = 0; i < N; i++) {
        assert_int_equal(sub_str(rt, "p/+", &subs[i], 0, 1), 0);
        assert_int_equal(sub_str(rt, "p/#", &subs[i], 1, 2), 0);
    }
    assert_int_equal(match_str(rt, "p/q", NULL, &h), N);
    uint64_t before = xmalloc_count();
    for (int i = 0; i < 100; i++)
        assert_int_equal(match_str(rt, "p/q", NULL, &h), N);
    assert_int_equal(xmalloc_count(), before);
    router_hits_dispose(&h);
    router_destroy(rt);
}

static void empty_topic_matches_nothing(void **state)
{
    router_t *rt = router_create();
    router_hits_t h;
    char a;
    router_hits_init(&h);
    assert_int_equal(sub_str(rt, "#", &a, 0, 0), 0);
    assert_int_equal(router_match(rt, "", 0, NULL, &h), 0);
    assert_int_equal(topic_matches("#", 1, "", 0), 0);
    router_hits_dispose(&h);
    router_destroy(rt);
}

/* ---- randomized churn against a model built on topic_matches ---- */

enum { CH_SUBS = 24, CH_FILTERS = 80, CH_TOPICS = 60 };

static uint32_t lcg(uint32_t *x)
{
    *x = *x * 1103515245u + 12345u;
    return *x >> 8;
}

/* A random name (wild == 0) or filter (wild == 1) of 1-4 levels; never
 * empty. */
static void random_topic(uint32_t *x, int wild, char *out)
{
    static const char *lv[] = {"a", "b", "", "$s", "+", "#"};
    int levels = 1 + (int)(lcg(x) % 4);
    out[0] = 0;
    for (int i = 0; i < levels; i++) {
        int k = (int)(lcg(x) % (wild ? 6 : 4));
        if (i) strcat(out, "/");
        strcat(out, lv[k]);
        if (k == 5) break; /* '#' ends a filter */
    }
    if (!out[0]) strcpy(out, "a");
}

static void check_against_model(router_t *rt, router_hits_t *h, char subs[], char filters[][24],
                                int model[][CH_FILTERS], char topics_[][24])
{
    size_t count = 0;
    for (int s = 0; s < CH_SUBS; s++)
        for (int f = 0; f < CH_FILTERS; f++)
            count += model[s][f] >= 0;
    assert_int_equal(router_count(rt), count);
    for (int t = 0; t < CH_TOPICS; t++) {
        const char *tp = topics_[t];
        size_t want = 0;
        match_str(rt, tp, NULL, h);
        for (int s = 0; s < CH_SUBS; s++) {
            int qos = -1;
            for (int f = 0; f < CH_FILTERS; f++)
                if (model[s][f] >= 0 &&
                    topic_matches(filters[f], strlen(filters[f]), tp, strlen(tp)) &&
                    model[s][f] > qos)
                    qos = model[s][f];
            const router_hit_t *x = hit_of(h, &subs[s]);
            if (qos < 0) {
                assert_null(x);
            } else {
                want++;
                assert_non_null(x);
                assert_int_equal(x->qos, qos);
            }
        }
        assert_int_equal(h->n, want);
    }
}

static void random_churn_agrees_with_topic_matches(void **state)
{
    static char subs[CH_SUBS], filters[CH_FILTERS][24], topics_[CH_TOPICS][24];
    static int model[CH_SUBS][CH_FILTERS];
    uint32_t x = 12345;
    router_t *rt = router_create();
    router_hits_t h;
    router_hits_init(&h);
    for (int f = 0; f < CH_FILTERS; f++) {
        int dup = 1;
        while (dup) { /* distinct filters, so the model is exact */
            random_topic(&x, 1, filters[f]);
            dup = 0;
            for (int g = 0; g < f; g++)
                dup |= !strcmp(filters[g], filters[f]);
        }
    }
    for (int t = 0; t < CH_TOPICS; t++)
        random_topic(&x, 0, topics_[t]);
    memset(model, -1, sizeof model);
    for (int op = 0; op < 3000; op++) {
        int s = (int)(lcg(&x) % CH_SUBS), f = (int)(lcg(&x) % CH_FILTERS);
        int kind = (int)(lcg(&x) % 20), existed = -1;
        const char *fl = filters[f];
        if (kind < 12) {
            int qos = (int)(lcg(&x) % 3);
            assert_int_equal(
                router_subscribe(rt, fl, strlen(fl), &subs[s], (uint8_t)qos, 0, &existed), 0);
            assert_int_equal(existed, model[s][f] >= 0);
            model[s][f] = qos;
        } else if (kind < 19) {
            assert_int_equal(router_unsubscribe(rt, fl, strlen(fl), &subs[s]),
                             model[s][f] >= 0 ? 0 : UVMQ_ENOTFOUND);
            model[s][f] = -1;
        } else {
            size_t had = 0;
            for (int g = 0; g < CH_FILTERS; g++)
                had += model[s][g] >= 0;
            assert_int_equal(router_unsubscribe_all(rt, &subs[s]), had);
            for (int g = 0; g < CH_FILTERS; g++)
                model[s][g] = -1;
        }
        if (op % 50 == 0) check_against_model(rt, &h, subs, filters, model, topics_);
    }
    check_against_model(rt, &h, subs, filters, model, topics_);
    for (int s = 0; s < CH_SUBS; s++)
        router_unsubscribe_all(rt, &subs[s]);
    assert_int_equal(router_count(rt), 0);
    assert_int_equal(rt->root->nkids, 0);
    assert_null(rt->root->plus);
    assert_null(rt->root->pound);
    router_hits_dispose(&h);
    router_destroy(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(topic_matches_follows_the_table),
        cmocka_unit_test(trie_follows_the_table_one_filter_at_a_time),
        cmocka_unit_test(trie_with_every_filter_agrees_with_topic_matches),
        cmocka_unit_test(filters_are_valid_or_invalid_as_the_spec_says),
        cmocka_unit_test(names_are_valid_or_invalid_as_the_spec_says),
        cmocka_unit_test(names_and_filters_past_the_length_limit_are_invalid),
        cmocka_unit_test(subscribe_refuses_invalid_and_shared_filters),
        cmocka_unit_test(overlapping_subscriptions_merge_into_one_hit),
        cmocka_unit_test(many_subscribers_on_two_nodes_merge_per_subscriber),
        cmocka_unit_test(no_local_skips_only_the_publishers_own_subscription),
        cmocka_unit_test(subscribe_replaces_the_same_filter_of_the_same_subscriber),
        cmocka_unit_test(unsubscribe_removes_one_and_prunes_nodes),
        cmocka_unit_test(unsubscribe_all_removes_only_that_subscriber),
        cmocka_unit_test(removing_every_other_subscriber_of_one_filter_keeps_the_rest),
        cmocka_unit_test(options_and_ids_survive_a_node_growing_and_shrinking),
        cmocka_unit_test(one_plain_node_is_lent_and_two_are_merged),
        cmocka_unit_test(ten_thousand_subscribers_on_distinct_filters),
        cmocka_unit_test(match_allocates_nothing_once_hits_have_grown),
        cmocka_unit_test(empty_topic_matches_nothing),
        cmocka_unit_test(random_churn_agrees_with_topic_matches),
    };
    return cmocka_run_group_tests_name("router/router", tests, NULL, NULL);
}

/*
 * Unit tests for auth/acl.c and auth/acl_match.c: the matching rules
 * (filter against name, filter covers filter, filters meet) as tables; a
 * mosquitto-style ACL file checked client by client (blocks, deny first,
 * first match decides, patterns with %c and %u, the anonymous block, ids
 * and names with wildcards, '$' topics); SUBSCRIBE checks; load errors
 * with their line numbers; views that allocate nothing per check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "auth/auth.h"
#include "auth/auth_int.h"
#include "common/err.h"
#include "common/xmalloc.h"

typedef struct pair_row_s {
    const char *a, *b;
    int want;
} pair_row_t;

#define ROWS(r) (sizeof(r) / sizeof((r)[0]))

/* ---- matching rules ---- */

/* filter, topic name: MQTT section 4.7's examples, then edge cases. */
static const pair_row_t match_rows[] = {
    {"sport/tennis/player1/#", "sport/tennis/player1", 1},
    {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", 1},
    {"sport/tennis/player1/#", "sport/tennis", 0},
    {"sport/#", "sport", 1},
    {"sport/#", "sports", 0},
    {"sport/tennis/+", "sport/tennis/player1", 1},
    {"sport/tennis/+", "sport/tennis/player1/ranking", 0},
    {"sport/+", "sport", 0},
    {"sport/+", "sport/", 1},
    {"+/+", "/finance", 1},
    {"/+", "/finance", 1},
    {"+", "/finance", 0},
    {"a/+/b", "a//b", 1},
    {"a//b", "a/b", 0},
    {"#", "a/$SYS", 1},
    {"#", "$SYS/monitor/Clients", 0},
    {"#", "$", 0},
    {"+/monitor/Clients", "$SYS/monitor/Clients", 0},
    {"$SYS/#", "$SYS", 1},
    {"$SYS/monitor/+", "$SYS/monitor/Clients", 1},
    {"+", "$SYS", 0},
    {"ACCOUNTS", "Accounts", 0},
    {"a/+", "a/+", 1}, /* a '+' in a name is a character */
    {"a/b", "a/+", 0},
    {"a/#", "a/#/b", 1},
    {"a", "", 0},
};

/* d, f: does d cover every topic f matches? */
static const pair_row_t cover_rows[] = {
    {"#", "a", 1},           {"#", "+", 1},           {"#", "#", 1},         {"#", "+/x", 1},
    {"#", "$SYS/a", 0},      {"#", "$SYS/#", 0},      {"a/#", "a", 1},       {"a/#", "a/#", 1},
    {"a/#", "a/b/c", 1},     {"a/#", "a/+", 1},       {"a/#", "a/+/c/#", 1}, {"a/#", "b", 0},
    {"a/#", "+", 0},         {"a/#", "#", 0},         {"a/+", "a/b", 1},     {"a/+", "a/+", 1},
    {"a/+", "a/#", 0},       {"a/+", "a", 0},         {"a/+", "a/b/c", 0},   {"+/#", "a", 1},
    {"+/#", "#", 1},         {"+/#", "+/+", 1},       {"+/#", "$SYS/a", 0},  {"+/+/#", "#", 0},
    {"+", "#", 0},           {"+", "$SYS", 0},        {"+", "a", 1},         {"+", "+", 1},
    {"$SYS/#", "$SYS/+", 1}, {"$SYS/+", "$SYS/#", 0}, {"a/b", "a/b", 1},     {"a/b", "a/+", 0},
    {"a/b", "a/b/c", 0},     {"a/b/c", "a/b", 0},     {"a//b", "a/+/b", 0},  {"a/+/b", "a//b", 1},
};

/* a, b: does some topic match both? */
static const pair_row_t meet_rows[] = {
    {"a/+", "+/b", 1},       {"#", "$SYS/#", 0},   {"$SYS/#", "$SYS/+", 1}, {"+", "$SYS", 0},
    {"+/+", "a", 0},         {"a/#", "a", 1},      {"a/#", "b/#", 0},       {"+/#", "#", 1},
    {"a/+/c", "a/b/+", 1},   {"a/+/c", "a/b", 0},  {"a", "a", 1},           {"a", "b", 0},
    {"/+", "+/a", 1},        {"+", "+", 1},        {"#", "+/+/+", 1},       {"a/b/#", "a/+", 1},
    {"$SYS/x", "$SYS/#", 1}, {"+/x", "$SYS/x", 0}, {"a/+", "a", 0},         {"a//#", "a/+/c", 1},
};

static void run_pairs(const pair_row_t *rows, size_t n,
                      int (*f)(const char *, size_t, const char *, size_t), const char *what)
{
    for (size_t i = 0; i < n; i++) {
        int got = f(rows[i].a, strlen(rows[i].a), rows[i].b, strlen(rows[i].b));
        if (got != rows[i].want)
            fail_msg("%s(\"%s\", \"%s\") is %d, not %d", what, rows[i].a, rows[i].b, got,
                     rows[i].want);
    }
}

static void filters_match_names_as_mqtt_says(void **state)
{
    run_pairs(match_rows, ROWS(match_rows), acl__matches, "matches");
}

static void deny_filters_cover_what_they_must(void **state)
{
    run_pairs(cover_rows, ROWS(cover_rows), acl__covers, "covers");
}

static void filters_meet_when_some_topic_matches_both(void **state)
{
    run_pairs(meet_rows, ROWS(meet_rows), acl__intersects, "intersects");
    /* Meeting is symmetric. */
    for (size_t i = 0; i < ROWS(meet_rows); i++) {
        const pair_row_t *r = &meet_rows[i];
        assert_int_equal(acl__intersects(r->b, strlen(r->b), r->a, strlen(r->a)), r->want);
    }
}

/* Every string of 1 to depth levels from words (joined by '/'), '#' only
 * last when filters is 1, into out; returns how many. The empty string
 * (neither a name nor a filter) is the caller's to skip. */
static size_t spell(const char *const *words, size_t nwords, int depth, int filters, char out[][16],
                    size_t cap)
{
    size_t n = 0, first = 0;
    for (size_t i = 0; i < nwords; i++)
        snprintf(out[n++], 16, "%s", words[i]);
    for (int d = 2; d <= depth; d++) {
        size_t last = n;
        for (size_t p = first; p < last; p++) {
            size_t len = strlen(out[p]);
            if (filters && len > 0 && out[p][len - 1] == '#') continue;
            for (size_t i = 0; i < nwords && n < cap; i++)
                snprintf(out[n++], 16, "%s/%s", out[p], words[i]);
        }
        first = last;
    }
    return n;
}

static void cover_and_meet_agree_with_matching_every_topic(void **state)
{
    /* Filters of up to 3 levels; topics of up to 4, with a word ("z") no
     * filter names, stand for all topics. */
    static const char *const fw[] = {"a", "$s", "", "+", "#"};
    static const char *const tw[] = {"a", "$s", "", "z"};
    static char filters[512][16], topics[512][16];
    size_t nf = spell(fw, 5, 3, 1, filters, 512), nt = spell(tw, 4, 4, 0, topics, 512);
    for (size_t i = 0; i < nf; i++) {
        const char *d = filters[i];
        for (size_t j = 0; j < nf && d[0]; j++) {
            const char *f = filters[j];
            int covered = 1, met = 0;
            if (!f[0]) continue;
            for (size_t k = 0; k < nt; k++) {
                const char *t = topics[k];
                int md = acl__matches(d, strlen(d), t, strlen(t));
                int mf = acl__matches(f, strlen(f), t, strlen(t));
                covered &= !mf || md;
                met |= mf && md;
            }
            if (acl__covers(d, strlen(d), f, strlen(f)) != covered)
                fail_msg("covers(\"%s\", \"%s\") is not %d", d, f, covered);
            if (acl__intersects(d, strlen(d), f, strlen(f)) != met)
                fail_msg("intersects(\"%s\", \"%s\") is not %d", d, f, met);
        }
    }
}

static void filters_are_valid_as_mqtt_says(void **state)
{
    static const char *const good[] = {"#",    "+",      "a/#",   "+/+", "/",
                                       "a//b", "$SYS/#", "a/+/c", "%c",  "a b/c d"};
    static const char *const bad[] = {"",     "a#", "a/#/b", "a+", "+a/b",
                                      "a/b#", "##", "a/++",  "#/", "a/#/"};
    for (size_t i = 0; i < ROWS(good); i++)
        if (!acl__filter_valid(good[i], strlen(good[i]))) fail_msg("\"%s\" refused", good[i]);
    for (size_t i = 0; i < ROWS(bad); i++)
        if (acl__filter_valid(bad[i], strlen(bad[i]))) fail_msg("\"%s\" accepted", bad[i]);
    char *big = malloc(AUTH_TOPIC_MAX + 1);
    memset(big, 'a', AUTH_TOPIC_MAX + 1);
    assert_true(acl__filter_valid(big, AUTH_TOPIC_MAX));
    assert_false(acl__filter_valid(big, AUTH_TOPIC_MAX + 1));
    free(big);
}

/* ---- a file, client by client ---- */

static const char acl_text[] = "# The anonymous block: lines before the first user.\n"
                               "topic read public/#\n"
                               "topic deny public/secret\n"
                               "topic read\n" /* one word: the filter \"read\", readwrite */
                               "\n"
                               "user alice\n"
                               "topic readwrite alice/#\n"
                               "topic deny alice/private/#\n"
                               "topic read shared/+\n"
                               "topic write  shared/inbox  \r\n"
                               "topic write x/#\n"
                               "topic read x/y\n"
                               "pattern read devices/%c/#\n"
                               "pattern readwrite users/%u/#\n"
                               "pattern deny devices/%c/locked\n"
                               "pattern read literal-%c/x\n"
                               "pattern read both/%u/%c\n"
                               "user bob\n"
                               "topic bob/#\n"
                               "topic read $SYS/#\n"
                               "user carol\n"
                               "topic read #\n"
                               "user we#rd\n"
                               "topic read weird/#\n"
                               "user erin\n"
                               "topic read e/#\n"
                               "pattern deny e/%u\n"
                               "user alice\n"
                               "topic read alice-extra/#\n"
                               "user  frank smith \n"
                               "topic read f/#\n";

typedef struct check_row_s {
    const char *user; /* NULL: anonymous */
    const char *id;
    const char *topic;
    unsigned access;
    int want;
} check_row_t;

#define R ACL_READ
#define W ACL_WRITE

static const check_row_t check_rows[] = {
    /* Anonymous: its block, deny first, then the patterns without %u. */
    {NULL, "anon1", "public/news", R, 1},
    {NULL, "anon1", "public/news", W, 0},   /* a read line passes a write over */
    {NULL, "anon1", "public/secret", R, 0}, /* deny first, though written later */
    {NULL, "anon1", "public", R, 1},
    {NULL, "anon1", "read", W, 1},
    {NULL, "anon1", "devices/anon1/t", R, 1},
    {NULL, "anon1", "devices/anon2/t", R, 0},
    {NULL, "anon1", "users//q", R, 0}, /* %u patterns skip anonymous clients */
    {NULL, "anon1", "alice/x", R, 0},
    {NULL, "anon1", "", R, 0},
    /* alice: her two blocks as one, then every pattern. */
    {"alice", "c1", "alice/x", W, 1},
    {"alice", "c1", "alice/private/a", R, 0},
    {"alice", "c1", "alice/private", R, 0}, /* "#" matches the parent */
    {"alice", "c1", "shared/a", R, 1},
    {"alice", "c1", "shared/a", W, 0},
    {"alice", "c1", "shared/inbox", W, 1},
    {"alice", "c1", "x/y", R, 1}, /* write x/# matched first, passed over */
    {"alice", "c1", "x/y", W, 1},
    {"alice", "c1", "alice-extra/1", R, 1},
    {"alice", "c1", "public/news", R, 0}, /* not the anonymous block */
    {"alice", "c1", "devices/c1/x", R, 1},
    {"alice", "c1", "devices/c1", R, 1},
    {"alice", "c1", "devices/c1/x", W, 0},
    {"alice", "c1", "devices/c2/x", R, 0},
    {"alice", "c1", "devices/c1/locked", R, 0},
    {"alice", "c1", "users/alice/q", W, 1},
    {"alice", "c1", "users/bob/q", R, 0},
    {"alice", "c1", "literal-c1/x", R, 0}, /* %c only as a whole level */
    {"alice", "c1", "literal-%c/x", R, 1},
    {"alice", "c1", "both/alice/c1", R, 1},
    {"alice", "c1", "both/c1/alice", R, 0},
    {"alice", "a/b", "devices/a/b/c", R, 1}, /* an id with '/' spans levels */
    /* bob: readwrite by default, '$' only through a '$' line. */
    {"bob", "c2", "bob/a", R, 1},
    {"bob", "c2", "bob/a", W, 1},
    {"bob", "c2", "$SYS/broker/uptime", R, 1},
    {"bob", "c2", "$SYS/broker/uptime", W, 0},
    {"carol", "c3", "a/b", R, 1},
    {"carol", "c3", "$SYS/x", R, 0}, /* "#" does not match '$' topics */
    {"carol", "c3", "$share", R, 0},
    /* Wildcards in an id or name: no pattern applies; the block still does. */
    {"alice", "a/+", "devices/a/+/x", R, 0},
    {"alice", "#", "devices/#/x", R, 0},
    {"alice", "ok", "users/alice/q", R, 1},
    {"we#rd", "c4", "weird/x", R, 1},
    {"we#rd", "c4", "users/we#rd/x", R, 0},
    {"ev+l", "c5", "users/ev+l/x", R, 0},
    /* A block line decides before a pattern, deny or not. */
    {"erin", "c6", "e/erin", R, 1},
    {"erin", "c6", "e/erin", W, 0},
    /* A user with no block: the patterns only. */
    {"nobody", "c7", "users/nobody/x", W, 1},
    {"nobody", "c7", "public/news", R, 0},
    {"", "c8", "users//x", R, 1}, /* an empty name is a name */
    /* The user line's name is trimmed; blanks inside stay. */
    {"frank smith", "c9", "f/1", R, 1},
    {"frank", "c9", "f/1", R, 0},
};

static acl_t *parse_ok(const char *text)
{
    acl_t *a = NULL;
    char err[256] = "";
    if (acl_parse(&a, text, strlen(text), "test.acl", err, sizeof err) != 0)
        fail_msg("parse failed: %s", err);
    return a;
}

static void acl_checks_follow_mosquitto_rules(void **state)
{
    acl_t *a = parse_ok(acl_text);
    assert_int_equal(acl_count(a), 22);
    for (size_t i = 0; i < ROWS(check_rows); i++) {
        const check_row_t *r = &check_rows[i];
        acl_view_t *v =
            acl_view_create(a, r->user, r->user ? strlen(r->user) : 0, r->id, strlen(r->id));
        assert_non_null(v);
        int got = acl_view_allows(v, r->topic, strlen(r->topic), r->access);
        if (got != r->want)
            fail_msg("row %zu: %s/%s %s \"%s\" is %d", i, r->user ? r->user : "(anonymous)", r->id,
                     r->access == R ? "read" : "write", r->topic, got);
        acl_view_destroy(&v);
        assert_null(v);
    }
    acl_release(&a);
}

static void acl_with_nothing_matching_refuses(void **state)
{
    acl_t *a = parse_ok("# nothing\n");
    acl_view_t *v = acl_view_create(a, NULL, 0, "id", 2);
    assert_int_equal(acl_count(a), 0);
    assert_false(acl_view_allows(v, "a", 1, ACL_READ));
    assert_false(acl_view_allows_filter(v, "#", 1));
    acl_view_destroy(&v);
    acl_release(&a);
}

/* ---- SUBSCRIBE ---- */

static const char sub_text[] = "user f\n"
                               "topic read sensors/+/temp\n"
                               "topic read news/#\n"
                               "topic deny secret/#\n"
                               "topic deny news/private/+\n"
                               "topic write cmd/#\n"
                               "topic read a/+/c\n"
                               "user all\n"
                               "topic read #\n"
                               "topic deny $SYS/private/#\n"
                               "topic read $SYS/#\n";

typedef struct sub_row_s {
    const char *user, *filter;
    int want;
} sub_row_t;

static const sub_row_t sub_rows[] = {
    {"f", "sensors/+/temp", 1},
    {"f", "sensors/#", 1}, /* meets a read line; deliveries are checked apart */
    {"f", "#", 1},         /* secret/# does not cover "#" */
    {"f", "secret/x", 0},
    {"f", "secret/#", 0},
    {"f", "secret", 0}, /* secret/# covers its parent */
    {"f", "secret/+/y", 0},
    {"f", "news/private/x", 0},
    {"f", "news/private/+", 0},
    {"f", "news/private/#", 1}, /* news/private/+ misses news/private itself */
    {"f", "news/today", 1},
    {"f", "cmd/#", 0}, /* write only */
    {"f", "cmd/x", 0},
    {"f", "$SYS/#", 0},
    {"f", "+/+/c", 1},
    {"f", "sensors/x/humidity", 0},
    {"f", "a/#/b", 0}, /* not a valid filter */
    {"f", "", 0},
    {"all", "+/x", 1},
    {"all", "$SYS/broker", 1}, /* through "$SYS/#", not "#" */
    {"all", "$SYS/private/a", 0},
    {"all", "$SYS/#", 1}, /* the deny covers only part of it */
    {"all", "$SYS/private/#", 0},
    {"nobody", "#", 0},
};

static void subscribe_checks_cover_and_meet(void **state)
{
    acl_t *a = parse_ok(sub_text);
    for (size_t i = 0; i < ROWS(sub_rows); i++) {
        const sub_row_t *r = &sub_rows[i];
        acl_view_t *v = acl_view_create(a, r->user, strlen(r->user), "id", 2);
        int got = acl_view_allows_filter(v, r->filter, strlen(r->filter));
        if (got != r->want) fail_msg("row %zu: %s \"%s\" is %d", i, r->user, r->filter, got);
        acl_view_destroy(&v);
    }
    acl_release(&a);
}

static void subscribe_checks_use_expanded_patterns(void **state)
{
    acl_t *a = parse_ok("pattern deny devices/%c/secret/#\npattern read devices/%c/#\n");
    acl_view_t *v = acl_view_create(a, "u", 1, "dev1", 4);
    assert_true(acl_view_allows_filter(v, "devices/dev1/#", 14));
    assert_true(acl_view_allows_filter(v, "devices/+/temp", 14));
    assert_false(acl_view_allows_filter(v, "devices/dev2/#", 14));
    assert_false(acl_view_allows_filter(v, "devices/dev1/secret/x", 21));
    acl_view_destroy(&v);
    v = acl_view_create(a, "u", 1, "dev+", 4);
    assert_false(acl_view_allows_filter(v, "devices/dev+/#", 14));
    acl_view_destroy(&v);
    acl_release(&a);
}

/* ---- load errors ---- */

typedef struct bad_row_s {
    const char *text;
    unsigned line;
    const char *why;
} bad_row_t;

static const bad_row_t bad_rows[] = {
    {"topic read a\nfoo bar\n", 2, "unknown keyword 'foo' (topic, pattern or user)"},
    {"  # comment\n\ntopic a\n\tuser x\nTOPIC a\n", 5, "unknown keyword 'TOPIC'"},
    {"topic reed a/b\n", 1, "unknown access word 'reed' (read, write, readwrite or deny)"},
    {"user x\npattern Read a/%c\n", 2, "unknown access word 'Read'"},
    {"topic\n", 1, "topic without a filter"},
    {"user u\npattern   \t\r\n", 2, "pattern without a filter"},
    {"topic read a/#/b\n", 1, "invalid topic filter 'a/#/b'"},
    {"topic read a+\n", 1, "invalid topic filter 'a+'"},
    {"topic deny #/\n", 1, "invalid topic filter '#/'"},
    {"topic a/b\nuser\n", 2, "user without a name"},
    {"user   \r\n", 1, "user without a name"},
    {"usera x\n", 1, "unknown keyword 'usera'"},
    {"topic\tread\ta/b#\n", 1, "invalid topic filter 'a/b#'"},
};

static void acl_refuses_bad_lines_naming_file_and_line(void **state)
{
    for (size_t i = 0; i < ROWS(bad_rows); i++) {
        const bad_row_t *r = &bad_rows[i];
        acl_t *a = (acl_t *)1;
        char err[256] = "", want[300];
        int rc = acl_parse(&a, r->text, strlen(r->text), "bad.acl", err, sizeof err);
        snprintf(want, sizeof want, "bad.acl:%u: %s", r->line, r->why);
        if (rc != UVMQ_ECONFIG || a != NULL || strncmp(err, want, strlen(want)) != 0)
            fail_msg("row %zu: rc %d, err \"%s\"; wanted \"%s\"", i, rc, err, want);
    }
}

static void acl_refuses_nul_byte_and_overlong_names(void **state)
{
    acl_t *a = NULL;
    char err[128];
    const char text[] = "topic a\0b\n";
    assert_int_equal(acl_parse(&a, text, sizeof text - 1, "f", err, sizeof err), UVMQ_ECONFIG);
    assert_string_equal(err, "f:1: NUL byte in the line");
    size_t n = PASSWD_USER_MAX + 1;
    char *big = malloc(n + 8);
    memcpy(big, "user ", 5);
    memset(big + 5, 'u', n);
    assert_int_equal(acl_parse(&a, big, n + 5, "f", err, sizeof err), UVMQ_ECONFIG);
    assert_string_equal(err, "f:1: user name longer than 65535 bytes");
    memcpy(big, "topic ", 6);
    memset(big + 6, 'u', n);
    assert_int_equal(acl_parse(&a, big, n + 6, "f", err, sizeof err), UVMQ_ECONFIG);
    assert_non_null(strstr(err, "f:1: invalid topic filter"));
    free(big);
}

static void acl_load_reads_a_file_and_names_it(void **state)
{
    char path[] = "/tmp/uvmq-acl-XXXXXX", err[256], want[300];
    acl_t *a = NULL;
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, sub_text, strlen(sub_text)), (ssize_t)strlen(sub_text));
    assert_int_equal(acl_load(&a, path, err, sizeof err), 0);
    assert_int_equal(acl_count(a), 9);
    acl_release(&a);
    assert_int_equal(write(fd, "topic rw a\n", 11), 11);
    assert_int_equal(acl_load(&a, path, err, sizeof err), UVMQ_ECONFIG);
    assert_null(a);
    snprintf(want, sizeof want, "%s:12: unknown access word 'rw'", path);
    assert_non_null(strstr(err, want));
    close(fd);
    unlink(path);
    assert_int_equal(acl_load(&a, path, err, sizeof err), UVMQ_ECONFIG);
    snprintf(want, sizeof want, "%s: No such file or directory", path);
    assert_string_equal(err, want);
}

/* ---- views ---- */

static void views_allocate_nothing_per_check(void **state)
{
    acl_t *a = parse_ok(acl_text);
    acl_view_t *v = acl_view_create(a, "alice", 5, "c1", 2);
    uint64_t before = xmalloc_count();
    for (int i = 0; i < 1000; i++) {
        assert_true(acl_view_allows(v, "devices/c1/x", 12, ACL_READ));
        assert_false(acl_view_allows(v, "devices/c1/locked", 17, ACL_READ));
        assert_true(acl_view_allows_filter(v, "users/alice/#", 13));
    }
    assert_int_equal(xmalloc_count(), before);
    acl_view_destroy(&v);
    acl_release(&a);
}

static void views_keep_their_file_alive(void **state)
{
    acl_t *a = parse_ok(acl_text), *other = a;
    acl_view_t *v = acl_view_create(a, NULL, 0, NULL, 0);
    acl_retain(other);
    acl_release(&a);
    assert_null(a);
    acl_release(&other);
    acl_release(&other); /* NULL: nothing */
    assert_true(acl_view_allows(v, "public/x", 8, ACL_READ));
    assert_false(acl_view_allows(v, "devices//x", 10, ACL_READ)); /* no id: no %c pattern */
    acl_view_destroy(&v);
    acl_view_destroy(&v); /* NULL: nothing */
}

static void pattern_that_expands_to_nothing_grants_nothing(void **state)
{
    acl_t *a = parse_ok("pattern read %c\npattern read %u\n");
    acl_view_t *v = acl_view_create(a, "", 0, "", 0);
    assert_false(acl_view_allows_filter(v, "#", 1));
    assert_false(acl_view_allows_filter(v, "+", 1));
    acl_view_destroy(&v);
    acl_release(&a);
    a = parse_ok("pattern read %c/%u\n"); /* "/": two empty levels, a real filter */
    v = acl_view_create(a, "", 0, "", 0);
    assert_true(acl_view_allows_filter(v, "#", 1));
    assert_true(acl_view_allows(v, "/", 1, ACL_READ));
    assert_false(acl_view_allows(v, "a", 1, ACL_READ));
    acl_view_destroy(&v);
    acl_release(&a);
}

static void view_of_huge_id_is_refused_past_the_limit(void **state)
{
    size_t idlen = 65535;
    char *id = malloc(idlen);
    memset(id, 'i', idlen);
    acl_t *a = parse_ok("pattern read %c/%c/%c/%c/%c/%c/%c/%c/%c/%c/%c/%c/%c/%c/%c/%c/%c\n"
                        "topic read x\n");
    assert_null(acl_view_create(a, NULL, 0, id, idlen)); /* 17 x 64 KiB > 1 MiB */
    acl_view_t *v = acl_view_create(a, NULL, 0, id, 1000);
    assert_non_null(v);
    acl_view_destroy(&v);
    acl_release(&a);
    free(id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(filters_match_names_as_mqtt_says),
        cmocka_unit_test(deny_filters_cover_what_they_must),
        cmocka_unit_test(filters_meet_when_some_topic_matches_both),
        cmocka_unit_test(cover_and_meet_agree_with_matching_every_topic),
        cmocka_unit_test(filters_are_valid_as_mqtt_says),
        cmocka_unit_test(acl_checks_follow_mosquitto_rules),
        cmocka_unit_test(acl_with_nothing_matching_refuses),
        cmocka_unit_test(subscribe_checks_cover_and_meet),
        cmocka_unit_test(subscribe_checks_use_expanded_patterns),
        cmocka_unit_test(acl_refuses_bad_lines_naming_file_and_line),
        cmocka_unit_test(acl_refuses_nul_byte_and_overlong_names),
        cmocka_unit_test(acl_load_reads_a_file_and_names_it),
        cmocka_unit_test(views_allocate_nothing_per_check),
        cmocka_unit_test(views_keep_their_file_alive),
        cmocka_unit_test(pattern_that_expands_to_nothing_grants_nothing),
        cmocka_unit_test(view_of_huge_id_is_refused_past_the_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

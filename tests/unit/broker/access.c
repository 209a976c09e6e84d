/*
 * Unit tests for broker/access.c: the ACL checks of a session (publish,
 * subscribe, delivery through the session's cache of decisions), a
 * session's user, and SIGHUP's reload of the ACL file, which sessions
 * see at their next check. No sockets and no thread pool: the broker is
 * built by hand with access__create over a temporary ACL file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/broker/fixture.h"

typedef struct fixture_s {
    broker_config_t cfg;
    broker_t b;
    loop_t l;
    char dir[64];
    char acl[96];
} fixture_t;

/* Writes the ACL file f->acl. */
static void write_acl(fixture_t *f, const char *text)
{
    FILE *fp = fopen(f->acl, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static const char acl_v1[] = "topic read public/#\n"
                             "user alice\n"
                             "topic readwrite sensors/#\n"
                             "topic deny sensors/secret/#\n"
                             "topic read $SYS/#\n"
                             "pattern readwrite clients/%c/#\n";

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    fx_broker(&f->cfg, &f->b, &f->l);
    strcpy(f->dir, "/tmp/uvmq-access-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->acl, sizeof f->acl, "%s/acl", f->dir);
    write_acl(f, acl_v1);
    f->cfg.acl_file = strdup(f->acl);
    assert_int_equal(access__create(&f->b), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    access__destroy(&f->b);
    fx_loop_dispose(&f->l);
    unlink(f->acl);
    rmdir(f->dir);
    broker_config_dispose(&f->cfg);
    free(f);
    msg_pool_drain();
    return 0;
}

/* A session of l named id for user (NULL: anonymous). */
static sess_t *sess(fixture_t *f, const char *id, const char *user)
{
    sess_t *s = sess__create(id, strlen(id), &f->cfg);
    s->loop = &f->l;
    access__sess_set_user(s, user, user != NULL ? strlen(user) : 0);
    return s;
}

static msg_t *msg(fixture_t *f, const char *topic)
{
    pkt_bin_t t = {(const uint8_t *)topic, strlen(topic)};
    pkt_bin_t p = {(const uint8_t *)"x", 1};
    msg_t *m = publish__msg_from(&f->b, t, p, NULL, 0, 0, NULL);
    assert_non_null(m);
    return m;
}

/* access__may_read on a fresh message of topic t. */
static int reads(fixture_t *f, sess_t *s, const char *t)
{
    msg_t *m = msg(f, t);
    int ok = access__may_read(&f->l, s, m);
    msg_release(&m);
    return ok;
}

static void acl_on_is_the_configured_file(void **state)
{
    fixture_t *f = *state;
    assert_true(access__acl_on(&f->b));
    assert_false(access__passwd_on(&f->b));
}

static void user_block_grants_and_denies_reads(void **state)
{
    fixture_t *f = *state;
    sess_t *s = sess(f, "a1", "alice");
    assert_true(reads(f, s, "sensors/a/temp"));
    assert_false(reads(f, s, "sensors/secret/key")); /* deny first */
    assert_false(reads(f, s, "public/news"));        /* the anonymous block is not hers */
    assert_true(reads(f, s, "$SYS/broker/uptime"));
    assert_true(reads(f, s, "clients/a1/inbox")); /* pattern, %c */
    assert_false(reads(f, s, "clients/a2/inbox"));
    /* The cache answers the same again, deny or grant. */
    assert_true(reads(f, s, "sensors/a/temp"));
    assert_false(reads(f, s, "sensors/secret/key"));
    sess__destroy(NULL, s);
}

static void anonymous_session_gets_the_lines_before_the_first_user(void **state)
{
    fixture_t *f = *state;
    sess_t *s = sess(f, "anon", NULL);
    assert_true(reads(f, s, "public/news"));
    assert_false(reads(f, s, "sensors/a/temp"));
    assert_false(reads(f, s, "$SYS/broker/uptime")); /* # does not match $ topics */
    assert_false(access__may_publish(&f->l, s, "public/news", 11)); /* read only */
    sess__destroy(NULL, s);
}

static void long_topics_are_checked_without_the_cache(void **state)
{
    fixture_t *f = *state;
    char t[ACCESS_TOPIC_INLINE + 40];
    sess_t *s = sess(f, "a1", "alice");
    memset(t, 'x', sizeof t - 1);
    t[sizeof t - 1] = '\0';
    memcpy(t, "sensors/", 8);
    assert_true(reads(f, s, t));
    memcpy(t, "sensorz/", 8);
    assert_false(reads(f, s, t));
    sess__destroy(NULL, s);
}

static void publish_and_subscribe_follow_write_and_read(void **state)
{
    fixture_t *f = *state;
    sess_t *s = sess(f, "a1", "alice");
    uint64_t before = atomic_load(&f->b.cnt.acl_denied_publish);
    assert_true(access__may_publish(&f->l, s, "sensors/a", 9));
    assert_false(access__may_publish(&f->l, s, "other/a", 7));
    assert_false(access__may_publish(&f->l, s, "sensors/secret/a", 16));
    assert_int_equal(atomic_load(&f->b.cnt.acl_denied_publish), before + 2);
    assert_true(access__may_subscribe(&f->l, s, "sensors/#", 9));
    assert_true(access__may_subscribe(&f->l, s, "#", 1)); /* reads some of it */
    assert_false(access__may_subscribe(&f->l, s, "sensors/secret/#", 16)); /* denied all */
    assert_false(access__may_subscribe(&f->l, s, "other/#", 7));
    sess__destroy(NULL, s);
}

static void reload_changes_what_sessions_may_read(void **state)
{
    fixture_t *f = *state;
    sess_t *s = sess(f, "a1", "alice");
    assert_true(reads(f, s, "sensors/a/temp")); /* cached under the old file */
    write_acl(f, "user alice\ntopic read other/#\n");
    access__reload(&f->b);
    assert_false(reads(f, s, "sensors/a/temp"));
    assert_true(reads(f, s, "other/x"));
    /* A file with an error keeps the one in force. */
    write_acl(f, "user alice\ntopic read other/#\nbogus line\n");
    access__reload(&f->b);
    assert_true(reads(f, s, "other/x"));
    sess__destroy(NULL, s);
}

static void a_new_user_drops_the_old_view(void **state)
{
    fixture_t *f = *state;
    sess_t *s = sess(f, "a1", NULL);
    assert_false(reads(f, s, "sensors/a/temp"));
    access__sess_set_user(s, "alice", 5); /* a reconnect under her name */
    assert_string_equal(access__sess_user(s), "alice");
    assert_true(reads(f, s, "sensors/a/temp"));
    sess__destroy(NULL, s);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(acl_on_is_the_configured_file),
        T(user_block_grants_and_denies_reads),
        T(anonymous_session_gets_the_lines_before_the_first_user),
        T(long_topics_are_checked_without_the_cache),
        T(publish_and_subscribe_follow_write_and_read),
        T(reload_changes_what_sessions_may_read),
        T(a_new_user_drops_the_old_view),
    };
    return cmocka_run_group_tests_name("broker/access", tests, NULL, NULL);
}

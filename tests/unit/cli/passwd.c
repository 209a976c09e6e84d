/*
 * Unit tests for cli/passwd.c (`uvmq passwd`): the line editing that keeps
 * comments, blank lines and the users' order; -U on plaintext lines; the
 * user-name and flag rules; and whole runs of cli_passwd -b in a fresh
 * mkdtemp directory per test, read back with auth/'s passwd_load and
 * passwd_verify. The prompt needs a terminal: tests/integration/passwd.sh
 * drives it through a pty.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/passwd.c"

/* Per-test state: a temp dir and the password file's path in it. */
struct fixture {
    char dir[64];
    char path[128];
    char err[ERR_MAX];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);

    assert_non_null(f);
    strcpy(f->dir, "/tmp/uvmq-passwd-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/passwd", f->dir);
    *state = f;
    return 0;
}

/* Removes every file in the dir (a test may leave several), then it. */
static int teardown(void **state)
{
    struct fixture *f = *state;
    DIR *d = opendir(f->dir);
    struct dirent *e;
    char p[512];

    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
        unlink(p);
    }
    if (d != NULL) closedir(d);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Number of entries in the dir besides . and .. */
static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

/* The file's bytes, NUL-terminated; the caller frees them. */
static char *read_file(const char *path)
{
    FILE *fp = fopen(path, "r");
    char *buf = calloc(1, 1 << 16);
    size_t n;

    assert_non_null(fp);
    assert_non_null(buf);
    n = fread(buf, 1, (1 << 16) - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

/* An argv of "passwd", arg and the arguments after it up to a NULL. */
struct args {
    char *argv[16];
    int argc;
};

static void args_make(struct args *a, const char *arg, va_list ap)
{
    a->argv[0] = "passwd";
    a->argc = 1;
    for (const char *s = arg; s != NULL && a->argc < 15; s = va_arg(ap, const char *))
        a->argv[a->argc++] = (char *)s;
    a->argv[a->argc] = NULL;
}

/* Runs cli_passwd on a NULL-terminated argument list. */
static int run_passwd(const char *arg, ...)
{
    struct args a;
    va_list ap;

    va_start(ap, arg);
    args_make(&a, arg, ap);
    va_end(ap);
    return cli_passwd(a.argc, a.argv);
}

/* Parses a NULL-terminated argument list into *c. */
static int parse(struct cmd *c, char *err, const char *arg, ...)
{
    struct args a;
    va_list ap;

    va_start(ap, arg);
    args_make(&a, arg, ap);
    va_end(ap);
    err[0] = '\0';
    return parse_args(a.argc, a.argv, c, err, ERR_MAX);
}

/* edit_user over text; checks the result and the count of matches. */
static void expect_edit(const char *text, const char *user, const char *hash, int found,
                        const char *want)
{
    struct text out = {0};

    assert_int_equal(edit_user(&out, text, strlen(text), user, hash), found);
    text_add(&out, "", 1);
    assert_string_equal(out.p, want);
    text_dispose(&out);
}

/* Loads path and checks user's password against pass (0 or UVMQ_EAUTH). */
static int verify(const char *path, const char *user, const char *pass)
{
    passwd_t *pw = NULL;
    char err[ERR_MAX];
    int rc;

    assert_int_equal(passwd_load(&pw, path, err, sizeof err), 0);
    rc = passwd_verify(passwd_find(pw, user, strlen(user)), pass, strlen(pass));
    passwd_release(&pw);
    return rc;
}

/* ---- line editing ---- */

static void edit_replaces_the_users_line_in_place(void **state)
{
    (void)state;
    expect_edit("# users\n\nalice:old\nbob:x\n", "alice", "NEW", 1,
                "# users\n\nalice:NEW\nbob:x\n");
    expect_edit("alice:x\nbob:old", "bob", "NEW", 1, "alice:x\nbob:NEW\n");
}

static void edit_appends_a_new_user_after_a_missing_newline(void **state)
{
    (void)state;
    expect_edit("alice:x", "bob", "H", 0, "alice:x\nbob:H\n");
    expect_edit("alice:x\n\n", "bob", "H", 0, "alice:x\n\nbob:H\n");
    expect_edit("", "bob", "H", 0, "bob:H\n");
}

static void edit_matches_the_whole_user_name_only(void **state)
{
    (void)state;
    expect_edit("alice:x\nal:y\n", "al", "H", 1, "alice:x\nal:H\n");
    expect_edit("alice:x\n", "alic", "H", 0, "alice:x\nalic:H\n");
    expect_edit("al:x\n", "alice", "H", 0, "al:x\nalice:H\n");
    /* Blanks around a name do not count, as passwd_parse reads it. */
    expect_edit("  alice\t:x\nbob:y\n", "alice", "H", 1, "alice:H\nbob:y\n");
}

static void edit_leaves_comments_that_look_like_users(void **state)
{
    (void)state;
    expect_edit("#alice:x\n  # alice:y\n", "alice", "H", 0, "#alice:x\n  # alice:y\nalice:H\n");
}

static void edit_deletes_only_the_users_line(void **state)
{
    (void)state;
    expect_edit("a:1\n# c\nbob:2\nc:3", "bob", NULL, 1, "a:1\n# c\nc:3");
    expect_edit("a:1\nc:3\n", "zed", NULL, 0, "a:1\nc:3\n");
    expect_edit("bob:2\n", "bob", NULL, 1, "");
}

static void edit_keeps_crlf_lines_it_does_not_change(void **state)
{
    (void)state;
    expect_edit("# c\r\na:1\r\nb:2\r\n", "a", "H", 1, "# c\r\na:H\nb:2\r\n");
}

/* ---- -U ---- */

static void upgrade_hashes_plaintext_lines_and_keeps_the_rest(void **state)
{
    struct fixture *f = *state;
    const char *text = "# plain\nalice:apple\n\n  bob  :  pass with : colon  \n";
    struct text out = {0};
    struct cmd c = {.type = PASSWD_SHA512, .file = "pw"};
    passwd_t *pw = NULL;
    char *nl;

    assert_int_equal(upgrade_text(&out, text, strlen(text), &c, f->err, sizeof f->err), 0);
    text_add(&out, "", 1);
    assert_memory_equal(out.p, "# plain\nalice:$6$", 17);
    nl = strchr(out.p + 8, '\n');
    assert_memory_equal(nl, "\n\nbob:$6$", 9);
    assert_null(strstr(out.p, "apple"));
    assert_int_equal(passwd_parse(&pw, out.p, out.len - 1, "pw", f->err, sizeof f->err), 0);
    assert_int_equal(passwd_count(pw), 2);
    assert_int_equal(passwd_verify(passwd_find(pw, "alice", 5), "apple", 5), 0);
    /* Trimmed, as mosquitto reads a plaintext file; a ':' is kept. */
    assert_int_equal(passwd_verify(passwd_find(pw, "bob", 3), "pass with : colon", 17), 0);
    passwd_release(&pw);
    text_dispose(&out);
}

static void upgrade_copies_hashed_lines_byte_for_byte(void **state)
{
    struct fixture *f = *state;
    char hash[PASSWD_HASH_MAX], text[600];
    struct text out = {0};
    struct cmd c = {.type = PASSWD_SHA512, .file = "pw"};

    assert_int_equal(passwd_hash(PASSWD_PBKDF2, "x", 1, 0, hash, sizeof hash), 0);
    snprintf(text, sizeof text, "a:%s\n# c\n", hash);
    assert_int_equal(upgrade_text(&out, text, strlen(text), &c, f->err, sizeof f->err), 0);
    assert_int_equal(out.len, strlen(text));
    assert_memory_equal(out.p, text, out.len);
    text_dispose(&out);
}

static void upgrade_names_the_line_of_an_empty_password(void **state)
{
    struct fixture *f = *state;
    const char *text = "a:1\n# c\nb:  \n";
    struct text out = {0};
    struct cmd c = {.type = PASSWD_SHA512, .file = "pw"};

    assert_int_equal(upgrade_text(&out, text, strlen(text), &c, f->err, sizeof f->err),
                     UVMQ_ECONFIG);
    assert_string_equal(f->err, "pw:3: the password is empty");
    text_dispose(&out);
}

/* ---- the command line ---- */

static void user_names_follow_the_file_format(void **state)
{
    struct fixture *f = *state;
    static const char *const bad[] = {"", "a:b", "a\nb", "a\tb", "#a", " a", "a ", "\xff"};
    const char *utf8 = "h\xc3\xa9l\xc3\xa8ne d"; /* "hélène d" */
    char *longest = malloc(PASSWD_USER_MAX + 2);

    assert_int_equal(check_user("alice", 5, "pw", f->err, sizeof f->err), 0);
    assert_int_equal(check_user(utf8, strlen(utf8), "pw", f->err, sizeof f->err), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f->err[0] = '\0';
        assert_int_equal(check_user(bad[i], strlen(bad[i]), "pw", f->err, sizeof f->err),
                         UVMQ_ECONFIG);
        assert_memory_equal(f->err, "pw: the user name ", 18);
    }
    assert_non_null(longest);
    memset(longest, 'u', PASSWD_USER_MAX + 1);
    assert_int_equal(check_user(longest, PASSWD_USER_MAX, "pw", f->err, sizeof f->err), 0);
    assert_int_equal(check_user(longest, PASSWD_USER_MAX + 1, "pw", f->err, sizeof f->err),
                     UVMQ_ECONFIG);
    free(longest);
}

static void flags_parse_like_mosquitto_passwd(void **state)
{
    struct fixture *f = *state;
    struct cmd c;

    assert_int_equal(parse(&c, f->err, "pw", "alice", NULL), 0);
    assert_int_equal(c.type, PASSWD_ARGON2ID);
    assert_string_equal(c.file, "pw");
    assert_string_equal(c.user, "alice");
    assert_null(c.pass);
    assert_int_equal(parse(&c, f->err, "-H", "sha512-pbkdf2", "-I", "5000", "-c", "-b", "pw",
                           "alice", "-starts-with-a-dash", NULL),
                     0);
    assert_int_equal(c.type, PASSWD_PBKDF2);
    assert_int_equal(c.iterations, 5000);
    assert_true(c.create && c.batch);
    assert_string_equal(c.pass, "-starts-with-a-dash");
    assert_int_equal(parse(&c, f->err, "-H", "sha512", "-U", "pw", NULL), 0);
    assert_true(c.upgrade && c.user == NULL && c.type == PASSWD_SHA512);
    assert_int_equal(parse(&c, f->err, "-D", "pw", "bob", NULL), 0);
    assert_true(c.del);
    assert_int_equal(parse(&c, f->err, "--help", NULL), ARGS_HELP);
}

static void flags_refuse_what_mosquitto_passwd_refuses(void **state)
{
    struct fixture *f = *state;
    struct cmd c;

    assert_int_equal(parse(&c, f->err, "-c", "-D", "pw", "a", NULL), UVMQ_EINVAL);
    assert_string_equal(f->err, "-c and -D cannot be used together");
    assert_int_equal(parse(&c, f->err, "-U", "-b", "pw", NULL), UVMQ_EINVAL);
    assert_int_equal(parse(&c, f->err, "-D", "-b", "pw", "a", NULL), UVMQ_EINVAL);
    assert_int_equal(parse(&c, f->err, "-I", "9", "pw", "a", NULL), UVMQ_EINVAL);
    assert_string_equal(f->err, "-I goes with -H sha512-pbkdf2 only");
    assert_int_equal(parse(&c, f->err, "-b", "pw", "a", NULL), UVMQ_EINVAL);
    assert_string_equal(f->err, "expected FILE USER PASSWORD");
    assert_int_equal(parse(&c, f->err, NULL), UVMQ_EINVAL);
    assert_int_equal(parse(&c, f->err, "-x", "pw", "a", NULL), UVMQ_EINVAL);
    assert_string_equal(f->err, "unknown option -x");
    assert_int_equal(parse(&c, f->err, "-H", NULL), UVMQ_EINVAL);
    assert_string_equal(f->err, "-H needs a value");
    /* Options end at FILE, as in mosquitto_passwd. */
    assert_int_equal(parse(&c, f->err, "pw", "-c", "a", NULL), UVMQ_EINVAL);
    assert_int_equal(parse(&c, f->err, "-H", "md5", "pw", "a", NULL), UVMQ_ECONFIG);
    assert_int_equal(parse(&c, f->err, "-H", "sha512-pbkdf2", "-I", "0", "pw", "a", NULL),
                     UVMQ_ECONFIG);
    assert_int_equal(parse(&c, f->err, "-H", "sha512-pbkdf2", "-I", "12x", "pw", "a", NULL),
                     UVMQ_ECONFIG);
    assert_int_equal(parse(&c, f->err, "-b", "pw", "a", "", NULL), UVMQ_ECONFIG);
    assert_string_equal(f->err, "pw: the password is empty");
    assert_int_equal(parse(&c, f->err, "pw", "a:b", NULL), UVMQ_ECONFIG);
    assert_string_equal(f->err, "pw: the user name holds a ':'");
}

/* ---- whole runs ---- */

static void run_creates_a_0600_file_that_passwd_load_reads(void **state)
{
    struct fixture *f = *state;
    struct stat st;

    assert_int_equal(run_passwd("-c", "-b", f->path, "alice", "apple", NULL), 0);
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(verify(f->path, "alice", "apple"), 0);
    assert_int_equal(verify(f->path, "alice", "apricot"), UVMQ_EAUTH);
    assert_int_equal(count_files(f->dir), 1);
}

static void run_adds_updates_and_deletes_keeping_comments(void **state)
{
    struct fixture *f = *state;
    char *text;

    assert_int_equal(run_passwd("-H", "sha512", "-c", "-b", f->path, "alice", "a1", NULL), 0);
    text = read_file(f->path);
    write_file(f->path, "# top\n");
    {
        FILE *fp = fopen(f->path, "a");
        assert_non_null(fp);
        fputs(text, fp);
        fputs("\n# bottom\n", fp);
        fclose(fp);
    }
    free(text);
    assert_int_equal(run_passwd("-H", "sha512-pbkdf2", "-b", f->path, "bob", "b1", NULL), 0);
    assert_int_equal(run_passwd("-H", "sha512", "-b", f->path, "alice", "a2", NULL), 0);
    assert_int_equal(verify(f->path, "alice", "a2"), 0);
    assert_int_equal(verify(f->path, "bob", "b1"), 0);
    text = read_file(f->path);
    assert_memory_equal(text, "# top\nalice:$6$", 15);
    assert_non_null(strstr(text, "\n\n# bottom\nbob:$7$1000$"));
    free(text);
    assert_int_equal(run_passwd("-D", f->path, "alice", NULL), 0);
    text = read_file(f->path);
    assert_memory_equal(text, "# top\n\n# bottom\nbob:$7$", 23);
    free(text);
    assert_int_equal(run_passwd("-D", f->path, "alice", NULL), 1);
    assert_int_equal(count_files(f->dir), 1);
}

static void run_refuses_a_malformed_file_and_leaves_it(void **state)
{
    struct fixture *f = *state;
    const char *bad = "# ok\nalice:plaintext\n";
    char *text;

    write_file(f->path, bad);
    chmod(f->path, 0644);
    assert_int_equal(run_passwd("-b", f->path, "bob", "b", NULL), 1);
    assert_int_equal(run_passwd("-D", f->path, "alice", NULL), 1);
    text = read_file(f->path);
    assert_string_equal(text, bad);
    free(text);
    assert_int_equal(count_files(f->dir), 1);
    /* -U makes it good. */
    assert_int_equal(run_passwd("-H", "sha512", "-U", f->path, NULL), 0);
    assert_int_equal(verify(f->path, "alice", "plaintext"), 0);
}

static void run_refuses_a_missing_file_without_c(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(run_passwd("-b", f->path, "bob", "b", NULL), 1);
    assert_int_equal(count_files(f->dir), 0);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(edit_replaces_the_users_line_in_place),
        T(edit_appends_a_new_user_after_a_missing_newline),
        T(edit_matches_the_whole_user_name_only),
        T(edit_leaves_comments_that_look_like_users),
        T(edit_deletes_only_the_users_line),
        T(edit_keeps_crlf_lines_it_does_not_change),
        T(upgrade_hashes_plaintext_lines_and_keeps_the_rest),
        T(upgrade_copies_hashed_lines_byte_for_byte),
        T(upgrade_names_the_line_of_an_empty_password),
        T(user_names_follow_the_file_format),
        T(flags_parse_like_mosquitto_passwd),
        T(flags_refuse_what_mosquitto_passwd_refuses),
        T(run_creates_a_0600_file_that_passwd_load_reads),
        T(run_adds_updates_and_deletes_keeping_comments),
        T(run_refuses_a_malformed_file_and_leaves_it),
        T(run_refuses_a_missing_file_without_c),
    };

    return cmocka_run_group_tests_name("cli/passwd", tests, NULL, NULL);
}

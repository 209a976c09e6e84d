/*
 * Unit tests for auth/passwd.c: lines made by the real tools (pasted
 * below) verify with their password and refuse others; new hashes round
 * trip; every malformed line is a load error naming the file and line;
 * comments, blanks and CRLF are read as mosquitto reads them; lookups are
 * exact. Includes passwd.c to test its base64 decoder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "auth/passwd.c"

/* mosquitto_passwd 2.0.11 -H sha512 -b F alice 'correct horse' */
#define ALICE_HASH                                                                                 \
    "$6$pzQ3LovKFyLXCQK6$G/yBA2EEUZbaK8UHGnRd3aBbSMj9V5eSu/rlXZG2ZjgSaRFzMrafQ6ATY9FY3PqIcO2DoOrX" \
    "cnbnQjUOBKpQpA=="
#define ALICE_6 "alice:" ALICE_HASH
/* mosquitto_passwd 2.0.11 -b F bob 'b0b-Secret!' (its default: $7$, 101) */
#define BOB_7                                                                                      \
    "bob:$7$101$H8ErwJhyN5+YtRBd$D9GPVslwTSA87JHU1Y3XpWgd/R5tA+vFssIwTh0tcYqREMPQ28kp6jlc3iqCnKU"  \
    "vNjQWL52e0/YtgJ2/6FWJ2A=="
/* mosquitto_passwd 2.0.11 -I 7 -b F carol 'pässwörd' (UTF-8) */
#define CAROL_7                                                                                    \
    "carol:$7$7$4Aumy9xLrZTnY4+d$nmTvM3wuVDyYFc+savz5fabilJgaGD/pXT0K/+OZ+oewBOGrO6YY8itksPkCyBT"  \
    "jYN3l4FEelkN5FU9L18Jlew=="
/* python3 hashlib.pbkdf2_hmac('sha512', b'long salt pass', <64 random
 * bytes>, 1000, 64): the shape mosquitto 2.1 writes */
#define DAVE_7                                                                                     \
    "dave:$7$1000$vqxn1hiFFqkYR3wAnGHlsEdSK/Tc2UgFv/VWrNd1p8RNPuz07hplhp50hgpDWcdnMo5/MrEBWMZF4rr" \
    "BCG7EHA==$Rx8ber3F/DpFKcoUwzrtQAluYnQ5ZnEJPd+kmQp4gzUNjSSC9j2QVkVPk2+x2cUr9NJFDsP0YkHaHYhhV"  \
    "eBfRA=="
/* printf %s 'argon pass' | argon2 SALTSALTsaltsalt -id -t 1 -m 10 -p 1 -e */
#define ERIN_A2                                                                                    \
    "erin:$argon2id$v=19$m=1024,t=1,p=1$U0FMVFNBTFRzYWx0c2FsdA$z9KuxcgBmUHsjgVjzWErMPj9vArIbkE8m"  \
    "gw+tmqdTbY"
/* printf %s 'argon pass' | argon2 SALTSALTsaltsalt -id -t 2 -m 4 -p 2 -l 32 -e */
#define FRANK_A2                                                                                   \
    "frank:$argon2id$v=19$m=16,t=2,p=2$U0FMVFNBTFRzYWx0c2FsdA$KwTLlGnPrQSuOojx7+YmAtbgd1JRze74uY"  \
    "oUSLdEfJs"
/* printf %s 'argon pass 2' | argon2 'a 64-byte salt for a real mosquitto
 * 2.1 argon2id hash, padded...' -id -t 1 -k 47104 -p 1 -l 64 -e:
 * mosquitto 2.1's parameters */
#define GRACE_A2                                                                                   \
    "grace:$argon2id$v=19$m=47104,t=1,p=1$YSA2NC1ieXRlIHNhbHQgZm9yIGEgcmVhbCBtb3NxdWl0dG8gMi4xIG"  \
    "FyZ29uMmlkIGhhc2gsIHBhZGRlZC4uLg$lYZUpyYD1295MURgLDUIyl4JUBtZHUao9jPM8/ooQYoyWwIbg6V5RrK3U8"  \
    "t8AdxLvFki8XuMOWsbSj1iQcydGA"

/* 66 bytes of 'A' in base64: one byte too many for a salt. */
#define SALT_66                                                                                    \
    "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"
/* The salt of ALICE_6, which no message may quote. */
#define ALICE_SALT "pzQ3LovKFyLXCQK6"

static passwd_t *parse_ok(const char *text)
{
    passwd_t *pw = NULL;
    char err[256] = "";
    int rc = passwd_parse(&pw, text, strlen(text), "test.pw", err, sizeof err);
    if (rc != 0) fail_msg("parse failed: %s", err);
    assert_non_null(pw);
    return pw;
}

/* The line holds user's hash: pass verifies, near misses do not. */
static void check_vector(const char *line, const char *user, const char *pass)
{
    passwd_t *pw = parse_ok(line);
    const passwd_user_t *u = passwd_find(pw, user, strlen(user));
    assert_non_null(u);
    assert_string_equal(passwd_user_hash(u), strchr(line, ':') + 1);
    assert_int_equal(passwd_verify(u, pass, strlen(pass)), 0);
    assert_int_equal(passwd_verify(u, pass, strlen(pass) - 1), UVMQ_EAUTH);
    assert_int_equal(passwd_verify(u, "wrong", 5), UVMQ_EAUTH);
    assert_int_equal(passwd_verify(u, NULL, 0), UVMQ_EAUTH);
    passwd_release(&pw);
    assert_null(pw);
}

static void passwd_verifies_mosquitto_sha512_hash(void **state)
{
    check_vector(ALICE_6, "alice", "correct horse");
}

static void passwd_verifies_mosquitto_2_0_pbkdf2_hash(void **state)
{
    check_vector(BOB_7, "bob", "b0b-Secret!");
    check_vector(CAROL_7, "carol", "pässwörd");
}

static void passwd_verifies_pbkdf2_hash_with_64_byte_salt(void **state)
{
    check_vector(DAVE_7, "dave", "long salt pass");
}

static void passwd_verifies_argon2id_cli_hashes(void **state)
{
    check_vector(ERIN_A2, "erin", "argon pass");
    check_vector(FRANK_A2, "frank", "argon pass");
}

static void passwd_verifies_argon2id_hash_with_mosquitto_parameters(void **state)
{
    check_vector(GRACE_A2, "grace", "argon pass 2");
}

static void passwd_refuses_unknown_user_after_dummy_work(void **state)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(passwd_verify(NULL, "anything", 8), UVMQ_EAUTH);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    assert_true(ms > 2.0); /* 46 MiB of argon2id takes tens of ms */
    assert_int_equal(passwd_verify(NULL, NULL, 0), UVMQ_EAUTH);
    /* The dummy is a well-formed hash with the parameters of a new one. */
    char line[sizeof dummy_hash + 8];
    snprintf(line, sizeof line, "dummy:%s", dummy_hash);
    passwd_t *pw = parse_ok(line);
    assert_int_equal(passwd_verify(passwd_find(pw, "dummy", 5), "no user", 7), 0);
    passwd_release(&pw);
    assert_memory_equal(dummy_hash, "$argon2id$v=19$m=47104,t=1,p=1$", 31);
}

/* A new hash of type parses, verifies and refuses a wrong password. */
/* The decoy an unknown user is checked against is the file's first user,
 * so a refusal costs what the file's own hashes cost. */
static void passwd_decoy_is_the_first_user(void **state)
{
    passwd_t *pw = parse_ok(BOB_7 "\n" ALICE_6 "\n");
    const passwd_user_t *d = passwd_decoy(pw);
    assert_non_null(d);
    assert_ptr_equal(d, passwd_find(pw, "bob", 3));
    passwd_release(&pw);
    pw = parse_ok("# nobody\n");
    assert_null(passwd_decoy(pw));
    passwd_release(&pw);
}

static void round_trip(enum passwd_type type, unsigned iterations, const char *prefix)
{
    char hash[PASSWD_HASH_MAX], line[PASSWD_HASH_MAX + 16];
    const char *pass = "new päss\x01word";
    assert_int_equal(passwd_hash(type, pass, strlen(pass), iterations, hash, sizeof hash), 0);
    assert_memory_equal(hash, prefix, strlen(prefix));
    snprintf(line, sizeof line, "zed:%s\n", hash);
    passwd_t *pw = parse_ok(line);
    const passwd_user_t *u = passwd_find(pw, "zed", 3);
    assert_non_null(u);
    assert_int_equal(passwd_verify(u, pass, strlen(pass)), 0);
    assert_int_equal(passwd_verify(u, "new päss", 9), UVMQ_EAUTH);
    passwd_release(&pw);
}

static void passwd_hash_output_round_trips_for_each_type(void **state)
{
    char hash[PASSWD_HASH_MAX];
    round_trip(PASSWD_SHA512, 0, "$6$");
    round_trip(PASSWD_PBKDF2, 0, "$7$1000$");
    round_trip(PASSWD_PBKDF2, 5, "$7$5$");
    round_trip(PASSWD_ARGON2ID, 0, "$argon2id$v=19$m=47104,t=1,p=1$");
    /* 12-byte salts (16 base64 characters), as mosquitto 2.0 reads them. */
    assert_int_equal(passwd_hash(PASSWD_PBKDF2, "x", 1, 0, hash, sizeof hash), 0);
    assert_int_equal(strchr(hash + 8, '$') - (hash + 8), 16);
    assert_int_equal(passwd_hash(PASSWD_SHA512, "x", 1, 0, hash, sizeof hash), 0);
    assert_int_equal(strchr(hash + 3, '$') - (hash + 3), 16);
}

static void passwd_hash_makes_a_new_salt_each_time(void **state)
{
    char a[PASSWD_HASH_MAX], b[PASSWD_HASH_MAX];
    assert_int_equal(passwd_hash(PASSWD_PBKDF2, "same", 4, 1, a, sizeof a), 0);
    assert_int_equal(passwd_hash(PASSWD_PBKDF2, "same", 4, 1, b, sizeof b), 0);
    assert_string_not_equal(a, b);
}

static void passwd_hash_refuses_unknown_type_and_short_buffer(void **state)
{
    char hash[PASSWD_HASH_MAX];
    assert_int_equal(passwd_hash((enum passwd_type)5, "x", 1, 0, hash, sizeof hash), UVMQ_EINVAL);
    assert_int_equal(passwd_hash(PASSWD_PBKDF2, "x", 1, 0, hash, 40), UVMQ_EINVAL);
    assert_int_equal(passwd_hash(PASSWD_ARGON2ID, "x", 1, 0, hash, 40), UVMQ_EINVAL);
    assert_int_equal(passwd_hash(PASSWD_PBKDF2, "x", 1, 0x80000000u, hash, sizeof hash),
                     UVMQ_EINVAL);
}

/* ---- malformed files ---- */

typedef struct bad_row_s {
    const char *text;
    unsigned line;   /* the line the message must name */
    const char *why; /* a piece of the message */
} bad_row_t;

static const bad_row_t bad_rows[] = {
    {ALICE_6 "\nbob\n", 2, "no ':'"},
    {"# only a comment\n\nplain line\n", 3, "no ':'"},
    {":$6$" ALICE_SALT "$x\n", 1, "empty user name"},
    {"  \t :" ALICE_HASH "\n", 1, "empty user name"},
    {"u:\n", 1, "no hash"},
    {"u:   \r\n", 1, "no hash"},
    {"u:secret\n", 1, "plaintext"},
    {"u:$5$abc$def\n", 1, "unknown hash type"},
    {"u:$argon2i$v=19$m=1024,t=1,p=1$U0FMVFNBTFRzYWx0c2FsdA$z9KuxcgBmUHsjgVjzWErMPj9vArIbkE8m"
     "gw+tmqdTbY\n",
     1, "unknown hash type"},
    {"u:$6$\n", 1, "salt missing"},
    {"u:$6$pzQ3LovKFyLXCQK6\n", 1, "salt missing"},
    {"u:$6$pzQ3Lov!FyLXCQK6$G/yBA2EEUZbaK8UHGnRd3aBbSMj9V5eSu/rlXZG2ZjgSaRFzMrafQ6ATY9FY3PqIcO2"
     "DoOrXcnbnQjUOBKpQpA==\n",
     1, "salt missing, not base64"},
    {"u:$6$pzQ3LovKFyLXCQK$G/yBA2EEUZbaK8UHGnRd3aBbSMj9V5eSu/rlXZG2ZjgSaRFzMrafQ6ATY9FY3PqIcO2D"
     "oOrXcnbnQjUOBKpQpA==\n",
     1, "not base64"},                                  /* 15 characters: bad length */
    {"u:$6$pz=Q$G/y\n", 1, "salt missing, not base64"}, /* '=' inside */
    {"u:$6$pzR=$G/y\n", 1, "salt missing, not base64"}, /* trailing bits set */
    {"u:$6$" ALICE_SALT "$G/yBA2EEUZbaK8UHGnRd3aBbSMj9V5eSu/rlXZG2ZjgSaRFzMrafQ6ATY9FY3PqIcO2D"
     "oOrXcnbnQjUOBKpQp===\n",
     1, "hash missing, not base64"}, /* three '=' */
    {"u:$6$" ALICE_SALT "$G/yBA2EEUZbaK8UHGnRd3aBbSMj9V5eSu/rlXZG2ZjgSaRFzMrafQ6ATY9FY3PqIcO2D"
     "oOrXcnbnQjUOBKpQ\n",
     1, "hash of 63 bytes"},
    {"u:$6$" ALICE_SALT "$" ALICE_SALT "\n", 1, "hash of 12 bytes"},
    {"u:$6$" SALT_66 "$" ALICE_SALT "\n", 1, "salt of 66 bytes"},
    {"u:$6$" ALICE_SALT "$G/yBA2EEUZbaK8UHGnRd3aBbSMj9V5eSu/rlXZG2ZjgSaRFzMrafQ6ATY9FY3PqIcO2D"
     "oOrXcnbnQjUOBKpQpA==$extra\n",
     1, "hash missing, not base64"},
    {"u:$7$0$H8ErwJhyN5+YtRBd$x\n", 1, "iterations"},
    {"u:$7$-1$H8ErwJhyN5+YtRBd$x\n", 1, "iterations"},
    {"u:$7$0101$H8ErwJhyN5+YtRBd$x\n", 1, "iterations"},
    {"u:$7$2147483648$H8ErwJhyN5+YtRBd$x\n", 1, "iterations"},
    {"u:$7$H8ErwJhyN5+YtRBd$x\n", 1, "iterations"},
    {"u:$7$101$H8ErwJhyN5+YtRBd\n", 1, "salt missing"},
    {"u:$7$101$H8ErwJhyN5+YtRBd$D9GPVslwTSA87JHU\n", 1, "hash of 12 bytes"},
    {ALICE_6 "\n# comment\n\n" ALICE_6 "\n", 4, "already defined on line 1"},
    {ALICE_6 "\n  alice :" ALICE_HASH "\r\n", 2, "already defined on line 1"},
    {"u:$argon2id$v=16$m=1024,t=1,p=1$U0FMVFNBTFRzYWx0c2FsdA$z9KuxcgBmUHsjgVjzWErMPj9vArIbkE8m"
     "gw+tmqdTbY\n",
     1, "version 19"},
    {"u:$argon2id$m=1024,t=1,p=1$U0FMVFNBTFRzYWx0c2FsdA$z9KuxcgBmUHsjgVjzWErMPj9vArIbkE8mgw+tmq"
     "dTbY\n",
     1, "version 19"},
    {"u:$argon2id$v=19$m=1024,p=1,t=1$U0FMVFNBTFRzYWx0c2FsdA$z9KuxcgBmUHsjgVjzWErMPj9vArIbkE8m"
     "gw+tmqdTbY\n",
     1, "m=KIB,t=PASSES,p=LANES"},
    {"u:$argon2id$v=19$m=4,t=1,p=1$U0FMVFNBTFRzYWx0c2FsdA$z9KuxcgBmUHsjgVjzWErMPj9vArIbkE8mgw+"
     "tmqdTbY\n",
     1, "m=4 is not"},
    {"u:$argon2id$v=19$m=16,t=1,p=4$U0FMVFNBTFRzYWx0c2FsdA$z9KuxcgBmUHsjgVjzWErMPj9vArIbkE8mgw+"
     "tmqdTbY\n",
     1, "m=16 is not"},
    {"u:$argon2id$v=19$m=99999999,t=1,p=1$U0FMVFNBTFRzYWx0c2FsdA$z9KuxcgBmUHsjgVjzWErMPj9vArIbk"
     "E8mgw+tmqdTbY\n",
     1, "m=99999999 is not"},
    {"u:$argon2id$v=19$m=1024,t=0,p=1$U0FMVFNBTFRzYWx0c2FsdA$z9KuxcgBmUHsjgVjzWErMPj9vArIbkE8m"
     "gw+tmqdTbY\n",
     1, "m=KIB,t=PASSES,p=LANES"},
    {"u:$argon2id$v=19$m=1024,t=1001,p=1$U0FMVFNBTFRzYWx0c2FsdA$z9KuxcgBmUHsjgVjzWErMPj9vArIbkE"
     "8mgw+tmqdTbY\n",
     1, "t=1001 is not"},
    {"u:$argon2id$v=19$m=1024,t=1,p=65$U0FMVFNBTFRzYWx0c2FsdA$z9KuxcgBmUHsjgVjzWErMPj9vArIbkE8"
     "mgw+tmqdTbY\n",
     1, "p=65 is not"},
    {"u:$argon2id$v=19$m=1024,t=1,p=1$U0FMVA$z9KuxcgBmUHsjgVjzWErMPj9vArIbkE8mgw+tmqdTbY\n", 1,
     "salt not base64 of 8 to 64"},
    {"u:$argon2id$v=19$m=1024,t=1,p=1$U0FMVFNBTFRzYWx0c2FsdA==$z9KuxcgBmUHsjgVjzWErMPj9vArIbkE8"
     "mgw+tmqdTbY\n",
     1, "salt not base64"},
    {"u:$argon2id$v=19$m=1024,t=1,p=1$U0FMVFNBTFRzYWx0c2FsdA$z9KuxcgBmUHsjgVjzWE\n", 1,
     "hash not base64 of 16 to 64"},
    {"u:$argon2id$v=19$m=1024,t=1,p=1$U0FMVFNBTFRzYWx0c2FsdA$z9KuxcgBmUHsjgVjzWErMPj9vArIbkE8m"
     "gw+tmqdTbZ\n",
     1, "hash not base64"}, /* trailing bits set */
    {"u:$argon2id$v=19$m=1024,t=1,p=1$U0FMVFNBTFRzYWx0c2FsdA$z9KuxcgBmUHsjgVjzWErMPj9vArIbkE8m"
     "gw+tmqdTbY$more\n",
     1, "hash not base64"},
    {"u:$argon2id$v=19$m=01024,t=1,p=1$U0FMVFNBTFRzYWx0c2FsdA$z9KuxcgBmUHsjgVjzWErMPj9vArIbkE8"
     "mgw+tmqdTbY\n",
     1, "m=KIB,t=PASSES,p=LANES"},
};

static void passwd_refuses_malformed_files_naming_file_and_line(void **state)
{
    for (size_t i = 0; i < sizeof bad_rows / sizeof bad_rows[0]; i++) {
        const bad_row_t *r = &bad_rows[i];
        passwd_t *pw = (passwd_t *)1;
        char err[256] = "", want[32];
        int rc = passwd_parse(&pw, r->text, strlen(r->text), "bad.pw", err, sizeof err);
        snprintf(want, sizeof want, "bad.pw:%u: ", r->line);
        if (rc != UVMQ_ECONFIG || pw != NULL || strncmp(err, want, strlen(want)) != 0 ||
            strstr(err, r->why) == NULL || strstr(err, ALICE_SALT) || strstr(err, "secret"))
            fail_msg("row %zu: rc %d, err \"%s\"; wanted %s...%s", i, rc, err, want, r->why);
    }
}

static void passwd_rejects_line_without_colon(void **state)
{
    passwd_t *pw = NULL;
    char err[128];
    const char *text = "# users\n" ALICE_6 "\r\n\r\nbob $7$101$x\r\n";
    assert_int_equal(passwd_parse(&pw, text, strlen(text), "f", err, sizeof err), UVMQ_ECONFIG);
    assert_null(pw);
    assert_string_equal(err, "f:4: no ':' between user name and hash");
}

static void passwd_rejects_nul_byte(void **state)
{
    passwd_t *pw = NULL;
    char err[128];
    const char text[] = "al\0ice:x\n";
    assert_int_equal(passwd_parse(&pw, text, sizeof text - 1, "f", err, sizeof err), UVMQ_ECONFIG);
    assert_string_equal(err, "f:1: NUL byte in the line");
}

static void passwd_rejects_user_name_over_65535_bytes(void **state)
{
    size_t n = PASSWD_USER_MAX + 1;
    char *text = malloc(n + sizeof ALICE_HASH + 2);
    passwd_t *pw = NULL;
    char err[128];
    memset(text, 'u', n);
    sprintf(text + n, ":%s\n", ALICE_HASH);
    assert_int_equal(passwd_parse(&pw, text, strlen(text), "f", err, sizeof err), UVMQ_ECONFIG);
    assert_non_null(strstr(err, "longer than 65535"));
    text[1] = ':'; /* now "u:uuu...": the user is "u", the hash is junk */
    assert_int_equal(passwd_parse(&pw, text, strlen(text), "f", err, sizeof err), UVMQ_ECONFIG);
    assert_non_null(strstr(err, "plaintext"));
    free(text);
}

static void passwd_reads_comments_blanks_and_crlf_as_mosquitto(void **state)
{
    const char *text = "# made by mosquitto_passwd\r\n"
                       "\r\n"
                       "   # an indented comment\n"
                       " \t alice \t:  " ALICE_HASH "  \r\n"
                       "john doe:" ALICE_HASH; /* no final newline */
    passwd_t *pw = parse_ok(text);
    assert_int_equal(passwd_count(pw), 2);
    const passwd_user_t *u = passwd_find(pw, "alice", 5);
    assert_non_null(u);
    assert_string_equal(passwd_user_hash(u), ALICE_HASH);
    assert_int_equal(passwd_verify(u, "correct horse", 13), 0);
    assert_non_null(passwd_find(pw, "john doe", 8));
    passwd_release(&pw);
}

static void passwd_reads_empty_file(void **state)
{
    passwd_t *pw = parse_ok("");
    assert_int_equal(passwd_count(pw), 0);
    assert_null(passwd_find(pw, "alice", 5));
    passwd_release(&pw);
    pw = parse_ok("\n# nothing\n\n");
    assert_int_equal(passwd_count(pw), 0);
    passwd_release(&pw);
}

static void passwd_find_compares_bytes_exactly(void **state)
{
    passwd_t *pw = parse_ok(ALICE_6 "\n" BOB_7 "\n" CAROL_7 "\n");
    assert_int_equal(passwd_count(pw), 3);
    assert_non_null(passwd_find(pw, "alice", 5));
    assert_non_null(passwd_find(pw, "bob", 3));
    assert_non_null(passwd_find(pw, "carolx", 5));
    assert_null(passwd_find(pw, "Alice", 5));
    assert_null(passwd_find(pw, "alic", 4));
    assert_null(passwd_find(pw, "alice ", 6));
    assert_null(passwd_find(pw, "alice\0", 6));
    assert_null(passwd_find(pw, "", 0));
    passwd_release(&pw);
}

static void passwd_finds_every_user_of_a_large_file(void **state)
{
    enum { N = 20000 };
    size_t cap = (size_t)N * 128, len = 0;
    char *text = malloc(cap), name[32];
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(text + len, cap - len, "user%d:%s\n", i, ALICE_HASH);
    passwd_t *pw = parse_ok(text);
    assert_int_equal(passwd_count(pw), N);
    for (int i = 0; i < N; i++) {
        int n = snprintf(name, sizeof name, "user%d", i);
        const passwd_user_t *u = passwd_find(pw, name, (size_t)n);
        assert_non_null(u);
        assert_memory_equal(u->name, name, (size_t)n);
    }
    assert_null(passwd_find(pw, "user20000", 9));
    passwd_release(&pw);
    free(text);
}

static void passwd_load_reads_a_file_and_names_it(void **state)
{
    char path[] = "/tmp/uvmq-passwd-XXXXXX", err[256], want[300];
    passwd_t *pw = NULL;
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = ALICE_6 "\n" BOB_7 "\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(passwd_load(&pw, path, err, sizeof err), 0);
    assert_int_equal(passwd_count(pw), 2);
    passwd_release(&pw);
    assert_int_equal(write(fd, "carol\n", 6), 6);
    assert_int_equal(passwd_load(&pw, path, err, sizeof err), UVMQ_ECONFIG);
    assert_null(pw);
    snprintf(want, sizeof want, "%s:3: no ':' between user name and hash", path);
    assert_string_equal(err, want);
    close(fd);
    unlink(path);
    assert_int_equal(passwd_load(&pw, path, err, sizeof err), UVMQ_ECONFIG);
    snprintf(want, sizeof want, "%s: No such file or directory", path);
    assert_string_equal(err, want);
    assert_int_equal(passwd_load(&pw, "/tmp", err, sizeof err), UVMQ_ECONFIG);
    assert_string_equal(err, "/tmp: Is a directory");
}

static void passwd_errors_fit_any_buffer(void **state)
{
    passwd_t *pw = NULL;
    char err[8] = "xxxxxxx";
    assert_int_equal(passwd_parse(&pw, "bob\n", 4, "name.pw", err, sizeof err), UVMQ_ECONFIG);
    assert_string_equal(err, "name.pw");
    assert_int_equal(passwd_parse(&pw, "bob\n", 4, "name.pw", NULL, 0), UVMQ_ECONFIG);
}

static void passwd_references_keep_the_file(void **state)
{
    passwd_t *pw = parse_ok(ALICE_6), *other = pw;
    const passwd_user_t *u = passwd_find(pw, "alice", 5);
    passwd_retain(other);
    passwd_release(&pw);
    assert_null(pw);
    assert_int_equal(passwd_verify(u, "correct horse", 13), 0);
    passwd_release(&other);
    passwd_release(&other); /* NULL: nothing */
}

/* ---- base64 ---- */

typedef struct b64_row_s {
    const char *in;
    int padded;
    long len; /* -1: refused */
    const char *out;
} b64_row_t;

static void base64_decoder_takes_only_canonical_text(void **state)
{
    static const b64_row_t rows[] = {
        {"", 1, 0, ""},
        {"Zg==", 1, 1, "f"},
        {"Zm8=", 1, 2, "fo"},
        {"Zm9v", 1, 3, "foo"},
        {"Zg", 0, 1, "f"},
        {"Zm8", 0, 2, "fo"},
        {"Zm9vYmFy", 0, 6, "foobar"},
        {"Zg", 1, -1, NULL},
        {"Zg=", 1, -1, NULL},
        {"Zg==", 0, -1, NULL},
        {"Z===", 1, -1, NULL},
        {"Zh==", 1, -1, NULL},
        {"Zm9=", 1, -1, NULL},
        {"Zh", 0, -1, NULL},
        {"Z", 0, -1, NULL},
        {"Zm9vY", 0, -1, NULL},
        {"Zm 9", 1, -1, NULL},
        {"Zm-v", 1, -1, NULL},
        {"Zm_v", 1, -1, NULL},
        {"=Zm9", 1, -1, NULL},
        {"Zg=a", 1, -1, NULL},
        {"+/+/", 1, 3, "\xfb\xff\xbf"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint8_t out[16];
        long n = b64_decode(rows[i].in, strlen(rows[i].in), rows[i].padded, out, sizeof out);
        if (n != rows[i].len || (n > 0 && memcmp(out, rows[i].out, (size_t)n) != 0))
            fail_msg("row %zu (\"%s\"): got %ld", i, rows[i].in, n);
    }
    uint8_t small[2];
    assert_int_equal(b64_decode("Zm9v", 4, 1, small, sizeof small), -1);
    assert_int_equal(b64_decode("Zg\0=", 4, 1, small, sizeof small), -1);
}

static void base64_encoder_pads_as_openssl_does(void **state)
{
    char out[16];
    b64_encode((const uint8_t *)"f", 1, out);
    assert_string_equal(out, "Zg==");
    b64_encode((const uint8_t *)"fo", 2, out);
    assert_string_equal(out, "Zm8=");
    b64_encode((const uint8_t *)"foob", 4, out);
    assert_string_equal(out, "Zm9vYg==");
    b64_encode((const uint8_t *)"", 0, out);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(passwd_verifies_mosquitto_sha512_hash),
        cmocka_unit_test(passwd_verifies_mosquitto_2_0_pbkdf2_hash),
        cmocka_unit_test(passwd_verifies_pbkdf2_hash_with_64_byte_salt),
        cmocka_unit_test(passwd_verifies_argon2id_cli_hashes),
        cmocka_unit_test(passwd_verifies_argon2id_hash_with_mosquitto_parameters),
        cmocka_unit_test(passwd_refuses_unknown_user_after_dummy_work),
        cmocka_unit_test(passwd_decoy_is_the_first_user),
        cmocka_unit_test(passwd_hash_output_round_trips_for_each_type),
        cmocka_unit_test(passwd_hash_makes_a_new_salt_each_time),
        cmocka_unit_test(passwd_hash_refuses_unknown_type_and_short_buffer),
        cmocka_unit_test(passwd_refuses_malformed_files_naming_file_and_line),
        cmocka_unit_test(passwd_rejects_line_without_colon),
        cmocka_unit_test(passwd_rejects_nul_byte),
        cmocka_unit_test(passwd_rejects_user_name_over_65535_bytes),
        cmocka_unit_test(passwd_reads_comments_blanks_and_crlf_as_mosquitto),
        cmocka_unit_test(passwd_reads_empty_file),
        cmocka_unit_test(passwd_find_compares_bytes_exactly),
        cmocka_unit_test(passwd_finds_every_user_of_a_large_file),
        cmocka_unit_test(passwd_load_reads_a_file_and_names_it),
        cmocka_unit_test(passwd_errors_fit_any_buffer),
        cmocka_unit_test(passwd_references_keep_the_file),
        cmocka_unit_test(base64_decoder_takes_only_canonical_text),
        cmocka_unit_test(base64_encoder_pads_as_openssl_does),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

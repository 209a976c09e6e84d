/*
 * Unit tests for cli/cli_config.c and broker/config.c: defaults, the JSON
 * config file (every key, wrong types, syntax errors), flags and their
 * precedence over the file, and broker_config_check's rules. Config files
 * are written into a fresh mkdtemp directory per test and removed after.
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

#include <ftw.h>

#include "broker/broker.h"
#include "broker/config_int.h"
#include "cli/cli_config.h"
#include "common/err.h"
#include "common/log.h"
#include "tests/pki.h"

/* Per-test state: a temp dir, the config file path in it, a config. */
struct fixture {
    char dir[64];
    char path[128];
    broker_config_t cfg;
    char err[512];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);

    assert_non_null(f);
    strcpy(f->dir, "/tmp/uvmq-cli-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/uvmq.json", f->dir);
    broker_config_init(&f->cfg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    unlink(f->path);
    rmdir(f->dir);
    broker_config_dispose(&f->cfg);
    free(f);
    return 0;
}

/* Writes text as the fixture's config file. */
static void write_config(struct fixture *f, const char *text)
{
    FILE *fp = fopen(f->path, "w");

    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

/* Writes text and loads it; returns the loader's code. */
static int load(struct fixture *f, const char *text)
{
    write_config(f, text);
    f->err[0] = '\0';
    return cli_config_load_file(&f->cfg, f->path, f->err, sizeof f->err);
}

/* Parses a NULL-terminated argument list (argv[0] added) over f->cfg. */
static int parse(struct fixture *f, cli_action_t *action, ...)
{
    char *argv[32] = {"uvmq"};
    int argc = 1;
    va_list ap;

    va_start(ap, action);
    for (char *a = va_arg(ap, char *); a != NULL; a = va_arg(ap, char *))
        argv[argc++] = a;
    va_end(ap);
    f->err[0] = '\0';
    return cli_parse_args(argc, argv, &f->cfg, action, f->err, sizeof f->err);
}

/* Loads text, expects UVMQ_ECONFIG with a message equal to "<path>: want". */
static void expect_load_error(struct fixture *f, const char *text, const char *want)
{
    char full[512];

    assert_int_equal(load(f, text), UVMQ_ECONFIG);
    snprintf(full, sizeof full, "%s: %s", f->path, want);
    assert_string_equal(f->err, full);
}

static void config_defaults_match_broker_h(void **state)
{
    struct fixture *f = *state;
    broker_config_t *c = &f->cfg;

    assert_string_equal(c->bind, "127.0.0.1");
    assert_int_equal(c->port, 1883);
    assert_int_equal(c->http_port, 8080);
    assert_int_equal(c->http_max_streams, 100);
    assert_int_equal(c->http_idle_timeout, 60);
    assert_string_equal(c->data_dir, "./data");
    assert_int_equal(c->threads, 0);
    assert_int_equal(c->allow_anonymous, -1);
    assert_int_equal(c->max_packet_size, 16777216);
    assert_int_equal(c->max_connect_size, 65536);
    assert_int_equal(c->max_inflight, 256);
    assert_int_equal(c->max_queued_messages, 1000);
    assert_int_equal(c->max_queued_bytes, 67108864);
    assert_int_equal(c->max_out_bytes, 8388608);
    assert_int_equal(c->max_keepalive, 65535);
    assert_int_equal(c->max_connections, 0);
    assert_int_equal(c->max_topic_levels, 128);
    assert_int_equal(c->max_client_id_len, 65535);
    assert_int_equal(c->max_inbound_qos2, 65535);
    assert_int_equal(c->connect_timeout_ms, 10000);
    assert_int_equal(c->durability, 0);
    assert_int_equal(c->shared_strategy, SHARE_ROUND_ROBIN);
    assert_int_equal(c->batch_ms, 10);
    assert_int_equal(c->max_session_expiry, 0);
    assert_true(c->max_db_bytes == 0);
    assert_int_equal(c->sys_interval, 10);
    assert_int_equal(c->topic_alias_max, 10);
    assert_string_equal(c->response_information_prefix, "resp");
    assert_int_equal(c->log_level, LOG_INFO);
    assert_null(c->password_file);
    assert_null(c->acl_file);
    assert_int_equal(c->auth_cache_size, 1024);
    assert_int_equal(c->auth_cache_ttl, 300);
    assert_int_equal(c->max_auth_pending, 64);
    assert_int_equal(broker_config_check(c, f->err, sizeof f->err), 0);
}

static void config_file_sets_every_key(void **state)
{
    struct fixture *f = *state;
    broker_config_t *c = &f->cfg;

    assert_int_equal(load(f, "{\n"
                             "  \"bind\": \"0.0.0.0\",\n"
                             "  \"port\": 1884,\n"
                             "  \"http_port\": 0,\n"
                             "  \"http_max_streams\": 65535,\n"
                             "  \"http_idle_timeout\": 86400,\n"
                             "  \"data_dir\": \"/var/lib/uvmq\",\n"
                             "  \"threads\": 3,\n"
                             "  \"allow_anonymous\": false,\n"
                             "  \"max_packet_size\": 268435455,\n"
                             "  \"max_connect_size\": 1024,\n"
                             "  \"max_inflight\": 10,\n"
                             "  \"max_queued_messages\": 4294967295,\n"
                             "  \"max_queued_bytes\": 9007199254740992,\n"
                             "  \"max_out_bytes\": 1048576,\n"
                             "  \"max_keepalive\": 300,\n"
                             "  \"max_connections\": 5000,\n"
                             "  \"max_topic_levels\": 16,\n"
                             "  \"max_client_id_len\": 23,\n"
                             "  \"max_inbound_qos2\": 100,\n"
                             "  \"connect_timeout_ms\": 2500,\n"
                             "  \"durability\": \"batch\",\n"
                             "  \"shared_strategy\": \"sticky\",\n"
                             "  \"batch_ms\": 25,\n"
                             "  \"max_session_expiry\": 3600,\n"
                             "  \"max_db_bytes\": 1073741824,\n"
                             "  \"sys_interval\": 0,\n"
                             "  \"topic_alias_max\": 0,\n"
                             "  \"response_information_prefix\": \"replies/to\",\n"
                             "  \"log_level\": \"warn\"\n"
                             "}\n"),
                     0);
    assert_string_equal(c->bind, "0.0.0.0");
    assert_int_equal(c->port, 1884);
    assert_int_equal(c->http_port, 0);
    assert_int_equal(c->http_max_streams, 65535);
    assert_int_equal(c->http_idle_timeout, 86400);
    assert_string_equal(c->data_dir, "/var/lib/uvmq");
    assert_int_equal(c->threads, 3);
    assert_int_equal(c->allow_anonymous, 0);
    assert_int_equal(c->max_packet_size, 268435455);
    assert_int_equal(c->max_connect_size, 1024);
    assert_int_equal(c->max_inflight, 10);
    assert_int_equal(c->max_queued_messages, 4294967295u);
    assert_true(c->max_queued_bytes == 9007199254740992ull);
    assert_int_equal(c->max_out_bytes, 1048576);
    assert_int_equal(c->max_keepalive, 300);
    assert_int_equal(c->max_connections, 5000);
    assert_int_equal(c->max_topic_levels, 16);
    assert_int_equal(c->max_client_id_len, 23);
    assert_int_equal(c->max_inbound_qos2, 100);
    assert_int_equal(c->connect_timeout_ms, 2500);
    assert_int_equal(c->durability, 1);
    assert_int_equal(c->shared_strategy, SHARE_STICKY);
    assert_int_equal(c->batch_ms, 25);
    assert_int_equal(c->max_session_expiry, 3600);
    assert_true(c->max_db_bytes == 1073741824ull);
    assert_int_equal(c->sys_interval, 0);
    assert_int_equal(c->topic_alias_max, 0);
    assert_string_equal(c->response_information_prefix, "replies/to");
    assert_int_equal(c->log_level, LOG_WARN);
    assert_int_equal(broker_config_check(c, f->err, sizeof f->err), 0);
}

static void config_file_allow_anonymous_takes_true_and_null(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(load(f, "{\"allow_anonymous\": true, \"log_level\": \"debug\"}"), 0);
    assert_int_equal(f->cfg.allow_anonymous, 1);
    assert_int_equal(f->cfg.log_level, LOG_DEBUG);
    assert_int_equal(load(f, "{\"allow_anonymous\": null}"), 0);
    assert_int_equal(f->cfg.allow_anonymous, -1);
    assert_int_equal(load(f, "{\"response_information_prefix\": null}"), 0);
    assert_null(f->cfg.response_information_prefix); /* off */
    assert_int_equal(load(f, "{}"), 0);
    assert_int_equal(f->cfg.port, 1883);
}

static void config_file_rejects_unknown_key_naming_key_and_file(void **state)
{
    expect_load_error(*state, "{\"prot\": 1884}", "unknown key \"prot\"");
}

static void config_file_rejects_duplicate_key(void **state)
{
    expect_load_error(*state, "{\"port\": 1, \"port\": 2}", "key \"port\" appears twice");
}

static void config_file_rejects_wrong_types_naming_the_key(void **state)
{
    struct fixture *f = *state;

    expect_load_error(f, "{\"port\": \"abc\"}",
                      "\"port\" must be an integer 1..65535 (got \"abc\")");
    expect_load_error(f, "{\"port\": 70000}", "\"port\" must be an integer 1..65535 (got 70000)");
    expect_load_error(f, "{\"port\": 1.5}", "\"port\" must be an integer 1..65535 (got 1.5)");
    expect_load_error(f, "{\"port\": -1}", "\"port\" must be an integer 1..65535 (got -1)");
    expect_load_error(f, "{\"port\": 0}", "\"port\" must be an integer 1..65535 (got 0)");
    expect_load_error(f, "{\"threads\": true}",
                      "\"threads\" must be an integer 0..1024 (got true)");
    expect_load_error(f, "{\"max_packet_size\": 268435456}",
                      "\"max_packet_size\" must be an integer 2..268435455 (got 268435456)");
    expect_load_error(f, "{\"max_inflight\": 0}",
                      "\"max_inflight\" must be an integer 1..65535 (got 0)");
    expect_load_error(f, "{\"max_queued_messages\": 4294967296}",
                      "\"max_queued_messages\" must be an integer 1..4294967295 (got 4294967296)");
    expect_load_error(f, "{\"max_client_id_len\": 22}",
                      "\"max_client_id_len\" must be an integer 23..65535 (got 22)");
    expect_load_error(f, "{\"connect_timeout_ms\": [1]}",
                      "\"connect_timeout_ms\" must be an integer 1..4294967295 (got an array)");
    expect_load_error(f, "{\"bind\": 5}", "\"bind\" must be a non-empty string (got 5)");
    expect_load_error(f, "{\"data_dir\": \"\"}",
                      "\"data_dir\" must be a non-empty string (got \"\")");
    expect_load_error(f, "{\"allow_anonymous\": \"yes\"}",
                      "\"allow_anonymous\" must be true, false or null (got \"yes\")");
    expect_load_error(f, "{\"log_level\": \"trace\"}",
                      "\"log_level\" must be \"error\", \"warn\", \"info\" or \"debug\" (got "
                      "\"trace\")");
    expect_load_error(f, "{\"durability\": \"fast\"}",
                      "\"durability\" must be \"full\" or \"batch\" (got \"fast\")");
    expect_load_error(f, "{\"shared_strategy\": \"hash\"}",
                      "\"shared_strategy\" must be \"round_robin\", \"random\" or \"sticky\" "
                      "(got \"hash\")");
    expect_load_error(f, "{\"batch_ms\": 0}",
                      "\"batch_ms\" must be an integer 1..60000 (got 0)");
    expect_load_error(f, "{\"sys_interval\": 86401}",
                      "\"sys_interval\" must be an integer 0..86400 (got 86401)");
    expect_load_error(f, "{\"topic_alias_max\": 65536}",
                      "\"topic_alias_max\" must be an integer 0..65535 (got 65536)");
    expect_load_error(f, "{\"response_information_prefix\": \"a/#\"}",
                      "\"response_information_prefix\" must be null or a non-empty topic of at "
                      "most 1024 bytes without + or # (got \"a/#\")");
    expect_load_error(f, "{\"response_information_prefix\": \"\"}",
                      "\"response_information_prefix\" must be null or a non-empty topic of at "
                      "most 1024 bytes without + or # (got \"\")");
    expect_load_error(f, "{\"log_level\": 3}",
                      "\"log_level\" must be \"error\", \"warn\", \"info\" or \"debug\" (got 3)");
}

static void config_file_syntax_error_names_file_and_line(void **state)
{
    struct fixture *f = *state;

    /* The second comma is byte 17 (line 2, column 16); cJSON stops one
     * byte past it, hence "near". */
    expect_load_error(f, "{\n  \"port\": 1884,,\n}\n",
                      "JSON syntax error near line 2, column 17 (byte 18)");
    expect_load_error(f, "", "JSON syntax error near line 1, column 1 (byte 0)");
    expect_load_error(f, "{} x", "JSON syntax error near line 1, column 4 (byte 3)");
    expect_load_error(f, "[1884]", "the top level must be a JSON object");
}

static void config_file_missing_names_file_and_strerror(void **state)
{
    struct fixture *f = *state;
    char want[256];

    assert_int_equal(cli_config_load_file(&f->cfg, f->path, f->err, sizeof f->err), UVMQ_EIO);
    snprintf(want, sizeof want, "%s: No such file or directory", f->path);
    assert_string_equal(f->err, want);
}

static void config_file_over_1_mib_is_refused(void **state)
{
    struct fixture *f = *state;
    char *big = malloc(CLI_CONFIG_MAX_FILE + 2);

    assert_non_null(big);
    memset(big, ' ', CLI_CONFIG_MAX_FILE + 1);
    big[0] = '{';
    big[CLI_CONFIG_MAX_FILE] = '}';
    big[CLI_CONFIG_MAX_FILE + 1] = '\0';
    assert_int_equal(load(f, big), UVMQ_EIO);
    assert_non_null(strstr(f->err, "larger than 1048576 bytes"));
    big[CLI_CONFIG_MAX_FILE - 1] = '}';
    big[CLI_CONFIG_MAX_FILE] = '\0';
    assert_int_equal(load(f, big), 0);
    free(big);
}

static void example_config_file_holds_the_defaults(void **state)
{
    struct fixture *f = *state;
    broker_config_t d;

    /* tests/run.sh runs from the repo top, where the example lives. */
    broker_config_init(&d);
    assert_int_equal(cli_config_load_file(&f->cfg, "uvmq.example.json", f->err, sizeof f->err), 0);
    assert_string_equal(f->cfg.bind, d.bind);
    assert_string_equal(f->cfg.data_dir, d.data_dir);
    assert_int_equal(f->cfg.n_listeners, 0);
    /* Which file was read is not a setting. */
    free(f->cfg.config_file);
    f->cfg.config_file = NULL;
    assert_string_equal(f->cfg.response_information_prefix, d.response_information_prefix);
    /* Between the strings every field is a number: compare the bytes. */
    assert_memory_equal((char *)&f->cfg + offsetof(broker_config_t, port),
                        (char *)&d + offsetof(broker_config_t, port),
                        offsetof(broker_config_t, data_dir) - offsetof(broker_config_t, port));
    assert_memory_equal((char *)&f->cfg + offsetof(broker_config_t, threads),
                        (char *)&d + offsetof(broker_config_t, threads),
                        offsetof(broker_config_t, response_information_prefix) -
                            offsetof(broker_config_t, threads));
    assert_memory_equal((char *)&f->cfg + offsetof(broker_config_t, log_level),
                        (char *)&d + offsetof(broker_config_t, log_level),
                        sizeof d - offsetof(broker_config_t, log_level));
    broker_config_dispose(&d);
}

static void flags_override_config_file(void **state)
{
    struct fixture *f = *state;
    cli_action_t action = CLI_HELP;

    write_config(f, "{\"port\": 1884, \"http_port\": 9000, \"bind\": \"::1\", \"threads\": 2,"
                    " \"data_dir\": \"/a\", \"log_level\": \"error\", \"max_inflight\": 7}");
    /* The file comes first whatever its place on the command line. */
    assert_int_equal(parse(f, &action, "-p", "1999", "--threads=5", "-c", f->path, "--bind",
                           "localhost", "--data-dir", "/b", "-v", NULL),
                     0);
    assert_int_equal(action, CLI_RUN);
    assert_int_equal(f->cfg.port, 1999);
    assert_int_equal(f->cfg.http_port, 9000);
    assert_int_equal(f->cfg.threads, 5);
    assert_string_equal(f->cfg.bind, "127.0.0.1");
    assert_string_equal(f->cfg.data_dir, "/b");
    assert_int_equal(f->cfg.log_level, LOG_DEBUG);
    assert_int_equal(f->cfg.max_inflight, 7);
}

static void flags_http_port_0_turns_http_off(void **state)
{
    struct fixture *f = *state;
    cli_action_t action;

    assert_int_equal(parse(f, &action, "--http-port", "0", NULL), 0);
    assert_int_equal(f->cfg.http_port, 0);
    assert_int_equal(f->cfg.port, 1883);
}

static void flags_bad_values_name_the_flag(void **state)
{
    struct fixture *f = *state;
    cli_action_t action;

    assert_int_equal(parse(f, &action, "--port", "x", NULL), UVMQ_ECONFIG);
    assert_string_equal(f->err, "--port: must be an integer 1..65535 (got x)");
    assert_int_equal(parse(f, &action, "-p", "70000", NULL), UVMQ_ECONFIG);
    assert_string_equal(f->err, "--port: must be an integer 1..65535 (got 70000)");
    assert_int_equal(parse(f, &action, "-p", "-1", NULL), UVMQ_ECONFIG);
    assert_string_equal(f->err, "--port: must be an integer 1..65535 (got -1)");
    assert_int_equal(parse(f, &action, "-p", "12ab", NULL), UVMQ_ECONFIG);
    assert_string_equal(f->err, "--port: must be an integer 1..65535 (got 12ab)");
    assert_int_equal(parse(f, &action, "--http-port", "", NULL), UVMQ_ECONFIG);
    assert_string_equal(f->err, "--http-port: must be an integer 0..65535 (got )");
    assert_int_equal(parse(f, &action, "--threads", "99999999999999999999999", NULL), UVMQ_ECONFIG);
    assert_string_equal(f->err,
                        "--threads: must be an integer 0..1024 (got 99999999999999999999999)");
    assert_int_equal(parse(f, &action, "--data-dir", "", NULL), UVMQ_ECONFIG);
    assert_string_equal(f->err, "--data-dir: must not be empty");
    assert_int_equal(f->cfg.port, 1883);
}

static void flags_usage_errors_return_err_inval(void **state)
{
    struct fixture *f = *state;
    cli_action_t action;

    assert_int_equal(parse(f, &action, "--prot", "1", NULL), UVMQ_EINVAL);
    assert_string_equal(f->err, "unknown option: --prot");
    assert_int_equal(parse(f, &action, "-x", NULL), UVMQ_EINVAL);
    assert_string_equal(f->err, "unknown option: -x");
    assert_int_equal(parse(f, &action, "-p", NULL), UVMQ_EINVAL);
    assert_string_equal(f->err, "-p: missing value");
    assert_int_equal(parse(f, &action, "--verbose=2", NULL), UVMQ_EINVAL);
    assert_string_equal(f->err, "--verbose=2: takes no value");
    assert_int_equal(parse(f, &action, "serve", NULL), UVMQ_EINVAL);
    assert_string_equal(f->err, "unexpected argument: serve");
}

static void flags_help_and_version_skip_the_file(void **state)
{
    struct fixture *f = *state;
    cli_action_t action;

    /* The file does not exist: help must still work. */
    assert_int_equal(parse(f, &action, "-c", f->path, "--help", NULL), 0);
    assert_int_equal(action, CLI_HELP);
    assert_int_equal(parse(f, &action, "-V", NULL), 0);
    assert_int_equal(action, CLI_VERSION);
    assert_int_equal(parse(f, &action, "--version", NULL), 0);
    assert_int_equal(action, CLI_VERSION);
    assert_int_equal(parse(f, &action, "-c", f->path, NULL), UVMQ_EIO);
}

static void flags_config_file_errors_pass_through(void **state)
{
    struct fixture *f = *state;
    cli_action_t action;
    char want[256];

    write_config(f, "{\"prot\": 1}");
    assert_int_equal(parse(f, &action, "--config", f->path, NULL), UVMQ_ECONFIG);
    snprintf(want, sizeof want, "%s: unknown key \"prot\"", f->path);
    assert_string_equal(f->err, want);
}

static void check_refuses_non_loopback_bind_without_allow_anonymous(void **state)
{
    struct fixture *f = *state;
    broker_config_t *c = &f->cfg;

    free(c->bind);
    c->bind = strdup("0.0.0.0");
    assert_int_equal(broker_config_check(c, f->err, sizeof f->err), UVMQ_ECONFIG);
    assert_string_equal(f->err, "bind 0.0.0.0 is not a loopback address: set password_file, "
                                "or allow_anonymous (true to accept anonymous clients from the "
                                "network) in the config file");
    c->allow_anonymous = 0;
    assert_int_equal(broker_config_check(c, f->err, sizeof f->err), 0);
    c->allow_anonymous = 1;
    assert_int_equal(broker_config_check(c, f->err, sizeof f->err), 0);
}

static void check_accepts_every_loopback_form(void **state)
{
    struct fixture *f = *state;
    broker_config_t *c = &f->cfg;
    const char *loop[] = {"127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "localhost"};
    const char *other[] = {"::", "192.168.1.10", "128.0.0.1", "::ffff:10.0.0.1"};

    for (size_t i = 0; i < sizeof loop / sizeof loop[0]; i++) {
        free(c->bind);
        c->bind = strdup(loop[i]);
        assert_int_equal(broker_config_check(c, f->err, sizeof f->err), 0);
    }
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        free(c->bind);
        c->bind = strdup(other[i]);
        assert_int_equal(broker_config_check(c, f->err, sizeof f->err), UVMQ_ECONFIG);
        assert_non_null(strstr(f->err, "is not a loopback address"));
    }
}

static void check_refuses_bad_bind_and_ranges(void **state)
{
    struct fixture *f = *state;
    broker_config_t *c = &f->cfg;

    free(c->bind);
    c->bind = strdup("example.com");
    assert_int_equal(broker_config_check(c, f->err, sizeof f->err), UVMQ_ECONFIG);
    assert_string_equal(f->err,
                        "bind \"example.com\" is not an IPv4 or IPv6 address (or \"localhost\")");
    free(c->bind);
    c->bind = strdup("127.0.0.1");
    c->max_packet_size = 1;
    assert_int_equal(broker_config_check(c, f->err, sizeof f->err), UVMQ_ECONFIG);
    assert_string_equal(f->err, "max_packet_size must be 2..268435455 (got 1)");
    c->max_packet_size = 268435456;
    assert_int_equal(broker_config_check(c, f->err, sizeof f->err), UVMQ_ECONFIG);
    c->max_packet_size = 2;
    c->max_inflight = 0;
    assert_int_equal(broker_config_check(c, f->err, sizeof f->err), UVMQ_ECONFIG);
    assert_string_equal(f->err, "max_inflight must be 1..65535 (got 0)");
    c->max_inflight = 1;
    c->threads = 1025;
    assert_int_equal(broker_config_check(c, f->err, sizeof f->err), UVMQ_ECONFIG);
    assert_string_equal(f->err, "threads must be 0..1024 (got 1025)");
    c->threads = 1024;
    assert_int_equal(broker_config_check(c, f->err, sizeof f->err), 0);
    c->http_port = c->port;
    assert_int_equal(broker_config_check(c, f->err, sizeof f->err), UVMQ_ECONFIG);
    assert_string_equal(f->err, "http_port must differ from port (both 1883)");
    c->http_port = 0; /* off: no clash */
    assert_int_equal(broker_config_check(c, f->err, sizeof f->err), 0);
}

static void config_file_http_limits_name_the_key(void **state)
{
    expect_load_error(*state, "{\"http_max_streams\": 0}",
                      "\"http_max_streams\" must be an integer 1..65535 (got 0)");
    expect_load_error(*state, "{\"http_idle_timeout\": 86401}",
                      "\"http_idle_timeout\" must be an integer 1..86400 (got 86401)");
}

static void config_file_listeners_take_tls_with_their_defaults(void **state)
{
    struct fixture *f = *state;
    const listener_config_t *l;

    assert_int_equal(load(f, "{\"listeners\": [\n"
                             "  {\"type\": \"mqtt\", \"tls\": {\"cert\": \"s.crt\", \"key\": \"s.key\"}},\n"
                             "  {\"bind\": \"localhost\", \"port\": 1999},\n"
                             "  {\"bind\": \"::1\", \"port\": 8884, \"tls\": {\"cert\": \"c\", \"key\": \"k\",\n"
                             "   \"ca\": \"ca.crt\", \"min_version\": \"1.3\", \"ciphers\": \"HIGH\",\n"
                             "   \"ciphersuites\": \"TLS_AES_128_GCM_SHA256\",\n"
                             "   \"require_certificate\": true, \"use_identity_as_username\": true}}]}"),
                     0);
    assert_int_equal(f->cfg.n_listeners, 3);
    l = &f->cfg.listeners[0];
    assert_int_equal(l->kind, LISTENER_MQTT);
    assert_null(l->bind);
    assert_int_equal(l->port, 8883); /* the TLS default */
    assert_int_equal(l->has_tls, 1);
    assert_string_equal(l->tls.cert, "s.crt");
    assert_string_equal(l->tls.key, "s.key");
    assert_null(l->tls.ca);
    assert_null(l->tls.ciphers);
    assert_int_equal(l->tls.min_version, TLS_MIN_1_2);
    assert_int_equal(l->tls.require_certificate, 0);
    assert_int_equal(l->tls.use_identity_as_username, 0);
    l = &f->cfg.listeners[1];
    assert_string_equal(l->bind, "127.0.0.1");
    assert_int_equal(l->port, 1999);
    assert_int_equal(l->has_tls, 0);
    l = &f->cfg.listeners[2];
    assert_string_equal(l->bind, "::1");
    assert_int_equal(l->port, 8884);
    assert_string_equal(l->tls.ca, "ca.crt");
    assert_string_equal(l->tls.ciphers, "HIGH");
    assert_string_equal(l->tls.ciphersuites, "TLS_AES_128_GCM_SHA256");
    assert_int_equal(l->tls.min_version, TLS_MIN_1_3);
    assert_int_equal(l->tls.require_certificate, 1);
    assert_int_equal(l->tls.use_identity_as_username, 1);
    assert_string_equal(f->cfg.config_file, f->path);
}

static void config_file_listeners_take_http_with_and_without_tls(void **state)
{
    struct fixture *f = *state;
    const listener_config_t *l;

    assert_int_equal(load(f, "{\"listeners\": [\n"
                             "  {\"type\": \"http\", \"port\": 8081},\n"
                             "  {\"type\": \"http\", \"tls\": {\"cert\": \"s.crt\", \"key\": \"s.key\"}},\n"
                             "  {\"type\": \"http\", \"port\": 9443, \"bind\": \"::1\",\n"
                             "   \"tls\": {\"cert\": \"s.crt\", \"key\": \"s.key\"}}]}"),
                     0);
    assert_int_equal(f->cfg.n_listeners, 3);
    l = &f->cfg.listeners[0];
    assert_int_equal(l->kind, LISTENER_HTTP);
    assert_int_equal(l->port, 8081);
    assert_int_equal(l->has_tls, 0);
    l = &f->cfg.listeners[1];
    assert_int_equal(l->kind, LISTENER_HTTP);
    assert_int_equal(l->port, 8443); /* the TLS default of an http listener */
    assert_int_equal(l->has_tls, 1);
    l = &f->cfg.listeners[2];
    assert_int_equal(l->kind, LISTENER_HTTP);
    assert_int_equal(l->port, 9443);
    assert_string_equal(l->bind, "::1");
}

static void config_file_listeners_reject_bad_values_naming_the_key(void **state)
{
    struct fixture *f = *state;

    expect_load_error(f, "{\"listeners\": {}}", "\"listeners\" must be an array (got an object)");
    expect_load_error(f, "{\"listeners\": [1]}", "\"listeners[0]\" must be an object (got 1)");
    expect_load_error(f, "{\"listeners\": [{\"type\": \"ws\", \"port\": 1}]}",
                      "\"listeners[0].type\" must be \"mqtt\" or \"http\" (got \"ws\")");
    expect_load_error(f, "{\"listeners\": [{\"port\": 1}, {\"prot\": 2}]}",
                      "\"listeners[1]\": unknown key \"prot\"");
    expect_load_error(f, "{\"listeners\": [{\"port\": 1, \"port\": 2}]}",
                      "\"listeners[0]\": key \"port\" appears twice");
    expect_load_error(f, "{\"listeners\": [{\"port\": 0}]}",
                      "\"listeners[0].port\" must be an integer 1..65535 (got 0)");
    expect_load_error(f, "{\"listeners\": [{\"port\": 1, \"bind\": \"\"}]}",
                      "\"listeners[0].bind\" must be a non-empty string (got \"\")");
    expect_load_error(f, "{\"listeners\": [{\"tls\": true}]}",
                      "\"listeners[0].tls\" must be an object (got true)");
    expect_load_error(f, "{\"listeners\": [{\"tls\": {\"cert\": \"c\"}}]}",
                      "\"listeners[0].tls.key\" is required");
    expect_load_error(f, "{\"listeners\": [{\"tls\": {\"cert\": \"c\", \"key\": \"k\", "
                         "\"min_version\": \"1.1\"}}]}",
                      "\"listeners[0].tls.min_version\" must be \"1.2\" or \"1.3\" (got \"1.1\")");
    expect_load_error(f, "{\"listeners\": [{\"tls\": {\"cert\": \"c\", \"key\": \"k\", "
                         "\"require_certificate\": 1}}]}",
                      "\"listeners[0].tls.require_certificate\" must be true or false (got 1)");
    expect_load_error(f, "{\"listeners\": [{\"tls\": {\"cert\": \"c\", \"key\": \"k\", "
                         "\"crt\": \"x\"}}]}",
                      "\"listeners[0].tls\": unknown key \"crt\"");
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* Loads a config with one TLS listener whose tls object is `tls` (paths
 * relative to f->dir written as %s), then checks it. */
static int check_tls(struct fixture *f, const char *tls)
{
    char text[1024], obj[768];

    snprintf(obj, sizeof obj, tls, f->dir, f->dir, f->dir);
    snprintf(text, sizeof text, "{\"listeners\": [{\"port\": 8883, \"tls\": %s}]}", obj);
    broker_config_dispose(&f->cfg);
    broker_config_init(&f->cfg);
    assert_int_equal(load(f, text), 0);
    return broker_config_check(&f->cfg, f->err, sizeof f->err);
}

static void check_loads_tls_files_naming_the_key_and_the_file(void **state)
{
    struct fixture *f = *state;
    char want[512];

    assert_int_equal(pki_make_set(f->dir), 0);
    assert_int_equal(check_tls(f, "{\"cert\": \"%s/server.crt\", \"key\": \"%s/server.key\","
                                  " \"ca\": \"%s/ca.crt\", \"require_certificate\": true}"),
                     0);
    assert_int_equal(check_tls(f, "{\"cert\": \"%s/nope.crt\", \"key\": \"%s/server.key\"}"),
                     UVMQ_ECONFIG);
    snprintf(want, sizeof want,
             "%s: listeners[0].tls.cert: cannot read \"%s/nope.crt\": No such file or directory",
             f->path, f->dir);
    assert_string_equal(f->err, want);
    assert_int_equal(check_tls(f, "{\"cert\": \"%s/server.crt\", \"key\": \"%s/client.key\"}"),
                     UVMQ_ECONFIG);
    assert_non_null(strstr(f->err, "listeners[0].tls.key: cannot use the private key in"));
    assert_int_equal(check_tls(f, "{\"cert\": \"%s/server.crt\", \"key\": \"%s/server.key\","
                                  " \"ca\": \"%s/server.key\"}"),
                     UVMQ_ECONFIG);
    assert_non_null(strstr(f->err, "listeners[0].tls.ca: cannot load the CA certificates in"));
    assert_int_equal(check_tls(f, "{\"cert\": \"%s/server.crt\", \"key\": \"%s/server.key\","
                                  " \"use_identity_as_username\": true}"),
                     UVMQ_ECONFIG);
    assert_non_null(strstr(f->err, "listeners[0].tls.use_identity_as_username: needs \"ca\""));
    nftw(f->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    mkdir(f->dir, 0700); /* teardown removes it */
}

static void check_applies_the_listener_rules(void **state)
{
    struct fixture *f = *state;
    char want[512];

    assert_int_equal(load(f, "{\"listeners\": [{\"bind\": \"0.0.0.0\", \"port\": 1999}]}"), 0);
    assert_int_equal(broker_config_check(&f->cfg, f->err, sizeof f->err), UVMQ_ECONFIG);
    snprintf(want, sizeof want,
             "%s: listeners[0].bind 0.0.0.0 is not a loopback address: set password_file, or "
             "allow_anonymous (true to accept anonymous clients from the network) in the config "
             "file",
             f->path);
    assert_string_equal(f->err, want);
    f->cfg.allow_anonymous = 1;
    assert_int_equal(broker_config_check(&f->cfg, f->err, sizeof f->err), 0);
    broker_config_add_listener(&f->cfg); /* no port, no tls */
    assert_int_equal(broker_config_check(&f->cfg, f->err, sizeof f->err), UVMQ_ECONFIG);
    assert_non_null(strstr(f->err, "listeners[1].port: required for a listener without \"tls\""));
}

/* Writes text to f->dir/name and returns the path (static buffer per
 * call site is the caller's: copied into out). */
static void write_aux(struct fixture *f, const char *name, const char *text, char *out,
                      size_t cap)
{
    snprintf(out, cap, "%s/%s", f->dir, name);
    FILE *fp = fopen(out, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* A user made by mosquitto_passwd -H sha512 (password "secret"). */
#define PW_LINE "bob:$6$ruzZYlHAU9kg1aXS$hZ80vq+T7kvwZ+TBSYqJTUCh+mpwtDcVPus8yVyS6sI+e/" \
                "xw7J0K/NBQ+CXAMdfRkDKHQS5gfYI/CLmE73h5xg==\n"

static void config_file_takes_the_access_keys(void **state)
{
    struct fixture *f = *state;
    char pw[192], acl[192], json[640];

    write_aux(f, "passwd", PW_LINE, pw, sizeof pw);
    write_aux(f, "acl", "user bob\ntopic readwrite a/#\n", acl, sizeof acl);
    snprintf(json, sizeof json,
             "{\"password_file\": \"%s\", \"acl_file\": \"%s\", \"auth_cache_size\": 0,"
             " \"auth_cache_ttl\": 86400, \"max_auth_pending\": 1,"
             " \"listeners\": [{\"bind\": \"0.0.0.0\", \"port\": 1999,"
             " \"allow_anonymous\": true}]}",
             pw, acl);
    assert_int_equal(load(f, json), 0);
    assert_string_equal(f->cfg.password_file, pw);
    assert_string_equal(f->cfg.acl_file, acl);
    assert_int_equal(f->cfg.auth_cache_size, 0);
    assert_int_equal(f->cfg.auth_cache_ttl, 86400);
    assert_int_equal(f->cfg.max_auth_pending, 1);
    assert_int_equal(f->cfg.listeners[0].allow_anonymous, 1);
    /* the network listener is fine: there is a password file */
    assert_int_equal(broker_config_check(&f->cfg, f->err, sizeof f->err), 0);
    assert_int_equal(load(f, "{\"listeners\": [{\"port\": 1999, \"allow_anonymous\": 1}]}"),
                     UVMQ_ECONFIG);
    assert_non_null(strstr(f->err, "listeners[0].allow_anonymous\" must be true or false"));
    unlink(pw);
    unlink(acl);
}

static void check_names_the_access_file_and_its_line(void **state)
{
    struct fixture *f = *state;
    char pw[192], acl[192], want[512];

    write_aux(f, "passwd", "# users\n" PW_LINE "carol\n", pw, sizeof pw);
    f->cfg.password_file = strdup(pw);
    assert_int_equal(broker_config_check(&f->cfg, f->err, sizeof f->err), UVMQ_ECONFIG);
    snprintf(want, sizeof want, "password_file: %s:3:", pw);
    assert_memory_equal(f->err, want, strlen(want));
    write_aux(f, "passwd", PW_LINE, pw, sizeof pw);
    write_aux(f, "acl", "user bob\ntopic readwrite a/#\ntopik read b\n", acl, sizeof acl);
    f->cfg.acl_file = strdup(acl);
    assert_int_equal(broker_config_check(&f->cfg, f->err, sizeof f->err), UVMQ_ECONFIG);
    snprintf(want, sizeof want, "acl_file: %s:3:", acl);
    assert_memory_equal(f->err, want, strlen(want));
    unlink(acl);
    assert_int_equal(broker_config_check(&f->cfg, f->err, sizeof f->err), UVMQ_ECONFIG);
    snprintf(want, sizeof want, "acl_file: %s", acl);
    assert_memory_equal(f->err, want, strlen(want)); /* cannot be read */
    unlink(pw);
}

static void anonymous_rule_follows_listener_top_level_and_password_file(void **state)
{
    struct fixture *f = *state;
    broker_config_t *c = &f->cfg;

    assert_int_equal(config__anonymous(c, -1, "127.0.0.1"), 1); /* loopback default */
    assert_int_equal(config__anonymous(c, -1, "::1"), 1);
    assert_int_equal(config__anonymous(c, -1, "0.0.0.0"), 0);
    assert_int_equal(config__anonymous(c, 1, "0.0.0.0"), 1); /* the listener's word */
    c->password_file = strdup("/nonexistent");
    assert_int_equal(config__anonymous(c, -1, "127.0.0.1"), 0); /* users now */
    assert_int_equal(config__anonymous(c, 1, "127.0.0.1"), 1);
    c->allow_anonymous = 1;
    assert_int_equal(config__anonymous(c, -1, "0.0.0.0"), 1); /* the top-level word */
    assert_int_equal(config__anonymous(c, 0, "0.0.0.0"), 0); /* the listener's wins */
}

static void usage_lists_every_flag_with_defaults(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    const char *want[] = {"--config",
                          "--port",
                          "(default: 1883)",
                          "--http-port",
                          "(default: 8080)",
                          "--bind",
                          "(default: 127.0.0.1)",
                          "--data-dir",
                          "(default: ./data)",
                          "--threads",
                          "--verbose",
                          "--help",
                          "--version"};

    assert_non_null(out);
    cli_usage(out);
    fclose(out);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_non_null(strstr(text, want[i]));
    free(text);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(config_defaults_match_broker_h),
        T(config_file_sets_every_key),
        T(config_file_allow_anonymous_takes_true_and_null),
        T(config_file_rejects_unknown_key_naming_key_and_file),
        T(config_file_rejects_duplicate_key),
        T(config_file_rejects_wrong_types_naming_the_key),
        T(config_file_syntax_error_names_file_and_line),
        T(config_file_missing_names_file_and_strerror),
        T(config_file_over_1_mib_is_refused),
        T(example_config_file_holds_the_defaults),
        T(flags_override_config_file),
        T(flags_http_port_0_turns_http_off),
        T(flags_bad_values_name_the_flag),
        T(flags_usage_errors_return_err_inval),
        T(flags_help_and_version_skip_the_file),
        T(flags_config_file_errors_pass_through),
        T(check_refuses_non_loopback_bind_without_allow_anonymous),
        T(check_accepts_every_loopback_form),
        T(check_refuses_bad_bind_and_ranges),
        T(config_file_http_limits_name_the_key),
        T(config_file_listeners_take_tls_with_their_defaults),
        T(config_file_listeners_take_http_with_and_without_tls),
        T(config_file_listeners_reject_bad_values_naming_the_key),
        T(check_loads_tls_files_naming_the_key_and_the_file),
        T(check_applies_the_listener_rules),
        T(config_file_takes_the_access_keys),
        T(check_names_the_access_file_and_its_line),
        T(anonymous_rule_follows_listener_top_level_and_password_file),
        T(usage_lists_every_flag_with_defaults),
    };

    return cmocka_run_group_tests_name("cli/cli_config", tests, NULL, NULL);
}

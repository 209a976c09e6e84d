/*
 * uvmq.c - main() of the uvmq broker.
 *
 * Builds the configuration (defaults, then the -c JSON file, then flags),
 * checks it, and runs the broker until SIGINT/SIGTERM, which the broker
 * catches with libuv signal handles. Exit status: 0 after a clean run or
 * --help/--version, 2 for a usage or configuration error, 1 when the
 * broker fails at run time (cannot bind, cannot open the data dir, ...).
 * A first argument "passwd" runs the subcommand in cli/passwd.c instead
 * (exit status 0 or 1).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "broker/broker.h"
#include "cli/cli_config.h"
#include "cli/passwd.h"
#include "common/err.h"
#include "common/log.h"
#include "http/http.h"

/* Creates and runs the broker on a checked config; returns the exit code. */
static int run(const broker_config_t *cfg)
{
    broker_t *b = NULL;
    int status = 0;

    log_set_level((enum log_level)cfg->log_level);
    /* A peer that closes early must surface as EPIPE from a write, not
     * kill the process. */
    signal(SIGPIPE, SIG_IGN);
    if (broker_create(&b, cfg) != 0) return 1; /* broker_create logged why */
    if (broker_run(b) != 0) status = 1;
    broker_destroy(b);
    return status;
}

/* Parses, checks, runs; returns the exit status described above. */
static int broker_main(int argc, char **argv)
{
    broker_config_t cfg;
    cli_action_t action = CLI_RUN;
    char err[512] = "";
    int status = 0;
    int rc;

    broker_config_init(&cfg);
    cfg.protocols[LISTENER_HTTP] = &http_transport; /* broker/ knows MQTT only */
    rc = cli_parse_args(argc, argv, &cfg, &action, err, sizeof err);
    if (rc == 0 && action == CLI_RUN) rc = broker_config_check(&cfg, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "uvmq: %s\n", err);
        if (rc == UVMQ_EINVAL) cli_usage(stderr);
        status = 2;
    } else if (action == CLI_HELP) {
        cli_usage(stdout);
    } else if (action == CLI_VERSION) {
        printf("uvmq %s\n", UVMQ_VERSION);
    } else {
        status = run(&cfg);
    }
    broker_config_dispose(&cfg);
    return status;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "passwd") == 0) return cli_passwd(argc - 1, argv + 1);
    return broker_main(argc, argv);
}

/*
 * cli_config.h - uvmq's command line and JSON config file.
 *
 * Settings are layered: broker_config_init's defaults, then the JSON file
 * named by -c, then the other flags. The functions here never exit or print;
 * they return an error code and a one-line message for main to print.
 */
#ifndef UVMQ_CLI_CONFIG_H
#define UVMQ_CLI_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "broker/broker.h"

/* Largest config file we read, in bytes. */
#define CLI_CONFIG_MAX_FILE (1024 * 1024)

/* What main should do once the arguments are parsed. */
typedef enum cli_action {
    CLI_RUN = 0, /* start the broker with the parsed config */
    CLI_HELP,    /* print cli_usage to stdout, exit 0 */
    CLI_VERSION  /* print "uvmq <version>", exit 0 */
} cli_action_t;

/* Reads the JSON object at path into cfg, key by key, over what cfg holds.
 * Returns 0, or UVMQ_ECONFIG (bad JSON, unknown key, wrong type or range) or
 * UVMQ_EIO (cannot read, too large) with a message naming the file and the
 * key in err[0..errlen). On failure cfg may hold some of the file's values
 * but stays valid to dispose. */
int cli_config_load_file(broker_config_t *cfg, const char *path, char *err, size_t errlen);

/* Parses uvmq's argv (getopt_long; argv may be permuted) into cfg, which
 * must hold the defaults: loads the -c file first, then applies the other
 * flags over it. Sets *action (help and version skip the file). Returns 0;
 * UVMQ_EINVAL for a usage error (unknown flag, missing argument, stray
 * argument: main prints the usage too); or an error from
 * cli_config_load_file / UVMQ_ECONFIG for a bad flag value. The message names
 * the flag or key. A bind of "localhost" is rewritten to "127.0.0.1". */
int cli_parse_args(int argc, char **argv, broker_config_t *cfg, cli_action_t *action, char *err,
                   size_t errlen);

/* Prints the usage text, every flag with its default, to out. */
void cli_usage(FILE *out);

#endif

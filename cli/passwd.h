/*
 * passwd.h - `uvmq passwd`: manages a mosquitto password file.
 *
 * A subcommand of the one uvmq binary: main hands over when argv[1] is
 * "passwd". Flags follow mosquitto_passwd's (docs/security.md).
 */
#ifndef UVMQ_CLI_PASSWD_H
#define UVMQ_CLI_PASSWD_H

/* Runs `uvmq passwd` with argv[0] == "passwd"; options come before the
 * file, as in mosquitto_passwd. Prints nothing on success,
 * one message on stderr on failure (the usage too for a usage error),
 * the usage on stdout for --help. Returns the exit status: 0 or 1. */
int cli_passwd(int argc, char **argv);

#endif

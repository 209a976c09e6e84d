/*
 * config_int.h - what the rest of broker/ asks of the configuration
 * beyond broker.h (config.c).
 */
#ifndef UVMQ_BROKER_CONFIG_INT_H
#define UVMQ_BROKER_CONFIG_INT_H

#include "broker.h"

/* 1 when a listener bound to bind (its own allow_anonymous
 * listener_setting, -1 when unset) accepts clients without a user name:
 * its own setting, else the top-level allow_anonymous, else only on a
 * loopback address of a broker without a password_file. */
int config__anonymous(const broker_config_t *c, int listener_setting, const char *bind);
/* 1 when bind is a loopback address (127.0.0.0/8, ::1, "localhost"). */
int config__loopback(const char *bind);

#endif

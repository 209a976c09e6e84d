/*
 * sys_int.h - the $SYS publisher on loop 0 (sys.c).
 */
#ifndef UVMQ_BROKER_SYS_INT_H
#define UVMQ_BROKER_SYS_INT_H

#include "broker_int.h"

/* Starts the $SYS publisher on loop l (loop 0, from loop__init) when
 * sys_interval is not 0: a timer whose first update runs as soon as the
 * loop does. Sets l->sys. */
void sys__start(loop_t *l);
/* Closes l's $SYS timer, if any (loop__close_handles); its memory goes
 * in the close callback. l->sys is NULL after. */
void sys__close(loop_t *l);

#endif

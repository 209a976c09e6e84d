/*
 * mqtt_int.h - the MQTT transport (mqtt.c; its table is mqtt_transport
 * in transport.h).
 */
#ifndef UVMQ_BROKER_MQTT_INT_H
#define UVMQ_BROKER_MQTT_INT_H

#include "inbox_int.h"

/* ITEM_MIGRATE on l: opens the MQTT connection moved here (it->fd, its
 * transport it->tp and state it->tp_data, all taken), processes its MQTT
 * input it->bytes[0..len) (taken, freed here; it starts with the
 * CONNECT) as if just read, then what its transport kept, then reads. */
void mqtt__open_moved(loop_t *l, loop_item_t *it);

#endif

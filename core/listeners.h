/*
 * Listener evaluation, as seen from the counters: a fold reports the new process-wide
 * estimate and listeners.c decides whether a checkpoint is due.
 */
#ifndef MMT_CORE_LISTENERS_H
#define MMT_CORE_LISTENERS_H

#include <stdint.h>

/* Called after each fold with the new estimate; evaluates listeners if in_use has moved
 * by the checkpoint distance since the last evaluation, unless this thread is already
 * evaluating or another thread is (then it returns at once). */
void mmt__checkpoint_due(int64_t published);

#endif

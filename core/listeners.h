/*
 * Listener evaluation, as seen from the counters: a fold reports the new process-wide
 * estimate and listeners.c decides whether a checkpoint is due.
 */
#ifndef MMT_CORE_LISTENERS_H
#define MMT_CORE_LISTENERS_H

#include <stdbool.h>
#include <stdint.h>

#include "mmt/memory.h"

/* Called after each fold with the new estimate; evaluates listeners if in_use has moved
 * by the checkpoint distance since the last evaluation, unless this thread is already
 * evaluating or another thread is (then it returns at once). True if it evaluated. */
bool mmt__checkpoint_due(int64_t published);

/* How far the estimate `published` may move up and down before a checkpoint is due (0 or
 * less: one is due now; at most 4 KiB while a hook waits to be retried). Only meaningful
 * with a checkpoint distance (mmt_mem_get_checkpoint nonzero). */
void mmt__checkpoint_rooms(int64_t published, int64_t *up, int64_t *down);

/* Runs at every checkpoint, in the listeners' pass and in their order, with the counters
 * they are judged on: what the policy engine hangs its evaluations on. Returns false if it
 * could not run (its engine was busy): it is then run again, alone, at most once a
 * millisecond, by an allocation or free of a thread that has moved in_use by 4 KiB or
 * reached one of its marks since. */
typedef bool (*mmt__checkpoint_fn)(const mmt_meminfo_t *info, void *arg);

/* Adds a checkpoint hook. Returns its id (> 0), which mmt_mem_unlisten removes as it
 * removes a listener (waiting out a pass that runs it), or MMT_EINVAL (NULL fn) or
 * MMT_ENOMEM. */
int mmt__on_checkpoint(mmt__checkpoint_fn fn, void *arg);

#endif

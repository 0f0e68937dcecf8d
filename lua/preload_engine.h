/*
 * What the preload library (tools/preload.c) asks of the engine beyond the public API;
 * the rest of the engine's private header stays the engine's.
 */
#ifndef MMT_LUA_PRELOAD_ENGINE_H
#define MMT_LUA_PRELOAD_ENGINE_H

#include <limits.h>
#include <stdbool.h>

#include "mmt/policy.h"

/* inotify_delay_ms for an engine that never makes an inotify instance: it polls. */
#define MMT__INOTIFY_NEVER UINT_MAX

/* mmt_policy_new, with the watcher's inotify instance made only once the engine is
 * inotify_delay_ms old, or never with MMT__INOTIFY_NEVER (see struct mmt_policy). */
mmt_policy_t *mmt__policy_new(const mmt_policy_options_t *opts, unsigned inotify_delay_ms);

/* For a process that is ending: no policy code runs after it returns (the thread is
 * stopped, the checkpoint hook removed), and nothing else is released. */
void mmt__policy_stop_for_exit(mmt_policy_t *p);

/* For a process about to end without its exit handlers (_exit): asks the engine's thread
 * to write the textfile (opts.export_path) a last time, and waits for that at most
 * timeout_ms. Returns at once where there is nothing to ask: no textfile, or not this
 * process's (a forked child), no thread, or called on the thread itself. Makes only
 * async-signal-safe calls (_exit may come from a signal handler): if this thread holds
 * what the engine's thread needs, the wait ends at the timeout, and the textfile is left
 * as the last write made it. */
void mmt__policy_export_at_exit(mmt_policy_t *p, unsigned timeout_ms);

/* Set by the preload library, whose processes share one stderr: the default log names
 * the process in each line. */
extern bool mmt__log_names_pid;

#endif

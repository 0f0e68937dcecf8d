/*
 * mmtmem policy engine: memory rules written in Lua, evaluated by an embedded LuaJIT at
 * allocation checkpoints and on a timer, and reloaded when their file changes.
 *
 * A policy file declares rules with mmt.rule{...} and periodic tasks with mmt.every(); see
 * the README and policies/ for the language. The engine runs each policy in its own
 * sandboxed LuaJIT state whose memory is capped and whose calls are time-limited, so a
 * broken or hostile policy yields an error message, never a broken host (save for what
 * the program lets any policy do: run its host actions and reclaimers, and set limits,
 * below, none of which it does in a dry run). The VM's memory is not counted in mmt's
 * counters (it is reported as the snapshot field `lua`).
 *
 * When policy code runs. Rules are evaluated at allocation checkpoints (checkpoint_bytes)
 * and, with a timer (interval_ms), at every tick on the engine's thread. mmt.every tasks
 * run on that thread at their own period, whatever the interval: a task is due at whole
 * periods after the line that declared it ran, so its runs do not drift (every 0.25 s
 * for 10 s is 40 runs); the thread wakes between ticks when a task is due, and then runs
 * only the tasks due, not the rules. A run that ends past its next due time (a slow task,
 * a late wake-up) skips the periods it missed: the task runs next at the first due time
 * after that, never in a burst to catch up. The thread sleeps in whole milliseconds: a
 * period under 1 ms is taken as 1 ms, and the load says so. Tasks need the timer: with
 * interval_ms 0 they never run, and the load says so.
 *
 * The snapshot's `rate` (bytes per second; also a declarative rule's metric "rate") is
 * computed afresh at every evaluation, checkpoint, tick or task run alike: the change of
 * in_use from the engine's sample nearest one window ago to now, divided by the real time
 * between the two. The window is interval_ms, or 1 s without a timer; the engine keeps a
 * sample (time, in_use) at every evaluation, 256 at most, thinned to reach back two
 * windows. The span is never under half a window: the rate is 0 until half a window has
 * passed since the engine's first evaluation. It is much longer than the window only when
 * no evaluation came near the window's start (checkpoints only, and in_use slow to move
 * the checkpoint distance): then it reaches back to the last evaluation before.
 * mmt.meminfo() gives the rate of the engine's last evaluation.
 *
 * The trend: m.eta(limit) is the seconds until in_use reaches `limit` bytes at its
 * current trend, and m.predict(seconds) the in_use expected that many seconds after the
 * evaluation's time (both also as m:eta(limit), m:predict(seconds)). The trend is the
 * least-squares line through the engine's samples (time, in_use) of the last
 * trend_window_s seconds (default 60), read at the evaluation's time (the snapshot's
 * `time`), not at the newest sample: Prometheus's predict_linear. The samples are the
 * rate's, one at every evaluation, checkpoint, tick or task run alike. They are not kept
 * one by one but summed into 64 buckets of trend_window_s / 64 seconds (3 KiB in all,
 * never allocated), which give the exact fit over every sample in the window, whose far
 * edge moves a bucket at a time: the samples of the last 63/64 of the window are all in
 * it, and none older than the window. m.eta gives math.huge when the line is not rising,
 * and for a limit of math.huge; 0 when a rising line is at or above the limit already.
 * With fewer than 2 samples in the window, or all at one time, there is no line: m.eta
 * gives math.huge and m.predict the evaluation's in_use. Both read the engine's trend as
 * of the evaluation running, whichever snapshot they are taken from; while the file
 * loads (mmt.meminfo().eta(...)) they read it at the time of the call, and the current
 * in_use stands for the evaluation's. A reload keeps the samples, and a forked child's
 * engine starts with its parent's. The argument must be a number, not nan: anything else
 * is an error naming the function. A burst extrapolates to an early limit: pair m.eta in
 * a rule with a floor on in_use and a hold (the README has one).
 *
 * Tags (memory.h). The snapshot's `tags` holds every tag but the root (the root is the
 * snapshot itself), keyed by path: m.tags["cache/pages"] has the counters of that tag's
 * subtree (the mmt_meminfo_t fields) and its `rate`. It is read the first time a rule or
 * policy code touches it in an evaluation, and kept for the rest of that evaluation: the
 * rules and the policy code of one evaluation see one reading, and an evaluation that
 * never touches it never reads the tags. A tag's rate is computed like the snapshot's, over
 * the same window, from samples of its own, which the engine keeps only for the tags whose
 * rate was asked for (by a rule on it, or m.tags[path].rate), at most 256 (4 KiB each; a
 * rate asked past them is nan, said once in the log), for the engine's life. Those samples
 * are taken at the evaluations that read the tags: a tag's first rate is 0, and a tag read
 * only now and then (by a task every 10 s) gets the rate over the time since it was last
 * read. mmt.tags() lists the paths, a tag before its subtree and its subtree before its
 * next sibling, siblings by name. mmt.meminfo() reads the tags when its `tags` is first
 * read; while the policy file loads, the tags' rates are 0.
 *
 * A declarative rule with `tag = "cache"` compares that tag's subtree's figure: one of
 * the counters, or `rate` (not rss or lua, which are the process's). An unknown tag is a
 * load error naming the rule and the tag, unless the rule says `tag_optional = true`: the
 * program may make the tag later, and until it does the rule does not hold.
 * m.tags[path].limit is the tag's hard limit (memory.h, "Limits and reclaim") as of the
 * reading, whoever set it, and nil for a tag without one; m.limit is the process's.
 *
 * Limits and reclaim. A tag is named by its path as m.tags keys it ("cache/pages", no
 * leading '/'), and "" names the whole process (the root); a path no tag has is an error
 * naming it.
 * - mmt.limit(path, bytes) sets a hard limit, as mmt_limit_set does (nil or 0 removes the
 *   tag's limit). It is declared as the file runs (from a rule or task it is an error), at
 *   most once a tag, and the limits are the policy's own: the engine applies them when it
 *   switches to the policy (a file that fails to load applies none, and the running
 *   policy's stay), and when it switches to the next version of the file it gives back
 *   those the new one no longer sets, each to what it was before the engine's policies
 *   set it (none, unless the program had set one); mmt_policy_free gives back them all. A
 *   limit the program changed after the policy set it (mmt_limit_get no longer gives the
 *   policy's value) is left as the program set it, and a policy that sets it again will
 *   give back the program's value. Each change is logged at level info. Engines that limit
 *   one tag share it: the one that set it last wins, and when it gives the limit back the
 *   tag takes the value of the engine that set it before (of those still setting it), or
 *   once none is left the program's, whatever order the engines give it back in. A limit
 *   set by a policy binds the program as one it sets itself: mmt_malloc aborts when the
 *   reclaimers cannot make room under it.
 * - mmt.reclaim(path, bytes) runs the reclaimers of the tag's subtree (mmt_reclaim) and
 *   returns the bytes its in_use fell by; 0 or less asks for nothing. On the engine's
 *   thread (a tick, a task) and while the file loads the reclaimers run at once, and their
 *   time counts against the calling rule or task.
 * - mmt.trim() returns the drop in resident bytes of mmt_trim.
 * - At an allocation checkpoint, policy code runs inside the allocation or free that
 *   reached it, on whichever thread made it: a reclaimer that takes a lock that thread
 *   holds would wait forever. There mmt.reclaim and mmt.trim run nothing: they return nil,
 *   "deferred", and the engine's thread, woken for it, runs them soon after, in the order
 *   asked (a reclaim of a tag asked again before it ran is one, of the larger amount); a
 *   reclaim is reported as any other, a trim logged at level info. Until the thread has
 *   run them, checkpoints do not evaluate the engine: the next evaluation sees what they
 *   did. They return nil and a message saying why, and nothing is asked, when 64 already
 *   wait, and in an engine without a thread (no interval_ms, no watch; said once in the
 *   log, as a warning).
 * - Dry runs (opts.dry_run): the policy runs as ever (its rules are evaluated, fire and
 *   resolve, their code runs, the event function is told, its tasks run and its lines are
 *   logged), but it acts on nothing: each thing it would have done is logged at level
 *   info instead, one line naming it, and nothing is run, set or asked of the engine's
 *   thread. mmt.call(name, n) logs "dry run: would call shed(1048576)" and returns 0,
 *   whether or not the host registered the action (an unknown name is no error in a dry
 *   run); mmt.reclaim(path, bytes) logs "dry run: would reclaim 8 MiB of tag "flows""
 *   (of the whole process for "") and returns 0, at a checkpoint too (never nil,
 *   "deferred"), and 0 or less logs nothing, as it asks nothing; mmt.trim() logs "dry
 *   run: would trim" and returns 0; the limits of mmt.limit are checked and declared as
 *   ever, and the switch to the policy logs "dry run: would set the limit on tag "cache"
 *   to 64 MiB (now none)" for each and sets none, so it gives none back either:
 *   mmt_limit_get and m.tags[path].limit read the limits as the program (or another
 *   engine) set them. systemd's memory pressure watch without a rule "memory-pressure"
 *   logs "dry run: would trim" instead of trimming. Lines that the program's own
 *   reclaims cause (the reports, below) are logged as ever: they are not the policy's.
 *   A policy in `unsafe` mode can still act through the standard library (os.exit).
 * Every reclaim in the process is reported to each engine's log at level info
 * ("reclaim for tag "flows": wanted 8 MiB, freed 8.003 MiB: oldest-flows 8.003 MiB,
 * 11.8 ms"), by the engine's thread, each time it wakes (a tick, a task, a reload, or a
 * policy's mmt.reclaim), and by mmt_policy_free: never from inside the allocation that
 * reclaimed. Reports wait in a ring of the last 64; those lost before the thread looked
 * are counted in a warning. An engine without a thread (no interval_ms, no watch) does
 * not log them.
 *
 * Checkpoints: rules are evaluated inside the allocation or free that moves in_use by
 * checkpoint_bytes since the previous evaluation, exactly in a single thread and within
 * the bound mmt_mem_set_checkpoint (memory.h) states with several. A checkpoint that finds
 * the engine busy (its timer, a task, a load, another thread evaluating, or a reclaim or
 * trim asked of its thread at a checkpoint and not done yet) does not wait:
 * the engine's evaluation is tried again, at most once a millisecond, by an allocation or
 * free that has moved its thread's in_use by 4 KiB since. With several threads a checkpoint judges on a reading
 * taken while others allocate: its in_use is at most 64 KiB above the truth (mmt_meminfo).
 *
 * Threads: every function here may be called from any thread. From inside the engine's
 * own code (a host action, the log or event function, or the engine's thread), the calls
 * that would wait for that very code, mmt_policy_load, mmt_policy_reload and
 * mmt_policy_free, do nothing and return MMT_EBUSY (with a log line, except a load or
 * reload asked by policy code, which is refused quietly); the others are safe there.
 *
 * Policy code runs under limits a policy cannot lift: its memory (lua_memory_limit), the
 * time of one call (budget_ms) and of one evaluation (evaluation_ms), and the C stack
 * (1 MiB, and never closer than 64 KiB to the end of the thread's stack): recursion
 * through C functions that call Lua (string.gsub, table.sort, __tostring) is stopped with
 * "C stack overflow"; on a stack that is not the thread's own (a fiber) or with less than
 * 128 KiB of it left, a checkpoint runs no policy code. Engine calls and evaluations run
 * with thread cancellation disabled, so a cancelled thread never leaves the engine's locks
 * held. Log lines and load errors are one line: control characters and bytes that are not
 * UTF-8 are escaped (\n, \xHH).
 *
 * Watching (opts.watch): the engine follows the file its path leads to now, through
 * symlinks (a Kubernetes ConfigMap volume's ..data swap included) and folders that are
 * swapped or removed and made again: with inotify on those folders, and a comparison of
 * the file's identity every 2 s as a safety net; where it has no inotify instance, by
 * that comparison every 250 ms. A newly created file is loaded once its writer closes
 * it. Only a regular file is ever loaded: a FIFO, socket, device or folder is refused
 * without being opened, and the running policy stays.
 *
 * The textfile (opts.export_path): a long-running program reports while it runs, through
 * node_exporter's textfile collector, which serves every FILE.prom of its folder. The
 * engine's thread writes the file: the counters, every tag's and the machine's figures as
 * mmt_meminfo_write(f, MMT_FORMAT_PROMETHEUS) has them, then one sample a rule of the running
 * policy, by name, of mmt_rule_firing{rule="..."} (a gauge, 1 while it fires, 0 otherwise)
 * and mmt_rule_fired_total{rule="..."} (a counter: how many times it fired since the engine
 * started, carried over a reload by rule name as the firing state is), each with HELP and
 * TYPE lines, without timestamps or job and instance labels (the scraper adds them). It is
 * written when a policy is switched to (a load or reload), every export_every_s seconds
 * after the last write (or after the engine was made, until a policy loads), and a last
 * time when the thread stops (mmt_policy_free), and left there: node_exporter's
 * node_textfile_mtime_seconds tells its age. Each write goes into ".NAME.tmp.PID" beside
 * it, which is then renamed over it: a reader finds the old file or the new one, whole.
 * A write that fails (the folder missing or read-only, the disk full) is logged as a
 * warning naming the path and the cause, once while the cause stays the same, and is tried
 * again at the next period; its temporary file is removed, and the program goes on. The
 * file takes mode 0644 less the umask: node_exporter, another user, must be able to read
 * it. Only the process that made the engine writes it: a forked child's engine does not
 * (the file is its parent's; a child that should, a daemon's, frees that engine and makes
 * one of its own). With a textfile, the engine has its thread even without interval_ms
 * or watch.
 *
 * fork: a child's engine restarts its thread, which polls the file every 250 ms rather
 * than take an inotify instance of its own (they are the user's, 128 by default, and a
 * pre-forking server would take one per worker).
 *
 * Descriptors: the engine's (a socket pair to wake its thread, an inotify instance, the
 * textfile's temporary file while it is written) are close-on-exec and numbered from 512
 * up where RLIMIT_NOFILE allows. A program may close them (close_range): the engine then
 * wakes by itself and polls the file (or fails that write of the textfile, and says so),
 * and never reads, writes or closes a file the program opened on the same numbers.
 */
#ifndef MMT_POLICY_H
#define MMT_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "memory.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mmt_policy mmt_policy_t;

typedef struct mmt_policy_options {
    unsigned interval_ms;    /* timer period for evaluating rules, and the window of `rate`;
                              * 0: no timer (rules at checkpoints only, a 1 s window, and
                              * mmt.every tasks never run). Tasks run at their own period. */
    int watch;               /* nonzero: reload by itself when the policy file changes */
    size_t checkpoint_bytes; /* allocation checkpoint distance; 0: default (1 MiB) */
    size_t lua_memory_limit; /* bytes the policy VM may hold; 0: default (64 MiB) */
    int unsafe;              /* nonzero: policies get the full standard library */
    unsigned budget_ms;      /* time one call into policy code may take; 0: default (100 ms).
                              * A file's own run, at load, may take ten times as long. */
    unsigned evaluation_ms;  /* time one evaluation (every rule and due task) may take; 0:
                              * default (twice budget_ms). Past it the evaluation stops, the
                              * rules that took the most are named, the rules not reached go
                              * first next time, and one that took the most in 3 such
                              * evaluations in a row is disabled until a reload. */
    unsigned trend_window_s; /* seconds of in_use samples the trend (m.eta, m.predict) is
                              * fitted over; 0: default (60) */
    int dry_run;             /* nonzero: the policy's host actions, reclaims, trims and
                              * limits are logged ("dry run: would ..."), not done: see
                              * "Limits and reclaim" above. Rules fire as ever. */
    const char *export_path; /* a Prometheus textfile for node_exporter to write (see "The
                              * textfile" above); NULL or "": none. Copied, and made
                              * absolute against the current folder. */
    unsigned export_every_s; /* seconds between two writes of it; 0: default (15) */
} mmt_policy_options_t;      /* zero-initialised means all defaults */

/* A host action, called by a policy as mmt.call(name, arg); its result is returned to Lua.
 * It runs on the evaluating thread with the engine busy: it may allocate and free. */
typedef int64_t (*mmt_policy_action_fn)(int64_t arg, void *ud);

/* Receives the engine's and the policies' messages, one line each without a newline. */
typedef void (*mmt_policy_log_fn)(int level, const char *message, void *ud);

enum { MMT_LOG_ERROR = 0, MMT_LOG_WARN = 1, MMT_LOG_INFO = 2, MMT_LOG_DEBUG = 3 };

/* Told when a rule changes state: fired = 1 when it fires, 0 when it resolves; `m` holds
 * the counters it was judged on. It runs on the evaluating thread with the engine busy,
 * after the rule's own fire or resolve code. */
typedef void (*mmt_policy_event_fn)(const char *rule, int fired, const mmt_meminfo_t *m,
                                    void *ud);

/* Every function below given a NULL engine does nothing: those that return an error code
 * return MMT_EINVAL (mmt_policy_free returns 0, as free(NULL) does nothing), and
 * mmt_policy_error returns "". */

/* Creates an engine with no policy loaded; opts may be NULL (all defaults). It sets the
 * process-wide checkpoint distance (mmt_mem_set_checkpoint) to opts->checkpoint_bytes if
 * none is set or the one set is larger. Returns NULL only if the engine's own memory or
 * thread cannot be had. */
MMT_API mmt_policy_t *mmt_policy_new(const mmt_policy_options_t *opts);

/* Registers (or replaces) the host action `name` for policies to call. Returns 0, or
 * MMT_EINVAL (NULL or empty name, NULL fn) or MMT_ENOMEM. Actions survive reloads. */
MMT_API int mmt_policy_action(mmt_policy_t *p, const char *name, mmt_policy_action_fn fn, void *ud);

/* Sets where messages go; fn == NULL restores the default, one line on stderr (debug
 * messages only when the environment has MMT_DEBUG). */
MMT_API void mmt_policy_set_log(mmt_policy_t *p, mmt_policy_log_fn fn, void *ud);

/* Sets the function told of rule events (none by default); fn == NULL removes it. */
MMT_API void mmt_policy_set_event(mmt_policy_t *p, mmt_policy_event_fn fn, void *ud);

/* Loads the policy file at `path` into a fresh state and, if that succeeded, switches to
 * it, carrying rule state (firing or not) over by rule name, and switching the limits
 * (mmt.limit, above) from the previous policy's to the new one's. Returns 0, or
 * MMT_ELOAD: not loaded, the previous policy and its limits stay, and the reason
 * ("file:line: message") is logged and available from mmt_policy_error(). `path` becomes
 * the engine's file. */
MMT_API int mmt_policy_load(mmt_policy_t *p, const char *path);

/* mmt_policy_load with the last path given; MMT_EINVAL if there was none. */
MMT_API int mmt_policy_reload(mmt_policy_t *p);

/* The last load error, "" if the last load succeeded: a copy private to the calling thread,
 * valid until its next call of mmt_policy_error (a reload on the engine's thread cannot
 * change it under the caller). */
MMT_API const char *mmt_policy_error(const mmt_policy_t *p);

/* Stops evaluating at checkpoints (waiting for an evaluation running on another thread),
 * stops the timer and watcher (which writes the textfile a last time, and leaves it),
 * gives back the limits its policy set (mmt.limit), frees everything; returns 0 (NULL
 * does nothing). The engine's thread runs the program's
 * reclaimers for its policy (mmt.reclaim at a tick, in a task, or asked at a checkpoint),
 * and this waits for one it is running: a reclaimer must not wait for anything the thread
 * calling mmt_policy_free holds. A reclaim or trim asked of the thread that it had not started is not run, and
 * the log says so. Called from the engine's own code (a host action, the log or event
 * function, the engine's thread), which it would wait for, it frees nothing, logs why and
 * returns MMT_EBUSY: free it after that code has returned. With `watch`, it can take 5 to
 * 20 ms: closing the file watch (inotify) waits for the kernel. */
MMT_API int mmt_policy_free(mmt_policy_t *p);

#ifdef __cplusplus
}
#endif

#endif

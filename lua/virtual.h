/*
 * A virtual engine: the policy engine driven by given figures on a given clock, one step
 * at a time, rather than by the process's counters and the monotonic clock. mmt-policy's
 * `test` and `replay` run policies in it: an hour of series runs in milliseconds.
 *
 * Everything but the clock, the figures and the host actions is the engine's own code:
 * loading, the rate's samples, the trend, rules and their hold, mmt.every's grid, fire and
 * resolve, the log and the event function. A step is one timer tick (rules, then the
 * tasks due). What differs from an engine of the process:
 * - no thread, no file watch, no textfile, no checkpoint hook: nothing runs but steps;
 * - m.time, hold, mmt.every, m.rate and the trend follow the virtual clock;
 * - the snapshot's counters are the step's, and so are the machine's figures (a part the
 *   step does not give reads as absent, as on a machine without it); before the first
 *   step, as the policy loads, the counters are 0 and the machine has nothing;
 * - mmt.call runs the action registered under its name (a stub), and any other name does
 *   nothing and returns 0, as in a dry run; either way on_call is told. Reclaims, trims
 *   and limits are a dry run's: logged, not done;
 * - pressure rules have no kernel trigger: they are judged at each step on psi_some10 or
 *   psi_full10, as where a trigger cannot be armed.
 * - tags: a tag a policy names (a rule's tag, mmt.limit, mmt.reclaim) is made in the
 *   process if it does not exist, as the host would have made it; its figures are the
 *   step's (`tags`).
 */
#ifndef MMT_LUA_VIRTUAL_H
#define MMT_LUA_VIRTUAL_H

#include <stdbool.h>
#include <stdint.h>

#include "mmt/policy.h"
#include "tags.h"

typedef struct mmt__step {
    double time;                /* the virtual clock at this step, never earlier than the last */
    mmt_meminfo_t info;         /* the counters */
    mmt_machine_t machine;      /* the machine's figures, for the parts in `machine_parts` */
    unsigned machine_parts;     /* MMT_MACHINE_* */
    double rss;                 /* m.rss; < 0: not given (read as 0) */
    /* The tags' figures, indexed by id (ntags of them; the root's is `info` whatever this
     * says); a tag past ntags reads as 0. */
    const mmt__tag_reading_t *tags;
    unsigned ntags;
} mmt__step_t;

/* Called for every mmt.call: its name, argument and result; `stubbed` if an action was
 * registered under that name (else the result is 0 and nothing was run). */
typedef void (*mmt__call_fn)(const char *name, int64_t arg, int64_t result, bool stubbed,
                             void *ud);

/* A virtual engine whose clock starts at `start` (the time its policies load at, which
 * mmt.every's grid starts from). opts as mmt_policy_new's; interval_ms is the steps'
 * spacing, the window of m.rate (0: 1 s). watch and export_path are ignored, dry_run is
 * set. Free it with mmt_policy_free. NULL if out of memory. */
mmt_policy_t *mmt__virtual_new(const mmt_policy_options_t *opts, double start,
                               mmt__call_fn on_call, void *ud);

/* One tick at step->time (the clock moves there first): the rules, then the tasks due. */
void mmt__virtual_step(mmt_policy_t *p, const mmt__step_t *step);

/* The tag at `path` ("cache/pages"), made with its parents if p is virtual and it does
 * not exist. Returns its id, or an error code (MMT_ENOENT: none, on an engine of the
 * process). */
int mmt__policy_tag(mmt_policy_t *p, const char *path);

/* Moves the clock to `time` without a step (before a load, for a gap in a series). */
void mmt__virtual_set_time(mmt_policy_t *p, double time);

#endif

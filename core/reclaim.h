/*
 * Limits and reclaimers (the API is in mmt/memory.h).
 *
 * Admission. While no limit is set, an allocation pays one load and test of
 * mmt__limits_on. Once one is, each allocation (and each realloc's growth) is admitted
 * before it calls the allocator underneath, in three steps, each taken when the one before
 * cannot decide:
 *   1. The thread's allowance (tags.h): it takes the request's bytes from what it was
 *      granted, with a test of two thread-local words and one shared word read, no more.
 *   2. A grant: if every limited subtree's estimate (tags.h; the process's for the root),
 *      plus what the threads may hold back from it and their allowances (mmt__limit_slack),
 *      plus the request and a whole new allowance, is within its limit, the thread gets a
 *      new allowance and the request passes. Else the test of step 2 for the request's own
 *      tag and those above it, without an allowance: Linux's percpu_counter_compare.
 *   3. Within reach of a limit: every allowance is voided (the generation moves on), and
 *      the subtree's in_use is summed exactly over every thread (mmt__tag_in_use); the
 *      request fits if that sum plus the request is at most the limit.
 * A grant pays its request from the new allowance. Any other request admitted by step 2 or
 * 3 is reserved (mmt__limits_reserved, which the tests of step 2 add in) from its
 * admission until its block is counted, so that a grant made meanwhile sees it; the whole
 * allocation past the allowance is out of line for that.
 * Invariant, for each limit: in_use plus every unspent allowance stays within it, since a
 * grant reserves a whole allowance for every thread and sees the exact admissions on their
 * way, and an exact admission first voids the allowances (again after a reclaim, whose
 * reclaimers may have been granted some). No grant is made inside a reclaim. Admission comes before counting, so with no other thread allocating the limit
 * holds to the byte; threads admitted at once (an allowance spent as it was voided
 * included) may each pass on a sum that lacks the others' requests, so the excess is at
 * most what they have in flight.
 *
 * Reclaim. A request that does not fit runs the reclaimers registered in the limited
 * subtree, lowest rank first (then oldest first), each asked for what is still missing
 * and measured by the subtree's exact in_use before and after; it stops as soon as the
 * request fits. Each runs at most once per request; one that freed nothing twice in a row
 * is skipped for MMT_RECLAIM_BACKOFF_S seconds (not by mmt_reclaim). A thread inside a
 * reclaim starts no other: its own allocations are admitted or refused, no more. The
 * reclaimers run on the requesting thread with no lock of mmt's held.
 *
 * Reports. Each reclaim writes a line into a ring of the last MMT__RECLAIM_REPORTS, from
 * which each policy engine takes them into its log (it cannot be called from inside an
 * allocation: that thread may hold the engine's locks).
 */
#ifndef MMT_CORE_RECLAIM_H
#define MMT_CORE_RECLAIM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "counters.h"
#include "tags.h"

/* How many limits are set: nonzero sends every allocation to mmt__limit_admit. */
extern _Atomic unsigned mmt__limits_on;

static inline bool mmt__limits_set(void)
{
    return MMT__UNLIKELY(atomic_load_explicit(&mmt__limits_on, memory_order_relaxed) != 0);
}

/* Grants this thread an allowance (tags.h) if a whole allowance more keeps every limited
 * subtree far from its limit, and pays a request of `size` bytes (at most an allowance)
 * from it; true: the request is admitted. */
bool mmt__limit_grant(uint64_t size);

/* Reserves `size` bytes of a request admitted past the thread's allowance, while it is on
 * its way to being counted (mmt__limits_reserved); and ends this thread's reservations,
 * once what they were for is counted or refused. */
void mmt__limit_reserve(uint64_t size);
void mmt__limit_release(void);

/* Before an admission past the allowance: drops this thread's reservations that are
 * counted by now (all of them, outside a reclaim) and returns the mark to release back to
 * once the new request is counted or refused (mmt__limit_release_to): a reclaimer's
 * allocations release their own reservations, not the request that started the reclaim. */
uint64_t mmt__limit_settle(void);
void mmt__limit_release_to(uint64_t mark);

/* May `size` more bytes be counted in `tag`, by the exact sums? With `may_reclaim`,
 * reclaims first if need be (not inside a reclaim). True: go on. Refused: false if `try_`,
 * else the abort of a failed allocation naming `call` (a function's name, or the whole
 * call with its arguments), the tag that holds the limit, the limit and the request. */
bool mmt__limit_admit(const char *call, unsigned tag, uint64_t size, bool try_, bool may_reclaim);

/* The allocator underneath failed a request of `size` bytes: runs every reclaimer (those
 * backing off excepted) and mmt_trim. True if the caller should try once more (false
 * inside a reclaim), after admitting the request again without reclaiming: the
 * reclaimers may have allocated. */
bool mmt__reclaim_for_allocator(uint64_t size);

/* The reclaim reports (see above). *cursor is the next report the reader wants (start it
 * at mmt__reclaim_reports_next()); fn gets each report after it, oldest first, outside
 * any lock. Returns how many the reader missed (overwritten before it came). */
#define MMT__RECLAIM_REPORTS 64
uint64_t mmt__reclaim_reports_next(void);
unsigned mmt__reclaim_reports(uint64_t *cursor, void (*fn)(const char *line, void *ud), void *ud);

/* "64 MiB", "63.9 MiB", "512 bytes" (a whole number of its unit without decimals), into
 * buf, which it returns: the reports' way of saying a size, for the engine's lines too. */
const char *mmt__human_bytes(uint64_t bytes, char *buf, size_t len);

/* fork: the reclaimer list's and the reports' locks. */
void mmt__limits_fork_prepare(void);
void mmt__limits_fork_parent(void);
void mmt__limits_fork_child(void);

#endif

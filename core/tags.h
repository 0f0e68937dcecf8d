/*
 * Tags: per-subsystem counters (the API is in mmt/memory.h).
 *
 * A block's tag lives in the top 16 bits of its header's size word, so every bit of it is
 * covered by the check. Blocks of the root tag (0) are counted as before, in the thread's
 * slot only: the untagged path pays one test. A block of tag t is counted in the slot too
 * (the process-wide figures stay whole) and in the thread's counts for t, an
 * mmt__counts_t like the slot's own, with marks of its own, in the thread's tag table.
 *
 * Folding. When a thread's net movement in t reaches a mark, its pending movement is added
 * to the estimate of t and of each of t's ancestors below the root (`published`, one per
 * tag, the subtree's in_use as of the folds), and the subtree's peak is raised to the
 * estimate before the fold plus the rise since the last one, as for the process. The root's
 * estimate is the process's.
 *
 * Tables. A thread's table is made at its first tagged operation: a directory of chunks of
 * MMT__TAG_CHUNK counts, each chunk made when the thread first counts in one of its tags.
 * Both come from the backend, uncounted. The owner publishes them with release stores; a
 * reader walks the live slots' tables under the registry lock (counters.c), which is also
 * the lock under which a retiring thread's table is emptied into the tags' `gone` counts
 * and freed. A thread that has no table (it cannot register, it retired, or no memory was
 * left for one) counts in `gone` with fetch_add.
 *
 * Reading sums, per tag, the gone counts and every live table's counts, frees first, like
 * mmt_meminfo; then adds each tag's figures to its parent's, from the highest id down
 * (a parent is always older than its children, so it has a lower id).
 *
 * Windows. A thread's window in a tag is MMT__TAG_WINDOW over the number of tags it counts
 * in (at least MMT__TAG_WINDOW_MIN); when it starts counting in one more, its other counts
 * narrow at once, so that what it holds back from any subtree stays within one window in
 * all while it counts in up to 16 tags.
 *
 * fork: a tagged realloc journals the tag's counts too (the table's journal), and the
 * child completes the journal of each dead thread's busy table, as for the slots. The
 * child's handler calls no allocator: it sums the estimates in place (child_net and
 * child_pending in each tag) and leaves dead threads' tables where they are. A tagged
 * malloc or free is counted in its tag, then in the slot, without a journal: a child forked
 * between the two may count that block, unreachable there, in the tag and not the root.
 */
#ifndef MMT_CORE_TAGS_H
#define MMT_CORE_TAGS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "counters.h"
#include "mmt/memory.h"

#define MMT__TAG_SHIFT 48
#define MMT__SIZE_MASK (((uint64_t)1 << MMT__TAG_SHIFT) - 1)
#define MMT__TAG_CHUNK 64
#define MMT__TAG_CHUNKS ((MMT_TAGS_MAX + 1) / MMT__TAG_CHUNK)

/* The window of a thread's counts in one tag: MMT__TAG_WINDOW over the number of tags it
 * counts in, and at least MMT__TAG_WINDOW_MIN. */
#define MMT__TAG_WINDOW ((int64_t)64 * 1024)
#define MMT__TAG_WINDOW_MIN ((int64_t)4 * 1024)

typedef struct mmt__tag_table {
    mmt__counts_t *_Atomic chunks[MMT__TAG_CHUNKS];
    unsigned touched; /* tags this thread has counted in */
    _Atomic int busy; /* a tagged realloc is under way: the journal holds its outcome */
    unsigned journal_tag;
    uint64_t journal_allocated, journal_freed;
} mmt__tag_table_t;

/* Tags that exist now: ids below this. */
unsigned mmt__tag_count(void);

static inline bool mmt__tag_exists(unsigned tag)
{
    return tag < mmt__tag_count();
}

/* This thread's counts in tag (> 0), found or made; NULL if it cannot have them (then it
 * counts with mmt__tag_gone). Counts of the current tag are kept in s->cur. */
mmt__counts_t *mmt__tag_counts(mmt__slot_t *s, unsigned tag);

static inline mmt__counts_t *mmt__tag_counts_fast(mmt__slot_t *s, unsigned tag)
{
    mmt__counts_t *c = s->cur;
    if (MMT__LIKELY(c != NULL && tag == s->tag_bits >> MMT__TAG_SHIFT)) return c;
    return mmt__tag_counts(s, tag);
}

/* A thread's counts in tag reached a mark: folds them and sets new marks. */
void mmt__tag_fold(mmt__counts_t *c, unsigned tag);

/* Counts of a thread that has none of its own for tag, added to the tag's shared ones. */
void mmt__tag_gone(unsigned tag, uint64_t allocated, uint64_t freed, uint64_t allocations,
                   uint64_t frees, uint64_t reallocs);

/* Counting in tag t (> 0), besides the slot (the caller counts there after). */
static inline void mmt__count_tag_alloc(unsigned tag, uint64_t n)
{
    mmt__counts_t *c = mmt__tag_counts_fast(&mmt__tls, tag);
    if (MMT__UNLIKELY(!c)) mmt__tag_gone(tag, n, 0, 1, 0, 0);
    else if (mmt__counts_alloc(c, n)) mmt__tag_fold(c, tag);
}

static inline void mmt__count_tag_free(unsigned tag, uint64_t n)
{
    mmt__counts_t *c = mmt__tag_counts_fast(&mmt__tls, tag);
    if (MMT__UNLIKELY(!c)) mmt__tag_gone(tag, 0, n, 0, 1, 0);
    else if (mmt__counts_free(c, n)) mmt__tag_fold(c, tag);
}

static inline void mmt__count_tag_grow(unsigned tag, uint64_t n)
{
    mmt__counts_t *c = mmt__tag_counts_fast(&mmt__tls, tag);
    if (MMT__UNLIKELY(!c)) mmt__tag_gone(tag, n, 0, 0, 0, 0);
    else if (mmt__counts_grow(c, n)) mmt__tag_fold(c, tag);
}

/* A tagged realloc: opens the tag's journal (before the slot's, mmt__realloc_begin) and
 * returns the counts to give mmt__count_realloc_in (NULL: the shared ones). */
mmt__counts_t *mmt__realloc_begin_in(unsigned tag, uint64_t size, uint64_t old);
void mmt__count_realloc_in(mmt__counts_t *c, unsigned tag, uint64_t size, uint64_t old);

/* A failed realloc never reaches its counters: its tag journal is void. */
void mmt__tags_realloc_void(void);

/* Called by counters.c with the registry lock held: a slot leaves the registry (its
 * thread exited, or is gone in a fork child: then dead is true and a busy journal is
 * completed first). Its tag counts move to the tags' gone counts and its table is freed. */
void mmt__tags_retire_locked(mmt__slot_t *s, bool dead);

/* In a fork child, once the dead threads' slots are retired (registry lock held, `slots`
 * the live ones): each tag's estimate set from the exact sums, since a dead thread may have
 * stopped between a fold's two halves. */
void mmt__tags_fork_child_locked(mmt__slot_t *slots);

/* One tag's figures: those of its subtree, and those of its own blocks (own.peak is 0). */
typedef struct mmt__tag_reading {
    mmt_meminfo_t sub, own;
} mmt__tag_reading_t;

/* Reads every tag: *n is set to how many exist and *out to an array of them from the
 * backend, indexed by id (the root's is mmt_meminfo's), which the caller gives back with
 * mmt__backend.free. Returns 0 or MMT_ENOMEM. */
int mmt__tags_read(mmt__tag_reading_t **out, unsigned *n);

/* The paths of tags 1..n-1 ("cache/pages"), made at once for the exports and the policy
 * engine, which list every tag. */
typedef struct mmt__tag_paths {
    unsigned n;      /* tags, the root included */
    char *text;      /* every path, each NUL-terminated; the root's is "" */
    size_t *at, *len; /* tag id's path is text + at[id], len[id] bytes */
    unsigned *order; /* the n - 1 ids but the root's, in the order of mmt__tag_path_compare */
} mmt__tag_paths_t;

/* Fills *out for tags 0..n-1 (n at most mmt__tag_count(), as a reading gave it) from the
 * backend; mmt__tag_paths_free gives it back. Returns 0 or MMT_ENOMEM (*out then empty).
 * Takes no lock: a tag's name and parent never change once it exists. */
int mmt__tag_paths(unsigned n, mmt__tag_paths_t *out);
void mmt__tag_paths_free(mmt__tag_paths_t *p);

/* Orders paths as the tree: a tag, then its subtree, then its next sibling; siblings by
 * name, byte by byte (so "a", "a/b", "a.b": '/' counts below every other byte). Returns
 * < 0, 0 or > 0 like strcmp. */
int mmt__tag_path_compare(const char *a, size_t alen, const char *b, size_t blen);

/* Limits (reclaim.c holds the policy; these are the tree's side). A tag's limit covers its
 * subtree; mmt__tag_set_limit also updates, for every tag, which tag at or above it has
 * one. The `limited` functions return 1 + that tag's id, or 0 for none: `at` starts at the
 * tag itself, `above` at its parent. */
void mmt__tag_set_limit(unsigned tag, uint64_t bytes);
uint64_t mmt__tag_limit(unsigned tag);
unsigned mmt__tag_limited_at(unsigned tag);
unsigned mmt__tag_limited_above(unsigned tag);

/* A thread's allowance (reclaim.h): bytes it may allocate while limits are set with no test
 * but this one, granted MMT__ALLOWANCE at a time by a test of every limit and void once
 * mmt__limits_gen moves on (a limit changed, or a request came near one). Only a thread
 * with a counter slot has one, so that there are at most mmt__threads_counted() of them. */
#define MMT__ALLOWANCE ((int64_t)32 * 1024)
typedef struct mmt__allowance {
    uint64_t gen;  /* the generation it was granted under */
    uint64_t left; /* bytes */
} mmt__allowance_t;
extern _Thread_local mmt__allowance_t mmt__allowance __attribute__((tls_model("initial-exec")));
extern _Atomic uint64_t mmt__limits_gen; /* from 1: a zeroed allowance is void */

/* Bytes of requests admitted by the exact test (reclaim.h) that the estimates may not show
 * yet: each stays reserved until its thread's next admission past its allowance. */
extern _Atomic int64_t mmt__limits_reserved;

/* Takes `size` bytes from this thread's allowance; false if it has not that many. */
static inline bool mmt__allowed(uint64_t size)
{
    mmt__allowance_t *a = &mmt__allowance;
    if (MMT__LIKELY(a->gen == atomic_load_explicit(&mmt__limits_gen, memory_order_relaxed) &&
                    size <= a->left)) {
        a->left -= size;
        return true;
    }
    return false;
}

/* The limits, flat by id (tags.c says how they are kept), and what the live tables hold
 * back from the tags' estimates (mmt__estimates[tag], counters.h) in all. */
extern _Atomic uint64_t mmt__limit_of[];
extern _Atomic uint16_t mmt__limited_at[], mmt__limited_above[];
extern _Atomic int64_t mmt__tags_held_back;

/* True if `size` more bytes in tag keep every limited subtree it is in below its limit by
 * the estimates and their slack: the common case, decided with no sum, no shared write
 * and no call. False means: ask mmt__limit_admit. */
/* What the threads may add to limited subtree a (a limit's id) without a sum: what they
 * hold back from its estimate (from the process, a window each; from a tag, what the
 * tables may), their allowances, and the requests the exact test admitted (reclaim.h). */
static inline int64_t mmt__limit_slack(unsigned a)
{
    int64_t threads = (int64_t)mmt__threads_counted();
    return threads * MMT__ALLOWANCE + atomic_load(&mmt__limits_reserved) +
           (a == MMT_TAG_ROOT ? threads * MMT__WINDOW_MAX
                              : atomic_load_explicit(&mmt__tags_held_back, memory_order_relaxed));
}

/* True if `size` more bytes keep limited subtree a below its limit by the estimate and
 * its slack. Limits are below 2^63 (mmt_limit_set caps them), sizes below 2^48, estimates
 * and slack far below either: the sum does not overflow. */
static inline bool mmt__tag_far(unsigned a, uint64_t size)
{
    /* The slack first, then the estimate: a request admitted past the allowances stays
     * reserved until its block is in the estimate (alloc.c counts it, then releases), so a
     * reading that no longer sees the reservation sees the block (the reservation's load
     * orders the estimate's after it). The other way round, a grant could read the
     * estimate before the block and the reservations after its release, and see neither:
     * an allowance then outlived a request that filled the limit. */
    int64_t slack = mmt__limit_slack(a);
    int64_t total = atomic_load_explicit(&mmt__estimates[a], memory_order_relaxed) + slack +
                    (int64_t)size;
    uint64_t limit = atomic_load_explicit(&mmt__limit_of[a], memory_order_relaxed);
    return !limit || total <= (int64_t)limit;
}

/* True if `size` more bytes in tag keep every limited subtree it is in far from its limit:
 * decided with no sum and no shared write. False means: ask mmt__limit_admit. */
static inline bool mmt__tags_far_from_limits(unsigned tag, uint64_t size)
{
    for (unsigned at = atomic_load_explicit(&mmt__limited_at[tag], memory_order_relaxed); at;
         at = atomic_load_explicit(&mmt__limited_above[at - 1], memory_order_relaxed))
        if (!mmt__tag_far(at - 1, size)) return false;
    return true;
}

/* The same for every limited subtree, whatever the tag: the test of a grant (reclaim.h). */
bool mmt__tags_all_far(uint64_t size);

/* The subtree's in_use, exact when no thread is counting in it meanwhile: a sum over every
 * thread's counts, under the registry lock. */
int64_t mmt__tag_in_use(unsigned tag);

/* True if tag is ancestor or in its subtree. */
bool mmt__tag_within(unsigned tag, unsigned ancestor);

/* The tag creation lock, for fork (taken before the registry's). */
void mmt__tags_fork_prepare(void);
void mmt__tags_fork_parent(void);
void mmt__tags_fork_child(void);

#endif

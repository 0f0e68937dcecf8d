/*
 * Per-thread counters. Each thread that allocates owns a slot, one cache line or two of
 * its own, and updates it with plain loads and release stores: no shared line is written
 * on the hot path. mmt_meminfo() sums the slots under the registry lock.
 *
 * Besides exact totals, each slot keeps `pending`, its net byte movement not yet folded
 * into the process-wide estimate `published`. A thread folds once |pending| reaches the
 * fold limit (64 KiB, or the checkpoint distance if smaller); folding is where peak is
 * raised and where listener checkpoints are triggered. With one thread, published is
 * exact after every fold; with N threads it is within (N - 1) * limit of in_use.
 *
 * Peak: a fold raises it to the estimate before the fold plus the highest point the
 * thread's pending reached in the window, which is exact with one thread. With N threads
 * the first fold after the true peak lands below it by less than the other threads'
 * pending, (N - 1) * limit; a candidate overshoots by less than (N + 1) * limit, the
 * other threads' pending plus the folding thread's own fall (< 2 * limit) since its high
 * point. memory.h promises 2 * N * limit, which covers both.
 */
#ifndef MMT_CORE_COUNTERS_H
#define MMT_CORE_COUNTERS_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "fields.h"

#define MMT__LIKELY(x) __builtin_expect(!!(x), 1)
#define MMT__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MMT__CACHE_LINE 64

/* Default fold limit, and the largest one: bounds how far peak can lag per thread. */
#define MMT__FOLD_LIMIT_MAX ((int64_t)64 * 1024)

/* A slot holds the summed fields of mmt_meminfo_t (fields.h), not the derived ones. */
#define MMT__SLOT_SUM(name) _Atomic uint64_t name;
#define MMT__SLOT_SUM_FIRST(name) _Atomic uint64_t name;
#define MMT__SLOT_DERIVED(name)
#define MMT__SLOT_FIELD(name, kind, unit, type, help) MMT__SLOT_##kind(name)

typedef struct mmt__slot {
    /* Written by the owning thread only (load, add, release store); read by mmt_meminfo.
     * The shared fallback slot is the exception: any thread updates it with fetch_add. */
    MMT__MEMINFO_FIELDS(MMT__SLOT_FIELD) /* allocated, freed, allocations, frees, reallocs */
    _Atomic int64_t pending;     /* net bytes not yet folded into `published` */
    _Atomic int64_t pending_max; /* highest `pending` since the last fold; >= 0 */
    /* The registry lock protects these two. */
    struct mmt__slot *next;
    struct mmt__slot *prev;
    void *block;      /* the backend block this slot was carved from (slots are never freed) */
    void *next_block; /* the block of the slot made before this one: with `all_blocks` in
                       * counters.c, a chain of pointers to the blocks' starts, so that a
                       * leak checker sees them reachable, not only through the interior */
} mmt__slot_t;

/* This thread's slot; NULL until its first allocation and after its exit destructor. */
extern _Thread_local mmt__slot_t *mmt__tls_slot __attribute__((tls_model("initial-exec")));

/* min(MMT__FOLD_LIMIT_MAX, checkpoint distance); read on every allocation, written only
 * when the checkpoint distance changes. */
extern _Atomic int64_t mmt__fold_limit;

void mmt__fold(mmt__slot_t *s);
void mmt__count_slow(uint64_t add, uint64_t sub, int kind);

enum { MMT__KIND_ALLOC, MMT__KIND_FREE, MMT__KIND_REALLOC, MMT__KIND_GROW };

static inline void mmt__bump(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_release);
}

/* The pending movement after adding `delta`, stored; the caller checks the fold limit in
 * the direction it moved, so each path makes one comparison. */
static inline int64_t mmt__pend(mmt__slot_t *s, int64_t delta)
{
    int64_t p = atomic_load_explicit(&s->pending, memory_order_relaxed) + delta;
    atomic_store_explicit(&s->pending, p, memory_order_relaxed);
    return p;
}

static inline int64_t mmt__fold_limit_now(void)
{
    return atomic_load_explicit(&mmt__fold_limit, memory_order_relaxed);
}

/* Movement up: the only direction that can set a new high point of the window. */
static inline void mmt__rise(mmt__slot_t *s, int64_t up)
{
    int64_t p = mmt__pend(s, up);
    if (p > atomic_load_explicit(&s->pending_max, memory_order_relaxed))
        atomic_store_explicit(&s->pending_max, p, memory_order_relaxed);
    if (MMT__UNLIKELY(p >= mmt__fold_limit_now())) mmt__fold(s);
}

static inline void mmt__fall(mmt__slot_t *s, int64_t down)
{
    int64_t p = mmt__pend(s, -down);
    if (MMT__UNLIKELY(p <= -mmt__fold_limit_now())) mmt__fold(s);
}

static inline void mmt__count_alloc(uint64_t n)
{
    mmt__slot_t *s = mmt__tls_slot;
    if (MMT__UNLIKELY(s == NULL)) {
        mmt__count_slow(n, 0, MMT__KIND_ALLOC);
        return;
    }
    mmt__bump(&s->allocated, n);
    mmt__bump(&s->allocations, 1);
    mmt__rise(s, (int64_t)n);
}

static inline void mmt__count_free(uint64_t n)
{
    mmt__slot_t *s = mmt__tls_slot;
    if (MMT__UNLIKELY(s == NULL)) {
        mmt__count_slow(0, n, MMT__KIND_FREE);
        return;
    }
    mmt__bump(&s->freed, n);
    mmt__bump(&s->frees, 1);
    mmt__fall(s, (int64_t)n);
}

static inline void mmt__count_realloc(uint64_t add, uint64_t sub)
{
    mmt__slot_t *s = mmt__tls_slot;
    if (MMT__UNLIKELY(s == NULL)) {
        mmt__count_slow(add, sub, MMT__KIND_REALLOC);
        return;
    }
    mmt__bump(&s->allocated, add);
    mmt__bump(&s->freed, sub);
    mmt__bump(&s->reallocs, 1);
    if (add >= sub) mmt__rise(s, (int64_t)(add - sub));
    else mmt__fall(s, (int64_t)(sub - add));
}

/* A live block grows in place by n bytes (the preload library's malloc_usable_size): bytes
 * allocated, but no allocation call. */
static inline void mmt__count_grow(uint64_t n)
{
    mmt__slot_t *s = mmt__tls_slot;
    if (MMT__UNLIKELY(s == NULL)) {
        mmt__count_slow(n, 0, MMT__KIND_GROW);
        return;
    }
    mmt__bump(&s->allocated, n);
    mmt__rise(s, (int64_t)n);
}

/* Folds this thread's pending movement now (before an explicit checkpoint). */
void mmt__counters_flush(void);

/* The process-wide in_use estimate (exact in a single thread right after a fold). */
int64_t mmt__published(void);

/* Sets the fold limit from the checkpoint distance (0: no checkpoints). */
void mmt__counters_set_fold_limit(uint64_t checkpoint_bytes);

/* Starts peak again from in_use, for a process that counts its own figures from now: a
 * forked child under the preload library, called from its fork handler (one thread, its
 * other slots folded by the core's handler, so the estimate is exact once this thread's
 * window is folded too; no checkpoint runs). */
void mmt__counters_restart_peak(void);

/* mmt_meminfo without waiting for its lock: false, *info untouched, if the lock did not
 * come in a thousand tries (a signal handler that interrupted this thread inside
 * mmt_meminfo, where waiting would never end). */
bool mmt__meminfo_try(mmt_meminfo_t *info);

/* Slots ever created: stays at the peak number of live threads, however many exit. */
unsigned mmt__slots_created(void);

#endif

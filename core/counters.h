/*
 * Per-thread counters. Each thread that allocates owns a slot in its thread-local storage,
 * on cache lines of its own, and updates it with plain loads and release stores: no shared
 * line is written on the hot path. mmt_meminfo() sums the slots under the registry lock.
 *
 * Folding. A thread's net movement is net = allocated - freed of its slot (negative for a
 * thread that frees what others allocated). `base` is net at the thread's last fold; the
 * movement since, net - base, is its pending movement, not yet added to the process-wide
 * estimate `published`. Instead of storing pending and testing it against a limit, each
 * fold sets two marks, and an operation takes the slow path only when net reaches one:
 *
 *     lo < net < hi        hi = base + min(W, room up),  lo = base - min(W, room down)
 *
 * W, the thread's window, is 64 KiB without checkpoints, else min(64 KiB, max(4 KiB, d/N))
 * for the checkpoint distance d and N threads with slots (as of the fold). The rooms are
 * how far `published` is from the next checkpoint (last evaluation +- d): a fold therefore
 * happens exactly when the estimate would reach a checkpoint, and with one thread the
 * estimate is in_use, so the evaluation runs inside the call that moves in_use by d. With
 * N threads, the estimate lags in_use by less than the sum of the other threads' windows.
 *
 * Peak. `top` is the highest net since the fold (an allocation tests net > top first,
 * then the mark, so tracking the high point costs the same compare the mark test would).
 * A fold raises peak to the estimate before the fold plus top - base, which is exact with
 * one thread. With N threads the first fold after the true peak lands below it by less
 * than the other threads' pending, and a candidate overshoots by less than their pending
 * plus the folding thread's own fall since its high point: in all, less than 2 * N * 64 KiB.
 *
 * Registration. A new thread's slot starts with marks that every operation crosses
 * (top = hi = INT64_MIN, lo = INT64_MAX), so its first operation takes the slow path,
 * which links the slot into the registry and sets real marks: no test for "registered"
 * on the hot path. A retired slot (its thread's exit destructor ran) gets those marks
 * back, and its later operations are moved to the shared slot.
 *
 * fork() in another thread while mmt_realloc runs: a child that copied the slot between the
 * realloc's two counter stores would count the old size and the new one. A realloc writes
 * the counters' final values into a journal in its slot, then marks it busy, before its
 * backend call; the fork child completes the journal of each dead thread's busy slot. The
 * child counts the block at its new size, never at both, whatever instant the fork copied
 * (if the fork came before the allocator resized the block, that count is the new size's
 * difference off). Nobody waits: a fork never depends on another thread's progress. malloc
 * and free need no journal: a block in flight in a thread that does not exist in the child
 * is unreachable there, and free counts before it gives the block back, so the child never
 * counts a block its heap does not hold.
 */
#ifndef MMT_CORE_COUNTERS_H
#define MMT_CORE_COUNTERS_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "fields.h"

#define MMT__LIKELY(x) __builtin_expect(!!(x), 1)
#define MMT__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MMT__CACHE_LINE 64

/* The largest window, and the smallest one checkpoints can ask for (below it, the folds of
 * several threads would contend on `published`; the rooms still make one thread exact). */
#define MMT__WINDOW_MAX ((int64_t)64 * 1024)
#define MMT__WINDOW_MIN ((int64_t)4 * 1024)

/* A slot holds the summed fields of mmt_meminfo_t (fields.h), not the derived ones. */
#define MMT__SLOT_SUM(name) _Atomic uint64_t name;
#define MMT__SLOT_SUM_FIRST(name) _Atomic uint64_t name;
#define MMT__SLOT_DERIVED(name)
#define MMT__SLOT_FIELD(name, kind, unit, type, help) MMT__SLOT_##kind(name)

/* What a slot counts, and its marks: the process-wide counts of one thread, or one tag's
 * counts of one thread (tags.h). Written by the owning thread only (load, add, release
 * store); read by the readers. The shared fallbacks are the exception: any thread updates
 * them with fetch_add. */
typedef struct mmt__counts {
    MMT__MEMINFO_FIELDS(MMT__SLOT_FIELD) /* allocated, freed, allocations, frees, reallocs */
    _Atomic int64_t hi, lo; /* the marks */
    _Atomic int64_t top;    /* highest net since the last fold */
    _Atomic int64_t base;   /* net at the last fold */
} mmt__counts_t;

struct mmt__tag_table;

typedef struct mmt__slot {
    mmt__counts_t c;
    _Atomic int busy;     /* a realloc is under way: the journal below holds its outcome */
    bool registered;      /* linked into the registry */
    bool retired;         /* the exit destructor ran: count in the shared slot from now */
    bool attaching;       /* registering (pthread_setspecific may allocate) */
    uint64_t journal_allocated, journal_freed; /* the realloc's final counter values */
    struct mmt__slot *next; /* the registry's list: the registry lock */
    uint64_t tag_bits;      /* the current tag, shifted to its place in a block's size word */
    /* This thread's counts in its current tag, once an operation has found them (NULL
     * until then, and after a switch). */
    mmt__counts_t *cur;
    /* This thread's counts per tag (tags.c); written by the owner with release stores,
     * freed under the registry lock once the slot is unlinked. */
    struct mmt__tag_table *_Atomic tags;
} mmt__slot_t;

/* This thread's slot. Its address is fixed for the thread's life (static TLS). */
extern _Thread_local mmt__slot_t mmt__tls __attribute__((tls_model("initial-exec")));

/* The slow path, taken when net crosses a mark: registers the thread, folds, checks for a
 * checkpoint and sets new marks. */
void mmt__count_slow(mmt__slot_t *s);

/* mmt__count_slow, then return p; and then give raw back to the backend. */
void *mmt__count_slow_then(mmt__slot_t *s, void *p);
void mmt__count_slow_then_free(mmt__slot_t *s, void *raw);

static inline void mmt__bump(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_release);
}

static inline int64_t mmt__net(mmt__counts_t *c)
{
    return (int64_t)(atomic_load_explicit(&c->allocated, memory_order_relaxed) -
                     atomic_load_explicit(&c->freed, memory_order_relaxed));
}

/* net moved up (or stayed); true when it reached the upper mark. The high point is kept
 * without a branch: in a random walk a new high is as unpredictable as a coin, and a
 * mispredicted branch costs more than the store. Only a new high can reach the upper
 * mark, and it rarely does. */
static inline bool mmt__rose(mmt__counts_t *c, int64_t net)
{
    int64_t top = atomic_load_explicit(&c->top, memory_order_relaxed);
    atomic_store_explicit(&c->top, net > top ? net : top, memory_order_relaxed);
    return MMT__UNLIKELY(net >= atomic_load_explicit(&c->hi, memory_order_relaxed));
}

static inline bool mmt__fell(mmt__counts_t *c, int64_t net)
{
    return MMT__UNLIKELY(net <= atomic_load_explicit(&c->lo, memory_order_relaxed));
}

/* Counts an allocation of n bytes in c; true when a mark was reached. */
static inline bool mmt__counts_alloc(mmt__counts_t *c, uint64_t n)
{
    uint64_t a = atomic_load_explicit(&c->allocated, memory_order_relaxed) + n;
    atomic_store_explicit(&c->allocated, a, memory_order_release);
    mmt__bump(&c->allocations, 1);
    return mmt__rose(c, (int64_t)(a - atomic_load_explicit(&c->freed, memory_order_relaxed)));
}

/* Counts a free of n bytes in c; true when a mark was reached. */
static inline bool mmt__counts_free(mmt__counts_t *c, uint64_t n)
{
    uint64_t f = atomic_load_explicit(&c->freed, memory_order_relaxed) + n;
    atomic_store_explicit(&c->freed, f, memory_order_release);
    mmt__bump(&c->frees, 1);
    return mmt__fell(c, (int64_t)(atomic_load_explicit(&c->allocated, memory_order_relaxed) - f));
}

/* Counts a resize from `old` bytes to `size` in c; true when a mark was reached. */
static inline bool mmt__counts_realloc(mmt__counts_t *c, uint64_t size, uint64_t old)
{
    uint64_t a = atomic_load_explicit(&c->allocated, memory_order_relaxed) + size;
    uint64_t f = atomic_load_explicit(&c->freed, memory_order_relaxed) + old;
    atomic_store_explicit(&c->allocated, a, memory_order_release);
    atomic_store_explicit(&c->freed, f, memory_order_release);
    mmt__bump(&c->reallocs, 1);
    return size >= old ? mmt__rose(c, (int64_t)(a - f)) : mmt__fell(c, (int64_t)(a - f));
}

/* Counts growth in place by n bytes in c (no call); true when a mark was reached. */
static inline bool mmt__counts_grow(mmt__counts_t *c, uint64_t n)
{
    uint64_t a = atomic_load_explicit(&c->allocated, memory_order_relaxed) + n;
    atomic_store_explicit(&c->allocated, a, memory_order_release);
    return mmt__rose(c, (int64_t)(a - atomic_load_explicit(&c->freed, memory_order_relaxed)));
}

/* Counts an allocation of n bytes and returns p, the block's user pointer: the slow path
 * is then a tail call, and the caller keeps nothing alive across it. */
static inline void *mmt__count_alloc(uint64_t n, void *p)
{
    mmt__slot_t *s = &mmt__tls;
    if (mmt__counts_alloc(&s->c, n)) return mmt__count_slow_then(s, p);
    return p;
}

/* Counts a free of n bytes before the block goes back to the backend (see the fork note
 * above), then gives it back: a tail call either way. */
static inline void mmt__count_free(uint64_t n, void *raw)
{
    mmt__slot_t *s = &mmt__tls;
    if (mmt__counts_free(&s->c, n)) {
        mmt__count_slow_then_free(s, raw);
        return;
    }
    mmt__backend.free(raw);
}

/* Opens the journal of a realloc of a block of `old` bytes to `size` (see the fork note
 * above), before its backend call. */
static inline mmt__slot_t *mmt__realloc_begin(uint64_t size, uint64_t old)
{
    mmt__slot_t *s = &mmt__tls;
    s->journal_allocated = atomic_load_explicit(&s->c.allocated, memory_order_relaxed) + size;
    s->journal_freed = atomic_load_explicit(&s->c.freed, memory_order_relaxed) + old;
    atomic_store_explicit(&s->busy, 1, memory_order_release); /* after the journal */
    return s;
}

/* mmt_realloc's counters: the block grew by size - old, or shrank. Added to the counters
 * as they are now, not copied from the journal, so that nothing counted meanwhile on this
 * thread (a signal handler's allocation) is lost. The busy flag is cleared after the
 * counters' stores (release, in mmt__counts_realloc's last store order). */
static inline void mmt__count_realloc(mmt__slot_t *s, uint64_t size, uint64_t old)
{
    bool slow = mmt__counts_realloc(&s->c, size, old);
    atomic_store_explicit(&s->busy, 0, memory_order_release); /* after the counters */
    if (slow) mmt__count_slow(s);
}

/* A live block grows in place by n bytes (the preload library's malloc_usable_size): bytes
 * allocated, but no allocation call. */
static inline void mmt__count_grow(uint64_t n)
{
    mmt__slot_t *s = &mmt__tls;
    if (mmt__counts_grow(&s->c, n)) mmt__count_slow(s);
}

/* Folds this thread's pending movement now, and sets its marks afresh (before an explicit
 * checkpoint, and when the checkpoint distance changes). No checkpoint runs. */
void mmt__counters_flush(void);

/* The process-wide in_use estimate (exact in a single thread right after a fold), written
 * at folds, with the tags' after it; and the number of threads with a slot, written under
 * the registry lock. */
extern _Atomic int64_t mmt__estimates[]; /* [0]; the tags' after it (tags.h) */
extern _Atomic unsigned mmt__live_count;

static inline int64_t mmt__published(void)
{
    return atomic_load_explicit(&mmt__estimates[0], memory_order_relaxed);
}

/* Starts peak again from in_use, for a process that counts its own figures from now: a
 * forked child under the preload library, called from its fork handler (one thread, its
 * other slots folded by the core's handler, so the estimate is exact once this thread's
 * window is folded too; no checkpoint runs). */
void mmt__counters_restart_peak(void);

/* mmt_meminfo without waiting for its lock: false, *info untouched, if the lock did not
 * come in a thousand tries (a signal handler that interrupted this thread inside
 * mmt_meminfo, where waiting would never end). */
bool mmt__meminfo_try(mmt_meminfo_t *info);

/* Threads with a slot now, and slot registrations ever (a thread registers at most once). */
static inline unsigned mmt__threads_counted(void)
{
    return atomic_load_explicit(&mmt__live_count, memory_order_relaxed);
}
unsigned long mmt__registrations(void);

/* The registry, for tags.c: locks it and returns the first live slot (the list is linked
 * by next); and unlocks it. */
mmt__slot_t *mmt__registry_lock(void);
void mmt__registry_unlock(void);

/* Registers this thread's slot unless it is, or cannot be (it retired, is registering, or
 * registration fails): true when it is registered. */
bool mmt__slot_attach(mmt__slot_t *s);

/* The largest amount a reading's in_use may exceed the true in_use by (see mmt_meminfo). */
#define MMT__READ_SLACK ((uint64_t)64 * 1024)

#endif

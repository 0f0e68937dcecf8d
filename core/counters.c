/*
 * Per-thread counter slots: registration on a thread's first allocation, folding into the
 * process-wide estimate, retirement when the thread exits, and summing for mmt_meminfo().
 * See counters.h for the scheme.
 */
#include "counters.h"

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <string.h>

#include "backend.h"
#include "fork.h"
#include "listeners.h"
#include "mmt/memory.h"

_Thread_local mmt__slot_t *mmt__tls_slot __attribute__((tls_model("initial-exec")));

/* Set by the exit destructor: this thread's later allocations (from other destructors)
 * go to the shared slot, so the thread is not registered again. This thread only. */
static _Thread_local bool tls_retired;

/* Read-mostly: alone on its line so that folds elsewhere do not evict it. */
alignas(MMT__CACHE_LINE) _Atomic int64_t mmt__fold_limit = MMT__FOLD_LIMIT_MAX;

/* Written at folds only (once per fold-limit bytes of net movement per thread). */
alignas(MMT__CACHE_LINE) static _Atomic int64_t published;
alignas(MMT__CACHE_LINE) static _Atomic uint64_t peak;

/* Walks of the summed fields (fields.h), each expanding FIELD(name), which the caller
 * defines: FOR_SUMMED_FIRST for freed and frees, FOR_SUMMED_AFTER for the others. */
#define SUMMED_FIRST_SUM_FIRST(name) FIELD(name)
#define SUMMED_FIRST_SUM(name)
#define SUMMED_FIRST_DERIVED(name)
#define SUMMED_AFTER_SUM_FIRST(name)
#define SUMMED_AFTER_SUM(name) FIELD(name)
#define SUMMED_AFTER_DERIVED(name)
#define PICK_FIRST(name, kind, unit, type, help) SUMMED_FIRST_##kind(name)
#define PICK_AFTER(name, kind, unit, type, help) SUMMED_AFTER_##kind(name)
#define FOR_SUMMED_FIRST MMT__MEMINFO_FIELDS(PICK_FIRST)
#define FOR_SUMMED_AFTER MMT__MEMINFO_FIELDS(PICK_AFTER)
/* The totals of retired threads: the summed fields, as plain numbers (registry_lock). */
#define RETIRED_SUM(name) uint64_t name;
#define RETIRED_SUM_FIRST(name) uint64_t name;
#define RETIRED_DERIVED(name)
#define RETIRED_FIELD(name, kind, unit, type, help) RETIRED_##kind(name)

/* Counts for threads that have no slot of their own: retired threads, and threads whose
 * slot could not be allocated. Updated with fetch_add; its pending stays 0 because every
 * update folds at once. */
alignas(MMT__CACHE_LINE) static mmt__slot_t shared_slot;

/* registry_lock protects the following: the live and free slot lists, all_blocks, the
 * totals of retired threads, and slot registration. It is never held while user code
 * runs. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static mmt__slot_t *live_slots;
static mmt__slot_t *free_slots;
static unsigned slots_created;
static void *all_blocks; /* the newest slot's block; each slot's next_block the one before */
static struct {
    MMT__MEMINFO_FIELDS(RETIRED_FIELD)
} retired;

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t slot_key;
static bool slot_key_ok;

static void raise_peak(int64_t candidate)
{
    if (candidate <= 0) return;
    uint64_t c = (uint64_t)candidate;
    uint64_t cur = atomic_load_explicit(&peak, memory_order_relaxed);
    while (cur < c &&
           !atomic_compare_exchange_weak_explicit(&peak, &cur, c, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

/* Adds `delta` to the estimate; `rise` is the highest the thread's movement reached in
 * the window being folded, so that a peak between folds is not lost. Returns the new
 * estimate. */
static int64_t publish(int64_t delta, int64_t rise)
{
    int64_t before = atomic_fetch_add_explicit(&published, delta, memory_order_relaxed);
    raise_peak(before + rise);
    return before + delta;
}

void mmt__fold(mmt__slot_t *s)
{
    int64_t delta = atomic_load_explicit(&s->pending, memory_order_relaxed);
    int64_t rise = atomic_load_explicit(&s->pending_max, memory_order_relaxed);
    atomic_store_explicit(&s->pending, 0, memory_order_relaxed);
    atomic_store_explicit(&s->pending_max, 0, memory_order_relaxed);
    mmt__checkpoint_due(publish(delta, rise));
}

void mmt__counters_flush(void)
{
    mmt__slot_t *s = mmt__tls_slot;
    if (s) mmt__fold(s);
}

int64_t mmt__published(void)
{
    return atomic_load_explicit(&published, memory_order_relaxed);
}

void mmt__counters_set_fold_limit(uint64_t checkpoint_bytes)
{
    int64_t limit = MMT__FOLD_LIMIT_MAX;
    if (checkpoint_bytes > 0 && checkpoint_bytes < (uint64_t)limit)
        limit = (int64_t)checkpoint_bytes;
    atomic_store_explicit(&mmt__fold_limit, limit, memory_order_relaxed);
}

/* ---- Registration and retirement ------------------------------------------------------ */

static uint64_t take(_Atomic uint64_t *c)
{
    uint64_t v = atomic_load_explicit(c, memory_order_relaxed);
    atomic_store_explicit(c, 0, memory_order_relaxed);
    return v;
}

/* Moves a slot's totals into `retired` and puts it on the free list; the caller holds
 * registry_lock and has folded its pending movement. */
static void retire_locked(mmt__slot_t *s)
{
#define FIELD(name) retired.name += take(&s->name);
    FOR_SUMMED_FIRST FOR_SUMMED_AFTER
#undef FIELD
    if (s->prev) s->prev->next = s->next;
    else live_slots = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = NULL;
    s->next = free_slots;
    free_slots = s;
}

/* Folds a slot's pending movement without triggering a checkpoint (user code should not
 * run in a dying thread, nor in a fork handler). */
static void fold_quietly(mmt__slot_t *s)
{
    int64_t delta = atomic_load_explicit(&s->pending, memory_order_relaxed);
    int64_t rise = atomic_load_explicit(&s->pending_max, memory_order_relaxed);
    atomic_store_explicit(&s->pending, 0, memory_order_relaxed);
    atomic_store_explicit(&s->pending_max, 0, memory_order_relaxed);
    publish(delta, rise);
}

/* Runs on the exiting thread (a pthread key destructor): retires its slot, which waits
 * on the free list for the next new thread. */
static void retire_slot(void *arg)
{
    mmt__slot_t *s = arg;
    fold_quietly(s);
    pthread_mutex_lock(&registry_lock);
    retire_locked(s);
    pthread_mutex_unlock(&registry_lock);

    mmt__tls_slot = NULL;
    tls_retired = true;
}

/* ---- fork ------------------------------------------------------------------------------- */

void mmt__counters_fork_prepare(void)
{
    pthread_mutex_lock(&registry_lock);
}

void mmt__counters_fork_parent(void)
{
    pthread_mutex_unlock(&registry_lock);
}

/* Only the forking thread lives on in the child: the other slots' owners are gone, and
 * their key destructors will never run. Their counts are kept (their blocks are in the
 * child's memory too) and the slots are reused. */
void mmt__counters_fork_child(void)
{
    mmt__slot_t *next;
    for (mmt__slot_t *s = live_slots; s; s = next) {
        next = s->next;
        if (s == mmt__tls_slot) continue;
        fold_quietly(s);
        retire_locked(s);
    }
    pthread_mutex_unlock(&registry_lock);
}

void mmt__counters_restart_peak(void)
{
    if (mmt__tls_slot) fold_quietly(mmt__tls_slot); /* its window's high point is the past's */
    int64_t now = mmt__published();
    atomic_store_explicit(&peak, now > 0 ? (uint64_t)now : 0, memory_order_relaxed);
}

static void make_key(void)
{
    slot_key_ok = pthread_key_create(&slot_key, retire_slot) == 0;
}

/* A new slot, cache-line aligned so that no two threads' slots share a line. Slots are
 * never given back to the backend: a retired one waits on the free list for the next
 * thread, so their number is the peak number of threads alive at once. */
static mmt__slot_t *new_slot(void)
{
    enum { SLOT_BYTES = (sizeof(mmt__slot_t) + MMT__CACHE_LINE - 1) & ~(MMT__CACHE_LINE - 1) };
    char *raw = mmt__backend.malloc(SLOT_BYTES + MMT__CACHE_LINE);
    if (!raw) return NULL;
    uintptr_t at = ((uintptr_t)raw + MMT__CACHE_LINE - 1) & ~(uintptr_t)(MMT__CACHE_LINE - 1);
    mmt__slot_t *s = (mmt__slot_t *)at;
    memset(s, 0, sizeof *s);
    s->block = raw;
    s->next_block = all_blocks;
    all_blocks = raw;
    slots_created++;
    return s;
}

/* Gives the calling thread a slot, or returns NULL (then it counts in the shared slot). */
static mmt__slot_t *attach_slot(void)
{
    pthread_once(&key_once, make_key);
    if (!slot_key_ok) return NULL;
    mmt__fork_init(false);

    pthread_mutex_lock(&registry_lock);
    mmt__slot_t *s = free_slots;
    if (s) free_slots = s->next;
    else s = new_slot();
    if (s) {
        s->prev = NULL;
        s->next = live_slots;
        if (live_slots) live_slots->prev = s;
        live_slots = s;
    }
    pthread_mutex_unlock(&registry_lock);
    if (!s) return NULL;

    if (pthread_setspecific(slot_key, s) != 0) {
        retire_slot(s); /* empty, so this only puts it back */
        tls_retired = false;
        return NULL;
    }
    mmt__tls_slot = s;
    return s;
}

void mmt__count_slow(uint64_t add, uint64_t sub, int kind)
{
    if (!tls_retired && attach_slot()) {
        switch (kind) {
        case MMT__KIND_ALLOC: mmt__count_alloc(add); break;
        case MMT__KIND_FREE: mmt__count_free(sub); break;
        case MMT__KIND_GROW: mmt__count_grow(add); break;
        default: mmt__count_realloc(add, sub); break;
        }
        return;
    }
    mmt__slot_t *s = &shared_slot;
    atomic_fetch_add_explicit(&s->allocated, add, memory_order_release);
    atomic_fetch_add_explicit(&s->freed, sub, memory_order_release);
    switch (kind) {
    case MMT__KIND_ALLOC: atomic_fetch_add_explicit(&s->allocations, 1, memory_order_relaxed); break;
    case MMT__KIND_FREE: atomic_fetch_add_explicit(&s->frees, 1, memory_order_relaxed); break;
    case MMT__KIND_GROW: break;
    default: atomic_fetch_add_explicit(&s->reallocs, 1, memory_order_relaxed); break;
    }
    int64_t delta = (int64_t)add - (int64_t)sub;
    int64_t now = publish(delta, delta > 0 ? delta : 0);
    if (!tls_retired) mmt__checkpoint_due(now);
}

unsigned mmt__slots_created(void)
{
    pthread_mutex_lock(&registry_lock);
    unsigned n = slots_created;
    pthread_mutex_unlock(&registry_lock);
    return n;
}

/* ---- Reading ------------------------------------------------------------------------ */

static uint64_t acquire(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_acquire);
}

/*
 * Frees are summed before allocations, with acquire loads against the owners' release
 * stores. A free that this reader sees was preceded (through whatever handed the pointer
 * from the allocating thread to the freeing one) by the allocation's store, so that
 * allocation is seen too: freed never exceeds allocated, even mid-flight. While threads
 * run, the sums are taken a moment apart, so in_use can include bytes freed during the
 * reading; that figure is never fed into peak.
 *
 * Peak is raised from the fold estimate instead: published (read first, so that a fold
 * racing this reading can only make the figure low) plus every thread's pending, plus
 * the largest dip of one thread below its high point in the current window. With one
 * thread that is exactly the highest in_use since the last fold; when no thread is
 * allocating it is at least in_use.
 */
/* Sums the counters into *info, waiting for the registry lock, or (wait false) trying it a
 * thousand times and leaving *info alone if it never comes. */
static bool read_counters(mmt_meminfo_t *info, bool wait)
{
    mmt_meminfo_t m = {0};
    int64_t estimate = mmt__published();
    int64_t dip = 0;

    if (wait) {
        pthread_mutex_lock(&registry_lock);
    } else {
        int tries = 0;
        while (pthread_mutex_trylock(&registry_lock) != 0) {
            if (++tries == 1000) return false;
            sched_yield();
        }
    }
#define FIELD(name) m.name = retired.name + acquire(&shared_slot.name);
    FOR_SUMMED_FIRST
#undef FIELD
    for (mmt__slot_t *s = live_slots; s; s = s->next) {
#define FIELD(name) m.name += acquire(&s->name);
        FOR_SUMMED_FIRST
#undef FIELD
    }
#define FIELD(name) m.name = retired.name + acquire(&shared_slot.name);
    FOR_SUMMED_AFTER
#undef FIELD
    for (mmt__slot_t *s = live_slots; s; s = s->next) {
#define FIELD(name) m.name += acquire(&s->name);
        FOR_SUMMED_AFTER
#undef FIELD
        int64_t p = atomic_load_explicit(&s->pending, memory_order_relaxed);
        int64_t top = atomic_load_explicit(&s->pending_max, memory_order_relaxed);
        estimate += p;
        if (top - p > dip) dip = top - p;
    }
    pthread_mutex_unlock(&registry_lock);

    m.in_use = m.allocated - m.freed;
    raise_peak(estimate + dip);
    m.peak = atomic_load_explicit(&peak, memory_order_relaxed);
    *info = m;
    return true;
}

void mmt_meminfo(mmt_meminfo_t *info)
{
    if (info) read_counters(info, true);
}

bool mmt__meminfo_try(mmt_meminfo_t *info)
{
    return read_counters(info, false);
}

/*
 * Per-thread counter slots: registration on a thread's first operation, folding into the
 * process-wide estimate and the marks that decide when, retirement when the thread exits,
 * the fork child's repairs, and summing for mmt_meminfo(). See counters.h for the scheme.
 */
#include "counters.h"

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <string.h>

#include "fork.h"
#include "listeners.h"
#include "reclaim.h"
#include "mmt/memory.h"
#include "tags.h"

/* Every mark crossed: a thread's first operation, and every one after it retired, takes
 * the slow path. */
#define UNREGISTERED .c = {.top = INT64_MIN, .hi = INT64_MIN, .lo = INT64_MAX}

/* Two cache lines of every thread's static TLS (the benchmark and the README say 128 B). */
_Static_assert(sizeof(mmt__slot_t) <= 2 * MMT__CACHE_LINE, "a slot fits two cache lines");

alignas(MMT__CACHE_LINE) _Thread_local mmt__slot_t mmt__tls
    __attribute__((tls_model("initial-exec"))) = {UNREGISTERED};

/* Written at folds only (once per window of net movement per thread). */
/* The estimates of the process ([0]) and of each tag's subtree (tags.c): in one array, so
 * that a limit's test reads either the same way. */
alignas(MMT__CACHE_LINE) _Atomic int64_t mmt__estimates[MMT_TAGS_MAX + 1];
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
#define FOR_SUMMED FOR_SUMMED_FIRST FOR_SUMMED_AFTER
/* The totals of retired threads: the summed fields, as plain numbers (registry_lock). */
#define RETIRED_SUM(name) uint64_t name;
#define RETIRED_SUM_FIRST(name) uint64_t name;
#define RETIRED_DERIVED(name)
#define RETIRED_FIELD(name, kind, unit, type, help) RETIRED_##kind(name)

/* Counts for threads that have no slot of their own: retired threads, and threads whose
 * registration failed. Updated with fetch_add; every update is published at once. */
alignas(MMT__CACHE_LINE) static mmt__slot_t shared_slot;

/* registry_lock protects the live slot list, the totals of retired threads and the
 * registration counts. It is never held while user code runs. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static mmt__slot_t *live_slots;
static unsigned long registrations;
static struct {
    MMT__MEMINFO_FIELDS(RETIRED_FIELD)
} retired;
/* Threads with a slot: read at every fold (for the window), written under registry_lock. */
_Atomic unsigned mmt__live_count;

static void sum_locked(mmt_meminfo_t *out, int64_t *estimate);

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
    int64_t before = atomic_fetch_add_explicit(&mmt__estimates[0], delta, memory_order_release);
    raise_peak(before + rise);
    return before + delta;
}

/* Publishes the slot's pending movement and starts a new window at net. No checkpoint. */
static int64_t fold(mmt__slot_t *s)
{
    int64_t net = mmt__net(&s->c);
    int64_t base = atomic_load_explicit(&s->c.base, memory_order_relaxed);
    int64_t top = atomic_load_explicit(&s->c.top, memory_order_relaxed);
    if (top < net) top = net; /* a slot's first window: its top was never set */
    atomic_store_explicit(&s->c.base, net, memory_order_relaxed);
    atomic_store_explicit(&s->c.top, net, memory_order_relaxed);
    return publish(net - base, top - base);
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Sets the marks of a slot that was just folded (base == net, or near it if user code ran
 * since): the window, narrowed to the room left before the next checkpoint. A room of 0 or
 * less means a checkpoint is due that did not run (another thread was evaluating, or this
 * one is): the marks are then one byte away on both sides, so the next operation that
 * moves in_use, up or down, retries. */
static void set_marks(mmt__slot_t *s)
{
    int64_t base = atomic_load_explicit(&s->c.base, memory_order_relaxed);
    int64_t d = (int64_t)mmt_mem_get_checkpoint();
    int64_t w = MMT__WINDOW_MAX;
    int64_t up = INT64_MAX, down = INT64_MAX;
    if (d > 0) {
        unsigned n = atomic_load_explicit(&mmt__live_count, memory_order_relaxed);
        w = d / (n ? n : 1);
        if (w < MMT__WINDOW_MIN) w = MMT__WINDOW_MIN;
        if (w > MMT__WINDOW_MAX) w = MMT__WINDOW_MAX;
        mmt__checkpoint_rooms(mmt__published(), &up, &down);
    }
    if (up <= 0 || down <= 0) up = down = 1; /* either way */
    atomic_store_explicit(&s->c.hi, base + min64(w, up), memory_order_relaxed);
    atomic_store_explicit(&s->c.lo, base - min64(w, down), memory_order_relaxed);
}

static void reset_marks(mmt__slot_t *s)
{
    atomic_store_explicit(&s->c.top, INT64_MIN, memory_order_relaxed);
    atomic_store_explicit(&s->c.hi, INT64_MIN, memory_order_relaxed);
    atomic_store_explicit(&s->c.lo, INT64_MAX, memory_order_relaxed);
}

void mmt__counters_flush(void)
{
    mmt__slot_t *s = &mmt__tls;
    if (!s->registered) return;
    fold(s);
    set_marks(s);
}


/* ---- Registration and retirement ------------------------------------------------------ */

static uint64_t take(_Atomic uint64_t *c)
{
    uint64_t v = atomic_load_explicit(c, memory_order_relaxed);
    atomic_store_explicit(c, 0, memory_order_relaxed);
    return v;
}

/* Moves a slot's totals into `retired` and unlinks it; the caller holds registry_lock and
 * has folded it. */
static void retire_locked(mmt__slot_t *s, bool dead)
{
    mmt__tags_retire_locked(s, dead);
#define FIELD(name) retired.name += take(&s->c.name);
    FOR_SUMMED
#undef FIELD
    /* The list is singly linked (a slot has room for one link): found by a walk. */
    mmt__slot_t **link = &live_slots;
    while (*link != s) link = &(*link)->next;
    *link = s->next;
    s->next = NULL;
    s->registered = false;
    atomic_store_explicit(&s->c.base, 0, memory_order_relaxed);
    atomic_store_explicit(&mmt__live_count, atomic_load_explicit(&mmt__live_count, memory_order_relaxed) - 1,
                          memory_order_relaxed);
}

/* Runs on the exiting thread (a pthread key destructor). Its later allocations (from other
 * destructors) go to the shared slot.
 *
 * The key's value may be stale: in a fork child, a thread made on the stack of a thread
 * that died in the fork can start with that thread's value, which is the address of its
 * own slot (the same place in the same static TLS), though it never registered. Only a
 * registered slot of this very thread is retired. */
static void retire_slot(void *arg)
{
    mmt__slot_t *s = arg;
    if (s != &mmt__tls || !s->registered) return;
    fold(s); /* no checkpoint: user code should not run in a dying thread */
    pthread_mutex_lock(&registry_lock);
    retire_locked(s, false);
    pthread_mutex_unlock(&registry_lock);
    s->retired = true;
    reset_marks(s);
    mmt__allowance.left = 0; /* only counted threads hold one (tags.h) */
    mmt__limit_release();
}

static void make_key(void)
{
    slot_key_ok = pthread_key_create(&slot_key, retire_slot) == 0;
}

/* Links this thread's slot into the registry; false if it cannot have one (then it counts
 * in the shared slot). The key is set first, so a failure leaves nothing to undo. */
static bool attach(mmt__slot_t *s)
{
    pthread_once(&key_once, make_key);
    if (!slot_key_ok) return false;
    mmt__fork_init(false);
    s->attaching = true; /* pthread_setspecific may allocate, which comes back here */
    bool ok = pthread_setspecific(slot_key, s) == 0;
    s->attaching = false;
    if (!ok) return false;

    pthread_mutex_lock(&registry_lock);
    s->next = live_slots;
    live_slots = s;
    s->registered = true;
    registrations++;
    atomic_store_explicit(&mmt__live_count, atomic_load_explicit(&mmt__live_count, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    pthread_mutex_unlock(&registry_lock);
    return true;
}

/* A slot with no place in the registry hands what it counted to the shared slot. */
static void to_shared(mmt__slot_t *s)
{
    int64_t delta = mmt__net(&s->c);
#define FIELD(name) atomic_fetch_add_explicit(&shared_slot.c.name, take(&s->c.name), memory_order_release);
    FOR_SUMMED
#undef FIELD
    reset_marks(s);
    int64_t now = publish(delta, delta > 0 ? delta : 0);
    if (!s->retired) mmt__checkpoint_due(now);
}

bool mmt__slot_attach(mmt__slot_t *s)
{
    if (s->registered) return true;
    if (s->retired || s->attaching) return false;
    return attach(s);
}

mmt__slot_t *mmt__registry_lock(void)
{
    pthread_mutex_lock(&registry_lock);
    return live_slots;
}

void mmt__registry_unlock(void)
{
    pthread_mutex_unlock(&registry_lock);
}

void mmt__count_slow(mmt__slot_t *s)
{
    if (MMT__UNLIKELY(!s->registered)) {
        if (s->retired || s->attaching || !attach(s)) {
            to_shared(s);
            return;
        }
    }
    int64_t now = fold(s);
    set_marks(s);
    if (mmt__checkpoint_due(now)) set_marks(s); /* an evaluation moved the checkpoint */
}

void *mmt__count_slow_then(mmt__slot_t *s, void *p)
{
    mmt__count_slow(s);
    return p;
}

void mmt__count_slow_then_free(mmt__slot_t *s, void *raw)
{
    mmt__count_slow(s);
    mmt__backend.free(raw);
}

unsigned long mmt__registrations(void)
{
    pthread_mutex_lock(&registry_lock);
    unsigned long n = registrations;
    pthread_mutex_unlock(&registry_lock);
    return n;
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
 * child's memory too), a realloc one of them was making is completed from its journal,
 * and their slots unlinked. The estimate is then set from the exact sums: a dead thread
 * may have stopped between a fold's two halves. */
void mmt__counters_fork_child(void)
{
    mmt__slot_t *next;
    for (mmt__slot_t *s = live_slots; s; s = next) {
        next = s->next;
        if (s == &mmt__tls) continue;
        if (atomic_load_explicit(&s->busy, memory_order_acquire)) {
            atomic_store_explicit(&s->c.allocated, s->journal_allocated, memory_order_relaxed);
            atomic_store_explicit(&s->c.freed, s->journal_freed, memory_order_relaxed);
            atomic_store_explicit(&s->busy, 0, memory_order_relaxed);
        }
        retire_locked(s, true);
    }
    mmt__tags_fork_child_locked(live_slots);
    mmt_meminfo_t m;
    int64_t estimate;
    sum_locked(&m, &estimate);
    mmt__slot_t *own = &mmt__tls;
    int64_t own_pending = own->registered ? mmt__net(&own->c) - atomic_load(&own->c.base) : 0;
    atomic_store_explicit(&mmt__estimates[0], (int64_t)m.in_use - own_pending, memory_order_relaxed);
    pthread_mutex_unlock(&registry_lock);
    mmt__counters_flush(); /* this thread's window, with the child's thread count */
}

void mmt__counters_restart_peak(void)
{
    mmt__counters_flush(); /* its window's high point is the past's */
    int64_t now = mmt__published();
    atomic_store_explicit(&peak, now > 0 ? (uint64_t)now : 0, memory_order_relaxed);
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
 * allocation is seen too: freed never exceeds allocated, even mid-flight.
 *
 * While threads run, in_use so read exceeds the true in_use at the end of the allocations'
 * pass by at most what was freed between the two passes. A third pass reads the frees
 * again: if more than MMT__READ_SLACK was freed meanwhile, the reading is taken again, and
 * after four such, the third pass's frees are used, which can only make in_use low (never
 * below 0). So a reading never exceeds the in_use of an instant during it by more than
 * MMT__READ_SLACK.
 *
 * Peak is raised from the fold estimate instead: published (read first, so that a fold
 * racing this reading can only make the figure low) plus every thread's pending, plus
 * the largest dip of one thread below its high point in the current window. With one
 * thread that is exactly the highest in_use since the last fold; when no thread is
 * allocating it is at least in_use.
 */
static void sum_locked(mmt_meminfo_t *out, int64_t *estimate)
{
    mmt_meminfo_t m;
    int64_t dip = 0;
    for (int attempt = 0;; attempt++) {
        /* Acquire: a fold's base store comes before its add (release), so a slot read
         * after this never counts a folded movement twice. */
        int64_t est = atomic_load_explicit(&mmt__estimates[0], memory_order_acquire);
        dip = 0;
#define FIELD(name) m.name = retired.name + acquire(&shared_slot.c.name);
        FOR_SUMMED_FIRST
#undef FIELD
        for (mmt__slot_t *s = live_slots; s; s = s->next) {
#define FIELD(name) m.name += acquire(&s->c.name);
            FOR_SUMMED_FIRST
#undef FIELD
        }
#define FIELD(name) m.name = retired.name + acquire(&shared_slot.c.name);
        FOR_SUMMED_AFTER
#undef FIELD
        uint64_t freed_again = retired.freed + acquire(&shared_slot.c.freed);
        for (mmt__slot_t *s = live_slots; s; s = s->next) {
#define FIELD(name) m.name += acquire(&s->c.name);
            FOR_SUMMED_AFTER
#undef FIELD
        }
        for (mmt__slot_t *s = live_slots; s; s = s->next) {
            int64_t base = atomic_load_explicit(&s->c.base, memory_order_relaxed);
            int64_t top = atomic_load_explicit(&s->c.top, memory_order_relaxed);
            /* Allocations before frees: net can only be read low here. */
            uint64_t a = atomic_load_explicit(&s->c.allocated, memory_order_relaxed);
            uint64_t f = acquire(&s->c.freed);
            freed_again += f;
            int64_t pending = (int64_t)(a - f) - base, rise = top - base;
            /* Pieces read at different instants may add up to more than any instant held
             * (a block handed from one thread to another, each read at its own moment). A
             * slot holds back less than the widest window: beyond it, an operation is
             * between its count and its fold, which raises peak itself. */
            if (pending > MMT__WINDOW_MAX) pending = MMT__WINDOW_MAX;
            if (pending < -MMT__WINDOW_MAX) pending = -MMT__WINDOW_MAX;
            if (rise > MMT__WINDOW_MAX) rise = MMT__WINDOW_MAX;
            if (rise < pending) rise = pending;
            est += pending;
            if (rise - pending > dip) dip = rise - pending;
        }
        *estimate = est + dip;
        if (freed_again - m.freed <= MMT__READ_SLACK) break;
        if (attempt == 3) {
            m.freed = freed_again < m.allocated ? freed_again : m.allocated;
            break;
        }
    }
    m.in_use = m.allocated - m.freed;
    *out = m;
}

/* Sums the counters into *info, waiting for the registry lock, or (wait false) trying it a
 * thousand times and leaving *info alone if it never comes. */
static bool read_counters(mmt_meminfo_t *info, bool wait)
{
    if (wait) {
        pthread_mutex_lock(&registry_lock);
    } else {
        int tries = 0;
        while (pthread_mutex_trylock(&registry_lock) != 0) {
            if (++tries == 1000) return false;
            sched_yield();
        }
    }
    mmt_meminfo_t m;
    int64_t estimate;
    sum_locked(&m, &estimate);
    pthread_mutex_unlock(&registry_lock);

    raise_peak(estimate);
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

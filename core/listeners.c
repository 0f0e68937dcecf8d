/*
 * Listeners and checkpoints: who is registered, when an evaluation is due, and running
 * one. Conditions and actions are user code, so they run with no internal lock held; an
 * evaluation is serialised by eval_lock, which an allocation only ever try-locks.
 */
#include "listeners.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "backend.h"
#include "counters.h"
#include "fork.h"
#include "mmt/memory.h"

typedef struct listener {
    int id;
    mmt__checkpoint_fn hook; /* a checkpoint hook (mmt__on_checkpoint): no condition, no action */
    mmt_mem_condition_fn when;
    mmt_mem_action_fn action;
    void *arg;
    bool active;  /* the condition held at the last evaluation */
    bool refused; /* a hook that could not run at the last pass (its engine was busy) */
    bool removed; /* unlistened: a gap kept until no pass runs (see compact) */
} listener_t;

/*
 * list_lock protects the following: the table of listeners, in ascending id order (new
 * ones go at the end), its counts, next_id, pass_running and every entry's fields. It is
 * never held while a condition or action runs.
 *
 * A pass walks the table by index, so it is linear however many listeners there are, and
 * entries never move while one runs: an unlisten during a pass leaves a gap (`removed`),
 * closed by compact() once no pass runs. A pass covers the listeners there were when it
 * started; one added meanwhile waits for the next pass.
 */
static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static listener_t *table;
static size_t table_len, table_cap, table_gaps;
static int next_id = 1;
static bool pass_running;

/* Held for the whole of an evaluation, user code included: one evaluation at a time. */
static pthread_mutex_t eval_lock = PTHREAD_MUTEX_INITIALIZER;

/* This thread is inside an evaluation: allocations and checkpoints do not re-enter. */
static _Thread_local bool tls_evaluating;

/* Atomics, read at folds: the distance (0: explicit checkpoints only) and the estimate
 * of in_use at the last evaluation. */
#define DEFAULT_CHECKPOINT ((int64_t)1 << 20)
static _Atomic int64_t checkpoint_bytes = DEFAULT_CHECKPOINT;
static _Atomic int64_t last_eval;

/* A hook could not run at the last pass: it is retried, at most once a millisecond
 * (retry_ms, the coarse clock's millisecond of the last try), by threads whose marks are
 * then at most RETRY_BYTES away. */
#define RETRY_BYTES ((int64_t)4096)
static _Atomic bool hooks_due;
static _Atomic int64_t retry_ms;

static int64_t coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool moved_enough(int64_t now)
{
    int64_t d = atomic_load_explicit(&checkpoint_bytes, memory_order_relaxed);
    if (d == 0) return false;
    int64_t last = atomic_load_explicit(&last_eval, memory_order_relaxed);
    int64_t moved = now - last;
    return moved >= d || moved <= -d;
}

/* Closes the gaps left by unlisten; caller holds list_lock, and no pass runs. */
static void compact(void)
{
    size_t kept = 0;
    for (size_t i = 0; i < table_len; i++)
        if (!table[i].removed) table[kept++] = table[i];
    table_len = kept;
    table_gaps = 0;
}

/* The index of the live listener `id`, or table_len; caller holds list_lock. Ids ascend
 * along the table, gaps included. */
static size_t find(int id)
{
    size_t lo = 0, hi = table_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (table[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < table_len && table[lo].id == id && !table[lo].removed ? lo : table_len;
}

/*
 * One pass over the listeners; caller holds eval_lock. Each listener is copied out under
 * list_lock and called without it, so conditions and actions may listen and unlisten. A
 * listener removed meanwhile is not called again: its entry is marked removed. The
 * snapshot is refreshed after an action, which may have freed memory that later
 * conditions should see.
 *
 * A hook that could not run (its engine busy) is marked refused and `hooks_due` set; a
 * retry (hooks_only) runs only the refused hooks, so that listeners are never evaluated
 * before in_use has moved the distance.
 */
static void evaluate(bool hooks_only)
{
    tls_evaluating = true;
    if (!hooks_only) atomic_store_explicit(&last_eval, mmt__published(), memory_order_relaxed);
    bool refused = false;

    mmt_meminfo_t info;
    mmt_meminfo(&info);
    pthread_mutex_lock(&list_lock);
    pass_running = true;
    size_t len = table_len;
    for (size_t i = 0; i < len; i++) {
        if (table[i].removed) continue;
        if (hooks_only && !table[i].refused) continue;
        listener_t copy = table[i];
        pthread_mutex_unlock(&list_lock);

        if (copy.hook) {
            bool ran = copy.hook(&info, copy.arg);
            pthread_mutex_lock(&list_lock);
            if (!table[i].removed) table[i].refused = !ran;
            refused |= !ran;
            continue;
        }
        bool holds = copy.when(&info, copy.arg) != 0;

        pthread_mutex_lock(&list_lock);
        bool rising = false;
        if (!table[i].removed) { /* the table may have moved; its indices have not */
            rising = holds && !table[i].active;
            table[i].active = holds;
        }
        if (rising) {
            pthread_mutex_unlock(&list_lock);
            copy.action(&info, copy.arg);
            mmt_meminfo(&info);
            pthread_mutex_lock(&list_lock);
        }
    }
    pass_running = false;
    if (table_gaps) compact();
    pthread_mutex_unlock(&list_lock);
    atomic_store_explicit(&hooks_due, refused, memory_order_relaxed);
    tls_evaluating = false;
}

/* An evaluation runs with thread cancellation disabled: a condition or action that reaches
 * a cancellation point (a write, a read of /proc) would otherwise end the thread with
 * eval_lock held, and every later evaluation and unlisten would wait forever. A pending
 * cancellation takes effect at the caller's next cancellation point. */
bool mmt__checkpoint_due(int64_t now)
{
    if (tls_evaluating) return false;
    bool full = moved_enough(now);
    if (!full) {
        if (!atomic_load_explicit(&hooks_due, memory_order_relaxed)) return false;
        int64_t ms = coarse_ms();
        if (atomic_exchange_explicit(&retry_ms, ms, memory_order_relaxed) == ms) return false;
    }
    if (pthread_mutex_trylock(&eval_lock) != 0) return false; /* another thread evaluates */
    int cancel;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    /* Another thread may have evaluated between our test and the lock. */
    if (full) full = moved_enough(mmt__published());
    bool ran = full || atomic_load_explicit(&hooks_due, memory_order_relaxed);
    if (ran) evaluate(!full);
    pthread_mutex_unlock(&eval_lock);
    pthread_setcancelstate(cancel, &cancel);
    return ran;
}

void mmt__checkpoint_rooms(int64_t now, int64_t *up, int64_t *down)
{
    int64_t d = atomic_load_explicit(&checkpoint_bytes, memory_order_relaxed);
    int64_t last = atomic_load_explicit(&last_eval, memory_order_relaxed);
    int64_t moved = now - last;
    /* Saturating: d may be as large as INT64_MAX. */
    if (__builtin_sub_overflow(d, moved, up)) *up = INT64_MAX;
    if (__builtin_add_overflow(d, moved, down)) *down = INT64_MAX;
    if (atomic_load_explicit(&hooks_due, memory_order_relaxed)) {
        if (*up > RETRY_BYTES) *up = RETRY_BYTES;
        if (*down > RETRY_BYTES) *down = RETRY_BYTES;
    }
}

void mmt_mem_checkpoint(void)
{
    if (tls_evaluating) return;
    int cancel;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    mmt__counters_flush();
    pthread_mutex_lock(&eval_lock);
    evaluate(false);
    pthread_mutex_unlock(&eval_lock);
    mmt__counters_flush(); /* marks from the new reference point */
    pthread_setcancelstate(cancel, &cancel);
}

void mmt_mem_set_checkpoint(size_t bytes)
{
    int64_t d = bytes > (size_t)INT64_MAX ? INT64_MAX : (int64_t)bytes;
    atomic_store_explicit(&checkpoint_bytes, d, memory_order_relaxed);
    mmt__counters_flush(); /* this thread's marks now; other threads' at their next fold */
}

size_t mmt_mem_get_checkpoint(void)
{
    return (size_t)atomic_load_explicit(&checkpoint_bytes, memory_order_relaxed);
}

/* Adds an entry to the table: a listener, or a hook. */
static int add(listener_t entry)
{
    mmt__fork_init(true);
    pthread_mutex_lock(&list_lock);
    if (next_id == INT32_MAX) {
        pthread_mutex_unlock(&list_lock);
        return MMT_ENOMEM;
    }
    if (table_len == table_cap) {
        listener_t *t = mmt__backend_grow(table, &table_cap, table_len, sizeof *t, 16);
        if (!t) {
            pthread_mutex_unlock(&list_lock);
            return MMT_ENOMEM;
        }
        table = t;
    }
    entry.id = next_id++;
    table[table_len++] = entry;
    pthread_mutex_unlock(&list_lock);
    return entry.id;
}

int mmt_mem_listen(mmt_mem_condition_fn when, mmt_mem_action_fn action, void *arg)
{
    if (!when || !action) return MMT_EINVAL;
    return add((listener_t){.when = when, .action = action, .arg = arg});
}

int mmt__on_checkpoint(mmt__checkpoint_fn fn, void *arg)
{
    if (!fn) return MMT_EINVAL;
    return add((listener_t){.hook = fn, .arg = arg});
}

/* ---- fork ------------------------------------------------------------------------------- */

/* At a fork, an evaluation on another thread is waited out; one on the forking thread (an
 * action that forks) goes on in both processes, each unlocking its own copy. */
static bool fork_took_eval;

void mmt__listeners_fork_prepare(void)
{
    fork_took_eval = !tls_evaluating;
    if (fork_took_eval) pthread_mutex_lock(&eval_lock);
    pthread_mutex_lock(&list_lock);
}

void mmt__listeners_fork_parent(void)
{
    pthread_mutex_unlock(&list_lock);
    if (fork_took_eval) pthread_mutex_unlock(&eval_lock);
}

void mmt__listeners_fork_child(void)
{
    mmt__listeners_fork_parent();
}

int mmt_mem_unlisten(int id)
{
    pthread_mutex_lock(&list_lock);
    size_t at = find(id);
    if (at == table_len) {
        pthread_mutex_unlock(&list_lock);
        return MMT_ENOENT;
    }
    table[at].removed = true;
    table_gaps++;
    /* Gaps are closed when they are many (so that a long table is not copied at every
     * unlisten), and never under a pass, which walks the table by index. */
    if (!pass_running && table_gaps * 2 > table_len) compact();
    pthread_mutex_unlock(&list_lock);

    /* Wait out an evaluation running on another thread: it may hold a copy of this
     * listener. Inside an evaluation, the pass itself skips removed ones. */
    if (!tls_evaluating) {
        pthread_mutex_lock(&eval_lock);
        pthread_mutex_unlock(&eval_lock);
    }
    return 0;
}

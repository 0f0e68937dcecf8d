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

#include "backend.h"
#include "counters.h"
#include "fork.h"
#include "mmt/memory.h"

typedef struct listener {
    int id;
    mmt_mem_condition_fn when;
    mmt_mem_action_fn action;
    void *arg;
    bool active; /* the condition held at the last evaluation */
    struct listener *next;
} listener_t;

/* list_lock protects the following: the list (kept in ascending id order), next_id and
 * every node's `active`. It is never held while a condition or action runs. */
static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static listener_t *listeners;
static int next_id = 1;

/* Held for the whole of an evaluation, user code included: one evaluation at a time. */
static pthread_mutex_t eval_lock = PTHREAD_MUTEX_INITIALIZER;

/* This thread is inside an evaluation: allocations and checkpoints do not re-enter. */
static _Thread_local bool tls_evaluating;

/* Atomics, read at folds: the distance (0: explicit checkpoints only) and the estimate
 * of in_use at the last evaluation. */
#define DEFAULT_CHECKPOINT ((int64_t)1 << 20)
static _Atomic int64_t checkpoint_bytes = DEFAULT_CHECKPOINT;
static _Atomic int64_t last_eval;

static bool moved_enough(int64_t now)
{
    int64_t d = atomic_load_explicit(&checkpoint_bytes, memory_order_relaxed);
    if (d == 0) return false;
    int64_t last = atomic_load_explicit(&last_eval, memory_order_relaxed);
    int64_t moved = now - last;
    return moved >= d || moved <= -d;
}

/* Returns the first listener with an id above `after`; caller holds list_lock. */
static listener_t *next_after(int after)
{
    listener_t *l = listeners;
    while (l && l->id <= after) l = l->next;
    return l;
}

/*
 * One pass over the listeners; caller holds eval_lock. Each listener is copied out under
 * list_lock and called without it, so conditions and actions may listen and unlisten.
 * A listener removed meanwhile is not called again: its node is looked up by id after
 * the condition returns. The snapshot is refreshed after an action, which may have freed
 * memory that later conditions should see.
 */
static void evaluate(void)
{
    tls_evaluating = true;
    atomic_store_explicit(&last_eval, mmt__published(), memory_order_relaxed);

    mmt_meminfo_t info;
    mmt_meminfo(&info);
    int last = 0;
    for (;;) {
        pthread_mutex_lock(&list_lock);
        listener_t *l = next_after(last);
        if (!l) {
            pthread_mutex_unlock(&list_lock);
            break;
        }
        listener_t copy = *l;
        pthread_mutex_unlock(&list_lock);
        last = copy.id;

        bool holds = copy.when(&info, copy.arg) != 0;

        bool rising = false;
        pthread_mutex_lock(&list_lock);
        l = next_after(last - 1);
        if (l && l->id == last) {
            rising = holds && !l->active;
            l->active = holds;
        }
        pthread_mutex_unlock(&list_lock);

        if (rising) {
            copy.action(&info, copy.arg);
            mmt_meminfo(&info);
        }
    }
    tls_evaluating = false;
}

/* An evaluation runs with thread cancellation disabled: a condition or action that reaches
 * a cancellation point (a write, a read of /proc) would otherwise end the thread with
 * eval_lock held, and every later evaluation and unlisten would wait forever. A pending
 * cancellation takes effect at the caller's next cancellation point. */
void mmt__checkpoint_due(int64_t now)
{
    if (tls_evaluating || !moved_enough(now)) return;
    if (pthread_mutex_trylock(&eval_lock) != 0) return; /* another thread is evaluating */
    int cancel;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    /* Another thread may have evaluated between our test and the lock. */
    if (moved_enough(mmt__published())) evaluate();
    pthread_mutex_unlock(&eval_lock);
    pthread_setcancelstate(cancel, &cancel);
}

void mmt_mem_checkpoint(void)
{
    if (tls_evaluating) return;
    int cancel;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    mmt__counters_flush();
    pthread_mutex_lock(&eval_lock);
    evaluate();
    pthread_mutex_unlock(&eval_lock);
    pthread_setcancelstate(cancel, &cancel);
}

void mmt_mem_set_checkpoint(size_t bytes)
{
    int64_t d = bytes > (size_t)INT64_MAX ? INT64_MAX : (int64_t)bytes;
    atomic_store_explicit(&checkpoint_bytes, d, memory_order_relaxed);
    mmt__counters_set_fold_limit((uint64_t)d);
}

size_t mmt_mem_get_checkpoint(void)
{
    return (size_t)atomic_load_explicit(&checkpoint_bytes, memory_order_relaxed);
}

int mmt_mem_listen(mmt_mem_condition_fn when, mmt_mem_action_fn action, void *arg)
{
    if (!when || !action) return MMT_EINVAL;
    mmt__fork_init(true);
    listener_t *n = mmt__backend.malloc(sizeof *n);
    if (!n) return MMT_ENOMEM;
    *n = (listener_t){.when = when, .action = action, .arg = arg};

    pthread_mutex_lock(&list_lock);
    if (next_id == INT32_MAX) {
        pthread_mutex_unlock(&list_lock);
        mmt__backend.free(n);
        return MMT_ENOMEM;
    }
    n->id = next_id++;
    listener_t **at = &listeners;
    while (*at) at = &(*at)->next;
    *at = n;
    int id = n->id;
    pthread_mutex_unlock(&list_lock);
    return id;
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
    listener_t *found = NULL;
    pthread_mutex_lock(&list_lock);
    for (listener_t **at = &listeners; *at; at = &(*at)->next) {
        if ((*at)->id == id) {
            found = *at;
            *at = found->next;
            break;
        }
    }
    pthread_mutex_unlock(&list_lock);
    if (!found) return MMT_ENOENT;
    mmt__backend.free(found);

    /* Wait out an evaluation running on another thread: it may hold a copy of this
     * listener. Inside an evaluation, the pass itself skips removed ids. */
    if (!tls_evaluating) {
        pthread_mutex_lock(&eval_lock);
        pthread_mutex_unlock(&eval_lock);
    }
    return 0;
}

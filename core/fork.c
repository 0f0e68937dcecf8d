/*
 * The core's fork handlers (see fork.h). Lock order at a fork: malloc_usable_size's growth
 * locks, evaluation, listener list, tag creation, counter registry, the order in which the
 * library takes them otherwise.
 */
#include "fork.h"
#include "reclaim.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "tags.h"

static void prepare(void)
{
    mmt__alloc_fork_prepare(); /* first: their holders take no other lock */
    mmt__listeners_fork_prepare();
    mmt__limits_fork_prepare(); /* limits before tags: mmt_limit_set takes both */
    mmt__tags_fork_prepare();
    mmt__counters_fork_prepare();
}

static void parent(void)
{
    mmt__counters_fork_parent();
    mmt__tags_fork_parent();
    mmt__limits_fork_parent();
    mmt__listeners_fork_parent();
    mmt__alloc_fork_parent();
}

static void child(void)
{
    mmt__counters_fork_child();
    mmt__tags_fork_child();
    mmt__limits_fork_child();
    mmt__listeners_fork_child();
    mmt__alloc_fork_parent();
}

enum { NOT_YET, UNDER_WAY, DONE };
static _Atomic int state = NOT_YET;

void mmt__fork_init(bool wait)
{
    if (atomic_load_explicit(&state, memory_order_acquire) == DONE) return;
    int expected = NOT_YET;
    if (atomic_compare_exchange_strong(&state, &expected, UNDER_WAY)) {
        /* pthread_atfork may allocate, which comes back here: UNDER_WAY makes that a
         * no-op rather than a wait on ourselves. */
        pthread_atfork(prepare, parent, child);
        atomic_store_explicit(&state, DONE, memory_order_release);
        return;
    }
    while (wait && atomic_load_explicit(&state, memory_order_acquire) != DONE) sched_yield();
}

/* The handlers are registered when the library is loaded, before the program's own: the
 * program's prepare handlers then run before mmt's and its parent and child handlers after
 * them. So a prepare handler may wait for a lock a thread holds while it allocates (mmt's
 * locks are not held yet), and a parent or child handler may allocate (they are released),
 * as glibc's own malloc allows. */
__attribute__((constructor)) static void register_early(void)
{
    mmt__fork_init(false);
}

/*
 * fork() in a threaded program: the child has one thread, the one that forked, and a copy
 * of every lock as it was. mmt's handlers (pthread_atfork) take the core's locks before
 * the fork, so that no other thread holds one in the copy, and in the child give the dead
 * threads' counter slots back. Handlers that must run before the core's at a fork (the
 * policy engine's: its locks come first) are registered after mmt__fork_init().
 */
#ifndef MMT_CORE_FORK_H
#define MMT_CORE_FORK_H

#include <stdbool.h>

/* Registers the core's handlers, once. From an allocation path, wait = false: a call made
 * while this thread's own registration is under way returns at once. */
void mmt__fork_init(bool wait);

/* alloc.c: the locks of malloc_usable_size's growth (the same release in parent and
 * child). */
void mmt__alloc_fork_prepare(void);
void mmt__alloc_fork_parent(void);

/* counters.c: the registry lock; the dead threads' slots in the child. */
void mmt__counters_fork_prepare(void);
void mmt__counters_fork_parent(void);
void mmt__counters_fork_child(void);

/* listeners.c: the list lock, and the evaluation lock unless this thread holds it. */
void mmt__listeners_fork_prepare(void);
void mmt__listeners_fork_parent(void);
void mmt__listeners_fork_child(void);

#endif

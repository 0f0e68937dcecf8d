/*
 * Failure reports, each one line on stderr (mmt__say: no stdio, which may allocate, and a
 * single write(2), so that lines from threads failing at once do not interleave).
 */
#include "oom.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "counters.h"
#include "mmt/memory.h"
#include "sys.h"
#include "tags.h"

/* The handler and its argument, set together by mmt_set_oom_handler from any thread and
 * read together when an allocation fails: the lock keeps the pair whole. */
static pthread_mutex_t handler_lock = PTHREAD_MUTEX_INITIALIZER;
static mmt_oom_fn handler;
static void *handler_arg;

/* This thread is inside the OOM handler: a failure there does not call it again. */
static _Thread_local bool tls_in_handler;

void mmt_set_oom_handler(mmt_oom_fn fn, void *arg)
{
    pthread_mutex_lock(&handler_lock);
    handler = fn;
    handler_arg = arg;
    pthread_mutex_unlock(&handler_lock);
}

static _Noreturn void die_out_of_memory(size_t size, const char *what)
{
    /* A failed realloc never reaches its counters: its journal is void. */
    atomic_store_explicit(&mmt__tls.busy, 0, memory_order_release);
    mmt__tags_realloc_void();
    mmt_meminfo_t info;
    mmt_meminfo(&info);
    pthread_mutex_lock(&handler_lock);
    mmt_oom_fn fn = handler;
    void *arg = handler_arg;
    pthread_mutex_unlock(&handler_lock);
    if (fn && !tls_in_handler) {
        tls_in_handler = true;
        fn(size, &info, arg);
        tls_in_handler = false;
        mmt_meminfo(&info);
    }
    mmt__say("mmt: %s; in use %llu bytes, peak %llu bytes; aborting\n", what,
           (unsigned long long)info.in_use, (unsigned long long)info.peak);
    abort();
}

/* `call` is a function's name, followed here by (size); or, for a call with more arguments
 * than a size, the whole call with its arguments ("mmt_aligned_alloc(64, 10)"). */
void mmt__oom(const char *call, size_t size, const char *why)
{
    char what[160];
    if (strchr(call, '(')) snprintf(what, sizeof what, "%s failed: %s", call, why);
    else snprintf(what, sizeof what, "%s(%zu) failed: %s", call, size, why);
    die_out_of_memory(size, what);
}

void mmt__oom_overflow(const char *call, size_t count, size_t size)
{
    char what[160];
    snprintf(what, sizeof what, "%s(%zu, %zu) failed: count * size overflows", call, count,
             size);
    die_out_of_memory(SIZE_MAX, what);
}

void mmt__bad_pointer(const char *call, const void *ptr, const char *why)
{
    mmt__say("mmt: %s(%p): %s; aborting\n", call, ptr, why);
    abort();
}

void mmt__bad_tag(const char *call, unsigned tag)
{
    mmt__say("mmt: %s(%u): no such tag (not an id mmt_tag_new returned); aborting\n", call, tag);
    abort();
}

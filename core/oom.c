/*
 * Failure reports. They avoid stdio (which may allocate) and write each report with a
 * single write(2), so that lines from threads failing at once do not interleave.
 */
#include "oom.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mmt/memory.h"

typedef void (*oom_handler_fn)(size_t size, const mmt_meminfo_t *info);

/* Set by mmt_set_oom_handler from any thread; read when an allocation fails. */
static _Atomic(oom_handler_fn) oom_handler;

/* This thread is inside the OOM handler: a failure there does not call it again. */
static _Thread_local bool tls_in_handler;

void mmt_set_oom_handler(void (*fn)(size_t size, const mmt_meminfo_t *info))
{
    atomic_store(&oom_handler, fn);
}

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    line[len - 1] = '\n'; /* always end the line, even if it was cut */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

static _Noreturn void die_out_of_memory(size_t size, const char *what)
{
    mmt_meminfo_t info;
    mmt_meminfo(&info);
    oom_handler_fn fn = atomic_load(&oom_handler);
    if (fn && !tls_in_handler) {
        tls_in_handler = true;
        fn(size, &info);
        tls_in_handler = false;
        mmt_meminfo(&info);
    }
    report("mmt: %s; in use %llu bytes, peak %llu bytes; aborting\n", what,
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

void mmt__oom_overflow(size_t count, size_t size)
{
    char what[160];
    snprintf(what, sizeof what, "mmt_calloc(%zu, %zu) failed: count * size overflows", count,
             size);
    die_out_of_memory(SIZE_MAX, what);
}

void mmt__bad_pointer(const char *call, const void *ptr, const char *why)
{
    report("mmt: %s(%p): %s; aborting\n", call, ptr, why);
    abort();
}

/*
 * libmmtmem-preload.so: mmt under a program that was not built for it. Loaded with
 * LD_PRELOAD, it replaces the allocation functions of the whole program, so that every
 * block gets mmt's header and counts, and it runs a policy from the environment:
 *
 *   MMT_POLICY=FILE     policy to load and watch (none: counters only)
 *   MMT_INTERVAL=MS     the engine's timer, 0 to 86400000 (default 1000; 0: checkpoints only)
 *   MMT_REPORT=FORMAT   at exit, write the counters as text, json or prometheus
 *   MMT_OUT=FILE        where the report goes (default: stderr)
 *   MMT_TRACE=FILE      write the time series there, as CSV (trace.h)
 *
 *   MMT_REPORT_PID=PID  only the process with this id reports (default: every process)
 *
 * A value out of its range is said in one line on stderr, naming the variable and the
 * value, and the default is used instead: the program runs on. The reporting processes
 * say it (with MMT_REPORT_PID, only that one, not every process of the tree).
 *
 * The reporting process marks an empty MMT_OUT at start with a newline (blank in every
 * format), which the report replaces at exit: mmt-run, whose report file starts empty,
 * tells a program the library never entered (still empty) from one that ended without
 * exit handlers (the newline alone).
 *
 * The programs a program starts inherit the environment: they are counted and run the
 * policy too. MMT_REPORT_PID keeps their reports and traces from writing over the ones
 * that matter.
 * An exec keeps the process id, so a shell wrapper that execs the program hands it on.
 *
 * mmt sits on glibc's own entry points (__libc_malloc and friends), so there is no dlsym
 * bootstrap to get wrong. The interposed functions keep the libc contracts a program
 * relies on (EINVAL for a bad alignment, page alignment for valloc); an allocation that
 * fails is mmt's designed abort.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mmt/memory.h"
#include "mmt/policy.h"
#include "engine.h"
#include "trace.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT void *malloc(size_t size)
{
    return mmt_malloc(size);
}

EXPORT void free(void *ptr)
{
    mmt_free(ptr);
}

EXPORT void *calloc(size_t count, size_t size)
{
    return mmt_calloc(count, size);
}

EXPORT void *realloc(void *ptr, size_t size)
{
    return mmt_realloc(ptr, size);
}

EXPORT void *reallocarray(void *ptr, size_t count, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM; /* an argument error, as glibc reports it */
        return NULL;
    }
    return mmt_realloc(ptr, total);
}

static int power_of_two(size_t n)
{
    return n && !(n & (n - 1));
}

EXPORT int posix_memalign(void **out, size_t alignment, size_t size)
{
    if (!power_of_two(alignment) || alignment % sizeof(void *) != 0) return EINVAL;
    *out = mmt_aligned_alloc(alignment, size);
    return 0;
}

EXPORT void *aligned_alloc(size_t alignment, size_t size)
{
    if (!power_of_two(alignment)) {
        errno = EINVAL;
        return NULL;
    }
    return mmt_aligned_alloc(alignment, size);
}

EXPORT void *memalign(size_t alignment, size_t size)
{
    size_t a = 1;
    while (a < alignment && a < ((size_t)1 << 62)) a <<= 1; /* glibc rounds up */
    return mmt_aligned_alloc(a, size);
}

EXPORT void *valloc(size_t size)
{
    return mmt_aligned_alloc((size_t)sysconf(_SC_PAGESIZE), size);
}

EXPORT void *pvalloc(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t rounded = (size + page - 1) & ~(page - 1);
    return mmt_aligned_alloc(page, rounded < size ? size : rounded);
}

EXPORT size_t malloc_usable_size(void *ptr)
{
    return mmt_size(ptr);
}

/* ---- The policy engine and the report at exit ---------------------------------------------- */

static mmt_policy_t *engine;
static int report_format = -1; /* -1: no report */
static char report_path[4096];  /* MMT_OUT, read at start: the program may change it */
static pid_t report_pid;        /* the reporting process: a forked copy neither reports nor traces */

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

#define MAX_INTERVAL_MS 86400000ul /* a day, as mmt-run's --interval */

/* `text` as a decimal number from `min` to `max`: digits only, no sign, space or base
 * prefix (strtoul takes all three, and wraps a negative number round). */
static bool parse_decimal(const char *text, unsigned long min, unsigned long max,
                          unsigned long *out)
{
    unsigned long v = 0;
    for (const char *c = text; *c; c++) {
        if (*c < '0' || *c > '9') return false;
        unsigned long digit = (unsigned long)(*c - '0');
        if (v > (max - digit) / 10) return false;
        v = v * 10 + digit;
    }
    *out = v;
    return *text && v >= min;
}

/* Writes the start mark into the report file if it is an empty regular file (mkstemp made
 * mmt-run's); anything else, a FIFO included, is left alone. */
static void mark_report_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0) {
        ssize_t w = write(fd, "\n", 1);
        (void)w;
    }
    close(fd);
}

__attribute__((constructor)) static void preload_start(void)
{
    const char *report = env("MMT_REPORT");
    const char *pid = env("MMT_REPORT_PID");
    unsigned long id = 0;
    bool pid_ok = !pid || parse_decimal(pid, 1, INT_MAX, &id);
    bool reporting = !pid_ok || !pid || id == (unsigned long)getpid();
    if (!pid_ok)
        fprintf(stderr, "mmt: MMT_REPORT_PID=%s: not a process id from 1 to %d; every process "
                        "reports\n", pid, INT_MAX);
    if (reporting) report_pid = getpid();
    const char *trace = reporting ? env("MMT_TRACE") : NULL;
    if (trace && mmt__trace_start(trace) != 0)
        fprintf(stderr, "mmt: cannot write the trace to %s: %s\n", trace, strerror(errno));
    if (report && reporting) {
        report_format = strcmp(report, "json") == 0         ? MMT_FORMAT_JSON
                        : strcmp(report, "prometheus") == 0 ? MMT_FORMAT_PROMETHEUS
                                                            : MMT_FORMAT_TEXT;
        if (report_format == MMT_FORMAT_TEXT && strcmp(report, "text") != 0)
            fprintf(stderr, "mmt: MMT_REPORT=%s: not text, json or prometheus; using text\n",
                    report);
        const char *out = env("MMT_OUT");
        size_t out_len = out ? strlen(out) : 0;
        if (out_len >= sizeof report_path)
            fprintf(stderr, "mmt: MMT_OUT is %zu bytes long, more than the %zu a path may have; "
                            "the report goes to stderr\n", out_len, sizeof report_path - 1);
        else if (out)
            memcpy(report_path, out, out_len + 1);
        if (report_path[0]) mark_report_file(report_path);
    }
    const char *policy = env("MMT_POLICY");
    if (!policy) return;
    const char *interval = env("MMT_INTERVAL");
    unsigned long interval_ms = 1000;
    if (interval && !parse_decimal(interval, 0, MAX_INTERVAL_MS, &interval_ms)) {
        if (reporting)
            fprintf(stderr, "mmt: MMT_INTERVAL=%s: not a number of milliseconds from 0 to %lu; "
                            "using 1000\n", interval, MAX_INTERVAL_MS);
        interval_ms = 1000;
    }
    mmt_policy_options_t o = {.interval_ms = (unsigned)interval_ms, .watch = 1};
    /* Programs that exec soon (shells, wrappers) should not pay for an inotify instance:
     * the file is polled for its first second (see engine.h). Only the reporting process
     * ever takes one: inotify instances are the user's (128 by default), and every other
     * process of the tree polls, lest a tree under mmt-run take them all. */
    engine = mmt__policy_new(&o, reporting ? 1000 : MMT__INOTIFY_NEVER);
    if (!engine) {
        fprintf(stderr, "mmt: cannot start the policy engine\n");
        return;
    }
    if (trace) mmt_policy_set_event(engine, mmt__trace_event, NULL);
    mmt_policy_load(engine, policy); /* an error is logged on stderr; counting goes on */
}

/* Writes the report once, from exit handlers or from _exit, whichever comes first. */
static void write_report(void)
{
    if (report_format < 0 || getpid() != report_pid) return;
    int format = report_format;
    report_format = -1;
    /* A program may have closed stderr by now (coreutils do, at exit): MMT_OUT is safer. */
    FILE *out = report_path[0] ? fopen(report_path, "w") : stderr;
    if (!out) {
        fprintf(stderr, "mmt: cannot write the report to %s: %s\n", report_path, strerror(errno));
        return;
    }
    mmt_meminfo_write(out, format);
    if (out != stderr) fclose(out);
}

/* Programs that end with _exit (shells do) skip exit handlers: report on the way out. The
 * process then ends as _exit would, with the exit_group system call. */
EXPORT void _exit(int status)
{
    if (getpid() == report_pid) mmt__trace_stop();
    write_report();
    for (;;) syscall(SYS_exit_group, status);
}

EXPORT void _Exit(int status)
{
    _exit(status);
}

__attribute__((destructor)) static void preload_stop(void)
{
    if (getpid() == report_pid) mmt__trace_stop();
    /* The process is ending: stop the policy, and leave its memory and descriptors to the
     * kernel (freeing them costs an exiting program milliseconds, see thread.c). */
    if (engine) mmt__policy_stop_for_exit(engine);
    engine = NULL;
    write_report();
}

/*
 * libmmtmem-preload.so: mmt under a program that was not built for it. Loaded with
 * LD_PRELOAD, it replaces the allocation functions of the whole program, so that every
 * block gets mmt's header and counts, and it runs a policy from the environment:
 *
 *   MMT_POLICY=FILE     policy to load and watch (none: counters only)
 *   MMT_INTERVAL=MS     the engine's timer, 0 to 86400000 (default 1000; 0: checkpoints only)
 *   MMT_REPORT=FORMAT   at exit, write the counters as text, json or prometheus
 *   MMT_OUT=FILE        where the report goes (default: stderr); %p in it is the process
 *                       id, and then every process writes its own (%% is a %)
 *   MMT_TRACE=FILE      write the time series there, as CSV (trace.h)
 *   MMT_DRY_RUN=1       a dry run: the policy's host actions, reclaims, trims and limits
 *                       are logged ("dry run: would ..."), not done (policy.h); 0 or
 *                       unset: they are done
 *   MMT_EXPORT=FILE     a Prometheus textfile for node_exporter (policy.h, "The textfile"):
 *                       the counters and the policy's rules, rewritten while the program
 *                       runs and a last time at exit, with or without MMT_POLICY
 *   MMT_EXPORT_EVERY=S  seconds between two writes of it, 1 to 86400 (default 15)
 *
 *   MMT_REPORT_PID=PID  without %p in MMT_OUT, only the process with this id reports
 *                       (default: every process); only it writes the trace and the
 *                       textfile, and takes an inotify instance
 *
 * A value out of its range is said in one line on stderr, naming the variable and the
 * value, and the default is used instead: the program runs on. MMT_DRY_RUN is the
 * exception: any value but 0 is a dry run, since setting it at all asks for one, and a
 * policy that acts when the operator meant it not to is the worse mistake. The reporting
 * processes say it (with MMT_REPORT_PID, only that one, not every process of the tree).
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
 * mmt sits on the next malloc in the program's lookup order (next.c: glibc's, or the one the
 * program brings, jemalloc for Redis). The interposed functions keep the libc contracts a
 * program relies on (EINVAL for a bad alignment, page alignment for valloc); an allocation
 * that fails is mmt's designed abort.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mmt/memory.h"
#include "mmt/policy.h"
#include "backend.h"
#include "counters.h"
#include "preload_engine.h"
#include "export.h"
#include "fd.h"
#include "fork.h"
#include "sys.h"
#include "report_path.h"
#include "trace.h"
#include "utf8.h"

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

/* The block's room as the allocator underneath has it, less mmt's header: a program that
 * asks may use all of it (Redis does), so the block counts at that size from then on. */
EXPORT size_t malloc_usable_size(void *ptr)
{
    return mmt__claim_usable(ptr, mmt__next_usable);
}

/* ---- The policy engine and the report at exit ---------------------------------------------- */

/* Set by the constructor before the program's main; cleared by the destructor, when the
 * process is ending. */
static mmt_policy_t *engine;

/*
 * The report. The constructor sets these before the program's main, and a forked child's
 * fork handler in the child, which has one thread then; afterwards only write_report reads
 * them, once: the exchange on report_format lets one caller through, whichever comes first
 * of the exit handlers and an _exit on any thread.
 */
static _Atomic int report_format = -1; /* -1: no report (or written already) */
static char report_path[4096];          /* MMT_OUT as given, read at start */
static bool per_process;                /* MMT_OUT holds %p: every process writes its own */
static pid_t report_pid;                /* the reporting process */
static mmt__own_fd_t report_fd = {-1, 0, 0}; /* per process: its file, opened at its start */
static double started;                  /* when this process started, or was forked */
static bool forked;                     /* this process is a forked child */
static pid_t parent;                    /* its parent then */
static mmt_meminfo_t at_start;          /* the counters then (a forked child's parent's) */

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

#define MAX_INTERVAL_MS 86400000ul /* a day, as mmt-run's --interval */
#define MAX_EXPORT_EVERY_S 86400ul /* a day, as mmt-run's --every */

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

/* report_path with this process's id for %p, into buf ("" if it does not fit). */
static void expand_path(char *buf, size_t len)
{
    mmt__expand_pid(report_path, (long)getpid(), buf, len);
}

/* Reads the small /proc/self file `name` into buf (NULs, as the command line has between
 * its arguments, and the last newline made spaces, trailing ones dropped). */
static void read_self(const char *name, char *buf, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/%s", name);
    ssize_t n = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        n = read(fd, buf, len - 1);
        close(fd);
    }
    if (n < 0) n = 0;
    for (ssize_t k = 0; k < n; k++)
        if (buf[k] == '\0' || buf[k] == '\n') buf[k] = ' ';
    while (n > 0 && buf[n - 1] == ' ') n--;
    buf[n] = '\0';
}

/* The process's fields of a per-process JSON report, from "{" to the comma after the
 * last; the counters follow. */
static size_t process_fields(char *buf, size_t len, bool at_exit)
{
    char comm[64], command[512], scomm[6 * sizeof comm + 2], scommand[6 * sizeof command + 2];
    char salloc[6 * 64 + 2];
    read_self("comm", comm, sizeof comm);
    mmt__json_string(scomm, sizeof scomm, comm);
    int n;
    if (!at_exit) {
        n = snprintf(buf, len, "{\"pid\":%ld,\"ppid\":%ld,\"comm\":%s,\"forked\":%s,\"start\":%.6f}\n",
                     (long)getpid(), (long)parent, scomm, forked ? "true" : "false", started);
    } else {
        read_self("cmdline", command, sizeof command);
        mmt__json_string(scommand, sizeof scommand, command);
        mmt__json_string(salloc, sizeof salloc, mmt_backend());
        n = snprintf(buf, len,
                     "{\"pid\":%ld,\"ppid\":%ld,\"comm\":%s,\"command\":%s,\"forked\":%s,"
                     "\"allocator\":%s,\"start\":%.6f,\"run_time_seconds\":%.6f,"
                     "\"in_use_at_start\":%" PRIu64 ",",
                     (long)getpid(), (long)parent, scomm, scommand, forked ? "true" : "false",
                     salloc, started, mmt__now() - started, at_start.in_use);
    }
    return n > 0 ? ((size_t)n < len ? (size_t)n : len - 1) : 0;
}

/* Whether `text` (at most `len` bytes) is a finished report, not a start record: a file of
 * an earlier process whose id this one reuses. */
#define FINISHED "\"allocated\":" /* a field of the report that the start record lacks */

static bool finished_report(const char *text, size_t len)
{
    return len > 0 && (atomic_load(&report_format) != MMT_FORMAT_JSON ||
                       memmem(text, len, FINISHED, sizeof FINISHED - 1) != NULL);
}

/*
 * Opens this process's own report file (`path`: MMT_OUT with its %p expanded) for writing,
 * without truncating it. Only a regular file this user owns is written: never through a
 * symbolic link (a folder of reports someone else recreated, a name planted in /tmp), nor
 * into a FIFO or a device, which could block or kill the process at exit. A finished
 * report already there is an earlier process's whose id this one reuses: it is moved
 * aside (PATH.N), not overwritten. Returns the descriptor, or -1 with errno set.
 */
static int open_report_file(const char *path)
{
    int flags = O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
    int fd = open(path, flags | O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd >= 0 || errno != EEXIST) return fd;
    fd = open(path, flags | O_RDWR); /* read too: what is there already */
    struct stat st;
    if (fd < 0) return -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        close(fd);
        errno = EPERM;
        return -1;
    }
    char head[4096];
    ssize_t n = pread(fd, head, sizeof head, 0);
    if (n > 0 && finished_report(head, (size_t)n)) {
        close(fd);
        char aside[sizeof report_path + 96];
        for (int k = 1; k < 1000; k++) {
            snprintf(aside, sizeof aside, "%s.%d", path, k);
            if (access(aside, F_OK) != 0) break;
        }
        if (rename(path, aside) != 0) return -1;
        return open(path, flags | O_WRONLY | O_CREAT | O_EXCL, 0600);
    }
    return fd;
}

/* Opens this process's own report file (per-process reports), before the program can
 * drop its privileges or close descriptors it does not know, and writes the start record
 * (JSON): a process that never reports (killed, or its exec failed) still shows. */
static void open_own_report(void)
{
    char path[sizeof report_path + 64];
    expand_path(path, sizeof path);
    int fd = open_report_file(path);
    if (fd < 0) return;
    if (ftruncate(fd, 0) != 0) {
        close(fd);
        return;
    }
    report_fd = mmt__fd_take(fd);
    if (report_fd.fd < 0 || atomic_load(&report_format) != MMT_FORMAT_JSON) return;
    char line[1024];
    size_t n = process_fields(line, sizeof line, false);
    ssize_t w = write(report_fd.fd, line, n);
    (void)w;
}

/* The counters this process reports: its own since it started (a forked child's since
 * the fork), with in_use and peak as they are. */
static bool own_counters(mmt_meminfo_t *out)
{
    mmt_meminfo_t m;
    /* Not waited for: _exit may be called from a signal handler that interrupted this
     * thread inside mmt_meminfo (no report, rather than a process that never ends). */
    if (!mmt__meminfo_try(&m)) return false;
    m.allocated -= at_start.allocated;
    m.freed -= at_start.freed;
    m.allocations -= at_start.allocations;
    m.frees -= at_start.frees;
    m.reallocs -= at_start.reallocs;
    *out = m;
    return true;
}

/* A forked child reports its own figures, to a file of its own, when reports are per
 * process; its peak starts again from what it inherited. */
static void forked_child(void)
{
    forked = true;
    parent = getppid();
    started = mmt__now();
    mmt__counters_restart_peak();
    mmt_meminfo(&at_start);
    if (!per_process || atomic_load(&report_format) < 0) return;
    report_pid = getpid();
    mmt__fd_release(&report_fd); /* the parent's file, if this copy still has it */
    open_own_report();
}
/* Says, once, when a malloc of the program or of a library preloaded before this one comes
 * first in the lookup order: the program's blocks never reach mmt then. Tried rather than
 * compared by address: a program that takes malloc's address has the name resolve to its
 * own stub, which leads here all the same. */
static void check_first_malloc(void)
{
    void *m = dlsym(RTLD_DEFAULT, "malloc"), *f = dlsym(RTLD_DEFAULT, "free");
    if (!m || !f) return;
    void *(*first)(size_t);
    void (*first_free)(void *);
    memcpy(&first, &m, sizeof m);
    memcpy(&first_free, &f, sizeof f);
    mmt_meminfo_t before, after;
    mmt_meminfo(&before);
    void *probe = first(48);
    mmt_meminfo(&after);
    first_free(probe);
    if (after.allocations > before.allocations) {
        /* It came here: the probe is mmt's, not the program's, in the report. */
        at_start.allocated += 48, at_start.freed += 48;
        at_start.allocations += 1, at_start.frees += 1;
        return;
    }
    Dl_info info;
    const char *where = dladdr(m, &info) && info.dli_fname && *info.dli_fname
                            ? info.dli_fname : "the program";
    fprintf(stderr, "mmt: malloc comes from %s, which is before libmmtmem-preload.so in the "
                    "lookup order: the program's allocations are not counted (put mmt first "
                    "in LD_PRELOAD)\n", where);
}

/* The trace's process (a forked copy neither traces nor stops the trace): set by the
 * constructor, only read after. */
static pid_t trace_pid;

static void start_policy(const char *policy, bool reporting, bool trace, const char *textfile);

__attribute__((constructor)) static void preload_start(void)
{
    started = mmt__now();
    parent = getppid();
    const char *report = env("MMT_REPORT");
    const char *pid = env("MMT_REPORT_PID");
    unsigned long id = 0;
    bool pid_ok = !pid || parse_decimal(pid, 1, INT_MAX, &id);
    bool reporting = !pid_ok || !pid || id == (unsigned long)getpid();
    if (!pid_ok)
        fprintf(stderr, "mmt: MMT_REPORT_PID=%s: not a process id from 1 to %d; every process "
                        "reports\n", pid, INT_MAX);
    if (reporting) check_first_malloc();
    const char *out = report ? env("MMT_OUT") : NULL;
    per_process = out && mmt__has_pid_escape(out);
    if (report && (reporting || per_process)) {
        report_pid = getpid();
        int format = strcmp(report, "json") == 0         ? MMT_FORMAT_JSON
                     : strcmp(report, "prometheus") == 0 ? MMT_FORMAT_PROMETHEUS
                                                         : MMT_FORMAT_TEXT;
        if (format == MMT_FORMAT_TEXT && strcmp(report, "text") != 0 && reporting)
            fprintf(stderr, "mmt: MMT_REPORT=%s: not text, json or prometheus; using text\n",
                    report);
        atomic_store(&report_format, format);
        size_t out_len = out ? strlen(out) : 0;
        if (out_len >= sizeof report_path) {
            per_process = false;
            if (reporting)
                fprintf(stderr, "mmt: MMT_OUT is %zu bytes long, more than the %zu a path may "
                                "have; the report goes to stderr\n", out_len,
                        sizeof report_path - 1);
            if (!reporting) atomic_store(&report_format, -1);
        } else if (out) {
            memcpy(report_path, out, out_len + 1);
        }
        char path[sizeof report_path + 64];
        expand_path(path, sizeof path); /* %% is a % here too */
        if (per_process) open_own_report();
        else if (path[0]) mark_report_file(path);
    }
    mmt__log_names_pid = true; /* the processes of a tree share one stderr */
    if (reporting) trace_pid = getpid();
    const char *trace = reporting ? env("MMT_TRACE") : NULL;
    if (trace && mmt__trace_start(trace) != 0)
        fprintf(stderr, "mmt: cannot write the trace to %s: %s\n", trace, strerror(errno));
    const char *policy = env("MMT_POLICY");
    /* The textfile is the reporting process's, as the report is: one process of a tree. */
    const char *textfile = reporting ? env("MMT_EXPORT") : NULL;
    if (policy || textfile) start_policy(policy, reporting, trace != NULL, textfile);
    /* Registered after the core's and the engine's handlers, so that in a child ours run
     * once their locks are free again. */
    mmt__fork_init(true);
    pthread_atfork(NULL, NULL, forked_child);
}

/* The engine, for the policy (NULL: none, counters only) and the textfile (NULL: none). */
static void start_policy(const char *policy, bool reporting, bool trace, const char *textfile)
{
    const char *interval = env("MMT_INTERVAL");
    unsigned long interval_ms = 1000;
    if (interval && !parse_decimal(interval, 0, MAX_INTERVAL_MS, &interval_ms)) {
        if (reporting)
            fprintf(stderr, "mmt: MMT_INTERVAL=%s: not a number of milliseconds from 0 to %lu; "
                            "using 1000\n", interval, MAX_INTERVAL_MS);
        interval_ms = 1000;
    }
    const char *dry = env("MMT_DRY_RUN");
    bool dry_run = dry && strcmp(dry, "0") != 0;
    if (dry_run && strcmp(dry, "1") != 0 && reporting)
        fprintf(stderr, "mmt: MMT_DRY_RUN=%s: not 0 or 1; using 1, a dry run\n", dry);
    const char *every = textfile ? env("MMT_EXPORT_EVERY") : NULL;
    unsigned long every_s = 15;
    if (every && !parse_decimal(every, 1, MAX_EXPORT_EVERY_S, &every_s)) {
        fprintf(stderr, "mmt: MMT_EXPORT_EVERY=%s: not a number of seconds from 1 to %lu; "
                        "using 15\n", every, MAX_EXPORT_EVERY_S);
        every_s = 15;
    }
    mmt_policy_options_t o = {.interval_ms = (unsigned)interval_ms, .watch = policy != NULL,
                              .dry_run = dry_run, .export_path = textfile,
                              .export_every_s = (unsigned)every_s};
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
    if (policy) mmt_policy_load(engine, policy); /* an error is logged; counting goes on */
}

/* This process's own report, into its own file (per-process reports): the one it opened
 * at its start if that is still its own, else the file opened again by name. */
static void write_own_report(int format)
{
    mmt_meminfo_t m;
    if (!own_counters(&m)) return;
    char text[8192];
    size_t n = 0;
    if (format == MMT_FORMAT_JSON) {
        n = process_fields(text, sizeof text, true);
        char counters[2048];
        int k = mmt__format(counters, sizeof counters, &m, NULL, format);
        if (k > 1 && (size_t)k < sizeof counters && n + (size_t)k < sizeof text) {
            memcpy(text + n, counters + 1, (size_t)k); /* without its "{", with its NUL */
            n += (size_t)k - 1;
        }
    } else {
        char comm[64];
        read_self("comm", comm, sizeof comm);
        int k = snprintf(text, sizeof text, "%spid %ld (%s), parent %ld, allocator %s, ran %.3f s, "
                         "in use at start %" PRIu64 " B:%s", format == MMT_FORMAT_TEXT ? "" : "# ",
                         (long)getpid(), comm, (long)parent, mmt_backend(),
                         mmt__now() - started, at_start.in_use,
                         format == MMT_FORMAT_TEXT ? " " : "\n");
        n = k > 0 && (size_t)k < sizeof text ? (size_t)k : 0;
        k = mmt__format(text + n, sizeof text - n, &m, NULL, format);
        if (k > 0) n = n + (size_t)k < sizeof text ? n + (size_t)k : sizeof text - 1;
    }
    /* The file opened at the start if it is still this library's, else opened again by
     * name (the program closed it, or this is a process whose start had no file). The
     * report is written over the start record and the file cut to it after, so that a
     * reader never finds it empty. */
    int fd = mmt__fd_is_own(&report_fd) ? report_fd.fd : -1;
    char path[sizeof report_path + 64];
    expand_path(path, sizeof path);
    bool reopened = fd < 0;
    if (reopened) fd = open_report_file(path);
    if (fd < 0) {
        /* Said by the process MMT_REPORT_PID names; in others (a worker that dropped its
         * privileges, say) it would be a line on the program's stderr per process. */
        if (getpid() == trace_pid) mmt__say("mmt: cannot write the report to %s: %s", path, strerror(errno));
        return;
    }
    size_t at = 0;
    while (at < n) {
        ssize_t w = pwrite(fd, text + at, n - at, (off_t)at);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        at += (size_t)w;
    }
    int cut = ftruncate(fd, (off_t)at);
    (void)cut; /* a report cut short still parses up to its end: nothing better to do */
    if (reopened) close(fd);
}

/* Writes the report once, from exit handlers or from _exit, whichever comes first. */
static void write_report(void)
{
    if (getpid() != report_pid) return;
    int format = atomic_exchange(&report_format, -1);
    if (format < 0) return;
    if (per_process) {
        write_own_report(format);
        return;
    }
    /* A program may have closed stderr by now (coreutils do, at exit): MMT_OUT is safer. */
    char path[sizeof report_path + 64];
    expand_path(path, sizeof path);
    FILE *out = path[0] ? fopen(path, "w") : stderr;
    if (!out) {
        mmt__say("mmt: cannot write the report to %s: %s", path, strerror(errno));
        return;
    }
    mmt_meminfo_write(out, format);
    if (out != stderr) fclose(out);
}

/* Programs that end with _exit (shells do) skip exit handlers: report on the way out. The
 * process then ends as _exit would, with the exit_group system call. */
EXPORT void _exit(int status)
{
    if (getpid() == trace_pid) mmt__trace_stop();
    /* The textfile's last write, by the engine's thread: a second at most (it takes a few
     * milliseconds; the wait ends there if this thread holds what the write needs). */
    if (engine) mmt__policy_export_at_exit(engine, 1000);
    write_report();
    for (;;) syscall(SYS_exit_group, status);
}

EXPORT void _Exit(int status)
{
    _exit(status);
}

__attribute__((destructor)) static void preload_stop(void)
{
    if (getpid() == trace_pid) mmt__trace_stop();
    /* The process is ending: stop the policy (its thread writes the textfile a last time),
     * and leave its memory and descriptors to the kernel (freeing them costs an exiting
     * program milliseconds, see thread.c). */
    if (engine) mmt__policy_stop_for_exit(engine);
    engine = NULL;
    write_report();
}

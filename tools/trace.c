/*
 * The preload library's time series (see trace.h). A thread of its own samples the
 * counters and the resident set; its period grows with the run, from 10 ms to at most
 * 10 s (a thousandth of the time elapsed), so a short program still gets a detailed
 * curve and a long one does not fill the disk: about 7,000 rows for the first hour, then
 * 360 an hour.
 *
 * The file's descriptor is the program's to live with: it is moved to 512 or above (where
 * RLIMIT_NOFILE allows), clear of the low numbers a program takes or expects free, and
 * its identity (device and inode) is checked before each row. A program that closed it
 * (daemons close every descriptor past stderr) or put a file of its own on its number
 * never gets a row: the trace stops, with one line on stderr. Each row is checked and
 * written through a duplicate of its own, so that a file the program puts on the
 * descriptor's number in the meantime cannot get it; only a thread that closed that
 * duplicate's (unpublished) number between the check and the write and opened a file
 * exactly there could. Where the limit keeps the descriptor low, the duplicate is not
 * made (it would take a low number for a moment) and that window is the descriptor's.
 *
 * The machine's figures (trace.h) come from mmt_machine_read, which reads about ten small
 * files afresh each time (/proc/self/cgroup, the cgroup's, PSI's, /proc/meminfo). Timed
 * in the sampler on the test machine (cgroup v1, PSI), a sample that reads it takes
 * 190-260 us against 60-85 us for one that does not, whether the program sleeps or
 * allocates: read at every 10 ms sample, it would make each sample three times dearer.
 * The program itself did not run measurably slower (CPython allocating, 9 runs each: 2%
 * apart in the median, within the machine's noise), but the sampler reads the machine at
 * most every MACHINE_PERIOD and repeats the last reading in between; once the period
 * reaches 100 ms (after 100 s) every sample reads it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sys.h"
#include "fd.h"
#include "trace.h"
#include "utf8.h"

#define MIN_PERIOD 0.010
#define MAX_PERIOD 10.0
#define MACHINE_PERIOD 0.100


/* Set once by mmt__trace_start, from the preload library's constructor, before the
 * sampler or any thread of the program exists; only read after that. */
static pid_t trace_pid; /* a forked copy writes nothing (nor takes the lock, which the
                         * parent's sampler may have held at the fork) */
static double start_time;

/* write_lock protects: trace (its fd -1 once the trace stopped), closed and machine_fields.
 * Set before the sampler starts. */
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;
static mmt__own_fd_t trace = {.fd = -1};
static bool closed; /* the exit row is written: no row follows it */
/* The end of every row: the latest reading of the machine, as ",current,limit,some10,
 * full10,available" (trace.h). */
static char machine_fields[5 * 24];

/* When the sampler last read the machine (the sampler only, after mmt__trace_start). */
static double machine_read_at;

/* The sampler sleeps on `wake` until its next sample or until `stopping`; sleep_lock
 * protects `stopping`. `wake`, `sampler` and `sampler_started` are set once by
 * mmt__trace_start, as above. */
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake;
static bool stopping;
static bool sampler_started;
static pthread_t sampler;

/* The program closed or replaced the descriptor: the trace stops, said once. Called with
 * write_lock held; writes with write(2), as it may run inside an allocation. */
static void gone(void)
{
    mmt__say("mmt: the trace's descriptor %d was closed or replaced by the program; the trace "
             "stops here", trace.fd);
    trace.fd = -1;
    /* The sampler has nothing left to do (it never holds sleep_lock while writing). */
    pthread_mutex_lock(&sleep_lock);
    stopping = true;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&sleep_lock);
}

/* Appends `name` to row[*n..] as the CSV field trace.h describes. The row has room for
 * it: at most two bytes of output per byte of the cleaned name, and two quotes. */
static void put_rule(char *row, size_t *n, const char *name)
{
    char clean[MMT_TRACE_RULE_MAX + 1];
    bool cut;
    mmt__utf8_clean(name, clean, MMT_TRACE_RULE_MAX, 0, &cut);
    bool quoted = strpbrk(clean, ",\"\r\n") != NULL;
    if (quoted) row[(*n)++] = '"';
    for (const char *c = clean; *c; c++) {
        if (*c == '"') row[(*n)++] = '"';
        row[(*n)++] = *c;
    }
    if (quoted) row[(*n)++] = '"';
}

/* Reads the machine into `out` as the end of a row (machine_fields), with an empty field
 * for each figure it does not have. Reads files and allocates nothing, but takes about
 * 24 KiB of stack (mmt_machine_read): called on the sampler's thread and from the
 * library's constructor, never for a row written on one of the program's threads, which
 * may run on a small stack (a thread's own, a signal handler's that calls _exit). */
static void read_machine(char *out, size_t len)
{
    mmt_machine_t mm;
    mmt_machine_read(&mm, MMT_MACHINE_ALL);
    char current[24] = "", limit[24] = "", some[16] = "", full[16] = "", available[24] = "";
    if (mm.cgroup.version) {
        snprintf(current, sizeof current, "%" PRIu64, mm.cgroup.current);
        if (mm.cgroup.limit != MMT_UNLIMITED)
            snprintf(limit, sizeof limit, "%" PRIu64, mm.cgroup.limit);
    }
    if (mm.psi.valid) {
        snprintf(some, sizeof some, "%.2f", mm.psi.some10);
        snprintf(full, sizeof full, "%.2f", mm.psi.full10);
    }
    if (mm.system.available) snprintf(available, sizeof available, "%" PRIu64, mm.system.available);
    snprintf(out, len, ",%s,%s,%s,%s,%s", current, limit, some, full, available);
}

/* Writes a row unless the exit row was written; `last` marks the exit row. `machine` is a
 * fresh reading of the machine (read_machine) that becomes the latest, or NULL for the
 * latest as it is. */
static void write_row(const mmt_meminfo_t *m, const char *event, const char *rule, bool last,
                      const char *machine)
{
    /* Seven numbers of at most 20 digits (the time, at most 17 with its decimals for 3000
     * years), seven commas, the event; the rule, the machine's fields and the newline. */
    char row[8 * 22 + 16 + 2 * MMT_TRACE_RULE_MAX + 3 + sizeof machine_fields];
    if (getpid() != trace_pid) return;
    uint64_t rss = (uint64_t)mmt__read_rss();
    /* The time is taken under the lock: rows go out in the order of their times, whichever
     * threads write them (a thread stopped between its clock and the write would put an
     * older time after a newer one). */
    pthread_mutex_lock(&write_lock);
    int len = snprintf(row, sizeof row,
                       "%.6f,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64
                       ",%s,",
                       mmt__now() - start_time, m->in_use, rss, m->allocated, m->freed, m->peak,
                       m->allocations, event);
    if (len < 0 || (size_t)len + 2 * MMT_TRACE_RULE_MAX + 3 + sizeof machine_fields > sizeof row) {
        pthread_mutex_unlock(&write_lock);
        return; /* see above */
    }
    size_t n = (size_t)len;
    put_rule(row, &n, rule);
    if (machine) snprintf(machine_fields, sizeof machine_fields, "%s", machine);
    size_t k = strlen(machine_fields);
    memcpy(row + n, machine_fields, k);
    n += k;
    row[n++] = '\n';
    if (trace.fd >= 0 && !closed) {
        int fd = trace.fd, copy = -1;
        if (trace.fd >= MMT__HIGH_FD && (copy = fcntl(trace.fd, F_DUPFD_CLOEXEC, trace.fd + 1)) >= 0)
            fd = copy; /* if none can be had (EMFILE, EBADF), fstat below decides on trace.fd */
        struct stat st;
        if (fstat(fd, &st) != 0 || st.st_dev != trace.dev || st.st_ino != trace.ino) {
            gone();
        } else {
            ssize_t w = write(fd, row, n);
            (void)w; /* a full disk loses rows, not the program */
            closed = last;
        }
        if (copy >= 0) close(copy);
    }
    pthread_mutex_unlock(&write_lock);
}

/* A row of the counters as they are now; with `read`, the machine read afresh first. */
static void sample(const char *event, bool last, bool read)
{
    char machine[sizeof machine_fields];
    if (read) read_machine(machine, sizeof machine);
    mmt_meminfo_t m;
    mmt_meminfo(&m);
    write_row(&m, event, "", last, read ? machine : NULL);
}

static void *sampler_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&sleep_lock);
    while (!stopping) {
        pthread_mutex_unlock(&sleep_lock);
        bool read = mmt__now() - machine_read_at >= MACHINE_PERIOD;
        if (read) machine_read_at = mmt__now();
        sample("sample", false, read);
        double elapsed = mmt__now() - start_time;
        double period = elapsed / 1000;
        period = period < MIN_PERIOD ? MIN_PERIOD : period > MAX_PERIOD ? MAX_PERIOD : period;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        double t = (double)until.tv_sec + (double)until.tv_nsec * 1e-9 + period;
        until.tv_sec = (time_t)t;
        until.tv_nsec = (long)((t - (double)until.tv_sec) * 1e9);
        pthread_mutex_lock(&sleep_lock);
        while (!stopping && pthread_cond_timedwait(&wake, &sleep_lock, &until) != ETIMEDOUT) {
        }
    }
    pthread_mutex_unlock(&sleep_lock);
    return NULL;
}

int mmt__trace_start(const char *path)
{
    start_time = mmt__now();
    trace_pid = getpid();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    mmt__own_fd_t taken = mmt__fd_take(fd); /* moved out of the program's way (fd.h) */
    if (taken.fd < 0) {
        errno = EBADF;
        return -1;
    }
    trace = taken;
    static const char header[] = MMT_TRACE_HEADER "\n";
    ssize_t w = write(trace.fd, header, sizeof header - 1);
    (void)w;
    /* A first reading before any row, so that a rule event's row that comes before the
     * sampler's first sample carries one too. */
    read_machine(machine_fields, sizeof machine_fields);
    machine_read_at = mmt__now();

    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&wake, &attr);
    pthread_condattr_destroy(&attr);
    /* The program's signals are for the program's threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    sampler_started = pthread_create(&sampler, NULL, sampler_main, NULL) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!sampler_started) sample("sample", false, false); /* at least the first point */
    return 0;
}

void mmt__trace_event(const char *rule, int fired, const mmt_meminfo_t *m, void *ud)
{
    (void)ud;
    write_row(m, fired ? "fire" : "resolve", rule, false, NULL);
}

void mmt__trace_stop(void)
{
    pthread_mutex_lock(&write_lock);
    bool tracing = trace.fd >= 0;
    pthread_mutex_unlock(&write_lock);
    if (!tracing) return;
    sample("exit", true, false);
    /* The sampler is told to stop but not waited for: _exit ends it with the process,
     * and a sample it takes from now on is dropped. */
    pthread_mutex_lock(&sleep_lock);
    stopping = true;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&sleep_lock);
}

/*
 * mmt-run: run a program under libmmtmem-preload.so with a policy, and say at the end what
 * it did with memory.
 *
 *   mmt-run [--policy FILE] [--interval MS] [--report text|json|prometheus] [--out FILE]
 *           [--trace FILE.csv] [--svg FILE.svg] -- PROGRAM ARGS...
 *
 * The program's own output is untouched; the summary goes to stderr or --out. mmt-run
 * exits with the program's status; if the program dies of a signal it says so and exits
 * as shells do, with 128 + the signal number. --trace keeps the time series (CSV, see
 * trace.h); --svg draws it (plot.h).
 *
 * The library is looked for beside mmt-run (a build tree), then in ../lib/mmtmem/ (an
 * install), unless MMT_PRELOAD_LIB names it; the default policy, report.lua, in the
 * build tree's policies/ or in ../share/mmtmem/policies/.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mmt/memory.h"
#include "plot.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: mmt-run [--policy FILE] [--interval MS] [--report text|json|prometheus]\n"
            "               [--out FILE] [--trace FILE.csv] [--svg FILE.svg] -- PROGRAM ARGS...\n");
    exit(2);
}

/* The first of `candidates` (relative to mmt-run's folder) that exists, as a full path. */
static char *find_beside_me(const char *const *candidates, char *buf, size_t len)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    for (const char *const *c = candidates; *c; c++) {
        snprintf(buf, len, "%s/%s", exe, *c);
        char *real = realpath(buf, NULL);
        if (real) {
            snprintf(buf, len, "%s", real);
            free(real);
            return buf;
        }
    }
    return NULL;
}

/* `path` made absolute against the current folder (the program may change folder before
 * the library opens it); `path` itself if it is absolute or too long. */
static const char *absolute(const char *path, char *buf, size_t len)
{
    char cwd[PATH_MAX];
    if (!path || path[0] == '/' || !getcwd(cwd, sizeof cwd)) return path;
    int n = snprintf(buf, len, "%s/%s", cwd, path);
    return n > 0 && (size_t)n < len ? buf : path;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The counters the library wrote in JSON at the program's exit; false if there are none
 * (the program died of a signal, or called _exit). */
static bool read_report(const char *path, mmt_meminfo_t *m)
{
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char buf[2048];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return sscanf(buf,
                  "{\"allocated\":%" SCNu64 ",\"freed\":%" SCNu64 ",\"in_use\":%" SCNu64
                  ",\"peak\":%" SCNu64 ",\"allocations\":%" SCNu64 ",\"frees\":%" SCNu64
                  ",\"reallocs\":%" SCNu64,
                  &m->allocated, &m->freed, &m->in_use, &m->peak, &m->allocations, &m->frees,
                  &m->reallocs) == 7;
}

static void summary(FILE *out, const char *format, const char *program, const mmt_meminfo_t *m,
                    double seconds)
{
    if (strcmp(format, "json") == 0) {
        fprintf(out,
                "{\"program\":\"%s\",\"allocated\":%" PRIu64 ",\"freed\":%" PRIu64
                ",\"peak\":%" PRIu64 ",\"in_use_at_exit\":%" PRIu64 ",\"allocations\":%" PRIu64
                ",\"frees\":%" PRIu64 ",\"run_time_seconds\":%.3f}\n",
                program, m->allocated, m->freed, m->peak, m->in_use, m->allocations, m->frees,
                seconds);
    } else if (strcmp(format, "prometheus") == 0) {
        fprintf(out,
                "# HELP mmt_allocated_bytes_total Bytes ever allocated.\n"
                "# TYPE mmt_allocated_bytes_total counter\nmmt_allocated_bytes_total %" PRIu64 "\n"
                "# HELP mmt_freed_bytes_total Bytes ever freed.\n"
                "# TYPE mmt_freed_bytes_total counter\nmmt_freed_bytes_total %" PRIu64 "\n"
                "# HELP mmt_peak_bytes Highest number of bytes in use seen.\n"
                "# TYPE mmt_peak_bytes gauge\nmmt_peak_bytes %" PRIu64 "\n"
                "# HELP mmt_in_use_at_exit_bytes Bytes still allocated at exit.\n"
                "# TYPE mmt_in_use_at_exit_bytes gauge\nmmt_in_use_at_exit_bytes %" PRIu64 "\n"
                "# HELP mmt_allocations_total Successful allocation calls.\n"
                "# TYPE mmt_allocations_total counter\nmmt_allocations_total %" PRIu64 "\n"
                "# HELP mmt_run_time_seconds How long the program ran.\n"
                "# TYPE mmt_run_time_seconds gauge\nmmt_run_time_seconds %.3f\n",
                m->allocated, m->freed, m->peak, m->in_use, m->allocations, seconds);
    } else {
        fprintf(out,
                "mmt-run: %s: allocated %" PRIu64 " B, freed %" PRIu64 " B, peak %" PRIu64
                " B, in use at exit %" PRIu64 " B (not freed), %" PRIu64
                " allocations, ran %.3f s\n",
                program, m->allocated, m->freed, m->peak, m->in_use, m->allocations, seconds);
    }
}

int main(int argc, char **argv)
{
    const char *policy = NULL, *interval = "1000", *format = "text", *out_path = NULL;
    const char *trace_path = NULL, *svg_path = NULL;
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (i + 1 >= argc) usage();
        if (strcmp(argv[i], "--policy") == 0) policy = argv[++i];
        else if (strcmp(argv[i], "--interval") == 0) interval = argv[++i];
        else if (strcmp(argv[i], "--report") == 0) format = argv[++i];
        else if (strcmp(argv[i], "--out") == 0) out_path = argv[++i];
        else if (strcmp(argv[i], "--trace") == 0) trace_path = argv[++i];
        else if (strcmp(argv[i], "--svg") == 0) svg_path = argv[++i];
        else usage();
    }
    if (i >= argc) usage();
    if (strcmp(format, "text") && strcmp(format, "json") && strcmp(format, "prometheus")) {
        fprintf(stderr, "mmt-run: --report is text, json or prometheus, not \"%s\"\n", format);
        return 2;
    }
    char *end;
    strtoul(interval, &end, 10);
    if (*end || !*interval) {
        fprintf(stderr, "mmt-run: --interval wants milliseconds, not \"%s\"\n", interval);
        return 2;
    }

    char lib[PATH_MAX + 64], pol[PATH_MAX + 64];
    static const char *const libs[] = {"libmmtmem-preload.so", "../lib/mmtmem/libmmtmem-preload.so",
                                       NULL};
    static const char *const pols[] = {"../../policies/report.lua",    /* build/<config>/ */
                                       "../../../policies/report.lua", /* build/<variant>/<config>/ */
                                       "../share/mmtmem/policies/report.lua", NULL};
    const char *library = getenv("MMT_PRELOAD_LIB");
    if (!library) library = find_beside_me(libs, lib, sizeof lib);
    if (!library) {
        fprintf(stderr, "mmt-run: cannot find libmmtmem-preload.so (set MMT_PRELOAD_LIB)\n");
        return 2;
    }
    if (!policy) policy = find_beside_me(pols, pol, sizeof pol);
    if (!policy) fprintf(stderr, "mmt-run: no default policy found; counting only\n");
    char policy_abs[PATH_MAX + 64], trace_abs[PATH_MAX + 64];
    policy = absolute(policy, policy_abs, sizeof policy_abs);
    trace_path = absolute(trace_path, trace_abs, sizeof trace_abs);

    char report[] = "/tmp/mmt-run-XXXXXX";
    int fd = mkstemp(report);
    if (fd < 0) {
        fprintf(stderr, "mmt-run: cannot make a temporary file: %s\n", strerror(errno));
        return 2;
    }
    close(fd);
    /* --svg without --trace: the series goes to a temporary file. */
    char temp_trace[] = "/tmp/mmt-trace-XXXXXX";
    if (svg_path && !trace_path) {
        fd = mkstemp(temp_trace);
        if (fd < 0) {
            fprintf(stderr, "mmt-run: cannot make a temporary file: %s\n", strerror(errno));
            unlink(report);
            return 2;
        }
        close(fd);
        trace_path = temp_trace;
    }

    /* A pipe closed by a successful exec: the child writes errno into it if exec fails. */
    int exec_pipe[2];
    if (pipe2(exec_pipe, O_CLOEXEC) != 0) {
        fprintf(stderr, "mmt-run: cannot make a pipe: %s\n", strerror(errno));
        return 2;
    }
    double start = now();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "mmt-run: cannot fork: %s\n", strerror(errno));
        return 2;
    }
    if (pid == 0) {
        close(exec_pipe[0]);
        char id[32];
        snprintf(id, sizeof id, "%ld", (long)getpid()); /* exec keeps it */
        setenv("LD_PRELOAD", library, 1);
        setenv("MMT_REPORT", "json", 1);
        setenv("MMT_OUT", report, 1);
        setenv("MMT_REPORT_PID", id, 1);
        setenv("MMT_INTERVAL", interval, 1);
        if (policy) setenv("MMT_POLICY", policy, 1);
        if (trace_path) setenv("MMT_TRACE", trace_path, 1);
        execvp(argv[i], argv + i);
        int e = errno;
        ssize_t w = write(exec_pipe[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    close(exec_pipe[1]);
    int exec_errno = 0;
    ssize_t got = read(exec_pipe[0], &exec_errno, sizeof exec_errno);
    close(exec_pipe[0]);
    /* Signals meant for the program reach it from the terminal; mmt-run waits them out. */
    signal(SIGINT, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    double seconds = now() - start;
    if (got == (ssize_t)sizeof exec_errno) {
        fprintf(stderr, "mmt-run: cannot run %s: %s\n", argv[i], strerror(exec_errno));
        unlink(report);
        if (trace_path == temp_trace) unlink(temp_trace);
        return exec_errno == ENOENT ? 127 : 126; /* as shells do */
    }

    FILE *out = out_path ? fopen(out_path, "w") : stderr;
    if (!out) {
        fprintf(stderr, "mmt-run: cannot write %s: %s\n", out_path, strerror(errno));
        out = stderr;
    }
    mmt_meminfo_t m;
    if (read_report(report, &m)) summary(out, format, argv[i], &m, seconds);
    else if (!WIFSIGNALED(status))
        fprintf(stderr, "mmt-run: %s left no report (it exited without running exit handlers)\n",
                argv[i]);
    if (out != stderr) fclose(out);
    unlink(report);
    if (svg_path) {
        char err[512], title[80] = "";
        for (int a = i; a < argc; a++) { /* the command line, shortened to fit a title */
            size_t len = strlen(title);
            snprintf(title + len, sizeof title - len, "%s%s", a > i ? " " : "", argv[a]);
        }
        for (char *c = title; *c; c++)
            if ((unsigned char)*c < ' ') *c = ' ';
        if (strlen(title) == sizeof title - 1) memcpy(title + sizeof title - 4, "...", 3);
        if (mmt__plot(trace_path, svg_path, title, err, sizeof err) != 0)
            fprintf(stderr, "mmt-run: no picture: %s\n", err);
    }
    if (trace_path == temp_trace) unlink(temp_trace);

    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        fprintf(stderr, "mmt-run: %s was killed by signal %d (%s)\n", argv[i], sig, strsignal(sig));
        return 128 + sig;
    }
    return WEXITSTATUS(status);
}

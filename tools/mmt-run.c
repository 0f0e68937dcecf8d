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
 * trace.h); --svg draws it (plot.h). Its temporary files (the report, and the trace for
 * --svg alone) go to $TMPDIR, or /tmp when that is unset or empty.
 *
 * Signals: SIGTERM, SIGINT, SIGHUP and SIGQUIT sent to mmt-run by a process (kill,
 * docker stop, systemd, a supervisor) are passed on to the program, and mmt-run waits for
 * it, cleans up and exits as it did. The same signals from the kernel (the terminal's ^C,
 * ^\ or hang-up) are not: the kernel sent them to the whole foreground process group,
 * the program included. A signal mmt-run was started with ignored (nohup, a background
 * job) stays ignored, for mmt-run and for the program. Should mmt-run itself be killed
 * (SIGKILL, which cannot be caught), the kernel sends the program SIGTERM (the parent-death
 * signal, set before the exec): the program is not left running without it. SIGTERM and
 * not SIGKILL, so that the program can end as it does under a supervisor's stop. The
 * kernel clears that signal when the program is set-user-ID or has file capabilities.
 * Only the program itself gets the signals, not processes it starts, as when it runs
 * without mmt-run. mmt-run itself takes SIGCHLD as the default (ignored, the kernel would
 * reap the program before mmt-run could wait for it) and ignores SIGPIPE (a reader of its
 * stderr gone must not end it before it removes its files); the program gets both as
 * mmt-run was given them.
 *
 * The library is looked for beside mmt-run (a build tree), then in ../lib/mmtmem/ (an
 * install), unless MMT_PRELOAD_LIB names it; the default policy, report.lua, in the
 * build tree's policies/ or in ../share/mmtmem/policies/. mmt-run loads the policy once
 * itself, with the engine of the static library, before it starts the program: one that
 * does not load is said once and mmt-run exits with 2, rather than every process of the
 * program's tree saying it and counting without it.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "fd.h" /* mmt__file_kind */
#include "mmt/memory.h"
#include "mmt/policy.h"
#include "plot.h"
#include "utf8.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: mmt-run [--policy FILE] [--interval MS] [--report text|json|prometheus]\n"
            "               [--out FILE] [--trace FILE.csv] [--svg FILE.svg] -- PROGRAM ARGS...\n");
    exit(2);
}

/* The longest timer period --interval and MMT_INTERVAL take: a day, in milliseconds. */
#define MAX_INTERVAL_MS 86400000ul

/* `text` as a decimal number from 0 to `max`: digits only, no sign, space or base prefix
 * (strtoul takes all three, and wraps a negative number round). */
static bool parse_decimal(const char *text, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;
    if (!*text) return false;
    for (const char *c = text; *c; c++) {
        if (*c < '0' || *c > '9') return false;
        unsigned long digit = (unsigned long)(*c - '0');
        if (v > (max - digit) / 10) return false;
        v = v * 10 + digit;
    }
    *out = v;
    return true;
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


static void no_log(int level, const char *message, void *ud)
{
    (void)level;
    (void)message;
    (void)ud;
}

/* Loads the policy at `path` (given as `label`, e.g. "--policy") into an engine of its own
 * with no timer and no watch, and frees it. A file that is not a regular one is refused
 * unopened: a FIFO would block the load. Returns 0, or -1 having said why on stderr. */
static int check_policy(const char *label, const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        fprintf(stderr, "mmt-run: %s %s: not a regular file but %s\n", label, path,
                mmt__file_kind(st.st_mode));
        return -1;
    }
    mmt_policy_options_t options = {.interval_ms = 0, .watch = 0};
    mmt_policy_t *engine = mmt_policy_new(&options);
    if (!engine) {
        fprintf(stderr, "mmt-run: cannot start the policy engine to load %s\n", path);
        return -1;
    }
    mmt_policy_set_log(engine, no_log, NULL); /* the load error is said below, once */
    int rc = 0;
    if (mmt_policy_load(engine, path) != 0) {
        fprintf(stderr, "mmt-run: %s %s: %s\n", label, path, mmt_policy_error(engine));
        rc = -1;
    }
    mmt_policy_free(engine);
    return rc;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- Temporary files and signals ------------------------------------------------------------ */

/* The report and the --svg trace in $TMPDIR ("" until made); set before the signal
 * handlers can run, and read by them to remove the files. */
static char report_path[PATH_MAX + 32];
static char temp_trace[PATH_MAX + 32];

/* The program's process id while signals are passed on to it: set before they are
 * unblocked, cleared with them blocked once the program has ended and before it is
 * reaped, so that a signal never goes to a process id reused by another. */
static volatile sig_atomic_t program_pid;

static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT};
enum { NFORWARDED = sizeof forwarded / sizeof forwarded[0] };

/* Signals mmt-run sets for itself alone (see the top of the file). */
static const int own[] = {SIGCHLD, SIGPIPE};
enum { NOWN = sizeof own / sizeof own[0] };

/* What each signal did when mmt-run started (this thread only: main, before the fork),
 * given back to the program before its exec. */
static struct sigaction inherited[NFORWARDED], inherited_own[NOWN];

/* Called from the handler, or by main with the signals blocked: never both at once. */
static void remove_temporary_files(void)
{
    if (report_path[0]) unlink(report_path);
    if (temp_trace[0]) unlink(temp_trace);
    report_path[0] = temp_trace[0] = '\0';
}

static void on_signal(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    int saved = errno;
    pid_t pid = program_pid;
    if (pid > 0) {
        /* si_code <= 0: sent by a process (SI_USER from kill, SI_QUEUE, SI_TKILL). */
        if (si->si_code <= 0) kill(pid, sig);
        errno = saved;
        return;
    }
    /* The program has ended and mmt-run is writing the summary or the picture: it stops
     * there, as the signal asks, without leaving files behind. */
    remove_temporary_files();
    signal(sig, SIG_DFL);
    raise(sig); /* delivered when the handler returns */
    _exit(128 + sig); /* as PID 1, where the kernel ignores it */
}

static void forwarded_set(sigset_t *set)
{
    sigemptyset(set);
    for (int i = 0; i < NFORWARDED; i++) sigaddset(set, forwarded[i]);
}

/* Catches the signals to pass on, except those mmt-run was started with ignored, and sets
 * its own. Called with the former blocked. */
static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    forwarded_set(&sa.sa_mask);
    for (int i = 0; i < NFORWARDED; i++) {
        sigaction(forwarded[i], NULL, &inherited[i]);
        if (inherited[i].sa_handler != SIG_IGN) sigaction(forwarded[i], &sa, NULL);
    }
    for (int i = 0; i < NOWN; i++) {
        sigaction(own[i], NULL, &inherited_own[i]);
        signal(own[i], own[i] == SIGPIPE ? SIG_IGN : SIG_DFL);
    }
}

/* In the program's process before the exec: the dispositions mmt-run was given. */
static void restore_signals(void)
{
    for (int i = 0; i < NFORWARDED; i++) sigaction(forwarded[i], &inherited[i], NULL);
    for (int i = 0; i < NOWN; i++) sigaction(own[i], &inherited_own[i], NULL);
}

/* Makes an empty file from `name` (a mkstemp template) in `dir` into `path`. Returns 0, or
 * -1 having said why. */
static int make_temporary(char *path, size_t len, const char *dir, bool from_env, const char *name)
{
    int n = snprintf(path, len, "%s/%s", dir, name);
    int fd = n > 0 && (size_t)n < len ? mkstemp(path) : (errno = ENAMETOOLONG, -1);
    if (fd < 0) {
        fprintf(stderr, "mmt-run: cannot make a temporary file in %s%s: %s\n", dir,
                from_env ? " (TMPDIR)" : "", strerror(errno));
        path[0] = '\0';
        return -1;
    }
    close(fd);
    return 0;
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

/* ---- A program the library did not enter -------------------------------------------------- */

/* The file execvp runs for `name`, into buf: `name` itself if it holds a slash, else the
 * first executable regular file of that name in a folder of $PATH ("/bin:/usr/bin" if
 * unset, as glibc has it; an empty entry is the current folder). False if there is none. */
static bool resolve_program(const char *name, char *buf, size_t len)
{
    if (strchr(name, '/')) return snprintf(buf, len, "%s", name) < (int)len;
    const char *path = getenv("PATH");
    if (!path) path = "/bin:/usr/bin";
    for (const char *dir = path;;) {
        const char *end = strchrnul(dir, ':');
        int n = end == dir ? snprintf(buf, len, "%s", name)
                           : snprintf(buf, len, "%.*s/%s", (int)(end - dir), dir, name);
        struct stat st;
        if (n > 0 && (size_t)n < len && stat(buf, &st) == 0 && S_ISREG(st.st_mode) &&
            access(buf, X_OK) == 0)
            return true;
        if (!*end) return false;
        dir = end + 1;
    }
}

/* Whether the ELF file open at `fd` has no program interpreter (PT_INTERP): the kernel
 * starts it without the dynamic loader. False if it is not an ELF file of this machine's
 * byte order. */
static bool elf_without_interpreter(int fd)
{
    unsigned char ident[EI_NIDENT];
    if (pread(fd, ident, sizeof ident, 0) != (ssize_t)sizeof ident ||
        memcmp(ident, ELFMAG, SELFMAG) != 0)
        return false;
    static const unsigned short one = 1;
    int native = *(const unsigned char *)&one ? ELFDATA2LSB : ELFDATA2MSB;
    if (ident[EI_DATA] != native) return false;
    uint64_t phoff, phentsize, phnum;
    if (ident[EI_CLASS] == ELFCLASS64) {
        Elf64_Ehdr h;
        if (pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h) return false;
        phoff = h.e_phoff, phentsize = h.e_phentsize, phnum = h.e_phnum;
        if (phentsize < sizeof(Elf64_Phdr)) return false;
    } else if (ident[EI_CLASS] == ELFCLASS32) {
        Elf32_Ehdr h;
        if (pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h) return false;
        phoff = h.e_phoff, phentsize = h.e_phentsize, phnum = h.e_phnum;
        if (phentsize < sizeof(Elf32_Phdr)) return false;
    } else {
        return false;
    }
    for (uint64_t k = 0; k < phnum; k++) {
        uint32_t type; /* p_type comes first in both classes */
        if (pread(fd, &type, sizeof type, (off_t)(phoff + k * phentsize)) != (ssize_t)sizeof type)
            return false;
        if (type == PT_INTERP) return false;
    }
    return true;
}

/* Why the loader would not have put the library into the program at `path`, as the end of
 * a sentence whose subject is the file; NULL if nothing in the file says. The text may be
 * in a static buffer (main's thread only). */
static const char *why_not_loaded(const char *path, int depth)
{
    static char script[PATH_MAX + 160];
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return NULL;
    }
    const char *why = NULL;
    char head[PATH_MAX + 2];
    ssize_t n = pread(fd, head, sizeof head - 1, 0);
    if (elf_without_interpreter(fd)) {
        why = "is statically linked, and LD_PRELOAD works only through the dynamic loader";
    } else if ((st.st_mode & S_ISUID) && st.st_uid != getuid()) {
        /* The loader's secure mode (AT_SECURE): the credentials change at the exec. */
        why = "is set-user-ID, and the loader ignores LD_PRELOAD for such a program";
    } else if ((st.st_mode & S_ISGID) && st.st_gid != getgid()) {
        why = "is set-group-ID, and the loader ignores LD_PRELOAD for such a program";
    } else if (getuid() != 0 && fgetxattr(fd, "security.capability", NULL, 0) > 0) {
        /* Secure mode too (ping has cap_net_raw), except for root, who gains nothing. */
        why = "has file capabilities, and the loader ignores LD_PRELOAD for such a program";
    } else if (depth == 0 && n > 2 && head[0] == '#' && head[1] == '!') {
        /* A script: what the kernel runs is its interpreter. */
        head[n] = '\0';
        char *interp = head + 2 + strspn(head + 2, " \t");
        interp[strcspn(interp, " \t\n")] = '\0';
        const char *inner = *interp ? why_not_loaded(interp, 1) : NULL;
        if (inner) {
            snprintf(script, sizeof script, "is a script for %s, which %s", interp, inner);
            why = script;
        }
    }
    close(fd);
    return why;
}

/* Says that the library never entered the program `name`, and why if the program's file
 * tells; with `quiet_unless_known`, only if it tells. */
static void say_not_loaded(const char *name, bool quiet_unless_known)
{
    char path[PATH_MAX];
    const char *why = resolve_program(name, path, sizeof path) ? why_not_loaded(path, 0) : NULL;
    if (why)
        fprintf(stderr, "mmt-run: %s: the preload library was not loaded: %s %s; nothing was "
                        "counted\n", name, path, why);
    else if (!quiet_unless_known)
        fprintf(stderr, "mmt-run: %s: the preload library was not loaded (the loader ignored "
                        "LD_PRELOAD, or the program was started without it); nothing was "
                        "counted\n", name);
}

/* Writes `s` as a JSON string, quotes included: quote and backslash escaped, control
 * characters as \u00XX, bytes that are not UTF-8 as \ufffd, so that a strict parser reads
 * it whatever the bytes (a program's name is any bytes but NUL and slash). */
static void put_json_string(FILE *out, const char *s)
{
    const unsigned char *c = (const unsigned char *)s;
    size_t len = strlen(s);
    fputc('"', out);
    while (len) {
        int32_t cp;
        size_t k = mmt__utf8_next(c, len, &cp);
        if (cp < 0) fputs("\\ufffd", out);
        else if (cp == '"' || cp == '\\') fprintf(out, "\\%c", (char)cp);
        else if (cp < 0x20) fprintf(out, "\\u%04x", (unsigned)cp);
        else fwrite(c, 1, k, out);
        c += k;
        len -= k;
    }
    fputc('"', out);
}

static void summary(FILE *out, const char *format, const char *program, const mmt_meminfo_t *m,
                    double seconds)
{
    if (strcmp(format, "json") == 0) {
        fputs("{\"program\":", out);
        put_json_string(out, program);
        fprintf(out,
                ",\"allocated\":%" PRIu64 ",\"freed\":%" PRIu64 ",\"peak\":%" PRIu64
                ",\"in_use_at_exit\":%" PRIu64 ",\"allocations\":%" PRIu64 ",\"frees\":%" PRIu64
                ",\"run_time_seconds\":%.3f}\n",
                m->allocated, m->freed, m->peak, m->in_use, m->allocations, m->frees, seconds);
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
    unsigned long interval_ms;
    if (!parse_decimal(interval, MAX_INTERVAL_MS, &interval_ms)) {
        fprintf(stderr, "mmt-run: --interval \"%s\": not a number of milliseconds from 0 to %lu\n",
                interval, MAX_INTERVAL_MS);
        return 2;
    }
    const struct {
        const char *option, *value;
    } paths[] = {{"--policy", policy}, {"--out", out_path}, {"--trace", trace_path}, {"--svg", svg_path}};
    for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++) {
        if (paths[p].value && !*paths[p].value) {
            fprintf(stderr, "mmt-run: %s \"\": the file name is empty\n", paths[p].option);
            return 2;
        }
    }

    char lib[PATH_MAX + 64], pol[PATH_MAX + 64];
    static const char *const libs[] = {"libmmtmem-preload.so", "../lib/mmtmem/libmmtmem-preload.so",
                                       NULL};
    static const char *const pols[] = {"../../policies/report.lua",    /* build/<config>/ */
                                       "../../../policies/report.lua", /* build/<variant>/<config>/ */
                                       "../share/mmtmem/policies/report.lua", NULL};
    const char *library = getenv("MMT_PRELOAD_LIB");
    if (library && *library) {
        if (access(library, R_OK) != 0) {
            fprintf(stderr, "mmt-run: MMT_PRELOAD_LIB=%s: %s\n", library, strerror(errno));
            return 2;
        }
        library = absolute(library, lib, sizeof lib); /* the program may change folder */
    } else {
        library = find_beside_me(libs, lib, sizeof lib);
    }
    if (!library) {
        fprintf(stderr, "mmt-run: cannot find libmmtmem-preload.so (set MMT_PRELOAD_LIB)\n");
        return 2;
    }
    const char *policy_label = "--policy";
    if (!policy) {
        policy = find_beside_me(pols, pol, sizeof pol);
        policy_label = "default policy";
    }
    if (!policy) fprintf(stderr, "mmt-run: no default policy found; counting only\n");
    if (policy && check_policy(policy_label, policy) != 0) return 2;
    char policy_abs[PATH_MAX + 64], trace_abs[PATH_MAX + 64];
    policy = absolute(policy, policy_abs, sizeof policy_abs);
    trace_path = absolute(trace_path, trace_abs, sizeof trace_abs);

    /* From here until the program runs, the signals to pass on are blocked: one that
     * comes meanwhile is passed on once there is a program to take it. */
    sigset_t passed, unblocked;
    forwarded_set(&passed);
    sigprocmask(SIG_BLOCK, &passed, &unblocked);
    catch_signals();

    /* Made absolute: the program may change folder before the library opens them. */
    const char *tmpdir = getenv("TMPDIR");
    bool tmpdir_from_env = tmpdir && *tmpdir;
    char tmpdir_abs[PATH_MAX + 64];
    tmpdir = absolute(tmpdir_from_env ? tmpdir : "/tmp", tmpdir_abs, sizeof tmpdir_abs);
    if (make_temporary(report_path, sizeof report_path, tmpdir, tmpdir_from_env,
                       "mmt-run-XXXXXX") != 0)
        return 2;
    /* --svg without --trace: the series goes to a temporary file. */
    if (svg_path && !trace_path) {
        if (make_temporary(temp_trace, sizeof temp_trace, tmpdir, tmpdir_from_env,
                           "mmt-trace-XXXXXX") != 0) {
            remove_temporary_files();
            return 2;
        }
        trace_path = temp_trace;
    }

    /* A pipe closed by a successful exec: the child writes errno into it if exec fails. */
    int exec_pipe[2];
    if (pipe2(exec_pipe, O_CLOEXEC) != 0) {
        fprintf(stderr, "mmt-run: cannot make a pipe: %s\n", strerror(errno));
        remove_temporary_files();
        return 2;
    }
    double start = now();
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "mmt-run: cannot fork: %s\n", strerror(errno));
        remove_temporary_files();
        return 2;
    }
    if (pid == 0) {
        close(exec_pipe[0]);
        /* The program gets the signal dispositions mmt-run was given, and SIGTERM should
         * mmt-run die first (checked after asking: it may have died already). */
        restore_signals();
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(128 + SIGTERM);
        sigprocmask(SIG_SETMASK, &unblocked, NULL);
        char id[32];
        snprintf(id, sizeof id, "%ld", (long)getpid()); /* exec keeps it */
        setenv("LD_PRELOAD", library, 1);
        setenv("MMT_REPORT", "json", 1);
        setenv("MMT_OUT", report_path, 1);
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
    program_pid = pid;
    sigprocmask(SIG_SETMASK, &unblocked, NULL);
    close(exec_pipe[1]);
    int exec_errno = 0;
    ssize_t got = read(exec_pipe[0], &exec_errno, sizeof exec_errno);
    close(exec_pipe[0]);
    /* Waited for without reaping, so that its id stays its own while signals may still be
     * passed on; then reaped with them blocked. */
    siginfo_t ended;
    while (waitid(P_PID, (id_t)pid, &ended, WEXITED | WNOWAIT) < 0 && errno == EINTR) {
    }
    sigprocmask(SIG_BLOCK, &passed, NULL);
    program_pid = 0;
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    sigprocmask(SIG_SETMASK, &unblocked, NULL);
    double seconds = now() - start;
    if (got == (ssize_t)sizeof exec_errno) {
        fprintf(stderr, "mmt-run: cannot run %s: %s\n", argv[i], strerror(exec_errno));
        sigprocmask(SIG_BLOCK, &passed, NULL);
        remove_temporary_files();
        return exec_errno == ENOENT ? 127 : 126; /* as shells do */
    }

    FILE *out = out_path ? fopen(out_path, "w") : stderr;
    if (!out) {
        fprintf(stderr, "mmt-run: cannot write %s: %s\n", out_path, strerror(errno));
        out = stderr;
    }
    mmt_meminfo_t m;
    struct stat report_st;
    if (read_report(report_path, &m)) summary(out, format, argv[i], &m, seconds);
    else if (stat(report_path, &report_st) == 0 && report_st.st_size == 0)
        /* Not even the library's start mark (preload.c): it was never loaded. A program
         * killed before the loader ran is not blamed on its file unless the file says. */
        say_not_loaded(argv[i], WIFSIGNALED(status));
    else if (!WIFSIGNALED(status))
        fprintf(stderr, "mmt-run: %s left no report (it exited without running exit handlers)\n",
                argv[i]);
    if (out != stderr) fclose(out);
    if (svg_path) {
        /* The command line: the picture cuts it to fit its title. */
        char err[512], title[1024] = "";
        for (int a = i; a < argc; a++) {
            size_t len = strlen(title);
            snprintf(title + len, sizeof title - len, "%s%s", a > i ? " " : "", argv[a]);
        }
        if (mmt__plot(trace_path, svg_path, title, err, sizeof err) != 0)
            fprintf(stderr, "mmt-run: no picture: %s\n", err);
    }
    sigprocmask(SIG_BLOCK, &passed, NULL); /* for good: only exiting is left */
    remove_temporary_files();

    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        fprintf(stderr, "mmt-run: %s was killed by signal %d (%s)\n", argv[i], sig, strsignal(sig));
        return 128 + sig;
    }
    return WEXITSTATUS(status);
}

/*
 * mmt-run: run a program under libmmtmem-preload.so with a policy, and say at the end what
 * it did with memory.
 *
 *   mmt-run [--policy FILE] [--interval MS] [--dry-run] [--report text|json|prometheus]
 *           [--out FILE] [--trace FILE.csv] [--svg FILE.svg] [--export FILE.prom [--every S]]
 *           -- PROGRAM ARGS...
 *
 * The program's own output is untouched; the summary goes to stderr or --out, and ends
 * with the machine around the program (machine_summary.h). mmt-run exits with the
 * program's status; if the program dies of a signal it says so and exits as shells do,
 * with 128 + the signal number. --trace keeps the time series (CSV, see trace.h); --svg
 * draws it (plot.h). --export has the program's process write a Prometheus textfile for
 * node_exporter while it runs, every --every seconds (default 15), and a last time as it
 * ends (policy.h, "The textfile"); its folder must exist. Its temporary files (the report,
 * and the trace for --svg alone) go to $TMPDIR, or /tmp when that is unset or empty.
 * --dry-run runs the policy as a dry run (policy.h): MMT_DRY_RUN=1 for the program, and
 * without it no MMT_DRY_RUN at all, whatever mmt-run's environment had, as for the other
 * MMT_ variables it sets. mmt-run registers no host actions, so without --dry-run a
 * policy's mmt.call is an error (no such action).
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
 * program's tree saying it and counting without it. That load is a dry run when the
 * program's is, so that it judges the file as the program will run it (a file whose own
 * run calls mmt.call loads only in a dry run), and with none it acts on nothing in mmt-run.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "fd.h" /* mmt__file_kind */
#include "fields.h"
#include "sys.h" /* mmt__now */
#include "mmt/memory.h"
#include "mmt/policy.h"
#include "machine_summary.h"
#include "plot.h"
#include "report_path.h"
#include "utf8.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: mmt-run [--policy FILE] [--interval MS] [--dry-run]\n"
            "               [--report text|json|prometheus] [--out FILE] [--trace FILE.csv]\n"
            "               [--svg FILE.svg] [--export FILE.prom [--every S]] -- PROGRAM ARGS...\n");
    exit(2);
}

/* The longest timer period --interval and MMT_INTERVAL take: a day, in milliseconds. */
#define MAX_INTERVAL_MS 86400000ul
/* The longest period of the textfile --every and MMT_EXPORT_EVERY take: a day. */
#define MAX_EXPORT_EVERY_S 86400ul

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
 * with no timer and no watch, a dry run if `dry_run`, and frees it. A file that is not a
 * regular one is refused unopened: a FIFO would block the load. Returns 0, or -1 having
 * said why on stderr. */
static int check_policy(const char *label, const char *path, bool dry_run)
{
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        fprintf(stderr, "mmt-run: %s %s: not a regular file but %s\n", label, path,
                mmt__file_kind(st.st_mode));
        return -1;
    }
    mmt_policy_options_t options = {.interval_ms = 0, .watch = 0, .dry_run = dry_run};
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

/* The folder --export names must be there: a name whose folder is missing is more likely
 * a slip than one made later (the library would say so in the program's stderr and try
 * again every period). node_exporter reads only names ending in .prom: another is said,
 * and taken. Returns 0, or -1 having said why on stderr. */
static int check_export(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    int n = !slash ? snprintf(dir, sizeof dir, ".")
            : slash == path ? snprintf(dir, sizeof dir, "/")
                            : snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    struct stat st;
    if (n < 0 || (size_t)n >= sizeof dir || stat(dir, &st) != 0) {
        fprintf(stderr, "mmt-run: --export %s: no folder %s: %s\n", path, dir,
                n < 0 || (size_t)n >= sizeof dir ? strerror(ENAMETOOLONG) : strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "mmt-run: --export %s: %s is not a folder but %s\n", path, dir,
                S_ISREG(st.st_mode) ? "a file" : mmt__file_kind(st.st_mode));
        return -1;
    }
    size_t len = strlen(path);
    if (len < 5 || strcmp(path + len - 5, ".prom") != 0)
        fprintf(stderr, "mmt-run: --export %s: node_exporter's textfile collector reads only "
                        "names ending in .prom\n", path);
    return 0;
}

/* ---- Temporary files and signals ------------------------------------------------------------ */

/* The folder of the processes' reports and the --svg trace in $TMPDIR ("" until made);
 * set before the signal handlers can run, and read by them to remove the files. */
static char report_dir[PATH_MAX + 32];
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

/* Empties and removes the report folder, with system calls only (a signal handler may do
 * it). A process of the tree still running may add a file meanwhile: a few passes. */
static void remove_report_dir(void)
{
    for (int pass = 0; pass < 4; pass++) {
        int dir = open(report_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (dir < 0) break;
        char buf[4096];
        long n;
        while ((n = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
            for (long at = 0; at < n;) {
                struct dirent64 *d = (struct dirent64 *)(buf + at);
                if (strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0 &&
                    unlinkat(dir, d->d_name, 0) != 0 && errno == EISDIR)
                    unlinkat(dir, d->d_name, AT_REMOVEDIR); /* a program's empty folder */
                at += d->d_reclen;
            }
        }
        close(dir);
        if (rmdir(report_dir) == 0 || errno != ENOTEMPTY) break;
    }
}

/* Called from the handler, or by main with the signals blocked: never both at once. */
static void remove_temporary_files(void)
{
    if (report_dir[0]) remove_report_dir();
    if (temp_trace[0]) unlink(temp_trace);
    report_dir[0] = temp_trace[0] = '\0';
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

/* ---- The processes' reports ---------------------------------------------------------- */

/* One process of the tree, from the report the library wrote into its own file
 * (preload.c): the start record alone if it ended without reporting. */
typedef struct proc {
    long pid, ppid;
    char comm[64], command[512], allocator[128];
    bool forked, reported;
    double start, seconds;
    uint64_t in_use_at_start;
    mmt_meminfo_t m; /* its counters (fields.h), found by their names */
} proc_t;

/* The report's fields, found by name. */
enum kind { INTEGER, REAL, COUNT, FLAG, TEXT };
static const struct report_field {
    const char *name;
    enum kind kind;
    size_t offset, size;
} report_fields[] = {
#define F(name, kind, member) {name, kind, offsetof(proc_t, member), sizeof((proc_t *)0)->member}
    F("pid", INTEGER, pid), F("ppid", INTEGER, ppid), F("comm", TEXT, comm),
    F("command", TEXT, command), F("allocator", TEXT, allocator), F("forked", FLAG, forked),
    F("start", REAL, start), F("run_time_seconds", REAL, seconds),
    F("in_use_at_start", COUNT, in_use_at_start),
#undef F
};

/* A JSON string at *c (past its opening quote) into out (len bytes), decoded; *c is left
 * past the closing quote. False if it is not one. */
static bool read_json_string(const char **c, char *out, size_t len)
{
    size_t at = 0;
    const char *p = *c;
    for (; *p && *p != '"'; p++) {
        char ch = *p;
        char utf8[4];
        size_t n = 1;
        if (ch == '\\') {
            ch = *++p;
            if (ch == 'u') {
                unsigned v = 0;
                for (int k = 1; k <= 4; k++) {
                    char h = p[k];
                    int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                          : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                    if (d < 0) return false; /* the NUL included: never read past it */
                    v = v << 4 | (unsigned)d;
                }
                p += 4;
                if (v < 0x80) utf8[0] = (char)v;
                else if (v < 0x800) utf8[0] = (char)(0xC0 | v >> 6), utf8[1] = (char)(0x80 | (v & 63)), n = 2;
                else utf8[0] = (char)(0xE0 | v >> 12), utf8[1] = (char)(0x80 | ((v >> 6) & 63)),
                     utf8[2] = (char)(0x80 | (v & 63)), n = 3;
            } else {
                utf8[0] = ch == 'n' ? '\n' : ch == 't' ? '\t' : ch == 'r' ? '\r' : ch;
                if (!ch) return false;
            }
        } else {
            utf8[0] = ch;
        }
        if (at + n < len) memcpy(out + at, utf8, n), at += n;
    }
    if (*p != '"') return false;
    out[at] = '\0';
    *c = p + 1;
    return true;
}

/* Reads one flat JSON object (the library's report) into *pr, by field name; fields it
 * does not know are skipped, so the library may add some. */
static bool read_process(const char *text, proc_t *pr)
{
    memset(pr, 0, sizeof *pr);
    const char *c = text + strspn(text, " \n");
    if (*c++ != '{') return false;
    for (;;) {
        c += strspn(c, " \n");
        char key[64];
        if (*c != '"' || !(++c, read_json_string(&c, key, sizeof key))) return false;
        c += strspn(c, " ");
        if (*c++ != ':') return false;
        c += strspn(c, " ");
        const struct report_field *f = NULL;
        struct report_field counter;
        for (size_t k = 0; k < sizeof report_fields / sizeof report_fields[0]; k++)
            if (strcmp(report_fields[k].name, key) == 0) f = &report_fields[k];
        for (int k = 0; !f && k < MMT__NFIELDS; k++) {
            if (strcmp(mmt__fields[k].name, key) != 0) continue;
            counter = (struct report_field){key, COUNT,
                                            offsetof(proc_t, m) + mmt__fields[k].offset, 8};
            f = &counter;
            pr->reported = true; /* the start record has no counters */
        }
        char *at = f ? (char *)pr + f->offset : NULL;
        if (*c == '"') {
            char value[512], *into = f && f->kind == TEXT ? at : value;
            c++;
            if (!read_json_string(&c, into, f && f->kind == TEXT ? f->size : sizeof value))
                return false;
        } else {
            /* Stored through memcpy: `at` is the member's address, as offsetof gives it. */
            bool flag = strncmp(c, "true", 4) == 0;
            uint64_t count = strtoull(c, NULL, 10);
            long integer = strtol(c, NULL, 10);
            double real = strtod(c, NULL);
            if (f && f->kind == FLAG) memcpy(at, &flag, sizeof flag);
            else if (f && f->kind == COUNT) memcpy(at, &count, sizeof count);
            else if (f && f->kind == INTEGER) memcpy(at, &integer, sizeof integer);
            else if (f && f->kind == REAL) memcpy(at, &real, sizeof real);
            c += strcspn(c, ",}");
        }
        c += strspn(c, " \n");
        if (*c == '}') return pr->pid > 0 && isfinite(pr->start) && isfinite(pr->seconds);
        if (*c++ != ',') return false;
    }
}

static int by_start(const void *a, const void *b)
{
    const proc_t *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return x->pid < y->pid ? -1 : x->pid > y->pid;
}

/* The reports in the report folder, in the order the processes started; *n of them. */
static proc_t *read_processes(size_t *n)
{
    *n = 0;
    DIR *dir = opendir(report_dir);
    if (!dir) return NULL;
    proc_t *all = NULL;
    size_t cap = 0;
    struct dirent *d;
    while ((d = readdir(dir))) {
        if (d->d_name[0] == '.') continue;
        /* Regular files only, not through a link: a process of the tree may have put a
         * FIFO there, which would block the read. */
        char text[8192];
        int fd = openat(dirfd(dir), d->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        struct stat st;
        if (fd < 0) continue;
        ssize_t len = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? read(fd, text, sizeof text - 1) : -1;
        close(fd);
        if (len < 0) continue;
        text[len] = '\0';
        proc_t pr;
        if (!read_process(text, &pr)) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            proc_t *grown = realloc(all, cap * sizeof *all);
            if (!grown) break;
            all = grown;
        }
        all[(*n)++] = pr;
    }
    closedir(dir);
    if (*n) qsort(all, *n, sizeof *all, by_start);
    return all;
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

/* ---- The summary ------------------------------------------------------------------------ */

/* Writes `s` as a JSON string (utf8.h). */
static void put_json_string(FILE *out, const char *s)
{
    char buf[6 * PATH_MAX + 3];
    mmt__json_string(buf, sizeof buf, s);
    fputs(buf, out);
}

/* Writes `s` for a person: a control character (a line break in a program's name could
 * forge a line of the summary) as '?', invalid UTF-8 as U+FFFD. */
static void put_text(FILE *out, const char *s)
{
    const unsigned char *c = (const unsigned char *)s;
    size_t len = strlen(s);
    while (len) {
        int32_t cp;
        size_t k = mmt__utf8_next(c, len, &cp);
        if (cp < 0) fputs(MMT_UTF8_REPLACEMENT, out);
        else if (cp < 0x20 || cp == 0x7f) fputc('?', out);
        else fwrite(c, 1, k, out);
        c += k;
        len -= k;
    }
}

/* Writes `s` as a Prometheus label value, quotes included: other control characters than
 * the line feed (which has an escape) as '?', since parsers read the text by lines and
 * take a carriage return for one end. */
static void put_label(FILE *out, const char *s)
{
    const unsigned char *c = (const unsigned char *)s;
    size_t len = strlen(s);
    fputc('"', out);
    while (len) {
        int32_t cp;
        size_t k = mmt__utf8_next(c, len, &cp);
        if (cp < 0) fputs(MMT_UTF8_REPLACEMENT, out);
        else if (cp == '\\') fputs("\\\\", out);
        else if (cp == '"') fputs("\\\"", out);
        else if (cp == '\n') fputs("\\n", out);
        else if (cp < 0x20 || cp == 0x7f) fputc('?', out);
        else fwrite(c, 1, k, out);
        c += k;
        len -= k;
    }
    fputc('"', out);
}

/* The summary's figures, for the whole tree and for each process: the counters (fields.h;
 * in_use is the one at exit), then in_use_at_start and the run time. */
typedef struct summary_field {
    char json[64], metric[96];
    const char *type, *help;
    int field;   /* its index in fields.h, or one of the two below */
} summary_field_t;
enum { IN_USE_AT_START = -1, RUN_TIME = -2, NSUMMARY = MMT__NFIELDS + 2 };

static summary_field_t summary_field(int k)
{
    summary_field_t f = {.field = k < MMT__NFIELDS ? k : k == MMT__NFIELDS ? IN_USE_AT_START : RUN_TIME};
    if (f.field == IN_USE_AT_START) {
        snprintf(f.json, sizeof f.json, "in_use_at_start");
        snprintf(f.metric, sizeof f.metric, "in_use_at_start_bytes");
        f.type = "gauge";
        f.help = "Bytes in use when the process started (a forked child's, inherited).";
    } else if (f.field == RUN_TIME) {
        snprintf(f.json, sizeof f.json, "run_time_seconds");
        snprintf(f.metric, sizeof f.metric, "run_time_seconds");
        f.type = "gauge";
        f.help = "How long it ran.";
    } else if (k == MMT__FIELD_in_use) {
        snprintf(f.json, sizeof f.json, "in_use_at_exit");
        snprintf(f.metric, sizeof f.metric, "in_use_at_exit_bytes");
        f.type = "gauge";
        f.help = "Bytes still allocated at exit.";
    } else {
        snprintf(f.json, sizeof f.json, "%s", mmt__fields[k].name);
        snprintf(f.metric, sizeof f.metric, "%s", mmt__fields[k].metric + strlen("mmt_"));
        f.type = mmt__fields[k].type;
        f.help = mmt__fields[k].help;
    }
    return f;
}

static void put_value(FILE *out, const proc_t *p, const summary_field_t *f)
{
    if (f->field == RUN_TIME) fprintf(out, "%.3f", p->seconds);
    else if (f->field == IN_USE_AT_START) fprintf(out, "%" PRIu64, p->in_use_at_start);
    else fprintf(out, "%" PRIu64, mmt__field_value(&p->m, f->field));
}

/* The tree's figures: sums over the processes that reported (peak and in_use at exit are
 * each process's own, summed: the tree never held them all at once, and a forked child's
 * include what it inherited). */
static proc_t tree_total(const proc_t *procs, size_t n, double seconds)
{
    proc_t t = {.seconds = seconds};
    for (size_t k = 0; k < n; k++) {
        if (!procs[k].reported) continue;
        t.in_use_at_start += procs[k].in_use_at_start;
        for (int i = 0; i < MMT__NFIELDS; i++)
            mmt__field_set(&t.m, i, mmt__field_value(&t.m, i) + mmt__field_value(&procs[k].m, i));
    }
    return t;
}

static void put_json_process(FILE *out, const proc_t *p)
{
    fprintf(out, "{\"pid\":%ld,\"ppid\":%ld,\"comm\":", p->pid, p->ppid);
    put_json_string(out, p->comm);
    fputs(",\"command\":", out);
    put_json_string(out, p->command);
    fprintf(out, ",\"forked\":%s,\"reported\":%s", p->forked ? "true" : "false",
            p->reported ? "true" : "false");
    if (p->reported) {
        fputs(",\"allocator\":", out);
        put_json_string(out, p->allocator);
        for (int k = 0; k < NSUMMARY; k++) {
            summary_field_t f = summary_field(k);
            fprintf(out, ",\"%s\":", f.json);
            put_value(out, p, &f);
        }
    }
    fputs("}", out);
}

static void put_text_process(FILE *out, const proc_t *p)
{
    fprintf(out, "mmt-run:   pid %ld, parent %ld%s: ", p->pid, p->ppid, p->forked ? ", forked" : "");
    put_text(out, p->command[0] ? p->command : p->comm);
    if (!p->reported) {
        fputs(": no report (it was killed, or was still running)\n", out);
        return;
    }
    fprintf(out, ": allocated %" PRIu64 " B, freed %" PRIu64 " B, peak %" PRIu64
                 " B, in use at exit %" PRIu64 " B, %" PRIu64 " allocations, ran %.3f s, on ",
            p->m.allocated, p->m.freed, p->m.peak, p->m.in_use, p->m.allocations, p->seconds);
    put_text(out, p->allocator);
    fputc('\n', out);
}

static void put_prometheus_process(FILE *out, const proc_t *p, const summary_field_t *f)
{
    fprintf(out, "mmt_process_%s{pid=\"%ld\",ppid=\"%ld\",comm=", f->metric, p->pid, p->ppid);
    put_label(out, p->comm);
    fputs("} ", out);
    put_value(out, p, f);
    fputc('\n', out);
}

/* The summary of the processes that reported, and of the whole tree, then of the machine
 * around them as `machine` has it. */
static void summary(FILE *out, const char *format, const char *program, const proc_t *procs,
                    size_t n, const proc_t *main_proc, double seconds,
                    const mmt_machine_t *machine)
{
    proc_t t = tree_total(procs, n, seconds);
    size_t reported = 0;
    for (size_t k = 0; k < n; k++) reported += procs[k].reported;
    const char *allocator = main_proc ? main_proc->allocator : "";
    if (strcmp(format, "json") == 0) {
        fputs("{\"program\":", out);
        put_json_string(out, program);
        fputs(",\"allocator\":", out);
        put_json_string(out, allocator);
        fprintf(out, ",\"processes_reported\":%zu", reported);
        for (int k = 0; k < NSUMMARY; k++) {
            summary_field_t f = summary_field(k);
            fprintf(out, ",\"%s\":", f.json);
            put_value(out, &t, &f);
        }
        mmt__machine_json(out, machine);
        fputs(",\"processes\":[", out);
        for (size_t k = 0; k < n; k++) {
            if (k) fputc(',', out);
            put_json_process(out, &procs[k]);
        }
        fputs("]}\n", out);
    } else if (strcmp(format, "prometheus") == 0) {
        for (int f = 0; f < NSUMMARY; f++) {
            summary_field_t sf = summary_field(f);
            fprintf(out, "# HELP mmt_%s %s (the tree)\n# TYPE mmt_%s %s\nmmt_%s ", sf.metric,
                    sf.help, sf.metric, sf.type, sf.metric);
            put_value(out, &t, &sf);
            fprintf(out, "\n# HELP mmt_process_%s %s\n# TYPE mmt_process_%s %s\n", sf.metric,
                    sf.help, sf.metric, sf.type);
            for (size_t k = 0; k < n; k++)
                if (procs[k].reported) put_prometheus_process(out, &procs[k], &sf);
        }
        fprintf(out, "# HELP mmt_processes_reported Processes of the tree that reported.\n"
                     "# TYPE mmt_processes_reported gauge\nmmt_processes_reported %zu\n", reported);
        mmt__machine_prometheus(out, machine);
    } else {
        fputs("mmt-run: ", out);
        put_text(out, program);
        if (reported > 1) fprintf(out, ": %zu processes", reported);
        fprintf(out, ": allocated %" PRIu64 " B, freed %" PRIu64 " B, peak %" PRIu64 " B%s, in use at "
                     "exit %" PRIu64 " B (not freed), %" PRIu64 " allocations, ran %.3f s\n",
                t.m.allocated, t.m.freed, t.m.peak, reported > 1 ? " (their peaks summed)" : "",
                t.m.in_use, t.m.allocations, seconds);
        for (size_t k = 0; k < n; k++) put_text_process(out, &procs[k]);
        mmt__machine_text(out, machine);
    }
}

/* --out with %p: each process's summary in a file of its own, named with its id. */
static void summary_per_process(const char *pattern, const char *format, const proc_t *procs,
                                size_t n)
{
    for (size_t k = 0; k < n; k++) {
        char path[PATH_MAX + 64];
        if (!mmt__expand_pid(pattern, procs[k].pid, path, sizeof path)) {
            fprintf(stderr, "mmt-run: --out %s: too long a name for process %ld\n", pattern,
                    procs[k].pid);
            continue;
        }
        FILE *out = fopen(path, "w");
        if (!out) {
            fprintf(stderr, "mmt-run: cannot write %s: %s\n", path, strerror(errno));
            continue;
        }
        if (strcmp(format, "json") == 0) {
            put_json_process(out, &procs[k]);
            fputc('\n', out);
        } else if (strcmp(format, "prometheus") == 0) {
            for (int f = 0; f < NSUMMARY && procs[k].reported; f++) {
                summary_field_t sf = summary_field(f);
                fprintf(out, "# HELP mmt_process_%s %s\n# TYPE mmt_process_%s %s\n", sf.metric,
                        sf.help, sf.metric, sf.type);
                put_prometheus_process(out, &procs[k], &sf);
            }
        } else {
            put_text_process(out, &procs[k]);
        }
        fclose(out);
    }
}

int main(int argc, char **argv)
{
    const char *policy = NULL, *interval = "1000", *format = "text", *out_path = NULL;
    const char *trace_path = NULL, *svg_path = NULL, *export_path = NULL, *every = NULL;
    bool dry_run = false;
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (strcmp(argv[i], "--dry-run") == 0) { /* the one option without a value */
            dry_run = true;
            continue;
        }
        if (i + 1 >= argc) usage();
        if (strcmp(argv[i], "--policy") == 0) policy = argv[++i];
        else if (strcmp(argv[i], "--interval") == 0) interval = argv[++i];
        else if (strcmp(argv[i], "--report") == 0) format = argv[++i];
        else if (strcmp(argv[i], "--out") == 0) out_path = argv[++i];
        else if (strcmp(argv[i], "--trace") == 0) trace_path = argv[++i];
        else if (strcmp(argv[i], "--svg") == 0) svg_path = argv[++i];
        else if (strcmp(argv[i], "--export") == 0) export_path = argv[++i];
        else if (strcmp(argv[i], "--every") == 0) every = argv[++i];
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
    unsigned long every_s;
    if (every && !export_path) {
        fprintf(stderr, "mmt-run: --every \"%s\": it goes with --export\n", every);
        return 2;
    }
    if (every && (!parse_decimal(every, MAX_EXPORT_EVERY_S, &every_s) || every_s == 0)) {
        fprintf(stderr, "mmt-run: --every \"%s\": not a number of seconds from 1 to %lu\n", every,
                MAX_EXPORT_EVERY_S);
        return 2;
    }
    const struct {
        const char *option, *value;
    } paths[] = {{"--policy", policy}, {"--out", out_path}, {"--trace", trace_path},
                 {"--svg", svg_path}, {"--export", export_path}};
    for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++) {
        if (paths[p].value && !*paths[p].value) {
            fprintf(stderr, "mmt-run: %s \"\": the file name is empty\n", paths[p].option);
            return 2;
        }
    }
    if (export_path && check_export(export_path) != 0) return 2;

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
    if (policy && check_policy(policy_label, policy, dry_run) != 0) return 2;
    char policy_abs[PATH_MAX + 64], trace_abs[PATH_MAX + 64], export_abs[PATH_MAX + 64];
    policy = absolute(policy, policy_abs, sizeof policy_abs);
    trace_path = absolute(trace_path, trace_abs, sizeof trace_abs);
    export_path = absolute(export_path, export_abs, sizeof export_abs);

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
    /* The processes' reports: one file each, named by process id, in a folder of mmt-run's
     * own (mode 0700: a process that drops its privileges wrote its start record before,
     * and keeps the file open). */
    int dn = snprintf(report_dir, sizeof report_dir, "%s/mmt-run-XXXXXX", tmpdir);
    if (dn <= 0 || (size_t)dn >= sizeof report_dir || !mkdtemp(report_dir)) {
        fprintf(stderr, "mmt-run: cannot make a temporary folder in %s%s: %s\n", tmpdir,
                tmpdir_from_env ? " (TMPDIR)" : "", dn > 0 && (size_t)dn < sizeof report_dir
                ? strerror(errno) : strerror(ENAMETOOLONG));
        report_dir[0] = '\0';
        return 2;
    }
    char report_pattern[2 * sizeof report_dir + 8];
    mmt__escape_percent(report_dir, report_pattern, sizeof report_pattern - 3); /* a % of TMPDIR's */
    strcat(report_pattern, "/%p");
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
    double start = mmt__now();
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
        /* First in LD_PRELOAD, so that an allocator preloaded already (jemalloc, tcmalloc)
         * is the one underneath mmt, not one before it. */
        const char *preloaded = getenv("LD_PRELOAD");
        if (preloaded && *preloaded) {
            char *both = malloc(strlen(library) + strlen(preloaded) + 2);
            if (both) {
                sprintf(both, "%s %s", library, preloaded);
                setenv("LD_PRELOAD", both, 1);
            }
        } else {
            setenv("LD_PRELOAD", library, 1);
        }
        setenv("MMT_REPORT", "json", 1);
        setenv("MMT_OUT", report_pattern, 1);
        setenv("MMT_REPORT_PID", id, 1);
        setenv("MMT_INTERVAL", interval, 1);
        if (dry_run) setenv("MMT_DRY_RUN", "1", 1);
        else unsetenv("MMT_DRY_RUN");
        if (policy) setenv("MMT_POLICY", policy, 1);
        if (trace_path) setenv("MMT_TRACE", trace_path, 1);
        if (export_path) setenv("MMT_EXPORT", export_path, 1);
        if (every) setenv("MMT_EXPORT_EVERY", every, 1);
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
    double seconds = mmt__now() - start;
    /* The machine as the program left it: the cgroup is mmt-run's own, which the program
     * runs in unless it moved (or was moved) elsewhere. */
    mmt_machine_t machine;
    mmt_machine_read(&machine, MMT_MACHINE_ALL);
    if (got == (ssize_t)sizeof exec_errno) {
        fprintf(stderr, "mmt-run: cannot run %s: %s\n", argv[i], strerror(exec_errno));
        sigprocmask(SIG_BLOCK, &passed, NULL);
        remove_temporary_files();
        return exec_errno == ENOENT ? 127 : 126; /* as shells do */
    }

    /* --out with %p: a file per process; otherwise one summary of the tree. */
    bool per_process = out_path && mmt__has_pid_escape(out_path);
    FILE *out = out_path && !per_process ? fopen(out_path, "w") : stderr;
    if (!out) {
        fprintf(stderr, "mmt-run: cannot write %s: %s\n", out_path, strerror(errno));
        out = stderr;
    }
    size_t nprocs;
    proc_t *procs = read_processes(&nprocs);
    const proc_t *main_proc = NULL;
    for (size_t k = 0; k < nprocs; k++)
        if (procs[k].pid == (long)pid) main_proc = &procs[k];
    if (main_proc && main_proc->reported) {
        if (per_process) summary_per_process(out_path, format, procs, nprocs);
        else summary(out, format, argv[i], procs, nprocs, main_proc, seconds, &machine);
    } else if (!main_proc) {
        /* Not even the library's start record (preload.c): it was never loaded. A program
         * killed before the loader ran is not blamed on its file unless the file says. */
        say_not_loaded(argv[i], WIFSIGNALED(status));
    } else if (!WIFSIGNALED(status)) {
        fprintf(stderr, "mmt-run: %s left no report (it exited without running exit handlers)\n",
                argv[i]);
    }
    free(procs);
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

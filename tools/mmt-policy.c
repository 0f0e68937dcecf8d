/*
 * mmt-policy: checks, tests and replays policy files without the program they steer.
 *
 *   mmt-policy check [--actions a,b,c] [--strict] FILE...
 *   mmt-policy test [--junit FILE] [--coverage] [--debug] TEST...
 *   mmt-policy replay [--interval S] [--svg OUT.svg] POLICY TRACE.csv
 *
 * Every policy runs in a virtual engine (lua/virtual.h): the engine's own code on a clock
 * and figures given to it, with no thread, no file watch and no host. Exit status: 0 all
 * good; 1 a policy failed to load (check), a case failed (test); 2 a test file or trace
 * could not be read, or the command line is wrong. README, "Testing a policy".
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lua/engine.h"
#include "../lua/virtual.h"
#include "mmt/policy.h"
#include "plot.h"
#include "series.h"
#include "utf8.h"

enum { EXIT_PASS = 0, EXIT_FAIL = 1, EXIT_UNREADABLE = 2 };

/* How long a policy's load or one step may take before mmt-policy gives up on it: far past
 * the engine's own budgets (which stop Lua code), for code they cannot stop. */
#define POLICY_WATCH_S policy_watch_s()

/* 60 s, or MMT_POLICY_WATCH (whole seconds, 1 to 86400). */
static unsigned policy_watch_s(void)
{
    static unsigned s;
    if (!s) {
        const char *e = getenv("MMT_POLICY_WATCH");
        char *end;
        long v = e ? strtol(e, &end, 10) : 0;
        s = e && *e && !*end && v >= 1 && v <= 86400 ? (unsigned)v : 60;
    }
    return s;
}

#define MAX_FILE_BYTES ((size_t)4 << 20)

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fputs("mmt-policy: out of memory\n", stderr);
        exit(EXIT_UNREADABLE);
    }
    return q;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xrealloc(NULL, n), s, n);
}

/* The whole file at `path` (NUL-terminated), or NULL with the reason in err. Opened
 * without blocking and refused unless it is a regular file: a FIFO or a device put where
 * a file should be is said, not waited on. */
static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if ((uintmax_t)st.st_size > MAX_FILE_BYTES) {
        snprintf(err, errlen, "%s: larger than %zu bytes", path, MAX_FILE_BYTES);
        close(fd);
        return NULL;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = xrealloc(NULL, cap);
    for (;;) {
        if (n + 1 == cap) {
            if (cap > MAX_FILE_BYTES) {
                snprintf(err, errlen, "%s: larger than %zu bytes", path, MAX_FILE_BYTES);
                free(buf);
                close(fd);
                return NULL;
            }
            buf = xrealloc(buf, cap *= 2);
        }
        ssize_t got = read(fd, buf + n, cap - 1 - n);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return NULL;
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    close(fd);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

/* `rel` relative to the folder of `file`, unless it is absolute. */
static char *beside(const char *file, const char *rel)
{
    if (rel[0] == '/') return xstrdup(rel);
    const char *slash = strrchr(file, '/');
    size_t dir = slash ? (size_t)(slash - file) + 1 : 0;
    char *out = xrealloc(NULL, dir + strlen(rel) + 1);
    memcpy(out, file, dir);
    strcpy(out + dir, rel);
    return out;
}

/* `bytes` as people write them: 256 MiB, 1.5 GiB, 100 B. */
static void bytes_text(double bytes, char *out, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    if (isinf(bytes)) {
        snprintf(out, len, "%s", bytes > 0 ? "Inf" : "-Inf");
        return;
    }
    int u = 0;
    double v = bytes;
    while (u < 4 && fabs(v) >= 1024) v /= 1024, u++;
    snprintf(out, len, "%.4g %s", v, units[u]);
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* The last guard against what no hook can stop (a C function that does not return: a
 * Lua pattern that backtracks for hours, in a test's `match` or in a policy): while a
 * watch is set, SIGALRM after its seconds says what ran and ends mmt-policy with status
 * 2. Only what is async-signal-safe runs in the handler. */
static char watch_what[512];
static size_t watch_len;

static void watch_fired(int sig)
{
    (void)sig;
    static const char head[] = "mmt-policy: stuck: ";
    static const char tail[] = " did not return in time, stuck where no budget reaches (a "
                               "Lua pattern that backtracks without end?); giving up\n";
    ssize_t w = write(STDERR_FILENO, head, sizeof head - 1);
    w = write(STDERR_FILENO, watch_what, watch_len);
    w = write(STDERR_FILENO, tail, sizeof tail - 1);
    (void)w;
    _exit(EXIT_UNREADABLE);
}

/* What a watch replaced, for unwatch to put back (watches nest: a stub's inside a step's). */
typedef struct watch_saved {
    char what[sizeof watch_what];
    size_t len;
    unsigned left;
} watch_saved_t;

static void watch(watch_saved_t *saved, unsigned seconds, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void watch(watch_saved_t *saved, unsigned seconds, const char *fmt, ...)
{
    saved->left = alarm(0);
    memcpy(saved->what, watch_what, sizeof watch_what);
    saved->len = watch_len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(watch_what, sizeof watch_what, fmt, ap);
    va_end(ap);
    watch_len = n < 0 ? 0 : (size_t)n < sizeof watch_what ? (size_t)n : sizeof watch_what - 1;
    signal(SIGALRM, watch_fired);
    alarm(seconds);
}

static void unwatch(const watch_saved_t *saved)
{
    alarm(0);
    memcpy(watch_what, saved->what, sizeof watch_what);
    watch_len = saved->len;
    alarm(saved->left);
}

/* ---- Running a policy in a virtual engine -------------------------------------------------- */

enum { EV_FIRE, EV_RESOLVE, EV_CALL, EV_LOG };
static const char *const kind_names[] = {"fire", "resolve", "call", "log"};

typedef struct event {
    double t;
    int kind;
    char *name;   /* the rule, the action, or the log line */
    int64_t arg;  /* a call's */
    int level;    /* a log line's */
} event_t;

typedef struct run {
    mmt_policy_t *engine;
    double now;            /* the clock, for the log lines */
    event_t *events;
    size_t nevents, cap;
    /* The stubs: the runner's Lua state and each action's function (test only). */
    lua_State *L;
    struct stub { struct run *run; char *name; int ref; } *stubs;
    size_t nstubs;
    char *stub_error;      /* the first error a stub raised */
    FILE *echo;            /* where to print the log as it comes (check, replay), or NULL */
    const char *echo_prefix;
} run_t;

static void add_event(run_t *r, int kind, const char *name, int64_t arg, int level)
{
    if (r->nevents == r->cap)
        r->events = xrealloc(r->events, (r->cap = r->cap ? 2 * r->cap : 64) * sizeof *r->events);
    r->events[r->nevents++] = (event_t){r->now, kind, xstrdup(name), arg, level};
}

static void on_log(int level, const char *message, void *ud)
{
    run_t *r = ud;
    if (level < 0 || level > MMT_LOG_DEBUG) level = MMT_LOG_DEBUG;
    add_event(r, EV_LOG, message, 0, level);
    if (r->echo && level <= MMT_LOG_INFO)
        fprintf(r->echo, "%s%s: %s\n", r->echo_prefix ? r->echo_prefix : "", level_names[level],
                message);
}

static void on_event(const char *rule, int fired, const mmt_meminfo_t *m, void *ud)
{
    (void)m;
    add_event(ud, fired ? EV_FIRE : EV_RESOLVE, rule, 0, 0);
}

static void on_call(const char *name, int64_t arg, int64_t result, bool stubbed, void *ud)
{
    (void)result;
    (void)stubbed;
    add_event(ud, EV_CALL, name, arg, 0);
}

static void run_free(run_t *r)
{
    if (r->engine) mmt_policy_free(r->engine);
    for (size_t i = 0; i < r->nevents; i++) free(r->events[i].name);
    free(r->events);
    for (size_t i = 0; i < r->nstubs; i++) free(r->stubs[i].name);
    free(r->stubs);
    free(r->stub_error);
    memset(r, 0, sizeof *r);
}

/* A virtual engine for r, its clock at `start`, steps `interval` seconds apart. */
static bool run_start(run_t *r, double interval, double start)
{
    mmt_policy_options_t o = {0};
    double ms = interval * 1000;
    o.interval_ms = ms < 1 ? 1 : ms > UINT_MAX ? UINT_MAX : (unsigned)llround(ms);
    r->now = start;
    r->engine = mmt__virtual_new(&o, start, on_call, r);
    if (!r->engine) return false;
    mmt_policy_set_log(r->engine, on_log, r);
    mmt_policy_set_event(r->engine, on_event, r);
    return true;
}

/* ---- check --------------------------------------------------------------------------------- */

static bool metric_is_bytes(metric_t m)
{
    if ((int)m < MMT__NFIELDS) return mmt__fields[m].bytes;
    return m == METRIC_RSS || m == METRIC_LUA || m == METRIC_CGROUP_CURRENT ||
           m == METRIC_AVAILABLE;
}

static void value_text(metric_t m, double v, char *out, size_t len)
{
    if (metric_is_bytes(m)) bytes_text(v, out, len);
    else if (m == METRIC_RATE) {
        bytes_text(v, out, len);
        strncat(out, "/s", len - strlen(out) - 1);
    } else if (m == METRIC_PSI_SOME10 || m == METRIC_PSI_FULL10) snprintf(out, len, "%g%%", v);
    else snprintf(out, len, "%g", v);
}

/* One line for rule r. */
static void describe_rule(const rule_t *r, FILE *out)
{
    char a[48], b[48];
    fprintf(out, "  %s: ", r->name);
    if (r->pressure) {
        fprintf(out, "pressure, %s stall above %g%% of %g s", r->pressure == MMT__PSI_FULL ?
                "full" : "some", r->above, r->window);
    } else if (r->when_ref != LUA_NOREF) {
        fputs("when function", out);
    } else {
        value_text(r->metric, r->above, a, sizeof a);
        fprintf(out, "%s%s%s above %s", mmt__metric_name(r->metric), r->tag_path ? " of tag " : "",
                r->tag_path ? r->tag_path : "", a);
        if (!(r->below == r->above)) {
            value_text(r->metric, r->below, b, sizeof b);
            fprintf(out, ", below %s", b);
        }
    }
    if (r->hold > 0) fprintf(out, ", hold %g s", r->hold);
    fprintf(out, " (%s)\n", r->where);
}

/* The names the file passes to mmt.call as a string literal, with their lines: a call
 * whose name is computed cannot be seen without running it. Read as Lua is lexed, so that
 * comments and the insides of strings are skipped: `call`, `(`, then a quoted string. */
typedef struct called { char name[128]; int line; } called_t;

/* At p, a long bracket's opening ([[, [==[): its level (the count of '='), or -1. */
static int long_bracket(const char *p)
{
    if (*p != '[') return -1;
    int level = 0;
    while (p[1 + level] == '=') level++;
    return p[1 + level] == '[' ? level : -1;
}

/* Past the long bracket of `level` that opens at p, counting lines. */
static const char *skip_long(const char *p, int level, int *line)
{
    for (p += level + 2; *p; p++) {
        if (*p == '\n') (*line)++;
        if (*p != ']') continue;
        int eq = 0;
        while (eq < level && p[1 + eq] == '=') eq++;
        if (eq == level && p[1 + level] == ']') return p + level + 2;
    }
    return p;
}

/* Past the quoted string that opens at p; its contents (undone escapes aside) in *start
 * and *len. */
static const char *skip_quoted(const char *p, int *line, const char **start, size_t *len)
{
    char quote = *p++;
    *start = p;
    bool plain = true;
    for (; *p && *p != quote && *p != '\n'; p++) {
        if (*p == '\\' && p[1]) {
            plain = false;
            if (*++p == '\n') (*line)++;
        }
    }
    *len = plain ? (size_t)(p - *start) : 0; /* a name with escapes is not listed */
    return *p == quote ? p + 1 : p;
}

static bool ident_char(char c)
{
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static size_t scan_calls(const char *src, called_t *out, size_t max)
{
    size_t n = 0;
    int line = 1;
    const char *p = src;
    while (*p && n < max) {
        const char *str;
        size_t len;
        int level;
        if (*p == '\n') {
            line++;
            p++;
        } else if (p[0] == '-' && p[1] == '-') {
            level = long_bracket(p + 2);
            if (level >= 0) p = skip_long(p + 2, level, &line);
            else p += strcspn(p, "\n");
        } else if ((level = long_bracket(p)) >= 0) {
            p = skip_long(p, level, &line);
        } else if (*p == '"' || *p == '\'') {
            p = skip_quoted(p, &line, &str, &len);
        } else if (ident_char(*p)) {
            const char *word = p;
            while (ident_char(*p)) p++;
            if (p - word != 4 || strncmp(word, "call", 4) != 0) continue;
            /* call("name" ...), call "name", call [[name]] */
            const char *q = p;
            while (*q == ' ' || *q == '\t') q++;
            if (*q == '(') {
                q++;
                while (*q == ' ' || *q == '\t') q++;
            }
            int at = line;
            if (*q == '"' || *q == '\'') {
                p = skip_quoted(q, &line, &str, &len);
            } else if ((level = long_bracket(q)) >= 0) {
                str = q + level + 2;
                p = skip_long(q, level, &line);
                len = (size_t)(p - str) >= (size_t)level + 2 ? (size_t)(p - str) - level - 2 : 0;
                if (memchr(str, '\n', len)) len = 0; /* not a name */
            } else {
                continue;
            }
            if (len == 0 || len >= sizeof out->name) continue;
            bool seen = false;
            for (size_t i = 0; i < n && !seen; i++)
                seen = strlen(out[i].name) == len && memcmp(out[i].name, str, len) == 0;
            if (seen) continue;
            memcpy(out[n].name, str, len);
            out[n].name[len] = '\0';
            out[n].line = at;
            n++;
        } else {
            p++;
        }
    }
    return n;
}

static bool listed(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == len && memcmp(p, name, n) == 0) return true;
        p = comma ? comma + 1 : NULL;
    }
    return false;
}

static int check_file(const char *path, const char *actions, bool strict)
{
    char err[512];
    char *src = NULL;
    run_t r = {0};
    if (!run_start(&r, 1, 0)) {
        fputs("mmt-policy: out of memory\n", stderr);
        return EXIT_UNREADABLE;
    }
    int rc = EXIT_PASS;
    watch_saved_t saved;
    watch(&saved, POLICY_WATCH_S, "loading %s", path);
    int loaded = mmt_policy_load(r.engine, path);
    unwatch(&saved);
    if (loaded != 0) {
        fprintf(stderr, "%s\n", mmt_policy_error(r.engine));
        rc = EXIT_FAIL;
    } else {
        /* No thread: nothing else touches the engine. */
        const pstate_t *s = r.engine->cur;
        printf("%s: %zu rule%s, %zu task%s\n", path, s->nrules, s->nrules == 1 ? "" : "s",
               s->ntasks, s->ntasks == 1 ? "" : "s");
        for (size_t i = 0; i < s->nrules; i++) describe_rule(&s->rules[i], stdout);
        for (size_t i = 0; i < s->ntasks; i++)
            printf("  every %g s (%s)\n", s->tasks[i].period, s->tasks[i].where);
        for (size_t i = 0; i < s->nlimits; i++) {
            char b[48];
            bytes_text((double)s->limits[i].bytes, b, sizeof b);
            printf("  limit %s (%s)\n", s->limits[i].bytes ? b : "removed", s->limits[i].where);
        }
        /* What its file said as it ran: warnings on stderr, the rest with the summary. */
        for (size_t i = 0; i < r.nevents; i++) {
            const event_t *e = &r.events[i];
            if (e->kind != EV_LOG || e->level > MMT_LOG_INFO) continue;
            if (e->level <= MMT_LOG_WARN) fprintf(stderr, "%s: %s\n", level_names[e->level], e->name);
            else printf("  said: %s\n", e->name);
        }
        /* Read again for the names it calls: what loaded is what the engine read. */
        enum { MAX_CALLS = 256 };
        called_t *calls = xrealloc(NULL, MAX_CALLS * sizeof *calls);
        src = read_file(path, NULL, err, sizeof err);
        size_t ncalls = src ? scan_calls(src, calls, MAX_CALLS) : 0;
        if (ncalls == MAX_CALLS)
            fprintf(stderr, "%s: more than %d host actions called: those after are not "
                    "listed\n", path, MAX_CALLS);
        for (size_t i = 0; i < ncalls; i++) {
            if (actions && listed(actions, calls[i].name)) {
                printf("  calls %s (%s:%d)\n", calls[i].name, path, calls[i].line);
                continue;
            }
            if (!actions) {
                printf("  calls %s (%s:%d): the host must register it\n", calls[i].name, path,
                       calls[i].line);
                continue;
            }
            fprintf(stderr, "%s:%d: %s: mmt.call(\"%s\"): the host has no such action (it "
                    "has: %s)\n", path, calls[i].line, strict ? "error" : "warning",
                    calls[i].name, *actions ? actions : "none");
            if (strict) rc = EXIT_FAIL;
        }
        free(calls);
    }
    run_free(&r);
    free(src);
    return rc;
}

/* ---- test: the test files ------------------------------------------------------------------ */

typedef struct expectation {
    int kind;
    char *name;      /* rule or action; NULL for a log line */
    bool has_arg;
    int64_t arg;
    int level;       /* a log line's */
    char *match;     /* its Lua pattern, NULL: any */
    long count;      /* how many lines must match; -1: at least one */
    double from, to; /* inclusive */
    int line;        /* in the test file */
} expectation_t;

typedef struct tcase {
    char *name;
    int line;
    int ref;         /* its table, in the runner's registry */
} tcase_t;

typedef struct suite {
    const char *path;
    tcase_t *cases;
    size_t ncases;
    bool loading;    /* its file runs: t.case may be called */
} suite_t;

/* How long the runner's own Lua may run: a test file's top level, and one stub call. The
 * runner's state runs with the JIT off, so that its instruction hook always runs. */
#define FILE_BUDGET_S 10.0
#define STUB_BUDGET_S 1.0
#define RUNNER_HOOK_COUNT 1000 /* instructions between two looks at the clock */
static double runner_deadline = INFINITY, runner_budget;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void runner_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    /* Past the deadline, raised again at every instruction, so that a pcall that swallows
     * the error buys no time: the next instruction outside it raises too, up to the
     * runner_pcall, which sets the count back. */
    if (now_s() > runner_deadline) {
        lua_sethook(L, runner_hook, LUA_MASKCOUNT, 1);
        luaL_error(L, "ran past its time budget of %g s", runner_budget);
    }
}

/* Calls as lua_pcall, with `seconds` for the runner's code to run in. */
static int runner_pcall(lua_State *L, int nargs, int nresults, double seconds)
{
    double saved_deadline = runner_deadline, saved_budget = runner_budget;
    runner_budget = seconds;
    runner_deadline = now_s() + seconds;
    watch_saved_t saved;
    watch(&saved, (unsigned)seconds + 10, "the test file's Lua code"); /* after the hook */
    int rc = lua_pcall(L, nargs, nresults, 0);
    lua_sethook(L, runner_hook, LUA_MASKCOUNT, RUNNER_HOOK_COUNT);
    unwatch(&saved);
    runner_deadline = saved_deadline;
    runner_budget = saved_budget;
    return rc;
}

/* A raw field of the table at idx (absolute), pushed: metamethods are not run, so reading
 * a test's tables runs none of its code and cannot raise. */
static void raw_field(lua_State *L, int idx, const char *key)
{
    lua_pushstring(L, key);
    lua_rawget(L, idx);
}

static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, nsize);
}

/* t.case { ... }: noted, with its line, to run once the file has run. Only while the file
 * runs: a stub that declares a case is wrong. */
static int l_case(lua_State *L)
{
    suite_t *su = lua_touserdata(L, lua_upvalueindex(1));
    if (!su->loading)
        return luaL_error(L, "t.case: cases are declared as the test file runs, not later "
                             "(from an action's stub)");
    luaL_checktype(L, 1, LUA_TTABLE);
    raw_field(L, 1, "name");
    if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "t.case: field 'name' must be a string");
    const char *name = lua_tostring(L, -1);
    lua_pop(L, 1);
    /* The line of the innermost call from Lua code (a pcall or other C function between
     * has none). */
    lua_Debug ar;
    int line = 0;
    for (int level = 1; line <= 0 && lua_getstack(L, level, &ar); level++)
        if (lua_getinfo(L, "l", &ar) && ar.currentline > 0) line = ar.currentline;
    lua_pushvalue(L, 1);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    su->cases = xrealloc(su->cases, (su->ncases + 1) * sizeof *su->cases);
    su->cases[su->ncases++] = (tcase_t){xstrdup(name), line, ref};
    return 0;
}

static int l_open_test(lua_State *L)
{
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushcclosure(L, l_case, 1);
    lua_setfield(L, -2, "case");
    return 1;
}

/* Loads and runs the test file into su; false with the message in err. */
static bool load_suite(lua_State *L, suite_t *su, char *err, size_t errlen)
{
    size_t len;
    char *src = read_file(su->path, &len, err, errlen);
    if (!src) return false;
    lua_getfield(L, LUA_GLOBALSINDEX, "package");
    lua_getfield(L, -1, "preload");
    lua_pushlightuserdata(L, su);
    lua_pushcclosure(L, l_open_test, 1);
    lua_setfield(L, -2, "mmt.test");
    lua_pop(L, 2);
    /* string.find as it is now, for log expectations: the file may replace it. */
    lua_getfield(L, LUA_GLOBALSINDEX, "string");
    lua_getfield(L, -1, "find");
    lua_setfield(L, LUA_REGISTRYINDEX, "mmt-policy.find");
    lua_pop(L, 1);
    char chunk[PATH_MAX + 2];
    snprintf(chunk, sizeof chunk, "@%s", su->path);
    int rc = luaL_loadbuffer(L, src, len, chunk);
    free(src);
    su->loading = true;
    if (rc == 0) rc = runner_pcall(L, 0, 0, FILE_BUDGET_S);
    su->loading = false;
    if (rc != 0) {
        const char *m = lua_tostring(L, -1);
        snprintf(err, errlen, "%s", m ? m : "(an error that is not a string)");
        lua_pop(L, 1);
        return false;
    }
    if (su->ncases == 0) {
        snprintf(err, errlen, "%s: no t.case in the file", su->path);
        return false;
    }
    return true;
}

/* ---- test: one case ------------------------------------------------------------------------ */

/* A growing text (a case's report). */
typedef struct text {
    char *s;
    size_t len, cap;
} text_t;

static void appendf(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void appendf(text_t *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (t->len + (size_t)n + 1 > t->cap) t->s = xrealloc(t->s, t->cap = 2 * (t->len + (size_t)n + 1));
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

typedef struct outcome {
    bool failed, broken; /* broken: the case itself is wrong (exit 2) */
    text_t report;
    double seconds;
} outcome_t;

/* What --coverage collects over every case: each policy's rules and tasks, and whether a
 * case made them fire or run. */
typedef struct covered {
    char *policy, *what, *where;
    bool task, hit;
} covered_t;

static covered_t *coverage;
static size_t ncoverage;

static void cover(const char *policy, const char *what, const char *where, bool task, bool hit)
{
    for (size_t i = 0; i < ncoverage; i++) {
        covered_t *c = &coverage[i];
        if (c->task == task && strcmp(c->policy, policy) == 0 && strcmp(c->where, where) == 0 &&
            strcmp(c->what, what) == 0) {
            c->hit = c->hit || hit;
            return;
        }
    }
    coverage = xrealloc(coverage, (ncoverage + 1) * sizeof *coverage);
    coverage[ncoverage++] = (covered_t){xstrdup(policy), xstrdup(what), xstrdup(where), task, hit};
}

static int64_t stub_call(int64_t arg, void *ud)
{
    struct stub *st = ud;
    run_t *r = st->run;
    lua_State *L = r->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->ref);
    lua_pushnumber(L, (lua_Number)arg);
    int64_t result = 0;
    char why[300] = "";
    if (runner_pcall(L, 1, 1, STUB_BUDGET_S) != 0) {
        const char *m = lua_tostring(L, -1);
        snprintf(why, sizeof why, "action %s raised: %s", st->name, m ? m : "(not a string)");
    } else if (lua_type(L, -1) == LUA_TNUMBER) {
        double v = lua_tonumber(L, -1);
        if (isnan(v))
            snprintf(why, sizeof why, "action %s returned nan, not a number of bytes", st->name);
        else
            result = v >= 9.2e18 ? INT64_MAX : v <= -9.2e18 ? INT64_MIN : (int64_t)v;
    } else if (lua_type(L, -1) != LUA_TNIL) {
        snprintf(why, sizeof why, "action %s returned a %s, not a number", st->name,
                 luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    if (*why && !r->stub_error) r->stub_error = xstrdup(why);
    return result;
}

/* The case table's field `key` must be of type `type` (or nil if optional). */
static bool field_type(lua_State *L, int idx, const char *key, int type, bool optional,
                       text_t *why)
{
    raw_field(L, idx, key);
    int got = lua_type(L, -1);
    if (got == type || (optional && got == LUA_TNIL)) return true;
    appendf(why, "field '%s' must be a %s, not a %s", key, lua_typename(L, type),
            lua_typename(L, got));
    lua_pop(L, 1);
    return false;
}

/* Fields of the table at idx not in `allowed` (NULL-terminated): the first named in why. */
static bool only_fields(lua_State *L, int idx, const char *const *allowed, const char *what,
                        text_t *why)
{
    for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
        bool ok = lua_type(L, -2) == LUA_TSTRING;
        const char *k = ok ? lua_tostring(L, -2) : NULL;
        if (ok) {
            ok = false;
            for (size_t i = 0; allowed[i] && !ok; i++) ok = strcmp(allowed[i], k) == 0;
        }
        if (!ok) {
            if (k) appendf(why, "%s has no field '%s'", what, k);
            else appendf(why, "%s has a field that is not named", what);
            lua_pop(L, 2);
            return false;
        }
    }
    return true;
}

/* Does Lua pattern `pattern` match `line`? string.find in the runner's state (as it was
 * before the test file ran): 1 it does, 0 it does not, -1 the pattern is bad (the reason
 * in why). */
static int pattern_matches(lua_State *L, const char *line, const char *pattern, text_t *why)
{
    if (!pattern) return 1;
    lua_getfield(L, LUA_REGISTRYINDEX, "mmt-policy.find");
    lua_pushstring(L, line);
    lua_pushstring(L, pattern);
    int rc = runner_pcall(L, 2, 1, STUB_BUDGET_S);
    if (rc != 0) {
        const char *m = lua_tostring(L, -1);
        appendf(why, "match \"%s\": %s", pattern, m ? m : "not a pattern");
        lua_pop(L, 1);
        return -1;
    }
    int found = !lua_isnil(L, -1);
    lua_pop(L, 1);
    return found;
}

/* Reads the expectations (the array at idx) into *out; false with why. */
static bool read_expectations(lua_State *L, int idx, int line, expectation_t **out, size_t *n,
                              text_t *why)
{
    static const char *const allowed[] = {"at", "from", "to", "fire", "resolve", "call", "arg",
                                          "log", "match", "count", NULL};
    size_t count = lua_objlen(L, idx);
    *out = xrealloc(NULL, (count ? count : 1) * sizeof **out);
    *n = 0;
    /* A list and nothing else: a key that is not 1..n (`expect = { fire = "x" }`, its
     * braces forgotten) would be an expectation never checked. */
    for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
        double k = lua_type(L, -2) == LUA_TNUMBER ? lua_tonumber(L, -2) : 0;
        if (!(k >= 1 && k <= (double)count && k == floor(k))) {
            if (lua_type(L, -2) == LUA_TSTRING)
                appendf(why, "expect: a list of tables, with no key '%s' (an expectation "
                        "needs braces of its own)", lua_tostring(L, -2));
            else
                appendf(why, "expect: a list of tables, numbered from 1 without holes");
            lua_pop(L, 2);
            return false;
        }
    }
    for (size_t i = 1; i <= count; i++) {
        lua_rawgeti(L, idx, (int)i);
        int e = lua_gettop(L);
        expectation_t x = {.from = -INFINITY, .to = INFINITY, .count = -1, .line = line};
        char what[48];
        snprintf(what, sizeof what, "expectation %zu", i);
        if (lua_type(L, e) != LUA_TTABLE) {
            appendf(why, "%s is a %s, not a table", what, luaL_typename(L, e));
            goto bad;
        }
        if (!only_fields(L, e, allowed, what, why)) goto bad;
        int kinds = 0;
        for (int k = EV_FIRE; k <= EV_LOG; k++) {
            raw_field(L, e, kind_names[k]);
            if (!lua_isnil(L, -1)) {
                kinds++;
                x.kind = k;
                if (lua_type(L, -1) != LUA_TSTRING) {
                    appendf(why, "%s: '%s' must be a string", what, kind_names[k]);
                    lua_pop(L, 1);
                    goto bad;
                }
                if (k == EV_LOG) {
                    const char *level = lua_tostring(L, -1);
                    x.level = -1;
                    for (int l = 0; l <= MMT_LOG_DEBUG; l++)
                        if (strcmp(level, level_names[l]) == 0) x.level = l;
                    if (x.level < 0) {
                        appendf(why, "%s: log level \"%s\" is none of error, warn, info, debug",
                                what, level);
                        lua_pop(L, 1);
                        goto bad;
                    }
                } else {
                    free(x.name); /* a second kind: refused below, not leaked */
                    x.name = xstrdup(lua_tostring(L, -1));
                }
            }
            lua_pop(L, 1);
        }
        if (kinds != 1) {
            appendf(why, "%s must have one of fire, resolve, call and log (it has %d)", what,
                    kinds);
            goto bad;
        }
        raw_field(L, e, "arg");
        if (!lua_isnil(L, -1)) {
            double a = lua_tonumber(L, -1);
            if (x.kind != EV_CALL || lua_type(L, -1) != LUA_TNUMBER || a != floor(a) ||
                !(a >= -9223372036854775808.0 && a < 9223372036854775808.0)) {
                appendf(why, "%s: 'arg' goes with 'call', as a whole number from -2^63 to 2^63",
                        what);
                lua_pop(L, 1);
                goto bad;
            }
            x.has_arg = true;
            x.arg = (int64_t)a;
        }
        lua_pop(L, 1);
        raw_field(L, e, "count");
        if (!lua_isnil(L, -1)) {
            double c = lua_tonumber(L, -1);
            if (x.kind != EV_LOG || lua_type(L, -1) != LUA_TNUMBER || !(c >= 0 && c <= 1e9) ||
                c != floor(c)) {
                appendf(why, "%s: 'count' goes with 'log', as a whole number (0: no such line)",
                        what);
                lua_pop(L, 1);
                goto bad;
            }
            x.count = (long)c;
        }
        lua_pop(L, 1);
        raw_field(L, e, "match");
        if (!lua_isnil(L, -1)) {
            if (x.kind != EV_LOG || lua_type(L, -1) != LUA_TSTRING) {
                appendf(why, "%s: 'match' goes with 'log', as a string (a Lua pattern)", what);
                lua_pop(L, 1);
                goto bad;
            }
            x.match = xstrdup(lua_tostring(L, -1));
            /* A bad pattern said now, not taken for one that matches nothing. */
            lua_pop(L, 1);
            if (pattern_matches(L, "", x.match, why) < 0) goto bad;
            lua_pushnil(L);
        }
        lua_pop(L, 1);
        static const char *const times[] = {"at", "from", "to"};
        double tv[3];
        bool has[3];
        for (int k = 0; k < 3; k++) {
            raw_field(L, e, times[k]);
            has[k] = !lua_isnil(L, -1);
            tv[k] = lua_tonumber(L, -1);
            if (has[k] && (lua_type(L, -1) != LUA_TNUMBER || !isfinite(tv[k]))) {
                appendf(why, "%s: '%s' must be a number of seconds", what, times[k]);
                lua_pop(L, 1);
                goto bad;
            }
            lua_pop(L, 1);
        }
        if (has[0] && (has[1] || has[2])) {
            appendf(why, "%s: 'at' or 'from'/'to', not both", what);
            goto bad;
        }
        if (has[0]) x.from = x.to = tv[0];
        if (has[1]) x.from = tv[1];
        if (has[2]) x.to = tv[2];
        if (x.from > x.to) {
            appendf(why, "%s: 'from' (%g) is after 'to' (%g)", what, x.from, x.to);
            goto bad;
        }
        lua_settop(L, e - 1);
        (*out)[(*n)++] = x;
        continue;
    bad:
        free(x.name);
        free(x.match);
        lua_settop(L, e - 1);
        return false;
    }
    return true;
}

static void time_text(double from, double to, char *out, size_t len)
{
    if (from == to) snprintf(out, len, "t=%.9g", from);
    else if (isinf(from) && isinf(to)) snprintf(out, len, "any time");
    else if (isinf(to)) snprintf(out, len, "t>=%.9g", from);
    else if (isinf(from)) snprintf(out, len, "t<=%.9g", to);
    else snprintf(out, len, "t=%.9g..%.9g", from, to);
}

static void event_text(int kind, const char *name, bool has_arg, int64_t arg, char *out,
                       size_t len)
{
    if (kind == EV_CALL && has_arg) snprintf(out, len, "call     %s(%" PRId64 ")", name, arg);
    else if (kind == EV_CALL) snprintf(out, len, "call     %s", name);
    else snprintf(out, len, "%-8s %s", kind_names[kind], name);
}

/* Does expectation x (fire, resolve or call) accept event e? */
static bool accepts(const expectation_t *x, const event_t *e, double eps)
{
    return e->kind == x->kind && strcmp(x->name, e->name) == 0 &&
           (!x->has_arg || x->arg == e->arg) && e->t >= x->from - eps && e->t <= x->to + eps;
}

/* The pairing of expectations with events (run_case). */
typedef struct match {
    const expectation_t *ex;
    const event_t *events;
    size_t nevents;
    double eps;
    size_t *owner;  /* per event, the expectation paired with it; SIZE_MAX: none */
    bool *visited;  /* per event, in this search */
    struct frame { size_t k, next, event; } *path; /* the search's path, one an expectation */
} match_t;

/* Kuhn's augmenting path from expectation k: true if it could be paired, moving others.
 * Iterative (a path may be as long as the list), with m->visited kept by the caller across
 * searches that fail: what one found closed stays closed while the pairing is unchanged. */
static bool augment(match_t *m, size_t k)
{
    size_t depth = 0;
    m->path[0] = (struct frame){k, 0, 0};
    for (;;) {
        struct frame *f = &m->path[depth];
        size_t i = f->next;
        while (i < m->nevents && (m->visited[i] || !accepts(&m->ex[f->k], &m->events[i], m->eps)))
            i++;
        if (i == m->nevents) { /* nothing left from here: back up */
            if (depth == 0) return false;
            depth--;
            continue;
        }
        f->next = i + 1;
        m->visited[i] = true;
        f->event = i;
        if (m->owner[i] == SIZE_MAX) { /* free: move each expectation on the path */
            for (size_t d = 0; d <= depth; d++) m->owner[m->path[d].event] = m->path[d].k;
            return true;
        }
        m->path[++depth] = (struct frame){m->owner[i], 0, 0};
    }
}

static const expectation_t *sorting; /* by_window_end's list */

static int by_window_end(const void *a, const void *b)
{
    const expectation_t *x = &sorting[*(const size_t *)a], *y = &sorting[*(const size_t *)b];
    return x->to < y->to ? -1 : x->to > y->to ? 1 : 0;
}

typedef struct diff_row {
    double t;
    char sign;
    char text[300];
} diff_row_t;

static int by_time(const void *a, const void *b)
{
    const diff_row_t *x = a, *y = b;
    return x->t < y->t ? -1 : x->t > y->t ? 1 : 0;
}

/* series.tags (the table on the stack top): { [path] = { figure = samples } }. */
static bool series_tags(lua_State *L, run_t *r, mmt__series_t *series, text_t *why)
{
    int tt = lua_gettop(L);
    for (lua_pushnil(L); lua_next(L, tt); lua_pop(L, 1)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TTABLE) {
            appendf(why, "series.tags: each entry is a tag's path and a table of figures");
            return false;
        }
        const char *path = lua_tostring(L, -2);
        int tag = mmt__policy_tag(r->engine, path);
        if (tag <= 0) {
            if (tag == MMT_ENOSPC)
                appendf(why, "series.tags: \"%s\": %d tags exist already, the most there can "
                        "be", path, MMT_TAGS_MAX);
            else
                appendf(why, "series.tags: \"%s\" is not a tag's path (names of 1 to %d bytes "
                        "joined by '/', like \"cache/pages\")", path, MMT_TAG_NAME_MAX);
            return false;
        }
        int ft = lua_gettop(L);
        for (lua_pushnil(L); lua_next(L, ft); lua_pop(L, 1)) {
            char err[600];
            double *v;
            size_t n;
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
                appendf(why, "series.tags[\"%s\"]: each entry is a figure and a string of "
                        "samples", path);
                return false;
            }
            const char *name = lua_tostring(L, -2);
            if (mmt__series_parse(lua_tostring(L, -1), &v, &n, err, sizeof err) != 0) {
                appendf(why, "series.tags[\"%s\"].%s: %s", path, name, err);
                return false;
            }
            if (mmt__series_add_tag(series, (unsigned)tag, name, v, n, err, sizeof err) != 0) {
                free(v);
                appendf(why, "series.tags[\"%s\"]: %s", path, err);
                return false;
            }
        }
    }
    return true;
}

/* Runs case c of suite su (its table on the stack top) and judges it. */
static void run_case(lua_State *L, const suite_t *su, const tcase_t *c, bool debug,
                     outcome_t *o)
{
    static const char *const allowed[] = {"name", "policy", "interval", "series", "trace",
                                          "actions", "expect", "expect_none", NULL};
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
    int ct = lua_gettop(L);
    text_t why = {0};
    run_t r = {0};
    mmt__series_t series = {0};
    mmt__recorded_t *recorded = NULL;
    size_t nrecorded = 0;
    expectation_t *ex = NULL;
    size_t nex = 0;
    char *policy = NULL, err[600];
    bool expect_none = false;
    double interval = 1;
    if (!only_fields(L, ct, allowed, "the case", &why)) goto broken;
    if (!field_type(L, ct, "policy", LUA_TSTRING, false, &why)) goto broken;
    policy = beside(su->path, lua_tostring(L, -1));
    lua_pop(L, 1);
    if (!field_type(L, ct, "interval", LUA_TNUMBER, true, &why)) goto broken;
    if (!lua_isnil(L, -1)) interval = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (!(interval >= 0.001 && interval <= 86400)) {
        appendf(&why, "field 'interval' must be from 0.001 to 86400 seconds, not %g", interval);
        goto broken;
    }
    if (!field_type(L, ct, "expect_none", LUA_TBOOLEAN, true, &why)) goto broken;
    expect_none = lua_toboolean(L, -1);
    lua_pop(L, 1);
    r.L = L;
    if (!run_start(&r, interval, 0)) {
        appendf(&why, "out of memory");
        goto broken;
    }
    /* The figures: a series or a trace. */
    if (!field_type(L, ct, "series", LUA_TTABLE, true, &why)) goto broken;
    bool has_series = !lua_isnil(L, -1);
    int st = lua_gettop(L);
    if (!field_type(L, ct, "trace", LUA_TSTRING, true, &why)) goto broken;
    bool has_trace = !lua_isnil(L, -1);
    if (has_series == has_trace) {
        appendf(&why, "a case has 'series' or 'trace', one of them");
        goto broken;
    }
    if (has_trace) {
        char *trace = beside(su->path, lua_tostring(L, -1));
        int rc = mmt__series_from_trace(&series, trace, &recorded, &nrecorded, err, sizeof err);
        free(trace);
        if (rc != 0) {
            appendf(&why, "%s", err);
            goto broken;
        }
    } else {
        series.interval = interval;
        for (lua_pushnil(L); lua_next(L, st); lua_pop(L, 1)) {
            if (lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), "tags") == 0 &&
                lua_type(L, -1) == LUA_TTABLE) {
                if (!series_tags(L, &r, &series, &why)) goto broken;
                continue;
            }
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
                appendf(&why, "series: each entry is a figure's name and a string of samples");
                goto broken;
            }
            const char *name = lua_tostring(L, -2);
            double *v;
            size_t n;
            if (mmt__series_parse(lua_tostring(L, -1), &v, &n, err, sizeof err) != 0) {
                appendf(&why, "series %s: %s", name, err);
                goto broken;
            }
            if (mmt__series_add(&series, name, v, n, err, sizeof err) != 0) {
                free(v);
                appendf(&why, "series: %s", err);
                goto broken;
            }
        }
        if (series.nsteps == 0) {
            appendf(&why, "series: no figures");
            goto broken;
        }
    }
    lua_settop(L, ct);
    if (!field_type(L, ct, "expect", LUA_TTABLE, true, &why)) goto broken;
    if (!lua_isnil(L, -1) && !read_expectations(L, lua_gettop(L), c->line, &ex, &nex, &why))
        goto broken;
    lua_settop(L, ct);
    if (expect_none) {
        for (size_t i = 0; i < nex; i++)
            if (ex[i].kind != EV_LOG) {
                appendf(&why, "expect_none with a fire, resolve or call expected");
                goto broken;
            }
    } else if (nex == 0) {
        appendf(&why, "no expectations: give 'expect', or 'expect_none = true'");
        goto broken;
    }

    /* The stubs, the policy. */
    if (!field_type(L, ct, "actions", LUA_TTABLE, true, &why)) goto broken;
    if (!lua_isnil(L, -1)) {
        int at = lua_gettop(L);
        for (lua_pushnil(L); lua_next(L, at); lua_pop(L, 1)) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TFUNCTION) {
                appendf(&why, "actions: each entry is an action's name and a function");
                goto broken;
            }
            r.nstubs++;
        }
        r.stubs = xrealloc(NULL, r.nstubs * sizeof *r.stubs);
        size_t count = r.nstubs;
        r.nstubs = 0; /* counted again as they are made, for run_free */
        for (lua_pushnil(L); r.nstubs < count && lua_next(L, at);) {
            struct stub *stub = &r.stubs[r.nstubs++];
            *stub = (struct stub){&r, xstrdup(lua_tostring(L, -2)), 0};
            stub->ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops the function */
            if (mmt_policy_action(r.engine, stub->name, stub_call, stub) != 0) {
                appendf(&why, "actions: \"%s\" cannot be an action's name", stub->name);
                goto broken;
            }
        }
    }
    lua_settop(L, ct);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    watch_saved_t saved;
    watch(&saved, POLICY_WATCH_S, "loading %s", policy);
    int loaded = mmt_policy_load(r.engine, policy);
    unwatch(&saved);
    if (loaded != 0) {
        appendf(&o->report, "  the policy did not load: %s\n", mmt_policy_error(r.engine));
        o->failed = true;
        goto done;
    }
    mmt__series_carry_t carry = {0};
    for (size_t i = 0; i < series.nsteps; i++) {
        mmt__step_t step;
        if (!mmt__series_step(&series, i, &carry, &step)) {
            double t = series.time ? series.time[i] : (double)i * interval;
            r.now = t;
            mmt__virtual_set_time(r.engine, t);
            continue;
        }
        r.now = step.time;
        watch(&saved, POLICY_WATCH_S, "%s at t=%.9g", policy, step.time);
        mmt__virtual_step(r.engine, &step);
        unwatch(&saved);
        if (debug) {
            char b[48];
            bytes_text((double)step.info.in_use, b, sizeof b);
            printf("    t=%.9g in_use=%s:", step.time, b);
            const pstate_t *s = r.engine->cur;
            for (size_t k = 0; k < s->nrules; k++) {
                const rule_t *rule = &s->rules[k];
                printf(" %s=%s", rule->name, rule->disabled ? "disabled" : rule->firing ? "firing"
                       : rule->since >= 0 ? "holding" : "idle");
                if (!rule->firing && rule->since >= 0) printf("(since %g)", rule->since);
            }
            putchar('\n');
        }
    }
    mmt__series_carry_free(&carry);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    o->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    if (r.stub_error) {
        appendf(&o->report, "  %s\n", r.stub_error);
        o->failed = true;
    }

    /* Judging. fire, resolve and call: the whole list, paired with the events as a
     * maximum matching, so that a list that can be met is met whatever its order. First
     * each expectation takes the earliest event it accepts that no other took, in the
     * order of their windows' ends (which alone pairs all it can among windows on a line);
     * then each one left looks for an augmenting path (an event whose taker can move). */
    double eps = 1e-6 * (interval > 1 ? interval : 1);
    match_t m = {ex, r.events, r.nevents, eps,
                 xrealloc(NULL, (r.nevents ? r.nevents : 1) * sizeof *m.owner), NULL,
                 xrealloc(NULL, (nex + 1) * sizeof *m.path)};
    m.visited = calloc(r.nevents ? r.nevents : 1, sizeof *m.visited);
    size_t *order = xrealloc(NULL, (nex ? nex : 1) * sizeof *order), nin = 0;
    bool *used = calloc(nex ? nex : 1, sizeof *used);
    if (!m.visited || !used) {
        fputs("mmt-policy: out of memory\n", stderr);
        exit(EXIT_UNREADABLE);
    }
    for (size_t i = 0; i < r.nevents; i++) m.owner[i] = SIZE_MAX;
    for (size_t k = 0; k < nex; k++)
        if (ex[k].kind != EV_LOG) order[nin++] = k;
    sorting = ex;
    qsort(order, nin, sizeof *order, by_window_end);
    for (size_t j = 0; j < nin; j++) {
        for (size_t i = 0; i < r.nevents; i++) {
            if (m.owner[i] != SIZE_MAX || !accepts(&ex[order[j]], &r.events[i], eps)) continue;
            m.owner[i] = order[j];
            used[order[j]] = true;
            break;
        }
    }
    memset(m.visited, 0, r.nevents * sizeof *m.visited);
    for (size_t j = 0; j < nin; j++) {
        if (used[order[j]]) continue;
        used[order[j]] = augment(&m, order[j]);
        if (used[order[j]]) memset(m.visited, 0, r.nevents * sizeof *m.visited);
    }
    bool *taken = m.visited; /* reused: taken[i], the event was paired */
    for (size_t i = 0; i < r.nevents; i++) taken[i] = m.owner[i] != SIZE_MAX;
    free(m.owner);
    free(m.path);
    diff_row_t *rows = xrealloc(NULL, (r.nevents + nex + 1) * sizeof *rows);
    size_t nrows = 0;
    bool mismatch = false;
    for (size_t i = 0; i < r.nevents; i++) {
        const event_t *e = &r.events[i];
        if (e->kind == EV_LOG) continue;
        diff_row_t *d = &rows[nrows++];
        d->t = e->t;
        d->sign = taken[i] ? ' ' : '+';
        char ev[200];
        event_text(e->kind, e->name, e->kind == EV_CALL, e->arg, ev, sizeof ev);
        snprintf(d->text, sizeof d->text, "t=%-8.9g %s", e->t, ev);
        mismatch = mismatch || !taken[i];
    }
    free(taken);
    free(order);
    bool logs_missing = false, bad_pattern = false;
    int dump_level = MMT_LOG_INFO; /* the run's log is shown down to this level */
    for (size_t k = 0; k < nex; k++) {
        const expectation_t *x = &ex[k];
        char when[64], ev[200];
        time_text(x->from, x->to, when, sizeof when);
        if (x->kind == EV_LOG) {
            long found = 0;
            for (size_t i = 0; i < r.nevents; i++) {
                const event_t *e = &r.events[i];
                if (e->kind != EV_LOG || e->level != x->level || e->t < x->from - eps ||
                    e->t > x->to + eps)
                    continue;
                int hit = pattern_matches(L, e->name, x->match, &why);
                if (hit < 0) {
                    bad_pattern = true;
                    break;
                }
                found += hit;
            }
            if (bad_pattern) break;
            if (x->count >= 0 ? found != x->count : found == 0) {
                char want[32] = "a line";
                if (x->count >= 0)
                    snprintf(want, sizeof want, "%ld line%s", x->count, x->count == 1 ? "" : "s");
                appendf(&o->report, "  - %s: %s at level %s%s%s%s: %ld came\n", when, want,
                        level_names[x->level], x->match ? " matching \"" : "",
                        x->match ? x->match : "", x->match ? "\"" : "", found);
                logs_missing = true;
                if (x->level > dump_level) dump_level = x->level;
            }
            continue;
        }
        if (used[k]) continue;
        diff_row_t *d = &rows[nrows++];
        d->t = isinf(x->from) ? (isinf(x->to) ? 0 : x->to) : x->from;
        d->sign = '-';
        event_text(x->kind, x->name, x->has_arg, x->arg, ev, sizeof ev);
        snprintf(d->text, sizeof d->text, "%-10s %s", when, ev);
        mismatch = true;
    }
    if (mismatch) {
        qsort(rows, nrows, sizeof *rows, by_time);
        appendf(&o->report, "  events (- expected, not seen; + seen, not expected):\n");
        if (nrows == 0) appendf(&o->report, "    (none)\n");
        for (size_t i = 0; i < nrows; i++)
            appendf(&o->report, "  %c %s\n", rows[i].sign, rows[i].text);
        o->failed = true;
    }
    /* An error the policy's code raised (or the engine logged) fails the case, unless a
     * log expectation at level error allows it. */
    for (size_t i = 0; !bad_pattern && i < r.nevents; i++) {
        const event_t *e = &r.events[i];
        if (e->kind != EV_LOG || e->level != MMT_LOG_ERROR) continue;
        bool allows = false;
        for (size_t k = 0; k < nex && !allows; k++) {
            const expectation_t *x = &ex[k];
            allows = x->kind == EV_LOG && x->level == MMT_LOG_ERROR &&
                      e->t >= x->from - eps && e->t <= x->to + eps &&
                      pattern_matches(L, e->name, x->match, &why) == 1;
        }
        if (!allows) {
            appendf(&o->report, "  + t=%.9g: an error no expectation allows: %s\n", e->t, e->name);
            o->failed = true;
        }
    }
    if (logs_missing) {
        appendf(&o->report, "  the log of the run:\n");
        size_t lines = 0;
        for (size_t i = 0; i < r.nevents; i++)
            if (r.events[i].kind == EV_LOG && r.events[i].level <= dump_level)
                appendf(&o->report, "    t=%-8.9g %-5s %s\n", r.events[i].t,
                        level_names[r.events[i].level], r.events[i].name), lines++;
        if (!lines)
            appendf(&o->report, "    (no line at level %s or above)\n", level_names[dump_level]);
        o->failed = true;
    }
    free(used);
    free(rows);
    if (bad_pattern) goto broken;
    /* What the case covered. */
    const pstate_t *s = r.engine->cur;
    for (size_t k = 0; k < s->nrules; k++) {
        bool fired = false;
        for (size_t i = 0; i < r.nevents && !fired; i++)
            fired = r.events[i].kind == EV_FIRE && strcmp(r.events[i].name, s->rules[k].name) == 0;
        cover(policy, s->rules[k].name, s->rules[k].where, false, fired);
    }
    for (size_t k = 0; k < s->ntasks; k++)
        cover(policy, "task", s->tasks[k].where, true, s->tasks[k].runs > 0);
    goto done;
broken:
    o->broken = true;
    appendf(&o->report, "  %s:%d: %s\n", su->path, c->line, why.s ? why.s : "?");
done:
    free(why.s);
    run_free(&r);
    mmt__series_free(&series);
    free(recorded);
    for (size_t k = 0; k < nex; k++) {
        free(ex[k].name);
        free(ex[k].match);
    }
    free(ex);
    free(policy);
    lua_settop(L, top);
}

/* ---- test: the command ------------------------------------------------------------------- */

/* `s` as XML character data: each line made valid XML 1.0 text (bytes that are not UTF-8,
 * control characters, U+FFFE and U+FFFF become U+FFFD), the line breaks kept, and the
 * markup characters escaped. */
static void xml_text(FILE *f, const char *s)
{
    while (s && *s) {
        size_t len = strcspn(s, "\n");
        char *line = xrealloc(NULL, len + 1), *clean = xrealloc(NULL, 3 * len + 4);
        memcpy(line, s, len);
        line[len] = '\0';
        bool cut;
        mmt__utf8_clean(line, clean, 3 * len + 3, MMT_UTF8_XML, &cut);
        for (const char *c = clean; *c; c++) {
            switch (*c) {
            case '<': fputs("&lt;", f); break;
            case '>': fputs("&gt;", f); break;
            case '&': fputs("&amp;", f); break;
            case '"': fputs("&quot;", f); break;
            default: fputc(*c, f);
            }
        }
        free(line);
        free(clean);
        s += len;
        if (*s == '\n') {
            fputc('\n', f);
            s++;
        }
    }
}

typedef struct result {
    const char *file;
    char *name;      /* NULL: the file itself could not be loaded */
    int line;
    outcome_t o;
} result_t;

static int write_junit(const char *path, const result_t *res, size_t n)
{
    char err[600];
    FILE *f = mmt__open_regular(path, true, err, sizeof err);
    if (!f) {
        fprintf(stderr, "mmt-policy: %s\n", err);
        return -1;
    }
    size_t failures = 0, errors = 0;
    for (size_t i = 0; i < n; i++) {
        failures += res[i].o.failed && !res[i].o.broken;
        errors += res[i].o.broken;
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"mmt-policy test\" "
            "tests=\"%zu\" failures=\"%zu\" errors=\"%zu\">\n", n, failures, errors);
    for (size_t i = 0; i < n;) {
        size_t j = i, sf = 0, se = 0;
        double seconds = 0;
        for (; j < n && res[j].file == res[i].file; j++) {
            sf += res[j].o.failed && !res[j].o.broken;
            se += res[j].o.broken;
            seconds += res[j].o.seconds;
        }
        fputs("  <testsuite name=\"", f);
        xml_text(f, res[i].file);
        fprintf(f, "\" tests=\"%zu\" failures=\"%zu\" errors=\"%zu\" time=\"%.6f\">\n", j - i, sf,
                se, seconds);
        for (size_t k = i; k < j; k++) {
            const result_t *x = &res[k];
            fputs("    <testcase name=\"", f);
            xml_text(f, x->name ? x->name : "(the file)");
            fputs("\" classname=\"", f);
            xml_text(f, x->file);
            fputs("\" file=\"", f);
            xml_text(f, x->file);
            fprintf(f, "\" line=\"%d\" time=\"%.6f\"", x->line, x->o.seconds);
            if (!x->o.failed && !x->o.broken) {
                fputs("/>\n", f);
                continue;
            }
            fprintf(f, ">\n      <%s message=\"", x->o.broken ? "error" : "failure");
            xml_text(f, x->o.broken ? "the case could not run" : "the events differ");
            fputs("\">", f);
            xml_text(f, x->o.report.s);
            fprintf(f, "</%s>\n    </testcase>\n", x->o.broken ? "error" : "failure");
        }
        fputs("  </testsuite>\n", f);
        i = j;
    }
    fputs("</testsuites>\n", f);
    if (fclose(f) != 0) {
        fprintf(stderr, "mmt-policy: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* The runner's state: the standard library less what could escape its budgets: `jit` (a
 * compiled loop runs no hook), `debug` (sethook removes it), `ffi` and `newproxy` (a
 * finalizer runs where no budget is). */
static void runner_panic_set(lua_State *L);
static void runner_libs(lua_State *L)
{
    luaL_openlibs(L);
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    static const char *const gone[] = {"jit", "debug", "ffi", "newproxy", "jit.util",
                                       "jit.profile", NULL};
    lua_getfield(L, LUA_GLOBALSINDEX, "package");
    int pkg = lua_gettop(L);
    lua_getfield(L, pkg, "loaded");
    lua_getfield(L, pkg, "preload");
    for (size_t i = 0; gone[i]; i++) {
        lua_pushnil(L);
        lua_setfield(L, LUA_GLOBALSINDEX, gone[i]);
        lua_pushnil(L);
        lua_setfield(L, pkg + 1, gone[i]);
        lua_pushnil(L);
        lua_setfield(L, pkg + 2, gone[i]);
    }
    lua_settop(L, pkg - 1);
    lua_sethook(L, runner_hook, LUA_MASKCOUNT, RUNNER_HOOK_COUNT);
    runner_panic_set(L);
}

/* An error outside any protected call (none is left: this is the last guard). */
static int runner_panic(lua_State *L)
{
    const char *m = lua_tostring(L, -1);
    fprintf(stderr, "mmt-policy: the test's Lua failed outside a protected call: %s\n",
            m ? m : "(not a string)");
    exit(EXIT_UNREADABLE);
}

static void runner_panic_set(lua_State *L)
{
    lua_atpanic(L, runner_panic);
}

static int cmd_test(int argc, char **argv)
{
    const char *junit = NULL;
    bool want_coverage = false, debug = false;
    int first = 0;
    for (; first < argc && argv[first][0] == '-' && argv[first][1]; first++) {
        if (strcmp(argv[first], "--junit") == 0 && first + 1 < argc &&
            strncmp(argv[first + 1], "--", 2) != 0)
            junit = argv[++first];
        else if (strcmp(argv[first], "--coverage") == 0) want_coverage = true;
        else if (strcmp(argv[first], "--debug") == 0) debug = true;
        else if (strcmp(argv[first], "--") == 0) {
            first++;
            break;
        } else {
            fprintf(stderr, "mmt-policy test: unknown option %s\n", argv[first]);
            return EXIT_UNREADABLE;
        }
    }
    if (first == argc) {
        fputs("mmt-policy test: no test file given\n", stderr);
        return EXIT_UNREADABLE;
    }
    result_t *res = NULL;
    size_t nres = 0, passed = 0, failed = 0, unreadable = 0;
    for (int a = first; a < argc; a++) {
        suite_t su = {.path = argv[a]};
        char err[1024];
        lua_State *L = lua_newstate(l_alloc, NULL);
        if (!L) {
            fputs("mmt-policy: out of memory\n", stderr);
            return EXIT_UNREADABLE;
        }
        runner_libs(L);
        if (!load_suite(L, &su, err, sizeof err)) {
            printf("ERROR %s: %s\n", su.path, err);
            res = xrealloc(res, (nres + 1) * sizeof *res);
            res[nres] = (result_t){su.path, NULL, 0, {.broken = true}};
            appendf(&res[nres].o.report, "%s\n", err);
            nres++;
            unreadable++;
            for (size_t i = 0; i < su.ncases; i++) free(su.cases[i].name);
            su.ncases = 0; /* the cases it declared before it failed are not run */
        }
        for (size_t i = 0; i < su.ncases; i++) {
            const tcase_t *c = &su.cases[i];
            outcome_t o = {0};
            if (debug) printf("%s:%d: %s\n", su.path, c->line, c->name);
            run_case(L, &su, c, debug, &o);
            if (o.broken) {
                printf("ERROR %s:%d: %s\n%s", su.path, c->line, c->name, o.report.s);
                unreadable++;
            } else if (o.failed) {
                printf("FAIL  %s:%d: %s\n%s", su.path, c->line, c->name, o.report.s);
                failed++;
            } else {
                printf("ok    %s:%d: %s\n", su.path, c->line, c->name);
                passed++;
            }
            res = xrealloc(res, (nres + 1) * sizeof *res);
            res[nres++] = (result_t){su.path, c->name, c->line, o};
        }
        lua_close(L);
        free(su.cases);
    }
    printf("%zu passed, %zu failed, %zu could not run\n", passed, failed, unreadable);
    if (want_coverage) {
        size_t missed = 0;
        for (size_t i = 0; i < ncoverage; i++) {
            const covered_t *c = &coverage[i];
            if (c->hit) continue;
            if (!missed++) printf("coverage: not exercised by any case:\n");
            if (c->task) printf("  %s: the task at %s never ran\n", c->policy, c->where);
            else printf("  %s: rule \"%s\" (%s) never fired\n", c->policy, c->what, c->where);
        }
        printf("coverage: %zu of %zu rules and tasks exercised\n", ncoverage - missed, ncoverage);
    }
    int rc = unreadable ? EXIT_UNREADABLE : failed ? EXIT_FAIL : EXIT_PASS;
    if (junit && write_junit(junit, res, nres) != 0 && rc == EXIT_PASS) rc = EXIT_UNREADABLE;
    for (size_t i = 0; i < nres; i++) {
        free(res[i].name);
        free(res[i].o.report.s);
    }
    free(res);
    for (size_t i = 0; i < ncoverage; i++) {
        free(coverage[i].policy);
        free(coverage[i].what);
        free(coverage[i].where);
    }
    free(coverage);
    return rc;
}

/* ---- replay -------------------------------------------------------------------------------- */

static int cmd_replay(int argc, char **argv)
{
    const char *svg = NULL, *args[2] = {NULL, NULL};
    double interval = 1;
    int nargs = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--svg") == 0 && i + 1 < argc) svg = argv[++i];
        else if (strcmp(argv[i], "--interval") == 0 && i + 1 < argc) {
            char *end;
            interval = strtod(argv[++i], &end);
            if (*end || !(interval >= 0.001 && interval <= 86400)) {
                fprintf(stderr, "mmt-policy replay: --interval \"%s\": not a number of seconds "
                        "from 0.001 to 86400\n", argv[i]);
                return EXIT_UNREADABLE;
            }
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "mmt-policy replay: unknown option %s\n", argv[i]);
            return EXIT_UNREADABLE;
        } else if (nargs < 2) args[nargs++] = argv[i];
        else {
            fprintf(stderr, "mmt-policy replay: one policy and one trace\n");
            return EXIT_UNREADABLE;
        }
    }
    if (nargs != 2) {
        fputs("mmt-policy replay: give a policy and a trace (mmt-run --trace)\n", stderr);
        return EXIT_UNREADABLE;
    }
    char err[600];
    mmt__series_t series;
    mmt__recorded_t *recorded;
    size_t nrecorded;
    if (mmt__series_from_trace(&series, args[1], &recorded, &nrecorded, err, sizeof err) != 0) {
        fprintf(stderr, "mmt-policy replay: %s\n", err);
        return EXIT_UNREADABLE;
    }
    free(recorded);
    run_t r = {.echo = stderr, .echo_prefix = "mmt-policy replay: "};
    watch_saved_t saved;
    int loaded;
    double start = series.time[0] < 0 ? series.time[0] : 0;
    int rc = EXIT_PASS;
    if (!run_start(&r, interval, start)) {
        fputs("mmt-policy: out of memory\n", stderr);
        rc = EXIT_UNREADABLE;
    } else if (watch(&saved, POLICY_WATCH_S, "loading %s", args[0]),
               loaded = mmt_policy_load(r.engine, args[0]), unwatch(&saved), loaded != 0) {
        rc = EXIT_FAIL; /* the engine's log said why */
    } else {
        mmt__series_carry_t carry = {0};
        size_t printed = 0;
        for (size_t i = 0; i < series.nsteps; i++) {
            mmt__step_t step;
            r.now = series.time[i];
            if (!mmt__series_step(&series, i, &carry, &step)) continue;
            watch(&saved, POLICY_WATCH_S, "%s at t=%.9g", args[0], step.time);
            mmt__virtual_step(r.engine, &step);
            unwatch(&saved);
            for (; printed < r.nevents; printed++) {
                const event_t *e = &r.events[printed];
                /* One line an event, whatever the names hold. */
                char name[3 * 256 + 4];
                bool cut;
                mmt__utf8_clean(e->name, name, sizeof name - 1, MMT_UTF8_XML, &cut);
                if (e->kind == EV_FIRE || e->kind == EV_RESOLVE)
                    printf("%.3f %s %s\n", e->t, kind_names[e->kind], name);
                else if (e->kind == EV_CALL)
                    printf("%.3f call %s(%" PRId64 ")\n", e->t, name, e->arg);
                fflush(stdout); /* in order with the log, on stderr */
            }
        }
        mmt__series_carry_free(&carry);
        if (svg) {
            size_t n = 0;
            for (size_t i = 0; i < r.nevents; i++)
                n += r.events[i].kind == EV_FIRE || r.events[i].kind == EV_RESOLVE;
            mmt__plot_event_t *ev = xrealloc(NULL, (n ? n : 1) * sizeof *ev);
            n = 0;
            for (size_t i = 0; i < r.nevents; i++) {
                const event_t *e = &r.events[i];
                if (e->kind != EV_FIRE && e->kind != EV_RESOLVE) continue;
                ev[n].t = e->t;
                ev[n].fired = e->kind == EV_FIRE;
                snprintf(ev[n].rule, sizeof ev[n].rule, "%s", e->name);
                n++;
            }
            char title[PATH_MAX + 64];
            snprintf(title, sizeof title, "replay of %s", args[0]);
            if (mmt__plot_with(args[1], svg, title, ev, n, err, sizeof err) != 0) {
                fprintf(stderr, "mmt-policy replay: %s\n", err);
                rc = EXIT_UNREADABLE;
            }
            free(ev);
        }
    }
    run_free(&r);
    mmt__series_free(&series);
    return rc;
}

/* ---- main ---------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs("usage: mmt-policy check [--actions a,b,c] [--strict] FILE...\n"
          "       mmt-policy test [--junit FILE] [--coverage] [--debug] TEST...\n"
          "       mmt-policy replay [--interval S] [--svg OUT.svg] POLICY TRACE.csv\n"
          "exit status: 0 all good, 1 a policy failed to load or a case failed, 2 a test file\n"
          "or trace could not be read, or the command line is wrong\n", f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_UNREADABLE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return EXIT_PASS;
    }
    char err[256];
    if (mmt__lj_load(err, sizeof err) != 0) {
        fprintf(stderr, "mmt-policy: %s\n", err);
        return EXIT_UNREADABLE;
    }
    if (strcmp(argv[1], "test") == 0) return cmd_test(argc - 2, argv + 2);
    if (strcmp(argv[1], "replay") == 0) return cmd_replay(argc - 2, argv + 2);
    if (strcmp(argv[1], "check") == 0) {
        const char *actions = NULL;
        bool strict = false;
        int i = 2;
        for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
            if (strcmp(argv[i], "--actions") == 0 && i + 1 < argc) actions = argv[++i];
            else if (strcmp(argv[i], "--strict") == 0) strict = true;
            else if (strcmp(argv[i], "--") == 0) {
                i++;
                break;
            } else {
                fprintf(stderr, "mmt-policy check: unknown option %s\n", argv[i]);
                return EXIT_UNREADABLE;
            }
        }
        if (i == argc) {
            fputs("mmt-policy check: no policy file given\n", stderr);
            return EXIT_UNREADABLE;
        }
        int rc = EXIT_PASS;
        for (; i < argc; i++)
            if (check_file(argv[i], strict && !actions ? "" : actions, strict) != EXIT_PASS)
                rc = EXIT_FAIL;
        return rc;
    }
    fprintf(stderr, "mmt-policy: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return EXIT_UNREADABLE;
}

/*
 * mmt-run on real commands: the program's output and exit status come through untouched,
 * a death by signal is said and exits as a shell would, the summary is right in each
 * format (JSON checked by Python, Prometheus by the official client's parser), and the
 * policy runs inside the program. Bad input is refused before the program starts: a policy
 * that does not load, an option out of its range. A program the library cannot enter
 * (static, set-user-ID) is said as such. Every output parses with a standard parser
 * whatever the rule and program names hold. Signals sent to mmt-run reach the program,
 * the trace's descriptor stays out of the program's way, and the temporary files go to
 * $TMPDIR and never stay there: every mmt-run here gets a TMPDIR of the test's own,
 * checked empty afterwards.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <termios.h>

#include "cgrouputil.h"
#include "policyutil.h"
#include "procutil.h"

#define MiB (UINT64_C(1) << 20)

static char mmt_run[PATH_MAX + 16], bin_dir[PATH_MAX], tmp_dir[96]; /* tmp_dir: test_dir/tmp */

/* Programs the tests started that a failed test may have left running (killed at the end). */
static pid_t strays[32];
static int nstrays;

static int setup(void **state)
{
    /* The signal tests start from default dispositions, whatever this program was started
     * with (nohup ignores SIGHUP, a shell's background job SIGINT and SIGQUIT): an ignored
     * signal is kept ignored for the program by design, and those that test that set it
     * themselves. */
    static const int defaults[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGCHLD};
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) signal(defaults[i], SIG_DFL);
    if (make_test_dir(state) != 0) return -1;
    ssize_t n = readlink("/proc/self/exe", bin_dir, sizeof bin_dir - 1);
    if (n <= 0) return -1;
    bin_dir[n] = '\0';
    *strrchr(bin_dir, '/') = '\0';
    snprintf(mmt_run, sizeof mmt_run, "%s/mmt-run", bin_dir);
    snprintf(tmp_dir, sizeof tmp_dir, "%s/tmp", test_dir);
    return mkdir(tmp_dir, 0700);
}

static int teardown(void **state)
{
    /* Only a process still running one of the tests' programs: its id may be another's. */
    for (int i = 0; i < nstrays; i++) {
        char path[64], cmdline[256];
        snprintf(path, sizeof path, "/proc/%ld/cmdline", (long)strays[i]);
        read_file(path, cmdline, sizeof cmdline);
        if (strstr(cmdline, "e2e_signals") || strcmp(cmdline, "sleep") == 0)
            kill(strays[i], SIGKILL);
    }
    return remove_test_dir(state);
}

typedef struct result {
    int status;
    char out[8192], err[8192];
} result_t;

/* The names in `dir`, one per line; "" when it is empty. */
static void listing(const char *dir, char *buf, size_t len)
{
    buf[0] = '\0';
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(buf, len, "(cannot open %.200s: %s)\n", dir, strerror(errno));
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        size_t n = strlen(buf);
        snprintf(buf + n, len - n, "%s\n", e->d_name);
    }
    closedir(d);
}

#define assert_no_temporary_files(dir)                                                     \
    do {                                                                                   \
        char left_[4096];                                                                  \
        listing((dir), left_, sizeof left_);                                               \
        if (left_[0]) fail_msg("mmt-run left in %s:\n%s", (dir), left_);                   \
    } while (0)

/* Runs "ENV mmt-run ARGS" through sh (ENV: a prefix such as "TMPDIR=/x" or "env -u
 * TMPDIR"); returns its exit status, stdout and stderr. */
static void mmt_run_env(const char *env, const char *args, result_t *r)
{
    char out[512], err[512], cmd[8192];
    snprintf(out, sizeof out, "%s/run.out", test_dir);
    snprintf(err, sizeof err, "%s/run.err", test_dir);
    snprintf(cmd, sizeof cmd, "%s '%s' %s > '%s' 2> '%s'", env, mmt_run, args, out, err);
    int status = system(cmd);
    r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    read_file(out, r->out, sizeof r->out);
    read_file(err, r->err, sizeof r->err);
}

/* Runs "mmt-run ARGS" through sh with the tests' TMPDIR, and checks that it left nothing
 * there. */
static void mmt_run_with(const char *args, result_t *r)
{
    char env[PATH_MAX + 16];
    snprintf(env, sizeof env, "TMPDIR='%s'", tmp_dir);
    mmt_run_env(env, args, r);
    assert_no_temporary_files(tmp_dir);
}

/* In a forked child: becomes mmt-run with `args` (NULL-terminated, after mmt-run itself)
 * and TMPDIR=`tmpdir`, its stdout and stderr into test_dir/NAME.out and NAME.err, with no
 * core files; `stdin_fd` (if >= 0) as its stdin. */
static _Noreturn void exec_mmt_run(const char *name, const char *tmpdir, int stdin_fd,
                                   const char *const *args)
{
    char out[600], err[600];
    snprintf(out, sizeof out, "%s/%s.out", test_dir, name);
    snprintf(err, sizeof err, "%s/%s.err", test_dir, name);
    const char *argv[32] = {mmt_run};
    for (size_t i = 0; args[i] && i + 2 < sizeof argv / sizeof argv[0]; i++) argv[i + 1] = args[i];
    int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0) _exit(120);
    dup2(o, STDOUT_FILENO);
    dup2(e, STDERR_FILENO);
    if (stdin_fd >= 0) dup2(stdin_fd, STDIN_FILENO);
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    setenv("TMPDIR", tmpdir, 1);
    execv(mmt_run, (char **)argv);
    _exit(121);
}

/* exec_mmt_run in a child; returns its pid. */
static pid_t start_mmt_run(const char *name, const char *tmpdir, const char *const *args)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) exec_mmt_run(name, tmpdir, -1, args);
    return pid;
}

/* Waits at most `seconds` for the file at `path` to hold exactly `want`. */
static bool wait_for_text(const char *path, const char *want, double seconds)
{
    double end = now_seconds() + seconds;
    char text[4096];
    for (;;) {
        read_file(path, text, sizeof text);
        if (strcmp(text, want) == 0) return true;
        if (now_seconds() > end) return false;
        sleep_ms(20);
    }
}

/* The process id a program wrote into `path`; fails the test if none came in `seconds`. */
static pid_t wait_for_pid_file(const char *path, double seconds)
{
    double end = now_seconds() + seconds;
    char text[64];
    for (;;) {
        read_file(path, text, sizeof text);
        long pid = strtol(text, NULL, 10);
        if (pid > 0 && strchr(text, '\n')) {
            if (nstrays < (int)(sizeof strays / sizeof strays[0])) strays[nstrays++] = (pid_t)pid;
            return (pid_t)pid;
        }
        if (now_seconds() > end) fail_msg("no process id in %s after %.0f s", path, seconds);
        sleep_ms(20);
    }
}

/* Whether process `pid` has ended: it is gone, or a zombie that nobody reaped yet (a
 * container's first process may never reap the orphans it inherits). */
static bool process_gone(pid_t pid)
{
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    read_file(path, stat, sizeof stat);
    const char *end = strrchr(stat, ')');
    return !stat[0] || (end && (end[2] == 'Z' || end[2] == 'X'));
}

static bool wait_until_gone(pid_t pid, double seconds)
{
    double end = now_seconds() + seconds;
    while (!process_gone(pid)) {
        if (now_seconds() > end) return false;
        sleep_ms(20);
    }
    return true;
}

static void test_mmtrun_forwards_output_and_exit_status(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    static result_t r;
    mmt_run_with("-- sh -c 'echo hello; echo oops >&2; exit 3'", &r);
    assert_int_equal(r.status, 3);
    assert_string_equal(r.out, "hello\n");
    assert_contains(r.err, "oops\n");
    assert_contains(r.err, "mmt-run: sh: allocated ");
    assert_contains(r.err, " allocations, ran ");
}

static void test_mmtrun_reports_the_program_not_its_forked_copies(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* The shell exits at once and reports; its forked subshell (a copy of the reporting
     * process, not an exec) ends 0.3 s later through _exit and must not write the report
     * again: once the first one is removed, none may reappear. */
    char report[600], cmd[PATH_MAX * 2];
    snprintf(report, sizeof report, "%s/fork.json", test_dir);
    snprintf(cmd, sizeof cmd,
             "exec env LD_PRELOAD='%s/libmmtmem-preload.so' MMT_REPORT=json MMT_OUT='%s' "
             "MMT_REPORT_PID=$$ sh -c '( sleep 0.3; exit 0 ) & exit 0'",
             bin_dir, report);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(access(report, F_OK), 0);
    unlink(report);
    sleep_ms(800);
    if (access(report, F_OK) == 0) fail_msg("the forked subshell wrote the report again");
}

static void test_mmtrun_says_when_the_program_dies_of_a_signal(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    static result_t r;
    mmt_run_with("-- sh -c 'kill -SEGV $$'", &r);
    assert_int_equal(r.status, 128 + 11);
    assert_contains(r.err, "mmt-run: sh was killed by signal 11 (Segmentation fault)\n");
}

static void test_mmtrun_rejects_what_it_cannot_run(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    static result_t r;
    mmt_run_with("-- /no/such/program", &r);
    assert_int_equal(r.status, 127);
    assert_string_equal(r.err, "mmt-run: cannot run /no/such/program: No such file or directory\n");
    mmt_run_with("--report xml -- true", &r);
    assert_int_equal(r.status, 2);
    assert_contains(r.err, "--report is text, json or prometheus, not \"xml\"");
    mmt_run_with("--interval", &r);
    assert_int_equal(r.status, 2);
    assert_contains(r.err, "usage: mmt-run");
}

static void test_mmtrun_summary_in_json_counts_the_leak(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    static result_t r;
    char args[PATH_MAX * 2], json[4096], check[PATH_MAX + 512];
    snprintf(args, sizeof args, "--report json --out %s/summary.json -- %s/e2e_threads", test_dir,
             bin_dir);
    mmt_run_with(args, &r);
    assert_int_equal(r.status, 0);
    snprintf(check, sizeof check, "%s/summary.json", test_dir);
    read_file(check, json, sizeof json);
    /* The program leaks 12345 bytes on purpose; glibc keeps a little more of its own. */
    snprintf(check, sizeof check,
             "/usr/bin/python3 -c 'import json, sys; d = json.load(open(\"%s/summary.json\")); "
             "sys.exit(0 if d[\"in_use_at_exit\"] >= 12345 and d[\"allocations\"] > 100000 and "
             "d[\"peak\"] >= d[\"in_use_at_exit\"] and d[\"run_time_seconds\"] > 0 and "
             "d[\"program\"].endswith(\"e2e_threads\") else 1)'",
             test_dir);
    if (system(check) != 0) fail_msg("summary: %s", json);
}

static void test_mmtrun_summary_in_prometheus_parses(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    static result_t r;
    char args[1024], check[1024];
    snprintf(args, sizeof args, "--report prometheus --out %s/summary.prom -- sort /etc/passwd", test_dir);
    mmt_run_with(args, &r);
    assert_int_equal(r.status, 0);
    snprintf(check, sizeof check,
             "/usr/bin/python3 -c 'from prometheus_client.parser import text_string_to_metric_families as p; "
             "n = {s.name for f in p(open(\"%s/summary.prom\").read()) for s in f.samples}; "
             "import sys; sys.exit(0 if {\"mmt_allocated_bytes_total\", \"mmt_in_use_at_exit_bytes\", "
             "\"mmt_run_time_seconds\"} <= n else 1)'",
             test_dir);
    assert_int_equal(system(check), 0);
}

static void test_mmtrun_runs_the_policy_inside_the_program(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    static result_t r;
    char policy[512], args[1024];
    snprintf(policy, sizeof policy, "%s/ticks.lua", test_dir);
    write_in_place(policy, "local mmt = require 'mmt'\n"
                           "mmt.every(0.05, function(m) mmt.log('info', 'TICK %d', m.allocations) end)\n");
    snprintf(args, sizeof args, "--policy %s --interval 10 -- sleep 0.5", policy);
    mmt_run_with(args, &r);
    assert_int_equal(r.status, 0);
    assert_contains(r.err, "mmt policy [info] pid ");
    assert_contains(r.err, ": TICK ");
}

static void test_mmtrun_relative_paths_survive_a_change_of_folder(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* The program changes folder before it execs: a relative --policy or --trace given to
     * mmt-run still means mmt-run's folder. */
    char policy[512], cmd[PATH_MAX * 2], out[600], err[600], text[8192];
    snprintf(policy, sizeof policy, "%s/rel.lua", test_dir);
    write_in_place(policy, "local mmt = require 'mmt'\n"
                           "mmt.every(0.05, function(m) mmt.log('info', 'REL TICK') end)\n");
    snprintf(out, sizeof out, "%s/rel.out", test_dir);
    snprintf(err, sizeof err, "%s/rel.err", test_dir);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && TMPDIR='%s' '%s' --policy rel.lua --interval 10 --trace rel.csv -- "
             "sh -c 'cd / && exec sleep 0.3' > '%s' 2> '%s'",
             test_dir, tmp_dir, mmt_run, out, err);
    assert_int_equal(system(cmd), 0);
    read_file(err, text, sizeof text);
    assert_contains(text, "mmt policy [info] pid ");
    assert_contains(text, ": REL TICK");
    assert_null(strstr(text, "cannot"));
    snprintf(cmd, sizeof cmd, "%s/rel.csv", test_dir);
    assert_int_equal(access(cmd, R_OK), 0);
    assert_int_not_equal(access("/rel.csv", F_OK), 0);
}

/* The first of a few places, relative to the test program, where `name` is. */
static bool find_source(const char *name, char *buf, size_t len)
{
    return find_source_in(bin_dir, name, buf, len);
}

/* check_plot.py's options saying what the machine has, as the library reads it here: a
 * program mmt-run starts runs in this process's cgroup. */
static void machine_options(char *buf, size_t len)
{
    mmt_machine_t m;
    mmt_machine_read(&m, MMT_MACHINE_ALL);
    char limit[32] = "none";
    if (m.cgroup.version && m.cgroup.limit != MMT_UNLIMITED)
        snprintf(limit, sizeof limit, "%" PRIu64, m.cgroup.limit);
    snprintf(buf, len, "--cgroup=%s --limit=%s --psi=%s", m.cgroup.version ? "yes" : "no", limit,
             m.psi.valid ? "yes" : "no");
}

/* Takes a screenshot of test_dir/NAME.svg with Debian's chromium, headless, into
 * test_dir/NAME.png, and puts that path into png ("" if chromium is not installed). */
static void screenshot(const char *name, char *png, size_t len)
{
    char cmd[PATH_MAX * 2 + 512];
    png[0] = '\0';
    if (access("/usr/bin/chromium", X_OK) != 0) {
        print_message("chromium is not installed: the picture is checked as XML only\n");
        return;
    }
    snprintf(png, len, "%s/%s.png", test_dir, name);
    snprintf(cmd, sizeof cmd,
             "timeout 120 /usr/bin/chromium --headless --no-sandbox --disable-gpu "
             "--disable-dev-shm-usage --hide-scrollbars --window-size=960,540 "
             "--screenshot='%s' 'file://%s/%s.svg' > /dev/null 2>&1",
             png, test_dir, name);
    if (system(cmd) != 0) fail_msg("chromium could not take the screenshot");
}

/* Runs tests/e2e/check_plot.py with `options` on test_dir/NAME.csv and NAME.svg, and the
 * screenshot `png` if not "". */
static void check_plot(const char *options, const char *name, const char *rule, const char *png)
{
    char checker[PATH_MAX + 64], cmd[PATH_MAX * 3 + 512];
    if (!find_source("tests/e2e/check_plot.py", checker, sizeof checker))
        fail_msg("tests/e2e/check_plot.py not found from %s", bin_dir);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' %s '%s/%s.csv' '%s/%s.svg' '%s' %s", checker,
             options, test_dir, name, test_dir, name, rule, png);
    assert_int_equal(system(cmd), 0);
}

static void test_mmtrun_trace_and_svg_show_usage_and_rule_events(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    static result_t r;
    char policy[512], args[2048], check[PATH_MAX * 2 + 1024];
    snprintf(policy, sizeof policy, "%s/big.lua", test_dir);
    write_in_place(policy, "local mmt = require 'mmt'\n"
                           "mmt.rule { name = 'big', metric = 'in_use', above = 20 * mmt.MiB,\n"
                           "  below = 10 * mmt.MiB, fire = function(m) end }\n");
    /* Python through malloc (not its own arenas): a list of 600,000 strings is ~50 MiB. */
    snprintf(args, sizeof args,
             "--policy %s --trace %s/t.csv --svg %s/t.svg -- env PYTHONMALLOC=malloc "
             "/usr/bin/python3 -c 'import time; a = [str(i) for i in range(600000)]; "
             "time.sleep(0.1); del a; time.sleep(0.1); print(\"done\")'",
             policy, test_dir, test_dir);
    mmt_run_with(args, &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "done\n");
    assert_null(strstr(r.err, "no picture"));

    /* Drawn by a real browser when there is one: Debian's chromium, headless. The trace's
     * machine columns must say what the library reads here. */
    char png[600], machine[128];
    screenshot("t", png, sizeof png);
    machine_options(machine, sizeof machine);
    check_plot(machine, "t", "big", png);

    /* --svg alone leaves no trace behind in TMPDIR. */
    snprintf(args, sizeof args, "--svg %s/alone.svg -- true", test_dir);
    mmt_run_with(args, &r);
    assert_int_equal(r.status, 0);
    snprintf(check, sizeof check, "%s/alone.svg", test_dir);
    assert_int_equal(access(check, R_OK), 0);
    assert_no_temporary_files(tmp_dir);

    /* A picture that cannot be written is said, and the program's status still comes back. */
    mmt_run_with("--svg /no/such/dir/x.svg -- sh -c 'exit 4'", &r);
    assert_int_equal(r.status, 4);
    assert_contains(r.err, "mmt-run: no picture: cannot write /no/such/dir/x.svg: No such file or directory");
    mmt_run_with("--trace /no/such/dir/t.csv -- sh -c 'echo still; exit 5'", &r);
    assert_int_equal(r.status, 5);
    assert_string_equal(r.out, "still\n");
    assert_contains(r.err, "mmt: cannot write the trace to /no/such/dir/t.csv: No such file or directory\n");
}

/* ---- The policy, checked before the program starts ------------------------------------ */

/* How many times `needle` is in `text`. */
static int occurrences(const char *text, const char *needle)
{
    int n = 0;
    for (const char *at = strstr(text, needle); at; at = strstr(at + 1, needle)) n++;
    return n;
}

static void test_mmtrun_missing_or_broken_policy_is_refused_before_the_program_starts(void **state)
{
    (void)state;
    /* The program would start another process: each would load the policy and say what is
     * wrong with it. mmt-run says it once, and the program never starts. */
    static const struct {
        const char *name, *text, *error;
    } cases[] = {
        {"missing.lua", NULL, "missing.lua: cannot open: No such file or directory"},
        {"syntax.lua", "local x = = 1\n", "syntax.lua:1: "},
        {"field.lua",
         "local mmt = require 'mmt'\n"
         "mmt.rule { name = 'hw', metric = 'in_use', above = 'lots', fire = function() end }\n",
         "field.lua:2: rule \"hw\": 'above' must be a number"},
        {"runtime.lua", "error('no way')\n", "runtime.lua:1: no way"},
    };
    static result_t r;
    char policy[600], ran[600], args[2048], want[2048];
    snprintf(ran, sizeof ran, "%s/ran", test_dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(policy, sizeof policy, "%s/%s", test_dir, cases[i].name);
        if (cases[i].text) write_in_place(policy, cases[i].text);
        snprintf(args, sizeof args, "--policy '%s' -- sh -c 'touch \"%s\"; sh -c true'", policy, ran);
        mmt_run_with(args, &r);
        if (r.status != 2) fail_msg("%s: exit %d, stderr:\n%s", cases[i].name, r.status, r.err);
        snprintf(want, sizeof want, "mmt-run: --policy %s: %s/%s", policy, test_dir, cases[i].error);
        if (strncmp(r.err, want, strlen(want)) != 0 || occurrences(r.err, "\n") != 1)
            fail_msg("%s: expected one line starting \"%s\", got:\n%s", cases[i].name, want, r.err);
        assert_int_not_equal(access(ran, F_OK), 0);
    }
}

static void test_mmtrun_policy_that_is_not_a_regular_file_is_refused_without_hanging(void **state)
{
    (void)state;
    /* Nobody writes into the FIFO: a reader would wait forever (timeout ends it). */
    static result_t r;
    char fifo[600], dir[600], ran[600], env[PATH_MAX + 64], args[2048];
    snprintf(fifo, sizeof fifo, "%s/policy.fifo", test_dir);
    snprintf(dir, sizeof dir, "%s/policy.d", test_dir);
    snprintf(ran, sizeof ran, "%s/ran", test_dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(env, sizeof env, "TMPDIR='%s' timeout 20", tmp_dir);
    const struct {
        const char *path, *kind;
    } cases[] = {{fifo, "a FIFO"}, {dir, "a directory"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(args, sizeof args, "--policy '%s' -- sh -c 'touch \"%s\"'", cases[i].path, ran);
        mmt_run_env(env, args, &r);
        if (r.status != 2) fail_msg("%s: exit %d, stderr:\n%s", cases[i].path, r.status, r.err);
        char want[1024];
        snprintf(want, sizeof want, "mmt-run: --policy %s: not a regular file but %s\n",
                 cases[i].path, cases[i].kind);
        assert_string_equal(r.err, want);
        assert_int_not_equal(access(ran, F_OK), 0);
        assert_no_temporary_files(tmp_dir);
    }
}

/* ---- Programs the library cannot enter ------------------------------------------------- */

/* Compiles `source` into test_dir/bin/NAME with gcc and `flags`. */
static void build_program(const char *name, const char *flags, const char *source)
{
    char src[600], cmd[2048];
    snprintf(cmd, sizeof cmd, "%s/bin", test_dir);
    if (access(cmd, F_OK) != 0) assert_int_equal(mkdir(cmd, 0755), 0);
    snprintf(src, sizeof src, "%s/%s.c", test_dir, name);
    write_in_place(src, source);
    snprintf(cmd, sizeof cmd, "gcc %s -o '%s/bin/%s' '%s'", flags, test_dir, name, src);
    if (system(cmd) != 0) fail_msg("cannot build %s: %s", name, cmd);
}

static void test_mmtrun_says_the_library_never_entered_a_static_program(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    static result_t r;
    char args[PATH_MAX], env[PATH_MAX], want[PATH_MAX];
    build_program("static-prog", "-static -O1",
                  "#include <stdio.h>\nint main(void) { puts(\"static\"); return 5; }\n");
    /* Named by its path, then found through PATH as execvp finds it. */
    snprintf(args, sizeof args, "-- '%s/bin/static-prog'", test_dir);
    mmt_run_with(args, &r);
    assert_int_equal(r.status, 5);
    assert_string_equal(r.out, "static\n");
    snprintf(want, sizeof want,
             "mmt-run: %s/bin/static-prog: the preload library was not loaded: %s/bin/static-prog "
             "is statically linked, and LD_PRELOAD works only through the dynamic loader; nothing "
             "was counted\n",
             test_dir, test_dir);
    assert_string_equal(r.err, want);
    snprintf(env, sizeof env, "TMPDIR='%s' PATH='/no/such/dir::%s/bin:/usr/bin:/bin'", tmp_dir,
             test_dir);
    mmt_run_env(env, "-- static-prog", &r);
    assert_int_equal(r.status, 5);
    snprintf(want, sizeof want, "mmt-run: static-prog: the preload library was not loaded: "
                                "%s/bin/static-prog is statically linked",
             test_dir);
    assert_contains(r.err, want);
    assert_no_temporary_files(tmp_dir);

    /* A script whose interpreter is that program: the kernel runs the interpreter. */
    char script[600], text[PATH_MAX];
    snprintf(script, sizeof script, "%s/bin/script", test_dir);
    snprintf(text, sizeof text, "#!%s/bin/static-prog\n", test_dir);
    write_in_place(script, text);
    assert_int_equal(chmod(script, 0755), 0);
    snprintf(args, sizeof args, "-- '%s'", script);
    mmt_run_with(args, &r);
    assert_int_equal(r.status, 5);
    snprintf(want, sizeof want, "%s is a script for %s/bin/static-prog, which is statically linked",
             script, test_dir);
    assert_contains(r.err, want);

    /* A program the library did enter, which ends with the exit_group system call itself:
     * no exit handler, no _exit, no report, and the message says that. */
    build_program("raw-exit", "-O1",
                  "#include <sys/syscall.h>\n#include <unistd.h>\n"
                  "int main(void) { syscall(SYS_exit_group, 4); return 0; }\n");
    snprintf(args, sizeof args, "-- '%s/bin/raw-exit'", test_dir);
    mmt_run_with(args, &r);
    assert_int_equal(r.status, 4);
    snprintf(want, sizeof want,
             "mmt-run: %s/bin/raw-exit left no report (it exited without running exit handlers)\n",
             test_dir);
    assert_string_equal(r.err, want);
}

static void test_mmtrun_says_the_loader_ignores_the_library_for_set_id_programs(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* A program set-user-ID (or -group-ID) to someone else runs in the loader's secure
     * mode, which ignores LD_PRELOAD. Only root can give a file away to make one. */
    struct statvfs fs;
    if (geteuid() != 0 || (statvfs(test_dir, &fs) == 0 && (fs.f_flag & ST_NOSUID))) {
        print_message("not root, or %s is mounted nosuid: skipped\n", test_dir);
        skip();
    }
    static const struct {
        const char *name;
        mode_t mode;
        const char *what;
    } cases[] = {{"suid-true", 04755, "set-user-ID"}, {"sgid-true", 02755, "set-group-ID"}};
    static result_t r;
    char path[600], args[PATH_MAX], want[PATH_MAX];
    snprintf(path, sizeof path, "%s/bin", test_dir);
    if (access(path, F_OK) != 0) assert_int_equal(mkdir(path, 0755), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/bin/%s", test_dir, cases[i].name);
        snprintf(args, sizeof args, "cp /bin/true '%s'", path);
        assert_int_equal(system(args), 0);
        assert_int_equal(chown(path, 65534, 65534), 0); /* nobody, nogroup */
        assert_int_equal(chmod(path, cases[i].mode), 0);
        /* As its owner the program may not even start (a root folder only root may
         * enter, as in a fresh chroot): mmt-run must give back whatever it gives plainly. */
        snprintf(args, sizeof args, "'%s' 2>/dev/null", path);
        int plain = system(args);
        assert_true(WIFEXITED(plain));
        snprintf(args, sizeof args, "-- '%s'", path);
        mmt_run_with(args, &r);
        if (r.status != WEXITSTATUS(plain))
            fail_msg("%s: exit status %d, %d plainly; stderr:\n%s", path, r.status,
                     WEXITSTATUS(plain), r.err);
        snprintf(want, sizeof want,
                 "mmt-run: %s: the preload library was not loaded: %s is %s, and the loader "
                 "ignores LD_PRELOAD for such a program; nothing was counted\n",
                 path, path, cases[i].what);
        if (WEXITSTATUS(plain) == 0) assert_string_equal(r.err, want);
        else assert_contains(r.err, want);
    }
}

/* ---- Range checks ------------------------------------------------------------------------ */

static void test_mmtrun_out_of_range_options_are_refused_naming_the_range(void **state)
{
    (void)state;
    static result_t r;
    char args[1024], want[1024];
    /* 4294967297 is 2^32 + 1: cast to unsigned it was 1 ms. */
    static const char *const intervals[] = {"4294967297", "86400001", "-1", "10ms", "",
                                            " 5",         "+5",       "0x10", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof intervals / sizeof intervals[0]; i++) {
        snprintf(args, sizeof args, "--interval '%s' -- true", intervals[i]);
        mmt_run_with(args, &r);
        snprintf(want, sizeof want,
                 "mmt-run: --interval \"%s\": not a number of milliseconds from 0 to 86400000\n",
                 intervals[i]);
        if (r.status != 2 || strcmp(r.err, want) != 0)
            fail_msg("--interval '%s': exit %d, stderr:\n%s", intervals[i], r.status, r.err);
    }
    static const char *const paths[] = {"--out", "--trace", "--svg", "--policy"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        snprintf(args, sizeof args, "%s '' -- true", paths[i]);
        mmt_run_with(args, &r);
        snprintf(want, sizeof want, "mmt-run: %s \"\": the file name is empty\n", paths[i]);
        if (r.status != 2 || strcmp(r.err, want) != 0)
            fail_msg("%s '': exit %d, stderr:\n%s", paths[i], r.status, r.err);
    }
    char env[PATH_MAX + 64];
    snprintf(env, sizeof env, "TMPDIR='%s' MMT_PRELOAD_LIB=/no/such/lib.so", tmp_dir);
    mmt_run_env(env, "-- true", &r);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.err, "mmt-run: MMT_PRELOAD_LIB=/no/such/lib.so: No such file or directory\n");
}

static void test_mmtrun_interval_range_ends_are_accepted(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    static result_t r;
    mmt_run_with("--interval 0 -- true", &r);
    assert_int_equal(r.status, 0);
    assert_contains(r.err, "mmt-run: true: allocated ");
    mmt_run_with("--interval 86400000 -- true", &r);
    assert_int_equal(r.status, 0);
    assert_contains(r.err, "mmt-run: true: allocated ");
}

/* ---- Outputs other programs read, whatever the names ------------------------------------ */

/* Runs tests/e2e/check_outputs.py MODE with this build's mmt-run and the test's TMPDIR. */
static void check_outputs(const char *mode)
{
    char checker[PATH_MAX + 64], cmd[PATH_MAX * 3];
    if (!find_source("tests/e2e/check_outputs.py", checker, sizeof checker))
        fail_msg("tests/e2e/check_outputs.py not found from %s", bin_dir);
    snprintf(cmd, sizeof cmd, "TMPDIR='%s' /usr/bin/python3 '%s' %s '%s' '%s'", tmp_dir, checker,
             mode, mmt_run, test_dir);
    assert_int_equal(system(cmd), 0);
    assert_no_temporary_files(tmp_dir);
}

static void test_mmtrun_trace_and_picture_parse_whatever_the_rule_names(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* Rule names with line breaks, commas, quotes, markup, control characters, invalid
     * UTF-8, multi-byte characters across every cut, 480 bytes and more: csv reads every
     * row with its name, xml.etree the picture with every label. */
    check_outputs("rules");
}

static void test_mmtrun_summaries_and_picture_parse_whatever_the_program_name(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* The same names as programs (links to true, one 480+ bytes deep): json reads the
     * summary with the name, prometheus_client its metrics, xml.etree the picture. */
    check_outputs("programs");
}

/* ---- The trace's descriptor ----------------------------------------------------------------- */

/* Runs `script` with sh under the preload library, tracing into test_dir/fd.csv with no
 * policy (so that the trace's is the library's only descriptor); stderr into `err`.
 * Returns the exit status. */
static int run_traced(const char *script, char *err, size_t len)
{
    char cmd[8192], errpath[600];
    snprintf(errpath, sizeof errpath, "%s/fd.err", test_dir);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && env -u MMT_POLICY LD_PRELOAD='%s/libmmtmem-preload.so' MMT_TRACE='%s/fd.csv' "
             "%s 2> '%s'",
             test_dir, bin_dir, test_dir, script, errpath);
    int status = system(cmd);
    read_file(errpath, err, len);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void assert_file_holds(const char *name, const char *want)
{
    char path[600], text[8192];
    snprintf(path, sizeof path, "%s/%s", test_dir, name);
    read_file(path, text, sizeof text);
    if (strcmp(text, want) != 0) fail_msg("%s holds:\n%.2000s\nexpected:\n%s", name, text, want);
}

static void test_mmtrun_trace_descriptor_stays_clear_of_the_programs_numbers(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    static char err[8192];
    /* A shell redirection onto descriptor 3 (dup2 over whatever is there) must get the
     * file alone while the sampler runs, and the trace must still end with its exit row. */
    int status = run_traced("sh -c 'exec 3> own3; echo mine >&3; sleep 0.3; echo end >&3'", err,
                            sizeof err);
    assert_int_equal(status, 0);
    assert_string_equal(err, "");
    assert_file_holds("own3", "mine\nend\n");
    char path[600], text[65536];
    snprintf(path, sizeof path, "%s/fd.csv", test_dir);
    read_file(path, text, sizeof text);
    assert_contains(text, ",exit,,"); /* no rule, then the machine's fields */

    /* Where it is: 512, far from the numbers programs take or expect free. */
    status = run_traced("sh -c 'for f in /proc/$$/fd/*; do echo \"${f##*/} $(readlink $f)\"; "
                        "done > fds'",
                        err, sizeof err);
    assert_int_equal(status, 0);
    snprintf(path, sizeof path, "%s/fds", test_dir);
    read_file(path, text, sizeof text);
    char want[700];
    snprintf(want, sizeof want, "512 %s/fd.csv\n", test_dir);
    assert_contains(text, want);
    static char lines[65536];
    memcpy(lines, text, sizeof lines);
    char *keep;
    for (char *line = strtok_r(lines, "\n", &keep); line; line = strtok_r(NULL, "\n", &keep))
        if (strstr(line, "fd.csv") && strtol(line, NULL, 10) < 512) fail_msg("the trace at:\n%s", text);
}

static void test_mmtrun_trace_stops_when_the_program_closes_or_replaces_its_descriptor(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    static char err[8192];
    /* A daemon closes every descriptor past stderr, then opens files of its own, which
     * take the lowest numbers and, here, 512 too: neither may get a trace row, and the
     * trace stops with one line on stderr. Python allocates meanwhile, so rows are due. */
    int status = run_traced(
        "/usr/bin/python3 -c 'import os, time\n"
        "os.closerange(3, 65536)\n"
        "low = os.open(\"own-low\", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)\n"
        "high = os.open(\"own-512\", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)\n"
        "os.dup2(high, 512)\n"
        "x = [bytes(1000) for i in range(20000)]\n"
        "time.sleep(0.3)\n"
        "os.write(low, b\"mine\\n\")\n"
        "os.write(512, b\"mine512\\n\")'",
        err, sizeof err);
    assert_int_equal(status, 0);
    assert_file_holds("own-low", "mine\n");
    assert_file_holds("own-512", "mine512\n");
    assert_string_equal(err, "mmt: the trace's descriptor 512 was closed or replaced by the "
                             "program; the trace stops here\n");

    /* The descriptor replaced in place (dup2 over 512, no close first). */
    status = run_traced("/usr/bin/python3 -c 'import os, time\n"
                        "os.dup2(os.open(\"own-dup\", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 512)\n"
                        "x = [bytes(1000) for i in range(20000)]\n"
                        "time.sleep(0.3)\n"
                        "os.write(512, b\"mine\\n\")'",
                        err, sizeof err);
    assert_int_equal(status, 0);
    assert_file_holds("own-dup", "mine\n");
    assert_string_equal(err, "mmt: the trace's descriptor 512 was closed or replaced by the "
                             "program; the trace stops here\n");
}

static void test_mmtrun_picture_reads_the_trace_by_column_names_and_quotes(void **state)
{
    (void)state;
    /* Columns in another order, a quoted name with a comma, doubled quotes and a line
     * break (a CRLF line end too): one label, the name whole. */
    char csv[600], svg[600], cmd[PATH_MAX * 2], err[4096], check[PATH_MAX * 2];
    snprintf(csv, sizeof csv, "%s/columns.csv", test_dir);
    snprintf(svg, sizeof svg, "%s/columns.svg", test_dir);
    write_in_place(csv, "rule,event,peak_bytes,rss_bytes,in_use_bytes,time_s\r\n"
                        ",sample,10,20,5,0.1\r\n"
                        "\"a \"\"b\"\", c\nd\",fire,10,20,5,0.5\n"
                        ",exit,10,20,5,1\n");
    snprintf(cmd, sizeof cmd, "'%s/e2e_plot' '%s' '%s' title 2> '%s/columns.err'", bin_dir, csv,
             svg, test_dir);
    if (system(cmd) != 0) {
        snprintf(cmd, sizeof cmd, "%s/columns.err", test_dir);
        read_file(cmd, err, sizeof err);
        fail_msg("no picture: %s", err);
    }
    snprintf(check, sizeof check,
             "/usr/bin/python3 -c 'import sys, xml.etree.ElementTree as ET; "
             "r = ET.parse(sys.argv[1]).getroot(); "
             "l = [t.text for t in r.iter(\"{http://www.w3.org/2000/svg}text\") if t.get(\"transform\")]; "
             "sys.exit(0 if l == [\"fire a \\\"b\\\", c d\"] else \"labels: %%r\" %% l)' '%s'",
             svg);
    assert_int_equal(system(check), 0);

    /* What is not a trace is said, with the record. */
    static const struct {
        const char *text, *error;
    } bad[] = {
        {"time_s,in_use_bytes,rss_bytes,event,rule\n1,2,3,sample,\n", "no column peak_bytes in the header"},
        {"time_s,in_use_bytes,rss_bytes,peak_bytes,event,rule\n1,2,3,4,sample,\nx,2,3,4,sample,\n",
         "record 3: not a trace row"},
        {"time_s,in_use_bytes,rss_bytes,peak_bytes,event,rule\n1,2,3,4,fire,\"open\n",
         "record 2: not CSV (a quote left open, or text after one)"},
        {"time_s,in_use_bytes,rss_bytes,peak_bytes,event,rule\n", "the trace has no rows"},
        {"time_s,in_use_bytes,rss_bytes,peak_bytes,event,rule,cgroup_current_bytes\n"
         "1,2,3,4,sample,,5\n1,2,3,4,sample,,many\n", "record 3: not a trace row"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_in_place(csv, bad[i].text);
        snprintf(cmd, sizeof cmd, "'%s/e2e_plot' '%s' '%s' title 2> '%s/columns.err'", bin_dir,
                 csv, svg, test_dir);
        assert_int_not_equal(system(cmd), 0);
        snprintf(cmd, sizeof cmd, "%s/columns.err", test_dir);
        read_file(cmd, err, sizeof err);
        assert_contains(err, bad[i].error);
    }
}

/* ---- The machine around the program ------------------------------------------------------ */

/* Field `k` (0-based) of the last row of the trace at `path`, whose rule field is empty
 * (no quotes), into buf. */
static void last_row_field(const char *path, int k, char *buf, size_t len)
{
    static char text[1 << 20];
    read_file(path, text, sizeof text);
    size_t n = strlen(text);
    if (n && text[n - 1] == '\n') text[--n] = '\0';
    const char *row = strrchr(text, '\n');
    row = row ? row + 1 : text;
    for (int i = 0; i < k && row; i++) {
        row = strchr(row, ',');
        if (row) row++;
    }
    if (!row) fail_msg("the last row of %s has no field %d", path, k);
    snprintf(buf, len, "%.*s", (int)strcspn(row, ","), row);
}

static void test_mmtrun_trace_and_summary_carry_the_machine_as_the_library_reads_it(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* mmt-run, and the program, run in this process's cgroup: the trace's columns and the
     * summary's figures must be the ones the library reads here. */
    static result_t r;
    char args[PATH_MAX * 2], path[PATH_MAX], field[64], machine[128], check[PATH_MAX * 3],
        limit[32] = "none";
    snprintf(args, sizeof args,
             "--report json --out %s/m.json --trace %s/m.csv --svg %s/m.svg -- sleep 0.3",
             test_dir, test_dir, test_dir);
    mmt_run_with(args, &r);
    assert_int_equal(r.status, 0);
    mmt_machine_t m;
    int parts = mmt_machine_read(&m, MMT_MACHINE_ALL);
    assert_true(parts & MMT_MACHINE_SYSTEM);
    machine_options(machine, sizeof machine);
    check_plot(machine, "m", "-", "");
    if (m.cgroup.version && m.cgroup.limit != MMT_UNLIMITED)
        snprintf(limit, sizeof limit, "%" PRIu64, m.cgroup.limit);

    /* The exit row's reading, taken as the program ended, and this one just after. */
    snprintf(path, sizeof path, "%s/m.csv", test_dir);
    last_row_field(path, 7, field, sizeof field);
    assert_string_equal(field, "exit");
    last_row_field(path, 9, field, sizeof field);
    if (m.cgroup.version) {
        uint64_t current = strtoull(field, NULL, 10);
        print_message("cgroup v%d %s: %" PRIu64 " B charged at exit, %" PRIu64 " B now\n",
                      m.cgroup.version, m.cgroup.path, current, m.cgroup.current);
        assert_true(current + 64 * MiB > m.cgroup.current && m.cgroup.current + 64 * MiB > current);
    } else {
        print_message("no memory cgroup here: its columns must be empty\n");
        assert_string_equal(field, "");
    }
    last_row_field(path, 13, field, sizeof field);
    uint64_t available = strtoull(field, NULL, 10);
    assert_true(available > 0 && available <= m.system.total);

    /* The JSON summary names the same cgroup, limit, PSI file and memory. */
    snprintf(path, sizeof path, "%s/m.json", test_dir);
    snprintf(check, sizeof check,
             "/usr/bin/python3 -c 'import json, sys\n"
             "m = json.load(open(sys.argv[1]))[\"machine\"]\n"
             "c, p = m.get(\"cgroup\"), m.get(\"psi\")\n"
             "ok = m[\"system\"][\"total\"] == int(sys.argv[2])\n"
             "ok = ok and (c[\"version\"], c[\"path\"], c[\"limit\"]) == (int(sys.argv[3]), sys.argv[4], "
             "None if sys.argv[5] == \"none\" else int(sys.argv[5])) if c else ok and sys.argv[3] == \"0\"\n"
             "ok = ok and (p[\"source\"] == sys.argv[6] if p else sys.argv[6] == \"\")\n"
             "sys.exit(0 if ok else \"machine: %%r\" %% m)' '%s' %" PRIu64 " %d '%s' %s '%s'",
             path, m.system.total, m.cgroup.version, m.cgroup.path, limit, m.psi.source);
    assert_int_equal(system(check), 0);

    /* Text: one line of it after the processes'; Prometheus: the families of its parts. */
    mmt_run_with("-- true", &r);
    assert_int_equal(r.status, 0);
    char want[128];
    snprintf(want, sizeof want, "\nmmt-run: %s", m.cgroup.version == 2 ? "cgroup v2, "
                                                : m.cgroup.version == 1 ? "cgroup v1, "
                                                : m.psi.valid ? "memory pressure some " : "");
    assert_contains(r.err, want);
    if (m.psi.valid) assert_contains(r.err, "memory pressure some ");
    assert_contains(r.err, " available\n");
    snprintf(args, sizeof args, "--report prometheus --out %s/m.prom -- true", test_dir);
    mmt_run_with(args, &r);
    assert_int_equal(r.status, 0);
    snprintf(path, sizeof path, "%s/m.prom", test_dir);
    python_on_file("import sys\n"
                   "from prometheus_client.parser import text_string_to_metric_families as p\n"
                   "for f in p(sys.stdin.read()):\n"
                   "    for s in f.samples:\n"
                   "        print(f.type, s.name, s.value)\n",
                   path, r.out, sizeof r.out);
    assert_contains(r.out, "gauge mmt_system_memory_total_bytes ");
    if (m.cgroup.version) {
        assert_contains(r.out, "gauge mmt_cgroup_current_bytes ");
        assert_contains(r.out, "counter mmt_cgroup_events_total ");
        assert_contains(r.out, m.cgroup.limit == MMT_UNLIMITED ? "gauge mmt_cgroup_limit_bytes inf\n"
                                                               : "gauge mmt_cgroup_limit_bytes ");
    } else {
        assert_null(strstr(r.out, "mmt_cgroup_"));
    }
    if (m.psi.valid) {
        assert_contains(r.out, "gauge mmt_psi_some_avg10 ");
        assert_contains(r.out, "counter mmt_psi_full_stall_seconds_total ");
    } else {
        assert_null(strstr(r.out, "mmt_psi_"));
    }
}

static void test_mmtrun_in_a_limited_cgroup_the_trace_and_picture_show_the_limit(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* mmt-run in a cgroup of the test's own, limited to 64 MiB, on a program that touches
     * 24 MiB after 0.3 s: every row has the limit, the charged bytes rise by about that,
     * and the picture draws the limit line where its axis puts 64 MiB. */
    test_cgroup_t cg;
    char why[1200];
    if (cg_make(&cg, 64 * MiB, why, sizeof why) != 0) {
        print_message("skipped: %s\n", why);
        skip();
    }
    char csv[600], svg[600], json[600], path[700], text[1 << 16];
    snprintf(csv, sizeof csv, "%s/limited.csv", test_dir);
    snprintf(svg, sizeof svg, "%s/limited.svg", test_dir);
    snprintf(json, sizeof json, "%s/limited.json", test_dir);
    const char *args[] = {"--report", "json", "--out", json, "--trace", csv, "--svg", svg, "--",
                          "/usr/bin/python3", "-c",
                          "import time; time.sleep(0.3); a = b'x' * (24 << 20); time.sleep(0.5)",
                          NULL};
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (cg_join(&cg, 0) != 0) _exit(122);
        exec_mmt_run("limited", tmp_dir, -1, args);
    }
    int status = wait_for_exit(pid, 60);
    cg_remove(&cg);
    snprintf(path, sizeof path, "%s/limited.err", test_dir);
    read_file(path, text, sizeof text);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("mmt-run in the cgroup: status %d, stderr:\n%s", status, text);
    assert_null(strstr(text, "no picture"));
    assert_no_temporary_files(tmp_dir);

    /* Every row has the limit (check_plot), and the charged bytes rise by the 24 MiB. */
    char png[600], options[128];
    screenshot("limited", png, sizeof png);
    snprintf(options, sizeof options, "--cgroup=yes --limit=%" PRIu64 " --psi=%s", 64 * MiB,
             access("/proc/pressure/memory", R_OK) == 0 ? "yes" : "no");
    check_plot(options, "limited", "-", png);
    python_on_file("import csv, sys\n"
                   "rows = list(csv.DictReader(sys.stdin))\n"
                   "c = [int(r[\"cgroup_current_bytes\"]) for r in rows]\n"
                   "print(\"first\", c[0], \"highest\", max(c), \"rise\", max(c) - c[0] >= 20 << 20)\n",
                   csv, text, sizeof text);
    print_message("charged: %s", text);
    assert_contains(text, "rise True");
    /* The limit line at 64 MiB, labelled (check_plot found it where the axis puts it). */
    read_file(svg, text, sizeof text);
    assert_contains(text, ">cgroup limit 64 MiB</text>");

    /* The summary names the cgroup and its limit. */
    python_on_file("import json, sys\n"
                   "c = json.load(sys.stdin)[\"machine\"][\"cgroup\"]\n"
                   "print(c[\"path\"], c[\"max\"], c[\"limit\"])\n",
                   json, text, sizeof text);
    char want[1200];
    snprintf(want, sizeof want, "%s %" PRIu64 " %" PRIu64 "\n", cg.dir, 64 * MiB, 64 * MiB);
    assert_string_equal(text, want);
}

/* A trace of 12 samples 0.1 s apart and an exit row: in use rising to 22 MiB, rss 4 MiB
 * over it; the cgroup's bytes `cgroup` times the rss (0: empty fields), empty in rows
 * `gap_from` to `gap_to` (-1: none); its limit `limit` (0: empty), `then` from row
 * `change` on (-1: never). */
static void write_machine_trace(const char *path, double cgroup, int gap_from, int gap_to,
                                uint64_t limit, int change, uint64_t then)
{
    static char text[8192];
    size_t n = (size_t)snprintf(text, sizeof text, "%s\n",
                                "time_s,in_use_bytes,rss_bytes,allocated_bytes,freed_bytes,"
                                "peak_bytes,allocations,event,rule,cgroup_current_bytes,"
                                "cgroup_limit_bytes,psi_some10,psi_full10,available_bytes");
    for (int i = 0; i < 13; i++) {
        uint64_t in_use = (uint64_t)(i < 12 ? i : 11) * 2 * MiB + 1000, rss = in_use + 4 * MiB;
        char cg[32] = "", lim[32] = "";
        if (cgroup > 0 && (i < gap_from || i > gap_to))
            snprintf(cg, sizeof cg, "%.0f", cgroup * (double)rss);
        uint64_t l = change >= 0 && i >= change ? then : limit;
        if (l) snprintf(lim, sizeof lim, "%" PRIu64, l);
        n += (size_t)snprintf(text + n, sizeof text - n,
                              "%.3f,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",0,%" PRIu64 ",%d,%s,,%s,%s,"
                              "0.00,0.00,1000000000\n",
                              0.1 * i, in_use, rss, in_use, in_use, i + 1, i < 12 ? "sample" : "exit",
                              cg, lim);
    }
    write_in_place(path, text);
}

/* Draws test_dir/NAME.csv into NAME.svg with mmt-run's picture code; the SVG into svg. */
static void draw_trace(const char *name, char *svg, size_t len)
{
    char cmd[PATH_MAX * 2];
    snprintf(cmd, sizeof cmd, "'%s/e2e_plot' '%s/%s.csv' '%s/%s.svg' title", bin_dir, test_dir,
             name, test_dir, name);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/%s.svg", test_dir, name);
    read_file(cmd, svg, len);
}

static void test_mmtrun_picture_draws_the_cgroup_and_its_limit_only_near_the_programs_figures(void **state)
{
    (void)state;
    static char svg[1 << 16];
    char path[600];
    /* The program's figures reach 26 MiB. A cgroup a little above them, limited to 64 MiB:
     * its line, and the limit's, on the scale (check_plot checks the points and the line
     * against the axis). */
    snprintf(path, sizeof path, "%s/near.csv", test_dir);
    write_machine_trace(path, 1.1, -1, -1, 64 * MiB, -1, 0);
    draw_trace("near", svg, sizeof svg);
    check_plot("--cgroup=yes --limit=67108864 --psi=yes", "near", "-", "");
    assert_contains(svg, ">cgroup limit 64 MiB</text>");
    assert_contains(svg, ">60 MiB</text>"); /* the axis goes up to the limit */

    /* A limit of 512 GiB: not drawn, said in the legend; the axis stays with the data. */
    snprintf(path, sizeof path, "%s/far.csv", test_dir);
    write_machine_trace(path, 1.1, -1, -1, UINT64_C(512) << 30, -1, 0);
    draw_trace("far", svg, sizeof svg);
    check_plot("--cgroup=yes --limit=549755813888 --psi=yes", "far", "-", "");
    assert_contains(svg, ">cgroup limit 512 GiB, off the scale</text>");
    assert_null(strstr(svg, "0 GiB</text>"));
    assert_null(strstr(svg, ">60 MiB</text>"));

    /* A cgroup charged with 100 times the program's figures (a whole container): its line
     * is not drawn either, but said; the limit just above it is compared with the program. */
    snprintf(path, sizeof path, "%s/crowd.csv", test_dir);
    write_machine_trace(path, 100, -1, -1, 0, -1, 0);
    draw_trace("crowd", svg, sizeof svg);
    check_plot("--cgroup=yes --limit=none --psi=yes", "crowd", "-", "");
    assert_contains(svg, ">cgroup: up to 2600.1 MiB charged, off the scale</text>");

    /* A limit that changed: the lowest is drawn, and said to be; the cgroup's line breaks
     * where rows have no figure. */
    snprintf(path, sizeof path, "%s/changed.csv", test_dir);
    write_machine_trace(path, 1.1, 4, 6, 64 * MiB, 8, 48 * MiB);
    draw_trace("changed", svg, sizeof svg);
    assert_contains(svg, ">lowest cgroup limit 48 MiB (it changed during the run)</text>");
    assert_int_equal(occurrences(svg, "<polyline fill=\"none\" stroke=\"#9467bd\""), 2);

    /* A trace from before the machine's columns: the picture as it was. */
    snprintf(path, sizeof path, "%s/old.csv", test_dir);
    write_in_place(path, "time_s,in_use_bytes,rss_bytes,allocated_bytes,freed_bytes,peak_bytes,"
                         "allocations,event,rule\n0,10,20,10,0,10,1,sample,\n1,10,20,10,0,10,1,exit,\n");
    draw_trace("old", svg, sizeof svg);
    assert_int_equal(occurrences(svg, "<polyline"), 2);
    assert_null(strstr(svg, "cgroup"));
}

/* ---- Temporary files ------------------------------------------------------------------- */

static void test_mmtrun_temporary_files_follow_tmpdir(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* The program sees the report's and the trace's paths in its environment. */
    static result_t r;
    char args[1024], want[PATH_MAX + 32];
    snprintf(args, sizeof args,
             "--svg '%s/tmpdir.svg' -- sh -c 'echo \"$MMT_OUT\"; echo \"$MMT_TRACE\"'", test_dir);
    mmt_run_with(args, &r); /* TMPDIR=tmp_dir, left empty */
    assert_int_equal(r.status, 0);
    snprintf(want, sizeof want, "%s/mmt-run-", tmp_dir);
    if (strncmp(r.out, want, strlen(want)) != 0) fail_msg("the report is not in TMPDIR:\n%s", r.out);
    snprintf(want, sizeof want, "\n%s/mmt-trace-", tmp_dir);
    assert_contains(r.out, want);

    /* TMPDIR unset or empty: /tmp, and the file is gone afterwards. */
    static const char *const unset[] = {"env -u TMPDIR", "TMPDIR=''"};
    for (size_t i = 0; i < 2; i++) {
        mmt_run_env(unset[i], "-- sh -c 'echo \"$MMT_OUT\"'", &r);
        assert_int_equal(r.status, 0);
        if (strncmp(r.out, "/tmp/mmt-run-", strlen("/tmp/mmt-run-")) != 0)
            fail_msg("%s: the report is at %s", unset[i], r.out);
        *strchr(r.out, '\n') = '\0';
        assert_int_not_equal(access(r.out, F_OK), 0);
    }
}

static void test_mmtrun_unusable_tmpdir_is_named(void **state)
{
    (void)state;
    static result_t r;
    mmt_run_env("TMPDIR=/no/such/dir", "-- true", &r);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.err, "mmt-run: cannot make a temporary folder in /no/such/dir (TMPDIR): "
                               "No such file or directory\n");
    mmt_run_env("TMPDIR=/etc/passwd", "-- true", &r);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.err, "mmt-run: cannot make a temporary folder in /etc/passwd (TMPDIR): "
                               "Not a directory\n");
}

/* ---- Signals --------------------------------------------------------------------------- */

static void test_mmtrun_sigterm_reaches_the_program_and_temporary_files_go(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* What docker stop, systemd and supervisors do. The program dies of it, mmt-run
     * exits as it did and removes its report and trace (--svg makes a trace too). */
    char pidfile[600], svg[600], script[2048], err[8192];
    snprintf(pidfile, sizeof pidfile, "%s/term.pid", test_dir);
    snprintf(svg, sizeof svg, "%s/term.svg", test_dir);
    snprintf(script, sizeof script, "echo $$ > '%s.tmp' && mv '%s.tmp' '%s' && exec sleep 30",
             pidfile, pidfile, pidfile);
    const char *const args[] = {"--svg", svg, "--", "sh", "-c", script, NULL};
    pid_t run = start_mmt_run("term", tmp_dir, args);
    pid_t program = wait_for_pid_file(pidfile, 20);
    assert_int_equal(kill(run, SIGTERM), 0);
    int status = wait_for_exit(run, 20);
    if (!WIFEXITED(status)) fail_msg("mmt-run died of signal %d itself", WTERMSIG(status));
    assert_int_equal(WEXITSTATUS(status), 128 + SIGTERM);
    assert_true(process_gone(program));
    assert_no_temporary_files(tmp_dir);
    snprintf(script, sizeof script, "%s/term.err", test_dir);
    read_file(script, err, sizeof err);
    assert_contains(err, "mmt-run: sh was killed by signal 15 (Terminated)\n");
}

static void test_mmtrun_forwards_hup_int_and_quit_sent_with_kill(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* The program lives through each and logs it; SIGTERM ends it with 40 + the count,
     * which mmt-run passes on with the program's summary. */
    char program_path[PATH_MAX + 32], pidfile[600], log[600], err[600], text[8192];
    snprintf(program_path, sizeof program_path, "%s/e2e_signals", bin_dir);
    snprintf(pidfile, sizeof pidfile, "%s/fwd.pid", test_dir);
    snprintf(log, sizeof log, "%s/fwd.log", test_dir);
    const char *const args[] = {"--", program_path, pidfile, log, NULL};
    pid_t run = start_mmt_run("fwd", tmp_dir, args);
    wait_for_pid_file(pidfile, 20);
    static const struct {
        int sig;
        const char *log;
    } steps[] = {{SIGHUP, "HUP\n"}, {SIGINT, "HUP\nINT\n"}, {SIGQUIT, "HUP\nINT\nQUIT\n"},
                 {SIGTERM, "HUP\nINT\nQUIT\nTERM\n"}};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        assert_int_equal(kill(run, steps[i].sig), 0);
        if (!wait_for_text(log, steps[i].log, 20)) {
            read_file(log, text, sizeof text);
            fail_msg("after signal %d the program's log is:\n%s", steps[i].sig, text);
        }
    }
    int status = wait_for_exit(run, 20);
    if (!WIFEXITED(status)) fail_msg("mmt-run died of signal %d itself", WTERMSIG(status));
    assert_int_equal(WEXITSTATUS(status), 43);
    snprintf(err, sizeof err, "%s/fwd.err", test_dir);
    read_file(err, text, sizeof text);
    assert_contains(text, "e2e_signals: allocated ");
    assert_no_temporary_files(tmp_dir);
}

static void test_mmtrun_ctrl_c_on_its_terminal_reaches_the_program_once(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* mmt-run and the program on a terminal of their own (a pseudo-terminal whose session
     * mmt-run leads): ^C there signals the whole foreground process group, the program
     * included, so mmt-run must not send it a second copy. A SIGINT sent with kill() to
     * mmt-run alone is passed on. */
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    assert_true(master >= 0);
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    char slave[128], program_path[PATH_MAX + 32], pidfile[600], log[600], text[8192];
    snprintf(slave, sizeof slave, "%s", ptsname(master));
    snprintf(program_path, sizeof program_path, "%s/e2e_signals", bin_dir);
    snprintf(pidfile, sizeof pidfile, "%s/tty.pid", test_dir);
    snprintf(log, sizeof log, "%s/tty.log", test_dir);

    /* mmt-run in a new session, with the terminal as its controlling one. */
    fflush(NULL);
    pid_t run = fork();
    assert_true(run >= 0);
    if (run == 0) {
        setsid();
        int tty = open(slave, O_RDWR);
        if (tty < 0 || ioctl(tty, TIOCSCTTY, 0) != 0) _exit(122);
        struct termios t;
        tcgetattr(tty, &t);
        t.c_lflag |= ISIG;
        t.c_cc[VINTR] = 3; /* ^C */
        tcsetattr(tty, TCSANOW, &t);
        close(master);
        const char *const args[] = {"--", program_path, pidfile, log, NULL};
        exec_mmt_run("tty", tmp_dir, tty, args);
    }
    wait_for_pid_file(pidfile, 20);
    assert_int_equal(write(master, "\003", 1), 1);
    if (!wait_for_text(log, "INT\n", 20)) {
        read_file(log, text, sizeof text);
        fail_msg("after ^C the program's log is:\n%s", text);
    }
    /* A second copy, had mmt-run sent one, would be in the log by now; the exit status
     * below counts every signal anyway. */
    sleep_ms(500);
    assert_int_equal(kill(run, SIGINT), 0);
    if (!wait_for_text(log, "INT\nINT\n", 20)) {
        read_file(log, text, sizeof text);
        fail_msg("after ^C and a kill -INT the program's log is:\n%s", text);
    }
    assert_int_equal(kill(run, SIGTERM), 0);
    int status = wait_for_exit(run, 20);
    close(master);
    if (!WIFEXITED(status)) fail_msg("mmt-run died of signal %d itself", WTERMSIG(status));
    read_file(log, text, sizeof text);
    assert_string_equal(text, "INT\nINT\nTERM\n");
    assert_int_equal(WEXITSTATUS(status), 42);
    assert_no_temporary_files(tmp_dir);
}

static void test_mmtrun_signals_ignored_at_start_stay_ignored_for_the_program(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* nohup, or a background job of a non-interactive shell: the program must find the
     * signals ignored, as it would without mmt-run in between. */
    static result_t r;
    char env[PATH_MAX + 64];
    snprintf(env, sizeof env, "trap '' HUP INT QUIT; TMPDIR='%s'", tmp_dir);
    mmt_run_env(env, "-- sh -c 'kill -HUP $$; kill -INT $$; kill -QUIT $$; echo alive'", &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "alive\n");
    assert_no_temporary_files(tmp_dir);
}

static void test_mmtrun_started_with_sigchld_ignored_still_gets_the_status(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* With SIGCHLD ignored the kernel reaps children itself and waitpid finds none;
     * mmt-run must wait for the program all the same, and hand the program SIGCHLD as it
     * got it: ignored, which the program turns into its status. */
    char cmd[PATH_MAX * 3], err[600], text[8192];
    snprintf(err, sizeof err, "%s/chld.err", test_dir);
    snprintf(cmd, sizeof cmd,
             "TMPDIR='%s' /usr/bin/python3 -c 'import os, signal, sys; "
             "signal.signal(signal.SIGCHLD, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])' "
             "'%s' -- /usr/bin/python3 -c 'import signal, sys; "
             "sys.exit(3 if signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN else 4)' 2> '%s'",
             tmp_dir, mmt_run, err);
    int status = system(cmd);
    read_file(err, text, sizeof text);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 3)
        fail_msg("status %d, stderr:\n%s", WIFEXITED(status) ? WEXITSTATUS(status) : -1, text);
    assert_contains(text, "mmt-run: /usr/bin/python3: allocated ");
    assert_no_temporary_files(tmp_dir);
}

static void test_mmtrun_summary_into_a_closed_pipe_leaves_no_files(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* mmt-run ... 2>&1 | head -1, where the reader is gone by the time the summary comes:
     * the write fails (no SIGPIPE death), and the temporary files still go. */
    char cmd[PATH_MAX * 2], where[PATH_MAX];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && TMPDIR='%s' '%s' --svg pipe.svg -- sh -c 'echo \"$MMT_OUT\" > report-path; "
             "sleep 0.3' 2>&1 | true",
             test_dir, tmp_dir, mmt_run);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/report-path", test_dir);
    read_file(cmd, where, sizeof where);
    assert_true(strchr(where, '\n') != NULL);
    *strchr(where, '\n') = '\0';
    if (access(where, F_OK) == 0) fail_msg("the report %s was left behind", where);
    assert_no_temporary_files(tmp_dir);
}

static void test_mmtrun_killed_with_sigkill_takes_the_program_with_it(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* SIGKILL cannot be caught: the kernel tells the program instead (SIGTERM, set up
     * before the exec), so it is not left running under PID 1. mmt-run's temporary files
     * do stay: they go to a folder of this test's own. */
    char program_path[PATH_MAX + 32], pidfile[600], log[600], killed_tmp[128], text[256];
    snprintf(program_path, sizeof program_path, "%s/e2e_signals", bin_dir);
    snprintf(pidfile, sizeof pidfile, "%s/kill.pid", test_dir);
    snprintf(log, sizeof log, "%s/kill.log", test_dir);
    snprintf(killed_tmp, sizeof killed_tmp, "%s/tmp-killed", test_dir);
    assert_int_equal(mkdir(killed_tmp, 0700), 0);
    const char *const args[] = {"--", program_path, pidfile, log, NULL};
    pid_t run = start_mmt_run("kill", killed_tmp, args);
    pid_t program = wait_for_pid_file(pidfile, 20);
    assert_int_equal(kill(run, SIGKILL), 0);
    int status = wait_for_exit(run, 20);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    if (!wait_for_text(log, "TERM\n", 20)) {
        read_file(log, text, sizeof text);
        fail_msg("the orphaned program's log is:\n%s", text);
    }
    assert_true(wait_until_gone(program, 20));
}

/* ---- A tree of processes ---------------------------------------------------------------- */

static void test_mmtrun_summary_covers_every_process_of_the_tree(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* e2e_usable fork: the program holds 1 MiB and forks a child that allocates 100,000
     * bytes in 10 blocks. The summary lists both, in the order they started, the child
     * with its own figures since the fork, and the tree's sums. */
    static result_t r;
    char args[PATH_MAX * 2], path[PATH_MAX], json[16384], check[PATH_MAX * 2];
    snprintf(args, sizeof args, "--report json --out %s/tree.json -- %s/e2e_usable fork", test_dir,
             bin_dir);
    mmt_run_with(args, &r);
    assert_int_equal(r.status, 0);
    snprintf(path, sizeof path, "%s/tree.json", test_dir);
    read_file(path, json, sizeof json);
    snprintf(check, sizeof check,
             "/usr/bin/python3 -c 'import json, sys\n"
             "d = json.load(open(\"%s\"))\n"
             "p = d[\"processes\"]\n"
             "ok = len(p) == 2 and not p[0][\"forked\"] and p[1][\"forked\"]\n"
             "ok = ok and p[1][\"ppid\"] == p[0][\"pid\"] and p[1][\"allocated\"] == 100000\n"
             "ok = ok and p[1][\"allocations\"] == 10 and p[1][\"in_use_at_start\"] >= 1 << 20\n"
             "ok = ok and p[0][\"comm\"] == \"e2e_usable\" and p[0][\"allocator\"] == \"libc.so.6\"\n"
             "for k in (\"allocated\", \"freed\", \"allocations\", \"in_use_at_exit\", \"peak\"):\n"
             "    ok = ok and d[k] == sum(q[k] for q in p)\n"
             "for q in p:\n"
             "    ok = ok and q[\"allocated\"] - q[\"freed\"] == q[\"in_use_at_exit\"] - q[\"in_use_at_start\"]\n"
             "sys.exit(0 if ok and d[\"processes_reported\"] == 2 else 1)'",
             path);
    if (system(check) != 0) fail_msg("summary: %s", json);

    /* The text summary: the tree's line, then one per process. */
    snprintf(args, sizeof args, "-- %s/e2e_usable fork", bin_dir);
    mmt_run_with(args, &r);
    assert_int_equal(r.status, 0);
    assert_contains(r.err, "mmt-run: ");
    assert_contains(r.err, "e2e_usable: 2 processes: allocated ");
    long child = 0;
    assert_int_equal(sscanf(r.out, "child %ld", &child), 1);
    char want[128];
    snprintf(want, sizeof want, "mmt-run:   pid %ld, parent ", child);
    assert_contains(r.err, want);
    assert_contains(r.err, ", forked: ");
    assert_contains(r.err, ": allocated 100000 B, freed 0 B, ");

    /* --out with %p: one file per process, named with its id. */
    snprintf(args, sizeof args, "--report json --out %s/each.%%p.json -- %s/e2e_usable fork",
             test_dir, bin_dir);
    mmt_run_with(args, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(sscanf(r.out, "child %ld", &child), 1);
    snprintf(path, sizeof path, "%s/each.%ld.json", test_dir, child);
    read_file(path, json, sizeof json);
    assert_contains(json, "\"forked\":true");
    assert_contains(json, "\"allocated\":100000,");
}

static void test_mmtrun_reload_is_said_at_info(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* The program itself rewrites its policy (a new file renamed over it, as editors and
     * ConfigMaps do) and lives on: the reload is said, naming the process. */
    static result_t r;
    char policy[PATH_MAX], next[PATH_MAX], args[PATH_MAX * 4];
    snprintf(policy, sizeof policy, "%s/edited.lua", test_dir);
    snprintf(next, sizeof next, "%s/edited.next", test_dir);
    write_in_place(policy, "local mmt = require 'mmt'\nmmt.rule { name = 'a', when = function(m) return false end, fire = function() end }\n");
    write_in_place(next, "local mmt = require 'mmt'\n"
                         "mmt.rule { name = 'a', when = function(m) return false end, fire = function() end }\n"
                         "mmt.rule { name = 'b', when = function(m) return false end, fire = function() end }\n");
    snprintf(args, sizeof args, "--policy %s -- sh -c 'sleep 0.5; mv %s %s; sleep 2'", policy, next,
             policy);
    mmt_run_with(args, &r);
    assert_int_equal(r.status, 0);
    assert_contains(r.err, "mmt policy [info] pid ");
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, ": policy reloaded: %s: 2 rules and 0 tasks\n", policy);
    assert_contains(r.err, want);
}

static void test_mmtrun_report_folder_survives_what_the_tree_puts_in_it(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* A process of the tree puts a FIFO (which a read would block on) and a folder into
     * mmt-run's report folder: mmt-run neither hangs nor leaves its folder behind. */
    static result_t r;
    mmt_run_with("-- sh -c 'd=${MMT_OUT%/*}; mkfifo $d/evil; mkdir $d/sub; echo made'", &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "made\n");
    assert_contains(r.err, "mmt-run: sh: 3 processes: allocated ");

    /* A % in TMPDIR is part of the folder's name, not a process id. */
    char pct[PATH_MAX], env[PATH_MAX + 16];
    snprintf(pct, sizeof pct, "%s/100%%p", test_dir);
    assert_int_equal(mkdir(pct, 0700), 0);
    snprintf(env, sizeof env, "TMPDIR='%s'", pct);
    mmt_run_env(env, "-- true", &r);
    assert_int_equal(r.status, 0);
    assert_contains(r.err, "mmt-run: true: allocated ");
    assert_no_temporary_files(pct);
    rmdir(pct);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mmtrun_forwards_output_and_exit_status),
        cmocka_unit_test(test_mmtrun_summary_covers_every_process_of_the_tree),
        cmocka_unit_test(test_mmtrun_reload_is_said_at_info),
        cmocka_unit_test(test_mmtrun_report_folder_survives_what_the_tree_puts_in_it),
        cmocka_unit_test(test_mmtrun_reports_the_program_not_its_forked_copies),
        cmocka_unit_test(test_mmtrun_says_when_the_program_dies_of_a_signal),
        cmocka_unit_test(test_mmtrun_rejects_what_it_cannot_run),
        cmocka_unit_test(test_mmtrun_summary_in_json_counts_the_leak),
        cmocka_unit_test(test_mmtrun_summary_in_prometheus_parses),
        cmocka_unit_test(test_mmtrun_runs_the_policy_inside_the_program),
        cmocka_unit_test(test_mmtrun_trace_and_svg_show_usage_and_rule_events),
        cmocka_unit_test(test_mmtrun_trace_and_summary_carry_the_machine_as_the_library_reads_it),
        cmocka_unit_test(test_mmtrun_in_a_limited_cgroup_the_trace_and_picture_show_the_limit),
        cmocka_unit_test(test_mmtrun_picture_draws_the_cgroup_and_its_limit_only_near_the_programs_figures),
        cmocka_unit_test(test_mmtrun_relative_paths_survive_a_change_of_folder),
        cmocka_unit_test(test_mmtrun_missing_or_broken_policy_is_refused_before_the_program_starts),
        cmocka_unit_test(test_mmtrun_policy_that_is_not_a_regular_file_is_refused_without_hanging),
        cmocka_unit_test(test_mmtrun_says_the_library_never_entered_a_static_program),
        cmocka_unit_test(test_mmtrun_says_the_loader_ignores_the_library_for_set_id_programs),
        cmocka_unit_test(test_mmtrun_out_of_range_options_are_refused_naming_the_range),
        cmocka_unit_test(test_mmtrun_interval_range_ends_are_accepted),
        cmocka_unit_test(test_mmtrun_trace_and_picture_parse_whatever_the_rule_names),
        cmocka_unit_test(test_mmtrun_summaries_and_picture_parse_whatever_the_program_name),
        cmocka_unit_test(test_mmtrun_trace_descriptor_stays_clear_of_the_programs_numbers),
        cmocka_unit_test(test_mmtrun_trace_stops_when_the_program_closes_or_replaces_its_descriptor),
        cmocka_unit_test(test_mmtrun_picture_reads_the_trace_by_column_names_and_quotes),
        cmocka_unit_test(test_mmtrun_temporary_files_follow_tmpdir),
        cmocka_unit_test(test_mmtrun_unusable_tmpdir_is_named),
        cmocka_unit_test(test_mmtrun_sigterm_reaches_the_program_and_temporary_files_go),
        cmocka_unit_test(test_mmtrun_forwards_hup_int_and_quit_sent_with_kill),
        cmocka_unit_test(test_mmtrun_ctrl_c_on_its_terminal_reaches_the_program_once),
        cmocka_unit_test(test_mmtrun_signals_ignored_at_start_stay_ignored_for_the_program),
        cmocka_unit_test(test_mmtrun_started_with_sigchld_ignored_still_gets_the_status),
        cmocka_unit_test(test_mmtrun_summary_into_a_closed_pipe_leaves_no_files),
        cmocka_unit_test(test_mmtrun_killed_with_sigkill_takes_the_program_with_it),
    };
    return cmocka_run_group_tests_name("mmtrun", tests, setup, teardown);
}

/*
 * mmt-run and libmmtmem-preload.so under real programs nobody here wrote: sort on a
 * 50 MB file, python3 building large lists, gcc compiling a file, git status, and a
 * multithreaded program of ours (tests/e2e/threads.c). Each runs plainly and under
 * mmt-run (its default policy, a JSON summary): the output and the exit code must be the
 * same, and the summary must show the program's allocations.
 */
#include <limits.h>
#include <stdlib.h>

#include "policyutil.h"

static char preload[PATH_MAX + 32], bin_dir[PATH_MAX];

static int find_library(void **state)
{
    if (make_test_dir(state) != 0) return -1;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return -1;
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(bin_dir, sizeof bin_dir, "%s", exe);
    snprintf(preload, sizeof preload, "%s/libmmtmem-preload.so", exe);
    return access(preload, R_OK) == 0 ? 0 : -1;
}

/* Runs `command` with sh, stdout to `out`, stderr to `err`, plainly or under mmt-run
 * (with a JSON summary into `report`). Returns the exit status as a shell gives it. The
 * shell execs the command, so the summary is the command's, not its children's. */
static int run(const char *command, bool with_mmt, const char *out, const char *err,
               const char *report)
{
    char cmd[8192];
    if (with_mmt)
        snprintf(cmd, sizeof cmd,
                 "'%s/mmt-run' --report json --out '%s' -- sh -c 'exec %s' > '%s' 2> '%s'", bin_dir,
                 report, command, out, err);
    else
        snprintf(cmd, sizeof cmd, "sh -c '%s' > '%s' 2> '%s'", command, out, err);
    int status = system(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static bool same_files(const char *a, const char *b)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

/* The "allocations" figure of a JSON report. */
static long long report_allocations(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *at = strstr(buf, "\"allocations\":");
    return at ? atoll(at + strlen("\"allocations\":")) : -1;
}

/* Runs `command` both ways in the test directory; asserts the same output and status,
 * and a report with at least `min_allocations`. Returns the status. */
static int same_both_ways(const char *command, long long min_allocations)
{
    char plain[512], with[512], err1[512], err2[512], report[512];
    snprintf(plain, sizeof plain, "%s/plain.out", test_dir);
    snprintf(with, sizeof with, "%s/mmt.out", test_dir);
    snprintf(err1, sizeof err1, "%s/plain.err", test_dir);
    snprintf(err2, sizeof err2, "%s/mmt.err", test_dir);
    snprintf(report, sizeof report, "%s/report.json", test_dir);
    unlink(report);
    int a = run(command, false, plain, err1, NULL);
    int b = run(command, true, with, err2, report);
    if (a != b) fail_msg("%s: exit %d plain, %d under mmt", command, a, b);
    if (!same_files(plain, with)) fail_msg("%s: the output differs under mmt", command);
    if (!same_files(err1, err2)) fail_msg("%s: the errors differ under mmt", command);
    long long allocations = report_allocations(report);
    if (allocations < min_allocations)
        fail_msg("%s: the report shows %lld allocations, expected at least %lld", command,
                 allocations, min_allocations);
    return a;
}

static void test_preload_sort_on_a_50_mb_file(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    char path[512], command[1024];
    snprintf(path, sizeof path, "%s/numbers.txt", test_dir);
    FILE *f = fopen(path, "w");
    uint64_t x = 88172645463325252ull;
    size_t written = 0;
    while (written < 50u << 20) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        written += (size_t)fprintf(f, "%llu\n", (unsigned long long)(x % 1000000000000ull));
    }
    fclose(f);
    snprintf(command, sizeof command, "sort -n %s", path);
    assert_int_equal(same_both_ways(command, 10), 0);
    snprintf(command, sizeof command, "sort %s/no-such-file", test_dir);
    assert_int_equal(same_both_ways(command, 1), 2); /* the exit code comes through */
}

static void test_preload_python_building_large_lists(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    assert_int_equal(same_both_ways("/usr/bin/python3 -c \"x = [[i] * 10 for i in range(300000)]; "
                                    "d = {i: str(i) for i in range(100000)}; print(len(x), len(d))\"",
                                    500), /* CPython keeps small objects in its own arenas */
                     0);
    assert_int_equal(same_both_ways("/usr/bin/python3 -c \"import sys; sys.exit(7)\"", 100), 7);
}

static void test_preload_gcc_compiling_a_file(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    char src[512], command[2048];
    snprintf(src, sizeof src, "%s/unit.c", test_dir);
    write_in_place(src, "#include <stdio.h>\n"
                        "struct flow { int a, b; };\n"
                        "int sum(const struct flow *f, int n) { int s = 0;\n"
                        "  for (int i = 0; i < n; i++) s += f[i].a * f[i].b; return s; }\n"
                        "int main(void) { struct flow f[3] = {{1, 2}, {3, 4}, {5, 6}};\n"
                        "  printf(\"%d\\n\", sum(f, 3)); return 0; }\n");
    char plain_obj[600], mmt_obj[600];
    snprintf(plain_obj, sizeof plain_obj, "%s/plain.o", test_dir);
    snprintf(mmt_obj, sizeof mmt_obj, "%s/mmt.o", test_dir);
    snprintf(command, sizeof command, "gcc -O2 -c %s -o %s/unit.o", src, test_dir);
    assert_int_equal(same_both_ways(command, 100), 0);
    /* The object file itself: compile once each way and compare. */
    char out[600], err[600], report[600];
    snprintf(out, sizeof out, "%s/x.out", test_dir);
    snprintf(err, sizeof err, "%s/x.err", test_dir);
    snprintf(report, sizeof report, "%s/x.json", test_dir);
    snprintf(command, sizeof command, "gcc -O2 -c %s -o %s", src, plain_obj);
    assert_int_equal(run(command, false, out, err, report), 0);
    snprintf(command, sizeof command, "gcc -O2 -c %s -o %s", src, mmt_obj);
    assert_int_equal(run(command, true, out, err, report), 0);
    assert_true(same_files(plain_obj, mmt_obj));
    write_in_place(src, "int main(void) { return missing; }\n");
    snprintf(command, sizeof command, "gcc -c %s -o %s/bad.o", src, test_dir);
    assert_int_equal(same_both_ways(command, 100), 1);
}

static void test_preload_git_status(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    char command[2048];
    snprintf(command, sizeof command,
             "cd %s && rm -rf repo && git init -q repo && cd repo && echo one > a && echo two > b "
             "&& git add a && git -c user.name=t -c user.email=t@t commit -qm first && echo more >> a",
             test_dir);
    assert_int_equal(system(command), 0);
    snprintf(command, sizeof command, "git -C %s/repo status --porcelain", test_dir);
    assert_int_equal(same_both_ways(command, 10), 0);
    snprintf(command, sizeof command, "git -C %s/repo log --format=%%s", test_dir);
    assert_int_equal(same_both_ways(command, 1), 0);
}

static void test_preload_multithreaded_program_counts_exactly(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    char command[PATH_MAX + 32];
    snprintf(command, sizeof command, "%s/e2e_threads", bin_dir);
    /* The program checks, through mmt_meminfo, that exactly its 12345-byte leak stays. */
    assert_int_equal(same_both_ways(command, 100000), 0);
}

static void test_preload_threaded_program_that_forks_with_a_policy(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* Python with three threads allocating forks ten children while the engine's timer
     * runs every 2 ms; each child allocates, starts a thread of its own and exits with
     * len(x) % 7 = 5, and the parent prints the children's exit codes (SIGALRM would end
     * a hung one). Python forks with its lock held, so its threads are never inside mmt
     * at the fork: test_fork.c is where forks land on held locks. This is the real
     * program's view: output and status unchanged. */
    char policy[512], command[4096];
    snprintf(policy, sizeof policy, "%s/busy.lua", test_dir);
    write_in_place(policy, "local mmt = require 'mmt'\n"
                           "local n = 0\n"
                           "mmt.every(0.002, function(m) n = n + 1 end)\n"
                           "mmt.rule { name = 'any', when = function(m) return m.in_use % 2 == 0 end,\n"
                           "  fire = function() end }\n");
    snprintf(command, sizeof command,
             "env MMT_POLICY=%s MMT_INTERVAL=2 /usr/bin/python3 -c \"\n"
             "import os, signal, threading\n"
             "signal.alarm(60)\n"
             "def work(): return [str(i) * 3 for i in range(100000)]\n"
             "ts = [threading.Thread(target=work) for _ in range(3)]\n"
             "[t.start() for t in ts]\n"
             "codes = []\n"
             "for i in range(10):\n"
             "    pid = os.fork()\n"
             "    if pid == 0:\n"
             "        signal.alarm(30)\n"
             "        x = [bytes(1000) for _ in range(2000)]\n"
             "        t = threading.Thread(target=work); t.start(); t.join()\n"
             "        os._exit(len(x) %% 7)\n"
             "    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
             "[t.join() for t in ts]\n"
             "print(codes)\"",
             policy);
    assert_int_equal(same_both_ways(command, 1000), 0);
    char out[512], text[256];
    snprintf(out, sizeof out, "%s/mmt.out", test_dir);
    FILE *f = fopen(out, "r");
    assert_non_null(f);
    assert_non_null(fgets(text, sizeof text, f));
    fclose(f);
    assert_string_equal(text, "[5, 5, 5, 5, 5, 5, 5, 5, 5, 5]\n");
}

/* Runs `command` (its environment settings first) through sh with the preload library,
 * stderr into `err` (a buffer of `len`); returns the exit status. */
static int run_preloaded(const char *command, char *err, size_t len)
{
    char cmd[16384], path[600];
    snprintf(path, sizeof path, "%s/env.err", test_dir);
    snprintf(cmd, sizeof cmd, "env LD_PRELOAD='%s' %s 2> '%s'", preload, command, path);
    int status = system(cmd);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(err, 1, len - 1, f) : 0;
    err[n] = '\0';
    if (f) fclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int count_of(const char *text, const char *needle)
{
    int n = 0;
    for (const char *at = strstr(text, needle); at; at = strstr(at + 1, needle)) n++;
    return n;
}

static void test_preload_environment_out_of_range_is_said_and_the_default_used(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    static char err[16384];
    char policy[600], command[8192], report[600], want[1024];
    /* A rule that says so at every evaluation: on the default 1000 ms timer it is
     * evaluated at most once or twice however slowly the half second sleep passes; on a
     * 1 ms timer (4294967297 cast to unsigned) hundreds of times. (A task would not tell:
     * it runs at its own period, whatever the timer's.) */
    snprintf(policy, sizeof policy, "%s/tick.lua", test_dir);
    write_in_place(policy, "local mmt = require 'mmt'\n"
                           "mmt.rule { name = 'tick', when = function(m) mmt.log('info', 'TICK')\n"
                           "  return false end, fire = function() end }\n");
    static const char *const intervals[] = {"4294967297", "-1", "10ms", "86400001"};
    for (size_t i = 0; i < sizeof intervals / sizeof intervals[0]; i++) {
        snprintf(command, sizeof command, "MMT_INTERVAL='%s' MMT_POLICY='%s' sleep 0.5",
                 intervals[i], policy);
        assert_int_equal(run_preloaded(command, err, sizeof err), 0);
        snprintf(want, sizeof want,
                 "mmt: MMT_INTERVAL=%s: not a number of milliseconds from 0 to 86400000; using "
                 "1000\n",
                 intervals[i]);
        if (count_of(err, want) != 1 || count_of(err, "TICK") > 3)
            fail_msg("MMT_INTERVAL=%s: stderr:\n%s", intervals[i], err);
    }

    /* An unknown format: text. */
    snprintf(report, sizeof report, "%s/env-report", test_dir);
    snprintf(command, sizeof command, "MMT_REPORT=xml MMT_OUT='%s' true", report);
    assert_int_equal(run_preloaded(command, err, sizeof err), 0);
    assert_string_equal(err, "mmt: MMT_REPORT=xml: not text, json or prometheus; using text\n");
    FILE *f = fopen(report, "r");
    assert_non_null(f);
    char line[512] = "";
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_true(strncmp(line, "allocated ", strlen("allocated ")) == 0);

    /* A process id that is not one: every process reports, as without it. */
    unlink(report);
    snprintf(command, sizeof command, "MMT_REPORT=json MMT_REPORT_PID=abc MMT_OUT='%s' true", report);
    assert_int_equal(run_preloaded(command, err, sizeof err), 0);
    assert_string_equal(err, "mmt: MMT_REPORT_PID=abc: not a process id from 1 to 2147483647; "
                             "every process reports\n");
    assert_true(report_allocations(report) >= 0);

    /* A report path longer than any path: stderr, not a path cut short. */
    char longpath[5000];
    memset(longpath, 'x', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    snprintf(command, sizeof command, "MMT_REPORT=json MMT_OUT='%s' true", longpath);
    assert_int_equal(run_preloaded(command, err, sizeof err), 0);
    assert_contains(err, "mmt: MMT_OUT is 4999 bytes long, more than the 4095 a path may have; "
                         "the report goes to stderr\n{\"allocated\":");
}

/* ---- The allocator underneath, and a report per process -------------------------------- */

#define JEMALLOC "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
#define MIMALLOC "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2"

/* e2e_usable (see its file) under the library, alone or with `after` preloaded after it;
 * its stdout into out. Returns its exit status. */
static int run_usable(const char *after, const char *args, char *out, size_t out_len, char *err,
                      size_t err_len)
{
    char command[16384], path[600];
    snprintf(path, sizeof path, "%s/usable.out", test_dir);
    snprintf(command, sizeof command, "LD_PRELOAD='%s%s%s' '%s/e2e_usable' %s > '%s'", preload,
             after ? " " : "", after ? after : "", bin_dir, args, path);
    int rc = run_preloaded(command, err, err_len);
    read_file(path, out, out_len);
    return rc;
}

static void test_preload_usable_size_is_the_allocators_room_counted_exactly(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* Each block filled to the room malloc_usable_size gives: the counters move by those
     * sizes exactly, and back once the blocks are freed (the program checks both). */
    char out[256], err[4096];
    if (run_usable(NULL, "", out, sizeof out, err, sizeof err) != 0) fail_msg("%s", err);
    assert_string_equal(out, "allocator libc.so.6\n");
    assert_string_equal(err, "");
}

static void test_preload_wraps_an_allocator_preloaded_after_it(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* Preloaded after mmt, jemalloc (and mimalloc) is the allocator underneath: mmt names
     * it, the usable sizes are its own, and jemalloc's statistics see the blocks. */
    static const char *const libs[] = {JEMALLOC, MIMALLOC};
    static const char *const names[] = {"allocator libjemalloc.so.2\n", "allocator libmimalloc.so.2\n"};
    int ran = 0;
    for (int k = 0; k < 2; k++) {
        if (access(libs[k], R_OK) != 0) continue;
        char out[256], err[4096];
        if (run_usable(libs[k], "", out, sizeof out, err, sizeof err) != 0)
            fail_msg("%s: %s", libs[k], err);
        assert_string_equal(out, names[k]);
        ran++;
    }
    if (!ran) skip(); /* libjemalloc2 comes with redis-server, which the tests install */
}

static void test_preload_says_when_an_allocator_comes_before_it(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    if (access(JEMALLOC, R_OK) != 0) skip();
    /* jemalloc first: the program's blocks never reach mmt, and the library says so. */
    char command[16384], err[4096];
    snprintf(command, sizeof command, "LD_PRELOAD='%s %s' true", JEMALLOC, preload);
    assert_int_equal(run_preloaded(command, err, sizeof err), 0);
    assert_string_equal(err, "mmt: malloc comes from " JEMALLOC ", which is before "
                             "libmmtmem-preload.so in the lookup order: the program's "
                             "allocations are not counted (put mmt first in LD_PRELOAD)\n");
}

/* The value of `"key":` in a flat JSON text, as an integer; -1 if it is not there. */
static long long json_int(const char *text, const char *key)
{
    char pattern[80];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *at = strstr(text, pattern);
    return at ? atoll(at + strlen(pattern)) : -1;
}

static void test_preload_forked_child_reports_its_own_figures(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* %p in MMT_OUT: a file per process. The parent holds 1 MiB and forks; the child
     * allocates 100,000 bytes in 10 blocks and leaves with _exit. Its report counts those
     * alone, and starts from the 1 MiB it inherited. */
    char command[16384], out[256], err[4096], path[700], child[4096], parent[4096];
    snprintf(command, sizeof command, "MMT_REPORT=json MMT_OUT='%s/fork.%%p' '%s/e2e_usable' fork",
             test_dir, bin_dir);
    snprintf(path, sizeof path, "%s/usable.out", test_dir);
    strcat(command, " > '");
    strcat(command, path);
    strcat(command, "'");
    assert_int_equal(run_preloaded(command, err, sizeof err), 0);
    read_file(path, out, sizeof out);
    long pid = 0;
    assert_int_equal(sscanf(out, "child %ld", &pid), 1);
    snprintf(path, sizeof path, "%s/fork.%ld", test_dir, pid);
    read_file(path, child, sizeof child);
    assert_contains(child, "\"forked\":true");
    assert_int_equal(json_int(child, "allocated"), 100000);
    assert_int_equal(json_int(child, "allocations"), 10);
    assert_int_equal(json_int(child, "freed"), 0);
    assert_true(json_int(child, "in_use_at_start") >= 1 << 20);
    assert_int_equal(json_int(child, "in_use"), json_int(child, "in_use_at_start") + 100000);
    assert_int_equal(json_int(child, "peak"), json_int(child, "in_use"));
    /* The parent's file: its own figures, the child not among them. */
    char dir_cmd[800];
    snprintf(dir_cmd, sizeof dir_cmd, "%s/fork.%lld", test_dir, json_int(child, "ppid"));
    read_file(dir_cmd, parent, sizeof parent);
    assert_contains(parent, "\"forked\":false");
    assert_true(json_int(parent, "allocated") >= 1 << 20);
    assert_true(json_int(parent, "allocations") < 100);
}

static void test_preload_usable_size_asked_by_two_threads_at_once(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* Two threads ask of the same blocks: neither reads a header half grown (which aborted
     * as "not a live mmt block"), and the growth is counted once (in_use comes back). */
    for (int round = 0; round < 5; round++) {
        char out[256], err[4096];
        if (run_usable(NULL, "race", out, sizeof out, err, sizeof err) != 0)
            fail_msg("round %d: %s", round, err);
        assert_string_equal(out, "raced\n");
    }
}

static void test_preload_exit_from_a_signal_handler_never_hangs(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* _exit from a handler that interrupted the counters' reading: the report is written
     * or skipped, never waited for (it hung one run in two before). */
    char command[16384], err[4096];
    for (int round = 0; round < 10; round++) {
        snprintf(command, sizeof command,
                 "MMT_REPORT=json MMT_OUT='%s/sig.%%p' timeout 10 '%s/e2e_usable' sigexit", test_dir,
                 bin_dir);
        int rc = run_preloaded(command, err, sizeof err);
        if (rc != 0) fail_msg("round %d: exit %d (124: it hung)\n%s", round, rc, err);
    }
}

static void test_preload_report_files_are_never_written_through_a_link_nor_over_another(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* A link planted at the name a process will report to (a recreated report folder, a
     * guessed name in /tmp) is refused, and the file it points to left alone. */
    char command[16384], err[4096], victim[600], text[256];
    snprintf(victim, sizeof victim, "%s/victim.txt", test_dir);
    write_in_place(victim, "precious\n");
    snprintf(command, sizeof command,
             "MMT_REPORT=json MMT_OUT='%s/link.%%p' sh -c 'rm -f %s/link.$$; "
             "ln -s %s %s/link.$$; exec true'", test_dir, test_dir, victim, test_dir);
    assert_int_equal(run_preloaded(command, err, sizeof err), 0);
    read_file(victim, text, sizeof text);
    assert_string_equal(text, "precious\n");
    assert_contains(err, "Too many levels of symbolic links");

    /* A finished report already at the name is an earlier process's whose id this one
     * reuses: moved aside (NAME.1), not written over. */
    char fake[600], path[700];
    snprintf(fake, sizeof fake, "%s/fake.json", test_dir);
    write_in_place(fake, "{\"pid\":1,\"allocated\":5}\n");
    snprintf(command, sizeof command,
             "MMT_REPORT=json MMT_OUT='%s/reuse.%%p' sh -c 'cp %s %s/reuse.$$; "
             "echo $$ > %s/reuse.pid; exec true'", test_dir, fake, test_dir, test_dir);
    assert_int_equal(run_preloaded(command, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/reuse.pid", test_dir);
    read_file(path, text, sizeof text);
    long pid = atol(text);
    assert_true(pid > 0);
    snprintf(path, sizeof path, "%s/reuse.%ld.1", test_dir, pid);
    read_file(path, text, sizeof text);
    assert_string_equal(text, "{\"pid\":1,\"allocated\":5}\n");
    snprintf(path, sizeof path, "%s/reuse.%ld", test_dir, pid);
    read_file(path, text, sizeof text);
    assert_contains(text, "\"comm\":\"true\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_preload_sort_on_a_50_mb_file),
        cmocka_unit_test(test_preload_python_building_large_lists),
        cmocka_unit_test(test_preload_gcc_compiling_a_file),
        cmocka_unit_test(test_preload_git_status),
        cmocka_unit_test(test_preload_multithreaded_program_counts_exactly),
        cmocka_unit_test(test_preload_threaded_program_that_forks_with_a_policy),
        cmocka_unit_test(test_preload_environment_out_of_range_is_said_and_the_default_used),
        cmocka_unit_test(test_preload_usable_size_is_the_allocators_room_counted_exactly),
        cmocka_unit_test(test_preload_wraps_an_allocator_preloaded_after_it),
        cmocka_unit_test(test_preload_says_when_an_allocator_comes_before_it),
        cmocka_unit_test(test_preload_forked_child_reports_its_own_figures),
        cmocka_unit_test(test_preload_usable_size_asked_by_two_threads_at_once),
        cmocka_unit_test(test_preload_exit_from_a_signal_handler_never_hangs),
        cmocka_unit_test(test_preload_report_files_are_never_written_through_a_link_nor_over_another),
    };
    return cmocka_run_group_tests_name("preload", tests, find_library, remove_test_dir);
}

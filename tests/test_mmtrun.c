/*
 * mmt-run on real commands: the program's output and exit status come through untouched,
 * a death by signal is said and exits as a shell would, the summary is right in each
 * format (JSON checked by Python, Prometheus by the official client's parser), and the
 * policy runs inside the program.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>

#include "policyutil.h"

static char mmt_run[PATH_MAX + 16], bin_dir[PATH_MAX];

static int setup(void **state)
{
    if (make_test_dir(state) != 0) return -1;
    ssize_t n = readlink("/proc/self/exe", bin_dir, sizeof bin_dir - 1);
    if (n <= 0) return -1;
    bin_dir[n] = '\0';
    *strrchr(bin_dir, '/') = '\0';
    snprintf(mmt_run, sizeof mmt_run, "%s/mmt-run", bin_dir);
    return 0;
}

typedef struct result {
    int status;
    char out[8192], err[8192];
} result_t;

static void slurp(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, len - 1, f) : 0;
    buf[n] = '\0';
    if (f) fclose(f);
}

/* Runs "mmt-run ARGS" through sh; returns its exit status, stdout and stderr. */
static void mmt_run_with(const char *args, result_t *r)
{
    char out[512], err[512], cmd[8192];
    snprintf(out, sizeof out, "%s/run.out", test_dir);
    snprintf(err, sizeof err, "%s/run.err", test_dir);
    snprintf(cmd, sizeof cmd, "'%s' %s > '%s' 2> '%s'", mmt_run, args, out, err);
    int status = system(cmd);
    r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    slurp(out, r->out, sizeof r->out);
    slurp(err, r->err, sizeof r->err);
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
    slurp(check, json, sizeof json);
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
    assert_contains(r.err, "mmt policy [info] TICK ");
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
             "cd '%s' && '%s' --policy rel.lua --interval 10 --trace rel.csv -- "
             "sh -c 'cd / && exec sleep 0.3' > '%s' 2> '%s'",
             test_dir, mmt_run, out, err);
    assert_int_equal(system(cmd), 0);
    slurp(err, text, sizeof text);
    assert_contains(text, "mmt policy [info] REL TICK");
    assert_null(strstr(text, "cannot"));
    snprintf(cmd, sizeof cmd, "%s/rel.csv", test_dir);
    assert_int_equal(access(cmd, R_OK), 0);
    assert_int_not_equal(access("/rel.csv", F_OK), 0);
}

/* The first of a few places, relative to the test program, where `name` is. */
static bool find_source(const char *name, char *buf, size_t len)
{
    static const char *const ups[] = {"../..", "../../..", NULL}; /* build/<config>, build/<variant>/<config> */
    for (const char *const *up = ups; *up; up++) {
        snprintf(buf, len, "%s/%s/%s", bin_dir, *up, name);
        if (access(buf, R_OK) == 0) return true;
    }
    return false;
}

static void test_mmtrun_trace_and_svg_show_usage_and_rule_events(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    static result_t r;
    char policy[512], args[2048], check[PATH_MAX * 2 + 1024], checker[PATH_MAX + 64];
    if (!find_source("tests/e2e/check_plot.py", checker, sizeof checker))
        fail_msg("tests/e2e/check_plot.py not found from %s", bin_dir);
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

    /* Drawn by a real browser when there is one: Debian's chromium, headless. */
    char png[600] = "";
    if (access("/usr/bin/chromium", X_OK) == 0) {
        snprintf(png, sizeof png, "%s/t.png", test_dir);
        snprintf(check, sizeof check,
                 "timeout 120 /usr/bin/chromium --headless --no-sandbox --disable-gpu "
                 "--disable-dev-shm-usage --hide-scrollbars --window-size=960,540 "
                 "--screenshot='%s' 'file://%s/t.svg' > /dev/null 2>&1",
                 png, test_dir);
        if (system(check) != 0) fail_msg("chromium could not take the screenshot");
    } else {
        print_message("chromium is not installed: the picture is checked as XML only\n");
    }
    snprintf(check, sizeof check, "/usr/bin/python3 '%s' '%s/t.csv' '%s/t.svg' big %s", checker,
             test_dir, test_dir, png);
    assert_int_equal(system(check), 0);

    /* --svg alone leaves no trace behind. */
    snprintf(args, sizeof args, "--svg %s/alone.svg -- true", test_dir);
    mmt_run_with(args, &r);
    assert_int_equal(r.status, 0);
    snprintf(check, sizeof check, "%s/alone.svg", test_dir);
    assert_int_equal(access(check, R_OK), 0);
    snprintf(check, sizeof check, "ls /tmp/mmt-trace-* 2> /dev/null | grep -q .");
    assert_int_not_equal(system(check), 0);

    /* A picture that cannot be written is said, and the program's status still comes back. */
    mmt_run_with("--svg /no/such/dir/x.svg -- sh -c 'exit 4'", &r);
    assert_int_equal(r.status, 4);
    assert_contains(r.err, "mmt-run: no picture: cannot write /no/such/dir/x.svg: No such file or directory");
    mmt_run_with("--trace /no/such/dir/t.csv -- sh -c 'echo still; exit 5'", &r);
    assert_int_equal(r.status, 5);
    assert_string_equal(r.out, "still\n");
    assert_contains(r.err, "mmt: cannot write the trace to /no/such/dir/t.csv: No such file or directory\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mmtrun_forwards_output_and_exit_status),
        cmocka_unit_test(test_mmtrun_reports_the_program_not_its_forked_copies),
        cmocka_unit_test(test_mmtrun_says_when_the_program_dies_of_a_signal),
        cmocka_unit_test(test_mmtrun_rejects_what_it_cannot_run),
        cmocka_unit_test(test_mmtrun_summary_in_json_counts_the_leak),
        cmocka_unit_test(test_mmtrun_summary_in_prometheus_parses),
        cmocka_unit_test(test_mmtrun_runs_the_policy_inside_the_program),
        cmocka_unit_test(test_mmtrun_trace_and_svg_show_usage_and_rule_events),
        cmocka_unit_test(test_mmtrun_relative_paths_survive_a_change_of_folder),
    };
    return cmocka_run_group_tests_name("mmtrun", tests, setup, remove_test_dir);
}

/*
 * mmt-policy, run as operators run it: check, test and replay on real files, with a real
 * program recorded by mmt-run for the replay.
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "procutil.h"
#include "testutil.h"

enum { OUT = 1 << 16 };

static char bin[4096];  /* the folder of the test programs and mmt-policy */
static char tool[4200]; /* mmt-policy */
static char dir[64];    /* a fresh folder for each test */

static int setup(void **state)
{
    (void)state;
    assert_true(test_bin_dir(bin, sizeof bin));
    snprintf(tool, sizeof tool, "%s/mmt-policy", bin);
    snprintf(dir, sizeof dir, "/tmp/mmt-policytool-XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(chdir(dir), 0); /* mmt-policy runs there, and finds its files there */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    assert_int_equal(chdir("/"), 0);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* dir/name, in a buffer of the caller's. */
static const char *in_dir(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
    return buf;
}

static void write_text(const char *name, const char *fmt, ...)
{
    char path[256];
    FILE *f = fopen(in_dir(path, sizeof path, name), "w");
    assert_non_null(f);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    assert_int_equal(fclose(f), 0);
}

/* Runs mmt-policy with the arguments (NULL-terminated), in dir; its output into out. */
static int run_tool(char *out, const char *first, ...)
{
    const char *argv[32] = {tool, first};
    int n = 2;
    va_list ap;
    va_start(ap, first);
    while (n < 31 && (argv[n] = va_arg(ap, const char *)) != NULL) n++;
    va_end(ap);
    argv[n] = NULL;
    return run_to_end(argv, out, OUT, 120);
}

/* ---- check --------------------------------------------------------------------------------- */

static void test_check_summarises_what_a_policy_declares(void **state)
{
    (void)state;
    char *out = malloc(OUT);
    char hw[4200], report[4200];
    snprintf(hw, sizeof hw, "%s", tree_path("policies/high_water.lua"));
    snprintf(report, sizeof report, "%s", tree_path("policies/report.lua"));
    int rc = run_tool(out, "check", hw, report, NULL);
    print_message("%s", out);
    assert_int_equal(rc, 0);
    assert_contains(out, "high-water: in_use above 256 MiB, below 200 MiB (");
    assert_contains(out, "high_water.lua:15)");
    assert_contains(out, "every 10 s (");
    assert_contains(out, "report.lua:11)");
    write_text("hold.lua", "local mmt = require 'mmt'\n"
               "mmt.rule { name = 'slow', metric = 'rate', above = 2 * mmt.MiB, below = 0,\n"
               "  hold = 2, fire = function() end }\n"
               "mmt.rule { name = 'custom', when = function(m) return false end,\n"
               "  fire = function() end }\n");
    rc = run_tool(out, "check", "hold.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 0);
    assert_contains(out, "hold.lua: 2 rules, 0 tasks");
    assert_contains(out, "slow: rate above 2 MiB/s, below 0 B/s, hold 2 s (hold.lua:2)");
    assert_contains(out, "custom: when function (hold.lua:4)");
    free(out);
}

static void test_check_names_the_file_and_line_of_an_error(void **state)
{
    (void)state;
    char *out = malloc(OUT);
    write_text("good.lua", "local mmt = require 'mmt'\n"
               "mmt.rule { name = 'a', metric = 'in_use', above = 1, fire = function() end }\n");
    write_text("syntax.lua", "local mmt = require 'mmt'\n\nmmt.rule { name = 'a',, }\n");
    write_text("metric.lua", "local mmt = require 'mmt'\n"
               "mmt.rule { name = 'a', metric = 'nonsense', above = 1, fire = function() end }\n");
    int rc = run_tool(out, "check", "good.lua", "syntax.lua", "metric.lua", "absent.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 1);
    assert_contains(out, "good.lua: 1 rule, 0 tasks");
    assert_contains(out, "syntax.lua:3:");
    assert_contains(out, "metric.lua:2:");
    assert_contains(out, "nonsense");
    assert_contains(out, "absent.lua");
    free(out);
}

static void test_check_lists_host_actions_and_judges_them_against_the_hosts(void **state)
{
    (void)state;
    char *out = malloc(OUT);
    write_text("calls.lua", "local mmt = require 'mmt'\n"
               "mmt.rule { name = 'a', metric = 'in_use', above = 1, fire = function()\n"
               "  mmt.call('shed', 1)\n"
               "  mmt.call(\"flush\", 2) end }\n"
               "-- mmt.call('old', 1)\n"
               "local s = [[ mmt.call('quoted', 1) ]]\n");
    int rc = run_tool(out, "check", "calls.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 0);
    assert_contains(out, "calls shed (calls.lua:3): the host must register it");
    assert_contains(out, "calls flush (calls.lua:4)");
    assert_null(strstr(out, "old"));
    assert_null(strstr(out, "quoted"));
    rc = run_tool(out, "check", "--actions", "shed,flush", "calls.lua", NULL);
    assert_int_equal(rc, 0);
    assert_null(strstr(out, "warning"));
    rc = run_tool(out, "check", "--actions", "shed", "calls.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 0);
    assert_contains(out, "calls.lua:4: warning: mmt.call(\"flush\"): the host has no such action "
                         "(it has: shed)");
    rc = run_tool(out, "check", "--strict", "--actions", "shed", "calls.lua", NULL);
    assert_int_equal(rc, 1);
    assert_contains(out, "calls.lua:4: error: mmt.call(\"flush\")");
    free(out);
}

/* A policy that would act on everything it can: check runs its file and writes nothing,
 * limits nothing, and does not wait on a FIFO put where a policy should be. */
static void test_check_has_no_side_effects(void **state)
{
    (void)state;
    char *out = malloc(OUT);
    write_text("busy.lua", "local mmt = require 'mmt'\n"
               "mmt.limit('cache', 1024)\n"
               "mmt.every(1, function() mmt.trim() end)\n"
               "mmt.rule { name = 'r', tag = 'cache', metric = 'in_use', above = 1,\n"
               "  fire = function() mmt.reclaim('cache', 10) end }\n"
               "mmt.log('info', 'loaded')\n");
    char fifo[256];
    assert_int_equal(mkfifo(in_dir(fifo, sizeof fifo, "fifo.lua"), 0600), 0);
    int rc = run_tool(out, "check", "busy.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 0);
    assert_contains(out, "limit 1 KiB (busy.lua:2)");
    assert_contains(out, "r: in_use of tag cache above 1 B (busy.lua:4)");
    /* Only the two files the test made are in the folder. */
    char cmd[256], listing[256];
    snprintf(cmd, sizeof cmd, "ls -A '%s'", dir);
    FILE *ls = popen(cmd, "r");
    assert_non_null(ls);
    size_t n = fread(listing, 1, sizeof listing - 1, ls);
    listing[n] = '\0';
    pclose(ls);
    assert_string_equal(listing, "busy.lua\nfifo.lua\n");
    double t0 = now_seconds();
    rc = run_tool(out, "check", "fifo.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 1);
    assert_contains(out, "fifo.lua");
    assert_true(now_seconds() - t0 < 30);
    free(out);
}

/* ---- test ---------------------------------------------------------------------------------- */

static const char *hw_case(char *buf, size_t len, int line_at, const char *expect)
{
    snprintf(buf, len,
             "local t = require 'mmt.test'\n"
             "%s"
             "t.case {\n"
             "   name = 'high water',\n"
             "   policy = '%s',\n"
             "   series = { in_use = '100MiB+20MiBx10 300MiB 150MiBx5' },\n"
             "   expect = { %s },\n"
             "}\n",
             line_at > 2 ? "\n" : "", tree_path("policies/high_water.lua"), expect);
    return buf;
}

static void test_test_passes_fails_and_says_where(void **state)
{
    (void)state;
    char *out = malloc(OUT), text[8192];
    write_text("pass_test.lua", "%s",
               hw_case(text, sizeof text, 2,
                       "{ at = 8, fire = 'high-water' }, { at = 12, resolve = 'high-water' },"
                       "{ at = 12, log = 'info', match = 'cleared' },"
                       "{ from = 8, to = 8, log = 'warn', match = '^high%-water: 260 MiB' }"));
    int rc = run_tool(out, "test", "pass_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 0);
    assert_contains(out, "ok    pass_test.lua:2: high water");
    assert_contains(out, "1 passed, 0 failed, 0 could not run");

    /* A fire a second early, a resolve not expected, a log line that never comes. */
    write_text("fail_test.lua", "%s",
               hw_case(text, sizeof text, 3,
                       "{ at = 7, fire = 'high-water' }, { at = 12, log = 'warn', match = 'x' }"));
    rc = run_tool(out, "test", "pass_test.lua", "fail_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 1);
    assert_contains(out, "FAIL  fail_test.lua:3: high water");
    assert_contains(out, "  - t=7        fire     high-water\n"
                         "  + t=8        fire     high-water\n"
                         "  + t=12       resolve  high-water\n");
    assert_contains(out, "  - t=12: a line at level warn matching \"x\": 0 came");
    assert_contains(out, "t=12       info  high-water cleared: 150 MiB in use, under 200 MiB");
    assert_contains(out, "1 passed, 1 failed, 0 could not run");

    /* Nothing expected, and nothing happens: expect_none. */
    write_text("none_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'quiet', policy = '%s', series = { in_use = '1MiBx100' },\n"
               "  expect_none = true }\n", tree_path("policies/high_water.lua"));
    rc = run_tool(out, "test", "none_test.lua", NULL);
    assert_int_equal(rc, 0);
    free(out);
}

static void test_test_exit_2_for_a_file_or_case_that_cannot_run(void **state)
{
    (void)state;
    char *out = malloc(OUT);
    write_text("syntax_test.lua", "local t = require 'mmt.test'\nt.case {\n");
    int rc = run_tool(out, "test", "syntax_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 2);
    assert_contains(out, "ERROR syntax_test.lua:");
    write_text("field_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'n', policy = 'p.lua', series = { in_use = '1' },\n"
               "  expect_none = true, timeout = 3 }\n");
    rc = run_tool(out, "test", "field_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 2);
    assert_contains(out, "field_test.lua:2: the case has no field 'timeout'");
    write_text("series_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'n', policy = 'p.lua', series = { in_use = '1MiB+x3' },\n"
               "  expect_none = true }\n");
    rc = run_tool(out, "test", "series_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 2);
    assert_contains(out, "series in_use: \"1MiB+x3\": not a sample");
    write_text("inf_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'n', policy = 'p.lua', series = { in_use = '5+Infx3' },\n"
               "  expect_none = true }\n"
               "t.case { name = 'n', policy = 'p.lua', series = { in_use = '5 Inf' },\n"
               "  expect_none = true }\n");
    rc = run_tool(out, "test", "inf_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 2);
    assert_contains(out, "series in_use: \"5+Infx3\": not a sample");
    assert_contains(out, "series: in_use: sample 1 is inf, 2^64 or more");
    write_text("figure_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'n', policy = 'p.lua', series = { inuse = '1' },\n"
               "  expect_none = true }\n");
    rc = run_tool(out, "test", "figure_test.lua", NULL);
    assert_int_equal(rc, 2);
    assert_contains(out, "no figure named");
    /* A policy that does not load is a failed case, not an unreadable test. */
    write_text("missing_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'n', policy = 'nowhere.lua', series = { in_use = '1' },\n"
               "  expect_none = true }\n");
    rc = run_tool(out, "test", "missing_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 1);
    assert_contains(out, "the policy did not load:");
    assert_contains(out, "nowhere.lua");
    free(out);
}

/* The expanding notation, read back through every sample the policy saw: `_` is no tick,
 * units multiply, a+bxn is n + 1 samples. */
static void test_test_reads_the_expanding_notation_as_promtool(void **state)
{
    (void)state;
    char *out = malloc(OUT);
    write_text("seen.lua", "local mmt = require 'mmt'\n"
               "mmt.rule { name = 'seen', when = function(m) mmt.call('v', m.in_use)\n"
               "  return false end, fire = function() end }\n");
    write_text("notation_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'notation', policy = 'seen.lua', interval = 2,\n"
               "  series = { in_use = '1KiB+1KiBx2 _ 5MiB _x2 7x1 3-1x2' },\n"
               "  expect = { { at = 0, call = 'v', arg = 1024 }, { at = 2, call = 'v', arg = 2048 },\n"
               "    { at = 4, call = 'v', arg = 3072 }, { at = 8, call = 'v', arg = 5242880 },\n"
               "    { at = 14, call = 'v', arg = 7 }, { at = 16, call = 'v', arg = 7 },\n"
               "    { at = 18, call = 'v', arg = 3 }, { at = 20, call = 'v', arg = 2 },\n"
               "    { at = 22, call = 'v', arg = 1 } } }\n");
    int rc = run_tool(out, "test", "notation_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 0);
    free(out);
}

/* hold, m.rate, m.eta, m.time and mmt.every on the virtual clock; an hour of samples. */
static void test_test_runs_in_virtual_time(void **state)
{
    (void)state;
    char *out = malloc(OUT);
    write_text("clock.lua", "local mmt = require 'mmt'\n"
               "mmt.rule { name = 'held', metric = 'in_use', above = 10 * mmt.MiB, hold = 5,\n"
               "  fire = function() end }\n"
               "mmt.rule { name = 'fast', metric = 'rate', above = 1.5 * mmt.MiB, below = 0.5 * mmt.MiB,\n"
               "  fire = function() end }\n"
               "mmt.rule { name = 'eta', when = function(m) return m.eta(100 * mmt.MiB) < 20 end,\n"
               "  fire = function(m) mmt.call('when', m.time) end }\n"
               "mmt.every(600, function(m) mmt.call('minute', m.time) end)\n");
    /* 0 B at t = 0, then 2 MiB more a second for 60 s, then flat for the rest of the hour:
     * held holds from t = 6 (12 MiB) and fires 5 s later at 11; fast sees 2 MiB/s from
     * t = 1 and 0 at 61; eta's line (over the last 60 s) puts 100 MiB (100 - 2t) / 2 s
     * away, under 20 s from t = 31, and is flat once the window (t - 60, t] holds only the
     * flat part, from t = 60 on: at t = 119 it resolves. The task runs every 600 s. */
    write_text("clock_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'an hour', policy = 'clock.lua',\n"
               "  series = { in_use = '0+2MiBx60 120MiBx3539' },\n"
               "  expect = { { at = 11, fire = 'held' }, { at = 1, fire = 'fast' },\n"
               "    { at = 61, resolve = 'fast' }, { at = 31, fire = 'eta' }, { at = 119, resolve = 'eta' },\n"
               "    { at = 31, call = 'when', arg = 31 },\n"
               "    { at = 600, call = 'minute', arg = 600 }, { at = 1200, call = 'minute' },\n"
               "    { at = 1800, call = 'minute' }, { at = 2400, call = 'minute' },\n"
               "    { at = 3000, call = 'minute' }, { at = 3600, call = 'minute', arg = 3600 } } }\n");
    double t0 = now_seconds();
    int rc = run_tool(out, "test", "clock_test.lua", NULL);
    double took = now_seconds() - t0;
    print_message("%s  an hour of 1 s samples in %.3f s\n", out, took);
    assert_int_equal(rc, 0);
    /* --debug: the rules' states at every step. */
    write_text("short_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'short', policy = 'clock.lua', series = { in_use = '0+2MiBx12' },\n"
               "  expect = { { at = 11, fire = 'held' }, { at = 1, fire = 'fast' } } }\n");
    rc = run_tool(out, "test", "--debug", "short_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 0);
    assert_contains(out, "short_test.lua:2: short\n");
    assert_contains(out, "t=6 in_use=12 MiB: held=holding(since 6) fast=firing eta=idle\n");
    assert_contains(out, "t=11 in_use=22 MiB: held=firing fast=firing eta=idle\n");
    free(out);
}

static void test_test_gives_tags_and_the_machine_from_the_series(void **state)
{
    (void)state;
    char *out = malloc(OUT);
    write_text("tags.lua", "local mmt = require 'mmt'\n"
               "mmt.rule { name = 'cache', tag = 'cache/pages', metric = 'in_use',\n"
               "  above = 2 * mmt.MiB, fire = function(m)\n"
               "    mmt.call('pages', m.tags['cache/pages'].in_use)\n"
               "    mmt.call('now', mmt.meminfo().tags['cache/pages'].in_use) end }\n"
               "mmt.rule { name = 'room', metric = 'cgroup_ratio', above = 0.9,\n"
               "  fire = function(m) mmt.call('limit', m.cgroup.limit)\n"
               "    mmt.call('now', mmt.meminfo().cgroup.current) end }\n"
               "mmt.rule { name = 'psi', when = function(m) return m.psi ~= nil and\n"
               "  m.psi.some10 > 20 end, fire = function() end }\n");
    write_text("tags_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'tags and machine', policy = 'tags.lua',\n"
               "  series = { tags = { ['cache/pages'] = { in_use = '1MiB 3MiB 1MiB' } },\n"
               "             cgroup_current = '_ 50MiB 95MiB', cgroup_max = '_ 100MiB',\n"
               "             psi_some10 = '_ _ 25' },\n"
               "  expect = { { at = 1, fire = 'cache' }, { at = 1, call = 'pages', arg = 3145728 },\n"
               "    { at = 1, call = 'now', arg = 3145728 },\n"
               "    { at = 2, resolve = 'cache' },\n"
               "    { at = 2, fire = 'room' }, { at = 2, call = 'limit', arg = 104857600 },\n"
               "    { at = 2, call = 'now', arg = 99614720 },\n"
               "    { at = 2, fire = 'psi' } } }\n");
    int rc = run_tool(out, "test", "tags_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 0);
    free(out);
}

/* A list of expectations that can all be met passes in whatever order it is written, and
 * a log expectation with a count wants exactly that many lines (0: none). */
static void test_test_pairs_expectations_whatever_their_order(void **state)
{
    (void)state;
    char *out = malloc(OUT);
    /* high-water fires at t = 3 and again at t = 8. */
    write_text("twice_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'twice', policy = '%s',\n"
               "  series = { in_use = '0 0 0 300MiB 0 0 0 0 300MiB 300MiB' },\n"
               "  expect = { { from = 0, to = 10, fire = 'high-water' }, { at = 3, fire = 'high-water' },\n"
               "    { resolve = 'high-water' },\n"
               "    { log = 'warn', count = 2, match = '^high%%-water: 300 MiB' },\n"
               "    { to = 2, log = 'warn', count = 0 }, { log = 'info', count = 1 } } }\n",
               tree_path("policies/high_water.lua"));
    int rc = run_tool(out, "test", "twice_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 0);
    write_text("thrice_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'thrice', policy = '%s',\n"
               "  series = { in_use = '0 0 0 300MiB 0 0 0 0 300MiB 300MiB' },\n"
               "  expect = { { from = 0, to = 10, fire = 'high-water' }, { at = 3, fire = 'high-water' },\n"
               "    { resolve = 'high-water' }, { log = 'warn', count = 3 } } }\n",
               tree_path("policies/high_water.lua"));
    rc = run_tool(out, "test", "thrice_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 1);
    assert_contains(out, "  - any time: 3 lines at level warn: 2 came\n");
    /* Taken in any one order, the windows and the argument would not pair: a matching does. */
    /* act(5) at t = 1, act(1) at t = 2: the first window, ending first, would take act(5),
     * which the second alone can have. */
    write_text("act.lua", "local mmt = require 'mmt'\n"
               "mmt.every(1, function(m) mmt.call('act', m.time == 1 and 5 or 1) end)\n");
    write_text("argorder_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'argorder', policy = 'act.lua', series = { in_use = '0x2' },\n"
               "  expect = { { from = 1, to = 2, call = 'act' }, { from = 1, to = 3, call = 'act', arg = 5 } } }\n");
    rc = run_tool(out, "test", "argorder_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 0);
    free(out);
}

/* A test file is code too: what it does wrong is said, and nothing of it crashes, hangs
 * or outlives its run. */
static void test_test_survives_hostile_test_files(void **state)
{
    (void)state;
    char *out = malloc(OUT);
    write_text("calls.lua", "local mmt = require 'mmt'\n"
               "mmt.rule { name = 'r', metric = 'in_use', above = 1,\n"
               "  fire = function() mmt.call('act', 1) end }\n");
    /* A stub that declares a case; one that loops; a case table whose reads raise; and
     * string.find replaced: each case is judged, the loop stopped by the runner's budget. */
    write_text("hostile_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'recase', policy = 'calls.lua', series = { in_use = '5' },\n"
               "  actions = { act = function() t.case { name = 'late' } return 0 end },\n"
               "  expect = { { at = 0, fire = 'r' }, { at = 0, call = 'act' } } }\n"
               "t.case { name = 'loop', policy = 'calls.lua', series = { in_use = '5' },\n"
               "  actions = { act = function() while true do end end },\n"
               "  expect = { { at = 0, fire = 'r' }, { at = 0, call = 'act' } } }\n"
               "t.case(setmetatable({ name = 'meta', policy = 'calls.lua', series = { in_use = '0' },\n"
               "  expect_none = true }, { __index = function() error('boom') end }))\n"
               "string = nil\n");
    double t0 = now_seconds();
    int rc = run_tool(out, "test", "hostile_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 1);
    assert_true(now_seconds() - t0 < 60);
    assert_contains(out, "FAIL  hostile_test.lua:2: recase\n"
                         "  action act raised: hostile_test.lua:3: t.case: cases are declared "
                         "as the test file runs");
    assert_contains(out, "FAIL  hostile_test.lua:5: loop\n  action act raised: ");
    assert_contains(out, "ran past its time budget");
    assert_contains(out, "ok    hostile_test.lua:8: meta");
    assert_contains(out, "1 passed, 2 failed, 0 could not run");
    /* A file that loops at its top, and one that fails after a case: none of it runs. */
    write_text("toploop_test.lua", "while true do end\n");
    write_text("late_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'early', policy = 'calls.lua', series = { in_use = '0' },\n"
               "  expect_none = true }\nerror('late')\n");
    rc = run_tool(out, "test", "toploop_test.lua", "late_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 2);
    assert_contains(out, "ERROR toploop_test.lua: ");
    assert_contains(out, "ERROR late_test.lua: late_test.lua:4: late");
    assert_null(strstr(out, "early"));
    /* Traces and reports that are not files: refused at once, never waited on. */
    char fifo[256];
    assert_int_equal(mkfifo(in_dir(fifo, sizeof fifo, "fifo"), 0600), 0);
    write_text("fifo_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'fifo', policy = 'calls.lua', trace = 'fifo', expect_none = true }\n"
               "t.case { name = 'zero', policy = 'calls.lua', trace = '/dev/zero', expect_none = true }\n");
    t0 = now_seconds();
    rc = run_tool(out, "test", "fifo_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 2);
    assert_contains(out, "cannot read fifo: not a regular file");
    assert_contains(out, "cannot read /dev/zero: not a regular file");
    rc = run_tool(out, "replay", "calls.lua", "fifo", NULL);
    assert_int_equal(rc, 2);
    write_text("ok_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'ok', policy = 'calls.lua', series = { in_use = '0' },\n"
               "  expect_none = true }\n");
    rc = run_tool(out, "test", "--junit", "fifo", "ok_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 2);
    assert_contains(out, "mmt-policy: cannot write fifo: ");
    assert_true(now_seconds() - t0 < 60);
    free(out);
}

/* Errors in the policy's code fail the case unless expected; a bad pattern is the test's
 * error; names that are not text still make a JUnit file XML parsers read. */
static void test_test_judges_errors_and_writes_valid_xml(void **state)
{
    (void)state;
    char *out = malloc(OUT);
    write_text("err.lua", "local mmt = require 'mmt'\n"
               "mmt.rule { name = 'r', metric = 'in_use', above = 1,\n"
               "  fire = function() local x; x.y = 1 end }\n");
    write_text("err_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'unexpected', policy = 'err.lua', series = { in_use = '5' },\n"
               "  expect = { { at = 0, fire = 'r' } } }\n"
               "t.case { name = 'expected', policy = 'err.lua', series = { in_use = '5' },\n"
               "  expect = { { at = 0, fire = 'r' }, { at = 0, log = 'error', match = 'index' } } }\n"
               "t.case { name = 'bad\\1\\255name', policy = 'err.lua', series = { in_use = '0' },\n"
               "  expect = { { log = 'warn', match = '[', count = 0 } } }\n");
    int rc = run_tool(out, "test", "--junit", "err.xml", "err_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 2);
    assert_contains(out, "FAIL  err_test.lua:2: unexpected\n"
                         "  + t=0: an error no expectation allows: rule \"r\": err.lua:3: ");
    assert_contains(out, "ok    err_test.lua:4: expected");
    assert_contains(out, "match \"[\": malformed pattern");
    char xml[256], parsed[4096];
    python_on_file("import sys, xml.dom.minidom as m\n"
                   "d = m.parse(sys.stdin)\n"
                   "for c in d.getElementsByTagName(\"testcase\"):\n"
                   "  print(c.getAttribute(\"line\"), len(c.getElementsByTagName(\"failure\")),\n"
                   "        len(c.getElementsByTagName(\"error\")))\n",
                   in_dir(xml, sizeof xml, "err.xml"), parsed, sizeof parsed);
    assert_string_equal(parsed, "2 1 0\n4 0 0\n6 0 1\n");
    free(out);
}

/* The virtual clock's arithmetic: steps of 0.1 s meet a task of 0.1 s at every step, and a
 * hold of 0.3 s from t = 0.7 ends at 1.0, whatever the last bits of i * 0.1. */
static void test_test_virtual_time_has_no_rounding_gaps(void **state)
{
    (void)state;
    char *out = malloc(OUT);
    write_text("tenth.lua", "local mmt = require 'mmt'\n"
               "mmt.rule { name = 'h', metric = 'in_use', above = 10, hold = 0.3,\n"
               "  fire = function() end }\n"
               "mmt.every(0.1, function(m) mmt.call('task', m.rss) end)\n");
    write_text("tenth_test.lua", "local t = require 'mmt.test'\n"
               "local ex = { { at = 1.0, fire = 'h' } }\n"
               "for i = 1, 24 do ex[#ex + 1] = { at = i / 10, call = 'task', arg = 7 } end\n"
               "t.case { name = 'tenths', policy = 'tenth.lua', interval = 0.1,\n"
               "  series = { in_use = '0x6 100x17', rss = '7' }, expect = ex }\n");
    int rc = run_tool(out, "test", "tenth_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 0);
    free(out);
}

/* What the second look found: the machine at load, lists with stray keys, budgets a
 * pcall or a pattern could escape, a long list's pairing, capabilities, fractions. */
static void test_test_holds_against_the_subtler_mistakes(void **state)
{
    (void)state;
    char *out = malloc(OUT);
    /* At load, before any sample: counters 0 and no machine, not the test machine's. */
    write_text("load.lua", "local mmt = require 'mmt'\n"
               "local m = mmt.meminfo()\n"
               "mmt.log('info', 'load: in_use=%%d rss=%%d cgroup=%%s system=%%s psi=%%s', m.in_use,\n"
               "  m.rss, tostring(m.cgroup), tostring(m.system), tostring(m.psi))\n");
    write_text("load_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'load', policy = 'load.lua', series = { in_use = '5' },\n"
               "  expect = { { at = 0, log = 'info',\n"
               "    match = '^load: in_use=0 rss=0 cgroup=nil system=nil psi=nil$' } } }\n"
               "t.case { name = 'braces', policy = 'load.lua', series = { in_use = '5' },\n"
               "  expect_none = true, expect = { log = 'warn', match = 'never' } }\n");
    int rc = run_tool(out, "test", "load_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 2);
    assert_contains(out, "ok    load_test.lua:2: load");
    assert_contains(out, "load_test.lua:5: expect: a list of tables, with no key '");
    /* A pcall that catches the budget's error, and a pattern no hook can stop. */
    write_text("budget_test.lua", "local t = require 'mmt.test'\n"
               "repeat local ok = pcall(function() while true do end end) until ok\n");
    write_text("pattern_test.lua", "local t = require 'mmt.test'\n"
               "local s = string.rep('a', 3000)\nreturn s:find('.-.-.-.-b')\n");
    double t0 = now_seconds();
    rc = run_tool(out, "test", "budget_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 2);
    assert_contains(out, "ERROR budget_test.lua: ran past its time budget of 10 s");
    assert_true(now_seconds() - t0 < 60);
    setenv("MMT_POLICY_WATCH", "2", 1);
    rc = run_tool(out, "test", "pattern_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 2);
    assert_contains(out, "mmt-policy: stuck: the test file's Lua code did not return in time");
    write_text("pattern.lua", "local mmt = require 'mmt'\n"
               "local s = string.rep('a', 3000)\nlocal x = s:find('.-.-.-.-b')\n");
    rc = run_tool(out, "check", "pattern.lua", NULL);
    unsetenv("MMT_POLICY_WATCH");
    print_message("%s", out);
    assert_int_equal(rc, 2);
    assert_contains(out, "mmt-policy: stuck: loading pattern.lua did not return in time");
    assert_true(now_seconds() - t0 < 120);
    /* 4000 expected calls of which 2000 came: a diff at once, not minutes of pairing. */
    write_text("each.lua", "local mmt = require 'mmt'\n"
               "mmt.rule { name = 'each', when = function() mmt.call('x', 1) return false end,\n"
               "  fire = function() end }\n");
    write_text("many_test.lua", "local t = require 'mmt.test'\n"
               "local ex = {}\nfor i = 1, 4000 do ex[i] = { call = 'x' } end\n"
               "t.case { name = 'many', policy = 'each.lua', series = { in_use = '1x1999' },\n"
               "  expect = ex }\n");
    t0 = now_seconds();
    rc = run_tool(out, "test", "many_test.lua", NULL);
    double took = now_seconds() - t0;
    print_message("  4000 expectations, 2000 calls: judged in %.2f s\n", took);
    assert_int_equal(rc, 1);
    assert_true(took < 30);
    /* A 1 s pressure window loads in a test whatever this process may arm; 0.3-0.1x3 ends
     * at 0, not below. */
    write_text("press.lua", "local mmt = require 'mmt'\n"
               "mmt.pressure { name = 'p', some = 0.2, window = 1, fire = function() end }\n");
    write_text("press_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'press', policy = 'press.lua',\n"
               "  series = { psi_some10 = '10 30 0.3-0.1x3' },\n"
               "  expect = { { at = 1, fire = 'p' }, { at = 2, resolve = 'p' } } }\n");
    rc = run_tool(out, "test", "press_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 0);
    free(out);
}

static void test_test_writes_junit_and_coverage(void **state)
{
    (void)state;
    char *out = malloc(OUT), text[8192];
    write_text("pass_test.lua", "%s",
               hw_case(text, sizeof text, 2,
                       "{ at = 8, fire = 'high-water' }, { at = 12, resolve = 'high-water' }"));
    write_text("fail_test.lua", "%s",
               hw_case(text, sizeof text, 2, "{ at = 9, fire = 'high-water' }"));
    write_text("report_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'too short for a report', policy = '%s',\n"
               "  series = { in_use = '1MiBx5' }, expect_none = true }\n",
               tree_path("policies/report.lua"));
    mode_t mask = umask(002); /* the report takes 0666 less the umask, as fopen gives */
    int rc = run_tool(out, "test", "--junit", "out.xml", "--coverage", "pass_test.lua",
                      "fail_test.lua", "report_test.lua", NULL);
    umask(mask);
    struct stat st;
    assert_int_equal(stat("out.xml", &st), 0);
    assert_int_equal(st.st_mode & 0777, 0664);
    print_message("%s", out);
    assert_int_equal(rc, 1);
    assert_contains(out, "coverage: not exercised by any case:");
    assert_contains(out, "report.lua: the task at ");
    assert_contains(out, "report.lua:11 never ran");
    assert_contains(out, "coverage: 1 of 2 rules and tasks exercised");
    char xml[256], parsed[4096];
    python_on_file("import sys, xml.dom.minidom as m\n"
                   "d = m.parse(sys.stdin)\n"
                   "r = d.documentElement\n"
                   "print(r.getAttribute(\"tests\"), r.getAttribute(\"failures\"))\n"
                   "for c in d.getElementsByTagName(\"testcase\"):\n"
                   "  print(c.getAttribute(\"file\"), c.getAttribute(\"line\"),\n"
                   "        len(c.getElementsByTagName(\"failure\")))\n",
                   in_dir(xml, sizeof xml, "out.xml"), parsed, sizeof parsed);
    print_message("%s", parsed);
    assert_string_equal(parsed, "3 1\npass_test.lua 2 0\nfail_test.lua 2 1\nreport_test.lua 2 0\n");
    free(out);
}

/* ---- replay -------------------------------------------------------------------------------- */

/* Rule events: "fire big" at t. */
typedef struct seen {
    double t;
    char what[64];
} seen_t;

/* The fire and resolve rows of a trace. */
static size_t trace_events(const char *path, seen_t *out, size_t max)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    size_t n = 0;
    while (fgets(line, sizeof line, f) && n < max) {
        char *cols[16];
        int k = 0;
        for (char *p = line; k < 16;) {
            cols[k++] = p;
            char *comma = strchr(p, ',');
            if (!comma) break;
            *comma = '\0';
            p = comma + 1;
        }
        if (k > 8 && (strcmp(cols[7], "fire") == 0 || strcmp(cols[7], "resolve") == 0)) {
            out[n].t = atof(cols[0]);
            snprintf(out[n].what, sizeof out[n].what, "%s %s", cols[7], cols[8]);
            n++;
        }
    }
    fclose(f);
    return n;
}

/* The replay's "TIME_S EVENT RULE" lines. */
static size_t replay_events(const char *out, seen_t *ev, size_t max)
{
    size_t n = 0;
    for (const char *p = out; *p && n < max;) {
        double t;
        char kind[16], rule[48];
        if (sscanf(p, "%lf %15s %47s", &t, kind, rule) == 3 &&
            (strcmp(kind, "fire") == 0 || strcmp(kind, "resolve") == 0)) {
            ev[n].t = t;
            snprintf(ev[n].what, sizeof ev[n].what, "%s %s", kind, rule);
            n++;
        }
        const char *nl = strchr(p, '\n');
        if (!nl) break;
        p = nl + 1;
    }
    return n;
}

/* A real program recorded by mmt-run with a policy; the replay of that trace gives the
 * live engine's events, in order, each within one timer interval of the live one; so does
 * a test case on the trace. The live engine judges at checkpoints and ticks, the replay at
 * every row of the trace (10 ms apart at first): a change seen only by the timer (a rate
 * falling once the program stops allocating) comes up to an interval later live, plus
 * however late the engine's thread woke (LATE). */
#define LATE 0.25
static void test_replay_gives_what_the_live_engine_did(void **state)
{
    (void)state;
    char *out = malloc(OUT), mmtrun[4200], phases[4200], policy[256], trace[256], svg[256];
    snprintf(mmtrun, sizeof mmtrun, "%s/mmt-run", bin);
    snprintf(phases, sizeof phases, "%s/e2e_phases", bin);
    in_dir(policy, sizeof policy, "big.lua");
    in_dir(trace, sizeof trace, "run.csv");
    in_dir(svg, sizeof svg, "replay.svg");
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", tree_path("tests/data/policytool/big.lua"), policy);
    assert_int_equal(system(cmd), 0);
    if (MMT_TEST_SANITIZED) {
        /* The preload library does not run under a sanitizer's runtime: the run recorded
         * the same way (tests/data/policytool/run.csv) stands in for a live one. */
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", tree_path("tests/data/policytool/run.csv"),
                 trace);
        assert_int_equal(system(cmd), 0);
    } else {
        /* 8 MiB every 150 ms to 80 MiB, 1.5 s there, all freed, 1.5 s more. */
        const char *const run[] = {mmtrun, "--policy", policy, "--trace", trace, "--",
                                   phases, "8", "10", "150", "1500", "1500", NULL};
        int rc = run_to_end(run, out, OUT, 120);
        if (rc != 0) print_message("%s", out);
        assert_int_equal(rc, 0);
    }
    seen_t live[16], again[16];
    size_t nlive = trace_events(trace, live, 16);
    int rc = run_tool(out, "replay", "big.lua", "run.csv", "--svg", "replay.svg", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 0);
    size_t nagain = replay_events(out, again, 16);
    for (size_t i = 0; i < nlive; i++) print_message("  live   %.3f %s\n", live[i].t, live[i].what);
    for (size_t i = 0; i < nagain; i++)
        print_message("  replay %.3f %s\n", again[i].t, again[i].what);
    /* big fires and resolves; growing fires and resolves: the run must have shown both. */
    assert_true(nlive >= 4);
    assert_int_equal(nagain, nlive);
    for (size_t i = 0; i < nlive; i++) {
        assert_string_equal(again[i].what, live[i].what);
        assert_true(fabs(again[i].t - live[i].t) <= 1.0 + LATE);
    }
    char *picture = malloc(1 << 22);
    assert_true(read_file(svg, picture, 1 << 22) > 0);
    assert_contains(picture, "<svg");
    assert_contains(picture, ">fire big</text>");
    assert_contains(picture, ">resolve growing</text>");
    free(picture);
    /* The same trace as a test case's input, its events the expectations. */
    char expect[2048] = "";
    for (size_t i = 0; i < nlive; i++) {
        char one[160], kind[16], rule[48];
        sscanf(live[i].what, "%15s %47s", kind, rule);
        snprintf(one, sizeof one, "{ from = %.3f, to = %.3f, %s = '%s' },\n",
                 live[i].t - 1 - LATE, live[i].t + 1 + LATE, kind, rule);
        strncat(expect, one, sizeof expect - strlen(expect) - 1);
    }
    write_text("trace_test.lua", "local t = require 'mmt.test'\n"
               "t.case { name = 'as recorded', policy = 'big.lua', trace = 'run.csv',\n"
               "  expect = { %s } }\n", expect);
    rc = run_tool(out, "test", "trace_test.lua", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 0);
    free(out);
}

static void test_replay_refuses_what_is_not_a_trace(void **state)
{
    (void)state;
    char *out = malloc(OUT);
    write_text("p.lua", "local mmt = require 'mmt'\n");
    write_text("bad.csv", "a,b,c\n1,2,3\n");
    int rc = run_tool(out, "replay", "p.lua", "bad.csv", NULL);
    print_message("%s", out);
    assert_int_equal(rc, 2);
    assert_contains(out, "bad.csv: not an mmt-run trace");
    rc = run_tool(out, "replay", "p.lua", NULL);
    assert_int_equal(rc, 2);
    rc = run_tool(out, "frobnicate", NULL);
    assert_int_equal(rc, 2);
    assert_contains(out, "usage: mmt-policy check");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_check_summarises_what_a_policy_declares, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_names_the_file_and_line_of_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_lists_host_actions_and_judges_them_against_the_hosts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_has_no_side_effects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_test_passes_fails_and_says_where, setup, teardown),
        cmocka_unit_test_setup_teardown(test_test_exit_2_for_a_file_or_case_that_cannot_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_test_reads_the_expanding_notation_as_promtool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_test_runs_in_virtual_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_test_gives_tags_and_the_machine_from_the_series, setup, teardown),
        cmocka_unit_test_setup_teardown(test_test_pairs_expectations_whatever_their_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_test_survives_hostile_test_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_test_judges_errors_and_writes_valid_xml, setup, teardown),
        cmocka_unit_test_setup_teardown(test_test_virtual_time_has_no_rounding_gaps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_test_holds_against_the_subtler_mistakes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_test_writes_junit_and_coverage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_gives_what_the_live_engine_did, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_refuses_what_is_not_a_trace, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

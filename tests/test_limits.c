/*
 * Policy code that tries to break its host, and hosts that call the engine back from its
 * own callbacks: recursion through C functions (C stack), error handlers that loop, many
 * slow rules in one evaluation, garbage, thread cancellation, numbers C cannot hold,
 * forged log lines, long paths and policies of many rules. Each must end in an error
 * message, never in a crash, a hang or a lost policy. Tests that would hang on a broken
 * engine run in a forked child under alarm(), so that they fail instead.
 */
#define _GNU_SOURCE /* getcontext, makecontext, swapcontext */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <ucontext.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "engine.h" /* the policy VM's own bytes (pstate_t.lua_bytes) */
#include "policyutil.h"

/* ThreadSanitizer does not support threads made in a forked child of a threaded process
 * (its own background thread counts), nor small thread stacks: the tests that need them
 * run in the other builds. */
#if defined(__SANITIZE_THREAD__)
#define SKIP_IF_TSAN() skip()
#else
#define SKIP_IF_TSAN() ((void)0)
#endif

/* The engine a test made with engine(), freed by the teardown if a failed assertion left
 * it running: it would otherwise evaluate at every later test's checkpoints. */
static mmt_policy_t *test_engine;

static mmt_policy_t *engine(const mmt_policy_options_t *opts, captured_log_t *log)
{
    test_engine = new_engine(opts, log);
    return test_engine;
}

static void free_engine(mmt_policy_t *p)
{
    if (p == test_engine) test_engine = NULL;
    mmt_policy_free(p);
}

static int free_left_engine(void **state)
{
    (void)state;
    if (test_engine) mmt_policy_free(test_engine);
    test_engine = NULL;
    return 0;
}

/* Writes `text` to a fresh file and loads it; returns the load's result. */
static int try_load(mmt_policy_t *p, const char *name, const char *text)
{
    const char *path = policy_path(name);
    write_in_place(path, text);
    return mmt_policy_load(p, path);
}

/* ---- C stack ------------------------------------------------------------------------------ */

/* Lua functions that recurse through a C function calling back into Lua; each, run
 * without a limit, overflows the C stack long before LuaJIT's own stack is full. */
typedef struct recursion {
    const char *code;
    bool stack; /* stopped by the C stack limit; else by another limit, as cleanly */
} recursion_t;

static const recursion_t c_recursions[] = {
    /* string.gsub with a function replacement */
    {"local function f(s) return (string.gsub(s, '.', f)) end\n"
     "f('ab')\n", true},
    /* string.gsub with a table whose __index is a function */
    {"local t\n"
     "t = setmetatable({}, { __index = function(_, k) return (string.gsub(k, '.', t)) end })\n"
     "string.gsub('ab', '.', t)\n", true},
    /* table.sort with a comparator that sorts */
    {"local function cmp(a, b) table.sort({3, 2, 1}, cmp) return a < b end\n"
     "table.sort({3, 2, 1}, cmp)\n", true},
    /* table.sort's own comparison reaching a __lt metamethod that sorts */
    {"local mt = {}\n"
     "mt.__lt = function(a, b) table.sort({setmetatable({}, mt), setmetatable({}, mt)}) "
     "return false end\n"
     "table.sort({setmetatable({}, mt), setmetatable({}, mt)})\n", true},
    /* __tostring reached through string.format's %s */
    {"local mt = {}\n"
     "mt.__tostring = function(t) return string.format('%s', setmetatable({}, mt)) end\n"
     "tostring(setmetatable({}, mt))\n", true},
    /* __tostring reached through print (the engine's print, in C) */
    {"local mt = {}\n"
     "mt.__tostring = function(t) print(setmetatable({}, mt)) return 'x' end\n"
     "print(setmetatable({}, mt))\n", true},
    /* coroutines resumed from coroutines: each has a Lua stack of its own, and the
     * memory cap ends it first */
    {"local function dive() coroutine.wrap(dive)() end\n"
     "dive()\n", false},
};
enum { C_RECURSIONS = sizeof c_recursions / sizeof c_recursions[0] };

static int stack_recursions(void)
{
    int n = 0;
    for (int i = 0; i < C_RECURSIONS; i++) n += c_recursions[i].stack;
    return n;
}

static void test_limits_recursion_through_c_functions_is_an_error_at_load(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    /* Generous: the stack, not the clock, must stop these, even under valgrind. */
    mmt_policy_options_t o = {.budget_ms = 60000};
    mmt_policy_t *p = engine(&o, log);
    load_text(p, "good.lua", "local mmt = require 'mmt'\n"
                             "mmt.rule { name = 'alive', when = function() return true end,\n"
                             "  fire = function() mmt.log('info', 'ALIVE') end }\n");
    for (int i = 0; i < C_RECURSIONS; i++) {
        char name[32];
        snprintf(name, sizeof name, "deep%d.lua", i);
        assert_int_equal(try_load(p, name, c_recursions[i].code), MMT_ELOAD);
        assert_contains(mmt_policy_error(p), name);
        if (c_recursions[i].stack && !strstr(mmt_policy_error(p), "C stack overflow"))
            fail_msg("variant %d: %s", i, mmt_policy_error(p));
    }
    /* The running policy stayed. */
    mmt_mem_checkpoint();
    assert_logged(log, "ALIVE");
    free_engine(p);
    free_log(log);
}

static void test_limits_recursion_through_c_functions_in_rules_is_the_rules_error(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.budget_ms = 60000, .evaluation_ms = 600000};
    mmt_policy_t *p = engine(&o, log);
    /* Each variant in a `when`, in a `fire`, and a neighbour rule that must still run. */
    char text[8192];
    size_t used = (size_t)snprintf(text, sizeof text, "local mmt = require 'mmt'\n");
    for (int i = 0; i < C_RECURSIONS; i++) {
        used += (size_t)snprintf(text + used, sizeof text - used,
                                 "mmt.rule { name = 'when%d', when = function()\n%s end,\n"
                                 "  fire = function() end }\n"
                                 "mmt.rule { name = 'fire%d', when = function() return true end,\n"
                                 "  fire = function()\n%s end }\n",
                                 i, c_recursions[i].code, i, c_recursions[i].code);
    }
    snprintf(text + used, sizeof text - used,
             "mmt.rule { name = 'alive', when = function() return true end,\n"
             "  fire = function() mmt.log('info', 'ALIVE') end }\n");
    load_text(p, "rules.lua", text);
    mmt_mem_checkpoint();
    for (int i = 0; i < C_RECURSIONS; i++) {
        char needle[64];
        snprintf(needle, sizeof needle, "rule \"when%d\": ", i);
        assert_logged(log, needle);
        snprintf(needle, sizeof needle, "rule \"fire%d\": ", i);
        assert_logged(log, needle);
    }
    assert_int_equal(log_count(log, "C stack overflow"), 2 * stack_recursions());
    assert_logged(log, "ALIVE");
    free_engine(p);
    free_log(log);
}

/* A thread with a small stack (the host's choice) runs a checkpoint that recurses. */
typedef struct small_stack_run {
    mmt_policy_t *p;
    int done;
} small_stack_run_t;

static void *checkpoint_on_small_stack(void *arg)
{
    small_stack_run_t *r = arg;
    mmt_mem_checkpoint();
    r->done = 1;
    return NULL;
}

static void test_limits_recursion_on_a_small_thread_stack_stops_short_of_its_end(void **state)
{
    (void)state;
    /* ThreadSanitizer keeps about 900 KiB of each thread's stack for itself. */
    SKIP_IF_TSAN();
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.budget_ms = 60000, .evaluation_ms = 600000};
    mmt_policy_t *p = engine(&o, log);
    load_text(p, "small.lua",
              "local mmt = require 'mmt'\n"
              "mmt.rule { name = 'gsub', when = function()\n"
              "  local function f(s) return (string.gsub(s, '.', f)) end\n"
              "  f('ab') end, fire = function() end }\n");
    static const size_t kibs[] = {192, 256, 512};
    for (size_t k = 0; k < 3; k++) {
        size_t kib = kibs[k];
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        assert_int_equal(pthread_attr_setstacksize(&attr, kib * 1024), 0);
        small_stack_run_t r = {p, 0};
        pthread_t t;
        assert_int_equal(pthread_create(&t, &attr, checkpoint_on_small_stack, &r), 0);
        pthread_join(t, NULL);
        pthread_attr_destroy(&attr);
        assert_int_equal(r.done, 1);
    }
    assert_int_equal(log_count(log, "C stack overflow"), 3);
    free_engine(p);
    free_log(log);
}

/* ---- Error handlers --------------------------------------------------------------------------- */

static void test_limits_error_handlers_run_under_the_budget(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.budget_ms = 50, .evaluation_ms = 60000};
    mmt_policy_t *p = engine(&o, log);
    /* Handlers that loop: after an ordinary error, after the budget's own error, one that
     * errors and loops in a nested xpcall, and one behind a budget already spent. */
    static const char *const handlers[] = {
        "xpcall(function() error('x') end, function(m) while true do end end)",
        "xpcall(function() while true do end end, function(m) while true do end end)",
        "xpcall(function() while true do end end,\n"
        "  function(m) local t = 0 for i = 1, 1e12 do t = t + i end return t end)",
        "xpcall(function() error('x') end, function(m)\n"
        "  xpcall(function() while true do end end, function() while true do end end) end)",
        "pcall(function() while true do end end)\n"
        "xpcall(function() error('late') end, function(m) while true do end end)",
    };
    enum { N = sizeof handlers / sizeof handlers[0] };
    double t0 = now_seconds();
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "handler%d.lua", i);
        assert_int_equal(try_load(p, name, handlers[i]), MMT_ELOAD);
        /* A file's own run has ten times the budget of a call. */
        if (!strstr(mmt_policy_error(p), "ran past its time budget of 500 ms"))
            fail_msg("variant %d: %s", i, mmt_policy_error(p));
    }
    /* The same in a rule, at a checkpoint (inside an allocation, in real use). */
    char text[4096];
    size_t used = (size_t)snprintf(text, sizeof text, "local mmt = require 'mmt'\n");
    for (int i = 0; i < N; i++)
        used += (size_t)snprintf(text + used, sizeof text - used,
                                 "mmt.rule { name = 'h%d', when = function()\n%s\nend,\n"
                                 "  fire = function() end }\n", i, handlers[i]);
    load_text(p, "handlers.lua", text);
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "ran past its time budget of 50 ms"), N);
    assert_int_equal(log_count(log, "ran past its time budget of 500 ms"), N); /* the loads */
    /* 5 budgets of 500 ms and 5 of 50, with room for a loaded machine; a hang never gets
     * here. */
    assert_true(now_seconds() - t0 < 20.0);
    free_engine(p);
    free_log(log);
}

static void test_limits_xpcall_keeps_its_results_and_arguments(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = engine(NULL, log);
    load_text(p, "xpcall.lua",
              "local mmt = require 'mmt'\n"
              "local ok, a, b = xpcall(function(x, y) return x + y, 'two' end, print, 1, 2)\n"
              "mmt.log('info', 'OK %s %s %s', tostring(ok), tostring(a), tostring(b))\n"
              "local ok2, e = xpcall(function() error({code = 7}) end,\n"
              "  function(m) return 'handled ' .. m.code end)\n"
              "mmt.log('info', 'ERR %s %s', tostring(ok2), e)\n"
              "local ok3, e3 = xpcall(function() error('first') end,\n"
              "  function(m) error('second', 0) end)\n"
              "mmt.log('info', 'BAD %s %s', tostring(ok3), tostring(e3))\n"
              "local co = coroutine.wrap(function()\n"
              "  return xpcall(function() coroutine.yield(5) return 6 end, print) end)\n"
              "local y = co()\n"
              "local ok4, r4 = co()\n"
              "mmt.log('info', 'YIELD %d %s %d', y, tostring(ok4), r4)\n");
    assert_logged(log, "YIELD 5 true 6"); /* a coroutine may yield inside xpcall */
    assert_logged(log, "OK true 3 two");
    assert_logged(log, "ERR false handled 7");
    assert_logged(log, "BAD false second");
    free_engine(p);
    free_log(log);
}

/* ---- A budget per evaluation ----------------------------------------------------------------- */

/* A policy of `n` rules, each spending `ms` of CPU in its `when` (rule n / 2 spends
 * worst_ms) and logging "RAN <i>;" at debug level when it runs. */
static void slow_rules(char *text, size_t len, int n, int ms, int worst_ms)
{
    size_t used = (size_t)snprintf(text, len,
                                   "local mmt = require 'mmt'\n"
                                   "local function spend(ms) -- wall time, as the budgets are\n"
                                   "  local t = mmt.meminfo().time\n"
                                   "  while mmt.meminfo().time - t < ms / 1000 do end\n"
                                   "end\n");
    for (int i = 0; i < n; i++)
        used += (size_t)snprintf(text + used, len - used,
                                 "mmt.rule { name = 'slow%d', when = function()\n"
                                 "  mmt.log('debug', 'RAN %d;') spend(%d) return false end,\n"
                                 "  fire = function() end }\n",
                                 i, i, i == n / 2 ? worst_ms : ms);
}

/* How many of rules 0..n-1 have logged that they ran. */
static int rules_that_ran(captured_log_t *log, int n)
{
    int ran = 0;
    for (int i = 0; i < n; i++) {
        char needle[32];
        snprintf(needle, sizeof needle, "RAN %d;", i);
        ran += log_count(log, needle) > 0;
    }
    return ran;
}

static void test_limits_an_evaluation_stops_at_its_budget_and_names_what_ate_it(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    /* Each rule stays well under the budget of a call; 20 of them do not fit in one
     * evaluation of 100 ms. */
    mmt_policy_options_t o = {.budget_ms = 1000, .evaluation_ms = 100};
    mmt_policy_t *p = engine(&o, log);
    static char text[16384];
    slow_rules(text, sizeof text, 20, 15, 15);
    load_text(p, "slow.lua", text);
    double t0 = now_seconds();
    mmt_mem_checkpoint();
    double took = now_seconds() - t0;
    /* Stopped near 100 ms, not after the 300 ms the rules would take. */
    if (took >= 0.280) fail_msg("the evaluation took %.3f s", took);
    assert_logged(log, "evaluation stopped: it ran past its time budget of 100 ms (rule \"slow");
    assert_logged(log, " rules not evaluated this time");
    assert_int_equal(log_count(log, "C stack"), 0);
    /* No rule is charged an error of its own for the evaluation's deadline. */
    assert_int_equal(log_count(log, "stopped: the evaluation ran past"), 0);
    int first = rules_that_ran(log, 20);
    assert_true(first < 20);
    /* The rules not reached go first next time: after a few evaluations all have run. */
    for (int i = 0; i < 8 && rules_that_ran(log, 20) < 20; i++) mmt_mem_checkpoint();
    assert_int_equal(rules_that_ran(log, 20), 20);
    free_engine(p);
    free_log(log);
}

static void test_limits_the_worst_rule_of_evaluations_past_budget_is_disabled(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.budget_ms = 1000, .evaluation_ms = 200};
    mmt_policy_t *p = engine(&o, log);
    static char text[16384];
    /* slow2 would take 300 ms and is cut at 200 each time; the others take 10 ms */
    slow_rules(text, sizeof text, 4, 10, 300);
    load_text(p, "worst.lua", text);
    for (int i = 0; i < 8; i++) mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "rule \"slow2\": disabled: it took the most time in 3 "
                                    "evaluations in a row"), 1);
    assert_int_equal(log_count(log, "disabled"), 1);
    /* Without it the evaluations fit: no more overruns once it is disabled. */
    int overruns = log_count(log, "evaluation stopped");
    for (int i = 0; i < 4; i++) mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "evaluation stopped"), overruns);
    free_engine(p);
    free_log(log);
}

/* Seconds one gsub over 4 MiB takes here (valgrind makes it seconds), measured by an
 * engine with room for it. */
static double one_long_c_call(void)
{
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.budget_ms = 600000};
    mmt_policy_t *p = new_engine(&o, log);
    load_text(p, "calibrate.lua",
              "local mmt = require 'mmt'\n"
              "local s = string.rep('a', 4 * 2^20)\n"
              "local t0 = mmt.meminfo().time\n"
              "s:gsub('a', 'b')\n"
              "mmt.log('info', 'ONE CALL %.6f', mmt.meminfo().time - t0)\n");
    double one = -1;
    pthread_mutex_lock(&log->lock);
    for (int i = 0; i < log->count; i++)
        if (sscanf(log->lines[i], "ONE CALL %lf", &one) == 1) break;
    pthread_mutex_unlock(&log->lock);
    mmt_policy_free(p);
    free_log(log);
    assert_true(one >= 0);
    return one;
}

static void test_limits_a_loop_of_slow_c_calls_is_stopped_within_its_budget(void **state)
{
    (void)state;
    double one = one_long_c_call();
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.budget_ms = 50, .evaluation_ms = 60000};
    mmt_policy_t *p = engine(&o, log);
    /* Few instructions per call, and each call long: the clock is read at every call. */
    load_text(p, "slowc.lua",
              "local mmt = require 'mmt'\n"
              "local s = string.rep('a', 4 * 2^20)\n"
              "local big\n"
              "mmt.rule { name = 'gsub', when = function()\n"
              "  while true do s:gsub('a', 'b') end end, fire = print }\n"
              "mmt.rule { name = 'sort', when = function()\n"
              "  if not big then big = {} for i = 1, 2^16 do big[i] = (i * 7919) % 2^16 end end\n"
              "  while true do table.sort(big, function(a, b) return a > b end) end end,\n"
              "  fire = print }\n");
    double t0 = now_seconds();
    mmt_mem_checkpoint();
    double took = now_seconds() - t0;
    assert_int_equal(log_count(log, "ran past its time budget of 50 ms"), 2);
    /* Two budgets and a call or two past each (one call's time measured at load, as
     * valgrind makes it seconds); a check every 1000 instructions would let hundreds of
     * calls go by. */
    if (took > 0.1 + 4 * one + 1.0)
        fail_msg("stopping took %.3f s; one call takes %.3f s", took, one);
    free_engine(p);
    free_log(log);
}

static void test_limits_rule_tables_are_read_raw(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = engine(NULL, log);
    /* A metatable's __index would run inside mmt.rule, where time is not charged. */
    assert_int_equal(try_load(p, "meta.lua",
                              "local mmt = require 'mmt'\n"
                              "local calls = 0\n"
                              "local t = setmetatable({ name = 'm' }, { __index = function(_, k)\n"
                              "  calls = calls + 1 while true do end end })\n"
                              "mmt.rule(t)\n"),
                     MMT_ELOAD);
    assert_contains(mmt_policy_error(p), "meta.lua:5: rule \"m\": needs 'when'");
    free_engine(p);
    free_log(log);
}

typedef struct fire_count {
    _Atomic int fired;
} fire_count_t;

static void count_fires(const char *rule, int fired, const mmt_meminfo_t *m, void *ud)
{
    (void)m;
    if (fired && strcmp(rule, "shed") == 0) ((fire_count_t *)ud)->fired++;
}

static void test_limits_a_fire_cut_by_the_evaluation_deadline_fires_again(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.budget_ms = 1000, .evaluation_ms = 100};
    mmt_policy_t *p = engine(&o, log);
    fire_count_t count = {0};
    mmt_policy_set_event(p, count_fires, &count);
    load_text(p, "cut.lua",
              "local mmt = require 'mmt'\n"
              "local function spend(ms) -- wall time, as the budgets are\n"
              "  local t = mmt.meminfo().time\n"
              "  while mmt.meminfo().time - t < ms / 1000 do end\n"
              "end\n"
              "mmt.rule { name = 'slow', when = function() spend(70) return false end,\n"
              "  fire = print }\n"
              "mmt.rule { name = 'shed', when = function() return true end,\n"
              "  fire = function() spend(60) mmt.log('info', 'SHED DONE') end }\n");
    mmt_mem_checkpoint(); /* slow takes 70 ms, shed's fire is cut at 100 */
    assert_logged(log, "evaluation stopped");
    assert_int_equal(log_count(log, "SHED DONE"), 0);
    assert_int_equal(count.fired, 0);
    mmt_mem_checkpoint(); /* shed goes first and fires in full */
    assert_int_equal(log_count(log, "SHED DONE"), 1);
    assert_int_equal(count.fired, 1);
    for (int i = 0; i < 3; i++) mmt_mem_checkpoint();
    assert_int_equal(count.fired, 1); /* once fired, it stays firing */
    free_engine(p);
    free_log(log);
}

/* ---- Stacks that are not the thread's own, or nearly full --------------------------------- */

static ucontext_t fiber_ctx, main_ctx;
static void checkpoint_in_fiber(void)
{
    mmt_mem_checkpoint();
}

static void *checkpoint_on_tiny_stack(void *arg)
{
    (void)arg;
    mmt_mem_checkpoint();
    return NULL;
}

static void test_limits_policy_code_does_not_run_on_fibers_or_nearly_full_stacks(void **state)
{
    (void)state;
    SKIP_IF_TSAN(); /* its threads need about 900 KiB of stack of their own */
    captured_log_t *log = new_log();
    mmt_policy_t *p = engine(NULL, log);
    load_text(p, "fiber.lua",
              "local mmt = require 'mmt'\n"
              "local n = 0\n"
              "mmt.rule { name = 'deep', when = function()\n"
              "  n = n + 1 mmt.log('info', 'EVALUATED %d', n)\n"
              "  local function f(s) return (string.gsub(s, '.', f)) end f('ab') end,\n"
              "  fire = print }\n");
    /* A fiber of 64 KiB (a coroutine library's): its size cannot be known, so no policy
     * code runs on it, and nothing is charged to the rule. */
    static char fiber_stack[64 * 1024];
    getcontext(&fiber_ctx);
    fiber_ctx.uc_stack.ss_sp = fiber_stack;
    fiber_ctx.uc_stack.ss_size = sizeof fiber_stack;
    fiber_ctx.uc_link = &main_ctx;
    makecontext(&fiber_ctx, checkpoint_in_fiber, 0);
    assert_int_equal(swapcontext(&main_ctx, &fiber_ctx), 0);
    /* A thread of 96 KiB (a stack of the test's own: glibc would reuse a larger cached
     * one for a size alone): less room than policy code may ever have. */
    static _Alignas(4096) char tiny_stack[96 * 1024];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    assert_int_equal(pthread_attr_setstack(&attr, tiny_stack, sizeof tiny_stack), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, &attr, checkpoint_on_tiny_stack, NULL), 0);
    pthread_join(t, NULL);
    pthread_attr_destroy(&attr);
    if (log_count(log, "EVALUATED") || log_level_count(log, MMT_LOG_ERROR)) {
        log_dump(log);
        fail_msg("policy code ran on a fiber or a nearly full stack");
    }
    /* On this thread's own stack it runs, and the C stack limit stops its recursion. */
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "EVALUATED 1"), 1);
    assert_logged(log, "C stack overflow");
    free_engine(p);
    free_log(log);
}

/* ---- Garbage --------------------------------------------------------------------------------- */

static double rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%llu %llu", &size, &resident) != 2) resident = 0;
        fclose(f);
    }
    return (double)resident * (double)sysconf(_SC_PAGESIZE);
}

static void test_limits_declarative_checkpoints_make_no_lua_garbage(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = engine(NULL, log);
    load_text(p, "declarative.lua",
              "local mmt = require 'mmt'\n"
              "mmt.rule { name = 'a', metric = 'in_use', above = 2^50, fire = function() end }\n"
              "mmt.rule { name = 'b', metric = 'peak', above = 2^50, fire = function() end }\n"
              "mmt.rule { name = 'c', metric = 'allocations', above = 2^50,\n"
              "  fire = function() end }\n");
    mmt_mem_checkpoint();
    size_t vm_before = p->cur->lua_bytes;
    double rss_before = rss_bytes();
    for (int i = 0; i < 1000000; i++) mmt_mem_checkpoint();
    size_t vm_after = p->cur->lua_bytes;
    double rss_after = rss_bytes();
    if (vm_after != vm_before)
        fail_msg("the VM grew from %zu to %zu bytes over a million checkpoints", vm_before,
                 vm_after);
    assert_true(rss_after - rss_before < 1024.0 * 1024);
    assert_int_equal(log_level_count(log, MMT_LOG_ERROR), 0);
    free_engine(p);
    free_log(log);
}

/* ---- Thread cancellation --------------------------------------------------------------------- */

static void *checkpoint_forever(void *arg)
{
    (void)arg;
    for (;;) {
        mmt_mem_checkpoint();
        pthread_testcancel(); /* the cancellation lands here, outside the engine */
    }
    return NULL;
}

static void *load_forever(void *arg)
{
    mmt_policy_t *p = arg;
    for (;;) {
        mmt_policy_load(p, policy_path("slowload.lua"));
        pthread_testcancel();
    }
    return NULL;
}

/* A log that writes each line to /dev/null: write() is a cancellation point. */
static int devnull = -1;
static void log_to_devnull(int level, const char *message, void *ud)
{
    (void)level;
    (void)ud;
    ssize_t w = write(devnull, message, strlen(message));
    (void)w;
}

/* In a child, under alarm: threads are cancelled while they run policy code that meets
 * cancellation points (reading rss, a log line on stderr, a host action that sleeps,
 * loading); then the engine must still evaluate, tick, load and free. */
static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int64_t nap(int64_t arg, void *ud)
{
    (void)ud;
    sleep_us((long)arg); /* a cancellation point, inside policy code */
    return 0;
}

static void cancel_inside_the_engine(void *arg)
{
    (void)arg;
    alarm(20);
    mmt_policy_options_t o = {.interval_ms = 5};
    mmt_policy_t *p = mmt_policy_new(&o);
    mmt_mem_set_checkpoint(0);
    devnull = open("/dev/null", O_WRONLY);
    mmt_policy_set_log(p, log_to_devnull, NULL);
    mmt_policy_action(p, "nap", nap, NULL);
    write_in_place(policy_path("cancel.lua"),
                   "local mmt = require 'mmt'\n"
                   "mmt.rule { name = 'rss', when = function(m) return m.rss < 0 end,\n"
                   "  fire = function() end }\n"
                   "mmt.rule { name = 'log', when = function(m) mmt.log('error', 'tick') "
                   "return false end, fire = function() end }\n"
                   "mmt.rule { name = 'nap', when = function(m) mmt.call('nap', 200) "
                   "return false end, fire = function() end }\n");
    write_in_place(policy_path("slowload.lua"),
                   "local mmt = require 'mmt'\n"
                   "for i = 1, 200 do local r = mmt.meminfo().rss end\n"
                   "mmt.log('error', 'loaded')\n");
    if (mmt_policy_load(p, policy_path("cancel.lua")) != 0) end_child(3);
    for (int round = 0; round < 20; round++) {
        pthread_t t;
        pthread_create(&t, NULL, round % 2 ? checkpoint_forever : load_forever, p);
        sleep_us(3000 + 700 * round);
        pthread_cancel(t);
        pthread_join(t, NULL);
    }
    /* Everything still works. */
    if (mmt_policy_load(p, policy_path("cancel.lua")) != 0) end_child(4);
    mmt_mem_checkpoint();
    mmt__policy_tick(p);
    sleep_us(20000);
    if (mmt_policy_free(p) != 0) end_child(5);
    end_child(0);
}

static void test_limits_cancelled_threads_leave_no_engine_lock_held(void **state)
{
    (void)state;
    SKIP_IF_TSAN();
    child_result_t r = run_in_child(cancel_inside_the_engine, NULL);
    if (r.signal || r.exit_code)
        fail_msg("child: signal %d, exit %d (SIGALRM %d: a lock left held)", r.signal,
                 r.exit_code, SIGALRM);
}

/* ---- Numbers -------------------------------------------------------------------------------- */

static int64_t echo_arg(int64_t arg, void *ud)
{
    *(int64_t *)ud = arg;
    return arg;
}

static void test_limits_numbers_c_cannot_hold_are_errors_not_conversions(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = engine(NULL, log);
    int64_t got = -1;
    mmt_policy_action(p, "echo", echo_arg, &got);
    load_text(p, "numbers.lua",
              "local mmt = require 'mmt'\n"
              "local function try(...) local ok, e = pcall(...) return ok and 'ok' or e end\n"
              "mmt.log('info', 'BYTES [%s] [%s] [%s] [%s] [%s]', mmt.bytes(0/0), mmt.bytes(1/0),\n"
              "  mmt.bytes(-1/0), mmt.bytes(2^80), mmt.bytes(1e300))\n"
              "mmt.log('info', 'CALL nan: %s', try(mmt.call, 'echo', 0/0))\n"
              "mmt.log('info', 'CALL inf: %s', try(mmt.call, 'echo', 1/0))\n"
              "mmt.log('info', 'CALL big: %s', try(mmt.call, 'echo', 2^63))\n"
              "mmt.log('info', 'CALL low: %s', try(mmt.call, 'echo', -2^64))\n"
              "mmt.log('info', 'CALL ok: %s', tostring(mmt.call('echo', 2^62)))\n"
              "local m = mmt.meminfo()\n"
              "m.rate = 0/0 m.rss = 1/0 m.lua = -1/0\n"
              "mmt.log('info', 'JSON %s', mmt.format(m, 'json'))\n"
              "mmt.log('info', 'PROM %s', mmt.format(m, 'prometheus'))\n"
              "m.rate = 0 m.rss = 0 m.lua = 0 m.allocated = 1/0\n"
              "mmt.log('info', 'FMT inf: %s', try(mmt.format, m, 'json'))\n"
              "m.allocated = 2^64\n"
              "mmt.log('info', 'FMT 2^64: %s', try(mmt.format, m, 'json'))\n"
              "m.allocated = 0/0\n"
              "mmt.log('info', 'FMT nan: %s', try(mmt.format, m, 'json'))\n");
    assert_logged(log, "BYTES [nan] [inf] [-inf] [1 YiB]");
    char line[LOG_LINE] = "";
    pthread_mutex_lock(&log->lock);
    for (int i = 0; i < log->count; i++)
        if (strncmp(log->lines[i], "BYTES", 5) == 0) snprintf(line, sizeof line, "%s", log->lines[i]);
    pthread_mutex_unlock(&log->lock);
    assert_true(strlen(line) < 120); /* 1e300 bytes in a few characters, not 280 digits */
    assert_logged(log, "CALL nan: ");
    assert_logged(log, "mmt.call: the argument must be a finite number between -2^63 and 2^63, "
                       "not nan");
    assert_logged(log, "not inf");
    assert_logged(log, "not 9.2233720368547758e+18");
    assert_logged(log, "not -1.8446744073709552e+19");
    assert_logged(log, "CALL ok: 4.6116860184274e+18");
    assert_true(got == (int64_t)1 << 62);
    assert_logged(log, "\"rate\":null,\"rss\":null,\"lua\":null");
    assert_logged(log, "mmt_in_use_rate_bytes_per_second NaN");
    assert_logged(log, "mmt_resident_bytes +Inf");
    assert_logged(log, "mmt_policy_vm_bytes -Inf");
    assert_logged(log, "FMT inf: ");
    assert_int_equal(log_count(log, "field 'allocated' must be a number from 0 to 2^64"), 3);
    assert_int_equal(log_level_count(log, MMT_LOG_ERROR), 0);
    free_engine(p);
    free_log(log);
}

/* ---- Log lines --------------------------------------------------------------------------------- */

static void test_limits_what_policies_log_stays_on_one_line(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = engine(NULL, log);
    load_text(p, "forge.lua",
              "local mmt = require 'mmt'\n"
              "mmt.log('warn', 'A\\nmmt policy [error] forged')\n"
              "print('B\\r\\n\\27[31mred\\0hidden')\n"
              "mmt.log('info', 'C %s', 'tab\\there, nel\\194\\133, ls\\226\\128\\168, del\\127')\n"
              "mmt.log('info', 'E %s', 'csi\\155[31m nel\\133 overlong\\192\\128 surrogate\\237\\160\\128 \\195\\169')\n"
              "mmt.rule { name = 'multi\\nline', when = function() error('D\\nforged') end,\n"
              "  fire = function() end }\n");
    mmt_mem_checkpoint();
    assert_int_equal(try_load(p, "bad.lua", "error('x\\nforged line', 0)\n"), MMT_ELOAD);
    assert_null(strchr(mmt_policy_error(p), '\n')); /* hosts print it: one line too */
    assert_contains(mmt_policy_error(p), "x\\nforged line");
    assert_logged(log, "A\\nmmt policy [error] forged");
    assert_logged(log, "B\\r\\n\\x1b[31mred"); /* a NUL ends a C string: the rest is gone */
    assert_logged(log, "C tab\there, nel\\u0085, ls\\u2028, del\\x7f");
    /* Bytes that are not well-formed UTF-8 are escaped one by one; é stays. */
    assert_logged(log, "E csi\\x9b[31m nel\\x85 overlong\\xc0\\x80 surrogate\\xed\\xa0\\x80 \xc3\xa9");
    assert_logged(log, "rule \"multi\\nline\": ");
    assert_logged(log, "D\\nforged");
    pthread_mutex_lock(&log->lock);
    for (int i = 0; i < log->count; i++) {
        assert_null(strchr(log->lines[i], '\n'));
        assert_null(strchr(log->lines[i], '\r'));
    }
    pthread_mutex_unlock(&log->lock);
    free_engine(p);
    free_log(log);
}

/* The default log, on stderr: one line per message, in a child whose stderr is read. */
static void log_to_stderr(void *arg)
{
    (void)arg;
    mmt_policy_t *p = mmt_policy_new(NULL);
    write_in_place(policy_path("stderr.lua"),
                   "local mmt = require 'mmt'\n"
                   "mmt.log('warn', 'one\\ntwo\\nmmt policy [error] three')\n");
    mmt_policy_load(p, policy_path("stderr.lua"));
    free_engine(p);
    end_child(0);
}

static void test_limits_the_default_log_writes_one_line_per_message(void **state)
{
    (void)state;
    SKIP_IF_TSAN(); /* a forked child, as the fork tests (README) */
    child_result_t r = run_in_child(log_to_stderr, NULL);
    assert_int_equal(r.exit_code, 0);
    assert_string_equal(r.err, "mmt policy [warn] one\\ntwo\\nmmt policy [error] three\n");
}

/* ---- Calling the engine from its own callbacks ------------------------------------------------ */

typedef struct reentry {
    mmt_policy_t *p;
    int free_rc, load_rc, reload_rc;
    _Atomic int calls; /* counted after the results are in: another thread waits on it */
} reentry_t;

static void reenter_from_event(const char *rule, int fired, const mmt_meminfo_t *m, void *ud)
{
    (void)rule;
    (void)fired;
    (void)m;
    reentry_t *r = ud;
    r->free_rc = mmt_policy_free(r->p);
    r->reload_rc = mmt_policy_reload(r->p);
    r->load_rc = mmt_policy_load(r->p, policy_path("reenter.lua"));
    r->calls++;
}

static reentry_t log_reentry;
static void reenter_from_log(int level, const char *message, void *ud)
{
    (void)level;
    (void)ud;
    if (!strstr(message, "REENTER")) return;
    log_reentry.free_rc = mmt_policy_free(log_reentry.p);
    log_reentry.reload_rc = mmt_policy_reload(log_reentry.p);
    log_reentry.load_rc = mmt_policy_load(log_reentry.p, policy_path("reenter.lua"));
    log_reentry.calls++;
}

static int64_t reenter_from_action(int64_t arg, void *ud)
{
    (void)arg;
    reentry_t *r = ud;
    r->free_rc = mmt_policy_free(r->p);
    r->calls++;
    return 0;
}

/* In a child under alarm: a deadlock fails the test instead of hanging it. */
static void reenter_everywhere(void *arg)
{
    (void)arg;
    alarm(20);
    write_in_place(policy_path("reenter.lua"),
                   "local mmt = require 'mmt'\n"
                   "mmt.rule { name = 'r', when = function() return true end,\n"
                   "  fire = function() mmt.log('info', 'REENTER') mmt.call('free', 0) end }\n");
    /* From the event function, on the checkpointing thread. */
    mmt_policy_t *p = mmt_policy_new(NULL);
    mmt_mem_set_checkpoint(0);
    static reentry_t ev, act;
    ev = (reentry_t){p, 1, 1, 1, 0};
    act = (reentry_t){p, 1, 1, 1, 0};
    mmt_policy_action(p, "free", reenter_from_action, &act);
    mmt_policy_set_event(p, reenter_from_event, &ev);
    mmt_policy_set_log(p, reenter_from_log, NULL);
    log_reentry = (reentry_t){p, 1, 1, 1, 0};
    if (mmt_policy_load(p, policy_path("reenter.lua")) != 0) end_child(2);
    mmt_mem_checkpoint();
    if (ev.calls != 1 || ev.free_rc != MMT_EBUSY || ev.reload_rc != MMT_EBUSY ||
        ev.load_rc != MMT_EBUSY)
        end_child(3);
    if (act.calls != 1 || act.free_rc != MMT_EBUSY) end_child(4);
    if (log_reentry.calls != 1 || log_reentry.free_rc != MMT_EBUSY ||
        log_reentry.reload_rc != MMT_EBUSY || log_reentry.load_rc != MMT_EBUSY)
        end_child(5);
    /* From the log function on the engine's own thread (a timer tick). */
    free_engine(p);
    mmt_policy_options_t o = {.interval_ms = 2};
    p = mmt_policy_new(&o);
    mmt_mem_set_checkpoint(0);
    log_reentry = (reentry_t){p, 1, 1, 1, 0};
    mmt_policy_set_log(p, reenter_from_log, NULL);
    act = (reentry_t){p, 1, 1, 1, 0};
    mmt_policy_action(p, "free", reenter_from_action, &act);
    if (mmt_policy_load(p, policy_path("reenter.lua")) != 0) end_child(6);
    while (log_reentry.calls == 0) sleep_us(1000);
    if (log_reentry.free_rc != MMT_EBUSY || log_reentry.load_rc != MMT_EBUSY) end_child(7);
    /* Outside the callbacks, the engine frees as ever. */
    if (mmt_policy_free(p) != 0) end_child(8);
    end_child(0);
}

static void test_limits_calls_back_into_the_engine_are_refused_not_deadlocked(void **state)
{
    (void)state;
    SKIP_IF_TSAN();
    child_result_t r = run_in_child(reenter_everywhere, NULL);
    if (r.signal || r.exit_code)
        fail_msg("child: signal %d, exit %d; stderr:\n%s", r.signal, r.exit_code, r.err);
    assert_contains(r.err, "mmt_policy_free: refused: called from the engine's own");
}

/* ---- Long paths -------------------------------------------------------------------------------- */

static void test_limits_long_paths_are_whole_in_every_message(void **state)
{
    (void)state;
    /* A folder path of about 200 characters, past the 60 LuaJIT keeps of a chunk name. */
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/a-rather-long-folder-name-for-policies", test_dir);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(mkdir(dir, 0700) == 0 || errno == EEXIST, 1);
        size_t n = strlen(dir);
        snprintf(dir + n, sizeof dir - n, "/level-%d-of-a-deep-configuration-tree", i);
    }
    assert_int_equal(mkdir(dir, 0700), 0);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/policy.lua", dir);
    assert_true(strlen(path) > 200);

    captured_log_t *log = new_log();
    mmt_policy_t *p = engine(NULL, log);
    char expect[2 * PATH_MAX + 128];
    /* A syntax error, a runtime error at load, a duplicate name. */
    write_in_place(path, "local mmt = require 'mmt'\nlocal x = = 1\n");
    assert_int_equal(mmt_policy_load(p, path), MMT_ELOAD);
    snprintf(expect, sizeof expect, "%s:2: ", path);
    assert_contains(mmt_policy_error(p), expect);
    write_in_place(path, "local mmt = require 'mmt'\n\nlocal y = nil + 1\n");
    assert_int_equal(mmt_policy_load(p, path), MMT_ELOAD);
    snprintf(expect, sizeof expect, "%s:3: attempt to perform arithmetic", path);
    assert_contains(mmt_policy_error(p), expect);
    write_in_place(path, "local mmt = require 'mmt'\n"
                         "mmt.rule { name = 'x', metric = 'in_use', above = 1, fire = print }\n"
                         "mmt.rule { name = 'x', metric = 'in_use', above = 1, fire = print }\n");
    assert_int_equal(mmt_policy_load(p, path), MMT_ELOAD);
    snprintf(expect, sizeof expect, "%s:3: rule \"x\": a rule of that name is already declared "
                                    "at %s:2", path, path);
    assert_contains(mmt_policy_error(p), expect);
    /* Runtime errors of rules, and errors a policy catches and logs itself. */
    write_in_place(path, "local mmt = require 'mmt'\n"
                         "local ok, e = pcall(error, 'caught')\n"
                         "mmt.log('info', 'CAUGHT %s', select(2, pcall(function() local z = "
                         "nil .. 'x' end)))\n"
                         "mmt.rule { name = 'bad', when = function() return nil < 1 end,\n"
                         "  fire = print }\n");
    assert_int_equal(mmt_policy_load(p, path), 0);
    mmt_mem_checkpoint();
    snprintf(expect, sizeof expect, "CAUGHT %s:3: attempt to concatenate", path);
    assert_logged(log, expect);
    snprintf(expect, sizeof expect, "rule \"bad\": %s:4: attempt to compare", path);
    assert_logged(log, expect);
    assert_int_equal(log_count(log, "..."), 0);
    free_engine(p);
    free_log(log);
}

/* ---- Many rules ---------------------------------------------------------------------------------- */

/* A policy that declares `n` rules in a loop, rule 'r<k>' declared twice when dup > 0. */
static void many_rules(char *text, size_t len, int n, int dup)
{
    snprintf(text, len,
             "local mmt = require 'mmt'\n"
             "for i = 1, %d do\n"
             "  mmt.rule { name = 'r' .. i, metric = 'in_use', above = 2^50 + i,\n"
             "    fire = function() end }\n"
             "end\n"
             "if %d > 0 then mmt.rule { name = 'r%d', metric = 'in_use', above = 1,\n"
             "  fire = function() end } end\n",
             n, dup, dup);
}

static double timed_load(mmt_policy_t *p, const char *name, int n)
{
    char text[1024];
    many_rules(text, sizeof text, n, 0);
    double t0 = now_seconds();
    load_text(p, name, text);
    return now_seconds() - t0;
}

static void test_limits_many_rules_load_in_linear_time(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    /* The budget out of the way: this measures how the load grows with the rules. */
    mmt_policy_options_t o = {.budget_ms = 600000};
    mmt_policy_t *p = engine(&o, log);
    double small = timed_load(p, "r5k.lua", 5000);
    double large = timed_load(p, "r50k.lua", 50000); /* ten times the rules... */
    /* ...in about ten times the time; comparing names pairwise would take a hundred. */
    if (large > 30 * small + 0.05)
        fail_msg("5,000 rules load in %.3f s, 50,000 in %.3f s", small, large);
    /* A reload of the same 50,000 carries each rule's state by name. */
    mmt_mem_checkpoint();
    double t0 = now_seconds();
    assert_int_equal(mmt_policy_reload(p), 0);
    assert_true(now_seconds() - t0 < 30 * small + 0.05);
    /* A duplicate among 50,000 is found, with both places. */
    char text[1024];
    many_rules(text, sizeof text, 50000, 31337);
    assert_int_equal(try_load(p, "dup.lua", text), MMT_ELOAD);
    assert_contains(mmt_policy_error(p), "dup.lua:6: rule \"r31337\": a rule of that name is "
                                         "already declared at ");
    assert_contains(mmt_policy_error(p), "dup.lua:3");
    free_engine(p);
    free_log(log);
}

static void test_limits_policies_of_many_rules_load_within_the_default_budget(void **state)
{
    (void)state;
    if (getenv("MMT_TEST_WRAPPER")) skip(); /* valgrind: 50 times slower than the budget */
    captured_log_t *log = new_log();
    /* The default budget, except under a sanitizer, whose checks make the load several
     * times slower than a release build's. */
    mmt_policy_options_t o = {.budget_ms = MMT_TEST_SANITIZED ? 1000 : 0};
    mmt_policy_t *p = engine(&o, log);
    char text[1024];
    many_rules(text, sizeof text, 50000, 0);
    if (try_load(p, "r50k.lua", text) != 0) fail_msg("%s", mmt_policy_error(p));
    /* Past the limit, the message is about the number of rules, not about time. */
    many_rules(text, sizeof text, MMT__MAX_RULES + 1, 0);
    assert_int_equal(try_load(p, "toomany.lua", text), MMT_ELOAD);
    assert_contains(mmt_policy_error(p), "too many rules: a policy may declare at most 65536");
    free_engine(p);
    free_log(log);
}

/* ---- The sandbox ------------------------------------------------------------------------ */

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void test_limits_sandbox_is_exactly_the_allow_list(void **state)
{
    (void)state;
    /* Every global and library member a policy can reach, listed from inside one, is
     * what mmt__sandbox names plus the engine's own four; string methods come from the
     * listed string table (no string.dump through a string's metatable). */
    static const char *expected[256];
    size_t n = 0;
    for (const char *const *e = mmt__sandbox; *e; e++) expected[n++] = *e;
    static const char *const own[] = {"_G", "print", "require", "xpcall"};
    for (size_t k = 0; k < 4; k++) expected[n++] = own[k];
    qsort(expected, n, sizeof expected[0], by_name);
    char want[8192] = "ENV";
    for (size_t k = 0; k < n; k++)
        snprintf(want + strlen(want), sizeof want - strlen(want), " %s", expected[k]);

    char path[256];
    test_path(path, sizeof path, "env.lua");
    write_in_place(path,
                   "local mmt = require 'mmt'\n"
                   "local names = {}\n"
                   "for k, v in pairs(_G) do\n"
                   "  if type(v) == 'table' and k ~= '_G' then\n"
                   "    for m in pairs(v) do names[#names + 1] = k .. '.' .. m end\n"
                   "  else names[#names + 1] = k end\n"
                   "end\n"
                   "table.sort(names)\n"
                   "mmt.log('info', 'ENV ' .. table.concat(names, ' '))\n"
                   "local mt = getmetatable('')\n"
                   "mmt.log('info', 'STRINGS ' .. tostring(mt.__index == string) .. ' ' ..\n"
                   "        tostring(('x').dump))\n");
    captured_log_t *log = new_log();
    mmt_policy_t *p = engine(NULL, log);
    if (mmt_policy_load(p, path) != 0) fail_msg("%s", mmt_policy_error(p));
    assert_logged(log, "STRINGS true nil");
    bool same = false;
    for (int k = 0; k < log->count; k++) same = same || strcmp(log->lines[k], want) == 0;
    if (!same) {
        log_dump(log);
        fail_msg("the environment differs from the allow-list:\n%s", want);
    }
    free_engine(p);
    free_log(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_limits_sandbox_is_exactly_the_allow_list, free_left_engine),
        cmocka_unit_test_teardown(test_limits_recursion_through_c_functions_is_an_error_at_load, free_left_engine),
        cmocka_unit_test_teardown(test_limits_recursion_through_c_functions_in_rules_is_the_rules_error, free_left_engine),
        cmocka_unit_test_teardown(test_limits_recursion_on_a_small_thread_stack_stops_short_of_its_end, free_left_engine),
        cmocka_unit_test_teardown(test_limits_error_handlers_run_under_the_budget, free_left_engine),
        cmocka_unit_test_teardown(test_limits_xpcall_keeps_its_results_and_arguments, free_left_engine),
        cmocka_unit_test_teardown(test_limits_an_evaluation_stops_at_its_budget_and_names_what_ate_it, free_left_engine),
        cmocka_unit_test_teardown(test_limits_the_worst_rule_of_evaluations_past_budget_is_disabled, free_left_engine),
        cmocka_unit_test_teardown(test_limits_a_loop_of_slow_c_calls_is_stopped_within_its_budget, free_left_engine),
        cmocka_unit_test_teardown(test_limits_rule_tables_are_read_raw, free_left_engine),
        cmocka_unit_test_teardown(test_limits_a_fire_cut_by_the_evaluation_deadline_fires_again, free_left_engine),
        cmocka_unit_test_teardown(test_limits_policy_code_does_not_run_on_fibers_or_nearly_full_stacks, free_left_engine),
        cmocka_unit_test_teardown(test_limits_declarative_checkpoints_make_no_lua_garbage, free_left_engine),
        cmocka_unit_test_teardown(test_limits_cancelled_threads_leave_no_engine_lock_held, free_left_engine),
        cmocka_unit_test_teardown(test_limits_numbers_c_cannot_hold_are_errors_not_conversions, free_left_engine),
        cmocka_unit_test_teardown(test_limits_what_policies_log_stays_on_one_line, free_left_engine),
        cmocka_unit_test_teardown(test_limits_the_default_log_writes_one_line_per_message, free_left_engine),
        cmocka_unit_test_teardown(test_limits_calls_back_into_the_engine_are_refused_not_deadlocked, free_left_engine),
        cmocka_unit_test_teardown(test_limits_long_paths_are_whole_in_every_message, free_left_engine),
        cmocka_unit_test_teardown(test_limits_many_rules_load_in_linear_time, free_left_engine),
        cmocka_unit_test_teardown(test_limits_policies_of_many_rules_load_within_the_default_budget, free_left_engine),
    };
    return cmocka_run_group_tests_name("limits", tests, make_test_dir, remove_test_dir);
}

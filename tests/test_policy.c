/*
 * The policy engine: both rule kinds, hysteresis, hold, tasks, host actions, load errors,
 * runtime error isolation, the time budget, the memory cap and the sandbox. Policies are
 * real files run by the real LuaJIT; rules are driven by explicit checkpoints unless a
 * test needs the timer.
 */
#include <math.h>
#include <stdatomic.h>

#include "policyutil.h"

/* ---- Rules -------------------------------------------------------------------------------- */

static void test_policy_declarative_rule_fires_and_resolves_with_hysteresis(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    uint64_t base = meminfo_now().in_use;
    char text[1024];
    snprintf(text, sizeof text,
             "local mmt = require 'mmt'\n"
             "mmt.rule { name = 'hw', metric = 'in_use', above = %llu, below = %llu,\n"
             "  fire = function(m) mmt.log('warn', 'FIRE %%d', m.in_use) end,\n"
             "  resolve = function(m) mmt.log('info', 'RESOLVE %%d', m.in_use) end }\n",
             (unsigned long long)(base + 1000000), (unsigned long long)(base + 500000));
    load_text(p, "hw.lua", text);

    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "FIRE"), 0);
    void *a = mmt_malloc(1100000); /* above */
    mmt_mem_checkpoint();
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "FIRE"), 1);
    void *b = mmt_realloc(a, 700000); /* between below and above: still firing */
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "RESOLVE"), 0);
    b = mmt_realloc(b, 1200000); /* above again while firing: no second fire */
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "FIRE"), 1);
    b = mmt_realloc(b, 400000); /* under below: resolves */
    mmt_mem_checkpoint();
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "RESOLVE"), 1);
    b = mmt_realloc(b, 1100000); /* fires again */
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "FIRE"), 2);
    mmt_free(b);

    mmt_policy_free(p);
    free_log(log);
}

static void test_policy_when_rule_fires_and_resolves_on_its_condition(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    load_text(p, "when.lua",
              "local mmt = require 'mmt'\n"
              "local n = 0\n"
              "mmt.rule { name = 'odd', when = function(m) n = n + 1 return n % 4 < 2 end,\n"
              "  fire = function(m) mmt.log('warn', 'FIRE at %d', n) end,\n"
              "  resolve = function(m) mmt.log('info', 'RESOLVE at %d', n) end }\n");
    for (int i = 0; i < 8; i++) mmt_mem_checkpoint();
    /* n = 1..8: true for 1, 4, 5, 8 (n % 4 < 2); edges: fire 1, resolve 2, fire 4,
     * resolve 6, fire 8. */
    assert_logged(log, "FIRE at 1");
    assert_logged(log, "RESOLVE at 2");
    assert_logged(log, "FIRE at 4");
    assert_logged(log, "RESOLVE at 6");
    assert_logged(log, "FIRE at 8");
    assert_int_equal(log_count(log, "FIRE"), 3);
    assert_int_equal(log_count(log, "RESOLVE"), 2);
    mmt_policy_free(p);
    free_log(log);
}

/* What the event function saw, in order. */
typedef struct events {
    char seen[8][64];
    uint64_t in_use[8];
    int n;
} events_t;

static void record_event(const char *rule, int fired, const mmt_meminfo_t *m, void *ud)
{
    events_t *e = ud;
    if (e->n >= 8) return;
    snprintf(e->seen[e->n], sizeof e->seen[0], "%s %s", fired ? "fire" : "resolve", rule);
    e->in_use[e->n++] = m->in_use;
}

static void test_policy_event_function_is_told_of_fire_and_resolve(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    events_t ev = {.n = 0};
    mmt_policy_set_event(p, record_event, &ev);
    uint64_t base = meminfo_now().in_use;
    char text[1024];
    /* The second rule's fire raises: the event is still told, the rule is firing. */
    snprintf(text, sizeof text,
             "local mmt = require 'mmt'\n"
             "mmt.rule { name = 'big', metric = 'in_use', above = %llu, below = %llu,\n"
             "  fire = function(m) end }\n"
             "mmt.rule { name = 'broken', metric = 'in_use', above = %llu,\n"
             "  fire = function(m) error('oops') end }\n",
             (unsigned long long)(base + 1000000), (unsigned long long)(base + 500000),
             (unsigned long long)(base + 1000000));
    load_text(p, "events.lua", text);

    mmt_mem_checkpoint();
    assert_int_equal(ev.n, 0);
    void *a = mmt_malloc(1100000);
    mmt_mem_checkpoint();
    mmt_mem_checkpoint(); /* still firing: no second event */
    assert_int_equal(ev.n, 2);
    assert_string_equal(ev.seen[0], "fire big");
    assert_string_equal(ev.seen[1], "fire broken");
    assert_true(ev.in_use[0] >= base + 1100000);
    mmt_free(a);
    mmt_mem_checkpoint();
    assert_int_equal(ev.n, 4);
    assert_string_equal(ev.seen[2], "resolve big");
    assert_string_equal(ev.seen[3], "resolve broken");
    assert_true(ev.in_use[2] < base + 500000);

    mmt_policy_set_event(p, NULL, NULL); /* removed: no more events */
    a = mmt_malloc(1100000);
    mmt_mem_checkpoint();
    assert_int_equal(ev.n, 4);
    mmt_free(a);
    mmt_policy_free(p);
    free_log(log);
}

static void test_policy_hold_delays_firing_until_the_condition_has_lasted(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 10};
    mmt_policy_t *p = new_engine(&o, log);
    /* Before the load: the engine's thread may evaluate (and start the hold) before the
     * load returns to this thread, which valgrind's turn-taking delays. */
    double loaded = now_seconds();
    load_text(p, "hold.lua",
              "local mmt = require 'mmt'\n"
              "mmt.rule { name = 'slow', when = function(m) return true end, hold = 0.3,\n"
              "  fire = function(m) mmt.log('warn', 'HELD') end }\n");
    assert_true(wait_for_log(log, "HELD", 3000));
    double waited = log_time(log, "HELD") - loaded;
    assert_true(waited >= 0.3);
    assert_int_equal(log_count(log, "HELD"), 1);

    /* A condition that breaks off before `hold` restarts the wait. */
    load_text(p, "hold2.lua",
              "local mmt = require 'mmt'\n"
              "local t0 = mmt.meminfo().time\n"
              "mmt.rule { name = 'flicker', hold = 0.2,\n"
              "  when = function(m) local age = m.time - t0\n"
              "    return age < 0.15 or age > 0.3 end,\n"
              "  fire = function(m) mmt.log('warn', 'FLICKER %.2f', m.time - t0) end }\n");
    assert_true(wait_for_log(log, "FLICKER", 3000));
    double at;
    pthread_mutex_lock(&log->lock);
    const char *line = NULL;
    for (int i = 0; i < log->count; i++)
        if (strstr(log->lines[i], "FLICKER")) line = log->lines[i];
    assert_non_null(line);
    at = atof(line + strlen("FLICKER "));
    pthread_mutex_unlock(&log->lock);
    assert_true(at >= 0.5); /* held again from 0.3 s for 0.2 s */
    mmt_policy_free(p);
    free_log(log);
}

static void test_policy_every_runs_on_the_timer(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 10};
    mmt_policy_t *p = new_engine(&o, log);
    load_text(p, "every.lua",
              "local mmt = require 'mmt'\n"
              "local n = 0\n"
              "mmt.every(0.05, function(m) n = n + 1 mmt.log('info', 'TICK %d %d', n, m.in_use) end)\n");
    sleep_ms(600);
    int ticks = log_count(log, "TICK");
    mmt_policy_free(p);
    /* 0.6 s at 0.05 s: about 12. A loaded machine may run fewer, never more. */
    assert_true(ticks >= 3);
    assert_true(ticks <= 13);
    free_log(log);
}

static void test_policy_every_without_timer_is_a_warning(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    load_text(p, "notimer.lua", "require('mmt').every(1, function() end)\n");
    assert_logged(log, "notimer.lua:1: mmt.every: the engine has no timer");
    mmt_policy_free(p);
    free_log(log);
}

/* ---- The mmt module ------------------------------------------------------------------------ */

static int64_t times_three(int64_t arg, void *ud)
{
    (*(int *)ud)++;
    return arg * 3;
}

static void test_policy_host_action_gets_its_argument_and_returns_a_result(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    int calls = 0;
    assert_int_equal(mmt_policy_action(p, "triple", times_three, &calls), 0);
    assert_int_equal(mmt_policy_action(p, "", times_three, &calls), MMT_EINVAL);
    assert_int_equal(mmt_policy_action(p, "x", NULL, &calls), MMT_EINVAL);
    load_text(p, "call.lua",
              "local mmt = require 'mmt'\n"
              "mmt.rule { name = 'c', when = function() return true end,\n"
              "  fire = function() mmt.log('info', 'GOT %d', mmt.call('triple', 14)) end }\n"
              "mmt.rule { name = 'u', when = function() return true end,\n"
              "  fire = function() mmt.call('no_such_action', 1) end }\n");
    mmt_mem_checkpoint();
    assert_int_equal(calls, 1);
    assert_logged(log, "GOT 42");
    assert_logged(log, "rule \"u\": ");
    assert_logged(log, "call.lua:5: mmt.call: no host action named \"no_such_action\"");
    mmt_policy_free(p);
    free_log(log);
}

static void test_policy_module_helpers(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    load_text(p, "helpers.lua",
              "local mmt = require 'mmt'\n"
              "mmt.log('info', 'B=%s|K=%s|M=%s|G=%s|N=%s', mmt.bytes(512), mmt.bytes(1536),\n"
              "  mmt.bytes(1.5 * mmt.MiB), mmt.bytes(3 * mmt.GiB), mmt.bytes(-2048))\n"
              "local m = mmt.meminfo()\n"
              "mmt.log('debug', 'SNAP %s %s %s %s %s', type(m.in_use), type(m.rss), type(m.lua),\n"
              "  type(m.time), type(m.rate))\n"
              "mmt.log('info', 'RSS %s LUA %s', tostring(m.rss > 0), tostring(m.lua > 0))\n"
              "print('printed', 1, true)\n"
              "local ok, err = pcall(mmt.log, 'loud', 'x')\n"
              "mmt.log('error', 'LEVEL %s', err)\n");
    assert_logged(log, "B=512 B|K=1.5 KiB|M=1.5 MiB|G=3 GiB|N=-2 KiB");
    assert_logged(log, "SNAP number number number number number");
    assert_logged(log, "RSS true LUA true");
    assert_logged(log, "printed\t1\ttrue");
    assert_logged(log, "LEVEL mmt.log: unknown level 'loud' (error, warn, info or debug)");
    mmt_policy_free(p);
    free_log(log);
}

static void test_policy_vm_memory_is_not_counted_but_reported(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.budget_ms = 20000}; /* slow under sanitizers */
    mmt_policy_t *p = new_engine(&o, log);
    mmt_meminfo_t before = meminfo_now();
    load_text(p, "big.lua",
              "local mmt = require 'mmt'\n"
              "big = {} for i = 1, 200000 do big[i] = {i} end\n"
              "mmt.log('info', 'LUA %d', mmt.meminfo().lua)\n");
    mmt_meminfo_t after = meminfo_now();
    assert_int_equal(after.in_use, before.in_use);
    assert_int_equal(after.allocations, before.allocations);
    pthread_mutex_lock(&log->lock);
    double lua = 0;
    for (int i = 0; i < log->count; i++)
        if (strncmp(log->lines[i], "LUA ", 4) == 0) lua = atof(log->lines[i] + 4);
    pthread_mutex_unlock(&log->lock);
    assert_true(lua > 200000 * 16.0); /* the tables are there, in the VM's own account */
    mmt_policy_free(p);
    free_log(log);
}

/* ---- Load errors ------------------------------------------------------------------------------ */

static void test_policy_bad_rule_fields_are_load_errors_naming_rule_and_field(void **state)
{
    (void)state;
    const load_error_case_t cases[] = {
        {"mmt.rule { name = 'hw', metric = 'in_use', above = '1 MiB', fire = f }",
         ":3: rule \"hw\": 'above' must be a number, not a string"},
        {"mmt.rule { name = 'hw', metric = 'in_use', fire = f }",
         ":3: rule \"hw\": 'above' is missing (a number)"},
        {"mmt.rule { metric = 'in_use', above = 1, fire = f }",
         ":3: mmt.rule: 'name' must be a non-empty string"},
        {"mmt.rule { name = 'x', fire = f }",
         ":3: rule \"x\": needs 'when' (a function) or 'metric' and 'above'"},
        {"mmt.rule { name = 'x', when = f, metric = 'in_use', above = 1, fire = f }",
         ":3: rule \"x\": give either 'when' or 'metric', not both"},
        {"mmt.rule { name = 'x', metric = 'inuse', above = 1, fire = f }",
         ":3: rule \"x\": unknown metric 'inuse'"},
        {"mmt.rule { name = 'x', metric = 'in_use', abvoe = 1, above = 1, fire = f }",
         ":3: rule \"x\": unknown field 'abvoe'"},
        {"mmt.rule { name = 'x', metric = 'in_use', above = 1, below = 2, fire = f }",
         ":3: rule \"x\": 'below' (2) must not be more than 'above' (1)"},
        {"mmt.rule { name = 'x', metric = 'in_use', above = 1 }",
         ":3: rule \"x\": 'fire' is missing (a function)"},
        {"mmt.rule { name = 'x', metric = 'in_use', above = 1, fire = 'log' }",
         ":3: rule \"x\": 'fire' must be a function, not a string"},
        {"mmt.rule { name = 'x', when = true, fire = f }",
         ":3: rule \"x\": 'when' must be a function, not a boolean"},
        {"mmt.rule { name = 'x', metric = 'in_use', above = 1, hold = -1, fire = f }",
         ":3: rule \"x\": 'hold' must not be negative"},
        {"mmt.rule { name = 'x', when = f, fire = f }\nmmt.rule { name = 'x', when = f, fire = f }",
         ":4: rule \"x\": a rule of that name is already declared at "},
        {"mmt.rule 'x'", ":3: mmt.rule: expects a table, not a string"},
        {"mmt.every(0, f)", "bad argument #1 to 'every' (the period must be a positive number"},
    };
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    const char *path = policy_path("fields.lua");
    expect_load_errors(p, path, cases, sizeof cases / sizeof cases[0]);
    assert_int_equal(log_count(log, "fields.lua:"), (int)(sizeof cases / sizeof cases[0]));
    mmt_policy_free(p);
    free_log(log);
}

static void test_policy_bad_files_are_clear_load_errors(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);

    assert_int_equal(mmt_policy_load(p, policy_path("missing.lua")), MMT_ELOAD);
    assert_contains(mmt_policy_error(p), "missing.lua: cannot open: No such file or directory");

    const char *dir = policy_path("");
    assert_int_equal(mmt_policy_load(p, dir), MMT_ELOAD);
    assert_contains(mmt_policy_error(p), "cannot read");

    write_in_place(policy_path("syntax.lua"), "local mmt = require 'mmt'\nmmt.rule {\n");
    assert_int_equal(mmt_policy_load(p, policy_path("syntax.lua")), MMT_ELOAD);
    assert_contains(mmt_policy_error(p), "syntax.lua:3: ");

    write_in_place(policy_path("binary.lua"), "\033LJ\002garbage");
    assert_int_equal(mmt_policy_load(p, policy_path("binary.lua")), MMT_ELOAD);
    assert_contains(mmt_policy_error(p), "binary.lua: is a compiled (binary) chunk");

    write_in_place(policy_path("garbage.lua"), "\xff\xfe\x01\x02 rule = ((\x80");
    assert_int_equal(mmt_policy_load(p, policy_path("garbage.lua")), MMT_ELOAD);
    assert_contains(mmt_policy_error(p), "garbage.lua:1: ");

    FILE *f = fopen(policy_path("huge.lua"), "w");
    for (int i = 0; i < 300000; i++) fputs("-- a comment line to make it large\n", f);
    fclose(f);
    assert_int_equal(mmt_policy_load(p, policy_path("huge.lua")), MMT_ELOAD);
    assert_contains(mmt_policy_error(p), "huge.lua: larger than the 4 MiB a policy file may be");

    write_in_place(policy_path("runtime.lua"), "local x = nil\nlocal y = x.field\n");
    assert_int_equal(mmt_policy_load(p, policy_path("runtime.lua")), MMT_ELOAD);
    assert_contains(mmt_policy_error(p), "runtime.lua:2: attempt to index");

    write_in_place(policy_path("noposition.lua"), "error('bare', 0)\n");
    assert_int_equal(mmt_policy_load(p, policy_path("noposition.lua")), MMT_ELOAD);
    assert_contains(mmt_policy_error(p), "noposition.lua: bare");

    write_in_place(policy_path("empty.lua"), "");
    assert_int_equal(mmt_policy_load(p, policy_path("empty.lua")), 0);
    assert_string_equal(mmt_policy_error(p), "");
    assert_logged(log, "empty.lua: loaded, 0 rules and 0 tasks");

    assert_int_equal(mmt_policy_reload(NULL), MMT_EINVAL);
    assert_int_equal(mmt_policy_load(p, NULL), MMT_EINVAL);
    mmt_policy_free(p);

    mmt_policy_t *fresh = new_engine(NULL, log);
    assert_int_equal(mmt_policy_reload(fresh), MMT_EINVAL); /* no path yet */
    mmt_policy_free(fresh);
    free_log(log);
}

/* ---- Runtime safety --------------------------------------------------------------------------- */

static void test_policy_rule_errors_are_isolated_and_disable_after_three(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    load_text(p, "errors.lua",
              "local mmt = require 'mmt'\n"
              "local n = 0\n"
              "mmt.rule { name = 'broken', when = function(m) return m.no_such.field end,\n"
              "  fire = function() end }\n"
              "mmt.rule { name = 'fine', when = function(m) n = n + 1 return n % 2 == 1 end,\n"
              "  fire = function() mmt.log('info', 'FINE') end }\n");
    for (int i = 0; i < 6; i++) mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "rule \"broken\": "), 4); /* 3 errors, then disabled */
    assert_int_equal(log_count(log, "errors.lua:3: attempt to index field 'no_such'"), 3);
    assert_int_equal(log_count(log, "rule \"broken\": disabled after 3 errors in a row"), 1);
    assert_int_equal(log_count(log, "FINE"), 3); /* the other rule kept running */

    /* A reload brings the fixed rule back. */
    load_text(p, "errors.lua",
              "local mmt = require 'mmt'\n"
              "mmt.rule { name = 'broken', when = function(m) return true end,\n"
              "  fire = function() mmt.log('info', 'MENDED') end }\n");
    mmt_mem_checkpoint();
    assert_logged(log, "MENDED");
    mmt_policy_free(p);
    free_log(log);
}

static void test_policy_errors_in_fire_resolve_and_every_are_reported(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 10};
    mmt_policy_t *p = new_engine(&o, log);
    load_text(p, "fire_err.lua",
              "local mmt = require 'mmt'\n"
              "local on = true\n"
              "mmt.rule { name = 'f', when = function() return on end,\n"
              "  fire = function() on = false error('fire broke') end,\n"
              "  resolve = function() error('resolve broke') end }\n"
              "mmt.every(0.02, function() error('task broke') end)\n");
    /* Fired and resolved by these checkpoints, or by the timer's ticks when it holds the
     * engine as they come (a checkpoint does not wait for it). */
    mmt_mem_checkpoint();
    mmt_mem_checkpoint();
    assert_true(wait_for_log(log, "fire_err.lua:4: fire broke", 2000));
    assert_true(wait_for_log(log, "fire_err.lua:5: resolve broke", 2000));
    assert_int_equal(log_count(log, "rule \"f\": "), 2);
    assert_true(wait_for_log(log, "task every 0.02s (", 2000));
    assert_true(wait_for_log(log, "fire_err.lua:6): disabled after 3 errors in a row", 2000));
    assert_logged(log, "fire_err.lua:6: task broke");
    mmt_policy_free(p);
    free_log(log);
}

static void test_policy_runaway_rule_is_stopped_within_its_budget(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    /* Each call's budget, not the evaluation's (room for both runaways here). */
    mmt_policy_options_t o = {.budget_ms = 50, .evaluation_ms = 10000};
    mmt_policy_t *p = new_engine(&o, log);
    load_text(p, "runaway.lua",
              "local mmt = require 'mmt'\n"
              "mmt.rule { name = 'spin', when = function() while true do end end,\n"
              "  fire = function() end }\n"
              "mmt.rule { name = 'sly', when = function()\n"
              "    while true do pcall(function() while true do end end) end end,\n"
              "  fire = function() end }\n"
              "mmt.rule { name = 'alive', when = function() return true end,\n"
              "  fire = function() mmt.log('info', 'ALIVE') end }\n");
    double t0 = now_seconds();
    mmt_mem_checkpoint();
    double took = now_seconds() - t0;
    assert_logged(log, "rule \"spin\": ");
    assert_logged(log, "stopped: ran past its time budget of 50 ms");
    assert_int_equal(log_count(log, "stopped: ran past its time budget"), 2);
    assert_logged(log, "ALIVE");
    assert_true(took < 2.0); /* two budgets of 50 ms, with room for a slow machine */

    /* A runaway at load time is a load error; the previous policy stays. */
    write_in_place(policy_path("runaway2.lua"), "while true do end\n");
    assert_int_equal(mmt_policy_load(p, policy_path("runaway2.lua")), MMT_ELOAD);
    assert_contains(mmt_policy_error(p), "ran past its time budget");
    mmt_mem_checkpoint();
    /* spin and sly at the first checkpoint, the load, spin and sly again */
    assert_int_equal(log_count(log, "stopped: ran past its time budget"), 5);
    mmt_policy_free(p);
    free_log(log);
}

static void test_policy_memory_bomb_gets_an_error_and_the_host_lives(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    /* The budget is generous so that the cap, not the clock, stops these rules, even
     * under sanitizers. */
    mmt_policy_options_t o = {.lua_memory_limit = 16 << 20, .budget_ms = 20000};
    mmt_policy_t *p = new_engine(&o, log);
    load_text(p, "bomb.lua",
              "local mmt = require 'mmt'\n"
              "mmt.rule { name = 'bomb', when = function() return true end,\n"
              "  fire = function() local s = string.rep('x', 2^30) mmt.log('info', #s) end }\n"
              "mmt.rule { name = 'hoard', when = function() return true end,\n"
              "  fire = function() local t = {} for i = 1, 1e8 do t[i] = {} end end }\n"
              "mmt.rule { name = 'after', when = function() return true end,\n"
              "  fire = function() mmt.log('info', 'AFTER %d', mmt.meminfo().lua) end }\n");
    mmt_mem_checkpoint();
    assert_logged(log, "rule \"bomb\": ");
    assert_int_equal(log_count(log, "out of memory (the policy VM may hold 16777216 bytes)"), 2);
    assert_logged(log, "AFTER ");

    write_in_place(policy_path("bomb2.lua"), "local s = string.rep('x', 2^30)\n");
    assert_int_equal(mmt_policy_load(p, policy_path("bomb2.lua")), MMT_ELOAD);
    assert_contains(mmt_policy_error(p), "bomb2.lua: out of memory");
    mmt_policy_free(p);
    free_log(log);
}

static void test_policy_sandbox_denies_what_could_end_or_replace_the_host(void **state)
{
    (void)state;
    const char *denied[] = {
        "os.exit(3)",
        "os.execute('true')",
        "io.popen('true')",
        "package.loadlib('libc.so.6', 'abort')",
        "require('ffi')",
        "require('io')",
        "loadstring('return 1')",
        "dofile('/etc/passwd')",
        "string.dump(print)",
        "setfenv(1, {})",
        "debug.getinfo(1)",
        "jit.on()",
        "collectgarbage('stop')",
    };
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    const char *path = policy_path("sandbox.lua");
    for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++) {
        write_in_place(path, denied[i]);
        if (mmt_policy_load(p, path) != MMT_ELOAD)
            fail_msg("\"%s\" was allowed in a sandboxed policy", denied[i]);
        assert_contains(mmt_policy_error(p), "sandbox.lua:1: ");
    }
    write_in_place(path, "local ok, e = pcall(require, 'os')\nerror(e, 0)\n");
    assert_int_equal(mmt_policy_load(p, path), MMT_ELOAD);
    assert_contains(mmt_policy_error(p), "policies may only require \"mmt\"");
    /* What a policy does need is there. */
    write_in_place(path, "local mmt = require 'mmt'\n"
                         "mmt.log('info', 'OK %s %s %d %s', os.time() > 0, math.floor(2.5),\n"
                         "  #table.concat({'a', 'b'}), bit.band(6, 3))\n");
    assert_int_equal(mmt_policy_load(p, path), 0);
    assert_logged(log, "OK true 2 2 2");
    mmt_policy_free(p);

    mmt_policy_options_t o = {.unsafe = 1};
    p = new_engine(&o, log);
    write_in_place(path, "local mmt = require 'mmt'\n"
                         "mmt.log('info', 'UNSAFE %s %s %s', type(os.execute), type(io.popen),\n"
                         "  type(require('ffi').cdef))\n");
    assert_int_equal(mmt_policy_load(p, path), 0);
    assert_logged(log, "UNSAFE function function function");
    mmt_policy_free(p);
    free_log(log);
}

/* ---- Calls from inside policy code ------------------------------------------------------------------ */

typedef struct reentry {
    mmt_policy_t *p;
    int load_rc, reload_rc;
} reentry_t;

static int64_t reload_from_inside(int64_t arg, void *ud)
{
    (void)arg;
    reentry_t *r = ud;
    r->reload_rc = mmt_policy_reload(r->p);
    r->load_rc = mmt_policy_load(r->p, "/nonexistent.lua");
    void *block = mmt_malloc(3 << 20); /* actions may allocate */
    mmt_free(block);
    return 0;
}

static void test_policy_reload_from_inside_policy_code_is_refused(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    reentry_t r = {.p = p};
    mmt_policy_action(p, "reload", reload_from_inside, &r);
    load_text(p, "reenter.lua",
              "local mmt = require 'mmt'\n"
              "mmt.rule { name = 'r', when = function() return true end,\n"
              "  fire = function() mmt.call('reload') end }\n");
    mmt_mem_set_checkpoint(1 << 20);
    mmt_mem_checkpoint();
    mmt_mem_set_checkpoint(0);
    assert_int_equal(r.reload_rc, MMT_EBUSY);
    assert_int_equal(r.load_rc, MMT_EBUSY);
    mmt_policy_free(p);
    free_log(log);
}

/* ---- Contracts ----------------------------------------------------------------------- */

static int64_t unused_action(int64_t arg, void *ud)
{
    (void)ud;
    return arg;
}

static void test_policy_null_engine_is_refused_everywhere(void **state)
{
    (void)state;
    /* policy.h's rule: a NULL engine does nothing; error codes say MMT_EINVAL. */
    assert_int_equal(mmt_policy_action(NULL, "a", unused_action, NULL), MMT_EINVAL);
    mmt_policy_set_log(NULL, capture, NULL);
    mmt_policy_set_event(NULL, NULL, NULL);
    assert_int_equal(mmt_policy_load(NULL, "x.lua"), MMT_EINVAL);
    assert_int_equal(mmt_policy_reload(NULL), MMT_EINVAL);
    assert_string_equal(mmt_policy_error(NULL), "");
    assert_int_equal(mmt_policy_free(NULL), 0);
}

typedef struct error_reader {
    mmt_policy_t *p;
    const char *want; /* the whole error of the broken file */
    atomic_bool stop;
    int reads, torn;
} error_reader_t;

static void *read_errors(void *arg)
{
    error_reader_t *r = arg;
    while (!atomic_load(&r->stop)) {
        const char *e = mmt_policy_error(r->p);
        if (e[0] && strcmp(e, r->want) != 0) r->torn++;
        r->reads++;
    }
    return NULL;
}

static void test_policy_error_is_the_callers_copy_while_loads_go_on(void **state)
{
    (void)state;
    /* One thread loads a broken and a good file in turn; another reads the error all the
     * while: each reading is "" or the broken file's whole error, never a mixture. */
    char bad[256], good[256];
    test_path(bad, sizeof bad, "bad.lua");
    test_path(good, sizeof good, "good.lua");
    write_in_place(bad, "local mmt = require 'mmt'\nmmt.rule { name = 'x' }\n");
    write_in_place(good, "local mmt = require 'mmt'\n");
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    assert_int_equal(mmt_policy_load(p, bad), MMT_ELOAD);
    static char want[600];
    snprintf(want, sizeof want, "%s", mmt_policy_error(p));
    assert_true(want[0] != '\0');
    error_reader_t r = {.p = p, .want = want};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, read_errors, &r), 0);
    for (int k = 0; k < 300; k++) {
        assert_int_equal(mmt_policy_load(p, good), 0);
        assert_int_equal(mmt_policy_load(p, bad), MMT_ELOAD);
    }
    atomic_store(&r.stop, true);
    pthread_join(t, NULL);
    assert_true(r.reads > 0);
    assert_int_equal(r.torn, 0);
    mmt_policy_free(p);
    free_log(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_declarative_rule_fires_and_resolves_with_hysteresis),
        cmocka_unit_test(test_policy_null_engine_is_refused_everywhere),
        cmocka_unit_test(test_policy_error_is_the_callers_copy_while_loads_go_on),
        cmocka_unit_test(test_policy_when_rule_fires_and_resolves_on_its_condition),
        cmocka_unit_test(test_policy_event_function_is_told_of_fire_and_resolve),
        cmocka_unit_test(test_policy_hold_delays_firing_until_the_condition_has_lasted),
        cmocka_unit_test(test_policy_every_runs_on_the_timer),
        cmocka_unit_test(test_policy_every_without_timer_is_a_warning),
        cmocka_unit_test(test_policy_host_action_gets_its_argument_and_returns_a_result),
        cmocka_unit_test(test_policy_module_helpers),
        cmocka_unit_test(test_policy_vm_memory_is_not_counted_but_reported),
        cmocka_unit_test(test_policy_bad_rule_fields_are_load_errors_naming_rule_and_field),
        cmocka_unit_test(test_policy_bad_files_are_clear_load_errors),
        cmocka_unit_test(test_policy_rule_errors_are_isolated_and_disable_after_three),
        cmocka_unit_test(test_policy_errors_in_fire_resolve_and_every_are_reported),
        cmocka_unit_test(test_policy_runaway_rule_is_stopped_within_its_budget),
        cmocka_unit_test(test_policy_memory_bomb_gets_an_error_and_the_host_lives),
        cmocka_unit_test(test_policy_sandbox_denies_what_could_end_or_replace_the_host),
        cmocka_unit_test(test_policy_reload_from_inside_policy_code_is_refused),
    };
    return cmocka_run_group_tests_name("policy", tests, make_test_dir, remove_test_dir);
}

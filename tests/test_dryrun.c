/*
 * Dry runs (mmt_policy_options_t.dry_run, MMT_DRY_RUN, mmt-run --dry-run): a policy's rules
 * fire and resolve, its code runs and the event function is told, but its host actions,
 * reclaims, trims and limits are only said ("dry run: would ..."), never done: a registered
 * action is not called and an unknown one is no error, a reclaimer is not run (at a tick or
 * at a checkpoint, where nothing is asked of the engine's thread either), no limit is set or
 * given back. Real LuaJIT, real files, real programs under the preload library and mmt-run;
 * each test makes tags of its own names, since tags live as long as the process.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <sys/stat.h>

#include "policyutil.h"
#include "procutil.h"

static const mmt_policy_options_t dry = {.dry_run = 1};

/* The level of the first message containing `needle`, or -1. */
static int log_level_of(captured_log_t *c, const char *needle)
{
    int level = -1;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < c->count && level < 0; i++)
        if (strstr(c->lines[i], needle)) level = c->levels[i];
    pthread_mutex_unlock(&c->lock);
    return level;
}

#define assert_not_logged(c, needle)                                                       \
    do {                                                                                   \
        if (log_count((c), (needle)) != 0) {                                               \
            log_dump(c);                                                                   \
            fail_msg("logged, and should not have been: \"%s\"", (needle));                \
        }                                                                                  \
    } while (0)

/* ---- A host action and a reclaimer that count their calls --------------------------------- */

static atomic_int shed_calls;
static atomic_llong shed_arg;

static int64_t shed(int64_t arg, void *ud)
{
    (void)ud;
    atomic_fetch_add(&shed_calls, 1);
    atomic_store(&shed_arg, arg);
    return 42;
}

enum { POOL_MAX = 256 };

/* Blocks of one size in one tag, and a reclaimer that frees them; `held` makes a call wait
 * at its start (10 s at most), so that a reclaim that ran would keep the engine busy. */
typedef struct pool {
    mmt_tag_t tag;
    void *blocks[POOL_MAX];
    size_t n, block;
    atomic_int calls;
    atomic_bool hold;
    int id;
} pool_t;

static size_t pool_reclaim(size_t wanted, void *arg)
{
    pool_t *p = arg;
    atomic_fetch_add(&p->calls, 1);
    double end = now_seconds() + 10;
    while (atomic_load(&p->hold) && now_seconds() < end) sleep_ms(1);
    size_t freed = 0;
    while (p->n > 0 && freed < wanted) {
        mmt_free(p->blocks[--p->n]);
        freed += p->block;
    }
    return freed;
}

static void pool_open(pool_t *p, mmt_tag_t tag, size_t block, size_t count, const char *name)
{
    memset(p, 0, sizeof *p);
    p->tag = tag;
    p->block = block;
    atomic_init(&p->calls, 0);
    atomic_init(&p->hold, false);
    assert_true(count <= POOL_MAX);
    for (; p->n < count; p->n++) p->blocks[p->n] = mmt_malloc_in(tag, block);
    p->id = mmt_reclaimer_add(tag, name, 0, pool_reclaim, p);
    assert_true(p->id > 0);
}

static void pool_close(pool_t *p)
{
    atomic_store(&p->hold, false);
    assert_int_equal(mmt_reclaimer_remove(p->id), 0);
    while (p->n > 0) mmt_free(p->blocks[--p->n]);
}

/* ---- mmt.call --------------------------------------------------------------------------- */

static const char call_policy[] =
    "local mmt = require 'mmt'\n"
    "mmt.rule { name = 'calls', when = function(m) return true end, fire = function(m)\n"
    "    local known = mmt.call('shed', 1048576)\n"
    "    mmt.log('info', 'KNOWN %s', tostring(known))\n"
    "    local unknown = mmt.call('no-such-action', 2.9)\n"
    "    mmt.log('info', 'UNKNOWN %s', tostring(unknown))\n"
    "  end }\n";

static void test_dryrun_call_runs_no_action_and_an_unknown_one_is_no_error(void **state)
{
    (void)state;
    atomic_store(&shed_calls, 0);
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(&dry, log);
    assert_int_equal(mmt_policy_action(p, "shed", shed, NULL), 0);
    load_text(p, "dry_call.lua", call_policy);
    mmt_mem_checkpoint();
    assert_logged(log, "dry_call.lua:3: dry run: would call shed(1048576)");
    assert_logged(log, "dry_call.lua:5: dry run: would call no-such-action(2)");
    assert_int_equal(log_level_of(log, "dry run: would call shed"), MMT_LOG_INFO);
    assert_logged(log, "KNOWN 0");
    assert_logged(log, "UNKNOWN 0");
    assert_int_equal(atomic_load(&shed_calls), 0);
    assert_int_equal(log_level_count(log, MMT_LOG_ERROR), 0);
    assert_int_equal(log_level_count(log, MMT_LOG_WARN), 0);
    mmt_policy_free(p);

    /* The same policy, not a dry run: the action runs, and the unknown one is the error
     * it always was. */
    log_clear(log);
    p = new_engine(NULL, log);
    assert_int_equal(mmt_policy_action(p, "shed", shed, NULL), 0);
    load_text(p, "dry_call.lua", call_policy);
    mmt_mem_checkpoint();
    assert_int_equal(atomic_load(&shed_calls), 1);
    assert_int_equal(atomic_load(&shed_arg), 1048576);
    assert_logged(log, "KNOWN 42");
    assert_logged(log, "mmt.call: no host action named \"no-such-action\"");
    assert_not_logged(log, "dry run");
    mmt_policy_free(p);
    free_log(log);
}

/* ---- mmt.reclaim and mmt.trim ------------------------------------------------------------- */

static void test_dryrun_reclaim_and_trim_on_the_engines_thread_run_nothing(void **state)
{
    (void)state;
    mmt_tag_t tag = new_tag("dr-flows", MMT_TAG_ROOT);
    pool_t pool;
    pool_open(&pool, tag, 64 * 1024, 160, "dr-flows-pool"); /* 10 MiB */
    uint64_t held = tag_in_use(tag);
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 10, .dry_run = 1};
    mmt_policy_t *p = new_engine(&o, log);
    load_text(p, "dry_tick.lua",
              "local mmt = require 'mmt'\n"
              "local done = false\n"
              "mmt.every(0.01, function(m)\n"
              "  if done then return end\n"
              "  done = true\n"
              "  local a, why = mmt.reclaim('dr-flows', 8 * mmt.MiB)\n"
              "  local b = mmt.reclaim('', 1.5 * mmt.MiB)\n"
              "  local c = mmt.reclaim('dr-flows', 0)\n"
              "  local d = mmt.reclaim('dr-flows', math.huge)\n"
              "  local t, twhy = mmt.trim()\n"
              "  mmt.log('info', 'GOT %s %s %s %s %s %s %s', tostring(a), tostring(why),\n"
              "          tostring(b), tostring(c), tostring(d), tostring(t), tostring(twhy))\n"
              "end)\n");
    if (!wait_for_log(log, "GOT ", 5000)) {
        log_dump(log);
        fail_msg("the task did not run");
    }
    assert_logged(log, "GOT 0 nil 0 0 0 0 nil");
    assert_logged(log, "dry_tick.lua:6: dry run: would reclaim 8 MiB of tag \"dr-flows\"");
    assert_logged(log, "dry_tick.lua:7: dry run: would reclaim 1.5 MiB of the whole process");
    assert_logged(log, "dry_tick.lua:9: dry run: would reclaim as much as it can of tag "
                       "\"dr-flows\"");
    assert_logged(log, "dry_tick.lua:10: dry run: would trim");
    assert_int_equal(log_count(log, "dry run: would reclaim"), 3); /* 0 asks nothing */
    assert_int_equal(log_level_of(log, "dry run: would trim"), MMT_LOG_INFO);
    assert_int_equal(atomic_load(&pool.calls), 0);
    assert_int_equal(tag_in_use(tag), held);
    assert_int_equal(log_level_count(log, MMT_LOG_ERROR), 0);
    mmt_policy_free(p);
    assert_not_logged(log, "reclaim for "); /* no report: nothing reclaimed */
    pool_close(&pool);
    free_log(log);
}

static void test_dryrun_reclaim_and_trim_at_a_checkpoint_give_0_and_ask_the_thread_nothing(void **state)
{
    (void)state;
    mmt_tag_t tag = new_tag("dr-defer", MMT_TAG_ROOT);
    pool_t pool;
    pool_open(&pool, tag, 4096, 16, "dr-defer-pool");
    uint64_t held = tag_in_use(tag);
    /* A reclaim that ran would hold the engine's thread, and with it the next checkpoint. */
    atomic_store(&pool.hold, true);
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 60000, .dry_run = 1}; /* a thread, no tick */
    mmt_policy_t *p = new_engine(&o, log);
    load_text(p, "dry_defer.lua",
              "local mmt = require 'mmt'\n"
              "local n = 0\n"
              "mmt.rule { name = 'defer', when = function(m)\n"
              "    n = n + 1\n"
              "    local freed, why = mmt.reclaim('dr-defer', 8192)\n"
              "    local trimmed, trim_why = mmt.trim()\n"
              "    mmt.log('info', 'EVAL%d %s %s %s %s', n, tostring(freed), tostring(why),\n"
              "            tostring(trimmed), tostring(trim_why))\n"
              "    return false end, fire = function() end }\n");
    mmt_mem_checkpoint();
    assert_logged(log, "EVAL1 0 nil 0 nil");
    assert_logged(log, "dry_defer.lua:5: dry run: would reclaim 8 KiB of tag \"dr-defer\"");
    assert_logged(log, "dry_defer.lua:6: dry run: would trim");
    /* Nothing waits for the thread: the next checkpoint evaluates at once. */
    mmt_mem_checkpoint();
    assert_logged(log, "EVAL2 0 nil 0 nil");
    sleep_ms(200); /* time for the thread to have run anything asked of it */
    assert_int_equal(atomic_load(&pool.calls), 0);
    assert_int_equal(tag_in_use(tag), held);
    mmt_policy_free(p);
    assert_not_logged(log, "reclaim for ");
    assert_not_logged(log, "trim asked at a checkpoint");
    assert_not_logged(log, "not run");
    assert_int_equal(log_level_count(log, MMT_LOG_ERROR), 0);
    pool_close(&pool);
    free_log(log);
}

/* ---- mmt.limit ------------------------------------------------------------------------------ */

static void test_dryrun_limit_sets_nothing_through_reloads_and_free(void **state)
{
    (void)state;
    mmt_tag_t cache = new_tag("dr-cache", MMT_TAG_ROOT);
    mmt_tag_t free_tag = new_tag("dr-unlimited", MMT_TAG_ROOT);
    assert_int_equal(mmt_limit_set(cache, 1 << 20), 0); /* the program's */
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(&dry, log);
    const char *path = policy_path("dry_limit.lua");
    write_in_place(path, "local mmt = require 'mmt'\n"
                         "mmt.limit('dr-cache', 64 * mmt.MiB)\n"
                         "mmt.limit('dr-unlimited', 3 * mmt.MiB)\n"
                         "mmt.limit('', nil)\n"
                         "mmt.rule { name = 'read', when = function(m)\n"
                         "    mmt.log('info', 'LIMITS %s %s', tostring(m.tags['dr-cache'].limit),\n"
                         "            tostring(m.tags['dr-unlimited'].limit))\n"
                         "    return false end, fire = function() end }\n");
    assert_int_equal(mmt_policy_load(p, path), 0);
    assert_logged(log, "dry_limit.lua:2: dry run: would set the limit on tag \"dr-cache\" to "
                       "64 MiB (now 1 MiB)");
    assert_logged(log, "dry_limit.lua:3: dry run: would set the limit on tag \"dr-unlimited\" "
                       "to 3 MiB (now none)");
    assert_logged(log, "dry_limit.lua:4: dry run: would remove the limit on the process (now "
                       "none)");
    assert_int_equal(log_level_of(log, "dry run: would set the limit"), MMT_LOG_INFO);
    assert_int_equal(mmt_limit_get(cache), 1 << 20);
    assert_int_equal(mmt_limit_get(free_tag), 0);
    assert_int_equal(mmt_limit_get(MMT_TAG_ROOT), 0);
    mmt_mem_checkpoint();
    assert_logged(log, "LIMITS 1048576 nil"); /* the real limits */

    /* Still declared as ever: a second limit on a tag is the load error it always is. */
    write_in_place(path, "local mmt = require 'mmt'\n"
                         "mmt.limit('dr-cache', 1)\n"
                         "mmt.limit('dr-cache', 2)\n");
    assert_int_equal(mmt_policy_reload(p), MMT_ELOAD);
    assert_non_null(strstr(mmt_policy_error(p), "is limited already"));

    assert_not_logged(log, " set to "); /* the real switch's words */

    /* A reload that drops a limit gives nothing back, and one that keeps it sets nothing;
     * the program's change meanwhile stays. */
    assert_int_equal(mmt_limit_set(cache, 2 << 20), 0);
    log_clear(log);
    write_in_place(path, "local mmt = require 'mmt'\n"
                         "mmt.limit('dr-unlimited', 5 * mmt.MiB)\n");
    assert_int_equal(mmt_policy_reload(p), 0);
    assert_logged(log, "dry run: would set the limit on tag \"dr-unlimited\" to 5 MiB (now none)");
    assert_not_logged(log, "dr-cache");
    assert_int_equal(mmt_limit_get(cache), 2 << 20);
    assert_int_equal(mmt_limit_get(free_tag), 0);
    mmt_policy_free(p);
    assert_int_equal(mmt_limit_get(cache), 2 << 20);
    assert_int_equal(mmt_limit_get(free_tag), 0);
    assert_not_logged(log, " set to ");  /* the real switch's words */
    assert_not_logged(log, " back to ");
    mmt_limit_set(cache, 0);
    free_log(log);
}

static void test_dryrun_limit_leaves_another_engines_limit_alone(void **state)
{
    (void)state;
    mmt_tag_t tag = new_tag("dr-shared", MMT_TAG_ROOT);
    captured_log_t *log = new_log();
    mmt_policy_t *real = new_engine(NULL, log);
    mmt_policy_t *dry_engine = new_engine(&dry, log);
    load_text(real, "real_limit.lua", "local mmt = require 'mmt'\nmmt.limit('dr-shared', 5 * mmt.MiB)\n");
    assert_int_equal(mmt_limit_get(tag), 5 << 20);
    load_text(dry_engine, "dry_shared.lua", "local mmt = require 'mmt'\nmmt.limit('dr-shared', 7 * mmt.MiB)\n");
    assert_logged(log, "dry run: would set the limit on tag \"dr-shared\" to 7 MiB (now 5 MiB)");
    assert_int_equal(mmt_limit_get(tag), 5 << 20);
    /* The dry run never owned it: freed first, it gives back nothing; the real engine
     * then gives back its own, to none. */
    mmt_policy_free(dry_engine);
    assert_int_equal(mmt_limit_get(tag), 5 << 20);
    mmt_policy_free(real);
    assert_int_equal(mmt_limit_get(tag), 0);
    free_log(log);
}

/* ---- Rules and the event function ----------------------------------------------------------- */

static atomic_int fired_events, resolved_events;

static void count_events(const char *rule, int fired, const mmt_meminfo_t *m, void *ud)
{
    (void)m;
    (void)ud;
    if (strcmp(rule, "dr-big") != 0) return;
    atomic_fetch_add(fired ? &fired_events : &resolved_events, 1);
}

static void test_dryrun_rules_fire_and_resolve_and_the_event_function_is_told(void **state)
{
    (void)state;
    mmt_tag_t tag = new_tag("dr-rule", MMT_TAG_ROOT);
    atomic_store(&shed_calls, 0);
    atomic_store(&fired_events, 0);
    atomic_store(&resolved_events, 0);
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(&dry, log);
    assert_int_equal(mmt_policy_action(p, "shed", shed, NULL), 0);
    mmt_policy_set_event(p, count_events, NULL);
    load_text(p, "dry_rule.lua",
              "local mmt = require 'mmt'\n"
              "mmt.rule { name = 'dr-big', metric = 'in_use', tag = 'dr-rule', above = 64 * mmt.KiB,\n"
              "  fire = function(m)\n"
              "    mmt.log('info', 'FIRE %s', tostring(mmt.call('shed', m.tags['dr-rule'].in_use)))\n"
              "  end,\n"
              "  resolve = function(m)\n"
              "    mmt.log('info', 'RESOLVE %s', tostring(mmt.reclaim('dr-rule', 4096)))\n"
              "  end }\n");
    void *block = mmt_malloc_in(tag, 100000);
    mmt_mem_checkpoint();
    assert_logged(log, "FIRE 0");
    assert_logged(log, "dry_rule.lua:4: dry run: would call shed(100000)");
    assert_int_equal(atomic_load(&fired_events), 1);
    assert_int_equal(atomic_load(&resolved_events), 0);
    mmt_free(block);
    mmt_mem_checkpoint();
    assert_logged(log, "RESOLVE 0");
    assert_logged(log, "dry_rule.lua:7: dry run: would reclaim 4 KiB of tag \"dr-rule\"");
    assert_int_equal(atomic_load(&fired_events), 1);
    assert_int_equal(atomic_load(&resolved_events), 1);
    assert_int_equal(atomic_load(&shed_calls), 0);
    assert_int_equal(log_level_count(log, MMT_LOG_ERROR), 0);
    mmt_policy_free(p);
    free_log(log);
}

/* ---- systemd's memory pressure watch -------------------------------------------------------- */

/* Base64 of "some 100000 2000000" with its NUL, as systemd writes it. */
static const char trigger_b64[] = "c29tZSAxMDAwMDAgMjAwMDAwMAA=";

static void test_dryrun_systemd_watch_without_a_rule_says_it_would_trim(void **state)
{
    (void)state;
    char fifo[256];
    snprintf(fifo, sizeof fifo, "%s/pressure.fifo", test_dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    captured_log_t *log = new_log();
    setenv("MEMORY_PRESSURE_WATCH", fifo, 1);
    setenv("MEMORY_PRESSURE_WRITE", trigger_b64, 1);
    mmt_policy_options_t o = {.interval_ms = 100, .dry_run = 1};
    mmt_policy_t *p = new_engine(&o, log);
    unsetenv("MEMORY_PRESSURE_WATCH");
    unsetenv("MEMORY_PRESSURE_WRITE");
    load_text(p, "dry_none.lua", "local mmt = require 'mmt'\n");
    char want[400];
    snprintf(want, sizeof want, "memory pressure: watching $MEMORY_PRESSURE_WATCH=%s", fifo);
    assert_true(wait_for_log(log, want, 3000));
    int w = open(fifo, O_WRONLY | O_NONBLOCK);
    assert_true(w >= 0);
    assert_int_equal(write(w, "x", 1), 1);
    snprintf(want, sizeof want, "memory pressure reported by $MEMORY_PRESSURE_WATCH (%s), and "
                                "no rule \"memory-pressure\": dry run: would trim", fifo);
    if (!wait_for_log(log, want, 3000)) {
        log_dump(log);
        fail_msg("the report was not said");
    }
    assert_int_equal(log_level_of(log, want), MMT_LOG_INFO);
    assert_not_logged(log, "trimmed");
    close(w);
    mmt_policy_free(p);
    unlink(fifo);
    free_log(log);
}

/* ---- Real programs: the preload library and mmt-run ------------------------------------------ */

static char bin_dir[PATH_MAX];

static int setup(void **state)
{
    if (make_test_dir(state) != 0) return -1;
    return test_bin_dir(bin_dir, sizeof bin_dir) ? 0 : -1;
}

/* A policy that acts at load (a limit), in a task on the engine's thread (a host action
 * mmt-run never registers, and a reclaim) and in a rule, at whichever checkpoint or tick
 * finds 16 MiB in use (a reclaim and a trim); and a Python program that holds 32 MiB
 * (PYTHONMALLOC=malloc: every block through malloc) for 0.5 s and exits 7. */
static void write_program_and_policy(char *policy, char *program, size_t len)
{
    snprintf(policy, len, "%s/acts.lua", test_dir);
    snprintf(program, len, "%s/holds.py", test_dir);
    write_in_place(policy, "local mmt = require 'mmt'\n"
                           "mmt.limit('', 1024 * mmt.GiB)\n"
                           "local done = false\n"
                           "mmt.every(0.02, function(m)\n"
                           "  if done then return end\n"
                           "  done = true\n"
                           "  local shed = mmt.call('shed', 1048576)\n"
                           "  local freed = mmt.reclaim('', 8 * mmt.MiB)\n"
                           "  mmt.log('info', 'TASK %s %s', tostring(shed), tostring(freed))\n"
                           "end)\n"
                           "mmt.rule { name = 'big', when = function(m) return m.in_use > 16 * mmt.MiB end,\n"
                           "  fire = function(m)\n"
                           "    mmt.log('info', 'RULE %s %s', tostring(mmt.reclaim('', 4 * mmt.MiB)),\n"
                           "            tostring(mmt.trim()))\n"
                           "  end }\n");
    write_in_place(program, "import time\n"
                            "held = [bytearray(1 << 20) for _ in range(32)]\n"
                            "time.sleep(0.5)\n"
                            "raise SystemExit(7)\n");
}

/* What a dry run of acts.lua says, in the output `out`. */
static void assert_said_dry_run(const char *out)
{
    assert_contains(out, "acts.lua:2: dry run: would set the limit on the process to 1 TiB (now none)");
    assert_contains(out, "acts.lua:7: dry run: would call shed(1048576)");
    assert_contains(out, "acts.lua:8: dry run: would reclaim 8 MiB of the whole process");
    assert_contains(out, ": TASK 0 0\n");
    assert_contains(out, "acts.lua:13: dry run: would reclaim 4 MiB of the whole process");
    assert_contains(out, "acts.lua:14: dry run: would trim");
    assert_contains(out, ": RULE 0 0\n");
    if (strstr(out, "no host action")) fail_msg("an error in a dry run:\n%s", out);
}

static void test_dryrun_mmt_run_says_what_the_policy_would_do_and_returns_the_status(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    char policy[PATH_MAX], program[PATH_MAX], mmt_run[PATH_MAX + 16];
    static char out[65536];
    write_program_and_policy(policy, program, sizeof policy);
    snprintf(mmt_run, sizeof mmt_run, "%s/mmt-run", bin_dir);
    const char *dry_argv[] = {"env", "PYTHONMALLOC=malloc", mmt_run, "--dry-run", "--policy",
                              policy, "--interval", "20", "--", "/usr/bin/python3", program,
                              NULL};
    assert_int_equal(run_to_end(dry_argv, out, sizeof out, 60), 7);
    assert_said_dry_run(out);
    assert_contains(out, "mmt policy [info] pid ");
    assert_contains(out, "mmt-run: /usr/bin/python3: allocated ");

    /* Without --dry-run the same policy acts: mmt.call is an error, no host action being
     * registered, whatever MMT_DRY_RUN mmt-run was given (the command line decides). */
    const char *real_argv[] = {"env", "PYTHONMALLOC=malloc", "MMT_DRY_RUN=1", mmt_run, "--policy",
                               policy, "--interval", "20", "--", "/usr/bin/python3", program,
                               NULL};
    assert_int_equal(run_to_end(real_argv, out, sizeof out, 60), 7);
    assert_contains(out, "acts.lua:7: mmt.call: no host action named \"shed\"");
    if (strstr(out, "dry run")) fail_msg("a dry run without --dry-run:\n%s", out);
}

static void test_dryrun_mmt_run_loads_the_policy_as_the_program_will_run_it(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    /* A file whose own run calls a host action: mmt-run's check of it refuses it as the
     * program's load would, unless both are dry runs. */
    char policy[PATH_MAX], mmt_run[PATH_MAX + 16];
    static char out[16384];
    snprintf(policy, sizeof policy, "%s/at_load.lua", test_dir);
    write_in_place(policy, "local mmt = require 'mmt'\nmmt.call('shed', 5)\n");
    snprintf(mmt_run, sizeof mmt_run, "%s/mmt-run", bin_dir);
    const char *refused[] = {mmt_run, "--policy", policy, "--", "sh", "-c", "echo ran; exit 3",
                             NULL};
    assert_int_equal(run_to_end(refused, out, sizeof out, 30), 2);
    assert_contains(out, "at_load.lua:2: mmt.call: no host action named \"shed\"");
    if (strstr(out, "ran\n")) fail_msg("the program ran:\n%s", out);
    const char *dry_run[] = {mmt_run, "--dry-run", "--policy", policy, "--", "sh", "-c",
                             "echo ran; exit 3", NULL};
    assert_int_equal(run_to_end(dry_run, out, sizeof out, 30), 3);
    assert_contains(out, "ran\n");
    assert_contains(out, "at_load.lua:2: dry run: would call shed(5)");
}

static void test_dryrun_preload_with_mmt_dry_run_in_the_environment(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    char policy[PATH_MAX], program[PATH_MAX], preload[PATH_MAX + 64], policy_env[PATH_MAX + 16];
    static char out[65536];
    write_program_and_policy(policy, program, sizeof policy);
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s/libmmtmem-preload.so", bin_dir);
    snprintf(policy_env, sizeof policy_env, "MMT_POLICY=%s", policy);
    const char *argv[] = {"env", preload, policy_env, "MMT_INTERVAL=20", "PYTHONMALLOC=malloc",
                          "MMT_DRY_RUN=1", "/usr/bin/python3", program, NULL};
    assert_int_equal(run_to_end(argv, out, sizeof out, 60), 7);
    assert_said_dry_run(out);
    if (strstr(out, "MMT_DRY_RUN")) fail_msg("1 was said to be wrong:\n%s", out);

    /* Any other value but 0 is a dry run too, and said. */
    argv[5] = "MMT_DRY_RUN=yes";
    assert_int_equal(run_to_end(argv, out, sizeof out, 60), 7);
    assert_contains(out, "mmt: MMT_DRY_RUN=yes: not 0 or 1; using 1, a dry run\n");
    assert_said_dry_run(out);

    /* 0 is no dry run: the policy acts, and its call of an action no one registered fails. */
    argv[5] = "MMT_DRY_RUN=0";
    assert_int_equal(run_to_end(argv, out, sizeof out, 60), 7);
    assert_contains(out, "acts.lua:7: mmt.call: no host action named \"shed\"");
    if (strstr(out, "dry run")) fail_msg("a dry run with MMT_DRY_RUN=0:\n%s", out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dryrun_call_runs_no_action_and_an_unknown_one_is_no_error),
        cmocka_unit_test(test_dryrun_reclaim_and_trim_on_the_engines_thread_run_nothing),
        cmocka_unit_test(test_dryrun_reclaim_and_trim_at_a_checkpoint_give_0_and_ask_the_thread_nothing),
        cmocka_unit_test(test_dryrun_limit_sets_nothing_through_reloads_and_free),
        cmocka_unit_test(test_dryrun_limit_leaves_another_engines_limit_alone),
        cmocka_unit_test(test_dryrun_rules_fire_and_resolve_and_the_event_function_is_told),
        cmocka_unit_test(test_dryrun_systemd_watch_without_a_rule_says_it_would_trim),
        cmocka_unit_test(test_dryrun_mmt_run_says_what_the_policy_would_do_and_returns_the_status),
        cmocka_unit_test(test_dryrun_mmt_run_loads_the_policy_as_the_program_will_run_it),
        cmocka_unit_test(test_dryrun_preload_with_mmt_dry_run_in_the_environment),
    };
    return cmocka_run_group_tests_name("dryrun", tests, setup, remove_test_dir);
}

/*
 * Hot reload and the engine under threads: reload by rename and in place (watched and
 * explicit), failed reloads keeping the running policy, rule state carried over by name,
 * two engines, a busy engine never blocking allocation, the shipped policies, and a
 * stress of allocating threads while the timer evaluates and the file keeps changing.
 */
#include <limits.h>
#include <semaphore.h>
#include <stdatomic.h>

#include "engine.h"
#include "policyutil.h"

/* A policy whose one rule, named `tag`, fires at its first evaluation and logs `tag`. */
static void policy_saying(char *buf, size_t len, const char *tag)
{
    snprintf(buf, len,
             "local mmt = require 'mmt'\n"
             "mmt.rule { name = '%s', when = function() return true end,\n"
             "  fire = function() mmt.log('info', 'ACTIVE %s') end }\n",
             tag, tag);
}

static void check_watched_reload(void (*write)(const char *, const char *), const char *file)
{
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 20, .watch = 1};
    mmt_policy_t *p = new_engine(&o, log);
    char text[512];
    const char *path = policy_path(file);
    policy_saying(text, sizeof text, "first");
    write(path, text);
    assert_int_equal(mmt_policy_load(p, path), 0);
    assert_true(wait_for_log(log, "ACTIVE first", 2000));

    for (int round = 0; round < 5; round++) {
        char tag[32], active[48];
        snprintf(tag, sizeof tag, "edit%d", round);
        snprintf(active, sizeof active, "ACTIVE %s", tag);
        policy_saying(text, sizeof text, tag);
        double t0 = now_seconds();
        write(path, text);
        if (!wait_for_log(log, active, 3000)) {
            log_dump(log);
            fail_msg("the edit \"%s\" was not picked up", tag);
        }
        double latency = log_time(log, active) - t0;
        if (latency > 1.0) fail_msg("picked up after %.3f s, more than one second", latency);
    }
    mmt_policy_free(p);
    free_log(log);
}

static void test_reload_watch_picks_up_an_atomic_rename(void **state)
{
    (void)state;
    check_watched_reload(write_by_rename, "renamed.lua");
}

static void test_reload_watch_picks_up_a_write_in_place(void **state)
{
    (void)state;
    check_watched_reload(write_in_place, "in_place.lua");
}

/* An engine whose watcher polls for its first 400 ms and then switches to inotify (as
 * the preload library's does for its first second): edits are seen in both phases, and
 * one made just before the switch is not lost in it. */
static void test_reload_watch_polls_then_switches_to_inotify(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 20, .watch = 1};
    mmt_policy_t *p = mmt__policy_new(&o, 400);
    assert_non_null(p);
    mmt_policy_set_log(p, capture, log);
    mmt_mem_set_checkpoint(0);
    char text[512];
    const char *path = policy_path("delayed.lua");
    policy_saying(text, sizeof text, "first");
    write_by_rename(path, text);
    assert_int_equal(mmt_policy_load(p, path), 0);
    assert_true(wait_for_log(log, "ACTIVE first", 2000));

    static const struct {
        unsigned at_ms; /* since the engine was made, roughly */
        const char *tag;
    } edits[] = {{100, "polled"}, {390, "at-the-switch"}, {700, "inotify"}, {900, "inotify-again"}};
    double made = now_seconds();
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        double wait = made + edits[i].at_ms / 1000.0 - now_seconds();
        if (wait > 0) sleep_ms((unsigned)(wait * 1000));
        char active[64];
        snprintf(active, sizeof active, "ACTIVE %s", edits[i].tag);
        policy_saying(text, sizeof text, edits[i].tag);
        write_in_place(path, text);
        if (!wait_for_log(log, active, 3000)) {
            log_dump(log);
            fail_msg("the edit \"%s\" was not picked up", edits[i].tag);
        }
    }
    mmt_policy_free(p);
    free_log(log);
}

/* An edit made right after the load, before the watcher's thread has moved to the new
 * file, is not lost: the watcher compares the file with what the load read. */
static void test_reload_edit_right_after_the_load_is_seen(void **state)
{
    (void)state;
    for (int round = 0; round < 10; round++) {
        captured_log_t *log = new_log();
        mmt_policy_options_t o = {.interval_ms = 0, .watch = 1};
        mmt_policy_t *p = new_engine(&o, log);
        char name[32], text[128], tag[32];
        snprintf(name, sizeof name, "quick%d.lua", round);
        snprintf(tag, sizeof tag, "QUICK EDIT %d", round);
        const char *path = policy_path(name);
        write_in_place(path, "local mmt = require 'mmt'\n");
        assert_int_equal(mmt_policy_load(p, path), 0);
        snprintf(text, sizeof text, "local mmt = require 'mmt'\nmmt.log('info', '%s')\n", tag);
        write_by_rename(path, text);
        if (!wait_for_log(log, tag, 2000)) {
            log_dump(log);
            fail_msg("round %d: the edit right after the load was lost", round);
        }
        mmt_policy_free(p);
        free_log(log);
    }
}

static void test_reload_broken_edit_keeps_the_running_policy(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.watch = 1, .interval_ms = 20};
    mmt_policy_t *p = new_engine(&o, log);
    const char *path = policy_path("keep.lua");
    write_in_place(path, "local mmt = require 'mmt'\nlocal n = 0\n"
                         "mmt.rule { name = 'tick', when = function() n = n + 1 return n % 2 == 0 end,\n"
                         "  fire = function() mmt.log('info', 'OLD RULE') end }\n");
    assert_int_equal(mmt_policy_load(p, path), 0);
    assert_true(wait_for_log(log, "OLD RULE", 2000));
    sleep_ms(50);

    write_by_rename(path, "local mmt = require 'mmt'\nmmt.rule { name = 'x',\n  when = \n");
    assert_true(wait_for_log(log, "(the previous policy keeps running)", 3000));
    assert_logged(log, "keep.lua:4: ");
    int before = log_count(log, "OLD RULE");
    sleep_ms(200);
    assert_true(log_count(log, "OLD RULE") > before); /* still evaluated by the timer */

    /* The same through the API. */
    assert_int_equal(mmt_policy_reload(p), MMT_ELOAD);
    assert_contains(mmt_policy_error(p), "keep.lua:4: ");
    mmt_policy_free(p);
    free_log(log);
}

static void test_reload_state_carries_over_by_rule_name(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    uint64_t base = meminfo_now().in_use;
    const char *path = policy_path("carry.lua");
    char text[1024];
    /* The `when` rule fires at every checkpoint where in_use rose: it logs nothing, so that
     * the log's lines are left for the reloads it counts. */
    const char *fmt = "local mmt = require 'mmt'\n"
                      "mmt.rule { name = 'big', metric = 'in_use', above = %llu,\n"
                      "  fire = function() mmt.log('warn', '%s FIRE') end,\n"
                      "  resolve = function() mmt.log('info', '%s RESOLVE') end }\n"
                      "mmt.rule { name = '%s', when = function() return true end,\n"
                      "  fire = function() mmt.log('info', '%s NEWRULE') end }\n";
    unsigned long long mark = (unsigned long long)(base + 500000);
    snprintf(text, sizeof text, fmt, mark, "V1", "V1", "v1", "V1");
    write_in_place(path, text);
    assert_int_equal(mmt_policy_load(p, path), 0);

    void *block = mmt_malloc(600000);
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "V1 FIRE"), 1);

    snprintf(text, sizeof text, fmt, mark, "V2", "V2", "v2", "V2");
    write_by_rename(path, text);
    assert_int_equal(mmt_policy_reload(p), 0);
    mmt_mem_checkpoint();
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "V2 FIRE"), 0);  /* was firing: stays firing */
    assert_int_equal(log_count(log, "V2 NEWRULE"), 1); /* a new name starts fresh */

    mmt_free(block);
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "V2 RESOLVE"), 1); /* resolved by the new policy */
    assert_int_equal(log_count(log, "V1 RESOLVE"), 0);
    mmt_policy_free(p);
    free_log(log);
}

/* ---- Threads ------------------------------------------------------------------------------ */

typedef struct gate {
    sem_t entered, release;
} gate_t;

static int64_t wait_at_gate(int64_t arg, void *ud)
{
    (void)arg;
    gate_t *g = ud;
    sem_post(&g->entered);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    return sem_timedwait(&g->release, &ts) == 0 ? 1 : 0;
}

/* An engine with a timer whose policy has one rule that calls the host action "gate"
 * and then logs `done`; returns once the timer thread is held inside that rule. */
static mmt_policy_t *engine_held_at_gate(captured_log_t *log, gate_t *g, const char *file,
                                         const char *done)
{
    /* The time held at the gate counts against the rule's budget: a generous one, so
     * that the rule is held, never stopped. */
    mmt_policy_options_t o = {.interval_ms = 10, .budget_ms = 20000};
    mmt_policy_t *p = new_engine(&o, log);
    sem_init(&g->entered, 0, 0);
    sem_init(&g->release, 0, 0);
    mmt_policy_action(p, "gate", wait_at_gate, g);
    char text[512];
    snprintf(text, sizeof text,
             "local mmt = require 'mmt'\n"
             "mmt.rule { name = 'g', when = function() return true end,\n"
             "  fire = function() mmt.log('info', '%s %%d', mmt.call('gate')) end }\n",
             done);
    const char *path = policy_path(file);
    write_in_place(path, text);
    assert_int_equal(mmt_policy_load(p, path), 0);
    sem_wait(&g->entered);
    return p;
}

static void free_gated(mmt_policy_t *p, gate_t *g, captured_log_t *log)
{
    mmt_policy_free(p);
    sem_destroy(&g->entered);
    sem_destroy(&g->release);
    free_log(log);
}

static void test_reload_busy_engine_never_blocks_allocation_elsewhere(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    gate_t g;
    mmt_policy_t *p = engine_held_at_gate(log, &g, "gate.lua", "GATE"); /* engine busy */

    /* Allocations crossing the checkpoint distance run the engine's hook, which must
     * find it busy and return. If it waited, this thread would never post the gate. */
    mmt_mem_set_checkpoint(4096);
    for (int i = 0; i < 2000; i++) mmt_free(mmt_malloc(8192));
    mmt_mem_set_checkpoint(0);
    sem_post(&g.release);
    assert_true(wait_for_log(log, "GATE 1", 5000)); /* released, not timed out */
    free_gated(p, &g, log);
}

static void *open_gate_later(void *arg)
{
    gate_t *g = arg;
    sleep_ms(100);
    sem_post(&g->release);
    return NULL;
}

static void test_reload_waits_for_a_running_rule_then_switches(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    gate_t g;
    mmt_policy_t *p = engine_held_at_gate(log, &g, "running.lua", "OLD DONE");
    const char *path = policy_path("running.lua");
    char text[512];
    policy_saying(text, sizeof text, "replacement");
    write_by_rename(path, text);
    /* Reload while the rule is held at the gate: the new file loads beside it, and the
     * switch waits until the rule has finished. */
    pthread_t opener;
    assert_int_equal(pthread_create(&opener, NULL, open_gate_later, &g), 0);
    assert_int_equal(mmt_policy_reload(p), 0);
    assert_int_equal(log_count(log, "OLD DONE"), 1); /* finished before the switch */
    pthread_join(opener, NULL);
    assert_true(wait_for_log(log, "ACTIVE replacement", 2000));
    free_gated(p, &g, log);
}

static void test_reload_two_engines_in_one_process(void **state)
{
    (void)state;
    captured_log_t *log_a = new_log(), *log_b = new_log();
    mmt_policy_t *a = new_engine(NULL, log_a);
    mmt_policy_t *b = new_engine(NULL, log_b);
    char text[512];
    policy_saying(text, sizeof text, "engine_a");
    write_in_place(policy_path("a.lua"), text);
    policy_saying(text, sizeof text, "engine_b");
    write_in_place(policy_path("b.lua"), text);
    assert_int_equal(mmt_policy_load(a, policy_path("a.lua")), 0);
    assert_int_equal(mmt_policy_load(b, policy_path("b.lua")), 0);
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log_a, "ACTIVE engine_a"), 1);
    assert_int_equal(log_count(log_b, "ACTIVE engine_b"), 1);
    assert_int_equal(log_count(log_a, "engine_b"), 0);
    mmt_policy_free(a);
    mmt_mem_checkpoint(); /* b alone still works */
    mmt_policy_free(b);
    free_log(log_a);
    free_log(log_b);
}

/* ---- Stress: allocation, timer and reload at once --------------------------------------------------- */

static atomic_bool stress_stop;

/* Blocks swapped between the threads: each one put here is freed by whichever thread
 * takes it out, often not the one that allocated it. */
enum { EXCHANGE = 256 };
static _Atomic(void *) exchange[EXCHANGE];

typedef struct allocator_thread {
    uint64_t seed;
    void *kept[512];
    uint64_t bytes_kept;
    long operations, swaps;
} allocator_thread_t;

static void *allocate_until_stopped(void *arg)
{
    allocator_thread_t *a = arg;
    while (!atomic_load(&stress_stop)) {
        for (int i = 0; i < 1000; i++) {
            a->seed = a->seed * 6364136223846793005ull + 1442695040888963407ull;
            size_t slot = (a->seed >> 33) % 512;
            size_t size = 16 + (a->seed >> 40) % 20000;
            if (i % 4 == 0) {
                void *mine = mmt_malloc(size);
                mmt_free(atomic_exchange(&exchange[slot % EXCHANGE], mine));
                a->swaps++;
            } else {
                mmt_free(a->kept[slot]);
                a->kept[slot] = mmt_malloc(size);
            }
            a->operations++;
        }
    }
    a->bytes_kept = 0;
    for (size_t i = 0; i < 512; i++) a->bytes_kept += mmt_size(a->kept[i]);
    return NULL;
}

static void test_reload_stress_cross_thread_frees_timer_and_reloads_keep_exact_counts(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 5, .watch = 1, .checkpoint_bytes = 64 * 1024};
    mmt_policy_t *p = mmt_policy_new(&o);
    mmt_policy_set_log(p, capture, log);
    mmt_mem_set_checkpoint(64 * 1024);
    const char *path = policy_path("stress.lua");
    /* The `when` rule fires at every checkpoint where in_use rose: it logs nothing, so that
     * the log's lines are left for the reloads it counts. */
    const char *fmt = "local mmt = require 'mmt'\n"
                      "mmt.rule { name = 'hw', metric = 'in_use', above = %d, below = %d,\n"
                      "  fire = function(m) local t = {} for i = 1, 100 do t[i] = i end end }\n"
                      "mmt.rule { name = 'w%d', when = function(m) return m.rate > 0 end,\n"
                      "  fire = function(m) local r = m.rate end }\n"
                      "mmt.every(0.01, function(m) local s = mmt.bytes(m.in_use) end)\n";
    char text[1024];
    snprintf(text, sizeof text, fmt, 4 << 20, 3 << 20, 0);
    write_in_place(path, text);
    assert_int_equal(mmt_policy_load(p, path), 0);

    mmt_meminfo_t before = meminfo_now();
    static allocator_thread_t threads[2];
    pthread_t t[2];
    atomic_store(&stress_stop, false);
    for (int i = 0; i < 2; i++) {
        memset(&threads[i], 0, sizeof threads[i]);
        threads[i].seed = 77 + (uint64_t)i;
        assert_int_equal(pthread_create(&t[i], NULL, allocate_until_stopped, &threads[i]), 0);
    }
    for (int round = 1; round <= 40; round++) {
        snprintf(text, sizeof text, fmt, (4 + round % 3) << 20, 3 << 20, round % 4);
        if (round % 2) write_by_rename(path, text);
        else write_in_place(path, text);
        if (round % 5 == 0) mmt_policy_reload(p);
        sleep_ms(15);
    }
    atomic_store(&stress_stop, true);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);

    mmt_meminfo_t after = meminfo_now();
    uint64_t swapped = 0;
    for (size_t k = 0; k < EXCHANGE; k++) swapped += mmt_size(atomic_load(&exchange[k]));
    assert_int_equal(after.in_use - before.in_use,
                     threads[0].bytes_kept + threads[1].bytes_kept + swapped);
    assert_true(threads[0].swaps > 0 && threads[1].swaps > 0);
    assert_true(log_count(log, "reloaded") >= 10);
    if (log_level_count(log, MMT_LOG_ERROR) != 0) {
        log_dump(log);
        fail_msg("errors were logged");
    }
    for (int i = 0; i < 2; i++)
        for (size_t k = 0; k < 512; k++) mmt_free(threads[i].kept[k]);
    for (size_t k = 0; k < EXCHANGE; k++) mmt_free(atomic_exchange(&exchange[k], NULL));
    assert_int_equal(meminfo_now().in_use, before.in_use);
    mmt_policy_free(p);
    mmt_mem_set_checkpoint(0);
    free_log(log);
}

/* ---- The shipped policies -------------------------------------------------------------------------- */

static int64_t shed_nothing(int64_t arg, void *ud)
{
    (void)ud;
    return arg / 2;
}

static void test_reload_every_shipped_policy_loads(void **state)
{
    (void)state;
    /* The tests live in build/<config>/; the policies in policies/ at the top. */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(n > 0);
    exe[n] = '\0';
    const char *names[] = {"high_water.lua", "growth.lua", "report.lua", "shed.lua",
                           "budget.lua"};
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 100};
    mmt_policy_t *p = new_engine(&o, log);
    mmt_policy_action(p, "shed", shed_nothing, NULL);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[PATH_MAX + 64];
        char *cut = strstr(exe, "/build/");
        assert_non_null(cut);
        snprintf(path, sizeof path, "%.*s/policies/%s", (int)(cut - exe), exe, names[i]);
        if (mmt_policy_load(p, path) != 0) fail_msg("%s: %s", names[i], mmt_policy_error(p));
        mmt_mem_checkpoint();
    }
    if (log_level_count(log, MMT_LOG_ERROR) != 0) {
        log_dump(log);
        fail_msg("errors were logged");
    }
    mmt_policy_free(p);
    free_log(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reload_watch_picks_up_an_atomic_rename),
        cmocka_unit_test(test_reload_watch_picks_up_a_write_in_place),
        cmocka_unit_test(test_reload_watch_polls_then_switches_to_inotify),
        cmocka_unit_test(test_reload_edit_right_after_the_load_is_seen),
        cmocka_unit_test(test_reload_broken_edit_keeps_the_running_policy),
        cmocka_unit_test(test_reload_state_carries_over_by_rule_name),
        cmocka_unit_test(test_reload_busy_engine_never_blocks_allocation_elsewhere),
        cmocka_unit_test(test_reload_waits_for_a_running_rule_then_switches),
        cmocka_unit_test(test_reload_two_engines_in_one_process),
        cmocka_unit_test(test_reload_stress_cross_thread_frees_timer_and_reloads_keep_exact_counts),
        cmocka_unit_test(test_reload_every_shipped_policy_loads),
    };
    return cmocka_run_group_tests_name("reload", tests, make_test_dir, remove_test_dir);
}

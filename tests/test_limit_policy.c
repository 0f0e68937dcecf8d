/*
 * Limits and reclaim in policies: mmt.limit (limits a policy owns, applied when the engine
 * switches to it and given back when a later policy or the engine's end drops them, with
 * engines sharing a tag), m.tags[path].limit and m.limit, mmt.reclaim running the
 * program's reclaimers (at once on the engine's thread; asked of that thread at an
 * allocation checkpoint), mmt.trim, the reclaim reports in the engines' logs, and
 * policies/budget.lua. Real LuaJIT, real files; tags live as long as the process, so each
 * test makes tags of its own names.
 */
#include <math.h>
#include <stdatomic.h>

#include "policyutil.h"

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

/* The number after `prefix` in the first message that starts with it, or NAN. */
static double logged_number(captured_log_t *c, const char *prefix)
{
    double v = NAN;
    size_t n = strlen(prefix);
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < c->count && isnan(v); i++)
        if (strncmp(c->lines[i], prefix, n) == 0) v = atof(c->lines[i] + n);
    pthread_mutex_unlock(&c->lock);
    return v;
}

/* ---- A part of the program that can give memory back ------------------------------------ */

enum { POOL_MAX = 1024, POOL_ASKS = 8 };

/* Blocks of one size in one tag, and a reclaimer that frees them, newest first. Its
 * fields are the reclaimer's to write; a test reads them after something the reclaimer's
 * thread did later and that the test waited for (a log line), or on the same thread. */
typedef struct pool {
    mmt_tag_t tag;
    size_t block;
    void *blocks[POOL_MAX];
    size_t n;
    size_t give_at_most; /* the reclaimer frees no more than this a call; 0: no cap */
    bool lie;            /* the reclaimer says it freed nothing, whatever it freed */
    int calls;
    size_t asked[POOL_ASKS]; /* what each of the first calls wanted */
    pthread_t thread;        /* the thread of the last call */
    atomic_bool hold;        /* while set, a call waits at its start (10 s at most) */
    atomic_bool holding;     /* a call is waiting so */
    int id;                  /* mmt_reclaimer_add's */
} pool_t;

static size_t pool_reclaim(size_t wanted, void *arg)
{
    pool_t *p = arg;
    if (atomic_load(&p->hold)) {
        atomic_store(&p->holding, true);
        double end = now_seconds() + 10;
        while (atomic_load(&p->hold) && now_seconds() < end) sleep_ms(1);
        atomic_store(&p->holding, false);
    }
    if (p->calls < POOL_ASKS) p->asked[p->calls] = wanted;
    p->calls++;
    p->thread = pthread_self();
    size_t freed = 0;
    while (p->n > 0 && freed < wanted && (!p->give_at_most || freed < p->give_at_most)) {
        mmt_free(p->blocks[--p->n]);
        freed += p->block;
    }
    return p->lie ? 0 : freed;
}

static void pool_open(pool_t *p, mmt_tag_t tag, size_t block, const char *name)
{
    memset(p, 0, sizeof *p);
    p->tag = tag;
    p->block = block;
    atomic_init(&p->hold, false);
    atomic_init(&p->holding, false);
    p->id = mmt_reclaimer_add(tag, name, 0, pool_reclaim, p);
    assert_true(p->id > 0);
}

/* Waits (10 s at most) until a call of the pool's reclaimer is held at its start. */
static bool pool_wait_held(pool_t *p)
{
    double end = now_seconds() + 10;
    while (!atomic_load(&p->holding) && now_seconds() < end) sleep_ms(1);
    return atomic_load(&p->holding);
}

/* Fills the pool until its tag's subtree holds at least `bytes` (read once: a reading
 * walks every thread's counts). */
static void pool_fill_to(pool_t *p, uint64_t bytes)
{
    uint64_t held = tag_in_use(p->tag);
    for (; held < bytes; held += p->block) {
        assert_true(p->n < POOL_MAX);
        p->blocks[p->n++] = mmt_malloc_in(p->tag, p->block);
    }
}

static void pool_close(pool_t *p)
{
    assert_int_equal(mmt_reclaimer_remove(p->id), 0);
    while (p->n > 0) mmt_free(p->blocks[--p->n]);
}

/* ---- mmt.limit: a policy's limits are its own --------------------------------------------- */

static void test_limit_policy_limit_sets_a_limit_the_program_sees_and_enforces(void **state)
{
    (void)state;
    mmt_tag_t tag = new_tag("lp-set", MMT_TAG_ROOT);
    mmt_tag_t inner = new_tag("inner", tag);
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    load_text(p, "limit_set.lua",
              "local mmt = require 'mmt'\n"
              "mmt.limit('lp-set', 3 * mmt.MiB)\n"
              "mmt.limit('lp-set/inner', 100000.75)\n" /* cut toward zero */
              "mmt.limit('', 1024 * mmt.GiB)\n");      /* "" is the whole process */
    assert_int_equal(mmt_limit_get(tag), 3 << 20);
    assert_int_equal(mmt_limit_get(inner), 100000);
    assert_int_equal(mmt_limit_get(MMT_TAG_ROOT), (uint64_t)1 << 40);
    assert_logged(log, "limit_set.lua:2: limit on tag \"lp-set\" set to 3 MiB (was none)");
    assert_logged(log, "limit on the process set to 1 TiB (was none)");
    assert_int_equal(log_level_of(log, "limit on tag \"lp-set/inner\" set to"), MMT_LOG_INFO);

    /* Enforced as a limit the program set: in_use may reach it, not pass it. */
    mmt_tag_t was = mmt_tag_switch(inner);
    void *over = mmt_try_malloc(100001);
    void *fits = mmt_try_malloc(100000);
    mmt_tag_switch(was);
    assert_null(over);
    assert_non_null(fits);
    mmt_free(fits);

    mmt_policy_free(p);
    assert_int_equal(mmt_limit_get(MMT_TAG_ROOT), 0);
    free_log(log);
}

static void test_limit_policy_reload_gives_back_the_limits_the_new_file_does_not_set(void **state)
{
    (void)state;
    mmt_tag_t a = new_tag("lp-reload-a", MMT_TAG_ROOT);
    mmt_tag_t b = new_tag("lp-reload-b", MMT_TAG_ROOT);
    mmt_tag_t c = new_tag("lp-reload-c", MMT_TAG_ROOT);
    assert_int_equal(mmt_limit_set(a, 1 << 20), 0); /* the program's own */
    assert_int_equal(mmt_limit_set(c, 7 << 20), 0);
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    const char *path = policy_path("limit_reload.lua");
    write_in_place(path, "local mmt = require 'mmt'\n"
                         "mmt.limit('lp-reload-a', 2 * mmt.MiB)\n"
                         "mmt.limit('lp-reload-b', 5 * mmt.MiB)\n"
                         "mmt.limit('lp-reload-c', nil)\n"); /* removes the program's */
    assert_int_equal(mmt_policy_load(p, path), 0);
    assert_int_equal(mmt_limit_get(a), 2 << 20);
    assert_int_equal(mmt_limit_get(b), 5 << 20);
    assert_int_equal(mmt_limit_get(c), 0);

    /* The same limits again: nothing changes, and what each gives back stays the same. */
    assert_int_equal(mmt_policy_reload(p), 0);
    assert_int_equal(mmt_limit_get(a), 2 << 20);
    assert_int_equal(mmt_limit_get(c), 0);

    write_in_place(path, "local mmt = require 'mmt'\n"
                         "mmt.limit('lp-reload-b', 6 * mmt.MiB)\n");
    assert_int_equal(mmt_policy_reload(p), 0);
    assert_int_equal(mmt_limit_get(a), 1 << 20); /* the program's, as before the policy */
    assert_int_equal(mmt_limit_get(b), 6 << 20);
    assert_int_equal(mmt_limit_get(c), 7 << 20);
    assert_logged(log, "limit on tag \"lp-reload-a\" back to 1 MiB (was 2 MiB): the policy no "
                       "longer sets it");
    assert_logged(log, "limit on tag \"lp-reload-c\" back to 7 MiB (was none)");

    write_in_place(path, "local mmt = require 'mmt'\n");
    assert_int_equal(mmt_policy_reload(p), 0);
    assert_int_equal(mmt_limit_get(b), 0); /* none before the policy set it */
    assert_int_equal(mmt_limit_get(a), 1 << 20);

    mmt_policy_free(p);
    assert_int_equal(mmt_limit_get(a), 1 << 20);
    assert_int_equal(mmt_limit_get(c), 7 << 20);
    mmt_limit_set(a, 0);
    mmt_limit_set(c, 0);
    free_log(log);
}

static void test_limit_policy_hot_reload_switches_the_limits(void **state)
{
    (void)state;
    mmt_tag_t a = new_tag("lp-hot-a", MMT_TAG_ROOT);
    mmt_tag_t b = new_tag("lp-hot-b", MMT_TAG_ROOT);
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.watch = 1};
    mmt_policy_t *p = new_engine(&o, log);
    const char *path = policy_path("limit_hot.lua");
    load_text(p, "limit_hot.lua", "local mmt = require 'mmt'\nmmt.limit('lp-hot-a', 4096)\n");
    assert_int_equal(mmt_limit_get(a), 4096);
    write_by_rename(path, "local mmt = require 'mmt'\nmmt.limit('lp-hot-b', 8192)\n");
    double end = now_seconds() + 10;
    while (mmt_limit_get(b) != 8192 && now_seconds() < end) sleep_ms(5);
    assert_int_equal(mmt_limit_get(b), 8192);
    assert_int_equal(mmt_limit_get(a), 0);
    mmt_policy_free(p);
    assert_int_equal(mmt_limit_get(b), 0);
    free_log(log);
}

static void test_limit_policy_failed_reload_keeps_the_running_limits(void **state)
{
    (void)state;
    mmt_tag_t a = new_tag("lp-fail-a", MMT_TAG_ROOT);
    mmt_tag_t b = new_tag("lp-fail-b", MMT_TAG_ROOT);
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    const char *path = policy_path("limit_fail.lua");
    write_in_place(path, "local mmt = require 'mmt'\nmmt.limit('lp-fail-a', 2 * mmt.MiB)\n");
    assert_int_equal(mmt_policy_load(p, path), 0);

    /* A syntax error: the file never runs. */
    write_in_place(path, "local mmt = require 'mmt'\n"
                         "mmt.limit('lp-fail-b', 1 * mmt.MiB)\n"
                         "this is not Lua\n");
    assert_int_equal(mmt_policy_reload(p), MMT_ELOAD);
    assert_int_equal(mmt_limit_get(a), 2 << 20);
    assert_int_equal(mmt_limit_get(b), 0);

    /* An error after mmt.limit ran: the limits it declared were never applied. */
    write_in_place(path, "local mmt = require 'mmt'\n"
                         "mmt.limit('lp-fail-b', 1 * mmt.MiB)\n"
                         "error('late')\n");
    assert_int_equal(mmt_policy_reload(p), MMT_ELOAD);
    assert_int_equal(mmt_limit_get(a), 2 << 20);
    assert_int_equal(mmt_limit_get(b), 0);
    assert_int_equal(log_count(log, "lp-fail-b"), 0); /* no line says it was set */

    mmt_policy_free(p);
    assert_int_equal(mmt_limit_get(a), 0);
    free_log(log);
}

static void test_limit_policy_freeing_the_engine_gives_its_limits_back(void **state)
{
    (void)state;
    mmt_tag_t a = new_tag("lp-free-a", MMT_TAG_ROOT);
    mmt_tag_t b = new_tag("lp-free-b", MMT_TAG_ROOT);
    mmt_tag_t huge = new_tag("lp-free-huge", MMT_TAG_ROOT);
    assert_int_equal(mmt_limit_set(a, 1 << 20), 0);
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    load_text(p, "limit_free.lua",
              "local mmt = require 'mmt'\n"
              "mmt.limit('lp-free-a', 3 * mmt.MiB)\n"
              "mmt.limit('lp-free-b', 5 * mmt.MiB)\n"
              "mmt.limit('lp-free-huge', 1.5 * 2^63)\n"); /* set as 2^63 - 1 */
    assert_int_equal(mmt_limit_get(a), 3 << 20);
    assert_int_equal(mmt_limit_get(b), 5 << 20);
    assert_int_equal(mmt_limit_get(huge), INT64_MAX);
    mmt_policy_free(p);
    assert_int_equal(mmt_limit_get(a), 1 << 20);
    assert_int_equal(mmt_limit_get(b), 0);
    assert_int_equal(mmt_limit_get(huge), 0); /* the policy's own, as set */
    assert_logged(log, "limit on tag \"lp-free-b\" back to none (was 5 MiB): the engine is freed");
    assert_int_equal(log_count(log, "left at"), 0);
    mmt_limit_set(a, 0);
    free_log(log);
}

static void test_limit_policy_a_limit_the_program_changed_since_stays_the_programs(void **state)
{
    (void)state;
    mmt_tag_t a = new_tag("lp-changed", MMT_TAG_ROOT);
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    const char *path = policy_path("limit_changed.lua");
    write_in_place(path, "local mmt = require 'mmt'\nmmt.limit('lp-changed', 2 * mmt.MiB)\n");
    assert_int_equal(mmt_policy_load(p, path), 0);
    assert_int_equal(mmt_limit_set(a, 3 << 20), 0); /* the program, after the policy */

    /* Set again by the next policy: the program's value is what it will give back. */
    assert_int_equal(mmt_policy_reload(p), 0);
    assert_int_equal(mmt_limit_get(a), 2 << 20);
    write_in_place(path, "local mmt = require 'mmt'\n");
    assert_int_equal(mmt_policy_reload(p), 0);
    assert_int_equal(mmt_limit_get(a), 3 << 20);

    /* Changed by the program, then dropped by the policy: left as the program set it. */
    write_in_place(path, "local mmt = require 'mmt'\nmmt.limit('lp-changed', 2 * mmt.MiB)\n");
    assert_int_equal(mmt_policy_reload(p), 0);
    assert_int_equal(mmt_limit_set(a, 9 << 20), 0);
    write_in_place(path, "local mmt = require 'mmt'\n");
    assert_int_equal(mmt_policy_reload(p), 0);
    assert_int_equal(mmt_limit_get(a), 9 << 20);
    assert_logged(log, "limit on tag \"lp-changed\" left at 9 MiB: the program changed it after "
                       "the policy set it");
    mmt_policy_free(p);
    assert_int_equal(mmt_limit_get(a), 9 << 20);
    mmt_limit_set(a, 0);
    free_log(log);
}

/* An engine whose policy, in the file `name`, limits the tag at `path` to `mib` MiB. */
static mmt_policy_t *engine_limiting(captured_log_t *log, const char *name, const char *path,
                                     int mib)
{
    mmt_policy_t *p = new_engine(NULL, log);
    char text[256];
    snprintf(text, sizeof text, "local mmt = require 'mmt'\nmmt.limit('%s', %d * mmt.MiB)\n",
             path, mib);
    load_text(p, name, text);
    return p;
}

static void test_limit_policy_engines_sharing_a_tag_leave_no_limit_behind_in_either_order(void **state)
{
    (void)state;
    mmt_tag_t t = new_tag("lp-shared", MMT_TAG_ROOT);
    captured_log_t *log = new_log();

    /* The first set frees first: the other's limit stays, then the program's (none). */
    mmt_policy_t *a = engine_limiting(log, "shared_a.lua", "lp-shared", 10);
    assert_int_equal(mmt_limit_get(t), 10 << 20);
    mmt_policy_t *b = engine_limiting(log, "shared_b.lua", "lp-shared", 20);
    assert_int_equal(mmt_limit_get(t), 20 << 20); /* the most recent wins */
    mmt_policy_free(a);
    assert_int_equal(mmt_limit_get(t), 20 << 20);
    mmt_policy_free(b);
    assert_int_equal(mmt_limit_get(t), 0);
    assert_int_equal(log_count(log, "left at"), 0); /* neither took it for the program's */

    /* The last set frees first: back to the first's, then to none. */
    a = engine_limiting(log, "shared_a.lua", "lp-shared", 10);
    b = engine_limiting(log, "shared_b.lua", "lp-shared", 20);
    mmt_policy_free(b);
    assert_int_equal(mmt_limit_get(t), 10 << 20);
    assert_logged(log, "limit on tag \"lp-shared\" back to 10 MiB (was 20 MiB): the engine is "
                       "freed");
    mmt_policy_free(a);
    assert_int_equal(mmt_limit_get(t), 0);

    /* Over a limit of the program's: that is what is left once both are freed. */
    assert_int_equal(mmt_limit_set(t, 5 << 20), 0);
    a = engine_limiting(log, "shared_a.lua", "lp-shared", 10);
    b = engine_limiting(log, "shared_b.lua", "lp-shared", 20);
    mmt_policy_free(a);
    assert_int_equal(mmt_limit_get(t), 20 << 20);
    mmt_policy_free(b);
    assert_int_equal(mmt_limit_get(t), 5 << 20);
    assert_int_equal(log_count(log, "left at"), 0);
    mmt_limit_set(t, 0);
    free_log(log);
}

static void test_limit_policy_a_reload_while_another_engine_limits_the_tag_leaves_nothing_behind(void **state)
{
    (void)state;
    mmt_tag_t t = new_tag("lp-shared-reload", MMT_TAG_ROOT);
    captured_log_t *log = new_log();
    mmt_policy_t *a = engine_limiting(log, "shared_reload_a.lua", "lp-shared-reload", 10);
    mmt_policy_t *b = engine_limiting(log, "shared_reload_b.lua", "lp-shared-reload", 20);

    /* A's next policy no longer limits the tag: B's limit stays. */
    const char *path = policy_path("shared_reload_a.lua");
    write_in_place(path, "local mmt = require 'mmt'\n");
    assert_int_equal(mmt_policy_reload(a), 0);
    assert_int_equal(mmt_limit_get(t), 20 << 20);

    /* A's next sets it again, above B's: A's is the most recent; freed, B's is back. */
    write_in_place(path, "local mmt = require 'mmt'\n"
                         "mmt.limit('lp-shared-reload', 15 * mmt.MiB)\n");
    assert_int_equal(mmt_policy_reload(a), 0);
    assert_int_equal(mmt_limit_get(t), 15 << 20);
    mmt_policy_free(a);
    assert_int_equal(mmt_limit_get(t), 20 << 20);
    mmt_policy_free(b);
    assert_int_equal(mmt_limit_get(t), 0);
    assert_int_equal(log_count(log, "left at"), 0);
    free_log(log);
}

static void test_limit_policy_a_limit_the_program_changed_under_two_engines_stays_the_programs(void **state)
{
    (void)state;
    mmt_tag_t t = new_tag("lp-shared-changed", MMT_TAG_ROOT);
    captured_log_t *log = new_log();
    mmt_policy_t *a = engine_limiting(log, "shared_changed_a.lua", "lp-shared-changed", 10);
    mmt_policy_t *b = engine_limiting(log, "shared_changed_b.lua", "lp-shared-changed", 20);
    assert_int_equal(mmt_limit_set(t, 7 << 20), 0); /* the program, after both */
    mmt_policy_free(a);
    assert_int_equal(mmt_limit_get(t), 7 << 20);
    mmt_policy_free(b);
    assert_int_equal(mmt_limit_get(t), 7 << 20);
    assert_int_equal(log_count(log, "limit on tag \"lp-shared-changed\" left at 7 MiB: the "
                                    "program changed it after the policy set it"), 2);
    mmt_limit_set(t, 0);
    free_log(log);
}

static void test_limit_policy_bad_arguments_are_errors_naming_them(void **state)
{
    (void)state;
    new_tag("lp-err", MMT_TAG_ROOT);
    const load_error_case_t cases[] = {
        {"mmt.limit('lp-nope', 1)",
         ":3: mmt.limit: unknown tag \"lp-nope\" (no tag has that path: paths are like "
         "\"cache/pages\", without a leading '/'; \"\" is the whole process)"},
        {"mmt.limit('/lp-err', 1)", ":3: mmt.limit: unknown tag \"/lp-err\""},
        {"mmt.limit('lp-err/', 1)", ":3: mmt.limit: unknown tag \"lp-err/\""},
        {"mmt.limit(7, 1)",
         ":3: mmt.limit: the tag must be a path (like \"cache/pages\", or \"\" for the whole "
         "process), not a number"},
        {"mmt.limit('lp-err', -1)", ":3: mmt.limit: the limit must be from 0 to 2^64 bytes, not -1"},
        {"mmt.limit('lp-err', 0/0)", ":3: mmt.limit: the limit must be from 0 to 2^64 bytes, not nan"},
        {"mmt.limit('lp-err', 2^64)", ":3: mmt.limit: the limit must be from 0 to 2^64 bytes, not "
                                      "1.8446744073709552e+19"},
        {"mmt.limit('lp-err', '5')",
         ":3: mmt.limit: the limit must be a number of bytes (or nil for none), not a string"},
        {"mmt.limit('lp-err', 1)\nmmt.limit('lp-err', 2)",
         ":4: mmt.limit: tag \"lp-err\" is limited already, at "},
        {"mmt.limit('lp-err', 1)\nmmt.limit('lp-err', 2)", "limit_errors.lua:3"},
        {"mmt.limit('', 1 * mmt.GiB)\nmmt.limit('', nil)",
         ":4: mmt.limit: the whole process is limited already, at "},
        {"mmt.reclaim('lp-nope', 1)", ":3: mmt.reclaim: unknown tag \"lp-nope\""},
        {"mmt.reclaim('lp-err', '1')",
         ":3: mmt.reclaim: the bytes wanted must be a number, not a string"},
        {"mmt.reclaim('lp-err', 0/0)", ":3: mmt.reclaim: the bytes wanted must be a number, not nan"},
    };
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    const char *path = policy_path("limit_errors.lua");
    expect_load_errors(p, path, cases, sizeof cases / sizeof cases[0]);

    /* Limits are declared at load, like rules: not from a rule or task. */
    load_text(p, "limit_late.lua",
              "local mmt = require 'mmt'\n"
              "mmt.rule { name = 'late', when = function() mmt.limit('lp-err', 1) return false end,\n"
              "  fire = function() end }\n");
    mmt_mem_checkpoint();
    assert_logged(log, "rule \"late\": ");
    assert_logged(log, "limit_late.lua:2: mmt.limit: limits are set when the policy loads, not "
                       "from inside a rule or task");
    assert_int_equal(mmt_limit_get((mmt_tag_t)mmt_tag_lookup("lp-err")), 0);
    mmt_policy_free(p);
    free_log(log);
}

/* ---- Reading the limits ------------------------------------------------------------------- */

static void test_limit_policy_m_tags_limit_reads_each_tags_limit_and_nil_for_none(void **state)
{
    (void)state;
    new_tag("lp-read", MMT_TAG_ROOT);
    mmt_tag_t none = new_tag("lp-read-none", MMT_TAG_ROOT);
    captured_log_t *log = new_log();
    /* Reading every tag is slow under valgrind on a loaded machine: a budget that is not
     * what this test is about. */
    mmt_policy_options_t o = {.budget_ms = 2000};
    mmt_policy_t *p = new_engine(&o, log);
    load_text(p, "limit_read.lua",
              "local mmt = require 'mmt'\n"
              "mmt.limit('lp-read', 5 * mmt.MiB)\n"
              "mmt.rule { name = 'read', when = function(m)\n"
              "    mmt.log('info', 'LIMITS %s %s %s', tostring(m.tags['lp-read'].limit),\n"
              "      tostring(m.tags['lp-read-none'].limit), tostring(m.limit))\n"
              "    return false end, fire = function() end }\n");
    mmt_mem_checkpoint();
    assert_logged(log, "LIMITS 5242880 nil nil");

    /* A limit the program sets is read too, at the next evaluation; and the process's. */
    assert_int_equal(mmt_limit_set(none, 4096), 0);
    assert_int_equal(mmt_limit_set(MMT_TAG_ROOT, (uint64_t)1 << 40), 0);
    mmt_mem_checkpoint();
    assert_logged(log, "LIMITS 5242880 4096 1099511627776");
    mmt_limit_set(none, 0);
    mmt_limit_set(MMT_TAG_ROOT, 0);
    mmt_policy_free(p);
    free_log(log);
}

/* ---- mmt.reclaim and mmt.trim ------------------------------------------------------------- */

/* A host action that sets the pool's `lie` (on the engine's thread, as its reclaimer runs). */
static int64_t pool_lie(int64_t on, void *ud)
{
    ((pool_t *)ud)->lie = on != 0;
    return 0;
}

static void test_limit_policy_reclaim_on_the_engines_thread_returns_what_was_freed(void **state)
{
    (void)state;
    mmt_tag_t tag = new_tag("lp-reclaim", MMT_TAG_ROOT);
    mmt_tag_t part = new_tag("part", tag);
    pool_t pool;
    pool_open(&pool, part, 4096, "lp-pool");
    pool_fill_to(&pool, 40 * 4096);
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 10};
    mmt_policy_t *p = new_engine(&o, log);
    assert_int_equal(mmt_policy_action(p, "lie", pool_lie, &pool), 0);
    /* A task, on the engine's thread, asks for each of `asks` in turn (a reclaimer in the
     * subtree of the tag named runs at once), and logs what came back. */
    load_text(p, "limit_reclaim.lua",
              "local mmt = require 'mmt'\n"
              "local asks = { 10000, 0, -5, 4096, math.huge }\n"
              "local done = false\n"
              "mmt.every(0.01, function(m)\n"
              "  if done then return end\n"
              "  done = true\n"
              "  for step, ask in ipairs(asks) do\n"
              "    mmt.call('lie', step == 4 and 1 or 0)\n"
              "    local freed = mmt.reclaim('lp-reclaim', ask)\n"
              "    mmt.log('info', 'FREED%d %s %s', step, type(freed), tostring(freed))\n"
              "  end\n"
              "end)\n");
    if (!wait_for_log(log, "FREED5 ", 5000)) {
        log_dump(log);
        fail_msg("the task did not run");
    }
    assert_logged(log, "FREED1 number 12288"); /* whole blocks: just over 10000 */
    assert_logged(log, "FREED2 number 0");     /* 0 and less: nothing asked */
    assert_logged(log, "FREED3 number 0");
    assert_logged(log, "FREED4 number 4096");  /* the measure, not the reclaimer's word */
    assert_logged(log, "FREED5 number 147456"); /* math.huge: all the 36 blocks left */
    assert_int_equal(pool.calls, 3);
    assert_int_equal(pool.asked[0], 10000);
    assert_int_equal(pool.asked[1], 4096);
    assert_int_equal(pool.asked[2], SIZE_MAX);
    assert_false(pthread_equal(pool.thread, pthread_self()));
    assert_int_equal(pool.n, 0);
    assert_int_equal(tag_in_use(tag), 0);
    assert_int_equal(log_level_count(log, MMT_LOG_ERROR), 0);

    mmt_policy_free(p);
    pool_close(&pool);
    free_log(log);
}

static void test_limit_policy_trim_on_the_engines_thread_returns_the_bytes_given_back(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    /* Memory freed in a heap, to give back (with glibc, a heap's top above the trim
     * threshold goes back by itself; these are freed under a live block). */
    void *blocks[64];
    for (int i = 0; i < 64; i++) blocks[i] = mmt_malloc(64 * 1024);
    for (int i = 0; i < 63; i++) mmt_free(blocks[i]);
    mmt_policy_options_t o = {.interval_ms = 10};
    mmt_policy_t *p = new_engine(&o, log);
    load_text(p, "limit_trim.lua",
              "local mmt = require 'mmt'\n"
              "local done = false\n"
              "mmt.every(0.01, function(m)\n"
              "  if done then return end\n"
              "  done = true\n"
              "  local t = mmt.trim()\n"
              "  mmt.log('info', 'TRIM %s %s', type(t), tostring(t))\n"
              "end)\n");
    if (!wait_for_log(log, "TRIM ", 5000)) {
        log_dump(log);
        fail_msg("the task did not run");
    }
    mmt_free(blocks[63]);
    assert_logged(log, "TRIM number ");
    double trimmed = logged_number(log, "TRIM number ");
    assert_true(trimmed >= 0 && trimmed == floor(trimmed));
    assert_int_equal(log_level_count(log, MMT_LOG_ERROR), 0);
    mmt_policy_free(p);
    free_log(log);
}

/* The thread that logged the first reclaim report (the engine's), for the tests below. */
static pthread_t report_thread;
static atomic_bool report_thread_seen;

static void capture_noting_report_thread(int level, const char *message, void *ud)
{
    if (strstr(message, "reclaim for ") && !atomic_load(&report_thread_seen)) {
        report_thread = pthread_self();
        atomic_store(&report_thread_seen, true);
    }
    capture(level, message, ud);
}

static void test_limit_policy_reclaim_at_a_checkpoint_runs_on_the_engines_thread_not_in_the_allocation(void **state)
{
    (void)state;
    mmt_tag_t tag = new_tag("lp-defer", MMT_TAG_ROOT);
    pool_t pool;
    pool_open(&pool, tag, 4096, "lp-defer-pool");
    pool_fill_to(&pool, 16 * 4096);
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 60000}; /* a thread, and no tick meanwhile */
    mmt_policy_t *p = new_engine(&o, log);
    atomic_store(&report_thread_seen, false);
    mmt_policy_set_log(p, capture_noting_report_thread, log);
    load_text(p, "limit_defer.lua",
              "local mmt = require 'mmt'\n"
              "local asked = false\n"
              "mmt.rule { name = 'defer', when = function(m)\n"
              "    if asked then return false end\n"
              "    asked = true\n"
              "    local freed, why = mmt.reclaim('lp-defer', 8192)\n"
              "    local trimmed, trim_why = mmt.trim()\n"
              "    mmt.log('info', 'ASKED %s %s %s %s', tostring(freed), tostring(why),\n"
              "            tostring(trimmed), tostring(trim_why))\n"
              "    return false end, fire = function() end }\n");

    /* Evaluated here, as inside an allocation: the reclaimer must not run on this thread. */
    mmt_mem_checkpoint();
    assert_logged(log, "ASKED nil deferred nil deferred");
    if (!wait_for_log(log, "reclaim for tag \"lp-defer\": wanted 8 KiB, freed 8 KiB: "
                           "lp-defer-pool 8 KiB, ", 5000)) {
        log_dump(log);
        fail_msg("the engine's thread did not run the reclaim");
    }
    assert_true(wait_for_log(log, "trim asked at a checkpoint: ", 5000));
    assert_int_equal(log_level_of(log, "trim asked at a checkpoint: "), MMT_LOG_INFO);
    assert_int_equal(pool.calls, 1);
    assert_false(pthread_equal(pool.thread, pthread_self()));
    assert_true(pthread_equal(pool.thread, report_thread));
    assert_int_equal(tag_in_use(tag), 14 * 4096);
    assert_int_equal(log_level_count(log, MMT_LOG_ERROR), 0);

    mmt_policy_free(p);
    pool_close(&pool);
    free_log(log);
}

static void test_limit_policy_checkpoints_wait_for_a_deferred_reclaim_before_evaluating_again(void **state)
{
    (void)state;
    mmt_tag_t tag = new_tag("lp-wait", MMT_TAG_ROOT);
    pool_t pool;
    pool_open(&pool, tag, 4096, "lp-wait-pool");
    pool_fill_to(&pool, 16 * 4096);
    atomic_store(&pool.hold, true);
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 60000};
    mmt_policy_t *p = new_engine(&o, log);
    load_text(p, "limit_wait.lua",
              "local mmt = require 'mmt'\n"
              "local asked = false\n"
              "mmt.rule { name = 'wait', when = function(m)\n"
              "    mmt.log('info', 'SEEN %d', m.tags['lp-wait'].in_use)\n"
              "    if not asked then asked = true mmt.reclaim('lp-wait', 8192) end\n"
              "    return false end, fire = function() end }\n");
    mmt_mem_checkpoint();
    assert_logged(log, "SEEN 65536");
    assert_true(pool_wait_held(&pool)); /* on the engine's thread, held there */

    /* While the reclaim runs, a checkpoint does not evaluate the engine. */
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "SEEN "), 1);

    /* Once it is done, the next evaluation sees what it freed. */
    atomic_store(&pool.hold, false);
    assert_true(wait_for_log(log, "reclaim for tag \"lp-wait\": wanted 8 KiB", 5000));
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "SEEN "), 2);
    assert_logged(log, "SEEN 57344");

    mmt_policy_free(p);
    pool_close(&pool);
    free_log(log);
}

/* Host actions of the queue test: wait until the pool's reclaimer is held on the engine's
 * thread, and let it go. */
static int64_t pool_held(int64_t arg, void *ud)
{
    (void)arg;
    return pool_wait_held(ud);
}

static int64_t pool_release(int64_t arg, void *ud)
{
    (void)arg;
    atomic_store(&((pool_t *)ud)->hold, false);
    return 0;
}

static void test_limit_policy_reclaims_asked_at_checkpoints_join_per_tag_and_64_wait_at_most(void **state)
{
    (void)state;
    mmt_tag_t tag = new_tag("lp-queue", MMT_TAG_ROOT);
    mmt_tag_t many = new_tag("lp-queue-many", MMT_TAG_ROOT);
    for (int i = 0; i < 64; i++) {
        char name[16];
        snprintf(name, sizeof name, "q%d", i);
        new_tag(name, many);
    }
    pool_t pool;
    pool_open(&pool, tag, 4096, "lp-queue-pool");
    pool_fill_to(&pool, 16 * 4096);
    atomic_store(&pool.hold, true);
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 60000, .budget_ms = 10000};
    mmt_policy_t *p = new_engine(&o, log);
    assert_int_equal(mmt_policy_action(p, "held", pool_held, &pool), 0);
    assert_int_equal(mmt_policy_action(p, "release", pool_release, &pool), 0);
    /* The first reclaim holds the engine's thread; then 64 wait: lp-queue's (asked twice,
     * which is one request for the larger), and 63 of the q tags'. The 64th q tag's and a
     * trim find no room. */
    load_text(p, "limit_queue.lua",
              "local mmt = require 'mmt'\n"
              "local asked = false\n"
              "local function say(what, ...) mmt.log('info', what .. ' %s %s', ...) end\n"
              "mmt.rule { name = 'queue', when = function(m)\n"
              "    if asked then return false end\n"
              "    asked = true\n"
              "    say('FIRST', mmt.reclaim('lp-queue', 4096))\n"
              "    assert(mmt.call('held') == 1, 'the reclaimer is not held')\n"
              "    say('AGAIN', mmt.reclaim('lp-queue', 8192))\n"
              "    say('JOINED', mmt.reclaim('lp-queue', 4096))\n"
              "    for i = 0, 62 do say('Q' .. i, mmt.reclaim('lp-queue-many/q' .. i, 1)) end\n"
              "    say('FULL', mmt.reclaim('lp-queue-many/q63', 1))\n"
              "    say('TRIM', mmt.trim())\n"
              "    mmt.call('release')\n"
              "    return false end, fire = function() end }\n");
    mmt_mem_checkpoint();
    assert_logged(log, "FIRST nil deferred");
    assert_logged(log, "AGAIN nil deferred");
    assert_logged(log, "JOINED nil deferred");
    assert_logged(log, "Q62 nil deferred");
    assert_logged(log, "FULL nil mmt.reclaim: not run: 64 reclaims and trims already wait for "
                       "the engine's thread");
    assert_logged(log, "TRIM nil mmt.trim: not run: 64 reclaims and trims already wait for the "
                       "engine's thread");
    if (!wait_for_log(log, "reclaim for tag \"lp-queue\": wanted 8 KiB", 5000)) {
        log_dump(log);
        fail_msg("the engine's thread did not run the second reclaim");
    }
    assert_int_equal(pool.calls, 2);
    assert_int_equal(pool.asked[0], 4096);
    assert_int_equal(pool.asked[1], 8192); /* the larger of the two asks that waited */
    assert_int_equal(log_level_count(log, MMT_LOG_ERROR), 0);

    mmt_policy_free(p);
    pool_close(&pool);
    free_log(log);
}

static void test_limit_policy_reclaim_at_a_checkpoint_of_an_engine_without_a_thread_is_refused(void **state)
{
    (void)state;
    mmt_tag_t tag = new_tag("lp-no-thread", MMT_TAG_ROOT);
    pool_t pool;
    pool_open(&pool, tag, 4096, "lp-no-thread-pool");
    pool_fill_to(&pool, 4 * 4096);
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log); /* no timer, no watch: no thread */
    load_text(p, "limit_no_thread.lua",
              "local mmt = require 'mmt'\n"
              "mmt.rule { name = 'refused', when = function(m)\n"
              "    local freed, why = mmt.reclaim('lp-no-thread', 4096)\n"
              "    local trimmed, trim_why = mmt.trim()\n"
              "    mmt.log('info', 'REFUSED %s %s / %s %s', tostring(freed), why,\n"
              "            tostring(trimmed), trim_why)\n"
              "    return false end, fire = function() end }\n");
    mmt_mem_checkpoint();
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "REFUSED nil mmt.reclaim: not run: called at an allocation "
                                    "checkpoint, where the program's reclaimers must not run, and "
                                    "the engine has no thread to run it on (interval_ms or watch "
                                    "gives it one) / nil mmt.trim: not run: "), 2);
    assert_int_equal(pool.calls, 0);
    /* Said in the log once, as a warning naming the line. */
    assert_int_equal(log_count(log, "limit_no_thread.lua:3: mmt.reclaim: not run: called at an "
                                    "allocation checkpoint"), 1);
    assert_int_equal(log_count(log, "mmt.trim: not run: called"), 2); /* the REFUSED lines */
    assert_int_equal(log_level_of(log, "limit_no_thread.lua:3: mmt.reclaim: not run"),
                     MMT_LOG_WARN);
    mmt_policy_free(p);
    pool_close(&pool);
    free_log(log);
}

/* ---- Reclaim reports in the log ----------------------------------------------------------- */

/* The log of the report test: captured, and whether a report line came on the test's own
 * thread, whose allocations make reports (they must reach the log from the engine's). */
static pthread_t test_thread;
static atomic_bool report_on_test_thread;

static void capture_noting_thread(int level, const char *message, void *ud)
{
    if (strstr(message, "reclaim for ") && pthread_equal(pthread_self(), test_thread))
        atomic_store(&report_on_test_thread, true);
    capture(level, message, ud);
}

static void test_limit_policy_reclaim_reports_reach_the_engines_log(void **state)
{
    (void)state;
    mmt_tag_t tag = new_tag("lp-report", MMT_TAG_ROOT);
    pool_t pool;
    pool_open(&pool, tag, 4096, "lp-report-pool");
    pool_fill_to(&pool, 16 * 4096);
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 20};
    mmt_policy_t *p = new_engine(&o, log);
    test_thread = pthread_self();
    atomic_store(&report_on_test_thread, false);
    mmt_policy_set_log(p, capture_noting_thread, log);
    /* A reclaim made by policy code on the engine's thread, once. */
    load_text(p, "limit_report.lua",
              "local mmt = require 'mmt'\n"
              "mmt.limit('lp-report', 20 * 4096)\n"
              "local done = false\n"
              "mmt.every(0.02, function(m)\n"
              "  if not done then done = true mmt.reclaim('lp-report', 8192) end\n"
              "end)\n");
    if (!wait_for_log(log, "reclaim for tag \"lp-report\": wanted 8 KiB, freed 8 KiB: "
                           "lp-report-pool 8 KiB, ", 5000)) {
        log_dump(log);
        fail_msg("no report of the policy's reclaim");
    }
    assert_int_equal(log_level_of(log, "reclaim for tag \"lp-report\": wanted 8 KiB"), MMT_LOG_INFO);

    /* One made by an allocation that the policy's limit would refuse: the reclaimer makes
     * room, and the engine's thread logs it (not the allocating thread). */
    uint64_t held = tag_in_use(tag);
    assert_int_equal(held, 14 * 4096);
    void *big = mmt_malloc_in(tag, 10 * 4096); /* 24 pages > 20: 4 must go */
    assert_int_equal(tag_in_use(tag), 20 * 4096);
    if (!wait_for_log(log, "reclaim for tag \"lp-report\": wanted 16 KiB, freed 16 KiB", 5000)) {
        log_dump(log);
        fail_msg("no report of the allocation's reclaim");
    }
    mmt_free(big);

    /* A program's own mmt_reclaim is reported as well, to every engine. */
    mmt_reclaim(tag, 4096);
    assert_true(wait_for_log(log, "reclaim for tag \"lp-report\": wanted 4 KiB", 5000));
    assert_int_equal(log_level_count(log, MMT_LOG_ERROR), 0);
    assert_int_equal(log_count(log, "reclaim reports were lost"), 0);
    assert_false(atomic_load(&report_on_test_thread));

    mmt_policy_free(p);
    pool_close(&pool);
    free_log(log);
}

static size_t free_nothing(size_t wanted, void *arg)
{
    (void)wanted;
    (void)arg;
    return 0;
}

static void test_limit_policy_reports_made_faster_than_the_log_are_counted_as_lost(void **state)
{
    (void)state;
    mmt_tag_t tag = new_tag("lp-lost", MMT_TAG_ROOT);
    int id = mmt_reclaimer_add(tag, "lp-nothing", 0, free_nothing, NULL);
    assert_true(id > 0);
    captured_log_t *log = new_log();
    /* A thread that wakes every 2 s at most: 200 reports made at once outrun its ring. */
    mmt_policy_options_t o = {.interval_ms = 10000};
    mmt_policy_t *p = new_engine(&o, log);
    enum { MADE = 200 };
    for (int i = 0; i < MADE; i++) mmt_reclaim(tag, 1); /* each a report */
    mmt_policy_free(p); /* logs what its thread has not yet */
    assert_int_equal(mmt_reclaimer_remove(id), 0);
    int logged = log_count(log, "reclaim for tag \"lp-lost\": wanted 1 bytes, freed 0 bytes: "
                                "lp-nothing 0 bytes");
    double lost = NAN;
    pthread_mutex_lock(&log->lock);
    for (int i = 0; i < log->count; i++)
        if (strstr(log->lines[i], " reclaim reports were lost: made faster than the engine's "
                                  "thread logs them (it keeps the last 64)")) {
            lost = atof(log->lines[i]);
            assert_int_equal(log->levels[i], MMT_LOG_WARN);
        }
    pthread_mutex_unlock(&log->lock);
    if (isnan(lost)) {
        log_dump(log);
        fail_msg("no line says reports were lost");
    }
    assert_true(logged >= 64);
    assert_int_equal(logged + (int)lost, MADE);
    free_log(log);
}

/* The free race test: a host action that holds a checkpoint evaluation until the test
 * is about to free the engine, and 300 ms more, so that the free begins meanwhile. */
static atomic_bool stall_entered, freeing;

static int64_t stall(int64_t arg, void *ud)
{
    (void)arg;
    (void)ud;
    atomic_store(&stall_entered, true);
    double end = now_seconds() + 10;
    while (!atomic_load(&freeing) && now_seconds() < end) sleep_ms(1);
    sleep_ms(300);
    return 0;
}

static void *checkpoint_thread(void *arg)
{
    (void)arg;
    mmt_mem_checkpoint();
    return NULL;
}

static void test_limit_policy_a_reclaim_asked_while_the_engine_is_freed_is_run_or_said_not_run(void **state)
{
    (void)state;
    mmt_tag_t tag = new_tag("lp-free-race", MMT_TAG_ROOT);
    pool_t pool;
    pool_open(&pool, tag, 4096, "lp-free-race-pool");
    pool_fill_to(&pool, 16 * 4096);
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 60000, .budget_ms = 10000};
    mmt_policy_t *p = new_engine(&o, log);
    assert_int_equal(mmt_policy_action(p, "stall", stall, NULL), 0);
    load_text(p, "limit_free_race.lua",
              "local mmt = require 'mmt'\n"
              "local asked = false\n"
              "mmt.rule { name = 'race', when = function(m)\n"
              "    if asked then return false end\n"
              "    asked = true\n"
              "    mmt.call('stall')\n"
              "    local freed, why = mmt.reclaim('lp-free-race', 8192)\n"
              "    mmt.log('info', 'RACE %s %s', tostring(freed), tostring(why))\n"
              "    return false end, fire = function() end }\n");
    atomic_store(&stall_entered, false);
    atomic_store(&freeing, false);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, checkpoint_thread, NULL), 0);
    double end = now_seconds() + 10;
    while (!atomic_load(&stall_entered) && now_seconds() < end) sleep_ms(1);
    assert_true(atomic_load(&stall_entered));
    /* The evaluation asks for its reclaim while the engine is being freed. */
    atomic_store(&freeing, true);
    assert_int_equal(mmt_policy_free(p), 0);
    assert_int_equal(pthread_join(t, NULL), 0);

    /* Asked of the engine's thread, which ran it (its report is logged) or had stopped
     * before it could (that is logged): never run on the evaluating thread, never lost. */
    assert_logged(log, "RACE nil deferred");
    int reported = log_count(log, "reclaim for tag \"lp-free-race\": wanted 8 KiB, freed 8 KiB");
    int dropped = log_count(log, "reclaim of 8 KiB in tag \"lp-free-race\" asked at a "
                                 "checkpoint not run: the engine's thread stopped");
    if (reported + dropped != 1) {
        log_dump(log);
        fail_msg("the reclaim was neither reported nor said not run (or both)");
    }
    assert_int_equal(pool.calls, reported);
    if (pool.calls) assert_false(pthread_equal(pool.thread, t));
    pool_close(&pool);
    free_log(log);
}

/* ---- policies/budget.lua ------------------------------------------------------------------ */

/* The tag budget.lua limits in mmt-demo, made once in this process. */
static mmt_tag_t flows_tag(void)
{
    static mmt_tag_t flows;
    if (!flows) flows = new_tag("flows", MMT_TAG_ROOT);
    return flows;
}

static void test_limit_policy_budget_reclaims_a_tag_filled_past_80_percent(void **state)
{
    (void)state;
    mmt_tag_t flows = flows_tag();
    mmt_tag_t entries = new_tag("entries", flows);
    pool_t pool;
    pool_open(&pool, entries, 64 * 1024, "lp-budget-pool");
    captured_log_t *log = new_log();
    /* A thread, and no timer: the rules run at the checkpoints below. */
    mmt_policy_options_t o = {.watch = 1};
    mmt_policy_t *p = new_engine(&o, log);
    if (mmt_policy_load(p, tree_path("policies/budget.lua")) != 0)
        fail_msg("budget.lua: %s", mmt_policy_error(p));
    /* The tags this program does not have are said, and limit nothing. */
    assert_logged(log, "budget: this program has no tag \"cache\" (yet)");
    assert_logged(log, "budget: this program has no tag \"http/buffers\" (yet)");
    uint64_t limit = mmt_limit_get(flows);
    assert_true(limit >= (uint64_t)1 << 20 && limit <= (uint64_t)60 << 20); /* fills in a test */

    /* At a checkpoint the reclaim is the engine thread's; the next evaluation says what it
     * did. */
    pool_fill_to(&pool, limit * 85 / 100);
    mmt_mem_checkpoint();
    if (!wait_for_log(log, "reclaim for tag \"flows\": wanted ", 5000)) {
        log_dump(log);
        fail_msg("budget.lua did not reclaim");
    }
    assert_int_equal(log_count(log, "budget flows: "), 0);
    mmt_mem_checkpoint();
    assert_logged(log, "budget flows: ");
    assert_logged(log, "% of its limit ");
    assert_logged(log, "; reclaimed ");
    /* Down to 60% of the limit, no more than a block under it. */
    uint64_t now = tag_in_use(flows);
    assert_true(now <= limit * 60 / 100);
    assert_true(now + pool.block > limit * 60 / 100);
    assert_int_equal(pool.calls, 1);
    assert_false(pthread_equal(pool.thread, pthread_self()));
    assert_int_equal(log_count(log, "still "), 0);
    assert_int_equal(log_level_count(log, MMT_LOG_ERROR), 0);

    mmt_policy_free(p);
    assert_int_equal(mmt_limit_get(flows), 0);
    pool_close(&pool);
    free_log(log);
}

static void test_limit_policy_budget_trims_and_warns_when_reclaiming_is_not_enough(void **state)
{
    (void)state;
    mmt_tag_t flows = flows_tag();
    mmt_tag_t labels = new_tag("labels", flows);
    pool_t pool;
    pool_open(&pool, labels, 64 * 1024, "lp-stingy-pool");
    pool.give_at_most = 64 * 1024; /* one block a call */
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.watch = 1};
    mmt_policy_t *p = new_engine(&o, log);
    if (mmt_policy_load(p, tree_path("policies/budget.lua")) != 0)
        fail_msg("budget.lua: %s", mmt_policy_error(p));
    uint64_t limit = mmt_limit_get(flows);
    assert_true(limit > 0);
    pool_fill_to(&pool, limit * 90 / 100);

    /* One step a checkpoint, each run by the engine's thread before the next evaluation. */
    mmt_mem_checkpoint();
    assert_true(wait_for_log(log, "reclaim for tag \"flows\": wanted ", 5000));
    mmt_mem_checkpoint();
    assert_true(wait_for_log(log, "trim asked at a checkpoint: ", 5000));
    assert_int_equal(log_count(log, "budget flows: still "), 0);
    mmt_mem_checkpoint();
    assert_int_equal(pool.calls, 1);
    assert_logged(log, "budget flows: still ");
    assert_logged(log, "reclaiming freed only 64 KiB (the engine logged what trimming gave back)");
    assert_int_equal(log_level_of(log, "budget flows: still "), MMT_LOG_WARN);
    /* Said once: the rule climbs again only after the tag has been under 70%. */
    mmt_mem_checkpoint();
    assert_int_equal(pool.calls, 1);
    assert_int_equal(log_count(log, "budget flows: still "), 1);
    assert_int_equal(log_count(log, "trim asked at a checkpoint: "), 1);
    mmt_policy_free(p);
    pool_close(&pool);
    free_log(log);
}

static void test_limit_policy_budget_climbs_its_whole_ladder_at_once_on_a_tick(void **state)
{
    (void)state;
    mmt_tag_t flows = flows_tag();
    mmt_tag_t tick = new_tag("tick", flows);
    pool_t pool;
    pool_open(&pool, tick, 64 * 1024, "lp-tick-pool");
    pool.give_at_most = 64 * 1024;
    captured_log_t *log = new_log();
    /* The limit, from an engine without a thread: the pool is filled before any tick can
     * run its reclaimer. */
    mmt_policy_t *p = new_engine(NULL, log);
    if (mmt_policy_load(p, tree_path("policies/budget.lua")) != 0)
        fail_msg("budget.lua: %s", mmt_policy_error(p));
    uint64_t limit = mmt_limit_get(flows);
    assert_true(limit > 0);
    mmt_policy_free(p);
    pool_fill_to(&pool, limit * 90 / 100);
    mmt_policy_options_t o = {.interval_ms = 20};
    p = new_engine(&o, log);
    if (mmt_policy_load(p, tree_path("policies/budget.lua")) != 0)
        fail_msg("budget.lua: %s", mmt_policy_error(p));
    if (!wait_for_log(log, "budget flows: still ", 5000)) {
        log_dump(log);
        fail_msg("budget.lua did not act at a tick");
    }
    assert_logged(log, "reclaiming freed only 64 KiB (trimming gave ");
    assert_int_equal(log_count(log, "trim asked at a checkpoint"), 0);
    assert_int_equal(pool.calls, 1);
    assert_false(pthread_equal(pool.thread, pthread_self()));
    mmt_policy_free(p);
    pool_close(&pool);
    free_log(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_policy_limit_sets_a_limit_the_program_sees_and_enforces),
        cmocka_unit_test(test_limit_policy_reload_gives_back_the_limits_the_new_file_does_not_set),
        cmocka_unit_test(test_limit_policy_hot_reload_switches_the_limits),
        cmocka_unit_test(test_limit_policy_failed_reload_keeps_the_running_limits),
        cmocka_unit_test(test_limit_policy_freeing_the_engine_gives_its_limits_back),
        cmocka_unit_test(test_limit_policy_a_limit_the_program_changed_since_stays_the_programs),
        cmocka_unit_test(test_limit_policy_engines_sharing_a_tag_leave_no_limit_behind_in_either_order),
        cmocka_unit_test(test_limit_policy_a_reload_while_another_engine_limits_the_tag_leaves_nothing_behind),
        cmocka_unit_test(test_limit_policy_a_limit_the_program_changed_under_two_engines_stays_the_programs),
        cmocka_unit_test(test_limit_policy_bad_arguments_are_errors_naming_them),
        cmocka_unit_test(test_limit_policy_m_tags_limit_reads_each_tags_limit_and_nil_for_none),
        cmocka_unit_test(test_limit_policy_reclaim_on_the_engines_thread_returns_what_was_freed),
        cmocka_unit_test(test_limit_policy_trim_on_the_engines_thread_returns_the_bytes_given_back),
        cmocka_unit_test(test_limit_policy_reclaim_at_a_checkpoint_runs_on_the_engines_thread_not_in_the_allocation),
        cmocka_unit_test(test_limit_policy_checkpoints_wait_for_a_deferred_reclaim_before_evaluating_again),
        cmocka_unit_test(test_limit_policy_reclaims_asked_at_checkpoints_join_per_tag_and_64_wait_at_most),
        cmocka_unit_test(test_limit_policy_reclaim_at_a_checkpoint_of_an_engine_without_a_thread_is_refused),
        cmocka_unit_test(test_limit_policy_reclaim_reports_reach_the_engines_log),
        cmocka_unit_test(test_limit_policy_reports_made_faster_than_the_log_are_counted_as_lost),
        cmocka_unit_test(test_limit_policy_a_reclaim_asked_while_the_engine_is_freed_is_run_or_said_not_run),
        cmocka_unit_test(test_limit_policy_budget_reclaims_a_tag_filled_past_80_percent),
        cmocka_unit_test(test_limit_policy_budget_trims_and_warns_when_reclaiming_is_not_enough),
        cmocka_unit_test(test_limit_policy_budget_climbs_its_whole_ladder_at_once_on_a_tick),
    };
    return cmocka_run_group_tests_name("limit_policy", tests, make_test_dir, remove_test_dir);
}

/*
 * Fault injection: the backend fails its k-th allocation, for every k along a path, until
 * the path completes without reaching k. In the core each failure is the designed abort
 * (checked in a forked child); in the policy engine, a failure during a load, an
 * evaluation or a reload is an error and the running policy keeps running.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "backend.h"
#include "policyutil.h"

/* ---- A backend that fails exactly its k-th allocation ---------------------------------------- */

static atomic_long calls;   /* allocations seen since arming */
static atomic_long fail_at; /* the call that fails, 0: none */
static atomic_long fail_run = 1; /* how many calls in a row fail from there */

static bool this_one_fails(void)
{
    long n = atomic_fetch_add(&calls, 1) + 1;
    return n >= atomic_load(&fail_at) && n < atomic_load(&fail_at) + atomic_load(&fail_run);
}
static void *faulty_malloc(size_t n)
{
    return this_one_fails() ? NULL : malloc(n);
}
static void *faulty_calloc(size_t c, size_t n)
{
    return this_one_fails() ? NULL : calloc(c, n);
}
static void *faulty_realloc(void *p, size_t n)
{
    return this_one_fails() ? NULL : realloc(p, n);
}

/* From now on, the k-th allocation through the backend fails. */
static void arm(long k)
{
    atomic_store(&calls, 0);
    atomic_store(&fail_at, k);
    mmt__backend_t b = {faulty_malloc, faulty_calloc, faulty_realloc, free, 1024};
    mmt__backend_set(&b);
}

/* Restores the real backend; true if the failure was reached. */
static bool disarm(void)
{
    mmt__backend_set(NULL);
    return atomic_load(&calls) >= atomic_load(&fail_at);
}

/* ---- Core: every failing allocation along a path aborts with its line ---------------------- */

static void *volatile sink;

static void core_path(void)
{
    void *a = mmt_malloc(100);
    void *b = mmt_calloc(10, 30);
    a = mmt_realloc(a, 5000);
    char *c = mmt_strdup("flow");
    void *d = mmt_realloc(NULL, 7);
    mmt_free(a);
    mmt_free(b);
    mmt_free(c);
    mmt_free(d);
}

/* The allocation that fails is tried once more after reclaiming (mmt/memory.h): the
 * system stays out of memory for both calls. */
static void child_fails_at(void *arg)
{
    mmt_free(mmt_malloc(1)); /* this thread's counter slot exists before the path */
    atomic_store(&fail_run, 2);
    arm(*(long *)arg);
    core_path();
    sink = NULL;
}

static void test_faults_core_aborts_at_every_failing_allocation_of_a_path(void **state)
{
    (void)state;
    /* The path's allocations in order, and the line each failure must write. */
    const char *expected[] = {
        "mmt: mmt_malloc(100) failed: out of memory; in use ",
        "mmt: mmt_calloc(300) failed: out of memory; in use ",
        "mmt: mmt_realloc(5000) failed: out of memory; in use ",
        "mmt: mmt_malloc(5) failed: out of memory; in use ", /* inside mmt_strdup */
        "mmt: mmt_realloc(7) failed: out of memory; in use ", /* mmt_realloc(NULL, 7) */
    };
    long k = 1;
    for (; k <= 5; k++) {
        child_result_t r = run_in_child(child_fails_at, &k);
        if (r.signal != SIGABRT) fail_msg("k = %ld: no abort (exit %d)", k, r.exit_code);
        assert_contains(r.err, expected[k - 1]);
        assert_contains(r.err, " bytes; aborting\n");
    }
    /* One past the path: nothing fails, the child finishes. */
    child_result_t r = run_in_child(child_fails_at, &k);
    assert_int_equal(r.signal, 0);
    assert_int_equal(r.exit_code, 0);
    assert_string_equal(r.err, "");
}

/* ---- Engine: load, evaluation and reload with a failing VM allocation ------------------------ */

/* A policy whose `when` rule logs `name` at every evaluation, allocating as it goes. */
static void write_policy(const char *file, const char *name)
{
    char text[1024];
    snprintf(text, sizeof text,
             "local mmt = require 'mmt'\n"
             "local history = {}\n"
             "mmt.rule { name = 'alive', when = function(m)\n"
             "    history[#history + 1] = { m.in_use, tostring(m.time) }\n"
             "    mmt.log('info', 'POLICY %s %%d', #history)\n"
             "    return #history %% 2 == 0 end,\n"
             "  fire = function(m) local t = {} for i = 1, 50 do t[i] = {i} end end,\n"
             "  resolve = function(m) mmt.log('debug', 'resolved %%s', mmt.bytes(m.in_use)) end }\n"
             "mmt.rule { name = 'hw', metric = 'in_use', above = 1e15, fire = function() end }\n",
             name);
    write_in_place(policy_path(file), text);
}

/* The policy that answers a checkpoint now: the name in its newest log line. */
static void assert_running(captured_log_t *log, const char *name)
{
    int before = log_count(log, "POLICY ");
    mmt_mem_checkpoint();
    char want[64];
    snprintf(want, sizeof want, "POLICY %s ", name);
    pthread_mutex_lock(&log->lock);
    const char *last = NULL;
    for (int i = log->count - 1; i >= 0 && !last; i--)
        if (strstr(log->lines[i], "POLICY ")) last = log->lines[i];
    pthread_mutex_unlock(&log->lock);
    assert_true(log_count(log, "POLICY ") > before);
    if (!last || strncmp(last, want, strlen(want)) != 0)
        fail_msg("expected policy %s to be running, last line: %s", name, last ? last : "none");
}

/* Resets the capture between iterations so it never fills. */
static void clear_log(captured_log_t *log)
{
    pthread_mutex_lock(&log->lock);
    log->count = 0;
    pthread_mutex_unlock(&log->lock);
}

enum { MAX_K = 20000 };

static void test_faults_engine_load_failure_keeps_the_running_policy(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    write_policy("a.lua", "A");
    write_policy("b.lua", "B");
    assert_int_equal(mmt_policy_load(p, policy_path("a.lua")), 0);
    long k, failed_loads = 0;
    for (k = 1; k < MAX_K; k++) {
        clear_log(log);
        arm(k);
        int rc = mmt_policy_load(p, policy_path("b.lua"));
        bool reached = disarm();
        if (rc == 0) {
            assert_running(log, "B");
            assert_int_equal(mmt_policy_load(p, policy_path("a.lua")), 0); /* back to A */
        } else {
            /* MMT_ENOMEM: the engine could not keep a copy of the new path. */
            assert_true(rc == MMT_ELOAD || rc == MMT_ENOMEM);
            if (rc == MMT_ELOAD) assert_true(strlen(mmt_policy_error(p)) > 0);
            assert_running(log, "A");
            failed_loads++;
        }
        if (!reached) break; /* the whole load ran without meeting the failure */
    }
    assert_true(k < MAX_K);
    if (getenv("MMT_TEST_VERBOSE")) fprintf(stderr, "load path: %ld allocations, %ld failed loads\n", k, failed_loads);
    assert_true(failed_loads > 100); /* the path is long: most failures do stop a load */
    mmt_policy_free(p);
    free_log(log);
}

static void test_faults_engine_evaluation_failure_is_an_error_not_a_crash(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    write_policy("c.lua", "C");
    assert_int_equal(mmt_policy_load(p, policy_path("c.lua")), 0);
    long k;
    int errors = 0;
    for (k = 1; k < MAX_K; k++) {
        clear_log(log);
        arm(k);
        mmt_mem_checkpoint();
        mmt_mem_checkpoint(); /* both edges: fire and resolve run */
        bool reached = disarm();
        errors += log_count(log, "out of memory");
        assert_running(log, "C"); /* and the state is still usable */
        if (!reached) break;
    }
    assert_true(k < MAX_K);
    assert_true(k > 5);
    assert_true(errors > 0);
    mmt_policy_free(p);
    free_log(log);
}

static void test_faults_engine_reload_failure_keeps_the_running_policy(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    const char *path = policy_path("d.lua");
    write_policy("d.lua", "D1");
    assert_int_equal(mmt_policy_load(p, path), 0);
    write_policy("d.lua", "D2");
    long k;
    for (k = 1; k < MAX_K; k++) {
        clear_log(log);
        arm(k);
        int rc = mmt_policy_reload(p);
        bool reached = disarm();
        if (rc == 0) break; /* D2 is in; every earlier k was a clean failure */
        assert_int_equal(rc, MMT_ELOAD);
        assert_running(log, "D1");
        if (!reached) fail_msg("reload failed at k = %ld without meeting the failure", k);
    }
    assert_true(k < MAX_K);
    assert_running(log, "D2");
    mmt_policy_free(p);
    free_log(log);
}

static int64_t never_called(int64_t arg, void *ud)
{
    (void)arg;
    (void)ud;
    return 0;
}

static void test_faults_engine_creation_and_actions_fail_cleanly(void **state)
{
    (void)state;
    for (long k = 1; k < 50; k++) {
        arm(k);
        mmt_policy_t *p = mmt_policy_new(NULL); /* NULL when its memory fails */
        if (p) {
            assert_int_equal(mmt_policy_action(p, "shed", NULL, NULL), MMT_EINVAL);
            int rc = mmt_policy_action(p, "name", never_called, NULL);
            assert_true(rc == 0 || rc == MMT_ENOMEM);
        }
        bool reached = disarm();
        mmt_policy_free(p);
        if (!reached) break;
    }
    mmt_mem_set_checkpoint(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_faults_core_aborts_at_every_failing_allocation_of_a_path),
        cmocka_unit_test(test_faults_engine_load_failure_keeps_the_running_policy),
        cmocka_unit_test(test_faults_engine_evaluation_failure_is_an_error_not_a_crash),
        cmocka_unit_test(test_faults_engine_reload_failure_keeps_the_running_policy),
        cmocka_unit_test(test_faults_engine_creation_and_actions_fail_cleanly),
    };
    return cmocka_run_group_tests_name("faults", tests, make_test_dir, remove_test_dir);
}

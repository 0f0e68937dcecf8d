/*
 * The numbers memory.h promises, measured the way a policy depends on them: when a
 * checkpoint evaluates (one thread, many threads, after a busy evaluation), how far peak
 * may be off, how far a reading taken under churn may exceed the truth, and what a child
 * forked in the middle of another thread's realloc counts. Each test runs several rounds
 * and prints its worst case.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "counters.h"
#include "listeners.h"
#include "testutil.h"

/* ---- A listener that records every evaluation ---------------------------------------- */

static _Atomic long evaluations;
static _Atomic int64_t eval_estimate; /* the fold estimate when the last evaluation ran */
static _Atomic long eval_sleep_ms;    /* the condition sleeps this long (once) */

static int record(const mmt_meminfo_t *info, void *arg)
{
    (void)info, (void)arg;
    atomic_store(&eval_estimate, mmt__published());
    atomic_fetch_add(&evaluations, 1);
    long ms = atomic_exchange(&eval_sleep_ms, 0);
    if (ms) nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL);
    return 0;
}

static void never(const mmt_meminfo_t *info, void *arg)
{
    (void)info, (void)arg;
}

static int listen_recording(size_t distance)
{
    mmt_mem_set_checkpoint(distance);
    int id = mmt_mem_listen(record, never, NULL);
    assert_true(id > 0);
    mmt_mem_checkpoint(); /* a fresh reference point */
    return id;
}

static void stop_listening(int id)
{
    assert_int_equal(mmt_mem_unlisten(id), 0);
    mmt_mem_set_checkpoint((size_t)1 << 20);
}

static uint64_t in_use_now(void)
{
    mmt_meminfo_t m;
    mmt_meminfo(&m);
    return m.in_use;
}

/* Slower runs do less: valgrind 20 times, the sanitizers 4 times. */
static int scaled(int n)
{
    return under_valgrind() ? n / 20 : MMT_TEST_SANITIZED ? n / 4 : n;
}

static uint64_t next_random(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* ---- 1. One thread: the call that moves in_use by d evaluates, whatever d ------------- */

static void test_guarantees_one_thread_evaluates_in_the_call_that_moves_d(void **state)
{
    (void)state;
    static const size_t distances[] = {1000, 4096, 65536, 65537, 100000, (size_t)1 << 20,
                                       3u << 20};
    for (size_t k = 0; k < sizeof distances / sizeof *distances; k++) {
        size_t d = distances[k];
        int id = listen_recording(d);
        long before = atomic_load(&evaluations);
        void *a = mmt_malloc(d - 1);
        assert_int_equal(atomic_load(&evaluations), before);
        void *b = mmt_malloc(1);
        assert_int_equal(atomic_load(&evaluations), before + 1);
        mmt_free(b);
        assert_int_equal(atomic_load(&evaluations), before + 1); /* d - 1 from there */
        mmt_free(a);
        assert_int_equal(atomic_load(&evaluations), before + 2); /* d down */
        stop_listening(id);
    }
}

/* A random walk of a million calls: after every call, in_use is less than d away from
 * where it was at the last evaluation, and no evaluation ran early. */
static void test_guarantees_one_thread_random_walk_is_never_late_nor_early(void **state)
{
    (void)state;
    enum { SLOTS = 512 };
    const int CALLS = scaled(1000000);
    static const size_t distances[] = {65536, 300000, (size_t)1 << 20};
    static void *live[SLOTS];
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    long late = 0, early = 0;
    for (size_t k = 0; k < sizeof distances / sizeof *distances; k++) {
        int64_t d = (int64_t)distances[k];
        int id = listen_recording((size_t)d);
        int64_t in_use = (int64_t)in_use_now();
        int64_t at_eval = in_use;
        for (int i = 0; i < CALLS; i++) {
            void **slot = &live[next_random(&seed) % SLOTS];
            long before = atomic_load_explicit(&evaluations, memory_order_relaxed);
            if (*slot) {
                in_use -= (int64_t)mmt_size(*slot);
                mmt_free(*slot);
                *slot = NULL;
            } else {
                size_t n = next_random(&seed) % (size_t)(d / 8);
                *slot = mmt_malloc(n);
                in_use += (int64_t)n;
            }
            bool evaluated = atomic_load_explicit(&evaluations, memory_order_relaxed) != before;
            int64_t moved = in_use - at_eval;
            if (evaluated) {
                if (moved < d && moved > -d) early++;
                at_eval = in_use;
            } else if (moved >= d || moved <= -d) {
                late++;
            }
        }
        for (int i = 0; i < SLOTS; i++) {
            mmt_free(live[i]);
            live[i] = NULL;
        }
        stop_listening(id);
    }
    print_message("%d calls at each of 3 distances: %ld late, %ld early\n", CALLS, late, early);
    assert_int_equal(late, 0);
    assert_int_equal(early, 0);
}

/* ---- 2. Many threads: late by less than the stated bound; a busy evaluation retried --- */

enum { MANY = 16 };
static pthread_barrier_t start_line, hold_line;

/* Each thread registers, folds once with every thread counted, then takes its block. */
static void *start_holding(size_t n)
{
    mmt_free(mmt_malloc(1)); /* registered */
    pthread_barrier_wait(&start_line);
    mmt_free(mmt_malloc(256 * 1024)); /* a fold with every thread counted */
    pthread_barrier_wait(&start_line);
    return mmt_malloc(n);
}

static void *hold_and_release(void *arg)
{
    void *p = start_holding(*(size_t *)arg);
    pthread_barrier_wait(&hold_line); /* main looks here */
    pthread_barrier_wait(&hold_line);
    mmt_free(p);
    return NULL;
}

/* hold_and_release, and one more operation while holding: a thread whose checkpoint found
 * another thread evaluating tries again at its next operation (memory.h); each makes one
 * once the evaluations of the first are over. */
static void *hold_retry_and_release(void *arg)
{
    void *p = start_holding(*(size_t *)arg);
    pthread_barrier_wait(&hold_line);
    pthread_barrier_wait(&hold_line);
    mmt_free(mmt_malloc(1));
    pthread_barrier_wait(&hold_line); /* main looks here */
    pthread_barrier_wait(&hold_line);
    mmt_free(p);
    return NULL;
}

/* memory.h: each thread holds back less than W = min(64 KiB, max(4 KiB, d / N)), so in all
 * less than max(d, N * 4 KiB); an evaluation runs before the estimate moves d. */
static void test_guarantees_threads_holding_blocks_are_evaluated_within_the_bound(void **state)
{
    (void)state;
    static const size_t distances[] = {65536, 256 * 1024, (size_t)1 << 20};
    int64_t worst = 0;
    for (size_t k = 0; k < sizeof distances / sizeof *distances; k++) {
        for (int round = 0; round < 5; round++) {
            int64_t d = (int64_t)distances[k];
            int id = listen_recording((size_t)d);
            size_t hold = (size_t)d - 1; /* each below d: only their sum is due */
            pthread_t t[MANY];
            pthread_barrier_init(&start_line, NULL, MANY);
            pthread_barrier_init(&hold_line, NULL, MANY + 1);
            for (int i = 0; i < MANY; i++)
                assert_int_equal(pthread_create(&t[i], NULL, hold_retry_and_release, &hold), 0);
            pthread_barrier_wait(&hold_line);
            /* All hold their block; an evaluation one of them started may still run. */
            nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
            pthread_barrier_wait(&hold_line);
            pthread_barrier_wait(&hold_line);
            /* All made their next operation; nobody is inside mmt. */
            int64_t n = (int64_t)mmt__threads_counted();
            int64_t held_back = d > n * 4096 ? d : n * 4096;
            int64_t moved = (int64_t)in_use_now() - atomic_load(&eval_estimate);
            if (moved < 0) moved = -moved;
            if (moved - d > worst) worst = moved - d;
            /* The estimate at the last evaluation lagged in_use by less than held_back too. */
            if (moved >= d + 2 * held_back)
                fail_msg("d %lld, %lld threads: in_use %lld past the last evaluation, bound %lld",
                         (long long)d, (long long)n, (long long)moved,
                         (long long)(d + 2 * held_back));
            assert_true(atomic_load(&evaluations) > 0);
            pthread_barrier_wait(&hold_line);
            for (int i = 0; i < MANY; i++) pthread_join(t[i], NULL);
            pthread_barrier_destroy(&start_line);
            pthread_barrier_destroy(&hold_line);
            stop_listening(id);
        }
    }
    print_message("16 threads each holding d - 1: worst %lld bytes past d since the last "
                  "evaluation\n", (long long)worst);
}

static _Atomic bool busy_started;

static void *evaluate_slowly(void *arg)
{
    (void)arg;
    /* Long enough for the other thread's operations meanwhile, even under a sanitizer. */
    atomic_store(&eval_sleep_ms, under_valgrind() || MMT_TEST_SANITIZED ? 3000 : 300);
    atomic_store(&busy_started, true);
    mmt_mem_checkpoint(); /* the condition sleeps 300 ms inside */
    return NULL;
}

/* While one thread evaluates for 300 ms, another moves in_use by many distances; its
 * first operation after the evaluation ends evaluates. */
static void test_guarantees_an_allocation_after_a_busy_evaluation_retries(void **state)
{
    (void)state;
    int id = listen_recording(64 * 1024);
    pthread_t slow;
    atomic_store(&busy_started, false);
    assert_int_equal(pthread_create(&slow, NULL, evaluate_slowly, NULL), 0);
    while (!atomic_load(&busy_started) || atomic_load(&eval_sleep_ms) != 0) sched_yield();
    long during = atomic_load(&evaluations);
    enum { BLOCKS = 512 };
    static void *b[BLOCKS];
    for (int i = 0; i < BLOCKS; i++) b[i] = mmt_malloc(64 * 1024); /* 32 MiB */
    assert_int_equal(atomic_load(&evaluations), during); /* all found it busy */
    pthread_join(slow, NULL);
    long after = atomic_load(&evaluations);
    void *one = mmt_malloc(16);
    assert_int_equal(atomic_load(&evaluations), after + 1);
    int64_t moved = (int64_t)in_use_now() - atomic_load(&eval_estimate);
    assert_true(moved < 64 * 1024 && moved > -64 * 1024);
    mmt_free(one);
    for (int i = 0; i < BLOCKS; i++) mmt_free(b[i]);
    stop_listening(id);
}

/* A checkpoint hook that could not run (its engine busy) is run again, alone, at most once
 * a millisecond, by an operation within 4 KiB of movement; listeners are not evaluated
 * again before in_use has moved the distance. */
static _Atomic int hook_refusals, hook_calls, plain_calls;

static bool refusing_hook(const mmt_meminfo_t *info, void *arg)
{
    (void)info, (void)arg;
    atomic_fetch_add(&hook_calls, 1);
    if (atomic_load(&hook_refusals) > 0) {
        atomic_fetch_sub(&hook_refusals, 1);
        return false;
    }
    return true;
}

static int count_plain(const mmt_meminfo_t *info, void *arg)
{
    (void)info, (void)arg;
    atomic_fetch_add(&plain_calls, 1);
    return 0;
}

static void test_guarantees_a_busy_checkpoint_hook_is_retried_alone(void **state)
{
    (void)state;
    mmt_mem_set_checkpoint(64 * 1024);
    int hook = mmt__on_checkpoint(refusing_hook, NULL);
    int plain = mmt_mem_listen(count_plain, never, NULL);
    assert_true(hook > 0 && plain > 0);
    mmt_mem_checkpoint();
    atomic_store(&hook_calls, 0);
    atomic_store(&plain_calls, 0);
    atomic_store(&hook_refusals, 3);
    void *big = mmt_malloc(64 * 1024); /* due: the listener runs, the hook refuses */
    assert_int_equal(atomic_load(&hook_calls), 1);
    assert_int_equal(atomic_load(&plain_calls), 1);
    void *small[6];
    for (int i = 0; i < 6; i++) {
        nanosleep(&(struct timespec){0, 5000000}, NULL); /* past the millisecond */
        small[i] = mmt_malloc(4096); /* refused twice more, then runs */
    }
    assert_int_equal(atomic_load(&hook_calls), 4);
    assert_int_equal(atomic_load(&plain_calls), 1); /* not before the distance */
    for (int i = 0; i < 6; i++) mmt_free(small[i]);
    mmt_free(big);
    assert_int_equal(atomic_load(&hook_calls), 5); /* 64 KiB down: due for both */
    assert_int_equal(atomic_load(&plain_calls), 2);
    assert_int_equal(mmt_mem_unlisten(hook), 0);
    assert_int_equal(mmt_mem_unlisten(plain), 0);
    mmt_mem_set_checkpoint((size_t)1 << 20);
}

/* A checkpoint that found an evaluation running is retried by the thread's next operation
 * in either direction: a thread that only frees and reallocates below its high point
 * retries too. */
static void test_guarantees_a_missed_checkpoint_is_retried_churning_below_the_high(void **state)
{
    (void)state;
    int id = listen_recording(1 << 20);
    void *q = mmt_malloc(4096);
    pthread_t slow;
    atomic_store(&busy_started, false);
    assert_int_equal(pthread_create(&slow, NULL, evaluate_slowly, NULL), 0);
    while (!atomic_load(&busy_started) || atomic_load(&eval_sleep_ms) != 0) sched_yield();
    void *big = mmt_malloc(1 << 20); /* due, but busy */
    long during = atomic_load(&evaluations);
    pthread_join(slow, NULL);
    mmt_free(q); /* the first operation after: down, below the high point */
    assert_int_equal(atomic_load(&evaluations), during + 1);
    mmt_free(big);
    stop_listening(id);
}

/* ---- 6. Peak with the checkpoint distance 0 ------------------------------------------ */

static void test_guarantees_peak_without_checkpoints_is_within_its_bound(void **state)
{
    (void)state;
    mmt_mem_set_checkpoint(0);
    int64_t worst = 0;
    enum { ROUNDS = 5, BALLAST = 4 << 20 };
    void *ballast[ROUNDS];
    for (int round = 0; round < ROUNDS; round++) {
        /* Each round starts 4 MiB higher than the last one's top, so its peak is its own. */
        ballast[round] = mmt_malloc(BALLAST);
        size_t hold = 65535; /* just under the widest window: nothing folds */
        pthread_t t[MANY];
        mmt_meminfo_t before;
        mmt_meminfo(&before);
        assert_true(before.peak < before.in_use + hold);
        pthread_barrier_init(&start_line, NULL, MANY);
        pthread_barrier_init(&hold_line, NULL, MANY + 1);
        for (int i = 0; i < MANY; i++)
            assert_int_equal(pthread_create(&t[i], NULL, hold_and_release, &hold), 0);
        pthread_barrier_wait(&hold_line);
        pthread_barrier_wait(&hold_line); /* released unread: peak comes from folds only */
        for (int i = 0; i < MANY; i++) pthread_join(t[i], NULL);
        pthread_barrier_destroy(&start_line);
        pthread_barrier_destroy(&hold_line);
        mmt_meminfo_t m;
        mmt_meminfo(&m);
        int64_t truth = (int64_t)(before.in_use + MANY * hold);
        int64_t err = (int64_t)m.peak - truth;
        if (err < 0 ? -err > worst : err > worst) worst = err < 0 ? -err : err;
        /* memory.h: less than 2 * N * 64 KiB, N the threads that allocated (+ main). */
        assert_true(err < 2 * (MANY + 1) * MMT__WINDOW_MAX && -err < 2 * (MANY + 1) * MMT__WINDOW_MAX);
    }
    for (int round = 0; round < ROUNDS; round++) mmt_free(ballast[round]);
    mmt_mem_set_checkpoint((size_t)1 << 20);
    print_message("peak with 16 threads, distance 0: worst %lld bytes off, bound %lld\n",
                  (long long)worst, (long long)(2 * (MANY + 1) * MMT__WINDOW_MAX));
}

/* ---- 7. A reading under churn never exceeds the truth by more than the slack ---------- */

enum { CHURNERS = 3, BLOCK_MAX = 8 << 20, CEILING = 6 * BLOCK_MAX };
static _Atomic bool churn_stop;

static void *churn_up_to_ceiling(void *arg)
{
    uint64_t seed = (uintptr_t)arg * 0x2545f4914f6cdd1dull + 1;
    while (!atomic_load_explicit(&churn_stop, memory_order_relaxed)) {
        /* At most CEILING bytes held at a time, in blocks of up to 8 MiB. */
        void *p[6];
        for (int i = 0; i < 6; i++) p[i] = mmt_malloc(next_random(&seed) % BLOCK_MAX + 1);
        for (int i = 0; i < 6; i++) mmt_free(p[i]);
    }
    return NULL;
}

static void test_guarantees_readings_under_churn_stay_under_truth_plus_slack(void **state)
{
    (void)state;
    uint64_t base = in_use_now();
    pthread_t t[CHURNERS];
    atomic_store(&churn_stop, false);
    for (long i = 0; i < CHURNERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, churn_up_to_ceiling, (void *)(i + 1)), 0);
    uint64_t ceiling = base + (uint64_t)CHURNERS * CEILING;
    uint64_t worst = 0;
    long readings = 0, over = 0;
    double end = (double)time(NULL) + (under_valgrind() ? 1 : 3);
    while ((double)time(NULL) < end) {
        for (int i = 0; i < 1000; i++, readings++) {
            mmt_meminfo_t m;
            mmt_meminfo(&m);
            assert_true(m.freed <= m.allocated);
            assert_int_equal(m.in_use, m.allocated - m.freed);
            if (m.in_use > ceiling) {
                over++;
                if (m.in_use - ceiling > worst) worst = m.in_use - ceiling;
            }
        }
    }
    atomic_store(&churn_stop, true);
    for (int i = 0; i < CHURNERS; i++) pthread_join(t[i], NULL);
    /* Peak too: the readings' estimates never lift it past the ceiling by more than the
     * bound (memory.h: 2 * N * 64 KiB, N the churners and this thread). */
    mmt_meminfo_t m;
    mmt_meminfo(&m);
    uint64_t bound = 2 * (CHURNERS + 1) * (uint64_t)MMT__WINDOW_MAX;
    print_message("%ld readings under churn: %ld above the true ceiling, worst by %llu bytes "
                  "(slack %llu); peak %lld bytes from the ceiling (bound %llu)\n", readings,
                  over, (unsigned long long)worst, (unsigned long long)MMT__READ_SLACK,
                  (long long)(m.peak - ceiling), (unsigned long long)bound);
    assert_true(worst <= MMT__READ_SLACK);
    assert_true(m.peak <= ceiling + bound);
}

/* ---- 5. fork while another thread reallocs, mallocs and frees ------------------------- */

enum { SMALL = 1000, LARGE = 3000, SOLO = 777 };
static _Atomic bool resize_stop, resizing;

static void *resize_forever(void *arg)
{
    (void)arg;
    void *p = mmt_malloc(SMALL);
    atomic_store(&resizing, true);
    for (unsigned long i = 0; !atomic_load_explicit(&resize_stop, memory_order_relaxed); i++) {
        p = mmt_realloc(p, i % 2 ? SMALL : LARGE);
        mmt_free(mmt_malloc(SOLO));
    }
    mmt_free(p);
    return NULL;
}

/* Forks FORKS children while a thread resizes its block; each child checks that its in_use
 * counts that block at one of its sizes (and perhaps the SOLO block in flight, which
 * exists in the child), never both sizes. Returns the children that saw something else. */
static int forks_with_phantoms(int forks, uint64_t base)
{
    int bad = 0;
    for (int i = 0; i < forks; i++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            uint64_t got = in_use_now() - base;
            bool ok = got == SMALL || got == LARGE || got == SMALL + SOLO || got == LARGE + SOLO;
            end_child(ok ? 0 : 1);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) != 0) bad++;
    }
    return bad;
}

static void test_guarantees_a_child_forked_during_a_realloc_counts_one_size(void **state)
{
    (void)state;
    const int FORKS = scaled(2000);
    uint64_t base = in_use_now();
    atomic_store(&resize_stop, false);
    atomic_store(&resizing, false);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, resize_forever, NULL), 0);
    while (!atomic_load(&resizing)) sched_yield();
    int bad = forks_with_phantoms(FORKS, base);
    atomic_store(&resize_stop, true);
    pthread_join(t, NULL);
    print_message("%d forks during reallocs: %d children counted the block at both sizes\n",
                  FORKS, bad);
    assert_int_equal(bad, 0);
}

/* ---- fork handlers of the program's own, registered before mmt's ---------------------- */

/* mmt registers its pthread_atfork handlers when it is loaded, before any of the program's:
 * the program's prepare handlers run before mmt's and its parent and child handlers after.
 * A parent or child handler may reallocate, and a prepare handler may wait for a lock
 * another thread holds while it reallocates (its first allocation, which registers its
 * counter slot, included): no fork waits on either. */
static pthread_mutex_t program_lock = PTHREAD_MUTEX_INITIALIZER;
static void *handler_block;
static _Atomic bool handler_thread_stop, handlers_on; /* on during that test only */

static void program_prepare(void)
{
    if (atomic_load(&handlers_on)) pthread_mutex_lock(&program_lock);
}

static void program_after(void)
{
    if (!atomic_load(&handlers_on)) return;
    handler_block = mmt_realloc(handler_block, mmt_size(handler_block) % 4096 + 16);
    pthread_mutex_unlock(&program_lock);
}

static void *realloc_under_the_programs_lock(void *arg)
{
    (void)arg;
    void *p = NULL;
    while (!atomic_load_explicit(&handler_thread_stop, memory_order_relaxed)) {
        pthread_mutex_lock(&program_lock);
        p = mmt_realloc(p, mmt_size(p) % 8192 + 64);
        pthread_mutex_unlock(&program_lock);
    }
    mmt_free(p);
    return NULL;
}

static void test_guarantees_the_programs_fork_handlers_may_reallocate(void **state)
{
    (void)state;
    const int forks = scaled(500);
    handler_block = mmt_malloc(16);
    atomic_store(&handler_thread_stop, false);
    atomic_store(&handlers_on, true);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, realloc_under_the_programs_lock, NULL), 0);
    for (int i = 0; i < forks; i++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) end_child(mmt_size(handler_block) > 0 ? 0 : 1);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    atomic_store(&handler_thread_stop, true);
    pthread_join(t, NULL);
    atomic_store(&handlers_on, false);
    mmt_free(handler_block);
}

int main(void)
{
    pthread_atfork(program_prepare, program_after, program_after);
    const struct CMUnitTest tests[] = {
        /* First: the others raise peak far above what it measures. */
        cmocka_unit_test(test_guarantees_peak_without_checkpoints_is_within_its_bound),
        /* Second: its peak check needs the peak below its own ceiling. */
        cmocka_unit_test(test_guarantees_readings_under_churn_stay_under_truth_plus_slack),
        cmocka_unit_test(test_guarantees_one_thread_evaluates_in_the_call_that_moves_d),
        cmocka_unit_test(test_guarantees_one_thread_random_walk_is_never_late_nor_early),
        cmocka_unit_test(test_guarantees_threads_holding_blocks_are_evaluated_within_the_bound),
        cmocka_unit_test(test_guarantees_an_allocation_after_a_busy_evaluation_retries),
        cmocka_unit_test(test_guarantees_a_busy_checkpoint_hook_is_retried_alone),
        cmocka_unit_test(test_guarantees_a_missed_checkpoint_is_retried_churning_below_the_high),
        cmocka_unit_test(test_guarantees_a_child_forked_during_a_realloc_counts_one_size),
        cmocka_unit_test(test_guarantees_the_programs_fork_handlers_may_reallocate),
    };
    return cmocka_run_group_tests_name("guarantees", tests, NULL, NULL);
}

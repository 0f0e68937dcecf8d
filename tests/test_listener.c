/*
 * Listeners: rising-edge firing, where evaluation happens, re-entrancy from inside
 * actions, and how evaluation on one thread interacts with allocation on another.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "testutil.h"

/* A condition "in_use is above `mark`" that counts how often it is asked and fired. */
typedef struct watch {
    uint64_t mark;
    atomic_int evaluated;
    atomic_int fired;
    uint64_t in_use_seen; /* in_use at the last evaluation */
} watch_t;

static int above_mark(const mmt_meminfo_t *m, void *arg)
{
    watch_t *w = arg;
    atomic_fetch_add(&w->evaluated, 1);
    w->in_use_seen = m->in_use;
    return m->in_use > w->mark;
}

static void count_fire(const mmt_meminfo_t *m, void *arg)
{
    (void)m;
    watch_t *w = arg;
    atomic_fetch_add(&w->fired, 1);
}

static int teardown_checkpoint(void **state)
{
    (void)state;
    mmt_mem_set_checkpoint(1 << 20);
    return 0;
}

static void test_listener_fires_once_on_rising_edge(void **state)
{
    (void)state;
    mmt_mem_set_checkpoint(0);
    watch_t w = {.mark = meminfo_now().in_use + 10000};
    int id = mmt_mem_listen(above_mark, count_fire, &w);
    assert_true(id > 0);

    mmt_mem_checkpoint(); /* below the mark */
    assert_int_equal(w.evaluated, 1);
    assert_int_equal(w.fired, 0);

    void *big = mmt_malloc(20000);
    mmt_mem_checkpoint(); /* rising edge */
    mmt_mem_checkpoint(); /* still above: no second firing */
    mmt_mem_checkpoint();
    assert_int_equal(w.evaluated, 4);
    assert_int_equal(w.fired, 1);

    mmt_free(big);
    mmt_mem_checkpoint(); /* falls */
    assert_int_equal(w.fired, 1);
    big = mmt_malloc(20000);
    mmt_mem_checkpoint(); /* rises again */
    assert_int_equal(w.fired, 2);
    mmt_free(big);
    assert_int_equal(mmt_mem_unlisten(id), 0);
}

static void test_listener_new_listener_fires_if_condition_already_holds(void **state)
{
    (void)state;
    mmt_mem_set_checkpoint(0);
    watch_t w = {.mark = 0};
    void *p = mmt_malloc(1);
    int id = mmt_mem_listen(above_mark, count_fire, &w);
    mmt_mem_checkpoint();
    assert_int_equal(w.fired, 1);
    mmt_free(p);
    mmt_mem_unlisten(id);
}

static void test_listener_evaluates_inside_the_call_that_crosses_the_distance(void **state)
{
    (void)state;
    enum { DISTANCE = 10000, STEP = 1000 };
    mmt_mem_set_checkpoint(DISTANCE);
    watch_t w = {.mark = UINT64_MAX};
    int id = mmt_mem_listen(above_mark, count_fire, &w);
    mmt_mem_checkpoint(); /* the baseline: in_use here */
    uint64_t base = meminfo_now().in_use;
    int before = w.evaluated;

    void *blocks[10];
    for (int i = 0; i < 9; i++) {
        blocks[i] = mmt_malloc(STEP);
        assert_int_equal(w.evaluated, before); /* moved 1000 .. 9000: not yet */
    }
    blocks[9] = mmt_malloc(STEP); /* moved 10000: this call evaluates */
    assert_int_equal(w.evaluated, before + 1);
    assert_int_equal(w.in_use_seen, base + DISTANCE);

    for (int i = 0; i < 9; i++) mmt_free(blocks[i]);
    assert_int_equal(w.evaluated, before + 1);
    mmt_free(blocks[9]); /* moving down counts too */
    assert_int_equal(w.evaluated, before + 2);
    assert_int_equal(w.in_use_seen, base);
    mmt_mem_unlisten(id);
}

static void test_listener_zero_distance_means_explicit_checkpoints_only(void **state)
{
    (void)state;
    mmt_mem_set_checkpoint(0);
    watch_t w = {.mark = UINT64_MAX};
    int id = mmt_mem_listen(above_mark, count_fire, &w);
    for (int i = 0; i < 100; i++) mmt_free(mmt_malloc(1 << 20));
    assert_int_equal(w.evaluated, 0);
    mmt_mem_checkpoint();
    assert_int_equal(w.evaluated, 1);
    mmt_mem_unlisten(id);
}

/* ---- Actions that allocate and re-enter -------------------------------------------------- */

typedef struct allocating {
    watch_t w;
    void *kept;
} allocating_t;

static void allocate_a_lot(const mmt_meminfo_t *m, void *arg)
{
    (void)m;
    allocating_t *a = arg;
    atomic_fetch_add(&a->w.fired, 1);
    /* Far past the checkpoint distance, both ways: must not evaluate again. */
    for (int i = 0; i < 50; i++) mmt_free(mmt_malloc(100000));
    a->kept = mmt_malloc(50000);
    mmt_mem_checkpoint(); /* explicit, but inside an action: does nothing */
}

static void test_listener_action_may_allocate_without_recursing(void **state)
{
    (void)state;
    mmt_mem_set_checkpoint(4096);
    allocating_t a = {.w = {.mark = 0}};
    int id = mmt_mem_listen(above_mark, allocate_a_lot, &a);
    void *p = mmt_malloc(5000); /* crosses: evaluates, fires, the action allocates */
    assert_int_equal(a.w.fired, 1);
    assert_int_equal(a.w.evaluated, 1);
    assert_non_null(a.kept);
    assert_int_equal(mmt_size(a.kept), 50000);
    mmt_mem_unlisten(id);
    mmt_free(a.kept);
    mmt_free(p);
}

typedef struct reentrant {
    int self_id;
    int added_id;
    watch_t added;
    atomic_int runs;
} reentrant_t;

static int always(const mmt_meminfo_t *m, void *arg)
{
    (void)m;
    (void)arg;
    return 1;
}

/* Registers a new listener, then removes itself. */
static void listen_and_leave(const mmt_meminfo_t *m, void *arg)
{
    (void)m;
    reentrant_t *r = arg;
    atomic_fetch_add(&r->runs, 1);
    r->added_id = mmt_mem_listen(above_mark, count_fire, &r->added);
    assert_true(r->added_id > 0);
    assert_int_equal(mmt_mem_unlisten(r->self_id), 0);
}

static void test_listener_listen_and_unlisten_work_from_inside_an_action(void **state)
{
    (void)state;
    mmt_mem_set_checkpoint(0);
    reentrant_t r = {.added = {.mark = 0}};
    r.self_id = mmt_mem_listen(always, listen_and_leave, &r);
    void *p = mmt_malloc(1);
    mmt_mem_checkpoint();
    assert_int_equal(r.runs, 1);
    assert_int_equal(r.added.evaluated, 0); /* added during the pass: waits for the next */
    mmt_mem_checkpoint();
    assert_int_equal(r.runs, 1); /* it removed itself */
    assert_int_equal(r.added.evaluated, 1);
    assert_int_equal(r.added.fired, 1);
    assert_int_equal(mmt_mem_unlisten(r.self_id), MMT_ENOENT);
    assert_int_equal(mmt_mem_unlisten(r.added_id), 0);
    mmt_free(p);
}

typedef struct pair {
    int other_id;
    watch_t other;
} pair_t;

static void remove_other(const mmt_meminfo_t *m, void *arg)
{
    (void)m;
    pair_t *p = arg;
    mmt_mem_unlisten(p->other_id);
}

static void test_listener_removed_during_a_pass_is_not_called(void **state)
{
    (void)state;
    mmt_mem_set_checkpoint(0);
    pair_t p = {.other = {.mark = 0}};
    int first = mmt_mem_listen(always, remove_other, &p); /* runs first: lower id */
    p.other_id = mmt_mem_listen(above_mark, count_fire, &p.other);
    void *keep = mmt_malloc(1);
    mmt_mem_checkpoint();
    assert_int_equal(p.other.evaluated, 0);
    mmt_mem_unlisten(first);
    mmt_free(keep);
}

static void test_listener_bad_arguments_are_errors(void **state)
{
    (void)state;
    watch_t w = {0};
    assert_int_equal(mmt_mem_listen(NULL, count_fire, &w), MMT_EINVAL);
    assert_int_equal(mmt_mem_listen(above_mark, NULL, &w), MMT_EINVAL);
    assert_int_equal(mmt_mem_unlisten(0), MMT_ENOENT);
    assert_int_equal(mmt_mem_unlisten(-5), MMT_ENOENT);
    int id = mmt_mem_listen(above_mark, count_fire, &w);
    assert_int_equal(mmt_mem_unlisten(id), 0);
    assert_int_equal(mmt_mem_unlisten(id), MMT_ENOENT);
}

/* ---- Evaluation and other threads ---------------------------------------------------------- */

static void deadline(struct timespec *ts, int seconds)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += seconds;
}

typedef struct blocking {
    sem_t entered;    /* the action has started */
    sem_t other_done; /* the other thread finished its allocations */
    atomic_bool saw_other_done;
    atomic_int evaluated;
} blocking_t;

static int count_always(const mmt_meminfo_t *m, void *arg)
{
    (void)m;
    blocking_t *b = arg;
    atomic_fetch_add(&b->evaluated, 1);
    return 1;
}

/* Waits, inside the action, for the other thread to finish allocating. */
static void wait_for_other(const mmt_meminfo_t *m, void *arg)
{
    (void)m;
    blocking_t *b = arg;
    sem_post(&b->entered);
    struct timespec ts;
    deadline(&ts, 10);
    int rc;
    while ((rc = sem_timedwait(&b->other_done, &ts)) != 0 && errno == EINTR) {
    }
    atomic_store(&b->saw_other_done, rc == 0);
}

static void *evaluate_on_this_thread(void *arg)
{
    (void)arg;
    mmt_mem_checkpoint();
    return NULL;
}

static void test_listener_checkpoint_never_blocks_allocation_on_another_thread(void **state)
{
    (void)state;
    mmt_mem_set_checkpoint(4096);
    blocking_t b = {0};
    sem_init(&b.entered, 0, 0);
    sem_init(&b.other_done, 0, 0);
    int id = mmt_mem_listen(count_always, wait_for_other, &b);

    pthread_t t;
    pthread_create(&t, NULL, evaluate_on_this_thread, NULL);
    sem_wait(&b.entered);
    /* The evaluation is now parked in the action. Allocations here cross the checkpoint
     * distance hundreds of times; each finds the evaluation busy and goes on. */
    int evaluated = atomic_load(&b.evaluated);
    for (int i = 0; i < 1000; i++) mmt_free(mmt_malloc(8192));
    assert_int_equal(atomic_load(&b.evaluated), evaluated);
    sem_post(&b.other_done);
    pthread_join(t, NULL);
    assert_true(atomic_load(&b.saw_other_done));

    mmt_mem_unlisten(id);
    sem_destroy(&b.entered);
    sem_destroy(&b.other_done);
}

typedef struct slow {
    sem_t entered;
    atomic_bool finished;
} slow_t;

static void slow_action(const mmt_meminfo_t *m, void *arg)
{
    (void)m;
    slow_t *s = arg;
    sem_post(&s->entered);
    struct timespec nap = {0, 200 * 1000 * 1000};
    nanosleep(&nap, NULL);
    atomic_store(&s->finished, true);
}

static void test_listener_unlisten_from_another_thread_waits_for_running_action(void **state)
{
    (void)state;
    mmt_mem_set_checkpoint(0);
    slow_t s = {0};
    sem_init(&s.entered, 0, 0);
    int id = mmt_mem_listen(always, slow_action, &s);
    void *keep = mmt_malloc(1);
    pthread_t t;
    pthread_create(&t, NULL, evaluate_on_this_thread, NULL);
    sem_wait(&s.entered);
    assert_int_equal(mmt_mem_unlisten(id), 0);
    /* Once unlisten returns, the action is over: its argument may be freed. */
    assert_true(atomic_load(&s.finished));
    pthread_join(t, NULL);
    sem_destroy(&s.entered);
    mmt_free(keep);
}

/* Threads that listen, unlisten and allocate while another thread evaluates. */
static atomic_bool churn_stop;
static void *listen_churn(void *arg)
{
    (void)arg;
    watch_t w = {.mark = 0};
    while (!atomic_load(&churn_stop)) {
        int id = mmt_mem_listen(above_mark, count_fire, &w);
        void *p = mmt_malloc(3000);
        assert_int_equal(mmt_mem_unlisten(id), 0);
        mmt_free(p);
    }
    return NULL;
}

static void test_listener_listen_and_unlisten_are_safe_from_any_thread(void **state)
{
    (void)state;
    mmt_mem_set_checkpoint(2048);
    mmt_meminfo_t before = meminfo_now();
    pthread_t t[2];
    atomic_store(&churn_stop, false);
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, listen_churn, NULL);
    for (int i = 0; i < 2000; i++) mmt_mem_checkpoint();
    atomic_store(&churn_stop, true);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    assert_int_equal(meminfo_now().in_use, before.in_use);
}

/* ---- Scale ----------------------------------------------------------------------------------- */

static int never(const mmt_meminfo_t *m, void *arg)
{
    (void)m;
    (void)arg;
    return 0;
}

static void ignore(const mmt_meminfo_t *m, void *arg)
{
    (void)m;
    (void)arg;
}

/* Seconds one explicit checkpoint takes with `n` listeners (the best of three), which
 * are then removed. */
static double checkpoint_with(int n, int *ids)
{
    for (int i = 0; i < n; i++) ids[i] = mmt_mem_listen(never, ignore, NULL);
    double best = 1e9;
    for (int round = 0; round < 3; round++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        mmt_mem_checkpoint();
        clock_gettime(CLOCK_MONOTONIC, &b);
        double t = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
        if (t < best) best = t;
    }
    for (int i = 0; i < n; i++) assert_int_equal(mmt_mem_unlisten(ids[i]), 0);
    return best;
}

static void test_listener_a_pass_is_linear_in_the_number_of_listeners(void **state)
{
    (void)state;
    mmt_mem_set_checkpoint(0);
    static int ids[30000];
    double small = checkpoint_with(3000, ids);
    double large = checkpoint_with(30000, ids); /* ten times the listeners... */
    /* ...in about ten times the time; a pass that looks each one up from the start of
     * the list would take a hundred. */
    if (large > 30 * small + 0.002)
        fail_msg("a checkpoint takes %.6f s with 3,000 listeners, %.6f s with 30,000", small,
                 large);
    /* Unlistening them all is not quadratic either (the last call did 30,000). */
    double t0 = (double)clock() / CLOCKS_PER_SEC;
    for (int i = 0; i < 30000; i++) ids[i] = mmt_mem_listen(never, ignore, NULL);
    for (int i = 29999; i >= 0; i -= 2) assert_int_equal(mmt_mem_unlisten(ids[i]), 0);
    for (int i = 0; i < 30000; i += 2) assert_int_equal(mmt_mem_unlisten(ids[i]), 0);
    assert_true((double)clock() / CLOCKS_PER_SEC - t0 < 60 * small + 0.5);
}

/* An action that adds a listener like itself: each pass adds one, and returns. */
static atomic_int chain_length;
static int always_holds(const mmt_meminfo_t *m, void *arg)
{
    (void)m;
    (void)arg;
    return 1;
}

static void add_another(const mmt_meminfo_t *m, void *arg)
{
    (void)m;
    (void)arg;
    atomic_fetch_add(&chain_length, 1);
    mmt_mem_listen(always_holds, add_another, NULL);
}

static void grow_a_chain(void *arg)
{
    (void)arg;
    alarm(10); /* a pass that never ends fails the test instead of hanging it */
    mmt_mem_set_checkpoint(0);
    mmt_mem_listen(always_holds, add_another, NULL);
    for (int pass = 1; pass <= 5; pass++) {
        mmt_mem_checkpoint();
        if (atomic_load(&chain_length) != pass) _exit(10 + pass);
    }
    _exit(0);
}

static void test_listener_added_during_a_pass_waits_for_the_next(void **state)
{
    (void)state;
    child_result_t r = run_in_child(grow_a_chain, NULL);
    if (r.signal || r.exit_code)
        fail_msg("child: signal %d, exit %d (SIGALRM is %d)", r.signal, r.exit_code, SIGALRM);
}

/* An action that adds many listeners (the table grows, and moves, under the pass) and
 * removes one the pass has not reached yet. */
typedef struct crowd {
    int later_id;
    watch_t later, added[40];
    int added_ids[40];
} crowd_t;

static void add_a_crowd(const mmt_meminfo_t *m, void *arg)
{
    (void)m;
    crowd_t *c = arg;
    for (int i = 0; i < 40; i++) c->added_ids[i] = mmt_mem_listen(above_mark, count_fire, &c->added[i]);
    assert_int_equal(mmt_mem_unlisten(c->later_id), 0);
}

static void test_listener_a_pass_survives_the_table_growing_and_shrinking_under_it(void **state)
{
    (void)state;
    mmt_mem_set_checkpoint(0);
    static crowd_t c;
    memset(&c, 0, sizeof c);
    int first = mmt_mem_listen(always, add_a_crowd, &c);
    c.later_id = mmt_mem_listen(above_mark, count_fire, &c.later);
    void *keep = mmt_malloc(1);
    mmt_mem_checkpoint();
    assert_int_equal(c.later.evaluated, 0); /* removed before the pass reached it */
    for (int i = 0; i < 40; i++) assert_int_equal(c.added[i].evaluated, 0);
    assert_int_equal(mmt_mem_unlisten(first), 0);
    mmt_mem_checkpoint();
    for (int i = 0; i < 40; i++) {
        assert_int_equal(c.added[i].evaluated, 1);
        assert_int_equal(c.added[i].fired, 1);
        assert_int_equal(mmt_mem_unlisten(c.added_ids[i]), 0);
    }
    assert_int_equal(mmt_mem_unlisten(c.later_id), MMT_ENOENT);
    mmt_free(keep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_listener_fires_once_on_rising_edge, teardown_checkpoint),
        cmocka_unit_test_teardown(test_listener_new_listener_fires_if_condition_already_holds,
                                  teardown_checkpoint),
        cmocka_unit_test_teardown(test_listener_evaluates_inside_the_call_that_crosses_the_distance,
                                  teardown_checkpoint),
        cmocka_unit_test_teardown(test_listener_zero_distance_means_explicit_checkpoints_only,
                                  teardown_checkpoint),
        cmocka_unit_test_teardown(test_listener_action_may_allocate_without_recursing,
                                  teardown_checkpoint),
        cmocka_unit_test_teardown(test_listener_listen_and_unlisten_work_from_inside_an_action,
                                  teardown_checkpoint),
        cmocka_unit_test_teardown(test_listener_removed_during_a_pass_is_not_called,
                                  teardown_checkpoint),
        cmocka_unit_test(test_listener_bad_arguments_are_errors),
        cmocka_unit_test_teardown(test_listener_checkpoint_never_blocks_allocation_on_another_thread,
                                  teardown_checkpoint),
        cmocka_unit_test_teardown(
            test_listener_unlisten_from_another_thread_waits_for_running_action,
            teardown_checkpoint),
        cmocka_unit_test_teardown(test_listener_listen_and_unlisten_are_safe_from_any_thread,
                                  teardown_checkpoint),
        cmocka_unit_test_teardown(test_listener_a_pass_is_linear_in_the_number_of_listeners,
                                  teardown_checkpoint),
        cmocka_unit_test_teardown(test_listener_added_during_a_pass_waits_for_the_next,
                                  teardown_checkpoint),
        cmocka_unit_test_teardown(
            test_listener_a_pass_survives_the_table_growing_and_shrinking_under_it,
            teardown_checkpoint),
    };
    return cmocka_run_group_tests_name("listener", tests, NULL, NULL);
}

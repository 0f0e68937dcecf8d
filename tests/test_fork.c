/*
 * fork() in a threaded program: the child keeps allocating, counting, making threads,
 * evaluating listeners and running its policy, with the engine's timer and file watcher
 * restarted, while the parent's threads were busy with the very locks the child needs.
 * Each child runs under alarm(): a lock inherited in the held state would hang it, and
 * the alarm turns that into a failure.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include "policyutil.h"

enum { FORKS = 40, CHILD_SECONDS = 10 };

/* The sanitizers' runtimes are not fork-safe in the way this tests: ThreadSanitizer does
 * not support threads made in the child of a threaded process, and the AddressSanitizer
 * of gcc 12 leaves its allocator's lock held in a child forked while another thread
 * allocates (seen hanging in its own code). These tests skip there (SKIP_IF_SANITIZED) and run
 * in the plain, valgrind, mimalloc and jemalloc runs. */

static atomic_bool stop;

/* Churns allocations and a short-lived thread per round (slot registration and
 * retirement take the registry lock). */
static void *short_lived(void *arg)
{
    (void)arg;
    mmt_free(mmt_malloc(100));
    return NULL;
}

static void *busy(void *arg)
{
    unsigned x = (unsigned)(uintptr_t)arg;
    while (!atomic_load(&stop)) {
        void *blocks[32];
        for (int i = 0; i < 32; i++) {
            x = x * 1103515245u + 12345u;
            blocks[i] = mmt_malloc(16 + (x >> 16) % 40000);
        }
        for (int i = 0; i < 32; i++) mmt_free(blocks[i]);
        pthread_t t;
        if (pthread_create(&t, NULL, short_lived, NULL) == 0) pthread_join(t, NULL);
    }
    return NULL;
}

/* Holds the registry lock much of the time: forks land while it is held. */
static void *reader(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        mmt_meminfo_t m;
        mmt_meminfo(&m);
    }
    return NULL;
}

/* Holds the evaluation lock much of the time, through a slow listener condition. */
static void *evaluator(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) mmt_mem_checkpoint();
    return NULL;
}

static int fired;
static int count_firing(const mmt_meminfo_t *m, void *arg)
{
    (void)m;
    if (arg) { /* the slow one */
        double until = now_seconds() + 50e-6;
        while (now_seconds() < until) {
        }
        return 0;
    }
    return 1;
}
static void on_fire(const mmt_meminfo_t *m, void *arg)
{
    (void)m;
    (void)arg;
    fired++;
}

/* Ends a child with `code`. Under valgrind, through an exec: a child forked from busy
 * threads holds blocks that only those threads (gone in the child) pointed to, which
 * valgrind's leak check at the child's exit would call lost and turn into its error exit
 * code. The exec ends the child without that check; valgrind checks the parent. */
static _Noreturn void end_child(int code)
{
    const char *preload = getenv("LD_PRELOAD");
    if (preload && strstr(preload, "vgpreload")) {
        char command[32];
        snprintf(command, sizeof command, "exit %d", code);
        execl("/bin/sh", "sh", "-c", command, (char *)NULL);
    }
    _exit(code);
}

/* Forks `n` times while threads churn, read the counters and evaluate listeners; each
 * child runs `child` and exits with its result. Asserts every child exited 0, in time. */
static void fork_while_busy(int n, int (*child)(void *), void *arg)
{
    enum { THREADS = 4 };
    pthread_t threads[THREADS];
    void *(*const mains[THREADS])(void *) = {busy, busy, reader, evaluator};
    atomic_store(&stop, false);
    int slow = mmt_mem_listen(count_firing, on_fire, &stop);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, mains[i], (void *)(uintptr_t)(i + 1)), 0);
    for (int i = 0; i < n; i++) {
        sleep_ms(5);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            alarm(CHILD_SECONDS);
            end_child(child(arg));
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (WIFSIGNALED(status))
            fail_msg("fork %d: the child died of signal %d (%s)", i, WTERMSIG(status),
                     WTERMSIG(status) == SIGALRM ? "hung" : "crashed");
        if (WEXITSTATUS(status) != 0)
            fail_msg("fork %d: the child failed check %d", i, WEXITSTATUS(status));
    }
    atomic_store(&stop, true);
    for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    mmt_mem_unlisten(slow);
}

/* ---- The core ------------------------------------------------------------------------------ */

static int core_child(void *arg)
{
    (void)arg;
    /* One thread now: the counters are exact to the byte. */
    mmt_meminfo_t before = meminfo_now();
    if (before.in_use != before.allocated - before.freed) return 1;
    void *p = mmt_malloc(1000);
    mmt_meminfo_t after = meminfo_now();
    if (after.in_use - before.in_use != 1000 || after.allocations - before.allocations != 1) return 2;
    mmt_free(p);
    /* New threads need slots (the registry lock); checkpoints need the evaluation lock. */
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        if (pthread_create(&t[i], NULL, short_lived, NULL) != 0) return 3;
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    int before_fired = fired;
    int id = mmt_mem_listen(count_firing, on_fire, NULL);
    if (id <= 0) return 4;
    mmt_mem_checkpoint();
    if (fired != before_fired + 1) return 5;
    mmt_mem_unlisten(id);
    mmt_meminfo_t end = meminfo_now();
    if (end.in_use != before.in_use || end.allocations != before.allocations + 5) return 6;
    return 0;
}

static void test_fork_child_counts_allocates_and_makes_threads(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    mmt_mem_set_checkpoint(64 * 1024); /* frequent checkpoints in the busy threads */
    int id = mmt_mem_listen(count_firing, on_fire, NULL);
    fork_while_busy(FORKS, core_child, NULL);
    mmt_mem_unlisten(id);
    mmt_mem_set_checkpoint(0);
}

/* ---- The policy engine ----------------------------------------------------------------------- */

typedef struct engine_case {
    mmt_policy_t *p;
    captured_log_t *log;
    const char *path;
} engine_case_t;

static int engine_child(void *arg)
{
    engine_case_t *c = arg;
    /* The timer runs again in the child: its ticks keep coming. */
    int ticks = log_count(c->log, "TICK");
    sleep_ms(200);
    if (log_count(c->log, "TICK") < ticks + 3) return 1;
    /* Loads and evaluations work (no lock was inherited held). */
    if (mmt_policy_reload(c->p) != 0) return 2;
    void *b = mmt_malloc(10000);
    mmt_mem_checkpoint();
    mmt_free(b);
    mmt_policy_free(c->p); /* stops the child's thread, and only that one */
    return 0;
}

static void test_fork_engine_timer_restarts_and_locks_are_free_in_the_child(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    char path[512];
    test_path(path, sizeof path, "fork.lua");
    /* A slow `when` rule: forks land in the middle of evaluations. */
    write_in_place(path, "local mmt = require 'mmt'\n"
                         "mmt.every(0.01, function() mmt.log('info', 'TICK') end)\n"
                         "mmt.rule { name = 'slow', when = function(m)\n"
                         "  local t = os.clock() + 0.002; while os.clock() < t do end\n"
                         "  return false end, fire = function() end }\n");
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 1, .watch = 1};
    mmt_policy_t *p = new_engine(&o, log);
    assert_int_equal(mmt_policy_load(p, path), 0);
    engine_case_t c = {p, log, path};
    fork_while_busy(15, engine_child, &c);

    /* The parent's thread was not stopped by a child's: its ticks go on. */
    int ticks = log_count(log, "TICK");
    sleep_ms(200);
    assert_true(log_count(log, "TICK") >= ticks + 3);
    mmt_policy_free(p);
    free_log(log);
}

static int watcher_child(void *arg)
{
    engine_case_t *c = arg;
    /* The child's watcher arms itself on its new thread: edits made before that are not
     * seen, so edit until one is (each edit differs, so each is a change). */
    bool seen = false;
    for (int i = 0; i < 15 && !seen; i++) {
        char text[128];
        snprintf(text, sizeof text, "local mmt = require 'mmt'\nmmt.log('info', 'CHILD EDIT %d')\n", i);
        write_by_rename(c->path, text);
        seen = wait_for_log(c->log, "CHILD EDIT", 200);
    }
    mmt_policy_free(c->p);
    return seen ? 0 : 1;
}

static void test_fork_child_watches_the_policy_file_on_its_own(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    char path[512];
    test_path(path, sizeof path, "watched.lua");
    write_in_place(path, "local mmt = require 'mmt'\n");
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 0, .watch = 1};
    mmt_policy_t *p = new_engine(&o, log);
    assert_int_equal(mmt_policy_load(p, path), 0);
    /* The parent's watcher is armed before the fork: it sees an edit of its own. */
    write_by_rename(path, "local mmt = require 'mmt'\nmmt.log('info', 'PARENT EDIT')\n");
    assert_true(wait_for_log(log, "PARENT EDIT", 3000));
    engine_case_t c = {p, log, path};
    fork_while_busy(1, watcher_child, &c);
    /* The child's edit reached the parent's watcher too: both watch the file. */
    assert_true(wait_for_log(log, "CHILD EDIT", 3000));
    mmt_policy_free(p);
    free_log(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_child_counts_allocates_and_makes_threads),
        cmocka_unit_test(test_fork_engine_timer_restarts_and_locks_are_free_in_the_child),
        cmocka_unit_test(test_fork_child_watches_the_policy_file_on_its_own),
    };
    return cmocka_run_group_tests_name("fork", tests, make_test_dir, remove_test_dir);
}

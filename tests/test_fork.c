/*
 * fork() in a threaded program: the child keeps allocating, counting, making threads,
 * evaluating listeners and running its policy, with the engine's timer and file watcher
 * restarted, while the parent's threads were busy with the very locks the child needs.
 * Each child runs under alarm(): a lock inherited in the held state would hang it, and
 * the alarm turns that into a failure.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
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
    /* The timer runs again in the child: its ticks keep coming (counted in the child's
     * copy of the log, emptied first so that it has room). */
    log_clear(c->log);
    sleep_ms(200);
    if (log_count(c->log, "TICK") < 3) return 1;
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
    log_clear(log);
    sleep_ms(200);
    assert_true(log_count(log, "TICK") >= 3);
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

/* ---- The child's descriptors and inotify instances ---------------------------------------- */

/* How many inotify instances this process holds. */
static int inotify_instances(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    char link[300], target[64];
    while ((e = readdir(d))) {
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len <= 0) continue;
        target[len] = '\0';
        n += strcmp(target, "anon_inode:inotify") == 0;
    }
    closedir(d);
    return n;
}

static atomic_long ticks;
static int64_t count_tick(int64_t arg, void *ud)
{
    (void)arg;
    (void)ud;
    atomic_fetch_add(&ticks, 1);
    return 0;
}

/* Edits the policy so that it logs a line naming this process (and calls the host
 * action "tick" on every tick), and waits for that line. */
static bool edit_is_followed(engine_case_t *c, unsigned timeout_ms)
{
    char text[256], tag[64];
    snprintf(tag, sizeof tag, "EDIT IN %ld.", (long)getpid());
    snprintf(text, sizeof text,
             "local mmt = require 'mmt'\nmmt.log('info', '%s')\n"
             "mmt.every(0.01, function() mmt.call('tick') end)\n", tag);
    write_by_rename(c->path, text);
    return wait_for_log(c->log, tag, timeout_ms);
}

static int polling_child(void *arg)
{
    engine_case_t *c = arg;
    sleep_ms(100); /* the child's thread is running */
    if (inotify_instances() != 0) return 1; /* the parent's copy closed, no new one */
    if (!edit_is_followed(c, 2000)) return 2; /* by polling, every 250 ms */
    if (inotify_instances() != 0) return 3;
    mmt_policy_free(c->p);
    return 0;
}

/* A pre-forking server must not take an inotify instance per worker (there are 128 per
 * user): a forked child's engine polls its file, and still reloads on an edit. */
static void test_fork_child_polls_without_an_inotify_instance_and_still_reloads(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    char path[512];
    test_path(path, sizeof path, "polled.lua");
    write_in_place(path, "local mmt = require 'mmt'\n");
    captured_log_t *log = new_log();
    int before = inotify_instances();
    mmt_policy_options_t o = {.interval_ms = 0, .watch = 1};
    mmt_policy_t *p = new_engine(&o, log);
    mmt_policy_action(p, "tick", count_tick, NULL);
    assert_int_equal(mmt_policy_load(p, path), 0);
    for (int i = 0; i < 300 && inotify_instances() == before; i++) sleep_ms(10);
    assert_int_equal(inotify_instances(), before + 1); /* the parent watches with inotify */
    engine_case_t c = {p, log, path};
    fork_while_busy(3, polling_child, &c);
    assert_int_equal(inotify_instances(), before + 1);
    assert_true(edit_is_followed(&c, 3000)); /* the parent's inotify still works */
    mmt_policy_free(p);
    free_log(log);
}

static const char user_data[] = "the user's own bytes\n";

typedef struct reused_case {
    engine_case_t engine;
    int fds[8], n; /* the engine's old numbers, now the user's file */
    struct stat user;
} reused_case_t;

/* 0 if every one of the numbers is still the user's file, untouched. */
static int users_file_intact(const reused_case_t *r)
{
    for (int i = 0; i < r->n; i++) {
        struct stat st;
        char back[64] = "";
        if (fstat(r->fds[i], &st) != 0 || st.st_ino != r->user.st_ino || st.st_dev != r->user.st_dev)
            return 1; /* closed or replaced */
        if (lseek(r->fds[i], 0, SEEK_CUR) != 0) return 2; /* read or written */
        if (pread(r->fds[i], back, sizeof back - 1, 0) != (ssize_t)strlen(user_data) ||
            strcmp(back, user_data) != 0)
            return 3; /* changed */
    }
    return 0;
}

static int reused_child(void *arg)
{
    reused_case_t *r = arg;
    if (users_file_intact(r) != 0) return 10 + users_file_intact(r); /* after the restart */
    long before = atomic_load(&ticks);
    sleep_ms(300);
    if (atomic_load(&ticks) < before + 5) return 20; /* the child's timer ticks */
    if (!edit_is_followed(&r->engine, 3000)) return 21;
    double t0 = now_seconds();
    mmt_policy_free(r->engine.p);
    if (now_seconds() - t0 > 0.5) return 22;
    if (users_file_intact(r) != 0) return 30 + users_file_intact(r);
    return 0;
}

/* The program closed the engine's descriptors and put a file of its own on their
 * numbers, then forks: the child's engine restarts its thread without closing, reading
 * or writing that file (nor does the parent's, which goes on). */
static void test_fork_child_leaves_a_users_file_on_the_engines_old_numbers_alone(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED();
    reused_case_t r = {.n = 0};
    char path[512], user[512];
    test_path(path, sizeof path, "reused.lua");
    test_path(user, sizeof user, "user.txt");
    write_in_place(user, user_data);
    write_in_place(path, "local mmt = require 'mmt'\n"
                         "mmt.every(0.01, function() mmt.call('tick') end)\n");
    captured_log_t *log = new_log();
    int instances = inotify_instances();
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    bool before[1024] = {false};
    struct dirent *e;
    while ((e = readdir(d)))
        if (atoi(e->d_name) < 1024 && atoi(e->d_name) != dirfd(d)) before[atoi(e->d_name)] = true;
    closedir(d);
    mmt_policy_options_t o = {.interval_ms = 10, .watch = 1};
    mmt_policy_t *p = new_engine(&o, log);
    mmt_policy_action(p, "tick", count_tick, NULL);
    assert_int_equal(mmt_policy_load(p, path), 0);
    for (int i = 0; i < 300 && inotify_instances() == instances; i++) sleep_ms(10);
    sleep_ms(50);
    for (int fd = 3; fd < 1024 && r.n < 8; fd++)
        if (!before[fd] && fcntl(fd, F_GETFD) >= 0) r.fds[r.n++] = fd;
    assert_true(r.n >= 2);

    int fd = open(user, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &r.user), 0);
    for (int i = 0; i < r.n; i++) {
        assert_int_equal(close(r.fds[i]), 0);
        assert_int_equal(dup2(fd, r.fds[i]), r.fds[i]);
    }
    close(fd);
    r.engine = (engine_case_t){p, log, path};
    fork_while_busy(1, reused_child, &r);

    long before_ticks = atomic_load(&ticks);
    sleep_ms(300);
    assert_true(atomic_load(&ticks) >= before_ticks + 5);
    assert_true(edit_is_followed(&r.engine, 3000));
    double t0 = now_seconds();
    mmt_policy_free(p);
    assert_true(now_seconds() - t0 < 0.5);
    assert_int_equal(users_file_intact(&r), 0);
    for (int i = 0; i < r.n; i++) close(r.fds[i]);
    free_log(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_child_counts_allocates_and_makes_threads),
        cmocka_unit_test(test_fork_engine_timer_restarts_and_locks_are_free_in_the_child),
        cmocka_unit_test(test_fork_child_watches_the_policy_file_on_its_own),
        cmocka_unit_test(test_fork_child_polls_without_an_inotify_instance_and_still_reloads),
        cmocka_unit_test(test_fork_child_leaves_a_users_file_on_the_engines_old_numbers_alone),
    };
    return cmocka_run_group_tests_name("fork", tests, make_test_dir, remove_test_dir);
}

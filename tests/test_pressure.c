/*
 * Pressure rules (mmt.pressure) and systemd's memory pressure watch: what a load refuses,
 * a trigger armed on this machine's real PSI file, real memory pressure (a process
 * thrashing a file inside a small cgroup of the test's own) firing a rule through the
 * kernel's report and through the polling that stands in where no trigger can be armed,
 * and $MEMORY_PRESSURE_WATCH as a FIFO, a socket and a PSI file.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "cgrouputil.h"
#include "engine.h"
#include "mmt/policy.h"
#include "policyutil.h"

#define MiB ((size_t)1 << 20)

static mmt_policy_options_t timer_opts = {.interval_ms = 100};

/* ---- Loading ------------------------------------------------------------------------------ */

static void test_pressure_rules_load_errors(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(&timer_opts, log);
    const load_error_case_t cases[] = {
        {"mmt.pressure { name = 'p', fire = f }", ":3: rule \"p\": give either 'some' or 'full'"},
        {"mmt.pressure { name = 'p', some = 0.1, full = 0.1, fire = f }",
         "give either 'some' or 'full'"},
        {"mmt.pressure { name = 'p', some = 0, fire = f }", "'some' must be a share of the window "
                                                            "above 0 and at most 1"},
        {"mmt.pressure { name = 'p', full = 1.5, fire = f }", "'full' must be a share"},
        {"mmt.pressure { name = 'p', some = 'x', fire = f }", "'some' must be a number, not a string"},
        {"mmt.pressure { name = 'p', some = 0.1, window = 0.2, fire = f }",
         "'window' must be from 0.5 to 10 seconds"},
        {"mmt.pressure { name = 'p', some = 0.1, window = 12, fire = f }", "not 12"},
        {"mmt.pressure { name = 'p', some = 0.1 }", "rule \"p\": 'fire' is missing (a function)"},
        {"mmt.pressure { name = 'p', some = 0.1, fire = f, thershold = 1 }",
         "rule \"p\": unknown field 'thershold'"},
        {"mmt.pressure { some = 0.1, fire = f }", "mmt.pressure: 'name' must be a non-empty string"},
        {"mmt.rule { name = 'p', metric = 'in_use', above = 1, fire = f }\n"
         "mmt.pressure { name = 'p', some = 0.1, fire = f }",
         ":4: rule \"p\": a rule of that name is already declared at"},
        {"for i = 1, 17 do mmt.pressure { name = 'p' .. i, some = 0.1, fire = f } end",
         "too many pressure rules: a policy may declare at most 16"},
        {"mmt.every(1, function() mmt.pressure { name = 'late', some = 0.1, fire = f } end)\n"
         "error('stop')", ":4: stop"},
    };
    expect_load_errors(p, policy_path("bad.lua"), cases, sizeof cases / sizeof cases[0]);
    /* From a task, after the load: an error of that task. */
    load_text(p, "late.lua",
              "local mmt = require 'mmt'\n"
              "mmt.every(0.05, function() mmt.pressure { name = 'late', some = 0.1, fire = print } end)\n");
    assert_true(wait_for_log(log, "mmt.pressure: rules are declared when the policy loads", 3000));
    mmt_policy_free(p);
    free_log(log);
}

/* A window that is not a multiple of 2 s needs CAP_SYS_RESOURCE: refused without it,
 * naming the capability; taken with it. */
static void test_pressure_window_needs_the_capability_or_two_seconds(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(&timer_opts, log);
    const char *path = policy_path("window.lua");
    write_in_place(path, "local mmt = require 'mmt'\n"
                         "mmt.pressure { name = 'p', some = 0.1, window = 1, fire = print }\n");
    int rc = mmt_policy_load(p, path);
    if (mmt__pressure_privileged()) {
        print_message("this process has CAP_SYS_RESOURCE: any window from 0.5 to 10 s loads\n");
        assert_int_equal(rc, 0);
    } else {
        assert_int_equal(rc, MMT_ELOAD);
        assert_contains(mmt_policy_error(p), ":2: rule \"p\": a window of 1 s needs "
                                             "CAP_SYS_RESOURCE, which this process lacks");
        assert_contains(mmt_policy_error(p), "multiple of 2 s");
    }
    load_text(p, "four.lua", "local mmt = require 'mmt'\n"
                             "mmt.pressure { name = 'p', full = 0.5, window = 4, fire = print }\n");
    mmt_policy_free(p);
    free_log(log);
}

static void test_pressure_rule_without_the_engines_thread_says_so(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log); /* no timer, no watch: no thread */
    load_text(p, "nothread.lua", "local mmt = require 'mmt'\n"
                                 "mmt.pressure { name = 'p', some = 0.1, fire = print }\n");
    assert_logged(log, "nothread.lua:2: rule \"p\": pressure rules need the engine's thread "
                       "(interval_ms or watch): this one never fires");
    mmt_policy_free(p);
    free_log(log);
}

/* ---- A real trigger ------------------------------------------------------------------------- */

#define SKIP_WITHOUT_PSI()                                                                 \
    do {                                                                                   \
        mmt_machine_t m_;                                                                  \
        if (!(mmt_machine_read(&m_, MMT_MACHINE_PSI) & MMT_MACHINE_PSI)) {                 \
            print_message("skipped: this kernel has no PSI (/proc/pressure/memory)\n");    \
            skip();                                                                        \
        }                                                                                  \
    } while (0)

/* How many descriptors of this process from MMT__HIGH_FD up are open on `file`; the first
 * into *first (if not NULL). */
static int open_on_first(const char *file, int *first)
{
    int found = 0;
    char link[64], target[300];
    for (int fd = MMT__HIGH_FD; fd < MMT__HIGH_FD + 64; fd++) {
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n > 0 && (target[n] = '\0', strcmp(target, file) == 0) && !found++ && first)
            *first = fd;
    }
    return found;
}

static int open_on(const char *file)
{
    return open_on_first(file, NULL);
}

static const char pressure_policy[] =
    "local mmt = require 'mmt'\n"
    "mmt.pressure { name = 'squeeze', some = %g, window = 2,\n"
    "  fire = function(m) mmt.log('warn', 'squeeze fired, some10 %%s', m.psi and m.psi.some10) end,\n"
    "  resolve = function(m) mmt.log('info', 'squeeze resolved') end }\n";

/* Arms a trigger on the machine's PSI file (a 2 s window, which a process without
 * CAP_SYS_RESOURCE may), with the file m.psi names; a reload arms the new one and closes
 * the old; freeing the engine closes it. */
static void test_pressure_trigger_is_armed_on_the_psi_file(void **state)
{
    (void)state;
    SKIP_WITHOUT_PSI();
    mmt_machine_t m;
    mmt_machine_read(&m, MMT_MACHINE_PSI);
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(&timer_opts, log);
    char text[1024];
    snprintf(text, sizeof text, pressure_policy, 0.5);
    load_text(p, "armed.lua", text);
    char want[400];
    snprintf(want, sizeof want, "pressure rule \"squeeze\": trigger armed on %s", m.psi.source);
    if (!wait_for_log(log, want, 3000)) {
        log_dump(log);
        fail_msg("no \"%s\"", want);
    }
    assert_int_equal(log_level_count(log, MMT_LOG_WARN), 0);
    /* The descriptor is the engine's: high, close-on-exec, on the PSI file. */
    int armed_fd = -1;
    assert_int_equal(open_on_first(m.psi.source, &armed_fd), 1);
    assert_true(fcntl(armed_fd, F_GETFD) & FD_CLOEXEC);
    snprintf(text, sizeof text, pressure_policy, 0.6);
    load_text(p, "armed.lua", text);
    assert_true(wait_for_log(log, "policy reloaded", 3000));
    for (int i = 0; i < 100 && log_count(log, want) < 2; i++) sleep_ms(10);
    assert_int_equal(log_count(log, want), 2);
    mmt_policy_free(p);
    assert_int_equal(open_on(m.psi.source), 0);
    free_log(log);
}

/* A child after fork closes the parent's trigger (the same open file: a report would wake
 * both) and arms one of its own; the parent's stays armed. */
static void test_pressure_child_after_fork_arms_its_own_trigger(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED(); /* threads made in a forked child: as test_fork.c says */
    SKIP_WITHOUT_PSI();
    mmt_machine_t m;
    mmt_machine_read(&m, MMT_MACHINE_PSI);
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(&timer_opts, log);
    char text[1024];
    snprintf(text, sizeof text, pressure_policy, 0.5);
    load_text(p, "forked.lua", text);
    assert_true(wait_for_log(log, "trigger armed on", 3000));
    assert_int_equal(open_on(m.psi.source), 1);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The log is the parent's copy: one arming in it already. */
        int ok = 1;
        for (int i = 0; i < 300 && log_count(log, "trigger armed on") < 2; i++) sleep_ms(10);
        if (log_count(log, "trigger armed on") != 2) ok = 0;
        if (open_on(m.psi.source) != 1) ok = 0; /* the parent's closed, its own open */
        _exit(ok ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(open_on(m.psi.source), 1);
    assert_int_equal(log_count(log, "trigger armed on"), 1);
    mmt_policy_free(p);
    assert_int_equal(open_on(m.psi.source), 0);
    free_log(log);
}

/* A process that thrashes: in cgroup cg (limited to 32 MiB), it writes a 128 MiB file and
 * reads it at random through a mapping for `seconds`, so that its pages are read back
 * from the disk again and again: tasks stall on memory, which PSI reports. */
static pid_t start_thrashing(const test_cgroup_t *cg, const char *file, double seconds)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid) return pid;
    if (cg_join(cg, 0) != 0) _exit(3);
    size_t size = 128 * MiB;
    int fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) _exit(4);
    static char chunk[1 << 20];
    for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = (char)(i * 7);
    for (size_t done = 0; done < size; done += sizeof chunk)
        if (write(fd, chunk, sizeof chunk) != (ssize_t)sizeof chunk) _exit(5);
    fsync(fd);
    volatile unsigned char *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) _exit(6);
    unsigned x = 12345, sum = 0;
    double end = now_seconds() + seconds;
    while (now_seconds() < end)
        for (int i = 0; i < 1000; i++) {
            x = x * 1103515245u + 12345u;
            sum += map[(size_t)(x >> 4) % (size / 4096) * 4096];
        }
    _exit(sum == 0xdeadbeef ? 7 : 0);
}

/* Real memory pressure fires a pressure rule through the kernel's report (engine a), and
 * a rule whose trigger could not be armed through polling avg10 at its ticks (engine b,
 * pointed at a file that does not exist); both resolve once it is over. */
static void test_pressure_real_stall_fires_and_resolves(void **state)
{
    (void)state;
    SKIP_IF_SHADOWED_IN_CGROUP();
    SKIP_WITHOUT_PSI();
    test_cgroup_t cg;
    char why[1200];
    if (cg_make(&cg, 32 * MiB, why, sizeof why) != 0) {
        print_message("skipped: no pressure can be made here: %s\n", why);
        skip();
    }
    captured_log_t *la = new_log(), *lb = new_log();
    mmt__pressure_file_for_tests = "/nonexistent/memory.pressure";
    mmt_policy_t *b = new_engine(&timer_opts, lb);
    char text[1024];
    snprintf(text, sizeof text, pressure_policy, 0.005);
    load_text(b, "polled.lua", text);
    assert_true(wait_for_log(lb, "pressure rule \"squeeze\": cannot arm a PSI trigger on "
                                 "/nonexistent/memory.pressure: No such file or directory; it "
                                 "is judged at each tick instead (some10 above 0.5%)", 3000));
    mmt__pressure_file_for_tests = NULL;
    mmt_policy_t *a = new_engine(&timer_opts, la);
    snprintf(text, sizeof text, pressure_policy, 0.02);
    load_text(a, "armed.lua", text);
    assert_true(wait_for_log(la, "trigger armed on", 3000));
    /* The machine may be under pressure already (other work): start from quiet. */
    char file[256];
    snprintf(file, sizeof file, "%s/thrash.bin", test_dir);
    double t0 = now_seconds();
    pid_t hog = start_thrashing(&cg, file, 30);
    bool fired = wait_for_log(la, "squeeze fired", 30000);
    double fired_after = now_seconds() - t0;
    bool polled = wait_for_log(lb, "squeeze fired", 15000);
    kill(hog, SIGKILL);
    int status;
    waitpid(hog, &status, 0);
    unlink(file);
    mmt_machine_t m;
    mmt_machine_read(&m, MMT_MACHINE_PSI);
    print_message("some10 %.2f%% after the stall; the report came %.1f s after it began\n",
                  m.psi.some10, fired_after);
    if (!fired || !polled) {
        print_message("engine a:\n");
        log_dump(la);
        print_message("engine b:\n");
        log_dump(lb);
    }
    assert_true(fired);
    assert_true(polled);
    /* Over: a window with no report after the last resolves the armed rule; the polled
     * one waits for avg10 to decay under 0.5%, which takes longer. */
    assert_true(wait_for_log(la, "squeeze resolved", 60000));
    mmt_policy_free(a);
    mmt_policy_free(b);
    cg_remove(&cg);
    free_log(la);
    free_log(lb);
}

/* ---- systemd's watch ------------------------------------------------------------------------ */

/* A listening AF_UNIX stream socket at `path`, as a service manager's. */
static int listening_socket(const char *path)
{
    int listener = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    assert_true(listener >= 0 && strlen(path) < sizeof addr.sun_path);
    memcpy(addr.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(listener, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(listen(listener, 4), 0);
    return listener;
}

/* Base64 of "some 100000 2000000" with its NUL, as systemd writes it. */
static const char trigger_b64[] = "c29tZSAxMDAwMDAgMjAwMDAwMAA=";

static mmt_policy_t *engine_with_watch(const char *watch, const char *write_b64,
                                       captured_log_t *log)
{
    setenv("MEMORY_PRESSURE_WATCH", watch, 1);
    if (write_b64) setenv("MEMORY_PRESSURE_WRITE", write_b64, 1);
    else unsetenv("MEMORY_PRESSURE_WRITE");
    mmt_policy_t *p = new_engine(&timer_opts, log);
    unsetenv("MEMORY_PRESSURE_WATCH");
    unsetenv("MEMORY_PRESSURE_WRITE");
    return p;
}

/* A FIFO: the engine writes the decoded bytes into it and drops them, then each byte
 * written is a report; with no rule "memory-pressure", a trim and a log line, at most once
 * a second. */
static void test_systemd_watch_on_a_fifo_trims_by_default(void **state)
{
    (void)state;
    char fifo[256];
    snprintf(fifo, sizeof fifo, "%s/pressure.fifo", test_dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    captured_log_t *log = new_log();
    mmt_policy_t *p = engine_with_watch(fifo, trigger_b64, log);
    load_text(p, "none.lua", "local mmt = require 'mmt'\n");
    char want[400];
    snprintf(want, sizeof want, "memory pressure: watching $MEMORY_PRESSURE_WATCH=%s", fifo);
    assert_true(wait_for_log(log, want, 3000));
    sleep_ms(300);
    assert_int_equal(log_count(log, "memory pressure reported"), 0); /* its own bytes: dropped */
    int w = open(fifo, O_WRONLY | O_NONBLOCK);
    assert_true(w >= 0);
    assert_int_equal(write(w, "x", 1), 1);
    snprintf(want, sizeof want, "memory pressure reported by $MEMORY_PRESSURE_WATCH (%s), and "
                                "no rule \"memory-pressure\": trimmed, ", fifo);
    assert_true(wait_for_log(log, want, 3000));
    /* A burst within a second: one trim. */
    for (int i = 0; i < 20; i++) assert_int_equal(write(w, "y", 1), 1);
    sleep_ms(500);
    assert_int_equal(log_count(log, want), 1);
    close(w);
    mmt_policy_free(p);
    unlink(fifo);
    free_log(log);
}

/* A socket: the engine connects, writes the decoded trigger, and a byte from the service
 * manager's end fires the policy's rule "memory-pressure", which a window later resolves;
 * the manager closing its end is said, and the engine goes on. */
static void test_systemd_watch_on_a_socket_fires_the_memory_pressure_rule(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/pressure.sock", test_dir);
    int listener = listening_socket(path);
    captured_log_t *log = new_log();
    mmt_policy_t *p = engine_with_watch(path, trigger_b64, log);
    load_text(p, "mp.lua",
              "local mmt = require 'mmt'\n"
              "mmt.pressure { name = 'memory-pressure', some = 0.1, window = 2,\n"
              "  fire = function(m) mmt.log('warn', 'mp fired') end,\n"
              "  resolve = function(m) mmt.log('info', 'mp resolved') end }\n");
    int conn = accept(listener, NULL, NULL);
    assert_true(conn >= 0);
    char got[64] = {0};
    struct timeval tv = {3, 0};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t n = 0;
    while (n < 20) {
        ssize_t k = read(conn, got + n, sizeof got - (size_t)n);
        if (k <= 0) break;
        n += k;
    }
    assert_int_equal(n, 20);
    assert_memory_equal(got, "some 100000 2000000", 20); /* with its NUL */
    double t0 = now_seconds();
    assert_int_equal(write(conn, "!", 1), 1);
    assert_true(wait_for_log(log, "mp fired", 3000));
    assert_true(wait_for_log(log, "mp resolved", 8000));
    double took = log_time(log, "mp resolved") - t0;
    print_message("resolved %.2f s after the report\n", took);
    assert_true(took >= 3.9 && took < 6); /* two windows of 2 s after it */
    assert_int_equal(log_count(log, "memory pressure reported"), 0); /* no default trim */
    close(conn);
    assert_true(wait_for_log(log, "no longer watched", 3000));
    mmt_policy_free(p);
    close(listener);
    unlink(path);
    free_log(log);
}

/* The PSI file itself, as systemd hands a service its cgroup's: armed with the bytes given;
 * "/dev/null" turns the watch off; only the first engine of a process takes it. */
static void test_systemd_watch_on_a_psi_file_and_dev_null(void **state)
{
    (void)state;
    SKIP_WITHOUT_PSI();
    mmt_machine_t m;
    mmt_machine_read(&m, MMT_MACHINE_PSI);
    captured_log_t *l1 = new_log(), *l2 = new_log(), *l3 = new_log();
    mmt_policy_t *a = engine_with_watch(m.psi.source, trigger_b64, l1);
    load_text(a, "a.lua", "local mmt = require 'mmt'\n");
    char want[400];
    snprintf(want, sizeof want, "memory pressure: watching $MEMORY_PRESSURE_WATCH=%s",
             m.psi.source);
    assert_true(wait_for_log(l1, want, 3000));
    assert_int_equal(log_level_count(l1, MMT_LOG_WARN), 0);
    mmt_policy_t *b = engine_with_watch(m.psi.source, trigger_b64, l2);
    load_text(b, "b.lua", "local mmt = require 'mmt'\n");
    assert_true(wait_for_log(l2, "$MEMORY_PRESSURE_WATCH is watched by another engine", 3000));
    mmt_policy_t *c = engine_with_watch("/dev/null", NULL, l3);
    load_text(c, "c.lua", "local mmt = require 'mmt'\n");
    sleep_ms(300);
    assert_int_equal(log_count(l3, "MEMORY_PRESSURE"), 0);
    mmt_policy_free(c);
    mmt_policy_free(b);
    /* Once the first is freed, the watch is free for the next engine. */
    mmt_policy_free(a);
    captured_log_t *l4 = new_log();
    mmt_policy_t *d = engine_with_watch(m.psi.source, "not base64!", l4);
    load_text(d, "d.lua", "local mmt = require 'mmt'\n");
    assert_true(wait_for_log(l4, "$MEMORY_PRESSURE_WRITE is not Base64", 3000));
    mmt_policy_free(d);
    mmt_policy_t *e = engine_with_watch("/nonexistent/memory.pressure", NULL, l4);
    load_text(e, "e.lua", "local mmt = require 'mmt'\n");
    assert_true(wait_for_log(l4, "$MEMORY_PRESSURE_WATCH=/nonexistent/memory.pressure cannot "
                                 "be watched: No such file or directory", 3000));
    mmt_policy_free(e);
    free_log(l1);
    free_log(l2);
    free_log(l3);
    free_log(l4);
}

/* The folder of a cgroup v2 hierarchy mounted here (any controllers: every v2 cgroup has
 * memory.pressure), or false. */
static bool cgroup2_mount(char *out, size_t len)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (!f) return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        char root[1024], point[1024];
        const char *dash = strstr(line, " - cgroup2 ");
        if (dash && sscanf(line, "%*s %*s %*s %1023s %1023s", root, point) == 2 &&
            strcmp(root, "/") == 0 && strlen(point) < len) {
            snprintf(out, len, "%s", point);
            found = true;
        }
    }
    fclose(f);
    return found;
}

/* The CPU time this process has used, in seconds. */
static double process_cpu(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* A trigger whose cgroup is removed (the kernel then answers every poll with POLLERR): said
 * once, the rule judged at each tick instead, and the engine's thread does not spin. */
static void test_pressure_trigger_of_a_removed_cgroup_is_dropped(void **state)
{
    (void)state;
    char mount[1024], dir[1200], file[1300];
    if (!cgroup2_mount(mount, sizeof mount)) {
        print_message("skipped: no cgroup v2 hierarchy is mounted here\n");
        skip();
    }
    snprintf(dir, sizeof dir, "%s/mmt-test-%d", mount, (int)getpid());
    if (mkdir(dir, 0755) != 0) {
        print_message("skipped: cannot make a cgroup in %s: %s\n", mount, strerror(errno));
        skip();
    }
    snprintf(file, sizeof file, "%s/memory.pressure", dir);
    captured_log_t *log = new_log();
    mmt__pressure_file_for_tests = file;
    mmt_policy_t *p = new_engine(&timer_opts, log);
    char text[1024];
    snprintf(text, sizeof text, pressure_policy, 0.5);
    load_text(p, "gone.lua", text);
    bool armed = wait_for_log(log, "trigger armed on", 3000);
    mmt__pressure_file_for_tests = NULL;
    assert_int_equal(rmdir(dir), 0);
    if (!armed) {
        log_dump(log);
        fail_msg("not armed on %s", file);
    }
    assert_true(wait_for_log(log, "pressure trigger of rule \"squeeze\": its descriptor reports "
                                  "an error or its end; no longer watched; the rule is judged at "
                                  "each tick instead", 3000));
    double cpu = process_cpu();
    sleep_ms(500);
    double used = process_cpu() - cpu;
    print_message("CPU in the 500 ms after: %.3f s\n", used);
    assert_true(used < 0.2);
    assert_true(log_count(log, "reported") <= 1);
    assert_int_equal(log_count(log, "squeeze fired"), 0);
    mmt_policy_free(p);
    free_log(log);
}

/* $MEMORY_PRESSURE_WATCH naming an ordinary file: nothing is written into it. */
static void test_systemd_watch_never_writes_an_ordinary_file(void **state)
{
    (void)state;
    char path[256], before[64], after[64];
    snprintf(path, sizeof path, "%s/passwd", test_dir);
    write_in_place(path, "root:x:0:0:root:/root:/bin/bash\n");
    read_file(path, before, sizeof before);
    captured_log_t *log = new_log();
    mmt_policy_t *p = engine_with_watch(path, "cm9vdDo6MDowOg==", log); /* "root::0:0:" */
    load_text(p, "plain.lua", "local mmt = require 'mmt'\n");
    char want[400];
    snprintf(want, sizeof want, "$MEMORY_PRESSURE_WATCH=%s cannot be watched: Operation not "
                                "supported", path);
    assert_true(wait_for_log(log, want, 3000));
    mmt_policy_free(p);
    read_file(path, after, sizeof after);
    assert_string_equal(after, before);
    free_log(log);
}

/* A service manager that accepts and closes without a byte: no report, the end said. */
static void test_systemd_socket_closed_without_a_report(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/quiet.sock", test_dir);
    int listener = listening_socket(path);
    captured_log_t *log = new_log();
    mmt_policy_t *p = engine_with_watch(path, NULL, log);
    load_text(p, "mp.lua", "local mmt = require 'mmt'\n"
                           "mmt.pressure { name = 'memory-pressure', some = 0.1,\n"
                           "  fire = function(m) mmt.log('warn', 'mp fired') end }\n");
    int conn = accept(listener, NULL, NULL);
    assert_true(conn >= 0);
    close(conn);
    assert_true(wait_for_log(log, "no longer watched", 3000));
    sleep_ms(200);
    assert_int_equal(log_count(log, "mp fired"), 0);
    assert_int_equal(log_count(log, "trimmed"), 0);
    mmt_policy_free(p);
    close(listener);
    unlink(path);
    free_log(log);
}

/* The program puts a pipe of its own on the number of the engine's FIFO descriptor (a
 * server's accept() reusing it): the engine never reads the program's pipe, arms its watch
 * anew, and is freed at once. */
static void test_systemd_fifo_descriptor_taken_by_the_program(void **state)
{
    (void)state;
    char fifo[256];
    snprintf(fifo, sizeof fifo, "%s/taken.fifo", test_dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    captured_log_t *log = new_log();
    mmt_policy_t *p = engine_with_watch(fifo, NULL, log);
    load_text(p, "taken.lua", "local mmt = require 'mmt'\n");
    assert_true(wait_for_log(log, "memory pressure: watching", 3000));
    int engine_fd = -1;
    assert_int_equal(open_on_first(fifo, &engine_fd), 1);
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);                 /* blocking, as a program's may be */
    assert_int_equal(dup2(pipefd[0], engine_fd), engine_fd);
    assert_int_equal(write(pipefd[1], "sixteen bytes!!!", 16), 16);
    sleep_ms(600);
    char got[32];
    int flags = fcntl(engine_fd, F_GETFL);
    fcntl(engine_fd, F_SETFL, flags | O_NONBLOCK);
    assert_int_equal(read(engine_fd, got, sizeof got), 16); /* all still the program's */
    if (!wait_for_log(log, "no longer the engine's", 3000)) {
        log_dump(log);
        fail_msg("the lost descriptor was not noticed");
    }
    double t0 = now_seconds();
    mmt_policy_free(p);
    assert_true(now_seconds() - t0 < 2.0);
    close(engine_fd);
    close(pipefd[0]);
    close(pipefd[1]);
    unlink(fifo);
    free_log(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pressure_rules_load_errors),
        cmocka_unit_test(test_pressure_window_needs_the_capability_or_two_seconds),
        cmocka_unit_test(test_pressure_rule_without_the_engines_thread_says_so),
        cmocka_unit_test(test_pressure_trigger_is_armed_on_the_psi_file),
        cmocka_unit_test(test_pressure_child_after_fork_arms_its_own_trigger),
        cmocka_unit_test(test_systemd_watch_on_a_fifo_trims_by_default),
        cmocka_unit_test(test_systemd_watch_on_a_socket_fires_the_memory_pressure_rule),
        cmocka_unit_test(test_systemd_watch_on_a_psi_file_and_dev_null),
        cmocka_unit_test(test_pressure_trigger_of_a_removed_cgroup_is_dropped),
        cmocka_unit_test(test_systemd_watch_never_writes_an_ordinary_file),
        cmocka_unit_test(test_systemd_socket_closed_without_a_report),
        cmocka_unit_test(test_systemd_fifo_descriptor_taken_by_the_program),
        cmocka_unit_test(test_pressure_real_stall_fires_and_resolves),
    };
    return cmocka_run_group_tests(tests, make_test_dir, remove_test_dir);
}

/*
 * The machine around the program (mmt_machine_read): recorded cgroup and /proc trees of
 * both cgroup versions and odd contents (tests/data/machine), then this machine's own
 * cgroup, and a cgroup of the test's own with a limit, a program touching memory in it,
 * and one pushed into its limit.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "cgrouputil.h"
#include "mmt/policy.h"
#include "machine.h"
#include "mmt/memory.h"
#include "policyutil.h"
#include "testutil.h"

#define MiB (UINT64_C(1) << 20)

/* Reads the recorded tree tests/data/machine/<name>. */
static int read_recorded(const char *name, mmt_machine_t *m)
{
    char root[4096 + 64];
    snprintf(root, sizeof root, "%s", tree_path("tests/data/machine"));
    size_t n = strlen(root);
    snprintf(root + n, sizeof root - n, "/%s", name);
    return mmt__machine_read_at(root, m, MMT_MACHINE_ALL);
}

/* The path as the recorded tree puts it: under its root. */
static void assert_under(const char *path, const char *tree, const char *rest)
{
    char want[4096 + 256];
    snprintf(want, sizeof want, "%s/%s%s", tree_path("tests/data/machine"), tree, rest);
    assert_string_equal(path, want);
}

/* This machine, as recorded: cgroup v1's memory hierarchy beside a v2 hierarchy without
 * the memory controller; no limit set (v1's largest page count). */
static void test_recorded_v1_beside_v2_without_the_memory_controller(void **state)
{
    (void)state;
    mmt_machine_t m;
    assert_int_equal(read_recorded("v1-hybrid", &m), MMT_MACHINE_ALL);
    assert_int_equal(m.cgroup.version, 1);
    assert_under(m.cgroup.path, "v1-hybrid",
                 "/sys/fs/cgroup/memory/process_api/c412822d4111636bd7263d29d30dd3e4");
    char usage[64];
    char file[4096 + 256];
    snprintf(file, sizeof file, "%s/memory.usage_in_bytes", m.cgroup.path);
    read_file(file, usage, sizeof usage);
    assert_int_equal(m.cgroup.current, strtoull(usage, NULL, 10));
    assert_true(m.cgroup.current > 0);
    assert_true(m.cgroup.max == MMT_UNLIMITED);
    assert_true(m.cgroup.high == MMT_UNLIMITED);
    assert_true(m.cgroup.limit == MMT_UNLIMITED);
    assert_int_equal(m.cgroup.events_high, 0);
    /* PSI: the machine's file, the v2 cgroup having no memory controller. */
    assert_int_equal(m.psi.valid, 1);
    assert_under(m.psi.source, "v1-hybrid", "/proc/pressure/memory");
    assert_true(m.system.total > m.system.available && m.system.available > 0);
    assert_int_equal(m.system.total % 1024, 0); /* kB into bytes */
}

static void test_recorded_v2_service_with_a_tighter_slice(void **state)
{
    (void)state;
    mmt_machine_t m;
    assert_int_equal(read_recorded("v2-service", &m), MMT_MACHINE_ALL);
    assert_int_equal(m.cgroup.version, 2);
    assert_under(m.cgroup.path, "v2-service", "/sys/fs/cgroup/system.slice/app.service");
    assert_int_equal(m.cgroup.current, 73400320);
    assert_true(m.cgroup.max == MMT_UNLIMITED); /* "max" */
    assert_int_equal(m.cgroup.high, 64 * MiB);
    assert_int_equal(m.cgroup.limit, 512 * MiB); /* the slice's */
    assert_int_equal(m.cgroup.events_high, 17);
    assert_int_equal(m.cgroup.events_max, 2);
    assert_int_equal(m.cgroup.events_oom, 1);
    assert_int_equal(m.cgroup.events_oom_kill, 1);
    /* PSI: the cgroup's own, not the machine's (9.99). */
    assert_under(m.psi.source, "v2-service",
                 "/sys/fs/cgroup/system.slice/app.service/memory.pressure");
    assert_float_equal(m.psi.some10, 1.50, 1e-9);
    assert_float_equal(m.psi.some60, 0.75, 1e-9);
    assert_float_equal(m.psi.some300, 0.10, 1e-9);
    assert_float_equal(m.psi.full10, 0.50, 1e-9);
    assert_float_equal(m.psi.full60, 0.25, 1e-9);
    assert_float_equal(m.psi.full300, 0.05, 1e-9);
    assert_int_equal(m.psi.some_total, 123456);
    assert_int_equal(m.psi.full_total, 65432);
    assert_int_equal(m.system.total, UINT64_C(8048096) * 1024);
    assert_int_equal(m.system.available, UINT64_C(5702336) * 1024);
}

static void test_recorded_v2_in_a_cgroup_namespace(void **state)
{
    (void)state;
    mmt_machine_t m;
    assert_int_equal(read_recorded("v2-namespace", &m), MMT_MACHINE_ALL);
    assert_int_equal(m.cgroup.version, 2);
    assert_under(m.cgroup.path, "v2-namespace", "/sys/fs/cgroup");
    assert_int_equal(m.cgroup.current, 10 * MiB);
    assert_int_equal(m.cgroup.max, 1024 * MiB);
    assert_int_equal(m.cgroup.limit, 1024 * MiB);
    assert_true(m.cgroup.high == MMT_UNLIMITED);
    assert_under(m.psi.source, "v2-namespace", "/sys/fs/cgroup/memory.pressure");
}

static void test_recorded_v1_bind_mounted_in_a_container(void **state)
{
    (void)state;
    mmt_machine_t m;
    /* No PSI (an older kernel), no MemAvailable (older still). */
    assert_int_equal(read_recorded("v1-docker", &m), MMT_MACHINE_CGROUP | MMT_MACHINE_SYSTEM);
    assert_int_equal(m.cgroup.version, 1);
    assert_under(m.cgroup.path, "v1-docker", "/sys/fs/cgroup/memory");
    assert_int_equal(m.cgroup.current, 100 * MiB);
    assert_int_equal(m.cgroup.max, 512 * MiB);
    assert_true(m.cgroup.high == MMT_UNLIMITED);
    assert_int_equal(m.cgroup.limit, 256 * MiB); /* hierarchical_memory_limit */
    assert_int_equal(m.cgroup.events_high, 0);
    assert_int_equal(m.cgroup.events_max, 42);
    assert_int_equal(m.cgroup.events_oom, 3);
    assert_int_equal(m.cgroup.events_oom_kill, 3);
    assert_int_equal(m.psi.valid, 0);
    assert_string_equal(m.psi.source, "");
    assert_int_equal(m.system.total, UINT64_C(2048000) * 1024);
    assert_int_equal(m.system.available, 0);
}

static void test_recorded_empty_current_is_no_cgroup_and_psi_falls_back(void **state)
{
    (void)state;
    mmt_machine_t m;
    assert_int_equal(read_recorded("v2-empty-current", &m), MMT_MACHINE_PSI);
    assert_int_equal(m.cgroup.version, 0);
    assert_string_equal(m.cgroup.path, "");
    assert_true(m.cgroup.max == 0 && m.cgroup.limit == 0);
    /* Not the cgroup's (1.00): that cgroup does not count. */
    assert_under(m.psi.source, "v2-empty-current", "/proc/pressure/memory");
    assert_float_equal(m.psi.some10, 9.99, 1e-9);
    assert_int_equal(m.psi.full_total, 888888);
}

static void test_recorded_odd_numbers_escaped_mount_and_a_long_line(void **state)
{
    (void)state;
    mmt_machine_t m;
    assert_int_equal(read_recorded("v2-odd", &m), MMT_MACHINE_CGROUP);
    assert_int_equal(m.cgroup.version, 2);
    assert_under(m.cgroup.path, "v2-odd", "/run/my cgroup/a b");
    assert_true(m.cgroup.current == UINT64_MAX);
    assert_true(m.cgroup.max == MMT_UNLIMITED); /* past 2^64 */
    assert_true(m.cgroup.high == MMT_UNLIMITED); /* "-1" does not parse: none */
    assert_true(m.cgroup.limit == MMT_UNLIMITED);
    assert_int_equal(m.cgroup.events_oom + m.cgroup.events_max, 0); /* no memory.events */
    assert_int_equal(m.psi.valid, 0); /* garbage, and no machine file */
}

static void test_recorded_nothing_but_a_psi_some_line(void **state)
{
    (void)state;
    mmt_machine_t m;
    assert_int_equal(read_recorded("none", &m), MMT_MACHINE_PSI | MMT_MACHINE_SYSTEM);
    assert_int_equal(m.cgroup.version, 0);
    assert_int_equal(m.psi.valid, 1);
    assert_float_equal(m.psi.some10, 0.25, 1e-9);
    assert_float_equal(m.psi.some300, 0.75, 1e-9);
    assert_int_equal(m.psi.some_total, 4242);
    assert_float_equal(m.psi.full10, 0, 0);
    assert_int_equal(m.system.total, 1000); /* no unit: taken as bytes */
    assert_int_equal(m.system.available, 500);
}

static void test_recorded_root_cgroup_and_a_path_outside_the_namespace(void **state)
{
    (void)state;
    mmt_machine_t m;
    assert_int_equal(read_recorded("v2-root", &m), 0);
    assert_int_equal(m.cgroup.version, 0);
    assert_int_equal(m.psi.valid, 0);
}

/* A /proc/self/cgroup longer than a page (read line by line), a cgroup named "..x" (a
 * name, not a way out), and /proc/meminfo figures past 2^64 bytes (saturated). */
static void test_recorded_long_cgroup_file_a_dotted_name_and_huge_meminfo(void **state)
{
    (void)state;
    mmt_machine_t m;
    assert_int_equal(read_recorded("v2-long-cgroup", &m), MMT_MACHINE_CGROUP | MMT_MACHINE_SYSTEM);
    assert_int_equal(m.cgroup.version, 2);
    assert_under(m.cgroup.path, "v2-long-cgroup", "/sys/fs/cgroup/..x");
    assert_int_equal(m.cgroup.current, 4096);
    assert_int_equal(m.cgroup.max, 8192);
    assert_true(m.system.total == UINT64_MAX);
    assert_true(m.system.available == UINT64_MAX); /* 2^54 kB is 2^64 bytes: one past */
}

static void test_parts_asked_only_and_bad_arguments(void **state)
{
    (void)state;
    assert_int_equal(mmt_machine_read(NULL, MMT_MACHINE_ALL), MMT_EINVAL);
    const char *root = tree_path("tests/data/machine/v2-service");
    mmt_machine_t m;
    memset(&m, 0xff, sizeof m);
    assert_int_equal(mmt__machine_read_at(root, &m, MMT_MACHINE_SYSTEM), MMT_MACHINE_SYSTEM);
    assert_int_equal(m.cgroup.version, 0);
    assert_int_equal(m.cgroup.current, 0);
    assert_int_equal(m.psi.valid, 0);
    assert_int_equal(mmt__machine_read_at(root, &m, MMT_MACHINE_PSI), MMT_MACHINE_PSI);
    assert_int_equal(m.cgroup.version, 0); /* found, to pick the PSI file, but not asked */
    assert_int_equal(m.psi.some_total, 123456);
    assert_int_equal(mmt__machine_read_at("/nonexistent", &m, MMT_MACHINE_ALL), 0);
}

static void test_parsers_on_odd_text(void **state)
{
    (void)state;
    uint64_t v;
    assert_true(mmt__parse_u64(" 42\n", &v) && v == 42);
    assert_true(mmt__parse_u64("max\n", &v) && v == UINT64_MAX);
    assert_true(mmt__parse_u64("18446744073709551616", &v) && v == UINT64_MAX);
    assert_false(mmt__parse_u64("", &v));
    assert_false(mmt__parse_u64("\n", &v));
    assert_false(mmt__parse_u64("-1", &v));
    assert_false(mmt__parse_u64("12 13", &v));
    assert_false(mmt__parse_u64("maximum", &v));
    struct mmt_psi p = {0};
    assert_false(mmt__parse_psi("", &p));
    assert_false(mmt__parse_psi("full avg10=1.00 avg60=1.00 avg300=1.00 total=1\n", &p));
    assert_false(mmt__parse_psi("some avg10=1.00 avg60=1.00 total=1\n", &p)); /* one missing */
    assert_false(mmt__parse_psi("some avg10=1,00 avg60=1.00 avg300=1.00 total=1\n", &p));
    /* Fields in another order and one a later kernel might add. */
    memset(&p, 0, sizeof p);
    assert_true(mmt__parse_psi("some total=7 avg300=3.5 avg60=2.25 avg10=100.00 avg1=4.00\n", &p));
    assert_float_equal(p.some10, 100.0, 1e-9);
    assert_float_equal(p.some60, 2.25, 1e-9);
    assert_float_equal(p.some300, 3.5, 1e-9);
    assert_int_equal(p.some_total, 7);
    /* A total past 2^64 is UINT64_MAX, not wrapped. */
    assert_true(mmt__parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 "
                               "total=999999999999999999999999999\n", &p));
    assert_true(p.some_total == UINT64_MAX);
}

/* A FIFO put where a cgroup file is expected is not waited on. */
static void test_a_fifo_in_place_of_a_file_does_not_block(void **state)
{
    (void)state;
    char dir[] = "/tmp/mmt-machine-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char fifo[128], buf[64];
    snprintf(fifo, sizeof fifo, "%s/memory.current", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    double t0 = now_seconds();
    long n = mmt__read_small(fifo, buf, sizeof buf);
    assert_true(n <= 0); /* nothing written: empty, or refused */
    assert_true(now_seconds() - t0 < 1.0);
    unlink(fifo);
    rmdir(dir);
}

/* ---- This machine ------------------------------------------------------------------------ */

/* The process's cgroup as this machine has it: read again by hand from the files the
 * reading names, they agree. */
static void test_this_machines_cgroup_reads_its_files(void **state)
{
    (void)state;
    mmt_machine_t m;
    int found = mmt_machine_read(&m, MMT_MACHINE_ALL);
    assert_true(found & MMT_MACHINE_SYSTEM);
    if (!(found & MMT_MACHINE_CGROUP)) {
        print_message("no memory cgroup on this machine (or not mounted here): "
                      "/proc/self/cgroup says\n");
        char text[2048];
        read_file("/proc/self/cgroup", text, sizeof text);
        print_message("%s", text);
        skip();
    }
    char file[1100], text[64];
    snprintf(file, sizeof file, "%s/%s", m.cgroup.path,
             m.cgroup.version == 2 ? "memory.current" : "memory.usage_in_bytes");
    assert_true(read_file(file, text, sizeof text) > 0);
    uint64_t again = strtoull(text, NULL, 10);
    /* Charged memory moves between the two readings: within 64 MiB. */
    assert_true(again + 64 * MiB > m.cgroup.current && m.cgroup.current + 64 * MiB > again);
    assert_true(m.cgroup.limit <= m.cgroup.max);
}

/* In a child: joins cg, reads the machine into *out, touches `touch` bytes and reads it
 * again into out[1]; writes both to fd. */
typedef struct joined {
    int err;
    mmt_machine_t before, after;
} joined_t;

static void read_in_cgroup(const test_cgroup_t *cg, size_t touch, int fd)
{
    joined_t j = {0};
    j.err = cg_join(cg, 0);
    if (!j.err) {
        mmt_machine_read(&j.before, MMT_MACHINE_ALL);
        char *p = mmap(NULL, touch ? touch : 1, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        for (size_t i = 0; i < touch; i += 4096) p[i] = 1;
        mmt_machine_read(&j.after, MMT_MACHINE_ALL);
    }
    ssize_t w = write(fd, &j, sizeof j);
    _exit(w == (ssize_t)sizeof j ? 0 : 1);
}

static joined_t run_in_cgroup(const test_cgroup_t *cg, size_t touch)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        read_in_cgroup(cg, touch, fds[1]);
    }
    close(fds[1]);
    joined_t j = {.err = -1};
    size_t got = 0;
    while (got < sizeof j) {
        ssize_t n = read(fds[0], (char *)&j + got, sizeof j - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    assert_int_equal(got, sizeof j);
    assert_int_equal(j.err, 0);
    return j;
}

#define SKIP_WITHOUT_CGROUP(cg, limit)                                                     \
    do {                                                                                   \
        char why_[1200];                                                                   \
        if (cg_make((cg), (limit), why_, sizeof why_) != 0) {                              \
            print_message("skipped: %s\n", why_);                                          \
            skip();                                                                        \
        }                                                                                  \
    } while (0)

/* A cgroup of the test's own with a 64 MiB limit: a program in it reads that limit, and
 * its current follows the memory the program touches. */
static void test_a_limited_cgroup_reads_its_limit_and_current(void **state)
{
    (void)state;
    SKIP_IF_SHADOWED_IN_CGROUP();
    test_cgroup_t cg;
    SKIP_WITHOUT_CGROUP(&cg, 64 * MiB);
    joined_t j = run_in_cgroup(&cg, 32 * MiB);
    cg_remove(&cg);
    assert_int_equal(j.before.cgroup.version, cg.version ? cg.version : j.before.cgroup.version);
    assert_string_equal(j.before.cgroup.path, cg.dir);
    assert_int_equal(j.before.cgroup.max, 64 * MiB);
    assert_int_equal(j.before.cgroup.limit, 64 * MiB);
    uint64_t grew = j.after.cgroup.current - j.before.cgroup.current;
    print_message("current %" PRIu64 " -> %" PRIu64 " B after touching 32 MiB\n",
                  j.before.cgroup.current, j.after.cgroup.current);
    assert_true(j.after.cgroup.current > j.before.cgroup.current);
    assert_true(grew >= 31 * MiB && grew <= 40 * MiB);
}

/* In a child: joins cg, loads a policy that reads m.cgroup, m.psi and m.system (and
 * declarative rules on the machine's metrics), and compares them with mmt_machine_read;
 * exits 0 if they agree. */
static void policy_in_cgroup(const test_cgroup_t *cg, const char *dir)
{
    if (cg_join(cg, 0) != 0) _exit(3);
    char *keep = mmap(NULL, 8 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (size_t i = 0; i < 8 * MiB; i += 4096) keep[i] = 1; /* charged to the cgroup */
    mmt_machine_t m;
    mmt_machine_read(&m, MMT_MACHINE_ALL);
    char path[256], text[4096];
    snprintf(path, sizeof path, "%s/machine.lua", dir);
    snprintf(text, sizeof text,
             "local mmt = require 'mmt'\n"
             "local m = mmt.meminfo()\n"
             "local c, p, s = m.cgroup, m.psi, m.system\n"
             "assert(c and c.version == %d and c.path == '%s', 'cgroup ' .. tostring(c and c.path))\n"
             "assert(c.max == %.17g and c.limit == %.17g, 'max ' .. c.max .. ' limit ' .. c.limit)\n"
             "assert(c.high == math.huge, 'high ' .. c.high)\n"
             "assert(math.abs(c.current - %.17g) < 16 * 2^20, 'current ' .. c.current)\n"
             "assert(c.events.max >= 0 and c.events.oom_kill >= 0)\n"
             "assert((p ~= nil) == %s, 'psi')\n"
             "if p then assert(p.source == '%s' and p.some10 >= 0 and p.full_total >= 0) end\n"
             "assert(s.total == %.17g and s.available > 0, 'system')\n"
             "mmt.rule { name = 'ratio', metric = 'cgroup_ratio', above = 0, fire = function(m)\n"
             "  mmt.log('info', 'RATIO %%.4f', m.cgroup.current / m.cgroup.limit) end }\n"
             "mmt.rule { name = 'avail', metric = 'available', above = 0, fire = function(m)\n"
             "  mmt.log('info', 'AVAIL') end }\n",
             m.cgroup.version, m.cgroup.path, (double)m.cgroup.max, (double)m.cgroup.limit,
             (double)m.cgroup.current, m.psi.valid ? "true" : "false", m.psi.source,
             (double)m.system.total);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) _exit(4);
    captured_log_t *log = new_log();
    mmt_policy_t *p = mmt_policy_new(NULL);
    mmt_policy_set_log(p, capture, log);
    if (mmt_policy_load(p, path) != 0) {
        fprintf(stderr, "%s\n", mmt_policy_error(p));
        _exit(5);
    }
    mmt_mem_checkpoint();
    int ok = log_count(log, "RATIO 0.") == 1 && log_count(log, "AVAIL") == 1;
    if (!ok) log_dump(log);
    mmt_policy_free(p);
    _exit(ok ? 0 : 6);
}

/* The same figures in policies: m.cgroup, m.psi, m.system and the machine's metrics, in a
 * cgroup of the test's own with a limit. */
static void test_a_limited_cgroup_reads_right_in_policies(void **state)
{
    (void)state;
    SKIP_IF_SHADOWED_IN_CGROUP();
    test_cgroup_t cg;
    SKIP_WITHOUT_CGROUP(&cg, 64 * MiB);
    char dir[] = "/tmp/mmt-machine-XXXXXX";
    assert_non_null(mkdtemp(dir));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) policy_in_cgroup(&cg, dir);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    cg_remove(&cg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A child pushed past its cgroup's limit is killed by the kernel; the events count it. */
static void test_a_child_pushed_into_its_limit_shows_in_the_events(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED(); /* the sanitizers' shadow memory is charged too */
    SKIP_IF_SHADOWED_IN_CGROUP();
    test_cgroup_t cg;
    SKIP_WITHOUT_CGROUP(&cg, 16 * MiB);
    mmt_machine_t machine;
    mmt_machine_read(&machine, MMT_MACHINE_SYSTEM);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (cg_join(&cg, 0) != 0) _exit(3);
        size_t size = 256 * MiB;
        char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        for (size_t i = 0; i < size; i += 4096) p[i] = 1;
        _exit(0); /* not killed: swap took it */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        cg_remove(&cg);
        print_message("skipped: the child touched 256 MiB in a 16 MiB cgroup without being "
                      "killed (this machine swaps)\n");
        skip();
    }
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    joined_t j = run_in_cgroup(&cg, 0);
    cg_remove(&cg);
    print_message("events: high %" PRIu64 ", max %" PRIu64 ", oom %" PRIu64 ", oom_kill %" PRIu64
                  "\n", j.before.cgroup.events_high, j.before.cgroup.events_max,
                  j.before.cgroup.events_oom, j.before.cgroup.events_oom_kill);
    assert_true(j.before.cgroup.events_max > 0);
    assert_true(j.before.cgroup.events_oom >= 1);
    assert_true(j.before.cgroup.events_oom_kill >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recorded_v1_beside_v2_without_the_memory_controller),
        cmocka_unit_test(test_recorded_v2_service_with_a_tighter_slice),
        cmocka_unit_test(test_recorded_v2_in_a_cgroup_namespace),
        cmocka_unit_test(test_recorded_v1_bind_mounted_in_a_container),
        cmocka_unit_test(test_recorded_empty_current_is_no_cgroup_and_psi_falls_back),
        cmocka_unit_test(test_recorded_odd_numbers_escaped_mount_and_a_long_line),
        cmocka_unit_test(test_recorded_nothing_but_a_psi_some_line),
        cmocka_unit_test(test_recorded_root_cgroup_and_a_path_outside_the_namespace),
        cmocka_unit_test(test_recorded_long_cgroup_file_a_dotted_name_and_huge_meminfo),
        cmocka_unit_test(test_parts_asked_only_and_bad_arguments),
        cmocka_unit_test(test_parsers_on_odd_text),
        cmocka_unit_test(test_a_fifo_in_place_of_a_file_does_not_block),
        cmocka_unit_test(test_this_machines_cgroup_reads_its_files),
        cmocka_unit_test(test_a_limited_cgroup_reads_its_limit_and_current),
        cmocka_unit_test(test_a_limited_cgroup_reads_right_in_policies),
        cmocka_unit_test(test_a_child_pushed_into_its_limit_shows_in_the_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

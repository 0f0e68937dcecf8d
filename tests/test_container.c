/*
 * policies/container.lua under mmt-run, in a memory cgroup of the test's own with a limit:
 * a real program (CPython, its objects through malloc) grows towards the limit at a
 * steady pace, holds above 90% of it, then lets go. The policy warns at 80%, reclaims and
 * trims at 90%, warns that the heap is on course to fill its room, and clears each as the
 * program lets go; the program is never killed.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "cgrouputil.h"
#include "mmt/memory.h"
#include "procutil.h"

#define MiB ((uint64_t)1 << 20)

/* Grows by 1 MiB every 50 ms until the cgroup (folder argv[1]) is charged 92% of its
 * limit (argv[2]), holds 4 s, lets everything go, waits 3 s. */
static const char grow_py[] =
    "import sys, time\n"
    "folder, limit = sys.argv[1], int(sys.argv[2])\n"
    "def charged():\n"
    "    for name in ('memory.current', 'memory.usage_in_bytes'):\n"
    "        try:\n"
    "            with open(folder + '/' + name) as f: return int(f.read())\n"
    "        except OSError: pass\n"
    "    raise SystemExit('no cgroup figure in ' + folder)\n"
    "page = bytes(range(256)) * 4096\n"
    "blocks = []\n"
    "while charged() < 0.92 * limit:\n"
    "    blocks.append(page * 1 + b'')\n"
    "    blocks[-1] = bytearray(blocks[-1])\n"
    "    time.sleep(0.05)\n"
    "print('holding %d MiB, cgroup at %.0f%%' % (len(blocks), 100 * charged() / limit), flush=True)\n"
    "time.sleep(4)\n"
    "blocks.clear()\n"
    "print('let go, cgroup at %.0f%%' % (100 * charged() / limit), flush=True)\n"
    "time.sleep(3)\n";

static void test_container_policy_acts_before_the_cgroups_limit(void **state)
{
    (void)state;
    if (MMT_TEST_SANITIZED) {
        print_message("skipped: the preload library of a sanitizer build cannot enter "
                      "python3\n");
        skip();
    }
    uint64_t limit = 192 * MiB;
    test_cgroup_t cg;
    char why[1200];
    if (cg_make(&cg, limit, why, sizeof why) != 0) {
        print_message("skipped: %s\n", why);
        skip();
    }
    char exe[PATH_MAX], mmt_run[PATH_MAX + 16], policy[PATH_MAX + 64], script[256], out[256],
        err[256], limit_text[32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(n > 0);
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(mmt_run, sizeof mmt_run, "%s/mmt-run", exe);
    snprintf(policy, sizeof policy, "%s", tree_path("policies/container.lua"));
    snprintf(script, sizeof script, "%s/grow.py", test_dir);
    snprintf(out, sizeof out, "%s/out.txt", test_dir);
    snprintf(err, sizeof err, "%s/err.txt", test_dir);
    snprintf(limit_text, sizeof limit_text, "%" PRIu64, limit);
    write_in_place(script, grow_py);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (cg_join(&cg, 0) != 0) _exit(120);
        setenv("PYTHONMALLOC", "malloc", 1);
        const char *argv[] = {mmt_run, "--policy", policy, "--interval", "200", "--",
                              "/usr/bin/python3", script, cg.dir, limit_text, NULL};
        prepare_child();
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(o, STDOUT_FILENO);
        dup2(e, STDERR_FILENO);
        execv(mmt_run, (char *const *)argv);
        _exit(127);
    }
    int status = wait_for_exit(pid, 90);
    cg_remove(&cg);
    char text[16384], printed[1024];
    read_file(err, text, sizeof text);
    read_file(out, printed, sizeof printed);
    print_message("%s%s", printed, text);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_contains(printed, "holding ");
    assert_contains(printed, "let go");
    /* In the order they happen: 80%, 90% with its reclaim and trim, the course, then
     * cleared as it lets go. */
    const char *order[] = {"cgroup-high: cgroup ", "cgroup-full: cgroup ", "cgroup-full cleared",
                           "cgroup-high cleared"};
    const char *at = text;
    for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
        const char *found = strstr(at, order[i]);
        if (!found) fail_msg("expected \"%s\" after offset %zu", order[i], (size_t)(at - text));
        at = found + 1;
    }
    assert_contains(text, "of 192.0 MiB (");
    /* Reclaimed and trimmed at once (a tick), or on the engine's thread (a checkpoint). */
    if (!strstr(text, "; reclaimed 0.0 MiB, trimmed ")) {
        assert_contains(text, "; reclaim and trim: deferred");
        assert_contains(text, "trim asked at a checkpoint: ");
    }
    assert_contains(text, "cgroup-eta: the heap (");
    assert_null(strstr(text, "[error]"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_container_policy_acts_before_the_cgroups_limit),
    };
    return cmocka_run_group_tests(tests, make_test_dir, remove_test_dir);
}

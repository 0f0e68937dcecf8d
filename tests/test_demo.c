/*
 * The demo, run as the README's first command runs it (shorter): it must end cleanly with
 * every byte given back, its policy must load and run (the rule on its flows' histories
 * tag among them), and it must print the tag tree.
 */
#include <limits.h>
#include <sys/wait.h>

#include "policyutil.h"

static void test_demo_runs_its_policy_and_prints_the_tag_tree(void **state)
{
    (void)state;
    /* The tests live in build/.../<config>/ beside mmt-demo; the policies at the top. */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(n > 0);
    exe[n] = '\0';
    char *cut = strstr(exe, "/build/");
    assert_non_null(cut);
    char cmd[3 * PATH_MAX];
    snprintf(cmd, sizeof cmd, "'%.*s/mmt-demo' --policy '%.*s/policies/demo.lua' --seconds 3 2>&1",
             (int)(strrchr(exe, '/') - exe), exe, (int)(cut - exe), exe);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    static char out[65536];
    size_t len = fread(out, 1, sizeof out - 1, p);
    out[len] = '\0';
    int status = pclose(p);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("mmt-demo failed (status %d):\n%s", status, out);
    /* Under a sanitizer the "shed" action's tens of thousands of frees can outlast the
     * rule's time budget, which the engine reports, as it should: not a failure there. */
    if (!MMT_TEST_SANITIZED && strstr(out, " error ")) fail_msg("an error was logged:\n%s", out);
    assert_contains(out, "policies/demo.lua: loaded, 4 rules and 1 task");
    assert_contains(out, "warn  flow histories: "); /* the rule on the tag fired */
    assert_contains(out, "% of the memory in use");
    assert_contains(out, "in use (histories ");     /* the task read m.tags */
    assert_contains(out, "\n(root): in use ");
    assert_contains(out, "\n  flows: in use ");
    assert_contains(out, "\n    entries: in use ");
    assert_contains(out, "\n    labels: in use ");
    assert_contains(out, "\n    histories: in use ");
    assert_contains(out, ", in use 0 B, peak ");    /* every byte came back */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_demo_runs_its_policy_and_prints_the_tag_tree),
    };
    return cmocka_run_group_tests_name("demo", tests, NULL, NULL);
}

/*
 * The demo, run as the README's first command runs it (shorter): it must end cleanly with
 * every byte given back, its policy must load and run (the rule on its flows' histories
 * tag among them, and the rule that reclaims flows through the demo's reclaimer), and it
 * must print the tag tree. Under policies/budget.lua its flows get a limit, and are
 * reclaimed before they reach it.
 */
#include <limits.h>
#include <sys/wait.h>

#include "policyutil.h"

/* Runs mmt-demo with policies/<policy> for 3 seconds; returns what it printed, and fails
 * the test unless it ended well. */
static const char *run_demo(const char *policy)
{
    /* The tests live in build/.../<config>/ beside mmt-demo; the policies at the top. */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(n > 0);
    exe[n] = '\0';
    char *cut = strstr(exe, "/build/");
    assert_non_null(cut);
    char cmd[3 * PATH_MAX];
    snprintf(cmd, sizeof cmd, "'%.*s/mmt-demo' --policy '%.*s/policies/%s' --seconds 3 2>&1",
             (int)(strrchr(exe, '/') - exe), exe, (int)(cut - exe), exe, policy);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    static char out[65536];
    size_t len = fread(out, 1, sizeof out - 1, p);
    out[len] = '\0';
    int status = pclose(p);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("mmt-demo failed (status %d):\n%s", status, out);
    /* Under a sanitizer a reclaim's tens of thousands of frees can outlast the rule's time
     * budget, which the engine reports, as it should: not a failure there. */
    if (!MMT_TEST_SANITIZED && strstr(out, " error ")) fail_msg("an error was logged:\n%s", out);
    return out;
}

/* The line the rule `rule` logs after its reclaim (`line`). Under a sanitizer the reclaim
 * can outlast the rule's time budget, and the engine stops the rule right after it, as it
 * should: then that is what the output says instead. */
static void assert_rule_said(const char *out, const char *rule, const char *line)
{
    char stopped[128];
    snprintf(stopped, sizeof stopped, "error rule \"%s\": ", rule);
    if (MMT_TEST_SANITIZED && !strstr(out, line) && strstr(out, stopped) &&
        strstr(out, "stopped: ran past its time budget of "))
        return;
    assert_contains(out, line);
}

static void test_demo_runs_its_policy_and_prints_the_tag_tree(void **state)
{
    (void)state;
    const char *out = run_demo("demo.lua");
    assert_contains(out, "policies/demo.lua: loaded, 4 rules and 1 task");
    assert_contains(out, "warn  flow histories: "); /* the rule on the tag fired */
    assert_contains(out, "% of the memory in use");
    assert_contains(out, "in use (histories ");     /* the task read m.tags */
    /* The shed rule reclaimed flows: the demo's reclaimer ran, and the engine said so. */
    assert_rule_said(out, "shed", "warn  shed: the flows hold ");
    assert_contains(out, "info  reclaim for tag \"flows\": wanted ");
    assert_contains(out, ": oldest-flows ");
    assert_contains(out, "\n(root): in use ");
    assert_contains(out, "\n  flows: in use ");
    assert_contains(out, "\n    entries: in use ");
    assert_contains(out, "\n    labels: in use ");
    assert_contains(out, "\n    histories: in use ");
    assert_contains(out, ", in use 0 B, peak ");    /* every byte came back */
}

static void test_demo_under_the_budget_policy_reclaims_before_the_limit(void **state)
{
    (void)state;
    const char *out = run_demo("budget.lua");
    assert_contains(out, "limit on tag \"flows\" set to 40 MiB (was none)");
    assert_contains(out, "budget: this program has no tag \"cache\" (yet)");
    assert_rule_said(out, "budget flows", "info  budget flows: ");
    assert_contains(out, "info  reclaim for tag \"flows\": wanted ");
    assert_contains(out, "limit on tag \"flows\" back to none (was 40 MiB): the engine is freed");
    /* The flows never went past their limit. */
    const char *peak = strstr(out, "\n  flows: in use ");
    assert_non_null(peak);
    peak = strstr(peak, ", peak ");
    assert_non_null(peak);
    assert_true(strtoull(peak + 7, NULL, 10) <= (unsigned long long)40 << 20);
    assert_contains(out, ", in use 0 B, peak ");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_demo_runs_its_policy_and_prints_the_tag_tree),
        cmocka_unit_test(test_demo_under_the_budget_policy_reclaims_before_the_limit),
    };
    return cmocka_run_group_tests_name("demo", tests, NULL, NULL);
}

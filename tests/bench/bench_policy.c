/*
 * The benchmark's policy part: what the policy engine costs.
 *   - an explicit checkpoint (mmt_mem_checkpoint) with 0, 1 and 10 `when` rules loaded, and
 *     with 3 declarative rules (which run no Lua unless they cross): p50, p99 and p999 of
 *     40,000 samples each (2,000 with --quick), taken in blocks of 1,000 that take turns
 *     between the configurations, so that a slow phase of the host is shared among them;
 *     how many samples a preemption may have lengthened is printed beside them;
 *   - the machine's reading (mmt_machine_read: the cgroup, PSI, /proc/meminfo) that
 *     m.cgroup, m.psi and m.system and the rules on them cost, and a checkpoint with a
 *     rule on cgroup_current;
 *   - hot reload with `watch`: from the rename of an edited file until the engine has
 *     switched to it, p50, p99 and max over 100 reloads (10 with --quick).
 * Prints a table and one JSON object per figure.
 */
#define _GNU_SOURCE /* usleep, RUSAGE_THREAD */
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "mmt/memory.h"
#include "mmt/policy.h"

static void quiet(int level, const char *message, void *ud)
{
    (void)level;
    (void)message;
    (void)ud;
}

static char dir[64];

static void write_file(const char *path, const char *text)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(tmp);
        exit(1);
    }
    if (rename(tmp, path) != 0) {
        perror(path);
        exit(1);
    }
}

/* A policy with `when_rules` Lua rules whose conditions read the snapshot and stay false,
 * `declarative` threshold rules that never cross, and `machine` declarative rules on the
 * cgroup's figure (which read the cgroup's files at each evaluation). */
static void make_policy(char *buf, size_t len, int when_rules, int declarative, int machine)
{
    size_t n = (size_t)snprintf(buf, len, "local mmt = require 'mmt'\n");
    for (int i = 0; i < when_rules; i++)
        n += (size_t)snprintf(buf + n, len - n,
                              "mmt.rule { name = 'w%d', when = function(m) return m.in_use > "
                              "1e15 and m.rate > %d end, fire = function() end }\n", i, i);
    for (int i = 0; i < declarative; i++)
        n += (size_t)snprintf(buf + n, len - n,
                              "mmt.rule { name = 'd%d', metric = 'in_use', above = %d * mmt.GiB, "
                              "fire = function() end }\n", i, 100 + i);
    for (int i = 0; i < machine; i++)
        n += (size_t)snprintf(buf + n, len - n,
                              "mmt.rule { name = 'c%d', metric = 'cgroup_current', above = "
                              "%d * mmt.GiB, fire = function() end }\n", i, 100 + i);
}

/* One engine with `when_rules` Lua rules and `declarative` threshold rules, loaded from
 * `path`; the process-wide checkpoint distance is 0, so only explicit checkpoints run. */
static mmt_policy_t *load_engine(const char *path, int when_rules, int declarative, int machine)
{
    char text[8192];
    make_policy(text, sizeof text, when_rules, declarative, machine);
    write_file(path, text);
    mmt_policy_t *p = mmt_policy_new(NULL);
    mmt_policy_set_log(p, quiet, NULL);
    mmt_mem_set_checkpoint(0);
    if (mmt_policy_load(p, path) != 0) {
        fprintf(stderr, "bench_policy: %s\n", mmt_policy_error(p));
        exit(1);
    }
    return p;
}

static long involuntary_switches(void)
{
    struct rusage u;
    getrusage(RUSAGE_THREAD, &u);
    return u.ru_nivcsw;
}

/* Checkpoint latency, wall time around each explicit checkpoint. The samples of each
 * configuration are taken in blocks, one configuration after the other and round again,
 * so that every configuration sees the host's slow phases alike rather than one of them
 * catching a whole phase; each block loads its engine afresh and warms it up (LuaJIT
 * compiles the conditions once they are hot). Preemptions during the timed calls are
 * counted: at most that many samples hold another program's time slice. */
static void bench_checkpoints(int blocks, int per_block)
{
    static const struct {
        int when_rules, declarative, machine;
    } configs[] = {{0, 0, 0}, {1, 0, 0}, {10, 0, 0}, {0, 3, 0}, {1, 3, 0}, {0, 0, 1}};
    enum { CONFIGS = sizeof configs / sizeof configs[0], WARM_UP = 200 };
    size_t n = (size_t)blocks * (size_t)per_block;
    double *t[CONFIGS];
    long preempted[CONFIGS] = {0};
    for (int c = 0; c < CONFIGS; c++) {
        t[c] = malloc(n * sizeof *t[c]);
        if (!t[c]) abort();
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/checkpoint.lua", dir);
    for (int b = 0; b < blocks; b++)
        for (int k = 0; k < CONFIGS; k++) {
            int c = (k + b) % CONFIGS; /* rotate which configuration comes first */
            mmt_policy_t *p = load_engine(path, configs[c].when_rules, configs[c].declarative,
                                          configs[c].machine);
            for (int i = 0; i < WARM_UP; i++) mmt_mem_checkpoint();
            double *out = t[c] + (size_t)b * (size_t)per_block;
            long before = involuntary_switches();
            for (int i = 0; i < per_block; i++) {
                double a = bench_now();
                mmt_mem_checkpoint();
                out[i] = bench_now() - a;
            }
            preempted[c] += involuntary_switches() - before;
            mmt_policy_free(p);
        }

    /* The clock's own cost, included in every sample. */
    double clock[1000];
    for (int i = 0; i < 1000; i++) {
        double a = bench_now();
        clock[i] = bench_now() - a;
    }
    double clock_us = bench_percentile(clock, 1000, 0.5) * 1e6;

    printf("  %-34s %8s %8s %8s %8s %9s\n", "checkpoint (us, wall time)", "p50", "p99", "p999",
           "samples", "preempted");
    for (int c = 0; c < CONFIGS; c++) {
        double p50 = bench_percentile(t[c], n, 0.50) * 1e6;
        double p99 = bench_percentile(t[c], n, 0.99) * 1e6;
        double p999 = bench_percentile(t[c], n, 0.999) * 1e6;
        char name[64];
        if (configs[c].machine)
            snprintf(name, sizeof name, "%2d rule on cgroup_current", configs[c].machine);
        else
            snprintf(name, sizeof name, "%2d when rules, %d declarative", configs[c].when_rules,
                     configs[c].declarative);
        printf("  %-34s %8.2f %8.2f %8.2f %8zu %9ld\n", name, p50, p99, p999, n, preempted[c]);
        printf("{\"figure\":\"checkpoint\",\"when_rules\":%d,\"declarative_rules\":%d,"
               "\"cgroup_rules\":%d,\"samples\":%zu,\"p50_us\":%.3f,\"p99_us\":%.3f,"
               "\"p999_us\":%.3f,\"preempted\":%ld}\n",
               configs[c].when_rules, configs[c].declarative, configs[c].machine, n, p50, p99,
               p999, preempted[c]);
        free(t[c]);
    }
    printf("  (each sample includes one clock read pair: %.3f us)\n", clock_us);
}

/* mmt_machine_read of each part, wall time per call (system calls: the kernel's time is
 * the cost), in rotating blocks as above. */
static void bench_machine(int blocks, int per_block)
{
    static const struct {
        const char *name;
        unsigned parts;
    } configs[] = {{"cgroup", MMT_MACHINE_CGROUP}, {"psi", MMT_MACHINE_PSI},
                   {"system", MMT_MACHINE_SYSTEM}, {"all", MMT_MACHINE_ALL}};
    enum { CONFIGS = sizeof configs / sizeof configs[0] };
    size_t n = (size_t)blocks * (size_t)per_block;
    double *t[CONFIGS];
    int found = 0;
    for (int c = 0; c < CONFIGS; c++) {
        t[c] = malloc(n * sizeof *t[c]);
        if (!t[c]) abort();
    }
    mmt_machine_t m;
    for (int b = 0; b < blocks; b++)
        for (int k = 0; k < CONFIGS; k++) {
            int c = (k + b) % CONFIGS;
            double *out = t[c] + (size_t)b * (size_t)per_block;
            for (int i = 0; i < per_block; i++) {
                double a = bench_now();
                found = mmt_machine_read(&m, configs[c].parts);
                out[i] = bench_now() - a;
            }
        }
    mmt_machine_read(&m, MMT_MACHINE_ALL);
    printf("  %-34s %8s %8s %8s   (cgroup v%d%s, PSI %s)\n", "mmt_machine_read (us, wall)", "p50",
           "p99", "samples", m.cgroup.version, m.cgroup.version ? "" : ": none",
           m.psi.valid ? m.psi.source : "none");
    for (int c = 0; c < CONFIGS; c++) {
        double p50 = bench_percentile(t[c], n, 0.50) * 1e6;
        double p99 = bench_percentile(t[c], n, 0.99) * 1e6;
        printf("  %-34s %8.2f %8.2f %8zu\n", configs[c].name, p50, p99, n);
        printf("{\"figure\":\"machine_read\",\"part\":\"%s\",\"cgroup_version\":%d,"
               "\"samples\":%zu,\"p50_us\":%.3f,\"p99_us\":%.3f}\n",
               configs[c].name, m.cgroup.version, n, p50, p99);
        free(t[c]);
    }
    (void)found;
}

/* Reload latency: the log line the engine writes right after switching marks the end. */
static _Atomic double switched_at;
static void note_switch(int level, const char *message, void *ud)
{
    (void)level;
    (void)ud;
    if (strstr(message, "policy reloaded: ")) atomic_store(&switched_at, bench_now());
}

static void bench_reload(int reloads)
{
    char path[PATH_MAX], tmp[PATH_MAX], text[8192];
    snprintf(path, sizeof path, "%s/reload.lua", dir);
    snprintf(tmp, sizeof tmp, "%s/reload.lua.new", dir);
    make_policy(text, sizeof text, 1, 3, 0);
    write_file(path, text);
    mmt_policy_options_t o = {.interval_ms = 100, .watch = 1};
    mmt_policy_t *p = mmt_policy_new(&o);
    mmt_policy_set_log(p, note_switch, NULL);
    if (mmt_policy_load(p, path) != 0) {
        fprintf(stderr, "bench_policy: %s\n", mmt_policy_error(p));
        exit(1);
    }
    usleep(100000); /* the watcher arms itself */
    double *t = malloc((size_t)reloads * sizeof *t);
    if (!t) abort();
    for (int i = 0; i < reloads; i++) {
        make_policy(text, sizeof text, 1 + i % 3, 3, 0);
        write_file(tmp, text); /* written under another name: the clock starts at the rename */
        atomic_store(&switched_at, 0.0);
        double a = bench_now();
        if (rename(tmp, path) != 0) {
            perror(path);
            exit(1);
        }
        while (atomic_load(&switched_at) == 0.0) {
            if (bench_now() - a > 5) {
                fprintf(stderr, "bench_policy: reload %d not seen within 5 s\n", i);
                exit(1);
            }
            usleep(100);
        }
        t[i] = atomic_load(&switched_at) - a;
        usleep(20000); /* the engine back at rest, as between real edits */
    }
    double p50 = bench_percentile(t, (size_t)reloads, 0.50) * 1e3;
    double p99 = bench_percentile(t, (size_t)reloads, 0.99) * 1e3;
    double max = t[reloads - 1] * 1e3;
    printf("  %-34s %8s %8s %8s %8s\n", "reload by rename, watched (ms)", "p50", "p99", "max",
           "samples");
    printf("  %-34s %8.2f %8.2f %8.2f %8d\n", "rename to engine switched", p50, p99, max,
           reloads);
    printf("{\"figure\":\"reload\",\"reloads\":%d,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
           "\"max_ms\":%.3f}\n", reloads, p50, p99, max);
    free(t);
    mmt_policy_free(p);
}

void bench_policy(int quick)
{
    snprintf(dir, sizeof dir, "/tmp/mmt-bench-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    printf("\npolicy engine: cost of an explicit checkpoint, and of a watched reload\n");
    if (quick) bench_checkpoints(4, 500);
    else bench_checkpoints(40, 1000);
    if (quick) bench_machine(2, 100);
    else bench_machine(20, 500);
    bench_reload(quick ? 10 : 100);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench: could not remove %s\n", dir);
}

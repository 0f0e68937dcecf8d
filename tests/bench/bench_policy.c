/*
 * The benchmark's policy part: what the policy engine costs.
 *   - an explicit checkpoint (mmt_mem_checkpoint) with 0, 1 and 10 `when` rules loaded, and
 *     with 3 declarative rules (which run no Lua unless they cross): p50 and p99;
 *   - hot reload with `watch`: from the rename of an edited file until the engine has
 *     switched to it, p50 and p99 over 20 reloads.
 * Prints a table and one JSON object per figure.
 */
#define _DEFAULT_SOURCE /* usleep */
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
 * and `declarative` threshold rules that never cross. */
static void make_policy(char *buf, size_t len, int when_rules, int declarative)
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
}

static void bench_checkpoint(int when_rules, int declarative, int iterations)
{
    char path[PATH_MAX], text[8192];
    snprintf(path, sizeof path, "%s/checkpoint.lua", dir);
    make_policy(text, sizeof text, when_rules, declarative);
    write_file(path, text);
    mmt_policy_t *p = mmt_policy_new(NULL);
    mmt_policy_set_log(p, quiet, NULL);
    mmt_mem_set_checkpoint(0);
    if (mmt_policy_load(p, path) != 0) {
        fprintf(stderr, "bench_policy: %s\n", mmt_policy_error(p));
        exit(1);
    }
    double *t = malloc((size_t)iterations * sizeof *t);
    for (int i = 0; i < 200; i++) mmt_mem_checkpoint(); /* warm up */
    for (int i = 0; i < iterations; i++) {
        double a = bench_now();
        mmt_mem_checkpoint();
        t[i] = bench_now() - a;
    }
    double p50 = bench_percentile(t, (size_t)iterations, 0.50) * 1e6;
    double p99 = bench_percentile(t, (size_t)iterations, 0.99) * 1e6;
    printf("  checkpoint, %2d when rules, %d declarative: p50 %6.2f us  p99 %6.2f us\n",
           when_rules, declarative, p50, p99);
    printf("{\"figure\":\"checkpoint\",\"when_rules\":%d,\"declarative_rules\":%d,"
           "\"p50_us\":%.3f,\"p99_us\":%.3f}\n", when_rules, declarative, p50, p99);
    free(t);
    mmt_policy_free(p);
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
    char path[PATH_MAX], text[8192];
    snprintf(path, sizeof path, "%s/reload.lua", dir);
    make_policy(text, sizeof text, 1, 3);
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
    for (int i = 0; i < reloads; i++) {
        make_policy(text, sizeof text, 1 + i % 3, 3);
        atomic_store(&switched_at, 0.0);
        double a = bench_now();
        write_file(path, text);
        while (atomic_load(&switched_at) == 0.0) {
            if (bench_now() - a > 5) {
                fprintf(stderr, "bench_policy: reload %d not seen within 5 s\n", i);
                exit(1);
            }
            usleep(100);
        }
        t[i] = atomic_load(&switched_at) - a;
        usleep(20000);
    }
    double p50 = bench_percentile(t, (size_t)reloads, 0.50) * 1e3;
    double p99 = bench_percentile(t, (size_t)reloads, 0.99) * 1e3;
    printf("  reload by rename, watched:              p50 %6.2f ms  p99 %6.2f ms  (%d reloads)\n",
           p50, p99, reloads);
    printf("{\"figure\":\"reload\",\"reloads\":%d,\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n", reloads, p50,
           p99);
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
    int iterations = quick ? 2000 : 20000;
    printf("\npolicy engine: cost of an explicit checkpoint, and of a watched reload\n");
    bench_checkpoint(0, 0, iterations);
    bench_checkpoint(1, 0, iterations);
    bench_checkpoint(10, 0, iterations);
    bench_checkpoint(0, 3, iterations);
    bench_checkpoint(1, 3, iterations);
    bench_reload(20);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench: could not remove %s\n", dir);
}

/*
 * libFuzzer harness: arbitrary bytes as a policy file. Each input is written to a real
 * file and loaded into one long-lived engine (so a failed load runs against the last good
 * policy), then evaluated: three checkpoints and two timer ticks, so that rules, `fire`,
 * `resolve` and mmt.every tasks run. Anything but a load error or a logged rule error is
 * a finding: a crash, a sanitizer report, an unexpected return code, or the engine
 * touching mmt's counters (its memory must not be counted). The program has two tags,
 * the demo's flows and flows/histories, and no reclaimer: a policy's mmt.reclaim runs
 * none, and its limits bind no allocation of the harness's.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "mmt/memory.h"
#include "mmt/policy.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static mmt_policy_t *engine;
static char path[64];

static void ignore(int level, const char *message, void *ud)
{
    (void)level;
    (void)message;
    (void)ud;
}

static int64_t echo(int64_t arg, void *ud)
{
    (void)ud;
    return arg;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[] = "/tmp/mmt-fuzz-XXXXXX";
    if (!mkdtemp(dir)) abort();
    snprintf(path, sizeof path, "%s/policy.lua", dir);
    /* A short budget and a small VM keep runaway and greedy inputs cheap. */
    mmt_policy_options_t o = {.budget_ms = 2, .lua_memory_limit = 16 << 20}; /* a load: 20 ms */
    engine = mmt_policy_new(&o);
    if (!engine) abort();
    mmt_policy_set_log(engine, ignore, NULL);
    mmt_policy_action(engine, "shed", echo, NULL);
    mmt_mem_set_checkpoint(0);
    /* The demo's tags, with a block in one, so that rules on tags (policies/demo.lua, a
     * seed) load and m.tags has something to read. */
    int flows = mmt_tag_new("flows", MMT_TAG_ROOT);
    int histories = flows > 0 ? mmt_tag_new("histories", (mmt_tag_t)flows) : -1;
    if (histories < 0) abort();
    static void *block; /* kept for the process's life */
    block = mmt_malloc_in((mmt_tag_t)histories, 512);
    return block ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f) != 0) abort();

    mmt_meminfo_t before, after;
    mmt_meminfo(&before);
    int rc = mmt_policy_load(engine, path);
    if (rc != 0 && rc != MMT_ELOAD) abort();
    if (rc == MMT_ELOAD && mmt_policy_error(engine)[0] == '\0') abort();
    for (int i = 0; i < 3; i++) mmt_mem_checkpoint();
    for (int i = 0; i < 2; i++) mmt__policy_tick(engine);
    mmt_meminfo(&after);
    if (after.in_use != before.in_use || after.allocations != before.allocations) abort();
    return 0;
}

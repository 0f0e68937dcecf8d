/*
 * mmt-demo: a small host program that uses libmmtmem the way a long-running service does.
 * It simulates a flow table that grows under load and is trimmed back, with a C listener
 * that warns when memory in use passes a high-water mark and says when it is back under
 * a low one, and prints mmt_meminfo() as it goes and at the end.
 *
 *   mmt-demo [FLOWS]      (default 200000 flows at the top of the load)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmt/memory.h"

typedef struct flow {
    uint32_t src, dst;
    uint16_t sport, dport;
    uint64_t packets, bytes;
    char *label;
    struct flow *next;
} flow_t;

enum { BUCKETS = 1 << 14 };

typedef struct table {
    flow_t **buckets;
    size_t count;
} table_t;

static unsigned long rng = 88172645463325252ul;
static unsigned long next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void table_add(table_t *t)
{
    flow_t *f = mmt_calloc(1, sizeof *f);
    f->src = (uint32_t)next_random();
    f->dst = (uint32_t)next_random();
    f->sport = (uint16_t)next_random();
    f->dport = 443;
    char label[48];
    snprintf(label, sizeof label, "flow-%08x-%u", f->src, (unsigned)f->sport);
    f->label = mmt_strdup(label);
    size_t b = f->src % BUCKETS;
    f->next = t->buckets[b];
    t->buckets[b] = f;
    t->count++;
}

/* Drops flows until only `keep` remain, oldest buckets first. */
static void table_trim(table_t *t, size_t keep)
{
    for (size_t b = 0; b < BUCKETS && t->count > keep; b++) {
        while (t->buckets[b] && t->count > keep) {
            flow_t *f = t->buckets[b];
            t->buckets[b] = f->next;
            mmt_free(f->label);
            mmt_free(f);
            t->count--;
        }
    }
}

static void print_meminfo(const char *when)
{
    mmt_meminfo_t m;
    mmt_meminfo(&m);
    printf("%-22s in use %10llu B  peak %10llu B  allocated %11llu B  freed %11llu B  "
           "allocations %8llu  frees %8llu\n",
           when, (unsigned long long)m.in_use, (unsigned long long)m.peak,
           (unsigned long long)m.allocated, (unsigned long long)m.freed,
           (unsigned long long)m.allocations, (unsigned long long)m.frees);
}

/* High-water listener with hysteresis: two edge-triggered listeners, one per direction. */
typedef struct marks {
    uint64_t high, low;
    int above; /* state the pair shares */
} marks_t;

static int over_high(const mmt_meminfo_t *m, void *arg)
{
    const marks_t *k = arg;
    return m->in_use > k->high;
}

static void warn_high(const mmt_meminfo_t *m, void *arg)
{
    marks_t *k = arg;
    k->above = 1;
    printf("  [listener] high-water: %llu B in use, above %llu B\n",
           (unsigned long long)m->in_use, (unsigned long long)k->high);
}

static int back_under_low(const mmt_meminfo_t *m, void *arg)
{
    const marks_t *k = arg;
    return k->above && m->in_use < k->low;
}

static void note_low(const mmt_meminfo_t *m, void *arg)
{
    marks_t *k = arg;
    k->above = 0;
    printf("  [listener] resolved: %llu B in use, under %llu B\n", (unsigned long long)m->in_use,
           (unsigned long long)k->low);
}

int main(int argc, char **argv)
{
    size_t top = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    if (top == 0) {
        fprintf(stderr, "mmt-demo: FLOWS must be a positive number, not \"%s\"\n", argv[1]);
        return 2;
    }
    printf("mmt-demo, libmmtmem %s: flow table up to %zu flows\n", mmt_version(), top);

    /* Marks scaled to the load: a flow costs about 68 bytes with its label, so waves 2
     * and 3 pass the high mark and each trim brings usage back under the low one. */
    marks_t marks = {.high = top * 40, .low = top * 20};
    mmt_mem_set_checkpoint(256 * 1024);
    int hi = mmt_mem_listen(over_high, warn_high, &marks);
    int lo = mmt_mem_listen(back_under_low, note_low, &marks);
    if (hi < 0 || lo < 0) {
        fprintf(stderr, "mmt-demo: cannot register listeners: %s\n",
                mmt_strerror(hi < 0 ? hi : lo));
        return 1;
    }

    table_t t = {.buckets = mmt_calloc(BUCKETS, sizeof(flow_t *))};
    print_meminfo("start");
    for (int wave = 1; wave <= 3; wave++) {
        size_t target = top * (size_t)wave / 3;
        while (t.count < target) table_add(&t);
        char when[32];
        snprintf(when, sizeof when, "wave %d: %zu flows", wave, t.count);
        print_meminfo(when);
        table_trim(&t, t.count / 4);
        snprintf(when, sizeof when, "trimmed to %zu", t.count);
        print_meminfo(when);
    }
    table_trim(&t, 0);
    mmt_free(t.buckets);
    mmt_mem_unlisten(hi);
    mmt_mem_unlisten(lo);
    print_meminfo("final");

    mmt_meminfo_t m;
    mmt_meminfo(&m);
    if (m.in_use != 0) {
        fprintf(stderr, "mmt-demo: %llu bytes still in use at exit\n",
                (unsigned long long)m.in_use);
        return 1;
    }
    return 0;
}

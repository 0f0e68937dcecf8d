/*
 * mmt-demo: a host program that uses libmmtmem the way a long-running service does. It
 * simulates a flow table whose size follows a wave, between a few MiB and about 50 MiB,
 * under a Lua policy (policies/demo.lua by default) that warns, reports, and reclaims
 * flows when usage passes a budget. The policy file is watched: edit it while the demo
 * runs and the change takes effect at once.
 *
 *   mmt-demo [--policy FILE] [--seconds N]     (N = 0: run until interrupted)
 *
 * The table's memory is counted under tags of its own: flows/entries (the flow structs),
 * flows/labels and flows/histories, which the policy reads as m.tags["flows/histories"]
 * and puts a rule on. The table registers a reclaimer for the flows tag, which drops the
 * oldest flows: the policy's mmt.reclaim("flows", n) runs it, and so does an allocation
 * that a limit on the flows would refuse (policies/budget.lua sets one: try
 * --policy policies/budget.lua). At the end it prints the tag tree (mmt_tag_report) and
 * mmt_meminfo(), and checks that every byte came back.
 */
#define _DEFAULT_SOURCE /* M_PI */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mmt/memory.h"
#include "mmt/policy.h"

typedef struct flow {
    uint32_t src, dst;
    uint16_t sport, dport;
    uint64_t packets, bytes;
    char *label;
    unsigned char *history; /* recent packet headers: most of a flow's memory */
    struct flow *next;      /* in its bucket */
    struct flow *newer;     /* in the table's age order, oldest first */
} flow_t;

enum { BUCKETS = 1 << 15, HISTORY = 512, PEAK_FLOWS = 80000 };

/* The table, under table_lock, which the reclaimer takes too. A limit on the flows runs
 * the reclaimer inside the allocation it would refuse, on the allocating thread: so
 * table_add allocates a flow's memory before it takes the lock, and links the flow only
 * once all of it is allocated. Frees happen under the lock (table_trim): a checkpoint
 * reached by one runs the policy there, and the reclaims the policy asks for at a
 * checkpoint run on the engine's thread, never inside the free, so they wait for the lock
 * rather than take it again. */
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static flow_t *buckets[BUCKETS];
static flow_t *oldest, *newest;
static size_t flow_count;
static double flow_limit = PEAK_FLOWS; /* lowered by a reclaim, as a cache would shrink */

/* The table's tags, made once at start: a flow's parts are allocated in them. */
static mmt_tag_t tag_entries, tag_labels, tag_histories;

static mmt_tag_t make_tag(const char *name, mmt_tag_t parent)
{
    int tag = mmt_tag_new(name, parent);
    if (tag < 0) {
        fprintf(stderr, "mmt-demo: cannot make the tag %s: %s\n", name, mmt_strerror(tag));
        exit(1);
    }
    return (mmt_tag_t)tag;
}

static unsigned long rng = 88172645463325252ul;
static unsigned long next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void table_add(void)
{
    flow_t *f = mmt_calloc_in(tag_entries, 1, sizeof *f);
    f->src = (uint32_t)next_random();
    f->dst = (uint32_t)next_random();
    f->sport = (uint16_t)next_random();
    f->dport = 443;
    char label[48];
    int n = snprintf(label, sizeof label, "flow-%08x-%u", f->src, (unsigned)f->sport);
    f->label = mmt_malloc_in(tag_labels, (size_t)n + 1);
    memcpy(f->label, label, (size_t)n + 1);
    f->history = mmt_malloc_in(tag_histories, HISTORY);
    memset(f->history, 0, HISTORY);
    pthread_mutex_lock(&table_lock);
    size_t b = f->src % BUCKETS;
    f->next = buckets[b];
    buckets[b] = f;
    f->newer = NULL;
    if (newest) newest->newer = f;
    else oldest = f;
    newest = f;
    flow_count++;
    pthread_mutex_unlock(&table_lock);
}

/* Caller holds table_lock, and the table has a flow. Takes the oldest flow out of the
 * table, then frees it; returns the bytes it held. */
static size_t drop_oldest(void)
{
    flow_t *f = oldest;
    flow_t **at = &buckets[f->src % BUCKETS];
    while (*at != f) at = &(*at)->next;
    *at = f->next;
    oldest = f->newer;
    if (!oldest) newest = NULL;
    flow_count--;
    size_t bytes = mmt_size(f) + mmt_size(f->label) + mmt_size(f->history);
    mmt_free(f->history);
    mmt_free(f->label);
    mmt_free(f);
    return bytes;
}

/* Expires the oldest flows until `keep` remain. */
static void table_trim(size_t keep)
{
    pthread_mutex_lock(&table_lock);
    while (flow_count > keep && oldest) drop_oldest();
    pthread_mutex_unlock(&table_lock);
}

/* The flows tag's reclaimer (mmt_reclaimer_add): drops the oldest flows until `wanted`
 * bytes are freed, and returns what they held. It runs on whichever thread needs the
 * memory, and keeps the table under its new size for a while, as a cache would shrink. */
static size_t reclaim_oldest(size_t wanted, void *arg)
{
    (void)arg;
    size_t freed = 0;
    pthread_mutex_lock(&table_lock);
    while (freed < wanted && oldest) freed += drop_oldest();
    flow_limit = (double)flow_count;
    pthread_mutex_unlock(&table_lock);
    return freed;
}

static double start_time;
static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void print_log(int level, const char *message, void *ud)
{
    (void)ud;
    static const char *const names[] = {"error", "warn", "info", "debug"};
    printf("[%6.2fs] %-5s %s\n", seconds_now() - start_time, names[level & 3], message);
    fflush(stdout);
}

static volatile sig_atomic_t interrupted;
static void on_interrupt(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: mmt-demo [--policy FILE] [--seconds N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *policy = "policies/demo.lua";
    double seconds = 8;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--policy") == 0 && i + 1 < argc) {
            policy = argv[++i];
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            char *end;
            seconds = strtod(argv[++i], &end);
            if (*end || seconds < 0) {
                fprintf(stderr, "mmt-demo: --seconds wants a number >= 0, not \"%s\"\n", argv[i]);
                return 2;
            }
        } else {
            usage();
        }
    }
    signal(SIGINT, on_interrupt);
    start_time = seconds_now();
    mmt_tag_t flows = make_tag("flows", MMT_TAG_ROOT);
    tag_entries = make_tag("entries", flows);
    tag_labels = make_tag("labels", flows);
    tag_histories = make_tag("histories", flows);

    printf("mmt-demo, libmmtmem %s: a flow table under the policy %s, for %s\n", mmt_version(),
           policy, seconds > 0 ? "a few seconds" : "as long as you like (Ctrl-C ends it)");
    printf("Edit %s while this runs: the change takes effect at once.\n\n", policy);
    fflush(stdout);

    mmt_policy_options_t opts = {.interval_ms = 100, .watch = 1, .checkpoint_bytes = 256 << 10};
    mmt_policy_t *engine = mmt_policy_new(&opts);
    if (!engine) {
        fprintf(stderr, "mmt-demo: cannot start the policy engine\n");
        return 1;
    }
    mmt_policy_set_log(engine, print_log, NULL);
    int reclaimer = mmt_reclaimer_add(flows, "oldest-flows", 0, reclaim_oldest, NULL);
    if (reclaimer < 0) {
        fprintf(stderr, "mmt-demo: cannot register the reclaimer: %s\n", mmt_strerror(reclaimer));
        return 1;
    }
    if (mmt_policy_load(engine, policy) != 0) {
        fprintf(stderr, "mmt-demo: %s\n", mmt_policy_error(engine));
        mmt_policy_free(engine);
        return 1;
    }

    /* The load follows a wave with a 4-second period: flows are added while under the
     * wave's target and expire while over it. After a reclaim the table keeps under the
     * size the reclaim left, a limit that relaxes by 10% a second. */
    while (!interrupted) {
        double t = seconds_now() - start_time;
        if (seconds > 0 && t >= seconds) break;
        size_t target = (size_t)(PEAK_FLOWS * (0.5 - 0.5 * cos(2 * M_PI * t / 4.0)));
        pthread_mutex_lock(&table_lock);
        size_t count = flow_count;
        flow_limit = flow_limit * 1.001 < PEAK_FLOWS ? flow_limit * 1.001 : PEAK_FLOWS;
        if ((double)target > flow_limit) target = (size_t)flow_limit;
        pthread_mutex_unlock(&table_lock);
        if (count < target) {
            for (size_t i = 0; i < 2000 && count + i < target; i++) table_add();
        } else if (count > target) {
            table_trim(count - (count - target < 2000 ? count - target : 2000));
        }
        struct timespec nap = {0, 10 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    mmt_policy_free(engine); /* gives back the limits its policy set */
    mmt_reclaimer_remove(reclaimer);

    mmt_meminfo_t m;
    mmt_meminfo(&m);
    printf("\nat the end of the load: %zu flows, in use %llu B, peak %llu B\n", flow_count,
           (unsigned long long)m.in_use, (unsigned long long)m.peak);
    printf("by tag (mmt_tag_report: subtree in use, peak, blocks; own blocks):\n");
    fflush(stdout);
    mmt_tag_report(stdout);
    table_trim(0);
    mmt_meminfo(&m);
    printf("mmt_meminfo: allocated %llu B, freed %llu B, in use %llu B, peak %llu B, "
           "allocations %llu, frees %llu, reallocs %llu\n",
           (unsigned long long)m.allocated, (unsigned long long)m.freed,
           (unsigned long long)m.in_use, (unsigned long long)m.peak,
           (unsigned long long)m.allocations, (unsigned long long)m.frees,
           (unsigned long long)m.reallocs);
    if (m.in_use != 0) {
        fprintf(stderr, "mmt-demo: %llu bytes still in use at exit\n",
                (unsigned long long)m.in_use);
        return 1;
    }
    return 0;
}

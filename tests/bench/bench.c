/*
 * bench: mmt side by side with plain malloc.
 *
 * Workloads, each at 1 and 2 threads (every thread runs its own copy):
 *   churn  free a random one of ~1000 live blocks and allocate 16..4096 B in its place
 *   grow   realloc one block from 16 B to 64 KiB by quarter steps, free it, again
 *   pairs  calloc(1, 64) then free
 * Variants:
 *   libc    glibc's malloc: the limit. It is looked up by its symbol version, so that it
 *           stays glibc's even when mmt is built on an allocator that replaces malloc
 *           (Debian's mimalloc replaces __libc_malloc too)
 *   mmt     mmt_malloc and friends, no policy
 *   policy  mmt with a policy engine loaded: 3 declarative thresholds and 1 Lua `when`
 *           rule, checkpoints every 1 MiB, the timer at 100 ms
 *   peer    a naive counting wrapper: a size header and one global atomic in-use counter
 * Rounds interleave the variants (in rotating order). ns/op is the median over the rounds;
 * a ratio is the median over the rounds of the variant's time over libc's in the same
 * round, so that the machine's drift between rounds (shared, noisy hosts) cancels out. Then: bytes of overhead per live block, and
 * the policy engine's costs (bench_policy.c).
 *
 *   bench [--quick]     --quick: small counts, for a smoke run (well under 20 s)
 *   bench --only WORKLOAD VARIANT THREADS OPS
 *                       one run, for profiling (perf, valgrind --tool=callgrind)
 */
#define _GNU_SOURCE /* mallinfo2, gnu_get_libc_version */
#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "mmt/memory.h"
#include "mmt/policy.h"

/* glibc's own allocator, found by find_glibc(). */
static void *(*glibc_malloc)(size_t);
static void *(*glibc_calloc)(size_t, size_t);
static void *(*glibc_realloc)(void *, size_t);
static void (*glibc_free)(void *);

/* glibc's definitions carry a symbol version (its first one on each architecture); an
 * allocator that replaces malloc defines unversioned ones. */
static void *glibc_symbol(const char *name)
{
    static const char *const versions[] = {"GLIBC_2.2.5", "GLIBC_2.17", "GLIBC_2.0",
                                           "GLIBC_2.27", NULL};
    for (const char *const *v = versions; *v; v++) {
        void *f = dlvsym(RTLD_DEFAULT, name, *v);
        if (f) return f;
    }
    fprintf(stderr, "bench: cannot find glibc's %s\n", name);
    exit(1);
}

static void find_glibc(void)
{
    glibc_malloc = (void *(*)(size_t))glibc_symbol("malloc");
    glibc_calloc = (void *(*)(size_t, size_t))glibc_symbol("calloc");
    glibc_realloc = (void *(*)(void *, size_t))glibc_symbol("realloc");
    glibc_free = (void (*)(void *))glibc_symbol("free");
}

/* ---- The peer: what a straightforward port of MMT's counters does ------------------------- */

static _Atomic int64_t peer_in_use;

static void *peer_malloc(size_t n)
{
    size_t *h = glibc_malloc(n + 16);
    if (!h) abort();
    h[0] = n;
    atomic_fetch_add(&peer_in_use, (int64_t)n);
    return h + 2;
}

static void *peer_calloc(size_t c, size_t n)
{
    size_t *h = glibc_calloc(1, c * n + 16);
    if (!h) abort();
    h[0] = c * n;
    atomic_fetch_add(&peer_in_use, (int64_t)(c * n));
    return h + 2;
}

static void *peer_realloc(void *p, size_t n)
{
    if (!p) return peer_malloc(n);
    size_t *h = (size_t *)p - 2;
    int64_t old = (int64_t)h[0];
    h = glibc_realloc(h, n + 16);
    if (!h) abort();
    h[0] = n;
    atomic_fetch_add(&peer_in_use, (int64_t)n - old);
    return h + 2;
}

static void peer_free(void *p)
{
    if (!p) return;
    size_t *h = (size_t *)p - 2;
    atomic_fetch_sub(&peer_in_use, (int64_t)h[0]);
    glibc_free(h);
}

/* ---- Workloads, one copy per allocator so that every call is direct ---------------------------- */

enum { LIVE = 1024, GROW_LIMIT = 64 * 1024 };

static void *volatile sink;

static inline uint64_t next_random(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

#define WORKLOADS(P, MALLOC, CALLOC, REALLOC, FREE)                                          \
    static void P##_churn(long ops, uint64_t seed)                                           \
    {                                                                                        \
        char *live[LIVE] = {0};                                                              \
        for (long i = 0; i < ops; i++) {                                                     \
            uint64_t r = next_random(&seed);                                                 \
            size_t k = r % LIVE, size = 16 + (r >> 20) % 4081;                               \
            FREE(live[k]);                                                                   \
            live[k] = MALLOC(size);                                                          \
            live[k][0] = (char)i;                                                            \
        }                                                                                    \
        for (size_t k = 0; k < LIVE; k++) FREE(live[k]);                                     \
    }                                                                                        \
    static void P##_grow(long ops, uint64_t seed)                                            \
    {                                                                                        \
        (void)seed;                                                                          \
        char *p = NULL;                                                                      \
        size_t size = 16;                                                                    \
        for (long i = 0; i < ops; i++) {                                                     \
            p = REALLOC(p, size);                                                            \
            p[size - 1] = (char)i;                                                           \
            size += size / 4;                                                                \
            if (size > GROW_LIMIT) {                                                         \
                FREE(p);                                                                     \
                p = NULL;                                                                    \
                size = 16;                                                                   \
            }                                                                                \
        }                                                                                    \
        FREE(p);                                                                             \
    }                                                                                        \
    static void P##_pairs(long ops, uint64_t seed)                                           \
    {                                                                                        \
        (void)seed;                                                                          \
        for (long i = 0; i < ops; i++) {                                                     \
            char *p = CALLOC(1, 64);                                                         \
            p[0] = (char)i;                                                                  \
            sink = p;                                                                        \
            FREE(p);                                                                         \
        }                                                                                    \
    }

WORKLOADS(libc, glibc_malloc, glibc_calloc, glibc_realloc, glibc_free)
WORKLOADS(mmt, mmt_malloc, mmt_calloc, mmt_realloc, mmt_free)
WORKLOADS(peer, peer_malloc, peer_calloc, peer_realloc, peer_free)

typedef void (*workload_fn)(long ops, uint64_t seed);

enum { W_CHURN, W_GROW, W_PAIRS, WORKLOADS_N };
enum { V_LIBC, V_MMT, V_POLICY, V_PEER, VARIANTS_N };

static const char *const workload_names[WORKLOADS_N] = {"churn", "grow", "pairs"};
static const char *const variant_names[VARIANTS_N] = {"libc", "mmt", "policy", "peer"};
static const workload_fn functions[VARIANTS_N][WORKLOADS_N] = {
    {libc_churn, libc_grow, libc_pairs},
    {mmt_churn, mmt_grow, mmt_pairs},
    {mmt_churn, mmt_grow, mmt_pairs}, /* with the engine loaded */
    {peer_churn, peer_grow, peer_pairs},
};

/* ---- Running one measurement ---------------------------------------------------------------- */

typedef struct job {
    workload_fn fn;
    long ops;
    uint64_t seed;
    pthread_barrier_t *start;
} job_t;

static void *run_job(void *arg)
{
    job_t *j = arg;
    pthread_barrier_wait(j->start);
    j->fn(j->ops, j->seed);
    return NULL;
}

/* Wall time of `threads` threads each running fn for `ops` operations, per operation of
 * one thread, in ns. */
static double measure(workload_fn fn, int threads, long ops)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    pthread_t t[2];
    job_t jobs[2];
    for (int i = 0; i < threads; i++) {
        jobs[i] = (job_t){fn, ops, 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1), &start};
        pthread_create(&t[i], NULL, run_job, &jobs[i]);
    }
    pthread_barrier_wait(&start);
    double t0 = bench_now();
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    double elapsed = bench_now() - t0;
    pthread_barrier_destroy(&start);
    return elapsed * 1e9 / (double)ops;
}

static char policy_dir[64];
static char policy_path[PATH_MAX];

static void quiet(int level, const char *message, void *ud)
{
    (void)ud;
    if (level == MMT_LOG_ERROR) fprintf(stderr, "bench: policy: %s\n", message);
}

static void write_policy(void)
{
    snprintf(policy_dir, sizeof policy_dir, "/tmp/mmt-bench-XXXXXX");
    if (!mkdtemp(policy_dir)) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(policy_path, sizeof policy_path, "%s/thresholds.lua", policy_dir);
    FILE *f = fopen(policy_path, "w");
    if (!f) {
        perror(policy_path);
        exit(1);
    }
    fputs("local mmt = require 'mmt'\n"
          "local function note(m) mmt.log('debug', 'in use %s', mmt.bytes(m.in_use)) end\n"
          "mmt.rule { name = 'warn', metric = 'in_use', above = 512 * mmt.MiB, fire = note }\n"
          "mmt.rule { name = 'shed', metric = 'in_use', above = 1 * mmt.GiB, fire = note }\n"
          "mmt.rule { name = 'rss', metric = 'rss', above = 2 * mmt.GiB, fire = note }\n"
          "mmt.rule { name = 'growth', when = function(m) return m.rate > 100 * mmt.MiB end,\n"
          "  fire = note }\n",
          f);
    fclose(f);
}

static double run_variant(int v, int w, int threads, long ops)
{
    mmt_policy_t *engine = NULL;
    if (v == V_POLICY) {
        mmt_policy_options_t o = {.interval_ms = 100, .checkpoint_bytes = 1 << 20};
        engine = mmt_policy_new(&o);
        mmt_policy_set_log(engine, quiet, NULL);
        if (!engine || mmt_policy_load(engine, policy_path) != 0) {
            fprintf(stderr, "bench: cannot load the benchmark policy\n");
            exit(1);
        }
        usleep(20000); /* the engine's thread starts outside the measured time */
    }
    double ns = measure(functions[v][w], threads, ops);
    mmt_policy_free(engine);
    return ns;
}

static double median(double *v, int n)
{
    return bench_percentile(v, (size_t)n, 0.5);
}

static void bench_allocation(int quick)
{
    const long ops[WORKLOADS_N] = {quick ? 200000 : 600000, quick ? 300000 : 1000000,
                                   quick ? 500000 : 1500000};
    enum { MAX_ROUNDS = 32 };
    const int rounds = quick ? 5 : 21;
    static double ns[WORKLOADS_N][2][VARIANTS_N][MAX_ROUNDS];
    write_policy();
    for (int w = 0; w < WORKLOADS_N; w++) /* warm-up: page faults, tcache, slots */
        for (int v = 0; v < VARIANTS_N; v++) run_variant(v, w, 2, ops[w] / 10);
    for (int r = 0; r < rounds; r++)
        for (int w = 0; w < WORKLOADS_N; w++)
            for (int t = 0; t < 2; t++)
                for (int k = 0; k < VARIANTS_N; k++) {
                    int v = (k + r) % VARIANTS_N; /* rotate the order between rounds */
                    ns[w][t][v][r] = run_variant(v, w, t + 1, ops[w]);
                }

    /* Figures: median ns/op, and the median of per-round ratios to libc. */
    double med[WORKLOADS_N][2][VARIANTS_N], ratio[WORKLOADS_N][2][VARIANTS_N];
    for (int w = 0; w < WORKLOADS_N; w++)
        for (int t = 0; t < 2; t++)
            for (int v = 0; v < VARIANTS_N; v++) {
                double r[MAX_ROUNDS];
                for (int k = 0; k < rounds; k++) r[k] = ns[w][t][v][k] / ns[w][t][V_LIBC][k];
                ratio[w][t][v] = median(r, rounds);
                med[w][t][v] = median(ns[w][t][v], rounds);
            }

    printf("\nallocation: ns per operation and ratio to libc (medians of %d interleaved rounds)\n",
           rounds);
    printf("  %-8s %7s %10s %18s %18s %18s\n", "workload", "threads", "libc", "mmt", "policy",
           "peer");
    for (int w = 0; w < WORKLOADS_N; w++)
        for (int t = 0; t < 2; t++) {
            printf("  %-8s %7d %8.1f ns", workload_names[w], t + 1, med[w][t][V_LIBC]);
            for (int v = 1; v < VARIANTS_N; v++)
                printf(" %8.1f ns (%5.3f)", med[w][t][v], ratio[w][t][v]);
            printf("\n");
        }
    for (int w = 0; w < WORKLOADS_N; w++)
        for (int t = 0; t < 2; t++)
            for (int v = 0; v < VARIANTS_N; v++)
                printf("{\"workload\":\"%s\",\"threads\":%d,\"variant\":\"%s\",\"backend\":\"%s\","
                       "\"ns_per_op\":%.2f,\"ratio\":%.3f}\n",
                       workload_names[w], t + 1, variant_names[v], mmt_backend(),
                       med[w][t][v], ratio[w][t][v]);
    unlink(policy_path);
    rmdir(policy_dir);
}

/* ---- Memory overhead ---------------------------------------------------------------------------- */

/* Heap bytes (glibc's count of bytes in use) taken by `n` blocks of the sizes `sizes`
 * allocated with `alloc`, freed with `release`. */
static size_t heap_bytes(void *(*alloc)(size_t), void (*release)(void *), const size_t *sizes,
                         void **blocks, size_t n)
{
    struct mallinfo2 a = mallinfo2();
    for (size_t i = 0; i < n; i++) blocks[i] = alloc(sizes[i]);
    struct mallinfo2 b = mallinfo2();
    for (size_t i = 0; i < n; i++) release(blocks[i]);
    return b.uordblks - a.uordblks;
}

static void bench_overhead(void)
{
    enum { N = 100000 };
    size_t *sizes = malloc(N * sizeof *sizes);
    void **blocks = malloc(N * sizeof *blocks);
    printf("\nmemory: heap bytes per live block beyond what was asked (glibc's mallinfo2)\n");
    if (strcmp(mmt_backend(), "libc") != 0) {
        printf("  (mmt is built on %s here: glibc's counters do not see its heap)\n",
               mmt_backend());
        free(sizes);
        free(blocks);
        return;
    }
    const char *names[] = {"random 16..4096 B", "fixed 64 B", "fixed 24 B"};
    for (int d = 0; d < 3; d++) {
        uint64_t seed = 42, asked = 0;
        for (size_t i = 0; i < N; i++) {
            sizes[i] = d == 0 ? 16 + next_random(&seed) % 4081 : d == 1 ? 64 : 24;
            asked += sizes[i];
        }
        size_t libc = heap_bytes(glibc_malloc, glibc_free, sizes, blocks, N);
        size_t mmt = heap_bytes(mmt_malloc, mmt_free, sizes, blocks, N);
        double extra_libc = (double)(libc - asked) / N, extra_mmt = (double)(mmt - asked) / N;
        printf("  %-18s libc %6.1f B  mmt %6.1f B  mmt's own %5.1f B per block\n", names[d],
               extra_libc, extra_mmt, extra_mmt - extra_libc);
        printf("{\"figure\":\"overhead\",\"sizes\":\"%s\",\"libc_bytes_per_block\":%.1f,"
               "\"mmt_bytes_per_block\":%.1f}\n", names[d], extra_libc, extra_mmt);
    }
    printf("  plus one counter slot per live thread that allocates: 128 B\n");
    free(sizes);
    free(blocks);
}

/* ---- Main ------------------------------------------------------------------------------------------ */

static void print_machine(void)
{
    char model[256] = "unknown CPU";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "model name", 10) == 0) {
                char *colon = strchr(line, ':');
                if (colon) snprintf(model, sizeof model, "%s", colon + 2);
                model[strcspn(model, "\n")] = '\0';
                break;
            }
        fclose(f);
    }
    printf("mmtmem %s benchmark: %s, %ld CPUs, glibc %s, mmt over %s\n", mmt_version(), model,
           sysconf(_SC_NPROCESSORS_ONLN), gnu_get_libc_version(), mmt_backend());
}

static int index_of(const char *const *names, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0) return i;
    return -1;
}

/* bench --only WORKLOAD VARIANT THREADS OPS */
static int run_only(char **argv)
{
    int w = index_of(workload_names, WORKLOADS_N, argv[0]);
    int v = index_of(variant_names, VARIANTS_N, argv[1]);
    int threads = atoi(argv[2]);
    long ops = atol(argv[3]);
    if (w < 0 || v < 0 || threads < 1 || threads > 2 || ops < 1) {
        fprintf(stderr, "bench --only: WORKLOAD is churn, grow or pairs; VARIANT libc, mmt, "
                        "policy or peer; THREADS 1 or 2; OPS a positive count\n");
        return 2;
    }
    if (v == V_POLICY) write_policy();
    double ns = run_variant(v, w, threads, ops);
    printf("%s %s %d threads: %.2f ns/op\n", argv[0], argv[1], threads, ns);
    if (v == V_POLICY) {
        unlink(policy_path);
        rmdir(policy_dir);
    }
    return 0;
}

int main(int argc, char **argv)
{
    find_glibc();
    int quick = 0;
    if (argc == 6 && strcmp(argv[1], "--only") == 0) return run_only(argv + 2);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = 1;
        } else {
            fprintf(stderr, "usage: bench [--quick] | bench --only WORKLOAD VARIANT THREADS OPS\n");
            return 2;
        }
    }
    double t0 = bench_now();
    print_machine();
    bench_allocation(quick);
    bench_overhead();
    bench_policy(quick);
    printf("\ndone in %.1f s\n", bench_now() - t0);
    return 0;
}

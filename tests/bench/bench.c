/*
 * bench: what mmt's counting costs, against plain allocators, on a shared and noisy host.
 *
 * Workloads, each at 1 and 2 threads (every thread runs its own copy); an operation is
 * one turn of the loop:
 *   churn  1,024 live blocks; free a random one and allocate 16..4096 B in its place
 *   grow   realloc one block from 16 B to 64 KiB by 1.25x steps, free it, again
 *   pairs  calloc(1, 64) then free
 * Variants:
 *   libc    glibc's malloc, the baseline. It is looked up by its symbol version, so that it
 *           stays glibc's when mmt is built over an allocator that replaces malloc (Debian's
 *           mimalloc replaces __libc_malloc too)
 *   X       over mimalloc or jemalloc builds, that allocator called directly through the
 *           entry points mmt's backend uses (core/backend.c): a second baseline, so that
 *           mmt over X is judged against X, not only against glibc
 *   mmt     mmt_malloc and friends, no policy
 *   policy  mmt with a policy engine loaded: 3 declarative thresholds and 1 Lua `when`
 *           rule, checkpoints every 1 MiB, the timer at 100 ms
 *   peer    a Redis-zmalloc-style wrapper over the same allocator as mmt: a 16-byte size
 *           prefix and one thread-local in-use counter, in calls the compiler cannot
 *           inline (as a wrapper in another file would be)
 *   tagged  mmt with a current tag set (a tag under the root): every block of the run is
 *           counted in the tag as well as for the process
 *   limits  tagged, with limits set far away on that tag and on the process (1 TiB each):
 *           every allocation is admitted against both estimates (set by the main thread
 *           before the run, lifted after it, so that no other variant pays for them)
 *
 * Method. The host's speed swings by a quarter in phases of 0.1-0.2 s, so a run is short
 * (a few ms) and timed by the CPU time of the thread that runs it (each worker times its
 * own loop; time spent descheduled is not counted). At 2 threads the figure is the two
 * threads' CPU time summed, per operation of one thread: the total work, contention
 * included, and less noisy than the slower thread alone. Every variant run sits between
 * two baseline runs, one right before and one right after it, and the round's ratio is
 * the variant's time over the mean of the two: the host's drift within a few ms cancels.
 * The variants run in random order each round, over many rounds (151 by default); a cell
 * prints the median ratio with a 95% interval of the median from order statistics, and
 * the median ns/op of the variant and of the baseline.
 *   libc also runs as a variant against itself (and X against X): a control. It comes out
 * a little below 1 (0.990-0.999 here), because a run's time is skewed to the right on a
 * shared host (a slow run is much slower, a fast one only a little faster) and the mean
 * of two runs is less skewed than one run: the median of one run over the mean of two is
 * then below 1 even when all three are alike. Every variant of the cell shares that bias,
 * so differences between variants stand as measured; against 1, read a ratio next to
 * its cell's control.
 *
 * State. The threads are made once and kept, so that each keeps its arena, caches and
 * counter slot from one run to the next. Before the rounds every variant runs each cell
 * once untimed. A run builds what it needs with its own allocator before its clock
 * starts (churn's live set: the same 1,024 sizes in every run of a round) and frees all
 * of it after the clock stops, so nothing of one variant's run reaches another's (blocks
 * of different allocators cannot be freed by each other). The same round seeds every run
 * of that round, so the runs paired in it do the same operations. Each round goes through
 * all six cells, so that every cell is spread over the whole run's time; a cell's round
 * starts with an uncounted baseline run, so that its first counted run follows a run of
 * its own cell. Every run, whatever its variant, is prepared alike (run_once says why).
 * What is not reset is the allocator's heap: glibc grows a block in place only when free
 * space borders it, so grow's glibc figure is that of a heap churn has been through, not
 * of a fresh one (bench --only grow libc, on a fresh heap, runs several times faster).
 *
 * Then: bytes of overhead per live block, and the policy engine's costs (bench_policy.c).
 *
 *   bench [--quick] [--rounds N]   --quick: few rounds of short runs, a smoke run (seconds)
 *   bench --only WORKLOAD VARIANT THREADS OPS
 *                                  one run, no warm-up, for perf or valgrind --tool=callgrind
 *   bench --variants               the variants of this build, one a line
 */
#define _GNU_SOURCE /* mallinfo2, gnu_get_libc_version, dlvsym */
#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "mmt/memory.h"
#include "mmt/policy.h"

/* Room that no two threads' written data share, with the neighbouring line that adjacent-
 * line prefetchers pull in along with it. */
#define APART 128

/* ---- The allocators ------------------------------------------------------------------ */

/* glibc's allocator, found by find_glibc() before any worker starts, read-only after:
 * alone on its lines so that no write elsewhere evicts it. */
static struct {
    alignas(APART) void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void (*free)(void *);
} glibc;

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
    glibc.malloc = (void *(*)(size_t))glibc_symbol("malloc");
    glibc.calloc = (void *(*)(size_t, size_t))glibc_symbol("calloc");
    glibc.realloc = (void *(*)(void *, size_t))glibc_symbol("realloc");
    glibc.free = (void (*)(void *))glibc_symbol("free");
}

/* The allocator mmt is built over, called as core/backend.c calls it. */
#if defined(MMT_BACKEND_MIMALLOC)
#include <mimalloc.h>
#define HAVE_PLAIN 1
#define plain_malloc mi_malloc
#define plain_calloc mi_calloc
#define plain_realloc mi_realloc
#define plain_free mi_free

#elif defined(MMT_BACKEND_JEMALLOC)
#include <jemalloc/jemalloc.h>
#define HAVE_PLAIN 1
/* The sizes here are never 0, which mallocx refuses. */
static inline void *plain_malloc(size_t n)
{
    return mallocx(n, 0);
}

static inline void *plain_calloc(size_t count, size_t n)
{
    return mallocx(count * n, MALLOCX_ZERO);
}

static inline void *plain_realloc(void *p, size_t n)
{
    return p ? rallocx(p, n, 0) : mallocx(n, 0);
}

static inline void plain_free(void *p)
{
    if (p) dallocx(p, 0);
}

#else
#define HAVE_PLAIN 0
#define plain_malloc glibc.malloc
#define plain_calloc glibc.calloc
#define plain_realloc glibc.realloc
#define plain_free glibc.free
#endif

/* ---- The peer: a Redis-zmalloc-style counting wrapper ----------------------------------- */

/* Bytes in use by this thread's peer blocks, net (this thread only). A worker checks it is
 * back at 0 after each run, which also keeps the compiler from dropping the updates. */
static _Thread_local int64_t peer_in_use;

__attribute__((noinline)) static void *peer_malloc(size_t n)
{
    size_t *h = plain_malloc(n + 16);
    if (!h) abort();
    h[0] = n;
    peer_in_use += (int64_t)n;
    return h + 2;
}

__attribute__((noinline)) static void *peer_calloc(size_t c, size_t n)
{
    size_t *h = plain_calloc(1, c * n + 16);
    if (!h) abort();
    h[0] = c * n;
    peer_in_use += (int64_t)(c * n);
    return h + 2;
}

__attribute__((noinline)) static void *peer_realloc(void *p, size_t n)
{
    if (!p) return peer_malloc(n);
    size_t *h = (size_t *)p - 2;
    int64_t old = (int64_t)h[0];
    h = plain_realloc(h, n + 16);
    if (!h) abort();
    h[0] = n;
    peer_in_use += (int64_t)n - old;
    return h + 2;
}

__attribute__((noinline)) static void peer_free(void *p)
{
    if (!p) return;
    size_t *h = (size_t *)p - 2;
    peer_in_use -= (int64_t)h[0];
    plain_free(h);
}

/* ---- Workloads, one copy per allocator so that every call is direct ---------------------- */

enum { LIVE = 1024, GROW_LIMIT = 64 * 1024 };

typedef struct job job_t;
typedef void (*workload_fn)(job_t *j);

/* One worker's run. Each job sits on lines of its own: the worker writes `cpu` and `sink`
 * during its run, and nothing else does. */
struct job {
    alignas(APART) workload_fn fn; /* fn, ops, seed, pair: set by the main thread between runs */
    long ops;
    uint64_t seed;
    pthread_barrier_t *pair; /* 2-thread runs: both start the clock together */
    double started;
    double cpu;          /* seconds of this thread's CPU time in the timed loop */
    void *volatile sink; /* a pointer the compiler must assume is used */
};

static inline uint64_t next_random(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static inline size_t churn_size(uint64_t r)
{
    return 16 + (r >> 20) % 4081;
}

static inline void timed_start(job_t *j)
{
    if (j->pair) pthread_barrier_wait(j->pair);
    j->started = bench_thread_cpu();
}

static inline void timed_stop(job_t *j)
{
    j->cpu = bench_thread_cpu() - j->started;
}

#define WORKLOADS(P, MALLOC, CALLOC, REALLOC, FREE)                                          \
    static void P##_churn(job_t *j)                                                          \
    {                                                                                        \
        char *live[LIVE];                                                                    \
        uint64_t s = j->seed;                                                                \
        for (size_t k = 0; k < LIVE; k++) {                                                  \
            live[k] = MALLOC(churn_size(next_random(&s)));                                   \
            live[k][0] = 0;                                                                  \
        }                                                                                    \
        timed_start(j);                                                                      \
        for (long i = 0; i < j->ops; i++) {                                                  \
            uint64_t r = next_random(&s);                                                    \
            size_t k = r % LIVE;                                                             \
            FREE(live[k]);                                                                   \
            live[k] = MALLOC(churn_size(r));                                                 \
            live[k][0] = (char)i;                                                            \
        }                                                                                    \
        timed_stop(j);                                                                       \
        for (size_t k = 0; k < LIVE; k++) FREE(live[k]);                                     \
    }                                                                                        \
    static void P##_grow(job_t *j)                                                           \
    {                                                                                        \
        char *p = NULL;                                                                      \
        size_t size = 16;                                                                    \
        timed_start(j);                                                                      \
        for (long i = 0; i < j->ops; i++) {                                                  \
            p = REALLOC(p, size);                                                            \
            p[size - 1] = (char)i;                                                           \
            size += size / 4;                                                                \
            if (size > GROW_LIMIT) {                                                         \
                FREE(p);                                                                     \
                p = NULL;                                                                    \
                size = 16;                                                                   \
            }                                                                                \
        }                                                                                    \
        timed_stop(j);                                                                       \
        FREE(p);                                                                             \
    }                                                                                        \
    static void P##_pairs(job_t *j)                                                          \
    {                                                                                        \
        timed_start(j);                                                                      \
        for (long i = 0; i < j->ops; i++) {                                                  \
            char *p = CALLOC(1, 64);                                                         \
            p[0] = (char)i;                                                                  \
            j->sink = p;                                                                     \
            FREE(p);                                                                         \
        }                                                                                    \
        timed_stop(j);                                                                       \
    }

WORKLOADS(libc, glibc.malloc, glibc.calloc, glibc.realloc, glibc.free)
#if HAVE_PLAIN
WORKLOADS(plain, plain_malloc, plain_calloc, plain_realloc, plain_free)
#endif
WORKLOADS(mmt, mmt_malloc, mmt_calloc, mmt_realloc, mmt_free)
WORKLOADS(peer, peer_malloc, peer_calloc, peer_realloc, peer_free)

/* mmt with a current tag set: every block of the run is counted in the tag too. */
static mmt_tag_t bench_tag; /* made by list_variants() before the workers start */
#define TAGGED(W)                                                                            \
    static void tagged_##W(job_t *j)                                                         \
    {                                                                                        \
        mmt_tag_t was = mmt_tag_switch(bench_tag);                                           \
        mmt_##W(j);                                                                          \
        mmt_tag_switch(was);                                                                 \
    }
TAGGED(churn)
TAGGED(grow)
TAGGED(pairs)

enum { W_CHURN, W_GROW, W_PAIRS, WORKLOADS_N };
enum { V_LIBC, V_PLAIN, V_MMT, V_POLICY, V_PEER, V_TAGGED, V_LIMITS, VARIANTS_MAX };

static const char *const workload_names[WORKLOADS_N] = {"churn", "grow", "pairs"};
static const char *variant_names[VARIANTS_MAX] = {"libc", "(none)", "mmt",   "policy",
                                                  "peer", "tagged", "limits"};
static const workload_fn functions[VARIANTS_MAX][WORKLOADS_N] = {
    {libc_churn, libc_grow, libc_pairs},
#if HAVE_PLAIN
    {plain_churn, plain_grow, plain_pairs},
#else
    {NULL, NULL, NULL},
#endif
    {mmt_churn, mmt_grow, mmt_pairs},
    {mmt_churn, mmt_grow, mmt_pairs}, /* with the engine loaded */
    {peer_churn, peer_grow, peer_pairs},
    {tagged_churn, tagged_grow, tagged_pairs},
    {tagged_churn, tagged_grow, tagged_pairs}, /* with the limits set */
};

/* The variants of this build, in table order, and the baselines among them (indices of
 * variants). Set with variant_names[V_PLAIN] by list_variants() before the workers start;
 * read-only after. */
static int variants[VARIANTS_MAX], variants_n;
static int bases[2], bases_n;

static void list_variants(void)
{
    variant_names[V_PLAIN] = mmt_backend();
    int tag = mmt_tag_new("bench", MMT_TAG_ROOT);
    if (tag <= 0) {
        fprintf(stderr, "bench: cannot make a tag: %s\n", mmt_strerror(tag));
        exit(1);
    }
    bench_tag = (mmt_tag_t)tag;
    for (int v = 0; v < VARIANTS_MAX; v++)
        if (functions[v][0]) variants[variants_n++] = v;
    bases[bases_n++] = V_LIBC;
    if (HAVE_PLAIN) bases[bases_n++] = V_PLAIN;
}

/* ---- The workers ------------------------------------------------------------------------ */

/* The main thread writes jobs[i].fn/ops/seed/pair, `active` and `stopping` only while
 * the workers wait at `go`; the barriers order those writes before the workers' reads,
 * and the workers' results before the main thread's reads after `done`. */
static job_t jobs[2];
static pthread_t workers[2];
static pthread_barrier_t go, done; /* the main thread and both workers */
static pthread_barrier_t pair;     /* the two workers, when both take part */
static int active;                 /* workers taking part in this run */
static int stopping;

static void *work(void *arg)
{
    job_t *j = arg;
    int index = (int)(j - jobs);
    for (;;) {
        pthread_barrier_wait(&go);
        if (stopping) return NULL;
        if (index < active) {
            j->fn(j);
            if (peer_in_use != 0) {
                fprintf(stderr, "bench: the peer counts %lld B in use after a run, not 0\n",
                        (long long)peer_in_use);
                abort();
            }
        }
        pthread_barrier_wait(&done);
    }
}

static void start_workers(void)
{
    pthread_barrier_init(&go, NULL, 3);
    pthread_barrier_init(&done, NULL, 3);
    pthread_barrier_init(&pair, NULL, 2);
    for (int i = 0; i < 2; i++)
        if (pthread_create(&workers[i], NULL, work, &jobs[i]) != 0) {
            fprintf(stderr, "bench: cannot start a worker thread\n");
            exit(1);
        }
}

static void stop_workers(void)
{
    stopping = 1;
    pthread_barrier_wait(&go);
    for (int i = 0; i < 2; i++) pthread_join(workers[i], NULL);
    pthread_barrier_destroy(&go);
    pthread_barrier_destroy(&done);
    pthread_barrier_destroy(&pair);
}

/* ---- The policy variant's engine --------------------------------------------------------- */

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

static void remove_policy(void)
{
    unlink(policy_path);
    rmdir(policy_dir);
}

static mmt_policy_t *start_engine(void)
{
    mmt_policy_options_t o = {.interval_ms = 100, .checkpoint_bytes = 1 << 20};
    mmt_policy_t *engine = mmt_policy_new(&o);
    if (!engine) {
        fprintf(stderr, "bench: cannot make a policy engine\n");
        exit(1);
    }
    mmt_policy_set_log(engine, quiet, NULL);
    if (mmt_policy_load(engine, policy_path) != 0) {
        fprintf(stderr, "bench: cannot load the benchmark policy: %s\n", mmt_policy_error(engine));
        exit(1);
    }
    return engine;
}

/* ---- One run ---------------------------------------------------------------------------- */

/* Set by --only: a run makes an engine only for the policy variant, so that a profile of
 * another variant shows nothing but its workload. Main thread only. */
static int plain_start;

/* Thread CPU time per operation of one thread, in ns, of variant v running workload w on
 * `threads` workers for `ops` operations each; `seed` picks churn's sizes.
 *
 * Every run, whatever its variant, starts the same way: the main thread makes and loads
 * an engine, and frees it at once unless the variant is `policy`. Making an engine takes
 * the main thread about 0.2 ms while the workers wait, and on a shared host the cores it
 * leaves idle meanwhile go to other programs, which cool the caches: were that done only
 * before the policy runs, it would show as a policy cost of 1-3% that is not one. */
static double run_once(int v, int w, int threads, long ops, uint64_t seed)
{
    mmt_policy_t *engine = NULL;
    if (v == V_POLICY || !plain_start) engine = start_engine();
    if (v != V_POLICY) {
        mmt_policy_free(engine);
        engine = NULL;
    }
    for (int i = 0; i < threads; i++) {
        jobs[i].fn = functions[v][w];
        jobs[i].ops = ops;
        jobs[i].seed = seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(i + 1));
        jobs[i].pair = threads == 2 ? &pair : NULL;
    }
    active = threads;
    const uint64_t far = (uint64_t)1 << 40;
    if (v == V_LIMITS) {
        mmt_limit_set(bench_tag, far);
        mmt_limit_set(MMT_TAG_ROOT, far);
    }
    pthread_barrier_wait(&go);
    pthread_barrier_wait(&done);
    if (v == V_LIMITS) {
        mmt_limit_set(bench_tag, 0);
        mmt_limit_set(MMT_TAG_ROOT, 0);
    }
    mmt_policy_free(engine);
    double cpu = 0;
    for (int i = 0; i < threads; i++) cpu += jobs[i].cpu;
    return cpu * 1e9 / ((double)ops * threads);
}

/* ---- Rounds ------------------------------------------------------------------------------ */

enum { ROUNDS_DEFAULT = 151, ROUNDS_QUICK = 9 };
static const long ops_full[WORKLOADS_N] = {30000, 30000, 60000};
static const long ops_quick[WORKLOADS_N] = {10000, 10000, 20000};

/* One place in a round's sequence: variant v, run as baseline `base` (an index into
 * bases[]) or as the variant measured (-1). */
typedef struct slot {
    int v;
    int base;
} slot_t;

/* A cell's samples: per round, each variant's ns/op and its ratio to each baseline;
 * and every baseline run's ns/op. */
typedef struct cell {
    double *ns[VARIANTS_MAX];
    double *ratio[2][VARIANTS_MAX];
    double *base_ns[2];
    size_t base_n[2];
} cell_t;

static uint64_t schedule_state = 0x2545f4914f6cdd1dull; /* main thread only */

static void shuffle(int *a, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int k = (int)(next_random(&schedule_state) % (uint64_t)(i + 1));
        int t = a[i];
        a[i] = a[k];
        a[k] = t;
    }
}

/* Round r of cell c (workload w at `threads` threads): every variant in random order,
 * each between runs of every baseline. With two baselines the pair alternates its order
 * (G X v X G v G X ...), so that each variant has each baseline for its nearest
 * neighbour in about half of the rounds. */
static void run_round(cell_t *c, int r, int w, int threads, long ops)
{
    int order[VARIANTS_MAX];
    memcpy(order, variants, sizeof order);
    shuffle(order, variants_n);
    slot_t seq[VARIANTS_MAX + (VARIANTS_MAX + 1) * 2];
    int n = 0;
    for (int i = 0; i <= variants_n; i++) {
        for (int k = 0; k < bases_n; k++) {
            int b = i % 2 ? bases_n - 1 - k : k;
            seq[n++] = (slot_t){bases[b], b};
        }
        if (i < variants_n) seq[n++] = (slot_t){order[i], -1};
    }
    uint64_t seed = 0x853c49e6748fea9bull ^ (0x9e3779b97f4a7c15ull * (uint64_t)(r + 1));
    /* A lead-in, not counted: the round's first baseline run would otherwise follow
     * another cell's run (another workload, thread count, heap state) and be slower than
     * the others, which biases the ratio of whichever variant comes first. */
    run_once(bases[0], w, threads, ops, seed);
    double t[sizeof seq / sizeof seq[0]];
    for (int i = 0; i < n; i++) t[i] = run_once(seq[i].v, w, threads, ops, seed);

    for (int i = 0; i < n; i++) {
        int b = seq[i].base;
        if (b >= 0) {
            c->base_ns[b][c->base_n[b]++] = t[i];
            continue;
        }
        c->ns[seq[i].v][r] = t[i];
        for (b = 0; b < bases_n; b++) {
            int before = i - 1, after = i + 1;
            while (seq[before].base != b) before--;
            while (seq[after].base != b) after++;
            c->ratio[b][seq[i].v][r] = t[i] / ((t[before] + t[after]) / 2);
        }
    }
}

static void print_tables(cell_t cells[WORKLOADS_N][2], int rounds, const long *ops)
{
    printf("\nallocation: thread CPU time per operation (at 2 threads: both threads' time summed, "
           "per operation of one thread); %d rounds, runs of %ld/%ld/%ld operations per thread "
           "(churn/grow/pairs)\n",
           rounds, ops[W_CHURN], ops[W_GROW], ops[W_PAIRS]);
    printf("ratio: a variant's run over the mean of the baseline's runs right before and right "
           "after it; median over the rounds, [95%% interval of that median]\n");
    for (int b = 0; b < bases_n; b++) {
        const char *base = variant_names[bases[b]];
        printf("\nmmt over %s, against %s%s\n", mmt_backend(), base,
               bases[b] == V_LIBC ? " (glibc)" : "");
        printf("  %-8s %7s %-9s %9s %11s %7s  %s\n", "workload", "threads", "variant", "ns/op",
               "base ns/op", "ratio", "95% interval");
        for (int w = 0; w < WORKLOADS_N; w++)
            for (int t = 0; t < 2; t++) {
                cell_t *c = &cells[w][t];
                bench_median_t base_ns = bench_median_ci(c->base_ns[b], c->base_n[b]);
                for (int i = 0; i < variants_n; i++) {
                    int v = variants[i];
                    bench_median_t ns = bench_median_ci(c->ns[v], (size_t)rounds);
                    bench_median_t ratio = bench_median_ci(c->ratio[b][v], (size_t)rounds);
                    printf("  %-8s %7d %-9s %9.2f %11.2f %7.3f  [%5.3f, %5.3f]\n",
                           workload_names[w], t + 1, variant_names[v], ns.median,
                           base_ns.median, ratio.median, ratio.lo, ratio.hi);
                }
            }
    }
    for (int b = 0; b < bases_n; b++)
        for (int w = 0; w < WORKLOADS_N; w++)
            for (int t = 0; t < 2; t++)
                for (int i = 0; i < variants_n; i++) {
                    cell_t *c = &cells[w][t];
                    int v = variants[i];
                    bench_median_t ns = bench_median_ci(c->ns[v], (size_t)rounds);
                    bench_median_t base_ns = bench_median_ci(c->base_ns[b], c->base_n[b]);
                    bench_median_t ratio = bench_median_ci(c->ratio[b][v], (size_t)rounds);
                    printf("{\"workload\":\"%s\",\"threads\":%d,\"variant\":\"%s\","
                           "\"backend\":\"%s\",\"baseline\":\"%s\",\"rounds\":%d,"
                           "\"ns_per_op\":%.2f,\"baseline_ns_per_op\":%.2f,\"ratio\":%.4f,"
                           "\"ratio_lo\":%.4f,\"ratio_hi\":%.4f}\n",
                           workload_names[w], t + 1, variant_names[v], mmt_backend(),
                           variant_names[bases[b]], rounds, ns.median, base_ns.median,
                           ratio.median, ratio.lo, ratio.hi);
                }
}

static double *samples(size_t n)
{
    double *p = calloc(n, sizeof *p);
    if (!p) abort();
    return p;
}

static void bench_allocation(int quick, int rounds)
{
    const long *ops = quick ? ops_quick : ops_full;
    static cell_t cells[WORKLOADS_N][2];
    for (int w = 0; w < WORKLOADS_N; w++)
        for (int t = 0; t < 2; t++) {
            cell_t *c = &cells[w][t];
            for (int v = 0; v < VARIANTS_MAX; v++) {
                c->ns[v] = samples((size_t)rounds);
                for (int b = 0; b < bases_n; b++) c->ratio[b][v] = samples((size_t)rounds);
            }
            for (int b = 0; b < bases_n; b++)
                c->base_ns[b] = samples((size_t)rounds * (VARIANTS_MAX + 1));
        }
    write_policy();
    /* Warm-up: page faults, the allocators' caches and arenas, counter slots, LuaJIT. */
    for (int w = 0; w < WORKLOADS_N; w++)
        for (int t = 0; t < 2; t++)
            for (int i = 0; i < variants_n; i++) run_once(variants[i], w, t + 1, ops[w], 0);
    /* Rounds outermost, so that every cell is spread over the whole run's time. */
    for (int r = 0; r < rounds; r++)
        for (int w = 0; w < WORKLOADS_N; w++)
            for (int t = 0; t < 2; t++) run_round(&cells[w][t], r, w, t + 1, ops[w]);
    remove_policy();
    print_tables(cells, rounds, ops);
    for (int w = 0; w < WORKLOADS_N; w++)
        for (int t = 0; t < 2; t++) {
            cell_t *c = &cells[w][t];
            for (int v = 0; v < VARIANTS_MAX; v++) {
                free(c->ns[v]);
                for (int b = 0; b < bases_n; b++) free(c->ratio[b][v]);
            }
            for (int b = 0; b < bases_n; b++) free(c->base_ns[b]);
        }
}

/* ---- Memory overhead ---------------------------------------------------------------------- */

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
    printf("\nmemory: heap bytes per live block beyond what was asked (glibc's mallinfo2)\n");
    if (strcmp(mmt_backend(), "libc") != 0) {
        printf("  (mmt is built on %s here: glibc's counters do not see its heap)\n",
               mmt_backend());
        return;
    }
    size_t *sizes = glibc.malloc(N * sizeof *sizes);
    void **blocks = glibc.malloc(N * sizeof *blocks);
    const char *names[] = {"random 16..4096 B", "fixed 64 B", "fixed 24 B"};
    for (int d = 0; d < 3; d++) {
        uint64_t seed = 42, asked = 0;
        for (size_t i = 0; i < N; i++) {
            sizes[i] = d == 0 ? 16 + next_random(&seed) % 4081 : d == 1 ? 64 : 24;
            asked += sizes[i];
        }
        size_t libc = heap_bytes(glibc.malloc, glibc.free, sizes, blocks, N);
        size_t mmt = heap_bytes(mmt_malloc, mmt_free, sizes, blocks, N);
        double extra_libc = (double)(libc - asked) / N, extra_mmt = (double)(mmt - asked) / N;
        printf("  %-18s libc %6.1f B  mmt %6.1f B  mmt's own %5.1f B per block\n", names[d],
               extra_libc, extra_mmt, extra_mmt - extra_libc);
        printf("{\"figure\":\"overhead\",\"sizes\":\"%s\",\"libc_bytes_per_block\":%.1f,"
               "\"mmt_bytes_per_block\":%.1f}\n", names[d], extra_libc, extra_mmt);
    }
    printf("  plus each thread's counter slot, in its thread-local storage: 128 B\n");
    glibc.free(sizes);
    glibc.free(blocks);
}

/* ---- Main ---------------------------------------------------------------------------------- */

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

static int variant_index(const char *name)
{
    for (int i = 0; i < variants_n; i++)
        if (strcmp(variant_names[variants[i]], name) == 0) return variants[i];
    return -1;
}

/* bench --only WORKLOAD VARIANT THREADS OPS */
static int run_only(char **argv)
{
    int w = -1;
    for (int i = 0; i < WORKLOADS_N; i++)
        if (strcmp(workload_names[i], argv[0]) == 0) w = i;
    int v = variant_index(argv[1]);
    int threads = atoi(argv[2]);
    long ops = atol(argv[3]);
    if (w < 0 || v < 0 || threads < 1 || threads > 2 || ops < 1) {
        fprintf(stderr, "bench --only: WORKLOAD is churn, grow or pairs; VARIANT one of "
                        "`bench --variants`; THREADS 1 or 2; OPS a positive count\n");
        return 2;
    }
    if (v == V_POLICY) write_policy();
    plain_start = 1;
    start_workers();
    double ns = run_once(v, w, threads, ops, 0);
    stop_workers();
    if (v == V_POLICY) remove_policy();
    printf("%s %s %d threads: %.2f ns/op\n", argv[0], argv[1], threads, ns);
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench [--quick] [--rounds N]\n"
                    "       bench --only WORKLOAD VARIANT THREADS OPS\n"
                    "       bench --variants\n");
    return 2;
}

int main(int argc, char **argv)
{
    find_glibc();
    list_variants();
    if (argc == 6 && strcmp(argv[1], "--only") == 0) return run_only(argv + 2);
    if (argc == 2 && strcmp(argv[1], "--variants") == 0) {
        for (int i = 0; i < variants_n; i++) printf("%s\n", variant_names[variants[i]]);
        return 0;
    }
    int quick = 0, rounds = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = 1;
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            rounds = atoi(argv[++i]);
            if (rounds < 1 || rounds > 100000) return usage();
        } else {
            return usage();
        }
    }
    if (rounds == 0) rounds = quick ? ROUNDS_QUICK : ROUNDS_DEFAULT;
    double t0 = bench_now();
    print_machine();
    start_workers();
    bench_allocation(quick, rounds);
    stop_workers();
    bench_overhead();
    bench_policy(quick);
    printf("\ndone in %.1f s\n", bench_now() - t0);
    return 0;
}

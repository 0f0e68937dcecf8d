/*
 * Limits and reclaimers: a limit filled to the byte, threads racing at one, the order and
 * measure of reclaimers, their back-off and removal, the mmt_try_ functions' NULLs (the
 * allocator's failures injected through the backend seam), the abort lines, mmt_trim.
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "backend.h"
#include "reclaim.h"
#include "tags.h"
#include "testutil.h"

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* ---- A cache: blocks in one tag that a reclaimer drops, newest first ------------------- */

enum { CACHE_MAX = 4096 };

typedef struct cache {
    mmt_tag_t tag;
    void *blocks[CACHE_MAX];
    size_t sizes[CACHE_MAX];
    int n;
    const char *name;
    int calls;
    size_t asked[16];
    size_t say_extra; /* added to what it says it freed */
    bool drop_nothing;
} cache_t;

static const char *order[16];
static int order_n;

static void cache_fill(cache_t *c, size_t each, int count)
{
    for (int i = 0; i < count; i++) {
        assert_true(c->n < CACHE_MAX);
        c->blocks[c->n] = mmt_malloc_in(c->tag, each);
        c->sizes[c->n++] = each;
    }
}

static size_t cache_drop(cache_t *c, size_t wanted)
{
    size_t freed = 0;
    while (freed < wanted && c->n > 0) {
        c->n--;
        freed += c->sizes[c->n];
        mmt_free(c->blocks[c->n]);
    }
    return freed;
}

static void cache_empty(cache_t *c)
{
    cache_drop(c, SIZE_MAX);
}

static size_t cache_reclaimer(size_t wanted, void *arg)
{
    cache_t *c = arg;
    if (c->calls < 16) c->asked[c->calls] = wanted;
    c->calls++;
    if (order_n < 16) order[order_n++] = c->name;
    size_t freed = c->drop_nothing ? 0 : cache_drop(c, wanted);
    return freed + c->say_extra;
}

/* ---- The API's errors ------------------------------------------------------------------ */

static size_t frees_nothing(size_t wanted, void *arg)
{
    (void)wanted;
    (void)arg;
    return 0;
}

static void test_reclaim_api_errors_name_their_cause(void **state)
{
    (void)state;
    assert_int_equal(mmt_reclaimer_add(MMT_TAG_ROOT, "x", 0, NULL, NULL), MMT_EINVAL);
    assert_int_equal(mmt_reclaimer_add(MMT_TAG_ROOT, NULL, 0, frees_nothing, NULL), MMT_EINVAL);
    assert_int_equal(mmt_reclaimer_add(MMT_TAG_ROOT, "", 0, frees_nothing, NULL), MMT_EINVAL);
    char longname[80];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(mmt_reclaimer_add(MMT_TAG_ROOT, longname, 0, frees_nothing, NULL), MMT_EINVAL);
    assert_int_equal(mmt_reclaimer_add(4000, "x", 0, frees_nothing, NULL), MMT_ENOENT);
    assert_int_equal(mmt_reclaimer_remove(123456), MMT_ENOENT);
    assert_int_equal(mmt_limit_set(4000, 10), MMT_ENOENT);
    assert_int_equal(mmt_limit_get(4000), 0);
    assert_int_equal(mmt_reclaim(4000, 10), 0);
    int id = mmt_reclaimer_add(MMT_TAG_ROOT, "x", 0, frees_nothing, NULL);
    assert_true(id > 0);
    assert_int_equal(mmt_reclaimer_remove(id), 0);
    assert_int_equal(mmt_reclaimer_remove(id), MMT_ENOENT);
}

/* ---- Exactness ------------------------------------------------------------------------- */

static void test_reclaim_one_thread_fills_a_limit_to_the_byte(void **state)
{
    (void)state;
    mmt_tag_t t = new_tag("exact", MMT_TAG_ROOT);
    const uint64_t limit = 1000003; /* no multiple of anything */
    assert_int_equal(mmt_limit_set(t, limit), 0);
    assert_int_equal(mmt_limit_get(t), limit);
    mmt_tag_t was = mmt_tag_switch(t);
    void *blocks[2000];
    int n = 0;
    while ((blocks[n] = mmt_try_malloc(1000)) != NULL) n++;
    uint64_t used = tag_in_use(t);
    assert_true(used <= limit && limit - used < 1000);
    assert_int_equal(n, 1000);
    /* The rest, to the byte: then not one byte more, and the refusal counts nothing. */
    blocks[n++] = mmt_try_malloc(limit - used);
    assert_non_null(blocks[n - 1]);
    assert_int_equal(tag_in_use(t), limit);
    mmt_meminfo_t before = meminfo_now();
    assert_null(mmt_try_malloc(1));
    assert_null(mmt_try_calloc(1, 1));
    assert_null(mmt_try_realloc(blocks[0], 1001));
    mmt_meminfo_t after = meminfo_now();
    assert_int_equal(after.allocated, before.allocated);
    assert_int_equal(after.allocations, before.allocations);
    assert_int_equal(after.reallocs, before.reallocs);
    assert_int_equal(tag_in_use(t), limit);
    /* A zero-byte block and a shrink fit; a free makes room for exactly its size. */
    void *zero = mmt_try_malloc(0);
    assert_non_null(zero);
    blocks[0] = mmt_try_realloc(blocks[0], 500);
    assert_non_null(blocks[0]);
    assert_non_null(blocks[1] = mmt_try_realloc(blocks[1], 1500));
    assert_null(mmt_try_malloc(1));
    mmt_free(blocks[2]);
    void *again = mmt_try_malloc(1000);
    assert_non_null(again);
    assert_null(mmt_try_malloc(1));
    assert_int_equal(tag_in_use(t), limit);
    /* Lifting the limit lifts it. */
    assert_int_equal(mmt_limit_set(t, 0), 0);
    void *more = mmt_try_malloc(100000);
    assert_non_null(more);
    mmt_free(more);
    mmt_free(again);
    mmt_free(zero);
    for (int i = 0; i < n; i++)
        if (i != 2) mmt_free(blocks[i]);
    mmt_tag_switch(was);
    assert_int_equal(tag_in_use(t), 0);
    assert_int_equal(atomic_load(&mmt__limits_on), 0);
}

static void test_reclaim_the_roots_limit_caps_the_process_and_realloc_growth(void **state)
{
    (void)state;
    mmt_meminfo_t m = meminfo_now();
    assert_int_equal(mmt_limit_set(MMT_TAG_ROOT, m.in_use + 100000), 0);
    char *p = mmt_malloc(50000);
    memset(p, 7, 50000);
    /* Growth is charged, not the new size: to 90,000 fits (40,000 more). */
    char *q = mmt_try_realloc(p, 90000);
    assert_non_null(q);
    assert_null(mmt_try_realloc(q, 100001));
    assert_int_equal(q[49999], 7); /* untouched */
    assert_int_equal(mmt_size(q), 90000);
    assert_null(mmt_try_malloc(10001));
    void *r = mmt_try_malloc(10000);
    assert_non_null(r);
    assert_int_equal(meminfo_now().in_use, m.in_use + 100000);
    mmt_free(r);
    mmt_free(q);
    assert_int_equal(mmt_limit_set(MMT_TAG_ROOT, 0), 0);
}

/* mmt_try_malloc in `tag`. */
static void *try_in(mmt_tag_t tag, size_t size)
{
    mmt_tag_t was = mmt_tag_switch(tag);
    void *p = mmt_try_malloc(size);
    mmt_tag_switch(was);
    return p;
}

static void test_reclaim_a_limit_covers_its_subtree_and_runs_only_its_reclaimers(void **state)
{
    (void)state;
    mmt_tag_t p = new_tag("scoped", MMT_TAG_ROOT), c = new_tag("child", p),
              s = new_tag("scoped-sibling", MMT_TAG_ROOT);
    cache_t in_child = {.tag = c, .name = "child"}, in_sibling = {.tag = s, .name = "sibling"},
            above = {.tag = MMT_TAG_ROOT, .name = "root"};
    cache_fill(&in_child, 1000, 50);
    cache_fill(&in_sibling, 1000, 50);
    int ids[3] = {mmt_reclaimer_add(c, "child", 0, cache_reclaimer, &in_child),
                  mmt_reclaimer_add(s, "sibling", -1, cache_reclaimer, &in_sibling),
                  mmt_reclaimer_add(MMT_TAG_ROOT, "root", -2, cache_reclaimer, &above)};
    assert_int_equal(mmt_limit_set(p, 60000), 0);
    /* The child's 50,000 count against its parent's limit: 20,000 more is 10,000 over, which
     * the child's reclaimer gives back; the sibling's and the root's are outside the
     * limited subtree and never run. */
    void *b = try_in(p, 20000);
    assert_non_null(b);
    assert_int_equal(in_child.calls, 1);
    assert_int_equal(in_child.asked[0], 10000);
    assert_int_equal(in_sibling.calls, 0);
    assert_int_equal(above.calls, 0);
    assert_int_equal(tag_in_use(p), 60000);
    /* The sibling is not limited. */
    void *big = try_in(s, 1000000);
    assert_non_null(big);
    mmt_free(big);
    mmt_free(b);
    assert_int_equal(mmt_limit_set(p, 0), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(mmt_reclaimer_remove(ids[i]), 0);
    cache_empty(&in_child);
    cache_empty(&in_sibling);
}

/* Four threads allocate and free at random in one limited tag. Each keeps the sizes it
 * holds; at the end their sum is the tag's in_use (the counters stay exact), and no exact
 * reading taken after an admission ever found the tag more than the three others' largest
 * requests above the limit. */
enum { RACERS = 4, RACE_OPS = 20000, RACE_MAX = 4096 };

typedef struct racer {
    mmt_tag_t tag;
    uint64_t limit;
    unsigned seed;
    void *blocks[512];
    size_t sizes[512];
    int n;
    uint64_t held, refused, worst_over;
} racer_t;

static void *race(void *arg)
{
    racer_t *r = arg;
    mmt_tag_switch(r->tag);
    for (int op = 0; op < RACE_OPS; op++) {
        r->seed = r->seed * 1103515245u + 12345u;
        unsigned x = r->seed >> 8;
        if (x % 4 == 0 && r->n > 0) { /* one free for three allocations: the limit is met */
            int k = (int)(x % (unsigned)r->n);
            r->held -= r->sizes[k];
            mmt_free(r->blocks[k]);
            r->n--;
            r->blocks[k] = r->blocks[r->n];
            r->sizes[k] = r->sizes[r->n];
        } else if (r->n < 512) {
            size_t size = 1 + (x >> 1) % RACE_MAX;
            void *p = mmt_try_malloc(size);
            if (!p) {
                r->refused++;
                continue;
            }
            r->blocks[r->n] = p;
            r->sizes[r->n++] = size;
            r->held += size;
            if (op % 8 == 0) {
                int64_t now = mmt__tag_in_use(r->tag);
                if (now > (int64_t)r->limit && (uint64_t)now - r->limit > r->worst_over)
                    r->worst_over = (uint64_t)now - r->limit;
            }
        }
    }
    return NULL;
}

static void test_reclaim_four_threads_racing_at_a_limit_stay_within_the_bound(void **state)
{
    (void)state;
    mmt_tag_t t = new_tag("race", MMT_TAG_ROOT);
    racer_t racers[RACERS];
    pthread_t threads[RACERS];
    const uint64_t limit = 600000; /* 4 x 512 blocks of 2 KiB on average would be 4 MiB */
    assert_int_equal(mmt_limit_set(t, limit), 0);
    for (int i = 0; i < RACERS; i++) {
        racers[i] = (racer_t){.tag = t, .limit = limit, .seed = (unsigned)(i + 1) * 7919u};
        assert_int_equal(pthread_create(&threads[i], NULL, race, &racers[i]), 0);
    }
    uint64_t held = 0, refused = 0, worst = 0;
    for (int i = 0; i < RACERS; i++) {
        pthread_join(threads[i], NULL);
        held += racers[i].held;
        refused += racers[i].refused;
        if (racers[i].worst_over > worst) worst = racers[i].worst_over;
    }
    print_message("%d threads at a limit of %llu: %llu refusals, worst excess seen %llu bytes "
                  "(bound %d)\n", RACERS, (unsigned long long)limit, (unsigned long long)refused,
                  (unsigned long long)worst, (RACERS - 1) * RACE_MAX);
    assert_true(refused > 0); /* the limit was reached */
    assert_true(worst <= (RACERS - 1) * RACE_MAX);
    assert_int_equal(tag_in_use(t), held);
    assert_true(held <= limit + (RACERS - 1) * RACE_MAX);
    for (int i = 0; i < RACERS; i++)
        for (int k = 0; k < racers[i].n; k++) mmt_free(racers[i].blocks[k]);
    assert_int_equal(tag_in_use(t), 0);
    assert_int_equal(mmt_limit_set(t, 0), 0);
}

/* A reclaimer that allocates, while the request that started it is on its way: its
 * allocation must get no allowance, or the allowance would be spent past the limit once
 * the request has filled the tag to the byte. */
static void *one_more_cache[16];
static int one_more_n;
static void *one_more_small;
static size_t drops_then_allocates(size_t wanted, void *arg)
{
    (void)wanted;
    (void)arg;
    size_t freed = 0;
    for (int i = 0; i < one_more_n; i++) {
        freed += mmt_size(one_more_cache[i]);
        mmt_free(one_more_cache[i]);
    }
    one_more_n = 0;
    if (!one_more_small) one_more_small = mmt_malloc(100); /* once: later calls find no room */
    return freed;
}

static void test_reclaim_no_allowance_outlives_a_request_filled_to_the_limit(void **state)
{
    (void)state;
    enum { LIMIT = 1024 * 1024 };
    mmt_tag_t t = new_tag("one-more", MMT_TAG_ROOT);
    mmt_tag_t was = mmt_tag_switch(t);
    mmt_free(mmt_malloc(10));
    assert_int_equal(mmt_limit_set(t, LIMIT), 0);
    for (one_more_n = 0; one_more_n < 14; one_more_n++)
        one_more_cache[one_more_n] = mmt_malloc(64 * 1024);
    int id = mmt_reclaimer_add(t, "drop", 0, drops_then_allocates, NULL);
    void *big = mmt_malloc(LIMIT - 100); /* reclaims, then fits beside the 100 bytes */
    assert_int_equal(tag_in_use(t), LIMIT);
    assert_null(mmt_try_malloc(30000));
    assert_null(mmt_try_malloc(1));
    assert_int_equal(tag_in_use(t), LIMIT);
    assert_int_equal(mmt_reclaimer_remove(id), 0);
    mmt_free(big);
    mmt_free(one_more_small);
    mmt_tag_switch(was);
    assert_int_equal(mmt_limit_set(t, 0), 0);
}

/* One thread fills a limited tag with one large request (the exact test, after a reclaim)
 * while three churn small blocks and take allowances. Requests admitted at once may pass the limit by what
 * the others have in flight (the small ones admitted while the large one is on its way to
 * being counted); what must never happen is an allowance that outlives it: with all of
 * them stopped, in_use plus every allowance still valid is within the limit, unless no
 * allowance is valid; and each spending what its allowance holds, alone, never takes
 * in_use past the limit. */
enum { FILLERS = 4, FILL_SMALL = 64, FILL_ROUNDS = 60, FILL_CACHE = 8 };
static mmt_tag_t fill_tag;
/* The large request needs a reclaim, whose reclaimer frees a cache and allocates 16 bytes:
 * that allocation's own admission must not end the reservation of the request. */
static void *fill_cache[FILL_CACHE];
static void *fill_small;
/* Reclaimers run on whichever threads need room, several at once: this one's cache is a
 * program's, under a lock of its own. */
static pthread_mutex_t fill_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t frees_the_cache(size_t wanted, void *arg)
{
    (void)wanted;
    (void)arg;
    size_t freed = 0;
    pthread_mutex_lock(&fill_cache_lock);
    for (int i = 0; i < FILL_CACHE; i++) {
        freed += fill_cache[i] ? mmt_size(fill_cache[i]) : 0;
        mmt_free(fill_cache[i]);
        fill_cache[i] = NULL;
    }
    mmt_free(fill_small);
    fill_small = mmt_try_malloc(16);
    pthread_mutex_unlock(&fill_cache_lock);
    return freed;
}
static pthread_barrier_t fill_bar;
static atomic_int fill_done, fill_stop;
static size_t fill_size;
static uint64_t fill_left[FILLERS];

static void *filler(void *arg)
{
    int me = (int)(intptr_t)arg;
    mmt_tag_switch(fill_tag);
    void *ring[256] = {0};
    unsigned k = 0;
    void *big = NULL;
    for (;;) {
        pthread_barrier_wait(&fill_bar);
        if (atomic_load(&fill_stop)) break;
        if (me == 0) {
            big = mmt_try_malloc(fill_size);
            atomic_store(&fill_done, 1);
        } else {
            while (!atomic_load(&fill_done)) {
                unsigned j = k++ % 256;
                mmt_free(ring[j]);
                ring[j] = mmt_try_malloc(FILL_SMALL);
            }
        }
        uint64_t gen = atomic_load(&mmt__limits_gen);
        fill_left[me] = mmt__allowance.gen == gen ? mmt__allowance.left : 0;
        pthread_barrier_wait(&fill_bar); /* stopped, allowances reported */
        pthread_barrier_wait(&fill_bar); /* checked: now spend, one at a time */
        void *spent = NULL;
        for (int turn = 1; turn < FILLERS; turn++) {
            if (me == turn && fill_left[me]) spent = mmt_try_malloc(fill_left[me]);
            pthread_barrier_wait(&fill_bar);
        }
        mmt_free(spent);
        mmt_free(big);
        big = NULL;
        pthread_barrier_wait(&fill_bar);
    }
    for (int j = 0; j < 256; j++) mmt_free(ring[j]);
    return NULL;
}

static void test_reclaim_allowances_and_an_exact_request_keep_the_limit(void **state)
{
    (void)state;
    enum { LIMIT = 8 * 1024 * 1024 };
    fill_tag = new_tag("filled", MMT_TAG_ROOT);
    assert_int_equal(mmt_limit_set(fill_tag, LIMIT), 0);
    pthread_barrier_init(&fill_bar, NULL, FILLERS + 1);
    pthread_t threads[FILLERS];
    for (int i = 0; i < FILLERS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, filler, (void *)(intptr_t)i), 0);
    mmt_tag_t was = mmt_tag_switch(fill_tag);
    int id = mmt_reclaimer_add(fill_tag, "cache", 0, frees_the_cache, NULL);
    unsigned seed = 1;
    long worst = LONG_MIN, worst_spent = LONG_MIN;
    for (int round = 0; round < FILL_ROUNDS; round++) {
        seed = seed * 1103515245u + 12345u;
        void *base = mmt_malloc(LIMIT / 2 - (seed >> 16) % 4096);
        for (int i = 0; i < FILL_CACHE; i++) fill_cache[i] = mmt_malloc(32 * 1024);
        fill_size = LIMIT - (tag_in_use(fill_tag) - FILL_CACHE * 32 * 1024) - 16 - (seed >> 8) % 64;
        atomic_store(&fill_done, 0);
        pthread_barrier_wait(&fill_bar);
        pthread_barrier_wait(&fill_bar);
        uint64_t left = 0;
        for (int i = 0; i < FILLERS; i++) left += fill_left[i];
        long stopped = (long)tag_in_use(fill_tag) - LIMIT;
        if (left > 0 && stopped + (long)left > worst) worst = stopped + (long)left;
        pthread_barrier_wait(&fill_bar);
        for (int turn = 1; turn < FILLERS; turn++) {
            pthread_barrier_wait(&fill_bar);
            long over = (long)tag_in_use(fill_tag) - LIMIT - (stopped > 0 ? stopped : 0);
            if (over > worst_spent) worst_spent = over;
        }
        pthread_barrier_wait(&fill_bar);
        mmt_free(base);
        for (int i = 0; i < FILL_CACHE; i++) {
            mmt_free(fill_cache[i]);
            fill_cache[i] = NULL;
        }
    }
    assert_int_equal(mmt_reclaimer_remove(id), 0);
    mmt_free(fill_small);
    fill_small = NULL;
    atomic_store(&fill_stop, 1);
    pthread_barrier_wait(&fill_bar);
    for (int i = 0; i < FILLERS; i++) pthread_join(threads[i], NULL);
    if (worst == LONG_MIN)
        print_message("%d rounds: no allowance valid when the tag was full; spending, at worst "
                      "%ld past the limit\n", FILL_ROUNDS, worst_spent);
    else
        print_message("%d rounds: in_use + valid allowances at worst %ld bytes from the limit; "
                      "spending them, at worst %ld past it\n", FILL_ROUNDS, worst, worst_spent);
    assert_true(worst <= 0);
    assert_true(worst_spent <= 0);
    /* One thread fills to the byte, the others idle with what they were granted. */
    uint64_t now = tag_in_use(fill_tag);
    void *rest = mmt_try_malloc(LIMIT - now);
    assert_non_null(rest);
    assert_int_equal(tag_in_use(fill_tag), LIMIT);
    assert_null(mmt_try_malloc(1));
    mmt_free(rest);
    mmt_tag_switch(was);
    pthread_barrier_destroy(&fill_bar);
    assert_int_equal(mmt_limit_set(fill_tag, 0), 0);
}

/* ---- Reclaimers ------------------------------------------------------------------------ */

static void test_reclaim_runs_in_rank_order_and_stops_at_enough(void **state)
{
    (void)state;
    mmt_tag_t t = new_tag("ranked", MMT_TAG_ROOT);
    cache_t a = {.tag = t, .name = "a"}, b = {.tag = t, .name = "b"}, c = {.tag = t, .name = "c"},
            d = {.tag = t, .name = "d"};
    cache_fill(&a, 1000, 3);  /* rank -3: runs first, frees 3,000 */
    cache_fill(&b, 1000, 10); /* rank 5, older: runs second, gives the rest */
    cache_fill(&c, 1000, 10); /* rank 5, younger: not needed */
    cache_fill(&d, 1000, 10); /* rank 9: not needed */
    int ids[4] = {mmt_reclaimer_add(t, "b", 5, cache_reclaimer, &b),
                  mmt_reclaimer_add(t, "c", 5, cache_reclaimer, &c),
                  mmt_reclaimer_add(t, "a", -3, cache_reclaimer, &a),
                  mmt_reclaimer_add(t, "d", 9, cache_reclaimer, &d)};
    order_n = 0;
    uint64_t reports = mmt__reclaim_reports_next();
    assert_int_equal(mmt_limit_set(t, 33000), 0);
    void *p = try_in(t, 6500); /* 33,000 in use: 6,500 missing */
    assert_non_null(p);
    assert_int_equal(order_n, 2);
    assert_string_equal(order[0], "a");
    assert_string_equal(order[1], "b");
    assert_int_equal(a.asked[0], 6500); /* what was missing */
    assert_int_equal(b.asked[0], 3500); /* what was still missing */
    assert_int_equal(c.calls + d.calls, 0);
    assert_int_equal(tag_in_use(t), 26000 + 6500);
    /* One report, naming both and what each freed. */
    assert_int_equal(mmt__reclaim_reports_next(), reports + 1);
    assert_int_equal(mmt_limit_set(t, 0), 0);
    /* mmt_reclaim runs the same chain and returns what the tag fell by. */
    order_n = 0;
    assert_int_equal(mmt_reclaim(t, 15000), 15000);
    assert_int_equal(order_n, 3);
    assert_string_equal(order[0], "a"); /* asked, though empty now */
    assert_string_equal(order[1], "b"); /* frees its 6,000 */
    assert_string_equal(order[2], "c"); /* and c the rest */
    assert_int_equal(c.asked[0], 9000);
    mmt_free(p);
    for (int i = 0; i < 4; i++) assert_int_equal(mmt_reclaimer_remove(ids[i]), 0);
    cache_empty(&a);
    cache_empty(&b);
    cache_empty(&c);
    cache_empty(&d);
}

static char last_report[512];
static void keep_report(const char *line, void *ud)
{
    (void)ud;
    snprintf(last_report, sizeof last_report, "%s", line);
}

static void test_reclaim_a_reclaimers_word_is_measured_not_believed(void **state)
{
    (void)state;
    mmt_tag_t t = new_tag("liar", MMT_TAG_ROOT);
    cache_t liar = {.tag = t, .name = "liar", .drop_nothing = true, .say_extra = 1 << 20},
            honest = {.tag = t, .name = "honest"};
    cache_fill(&honest, 1000, 20);
    int ids[2] = {mmt_reclaimer_add(t, "liar", 0, cache_reclaimer, &liar),
                  mmt_reclaimer_add(t, "honest", 1, cache_reclaimer, &honest)};
    uint64_t cursor = mmt__reclaim_reports_next();
    assert_int_equal(mmt_reclaim(t, 5000), 5000);
    assert_int_equal(liar.calls, 1);
    assert_int_equal(honest.calls, 1); /* the liar's word did not stop the chain */
    assert_int_equal(honest.asked[0], 5000);
    assert_int_equal(mmt__reclaim_reports(&cursor, keep_report, NULL), 0);
    print_message("%s\n", last_report);
    assert_non_null(strstr(last_report, "reclaim for tag \"liar\": wanted 4.9 KiB, freed 4.9 KiB"));
    assert_non_null(strstr(last_report, "liar 0 bytes (said 1 MiB)"));
    assert_non_null(strstr(last_report, "honest 4.9 KiB"));
    for (int i = 0; i < 2; i++) assert_int_equal(mmt_reclaimer_remove(ids[i]), 0);
    cache_empty(&honest);
}

static void test_reclaim_one_that_frees_nothing_backs_off_without_a_spiral(void **state)
{
    (void)state;
    mmt_tag_t t = new_tag("stingy", MMT_TAG_ROOT);
    cache_t stingy = {.tag = t, .name = "stingy", .drop_nothing = true};
    int id = mmt_reclaimer_add(t, "stingy", 0, cache_reclaimer, &stingy);
    assert_int_equal(mmt_limit_set(t, 10000), 0);
    void *fill = try_in(t, 10000);
    assert_non_null(fill);
    /* Each failing request calls it once, not in a loop; twice with nothing freed, and it
     * backs off: the third request does not call it. */
    assert_null(try_in(t, 1));
    assert_int_equal(stingy.calls, 1);
    assert_null(try_in(t, 1));
    assert_int_equal(stingy.calls, 2);
    assert_null(try_in(t, 1));
    assert_null(try_in(t, 1));
    assert_int_equal(stingy.calls, 2);
    /* An explicit reclaim ignores the back-off. */
    assert_int_equal(mmt_reclaim(t, 100), 0);
    assert_int_equal(stingy.calls, 3);
    /* After the back-off, a failing request asks again. */
    sleep_s(MMT_RECLAIM_BACKOFF_S + 0.1);
    assert_null(try_in(t, 1));
    assert_int_equal(stingy.calls, 4);
    mmt_free(fill);
    assert_int_equal(mmt_limit_set(t, 0), 0);
    assert_int_equal(mmt_reclaimer_remove(id), 0);
}

/* Frees `frees` bytes of its cache, then allocates `allocates` bytes in the limited tag
 * (kept in *kept), and tries a nested reclaim, which must do nothing. */
typedef struct greedy {
    cache_t cache;
    size_t allocates;
    void *kept;
    bool inner_refused;
    size_t nested;
} greedy_t;

static size_t greedy_reclaimer(size_t wanted, void *arg)
{
    greedy_t *g = arg;
    g->cache.calls++;
    size_t freed = cache_drop(&g->cache, 1000);
    g->kept = try_in(g->cache.tag, g->allocates);
    /* Its own request over the limit is refused, not reclaimed for (no recursion). */
    g->inner_refused = try_in(g->cache.tag, 1 << 20) == NULL;
    g->nested = mmt_reclaim(g->cache.tag, wanted);
    return freed;
}

static void test_reclaim_one_that_allocates_more_than_it_frees_is_reported(void **state)
{
    (void)state;
    mmt_tag_t t = new_tag("greedy", MMT_TAG_ROOT);
    greedy_t g = {.cache = {.tag = t, .name = "greedy"}, .allocates = 1200};
    cache_fill(&g.cache, 1000, 5);
    int id = mmt_reclaimer_add(t, "greedy", 0, greedy_reclaimer, &g);
    assert_int_equal(mmt_limit_set(t, 5500), 0);
    uint64_t cursor = mmt__reclaim_reports_next();
    /* 5,000 in use; 1,000 asked: 500 missing. It frees 1,000 and takes 1,200: 200 more. */
    assert_null(try_in(t, 1000));
    assert_int_equal(g.cache.calls, 1);
    assert_non_null(g.kept);
    assert_true(g.inner_refused);
    assert_int_equal(g.nested, 0);
    assert_int_equal(tag_in_use(t), 5200);
    mmt__reclaim_reports(&cursor, keep_report, NULL);
    print_message("%s\n", last_report);
    assert_non_null(strstr(last_report, "greedy allocated 200 bytes more than it freed (said 1000 bytes)"));
    mmt_free(g.kept);
    assert_int_equal(mmt_limit_set(t, 0), 0);
    assert_int_equal(mmt_reclaimer_remove(id), 0);
    cache_empty(&g.cache);
}

static void *reclaim_it(void *arg);

/* The root's reclaimer gives back root bytes but takes some in a tag that is near its own
 * limit: the request, checked against that tag before the reclaim, must be checked again. */
typedef struct shifter {
    cache_t root;
    mmt_tag_t into;
    void *taken;
} shifter_t;

static size_t shift_into_tag(size_t wanted, void *arg)
{
    (void)wanted;
    shifter_t *sh = arg;
    size_t freed = cache_drop(&sh->root, 20000);
    sh->taken = try_in(sh->into, 9000);
    return freed;
}

static void test_reclaim_every_limit_is_checked_again_after_a_reclaim(void **state)
{
    (void)state;
    mmt_tag_t t = new_tag("inner", MMT_TAG_ROOT);
    shifter_t sh = {.root = {.tag = MMT_TAG_ROOT, .name = "root"}, .into = t};
    cache_fill(&sh.root, 1000, 30);
    void *held = try_in(t, 90000);
    assert_non_null(held);
    assert_int_equal(mmt_limit_set(t, 100000), 0);
    assert_int_equal(mmt_limit_set(MMT_TAG_ROOT, meminfo_now().in_use + 2000), 0);
    int id = mmt_reclaimer_add(MMT_TAG_ROOT, "shift", 0, shift_into_tag, &sh);
    /* 5,000 more in t: t has room (95,000), the process has not; its reclaimer frees
     * 20,000 and takes 9,000 in t, which then has no room for the 5,000. */
    assert_null(try_in(t, 5000));
    assert_non_null(sh.taken);
    assert_int_equal(tag_in_use(t), 99000);
    assert_int_equal(mmt_limit_set(MMT_TAG_ROOT, 0), 0);
    assert_int_equal(mmt_limit_set(t, 0), 0);
    assert_int_equal(mmt_reclaimer_remove(id), 0);
    mmt_free(sh.taken);
    mmt_free(held);
    cache_empty(&sh.root);
}

/* The allocator fails once; the reclaimer that runs then takes bytes in the limited tag the
 * request is for: the retry must be admitted again. */
static atomic_int failing;
static mmt_tag_t grab_tag;
static void *grabbed;
static size_t grab_in_tag(size_t wanted, void *arg)
{
    (void)wanted;
    (void)arg;
    atomic_store(&failing, 0);
    grabbed = try_in(grab_tag, 9990);
    return 0;
}

static void *maybe_malloc(size_t n);
static void *maybe_calloc(size_t c, size_t n);
static void *maybe_realloc(void *p, size_t n);

static void test_reclaim_the_retry_after_an_allocator_failure_is_admitted_again(void **state)
{
    (void)state;
    grab_tag = new_tag("retried", MMT_TAG_ROOT);
    void *held = try_in(grab_tag, 90000);
    assert_int_equal(mmt_limit_set(grab_tag, 100000), 0);
    int id = mmt_reclaimer_add(MMT_TAG_ROOT, "grab", 0, grab_in_tag, NULL);
    mmt__backend_t failing_table = {maybe_malloc, maybe_calloc, maybe_realloc, free, 1024};
    mmt__backend_t old = mmt__backend_set(&failing_table);
    atomic_store(&failing, 1);
    assert_null(try_in(grab_tag, 5000));
    assert_non_null(grabbed);
    assert_int_equal(tag_in_use(grab_tag), 99990);
    mmt_free(grabbed);
    /* The same through realloc. */
    atomic_store(&failing, 1);
    mmt_tag_t was = mmt_tag_switch(grab_tag);
    assert_null(mmt_try_realloc(held, 95000));
    mmt_tag_switch(was);
    assert_int_equal(tag_in_use(grab_tag), 99990);
    mmt__backend_set(&old);
    mmt_free(grabbed);
    mmt_free(held);
    assert_int_equal(mmt_limit_set(grab_tag, 0), 0);
    assert_int_equal(mmt_reclaimer_remove(id), 0);
}

static void test_reclaim_zero_bytes_and_shrinks_pass_a_limit_set_below_in_use(void **state)
{
    (void)state;
    mmt_tag_t t = new_tag("lowered", MMT_TAG_ROOT);
    mmt_tag_t was = mmt_tag_switch(t);
    char *p = mmt_malloc(10000);
    assert_int_equal(mmt_limit_set(t, 5000), 0);
    void *zero = mmt_try_malloc(0);
    assert_non_null(zero);
    assert_null(mmt_try_malloc(1));
    p = mmt_try_realloc(p, 8000); /* a shrink, still over the limit */
    assert_non_null(p);
    assert_null(mmt_try_realloc(p, 8001));
    mmt_free(zero);
    mmt_free(p);
    mmt_tag_switch(was);
    assert_int_equal(mmt_limit_set(t, 0), 0);
}

/* mmt_reclaim asked for more than a 64-bit signed number holds asks every reclaimer for
 * that much (no overflow: the UndefinedBehaviorSanitizer build runs this too). */
static void test_reclaim_an_enormous_request_asks_every_reclaimer(void **state)
{
    (void)state;
    mmt_tag_t t = new_tag("enormous", MMT_TAG_ROOT);
    cache_t a = {.tag = t, .name = "a"}, b = {.tag = t, .name = "b"};
    cache_fill(&a, 100, 3);
    cache_fill(&b, 100, 3);
    int ids[2] = {mmt_reclaimer_add(t, "a", 0, cache_reclaimer, &a),
                  mmt_reclaimer_add(t, "b", 0, cache_reclaimer, &b)};
    assert_int_equal(mmt_reclaim(t, SIZE_MAX), 600);
    assert_int_equal(a.asked[0], SIZE_MAX);
    assert_int_equal(b.asked[0], SIZE_MAX);
    for (int i = 0; i < 2; i++) assert_int_equal(mmt_reclaimer_remove(ids[i]), 0);
}

/* ---- Removal --------------------------------------------------------------------------- */

/* Two reclaimers, running at once on two threads, each remove the other: neither waits
 * for the other (that would be a deadlock). */
typedef struct pair_side {
    int *other_id;
    atomic_int *inside;
    int rc;
} pair_side_t;

static size_t removes_the_other(size_t wanted, void *arg)
{
    (void)wanted;
    pair_side_t *side = arg;
    atomic_fetch_add(side->inside, 1);
    while (atomic_load(side->inside) < 2) sleep_s(0.001);
    side->rc = mmt_reclaimer_remove(*side->other_id);
    return 0;
}

static void test_reclaim_two_reclaimers_removing_each_other_do_not_deadlock(void **state)
{
    (void)state;
    mmt_tag_t t1 = new_tag("pair-1", MMT_TAG_ROOT), t2 = new_tag("pair-2", MMT_TAG_ROOT);
    atomic_int inside = 0;
    int id1, id2;
    pair_side_t s1 = {&id2, &inside, 1}, s2 = {&id1, &inside, 1};
    id1 = mmt_reclaimer_add(t1, "one", 0, removes_the_other, &s1);
    id2 = mmt_reclaimer_add(t2, "two", 0, removes_the_other, &s2);
    pthread_t a, b;
    assert_int_equal(pthread_create(&a, NULL, reclaim_it, &t1), 0);
    assert_int_equal(pthread_create(&b, NULL, reclaim_it, &t2), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    assert_int_equal(s1.rc, 0);
    assert_int_equal(s2.rc, 0);
    assert_int_equal(mmt_reclaimer_remove(id1), MMT_ENOENT);
    assert_int_equal(mmt_reclaimer_remove(id2), MMT_ENOENT);
}


typedef struct blocking {
    atomic_int calls, inside, release;
} blocking_t;

static size_t blocking_reclaimer(size_t wanted, void *arg)
{
    (void)wanted;
    blocking_t *b = arg;
    atomic_fetch_add(&b->calls, 1);
    atomic_store(&b->inside, 1);
    while (!atomic_load(&b->release)) sleep_s(0.001);
    atomic_store(&b->inside, 0);
    return 0;
}

typedef struct remover {
    int id, rc;
    atomic_int done;
} remover_t;

static void *remove_it(void *arg)
{
    remover_t *r = arg;
    r->rc = mmt_reclaimer_remove(r->id);
    atomic_store(&r->done, 1);
    return NULL;
}

static void *reclaim_it(void *arg)
{
    mmt_reclaim(*(mmt_tag_t *)arg, 1000);
    return NULL;
}

static void test_reclaim_removal_waits_for_a_call_under_way_on_another_thread(void **state)
{
    (void)state;
    mmt_tag_t t = new_tag("removed", MMT_TAG_ROOT);
    blocking_t b = {0};
    remover_t r = {.id = mmt_reclaimer_add(t, "blocking", 0, blocking_reclaimer, &b)};
    pthread_t reclaimer, remover;
    assert_int_equal(pthread_create(&reclaimer, NULL, reclaim_it, &t), 0);
    while (!atomic_load(&b.inside)) sleep_s(0.001);
    assert_int_equal(pthread_create(&remover, NULL, remove_it, &r), 0);
    sleep_s(0.1);
    assert_int_equal(atomic_load(&r.done), 0); /* still running: the removal waits */
    atomic_store(&b.release, 1);
    pthread_join(remover, NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(atomic_load(&b.inside), 0); /* not running once removed */
    pthread_join(reclaimer, NULL);
    assert_int_equal(mmt_reclaim(t, 1000), 0);
    assert_int_equal(atomic_load(&b.calls), 1); /* and never again */
}

static int self_id;
static int self_calls, self_rc = 1;
static size_t removes_itself(size_t wanted, void *arg)
{
    (void)wanted;
    (void)arg;
    self_calls++;
    self_rc = mmt_reclaimer_remove(self_id); /* returns at once: no deadlock */
    return 0;
}

static void test_reclaim_a_reclaimer_removes_itself(void **state)
{
    (void)state;
    mmt_tag_t t = new_tag("self", MMT_TAG_ROOT);
    self_id = mmt_reclaimer_add(t, "self", 0, removes_itself, NULL);
    assert_true(self_id > 0);
    mmt_reclaim(t, 10);
    assert_int_equal(self_rc, 0);
    mmt_reclaim(t, 10);
    assert_int_equal(self_calls, 1);
    assert_int_equal(mmt_reclaimer_remove(self_id), MMT_ENOENT);
}

/* A fork while a reclaimer runs on another thread: in the child that thread is gone, and
 * removing its reclaimer, adding others and reclaiming must neither wait for it nor
 * deadlock (each child runs under alarm()). */
typedef struct fork_case {
    int id;
    mmt_tag_t tag;
} fork_case_t;

static void child_after_fork_in_a_reclaimer(void *arg)
{
    fork_case_t *c = arg;
    alarm(5);
    if (mmt_reclaimer_remove(c->id) != 0) _exit(2);
    int other = mmt_reclaimer_add(c->tag, "child", 0, frees_nothing, NULL);
    if (other <= 0) _exit(3);
    mmt_reclaim(c->tag, 100);
    if (mmt_reclaimer_remove(other) != 0) _exit(4);
    if (mmt_limit_set(c->tag, 1000) != 0 || mmt_limit_set(c->tag, 0) != 0) _exit(5);
}

static void test_reclaim_a_fork_while_a_reclaimer_runs_leaves_the_child_free(void **state)
{
    (void)state;
    SKIP_IF_SANITIZED(); /* test_fork.c says why */
    mmt_tag_t t = new_tag("forked", MMT_TAG_ROOT);
    blocking_t b = {0};
    fork_case_t c = {mmt_reclaimer_add(t, "blocking", 0, blocking_reclaimer, &b), t};
    pthread_t reclaimer;
    assert_int_equal(pthread_create(&reclaimer, NULL, reclaim_it, &t), 0);
    while (!atomic_load(&b.inside)) sleep_s(0.001);
    child_result_t r = run_in_child(child_after_fork_in_a_reclaimer, &c);
    atomic_store(&b.release, 1);
    pthread_join(reclaimer, NULL);
    assert_int_equal(r.signal, 0);
    assert_int_equal(r.exit_code, 0);
    assert_int_equal(mmt_reclaimer_remove(c.id), 0);
}

/* ---- The allocator's failures ---------------------------------------------------------- */

/* The allocator fails while `failing` is set. */
static void *maybe_malloc(size_t n)
{
    return atomic_load(&failing) ? NULL : malloc(n);
}
static void *maybe_calloc(size_t c, size_t n)
{
    return atomic_load(&failing) ? NULL : calloc(c, n);
}
static void *maybe_realloc(void *p, size_t n)
{
    return atomic_load(&failing) ? NULL : realloc(p, n);
}

static int handler_calls;
static void count_handler(size_t size, const mmt_meminfo_t *info, void *arg)
{
    (void)size;
    (void)info;
    (void)arg;
    handler_calls++;
}

static void test_reclaim_try_functions_return_null_when_the_allocator_fails(void **state)
{
    (void)state;
    char *keep = mmt_malloc(100);
    memset(keep, 'k', 100);
    mmt__backend_t failing_table = {maybe_malloc, maybe_calloc, maybe_realloc, free, 1024};
    mmt__backend_t old = mmt__backend_set(&failing_table);
    mmt_set_oom_handler(count_handler, NULL);
    mmt_meminfo_t before = meminfo_now();
    atomic_store(&failing, 1);
    assert_null(mmt_try_malloc(10));
    assert_null(mmt_try_calloc(10, 10));
    assert_null(mmt_try_calloc(1, 100000)); /* the calloc path, past small_calloc */
    assert_null(mmt_try_realloc(keep, 5000));
    atomic_store(&failing, 0);
    volatile size_t huge = SIZE_MAX / 2;
    assert_null(mmt_try_calloc(huge, 4)); /* overflows */
    assert_null(mmt_try_malloc(huge));    /* too large */
    assert_null(mmt_try_realloc(keep, huge));
    mmt_meminfo_t after = meminfo_now();
    assert_int_equal(handler_calls, 0);
    assert_int_equal(after.allocated, before.allocated);
    assert_int_equal(after.allocations, before.allocations);
    assert_int_equal(after.reallocs, before.reallocs);
    assert_int_equal(mmt_size(keep), 100);
    assert_int_equal(keep[99], 'k');
    /* The realloc that failed left the journal closed: the next one counts as usual. */
    keep = mmt_try_realloc(keep, 200);
    assert_non_null(keep);
    assert_int_equal(meminfo_now().in_use, before.in_use + 100);
    mmt_set_oom_handler(NULL, NULL);
    mmt__backend_set(&old);
    mmt_free(keep);
}

/* The system is out of memory until a reclaimer gives some back. */
static int gives_back_calls[2];
static size_t gives_back(size_t wanted, void *arg)
{
    (void)wanted;
    gives_back_calls[(intptr_t)arg]++;
    atomic_store(&failing, 0);
    return 0;
}

static void test_reclaim_an_allocator_failure_runs_every_reclaimer_then_retries(void **state)
{
    (void)state;
    mmt_tag_t t1 = new_tag("sys-a", MMT_TAG_ROOT), t2 = new_tag("sys-b", MMT_TAG_ROOT);
    int ids[2] = {mmt_reclaimer_add(t1, "a", 0, gives_back, (void *)0),
                  mmt_reclaimer_add(t2, "b", 1, gives_back, (void *)1)};
    mmt__backend_t failing_table = {maybe_malloc, maybe_calloc, maybe_realloc, free, 1024};
    mmt__backend_t old = mmt__backend_set(&failing_table);
    atomic_store(&failing, 1);
    void *p = mmt_malloc(1000); /* would abort without the retry */
    assert_non_null(p);
    assert_int_equal(gives_back_calls[0], 1);
    assert_int_equal(gives_back_calls[1], 1); /* every one, though the first was enough */
    atomic_store(&failing, 1);
    char *q = mmt_realloc(p, 3000);
    assert_non_null(q);
    assert_int_equal(gives_back_calls[0], 2);
    assert_int_equal(mmt_size(q), 3000);
    mmt__backend_set(&old);
    mmt_free(q);
    for (int i = 0; i < 2; i++) assert_int_equal(mmt_reclaimer_remove(ids[i]), 0);
}

/* ---- The abort lines ------------------------------------------------------------------- */

static void *volatile sink;

static void say_handler(size_t size, const mmt_meminfo_t *info, void *arg)
{
    (void)info;
    (void)arg;
    fprintf(stderr, "oom handler: %zu\n", size);
}

static void child_over_a_tag_limit(void *arg)
{
    (void)arg;
    mmt_tag_t cache = new_tag("cache", MMT_TAG_ROOT);
    mmt_limit_set(cache, 64 * 1024);
    mmt_set_oom_handler(say_handler, NULL);
    mmt_tag_switch(cache);
    for (int i = 0; i < 63; i++) sink = mmt_malloc(1024);
    sink = mmt_malloc(1000);
    fprintf(stderr, "handler calls before: %d\n", handler_calls);
    sink = mmt_malloc(4096);
}

static void child_over_the_process_limit(void *arg)
{
    (void)arg;
    mmt_limit_set(MMT_TAG_ROOT, meminfo_now().in_use + 3 * 1024 * 1024);
    sink = mmt_calloc(4, 1024 * 1024);
}

static void test_reclaim_a_refused_mmt_malloc_aborts_naming_the_tag_and_its_limit(void **state)
{
    (void)state;
    child_result_t r = run_in_child(child_over_a_tag_limit, NULL);
    print_message("%s", r.err);
    assert_int_equal(r.signal, SIGABRT);
    assert_non_null(strstr(r.err, "handler calls before: 0\noom handler: 4096\n"));
    assert_non_null(strstr(r.err, "mmt: mmt_malloc(4096) failed: tag \"cache\" would exceed its "
                                  "limit of 64 KiB (in use 63.98 KiB); in use 65512 bytes"));
    assert_non_null(strstr(r.err, "; aborting"));
    r = run_in_child(child_over_the_process_limit, NULL);
    print_message("%s", r.err);
    assert_int_equal(r.signal, SIGABRT);
    assert_non_null(strstr(r.err, "mmt: mmt_calloc(4194304) failed: the process would exceed its "
                                  "limit of "));
}

/* ---- Trim ------------------------------------------------------------------------------ */

static void test_reclaim_trim_gives_freed_pages_back_and_measures_it(void **state)
{
    (void)state;
    /* The sanitizers and valgrind bring allocators of their own, which malloc_trim does
     * not reach. */
    SKIP_IF_SANITIZED();
    if (under_valgrind()) skip();
    if (strcmp(mmt_backend(), "libc") != 0) {
        /* mimalloc and jemalloc keep their own pace; the call must still work. */
        size_t dropped = mmt_trim();
        print_message("mmt_trim over %s: %zu bytes\n", mmt_backend(), dropped);
        skip();
    }
    /* 48 MiB in blocks under glibc's mmap threshold, touched, then 15 of each 16 freed:
     * holes between live blocks, which free cannot give back (it trims only the heap's
     * top) and malloc_trim can. */
    enum { N = 768, EACH = 64 * 1024 };
    static void *blocks[N];
    for (int i = 0; i < N; i++) {
        blocks[i] = mmt_malloc(EACH);
        memset(blocks[i], 1, EACH);
    }
    for (int i = 0; i < N; i++)
        if (i % 16 != 15) mmt_free(blocks[i]);
    size_t dropped = mmt_trim();
    print_message("mmt_trim: %zu bytes back\n", dropped);
    assert_true(dropped >= (size_t)N * EACH / 2);
    for (int i = 15; i < N; i += 16) mmt_free(blocks[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reclaim_api_errors_name_their_cause),
        cmocka_unit_test(test_reclaim_one_thread_fills_a_limit_to_the_byte),
        cmocka_unit_test(test_reclaim_the_roots_limit_caps_the_process_and_realloc_growth),
        cmocka_unit_test(test_reclaim_a_limit_covers_its_subtree_and_runs_only_its_reclaimers),
        cmocka_unit_test(test_reclaim_four_threads_racing_at_a_limit_stay_within_the_bound),
        cmocka_unit_test(test_reclaim_no_allowance_outlives_a_request_filled_to_the_limit),
        cmocka_unit_test(test_reclaim_allowances_and_an_exact_request_keep_the_limit),
        cmocka_unit_test(test_reclaim_runs_in_rank_order_and_stops_at_enough),
        cmocka_unit_test(test_reclaim_a_reclaimers_word_is_measured_not_believed),
        cmocka_unit_test(test_reclaim_one_that_frees_nothing_backs_off_without_a_spiral),
        cmocka_unit_test(test_reclaim_one_that_allocates_more_than_it_frees_is_reported),
        cmocka_unit_test(test_reclaim_every_limit_is_checked_again_after_a_reclaim),
        cmocka_unit_test(test_reclaim_the_retry_after_an_allocator_failure_is_admitted_again),
        cmocka_unit_test(test_reclaim_zero_bytes_and_shrinks_pass_a_limit_set_below_in_use),
        cmocka_unit_test(test_reclaim_an_enormous_request_asks_every_reclaimer),
        cmocka_unit_test(test_reclaim_two_reclaimers_removing_each_other_do_not_deadlock),
        cmocka_unit_test(test_reclaim_removal_waits_for_a_call_under_way_on_another_thread),
        cmocka_unit_test(test_reclaim_a_reclaimer_removes_itself),
        cmocka_unit_test(test_reclaim_a_fork_while_a_reclaimer_runs_leaves_the_child_free),
        cmocka_unit_test(test_reclaim_try_functions_return_null_when_the_allocator_fails),
        cmocka_unit_test(test_reclaim_an_allocator_failure_runs_every_reclaimer_then_retries),
        cmocka_unit_test(test_reclaim_a_refused_mmt_malloc_aborts_naming_the_tag_and_its_limit),
        cmocka_unit_test(test_reclaim_trim_gives_freed_pages_back_and_measures_it),
    };
    return cmocka_run_group_tests_name("reclaim", tests, NULL, NULL);
}

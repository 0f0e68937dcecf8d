/*
 * Tags: the tree and its names, switching, exact counters per subtree against a model
 * (one thread and four that free each other's blocks), peak, the header's tag bits under
 * the check, fork, the limit on their number, and the report.
 */
#define _GNU_SOURCE /* fopencookie */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "backend.h" /* the library's seam: a backend that counts its calls */
#include "testutil.h"

/* Tags made here live as long as the process: each test makes its own under a root of its
 * own name, so that no test sees another's (new_tag: testutil.h). */
static mmt_meminfo_t tag_info(mmt_tag_t tag)
{
    mmt_meminfo_t m;
    int rc = mmt_tag_meminfo(tag, &m);
    if (rc != 0) fail_msg("mmt_tag_meminfo(%u): %d", tag, rc);
    return m;
}

/* ---- The tree ----------------------------------------------------------------------- */

static void test_tags_names_paths_and_parents(void **state)
{
    (void)state;
    mmt_tag_t cache = new_tag("cache", MMT_TAG_ROOT);
    mmt_tag_t pages = new_tag("pages", cache);
    mmt_tag_t index = new_tag("index", cache);
    assert_true(cache > 0 && pages != cache && index != pages);
    /* The same name under the same parent is the same tag; under another, another. */
    assert_int_equal(mmt_tag_new("pages", cache), pages);
    mmt_tag_t other = new_tag("pages", MMT_TAG_ROOT);
    assert_int_not_equal(other, pages);

    assert_int_equal(mmt_tag_lookup("cache/pages"), pages);
    assert_int_equal(mmt_tag_lookup("cache"), cache);
    assert_int_equal(mmt_tag_lookup("pages"), other);
    assert_int_equal(mmt_tag_lookup(""), MMT_TAG_ROOT);
    assert_int_equal(mmt_tag_lookup("cache/nothing"), MMT_ENOENT);
    assert_int_equal(mmt_tag_lookup("cache//pages"), MMT_ENOENT);
    assert_int_equal(mmt_tag_lookup("cache/pages/"), MMT_ENOENT);
    assert_int_equal(mmt_tag_lookup("/cache"), MMT_ENOENT);
    assert_int_equal(mmt_tag_lookup(NULL), MMT_EINVAL);

    assert_string_equal(mmt_tag_name(pages), "pages");
    assert_string_equal(mmt_tag_name(MMT_TAG_ROOT), "");
    assert_null(mmt_tag_name(4000));
    assert_int_equal(mmt_tag_parent(pages), cache);
    assert_int_equal(mmt_tag_parent(cache), MMT_TAG_ROOT);
    assert_int_equal(mmt_tag_parent(MMT_TAG_ROOT), MMT_TAG_ROOT);
    assert_int_equal(mmt_tag_parent(4000), MMT_ENOENT);

    char path[32];
    assert_int_equal(mmt_tag_path(pages, path, sizeof path), 11);
    assert_string_equal(path, "cache/pages");
    assert_int_equal(mmt_tag_path(MMT_TAG_ROOT, path, sizeof path), 0);
    assert_string_equal(path, "");
    assert_int_equal(mmt_tag_path(pages, path, 11), MMT_EINVAL); /* no room for the NUL */
    assert_int_equal(mmt_tag_path(4000, path, sizeof path), MMT_ENOENT);
}

static void test_tags_bad_names_are_refused_and_leave_nothing(void **state)
{
    (void)state;
    mmt_tag_t parent = new_tag("names", MMT_TAG_ROOT);
    char longest[64], too_long[65];
    memset(longest, 'a', 63);
    longest[63] = '\0';
    memset(too_long, 'b', 64);
    too_long[64] = '\0';
    assert_int_equal(mmt_tag_new(NULL, parent), MMT_EINVAL);
    assert_int_equal(mmt_tag_new("", parent), MMT_EINVAL);
    assert_int_equal(mmt_tag_new("a/b", parent), MMT_EINVAL);
    assert_int_equal(mmt_tag_new(too_long, parent), MMT_EINVAL);
    assert_int_equal(mmt_tag_new("fine", 4000), MMT_EINVAL); /* unknown parent */
    /* Nothing was made: the next tag takes the next id. */
    int a = mmt_tag_new(longest, parent);
    int b = mmt_tag_new("next", parent);
    assert_true(a > parent);
    assert_int_equal(b, a + 1);
    char path[128];
    snprintf(path, sizeof path, "names/%s", longest);
    assert_int_equal(mmt_tag_lookup(path), a);
    snprintf(path, sizeof path, "names/%s", too_long);
    assert_int_equal(mmt_tag_lookup(path), MMT_ENOENT);
}

/* ---- Switching ---------------------------------------------------------------------- */

static void *current_tag_of_a_new_thread(void *arg)
{
    *(mmt_tag_t *)arg = mmt_tag_current();
    return NULL;
}

static void test_tags_switches_nest_and_new_threads_start_at_the_root(void **state)
{
    (void)state;
    mmt_tag_t a = new_tag("switch-a", MMT_TAG_ROOT);
    mmt_tag_t b = new_tag("switch-b", a);
    assert_int_equal(mmt_tag_current(), MMT_TAG_ROOT);
    mmt_tag_t was = mmt_tag_switch(a);
    assert_int_equal(was, MMT_TAG_ROOT);
    mmt_tag_t was2 = mmt_tag_switch(b);
    assert_int_equal(was2, a);
    assert_int_equal(mmt_tag_current(), b);

    mmt_tag_t seen = 99;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, current_tag_of_a_new_thread, &seen), 0);
    pthread_join(t, NULL);
    assert_int_equal(seen, MMT_TAG_ROOT);

    void *p = mmt_malloc(10);
    assert_int_equal(mmt_tag_of(p), b);
    mmt_tag_switch(was2);
    void *q = mmt_malloc(10);
    assert_int_equal(mmt_tag_of(q), a);
    mmt_tag_switch(was);
    void *r = mmt_malloc(10);
    assert_int_equal(mmt_tag_of(r), MMT_TAG_ROOT);
    /* A realloc keeps the block's tag, whatever the current one. */
    p = mmt_realloc(p, 100000);
    assert_int_equal(mmt_tag_of(p), b);
    assert_int_equal(mmt_size(p), 100000);
    mmt_free(p);
    mmt_free(q);
    mmt_free(r);
}

/* ---- Exact counters, one thread ----------------------------------------------------- */

static void test_tags_counters_are_exact_in_one_thread(void **state)
{
    (void)state;
    mmt_tag_t app = new_tag("exact", MMT_TAG_ROOT);
    mmt_tag_t kid = new_tag("kid", app);
    mmt_tag_t grandkid = new_tag("grandkid", kid);
    mmt_meminfo_t root0 = meminfo_now();

    void *a = mmt_malloc_in(app, 1000);
    void *b = mmt_calloc_in(kid, 10, 30);
    mmt_tag_t was = mmt_tag_switch(grandkid);
    void *c = mmt_malloc(5000);
    char *d = mmt_strdup("tagged");
    void *e = mmt_aligned_alloc(256, 700);
    void *f = mmt_realloc(NULL, 60);
    mmt_tag_switch(was);
    b = mmt_realloc(b, 2000);  /* in kid, from the root */
    e = mmt_realloc(e, 100);   /* aligned, in grandkid: moves to a plain block */
    assert_int_equal(mmt_tag_of(e), grandkid);
    assert_int_equal((uintptr_t)e % 16, 0);

    mmt_meminfo_t g = tag_info(grandkid), k = tag_info(kid), p = tag_info(app);
    assert_int_equal(g.in_use, 5000 + 7 + 100 + 60);
    assert_int_equal(g.allocated, 5000 + 7 + 700 + 60 + 100);
    assert_int_equal(g.freed, 700);
    assert_int_equal(g.allocations, 4);
    assert_int_equal(g.frees, 0);
    assert_int_equal(g.reallocs, 1);
    assert_int_equal(k.in_use, g.in_use + 2000);
    assert_int_equal(k.allocations, g.allocations + 1);
    assert_int_equal(k.reallocs, g.reallocs + 1);
    assert_int_equal(p.in_use, k.in_use + 1000);
    assert_int_equal(p.allocated, k.allocated + 1000);
    /* The root is the process: mmt_meminfo's figures, which count the tagged blocks too. */
    mmt_meminfo_t r = tag_info(MMT_TAG_ROOT), now = meminfo_now();
    assert_int_equal(r.in_use, now.in_use);
    assert_int_equal(r.allocated, now.allocated);
    assert_int_equal(now.in_use - root0.in_use, p.in_use);

    mmt_free(a);
    mmt_free(b);
    mmt_free(c);
    mmt_free(d);
    mmt_free(e);
    mmt_free(f);
    p = tag_info(app);
    assert_int_equal(p.in_use, 0);
    assert_int_equal(p.allocations, p.frees);
    assert_int_equal(p.allocated, p.freed);
    assert_true(p.peak >= 1000 + 2000 + 5000 + 7 + 700 + 60);
    assert_int_equal(meminfo_now().in_use, root0.in_use);
    assert_int_equal(mmt_tag_meminfo(4000, &p), MMT_ENOENT);
    assert_int_equal(mmt_tag_meminfo(app, NULL), MMT_EINVAL);
}

/* A random walk of allocations and frees in `tags` (their subtree's root first); checks
 * in_use and peak of the first tag's subtree after each round. Peak must be exact with
 * one tag; with k, within the bound of one thread counting in k tags. */
static void random_walk(const mmt_tag_t *tags, int k)
{
    enum { N = 3000 };
    static void *blocks[N];
    uint64_t in_use = 0, high = 0, seed = 42;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < N; i++) {
            seed = seed * 6364136223846793005u + 1442695040888963407u;
            if (blocks[i]) {
                in_use -= mmt_size(blocks[i]);
                mmt_free(blocks[i]);
                blocks[i] = NULL;
            } else if (seed >> 63) {
                size_t n = 1 + (seed >> 40) % 300;
                blocks[i] = mmt_malloc_in(tags[i % k], n);
                in_use += n;
                if (in_use > high) high = in_use;
            }
        }
        mmt_meminfo_t m = tag_info(tags[0]);
        assert_int_equal(m.in_use, in_use);
        assert_true(m.peak >= m.in_use);
        if (k == 1) assert_int_equal(m.peak, high);
        else if (m.peak + 2 * 64 * 1024 < high || m.peak > high + 2 * 64 * 1024)
            fail_msg("peak %llu, true %llu", (unsigned long long)m.peak,
                     (unsigned long long)high);
    }
    for (int i = 0; i < N; i++) {
        mmt_free(blocks[i]);
        blocks[i] = NULL;
    }
}

static void test_tags_peak_is_exact_for_one_tag_in_one_thread(void **state)
{
    (void)state;
    mmt_tag_t t = new_tag("peak", MMT_TAG_ROOT);
    random_walk(&t, 1);
    mmt_tag_t two[2] = {new_tag("peak2", MMT_TAG_ROOT), 0};
    two[1] = new_tag("below", two[0]);
    random_walk(two, 2);
}

/* ---- Exact counters, four threads that free each other's blocks ----------------------- */

enum { WORKERS = 4, TAGS = 5, SLOTS = 512 };

/* Blocks handed between the workers: any of them frees or reallocates what another left. */
static _Atomic(void *) exchange[SLOTS];
static mmt_tag_t worker_tags[TAGS];

typedef struct model {
    int64_t allocated[TAGS], freed[TAGS], allocations[TAGS], frees[TAGS], reallocs[TAGS];
} model_t;

static int index_of(mmt_tag_t tag)
{
    for (int i = 0; i < TAGS; i++)
        if (worker_tags[i] == tag) return i;
    fail_msg("a block of tag %u, not one of the test's", tag);
    return -1;
}

static void *worker(void *arg)
{
    model_t *m = arg;
    uint64_t seed = (uint64_t)(uintptr_t)arg;
    for (int i = 0; i < 200000; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        if (i % 97 == 0) mmt_tag_switch(worker_tags[seed % TAGS]);
        size_t k = (seed >> 8) % SLOTS;
        void *p = atomic_exchange(&exchange[k], NULL);
        if (!p) {
            size_t n = (seed >> 24) % 2000;
            p = (seed >> 40) % 3 ? mmt_malloc(n) : mmt_calloc(1, n);
            int t = index_of(mmt_tag_of(p));
            m->allocated[t] += (int64_t)n;
            m->allocations[t]++;
        } else if ((seed >> 50) % 2) {
            int t = index_of(mmt_tag_of(p));
            size_t old = mmt_size(p), n = (seed >> 24) % 3000;
            p = mmt_realloc(p, n);
            m->allocated[t] += (int64_t)n;
            m->freed[t] += (int64_t)old;
            m->reallocs[t]++;
        } else {
            int t = index_of(mmt_tag_of(p));
            m->freed[t] += (int64_t)mmt_size(p);
            m->frees[t]++;
            mmt_free(p);
            p = NULL;
        }
        if (p) {
            void *was = atomic_exchange(&exchange[k], p);
            if (was) { /* another worker filled the slot meanwhile */
                int t = index_of(mmt_tag_of(was));
                m->freed[t] += (int64_t)mmt_size(was);
                m->frees[t]++;
                mmt_free(was);
            }
        }
    }
    mmt_tag_switch(MMT_TAG_ROOT);
    return NULL;
}

static void test_tags_four_threads_freeing_each_others_blocks_match_a_model(void **state)
{
    (void)state;
    mmt_tag_t top = new_tag("threads", MMT_TAG_ROOT);
    worker_tags[0] = top;
    worker_tags[1] = new_tag("a", top);
    worker_tags[2] = new_tag("b", top);
    worker_tags[3] = new_tag("c", worker_tags[1]);
    worker_tags[4] = new_tag("d", worker_tags[3]);
    mmt_meminfo_t before[TAGS];
    for (int i = 0; i < TAGS; i++) before[i] = tag_info(worker_tags[i]);

    static model_t models[WORKERS];
    memset(models, 0, sizeof models);
    pthread_t t[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker, &models[i]), 0);
    for (int i = 0; i < WORKERS; i++) pthread_join(t[i], NULL);

    /* The model's own figures per tag, then per subtree. */
    model_t own = {0}, sub;
    for (int w = 0; w < WORKERS; w++)
        for (int i = 0; i < TAGS; i++) {
            own.allocated[i] += models[w].allocated[i];
            own.freed[i] += models[w].freed[i];
            own.allocations[i] += models[w].allocations[i];
            own.frees[i] += models[w].frees[i];
            own.reallocs[i] += models[w].reallocs[i];
        }
    sub = own;
    for (int i = TAGS - 1; i > 0; i--) {
        int p = index_of((mmt_tag_t)mmt_tag_parent(worker_tags[i]));
        sub.allocated[p] += sub.allocated[i];
        sub.freed[p] += sub.freed[i];
        sub.allocations[p] += sub.allocations[i];
        sub.frees[p] += sub.frees[i];
        sub.reallocs[p] += sub.reallocs[i];
    }
    int64_t live = 0;
    for (int k = 0; k < SLOTS; k++) {
        void *p = atomic_load(&exchange[k]);
        if (p) live += (int64_t)mmt_size(p);
    }
    for (int i = 0; i < TAGS; i++) {
        mmt_meminfo_t m = tag_info(worker_tags[i]);
        assert_int_equal(m.allocated - before[i].allocated, sub.allocated[i]);
        assert_int_equal(m.freed - before[i].freed, sub.freed[i]);
        assert_int_equal(m.allocations - before[i].allocations, sub.allocations[i]);
        assert_int_equal(m.frees - before[i].frees, sub.frees[i]);
        assert_int_equal(m.reallocs - before[i].reallocs, sub.reallocs[i]);
        assert_int_equal(m.in_use, m.allocated - m.freed);
        assert_true(m.peak >= m.in_use);
    }
    assert_int_equal(tag_info(top).in_use - before[0].in_use, live);
    for (int k = 0; k < SLOTS; k++) mmt_free(atomic_exchange(&exchange[k], NULL));
    assert_int_equal(tag_info(top).in_use, before[0].in_use);
}

/* ---- The header --------------------------------------------------------------------- */

static void free_with_a_flipped_tag_bit(void *arg)
{
    int bit = *(int *)arg;
    mmt_tag_t t = (mmt_tag_t)mmt_tag_lookup("header");
    unsigned char *p = mmt_malloc_in(t, 64);
    unsigned char *header = (unsigned char *)((uintptr_t)p - MMT_HEADER_SIZE);
    header[bit / 8] ^= (unsigned char)(1u << bit % 8); /* the size word's top bytes */
    mmt_free(p);
}

static void test_tags_a_corrupted_tag_bit_is_caught(void **state)
{
    (void)state;
    new_tag("header", MMT_TAG_ROOT);
    for (int bit = 48; bit < 64; bit += 5) {
        child_result_t r = run_in_child(free_with_a_flipped_tag_bit, &bit);
        assert_int_equal(r.signal, SIGABRT);
        if (!strstr(r.err, "mmt_free(0x") || !strstr(r.err, "not a live mmt block"))
            fail_msg("bit %d: %s", bit, r.err);
    }
}

static void switch_to_an_unknown_tag(void *arg)
{
    (void)arg;
    mmt_tag_switch(4000);
}

static void malloc_in_an_unknown_tag(void *arg)
{
    (void)arg;
    void *p = mmt_malloc_in(4001, 10);
    mmt_free(p);
}

static void malloc_past_the_size_limit(void *arg)
{
    (void)arg;
    void *p = mmt_malloc((size_t)1 << 48);
    mmt_free(p);
}

static void test_tags_unknown_tags_and_sizes_past_48_bits_abort(void **state)
{
    (void)state;
    child_result_t r = run_in_child(switch_to_an_unknown_tag, NULL);
    assert_int_equal(r.signal, SIGABRT);
    assert_non_null(strstr(r.err, "mmt: mmt_tag_switch(4000): no such tag"));
    r = run_in_child(malloc_in_an_unknown_tag, NULL);
    assert_int_equal(r.signal, SIGABRT);
    assert_non_null(strstr(r.err, "mmt: mmt_malloc_in(4001): no such tag"));
    r = run_in_child(malloc_past_the_size_limit, NULL);
    assert_int_equal(r.signal, SIGABRT);
    assert_non_null(strstr(r.err, "mmt_malloc(281474976710656) failed: size too large"));
    assert_int_equal(MMT_MAX_SIZE, ((size_t)1 << 48) - 1);
}

/* ---- fork ----------------------------------------------------------------------------- */

static _Atomic bool resize_stop, resizing;
static mmt_tag_t resize_tag;

static void *resize_tagged(void *arg)
{
    (void)arg;
    void *p = mmt_malloc_in(resize_tag, 100);
    atomic_store(&resizing, true);
    for (unsigned long i = 0; !atomic_load_explicit(&resize_stop, memory_order_relaxed); i++)
        p = mmt_realloc(p, i % 2 ? 100 : 70000);
    mmt_free(p);
    return NULL;
}

static void test_tags_a_child_keeps_its_tags_counts_and_current_tag(void **state)
{
    (void)state;
    mmt_tag_t t = new_tag("fork", MMT_TAG_ROOT);
    resize_tag = new_tag("resized", t);
    void *held = mmt_malloc_in(t, 12345);
    mmt_tag_t was = mmt_tag_switch(t);
    atomic_store(&resize_stop, false);
    atomic_store(&resizing, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, resize_tagged, NULL), 0);
    while (!atomic_load(&resizing)) sched_yield();
    int bad = 0;
    const int forks = under_valgrind() ? 50 : 500;
    for (int i = 0; i < forks; i++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            /* The resizing thread is gone: its block is counted at one of its sizes. */
            mmt_meminfo_t m, r;
            bool ok = mmt_tag_meminfo(t, &m) == 0 && mmt_tag_meminfo(resize_tag, &r) == 0 &&
                      (r.in_use == 100 || r.in_use == 70000) && m.in_use == 12345 + r.in_use &&
                      mmt_tag_current() == t && mmt_tag_lookup("fork/resized") == resize_tag;
            /* The child's allocations count in its current tag. */
            void *p = mmt_malloc(10);
            ok = ok && mmt_tag_meminfo(t, &m) == 0 && m.in_use == 12345 + r.in_use + 10;
            mmt_free(p);
            end_child(ok ? 0 : 1);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) != 0) bad++;
    }
    atomic_store(&resize_stop, true);
    pthread_join(th, NULL);
    mmt_tag_switch(was);
    mmt_free(held);
    print_message("%d forks during tagged reallocs: %d children saw wrong figures\n", forks, bad);
    assert_int_equal(bad, 0);
}

/* ---- How many ----------------------------------------------------------------------- */

static void make_tags_to_the_limit(void *arg)
{
    (void)arg;
    int made = 0, last = 0;
    char name[32];
    /* The process already holds the other tests' tags: make them until there is no room. */
    for (int i = 0;; i++) {
        snprintf(name, sizeof name, "t%d", i);
        last = mmt_tag_new(name, MMT_TAG_ROOT);
        if (last < 0) break;
        made++;
        void *p = mmt_malloc_in((mmt_tag_t)last, 8); /* and count in it */
        mmt_free(p);
    }
    if (last != MMT_ENOSPC || mmt_tag_lookup("t0") <= 0 || made < 1000) {
        fprintf(stderr, "made %d, then %d\n", made, last);
        _exit(1);
    }
    /* An existing name is still found, and counting still works in the last tag. */
    snprintf(name, sizeof name, "t%d", made - 1);
    int id = mmt_tag_lookup(name);
    if (id != MMT_TAGS_MAX || mmt_tag_new(name, MMT_TAG_ROOT) != id) _exit(2);
    mmt_meminfo_t m;
    if (mmt_tag_meminfo((mmt_tag_t)id, &m) != 0 || m.allocations != 1 || m.in_use != 0) _exit(3);
    fprintf(stderr, "made %d\n", made);
}

static void test_tags_at_least_a_thousand_fit_then_no_room(void **state)
{
    (void)state;
    child_result_t r = run_in_child(make_tags_to_the_limit, NULL);
    if (r.signal || r.exit_code) fail_msg("exit %d, signal %d: %s", r.exit_code, r.signal, r.err);
    assert_non_null(strstr(r.err, "made "));
}

/* ---- The report --------------------------------------------------------------------- */

static void test_tags_report_writes_the_tree(void **state)
{
    (void)state;
    mmt_tag_t t = new_tag("report", MMT_TAG_ROOT);
    mmt_tag_t u = new_tag("inner", t);
    void *a = mmt_malloc_in(t, 100);
    void *b = mmt_malloc_in(u, 250);
    void *c = mmt_malloc_in(u, 50);
    char buf[65536];
    FILE *f = fmemopen(buf, sizeof buf, "w");
    assert_non_null(f);
    assert_int_equal(mmt_tag_report(f), 0);
    fclose(f);
    buf[sizeof buf - 1] = '\0';
    if (!strstr(buf, "\n  report: in use 400 B, peak 400 B, 3 blocks; own 100 B in 1 blocks\n"
                     "    inner: in use 300 B, peak 300 B, 2 blocks; own 300 B in 2 blocks\n") ||
        strncmp(buf, "(root): in use ", 15) != 0)
        fail_msg("%.3000s", strstr(buf, "report") ? strstr(buf, "report") : buf);
    assert_int_equal(mmt_tag_report(NULL), MMT_EINVAL);
    mmt_free(a);
    mmt_free(b);
    mmt_free(c);
}


/* ---- What the first review found ------------------------------------------------------ */

/* A stream whose writer looks tags up and makes one: the report holds no lock while it
 * writes (a listener run by an allocation in a writer could do the same). */
static ssize_t tag_writer(void *cookie, const char *buf, size_t size)
{
    (void)buf;
    *(int *)cookie += mmt_tag_lookup("report") > 0;
    *(int *)cookie += mmt_tag_new("made-while-writing", MMT_TAG_ROOT) > 0;
    return (ssize_t)size;
}

static void test_tags_report_holds_no_lock_while_its_stream_writes(void **state)
{
    (void)state;
    new_tag("report", MMT_TAG_ROOT);
    int calls = 0;
    cookie_io_functions_t io = {.write = tag_writer};
    FILE *f = fopencookie(&calls, "w", io);
    assert_non_null(f);
    setvbuf(f, NULL, _IONBF, 0); /* every write reaches the writer at once */
    assert_int_equal(mmt_tag_report(f), 0);
    fclose(f);
    assert_true(calls >= 2);
}

static void *report_to_dev_null(void *arg)
{
    FILE *f = fopen("/dev/null", "w");
    *(int *)arg = f ? mmt_tag_report(f) : -1;
    if (f) fclose(f);
    return NULL;
}

static void test_tags_report_walks_a_deep_chain_on_a_small_stack(void **state)
{
    (void)state;
    /* A chain 2,000 deep, reported from a thread with a 128 KiB stack: a walk that recursed
     * once a level would need far more. */
    enum { DEPTH = 2000 };
    mmt_tag_t t = new_tag("deep", MMT_TAG_ROOT);
    for (int i = 0; i < DEPTH; i++) t = new_tag("d", t);
    static char path[8192];
    assert_int_equal(mmt_tag_path(t, path, sizeof path), 4 + 2 * DEPTH);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    assert_int_equal(pthread_attr_setstacksize(&attr, 128 * 1024), 0);
    pthread_t th;
    int rc = -1;
    assert_int_equal(pthread_create(&th, &attr, report_to_dev_null, &rc), 0);
    pthread_join(th, NULL);
    pthread_attr_destroy(&attr);
    assert_int_equal(rc, 0);
}

static _Thread_local long backend_calls; /* this thread's, so that no other thread's count */
static void *counting_malloc(size_t n)
{
    backend_calls++;
    return malloc(n);
}
static void *counting_calloc(size_t c, size_t n)
{
    backend_calls++;
    return calloc(c, n);
}
static void *counting_realloc(void *p, size_t n)
{
    backend_calls++;
    return realloc(p, n);
}
static void counting_free(void *p)
{
    backend_calls++;
    free(p);
}

static long calls_before_fork;
static _Atomic bool counting_fork;
static void count_at_prepare(void)
{
    if (atomic_load(&counting_fork)) calls_before_fork = backend_calls;
}
static void check_in_child(void)
{
    /* The program's child handler runs after mmt's: mmt's prepare and child handlers
     * called the allocator this many times on this thread. */
    if (atomic_load(&counting_fork) && backend_calls != calls_before_fork) _exit(3);
}

static _Atomic int holder_state;
static void *hold_tagged_counts(void *arg)
{
    mmt_tag_t t = *(mmt_tag_t *)arg;
    void *p = mmt_malloc_in(t, 5000); /* this thread gets a table of tag counts */
    atomic_store(&holder_state, 1);
    while (atomic_load(&holder_state) == 1) sched_yield();
    mmt_free(p);
    return NULL;
}

static void test_tags_a_fork_child_handler_calls_no_allocator(void **state)
{
    (void)state;
    mmt_tag_t t = new_tag("fork-no-alloc", MMT_TAG_ROOT);
    static bool registered;
    if (!registered) {
        assert_int_equal(pthread_atfork(count_at_prepare, NULL, check_in_child), 0);
        registered = true;
    }
    pthread_t th;
    atomic_store(&holder_state, 0);
    assert_int_equal(pthread_create(&th, NULL, hold_tagged_counts, &t), 0);
    while (atomic_load(&holder_state) == 0) sched_yield();
    void *mine = mmt_malloc_in(t, 100);
    mmt__backend_t b = {counting_malloc, counting_calloc, counting_realloc, counting_free, 1024};
    mmt__backend_set(&b);
    atomic_store(&counting_fork, true);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The other thread, dead here, held a table: the child still counts right. */
        mmt_meminfo_t m;
        bool ok = mmt_tag_meminfo(t, &m) == 0 && m.in_use == 5100;
        end_child(ok ? 0 : 1);
    }
    atomic_store(&counting_fork, false);
    mmt__backend_set(NULL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    atomic_store(&holder_state, 2);
    pthread_join(th, NULL);
    mmt_free(mine);
}

/* Fills 16 sibling tags under `arg`, each just below the window it has when the thread
 * first counts in it, then frees them all; returns the bytes held at the high point. */
static void *fill_sixteen_tags(void *arg)
{
    mmt_tag_t parent = *(mmt_tag_t *)arg;
    enum { K = 16 };
    static void *blocks[K][64];
    static uint64_t total;
    total = 0;
    for (int i = 0; i < K; i++) {
        char name[8];
        snprintf(name, sizeof name, "w%d", i);
        mmt_tag_t t = new_tag(name, parent);
        size_t quota = (size_t)(64 * 1024 / (i + 1)) - 64;
        for (int b = 0; b < 64; b++) {
            blocks[i][b] = mmt_malloc_in(t, quota / 64);
            total += quota / 64;
        }
    }
    for (int i = 0; i < K; i++)
        for (int b = 0; b < 64; b++) mmt_free(blocks[i][b]);
    return &total;
}

static void test_tags_sixteen_tags_of_one_thread_hold_back_one_window_in_all(void **state)
{
    (void)state;
    /* A thread's windows narrow as it starts counting in more tags (a new thread: this
     * one counts in many already), so that the parent's peak stays within the bound of
     * one thread, 2 * 64 KiB; were each window kept until its tag's next fold, the 16
     * would hold back 64 KiB * (1 + 1/2 + ... + 1/16), about 221 KiB. */
    mmt_tag_t parent = new_tag("windows", MMT_TAG_ROOT);
    pthread_t th;
    void *result;
    assert_int_equal(pthread_create(&th, NULL, fill_sixteen_tags, &parent), 0);
    pthread_join(th, &result);
    uint64_t total = *(uint64_t *)result;
    mmt_meminfo_t m = tag_info(parent);
    assert_int_equal(m.in_use, 0);
    print_message("16 tags of one thread: peak %llu, true %llu\n", (unsigned long long)m.peak,
                  (unsigned long long)total);
    if (m.peak + 2 * 64 * 1024 < total || m.peak > total)
        fail_msg("peak %llu, true %llu", (unsigned long long)m.peak, (unsigned long long)total);
}

static void free_a_block_naming_an_unknown_tag(void *arg)
{
    (void)arg;
    unsigned char *p = mmt_malloc(64);
    uint64_t *h = (uint64_t *)(uintptr_t)((uintptr_t)p - MMT_HEADER_SIZE);
    uint64_t key = h[1] ^ (uint64_t)(uintptr_t)h ^ h[0]; /* what the check adds */
    h[0] = 64 | (uint64_t)4000 << 48;                    /* a valid check, a tag never made */
    h[1] = (uint64_t)(uintptr_t)h ^ h[0] ^ key;
    mmt_free(p);
}

static void test_tags_a_valid_header_naming_an_unknown_tag_aborts(void **state)
{
    (void)state;
    child_result_t r = run_in_child(free_a_block_naming_an_unknown_tag, NULL);
    assert_int_equal(r.signal, SIGABRT);
    if (!strstr(r.err, "mmt_free(0x") || !strstr(r.err, "names no tag of this process"))
        fail_msg("%s", r.err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tags_names_paths_and_parents),
        cmocka_unit_test(test_tags_bad_names_are_refused_and_leave_nothing),
        cmocka_unit_test(test_tags_switches_nest_and_new_threads_start_at_the_root),
        cmocka_unit_test(test_tags_counters_are_exact_in_one_thread),
        cmocka_unit_test(test_tags_peak_is_exact_for_one_tag_in_one_thread),
        cmocka_unit_test(test_tags_four_threads_freeing_each_others_blocks_match_a_model),
        cmocka_unit_test(test_tags_a_corrupted_tag_bit_is_caught),
        cmocka_unit_test(test_tags_unknown_tags_and_sizes_past_48_bits_abort),
        cmocka_unit_test(test_tags_a_child_keeps_its_tags_counts_and_current_tag),
        cmocka_unit_test(test_tags_at_least_a_thousand_fit_then_no_room),
        cmocka_unit_test(test_tags_report_writes_the_tree),
        cmocka_unit_test(test_tags_report_holds_no_lock_while_its_stream_writes),
        cmocka_unit_test(test_tags_report_walks_a_deep_chain_on_a_small_stack),
        cmocka_unit_test(test_tags_a_fork_child_handler_calls_no_allocator),
        cmocka_unit_test(test_tags_sixteen_tags_of_one_thread_hold_back_one_window_in_all),
        cmocka_unit_test(test_tags_a_valid_header_naming_an_unknown_tag_aborts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

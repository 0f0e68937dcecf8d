/*
 * The allocation API in one thread: alignment, contents across realloc, zeroing, sizes,
 * edge cases, and the exact counter movement of each call.
 */
#include <stdalign.h>
#include <stdbool.h>
#include <stdlib.h>

#include "testutil.h"

static bool aligned(const void *p)
{
    return (uintptr_t)p % alignof(max_align_t) == 0;
}

static void test_alloc_every_pointer_is_max_aligned(void **state)
{
    (void)state;
    void *blocks[3 * 300];
    size_t n = 0;
    for (size_t size = 0; size < 300; size++) {
        blocks[n] = mmt_malloc(size);
        assert_true(aligned(blocks[n++]));
        blocks[n] = mmt_calloc(size, 3);
        assert_true(aligned(blocks[n++]));
        blocks[n] = mmt_strdup("x");
        assert_true(aligned(blocks[n++]));
    }
    for (size_t i = 0; i < n; i++) {
        blocks[i] = mmt_realloc(blocks[i], i * 7 + 1);
        assert_true(aligned(blocks[i]));
    }
    for (size_t i = 0; i < n; i++) mmt_free(blocks[i]);
    void *big = mmt_malloc(1 << 22); /* past the mmap threshold */
    assert_true(aligned(big));
    mmt_free(big);
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 31);
}

static void assert_filled(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 31))
            fail_msg("byte %zu of %zu changed", i, n);
}

static void test_alloc_realloc_grow_keeps_contents(void **state)
{
    (void)state;
    size_t n = 16;
    unsigned char *p = mmt_malloc(n);
    fill(p, n, 7);
    while (n < (1u << 20)) {
        size_t m = n * 2 + 3;
        p = mmt_realloc(p, m);
        assert_int_equal(mmt_size(p), m);
        assert_filled(p, n, 7);
        fill(p, m, 7);
        n = m;
    }
    mmt_free(p);
}

static void test_alloc_realloc_shrink_keeps_contents(void **state)
{
    (void)state;
    size_t n = 1 << 20;
    unsigned char *p = mmt_malloc(n);
    fill(p, n, 3);
    while (n > 1) {
        n /= 3;
        p = mmt_realloc(p, n);
        assert_non_null(p);
        assert_int_equal(mmt_size(p), n);
        assert_filled(p, n, 3);
    }
    mmt_free(p);
}

static void test_alloc_realloc_null_is_malloc(void **state)
{
    (void)state;
    mmt_meminfo_t before = meminfo_now();
    void *p = mmt_realloc(NULL, 40);
    mmt_meminfo_t after = meminfo_now();
    assert_non_null(p);
    assert_int_equal(mmt_size(p), 40);
    assert_int_equal(after.allocations - before.allocations, 1);
    assert_int_equal(after.reallocs - before.reallocs, 0);
    assert_int_equal(after.allocated - before.allocated, 40);
    mmt_free(p);
}

static void test_alloc_realloc_to_zero_returns_a_zero_size_block(void **state)
{
    (void)state;
    mmt_meminfo_t before = meminfo_now();
    void *p = mmt_malloc(100);
    void *q = mmt_realloc(p, 0);
    assert_non_null(q);
    assert_true(aligned(q));
    assert_int_equal(mmt_size(q), 0);
    mmt_meminfo_t mid = meminfo_now();
    assert_int_equal(mid.in_use, before.in_use);
    assert_int_equal(mid.allocations - before.allocations, 1); /* the block still lives */
    mmt_free(q);
    mmt_meminfo_t after = meminfo_now();
    assert_int_equal(after.frees - before.frees, 1);
    assert_int_equal(after.in_use, before.in_use);
}

static void test_alloc_malloc_zero_gives_distinct_blocks(void **state)
{
    (void)state;
    void *a = mmt_malloc(0);
    void *b = mmt_malloc(0);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_int_equal(mmt_size(a), 0);
    mmt_free(a);
    mmt_free(b);
}

static void test_alloc_calloc_zeroes_reused_memory(void **state)
{
    (void)state;
    /* Small ones are made as malloc and memset (backend.h), larger ones by calloc. */
    static const size_t sizes[] = {1, 16, 64, 100, 1000, 1024, 1025, 4000};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        for (int round = 0; round < 50; round++) {
            unsigned char *dirty = mmt_malloc(n);
            memset(dirty, 0xab, n);
            mmt_free(dirty);
            unsigned char *p = mmt_calloc(1, n);
            for (size_t i = 0; i < n; i++) assert_int_equal(p[i], 0);
            assert_int_equal(mmt_size(p), n);
            mmt_free(p);
        }
    }
}

static void test_alloc_free_null_changes_nothing(void **state)
{
    (void)state;
    mmt_meminfo_t before = meminfo_now();
    mmt_free(NULL);
    mmt_meminfo_t after = meminfo_now();
    assert_memory_equal(&before, &after, sizeof before);
    assert_int_equal(mmt_size(NULL), 0);
}

static void test_alloc_strdup_copies(void **state)
{
    (void)state;
    char *s = mmt_strdup("flow table");
    assert_string_equal(s, "flow table");
    assert_int_equal(mmt_size(s), 11);
    mmt_free(s);
    assert_null(mmt_strdup(NULL));
}

static void test_alloc_counters_follow_each_call_exactly(void **state)
{
    (void)state;
    mmt_meminfo_t a = meminfo_now();
    void *p = mmt_malloc(1000);
    void *q = mmt_calloc(10, 30);
    p = mmt_realloc(p, 2500);
    mmt_meminfo_t b = meminfo_now();
    assert_int_equal(b.allocated - a.allocated, 1000 + 300 + 2500);
    assert_int_equal(b.freed - a.freed, 1000);
    assert_int_equal(b.in_use - a.in_use, 2500 + 300);
    assert_int_equal(b.allocations - a.allocations, 2);
    assert_int_equal(b.reallocs - a.reallocs, 1);
    assert_int_equal(b.frees - a.frees, 0);
    assert_int_equal(b.allocated - b.freed, b.in_use);
    assert_true(b.peak >= b.in_use);
    mmt_free(p);
    mmt_free(q);
    mmt_meminfo_t c = meminfo_now();
    assert_int_equal(c.in_use, a.in_use);
    assert_int_equal(c.frees - a.frees, 2);
    assert_int_equal(c.freed - a.freed, 1000 + 2500 + 300);
}

static void test_alloc_peak_is_exact_in_one_thread(void **state)
{
    (void)state;
    /* Climb above any earlier peak in steps smaller than the fold limit, so the top is
     * reached between folds, then come down: peak must be that top, to the byte. */
    mmt_meminfo_t a = meminfo_now();
    uint64_t target = a.peak - a.in_use + 123457;
    enum { STEP = 1000 };
    size_t count = (size_t)(target / STEP) + 1;
    void **blocks = malloc(count * sizeof *blocks);
    uint64_t total = 0;
    for (size_t i = 0; i < count; i++) {
        size_t sz = i + 1 == count ? (size_t)(target - total) : STEP;
        blocks[i] = mmt_malloc(sz);
        total += sz;
    }
    assert_int_equal(total, target);
    for (size_t i = 0; i < count; i++) mmt_free(blocks[i]);
    free(blocks);
    mmt_meminfo_t b = meminfo_now();
    assert_int_equal(b.peak, a.in_use + target);
    assert_int_equal(b.in_use, a.in_use);
}

static void test_alloc_peak_read_between_folds_after_a_dip_is_exact(void **state)
{
    (void)state;
    /* Up 30000 past any earlier peak and down 20000, all inside one fold window (64 KiB):
     * a reading after the dip must still report the top. */
    mmt_meminfo_t a = meminfo_now();
    size_t first = (size_t)(a.peak - a.in_use);
    void *base = mmt_malloc(first);       /* at the old peak; may fold */
    mmt_meminfo_t at_old_peak = meminfo_now();
    void *up = mmt_malloc(10000);
    void *more = mmt_malloc(20000);       /* top: old peak + 30000 */
    mmt_free(more);                       /* dip by 20000, no fold */
    mmt_meminfo_t b = meminfo_now();
    assert_int_equal(b.in_use, at_old_peak.in_use + 10000);
    assert_int_equal(b.peak, at_old_peak.in_use + 30000);
    mmt_free(up);
    mmt_free(base);
}

static void test_alloc_aligned_blocks_keep_alignment_contents_and_counts(void **state)
{
    (void)state;
    mmt_meminfo_t before = meminfo_now();
    uint64_t asked = 0;
    void *blocks[17 * 5]; /* 17 alignments, 5 sizes */
    int n = 0;
    for (size_t align = 1; align <= 65536; align *= 2) {
        for (size_t size = 0; size < 5000; size += 1237) {
            unsigned char *p = mmt_aligned_alloc(align, size);
            assert_int_equal((uintptr_t)p % align, 0);
            assert_true(aligned(p));
            assert_int_equal(mmt_size(p), size);
            fill(p, size, (unsigned)align);
            blocks[n++] = p;
            asked += size;
        }
    }
    mmt_meminfo_t mid = meminfo_now();
    assert_int_equal(mid.in_use - before.in_use, asked);
    assert_int_equal(mid.allocations - before.allocations, (uint64_t)n);
    /* realloc moves an aligned block to a plain one, keeping the contents. */
    unsigned char *q = blocks[n - 1];
    size_t q_size = mmt_size(q);
    q = mmt_realloc(q, q_size + 100);
    assert_true(aligned(q));
    assert_filled(q, q_size, 65536);
    blocks[n - 1] = q;
    for (int i = 0; i < n; i++) mmt_free(blocks[i]);
    mmt_meminfo_t after = meminfo_now();
    assert_int_equal(after.in_use, before.in_use);
    assert_int_equal(after.frees - before.frees, (uint64_t)n);
}

static void test_alloc_version_matches_macros(void **state)
{
    (void)state;
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", MMT_VERSION_MAJOR, MMT_VERSION_MINOR,
             MMT_VERSION_PATCH);
    assert_string_equal(mmt_version(), want);
    assert_string_equal(mmt_strerror(MMT_ENOENT), "no such listener or tag");
    assert_string_equal(mmt_strerror(12345), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_every_pointer_is_max_aligned),
        cmocka_unit_test(test_alloc_realloc_grow_keeps_contents),
        cmocka_unit_test(test_alloc_realloc_shrink_keeps_contents),
        cmocka_unit_test(test_alloc_realloc_null_is_malloc),
        cmocka_unit_test(test_alloc_realloc_to_zero_returns_a_zero_size_block),
        cmocka_unit_test(test_alloc_malloc_zero_gives_distinct_blocks),
        cmocka_unit_test(test_alloc_calloc_zeroes_reused_memory),
        cmocka_unit_test(test_alloc_free_null_changes_nothing),
        cmocka_unit_test(test_alloc_strdup_copies),
        cmocka_unit_test(test_alloc_counters_follow_each_call_exactly),
        cmocka_unit_test(test_alloc_peak_is_exact_in_one_thread),
        cmocka_unit_test(test_alloc_peak_read_between_folds_after_a_dip_is_exact),
        cmocka_unit_test(test_alloc_aligned_blocks_keep_alignment_contents_and_counts),
        cmocka_unit_test(test_alloc_version_matches_macros),
    };
    return cmocka_run_group_tests_name("alloc", tests, NULL, NULL);
}

/*
 * The designed crashes, each in a forked child: allocation failure (injected through the
 * backend seam, never by exhausting the machine), size overflow, the OOM handler, and
 * pointers that fail the header check.
 */
#include <stdalign.h>
#include <stdlib.h>

#include "backend.h"
#include "testutil.h"

/* ---- A backend that fails every allocation ------------------------------------------ */

static void *failing_malloc(size_t n)
{
    (void)n;
    return NULL;
}
static void *failing_calloc(size_t c, size_t n)
{
    (void)c;
    (void)n;
    return NULL;
}
static void *failing_realloc(void *p, size_t n)
{
    (void)p;
    (void)n;
    return NULL;
}

static void install_failing_backend(void)
{
    mmt__backend_t b = {failing_malloc, failing_calloc, failing_realloc, free, 1024};
    mmt__backend_set(&b);
}

static void *volatile sink;

/* Sizes the compiler cannot see, so it does not warn about the calls meant to fail. */
static volatile size_t huge_count = SIZE_MAX / 2;
static volatile size_t size_max = SIZE_MAX;

static void child_malloc_fails(void *arg)
{
    (void)arg;
    void *keep = mmt_malloc(5000); /* gives in_use and peak known values */
    sink = keep;
    install_failing_backend();
    sink = mmt_malloc(777);
}

static void test_crash_failed_malloc_aborts_with_size_and_counters(void **state)
{
    (void)state;
    mmt_meminfo_t m = meminfo_now();
    child_result_t r = run_in_child(child_malloc_fails, NULL);
    assert_int_equal(r.signal, SIGABRT);
    char want[200];
    snprintf(want, sizeof want,
             "mmt: mmt_malloc(777) failed: out of memory; in use %llu bytes, peak %llu bytes; "
             "aborting\n",
             (unsigned long long)(m.in_use + 5000),
             (unsigned long long)(m.peak > m.in_use + 5000 ? m.peak : m.in_use + 5000));
    assert_string_equal(r.err, want);
}

static void child_calloc_fails(void *arg)
{
    (void)arg;
    install_failing_backend();
    sink = mmt_calloc(3, 100);
}

static void child_realloc_fails(void *arg)
{
    (void)arg;
    void *p = mmt_malloc(10);
    install_failing_backend();
    sink = mmt_realloc(p, 4096);
}

static void child_calloc_overflows(void *arg)
{
    (void)arg;
    sink = mmt_calloc(huge_count, 3);
}

static void child_malloc_too_large(void *arg)
{
    (void)arg;
    sink = mmt_malloc(size_max - 8); /* size + header would wrap */
}

static void child_realloc_too_large(void *arg)
{
    (void)arg;
    void *p = mmt_malloc(10);
    sink = mmt_realloc(p, size_max);
}

static void child_bad_alignment(void *arg)
{
    (void)arg;
    sink = mmt_aligned_alloc(48, 10);
}

static void test_crash_every_failing_call_aborts_with_its_line(void **state)
{
    (void)state;
    struct {
        void (*fn)(void *);
        const char *line;
    } cases[] = {
        {child_calloc_fails, "mmt: mmt_calloc(300) failed: out of memory; in use "},
        {child_realloc_fails, "mmt: mmt_realloc(4096) failed: out of memory; in use "},
        {child_calloc_overflows, "failed: count * size overflows; in use "},
        {child_malloc_too_large, "mmt: mmt_malloc(18446744073709551607) failed: size too large"},
        {child_realloc_too_large, "mmt: mmt_realloc(18446744073709551615) failed: size too large"},
        {child_bad_alignment, "mmt: mmt_aligned_alloc(48, 10) failed: alignment 48 is not a power of two"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        child_result_t r = run_in_child(cases[i].fn, NULL);
        assert_int_equal(r.signal, SIGABRT);
        assert_contains(r.err, cases[i].line);
        assert_contains(r.err, "; aborting\n");
        assert_non_null(strchr(r.err, '\n'));
        assert_int_equal(strchr(r.err, '\n')[1], '\0'); /* exactly one line */
    }
}

/* The alignments and sizes below, hidden from the compiler. */
static volatile size_t one_tib = (size_t)1 << 40;
static volatile size_t align_2_63 = (size_t)1 << 63;

static void child_aligned_alloc_fails(void *arg)
{
    (void)arg;
    void *keep = mmt_malloc(3000); /* known in_use and peak */
    sink = keep;
    install_failing_backend();
    sink = mmt_aligned_alloc(one_tib, 10);
}

static void child_aligned_alignment_too_large(void *arg)
{
    (void)arg;
    sink = mmt_aligned_alloc(align_2_63, 10);
}

static void child_aligned_size_too_large(void *arg)
{
    (void)arg;
    sink = mmt_aligned_alloc(64, size_max / 2);
}

static void test_crash_failed_aligned_alloc_names_alignment_and_size(void **state)
{
    (void)state;
    mmt_meminfo_t m = meminfo_now();
    child_result_t r = run_in_child(child_aligned_alloc_fails, NULL);
    assert_int_equal(r.signal, SIGABRT);
    char want[200];
    snprintf(want, sizeof want,
             "mmt: mmt_aligned_alloc(1099511627776, 10) failed: out of memory; in use %llu bytes, "
             "peak %llu bytes; aborting\n",
             (unsigned long long)(m.in_use + 3000),
             (unsigned long long)(m.peak > m.in_use + 3000 ? m.peak : m.in_use + 3000));
    assert_string_equal(r.err, want);

    r = run_in_child(child_aligned_alignment_too_large, NULL);
    assert_int_equal(r.signal, SIGABRT);
    assert_contains(r.err, "mmt: mmt_aligned_alloc(9223372036854775808, 10) failed: size too large; "
                           "in use ");
    r = run_in_child(child_aligned_size_too_large, NULL);
    assert_int_equal(r.signal, SIGABRT);
    assert_contains(r.err, "mmt: mmt_aligned_alloc(64, 9223372036854775807) failed: size too large; "
                           "in use ");
}

/* ---- The OOM handler ----------------------------------------------------------------- */

static void handler_that_returns(size_t size, const mmt_meminfo_t *info, void *arg)
{
    char line[128];
    int n = snprintf(line, sizeof line, "handler %s: size %zu, in use %llu\n", (const char *)arg,
                     size, (unsigned long long)info->in_use);
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

static void child_handler_runs_first(void *arg)
{
    (void)arg;
    mmt_set_oom_handler(handler_that_returns, "given-arg");
    install_failing_backend();
    sink = mmt_malloc(4242);
}

static void test_crash_oom_handler_runs_before_the_line_and_cannot_cancel(void **state)
{
    (void)state;
    child_result_t r = run_in_child(child_handler_runs_first, NULL);
    assert_int_equal(r.signal, SIGABRT);
    const char *h = strstr(r.err, "handler given-arg: size 4242, in use ");
    const char *line = strstr(r.err, "mmt: mmt_malloc(4242) failed: out of memory");
    assert_non_null(h);
    assert_non_null(line);
    assert_true(h < line);
}

static void handler_that_allocates(size_t size, const mmt_meminfo_t *info, void *arg)
{
    (void)info;
    (void)arg;
    char line[64];
    int n = snprintf(line, sizeof line, "handler for %zu\n", size);
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
    sink = mmt_malloc(size + 1); /* fails too: must not call the handler again */
}

static void child_handler_allocates(void *arg)
{
    (void)arg;
    mmt_set_oom_handler(handler_that_allocates, NULL);
    install_failing_backend();
    sink = mmt_malloc(10);
}

static void test_crash_oom_handler_that_fails_again_is_not_reentered(void **state)
{
    (void)state;
    child_result_t r = run_in_child(child_handler_allocates, NULL);
    assert_int_equal(r.signal, SIGABRT);
    assert_string_equal(strstr(r.err, "handler for"), strstr(r.err, "handler for 10\n"));
    assert_null(strstr(r.err, "handler for 11"));
    assert_contains(r.err, "mmt: mmt_malloc(11) failed: out of memory");
}

/* ---- Bad pointers --------------------------------------------------------------------- */

static void child_double_free(void *arg)
{
    (void)arg;
    void *p = mmt_malloc(48);
    mmt_free(p);
    mmt_free(p);
}

/* A pointer with readable, well-aligned memory in front of it that mmt never wrote. */
static alignas(16) unsigned char foreign_area[256];

static void child_foreign_pointer(void *arg)
{
    (void)arg;
    memset(foreign_area, 0x5a, sizeof foreign_area);
    mmt_free(foreign_area + 64);
}

/* glibc keeps its own chunk header in front of every block, so the check can read there.
 * ThreadSanitizer's allocator may put a block right after an unreadable page: reading in
 * front of it faults before the check can report, so this case is left out there. */
#if defined(__SANITIZE_THREAD__)
#define LIBC_HEADER_READABLE 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LIBC_HEADER_READABLE 0
#endif
#endif
#ifndef LIBC_HEADER_READABLE
#define LIBC_HEADER_READABLE 1
#endif

#if LIBC_HEADER_READABLE
static void child_libc_pointer(void *arg)
{
    (void)arg;
    void *p = malloc(64);
    memset(p, 0, 64);
    mmt_free(p);
}
#endif

static void child_interior_pointer(void *arg)
{
    (void)arg;
    char *p = mmt_malloc(256);
    memset(p, 0, 256);
    mmt_free(p + 32);
}

static void child_misaligned_pointer(void *arg)
{
    (void)arg;
    char *p = mmt_malloc(256);
    mmt_free(p + 3);
}

static void child_overwritten_header(void *arg)
{
    (void)arg;
    unsigned char *p = mmt_malloc(64);
    unsigned char *header = (unsigned char *)((uintptr_t)p - MMT_HEADER_SIZE);
    header[0] ^= 1; /* the size field, as a buffer underflow would hit it */
    mmt_free(p);
}

static void child_bad_realloc(void *arg)
{
    (void)arg;
    memset(foreign_area, 0, sizeof foreign_area);
    sink = mmt_realloc(foreign_area + 32, 10);
}

static void child_bad_size(void *arg)
{
    (void)arg;
    memset(foreign_area, 0, sizeof foreign_area);
    sink = (void *)(uintptr_t)mmt_size(foreign_area + 32);
}

static void child_aligned_double_free(void *arg)
{
    (void)arg;
    void *p = mmt_aligned_alloc(256, 100);
    mmt_free(p);
    mmt_free(p);
}

static void test_crash_bad_pointers_abort_naming_the_pointer(void **state)
{
    (void)state;
    struct {
        void (*fn)(void *);
        const char *call;
        const char *why;
    } cases[] = {
        {child_double_free, "mmt_free(0x", "freed twice"},
        {child_foreign_pointer, "mmt_free(0x", "not a live mmt block"},
#if LIBC_HEADER_READABLE
        {child_libc_pointer, "mmt_free(0x", "not a live mmt block"},
#endif
        {child_interior_pointer, "mmt_free(0x", "not a live mmt block"},
        {child_misaligned_pointer, "mmt_free(0x", "misaligned"},
        {child_overwritten_header, "mmt_free(0x", "header was overwritten"},
        {child_bad_realloc, "mmt_realloc(0x", "not a live mmt block"},
        {child_bad_size, "mmt_size(0x", "not a live mmt block"},
        {child_aligned_double_free, "mmt_free(0x", "freed twice"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        child_result_t r = run_in_child(cases[i].fn, NULL);
        if (r.signal != SIGABRT)
            fail_msg("case %zu (%s ... %s): signal %d, exit %d, stderr: %s", i, cases[i].call,
                     cases[i].why, r.signal, r.exit_code, r.err);
        assert_contains(r.err, "mmt: ");
        assert_contains(r.err, cases[i].call);
        assert_contains(r.err, cases[i].why);
        assert_contains(r.err, "; aborting\n");
    }
}

static void child_named_pointer(void *arg)
{
    (void)arg;
    memset(foreign_area, 0, sizeof foreign_area);
    mmt_free(foreign_area + 48);
}

static void test_crash_report_names_the_exact_pointer(void **state)
{
    (void)state;
    /* A forked child has the parent's addresses, so the text is known here. */
    char want[64];
    snprintf(want, sizeof want, "mmt: mmt_free(%p): ", (void *)(foreign_area + 48));
    child_result_t r = run_in_child(child_named_pointer, NULL);
    assert_int_equal(r.signal, SIGABRT);
    assert_true(strncmp(r.err, want, strlen(want)) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_failed_malloc_aborts_with_size_and_counters),
        cmocka_unit_test(test_crash_every_failing_call_aborts_with_its_line),
        cmocka_unit_test(test_crash_failed_aligned_alloc_names_alignment_and_size),
        cmocka_unit_test(test_crash_oom_handler_runs_before_the_line_and_cannot_cancel),
        cmocka_unit_test(test_crash_oom_handler_that_fails_again_is_not_reentered),
        cmocka_unit_test(test_crash_bad_pointers_abort_naming_the_pointer),
        cmocka_unit_test(test_crash_report_names_the_exact_pointer),
    };
    return cmocka_run_group_tests_name("crash", tests, NULL, NULL);
}

/*
 * Shared by the benchmark's parts: clocks, percentiles, and the median with its
 * distribution-free 95% interval.
 */
#ifndef MMT_BENCH_H
#define MMT_BENCH_H

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Wall time in seconds, for latencies that include waiting (a reload, a checkpoint). */
static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of the calling thread in seconds: what a loop costs, without the time the
 * thread spent descheduled (the host is shared, and that time is someone else's work). */
static inline double bench_thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of v[0..n) by nearest rank. Sorts v in place: pass a copy if the order
 * of v still matters (rounds paired by index, say). */
static inline double bench_percentile(double *v, size_t n, double q)
{
    qsort(v, n, sizeof *v, bench_cmp_double);
    return v[(size_t)(q * (double)(n - 1) + 0.5)];
}

typedef struct bench_median {
    double median;
    double lo, hi; /* 95% confidence interval of the median */
} bench_median_t;

/* The median of v[0..n) (n >= 1) and a 95% interval for it from order statistics, which
 * assumes nothing about the distribution, only independent samples: the sorted samples
 * of ranks n/2 - 1.96 sqrt(n)/2 and 1 + n/2 + 1.96 sqrt(n)/2 (1-based, rounded, clamped
 * to 1..n). v is left as it was (it works on a copy). */
static inline bench_median_t bench_median_ci(const double *v, size_t n)
{
    double *s = malloc(n * sizeof *s);
    if (!s) abort();
    memcpy(s, v, n * sizeof *s);
    qsort(s, n, sizeof *s, bench_cmp_double);
    double half = 1.96 * sqrt((double)n) / 2;
    long lo = lround((double)n / 2 - half), hi = lround(1 + (double)n / 2 + half);
    if (lo < 1) lo = 1;
    if (hi > (long)n) hi = (long)n;
    bench_median_t m = {
        .median = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2,
        .lo = s[lo - 1],
        .hi = s[hi - 1],
    };
    free(s);
    return m;
}

/* The policy engine's figures (bench_policy.c); quick: few samples, for a smoke run. */
void bench_policy(int quick);

#endif

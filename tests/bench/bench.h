/*
 * Shared by the benchmark's parts: a monotonic clock and percentiles.
 */
#ifndef MMT_BENCH_H
#define MMT_BENCH_H

#include <stddef.h>
#include <stdlib.h>
#include <time.h>

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of v[0..n) (sorts v). */
static inline double bench_percentile(double *v, size_t n, double q)
{
    qsort(v, n, sizeof *v, bench_cmp_double);
    return v[(size_t)(q * (double)(n - 1) + 0.5)];
}

/* The policy engine's figures (bench_policy.c). */
void bench_policy(int quick);

#endif

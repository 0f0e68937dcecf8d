/*
 * The trend of one figure (in_use) over the last seconds: the least-squares line through
 * every sample (time, value) taken in a window, for m.eta and m.predict (module.c). The
 * model is Prometheus's predict_linear: a line fitted over the window, read at the
 * evaluation's time, not from the newest sample.
 *
 * Bounded without dropping samples: samples come at every evaluation, thousands a second
 * at busy checkpoints, so they are not kept one by one (the rate's ring, samples.h, thins
 * them, which would weigh a quiet stretch like a busy one). Time is cut into
 * MMT__TREND_BUCKETS buckets of window / MMT__TREND_BUCKETS seconds, in a ring inside its
 * owner (3 KiB), never allocated. A bucket holds its samples' count, mean time, mean
 * value and the sums of their squared time deviations and of their time-value cross
 * deviations, each sample added in O(1) (Welford's update); a fit merges the buckets in
 * the window with the pairwise formulas of Chan, Golub and LeVeque, O(MMT__TREND_BUCKETS).
 * The result is the exact least-squares line over every sample in the window, its edge
 * at a bucket's granularity. Deviations from means, not raw sums: with values near 2^40
 * and times of days of uptime, sums of t*t and t*y lose the slope to rounding and
 * cancellation (a minute of 5000 samples a second, 11 days into uptime: 6% off, where
 * this is exact to the last digits; tests/test_trend.c). A bucket's mean time is kept from
 * its own start, and a fit takes times from the time it is read at, so no figure
 * carries the clock's magnitude.
 *
 * The clock is the caller's: samples and fits take their time as an argument, and
 * nothing here reads a clock.
 *
 * Not thread-safe: the owner serialises (the engine holds its lock).
 */
#ifndef MMT_LUA_TREND_H
#define MMT_LUA_TREND_H

#include <stdbool.h>
#include <stdint.h>

enum { MMT__TREND_BUCKETS = 64 };

/* The samples whose time falls in [key * width, (key + 1) * width). */
typedef struct mmt__trend_bucket {
    int64_t key;
    uint64_t n;    /* how many; 0: the bucket is empty (its key means nothing) */
    double t, y;   /* their mean time, in seconds after key * width, and mean value */
    double tt, ty; /* sum of (t - mean t)^2, and of (t - mean t) (y - mean y) */
} mmt__trend_bucket_t;

typedef struct mmt__trend {
    mmt__trend_bucket_t buckets[MMT__TREND_BUCKETS]; /* by key modulo MMT__TREND_BUCKETS */
    double width;   /* seconds a bucket spans */
    int64_t newest; /* the newest key a sample had; meaningless while `any` is false */
    bool any;
} mmt__trend_t;

/* Empties the trend and sets its window (seconds, > 0). */
void mmt__trend_init(mmt__trend_t *tr, double window);

/* Adds a sample. One older than the newest bucket's window (a clock that went back) is
 * dropped, as is one with a time or value that is not finite. */
void mmt__trend_add(mmt__trend_t *tr, double time, double value);

/*
 * The least-squares line through the samples of the window that ends at `now`: those of
 * the bucket that holds `now` and of the MMT__TREND_BUCKETS - 1 before it, so from between
 * window * (1 - 1 / MMT__TREND_BUCKETS) and window seconds ago up to now (samples after
 * `now`, from a clock that went back, are left out). *level is the line's value at `now`,
 * *slope its change per second. Returns false, leaving both alone, with fewer than 2
 * samples in the window, or all of them at one time: no line then.
 */
bool mmt__trend_fit(const mmt__trend_t *tr, double now, double *level, double *slope);

/* Seconds until a line at `level` now, moving `slope` a second, reaches `limit`: INFINITY
 * when it is not rising (slope <= 0) or the limit is INFINITY, 0 when a rising line is at
 * or past the limit already. */
double mmt__trend_eta(double level, double slope, double limit);

/* The line's value `seconds` from now (negative: in the past). */
double mmt__trend_predict(double level, double slope, double seconds);

#endif

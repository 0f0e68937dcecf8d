/*
 * The ring of recent samples (samples.h): adding with thinning, reading in time order,
 * and the rate over a window.
 */
#include "samples.h"

void mmt__samples_init(mmt__samples_t *r, double horizon)
{
    r->first = r->count = 0;
    r->spacing = horizon / (MMT__SAMPLES - 2);
}

size_t mmt__samples_count(const mmt__samples_t *r)
{
    return r->count;
}

mmt__sample_t mmt__samples_at(const mmt__samples_t *r, size_t i)
{
    return r->ring[(r->first + i) % MMT__SAMPLES];
}

static mmt__sample_t *slot(mmt__samples_t *r, size_t i)
{
    return &r->ring[(r->first + i) % MMT__SAMPLES];
}

void mmt__samples_add(mmt__samples_t *r, double time, double value)
{
    mmt__sample_t s = {time, value};
    if (r->count > 0 && time < slot(r, r->count - 1)->time) return;
    /* The newest replaced while it is too near the one before: the kept samples stay
     * `spacing` apart, and the newest is always the latest. */
    if (r->count >= 2 && slot(r, r->count - 1)->time - slot(r, r->count - 2)->time < r->spacing) {
        *slot(r, r->count - 1) = s;
        return;
    }
    if (r->count == MMT__SAMPLES) {
        r->first = (r->first + 1) % MMT__SAMPLES;
        r->count--;
    }
    *slot(r, r->count++) = s;
}

bool mmt__samples_rate(const mmt__samples_t *r, double window, double *rate, double *span)
{
    if (r->count < 2 || !(window > 0)) return false;
    mmt__sample_t newest = mmt__samples_at(r, r->count - 1);
    double target = newest.time - window, latest = newest.time - window / 2;
    /* The first sample after `target` (binary search over the ring, which is in order). */
    size_t lo = 0, hi = r->count - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (mmt__samples_at(r, mid).time <= target) lo = mid + 1;
        else hi = mid;
    }
    /* The candidates: the last sample at or before target, and the first after it if it
     * is old enough; the nearer one wins. */
    bool have = false;
    mmt__sample_t best = {0, 0};
    if (lo > 0) {
        best = mmt__samples_at(r, lo - 1);
        have = true;
    }
    mmt__sample_t after = mmt__samples_at(r, lo);
    if (after.time <= latest && (!have || after.time - target < target - best.time)) {
        best = after;
        have = true;
    }
    double dt = newest.time - best.time;
    if (!have || !(dt > 0)) return false;
    *rate = (newest.value - best.value) / dt;
    *span = dt;
    return true;
}

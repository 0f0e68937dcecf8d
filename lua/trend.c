/*
 * The trend of in_use (trend.h): samples added to time buckets, merged into one
 * least-squares line when a policy asks for it.
 */
#include <math.h>

#include "trend.h"

/* Keys are kept well inside int64_t: key - MMT__TREND_BUCKETS never overflows. */
#define KEY_LIMIT 4e18

void mmt__trend_init(mmt__trend_t *tr, double window)
{
    for (int i = 0; i < MMT__TREND_BUCKETS; i++) tr->buckets[i] = (mmt__trend_bucket_t){0};
    tr->width = window / MMT__TREND_BUCKETS;
    tr->newest = 0;
    tr->any = false;
}

/* The key of the bucket that holds `time`; false if there is none (a time out of range). */
static bool key_of(const mmt__trend_t *tr, double time, int64_t *key)
{
    double k = floor(time / tr->width);
    if (!(k > -KEY_LIMIT && k < KEY_LIMIT)) return false;
    *key = (int64_t)k;
    return true;
}

/* The slot of the ring where the bucket of `key` lives. */
static int slot(int64_t key)
{
    int i = (int)(key % MMT__TREND_BUCKETS);
    return i < 0 ? i + MMT__TREND_BUCKETS : i;
}

void mmt__trend_add(mmt__trend_t *tr, double time, double value)
{
    int64_t key;
    if (!isfinite(value) || !key_of(tr, time, &key)) return;
    if (tr->any && key <= tr->newest - MMT__TREND_BUCKETS) return;
    /* The slot holds this key, or one at least a ring older (a newer one would be past
     * the newest), whose samples no window ending at the newest reaches: they go. */
    mmt__trend_bucket_t *b = &tr->buckets[slot(key)];
    if (b->n == 0 || b->key != key) *b = (mmt__trend_bucket_t){.key = key};
    if (!tr->any || key > tr->newest) tr->newest = key;
    tr->any = true;
    /* Welford: the deviations from the mean before and after this sample. */
    double t = time - (double)key * tr->width;
    double n = (double)++b->n;
    double dt = t - b->t, dy = value - b->y;
    b->t += dt / n;
    b->y += dy / n;
    b->tt += dt * (t - b->t);
    b->ty += dt * (value - b->y);
}

bool mmt__trend_fit(const mmt__trend_t *tr, double now, double *level, double *slope)
{
    int64_t last;
    if (!tr->any || !key_of(tr, now, &last)) return false;
    /* The buckets of the window, oldest first, merged into one (Chan et al.): times from
     * `now`, so the merged mean time is a few seconds at most whatever the clock says. */
    double n = 0, t = 0, y = 0, tt = 0, ty = 0;
    for (int64_t key = last - (MMT__TREND_BUCKETS - 1); key <= last; key++) {
        const mmt__trend_bucket_t *b = &tr->buckets[slot(key)];
        if (b->n == 0 || b->key != key) continue;
        double nb = (double)b->n, tb = ((double)key * tr->width - now) + b->t;
        double sum = n + nb, dt = tb - t, dy = b->y - y, w = n * nb / sum;
        t += dt * nb / sum;
        y += dy * nb / sum;
        tt += b->tt + dt * dt * w;
        ty += b->ty + dt * dy * w;
        n = sum;
    }
    if (n < 2 || !(tt > 0)) return false;
    *slope = ty / tt;
    *level = y - *slope * t; /* the line at time 0, which is `now` */
    return true;
}

double mmt__trend_eta(double level, double slope, double limit)
{
    if (!(slope > 0) || limit == INFINITY) return INFINITY;
    if (limit <= level) return 0;
    return (limit - level) / slope;
}

double mmt__trend_predict(double level, double slope, double seconds)
{
    /* A flat line stays where it is, however far ahead: 0 * INFINITY would be nan. */
    return slope == 0 ? level : level + slope * seconds;
}

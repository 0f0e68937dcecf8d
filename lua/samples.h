/*
 * Recent samples of one figure, (time, value) pairs in time order, for what the engine
 * derives from its history: the rate of in_use (engine.c), and anything else that wants
 * the recent past of the same samples (a trend fitted over the last seconds).
 *
 * Bounded: MMT__SAMPLES entries in a ring that lives inside its owner (4 KiB), never
 * allocated. Thinned so that they reach back at least `horizon` seconds however often
 * samples come: a sample that comes less than horizon / (MMT__SAMPLES - 2) after the one
 * before the newest replaces the newest instead of being added. So the newest sample is
 * always the last one added, and every other is at least that spacing after the one
 * before it; when samples come further apart than that, each is kept, and the ring
 * reaches back MMT__SAMPLES samples.
 *
 * Not thread-safe: the owner serialises (the engine holds its lock).
 */
#ifndef MMT_LUA_SAMPLES_H
#define MMT_LUA_SAMPLES_H

#include <stdbool.h>
#include <stddef.h>

enum { MMT__SAMPLES = 256 };

typedef struct mmt__sample {
    double time; /* monotonic seconds */
    double value;
} mmt__sample_t;

typedef struct mmt__samples {
    mmt__sample_t ring[MMT__SAMPLES];
    size_t first, count; /* the oldest entry's index, and how many there are */
    double spacing;      /* seconds between kept samples, but the newest */
} mmt__samples_t;

/* Empties the ring and sets how far back it must reach (seconds, > 0). */
void mmt__samples_init(mmt__samples_t *r, double horizon);

/* Adds a sample. One older than the newest is dropped: the ring stays in time order. */
void mmt__samples_add(mmt__samples_t *r, double time, double value);

/* How many samples the ring holds, and the i-th of them, 0 the oldest. */
size_t mmt__samples_count(const mmt__samples_t *r);
mmt__sample_t mmt__samples_at(const mmt__samples_t *r, size_t i);

/*
 * The value's change per second from an earlier sample to the newest, over a span of
 * about `window` seconds: the earlier sample is, of those at least window / 2 older than
 * the newest, the one nearest `window` before it. The span is longer than the window
 * only when no sample was taken near its start (then it reaches back to the last one
 * before). Returns false, leaving *rate and *span alone, while no sample is window / 2
 * older than the newest.
 */
bool mmt__samples_rate(const mmt__samples_t *r, double window, double *rate, double *span);

#endif

/*
 * libFuzzer harness: mmt-policy's inputs (tools/series.c). The first byte chooses: a
 * series in expanding notation (the rest, as text), or an mmt-run trace (the rest, as a
 * file). What parses is stepped through end to end, and every step must be sane: counters
 * derived from in_use keep allocated - freed == in_use and peak >= in_use, and times
 * never go back.
 */
#define _GNU_SOURCE /* memfd_create */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "series.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void step_all(const mmt__series_t *s)
{
    mmt__series_carry_t c = {0};
    double last = -INFINITY;
    bool derived = s->ncols == 1 && s->col[0].id == 2; /* in_use alone */
    for (size_t i = 0; i < s->nsteps; i++) {
        mmt__step_t step;
        if (!mmt__series_step(s, i, &c, &step)) continue;
        if (step.time < last) abort();
        last = step.time;
        if (derived && (step.info.allocated - step.info.freed != step.info.in_use ||
                        step.info.peak < step.info.in_use))
            abort();
    }
    mmt__series_carry_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 16) return 0;
    char err[700];
    if (data[0] & 1) {
        char *text = malloc(size);
        memcpy(text, data + 1, size - 1);
        text[size - 1] = '\0';
        double *v;
        size_t n;
        if (mmt__series_parse(text, &v, &n, err, sizeof err) == 0) {
            if (n > 100000) n = 100000; /* stepping a million samples is slow, not deep */
            mmt__series_t s = {.interval = 1};
            if (mmt__series_add(&s, "in_use", v, n, err, sizeof err) == 0) step_all(&s);
            else free(v); /* refused (Inf, 2^64 or more): v is still the caller's */
            mmt__series_free(&s);
        }
        free(text);
        return 0;
    }
    int fd = memfd_create("trace", MFD_CLOEXEC);
    if (fd < 0) abort();
    if (write(fd, data + 1, size - 1) != (ssize_t)(size - 1)) abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    mmt__series_t s;
    mmt__recorded_t *events;
    size_t nevents;
    if (mmt__series_from_trace(&s, path, &events, &nevents, err, sizeof err) == 0) {
        step_all(&s);
        mmt__series_free(&s);
        free(events);
    }
    close(fd);
    return 0;
}

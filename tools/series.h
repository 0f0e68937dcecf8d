/*
 * mmt-policy's inputs: the figures a virtual engine (lua/virtual.h) is stepped through,
 * as columns of samples, from a test's series (promtool's expanding notation) or from an
 * `mmt-run --trace` file.
 *
 * Columns are named as the snapshot's figures: the counters (in_use, allocated, freed,
 * peak, allocations, frees, reallocs), rss, and the machine's (cgroup_current, cgroup_max,
 * cgroup_high, cgroup_limit, psi_some10, psi_some60, psi_some300, psi_full10, psi_full60,
 * psi_full300, total, available). A sample is a number or missing (NAN).
 */
#ifndef MMT_TOOLS_SERIES_H
#define MMT_TOOLS_SERIES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lua/virtual.h"

enum { MMT__SERIES_COLUMNS = 32 };

typedef struct mmt__series {
    size_t nsteps;
    double *time;     /* each step's time; NULL: step i is at i * interval */
    double interval;
    struct mmt__column {
        int id;       /* which figure (series.c) */
        double *v;    /* nsteps samples, NAN where missing */
    } col[MMT__SERIES_COLUMNS];
    size_t ncols;
    /* The tags' columns: a counter of a tag's subtree. */
    struct mmt__tag_column {
        unsigned tag;
        int id;       /* a counter: in_use, allocated, freed, peak, allocations, frees, reallocs */
        double *v;
    } *tcol;
    size_t ntcols;
} mmt__series_t;

/* A rule event recorded in a trace. */
typedef struct mmt__recorded {
    double t;
    bool fired;
    char rule[256];
} mmt__recorded_t;

/* Parses `text` in expanding notation into *v (malloc'd, *n samples): `a`, `axn` (n + 1
 * times a), `a+bxn` and `a-bxn` (n + 1 samples from a by b), `_` (missing), `_xn` (n
 * missing); numbers may end in KiB, MiB or GiB, or be `Inf`. Returns 0, or -1 with the
 * reason in err. */
int mmt__series_parse(const char *text, double **v, size_t *n, char *err, size_t errlen);

/* Adds column `name` with its n samples (taking v); the series grows to the longest
 * column. Returns 0, or -1 (an unknown or repeated name, no room) with err. */
int mmt__series_add(mmt__series_t *s, const char *name, double *v, size_t n, char *err,
                    size_t errlen);

/* Reads an mmt-run trace: its sample rows are the steps (at their time_s), and its event
 * rows go into *events (malloc'd, *nevents). Returns 0, or -1 with err. */
int mmt__series_from_trace(mmt__series_t *s, const char *path, mmt__recorded_t **events,
                           size_t *nevents, char *err, size_t errlen);

/* Adds the column of counter `name` of tag `tag`'s subtree, as mmt__series_add. */
int mmt__series_add_tag(mmt__series_t *s, unsigned tag, const char *name, double *v, size_t n,
                        char *err, size_t errlen);

void mmt__series_free(mmt__series_t *s);

/* What carries from one step to the next: each column's last sample, and the counters
 * derived from in_use. Zero it before the first step. */
typedef struct mmt__counters_carry {
    uint64_t allocated, freed, in_use, peak;
    bool started;
} mmt__counters_carry_t;

typedef struct mmt__series_carry {
    double last[MMT__SERIES_COLUMNS];
    bool have[MMT__SERIES_COLUMNS];
    mmt__counters_carry_t counters;
    /* The tags': per tag column its last sample, per tag its counters; the readings the
     * steps point to. Freed by mmt__series_carry_free. */
    double *tlast;
    bool *thave;
    mmt__counters_carry_t *tcounters; /* by tag id */
    mmt__tag_reading_t *readings;     /* by tag id */
    unsigned nreadings;
    struct mmt__tag_figures {         /* by tag id: its columns' samples at this step */
        bool now[8];
        double v[8];
    } *tfigures;
    uint64_t *tstep, stamp;           /* by tag id: the step its figures are of */
} mmt__series_carry_t;

void mmt__series_carry_free(mmt__series_carry_t *c);

/* Step i as the virtual engine takes it. A missing sample repeats the column's last; a
 * counter not given follows from the others (allocated and freed from in_use's rises and
 * falls, peak from in_use) or is 0; a machine part is given once one of its columns has
 * a sample. A tag's figures are those of its columns (its own figures read as its
 * subtree's). False if every column is missing at step i: no tick then; or if no memory
 * was left (out->time is then NAN). */
bool mmt__series_step(const mmt__series_t *s, size_t i, mmt__series_carry_t *c,
                      mmt__step_t *out);

/* The names columns may have, NULL-terminated (for messages). */
extern const char *const mmt__series_names[];

#endif

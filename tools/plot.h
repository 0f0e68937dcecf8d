/*
 * mmt-run's picture: an SVG of in_use and rss over time from a trace (trace.h), with the
 * policy's fire and resolve events marked.
 */
#ifndef MMT_TOOLS_PLOT_H
#define MMT_TOOLS_PLOT_H

#include <stddef.h>

/* Draws the trace at `csv` into `svg`, titled with `program` (any bytes: cut to fit, with
 * what XML cannot hold replaced). Returns 0, or -1 with the reason in err. */
int mmt__plot(const char *csv, const char *svg, const char *program, char *err, size_t errlen);

#endif

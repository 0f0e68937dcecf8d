/*
 * mmt-run's picture: an SVG of in_use and rss over time from a trace (trace.h), with the
 * policy's fire and resolve events marked.
 */
#ifndef MMT_TOOLS_PLOT_H
#define MMT_TOOLS_PLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* A rule event on the picture. */
typedef struct mmt__plot_event {
    double t;
    int fired;      /* 1 fire, 0 resolve */
    char rule[256]; /* valid UTF-8, cut at a character boundary */
} mmt__plot_event_t;

/* Draws the trace at `csv` into `svg`, titled with `program` (any bytes: cut to fit, with
 * what XML cannot hold replaced). Returns 0, or -1 with the reason in err. */
int mmt__plot(const char *csv, const char *svg, const char *program, char *err, size_t errlen);

/* mmt__plot with `events` drawn instead of the trace's own (n of them; events NULL: the
 * trace's). */
int mmt__plot_with(const char *csv, const char *svg, const char *program,
                   const mmt__plot_event_t *events, size_t nevents, char *err, size_t errlen);

/* `path` opened without waiting on it: for reading, only a regular file; for writing,
 * made (mode 0666 less the umask) or truncated if it is a regular file, or anything else
 * that opens at once (a terminal, a FIFO someone reads); the file stdout or stderr writes
 * to is appended to instead. NULL with "cannot read|write PATH: why" in err. */
FILE *mmt__open_regular(const char *path, bool write, char *err, size_t errlen);

/* One CSV record: its fields, NUL-terminated one after the other in `text`. Zero it
 * before the first read; free(text) after the last. */
typedef struct mmt__csv_record {
    char *text;
    size_t len, cap;
    size_t start[16];
    size_t nfields; /* fields past the 16th are read and dropped */
} mmt__csv_record_t;

/* Reads the next record of `f` (RFC 4180: a field in double quotes may hold commas, line
 * breaks and doubled quotes; lines end with LF or CRLF). Returns 1, 0 at the end of the
 * file, or -1 for a malformed record or no memory. */
int mmt__csv_read(FILE *f, mmt__csv_record_t *r);

/* Field i of r, or NULL if it has fewer. */
const char *mmt__csv_field(const mmt__csv_record_t *r, size_t i);

#endif

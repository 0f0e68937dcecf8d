/*
 * Drawing a trace as SVG: two lines (bytes in use as mmt counts them, and the resident
 * set as the kernel does) on one byte axis, time on the other, and a vertical mark for
 * each rule event, labelled with the rule's name. Plain SVG 1.1 with no script or
 * external reference, so that browsers, image viewers and converters all show it, and
 * well-formed XML whatever the names hold (see put_text).
 *
 * The trace is read as RFC 4180 CSV (quoted fields may hold commas, quotes and line
 * breaks), its columns found by the header's names.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plot.h"
#include "utf8.h"

enum { WIDTH = 960, HEIGHT = 540, LEFT = 90, RIGHT = 30, TOP = 78, BOTTOM = 56 };

/* The longest title and label drawn, in bytes of UTF-8; a longer one is cut at a character
 * boundary and ends with an ellipsis. */
enum { TITLE_MAX = 80, LABEL_MAX = 80 };

typedef struct point {
    double t, in_use, rss;
} point_t;

typedef struct event {
    double t;
    int fired;
    char rule[256]; /* valid UTF-8, cut at a character boundary */
} event_t;

typedef struct trace {
    point_t *points;
    size_t npoints, points_cap;
    event_t *events;
    size_t nevents, events_cap;
    double peak; /* the counters' own peak: it sees between samples */
} trace_t;

static int grow(void **items, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) return 0;
    size_t want = *cap ? *cap * 2 : 256;
    void *p = realloc(*items, want * size);
    if (!p) return -1;
    *items = p;
    *cap = want;
    return 0;
}

/* One CSV record: its fields, NUL-terminated one after the other in `text`. */
typedef struct record {
    char *text;
    size_t len, cap;
    size_t start[16];
    size_t nfields; /* fields past the 16th are read and dropped */
} record_t;

static int put_char(record_t *r, int c)
{
    if (r->len == r->cap) {
        size_t want = r->cap ? r->cap * 2 : 256;
        char *p = realloc(r->text, want);
        if (!p) return -1;
        r->text = p;
        r->cap = want;
    }
    r->text[r->len++] = (char)c;
    return 0;
}

static const char *field(const record_t *r, size_t i)
{
    return i < r->nfields ? r->text + r->start[i] : NULL;
}

/* Reads the next record of `f` (RFC 4180: a field in double quotes may hold commas, line
 * breaks and doubled quotes; lines end with LF or CRLF). Returns 1, 0 at the end of the
 * file, or -1 for a malformed record or no memory. */
static int read_record(FILE *f, record_t *r)
{
    r->len = r->nfields = 0;
    int c = getc(f);
    if (c == EOF) return 0;
    for (;;) { /* one field per turn, c its first character */
        if (r->nfields < sizeof r->start / sizeof r->start[0]) r->start[r->nfields] = r->len;
        if (c == '"') {
            for (;;) {
                c = getc(f);
                if (c == EOF) return -1; /* no closing quote */
                if (c == '"' && (c = getc(f)) != '"') break;
                if (put_char(r, c)) return -1;
            }
        } else {
            for (; c != ',' && c != '\n' && c != EOF; c = getc(f))
                if (c != '\r' && put_char(r, c)) return -1;
        }
        if (c == '\r') c = getc(f);
        if (put_char(r, '\0')) return -1;
        if (r->nfields < sizeof r->start / sizeof r->start[0]) r->nfields++;
        if (c == '\n' || c == EOF) return 1;
        if (c != ',') return -1; /* text after a closing quote */
        c = getc(f);
    }
}

/* `text` as a number, the whole of it. */
static bool to_double(const char *text, double *out)
{
    char *end;
    if (!text || !*text) return false;
    errno = 0;
    *out = strtod(text, &end);
    return !*end && errno == 0;
}

static int read_trace(const char *path, trace_t *tr, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read the trace %s: %s", path, strerror(errno));
        return -1;
    }
    /* The columns used, by name; `rule` only on event rows. */
    enum { T, IN_USE, RSS, PEAK, EVENT, RULE, NCOLS };
    static const char *const names[NCOLS] = {"time_s", "in_use_bytes", "rss_bytes",
                                             "peak_bytes", "event", "rule"};
    size_t col[NCOLS];
    record_t r = {0};
    int rc = 0, records = 1, got = read_record(f, &r);
    for (int k = 0; k < NCOLS && got == 1; k++) {
        size_t i = 0;
        while (i < r.nfields && strcmp(field(&r, i), names[k]) != 0) i++;
        if (i == r.nfields) {
            snprintf(err, errlen, "%s: no column %s in the header", path, names[k]);
            rc = -1;
            goto done;
        }
        col[k] = i;
    }
    if (got != 1) {
        snprintf(err, errlen, "%s: the trace has no header", path);
        rc = -1;
        goto done;
    }
    bool no_memory = false;
    while ((got = read_record(f, &r)) == 1) {
        records++;
        double v[4];
        const char *event = field(&r, col[EVENT]);
        bool ok = event != NULL;
        for (int k = T; k <= PEAK; k++) ok = ok && to_double(field(&r, col[k]), &v[k]);
        if (!ok) break;
        if (v[PEAK] > tr->peak) tr->peak = v[PEAK];
        if (strcmp(event, "fire") == 0 || strcmp(event, "resolve") == 0) {
            if ((no_memory = grow((void **)&tr->events, &tr->events_cap, tr->nevents,
                                  sizeof(event_t)) != 0))
                break;
            event_t *e = &tr->events[tr->nevents++];
            e->t = v[T];
            e->fired = event[0] == 'f';
            const char *rule = field(&r, col[RULE]);
            bool cut;
            mmt__utf8_clean(rule ? rule : "", e->rule, sizeof e->rule - 1, 0, &cut);
        }
        /* Every row, events included, is a point of the curves. */
        if ((no_memory = grow((void **)&tr->points, &tr->points_cap, tr->npoints,
                              sizeof(point_t)) != 0))
            break;
        tr->points[tr->npoints++] = (point_t){v[T], v[IN_USE], v[RSS]};
    }
    if (no_memory) {
        snprintf(err, errlen, "%s: out of memory at record %d", path, records);
        rc = -1;
    } else if (got == 1) {
        snprintf(err, errlen, "%s: record %d: not a trace row", path, records);
        rc = -1;
    } else if (got < 0) {
        snprintf(err, errlen, "%s: record %d: not CSV (a quote left open, or text after one)",
                 path, records + 1);
        rc = -1;
    } else if (tr->npoints == 0) {
        snprintf(err, errlen, "%s: the trace has no rows", path);
        rc = -1;
    }
done:
    free(r.text);
    fclose(f);
    return rc;
}

/* A step of 1, 2 or 5 times a power of ten that cuts `span` into about `parts`. */
static double nice_step(double span, int parts)
{
    double raw = span / parts;
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};

/* The unit (a power of 1024) in which `max` bytes reads best. */
static int byte_unit(double max)
{
    int u = 0;
    while (u < 4 && max >= 1024.0 * 10) {
        max /= 1024;
        u++;
    }
    return u;
}

/* Writes `s` as XML 1.0 character data: invalid UTF-8 and the characters XML forbids as
 * U+FFFD, tabs and line breaks as spaces (see utf8.h), the markup characters as entities,
 * and cut at a character boundary to `max` bytes, with an ellipsis, if it is longer. */
static void put_text(FILE *out, const char *s, size_t max)
{
    char clean[256];
    bool cut;
    mmt__utf8_clean(s, clean, max < sizeof clean ? max : sizeof clean - 1, MMT_UTF8_XML, &cut);
    for (const char *c = clean; *c; c++) {
        switch (*c) {
        case '&': fputs("&amp;", out); break;
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '"': fputs("&quot;", out); break;
        case '\'': fputs("&apos;", out); break;
        default: fputc(*c, out);
        }
    }
    if (cut) fputs("\xE2\x80\xA6", out); /* U+2026 */
}

static void put_bytes(FILE *out, double bytes)
{
    int u = byte_unit(bytes);
    if (u == 0) fprintf(out, "%.0f B", bytes);
    else fprintf(out, "%.1f %s", bytes / pow(1024, u), units[u]);
}

static void draw(FILE *out, const trace_t *tr, const char *program)
{
    double tmax = 0, ymax = 0;
    for (size_t i = 0; i < tr->npoints; i++) {
        const point_t *p = &tr->points[i];
        if (p->t > tmax) tmax = p->t;
        if (p->in_use > ymax) ymax = p->in_use;
        if (p->rss > ymax) ymax = p->rss;
    }
    if (tr->peak > ymax) ymax = tr->peak;
    if (tmax <= 0) tmax = 1e-3;
    if (ymax <= 0) ymax = 1;

    int u = byte_unit(ymax);
    double scale = pow(1024, u);
    double ystep = nice_step(ymax / scale, 5) * scale;
    ymax = ceil(ymax / ystep) * ystep;
    double xstep = nice_step(tmax, 8);
    tmax = ceil(tmax / xstep) * xstep;

    const double pw = WIDTH - LEFT - RIGHT, ph = HEIGHT - TOP - BOTTOM;
#define X(t) (LEFT + (t) / tmax * pw)
#define Y(v) (TOP + ph - (v) / ymax * ph)

    fprintf(out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" "
            "font-size=\"12\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n",
            WIDTH, HEIGHT, WIDTH, HEIGHT);

    /* Title and a line of figures. */
    size_t fires = 0;
    for (size_t i = 0; i < tr->nevents; i++) fires += (size_t)tr->events[i].fired;
    fputs("<text x=\"90\" y=\"28\" font-size=\"17\" font-weight=\"bold\">Memory of ", out);
    put_text(out, program, TITLE_MAX);
    fputs("</text>\n<text x=\"90\" y=\"50\" fill=\"#444444\">peak in use ", out);
    put_bytes(out, tr->peak);
    fputs(", in use at the end ", out);
    put_bytes(out, tr->points[tr->npoints - 1].in_use);
    fprintf(out, ", %zu rule events (%zu fire, %zu resolve), %.3f s</text>\n", tr->nevents, fires,
            tr->nevents - fires, tr->points[tr->npoints - 1].t);

    /* Grid and axes. */
    fputs("<g stroke=\"#e3e3e3\" stroke-width=\"1\">\n", out);
    for (double v = 0; v <= ymax + ystep / 2; v += ystep)
        fprintf(out, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>\n", LEFT, Y(v),
                WIDTH - RIGHT, Y(v));
    for (double t = 0; t <= tmax + xstep / 2; t += xstep)
        fprintf(out, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>\n", X(t), TOP, X(t),
                HEIGHT - BOTTOM);
    fputs("</g>\n<g fill=\"#333333\">\n", out);
    for (double v = 0; v <= ymax + ystep / 2; v += ystep)
        fprintf(out, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g %s</text>\n", LEFT - 8,
                Y(v) + 4, v / scale, units[u]);
    for (double t = 0; t <= tmax + xstep / 2; t += xstep)
        fprintf(out, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n", X(t),
                HEIGHT - BOTTOM + 18, t);
    fprintf(out, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">time (s)</text>\n</g>\n",
            LEFT + pw / 2, HEIGHT - 14);
    fprintf(out, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
            "stroke=\"#888888\"/>\n", LEFT, TOP, pw, ph);

    /* Events under the curves: a dashed line each, the rule's name near the top. A label
     * too close to the previous one in its lane goes to the next lane, lower down. */
    enum { LANES = 3, LANE_HEIGHT = 140, LABEL_WIDTH = 14 };
    double lane_x[LANES];
    for (int l = 0; l < LANES; l++) lane_x[l] = -1e9;
    for (size_t i = 0; i < tr->nevents; i++) {
        const event_t *e = &tr->events[i];
        const char *colour = e->fired ? "#d62728" : "#2ca02c";
        double x = X(e->t);
        fprintf(out, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\" "
                "stroke-width=\"2\" stroke-dasharray=\"6,3\"/>\n", x, TOP, x,
                HEIGHT - BOTTOM, colour);
        int lane = 0;
        while (lane < LANES - 1 && x - lane_x[lane] < LABEL_WIDTH) lane++;
        lane_x[lane] = x;
        int y = TOP + 6 + lane * LANE_HEIGHT;
        fprintf(out, "<text x=\"%.1f\" y=\"%d\" fill=\"%s\" font-size=\"11\" "
                "transform=\"rotate(-90 %.1f %d)\" text-anchor=\"end\">%s ", x + 12, y,
                colour, x + 12, y, e->fired ? "fire" : "resolve");
        put_text(out, e->rule, LABEL_MAX);
        fputs("</text>\n", out);
    }

    /* The curves. */
    static const struct {
        const char *colour;
        int which;
    } curves[] = {{"#ff7f0e", 1}, {"#1f77b4", 0}};
    for (size_t c = 0; c < 2; c++) {
        fprintf(out, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
                "stroke-linejoin=\"round\" points=\"", curves[c].colour);
        for (size_t i = 0; i < tr->npoints; i++) {
            const point_t *p = &tr->points[i];
            fprintf(out, "%s%.1f,%.1f", i ? " " : "", X(p->t),
                    Y(curves[c].which ? p->rss : p->in_use));
        }
        fputs("\"/>\n", out);
    }

    /* Legend, top right. */
    int lx = WIDTH - RIGHT - 300;
    fprintf(out,
            "<g font-size=\"12\">\n"
            "<line x1=\"%d\" y1=\"64\" x2=\"%d\" y2=\"64\" stroke=\"#1f77b4\" stroke-width=\"2\"/>"
            "<text x=\"%d\" y=\"68\">in use</text>\n"
            "<line x1=\"%d\" y1=\"64\" x2=\"%d\" y2=\"64\" stroke=\"#ff7f0e\" stroke-width=\"2\"/>"
            "<text x=\"%d\" y=\"68\">rss</text>\n"
            "<line x1=\"%d\" y1=\"64\" x2=\"%d\" y2=\"64\" stroke=\"#d62728\" "
            "stroke-dasharray=\"6,3\" stroke-width=\"2\"/><text x=\"%d\" y=\"68\">fire</text>\n"
            "<line x1=\"%d\" y1=\"64\" x2=\"%d\" y2=\"64\" stroke=\"#2ca02c\" "
            "stroke-dasharray=\"6,3\" stroke-width=\"2\"/><text x=\"%d\" y=\"68\">resolve</text>\n"
            "</g>\n</svg>\n",
            lx, lx + 22, lx + 27, lx + 80, lx + 102, lx + 107, lx + 140, lx + 162, lx + 167,
            lx + 205, lx + 227, lx + 232);
#undef X
#undef Y
}

int mmt__plot(const char *csv, const char *svg, const char *program, char *err, size_t errlen)
{
    trace_t tr = {0};
    int rc = read_trace(csv, &tr, err, errlen);
    if (rc == 0) {
        FILE *out = fopen(svg, "w");
        if (!out) {
            snprintf(err, errlen, "cannot write %s: %s", svg, strerror(errno));
            rc = -1;
        } else {
            draw(out, &tr, program);
            if (fclose(out) != 0) {
                snprintf(err, errlen, "cannot write %s: %s", svg, strerror(errno));
                rc = -1;
            }
        }
    }
    free(tr.points);
    free(tr.events);
    return rc;
}

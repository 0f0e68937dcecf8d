/*
 * Drawing a trace as SVG: two lines (bytes in use as mmt counts them, and the resident
 * set as the kernel does) on one byte axis, time on the other, and a vertical mark for
 * each rule event, labelled with the rule's name. Plain SVG 1.1 with no script or
 * external reference, so that browsers, image viewers and converters all show it, and
 * well-formed XML whatever the names hold (see put_text).
 *
 * Where the trace has the machine's columns (trace.h), a third line is the bytes charged
 * to the memory cgroup, and a horizontal line its limit, labelled. Those two are the
 * cgroup's, which may hold far more than the program (a user's desktop, a whole
 * container) or allow far more (a limit of 512 GiB): the cgroup's line is drawn only if
 * it stays within CGROUP_FACTOR times the program's own figures, and the limit only if it
 * is within that factor of all that is drawn, so that the program's lines keep at least a
 * quarter of the height (a sixteenth with both); otherwise the legend says it in words.
 *
 * The trace is read as RFC 4180 CSV (quoted fields may hold commas, quotes and line
 * breaks), its columns found by the header's names; the machine's columns may be missing
 * (a trace from before them) or empty (a machine without the figure).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plot.h"
#include "utf8.h"

enum { WIDTH = 960, HEIGHT = 540, LEFT = 90, RIGHT = 30, TOP = 78, BOTTOM = 56 };

/* The longest title and label drawn, in bytes of UTF-8; a longer one is cut at a character
 * boundary and ends with an ellipsis. */
enum { TITLE_MAX = 80, LABEL_MAX = 80 };

/* How far above the program's own figures the cgroup's may reach and still be drawn. */
#define CGROUP_FACTOR 4.0

typedef struct point {
    double t, in_use, rss;
    double cgroup; /* bytes charged to the memory cgroup; NAN where the row has none */
} point_t;

typedef mmt__plot_event_t event_t;

typedef struct trace {
    point_t *points;
    size_t npoints, points_cap;
    event_t *events;
    size_t nevents, events_cap;
    double peak; /* the counters' own peak: it sees between samples */
    bool cgroup; /* some row has the cgroup's bytes */
    double limit; /* the lowest cgroup limit of the rows, 0 if none has one */
    bool limit_changed; /* the rows do not all have that limit */
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

typedef mmt__csv_record_t record_t;

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

const char *mmt__csv_field(const record_t *r, size_t i)
{
    return i < r->nfields ? r->text + r->start[i] : NULL;
}

int mmt__csv_read(FILE *f, record_t *r)
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

FILE *mmt__open_regular(const char *path, bool write, char *err, size_t errlen)
{
    /* Opened without blocking: a FIFO with no one at its other end fails at once (a
     * writer's open) or is seen for what it is (a reader's), instead of waiting. */
    int flags = O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (write ? O_WRONLY | O_CREAT : O_RDONLY);
    int fd = open(path, flags, 0666); /* less the umask, as fopen's */
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "cannot %s %s: %s", write ? "write" : "read", path,
                 strerror(errno));
        if (fd >= 0) close(fd);
        return NULL;
    }
    if (!write && !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "cannot read %s: not a regular file", path);
        close(fd);
        return NULL;
    }
    /* The file this process's stdout or stderr writes to (--svg /dev/stdout with stdout
     * sent to a file) is appended to, not emptied under them. */
    bool ours = false;
    for (int std = STDOUT_FILENO; write && std <= STDERR_FILENO; std++) {
        struct stat o;
        ours = ours || (fstat(std, &o) == 0 && o.st_dev == st.st_dev && o.st_ino == st.st_ino);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (S_ISREG(st.st_mode) && write && !ours && ftruncate(fd, 0) != 0) ||
        fcntl(fd, F_SETFL, (fl & ~O_NONBLOCK) | (ours ? O_APPEND : 0)) != 0) {
        snprintf(err, errlen, "cannot %s %s: %s", write ? "write" : "read", path,
                 strerror(errno));
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, write ? "w" : "r");
    if (!f) {
        snprintf(err, errlen, "cannot %s %s: %s", write ? "write" : "read", path,
                 strerror(errno));
        close(fd);
    }
    return f;
}

static int read_trace(const char *path, trace_t *tr, char *err, size_t errlen)
{
    char why[600];
    FILE *f = mmt__open_regular(path, false, why, sizeof why);
    if (!f) {
        snprintf(err, errlen, "the trace: %s", why);
        return -1;
    }
    /* The columns used, by name; `rule` only on event rows. Those from NEEDED on may be
     * missing (col SIZE_MAX) and their fields empty. */
    enum { T, IN_USE, RSS, PEAK, EVENT, RULE, CGROUP, LIMIT, NCOLS, NEEDED = CGROUP };
    static const char *const names[NCOLS] = {"time_s", "in_use_bytes", "rss_bytes",
                                             "peak_bytes", "event", "rule",
                                             "cgroup_current_bytes", "cgroup_limit_bytes"};
    size_t col[NCOLS];
    record_t r = {0};
    int rc = 0, records = 1, got = mmt__csv_read(f, &r);
    for (int k = 0; k < NCOLS && got == 1; k++) {
        size_t i = 0;
        while (i < r.nfields && strcmp(mmt__csv_field(&r, i), names[k]) != 0) i++;
        if (i == r.nfields && k < NEEDED) {
            snprintf(err, errlen, "%s: no column %s in the header", path, names[k]);
            rc = -1;
            goto done;
        }
        col[k] = i < r.nfields ? i : SIZE_MAX;
    }
    if (got != 1) {
        snprintf(err, errlen, "%s: the trace has no header", path);
        rc = -1;
        goto done;
    }
    bool no_memory = false;
    while ((got = mmt__csv_read(f, &r)) == 1) {
        records++;
        double v[NCOLS];
        const char *event = mmt__csv_field(&r, col[EVENT]);
        bool ok = event != NULL;
        for (int k = T; k <= PEAK; k++) ok = ok && to_double(mmt__csv_field(&r, col[k]), &v[k]);
        for (int k = CGROUP; k <= LIMIT; k++) {
            const char *text = col[k] == SIZE_MAX ? "" : mmt__csv_field(&r, col[k]);
            v[k] = NAN;
            ok = ok && text && (!*text || (to_double(text, &v[k]) && v[k] >= 0));
        }
        if (!ok) break;
        if (v[PEAK] > tr->peak) tr->peak = v[PEAK];
        if (!isnan(v[CGROUP])) tr->cgroup = true;
        if (!isnan(v[LIMIT]) && v[LIMIT] != tr->limit) {
            tr->limit_changed = tr->limit_changed || tr->npoints > 0;
            if (tr->limit == 0 || v[LIMIT] < tr->limit) tr->limit = v[LIMIT];
        } else if (isnan(v[LIMIT]) && tr->limit > 0) {
            tr->limit_changed = true;
        }
        if (strcmp(event, "fire") == 0 || strcmp(event, "resolve") == 0) {
            if ((no_memory = grow((void **)&tr->events, &tr->events_cap, tr->nevents,
                                  sizeof(event_t)) != 0))
                break;
            event_t *e = &tr->events[tr->nevents++];
            e->t = v[T];
            e->fired = event[0] == 'f';
            const char *rule = mmt__csv_field(&r, col[RULE]);
            bool cut;
            mmt__utf8_clean(rule ? rule : "", e->rule, sizeof e->rule - 1, 0, &cut);
        }
        /* Every row, events included, is a point of the curves. */
        if ((no_memory = grow((void **)&tr->points, &tr->points_cap, tr->npoints,
                              sizeof(point_t)) != 0))
            break;
        tr->points[tr->npoints++] = (point_t){v[T], v[IN_USE], v[RSS], v[CGROUP]};
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

/* `bytes` in the unit it reads best in, with one decimal ("12.3 MiB"); with `whole`, none
 * for a whole number of units (a limit someone set: "64 MiB"). */
static const char *bytes_text(char *buf, size_t len, double bytes, bool whole)
{
    int u = byte_unit(bytes);
    double v = bytes / pow(1024, u);
    if (u == 0) snprintf(buf, len, "%.0f B", bytes);
    else snprintf(buf, len, whole && v == floor(v) ? "%.0f %s" : "%.1f %s", v, units[u]);
    return buf;
}

static void put_bytes(FILE *out, double bytes)
{
    char text[32];
    fputs(bytes_text(text, sizeof text, bytes, false), out);
}

/* The colours of the cgroup's line and of its limit. */
#define CGROUP_COLOUR "#9467bd"
#define LIMIT_COLOUR "#8c564b"

static void draw(FILE *out, const trace_t *tr, const char *program)
{
    double tmax = 0, ymax = 0, cgroup_max = 0;
    for (size_t i = 0; i < tr->npoints; i++) {
        const point_t *p = &tr->points[i];
        if (p->t > tmax) tmax = p->t;
        if (p->in_use > ymax) ymax = p->in_use;
        if (p->rss > ymax) ymax = p->rss;
        if (p->cgroup > cgroup_max) cgroup_max = p->cgroup; /* false for NAN */
    }
    if (tr->peak > ymax) ymax = tr->peak;
    /* The cgroup's line, then its limit, join the scale if they stay near what is on it. */
    bool cgroup_drawn = tr->cgroup && cgroup_max <= CGROUP_FACTOR * ymax;
    if (cgroup_drawn && cgroup_max > ymax) ymax = cgroup_max;
    bool limit_drawn = tr->limit > 0 && tr->limit <= CGROUP_FACTOR * ymax;
    if (limit_drawn && tr->limit > ymax) ymax = tr->limit;
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

    /* The cgroup's limit, labelled below its right end; under the curves. */
    char limit[32], most[32];
    bytes_text(limit, sizeof limit, tr->limit, true);
    bytes_text(most, sizeof most, cgroup_max, false);
    if (limit_drawn) {
        fprintf(out, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"" LIMIT_COLOUR
                "\" stroke-width=\"2\" stroke-dasharray=\"10,4\"/>\n<text x=\"%d\" y=\"%.1f\" "
                "fill=\"" LIMIT_COLOUR "\" text-anchor=\"end\">%scgroup limit %s%s</text>\n", LEFT,
                Y(tr->limit), WIDTH - RIGHT, Y(tr->limit), WIDTH - RIGHT - 6, Y(tr->limit) + 16,
                tr->limit_changed ? "lowest " : "", limit,
                tr->limit_changed ? " (it changed during the run)" : "");
    }

    /* The cgroup's line, one piece for each run of rows that have its figure. */
    for (size_t i = 0; cgroup_drawn && i < tr->npoints;) {
        while (i < tr->npoints && isnan(tr->points[i].cgroup)) i++;
        if (i == tr->npoints) break;
        fputs("<polyline fill=\"none\" stroke=\"" CGROUP_COLOUR "\" stroke-width=\"2\" "
              "stroke-linejoin=\"round\" points=\"", out);
        for (size_t first = i; i < tr->npoints && !isnan(tr->points[i].cgroup); i++)
            fprintf(out, "%s%.1f,%.1f", i > first ? " " : "", X(tr->points[i].t),
                    Y(tr->points[i].cgroup));
        fputs("\"/>\n", out);
    }

    /* The program's curves. */
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

    /* Legend, top right: a sample of each line and its name, one after the other; what
     * of the cgroup's is off the scale is said in words instead, without a sample. */
    char cgroup_text[96] = "cgroup", limit_text[96] = "cgroup limit";
    if (!cgroup_drawn)
        snprintf(cgroup_text, sizeof cgroup_text, "cgroup: up to %s charged, off the scale", most);
    if (!limit_drawn)
        snprintf(limit_text, sizeof limit_text, "%scgroup limit %s, off the scale",
                 tr->limit_changed ? "lowest " : "", limit);
    const struct {
        const char *colour, *dash, *text;
        bool shown, sample;
        int width; /* its place in the row: the sample's 27 px, the text, a gap */
    } entries[] = {
        {"#1f77b4", NULL, "in use", true, true, 80},
        {"#ff7f0e", NULL, "rss", true, true, 60},
        {CGROUP_COLOUR, NULL, cgroup_text, tr->cgroup, cgroup_drawn, 0},
        {LIMIT_COLOUR, "10,4", limit_text, tr->limit > 0, limit_drawn, 0},
        {"#d62728", "6,3", "fire", true, true, 65},
        {"#2ca02c", "6,3", "resolve", true, true, 95},
    };
    enum { NENTRIES = sizeof entries / sizeof entries[0] };
    int widths[NENTRIES], total = 0;
    for (int k = 0; k < NENTRIES; k++) {
        /* About 6.5 px a character at 12 px in the fonts asked for. */
        int text = (int)(strlen(entries[k].text) * 13 + 1) / 2;
        widths[k] = entries[k].width ? entries[k].width : (entries[k].sample ? 27 : 0) + text + 14;
        if (entries[k].shown) total += widths[k];
    }
    int lx = WIDTH - RIGHT - total;
    fputs("<g font-size=\"12\">\n", out);
    for (int k = 0; k < NENTRIES; k++) {
        if (!entries[k].shown) continue;
        if (entries[k].sample) {
            fprintf(out, "<line x1=\"%d\" y1=\"64\" x2=\"%d\" y2=\"64\" stroke=\"%s\" ", lx,
                    lx + 22, entries[k].colour);
            if (entries[k].dash) fprintf(out, "stroke-dasharray=\"%s\" ", entries[k].dash);
            fprintf(out, "stroke-width=\"2\"/><text x=\"%d\" y=\"68\">%s</text>\n", lx + 27,
                    entries[k].text);
        } else {
            fprintf(out, "<text x=\"%d\" y=\"68\" fill=\"%s\">%s</text>\n", lx,
                    entries[k].colour, entries[k].text);
        }
        lx += widths[k];
    }
    fputs("</g>\n</svg>\n", out);
#undef X
#undef Y
}

int mmt__plot(const char *csv, const char *svg, const char *program, char *err, size_t errlen)
{
    return mmt__plot_with(csv, svg, program, NULL, 0, err, errlen);
}

int mmt__plot_with(const char *csv, const char *svg, const char *program,
                   const mmt__plot_event_t *events, size_t nevents, char *err, size_t errlen)
{
    trace_t tr = {0};
    int rc = read_trace(csv, &tr, err, errlen);
    if (rc == 0 && events) {
        event_t *mine = malloc((nevents ? nevents : 1) * sizeof *mine);
        if (!mine) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        } else {
            if (nevents) memcpy(mine, events, nevents * sizeof *mine);
            free(tr.events);
            tr.events = mine;
            tr.nevents = tr.events_cap = nevents;
        }
    }
    if (rc == 0) {
        FILE *out = mmt__open_regular(svg, true, err, errlen);
        if (!out) {
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

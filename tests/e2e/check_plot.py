"""Checks what `mmt-run --trace --svg` wrote, and optionally how a browser drew it.

usage: check_plot.py [--cgroup=yes|no] [--limit=BYTES|none] [--psi=yes|no]
                     TRACE.csv PICTURE.svg RULE [SCREENSHOT.png]

The trace must be well formed (header, times in order, an exit row last, every row with
every column) and hold a fire and then a resolve of RULE (none at all for RULE "-"). Its
machine columns must be as the options say the machine is (trace.h): the cgroup's bytes
in every row, or empty; its limit that number in every row, or empty; PSI's two
percentages, or empty; available_bytes in every row, at most /proc/meminfo's MemTotal;
and the sampler's readings no more often than every 100 ms. Without an option, that part
is not checked.

The SVG must parse as XML and draw both curves with a point per row, each point where
the axis puts the row's figure, and a mark per event. The cgroup's line and its limit
must be drawn as plot.c's rule has it (within 4 times the program's figures), the line
with a point per row and the limit where the axis puts it, labelled; or said off the
scale in the legend. The screenshot, if given, must show the curves', the marks' and
what is drawn of the cgroup's colours. Exit status 1 with the reason on stderr on any
failure.
"""
import csv
import struct
import sys
import xml.etree.ElementTree as ET
import zlib

HEADER = ["time_s", "in_use_bytes", "rss_bytes", "allocated_bytes", "freed_bytes",
          "peak_bytes", "allocations", "event", "rule", "cgroup_current_bytes",
          "cgroup_limit_bytes", "psi_some10", "psi_full10", "available_bytes"]
CGROUP, LIMIT, SOME, FULL, AVAILABLE = range(9, 14)
SVG = "{http://www.w3.org/2000/svg}"
COLOURS = {"in use": "#1f77b4", "rss": "#ff7f0e", "fire": "#d62728", "resolve": "#2ca02c",
           "cgroup": "#9467bd", "limit": "#8c564b"}
FACTOR = 4  # plot.c: CGROUP_FACTOR
UNITS = ["B", "KiB", "MiB", "GiB", "TiB"]


def fail(why):
    sys.exit("check_plot: " + why)


def mem_total():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    fail("no MemTotal in /proc/meminfo")


def check_machine(rows, expect):
    """The machine's columns as `expect` (option name: value) says."""
    for r in rows:
        cg, limit, some, full, available = r[CGROUP:AVAILABLE + 1]
        if expect.get("cgroup") == "yes" and not (cg.isdigit() and int(cg) > 0):
            fail("no cgroup bytes in the row %r" % r)
        if expect.get("cgroup") == "no" and (cg or limit):
            fail("cgroup figures where the machine has no cgroup: %r" % r)
        if expect.get("limit") == "none" and limit:
            fail("a cgroup limit where none is set: %r" % r)
        if expect.get("limit", "none") != "none" and limit != expect["limit"]:
            fail("cgroup limit %r, not %s, in the row %r" % (limit, expect["limit"], r))
        if expect.get("psi") == "yes":
            for v in (some, full):
                try:
                    ok = 0 <= float(v) <= 100 and len(v.split(".")[-1]) == 2
                except ValueError:
                    ok = False
                if not ok:
                    fail("PSI field %r is not a percentage with two decimals: %r" % (v, r))
        if expect.get("psi") == "no" and (some or full):
            fail("PSI figures where the machine has none: %r" % r)
        if expect and not (available.isdigit() and 0 < int(available) <= mem_total()):
            fail("available_bytes %r is not between 1 and MemTotal: %r" % (available, r))
    # The sampler reads the machine at most every 100 ms (trace.c): between sample rows
    # the figures change no sooner (the read itself may take a few hundred microseconds).
    last, since = None, 0.0
    for r in rows:
        if r[7] != "sample":
            continue
        figures = tuple(r[CGROUP:AVAILABLE + 1])
        if last is not None and figures != last:
            if float(r[0]) - since < 0.095:
                fail("the machine was read again %.3f s after the reading before, at %s"
                     % (float(r[0]) - since, r[0]))
            since = float(r[0])
        last = figures


def check_trace(path, rule, expect):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if rows[0] != HEADER:
        fail("trace header is %r" % rows[0])
    rows = rows[1:]
    for r in rows:
        if len(r) != len(HEADER):
            fail("a row has %d fields, not %d: %r" % (len(r), len(HEADER), r))
    times = [float(r[0]) for r in rows]
    if times != sorted(times):
        fail("trace times are not in order")
    if rows[-1][7] != "exit" or sum(r[7] == "exit" for r in rows) != 1:
        fail("the exit row is not last, or not alone")
    if sum(r[7] == "sample" for r in rows) < 10:
        fail("fewer than 10 samples")
    if not all(int(r[2]) > 0 for r in rows):
        fail("a row has no rss")
    if not all(int(r[3]) - int(r[4]) == int(r[1]) for r in rows):
        fail("in_use is not allocated - freed in every row")
    events = [(r[7], r[8], int(r[1])) for r in rows if r[7] in ("fire", "resolve")]
    kinds = [(e[0], e[1]) for e in events]
    if rule == "-" and kinds:
        fail("events are %r, and none was expected" % kinds)
    if rule != "-" and kinds[:2] != [("fire", rule), ("resolve", rule)]:
        fail("events are %r" % kinds)
    check_machine(rows, expect)
    return rows, events


def byte_axis(root):
    """bytes -> y, from the byte axis's labels ("20 MiB" at the grid line's y + 4)."""
    ticks = []
    for t in root.iter(SVG + "text"):
        if t.get("text-anchor") == "end" and t.get("x") == "82" and t.text:
            number, unit = t.text.split()
            ticks.append((float(number) * 1024 ** UNITS.index(unit), float(t.get("y")) - 4))
    if len(ticks) < 2:
        fail("the byte axis has %d labels" % len(ticks))
    (v0, y0), (v1, y1) = min(ticks), max(ticks)
    return lambda v: y0 + (v - v0) * (y1 - y0) / (v1 - v0), (v1 - v0) / (y0 - y1)


def limit_text(b):
    """plot.c's label for a limit: in the unit it reads best in, with no decimals for a
    whole number of units."""
    u, v = 0, float(b)
    while u < 4 and v >= 1024 * 10:
        u, v = u + 1, v / 1024
    if u == 0:
        return "%d B" % b
    return ("%.0f %s" if v == int(v) else "%.1f %s") % (v, UNITS[u])


def check_svg(path, rows, events):
    root = ET.parse(path).getroot()
    lines = root.findall(".//%spolyline" % SVG)
    by_colour = {}
    for line in lines:
        by_colour.setdefault(line.get("stroke"), []).append(line)
    y_of, bytes_per_px = byte_axis(root)

    def points(line):
        return [tuple(map(float, p.split(","))) for p in line.get("points").split()]

    def check_curve(name, column):
        curves = by_colour.get(COLOURS[name], [])
        if len(curves) != 1:
            fail("%d curves of %s, not 1" % (len(curves), name))
        ps = points(curves[0])
        if len(ps) != len(rows):
            fail("the %s curve has %d points for %d rows" % (name, len(ps), len(rows)))
        for (x, y), r in zip(ps, rows):
            if abs(y - y_of(int(r[column]))) > 0.3:
                fail("the %s curve is at y %.1f for %s bytes, where the axis puts %.1f"
                     % (name, y, r[column], y_of(int(r[column]))))

    check_curve("in use", 1)
    check_curve("rss", 2)
    program = max(max(int(r[k]) for r in rows) for k in (1, 2, 5))
    cgroup = max([int(r[CGROUP]) for r in rows if r[CGROUP]] or [0])
    limits = [int(r[LIMIT]) for r in rows if r[LIMIT]]
    legend = [t.text for t in root.iter(SVG + "text") if t.get("y") == "68"]
    top = program
    if cgroup and cgroup <= FACTOR * program:
        check_curve("cgroup", CGROUP)
        top = max(top, cgroup)
        if "cgroup" not in legend:
            fail("no cgroup in the legend %r" % legend)
    elif cgroup:
        if COLOURS["cgroup"] in by_colour:
            fail("a cgroup line %.0f times the program's figures is drawn" % (cgroup / program))
        if not any(t.startswith("cgroup: up to ") and t.endswith(" charged, off the scale")
                   for t in legend):
            fail("the legend %r does not say the cgroup is off the scale" % legend)
    if len(lines) != 2 + (COLOURS["cgroup"] in by_colour):
        fail("%d curves" % len(lines))
    drawn = [l for l in root.iter(SVG + "line") if l.get("stroke") == COLOURS["limit"]
             and l.get("y1") == l.get("y2") and l.get("x1") == "90"]
    labels = [t.text for t in root.iter(SVG + "text") if t.get("fill") == COLOURS["limit"]]
    if limits and min(limits) <= FACTOR * top:
        want = ("cgroup limit " if len(set(limits)) == 1 and len(limits) == len(rows)
                else "lowest cgroup limit ") + limit_text(min(limits))
        if len(drawn) != 1:
            fail("%d limit lines, not 1" % len(drawn))
        if abs(float(drawn[0].get("y1")) - y_of(min(limits))) > 0.3:
            fail("the limit line is at y %s, where the axis puts %d bytes at %.1f"
                 % (drawn[0].get("y1"), min(limits), y_of(min(limits))))
        if not any(l.startswith(want) for l in labels):
            fail("no label %r on the limit line: %r" % (want, labels))
        if "cgroup limit" not in legend:
            fail("no cgroup limit in the legend %r" % legend)
    elif limits:
        if drawn:
            fail("a limit %.0f times the figures is drawn" % (min(limits) / top))
        if not any(l.endswith("cgroup limit %s, off the scale" % limit_text(min(limits)))
                   for l in labels):
            fail("the legend does not say the limit is off the scale: %r" % labels)
    elif drawn or labels:
        fail("a limit is drawn where the trace has none")
    marks = [l for l in root.iter(SVG + "line") if l.get("stroke-dasharray")
             and l.get("y1") != l.get("y2")]
    if len(marks) != len(events):
        fail("%d event marks for %d events" % (len(marks), len(events)))
    labels = [t.text for t in root.iter(SVG + "text") if t.text]
    for kind, rule, _ in events:
        if not any(l.startswith(kind + " " + rule) for l in labels):
            fail("no label for %s %s" % (kind, rule))
    return {"cgroup": COLOURS["cgroup"] in by_colour, "limit": bool(drawn), "events": bool(events)}


def png_pixels(path):
    """RGB(A) rows of an 8-bit PNG, decoded with zlib and the five row filters."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail("%s is not a PNG" % path)
    at, idat = 8, b""
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    if depth != 8 or colour not in (2, 6):
        fail("unexpected PNG format (depth %d, colour type %d)" % (depth, colour))
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    out = []
    for y in range(height):
        f = raw[y * (stride + 1)]
        row = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = row[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                row[i] = (row[i] + a) & 255
            elif f == 2:
                row[i] = (row[i] + b) & 255
            elif f == 3:
                row[i] = (row[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out.append(row)
        prev = row
    return width, height, bpp, out


def check_screenshot(path, drawn):
    width, height, bpp, rows = png_pixels(path)
    colours = {name: tuple(int(c[k:k + 2], 16) for k in (1, 3, 5)) for name, c in COLOURS.items()
               if (name not in ("fire", "resolve") or drawn["events"])
               and (name != "cgroup" or drawn["cgroup"]) and (name != "limit" or drawn["limit"])}
    counts = dict.fromkeys(colours, 0)
    for row in rows:
        for x in range(0, width * bpp, bpp):
            px = row[x:x + 3]
            for name, c in colours.items():
                if all(abs(px[k] - c[k]) < 40 for k in range(3)):
                    counts[name] += 1
    for name, n in counts.items():
        if n < 40:
            fail("the screenshot shows %d pixels of %s's colour" % (n, name))
    print("screenshot %dx%d: %s" % (width, height,
          ", ".join("%s %d px" % (k, v) for k, v in counts.items())))


def main():
    expect = {}
    args = sys.argv[1:]
    while args and args[0].startswith("--"):
        name, _, value = args.pop(0)[2:].partition("=")
        if name not in ("cgroup", "limit", "psi"):
            fail(__doc__)
        expect[name] = value
    if len(args) not in (3, 4):
        fail(__doc__)
    rows, events = check_trace(args[0], args[2], expect)
    drawn = check_svg(args[1], rows, events)
    if len(args) == 4:
        check_screenshot(args[3], drawn)


main()

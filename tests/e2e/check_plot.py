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

The SVG must parse as XML and draw both curves with a point per row and a mark per
event; the screenshot, if given, must show the curves' and the marks' colours. Exit
status 1 with the reason on stderr on any failure.
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


def check_svg(path, rows, events):
    root = ET.parse(path).getroot()
    lines = root.findall(".//%spolyline" % SVG)
    if len(lines) != 2:
        fail("%d curves, not 2" % len(lines))
    for line in lines:
        if len(line.get("points").split()) != len(rows):
            fail("a curve has %d points for %d rows" % (len(line.get("points").split()), len(rows)))
    marks = [l for l in root.iter(SVG + "line") if l.get("stroke-dasharray")
             and l.get("y1") != l.get("y2")]
    if len(marks) != len(events):
        fail("%d event marks for %d events" % (len(marks), len(events)))
    labels = [t.text for t in root.iter(SVG + "text") if t.text]
    for kind, rule, _ in events:
        if not any(l.startswith(kind + " " + rule) for l in labels):
            fail("no label for %s %s" % (kind, rule))


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


def check_screenshot(path):
    width, height, bpp, rows = png_pixels(path)
    colours = {"in use": (0x1f, 0x77, 0xb4), "rss": (0xff, 0x7f, 0x0e),
               "fire": (0xd6, 0x27, 0x28), "resolve": (0x2c, 0xa0, 0x2c)}
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
    check_svg(args[1], rows, events)
    if len(args) == 4:
        check_screenshot(args[3])

main()

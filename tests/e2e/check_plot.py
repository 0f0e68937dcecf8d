"""Checks what `mmt-run --trace --svg` wrote, and optionally how a browser drew it.

usage: check_plot.py TRACE.csv PICTURE.svg RULE [SCREENSHOT.png]

The trace must be well formed (header, times in order, an exit row last) and hold a
fire and then a resolve of RULE; the SVG must parse as XML and draw both curves with a
point per row and a mark per event; the screenshot, if given, must show the curves' and
the marks' colours. Exit status 1 with the reason on stderr on any failure.
"""
import csv
import struct
import sys
import xml.etree.ElementTree as ET
import zlib

HEADER = ["time_s", "in_use_bytes", "rss_bytes", "allocated_bytes", "freed_bytes",
          "peak_bytes", "allocations", "event", "rule"]
SVG = "{http://www.w3.org/2000/svg}"


def fail(why):
    sys.exit("check_plot: " + why)


def check_trace(path, rule):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if rows[0] != HEADER:
        fail("trace header is %r" % rows[0])
    rows = rows[1:]
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
    if kinds[:2] != [("fire", rule), ("resolve", rule)]:
        fail("events are %r" % kinds)
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
    if len(sys.argv) not in (4, 5):
        fail(__doc__)
    rows, events = check_trace(sys.argv[1], sys.argv[3])
    check_svg(sys.argv[2], rows, events)
    if len(sys.argv) == 5:
        check_screenshot(sys.argv[4])


main()

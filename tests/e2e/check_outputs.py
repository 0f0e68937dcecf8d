"""Runs mmt-run with hostile rule names and program names, and reads every output with a
standard parser: the trace with csv, the picture with xml.etree, the JSON summary with
json, the Prometheus one with the official client's parser.

usage: check_outputs.py rules MMT_RUN DIR
       check_outputs.py programs MMT_RUN DIR

rules: a policy whose rules (fire, then resolve) are named with line breaks, commas,
quotes, markup, invalid UTF-8, multi-byte characters across each length limit, and names
of 480 bytes and more; mmt-run runs `sleep 1` under it with --trace and --svg. Every rule
must have its fire and resolve rows, its name as trace.h says, and its two labels in the
picture as plot.c draws them.

programs: symbolic links to true with such names (one 480+ bytes long through nested
folders); each runs under mmt-run with --report json and --svg, then --report
prometheus. The JSON must hold the name (invalid bytes as U+FFFD), the picture's title
the command line as plot.c cuts it. Both must hold the machine's figures as this machine
has them (machine_summary.h): the "machine" object and the mmt_cgroup_*, mmt_psi_* and
mmt_system_* families, each with its type, the same parts in both, and what Python reads
itself agreeing (MemTotal, the PSI file, the cgroup's folder).

mmt-run runs with TMPDIR as the caller set it. Exit status 1 with the reason on any
failure.
"""
import csv
import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

from prometheus_client.parser import text_string_to_metric_families

SVG = "{http://www.w3.org/2000/svg}"
HEADER = ["time_s", "in_use_bytes", "rss_bytes", "allocated_bytes", "freed_bytes",
          "peak_bytes", "allocations", "event", "rule", "cgroup_current_bytes",
          "cgroup_limit_bytes", "psi_some10", "psi_full10", "available_bytes"]
RULE_MAX = 256   # trace.h: MMT_TRACE_RULE_MAX
TITLE_MAX = 80   # plot.c
LABEL_MAX = 80   # plot.c
ELLIPSIS = "\u2026"


def fail(why):
    sys.exit("check_outputs: " + why)


def units(b):
    """The characters of `b` as (bytes, code point), None for each maximal invalid
    subpart, as Unicode recommends."""
    out, i = [], 0
    while i < len(b):
        c = b[i]
        if c < 0x80:
            out.append((b[i:i + 1], c))
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            need, lo, hi = 1, 0x80, 0xBF
        elif 0xE0 <= c <= 0xEF:
            need, lo, hi = 2, 0xA0 if c == 0xE0 else 0x80, 0x9F if c == 0xED else 0xBF
        elif 0xF0 <= c <= 0xF4:
            need, lo, hi = 3, 0x90 if c == 0xF0 else 0x80, 0x8F if c == 0xF4 else 0xBF
        else:
            out.append((b[i:i + 1], None))
            i += 1
            continue
        j = 1
        while j <= need and i + j < len(b) and lo <= b[i + j] <= hi:
            j += 1
            lo, hi = 0x80, 0xBF
        piece = b[i:i + j]
        out.append((piece, None if j <= need else ord(piece.decode())))
        i += j
    # The model must agree with Python's own decoder.
    if "".join("\ufffd" if cp is None else chr(cp) for _, cp in out) != b.decode("utf-8", "replace"):
        fail("the test's UTF-8 model disagrees with Python's on %r" % b)
    return out


def clean(b, xml, cap):
    """`b` as the tools write it: invalid UTF-8 (and for XML, forbidden characters) as
    U+FFFD, tabs and line breaks as spaces for XML, cut before the character that would
    pass `cap` bytes. Returns (text, cut)."""
    text, size = "", 0
    for _, cp in units(b):
        ch = "\ufffd" if cp is None else chr(cp)
        if xml and ch in "\t\n\r":
            ch = " "
        elif xml and (ord(ch) < 0x20 or ch in "\ufffe\uffff"):
            ch = "\ufffd"
        n = len(ch.encode())
        if size + n > cap:
            return text, True
        text, size = text + ch, size + n
    return text, False


def drawn(b, cap):
    """How plot.c draws `b` in at most `cap` bytes."""
    text, cut = clean(b, True, cap)
    return text + (ELLIPSIS if cut else "")


HOSTILE = [b"new\nline", b"comma,here", b'quote"d', b'"', b"<angle>", b"amp&ersand",
           b"cdata]]>end", b"<![CDATA[x", b"apos'trophe", b"tab\there", b"cr\rhere",
           b"crlf\r\nend", b"ctrl\x01\x1b\x1f", b"del\x7f", b"back\\slash", b"caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e",
           b"ff\xffbyte", b"trunc\xe2\x82", b"overlong\xc0\xaf", b"surrogate\xed\xa0\x80",
           b"lone\x80cont", b"nonchar\xef\xbf\xbe", b"end\xf0\x9d\x84"]


def around(prefix_len, limit, tag):
    """Names whose multi-byte characters (2, 3 and 4 bytes, and an invalid byte, which
    becomes 3) straddle byte `limit` of a text whose first `prefix_len` bytes are
    something else."""
    names = []
    for ch in ("\u00e9".encode(), "\u20ac".encode(), "\U0001d11e".encode(), b"\xff"):
        for k in range(limit - prefix_len - 4, limit - prefix_len + 1):
            start = tag + b"%02d" % len(names)  # distinct even once cut
            if k >= len(start):
                names.append(start + b"x" * (k - len(start)) + ch * 3)
    return names


def run(cmd, env):
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    if r.returncode != 0:
        fail("%r exited %d: %r" % (cmd, r.returncode, r.stderr))
    return r


def rules(mmt_run, folder):
    names = HOSTILE + around(0, LABEL_MAX, b"L") + around(0, RULE_MAX, b"R") + [
        b"long-" + b"x" * 480 + b',"\n<&', b"\xc3\xa9" * 300, b"\xe2\x82\xac" * 200 + b"\xff"]
    if len(set(names)) != len(names):
        fail("two rules have the same name")

    def lua_string(b):
        return '"' + "".join("\\%d" % c for c in b) + '"'

    policy = os.path.join(folder, "hostile.lua")
    with open(policy, "w") as f:
        f.write("local mmt = require 'mmt'\n"
                "-- true for the first two evaluations: a fire, then a resolve\n"
                "local function twice()\n"
                "  local n = 0\n"
                "  return function(m) n = n + 1; return n <= 2 end\n"
                "end\n")
        for name in names:
            f.write("mmt.rule { name = %s, when = twice(), fire = function() end }\n" % lua_string(name))
    trace = os.path.join(folder, "hostile.csv")
    picture = os.path.join(folder, "hostile.svg")
    run([mmt_run, "--policy", policy, "--interval", "10", "--trace", trace, "--svg", picture,
         "--", "sleep", "1"], os.environ)

    with open(trace, newline="", encoding="utf-8") as f:  # strict: invalid UTF-8 raises
        rows = list(csv.reader(f, strict=True))
    if rows[0] != HEADER:
        fail("trace header is %r" % rows[0])
    for r in rows[1:]:
        if len(r) != len(HEADER):
            fail("a trace row has %d fields: %r" % (len(r), r))
    events = [(r[7], r[8]) for r in rows[1:] if r[7] in ("fire", "resolve")]
    for name in names:
        want = clean(name, False, RULE_MAX)[0]
        for kind in ("fire", "resolve"):
            if events.count((kind, want)) != 1:
                fail("%d %s rows for the rule %r, written %r" % (events.count((kind, want)), kind, name, want))
    if len(events) != 2 * len(names):
        fail("%d event rows for %d rules" % (len(events), len(names)))

    root = ET.parse(picture).getroot()
    labels = sorted(t.text for t in root.iter(SVG + "text") if t.get("transform"))
    wanted = sorted("%s %s" % (kind, drawn(rule.encode(), LABEL_MAX)) for kind, rule in events)
    if labels != wanted:
        for a, b in zip(labels, wanted):
            if a != b:
                fail("label %r, expected %r" % (a, b))
        fail("%d labels, expected %d" % (len(labels), len(wanted)))
    title = [t.text for t in root.iter(SVG + "text") if t.get("font-weight") == "bold"]
    if title != ["Memory of sleep 1"]:
        fail("title %r" % title)
    print("rules: %d names, %d trace rows, %d labels" % (len(names), len(rows) - 1, len(labels)))


# The machine's Prometheus samples, by part: name -> type.
MACHINE_METRICS = {
    "cgroup": {"mmt_cgroup_current_bytes": "gauge", "mmt_cgroup_max_bytes": "gauge",
               "mmt_cgroup_high_bytes": "gauge", "mmt_cgroup_limit_bytes": "gauge",
               "mmt_cgroup_events_total": "counter"},
    "psi": dict([("mmt_psi_%s_avg%s" % (k, n), "gauge") for k in ("some", "full")
                 for n in (10, 60, 300)] +
                [("mmt_psi_%s_stall_seconds_total" % k, "counter") for k in ("some", "full")]),
    "system": {"mmt_system_memory_total_bytes": "gauge",
               "mmt_system_memory_available_bytes": "gauge"},
}


def mem_total():
    with open("/proc/meminfo") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("MemTotal:"))


def check_machine(m, families, what):
    """The JSON summary's "machine" object `m` and the Prometheus families of another run
    on the same machine: the same parts, well typed, agreeing with what Python reads."""
    def need(ok, why):
        if not ok:
            fail("%s: %s: %r" % (what, why, m))

    def count(v):
        return type(v) is int and v >= 0

    need(set(m) <= {"cgroup", "psi", "system"}, "unknown parts")
    need(m["system"]["total"] == mem_total(), "system.total is not MemTotal")
    need(0 < m["system"].get("available", 1) <= m["system"]["total"], "system.available")
    need(("psi" in m) >= os.path.exists("/proc/pressure/memory"), "no psi, and /proc has it")
    if "psi" in m:
        p = m["psi"]
        need(os.path.isfile(p["source"]), "psi.source is not a file")
        for k in ("some", "full"):
            for n in (10, 60, 300):
                need(type(p["%s%d" % (k, n)]) is float and 0 <= p["%s%d" % (k, n)] <= 100,
                     "psi.%s%d" % (k, n))
            need(count(p[k + "_total"]), "psi.%s_total" % k)
    if "cgroup" in m:
        c = m["cgroup"]
        need(c["version"] in (1, 2), "cgroup.version")
        need(os.path.isfile(os.path.join(c["path"], "memory.current" if c["version"] == 2
                                         else "memory.usage_in_bytes")), "cgroup.path")
        need(count(c["current"]) and c["current"] > 0, "cgroup.current")
        for k in ("max", "high", "limit"):
            need(c[k] is None or count(c[k]), "cgroup." + k)
        need(c["limit"] is None or c["max"] is None or c["limit"] <= c["max"], "limit > max")
        need(sorted(c["events"]) == ["high", "max", "oom", "oom_kill"] and
             all(count(v) for v in c["events"].values()), "cgroup.events")
    samples = {s.name: (f.type, f.documentation, s) for f in families for s in f.samples}
    for part, metrics in MACHINE_METRICS.items():
        for name, kind in metrics.items():
            if part not in m or (name.endswith("available_bytes") and "available" not in m[part]):
                need(name not in samples, "%s without its part" % name)
                continue
            need(name in samples, "no " + name)
            need(samples[name][0] == kind and samples[name][1], "%s is not a %s with help"
                 % (name, kind))
    if "cgroup" in m:
        for k in ("max", "high", "limit"):
            v = samples["mmt_cgroup_%s_bytes" % k][2].value
            need((v == float("inf")) == (m["cgroup"][k] is None), "%s: %r" % (k, v))
        events = {s.labels["event"] for f in families for s in f.samples
                  if s.name == "mmt_cgroup_events_total"}
        need(events == {"high", "max", "oom", "oom_kill"}, "events %r" % events)
    if "system" in m:
        need(samples["mmt_system_memory_total_bytes"][2].value == mem_total(), "total")


def programs(mmt_run, folder):
    home = os.path.join(folder, "p")
    os.makedirs(home, exist_ok=True)
    prefix = len(home.encode()) + 1
    names = [n.replace(b"/", b"|") for n in HOSTILE] + around(prefix, TITLE_MAX, b"T")
    paths = [os.path.join(home.encode(), n) for n in names]
    deep = os.path.join(home.encode(), b"d" * 200, "\u00e9".encode() * 100, b"x\n<&\"," * 20)
    os.makedirs(os.path.dirname(deep), exist_ok=True)
    paths.append(deep)
    if len(deep) < 480:
        fail("the long path is %d bytes" % len(deep))
    for p in paths:
        os.symlink("/bin/true", p)

    for i, path in enumerate(paths):
        report = os.path.join(folder, "p%d.json" % i)
        picture = os.path.join(folder, "p%d.svg" % i)
        prom = os.path.join(folder, "p%d.prom" % i)
        run([mmt_run.encode(), b"--report", b"json", b"--out", report.encode(), b"--svg",
             picture.encode(), b"--", path], os.environ)
        run([mmt_run.encode(), b"--report", b"prometheus", b"--out", prom.encode(), b"--", path],
            os.environ)
        with open(report, "rb") as f:
            data = json.loads(f.read())  # bytes: decoded as strict UTF-8
        if data["program"] != path.decode("utf-8", "replace"):
            fail("JSON program %r for %r" % (data["program"], path))
        with open(prom, encoding="utf-8") as f:
            families = list(text_string_to_metric_families(f.read()))
        metrics = {s.name for fam in families for s in fam.samples}
        if "mmt_allocated_bytes_total" not in metrics:
            fail("Prometheus output for %r: %r" % (path, metrics))
        check_machine(data["machine"], families, path)
        root = ET.parse(picture).getroot()
        title = [t.text for t in root.iter(SVG + "text") if t.get("font-weight") == "bold"]
        want = "Memory of " + drawn(path, TITLE_MAX)
        if title != [want]:
            fail("title %r, expected %r" % (title, want))
    print("programs: %d names" % len(paths))


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("rules", "programs"):
        fail(__doc__)
    (rules if sys.argv[1] == "rules" else programs)(sys.argv[2], sys.argv[3])


main()

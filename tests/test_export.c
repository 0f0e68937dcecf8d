/*
 * Exporting the counters: text, JSON and the Prometheus exposition format, from C
 * (mmt_meminfo_write) and from policies (mmt.format). The Prometheus text is parsed with
 * the official Python client's parser, and the JSON with Python's json module.
 */
#include <limits.h>

#include "export.h"
#include "machine.h"
#include "fields.h"
#include "policyutil.h"
#include "tags.h"

static const mmt_meminfo_t sample = {.allocated = 5000, .freed = 1000, .in_use = 4000,
                                     .peak = 4500, .allocations = 7, .frees = 2, .reallocs = 1};

static void test_export_text_and_json_are_exact(void **state)
{
    (void)state;
    char buf[1024];
    int n = mmt__format(buf, sizeof buf, &sample, NULL, MMT_FORMAT_TEXT);
    assert_int_equal(n, (int)strlen(buf));
    assert_string_equal(buf, "allocated 5000 B, freed 1000 B, in use 4000 B, peak 4500 B, "
                             "allocations 7, frees 2, reallocs 1\n");
    mmt__format(buf, sizeof buf, &sample, NULL, MMT_FORMAT_JSON);
    assert_string_equal(buf, "{\"allocated\":5000,\"freed\":1000,\"in_use\":4000,\"peak\":4500,"
                             "\"allocations\":7,\"frees\":2,\"reallocs\":1}\n");
    mmt__extra_t extra = {.rate = -2048, .rss = 1e6, .lua = 4096, .time = 12.5};
    mmt__format(buf, sizeof buf, &sample, &extra, MMT_FORMAT_JSON);
    assert_contains(buf, ",\"rate\":-2048,\"rss\":1000000,\"lua\":4096,\"time\":12.5}\n");
    assert_int_equal(mmt__format(buf, sizeof buf, &sample, NULL, 99), MMT_EINVAL);

    /* Too small a buffer: cut, NUL-terminated, and the length needed is returned. */
    char small[16];
    n = mmt__format(small, sizeof small, &sample, NULL, MMT_FORMAT_TEXT);
    assert_true(n > (int)sizeof small);
    assert_int_equal(strlen(small), sizeof small - 1);
}

/* Runs a Python program with `input` on stdin; returns what it printed. */
static void python(const char *program, const char *input, char *out, size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/input.txt", test_dir);
    write_in_place(path, input);
    python_on_file(program, path, out, len);
}

static const char parse_prometheus[] =
    "import sys\n"
    "from prometheus_client.parser import text_string_to_metric_families as parse\n"
    "for f in parse(sys.stdin.read()):\n"
    "    for s in f.samples: print(f.type, s.name, repr(s.value))\n";

static void test_export_prometheus_parses_with_the_official_client(void **state)
{
    (void)state;
    char text[4096], parsed[4096];
    mmt__extra_t extra = {.rate = 1.5, .rss = 8192, .lua = 4096, .time = 1};
    mmt__format(text, sizeof text, &sample, &extra, MMT_FORMAT_PROMETHEUS);
    python(parse_prometheus, text, parsed, sizeof parsed);
    const char *expected[] = {
        "counter mmt_allocated_bytes_total 5000.0\n", "counter mmt_freed_bytes_total 1000.0\n",
        "gauge mmt_in_use_bytes 4000.0\n",            "gauge mmt_peak_bytes 4500.0\n",
        "counter mmt_allocations_total 7.0\n",        "counter mmt_frees_total 2.0\n",
        "counter mmt_reallocs_total 1.0\n",
        "gauge mmt_in_use_rate_bytes_per_second 1.5\n", "gauge mmt_resident_bytes 8192.0\n",
        "gauge mmt_policy_vm_bytes 4096.0\n",
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        assert_contains(parsed, expected[i]);
}

static void test_export_meminfo_write_gives_the_current_counters(void **state)
{
    (void)state;
    void *block = mmt_malloc(777);
    mmt_meminfo_t m = meminfo_now();
    char path[256];
    snprintf(path, sizeof path, "%s/write.json", test_dir);
    FILE *f = fopen(path, "w");
    assert_int_equal(mmt_meminfo_write(f, MMT_FORMAT_JSON), 0);
    fclose(f);
    char want[128], got[1024];
    snprintf(want, sizeof want, "\"in_use\":%llu,", (unsigned long long)m.in_use);
    f = fopen(path, "r");
    size_t n = fread(got, 1, sizeof got - 1, f);
    got[n] = '\0';
    fclose(f);
    assert_contains(got, want);
    assert_int_equal(mmt_meminfo_write(NULL, MMT_FORMAT_JSON), MMT_EINVAL);
    assert_int_equal(mmt_meminfo_write(stdout, 42), MMT_EINVAL);
    mmt_free(block);
}

/* A log line is one line: the engine writes a newline as the two characters \ and n.
 * This turns them back, in place. */
static void unescape_newlines(char *s)
{
    char *out = s;
    for (; *s; s++) {
        if (s[0] == '\\' && s[1] == 'n') {
            *out++ = '\n';
            s++;
        } else {
            *out++ = *s;
        }
    }
    *out = '\0';
}

static void test_export_policies_format_snapshots(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    char path[256];
    snprintf(path, sizeof path, "%s/format.lua", test_dir);
    write_in_place(path, "local mmt = require 'mmt'\n"
                         "local m = mmt.meminfo()\n"
                         "mmt.log('info', 'JSON %s', mmt.format(m, 'json'))\n"
                         "local prom = mmt.format(m, 'prometheus')\n"
                         "for i = 1, #prom, 1000 do mmt.log('info', 'PROM %s', prom:sub(i, i + 999)) end\n"
                         "mmt.log('info', 'TEXT %s', mmt.format(m))\n"

                         "local ok, err = pcall(mmt.format, m, 'xml')\n"
                         "mmt.log('info', 'BAD %s', err)\n");
    assert_int_equal(mmt_policy_load(p, path), 0);
    char json[2048] = "", prom[16384] = "", out[8192];
    pthread_mutex_lock(&log->lock);
    for (int i = 0; i < log->count; i++) {
        if (strncmp(log->lines[i], "JSON ", 5) == 0) snprintf(json, sizeof json, "%s", log->lines[i] + 5);
        if (strncmp(log->lines[i], "PROM ", 5) == 0) {
            /* In pieces of 1000 bytes, each logged as one line. */
            char piece[LOG_LINE];
            snprintf(piece, sizeof piece, "%s", log->lines[i] + 5);
            assert_null(strchr(piece, '\n'));
            unescape_newlines(piece);
            strncat(prom, piece, sizeof prom - strlen(prom) - 1);
        }
    }
    pthread_mutex_unlock(&log->lock);
    unescape_newlines(json);
    python("import sys, json\n"
           "d = json.load(sys.stdin)\n"
           "print(sorted(k for k in d if k != \"machine\"))\n"
           "print(\"system\", d[\"machine\"][\"system\"][\"total\"] > 0)\n"
           "print(d[\"allocated\"] - d[\"freed\"] == d[\"in_use\"], d[\"rss\"] > 0, d[\"lua\"] > 0)\n",
           json, out, sizeof out);
    assert_contains(out, "['allocated', 'allocations', 'freed', 'frees', 'in_use', 'lua', "
                         "'peak', 'rate', 'reallocs', 'rss', 'time']");
    assert_contains(out, "True True True");
    assert_contains(out, "system True");
    python(parse_prometheus, prom, out, sizeof out);
    assert_contains(out, "gauge mmt_policy_vm_bytes ");
    assert_contains(out, "gauge mmt_system_memory_total_bytes ");
    assert_logged(log, "TEXT allocated ");
    assert_logged(log, "BAD bad argument #2 to '?' (invalid option 'xml')"); /* via pcall */

    mmt_policy_free(p);
    free_log(log);
}

/* In a child (run_in_child): mmt.format refuses a PSI figure outside 0-100 with a message
 * naming the field. A child, because the leak check of this program's AddressSanitizer
 * build crashes at exit after mmt.format raised an error here (LeakSanitizer's tracer,
 * reading the dynamic TLS; not reproduced by the same errors in test_limits): the child
 * ends with _exit, before any leak check. */
static void format_refuses_psi_out_of_range(void *arg)
{
    (void)arg;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    load_text(p, "psi.lua",
              "local mmt = require 'mmt'\n"
              "local ok, err = pcall(mmt.format, {allocated = 0, freed = 0, in_use = 0,\n"
              "  peak = 0, allocations = 0, frees = 0, reallocs = 0, rate = 0, rss = 0, lua = 0,\n"
              "  time = 0, psi = {some10 = -1, some60 = 0, some300 = 0, full10 = 0, full60 = 0,\n"
              "  full300 = 0, some_total = 0, full_total = 0}}, 'json')\n"
              "mmt.log('info', 'PSI %s', err)\n");
    int found = log_count(log, "PSI mmt.format: field 'psi.some10' of the snapshot must be a "
                               "percentage, 0 to 100, not -1");
    if (found != 1) log_dump(log);
    _exit(found == 1 ? 0 : 1);
}

static void test_export_format_refuses_psi_out_of_range(void **state)
{
    (void)state;
    child_result_t r = run_in_child(format_refuses_psi_out_of_range, NULL);
    if (r.signal || r.exit_code) fail_msg("signal %d, exit %d:\n%s", r.signal, r.exit_code, r.err);
}

/* ---- One list of fields (fields.h) --------------------------------------------------------- */

static void test_export_every_listed_field_reaches_every_output(void **state)
{
    (void)state;
    /* Each field of the list, with a value of its own, in each format: a field added to the
     * list needs no other edit to be exported. */
    mmt_meminfo_t m;
    for (int i = 0; i < MMT__NFIELDS; i++) mmt__field_set(&m, i, 1000003u * (unsigned)(i + 1));
    char text[2048], json[2048], prom[4096], want[256];
    mmt__format(text, sizeof text, &m, NULL, MMT_FORMAT_TEXT);
    mmt__format(json, sizeof json, &m, NULL, MMT_FORMAT_JSON);
    mmt__format(prom, sizeof prom, &m, NULL, MMT_FORMAT_PROMETHEUS);
    for (int i = 0; i < MMT__NFIELDS; i++) {
        const mmt__field_t *f = &mmt__fields[i];
        unsigned long long v = mmt__field_value(&m, i);
        char spaced[64];
        snprintf(spaced, sizeof spaced, "%s", f->name);
        for (char *c = spaced; *c; c++) *c = *c == '_' ? ' ' : *c;
        snprintf(want, sizeof want, "%s %llu%s", spaced, v, f->bytes ? " B" : "");
        assert_contains(text, want);
        snprintf(want, sizeof want, "\"%s\":%llu", f->name, v);
        assert_contains(json, want);
        snprintf(want, sizeof want, "# TYPE %s %s\n%s %llu\n", f->metric, f->type, f->metric, v);
        assert_contains(prom, want);
    }

    /* In policies: the snapshot has each, mmt.format writes each, and each is a metric a
     * declarative rule can compare. */
    char policy[8192] = "local mmt = require 'mmt'\nlocal m = mmt.meminfo()\n"
                        "local j = mmt.format(m, 'json')\n";
    for (int i = 0; i < MMT__NFIELDS; i++) {
        const char *n = mmt__fields[i].name;
        snprintf(policy + strlen(policy), sizeof policy - strlen(policy),
                 "assert(type(m.%s) == 'number', 'snapshot: %s')\n"
                 "assert(j:find('\"%s\":', 1, true), 'format: %s')\n"
                 "mmt.rule { name = 'r_%s', metric = '%s', above = 1e300, fire = function() end }\n",
                 n, n, n, n, n, n);
    }
    char path[256];
    test_path(path, sizeof path, "fields.lua");
    write_in_place(path, policy);
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    if (mmt_policy_load(p, path) != 0) fail_msg("%s", mmt_policy_error(p));
    mmt_policy_free(p);
    free_log(log);

    /* mmt-run's summary: each field for the process (in_use as the one at exit). Not in a
     * sanitizer build, whose preload library cannot enter a program without its runtime. */
    if (MMT_TEST_SANITIZED) return;
    char exe[PATH_MAX], cmd[PATH_MAX + 256], out[8192];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(len > 0);
    exe[len] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(cmd, sizeof cmd, "'%s/mmt-run' --report json --out '%s/summary.json' -- true", exe,
             test_dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/summary.json", test_dir);
    read_file(path, out, sizeof out);
    const char *process = strstr(out, "\"processes\":[");
    assert_non_null(process);
    for (int i = 0; i < MMT__NFIELDS; i++) {
        snprintf(want, sizeof want, "\"%s\":", i == MMT__FIELD_in_use ? "in_use_at_exit"
                                                                      : mmt__fields[i].name);
        assert_contains(process, want);
    }
}

/* ---- Tags in the formats ------------------------------------------------------------------ */

/* mmt_meminfo_write into a file of the test directory, read back whole. */
static void write_format(int format, char *out, size_t len)
{
    char path[256];
    test_path(path, sizeof path, "written.txt");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(mmt_meminfo_write(f, format), 0);
    assert_int_equal(fclose(f), 0);
    read_file(path, out, len);
}

/* Without tags, the counters as before; then the machine's figures, where it has any. */
static void test_export_program_without_tags_gets_the_counters_then_the_machine(void **state)
{
    (void)state;
    assert_int_equal(mmt__tag_count(), 1); /* this test runs before any other makes one */
    mmt_machine_t machine;
    unsigned parts = (unsigned)mmt_machine_read(&machine, MMT_MACHINE_ALL);
    assert_true(parts & MMT_MACHINE_SYSTEM); /* /proc/meminfo, at least */
    const int formats[] = {MMT_FORMAT_TEXT, MMT_FORMAT_JSON, MMT_FORMAT_PROMETHEUS};
    for (size_t i = 0; i < 3; i++) {
        char written[16384], expected[4096];
        write_format(formats[i], written, sizeof written);
        mmt_meminfo_t m = meminfo_now();
        size_t n = (size_t)mmt__format(expected, sizeof expected, &m, NULL, formats[i]);
        if (formats[i] == MMT_FORMAT_JSON) n -= 2; /* "}\n": the machine's object comes first */
        if (strncmp(written, expected, n) != 0)
            fail_msg("expected the counters as before:\n%s\nin:\n%s", expected, written);
        const char *rest = written + n;
        assert_null(strstr(written, "tag"));
        if (formats[i] == MMT_FORMAT_TEXT) {
            /* One line a part: cgroup, psi, system, in that order. */
            const char *starts[] = {"cgroup v", "psi ", "system: total "};
            const unsigned bits[] = {MMT_MACHINE_CGROUP, MMT_MACHINE_PSI, MMT_MACHINE_SYSTEM};
            for (int k = 0; k < 3; k++) {
                if (!(parts & bits[k])) continue;
                if (strncmp(rest, starts[k], strlen(starts[k])) != 0)
                    fail_msg("expected a line starting \"%s\" at:\n%s", starts[k], rest);
                rest = strchr(rest, '\n') + 1;
            }
            assert_string_equal(rest, "");
        } else if (formats[i] == MMT_FORMAT_JSON) {
            assert_int_equal(strncmp(rest, ",\"machine\":{", 12), 0);
            assert_contains(rest, "\"system\":{\"total\":");
        } else {
            assert_contains(rest, "# TYPE mmt_system_memory_total_bytes gauge\n");
            if (parts & MMT_MACHINE_CGROUP) assert_contains(rest, "# TYPE mmt_cgroup_limit_bytes gauge\n");
            if (parts & MMT_MACHINE_PSI) assert_contains(rest, "\nmmt_psi_some_avg10 ");
        }
    }
}

/* The machine's figures in each format, from a recorded cgroup v2 tree whose every figure
 * is known: exact, and parsed by Python's json and the Prometheus client. */
static void test_export_machine_figures_in_each_format(void **state)
{
    (void)state;
    mmt_machine_t mm;
    assert_int_equal(mmt__machine_read_at(tree_path("tests/data/machine/v2-service"), &mm,
                                          MMT_MACHINE_ALL),
                     MMT_MACHINE_ALL);
    char text[8192], json[8192], prom[16384], out[8192];
    mmt__format_tags(text, sizeof text, &sample, NULL, NULL, 0, &mm, MMT_FORMAT_TEXT);
    mmt__format_tags(json, sizeof json, &sample, NULL, NULL, 0, &mm, MMT_FORMAT_JSON);
    mmt__format_tags(prom, sizeof prom, &sample, NULL, NULL, 0, &mm, MMT_FORMAT_PROMETHEUS);
    char want[2048];
    snprintf(want, sizeof want,
             "\ncgroup v2 %s: current 73400320 B, max none, high 67108864 B, limit 536870912 B, "
             "events high 17, max 2, oom 1, oom_kill 1\n"
             "psi %s/memory.pressure: some avg10 1.50%%, avg60 0.75%%, avg300 0.10%%, total "
             "123456 us; full avg10 0.50%%, avg60 0.25%%, avg300 0.05%%, total 65432 us\n"
             "system: total 8241250304 B, available 5839192064 B\n",
             mm.cgroup.path, mm.cgroup.path);
    assert_contains(text, want);
    python("import sys, json\n"
           "d = json.load(sys.stdin)[\"machine\"]\n"
           "c, p, s = d[\"cgroup\"], d[\"psi\"], d[\"system\"]\n"
           "print(c[\"version\"], c[\"current\"], c[\"max\"], c[\"high\"], c[\"limit\"], "
           "sorted(c[\"events\"].items()), c[\"path\"].endswith(\"app.service\"))\n"
           "print(p[\"some10\"], p[\"full300\"], p[\"some_total\"], p[\"full_total\"], "
           "p[\"source\"].endswith(\"memory.pressure\"))\n"
           "print(s[\"total\"], s[\"available\"])\n",
           json, out, sizeof out);
    assert_contains(out, "2 73400320 None 67108864 536870912 [('high', 17), ('max', 2), "
                         "('oom', 1), ('oom_kill', 1)] True\n");
    assert_contains(out, "1.5 0.05 123456 65432 True\n");
    assert_contains(out, "8241250304 5839192064\n");
    python(parse_prometheus, prom, out, sizeof out);
    assert_contains(out, "gauge mmt_cgroup_current_bytes 73400320.0\n");
    assert_contains(out, "gauge mmt_cgroup_max_bytes inf\n");
    assert_contains(out, "gauge mmt_cgroup_high_bytes 67108864.0\n");
    assert_contains(out, "gauge mmt_cgroup_limit_bytes 536870912.0\n");
    assert_contains(out, "counter mmt_cgroup_events_total 17.0\n");
    assert_contains(out, "counter mmt_cgroup_events_total 1.0\n");
    assert_contains(prom, "mmt_cgroup_events_total{event=\"oom_kill\"} 1\n");
    assert_contains(out, "gauge mmt_psi_some_avg10 1.5\n");
    assert_contains(out, "gauge mmt_psi_some_avg60 0.75\n");
    assert_contains(out, "gauge mmt_psi_full_avg300 0.05\n");
    assert_contains(out, "counter mmt_psi_some_stall_seconds_total 0.123456\n");
    assert_contains(out, "counter mmt_psi_full_stall_seconds_total 0.065432\n");
    assert_contains(out, "gauge mmt_system_memory_total_bytes 8241250304.0\n");
    assert_contains(out, "gauge mmt_system_memory_available_bytes 5839192064.0\n");

    /* A machine with none of it adds nothing; a cgroup alone, the cgroup alone. */
    mmt_machine_t none = {0};
    char bare[4096], plain[4096];
    mmt__format(plain, sizeof plain, &sample, NULL, MMT_FORMAT_JSON);
    mmt__format_tags(bare, sizeof bare, &sample, NULL, NULL, 0, &none, MMT_FORMAT_JSON);
    assert_string_equal(bare, plain);
    mmt_machine_t cg_only = {.cgroup = mm.cgroup};
    mmt__format_tags(prom, sizeof prom, &sample, NULL, NULL, 0, &cg_only, MMT_FORMAT_PROMETHEUS);
    assert_contains(prom, "mmt_cgroup_current_bytes 73400320\n");
    assert_null(strstr(prom, "mmt_psi"));
    assert_null(strstr(prom, "mmt_system"));
}

/* The tags of the test below, by index: their paths as Python spells them, and the bytes
 * they were made of. q holds a quote, a backslash and a newline; bad, bytes that are not
 * UTF-8 (two maximal invalid subparts: two U+FFFD); ctl, control characters. "ord.x" is
 * made before "ord" and "ord/sub", and comes after them: a tag's subtree comes before its
 * next sibling, whatever the order they were made in. */
static const char python_tags[] =
    "q = \"exp\" + chr(34) + \"q\" + chr(92) + \"b\" + chr(10) + \"n\"\n"
    "known = [q, q + \"/kid\", \"exp-bad\" + chr(0xfffd) * 2, \"exp.ctl\" + chr(1) + chr(13) + chr(9),\n"
    "         \"ord\", \"ord/sub\", \"ord.x\"]\n";

/* Sizes in each: q's own 1000 and kid's 500, bad 300, ctl 7, ord's 40 of sub, ord.x 9. */
static void *made_blocks[8];
static void make_export_tags(void)
{
    if (made_blocks[0]) return;
    int q = mmt_tag_new("exp\"q\\b\nn", MMT_TAG_ROOT);
    int kid = mmt_tag_new("kid", (mmt_tag_t)q);
    int bad = mmt_tag_new("exp-bad\xff\xfe", MMT_TAG_ROOT);
    int ctl = mmt_tag_new("exp.ctl\x01\r\t", MMT_TAG_ROOT);
    int ordx = mmt_tag_new("ord.x", MMT_TAG_ROOT);
    int ord = mmt_tag_new("ord", MMT_TAG_ROOT);
    int sub = mmt_tag_new("sub", (mmt_tag_t)ord);
    assert_true(q > 0 && kid > 0 && bad > 0 && ctl > 0 && ordx > 0 && ord > 0 && sub > 0);
    made_blocks[0] = mmt_malloc_in((mmt_tag_t)q, 1000);
    made_blocks[1] = mmt_malloc_in((mmt_tag_t)kid, 500);
    made_blocks[2] = mmt_malloc_in((mmt_tag_t)bad, 300);
    made_blocks[3] = mmt_malloc_in((mmt_tag_t)ctl, 7);
    made_blocks[4] = mmt_malloc_in((mmt_tag_t)sub, 40);
    made_blocks[5] = mmt_malloc_in((mmt_tag_t)ordx, 9);
}

static void test_export_tags_in_json_parse_with_pythons_json_module(void **state)
{
    (void)state;
    make_export_tags();
    char written[16384], out[4096], program[2048];
    write_format(MMT_FORMAT_JSON, written, sizeof written);
    /* Decoded strictly: bytes that are not UTF-8 would fail here, not pass as escapes. */
    snprintf(program, sizeof program,
             "import sys, json\n%s"
             "text = sys.stdin.buffer.read().decode(\"utf-8\")\n"
             "d = json.loads(text)\n"
             "t = d[\"tags\"]\n"
             "print(\"order\", [known.index(k) for k in t if k in known])\n"
             "for k in t:\n"
             "    if k in known: print(\"tag\", known.index(k), t[k][\"in_use\"], t[k][\"allocations\"],\n"
             "                         t[k][\"allocated\"] - t[k][\"freed\"] == t[k][\"in_use\"])\n"
             "print(\"fields\", sorted(t[q]) == sorted(k for k in d if k not in (\"tags\", \"machine\")))\n"
             "print(\"lines\", text.count(chr(10)))\n",
             python_tags);
    python(program, written, out, sizeof out);
    assert_contains(out, "order [0, 1, 2, 3, 4, 5, 6]\n");
    assert_contains(out, "tag 0 1500 2 True\n");
    assert_contains(out, "tag 1 500 1 True\n");
    assert_contains(out, "tag 2 300 1 True\n");
    assert_contains(out, "tag 3 7 1 True\n");
    assert_contains(out, "tag 4 40 1 True\n");
    assert_contains(out, "tag 5 40 1 True\n");
    assert_contains(out, "tag 6 9 1 True\n");
    assert_contains(out, "fields True\n");
    assert_contains(out, "lines 1\n"); /* still one line */
}

static void test_export_tags_in_prometheus_parse_with_the_official_client(void **state)
{
    (void)state;
    make_export_tags();
    char written[32768], out[16384], program[2048];
    write_format(MMT_FORMAT_PROMETHEUS, written, sizeof written);
    snprintf(program, sizeof program,
             "import sys\n"
             "from prometheus_client.parser import text_string_to_metric_families as parse\n%s"
             "for f in parse(sys.stdin.buffer.read().decode(\"utf-8\")):\n"
             "    for s in f.samples:\n"
             "        tag = s.labels.get(\"tag\")\n"
             "        if tag is None: print(f.type, s.name, \"-\", s.value)\n"
             "        elif tag in known: print(f.type, s.name, known.index(tag), int(s.value))\n",
             python_tags);
    python(program, written, out, sizeof out);
    /* Every field, for the process and per tag. */
    for (int i = 0; i < MMT__NFIELDS; i++) {
        const mmt__field_t *f = &mmt__fields[i];
        char want[256];
        snprintf(want, sizeof want, "%s %s - ", f->type, f->metric);
        assert_contains(out, want);
        snprintf(want, sizeof want, "%s %s 0 ", f->type, f->tag_metric);
        assert_contains(out, want);
        snprintf(want, sizeof want, "# HELP %s ", f->tag_metric);
        assert_contains(written, want);
    }
    assert_contains(out, "gauge mmt_tag_in_use_bytes 0 1500\n");
    assert_contains(out, "gauge mmt_tag_in_use_bytes 1 500\n");
    assert_contains(out, "gauge mmt_tag_in_use_bytes 2 300\n");
    assert_contains(out, "gauge mmt_tag_in_use_bytes 3 7\n");
    assert_contains(out, "gauge mmt_tag_peak_bytes 0 1500\n");
    assert_contains(out, "counter mmt_tag_allocated_bytes_total 4 40\n");
    assert_contains(out, "counter mmt_tag_allocations_total 0 2\n");
    assert_contains(out, "counter mmt_tag_frees_total 6 0\n");
    /* The three escapes the exposition format has, written as it spells them. */
    assert_contains(written, "mmt_tag_in_use_bytes{tag=\"exp\\\"q\\\\b\\nn\"} 1500\n");
}

static void test_export_tags_in_text_are_a_tree_one_line_each(void **state)
{
    (void)state;
    make_export_tags();
    char written[16384];
    write_format(MMT_FORMAT_TEXT, written, sizeof written);
    mmt_meminfo_t m = meminfo_now();
    char first[1024];
    mmt__format(first, sizeof first, &m, NULL, MMT_FORMAT_TEXT);
    assert_int_equal(strncmp(written, first, strlen(first)), 0); /* the process's line first */
    const char *want[] = {
        "\n  exp\"q\\\\b\\nn: allocated 1500 B, freed 0 B, in use 1500 B, peak 1500 B, "
        "allocations 2, frees 0, reallocs 0\n"
        "    kid: allocated 500 B, freed 0 B, in use 500 B, peak 500 B, allocations 1, frees 0, "
        "reallocs 0\n"
        "  exp-bad\\xff\\xfe: allocated 300 B, ",
        "\n  exp.ctl\\x01\\r\\t: allocated 7 B, ",
        "\n  ord: allocated 40 B, ",
        "\n    sub: allocated 40 B, ",
        "\n  ord.x: allocated 9 B, ",
    };
    const char *at = written;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *found = strstr(at, want[i]);
        if (!found) fail_msg("expected \"%s\" after offset %zu in:\n%s", want[i],
                             (size_t)(at - written), written);
        at = found + 1;
    }
}

static void test_export_tag_paths_order_as_the_tree(void **state)
{
    (void)state;
    /* The end of a path first, then '/', then the other bytes. */
    const char *in_order[] = {"a", "a/b", "a/b/c", "a/b.", "a!", "a.b", "a0", "b"};
    size_t n = sizeof in_order / sizeof in_order[0];
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            int c = mmt__tag_path_compare(in_order[i], strlen(in_order[i]), in_order[j],
                                          strlen(in_order[j]));
            if ((i < j && c >= 0) || (i > j && c <= 0) || (i == j && c != 0))
                fail_msg("\"%s\" against \"%s\": %d", in_order[i], in_order[j], c);
        }
    }
    /* A byte above 0x7f sorts after ASCII, not before (as a signed char would). */
    assert_true(mmt__tag_path_compare("\xff", 1, "z", 1) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_program_without_tags_gets_the_counters_then_the_machine),
        cmocka_unit_test(test_export_machine_figures_in_each_format),
        cmocka_unit_test(test_export_text_and_json_are_exact),
        cmocka_unit_test(test_export_prometheus_parses_with_the_official_client),
        cmocka_unit_test(test_export_meminfo_write_gives_the_current_counters),
        cmocka_unit_test(test_export_policies_format_snapshots),
        cmocka_unit_test(test_export_format_refuses_psi_out_of_range),
        cmocka_unit_test(test_export_every_listed_field_reaches_every_output),
        cmocka_unit_test(test_export_tag_paths_order_as_the_tree),
        cmocka_unit_test(test_export_tags_in_json_parse_with_pythons_json_module),
        cmocka_unit_test(test_export_tags_in_prometheus_parse_with_the_official_client),
        cmocka_unit_test(test_export_tags_in_text_are_a_tree_one_line_each),
    };
    return cmocka_run_group_tests_name("export", tests, make_test_dir, remove_test_dir);
}

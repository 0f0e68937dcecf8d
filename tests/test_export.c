/*
 * Exporting the counters: text, JSON and the Prometheus exposition format, from C
 * (mmt_meminfo_write) and from policies (mmt.format). The Prometheus text is parsed with
 * the official Python client's parser, and the JSON with Python's json module.
 */
#include <limits.h>

#include "export.h"
#include "fields.h"
#include "policyutil.h"

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
    char cmd[2048];
    /* Debian's python3, where python3-prometheus-client installs; another python3 may come
     * first on PATH. */
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c '%s' < '%s'", program, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    if (pclose(p) != 0) fail_msg("python failed on:\n%s\nwith output:\n%s", input, out);
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
                         "mmt.log('info', 'PROM %s', mmt.format(m, 'prometheus'))\n"
                         "mmt.log('info', 'TEXT %s', mmt.format(m))\n"
                         "local ok, err = pcall(mmt.format, m, 'xml')\n"
                         "mmt.log('info', 'BAD %s', err)\n");
    assert_int_equal(mmt_policy_load(p, path), 0);
    char json[2048] = "", prom[4096] = "", out[4096];
    pthread_mutex_lock(&log->lock);
    for (int i = 0; i < log->count; i++) {
        if (strncmp(log->lines[i], "JSON ", 5) == 0) snprintf(json, sizeof json, "%s", log->lines[i] + 5);
        if (strncmp(log->lines[i], "PROM ", 5) == 0) snprintf(prom, sizeof prom, "%s", log->lines[i] + 5);
    }
    pthread_mutex_unlock(&log->lock);
    assert_null(strchr(prom, '\n')); /* logged as one line */
    unescape_newlines(json);
    unescape_newlines(prom);
    python("import sys, json\n"
           "d = json.load(sys.stdin)\n"
           "print(sorted(d))\n"
           "print(d[\"allocated\"] - d[\"freed\"] == d[\"in_use\"], d[\"rss\"] > 0, d[\"lua\"] > 0)\n",
           json, out, sizeof out);
    assert_contains(out, "['allocated', 'allocations', 'freed', 'frees', 'in_use', 'lua', "
                         "'peak', 'rate', 'reallocs', 'rss', 'time']");
    assert_contains(out, "True True True");
    python(parse_prometheus, prom, out, sizeof out);
    assert_contains(out, "gauge mmt_policy_vm_bytes ");
    assert_logged(log, "TEXT allocated ");
    assert_logged(log, "BAD bad argument #2 to '?' (invalid option 'xml')"); /* via pcall */
    mmt_policy_free(p);
    free_log(log);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_text_and_json_are_exact),
        cmocka_unit_test(test_export_prometheus_parses_with_the_official_client),
        cmocka_unit_test(test_export_meminfo_write_gives_the_current_counters),
        cmocka_unit_test(test_export_policies_format_snapshots),
        cmocka_unit_test(test_export_every_listed_field_reaches_every_output),
    };
    return cmocka_run_group_tests_name("export", tests, make_test_dir, remove_test_dir);
}

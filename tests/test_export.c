/*
 * Exporting the counters: text, JSON and the Prometheus exposition format, from C
 * (mmt_meminfo_write) and from policies (mmt.format). The Prometheus text is parsed with
 * the official Python client's parser, and the JSON with Python's json module.
 */
#include "export.h"
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_text_and_json_are_exact),
        cmocka_unit_test(test_export_prometheus_parses_with_the_official_client),
        cmocka_unit_test(test_export_meminfo_write_gives_the_current_counters),
        cmocka_unit_test(test_export_policies_format_snapshots),
    };
    return cmocka_run_group_tests_name("export", tests, make_test_dir, remove_test_dir);
}

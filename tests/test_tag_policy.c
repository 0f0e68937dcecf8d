/*
 * Tags in policies: declarative rules on a tag (`tag`, `tag_optional`), `when` rules and
 * tasks reading m.tags, mmt.tags(), the tags' rates, and mmt.format with tags, parsed by
 * real parsers. Real LuaJIT, real files; tags live as long as the process, so each test
 * makes tags of its own names.
 */
#include <math.h>

#include "fields.h"
#include "policyutil.h"

/* What the event function saw, in order. */
typedef struct events {
    char seen[16][64];
    int n;
} events_t;

static void record_event(const char *rule, int fired, const mmt_meminfo_t *m, void *ud)
{
    (void)m;
    events_t *e = ud;
    if (e->n >= 16) return;
    snprintf(e->seen[e->n++], sizeof e->seen[0], "%s %s", fired ? "fire" : "resolve", rule);
}

/* ---- Declarative rules on a tag ------------------------------------------------------------ */

static void test_tag_policy_rule_on_a_tag_fires_and_resolves_with_hysteresis(void **state)
{
    (void)state;
    mmt_tag_t cache = new_tag("hw-cache", MMT_TAG_ROOT);
    mmt_tag_t pages = new_tag("pages", cache);
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    events_t ev = {.n = 0};
    mmt_policy_set_event(p, record_event, &ev);
    load_text(p, "tag_hw.lua",
              "local mmt = require 'mmt'\n"
              "mmt.rule { name = 'cache-hw', metric = 'in_use', tag = 'hw-cache',\n"
              "  above = 100000, below = 50000,\n"
              "  fire = function(m) mmt.log('warn', 'FIRE %d', m.tags['hw-cache'].in_use) end,\n"
              "  resolve = function(m) mmt.log('info', 'RESOLVE %d', m.tags['hw-cache'].in_use) end }\n");

    /* The process's usage is not the tag's. */
    void *untagged = mmt_malloc(1 << 20);
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "FIRE"), 0);

    /* A descendant's blocks count in the tag's subtree. */
    void *a = mmt_malloc_in(cache, 60000);
    void *b = mmt_malloc_in(pages, 60000); /* 120000: above */
    mmt_mem_checkpoint();
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "FIRE"), 1);
    assert_logged(log, "FIRE 120000");
    mmt_free(b); /* 60000: between below and above, still firing */
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "RESOLVE"), 0);
    b = mmt_malloc_in(pages, 70000); /* above again while firing: no second fire */
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "FIRE"), 1);
    mmt_free(b);
    mmt_free(a); /* 0: under below, resolves */
    mmt_mem_checkpoint();
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "RESOLVE"), 1);
    assert_logged(log, "RESOLVE 0");
    /* With the thread's current tag, as mmt_malloc counts in it. */
    mmt_tag_t was = mmt_tag_switch(pages);
    a = mmt_malloc(100001);
    mmt_tag_switch(was);
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "FIRE"), 2);
    mmt_free(a);
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "RESOLVE"), 2);

    assert_int_equal(ev.n, 4);
    assert_string_equal(ev.seen[0], "fire cache-hw");
    assert_string_equal(ev.seen[1], "resolve cache-hw");
    mmt_free(untagged);
    mmt_policy_free(p);
    free_log(log);
}

static void test_tag_policy_rule_on_a_tag_keeps_its_state_across_a_reload(void **state)
{
    (void)state;
    mmt_tag_t tag = new_tag("reload-tag", MMT_TAG_ROOT);
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    const char *text = "local mmt = require 'mmt'\n"
                       "mmt.rule { name = 'r', metric = 'allocated', tag = 'reload-tag',\n"
                       "  above = 1000, below = 500,\n"
                       "  fire = function(m) mmt.log('warn', 'FIRE') end,\n"
                       "  resolve = function(m) mmt.log('info', 'RESOLVE') end }\n";
    load_text(p, "tag_reload.lua", text);
    void *a = mmt_malloc_in(tag, 2000);
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "FIRE"), 1);
    assert_int_equal(mmt_policy_reload(p), 0);
    mmt_mem_checkpoint();
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "FIRE"), 1); /* still firing: not again */
    mmt_free(a);
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "RESOLVE"), 0); /* allocated never goes down */
    mmt_policy_free(p);
    free_log(log);
}

static void test_tag_policy_unknown_tag_and_bad_tag_fields_are_load_errors(void **state)
{
    (void)state;
    new_tag("known", MMT_TAG_ROOT);
    const load_error_case_t cases[] = {
        {"mmt.rule { name = 'u', metric = 'in_use', tag = 'known/nope', above = 1, fire = f }",
         ":3: rule \"u\": unknown tag \"known/nope\" (no tag has that path; with tag_optional = "
         "true the rule waits for the program to make it)"},
        {"mmt.rule { name = 'u', metric = 'in_use', tag = 7, above = 1, fire = f }",
         ":3: rule \"u\": 'tag' must be a string (a tag's path, like \"cache/pages\"), not a number"},
        {"mmt.rule { name = 'u', metric = 'in_use', tag = 'known', tag_optional = 'yes',\n"
         "  above = 1, fire = f }",
         ":3: rule \"u\": 'tag_optional' must be a boolean, not a string"},
        {"mmt.rule { name = 'u', metric = 'in_use', tag_optional = true, above = 1, fire = f }",
         ":3: rule \"u\": 'tag_optional' goes with 'tag'"},
        {"mmt.rule { name = 'u', when = f, tag = 'known', fire = f }",
         ":3: rule \"u\": 'tag' goes with 'metric', not 'when'"},
        {"mmt.rule { name = 'u', metric = 'rss', tag = 'known', above = 1, fire = f }",
         ":3: rule \"u\": metric 'rss' is the process's, not a tag's"},
        {"mmt.rule { name = 'u', metric = 'in_use', tag = '', above = 1, fire = f }",
         ":3: rule \"u\": 'tag' must be a tag's path, not \"\""},
        {"mmt.rule { name = 'u', metric = 'in_use', tag = 'known\\0x', above = 1, fire = f }",
         ":3: rule \"u\": unknown tag \"known\""},
    };
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    const char *path = policy_path("tag_fields.lua");
    expect_load_errors(p, path, cases, sizeof cases / sizeof cases[0]);
    mmt_policy_free(p);
    free_log(log);
}

static void test_tag_policy_optional_tag_rule_holds_once_the_tag_is_made(void **state)
{
    (void)state;
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    load_text(p, "tag_later.lua",
              "local mmt = require 'mmt'\n"
              "mmt.rule { name = 'later', metric = 'in_use', tag = 'later/parser',\n"
              "  tag_optional = true, above = 4000,\n"
              "  fire = function(m) mmt.log('warn', 'FIRE %d', m.tags['later/parser'].in_use) end,\n"
              "  resolve = function(m) mmt.log('info', 'RESOLVE') end }\n"
              "mmt.rule { name = 'never', metric = 'in_use', tag = 'later/other',\n"
              "  tag_optional = true, above = -1,\n" /* holds whenever the tag exists */
              "  fire = function(m) mmt.log('warn', 'NEVER') end }\n");
    void *untagged = mmt_malloc(10000);
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "FIRE"), 0);
    mmt_tag_t later = new_tag("later", MMT_TAG_ROOT);
    mmt_mem_checkpoint(); /* the parent alone is not the tag */
    assert_int_equal(log_count(log, "FIRE"), 0);
    mmt_tag_t parser = new_tag("parser", later);
    mmt_mem_checkpoint(); /* made, but under the threshold */
    assert_int_equal(log_count(log, "FIRE"), 0);
    void *a = mmt_malloc_in(parser, 5000);
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "FIRE 5000"), 1);
    mmt_free(a);
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "RESOLVE"), 1);
    assert_int_equal(log_count(log, "NEVER"), 0); /* later/other was never made */
    mmt_free(untagged);
    mmt_policy_free(p);
    free_log(log);
}

/* ---- m.tags and mmt.tags() ----------------------------------------------------------------- */

static void test_tag_policy_when_rule_reads_m_tags(void **state)
{
    (void)state;
    mmt_tag_t outer = new_tag("w-outer", MMT_TAG_ROOT);
    mmt_tag_t inner = new_tag("inner", outer);
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    char text[2048];
    /* Every field of the list is in each entry; the root is not in m.tags; the table is
     * read once and kept for the evaluation (the second rule sees the first's). */
    snprintf(text, sizeof text,
             "local mmt = require 'mmt'\n"
             "local fields = {%s}\n"
             "local seen\n"
             "mmt.rule { name = 'check', when = function(m)\n"
             "    seen = m.tags\n"
             "    local e = m.tags['w-outer/inner']\n"
             "    for _, f in ipairs(fields) do assert(type(e[f]) == 'number', f) end\n"
             "    assert(m.tags[''] == nil and m.tags['w-outer'] ~= nil)\n"
             "    return false end, fire = function() end }\n"
             "mmt.rule { name = 'inner', when = function(m)\n"
             "    assert(rawget(m, 'tags') == seen, 'read again')\n"
             "    local t = m.tags['w-outer/inner']\n"
             "    return t.in_use > 3000 and m.tags['w-outer'].allocations >= 2 end,\n"
             "  fire = function(m) mmt.log('warn', 'FIRE %%d %%d', m.tags['w-outer/inner'].in_use,\n"
             "    m.tags['w-outer'].in_use) end,\n"
             "  resolve = function(m) mmt.log('info', 'RESOLVE %%d', m.tags['w-outer/inner'].in_use) end }\n",
             "'allocated', 'freed', 'in_use', 'peak', 'allocations', 'frees', 'reallocs', 'rate'");
    load_text(p, "tag_when.lua", text);
    void *a = mmt_malloc_in(outer, 100);
    void *b = mmt_malloc_in(inner, 2000);
    mmt_mem_checkpoint();
    assert_int_equal(log_count(log, "FIRE"), 0);
    b = mmt_realloc(b, 4000); /* a realloc counts in the block's tag */
    mmt_mem_checkpoint();
    assert_logged(log, "FIRE 4000 4100");
    mmt_free(b);
    mmt_mem_checkpoint();
    assert_logged(log, "RESOLVE 0");
    mmt_free(a);
    assert_int_equal(log_level_count(log, MMT_LOG_ERROR), 0);
    mmt_policy_free(p);
    free_log(log);
}

static void test_tag_policy_tags_lists_every_path_in_tree_order(void **state)
{
    (void)state;
    /* Made out of order: the list is the tree's, siblings by name. */
    mmt_tag_t z = new_tag("list-z", MMT_TAG_ROOT);
    mmt_tag_t a = new_tag("list-a", MMT_TAG_ROOT);
    new_tag("two", a);
    new_tag("one", a);
    new_tag("deep", z);
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 10};
    mmt_policy_t *p = new_engine(&o, log);
    load_text(p, "tag_list.lua",
              "local mmt = require 'mmt'\n"
              "local function only(list)\n"
              "  local out = {}\n"
              "  for _, path in ipairs(list) do\n"
              "    if path:find('^list%-') then out[#out + 1] = path end\n"
              "  end\n"
              "  return table.concat(out, '|')\n"
              "end\n"
              "mmt.log('info', 'LIST %s', only(mmt.tags()))\n"
              "local n = #mmt.tags()\n"
              "mmt.every(0.01, function(m)\n"
              "  local now = mmt.tags()\n"
              "  if #now > n then\n"
              "    n = #now\n"
              "    local found = 0\n"
              "    for path in pairs(m.tags) do if path:find('^list%-') then found = found + 1 end end\n"
              "    mmt.log('info', 'NOW %s (%d in m.tags)', only(now), found)\n"
              "  end\n"
              "end)\n");
    assert_logged(log, "LIST list-a|list-a/one|list-a/two|list-z|list-z/deep");
    new_tag("list-a.b", MMT_TAG_ROOT); /* after list-a's subtree: '/' sorts first */
    assert_true(wait_for_log(log, "NOW", 5000));
    assert_logged(log, "NOW list-a|list-a/one|list-a/two|list-a.b|list-z|list-z/deep (6 in m.tags)");
    mmt_policy_free(p);
    free_log(log);
}

/* ---- The tags' rates ------------------------------------------------------------------------ */

/* The rates a task logged ("RATE <value>") between two times, sorted. */
static int logged_rates(captured_log_t *log, double from, double to, double *out, int max)
{
    int n = 0;
    pthread_mutex_lock(&log->lock);
    for (int i = 0; i < log->count && n < max; i++)
        if (strncmp(log->lines[i], "RATE ", 5) == 0 && log->times[i] >= from && log->times[i] <= to)
            out[n++] = atof(log->lines[i] + 5);
    pthread_mutex_unlock(&log->lock);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && out[j - 1] > out[j]; j--) {
            double t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return n;
}

enum { RATE_CHUNK = 8192, RATE_BLOCKS = 300 };
#define RATE_STEP 0.004 /* seconds between blocks: 2.05 MB/s */

static void test_tag_policy_tag_rate_follows_steady_growth_and_shrinking(void **state)
{
    (void)state;
    if (under_valgrind()) skip(); /* timing: see test_rate.c */
    mmt_tag_t tag = new_tag("rate-tag", MMT_TAG_ROOT);
    captured_log_t *log = new_log();
    mmt_policy_options_t o = {.interval_ms = 200}; /* the rate's window */
    mmt_policy_t *p = new_engine(&o, log);
    const double rate = RATE_CHUNK / RATE_STEP;
    char text[1024];
    snprintf(text, sizeof text,
             "local mmt = require 'mmt'\n"
             "mmt.every(0.05, function(m) mmt.log('info', 'RATE %%.0f', m.tags['rate-tag'].rate) end)\n"
             "mmt.rule { name = 'growing', metric = 'rate', tag = 'rate-tag',\n"
             "  above = %.0f, below = %.0f,\n"
             "  fire = function(m) mmt.log('warn', 'GROWING %%.0f', m.tags['rate-tag'].rate) end,\n"
             "  resolve = function(m) mmt.log('info', 'SLOWER %%.0f', m.tags['rate-tag'].rate) end }\n",
             rate / 2, rate / 4);
    load_text(p, "tag_rate.lua", text);
    sleep_ms(300); /* the untouched tag: rate 0 */

    /* Up at a steady pace, by the clock, then down at the same pace. */
    static void *blocks[RATE_BLOCKS];
    double start = now_seconds();
    for (int i = 0; i < RATE_BLOCKS; i++) {
        blocks[i] = mmt_malloc_in(tag, RATE_CHUNK);
        double next = start + (i + 1) * RATE_STEP, now = now_seconds();
        if (next > now) sleep_ms((unsigned)((next - now) * 1000));
    }
    double turn = now_seconds();
    for (int i = RATE_BLOCKS - 1; i >= 0; i--) {
        mmt_free(blocks[i]);
        double next = turn + (RATE_BLOCKS - i) * RATE_STEP, now = now_seconds();
        if (next > now) sleep_ms((unsigned)((next - now) * 1000));
    }
    double end = now_seconds();
    sleep_ms(100);
    mmt_policy_free(p);

    /* Half a window after each change of direction, every rate has its sign and the
     * middle one is the pace within a third (a loaded machine delays steps, and a window
     * holds about 50 of them). */
    double up[256], down[256], before[256];
    int nb = logged_rates(log, start - 0.25, start - 0.01, before, 256);
    int nu = logged_rates(log, start + 0.3, turn, up, 256);
    int nd = logged_rates(log, turn + 0.3, end, down, 256);
    fprintf(stderr, "  pace %.0f B/s; %d rates growing (%.0f to %.0f, middle %.0f), %d shrinking "
            "(%.0f to %.0f, middle %.0f)\n", rate, nu, nu ? up[0] : 0, nu ? up[nu - 1] : 0,
            nu ? up[nu / 2] : 0, nd, nd ? down[0] : 0, nd ? down[nd - 1] : 0,
            nd ? down[nd / 2] : 0);
    assert_true(nb >= 1 && before[0] == 0 && before[nb - 1] == 0);
    assert_true(nu >= 5 && nd >= 5);
    assert_true(up[0] > 0);
    assert_true(down[nd - 1] < 0);
    assert_true(up[nu / 2] > rate / 1.5 && up[nu / 2] < rate * 1.5);
    assert_true(-down[nd / 2] > rate / 1.5 && -down[nd / 2] < rate * 1.5);
    /* The rule on the tag's rate saw the same figure: it fired growing, resolved shrinking. */
    assert_int_equal(log_count(log, "GROWING"), 1);
    assert_int_equal(log_count(log, "SLOWER"), 1);
    assert_true(log_time(log, "GROWING") < turn && log_time(log, "SLOWER") > turn);
    free_log(log);
}

static void test_tag_policy_rates_of_at_most_256_tags_are_followed(void **state)
{
    (void)state;
    mmt_tag_t parent = new_tag("many", MMT_TAG_ROOT);
    for (int i = 0; i < 300; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%03d", i);
        new_tag(name, parent);
    }
    captured_log_t *log = new_log();
    mmt_policy_t *p = new_engine(NULL, log);
    load_text(p, "tag_many.lua",
              "local mmt = require 'mmt'\n"
              "mmt.rule { name = 'all', when = function(m)\n"
              "    local numbers, nans = 0, 0\n"
              "    for path, t in pairs(m.tags) do\n"
              "      if path:find('^many/') then\n"
              "        if t.rate ~= t.rate then nans = nans + 1 else numbers = numbers + 1 end\n"
              "      end\n"
              "    end\n"
              "    mmt.log('info', 'RATES %d numbers, %d nan', numbers, nans)\n"
              "    return false end, fire = function() end }\n");
    mmt_mem_checkpoint();
    mmt_mem_checkpoint();
    /* Those followed first stay followed; the rest are nan, and that is said once. */
    assert_true(log_count(log, "RATES ") == 2);
    pthread_mutex_lock(&log->lock);
    int numbers = -1, nans = -1;
    for (int i = 0; i < log->count; i++)
        if (sscanf(log->lines[i], "RATES %d numbers, %d nan", &numbers, &nans) == 2) break;
    pthread_mutex_unlock(&log->lock);
    assert_int_equal(numbers, 256);
    assert_int_equal(nans, 300 - 256);
    assert_int_equal(log_count(log, "its rate is nan: an engine follows the rates of 256 tags "
                                    "at most"), 1);
    mmt_policy_free(p);
    free_log(log);
}

/* ---- mmt.format with tags ------------------------------------------------------------------ */

static void test_tag_policy_format_writes_the_tags_for_real_parsers(void **state)
{
    (void)state;
    /* A quote, a backslash and a newline; its child; and bytes that are not UTF-8. */
    mmt_tag_t odd = new_tag("fmt\"q\\b\nn", MMT_TAG_ROOT);
    mmt_tag_t kid = new_tag("kid", odd);
    mmt_tag_t bad = new_tag("fmt-bad\xc3", MMT_TAG_ROOT);
    void *a = mmt_malloc_in(odd, 300), *b = mmt_malloc_in(kid, 200), *c = mmt_malloc_in(bad, 11);
    captured_log_t *log = new_log();
    /* io, to write the text out whole; under valgrind, time for it. */
    mmt_policy_options_t o = {.unsafe = 1, .budget_ms = under_valgrind() ? 10000 : 0};
    mmt_policy_t *p = new_engine(&o, log);
    char text[2048];
    snprintf(text, sizeof text,
             "local mmt = require 'mmt'\n"
             "local function write(name, s)\n"
             "  local f = assert(io.open('%s/' .. name, 'wb')) f:write(s) f:close()\n"
             "end\n"
             "mmt.rule { name = 'w', when = function(m)\n"
             "    for _, f in ipairs({'text', 'json', 'prometheus'}) do\n"
             "      write('out.' .. f, mmt.format(m, f))\n"
             "    end\n"
             "    return false end, fire = function() end }\n",
             test_dir);
    load_text(p, "tag_format.lua", text);
    mmt_mem_checkpoint(); /* an evaluation's snapshot, its tags read by mmt.format */
    char path[256], out[8192], program[2048];
    const char *names = "q = \"fmt\" + chr(34) + \"q\" + chr(92) + \"b\" + chr(10) + \"n\"\n"
                        "bad = \"fmt-bad\" + chr(0xfffd)\n";

    snprintf(program, sizeof program,
             "import sys, json\n%s"
             "d = json.loads(sys.stdin.buffer.read().decode(\"utf-8\"))\n"
             "t = d[\"tags\"]\n"
             "print(t[q][\"in_use\"], t[q + \"/kid\"][\"in_use\"], t[bad][\"allocations\"],\n"
             "      \"rate\" in d, \"rate\" in t[q], list(t).index(q + \"/kid\") == list(t).index(q) + 1)\n",
             names);
    python_on_file(program, test_path(path, sizeof path, "out.json"), out, sizeof out);
    assert_string_equal(out, "500 200 1 True False True\n");

    snprintf(program, sizeof program,
             "import sys\n"
             "from prometheus_client.parser import text_string_to_metric_families as parse\n%s"
             "for f in parse(sys.stdin.buffer.read().decode(\"utf-8\")):\n"
             "    for s in f.samples:\n"
             "        tag = s.labels.get(\"tag\")\n"
             "        if tag in (q, q + \"/kid\", bad):\n"
             "            print(s.name, [q, q + \"/kid\", bad].index(tag), int(s.value))\n"
             "        if s.name == \"mmt_in_use_rate_bytes_per_second\": print(s.name)\n",
             names);
    python_on_file(program, test_path(path, sizeof path, "out.prometheus"), out, sizeof out);
    assert_contains(out, "mmt_tag_in_use_bytes 0 500\n");
    assert_contains(out, "mmt_tag_in_use_bytes 1 200\n");
    assert_contains(out, "mmt_tag_allocations_total 2 1\n");
    assert_contains(out, "mmt_tag_peak_bytes 0 500\n");
    assert_contains(out, "mmt_in_use_rate_bytes_per_second\n");

    read_file(test_path(path, sizeof path, "out.text"), out, sizeof out);
    assert_contains(out, " B/s, rss ");
    assert_contains(out, "\n  fmt\"q\\\\b\\nn: allocated 500 B, freed 0 B, in use 500 B, peak 500 B, "
                         "allocations 2, frees 0, reallocs 0\n    kid: allocated 200 B, ");
    assert_contains(out, "\n  fmt-bad\\xc3: allocated 11 B, ");

    assert_int_equal(log_level_count(log, MMT_LOG_ERROR), 0);
    mmt_policy_free(p);
    free_log(log);
    mmt_free(a);
    mmt_free(b);
    mmt_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tag_policy_rule_on_a_tag_fires_and_resolves_with_hysteresis),
        cmocka_unit_test(test_tag_policy_rule_on_a_tag_keeps_its_state_across_a_reload),
        cmocka_unit_test(test_tag_policy_unknown_tag_and_bad_tag_fields_are_load_errors),
        cmocka_unit_test(test_tag_policy_optional_tag_rule_holds_once_the_tag_is_made),
        cmocka_unit_test(test_tag_policy_when_rule_reads_m_tags),
        cmocka_unit_test(test_tag_policy_tags_lists_every_path_in_tree_order),
        cmocka_unit_test(test_tag_policy_tag_rate_follows_steady_growth_and_shrinking),
        cmocka_unit_test(test_tag_policy_rates_of_at_most_256_tags_are_followed),
        cmocka_unit_test(test_tag_policy_format_writes_the_tags_for_real_parsers),
    };
    return cmocka_run_group_tests_name("tag_policy", tests, make_test_dir, remove_test_dir);
}

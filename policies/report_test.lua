-- Tests of report.lua: one info line every 10 s (a task, mmt.every(10)), no rules.
-- The task is declared at t=0 and first due at t=10; it runs at the first tick at or after
-- each due time, on a grid of 10 s (10, 20, 30, ...). Its line:
--   "<in_use> in use, peak <peak>, rss <rss>, <rate, %+.0f> B/s, <allocations - frees> live blocks"
--   mmt-policy test policies/report_test.lua
local t = require "mmt.test"

t.case {
   name = "a line every 10 s",
   policy = "report.lua",
   -- t=0..30: 1 MiB, nothing else given (rss reads 0, no allocations)
   series = { in_use = "1MiBx30" },
   expect_none = true,
   expect = {
      { at = 10, log = "info", match = "^1 MiB in use, peak 1 MiB, rss 0 B, %+0 B/s, 0 live blocks$" },
      { at = 20, log = "info", match = "^1 MiB in use" },
      { at = 30, log = "info", match = "^1 MiB in use" },
   },
}

t.case {
   name = "the line's figures: peak, rss, rate and live blocks",
   policy = "report.lua",
   -- t=0..4: 5 MiB, then t=5..25: 2 MiB + 1 KiB a second (from 2 MiB at t=5)
   series = {
      in_use = "5MiBx4 2MiB+1KiBx20",
      rss = "64MiB",                       -- one sample: repeated at every step
      allocations = "1000+10x25",          -- 1000 + 10 t
      frees = "400+5x25",                  -- 400 + 5 t
   },
   expect_none = true,
   expect = {
      -- t=10: in_use 2 MiB + 5 KiB (shown 2 MiB), peak 5 MiB (t=0..4), rate 1 KiB/s = +1024 B/s,
      -- live blocks (1000 + 100) - (400 + 50) = 650
      { at = 10, log = "info", match = "^2 MiB in use, peak 5 MiB, rss 64 MiB, %+1024 B/s, 650 live blocks$" },
      -- t=20: (1000 + 200) - (400 + 100) = 700
      { at = 20, log = "info", match = ", 700 live blocks$" },
   },
}

t.case {
   name = "a falling in_use gives a negative rate",
   policy = "report.lua",
   -- t=0..10: 100 MiB - 1 MiB a second
   series = { in_use = "100MiB-1MiBx10" },
   expect_none = true,
   expect = {
      -- t=10: 100 - 10 = 90 MiB, rate -1 MiB/s = -1048576 B/s
      { at = 10, log = "info", match = "^90 MiB in use, peak 100 MiB, rss 0 B, %-1048576 B/s" },
   },
}

t.case {
   name = "with a 3 s timer it runs at the first tick at or after each 10 s",
   policy = "report.lua",
   interval = 3,
   -- ticks at t = 3 k, k = 0..10, in_use k MiB
   series = { in_use = "0+1MiBx10" },
   expect_none = true,
   expect = {
      -- due 10: first tick 12 (k=4); rate over the 3 s window: 1 MiB / 3 s = 349525.3 B/s
      { at = 12, log = "info", match = "^4 MiB in use, peak 4 MiB, rss 0 B, %+349525 B/s" },
      { at = 21, log = "info", match = "^7 MiB in use" },    -- due 20: tick 21 (k=7), not 22
      { at = 30, log = "info", match = "^10 MiB in use" },   -- due 30: tick 30 (k=10)
   },
}

t.case {
   name = "a gap in the samples: the task runs at the first tick after it",
   policy = "report.lua",
   -- t=0..8: 2 MiB; t=9..13: no sample (no tick); t=14..23: 3 MiB
   series = { in_use = "2MiBx8 _x5 3MiBx9" },
   expect_none = true,
   expect = {
      -- due 10: no tick until 14; the rate reaches back to the last sample (t=8):
      -- 1 MiB / 6 s = 174762.7 B/s
      { at = 14, log = "info", match = "^3 MiB in use, peak 3 MiB, rss 0 B, %+174763 B/s" },
      -- due 20 (on its grid, not 14 + 10): tick 20, in_use flat
      { at = 20, log = "info", match = "^3 MiB in use, peak 3 MiB, rss 0 B, %+0 B/s" },
   },
}

t.case {
   name = "a timer slower than the period: one line per tick, no burst to catch up",
   policy = "report.lua",
   interval = 25,
   -- ticks at 0, 25, 50, 75. (A log expectation cannot say "only one line": that each tick
   -- gave one line, not one per missed period, was seen in the case's log by hand.)
   series = { in_use = "8MiBx3" },
   expect_none = true,
   expect = {
      { at = 25, log = "info", match = "^8 MiB in use" },  -- due 10: tick 25; next due 30
      { at = 50, log = "info", match = "^8 MiB in use" },  -- due 30: tick 50; next due 60
      { at = 75, log = "info", match = "^8 MiB in use" },  -- due 60: tick 75
   },
}

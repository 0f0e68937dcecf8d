-- Tests of growth.lua: rate_limit = 1 MiB/s, hold = 30 s, below = 1 B/s.
-- m.rate at a tick is in_use's change over the last interval, per second (0 at t=0, the
-- first sample). The rule holds while rate > 1 MiB/s; it fires once it has held 30 s
-- (time - since >= 30, since = the first tick it held), and resolves when rate < 1 B/s.
--   mmt-policy test policies/growth_test.lua
local t = require "mmt.test"

t.case {
   name = "30 s of growth at 2 MiB/s fires; a fall resolves it",
   policy = "growth.lua",
   -- t=0..31: 100 + 2 t MiB; t=32: 160 MiB (a fall of 2 MiB)
   series = { in_use = "100MiB+2MiBx31 160MiB" },
   expect = {
      -- rate = 2 MiB/s > 1 from t=1 (t=0 has no rate): since = 1, fires at 1 + 30 = 31
      { at = 31, fire = "sustained-growth" },
      -- in_use at t=31: 100 + 31 * 2 = 162 MiB
      { at = 31, log = "warn", match = "^memory has grown faster than 1 MiB/s for 30 s: 162 MiB in use, now %+2 MiB/s %(possible leak%)$" },
      { at = 32, resolve = "sustained-growth" },   -- rate = 160 - 162 = -2 MiB/s < 0
      { at = 32, log = "info", match = "^growth stopped: 160 MiB in use$" },
   },
}

t.case {
   name = "hold not yet met: 29 s of growth then flat does not fire",
   policy = "growth.lua",
   -- t=0..30: 100 + 2 t MiB (rising t=1..30); t=31..40: 160 MiB
   series = { in_use = "100MiB+2MiBx30 160MiBx9" },
   -- held from t=1 to t=30: 30 - 1 = 29 s < 30; t=31 rate 0 (not > 1 MiB/s) restarts the hold
   expect_none = true,
}

t.case {
   name = "the growth must be unbroken: one flat second restarts the hold",
   policy = "growth.lua",
   -- t=0..20: 100 + 2 t MiB; t=21: 140 MiB again (rate 0); t=22..52: 142 + 2 (t - 22) MiB
   series = { in_use = "100MiB+2MiBx20 140MiB 142MiB+2MiBx30" },
   expect = {
      -- held t=1..20 (19 s), broken at t=21; held again from t=22: fires at 22 + 30 = 52,
      -- not at 1 + 30 = 31; in_use then 142 + 30 * 2 = 202 MiB
      { at = 52, fire = "sustained-growth" },
      { at = 52, log = "warn", match = "202 MiB in use" },
   },
}

t.case {
   name = "the limit is strict: 1 MiB/s exactly is not growth",
   policy = "growth.lua",
   -- 100 MiB + 1 MiB every second for 60 s: rate = 1 MiB/s, not > 1 MiB/s
   series = { in_use = "100MiB+1MiBx60" },
   expect_none = true,
}

t.case {
   name = "hold is in seconds, not samples: with a 5 s interval it fires at the 8th sample",
   policy = "growth.lua",
   interval = 5,
   -- t=0,5,...,45: 100 + 10 MiB per sample = 2 MiB/s over the 5 s window
   series = { in_use = "100MiB+10MiBx9" },
   expect = {
      -- rate at t=5: (110 - 100) / 5 = 2 MiB/s > 1: since = 5; fires at 5 + 30 = 35 (sample 7,
      -- counted from 0), in_use 100 + 7 * 10 = 170 MiB
      { at = 35, fire = "sustained-growth" },
      { at = 35, log = "warn", match = "170 MiB in use, now %+2 MiB/s" },
   },
}

t.case {
   name = "growth that stops clears it: a flat in_use (rate 0) is under 1 B/s",
   policy = "growth.lua",
   -- t=0..31: 100 + 2 t MiB (fires at 31, as above); t=32..91: 162 MiB, flat for a minute
   series = { in_use = "100MiB+2MiBx31 162MiBx59" },
   expect = {
      { at = 31, fire = "sustained-growth" },
      -- rate 0 at t=32 is under 1 B/s: resolved
      { at = 32, resolve = "sustained-growth" },
      { at = 32, log = "info", match = "^growth stopped: 162 MiB in use$" },
   },
}

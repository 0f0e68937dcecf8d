-- Tests of high_water.lua: high = 256 MiB, low = 200 MiB, hold = 0.
-- The rule fires when in_use > 256 MiB (strictly), and resolves when in_use < 200 MiB
-- (strictly); between the two it keeps its state.
--   mmt-policy test policies/high_water_test.lua
local t = require "mmt.test"

t.case {
   name = "fires above 256 MiB, clears under 200 MiB",
   policy = "high_water.lua",
   -- t=0..10: 100 + 20 t MiB; t=11: 300 MiB; t=12..17: 150 MiB
   series = { in_use = "100MiB+20MiBx10 300MiB 150MiBx5" },
   expect = {
      { at = 8, fire = "high-water" },      -- 100 + 7 * 20 = 240 <= 256; 100 + 8 * 20 = 260 MiB > 256
      { at = 8, log = "warn", match = "^high%-water: 260 MiB in use, above 256 MiB %(peak 260 MiB%)$" },
      { at = 12, resolve = "high-water" },  -- 150 MiB < 200
      { at = 12, log = "info", match = "^high%-water cleared: 150 MiB in use, under 200 MiB$" },
   },
}

t.case {
   name = "hysteresis: between 200 and 256 MiB it stays firing",
   policy = "high_water.lua",
   -- t=0: 200, t=1: 300, t=2..11: 220 (200 <= 220: not cleared), t=12..13: 210, t=14: 199
   series = { in_use = "200MiB 300MiB 220MiBx9 210MiBx1 199MiB" },
   expect = {
      { at = 1, fire = "high-water" },      -- 300 MiB > 256
      { at = 14, resolve = "high-water" },  -- 199 MiB < 200; 220 and 210 are not
      { at = 14, log = "info", match = "cleared: 199 MiB in use" },
   },
}

t.case {
   name = "the marks are strict: exactly 256 MiB does not fire, exactly 200 MiB does not clear",
   policy = "high_water.lua",
   -- t=0..4: 256 MiB (not > 256); t=5: 256 MiB + 1 B fires; t=6..9: 200 MiB (not < 200);
   -- t=10: 200 MiB - 1 B = 209715199 clears
   series = { in_use = "256MiBx4 268435457 200MiBx3 209715199" },
   expect = {
      { at = 5, fire = "high-water" },      -- 268435457 = 256 * 2^20 + 1 > 256 MiB
      { at = 10, resolve = "high-water" },  -- 209715199 = 200 * 2^20 - 1 < 200 MiB
   },
}

t.case {
   name = "a single sample above the mark fires at once (hold = 0), and it fires again after clearing",
   policy = "high_water.lua",
   -- t=0..2: 100; t=3: 300; t=4..6: 100; t=7: 200, t=8: 200 + 100 = 300 (second episode); t=9: 150
   series = { in_use = "100MiBx2 300MiB 100MiBx2 200MiB+100MiBx1 150MiB" },
   expect = {
      { at = 3, fire = "high-water" },      -- 300 > 256, hold 0: no wait
      { at = 4, resolve = "high-water" },   -- 100 < 200
      { at = 8, fire = "high-water" },      -- 200 + 1 * 100 = 300 > 256 again
      { at = 9, resolve = "high-water" },   -- 150 < 200
      { at = 3, log = "warn", match = "300 MiB in use" },
      { at = 8, log = "warn", match = "300 MiB in use" },
   },
}

t.case {
   name = "the warning says the peak, which can be above in_use",
   policy = "high_water.lua",
   -- peak given on its own: the program had reached 1 GiB before the policy saw it
   series = { in_use = "100MiB 400MiB", peak = "1GiBx1" },
   expect = {
      { at = 1, fire = "high-water" },      -- 400 > 256
      { at = 1, log = "warn", match = "400 MiB in use, above 256 MiB %(peak 1 GiB%)" },
   },
}

t.case {
   name = "a gap in the samples is no tick: the state waits for the next sample",
   policy = "high_water.lua",
   interval = 10,
   -- t=0: 300 MiB; t=10..40: no sample (no tick); t=50: 100 MiB
   series = { in_use = "300MiB _x4 100MiB" },
   expect = {
      { at = 0, fire = "high-water" },      -- 300 > 256
      { at = 50, resolve = "high-water" },  -- 100 < 200, first tick after the gap: 0 + 5 * 10
   },
}

t.case {
   name = "under the mark all along: nothing happens",
   policy = "high_water.lua",
   -- 0 .. 250 MiB by 10 MiB: the highest, 0 + 25 * 10 = 250, is under 256
   series = { in_use = "0+10MiBx25" },
   expect_none = true,
}

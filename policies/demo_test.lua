-- Tests of demo.lua:
--   high-water   in_use > 24 MiB fires, < 16 MiB resolves
--   shed         tag "flows" in_use > 40 MiB fires (reclaims the flows down to 20 MiB: a
--                dry run here, which frees 0), < 30 MiB resolves (no resolve function)
--   fast-growth  rate > 30 MiB/s fires, < 15 MiB/s resolves
--   histories    tag "flows/histories" in_use > 30 MiB fires, < 20 MiB resolves
--   every 1 s    a status line (first at t=1)
-- m.rate at a tick: in_use's change over the last interval, per second (0 at t=0).
--   mmt-policy test policies/demo_test.lua
local t = require "mmt.test"

t.case {
   name = "high-water: warns above 24 MiB, clears under 16 MiB",
   policy = "demo.lua",
   -- t=0..10: 10 + 2 t MiB; t=11: 30; t=12..14: 20; t=15: 15 (rates 2, 0, -10, 0, -5 MiB/s)
   series = { in_use = "10MiB+2MiBx10 30MiB 20MiBx2 15MiB" },
   expect = {
      { at = 8, fire = "high-water" },      -- 10 + 7 * 2 = 24 is not > 24; 10 + 8 * 2 = 26 is
      { at = 8, log = "warn", match = "^high%-water: 26 MiB in use %(above 24 MiB%)$" },
      { at = 15, resolve = "high-water" },  -- 20 is not < 16; 15 is
      { at = 15, log = "info", match = "^high%-water cleared: 15 MiB in use %(under 16 MiB%)$" },
   },
}

t.case {
   name = "shed: the flows over 40 MiB are reclaimed down to 20 MiB; ready again under 30 MiB",
   policy = "demo.lua",
   series = {
      -- the process: the flows and 2 MiB more
      -- t=0..5: 22 + 5 t; t=6..8: 47; t=9..11: 37; t=12..14: 27; t=15: 15
      in_use = "22MiB+5MiBx5 47MiBx2 37MiBx2 27MiBx2 15MiB",
      tags = {
         -- t=0..5: 20 + 5 t; t=6..8: 45; t=9..11: 35; t=12..14: 25; t=15: 13
         ["flows"] = { in_use = "20MiB+5MiBx5 45MiBx2 35MiBx2 25MiBx2 13MiB" },
      },
   },
   expect = {
      { at = 1, fire = "high-water" },      -- 22 + 5 = 27 > 24
      { at = 15, resolve = "high-water" },  -- 15 < 16
      { at = 5, fire = "shed" },            -- flows 20 + 4 * 5 = 40 is not > 40; 20 + 5 * 5 = 45 is
      -- asks 45 - 20 = 25 MiB of the flows (a dry run: said, and freeing 0)
      { at = 5, log = "info", match = "demo%.lua:%d+: dry run: would reclaim 25 MiB of tag \"flows\"$" },
      { at = 5, log = "warn", match = "^shed: the flows hold 45 MiB, over 40 MiB; reclaiming freed 0 B$" },
      { at = 12, resolve = "shed" },        -- 45 and 35 are not < 30; 25 is
   },
}

t.case {
   name = "fast-growth: the rate is over the timer's interval (0.5 s here)",
   policy = "demo.lua",
   interval = 0.5,
   -- t=0: 2 MiB, t=0.5: 18 MiB, t=1..1.5: 22 MiB (never above 24 MiB: no high-water)
   series = { in_use = "2MiB 18MiB 22MiBx1" },
   expect = {
      { at = 0.5, fire = "fast-growth" },     -- (18 - 2) / 0.5 = 32 MiB/s > 30
      { at = 0.5, log = "warn", match = "^growing fast: 32 MiB/s$" },
      { at = 1, resolve = "fast-growth" },    -- (22 - 18) / 0.5 = 8 MiB/s < 15
      { at = 1, log = "info", match = "^growth slowed down$" },
   },
}

t.case {
   name = "fast-growth: 30 MiB/s exactly is not fast; between 15 and 30 MiB/s it stays firing",
   policy = "demo.lua",
   -- t=0: 0, t=1: 30, t=2: 65, t=3: 85, t=4: 105, t=5: 110 MiB
   series = { in_use = "0 30MiB 65MiB 85MiB+20MiBx1 110MiB" },
   expect = {
      { at = 1, fire = "high-water" },        -- 30 > 24 (and it never falls under 16)
      { at = 2, fire = "fast-growth" },       -- rate at t=1: 30 (not > 30); t=2: 65 - 30 = 35 > 30
      -- t=3, t=4: 20 MiB/s, not < 15: still firing
      { at = 5, resolve = "fast-growth" },    -- 110 - 105 = 5 MiB/s < 15
   },
}

t.case {
   name = "histories: the flows' packet histories over 30 MiB, cleared under 20 MiB",
   policy = "demo.lua",
   series = {
      in_use = "50MiB",                     -- one sample, repeated
      tags = {
         ["flows"] = { in_use = "38MiB" },  -- under 40 MiB: no shed
         -- t=0..5: 10 + 5 t; t=6..8: 25; t=9: 15
         ["flows/histories"] = { in_use = "10MiB+5MiBx5 25MiBx2 15MiB" },
      },
   },
   expect = {
      { at = 0, fire = "high-water" },      -- 50 > 24 from the start
      { at = 5, fire = "histories" },       -- 10 + 4 * 5 = 30 is not > 30; 10 + 5 * 5 = 35 is
      -- 35 of the 50 MiB in use: 100 * 35 / 50 = 70 %
      { at = 5, log = "warn", match = "^flow histories: 35 MiB %(above 30 MiB%), 70%% of the memory in use$" },
      { at = 9, resolve = "histories" },    -- 25 is not < 20; 15 is
      { at = 9, log = "info", match = "^flow histories back to 15 MiB$" },
      -- the status line sees the histories' figure too: 15 MiB at t=1
      { at = 1, log = "info", match = "^50 MiB in use %(histories 15 MiB%)" },
   },
}

t.case {
   name = "the status line, every second from t=1",
   policy = "demo.lua",
   -- all under every threshold: no rule fires
   series = {
      in_use = "8MiB+1MiBx3",               -- t=0..3: 8, 9, 10, 11 MiB
      peak = "12MiB",
      allocations = "5000+100x3",           -- 5000 + 100 t
      frees = "1200",
      rss = "30MiB",
   },
   expect_none = true,
   expect = {
      -- t=1: 9 MiB; no tag "flows/histories" figures: 0 B; 5100 - 1200 = 3900 live blocks
      { at = 1, log = "info", match = "^9 MiB in use %(histories 0 B%), peak 12 MiB, 3900 live blocks, rss 30 MiB$" },
      { at = 2, log = "info", match = "^10 MiB in use .* 4000 live blocks" },   -- 5200 - 1200
      { at = 3, log = "info", match = "^11 MiB in use .* 4100 live blocks" },   -- 5300 - 1200
   },
}

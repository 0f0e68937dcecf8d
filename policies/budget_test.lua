-- Tests of budget.lua: a budget for each of the tags "flows" (40 MiB), "cache" (256 MiB)
-- and "http/buffers" (64 MiB); soft = 0.8, target = 0.6, resume = 0.7 of the budget:
--   flows         soft 32 MiB,    target 24 MiB,    resume 28 MiB
--   cache         soft 204.8 MiB, target 153.6 MiB, resume 179.2 MiB
--   http/buffers  soft 51.2 MiB,  target 38.4 MiB,  resume 44.8 MiB
-- Each tag's rule ("budget <tag>", a when rule) fires when the tag's in_use > soft, asks
-- mmt.reclaim(tag, in_use - target) (a dry run here: said, frees 0), and resolves once the
-- tag is < resume. A tag the program has when the policy loads gets a hard limit
-- (mmt.limit: a dry run here, said at the load); one it has not is said at the load.
--
-- Not asserted: what the rule logs after its reclaim. budget.lua reads the tag again
-- through mmt.meminfo().tags, which mmt-policy answers with the real process's tags (0 B),
-- not the step's: the rule says "reclaimed 0 B, now 0 B" and stops there, where with the
-- step's figure it would go on to mmt.trim and a warning. See the report of these tests.
--   mmt-policy test policies/budget_test.lua
local t = require "mmt.test"

-- Keep this case first: the tags a case names are made in the mmt-policy process and
-- stay for the later cases (of this file and the next), so "cache" and "http/buffers"
-- are missing at the load only until a case names them.
t.case {
   name = "flows over 80% of 40 MiB: a reclaim down to 60%; ready again under 70%",
   policy = "budget.lua",
   series = {
      in_use = "100MiB",
      tags = {
         -- t=0..4: 20 + 4 t MiB; t=5..7: 36; t=8..10: 30; t=11..13: 26
         ["flows"] = { in_use = "20MiB+4MiBx4 36MiBx2 30MiBx2 26MiBx2" },
      },
   },
   expect = {
      -- the load: "flows" exists (the series made it), the other two do not
      { at = 0, log = "info", match = "budget%.lua:%d+: dry run: would set the limit on tag \"flows\" to 40 MiB %(now none%)$" },
      { at = 0, log = "info", match = "^budget: this program has no tag \"cache\" %(yet%)" },
      { at = 0, log = "info", match = "^budget: this program has no tag \"http/buffers\" %(yet%)" },
      -- 20 + 3 * 4 = 32 is not > 0.8 * 40 = 32; 20 + 4 * 4 = 36 is
      { at = 4, fire = "budget flows" },
      -- asks 36 - 0.6 * 40 = 36 - 24 = 12 MiB
      { at = 4, log = "info", match = "budget%.lua:%d+: dry run: would reclaim 12 MiB of tag \"flows\"$" },
      -- 30 is under soft but not under 0.7 * 40 = 28: still firing; 26 is
      { at = 11, resolve = "budget flows" },
   },
}

t.case {
   name = "cache: 210 MiB is over 204.8; 180 MiB keeps it, 179 MiB (under 179.2) resolves it",
   policy = "budget.lua",
   series = {
      in_use = "1GiB",
      tags = {
         -- t=0..4: 150 + 20 t MiB; t=5..7: 180; t=8: 179
         ["cache"] = { in_use = "150MiB+20MiBx4 180MiBx2 179MiB" },
      },
   },
   expect = {
      { at = 0, log = "info", match = "dry run: would set the limit on tag \"cache\" to 256 MiB %(now none%)$" },
      -- 150 + 2 * 20 = 190 <= 0.8 * 256 = 204.8; 150 + 3 * 20 = 210 > 204.8
      { at = 3, fire = "budget cache" },
      -- asks 210 - 0.6 * 256 = 210 - 153.6 = 56.4 MiB
      { at = 3, log = "info", match = "dry run: would reclaim 56%.4 MiB of tag \"cache\"$" },
      -- 180 > 0.7 * 256 = 179.2: still firing; 179 < 179.2
      { at = 8, resolve = "budget cache" },
   },
}

t.case {
   name = "http/buffers: resolved under 44.8 MiB, a new pass over 51.2 MiB reclaims again",
   policy = "budget.lua",
   series = {
      in_use = "200MiB",
      tags = {
         -- t=0: 52, t=1..2: 50, t=3: 44, t=4: 52, t=5: 40 MiB
         ["http/buffers"] = { in_use = "52MiB 50MiBx1 44MiB 52MiB 40MiB" },
      },
   },
   expect = {
      { at = 0, log = "info", match = "dry run: would set the limit on tag \"http/buffers\" to 64 MiB %(now none%)$" },
      { at = 0, fire = "budget http/buffers" },     -- 52 > 0.8 * 64 = 51.2
      -- asks 52 - 0.6 * 64 = 52 - 38.4 = 13.6 MiB, at each pass
      { at = 0, log = "info", match = "dry run: would reclaim 13%.6 MiB of tag \"http/buffers\"$" },
      { at = 3, resolve = "budget http/buffers" },  -- 50 >= 0.7 * 64 = 44.8; 44 < 44.8
      { at = 4, fire = "budget http/buffers" },     -- 52 > 51.2 again
      { at = 4, log = "info", match = "dry run: would reclaim 13%.6 MiB of tag \"http/buffers\"$" },
      { at = 5, resolve = "budget http/buffers" },  -- 40 < 44.8
   },
}

t.case {
   name = "a dip under soft but not under resume does not re-arm it: one reclaim, one firing",
   policy = "budget.lua",
   series = {
      in_use = "100MiB",
      tags = {
         -- t=0: 36, t=1: 30, t=2: 36, t=3: 27 MiB
         ["flows"] = { in_use = "36MiB 30MiB 36MiB 27MiB" },
      },
   },
   expect = {
      { at = 0, fire = "budget flows" },     -- 36 > 32
      -- t=1: 30 <= 32 but >= 28: stays firing, so t=2 (36 again) is no new pass
      { at = 3, resolve = "budget flows" },  -- 27 < 28
   },
}

t.case {
   name = "each tag has its own budget: 36 MiB is over flows' soft limit, not cache's",
   policy = "budget.lua",
   series = {
      in_use = "300MiB",
      tags = {
         ["flows"] = { in_use = "30MiB 36MiBx3" },      -- 36 > 32 from t=1
         ["cache"] = { in_use = "36MiB 200MiBx3" },     -- 200 <= 204.8: under its soft limit
         ["http/buffers"] = { in_use = "36MiBx4" },     -- 36 <= 51.2
      },
   },
   expect = {
      { at = 1, fire = "budget flows" },
      { at = 1, log = "info", match = "dry run: would reclaim 12 MiB of tag \"flows\"$" },  -- 36 - 24
   },
}

t.case {
   name = "at the soft limits exactly, or between resume and soft, nothing happens",
   policy = "budget.lua",
   series = {
      in_use = "500MiB",
      tags = {
         -- flows: 28 .. 32 MiB by 1 MiB, then 32 MiB: never > 32
         ["flows"] = { in_use = "28MiB+1MiBx4 32MiBx5" },
         -- cache: 204.8 MiB = 214748364.8 B, so 214748364 B is under it
         ["cache"] = { in_use = "214748364x9" },
         -- http/buffers: 51.2 MiB = 53687091.2 B, so 53687091 B is under it
         ["http/buffers"] = { in_use = "53687091x9" },
      },
   },
   expect_none = true,
}

t.case {
   name = "without the tags' figures (they read 0) no budget acts",
   policy = "budget.lua",
   series = { in_use = "2GiBx10" },  -- the process's in_use is no tag's
   expect_none = true,
}

-- Tests of shed.lua: budget = 512 MiB, target = 384 MiB, resume = 448 MiB.
-- Fires when in_use > 512 MiB and calls the host action "shed" with in_use - 384 MiB;
-- resolves when in_use < 448 MiB.
--   mmt-policy test policies/shed_test.lua
local t = require "mmt.test"

local MiB = 1024 * 1024

t.case {
   name = "over budget: asks the host to shed down to the target, logs what it released",
   policy = "shed.lua",
   -- t=0..4: 400 + 50 t MiB; t=5..7: 460 MiB; t=8: 440 MiB
   series = { in_use = "400MiB+50MiBx4 460MiBx2 440MiB" },
   actions = { shed = function(n) return n end },   -- releases all it is asked for
   expect = {
      { at = 3, fire = "shed" },                     -- 400 + 2 * 50 = 500 <= 512; 400 + 3 * 50 = 550 > 512
      { at = 3, call = "shed", arg = 166 * MiB },    -- 550 - 384 = 166 MiB = 174063616
      { at = 3, log = "warn", match = "^over budget %(550 MiB in use, budget 512 MiB%): asked to shed 166 MiB, released 166 MiB$" },
      { at = 8, resolve = "shed" },                  -- 460 >= 448 holds it; 440 < 448
      { at = 8, log = "info", match = "^under 448 MiB again: 440 MiB in use$" },
   },
}

t.case {
   name = "the action's result is what the log says was released",
   policy = "shed.lua",
   -- t=0: 300 MiB, t=1: 700 MiB
   series = { in_use = "300MiB 700MiB" },
   actions = {
      shed = function(n)
         if n ~= 316 * MiB then error("shed asked for " .. n .. " bytes, not 316 MiB") end
         return 64 * MiB                              -- gives back less than asked
      end,
   },
   expect = {
      { at = 1, fire = "shed" },                     -- 700 > 512
      { at = 1, call = "shed", arg = 316 * MiB },    -- 700 - 384 = 316 MiB
      { at = 1, log = "warn", match = "asked to shed 316 MiB, released 64 MiB$" },
   },
}

t.case {
   name = "without a host action the call is a dry run: said, released 0",
   policy = "shed.lua",
   series = { in_use = "550MiB" },
   expect = {
      { at = 0, fire = "shed" },                     -- 550 > 512 at the first sample
      { at = 0, call = "shed", arg = 174063616 },    -- 550 - 384 = 166 MiB = 166 * 2^20
      { at = 0, log = "info", match = "shed%.lua:25: dry run: would call shed%(174063616%)$" },
      { at = 0, log = "warn", match = "asked to shed 166 MiB, released 0 B$" },
   },
}

t.case {
   name = "hysteresis: one call per episode; 448 MiB exactly does not re-arm it, 447 does",
   policy = "shed.lua",
   -- t=0: 600; t=1..3: 500; t=4..5: 448; t=6: 447; t=7..8: 513
   series = { in_use = "600MiB 500MiBx2 448MiBx1 447MiB 513MiBx1" },
   actions = { shed = function(n) return 0 end },  -- a host that cannot release anything
   expect = {
      { at = 0, fire = "shed" },                     -- 600 > 512
      { at = 0, call = "shed", arg = 216 * MiB },    -- 600 - 384 = 216 MiB
      { at = 6, resolve = "shed" },                  -- 500, 448 are not < 448; 447 is
      { at = 7, fire = "shed" },                     -- 513 > 512: armed again
      { at = 7, call = "shed", arg = 129 * MiB },    -- 513 - 384 = 129 MiB
      { at = 7, log = "warn", match = "asked to shed 129 MiB, released 0 B" },
   },
}

t.case {
   name = "the budget is strict: 512 MiB exactly does not fire, one byte more does",
   policy = "shed.lua",
   -- t=0..5: 512 MiB; t=6: 512 MiB + 1 B
   series = { in_use = "512MiBx5 536870913" },
   actions = { shed = function(n) return n end },
   expect = {
      { at = 6, fire = "shed" },                     -- 536870913 = 512 * 2^20 + 1 > 512 MiB
      { at = 6, call = "shed", arg = 128 * MiB + 1 },-- 512 MiB + 1 - 384 MiB
   },
}

t.case {
   name = "under budget: no call",
   policy = "shed.lua",
   -- 256 .. 512 MiB by 32 MiB: the highest is 256 + 8 * 32 = 512, not above
   series = { in_use = "256MiB+32MiBx8" },
   actions = { shed = function(n) error("shed must not be called") end },
   expect_none = true,
}

-- shed.lua: above a memory budget, ask the program to release caches, and log what it
-- released.
--
-- The program registers a host action named "shed" (mmt_policy_action(p, "shed", fn, ud))
-- that is given a number of bytes to release and returns the number it released.
--
-- Edit these numbers:
--   budget  memory in use that triggers shedding
--   target  where shedding should bring usage back to; the action is asked for
--           in_use - target bytes
--   resume  usage must fall under this before shedding can trigger again
local mmt = require "mmt"

local budget = 512 * mmt.MiB
local target = 384 * mmt.MiB
local resume = 448 * mmt.MiB

mmt.rule {
   name = "shed",
   metric = "in_use",
   above = budget,
   below = resume,
   fire = function(m)
      local want = m.in_use - target
      local released = mmt.call("shed", want)
      mmt.log("warn", "over budget (%s in use, budget %s): asked to shed %s, released %s",
              mmt.bytes(m.in_use), mmt.bytes(budget), mmt.bytes(want), mmt.bytes(released))
   end,
   resolve = function(m)
      mmt.log("info", "under %s again: %s in use", mmt.bytes(resume), mmt.bytes(m.in_use))
   end,
}

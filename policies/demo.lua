-- demo.lua: the policy that mmt-demo runs. It watches a simulated flow table that grows
-- and shrinks between a few MiB and about 50 MiB.
--
-- Edit it while the demo runs: the demo reloads it as soon as it is saved. Try lowering
-- `shed_above` to 30 MiB, or setting `report_every` to 0.5, and watch the output change.
-- A mistake (a typo, a wrong field) is reported and the running policy stays in force.
--
--   high / low      warn above `high` MiB in use, clear the warning under `low`
--   shed_above      when the flows (the tag "flows" and its subtree) hold more than this,
--                   reclaim them down to `shed_to`: mmt.reclaim runs the demo's reclaimer,
--                   which drops the oldest flows; the engine logs what it freed. Fired at
--                   an allocation checkpoint, the reclaim is the engine thread's to run,
--                   soon after (mmt.reclaim returns nil, "deferred"). The rule is ready
--                   again once the flows are under `shed_resume`
--   fast_growth     warn when usage grows faster than this many MiB per second (and say
--                   it slowed down under half of it)
--   histories       warn when the flows' packet histories alone (the tag the demo
--                   allocates them in, "flows/histories") hold more than this many MiB,
--                   and clear under `histories_low`
--   report_every    seconds between two status lines
local mmt = require "mmt"

local high, low = 24 * mmt.MiB, 16 * mmt.MiB
local shed_above, shed_to, shed_resume = 40 * mmt.MiB, 20 * mmt.MiB, 30 * mmt.MiB
local fast_growth = 30 * mmt.MiB
local histories, histories_low = 30 * mmt.MiB, 20 * mmt.MiB
local report_every = 1

mmt.rule {
   name = "high-water",
   metric = "in_use", above = high, below = low,
   fire = function(m)
      mmt.log("warn", "high-water: %s in use (above %s)", mmt.bytes(m.in_use), mmt.bytes(high))
   end,
   resolve = function(m)
      mmt.log("info", "high-water cleared: %s in use (under %s)", mmt.bytes(m.in_use), mmt.bytes(low))
   end,
}

mmt.rule {
   name = "shed",
   metric = "in_use", tag = "flows", above = shed_above, below = shed_resume,
   fire = function(m)
      local flows = m.tags["flows"].in_use
      local freed, err = mmt.reclaim("flows", flows - shed_to)
      if freed then
         mmt.log("warn", "shed: the flows hold %s, over %s; reclaiming freed %s",
                 mmt.bytes(flows), mmt.bytes(shed_above), mmt.bytes(freed))
      elseif err == "deferred" then
         -- Fired at an allocation checkpoint: the engine's thread reclaims, and logs it.
         mmt.log("warn", "shed: the flows hold %s, over %s; reclaiming %s",
                 mmt.bytes(flows), mmt.bytes(shed_above), mmt.bytes(flows - shed_to))
      else
         mmt.log("warn", "shed: the flows hold %s, over %s; %s", mmt.bytes(flows),
                 mmt.bytes(shed_above), err)
      end
   end,
}

-- The rate is computed afresh at every evaluation: with a gap between the two thresholds a
-- rate that hovers around one of them is said once, not at every checkpoint.
mmt.rule {
   name = "fast-growth",
   metric = "rate", above = fast_growth, below = fast_growth / 2,
   fire = function(m) mmt.log("warn", "growing fast: %s/s", mmt.bytes(m.rate)) end,
   resolve = function(m) mmt.log("info", "growth slowed down") end,
}

-- A rule on a tag: its figures are those of the tag's subtree, here the flows' histories.
mmt.rule {
   name = "histories",
   metric = "in_use", tag = "flows/histories", above = histories, below = histories_low,
   fire = function(m)
      local h = m.tags["flows/histories"].in_use
      mmt.log("warn", "flow histories: %s (above %s), %.0f%% of the memory in use",
              mmt.bytes(h), mmt.bytes(histories), 100 * h / m.in_use)
   end,
   resolve = function(m)
      mmt.log("info", "flow histories back to %s", mmt.bytes(m.tags["flows/histories"].in_use))
   end,
}

-- m.tags holds every tag by path: a host that has not made "flows/histories" (an older
-- demo) gets nil, hence the `or`.
mmt.every(report_every, function(m)
   local h = m.tags["flows/histories"]
   mmt.log("info", "%s in use (histories %s), peak %s, %d live blocks, rss %s",
           mmt.bytes(m.in_use), mmt.bytes(h and h.in_use or 0), mmt.bytes(m.peak),
           m.allocations - m.frees, mmt.bytes(m.rss))
end)

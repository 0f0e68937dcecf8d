-- budget.lua: a memory budget for each part of the program that has a tag of its own.
--
-- Each tag listed in `budgets` gets two limits on its subtree's memory in use:
--
--   a hard limit (mmt.limit)  an allocation that would take the tag above it first runs
--                             the program's reclaimers for the tag; if they cannot make
--                             room, it fails: mmt_malloc aborts (mmt_try_malloc returns
--                             NULL). Set it where the program had better stop than grow.
--   a soft limit (a rule)     above `soft` of the hard limit, the policy acts first:
--                               1. reclaim: mmt.reclaim asks the tag's reclaimers to free
--                                  memory down to `target` of the limit;
--                               2. still above `soft`: trim, mmt.trim gives the allocator's
--                                  free memory back to the system (it frees no block: the
--                                  tag's own figure stays, the process's resident size falls);
--                               3. still above `soft`: warn, the reclaimers could not free
--                                  enough.
--                             The rule is ready again once the tag is under `resume`.
--
-- The engine logs every reclaim (who freed what, and how long it took). The limits are
-- the policy's own: edit a number and save, and the new limit applies; remove a tag from
-- `budgets` and its hard limit is given back (to none, or to what the program had set).
--
-- Tags are paths, as m.tags has them: "cache/pages". A program may not have every tag
-- listed here: a tag it has not made when the policy loads gets no hard limit (said in
-- the log) until the next load; its soft limit starts once the program makes it.
--
-- Needs the program's reclaimers (mmt_reclaimer_add) for the tags: without any, a reclaim
-- frees nothing and the soft limit only warns. mmt-demo has one for "flows":
--   mmt-demo --policy policies/budget.lua
--
-- Edit these numbers:
--   budgets  the hard limit of each tag, in bytes
--   soft     the fraction of the hard limit above which the policy reclaims
--   target   the fraction of it a reclaim aims for
--   resume   the fraction under which the soft limit is ready to act again (between
--            target and soft, so that a tag that hovers at `soft` is not reclaimed at
--            every checkpoint)
local mmt = require "mmt"

local budgets = {
   ["flows"] = 40 * mmt.MiB,           -- mmt-demo's flow table
   ["cache"] = 256 * mmt.MiB,
   ["http/buffers"] = 64 * mmt.MiB,
}
local soft, target, resume = 0.8, 0.6, 0.7

local exists = {}
for _, path in ipairs(mmt.tags()) do exists[path] = true end

-- In path order, so that the log says them in the same order at every load.
local paths = {}
for path in pairs(budgets) do paths[#paths + 1] = path end
table.sort(paths)

-- The tag's in_use now (the snapshot a rule fires on is from before its own reclaim).
local function in_use_now(path)
   local t = mmt.meminfo().tags[path]
   return t and t.in_use or 0
end

for _, path in ipairs(paths) do
   local limit = budgets[path]
   if exists[path] then
      mmt.limit(path, limit)
   else
      mmt.log("info", "budget: this program has no tag \"%s\" (yet): no hard limit on it "
              .. "until the policy is loaded again", path)
   end

   mmt.rule {
      name = "budget " .. path,
      metric = "in_use", tag = path, tag_optional = true,
      above = soft * limit, below = resume * limit,
      fire = function(m)
         local was = m.tags[path].in_use
         local freed = mmt.reclaim(path, was - target * limit)
         local now = in_use_now(path)
         if now <= soft * limit then
            mmt.log("info", "budget %s: %s in use was over %.0f%% of its limit %s; reclaimed %s, "
                    .. "now %s", path, mmt.bytes(was), 100 * soft, mmt.bytes(limit),
                    mmt.bytes(freed), mmt.bytes(now))
            return
         end
         local trimmed = mmt.trim()
         now = in_use_now(path)
         if now <= soft * limit then
            mmt.log("info", "budget %s: back to %s after a reclaim of %s and a trim", path,
                    mmt.bytes(now), mmt.bytes(freed))
            return
         end
         mmt.log("warn", "budget %s: still %s in use, %.0f%% of its limit %s: reclaiming freed "
                 .. "only %s (trimming gave %s back to the system)", path, mmt.bytes(now),
                 100 * now / limit, mmt.bytes(limit), mmt.bytes(freed), mmt.bytes(trimmed))
      end,
   }
end

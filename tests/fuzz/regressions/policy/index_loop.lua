-- A rule table whose metatable's __index calls itself: stopped, the rule refused.
local mmt = require 'mmt'
local t = setmetatable({}, {__index = function(t, k) return t[k] end})
mmt.rule(t)

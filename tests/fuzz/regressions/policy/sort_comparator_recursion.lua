-- table.sort whose comparator sorts again: recursion through C, in a rule.
local mmt = require 'mmt'
local function c(a, b) table.sort({2, 1}, c) return a < b end
mmt.rule { name = 'sort', when = function() table.sort({3, 2, 1}, c) return false end,
           fire = function() end }

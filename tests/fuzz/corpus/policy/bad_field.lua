local mmt = require "mmt"
mmt.rule { name = "a", metric = "in_use", above = "x", fire = print }

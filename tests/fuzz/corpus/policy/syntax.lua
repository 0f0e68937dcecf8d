mmt.rule {

// Package ops is Sluice's operations-automation pattern: rules on a table's
// committed records (event rules) and on its rollup's closed windows (window
// rules) fire actions (a webhook, a Kafka record), and every firing is
// recorded once in an action log in the lake before anything is sent.
//
// Rules are declared in YAML and their expressions (expr-lang) are compiled
// and type-checked against the table's fields or rollup columns when the
// file is loaded, so a typo is refused at startup with the file, the rule
// and the position, never discovered when a record arrives.
//
// It owns the rules, their evaluation and the action log. It reads committed
// data and closed windows through lake and aggregate, and must not know the
// sources that wrote them.
package ops

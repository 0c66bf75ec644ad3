"""Recording a run of the rules and replaying it: the journal (docs/debugging.md)."""

"""The run's report: its artifacts read into tables (collect), drawn as matplotlib figures (figures),
and what is shown where (plan, read while the workflow parses)."""

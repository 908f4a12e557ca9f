"""Evaluation: job settings, inputs, generation backends, benchmark formats, scoring, the report."""

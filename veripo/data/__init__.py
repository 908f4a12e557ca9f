"""Training queries: loading and validation, the curriculum, synthetic data sets."""

"""The Rollout-Aware Verifier: checks, consistency judges, chosen/rejected pairs, statistics."""

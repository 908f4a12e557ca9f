"""The policy: load, encode a query once, sample, score log-probs; the tiny offline builder."""

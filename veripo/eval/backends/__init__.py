"""Generation backends of the evaluation: transformers (hf) and vLLM."""

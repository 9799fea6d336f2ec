"""The local models: the embedder and the LLM."""

"""`glmtune api`: an OpenAI-compatible HTTP server over ChatModel, with continuous batching."""

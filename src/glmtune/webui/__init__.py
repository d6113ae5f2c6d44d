"""`glmtune webui`: a local browser UI to train, evaluate, chat with and export models."""

"""Model loading, adapters, the embedded default model and export."""

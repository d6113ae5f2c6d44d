"""Training stages (one small module each), the shared trainer, callbacks and loss plots."""

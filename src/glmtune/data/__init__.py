"""Datasets, chat templates and preprocessing into token ids and labels."""

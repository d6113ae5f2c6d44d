"""Checkpoint layouts that need remote code (ChatGLM2/3, GLM-4, Baichuan-7B) mapped onto native transformers classes, and back.

Everything here reads and writes tensors by name, one at a time, so a 6B checkpoint converts
without ever being loaded as a model. It sits beside model_source, which converts a folder in
this layout on first use.
"""

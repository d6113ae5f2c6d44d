"""glmtune: efficient fine-tuning of ChatGLM-family and other chat LLMs.

Nothing heavy is imported here so that `glmtune --help` answers at once.
"""

__version__ = "0.1.0"

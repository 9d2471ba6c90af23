"""asmr-daemon: translate Japanese ASMR scripts into Chinese with a resident ChatGLM2 + LoRA."""

__version__ = "0.1.0"

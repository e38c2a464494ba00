"""mtlhar: multi-task learning for human action recognition."""

__version__ = "0.1.0"

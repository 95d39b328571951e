"""The `crm-activation` console command and everything that draws on a terminal.

Nothing else under `crm_activation` imports this wing; `main` is the console script's entry point.
"""

from .main import main

__all__ = ["main"]

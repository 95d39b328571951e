"""`crm_activation.normalization`: the public import path of the identifier normalization rules.

Plugins import the rules from here (`from crm_activation.normalization import phone_e164`); they are defined in
`sdk/normalization.py` with the rest of the plugin author's kit.
"""

from .sdk.normalization import *  # noqa: F403
from .sdk.normalization import __all__ as __all__

"""Built-in platform connectors, one sub-package each, registered through the `crm_activation` entry points."""

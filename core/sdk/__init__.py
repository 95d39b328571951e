"""The plugin author's kit: the connector contract and its types, hooks, HTTP policy, sandbox base, rules.

Nothing here imports the pipeline, the state database, the campaign schema, e-mail, measurement or the CLI
(a test reads the imports to keep it so): a connector depends on this wing alone, through the names
`crm_activation/__init__.py` re-exports.
"""

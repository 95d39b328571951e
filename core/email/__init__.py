"""The email channel's building blocks (issue 4): templates, personalization, sequences, coupons, SMTP.

Each module has one job and can be used alone; `channel.EmailChannel` composes them for one campaign run and
`delivery.deliver` runs it as the engine's e-mail phase. docs/email-templates.md is the guide for email teams.
Import the modules themselves: this package's `__init__` imports nothing, so the campaign schema can use
`config.EmailConfig` without an import cycle.

- `config`: `EmailConfig` (campaign file) and `EmailCredentials` (environment).
- `rendering`, `filters`: the sandboxed Jinja2 renderer and its filters; `context`: the per-contact variables.
- `sequences`: due step, variant assignment, send hour (pure); `ledger`: `email_sends` and enrollments.
- `coupons`, `unsubscribe`: HMAC codes and tokens with their ledgers; `suppression`: who gets no email.
- `message`, `smtp`: the MIME message and the SMTP transport.
- `samples`, `tools`, `preview`: render, lint and preview for email teams.
"""

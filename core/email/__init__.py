"""The email channel's building blocks: templates, personalization, sequences, coupons, SMTP.

Each module has one job and can be used alone; `channel.EmailChannel` composes them for one campaign run and
`delivery.EmailDelivery` is the run's e-mail channel (the engine stages its contacts, then it delivers).
docs/email-templates.md is the guide for email teams. Import the modules themselves: this package's `__init__`
imports nothing, so using one block (a coupon lookup, the preview) does not load the others.

- The settings are not here but in the campaign wing: `campaign/email_settings.py` holds `EmailConfig` (the
  campaign file's `email:` section) and `EmailCredentials` (environment).
- `rendering`, `filters`: the sandboxed Jinja2 renderer and its filters; `context`: the per-contact variables.
- `sequences`: due step, variant assignment, send hour (pure); `ledger`: `email_sends` and enrollments.
- `coupons`, `unsubscribe`: HMAC codes and tokens with their ledgers; `suppression`: who gets no email.
- `message`, `smtp`: the MIME message and the SMTP transport; `smtp_relay`: the local relay of sandbox runs.
- `channel`, `delivery`: one run's sends, and the channel the engine pushes.
- `samples`, `commands`, `preview`: render, lint and preview for email teams (`cli/email.py` parses and prints).
"""

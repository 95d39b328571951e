import logging

from crm_activation.sdk.redaction import MASK, Redactor, get_logger, remember_secrets


def test_known_secrets_and_token_shapes_are_masked():
    redactor = Redactor(["s3cr3t-token-value"])
    text = "GET https://x/y?access_token=s3cr3t-token-value&limit=5 Authorization: Bearer abcdefghijkl"
    out = redactor.redact(text)
    assert "s3cr3t" not in out and "abcdefghijkl" not in out
    assert "limit=5" in out and f"access_token={MASK}" in out


def test_unknown_query_tokens_are_masked():
    assert Redactor().redact("https://h/p?token=zzz999&x=1") == f"https://h/p?token={MASK}&x=1"


def test_headers():
    headers = Redactor(["abc123xyz"]).headers({"Authorization": "Bearer abc123xyz", "X-Other": "v abc123xyz"})
    assert headers == {"Authorization": MASK, "X-Other": f"v {MASK}"}


def test_logs_of_package_loggers_never_carry_remembered_secrets(caplog):
    remember_secrets(["hunter2-very-secret"])
    logger = get_logger("crm_activation.test")
    with caplog.at_level(logging.INFO, logger="crm_activation.test"):
        logger.info("calling with %s", "hunter2-very-secret")
    assert "hunter2" not in caplog.text
    assert MASK in caplog.text

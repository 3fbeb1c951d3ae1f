"""`tact validate --config FILE`: exit 0 and print the effective settings, or exit 2 naming the
bad key. Precedence: embedded defaults < file < env TACT__SECTION__KEY."""

from __future__ import annotations

import re

import pytest

from harness import REPO_ROOT, base_config, deep_merge, dump_toml, run_tact_cli, topic_set

pytestmark = pytest.mark.timeout(60)

EXAMPLE = REPO_ROOT / "deploy" / "tact.example.toml"
GROUP = "e2e-validate-group"


def write_config(tmp_path, overrides=None, name="tact.toml"):
    cfg = deep_merge(base_config("127.0.0.1:9092", topic_set("validate"), GROUP, tmp_path / "state", 9898),
                     overrides or {})
    path = tmp_path / name
    path.write_text(dump_toml(cfg))
    return path


def validate(tact_bin, path, tmp_path, env=None):
    return run_tact_cli(["validate", "--config", str(path)], env=env, tact_bin=tact_bin, cwd=tmp_path)


def show(res) -> str:
    return f"exit {res.returncode}\nstdout:\n{res.stdout[-3000:]}\nstderr:\n{res.stderr[-3000:]}"


def test_shipped_example_config_is_valid(tact_bin, tmp_path):
    if not EXAMPLE.exists():
        pytest.skip(f"{EXAMPLE} is not there yet")
    res = validate(tact_bin, EXAMPLE, tmp_path)
    assert res.returncode == 0, show(res)


def test_valid_config_is_accepted_and_the_effective_settings_are_printed(tact_bin, tmp_path):
    res = validate(tact_bin, write_config(tmp_path, {"pipeline": {"batch_max_events": 4321}}), tmp_path)
    assert res.returncode == 0, show(res)
    assert GROUP in res.stdout, f"effective settings should show kafka.group_id from the file:\n{show(res)}"
    assert re.search(r"(?<![\w.])4321(?![\w.])", res.stdout), \
        f"effective settings should show pipeline.batch_max_events = 4321:\n{show(res)}"


def test_env_overrides_the_file(tact_bin, tmp_path):
    res = validate(tact_bin, write_config(tmp_path), tmp_path, env={"TACT__KAFKA__GROUP_ID": "group-from-env"})
    assert res.returncode == 0, show(res)
    assert "group-from-env" in res.stdout, f"env TACT__KAFKA__GROUP_ID must win over the file:\n{show(res)}"
    assert GROUP not in res.stdout, f"the file's group_id is still in effect:\n{show(res)}"


def _names(text: str, *words: str) -> bool:
    """The key is named, e.g. `output.format`, `[output] format`, `output: format`."""
    pattern = r"[\s\[\]\.:_'\"`-]{0,4}".join(re.escape(w) for w in words)
    return re.search(pattern, text, re.IGNORECASE) is not None


INVALID = [
    pytest.param({"output": {"format": "xml"}}, ("output", "format"), id="unknown-output-format"),
    pytest.param({"pipeline": {"batch_max_events": 0}}, ("batch_max_events",), id="zero-batch-max-events"),
    pytest.param({"input": {"clickstream_format": "protobuf"}}, ("clickstream_format",), id="unknown-input-format"),
    pytest.param({"policy": {"consent_regime": "sometimes"}}, ("consent_regime",), id="unknown-consent-regime"),
]


@pytest.mark.parametrize("overrides,key", INVALID)
def test_invalid_config_is_rejected_naming_the_bad_key(tact_bin, tmp_path, overrides, key):
    res = validate(tact_bin, write_config(tmp_path, overrides), tmp_path)
    assert res.returncode == 2, f"expected exit 2 for {overrides}:\n{show(res)}"
    assert _names(res.stdout + res.stderr, *key), f"the error should name {'.'.join(key)}:\n{show(res)}"


def test_invalid_env_override_of_a_valid_file_is_rejected(tact_bin, tmp_path):
    path = write_config(tmp_path)
    ok = validate(tact_bin, path, tmp_path)
    assert ok.returncode == 0, show(ok)
    res = validate(tact_bin, path, tmp_path, env={"TACT__PIPELINE__BATCH_MAX_EVENTS": "0"})
    assert res.returncode == 2, f"TACT__PIPELINE__BATCH_MAX_EVENTS=0 must be rejected:\n{show(res)}"
    assert _names(res.stdout + res.stderr, "batch_max_events"), show(res)


def test_missing_config_file_is_an_error(tact_bin, tmp_path):
    res = validate(tact_bin, tmp_path / "nope.toml", tmp_path)
    assert res.returncode != 0, show(res)
    assert "nope.toml" in res.stdout + res.stderr, f"the error should name the missing file:\n{show(res)}"


SECRETS = {
    "ssl.key.pem": "-----BEGIN PRIVATE KEY-----MIIEv-secret-pem-----END PRIVATE KEY-----",
    "sasl.oauthbearer.config": "principal=svc scope=secret-oauth-config",
    "sasl.password": "secret-sasl-password",
    "sasl.username": "secret-sasl-user",
    "ssl.keystore.password": "secret-keystore-password",
}


def test_validate_prints_no_secret_of_the_kafka_client_settings(tact_bin, tmp_path):
    path = write_config(tmp_path, {"kafka": {"client": {"security.protocol": "SASL_SSL", **SECRETS}}})
    res = validate(tact_bin, path, tmp_path,
                   env={"TACT__KAFKA__CLIENT__SSL_KEY_PASSWORD": "secret-from-env"})
    assert res.returncode == 0, show(res)
    out = res.stdout + res.stderr
    for value in [*SECRETS.values(), "secret-from-env"]:
        assert value not in out, f"{value!r} printed:\n{show(res)}"
    assert "SASL_SSL" in out, "non-secret settings are still shown"
    assert out.count("***") >= len(SECRETS) + 1, show(res)


def test_a_mistyped_kafka_client_key_is_refused_with_a_suggestion_and_its_value_never_printed(tact_bin, tmp_path):
    path = write_config(tmp_path, {"kafka": {"client": {"sasl.passwrd": "secret-typo-value"}}})
    res = validate(tact_bin, path, tmp_path)
    assert res.returncode == 2, show(res)
    out = res.stdout + res.stderr
    assert "sasl.passwrd" in out and "did you mean sasl.password" in out, show(res)
    assert "secret-typo-value" not in out, show(res)
    # The same for a key from the environment (underscores for dots).
    res = validate(tact_bin, write_config(tmp_path), tmp_path, env={"TACT__KAFKA__CLIENT__LINGER_MZ": "5"})
    assert res.returncode == 2, show(res)
    assert "linger_mz" in res.stdout + res.stderr and "did you mean linger.ms" in res.stdout + res.stderr, show(res)

"""Tests for consumer.settings: flag > environment > TOML file > default, durations, secrets, errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pydantic import ValidationError

from consumer.settings import (
    OPTIONS,
    MappingConfig,
    Secret,
    Settings,
    SettingsError,
    add_arguments,
    load,
    parse_duration,
)
from consumer.settings.partners import MovableInkSettings, RemergeSettings
from consumer.transform.amplitude_tables import amplitude_name

SECRET = "sk-live-7d1e0c2b9a"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    groups = (
        "destination", "amplitude", "limits", "dead_letter", "state", "mapping", "metrics", "logs",
        "kafka_connection", "kafka", "movableink", "remerge",
    )  # fmt: skip
    add_arguments(parser, groups)
    return parser.parse_args(list(argv))


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def test_defaults() -> None:
    s = load(parse(), {})
    assert s.amplitude.endpoint == "https://api2.amplitude.com/2/httpapi"
    assert s.limits.device_rate == 30.0
    assert s.limits.retry_window == 48 * 3600
    assert s.limits.throttle_penalty == 30.0
    assert s.sources["limits.retry_window"] == "default"


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        '[amplitude]\nregion = "eu"\nconcurrency = 3\nbatch_age = "2s"\n'
        '[limits]\nretry_window = "30m"\nmax_pending = 7\n',
    )
    env = {"CURRENTS_CONFIG": config, "CURRENTS_CONCURRENCY": "5", "CURRENTS_RETRY_WINDOW": "90s"}
    s = load(parse("--retry-window", "48h"), env)
    assert s.limits.retry_window == 48 * 3600  # flag beats env and file
    assert s.sources["limits.retry_window"] == "flag"
    assert s.amplitude.concurrency == 5  # env beats file
    assert s.sources["amplitude.concurrency"] == "env CURRENTS_CONCURRENCY"
    assert s.amplitude.region == "eu"  # file beats default
    assert s.amplitude.batch_age == 2.0
    assert s.limits.max_pending == 7
    assert s.sources["amplitude.region"] == f"file {config}"
    assert s.amplitude.endpoint == "https://api.eu.amplitude.com/2/httpapi"
    assert s.amplitude.gzip is True and s.sources["amplitude.gzip"] == "default"


def test_config_flag_beats_config_env(tmp_path: Path) -> None:
    a = write(tmp_path, "[limits]\nmax_pending = 1\n")
    b = tmp_path / "b.toml"
    b.write_text("[limits]\nmax_pending = 2\n")
    assert load(parse("--config", str(b)), {"CURRENTS_CONFIG": a}).limits.max_pending == 2


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("48h", 172800),
        ("2d", 172800),
        ("500ms", 0.5),
        ("15", 15),
        (" 1.5h ", 5400),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert load(parse("--retry-window", text), {}).limits.retry_window == seconds


@pytest.mark.parametrize("text", ["ten minutes", "-5s", "5 weeks", "", "1h30m"])
def test_a_bad_duration_names_the_option_and_where_it_came_from(text: str) -> None:
    with pytest.raises(SettingsError, match=r"--retry-window \(from flag\): not a duration"):
        load(parse(f"--retry-window={text}"), {})
    with pytest.raises(SettingsError, match=r"--retry-window \(from env CURRENTS_RETRY_WINDOW\)"):
        load(parse(), {"CURRENTS_RETRY_WINDOW": text})


def test_lists_from_flags_env_and_file(tmp_path: Path) -> None:
    s = load(parse("--enable-type", "a.*,b", "--enable-type", "c"), {})
    assert s.mapping.enabled == ("a.*", "b", "c")
    assert load(parse(), {"CURRENTS_DISABLE_TYPES": "x, y"}).mapping.disabled == ("x", "y")
    config = write(tmp_path, '[mapping]\nenabled = ["p", "q"]\n')
    assert load(parse("--config", config), {}).mapping.enabled == ("p", "q")


def test_booleans() -> None:
    assert load(parse("--gzip", "off"), {}).amplitude.gzip is False
    assert load(parse(), {"CURRENTS_GZIP": "YES"}).amplitude.gzip is True
    with pytest.raises(SettingsError, match=r"--gzip \(from flag\): not a boolean"):
        load(parse("--gzip", "maybe"), {})


def test_secrets_never_print() -> None:
    s = load(parse("--sasl-password", "kafka-" + SECRET), {"AMPLITUDE_API_KEY": SECRET})
    assert s.amplitude.api_key.reveal() == SECRET
    assert s.kafka.sasl_password.reveal() == "kafka-" + SECRET
    described = s.describe()
    assert described["amplitude.api_key"] == {"value": "***", "source": "env AMPLITUDE_API_KEY"}
    assert described["kafka.sasl_password"]["value"] == "***"
    for text in (repr(s), str(s), str(described), repr(s.amplitude), f"{s.amplitude.api_key}"):
        assert SECRET not in text
    assert load(parse(), {}).describe()["amplitude.api_key"]["value"] == ""


def test_a_malformed_secret_is_refused_without_echoing_it(tmp_path: Path) -> None:
    config = write(tmp_path, "[amplitude]\napi_key = 73331999107\n")
    with pytest.raises(SettingsError, match=r"--api-key \(from file .*\): expected a string") as info:
        load(parse("--config", config), {})
    assert "73331999107" not in str(info.value)


def test_secret_type() -> None:
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
    assert not Secret("") and Secret("x")
    assert repr(Secret("")) == "Secret('')"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[limits]\nmax_pending = 1.5\n", r"--max-pending \(from file .*\): expected an integer, got 1.5"),
        ("[amplitude]\ngzip = 1\n", r"--gzip \(from file .*\): expected true or false"),
        ("[amplitude]\nconcurrency = true\n", r"--concurrency \(from file .*\): expected an integer"),
        ("[limits]\ndevice_rate = false\n", r"--device-rate \(from file .*\): expected a number"),
        ('[amplitude]\nregion = "mars"\n', r"--region \(from file .*\): 'mars' is not one of us, eu"),
        ("[amplitude]\nregion = 1\n", r"--region \(from file .*\): expected a string"),
        ("[limits]\nretry_windw = 5\n", r"unknown keys in config file .*: limits.retry_windw"),
        ("[limits\n", r"cannot read config file"),
    ],
)
def test_file_errors_name_the_option(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(parse("--config", write(tmp_path, toml)), {})


def test_file_numbers_are_converted(tmp_path: Path) -> None:
    config = write(tmp_path, "[limits]\nretry_window = 120\ndevice_rate = 25\n[amplitude]\ngzip = false\n")
    s = load(parse("--config", config), {})
    assert s.limits.retry_window == 120.0 and isinstance(s.limits.retry_window, float)
    assert s.limits.device_rate == 25.0
    assert s.amplitude.gzip is False


def test_a_missing_config_file_is_named() -> None:
    with pytest.raises(SettingsError, match=r"cannot read config file /nonexistent\.toml"):
        load(parse(), {"CURRENTS_CONFIG": "/nonexistent.toml"})


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--concurrency", "0"], {}, r"--concurrency \(from flag\): 0 is out of range"),
        ([], {"CURRENTS_BATCH_EVENTS": "2001"}, r"--batch-events \(from env CURRENTS_BATCH_EVENTS\): 2001"),
        (["--api", "batch", "--batch-events", "-1"], {}, r"--batch-events \(from flag\): -1"),
        (["--max-pending", "0"], {}, r"--max-pending \(from flag\)"),
        # 0 would deadlock: the engine would never have room again after its first event
        (["--max-pending-bytes", "0"], {}, r"--max-pending-bytes \(from flag\)"),
        (["--request-timeout", "0s"], {}, r"--request-timeout \(from flag\)"),
        # 0 would dead-letter every event as over its daily quota
        (["--device-daily-limit", "0"], {}, r"--device-daily-limit \(from flag\)"),
        (["--device-rate", "0"], {}, r"--device-rate \(from flag\)"),
        (["--retry-window", "0s"], {}, r"--retry-window \(from flag\)"),
        (["--min-id-length", "-1"], {}, r"--min-id-length \(from flag\)"),
        (["--metrics-port", "70000"], {}, r"--metrics-port \(from flag\)"),
        (["--project-rate", "-1"], {}, r"--project-rate \(from flag\)"),
        (["--max-pending", "many"], {}, r"--max-pending \(from flag\): invalid literal"),
    ],
)
def test_values_out_of_range_name_the_option(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(parse(*argv), env)


def test_batch_api_allows_bigger_batches() -> None:
    s = load(parse("--api", "batch", "--batch-events", "5000"), {})
    assert s.amplitude.events_cap == 5000
    assert s.amplitude.endpoint.endswith("/batch")
    assert s.amplitude.bytes_cap > 10_000_000


def test_throttle_penalty_is_a_setting() -> None:
    assert load(parse("--throttle-penalty", "5s"), {}).limits.throttle_penalty == 5.0


def test_every_option_has_a_distinct_flag_and_env() -> None:
    assert len({o.flag for o in OPTIONS}) == len(OPTIONS)
    assert len({o.env for o in OPTIONS}) == len(OPTIONS)
    s = load(parse(), {})
    assert isinstance(s, Settings)
    assert set(s.describe()) == {o.key for o in OPTIONS} | {"mapping.names"}


def test_settings_are_frozen() -> None:
    s = load(parse(), {})
    with pytest.raises(ValidationError, match="frozen"):
        s.limits.max_pending = 1
    with pytest.raises(ValidationError, match="frozen"):
        s.metrics_port = 1
    assert s.limits.max_pending == 50_000 and s.metrics_port == 0


def test_mapping_names_accept_quoted_and_unquoted_dotted_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[mapping.names]\nusers.messages.email.Open = "Opened"\n"users.messages.email.Click" = "Clicked"\n'
    )
    s = load(None, {"CURRENTS_CONFIG": str(cfg)})
    assert s.mapping.names == {"users.messages.email.Open": "Opened", "users.messages.email.Click": "Clicked"}
    assert amplitude_name(s.mapping, "users.messages.email.Open") == "[Appboy] Opened"
    cfg.write_text('[mapping.names]\n"users.messages.email.Open" = 3\n')
    with pytest.raises(SettingsError, match="expected a string"):
        load(None, {"CURRENTS_CONFIG": str(cfg)})


def test_batch_api_defaults_to_its_own_per_device_rate() -> None:
    assert load(None, {"AMPLITUDE_API": "batch"}).limits.device_rate == 1000.0
    assert load(None, {"AMPLITUDE_API": "batch", "CURRENTS_DEVICE_RATE": "50"}).limits.device_rate == 50.0
    assert load(None, {}).limits.device_rate == 30.0


def test_every_mapping_knob_is_configurable() -> None:
    s = load(
        None,
        {
            "CURRENTS_CUSTOM_EVENT_PREFIX": "",
            "CURRENTS_BRAZE_ID_PROPERTY": "",
            "CURRENTS_DEVICE_FIELDS_TOP_LEVEL": "false",
            "CURRENTS_AD_IDS_TOP_LEVEL": "no",
            "CURRENTS_PURCHASE_PROPERTY_PREFIX": "p.",
            "CURRENTS_CUSTOM_PROPERTY_PREFIX": "c.",
        },
    )
    m = s.mapping
    assert (m.custom_event_prefix, m.braze_id_property, m.device_fields_top_level, m.ad_ids_top_level) == (
        "",
        "",
        False,
        False,
    )
    assert (m.purchase_property_prefix, m.custom_property_prefix) == ("p.", "c.")


def test_destinations_are_chosen_in_order_once_each_and_checked() -> None:
    s = load(None, {"CURRENTS_DESTINATIONS": "remerge, amplitude,remerge"})
    assert s.destinations == ("remerge", "amplitude")
    assert load(parse("--destination", "movableink"), {}).destinations == ("movableink",)
    assert load(None, {}).destinations == ("amplitude",)
    with pytest.raises(SettingsError, match=r"--destination \(from env CURRENTS_DESTINATIONS\): braze"):
        load(None, {"CURRENTS_DESTINATIONS": "amplitude,braze"})


def test_destination_settings_from_file_env_and_their_secrets_never_print(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        '[movableink]\nendpoint = "https://mi.example"\nevent_names = "verbatim"\nrate = 5\n'
        '[remerge]\napp_ids = ["braze-ios=012345678", "braze-android=com.example"]\n',
    )
    env = {
        "MOVABLEINK_KEY": "mi-" + SECRET,
        "MOVABLEINK_USERNAME": "user-" + SECRET,
        "MOVABLEINK_PASSWORD": "pw-" + SECRET,
        "REMERGE_KEY": "rm-" + SECRET,
        "MOVABLEINK_IDENTIFY": "false",
    }
    s = load(parse("--config", config), env)
    assert s.section("movableink", MovableInkSettings).endpoint == "https://mi.example"
    assert s.section("movableink", MovableInkSettings).event_names == "verbatim"
    assert s.section("movableink", MovableInkSettings).rate == 5.0
    assert s.section("movableink", MovableInkSettings).identify is False
    assert s.section("movableink", MovableInkSettings).url == f"https://mi.example/behavioral/mi-{SECRET}"
    assert s.section("remerge", RemergeSettings).store_app_ids() == {
        "braze-ios": "012345678",
        "braze-android": "com.example",
    }
    described = s.describe()
    for key in ("movableink.key", "movableink.username", "movableink.password", "remerge.key"):
        assert described[key]["value"] == "***"
    for text in (
        repr(s),
        str(described),
        repr(s.section("movableink", MovableInkSettings)),
        repr(s.section("remerge", RemergeSettings)),
    ):
        assert SECRET not in text


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"REMERGE_APP_IDS": "no-equals-sign"},
            r"--remerge-app-id \(from env REMERGE_APP_IDS\): expected BRAZE_APP_ID=STORE_APP_ID",
        ),
        ({"MOVABLEINK_CONCURRENCY": "0"}, r"--movableink-concurrency \(from env MOVABLEINK_CONCURRENCY\)"),
        ({"REMERGE_RATE": "-1"}, r"--remerge-rate \(from env REMERGE_RATE\)"),
        ({"MOVABLEINK_ANONYMOUS_ID": "phone"}, r"--movableink-anonymous-id .*'phone' is not one of"),
        ({"REMERGE_RETRY_WINDOW": "0s"}, r"--remerge-retry-window \(from env REMERGE_RETRY_WINDOW\)"),
    ],
)
def test_bad_destination_settings_name_the_option(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(None, env)


def test_a_destination_without_its_credentials_refuses_to_start() -> None:
    from consumer.app.destinations import build_destinations

    cases = [
        ({"CURRENTS_DESTINATIONS": "amplitude"}, "no Amplitude API key"),
        ({"CURRENTS_DESTINATIONS": "movableink", "MOVABLEINK_KEY": "k"}, "--movableink-endpoint"),
        ({"CURRENTS_DESTINATIONS": "remerge"}, "--remerge-key"),
        ({"CURRENTS_DESTINATIONS": "remerge", "REMERGE_KEY": "k"}, "store app ids"),
    ]
    for env, message in cases:
        with pytest.raises(SettingsError, match=message):
            build_destinations(load(None, env))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"CURRENTS_MAX_PENDING": "0"},
            r"--max-pending \(from env CURRENTS_MAX_PENDING\): 0 is out of range \(at least 1\)",
        ),
        (
            {"CURRENTS_METRICS_PORT": "70000"},
            r"--metrics-port \(from env CURRENTS_METRICS_PORT\): 70000 is out of range \(0 to 65535\)",
        ),
        (
            {"CURRENTS_RETRY_WINDOW": "0s"},
            r"--retry-window \(from env CURRENTS_RETRY_WINDOW\): 0.0 is out of range \(more than 0\)",
        ),
        (
            {"CURRENTS_WORKERS": "-1"},
            r"--workers \(from env CURRENTS_WORKERS\): -1 is out of range \(0 or more\)",
        ),
        (
            {"CURRENTS_FILES_IN_FLIGHT": "0"},
            r"--files-in-flight \(from env CURRENTS_FILES_IN_FLIGHT\): 0 is out of range",
        ),
    ],
)
def test_a_bound_violated_from_env_names_the_env_var(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(parse(), env)


def test_a_bound_violated_in_the_file_names_the_file(tmp_path: Path) -> None:
    config = write(tmp_path, "[amplitude]\nconcurrency = 0\n")
    with pytest.raises(SettingsError, match=rf"--concurrency \(from file {config}\): 0 is out of range"):
        load(parse("--config", config), {})


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        load(parse("--concurrency", "0"), {"CURRENTS_GZIP": "maybe"})
    assert "--concurrency (from flag)" in str(info.value)
    assert "--gzip (from env CURRENTS_GZIP): not a boolean" in str(info.value)


def test_an_empty_window_names_until() -> None:
    window = {"CURRENTS_SINCE": "2024-05-02", "CURRENTS_UNTIL": "2024-05-01"}
    with pytest.raises(
        SettingsError, match=r"--until \(from env CURRENTS_UNTIL\): .* out of range \(after --since\)"
    ):
        load(None, window)
    s = load(None, {"CURRENTS_SINCE": "2024-05-01", "CURRENTS_UNTIL": "2024-05-02"})
    assert (s.input.since, s.input.until) == ("2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z")


def test_a_refused_secret_carries_no_trace_of_its_value(tmp_path: Path) -> None:
    import traceback

    config = write(tmp_path, "[kafka]\nsasl_password = 73331999107\n")
    with pytest.raises(SettingsError, match=r"--sasl-password \(from file .*\): expected a string") as info:
        load(parse("--config", config), {})
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert "73331999107" not in "".join(traceback.format_exception(info.value))


def test_the_batch_api_default_rate_says_where_it_came_from() -> None:
    s = load(None, {"AMPLITUDE_API": "batch"})
    assert s.describe()["limits.device_rate"] == {"value": 1000.0, "source": "default (batch API)"}


def test_the_mapping_profile_from_flag_env_and_file_sets_its_own_defaults(tmp_path: Path) -> None:
    seed = load(None, {}).mapping
    assert (seed.profile, seed.braze_id_property, seed.device_fields_top_level) == ("seed", "braze_id", True)
    cfg = write(tmp_path, '[mapping]\nprofile = "glossary"\n')
    for s in (
        load(parse("--mapping-profile", "glossary"), {}),
        load(None, {"CURRENTS_MAPPING_PROFILE": "glossary"}),
        load(None, {"CURRENTS_CONFIG": cfg}),
    ):
        m = s.mapping
        assert (m.profile, m.braze_id_property, m.device_fields_top_level) == ("glossary", "", False)
        assert s.describe()["mapping.braze_id_property"] == {
            "value": "",
            "source": "default (glossary profile)",
        }
    # a value given for one of them wins, wherever it comes from; code gets the same defaults
    s = load(parse("--mapping-profile", "glossary"), {"CURRENTS_BRAZE_ID_PROPERTY": "bid"})
    assert (s.mapping.braze_id_property, s.mapping.device_fields_top_level) == ("bid", False)
    assert s.describe()["mapping.braze_id_property"]["source"] == "env CURRENTS_BRAZE_ID_PROPERTY"
    assert MappingConfig(profile="glossary").braze_id_property == ""
    assert MappingConfig(profile="glossary", device_fields_top_level=True).device_fields_top_level
    with pytest.raises(
        SettingsError, match=r"--mapping-profile \(from env CURRENTS_MAPPING_PROFILE\): 'gloss'"
    ):
        load(None, {"CURRENTS_MAPPING_PROFILE": "gloss"})


def test_settings_built_in_code_never_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CURRENTS_METRICS_PORT", "METRICS_PORT", "metrics_port", "AMPLITUDE_API_KEY", "LOG_LEVEL"):
        monkeypatch.setenv(name, "9")
    s = Settings()
    assert s.metrics_port == 0 and s.log_level == "info" and not s.amplitude.api_key
    assert s.destinations == ("amplitude",) and s.limits.max_pending == 50_000


def test_every_section_field_is_one_option() -> None:
    """The options are read off the section models (the declared ones and those of the registry's
    destinations): every field is one, except the names table."""
    from pydantic import BaseModel

    def leaves(model: type[BaseModel], prefix: str = "") -> set[str]:
        out: set[str] = set()
        for name, info in model.model_fields.items():
            kind = info.annotation
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                out |= leaves(kind, f"{prefix}{name}.")
            else:
                out.add(prefix + name)
        return out

    from consumer.settings import registry

    added = [leaves(s.section, f"{s.name}.") for s in registry() if s.name not in Settings.model_fields]
    assert added, "the partners' sections come from the registry"
    fields = leaves(Settings).union(*added) - {"sources", "mapping.names"}
    assert fields == {o.key for o in OPTIONS}
    by_key = {o.key: o for o in OPTIONS}
    assert by_key["amplitude.region"].choices == ("us", "eu")
    assert by_key["limits.retry_window"].parse is parse_duration
    assert by_key["kafka.sasl_password"].secret and by_key["kafka.sasl_password"].default == ""
    assert by_key["input.event_time"].switch and by_key["kafka.topics"].repeatable


def test_secret_is_a_pydantic_secret() -> None:
    from pydantic import SecretStr

    s = load(None, {"AMPLITUDE_API_KEY": SECRET})
    assert isinstance(s.amplitude.api_key, SecretStr) and s.amplitude.api_key.get_secret_value() == SECRET
    assert SECRET not in s.model_dump_json() and SECRET not in repr(s.model_dump())


# -- secrets from files (--api-key-file, AMPLITUDE_API_KEY_FILE, api_key_file) --------------------------


def test_every_secret_can_come_from_a_file_by_flag_env_or_toml_key(tmp_path: Path) -> None:
    secrets = [o for o in OPTIONS if o.secret]
    assert {o.key for o in secrets} >= {
        "amplitude.api_key", "movableink.key", "movableink.password", "remerge.key",
        "kafka.sasl_password", "kafka.schema_registry_password",
    }  # fmt: skip
    for opt in secrets:
        held = tmp_path / f"{opt.env}.txt"
        held.write_text(f"{SECRET}-{opt.env}\n")  # as `echo KEY > file` and mounted Secrets write it
        from_flag = load(parse(f"{opt.flag}-file", str(held)), {})
        from_env = load(parse(), {f"{opt.env}_FILE": str(held)})
        *section, leaf = opt.key.split(".")
        toml = tmp_path / "c.toml"
        toml.write_text(f"[{'.'.join(section)}]\n{leaf}_file = {str(held)!r}\n")
        from_toml = load(parse("--config", str(toml)), {})
        for s in (from_flag, from_env, from_toml):
            assert s.value_of(opt.key).reveal() == f"{SECRET}-{opt.env}", opt.key
            assert SECRET not in str(s.describe())
        assert from_flag.sources[opt.key] == f"flag {opt.flag}-file {held}"
        assert from_env.sources[opt.key] == f"env {opt.env}_FILE {held}"
        assert from_toml.sources[opt.key] == f"file {toml} ({leaf}_file {held})"


def test_a_secret_file_keeps_its_place_in_the_precedence(tmp_path: Path) -> None:
    held = tmp_path / "key"
    held.write_text("from-file\r\n\n")
    s = load(parse("--api-key-file", str(held)), {"AMPLITUDE_API_KEY": "from-env"})
    assert s.amplitude.api_key.reveal() == "from-file", "a flag beats the environment, file or not"
    s = load(parse("--api-key", "from-flag"), {"AMPLITUDE_API_KEY_FILE": str(held)})
    assert s.amplitude.api_key.reveal() == "from-flag"
    held.write_text("  spaces are the secret's own \n")
    assert load(parse(), {"AMPLITUDE_API_KEY_FILE": str(held)}).amplitude.api_key.reveal() == (
        "  spaces are the secret's own "
    )


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--api-key", "k"], "both", r"--api-key \(from flag\): give --api-key or --api-key-file, not both"),
        (
            [],
            "both-env",
            r"--api-key \(from env\): set AMPLITUDE_API_KEY or AMPLITUDE_API_KEY_FILE, not both",
        ),
        (
            [],
            "missing",
            r"--api-key-file \(from env AMPLITUDE_API_KEY_FILE\): cannot read .*nope: No such file",
        ),
        ([], "empty", r"--api-key-file \(from env AMPLITUDE_API_KEY_FILE\): .*empty is empty"),
    ],
)
def test_a_secret_file_that_cannot_be_used_is_named_never_its_content(
    tmp_path: Path, argv: list[str], env: str, message: str
) -> None:
    held = tmp_path / "key"
    held.write_text(SECRET)
    (tmp_path / "empty").write_text("\n")
    environ = {
        "both": {},
        "both-env": {"AMPLITUDE_API_KEY": SECRET, "AMPLITUDE_API_KEY_FILE": str(held)},
        "missing": {"AMPLITUDE_API_KEY_FILE": str(tmp_path / "nope")},
        "empty": {"AMPLITUDE_API_KEY_FILE": str(tmp_path / "empty")},
    }[env]
    extra = ["--api-key-file", str(held)] if env == "both" else []
    with pytest.raises(SettingsError, match=message) as info:
        load(parse(*argv, *extra), environ)
    assert SECRET not in str(info.value)


# -- several --config files ------------------------------------------------------------------------------


def test_config_files_are_merged_in_order_and_each_value_names_its_file(tmp_path: Path) -> None:
    base = tmp_path / "base.toml"
    base.write_text(
        'dead_letter = "/data/dl"\n[amplitude]\nregion = "eu"\nconcurrency = 3\n'
        '[mapping.names]\n"users.messages.email.Open" = "Email Opened"\n"users.behaviors.Purchase" = "Buy"\n'
    )
    local = tmp_path / "local.toml"
    local.write_text(
        '[amplitude]\nconcurrency = 5\n[mapping.names]\n"users.behaviors.Purchase" = "Order Completed"\n'
    )
    s = load(parse("--config", str(base), "--config", str(local)), {"CURRENTS_CONFIG": "/nonexistent"})
    assert (s.amplitude.region, s.amplitude.concurrency, s.dead_letter) == ("eu", 5, "/data/dl")
    assert s.sources["amplitude.region"] == f"file {base}", "the first file's keys are not dropped"
    assert s.sources["amplitude.concurrency"] == f"file {local}", "a later file wins key by key"
    assert s.sources["dead_letter"] == f"file {base}"
    assert dict(s.mapping.names) == {
        "users.messages.email.Open": "Email Opened",
        "users.behaviors.Purchase": "Order Completed",
    }
    assert s.describe()["mapping.names"]["source"] == f"file {base}, file {local}"
    assert s.describe()["amplitude.gzip"]["source"] == "default"


def test_an_unknown_key_names_the_file_it_is_in(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text("[amplitude]\nregion = 'eu'\n")
    bad.write_text("[amplitude]\nregoin = 'eu'\n")
    with pytest.raises(SettingsError, match=f"unknown keys in config file {bad}: amplitude.regoin"):
        load(parse("--config", str(good), "--config", str(bad)), {})


PINNED = Path(__file__).with_name("pinned_option_names.txt")


def _pinned() -> list[tuple[str, str, str]]:
    rows = [line.split() for line in PINNED.read_text().splitlines() if line and not line.startswith("#")]
    return [(key, flag, env) for key, flag, env in rows]


def test_every_option_name_of_today_keeps_working() -> None:
    """Every TOML key, flag and environment variable a user may have configured (pinned when the
    destinations' options became derived from their section) still names the same option, and every
    pinned flag is accepted by the commands' parsers."""
    from consumer.commands.cli import build_parser
    from consumer.settings import OPTION_BY_KEY

    pinned = _pinned()
    assert len(pinned) >= 100
    parser, _ = build_parser(plugins=False, destinations=("amplitude", "movableink", "remerge"))
    accepted = {
        flag
        for action in parser._subparsers._group_actions  # type: ignore[union-attr]
        for sub in action.choices.values()  # type: ignore[union-attr]
        for sub_action in sub._actions
        for flag in sub_action.option_strings
    }
    for key, flag, env in pinned:
        if key.endswith("_file") and key not in OPTION_BY_KEY:
            secret = OPTION_BY_KEY[key.removesuffix("_file")]
            assert secret.secret and (secret.file_key, secret.file_flag, secret.file_env) == (key, flag, env)
        else:
            opt = OPTION_BY_KEY[key]
            assert (opt.flag, opt.env) == (flag, env), key
        assert flag in accepted, flag


@pytest.mark.parametrize("section", ["movableink", "remerge"])
def test_each_partner_has_its_own_limits(section: str) -> None:
    """A partner's retry window, back-off, penalty, rate and memory bound are its own: Amplitude's
    ``[limits]`` (and its per-device limits) do not leak into them."""
    from consumer.app.destinations import destination

    prefix = section.upper()
    s = load(
        None,
        env={
            "CURRENTS_MAX_PENDING": "7",
            "CURRENTS_MAX_BACKOFF": "1s",
            "CURRENTS_THROTTLE_PENALTY": "2s",
            "CURRENTS_RETRY_WINDOW": "3s",
            f"{prefix}_MAX_PENDING": "11",
            f"{prefix}_MAX_BACKOFF": "13s",
            f"{prefix}_THROTTLE_PENALTY": "17s",
            f"{prefix}_RETRY_WINDOW": "19s",
            f"{prefix}_RATE": "23",
        },
    )
    own = destination(s, section, sink=None, mapper=object()).limits  # type: ignore[arg-type]
    assert (own.max_pending, own.max_backoff, own.throttle_penalty, own.retry_window) == (11, 13, 17, 19)
    assert own.project_rate == 23 and own.device_rate == float("inf")
    amplitude = destination(s, "amplitude", sink=None, mapper=object()).limits  # type: ignore[arg-type]
    assert (amplitude.max_pending, amplitude.max_backoff, amplitude.retry_window) == (7, 1, 3)

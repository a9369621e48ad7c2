"""Settings: config/default.yaml, then config/<MEMORY_ENV>.yaml, then the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import CONFIG_DIR, PROJECT_ROOT, Settings, SettingsError, load_settings

DEFAULT_YAML = """
server:
  host: 0.0.0.0
  port: 9000
database:
  data-dir: .data
log:
  format: json
  level: info
nubase:
  mem:
    enabled: true
    embedding-provider: local
    search:
      default-top-k: 10
      fts-config: simple
"""

STAGING_YAML = """
server:
  port: 9100
log:
  level: warning
nubase:
  mem:
    search:
      default-top-k: 7
"""


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    (tmp_path / "default.yaml").write_text(DEFAULT_YAML)
    (tmp_path / "staging.yaml").write_text(STAGING_YAML)
    return tmp_path


def test_default_yaml_is_read_when_no_environment_is_named(config_dir):
    settings = load_settings(environ={}, config_dir=config_dir)

    assert settings.env == "default"
    assert settings.host == "0.0.0.0"
    assert settings.port == 9000
    assert settings.log_format == "json"
    assert settings.mem.search_default_top_k == 10
    assert settings.database_url is None


def test_memory_env_overlays_its_yaml_on_the_defaults(config_dir):
    settings = load_settings(environ={"MEMORY_ENV": "staging"}, config_dir=config_dir)

    assert settings.env == "staging"
    assert settings.port == 9100
    assert settings.log_level == "warning"
    assert settings.mem.search_default_top_k == 7
    # Keys the overlay does not name keep their default.yaml value.
    assert settings.host == "0.0.0.0"
    assert settings.log_format == "json"


def test_a_missing_environment_file_leaves_the_defaults(config_dir):
    settings = load_settings(environ={"MEMORY_ENV": "nowhere"}, config_dir=config_dir)

    assert settings.env == "nowhere"
    assert settings.port == 9000


def test_environment_variables_override_both_yaml_files(config_dir):
    settings = load_settings(
        environ={
            "MEMORY_ENV": "staging",
            "PORT": "8123",
            "DATABASE_URL": "postgresql://memory:s3cret-pw@db.internal:5432/memory",
            "NUBASE_MEM_ENABLED": "false",
            "NUBASE_MEM_SEARCH_DEFAULT_TOP_K": "5",
            "LOG_LEVEL": "debug",
        },
        config_dir=config_dir,
    )

    assert settings.port == 8123
    assert settings.database_url == "postgresql://memory:s3cret-pw@db.internal:5432/memory"
    assert settings.mem.enabled is False
    assert settings.mem.search_default_top_k == 5
    assert settings.log_level == "debug"
    assert settings.host == "0.0.0.0"


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("1", True), ("off", False), ("No", False)])
def test_boolean_settings_accept_the_usual_spellings(config_dir, raw, expected):
    settings = load_settings(environ={"NUBASE_MEM_ENABLED": raw}, config_dir=config_dir)

    assert settings.mem.enabled is expected


def test_provider_keys_come_from_openai_api_key(config_dir):
    settings = load_settings(environ={"OPENAI_API_KEY": "sk-from-env"}, config_dir=config_dir)

    assert settings.mem.embedding_api_key == "sk-from-env"
    assert settings.mem.chat_api_key == "sk-from-env"


def test_provider_keys_come_from_a_secret_file(config_dir, tmp_path):
    secret_file = tmp_path / "openai_key"
    secret_file.write_text("sk-from-file\n")

    settings = load_settings(environ={"OPENAI_API_KEY_FILE": str(secret_file)}, config_dir=config_dir)

    assert settings.mem.embedding_api_key == "sk-from-file"
    assert settings.mem.chat_api_key == "sk-from-file"


def test_a_dedicated_embedding_key_wins_over_the_openai_key(config_dir):
    settings = load_settings(
        environ={"OPENAI_API_KEY": "sk-shared", "NUBASE_MEM_EMBEDDING_API_KEY": "sk-embed"},
        config_dir=config_dir,
    )

    assert settings.mem.embedding_api_key == "sk-embed"
    assert settings.mem.chat_api_key == "sk-shared"


def test_the_anthropic_chat_provider_reads_the_anthropic_key(config_dir):
    settings = load_settings(
        environ={
            "NUBASE_MEM_CHAT_PROVIDER": "anthropic",
            "ANTHROPIC_API_KEY": "sk-ant-x",
            "OPENAI_API_KEY": "sk-openai",
        },
        config_dir=config_dir,
    )

    assert settings.mem.chat_provider == "anthropic"
    assert settings.mem.chat_api_key == "sk-ant-x"
    assert settings.mem.embedding_api_key == "sk-openai"


def test_no_provider_key_without_one_in_the_environment(config_dir):
    settings = load_settings(environ={}, config_dir=config_dir)

    assert settings.mem.embedding_api_key is None
    assert settings.mem.chat_api_key is None


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"PORT": "eighty"}, "server.port"),
        ({"PORT": "70000"}, "server.port"),
        ({"PORT": "0"}, "server.port"),
        ({"NUBASE_MEM_ENABLED": "maybe"}, "nubase.mem.enabled"),
        ({"NUBASE_MEM_SEARCH_DEFAULT_TOP_K": "five"}, "nubase.mem.search.default-top-k"),
        ({"NUBASE_MEM_SEARCH_DEFAULT_TOP_K": "0"}, "nubase.mem.search.default-top-k"),
        ({"NUBASE_MEM_SEARCH_DEFAULT_TOP_K": "500"}, "nubase.mem.search.default-top-k"),
        ({"NUBASE_MEM_CHAT_PROVIDER": "gpt"}, "nubase.mem.chat-provider"),
        ({"NUBASE_MEM_EMBEDDING_PROVIDER": "magic"}, "nubase.mem.embedding-provider"),
        ({"NUBASE_MEM_EMBEDDING_DIMENSIONS": "768"}, "nubase.mem.embedding.dimensions"),
        (
            {"NUBASE_MEM_EMBEDDING_PROVIDER": "openai", "NUBASE_MEM_EMBEDDING_DIMENSIONS": "4096"},
            "nubase.mem.embedding.dimensions",
        ),
        ({"NUBASE_MEM_SEARCH_FTS_CONFIG": "english; DROP TABLE x"}, "nubase.mem.search.fts-config"),
        ({"LOG_FORMAT": "xml"}, "log.format"),
        ({"OPENAI_API_KEY_FILE": "/nonexistent/openai_key"}, "OPENAI_API_KEY_FILE"),
    ],
    ids=lambda v: "-".join(f"{k}={w}" for k, w in v.items()) if isinstance(v, dict) else None,
)
def test_a_bad_value_raises_a_settings_error_naming_the_key(config_dir, environ, named):
    with pytest.raises(SettingsError) as raised:
        load_settings(environ=environ, config_dir=config_dir)

    assert named in str(raised.value)


def test_a_bad_value_in_yaml_names_the_key_too(config_dir):
    (config_dir / "broken.yaml").write_text("database:\n  pool-max-size: lots\n")

    with pytest.raises(SettingsError, match=r"database\.pool-max-size"):
        load_settings(environ={"MEMORY_ENV": "broken"}, config_dir=config_dir)


def test_a_yaml_file_that_is_not_a_mapping_is_refused(config_dir):
    (config_dir / "list.yaml").write_text("- just\n- a list\n")

    with pytest.raises(SettingsError, match="mapping"):
        load_settings(environ={"MEMORY_ENV": "list"}, config_dir=config_dir)


def test_repr_never_shows_the_database_password_or_any_key(config_dir, tmp_path):
    secret_file = tmp_path / "anthropic_key"
    secret_file.write_text("sk-ant-from-file")
    settings = load_settings(
        environ={
            "DATABASE_URL": "postgresql://memory:hunter2-db-pw@db.internal:5432/memory",
            "OPENAI_API_KEY": "sk-openai-secret-value",
            "NUBASE_MEM_CHAT_PROVIDER": "anthropic",
            "ANTHROPIC_API_KEY_FILE": str(secret_file),
            "MEM_ADMIN_KEY": "admin-secret-value",
        },
        config_dir=config_dir,
    )
    assert settings.mem.chat_api_key == "sk-ant-from-file"

    for text in (repr(settings), str(settings), repr(settings.mem)):
        assert "hunter2-db-pw" not in text
        assert "sk-openai-secret-value" not in text
        assert "sk-ant-from-file" not in text
        assert "admin-secret-value" not in text
    assert "port=" in repr(settings)


def test_the_shipped_default_yaml_loads_with_port_8000_and_a_local_data_dir():
    settings = load_settings(environ={}, config_dir=CONFIG_DIR)

    assert settings.port == 8000
    assert settings.data_dir.name == ".data"
    assert str(settings.data_dir).endswith(".data")
    assert settings.data_dir.is_absolute()
    assert settings.data_dir.parent == PROJECT_ROOT
    assert settings.database_url is None
    assert settings.mem.enabled is True
    assert settings.mem.embedding_dimensions == 384
    assert settings.mem.search_fts_config == "simple"


def test_the_shipped_test_yaml_overlays_the_defaults():
    settings = load_settings(environ={"MEMORY_ENV": "test"}, config_dir=CONFIG_DIR)

    assert settings.pool_max_size == 4
    assert settings.log_level == "warning"
    assert settings.port == 8000


def test_settings_can_be_built_directly_without_any_file():
    settings = Settings().replace_mem(enabled=False)

    assert settings.mem.enabled is False
    assert Settings().mem.enabled is True
    assert settings.api_url == "http://127.0.0.1:8000"


def test_insecure_jwks_urls_are_refused_unless_the_development_setting_allows_them(config_dir):
    assert load_settings(environ={}, config_dir=config_dir).allow_insecure_jwks is False
    allowed = load_settings(environ={"MEM_ALLOW_INSECURE_JWKS": "true"}, config_dir=config_dir)
    assert allowed.allow_insecure_jwks is True

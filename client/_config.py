"""Where the client finds its server and key: arguments, then SIMPLANE_* variables, then the config file.

The config file is `$XDG_CONFIG_HOME/simplane/config.toml`, else `~/.config/simplane/config.toml`, holding
`address = "host:port"` and `api_key = "sp_..."`; `simplane up` writes it on loopback.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simplane.errors import InvalidArgument

DEFAULT_ADDRESS = "127.0.0.1:50051"


@dataclass(frozen=True)
class ClientConfig:
    address: str
    api_key: str | None


def config_path() -> Path:
    """The config file's path, whether or not it exists."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "simplane" / "config.toml"


def resolve_config(address: str | None, api_key: str | None) -> ClientConfig:
    """The first of argument, environment, config file for each setting; the file is read only if needed."""
    address = address or os.environ.get("SIMPLANE_ADDRESS") or None
    api_key = api_key or os.environ.get("SIMPLANE_API_KEY") or None
    if address is None or api_key is None:
        stored = _read_config_file(config_path())
        address = address or _setting(stored, "address")
        api_key = api_key or _setting(stored, "api_key")
    return ClientConfig(address=address or DEFAULT_ADDRESS, api_key=api_key)


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise InvalidArgument(f"config file {path}: {error}") from error


def _setting(stored: dict[str, Any], key: str) -> str | None:
    value = stored.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"config file {config_path()}: {key} must be a string")
    return value

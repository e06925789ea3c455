"""Every environment variable voicebus reads, from the settings objects themselves (README's table)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

from pydantic_settings import BaseSettings

from runtime.settings import CommonSettings

# One settings object per service; modules that define them.
SETTINGS_MODULES = (
    "runtime.settings",
    "voicebus.supervisor",
    "ingest.settings",
    "streams.turns.settings",
    "streams.telemetry.settings",
    "inference.settings",
)


def settings_classes() -> list[type[BaseSettings]]:
    for module in SETTINGS_MODULES:
        importlib.import_module(module)
    seen: list[type[BaseSettings]] = []

    def walk(cls: type[BaseSettings]) -> None:
        for sub in cls.__subclasses__():
            if sub not in seen and not sub.__module__.startswith("tests"):
                seen.append(sub)
                walk(sub)

    seen.append(CommonSettings)
    walk(CommonSettings)
    # Subclass order is import order, which differs between runs (a test suite imports services first):
    # order by the module list, then by name, so the table is the same however voicebus was imported.
    rank = {m: i for i, m in enumerate(SETTINGS_MODULES)}
    return sorted(seen, key=lambda c: (rank.get(c.__module__, len(rank)), c.__module__, c.__name__))


def env_vars() -> Iterator[tuple[str, str, str, str]]:
    """(variable, default, description, first settings class that reads it), each variable once."""
    done: set[str] = set()
    for cls in settings_classes():
        prefix = cls.model_config.get("env_prefix", "")
        for name, field in cls.model_fields.items():
            var = f"{prefix}{name}".upper()
            if var in done:
                continue
            done.add(var)
            value = field.get_default(call_default_factory=True)
            default = "" if value is None else str(value)
            yield var, default, field.description or "", f"{cls.__module__}.{cls.__name__}"


def markdown() -> str:
    rows = ["| variable | default | meaning | read by |", "|---|---|---|---|"]
    for var, default, text, owner in env_vars():
        default = default.replace(str(CommonSettings.model_fields["data_dir"].default), "~/.local/share/voicebus")
        default = default.replace(str(__import__("pathlib").Path.home()), "~")
        rows.append(f"| `{var}` | `{default}` | {text} | `{owner.split('.')[0]}` |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown())

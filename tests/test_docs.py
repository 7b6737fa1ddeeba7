"""Docs are part of done: every setting is documented, and the README gives the two commands."""

from __future__ import annotations

import re
from pathlib import Path

from kindred.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_in_the_configuration_reference() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", text))
    documented |= {
        "STRIPE_" + suffix
        for suffix in ("API_KEY", "WEBHOOK_SECRET", "API_BASE", "PRICE_PREMIUM_MONTHLY", "PRICE_PREMIUM_YEARLY")
    }
    missing = []
    for name, field in Settings.model_fields.items():
        env = str(field.validation_alias or name).upper()
        if env not in documented:
            missing.append(env)
    assert missing == []


def test_readme_gives_the_two_commands_that_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()

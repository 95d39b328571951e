"""Third-party plugins through the installed CLI: a broken one is skipped and named; a scaffolded one passes the kit.

Plugins are "installed" the way importlib.metadata finds them without pip: a `*.dist-info` folder (METADATA and
entry_points.txt) on PYTHONPATH, next to the plugin's modules. That is what an install writes, minus the copy.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from .conftest import CLI, ROOT

BROKEN_IMPORT = "raise ImportError('needs libacme 2.0')\n"
RAISING_HOOK = """\
from crm_activation import hookimpl


@hookimpl
def register_connectors():
    raise RuntimeError('licence server unreachable')
"""


def install_fake(site: Path, distribution: str, entry_points: dict[str, str]) -> None:
    """The metadata pip would write for `distribution`, declaring `entry_points` in group crm_activation."""
    info = site / f"{distribution.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1.0\n")
    lines = "".join(f"{name} = {module}\n" for name, module in entry_points.items())
    (info / "entry_points.txt").write_text(f"[crm_activation]\n{lines}")


def env_with(*paths: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_ACTIVATION_")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    return env


def broken_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "acme_broken.py").write_text(BROKEN_IMPORT)
    (site / "zeta_raising.py").write_text(RAISING_HOOK)
    install_fake(site, "acme-broken", {"acme": "acme_broken"})
    install_fake(site, "zeta-raising", {"zeta": "zeta_raising"})
    return site


def test_broken_plugins_are_skipped_and_reported(tmp_path: Path):
    env = env_with(broken_site(tmp_path))
    done = subprocess.run([str(CLI), "connectors", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    assert "facebook" in {c["platform"] for c in listing["connectors"]}  # the others still work
    skipped = {p["distribution"]: p for p in listing["skipped_plugins"]}
    assert skipped["acme-broken"]["stage"] == "import"
    assert skipped["acme-broken"]["error"] == "ImportError: needs libacme 2.0"
    assert skipped["zeta-raising"]["stage"] == "register_connectors"
    assert skipped["zeta-raising"]["error"] == "RuntimeError: licence server unreachable"
    warnings = " ".join(done.stderr.split())  # rich may wrap the log line
    assert "acme-broken" in warnings and "zeta-raising" in warnings and "Traceback" not in warnings
    table = subprocess.run([str(CLI), "connectors"], env=env, capture_output=True, text=True, timeout=60)
    assert table.returncode == 0 and "facebook" in table.stdout


def test_a_campaign_using_a_broken_plugin_names_its_distribution(tmp_path: Path):
    campaign = tmp_path / "campaign.yaml"
    (tmp_path / "contacts.csv").write_text("contact_id,email,country\n1,a@example.com,US\n")
    campaign.write_text(
        "campaign: uses-acme\naudience:\n  source: {type: csv, path: contacts.csv}\n"
        "channels:\n  default: [acme]\nplatforms:\n  acme:\n    account: {advertiser_id: '42'}\n"
        "    audiences:\n      awareness: {name: Acme}\n"
    )
    done = subprocess.run([str(CLI), "run", str(campaign), "--dry-run"], cwd=tmp_path,
                          env=env_with(broken_site(tmp_path)), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1, done.stderr
    assert "no connector named 'acme'" in error[0] and "'acme-broken'" in error[0]
    assert "needs libacme 2.0" in error[0] and "zeta-raising" not in error[0]  # the plugin named like the slug


def test_new_connector_scaffold_passes_the_contract_kit(tmp_path: Path):
    done = subprocess.run([str(CLI), "new-connector", "acme_ads", "--dir", "plugins"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    root = tmp_path / "plugins" / "crm-activation-acme-ads"
    for part in ("connector.py", "settings.py", "sandbox.py", "__init__.py"):
        assert (root / "src" / "crm_activation_acme_ads" / part).is_file()
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == "crm-activation-acme-ads"
    entry_points = project["project"]["entry-points"]["crm_activation"]
    assert entry_points == {"acme_ads": "crm_activation_acme_ads"}
    assert project["tool"]["setuptools"]["packages"]["find"]["where"] == ["src"]

    site = tmp_path / "site"  # what `pip install` would register, taken from the generated pyproject
    install_fake(site, project["project"]["name"], entry_points)
    env = env_with(root / "src", site)
    kit = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root,
                         env=env, capture_output=True, text=True, timeout=300)
    assert kit.returncode == 0, kit.stdout[-3000:]
    assert " passed" in kit.stdout and "failed" not in kit.stdout and "skipped" not in kit.stdout
    listed = subprocess.run([str(CLI), "connectors", "--json"], env=env, capture_output=True, text=True, timeout=60)
    acme = [c for c in json.loads(listed.stdout)["connectors"] if c["platform"] == "acme_ads"]
    assert acme and acme[0]["module"] == "crm_activation_acme_ads.connector" and acme[0]["sandbox"]

    again = subprocess.run([str(CLI), "new-connector", "acme_ads", "--dir", "plugins"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = subprocess.run([str(CLI), "new-connector", "Acme-Ads"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "not a platform slug" in bad.stderr


def test_the_guides_import_names_match_the_scaffolded_layout(tmp_path: Path):
    """Every `crm_activation_acme` import in the guides resolves in what `new-connector acme` writes (that layout).

    And every `SandboxRequest` helper is documented where sandboxes are explained.
    """
    from crm_activation import SandboxRequest

    done = subprocess.run([str(CLI), "new-connector", "acme"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    source = tmp_path / "crm-activation-acme" / "src"
    guides = "\n".join((ROOT / "docs" / name).read_text() for name in ("writing-a-connector.md", "contract-kit.md"))
    imports = re.findall(r"^from (crm_activation_acme[\w.]*) import ([\w, ]+)", guides, flags=re.MULTILINE)
    assert imports
    for module, names in imports:
        wanted = [name.strip() for name in names.split(",")]
        check = f"import {module} as m; missing = [n for n in {wanted!r} if not hasattr(m, n)]; assert not missing"
        ran = subprocess.run([sys.executable, "-c", check], env=env_with(source), capture_output=True, text=True)
        assert ran.returncode == 0, f"from {module} import {names}: {ran.stderr[-500:]}"
    guide = (ROOT / "docs" / "writing-a-connector.md").read_text()
    members = vars(SandboxRequest)
    helpers = [name for name in members if not name.startswith("_") and callable(members[name])]
    assert sorted(helpers) == ["header", "json", "param"]
    for name in helpers:
        assert f"`request.{name}(" in guide, name

"""docs/operating.md's part on seeing inside a running server stays true: its metrics are the catalog's, its
Prometheus configuration and alert rules pass promtool, its systemd unit runs the server with options it has,
its commands are the admin's."""
import re
import subprocess

import pytest

from reactor.ops.admin_commands import COMMANDS
from reactor.ops.catalog import CHAT_METRICS
from tests.support import ROOT

DOC = ROOT / "docs" / "operating.md"
TEXT = DOC.read_text()


def block(language, first_line):
    """The fenced ``language`` block whose first line is ``first_line``."""
    found = [b for b in re.findall(rf"```{language}\n(.*?)```", TEXT, re.DOTALL) if b.startswith(first_line)]
    assert len(found) == 1, first_line
    return found[0]


def test_every_metric_and_label_value_is_explained():
    table = TEXT.split("What each metric means:")[1].split("## Health checks")[0]
    for metric in CHAT_METRICS:
        assert f"`{metric.name}" in table, metric.name
        if metric.label:
            row = next(line for line in table.splitlines() if f"`{metric.name}{{{metric.label}}}`" in line)
            missing = [v for v in metric.values if f"`{v}`" not in row]
            assert not missing, (metric.name, missing)


def test_the_admin_commands_are_the_ones_the_command_takes():
    table = TEXT.split("## The admin command")[1].split("## Logs for machines")[0]
    assert set(re.findall(r"^\| `(\w+)", table, re.MULTILINE)) == set(COMMANDS)


def test_the_unit_starts_the_server_with_options_it_has():
    unit = block("ini", "# /etc/systemd/system/reactor-chat.service")
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert re.search(r"^LimitNOFILE=\d{6,}$", unit, re.MULTILINE)
    assert "RuntimeDirectory=reactor-chat" in unit and "--admin-socket /run/reactor-chat/" in unit
    start = unit.split("ExecStart=")[1].split("\n#")[0]
    known = (ROOT / "server_main.py").read_text() + (ROOT / "reactor" / "ops" / "options.py").read_text()
    for option in re.findall(r"(--[a-z-]+)", start):
        assert f'"{option}"' in known, option


@pytest.mark.e2e
def test_the_scrape_config_and_the_alert_rules_pass_promtool(tmp_path):
    from tests.prometheus import promtool
    (tmp_path / "prometheus.yml").write_text(block("yaml", "# prometheus.yml"))
    (tmp_path / "chat-alerts.yml").write_text(block("yaml", "# chat-alerts.yml"))
    rules = subprocess.run([str(promtool()), "check", "rules", str(tmp_path / "chat-alerts.yml")],
                           capture_output=True, text=True, timeout=60)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 3 rules found" in rules.stdout
    config = subprocess.run([str(promtool()), "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert config.returncode == 0, config.stdout + config.stderr

"""aegis.router.settings_doc: docs/configuration.md's table is the code's, row for row.

The page is regenerated in memory and compared with the file, so a setting added,
renamed or given another default in ``Settings`` fails here until
``python -m aegis.router.settings_doc`` is run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aegis.router.settings import options
from aegis.router.settings_doc import BEGIN, END, main, render, table

PAGE = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def test_the_configuration_page_is_generated_from_the_code() -> None:
    page = PAGE.read_text()
    assert render(page) == page, "stale: run python -m aegis.router.settings_doc"


def test_the_configuration_page_lists_every_setting_with_its_default() -> None:
    rows = [line for line in PAGE.read_text().splitlines() if line.startswith("| `AEGIS_")]
    assert len(rows) == len(options())
    for option in options():
        (row,) = [r for r in rows if f"`{option.env}`" in r.split("|")[1]]
        assert f"`{option.flag}`" in row.split("|")[2], option.flag
        if option.shown_default and option.default is not None:
            default = option.default
            shown = f"{default:g}" if isinstance(default, float) else str(default)
            assert f"`{shown}`" in row.split("|")[3], (option.env, row)


def test_defaults_no_value_shows_are_stated_in_words() -> None:
    rows = {row.split("|")[1].strip(" `"): row.split("|") for row in table().splitlines()[2:]}
    assert rows["AEGIS_INSECURE"][3].strip() == "off"
    assert rows["AEGIS_MICRO_DISCOVERY"][2].strip() == "`--micro-discovery`, `--no-micro-discovery`"
    assert rows["AEGIS_MICRO_DISCOVERY"][3].strip() == "on"
    assert "Default:" not in rows["AEGIS_MICRO_DISCOVERY"][4]  # said once, in its column
    assert rows["AEGIS_LOG_FORMAT"][3].strip() == "console on a terminal, else json"
    assert rows["AEGIS_NATS_URL"][3].strip() == "unset"


def test_render_keeps_the_prose_and_replaces_only_the_table() -> None:
    page = f"# Title\n\nbefore\n\n{BEGIN}\n| stale |\n{END}\n\nafter\n"
    rendered = render(page)
    assert rendered.startswith(f"# Title\n\nbefore\n\n{BEGIN}\n| variable |")
    assert rendered.endswith(f"|\n{END}\n\nafter\n")
    assert "| stale |" not in rendered
    assert render(rendered) == rendered


def test_render_refuses_a_page_without_its_markers() -> None:
    with pytest.raises(ValueError, match="markers"):
        render("# Configuration\n")


def test_main_writes_the_page_and_check_tells_stale_from_current(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "configuration.md"
    page.write_text(f"intro\n{BEGIN}\n{END}\n")
    assert main([str(page), "--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert main([str(page)]) == 0
    assert "| `AEGIS_HTTP_PORT` |" in page.read_text()
    assert main([str(page), "--check"]) == 0

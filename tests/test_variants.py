"""rodi.variants: the one table of the objective's variants, and the places that repeat it (the
README, the module's own docstring, the config's choices) agree with it."""

import importlib
import re
from pathlib import Path

import pytest

import rodi.config
import rodi.variants
from rodi.variants import DEFAULT, NAMES, TABLE, VARIANTS, variant

README = Path(__file__).resolve().parents[1] / "README.md"


def _markdown_table(text: str, after: str) -> list[dict[str, str]]:
    """The rows of the first markdown table after the line that contains ``after``, as
    {header: cell}."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if after in line)
    rows = []
    for line in lines[start + 1:]:
        line = line.strip()
        if not line.startswith("|"):
            if rows:
                break
            continue
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    header, separator, *body = rows
    assert all(set(cell) <= set("-: ") for cell in separator), separator
    return [dict(zip(header, row, strict=True)) for row in body]


def _name(cell: str) -> str:
    return re.match(r"``?([a-z-]+)``?", cell).group(1)


def _yes(cell: str) -> bool:
    assert cell in ("yes", "no"), cell
    return cell == "yes"


def _kl(cell: str) -> tuple[bool, bool]:
    """(KL term in the loss, adaptive gamma) from a KL weight cell: 0, fixed or adaptive."""
    kind = cell.split()[0].rstrip(",")
    assert kind in ("0", "fixed", "adaptive"), cell
    return kind != "0", kind == "adaptive"


@pytest.fixture(scope="module")
def readme_rows() -> dict[str, dict[str, str]]:
    rows = _markdown_table(README.read_text(encoding="utf-8"),
                           "The objective's variants are one configuration key")
    return {_name(row["variant"]): row for row in rows}


def test_the_readme_lists_every_variant_in_the_table_order(readme_rows):
    assert tuple(readme_rows) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_the_readme_row_of_each_variant_matches_its_record(readme_rows, name):
    row, record = readme_rows[name], variant(name)
    assert _kl(row["KL weight"]) == (record.kl, record.adaptive_gamma)
    assert ("deterministic pose code" in row["KL weight"]) == (not record.stochastic_pose)
    assert _yes(row["MI constraint (T)"]) == record.constraint
    assert _yes(row["adaptive gamma (T')"]) == record.adaptive_gamma
    assert ("(default)" in row["variant"]) == (name == DEFAULT)


@pytest.mark.parametrize("name", NAMES)
def test_the_module_docstring_row_of_each_variant_matches_its_record(name):
    rows = {_name(row["variant"]): row
            for row in _markdown_table(rodi.variants.__doc__, "never compare names")}
    assert tuple(rows) == NAMES
    row, record = rows[name], variant(name)
    assert _yes(row["stochastic pose"]) == record.stochastic_pose
    assert _kl(row["KL weight"]) == (record.kl, record.adaptive_gamma)
    assert _yes(row["MI constraint (T)"]) == record.constraint
    assert _yes(row["adaptive gamma (T')"]) == record.adaptive_gamma
    assert (_name(row["extra terms"]) if row["extra terms"] else None) == record.extra_terms


def test_the_config_offers_exactly_the_variants_and_defaults_to_the_default():
    assert rodi.config.VARIANTS == NAMES
    assert rodi.config.ObjectiveConfig().variant == DEFAULT
    assert tuple(v.name for v in TABLE) == NAMES == tuple(VARIANTS)


def test_an_unknown_name_raises_a_key_error_listing_the_names():
    with pytest.raises(KeyError) as caught:
        variant("nope")
    assert caught.value.args[0] == (
        "unknown variant 'nope'; choose one of ae, variational, adversarial, rodi, drnet")
    assert all(name in caught.value.args[0] for name in NAMES)


@pytest.mark.parametrize("record", TABLE, ids=NAMES)
def test_each_record_is_consistent(record):
    assert variant(record.name) is record
    assert record.summary
    # a deterministic pose code has no KL to weigh; a stochastic one always has it
    assert record.kl == record.stochastic_pose
    # gamma adapts to the gap between T' and the constrained T: no adaptive gamma without T
    assert record.constraint or not record.adaptive_gamma
    if record.extra_terms is not None:
        importlib.import_module(f"rodi.objectives.{record.extra_terms}")

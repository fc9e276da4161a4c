from pathlib import Path

from remora.config.reference import render


def test_configuration_doc_matches_the_registry() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    assert render() in doc, "regenerate with: python -m remora.config.reference"

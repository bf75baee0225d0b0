"""The pages' words: every message a template says has its Japanese in the catalogue (Japanese is the default
language, and an untranslated message would show in English), and the catalogue keeps no word no page says."""
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

REPO = Path(__file__).resolve().parents[2]
SITES = [path.parent.parent for path in sorted(REPO.glob("services/*/templates/base.html"))]


def said_by_templates(site):
    return {message for _file, _line, message, _comments, _context in extract_from_dir(
        site / "templates", method_map=[("**.html", "jinja2")], options_map={"**.html": {"extensions": ""}})}


@pytest.mark.parametrize("site", SITES, ids=[site.name for site in SITES])
def test_every_word_a_page_says_is_in_japanese_and_the_catalogue_keeps_no_other(site):
    with (site / "locale" / "ja" / "LC_MESSAGES" / "messages.po").open("rb") as source:
        catalogue = read_po(source)
    translated = {message.id for message in catalogue if message.id and message.string}
    said = said_by_templates(site)
    assert said, "the extractor found no message at all"
    assert sorted(said - translated) == [] and sorted(translated - said) == []


def test_the_desk_and_the_public_catalogue_have_pages():
    assert [site.name for site in SITES] == ["gateway", "opac"]

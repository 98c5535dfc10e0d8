"""extract_media_refs on hostile events: the cap on references and on problem lines.

One 64 KiB formatted_body holds about 2,500 `<img src="mxc://...">`; each reference costs a
download and each problem line an audit row, so extraction keeps `max_refs` references and
MAX_PROBLEMS problems and only counts the rest.
"""

from __future__ import annotations

from typing import Any

from bot.eventbudget import EventBudget
from bot.extract import MAX_PROBLEMS, extract_media_refs

SYNAPSE_MAX_EVENT = 64 * 1024


def html_message(formatted_body: str, **content: Any) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "sender": "@mallory:example.org",
        "content": {"msgtype": "m.text", "body": "look", "format": "org.matrix.custom.html",
                    "formatted_body": formatted_body, **content},
    }


def imgs(count: int, start: int = 0, server: str = "example.org") -> str:
    return "".join(f'<img src="mxc://{server}/m{i}">' for i in range(start, start + count))


def hostile_body() -> tuple[str, int]:
    """As many distinct image references as fit in one event Synapse accepts."""
    count = 0
    while len(imgs(count + 100, server="s")) < SYNAPSE_MAX_EVENT - 1024:
        count += 100
    return imgs(count, server="s"), count


def test_a_full_event_of_image_references_yields_the_cap_and_counts_the_rest() -> None:
    body, count = hostile_body()
    assert count >= 2500
    result = extract_media_refs(html_message(body), max_refs=20)
    assert [r.mxc for r in result.refs] == [f"mxc://s/m{i}" for i in range(20)]
    assert result.dropped == count - 20
    assert result.problems == ()


def test_without_a_cap_every_reference_is_returned() -> None:
    body, count = hostile_body()
    assert len(extract_media_refs(html_message(body)).refs) == count


def test_references_past_the_cap_are_not_even_validated() -> None:
    # Invalid URIs after the cap make no problem lines: past it, the body is only counted.
    body = imgs(3) + "".join(f'<img src="mxc://-bad-/{i}">' for i in range(50))
    result = extract_media_refs(html_message(body), max_refs=3)
    assert len(result.refs) == 3
    assert result.problems == ()
    assert result.dropped == 50


def test_the_attachment_comes_before_inline_images_and_is_never_cut() -> None:
    event = html_message(imgs(30), msgtype="m.image", url="mxc://example.org/attachment")
    result = extract_media_refs(event, max_refs=5)
    assert result.refs[0].mxc == "mxc://example.org/attachment"
    assert len(result.refs) == 5 and result.dropped == 26


def test_a_reference_repeated_past_the_cap_is_counted_once_and_kept_ones_not_at_all() -> None:
    body = imgs(2) + imgs(2) + imgs(3, start=10) * 40
    result = extract_media_refs(html_message(body), max_refs=2)
    assert result.dropped == 3


def test_an_edit_cannot_double_the_budget() -> None:
    event = html_message(imgs(15))
    event["content"]["m.new_content"] = {"msgtype": "m.text", "body": "x", "formatted_body": imgs(15, start=100)}
    result = extract_media_refs(event, max_refs=20)
    assert len(result.refs) == 20 and result.dropped == 10


def test_past_the_cap_markup_is_only_scanned_even_when_the_parser_would_choke() -> None:
    # A marked section Python's parser raises on, after the cap: never parsed, no problem.
    body = imgs(4) + "\n<![if !supportLists]>\n" + imgs(6, start=4)
    result = extract_media_refs(html_message(body), max_refs=4)
    assert len(result.refs) == 4 and result.dropped == 6 and result.problems == ()


def test_thousands_of_bad_sources_make_a_bounded_number_of_problem_lines() -> None:
    body = "".join(f'<img src="https://evil.example/{i}.png">' for i in range(3000))
    result = extract_media_refs(html_message(body), max_refs=20)
    assert len(result.problems) == MAX_PROBLEMS
    assert result.problems_dropped == 3000 - MAX_PROBLEMS
    assert result.refs == ()


def test_the_overflow_is_audited_in_one_line_each_with_the_counts() -> None:
    # Bad sources first: past the cap nothing is parsed, so they would not be seen at all.
    body = "".join(f'<img src="http://x/{i}">' for i in range(MAX_PROBLEMS + 7)) + imgs(25)
    budget = EventBudget(max_refs=20)
    lines = budget.overflow(extract_media_refs(html_message(body), max_refs=budget.max_refs))
    assert lines == [
        "not scanned: too many references: 5 beyond the first 20 (processing.max_refs_per_event)",
        "malformed event content: 7 more problems not listed",
    ]
    assert budget.overflow(extract_media_refs(html_message(imgs(20)), max_refs=20)) == []

"""The `<think>` splitter, fed content as a server streams it: cut anywhere, released as soon as possible."""

from itertools import combinations

import pytest

from chat.providers.base import Delta
from chat.providers.think_tags import ThinkTagSplitter

CONTENT = "<think>Two and two.</think>\n\nFour."
PARTS = [("reasoning", "Two and two."), ("text", "Four.")]


def parts(*chunks: str) -> list[tuple[str, str]]:
    """The reply's parts, (kind, text), made of the content streamed in these chunks."""
    splitter = ThinkTagSplitter()
    deltas = [delta for chunk in chunks for delta in splitter.feed(chunk)] + splitter.flush()
    merged: list[tuple[str, str]] = []
    for delta in deltas:
        assert delta.text, "no empty deltas"
        if merged and merged[-1][0] == delta.kind:
            merged[-1] = (delta.kind, merged[-1][1] + delta.text)
        else:
            merged.append((delta.kind, delta.text))
    return merged


def test_an_answer_without_a_tag_is_all_text():
    assert parts("Four", ", of course.") == [("text", "Four, of course.")]


def test_a_think_block_that_opens_the_answer_is_reasoning_and_the_rest_text():
    assert parts(CONTENT) == PARTS


@pytest.mark.parametrize("cut", range(1, len(CONTENT)), ids=lambda cut: f"{CONTENT[:cut]!r}|{CONTENT[cut:]!r}")
def test_the_content_may_be_cut_in_two_anywhere_even_inside_a_tag(cut):
    assert parts(CONTENT[:cut], CONTENT[cut:]) == PARTS


def test_the_content_may_be_cut_in_three_anywhere():
    for first, second in combinations(range(1, len(CONTENT)), 2):
        chunks = CONTENT[:first], CONTENT[first:second], CONTENT[second:]
        assert parts(*chunks) == PARTS, chunks


def test_the_content_may_come_one_character_a_chunk():
    assert parts(*CONTENT) == PARTS


def test_answer_text_is_released_at_once():
    splitter = ThinkTagSplitter()

    assert splitter.feed("Four") == [Delta("Four")]
    assert splitter.feed(" <think>") == [Delta(" <think>")]


def test_the_start_of_an_answer_is_held_only_while_it_may_become_the_opening_tag():
    splitter = ThinkTagSplitter()

    assert splitter.feed(" <thi") == []
    assert splitter.feed("s is") == [Delta(" <this is")]


def test_reasoning_is_held_back_only_by_what_may_become_the_closing_tag():
    splitter = ThinkTagSplitter()

    assert splitter.feed("<think>Two a") == [Delta("Two a", "reasoning")]
    assert splitter.feed("nd two </th") == [Delta("nd two ", "reasoning")]
    assert splitter.feed("e rest") == [Delta("</the rest", "reasoning")]
    assert splitter.feed("<") == []
    assert splitter.feed("/think>Four.") == [Delta("Four.")]


def test_whitespace_before_the_opening_tag_is_allowed():
    assert parts("\n ", "<think>Two and two.</think>Four.") == PARTS


def test_whitespace_that_opens_an_answer_without_a_tag_stays_in_it():
    assert parts("\n ", "Four.") == [("text", "\n Four.")]


def test_whitespace_between_the_block_and_the_answer_is_dropped_even_in_several_chunks():
    assert parts("<think>Two and two.</think>", "\n", " \n", "Four.") == PARTS


def test_whitespace_that_opens_the_reasoning_is_dropped():
    assert parts("<think>", "\n", "Two and two.</think>Four.") == PARTS


def test_a_think_tag_later_in_the_answer_stays_text():
    answer = "Write `<think>x</think>` to show reasoning."

    assert parts("Write `", "<think>x</think>", "` to show reasoning.") == [("text", answer)]


def test_a_second_think_block_after_the_first_is_answer_text():
    assert parts(CONTENT, " <think>again</think>") == [*PARTS[:1], ("text", "Four. <think>again</think>")]


def test_an_empty_think_block_leaves_only_the_answer():
    assert parts("<think>\n\n</think>\n\n", "Four.") == [("text", "Four.")]


def test_a_tag_with_another_name_is_text():
    assert parts("<thinking>Hmm</thinking>Four.") == [("text", "<thinking>Hmm</thinking>Four.")]


def test_an_unterminated_block_is_reasoning_to_the_end():
    assert parts("<think>Two and", " two.") == [("reasoning", "Two and two.")]


def test_an_unterminated_block_keeps_a_closing_tag_cut_off_at_the_end_as_reasoning():
    assert parts("<think>Two and two.</thi") == [("reasoning", "Two and two.</thi")]


def test_an_answer_that_ends_as_the_start_of_the_opening_tag_is_text():
    assert parts("<thi") == [("text", "<thi")]


def test_nothing_fed_gives_no_parts():
    assert parts() == []
    assert parts("") == []

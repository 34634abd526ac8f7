"""chat/tree.py: positions, paths and leaves of a conversation's tree, from its rows alone."""

from chat.tree import Tree

# 1 Q ─ 2 A ─ 3 Q ─ 4 A (stopped) ─ 6 A (its continuation)
#         │         └ 7 A (a regeneration of 4)
#         └ 5 Q (an edit of 3) ─ 8 A
# 9 Q (an edit of 1) ─ 10 A
ROWS = [
    (10, 9, "assistant"),
    (1, None, "user"),
    (2, 1, "assistant"),
    (3, 2, "user"),
    (4, 3, "assistant"),
    (5, 2, "user"),
    (6, 4, "assistant"),
    (7, 3, "assistant"),
    (8, 5, "assistant"),
    (9, None, "user"),
]
TREE = Tree.of(ROWS)


def test_siblings_are_the_children_of_one_parent_oldest_first_roots_included():
    assert TREE.siblings(7) == [4, 7]
    assert TREE.siblings(1) == TREE.siblings(9) == [1, 9]
    assert TREE.siblings(2) == [2]


def test_a_position_gives_the_parent_the_siblings_a_zero_based_index_and_the_count():
    assert TREE.position(5) == {"parent": 2, "siblings": [3, 5], "index": 1, "count": 2}
    assert TREE.position(1) == {"parent": None, "siblings": [1, 9], "index": 0, "count": 2}


def test_a_path_runs_from_the_root_to_the_message():
    assert TREE.path_to(6) == [1, 2, 3, 4, 6]
    assert TREE.path_to(9) == [9]


def test_the_newest_leaf_under_a_message_is_the_one_written_last_below_it():
    assert TREE.newest_leaf_under(1) == 8
    assert TREE.newest_leaf_under(3) == 7
    assert TREE.newest_leaf_under(4) == 6
    assert TREE.newest_leaf_under(10) == 10
    assert TREE.newest_leaf() == 10


def test_the_head_of_an_answer_is_its_first_reply_up_the_chain_of_continuations():
    assert TREE.answer_head(6) == 4
    assert TREE.answer_head(7) == 7
    assert TREE.answer_head(2) == 2


def test_an_empty_conversation_has_no_leaf():
    assert Tree.of([]).newest_leaf() is None
    assert 1 not in Tree.of([])

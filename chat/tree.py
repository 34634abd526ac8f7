"""A conversation's messages as a tree, from their (id, parent, role) alone: no database access here.

Every message has a parent (None for a first message). Siblings, the children of one parent, are
ordered by id (the order they were written). A user message's siblings are its edits; a reply's are
its regenerations. A reply whose parent is a reply continues it: the chain from the first reply to
its last continuation is one answer (`answer_head`), which a regenerate replaces as a whole.
The message with the highest id under a message is always a leaf (a child is newer than its parent),
and it is the leaf a switch to that message shows: the branch below it that was written last.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

ASSISTANT = "assistant"


@dataclass(frozen=True)
class Tree:
    """Parents, roles and ordered children of every message of one conversation."""

    parents: dict[int, int | None]
    roles: dict[int, str]
    children: dict[int | None, list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: Iterable[tuple[int, int | None, str]]) -> "Tree":
        """The tree of `(id, parent id, role)` rows, in any order."""
        ordered = sorted(rows)
        tree = cls(parents={pk: parent for pk, parent, _ in ordered}, roles={pk: role for pk, _, role in ordered})
        for pk, parent, _ in ordered:
            tree.children.setdefault(parent, []).append(pk)
        return tree

    def __contains__(self, message_id: object) -> bool:
        return message_id in self.parents

    def siblings(self, message_id: int) -> list[int]:
        """The message and its siblings, oldest first."""
        return self.children[self.parents[message_id]]

    def path_to(self, message_id: int) -> list[int]:
        """The ids from the root to the message, both included."""
        path = []
        current: int | None = message_id
        while current is not None:
            path.append(current)
            current = self.parents[current]
        path.reverse()
        return path

    def newest_leaf_under(self, message_id: int) -> int:
        """The message written last in the subtree of `message_id` (itself if it has no children): a leaf."""
        newest = message_id
        pending = [message_id]
        while pending:
            for child in self.children.get(pending.pop(), ()):
                newest = max(newest, child)
                pending.append(child)
        return newest

    def newest_leaf(self) -> int | None:
        """The leaf written last in the whole conversation, None if it has no message."""
        return max(self.parents, default=None)

    def answer_head(self, message_id: int) -> int:
        """The first reply of the answer a reply belongs to: up the chain of replies it continues."""
        head = message_id
        while (parent := self.parents[head]) is not None and self.roles[parent] == ASSISTANT:
            head = parent
        return head

    def position(self, message_id: int) -> dict[str, object]:
        """What a client needs to draw "< 2/3 >" under a message: its parent, its siblings' ids (itself
        included, oldest first), its 0-based index among them and their count."""
        siblings = self.siblings(message_id)
        return {
            "parent": self.parents[message_id],
            "siblings": list(siblings),
            "index": siblings.index(message_id),
            "count": len(siblings),
        }

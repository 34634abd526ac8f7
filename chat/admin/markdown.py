"""Model output as the chat shows it, for the admin transcript: Markdown rendered on the server
(markdown-it-py, CommonMark with GFM tables and strikethrough) and then sanitised (nh3, an allowlist).

Raw HTML in the text is never passed through: markdown-it escapes it (`html` off), and nh3 keeps only
the tags and attributes Markdown itself makes, links limited to http(s) and mailto, each opened with
rel="noopener noreferrer nofollow". The result is safe to mark safe; the raw text stays one click away.
"""

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

_PARSER = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)

TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
# No `style` (the CSP allows no inline style: table alignment is lost) and no images (a remote image
# would tell its server that staff read the transcript; the CSP would block it anyway).
ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "code": {"class"}}
URL_SCHEMES = {"http", "https", "mailto"}


def markdown_html(text: str) -> SafeString:
    """`text` (Markdown a model wrote) as sanitised HTML."""
    html = _PARSER.render(text)
    clean = nh3.clean(
        html,
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
    return mark_safe(clean)  # noqa: S308 - nh3's allowlist output, see the module docstring

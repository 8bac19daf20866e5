"""Text that staff write (FAQ answers) turned into HTML that is safe to put in a customer page."""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

# html=False: raw HTML in the source comes out as visible text; linkify off: only links written
# as links become links. markdown-it also refuses javascript:, vbscript:, file: and data: links
# (data: images pass it, and the allow-list below drops every image).
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False})

# markdown-it is not trusted to be the only guard: every answer passes this allow-list too, so no
# attribute but href survives (no on*, style, hx-*, data-*), and no scheme but these four.
_cleaner = nh3.Cleaner(
    tags={"p", "br", "strong", "em", "ul", "ol", "li", "a", "code", "blockquote", "h3", "h4"},
    attributes={"*": set(), "a": {"href"}},  # "*": none of nh3's default lang and title either
    url_schemes={"http", "https", "mailto", "tel"},
    url_relative="deny",  # "/x" and "//host/x" name no scheme: refused as well
    link_rel="nofollow noopener",
)


def render_markdown(md: str) -> Markup:
    tokens = _markdown.parse(md)
    for token in tokens:
        # An answer sits below the page's h1 and its category's h2, so its "#" and "##" become h3
        # and the rest h4 (rather than the allow-list stripping an h1 down to loose text).
        if token.type in ("heading_open", "heading_close"):
            token.tag = "h3" if token.tag in ("h1", "h2") else "h4"
    return Markup(_cleaner.clean(_markdown.renderer.render(tokens, _markdown.options, {})))

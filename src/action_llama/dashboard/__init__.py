"""The web dashboard `al start` serves at `/` on the gateway's port.

    site.py      Dashboard (sessions, login links, change feed, templates); install(app, ...)
    auth.py      sessions, one-time login links, the same-site check
    login.py     /login, /logout, the session gate, POST /control/dashboard/login-link
    pages.py     the pages: agents, agent, run, activity (server-rendered, Jinja2)
    streams.py   /live/*: their live parts as server-sent events
    actions.py   POST forms: run, pause, resume, kill, stop, rerun, replay
    views.py     what each page shows, read off the event loop
    live.py      Changes (what the daemon reports), shared renders, the SSE wire format
    logs.py      reading a run's log by byte offset, in bounded pieces
    render.py    templates and their filters
    headers.py   the content security policy and other headers of every answer
    templates/   Jinja2 templates
    static/      CSS, our script, and htmx with its SSE extension (vendored: scripts/vendor-htmx)

Every page, stream and action needs a session; the login page and the static files do not.
"""

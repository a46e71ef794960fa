"""Response headers that keep the panel out of frames, scripts out of pages and pages out of caches."""

from flask import request

# No inline scripts anywhere: every script is a file under static/. Inline
# styles stay allowed (Bootstrap utilities and the SVG chart use them; they
# cannot run code).
CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "frame-ancestors 'none'",
    "form-action 'self'",
    "base-uri 'none'",
    "object-src 'none'",
])


def init_app(app) -> None:
    """Add the security headers to every response."""

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.endpoint != "static":
            # Panel pages show secrets once (a new signing secret, a token):
            # no browser or proxy may keep a copy, nor replay one after sign-out.
            response.headers["Cache-Control"] = "no-store"
        if app.config["HOOKLINE_ENV"] == "production":
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

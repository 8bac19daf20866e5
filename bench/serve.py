"""The site as `make bench` serves it: production settings, except the per-IP rate limits.

The load generator is one IP sending hundreds of requests a second; the per-IP limits (30 posts
a minute on the recharge and balance forms) would turn nearly all of them into 429s, and the run
would measure the limiter's refusals instead of the pages, so they are switched off here and only
here. The per-card password throttle stays on: the bench only ever sends right passwords, and a
success clears the count, so it never engages. The site-wide budget for card-password checks from
unknown browsers (HEYON_PASSWORD_CHECK_BUDGET, 100 a second) is raised out of reach for the same
reason: wrk sends no cookies, so every lookup comes from an unknown browser, and past 100 a second
the row would count the budget's 429s (bench/spray.py measures the site with it in force).
"""
from flask import Response

from heyon_site import create_app

app = create_app({"RATELIMIT_ENABLED": False, "HEYON_PASSWORD_CHECK_BUDGET": "1000000 per second"})

# The floor Lighthouse's LCP is measured against in the same run: a page of about 1 KB with one
# line of text, nothing to fetch, no script (issue 13: its simulation scales with the CPU).
BLANK = ("<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport "
         'content="width=device-width, initial-scale=1"><title>Blank</title><link rel=icon href="data:,">'
         "</head><body><main><h1>Recharge your Heyon card</h1><p>" + "A line of text. " * 52 + "</p></main></body></html>")


@app.get("/bench/blank")
def blank() -> Response:
    return Response(BLANK, mimetype="text/html")

"""The site as `make bench` serves it: production settings, except the per-IP rate limits.

The load generator is one IP sending hundreds of requests a second; the per-IP limits (30 posts
a minute on the recharge and balance forms) would turn nearly all of them into 429s, and the run
would measure the limiter's refusals instead of the pages, so they are switched off here and only
here. The per-card password throttle stays on: the bench only ever sends right passwords, and a
success clears the count, so it never engages.
"""
from heyon_site import create_app

app = create_app({"RATELIMIT_ENABLED": False})

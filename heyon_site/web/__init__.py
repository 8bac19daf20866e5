"""What every page shares: the fragment convention, the page cache, error pages, languages,
security headers and health checks, and the per-address limits."""

"""The FAQ: entries per language, their Markdown (sanitised), the starter set, `flask faq`."""

"""The web page and the JSON API: ``poetry-lm serve``."""

"""The analysts' side: a Plausible-compatible stats API over the anonymised events.

A request is parsed into one typed :class:`~proxy.stats.query.Query` (``parse``), SQL is built from that
value only, with every value a bound ``{name:Type}`` parameter (``sql``), visits follow one definition
(``visits``), small counts are folded by one rule (``suppress``), dates follow the site's time zone
(``timezone``). ``engine`` runs a query; ``render`` answers it as v2/v1 JSON or CSV; ``keys`` and
``ratelimit`` decide who may ask; ``routes`` serves it.
"""

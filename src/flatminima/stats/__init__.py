"""Statistics shared by the verdicts: intervals over seeds (``intervals``), power and pre-registration
(``power``), the decision rule (``decision``) and stationarity of a time series (``stationarity``).

Every verdict in the book is computed from a run's own data with these functions, so the same test
reads the same way in every chapter. The layer imports only from ``core``.
"""

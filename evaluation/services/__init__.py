"""Every write of the judges: judges and versions, provider keys, sampling, runs, external scores
and backfills, one module per concern on a shared base (evaluation.services.shared).

Import from the modules themselves (``from evaluation.services.runs import scores_run``).
"""

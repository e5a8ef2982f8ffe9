"""``workbench.audit``: the four papers' tests of attribution methods run on one model and data,
as a verdict table and one offline report (``run``: the entry point; ``specs``: models and data
named by text; ``measure``: the measurements; ``verdicts``: the tests and thresholds; ``page``:
the written report)."""
from workbench.auditing.run import DEFAULT_METHODS, AuditResult, audit

__all__ = ["audit", "AuditResult", "DEFAULT_METHODS"]

"""The one exception the CA raises for anything an operator or a workload got wrong."""

from __future__ import annotations


class CaError(Exception):
    """A refusal whose message is the whole explanation: the file, CSR or step, and what is wrong.

    Callers show it as is (a start-up error, a 400 or 409 body), so it never carries secrets."""

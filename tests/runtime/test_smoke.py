"""The foundation: the Worker from src/ answers over HTTP from workerd."""

import httpx
import pytest

# Worker behaviour: scripts/test runs these on every runtime, Pyodide 0.28 and 314 included.
pytestmark = pytest.mark.every_runtime


def test_worker_answers_from_src(stack):
    """A request to the local Worker is answered by code in src/ running in workerd."""
    r = httpx.get(stack.worker + "/")
    assert r.status_code == 200

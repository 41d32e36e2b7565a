"""Deprecated alias of :mod:`analog_hep.conformance.plugin`, the pytest integration of the
driver conformance kit.

``pytest -p analog_hep.drivers.conformance_plugin`` and ``from
analog_hep.drivers.conformance_plugin import conformance_tests`` keep working (the same
hooks and function). ``analog_hep.drivers`` never imports this module, so the kit (which
lives above ``drivers``) is imported only when a test asks for it. New code uses
``analog_hep.conformance.plugin``.
"""

from __future__ import annotations

from ..conformance.plugin import conformance_tests as conformance_tests
from ..conformance.plugin import pytest_addoption as pytest_addoption
from ..conformance.plugin import pytest_generate_tests as pytest_generate_tests

__all__ = ["conformance_tests", "pytest_addoption", "pytest_generate_tests"]

"""The package's own tests: the analog-hep conformance kit, one test per check."""

from analog_hep.drivers.conformance_plugin import conformance_tests

test_toychip_conformance = conformance_tests("toychip")

"""`portdoctor verify SPEC`: deployment validation of this host against a YAML spec.

spec.py reads and validates the spec (every error with file and line), run.py judges it on
this host's facts and probes (failures diagnosed: cause and fix), generate.py writes a spec from
the current host, junit.py writes JUnit XML for CI.
"""

from __future__ import annotations

from portdoctor.verify.spec import Entry, Spec, SpecError, load_spec, parse_spec

__all__ = ["Entry", "Spec", "SpecError", "load_spec", "parse_spec"]

"""`verify` and `audit`: a host against its spec, its exposure against a baseline."""

from __future__ import annotations

import os
import sys

import click

from portdoctor.cliutil import check_writable, output_options, fmt_of
from portdoctor.errors import BadInput, ExitCode


# --------------------------------------------------------------------------- verify, audit


@click.command()
@click.argument("spec", required=False, metavar="SPEC")
@click.option("--generate", is_flag=True,
              help="Write a spec of this host as it is now to SPEC (stdout when SPEC is omitted or -).")
@click.option("--force", is_flag=True, help="With --generate: overwrite SPEC if it exists.")
@click.option("--junit", "junit", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Also write the results as JUnit XML to FILE (for CI).")
@click.option("--no-diagnose", is_flag=True, help="Do not diagnose failures (faster; no cause or fix).")
@click.option("--verbose", "-v", is_flag=True, help="Also show the evidence of passing checks.")
@output_options
def verify(spec: str | None, generate: bool, force: bool, junit: str | None, no_diagnose: bool, verbose: bool,
           fmt: str, as_json: bool) -> None:
    """Check this host against SPEC (YAML): listeners, bind scope, owners, reachability, HTTP.

    \b
    Every failure says why (the cause and the fix, from a diagnosis); an expectation that
    could not be observed (no privilege, an unreadable table) is reported as such, never as
    "not listening". Exit 0 all passed, 1 a check failed, 2 bad spec, 3 could not observe.

    \b
    Examples:
      sudo portdoctor verify --generate host.yaml    # a starting point, from this host
      sudo portdoctor verify host.yaml --junit verify.xml
      portdoctor verify host.yaml --json
    """
    from portdoctor.verify import SpecError, load_spec

    check_writable(junit, "the JUnit report")
    if generate:
        from portdoctor.verify.generate import generate_here

        check_writable(spec, "the spec")

        if spec not in (None, "-") and os.path.exists(spec) and not force:
            raise BadInput(f"{spec} exists; use --force to overwrite it")
        text = generate_here()
        if spec in (None, "-"):
            sys.stdout.write(text)
        else:
            with open(spec, "w", encoding="utf-8") as fh:
                fh.write(text)
            sys.stderr.write(f"portdoctor: wrote {spec}\n")
        raise SystemExit(ExitCode.OK)
    if spec is None:
        raise BadInput("give the SPEC file to check (or --generate to write one)")
    try:
        parsed = load_spec(spec)
    except SpecError as exc:
        for line in exc.errors:
            sys.stderr.write(f"portdoctor: error: {line}\n")
        raise SystemExit(ExitCode.USAGE) from None
    from portdoctor.verify.run import verify as run_verify

    report = run_verify(parsed, diagnose=not no_diagnose)
    if junit:
        from portdoctor.verify.junit import write

        write(report, junit)
    fmt = fmt_of(fmt, as_json)
    from portdoctor.render import verify as render_verify

    if fmt == "json":
        import json

        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(render_verify.markdown(report) if fmt == "markdown" else render_verify.text(report, verbose))
    raise SystemExit(report.exit_code)


@click.command()
@click.option("--baseline", type=click.Path(dir_okay=False), metavar="FILE",
              help="Compare with a saved audit (from --save); exit 1 on any difference.")
@click.option("--save", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Save this audit as JSON to FILE: the baseline of a later run.")
@output_options
def audit(baseline: str | None, save: str | None, fmt: str, as_json: bool) -> None:
    """This host's exposure (which ports other hosts reach, bind scope + firewall + NAT) and
    its difference from a baseline: ports newly exposed, newly blocked, changed owner or bind.

    \b
    Examples:
      sudo portdoctor audit --save /var/lib/portdoctor/exposure.json
      sudo portdoctor audit --baseline /var/lib/portdoctor/exposure.json   # cron / CI: exit 1 on drift
      sudo portdoctor audit --baseline base.json --format markdown > ticket.md
    """
    import json

    from portdoctor.audit import audit as run_audit

    check_writable(save, "the exposure")
    result = run_audit(baseline)
    if save:
        with open(save, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(result.to_json(), indent=1) + "\n")
    fmt = fmt_of(fmt, as_json)
    from portdoctor.render import audit as render_audit

    if fmt == "json":
        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(render_audit.markdown(result) if fmt == "markdown" else render_audit.text(result))
    raise SystemExit(result.exit_code)

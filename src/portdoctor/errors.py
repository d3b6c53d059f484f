"""Errors the library raises and the exit codes the command line turns them into."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Exit codes of every portdoctor command (SPEC.md)."""

    OK = 0  # the target accepts / every check passed
    PROBLEM = 1  # a problem was found
    USAGE = 2  # bad input or usage
    INCOMPLETE = 3  # the check could not be completed (privilege, missing tool)


class PortdoctorError(Exception):
    """Base of every error portdoctor raises on purpose; its message is one line for the user."""

    exit_code: ExitCode = ExitCode.USAGE


class BadInput(PortdoctorError):
    """The user gave something portdoctor cannot use (a malformed target, an unknown message)."""

    exit_code = ExitCode.USAGE


class Incomplete(PortdoctorError):
    """Nothing useful could be done: a privilege or a tool is missing (exit 3)."""

    exit_code = ExitCode.INCOMPLETE

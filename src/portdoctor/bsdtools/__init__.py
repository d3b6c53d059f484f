"""Parsers for the tools that describe a macOS or FreeBSD host: one module per tool.

They turn text (or JSON) into plain typed rows and decide nothing; the collectors
(portdoctor.collectors.darwin / freebsd / bsd) run the tools through the Host seam and build
the snapshot from the rows. Column layouts that changed across releases are located by their
header line, never by position.
"""

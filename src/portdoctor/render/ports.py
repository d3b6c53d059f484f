"""The port map (`portdoctor ports`) as a terminal table (rich) or a Markdown document."""

from __future__ import annotations

from typing import Any

_EXPOSED = {True: "yes", False: "no", None: "?"}


def json_text(doc: dict[str, Any]) -> str:
    """The `portdoctor.ports/1` document as JSON text: one listener per line.

    Still easy to read and to diff, and written by json's C encoder (an indented dump of 10,000
    listeners goes through the pure-Python one, about six times slower).
    """
    import json

    lines = []
    for key, value in doc.items():
        if key == "listeners" and value:
            body = ",\n".join("    " + json.dumps(e) for e in value)
            lines.append(f'  "listeners": [\n{body}\n  ]')
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _endpoint(e: dict[str, Any]) -> str:
    return f"[{e['address']}]:{e['port']}" if e.get("family") == 6 else f"{e['address']}:{e['port']}"


def process_text(e: dict[str, Any]) -> str:
    """'nginx (pid 12, www-data)', one per distinct process name; container named when known."""
    parts: list[str] = []
    by_name: dict[str, list[dict[str, Any]]] = {}
    for p in e.get("processes") or []:
        by_name.setdefault(p.get("name") or "?", []).append(p)
    for name, procs in by_name.items():
        pids = ",".join(str(p["pid"]) for p in procs if p.get("pid"))
        users = sorted({p["user"] for p in procs if p.get("user")})
        bits = [f"pid {pids}"] if pids else []
        bits += users
        text = f"{name} ({', '.join(bits)})" if bits else name
        units = sorted({p["unit"] for p in procs if p.get("unit")})
        if units:
            text += f" unit {', '.join(units)}"
        parts.append(text)
    return "; ".join(parts) or "-"


def container_text(e: dict[str, Any]) -> str:
    names = sorted({p["container"] for p in e.get("processes") or [] if p.get("container")})
    return ", ".join(names) or "-"


def via_text(e: dict[str, Any], detail: bool = True) -> str:
    """'publish 0.0.0.0:18080: podman container web: ...' for each way in; '-' for none."""
    if not detail:
        return ", ".join(f"{v['kind']} {v['from']}" for v in e.get("via") or []) or "-"
    return "; ".join(f"{v['kind']} {v['from']}: {v['detail']}" for v in e.get("via") or []) or "-"


def _cell(text: object) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def markdown(doc: dict[str, Any]) -> str:
    """A Markdown document of the port map, fit to commit next to the service's code."""
    lines = [f"# Port map of `{doc.get('host')}`", "",
             "| port | address | scope | process | container | exposed | via |",
             "|---:|---|---|---|---|---|---|"]
    for e in doc.get("listeners") or []:
        addr = f"`{e['address']}`"
        lines.append(f"| {e['port']} | {addr} | {e['scope']} | {_cell(process_text(e))} | "
                     f"{_cell(container_text(e))} | {_EXPOSED[e.get('exposed')]} | {_cell(via_text(e))} |")
    lines += ["", "- **scope**: loopback (this host only), all (every address), specific (one address).",
              "- **exposed**: can a client from another host connect, bind scope and firewall combined "
              "(? = could not be judged).",
              "- **via**: what leads to the socket from elsewhere: a published container port, a DNAT rule, "
              "a reverse-proxy route.", ""]
    if doc.get("limitations"):
        lines += ["## Could not see", ""] + [f"- {_cell(x)}" for x in doc["limitations"]] + [""]
    return "\n".join(lines)


def text(doc: dict[str, Any], console: Any = None) -> None:
    """Print the port map as a table on the terminal."""
    from rich.table import Table

    if console is None:
        from portdoctor.render.text import console as make_console

        console = make_console()
    table = Table(title=f"port map of {doc.get('host')}", title_justify="left")
    for col in ("port", "address", "scope", "process", "container", "exposed", "via"):
        table.add_column(col, justify="right" if col == "port" else "left",
                         no_wrap=col in ("port", "address", "scope", "exposed"), overflow="fold")
    style = {True: "red", False: "green", None: "yellow"}
    for e in doc.get("listeners") or []:
        exp = e.get("exposed")
        table.add_row(str(e["port"]), e["address"], e["scope"], process_text(e), container_text(e),
                      f"[{style[exp]}]{_EXPOSED[exp]}[/]", via_text(e, detail=False))
    console.print(table)
    for e in doc.get("listeners") or []:
        for v in e.get("via") or []:
            console.print(f"  {_endpoint(e)} <- {v['kind']} {v['from']}: {v['detail']}", markup=False)
    for lim in doc.get("limitations") or []:
        console.print(f"[yellow]could not see:[/] {lim}")

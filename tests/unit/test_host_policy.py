"""The security rules of the Host: which binaries may be run, which files may be read for a
process, where commands are looked up as root, and what redaction leaves of a secret."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from portdoctor import redact
from portdoctor.host import SAFE_PATH, FileStat, LocalHost, check_readable_for, check_trusted

ROOT_DIR = FileStat(0, 0, 0o755, "dir")


def fake_fs(table: dict[str, FileStat]):
    def stat_fn(path: str) -> FileStat:
        if path not in table:
            raise FileNotFoundError(2, "No such file or directory", path)
        return table[path]
    return stat_fn


def same(path: str) -> str:
    return path


FS = {
    "/": ROOT_DIR, "/usr": ROOT_DIR, "/usr/sbin": ROOT_DIR,
    "/usr/sbin/nginx": FileStat(0, 0, 0o755, "file"),
    "/usr/sbin/group-writable": FileStat(0, 0, 0o775, "file"),
    "/tmp": FileStat(0, 0, 0o1777, "dir"),
    "/tmp/nginx": FileStat(0, 0, 0o755, "file"),
    "/home": ROOT_DIR, "/home/bob": FileStat(1000, 1000, 0o755, "dir"),
    "/home/bob/nginx": FileStat(1000, 1000, 0o755, "file"),
    "/opt": ROOT_DIR, "/opt/bin": FileStat(0, 0, 0o755, "dir"), "/opt/bin/nginx": FileStat(1000, 1000, 0o755, "file"),
}


@pytest.mark.parametrize("path, trusted, why", [
    ("/usr/sbin/nginx", True, ""),
    ("/tmp/nginx", False, "its folder /tmp is writable by group or others (mode 1777)"),
    ("/home/bob/nginx", False, "/home/bob/nginx is owned by uid 1000, not root"),
    ("/opt/bin/nginx", False, "/opt/bin/nginx is owned by uid 1000, not root"),
    ("/usr/sbin/group-writable", False, "/usr/sbin/group-writable is writable by group or others (mode 775)"),
    ("/usr/sbin/gone", False, "/usr/sbin/gone cannot be checked (No such file or directory)"),
    ("nginx", False, "nginx is not an absolute path"),
])
def test_trusted_executable(path: str, trusted: bool, why: str) -> None:
    assert check_trusted(path, fake_fs(FS), same) == (trusted, why)


def test_a_root_file_in_a_users_folder_is_not_trusted() -> None:
    fs = {**FS, "/home/bob/bin": FileStat(1000, 1000, 0o755, "dir"), "/home/bob/bin/nginx": FileStat(0, 0, 0o755, "file")}
    assert check_trusted("/home/bob/bin/nginx", fake_fs(fs), same) == (
        False, "its folder /home/bob/bin is owned by uid 1000, not root")


def test_the_real_usr_bin_env_is_trusted_and_a_tmp_copy_is_not(tmp_path: Path) -> None:
    host = LocalHost()
    assert host.trusted_executable("/usr/bin/env") == (True, "")
    copy = tmp_path / "env"
    copy.write_bytes(Path("/usr/bin/env").read_bytes())
    copy.chmod(0o755)
    ok, why = host.trusted_executable(str(copy))
    assert not ok and why


READ_FS = {
    "/": ROOT_DIR, "/etc": ROOT_DIR, "/root": FileStat(0, 0, 0o700, "dir"),
    "/root/secret.conf": FileStat(0, 0, 0o600, "file"),
    "/etc/redis.conf": FileStat(0, 0, 0o644, "file"),
    "/etc/shadow": FileStat(0, 42, 0o640, "file"),
    "/srv": ROOT_DIR, "/srv/app": FileStat(33, 33, 0o750, "dir"),
    "/srv/app/app.conf": FileStat(33, 33, 0o600, "file"),
    "/srv/other.conf": FileStat(1000, 1000, 0o644, "file"),
    "/srv/root-only-folder": FileStat(0, 0, 0o700, "dir"),
    "/srv/root-only-folder/x.conf": FileStat(0, 0, 0o644, "file"),
}


@pytest.mark.parametrize("path, uid, ok, why", [
    ("/etc/redis.conf", 65534, True, ""),
    ("/root/secret.conf", 65534, False, "the process's user (uid 65534) could not read /root/secret.conf itself"),
    ("/root/secret.conf", 0, True, ""),
    ("/etc/shadow", 65534, False, "the process's user (uid 65534) could not read /etc/shadow itself"),
    ("/srv/app/app.conf", 33, True, ""),
    ("/srv/app/app.conf", 65534, False, "/srv/app/app.conf belongs to uid 33, neither root nor the process's user "
                                        "(uid 65534)"),
    ("/srv/other.conf", 33, False, "/srv/other.conf belongs to uid 1000, neither root nor the process's user (uid 33)"),
    ("/srv/root-only-folder/x.conf", 33, False,
     "the process's user (uid 33) could not reach /srv/root-only-folder/x.conf (folder /srv/root-only-folder)"),
    ("/srv/missing.conf", 33, True, ""),
    ("/etc/redis.conf", None, False, "the process's user is unknown"),
])
def test_readable_for_a_process(path: str, uid: int | None, ok: bool, why: str) -> None:
    assert check_readable_for(path, uid, set(), fake_fs(READ_FS), same) == (ok, why)


def test_group_membership_and_the_owner_rule_for_logs() -> None:
    # adm may read a log of www-data's group; the owner rule does not apply to vetted logs
    fs = {**READ_FS, "/var": ROOT_DIR, "/var/log": ROOT_DIR, "/var/log/x.log": FileStat(33, 4, 0o640, "file")}
    assert check_readable_for("/var/log/x.log", 1000, {4}, fake_fs(fs), same, owner_rule=False) == (True, "")
    assert check_readable_for("/var/log/x.log", 1000, set(), fake_fs(fs), same, owner_rule=False)[0] is False
    assert check_readable_for("/var/log/x.log", 1000, {4}, fake_fs(fs), same)[0] is False


def test_a_non_root_portdoctor_reads_as_itself() -> None:
    assert LocalHost(is_root=False).readable_for("/root/secret.conf", 65534) == (True, "")


def test_commands_are_found_in_the_safe_path_when_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decoy = tmp_path / "nft"
    decoy.write_text("#!/bin/sh\ntouch marker\n")
    decoy.chmod(decoy.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert LocalHost(is_root=False).which("nft") == str(decoy)  # a user's own PATH is theirs
    found = LocalHost(is_root=True).which("nft")
    assert found != str(decoy) and (found is None or os.path.dirname(found) in SAFE_PATH.split(":"))
    r = LocalHost(is_root=True).run(["sh", "-c", "echo $PATH"])
    assert r.ok and r.stdout.strip() == SAFE_PATH  # children of a root portdoctor get the safe PATH too


def test_run_reports_a_missing_program_and_a_timeout() -> None:
    host = LocalHost()
    r = host.run(["no-such-program-pd"])
    assert r.missing and r.rc is None and not r.ok
    r = host.run(["sleep", "5"], timeout=0.2)
    assert r.timed_out and not r.ok


# --------------------------------------------------------------------------- redaction


@pytest.mark.parametrize("argv, want", [
    (["redis-server", "--requirepass", "x1", "--port", "6380"], ["redis-server", "--requirepass", "<redacted>",
                                                                 "--port", "6380"]),
    (["mysqld", "-pSECRET", "-P3306"], ["mysqld", "-p<redacted>", "-P3306"]),
    (["app", "--password=x2", "--api-key", "k", "--token=t"], ["app", "--password=<redacted>", "--api-key",
                                                                "<redacted>", "--token=<redacted>"]),
    (["env", "PGPASSWORD=x3", "psql", "-h", "db"], ["env", "PGPASSWORD=<redacted>", "psql", "-h", "db"]),
    (["worker", "--broker", "amqp://user:x4@mq:5672//"], ["worker", "--broker", "amqp://user:<redacted>@mq:5672//"]),
    (["redis-cli", "-a", "x5", "ping"], ["redis-cli", "-a", "<redacted>", "ping"]),
    (["memcached", "-p", "11211", "-p11212"], ["memcached", "-p", "11211", "-p11212"]),  # ports stay
    (["node", "server.js", "--port=8080", "--host", "0.0.0.0"], ["node", "server.js", "--port=8080", "--host",
                                                                  "0.0.0.0"]),
])
def test_redact_argv(argv: list[str], want: list[str]) -> None:
    assert list(redact.argv(argv)) == want


def test_redact_env_and_command() -> None:
    env = {"PORT": "8080", "DB_PASSWORD": "x", "GITHUB_TOKEN": "y", "AWS_SECRET_ACCESS_KEY": "z",
           "SECRET_KEY_BASE": "w", "DATABASE_URL": "postgres://u:pw@h/db", "EMPTY_PASSWORD": ""}
    assert redact.env(env) == {"PORT": "8080", "DB_PASSWORD": "<redacted>", "GITHUB_TOKEN": "<redacted>",
                               "AWS_SECRET_ACCESS_KEY": "<redacted>", "SECRET_KEY_BASE": "<redacted>",
                               "DATABASE_URL": "postgres://u:<redacted>@h/db", "EMPTY_PASSWORD": ""}
    assert redact.command("redis-server  --port 1") == "redis-server  --port 1"  # untouched, spacing too
    assert redact.command("redis-server --requirepass s") == "redis-server --requirepass <redacted>"


def test_the_examples_in_redact_hold() -> None:
    import doctest

    assert doctest.testmod(redact).failed == 0
